/// IP addresses as configuration values: strict parsing from text, canonical printing, and the
/// classifications an admin's file is checked against (loopback, multicast, …).
///
/// These are control-plane values (topology files, netlink requests, VXLAN underlay
/// endpoints); the per-frame path reads addresses straight from frame bytes and never builds
/// them.

/// An IPv4 address (RFC 791), first octet in the most significant byte.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address in host order: `10.0.0.1` is `0x0A00_0001`.
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Parses a dotted quad `a.b.c.d` strictly: four decimal octets 0…255, no leading zeros
    /// (`010` is octal to `inet_aton` and decimal to others, so it is refused), no spaces,
    /// no shorthand forms (`10.1`). `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        var value: UInt32 = 0, octets = 0, digits = 0, octet: UInt32 = 0, leadingZero = false
        for b in text.utf8 {
            if b == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                value = value << 8 | octet
                octets += 1; digits = 0; octet = 0; leadingZero = false
            } else if b >= 48 && b <= 57 {
                if leadingZero { return nil }
                if digits == 0 && b == 48 { leadingZero = true }
                digits += 1
                octet = octet * 10 + UInt32(b - 48)
                guard digits <= 3, octet <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard octets == 3, digits > 0 else { return nil }
        rawValue = value << 8 | octet
    }

    /// `10.0.0.1`
    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xFF).\(rawValue >> 8 & 0xFF).\(rawValue & 0xFF)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.rawValue < b.rawValue }

    /// `0.0.0.0` (RFC 1122 §3.2.1.3: "this host", never a destination).
    public var isUnspecified: Bool { rawValue == 0 }
    /// `0.0.0.0/8`: "this network" (RFC 1122 §3.2.1.3); only valid as a source while booting.
    public var isThisNetwork: Bool { rawValue >> 24 == 0 }
    /// `127.0.0.0/8` (RFC 1122 §3.2.1.3).
    public var isLoopback: Bool { rawValue >> 24 == 127 }
    /// `224.0.0.0/4` (RFC 5771).
    public var isMulticast: Bool { rawValue >> 28 == 0xE }
    /// `224.0.0.0/24`, the local network control block (RFC 5771 §4): never routed, always
    /// flooded by IGMP snooping switches (RFC 4541 §2.1.2).
    public var isLinkLocalMulticast: Bool { rawValue >> 8 == 0xE0_0000 }
    /// `240.0.0.0/4`, reserved for future use (RFC 1112 §4), `255.255.255.255` included.
    public var isReserved: Bool { rawValue >> 28 == 0xF }
    /// `255.255.255.255`, the limited broadcast address (RFC 919).
    public var isLimitedBroadcast: Bool { rawValue == 0xFFFF_FFFF }
    /// `169.254.0.0/16` (RFC 3927).
    public var isLinkLocal: Bool { rawValue >> 16 == 0xA9FE }
}

