import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One host's membership in the fabric, and HA: registers the host under a lease and keeps
/// it alive, reads the fabric every `pollInterval`, restarts dead hosts' guests through
/// claimed transactions, starts what etcd places here, and applies the isolation response.
///
/// ## Timeline of a host failure (defaults: TTL 3 s, renewal 1 s, poll 0.5 s, grace 3 s)
/// ```
///  h1 renews        h1 dies    h1's lease expires   survivors see it     grace over: one survivor's
///  its lease                   (etcd deletes its    (next poll,          claim transaction wins,
///     │                        member key)          ≤ 0.5 s later)       the chosen host starts it
///  ───●────────────────✕──────────────●────────────────────●──────────────────────●──────────▶
///     t                        t + TTL             ≤ t + TTL + 0.5 s     ≤ t + TTL + 0.5 s + grace
///
///  if h1 is only cut off:      lease lost → ICMP to isolation addresses (≤ 0.5 s) → none answers:
///  (its renewals fail)         isolated; with power-off, its QEMU guests are stopped at about
///                              t + TTL + 1.5 s, before any survivor may start them
/// ```
///
/// ## Threads
/// Two threads, so a slow fabric read never delays a renewal: `tapestry-lease` renews the
/// lease every `keepAliveInterval` (re-registering after it expired) and runs the isolation
/// check; `tapestry-fabric` reads members and placements in one transaction, feeds
/// `FailoverMonitor`, claims restarts and reconciles this host's guests with the placement.
/// Every etcd call is bounded (`requestTimeout`), so both threads keep their rhythm when etcd
/// is down, and then make no decisions. State is shared under one NSLock; callbacks run
/// outside it. The datapath never waits on any of this.
///
/// ## Use from the runtime
/// ```
/// let service = try FabricService(spec:…, host: "h1", underlay:…, store:…, callbacks:…)
/// let plan = try service.start()        // registers, reads placement; start plan.start
/// …                                     // report start failures with guestStopped
/// service.stop(release: true)           // on `down`
/// ```
public final class FabricService: @unchecked Sendable {
    /// The topology, as placement sees it.
    public let spec: FabricSpec
    /// This host's name.
    public let host: String
    /// This host's underlay address.
    public let underlay: String
    /// The etcd records this service reads and writes.
    public let store: FabricStore
    /// Timing and HA settings.
    public let options: FabricOptions
    let callbacks: FabricCallbacks
    let probe: @Sendable ([String], Double) -> Bool

    private let lock = NSCondition()
    // Guarded by `lock`.
    private var lease: Int64 = 0
    private var registration: Int64 = 0
    private var running: Set<String> = []
    private var migrating: Set<String> = []
    /// Guests stopped on purpose here (the runtime's `guestStopped`, an isolation power-off
    /// of a `restart: never` guest), with the store revision at that time (-1: not known yet,
    /// set from the next snapshot): reconciliation does not start them again unless their
    /// placement changes after that revision (e.g. HA or a migration moves them here anew).
    private var declined: [String: Int64] = [:]
    private var isolation: IsolationMonitor
    private var monitor: FailoverMonitor
    private var lastSnapshot: FabricSnapshot?
    private var lastError: String?
    private var unplaceable: [String: String] = [:]
    private var withheld: [String: String] = [:]
    /// Guests withheld at start-up because etcd could not be read (their placement was
    /// unknown): started once etcd answers and places them here or nowhere. Guests withheld
    /// because etcd placed them elsewhere are not started when that placement goes away (a
    /// clean `down` of the other host releases it: the guest was stopped on purpose).
    private var unknownAtStart: Set<String> = []
    private var reportedDead: Set<String> = []
    private var reportedMismatch: [String: String] = [:]
    /// Migration record IDs already handed to `incomingMigration`.
    private var dispatched: Set<String> = []
    private var lastReadAt: Double?
    private var stopping = false
    private var threadsRunning = 0
    private let startedAt = Date().timeIntervalSince1970

