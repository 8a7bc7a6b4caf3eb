import Model
import TestSupport
import Testing
@testable import Wire

/// Encapsulates `inner` into a fresh array (outer headers + inner), computing the inner
/// sum when the encapsulation needs it.
func encapsulated(_ inner: [UInt8], _ e: VXLANEncapsulation, vni: UInt32, id: UInt16 = 0x1234) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: e.headerLength + inner.count)
    let hash = inner.withUnsafeBytes { FlowHash.of($0) }
    let sum = e.needsInnerSum ? inner.withUnsafeBytes { InternetChecksum.sum($0) } : 0
    let n = out.withUnsafeMutableBytes { e.write(to: $0.baseAddress!, vni: vni, innerLength: inner.count, flowHash: hash, ipv4ID: id, innerSum: sum) }
    #expect(n == e.headerLength)
    out.replaceSubrange(n..<out.count, with: inner)
    return out
}

let vtep4a = UnderlayAddress("192.0.2.1")!, vtep4b = UnderlayAddress("192.0.2.2")!
let vtep6a = UnderlayAddress("2001:db8::1")!, vtep6b = UnderlayAddress("2001:db8::2")!

@Suite struct VXLANTests {
    /// §5: flags 0x08 (I), 24 reserved bits, the VNI, 8 reserved bits.
    @Test func headerLayout() {
        var raw = [UInt8](repeating: 0xEE, count: 8)
        raw.withUnsafeMutableBytes { VXLAN.writeHeader(vni: 5000, to: $0.baseAddress!) }
        #expect(raw == [0x08, 0, 0, 0, 0x00, 0x13, 0x88, 0x00])
        raw.withUnsafeMutableBytes { VXLAN.writeHeader(vni: 0xFFFF_FFFF, to: $0.baseAddress!) }
        #expect(raw == [0x08, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x00], "the VNI is 24 bits")
    }

    /// Source ports stay in 49152–65535 and spread over it.
    @Test func sourcePortRange() {
        var rng = SplitMix(seed: 7348)
        var seen = Set<UInt16>()
        for _ in 0..<20_000 {
            let port = VXLAN.sourcePort(flowHash: UInt32(truncatingIfNeeded: rng.next()))
            #expect(port >= 49152)
            seen.insert(port)
        }
        #expect(seen.count > 11_000, "20 000 random hashes hit \(seen.count) of 16 384 ports")
    }

    /// IPv4 outer headers: version/IHL, DF, TTL, TOS, the given ID, total length, a valid
    /// header checksum, UDP 4789 with length and a zero checksum (§5); with an outer
    /// Ethernet header when asked. Decapsulation gives back VNI, source, port, inner frame.
    @Test func ipv4Encapsulation() {
        let inner = TestPacket().bytes
        let e = VXLANEncapsulation(source: vtep4a, destination: vtep4b, ttl: 17, tos: 0x10)
        let pkt = encapsulated(inner, e, vni: 0xABCDEF, id: 0x0102)
        #expect(e.headerLength == 36 && pkt.count == 36 + inner.count && !e.needsInnerSum)
        #expect(pkt[0] == 0x45 && pkt[1] == 0x10 && be16(pkt, 2) == pkt.count && be16(pkt, 4) == 0x0102)
        #expect(be16(pkt, 6) == 0x4000, "DF, no fragment offset")
        #expect(pkt[8] == 17 && pkt[9] == 17)
        #expect(referenceSum(Array(pkt[0..<20])) == 0xFFFF, "header checksum")
        #expect(Array(pkt[12..<20]) == [192, 0, 2, 1, 192, 0, 2, 2])
        let sport = be16(pkt, 20)
        #expect(sport >= 49152 && be16(pkt, 22) == 4789 && be16(pkt, 24) == 16 + inner.count && be16(pkt, 26) == 0)
        #expect(Array(pkt[28..<36]) == [0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
        let out = pkt.withUnsafeBytes { VXLAN.decapsulate(ipPacket: $0) }
        #expect(out == .frame(VXLAN.Decapsulated(vni: 0xABCDEF, innerOffset: 36, innerLength: inner.count, source: vtep4a, sourcePort: UInt16(sport))))

        let eth = VXLANEncapsulation(source: vtep4a, destination: vtep4b, ethernet: (mac(1), mac(2)))
        let framed = encapsulated(inner, eth, vni: 1)
        #expect(eth.headerLength == 50 && Array(framed[0..<14]) == mac(2).octets + mac(1).octets + [0x08, 0x00])
        #expect(Array(framed[14...]) == encapsulated(inner, VXLANEncapsulation(source: vtep4a, destination: vtep4b), vni: 1))
    }

