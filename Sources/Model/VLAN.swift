/// A VLAN identifier inside the switch (12 bits).
///
/// `VLANID.untagged` (0) is the switch's untagged domain: the VLAN of `vlan: none` port
/// groups, carried without a tag everywhere. 1…4094 are 802.1Q VLANs. 4095 is reserved by
/// 802.1Q and never valid. A VLANID is a switch-internal classification; a **tag** is the
/// 4 bytes on the wire (TPID + TCI).
public struct VLANID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }
    /// Validates an 802.1Q VLAN number (1…4094).
    public init?(checking value: Int) {
        guard (1...4094).contains(value) else { return nil }
        self.rawValue = UInt16(value)
    }
    /// The untagged domain (`vlan: none`). Computed and inlinable so it folds to an
    /// immediate instead of a lazy-global accessor call (see `MACAddress.zero`).
    @inlinable public static var untagged: VLANID { VLANID(0) }
    @inlinable public var isUntaggedDomain: Bool { rawValue == 0 }
    public var description: String { rawValue == 0 ? "none" : String(rawValue) }
    public static func < (a: VLANID, b: VLANID) -> Bool { a.rawValue < b.rawValue }
}

/// A set of VLAN IDs (0…4095) as a 4096-bit bitmap: O(1) membership, no hashing.
public struct VLANSet: Hashable, Sendable, Sequence {
    /// The bitmap: bit `v & 63` of word `v >> 6` is VLAN v.
    public private(set) var words: [UInt64]

    public init() { words = Array(repeating: 0, count: 64) }
    public init(_ ids: some Sequence<VLANID>) {
        self.init()
        for id in ids { insert(id) }
    }
    /// Inserts a closed range of VLAN numbers (0…4095), a 64-bit word at a time.
    public mutating func insert(range: ClosedRange<UInt16>) {
        let low = Int(Swift.min(range.lowerBound, 4095)), high = Int(Swift.min(range.upperBound, 4095))
        guard low <= high else { return }
        for w in (low >> 6)...(high >> 6) {
            let first = w == low >> 6 ? low & 63 : 0, last = w == high >> 6 ? high & 63 : 63
            let bits = last - first == 63 ? UInt64.max : ((1 << UInt64(last - first + 1)) - 1) << UInt64(first)
            words[w] |= bits
        }
    }
    public mutating func insert(_ id: VLANID) {
        words[Int(id.rawValue >> 6)] |= 1 << UInt64(id.rawValue & 63)
    }
    public mutating func remove(_ id: VLANID) {
        words[Int(id.rawValue >> 6)] &= ~(1 << UInt64(id.rawValue & 63))
    }
    @inlinable
    public func contains(_ id: VLANID) -> Bool {
        words[Int(id.rawValue >> 6)] & (1 << UInt64(id.rawValue & 63)) != 0
    }
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    public func makeIterator() -> some IteratorProtocol<VLANID> {
        var next = 0
        let words = self.words
        return AnyIterator<VLANID> {
            while next < 4096 {
                let v = next; next += 1
                if words[v >> 6] & (1 << UInt64(v & 63)) != 0 { return VLANID(UInt16(v)) }
            }
            return nil
        }
    }

    /// Compact text such as `10,20,100-199`.
    public var rangesDescription: String {
        var out: [String] = []
        var start: Int? = nil, prev = -2
        func flush() {
            guard let s = start else { return }
            out.append(s == prev ? "\(s)" : "\(s)-\(prev)")
        }
        for id in self {
            let v = Int(id.rawValue)
            if v != prev + 1 { flush(); start = v }
            prev = v
        }
        flush()
        return out.joined(separator: ",")
    }
}
