#!/usr/bin/env bash
# Runs every Tapestry test: pure unit tests, then the privileged tier (TAP devices, network
# namespaces, real kernel stacks), which runs when root and skips with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift build --build-tests
export TAPESTRY_BIN="$PWD/.build/debug/tapestry"
swift test --skip-build
