#!/usr/bin/env bash
# Side-by-side benchmark: Linux bridge vs Open vSwitch (userspace, netdev datapath) vs a
# minimal C TAP copier (reference floor) vs Tapestry vs Tapestry in busy-poll mode.
#
#   Scripts/bench/run.sh [--quick] [--rounds N]
#
# The same two-namespace workload for every setup: netns A (10.77.0.1/24) <-> switch <->
# netns B (10.77.0.2/24). Setups are measured alternately, one at a time (each is built,
# measured and torn down in turn), for N rounds (default 3; --quick: 1 round, 3 s runs).
# Metrics: ping RTT (and the switch's CPU during it), TCP 1 and 2 streams (and CPU), 64-byte
# UDP frames as one flow and as 16 flows (forwarded and offered rates).
# Prints a markdown table of medians and ratios, and writes it to Scripts/bench/results.md;
# a full (non --quick) run also copies it into README.md (publish.py).
#
# Setups: bridge (veth pairs into a Linux bridge), ovs (ovs-vswitchd, datapath_type=netdev,
# type=tap ports), copier (Scripts/bench/tapcopy.c, compiled with cc -O2 at start: one read
# + one write per frame between two vnet-header TAPs; a reference, not part of Tapestry),
# tapestry, tapestry-poll (the same topology, daemon started with TAPESTRY_BUSY_POLL_US).
#
# Needs root on Debian. Installs (apt-get) iperf3, iputils-ping, netsniff-ng (trafgen),
# jq, openvswitch-switch and (for copier) gcc + libc6-dev if missing. Every namespace/link
# it creates has a `bn` prefix; everything is removed on exit (trap EXIT). OVS daemons are
# private (temp db/run dir); OVS and the copier are stopped by PID.
# Environment:
#   BENCH_SETUPS="bridge ovs copier tapestry tapestry-poll"  subset/order to run (default all)
#   BENCH_VLAN=none|10      Tapestry port group (default none)
#   BENCH_POLL_US=20000     TAPESTRY_BUSY_POLL_US of the tapestry-poll setup (default 20000:
#                           above the 10 ms ping interval, so ping sees poll-mode latency)
#   TAPESTRY=path           binary to use instead of the release build of this tree, which
#                           the script (re)builds every run otherwise
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 30 "$@"
VLAN=${BENCH_VLAN:-none}
POLL_US=${BENCH_POLL_US:-20000}
SETUPS=(${BENCH_SETUPS:-bridge ovs copier tapestry tapestry-poll})
has_setup() { [[ " ${SETUPS[*]} " == *" $1 "* ]]; }
PING_COUNT=200
[ "$QUICK" = 1 ] && PING_COUNT=100
IP_A=10.77.0.1
IP_B=10.77.0.2
TCK=$(getconf CLK_TCK)

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 1; }

