import Model
import Testing
import TestSupport
@testable import Observability

/// Pure tests of the flow key, the bounded flow table, sampling and the IPFIX encoding.
@Suite struct FlowTableTests {
    static let a = mac(0x0A01), b = mac(0x0A02)

    func key(_ frame: [UInt8], ingress: UInt32 = 7, egress: UInt32 = 9, vlan: UInt16 = 10) -> (FlowKey?, FlowParseAnomaly?) {
        var anomaly: FlowParseAnomaly? = nil
        let k = frame.withUnsafeBytes { FlowKey.of(frame: $0, ingress: ingress, egress: egress, vlan: VLANID(vlan), anomaly: &anomaly) }
        return (k, anomaly)
    }

    @Test func icmpEchoKeyCarriesAddressesTypeAndL2Identity() throws {
        let f = Packets.ipv4Frame(dst: Self.b, src: Self.a, vlan: 10, from: "10.0.10.1", to: "10.0.10.2", proto: 1,
                                  l4: Packets.icmpEcho(request: true, id: 7, sequence: 1))
        let (k, anomaly) = key(f)
        let fk = try #require(k)
        #expect(anomaly == nil)
        #expect(fk.family == .ipv4 && fk.isICMP)
        #expect(fk.sourceMAC == Self.a && fk.destinationMAC == Self.b)
        #expect(fk.vlan == VLANID(10) && fk.etherType == EtherType.ipv4)
        #expect(fk.sourceIPv4 == Packets.ipv4("10.0.10.1") && fk.destinationIPv4 == Packets.ipv4("10.0.10.2"))
        #expect(fk.sourcePort == 0 && fk.destinationPort == 0x0800)   // echo request: type 8, code 0
        #expect(fk.ingressInterface == 7 && fk.egressInterface == 9)
    }