/// An IPv6 address (RFC 4291), as two 64-bit halves in host order.
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bits 0…63 (the first eight bytes on the wire).
    public var high: UInt64
    /// Bits 64…127.
    public var low: UInt64

    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// The eight 16-bit groups, first group first.
    public var groups: [UInt16] {
        (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> UInt64(48 - 16 * (i % 4))) }
    }

    /// Builds an address from eight 16-bit groups (the first group first).
    public init(groups: [UInt16]) {
        precondition(groups.count == 8, "an IPv6 address has eight groups")
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(groups[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(groups[i]) }
        high = h; low = l
    }

    /// Parses the text forms of RFC 4291 §2.2: eight groups of 1…4 hex digits (either case)
    /// separated by `:`, at most one `::` standing for one or more zero groups, and
    /// optionally a dotted quad as the last 32 bits (`::ffff:192.0.2.1`, parsed as
    /// `IPv4Address` is: no leading zeros). Zone indexes (`fe80::1%eth0`), brackets and
    /// spaces are refused. `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 2, bytes.count <= 45 else { return nil }
        var head: [UInt16] = [], tail: [UInt16] = []
        var sawDoubleColon = false
        var i = 0
        // A leading "::" or a leading single ":" (invalid).
        if bytes[0] == UInt8(ascii: ":") {
            guard bytes[1] == UInt8(ascii: ":") else { return nil }
            sawDoubleColon = true
            i = 2
            if i == bytes.count { self.init(high: 0, low: 0); return }
        }
        while i < bytes.count {
            // One group, or a trailing dotted quad.
            var j = i, value: UInt32 = 0
            while j < bytes.count, let d = hexValue(bytes[j]) {
                value = value << 4 | UInt32(d)
                j += 1
                guard j - i <= 4 else { break }
            }
            if j < bytes.count, bytes[j] == UInt8(ascii: ".") {
                // Embedded IPv4: the rest of the text, taking the last two groups.
                guard let v4 = IPv4Address(String(decoding: bytes[i...], as: UTF8.self)) else { return nil }
                let pair = [UInt16(v4.rawValue >> 16), UInt16(v4.rawValue & 0xFFFF)]
                if sawDoubleColon { tail += pair } else { head += pair }
                i = bytes.count
                break
            }
            guard j > i, j - i <= 4 else { return nil }
            if sawDoubleColon { tail.append(UInt16(value)) } else { head.append(UInt16(value)) }
            i = j
            if i == bytes.count { break }
            guard bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: ":") {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                i += 1
                if i == bytes.count { break }
            } else if i == bytes.count {
                return nil   // a trailing single ":"
            }
        }
        let count = head.count + tail.count
        if sawDoubleColon {
            guard count <= 7 else { return nil }
            self.init(groups: head + Array(repeating: 0, count: 8 - count) + tail)
        } else {
            guard count == 8 else { return nil }
            self.init(groups: head)
        }
    }

    /// The canonical text of RFC 5952 §4: lowercase hex without leading zeros; the longest
    /// run of two or more zero groups (the first of equal runs) shortened to `::`; IPv4-mapped
    /// addresses (`::ffff:0:0/96`) end in a dotted quad (§5).
    public var description: String {
        let g = groups
        if isIPv4Mapped { return "::ffff:" + IPv4Address(rawValue: UInt32(truncatingIfNeeded: low)).description }
        var bestStart = -1, bestLength = 1, runStart = -1
        for i in 0...8 {
            if i < 8 && g[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                runStart = -1
            }
        }
        func hex(_ range: Range<Int>) -> String { g[range].map { String($0, radix: 16) }.joined(separator: ":") }
        guard bestStart >= 0 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { (a.high, a.low) < (b.high, b.low) }

    /// `::` (RFC 4291 §2.5.2).
    public var isUnspecified: Bool { high == 0 && low == 0 }
    /// `::1` (RFC 4291 §2.5.3).
    public var isLoopback: Bool { high == 0 && low == 1 }
    /// `ff00::/8` (RFC 4291 §2.7).
    public var isMulticast: Bool { high >> 56 == 0xFF }
    /// `ff02::/16`, link-local scope multicast (RFC 4291 §2.7): always flooded by MLD
    /// snooping switches (RFC 4541 §3).
    public var isLinkLocalMulticast: Bool { high >> 48 == 0xFF02 }
    /// `fe80::/10` (RFC 4291 §2.5.6).
    public var isLinkLocal: Bool { high >> 54 == 0x3FA }
    /// `::ffff:0:0/96`, an IPv4 address in IPv6 clothing (RFC 4291 §2.5.5.2).
    public var isIPv4Mapped: Bool { high == 0 && low >> 32 == 0xFFFF }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses either family (`IPv4Address` or `IPv6Address` rules; a `:` means IPv6).
    public init?(_ text: some StringProtocol) {
        if text.utf8.contains(UInt8(ascii: ":")) {
            guard let a = IPv6Address(text) else { return nil }
            self = .v6(a)
        } else {
            guard let a = IPv4Address(text) else { return nil }
            self = .v4(a)
        }
    }

    /// The canonical text (dotted quad, or RFC 5952).
    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }

    /// True for IPv6.
    public var isIPv6: Bool { if case .v6 = self { return true } else { return false } }
    /// `4` or `6`.
    public var family: Int { isIPv6 ? 6 : 4 }
    /// 32 or 128.
    public var bitWidth: Int { isIPv6 ? 128 : 32 }

    public var isUnspecified: Bool {
        switch self { case .v4(let a): return a.isUnspecified; case .v6(let a): return a.isUnspecified }
    }
    public var isLoopback: Bool {
        switch self { case .v4(let a): return a.isLoopback; case .v6(let a): return a.isLoopback }
    }
    public var isMulticast: Bool {
        switch self { case .v4(let a): return a.isMulticast; case .v6(let a): return a.isMulticast }
    }
    /// 224.0.0.0/24 or ff02::/16.
    public var isLinkLocalMulticast: Bool {
        switch self { case .v4(let a): return a.isLinkLocalMulticast; case .v6(let a): return a.isLinkLocalMulticast }
    }
    /// 169.254.0.0/16 or fe80::/10.
    public var isLinkLocal: Bool {
        switch self { case .v4(let a): return a.isLinkLocal; case .v6(let a): return a.isLinkLocal }
    }

    /// IPv4 before IPv6, then numerically.
    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case let (.v4(x), .v4(y)): return x < y
        case let (.v6(x), .v6(y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        }
    }

    /// The address with every bit after the first `length` cleared (`length` ≤ the width).
    public func masked(to length: Int) -> IPAddress {
        switch self {
        case .v4(let a):
            let mask: UInt32 = length <= 0 ? 0 : (length >= 32 ? .max : ~(UInt32.max >> UInt32(length)))
            return .v4(IPv4Address(rawValue: a.rawValue & mask))
        case .v6(let a):
            func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : (bits >= 64 ? .max : ~(UInt64.max >> UInt64(bits))) }
            return .v6(IPv6Address(high: a.high & mask(length), low: a.low & mask(length - 64)))
        }
    }

    /// True when every bit after the first `length` is set (the IPv4 directed broadcast of
    /// a subnet of that length).
    public func hostBitsAllOnes(after length: Int) -> Bool {
        switch self {
        case .v4(let a):
            let host: UInt32 = length >= 32 ? 0 : UInt32.max >> UInt32(max(0, length))
            return a.rawValue & host == host
        case .v6(let a):
            func host(_ bits: Int) -> UInt64 { bits >= 64 ? 0 : (bits <= 0 ? .max : UInt64.max >> UInt64(bits)) }
            return a.high & host(length) == host(length) && a.low & host(length - 64) == host(length - 64)
        }
    }
}

