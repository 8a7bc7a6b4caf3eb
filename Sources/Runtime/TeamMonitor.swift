import Core
import Foundation
import LinuxIO
import Model
import Netlink

/// Watches the NIC teams of a running fabric and applies failover, failback and
/// notify-switches.
///
/// ```
///  netlink RTNLGRP_LINK ─┐
///  datapath uplink errors ┼─▶ health per member ─▶ TeamState.compute ─▶ install under the
///  beacon probes (1/s) ──┘      (link ∧ beacon)      (failover/back)     datapath lock
///                                                                  └─▶ RARP per moved MAC,
///                                                                      in chunks
/// ```
/// One thread. Link events are acted on as they arrive (the thread sleeps in poll(2) on the
/// netlink socket, at most 100 ms so beacon timing stays on schedule). Health is kept per
/// team; the team state lives in the switch runtime, so a live reload (which rebuilds the
/// runtimes) gets it primed again (`prime`).
///
/// ## The datapath lock
/// Never a system call and never work that grows with the MAC table under the lock: the
/// monitor takes it only to read what the datapath saw (uplink errors, a copy of the beacon
/// bookkeeping), to install a state computed outside it, and — for notify-switches — to
/// copy up to `chunk` MAC entries at a time and stamp the announcement lock for that chunk;
/// the RARPs of a chunk are built and sent after the lock is let go. A worker's longest
/// wait for the lock during a failover therefore does not grow with the number of MACs.
final class TeamMonitor {
    struct Member {
        var name: String
        var ifindex: Int32
        var mac: MACAddress
        var port: PacketPort
        var link: MemberHealth
    }
    final class Team {
        let switchName: String
        let teamID: UInt32
        let beaconProbing: Bool
        var members: [Member]
        var sequence: UInt32 = 0
        /// Scratch, allocated once: uplink errors read under the lock.
        var errors: [Int32]
        init(switchName: String, teamID: UInt32, beaconProbing: Bool, members: [Member]) {
            self.switchName = switchName; self.teamID = teamID; self.beaconProbing = beaconProbing; self.members = members
            errors = Array(repeating: 0, count: members.count)
        }
    }

    /// MAC entries copied per lock hold when announcing moved MACs.
    static let chunk = 256

    private let datapath: Datapath
    private let teams: [Team]
    private let log: (String) -> Void
    private let links: LinkMonitor
    private var thread: Thread?
    private let stopLock = NSLock()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private var lastBeacon = MonotonicInstant(nanoseconds: 0)
    /// Scratch for notify-switches, allocated once.
    private let entryBuffer = UnsafeMutableBufferPointer<MACTable.Entry>.allocate(capacity: TeamMonitor.chunk)
    private var pending: [(member: Int, vlan: VLANID, mac: MACAddress)] = []

    /// - Parameter uplinks: per switch with uplinks: its name, beacon probing on/off, and its
    ///   ports in member order.
    init(datapath: Datapath, topologyName: String, uplinks: [(switchName: String, beaconProbing: Bool, ports: [PacketPort])],
         log: @escaping (String) -> Void) throws {
        self.datapath = datapath
        self.log = log
        links = try LinkMonitor()
        let nl = try NetlinkSocket()
        var teams: [Team] = []
        for u in uplinks {
            var members: [Member] = []
            for p in u.ports {
                let attrs = try nl.linkAttributes(named: p.name)
                members.append(Member(name: p.name, ifindex: p.ifindex, mac: attrs?.mac ?? .zero, port: p,
                                      link: TeamMonitor.health(of: p.name, nl)))
            }
            teams.append(Team(switchName: u.switchName, teamID: FNV1a.hash32("\(topologyName)/\(u.switchName)"),
                              beaconProbing: u.beaconProbing, members: members))
        }
        self.teams = teams
        pending.reserveCapacity(TeamMonitor.chunk)
        for t in teams {
            for m in t.members where !m.link.isUp { log("uplink \(m.name) of switch \(t.switchName): \(TeamMonitor.describe(m.link)) at start") }
        }
    }

    deinit { entryBuffer.deallocate() }

    static func health(up: Bool, carrier: Bool) -> MemberHealth {
        if !up { return .down(.administrativelyDown) }
        return carrier ? .up : .down(.noCarrier)
    }

    /// A NIC's health as netlink reports it now.
    static func health(of name: String, _ nl: NetlinkSocket) -> MemberHealth {
        guard let s = try? nl.linkState(named: name) else { return .down(.administrativelyDown) }
        return health(up: s.up, carrier: s.carrier)
    }

    static func describe(_ h: MemberHealth) -> String {
        switch h { case .up: return "up"; case .down(let r): return "down (\(r.rawValue))" }
    }