    /// IPv6 outer headers: the flow label carries the flow hash, the UDP checksum verifies
    /// (pseudo-header, UDP, VXLAN, inner frame); `zeroChecksumOverIPv6` sends 0, which the
    /// decapsulation accepts (UDP_NO_CHECK6_RX).
    @Test func ipv6Encapsulation() {
        var p = TestPacket(); p.tags = [10]; p.payload = Array(repeating: 0x5A, count: 333)
        let inner = p.bytes
        let e = VXLANEncapsulation(source: vtep6a, destination: vtep6b, ttl: 9)
        let pkt = encapsulated(inner, e, vni: 5010)
        #expect(e.headerLength == 56 && e.needsInnerSum)
        let hash = inner.withUnsafeBytes { FlowHash.of($0) }
        #expect(be32(pkt, 0) == (6 << 28 | (hash & 0xF_FFFF)))
        #expect(be16(pkt, 4) == 16 + inner.count && pkt[6] == 17 && pkt[7] == 9)
        let udp = Array(pkt[40...])
        let pseudo = pseudoSum(pkt, l3Offset: 0, ipv6: true, proto: 17, length: udp.count)
        #expect(referenceSum([UInt8(pseudo >> 8), UInt8(pseudo & 0xFF)] + udp) == 0xFFFF, "UDP checksum over IPv6 verifies")
        #expect(be16(pkt, 46) != 0)
        let out = pkt.withUnsafeBytes { VXLAN.decapsulate(ipPacket: $0) }
        #expect(out == .frame(VXLAN.Decapsulated(vni: 5010, innerOffset: 56, innerLength: inner.count, source: vtep6a, sourcePort: UInt16(be16(pkt, 40)))))

        let zero = VXLANEncapsulation(source: vtep6a, destination: vtep6b, zeroChecksumOverIPv6: true)
        let z = encapsulated(inner, zero, vni: 5010)
        #expect(be16(z, 46) == 0 && !zero.needsInnerSum)
        if case .frame = z.withUnsafeBytes({ VXLAN.decapsulate(ipPacket: $0) }) {} else { Issue.record("zero UDP checksum over IPv6 accepted") }
    }

    /// A TSO frame segmented and each segment encapsulated over IPv6, with the inner sum
    /// assembled from the segment header's sum and the reported payload sum (no second
    /// pass over the payload): every outer UDP checksum verifies.
    @Test func segmentsEncapsulatedWithoutSecondPass() {
        var p = TestPacket(); p.payload = (0..<4000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let frame = p.partialBytes
        let e = VXLANEncapsulation(source: vtep6a, destination: vtep6b)
        frame.withUnsafeBytes { raw in
            let h = VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoTCPv4, gsoSize: 1448, csumStart: UInt16(p.l4Offset), csumOffset: 16)
            guard case .segments(let plan) = Segmentation.plan(frame: raw, header: h) else { Issue.record("plan"); return }
            var buffer = [UInt8](repeating: 0, count: 2000)
            for i in 0..<plan.segmentCount {
                let pkt: [UInt8] = buffer.withUnsafeMutableBytes { out in
                    let headers = out.baseAddress! + e.headerLength
                    let seg = plan.header(ofSegment: i, into: headers)
                    (headers + seg.headerLength).copyMemory(from: raw.baseAddress! + seg.payloadOffset, byteCount: seg.payloadLength)
                    let innerSum = InternetChecksum.add(InternetChecksum.sum(headers, count: seg.headerLength), seg.payloadSum)
                    let n = e.write(to: out.baseAddress!, vni: 7, innerLength: seg.length, flowHash: 99, innerSum: innerSum)
                    return Array(out[0..<(n + seg.length)])
                }
                let verified = pkt.withUnsafeBytes { VXLAN.decapsulate(ipPacket: $0, verifyingChecksums: true) }
                guard case .frame(let d) = verified else { Issue.record("segment \(i): \(verified)"); continue }
                #expect(verify(Array(pkt[d.innerOffset...]), like: p).l4ChecksumOK)
            }
        }
    }

