/// The fabric's decisions as pure functions of (topology spec, etcd snapshot, time): where
/// guests run, what a host's capacity allows, which dead host's guests restart where, what a
/// returning host may start. No I/O here; `FabricService` feeds them and acts on the result.

/// Reserved and total capacity of one host.
public struct HostCapacity: Sendable, Equatable {
    /// Limits (nil: not limited).
    public var cpus: Int?
    /// MiB of memory guests may reserve (nil: not limited).
    public var memoryMiB: Int?
    /// Reserved by guests placed there.
    public var usedCPUs: Int
    /// MiB reserved by guests placed there.
    public var usedMemoryMiB: Int
    /// The switches that run there (nil: any).
    public var switches: Set<String>? = nil

    /// Whether every switch of `needed` runs there.
    public func runs(_ needed: Set<String>) -> Bool { switches.map { needed.isSubset(of: $0) } ?? true }

    /// Whether a guest reserving `cpus` and `memoryMiB` fits in what is left.
    public func fits(cpus c: Int, memoryMiB m: Int) -> Bool {
        (cpus.map { usedCPUs + c <= $0 } ?? true) && (memoryMiB.map { usedMemoryMiB + m <= $0 } ?? true)
    }

    /// The fraction left after also placing (c, m), the smaller over the limited
    /// dimensions (1 when nothing is limited): hosts of different sizes compare fairly.
    func headroom(adding c: Int, _ m: Int) -> Double {
        var h = 1.0
        if let cpus, cpus > 0 { h = min(h, Double(cpus - usedCPUs - c) / Double(cpus)) }
        if let memoryMiB, memoryMiB > 0 { h = min(h, Double(memoryMiB - usedMemoryMiB - m) / Double(memoryMiB)) }
        return h
    }

    /// "2/4 CPUs, 512/1024 MiB" style, for messages.
    public var summary: String {
        let c = cpus.map { "\(usedCPUs)/\($0) CPUs" } ?? "\(usedCPUs) CPUs (no limit)"
        let m = memoryMiB.map { "\(usedMemoryMiB)/\($0) MiB" } ?? "\(usedMemoryMiB) MiB (no limit)"
        return c + ", " + m
    }
}

/// Where guests run and whether they fit: pure functions over the spec and a snapshot.
public enum Placement {
    /// Where each guest of the spec is to run: its etcd placement when there is one, else
    /// the host its topology entry names.
    public static func effective(spec: FabricSpec, snapshot: FabricSnapshot?) -> [String: String] {
        var out: [String: String] = [:]
        for (name, guest) in spec.guests {
            out[name] = snapshot?.placements[name]?.record.host ?? guest.host
        }
        return out
    }

    /// Each declared host's limits and what the guests placed on it reserve.
    public static func capacity(spec: FabricSpec, placement: [String: String]) -> [String: HostCapacity] {
        var out: [String: HostCapacity] = [:]
        for (name, host) in spec.hosts {
            out[name] = HostCapacity(cpus: host.cpus, memoryMiB: host.memoryMiB, usedCPUs: 0, usedMemoryMiB: 0, switches: host.switches)
        }
        for (guest, host) in placement {
            guard let g = spec.guests[guest], out[host] != nil else { continue }
            out[host]!.usedCPUs += g.cpus
            out[host]!.usedMemoryMiB += g.memoryMiB
        }
        return out
    }

