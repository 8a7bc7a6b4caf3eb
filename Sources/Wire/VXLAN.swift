import Model

/// A VTEP's underlay address, IPv4 or IPv6, as 128 bits in network order (`high` holds
/// bytes 0–7). IPv4 is kept IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so one
/// hashable value keys the fabric's VTEP table for both families.
public struct UnderlayAddress: Hashable, Sendable, CustomStringConvertible {
    /// Bytes 0–7 of the address, big-endian.
    public var high: UInt64
    /// Bytes 8–15 of the address, big-endian.
    public var low: UInt64

    /// An IPv6 address from its two halves.
    @inlinable public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    /// An IPv4 address (the value of the big-endian field: 10.0.0.1 is 0x0A00_0001).
    @inlinable public init(ipv4: UInt32) { high = 0; low = 0xFFFF_0000_0000 | UInt64(ipv4) }
    /// Reads 4 (IPv4) or 16 (IPv6) bytes at `raw`.
    @inlinable public init(loading raw: UnsafeRawPointer, ipv6: Bool) {
        if ipv6 {
            high = UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self))
            low = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        } else {
            high = 0
            low = 0xFFFF_0000_0000 | UInt64(UInt32(bigEndian: raw.loadUnaligned(as: UInt32.self)))
        }
    }

    /// IPv4 (IPv4-mapped), rather than IPv6.
    @inlinable public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }
    /// The IPv4 address (meaningful when `isIPv4`).
    @inlinable public var ipv4: UInt32 { UInt32(truncatingIfNeeded: low) }

    /// Writes the 4 (IPv4) or 16 (IPv6) bytes at `raw`.
    @inlinable public func store(to raw: UnsafeMutableRawPointer) {
        if isIPv4 {
            raw.storeBytes(of: ipv4.bigEndian, as: UInt32.self)
        } else {
            raw.storeBytes(of: high.bigEndian, as: UInt64.self)
            raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
    }

    /// Parses `10.0.0.1` or an IPv6 address in RFC 4291 §2.2 text (`fd00::1`,
    /// `::ffff:10.0.0.1`, no zone). nil for anything else. Control path.
    public init?(_ text: String) {
        if !text.contains(":") {
            guard let v4 = UnderlayAddress.parseIPv4(Substring(text)) else { return nil }
            self = UnderlayAddress(ipv4: v4)
            return
        }
        var words: [UInt16] = []
        var gap: Int? = nil
        var rest = Substring(text)
        if rest.hasPrefix("::") { gap = 0; rest = rest.dropFirst(2) }
        while !rest.isEmpty {
            let piece = rest.prefix { $0 != ":" }
            rest = rest.dropFirst(piece.count)
            if piece.contains(".") {
                guard rest.isEmpty, let v4 = UnderlayAddress.parseIPv4(piece) else { return nil }
                words.append(UInt16(v4 >> 16)); words.append(UInt16(v4 & 0xFFFF))
                break
            }
            guard (1...4).contains(piece.count), let w = UInt16(piece, radix: 16) else { return nil }
            words.append(w)
            if rest.hasPrefix("::") {
                guard gap == nil else { return nil }
                gap = words.count
                rest = rest.dropFirst(2)
            } else if rest.hasPrefix(":") {
                rest = rest.dropFirst()
                guard !rest.isEmpty else { return nil }
            }
        }
        if let g = gap {
            guard words.count < 8 else { return nil }
            words.insert(contentsOf: [UInt16](repeating: 0, count: 8 - words.count), at: g)
        }
        guard words.count == 8 else { return nil }
        self = UnderlayAddress(high: words[0..<4].reduce(0) { $0 << 16 | UInt64($1) },
                               low: words[4..<8].reduce(0) { $0 << 16 | UInt64($1) })
    }

    private static func parseIPv4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard (1...3).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }), let b = UInt8(p) else { return nil }
            v = v << 8 | UInt32(b)
        }
        return v
    }

    /// `10.0.0.1`, or the IPv6 text with the longest run of zero words compressed.
    public var description: String {
        if isIPv4 { return (0..<4).map { String(ipv4 >> UInt32(24 - 8 * $0) & 0xFF) }.joined(separator: ".") }
        let w = (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> UInt64(48 - 16 * (i % 4))) }
        var best = (start: -1, count: 0), i = 0
        while i < 8 {
            var j = i
            while j < 8 && w[j] == 0 { j += 1 }
            if j - i > best.count && j - i > 1 { best = (i, j - i) }
            i = j == i ? i + 1 : j
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(w[$0], radix: 16) }.joined(separator: ":") }
        if best.start < 0 { return hex(0..<8) }
        return hex(0..<best.start) + "::" + hex((best.start + best.count)..<8)
    }
}

