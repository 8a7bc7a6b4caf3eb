#!/usr/bin/env bash
# Overlay benchmark: guest to guest across two hosts, through Tapestry's VXLAN
# tunnels vs the same two-host path through Linux's vxlan device and bridge, side by side in
# one run. Hosts are network namespaces on a veth underlay bridge (MTU 1600,
# Scripts/lab/fabric-underlay.sh); each setup gets its own underlay, so nothing is shared.
#
#   Scripts/bench/overlay.sh [SECONDS] [ROUNDS]     (default 10 s, 3 rounds; as root)
#
# Measures per setup: TCP single stream (iperf3, Gb/s) and 64-byte frames across the tunnel
# (iperf3 UDP with 18-byte payloads — 64-byte inner frames — unlimited rate; packets per
# second the receiver got). Writes Scripts/bench/overlay-results.md (publish.py copies it
# into README.md's `overlay-results` block when that block exists).
#
# Both setups' guests keep their default offloads (TSO, partial checksums): Tapestry cuts a
# guest's GSO frame into segments and finishes checksums before encapsulating each segment
# (Wire.SoftwareOffload), sends a frame's segments to the other host as UDP GSO runs
# (UDP_SEGMENT), and the receiving host, reading them with UDP_GRO, coalesces them back into
# one GSO frame for its guest (Wire.TCPCoalescer); the kernel hands GSO through its vxlan
# device. Two daemons and both iperf3 ends share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
rounds=${2:-3}
[ "$(id -u)" -eq 0 ] || { echo "overlay bench: run as root" >&2; exit 1; }
bin=${TAPESTRY_BIN:-$PWD/.build/release/tapestry}
if [ -z "${TAPESTRY_BIN:-}" ]; then swift build -c release --product tapestry >/dev/null; fi
out=Scripts/bench/overlay-results.md
p=${OVERLAY_BENCH_PREFIX:-ob}; tp=${p}t; kp=${p}k   # OVERLAY_BENCH_PREFIX: run beside another copy
file=$(mktemp /tmp/tapestry-overlay-bench.XXXXXX.yaml)

cleanup() {
    "$bin" down --name ${tp}fab --host h1 >/dev/null 2>&1 || true
    "$bin" down --name ${tp}fab --host h2 >/dev/null 2>&1 || true
    Scripts/lab/fabric-underlay.sh down $tp
    Scripts/lab/fabric-underlay.sh down $kp
    for ns in ${kp}ga ${kp}gb; do ip netns del $ns 2>/dev/null || true; done
    rm -f "$file"
}
trap cleanup EXIT
cleanup

# --- Tapestry: sw0 spans h1 and h2; one guest on each.
Scripts/lab/fabric-underlay.sh up $tp >/dev/null
cat >"$file" <<YAML
name: ${tp}fab
hosts:
  h1: {underlay: 10.77.0.1, netns: ${tp}h1}
  h2: {underlay: 10.77.0.2, netns: ${tp}h2}
switches:
  sw0:
    overlay: {vni: 5000}
    port-groups: {plain: {vlan: none}}
guests:
  ${tp}ga: {kind: netns, host: h1, nics: [{switch: sw0, port-group: plain, ip: 10.79.0.1/24}]}
  ${tp}gb: {kind: netns, host: h2, nics: [{switch: sw0, port-group: plain, ip: 10.79.0.2/24}]}
YAML
"$bin" up "$file" --host h1 --detach >/dev/null
"$bin" up "$file" --host h2 --detach >/dev/null

