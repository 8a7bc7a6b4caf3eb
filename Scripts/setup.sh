#!/usr/bin/env bash
# Installs what Tapestry needs on a Debian machine (idempotent; fast when all is present).
# Debian packages only: libnl and libpcap to build; iproute2, ping, tcpdump, scapy, iperf3
# for the demo and the system tests; dpdk-dev for dpdk-testpmd, a vhost-user frontend in the tests.
set -euo pipefail
packages=(libnl-3-dev libnl-route-3-dev libpcap-dev pkg-config iproute2 iputils-ping tcpdump tshark iperf3 python3-scapy procps ethtool qemu-system-x86 cpio xz-utils zstd dpdk-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install: ${missing[*]}" >&2; exit 1; fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6 toolchain required)" >&2; exit 1; }
