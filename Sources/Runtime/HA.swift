import FabricStore
import Foundation
import LinuxIO
import Topology
import VMRunner

/// The fabric's shared state in etcd, wired into a running host: membership under
/// a lease, HA (VMware HA semantics) and the placement that decides which guests this host
/// runs. The decisions themselves live in the FabricStore module (`FabricService`, read its
/// comments); this file turns them into ports, namespaces and QEMU processes.
///
/// ```
///   up: register (lease) ─▶ read placement ─▶ StartupPlan ─▶ notHere / movedHere ─▶ apply
///        │                                              (this host's part of the file,
///        │                                               adjusted by the placement)
///        └─▶ tapestry-lease: keep-alive, isolation check ──▶ stopGuests(.isolation): QEMU off
///            tapestry-fabric: poll, claim HA restarts, reconcile ──▶ startGuest / stopGuests
///                                                       (.placedElsewhere), incomingMigration
/// ```
/// - Forwarding never waits on etcd: no etcd call runs under the datapath lock or on a
///   datapath thread; the service's own threads, the control threads (`vm migrate`) and
///   the threads started here make them. An etcd outage stops HA decisions and
///   migrations; forwarding, and the guests that run, go on.
/// - Callbacks hand their work to a new thread (a VM boot takes 10–20 s under TCG) that
///   applies the changed part under `reloading` and boots VMs after letting it go.
/// - Without `etcd:` none of this runs and nothing changes.
///
/// Decisions recorded here:
/// - etcd is reached from the host's `netns:` when it has one (the host's stack is its
///   network: cutting its underlay link cuts its etcd path and its isolation addresses, as
///   on a separate machine); otherwise from the daemon's own namespace.
/// - TLS: the FabricStore client's own (OpenSSL through CFabric; `etcd.tls.ca` absent means
///   Debian's system bundle, /etc/ssl/certs/ca-certificates.crt).
/// - A guest of a dead host moves only to a host that runs every switch of its NICs (the
///   file puts a port of that switch there), so the overlay's tunnels reach its port.
/// - On one machine, the namespace a dead host left for a netns guest is taken over (deleted
///   and made again) only by the host etcd's placement names: the service calls `startGuest`
///   only for guests placed here. A namespace is deleted only while its name still refers to
///   the one this instance made (nsfs inode), and `cleanStale` leaves alone a namespace that
///   another live instance lists.
extension Fabric {
    /// What the fabric store needs of the file `t`, with `hash` (FabricSpec.hash of its bytes).
    static func fabricSpec(of t: Topology, hash: String) -> FabricSpec {
        let hosts = t.hosts.map { h in
            FabricHost(name: h.name, underlay: h.underlay.description, cpus: h.cpus, memoryMiB: h.memoryMiB,
                       switches: t.switchNames(onHost: h.name))
        }
        let guests: [FabricGuest] = t.guests.compactMap { g in
            guard let host = g.host else { return nil }
            let kind: FabricGuestKind
            switch g.kind {
            case .qemu: kind = .qemu
            case .netns: kind = .netns
            case .vhostUser: kind = .external
            }
            return FabricGuest(name: g.name, kind: kind, host: host, cpus: kind == .qemu ? g.cpus : 0,
                               memoryMiB: kind == .qemu ? g.memoryMiB : 0,
                               restart: FabricRestart(rawValue: g.restart.rawValue) ?? .never,
                               switches: Set(g.nics.map(\.switchName)))
        }
        return FabricSpec(topology: t.name, topologyHash: hash, hosts: hosts, guests: guests)
    }

    /// The file topology last applied (a reload replaces it).
    var currentFile: Topology { view.withLock { _fileTopology } ?? target }

