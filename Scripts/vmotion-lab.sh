#!/usr/bin/env bash
# VMotion and HA on one machine: three Tapestry hosts share one fabric whose state
# lives in etcd; a QEMU guest live-migrates between two of them, then its host dies and a
# survivor restarts it.
#
#   Scripts/vmotion-lab.sh [--non-interactive]
#
# Builds the underlay (Scripts/lab/ha-underlay.sh: namespaces vmlh1..vmlh3 on a bridge, etcd's
# address 10.77.0.100 and the isolation address 10.77.0.254 on the bridge), starts one etcd
# member there (Debian's etcd-server; raft timing tuned for a small machine), writes a
# topology (switch sw0 over VXLAN on all three hosts, a netns guest on each, a VM on h1 with
# `restart: on-failure`) and runs `tapestry up FILE --host hN` for each host. Then:
#   1. VMotion: `tapestry vm migrate VM --to h2 --host h1` while h2's guest pings the VM
#      every 20 ms: the migration's figures, the pings lost, the VM's MAC now behind h1's
#      tunnel port to h2, pings from both hosts.
#   2. HA: `kill -9` of h2's daemon and the VM's QEMU; the seconds until the VM answers again
#      from a survivor (lease TTL 3 s + grace 3 s + a boot), exactly one QEMU, `status`.
#   3. h2 comes back and starts nothing that moved (it reads the placement first).
# and keeps a ping running until Ctrl-C, which tears everything down.
#
# --non-interactive (or TAPESTRY_DEMO_NONINTERACTIVE=1): stop after the checks, tear down,
# exit 0 only if every check passed. TAPESTRY_BIN=PATH: use that binary (no setup, no build).
# VMOTION_LAB_PREFIX=P: name the namespaces P* and the topology Pfab (default vml).
# VMOTION_LAB_RESULTS=FILE: append the figures as KEY=VALUE lines (Scripts/bench/vmotion.sh).
# VMOTION_LAB_BACKEND=vhost-user|tap: the VM's NIC backend (default vhost-user, as in a file).
set -euo pipefail
cd "$(dirname "$0")/.."
interactive=1
[ "${TAPESTRY_DEMO_NONINTERACTIVE:-0}" = 1 ] && interactive=0
for arg in "$@"; do
    case "$arg" in
        --non-interactive) interactive=0 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "vmotion-lab: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done
backend=${VMOTION_LAB_BACKEND:-vhost-user}
case "$backend" in tap|vhost-user) ;; *) echo "vmotion-lab: VMOTION_LAB_BACKEND must be tap or vhost-user, not '$backend'" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "vmotion-lab: run as root (namespaces, TAP devices, QEMU)" >&2; exit 1; }
if [ -n "${TAPESTRY_BIN:-}" ]; then bin=$TAPESTRY_BIN; else
    Scripts/setup.sh
    echo "==> building tapestry"
    swift build --product tapestry
    bin="$PWD/.build/debug/tapestry"
