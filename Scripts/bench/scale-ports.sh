#!/usr/bin/env bash
# Scale throughput check: does a big switch forward as fast as a small one?
#
#   Scripts/bench/scale-ports.sh [--quick] [--rounds N]
#
# Two topologies are up side by side, each with the same two measured namespace guests
# A (10.78.0.1/24) and B (10.78.0.2/24) on an access port group in VLAN 100:
#   big   (bspbig):   one switch with 256 ports: A and B, 252 idle access guests in 126
#                     other VLANs (2-4002), and 2 idle guests on a trunk port group
#                     `vlan: {trunk: [1-4094]}` (they also receive VLAN 100's floods);
#   small (bspsmall): one switch with 2 ports, A and B, one VLAN.
# Each round measures big then small (alternately, one at a time; the idle topology
# forwards nothing meanwhile): ping RTT, iperf3 TCP (1 stream, B serves), 64-byte frames
# forwarded per second (trafgen from A, like run.sh), and the switch process's CPU during
# TCP. Prints the medians, every round's value and big/small ratios (goal: throughput ratio
# ≥ 0.90), then the in-process decide rate at 256 ports/4094 VLANs (tapestry-bench scale,
# scale-trunks), if built; a full run also writes Scripts/bench/scale-results.md. No
# thresholds: it reports.
#
# Root only. Every name starts with "bsp"/"bss"; the script refuses to start over existing
# ones, and on exit (trap) brings both topologies down (`tapestry down` removes their
# namespaces and TAPs), kills only the processes it started (by PID) and checks that no
# namespace or link with its prefixes is left. Environment: TAPESTRY=path, TAPESTRY_BENCH=path
# (default: release builds of this tree, (re)built by every run).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 24 "$@"
[ "$(id -u)" = 0 ] || { echo "scale-ports: must run as root" >&2; exit 1; }
for c in iperf3 jq ping; do command -v $c >/dev/null || { echo "scale-ports: $c is required" >&2; exit 1; }; done
TAPESTRY="${TAPESTRY:-$(release_binary tapestry)}"
BENCH="${TAPESTRY_BENCH:-$(release_binary tapestry-bench)}"
IP_A=10.78.0.1
IP_B=10.78.0.2
TCK=$(getconf CLK_TCK)
log() { echo "[scale-ports $(date +%T)] $*" >&2; }

for ns in bspa bspb bssa bssb bspt1 bspt2 $(seq -f 'bspi%g' 1 252); do
  if [ -e "/run/netns/$ns" ]; then echo "scale-ports: namespace $ns already exists; remove it first" >&2; exit 1; fi
done
for name in bspbig bspsmall; do
  if "$TAPESTRY" status --name $name >/dev/null 2>&1; then echo "scale-ports: instance $name is running; run tapestry down --name $name" >&2; exit 1; fi
done

TMP=$(mktemp -d /tmp/bsp-bench.XXXXXX)
RES="$TMP/results.tsv"   # setup metric round value
: >"$RES"
UP_BIG=0 UP_SMALL=0
PIDS=()                  # processes this script started and has not reaped yet

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill_tree "$p"; done
  [ "$UP_BIG" = 1 ] && { "$TAPESTRY" down --name bspbig >/dev/null 2>&1 || log "down bspbig failed"; }
  [ "$UP_SMALL" = 1 ] && { "$TAPESTRY" down --name bspsmall >/dev/null 2>&1 || log "down bspsmall failed"; }
  local left
  left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^bs[ps]' || true)
  [ -n "$left" ] && log "left over namespaces: $(echo $left)"
  left=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^bs[ps]' || true)
  [ -n "$left" ] && log "left over links: $(echo $left)"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- topologies
