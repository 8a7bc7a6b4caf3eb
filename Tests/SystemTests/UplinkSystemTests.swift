import Foundation
import Testing
import TestSupport

/// The physical network of an uplink test, as this machine allows it (no 8021q, no bridge
/// VLAN filtering, no netem):
///
/// ```
///   root ns (the switch)          PREFIXup (the "physical switch")       PREFIXext
///   PREFIXn0 ══ veth ══════════ PREFIXp0 ─┐
///   PREFIXn1 ══ veth ══════════ PREFIXp1 ─┤ br0 ── PREFIXeb ══ veth ══ PREFIXe 10.N.0.200/24
///   …                                      ┘                           (MAC 02:ee:…:01)
/// ```
/// The upstream ends send wire-like frames (checksums filled in, no TSO/GSO), like a real
/// link. A link fails with `ip link set PREFIXpK down` (our NIC loses carrier), or silently
/// with `nomaster` (the link stays up, frames go nowhere).
final class PhysicalNetwork {
    let prefix: String
    let nics: [String]
    let upstream: String
    let external: String
    let externalMAC = "02:ee:00:00:00:01"

    init(prefix p: String, nics count: Int, subnet: Int) {
        prefix = p
        upstream = "\(p)up"
        external = "\(p)ext"
        nics = (0..<count).map { "\(p)n\($0)" }
        var script = """
        set -e
        ip netns add \(upstream); ip netns add \(external)
        ip -n \(upstream) link add br0 type bridge
        ip -n \(upstream) link set br0 up
        """
        for i in 0..<count {
            script += """

            ip link add \(p)n\(i) type veth peer name \(p)p\(i) netns \(upstream)
            ip -n \(upstream) link set \(p)p\(i) master br0
            ip netns exec \(upstream) ethtool -K \(p)p\(i) tx off tso off gso off >/dev/null
            ip -n \(upstream) link set \(p)p\(i) up
            ip link set \(p)n\(i) up
            """
        }
        script += """

        ip link add \(p)e type veth peer name \(p)eb netns \(upstream)
        ip link set \(p)e netns \(external)
        ip -n \(upstream) link set \(p)eb master br0; ip -n \(upstream) link set \(p)eb up
        ip -n \(external) link set \(p)e address \(externalMAC)
        ip -n \(external) addr add 10.\(subnet).0.200/24 dev \(p)e
        ip -n \(external) link set \(p)e up; ip -n \(external) link set lo up
        ip netns exec \(external) ethtool -K \(p)e tx off tso off gso off >/dev/null
        """
        let r = sh(script)
        if !r.succeeded { Issue.record("physical network setup failed: \(r.stderr)") }
    }

    deinit {
        sh("ip netns del \(upstream); ip netns del \(external)")
        for n in nics { sh("ip link del \(n) 2>/dev/null") }
    }

    /// The upstream port (bridge side) of NIC `i`.
    func peer(_ i: Int) -> String { "\(prefix)p\(i)" }

    /// The upstream bridge's dynamic FDB: MAC → bridge port.
    func fdb() -> [String: String] {
        var out: [String: String] = [:]
        for line in sh("ip netns exec \(upstream) bridge fdb show br br0").stdout.split(separator: "\n") where !line.contains("permanent") {
            let f = line.split(separator: " ")
            if f.count >= 3, f[1] == "dev" { out[String(f[0])] = String(f[2]) }
        }
        return out
    }

    /// Polls the FDB until `mac` is on `port` or `timeout` passes; the time it took, or nil.
    func waitFDB(_ mac: String, on port: String, timeout: TimeInterval) -> TimeInterval? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if fdb()[mac] == port { return Date().timeIntervalSince(start) }
            usleep(20_000)
        }
        return nil
    }

    func upstream(_ command: String) -> CommandResult { sh("ip netns exec \(upstream) \(command)") }
}

