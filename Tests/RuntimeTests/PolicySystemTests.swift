import Core
import Foundation
import LinuxIO
import Model
import Runtime
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A switch built from a `SwitchPlan` in the test, forwarding in-process between real TAP
/// devices whose netdevs live in network namespaces with real kernel stacks (one guest per
/// port, `eth0` inside). Every name starts with the test's short id; everything is removed
/// in `close()` (called by `defer`, so also when an expectation fails).
///
/// These are the issue-20 system tests driven without the topology keys (the topology
/// branch owns those); `Tests/SystemTests/PolicyTopologyTests.swift` drives the same
/// behaviour through `tapestry up` once the keys compile into these plans.
final class PolicyLab {
    struct Guest { var name: String; var ipv4: String? }
    let id = Capabilities.uniquePrefix("tpl")
    let plan: SwitchPlan
    private(set) var namespaces: [String] = []
    private(set) var taps: [TAPDevice] = []
    private(set) var datapath: Datapath?
    private(set) var querier: MulticastQuerierService?

    /// Namespace of guest `i`.
    func ns(_ i: Int) -> String { "\(id)g\(i)" }

    /// Creates one namespace and TAP per port of `plan` (all ports are guests), configures
    /// `eth0` with `addresses[i]` (IPv4 CIDR or nil), and starts the datapath.
    init(plan: SwitchPlan, addresses: [String?], offloads: Bool = false, querier: Bool = false) throws {
        self.plan = plan
        precondition(addresses.count == plan.ports.count)
        do {
            for (i, address) in addresses.enumerated() {
                let ns = self.ns(i)
                try NetworkNamespace.create(ns)
                namespaces.append(ns)
                let tap = try TAPDevice(name: "\(id)t\(i)", vnetHeader: offloads)
                if offloads { try tap.enableOffloads() }
                taps.append(tap)
                let mac = String(format: "02:00:00:%02x:%02x:%02x", Int(UInt32(truncatingIfNeeded: getpid()) & 0xFF), 0x50, i + 1)
                let setup = sh("""
                    ip link set \(tap.name) netns \(ns) && \
                    ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
                    ip -n \(ns) link set \(tap.name) name eth0 address \(mac) && \
                    ip -n \(ns) link set lo up && ip -n \(ns) link set eth0 up \
                    \(address.map { "&& ip -n \(ns) addr add \($0) dev eth0" } ?? "")
                    """)
                guard setup.succeeded else { throw RuntimeErrorText("setup of \(ns): \(setup.stderr)") }
            }
            let runtime = SwitchRuntime(plan: plan, ports: taps)
            let dp = try Datapath(switches: [runtime], threads: 1)
            dp.start()
            datapath = dp
            if querier {
                let q = MulticastQuerierService(datapath: dp, log: { _ in })
                q.start()
                self.querier = q
            }
        } catch {
            close()
            throw error
        }
    }

    func close() {
        for p in pids { stop(p) }
        pids = []
        for f in scripts { unlink(f) }
        scripts = []
        querier?.stop(); querier = nil
        datapath?.stop(); datapath = nil
        for t in taps { t.close() }
        taps = []
        for ns in namespaces.reversed() { try? NetworkNamespace.delete(ns) }
        namespaces = []
    }

    @discardableResult
    func exec(_ i: Int, _ command: String, timeout: TimeInterval = 60) -> CommandResult {
        sh("ip netns exec \(ns(i)) \(command)", timeout: timeout)
    }

    /// Port counters.
    func counters(_ port: Int) -> PortCounters.Snapshot {
        datapath!.withLock { l in l.switches[0].counters(l).snapshot(port: port) }
    }

    /// Starts `command` in guest `i` in the background (its own process group), output to
    /// `file`; returns its pid (killed by `stop`).
    func spawn(_ i: Int, _ command: String, output file: String) -> Int32 {
        let script = file + ".sh"
        try? command.write(toFile: script, atomically: true, encoding: .utf8)
        scripts.append(script)
        let r = sh("ip netns exec \(ns(i)) setsid sh \(script) > \(file) 2>&1 & echo $!")
        let pid = Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        if pid > 0 { pids.append(pid) }
        return pid
    }
    private var scripts: [String] = []
    private var pids: [Int32] = []

    func stop(_ pid: Int32) {
        guard pid > 0 else { return }
        kill(-pid, SIGTERM); kill(pid, SIGTERM)
        usleep(100_000)
        kill(-pid, SIGKILL); kill(pid, SIGKILL)
    }

    /// Counts the frames to `filter` that guest `i`'s eth0 sees while `body` runs (tcpdump,
    /// started and given a moment to attach first).
    func capture(on guests: [Int], filter: String, during body: () -> Void) -> [Int] {
        var pids: [Int32] = []
        var files: [String] = []
        for g in guests {
            let f = NSTemporaryDirectory() + "\(id)-tcpdump-\(g)-\(UInt32.random(in: 0...UInt32.max)).txt"
            files.append(f)
            pids.append(spawn(g, "exec tcpdump -i eth0 -n -l --immediate-mode \(filter)", output: f))
        }
        usleep(1_200_000)
        body()
        usleep(700_000)
        for p in pids { stop(p) }
        usleep(200_000)
        defer { for f in files { unlink(f) } }
        return files.map { f in
            let text = (try? String(contentsOfFile: f, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { $0.contains(" > ") }.count
        }
    }
}

/// An error with a message (test setup).
struct RuntimeErrorText: Error, CustomStringConvertible { var description: String; init(_ d: String) { description = d } }

enum PolicyTools {
    static var available: Bool {
        Capabilities.canCreateTAP && Capabilities.canCreateNamespaces
            && sh("command -v tcpdump && command -v iperf3 && /usr/bin/python3 -c 'import socket'").succeeded
    }
    static let reason = "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"

    /// Python that joins `group` on eth0 (IPv4: `IP_ADD_MEMBERSHIP`; IPv6: `IPV6_JOIN_GROUP`),
    /// holds the membership for `seconds` and exits (the kernel then sends the leave).
    static func join(_ group: String, seconds: Double) -> String {
        if group.contains(":") {
            return """
            /usr/bin/python3 -c "import socket,struct,time
            s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_JOIN_GROUP,socket.inet_pton(socket.AF_INET6,'\(group)')+struct.pack('@I',socket.if_nametoindex('eth0')))
            time.sleep(\(seconds))"
            """
        }
        return """
        /usr/bin/python3 -c "import socket,struct,time
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,socket.inet_aton('\(group)')+struct.pack('@I',0)+struct.pack('@i',socket.if_nametoindex('eth0')))
        time.sleep(\(seconds))"
        """
    }

    /// Python that sends `count` UDP datagrams to `group` port 5000 out of eth0, 50 ms apart.
    static func send(_ group: String, count: Int) -> String {
        let v6 = group.contains(":")
        return """
        /usr/bin/python3 -c "import socket,struct,time
        s=socket.socket(socket.\(v6 ? "AF_INET6" : "AF_INET"),socket.SOCK_DGRAM)
        \(v6 ? "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,socket.if_nametoindex('eth0'))" : "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,struct.pack('4s4si',b'\\\\0'*4,b'\\\\0'*4,socket.if_nametoindex('eth0')))")
        for i in range(\(count)):
            s.sendto(b'tapestry',('\(group)',5000)); time.sleep(0.05)"
        """
    }
}