fi
command -v etcd >/dev/null || { echo "vmotion-lab: etcd is not installed (apt-get install etcd-server; Scripts/setup.sh does)" >&2; exit 1; }
p=${VMOTION_LAB_PREFIX:-vml}   # names every namespace and the topology (tests pass their own)
name=${p}fab
vm=${p}vm
work=$(mktemp -d /tmp/tapestry-vmotion-lab.XXXXXX)
file=$work/fabric.yaml
etcd_pid=
step() { printf '\n==> %s\n' "$*"; }
failed=0
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then echo "ok: $what"; else echo "FAILED: $what"; failed=1; fi; }
qemus() { ps -eo args | grep -c "^[^ ]*qemu-system[^ ]* -name $vm " || true; }
cleanup() {
    trap - EXIT INT TERM
    step "tearing down"
    for h in h3 h2 h1; do "$bin" down --name "$name" --host "$h" >/dev/null 2>&1 || true; done
    [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null || true
    Scripts/lab/ha-underlay.sh down "$p"
    rm -rf "$work"
    for h in h1 h2 h3; do rm -rf "/var/log/tapestry/$name@$h"; done
}
# A previous lab still up (or crashed) goes first.
for h in h1 h2 h3; do [ -e "/run/tapestry/$name@$h.state" ] && "$bin" down --name "$name" --host "$h" >/dev/null 2>&1 || true; done
Scripts/lab/ha-underlay.sh down "$p"
trap cleanup EXIT INT TERM

step "the underlay: namespaces ${p}h1 ${p}h2 ${p}h3 on a bridge; etcd and the isolation address on it"
Scripts/lab/ha-underlay.sh up "$p" 3
ip netns exec "${p}ul" etcd --name m0 --data-dir "$work/etcd" \
    --listen-client-urls http://10.77.0.100:2379 --advertise-client-urls http://10.77.0.100:2379 \
    --listen-peer-urls http://10.77.0.100:2380 --initial-advertise-peer-urls http://10.77.0.100:2380 \
    --initial-cluster m0=http://10.77.0.100:2380 --heartbeat-interval 100 --election-timeout 1200 \
    >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 100); do grep -q "serving client" "$work/etcd.log" 2>/dev/null && break; sleep 0.1; done
echo "etcd (pid $etcd_pid) serves http://10.77.0.100:2379"

cat >"$file" <<YAML
name: $name
hosts:
  h1: {underlay: 10.77.0.1, netns: ${p}h1, cpus: 4, memory: 2G}
  h2: {underlay: 10.77.0.2, netns: ${p}h2, cpus: 4, memory: 2G}
  h3: {underlay: 10.77.0.3, netns: ${p}h3, cpus: 4, memory: 2G}
etcd: {endpoints: ["http://10.77.0.100:2379"]}
ha: {isolation-addresses: [10.77.0.254], isolation-response: none}
switches:
  sw0:
    overlay: {vni: 7000}
    port-groups:
      web: {vlan: 10}
guests:
  ${p}a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: web, ip: 10.79.0.1/24}]}
  ${p}b: {kind: netns, host: h2, nics: [{switch: sw0, port-group: web, ip: 10.79.0.2/24}]}
  ${p}c: {kind: netns, host: h3, nics: [{switch: sw0, port-group: web, ip: 10.79.0.3/24}]}
  $vm: {kind: qemu, host: h1, memory: 128M, restart: on-failure, nics: [{switch: sw0, port-group: web, backend: $backend, mac: "52:54:00:79:00:10", ip: 10.79.0.10/24}]}
YAML
step "tapestry up $file --host h1 / h2 / h3"
for h in h1 h2 h3; do "$bin" up "$file" --host "$h" --detach; done
sleep 1   # one poll of etcd (every 0.5 s), so each host has seen the others register
step "tapestry status --host h2 (the fabric as h2 sees it)"
"$bin" status --name "$name" --host h2 | sed -n '/^fabric/,$p'
check "h2's guest reaches the VM on h1" ip netns exec ${p}b ping -c 2 -i 0.2 -W 1 10.79.0.10

step "VMotion: vm migrate $vm --to h2 --host h1, while h2's guest pings it every 20 ms"
ip netns exec ${p}b ping -D -i 0.02 -W 1 10.79.0.10 >"$work/ping.txt" 2>&1 & pinger=$!
sleep 1
if "$bin" vm migrate "$vm" --to h2 --name "$name" --host h1 --json >"$work/migrate.json"; then echo "ok: migrated"; else echo "FAILED: migration"; failed=1; fi
sleep 1
kill -INT "$pinger"; wait "$pinger" 2>/dev/null || true
python3 - "$work/migrate.json" "$work/ping.txt" "${VMOTION_LAB_RESULTS:-/dev/null}" <<'PY' || true
import json, re, sys
m = json.load(open(sys.argv[1]))
lines = open(sys.argv[2]).read().splitlines()
stamps = [float(re.match(r"\[([0-9.]+)\]", l).group(1)) for l in lines if "bytes from" in l and l.startswith("[")]
sent = next((int(l.split()[0]) for l in lines if "packets transmitted" in l), 0)
gap = max((b - a for a, b in zip(stamps, stamps[1:])), default=0) * 1000
print(f"{m['guest']}: migrated from {m['from']} to {m['to']} in {m['total_seconds']:.2f} s (QEMU {m['qemu_total_milliseconds']} ms, "
      f"downtime {m['qemu_downtime_milliseconds']} ms by QEMU, {m['transferred_bytes'] / 1048576:.0f} MiB sent; "
      f"switch-over recorded in etcd in {m['commit_milliseconds']:.0f} ms)")