/// Largest run of lost echo requests in `ping` output, in sequence numbers.
func longestLoss(_ pingOutput: String, sent: Int) -> Int {
    var got = Set<Int>()
    for m in pingOutput.split(separator: "\n") {
        if let r = m.range(of: "icmp_seq="), let n = Int(m[r.upperBound...].prefix { $0.isNumber }) { got.insert(n) }
    }
    var longest = 0, run = 0
    for s in 1...max(1, sent) {
        if got.contains(s) { run = 0 } else { run += 1; longest = max(longest, run) }
    }
    return longest
}

/// NIC uplinks with teaming, failover, failback, notify-switches and beacon probing, over
/// veth "NICs" into an upstream namespace bridged by a Linux bridge.
@Suite(.serialized, .enabled(if: Harness.enabled && Harness.hasScapy, "needs root, /dev/net/tun, iproute2, ethtool and scapy"))
struct UplinkSystemTests {
    static func guests(_ p: String, _ names: [String], group: String, subnet: Int, from: Int) -> String {
        names.enumerated().map { i, n in
            "  \(p)\(n): {kind: netns, nics: [{switch: sw0, port-group: \(group), mac: \"02:00:00:\(String(format: "%02x", subnet)):00:\(String(format: "%02x", from + i))\", ip: 10.\(subnet).0.\(from + i)/24}]}"
        }.joined(separator: "\n")
    }

    static func mac(_ subnet: Int, _ host: Int) -> String { String(format: "02:00:00:%02x:00:%02x", subnet, host) }

