import Wire

// Test packets built byte by byte, and an independent verifier: a naive big-endian,
// byte-pair-at-a-time checksum (RFC 1071 §4.1 as written), so the fast code is never its
// own reference.

/// RFC 1071 §4.1 literally: add big-endian 16-bit words, pad an odd byte, fold carries.
func referenceSum(_ b: [UInt8]) -> UInt16 {
    var s: UInt32 = 0
    var i = 0
    while i < b.count {
        s += UInt32(b[i]) << 8 | (i + 1 < b.count ? UInt32(b[i + 1]) : 0)
        i += 2
    }
    while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
    return UInt16(s)
}

func be16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) << 8 | Int(b[o + 1]) }
func be32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
func put16(_ b: inout [UInt8], _ o: Int, _ v: Int) { b[o] = UInt8(truncatingIfNeeded: v >> 8); b[o + 1] = UInt8(truncatingIfNeeded: v) }
func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for k in 0..<4 { b[o + k] = UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * k)) } }

func hexBytes(_ s: String) -> [UInt8] {
    var out = [UInt8](); var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// A TCP or UDP packet over IPv4 or IPv6 behind 0–2 VLAN tags, with valid checksums.
struct TestPacket {
    var tags: [UInt16] = []                 // VIDs, outermost first (TPID 0x88a8 outside, 0x8100 inside when two)
    var ipv6 = false
    var tcp = true
    var payload: [UInt8] = Array(0..<100).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    var ipv4Options: [UInt8] = []           // multiple of 4
    var ipv6Extensions: [(next: UInt8, body: [UInt8])] = []   // type, bytes (multiple of 8, incl. its 2-byte head)
    var tcpFlags: UInt8 = 0x18              // PSH|ACK
    var tcpOptions: [UInt8] = []            // multiple of 4
    var sequence: UInt32 = 0x1000_0000
    var acknowledgment: UInt32 = 0xA0A0_0001
    var ipID: UInt16 = 0x4242
    var sourcePort: UInt16 = 40000
    var destinationPort: UInt16 = 5201

    var l3Offset: Int { 12 + 4 * tags.count + 2 }
    var l4Offset: Int { l3Offset + (ipv6 ? 40 + ipv6Extensions.reduce(0) { $0 + $1.body.count } : 20 + ipv4Options.count) }
    var l4HeaderLength: Int { tcp ? 20 + tcpOptions.count : 8 }
    var headerLength: Int { l4Offset + l4HeaderLength }
    var checksumField: Int { l4Offset + (tcp ? 16 : 6) }

    /// The frame with every checksum complete.
    var bytes: [UInt8] {
        var b: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]
        for (i, vid) in tags.enumerated() {
            let tpid: UInt16 = tags.count == 2 && i == 0 ? 0x88A8 : 0x8100
            b += [UInt8(tpid >> 8), UInt8(tpid & 0xFF), UInt8(vid >> 8), UInt8(vid & 0xFF)]
        }
        b += ipv6 ? [0x86, 0xDD] : [0x08, 0x00]
        let l4Length = l4HeaderLength + payload.count
        let proto: UInt8 = tcp ? 6 : 17
        if ipv6 {
            var h: [UInt8] = [0x60, 0, 0, 0, 0, 0, 0, 64]
            h += [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            h += [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
            var ext = [UInt8]()
            var nextHeaders = ipv6Extensions.map { $0.next } + [proto]
            h[6] = nextHeaders.removeFirst()
            for (i, e) in ipv6Extensions.enumerated() {
                var body = e.body
                body[0] = nextHeaders[i]
                body[1] = UInt8(body.count / 8 - 1)
                ext += body
            }
            put16(&h, 4, ext.count + l4Length)
            b += h + ext
        } else {
            var h: [UInt8] = [0x45 + UInt8(ipv4Options.count / 4), 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0,
                              10, 0, 0, 1, 10, 0, 0, 2] + ipv4Options
            put16(&h, 2, h.count + l4Length)
            put16(&h, 4, Int(ipID))
            put16(&h, 10, Int(~referenceSum(h)))
            b += h
        }
        var l4 = [UInt8](repeating: 0, count: l4HeaderLength)
        put16(&l4, 0, Int(sourcePort)); put16(&l4, 2, Int(destinationPort))
        if tcp {
            put32(&l4, 4, sequence); put32(&l4, 8, acknowledgment)
            l4[12] = UInt8((20 + tcpOptions.count) / 4) << 4
            l4[13] = tcpFlags
            put16(&l4, 14, 502)
            for (i, o) in tcpOptions.enumerated() { l4[20 + i] = o }
        } else {
            put16(&l4, 4, l4Length)
        }
        b += l4 + payload
        let c = ~l4Sum(b, l4Offset: l4Offset, length: l4Length)
        put16(&b, checksumField, Int(!tcp && c == 0 ? 0xFFFF : c))
        return b
    }

    /// The frame as a sender with checksum offload hands it over: L4 checksum field holding
    /// the pseudo-header sum (not complemented, Linux `~csum_tcpudp_magic(..., 0)`).
    var partialBytes: [UInt8] {
        var b = bytes
        put16(&b, checksumField, 0)
        let l4Length = b.count - l4Offset
        put16(&b, checksumField, Int(pseudoSum(b, l3Offset: l3Offset, ipv6: ipv6, proto: tcp ? 6 : 17, length: l4Length)))
        return b
    }

    var partialHeader: VirtioNetHeader {
        VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, csumStart: UInt16(l4Offset), csumOffset: tcp ? 16 : 6)
    }

    /// ones' complement sum over pseudo-header and the L4 bytes of `b` (field as it is).
    func l4Sum(_ b: [UInt8], l4Offset: Int, length: Int) -> UInt16 {
        let p = pseudoSum(b, l3Offset: l3Offset, ipv6: ipv6, proto: tcp ? 6 : 17, length: length)
        return referenceSum([UInt8(p >> 8), UInt8(p & 0xFF)] + Array(b[l4Offset..<(l4Offset + length)]))
    }
}

func pseudoSum(_ b: [UInt8], l3Offset: Int, ipv6: Bool, proto: UInt8, length: Int) -> UInt16 {
    var p: [UInt8]
    if ipv6 {
        p = Array(b[(l3Offset + 8)..<(l3Offset + 40)]) + [UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), 0, 0, 0, proto]
    } else {
        p = Array(b[(l3Offset + 12)..<(l3Offset + 20)]) + [0, proto, UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    }
    return referenceSum(p)
}

/// What the independent verifier finds in a frame built like `TestPacket`.
struct Verified: Equatable {
    var ipChecksumOK: Bool        // IPv4 header (true for IPv6)
    var l4ChecksumOK: Bool
    var l3Length: Int             // IPv4 total length / IPv6 40 + payload length
    var ipID: Int
    var sequence: UInt32
    var tcpFlags: UInt8
    var udpLength: Int
    var payload: [UInt8]
}

/// Verifies a frame with a known layout (`p`'s offsets) using only the reference sum.
func verify(_ b: [UInt8], like p: TestPacket) -> Verified {
    let l3 = p.l3Offset, l4 = p.l4Offset
    var ipOK = true, l3Length: Int, id = 0
    if p.ipv6 {
        l3Length = 40 + be16(b, l3 + 4)
    } else {
        ipOK = referenceSum(Array(b[l3..<(l3 + 20 + p.ipv4Options.count)])) == 0xFFFF
        l3Length = be16(b, l3 + 2)
        id = be16(b, l3 + 4)
    }
    let l4Length = l3 + l3Length - l4
    let sum = p.l4Sum(b, l4Offset: l4, length: l4Length)
    let l4OK = sum == 0xFFFF && !(p.tcp == false && be16(b, l4 + 6) == 0)
    return Verified(ipChecksumOK: ipOK, l4ChecksumOK: l4OK, l3Length: l3Length, ipID: id,
                    sequence: p.tcp ? be32(b, l4 + 4) : 0, tcpFlags: p.tcp ? b[l4 + 13] : 0,
                    udpLength: p.tcp ? 0 : be16(b, l4 + 4), payload: Array(b[p.headerLength..<(l3 + l3Length)]))
}

/// Runs `body` with the frame's bytes as a raw buffer.
func withFrame<R>(_ f: [UInt8], _ body: (UnsafeRawBufferPointer) -> R) -> R { f.withUnsafeBytes(body) }

/// All segments of `frame` under `header`, written contiguously; nil with the reason on refusal.
func segments(_ frame: [UInt8], _ header: VirtioNetHeader, maximumSegments: Int = 512) -> Result<[[UInt8]], SegFail> {
    frame.withUnsafeBytes { raw in
        switch Segmentation.plan(frame: raw, header: header, maximumSegments: maximumSegments) {
        case .refused(let r):
            return .failure(SegFail(reason: r))
        case .segments(let s):
            var out: [[UInt8]] = []
            var buffer = [UInt8](repeating: 0, count: 70_000)
            for i in 0..<s.segmentCount {
                let n = buffer.withUnsafeMutableBytes { s.write(segment: i, into: $0) }
                out.append(Array(buffer[0..<n]))
            }
            return .success(out)
        }
    }
}

struct SegFail: Error, Equatable { var reason: OffloadDropReason }
