import Core
import Foundation
import LinuxIO
import Model
import Netlink
import Topology
import VhostUser
import VMRunner

/// The one build path: `up` applies its topology as a change from an empty one, `reload`
/// as a change from the running one, through the same `apply` — so the state file, the
/// join of plans to port I/O and the host checks exist once.
///
/// ```
///   diff(old, new) ─▶ host checks for what is added ─▶ state file: everything that will
///   exist ─▶ create added guests (namespaces + TAPs, VM ports), open added uplink NICs ─▶
///   swap 1: the new plans without the changed guests ─▶ stop removed/changed VMs, close
///   their ports, delete their namespaces, close removed NICs ─▶ create changed guests
///   again ─▶ swap 2 (if any changed) ─▶ boot added/changed VMs ─▶ MTU changes ─▶ state file
/// ```
/// A swap happens between two datapath batches; untouched ports keep their I/O (so their
/// guests notice nothing), MAC entries and counters. If creating what is added fails, what
/// was created is removed and nothing changed (for `up`, the caller then runs `down`). A
/// changed guest whose re-creation fails is left out (reported; the rest stands). A guest
/// with a port whose device vanished counts as changed: applying re-creates it.
extension Fabric {
    /// What `apply` did, for the reload report and the log.
    struct Applied {
        var diff: TopologyDiff
        var failures: [String]
        /// With `boot: false`, the QEMU guests that are new or changed, to boot by the caller
        /// (after letting `reloading` go), from `topology`.
        var pendingBoots: [GuestSpec] = []
        var topology: Topology? = nil
    }

