extension PortCounters {
    /// Copies every counter of `port` in `other` onto `toPort` here (a live reload keeps the
    /// counters of a port that survives, whatever its new index). Control path only.
    public func copy(port: Int, of other: PortCounters, toPort: Int) {
        precondition(port < other.portCount && toPort < portCount)
        let from = port * PortCounters.stride, to = toPort * PortCounters.stride
        for i in 0..<PortCounters.stride { values[to + i] = other.values[from + i] }
    }
}
