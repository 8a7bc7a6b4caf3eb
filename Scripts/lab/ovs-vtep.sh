#!/usr/bin/env bash
# Open vSwitch as a remote VTEP on a fabric underlay (the overlay's interop test): OVS 3.x in
# userspace (`datapath_type=netdev`) with a `type=vxlan` port, started here without systemd.
#
#   ovs-vtep.sh up PREFIX REMOTE_IP VNI    (after fabric-underlay.sh up PREFIX)
#     PREFIXov   OVS's namespace: ul0 on the underlay bridge in bridge br-phy, which holds
#                10.77.0.8/24 (userspace tunnels route through an OVS bridge); bridge br-int
#                with port vx0 (type=vxlan, remote_ip=REMOTE_IP, key=VNI) and port gv, a veth to …
#     PREFIXog   … OVS's guest: eth0 02:00:00:77:00:08, 10.78.0.8/24
#   ovs-vtep.sh down PREFIX                stops ovs-vswitchd and ovsdb-server (by pid), removes both namespaces
set -euo pipefail
cmd=${1:?usage: ovs-vtep.sh up|down PREFIX [REMOTE_IP VNI]}
p=${2:?prefix}
d=/tmp/tapestry-${p}-ovs
ovsc() { ovs-vsctl --db=unix:"$d/db.sock" --timeout=10 "$@"; }
down() {
    for f in vswitchd ovsdb; do
        [ -f "$d/$f.pid" ] && kill "$(cat "$d/$f.pid")" 2>/dev/null || true
    done
    sleep 0.3
    ip netns del "${p}og" 2>/dev/null || true
    ip netns del "${p}ov" 2>/dev/null || true
    rm -rf "$d"
}
if [ "$cmd" = down ]; then down; exit 0; fi
remote=${3:?remote IP}; vni=${4:?VNI}
trap down ERR
command -v ovs-vswitchd >/dev/null || { echo "ovs-vtep: openvswitch-switch is not installed" >&2; exit 1; }
ip netns add "${p}ov"
ip -n "${p}ov" link set lo up
ip -n "${p}ul" link add uov mtu 1600 type veth peer name ul0 netns "${p}ov"
ip -n "${p}ul" link set uov master br0 up
ip -n "${p}ov" link set ul0 mtu 1600 up
ip netns add "${p}og"
ip -n "${p}og" link set lo up
ip -n "${p}ov" link add gv type veth peer name eth0 netns "${p}og"
ip -n "${p}ov" link set gv up
ip -n "${p}og" link set eth0 address 02:00:00:77:00:08 up
ip -n "${p}og" addr add 10.78.0.8/24 dev eth0
# OVS's userspace datapath reads gv with AF_PACKET and does not finish a partial checksum,
# which a veth hands over as it is: the guest computes its own (as with a NIC without offloads).
ip netns exec "${p}og" ethtool -K eth0 tx off >/dev/null 2>&1 || true
rm -rf "$d"; mkdir -p "$d"
export OVS_RUNDIR="$d" OVS_DBDIR="$d" OVS_LOGDIR="$d"
ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$d/conf.db" --remote=punix:"$d/db.sock" --pidfile="$d/ovsdb.pid" --detach \
    --log-file="$d/ovsdb.log" --unixctl="$d/ovsdb.ctl" --no-chdir
ovsc --no-wait init
ip netns exec "${p}ov" ovs-vswitchd unix:"$d/db.sock" --pidfile="$d/vswitchd.pid" --detach \
    --log-file="$d/vswitchd.log" --unixctl="$d/vswitchd.ctl" --no-chdir
ovsc add-br br-phy -- set Bridge br-phy datapath_type=netdev -- add-port br-phy ul0
ip -n "${p}ov" link set br-phy mtu 1600 up
ip -n "${p}ov" addr add 10.77.0.8/24 dev br-phy
ovsc add-br br-int -- set Bridge br-int datapath_type=netdev -- add-port br-int gv \
    -- add-port br-int vx0 -- set Interface vx0 type=vxlan options:remote_ip="$remote" options:key="$vni"
ip -n "${p}ov" link set br-int up
echo "OVS VTEP 10.77.0.8 (remote $remote, VNI $vni) is up"
