#!/usr/bin/env bash
# What a NIC-team failover costs the datapath: the longest time a datapath worker
# waits for the datapath lock while a failover moves N learned MACs to the standby NIC and
# announces each with a RARP (notify-switches), before and after the change that took the
# team monitor's system calls out from under the lock, for several N.
#
#   Scripts/bench/failover.sh [--quick] [--rounds N]      (MAC counts: BENCH_MACS, default "500 5000 20000")
#
# Lab: a "physical switch" (a Linux bridge in netns bfphys) joins the team's two NICs (veths
# bfu1, bfu2: failover-order, bfu1 active) and an outside host. Guest bfm sends one frame
# from each of N source MACs (scapy; its port group allows forged transmits and N MACs), so
# the switch learns N MACs behind it. Then, while guest bfa pings guest bfb every 2 ms (a
# path that never touches the uplinks, so only a stalled worker can delay it), bfu1 loses
# carrier: the team fails over and sends N+2 RARPs on bfu2 (counted at the bridge).
# Measured per (binary, N): the ping's largest RTT during the failover (both binaries) and
# the longest datapath-lock wait of any worker (`status --reset-lock-waits` before, `status
# --json` after; only the new binary has it). Medians over rounds. Writes
# Scripts/bench/failover-results.md and, after a full run, its README block (publish.py).
#
# Binaries: this tree's release build ("after") and the revision before the first commit of
# that change ("LinuxIO owns the port I/O") ("before"; BENCH_BEFORE=REV to choose another), built once into .build-bench/.
# Needs root on Debian with iperf3-free tools: iproute2, ping, tcpdump, /usr/bin/python3 with
# scapy (Scripts/setup.sh installs them). Names start with `bf`; everything is removed on exit.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 23 "$@"
MACS=(${BENCH_MACS:-500 5000 20000})
[ "$QUICK" = 1 ] && MACS=(${BENCH_MACS:-500 5000})
[ "$(id -u)" = 0 ] || { echo "failover.sh: must run as root" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; }
PY=/usr/bin/python3
$PY -c 'import scapy' 2>/dev/null || { echo "failover.sh: $PY has no scapy (Scripts/setup.sh installs python3-scapy)" >&2; exit 1; }
for t in tcpdump jq ping; do command -v $t >/dev/null || { echo "failover.sh: $t is required" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/tapestry-failover.XXXXXX)
RES="$TMP/results.tsv"; : >"$RES"
UP_BIN="" UP_NAME="" DUMP_PID=""
AFTER=${TAPESTRY:-$(release_binary tapestry)}
rev=${BENCH_BEFORE:-$(commit_before 'LinuxIO owns the port I/O')}
BEFORE="" BEFORE_SHA="" BEFORE_NOTE=""
if [ -z "$rev" ]; then BEFORE_NOTE="no commit 'LinuxIO owns the port I/O' in this history (set BENCH_BEFORE)"
elif out=$(revision_binary "$rev"); then read -r BEFORE BEFORE_SHA <<<"$out"
else BEFORE_NOTE="$out"; fi
[ -n "$BEFORE_NOTE" ] && log "before: $BEFORE_NOTE"

down_all() {
  set +e
  kill_pid "$DUMP_PID"; DUMP_PID=""
  if [ -n "$UP_NAME" ]; then "$UP_BIN" down --name "$UP_NAME" >/dev/null 2>&1 || log "down --name $UP_NAME failed"; UP_NAME=""; fi
  for ns in bfphys bfout bfa bfb bfm; do ip netns del $ns 2>/dev/null; done
  ip link del bfu1 2>/dev/null; ip link del bfu2 2>/dev/null
  set -e
}
cleanup() { down_all; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up() {  # lab_up BINARY N
  local n=$2
  ip netns add bfphys && ip -n bfphys link add br0 type bridge && ip -n bfphys link set br0 up || return 1
  ip link add bfu1 type veth peer name p1 netns bfphys && ip link add bfu2 type veth peer name p2 netns bfphys || return 1
  ip -n bfphys link set p1 master br0 up && ip -n bfphys link set p2 master br0 up || return 1
  ip link set bfu1 up && ip link set bfu2 up || return 1
  ip netns add bfout && ip -n bfphys link add o type veth peer name eth0 netns bfout || return 1
  ip -n bfphys link set o master br0 up && ip -n bfout addr add 10.93.0.200/24 dev eth0 && ip -n bfout link set eth0 up || return 1
  cat >"$TMP/bf.yaml" <<EOF
name: bfail
switches:
  sw0:
    mac-table: {limit: $((n + 4096))}
    uplinks:
      nics: [bfu1, bfu2]
      policy: failover-order
      active: [bfu1]
      standby: [bfu2]
      notify-switches: true
      detection: link-status
    port-groups:
      lan: {vlan: none}
      flood: {vlan: none, mac-limit: $((n + 16)), security: {forged-transmits: true}}
guests:
  bfa: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.93.0.1/24}]}
  bfb: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.93.0.2/24}]}
  bfm: {kind: netns, nics: [{switch: sw0, port-group: flood, ip: 10.93.0.3/24}]}
EOF
  UP_BIN=$1 UP_NAME=bfail
  "$1" up "$TMP/bf.yaml" --detach || return 1
  ip netns exec bfa ping -c 2 -i 0.2 -W 1 -q 10.93.0.2 >/dev/null && ip netns exec bfm ping -c 2 -i 0.2 -W 1 -q 10.93.0.200 >/dev/null || return 1
}

