/// Per-port frame, byte and drop counters of one switch.
///
/// A flat array of `UInt64` (ports × fields), allocated once. The datapath thread is the
/// only writer; the control socket reads under the datapath's batch lock. Drop reasons are
/// indexed by `DropReason.rawValue`, so counting a drop is one add.
public final class PortCounters {
    public let portCount: Int
    @inlinable static var fixed: Int { 4 }
    /// Fields per port: the 4 frame/byte counters, then one per drop reason, rounded up to a
    /// constant (a stored static computed from `allCases` cost an accessor call per counted
    /// frame). `init` checks it still covers every reason.
    @inlinable static var stride: Int { 48 }
    @usableFromInline let values: UnsafeMutablePointer<UInt64>

    public init(portCount: Int) {
        precondition(PortCounters.fixed + DropReason.allCases.count <= PortCounters.stride, "PortCounters.stride too small")
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
