#!/usr/bin/env bash
# The main job: install what is needed, build, bring up a topology and show it working.
#
#   Scripts/demo.sh [--non-interactive] [TOPOLOGY]
#
# TOPOLOGY defaults to Topologies/demo.yaml: five network-namespace guests on VLANs 10 and 20,
# a trunk observer and a QEMU VM (the first run also builds the VM's guest image from Debian
# packages). For it the demo shows traffic flowing within a VLAN (to the VM too) and blocked
# across VLANs, broadcasts seen tagged on the trunk, the port counters and the MAC table, then
# keeps a ping running until Ctrl-C, which tears it all down. Any other topology file is
# brought up, shown with `status`, and kept until Ctrl-C.
#
# --non-interactive (or TAPESTRY_DEMO_NONINTERACTIVE=1): end after the checks instead of
# waiting for Ctrl-C, tear down, and exit 0 only if every check passed (for CI and tests).
# TAPESTRY_BIN=PATH: use that binary; skips Scripts/setup.sh and the build.
# Every command names its topology (--name), so the demo works while others run.
set -euo pipefail
cd "$(dirname "$0")/.."
interactive=1
[ "${TAPESTRY_DEMO_NONINTERACTIVE:-0}" = 1 ] && interactive=0
topology=Topologies/demo.yaml
for arg in "$@"; do
    case "$arg" in
        --non-interactive) interactive=0 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "demo: unknown option '$arg' (see --help)" >&2; exit 2 ;;
        *) topology=$arg ;;
    esac
done
[ -r "$topology" ] || { echo "demo: cannot read topology file '$topology'" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (TAP devices and network namespaces need it)" >&2; exit 1; }
if [ -n "${TAPESTRY_BIN:-}" ]; then
    bin=$TAPESTRY_BIN
else
    Scripts/setup.sh
    echo "==> building tapestry"
    swift build --product tapestry
    bin="$PWD/.build/debug/tapestry"
fi
name=$(sed -n 's/^name:[[:space:]]*["'\'']\{0,1\}\([a-z0-9-]*\).*/\1/p' "$topology" | head -1)
[ -n "$name" ] || { echo "demo: $topology has no 'name:' line" >&2; exit 2; }
t() { "$bin" "$@" --name "$name"; }

step() { printf '\n==> %s\n' "$*"; }
cleanup() { trap - EXIT INT TERM; step "tearing down"; "$bin" down --name "$name" || true; }

# A previous demo that is still running (or crashed) is stopped first.
if [ -e "/run/tapestry/$name.state" ]; then "$bin" down --name "$name" >/dev/null 2>&1 || true; fi
step "tapestry up $topology"
"$bin" up "$topology" --detach
trap cleanup EXIT INT TERM
t status

if [ "$name" = demo ]; then
    # tap1 only listens on its trunk. Its kernel still sends IPv6 router and neighbour
    # solicitations, untagged, when its link comes up; the trunk has no native VLAN, so the
    # switch drops them (untagged-on-trunk, on tap1.eth0). IPv6 off on it stops the chatter.
    ip netns exec tap1 sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1 || true
    step "the trunk observer tap1 listens (802.1Q tags shown) while we ping"
    ip netns exec tap1 timeout 6 tcpdump -i eth0 --immediate-mode -e -nn -c 12 'vlan and (arp or icmp)' 2>/dev/null &
    sleep 1
    step "web1 -> web2 (same VLAN 10): should succeed"
    ip netns exec web1 ping -c 3 -i 0.3 -W 1 10.0.10.2
    step "web1 -> app1 (the QEMU VM in VLAN 10): should succeed"
    ip netns exec web1 ping -c 3 -i 0.3 -W 2 10.0.10.5
    t vm list
    step "db2 -> web1 (VLAN 20 -> VLAN 10, same subnet): must fail"
    if ip netns exec db2 ping -c 3 -i 0.3 -W 1 10.0.10.1; then echo "UNEXPECTED: crossed VLANs" >&2; exit 1; else echo "(blocked by the switch, as it should be)"; fi
    step "db1 -> broadcast ARP in VLAN 20 (seen tagged on the trunk)"
    ip netns exec db1 ping -c 1 -W 1 10.0.20.9 >/dev/null || true
    wait || true
    step "tapestry ports (counters, drops by reason)"
    t ports
    echo "(untagged-on-trunk on tap1.eth0 counts the observer's own IPv6 chatter from before IPv6 was turned off on it: its trunk has no native VLAN)"
    step "tapestry fdb (learned MACs)"
    t fdb
    if [ "$interactive" = 1 ]; then
        step "traffic keeps flowing: web1 pings web2 until you press Ctrl-C"
        ip netns exec web1 ping -i 1 10.0.10.2 || true
    else
        step "checks passed (non-interactive: not waiting for Ctrl-C)"
    fi
elif [ "$interactive" = 1 ]; then
    step "up; press Ctrl-C to tear down"
    while sleep 3600; do :; done
else
    step "up (non-interactive: tearing down)"
fi