/// VXLAN, RFC 7348: an Ethernet frame carried in UDP (destination port 4789) behind an
/// 8-byte header naming its 24-bit VXLAN Network Identifier.
///
/// ```
///  §5 VXLAN header:  0        1                 4                       7        8
///                    | flags  | reserved (24)   | VNI (24)              | rsvd   |
///                    | RRRRIRRR                 (I = 0x08: the VNI is valid)
/// ```
/// Decapsulation follows the RFC: the I flag must be set; the other reserved bits are
/// ignored on receipt (§5), except the VXLAN-GPE P bit (0x04, draft-ietf-nvo3-vxlan-gpe;
/// Linux and OVS drop such packets too), which says the payload may not be Ethernet. Packets are parsed in
/// place: nothing allocates, nothing traps, every refusal has a `DropReason`.
public enum VXLAN {
    /// Bytes of the VXLAN header.
    @inlinable public static var headerLength: Int { 8 }
    /// The IANA port (§5). Linux's `vxlan` device uses it by default too (`dstport 4789`).
    @inlinable public static var defaultPort: UInt16 { 4789 }
    /// The I flag: "the VNI is valid" (§5, MUST be set).
    @inlinable public static var flagI: UInt8 { 0x08 }
    /// VXLAN-GPE's P bit (next protocol present): the payload might not be Ethernet.
    @inlinable public static var flagP: UInt8 { 0x04 }
    /// The largest VNI (24 bits).
    @inlinable public static var maximumVNI: UInt32 { 0xFF_FFFF }
    /// The outer headers' bytes over IPv4 without Ethernet: IPv4 20 + UDP 8 + VXLAN 8.
    @inlinable public static var overheadIPv4: Int { 36 }
    /// Over IPv6 without Ethernet: IPv6 40 + UDP 8 + VXLAN 8.
    @inlinable public static var overheadIPv6: Int { 56 }
    /// Writes the 8-byte header for `vni` (I flag set, reserved bits zero) at `raw`.
    @inlinable
    public static func writeHeader(vni: UInt32, to raw: UnsafeMutableRawPointer) {
        raw.storeBytes(of: (UInt32(flagI) << 24).bigEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: ((vni & maximumVNI) << 8).bigEndian, toByteOffset: 4, as: UInt32.self)
    }

    /// The UDP source port for a flow: in the dynamic range 49152–65535 (RFC 7348 §5,
    /// RFC 6335), from the flow hash's well-mixed bits.
    @inlinable
    public static func sourcePort(flowHash: UInt32) -> UInt16 {
        49152 | UInt16(truncatingIfNeeded: (flowHash ^ (flowHash >> 16)) & 0x3FFF)
    }

    /// Why a received packet was not decapsulated; `description` is the counter name.
    public enum DropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        /// Shorter than its outer headers, the VXLAN header and an inner Ethernet header,
        /// or a length field pointing past the end.
        case truncated
        /// The I flag is clear: no valid VNI (§5).
        case missingIFlag
        /// VXLAN-GPE's P bit: the payload may not be an Ethernet frame.
        case nextProtocolNotEthernet
        /// The outer IP header is not IPv4/IPv6, or its lengths are impossible.
        case badIPHeader
        /// The outer IPv4 header checksum does not verify.
        case badIPChecksum
        /// An IP fragment: VTEPs never fragment (§4.3); a raw parser cannot reassemble.
        case ipFragment
        /// The outer packet is not UDP (directly after the IP header).
        case notUDP
        /// The UDP destination port is not the overlay's port.
        case wrongPort
        /// The UDP length is below 8 or beyond the IP datagram.
        case badUDPLength
        /// A non-zero UDP checksum that does not verify (a zero one is accepted over IPv6,
        /// `UDP_NO_CHECK6_RX`; over IPv4 zero means "none").
        case badUDPChecksum

