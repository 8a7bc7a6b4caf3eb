#!/usr/bin/env bash
# Runs every Tapestry test: pure unit tests, then the privileged tier (TAP devices, network
# namespaces, real kernel stacks), which runs when root and skips with a reason otherwise;
# the docs test (README numbers come from result files); then every fuzz target for a
# bounded time. The closing line counts passes and failures from the runners' own output,
# and the script exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh || exit 1
swift build --build-tests || { echo "tests: 0 passed, 1 failed (the build failed)"; exit 1; }
export TAPESTRY_BIN="$PWD/.build/debug/tapestry"
log=.build/test-output.log
swift test --skip-build 2>&1 | tee "$log"
runner=${PIPESTATUS[0]}

# Fuzz every libFuzzer target for a bounded time (frame+decide, topology, pcap reader,
# control requests); any crash fails the run. Longer runs: Scripts/fuzz.sh 600.
Scripts/fuzz.sh "${TAPESTRY_FUZZ_SECONDS:-20}"
fuzz=$?

# Counts from the runners' lines: swift-testing prints "Test NAME() passed after …" /
# "Test NAME() failed after …" per test (and "skipped", or "was cancelled" for a test that found
# a capability missing at run time: Test.cancel); XCTest "Test Case '…' passed|failed".
passed=$(grep -Ec "Test [^ ].*\) passed after|Test Case '.*' passed" "$log")
failed=$(grep -Ec "Test [^ ].*\) failed after|Test Case '.*' failed" "$log")
skipped=$(grep -Ec "Test [^ ].*\) skipped|Test [^ ].*\) was cancelled" "$log")
problems=()
if [ "$runner" -ne 0 ] && [ "$failed" -eq 0 ]; then
    # The runner failed without a failing test line (a crash, a build problem): count it.
    failed=1; problems+=("swift test exited with status $runner")
fi
if [ "$fuzz" -ne 0 ]; then failed=$((failed + 1)); problems+=("fuzzing failed (Scripts/fuzz.sh exit $fuzz)"); fi
for p in "${problems[@]}"; do echo "tests: $p" >&2; done
# One closing line for the whole run (the runner's own summary scrolled away above).
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
