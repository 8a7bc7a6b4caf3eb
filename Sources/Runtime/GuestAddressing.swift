import Foundation
import LinuxIO
import Model
import Netlink
import Topology
import VMRunner
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// Guest addressing beyond one IPv4 address: every address of a NIC's `ip:` list
/// (IPv4 and IPv6), the guest's `gateway:` (a default route per family) and `routes:`, and
/// `ip: dhcp`, for netns guests (here, through netlink in the guest's namespace) and QEMU
/// guests (`guestNetwork`, handed to the VM's `/init` through fw_cfg).
///
/// ## IPv6 duplicate address detection
/// Off in every guest: netns guests get `accept_dad=0` (`all` and `default`, before their
/// NICs move in) and `IFA_F_NODAD` on the addresses we assign; QEMU guests get the
/// interface's `accept_dad=0` from `/init` (busybox `ip` has no `nodad`). Every address,
/// ours and the kernel's link-local ones, is usable the moment the guest is up, never
/// `tentative`, never left `dadfailed`. Validation already refuses the
/// same address twice in a topology; what DAD would add is detecting a clash with a host
/// outside the topology, on a switch with uplinks — at the price of a guest that is "up"
/// but cannot use its address for a second or more, and a `dadfailed` address that stays
/// until someone removes it. We chose addresses that work, and say so in Topologies/README.
///
/// ## Order
/// Per NIC: link configured and up, then its addresses in file order. Then, once every NIC
/// has its addresses (a gateway must be on a connected subnet): default routes (IPv4, then
/// IPv6), then `routes:` in file order, each on the NIC validation found for it.
extension Fabric {
    /// Turns IPv6 duplicate address detection off in a new netns guest, before its NICs
    /// arrive (`all` and `default`: a NIC moved in takes `default`'s settings, and DAD runs
    /// unless both say 0), so neither our addresses nor the kernel's link-local ones are
    /// ever `tentative` or `dadfailed`. A namespace without IPv6 has no such keys: skipped.
    func disableDAD(namespaceFD: Int32, guest: String) throws {
        for scope in ["all", "default"] {
            do { try Sysctl.write("net/ipv6/conf/\(scope)/accept_dad", "0", inNamespace: namespaceFD) }
            catch let e as SystemError where e.errno == ENOENT { return }
            catch { throw RuntimeError("guest \(guest): cannot turn IPv6 duplicate address detection off: \(error)") }
        }
    }

    /// Adds every static address of `nic` to link `index` inside a netns guest.
    func configureAddresses(of nic: NICSpec, index: Int32, inside: NetlinkSocket) throws {
        for a in nic.addresses {
            do { try inside.addAddress(index: index, a) } catch {
                throw RuntimeError("\(nic.portName): cannot add address \(a) to \(nic.interfaceName): \(error)")
            }
        }
    }

    /// Adds `g`'s default gateways and static routes inside its namespace (after every NIC
    /// has its addresses).
    func configureRoutes(of g: GuestSpec, inside: NetlinkSocket) throws {
        func link(_ nic: Int) throws -> Int32 {
            guard nic < g.nics.count, let index = try inside.linkIndex(named: g.nics[nic].interfaceName) else {
                throw RuntimeError("guest \(g.name): no interface for NIC \(nic)")
            }
            return index
        }
        for gw in g.gateways {
            let any = IPPrefix(address: gw.address.isIPv6 ? .v6(IPv6Address(high: 0, low: 0)) : .v4(IPv4Address(rawValue: 0)), prefixLength: 0)
            do { try inside.addRoute(to: any, via: gw.address, index: try link(gw.nic)) } catch {
                throw RuntimeError("guest \(g.name): cannot add default route via \(gw.address): \(error)")
            }
        }
        for r in g.routes {
            do { try inside.addRoute(to: r.to, via: r.via, index: try link(r.nic)) } catch {
                throw RuntimeError("guest \(g.name): cannot add route to \(r.to) via \(r.via): \(error)")
            }
        }
    }

    /// A QEMU guest's network configuration for its `/init` (fw_cfg): every NIC's MTU,
    /// addresses and DHCP, the gateways and routes.
    static func guestNetwork(_ g: GuestSpec, of t: Topology) -> GuestNetworkConfig {
        GuestNetworkConfig(
            interfaces: g.nics.map { .init(name: $0.interfaceName, addresses: $0.addresses.map(\.description), dhcp: $0.dhcp, mtu: t.mtu(of: $0)) },
            gateways: g.gateways.map { .init(address: $0.address.description, interface: g.nics[$0.nic].interfaceName) },
            routes: g.routes.map { .init(to: $0.to.description, via: $0.via.description, interface: g.nics[$0.nic].interfaceName) })
    }
}