log() { echo "[bench $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- dependencies
need_pkgs=()
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v trafgen >/dev/null || need_pkgs+=(netsniff-ng)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v ovs-vswitchd >/dev/null || need_pkgs+=(openvswitch-switch)
# gcc without recommends has no libc headers: libc6-dev brings them (and linux-libc-dev).
has_setup copier && ! command -v cc >/dev/null && need_pkgs+=(gcc libc6-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No systemd here: the packages' postinst may fail to start services; that is fine,
  # the OVS daemons are started by hand below.
  apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/tmp/bn-bench-apt.log 2>&1 ||
    { apt-get update >/dev/null 2>&1 || true
      apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>/tmp/bn-bench-apt.log 2>&1 ||
      log "apt-get failed (see /tmp/bn-bench-apt.log); continuing with what is installed"; }
fi
command -v iperf3 >/dev/null && command -v ping >/dev/null && command -v jq >/dev/null ||
  { echo "run.sh: iperf3, ping and jq are required" >&2; exit 1; }

BUILD_NOTE="(given by TAPESTRY=)"
if [ -z "${TAPESTRY:-}" ] && { has_setup tapestry || has_setup tapestry-poll; }; then
  log "building the release tapestry (swift build -c release; incremental)"
  TAPESTRY=$(release_binary tapestry)
  BUILD_NOTE="(release build of this tree, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ', with uncommitted changes'))"
fi
TAPESTRY="${TAPESTRY:-$ROOT/.build/release/tapestry}"

# Refuse to start over names that already exist (ours or anyone's).
for ns in bnbra bnbrb bnova bnovb bncpa bncpb bnta bntb bntpa bntpb; do
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    echo "run.sh: namespace $ns already exists (left over from an earlier run?); remove it first" >&2; exit 1
  fi
done
for l in bnbr0 bnbra0 bnbrb0 bnovs0 bnovta bnovtb bncpa bncpb; do
  if ip link show "$l" >/dev/null 2>&1; then
    echo "run.sh: link $l already exists; remove it first" >&2; exit 1
  fi
done

TMP=$(mktemp -d /tmp/bn-bench.XXXXXX)
RES="$TMP/results.tsv"      # setup metric round value
: >"$RES"
declare -A NOTE=()          # setup -> reason it is n/a
IPERF_PID=""
GEN_PID=""                  # the 64B generator (trafgen or iperf3 client)
OVSDB_PID=""
VSWITCHD_PID=""
COPIER_PID=""
TAPESTRY_UP=""              # name of the running Tapestry topology, if any

# The copier is compiled once, here; if that is impossible the setup is n/a.
if has_setup copier; then
  if ! command -v cc >/dev/null; then
    NOTE[copier]="no C compiler (cc); apt-get install gcc failed"
  elif ! cc -O2 -Wall -o "$TMP/tapcopy" "$HERE/tapcopy.c" 2>"$TMP/tapcopy-cc.log"; then
    NOTE[copier]="cc -O2 tapcopy.c failed: $(grep -m1 error "$TMP/tapcopy-cc.log" || tail -1 "$TMP/tapcopy-cc.log")"
  fi
  [ -n "${NOTE[copier]:-}" ] && log "copier: ${NOTE[copier]}"
fi

# ---------------------------------------------------------------- cleanup
stop_iperf() { kill_pid "$IPERF_PID"; IPERF_PID=""; }
down_bridge() {
  ip netns del bnbra 2>/dev/null || true
  ip netns del bnbrb 2>/dev/null || true
  ip link del bnbra0 2>/dev/null || true
  ip link del bnbrb0 2>/dev/null || true
  ip link del bnbr0 2>/dev/null || true
}
down_ovs() {
  if [ -n "$OVSDB_PID" ] && [ -S "$TMP/ovs/db.sock" ] && [ -n "$VSWITCHD_PID" ]; then
    ovsc --timeout=5 -- --if-exists del-br bnovs0 >/dev/null 2>&1 || true
  fi
  kill_pid "$VSWITCHD_PID"; VSWITCHD_PID=""
  kill_pid "$OVSDB_PID"; OVSDB_PID=""
  ip netns del bnova 2>/dev/null || true
  ip netns del bnovb 2>/dev/null || true
  ip link del bnovta 2>/dev/null || true
  ip link del bnovtb 2>/dev/null || true
}
down_copier() {
  kill_pid "$COPIER_PID"; COPIER_PID=""   # its TAPs are not persistent: they go with it
  ip netns del bncpa 2>/dev/null || true
  ip netns del bncpb 2>/dev/null || true
}
down_tapestry() {
  if [ -n "$TAPESTRY_UP" ]; then
    "$TAPESTRY" down --name "$TAPESTRY_UP" >/dev/null 2>&1 || log "tapestry down --name $TAPESTRY_UP failed"
    TAPESTRY_UP=""
  fi
}
cleanup() {
  set +e
  [ -n "$GEN_PID" ] && kill_tree "$GEN_PID"
  stop_iperf
  down_tapestry
  down_copier
  down_ovs
  down_bridge
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setups
# Each up_* sets NS_A, NS_B, DEV_A, DEV_B (interface names inside the namespaces) and SW_PID
# (the switch process, empty for the kernel bridge). They return non-zero on the first
# failing step (they run in a conditional, where set -e does not apply).
up_bridge() {
  ip netns add bnbra || return 1
  ip netns add bnbrb || return 1
  ip link add bnbr0 type bridge || return 1
  ip link set bnbr0 up || return 1
  ip link add bnbra0 type veth peer name eth0 netns bnbra || return 1
  ip link add bnbrb0 type veth peer name eth0 netns bnbrb || return 1
  ip link set bnbra0 master bnbr0 up || return 1
  ip link set bnbrb0 master bnbr0 up || return 1
  ip -n bnbra addr add $IP_A/24 dev eth0 && ip -n bnbra link set eth0 up && ip -n bnbra link set lo up || return 1
  ip -n bnbrb addr add $IP_B/24 dev eth0 && ip -n bnbrb link set eth0 up && ip -n bnbrb link set lo up || return 1
  NS_A=bnbra NS_B=bnbrb DEV_A=eth0 DEV_B=eth0 SW_PID=""
}

# tap_into_ns TAP NS IP: a TAP whose fd a switch process holds becomes NS's interface (it
# keeps its name there) with IP/24, up, and NS's loopback up.
tap_into_ns() {
  ip netns add "$2" && ip link set "$1" netns "$2" &&
    ip -n "$2" addr add "$3/24" dev "$1" && ip -n "$2" link set "$1" up && ip -n "$2" link set lo up
}

ovsc() { ovs-vsctl --db=unix:"$TMP/ovs/db.sock" "$@"; }
up_ovs() {
  local d="$TMP/ovs" i
  command -v ovs-vswitchd >/dev/null || { echo "openvswitch-switch is not installed"; return 1; }
  ovs_start "$d" ovs-vswitchd other_config:userspace-tso-enable=true || return 1
  ovsc --timeout=10 add-br bnovs0 -- set Bridge bnovs0 datapath_type=netdev \
    -- add-port bnovs0 bnovta -- set Interface bnovta type=tap \
    -- add-port bnovs0 bnovtb -- set Interface bnovtb type=tap || return 1
  for i in $(seq 50); do ip link show bnovtb >/dev/null 2>&1 && break; sleep 0.1; done
  # OVS keeps the tap fd and follows the device into the namespace (netnsid).
  tap_into_ns bnovta bnova $IP_A || return 1
  tap_into_ns bnovtb bnovb $IP_B || return 1
  NS_A=bnova NS_B=bnovb DEV_A=bnovta DEV_B=bnovtb SW_PID=$VSWITCHD_PID
}

up_copier() {
  local i
  [ -x "$TMP/tapcopy" ] || { echo "tapcopy was not built"; return 1; }
  "$TMP/tapcopy" bncpa bncpb >"$TMP/copier.out" 2>&1 &
  COPIER_PID=$!
  for i in $(seq 50); do grep -q '^ready' "$TMP/copier.out" && break; alive "$COPIER_PID" || break; sleep 0.1; done
  grep -q '^ready' "$TMP/copier.out" || { echo "tapcopy did not start: $(tail -1 "$TMP/copier.out")"; return 1; }
  # As with OVS: the copier keeps the TAP fds, which follow the devices into the namespaces.
  tap_into_ns bncpa bncpa $IP_A || return 1
  tap_into_ns bncpb bncpb $IP_B || return 1
  NS_A=bncpa NS_B=bncpb DEV_A=bncpa DEV_B=bncpb SW_PID=$COPIER_PID
}

# tapestry_up NAME SWITCH GUEST_A GUEST_B [VAR=VALUE…]: the two-guest topology, the daemon
# started with the given environment.
tapestry_up() {
  local name=$1 sw=$2 ga=$3 gb=$4 f="$TMP/$1.yaml"; shift 4
  cat >"$f" <<EOF
name: $name
switches:
  $sw:
    port-groups:
      bench: {vlan: $VLAN}
guests:
  $ga:
    kind: netns
    nics:
      - {switch: $sw, port-group: bench, ip: $IP_A/24}
  $gb:
    kind: netns
    nics:
      - {switch: $sw, port-group: bench, ip: $IP_B/24}
EOF
  TAPESTRY_UP=$name
  env "$@" "$TAPESTRY" up "$f" --detach || return 1
  SW_PID=$("$TAPESTRY" status --name "$name" --json | jq -r .pid) || return 1
  [ -n "$SW_PID" ] && [ -d "/proc/$SW_PID" ] || { echo "no daemon pid from tapestry status"; return 1; }
  local kv
  for kv in "$@"; do   # the daemon must really run with it (not only the CLI)
    tr '\0' '\n' <"/proc/$SW_PID/environ" | grep -qxF "$kv" || { echo "daemon $SW_PID runs without $kv"; return 1; }
  done
  ip -n "$ga" link set lo up; ip -n "$gb" link set lo up
  NS_A=$ga NS_B=$gb DEV_A=eth0 DEV_B=eth0
}
up_tapestry() { tapestry_up bnbench bnsw bnta bntb; }
up_tapestry_poll() { tapestry_up bnbenchp bnswp bntpa bntpb TAPESTRY_BUSY_POLL_US="$POLL_US"; }

down_setup() {
  case "$1" in
    bridge) down_bridge ;;
    ovs) down_ovs ;;
    copier) down_copier ;;
    tapestry|tapestry-poll) down_tapestry ;;
  esac
}

