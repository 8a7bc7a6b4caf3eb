/// Well-known EtherType values.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let rarp: UInt16 = 0x8035
    public static let ipv6: UInt16 = 0x86DD
    /// 802.1Q customer tag (C-tag).
    public static let vlan: UInt16 = 0x8100
    /// 802.1ad service tag (S-tag, QinQ).
    public static let qinq: UInt16 = 0x88A8
    /// Pre-standard QinQ TPID some switches still emit.
    public static let qinqLegacy: UInt16 = 0x9100

    /// True for every TPID that introduces a VLAN tag.
    @inlinable public static func isTag(_ t: UInt16) -> Bool { t == vlan || t == qinq || t == qinqLegacy }
}

/// One VLAN tag as found on the wire.
public struct VLANTag: Equatable, Sendable {
    /// Tag protocol identifier (0x8100, 0x88a8 or 0x9100).
    public var tpid: UInt16
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    public var tci: UInt16
    @inlinable public init(tpid: UInt16, tci: UInt16) { self.tpid = tpid; self.tci = tci }
    @inlinable public var vid: UInt16 { tci & 0x0FFF }
    @inlinable public var pcp: UInt16 { tci >> 13 }
    /// The Drop Eligible Indicator (802.1Q-2018 §6.9.3), bit 12 of the TCI.
    @inlinable public var dei: Bool { tci & 0x1000 != 0 }
    /// PCP and DEI together (the TCI's top four bits, `tci >> 12`): what a switch relays
    /// when it re-tags a frame (802.1Q §6.9.3: priority and drop eligibility travel with it).
    @inlinable public var priorityBits: UInt16 { tci >> 12 }
}

/// The Ethernet header of a frame, parsed in place from a raw buffer.
///
/// ```
///  0            6            12      14/16   16/18/20
///  +------------+------------+-------+-------+---------
///  | dst MAC    | src MAC    | TPID  | TCI   | EtherType ... (up to two tags)
///  +------------+------------+-------+-------+---------
/// ```
/// Parsing reads at most 22 bytes, allocates nothing and never traps: a buffer too short for
/// the header it announces yields `nil` (a runt).
public struct FrameHeader: Equatable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress
    /// The outermost tag, if any.
    public var outerTag: VLANTag?
    /// A second tag directly behind the outer one (double tagging), if any.
    public var innerTag: VLANTag?
    /// The EtherType after all tags parsed (may itself be a TPID for a third tag).
    public var etherType: UInt16
    /// Offset of the first byte after the parsed tags (the L3 header).
    public var payloadOffset: Int

    /// Number of tags found (0, 1 or 2).
    @inlinable public var tagCount: Int { outerTag == nil ? 0 : (innerTag == nil ? 1 : 2) }

    @inlinable
    public init(destination: MACAddress, source: MACAddress, outerTag: VLANTag?, innerTag: VLANTag?,
                etherType: UInt16, payloadOffset: Int) {
        self.destination = destination; self.source = source
        self.outerTag = outerTag; self.innerTag = innerTag
        self.etherType = etherType; self.payloadOffset = payloadOffset
    }

    /// Minimum bytes of an Ethernet header (two MACs and an EtherType).
    public static let minimumLength = 14

    /// Parses the header at the start of `frame`; `nil` when the frame is a runt.
    /// Always inlined: returned through memory, the optional header costs more to pass
    /// than to compute (it runs once per frame in `decide`).
    @inlinable @inline(__always)
    public static func parse(_ frame: UnsafeRawBufferPointer) -> FrameHeader? {
        let n = frame.count
        guard n >= 14 else { return nil }
        @inline(__always) func be16(_ o: Int) -> UInt16 { UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        // n >= 14: 8-byte loads at 0 and 6 stay inside the frame.
        let dst = MACAddress(loadingEightBytesOf: frame, at: 0)
        let src = MACAddress(loadingEightBytesOf: frame, at: 6)
        var type = be16(12)
        guard EtherType.isTag(type) else {
            return FrameHeader(destination: dst, source: src, outerTag: nil, innerTag: nil, etherType: type, payloadOffset: 14)
        }
        guard n >= 18 else { return nil }
        let outer = VLANTag(tpid: type, tci: be16(14))
        type = be16(16)
        guard EtherType.isTag(type) else {
            return FrameHeader(destination: dst, source: src, outerTag: outer, innerTag: nil, etherType: type, payloadOffset: 18)
        }
        guard n >= 22 else { return nil }
        let inner = VLANTag(tpid: type, tci: be16(18))
        return FrameHeader(destination: dst, source: src, outerTag: outer, innerTag: inner, etherType: be16(20), payloadOffset: 22)
    }
}

/// How a frame leaves a port relative to how it arrived: which bytes to drop and which tag
/// to insert after the MAC addresses. The datapath turns this into an iovec
/// (`[0,12) + tag + [12+strip, len)`) so neither a push nor a pop copies the payload.
public struct EgressRewrite: Equatable, Sendable {
    /// Bytes of the ingress outer tag to leave out (0 or 4).
    public var strip: Int
    /// The tag to insert after the MACs, if any.
    public var push: VLANTag?
    @inlinable public init(strip: Int, push: VLANTag?) { self.strip = strip; self.push = push }
    /// The frame leaves exactly as it came in.
    @inlinable public var isIdentity: Bool { strip == 0 && push == nil }
}

/// Applies an `EgressRewrite` into a new byte array. For tests and tools (trace, capture);
/// the datapath uses iovecs instead.
public func rewritten(_ frame: [UInt8], _ rw: EgressRewrite) -> [UInt8] {
    guard frame.count >= 12 else { return frame }
    var out = Array(frame[0..<12])
    if let t = rw.push {
        out += [UInt8(t.tpid >> 8), UInt8(t.tpid & 0xFF), UInt8(t.tci >> 8), UInt8(t.tci & 0xFF)]
    }
    out += frame[min(frame.count, 12 + rw.strip)...]
    return out
}