    /// With `etcd:` and a host: registers this host, reads the placement and sets the
    /// overrides of this host's part (`notHere`, `movedHere`) so that `apply` starts only what
    /// the startup plan allows. Call with `reloading` held, before the first `apply`.
    /// - Throws: `RuntimeError` for an etcd configuration that cannot work (bad TLS files) or
    ///   another live daemon registered as this host. An unreachable etcd is no error: the
    ///   plan then withholds every guest that may have moved, and says why.
    func startFabricService() throws {
        guard let etcd = target.etcd, let h = hostName, let me = target.hosts.first(where: { $0.name == h }) else { return }
        guard let bytes = FileManager.default.contents(atPath: target.file) else {
            throw RuntimeError("cannot read \(target.file) to hash it for the fabric")
        }
        let spec = Fabric.fabricSpec(of: target, hash: FabricSpec.hash(of: Array(bytes)))
        let tls = etcd.tls.map { TLSFiles(ca: $0.ca ?? "/etc/ssl/certs/ca-certificates.crt", cert: $0.cert, key: $0.key) }
        let configuration = EtcdConfiguration(endpoints: etcd.endpoints.map(\.description), tls: tls,
                                              namespace: me.netns.map { "/run/netns/\($0)" })
        let client: EtcdClient
        do { client = try EtcdClient(configuration) } catch { throw RuntimeError("etcd: \(error)") }
        var options = FabricOptions()
        options.isolationAddresses = target.ha?.isolationAddresses.map(\.description) ?? []
        options.isolationResponse = target.ha?.isolationResponse == .powerOff ? .powerOff : .none
        let service: FabricService
        do {
            service = try FabricService(spec: spec, host: h, store: FabricStore(client: client, topology: target.name),
                                        options: options, callbacks: fabricCallbacks())
        } catch { throw RuntimeError("fabric: \(error)") }
        log("fabric: etcd \(configuration.endpoints.joined(separator: ", "))\(me.netns.map { " (reached from netns \($0))" } ?? ""), "
            + "topology hash \(spec.topologyHash.prefix(12)), lease TTL \(options.leaseTTL) s, grace \(Int(options.grace)) s, "
            + "isolation response \(options.isolationResponse.rawValue)"
            + (options.isolationAddresses.isEmpty ? "" : " (isolation addresses \(options.isolationAddresses.joined(separator: ", ")))"))
        let plan: StartupPlan
        do { plan = try service.start() } catch { throw RuntimeError("fabric: \(error)") }
        fabricService = service
        let mine = Set(target.guests.filter { $0.host == h }.map(\.name))
        notHere = mine.subtracting(plan.start)
        movedHere = Set(plan.start).subtracting(mine)
        if !movedHere.isEmpty { log("fabric: etcd places \(movedHere.sorted().joined(separator: ", ")) here") }
    }

    /// `down`: stops the service's threads and releases this host in etcd (its placements and
    /// registration), so no survivor restarts the guests stopped on purpose.
    func stopFabricService() {
        guard let s = fabricService else { return }
        s.stop(release: true)
        fabricService = nil
    }

    private func fabricCallbacks() -> FabricCallbacks {
        FabricCallbacks(
            startGuest: { [weak self] g in self?.placedHere(g) ?? false },
            stopGuests: { [weak self] gs, reason in self?.stopForFabric(gs, reason: reason) },
            log: { [weak self] line in self?.log(line) },
            incomingMigration: { [weak self] record, revision, lease in self?.acceptIncoming(record, revision: revision, lease: lease) })
    }

    /// The service's `startGuest`: etcd places `guest` here and it does not run. Starts it on
    /// another thread; true when that start is under way.
    private func placedHere(_ guest: String) -> Bool {
        guard !isStopping, currentFile.guests.contains(where: { $0.name == guest }) else { return false }
        Thread.detachNewThread { [self] in startPlacedGuest(guest) }
        return true
    }

    /// Makes `guest` run here: adds it to this host's part (taking over a leftover namespace
    /// of a netns guest), applies, and boots a QEMU guest outside `reloading`. A guest whose
    /// ports are already here (a VM powered off by the isolation response) is booted again.
    /// A failure is logged and reported to the service (`guestStopped`).
    func startPlacedGuest(_ guest: String) {
        let file = currentFile
        guard let g = file.guests.first(where: { $0.name == guest }) else { return }
        reloading.lock()
        guard !isStopping, datapath != nil else { reloading.unlock(); return }
        if topology.guests.contains(where: { $0.name == guest }) {
            let s = vms[guest]
            reloading.unlock()
            guard g.kind == .qemu, let s, [.stopped, .failed].contains(s.status.state) else { return }
            do { try s.start(); log("fabric: \(guest) booted again on its ports (etcd places it here)") }
            catch { log("fabric: could not boot \(guest): \(error)"); fabricService?.guestStopped(guest) }
            return
        }
        if g.kind == .netns && NetworkNamespace.exists(guest) && !createdNamespaces.contains(guest) {
            // Left by the host that ran it (on this machine), which is dead or lost the guest
            // to this host in etcd: the placement names this host, and only this host.
            log("fabric: taking over namespace \(guest), left behind by the host that ran it (etcd places \(guest) here)")
            do { try NetworkNamespace.delete(guest) } catch { log("fabric: cannot take over namespace \(guest): \(error)") }
        }
        let wasNotHere = notHere, wasMovedHere = movedHere
        if g.host == hostName { notHere.remove(guest) } else { movedHere.insert(guest) }
        var supervisors: [VMSupervisor] = []
        do {
            let applied = try apply(file, file: file.file, boot: false)
            if !applied.failures.isEmpty { log("fabric: starting \(guest): " + applied.failures.joined(separator: "; ")) }
            if let t = applied.topology { supervisors = try prepareVMs(applied.pendingBoots, of: t) }
        } catch {
            notHere = wasNotHere; movedHere = wasMovedHere
            reloading.unlock()
            log("fabric: could not start \(guest): \(error)")
            fabricService?.guestStopped(guest)
            return
        }
        reloading.unlock()
        do {
            try bootVMs(supervisors)
            log("fabric: \(guest) runs here now")
        } catch {
            log("fabric: could not boot \(guest): \(error)")
            fabricService?.guestStopped(guest)
        }
    }

