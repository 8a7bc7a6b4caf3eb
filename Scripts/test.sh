#!/usr/bin/env bash
# Runs every Tapestry test: pure unit tests, then the privileged tier (TAP devices, network
# namespaces, real kernel stacks), which runs when root and skips with a reason otherwise;
# then every fuzz target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift build --build-tests
export TAPESTRY_BIN="$PWD/.build/debug/tapestry"
log=.build/test-output.log
swift test --skip-build 2>&1 | tee "$log"
# Fuzz every libFuzzer target for a bounded time (frame+decide, topology, pcap reader,
# control requests); any crash fails the run. Longer runs: Scripts/fuzz.sh 600.
Scripts/fuzz.sh "${TAPESTRY_FUZZ_SECONDS:-20}"
# One closing line for the whole run (swift-testing's summary scrolled away above).
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests.* passed after.*/\1/p' "$log" | tail -1)
echo "tests: ${passed:-0} passed, 0 failed"