    /// Gives the not yet published runtimes `runtimes` their team state and beacon
    /// bookkeeping from the health this monitor knows (link state; beacons start afresh).
    /// Call before they are swapped into the datapath (no lock needed: no worker sees them).
    func prime(_ runtimes: [SwitchRuntime]) {
        let now = monotonicNow()
        for t in teams {
            guard let sw = runtimes.first(where: { $0.plan.name == t.switchName }), let config = sw.plan.team,
                  config.memberCount == t.members.count else { continue }
            if t.beaconProbing {
                sw.beacons = BeaconMonitor(teamID: t.teamID, memberCount: t.members.count, vlans: sw.plan.uplinkVLANs, now: now)
            }
            sw.team = TeamState.compute(config: config, health: t.members.map(\.link),
                                        carriedPorts: sw.plan.carriedPorts, portCount: sw.plan.ports.count)
        }
    }

    func start() {
        let t = Thread { [unowned self] in self.run() }
        t.name = "tapestry-team"
        thread = t
        t.start()
    }

    func stop() {
        guard thread != nil else { return }
        stopLock.withLock { stopping = true }
        done.wait()
        thread = nil
        links.close()
    }

    private var isStopping: Bool { stopLock.withLock { stopping } }

    private func run() {
        defer { done.signal() }
        update(now: monotonicNow())
        while !isStopping {
            var changed = false
            if links.wait(timeoutMilliseconds: 100) {
                let (events, overflowed) = links.read()
                if overflowed { requery(); changed = true }
                for e in events {
                    for t in teams {
                        for j in t.members.indices where t.members[j].ifindex == e.ifindex {
                            let h = e.deleted ? MemberHealth.down(.administrativelyDown) : TeamMonitor.health(up: e.up, carrier: e.carrier)
                            if h != t.members[j].link {
                                log("uplink \(t.members[j].name) of switch \(t.switchName): link \(TeamMonitor.describe(h))")
                                t.members[j].link = h
                                changed = true
                            }
                        }
                    }
                }
            }
            let now = monotonicNow()
            if now.nanoseconds - lastBeacon.nanoseconds >= 1_000_000_000 {
                lastBeacon = now
                sendBeacons()
                changed = true      // re-evaluate beacon health once a second
            }
            if changed || hasUplinkErrors() { update(now: now) }
        }
    }

    /// Re-reads every member's link state (after an event overflow or a socket error).
    private func requery() {
        guard let nl = try? NetlinkSocket() else { return }
        for t in teams {
            for j in t.members.indices {
                t.members[j].link = TeamMonitor.health(of: t.members[j].name, nl)
            }
        }
    }

    private func hasUplinkErrors() -> Bool {
        datapath.withLock { lock in lock.switches.contains { $0.uplinkErrors.contains { $0 != 0 } } }
    }

    /// One probe per member (whose link is up) per VLAN the uplinks carry.
    private func sendBeacons() {
        for t in teams where t.beaconProbing {
            t.sequence &+= 1
            let plan = datapath.withLock { lock in lock.switches.first { $0.plan.name == t.switchName }?.plan }
            let vlans = plan?.uplinkVLANs ?? []
            for (m, member) in t.members.enumerated() where member.link.isUp {
                for v in vlans {
                    member.port.send(TeamFrames.beaconFrame(source: member.mac, vlan: v.isUntaggedDomain ? nil : v,
                                                            teamID: t.teamID, sender: m, sequence: t.sequence))
                }
            }
        }
    }

    /// Recomputes each team's state from member health; on a change installs it and sends
    /// notify-switches RARPs for the MACs whose uplink changed.
    private func update(now: MonotonicInstant) {
        for t in teams { update(t, now: now) }
    }