/// A helper process the instance started and must end: a netns guest's DHCP client.
/// Recorded in the state file, so that the next `up` or `down` after a crash kills it (a
/// process inside a namespace keeps the namespace alive after `ip netns delete`).
public struct RecordedProcess: Codable, Equatable {
    /// The guest it serves and the interface inside it.
    public var guest: String
    public var interface: String
    public var pid: Int32
    /// `processStartTime(pid)` when it was started: a reused pid is never signalled.
    public var processStart: UInt64

    /// True while the recorded process is still the one started.
    public var isAlive: Bool { processStart != 0 && processStartTime(pid) == processStart }
}

/// `ip: dhcp` on netns guests: one busybox `udhcpc` per NIC, run inside the guest's namespace
/// (`ip netns exec GUEST env … udhcpc`: both exec, so the pid the switch records is
/// udhcpc's), in the foreground of its own process group, with Tapestry's script
/// (`DHCPClients.script`, the same text as Scripts/guest/dhcp-script), which adds the
/// leased address and — when the guest has no IPv4 `gateway:` — the lease's router as the
/// default route, and never touches /etc/resolv.conf (inside `ip netns exec`, /etc is the
/// host's). udhcpc retries every 3 s until a server answers (`-A 3`) and releases its lease
/// when stopped (`-R`). Its output goes to `/var/log/tapestry/TOPOLOGY/GUEST.ethN.dhcp.log`.
///
/// Why udhcpc: a Debian package (`udhcpc`, busybox) small enough to run one per NIC, the
/// same client as inside QEMU guests (busybox in the guest image), and a script interface
/// we control fully; dhclient's default script rewrites resolv.conf and its own lease files
/// under /var/lib.
///
/// Lifecycle: started once the guest's ports forward (`apply`, after the swap); stopped
/// (SIGTERM, then SIGKILL after 1 s, reaped) before the guest's namespace is deleted —
/// on `down`, on reload when the guest is removed or changed — and, after a crash, by
/// `cleanStale` from the state file.
extension Fabric {
    /// The directory of the DHCP script and lease state: `/run/tapestry/NAME.dhcp`.
    static func dhcpDirectory(_ topology: String) -> String { "\(RunDirectory.path)/\(topology).dhcp" }