vlan_of() { echo $((2 + ($1 - 1) / 2 * 32)); }   # idle guest k (1..252): 126 VLANs, two guests each
{
  echo "name: bspbig"
  echo "switches:"
  echo "  bspsw:"
  echo "    mac-table: {limit: 16384}"
  echo "    port-groups:"
  echo "      meas: {vlan: 100}"
  echo "      trunk: {vlan: {trunk: [1-4094], native: none}}"
  for k in $(seq 1 2 252); do echo "      v$(vlan_of $k): {vlan: $(vlan_of $k)}"; done
  echo "guests:"
  echo "  bspa: {kind: netns, nics: [{switch: bspsw, port-group: meas, ip: $IP_A/24}]}"
  echo "  bspb: {kind: netns, nics: [{switch: bspsw, port-group: meas, ip: $IP_B/24}]}"
  echo "  bspt1: {kind: netns, nics: [{switch: bspsw, port-group: trunk}]}"
  echo "  bspt2: {kind: netns, nics: [{switch: bspsw, port-group: trunk}]}"
  for k in $(seq 1 252); do
    echo "  bspi$k: {kind: netns, nics: [{switch: bspsw, port-group: v$(vlan_of $k), ip: 10.79.$((k / 250)).$((k % 250 + 1))/16}]}"
  done
} >"$TMP/big.yaml"
cat >"$TMP/small.yaml" <<EOF
name: bspsmall
switches:
  bsssw:
    port-groups:
      meas: {vlan: 100}
guests:
  bssa: {kind: netns, nics: [{switch: bsssw, port-group: meas, ip: $IP_A/24}]}
  bssb: {kind: netns, nics: [{switch: bsssw, port-group: meas, ip: $IP_B/24}]}
EOF

daemon_pid() { "$TAPESTRY" status --name "$1" --json | jq -r .pid; }
log "up bspbig (256 ports)"
UP_BIG=1
t0=$(date +%s.%N)
"$TAPESTRY" up "$TMP/big.yaml" --detach >/dev/null
t1=$(date +%s.%N)
PID_BIG=$(daemon_pid bspbig)
PORTS_BIG=$("$TAPESTRY" ports --name bspbig --json 2>/dev/null | jq 'if type == "array" then length else (.ports // [] | length) end' 2>/dev/null || echo "?")
log "bspbig up in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, daemon pid $PID_BIG, ports: $PORTS_BIG"
log "up bspsmall (2 ports)"
UP_SMALL=1
"$TAPESTRY" up "$TMP/small.yaml" --detach >/dev/null
PID_SMALL=$(daemon_pid bspsmall)
for ns in bspa bspb bssa bssb; do ip -n $ns link set lo up; done
# Let the idle guests' start-up chatter (IPv6 DAD, MLD) die down.
sleep 3

# ---------------------------------------------------------------- measurement
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
stat_of() { ip netns exec "$1" cat "/sys/class/net/eth0/$2"; }

measure() {  # measure SETUP NS_A NS_B SWITCH_PID ROUND
  local s=$1 a=$2 b=$3 pid=$4 r=$5 out t0 t1 c0 c1 srv gen rx0 rx1
  ip netns exec "$a" ping -c 3 -i 0.2 -W 1 -q $IP_B >/dev/null || { log "$s: no connectivity"; return 1; }
  out=$(ip netns exec "$a" ping -c 100 -i 0.01 -q $IP_B)
  record "$s" rtt "$r" "$(echo "$out" | awk -F'/' '/^rtt|^round-trip/ { printf "%.1f", $5 * 1000 }')"
  ip netns exec "$b" iperf3 -s -B $IP_B -1 >/dev/null 2>&1 &
  srv=$!; PIDS+=("$srv")
  sleep 0.5
  c0=$(cpu_ticks "$pid"); t0=$(now)
  out=$(ip netns exec "$a" iperf3 -c $IP_B -t "$DUR" -J) || { log "$s: iperf3 failed"; }
  t1=$(now); c1=$(cpu_ticks "$pid")
  record "$s" tcp "$r" "$(echo "$out" | jq '.end.sum_received.bits_per_second / 1e9')"
  record "$s" cpu "$r" "$(echo "$c0 $c1 $t0 $t1 $TCK" | awk '{ printf "%.1f", ($2 - $1) / $5 / ($4 - $3) * 100 }')"
  kill_pid "$srv"; wait "$srv" 2>/dev/null || true
  if command -v trafgen >/dev/null; then
    local mac_a mac_b
    mac_a=$(stat_of "$a" address); mac_b=$(stat_of "$b" address)
    echo "{ eth(da=$mac_b, sa=$mac_a), ipv4(saddr=$IP_A, daddr=$IP_B, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }" >"$TMP/udp64.cfg"
    ip netns exec "$a" trafgen -o eth0 -i "$TMP/udp64.cfg" -P 1 --no-sock-mem -Q -C >/dev/null 2>&1 &
    gen=$!; PIDS+=("$gen")
    sleep 1
    rx0=$(stat_of "$b" statistics/rx_packets); t0=$(now)
    sleep "$DUR"
    rx1=$(stat_of "$b" statistics/rx_packets); t1=$(now)
    kill_tree "$gen"; wait "$gen" 2>/dev/null || true
    record "$s" pps "$r" "$(echo "$rx0 $rx1 $t0 $t1" | awk '{ printf "%.3f", ($2 - $1) / ($4 - $3) / 1e6 }')"
  fi
  sleep 1
}

