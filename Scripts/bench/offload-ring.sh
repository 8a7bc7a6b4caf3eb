#!/usr/bin/env bash
# Ring choice for GRO'd frames: an AF_PACKET ring with 12-byte virtio-net headers
# on the receiving end of a veth, under one iperf3 TCP stream whose sender has the default
# offloads (TSO: 64 KiB super-frames with partial checksums). For each ring — v2copy (2 KiB
# V2 slots, oversize frames through the socket queue), v2big (68 KiB V2 slots), v3 (256 KiB
# blocks) — reading alone and reading plus finishing every frame for an egress without
# offloads (Wire segmentation/completion): Gb/s read, kernel drops, truncations, reader CPU
# per GB, ring memory. Prints one line per run; no thresholds.
#
#   Scripts/bench/offload-ring.sh [SECONDS]      (default 5 s per run; root; names start with "tbr")
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
bin=$(swift build -c release --product wire-bench >&2 && echo .build/release/wire-bench)
o=tbro; i=tbri
cleanup() { ip netns del $o 2>/dev/null || true; ip netns del $i 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add $o; ip netns add $i
ip link add tbra netns $o type veth peer name tbrb netns $i
ip -n $o addr add 10.96.0.1/24 dev tbra; ip -n $i addr add 10.96.0.2/24 dev tbrb
ip -n $o link set tbra up; ip -n $i link set tbrb up; ip -n $o link set lo up; ip -n $i link set lo up

run() {  # run RING [--finish]
  ip netns exec $i timeout $((secs + 10)) iperf3 -s -1 -B 10.96.0.2 -p 5201 >/dev/null 2>&1 & local srv=$!
  for _ in $(seq 50); do ip netns exec $i ss -ltn | grep -q ':5201 ' && break; sleep 0.05; done
  local rdr=""
  if [ "$1" != none ]; then
    ip netns exec $i "$bin" ring --interface tbrb --ring "$1" --seconds $((secs + 1)) ${2:-} & rdr=$!
    sleep 0.3
  fi
  local gbps
  gbps=$(ip netns exec $o timeout $((secs + 10)) iperf3 -c 10.96.0.2 -p 5201 -t "$secs" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
  echo "iperf3 with reader ${1} ${2:-}: ${gbps} Gb/s"
  [ -n "$rdr" ] && wait "$rdr" || true
  wait "$srv" || true
}
run none
for r in v2copy v2big v3; do run $r; run $r --finish; done