    /// - probe: answers whether any of the addresses replies within the timeout; default
    ///   ICMP echo (`ICMPProbe`) in the etcd client's namespace.
    public init(spec: FabricSpec, host: String, store: FabricStore, options: FabricOptions = FabricOptions(),
                callbacks: FabricCallbacks, probe: (@Sendable ([String], Double) -> Bool)? = nil) throws {
        guard let h = spec.hosts[host] else { throw MigrationRefusal.unknownHost(host) }
        self.spec = spec
        self.host = host
        self.underlay = h.underlay
        self.store = store
        self.options = options
        self.callbacks = callbacks
        let icmp = ICMPProbe(namespace: store.client.configuration.namespace)
        self.probe = probe ?? { addresses, timeout in icmp.firstAnswer(addresses, timeout: timeout).answered != nil }
        isolation = IsolationMonitor(ttl: Double(options.leaseTTL), renewedAt: Deadline.now())
        monitor = FailoverMonitor(me: host, grace: options.grace)
    }

    // MARK: Start and stop

    /// Registers this host (waiting out a crashed predecessor's registration, at most TTL +
    /// 2 s), reads the placement, records placements for this host's guests that have none,
    /// starts the threads, and returns what the runtime may start (`Startup.plan`): it must
    /// not start `withheld`. The service then assumes `plan.start` runs here (report failures
    /// with `guestStopped`).
    ///
    /// Registration comes before the read so that no survivor can move a guest between the
    /// read and the start: once registered, this host is alive and its placements are safe.
    /// When etcd is unreachable the plan withholds every guest that may have moved, says why,
    /// and the threads start them once etcd answers and places them here. Throws only
    /// `FabricStore.RegistrationError.hostTaken` (another live daemon is this host).
    public func start() throws -> StartupPlan {
        var plan: StartupPlan
        do {
            try registerNow(staleWait: Double(options.leaseTTL) + 2)
            let snapshot = try store.snapshot(timeout: options.requestTimeout * 2)
            plan = Startup.plan(spec: spec, me: host, snapshot: snapshot)
            try store.ensurePlacements(plan.start.filter { snapshot.placements[$0] == nil }, on: host, timeout: options.requestTimeout)
            lock.lock(); lastSnapshot = snapshot; lock.unlock()
        } catch let e as FabricStore.RegistrationError {
            throw e
        } catch {
            plan = Startup.plan(spec: spec, me: host, snapshot: nil, unreachableReason: "etcd is unreachable (\(error))")
            setError("\(error)")
        }
        lock.lock()
        running = Set(plan.start)
        withheld = plan.withheld
        unknownAtStart = lastSnapshot == nil ? Set(plan.withheld.keys) : []
        lock.unlock()
        for (g, why) in plan.withheld.sorted(by: { $0.key < $1.key }) { callbacks.log("fabric: not starting \(g): \(why)") }
        _ = try? publishMember()
        startThread("tapestry-lease") { [self] in leaseLoop() }
        startThread("tapestry-fabric") { [self] in fabricLoop() }
        return plan
    }

    /// Stops the threads (within one etcd deadline). With `release` (a clean `down`), also
    /// deletes this host's placements and registration and revokes the lease, so no survivor
    /// restarts guests that were stopped on purpose; without it the lease simply expires, as
    /// after a crash.
    public func stop(release: Bool) {
        lock.lock()
        stopping = true
        lock.broadcast()
        while threadsRunning > 0 { lock.wait() }
        let lease = self.lease
        lock.unlock()
        if release && lease != 0 {
            do {
                try store.release(host: host, lease: lease, timeout: options.requestTimeout)
                lock.lock(); self.lease = 0; lock.unlock()
            }
            catch { callbacks.log("fabric: could not release host \(host) in etcd (its lease expires in \(options.leaseTTL) s): \(error)") }
        }
    }

    // MARK: What the runtime reports

    /// The runtime started `guest` here (outside the service's own start callback, e.g.
    /// `tapestry vm start`).
    public func guestStarted(_ guest: String) {
        lock.lock(); running.insert(guest); withheld[guest] = nil; declined[guest] = nil; lock.unlock()
    }