    /// The service's `stopGuests`: the copy here goes. Its QEMU is stopped hard (QMP `quit`,
    /// no ACPI: for the isolation response the survivors restart it soon after), at once and
    /// in parallel, before anything waits for `reloading`; then its ports (and namespace,
    /// while it is still this instance's) are removed. Should etcd place it here again (an
    /// isolated host that nobody relieved), the service's `startGuest` brings it back.
    private func stopForFabric(_ guests: [String], reason: GuestStopReason) {
        Thread.detachNewThread { [self] in
            let list = vms
            let group = DispatchGroup()
            for g in guests {
                guard let s = list[g] else { continue }
                group.enter()
                Thread.detachNewThread { s.stop(gracePeriod: 0, powerButton: false); group.leave() }
            }
            group.wait()
            if case .isolation = reason { log("fabric: powered off \(guests.joined(separator: ", ")) (\(reason))") }
            removeFromHere(guests, why: "\(reason)")
        }
    }

    /// Takes `guests` out of this host's part: QEMU stopped hard, then an apply that removes
    /// their ports (and namespaces, while still this instance's). Takes `reloading`.
    func removeFromHere(_ guests: [String], why: String) {
        reloading.lock()
        defer { reloading.unlock() }
        guard !isStopping, datapath != nil else { return }
        let list = vms
        let file = currentFile
        for g in guests {
            list[g]?.stop(gracePeriod: 0, powerButton: false)
            if file.guests.first(where: { $0.name == g })?.host == hostName { notHere.insert(g) } else { movedHere.remove(g) }
        }
        do {
            let applied = try apply(file, file: file.file)
            log("fabric: removed \(guests.joined(separator: ", ")) from this host (\(why))"
                + (applied.failures.isEmpty ? "" : "; " + applied.failures.joined(separator: "; ")))
        } catch {
            log("fabric: could not remove \(guests.joined(separator: ", ")) (\(why)): \(error)")
        }
    }

    // MARK: - Namespaces on one machine

    /// The nsfs inode of /run/netns/NAME (what `ip netns` bind-mounts), or nil.
    static func namespaceInode(_ name: String) -> UInt64? { NetworkNamespace.inode(name) }

    /// Deletes namespace `name` unless the name now refers to another namespace than the
    /// one this instance created (another host of the fabric on this machine took it over).
    func deleteOwnNamespace(_ name: String) {
        defer { namespaceInodes[name] = nil }
        if let mine = namespaceInodes[name], let now = Fabric.namespaceInode(name), mine != now {
            log("namespace \(name) belongs to another instance now (HA re-created the guest there); left alone")
            return
        }
        do { try NetworkNamespace.delete(name) } catch { log("warning: cannot delete namespace \(name): \(error)") }
    }

    /// Namespaces listed by live instances other than `stem` (on this machine).
    static func namespacesOfOtherLiveInstances(than stem: String) -> Set<String> {
        var out = Set<String>()
        for other in RunDirectory.knownInstances() where other != stem {
            if let s = InstanceState.read(stem: other), s.isAlive { out.formUnion(s.namespaces) }
        }
        return out
    }

    // MARK: - Status

    /// The fabric as this host sees it, for `status` (nil without etcd).
    func fabricReport() -> FabricReport? {
        guard let s = fabricService else { return nil }
        let st = s.status
        let endpoints = target.etcd?.endpoints.map(\.description) ?? []
        return FabricReport(
            host: st.host, registered: st.registered, lease: st.lease == 0 ? nil : String(st.lease, radix: 16), isolated: st.isolated,
            etcdEndpoints: endpoints, topologyHash: s.spec.topologyHash,
            hosts: st.hosts.map { h in
                .init(name: h.name, alive: h.alive, underlay: h.underlay, pid: h.pid, topologyHash: h.topologyHash,
                      sameTopology: h.sameTopology, guests: h.guests)
            },
            unplaceable: st.unplaceable, withheld: st.withheld, lastError: st.lastError,
            migrations: st.migrations.map { .init(guest: $0.guest, from: $0.from, to: $0.to, state: $0.state.rawValue, error: $0.error) },
            lastReadSecondsAgo: st.lastReadSecondsAgo.map { ($0 * 10).rounded() / 10 })
    }
}