    /// Makes `new` the running topology (see the type's essay). Call with `reloading` held.
    /// - boot: false leaves the VMs to boot to the caller (`Applied.pendingBoots`), so that
    ///   a boot (10–20 s under TCG) does not hold `reloading`: the fabric's HA restarts.
    ///   Guests in `incoming` are never booted (their QEMU receives a migration).
    func apply(_ fileTopology: Topology, file: String, boot: Bool = true) throws -> Applied {
        guard let dp = datapath else { throw RuntimeError("topology '\(fileTopology.name)' is not forwarding") }
        // With `hosts:`, this host's part: its guests, its switches, its tunnels.
        let part = try runningPart(of: fileTopology)
        let new = part.topology
        let old = topology
        let tunnelPlan = try tunnelChanges(to: part.tunnels, of: fileTopology)
        var diff: TopologyDiff
        do { diff = try Topology.diff(from: old, to: new) } catch { throw RuntimeError("\(file): \(error)") }
        // Guests whose port device vanished are re-created.
        for g in vanishedGuests() where new.guests.contains(where: { $0.name == g }) && !diff.guestsChanged.contains(g)
            && !diff.guestsAdded.contains(g) && !diff.guestsRemoved.contains(g) {
            diff.guestsChanged.append(g)
        }
        let oldNICs = Fabric.uplinkNICs(old), newNICs = Fabric.uplinkNICs(new)
        let uplinksChanged = old.switches.map { ($0.name, $0.uplinks.map(Fabric.comparable)) }.filter { $0.1 != nil }.map { "\($0.0)=\($0.1!)" }
            != new.switches.map { ($0.name, $0.uplinks.map(Fabric.comparable)) }.filter { $0.1 != nil }.map { "\($0.0)=\($0.1!)" }
        if diff.isEmpty && !uplinksChanged && tunnelPlan.isEmpty {
            view.withLock { _topology.file = file; _fileTopology = fileTopology }
            return Applied(diff: diff, failures: [])
        }
        let added = new.guests.filter { diff.guestsAdded.contains($0.name) }
        // Host checks for what is added: free names, existing NICs.
        try preflight(added, of: new)
        let nicsAdded = newNICs.filter { n in !oldNICs.contains { $0.name == n.name && $0.mtu == n.mtu } }
        let nicsRemoved = oldNICs.filter { o in !newNICs.contains { $0.name == o.name && $0.mtu == o.mtu } }
        let missing = Fabric.hostProblems(of: new).filter { p in nicsAdded.contains { p.message.contains("'\($0.name)'") } }
        if !missing.isEmpty { throw RuntimeError(missing.map(\.description).joined(separator: "\n")) }

        // The ports in use, by name; those of removed and changed guests retire.
        let destroy = old.guests.filter { diff.guestsToDestroy.contains($0.name) }
        var byPort = portsByName
        var retired: [PortIO] = []
        for g in destroy { for nic in g.nics { if let t = byPort.removeValue(forKey: nic.portName) { retired.append(t) } } }
        // Links removed (or changed: re-made below) retire both ends; other ports are untouched.
        for key in Fabric.linkPortKeys(diff.linksRemoved) { if let t = byPort.removeValue(forKey: key) { retired.append(t) } }
        // Tunnels removed or changed retire too (untouched ones keep their port I/O).
        for t in tunnelPlan.removed { byPort.removeValue(forKey: "\(t.switchName)/\(t.portName)") }

        // 1. Everything that will exist is recorded before it exists.
        let namespacesBefore = createdNamespaces
        try writeState(file: file, extraNamespaces: added.filter { $0.kind == .netns }.map(\.name),
                       extraVMs: added.filter { $0.kind == .qemu }.map(\.name), vhostDirectory: Fabric.usesVhostDirectory(new))
        var fresh: [String: PortIO] = [:]
        var freshNICs: [String: PacketPort] = [:]
        var freshVMTaps: [String] = []
        let endpointsBefore = underlayEndpoints
        func undoAdded() {
            for (port, e) in underlayEndpoints where endpointsBefore[port] !== e { e.close() }
            underlayEndpoints = endpointsBefore
            for t in fresh.values { retire(t) }
            for p in freshNICs.values { p.close() }
            for g in freshVMTaps { closeVMNICs(g) }
            for ns in createdNamespaces where !namespacesBefore.contains(ns) { deleteOwnNamespace(ns) }
            createdNamespaces = namespacesBefore
            try? writeState(file: old.file)
        }
        var monitor: TeamMonitor?
        do {
            let host = try NetlinkSocket()
            try prepareVhostDirectory(for: new)
            for g in added {
                switch g.kind {
                case .netns: try createGuest(g, of: new, host: host, into: &fresh)
                case .qemu: freshVMTaps.append(g.name); try createVMPorts(g, of: new, host: host, into: &fresh)
                case .vhostUser: try createVhostUserGuest(g, into: &fresh)
                }
            }
            fresh.merge(try makeLinkPorts(diff.linksAdded)) { a, _ in a }
            fresh.merge(try makeTunnelPorts(tunnelPlan.added, of: fileTopology)) { a, _ in a }
            for nic in nicsAdded {
                if let was = uplinkPorts[nic.name] { retired.append(was) }
                freshNICs[nic.name] = try openUplink(nic.name, mtu: nic.mtu, host: host)
            }
            byPort.merge(fresh) { a, _ in a }
            for (n, p) in freshNICs { byPort[n] = p }
            for n in nicsRemoved where !freshNICs.keys.contains(n.name) { if let p = byPort.removeValue(forKey: n.name) { retired.append(p) } }
            // 2. Swap: the new plans, without the changed guests (their old ports go now).
            var stage = new
            stage.guests.removeAll { diff.guestsChanged.contains($0.name) }
            if uplinksChanged { monitor = try makeTeamMonitor(for: new, ports: byPort) }
            try swap(dp, to: stage, tunnels: part.tunnels, ports: byPort, monitor: monitor ?? teamMonitor)
        } catch {
            monitor?.stop()
            undoAdded()
            throw error
        }
        for (n, p) in freshNICs { uplinkPorts[n] = p }
        for n in nicsRemoved where freshNICs[n.name] == nil { uplinkPorts.removeValue(forKey: n.name) }
        if uplinksChanged {
            teamMonitor?.stop()
            teamMonitor = monitor
            monitor?.start()
            // Before retired NICs close: the agent says goodbye on those it advertised on.
            lldpAgent?.configure(LLDPAgent.uplinks(of: new, ports: uplinkPorts.mapValues { $0 as PortIO }))
            for s in new.switches { if let u = s.uplinks { log("switch \(s.name): uplinks \(u.nics.joined(separator: ", ")) (policy \(u.policy.rawValue), \(u.detection.rawValue))") } }
        }

        // 3. Removed and changed guests: their ports are out of the datapath (vhost-user
        // ports are told so before their VMs stop, so a frontend leaving does not make them
        // wait for a datapath that no longer calls them).
        for t in retired { (t as? VhostUserPort)?.detachFromDatapath() }
        stopVMs(destroy.filter { $0.kind == .qemu }.map(\.name))
        stopDHCPClients(destroy.map(\.name))
        for t in retired { retire(t) }
        tunnels = part.tunnels
        closeUnusedEndpoints()
        if !tunnelPlan.isEmpty { logTunnels(tunnelPlan, of: fileTopology) }
        for g in destroy where createdNamespaces.contains(g.name) {
            deleteOwnNamespace(g.name)
            createdNamespaces.removeAll { $0 == g.name }
        }

        // 4. Changed guests, created again from the new file.
        var failures: [String] = []
        var failed: Set<String> = []
        if !diff.guestsChanged.isEmpty {
            let host = try NetlinkSocket()
            for g in new.guests where diff.guestsChanged.contains(g.name) {
                var made: [String: PortIO] = [:]
                do {
                    switch g.kind {
                    case .netns: try createGuest(g, of: new, host: host, into: &made)
                    case .qemu: try createVMPorts(g, of: new, host: host, into: &made)
                    case .vhostUser: try createVhostUserGuest(g, into: &made)
                    }
                    byPort.merge(made) { a, _ in a }
                } catch {
                    for t in made.values { retire(t) }
                    closeVMNICs(g.name)
                    if createdNamespaces.contains(g.name) { deleteOwnNamespace(g.name); createdNamespaces.removeAll { $0 == g.name } }
                    failed.insert(g.name)
                    failures.append("guest \(g.name): \(error)")
                }
            }
            var final = new
            final.guests.removeAll { failed.contains($0.name) }
            do { try swap(dp, to: final, tunnels: part.tunnels, ports: byPort, monitor: teamMonitor) } catch { failures.append("\(error)") }
        }

        // 5. VMs that are new or changed boot now, their ports forwarding already.
        let toBoot = new.guests.filter { $0.kind == .qemu && diff.guestsToCreate.contains($0.name) && !failed.contains($0.name) && !incoming.contains($0.name) }
        failures += startDHCPClients(new.guests.filter { diff.guestsToCreate.contains($0.name) && !failed.contains($0.name) }, of: new, file: file)
        if boot {
            do { try startVMs(toBoot, of: new) } catch {
                if old.guests.isEmpty && old.switches.isEmpty { throw error }   // up: the caller cleans up
                failures.append("\(error)")
            }
        }

        // 6. A changed MTU reaches the guests that kept their NICs.
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
        view.withLock { _topology.file = file; _fileTopology = fileTopology }
        try? writeState(file: file)
        return Applied(diff: diff, failures: failures, pendingBoots: boot ? [] : toBoot, topology: new)
    }

