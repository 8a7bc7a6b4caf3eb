import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Wired into a running topology, each piece against the real tool: IPFIX flow
/// export read by Debian's nfcapd/nfdump, `/metrics` scraped by curl and linted by promtool,
/// LLDP both ways with Debian's lldpd as the upstream switch, and the opt-in `tapestry`
/// group (an unprivileged member lists ports and captures, and nothing more).
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct ObservabilityWiringSystemTests {
    static func has(_ tool: String) -> Bool { sh("command -v \(tool)").succeeded }

    /// Two netns guests on VLAN 10 of switch sw0, with `switchExtra` lines under sw0.
    static func pair(_ p: String, name: String, subnet: Int, switchExtra: String = "") -> String {
        """
        name: \(name)
        switches:
          sw0:
        \(switchExtra)
            port-groups:
              web: {vlan: 10}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:\(String(format: "%02x", subnet)):01", ip: 10.\(subnet).0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:\(String(format: "%02x", subnet)):02", ip: 10.\(subnet).0.2/24}]}
        """
    }

    /// A free port on 127.0.0.1 (bind port 0; a tiny race, acceptable in tests).
    static func freePort(udp: Bool) -> UInt16 {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET); a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: a.sin_port)
    }

    /// The stable interface ID of `SWITCH/PORT`: FNV-1a over its bytes (InterfaceRegistry),
    /// computed here independently.
    static func interfaceID(_ name: String) -> UInt64 {
        var h: UInt32 = 2_166_136_261
        for b in name.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return UInt64(h)
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    static func number(_ v: Any?) -> UInt64 { (v as? NSNumber)?.uint64Value ?? 0 }

    /// A program started in the background by this test; stopped by its pid (never by name).
    final class Background {
        let pid: Int32
        let log: String
        init?(_ command: String, log: String) {
            self.log = log
            let pidFile = log + ".pid"
            sh("(exec \(command) >'\(log)' 2>&1) & echo $! >'\(pidFile)'")
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let p = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
            unlink(pidFile)
            pid = p
        }
        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func waitFor(_ text: String, seconds: Int = 10) -> Bool {
            for _ in 0..<(seconds * 20) { if output.contains(text) { return true }; usleep(50_000) }
            return false
        }
        func stop() {
            guard isRunning(pid) else { return }
            kill(pid, SIGTERM)
            for _ in 0..<100 where isRunning(pid) { usleep(50_000) }
            if isRunning(pid) { kill(pid, SIGKILL) }
        }
        deinit { stop(); unlink(log) }
    }

    /// Polls `status --json` until `check` holds for the first `flow_export` entry (or
    /// `seconds` pass); returns the last entry seen.
    static func waitFlowExport(_ lab: RunningTopology, seconds: Int, _ check: ([String: Any]) -> Bool) -> [String: Any] {
        var last: [String: Any] = [:]
        for _ in 0..<(seconds * 5) {
            let s = json(Harness.tapestry("status --name \(lab.name) --json").stdout)
            last = (s["flow_export"] as? [[String: Any]])?.first ?? [:]
            if check(last) { break }
            usleep(200_000)
        }
        return last
    }

    // MARK: - IPFIX

    @Test(.enabled(if: has("nfcapd") && has("nfdump"), "needs nfcapd and nfdump (Debian package nfdump, Scripts/setup.sh)"))
    func twentyPingsShowUpInNfdumpAsFlowsWithMatchingCounts() throws {
        let p = Capabilities.uniquePrefix("f")
        let port = Self.freePort(udp: true)
        let dir = NSTemporaryDirectory() + "tapestry-\(p)-nfcapd"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nfcapd = try #require(Background("nfcapd -w '\(dir)' -b 127.0.0.1 -p \(port) -t 60", log: dir + ".log"))
        #expect(nfcapd.waitFor("Startup nfcapd"), "nfcapd: \(nfcapd.output)")
        let lab = RunningTopology(name: "\(p)flow", yaml: Self.pair(p, name: "\(p)flow", subnet: 41,
                                                                    switchExtra: "    flow-export: {collector: \"127.0.0.1:\(port)\", idle-timeout: 1s, observation-domain: 21}"))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.exec("\(p)a", "ping -c 20 -i 0.05 -q 10.41.0.2").succeeded)
        // Idle 1 s later both ICMP flows are exported (the tick runs every second), with
        // the ARP flows (and whatever IPv6 the guests sent).
        usleep(3_000_000)
        let f = Self.waitFlowExport(lab, seconds: 15) { Self.number($0["records_exported"]) >= 4 && Self.number($0["accounted_frames"]) >= 40 }
        #expect(Self.number(f["records_exported"]) >= 4 && Self.number(f["send_failures"]) == 0, "status flow_export: \(f)")
        #expect(f["collector"] as? String == "127.0.0.1:\(port)" && Self.number(f["observation_domain"]) == 21 && Self.number(f["sampling"]) == 1)
        let text = Harness.tapestry("status --name \(p)flow").stdout
        #expect(text.contains("flow export sw0 → 127.0.0.1:\(port)") && text.contains("record(s) exported"), "\(text)")

        nfcapd.stop()   // SIGTERM: nfcapd writes its file
        let dump = sh("nfdump -R '\(dir)' -o json -q 2>&1").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let flows = (try? JSONSerialization.jsonObject(with: Data((dump.hasPrefix("[") ? dump : "[" + dump + "]").utf8)) as? [[String: Any]]) ?? []
        func icmp(from: String, to: String) -> [[String: Any]] {
            flows.filter { ($0["proto"] as? NSNumber)?.intValue == 1 && $0["src4_addr"] as? String == from && $0["dst4_addr"] as? String == to }
        }
        let requests = icmp(from: "10.41.0.1", to: "10.41.0.2"), replies = icmp(from: "10.41.0.2", to: "10.41.0.1")
        // A flow seen by two workers is two records: their sum is the flow.
        #expect(requests.reduce(0) { $0 + Self.number($1["in_packets"]) } == 20, "nfdump: \(flows)")
        #expect(replies.reduce(0) { $0 + Self.number($1["in_packets"]) } == 20)
        #expect(requests.reduce(0) { $0 + Self.number($1["in_bytes"]) } == 20 * 98, "98-byte echo frames")
        let a = Self.interfaceID("sw0/\(p)a.eth0"), b = Self.interfaceID("sw0/\(p)b.eth0")
        #expect(requests.allSatisfy { Self.number($0["input_snmp"]) == a && Self.number($0["output_snmp"]) == b && Self.number($0["src_vlan"]) == 10 })
        #expect(replies.allSatisfy { Self.number($0["input_snmp"]) == b && Self.number($0["output_snmp"]) == a })
        #expect(requests.first?["in_src_mac"] as? String == "02:00:00:00:29:01" && requests.first?["in_dst_mac"] as? String == "02:00:00:00:29:02")
        #expect(requests.allSatisfy { Self.number($0["icmp_type"]) == 8 } && replies.allSatisfy { Self.number($0["icmp_type"]) == 0 })
        // ARP is exported as L2 flows; a's broadcast request was flooded (egress 0).
        #expect(flows.contains { Self.number($0["in_packets"]) >= 1 && $0["in_dst_mac"] as? String == "ff:ff:ff:ff:ff:ff" && Self.number($0["output_snmp"]) == 0 },
                "a flooded frame's egress is 0: \(flows)")
    }

    @Test func anUnreachableCollectorIsCountedAndForwardingGoesOn() throws {
        let p = Capabilities.uniquePrefix("r")
        let port = Self.freePort(udp: true)   // nobody listens: ICMP port unreachable
        let lab = RunningTopology(name: "\(p)lost", yaml: Self.pair(p, name: "\(p)lost", subnet: 42,
                                                                    switchExtra: "    flow-export: {collector: \"127.0.0.1:\(port)\", idle-timeout: 1s}"))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)a", to: "10.42.0.2", count: 3))
        var f = Self.waitFlowExport(lab, seconds: 15) { Self.number($0["send_failures"]) >= 1 }
        if Self.number(f["send_failures"]) == 0 {
            // The template message went out first; the next send hears the refusal.
            #expect(lab.ping(from: "\(p)a", to: "10.42.0.2", count: 2))
            f = Self.waitFlowExport(lab, seconds: 10) { Self.number($0["send_failures"]) >= 1 }
        }
        #expect(Self.number(f["send_failures"]) >= 1 && Self.number(f["collector_unreachable"]) >= 1, "\(f)")
        #expect((f["last_error"] as? String)?.contains("refused") == true, "\(f)")
        #expect(lab.ping(from: "\(p)b", to: "10.42.0.1", count: 2), "forwarding goes on")
        #expect(lab.daemonPID().map { isRunning($0) } == true)
    }

    // MARK: - Prometheus

    static func scrape(_ port: UInt16) -> String { sh("curl -sS --max-time 5 'http://127.0.0.1:\(port)/metrics'").stdout }

    static func sample(_ text: String, _ prefix: String) -> UInt64? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.flatMap { UInt64($0.split(separator: " ").last ?? "") }
    }

    @Test(.enabled(if: has("curl"), "needs curl"))
    func metricsAreScrapedLintedByPromtoolAndMoveWithTraffic() throws {
        let p = Capabilities.uniquePrefix("m")
        let port = Self.freePort(udp: false)
        let yaml = Self.pair(p, name: "\(p)prom", subnet: 43)
        let file = NSTemporaryDirectory() + "tapestry-\(p)prom-metrics.yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        // A malformed address is a usage error before anything starts.
        let bad = Harness.tapestry("up '\(file)' --detach --metrics 127.0.0.1")
        #expect(bad.status == 2 && bad.stderr.contains("--metrics") && !Harness.namespaces().contains("\(p)a"), "\(bad.stderr)")

        let up = Harness.tapestry("up '\(file)' --detach --metrics 127.0.0.1:\(port)")
        defer { Harness.tapestry("down --name \(p)prom"); sh("rm -rf '/var/log/tapestry/\(p)prom'") }
        try #require(up.succeeded, "up failed: \(up.stderr)")
        let first = Self.scrape(port)
        #expect(first.contains("tapestry_topology_info{topology=\"\(p)prom\"} 1"), "\(first)")
        let port0 = "tapestry_port_receive_frames_total{switch=\"sw0\",port=\"\(p)a.eth0\",port_group=\"web\",kind=\"guest\"}"
        let before = try #require(Self.sample(first, port0), "no \(port0) in \(first)")
        if Self.has("promtool") {
            let lint = sh("curl -sS 'http://127.0.0.1:\(port)/metrics' | promtool check metrics 2>&1")
            #expect(lint.succeeded && lint.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(lint.stdout)")
        } else {
            print("note: promtool not installed (Debian package prometheus): lint skipped")
        }
        #expect(sh("ip netns exec \(p)a ping -c 10 -i 0.05 -q 10.43.0.2").succeeded)
        // A tagged frame on an access port: a drop with its reason as a label.
        if Harness.hasScapy {
            sh("ip netns exec \(p)a \(Harness.python) -c \"from scapy.all import *; sendp(Ether(src='02:00:00:00:2b:01', dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=20)/IP(), iface='eth0', verbose=0)\"")
        }
        let after = Self.scrape(port)
        #expect((Self.sample(after, port0) ?? 0) >= before + 10, "rx frames moved with traffic: \(before) → \(Self.sample(after, port0) ?? 0)")
        #expect(after.contains("tapestry_mac_table_entries{switch=\"sw0\"} 2"))
        #expect(after.contains("tapestry_datapath_worker_frames_total{worker=\"0\"}"))
        if Harness.hasScapy {
            #expect(after.contains("tapestry_port_dropped_frames_total{switch=\"sw0\",port=\"\(p)a.eth0\",reason=\"tagged-on-access-port\"} 1"), "\(after)")
        }
        // The port is taken now: another topology asking for it fails before creating anything.
        let other = Self.pair(p, name: "\(p)busy", subnet: 44).replacingOccurrences(of: "\(p)a:", with: "\(p)c:").replacingOccurrences(of: "\(p)b:", with: "\(p)d:")
        let otherFile = NSTemporaryDirectory() + "tapestry-\(p)busy-metrics.yaml"
        try other.write(toFile: otherFile, atomically: true, encoding: .utf8)
        defer { unlink(otherFile); Harness.tapestry("down --name \(p)busy"); sh("rm -rf '/var/log/tapestry/\(p)busy'") }
        let busy = Harness.tapestry("up '\(otherFile)' --detach --metrics 127.0.0.1:\(port)")
        #expect(busy.status == 1 && !Harness.namespaces().contains("\(p)c") && !FileManager.default.fileExists(atPath: "/run/tapestry/\(p)busy.state"),
                "a metrics address in use: \(busy.stderr)")
        #expect(busy.stderr.contains("127.0.0.1:\(port)") && busy.stderr.contains("Address already in use"), "\(busy.stderr)")
    }

    @Test func metricsAreOffUnlessAskedFor() throws {
        let p = Capabilities.uniquePrefix("n")
        let lab = RunningTopology(name: "\(p)quiet", yaml: Self.pair(p, name: "\(p)quiet", subnet: 45))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let pid = try #require(lab.daemonPID())
        let listening = sh("ss -Hltnp | grep 'pid=\(pid),' || true").stdout
        #expect(listening.isEmpty, "the daemon listens on no TCP port: \(listening)")
    }

    // MARK: - LLDP

    @Test(.enabled(if: has("lldpd") && has("lldpcli"), "needs lldpd and lldpcli (Debian package lldpd)"))
    func lldpdAndTapestrySeeEachOtherOnTheUplinks() throws {
        let p = Capabilities.uniquePrefix("l")
        let up = "\(p)up", dir = NSTemporaryDirectory() + "tapestry-\(p)-lldpd"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The physical network: two veth "NICs" into the upstream switch's namespace.
        let setup = sh("""
            set -e
            ip netns add \(up); ip -n \(up) link set lo up
            for i in 0 1; do
              ip link add \(p)n$i type veth peer name \(p)p$i netns \(up)
              ip -n \(up) link set \(p)p$i up; ip link set \(p)n$i up
            done
            """)
        defer {
            sh("ip netns del \(up) 2>/dev/null; ip link del \(p)n0 2>/dev/null; ip link del \(p)n1 2>/dev/null")
            try? FileManager.default.removeItem(atPath: dir)
        }
        try #require(setup.succeeded, "setup: \(setup.stderr)")
        try "configure lldp tx-interval 1\nconfigure system hostname upstream-\(p)\nconfigure system description \"Upstream \(p)\"\n"
            .write(toFile: dir + "/lldpd.conf", atomically: true, encoding: .utf8)
        let lldpd = try #require(Background("ip netns exec \(up) lldpd -d -u '\(dir)/lldpd.sock' -I \(p)p0,\(p)p1 -O '\(dir)/lldpd.conf'", log: dir + "/lldpd.log"))
        #expect(lldpd.waitFor("lldpd should resume operations"), "lldpd: \(lldpd.output)")
        func lldpcli(_ args: String) -> String { sh("lldpcli -u '\(dir)/lldpd.sock' \(args)", timeout: 10).stdout }

        // sw0 advertises and listens on n0; sw1 listens only (the default) on n1. A guest
        // in sw0's untagged domain must never see the physical switch's LLDP.
        let yaml = """
            name: \(p)lldp
            switches:
              sw0:
                uplinks: {nics: [\(p)n0], lldp: both}
                port-groups:
                  lan: {vlan: none, l2-transparency: true}
              sw1:
                uplinks: {nics: [\(p)n1]}
                port-groups:
                  lan: {vlan: 20}
            guests:
              \(p)g: {kind: netns, nics: [{switch: sw0, port-group: lan, mac: "02:00:00:00:2e:01", ip: 10.46.0.1/24}]}
              \(p)h: {kind: netns, nics: [{switch: sw1, port-group: lan, mac: "02:00:00:00:2e:02", ip: 10.46.1.1/24}]}
            """
        let lab = RunningTopology(name: "\(p)lldp", yaml: yaml)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let guestCapture = Capture(in: "\(p)g", filter: "ether proto 0x88cc", seconds: 6)

        // Our side: `neighbors` shows what lldpd said on both uplinks.
        var uplinks: [[String: Any]] = []
        for _ in 0..<50 {
            uplinks = Self.json(Harness.tapestry("neighbors --name \(p)lldp --json").stdout)["uplinks"] as? [[String: Any]] ?? []
            if uplinks.count == 2 && uplinks.allSatisfy({ !(($0["neighbors"] as? [Any]) ?? []).isEmpty }) { break }
            usleep(200_000)
        }
        for (nic, peer, mode) in [("\(p)n0", "\(p)p0", "both"), ("\(p)n1", "\(p)p1", "listen")] {
            let u = try #require(uplinks.first { $0["uplink"] as? String == nic }, "no uplink \(nic): \(uplinks)")
            #expect(u["lldp"] as? String == mode)
            let n = try #require((u["neighbors"] as? [[String: Any]])?.first, "nothing heard on \(nic): \(u)")
            let peerMAC = sh("ip -n \(up) -br link show \(peer)").stdout.split(separator: " ").filter { !$0.isEmpty }.dropFirst(2).first.map(String.init)
            #expect(n["system_name"] as? String == "upstream-\(p)" && n["system_description"] as? String == "Upstream \(p)", "\(n)")
            #expect(n["chassis_id_type"] as? String == "mac" && n["port_description"] as? String == peer, "\(n)")
            #expect(n["port_id"] as? String == peerMAC || n["port_id"] as? String == peer, "port id: \(n), \(peer) has \(peerMAC ?? "?")")
            #expect(Self.number(n["ttl_seconds"]) == 4, "lldpd: tx-interval 1 × hold 4")
        }
        let text = Harness.tapestry("neighbors --name \(p)lldp").stdout
        #expect(text.contains("upstream-\(p)") && text.contains("\(p)n1"), "\(text)")

        // lldpd's side: our chassis (the host name), our port (the NIC), on p0 only.
        let host = sh("hostname").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var shown: [String: Any] = [:]
        for _ in 0..<50 {
            shown = (Self.json(lldpcli("show neighbors details -f json"))["lldp"] as? [String: Any])?["interface"] as? [String: Any] ?? [:]
            if shown["\(p)p0"] != nil { break }
            usleep(200_000)
        }
        let iface = try #require(shown["\(p)p0"] as? [String: Any], "lldpcli shows no neighbour on \(p)p0: \(lldpcli("show neighbors"))")
        let chassis = try #require((iface["chassis"] as? [String: Any])?[host] as? [String: Any], "\(iface)")
        #expect((chassis["id"] as? [String: Any])?["type"] as? String == "local" && (chassis["id"] as? [String: Any])?["value"] as? String == host)
        #expect((chassis["descr"] as? String)?.hasPrefix("Tapestry virtual switch, topology \(p)lldp") == true, "\(chassis)")
        let portID = (iface["port"] as? [String: Any])?["id"] as? [String: Any]
        #expect(portID?["type"] as? String == "ifname" && portID?["value"] as? String == "\(p)n0", "\(iface)")
        #expect(shown["\(p)p1"] == nil, "sw1 only listens: nothing advertised on \(p)n1")

        // trace shows the same decision: for the switch, on any uplink.
        let trace = Self.json(Harness.tapestry("trace --name \(p)lldp --in \(p)n1 --frame 'src=02:00:00:00:ee:01,dst=01:80:c2:00:00:0e,type=0x88cc' --json").stdout)
        let traced = (trace["frames"] as? [[String: Any]])?.first
        #expect(traced?["verdict"] as? String == "local" && ((traced?["steps"] as? [[String: Any]]) ?? []).contains { ($0["detail"] as? String)?.contains("LLDP") == true },
                "\(trace)")
        // LLDP never reached the guest, and was not counted as a drop.
        #expect(guestCapture.lines().isEmpty, "the guest saw LLDP")
        #expect(lab.drops(port: "\(p)n0", reason: "reserved-destination") == 0 && lab.drops(port: "\(p)n0", reason: "team-inactive-uplink") == 0)

        // Down: our TTL-0 LLDPDU removes us from lldpd's table at once.
        Harness.tapestry("down --name \(p)lldp")
        var gone = false
        for _ in 0..<30 where !gone { usleep(100_000); gone = !lldpcli("show neighbors -f json").contains(host) }
        #expect(gone, "lldpd still lists us after down: \(lldpcli("show neighbors"))")
    }

    // MARK: - The tapestry group

    @Test(.enabled(if: has("runuser") && has("useradd") && has("groupadd"), "needs runuser, useradd and groupadd"))
    func aGroupMemberListsAndCapturesAndNothingMore() throws {
        let p = Capabilities.uniquePrefix("w")
        // The group is opt-in and machine-wide (Scripts/setup.sh creates it); it is never
        // removed here. The two users are this test's own.
        try #require(sh("getent group tapestry >/dev/null || groupadd --system tapestry").succeeded)
        let member = "tp\(p)in", outsider = "tp\(p)out"
        defer { sh("userdel \(member) 2>/dev/null; userdel \(outsider) 2>/dev/null") }
        try #require(sh("useradd --system --no-create-home --shell /usr/sbin/nologin -G tapestry \(member)").succeeded)
        try #require(sh("useradd --system --no-create-home --shell /usr/sbin/nologin \(outsider)").succeeded)
        let lab = RunningTopology(name: "\(p)grp", yaml: Self.pair(p, name: "\(p)grp", subnet: 47))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        var st = stat()
        #expect(stat("/run/tapestry/\(p)grp.sock", &st) == 0 && st.st_mode & 0o777 == 0o660, "socket 0660")
        #expect(stat("/run/tapestry", &st) == 0 && st.st_mode & 0o777 == 0o750)
        func run(_ user: String, _ args: String) -> CommandResult { sh("cd /tmp && runuser -u \(user) -- '\(Harness.binary)' \(args)", timeout: 30) }

        // A member lists ports, through the CLI and as Wireshark's extcap does.
        let ports = run(member, "ports --name \(p)grp --json")
        #expect(ports.succeeded && ports.stdout.contains("\"\(p)a.eth0\""), "\(ports.stderr)")
        #expect(run(member, "extcap --extcap-interfaces").stdout.contains("interface {value=tapestry:\(p)grp/\(p)a.eth0}"))
        // And captures.
        let out = "/tmp/tapestry-\(p)-member.pcapng"
        defer { unlink(out) }
        sh("(sleep 1; ip netns exec \(p)a ping -c 4 -i 0.2 10.47.0.2 >/dev/null) &")
        let capture = run(member, "capture --name \(p)grp --port \(p)b.eth0 --filter icmp -c 4 -w \(out) --duration 15")
        #expect(capture.succeeded, "capture: \(capture.stderr)")
        let frames = sh("tcpdump -nn -r '\(out)' 2>/dev/null").stdout.split(separator: "\n")
        #expect(frames.count == 4 && frames.allSatisfy { $0.contains("ICMP echo") }, "\(frames)")

        // Nothing more: status, down, reload and trace are refused with a message.
        for args in ["status --name \(p)grp", "down --name \(p)grp", "reload '\(lab.file)' --name \(p)grp",
                     "trace --name \(p)grp --in \(p)a.eth0 --frame 'src=02:00:00:00:2f:01,dst=ff:ff:ff:ff:ff:ff'"] {
            let r = run(member, args)
            #expect(r.status == 1 && r.stderr.contains("permission denied") && r.stderr.contains("ports and capture"), "\(args): \(r.stderr)")
        }
        #expect(lab.ping(from: "\(p)a", to: "10.47.0.2"), "still running")

        // A user outside the group cannot even reach the socket.
        let refused = run(outsider, "ports --name \(p)grp")
        #expect(refused.status == 1 && refused.stderr.contains("Permission denied"), "\(refused.stderr)")
        let direct = sh("runuser -u \(outsider) -- python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('/run/tapestry/\(p)grp.sock')\" 2>&1")
        #expect(!direct.succeeded && direct.stdout.contains("PermissionError"), "\(direct.stdout)")
    }
}