        /// The counter name: `vxlan-truncated`, `vxlan-missing-i-flag`, …
        public var description: String {
            switch self {
            case .truncated: return "vxlan-truncated"
            case .missingIFlag: return "vxlan-missing-i-flag"
            case .nextProtocolNotEthernet: return "vxlan-not-ethernet"
            case .badIPHeader: return "vxlan-outer-ip-invalid"
            case .badIPChecksum: return "vxlan-outer-ip-checksum"
            case .ipFragment: return "vxlan-fragment"
            case .notUDP: return "vxlan-not-udp"
            case .wrongPort: return "vxlan-wrong-port"
            case .badUDPLength: return "vxlan-udp-length"
            case .badUDPChecksum: return "vxlan-udp-checksum"
            }
        }
    }

    /// A decapsulated packet: where its inner frame is and what it came with.
    public struct Decapsulated: Equatable, Sendable {
        /// The 24-bit VNI.
        public var vni: UInt32
        /// Offset of the inner Ethernet frame in the buffer parsed.
        public var innerOffset: Int
        /// Bytes of the inner frame (≥ 14).
        public var innerLength: Int
        /// The outer source address (a raw IP parse only; `nil` from a UDP payload).
        public var source: UnderlayAddress?
        /// The outer UDP source port (a raw IP parse only; 0 from a UDP payload).
        public var sourcePort: UInt16
    }

    /// The outcome of a decapsulation.
    public enum Outcome: Equatable, Sendable {
        /// A valid VXLAN packet: where its inner frame is.
        case frame(Decapsulated)
        /// Dropped, for this reason (the caller counts it).
        case refused(DropReason)
    }

    /// Parses a UDP payload as the kernel hands it to a UDP socket (`recvmmsg`): the VXLAN
    /// header, then the inner frame.
    public static func decapsulate(udpPayload p: UnsafeRawBufferPointer) -> Outcome {
        guard let base = p.baseAddress, p.count >= headerLength + FrameHeader.minimumLength else { return .refused(.truncated) }
        let flags = base.load(as: UInt8.self)
        guard flags & flagI != 0 else { return .refused(.missingIFlag) }
        guard flags & flagP == 0 else { return .refused(.nextProtocolNotEthernet) }
        let vni = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) >> 8
        return .frame(Decapsulated(vni: vni, innerOffset: headerLength, innerLength: p.count - headerLength, source: nil, sourcePort: 0))
    }

    /// Parses a whole IP packet (IPv4 or IPv6, no Ethernet header: a raw socket's view)
    /// addressed to UDP port `port`, then the VXLAN header. With `verifyingChecksums` the
    /// IPv4 header checksum and a non-zero UDP checksum are verified (one pass over the
    /// packet); without, only lengths and flags are checked (the kernel verified already).
    public static func decapsulate(ipPacket p: UnsafeRawBufferPointer, port: UInt16 = defaultPort,
                                   verifyingChecksums: Bool = true) -> Outcome {
        let n = p.count
        guard let base = p.baseAddress, n >= 1 else { return .refused(.truncated) }
        @inline(__always) func be16(_ o: Int) -> Int { Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        let version = base.load(as: UInt8.self) >> 4
        var l4: Int, end: Int, pseudo: UInt16
        let source: UnderlayAddress
        switch version {
        case 4:
            guard n >= 20 else { return .refused(.truncated) }
            let ihl = Int(base.load(as: UInt8.self) & 0x0F) * 4
            let total = be16(2)
            guard ihl >= 20, total >= ihl else { return .refused(.badIPHeader) }
            guard total <= n else { return .refused(.truncated) }
            if verifyingChecksums && InternetChecksum.sum(base, count: ihl) != 0xFFFF { return .refused(.badIPChecksum) }
            guard be16(6) & 0x3FFF == 0 else { return .refused(.ipFragment) }
            guard base.load(fromByteOffset: 9, as: UInt8.self) == IPProtocol.udp else { return .refused(.notUDP) }
            l4 = ihl
            end = total
            source = UnderlayAddress(loading: base + 12, ipv6: false)
            pseudo = InternetChecksum.pseudoHeaderSum(
                ipv4Source: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
                destination: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt32.self)),
                protocol: IPProtocol.udp, length: 0)
        case 6:
            guard n >= 40 else { return .refused(.truncated) }
            end = 40 + be16(4)
            guard end <= n else { return .refused(.truncated) }
            let next = base.load(fromByteOffset: 6, as: UInt8.self)
            if next == IPProtocol.ipv6Fragment { return .refused(.ipFragment) }
            guard next == IPProtocol.udp else { return .refused(.notUDP) }
            l4 = 40
            source = UnderlayAddress(loading: base + 8, ipv6: true)
            pseudo = InternetChecksum.add(InternetChecksum.sum(base + 8, count: 32), UInt16(IPProtocol.udp))
        default:
            return .refused(.badIPHeader)
        }
        guard l4 + 8 <= end else { return .refused(.truncated) }
        let udpLength = be16(l4 + 4)
        guard udpLength >= 8, l4 + udpLength <= end else { return .refused(.badUDPLength) }
        guard be16(l4 + 2) == Int(port) else { return .refused(.wrongPort) }
        let check = be16(l4 + 6)
        if verifyingChecksums && check != 0 {
            let s = InternetChecksum.add(InternetChecksum.add(pseudo, UInt16(udpLength)), InternetChecksum.sum(base + l4, count: udpLength))
            guard s == 0xFFFF else { return .refused(.badUDPChecksum) }
        }
        let payload = UnsafeRawBufferPointer(start: base + l4 + 8, count: udpLength - 8)
        switch decapsulate(udpPayload: payload) {
        case .frame(var d):
            d.innerOffset += l4 + 8
            d.source = source
            d.sourcePort = UInt16(be16(l4))
            return .frame(d)
        case .refused(let r):
            return .refused(r)
        }
    }
}