# ---------------------------------------------------------------- metrics
cpu_ticks() {  # utime+stime of the whole process (all threads), in clock ticks
  [ -n "$1" ] || { echo ""; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
stat_of() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }

cpu_pct() {  # cpu_pct TICKS0 TICKS1 T0 T1: % of one core between two cpu_ticks samples
  echo "$1 $2 $3 $4 $TCK" | awk '{ printf "%.1f", ($2 - $1) / $5 / ($4 - $3) * 100 }'
}

# udp64 SETUP ROUND FLOWS PPS_METRIC GEN_METRIC: 64-byte frames (60 + FCS; UDP with 18
# bytes of payload), A -> B, as fast as one generator CPU can, from FLOWS UDP source ports.
udp64() {
  local s=$1 r=$2 flows=$3 mpps=$4 mgen=$5 mac_a mac_b sp rx0 rx1 tx0 tx1 dr0 dr1 t0 t1
  mac_a=$(stat_of "$NS_A" "$DEV_A" ../address)
  mac_b=$(stat_of "$NS_B" "$DEV_B" ../address)
  if command -v trafgen >/dev/null; then
    # dinc(min, max): trafgen counts the source port through min..max, one per frame, at
    # run time (and recomputes the UDP checksum).
    sp=9; [ "$flows" -gt 1 ] && sp="dinc(1024, $((1024 + flows - 1)))"
    cat >"$TMP/udp64.cfg" <<EOF
{ eth(da=$mac_b, sa=$mac_a), ipv4(saddr=$IP_A, daddr=$IP_B, ttl=64), udp(sp=$sp, dp=9), fill(0x00, 18) }
EOF
    ip netns exec "$NS_A" trafgen -o "$DEV_A" -i "$TMP/udp64.cfg" -P 1 --no-sock-mem -Q -C >/dev/null 2>"$TMP/trafgen.err" &
  else
    ip netns exec "$NS_B" iperf3 -s -B $IP_B -D -I "$TMP/iperf.pid" >/dev/null; sleep 0.5
    IPERF_PID=$(tr -d '\0 \n' <"$TMP/iperf.pid")
    ip netns exec "$NS_A" iperf3 -c $IP_B -u -l 18 -b 0 -P "$flows" -t $((DUR + 2)) >/dev/null 2>&1 &
  fi
  GEN_PID=$!
  sleep 1   # warm-up
  kill -0 "$GEN_PID" 2>/dev/null || log "$s: 64B generator ($flows flows) exited early: $(tail -2 "$TMP/trafgen.err" 2>/dev/null)"
  rx0=$(stat_of "$NS_B" "$DEV_B" rx_packets); tx0=$(stat_of "$NS_A" "$DEV_A" tx_packets)
  dr0=$(stat_of "$NS_A" "$DEV_A" tx_dropped); t0=$(now)
  sleep "$DUR"
  rx1=$(stat_of "$NS_B" "$DEV_B" rx_packets); tx1=$(stat_of "$NS_A" "$DEV_A" tx_packets)
  dr1=$(stat_of "$NS_A" "$DEV_A" tx_dropped); t1=$(now)
  # SIGINT is ignored by background jobs of a non-interactive shell: use TERM (then KILL).
  kill_tree "$GEN_PID"; wait "$GEN_PID" 2>/dev/null || true; GEN_PID=""
  stop_iperf; rm -f "$TMP/iperf.pid"
  record "$s" "$mpps" "$r" "$(echo "$rx0 $rx1 $t0 $t1" | awk '{ printf "%.3f", ($2 - $1) / ($4 - $3) / 1e6 }')"
  record "$s" "$mgen" "$r" "$(echo "$tx0 $tx1 $dr0 $dr1 $t0 $t1" | awk '{ printf "%.3f", (($2 - $1) + ($4 - $3)) / ($6 - $5) / 1e6 }')"
  sleep 1   # let the switch drain before the next test
}

measure() {  # measure SETUP ROUND
  local s=$1 r=$2 out t0 t1 c0 c1 p
  # Connectivity (and ARP) first.
  if ! ip netns exec "$NS_A" ping -c 3 -i 0.2 -W 1 -q $IP_B >/dev/null; then
    NOTE[$s]="no connectivity A->B"; log "$s: no connectivity"; return 1
  fi
  # Ping RTT, and the switch's CPU meanwhile (what waiting for a frame costs: poll mode).
  c0=$(cpu_ticks "$SW_PID"); t0=$(now)
  out=$(ip netns exec "$NS_A" ping -c $PING_COUNT -i 0.01 -q $IP_B)
  t1=$(now); c1=$(cpu_ticks "$SW_PID")
  record "$s" rtt "$r" "$(echo "$out" | awk -F'/' '/^rtt|^round-trip/ { printf "%.1f", $5 * 1000 }')"
  [ -n "$SW_PID" ] && record "$s" cpuping "$r" "$(cpu_pct "$c0" "$c1" "$t0" "$t1")"
  # TCP, server in B, client in A.
  ip netns exec "$NS_B" iperf3 -s -B $IP_B -D -I "$TMP/iperf.pid" >/dev/null
  for _ in $(seq 50); do [ -s "$TMP/iperf.pid" ] && break; sleep 0.1; done
  IPERF_PID=$(tr -d '\0 \n' <"$TMP/iperf.pid")
  sleep 0.3
  for p in 1 2; do
    c0=$(cpu_ticks "$SW_PID"); t0=$(now)
    out=$(ip netns exec "$NS_A" iperf3 -c $IP_B -t $DUR -P $p -J) ||
      { log "$s: iperf3 -P $p failed"; echo "$out" | jq -r .error >&2 || true; continue; }
    t1=$(now); c1=$(cpu_ticks "$SW_PID")
    record "$s" tcp$p "$r" "$(echo "$out" | jq '.end.sum_received.bits_per_second / 1e9')"
    [ -n "$SW_PID" ] && record "$s" cpu$p "$r" "$(cpu_pct "$c0" "$c1" "$t0" "$t1")"
    sleep 0.5
  done
  stop_iperf; rm -f "$TMP/iperf.pid"
  # 64-byte frames: one flow, then 16 (a switch with per-flow caches or queues may differ).
  udp64 "$s" "$r" 1 pps gen
  udp64 "$s" "$r" 16 pps16 gen16
  return 0
}

run_setup() {  # run_setup SETUP ROUND
  local s=$1 r=$2
  [ -n "${NOTE[$s]:-}" ] && return 0
  log "round $r/$ROUNDS: $s up"
  if ! "up_${s//-/_}" >"$TMP/up-$s.log" 2>&1; then
    NOTE[$s]="setup failed: $(tail -1 "$TMP/up-$s.log")"
    log "$s: ${NOTE[$s]}"; cat "$TMP/up-$s.log" >&2
    [ "$s" = ovs ] && [ -d "$TMP/ovs" ] && tail -n 20 "$TMP/ovs/"*.log >&2
    down_setup "$s"; return 0
  fi
  log "round $r/$ROUNDS: $s measuring (switch pid ${SW_PID:-none, kernel})"
  measure "$s" "$r" || true
  down_setup "$s"
}

for r in $(seq "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do run_setup "$s" "$r"; done
done

# ---------------------------------------------------------------- report
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MODE="full ($ROUNDS rounds, ${DUR} s runs)"; [ "$QUICK" = 1 ] && MODE="quick (1 round, ${DUR} s runs)"
{
  echo "# Tapestry benchmark results"
  echo
  echo "Generated by \`Scripts/bench/run.sh$([ "$QUICK" = 1 ] && echo ' --quick')\` — do not edit by hand."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- kernel: $(uname -r)"
  echo "- CPU: $CPU_MODEL, $(nproc) cores"
  echo "- mode: $MODE; medians over rounds; setups run one at a time, alternately"
  echo "- workload: netns A $IP_A/24 ↔ switch ↔ netns B $IP_B/24; iperf3 server in B, client in A"
  echo "- bridge: veth pairs into a Linux bridge; OVS: $(ovs-vswitchd --version 2>/dev/null | head -1 | awk '{print $NF}'), datapath_type=netdev, type=tap ports, userspace-tso-enable=true; Tapestry: port group vlan: $VLAN, binary ${TAPESTRY#$ROOT/} $BUILD_NOTE"
  echo "- C copier: Scripts/bench/tapcopy.c built with \`cc -O2\` ($(cc --version 2>/dev/null | head -1 || echo 'no cc')): two TAPs with IFF_VNET_HDR and TUNSETOFFLOAD (csum, TSO4/6), epoll, one read + one write per frame; Tapestry (poll): the Tapestry setup with TAPESTRY_BUSY_POLL_US=$POLL_US"
  echo "- 64B: $(command -v trafgen >/dev/null && echo 'trafgen (1 CPU) sends 60-byte UDP frames (64 on the wire) from A, as one flow (source port 9) and as 16 flows (source ports 1024–1039, trafgen dinc)' || echo 'iperf3 -u -l 18 -b 0 from A, -P 1 and -P 16'); forwarded = rx_packets delta at B; offered = tx_packets + tx_dropped at A"
  echo "- CPU: switch process utime+stime during the TCP test or the ping test, % of one core (100 = one core busy)"
  echo
  notes=()
  for s in bridge ovs copier tapestry tapestry-poll; do notes+=("$s=${NOTE[$s]:-}"); done
  python3 "$HERE/table.py" "$RES" "--poll-us=$POLL_US" "${notes[@]}"
} >"$TMP/results.md"
cp "$TMP/results.md" "$HERE/results.md"
cat "$TMP/results.md"
# A full run also refreshes the README's table (quick runs are smoke tests only).
[ "$QUICK" = 1 ] || python3 "$HERE/publish.py"
