/// Software GSO: cutting a TSO/USO super-frame into wire segments, for an egress that
/// cannot take it whole (a port without a virtio-net header, a VXLAN tunnel, a capture).
/// One routine for the north–south offloads and the overlay.
///
/// Built for the datapath's `writev` model: every segment is **a rewritten copy of the
/// headers + a slice of the original payload**, so the payload is never copied:
/// ```
///  frame:    | headers (H bytes) | payload p0 | p1 | p2 | ... | pk | padding |
///  segment i:  iov[0] = scratch_i (H bytes: the headers, rewritten for segment i)
///              iov[1] = frame + H + i·gso_size, min(gso_size, rest) bytes
/// ```
/// `plan(frame:header:maximumSegments:)` validates once and precomputes what every segment
/// shares; `header(ofSegment:into:)` writes segment i's headers into a caller-provided
/// scratch slot (`TransportLayout.maximumHeaderLength` bytes suffice) and says which slice
/// of the payload follows; `write(segment:into:)` produces a contiguous copy instead
/// (tunnels, captures, tests). Nothing allocates, throws or traps; a malformed or
/// unsupported frame yields an `OffloadDropReason` for the datapath to count.
///
/// What each segment gets (as Linux `tcp_gso_segment`/`__udp_gso_segment`/
/// `inet_gso_segment`/`ipv6_gso_segment` do it):
/// - IPv4: total length of the segment, ID = the frame's ID + i (the frame carries no
///   fixed-ID flag on virtio), header checksum recomputed; options are copied as they are.
/// - IPv6: payload length of the segment; extension headers copied as they are.
/// - TCP (TCPV4/TCPV6): sequence number + i·gso_size; FIN and PSH only on the last
///   segment, CWR only on the first (RFC 3168 §6.1.2: CWR marks the first new segment
///   after a window reduction; `gso_type`'s ECN bit only says the stream may carry it);
///   other flags, ACK, window, options and urgent pointer unchanged.
/// - UDP (UDP_L4, "USO"): each segment a datagram of its own, with its own length.
/// - The TCP/UDP checksum is computed from scratch (pseudo-header from the addresses and
///   the segment's L4 length, the rewritten header, the payload slice), whether the frame
///   came with NEEDS_CSUM (the usual case: the field holds a pseudo-header seed) or
///   without it (the field is ignored). A UDP checksum of 0 is sent as 0xFFFF.
/// - `gso_type` NONE: one segment, the whole payload — the frame with its L4 checksum
///   computed (for TCP/UDP the same result as `ChecksumCompletion`).
/// `hdr_len` is ignored (Linux fills it with the skb's linear length, not the headers').
public struct Segmentation {
    /// The frame being cut (borrowed: it must stay valid while segments are produced).
    public let frame: UnsafeRawBufferPointer
    /// Where its headers are.
    public let layout: TransportLayout
    /// Payload bytes per segment (`gso_size`; for GSO NONE the whole payload).
    public let segmentSize: Int
    /// Number of segments (≥ 1).
    public let segmentCount: Int
    /// The sum of the pseudo-header's addresses and protocol (the length is added per
    /// segment).
    @usableFromInline let addressSum: UInt16
    @usableFromInline let firstSequence: UInt32
    @usableFromInline let firstIPv4ID: UInt16
    @usableFromInline let tcpFlags: UInt8

    /// Bytes of headers each segment carries (Ethernet through L4) = `layout.payloadOffset`.
    @inlinable public var headerLength: Int { layout.payloadOffset }
    /// Total payload bytes over all segments.
    @inlinable public var payloadLength: Int { layout.end - layout.payloadOffset }

    /// The outcome of `plan`.
    public enum Outcome {
        /// The frame can be cut: produce `segmentCount` segments from this plan.
        case segments(Segmentation)
        /// Malformed or unsupported: drop the frame and count the reason.
        case refused(OffloadDropReason)
    }