/// An address with a prefix length: an interface address (`10.0.10.1/24`, host bits set) or
/// a network (`10.0.0.0/16`, host bits clear), as `ip address` and `ip route` write them.
public struct IPPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    /// 0…32 for IPv4, 0…128 for IPv6.
    public var prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) {
        self.address = address; self.prefixLength = prefixLength
    }

    /// Parses `ADDRESS/LENGTH` (`IPAddress` rules; LENGTH decimal without leading zeros,
    /// at most the family's width). `nil` for anything else, a missing `/LENGTH` included.
    public init?(_ text: some StringProtocol) {
        guard let slash = text.lastIndex(of: "/") else { return nil }
        let len = text[text.index(after: slash)...]
        guard (1...3).contains(len.count), len.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              len.count == 1 || len.first != "0", let n = Int(len),
              let a = IPAddress(text[..<slash]), n <= a.bitWidth else { return nil }
        address = a; prefixLength = n
    }

    /// `10.0.10.1/24`, `2001:db8::5/64`
    public var description: String { "\(address)/\(prefixLength)" }

    /// The network: the address with its host bits cleared.
    public var network: IPAddress { address.masked(to: prefixLength) }

    /// True when the host bits are all zero (`10.0.0.0/16`, not `10.0.0.1/16`).
    public var isNetwork: Bool { network == address }

    /// True when `other` lies in this prefix (same family, same first `prefixLength` bits).
    public func contains(_ other: IPAddress) -> Bool {
        other.isIPv6 == address.isIPv6 && other.masked(to: prefixLength) == network
    }

    /// True when the two prefixes share an address (one contains the other's network).
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard other.address.isIPv6 == address.isIPv6 else { return false }
        let shorter = min(prefixLength, other.prefixLength)
        return address.masked(to: shorter) == other.address.masked(to: shorter)
    }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool {
        (a.address, a.prefixLength) < (b.address, b.prefixLength)
    }
}

private func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case 48...57: return b - 48
    case 97...102: return b - 87
    case 65...70: return b - 55
    default: return nil
    }
}