    /// Every refusal of the raw parser, and of the UDP-payload parser, by name.
    @Test func decapsulationRefusals() {
        let inner = TestPacket().bytes
        let good = encapsulated(inner, VXLANEncapsulation(source: vtep4a, destination: vtep4b), vni: 42)
        func outcome(_ b: [UInt8], port: UInt16 = 4789) -> VXLAN.Outcome { b.withUnsafeBytes { VXLAN.decapsulate(ipPacket: $0, port: port) } }
        func fixIPv4(_ b: inout [UInt8]) { put16(&b, 10, 0); put16(&b, 10, Int(~referenceSum(Array(b[0..<20])))) }

        var noI = good; noI[28] = 0x00
        #expect(outcome(noI) == .refused(.missingIFlag))
        var gpe = good; gpe[28] = 0x0C
        #expect(outcome(gpe) == .refused(.nextProtocolNotEthernet))
        var reserved = good; reserved[28] = 0x88; reserved[29] = 0xFF; reserved[35] = 0xFF
        if case .frame(let d) = outcome(reserved) { #expect(d.vni == 42, "reserved bits ignored on receipt (§5)") } else { Issue.record("reserved bits") }
        #expect(outcome(good, port: 4790) == .refused(.wrongPort))
        var tcp = good; tcp[9] = 6; fixIPv4(&tcp)
        #expect(outcome(tcp) == .refused(.notUDP))
        var fragment = good; fragment[6] = 0x20; fixIPv4(&fragment)
        #expect(outcome(fragment) == .refused(.ipFragment))
        var badHeaderSum = good; badHeaderSum[10] ^= 0xFF
        #expect(outcome(badHeaderSum) == .refused(.badIPChecksum))
        var badUDPSum = good; put16(&badUDPSum, 26, 0x1234)
        #expect(outcome(badUDPSum) == .refused(.badUDPChecksum))
        var shortUDP = good; put16(&shortUDP, 24, 7)
        #expect(outcome(shortUDP) == .refused(.badUDPLength))
        var longUDP = good; put16(&longUDP, 24, good.count)
        #expect(outcome(longUDP) == .refused(.badUDPLength))
        var v5 = good; v5[0] = 0x55
        #expect(outcome(v5) == .refused(.badIPHeader))
        var runt = Array(good[0..<(36 + 13)]); put16(&runt, 2, runt.count); put16(&runt, 24, runt.count - 20); fixIPv4(&runt)
        #expect(outcome(runt) == .refused(.truncated), "inner frame shorter than an Ethernet header")
        for cut in 0..<good.count {
            if case .frame = outcome(Array(good[0..<cut])) { Issue.record("a prefix of \(cut) bytes decapsulated") }
        }
        // The UDP-socket view: the payload alone.
        let payload = Array(good[28...])
        #expect(payload.withUnsafeBytes { VXLAN.decapsulate(udpPayload: $0) }
                == .frame(VXLAN.Decapsulated(vni: 42, innerOffset: 8, innerLength: inner.count, source: nil, sourcePort: 0)))
        #expect(Array(payload[0..<21]).withUnsafeBytes { VXLAN.decapsulate(udpPayload: $0) } == .refused(.truncated))
        var v6 = encapsulated(inner, VXLANEncapsulation(source: vtep6a, destination: vtep6b), vni: 1)
        v6[6] = 44
        #expect(v6.withUnsafeBytes { VXLAN.decapsulate(ipPacket: $0) } == .refused(.ipFragment))
    }

    /// Inner frames too long for the outer length fields are not encapsulated.
    @Test func innerLengthLimit() {
        let e = VXLANEncapsulation(source: vtep4a, destination: vtep4b)
        var out = [UInt8](repeating: 0, count: 64)
        #expect(out.withUnsafeMutableBytes { e.write(to: $0.baseAddress!, vni: 1, innerLength: e.maximumInnerLength, flowHash: 0) } == 36)
        #expect(out.withUnsafeMutableBytes { e.write(to: $0.baseAddress!, vni: 1, innerLength: e.maximumInnerLength + 1, flowHash: 0) } == 0)
        #expect(out.withUnsafeMutableBytes { e.write(to: $0.baseAddress!, vni: 1, innerLength: -1, flowHash: 0) } == 0)
    }

