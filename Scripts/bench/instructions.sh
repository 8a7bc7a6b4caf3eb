#!/usr/bin/env bash
# Instructions per frame of the in-process forwarding core, counted exactly by callgrind.
#
#   Scripts/bench/instructions.sh [--binary PATH] [SCENARIO...]     (default: forward)
#
# Runs `tapestry-bench SCENARIO --runs 1` under callgrind at two frame counts and prints
# (I(3M) - I(1M)) / 2M: the cost of one more frame, with set-up and start-up cancelled out.
# Instruction counts do not depend on the machine's load. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=.build/release/tapestry-bench
if [ "${1:-}" = --binary ]; then bin=$2; shift 2; else swift build -c release --product tapestry-bench >/dev/null; fi
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
scenarios=("$@"); [ ${#scenarios[@]} -gt 0 ] || scenarios=(forward)
count() {
    local out; out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" "$1" --frames "$2" --runs 1 >/dev/null 2>"$out"
    grep -o 'Collected : [0-9]*' "$out" | awk '{print $3}'
    rm -f "$out" "$out.cg"
}
for s in "${scenarios[@]}"; do
    a=$(count "$s" 1000000); b=$(count "$s" 3000000)
    echo "$s: $(( (b - a) / 2000000 )) instructions per frame"
done
