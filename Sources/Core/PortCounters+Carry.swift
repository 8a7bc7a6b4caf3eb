extension PortCounters {
    /// Copies every counter of `port` in `other` onto `toPort` here (a live reload keeps the
    /// counters of a port that survives, whatever its new index). Control path only.
    public func copy(port: Int, of other: PortCounters, toPort: Int) {
        precondition(port < other.portCount && toPort < portCount)
        let from = port * PortCounters.stride, to = toPort * PortCounters.stride
        for i in 0..<PortCounters.stride { values[to + i] = other.values[from + i] }
    }
}

extension PortCounters {
    /// Copies every counter into `raw` (`portCount × stride` values); false when `raw` is too
    /// small. Allocates nothing (for snapshots under the datapath lock).
    public func copyAll(into raw: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        let n = portCount * PortCounters.stride
        guard raw.count >= n, let base = raw.baseAddress else { return false }
        base.update(from: values, count: n)
        return true
    }

    /// Values per port in `copyAll`'s layout.
    public static var valuesPerPort: Int { stride }

    /// One port's counters from a `copyAll` copy.
    public static func snapshot(port: Int, of raw: UnsafeBufferPointer<UInt64>) -> Snapshot {
        let b = port * stride
        var drops: [DropReason: UInt64] = [:]
        for r in DropReason.allCases {
            let v = raw[b + fixed + Int(r.rawValue)]
            if v > 0 { drops[r] = v }
        }
        return Snapshot(rxFrames: raw[b], rxBytes: raw[b + 1], txFrames: raw[b + 2], txBytes: raw[b + 3], drops: drops)
    }
}

extension PortCounters {
    /// Adds `carried` to `port`'s counters: a migrated guest's port on its new host takes
    /// over what its port counted on the old one (a distributed switch's port statistics
    /// follow the VM). Control path only, under the datapath lock.
    public func add(_ carried: Snapshot, toPort port: Int) {
        precondition(port < portCount)
        let b = port * PortCounters.stride
        values[b] &+= carried.rxFrames; values[b + 1] &+= carried.rxBytes
        values[b + 2] &+= carried.txFrames; values[b + 3] &+= carried.txBytes
        for (r, v) in carried.drops { values[b + PortCounters.fixed + Int(r.rawValue)] &+= v }
    }
}
