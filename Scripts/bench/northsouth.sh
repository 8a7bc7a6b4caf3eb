#!/usr/bin/env bash
# North–south benchmark: an outside host ↔ a guest across a veth uplink, TCP one
# stream in both directions, side by side in one run:
#   bridge    the Linux bridge, with the veth as a bridge port and the guest on a veth
#   ovs       Open vSwitch userspace (datapath_type=netdev, userspace-tso-enable=true), the
#             veth as a `system` port, the guest on a `type=tap` port
#   tapestry  this tree's release build: the veth as an uplink, the guest a netns guest
#   before    Tapestry before the north–south offloads (the parent of the commit that brought
#             them; built once by this script into .build-bench/, then reused)
#
#   Scripts/bench/northsouth.sh [--quick] [--rounds N]
#
# Workload: outside host = netns with the veth's far end (10.91.0.200/24, its default
# offloads: TSO, partial checksums, GRO); guest 10.91.0.1/24. iperf3 one stream for DUR s,
# guest → outside (client in the guest) and outside → guest (client outside). Measured per
# direction: Gb/s, the switch process's CPU (% of one core; the kernel bridge has no process)
# and the whole machine's busy CPU (cores, /proc/stat, iperf3 ends included), each per Gb/s.
# Setups run one at a time, alternately, for N rounds (default 3; --quick: 1 round of 3 s);
# medians. Writes Scripts/bench/northsouth-results.md and, after a full run, the README's
# `northsouth-results` block (publish.py).
#
# Needs root on Debian: iperf3, jq, openvswitch-switch (installed with apt-get when missing).
# Every namespace and link it creates starts with `bs`; everything is removed on exit; only
# processes it started are stopped, by PID.
# Environment: TAPESTRY=path (this tree's binary instead of its release build),
# BENCH_BEFORE=REV (the "before" revision; default: the parent of the north–south commit),
# BENCH_SETUPS="bridge ovs tapestry before" (subset/order).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 27 "$@"
SETUPS=(${BENCH_SETUPS:-bridge ovs tapestry before})
GUEST_IP=10.91.0.1
OUT_IP=10.91.0.200
TCK=$(getconf CLK_TCK)
[ "$(id -u)" = 0 ] || { echo "northsouth.sh: must run as root" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; }

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v jq >/dev/null || need+=(jq)
command -v ovs-vswitchd >/dev/null || need+=(openvswitch-switch)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/tmp/bs-bench-apt.log 2>&1 ||
    { echo "northsouth.sh: apt-get install ${need[*]} failed (see /tmp/bs-bench-apt.log)" >&2; exit 1; }
fi
for ns in bsout bsg; do
  ip netns list | awk '{print $1}' | grep -qx "$ns" && { echo "northsouth.sh: namespace $ns exists; remove it first" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/tapestry-northsouth.XXXXXX)
RES="$TMP/results.tsv"; : >"$RES"
declare -A NOTE
OVSDB_PID="" VSWITCHD_PID="" IPERF_PID="" UP_NAME="" UP_BIN="" SW_PID=""

# ---------------------------------------------------------------- binaries
TAPESTRY=${TAPESTRY:-$(release_binary tapestry)}
BEFORE_SHA=""
BEFORE=""
if [[ " ${SETUPS[*]} " == *" before "* ]]; then
  rev=${BENCH_BEFORE:-$(commit_before 'North-south offloads: 12-byte')}
  if [ -z "$rev" ]; then NOTE[before]="no north-south commit in this history (set BENCH_BEFORE)"
  elif out=$(revision_binary "$rev"); then read -r BEFORE BEFORE_SHA <<<"$out"
  else NOTE[before]="could not build the before binary: $out"; log "${NOTE[before]}"; fi
fi

