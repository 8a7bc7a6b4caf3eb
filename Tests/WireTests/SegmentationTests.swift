import Testing
@testable import Wire

private func gso(_ p: TestPacket, mss: UInt16, needsCsum: Bool = true, ecn: Bool = false) -> VirtioNetHeader {
    let kind = p.tcp ? (p.ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4) : VirtioNetHeader.gsoUDPL4
    return VirtioNetHeader(flags: needsCsum ? VirtioNetHeader.flagNeedsCsum : 0, gsoType: kind | (ecn ? VirtioNetHeader.gsoECN : 0),
                           hdrLen: UInt16(p.headerLength), gsoSize: mss,
                           csumStart: needsCsum ? UInt16(p.l4Offset) : 0, csumOffset: needsCsum ? (p.tcp ? 16 : 6) : 0)
}

private func payload(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) } }

@Suite struct SegmentationTests {
    struct Shape: Sendable, CustomTestStringConvertible {
        var tags: [UInt16], ipv6: Bool, tcp: Bool, needsCsum: Bool
        var testDescription: String { "\(tags.count) tags \(ipv6 ? "IPv6" : "IPv4") \(tcp ? "TCP" : "UDP")\(needsCsum ? " NEEDS_CSUM" : "")" }
    }
    static let shapes: [Shape] = [[], [10], [100, 20]].flatMap { (tags: [UInt16]) in
        [false, true].flatMap { v6 in [true, false].flatMap { tcp in [true, false].map { Shape(tags: tags, ipv6: v6, tcp: tcp, needsCsum: $0) } } }
    }

