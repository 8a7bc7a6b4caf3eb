#!/usr/bin/env bash
# The switch between two vhost-user ports against Open vSwitch-DPDK, side by side in one run.
# One testpmd with two virtio-user ports in `io` forwarding with --tx-first is
# the two "VMs"; frames circle testpmd → switch → testpmd → … in both directions, each
# frame a known unicast (the ports' MACs are the NICs' declared MACs, --eth-peer the other's).
#   - Tapestry:        `tapestry up` of a `kind: vhost-user` guest with two NICs in one port
#                      group (the switch serves both sockets, testpmd connects), one datapath
#                      thread (TAPESTRY_DATAPATH_THREADS=1), the default: each port polls
#                      its guest's empty ring 50 µs, then sleeps until kicked;
#   - Tapestry (kicks): the same with TAPESTRY_VHOST_POLL_US=0: kicks only;
#   - Tapestry (poll): the same with TAPESTRY_BUSY_POLL_US=20000 (the datapath and the ports
#                      poll 20 ms after the last frame);
#   - OVS-DPDK:        ovs-vswitchd-dpdk (Debian openvswitch-switch-dpdk, run privately: its
#                      own ovsdb-server, database and run directory; no system service), a
#                      netdev bridge with two dpdkvhostuserclient ports (OVS connects,
#                      testpmd serves with server=1), NORMAL forwarding (MAC learning), one
#                      PMD thread.
# Each switch runs on core 0 (taskset; OVS: pmd-cpu-mask), testpmd's forwarding core on core
# 1: the machine's two cores, two busy pollers at most. Over the middle of each run (all but
# its first 2 s and last s): Mpps = frames the switch sent to the two ports per second, by
# its own counters (`tapestry ports`; OVS: `dpctl/show -s`), on its one core; testpmd's own
# receive rate (--stats-period 1, median second) is printed next to it as a check. Per frame,
# from the switch's forwarding thread (Tapestry's tapestry-dp0, OVS's pmd thread): user and
# system CPU time (/proc/PID/task/TID/stat) and heap allocations (perf uprobes on libc's
# malloc, calloc, realloc and posix_memalign on that thread) divided by those frames.
# 64-byte frames and 1500-byte frames. Then TCP between two QEMU guests (busybox nc, 50 MB)
# on vhost-user and on TAP NICs (the receiver counts the bytes), and the switch's CPU meanwhile.
#
#   Scripts/bench/vhost-switch.sh [--quick] [--rounds N] [--seconds S] [--no-tcp] [--no-write]
#
# --quick: 1 round of 3 s, no TCP, nothing written. Otherwise writes
# Scripts/bench/vhost-results.md (published into the README's `vhost-results` block by
# Scripts/bench/publish.py). As root. Installs openvswitch-switch-dpdk with apt-get when
# missing (the system's ovs-vswitchd alternative is put back as it was; no service starts).
# Hugepages for OVS-DPDK: nr_hugepages raised for the run and restored after, hugetlbfs
# mounted in the run's own directory and unmounted after, also on failure or Ctrl-C.
# testpmd uses --no-huge. Processes: only those started here are signalled (by PID).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
ROUNDS=3 DUR=10 TCP=1 WRITE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ROUNDS=1; DUR=3; TCP=0; WRITE=0 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) DUR=$2; shift ;;
    --no-tcp) TCP=0 ;;
    --no-write) WRITE=0 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--rounds N] [--seconds S] [--no-tcp] [--no-write]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "bench: dpdk-testpmd missing (Scripts/setup.sh installs dpdk-dev)" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench: perf missing (apt-get install linux-perf)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 cores (switch on core 0, testpmd on core 1)" >&2; exit 1; }

TAPESTRY=${TAPESTRY:-$(release_binary tapestry)}
OVSDPDK=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
W=$(mktemp -d /tmp/vhsw.XXXXXX)
NAME=vhbench
PIDS=()
HUGE_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
HUGE_MOUNTED=0
PROBES=0
OVSDB_PID="" VSWITCHD_PID=""

