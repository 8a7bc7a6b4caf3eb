#!/usr/bin/env bash
# The underlay of a fabric with its state in etcd, on one machine, for the VMotion
# and HA lab and system tests: hosts are network namespaces joined by a bridge; etcd and the
# hosts' isolation address live on the bridge's own namespace, so a host reaches both only
# over its underlay link (take the link down and the host is isolated, as a cut cable would).
#
#   ha-underlay.sh up PREFIX [HOSTS]   creates (HOSTS: how many hosts, default 3, at most 9):
#     PREFIXul   the underlay: bridge br0 (MTU $MTU, default 1600) holding
#                  10.77.0.100/24  where the test's etcd members listen
#                  10.77.0.254/24  the isolation address (answers pings)
#     PREFIXhN   host hN's namespace: 10.77.0.N/24 on ul0 (a veth into br0), N = 1..HOSTS
#   ha-underlay.sh cut PREFIX N        takes host hN's underlay link down (isolates it)
#   ha-underlay.sh mend PREFIX N       brings it up again
#   ha-underlay.sh down PREFIX         removes every namespace above
#
# Names are PREFIX-ed so tests never collide; only these namespaces are touched. etcd itself
# is started by the caller (Tests/TestSupport/EtcdCluster.swift, or Scripts/vmotion-lab.sh)
# inside PREFIXul on 10.77.0.100.
set -euo pipefail
usage="usage: ha-underlay.sh up PREFIX [HOSTS] | cut|mend PREFIX N | down PREFIX"
cmd=${1:?$usage}
p=${2:?$usage}
mtu=${MTU:-1600}

down() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${p}(ul|h[1-9])$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

case "$cmd" in
down) down; exit 0 ;;
cut) ip -n "${p}h${3:?$usage}" link set ul0 down; exit 0 ;;
mend) ip -n "${p}h${3:?$usage}" link set ul0 up; exit 0 ;;
up) ;;
*) echo "ha-underlay.sh: unknown command $cmd ($usage)" >&2; exit 2 ;;
esac

hosts=${3:-3}
[[ "$hosts" =~ ^[1-9]$ ]] || { echo "ha-underlay.sh: HOSTS must be 1..9" >&2; exit 2; }
trap 'down' ERR

ip netns add "${p}ul"
ip -n "${p}ul" link set lo up
ip -n "${p}ul" link add br0 type bridge
ip -n "${p}ul" link set br0 mtu "$mtu" up
ip -n "${p}ul" addr add 10.77.0.100/24 dev br0
ip -n "${p}ul" addr add 10.77.0.254/24 dev br0
for n in $(seq 1 "$hosts"); do
    ns="${p}h${n}"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "${p}ul" link add "uh${n}" mtu "$mtu" type veth peer name ul0 netns "$ns"
    ip -n "${p}ul" link set "uh${n}" master br0 up
    ip -n "$ns" link set ul0 mtu "$mtu" up
    ip -n "$ns" addr add "10.77.0.${n}/24" dev ul0
done
echo "ha underlay $p is up: $hosts host(s), etcd address 10.77.0.100, isolation address 10.77.0.254 (MTU $mtu)"
