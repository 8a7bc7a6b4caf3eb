import Testing
@testable import Wire

// TCPCoalescer against Segmentation and the independent verifier (TestPackets.swift): a TSO
// frame cut into segments, the segments laid out as a UDP_GRO buffer lays out VXLAN
// datagrams (each behind a few bytes of other header), coalesced in place, must give back
// the original payload, valid headers, and — cut again — the very same segments.

private func payload(_ n: Int, seed: Int = 0) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: ($0 &+ seed) &* 31 &+ $0 >> 8) } }

private func tso(_ p: TestPacket, mss: Int) -> VirtioNetHeader {
    VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, gsoType: p.ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                    hdrLen: UInt16(p.headerLength), gsoSize: UInt16(mss), csumStart: UInt16(p.l4Offset), csumOffset: 16)
}

/// Segments laid out back to back, each behind `gap` bytes (a VXLAN header's worth), in a
/// buffer of `capacity` bytes; with the offset of each segment.
private struct Layout {
    var buffer: [UInt8]
    var offsets: [Int]
    var lengths: [Int]
    init(_ segments: [[UInt8]], gap: Int = 8, capacity: Int = 70_000) {
        buffer = [UInt8](repeating: 0xEE, count: capacity)
        offsets = []; lengths = []
        var o = 0
        for s in segments {
            o += gap
            offsets.append(o); lengths.append(s.count)
            buffer.replaceSubrange(o..<(o + s.count), with: s)
            o += s.count
        }
    }
}

/// Coalesces the layout's segments in order: the run's frame and header, and which appends
/// were refused.
private func coalesce(_ l: inout Layout, capacity: Int? = nil) -> (frame: [UInt8], header: VirtioNetHeader?, refused: [Int], started: Bool) {
    var header = [UInt8](repeating: 0, count: 12)
    return l.buffer.withUnsafeMutableBytes { raw in
        let base = raw.baseAddress!
        var c = TCPCoalescer()
        let first = base + l.offsets[0]
        guard c.start(first, length: l.lengths[0], capacity: capacity ?? (raw.count - l.offsets[0])) else {
            return (Array(raw[l.offsets[0]..<(l.offsets[0] + l.lengths[0])]), nil, [], false)
        }
        var refused: [Int] = []
        for i in 1..<l.offsets.count where !c.append(base + l.offsets[i], length: l.lengths[i]) { refused.append(i) }
        let out = header.withUnsafeMutableBytes { c.finish(header: $0.baseAddress!) }
        #expect(!c.isOpen)
        let frame = Array(UnsafeRawBufferPointer(start: out.frame!, count: out.length))
        return (frame, out.coalesced ? header.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) } : nil, refused, true)
    }
}

@Suite struct CoalescingTests {
    struct Shape: Sendable, CustomTestStringConvertible {
        var tags: [UInt16], ipv6: Bool
        var testDescription: String { "\(tags.count) tags \(ipv6 ? "IPv6" : "IPv4")" }
    }
    static let shapes: [Shape] = [[], [10], [100, 20]].flatMap { tags in [false, true].map { Shape(tags: tags, ipv6: $0) } }