    /// port-id over two NICs: reachability, spreading, the `uplinks: none` group, VLAN tags on
    /// the wire, no reflection of outside broadcasts, and a NIC that disappears.
    @Test func portIDTeamForwardsSpreadsAndNeverLoops() throws {
        let p = Capabilities.uniquePrefix("u")
        let net = PhysicalNetwork(prefix: p, nics: 2, subnet: 61)
        let yaml = """
        name: \(p)ul
        switches:
          sw0:
            uplinks: {nics: [\(net.nics[0]), \(net.nics[1])], policy: port-id}
            port-groups:
              lan: {vlan: none}
              v10: {vlan: 10}
              lab: {vlan: none, uplinks: none}
        guests:
        \(Self.guests(p, ["a", "b", "c", "d"], group: "lan", subnet: 61, from: 1))
        \(Self.guests(p, ["l"], group: "lab", subnet: 61, from: 9))
          \(p)v: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:0a:00:01", ip: 10.10.0.1/24}]}
        """
        let t = RunningTopology(name: "\(p)ul", yaml: yaml)
        try #require(t.up.succeeded, "up failed: \(t.up.stderr)")

        // Every lan guest reaches the external host, through the uplink the team picked.
        for (i, g) in ["a", "b", "c", "d"].enumerated() {
            #expect(t.ping(from: "\(p)\(g)", to: "10.61.0.200"), "guest \(g) reaches the external host")
            _ = i
        }
        let rows = t.ports()
        let fdb = net.fdb()
        var used = Set<String>()
        for (k, nic) in net.nics.enumerated() {
            let row = rows.first { $0["name"] as? String == nic }
            let team = row?["team"] as? [String: Any]
            #expect(team?["role"] as? String == "active")
            for port in team?["carries"] as? [String] ?? [] where port.hasSuffix(".eth0") {
                let g = String(port.dropFirst(p.count).prefix(1))
                guard let host = ["a": 1, "b": 2, "c": 3, "d": 4][g] else { continue }
                #expect(fdb[Self.mac(61, host)] == net.peer(k), "\(port) is carried by \(nic): its MAC is on \(net.peer(k)) upstream (fdb \(fdb))")
                used.insert(nic)
            }
        }
        #expect(used.count == 2, "port-id spreads four guests over both active uplinks")

        // uplinks: none — no way out, but the local guests are reachable.
        #expect(!t.ping(from: "\(p)l", to: "10.61.0.200", count: 2))
        #expect(t.ping(from: "\(p)l", to: "10.61.0.1"))
        #expect(net.fdb()[Self.mac(61, 9)] == nil, "the isolated guest's MAC never reaches the physical network")

        // VLAN 10 leaves tagged (the upstream bridge passes the tag through).
        let tagged = Capture(in: net.upstream, interface: "br0", filter: "vlan 10 and ether src 02:00:00:0a:00:01")
        t.exec("\(p)v", "ping -c 2 -i 0.2 -W 1 10.10.0.200")
        let seen = tagged.lines()
        #expect(seen.contains { $0.contains("vlan 10") }, "frames of VLAN 10 carry tag 10 on the uplink: \(seen)")

        // An outside broadcast enters once and never goes back out.
        let back0 = Capture(in: net.upstream, interface: net.peer(0), direction: "in", filter: "ether src \(net.externalMAC)")
        let back1 = Capture(in: net.upstream, interface: net.peer(1), direction: "in", filter: "ether src \(net.externalMAC)")
        let atA = Capture(in: "\(p)a", filter: "ether src \(net.externalMAC) and arp host 10.61.0.99")
        net.upstream("true")
        sh("ip netns exec \(net.external) \(Harness.python) -c \"from scapy.all import *; sendp(Ether(src='\(net.externalMAC)', dst='ff:ff:ff:ff:ff:ff')/ARP(psrc='10.61.0.200', pdst='10.61.0.99'), iface='\(p)e', count=5, inter=0.05, verbose=0)\"")
        let reflected = back0.lines() + back1.lines()
        #expect(reflected.isEmpty, "no outside frame is sent back into the physical network: \(reflected)")
        #expect(atA.lines().count == 5, "each outside broadcast reaches a guest exactly once (designated receiver)")
        #expect(t.drops(port: net.nics[0], reason: "team-not-designated-receiver") + t.drops(port: net.nics[1], reason: "team-not-designated-receiver") >= 5)

        // A NIC that disappears: its guests fail over, the switch keeps running.
        sh("ip link del \(net.nics[1])")
        usleep(300_000)
        for g in ["a", "b", "c", "d"] { #expect(t.ping(from: "\(p)\(g)", to: "10.61.0.200"), "guest \(g) still reaches the outside after NIC loss") }
        let after = t.ports().first { $0["name"] as? String == net.nics[1] }
        #expect((after?["team"] as? [String: Any])?["role"] as? String == "down")
    }

    /// failover-order: everything on the first active NIC; carrier loss moves it to the
    /// standby within a few pings, notify-switches moves a silent guest's MAC upstream, and
    /// failback moves it all back and notifies again.
    @Test func failoverOnCarrierLossAndFailback() throws {
        let p = Capabilities.uniquePrefix("u")
        let net = PhysicalNetwork(prefix: p, nics: 2, subnet: 62)
        let yaml = """
        name: \(p)fo
        switches:
          sw0:
            uplinks: {nics: [\(net.nics[0]), \(net.nics[1])], policy: failover-order, active: [\(net.nics[0])], standby: [\(net.nics[1])]}
            port-groups:
              lan: {vlan: none}
        guests:
        \(Self.guests(p, ["a", "s", "c"], group: "lan", subnet: 62, from: 1))
        """
        let t = RunningTopology(name: "\(p)fo", yaml: yaml)
        try #require(t.up.succeeded, "up failed: \(t.up.stderr)")
        for g in ["a", "s", "c"] { #expect(t.ping(from: "\(p)\(g)", to: "10.62.0.200")) }
        let silent = Self.mac(62, 2)
        #expect(net.fdb()[Self.mac(62, 1)] == net.peer(0) && net.fdb()[silent] == net.peer(0) && net.fdb()[Self.mac(62, 3)] == net.peer(0),
                "failover-order uses the first active NIC only: \(net.fdb())")

        // 10 ms pings across a carrier loss on the active NIC.
        let out = NSTemporaryDirectory() + "tapestry-\(p)-ping.txt"
        sh("(ip netns exec \(p)a ping -i 0.01 -c 300 -W 1 10.62.0.200 >\(out) 2>&1 &)")
        usleep(800_000)
        net.upstream("ip link set \(net.peer(0)) down")
        let moved = net.waitFDB(silent, on: net.peer(1), timeout: 1.0)
        #expect(moved != nil, "notify-switches moves the silent guest's MAC to the standby within 1 s (fdb \(net.fdb()))")
        if let m = moved { print("uplink failover: silent MAC moved upstream after \(Int(m * 1000)) ms") }
        // Wait for ping to finish (a loaded machine stretches its 3 s), then look for the gap.
        var ping = ""
        for _ in 0..<150 {
            ping = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if ping.contains("packets transmitted") { break }
            usleep(100_000)
        }
        #expect(ping.contains("packets transmitted"), "ping finished: \(ping.suffix(300))")
        let lost = longestLoss(ping, sent: 300)
        print("uplink failover: longest gap \(lost) pings at 10 ms (≤ \((lost + 1) * 10) ms)")
        #expect((lost + 1) * 10 <= 100, "failover gap ≤ 100 ms: \(lost) consecutive pings lost")
        let roles = t.ports()
        #expect(((roles.first { $0["name"] as? String == net.nics[0] })?["link"] as? String) == "down (no-carrier)")
        #expect(((roles.first { $0["name"] as? String == net.nics[1] })?["team"] as? [String: Any])?["role"] as? String == "active")

        // Failback: the first NIC takes its traffic back and announces it again.
        net.upstream("ip link set \(net.peer(0)) up")
        let back = net.waitFDB(silent, on: net.peer(0), timeout: 2.0)
        #expect(back != nil, "failback notifies: the silent guest's MAC returns to the first NIC (fdb \(net.fdb()))")
        #expect(t.ping(from: "\(p)c", to: "10.62.0.200"))
        #expect(net.fdb()[Self.mac(62, 3)] == net.peer(0))
        unlink(out)
    }

    /// Beacon probing over three NICs finds a failure behind a link that stays up.
    @Test func beaconProbingDetectsSilentFailure() throws {
        let p = Capabilities.uniquePrefix("u")
        let net = PhysicalNetwork(prefix: p, nics: 3, subnet: 63)
        let yaml = """
        name: \(p)bp
        switches:
          sw0:
            uplinks: {nics: [\(net.nics.joined(separator: ", "))], policy: failover-order, active: [\(net.nics[0])], detection: beacon-probing}
            port-groups:
              lan: {vlan: none}
        guests:
        \(Self.guests(p, ["a", "s"], group: "lan", subnet: 63, from: 1))
        """
        let t = RunningTopology(name: "\(p)bp", yaml: yaml)
        try #require(t.up.succeeded, "up failed: \(t.up.stderr)")
        #expect(t.ping(from: "\(p)a", to: "10.63.0.200"))
        #expect(t.ping(from: "\(p)s", to: "10.63.0.200"))
        sleep(2)   // beacons flowing
        #expect(((t.ports().first { $0["name"] as? String == net.nics[0] })?["team"] as? [String: Any])?["role"] as? String == "active")
        // Silent failure: the first NIC's link stays up, but its frames go nowhere.
        net.upstream("ip link set \(net.peer(0)) nomaster")
        let start = Date()
        var detected: TimeInterval? = nil
        while Date().timeIntervalSince(start) < 8 {
            let row = t.ports().first { $0["name"] as? String == net.nics[0] }
            if (row?["link"] as? String) == "down (beacon-lost)" { detected = Date().timeIntervalSince(start); break }
            usleep(100_000)
        }
        #expect(detected != nil, "beacon probing declares the silently failed NIC down")
        if let d = detected { print("beacon probing: silent failure detected after \(String(format: "%.1f", d)) s") }
        #expect((detected ?? 99) <= 5, "within ~3 s (3 missed probes at 1/s)")
        #expect(net.waitFDB(Self.mac(63, 2), on: net.peer(1), timeout: 1.0) != nil, "the silent guest is announced on the next NIC")
        #expect(t.ping(from: "\(p)a", to: "10.63.0.200"), "traffic flows again through the next NIC")
    }

    /// src-mac spreads guests by MAC hash over both NICs, each MAC on exactly one.
    @Test func srcMACDistributes() throws {
        let p = Capabilities.uniquePrefix("u")
        let net = PhysicalNetwork(prefix: p, nics: 2, subnet: 64)
        let names = ["a", "b", "c", "d", "e", "f"]
        let yaml = """
        name: \(p)sm
        switches:
          sw0:
            uplinks: {nics: [\(net.nics[0]), \(net.nics[1])], policy: src-mac}
            port-groups:
              lan: {vlan: none}
        guests:
        \(Self.guests(p, names, group: "lan", subnet: 64, from: 1))
        """
        // GRO on the first NIC stays on while the switch runs (GRO'd frames arrive described
        // by their virtio-net header), and the switch never touches it.
        sh("ethtool -K \(net.nics[0]) gro on")
        func gro() -> String { sh("ethtool -k \(net.nics[0]) | grep generic-receive-offload").stdout }
        let t = RunningTopology(name: "\(p)sm", yaml: yaml)
        try #require(t.up.succeeded, "up failed: \(t.up.stderr)")
        #expect(gro().contains(": on"), "GRO stays on while the uplink runs: \(gro())")
        // capture --uplink: a pcapng interface named after the NIC, with the pings on it.
        let file = NSTemporaryDirectory() + "tapestry-\(p)-uplink.pcapng"
        sh("('\(Harness.binary)' capture --name \(p)sm --uplink \(net.nics[0]) --duration 4s -w \(file) >/dev/null 2>&1 &)")
        usleep(700_000)
        for g in names { #expect(t.ping(from: "\(p)\(g)", to: "10.64.0.200")) }
        let fdb = net.fdb()
        // trace --in an uplink: an outside broadcast floods to the guests, never to the other NIC.
        let trace = Harness.tapestry("trace --name \(p)sm --in \(net.nics[0]) --frame src=\(net.externalMAC),dst=ff:ff:ff:ff:ff:ff,type=arp")
        #expect(trace.succeeded && trace.stdout.contains("team") && !trace.stdout.contains(net.nics[1] + " "), "the team decides, never the other NIC: \(trace.stdout)")
        sleep(4)
        let tshark = sh("tshark -r \(file) -T fields -e frame.interface_name -e icmp.type 2>/dev/null").stdout
        unlink(file)
        #expect(tshark.contains(net.nics[0]) && tshark.contains("\t8"), "the uplink capture has the echo requests on \(net.nics[0]): \(tshark.prefix(300))")
        let where_ = (1...names.count).map { fdb[Self.mac(64, $0)] }
        #expect(where_.allSatisfy { $0 == net.peer(0) || $0 == net.peer(1) }, "every guest MAC is on one NIC: \(fdb)")
        #expect(Set(where_.compactMap { $0 }).count == 2, "src-mac uses both NICs for six MACs: \(where_)")
        // A crash (kill -9): the next `down` cleans up; GRO was never touched.
        let pid = try #require(t.daemonPID())
        kill(pid, SIGKILL)
        for _ in 0..<100 where isRunning(pid) { usleep(50_000) }
        let down = Harness.tapestry("down --name \(p)sm")
        #expect(down.succeeded, "\(down.stdout) \(down.stderr)")
        #expect(gro().contains(": on"))
    }

    /// Bad input: an uplink NIC that does not exist is a located error and starts nothing;
    /// beacon probing with two NICs is a located warning.
    @Test func unknownNICIsALocatedError() throws {
        let p = Capabilities.uniquePrefix("u")
        let file = NSTemporaryDirectory() + "tapestry-\(p)-bad.yaml"
        try """
        name: \(p)bad
        switches:
          sw0:
            uplinks:
              nics: [\(p)nope0, lo]
              detection: beacon-probing
            port-groups:
              lan: {vlan: none}
        guests:
          \(p)g: {kind: netns, nics: [{switch: sw0, port-group: lan}]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let v = Harness.tapestry("validate '\(file)'")
        #expect(!v.succeeded)
        #expect(v.stderr.contains("\(file):5:14: error: uplink NIC '\(p)nope0' of switch 'sw0' does not exist on this host"), "\(v.stderr)")
        #expect(v.stderr.contains("\(file):6:18: warning: beacon probing with 2 NICs"), "\(v.stderr)")
        let up = Harness.tapestry("up '\(file)' --detach")
        #expect(!up.succeeded)
        #expect(!Harness.namespaces().contains("\(p)g"), "a failed up creates nothing")
    }
}
