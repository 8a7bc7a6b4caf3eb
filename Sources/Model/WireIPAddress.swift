/// An IPv4 or IPv6 address as read from a packet: 128 bits, an IPv4 address in its
/// IPv4-mapped form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so one value type keys the
/// multicast group table for both families and orders querier addresses for the election.
///
/// A per-frame value (built from frame bytes without allocating); configuration addresses
/// are the topology's own types, converted once when the plan is compiled.
public struct WireIPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bits 0…63 (the first eight bytes of an IPv6 address on the wire).
    public var high: UInt64
    /// Bits 64…127.
    public var low: UInt64

    @inlinable public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// An IPv4 address (host order: `10.0.0.1` is `0x0A00_0001`), stored IPv4-mapped.
    @inlinable public init(ipv4: UInt32) { high = 0; low = 0xFFFF_0000_0000 | UInt64(ipv4) }

    /// The unspecified address of `family` (`0.0.0.0` or `::`).
    @inlinable public static func unspecified(_ family: IPFamily) -> WireIPAddress {
        family == .ipv4 ? WireIPAddress(ipv4: 0) : WireIPAddress(high: 0, low: 0)
    }

    /// True for an IPv4 address (IPv4-mapped form).
    @inlinable public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }
    @inlinable public var family: IPFamily { isIPv4 ? .ipv4 : .ipv6 }
    /// The IPv4 address in host order, for an IPv4 address.
    @inlinable public var ipv4: UInt32? { isIPv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// `224.0.0.0/4` (RFC 5771) or `ff00::/8` (RFC 4291 §2.7).
    @inlinable public var isMulticast: Bool {
        isIPv4 ? (low >> 28) & 0xF == 0xE : high >> 56 == 0xFF
    }

    /// A group an IGMP/MLD snooping switch always floods: the IPv4 local network control
    /// block `224.0.0.0/24` (RFC 4541 §2.1.2, RFC 5771 §4), and IPv6 groups of scope 0–2
    /// (reserved, interface-local, link-local: `ff00::/16`, `ff01::/16`, `ff02::/16`, and the
    /// same scopes with flags set, RFC 4291 §2.7), which every node joins (`ff02::1`, the
    /// solicited-node groups) and which never leave the link.
    @inlinable public var isLinkLocalMulticast: Bool {
        if isIPv4 { return low & 0xFFFF_FF00 == 0xE000_0000 }
        return high >> 56 == 0xFF && (high >> 48) & 0xF <= 2
    }

    /// `fe80::/10` (RFC 4291 §2.5.6): where MLD queries must come from (RFC 3810 §5.1.14).
    @inlinable public var isIPv6LinkLocalUnicast: Bool { !isIPv4 && high >> 54 == 0x3FA }

    /// The IPv6 link-local address with the modified EUI-64 interface identifier of `mac`
    /// (RFC 4291 Appendix A): `fe80::` + MAC with the universal/local bit flipped and
    /// `ff:fe` in the middle.
    public static func linkLocal(eui64 mac: MACAddress) -> WireIPAddress {
        let m = mac.rawValue ^ 0x0200_0000_0000
        let iid = (m >> 24) << 40 | 0xFF_FE00_0000 | (m & 0xFF_FFFF)
        return WireIPAddress(high: 0xFE80_0000_0000_0000, low: iid)
    }

    /// Numeric order (IPv4 addresses sort among themselves as their numbers do): the
    /// querier election's "lower address" (RFC 3376 §6.6.2, RFC 3810 §7.6.2).
    @inlinable public static func < (a: WireIPAddress, b: WireIPAddress) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }

    /// Reads 4 bytes (network order) at `offset` as an IPv4 address. The caller checks bounds.
    @inlinable @inline(__always)
    public static func ipv4(in frame: UnsafeRawBufferPointer, at offset: Int) -> WireIPAddress {
        WireIPAddress(ipv4: UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    /// Reads 16 bytes (network order) at `offset` as an IPv6 address. The caller checks bounds.
    @inlinable @inline(__always)
    public static func ipv6(in frame: UnsafeRawBufferPointer, at offset: Int) -> WireIPAddress {
        WireIPAddress(high: UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                      low: UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)))
    }

    /// The 16 bytes of an IPv6 address (or the 4 of an IPv4 one), network order.
    public var bytes: [UInt8] {
        if let v = ipv4 { return (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * $0)) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * $0)) }
    }

    /// `239.1.2.3`, or IPv6 in RFC 5952's canonical form (`ff15::1`).
    public var description: String {
        if let v = ipv4 { return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)" }
        let g = (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> UInt64(48 - 16 * (i % 4))) }
        // The longest run of two or more zero groups (the first of equal runs) becomes "::".
        var best = (start: -1, length: 0), i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > best.length && j - i >= 2 { best = (i, j - i) }
                i = j
            } else { i += 1 }
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(g[$0], radix: 16) }.joined(separator: ":") }
        guard best.start >= 0 else { return hex(0..<8) }
        return hex(0..<best.start) + "::" + hex((best.start + best.length)..<8)
    }
}

/// IP version of an address or a multicast control message.
public enum IPFamily: UInt8, Sendable, CustomStringConvertible {
    case ipv4 = 4, ipv6 = 6
    public var description: String { self == .ipv4 ? "ipv4" : "ipv6" }
}

extension IPAddress {
    /// The address in the datapath's form: IPv4 as an IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), IPv6 as its 128 bits.
    public var wire: WireIPAddress {
        switch self {
        case .v4(let a): return WireIPAddress(ipv4: a.rawValue)
        case .v6(let a): return WireIPAddress(high: a.high, low: a.low)
        }
    }
}