# --- Kernel: in each host namespace a vxlan device (VNI 5000) in a bridge with a veth guest.
Scripts/lab/fabric-underlay.sh up $kp >/dev/null
for h in h1:1:2:ga h2:2:1:gb; do
    IFS=: read -r name me peer guest <<<"$h"
    ns=${kp}$name
    ip -n $ns link add vx0 type vxlan id 5000 local 10.77.0.$me dstport 4789 dev ul0
    ip netns exec $ns bridge fdb append 00:00:00:00:00:00 dev vx0 dst 10.77.0.$peer
    ip -n $ns link add br0 type bridge
    ip -n $ns link set vx0 master br0 up
    ip netns add ${kp}$guest
    ip -n ${kp}$guest link set lo up
    ip -n $ns link add g type veth peer name eth0 netns ${kp}$guest
    ip -n $ns link set g master br0 up
    ip -n $ns link set br0 up
    ip -n ${kp}$guest link set eth0 mtu 1500 up
    ip -n ${kp}$guest addr add 10.79.0.$me/24 dev eth0
done

tcp() {   # tcp A B → Gb/s
    ip netns exec "$2" iperf3 -s -1 -D >/dev/null; sleep 0.3
    ip netns exec "$1" iperf3 -c 10.79.0.2 -t "$seconds" -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
pps() {   # pps A B → Mpps received
    ip netns exec "$2" iperf3 -s -1 -D >/dev/null; sleep 0.3
    ip netns exec "$1" iperf3 -c 10.79.0.2 -u -b 0 -l 18 -t "$seconds" -J 2>/dev/null | python3 -c '
import json,sys
e = json.load(sys.stdin)["end"]["sum"]
print("%.3f" % ((e["packets"] - e["lost_packets"]) / e["seconds"] / 1e6))'
}
ip netns exec ${tp}ga ping -c 2 -W 1 10.79.0.2 >/dev/null && ip netns exec ${kp}ga ping -c 2 -W 1 10.79.0.2 >/dev/null \
    || { echo "overlay bench: a path does not ping" >&2; exit 1; }

declare -a tt kt tpps kpps
for r in $(seq 1 "$rounds"); do
    kt+=("$(tcp ${kp}ga ${kp}gb)"); tt+=("$(tcp ${tp}ga ${tp}gb)")
    kpps+=("$(pps ${kp}ga ${kp}gb)"); tpps+=("$(pps ${tp}ga ${tp}gb)")
    echo "round $r: TCP kernel ${kt[-1]} Gb/s, Tapestry ${tt[-1]} Gb/s; 64B kernel ${kpps[-1]} Mpps, Tapestry ${tpps[-1]} Mpps" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mt=$(median "${tt[@]}"); mk=$(median "${kt[@]}"); mtp=$(median "${tpps[@]}"); mkp=$(median "${kpps[@]}")
ratio() { python3 -c "print('%.2f' % ($1 / $2 if $2 else 0))"; }
{
    echo "# Overlay results"
    echo "Generated by \`Scripts/bench/overlay.sh\` — do not edit by hand."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) cores; $rounds round(s) of $seconds s"
    echo "- two hosts as network namespaces on a veth underlay bridge (MTU 1600), one guest each, VNI 5000, IPv4 underlay"
    echo "- Tapestry: two daemons (\`up --host h1\`, \`--host h2\`), guests' offloads on: a GSO frame is cut into segments in software, sent as UDP GSO runs, and coalesced back into one GSO frame by the receiving host; kernel: vxlan device + bridge per host, guests' offloads on"
    echo "- release build of commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); the machine is shared with other jobs (compare the rounds)"
    echo
    echo "| metric | Tapestry VXLAN | kernel vxlan + bridge | Tapestry/kernel | rounds (Tapestry; kernel) |"
    echo "|---|---:|---:|---:|---|"
    echo "| TCP 1 stream guest to guest across hosts (Gb/s, higher is better) | $mt | $mk | $(ratio "$mt" "$mk") | ${tt[*]}; ${kt[*]} |"
    echo "| 64-byte frames across the tunnel (Mpps received, higher is better) | $mtp | $mkp | $(ratio "$mtp" "$mkp") | ${tpps[*]}; ${kpps[*]} |"
} >"$out"
cat "$out"