/// The outer headers of one tunnel (one remote VTEP): IPv4 or IPv6, UDP, VXLAN, and
/// optionally an Ethernet header (for an AF_PACKET underlay; a raw IP socket with
/// `IP_HDRINCL`/`IPV6_HDRINCL` takes the packet from the IP header on). Built once on the
/// control path; `write` fills in the per-packet fields.
///
/// ```
///  [Ethernet 14]? | IPv4 20 / IPv6 40 | UDP 8 | VXLAN 8 | inner frame ...
/// ```
/// - IPv4: DF set (RFC 7348 §4.3: VTEPs never fragment), TTL, TOS, the caller's ID (a
///   per-tunnel counter), header checksum (a precomputed sum plus length and ID); UDP
///   checksum 0 (§5: "SHOULD be transmitted as zero" over IPv4).
/// - IPv6: traffic class, flow label from the flow hash (RFC 6438), hop limit; the UDP
///   checksum is computed over pseudo-header, UDP, VXLAN and inner frame (RFC 8200 §8.1;
///   Linux's vxlan device drops zero-checksum IPv6 unless `udp6zerocsumrx`), or 0 when
///   `zeroChecksumOverIPv6` (Linux `UDP_NO_CHECK6_TX`, RFC 6935: cheaper, for receivers
///   known to accept it).
/// - UDP source port from the inner flow hash (`VXLAN.sourcePort`), destination `port`.
public struct VXLANEncapsulation: Equatable, Sendable {
    /// This VTEP's address (outer source).
    public let source: UnderlayAddress
    /// The remote VTEP (outer destination); the same family as `source`.
    public let destination: UnderlayAddress
    /// The outer UDP destination port.
    public let port: UInt16
    /// TTL / hop limit.
    public let ttl: UInt8
    /// IPv4 TOS / IPv6 traffic class.
    public let tos: UInt8
    /// Send IPv6 UDP checksums as 0 (`UDP_NO_CHECK6_TX`).
    public let zeroChecksumOverIPv6: Bool
    /// Outer Ethernet source address, or nil for an IP-level underlay socket.
    public let ethernetSource: MACAddress?
    /// Outer Ethernet destination (the next hop's MAC), or nil for an IP-level socket.
    public let ethernetDestination: MACAddress?
    @usableFromInline let ipv4FixedSum: UInt16

    /// Builds the fixed part of the outer headers (control path).
    /// - Precondition-free: a family mismatch between `source` and `destination` makes
    ///   the destination's family win for the header layout; validate addresses on load.
    public init(source: UnderlayAddress, destination: UnderlayAddress, port: UInt16 = VXLAN.defaultPort,
                ttl: UInt8 = 64, tos: UInt8 = 0, zeroChecksumOverIPv6: Bool = false,
                ethernet: (source: MACAddress, destination: MACAddress)? = nil) {
        self.source = source; self.destination = destination; self.port = port
        self.ttl = ttl; self.tos = tos; self.zeroChecksumOverIPv6 = zeroChecksumOverIPv6
        ethernetSource = ethernet?.source; ethernetDestination = ethernet?.destination
        let s = source.ipv4, d = destination.ipv4
        // Every IPv4 header word except total length, ID and the checksum itself.
        ipv4FixedSum = InternetChecksum.fold(UInt64(0x4500 | UInt32(tos)) + 0x4000 + (UInt64(ttl) << 8 | UInt64(IPProtocol.udp))
                                             + UInt64(s >> 16) + UInt64(s & 0xFFFF) + UInt64(d >> 16) + UInt64(d & 0xFFFF))
    }

    /// The outer header is IPv6.
    @inlinable public var isIPv6: Bool { !destination.isIPv4 }
    /// Bytes `write` puts before the inner frame.
    @inlinable public var headerLength: Int { (ethernetSource == nil ? 0 : 14) + (isIPv6 ? VXLAN.overheadIPv6 : VXLAN.overheadIPv4) }
    /// The largest inner frame the outer length fields can carry.
    @inlinable public var maximumInnerLength: Int { 0xFFFF - (isIPv6 ? 16 : VXLAN.overheadIPv4) }
    /// `write` needs the inner frame's ones' complement sum (IPv6 with checksums on).
    @inlinable public var needsInnerSum: Bool { isIPv6 && !zeroChecksumOverIPv6 }