    /// The round trip: a 20 000-byte TSO frame with timestamps cut at 1448 (14 segments, the
    /// last 1176 bytes) and coalesced back is one frame with the whole payload, the first
    /// segment's headers with the whole length, a valid IPv4 header checksum, a NEEDS_CSUM
    /// seed that completes to a valid TCP checksum, a virtio-net header describing it, and
    /// Segmentation of it gives the received segments back byte for byte.
    @Test(arguments: shapes)
    func segmentsCoalesceBackIntoTheFrame(shape: Shape) throws {
        var p = TestPacket(); p.tags = shape.tags; p.ipv6 = shape.ipv6
        p.tcpFlags = 0x10; p.tcpOptions = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]
        p.payload = payload(20_000)
        let segs = try segments(p.partialBytes, tso(p, mss: 1448)).get()
        #expect(segs.count == 14)
        var l = Layout(segs)
        let (frame, h, refused, started) = coalesce(&l)
        #expect(started && refused.isEmpty)
        let header = try #require(h)
        #expect(header.gsoKind == (p.ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4))
        #expect(header.gsoSize == 1448 && Int(header.hdrLen) == p.headerLength && header.needsCsum)
        #expect(Int(header.csumStart) == p.l4Offset && header.csumOffset == 16)
        #expect(frame.count == p.headerLength + 20_000)
        let samePayload = Array(frame[p.headerLength...]) == p.payload
        #expect(samePayload, "the payload, in order")
        // Completing the seed gives a valid segment-of-everything checksum.
        var complete = frame
        let done = complete.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: header) }
        #expect(done == nil)
        let v = verify(complete, like: p)
        #expect(v.ipChecksumOK && v.l4ChecksumOK && v.l3Length == frame.count - p.l3Offset)
        // Everything but the lengths and checksums is the first segment's.
        #expect(Array(frame[0..<p.l3Offset]) == Array(segs[0][0..<p.l3Offset]))
        #expect(v.sequence == p.sequence && v.tcpFlags == 0x10)
        if !p.ipv6 { #expect(v.ipID == Int(p.ipID)) }
        // Cut again: the same segments.
        let again = try segments(frame, header).get()
        let sameSegments = again == segs
        #expect(sameSegments)
    }

    /// PSH on the last segment stays on the super-frame (and only the last gets it back when
    /// cut again); a shorter segment closes the run; a segment after the close is refused.
    @Test func pushAndShortSegmentsCloseTheRun() throws {
        var p = TestPacket(); p.tcpFlags = 0x18; p.payload = payload(5000)
        let segs = try segments(p.partialBytes, tso(p, mss: 1400)).get()   // 1400 ×3, 800 with PSH
        var more = p; more.sequence = p.sequence &+ 5000; more.ipID = p.ipID &+ 4; more.tcpFlags = 0x10; more.payload = payload(1400, seed: 9)
        var l = Layout(segs + [more.bytes])
        let (frame, h, refused, _) = coalesce(&l)
        #expect(refused == [4], "nothing joins after the short PSH segment")
        let header = try #require(h)
        #expect(frame.count == p.headerLength + 5000 && frame[p.l4Offset + 13] == 0x18, "PSH kept on the whole")
        let sameSegments = try segments(frame, header).get() == segs
        #expect(sameSegments)
        // A segment with PSH in the middle closes the run after itself.
        var q = TestPacket(); q.tcpFlags = 0x10; q.payload = payload(1000)
        var segs2: [[UInt8]] = []
        for i in 0..<3 {
            var s = q; s.sequence = q.sequence &+ UInt32(1000 * i); s.ipID = q.ipID &+ UInt16(i)
            if i == 1 { s.tcpFlags = 0x18 }
            segs2.append(s.bytes)
        }
        var l2 = Layout(segs2)
        let r2 = coalesce(&l2)
        #expect(r2.refused == [2] && r2.frame.count == q.headerLength + 2000 && r2.frame[q.l4Offset + 13] == 0x18)
    }

    /// What never opens a run, and what never joins one: each refusal leaves the run as it
    /// was (same length, the bytes after it untouched).
    @Test func refusals() throws {
        var p = TestPacket(); p.tcpFlags = 0x10; p.payload = payload(1000)
        func segment(_ i: Int, _ change: (inout TestPacket) -> Void = { _ in }) -> [UInt8] {
            var s = p; s.sequence = p.sequence &+ UInt32(1000 * i); s.ipID = p.ipID &+ UInt16(i)
            change(&s)
            return s.bytes
        }
        // Never a run: SYN, FIN, RST, URG, CWR, no ACK, PSH (a run of one), UDP, IPv4 options, no payload.
        let starters: [(String, [UInt8])] = [
            ("SYN", segment(0) { $0.tcpFlags = 0x12 }), ("FIN", segment(0) { $0.tcpFlags = 0x11 }),
            ("RST", segment(0) { $0.tcpFlags = 0x14 }), ("URG", segment(0) { $0.tcpFlags = 0x30 }),
            ("CWR", segment(0) { $0.tcpFlags = 0x90 }), ("no ACK", segment(0) { $0.tcpFlags = 0x00 }),
            ("PSH", segment(0) { $0.tcpFlags = 0x18 }), ("UDP", segment(0) { $0.tcp = false }),
            ("IPv4 options", segment(0) { $0.ipv4Options = [1, 1, 1, 0] }), ("no payload", segment(0) { $0.payload = [] }),
            ("IPv6 extension", segment(0) { $0.ipv6 = true; $0.ipv6Extensions = [(next: 60, body: [UInt8](repeating: 0, count: 8))] }),
        ]
        for (what, s) in starters {
            var c = TCPCoalescer()
            var b = s
            let opened = b.withUnsafeMutableBytes { c.start($0.baseAddress!, length: s.count, capacity: s.count + 100_000) }
            #expect(!opened && !c.isOpen, "\(what) opens no run")
        }
        // Bad checksums, padding.
        var badTCP = segment(0); badTCP[p.headerLength + 3] ^= 0x40
        var badIP = segment(0); badIP[p.l3Offset + 8] ^= 1          // TTL changed, checksum not
        let padded = segment(0) + [0, 0, 0, 0]
        for (what, s) in [("bad TCP checksum", badTCP), ("bad IPv4 header checksum", badIP), ("padding", padded)] {
            var c = TCPCoalescer(); var b = s
            #expect(!b.withUnsafeMutableBytes { c.start($0.baseAddress!, length: s.count, capacity: 100_000) }, "\(what) opens no run")
        }
        // Never joins: each against a fresh run of segment 0.
        var corrupted = segment(1); corrupted[p.headerLength + 500] ^= 0x01
        let joiners: [(String, [UInt8])] = [
            ("a sequence gap", segment(2)), ("a repeated sequence", segment(0) { $0.ipID = p.ipID &+ 1 }),
            ("an IP ID not +1", segment(1) { $0.ipID = p.ipID &+ 5 }), ("another port", segment(1) { $0.sourcePort = 40001 }),
            ("another ACK", segment(1) { $0.acknowledgment &+= 1 }), ("another destination port", segment(1) { $0.destinationPort = 5202 }),
            ("a longer segment", segment(1) { $0.payload = payload(1200) }), ("ECE set", segment(1) { $0.tcpFlags = 0x50 }),
            ("FIN", segment(1) { $0.tcpFlags = 0x11 }), ("a corrupted payload", corrupted),
            ("other timestamps", segment(1) { $0.tcpOptions = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 2] }),
        ]
        for (what, s) in joiners {
            var l = Layout([segment(0), s])
            let before = l.buffer
            var c = TCPCoalescer()
            let (opened, joined, length) = l.buffer.withUnsafeMutableBytes { raw -> (Bool, Bool, Int) in
                let o = c.start(raw.baseAddress! + l.offsets[0], length: l.lengths[0], capacity: 60_000)
                let j = c.append(raw.baseAddress! + l.offsets[1], length: l.lengths[1])
                return (o, j, c.length)
            }
            #expect(opened && !joined && length == l.lengths[0], "\(what) does not join")
            let unchanged = l.buffer == before
            #expect(unchanged, "\(what): nothing moved")
        }
    }

    /// A run stays within its capacity and an IP length of 65535; a run of one is left as it
    /// arrived, without a virtio-net header.
    @Test func boundsAndRunsOfOne() throws {
        var p = TestPacket(); p.tcpFlags = 0x10; p.payload = payload(1460)
        let segs: [[UInt8]] = (0..<60).map { i in
            var s = p; s.sequence = p.sequence &+ UInt32(1460 * i); s.ipID = p.ipID &+ UInt16(i); s.payload = payload(1460, seed: i)
            return s.bytes
        }
        var l = Layout(segs, capacity: 200_000)
        let (frame, h, refused, _) = coalesce(&l)
        #expect(h != nil && frame.count - p.l3Offset == 40 + 44 * 1460)
        #expect(refused == Array(44..<60), "40 + 44 × 1460 bytes fit an IP length of 65535, 45 segments do not")
        var l2 = Layout(Array(segs.prefix(10)))
        let (frame2, _, refused2, _) = coalesce(&l2, capacity: segs[0].count + 3 * 1460)
        #expect(frame2.count == segs[0].count + 3 * 1460 && refused2 == Array(4..<10))
        var l3 = Layout([segs[0]])
        let one = coalesce(&l3)
        let asItCame = one.frame == segs[0]
        #expect(one.header == nil && asItCame, "a run of one is the segment as it came")
        // finish on a closed coalescer: nothing.
        var c = TCPCoalescer()
        var scratch = [UInt8](repeating: 0, count: 12)
        let none = scratch.withUnsafeMutableBytes { c.finish(header: $0.baseAddress!) }
        #expect(none.frame == nil && none.length == 0 && !none.coalesced)
    }
}