    /// `guest` no longer runs here (stopped on purpose, or failed to start): the service
    /// does not start it again by itself while its placement stays as it is.
    public func guestStopped(_ guest: String) {
        lock.lock()
        running.remove(guest)
        declined[guest] = lastSnapshot?.revision ?? -1
        lock.unlock()
    }

    /// Guests the service believes run here, sorted.
    public var runningGuests: [String] { lock.lock(); defer { lock.unlock() }; return running.sorted() }

    /// The lease this host's registration lives under (0: not registered now).
    public var currentLease: Int64 { lock.lock(); defer { lock.unlock() }; return lease }

    // MARK: Migration bookkeeping

    /// Checks `vm migrate guest --to destination` from this host against a fresh read of
    /// etcd (`Migration.check`) and holds the guest out of reconciliation until
    /// `commitMigration` or `abortMigration`. Throws `MigrationRefusal` (etcd unreachable:
    /// `.etcdUnavailable`); nothing changes on refusal.
    public func checkMigration(guest: String, to destination: String) throws -> MigrationPlan {
        let snapshot: FabricSnapshot
        do { snapshot = try store.snapshot(timeout: options.requestTimeout * 2) }
        catch { throw MigrationRefusal.etcdUnavailable("\(error)") }
        guard currentLease != 0, snapshot.members[host]?.lease == currentLease else {
            throw MigrationRefusal.etcdUnavailable("host \(host) holds no registration in etcd now (its lease was lost); try again once it has registered")
        }
        let plan = try Migration.check(guest: guest, to: destination, from: host, spec: spec, snapshot: snapshot)
        lock.lock(); migrating.insert(guest); lock.unlock()
        return plan
    }

    /// Records a finished migration in etcd (atomically, `FabricStore.recordMigration`); the
    /// guest no longer runs here. Throws `MigrationRefusal.changedMeanwhile` or
    /// `.etcdUnavailable`; the guest then stays held until `abortMigration`.
    public func commitMigration(_ plan: MigrationPlan, record: MigrationRecord? = nil, recordRevision: Int64 = 0,
                                counters: [String: PortCarry]? = nil) throws {
        do {
            try store.recordMigration(plan, record: record, recordRevision: recordRevision, recordLease: currentLease,
                                      counters: counters, timeout: options.requestTimeout * 2)
        }
        catch let e as MigrationRefusal { throw e }
        catch { throw MigrationRefusal.etcdUnavailable("\(error)") }
        lock.lock(); running.remove(plan.guest); migrating.remove(plan.guest); lock.unlock()
        callbacks.log("fabric: \(plan.guest) migrated to \(plan.to) (recorded in etcd)")
    }

    /// The migration failed: the guest keeps running here and is reconciled again.
    public func abortMigration(_ plan: MigrationPlan) {
        lock.lock(); migrating.remove(plan.guest); lock.unlock()
    }

    /// Destination side: an incoming migration of `guest` is starting here (QEMU with
    /// `-incoming`); it is held out of reconciliation until `incomingFinished`.
    public func prepareIncoming(_ guest: String) {
        lock.lock(); migrating.insert(guest); lock.unlock()
    }

    /// Destination side: the incoming migration ended; when it succeeded the guest runs here.
    public func incomingFinished(_ guest: String, succeeded: Bool) {
        lock.lock()
        migrating.remove(guest)
        if succeeded { running.insert(guest) }
        lock.unlock()
    }

    // MARK: Status

    /// The fabric as last read, plus this host's own state.
    public var status: FabricStatus {
        lock.lock(); defer { lock.unlock() }
        let snap = lastSnapshot
        let placement = Placement.effective(spec: spec, snapshot: snap)
        let hosts = spec.hosts.keys.sorted().map { name -> FabricStatus.Host in
            let m = snap?.members[name]
            return FabricStatus.Host(name: name, alive: m != nil, underlay: m?.record.underlay ?? spec.hosts[name]?.underlay,
                                     pid: m?.record.pid, topologyHash: m?.record.topologyHash,
                                     sameTopology: m.map { $0.record.topologyHash == spec.topologyHash } ?? true,
                                     guests: placement.filter { $0.value == name }.map(\.key).sorted())
        }
        return FabricStatus(host: host, registered: lease != 0, lease: lease, isolated: isolation.isolated, hosts: hosts,
                            unplaceable: unplaceable, withheld: withheld, lastError: lastError,
                            migrations: (snap?.migrations.values.map(\.record) ?? []).sorted { $0.guest < $1.guest },
                            lastReadSecondsAgo: lastReadAt.map { Deadline.now() - $0 })
    }