    /// Starts a DHCP client for each `dhcp` NIC of the netns guests `guests` (recording each
    /// in the state file as soon as it runs). A client that cannot start is reported in the
    /// returned list; the rest run.
    func startDHCPClients(_ guests: [GuestSpec], of t: Topology, file: String) -> [String] {
        let wanted = guests.filter { $0.kind == .netns }.flatMap { g in g.nics.filter(\.dhcp).map { (g, $0) } }
        guard !wanted.isEmpty else { return [] }
        var failures: [String] = []
        let dir = Fabric.dhcpDirectory(stem)
        let script = "\(dir)/dhcp-script"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            guard FileManager.default.createFile(atPath: script, contents: Data(DHCPClients.script.utf8), attributes: [.posixPermissions: 0o700]) else {
                throw RuntimeError("cannot write \(script)")
            }
        } catch { return ["DHCP: \(error)"] }
        guard let ip = Spawn.which("ip") ?? ["/usr/sbin/ip", "/sbin/ip", "/bin/ip"].first(where: Files.isExecutable) else {
            return ["DHCP: the 'ip' command (iproute2) is not installed"]
        }
        let client: [String]
        if let u = Spawn.which("udhcpc") ?? ["/usr/sbin/udhcpc", "/sbin/udhcpc"].first(where: Files.isExecutable) { client = [u] }
        else if let b = Spawn.which("busybox") ?? ["/usr/bin/busybox", "/bin/busybox"].first(where: Files.isExecutable) { client = [b, "udhcpc"] }
        else { return ["DHCP: udhcpc is not installed (Debian package udhcpc; Scripts/setup.sh installs it)"] }
        let logDir = "/var/log/tapestry/\(stem)"
        try? FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for (g, nic) in wanted {
            let logPath = "\(logDir)/\(g.name).\(nic.interfaceName).dhcp.log"
            let router = g.gateway4 == nil ? "1" : "0"
            let args = ["netns", "exec", g.name, "/usr/bin/env",
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "TAPESTRY_DHCP_STATE=\(dir)/\(g.name).\(nic.interfaceName).lease",
                        "TAPESTRY_DHCP_ROUTER=\(router)"]
                + client + ["-f", "-R", "-i", nic.interfaceName, "-s", script, "-x", "hostname:\(g.name)", "-A", "3"]
            let spawned = Files.withAppendDescriptor(logPath) { logFD in Spawn.spawn(path: ip, arguments: args, stdout: logFD, stderr: logFD) }
            switch spawned {
            case .success(let pid):
                let record = RecordedProcess(guest: g.name, interface: nic.interfaceName, pid: pid, processStart: processStartTime(pid))
                dhcpClients[g.name, default: []].append(record)
                try? writeState(file: file)
                log("guest \(g.name): DHCP client on \(nic.interfaceName) (udhcpc pid \(pid), log \(logPath))")
            case .failure(let e):
                failures.append("guest \(g.name): cannot start the DHCP client on \(nic.interfaceName): \(e)")
            }
        }
        return failures
    }

    /// Stops the DHCP clients of `guests` (every guest when nil) and forgets them.
    func stopDHCPClients(_ guests: [String]? = nil) {
        let names = guests ?? Array(dhcpClients.keys)
        var list: [RecordedProcess] = []
        for n in names { list += dhcpClients.removeValue(forKey: n) ?? [] }
        Fabric.stop(list)
    }

    /// SIGTERM to each process that is still the recorded one, up to 1 s for all to exit,
    /// then SIGKILL; reaps our own children.
    static func stop(_ list: [RecordedProcess]) {
        let alive = list.filter(\.isAlive)
        guard !alive.isEmpty else { return }
        for p in alive { Processes.signal(p.pid, SIGTERM) }
        var waiting = alive
        for _ in 0..<50 where !waiting.isEmpty {
            waiting.removeAll { Spawn.reapIfExited($0.pid) != nil || !$0.isAlive }
            if !waiting.isEmpty { Processes.pause(microseconds: 20_000) }
        }
        for p in waiting where p.isAlive {
            Processes.signal(p.pid, SIGKILL)
            Processes.waitForExit(p.pid)
        }
    }
}

/// The DHCP client script, as shipped in Scripts/guest/dhcp-script (a test keeps the two
/// identical): written to `/run/tapestry/NAME.dhcp/dhcp-script` for netns guests.
enum DHCPClients {
    static let script = #"""
#!/bin/sh
# Tapestry's udhcpc script (busybox udhcpc -s): the same file serves netns guests (the
# switch runs `udhcpc` inside the guest's namespace) and QEMU guests (copied into the guest
# image as /etc/tapestry/dhcp-script). It only adds and removes the leased address and,
# when asked, the default route; it never writes /etc/resolv.conf (for a netns guest /etc is
# the host's own). Works with busybox `ip` and iproute2's.
#
# Environment (udhcpc passes its own through):
#   TAPESTRY_DHCP_STATE   file remembering the leased address/prefix (required)
#   TAPESTRY_DHCP_ROUTER  1: install the lease's first router as the default route (set when
#                         the topology gives the guest no IPv4 `gateway:`)
# udhcpc sets: $interface, $ip, $mask (prefix length), $router, $message.
state=${TAPESTRY_DHCP_STATE:?TAPESTRY_DHCP_STATE is not set}
case "$1" in
    deconfig)
        old=$(cat "$state" 2>/dev/null)
        [ -n "$old" ] && ip addr del "$old" dev "$interface" 2>/dev/null
        rm -f "$state"
        ip link set dev "$interface" up
        ;;
    bound|renew)
        new="$ip/${mask:-32}"
        old=$(cat "$state" 2>/dev/null)
        if [ "$old" != "$new" ]; then
            [ -n "$old" ] && ip addr del "$old" dev "$interface" 2>/dev/null
            ip addr add "$new" dev "$interface" || { echo "tapestry-dhcp: $interface: cannot add $new"; exit 1; }
            echo "$new" >"$state"
        fi
        if [ "${TAPESTRY_DHCP_ROUTER:-0}" = 1 ] && [ -n "$router" ]; then
            set -- $router
            ip route replace default via "$1" dev "$interface"
        fi
        echo "tapestry-dhcp: $interface $new${router:+ router $router}"
        ;;
    leasefail|nak)
        echo "tapestry-dhcp: $interface: $1${message:+ ($message)}"
        ;;
esac
exit 0

"""#
}
