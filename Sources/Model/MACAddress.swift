/// A 48-bit Ethernet address held in the low 48 bits of a `UInt64`.
///
/// Packing the address into an integer makes it a cheap hash-table key (`vlan << 48 | mac`,
/// see `MACTable`) and keeps every comparison on the per-frame path a single instruction.
/// The first octet on the wire is the most significant byte of `rawValue`.
public struct MACAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address in the low 48 bits; the high 16 bits are always zero.
    public let rawValue: UInt64

    /// Wraps a raw value, discarding anything above bit 47.
    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    /// Reads six octets at `offset` of a frame buffer (network order). The caller guarantees
    /// `offset + 6 <= bytes.count` (checked in debug builds only, as for a byte subscript).
    ///
    /// Two unaligned loads (4 + 2 bytes) and byte swaps instead of six byte loads and shifts:
    /// this runs twice per frame.
    @inlinable @inline(__always)
    public init(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        let high = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let low = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self))
        self.rawValue = UInt64(high) << 16 | UInt64(low)
    }

    /// Reads the six octets at `offset` with one 8-byte load; the caller guarantees
    /// `offset + 8 <= bytes.count` (so it may read two bytes past the address). The frame
    /// parser uses it for both MACs of a header of at least 14 bytes (loads at 0 and 6).
    @inlinable @inline(__always)
    public init(loadingEightBytesOf bytes: UnsafeRawBufferPointer, at offset: Int) {
        self.rawValue = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) >> 16
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators); case-insensitive.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let groups = parts.count == 6 ? parts : text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var v: UInt64 = 0
        for g in groups {
            guard g.count == 2, let b = UInt8(g, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        self.rawValue = v
    }

    // The constants below are computed and inlinable rather than stored `static let`s: a
    // stored global of another module is reached through a lazy-initialisation accessor
    // call at every use, even on the per-frame path; these fold to immediates.

    /// The broadcast address ff:ff:ff:ff:ff:ff.
    @inlinable public static var broadcast: MACAddress { MACAddress(rawValue: 0xFFFF_FFFF_FFFF) }
    /// The all-zero address, never a valid source.
    @inlinable public static var zero: MACAddress { MACAddress(rawValue: 0) }

    /// Group bit (I/G) of the first octet: multicast or broadcast.
    @inlinable public var isMulticast: Bool { rawValue & 0x0100_0000_0000 != 0 }
    /// ff:ff:ff:ff:ff:ff.
    @inlinable public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF_FFFF }
    /// Neither multicast nor zero: an address a port can own.
    @inlinable public var isUnicast: Bool { !isMulticast && rawValue != 0 }
    /// Locally administered bit (U/L) of the first octet.
    @inlinable public var isLocallyAdministered: Bool { rawValue & 0x0200_0000_0000 != 0 }
    /// 01:80:c2:00:00:00 … 01:80:c2:00:00:0f, the IEEE 802.1D reserved group addresses
    /// (STP, pause, LACP, 802.1X, LLDP) that a bridge must not forward.
    @inlinable public var isReservedBridgeGroup: Bool { rawValue & ~0xF == 0x0180_C200_0000 }

    /// The six octets in wire order.
    public var octets: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> UInt64(40 - 8 * $0)) } }

    /// Writes the six octets at `offset` of a mutable buffer.
    @inlinable
    public func write(to bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        for i in 0..<6 { bytes[offset + i] = UInt8(truncatingIfNeeded: rawValue >> UInt64(40 - 8 * i)) }
    }

    public var description: String {
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8](); out.reserveCapacity(17)
        for (i, b) in octets.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ":")) }
            out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }
}
