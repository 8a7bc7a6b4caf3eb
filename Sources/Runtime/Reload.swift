import Core
import Foundation
import LinuxIO
import Model
import Netlink
import Topology
#if canImport(Glibc)
import Glibc
#endif

/// The reply to `reload`: what changed (names, in file order).
public struct ReloadReport: Codable, Equatable {
    public var name: String
    public var file: String
    /// One line: `guests +c -d ~e; switches ~sw0`, or `no changes`.
    public var summary: String
    public var guestsAdded: [String]
    public var guestsRemoved: [String]
    public var guestsChanged: [String]
    public var switchesAdded: [String]
    public var switchesRemoved: [String]
    public var switchesChanged: [String]

    init(name: String, file: String, diff d: TopologyDiff) {
        self.name = name; self.file = file; summary = d.summary
        guestsAdded = d.guestsAdded; guestsRemoved = d.guestsRemoved; guestsChanged = d.guestsChanged
        switchesAdded = d.switchesAdded; switchesRemoved = d.switchesRemoved; switchesChanged = d.switchesChanged
    }
}

extension SwitchRuntime {
    /// Takes over what `old` (the same switch before a reload) knew about the ports the two
    /// share, so untouched traffic is neither flooded nor uncounted after the swap.
    ///
    /// A port is shared when it has the same name *and* the same I/O object (a guest that was
    /// re-created gets fresh counters and table entries). Dynamic MAC entries move to the
    /// port's new index when the port is still a member of the entry's VLAN (and is not a
    /// mirror destination, which never learns); they keep their age, and are replayed oldest
    /// first so the per-port LRU order survives. Static entries come from the new plan.
    /// Runs under the datapath lock (`Datapath.replaceSwitches`).
    func carryOver(from old: SwitchRuntime, now: Int64) {
        var newIndex = Array(repeating: -1, count: old.plan.ports.count)
        for (i, p) in old.plan.ports.enumerated() {
            guard let j = plan.portIndex(named: p.name), ports[j] === old.ports[i] else { continue }
            newIndex[i] = j
            counters.copy(port: i, of: old.counters, toPort: j)
        }
        let entries = old.table.entries(now: now).filter { !$0.isStatic }.sorted { $0.age > $1.age }
        for e in entries {
            let j = newIndex[e.port]
            guard j >= 0, plan.ports[j].mode.isMember(e.vlan), !plan.isMirrorDestination[j] else { continue }
            table.learn(vlan: e.vlan, mac: e.mac, port: j, now: now - e.age)
        }
    }
}

extension Fabric {
    /// `{"command":"reload","file":"/abs/path"}`.
    func reload(_ req: ControlRequest) throws -> ReloadReport {
        guard let file = req.file, !file.isEmpty else { throw RuntimeError("reload needs a file") }
        return try reload(path: file)
    }

