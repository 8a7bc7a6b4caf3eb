#!/usr/bin/env bash
# Runs every Tapestry test: pure unit tests, then the privileged tier (TAP devices, network
# namespaces, real kernel stacks), which runs when root and skips with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift build --build-tests
export TAPESTRY_BIN="$PWD/.build/debug/tapestry"
swift test --skip-build
# Fuzz every libFuzzer target for a bounded time (frame+decide, topology, pcap reader,
# control requests); any crash fails the run. Longer runs: Scripts/fuzz.sh 600.
Scripts/fuzz.sh "${TAPESTRY_FUZZ_SECONDS:-20}"
