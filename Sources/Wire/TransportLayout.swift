import Model

/// Why the offload layer refused a frame. The datapath counts each under its name (the
/// `description`, a kebab-case counter name) and drops the frame; nothing here traps.
public enum OffloadDropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// The frame is shorter than the headers it announces (Ethernet, IP, TCP/UDP), or its
    /// IP length field points past the end of the frame.
    case truncated
    /// `csum_start + csum_offset + 2` lies beyond the frame, `csum_start` inside the
    /// Ethernet header, or `csum_offset` is odd.
    case checksumOutOfRange
    /// `gso_type` is UFO (3, IP fragmentation: gone from Linux) or not a virtio value.
    case unsupportedGSOType
    /// `gso_type` does not match the headers: TCPV4 on IPv6, TCPV6 on IPv4, a TCP type
    /// on a UDP datagram, UDP_L4 on TCP — or on a tunnel the header cannot describe.
    case gsoTypeMismatch
    /// A GSO frame with `gso_size` 0.
    case zeroGSOSize
    /// A GSO frame that is not IPv4 or IPv6 behind at most two VLAN tags.
    case notIP
    /// An IP header whose version, header length or length field is impossible.
    case badIPHeader
    /// A GSO frame that is an IP fragment (IPv4 MF or offset, an IPv6 Fragment header).
    case ipFragment
    /// An IPv6 extension header segmentation does not walk (AH, ESP, Mobility, No Next
    /// Header, a Routing header with segments left), or more than eight of them.
    case unsupportedIPv6Extension
    /// A TCP header whose data offset is below 5 words.
    case badTransportHeader
    /// Headers longer than `TransportLayout.maximumHeaderLength` bytes.
    case headerTooLong
    /// More segments than the caller can take (`maximumSegments`).
    case tooManySegments

    /// The counter name: `offload-truncated`, `gso-type-mismatch`, …
    public var description: String {
        switch self {
        case .truncated: return "offload-truncated"
        case .checksumOutOfRange: return "checksum-out-of-range"
        case .unsupportedGSOType: return "gso-type-unsupported"
        case .gsoTypeMismatch: return "gso-type-mismatch"
        case .zeroGSOSize: return "gso-size-zero"
        case .notIP: return "gso-not-ip"
        case .badIPHeader: return "ip-header-invalid"
        case .ipFragment: return "gso-ip-fragment"
        case .unsupportedIPv6Extension: return "ipv6-extension-unsupported"
        case .badTransportHeader: return "l4-header-invalid"
        case .headerTooLong: return "offload-header-too-long"
        case .tooManySegments: return "gso-too-many-segments"
        }
    }
}

/// IP protocol numbers the offload layer knows (IANA "Assigned Internet Protocol Numbers").
public enum IPProtocol {
    @inlinable public static var tcp: UInt8 { 6 }
    @inlinable public static var udp: UInt8 { 17 }
    @inlinable public static var ipv6HopByHop: UInt8 { 0 }
    @inlinable public static var ipv6Routing: UInt8 { 43 }
    @inlinable public static var ipv6Fragment: UInt8 { 44 }
    @inlinable public static var ipv6DestinationOptions: UInt8 { 60 }
}

/// Where the L3 and L4 headers of a TCP or UDP frame are: Ethernet, 0–2 VLAN tags, IPv4
/// (options allowed) or IPv6 (Hop-by-Hop, Destination Options and Routing headers with
/// no segments left are skipped), then TCP or UDP.
///
/// ```
///  0        networkOffset      transportOffset    payloadOffset            end  (frame count)
///  | Ethernet+tags | IPv4/IPv6+ext | TCP/UDP header | payload ...          | padding |
/// ```
/// `end` is where the IP datagram ends by its own length field: bytes after it (Ethernet
/// padding) belong to no segment and no checksum.
public struct TransportLayout: Equatable, Sendable {
    /// Offset of the IP header (after the MACs and tags).
    public var networkOffset: Int
    /// Offset of the TCP or UDP header.
    public var transportOffset: Int
    /// Offset of the first payload byte (after the TCP options or the 8-byte UDP header).
    public var payloadOffset: Int
    /// One past the IP datagram's last byte (by its length field).
    public var end: Int
    /// IPv6 rather than IPv4.
    public var isIPv6: Bool
    /// `IPProtocol.tcp` or `IPProtocol.udp`.
    public var transportProtocol: UInt8