    /// Applies the topology in `path` to the running instance as a diff (live reload).
    ///
    /// Nothing changes unless the file is valid, keeps the topology's name, uses only what
    /// this version runs, and every guest it adds has free names (the checks of `up`). Then:
    /// ```
    ///   create added guests (namespace + TAPs, like up) ─▶ swap 1: new plans without the
    ///   changed guests ─▶ close the TAPs and delete the namespaces of removed and changed
    ///   guests ─▶ create changed guests again ─▶ swap 2 (only if any changed)
    /// ```
    /// A swap happens between two datapath batches; untouched ports keep their TAP (so their
    /// guests notice nothing), MAC entries and counters. If creating an added guest fails,
    /// what was created is removed and nothing changed. A changed guest whose re-creation
    /// fails is left out (reported as an error; the rest of the reload stands).
    public func reload(path: String) throws -> ReloadReport {
        reloading.lock(); defer { reloading.unlock() }
        guard let dp = datapath, !isStopping else { throw RuntimeError("topology '\(topology.name)' is not forwarding") }
        let new: Topology
        do { new = try TopologyLoader.load(path: path) } catch let e as TopologyErrors {
            throw RuntimeError(e.description)
        }
        let old = topology
        // Uplink NICs are opened once, by `up`: a reload keeps them as they are.
        for sw in new.switches {
            let before = old.switches.first { $0.name == sw.name }?.uplinks
            if !sameUplinks(before, sw.uplinks) {
                throw RuntimeError("\(path): the uplinks of switch '\(sw.name)' changed; a live reload does not change uplinks (run down and up)")
            }
        }
        for sw in old.switches where sw.uplinks != nil && !new.switches.contains(where: { $0.name == sw.name }) {
            throw RuntimeError("\(path): switch '\(sw.name)' has uplinks; a live reload does not remove them (run down and up)")
        }
        let diff: TopologyDiff
        do { diff = try Topology.diff(from: old, to: new) } catch { throw RuntimeError("\(path): \(error)") }
        let report = ReloadReport(name: new.name, file: path, diff: diff)
        guard !diff.isEmpty else {
            view.withLock { _topology.file = new.file }
            return report
        }
        // VMs are started by `up` only: a reload leaves them as they are.
        let vmChanges = (old.guests + new.guests).filter {
            $0.kind == .qemu && (diff.guestsAdded + diff.guestsRemoved + diff.guestsChanged).contains($0.name)
        }.map(\.name)
        if !vmChanges.isEmpty {
            throw RuntimeError("\(path): a live reload does not add, remove or change QEMU guests (\(Set(vmChanges).sorted().joined(separator: ", "))); run down and up")
        }
        let added = new.guests.filter { diff.guestsAdded.contains($0.name) }
        try preflight(added)

        // The TAPs in use, by port name; those of removed and changed guests retire.
        let current = plans
        var byPort: [String: PortIO] = [:]
        for (s, plan) in current.enumerated() { for (p, port) in plan.ports.enumerated() { byPort[port.name] = ports[s][p] } }
        let destroy = old.guests.filter { diff.guestsToDestroy.contains($0.name) }
        var retired: [PortIO] = []
        for g in destroy { for nic in g.nics { if let t = byPort.removeValue(forKey: nic.portName) { retired.append(t) } } }

        // 1. Added guests, recorded in the state file before they exist.
        let namespacesBefore = createdNamespaces
        try writeState(file: path, namespaces: createdNamespaces + added.filter { $0.kind == .netns }.map(\.name))
        var fresh: [String: PortIO] = [:]
        func undoAdded() {
            for t in fresh.values { t.close() }
            for ns in createdNamespaces where !namespacesBefore.contains(ns) { try? NetworkNamespace.delete(ns) }
            createdNamespaces = namespacesBefore
            try? writeState(file: old.file, namespaces: createdNamespaces)
        }
        do {
            let host = try NetlinkSocket()
            for g in added where g.kind == .netns { try createGuest(g, of: new, host: host, into: &fresh) }
            byPort.merge(fresh) { a, _ in a }
            // 2. Swap: the new plans, without the changed guests (their old ports go now).
            var stage = new
            stage.guests.removeAll { diff.guestsChanged.contains($0.name) }
            try swap(dp, to: stage, ports: byPort)
        } catch {
            undoAdded()
            throw error
        }

        // 3. Removed and changed guests: their ports are out of the datapath.
        for t in retired { t.close() }
        for g in destroy where createdNamespaces.contains(g.name) {
            do { try NetworkNamespace.delete(g.name) } catch { log("warning: cannot delete namespace \(g.name): \(error)") }
            createdNamespaces.removeAll { $0 == g.name }
        }

        // 4. Changed guests, created again from the new file.
        var failures: [String] = []
        if !diff.guestsChanged.isEmpty {
            var failed: Set<String> = []
            let host = try NetlinkSocket()
            for g in new.guests where diff.guestsChanged.contains(g.name) && g.kind == .netns {
                var made: [String: PortIO] = [:]
                do {
                    try createGuest(g, of: new, host: host, into: &made)
                    byPort.merge(made) { a, _ in a }
                } catch {
                    for t in made.values { t.close() }
                    if createdNamespaces.contains(g.name) { try? NetworkNamespace.delete(g.name); createdNamespaces.removeAll { $0 == g.name } }
                    failed.insert(g.name)
                    failures.append("guest \(g.name): \(error)")
                }
            }
            var final = new
            final.guests.removeAll { failed.contains($0.name) }
            do { try swap(dp, to: final, ports: byPort) } catch { failures.append("\(error)") }
        }

        // 5. A changed MTU reaches the guests that kept their NICs.
        let created = Set(diff.guestsToCreate)
        for sw in new.switches {
            guard let was = old.switches.first(where: { $0.name == sw.name }), was.mtu != sw.mtu else { continue }
            for g in new.guests where g.kind == .netns && !created.contains(g.name) {
                for nic in g.nics where nic.switchName == sw.name {
                    do {
                        let inside = try NetlinkSocket(namespace: g.name)
                        if let index = try inside.linkIndex(named: nic.interfaceName) {
                            try inside.configureLink(index: index, mtu: sw.mtu, up: true)
                        }
                    } catch { failures.append("\(nic.portName): cannot set MTU \(sw.mtu): \(error)") }
                }
            }
        }
        try? writeState(file: path, namespaces: createdNamespaces)
        log("reloaded from \(path): \(diff.summary)")
        if !failures.isEmpty { throw RuntimeError("reload applied in part (\(diff.summary)); failed: " + failures.joined(separator: "; ")) }
        return report
    }

    /// Compiles `t`, builds a switch runtime per plan over the TAPs in `ports`, and swaps it
    /// into the datapath; publishes `t`, its plans and TAPs in the same critical section.
    private func swap(_ dp: Datapath, to t: Topology, ports: [String: PortIO]) throws {
        let plans = t.compile()
        var rows: [[PortIO]] = []
        for plan in plans {
            var row: [PortIO] = []
            for p in plan.ports {
                guard let tap = ports[p.name] else { throw RuntimeError("internal error: no TAP for port \(p.name)") }
                row.append(tap)
            }
            rows.append(row)
        }
        let runtimes = zip(plans, rows).map { SwitchRuntime(plan: $0, ports: $1) }
        try dp.replaceSwitches(runtimes) {
            teamMonitor?.reinstallLocked()
            view.withLock { _topology = t; _plans = plans }
        }
        self.ports = rows
    }

    /// Same NICs, policy, lists and options (positions in the file do not matter).
    private func sameUplinks(_ a: UplinkSpec?, _ b: UplinkSpec?) -> Bool {
        guard var a, var b else { return a == nil && b == nil }
        a.nicPositions = []; b.nicPositions = []
        return a == b
    }

    /// Rewrites the instance's state file (what to clean up after a crash).
    private func writeState(file: String, namespaces: [String]) throws {
        try InstanceState(name: topology.name, file: file, pid: getpid(), processStart: processStartTime(getpid()),
                          namespaces: namespaces, links: []).write()
    }
}
