import Core
import FabricStore
import Foundation
import LinuxIO
import Topology
import VMRunner

/// `tapestry vm migrate VM --to HOST`: VMware's VMotion between two hosts of a fabric
///. The two daemons coordinate through etcd only (`MigrationRecord`: they may be
/// on different machines), never through each other's control sockets; QEMU's migration
/// stream goes straight from the source's QEMU to the destination's, over a TCP connection
/// between the hosts' underlay addresses.
///
/// ```
///  source daemon (vm migrate, a control thread)      destination daemon (a thread per request)
///  check (etcd snapshot: host alive, same file,
///    capacity, switches) ─▶ record `requested` ───────▶ ports (same group, MAC, policies),
///                                                      QEMU -incoming defer -S, a listener
///                                                      on its underlay address
///  connect from its underlay ◀──── record `ready` ◀── (ADDR:PORT)
///  QMP getfd + migrate fd:… ─────── TCP ─────────────▶ accept, QMP getfd + migrate-incoming
///  query-migrate every 20 ms … completed: the guest is paused on both sides
///  ONE etcd transaction: placement → destination,
///    record `committed` with the port counters ──────▶ seen within 20 ms: QMP cont; QEMU
///  QMP quit, ports removed                             announces the guest (below); counters
///                                                      added to the new ports; record deleted
/// ```
/// The commit is the switch-over and happens exactly once: it requires the record unchanged,
/// so a destination that gave up (its CAS to `failed`) and a source that commits never both
/// win. Until it, the guest can resume on the source (`cont`); after it, only on the
/// destination. A failure before it (destination never ready, QEMU's migration failed or
/// cancelled, the timeout) leaves the guest running on the source and says why. If etcd
/// cannot be reached at the very commit, the source keeps asking until it learns the
/// outcome (the guest stays paused meanwhile): resuming both copies is never an option.
///
/// The MAC moves on the guest's first announcement after `cont`, on the destination's
/// switch (a local port) and, flooded through the overlay, on every other host (the tunnel
/// port); MAC learning moves an entry at once. With a TAP backend QEMU sends the RARPs
/// (5, from 50 ms on); a Linux guest on vhost-user that negotiated GUEST_ANNOUNCE sends
/// gratuitous ARPs itself; otherwise QEMU asks the vhost-user backend (VHOST_USER_SEND_RARP),
/// which injects a RARP. Each is an ordinary frame with the guest's source MAC, so the same
/// learning moves it.
extension Fabric {
    /// Seconds QEMU's migration may run before it is cancelled (the guest stays).
    static let migrationTimeout: Double = 300
    /// Seconds the destination may take to be ready (QEMU up, listening).
    static let migrationPrepareTimeout: Double = 60
    /// The descriptor name QEMU gets the migration socket under.
    static let migrationFDName = "tapestry-migration"

    // MARK: - Source