    @Test func udpPortsAndFragments() throws {
        let f = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "10.0.0.1", to: "10.0.0.2", proto: 17, l4: Packets.udp(sport: 5353, dport: 53))
        let fk = try #require(key(f).0)
        #expect(fk.protocolIdentifier == 17 && fk.sourcePort == 5353 && fk.destinationPort == 53 && !fk.isICMP)
        // A non-first fragment has no transport header: ports 0, not garbage.
        let frag = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "10.0.0.1", to: "10.0.0.2", proto: 17,
                                     l4: Packets.udp(sport: 5353, dport: 53), fragmentOffset: 185)
        let fk2 = try #require(key(frag).0)
        #expect(fk2.sourcePort == 0 && fk2.destinationPort == 0 && fk2.protocolIdentifier == 17)
    }

    @Test func ipv6WithHopByHopHeaderFindsTCPPorts() throws {
        let src: [UInt8] = [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [1]
        let dst: [UInt8] = [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [2]
        let tcp: [UInt8] = [0x9c, 0x40, 0x00, 0x50] + [UInt8](repeating: 0, count: 16)
        let f = Packets.ipv6Frame(dst: Self.b, src: Self.a, from: src, to: dst, proto: 6, l4: tcp, hopByHop: true)
        let (k, anomaly) = key(f)
        let fk = try #require(k)
        #expect(anomaly == nil)
        #expect(fk.family == .ipv6 && fk.protocolIdentifier == 6 && fk.sourcePort == 40000 && fk.destinationPort == 80)
        #expect(fk.sourceIPv6.0 == 0xfd00_0000_0000_0000 && fk.sourceIPv6.1 == 1 && fk.destinationIPv6.1 == 2)
    }

    @Test func nonIPIsAnL2FlowAndBrokenIPIsCountedByReason() throws {
        let arp = FrameBuilder(dst: .broadcast, src: Self.a).type(EtherType.arp).payload(28).bytes
        let (k, anomaly) = key(arp, egress: 0)
        let fk = try #require(k)
        #expect(anomaly == nil && fk.family == .l2 && fk.etherType == EtherType.arp && fk.egressInterface == 0)

        let short = FrameBuilder(dst: Self.b, src: Self.a).type(EtherType.ipv4).payload(10).bytes
        #expect(key(short).1 == .truncatedNetworkHeader)
        #expect(key(short).0?.family == .l2)
        var badVersion = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "1.1.1.1", to: "2.2.2.2", proto: 17, l4: Packets.udp(sport: 1, dport: 2))
        badVersion[14] = 0x65
        #expect(key(badVersion).1 == .badIPVersion)
        let cut = Array(Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "1.1.1.1", to: "2.2.2.2", proto: 17, l4: Packets.udp(sport: 1, dport: 2))[0..<36])
        #expect(key(cut).1 == .truncatedTransportHeader)
        #expect(key(cut).0?.family == .ipv4)
        #expect(key([1, 2, 3]).0 == nil && key([1, 2, 3]).1 == .runt)

        let table = FlowTable(capacity: 8)
        for f in [short, badVersion, cut, [1, 2, 3]] {
            f.withUnsafeBytes { table.account(frame: $0, ingress: 1, egress: 2, vlan: VLANID(10), length: f.count, now: 1) }
        }
        #expect(table.anomalies(.truncatedNetworkHeader) == 1 && table.anomalies(.badIPVersion) == 1)
        #expect(table.anomalies(.truncatedTransportHeader) == 1 && table.anomalies(.runt) == 1)
        #expect(table.accountedFrames == 3)
    }

    @Test func countsFramesAndBytesPerFlowAndExpiresOnIdle() {
        let table = FlowTable(capacity: 16)
        let req = Packets.ipv4Frame(dst: Self.b, src: Self.a, from: "10.0.0.1", to: "10.0.0.2", proto: 1, l4: Packets.icmpEcho(request: true, id: 1, sequence: 1))
        let rep = Packets.ipv4Frame(dst: Self.a, src: Self.b, from: "10.0.0.2", to: "10.0.0.1", proto: 1, l4: Packets.icmpEcho(request: false, id: 1, sequence: 1))
        for i in 0..<20 {
            req.withUnsafeBytes { table.account(frame: $0, ingress: 1, egress: 2, vlan: VLANID(10), length: req.count, now: 1000 + UInt64(i) * 100) }
            rep.withUnsafeBytes { table.account(frame: $0, ingress: 2, egress: 1, vlan: VLANID(10), length: rep.count, now: 1010 + UInt64(i) * 100) }
        }
        #expect(table.count == 2 && table.accountedFrames == 40)
        var out: [FlowRecord] = []
        table.expire(now: 3000, idleTimeout: 15_000, activeTimeout: 60_000, into: &out)
        #expect(out.isEmpty && table.count == 2)
        table.expire(now: 2910 + 15_000, idleTimeout: 15_000, activeTimeout: 60_000, into: &out)
        #expect(out.count == 2 && table.count == 0)
        let r = out.first { $0.key.sourceMAC == Self.a }
        #expect(r?.packets == 20 && r?.octets == UInt64(20 * req.count))
        #expect(r?.startMilliseconds == 1000 && r?.endMilliseconds == 2900 && r?.reason == .idleTimeout)
    }

    @Test func activeTimeoutGivesPartialRecordsAndTheFlowGoesOn() {
        let table = FlowTable(capacity: 4)
        let k = FlowKey(w0: 1, w1: 2)
        for t in 0..<10 { table.account(key: k, length: 100, now: UInt64(t) * 1000) }
        var out: [FlowRecord] = []
        table.expire(now: 9500, idleTimeout: 5000, activeTimeout: 8000, into: &out)
        #expect(out.count == 1 && out[0].packets == 10 && out[0].reason == .activeTimeout && table.count == 1)
        table.account(key: k, length: 50, now: 10_000)
        table.expire(now: 30_000, idleTimeout: 5000, activeTimeout: 8000, into: &out)
        #expect(out.count == 2 && out[1].packets == 1 && out[1].octets == 50 && out[1].startMilliseconds == 10_000)
        #expect(table.count == 0)
    }

    @Test func fullTableCountsNewFlowsAsNotTrackedButKeepsCountingKnownOnes() {
        let table = FlowTable(capacity: 3)
        for n in 0..<5 { table.account(key: FlowKey(w0: UInt64(n)), length: 64, now: 1) }
        #expect(table.count == 3 && table.notTracked == 2)
        table.account(key: FlowKey(w0: 0), length: 64, now: 2)
        #expect(table.notTracked == 2 && table.accountedFrames == 4)
        var out: [FlowRecord] = []
        table.flush(into: &out)
        #expect(out.count == 3 && table.count == 0)
        table.account(key: FlowKey(w0: 99), length: 64, now: 3)
        #expect(table.count == 1)
    }

    /// Random accounting and expiry against a dictionary model: backward-shift deletion must
    /// never lose or duplicate a flow, with a tiny table full of collisions too.
    @Test(arguments: [4, 64, 1000])
    func matchesAReferenceModel(capacity: Int) {
        var rng = SplitMix(seed: UInt64(capacity))
        let table = FlowTable(capacity: capacity, maxProbe: 1 << 20, seed: 42)
        var model: [FlowKey: (packets: UInt64, last: UInt64)] = [:]
        var now: UInt64 = 0
        for step in 0..<20_000 {
            now += 1
            let k = FlowKey(w0: rng.next() % UInt64(capacity * 2), w3: rng.next() % 3)
            if model[k] != nil || model.count < capacity {
                model[k, default: (0, 0)].packets += 1
                model[k]!.last = now
            }
            table.account(key: k, length: 1, now: now)
            if step % 500 == 499 {
                var out: [FlowRecord] = []
                table.expire(now: now, idleTimeout: 100, activeTimeout: .max, into: &out)
                let expired = model.filter { now - $0.value.last >= 100 }
                #expect(Set(out.map(\.key)) == Set(expired.keys))
                for r in out { #expect(r.packets == expired[r.key]?.packets) }
                for k in expired.keys { model[k] = nil }
                #expect(table.count == model.count)
            }
        }
        var rest: [FlowRecord] = []
        table.flush(into: &rest)
        #expect(Dictionary(uniqueKeysWithValues: rest.map { ($0.key, $0.packets) }) == model.mapValues(\.packets))
    }

    @Test func samplerSelectsEveryNthFrame() {
        var s = FlowSampler(interval: 4)
        let picks = (1...20).filter { _ in s.select() }
        #expect(picks.count == 5)
        var each = FlowSampler(interval: 1)
        #expect((0..<10).allSatisfy { _ in each.select() })
        var zero = FlowSampler(interval: 0)
        #expect(zero.interval == 1 && zero.select())
    }

    @Test func interfaceIDsSurviveRenumberingAndAvoidZeroAndCollisions() throws {
        var r = InterfaceRegistry()
        let web = try r.id(for: "sw0/web1.eth0"), db = try r.id(for: "sw0/db1.eth0")
        #expect(web != 0 && db != 0 && web != db)
        #expect(web == InterfaceRegistry.hash("sw0/web1.eth0"))
        // A "reload" that removes db and adds app: web keeps its ID, db's is forgotten.
        r.retain(only: ["sw0/web1.eth0", "sw0/app1.eth0"])
        #expect(try r.id(for: "sw0/app1.eth0") != 0)
        #expect(try r.id(for: "sw0/web1.eth0") == web)
        #expect(r.mapping.map(\.name).sorted() == ["sw0/app1.eth0", "sw0/web1.eth0"])
        // Same name in a new registry (a daemon restart): same ID.
        var fresh = InterfaceRegistry()
        #expect(try fresh.id(for: "sw0/web1.eth0") == web)
        var tiny = InterfaceRegistry(limit: 1)
        _ = try tiny.id(for: "a")
        #expect(throws: InterfaceRegistry.Failure.full(limit: 1)) { _ = try tiny.id(for: "b") }
    }

    @Test func encoderRespectsMessageSizeAndCountsSequenceNumbers() {
        var enc = IPFIXEncoder(observationDomain: 77, maxMessageSize: 512)
        let names = (0..<30).map { (id: UInt32($0 + 1), name: "sw0/guest\($0).eth0") }
        let ann = enc.announcement(interfaces: names, samplingInterval: 4, exportTime: 1_700_000_000)
        #expect(ann.count > 1)
        for m in ann {
            #expect(m.count <= 512)
            #expect(Int(UInt16(m[2]) << 8 | UInt16(m[3])) == m.count)
            #expect(m[0] == 0 && m[1] == 10)
            #expect(Array(m[12..<16]) == [0, 0, 0, 77])
        }
        #expect(enc.sequenceNumber == 31)   // 30 interface rows + 1 sampling row
        let records = (0..<25).map { FlowRecord(key: FlowKey(w0: UInt64($0) << 16 | 0x0806), packets: 1, octets: 60, startMilliseconds: 1, endMilliseconds: 2, reason: .idleTimeout) }
        let data = enc.messages(for: records, exportTime: 1_700_000_001)
        #expect(data.allSatisfy { $0.count <= 512 })
        #expect(data.map(IPFIXExporter.dataRecordCount).reduce(0, +) == 25)
        #expect(enc.sequenceNumber == 56)
        // The second data message's sequence number counts the records before it.
        let perFirst = IPFIXExporter.dataRecordCount(data[0])
        let seq2 = data[1][8..<12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(seq2 == 31 + UInt32(perFirst))
    }

    @Test func endpointsParseOrExplain() throws {
        #expect(try SocketEndpoint.parse("127.0.0.1:4739") == SocketEndpoint(host: "127.0.0.1", port: 4739))
        #expect(try SocketEndpoint.parse("[::1]:2055") == SocketEndpoint(host: "::1", port: 2055))
        #expect(try SocketEndpoint.parse("collector.example:9995").host == "collector.example")
        for bad in ["127.0.0.1", "host:0", "host:70000", ":4739", "::1:4739", "[::1]4739"] {
            #expect(throws: SocketEndpoint.Invalid.self) { _ = try SocketEndpoint.parse(bad) }
        }
    }
}

/// A small deterministic generator for the model test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