    /// The most header bytes (Ethernet through L4) segmentation copies per segment: a
    /// segment header lives in a scratch slot of this size.
    @inlinable public static var maximumHeaderLength: Int { 256 }
    /// A layout with every offset given (tests; `parse` builds the real ones).
    @inlinable
    public init(networkOffset: Int, transportOffset: Int, payloadOffset: Int, end: Int, isIPv6: Bool, transportProtocol: UInt8) {
        self.networkOffset = networkOffset; self.transportOffset = transportOffset; self.payloadOffset = payloadOffset
        self.end = end; self.isIPv6 = isIPv6; self.transportProtocol = transportProtocol
    }

    /// The result of `parse`: a layout, or why there is none.
    public enum Outcome: Equatable, Sendable {
        /// A TCP or UDP frame over IPv4/IPv6: where its headers are.
        case layout(TransportLayout)
        /// Not one segmentation can handle, for this reason.
        case refused(OffloadDropReason)
    }

    /// Parses the headers of `frame` (allocates nothing, never traps). An IP fragment is
    /// refused: only the first carries the L4 header, and segmentation cannot cut one.
    public static func parse(_ frame: UnsafeRawBufferPointer) -> Outcome {
        let n = frame.count
        guard let eth = EtherTypes.network(frame) else { return .refused(.truncated) }
        let l3 = eth.offset
        @inline(__always) func u8(_ o: Int) -> UInt8 { frame[o] }
        @inline(__always) func be16(_ o: Int) -> Int { Int(frame[o]) << 8 | Int(frame[o + 1]) }

        var l4: Int, end: Int, proto: UInt8
        let v6: Bool
        switch eth.type {
        case EtherTypes.ipv4:
            v6 = false
            guard l3 + 20 <= n else { return .refused(.truncated) }
            guard u8(l3) >> 4 == 4 else { return .refused(.badIPHeader) }
            let ihl = Int(u8(l3) & 0x0F) * 4
            let total = be16(l3 + 2)
            guard ihl >= 20, total >= ihl else { return .refused(.badIPHeader) }
            guard l3 + total <= n else { return .refused(.truncated) }
            guard be16(l3 + 6) & 0x3FFF == 0 else { return .refused(.ipFragment) }
            l4 = l3 + ihl
            end = l3 + total
            proto = u8(l3 + 9)
        case EtherTypes.ipv6:
            v6 = true
            guard l3 + 40 <= n else { return .refused(.truncated) }
            guard u8(l3) >> 4 == 6 else { return .refused(.badIPHeader) }
            let payload = be16(l3 + 4)
            // 0 is a jumbogram (RFC 2675) or Linux BIG TCP: never on a virtio path.
            guard payload > 0 else { return .refused(.badIPHeader) }
            end = l3 + 40 + payload
            guard end <= n else { return .refused(.truncated) }
            proto = u8(l3 + 6)
            l4 = l3 + 40
            var skipped = 0
            walk: while true {
                switch proto {
                case IPProtocol.tcp, IPProtocol.udp:
                    break walk
                case IPProtocol.ipv6Fragment:
                    return .refused(.ipFragment)
                case IPProtocol.ipv6HopByHop, IPProtocol.ipv6DestinationOptions, IPProtocol.ipv6Routing:
                    guard skipped < 8 else { return .refused(.unsupportedIPv6Extension) }
                    guard l4 + 8 <= end else { return .refused(.truncated) }
                    // A Routing header with segments left: the pseudo-header would need the
                    // final destination from inside it (RFC 8200 §8.1). Not walked.
                    if proto == IPProtocol.ipv6Routing && u8(l4 + 3) != 0 { return .refused(.unsupportedIPv6Extension) }
                    let length = (Int(u8(l4 + 1)) + 1) * 8
                    proto = u8(l4)
                    l4 += length
                    skipped += 1
                    guard l4 <= end else { return .refused(.truncated) }
                default:
                    return .refused(.unsupportedIPv6Extension)
                }
            }
        default:
            return .refused(.notIP)
        }

        let payloadOffset: Int
        switch proto {
        case IPProtocol.tcp:
            guard l4 + 20 <= end else { return .refused(.truncated) }
            let dataOffset = Int(u8(l4 + 12) >> 4) * 4
            guard dataOffset >= 20 else { return .refused(.badTransportHeader) }
            payloadOffset = l4 + dataOffset
            guard payloadOffset <= end else { return .refused(.truncated) }
        case IPProtocol.udp:
            guard l4 + 8 <= end else { return .refused(.truncated) }
            payloadOffset = l4 + 8
        default:
            return .refused(.gsoTypeMismatch)
        }
        guard payloadOffset <= maximumHeaderLength else { return .refused(.headerTooLong) }
        return .layout(TransportLayout(networkOffset: l3, transportOffset: l4, payloadOffset: payloadOffset, end: end,
                                       isIPv6: v6, transportProtocol: proto))
    }

