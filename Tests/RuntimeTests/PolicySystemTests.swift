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
/// These are the port-group policy system tests driven from hand-built plans, in-process;
/// `Tests/SystemTests/PolicyTopologyTests.swift` drives the same behaviour from topology
/// files through the `tapestry` binary (`up`, `reload`, `mdb`).
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

    /// Creates one namespace and TAP per port of `plan` (all ports are guests; DAD is off in
    /// the namespace before the TAP arrives, so its link-local address is usable at once:
    /// the kernel takes the larger of `all` and the device's own `accept_dad`), configures
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
                    ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
                    ip link set \(tap.name) netns \(ns) && \
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
            pids.append(spawn(g, "exec tcpdump -i eth0 -n -l --immediate-mode '\(filter)'", output: f))
        }
        // Each tcpdump says "listening on" once its capture is open (under load that takes
        // longer than any fixed pause).
        for _ in 0..<200 where !files.allSatisfy({ ((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").contains("listening on") }) {
            usleep(50_000)
        }
        usleep(100_000)
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

/// Against real kernels: guests in namespaces join groups with real sockets, ping
/// across a private VLAN, and push TCP through a shaped port.
@Suite(.serialized) struct PolicySystemTests {
    static let group4 = "239.77.1.1"
    static let group6 = "ff15::77:1"

    /// Guests: 0 sender, 1 member, 2 non-member, 3 a static member of both groups.
    static func snoopingPlan(interval: Duration, querier: Bool) -> SwitchPlan {
        let ports = (0..<4).map { PortPlan(name: "g\($0).eth0", portGroup: "v10", mode: .access(VLANID(10))) }
        let statics = [StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(ipv4: ipv4(239, 77, 1, 1)), ports: [3]),
                       StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(high: 0xFF15_0000_0000_0000, low: 0x77_0001), ports: [3])]
        return SwitchPlan(name: "sw", ports: ports, multicast: MulticastSnooping(
            membershipInterval: interval, staticGroups: statics,
            querier: querier ? .derived(topology: "test", switchName: "sw", membershipInterval: interval) : nil))
    }

    func members(_ lab: PolicyLab, _ group: WireIPAddress) -> [Int] {
        lab.datapath!.withLock { l in l.switches[0].multicast(l)!.members(vlan: VLANID(10), group: group) }.sorted()
    }

    /// Join, data to members only, aging while the socket stays joined (no querier), leave.
    func joinAgeLeave(group: String, wire: WireIPAddress) throws {
        let lab = try PolicyLab(plan: Self.snoopingPlan(interval: .seconds(4), querier: false),
                                addresses: ["10.77.0.1/24", "10.77.0.2/24", "10.77.0.3/24", "10.77.0.4/24"])
        defer { lab.close() }
        let filter = "udp and dst host \(group)"
        let started = Date()
        let joined = lab.spawn(1, PolicyTools.join(group, seconds: 30), output: NSTemporaryDirectory() + "\(lab.id)-join1.txt")
        usleep(500_000)
        var seen = lab.capture(on: [1, 2, 3], filter: filter) { lab.exec(0, PolicyTools.send(group, count: 20)) }
        #expect(seen[0] >= 18, "the member receives the group (\(seen[0]) of 20)")
        #expect(seen[1] == 0, "a non-member port sees none of it (\(seen[1]))")
        #expect(seen[2] >= 18, "the static member receives it (\(seen[2]))")
        #expect(members(lab, wire) == [1, 3])

        // Aging: no querier, so the host reports only when it joins; 4 s later it is gone.
        let wait = 7.0 - Date().timeIntervalSince(started)
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        seen = lab.capture(on: [1, 2, 3], filter: filter) { lab.exec(0, PolicyTools.send(group, count: 20)) }
        #expect(seen[0] == 0, "after the membership interval the group's traffic stops (\(seen[0]))")
        #expect(seen[1] == 0 && seen[2] >= 18)
        #expect(members(lab, wire) == [3])
        lab.stop(joined)

        // Leave: a socket that closes sends a leave; the port stops at once.
        let rejoined = Date()
        _ = lab.spawn(1, PolicyTools.join(group, seconds: 4), output: NSTemporaryDirectory() + "\(lab.id)-join2.txt")
        usleep(400_000)
        seen = lab.capture(on: [1, 2], filter: filter) { lab.exec(0, PolicyTools.send(group, count: 10)) }
        #expect(seen[0] >= 9 && seen[1] == 0, "joined again: \(seen)")
        let closes = 5.0 - Date().timeIntervalSince(rejoined)   // the socket closes at 4 s: the leave goes out
        if closes > 0 { usleep(UInt32(closes * 1_000_000)) }
        #expect(members(lab, wire) == [3], "the leave removed the membership at once")
        seen = lab.capture(on: [1, 2, 3], filter: filter) { lab.exec(0, PolicyTools.send(group, count: 20)) }
        #expect(seen[0] == 0 && seen[1] == 0 && seen[2] >= 18, "after the leave: \(seen)")
        let drops = lab.counters(1).drops
        #expect(drops[.malformedIGMP] == nil && drops[.malformedMLD] == nil, "the kernel's reports all parse: \(drops)")
    }

    @Test(.enabled(if: PolicyTools.available, "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
    func igmpJoinAgingAndLeave() throws {
        try joinAgeLeave(group: Self.group4, wire: WireIPAddress(ipv4: ipv4(239, 77, 1, 1)))
    }

    @Test(.enabled(if: PolicyTools.available, "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
    func mldJoinAgingAndLeave() throws {
        try joinAgeLeave(group: Self.group6, wire: WireIPAddress(high: 0xFF15_0000_0000_0000, low: 0x77_0001))
    }

    /// The querier's IGMPv3 and MLDv2 queries are real enough for Linux: members answer them,
    /// so their memberships outlive the interval while the switch queries.
    @Test(.enabled(if: PolicyTools.available, "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
    func querierKeepsMembershipsAlive() throws {
        let lab = try PolicyLab(plan: Self.snoopingPlan(interval: .seconds(3), querier: true),
                                addresses: ["10.77.0.1/24", "10.77.0.2/24", "10.77.0.3/24", "10.77.0.4/24"], querier: true)
        defer { lab.close() }
        _ = lab.spawn(1, PolicyTools.join(Self.group4, seconds: 30), output: NSTemporaryDirectory() + "\(lab.id)-j4.txt")
        _ = lab.spawn(1, PolicyTools.join(Self.group6, seconds: 30), output: NSTemporaryDirectory() + "\(lab.id)-j6.txt")
        let queries = lab.capture(on: [2], filter: "igmp or (icmp6 and ip6[48] == 130)") { usleep(2_500_000) }
        #expect(queries[0] >= 2, "general queries reach the guests (\(queries[0]) seen)")
        usleep(5_000_000)   // well past the 3 s interval
        let seen = lab.capture(on: [1, 2], filter: "udp and (dst host \(Self.group4) or dst host \(Self.group6))") {
            lab.exec(0, PolicyTools.send(Self.group4, count: 10))
            lab.exec(0, PolicyTools.send(Self.group6, count: 10))
        }
        #expect(seen[0] >= 18, "answers to the queries kept both memberships (\(seen[0]) of 20)")
        #expect(seen[1] == 0)
        #expect(members(lab, WireIPAddress(ipv4: ipv4(239, 77, 1, 1))) == [1, 3])
        #expect(members(lab, WireIPAddress(high: 0xFF15_0000_0000_0000, low: 0x77_0001)) == [1, 3])
        let written = lab.querier?.written ?? 0
        #expect(written >= 8, "queries written: \(written)")
    }

    /// Ping across a private VLAN: promiscuous 0, isolated 1 and 2, community A 3 and 4,
    /// community B 5, one subnet.
    @Test(.enabled(if: PolicyTools.available, "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
    func privateVLANPingsFollowTheMatrix() throws {
        let vlans: [UInt16] = [100, 101, 101, 102, 102, 103]
        let plan = SwitchPlan(name: "sw", ports: vlans.enumerated().map { PortPlan(name: "g\($0.offset).eth0", portGroup: "v\($0.element)", mode: .access(VLANID($0.element))) },
                              privateVLANs: [PrivateVLAN(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102), VLANID(103)])])
        let lab = try PolicyLab(plan: plan, addresses: (0..<6).map { "10.78.0.\($0 + 1)/24" })
        defer { lab.close() }
        let pairs: [(Int, Int, Bool)] = [
            (0, 1, true), (1, 0, true), (0, 3, true), (0, 5, true), (5, 0, true),   // promiscuous ↔ all
            (1, 2, false), (2, 1, false),                                          // isolated ↮ isolated
            (1, 3, false), (3, 1, false), (1, 5, false),                           // isolated ↮ community
            (3, 4, true), (4, 3, true),                                            // within a community
            (3, 5, false), (5, 4, false),                                          // across communities
        ]
        // All at once (a failing ping waits its timeout).
        let base = NSTemporaryDirectory() + "\(lab.id)-ping"
        let script = pairs.enumerated().map { i, p in
            "(ip netns exec \(lab.ns(p.0)) ping -c 2 -i 0.3 -W 2 10.78.0.\(p.1 + 1) >/dev/null 2>&1; echo $? > \(base)\(i)) &"
        }.joined(separator: "\n") + "\nwait"
        sh(script, timeout: 60)
        for (i, p) in pairs.enumerated() {
            let rc = (try? String(contentsOfFile: "\(base)\(i)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            unlink("\(base)\(i)")
            #expect((rc == "0") == p.2, "ping \(p.0) → \(p.1): \(p.2 ? "should pass" : "should fail"), exit \(rc ?? "?")")
        }
        // Shared learning: the promiscuous port's MAC is known under the primary, and the
        // isolated hosts' too (their replies were not flooded).
        let entries = lab.datapath!.withLock { l in l.switches[0].table(l).entries(now: .now) }
        #expect(Set(entries.map(\.vlan)) == [VLANID(100)], "every entry under the primary: \(entries.map(\.vlan))")
    }

    /// TCP from a shaped guest lands near the average; the other direction is unshaped.
    /// Ingress (guest → switch) average 50 Mbit/s, peak = average (the topology's default),
    /// burst 2 MiB; TSO on, so GSO frames of up to 64 KiB count whole.
    @Test(.enabled(if: PolicyTools.available, "needs root, /dev/net/tun, ip, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
    func shapingHoldsTCPNearTheAverage() throws {
        let average: UInt64 = 50_000_000
        let plan = SwitchPlan(name: "sw", ports: [
            PortPlan(name: "a.eth0", portGroup: "shaped", mode: .access(VLANID(10)), acceptsOffloads: true,
                     shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: average, burstBytes: 2 << 20))),
            PortPlan(name: "b.eth0", portGroup: "plain", mode: .access(VLANID(10)), acceptsOffloads: true),
        ])
        let lab = try PolicyLab(plan: plan, addresses: ["10.79.0.1/24", "10.79.0.2/24"], offloads: true)
        defer { lab.close() }
        _ = lab.spawn(1, "exec iperf3 -s -B 10.79.0.2 -p 5301", output: NSTemporaryDirectory() + "\(lab.id)-iperf.txt")
        usleep(700_000)
        func rate(_ extra: String) -> Double? {
            let r = lab.exec(0, "iperf3 -c 10.79.0.2 -p 5301 -t 6 -O 1 -J \(extra)", timeout: 30)
            guard let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                  let end = obj["end"] as? [String: Any], let recv = end["sum_received"] as? [String: Any] else { return nil }
            return (recv["bits_per_second"] as? NSNumber)?.doubleValue
        }
        let shaped = try #require(rate(""), "iperf3 a → b ran")
        let reverse = try #require(rate("-R"), "iperf3 b → a ran")
        print("shaping: a → b \(Int(shaped / 1e6)) Mbit/s (average \(average / 1_000_000)), b → a \(Int(reverse / 1e6)) Mbit/s")
        #expect(abs(shaped - Double(average)) <= 0.2 * Double(average), "shaped TCP \(shaped / 1e6) Mbit/s within ±20% of 50")
        #expect(reverse > 2 * Double(average), "the other direction is not shaped: \(reverse / 1e6) Mbit/s")
        #expect((lab.counters(0).drops[.shapingIngress] ?? 0) > 0, "excess was dropped and counted as shaping-ingress")
    }
}