    /// Writes the outer headers (`headerLength` bytes) for an inner frame of `innerLength`
    /// bytes into `out`.
    /// - `flowHash`: `FlowHash.of(inner frame)`: UDP source port and IPv6 flow label.
    /// - `ipv4ID`: the IPv4 identification (ignored over IPv6).
    /// - `innerSum`: `InternetChecksum.sum` of the inner frame (only read when
    ///   `needsInnerSum`; with segmentation, `add(sum(segment headers), payloadSum)`).
    /// Returns `headerLength`, or 0 (nothing written) when the inner frame is too long.
    @inlinable
    public func write(to out: UnsafeMutableRawPointer, vni: UInt32, innerLength: Int, flowHash: UInt32,
                      ipv4ID: UInt16 = 0, innerSum: UInt16 = 0) -> Int {
        guard innerLength >= 0 && innerLength <= maximumInnerLength else { return 0 }
        var o = 0
        if let src = ethernetSource, let dst = ethernetDestination {
            dst.write(to: UnsafeMutableRawBufferPointer(start: out, count: 6), at: 0)
            src.write(to: UnsafeMutableRawBufferPointer(start: out + 6, count: 6), at: 0)
            out.storeBytes(of: (isIPv6 ? EtherTypes.ipv6 : EtherTypes.ipv4).bigEndian, toByteOffset: 12, as: UInt16.self)
            o = 14
        }
        let udpLength = 16 + innerLength
        let sport = VXLAN.sourcePort(flowHash: flowHash)
        let u: Int
        if isIPv6 {
            let word0 = UInt32(6) << 28 | UInt32(tos) << 20 | (flowHash & 0xF_FFFF)
            out.storeBytes(of: word0.bigEndian, toByteOffset: o, as: UInt32.self)
            out.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: o + 4, as: UInt16.self)
            out.storeBytes(of: IPProtocol.udp, toByteOffset: o + 6, as: UInt8.self)
            out.storeBytes(of: ttl, toByteOffset: o + 7, as: UInt8.self)
            source.store(to: out + o + 8)
            destination.store(to: out + o + 24)
            u = o + 40
        } else {
            let total = UInt16(20 + udpLength)
            out.storeBytes(of: (UInt16(0x4500) | UInt16(tos)).bigEndian, toByteOffset: o, as: UInt16.self)
            out.storeBytes(of: total.bigEndian, toByteOffset: o + 2, as: UInt16.self)
            out.storeBytes(of: ipv4ID.bigEndian, toByteOffset: o + 4, as: UInt16.self)
            out.storeBytes(of: UInt16(0x4000).bigEndian, toByteOffset: o + 6, as: UInt16.self)   // DF
            out.storeBytes(of: ttl, toByteOffset: o + 8, as: UInt8.self)
            out.storeBytes(of: IPProtocol.udp, toByteOffset: o + 9, as: UInt8.self)
            let c = ~InternetChecksum.add(InternetChecksum.add(ipv4FixedSum, total), ipv4ID)
            out.storeBytes(of: c.bigEndian, toByteOffset: o + 10, as: UInt16.self)
            out.storeBytes(of: source.ipv4.bigEndian, toByteOffset: o + 12, as: UInt32.self)
            out.storeBytes(of: destination.ipv4.bigEndian, toByteOffset: o + 16, as: UInt32.self)
            u = o + 20
        }
        out.storeBytes(of: sport.bigEndian, toByteOffset: u, as: UInt16.self)
        out.storeBytes(of: port.bigEndian, toByteOffset: u + 2, as: UInt16.self)
        out.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: u + 4, as: UInt16.self)
        out.storeBytes(of: UInt16(0), toByteOffset: u + 6, as: UInt16.self)
        VXLAN.writeHeader(vni: vni, to: out + u + 8)
        if needsInnerSum {
            var s = InternetChecksum.pseudoHeaderSum(ipv6Addresses: out + o + 8, nextHeader: IPProtocol.udp, length: udpLength)
            s = InternetChecksum.add(s, InternetChecksum.sum(out + u, count: 16))
            s = InternetChecksum.add(s, innerSum)
            let c = ~s
            out.storeBytes(of: (c == 0 ? 0xFFFF : c).bigEndian, toByteOffset: u + 6, as: UInt16.self)
        }
        return u + 16
    }
}
