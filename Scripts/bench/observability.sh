#!/usr/bin/env bash
# What observability costs the datapath: the same two-guest topology with
#   off      nothing (the plain switch)
#   flows    IPFIX flow export at sampling 1 (every frame accounted) to a local nfcapd
#   metrics  `up --metrics`, /metrics scraped with curl once a second while measuring
# measured alternately, one setup at a time, in one run.
#
#   Scripts/bench/observability.sh [--quick] [--rounds N]
#
# Workload: netns A 10.78.0.1/24 <-> switch <-> netns B 10.78.0.2/24 (port group vlan: none):
# TCP one stream (iperf3, A -> B) with the switch's CPU meanwhile, and 64-byte UDP frames
# A -> B from one generator CPU (trafgen when installed, else iperf3 -u -l 18), forwarded
# rate counted at B. Medians over rounds. Writes Scripts/bench/observability-results.md and,
# after a full run (not --quick), its README block (publish.py).
#
# Needs root on Debian, iperf3, jq, curl, nfcapd (nfdump). Installs netsniff-ng (trafgen) with
# apt-get when missing (falls back to iperf3 -u). Every namespace it creates starts with
# `bo`; everything is removed on exit; only processes it started are stopped, by PID.
# Environment: TAPESTRY=path (a binary instead of the release build of this tree),
# BENCH_DUR=seconds (length of each measurement; default 10, --quick 3).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 20 "$@"
DUR=${BENCH_DUR:-$DUR}
SETUPS=(off flows metrics)
IP_A=10.78.0.1
IP_B=10.78.0.2
TCK=$(getconf CLK_TCK)
[ "$(id -u)" = 0 ] || { echo "observability.sh: must run as root" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; }

command -v trafgen >/dev/null || {
  log "installing netsniff-ng (trafgen)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends netsniff-ng >/tmp/bo-bench-apt.log 2>&1 ||
    log "apt-get netsniff-ng failed; 64-byte frames from iperf3 -u instead"
}
for t in iperf3 jq curl nfcapd; do command -v $t >/dev/null || { echo "observability.sh: $t is required" >&2; exit 1; }; done
for ns in boa bob; do
  ip netns list | awk '{print $1}' | grep -qx "$ns" && { echo "observability.sh: namespace $ns exists; remove it first" >&2; exit 1; }
done

BUILD_NOTE="(given by TAPESTRY=)"
if [ -z "${TAPESTRY:-}" ]; then
  log "building the release tapestry (incremental)"
  TAPESTRY=$(release_binary tapestry)
  BUILD_NOTE="(release build of this tree, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ', with uncommitted changes'))"
fi

TMP=$(mktemp -d /tmp/bo-bench.XXXXXX)
RES="$TMP/results.tsv"
: >"$RES"
UP=""            # running topology name
NFCAPD_PID=""
SCRAPER_PID=""
IPERF_PID=""
GEN_PID=""
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, int(sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
COLLECTOR_PORT=$(free_port 2)   # SOCK_DGRAM
METRICS_PORT=$(free_port 1)     # SOCK_STREAM

down_setup() {
  [ -n "$SCRAPER_PID" ] && kill_pid "$SCRAPER_PID"; SCRAPER_PID=""
  if [ -n "$UP" ]; then "$TAPESTRY" down --name "$UP" >/dev/null 2>&1 || log "down --name $UP failed"; rm -rf "/var/log/tapestry/$UP"; UP=""; fi
  [ -n "$NFCAPD_PID" ] && kill_pid "$NFCAPD_PID"; NFCAPD_PID=""
}
cleanup() {
  set +e
  [ -n "$GEN_PID" ] && kill_tree "$GEN_PID"
  kill_pid "$IPERF_PID"
  down_setup
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# up_setup SETUP: the topology (with flow export for `flows`), the collector or the scraper.
up_setup() {
  local s=$1 extra="" args=() name
  case "$s" in
    off) name=booff ;;
    flows)
      name=boflows
      mkdir -p "$TMP/nf"
      nfcapd -w "$TMP/nf" -b 127.0.0.1 -p "$COLLECTOR_PORT" -t 3600 >"$TMP/nfcapd.log" 2>&1 &
      NFCAPD_PID=$!
      extra="    flow-export: {collector: \"127.0.0.1:$COLLECTOR_PORT\", sampling: 1}" ;;
    metrics) name=bometrics; args=(--metrics "127.0.0.1:$METRICS_PORT") ;;
  esac
  cat >"$TMP/$name.yaml" <<EOF