    /// `{"command":"vm","action":"migrate","vm":GUEST,"to":HOST}`: migrates a QEMU guest
    /// running here to host `to`. Returns once the guest runs there and its ports here are
    /// gone. Throws `RuntimeError` saying why (a refusal changes nothing; a failed migration
    /// leaves the guest running here).
    func migrate(_ req: ControlRequest) throws -> MigrationReport {
        guard let guest = req.vm, !guest.isEmpty else { throw RuntimeError("vm migrate needs a VM name") }
        guard let to = req.to, !to.isEmpty else { throw RuntimeError("vm migrate needs --to HOST") }
        guard let service = fabricService, let me = hostName, let myHost = target.hosts.first(where: { $0.name == me }) else {
            throw RuntimeError(target.etcd == nil
                ? "vm migrate needs the fabric's state in etcd: topology '\(target.name)' has no 'etcd:' (live migration and HA are coordinated through etcd)"
                : "vm migrate needs this instance to run a host of the fabric (up --host)")
        }
        let started = Date()
        let plan: MigrationPlan
        do { plan = try service.checkMigration(guest: guest, to: to) }
        catch let r as MigrationRefusal { throw RuntimeError("cannot migrate \(guest) to \(to): \(r)") }
        var committed = false
        defer { if !committed { service.abortMigration(plan) } }
        guard let vm = vms[guest], vm.status.state == .running else {
            throw RuntimeError("cannot migrate \(guest) to \(to): it does not run on this host (\(me))\(vms[guest].map { " (state \($0.status.state.rawValue))" } ?? "")")
        }
        // The NICs' backend, for the report (a VM with NICs of both kinds says both).
        let backend = Set((topology.guests.first { $0.name == guest }?.nics ?? []).map(\.backend.rawValue)).sorted().joined(separator: "+")
        let store = service.store
        let lease = service.currentLease
        let id = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        var record = MigrationRecord(id: id, guest: guest, from: me, to: to, state: .requested, at: Date().timeIntervalSince1970)
        var revision: Int64
        do { revision = try store.beginMigration(record, lease: lease, timeout: 3) }
        catch let r as MigrationRefusal { throw RuntimeError("cannot migrate \(guest) to \(to): \(r)") }
        catch { throw RuntimeError("cannot migrate \(guest) to \(to): etcd: \(error)") }
        log("vm migrate: \(guest) to \(to) requested (migration \(id))")

        /// Marks the record failed (so the destination stops), waits briefly for the
        /// destination to clear it, and throws. The guest keeps running here.
        func fail(_ why: String) -> RuntimeError {
            var r = record
            r.state = .failed; r.error = "\(me): \(why)"; r.at = Date().timeIntervalSince1970
            _ = try? store.updateMigration(r, since: revision, lease: lease, timeout: 2)
            for _ in 0..<30 {
                guard let m = try? store.migration(of: guest, timeout: 1), m.record.id == id else { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            try? store.endMigration(guest: guest, id: id, timeout: 2)
            log("vm migrate: \(guest) to \(to) failed: \(why); \(guest) keeps running here")
            return RuntimeError("migration of \(guest) to \(to) failed: \(why); \(guest) keeps running on \(me)")
        }

        // The destination prepares: ports, QEMU waiting, a listener.
        let readyBy = Date().addingTimeInterval(Fabric.migrationPrepareTimeout)
        while true {
            if isStopping { throw fail("this host is going down") }
            switch Result(catching: { try store.migration(of: guest, timeout: 1) }) {
            case .success(let m?):
                guard m.record.id == id else { throw fail("another migration of \(guest) replaced this one") }
                if m.record.state == .ready, m.record.listen != nil { record = m.record; revision = m.modRevision; break }
                if m.record.state == .failed { throw fail("the destination gave up: \(m.record.error ?? "no reason given")") }
            case .success(nil):
                throw fail("the destination gave up (the migration record is gone)")
            case .failure:
                break   // etcd did not answer this time: ask again until the deadline
            }
            if record.state == .ready { break }
            if Date() > readyBy { throw fail("host \(to) did not prepare within \(Int(Fabric.migrationPrepareTimeout)) s (is its daemon running this topology?)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard let (address, port) = Fabric.splitHostPort(record.listen!) else { throw fail("bad listen address '\(record.listen!)' from \(to)") }

        // QEMU's stream, from this host's underlay to the destination's.
        let qmp: QMPClient
        do {
            let fd = try TCPStream.connect(address: address, port: port, namespace: myHost.netns, timeout: 10)
            defer { TCPStream.close(fd) }
            qmp = try QMPClient(path: vm.paths.qmpSocket, timeout: 10)
            try qmp.sendDescriptor(fd, name: Fabric.migrationFDName)
            try qmp.migrate(uri: "fd:\(Fabric.migrationFDName)")
        } catch { throw fail("cannot start QEMU's migration to \(record.listen!): \(error)") }
        defer { qmp.close() }
        let migrationStarted = Date()
        var info = MigrationInfo(status: "setup")
        var lastRecordCheck = Date()
        while true {
            do { info = try qmp.queryMigrate() } catch { throw fail("QMP: \(error)") }
            if info.status == "completed" { break }
            if info.isFinished { throw fail("QEMU's migration \(info.status)\(info.error.map { ": \($0)" } ?? "")") }
            if Date().timeIntervalSince(migrationStarted) > Fabric.migrationTimeout {
                try? qmp.cancelMigration()
                throw fail("QEMU's migration did not finish within \(Int(Fabric.migrationTimeout)) s (the guest dirties memory faster than it is sent?); cancelled")
            }
            if Date().timeIntervalSince(lastRecordCheck) > 0.5 {
                lastRecordCheck = Date()
                if let m = try? store.migration(of: guest, timeout: 0.5), m.record.id == id, m.record.state == .failed {
                    try? qmp.cancelMigration()
                    throw fail("the destination gave up: \(m.record.error ?? "no reason given")")
                }
            }
            Thread.sleep(forTimeInterval: 0.02)
        }

        // The switch-over: the guest is paused on both hosts until etcd records it.
        let completedAt = Date()
        let counters = portCarry(of: guest)
        var outcome = commit(service, plan, record: record, revision: revision, counters: counters)
        while outcome == nil {
            // The answer was lost: fence a late commit off by failing the record at the
            // revision the commit compares against. Whoever changes it first decides.
            var fence = record
            fence.state = .failed; fence.error = "\(me): etcd unreachable at the switch-over"; fence.at = Date().timeIntervalSince1970
            do {
                if try store.updateMigration(fence, since: revision, lease: lease, timeout: 2) != nil {
                    outcome = false   // fenced: the commit can no longer happen
                } else {
                    outcome = commitOutcome(service, plan, id: id)   // changed: committed, or failed by the destination
                }
            } catch {
                log("vm migrate: \(guest): etcd unreachable at the switch-over; the guest stays paused until etcd tells whether it moved")
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        guard outcome == true else {
            try? qmp.cont()
            throw fail("the switch-over could not be recorded in etcd (the placement or the destination changed, the destination gave up, or etcd became unreachable)")
        }
        committed = true
        let commitMilliseconds = Date().timeIntervalSince(completedAt) * 1000
        // This copy is paused and no longer placed here: it goes, with its ports.
        qmp.close()
        removeFromHere([guest], why: "migrated to \(to)")
        let total = Date().timeIntervalSince(started)
        log("vm migrate: \(guest) now runs on \(to): \(String(format: "%.2f", total)) s in all; QEMU \(info.totalTimeMilliseconds.map { "\($0) ms" } ?? "?"), "
            + "downtime \(info.downtimeMilliseconds.map { "\($0) ms" } ?? "?") by QEMU, commit \(String(format: "%.0f", commitMilliseconds)) ms")
        return MigrationReport(guest: guest, from: me, to: to, totalSeconds: (total * 1000).rounded() / 1000,
                               qemuTotalMilliseconds: info.totalTimeMilliseconds, qemuDowntimeMilliseconds: info.downtimeMilliseconds,
                               transferredBytes: info.transferredBytes, commitMilliseconds: (commitMilliseconds * 10).rounded() / 10,
                               backend: backend)
    }

    /// The commit: true when it was recorded, false when etcd said no, nil when etcd could
    /// not be reached (the outcome is unknown until fenced, see `migrate`).
    private func commit(_ service: FabricService, _ plan: MigrationPlan, record: MigrationRecord, revision: Int64,
                        counters: [String: PortCarry]) -> Bool? {
        do {
            try service.commitMigration(plan, record: record, recordRevision: revision, counters: counters)
            return true
        } catch MigrationRefusal.changedMeanwhile {
            return false   // definitive: compares only ever become false, so no retry lands later
        } catch {
            return nil
        }
    }

    /// Whether a commit whose answer was lost happened: the placement says so (then the
    /// service's bookkeeping is completed), the record says failed or the placement still
    /// names this host (not), or etcd cannot tell (nil).
    private func commitOutcome(_ service: FabricService, _ plan: MigrationPlan, id: String) -> Bool? {
        guard let snap = try? service.store.snapshot(timeout: 2) else { return nil }
        if let p = snap.placements[plan.guest]?.record, p.host == plan.to, p.reason == .migration, p.from == plan.from {
            // Recorded: the retried commit recognises its own write and completes the bookkeeping.
            try? service.commitMigration(plan)
            return true
        }
        return false
    }

    /// Every port of `guest` here with its counters, by port name (`GUEST.ethN`).
    func portCarry(of guest: String) -> [String: PortCarry] {
        guard let dp = datapath else { return [:] }
        var out: [String: PortCarry] = [:]
        for snap in dp.snapshots() {
            guard let plan = snap.plan else { continue }
            for (i, p) in plan.ports.enumerated() where p.name.hasPrefix(guest + ".") {
                let c = snap.counters(port: i)
                out[p.name] = PortCarry(rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames, txBytes: c.txBytes,
                                        drops: Dictionary(uniqueKeysWithValues: c.drops.map { ($0.key.description, $0.value) }))
            }
        }
        return out
    }

    /// Adds carried counters to the ports of the same names here (under the datapath lock).
    func addCarried(_ carried: [String: PortCarry]) {
        guard let dp = datapath, !carried.isEmpty else { return }
        let reasons = Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0.description, $0) })
        let snapshots = carried.mapValues { c in
            PortCounters.Snapshot(rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames, txBytes: c.txBytes,
                                  drops: Dictionary(c.drops.compactMap { k, v in reasons[k].map { ($0, v) } }, uniquingKeysWith: +))
        }
        dp.withLock { lock in
            for sw in lock.switches {
                for (i, p) in sw.plan.ports.enumerated() { if let s = snapshots[p.name] { sw.counters(lock).add(s, toPort: i) } }
            }
        }
    }

    /// `ADDRESS:PORT` or `[IPv6]:PORT`.
    static func splitHostPort(_ s: String) -> (String, UInt16)? {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    // MARK: - Destination

    /// The service's `incomingMigration`: prepares this host as the destination of
    /// `record` on a new thread (see the type's essay).
    func acceptIncoming(_ record: MigrationRecord, revision: Int64, lease: Int64) {
        Thread.detachNewThread { [self] in receive(record, revision: revision, lease: lease) }
    }

    private func receive(_ request: MigrationRecord, revision start: Int64, lease: Int64) {
        let guest = request.guest
        guard let service = fabricService, let store = fabricService?.store else { return }
        var revision = start
        var record = request
        var supervisor: VMSupervisor?
        var qmp: QMPClient?
        var listener: Int32 = -1
        var prepared = false
        let file = currentFile

        /// Undoes the preparation (QEMU stopped, ports removed), marks the record failed if
        /// it is still this attempt's, and reports the end to the service.
        func abort(_ why: String, mark: Bool = true) {
            TCPStream.close(listener); listener = -1
            qmp?.close()
            supervisor?.stop(gracePeriod: 0, powerButton: false)
            if mark {
                var r = record
                r.state = .failed; r.error = "\(hostName ?? "destination"): \(why)"; r.at = Date().timeIntervalSince1970
                _ = try? store.updateMigration(r, since: revision, lease: lease, timeout: 2)
            }
            if prepared {
                reloading.lock()
                incoming.remove(guest)
                if file.guests.first(where: { $0.name == guest })?.host == hostName { notHere.insert(guest) } else { movedHere.remove(guest) }
                if !isStopping, datapath != nil { _ = try? apply(file, file: file.file) }
                reloading.unlock()
            }
            service.incomingFinished(guest, succeeded: false)
            // A record marked failed stays for the source to read why (it removes it, or it
            // goes with the source's lease); one this side did not mark is removed here.
            if !mark { try? store.endMigration(guest: guest, id: request.id, timeout: 2) }
            log("vm migrate: incoming \(guest) from \(request.from) abandoned: \(why)")
        }

        guard let me = hostName, let myHost = file.hosts.first(where: { $0.name == me }),
              let g = file.guests.first(where: { $0.name == guest }), g.kind == .qemu else {
            abort("\(guest) is not a QEMU guest of this host's topology file"); return
        }
        // 1. Ports (same port group, MAC and policies: the same file), no boot.
        reloading.lock()
        guard !isStopping, datapath != nil else { reloading.unlock(); abort("this host is going down"); return }
        if topology.guests.contains(where: { $0.name == guest }) {
            reloading.unlock(); abort("\(guest) already has ports on this host"); return
        }
        incoming.insert(guest)
        if g.host == me { notHere.remove(guest) } else { movedHere.insert(guest) }
        prepared = true
        do {
            let applied = try apply(file, file: file.file, boot: false)
            guard applied.topology?.guests.contains(where: { $0.name == guest }) == true, let t = applied.topology else {
                throw RuntimeError("its ports could not be created here" + (applied.failures.isEmpty ? "" : ": " + applied.failures.joined(separator: "; ")))
            }
            supervisor = try prepareVMs([g], of: t).first
            guard supervisor != nil else { throw RuntimeError("its TAP devices are missing") }
        } catch {
            reloading.unlock(); abort("\(error)"); return
        }
        reloading.unlock()

        // 2. QEMU waiting for the stream, paused afterwards; a listener on the underlay.
        do {
            let (fd, port) = try TCPStream.listen(address: myHost.underlay.description, namespace: myHost.netns)
            listener = fd
            try supervisor!.startIncoming()
            record.state = .ready
            record.listen = myHost.underlay.isIPv6 ? "[\(myHost.underlay)]:\(port)" : "\(myHost.underlay):\(port)"
            record.at = Date().timeIntervalSince1970
            guard let rev = try store.updateMigration(record, since: revision, lease: lease, timeout: 3) else {
                abort("the request changed before this host was ready", mark: false); return
            }
            revision = rev
            log("vm migrate: incoming \(guest) from \(request.from): QEMU waits on \(record.listen!)")
            guard let conn = try TCPStream.accept(fd, timeout: 30) else { abort("the source did not connect within 30 s"); return }
            defer { TCPStream.close(conn) }
            TCPStream.close(fd); listener = -1
            let client = try QMPClient(path: supervisor!.paths.qmpSocket, timeout: 10)
            qmp = client
            try client.sendDescriptor(conn, name: Fabric.migrationFDName)
            try client.migrateIncoming(uri: "fd:\(Fabric.migrationFDName)")
        } catch {
            abort("\(error)"); return
        }

        // 3. Wait for the switch-over in etcd (or its failure).
        let giveUp = Date().addingTimeInterval(Fabric.migrationTimeout + 60)
        while true {
            if isStopping { abort("this host is going down"); return }
            let state = supervisor!.status.state
            if state == .failed || state == .stopped {
                abort("QEMU ended while receiving (\(supervisor!.status.lastError ?? state.rawValue); see \(supervisor!.paths.processLog))"); return
            }
            do {
                let m = try store.migration(of: guest, timeout: 1)
                if let m, m.record.id == request.id {
                    if m.record.state == .committed { resume(guest, from: request.from, counters: m.record.counters ?? [:], qmp: qmp!, supervisor: supervisor!, id: request.id); return }
                    if m.record.state == .failed { abort("the source gave up: \(m.record.error ?? "no reason given")", mark: false); return }
                    revision = m.modRevision
                } else {
                    // Gone: the source finished (or died) after committing, or gave up.
                    let p = try store.snapshot(timeout: 2).placements[guest]?.record
                    if let p, p.host == me, p.reason == .migration, p.from == request.from {
                        resume(guest, from: request.from, counters: [:], qmp: qmp!, supervisor: supervisor!, id: request.id); return
                    }
                    abort("the source's request vanished (its host died or its lease expired) before the switch-over", mark: false); return
                }
            } catch {
                // etcd unreachable: keep waiting (the source cannot commit either).
            }
            if Date() > giveUp {
                var r = record
                r.state = .failed; r.error = "\(me): no switch-over within \(Int(Fabric.migrationTimeout + 60)) s"; r.at = Date().timeIntervalSince1970
                if (try? store.updateMigration(r, since: revision, lease: lease, timeout: 2)) != nil {
                    abort("no switch-over within \(Int(Fabric.migrationTimeout + 60)) s", mark: false); return
                }
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// The switch-over is recorded: resume the guest here, take over its counters.
    private func resume(_ guest: String, from: String, counters: [String: PortCarry], qmp: QMPClient, supervisor: VMSupervisor, id: String) {
        do { try qmp.cont() } catch { log("vm migrate: incoming \(guest): QMP cont failed: \(error)") }
        qmp.close()
        supervisor.incomingResumed()
        addCarried(counters)
        _ = reloading.withLock { incoming.remove(guest) }
        fabricService?.incomingFinished(guest, succeeded: true)
        try? fabricService?.store.endMigration(guest: guest, id: id, timeout: 2)
        log("vm migrate: \(guest) migrated in from \(from) and runs here; its ports took over \(counters.count) port counter set(s)")
    }
}

/// The reply to `vm migrate`: what moved where, and how long it took.
public struct MigrationReport: Codable, Equatable {
    public var guest: String
    public var from: String
    public var to: String
    /// Seconds from the request to the source's ports gone.
    public var totalSeconds: Double
    /// QEMU's own figures: the migration's total time and the time it had the guest stopped
    /// for the final copy (ms), and the bytes of RAM it sent.
    public var qemuTotalMilliseconds: Int?
    public var qemuDowntimeMilliseconds: Int?
    public var transferredBytes: Int?
    /// Milliseconds from QEMU's completion to the commit in etcd (the guest paused on both
    /// hosts meanwhile; the destination resumes it within 20 ms after).
    public var commitMilliseconds: Double
    /// The NICs' backend: `tap`, `vhost-user`, or `tap+vhost-user` for a VM with both.
    public var backend: String
}