for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS: big (256 ports)"
  measure big bspa bspb "$PID_BIG" "$r" || true
  log "round $r/$ROUNDS: small (2 ports)"
  measure small bssa bssb "$PID_SMALL" "$r" || true
done

# Down before the report: the in-process benchmark below runs on a quiet machine.
"$TAPESTRY" down --name bspbig >/dev/null && UP_BIG=0
"$TAPESTRY" down --name bspsmall >/dev/null && UP_SMALL=0

# ---------------------------------------------------------------- report
{
echo "# Scale check: 256 ports / 4094 VLANs vs 2 ports / 1 VLAN"
echo
echo "Generated by \`Scripts/bench/scale-ports.sh$([ "$QUICK" = 1 ] && echo ' --quick')\` — do not edit by hand."
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) cores; $ROUNDS round(s) of ${DUR} s, big then small each round"
echo "- big: 256 ports on one switch (2 measured + 252 idle access guests in 126 VLANs + 2 idle guests on trunk 1-4094); small: 2 ports, 1 VLAN"
echo "- binary: ${TAPESTRY#$ROOT/}"
echo
python3 - "$RES" <<'EOF'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    s, m, r, v = line.rstrip("\n").split("\t")
    try: rows[(s, m)].append(float(v))
    except ValueError: pass
metrics = [("tcp", "TCP 1 stream (Gb/s, higher is better)"), ("pps", "64B frames forwarded (Mpps, higher is better)"),
           ("rtt", "ping RTT avg (µs, lower is better)"), ("cpu", "switch CPU during TCP (% of a core)")]
print("| metric | big: 256 ports, 4094 VLANs | small: 2 ports, 1 VLAN | big/small | rounds (big; small) |")
print("|---|---:|---:|---:|---|")
for m, label in metrics:
    b, s = rows.get(("big", m), []), rows.get(("small", m), [])
    if not b or not s: continue
    mb, ms = statistics.median(b), statistics.median(s)
    ratio = f"{mb / ms:.2f}" if ms else "n/a"
    fmt = (lambda x: f"{x:.0f}") if m in ("rtt", "cpu") else ((lambda x: f"{x:.3f}") if m == "pps" else (lambda x: f"{x:.2f}"))
    print(f"| {label} | {fmt(mb)} | {fmt(ms)} | {ratio} | {', '.join(fmt(x) for x in b)}; {', '.join(fmt(x) for x in s)} |")
EOF
echo
if [ -x "$BENCH" ]; then
  echo "In-process (\`tapestry-bench forward scale scale-trunks --runs 5\`, decide + learn + egress, one core):"
  echo '```'
  "$BENCH" forward scale scale-trunks --runs 5 | grep -v allocations
  echo '```'
else
  echo "(no $BENCH: build it with swift build -c release --product tapestry-bench for the in-process numbers)"
fi
} | tee "$TMP/report.md"
# A full run keeps its report next to run.sh's results (quick runs are smoke tests only).
[ "$QUICK" = 1 ] || cp "$TMP/report.md" "$HERE/scale-results.md"
