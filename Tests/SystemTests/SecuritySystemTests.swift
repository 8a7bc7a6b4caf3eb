import Foundation
import Testing
import TestSupport

/// Security policies and hardening with real guests: the security trio, MAC-flood
/// protection, storm control and L2 protocol transparency.
@Suite(.serialized, .enabled(if: Harness.enabled && Harness.hasScapy, "needs root, /dev/net/tun, iproute2 and scapy (python3-scapy)"))
struct SecuritySystemTests {
    static func lab(_ p: String) -> String {
        """
        name: \(p)sec
        switches:
          sw0:
            port-groups:
              lab: {vlan: 10}
              forge: {vlan: 10, security: {forged-transmits: true}}
              open: {vlan: 10, mac-limit: 64, security: {forged-transmits: true, mac-changes: true}}
              tap: {vlan: 10, security: {promiscuous: true}}
              other: {vlan: 20, security: {promiscuous: true}}
              storm: {vlan: 30, storm-control: {broadcast: 20}}
              stp: {vlan: 40, l2-transparency: true}
              nostp: {vlan: 40}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: lab, mac: "02:00:00:00:0a:0a", ip: 10.4.0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: lab, mac: "02:00:00:00:0a:0b", ip: 10.4.0.2/24}]}
          \(p)f: {kind: netns, nics: [{switch: sw0, port-group: forge, mac: "02:00:00:00:0a:0f", ip: 10.4.0.6/24}]}
          \(p)o: {kind: netns, nics: [{switch: sw0, port-group: open, mac: "02:00:00:00:0a:0c", ip: 10.4.0.3/24}]}
          \(p)t: {kind: netns, nics: [{switch: sw0, port-group: tap, mac: "02:00:00:00:0a:0d"}]}
          \(p)x: {kind: netns, nics: [{switch: sw0, port-group: other, mac: "02:00:00:00:14:0d"}]}
          \(p)s1: {kind: netns, nics: [{switch: sw0, port-group: storm, mac: "02:00:00:00:1e:01"}]}
          \(p)s2: {kind: netns, nics: [{switch: sw0, port-group: storm, mac: "02:00:00:00:1e:02"}]}
          \(p)l1: {kind: netns, nics: [{switch: sw0, port-group: stp, mac: "02:00:00:00:28:01"}]}
          \(p)l2: {kind: netns, nics: [{switch: sw0, port-group: stp, mac: "02:00:00:00:28:02"}]}
          \(p)n1: {kind: netns, nics: [{switch: sw0, port-group: nostp, mac: "02:00:00:00:28:03"}]}
        """
    }

