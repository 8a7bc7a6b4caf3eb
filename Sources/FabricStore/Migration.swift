/// Why `tapestry vm migrate VM --to HOST` is refused. Each case's description is the
/// message for the user; a refused migration changes nothing.
public enum MigrationRefusal: Error, Equatable, CustomStringConvertible {
    case unknownGuest(String)
    /// Only QEMU guests migrate (a netns guest is a namespace on one machine).
    case notQEMU(guest: String, kind: FabricGuestKind)
    case unknownHost(String)
    /// The guest already runs there.
    case alreadyThere(guest: String, host: String)
    /// The destination holds no registration (its daemon is down or lost its lease).
    case hostDead(String)
    /// The destination runs another topology file.
    case differentTopology(host: String, hash: String, expected: String)
    /// The destination's free capacity is too small.
    case noCapacity(guest: String, host: String, needs: String, has: String)
    /// The guest is placed on another host than the one asked to move it.
    case notPlacedHere(guest: String, placedOn: String, source: String)
    /// The destination does not run every switch of the guest's NICs (no tunnels would reach
    /// the port there).
    case switchesMissing(guest: String, host: String, missing: [String])
    /// Another migration of the guest is in flight.
    case alreadyMigrating(guest: String, to: String)
    /// etcd could not be read or written (the reason).
    case etcdUnavailable(String)
    /// The placement or the destination changed between the check and the commit.
    case changedMeanwhile(guest: String)

    public var description: String {
        switch self {
        case .unknownGuest(let g): return "no guest named '\(g)' in the topology"
        case .notQEMU(let g, let kind): return "guest '\(g)' is a \(kind.rawValue) guest; only QEMU guests can be migrated"
        case .unknownHost(let h): return "no host named '\(h)' in the topology"
        case .alreadyThere(let g, let h): return "guest '\(g)' already runs on host \(h)"
        case .hostDead(let h): return "host \(h) is not alive in the fabric (no etcd registration): start its daemon first"
        case .differentTopology(let h, let hash, let expected):
            return "host \(h) runs a different topology file (hash \(hash.prefix(12)), here \(expected.prefix(12))): run the same file on both hosts"
        case .noCapacity(let g, let h, let needs, let has): return "guest '\(g)' does not fit on host \(h): it \(needs); \(h) has \(has)"
        case .notPlacedHere(let g, let placed, let source): return "guest '\(g)' runs on host \(placed), not on \(source): run the migration there"
        case .switchesMissing(let g, let h, let missing):
            return "guest '\(g)' cannot move to host \(h): switch\(missing.count == 1 ? "" : "es") \(missing.joined(separator: ", ")) do\(missing.count == 1 ? "es" : "") not run there (a host runs a switch when a guest or link of the topology file puts a port there)"
        case .alreadyMigrating(let g, let to): return "guest '\(g)' is already being migrated (to host \(to))"
        case .etcdUnavailable(let why): return "cannot migrate while etcd is unavailable: \(why)"
        case .changedMeanwhile(let g): return "the placement of '\(g)' or the destination changed during the migration; nothing was recorded"
        }
    }
}

/// A migration that passed its checks: what the commit compares against.
public struct MigrationPlan: Sendable, Equatable {
    /// The guest to move.
    public var guest: String
    /// The host it runs on.
    public var from: String
    /// The destination host.
    public var to: String
    /// Destination's underlay address (where QEMU's `-incoming` listens).
    public var destinationUnderlay: String
    /// The placement's mod revision when checked (0: no placement recorded yet).
    public var placementRevision: Int64
    /// The destination registration's create revision when checked.
    public var destinationRegistration: Int64
}

/// The checks of `tapestry vm migrate`.
public enum Migration {
    /// Checks `tapestry vm migrate guest --to destination` run on host `source` against the
    /// spec and a fresh snapshot. Refuses an unknown guest or host, a guest that is not QEMU,
    /// a guest not running on `source` or already migrating, a destination that is not alive,
    /// runs another topology file, does not run the guest's switches, or lacks free CPUs or
    /// memory for the guest.
    public static func check(guest name: String, to destination: String, from source: String,
                             spec: FabricSpec, snapshot: FabricSnapshot) throws(MigrationRefusal) -> MigrationPlan {
        guard let g = spec.guests[name] else { throw .unknownGuest(name) }
        guard g.kind == .qemu else { throw .notQEMU(guest: name, kind: g.kind) }
        guard spec.hosts[destination] != nil else { throw .unknownHost(destination) }
        let placement = Placement.effective(spec: spec, snapshot: snapshot)
        let current = placement[name]!
        guard current != destination else { throw .alreadyThere(guest: name, host: destination) }
        guard current == source else { throw .notPlacedHere(guest: name, placedOn: current, source: source) }
        guard let dest = snapshot.members[destination] else { throw .hostDead(destination) }
        guard dest.record.topologyHash == spec.topologyHash else {
            throw .differentTopology(host: destination, hash: dest.record.topologyHash, expected: spec.topologyHash)
        }
        if let m = snapshot.migrations[name] { throw .alreadyMigrating(guest: name, to: m.record.to) }
        let cap = Placement.capacity(spec: spec, placement: placement)[destination]!
        guard cap.runs(g.switches) else {
            throw .switchesMissing(guest: name, host: destination, missing: g.switches.subtracting(cap.switches ?? []).sorted())
        }
        guard cap.fits(cpus: g.cpus, memoryMiB: g.memoryMiB) else {
            throw .noCapacity(guest: name, host: destination, needs: "needs \(g.cpus) CPUs and \(g.memoryMiB) MiB", has: cap.summary)
        }
        return MigrationPlan(guest: name, from: source, to: destination, destinationUnderlay: dest.record.underlay,
                             placementRevision: snapshot.placements[name]?.modRevision ?? 0,
                             destinationRegistration: dest.createRevision)
    }
}
