import Foundation

/// The fabric's records in etcd (layout: `FabricKeys`), read and changed with the
/// transactions that make HA and migration safe. Stateless apart from the client; every
/// call is bounded by the client's deadlines and throws `EtcdError` (mostly `unavailable`).
public final class FabricStore: @unchecked Sendable {
    /// The etcd client.
    public let client: EtcdClient
    /// The topology's key layout.
    public let keys: FabricKeys

    /// The records of topology `topology` through `client`.
    public init(client: EtcdClient, topology: String) {
        self.client = client
        self.keys = FabricKeys(topology: topology)
    }

    /// Members, placements and migrations in flight, read in one transaction (one revision).
    public func snapshot(timeout: Double? = nil) throws -> FabricSnapshot {
        let r = try client.txn([], success: [.range(key: keys.membersPrefix, prefix: true), .range(key: keys.placementPrefix, prefix: true),
                                             .range(key: keys.migrationsPrefix, prefix: true)], timeout: timeout)
        guard r.results.count == 3, case .range(let memberKVs) = r.results[0], case .range(let placementKVs) = r.results[1],
              case .range(let migrationKVs) = r.results[2] else {
            throw EtcdError.malformedResponse("snapshot transaction returned \(r.results.count) results")
        }
        var members: [String: FabricSnapshot.Member] = [:]
        var placements: [String: FabricSnapshot.Placement] = [:]
        var malformed: [String] = []
        for kv in memberKVs {
            guard let host = FabricKeys.name(of: kv.key, under: keys.membersPrefix),
                  let rec = decodeRecord(MemberRecord.self, kv.value), rec.host == host else { malformed.append(kv.key); continue }
            members[host] = .init(record: rec, lease: kv.lease, createRevision: kv.createRevision)
        }
        for kv in placementKVs {
            guard let guest = FabricKeys.name(of: kv.key, under: keys.placementPrefix),
                  let rec = decodeRecord(PlacementRecord.self, kv.value), rec.guest == guest else { malformed.append(kv.key); continue }
            placements[guest] = .init(record: rec, modRevision: kv.modRevision)
        }
        var migrations: [String: FabricSnapshot.Migration] = [:]
        for kv in migrationKVs {
            guard let guest = FabricKeys.name(of: kv.key, under: keys.migrationsPrefix),
                  let rec = decodeRecord(MigrationRecord.self, kv.value), rec.guest == guest else { malformed.append(kv.key); continue }
            migrations[guest] = .init(record: rec, modRevision: kv.modRevision, lease: kv.lease)
        }
        return FabricSnapshot(revision: r.revision, members: members, placements: placements, migrations: migrations, malformedKeys: malformed)
    }

    /// Why a registration failed although etcd answered.
    public enum RegistrationError: Error, CustomStringConvertible, Equatable {
        /// Another daemon keeps a registration for this host alive.
        case hostTaken(host: String, pid: Int32, underlay: String)
        public var description: String {
            switch self {
            case .hostTaken(let h, let pid, let u):
                return "host \(h) is already registered in etcd by another daemon (pid \(pid), underlay \(u)), which keeps its lease alive"
            }
        }
    }

    /// Registers `record` under a new lease of `ttl` seconds, only if no registration for its
    /// host exists. A leftover registration (a crashed daemon's, whose lease has not expired
    /// yet) is waited out, up to `staleWait` seconds (use the lease TTL plus slack); one still
    /// there after that is kept alive by another daemon: `RegistrationError.hostTaken`.
    /// Returns the lease and the registration's create revision.
    public func register(_ record: MemberRecord, ttl: Int64, staleWait: Double, timeout: Double? = nil) throws -> (lease: EtcdLease, createRevision: Int64) {
        let key = keys.member(record.host)
        let lease = try client.grantLease(ttl: ttl, timeout: timeout)
        let giveUp = Deadline.after(staleWait)
        do {
            while true {
                let r = try client.txn([.absent(key)], success: [.put(key: key, value: encodeRecord(record), lease: lease.id), .range(key: key, prefix: false)],
                                       failure: [.range(key: key, prefix: false)], timeout: timeout)
                guard case .range(let kvs) = r.results.last, let kv = kvs.first else {
                    if !r.succeeded { continue }   // vanished between compare and read: try again
                    throw EtcdError.malformedResponse("registration not readable after the put")
                }
                if kv.lease == lease.id { return (lease, kv.createRevision) }   // ours (also after a retried put)
                if giveUp.hasPassed {
                    let other = decodeRecord(MemberRecord.self, kv.value)
                    throw RegistrationError.hostTaken(host: record.host, pid: other?.pid ?? 0, underlay: other?.underlay ?? "?")
                }
                usleep(250_000)
            }
        } catch {
            try? client.revoke(lease.id, timeout: 1)
            throw error
        }
    }

