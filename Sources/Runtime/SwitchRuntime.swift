import Core
import LinuxIO
import Model

/// The live state of one switch inside the datapath: its compiled plan and port I/O
/// (immutable for the runtime's life), and the state forwarding changes — MAC table,
/// counters, storm buckets, shaping buckets, the multicast group table and querier, team
/// state, link state.
///
/// ## Ownership
/// The mutable state is reached only through a `DatapathLock` (`table(_:)`, `counters(_:)`,
/// …): a value that exists only inside `Datapath.withLock`, so code that reads or changes
/// it holds the datapath lock by construction. The datapath's own workers hold the lock
/// for the decide and account phases of each batch (see `Datapath`).
public final class SwitchRuntime {
    public let plan: SwitchPlan
    /// Per port (indexed like `plan.ports`), its I/O.
    public let ports: [PortIO]
    /// Per port, its `PortIO.accessGate` (nil for ports the kernel serialises), and the ports
    /// that have one, ascending: the order in which a worker takes several (`TransmitList`).
    let gates: [PortAccessGate?]
    let gatedPorts: [Int]

    let table: MACTable
    let counters: PortCounters
    /// Storm-control token buckets (inactive when no port has a limit).
    let storm: StormControl
    /// Traffic-shaping buckets (inactive when no port is shaped).
    let shaper: TrafficShaper
    /// IGMP/MLD snooping's group table (nil: snooping off), with the querier if the switch
    /// has one (`multicast.querier`).
    let multicast: MulticastGroupTable?
    /// Ports whose device went away.
    let links: PortLinks
    /// The NIC team's current state (nil without uplinks); replaced by the team monitor.
    var team: TeamState?
    /// The switch has uplinks (a team); fixed for the runtime's life.
    let hasTeam: Bool
    /// Recent GARP/RARP announcements (the team's reflection guard).
    let announcements = AnnouncementLock()
    /// Beacon probing bookkeeping, when the team uses it (fed by the datapath, read by the
    /// team monitor).
    var beacons: BeaconMonitor?
    /// Set by the datapath when an uplink's socket reports an error (ENETDOWN, ENXIO: the
    /// NIC went down or away); the team monitor reads and clears it.
    var uplinkErrors: [Int32]
    /// LLDP frames from the uplinks, on their way to the LLDP agent (nil without uplinks).
    let lldpInbox: LLDPInbox?
    /// IPFIX flow accounting (nil: no `flow-export`); set before the runtime is swapped in
    /// (`FlowExportService.prepare`), like `beacons`.
    public internal(set) var flows: FlowAccounting?

    /// - Precondition: `ports` is indexed like `plan.ports`, and a port whose plan accepts
    ///   offloads can write a virtio-net header (else GSO frames would leave broken).
    public init(plan: SwitchPlan, ports: [PortIO]) {
        precondition(plan.ports.count == ports.count)
        for (i, p) in plan.ports.enumerated() where p.acceptsOffloads {
            precondition(ports[i].txVNetHeaderSize > 0, "port \(p.name) accepts offloads but its I/O writes no virtio-net header")
        }
        self.plan = plan
        self.ports = ports
        let gates = ports.map(\.accessGate)
        self.gates = gates
        gatedPorts = gates.indices.filter { gates[$0] != nil }
        table = MACTable(limit: plan.macLimit, staticCapacity: max(16, plan.staticEntries.count), portCount: plan.ports.count)
        counters = PortCounters(portCount: plan.ports.count)
        // A private VLAN's entries live under its primary (shared learning).
        for e in plan.staticEntries { table.addStatic(vlan: plan.learningVLAN(e.vlan), mac: e.mac, port: e.port) }
        storm = StormControl(plan: plan)
        shaper = TrafficShaper(plan: plan)
        if let snooping = plan.multicast {
            // The first queries are due at once, whatever the clock (tests inject their own).
            let querier = snooping.querier.map {
                MulticastQuerier(settings: $0, vlans: MulticastQuerier.queriedVLANs(of: plan), now: MonotonicInstant(nanoseconds: 0))
            }
            multicast = MulticastGroupTable(snooping: snooping, portCount: plan.ports.count, querier: querier)
        } else {
            multicast = nil
        }
        links = PortLinks(portCount: plan.ports.count)
        uplinkErrors = Array(repeating: 0, count: plan.uplinkPorts.count)
        hasTeam = plan.team != nil
        lldpInbox = plan.team != nil ? LLDPInbox() : nil
        if let config = plan.team {
            team = TeamState.compute(config: config, health: Array(repeating: .up, count: config.memberCount),
                                     carriedPorts: plan.carriedPorts, portCount: plan.ports.count)
        }
    }

    /// What `decide` reads of this switch at `now`.
    @inline(__always)
    func context(now: MonotonicInstant) -> DecisionContext {
        // Without uplinks there is no team: skip copying the optional state (~150 instructions).
        DecisionContext(table: table, team: hasTeam ? team.map { TeamContext(state: $0, locks: announcements, now: now) } : nil,
                        storm: storm.isActive ? storm : nil, links: links.downCount > 0 ? links : nil, now: now,
                        shaper: shaper.isActive ? shaper : nil, multicast: multicast)
    }

    // MARK: - Access under the lock

