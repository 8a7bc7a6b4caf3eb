#!/usr/bin/env bash
# A multi-host fabric's underlay on one machine, for the fabric lab and the
# system tests: hosts are network namespaces joined by a bridge (MTU 1600 unless MTU is set),
# plus a Linux kernel VTEP in a bridge with one guest.
#
#   fabric-underlay.sh up PREFIX [ipv4|ipv6]   creates:
#     PREFIXul   the underlay: bridge br0, one veth per host (MTU $MTU, default 1600)
#     PREFIXh1   host h1's namespace, 10.77.0.1/24 (fd77::1/64) on ul0
#     PREFIXh2   host h2's namespace, 10.77.0.2/24 (fd77::2/64) on ul0
#     PREFIXkv   the kernel VTEP: 10.77.0.9 (fd77::9) on ul0, vxlan vx0 (VNI $VNI, default
#                5000, dstport 4789, flooding to .1 and .2) in bridge br0 with …
#     PREFIXkg   … its guest: eth0 10.78.0.9/24
#   fabric-underlay.sh down PREFIX             removes every PREFIX* namespace above
#
# Names are PREFIX-ed so tests never collide; only these namespaces are touched.
set -euo pipefail
cmd=${1:?usage: fabric-underlay.sh up|down PREFIX [ipv4|ipv6]}
p=${2:?usage: fabric-underlay.sh up|down PREFIX [ipv4|ipv6]}
family=${3:-ipv4}
mtu=${MTU:-1600}
vni=${VNI:-5000}

down() {
    for ns in "${p}kg" "${p}kv" "${p}h2" "${p}h1" "${p}ul"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

if [ "$cmd" = down ]; then down; exit 0; fi
[ "$cmd" = up ] || { echo "fabric-underlay.sh: unknown command $cmd" >&2; exit 2; }
trap 'down' ERR

if [ "$family" = ipv6 ]; then
    addr() { echo "fd77::$1"; }; plen=64; vtep_args="local fd77::9"
else
    addr() { echo "10.77.0.$1"; }; plen=24; vtep_args="local 10.77.0.9"
fi

ip netns add "${p}ul"
ip -n "${p}ul" link add br0 type bridge
ip -n "${p}ul" link set br0 mtu "$mtu" up
ip -n "${p}ul" link set lo up
for h in h1:1 h2:2 kv:9; do
    name=${h%%:*}; n=${h##*:}
    ip netns add "${p}${name}"
    ip -n "${p}${name}" link set lo up
    sysctl -q -w net.ipv6.conf.all.accept_dad=0 >/dev/null 2>&1 || true
    ip -n "${p}ul" link add "u${name}" mtu "$mtu" type veth peer name ul0 netns "${p}${name}"
    ip -n "${p}ul" link set "u${name}" master br0 up
    ip netns exec "${p}${name}" sysctl -q -w net.ipv6.conf.ul0.accept_dad=0
    ip -n "${p}${name}" link set ul0 mtu "$mtu" up
    ip -n "${p}${name}" addr add "$(addr "$n")/$plen" dev ul0 nodad 2>/dev/null || ip -n "${p}${name}" addr add "$(addr "$n")/$plen" dev ul0
done

# The kernel VTEP: a vxlan device in a bridge with one guest.
ip -n "${p}kv" link add vx0 type vxlan id "$vni" $vtep_args dstport 4789 dev ul0
ip netns exec "${p}kv" bridge fdb append 00:00:00:00:00:00 dev vx0 dst "$(addr 1)"
ip netns exec "${p}kv" bridge fdb append 00:00:00:00:00:00 dev vx0 dst "$(addr 2)"
ip -n "${p}kv" link add br0 type bridge
ip -n "${p}kv" link set vx0 master br0 up
# A physical NIC finishes a guest's partial TCP/UDP checksum inside VXLAN (tunnel checksum
# offload) before the wire; a veth never does, so with vx0's default offloads the kernel
# VTEP's guest would send TCP whose inner checksum is never computed. Turning vx0's tx
# checksumming off makes the kernel finish it in software, as the NIC would.
ip netns exec "${p}kv" ethtool -K vx0 tx off >/dev/null 2>&1 || true
ip netns add "${p}kg"
ip -n "${p}kg" link set lo up
ip -n "${p}kv" link add kg type veth peer name eth0 netns "${p}kg"
ip -n "${p}kv" link set kg master br0 up
ip -n "${p}kv" link set br0 up
ip -n "${p}kg" link set eth0 address 02:00:00:77:00:09 up
ip -n "${p}kg" addr add 10.78.0.9/24 dev eth0
echo "fabric underlay $p is up ($family, MTU $mtu)"