learn_macs() {  # learn_macs N: one frame from each of N MACs 02:bf:xx:xx:xx:xx, to the outside host
  local dst; dst=$(ip -n bfout -j link show eth0 | jq -r '.[0].address')
  ip netns exec bfm $PY - "$1" "$dst" <<'PY'
import sys
from scapy.all import Ether, Raw, conf
n, dst = int(sys.argv[1]), sys.argv[2]
s = conf.L2socket(iface="eth0")
for i in range(n):
    s.send(Ether(src="02:bf:%02x:%02x:%02x:%02x" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255), dst=dst, type=0x88b5) / Raw(b"\0" * 46))
s.close()
PY
}

measure() {  # measure LABEL BINARY N ROUND
  local label=$1 bin=$2 n=$3 r=$4 learned rtt rarps waits
  if ! lab_up "$bin" "$n" >"$TMP/up.log" 2>&1; then log "$label N=$n: lab failed: $(tail -2 "$TMP/up.log")"; down_all; return 0; fi
  learn_macs "$n"
  sleep 1
  learned=$("$bin" fdb --name bfail --json | jq '[.entries[] | select(.port == "bfm.eth0")] | length')
  ip netns exec bfphys tcpdump -i p2 -nn -q -w "$TMP/rarp.pcap" 'ether proto 0x8035' >/dev/null 2>&1 &
  DUMP_PID=$!
  sleep 0.5
  [ "$label" = after ] && "$bin" status --name bfail --reset-lock-waits >/dev/null
  ip netns exec bfa ping -i 0.002 -c 2000 -q 10.93.0.2 >"$TMP/ping.out" 2>&1 &
  local ping_pid=$!
  sleep 1
  ip -n bfphys link set p1 down            # carrier loss on bfu1: the team fails over
  wait $ping_pid || true
  sleep 1
  kill -INT "$DUMP_PID" 2>/dev/null; wait "$DUMP_PID" 2>/dev/null || true; DUMP_PID=""
  rarps=$(tcpdump -nn -r "$TMP/rarp.pcap" 2>/dev/null | wc -l)
  rtt=$(sed -n 's|^.*= [0-9.]*/[0-9.]*/\([0-9.]*\)/.*$|\1|p' "$TMP/ping.out")
  record "$label" "learned-$n" "$r" "$learned"
  record "$label" "rarps-$n" "$r" "$rarps"
  record "$label" "maxrtt-$n" "$r" "$rtt"
  if [ "$label" = after ]; then
    waits=$("$bin" status --name bfail --json | jq '[.datapath_lock_wait_max_microseconds[]] | max')
    record "$label" "lockwait-$n" "$r" "$waits"
  fi
  log "$label N=$n round $r: learned $learned, RARPs $rarps, ping max RTT $rtt ms${waits:+, longest lock wait $waits µs}"
  down_all
}

for r in $(seq "$ROUNDS"); do
  for n in "${MACS[@]}"; do
    [ -n "$BEFORE" ] && measure before "$BEFORE" "$n" "$r"
    measure after "$AFTER" "$n" "$r"
  done
done

{
  echo "# Failover results"
  echo
  echo "Generated by \`Scripts/bench/failover.sh$([ "$QUICK" = 1 ] && echo ' --quick')\` — do not edit by hand."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) cores; $ROUNDS round(s); medians"
  echo "- a two-NIC team (failover-order, notify-switches) fails over while N learned MACs sit behind one guest; a guest-to-guest ping every 2 ms runs meanwhile (it never crosses the uplinks)"
  echo "- before: Tapestry at ${BEFORE_SHA:-n/a${BEFORE_NOTE:+ ($BEFORE_NOTE)}} (the team monitor sent its RARPs under the datapath lock); after: this tree"
  echo "- longest lock wait: the largest of the workers' longest waits for the datapath lock during the failover (\`status --reset-lock-waits\`, then \`status --json\`); the older binary cannot report it"
  echo
  $PY - "$RES" "${MACS[@]}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, m, r, v = line.rstrip("\n").split("\t")
    if v and v != "null": rows.setdefault((s, m), []).append(float(v))
def med(s, m):
    v = rows.get((s, m)); return statistics.median(v) if v else None
def f(x, d=1): return "n/a" if x is None else f"{x:.{d}f}"
print("| MACs learned | RARPs sent (before / after) | ping max RTT during failover, ms (before / after) | longest datapath-lock wait, µs (after) |")
print("|---:|---:|---:|---:|")
for n in sys.argv[2:]:
    print(f"| {f(med('after', 'learned-' + n), 0)} | {f(med('before', 'rarps-' + n), 0)} / {f(med('after', 'rarps-' + n), 0)} | "
          f"{f(med('before', 'maxrtt-' + n), 2)} / {f(med('after', 'maxrtt-' + n), 2)} | {f(med('after', 'lockwait-' + n))} |")
PY
} >"$TMP/out.md"
cp "$TMP/out.md" "$HERE/failover-results.md"
cat "$TMP/out.md"
[ "$QUICK" = 1 ] || python3 "$HERE/publish.py" failover-results || log "publish: README has no failover-results block yet"