    /// The MAC table.
    public func table(_ lock: borrowing DatapathLock) -> MACTable { table }
    /// Per-port counters.
    public func counters(_ lock: borrowing DatapathLock) -> PortCounters { counters }
    /// The team's state (nil without uplinks).
    public func team(_ lock: borrowing DatapathLock) -> TeamState? { team }
    /// The multicast group table (nil: snooping off).
    public func multicast(_ lock: borrowing DatapathLock) -> MulticastGroupTable? { multicast }
    /// The traffic-shaping buckets.
    public func shaper(_ lock: borrowing DatapathLock) -> TrafficShaper { shaper }
    /// Why `port` is down (nil: up).
    public func downReason(port: Int, _ lock: borrowing DatapathLock) -> PortDownReason? { links.downReason(port) }
    /// What `decide` and `trace` read of this switch at `now`.
    public func context(now: MonotonicInstant, _ lock: borrowing DatapathLock) -> DecisionContext { context(now: now) }

    /// Takes over what `old` (the same switch before a reload) knew about the ports the two
    /// share, so untouched traffic is neither flooded nor uncounted after the swap.
    ///
    /// A port is shared when it has the same name *and* the same I/O object (a guest that was
    /// re-created gets fresh counters and table entries). Dynamic MAC entries move to the
    /// port's new index when the port is still a member of the entry's VLAN (and is not a
    /// mirror destination, which never learns); they keep their age, and are replayed oldest
    /// first so the per-port LRU order survives. Static entries come from the new plan. A
    /// shared port that was down stays down. Multicast memberships and router entries of
    /// shared ports carry over the same way (`MulticastGroupTable.carryOver`); so do the
    /// shaping buckets of shared ports whose limits did not change (`TrafficShaper.
    /// carryOver`: a reload never hands a shaped guest a fresh burst), and the querier's
    /// election and schedule (`MulticastQuerier.carryOver`: a querier that stood down stays
    /// down, no extra queries). See docs/policies.md, "Across a live reload".
    func carryOver(from old: SwitchRuntime, now: MonotonicInstant, _ lock: borrowing DatapathLock) {
        var newIndex = Array(repeating: -1, count: old.plan.ports.count)
        for (i, p) in old.plan.ports.enumerated() {
            guard let j = plan.portIndex(named: p.name), ports[j] === old.ports[i] else { continue }
            newIndex[i] = j
            counters.copy(port: i, of: old.counters, toPort: j)
            if let r = old.links.downReason(i) { links.setDown(j, r) }
        }
        let entries = old.table.entries(now: now).filter { !$0.isStatic }.sorted { $0.age > $1.age }
        for e in entries {
            let j = newIndex[e.port]
            guard j >= 0, plan.learns(e.vlan, on: j), !plan.isMirrorDestination[j] else { continue }
            table.learn(vlan: e.vlan, mac: e.mac, port: j, now: now - e.age)
        }
        if let groups = multicast, let was = old.multicast {
            groups.carryOver(from: was, newIndex: newIndex, isMember: { plan.learns($0, on: $1) }, now: now)
            if let q = groups.querier, let wasQ = was.querier { q.carryOver(from: wasQ) }
        }
        if shaper.isActive && old.shaper.isActive { shaper.carryOver(from: old.shaper, newIndex: newIndex) }
    }
}

/// A copy of one switch's per-port state for the control path (`ports`, `status`, metrics),
/// taken under the datapath lock without allocating: the storage is sized before the lock
/// (`init(portCount:)`), and `fill` only writes into it.
public struct SwitchSnapshot {
    public private(set) var plan: SwitchPlan?
    /// `PortCounters.copyAll` layout.
    public var counters: [UInt64]
    public var macEntries: [Int]
    public var macEvictions: [UInt64]
    public var down: [PortDownReason?]
    public var team: TeamState?
    public var tableCount = 0
    public var staticCount = 0

    public init(portCount: Int) {
        counters = Array(repeating: 0, count: portCount * PortCounters.valuesPerPort)
        macEntries = Array(repeating: 0, count: portCount)
        macEvictions = Array(repeating: 0, count: portCount)
        down = Array(repeating: nil, count: portCount)
    }

    /// Copies `sw`'s state; false (nothing copied) when the storage was sized for another
    /// port count (a reload in between: size again and retry).
    public mutating func fill(from sw: SwitchRuntime, _ lock: borrowing DatapathLock) -> Bool {
        let n = sw.plan.ports.count
        guard macEntries.count == n else { return false }
        plan = sw.plan
        _ = counters.withUnsafeMutableBufferPointer { sw.counters.copyAll(into: $0) }
        for i in 0..<n {
            macEntries[i] = sw.table.count(port: i)
            macEvictions[i] = sw.table.evictions(port: i)
            down[i] = sw.links.downReason(i)
        }
        team = sw.team
        tableCount = sw.table.count
        staticCount = sw.table.staticCount
        return true
    }

    /// Port `i`'s counters.
    public func counters(port i: Int) -> PortCounters.Snapshot {
        counters.withUnsafeBufferPointer { PortCounters.snapshot(port: i, of: $0) }
    }
}

extension Datapath {
    /// Snapshots of every switch (or the one named `only`), each taken under the lock
    /// without allocating there; retried when a reload changes a switch's size meanwhile.
    public func snapshots(only: String? = nil) -> [SwitchSnapshot] {
        var out: [SwitchSnapshot] = []
        for _ in 0..<8 {
            // The runtimes' plans are immutable: read them outside the lock.
            let current = withLock { lock in lock.switches }.filter { only == nil || $0.plan.name == only }
            var list = current.map { SwitchSnapshot(portCount: $0.plan.ports.count) }
            let names = current.map(\.plan.name)
            let ok: Bool = withLock { lock in
                for (k, name) in names.enumerated() {
                    guard let sw = lock.switches.first(where: { $0.plan.name == name }), list[k].fill(from: sw, lock) else { return false }
                }
                return true
            }
            if ok { out = list; break }
        }
        return out
    }
}