# ---------------------------------------------------------------- setups
# The outside host: netns bsout whose eth0 is the far end of the veth `bsnic` (NS = where
# bsnic goes: "" for the root namespace).
outside_up() {
  ip netns add bsout || return 1
  ip link add bsnic type veth peer name eth0 netns bsout || return 1
  ip -n bsout addr add $OUT_IP/24 dev eth0 && ip -n bsout link set eth0 up && ip -n bsout link set lo up || return 1
  ip link set bsnic up
}
down_all() {
  set +e
  kill_pid "$IPERF_PID"; IPERF_PID=""
  if [ -n "$UP_NAME" ]; then "$UP_BIN" down --name "$UP_NAME" >/dev/null 2>&1 || log "tapestry down --name $UP_NAME failed"; UP_NAME=""; fi
  if [ -n "$VSWITCHD_PID" ]; then ovsc --timeout=5 -- --if-exists del-br bsovs0 >/dev/null 2>&1; fi
  kill_pid "$VSWITCHD_PID"; VSWITCHD_PID=""
  kill_pid "$OVSDB_PID"; OVSDB_PID=""
  ip netns del bsout 2>/dev/null; ip netns del bsg 2>/dev/null
  ip link del bsnic 2>/dev/null; ip link del bsbg0 2>/dev/null; ip link del bsbr0 2>/dev/null; ip link del bsovt 2>/dev/null
  set -e
}
cleanup() { down_all; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

up_bridge() {
  outside_up || return 1
  ip link add bsbr0 type bridge && ip link set bsbr0 up || return 1
  ip link set bsnic master bsbr0 || return 1
  ip netns add bsg && ip link add bsbg0 type veth peer name eth0 netns bsg || return 1
  ip link set bsbg0 master bsbr0 up || return 1
  ip -n bsg addr add $GUEST_IP/24 dev eth0 && ip -n bsg link set eth0 up && ip -n bsg link set lo up || return 1
  SW_PID=""
}
ovsc() { ovs-vsctl --db=unix:"$TMP/ovs/db.sock" "$@"; }
up_ovs() {
  local d="$TMP/ovs" i
  outside_up || return 1
  ovs_start "$d" ovs-vswitchd other_config:userspace-tso-enable=true || return 1
  ovsc --timeout=10 add-br bsovs0 -- set Bridge bsovs0 datapath_type=netdev \
    -- add-port bsovs0 bsnic \
    -- add-port bsovs0 bsovt -- set Interface bsovt type=tap || return 1
  for i in $(seq 50); do ip link show bsovt >/dev/null 2>&1 && break; sleep 0.1; done
  # OVS keeps the tap's fd and follows the device into the namespace.
  ip netns add bsg && ip link set bsovt netns bsg || return 1
  ip -n bsg addr add $GUEST_IP/24 dev bsovt && ip -n bsg link set bsovt up && ip -n bsg link set lo up || return 1
  SW_PID=$VSWITCHD_PID
}
tapestry_up() {  # tapestry_up BINARY NAME
  local f="$TMP/$2.yaml"
  cat >"$f" <<EOF
name: $2
switches:
  bssw:
    uplinks: {nics: [bsnic]}
    port-groups:
      lan: {vlan: none}
guests:
  bsg: {kind: netns, nics: [{switch: bssw, port-group: lan, ip: $GUEST_IP/24}]}
EOF
  outside_up || return 1
  UP_NAME=$2 UP_BIN=$1
  "$1" up "$f" --detach || return 1
  SW_PID=$("$1" status --name "$2" --json | jq -r .pid) || return 1
  [ -n "$SW_PID" ] && [ -d "/proc/$SW_PID" ] || { echo "no daemon pid from tapestry status"; return 1; }
}
up_tapestry() { tapestry_up "$TAPESTRY" bsnow; }
up_before() { [ -n "$BEFORE" ] || { echo "no before binary"; return 1; }; tapestry_up "$BEFORE" bsold; }

# ---------------------------------------------------------------- metrics
cpu_ticks() { [ -n "$1" ] && awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" || echo 0; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

tcp() {  # tcp SETUP ROUND DIRECTION(out|in)
  local s=$1 r=$2 dir=$3 client server dst out c0 c1 b0 b1 t0 t1 gbps
  if [ "$dir" = out ]; then client=bsg server=bsout dst=$OUT_IP; else client=bsout server=bsg dst=$GUEST_IP; fi
  rm -f "$TMP/iperf.pid"
  ip netns exec $server iperf3 -s -1 -D -I "$TMP/iperf.pid" >/dev/null
  for _ in $(seq 50); do [ -s "$TMP/iperf.pid" ] && break; sleep 0.1; done
  IPERF_PID=$(tr -d '\0 \n' <"$TMP/iperf.pid"); sleep 0.3
  c0=$(cpu_ticks "$SW_PID"); b0=$(busy_ticks); t0=$(now)
  # A TCP that never connects (the old partial-checksum bug) must not hang the run.
  if ! out=$(timeout $((DUR + 20)) ip netns exec $client iperf3 -c $dst -t "$DUR" --connect-timeout 5000 -J); then
    log "$s: iperf3 ($dir) failed: $(echo "$out" | jq -r .error 2>/dev/null)"
    kill_pid "$IPERF_PID"; IPERF_PID=""
    record "$s" "gbps-$dir" "$r" 0; record "$s" "failed-$dir" "$r" 1
    return 0
  fi
  t1=$(now); c1=$(cpu_ticks "$SW_PID"); b1=$(busy_ticks)
  kill_pid "$IPERF_PID"; IPERF_PID=""
  # iperf3 may connect its control channel and still move no data (the same bug): no
  # receiver sum then, and it counts as a failure too.
  gbps=$(echo "$out" | jq '(.end.sum_received.bits_per_second // 0) / 1e9')
  record "$s" "gbps-$dir" "$r" "$gbps"
  if [ "$(echo "$gbps" | awk '{ print ($1 > 0) }')" = 0 ]; then log "$s: iperf3 ($dir) moved no data"; record "$s" "failed-$dir" "$r" 1; return 0; fi
  [ -n "$SW_PID" ] && record "$s" "swcpu-$dir" "$r" "$(echo "$c0 $c1 $t0 $t1 $TCK" | awk '{ printf "%.1f", ($2 - $1) / $5 / ($4 - $3) * 100 }')"
  record "$s" "busy-$dir" "$r" "$(echo "$b0 $b1 $t0 $t1 $TCK" | awk '{ printf "%.2f", ($2 - $1) / $5 / ($4 - $3) }')"
  sleep 0.5
}

for r in $(seq "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do
    [ -n "${NOTE[$s]:-}" ] && continue
    log "round $r/$ROUNDS: $s"
    if ! "up_$s" >"$TMP/up-$s.log" 2>&1; then
      NOTE[$s]="setup failed: $(tail -1 "$TMP/up-$s.log")"; log "$s: ${NOTE[$s]}"; down_all; continue
    fi
    if ! ip netns exec bsg ping -c 3 -i 0.2 -W 1 -q $OUT_IP >/dev/null; then
      NOTE[$s]="no connectivity guest → outside"; log "$s: ${NOTE[$s]}"; down_all; continue
    fi
    tcp "$s" "$r" out
    tcp "$s" "$r" in
    down_all
  done
done

# ---------------------------------------------------------------- report
{
  echo "# North–south results"
  echo
  echo "Generated by \`Scripts/bench/northsouth.sh$([ "$QUICK" = 1 ] && echo ' --quick')\` — do not edit by hand."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) cores; $ROUNDS round(s) of $DUR s; medians; setups one at a time, alternately"
  echo "- outside host: a netns on the far end of a veth (default offloads: TSO, partial checksums, GRO); guest: a netns; TCP one stream (iperf3)"
  echo "- bridge: the veth as a Linux bridge port, the guest on a veth; OVS $(ovs-vswitchd --version 2>/dev/null | head -1 | awk '{print $NF}'): datapath_type=netdev, userspace-tso-enable, the veth a system port, the guest a tap port; Tapestry: the veth an uplink, the guest a netns guest (TAP); before: Tapestry at ${BEFORE_SHA:-n/a} (before the north–south offloads)"
  echo "- switch CPU: the switch process's utime+stime, % of one core (the kernel bridge has none); machine: busy cores from /proc/stat (iperf3 ends and kernel included)"
  echo
  python3 - "$RES" "${NOTE[bridge]:-}" "${NOTE[ovs]:-}" "${NOTE[tapestry]:-}" "${NOTE[before]:-}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, m, r, v = line.rstrip("\n").split("\t")
    if v: rows.setdefault((s, m), []).append(float(v))
notes = dict(zip(["bridge", "ovs", "tapestry", "before"], sys.argv[2:6]))
def med(s, m):
    v = rows.get((s, m)); return statistics.median(v) if v else None
def f(x, d=2): return "n/a" if x is None else f"{x:.{d}f}"
def ratio(a, b): return "n/a" if a is None or not b else f"{a / b:.2f}"
names = {"bridge": "Linux bridge", "ovs": "Open vSwitch userspace", "tapestry": "Tapestry", "before": "Tapestry before"}
print("| setup | guest → outside (Gb/s) | outside → guest (Gb/s) | in/out | switch CPU per Gb/s (% core), out / in | machine busy cores per 10 Gb/s, out / in |")
print("|---|---:|---:|---:|---:|---:|")
for s in ["bridge", "ovs", "tapestry", "before"]:
    if notes.get(s) and (s, "gbps-out") not in rows:
        print(f"| {names[s]} | n/a | n/a | | | {notes[s]} |"); continue
    o, i = med(s, "gbps-out"), med(s, "gbps-in")
    failed = [d for d in ("out", "in") if rows.get((s, f"failed-{d}"))]
    cpu = lambda d, g: None if med(s, f"swcpu-{d}") is None or not g else med(s, f"swcpu-{d}") / g
    busy = lambda d, g: None if med(s, f"busy-{d}") is None or not g else med(s, f"busy-{d}") / g * 10
    note = "" if not failed else " (TCP did not connect " + " and ".join({"out": "guest → outside", "in": "outside → guest"}[d] for d in failed) + " in " + str(max(len(rows.get((s, f"failed-{d}"), [])) for d in failed)) + " round(s))"
    print(f"| {names[s]}{note} | {f(o)} | {f(i)} | {ratio(i, o)} | {f(cpu('out', o), 1)} / {f(cpu('in', i), 1)} | {f(busy('out', o))} / {f(busy('in', i))} |")
print()
t = {d: med("tapestry", f"gbps-{d}") for d in ("out", "in")}
print("| Tapestry ÷ | guest → outside | outside → guest | goal |")
print("|---|---:|---:|---|")
print(f"| itself, the other direction (in ÷ out) | | {ratio(t['in'], t['out'])} | ≥ 0.8 |")
for s, goal in [("bridge", "≥ 0.6"), ("ovs", "≥ 1.2"), ("before", "")]:
    print(f"| {names[s]} | {ratio(t['out'], med(s, 'gbps-out'))} | {ratio(t['in'], med(s, 'gbps-in'))} | {goal} |")
print()
print("Rounds (Gb/s, out; in): " + "; ".join(f"{names[s]} {rows.get((s, 'gbps-out'), [])} {rows.get((s, 'gbps-in'), [])}" for s in ["bridge", "ovs", "tapestry", "before"]))
PY
} >"$TMP/out.md"
cp "$TMP/out.md" "$HERE/northsouth-results.md"
cat "$TMP/out.md"
[ "$QUICK" = 1 ] || python3 "$HERE/publish.py" northsouth-results || log "publish: README has no northsouth-results block yet"