print(f"20 ms pings from h2 during the migration: {sent} sent, {len(stamps)} answered, {sent - len(stamps)} lost; "
      f"longest gap between answers {gap:.0f} ms")
with open(sys.argv[3], "a") as out:
    out.write(f"migration_total_seconds={m['total_seconds']}\nqemu_milliseconds={m['qemu_total_milliseconds']}\n"
              f"qemu_downtime_milliseconds={m['qemu_downtime_milliseconds']}\ncommit_milliseconds={m['commit_milliseconds']}\n"
              f"pings_sent={sent}\npings_lost={sent - len(stamps)}\nlongest_gap_milliseconds={gap:.0f}\n")
PY
check "the VM's MAC is behind h1's tunnel port to h2" bash -c "'$bin' fdb --name $name --host h1 | grep -q '52:54:00:79:00:10  h2'"
check "h1's guest reaches the VM on h2" ip netns exec ${p}a ping -c 2 -i 0.2 -W 1 10.79.0.10
check "h2's guest reaches the VM on h2" ip netns exec ${p}b ping -c 2 -i 0.2 -W 1 10.79.0.10
check "vm list shows it on h2" bash -c "'$bin' vm list --name $name --host h2 --json | python3 -c 'import json,sys; v=json.load(sys.stdin)[\"vms\"]; sys.exit(0 if v and v[0][\"host\"] == \"h2\" else 1)'"

step "HA: kill -9 of host h2 (its daemon and the VM's QEMU); a survivor restarts the VM"
daemon=$("$bin" status --name "$name" --host h2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
qemu=$(ps -eo pid,args | awk -v n="$vm" '$2 ~ /qemu-system/ && $0 ~ ("-name " n " ") {print $1}')
start=$(date +%s.%N)
kill -9 "$daemon" $qemu
answered=0
for _ in $(seq 1 600); do
    if ip netns exec ${p}a ping -c 1 -W 0.3 10.79.0.10 >/dev/null 2>&1; then answered=1; break; fi
done
end=$(date +%s.%N)
if [ "$answered" = 1 ]; then
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    echo "the VM answers again $secs s after the kill (lease TTL 3 s + grace 3 s + its boot)"
    echo "failover_seconds=$secs" >>"${VMOTION_LAB_RESULTS:-/dev/null}"
else echo "FAILED: the VM did not answer again"; failed=1; fi
check "exactly one QEMU runs the VM" test "$(qemus)" -eq 1
"$bin" status --name "$name" --host h1 | sed -n '/^fabric/,$p'

step "h2 comes back: it reads the placement first and starts nothing that moved"
"$bin" up "$file" --host h2 --detach
sleep 2
"$bin" status --name "$name" --host h2 | sed -n '/^fabric/,$p'
grep -h "fabric: " "/var/log/tapestry/$name@h2/daemon.log" | tail -3
check "h2 runs no VM" bash -c "! '$bin' vm list --name $name --host h2 | grep -q $vm"
check "still exactly one QEMU runs the VM" test "$(qemus)" -eq 1
check "h2's guest reaches the VM" ip netns exec ${p}b ping -c 2 -i 0.2 -W 1 10.79.0.10

if [ "$interactive" = 0 ]; then
    [ "$failed" = 0 ] && echo "vmotion lab: every check passed" || echo "vmotion lab: some checks FAILED"
    exit "$failed"
fi
step "pinging the VM from h2 until Ctrl-C"
ip netns exec ${p}b ping 10.79.0.10 || true