    /// Replaces this host's record (e.g. its guest list), only while `lease` still holds it.
    /// Returns false when the registration is gone (lease expired).
    public func updateMember(_ record: MemberRecord, lease: Int64, timeout: Double? = nil) throws -> Bool {
        let key = keys.member(record.host)
        return try client.txn([EtcdCompare(key, .equal, .lease(lease)), .present(key)],
                              success: [.put(key: key, value: encodeRecord(record), lease: lease)], timeout: timeout).succeeded
    }

    /// Records `host` as the placement of each guest in `guests` that has none yet
    /// (`initial`). Returns the guests whose placement it created.
    @discardableResult
    public func ensurePlacements(_ guests: [String], on host: String, timeout: Double? = nil) throws -> [String] {
        var created: [String] = []
        for g in guests {
            let rec = PlacementRecord(guest: g, host: host, reason: .initial, at: Date().timeIntervalSince1970)
            if try client.txn([.absent(keys.placement(g))], success: [.put(key: keys.placement(g), value: encodeRecord(rec), lease: 0)], timeout: timeout).succeeded {
                created.append(g)
            }
        }
        return created
    }

    /// Claims one HA restart, at most once fabric-wide: one transaction that succeeds only
    /// while the placement is unchanged since the decision (mod revision), the dead host
    /// holds no registration, and the claiming host `by` still holds its own (lease
    /// `byLease`); it rewrites the placement to the chosen host and records the claim.
    /// Concurrent claimers race on the placement's mod revision: exactly one transaction
    /// commits. Returns whether this claim won (a retried transaction whose first attempt had
    /// committed is recognised by reading the claim back).
    public func claimFailover(_ restart: FailoverRestart, by: String, byLease: Int64, timeout: Double? = nil) throws -> Bool {
        let now = Date().timeIntervalSince1970
        let placement = PlacementRecord(guest: restart.guest, host: restart.to, reason: .failover, from: restart.from, at: now)
        let claim = ClaimRecord(guest: restart.guest, from: restart.from, to: restart.to, by: by, at: now, replacedRevision: restart.placementRevision)
        let r = try client.txn([.unchanged(keys.placement(restart.guest), since: restart.placementRevision),
                                .absent(keys.member(restart.from)),
                                EtcdCompare(keys.member(by), .equal, .lease(byLease))],
                               success: [.put(key: keys.placement(restart.guest), value: encodeRecord(placement), lease: 0),
                                         .put(key: keys.claim(restart.guest), value: encodeRecord(claim), lease: 0)],
                               failure: [.range(key: keys.claim(restart.guest), prefix: false)], timeout: timeout)
        if r.succeeded { return true }
        guard case .range(let kvs) = r.results.first, let kv = kvs.first, let existing = decodeRecord(ClaimRecord.self, kv.value) else { return false }
        return existing.by == by && existing.replacedRevision == restart.placementRevision && existing.to == restart.to
    }

    /// The claim record of `guest`, if any.
    public func claim(of guest: String, timeout: Double? = nil) throws -> ClaimRecord? {
        try client.get(keys.claim(guest), timeout: timeout).flatMap { decodeRecord(ClaimRecord.self, $0.value) }
    }

    /// Records a checked migration: one transaction that succeeds only while the placement is
    /// unchanged since the check and the destination keeps the registration it had; throws
    /// `MigrationRefusal.changedMeanwhile` otherwise (nothing written).
    ///
    /// With `record` (the coordination record as last read, at `recordRevision`), the same
    /// transaction also requires that record unchanged and rewrites it as `committed` with
    /// the port counters, under its lease: the destination resumes the guest on seeing it.
    public func recordMigration(_ plan: MigrationPlan, record: MigrationRecord? = nil, recordRevision: Int64 = 0, recordLease: Int64 = 0,
                                counters: [String: PortCarry]? = nil, timeout: Double? = nil) throws {
        let now = Date().timeIntervalSince1970
        let rec = PlacementRecord(guest: plan.guest, host: plan.to, reason: .migration, from: plan.from, at: now)
        let key = keys.placement(plan.guest)
        var compares: [EtcdCompare] = [.unchanged(key, since: plan.placementRevision),
                                       EtcdCompare(keys.member(plan.to), .equal, .createRevision(plan.destinationRegistration))]
        var success: [EtcdOperation] = [.put(key: key, value: encodeRecord(rec), lease: 0)]
        if var m = record {
            compares.append(.unchanged(keys.migration(plan.guest), since: recordRevision))
            m.state = .committed; m.counters = counters; m.at = now
            success.append(.put(key: keys.migration(plan.guest), value: encodeRecord(m), lease: recordLease))
        }
        let r = try client.txn(compares, success: success, failure: [.range(key: key, prefix: false)], timeout: timeout)
        if r.succeeded { return }
        // A retried transaction whose first attempt committed: the placement already says so.
        if case .range(let kvs) = r.results.first, let kv = kvs.first, let cur = decodeRecord(PlacementRecord.self, kv.value),
           cur.host == plan.to, cur.reason == .migration, cur.from == plan.from, kv.modRevision > plan.placementRevision { return }
        throw MigrationRefusal.changedMeanwhile(guest: plan.guest)
    }