    /// Compiles `t`, builds a switch runtime per plan over the port I/O in `ports`, primes
    /// their team state, and swaps them into the datapath; publishes `t`, its plans and
    /// ports in the same critical section.
    private func swap(_ dp: Datapath, to t: Topology, tunnels: [TunnelSpec], ports: [String: PortIO], monitor: TeamMonitor?) throws {
        let plans = t.compile(tunnels: tunnels, underlayMTU: underlayEndpoints.values.first?.mtu)
        // IPFIX: each exporting switch's flow tables (kept across reloads) and this plan's
        // stable interface IDs.
        let flows = flowExport?.prepare(plans: plans, specs: Dictionary(t.switches.compactMap { s in s.flowExport.map { (s.name, $0) } },
                                                                         uniquingKeysWith: { a, _ in a }))
        var runtimes: [SwitchRuntime] = []
        for plan in plans {
            var row: [PortIO] = []
            for p in plan.ports {
                guard let io = ports[Fabric.ioKey(p, on: plan.name)] else { throw RuntimeError("internal error: no I/O for port \(p.name)") }
                row.append(io)
            }
            let runtime = SwitchRuntime(plan: plan, ports: row)
            runtime.flows = flows?.accounting[plan.name]
            runtimes.append(runtime)
        }
        monitor?.prime(runtimes)
        let vhost = ports.compactMapValues { $0 as? VhostUserPort }
        try dp.replaceSwitches(runtimes, underlays: endpointsInUse(for: tunnels)) { _ in
            view.withLock { _topology = t; _plans = plans; _vhostPorts = vhost }
        }
        if let flows { flowExport?.commit(flows) }
        var kept: [String: PortIO] = [:]
        for sw in runtimes { for (i, p) in sw.plan.ports.enumerated() { kept[Fabric.ioKey(p, on: sw.plan.name)] = sw.ports[i] } }
        portsByName = kept
    }