cleanup() {
  set +e
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill_tree "$p"; done
  "$TAPESTRY" down --name "$NAME" >/dev/null 2>&1
  "$TAPESTRY" down --name vhbtcp >/dev/null 2>&1
  down_ovs
  [ "$PROBES" = 1 ] && perf probe -q -d 'probe_libc:*' >/dev/null 2>&1
  [ "$HUGE_MOUNTED" = 1 ] && umount "$W/huge"
  echo "$HUGE_BEFORE" > /proc/sys/vm/nr_hugepages
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Open vSwitch-DPDK ------------------------------------------------------------------
install_ovs_dpdk() {
  [ -x "$OVSDPDK" ] && return 0
  echo "bench: installing openvswitch-switch-dpdk (apt-get)" >&2
  local before status policy=0
  before=$(update-alternatives --query ovs-vswitchd 2>/dev/null | awk '/^Value:/ {print $2}')
  status=$(update-alternatives --query ovs-vswitchd 2>/dev/null | awk '/^Status:/ {print $2}')
  # No service may start from the package scripts (policy-rc.d, only while installing).
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openvswitch-switch-dpdk >"$W/apt.log" 2>&1 \
    || { [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -20 "$W/apt.log" >&2; echo "bench: apt-get install openvswitch-switch-dpdk failed" >&2; exit 1; }
  [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  # The system's default ovs-vswitchd stays what it was.
  if [ -n "$before" ]; then
    if [ "$status" = auto ]; then update-alternatives --auto ovs-vswitchd >/dev/null; else update-alternatives --set ovs-vswitchd "$before" >/dev/null; fi
  fi
  [ -x "$OVSDPDK" ] || { echo "bench: $OVSDPDK missing after install" >&2; exit 1; }
}

ovsc() { ovs-vsctl --db=unix:"$W/ovs/db.sock" "$@"; }
up_ovs() {  # up_ovs: private ovsdb-server + ovs-vswitchd-dpdk, bridge with two dpdkvhostuserclient ports
  local d="$W/ovs"
  ovs_start "$d" "$OVSDPDK" other_config:dpdk-init=true other_config:dpdk-socket-mem=1024 \
    other_config:dpdk-lcore-mask=0x1 other_config:pmd-cpu-mask=0x1 \
    "other_config:dpdk-extra=\"--huge-dir=$W/huge --file-prefix=vhsw$$ --no-pci\"" || return 1
  ovsc --timeout=30 add-br vhbr0 -- set Bridge vhbr0 datapath_type=netdev \
    -- add-port vhbr0 vu0 -- set Interface vu0 type=dpdkvhostuserclient options:vhost-server-path="$W/ovs0.sock" \
    -- add-port vhbr0 vu1 -- set Interface vu1 type=dpdkvhostuserclient options:vhost-server-path="$W/ovs1.sock"
}
down_ovs() {
  if [ -n "$VSWITCHD_PID" ]; then
    ovs-appctl -t "$W/ovs/vswitchd.ctl" exit >/dev/null 2>&1 || true
    kill_pid "$VSWITCHD_PID"; VSWITCHD_PID=""
  fi
  [ -n "$OVSDB_PID" ] && { kill_pid "$OVSDB_PID"; OVSDB_PID=""; }
  return 0
}

# ---- measuring ------------------------------------------------------------------------
MAC0=02:00:00:00:b0:01 MAC1=02:00:00:00:b0:02

# testpmd TAG SECONDS SIZE VDEV0 VDEV1: the two "VMs" (io forwarding, --tx-first), one
# forwarding core (core 1), stats every second; output in $W/TAG.fe. In the background.
testpmd_start() {
  local tag=$1 secs=$2 size=$3 v0=$4 v1=$5
  (sleep "$secs" | timeout $((secs + 30)) dpdk-testpmd -l 0-1 --main-lcore 0 --no-pci --no-huge -m 512 --file-prefix="vhsw-fe-$$" \
     --vdev "$v0" --vdev "$v1" -- --forward-mode=io --auto-start --tx-first --nb-cores=1 --total-num-mbufs=16384 \
     --eth-peer=0,$MAC1 --eth-peer=1,$MAC0 --stats-period 1 --txpkts=$((size - 4)) >"$W/$tag.fe" 2>&1) &
  FE=$!; PIDS+=("$FE")
}

# rate FILE: median of (port 0 + port 1 Rx-pps) over testpmd's seconds with traffic, the
# first and last two left out (ramp-up, stop), in Mpps.
rate() {
  awk '/statistics for port 0/ {p=0} /statistics for port 1/ {p=1} /Rx-pps:/ {v[p]=$2; if (p==1) {print v[0]+v[1]}}' "$1" \
    | awk '$1 > 0' | sed '1,2d;$d' | sed '$d' | sort -g | awk '{a[n++]=$1} END {if (n==0) {print 0; exit} printf "%.3f\n", a[int((n-1)/2)]/1e6}'
}

# thread_of PID PATTERN: the TID whose comm matches PATTERN.
thread_of() { local t; for t in /proc/"$1"/task/*; do grep -qE "$2" "$t/comm" 2>/dev/null && { basename "$t"; return; }; done; }
# ticks PID TID: "utime stime" in clock ticks.
ticks() { awk '{sub(/^.*\) /, ""); print $12, $13}' /proc/"$1"/task/"$2"/stat; }
HZ=$(getconf CLK_TCK)

probes_on() {
  local f
  for f in malloc calloc realloc posix_memalign; do perf probe -q -x "$(ldconfig -p | awk '/libc.so.6 .*x86-64/ {print $NF; exit}')" --add "$f" >/dev/null 2>&1 || true; done
  PROBES=1
}

# window TAG PID TID FRAMES_CMD: over DUR-3 seconds from now, the thread's CPU and heap
# allocations and the switch's frames sent (FRAMES_CMD prints a total); writes
# "mpps user_ns_per_frame sys_ns_per_frame allocs_per_frame frames" to $W/TAG.cpu.
window() {
  local tag=$1 pid=$2 tid=$3 framecmd=$4 span=$((DUR - 3)) f0 f1 u0 s0 u1 s1 t0 t1 allocs
  [ "$span" -ge 1 ] || span=1
  f0=$($framecmd); read -r u0 s0 < <(ticks "$pid" "$tid"); t0=$(now)
  allocs=$(perf stat -x, -e 'probe_libc:*' -t "$tid" -- sleep "$span" 2>&1 | awk -F, '$1 ~ /^[0-9]+$/ {s += $1} END {print s + 0}')
  f1=$($framecmd); read -r u1 s1 < <(ticks "$pid" "$tid"); t1=$(now)
  awk -v f=$((f1 - f0)) -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v a="$allocs" -v hz="$HZ" -v t="$t0" -v e="$t1" \
    'BEGIN { if (f <= 0) { print "0 n/a n/a n/a 0"; exit } printf "%.3f %.1f %.1f %.6f %d\n", f / (e - t) / 1e6, u * 1e9 / hz / f, s * 1e9 / hz / f, a / f, f }' >"$W/$tag.cpu"
}

tapestry_frames() { tapestry_sent "$TAPESTRY" "$NAME"; }
# OVS's Interface statistics in the database lag up to 5 s: ask the datapath itself.
ovs_frames() { ovs-appctl -t "$W/ovs/vswitchd.ctl" dpctl/show -s 2>/dev/null | awk '/: vu[01] / {p=1; next} /^  port / {p=0} p && /TX packets:/ {sub(/.*TX packets:/, ""); s += $1} END {print s + 0}'; }

# run_tapestry TAG SIZE POLL_US [VHOST_POLL_US]
run_tapestry() {
  local tag=$1 size=$2 poll=$3 vpoll=${4:-} pid tid i
  vhost_pair_topology "$W/$NAME.yaml" "$NAME" vhbapp "$MAC0" "$MAC1"
  env TAPESTRY_DATAPATH_THREADS=1 TAPESTRY_BUSY_POLL_US=$poll TAPESTRY_VHOST_POLL_US=$vpoll taskset -c 0 "$TAPESTRY" up "$W/$NAME.yaml" --detach >"$W/$tag.up" 2>&1 \
    || { cat "$W/$tag.up" >&2; return 1; }
  pid=$(python3 -c "import json; print(json.load(open('/run/tapestry/$NAME.state'))['pid'])")
  tid=$(thread_of "$pid" '^tapestry-dp0')
  testpmd_start "$tag" $((DUR + 1)) "$size" "net_virtio_user0,path=/run/tapestry/$NAME.vhost/vhbapp.eth0.sock,queue_size=256,mac=$MAC0" \
    "net_virtio_user1,path=/run/tapestry/$NAME.vhost/vhbapp.eth1.sock,queue_size=256,mac=$MAC1"
  sleep 3
  window "$tag" "$pid" "$tid" tapestry_frames
  wait "$FE" 2>/dev/null || true
  "$TAPESTRY" ports --name "$NAME" >"$W/$tag.ports" 2>&1 || true
  "$TAPESTRY" down --name "$NAME" >/dev/null 2>&1 || true
}

# run_ovs TAG SIZE
run_ovs() {
  local tag=$1 size=$2 tid
  rm -f "$W"/ovs[01].sock
  testpmd_start "$tag" $((DUR + 6)) "$size" "net_virtio_user0,path=$W/ovs0.sock,server=1,queue_size=256,mac=$MAC0" \
    "net_virtio_user1,path=$W/ovs1.sock,server=1,queue_size=256,mac=$MAC1"
  for _ in $(seq 50); do [ -S "$W/ovs0.sock" ] && [ -S "$W/ovs1.sock" ] && break; sleep 0.1; done
  up_ovs >"$W/$tag.ovsup" 2>&1 || { cat "$W/$tag.ovsup" "$W/ovs/vswitchd.log" >&2; return 1; }
  tid=$(thread_of "$VSWITCHD_PID" '^pmd')
  sleep 3
  window "$tag" "$VSWITCHD_PID" "$tid" ovs_frames
  ovs-appctl -t "$W/ovs/vswitchd.ctl" dpif-netdev/pmd-stats-show >"$W/$tag.pmd" 2>&1 || true
  wait "$FE" 2>/dev/null || true
  down_ovs
  rm -rf "$W/ovs"
}

install_ovs_dpdk
# 2 MiB hugepages for OVS-DPDK's 1 GiB of socket memory, plus what others already use.
need=$((HUGE_BEFORE + 600))
echo "$need" > /proc/sys/vm/nr_hugepages
[ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((HUGE_BEFORE + 512)) ] || { echo "bench: could not reserve 512 hugepages (memory fragmented?)" >&2; exit 1; }
mkdir -p "$W/huge"; mount -t hugetlbfs -o pagesize=2M none "$W/huge"; HUGE_MOUNTED=1
probes_on

SIZES=(${BENCH_SIZES:-64 1500})
SETUPS=(${BENCH_SETUPS:-tapestry tapestry-kicks tapestry-poll ovs})
declare -A R F
for size in "${SIZES[@]}"; do
  for round in $(seq "$ROUNDS"); do
    for setup in "${SETUPS[@]}"; do
      tag="$setup-$size-$round"
      case $setup in
        tapestry) run_tapestry "$tag" "$size" 0 ;;
        tapestry-kicks) run_tapestry "$tag" "$size" 0 0 ;;
        tapestry-poll) run_tapestry "$tag" "$size" 20000 ;;
        ovs) run_ovs "$tag" "$size" ;;
      esac
      r=$(awk '{print $1}' "$W/$tag.cpu" 2>/dev/null || echo 0)
      R[$setup-$size]+="$r "
      F[$setup-$size]+="$(rate "$W/$tag.fe") "
      cp "$W/$tag.cpu" "$W/$setup-$size.cpu.$round" 2>/dev/null || true
      echo "bench: round $round, ${size}-byte frames, $setup: $r Mpps (testpmd: $(rate "$W/$tag.fe")); (Mpps, user ns, sys ns, allocations per frame, frames): $(cat "$W/$tag.cpu" 2>/dev/null)" >&2
    done
  done
done

median() { tr ' ' '\n' | awk '$1 != "" && $1 != "n/a"' | sort -g | awk '{a[n++]=$1} END {if (n==0) {print "n/a"; exit} print a[int((n-1)/2)]}'; }
col() { local setup=$1 size=$2 field=$3; cat "$W/$setup-$size".cpu.* 2>/dev/null | awk -v f="$field" '{print $f}' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f×\n", a / b }'; }
# Per-round ratios of SETUP to OVS-DPDK (each round runs the setups back to back, so a round's
# pair shares the machine's state, which drifts between rounds): "r1 r2 …", n/a where missing.
round_ratios() {  # round_ratios SETUP SIZE
  local a=(${R[$1-$2]-}) b=(${R[ovs-$2]-}) i out=""
  for i in "${!a[@]}"; do out+="$(ratio "${a[$i]}" "${b[$i]:-n/a}" | tr -d '×') "; done
  echo "${out% }"
}
round_median() { local m; m=$(round_ratios "$1" "$2" | median); if [ "$m" = n/a ]; then echo n/a; else echo "${m}×"; fi; }

# ---- TCP between two QEMU guests -------------------------------------------------------
TCPLINES=()
console_run() {  # console_run SOCKET COMMAND TIMEOUT: runs COMMAND in a VM's busybox shell, prints its output
  python3 - "$1" "$2" "$3" <<'PY'
import re, socket, sys, time
path, cmd, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(0.25)
def wait(pat, t):
    end, out = time.time() + t, b""
    while time.time() < end:
        try:
            b = s.recv(65536)
            if not b: break
            out += b
        except socket.timeout: pass
        m = re.search(pat, out)
        if m: return out, m
    return out, None
for _ in range(10):
    s.sendall(b"\n")
    if wait(rb"# ", 2)[1]: break
s.sendall(b"stty -echo 2>/dev/null\n" + cmd.encode() + b"\necho __done=$?\n")
out, m = wait(rb"__done=[0-9]+", timeout)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(0 if m else 3)
PY
}
tcp_run() {  # tcp_run BACKEND: Mb/s of 50 MB from VM a to VM b, and the datapath thread's CPU %
  local backend=$1 bytes=50000000 pid tid u0 s0 u1 s1 t0 t1 out real
  cat >"$W/vhbtcp.yaml" <<EOF
name: vhbtcp
switches:
  sw0:
    port-groups:
      lan: {vlan: none}
guests:
  vhbta: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: lan, ip: 10.79.9.1/24, backend: $backend}]}
  vhbtb: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: lan, ip: 10.79.9.2/24, backend: $backend}]}
EOF
  TAPESTRY_DATAPATH_THREADS=1 "$TAPESTRY" up "$W/vhbtcp.yaml" --detach >"$W/tcp-$backend.up" 2>&1 || { cat "$W/tcp-$backend.up" >&2; return 1; }
  pid=$(python3 -c "import json; print(json.load(open('/run/tapestry/vhbtcp.state'))['pid'])")
  tid=$(thread_of "$pid" '^tapestry-dp0')
  # The receiver counts what arrives (busybox nc quits when its stdin ends: a sleep holds it
  # open); the time is the wall time around the sender's command on its console (busybox nc
  # ends when its input does), which includes the console's own round trip.
  console_run /run/tapestry/vhbtcp.vms/vhbtb.console "setsid sh -c 'sleep 600 | nc -l -p 5001 | wc -c > /tmp/tcp-bytes' </dev/null >/dev/null 2>&1 &" 20 >/dev/null
  sleep 1
  read -r u0 s0 < <(ticks "$pid" "$tid"); t0=$(now)
  console_run /run/tapestry/vhbtcp.vms/vhbta.console "head -c $bytes /dev/zero | nc -w 2 10.79.9.2 5001" 300 >/dev/null || true
  t1=$(now); read -r u1 s1 < <(ticks "$pid" "$tid")
  got=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    # The answer follows the shell's prompt on its line: "vhbtb:/# 50000000".
    got=$(console_run /run/tapestry/vhbtcp.vms/vhbtb.console "cat /tmp/tcp-bytes 2>/dev/null" 20 | tr -d '\r' | sed -n 's/^.*# *\([0-9][0-9]*\) *$/\1/p' | tail -1 || true)
    [ -n "$got" ] && break
    sleep 1
  done
  real=$(echo "$t1 - $t0" | bc)
  if [ "$got" != "$bytes" ]; then echo "bench: TCP over $backend: the receiver counted '${got:-nothing}' of $bytes bytes" >&2; real=0; fi
  "$TAPESTRY" down --name vhbtcp >/dev/null 2>&1 || true
  awk -v b=$bytes -v r="${real:-0}" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$HZ" -v w="$(echo "$t1 - $t0" | bc)" \
    'BEGIN { if (r <= 0) { print "n/a n/a"; exit } printf "%.0f %.0f\n", b * 8 / r / 1e6, (u + s) / hz / w * 100 }'
}
if [ "$TCP" = 1 ]; then
  for backend in vhost-user tap; do
    read -r mbps cpu < <(tcp_run $backend)
    echo "bench: TCP VM to VM over $backend: $mbps Mb/s, datapath thread $cpu% of a core" >&2
    TCPLINES+=("| TCP VM → VM, 50 MB, busybox nc, NICs on $backend | $mbps Mb/s | $cpu |")
  done
fi

# ---- report ------------------------------------------------------------------------------
report() {
  echo "# vhost-user results"
  echo "Generated by \`Scripts/bench/vhost-switch.sh\` — do not edit by hand."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)); $ROUNDS round(s) of $DUR s per setup and frame size, setups alternating"
  echo "- workload: one dpdk-testpmd, two virtio-user ports (--no-huge), io forwarding with --tx-first, one forwarding core (core 1); frames circle through the switch both ways as known unicast"
  echo "- Tapestry: $TAPESTRY (${TAPESTRY#$ROOT/}), \`kind: vhost-user\` guest with two NICs in one port group, the switch serving both sockets, one datapath thread on core 0; default (each port polls its guest's empty ring 50 µs, then sleeps until kicked), kicks only (TAPESTRY_VHOST_POLL_US=0), or poll mode (TAPESTRY_BUSY_POLL_US=20000)"
  echo "- Open vSwitch-DPDK: $("$OVSDPDK" --version 2>/dev/null | head -1 | awk '{print $NF}') ($OVSDPDK), DPDK $(dpkg-query -W -f='${Version}' dpdk-dev 2>/dev/null | cut -d- -f1), netdev bridge, two dpdkvhostuserclient ports, NORMAL (MAC learning), one PMD thread on core 0, 1 GiB of 2 MiB hugepages"
  echo "- Mpps: frames the switch sent to the two ports per second by its own counters over the middle $((DUR - 3)) s of each run (medians over rounds), on its one core; testpmd's receive rate (median second) as a check; per frame: the forwarding thread's CPU time and heap allocations (perf uprobes on malloc, calloc, realloc, posix_memalign) over the same seconds, divided by those frames"
  echo
  echo "| metric | Tapestry (default) | Tapestry (kicks) | Tapestry (poll) | OVS-DPDK | Tapestry/OVS-DPDK | Tapestry (kicks)/OVS-DPDK | Tapestry (poll)/OVS-DPDK | rounds (Tapestry; kicks; poll; OVS) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  local size t tk tp o
  for size in "${SIZES[@]}"; do
    t=$(echo ${R[tapestry-$size]} | median); tk=$(echo ${R[tapestry-kicks-$size]} | median); tp=$(echo ${R[tapestry-poll-$size]} | median); o=$(echo ${R[ovs-$size]} | median)
    echo "| ${size}-byte frames forwarded per switch core (Mpps, higher is better) | $t | $tk | $tp | $o | $(ratio "$t" "$o") | $(ratio "$tk" "$o") | $(ratio "$tp" "$o") | ${R[tapestry-$size]% }; ${R[tapestry-kicks-$size]% }; ${R[tapestry-poll-$size]% }; ${R[ovs-$size]% } |"
    echo "| ${size}-byte: Tapestry/OVS-DPDK round by round (a round's runs are back to back), median | | | | | $(round_median tapestry $size) | $(round_median tapestry-kicks $size) | $(round_median tapestry-poll $size) | $(round_ratios tapestry $size); $(round_ratios tapestry-kicks $size); $(round_ratios tapestry-poll $size) |"
    echo "| ${size}-byte: testpmd's receive rate, check (Mpps) | $(echo ${F[tapestry-$size]} | median) | $(echo ${F[tapestry-kicks-$size]} | median) | $(echo ${F[tapestry-poll-$size]} | median) | $(echo ${F[ovs-$size]} | median) | | | | ${F[tapestry-$size]% }; ${F[tapestry-kicks-$size]% }; ${F[tapestry-poll-$size]% }; ${F[ovs-$size]% } |"
    echo "| ${size}-byte: user time per frame, forwarding thread (ns) | $(col tapestry $size 2) | $(col tapestry-kicks $size 2) | $(col tapestry-poll $size 2) | $(col ovs $size 2) | | | | |"
    echo "| ${size}-byte: system time per frame, forwarding thread (ns) | $(col tapestry $size 3) | $(col tapestry-kicks $size 3) | $(col tapestry-poll $size 3) | $(col ovs $size 3) | | | | |"
    echo "| ${size}-byte: heap allocations per frame, forwarding thread | $(col tapestry $size 4) | $(col tapestry-kicks $size 4) | $(col tapestry-poll $size 4) | $(col ovs $size 4) | | | | |"
  done
  if [ ${#TCPLINES[@]} -gt 0 ]; then
    echo
    echo "TCP between two QEMU guests under TCG (software emulation: no KVM on this machine), one datapath thread:"
    echo
    echo "| workload | throughput | Tapestry datapath thread (% of a core) |"
    echo "|---|---:|---:|"
    printf '%s\n' "${TCPLINES[@]}"
    echo
    echo "Under TCG the guests' CPUs are emulated: each guest's TCP stack and busybox nc run as translated code on the same two cores as the switch, so the guests, not the switch, bound the stream (the switch's thread stays mostly idle)."
  fi
}
# Setups left out (BENCH_SETUPS) report n/a, not an unbound variable.
for size in "${SIZES[@]}"; do
  for setup in tapestry tapestry-kicks tapestry-poll ovs; do
    R[$setup-$size]=${R[$setup-$size]-}; F[$setup-$size]=${F[$setup-$size]-}
  done
done
report | tee "$W/report.md"
if [ "$WRITE" = 1 ]; then cp "$W/report.md" "$HERE/vhost-results.md"; echo "bench: wrote Scripts/bench/vhost-results.md" >&2; fi
