#!/usr/bin/env bash
# Instructions per frame of Tapestry's forwarding thread between two vhost-user ports,
# counted by callgrind: the same setup as vhost-switch.sh (a `kind: vhost-user` guest with two
# NICs in one port group, one datapath thread, one testpmd with two virtio-user ports in `io`
# forwarding with --tx-first as the two guests, 64-byte frames), with the switch under
# valgrind. Instrumentation is switched on for SECONDS of steady forwarding
# (callgrind_control -i on/off); the thread's instructions divided by the frames the switch
# sent in that window (its own counters) give the cost of one frame, and the functions
# that cost most are listed with their share. Counts, not timings: they do not depend on
# the machine's load, so they compare two builds where wall-clock runs on this machine
# differ by a quarter from run to run.
#
#   Scripts/bench/vhost-instructions.sh [--seconds SECONDS] [--binary PATH]
#
# Without --binary, builds the release product with DWARF 4 debug info into .build-dw4
# (valgrind 3.19 cannot read the compiler's default DWARF 5). As root; needs valgrind and
# dpdk-testpmd (Scripts/setup.sh installs dpdk-dev). Only processes started here are signalled.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
SECS=5 BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift ;;
    --binary) BIN=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--seconds SECONDS] [--binary PATH]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "bench: valgrind missing (apt-get install valgrind)" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "bench: dpdk-testpmd missing (Scripts/setup.sh installs dpdk-dev)" >&2; exit 1; }
if [ -z "$BIN" ]; then
  (cd "$ROOT" && swift build -c release --product tapestry --scratch-path "$ROOT/.build-dw4" \
     -Xswiftc -dwarf-version=4 -Xcc -gdwarf-4) >&2 || { echo "bench: release build failed" >&2; exit 1; }
  BIN="$ROOT/.build-dw4/release/tapestry"
fi
BIN=$(realpath "$BIN")   # valgrind runs from the run's own directory

NAME=vhinstr
W=$(mktemp -d /tmp/vhinstr.XXXXXX)
VG="" FE=""
MAC0=02:00:00:00:b0:01 MAC1=02:00:00:00:b0:02
cleanup() {
  set +e
  [ -n "$FE" ] && kill_tree "$FE"
  "$BIN" down --name "$NAME" >/dev/null 2>&1
  [ -n "$VG" ] && kill_pid "$VG"
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vhost_pair_topology "$W/$NAME.yaml" "$NAME" vhiapp "$MAC0" "$MAC1"
"$BIN" down --name "$NAME" >/dev/null 2>&1 || true
(cd "$W" && exec env TAPESTRY_DATAPATH_THREADS=1 valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
   --callgrind-out-file="$W/cg.out" "$BIN" up "$W/$NAME.yaml") >"$W/up.log" 2>&1 &
VG=$!
for _ in $(seq 240); do [ -S "/run/tapestry/$NAME.vhost/vhiapp.eth1.sock" ] && break; sleep 0.5; done
[ -S "/run/tapestry/$NAME.vhost/vhiapp.eth1.sock" ] || { tail -20 "$W/up.log" >&2; echo "bench: the switch did not come up under valgrind" >&2; exit 1; }
(sleep $((SECS + 60)) | timeout $((SECS + 90)) dpdk-testpmd -l 0-1 --main-lcore 0 --no-pci --no-huge -m 512 --file-prefix="vhinstr-$$" \
   --vdev "net_virtio_user0,path=/run/tapestry/$NAME.vhost/vhiapp.eth0.sock,queue_size=256,mac=$MAC0" \
   --vdev "net_virtio_user1,path=/run/tapestry/$NAME.vhost/vhiapp.eth1.sock,queue_size=256,mac=$MAC1" \
   -- --forward-mode=io --auto-start --tx-first --nb-cores=1 --total-num-mbufs=16384 \
   --eth-peer=0,$MAC1 --eth-peer=1,$MAC0 --txpkts=60 >"$W/testpmd.log" 2>&1) &
FE=$!
sleep 12   # the guests connect and the frames start circling
callgrind_control -i on "$VG" >/dev/null
f0=$(tapestry_sent "$BIN" "$NAME")
sleep "$SECS"
f1=$(tapestry_sent "$BIN" "$NAME")
callgrind_control -d "$VG" >/dev/null
callgrind_control -i off "$VG" >/dev/null
F=$((f1 - f0))
[ "$F" -gt 0 ] || { echo "bench: no frames forwarded while counting (see $W/testpmd.log with KEEP=1)" >&2; exit 1; }
# The dump of the busiest thread is the forwarding thread's.
best=$(grep -H '^totals:' "$W"/cg.out.1-* | sort -t: -k3 -g | tail -1 | cut -d: -f1)
total=$(grep -m1 '^totals:' "$best" | awk '{print $2}')
echo "vhost-user forwarding, 64-byte frames, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC')"
awk -v t="$total" -v f="$F" -v s="$SECS" 'BEGIN { printf "instructions per frame: %.1f (%d frames in %d s under valgrind)\n", t / f, f, s }'
echo "by function (instructions per frame):"
callgrind_annotate --inclusive=no "$best" 2>/dev/null | sed -n '/file:function/,$p' | awk -v F="$F" '
  { v = $1; gsub(",", "", v); if (v + 0 <= 0) next
    n = $0; sub(/^ *[0-9,]+ *(\([ 0-9.%]+\))? */, "", n); sub(/ \[.*$/, "", n)
    if (++k > 15) exit
    printf "  %8.1f  %s\n", v / F, substr(n, 1, 110) }'