    // MARK: Migrations in flight (MigrationRecord)

    /// Puts a new migration record under `lease` (the source's), only if none exists for its
    /// guest. Returns its mod revision. Throws `MigrationRefusal.alreadyMigrating` when one
    /// does (a retried put that had committed is recognised by its ID).
    public func beginMigration(_ record: MigrationRecord, lease: Int64, timeout: Double? = nil) throws -> Int64 {
        let key = keys.migration(record.guest)
        let r = try client.txn([.absent(key)], success: [.put(key: key, value: encodeRecord(record), lease: lease), .range(key: key, prefix: false)],
                               failure: [.range(key: key, prefix: false)], timeout: timeout)
        guard case .range(let kvs) = r.results.last, let kv = kvs.first, let cur = decodeRecord(MigrationRecord.self, kv.value) else {
            throw EtcdError.malformedResponse("migration record not readable after the put")
        }
        if cur.id == record.id { return kv.modRevision }
        throw MigrationRefusal.alreadyMigrating(guest: record.guest, to: cur.to)
    }

    /// The migration record of `guest` with its mod revision and lease, or nil.
    public func migration(of guest: String, timeout: Double? = nil) throws -> FabricSnapshot.Migration? {
        guard let kv = try client.get(keys.migration(guest), timeout: timeout),
              let rec = decodeRecord(MigrationRecord.self, kv.value) else { return nil }
        return .init(record: rec, modRevision: kv.modRevision, lease: kv.lease)
    }

    /// Replaces a migration record only while it is unchanged since `revision`, keeping its
    /// `lease`. Returns the new mod revision, or nil when it changed (or vanished) meanwhile.
    public func updateMigration(_ record: MigrationRecord, since revision: Int64, lease: Int64, timeout: Double? = nil) throws -> Int64? {
        let key = keys.migration(record.guest)
        let r = try client.txn([.unchanged(key, since: revision), .present(key)],
                               success: [.put(key: key, value: encodeRecord(record), lease: lease), .range(key: key, prefix: false)],
                               failure: [.range(key: key, prefix: false)], timeout: timeout)
        guard case .range(let kvs) = r.results.last, let kv = kvs.first, let cur = decodeRecord(MigrationRecord.self, kv.value) else { return nil }
        if r.succeeded { return kv.modRevision }
        // A retried put whose first attempt committed reads back as what was written.
        return cur == record ? kv.modRevision : nil
    }

    /// Deletes the migration record of `guest` if it is still attempt `id`.
    public func endMigration(guest: String, id: String, timeout: Double? = nil) throws {
        guard let cur = try migration(of: guest, timeout: timeout), cur.record.id == id else { return }
        _ = try client.txn([.unchanged(keys.migration(guest), since: cur.modRevision)],
                           success: [.delete(key: keys.migration(guest), prefix: false)], timeout: timeout)
    }

    /// A clean shutdown of `host` (`tapestry down`): deletes every placement that names it
    /// (its guests stop with it, or were stopped before, so HA must not restart them; the next
    /// `up` records them again) and its registration, then revokes its lease. Each delete is
    /// guarded by the placement's mod revision, so a placement changed meanwhile stays.
    public func release(host: String, lease: Int64, timeout: Double? = nil) throws {
        for kv in try client.range(prefix: keys.placementPrefix, timeout: timeout).kvs {
            guard let rec = decodeRecord(PlacementRecord.self, kv.value), rec.host == host else { continue }
            _ = try client.txn([.unchanged(kv.key, since: kv.modRevision)], success: [.delete(key: kv.key, prefix: false)], timeout: timeout)
        }
        _ = try client.txn([EtcdCompare(keys.member(host), .equal, .lease(lease))],
                           success: [.delete(key: keys.member(host), prefix: false)], timeout: timeout)
        try client.revoke(lease, timeout: timeout)
    }
}