    /// Chooses a host for each guest among `candidates`, like a resource pool's admission
    /// control: a guest goes to the candidate where it fits and leaves the most headroom
    /// (the smaller fraction left of limited CPUs and memory; ties: more free memory, then the
    /// host name), largest guests first (memory, then CPUs, then name), each placement
    /// reserving its share before the next is chosen. Only candidates that run every switch
    /// of the guest's NICs qualify (`HostCapacity.runs`). A guest that fits nowhere is
    /// returned in `unplaceable` with the reason, never placed.
    public static func choose(_ guests: [FabricGuest], candidates: [String], capacity: [String: HostCapacity])
        -> (placed: [(guest: String, host: String)], unplaceable: [(guest: String, reason: String)]) {
        var cap = capacity
        var placed: [(String, String)] = []
        var unplaceable: [(String, String)] = []
        let order = guests.sorted {
            ($0.memoryMiB, $0.cpus, $1.name) > ($1.memoryMiB, $1.cpus, $0.name)
        }
        for g in order {
            var best: (host: String, headroom: Double, freeMem: Int)?
            for h in candidates.sorted() {
                guard let c = cap[h], c.runs(g.switches), c.fits(cpus: g.cpus, memoryMiB: g.memoryMiB) else { continue }
                let headroom = c.headroom(adding: g.cpus, g.memoryMiB)
                let freeMem = c.memoryMiB.map { $0 - c.usedMemoryMiB } ?? Int.max
                if best == nil || headroom > best!.headroom || (headroom == best!.headroom && freeMem > best!.freeMem) {
                    best = (h, headroom, freeMem)
                }
            }
            if let b = best {
                placed.append((g.name, b.host))
                cap[b.host]!.usedCPUs += g.cpus
                cap[b.host]!.usedMemoryMiB += g.memoryMiB
            } else if candidates.isEmpty {
                unplaceable.append((g.name, "no surviving host runs the same topology file"))
            } else if !candidates.contains(where: { cap[$0]?.runs(g.switches) ?? false }) {
                unplaceable.append((g.name, "no surviving host runs its switches (\(g.switches.sorted().joined(separator: ", "))): a host runs a switch when a guest or link of the file puts a port there"))
            } else {
                let need = "needs \(g.cpus) CPUs and \(g.memoryMiB) MiB"
                let have = candidates.sorted().map { "\($0): \(cap[$0]?.summary ?? "unknown")" }.joined(separator: "; ")
                unplaceable.append((g.name, "fits on no surviving host (\(need); \(have))"))
            }
        }
        return (placed, unplaceable)
    }

    /// Hosts whose registration names another topology file than `hash`, with their hash.
    public static func hashMismatches(_ snapshot: FabricSnapshot, expected hash: String) -> [String: String] {
        var out: [String: String] = [:]
        for (host, m) in snapshot.members where m.record.topologyHash != hash { out[host] = m.record.topologyHash }
        return out
    }
}

/// One HA restart decided: move `guest` from dead host `from` to `to`, replacing the
/// placement last modified at `placementRevision`.
public struct FailoverRestart: Sendable, Equatable {
    /// The guest to restart.
    public var guest: String
    /// Its dead host.
    public var from: String
    /// The surviving host chosen to run it.
    public var to: String
    /// The placement's mod revision the decision was made from.
    public var placementRevision: Int64
}

/// What one observation of the fabric decided.
public struct FailoverDecisions: Sendable, Equatable {
    /// Hosts that hold placed guests but no registration, with seconds since first seen so.
    public var deadHosts: [String: Double] = [:]
    /// Restarts to claim now (the grace period of their host has passed).
    public var restarts: [FailoverRestart] = []
    /// Guests of dead hosts past grace that fit nowhere: reported, not started.
    public var unplaceable: [String: String] = [:]
    /// Hosts registered with another topology file (host → its hash).
    public var hashMismatches: [String: String] = [:]
}

/// HA's failure detection and restart planning as a state machine over snapshots (VMware
/// HA semantics: it detects host failure, not guest failure).
///
/// A host is dead when guests are placed on it and it holds no registration (its lease
/// expired, so at least the lease TTL has passed since its last renewal). A survivor waits
/// a further `grace` seconds from the first snapshot in which it saw the host dead, so an
/// isolated host has powered its guests off first (its own lease timer runs out at about
/// the same time; see `IsolationMonitor`). Then the dead host's guests with a restart
/// policy are placed on surviving hosts that run the same topology file (`Placement.choose`).
///
/// Decisions are only made from a snapshot in which this host itself is registered with
/// the lease it holds: a host that lost its lease, or cannot read etcd, decides nothing.
/// The restarts returned are proposals; `FabricStore.claimFailover` makes each one happen at
/// most once fabric-wide.
public struct FailoverMonitor: Sendable {
    /// This host.
    public let me: String
    /// Seconds to wait after first seeing a host dead.
    public let grace: Double
    /// Monotonic seconds at which each dead host was first seen dead.
    public private(set) var deadSince: [String: Double] = [:]

