/// The Internet checksum: the 16-bit ones' complement of the ones' complement sum of the
/// data taken as big-endian 16-bit words (RFC 1071), as used by IPv4 headers, TCP, UDP
/// and ICMP.
///
/// Values here are **sums in network-word order**: `sum(...)` of the bytes `00 01 f2 03`
/// is `0xf204` (`0x0001 + 0xf203`), the same number a byte-by-byte big-endian adder gets.
/// A checksum field stores `~sum`, written big-endian. Sums of pieces combine with `add`
/// when every piece but the last has even length (RFC 1071 §2(A), the "deferred carries"
/// and "byte order independence" properties); all header pieces the switch joins are even.
///
/// Speed: `sum` reads 32 bytes per iteration as four unaligned 64-bit loads in host order,
/// taken as little-endian, adding their 32-bit halves into two 64-bit accumulators (no
/// carry chain, so the CPU runs the additions in parallel; 2³¹ words before an
/// accumulator could overflow), folds once at the end and swaps the two bytes — RFC 1071
/// §2(B): the sum of byte-swapped words is the byte-swapped sum. No allocation, no traps.
public enum InternetChecksum {
    /// The ones' complement sum (folded, not complemented) of `count` bytes at `base`, as
    /// big-endian words; an odd last byte is padded with a zero byte (RFC 1071 §4.1).
    @inlinable
    public static func sum(_ base: UnsafeRawPointer, count: Int) -> UInt16 {
        var a: UInt64 = 0, b: UInt64 = 0
        var i = 0
        @inline(__always) func load64(_ o: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        while i &+ 32 <= count {
            let w0 = load64(i), w1 = load64(i &+ 8), w2 = load64(i &+ 16), w3 = load64(i &+ 24)
            a = a &+ (w0 & 0xFFFF_FFFF) &+ (w0 >> 32) &+ (w1 & 0xFFFF_FFFF) &+ (w1 >> 32)
            b = b &+ (w2 & 0xFFFF_FFFF) &+ (w2 >> 32) &+ (w3 & 0xFFFF_FFFF) &+ (w3 >> 32)
            i &+= 32
        }
        while i &+ 8 <= count {
            let w = load64(i)
            a = a &+ (w & 0xFFFF_FFFF) &+ (w >> 32)
            i &+= 8
        }
        if i &+ 4 <= count {
            a = a &+ UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
            i &+= 4
        }
        if i &+ 2 <= count {
            a = a &+ UInt64(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
            i &+= 2
        }
        if i < count {
            // An odd last byte sits at an even offset: the low byte of a little-endian word.
            a = a &+ UInt64(base.load(fromByteOffset: i, as: UInt8.self))
        }
        // Accumulated as little-endian words on every host: swap once into network order.
        return fold(a &+ b).byteSwapped
    }

    /// `sum(_:count:)` over a buffer.
    @inlinable
    public static func sum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        guard let base = bytes.baseAddress else { return 0 }
        return sum(base, count: bytes.count)
    }

    /// Folds a wide ones' complement accumulator to 16 bits (end-around carries), in the
    /// byte order it was accumulated in.
    @inlinable @inline(__always)
    public static func fold(_ x: UInt64) -> UInt16 {
        var s = (x & 0xFFFF_FFFF) &+ (x >> 32)        // < 2^33
        s = (s & 0xFFFF) &+ (s >> 16)                 // < 2^17 + 2^16
        s = (s & 0xFFFF) &+ (s >> 16)                 // ≤ 0xFFFF + 2
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// Ones' complement addition of two sums.
    @inlinable @inline(__always)
    public static func add(_ a: UInt16, _ b: UInt16) -> UInt16 {
        let s = UInt32(a) &+ UInt32(b)
        return UInt16(truncatingIfNeeded: (s & 0xFFFF) &+ (s >> 16))
    }

    /// The checksum of the bytes: `~sum`. Verifying data that contains its own checksum
    /// field gives 0 (a sum of 0xFFFF).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 { ~sum(bytes) }

    /// The checksum to store after a 16-bit field covered by `checksum` changed from
    /// `old` to `new`, without re-summing the data: RFC 1624 eqn. 3,
    /// `HC' = ~(~HC + ~m + m')`, which never produces the wrong zero that eqn. 2 of RFC
    /// 1141 could.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~add(add(~checksum, ~old), new)
    }

    /// `update(_:old:new:)` for a 32-bit field (an IPv4 address, a TCP sequence number),
    /// taken as two 16-bit words.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        let c = update(checksum, old: UInt16(truncatingIfNeeded: old >> 16), new: UInt16(truncatingIfNeeded: new >> 16))
        return update(c, old: UInt16(truncatingIfNeeded: old), new: UInt16(truncatingIfNeeded: new))
    }

    /// The sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source and destination
    /// address (host-order values of the big-endian fields), a zero byte, the protocol, and
    /// the L4 length (header + payload, bytes; at most 65535).
    @inlinable
    public static func pseudoHeaderSum(ipv4Source source: UInt32, destination: UInt32, protocol proto: UInt8, length: Int) -> UInt16 {
        let s = UInt64(source >> 16) &+ UInt64(source & 0xFFFF) &+ UInt64(destination >> 16) &+ UInt64(destination & 0xFFFF)
            &+ UInt64(proto) &+ UInt64(UInt32(truncatingIfNeeded: length) & 0xFFFF)
        return fold(s)
    }

    /// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): the 32 bytes of source and
    /// destination address at `addresses` (as they sit in the IPv6 header, offset 8), the
    /// upper-layer length as 32 bits, three zero bytes and the next header value.
    @inlinable
    public static func pseudoHeaderSum(ipv6Addresses addresses: UnsafeRawPointer, nextHeader: UInt8, length: Int) -> UInt16 {
        let l = UInt32(truncatingIfNeeded: length)
        return add(sum(addresses, count: 32), fold(UInt64(l >> 16) &+ UInt64(l & 0xFFFF) &+ UInt64(nextHeader)))
    }
}
