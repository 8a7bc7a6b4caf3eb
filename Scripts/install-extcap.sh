#!/usr/bin/env bash
# Installs Tapestry's Wireshark extcap wrapper, so `tshark -D` lists every port of every
# running topology as `tapestry:NAME/PORT` and `tshark -i tapestry:NAME/PORT` captures from it.
#
#   Scripts/install-extcap.sh [--user] [--binary PATH] [DIR]
#
# DIR defaults to Wireshark's global extcap directory, as `tshark -G folders` reports it
# ("Extcap path", or "Global extcap path" in Wireshark ≥ 4.2); with --user, the personal one
# ("Personal extcap path", or $HOME/.config/wireshark/extcap where tshark does not list it,
# as Wireshark 4.0 searches it anyway). The file installed is a small shell wrapper named
# `tapestry-extcap` that execs `tapestry extcap "$@"`: Wireshark calls extcap programs without a
# subcommand. The wrapper finds the binary when it runs: --binary if given here, else
# `tapestry` on PATH, else this checkout's release or debug build. Idempotent.
#
# The control socket is root's: an unprivileged Wireshark lists no tapestry interfaces (it
# logs why), unless its user is in the opt-in group `tapestry` (`usermod -aG tapestry USER`;
# Scripts/setup.sh creates the group), whose members may list ports and capture, and nothing
# more. See README.md ("Wireshark without root").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
user=0 binary="" dir=""
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=1 ;;
        --binary) binary=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) dir=$1 ;;
    esac
    shift
done
command -v tshark >/dev/null || { echo "install-extcap: tshark is not installed (apt-get install tshark)" >&2; exit 1; }
if [ -z "$dir" ]; then
    folders=$(tshark -G folders 2>/dev/null || true)
    if [ "$user" = 1 ]; then
        dir=$(printf '%s\n' "$folders" | sed -n 's/^Personal extcap path:[[:space:]]*//Ip' | head -1)
        [ -n "$dir" ] || dir=$HOME/.config/wireshark/extcap
    else
        dir=$(printf '%s\n' "$folders" | sed -n -e 's/^Global extcap path:[[:space:]]*//Ip' -e 's/^Extcap path:[[:space:]]*//Ip' | head -1)
        [ -n "$dir" ] || { echo "install-extcap: tshark -G folders names no extcap path" >&2; exit 1; }
    fi
fi
mkdir -p "$dir"
tmp=$(mktemp "$dir/.tapestry.XXXXXX")
cat >"$tmp" <<WRAPPER
#!/bin/sh
# Tapestry's Wireshark extcap (installed by $here/Scripts/install-extcap.sh).
for b in ${binary:+"$binary"} "\$(command -v tapestry)" "$here/.build/release/tapestry" "$here/.build/debug/tapestry"; do
    [ -n "\$b" ] && [ -x "\$b" ] && exec "\$b" extcap "\$@"
done
echo "tapestry extcap: no tapestry binary found (build it, or reinstall with --binary PATH)" >&2
exit 1
WRAPPER
chmod 0755 "$tmp"
mv -f "$tmp" "$dir/tapestry-extcap"
echo "install-extcap: installed $dir/tapestry-extcap"
