#!/usr/bin/env bash
# The main job: install what is needed, build, bring up Topologies/demo.yaml (five network
# namespace guests on two VLANs, a trunk observer and a QEMU VM; the first run also builds
# the VM's guest image from Debian packages), show traffic flowing within a VLAN (to the VM
# too) and blocked across VLANs, then keep a ping running until Ctrl-C, which tears it all down.
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:-Topologies/demo.yaml}
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (TAP devices and network namespaces need it)" >&2; exit 1; }
Scripts/setup.sh
echo "==> building tapestry"
swift build --product tapestry
bin="$PWD/.build/debug/tapestry"
name=$(sed -n 's/^name:[[:space:]]*\([a-z0-9-]*\).*/\1/p' "$topology" | head -1)

step() { printf '\n==> %s\n' "$*"; }
cleanup() { trap - EXIT INT TERM; step "tearing down"; "$bin" down --name "$name" || true; }

# A previous demo that is still running (or crashed) is stopped first.
[ -e "/run/tapestry/$name.state" ] && "$bin" down --name "$name" >/dev/null 2>&1 || true
step "tapestry up $topology"
"$bin" up "$topology" --detach
trap cleanup EXIT INT TERM
"$bin" status

if [ "$name" = demo ]; then
    step "the trunk observer tap1 listens (802.1Q tags shown) while we ping"
    ip netns exec tap1 timeout 6 tcpdump -i eth0 --immediate-mode -e -nn -c 12 'vlan and (arp or icmp)' 2>/dev/null &
    sleep 1
    step "web1 -> web2 (same VLAN 10): should succeed"
    ip netns exec web1 ping -c 3 -i 0.3 -W 1 10.0.10.2
    step "web1 -> app1 (the QEMU VM in VLAN 10): should succeed"
    ip netns exec web1 ping -c 3 -i 0.3 -W 2 10.0.10.5
    "$bin" vm list
    step "db2 -> web1 (VLAN 20 -> VLAN 10, same subnet): must fail"
    if ip netns exec db2 ping -c 3 -i 0.3 -W 1 10.0.10.1; then echo "UNEXPECTED: crossed VLANs" >&2; exit 1; else echo "(blocked by the switch, as it should be)"; fi
    step "db1 -> broadcast ARP in VLAN 20 (seen tagged on the trunk)"
    ip netns exec db1 ping -c 1 -W 1 10.0.20.9 >/dev/null || true
    wait || true
    step "tapestry ports (counters, drops by reason)"
    "$bin" ports
    step "tapestry fdb (learned MACs)"
    "$bin" fdb
    step "traffic keeps flowing: web1 pings web2 until you press Ctrl-C"
    ip netns exec web1 ping -i 1 10.0.10.2 || true
else
    step "up; press Ctrl-C to tear down"
    while sleep 3600; do :; done
fi