    private func update(_ t: Team, now: MonotonicInstant) {
        // 1. What the datapath saw (errors on the uplink sockets), and the runtime.
        let found: SwitchRuntime? = datapath.withLock { lock in
            guard let sw = lock.switches.first(where: { $0.plan.name == t.switchName }), sw.plan.team?.memberCount == t.members.count
            else { return nil }
            for m in t.members.indices { t.errors[m] = sw.uplinkErrors[m]; sw.uplinkErrors[m] = 0 }
            return sw
        }
        guard let sw = found, let config = sw.plan.team else { return }
        var messages: [String] = []
        for (m, err) in t.errors.enumerated() where err != 0 {
            if err == ENXIO || err == ENODEV {
                if t.members[m].link != .down(.administrativelyDown) {
                    messages.append("uplink \(t.members[m].name) of switch \(t.switchName): the NIC is gone")
                    t.members[m].link = .down(.administrativelyDown)
                }
            } else if err == ENETDOWN, let nl = try? NetlinkSocket() {
                t.members[m].link = TeamMonitor.health(of: t.members[m].name, nl)
            }
        }
        // 2. The current state and a copy of the beacon bookkeeping (a member whose link just
        //    came back gets a fresh beacon grace period first).
        let (old, beacons): (TeamState?, BeaconMonitor?) = datapath.withLock { _ in
            if sw.beacons != nil, let old = sw.team {
                for m in t.members.indices where t.members[m].link.isUp && old.health[m] != .up && old.health[m] != .down(.beaconLost) {
                    sw.beacons!.reset(member: m, now: now)
                }
            }
            return (sw.team, sw.beacons)
        }
        let beaconHealth = beacons?.health(now: now)
        let h: [MemberHealth] = t.members.enumerated().map { m, member in
            guard member.link.isUp else { return member.link }
            return beaconHealth?[m] ?? .up
        }
        guard let old, old.health != h else { for m in messages { log(m) }; return }
        // 3. The new state, computed outside the lock, installed under it (unless a reload
        //    or another update replaced the runtime's state meanwhile: then next round).
        let new = TeamState.compute(config: config, health: h, carriedPorts: sw.plan.carriedPorts,
                                    portCount: sw.plan.ports.count, previous: old)
        let installed: Bool = datapath.withLock { lock in
            guard lock.switches.contains(where: { $0 === sw }), sw.team == old else { return false }
            sw.team = new
            return true
        }
        guard installed else { for m in messages { log(m) }; return }
        for m in t.members.indices where old.health[m] != h[m] {
            messages.append("uplink \(t.members[m].name) of switch \(t.switchName): \(TeamMonitor.describe(h[m])), now \(new.role(of: m).rawValue)")
        }
        var sent = 0
        if config.notifySwitches && (old.holders != new.holders || old.assignment != new.assignment) {
            sent = announceMoves(t, sw, from: old, to: new, now: now)
        }
        let active = new.holders.map { t.members[Int($0)].name }
        messages.append("switch \(t.switchName): team now uses \(active.isEmpty ? "no uplink" : active.joined(separator: ", "))"
                        + (config.notifySwitches ? "; notify-switches sent \(sent) RARP\(sent == 1 ? "" : "s")" : ""))
        for m in messages { log(m) }
    }

    /// Notify-switches: one RARP per guest (VLAN, MAC) whose member changed, out of its new
    /// member. The table is read `chunk` entries per lock hold; each chunk's announcement
    /// lock is stamped under the lock before its RARPs go out (so their echo from the
    /// physical network is not taken for a move), and the RARPs are sent after it.
    private func announceMoves(_ t: Team, _ sw: SwitchRuntime, from old: TeamState, to new: TeamState, now: MonotonicInstant) -> Int {
        var sent = 0
        var cursor = 0
        let hot = sw.plan.hot
        while true {
            let n: Int = datapath.withLock { lock in
                guard lock.switches.contains(where: { $0 === sw }) else { return 0 }
                return sw.table.copyEntries(from: &cursor, into: entryBuffer, now: now)
            }
            if n == 0 { break }
            pending.removeAll(keepingCapacity: true)
            for e in entryBuffer[0..<n] where !hot[e.port].isUplink {
                let entry = TeamMACEntry(e)
                guard let m = new.uplink(carrying: entry), m < t.members.count, old.uplink(carrying: entry) != m else { continue }
                pending.append((m, e.vlan, e.mac))
            }
            if pending.isEmpty { continue }
            datapath.withLock { _ in
                for a in pending { sw.announcements.stamp(vlan: a.vlan, mac: a.mac, now: now) }
            }
            for a in pending {
                if case .bytes = t.members[a.member].port.send(TeamFrames.rarpFrame(source: a.mac, vlan: a.vlan.isUntaggedDomain ? nil : a.vlan)) {
                    sent += 1
                }
            }
        }
        return sent
    }

    /// For `tapestry ports`: per uplink port name, its role, down reason and the guest ports
    /// it carries, from a team state copied under the lock (`SwitchRuntime.team(_:)`).
    static func describe(_ state: TeamState?, plan: SwitchPlan) -> [String: (role: String, reason: String?, carries: [String])] {
        guard let state else { return [:] }
        var out: [String: (String, String?, [String])] = [:]
        for (m, p) in plan.uplinkPorts.enumerated() {
            var reason: String? = nil
            if m < state.health.count, case .down(let r) = state.health[m] { reason = r.rawValue }
            out[plan.ports[p].name] = (state.role(of: m).rawValue, reason, state.carries(m).map { plan.ports[$0].name })
        }
        return out
    }
}