    /// One past the last byte of the IP datagram in `frame` by its length field, or
    /// `frame.count` when the frame is not IPv4/IPv6 or its length field cannot be
    /// trusted (too short, or pointing past the frame). Reads only the Ethernet header,
    /// tags and the IP length; used to keep Ethernet padding out of a completed checksum.
    public static func datagramEnd(_ frame: UnsafeRawBufferPointer) -> Int {
        let n = frame.count
        guard let eth = EtherTypes.network(frame) else { return n }
        let l3 = eth.offset
        switch eth.type {
        case EtherTypes.ipv4:
            guard l3 + 20 <= n, frame[l3] >> 4 == 4 else { return n }
            let total = Int(frame[l3 + 2]) << 8 | Int(frame[l3 + 3])
            return total >= 20 && l3 + total <= n ? l3 + total : n
        case EtherTypes.ipv6:
            guard l3 + 40 <= n, frame[l3] >> 4 == 6 else { return n }
            let payload = Int(frame[l3 + 4]) << 8 | Int(frame[l3 + 5])
            return payload > 0 && l3 + 40 + payload <= n ? l3 + 40 + payload : n
        default:
            return n
        }
    }
}

/// EtherTypes as inlinable literals: Model's `EtherType` constants are stored globals,
/// which code in another module reaches through a lazy-initialisation accessor call at
/// every use — measurable on the per-frame path (callgrind: ~40% of `FlowHash.of`).
@usableFromInline enum EtherTypes {
    @inlinable static var ipv4: UInt16 { 0x0800 }
    @inlinable static var ipv6: UInt16 { 0x86DD }
    /// 802.1Q, 802.1ad, and the pre-standard 0x9100 (as `EtherType.isTag`).
    @inlinable static func isTag(_ t: UInt16) -> Bool { t == 0x8100 || t == 0x88A8 || t == 0x9100 }

    /// The EtherType after at most two tags and the offset of what follows it, as
    /// `FrameHeader.parse` finds them (a third tag comes back as the EtherType); nil for a
    /// runt. Without the MAC addresses and without Model's stored constants.
    @inlinable static func network(_ frame: UnsafeRawBufferPointer) -> (type: UInt16, offset: Int)? {
        let n = frame.count
        guard n >= 14, let base = frame.baseAddress else { return nil }
        @inline(__always) func be16(_ o: Int) -> UInt16 { UInt16(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        var type = be16(12), offset = 14
        for _ in 0..<2 where isTag(type) {
            guard offset + 4 <= n else { return nil }
            type = be16(offset + 2)
            offset += 4
        }
        return (type, offset)
    }
}
