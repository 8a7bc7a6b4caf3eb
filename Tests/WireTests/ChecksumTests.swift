import Testing
@testable import Wire

/// Packets built and checksummed by scapy 2.5 (an independent implementation), as hex.
enum Vectors {
    /// Ether / IPv4 10.0.0.1 → 10.0.0.2 id 0x1234 DF / TCP 40000 → 5201 seq 1000 ack 2000 PA / "hello, tapestry!!"
    static let ipv4TCP = hexBytes("02000000000202000000000108004500003912344000400614890a0000010a0000029c401451000003e8000007d0501801f6a38f000068656c6c6f2c2074617065737472792121")
    /// Ether / IPv6 fd00::1 → fd00::2 / UDP 53000 → 4789 / "abcdefghijk"
    static let ipv6UDP = hexBytes("02000000000202000000000186dd6000000000131140fd000000000000000000000000000001fd000000000000000000000000000002cf0812b50013be056162636465666768696a6b")
    /// Ether / 802.1Q VID 10 / IPv4 192.168.1.1 → 192.168.1.2 id 7 / UDP 1234 → 5678 / "xyz"
    static let taggedIPv4UDP = hexBytes("0200000000020200000000018100000a08004500001f000700004011f773c0a80101c0a8010204d2162e000b6f0a78797a")
}

