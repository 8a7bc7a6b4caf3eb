import Testing
@testable import Wire

@Suite struct VirtioNetHeaderTests {
    /// The 12-byte layout of `struct virtio_net_hdr_v1`, little-endian, byte by byte; the
    /// 10-byte form is its prefix and reads `num_buffers` as 0.
    @Test func layoutIsLittleEndianAndTwelveBytes() {
        let h = VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoTCPv4 | VirtioNetHeader.gsoECN, hdrLen: 0x0142,
                                gsoSize: 1448, csumStart: 34, csumOffset: 16, numBuffers: 1)
        var raw = [UInt8](repeating: 0xEE, count: 14)
        raw.withUnsafeMutableBytes { h.store(to: $0.baseAddress!) }
        #expect(raw == [0x01, 0x81, 0x42, 0x01, 0xA8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x01, 0x00, 0xEE, 0xEE])
        #expect(raw.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) } == h)

        var legacy = [UInt8](repeating: 0xEE, count: 12)
        legacy.withUnsafeMutableBytes { h.store(to: $0.baseAddress!, size: VirtioNetHeader.legacySize) }
        #expect(Array(legacy[0..<10]) == Array(raw[0..<10]) && legacy[10] == 0xEE && legacy[11] == 0xEE, "10-byte form writes 10 bytes")
        var short = h; short.numBuffers = 0
        #expect(legacy.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!, size: 10) } == short)
        #expect(VirtioNetHeader.size == 12 && VirtioNetHeader.legacySize == 10)
    }

    @Test func flagsAndKinds() {
        var h = VirtioNetHeader()
        #expect(!h.needsCsum && !h.dataValid && !h.isGSO && !h.needsOffload)
        h.flags = VirtioNetHeader.flagDataValid
        #expect(h.dataValid && !h.needsOffload, "DATA_VALID alone is a complete frame")
        h.flags = VirtioNetHeader.flagNeedsCsum
        #expect(h.needsCsum && h.needsOffload && !h.isGSO)
        h.flags = 0; h.gsoType = VirtioNetHeader.gsoUDPL4
        #expect(h.isGSO && h.needsOffload && h.gsoKind == 5 && !h.hasECN, "GSO without NEEDS_CSUM still needs offload")
        h.gsoType = VirtioNetHeader.gsoTCPv6 | VirtioNetHeader.gsoECN
        #expect(h.gsoKind == VirtioNetHeader.gsoTCPv6 && h.hasECN)
        h.gsoType = VirtioNetHeader.gsoECN
        #expect(!h.isGSO, "the ECN bit alone is not a GSO type")
    }

    /// Pushing a tag moves csum_start (NEEDS_CSUM) and a non-zero hdr_len (GSO) by +4;
    /// popping by −4; fields that do not apply stay; impossible shifts are refused intact.
    @Test func shiftForTagPushAndPop() {
        var h = VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, gsoType: VirtioNetHeader.gsoTCPv4, hdrLen: 66,
                                gsoSize: 1448, csumStart: 34, csumOffset: 16)
        var ok = h.shift(by: 4)
        #expect(ok && h.csumStart == 38 && h.hdrLen == 70 && h.csumOffset == 16 && h.gsoSize == 1448)
        ok = h.shift(by: -4)
        #expect(ok && h.csumStart == 34 && h.hdrLen == 66)

        var plain = VirtioNetHeader(flags: 0, gsoType: 0, hdrLen: 54, csumStart: 34, csumOffset: 16)
        ok = plain.shift(by: 4)
        #expect(ok && plain.csumStart == 34 && plain.hdrLen == 54, "nothing to move without NEEDS_CSUM/GSO")

        var unknownLength = VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoTCPv6, hdrLen: 0, csumStart: 54, csumOffset: 16)
        ok = unknownLength.shift(by: 4)
        #expect(ok && unknownLength.hdrLen == 0 && unknownLength.csumStart == 58, "hdr_len 0 means unknown")

        var bad = VirtioNetHeader(flags: 1, csumStart: 17, csumOffset: 16)
        let before = bad
        ok = bad.shift(by: -4)
        #expect(!ok && bad == before, "csum_start would point into the Ethernet header")
        var inside = VirtioNetHeader(flags: 1, csumStart: 11, csumOffset: 16)
        ok = inside.shift(by: 4)
        #expect(!ok && inside.csumStart == 11, "an offset inside the Ethernet header is not moved, but refused")
        var tinyHdrLen = VirtioNetHeader(flags: 0, gsoType: 1, hdrLen: 16, csumStart: 0, csumOffset: 0)
        ok = tinyHdrLen.shift(by: -4)
        #expect(!ok && tinyHdrLen.hdrLen == 16)
        var high = VirtioNetHeader(flags: 1, csumStart: 0xFFFE, csumOffset: 16)
        ok = high.shift(by: 4)
        #expect(!ok)

        var raw = [UInt8](repeating: 0, count: 12)
        raw.withUnsafeMutableBytes { VirtioNetHeader(flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16, numBuffers: 7).store(to: $0.baseAddress!) }
        #expect(raw.withUnsafeMutableBytes { VirtioNetHeader.shift($0.baseAddress!, by: 4) })
        let shifted = raw.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
        #expect(shifted.csumStart == 38 && shifted.hdrLen == 70 && shifted.numBuffers == 7)
    }
}