    @Test func underlayAddressText() {
        for (text, canonical) in [("10.0.0.1", "10.0.0.1"), ("fd00::1", "fd00::1"), ("::", "::"), ("::1", "::1"),
                                  ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:DB8::", "2001:db8::"),
                                  ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("::ffff:192.0.2.1", "192.0.2.1")] {
            let a = UnderlayAddress(text)
            #expect(a?.description == canonical, "\(text)")
            #expect(a.flatMap { UnderlayAddress($0.description) } == a)
        }
        #expect(UnderlayAddress("10.0.0.1")!.isIPv4 && !UnderlayAddress("fd00::1")!.isIPv4)
        #expect(UnderlayAddress("10.0.0.1")!.ipv4 == 0x0A00_0001)
        for bad in ["", "10.0.0", "10.0.0.256", "1.2.3.4.5", "fd00:::1", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7:8:9", "1:", ":1", "10.0.0.01a"] {
            #expect(UnderlayAddress(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct FlowHashTests {
    /// One flow, one hash: payload, length, TTL, IP ID, TCP flags and sequence numbers do
    /// not change it; addresses, ports, protocol and VLAN do.
    @Test func stablePerFlowAndSensitiveToItsFields() {
        func hash(_ p: TestPacket) -> UInt32 { p.bytes.withUnsafeBytes { FlowHash.of($0) } }
        for ipv6 in [false, true] {
            var p = TestPacket(); p.ipv6 = ipv6; p.tags = [10]
            let base = hash(p)
            var q = p; q.payload = [1, 2, 3]; q.ipID = 9; q.sequence = 77; q.tcpFlags = 0x11
            #expect(hash(q) == base)
            var ttl = p.bytes; ttl[p.l3Offset + (ipv6 ? 7 : 8)] = 3
            #expect(ttl.withUnsafeBytes { FlowHash.of($0) } == base)
            var r = p; r.sourcePort += 1
            #expect(hash(r) != base)
            r = p; r.destinationPort += 1
            #expect(hash(r) != base)
            r = p; r.tcp = false
            #expect(hash(r) != base)
            r = p; r.tags = [11]
            #expect(hash(r) != base)
            var dst = p.bytes; dst[p.l3Offset + (ipv6 ? 39 : 19)] ^= 1
            #expect(dst.withUnsafeBytes { FlowHash.of($0) } != base)
        }
    }

    /// Non-first IPv4 fragments (no ports in them) of one datagram hash alike; runts and
    /// every prefix of a frame hash without trapping.
    @Test func fragmentsAndRunts() {
        var p = TestPacket(); p.payload = Array(repeating: 1, count: 200)
        var f1 = p.bytes; f1[p.l3Offset + 6] = 0x00; f1[p.l3Offset + 7] = 0x10   // offset 128
        var f2 = f1; f2[p.l4Offset] ^= 0xFF                                      // "ports" are payload there
        #expect(f1.withUnsafeBytes { FlowHash.of($0) } == f2.withUnsafeBytes { FlowHash.of($0) })
        let frame = p.bytes
        var distinct = Set<UInt32>()
        for cut in 0...frame.count { distinct.insert(Array(frame[0..<cut]).withUnsafeBytes { FlowHash.of($0) }) }
        #expect(distinct.count > 3)
    }

    /// 4096 flows differing only in the TCP source port spread evenly over VXLAN's 16 384
    /// source ports: each of 16 ranges gets 256 ± 25%.
    @Test func spreadsFlows() {
        var buckets = [Int](repeating: 0, count: 16)
        var ports = Set<UInt16>()
        for i in 0..<4096 {
            var p = TestPacket(); p.sourcePort = UInt16(32768 + i)
            let port = VXLAN.sourcePort(flowHash: p.bytes.withUnsafeBytes { FlowHash.of($0) })
            ports.insert(port)
            buckets[Int(port - 49152) >> 10] += 1
        }
        #expect(buckets.allSatisfy { (192...320).contains($0) }, "\(buckets)")
        #expect(ports.count > 3400, "\(ports.count) distinct ports for 4096 flows")
    }
}
