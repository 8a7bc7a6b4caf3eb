import Foundation
import Testing
import TestSupport

/// End-to-end behaviour with real namespaces, TAP devices and kernel stacks.
/// Serialized: each test brings a whole topology up and down, and the machine has 2 cores.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct FabricSystemTests {
    /// A short unique id for this test's names (namespaces are named after guests).
    static func id() -> String { Capabilities.uniquePrefix("s") }

    /// Two VLANs with two guests each, a trunk observer on both, and a second switch.
    static func vlanLab(_ p: String) -> String {
        """
        name: \(p)lab
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
              v20: {vlan: 20}
              obs: {vlan: {trunk: [10, 20], native: none}, security: {forged-transmits: true}}
          sw1:
            port-groups:
              v10: {vlan: 10}
        guests:
          \(p)a1: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:00:10:01", ip: 10.1.0.1/24}]}
          \(p)a2: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:00:10:02", ip: 10.1.0.2/24}]}
          \(p)a3: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:00:10:03", ip: 10.1.0.3/24}]}
          \(p)b1: {kind: netns, nics: [{switch: sw0, port-group: v20, mac: "02:00:00:00:20:01", ip: 10.1.0.21/24}]}
          \(p)c1: {kind: netns, nics: [{switch: sw1, port-group: v10, mac: "02:00:00:00:30:01", ip: 10.1.0.31/24}]}
          \(p)t1: {kind: netns, nics: [{switch: sw0, port-group: obs, mac: "02:00:00:00:ff:01"}]}
        """
    }

    @Test func pingsStayInsideTheirVLANAndSwitch() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)a1", to: "10.1.0.2"), "same VLAN, same switch")
        #expect(!lab.ping(from: "\(p)a1", to: "10.1.0.21"), "VLAN 10 → VLAN 20 must fail")
        #expect(!lab.ping(from: "\(p)b1", to: "10.1.0.2"), "VLAN 20 → VLAN 10 must fail")
        #expect(!lab.ping(from: "\(p)a1", to: "10.1.0.31"), "sw0 → sw1 must fail, even in the same VLAN number")
        // The switch learned both ends of the working ping on the right ports.
        let fdb = Harness.tapestry("fdb --name \(p)lab --vlan 10").stdout
        #expect(fdb.contains("02:00:00:00:10:01") && fdb.contains("\(p)a1.eth0"))
        #expect(fdb.contains("02:00:00:00:10:02") && fdb.contains("\(p)a2.eth0"))
        #expect(!fdb.contains("02:00:00:00:20:01"), "a VLAN 20 address is not in the VLAN 10 view")
    }

    @Test func learnedUnicastIsNotFlooded() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)a1", to: "10.1.0.2"), "warm-up ping (learns both MACs)")
        let receiver = Capture(in: "\(p)a2", filter: "icmp")
        let third = Capture(in: "\(p)a3", filter: "icmp")
        let observer = Capture(in: "\(p)t1", filter: "vlan and icmp")
        #expect(lab.ping(from: "\(p)a1", to: "10.1.0.2", count: 5))
        let seenByReceiver = receiver.lines()
        #expect(seenByReceiver.count >= 10, "the destination saw the echo requests and sent replies: \(seenByReceiver)")
        #expect(third.lines().isEmpty, "a third guest in the VLAN must not see learned unicast")
        #expect(observer.lines().isEmpty, "the trunk observer must not see learned unicast")
    }

    @Test func broadcastReachesTrunkObserverTagged() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let observer = Capture(in: "\(p)t1", filter: "arp or (vlan and arp)")
        _ = lab.ping(from: "\(p)a1", to: "10.1.0.99", count: 1)   // nobody: ARP broadcast in VLAN 10
        _ = lab.ping(from: "\(p)b1", to: "10.1.0.98", count: 1)   // nobody: ARP broadcast in VLAN 20
        let lines = observer.lines()
        #expect(lines.contains { $0.contains("02:00:00:00:10:01") && $0.contains("vlan 10") && $0.contains("ff:ff:ff:ff:ff:ff") }, "\(lines)")
        #expect(lines.contains { $0.contains("02:00:00:00:20:01") && $0.contains("vlan 20") }, "\(lines)")
        #expect(!lines.contains { !$0.contains("vlan ") }, "nothing reaches the trunk untagged: \(lines)")
    }

    @Test(.enabled(if: Harness.hasScapy, "needs scapy in /usr/bin/python3 (Debian python3-scapy)"))
    func trunkInjectsIntoAllowedVLANsOnly() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let a1 = Capture(in: "\(p)a1", filter: "ether src 02:00:00:00:ee:01")
        let b1 = Capture(in: "\(p)b1", filter: "ether src 02:00:00:00:ee:01")
        let frame = { (vlan: Int) in "Ether(src='02:00:00:00:ee:01', dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=\(vlan))/ARP(psrc='10.1.0.77', pdst='10.1.0.1')" }
        #expect(lab.scapySend(from: "\(p)t1", frame(10)).succeeded)
        lab.scapySend(from: "\(p)t1", frame(30), count: 3)
        lab.scapySend(from: "\(p)t1", "Ether(src='02:00:00:00:ee:01', dst='ff:ff:ff:ff:ff:ff')/ARP(psrc='10.1.0.77', pdst='10.1.0.1')", count: 2)
        let inA1 = a1.lines(), inB1 = b1.lines()
        #expect(inA1.count == 1, "the VLAN 10 frame arrives untagged on the access port: \(inA1)")
        #expect(inA1.allSatisfy { !$0.contains("vlan") })
        #expect(inB1.isEmpty, "nothing reaches VLAN 20: \(inB1)")
        #expect(lab.drops(port: "\(p)t1.eth0", reason: "vlan-not-allowed") == 3)
        #expect(lab.drops(port: "\(p)t1.eth0", reason: "untagged-on-trunk") >= 2)
    }

    @Test(.enabled(if: Harness.hasScapy, "needs scapy in /usr/bin/python3 (Debian python3-scapy)"))
    func vlanHoppingAndMalformedFramesAreDroppedAndCounted() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let b1 = Capture(in: "\(p)b1", filter: "ether src 02:00:00:00:10:01 or ether src 01:00:5e:00:00:01")
        let arp = "ARP(psrc='10.1.0.1', pdst='10.1.0.21')"
        lab.scapySend(from: "\(p)a1", "Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=20)/\(arp)", count: 2)
        lab.scapySend(from: "\(p)a1", "Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=10)/Dot1Q(vlan=20)/\(arp)", count: 2)
        lab.scapySend(from: "\(p)a1", "Ether(dst='ff:ff:ff:ff:ff:ff', type=0x88a8)/Dot1Q(vlan=20)/\(arp)", count: 1)
        lab.scapySend(from: "\(p)a1", "Ether(src='01:00:5e:00:00:01', dst='ff:ff:ff:ff:ff:ff')/\(arp)", count: 2)
        lab.scapySend(from: "\(p)a1", "Ether(src='02:00:00:00:10:01', dst='01:80:c2:00:00:00')/LLC()/STP()", count: 1)
        // Oversize: raise the guest's MTU above the switch's and send a 2000-byte frame.
        lab.exec("\(p)a1", "ip link set eth0 mtu 4000")
        lab.scapySend(from: "\(p)a1", "Ether(dst='ff:ff:ff:ff:ff:ff')/IP(dst='10.1.0.2')/Raw(b'x'*2000)", count: 1)
        #expect(b1.lines().isEmpty, "no hop into VLAN 20")
        let port = "\(p)a1.eth0"
        #expect(lab.drops(port: port, reason: "tagged-on-access-port") == 5)
        #expect(lab.drops(port: port, reason: "invalid-source-mac") == 2)
        #expect(lab.drops(port: port, reason: "reserved-destination") == 1)
        #expect(lab.drops(port: port, reason: "oversize") == 1)
        // And the switch still forwards normally afterwards.
        lab.exec("\(p)a1", "ip link set eth0 mtu 1500")
        #expect(lab.ping(from: "\(p)a1", to: "10.1.0.2"))
        let table = Harness.tapestry("ports --name \(p)lab").stdout
        #expect(table.contains("tagged-on-access-port=5"), "visible in `tapestry ports`: \(table)")
    }

    @Test func downRemovesEverythingAndKillNineThenUpWorks() throws {
        let p = Self.id()
        // Other suites run in parallel and make their own namespaces and links: look only
        // at this test's names.
        func ours() -> Set<String> { Harness.namespaces().filter { $0.hasPrefix(p) } }
        let tapNames = ["a1", "a2", "a3", "b1", "c1", "t1"].map { hostTAPName("\(p)lab", "\(p)\($0)", 0) }
        func ourLinks() -> [String] { tapNames.filter { sh("ip link show \($0)").succeeded } }
        do {
            let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
            try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
            let guests = ["a1", "a2", "a3", "b1", "c1", "t1"].map { "\(p)\($0)" }
            #expect(Set(guests).isSubset(of: Harness.namespaces()))
            #expect(ourLinks().isEmpty, "TAPs live inside the guests, under their host names nowhere")
            let pid = try #require(lab.daemonPID(), "status reports the daemon pid")
            #expect(isRunning(pid))

            // Crash: kill -9 the daemon. Its namespaces stay behind…
            kill(pid, SIGKILL)
            for _ in 0..<100 where isRunning(pid) { usleep(50_000) }
            #expect(Set(guests).isSubset(of: Harness.namespaces()), "a killed daemon cannot clean up")
            // …and the next `up` removes them first, then works.
            let again = Harness.tapestry("up '\(lab.file)' --detach")
            #expect(again.succeeded, "up after kill -9: \(again.stderr)")
            let log = (try? String(contentsOfFile: "/var/log/tapestry/\(p)lab/daemon.log", encoding: .utf8)) ?? ""
            #expect(log.contains("cleaned up after topology '\(p)lab'"), "\(log)")
            #expect(lab.ping(from: "\(p)a1", to: "10.1.0.2"))
            let down = Harness.tapestry("down --name \(p)lab")
            #expect(down.succeeded, "\(down.stderr)")
            #expect(FileManager.default.fileExists(atPath: "/var/log/tapestry/\(p)lab/daemon.log"), "the daemon's log is kept after down")
        }
        #expect(ours().isEmpty, "down leaves no namespace behind")
        #expect(ourLinks().isEmpty, "down leaves no TAP behind")
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)lab.sock"))
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)lab.state"))
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)lab.lock"), "down releases and removes the instance lock")

    }

    @Test(.enabled(if: sh("command -v iperf3").succeeded, "needs iperf3"))
    func tcpCrossesTheSwitchAsGSOFrames() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        sh("ip netns exec \(p)a2 iperf3 -s -1 -D -p 5299")
        usleep(300_000)
        let client = lab.exec("\(p)a1", "iperf3 -c 10.1.0.2 -p 5299 -n 64M -J", timeout: 120)
        #expect(client.succeeded, "\(client.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any]
        let sent = (((json?["end"] as? [String: Any])?["sum_sent"] as? [String: Any])?["bytes"] as? NSNumber)?.intValue ?? 0
        #expect(sent >= 64 << 20, "iperf3 moved all 64 MiB over TCP (delivered and acknowledged through the switch)")
        // TSO through the vnet header: the frames the switch moved average far above the MTU.
        let row = lab.ports().first { $0["name"] as? String == "\(p)a1.eth0" }
        let frames = (row?["rx_frames"] as? NSNumber)?.doubleValue ?? 1, bytes = (row?["rx_bytes"] as? NSNumber)?.doubleValue ?? 0
        #expect(bytes / frames > 4000, "average frame \(Int(bytes / frames)) bytes: GSO frames cross the switch whole")
        #expect(lab.drops(port: "\(p)a2.eth0", reason: "oversize") == 0 && lab.drops(port: "\(p)a1.eth0", reason: "oversize") == 0)
    }

    @Test(.enabled(if: sh("command -v iperf3").succeeded, "needs iperf3"))
    func flowsSpreadOverTheTAPQueuesAndEveryWorkerForwards() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)lab", yaml: Self.vlanLab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let status = try JSONSerialization.jsonObject(with: Data(Harness.tapestry("status --name \(p)lab --json").stdout.utf8)) as? [String: Any]
        let threads = (status?["datapath_threads"] as? NSNumber)?.intValue ?? 0
        #expect(threads == min(4, ProcessInfo.processInfo.activeProcessorCount), "one datapath thread per core (at most 4)")
        // Each netns guest's TAP has one queue per datapath thread.
        let link = lab.exec("\(p)a1", "ip -d link show eth0").stdout
        #expect(threads == 1 ? !link.contains("multi_queue") : link.contains("multi_queue numqueues \(threads) "), "\(link)")
        guard threads > 1 else {
            print("flowsSpreadOverTheTAPQueuesAndEveryWorkerForwards: one core, one datapath thread: nothing to spread")
            return
        }
        // 16 UDP flows: the kernel hashes each to a queue, so (but for a 2·2⁻¹⁶ chance) both
        // workers read some of them (status counts the frames each worker read).
        func framesPerWorker() -> [Int] {
            let s = try? JSONSerialization.jsonObject(with: Data(Harness.tapestry("status --name \(p)lab --json").stdout.utf8)) as? [String: Any]
            return (s?["datapath_frames"] as? [NSNumber])?.map(\.intValue) ?? []
        }
        let before = framesPerWorker()
        #expect(before.count == threads, "a frame count per worker: \(before)")
        // 16 × 2 Mbit/s of 1000-byte datagrams: light, but thousands of frames.
        func run() -> CommandResult {
            sh("ip netns exec \(p)a2 iperf3 -s -1 -D -p 5298")
            usleep(300_000)
            return lab.exec("\(p)a1", "iperf3 -c 10.1.0.2 -p 5298 -u -b 2M -l 1000 -P 16 -t 3 -J", timeout: 60)
        }
        var client = run()
        for _ in 0..<2 where !client.succeeded { client = run() }   // the server may start late
        #expect(client.succeeded, "\(client.stderr)")
        let after = framesPerWorker()
        #expect(after.count == threads)
        for w in 0..<min(before.count, after.count) {
            #expect(after[w] - before[w] > 100, "worker \(w) forwarded some of the 16 flows: before \(before), after \(after)")
        }
        let received = lab.ports().first { $0["name"] as? String == "\(p)a2.eth0" }
        #expect(((received?["tx_frames"] as? NSNumber)?.intValue ?? 0) > 5_000, "the flows reached a2 through the switch")
    }

    @Test func sigtermTearsDown() throws {
        let p = Self.id()
        let yaml = """
        name: \(p)sig
        switches: {sw0: {port-groups: {g: {vlan: none}}}}
        guests:
          \(p)x: {kind: netns, nics: [{switch: sw0, port-group: g, ip: 10.2.0.1/24}]}
        """
        let lab = RunningTopology(name: "\(p)sig", yaml: yaml)
        try #require(lab.up.succeeded, "\(lab.up.stderr)")
        let pid = try #require(lab.daemonPID())
        kill(pid, SIGTERM)
        for _ in 0..<200 where isRunning(pid) { usleep(50_000) }
        #expect(!isRunning(pid))
        #expect(!Harness.namespaces().contains("\(p)x"), "SIGTERM removed the namespace")
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)sig.state"))
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)sig.lock"))
        let log = (try? String(contentsOfFile: "/var/log/tapestry/\(p)sig/daemon.log", encoding: .utf8)) ?? ""
        #expect(log.contains("stopping topology '\(p)sig' (SIGTERM)"), "the log is kept, with the stop: \(log)")
        sh("rm -rf /var/log/tapestry/\(p)sig")
    }

    @Test func invalidTopologyCreatesNothing() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)-bad.yaml"
        try """
        name: \(p)bad
        switches:
          sw0:
            port-groups:
              g: {vlan: 5000}
        guests:
          \(p)x: {kind: netns, nics: [{switch: sw0, port-group: g}]}
          \(p)y: {kind: netns, nics: [{switch: sw9, port-group: g}]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let r = Harness.tapestry("up '\(file)' --detach")
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(file):5:"), "located error for the VLAN: \(r.stderr)")
        #expect(r.stderr.contains("\(file):8:"), "and for the unknown switch, in the same run: \(r.stderr)")
        #expect(!Harness.namespaces().contains { $0.hasPrefix(p) }, "nothing was created")
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)bad.state"))
    }

    @Test func takenNamespaceIsNamedAndNothingIsCreated() throws {
        let p = Self.id()
        sh("ip netns add \(p)y")
        defer { sh("ip netns del \(p)y") }
        let yaml = """
        name: \(p)dup
        switches: {sw0: {port-groups: {g: {vlan: 10}}}}
        guests:
          \(p)x: {kind: netns, nics: [{switch: sw0, port-group: g}]}
          \(p)y: {kind: netns, nics: [{switch: sw0, port-group: g}]}
        """
        let lab = RunningTopology(name: "\(p)dup", yaml: yaml)
        #expect(lab.up.status == 1)
        #expect(lab.up.stderr.contains("network namespace '\(p)y' already exists"), "\(lab.up.stderr)")
        #expect(!Harness.namespaces().contains("\(p)x"), "nothing was created")

        // A second instance of a running topology is refused by name.
        let ok = RunningTopology(name: "\(p)one", yaml: yaml.replacingOccurrences(of: "\(p)dup", with: "\(p)one").replacingOccurrences(of: "  \(p)y:", with: "  \(p)z:"))
        try #require(ok.up.succeeded, "\(ok.up.stderr)")
        let twice = Harness.tapestry("up '\(ok.file)' --detach")
        #expect(twice.status == 1 && twice.stderr.contains("topology '\(p)one' is already running"), "\(twice.stderr)")
    }
}

/// The host-side name of a guest NIC's TAP (Fabric.hostTAPName: "tp" + FNV-1a-32 hex of
/// "topology/guest/index"), so a test can check such links are gone.
func hostTAPName(_ topology: String, _ guest: String, _ nic: Int) -> String {
    var h: UInt32 = 0x811C_9DC5
    for b in "\(topology)/\(guest)/\(nic)".utf8 { h = (h ^ UInt32(b)) &* 0x0100_0193 }
    let hex = String(h, radix: 16)
    return "tp" + String(repeating: "0", count: 8 - hex.count) + hex
}
