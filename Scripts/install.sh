#!/usr/bin/env bash
# Installs Tapestry: a release build of `tapestry`, the guest-image builder it runs for QEMU
# guests, bash and zsh completion, and a man page.
#
#   Scripts/install.sh [--prefix PREFIX] [--destdir DIR] [--scratch-path DIR] [--no-setup]
#
#   --prefix   where it runs from (default /usr/local): PREFIX/bin/tapestry finds its files
#              in PREFIX/share/tapestry
#   --destdir  stage everything under DIR instead of / (packaging, tests): files land in
#              DIR/PREFIX/…, and the binary still looks in PREFIX once moved there
#   --scratch-path  build in DIR instead of .build (SwiftPM's --scratch-path; a build may run
#              while another SwiftPM command holds .build, e.g. from inside `swift test`)
#   --no-setup skip Scripts/setup.sh (the Debian packages for building and running)
#
# Layout (FHS):
#   PREFIX/bin/tapestry
#   PREFIX/share/tapestry/guest-image.sh, guest/{init,poweroff-button,imagetool.py}, BUILD
#   PREFIX/share/bash-completion/completions/tapestry
#   PREFIX/share/zsh/site-functions/_tapestry
#   PREFIX/share/man/man1/tapestry.1
# BUILD records the version and the commit built (what `tapestry --version` prints).
# Completion scripts come from swift-argument-parser (`--generate-completion-script`), the
# man page from its `generate-manual` package plugin (it works offline: the plugin builds
# from the same package the build already has).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local destdir= setup=1 scratch=.build
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#--destdir=}; shift ;;
        --scratch-path) scratch=${2:?--scratch-path needs a directory}; shift 2 ;;
        --scratch-path=*) scratch=${1#--scratch-path=}; shift ;;
        --no-setup) setup=0; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install: --prefix must be absolute" >&2; exit 2 ;; esac
say() { echo "install: $*"; }

[ "$setup" = 1 ] && Scripts/setup.sh
say "building release"
swift build --scratch-path "$scratch" -c release --product tapestry
bin=$(swift build --scratch-path "$scratch" -c release --show-bin-path)/tapestry
root=$destdir$prefix
share=$root/share/tapestry

say "installing into $root"
install -d "$root/bin" "$share/guest" "$root/share/bash-completion/completions" \
    "$root/share/zsh/site-functions" "$root/share/man/man1"
install -m 0755 "$bin" "$root/bin/tapestry"
install -m 0755 Scripts/guest-image.sh "$share/guest-image.sh"
for f in Scripts/guest/*; do
    case "$f" in *.py) mode=0644 ;; *) mode=0755 ;; esac
    install -m "$mode" "$f" "$share/guest/$(basename "$f")"
done
version=$("$bin" --version | cut -d' ' -f1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit+dirty"
printf 'version=%s\ncommit=%s\n' "$version" "$commit" >"$share/BUILD"

"$bin" --generate-completion-script bash >"$root/share/bash-completion/completions/tapestry"
"$bin" --generate-completion-script zsh >"$root/share/zsh/site-functions/_tapestry"

say "generating the man page (swift-argument-parser's generate-manual plugin)"
err=$(mktemp)
trap 'rm -f "$err"' EXIT
out=$scratch/plugins/GenerateManual/outputs/tapestry/tapestry.1
rm -f "$out"
if swift package --scratch-path "$scratch" --allow-writing-to-package-directory generate-manual \
        --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" >/dev/null 2>"$err" && [ -s "$out" ]; then
    install -m 0644 "$out" "$root/share/man/man1/tapestry.1"
else
    echo "install: warning: no man page (generate-manual failed: $(tail -3 "$err" | tr '\n' ' '))" >&2
fi
say "done: $prefix/bin/tapestry ($("$root/bin/tapestry" --version))"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) [ -z "$destdir" ] && say "note: $prefix/bin is not on PATH" ;; esac
exit 0