    /// The matrix: 0/1/2 tags × IPv4/IPv6 × TCP/UDP × with/without NEEDS_CSUM. 5000 bytes
    /// at gso_size 1400 become 1400+1400+1400+800; every segment verifies (IP header and L4
    /// checksums, by the independent reference), carries its own lengths, sequence number
    /// or UDP length and IPv4 ID, and the payloads put together are the original.
    @Test(arguments: shapes)
    func segmentsAreValidPackets(shape: Shape) throws {
        var p = TestPacket(); p.tags = shape.tags; p.ipv6 = shape.ipv6; p.tcp = shape.tcp
        p.payload = payload(5000)
        let frame = shape.needsCsum ? p.partialBytes : p.bytes
        let segs = try segments(frame, gso(p, mss: 1400, needsCsum: shape.needsCsum)).get()
        #expect(segs.count == 4)
        var joined = [UInt8]()
        for (i, s) in segs.enumerated() {
            let v = verify(s, like: p)
            let length = i < 3 ? 1400 : 800
            #expect(v.ipChecksumOK && v.l4ChecksumOK, "segment \(i) checksums")
            #expect(s.count == p.headerLength + length)
            #expect(v.l3Length == p.headerLength - p.l3Offset + length)
            #expect(Array(s[0..<p.l3Offset]) == Array(frame[0..<p.l3Offset]), "MACs and tags unchanged")
            if p.tcp {
                #expect(v.sequence == p.sequence &+ UInt32(1400 * i))
                #expect(Array(s[(p.l4Offset + 8)..<(p.l4Offset + 12)]) == Array(frame[(p.l4Offset + 8)..<(p.l4Offset + 12)]), "ACK kept")
            } else {
                #expect(v.udpLength == 8 + length)
            }
            if !p.ipv6 { #expect(v.ipID == Int(p.ipID) + i) }
            joined += v.payload
        }
        #expect(joined == p.payload)
    }

    /// FIN and PSH only on the last segment, CWR only on the first; ECE, ACK, URG kept on
    /// all (RFC 3168 §6.1.2, Linux tcp_gso_segment). The ECN bit of gso_type is accepted.
    @Test func tcpFlagsPerSegment() throws {
        var p = TestPacket(); p.payload = payload(3000)
        p.tcpFlags = 0x80 | 0x40 | 0x20 | 0x10 | 0x08 | 0x01     // CWR ECE URG ACK PSH FIN
        let segs = try segments(p.partialBytes, gso(p, mss: 1000, ecn: true)).get()
        #expect(segs.map { verify($0, like: p).tcpFlags } == [0xF0, 0x70, 0x79])
    }

    /// The writev model: the header written into scratch followed by the frame's slice is
    /// byte for byte the contiguous segment; the payload's sum is reported.
    @Test func headerPlusSliceEqualsContiguousSegment() throws {
        var p = TestPacket(); p.tags = [7]; p.payload = payload(4000)
        let frame = p.partialBytes
        let contiguous = try segments(frame, gso(p, mss: 1448)).get()
        frame.withUnsafeBytes { raw in
            guard case .segments(let plan) = Segmentation.plan(frame: raw, header: gso(p, mss: 1448)) else { Issue.record("plan"); return }
            #expect(plan.headerLength == p.headerLength && plan.segmentCount == 3 && plan.payloadLength == 4000)
            var scratch = [UInt8](repeating: 0, count: TransportLayout.maximumHeaderLength)
            for i in 0..<plan.segmentCount {
                let s = scratch.withUnsafeMutableBytes { plan.header(ofSegment: i, into: $0.baseAddress!) }
                let slice = Array(frame[s.payloadOffset..<(s.payloadOffset + s.payloadLength)])
                #expect(Array(scratch[0..<s.headerLength]) + slice == contiguous[i])
                #expect(s.payloadSum == referenceSum(slice) || (s.payloadSum == 0xFFFF && referenceSum(slice) == 0))
                #expect(s.length == contiguous[i].count)
            }
            let past = scratch.withUnsafeMutableBytes { plan.header(ofSegment: plan.segmentCount + 5, into: $0.baseAddress!) }
            #expect(past.payloadLength == 0 && past.payloadOffset == p.headerLength + 4000, "a bad index gives an empty segment")
        }
    }

    /// Edge sizes: a payload of exactly k·gso_size, one shorter than gso_size, one byte,
    /// none; gso_type NONE gives one segment equal to the completed frame.
    @Test func segmentCounts() throws {
        var p = TestPacket(); p.payload = payload(2800)
        #expect(try segments(p.partialBytes, gso(p, mss: 1400)).get().count == 2)
        p.payload = payload(1399)
        #expect(try segments(p.partialBytes, gso(p, mss: 1400)).get() == [p.bytes])
        p.payload = payload(1)
        #expect(try segments(p.partialBytes, gso(p, mss: 1400)).get() == [p.bytes])
        p.payload = []
        let empty = try segments(p.partialBytes, gso(p, mss: 1400)).get()
        #expect(empty == [p.bytes], "a bare ACK comes out as it is, checksummed")
        p.payload = payload(3000)
        #expect(try segments(p.partialBytes, p.partialHeader).get() == [p.bytes], "GSO NONE: the completed frame")
        var u = TestPacket(); u.tcp = false; u.ipv6 = true; u.payload = payload(3000)
        #expect(try segments(u.partialBytes, u.partialHeader).get() == [u.bytes])
    }

    /// IPv4 options and TCP options travel in every segment; IPv6 Hop-by-Hop, Destination
    /// Options and a Routing header with no segments left are walked over.
    @Test func optionsAndExtensionHeaders() throws {
        var p = TestPacket(); p.payload = payload(3000)
        p.ipv4Options = [0x01, 0x01, 0x01, 0x00]                       // NOP NOP NOP EOL
        p.tcpOptions = [0x01, 0x01, 0x08, 0x0A, 0, 0, 0, 1, 0, 0, 0, 2]   // NOP NOP timestamps
        for s in try segments(p.partialBytes, gso(p, mss: 1000)).get() {
            let v = verify(s, like: p)
            #expect(v.ipChecksumOK && v.l4ChecksumOK)
            #expect(Array(s[(p.l3Offset + 20)..<(p.l3Offset + 24)]) == p.ipv4Options)
            #expect(Array(s[(p.l4Offset + 20)..<(p.l4Offset + 32)]) == p.tcpOptions)
        }
        var q = TestPacket(); q.ipv6 = true; q.tcp = false; q.tags = [5]; q.payload = payload(2500)
        q.ipv6Extensions = [(0, [0, 0, 1, 4, 0, 0, 0, 0]), (43, [0, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 16)),
                            (60, [0, 0, 1, 4, 0, 0, 0, 0])]
        let segs = try segments(q.partialBytes, gso(q, mss: 1200)).get()
        #expect(segs.count == 3)
        for s in segs { #expect(verify(s, like: q).l4ChecksumOK) }
    }

    /// Ethernet padding after the datagram belongs to no segment.
    @Test func paddingIsDropped() throws {
        var p = TestPacket(); p.tcp = false; p.payload = payload(10)
        let frame = p.partialBytes + [UInt8](repeating: 0xEE, count: 20)
        #expect(try segments(frame, gso(p, mss: 4)).get().map { $0.count } == [p.headerLength + 4, p.headerLength + 4, p.headerLength + 2])
    }

    /// Everything the layer refuses, with its reason.
    @Test func refusals() {
        var p = TestPacket(); p.payload = payload(3000)
        let frame = p.partialBytes
        func refused(_ f: [UInt8], _ h: VirtioNetHeader, max: Int = 512) -> OffloadDropReason? {
            if case .failure(let e) = segments(f, h, maximumSegments: max) { return e.reason }
            return nil
        }
        var h = gso(p, mss: 1000)
        h.gsoType = VirtioNetHeader.gsoUDP
        #expect(refused(frame, h) == .unsupportedGSOType, "UFO")
        h.gsoType = 0x42
        #expect(refused(frame, h) == .unsupportedGSOType)
        h.gsoType = VirtioNetHeader.gsoTCPv6
        #expect(refused(frame, h) == .gsoTypeMismatch, "TCPV6 on IPv4")
        h.gsoType = VirtioNetHeader.gsoUDPL4
        #expect(refused(frame, h) == .gsoTypeMismatch, "UDP_L4 on TCP")
        var u = TestPacket(); u.tcp = false; u.payload = payload(3000)
        #expect(refused(u.partialBytes, gso(p, mss: 1000)) == .gsoTypeMismatch, "TCPV4 on UDP (a tunnel's GSO)")
        var v6 = TestPacket(); v6.ipv6 = true; v6.payload = payload(3000)
        #expect(refused(v6.partialBytes, gso(p, mss: 1000)) == .gsoTypeMismatch, "TCPV4 on IPv6")
        #expect(refused(frame, gso(p, mss: 0)) == .zeroGSOSize)
        #expect(refused(frame, gso(p, mss: 1), max: 512) == .tooManySegments)
        #expect(refused(frame, gso(p, mss: 6)) == nil, "500 segments fit")

        var three = frame
        three.insert(contentsOf: [0x81, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x81, 0x00, 0x00, 0x03], at: 12)
        #expect(refused(three, gso(p, mss: 1000)) == .notIP, "three tags")
        var arp = frame; arp[12] = 0x08; arp[13] = 0x06
        #expect(refused(arp, gso(p, mss: 1000)) == .notIP)

        var fragment = frame; fragment[p.l3Offset + 6] |= 0x20   // MF
        #expect(refused(fragment, gso(p, mss: 1000)) == .ipFragment)
        var badVersion = frame; badVersion[p.l3Offset] = 0x65
        #expect(refused(badVersion, gso(p, mss: 1000)) == .badIPHeader)
        var badIHL = frame; badIHL[p.l3Offset] = 0x44
        #expect(refused(badIHL, gso(p, mss: 1000)) == .badIPHeader)
        var longTotal = frame; put16(&longTotal, p.l3Offset + 2, frame.count)
        #expect(refused(longTotal, gso(p, mss: 1000)) == .truncated)
        var badOffset = frame; badOffset[p.l4Offset + 12] = 0x40
        #expect(refused(badOffset, gso(p, mss: 1000)) == .badTransportHeader)

        var fragmented = TestPacket(); fragmented.ipv6 = true; fragmented.payload = payload(3000)
        fragmented.ipv6Extensions = [(44, [0, 0, 0, 0, 0, 0, 0, 1])]
        #expect(refused(fragmented.partialBytes, gso(fragmented, mss: 1000)) == .ipFragment)
        var routed = TestPacket(); routed.ipv6 = true; routed.payload = payload(3000)
        routed.ipv6Extensions = [(43, [0, 0, 0, 1] + [UInt8](repeating: 0, count: 20))]
        #expect(refused(routed.partialBytes, gso(routed, mss: 1000)) == .unsupportedIPv6Extension, "segments left")
        var ah = TestPacket(); ah.ipv6 = true; ah.payload = payload(3000)
        ah.ipv6Extensions = [(51, [UInt8](repeating: 0, count: 16))]
        #expect(refused(ah.partialBytes, gso(ah, mss: 1000)) == .unsupportedIPv6Extension, "AH")
        var jumbo = TestPacket(); jumbo.ipv6 = true
        var jumboFrame = jumbo.partialBytes; put16(&jumboFrame, jumbo.l3Offset + 4, 0)
        #expect(refused(jumboFrame, gso(jumbo, mss: 1000)) == .badIPHeader)
        var deep = TestPacket(); deep.ipv6 = true; deep.payload = payload(100)
        deep.ipv6Extensions = Array(repeating: (60, [UInt8](repeating: 0, count: 8)), count: 9)
        #expect(refused(deep.partialBytes, gso(deep, mss: 1000)) == .unsupportedIPv6Extension, "nine extension headers")
        var long = TestPacket(); long.ipv6 = true; long.payload = payload(100)
        long.ipv6Extensions = [(60, [UInt8](repeating: 0, count: 200))]
        #expect(refused(long.partialBytes, gso(long, mss: 1000)) == .headerTooLong)
    }

    /// Every prefix of valid frames (and of frames with garbage in the header bytes) is
    /// either refused with a reason or planned into segments that all fit in the prefix:
    /// no trap, no read past the end (run under the address sanitizer by the fuzz target).
    @Test func everyTruncationIsHandled() {
        var shapes: [TestPacket] = []
        for ipv6 in [false, true] { for tcp in [false, true] {
            var p = TestPacket(); p.ipv6 = ipv6; p.tcp = tcp; p.tags = [3]; p.payload = payload(300)
            if ipv6 { p.ipv6Extensions = [(0, [0, 0, 1, 4, 0, 0, 0, 0])] }
            shapes.append(p)
        } }
        for p in shapes {
            let frame = p.partialBytes
            for cut in 0...frame.count {
                let prefix = Array(frame[0..<cut])
                switch segments(prefix, gso(p, mss: 100)) {
                case .success(let segs):
                    #expect(cut == frame.count, "only the whole frame is valid (lengths point to its end); cut \(cut)")
                    #expect(segs.count == 3)
                case .failure(let e):
                    #expect(cut < frame.count, "whole frame refused: \(e.reason)")
                }
            }
        }
    }
}
