import Foundation
import Testing
import TestSupport

/// Packet-capture debugging end to end: `tapestry capture`, `trace` and mirrors against real
/// guests, with tcpdump, tshark and capinfos reading what Tapestry wrote.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct CaptureSystemTests {
    static func lab(_ p: String) -> String {
        """
        name: \(p)cap
        switches:
          sw0:
            port-groups:
              web: {vlan: 10, security: {forged-transmits: true}}   # trace below uses a new source MAC
              db: {vlan: 20}
              monitor: {vlan: 10}
            mirrors:
              - {name: span0, source: [web], direction: both, destination: {port-group: monitor}}
        guests:
          \(p)w1: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0a:01", ip: 10.3.0.1/24}]}
          \(p)w2: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0a:02", ip: 10.3.0.2/24}]}
          \(p)d1: {kind: netns, nics: [{switch: sw0, port-group: db, mac: "02:00:00:00:14:01", ip: 10.3.0.21/24}]}
          \(p)m1: {kind: netns, nics: [{switch: sw0, port-group: monitor, mac: "02:00:00:00:ee:01", ip: 10.3.0.99/24}]}
        """
    }

    /// Starts `tapestry capture ARGS -w FILE` in the background; returns its pid file.
    static func startCapture(_ args: String, output: String) -> String {
        let pidFile = output + ".pid"
        sh("('\(Harness.binary)' capture \(args) -w \(output) >/dev/null 2>\(output).err & echo $! >\(pidFile))")
        usleep(500_000)   // connected and registered with the datapath
        return pidFile
    }

    static func stop(_ pidFile: String) {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        usleep(300_000)
        kill(pid, SIGINT)
        for _ in 0..<100 where isRunning(pid) { usleep(50_000) }
        unlink(pidFile)
    }

    @Test(.enabled(if: Harness.hasTshark, "needs tshark and capinfos (Debian package tshark)"))
    func pcapngWithInterfacesDirectionsAndFilter() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let file = NSTemporaryDirectory() + "\(p)-all.pcapng", icmpOnly = NSTemporaryDirectory() + "\(p)-icmp.pcapng"
        defer { unlink(file); unlink(icmpOnly); unlink(file + ".err"); unlink(icmpOnly + ".err") }
        let all = Self.startCapture("--name \(p)cap --port \(p)w1.eth0,\(p)w2.eth0", output: file)
        let filtered = Self.startCapture("--name \(p)cap --port \(p)w2.eth0 --filter icmp", output: icmpOnly)
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 3))
        Self.stop(all); Self.stop(filtered)

        #expect(sh("capinfos \(file)").stdout.contains("pcapng"), "capinfos reports pcapng")
        #expect(sh("tcpdump -nn -r \(file)").stdout.contains("ICMP echo request"), "tcpdump reads it")
        let rows = sh("tshark -r \(file) -Y icmp -T fields -e frame.interface_name -e frame.packet_flags_direction -e icmp.type").stdout
            .split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        // An echo request enters at w1.eth0 (inbound) and leaves at w2.eth0 (outbound).
        #expect(rows.contains(["\(p)w1.eth0", "0x00000001", "8"]), "\(rows)")
        #expect(rows.contains(["\(p)w2.eth0", "0x00000002", "8"]), "\(rows)")
        #expect(rows.contains(["\(p)w2.eth0", "0x00000001", "0"]), "\(rows)")
        #expect(rows.contains(["\(p)w1.eth0", "0x00000002", "0"]), "\(rows)")
        let descriptions = sh("tshark -r \(file) -T fields -e frame.interface_description").stdout
        #expect(descriptions.contains("port group web, access 10"))

        let kept = sh("tcpdump -nn -r \(icmpOnly)").stdout.split(separator: "\n")
        #expect(kept.count == 6, "3 requests and 3 replies at w2: \(kept)")
        #expect(kept.allSatisfy { $0.contains("ICMP") }, "the BPF filter kept only ICMP: \(kept)")
    }

    @Test func badFilterIsAClearErrorBeforeAnythingStarts() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let file = NSTemporaryDirectory() + "\(p)-bad.pcapng"
        let r = Harness.tapestry("capture --name \(p)cap --filter 'tcp port' -w \(file)")
        #expect(r.status == 1)
        #expect(r.stderr.contains("bad filter 'tcp port'"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: file), "no file written")
    }

    @Test func streamingToTcpdumpShowsFramesLive() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let base = NSTemporaryDirectory() + "\(p)-stream"
        defer { unlink(base + ".out"); unlink(base + ".pid") }
        sh("(('\(Harness.binary)' capture --name \(p)cap --port \(p)w2.eth0 -w - 2>/dev/null & echo $! >\(base).pid) | tcpdump -nn -l -r - >\(base).out 2>&1 &)")
        usleep(500_000)
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 2))
        var live: [Substring] = []
        for _ in 0..<40 {
            live = ((try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("ICMP") }
            if live.count >= 4 { break }
            usleep(100_000)
        }
        let pid = Int32(((try? String(contentsOfFile: base + ".pid", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(pid > 0 && isRunning(pid), "the capture is still running")
        #expect(live.count >= 4, "tcpdump showed the frames while the capture ran: \(live)")
        Self.stop(base + ".pid")
    }

    @Test(.enabled(if: Harness.hasTshark && Harness.hasScapy, "needs tshark and scapy (Debian packages tshark, python3-scapy)"))
    func dropCaptureCarriesTheReason() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let file = NSTemporaryDirectory() + "\(p)-drops.pcapng"
        defer { unlink(file); unlink(file + ".err") }
        let cap = Self.startCapture("--name \(p)cap --drops", output: file)
        lab.scapySend(from: "\(p)w1", "Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=20)/ARP(pdst='10.3.0.21')")
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 1), "forwarded frames are not drops")
        Self.stop(cap)
        let rows = sh("tshark -r \(file) -T fields -e frame.interface_name -e frame.comment").stdout
            .split(separator: "\n").map(String.init)
        #expect(rows.contains("\(p)w1.eth0\tdropped: tagged frame on access port (vlan 20)"), "\(rows)")
        #expect(rows.allSatisfy { $0.contains("dropped:") }, "only drops are captured: \(rows)")
    }

    /// `trace` shows what the datapath's own decision does beyond the output: the copy a
    /// mirror makes of a frame from its source (text and `--json`), and the drop storm control
    /// makes of a broadcast from a port whose bucket is empty ("over the rate").
    @Test(.enabled(if: Harness.hasScapy, "needs scapy (Debian package python3-scapy)"))
    func traceShowsMirrorCopiesAndStormDrops() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)tm", yaml: """
        name: \(p)tm
        switches:
          sw0:
            port-groups:
              web: {vlan: 10}
              monitor: {vlan: 10}
              calm: {vlan: 30, storm-control: {broadcast: 1}}
            mirrors:
              - {name: span0, source: [web], direction: both, destination: {port-group: monitor}}
        guests:
          \(p)w1: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0b:01", ip: 10.4.0.1/24}]}
          \(p)w2: {kind: netns, nics: [{switch: sw0, port-group: web, mac: "02:00:00:00:0b:02", ip: 10.4.0.2/24}]}
          \(p)m1: {kind: netns, nics: [{switch: sw0, port-group: monitor, mac: "02:00:00:00:0b:99"}]}
          \(p)s1: {kind: netns, nics: [{switch: sw0, port-group: calm, mac: "02:00:00:00:0b:31", ip: 10.4.3.1/24}]}
          \(p)s2: {kind: netns, nics: [{switch: sw0, port-group: calm, mac: "02:00:00:00:0b:32", ip: 10.4.3.2/24}]}
        """)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)w1", to: "10.4.0.2", count: 1))
        let frame = "src=02:00:00:00:0b:01,dst=02:00:00:00:0b:02"
        let text = Harness.tapestry("trace --name \(p)tm --in \(p)w1.eth0 --frame \(frame)").stdout
        #expect(text.contains("copy to \(p)m1.eth0"), "the mirror copy is part of the trace: \(text)")
        let json = try JSONSerialization.jsonObject(with: Data(Harness.tapestry("trace --name \(p)tm --in \(p)w1.eth0 --json --frame \(frame)").stdout.utf8)) as? [String: Any]
        let first = (json?["frames"] as? [[String: Any]])?.first
        #expect(((first?["mirrors"] as? [[String: Any]]) ?? []).contains { $0["port"] as? String == "\(p)m1.eth0" }, "JSON mirrors: \(first ?? [:])")
        #expect(((first?["egress"] as? [[String: Any]]) ?? []).map { $0["port"] as? String } == ["\(p)w2.eth0"])

        // Storm control at 1 broadcast a second: a burst empties the bucket, and a trace right
        // after shows the drop (tried a few times: a token comes back every second).
        var shown = ""
        for _ in 0..<4 where !shown.contains("over the rate") {
            lab.scapySend(from: "\(p)s1", "Ether(dst='ff:ff:ff:ff:ff:ff', src='02:00:00:00:0b:31')/ARP(pdst='10.4.3.2')", count: 10)
            shown = Harness.tapestry("trace --name \(p)tm --in \(p)s1.eth0 --frame src=02:00:00:00:0b:31,dst=ff:ff:ff:ff:ff:ff,type=arp").stdout
        }
        #expect(shown.contains("over the rate") && shown.contains("storm-control-broadcast"), "the storm drop is part of the trace: \(shown)")
        #expect(lab.drops(port: "\(p)s1.eth0", reason: "storm-control-broadcast") >= 1, "and the datapath dropped the burst's excess")
    }

    @Test func traceExplainsWithoutChangingState() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 1))
        let known = Harness.tapestry("trace --name \(p)cap --in \(p)w1.eth0 --frame src=02:00:00:00:0a:01,dst=02:00:00:00:0a:02")
        #expect(known.stdout.contains("hit on \(p)w2.eth0"), "\(known.stdout)")
        #expect(known.stdout.contains("verdict  forward: \(p)w2.eth0 untagged"), "\(known.stdout)")
        let hop = Harness.tapestry("trace --name \(p)cap --in \(p)w1.eth0 --frame src=02:00:00:00:0a:01,dst=ff:ff:ff:ff:ff:ff,vlan=20,type=arp")
        #expect(hop.stdout.contains("dropped: tagged frame on access port (vlan 20)"), "\(hop.stdout)")
        #expect(hop.stdout.contains("verdict  drop (tagged-on-access-port)"), "\(hop.stdout)")
        let fdbBefore = Harness.tapestry("fdb --name \(p)cap").stdout
        let newcomer = Harness.tapestry("trace --name \(p)cap --in \(p)w2.eth0 --json --frame src=02:00:00:00:0a:77,dst=ff:ff:ff:ff:ff:ff")
        let json = try JSONSerialization.jsonObject(with: Data(newcomer.stdout.utf8)) as? [String: Any]
        let frame = (json?["frames"] as? [[String: Any]])?.first
        #expect(frame?["verdict"] as? String == "flood")
        #expect(((frame?["egress"] as? [[String: Any]]) ?? []).map { $0["port"] as? String } == ["\(p)w1.eth0"], "flood skips the mirror destination: \(newcomer.stdout)")
        #expect(!Harness.tapestry("fdb --name \(p)cap").stdout.contains("02:00:00:00:0a:77"), "trace learned nothing")
        #expect(Harness.tapestry("fdb --name \(p)cap").stdout.split(separator: "\n").count == fdbBefore.split(separator: "\n").count)

        // Replay: what w1 sent, captured to pcapng, traced again from a file.
        let file = NSTemporaryDirectory() + "\(p)-replay.pcapng"
        defer { unlink(file); unlink(file + ".err") }
        let cap = Self.startCapture("--name \(p)cap --port \(p)w1.eth0 --direction in --filter icmp", output: file)
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 2))
        Self.stop(cap)
        let replay = Harness.tapestry("trace --name \(p)cap --in \(p)w1.eth0 --pcap \(file)")
        #expect(replay.stdout.contains("frame 2: 02:00:00:00:0a:01 > 02:00:00:00:0a:02"), "\(replay.stdout)\(replay.stderr)")
        #expect(replay.stdout.components(separatedBy: "verdict  forward: \(p)w2.eth0 untagged").count == 3, "\(replay.stdout)")
    }

    @Test func mirrorDestinationSeesSourceTrafficAndSendsNothing() throws {
        let p = Capabilities.uniquePrefix("c")
        let lab = RunningTopology(name: "\(p)cap", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 1), "learn first")
        let monitor = Capture(in: "\(p)m1", filter: "icmp")
        #expect(lab.ping(from: "\(p)w1", to: "10.3.0.2", count: 2))
        let seen = monitor.lines()
        // Both directions, each frame exactly once (w1 and w2 are both monitored).
        #expect(seen.filter { $0.contains("10.3.0.1 > 10.3.0.2") && $0.contains("echo request") }.count == 2, "\(seen)")
        #expect(seen.filter { $0.contains("10.3.0.2 > 10.3.0.1") && $0.contains("echo reply") }.count == 2, "\(seen)")
        // The monitor's own frames go nowhere: a ping from it fails and is counted.
        #expect(!lab.ping(from: "\(p)m1", to: "10.3.0.1", count: 1))
        #expect(lab.drops(port: "\(p)m1.eth0", reason: "mirror-destination-port") >= 1)
    }
}
