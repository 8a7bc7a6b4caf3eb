#!/usr/bin/env bash
# vhost-user forwarding, side by side in one run: one testpmd with two virtio-user
# ports (io forwarding, --tx-first, 1 forwarding core) as the two "VMs"; between its ports:
#   - Tapestry kicks: tapestry-vhost-bench (two VhostUserPorts patched by CrossConnect, one
#     thread), guest kicks when idle (the default);
#   - Tapestry poll:  the same with --poll 20000 (the port keeps an empty ring polled 20 ms);
#   - Tapestry dp-poll: kicks, with the forwarding loop spinning like the datapath's poll mode
#     (TAPESTRY_BUSY_POLL_US=20000: non-blocking epoll_wait + sched_yield after work);
#   - DPDK vhost:     a second testpmd with two net_vhost ports (DPDK's vhost library, what
#     Open vSwitch-DPDK's vhost-user ports are built on), io forwarding, 1 forwarding core.
# Every setup is one forwarding core plus the frontend's core: the machine's two cores.
# Frames/s = the frontend's received frames per second (testpmd --stats-period 1, both ports,
# median over the run's middle seconds). For Tapestry also the user and system time per
# frame and heap allocations per frame (the bench process, malloc counted).
#
#   Scripts/bench/vhost.sh [--quick] [--rounds N] [--size BYTES]   (as root; BYTES default 64)
#
# Needs dpdk-testpmd (Scripts/setup.sh installs dpdk-dev); --no-huge: no hugepages needed.
set -euo pipefail
SIZE=64
args=()
while [ $# -gt 0 ]; do
  case "$1" in --size) SIZE=$2; shift 2 ;; *) args+=("$1"); shift ;; esac
done
. "$(dirname "$0")/lib.sh"
bench_args 18 "${args[@]+"${args[@]}"}"
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "bench: dpdk-testpmd missing (Scripts/setup.sh)" >&2; exit 1; }
BIN=$(release_binary tapestry-vhost-bench)
W=$(mktemp -d /tmp/vhbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill_pid "$p"; done; [ -n "${KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT
TXPKTS=""
[ "$SIZE" -ne 64 ] && TXPKTS="--txpkts=$((SIZE - 4))"
# testpmd's frame size excludes the FCS: 60 bytes is a 64-byte frame on a wire.
[ "$SIZE" -eq 64 ] && TXPKTS="--txpkts=60"

frontend() {  # frontend TAG SECONDS: runs the virtio-user testpmd, output in $W/TAG.fe
  (sleep "$2" | timeout $(($2 + 30)) dpdk-testpmd -l 0-1 --no-pci --no-huge -m 512 --file-prefix="vhb-fe-$$" \
     --vdev "net_virtio_user0,path=$W/a.sock,queue_size=256" --vdev "net_virtio_user1,path=$W/b.sock,queue_size=256" \
     -- --forward-mode=io --auto-start --tx-first --nb-cores=1 --total-num-mbufs=16384 --stats-period 1 $TXPKTS \
     >"$W/$1.fe" 2>&1) || true
}

# rate FILE: median of (port 0 + port 1 Rx-pps) over testpmd's one-second periods with traffic,
# the first and last of those (ramp-up, stop) left out.
rate() {
  awk '/statistics for port 0/ {p=0} /statistics for port 1/ {p=1} /Rx-pps:/ {v[p]=$2; if (p==1) {print v[0]+v[1]}}' "$1" \
    | awk '$1 > 0' | sed '1d;$d' | sort -g | awk '{a[n++]=$1} END {if (n==0) {print 0; exit} printf "%.3f\n", a[int((n-1)/2)]/1e6}'
}

declare -A R U S A
for round in $(seq "$ROUNDS"); do
  for setup in kicks poll dppoll dpdk; do
    rm -f "$W"/*.sock
    case $setup in
      kicks|poll|dppoll)
        poll=0; [ $setup = poll ] && poll=20000
        dp=0; [ $setup = dppoll ] && dp=20000
        "$BIN" --a "$W/a.sock" --b "$W/b.sock" --poll $poll --datapath-poll $dp --seconds $((DUR + 4)) --quiet >"$W/$setup.be" 2>&1 &
        BP=$!; PIDS+=("$BP") ;;
      dpdk)
        (sleep $((DUR + 6)) | timeout $((DUR + 40)) dpdk-testpmd -l 0-1 --main-lcore 1 --no-pci --no-huge -m 512 --file-prefix="vhb-be-$$" \
           --vdev "net_vhost0,iface=$W/a.sock,queues=1" --vdev "net_vhost1,iface=$W/b.sock,queues=1" \
           -- --forward-mode=io --auto-start --nb-cores=1 --total-num-mbufs=16384 >"$W/dpdk.be" 2>&1) &
        BP=$!; PIDS+=("$BP") ;;
    esac
    for i in $(seq 50); do [ -S "$W/a.sock" ] && [ -S "$W/b.sock" ] && break; sleep 0.1; done
    frontend "$setup" $((DUR + 2))
    wait "$BP" 2>/dev/null || true
    r=$(rate "$W/$setup.fe")
    R[$setup]+="$r "
    if [ $setup != dpdk ]; then
      line=$(grep '^summary:' "$W/$setup.be" || true)
      U[$setup]+="$(echo "$line" | sed -n 's/.*user_ns_per_frame=\([0-9.]*\).*/\1/p') "
      S[$setup]+="$(echo "$line" | sed -n 's/.*sys_ns_per_frame=\([0-9.]*\).*/\1/p') "
      A[$setup]+="$(echo "$line" | sed -n 's/.*allocs=\([0-9]*\).*/\1/p') "
    fi
    echo "round $round $setup: $r Mpps ${line:-}" >&2
    line=""
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[n++]=$1} END {if (n==0) {print "n/a"; exit} print a[int((n-1)/2)]}'; }
echo
echo "vhost-user forwarding, ${SIZE}-byte frames, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $ROUNDS rounds of ${DUR} s, medians"
echo "| setup | Mpps (one forwarding core) | user ns/frame | sys ns/frame | heap allocations while forwarding | per round (Mpps) |"
echo "|---|---:|---:|---:|---:|---|"
for setup in kicks poll dppoll dpdk; do
  case $setup in
    kicks) name="Tapestry (kicks)" ;; poll) name="Tapestry (port poll 20 ms)" ;;
    dppoll) name="Tapestry (kicks + datapath busy poll 20 ms)" ;; dpdk) name="DPDK vhost PMD (testpmd)" ;;
  esac
  if [ $setup = dpdk ]; then
    echo "| $name | $(echo ${R[$setup]} | median) | n/a | n/a | n/a | ${R[$setup]}|"
  else
    echo "| $name | $(echo ${R[$setup]} | median) | $(echo ${U[$setup]} | median) | $(echo ${S[$setup]} | median) | $(echo ${A[$setup]} | median) | ${R[$setup]}|"
  fi
done
