import Foundation
import Glibc
import Model
import Testing
import TestSupport
@testable import Observability

/// The flow table and exporter against Debian's nfcapd/nfdump (1.7) and tshark's IPFIX
/// dissector: real collectors decode what we send.
@Suite(.serialized) struct IPFIXCollectorTests {
    static let a = MACAddress("02:00:00:00:0a:01")!, b = MACAddress("02:00:00:00:0a:02")!
    static var hasNfdump: Bool { commandExists("nfcapd") && commandExists("nfdump") }

    /// nfcapd on a loopback port in a temp dir; `finish()` stops it (SIGTERM flushes the file)
    /// and returns `nfdump -o json` records.
    final class Collector {
        let dir: String
        let port: UInt16
        let process: BackgroundProcess

        init?(extra: String = "") {
            dir = temporaryDirectory("nfcapd")
            port = freePort()
            guard let p = BackgroundProcess("nfcapd -w '\(dir)' -b 127.0.0.1 -p \(port) -t 60 \(extra)", log: dir + ".log") else { return nil }
            process = p
            guard p.waitForOutput("Startup nfcapd") else { return nil }
        }

        func finish() -> [[String: Any]] {
            usleep(300_000)   // datagrams in flight on loopback
            process.stop(SIGTERM)
            let r = sh("nfdump -R '\(dir)' -o json -q 2>&1")
            let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let json = text.hasPrefix("[") ? text : "[" + text + "]"
            return (try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]) ?? []
        }