name: $name
switches:
  bosw:
$extra
    port-groups:
      bench: {vlan: none}
guests:
  boa: {kind: netns, nics: [{switch: bosw, port-group: bench, ip: $IP_A/24}]}
  bob: {kind: netns, nics: [{switch: bosw, port-group: bench, ip: $IP_B/24}]}
EOF
  UP=$name
  "$TAPESTRY" up "$TMP/$name.yaml" --detach "${args[@]}" >/dev/null || return 1
  SW_PID=$("$TAPESTRY" status --name "$name" --json | jq -r .pid)
  ip -n boa link set lo up; ip -n bob link set lo up
  if [ "$s" = metrics ]; then
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null || { echo "no /metrics"; return 1; }
    ( while true; do curl -s -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics"; sleep 1; done ) &
    SCRAPER_PID=$!
  fi
}

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rx() { ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"; }

measure() {  # measure SETUP ROUND
  local s=$1 r=$2 out c0 c1 t0 t1 rx0 rx1 mac_b
  ip netns exec boa ping -c 3 -i 0.2 -W 1 -q $IP_B >/dev/null || { log "$s: no connectivity"; return 1; }
  ip netns exec bob iperf3 -s -B $IP_B -D -I "$TMP/iperf.pid" >/dev/null
  for _ in $(seq 50); do [ -s "$TMP/iperf.pid" ] && break; sleep 0.1; done
  IPERF_PID=$(tr -d '\0 \n' <"$TMP/iperf.pid"); sleep 0.3
  c0=$(cpu_ticks "$SW_PID"); t0=$(now)
  out=$(ip netns exec boa iperf3 -c $IP_B -t "$DUR" -J) || { log "$s: iperf3 failed"; }
  t1=$(now); c1=$(cpu_ticks "$SW_PID")
  record "$s" tcp "$r" "$(echo "$out" | jq '.end.sum_received.bits_per_second / 1e9')"
  record "$s" cpu "$r" "$(echo "$c0 $c1 $t0 $t1 $TCK" | awk '{ printf "%.1f", ($2 - $1) / $5 / ($4 - $3) * 100 }')"
  kill_pid "$IPERF_PID"; IPERF_PID=""; rm -f "$TMP/iperf.pid"
  sleep 0.5
  mac_b=$(ip netns exec bob cat /sys/class/net/eth0/address)
  if command -v trafgen >/dev/null; then
    echo "{ eth(da=$mac_b), ipv4(saddr=$IP_A, daddr=$IP_B, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }" >"$TMP/udp64.cfg"
    ip netns exec boa trafgen -o eth0 -i "$TMP/udp64.cfg" -P 1 --no-sock-mem -Q -C >/dev/null 2>&1 &
  else
    ip netns exec boa iperf3 -c $IP_B -u -l 18 -b 0 -t $((DUR + 2)) >/dev/null 2>&1 &
  fi
  GEN_PID=$!
  sleep 1
  c0=$(cpu_ticks "$SW_PID"); rx0=$(rx bob rx_packets); t0=$(now)
  sleep "$DUR"
  rx1=$(rx bob rx_packets); t1=$(now); c1=$(cpu_ticks "$SW_PID")
  kill_tree "$GEN_PID"; wait "$GEN_PID" 2>/dev/null || true; GEN_PID=""
  record "$s" pps "$r" "$(echo "$rx0 $rx1 $t0 $t1" | awk '{ printf "%.3f", ($2 - $1) / ($4 - $3) / 1e6 }')"
  record "$s" cpu64 "$r" "$(echo "$c0 $c1 $t0 $t1 $TCK" | awk '{ printf "%.1f", ($2 - $1) / $5 / ($4 - $3) * 100 }')"
  if [ "$s" = flows ]; then
    # Sanity: the flows were really accounted and exported.
    record "$s" accounted "$r" "$("$TAPESTRY" status --name "$UP" --json | jq '.flow_export[0].accounted_frames')"
  fi
  sleep 1
}

for r in $(seq "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do
    log "round $r/$ROUNDS: $s"
    if up_setup "$s" >"$TMP/up-$s.log" 2>&1; then measure "$s" "$r" || true; else log "$s: setup failed: $(tail -1 "$TMP/up-$s.log")"; fi
    down_setup
  done
done

MODE="full ($ROUNDS rounds, $DUR s runs)"; [ "$QUICK" = 1 ] && MODE="quick (1 round, $DUR s runs)"
{
  echo "# Observability cost"
  echo
  echo "Generated by \`Scripts/bench/observability.sh$([ "$QUICK" = 1 ] && echo ' --quick')\` — do not edit by hand."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- kernel: $(uname -r); CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores"
  echo "- mode: $MODE; medians over rounds; setups run one at a time, alternately"
  echo "- workload: netns A $IP_A/24 ↔ switch (port group vlan: none) ↔ netns B $IP_B/24; binary ${TAPESTRY#$ROOT/} $BUILD_NOTE"
  echo "- flows: \`flow-export: {sampling: 1}\` (every frame accounted, default timeouts) to nfcapd on 127.0.0.1; metrics: \`up --metrics\`, curl scraping /metrics once a second during the measurements"
  echo "- 64B: $(command -v trafgen >/dev/null && echo 'trafgen (1 CPU), 60-byte UDP frames from A, one flow' || echo 'iperf3 -u -l 18 -b 0 from A'); forwarded = rx_packets delta at B"
  echo "- CPU: the switch process's utime+stime, % of one core"
  echo
  python3 - "$RES" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, m, r, v = line.rstrip("\n").split("\t")
    try: rows.setdefault((s, m), []).append(float(v))
    except ValueError: pass
def med(s, m):
    v = rows.get((s, m)); return statistics.median(v) if v else None
metrics = [("tcp", "TCP 1 stream (Gb/s, higher is better)", "{:.2f}"), ("cpu", "switch CPU during TCP (% of a core)", "{:.0f}"),
           ("pps", "64B frames forwarded (Mpps, higher is better)", "{:.3f}"), ("cpu64", "switch CPU during 64B (% of a core)", "{:.0f}")]
print("| metric | off | flow export, sampling 1 | metrics, scraped every second | flows/off | metrics/off | rounds (off; flows; metrics) |")
print("|---|---:|---:|---:|---:|---:|---|")
for key, label, fmt in metrics:
    vals = [med(s, key) for s in ("off", "flows", "metrics")]
    cells = [fmt.format(v) if v is not None else "n/a" for v in vals]
    ratio = lambda a, b: "{:.2f}×".format(a / b) if a is not None and b else "n/a"
    spread = "; ".join(", ".join(fmt.format(v) for v in rows.get((s, key), [])) for s in ("off", "flows", "metrics"))
    print(f"| {label} | {' | '.join(cells)} | {ratio(vals[1], vals[0])} | {ratio(vals[2], vals[0])} | {spread} |")
acc = rows.get(("flows", "accounted"))
runs = {s: len(rows.get((s, "tcp"), [])) for s in ("off", "flows", "metrics")}
print()
print("Rounds measured: " + ", ".join(f"{s} {n}" for s, n in runs.items()) + "."
      + (f" Frames accounted into flows per flows round (status): {', '.join(str(int(a)) for a in acc)}." if acc else "")
      + " The machine is shared with other jobs: single TCP runs swing by tens of percent in any setup"
      + " (compare the rounds); the switch's CPU is the steadier measure of what a setup costs.")
PY
} >"$TMP/observability-results.md"
cp "$TMP/observability-results.md" "$HERE/observability-results.md"
cat "$TMP/observability-results.md"
[ "$QUICK" = 1 ] || python3 "$HERE/publish.py" observability-results
