# Shared by the scripts of Scripts/bench (sourced, not run).
#
# bench_args USAGE_LAST_LINE "$@": --quick (1 round, 3 s runs), --rounds N, -h (prints the
# calling script's header comment, lines 2..USAGE_LAST_LINE). Sets HERE, ROOT, QUICK,
# ROUNDS, DUR.
bench_args() {
  local help_end=$1; shift
  HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
  ROOT=$(cd "$HERE/../.." && pwd)
  QUICK=0
  ROUNDS=3
  DUR=10
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) QUICK=1; ROUNDS=1; DUR=3 ;;
      --rounds) ROUNDS="$2"; shift ;;
      -h|--help) sed -n "2,${help_end}p" "$0"; exit 0 ;;
      *) echo "usage: $0 [--quick] [--rounds N]" >&2; exit 2 ;;
    esac
    shift
  done
}

# release_binary PRODUCT: builds the release PRODUCT (incremental: quick when up to date)
# and prints its path. Always built, so a benchmark never measures a stale binary; to
# measure another build, the scripts take an explicit path (TAPESTRY=…) instead.
release_binary() {
  (cd "$ROOT" && swift build -c release --product "$1") >&2 || { echo "bench: release build of $1 failed" >&2; exit 1; }
  echo "$ROOT/.build/release/$1"
}

# Processes: only PIDs the calling script started are ever passed.
alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }
kill_pid() {  # kill_pid PID: TERM, wait up to 5 s, then KILL
  local p=$1 i
  alive "$p" || return 0
  kill "$p" 2>/dev/null || true
  for i in $(seq 50); do alive "$p" || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}
descendants() { local c; for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done; }
# kill_tree PID: the process and everything it started, children first (trafgen forks a
# worker per CPU that outlives a killed parent and kept flooding later rounds).
kill_tree() { local d; for d in $(descendants "$1"); do kill_pid "$d"; done; kill_pid "$1"; }

# Results: one `setup metric round value` line per measurement in $RES.
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"; }
now() { date +%s.%N; }

# revision_binary REV: the release `tapestry` of git revision REV, built once in a temporary
# worktree and kept in .build-bench/tapestry-SHA (reused by later runs); prints "PATH SHA".
# Returns non-zero (with the reason on stdout) when REV does not resolve or does not build.
revision_binary() {
  local sha dir src
  sha=$(cd "$ROOT" && git rev-parse --short=12 "$1^{commit}" 2>/dev/null) || { echo "no revision $1"; return 1; }
  dir="$ROOT/.build-bench/tapestry-$sha"
  if [ ! -x "$dir/tapestry" ]; then
    src=$(mktemp -d /tmp/tapestry-rev.XXXXXX)
    echo "[bench $(date +%T)] building Tapestry at $sha (once; kept in ${dir#$ROOT/})" >&2
    (cd "$ROOT" && git worktree add --detach "$src/tree" "$sha" >/dev/null 2>&1) || { rm -rf "$src"; echo "git worktree add $sha failed"; return 1; }
    if (cd "$src/tree" && swift build -c release --product tapestry >"$src/build.log" 2>&1); then
      mkdir -p "$dir" && cp "$src/tree/.build/release/tapestry" "$dir/tapestry"
    else
      echo "the build of $sha failed: $(tail -1 "$src/build.log")"
    fi
    (cd "$ROOT" && git worktree remove --force "$src/tree" >/dev/null 2>&1); rm -rf "$src"
    [ -x "$dir/tapestry" ] || return 1
  fi
  echo "$dir/tapestry $sha"
}

# commit_before SUBJECT_PREFIX: the parent of the first commit whose subject starts with
# SUBJECT_PREFIX (the state just before a change), or nothing.
commit_before() {
  local c
  c=$(cd "$ROOT" && git rev-list --reverse HEAD --grep="^$1" | head -1)
  [ -n "$c" ] && echo "$c^"
}

# ovs_start DIR VSWITCHD [other_config:KEY=VALUE ...]: a private Open vSwitch in DIR (made
# afresh): its own database, ovsdb-server and VSWITCHD (ovs-vswitchd, or the DPDK build),
# never the system service. The other_config keys are set before VSWITCHD starts, as it
# reads some (userspace-tso-enable, dpdk-*) only then. Sets OVSDB_PID and VSWITCHD_PID (the
# only processes a caller then stops); its unixctl sockets are DIR/ovsdb.ctl and
# DIR/vswitchd.ctl, the database DIR/db.sock.
ovs_start() {
  local d=$1 vswitchd=$2; shift 2
  rm -rf "$d"; mkdir -p "$d"
  export OVS_RUNDIR="$d" OVS_DBDIR="$d" OVS_LOGDIR="$d"
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
  ovsdb-server "$d/conf.db" --remote=punix:"$d/db.sock" --pidfile="$d/ovsdb.pid" --detach \
    --log-file="$d/ovsdb.log" --unixctl="$d/ovsdb.ctl" --no-chdir || return 1
  OVSDB_PID=$(cat "$d/ovsdb.pid")
  ovs-vsctl --db=unix:"$d/db.sock" --no-wait init || return 1
  if [ $# -gt 0 ]; then ovs-vsctl --db=unix:"$d/db.sock" --no-wait set Open_vSwitch . "$@" || return 1; fi
  "$vswitchd" unix:"$d/db.sock" --pidfile="$d/vswitchd.pid" --detach \
    --log-file="$d/vswitchd.log" --unixctl="$d/vswitchd.ctl" --no-chdir || return 1
  VSWITCHD_PID=$(cat "$d/vswitchd.pid")
}

# vhost_pair_topology FILE NAME GUEST MAC0 MAC1: writes topology NAME, a `kind: vhost-user`
# guest GUEST with two NICs (MAC0, MAC1) in one port group of one switch (the two "VMs" of
# the vhost-user benchmarks; the switch serves /run/tapestry/NAME.vhost/GUEST.eth{0,1}.sock).
vhost_pair_topology() {
  cat >"$1" <<YAML
name: $2
switches:
  sw0:
    port-groups:
      lan: {vlan: none}
guests:
  $3:
    kind: vhost-user
    nics:
      - {switch: sw0, port-group: lan, mac: "$4"}
      - {switch: sw0, port-group: lan, mac: "$5"}
YAML
}

# tapestry_sent BINARY NAME: frames topology NAME's switches sent, all ports together.
tapestry_sent() { "$1" ports --name "$2" --json | python3 -c 'import json,sys; print(sum(p["tx_frames"] for p in json.load(sys.stdin)["ports"]))'; }