    /// A monitor for host `me` that waits `grace` seconds after first seeing a host dead.
    public init(me: String, grace: Double) { self.me = me; self.grace = grace }

    /// Observes a snapshot taken at monotonic time `now` while this host holds `myLease`.
    public mutating func observe(_ snapshot: FabricSnapshot, spec: FabricSpec, myLease: Int64, now: Double) -> FailoverDecisions {
        var d = FailoverDecisions()
        d.hashMismatches = Placement.hashMismatches(snapshot, expected: spec.topologyHash)
        let placedHosts = Set(snapshot.placements.values.map(\.record.host))
        let dead = placedHosts.filter { !snapshot.isAlive($0) }
        for host in deadSince.keys where !dead.contains(host) { deadSince[host] = nil }
        for host in dead where deadSince[host] == nil { deadSince[host] = now }
        for host in dead { d.deadHosts[host] = now - deadSince[host]! }

        guard let mine = snapshot.members[me], mine.lease == myLease, myLease != 0 else { return d }
        let ripe = dead.filter { now - deadSince[$0]! >= grace }
        guard !ripe.isEmpty else { return d }

        let candidates = snapshot.members.keys.filter {
            snapshot.members[$0]!.record.topologyHash == spec.topologyHash && spec.hosts[$0] != nil
        }
        let placement = Placement.effective(spec: spec, snapshot: snapshot)
        var movable: [FabricGuest] = []
        var revisions: [String: (from: String, rev: Int64)] = [:]
        for (guest, p) in snapshot.placements where ripe.contains(p.record.host) {
            guard let g = spec.guests[guest], g.isRestartedByHA else { continue }
            movable.append(g)
            revisions[guest] = (p.record.host, p.modRevision)
        }
        // A dead host's guests reserve nothing while they wait to be placed.
        var usage = placement
        for g in movable { usage[g.name] = nil }
        let choice = Placement.choose(movable, candidates: Array(candidates), capacity: Placement.capacity(spec: spec, placement: usage))
        for (guest, host) in choice.placed {
            let r = revisions[guest]!
            d.restarts.append(FailoverRestart(guest: guest, from: r.from, to: host, placementRevision: r.rev))
        }
        d.restarts.sort { $0.guest < $1.guest }
        for (guest, reason) in choice.unplaceable { d.unplaceable[guest] = reason }
        return d
    }
}

/// What a host may start when it comes up.
public struct StartupPlan: Sendable, Equatable {
    /// Guests to start here, sorted.
    public var start: [String]
    /// Guests of this host's topology entries that it must not start, with why.
    public var withheld: [String: String]
}

/// What a host starts when it comes up.
public enum Startup {
    /// A returning host's plan (VMware HA: a host that comes back must not power on the
    /// guests that were restarted elsewhere).
    ///
    /// With a snapshot: start every guest placed here (including guests moved here by HA or
    /// migration) and every guest of this host's topology entries with no placement yet;
    /// withhold the ones placed on another host.
    ///
    /// Without one (etcd unreachable, `reason` says why): start only the guests that can
    /// never have moved (not QEMU, and no restart policy: neither HA nor migration moves
    /// them); withhold the rest, saying why. The service starts them once etcd answers and
    /// their placement names this host.
    public static func plan(spec: FabricSpec, me: String, snapshot: FabricSnapshot?, unreachableReason: String = "etcd is unreachable") -> StartupPlan {
        var start: [String] = []
        var withheld: [String: String] = [:]
        for (name, g) in spec.guests {
            if let snapshot {
                if let p = snapshot.placements[name] {
                    if p.record.host == me { start.append(name) }
                    else if g.host == me {
                        withheld[name] = "placed on host \(p.record.host) (\(p.record.reason.rawValue)\(p.record.from.map { " from \($0)" } ?? ""))"
                    }
                } else if g.host == me {
                    start.append(name)
                }
            } else if g.host == me {
                if g.kind == .qemu || g.isRestartedByHA {
                    withheld[name] = "\(unreachableReason): cannot tell whether it runs on another host now"
                } else {
                    start.append(name)
                }
            }
        }
        return StartupPlan(start: start.sorted(), withheld: withheld)
    }
}
