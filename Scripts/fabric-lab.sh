#!/usr/bin/env bash
# A three-host fabric on one machine: two Tapestry hosts and a Linux kernel VTEP.
#
#   Scripts/fabric-lab.sh [--non-interactive]
#
# Builds the underlay (Scripts/lab/fabric-underlay.sh: network namespaces flab-h1, flab-h2
# on a veth bridge with MTU 1600, and a kernel `vxlan` device, VNI 5000, in a bridge with a
# guest), writes a topology whose switch sw0 spans h1 and h2 over VXLAN with the kernel VTEP
# as a remote VTEP, and runs `tapestry up FILE --host h1` and `--host h2`. Then it shows:
# cross-host pings (untagged and VLAN 10, and to the kernel VTEP's guest), VLAN 20 kept
# apart, a capture on tunnel port h2 (inner frames), `ports` (tunnels and the underlay) and
# `fdb` with remote entries and their VTEPs, and keeps a ping running until Ctrl-C, which
# tears everything down.
#
# --non-interactive (or TAPESTRY_DEMO_NONINTERACTIVE=1): stop after the checks, tear down,
# exit 0 only if every check passed. TAPESTRY_BIN=PATH: use that binary (no setup, no build).
# FABRIC_LAB_PREFIX=P: name the namespaces P* and the topology Pfab (default flab).
set -euo pipefail
cd "$(dirname "$0")/.."
interactive=1
[ "${TAPESTRY_DEMO_NONINTERACTIVE:-0}" = 1 ] && interactive=0
for arg in "$@"; do
    case "$arg" in
        --non-interactive) interactive=0 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fabric-lab: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "fabric-lab: run as root (namespaces, TAP devices, raw sockets)" >&2; exit 1; }
if [ -n "${TAPESTRY_BIN:-}" ]; then bin=$TAPESTRY_BIN; else
    Scripts/setup.sh
    echo "==> building tapestry"
    swift build --product tapestry
    bin="$PWD/.build/debug/tapestry"
fi
p=${FABRIC_LAB_PREFIX:-flab}   # names every namespace and the topology (tests pass their own)
name=${p}fab
file=$(mktemp /tmp/tapestry-fabric-lab.XXXXXX.yaml)
step() { printf '\n==> %s\n' "$*"; }
failed=0
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then echo "ok: $what"; else echo "FAILED: $what"; failed=1; fi; }
cleanup() {
    trap - EXIT INT TERM
    step "tearing down"
    "$bin" down --name "$name" --host h1 || true
    "$bin" down --name "$name" --host h2 || true
    Scripts/lab/fabric-underlay.sh down "$p"
    rm -f "$file"
}
# A previous lab still up (or crashed) goes first.
for h in h1 h2; do [ -e "/run/tapestry/$name@$h.state" ] && "$bin" down --name "$name" --host "$h" >/dev/null 2>&1 || true; done
Scripts/lab/fabric-underlay.sh down "$p"
trap cleanup EXIT INT TERM

cat >"$file" <<YAML
name: $name
hosts:
  h1: {underlay: 10.77.0.1, netns: ${p}h1}
  h2: {underlay: 10.77.0.2, netns: ${p}h2}
switches:
  sw0:
    overlay:
      vni: 5000                                  # none → VNI 5000, VLAN 10 → VNI 5010
      remote-vteps:
        - {address: 10.77.0.9, vlans: [none]}    # the kernel VTEP (vxlan id 5000)
    port-groups:
      plain: {vlan: none}
      v10: {vlan: 10}
      v20: {vlan: 20}
guests:
  ${p}a1: {kind: netns, host: h1, nics: [{switch: sw0, port-group: plain, ip: 10.78.0.1/24}]}
  ${p}a2: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10, ip: 10.78.10.1/24}]}
  ${p}b1: {kind: netns, host: h2, nics: [{switch: sw0, port-group: plain, ip: 10.78.0.2/24}]}
  ${p}b2: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v10, ip: 10.78.10.2/24}]}
  ${p}b3: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v20, ip: 10.78.10.3/24}]}
YAML

step "the underlay: namespaces ${p}h1 ${p}h2 (Tapestry hosts), ${p}kv (kernel VTEP) and ${p}kg (its guest)"
Scripts/lab/fabric-underlay.sh up "$p"
step "tapestry up $file --host h1 / --host h2"
"$bin" up "$file" --host h1 --detach
"$bin" up "$file" --host h2 --detach

step "cross-host pings"
check "h1 → h2, untagged (VNI 5000)" ip netns exec ${p}a1 ping -c 2 -i 0.2 -W 1 10.78.0.2
check "h1 → h2, VLAN 10 (VNI 5010)" ip netns exec ${p}a2 ping -c 2 -i 0.2 -W 1 10.78.10.2
check "h1 → kernel VTEP's guest" ip netns exec ${p}a1 ping -c 2 -i 0.2 -W 1 10.78.0.9
check "kernel VTEP's guest → h2" ip netns exec ${p}kg ping -c 2 -i 0.2 -W 1 10.78.0.2
check "VLAN 10 cannot reach VLAN 20 on h2" bash -c "! ip netns exec ${p}a2 ping -c 1 -W 1 10.78.10.3"

step "a capture on tunnel port h2 of h1 (inner frames), during a ping"
pcap=$(mktemp /tmp/tapestry-fabric-lab.XXXXXX.pcapng)
timeout 10 "$bin" capture --name "$name" --host h1 --port h2 -c 4 -w "$pcap" & cap=$!
sleep 1
ip netns exec ${p}a1 ping -c 2 -i 0.2 -W 1 10.78.0.2 >/dev/null || true
wait "$cap" || true
tcpdump -e -nn -r "$pcap" 2>/dev/null | head -4
check "the capture holds inner ICMP frames" bash -c "tcpdump -nn -r '$pcap' 2>/dev/null | grep -q 'ICMP echo'"
rm -f "$pcap"

step "tapestry ports --host h1 (tunnels, and the underlay endpoint)"
"$bin" ports --name "$name" --host h1
step "tapestry fdb --host h1 (remote MACs behind tunnels, with their VTEPs)"
"$bin" fdb --name "$name" --host h1
check "fdb shows a remote entry with its VTEP" bash -c "'$bin' fdb --name $name --host h1 | grep -q 10.77.0.2"

if [ "$interactive" = 0 ]; then
    [ "$failed" = 0 ] && echo "fabric lab: every check passed" || echo "fabric lab: some checks FAILED"
    exit "$failed"
fi
step "pinging h2 from h1 across the overlay until Ctrl-C"
ip netns exec ${p}a1 ping 10.78.0.2 || true