    /// The segments one would get from `frame` (Ethernet first, no virtio-net header in
    /// front) described by `header`.
    /// - `maximumSegments`: more segments than this are refused (`tooManySegments`): the
    ///   caller's transmit list and scratch are bounded. 512 covers 64 KiB at `gso_size`
    ///   128.
    public static func plan(frame: UnsafeRawBufferPointer, header: VirtioNetHeader, maximumSegments: Int = 512) -> Outcome {
        let kind = header.gsoKind
        switch kind {
        case VirtioNetHeader.gsoNone, VirtioNetHeader.gsoTCPv4, VirtioNetHeader.gsoTCPv6, VirtioNetHeader.gsoUDPL4: break
        default: return .refused(.unsupportedGSOType)
        }
        if kind != VirtioNetHeader.gsoNone && header.gsoSize == 0 { return .refused(.zeroGSOSize) }
        let layout: TransportLayout
        switch TransportLayout.parse(frame) {
        case .layout(let l): layout = l
        case .refused(let r):
            // A GSO frame of an unknown L4 (a UDP tunnel whose skb says TCPV4) is a type mismatch.
            return .refused(r)
        }
        switch kind {
        case VirtioNetHeader.gsoTCPv4:
            guard !layout.isIPv6 && layout.transportProtocol == IPProtocol.tcp else { return .refused(.gsoTypeMismatch) }
        case VirtioNetHeader.gsoTCPv6:
            guard layout.isIPv6 && layout.transportProtocol == IPProtocol.tcp else { return .refused(.gsoTypeMismatch) }
        case VirtioNetHeader.gsoUDPL4:
            guard layout.transportProtocol == IPProtocol.udp else { return .refused(.gsoTypeMismatch) }
        default:
            break
        }
        let payload = layout.end - layout.payloadOffset
        let size = kind == VirtioNetHeader.gsoNone ? max(1, payload) : Int(header.gsoSize)
        let count = payload == 0 ? 1 : (payload + size - 1) / size
        guard count <= maximumSegments else { return .refused(.tooManySegments) }
        // Every segment's L4 length must fit the 16-bit length fields.
        guard layout.payloadOffset - layout.networkOffset + min(size, payload) <= 0xFFFF else { return .refused(.badIPHeader) }

        let base = frame.baseAddress!
        let l3 = layout.networkOffset, l4 = layout.transportOffset
        @inline(__always) func be16(_ o: Int) -> UInt16 { UInt16(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        @inline(__always) func be32(_ o: Int) -> UInt32 { UInt32(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        let addressSum: UInt16
        if layout.isIPv6 {
            addressSum = InternetChecksum.add(InternetChecksum.sum(base + l3 + 8, count: 32), UInt16(layout.transportProtocol))
        } else {
            addressSum = InternetChecksum.pseudoHeaderSum(ipv4Source: be32(l3 + 12), destination: be32(l3 + 16),
                                                          protocol: layout.transportProtocol, length: 0)
        }
        let isTCP = layout.transportProtocol == IPProtocol.tcp
        return .segments(Segmentation(frame: frame, layout: layout, segmentSize: size, segmentCount: count,
                                      addressSum: addressSum, firstSequence: isTCP ? be32(l4 + 4) : 0,
                                      firstIPv4ID: layout.isIPv6 ? 0 : be16(l3 + 4),
                                      tcpFlags: isTCP ? base.load(fromByteOffset: l4 + 13, as: UInt8.self) : 0))
    }

    @usableFromInline
    init(frame: UnsafeRawBufferPointer, layout: TransportLayout, segmentSize: Int, segmentCount: Int, addressSum: UInt16,
         firstSequence: UInt32, firstIPv4ID: UInt16, tcpFlags: UInt8) {
        self.frame = frame; self.layout = layout; self.segmentSize = segmentSize; self.segmentCount = segmentCount
        self.addressSum = addressSum; self.firstSequence = firstSequence; self.firstIPv4ID = firstIPv4ID; self.tcpFlags = tcpFlags
    }

    /// One segment: `headerLength` bytes of rewritten headers (in the caller's scratch),
    /// followed on the wire by `payloadLength` bytes of the frame from `payloadOffset`.
    public struct Segment: Equatable, Sendable {
        /// Bytes of headers written to the scratch slot.
        public var headerLength: Int
        /// Offset of the payload slice in the original frame.
        public var payloadOffset: Int
        /// Bytes of payload.
        public var payloadLength: Int
        /// The ones' complement sum of the payload slice (network order), so an
        /// encapsulation that checksums the whole segment (VXLAN's UDP over IPv6) does not
        /// read the payload twice: `add(sum(headers), payloadSum)`.
        public var payloadSum: UInt16
        /// Bytes of the segment on the wire.
        @inlinable public var length: Int { headerLength + payloadLength }
    }

    // TCP flag bits (RFC 9293 §3.1, RFC 3168 §6.1).
    @usableFromInline static let tcpFIN: UInt8 = 0x01
    @usableFromInline static let tcpPSH: UInt8 = 0x08
    @usableFromInline static let tcpCWR: UInt8 = 0x80

    /// Writes the headers of segment `index` (0 ..< `segmentCount`) into `scratch` (at least
    /// `headerLength` bytes) and returns where its payload is. An index past the last
    /// segment (a caller's bug) yields a segment with no payload, not a trap.
    public func header(ofSegment index: Int, into scratch: UnsafeMutableRawPointer) -> Segment {
        let base = frame.baseAddress!
        let l3 = layout.networkOffset, l4 = layout.transportOffset, h = layout.payloadOffset
        let start = min(layout.end, h + max(0, index) * segmentSize)
        let length = min(segmentSize, layout.end - start)
        scratch.copyMemory(from: base, byteCount: h)
        let l4Length = h - l4 + length
        if layout.isIPv6 {
            scratch.storeBytes(of: UInt16(truncatingIfNeeded: h - l3 - 40 + length).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
        } else {
            let ihl = Int(base.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) * 4
            scratch.storeBytes(of: UInt16(truncatingIfNeeded: h - l3 + length).bigEndian, toByteOffset: l3 + 2, as: UInt16.self)
            scratch.storeBytes(of: (firstIPv4ID &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
            scratch.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
            let c = ~InternetChecksum.sum(scratch + l3, count: ihl)
            scratch.storeBytes(of: c.bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
        }
        let field: Int
        if layout.transportProtocol == IPProtocol.tcp {
            let sequence = firstSequence &+ UInt32(truncatingIfNeeded: index &* segmentSize)
            scratch.storeBytes(of: sequence.bigEndian, toByteOffset: l4 + 4, as: UInt32.self)
            var flags = tcpFlags
            if index != segmentCount - 1 { flags &= ~(Segmentation.tcpFIN | Segmentation.tcpPSH) }
            if index != 0 { flags &= ~Segmentation.tcpCWR }
            scratch.storeBytes(of: flags, toByteOffset: l4 + 13, as: UInt8.self)
            field = l4 + 16
        } else {
            scratch.storeBytes(of: UInt16(truncatingIfNeeded: l4Length).bigEndian, toByteOffset: l4 + 4, as: UInt16.self)
            field = l4 + 6
        }
        scratch.storeBytes(of: UInt16(0), toByteOffset: field, as: UInt16.self)
        let payloadSum = InternetChecksum.sum(base + start, count: length)
        var s = InternetChecksum.add(addressSum, UInt16(truncatingIfNeeded: l4Length))
        s = InternetChecksum.add(s, InternetChecksum.sum(scratch + l4, count: h - l4))
        s = InternetChecksum.add(s, payloadSum)
        var c = ~s
        if c == 0 && layout.transportProtocol == IPProtocol.udp { c = 0xFFFF }
        scratch.storeBytes(of: c.bigEndian, toByteOffset: field, as: UInt16.self)
        return Segment(headerLength: h, payloadOffset: start, payloadLength: length, payloadSum: payloadSum)
    }

    /// Writes segment `index` contiguously (headers, then a copy of its payload) into
    /// `out`. Returns the segment's length, or 0 when `out` is too small for it.
    public func write(segment index: Int, into out: UnsafeMutableRawBufferPointer) -> Int {
        let h = layout.payloadOffset
        let start = min(layout.end, h + max(0, index) * segmentSize)
        let length = min(segmentSize, layout.end - start)
        guard let dst = out.baseAddress, out.count >= h + length else { return 0 }
        let s = header(ofSegment: index, into: dst)
        (dst + h).copyMemory(from: frame.baseAddress! + s.payloadOffset, byteCount: s.payloadLength)
        return s.length
    }
}
