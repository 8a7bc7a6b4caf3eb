/// What changes between two versions of a topology: the input of a live reload.
///
/// A pure value, computed by `Topology.diff(from:to:)`; the runtime turns it into actions
/// (create guests, swap switch plans, delete guests). Names are listed in the order of the
/// file they come from (removed ones in the old file's order, the rest in the new file's).
///
/// - A guest whose kind, resources or NICs (switch, port group, MAC, IP, count) differ is
///   **changed**: it is removed and created again (new namespace, new TAPs).
/// - A switch whose MTU, MAC-table settings, port groups, uplinks, mirrors or static entries
///   differ is **changed**: its plan is recompiled and swapped in between batches; its ports
///   keep their TAP devices, MAC entries and counters.
/// - Which guests (and so ports) a switch has is not a switch change: ports come and go with
///   their guests.
public struct TopologyDiff: Equatable, Sendable {
    public var guestsAdded: [String] = []
    public var guestsRemoved: [String] = []
    /// Removed and re-added.
    public var guestsChanged: [String] = []
    public var switchesAdded: [String] = []
    public var switchesRemoved: [String] = []
    public var switchesChanged: [String] = []

    public init(guestsAdded: [String] = [], guestsRemoved: [String] = [], guestsChanged: [String] = [],
                switchesAdded: [String] = [], switchesRemoved: [String] = [], switchesChanged: [String] = []) {
        self.guestsAdded = guestsAdded; self.guestsRemoved = guestsRemoved; self.guestsChanged = guestsChanged
        self.switchesAdded = switchesAdded; self.switchesRemoved = switchesRemoved; self.switchesChanged = switchesChanged
    }

    /// True when applying the diff would change nothing.
    public var isEmpty: Bool {
        guestsAdded.isEmpty && guestsRemoved.isEmpty && guestsChanged.isEmpty
            && switchesAdded.isEmpty && switchesRemoved.isEmpty && switchesChanged.isEmpty
    }

    /// Guests whose namespace and TAPs go away (removed, and the old version of changed ones).
    public var guestsToDestroy: [String] { guestsRemoved + guestsChanged }
    /// Guests to create (added, and the new version of changed ones).
    public var guestsToCreate: [String] { guestsAdded + guestsChanged }

    /// One line for people: `guests +c1 -d1 ~e1; switches ~sw0` (or `no changes`).
    public var summary: String {
        var parts: [String] = []
        let g = guestsAdded.map { "+\($0)" } + guestsRemoved.map { "-\($0)" } + guestsChanged.map { "~\($0)" }
        let s = switchesAdded.map { "+\($0)" } + switchesRemoved.map { "-\($0)" } + switchesChanged.map { "~\($0)" }
        if !g.isEmpty { parts.append("guests " + g.joined(separator: " ")) }
        if !s.isEmpty { parts.append("switches " + s.joined(separator: " ")) }
        return parts.isEmpty ? "no changes" : parts.joined(separator: "; ")
    }
}

/// A reload that cannot be expressed as a diff (the instance would have to be another one).
public struct TopologyDiffError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}

extension Topology {
    /// The diff that turns `old` into `new`. Pure: reads only its arguments.
    ///
    /// - Throws: `TopologyDiffError` when the topology's `name` differs: the name is the
    ///   instance's identity (socket, state file, derived MACs), so renaming is a `down` and
    ///   an `up`, not a reload.
    public static func diff(from old: Topology, to new: Topology) throws -> TopologyDiff {
        guard old.name == new.name else {
            throw TopologyDiffError("the topology's name changed from '\(old.name)' to '\(new.name)': a running topology cannot be renamed by reload (bring it down and up instead)")
        }
        var d = TopologyDiff()
        let oldGuests = Dictionary(old.guests.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newGuests = Set(new.guests.map(\.name))
        d.guestsRemoved = old.guests.map(\.name).filter { !newGuests.contains($0) }
        for g in new.guests {
            guard let was = oldGuests[g.name] else { d.guestsAdded.append(g.name); continue }
            if was != g { d.guestsChanged.append(g.name) }
        }
        let oldSwitches = Dictionary(old.switches.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newSwitches = Set(new.switches.map(\.name))
        d.switchesRemoved = old.switches.map(\.name).filter { !newSwitches.contains($0) }
        for s in new.switches {
            guard let was = oldSwitches[s.name] else { d.switchesAdded.append(s.name); continue }
            if was != s { d.switchesChanged.append(s.name) }
        }
        return d
    }
}