@Suite struct ChecksumTests {
    /// RFC 1071 §3's worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    @Test func rfc1071Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(bytes.withUnsafeBytes { InternetChecksum.sum($0) } == 0xDDF2)
        #expect(bytes.withUnsafeBytes { InternetChecksum.checksum($0) } == 0x220D)
        // Odd length: the last byte is the high byte of a zero-padded word.
        #expect([UInt8](bytes.prefix(7)).withUnsafeBytes { InternetChecksum.sum($0) } == referenceSum(Array(bytes.prefix(7))))
        #expect([UInt8]().withUnsafeBytes { InternetChecksum.sum($0) } == 0)
    }

    /// An IPv4 header whose checksum is well known (0xb861): it verifies, and recomputing
    /// the zeroed field gives it back.
    @Test func ipv4HeaderVector() {
        var h = hexBytes("450000730000400040110000c0a80001c0a800c7")
        #expect(h.withUnsafeBytes { InternetChecksum.checksum($0) } == 0xB861)
        put16(&h, 10, 0xB861)
        #expect(h.withUnsafeBytes { InternetChecksum.sum($0) } == 0xFFFF, "a header containing its checksum sums to 0xffff")
    }

    /// scapy's packets: our pseudo-header sums plus the data verify their L4 checksums,
    /// and recomputing from a zeroed field reproduces scapy's value.
    @Test(arguments: [(Vectors.ipv4TCP, 14, false, UInt8(6), 0xA38F), (Vectors.ipv6UDP, 14, true, UInt8(17), 0xBE05),
                      (Vectors.taggedIPv4UDP, 18, false, UInt8(17), 0x6F0A)])
    func realPacketChecksums(frame: [UInt8], l3: Int, ipv6: Bool, proto: UInt8, expected: Int) {
        let l4 = l3 + (ipv6 ? 40 : 20)
        let length = frame.count - l4
        let field = l4 + (proto == 6 ? 16 : 6)
        #expect(be16(frame, field) == expected, "the vector holds scapy's checksum")
        frame.withUnsafeBytes { raw in
            let pseudo = ipv6
                ? InternetChecksum.pseudoHeaderSum(ipv6Addresses: raw.baseAddress! + l3 + 8, nextHeader: proto, length: length)
                : InternetChecksum.pseudoHeaderSum(ipv4Source: be32(frame, l3 + 12), destination: be32(frame, l3 + 16), protocol: proto, length: length)
            #expect(pseudo == pseudoSum(frame, l3Offset: l3, ipv6: ipv6, proto: proto, length: length))
            let s = InternetChecksum.add(pseudo, InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: raw[l4...])))
            #expect(s == 0xFFFF, "the packet verifies")
            if !ipv6 { #expect(InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: raw[l3..<(l3 + 20)])) == 0xFFFF) }
        }
        var zeroed = frame
        put16(&zeroed, field, 0)
        let recomputed = zeroed.withUnsafeBytes { raw in
            let pseudo = pseudoSum(frame, l3Offset: l3, ipv6: ipv6, proto: proto, length: length)
            return ~InternetChecksum.add(pseudo, InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: raw[l4...])))
        }
        #expect(Int(recomputed) == expected)
    }

    /// The word-at-a-time sum equals the byte-pair reference for every length 0…300 at
    /// every alignment 0…7, and for a 64 KiB buffer.
    @Test func fastSumMatchesReference() {
        var rng = SplitMix(seed: 1071)
        let big = (0..<(65_536 + 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        big.withUnsafeBytes { raw in
            for align in 0..<8 {
                for length in 0...300 {
                    let slice = Array(big[align..<(align + length)])
                    let fast = InternetChecksum.sum(raw.baseAddress! + align, count: length)
                    if fast != referenceSum(slice) { Issue.record("length \(length) align \(align): \(fast) != \(referenceSum(slice))"); return }
                }
            }
            #expect(InternetChecksum.sum(raw.baseAddress! + 3, count: 65_536) == referenceSum(Array(big[3..<(65_536 + 3)])))
        }
        // All-ones data: the sum of 0xffff words stays 0xffff (negative zero), never 0.
        let ones = [UInt8](repeating: 0xFF, count: 1500)
        #expect(ones.withUnsafeBytes { InternetChecksum.sum($0) } == 0xFFFF)
    }

    /// Sums of even-length pieces add up to the sum of the whole (how segment headers and
    /// payload slices are combined).
    @Test func piecesCombine() {
        var rng = SplitMix(seed: 7)
        for _ in 0..<200 {
            let a = (0..<(Int(rng.next() % 40) * 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let b = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let whole = (a + b).withUnsafeBytes { InternetChecksum.sum($0) }
            let parts = InternetChecksum.add(a.withUnsafeBytes { InternetChecksum.sum($0) }, b.withUnsafeBytes { InternetChecksum.sum($0) })
            #expect(whole == parts || (whole == 0 && parts == 0xFFFF) || (whole == 0xFFFF && parts == 0))
        }
    }

    /// RFC 1624 §4's example: field 0x5555 → 0x3285 with the rest summing to 0xcd7a; eqn. 3
    /// gives 0x0000, as recomputation does (eqn. 2 of RFC 1141 would give 0xffff).
    @Test func rfc1624Example() {
        let hc = ~InternetChecksum.add(0xCD7A, 0x5555)
        #expect(hc == 0xDD2F)
        #expect(InternetChecksum.update(hc, old: UInt16(0x5555), new: UInt16(0x3285)) == 0x0000)
        #expect(~InternetChecksum.add(0xCD7A, 0x3285) == 0x0000)
    }

    /// Incremental updates of 16- and 32-bit fields keep a random IPv4 header valid and
    /// agree with recomputation (up to the two zeros of ones' complement).
    @Test func incrementalUpdateAgreesWithRecomputation() {
        var rng = SplitMix(seed: 1624)
        for _ in 0..<2000 {
            var h = (0..<20).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            put16(&h, 10, 0)
            put16(&h, 10, Int(~referenceSum(h)))
            let old16 = UInt16(be16(h, 4)), new16 = UInt16(truncatingIfNeeded: rng.next())
            let old32 = be32(h, 12), new32 = UInt32(truncatingIfNeeded: rng.next())
            var c = InternetChecksum.update(UInt16(be16(h, 10)), old: old16, new: new16)
            c = InternetChecksum.update(c, old: old32, new: new32)
            put16(&h, 4, Int(new16)); put32(&h, 12, new32)
            put16(&h, 10, Int(c))
            #expect(referenceSum(h) == 0xFFFF, "updated header verifies")
            put16(&h, 10, 0)
            let recomputed = ~referenceSum(h)
            #expect(c == recomputed || (c == 0xFFFF && recomputed == 0) || (c == 0 && recomputed == 0xFFFF))
        }
    }
}

/// A small deterministic generator (SplitMix64) for reproducible random inputs.
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
