/// Bounds on what a valid topology makes the running instance allocate, beyond the size of
/// the file itself (`TopologyLimits`).
extension Validator {
    /// The MAC tables of all switches together hold at most `maxTotalMACEntries` entries: each
    /// switch's table is allocated in full (`mac-table: {limit}`) when the topology comes up
    /// or a reload adds the switch. The switch whose limit takes the total past the bound is
    /// the error, once.
    mutating func checkTableMemory(_ switches: [SwitchSpec]) {
        var total = 0
        for sw in switches {
            total += sw.macLimit
            guard total > limits.maxTotalMACEntries else { continue }
            let all = switches.reduce(0) { $0 + $1.macLimit }
            error("the MAC tables of all switches would hold \(all) entries (about \((all * 40) >> 20) MiB, allocated when the topology comes up); "
                  + "at most \(limits.maxTotalMACEntries) in all: lower 'mac-table: {limit}' (switch '\(sw.name)' takes the total past the bound)",
                  at: switchLocations[sw.name] ?? .start)
            return
        }
    }
}
