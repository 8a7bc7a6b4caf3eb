#!/usr/bin/env bash
# Installs what Tapestry needs on a Debian machine (idempotent; fast when all is present).
# Debian packages only: libnl and libpcap to build; iproute2, ping, tcpdump, scapy, iperf3
# for the demo and the system tests; nfdump, prometheus (promtool), lldpd, graphviz (dot) for
# the observability tests (each exporter is checked by the real tool); libssl-dev (the fabric
# store's TLS) and etcd-server (the fabric store's tests start their own etcd members; no
# service is enabled); ruamel.yaml and jsonschema for the topology schema test; udhcpc (busybox)
# for netns guests with `ip: dhcp` and dnsmasq-base for the DHCP tests; openvswitch-switch
# for the overlay interop test (OVS userspace type=vxlan, started by the test; no service used);
# dpdk-dev for dpdk-testpmd, a vhost-user frontend in the tests.
set -euo pipefail
packages=(libnl-3-dev libnl-route-3-dev libpcap-dev pkg-config iproute2 iputils-ping tcpdump tshark iperf3 python3-scapy procps ethtool openvswitch-switch qemu-system-x86 cpio xz-utils zstd nfdump prometheus lldpd graphviz curl libssl-dev etcd-server python3-ruamel.yaml python3-jsonschema udhcpc dnsmasq-base dpdk-dev)
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
# The opt-in group whose members may list ports and capture without root (README, "Wireshark
# without root"); nobody is in it until added with `usermod -aG tapestry USER`.
if [ "$(id -u)" -eq 0 ] && ! getent group tapestry >/dev/null; then groupadd --system tapestry && echo "setup: created group tapestry (opt-in: usermod -aG tapestry USER)"; fi
# Wireshark extcap wrapper (tshark -D lists tapestry:NAME/PORT); it finds the binary when run.
if [ "$(id -u)" -eq 0 ]; then "$(dirname "$0")/install-extcap.sh" >/dev/null || echo "setup: Wireshark extcap not installed" >&2; fi