    /// Guests with a port whose device vanished (down as `device-gone` or `device-moved`).
    private func vanishedGuests() -> [String] {
        guard let dp = datapath else { return [] }
        let t = topology
        let down: [String] = dp.withLock { lock in
            var out: [String] = []
            for sw in lock.switches {
                for (i, p) in sw.plan.ports.enumerated() where sw.downReason(port: i, lock) != nil { out.append(p.name) }
            }
            return out
        }
        return t.guests.filter { g in g.nics.contains { down.contains($0.portName) } }.map(\.name)
    }

    /// Every uplink NIC of `t` with the MTU of its switch.
    static func uplinkNICs(_ t: Topology) -> [(name: String, mtu: Int)] {
        t.switches.flatMap { s in (s.uplinks?.nics ?? []).map { ($0, s.mtu) } }
    }

    /// The uplink settings without their positions in the file (for comparison).
    static func comparable(_ u: UplinkSpec) -> String {
        var u = u
        u.nicPositions = []
        return "\(u)"
    }

    /// Opens an AF_PACKET port on uplink NIC `nic` (up, promiscuous; its GRO stays on: GRO'd
    /// frames arrive described by their virtio-net header).
    private func openUplink(_ nic: String, mtu: Int, host: NetlinkSocket) throws -> PacketPort {
        try host.setLinkUp(named: nic)
        return try PacketPort(interface: nic, mtu: mtu)
    }

    /// A team monitor for the uplinks of `t`, over the NIC ports in `ports`.
    private func makeTeamMonitor(for t: Topology, ports: [String: PortIO]) throws -> TeamMonitor? {
        guard let dp = datapath else { return nil }
        let teams = t.switches.compactMap { s in
            s.uplinks.map { u in (switchName: s.name, beaconProbing: u.detection == .beaconProbing,
                                  ports: u.nics.compactMap { ports[$0] as? PacketPort }) }
        }
        guard !teams.isEmpty else { return nil }
        return try TeamMonitor(datapath: dp, topologyName: t.name, uplinks: teams, log: log)
    }

    /// `guests`' names must be free (namespaces, host-side TAP names).
    func preflight(_ guests: [GuestSpec], of t: Topology) throws {
        var problems: [String] = []
        for g in guests where g.kind == .netns && NetworkNamespace.exists(g.name) {
            problems.append("network namespace '\(g.name)' already exists (not created by topology '\(t.name)'); remove it or rename guest '\(g.name)'")
        }
        let nl = try NetlinkSocket()
        // A VM's TAP is born in its host's namespace (VMs.swift); a netns guest's in ours.
        let vmNetlink = try vmNamespace(in: t).flatMap { NetworkNamespace.exists($0) ? try NetlinkSocket(namespace: $0) : nil }
        for g in guests {
            let links = g.kind == .qemu ? (vmNetlink ?? nl) : nl
            // Only TAP-backed NICs get a host-side link.
            for nic in g.nics where nic.backend == .tap {
                let host = Fabric.hostTAPName(topology: tapStem(t), guest: g.name, nic: nic.index)
                if (try? links.linkExists(named: host)) == true { problems.append("link '\(host)' (for \(nic.portName)) already exists") }
            }
        }
        if !problems.isEmpty { throw RuntimeError(problems.joined(separator: "\n")) }
    }

    /// Rewrites the instance's state file (what to clean up after a crash): the namespaces,
    /// VMs and DHCP clients that exist, plus those about to be created. A write that would
    /// record the same as the last one is skipped (`up` records the whole target first, so
    /// its later writes change nothing on disk).
    func writeState(file: String, extraNamespaces: [String] = [], extraVMs: [String] = [], vhostDirectory: Bool = false) throws {
        var state = InstanceState(name: topology.name, host: hostName, file: file, pid: Processes.current, processStart: Processes.startTime(Processes.current),
                                  namespaces: Set(createdNamespaces + extraNamespaces).sorted(), links: [])
        state.vms = Set(Array(vmNICs.keys) + extraVMs).sorted()
        // Once recorded it stays until `down`, which removes the directory.
        if vhostDirectory || vhostDirectoryReady || lastState?.vhostDirectory != nil { state.vhostDirectory = RunDirectory.vhostDirectory(stem) }
        let helpers = dhcpClients.keys.sorted().flatMap { dhcpClients[$0]! }
        state.dhcpClients = helpers.isEmpty ? nil : helpers
        if state == lastState { return }
        try state.write()
        lastState = state
    }
}