        deinit {
            try? FileManager.default.removeItem(atPath: dir)
            unlink(dir + ".log")
        }
    }

    /// 20 echo requests a→b and 20 replies b→a in VLAN 10, as the datapath would account them.
    static func pingExchange(into table: FlowTable, start: UInt64, ingressA: UInt32, ingressB: UInt32) {
        for i in 0..<20 {
            let req = Packets.ipv4Frame(dst: b, src: a, from: "10.0.10.1", to: "10.0.10.2", proto: 1,
                                        l4: Packets.icmpEcho(request: true, id: 0x4242, sequence: UInt16(i + 1)))
            let rep = Packets.ipv4Frame(dst: a, src: b, from: "10.0.10.2", to: "10.0.10.1", proto: 1,
                                        l4: Packets.icmpEcho(request: false, id: 0x4242, sequence: UInt16(i + 1)))
            let t = start + UInt64(i) * 1000
            req.withUnsafeBytes { table.account(frame: $0, ingress: ingressA, egress: ingressB, vlan: VLANID(10), length: req.count, now: t) }
            rep.withUnsafeBytes { table.account(frame: $0, ingress: ingressB, egress: ingressA, vlan: VLANID(10), length: rep.count, now: t + 1) }
        }
    }

    static func number(_ v: Any?) -> UInt64? { (v as? NSNumber)?.uint64Value }

    @Test func twentyPingsShowUpInNfdumpWithCountsAddressesMACsVLANAndInterfaces() throws {
        guard Self.hasNfdump else { try Test.cancel("skip: nfcapd/nfdump not installed (Scripts/setup.sh installs nfdump)") }
        let collector = try #require(Collector())
        var registry = InterfaceRegistry()
        let web1 = try registry.id(for: "sw0/web1.eth0"), web2 = try registry.id(for: "sw0/web2.eth0")
        let table = FlowTable(capacity: 1024)
        let start = UInt64(Date().timeIntervalSince1970 * 1000) - 30_000
        Self.pingExchange(into: table, start: start, ingressA: web1, ingressB: web2)
        // One ARP broadcast, flooded: an L2 flow with egress 0.
        let arp = FrameBuilder(dst: .broadcast, src: Self.a).type(EtherType.arp).payload(28).bytes
        arp.withUnsafeBytes { table.account(frame: $0, ingress: web1, egress: 0, vlan: VLANID(10), length: arp.count, now: start) }

        var records: [FlowRecord] = []
        table.expire(now: start + 19_001 + 15_000, idleTimeout: 15_000, activeTimeout: 60_000, into: &records)
        #expect(records.count == 3)
        let exporter = try IPFIXExporter(collector: SocketEndpoint(host: "127.0.0.1", port: collector.port), observationDomain: 5)
        exporter.export(records, interfaces: registry.mapping, samplingInterval: 1, now: start + 40_000)
        #expect(exporter.counters.sendFailures == 0 && exporter.counters.recordsSent == 3)

        let flows = collector.finish()
        let ip = flows.filter { ($0["proto"] as? NSNumber)?.intValue == 1 }
        #expect(ip.count == 2, "nfdump flows: \(flows)")
        let request = try #require(ip.first { $0["src4_addr"] as? String == "10.0.10.1" })
        let reply = try #require(ip.first { $0["src4_addr"] as? String == "10.0.10.2" })
        #expect(Self.number(request["in_packets"]) == 20 && Self.number(reply["in_packets"]) == 20)
        #expect(Self.number(request["in_bytes"]) == 20 * 98 && Self.number(reply["in_bytes"]) == 20 * 98)
        #expect(request["dst4_addr"] as? String == "10.0.10.2")
        #expect(request["in_src_mac"] as? String == "02:00:00:00:0a:01" && request["in_dst_mac"] as? String == "02:00:00:00:0a:02")
        #expect(Self.number(request["src_vlan"]) == 10)
        #expect(Self.number(request["input_snmp"]) == UInt64(web1) && Self.number(request["output_snmp"]) == UInt64(web2))
        #expect(Self.number(reply["input_snmp"]) == UInt64(web2) && Self.number(reply["output_snmp"]) == UInt64(web1))
        #expect(Self.number(request["icmp_type"]) == 8 && Self.number(reply["icmp_type"]) == 0)
        #expect(Self.number(request["icmp_code"]) == 0)
        // Times: nfdump prints first/last as local time strings; the duration is what we sent.
        let l2 = try #require(flows.first { Self.number($0["in_packets"]) == 1 }, "ARP flow missing: \(flows)")
        #expect(Self.number(l2["output_snmp"]) == 0 && l2["in_dst_mac"] as? String == "ff:ff:ff:ff:ff:ff")
    }

    @Test func samplingIsAnnouncedAndNfdumpScalesCounts() throws {
        guard Self.hasNfdump else { try Test.cancel("skip: nfcapd/nfdump not installed") }
        let collector = try #require(Collector())
        let table = FlowTable(capacity: 64)
        var sampler = FlowSampler(interval: 4)
        let start = UInt64(Date().timeIntervalSince1970 * 1000) - 10_000
        let f = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "10.0.0.1", to: "10.0.0.2", proto: 17, l4: Packets.udp(sport: 4000, dport: 5000))
        for i in 0..<40 where sampler.select() {
            f.withUnsafeBytes { table.account(frame: $0, ingress: 1, egress: 2, vlan: .untagged, length: f.count, now: start + UInt64(i)) }
        }
        #expect(table.accountedFrames == 10)
        var records: [FlowRecord] = []
        table.flush(into: &records)
        let exporter = try IPFIXExporter(collector: SocketEndpoint(host: "127.0.0.1", port: collector.port), observationDomain: 9)
        exporter.export(records, interfaces: [(1, "sw0/a.eth0"), (2, "sw0/b.eth0")], samplingInterval: sampler.interval, now: start + 5000)
        let flows = collector.finish()
        #expect(flows.count == 1, "\(flows)")
        // nfdump applies the announced 1-in-4 sampler: 10 sampled frames stand for 40.
        #expect(Self.number(flows.first?["in_packets"]) == 40)
        #expect(Self.number(flows.first?["src_port"]) == 4000 && Self.number(flows.first?["dst_port"]) == 5000)
    }

    @Test func notTrackedFlowsAreCountedAndOnlyTrackedOnesExported() throws {
        guard Self.hasNfdump else { try Test.cancel("skip: nfcapd/nfdump not installed") }
        let collector = try #require(Collector())
        let table = FlowTable(capacity: 2)
        for port in UInt16(1)...5 {
            let f = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "10.0.0.1", to: "10.0.0.2", proto: 17, l4: Packets.udp(sport: port, dport: 53))
            f.withUnsafeBytes { table.account(frame: $0, ingress: 1, egress: 2, vlan: VLANID(20), length: f.count, now: 1_700_000_000_000) }
        }
        #expect(table.notTracked == 3 && table.count == 2)
        var records: [FlowRecord] = []
        table.flush(into: &records)
        let exporter = try IPFIXExporter(collector: SocketEndpoint(host: "127.0.0.1", port: collector.port), observationDomain: 1)
        exporter.export(records, interfaces: [], samplingInterval: 1, now: 1_700_000_001_000)
        let flows = collector.finish()
        #expect(flows.count == 2)
        #expect(Set(flows.compactMap { Self.number($0["src_port"]) }) == [1, 2])
    }

    @Test func unreachableCollectorIsCountedNotFatal() throws {
        let port = freePort()   // nothing listens: the kernel answers ICMP port unreachable
        let exporter = try IPFIXExporter(collector: SocketEndpoint(host: "127.0.0.1", port: port), observationDomain: 1, templateRefresh: 0)
        let r = FlowRecord(key: FlowKey(w0: 0x0806), packets: 1, octets: 60, startMilliseconds: 1, endMilliseconds: 1, reason: .idleTimeout)
        for i in 0..<5 {
            exporter.export([r], interfaces: [(1, "p")], samplingInterval: 1, now: 1_000 + UInt64(i))
            usleep(20_000)
        }
        #expect(exporter.counters.connectionRefused >= 1)
        #expect(exporter.counters.sendFailures >= exporter.counters.connectionRefused)
        #expect(exporter.counters.lastErrno == ECONNREFUSED)
        exporter.close()
        exporter.export([r], interfaces: [], samplingInterval: 1, now: 9_999)
        #expect(exporter.counters.lastErrno == EBADF)
        #expect(throws: SocketEndpoint.Invalid.self) {
            _ = try IPFIXExporter(collector: SocketEndpoint(host: "no-such-host.invalid", port: 4739), observationDomain: 1)
        }
    }

    /// tshark's IPFIX ("cflow") dissector reads the options records: interface names and
    /// the RFC 5477 sampling elements, which nfdump does not print.
    @Test func tsharkDecodesTemplatesInterfaceNamesAndSampling() throws {
        guard commandExists("tshark") else { try Test.cancel("skip: tshark not installed") }
        var enc = IPFIXEncoder(observationDomain: 3)
        let messages = enc.announcement(interfaces: [(17, "sw0/web1.eth0"), (42, "eth1")], samplingInterval: 8, exportTime: 1_700_000_000)
            + enc.messages(for: [FlowRecord(key: FlowKey(w0: MACAddress("02:00:00:00:0a:01")!.rawValue << 16 | 0x0806,
                                                         w1: MACAddress.broadcast.rawValue << 16 | 10 << 4, w2: 17 << 32),
                                            packets: 3, octets: 180, startMilliseconds: 1_700_000_000_000, endMilliseconds: 1_700_000_000_500, reason: .idleTimeout)],
                           exportTime: 1_700_000_001)
        // Wrap the messages in a pcap of UDP datagrams to port 4739 and let tshark dissect it.
        let pcap = temporaryDirectory("ipfix") + "/ipfix.pcap"
        var file: [UInt8] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0] + [UInt8](repeating: 0, count: 8) + [0xff, 0xff, 0, 0, 1, 0, 0, 0]
        for m in messages {
            let udp = Packets.udp(sport: 40000, dport: 4739, payload: 0).prefix(4) + [UInt8((8 + m.count) >> 8), UInt8((8 + m.count) & 0xFF), 0, 0] + m
            let frame = Packets.ipv4Frame(dst: mac(2), src: mac(1), from: "127.0.0.1", to: "127.0.0.1", proto: 17, l4: Array(udp))
            let len = UInt32(frame.count)
            file += [0, 0, 0, 0, 0, 0, 0, 0]
            for _ in 0..<2 { file += [UInt8(len & 0xFF), UInt8((len >> 8) & 0xFF), 0, 0] }
            file += frame
        }
        try Data(file).write(to: URL(fileURLWithPath: pcap))
        defer { try? FileManager.default.removeItem(atPath: (pcap as NSString).deletingLastPathComponent) }
        let r = sh("tshark -r '\(pcap)' -d udp.port==4739,cflow -V 2>&1")
        #expect(r.succeeded, "\(r.stdout)")
        #expect(r.stdout.contains("sw0/web1.eth0") && r.stdout.contains("eth1"))
        #expect(r.stdout.contains("Sampling Packet Interval: 1") && r.stdout.contains("Sampling Packet Space: 7"))
        #expect(r.stdout.contains("IfName: sw0/web1.eth0") && r.stdout.contains("InputInt: 42"))
        // The L2 record: MACs, VLAN, interfaces (egress 0: flooded), EtherType, counters.
        #expect(r.stdout.contains("Ethernet Type: 2054") && r.stdout.contains("Vlan Id: 10"))
        #expect(r.stdout.contains("OutputInt: 0") && r.stdout.contains("Packets: 3") && r.stdout.contains("Octets: 180"))
        #expect(r.stdout.contains("Destination Mac Address: Broadcast"))
        #expect(!r.stdout.contains("Malformed"))
    }
}