    // MARK: Threads

    private func startThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
        lock.lock(); threadsRunning += 1; lock.unlock()
        let t = Thread { [self] in
            body()
            lock.lock(); threadsRunning -= 1; lock.broadcast(); lock.unlock()
        }
        t.name = name
        t.start()
    }

    /// Sleeps until `deadline` or `stop`; returns false when stopping.
    private func sleep(until deadline: Deadline) -> Bool {
        lock.lock(); defer { lock.unlock() }
        while !stopping && !deadline.hasPassed {
            _ = lock.wait(until: Date(timeIntervalSinceNow: deadline.remaining))
        }
        return !stopping
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func setError(_ e: String?) { lock.lock(); lastError = e; lock.unlock() }

    private func memberRecord() -> MemberRecord {
        lock.lock(); defer { lock.unlock() }
        return MemberRecord(host: host, underlay: underlay, pid: getpid(), topologyHash: spec.topologyHash,
                            guests: Array(running), startedAt: startedAt)
    }

    private func registerNow(staleWait: Double) throws {
        let sent = Deadline.now()
        let (lease, created) = try store.register(memberRecord(), ttl: options.leaseTTL, staleWait: staleWait, timeout: options.requestTimeout)
        lock.lock()
        self.lease = lease.id
        registration = created
        let action = isolation.renewed(sentAt: sent)
        lock.unlock()
        callbacks.log("fabric: host \(host) registered in etcd (lease \(String(lease.id, radix: 16)), TTL \(lease.ttl) s)")
        if action == .recovered { callbacks.log("fabric: host \(host) is no longer isolated") }
    }

    /// Re-puts this host's record when its guest list changed. Returns false when the
    /// registration is gone.
    @discardableResult
    private func publishMember() throws -> Bool {
        lock.lock(); let lease = self.lease; lock.unlock()
        guard lease != 0 else { return false }
        return try store.updateMember(memberRecord(), lease: lease, timeout: options.requestTimeout)
    }

    private func leaseLoop() {
        var next = Deadline.after(options.keepAliveInterval)
        while sleep(until: next) {
            next = Deadline.after(options.keepAliveInterval)
            lock.lock(); let lease = self.lease; lock.unlock()
            let sent = Deadline.now()
            do {
                if lease == 0 {
                    try registerNow(staleWait: 0)
                    continue
                }
                let ttl = try store.client.keepAlive(lease, timeout: min(options.requestTimeout, options.keepAliveInterval))
                if ttl > 0 {
                    lock.lock(); let action = isolation.renewed(sentAt: sent); lock.unlock()
                    if action == .recovered { callbacks.log("fabric: host \(host) is no longer isolated (lease renewed)") }
                    setError(nil)
                } else {
                    callbacks.log("fabric: lease of host \(host) expired in etcd; registering again")
                    lock.lock(); self.lease = 0; lock.unlock()
                    next = Deadline.after(0)
                }
            } catch let e as FabricStore.RegistrationError {
                setError(e.description)
            } catch {
                setError("\(error)")
                checkIsolation()
            }
        }
    }

    /// Called after a failed renewal: once the lease must be taken as lost, probe the
    /// isolation addresses and apply the isolation response.
    private func checkIsolation() {
        lock.lock(); let lost = isolation.leaseLost(now: Deadline.now()); lock.unlock()
        guard lost, !options.isolationAddresses.isEmpty else { return }
        let answered = probe(options.isolationAddresses, options.probeTimeout)
        lock.lock()
        let action = isolation.probed(anyAnswered: answered, now: Deadline.now(), response: options.isolationResponse)
        var victims: [String] = []
        if case .isolated(let powerOff) = action, powerOff {
            victims = running.filter { spec.guests[$0]?.kind == .qemu }.sorted()
            for v in victims {
                running.remove(v)
                // HA restarts the others (here too, once this host is back and nobody took
                // them); a `restart: never` guest stays off, as in VMware HA.
                if spec.guests[v]?.isRestartedByHA == false { declined[v] = lastSnapshot?.revision ?? -1 }
            }
        }
        lock.unlock()
        switch action {
        case .isolated(let powerOff):
            callbacks.log("fabric: host \(host) is isolated: lease lost and no isolation address (\(options.isolationAddresses.joined(separator: ", "))) answers"
                          + (powerOff ? "; powering off \(victims.isEmpty ? "no guests" : victims.joined(separator: ", "))" : ""))
            if !victims.isEmpty { callbacks.stopGuests(victims, .isolation) }
        case .recovered:
            callbacks.log("fabric: an isolation address answers again; host \(host) is not isolated (etcd is unreachable)")
        case .nothing:
            break
        }
    }

    private func fabricLoop() {
        var next = Deadline.after(0)
        while sleep(until: next) {
            next = Deadline.after(options.pollInterval)
            let snapshot: FabricSnapshot
            do { snapshot = try store.snapshot(timeout: options.requestTimeout) }
            catch { setError("\(error)"); continue }
            lock.lock()
            lastSnapshot = snapshot
            lastReadAt = Deadline.now()
            let myLease = lease
            let decisions = monitor.observe(snapshot, spec: spec, myLease: myLease, now: Deadline.now())
            lock.unlock()
            report(decisions, snapshot)
            guard myLease != 0, snapshot.members[host]?.lease == myLease else { continue }
            for restart in decisions.restarts where !isStopping {
                do {
                    if try store.claimFailover(restart, by: host, byLease: myLease, timeout: options.requestTimeout) {
                        callbacks.log("fabric: host \(restart.from) is dead; restarting \(restart.guest) on \(restart.to) (claimed by \(host))")
                        next = Deadline.after(0)   // read the new placement at once
                    }
                } catch {
                    setError("\(error)")
                }
            }
            reconcile(snapshot)
            dispatchMigrations(snapshot, myLease: myLease)
        }
    }

    /// Hands each new migration request naming this host to the runtime, once per record
    /// ID; without a migration callback, marks it failed so the source stops waiting.
    private func dispatchMigrations(_ snapshot: FabricSnapshot, myLease: Int64) {
        lock.lock()
        let fresh = snapshot.migrations.values.filter { $0.record.to == host && $0.record.state == .requested && !dispatched.contains($0.record.id) }
        for m in fresh { dispatched.insert(m.record.id); migrating.insert(m.record.guest) }
        // Forget IDs whose record is gone (bounded by the guests of the topology).
        let live = Set(snapshot.migrations.values.map(\.record.id))
        dispatched.formIntersection(live.union(fresh.map(\.record.id)))
        lock.unlock()
        for m in fresh.sorted(by: { $0.record.guest < $1.record.guest }) where !isStopping {
            if callbacks.acceptsMigrations {
                callbacks.log("fabric: migration of \(m.record.guest) from host \(m.record.from) to here requested")
                callbacks.incomingMigration(m.record, m.modRevision, m.lease)
            } else {
                var r = m.record
                r.state = .failed; r.error = "host \(host) does not accept migrations"; r.at = Date().timeIntervalSince1970
                _ = try? store.updateMigration(r, since: m.modRevision, lease: m.lease, timeout: options.requestTimeout)
                lock.lock(); migrating.remove(m.record.guest); lock.unlock()
            }
        }
    }

    private func report(_ d: FailoverDecisions, _ snapshot: FabricSnapshot) {
        lock.lock()
        let newlyDead = Set(d.deadHosts.keys).subtracting(reportedDead)
        let back = reportedDead.subtracting(d.deadHosts.keys)
        reportedDead = Set(d.deadHosts.keys)
        let newUnplaceable = d.unplaceable.filter { unplaceable[$0.key] != $0.value }
        for (g, r) in d.unplaceable { unplaceable[g] = r }
        let mismatchChanged = d.hashMismatches != reportedMismatch
        reportedMismatch = d.hashMismatches
        lock.unlock()
        for h in newlyDead.sorted() { callbacks.log("fabric: host \(h) is dead (no etcd registration); its guests restart elsewhere after \(options.grace) s") }
        // A dead host stops counting as dead once it registers again, or once none of its
        // guests is placed on it any more (HA moved them): only the first is news.
        for h in back.sorted() where snapshot.isAlive(h) { callbacks.log("fabric: host \(h) is registered again") }
        for (g, r) in newUnplaceable.sorted(by: { $0.key < $1.key }) { callbacks.log("fabric: cannot restart \(g): \(r)") }
        if mismatchChanged && !d.hashMismatches.isEmpty {
            callbacks.log("fabric: hosts running a different topology file than this one (\(spec.topologyHash.prefix(12))): "
                          + d.hashMismatches.sorted(by: { $0.key < $1.key }).map { "\($0.key) (\($0.value.prefix(12)))" }.joined(separator: ", "))
        }
    }

    /// Makes this host's part of the placement true: start guests placed here that do not
    /// run, stop guests placed on another live host, record placements for guests without
    /// one, and publish the guest list.
    private func reconcile(_ snapshot: FabricSnapshot) {
        lock.lock()
        let held = migrating
        for (g, rev) in declined where rev < 0 { declined[g] = snapshot.revision }
        let toStart = snapshot.placements.filter { (guest, p) in
            guard p.record.host == host, !running.contains(guest), !held.contains(guest),
                  let g = spec.guests[guest], g.kind != .external else { return false }
            if let since = declined[guest], p.modRevision <= since { return false }
            return true
        }.map(\.key) + withheld.keys.filter { g in
            // Withheld at start-up because etcd was unreachable, and placed nowhere since.
            unknownAtStart.contains(g) && snapshot.placements[g] == nil && spec.guests[g]?.host == host && !running.contains(g) && !held.contains(g)
        }
        for (g, _) in withheld {
            if let p = snapshot.placements[g], p.record.host != host {
                withheld[g] = "placed on host \(p.record.host) (\(p.record.reason.rawValue)\(p.record.from.map { " from \($0)" } ?? ""))"
                unknownAtStart.remove(g)
            }
        }
        var toStop: [(String, String)] = []
        for g in running where !held.contains(g) {
            if let p = snapshot.placements[g], p.record.host != host, snapshot.isAlive(p.record.host) { toStop.append((g, p.record.host)) }
        }
        for (g, _) in toStop { running.remove(g) }
        let published = snapshot.members[host]?.record.guests ?? []
        lock.unlock()

        for (g, other) in toStop.sorted(by: { $0.0 < $1.0 }) {
            callbacks.log("fabric: stopping \(g): etcd places it on host \(other)")
            callbacks.stopGuests([g], .placedElsewhere(other))
        }
        for g in toStart.sorted() where !isStopping {
            if callbacks.startGuest(g) {
                lock.lock(); running.insert(g); withheld[g] = nil; unknownAtStart.remove(g); unplaceable[g] = nil; declined[g] = nil; lock.unlock()
                callbacks.log("fabric: started \(g) (etcd places it on \(host))")
            } else {
                callbacks.log("fabric: could not start \(g), which etcd places on \(host)")
            }
        }
        lock.lock()
        let unplaced = running.filter { snapshot.placements[$0] == nil && !migrating.contains($0) }.sorted()
        lock.unlock()
        if !unplaced.isEmpty { _ = try? store.ensurePlacements(unplaced, on: host, timeout: options.requestTimeout) }
        if runningGuests != published.sorted() {
            if (try? publishMember()) == false {
                callbacks.log("fabric: registration of host \(host) is gone; the lease thread registers it again")
            }
        }
    }
}