    @Test func forgedTransmitsAndMACChanges() throws {
        let p = Capabilities.uniquePrefix("q")
        let lab = RunningTopology(name: "\(p)sec", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        // Forged source from a (forged-transmits false): dropped and counted.
        let atB = Capture(in: "\(p)b", filter: "ether src 02:00:00:00:0a:99 or ether src 02:00:00:00:0a:98")
        lab.scapySend(from: "\(p)a", "Ether(src='02:00:00:00:0a:99', dst='ff:ff:ff:ff:ff:ff')/ARP(pdst='10.4.0.2')", count: 3)
        // The same from f (forged-transmits true): delivered.
        lab.scapySend(from: "\(p)f", "Ether(src='02:00:00:00:0a:98', dst='ff:ff:ff:ff:ff:ff')/ARP(pdst='10.4.0.2')", count: 1)
        let seen = atB.lines()
        #expect(!seen.contains { $0.contains("02:00:00:00:0a:99") }, "forged frames never arrive: \(seen)")
        #expect(seen.contains { $0.contains("02:00:00:00:0a:98") }, "allowed forged transmit arrives: \(seen)")
        #expect(lab.drops(port: "\(p)a.eth0", reason: "forged-transmit") == 3)

        // f changes its MAC: it may send with it (forged allowed), but unicast to the new MAC
        // is not delivered (mac-changes false), so a ping to it fails and is counted.
        lab.exec("\(p)f", "ip link set eth0 address 02:00:00:00:0a:ff")
        #expect(!lab.ping(from: "\(p)a", to: "10.4.0.6", count: 2))
        #expect(lab.drops(port: "\(p)f.eth0", reason: "mac-change-rejected") >= 1)
        // o allows MAC changes: after changing its MAC it is still reachable.
        lab.exec("\(p)o", "ip link set eth0 address 02:00:00:00:0a:ee")
        #expect(lab.ping(from: "\(p)a", to: "10.4.0.3", count: 2))
    }

    @Test func promiscuousPortSeesItsVLANOnly() throws {
        let p = Capabilities.uniquePrefix("q")
        let lab = RunningTopology(name: "\(p)sec", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)a", to: "10.4.0.2", count: 1), "learn both")
        let promisc = Capture(in: "\(p)t", filter: "icmp")
        let otherVLAN = Capture(in: "\(p)x", filter: "icmp")
        #expect(lab.ping(from: "\(p)a", to: "10.4.0.2", count: 2))
        let seen = promisc.lines()
        #expect(seen.filter { $0.contains("10.4.0.1 > 10.4.0.2") }.count == 2, "promiscuous port sees learned unicast: \(seen)")
        #expect(otherVLAN.lines().isEmpty, "a promiscuous port of VLAN 20 sees nothing of VLAN 10")
    }

    @Test func macFloodFromOneGuestEvictsOnlyItsOwnEntries() throws {
        let p = Capabilities.uniquePrefix("q")
        let lab = RunningTopology(name: "\(p)sec", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)a", to: "10.4.0.2", count: 1), "learn a and b")
        // o floods 3000 random source MACs (it may forge, but its port holds at most 64).
        let flood = lab.exec("\(p)o", "\(Harness.python) -c \"from scapy.all import *; sendp([Ether(src=RandMAC('02:*:*:*:*:*'), dst='ff:ff:ff:ff:ff:ff')/ARP(pdst='10.4.0.250') for _ in range(3000)], iface='eth0', verbose=0)\"", timeout: 120)
        #expect(flood.succeeded, "\(flood.stderr)")
        let fdb = Harness.tapestry("fdb --name \(p)sec --vlan 10").stdout
        #expect(fdb.contains("02:00:00:00:0a:0a") && fdb.contains("02:00:00:00:0a:0b"), "a and b keep their entries")
        let row = lab.ports().first { $0["name"] as? String == "\(p)o.eth0" }
        #expect((row?["mac_entries"] as? NSNumber)?.intValue ?? 0 <= 64)
        #expect((row?["mac_evictions"] as? NSNumber)?.intValue ?? 0 >= 2900, "\(String(describing: row))")
        #expect(Harness.tapestry("fdb --name \(p)sec").stdout.contains("sw0/\(p)o.eth0: 64/64 entries (limit reached)"), "fdb shows the limit")
        // Unicast between a and b is still forwarded, not flooded to o (which would accept it).
        let atO = Capture(in: "\(p)o", filter: "icmp")
        #expect(lab.ping(from: "\(p)a", to: "10.4.0.2", count: 2))
        #expect(atO.lines().isEmpty, "no flooding of a↔b after the MAC flood")
    }

    @Test func broadcastStormIsLimitedToTheConfiguredRate() throws {
        let p = Capabilities.uniquePrefix("q")
        let lab = RunningTopology(name: "\(p)sec", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let atS2 = Capture(in: "\(p)s2", filter: "ether src 02:00:00:00:1e:01 and arp", seconds: 15)
        let start = Date()
        let storm = lab.exec("\(p)s1", "\(Harness.python) -c \"from scapy.all import *; sendp([Ether(src='02:00:00:00:1e:01', dst='ff:ff:ff:ff:ff:ff')/ARP(pdst='10.9.9.9')]*400, iface='eth0', verbose=0)\"")
        let elapsed = Date().timeIntervalSince(start)
        #expect(storm.succeeded, "\(storm.stderr)")
        let received = atS2.lines().count
        // One second of burst (20) plus 20 per second of sending, with slack for timing.
        let allowed = Int(20 + 20 * (elapsed + 1))
        #expect(received >= 15 && received <= allowed, "received \(received) in \(elapsed) s; at most \(allowed) allowed")
        #expect(lab.drops(port: "\(p)s1.eth0", reason: "storm-control-broadcast") >= 400 - allowed)
    }

    @Test func l2ProtocolsCrossOnlyWithTransparency() throws {
        let p = Capabilities.uniquePrefix("q")
        let lab = RunningTopology(name: "\(p)sec", yaml: Self.lab(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let atL2 = Capture(in: "\(p)l2", filter: "ether dst 01:80:c2:00:00:00 or ether dst 01:80:c2:00:00:0e")
        let atN1 = Capture(in: "\(p)n1", filter: "not ether src 02:00:00:00:28:03 and (ether dst 01:80:c2:00:00:00 or ether dst 01:80:c2:00:00:0e)")
        lab.scapySend(from: "\(p)l1", "Ether(src='02:00:00:00:28:01', dst='01:80:c2:00:00:00')/LLC()/STP()")
        lab.scapySend(from: "\(p)l1", "Ether(src='02:00:00:00:28:01', dst='01:80:c2:00:00:0e', type=0x88cc)/Raw(b'\\\\x02\\\\x07\\\\x04\\\\x02\\\\x00\\\\x00\\\\x00\\\\x28\\\\x01\\\\x00\\\\x00')")
        lab.scapySend(from: "\(p)n1", "Ether(src='02:00:00:00:28:03', dst='01:80:c2:00:00:00')/LLC()/STP()")
        let l2 = atL2.lines(), n1 = atN1.lines()
        #expect(l2.contains { $0.contains("STP") }, "STP crosses the transparent group: \(l2)")
        #expect(l2.contains { $0.contains("0x88cc") || $0.contains("LLDP") }, "LLDP crosses the transparent group: \(l2)")
        #expect(!l2.contains { $0.contains("02:00:00:00:28:03") }, "not from the other group")
        #expect(n1.isEmpty, "a group without transparency gets none: \(n1)")
        #expect(lab.drops(port: "\(p)n1.eth0", reason: "reserved-destination") == 1)
    }
}
