#!/usr/bin/env bash
# Scale check: how long `tapestry up --detach` and `down` take for N network-namespace
# guests on one switch (default 100), and that guests at both ends of the range reach each
# other. Prints the timings; no thresholds. Root only; names start with "bsc".
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100}
bin=${TAPESTRY:-.build/release/tapestry}
[ -x "$bin" ] || { echo "scale: building release tapestry"; swift build -c release --product tapestry >/dev/null; }
file=$(mktemp /tmp/bscale.XXXXXX.yaml)
trap 'rm -f "$file"; "$bin" down --name bscale >/dev/null 2>&1 || true' EXIT
{
  echo "name: bscale"
  echo "switches: {sw0: {port-groups: {g: {vlan: 10}}}}"
  echo "guests:"
  for i in $(seq 1 "$n"); do
    printf '  bsc%d: {kind: netns, nics: [{switch: sw0, port-group: g, ip: 10.66.%d.%d/16}]}\n' "$i" $((i / 250)) $((i % 250 + 1))
  done
} >"$file"
t0=$(date +%s.%N)
"$bin" up "$file" --detach >/dev/null
t1=$(date +%s.%N)
last_ip="10.66.$((n / 250)).$((n % 250 + 1))"
ping_ok=no; ip netns exec bsc1 ping -c 1 -W 2 "$last_ip" >/dev/null && ping_ok=yes
t2=$(date +%s.%N)
"$bin" down --name bscale >/dev/null
t3=$(date +%s.%N)
awk -v n="$n" -v up="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    -v down="$(awk -v a="$t2" -v b="$t3" 'BEGIN{print b-a}')" -v ok="$ping_ok" \
    'BEGIN { printf "scale: %d netns guests: up %.2f s, down %.2f s, bsc1 -> bsc%d ping: %s\n", n, up, down, n, ok }'
