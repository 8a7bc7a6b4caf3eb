#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for SECONDS_PER_TARGET (default 20).
#
#   Scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     targets: frame topology reload pcap control observability multicast offload vxlan underlay vhost-message vhost-chain
#
# Prints `fuzz <target>: <executions> executions, <crashes> crashes` per target and exits 1 if
# any target crashed (the reproducer's path is printed). Runs work on a copy of Fuzz/corpus/
# (never the committed corpus). Build and run files live in .build-fuzz/ (git-ignored).
# Why swiftc and not SwiftPM, and what to do with a crash: Fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame topology reload pcap control observability multicast offload vxlan underlay vhost-message vhost-chain)
B=$ROOT/.build-fuzz
MOD=$B/mod OBJ=$B/obj LOG=$B/build.log
SAN=(-sanitize=fuzzer,address)
SWIFTC=(swiftc -parse-as-library -O "${SAN[@]}" -I "$MOD")
CC=(clang -c -O1 -g -fsanitize=fuzzer-no-link,address)
mkdir -p "$MOD" "$OBJ" "$B/cpcap"
: > "$LOG"

say() { echo "fuzz: $*"; }
fail_build() { echo "fuzz: build of $1 failed; log follows" >&2; grep -v 'ld.gold: warning' "$LOG" | tail -60 >&2; exit 2; }
# stale OUT INPUT...: true when OUT is missing or older than any input.
stale() { local out=$1; shift; [ -e "$out" ] || return 0; for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done; return 1; }
# module NAME SWIFT_VERSION "DEPENDENCY MODULES" SOURCES... [-- EXTRA_FLAGS...]
module() {
    local name=$1 ver=$2 deps=(); for d in $3; do deps+=("$MOD/$d.swiftmodule"); done; shift 3
    local srcs=() extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; extra=("$@"); }
    if stale "$OBJ/$name.o" "${srcs[@]}" "${deps[@]}"; then
        say "building module $name (${#srcs[@]} files)"
        "${SWIFTC[@]}" -wmo -swift-version "$ver" -module-name "$name" "${extra[@]}" \
            -emit-module -emit-module-path "$MOD/$name.swiftmodule" -c "${srcs[@]}" -o "$OBJ/$name.o" >>"$LOG" 2>&1 || fail_build "$name"
    fi
}
# driver TARGET MODULE_NAME OBJS... -- SOURCES... [-- FLAGS...]
driver() {
    local target=$1 name=$2; shift 2
    local objs=() srcs=() extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do objs+=("$1"); shift; done; shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; extra=("$@"); }
    if stale "$B/fuzz-$target" "${objs[@]}" "${srcs[@]}"; then
        say "linking fuzz-$target"
        "${SWIFTC[@]}" -swift-version 5 -module-name "$name" "${extra[@]}" "${srcs[@]}" "${objs[@]}" \
            -o "$B/fuzz-$target" >>"$LOG" 2>&1 || fail_build "fuzz-$target"
    fi
}
want() { local t; for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

# ---- build ------------------------------------------------------------------------------
say "building ${TARGETS[*]} into .build-fuzz (log: .build-fuzz/build.log)"
START=$SECONDS
module Model 6 "" Sources/Model/*.swift
module Core 6 Model Sources/Core/*.swift

if want topology || want reload; then
    YAMS=$ROOT/.build/checkouts/Yams/Sources
    if [ ! -d "$YAMS/Yams" ]; then
        say "resolving packages (Yams checkout)"
        swift package resolve >>"$LOG" 2>&1 || fail_build "swift package resolve"
    fi
    cyaml=()
    for c in "$YAMS"/CYaml/src/*.c; do
        o=$OBJ/CYaml-$(basename "$c" .c).o; cyaml+=("$o")
        if stale "$o" "$c"; then
            "${CC[@]}" -DYAML_DECLARE_STATIC -I "$YAMS/CYaml/include" "$c" -o "$o" >>"$LOG" 2>&1 || fail_build CYaml &
        fi
    done
    wait
    module Yams 5 "" "$YAMS"/Yams/*.swift -- -D SWIFT_PACKAGE -I "$YAMS/CYaml/include" -Xcc -DYAML_DECLARE_STATIC
    module Topology 6 "Model Core Yams" Sources/Topology/*.swift -- -I "$YAMS/CYaml/include"
    want topology && driver topology FuzzTopology "$OBJ"/Model.o "$OBJ"/Core.o "$OBJ"/Yams.o "$OBJ"/Topology.o "${cyaml[@]}" -- Fuzz/topology/main.swift -- -I "$YAMS/CYaml/include"
    want reload && driver reload FuzzReload "$OBJ"/Model.o "$OBJ"/Core.o "$OBJ"/Yams.o "$OBJ"/Topology.o "${cyaml[@]}" -- Fuzz/reload/main.swift -- -I "$YAMS/CYaml/include"
fi
if want frame; then
    driver frame FuzzFrame "$OBJ"/Model.o "$OBJ"/Core.o -- Fuzz/frame/main.swift
fi
if want multicast; then
    driver multicast FuzzMulticast "$OBJ"/Model.o "$OBJ"/Core.o -- Fuzz/multicast/main.swift
fi
if want pcap; then
    printf 'module CPcap {\n  header "%s/Sources/CPcap/include/cpcap.h"\n  link "pcap"\n  export *\n}\n' "$ROOT" > "$B/cpcap/module.modulemap.new"
    cmp -s "$B/cpcap/module.modulemap.new" "$B/cpcap/module.modulemap" || mv "$B/cpcap/module.modulemap.new" "$B/cpcap/module.modulemap"
    rm -f "$B/cpcap/module.modulemap.new"
    if stale "$OBJ/CPcap.o" Sources/CPcap/*.c Sources/CPcap/include/*.h; then
        "${CC[@]}" -I Sources/CPcap/include Sources/CPcap/*.c -o "$OBJ/CPcap.o" >>"$LOG" 2>&1 || fail_build CPcap
    fi
    module Capture 5 Model Sources/Capture/*.swift -- -I "$B/cpcap"
    driver pcap FuzzPcap "$OBJ"/Model.o "$OBJ"/Capture.o "$OBJ"/CPcap.o -- Fuzz/pcap/main.swift -- -I "$B/cpcap" -lpcap
fi
if want control || want offload || want vxlan; then
    module Wire 6 Model Sources/Wire/*.swift
fi
if want control; then
    # Only the Runtime files the decoder and trace need (see Fuzz/README.md).
    driver control FuzzControl "$OBJ"/Model.o "$OBJ"/Core.o "$OBJ"/Wire.o -- Fuzz/control/main.swift \
        Sources/Runtime/Reports.swift Sources/Runtime/Trace.swift Sources/Runtime/RuntimeError.swift
fi
if want observability; then
    # The wire parsers of Observability only (LLDP, flow keys); they import nothing but Model
    # and Core (whose LLDPFrames.isLLDP is the one LLDP rule).
    driver observability FuzzObservability "$OBJ"/Model.o "$OBJ"/Core.o -- Fuzz/observability/main.swift \
        Sources/Observability/LLDP.swift Sources/Observability/LLDPNeighbors.swift Sources/Observability/FlowKey.swift Sources/Observability/FlowTable.swift
fi
if want offload || want vxlan || want underlay; then
    module Wire 6 Model Sources/Wire/*.swift
    want offload && driver offload FuzzOffload "$OBJ"/Model.o "$OBJ"/Wire.o -- Fuzz/offload/main.swift
    want vxlan && driver vxlan FuzzVXLAN "$OBJ"/Model.o "$OBJ"/Wire.o -- Fuzz/vxlan/main.swift
    want underlay && driver underlay FuzzUnderlay "$OBJ"/Model.o "$OBJ"/Core.o "$OBJ"/Wire.o -- Fuzz/underlay/main.swift
fi
# vhost-user: the pure files of the VhostUser module, compiled into each driver.
VHOST_PURE=(Sources/VhostUser/VirtioConstants.swift Sources/VhostUser/GuestMemory.swift Sources/VhostUser/Virtqueue.swift Sources/VhostUser/VhostMessage.swift)
if want vhost-message; then driver vhost-message FuzzVhostMessage "$OBJ"/Model.o -- Fuzz/vhost-message/main.swift "${VHOST_PURE[@]}"; fi
if want vhost-chain; then driver vhost-chain FuzzVhostChain "$OBJ"/Model.o -- Fuzz/vhost-chain/main.swift "${VHOST_PURE[@]}"; fi
say "build done in $((SECONDS - START)) s"

# ---- run --------------------------------------------------------------------------------
# topology, reload, control: resource limits, not only crashes: an input that makes the loader
# take more than 512 MB or 5 s, a reload's planning (two files, diff, compile, carry-over) more
# than 1024 MB or 10 s, or one control request (up to the daemon's 64 KiB line limit, so
# -max_len just above it) more than 512 MB or 5 s, is a finding, like a crash.
declare -A EXTRA=([frame]="-max_len=2048" [topology]="-max_len=65536 -rss_limit_mb=512 -timeout=5" [pcap]="-max_len=4096" [control]="-max_len=65600 -rss_limit_mb=512 -timeout=5" [observability]="-max_len=1600" [multicast]="-max_len=1600"
                  [reload]="-max_len=131072 -rss_limit_mb=1024 -timeout=10"
                  [offload]="-max_len=4096" [vxlan]="-max_len=2048" [underlay]="-max_len=9000"
                  [vhost-message]="-max_len=2048" [vhost-chain]="-max_len=20000")
run() {
    local t=$1 dir=$B/run/$1
    rm -rf "$dir"; mkdir -p "$dir/corpus" "$dir/artifacts"
    cp Fuzz/corpus/"$t"/* "$dir/corpus/"
    local dict=(); [ -f "Fuzz/$t.dict" ] && dict=(-dict="Fuzz/$t.dict")
    # ASan's quarantine of freed memory (256 MB by default) counts in the RSS that
    # -rss_limit_mb checks; 64 MB still catches use-after-free and leaves the limit to the code.
    # shellcheck disable=SC2086
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:quarantine_size_mb=64} "$B/fuzz-$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict[@]}" ${EXTRA[$t]} "$dir/corpus" >"$dir/log" 2>&1 || true
}
say "running each target for ${SECONDS_PER_TARGET} s (two at a time)"
pids=()
for t in "${TARGETS[@]}"; do
    run "$t" & pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

status=0
for t in "${TARGETS[@]}"; do
    dir=$B/run/$t
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    if [ -z "$execs" ]; then   # a crash stops libFuzzer before the final stats
        execs=$(grep -o '^#[0-9]*' "$dir/log" | tail -1 | tr -d '#')
    fi
    crashes=$(find "$dir/artifacts" -type f | wc -l)
    echo "fuzz $t: ${execs:-0} executions, $crashes crashes"
    if [ "$crashes" -gt 0 ]; then
        status=1
        find "$dir/artifacts" -type f | sed 's/^/  reproducer: /'
        grep -m3 -E 'Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY' "$dir/log" | sed 's/^/  /' || true
        echo "  log: $dir/log   reproduce: $B/fuzz-$t <reproducer>"
    elif ! grep -q '^Done ' "$dir/log"; then
        status=1; echo "  fuzz-$t did not finish normally; log: $dir/log"; tail -5 "$dir/log" | sed 's/^/  /'
    fi
done
exit $status
