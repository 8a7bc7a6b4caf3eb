/// Per-port frame, byte and drop counters of one switch.
///
/// A flat array of `UInt64` (ports × fields), allocated once. The datapath thread is the
/// only writer; the control socket reads under the datapath's batch lock. Drop reasons are
/// indexed by `DropReason.rawValue`, so counting a drop is one add.
public final class PortCounters {
    public let portCount: Int
    @usableFromInline static let fixed = 4
    @usableFromInline static let stride = fixed + DropReason.allCases.count
    @usableFromInline let values: UnsafeMutablePointer<UInt64>

    public init(portCount: Int) {
        self.portCount = portCount
        values = .allocate(capacity: max(1, portCount * PortCounters.stride))
        values.initialize(repeating: 0, count: max(1, portCount * PortCounters.stride))
    }
    deinit { values.deallocate() }

    @inlinable @inline(__always)
    public func received(port: Int, bytes: Int) {
        let b = port * PortCounters.stride
        values[b] &+= 1; values[b + 1] &+= UInt64(bytes)
    }
    @inlinable @inline(__always)
    public func sent(port: Int, bytes: Int) {
        let b = port * PortCounters.stride
        values[b + 2] &+= 1; values[b + 3] &+= UInt64(bytes)
    }
    @inlinable @inline(__always)
    public func dropped(port: Int, reason: DropReason) {
        values[port * PortCounters.stride + PortCounters.fixed + Int(reason.rawValue)] &+= 1
    }

    /// A copy of one port's counters.
    public func snapshot(port: Int) -> Snapshot {
        let b = port * PortCounters.stride
        var drops: [DropReason: UInt64] = [:]
        for r in DropReason.allCases {
            let v = values[b + PortCounters.fixed + Int(r.rawValue)]
            if v > 0 { drops[r] = v }
        }
        return Snapshot(rxFrames: values[b], rxBytes: values[b + 1], txFrames: values[b + 2], txBytes: values[b + 3], drops: drops)
    }

    public struct Snapshot: Equatable, Sendable {
        public var rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64, txBytes: UInt64
        public var drops: [DropReason: UInt64]
        public init(rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64, txBytes: UInt64, drops: [DropReason: UInt64]) {
            self.rxFrames = rxFrames; self.rxBytes = rxBytes; self.txFrames = txFrames; self.txBytes = txBytes; self.drops = drops
        }
        public var totalDrops: UInt64 { drops.values.reduce(0, +) }
    }
}