@Suite struct ChecksumCompletionTests {
    static let shapes: [TestPacket] = {
        var out: [TestPacket] = []
        for tags in [[], [10], [100, 20]] as [[UInt16]] {
            for ipv6 in [false, true] {
                for tcp in [true, false] {
                    var p = TestPacket(); p.tags = tags; p.ipv6 = ipv6; p.tcp = tcp
                    out.append(p)
                }
            }
        }
        return out
    }()

    /// A partial checksum (pseudo-header seed in the field, as Linux's CHECKSUM_PARTIAL
    /// leaves it) is finished exactly as a full computation: every tag count, both IP
    /// versions, TCP and UDP. The non-mutating form reports the same value.
    @Test(arguments: shapes)
    func partialChecksumIsCompleted(p: TestPacket) {
        var frame = p.partialBytes
        #expect(frame != p.bytes, "the partial frame differs from the complete one")
        let c = frame.withUnsafeBytes { ChecksumCompletion(frame: $0, header: p.partialHeader) }
        #expect(c == .store(offset: p.checksumField, value: UInt16(be16(p.bytes, p.checksumField))))
        #expect(frame.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: p.partialHeader) } == nil)
        #expect(frame == p.bytes)
        #expect(verify(frame, like: p).l4ChecksumOK)
    }

    /// Ethernet padding after the IP datagram stays out of the sum.
    @Test func paddingIsNotSummed() {
        var p = TestPacket(); p.tcp = false; p.payload = [1, 2, 3]
        var frame = p.partialBytes + [UInt8](repeating: 0xA5, count: 60 - p.bytes.count)
        #expect(frame.count == 60)
        #expect(frame.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: p.partialHeader) } == nil)
        #expect(Array(frame[0..<p.bytes.count]) == p.bytes)
    }

    /// Complete frames (no flags, DATA_VALID) are left alone, whatever their header says.
    @Test func completeAndValidatedFramesAreLeftAlone() {
        let p = TestPacket()
        for flags in [UInt8(0), VirtioNetHeader.flagDataValid] {
            var frame = p.bytes
            var h = p.partialHeader; h.flags = flags
            #expect(frame.withUnsafeBytes { ChecksumCompletion(frame: $0, header: h) } == .notNeeded)
            #expect(frame.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: h) } == nil)
            #expect(frame == p.bytes)
        }
    }

    /// Offsets outside the frame are refused, never followed.
    @Test func offsetsOutsideTheFrameAreRefused() {
        let p = TestPacket()
        let frame = p.partialBytes
        for (start, offset) in [(frame.count - 1, 0), (p.l4Offset, 0xFFFF), (0xFFFF, 0xFFFF), (4, 16), (13, 0), (frame.count - 4, 1),
                                (p.l4Offset, 7)] {
            let h = VirtioNetHeader(flags: 1, csumStart: UInt16(start), csumOffset: UInt16(offset))
            #expect(frame.withUnsafeBytes { ChecksumCompletion(frame: $0, header: h) } == .refused(.checksumOutOfRange), "\(start)+\(offset)")
        }
        // A field that ends exactly at the end of the frame is fine.
        let h = VirtioNetHeader(flags: 1, csumStart: UInt16(frame.count - 2), csumOffset: 0)
        if case .store = frame.withUnsafeBytes({ ChecksumCompletion(frame: $0, header: h) }) {} else { Issue.record("last two bytes") }
    }

    /// A UDP checksum that computes to 0 is sent as 0xFFFF (0 would mean "no checksum").
    @Test func udpZeroBecomesAllOnes() {
        var p = TestPacket(); p.tcp = false; p.payload = [0, 0, 0, 0]
        // Pick the last payload word so that the whole sum is 0xffff (checksum 0).
        var b = p.partialBytes
        let s = b.withUnsafeBytes { InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: $0[p.l4Offset...])) }
        let need = ~s   // adding `need` makes the sum 0xffff
        put16(&b, b.count - 2, Int(need))
        #expect(b.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: p.partialHeader) } == nil)
        #expect(be16(b, p.checksumField) == 0xFFFF)
        p.payload = Array(b[(b.count - 4)...])
        #expect(verify(b, like: p).l4ChecksumOK)
    }
}
