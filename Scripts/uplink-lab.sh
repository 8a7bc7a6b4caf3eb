#!/usr/bin/env bash
# NIC teaming on this machine: builds a "physical network" of veth pairs (labnic0/1 here, their
# peers on a Linux bridge in namespace uplab-up, an external host 10.80.0.200 in uplab-ext),
# runs Topologies/uplinks.yaml, and shows a failover and a failback with notify-switches.
# Everything it creates is removed on exit (also on Ctrl-C). Every command names the topology
# (--name uplab), so the lab works while other topologies run. TAPESTRY_BIN=PATH uses that
# binary (no setup, no build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "uplink-lab: run as root" >&2; exit 1; }
[ -n "${TAPESTRY_BIN:-}" ] || Scripts/setup.sh
if [ -n "${TAPESTRY_BIN:-}" ]; then bin=$TAPESTRY_BIN; else swift build --product tapestry; bin="$PWD/.build/debug/tapestry"; fi
up=uplab-up ext=uplab-ext
step() { printf '\n==> %s\n' "$*"; }
cleanup() {
    trap - EXIT INT TERM
    step "tearing down"
    "$bin" down --name uplab >/dev/null 2>&1 || true
    ip netns del $up 2>/dev/null || true; ip netns del $ext 2>/dev/null || true
    ip link del labnic0 2>/dev/null || true; ip link del labnic1 2>/dev/null || true
}
cleanup; trap cleanup EXIT INT TERM
step "physical network: labnic0/1 -> bridge in $up -> external host 10.80.0.200 in $ext"
ip netns add $up; ip netns add $ext
ip -n $up link add br0 type bridge; ip -n $up link set br0 up
for i in 0 1; do
    ip link add labnic$i type veth peer name uplink$i netns $up
    ip -n $up link set uplink$i master br0
    ip netns exec $up ethtool -K uplink$i tx off tso off gso off >/dev/null   # a wire carries finished frames
    ip -n $up link set uplink$i up; ip link set labnic$i up
done
ip link add labext type veth peer name extport netns $up
ip link set labext netns $ext
ip -n $up link set extport master br0; ip -n $up link set extport up
ip -n $ext addr add 10.80.0.200/24 dev labext; ip -n $ext link set labext up
ip netns exec $ext ethtool -K labext tx off tso off gso off >/dev/null
step "tapestry up Topologies/uplinks.yaml"
"$bin" up Topologies/uplinks.yaml --detach
for g in web1 web2 web3; do ip netns exec $g ping -c 1 -W 1 10.80.0.200 >/dev/null && echo "$g reaches the external host"; done
ip netns exec lab1 ping -c 1 -W 1 10.80.0.200 >/dev/null && echo "UNEXPECTED: lab1 got out" || echo "lab1 (uplinks: none) cannot get out, as it should"
"$bin" ports --name uplab
step "upstream bridge: where the guests' MACs are"
ip netns exec $up bridge fdb show br br0 | grep -v permanent
step "pulling the cable of uplink0 (its peer goes down) while web1 pings every 10 ms"
ip netns exec web1 ping -i 0.01 -c 200 -q 10.80.0.200 &
sleep 0.5; ip -n $up link set uplink0 down; wait || true
"$bin" ports --name uplab | tail -2
ip netns exec $up bridge fdb show br br0 | grep -v permanent
step "cable back: failback"
ip -n $up link set uplink0 up; sleep 1
"$bin" ports --name uplab | tail -2
tail -6 /var/log/tapestry/uplab/daemon.log
