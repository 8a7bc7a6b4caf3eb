import CLinux
import CNetlink
import Core
import Foundation
import LinuxIO
import Model
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// Watches the NIC teams of a running fabric and applies failover, failback and
/// notify-switches.
///
/// ```
///  netlink RTNLGRP_LINK ─┐
///  datapath uplink errors ┼─▶ health per member ─▶ TeamState.compute ─▶ swap under the
///  beacon probes (1/s) ──┘      (link ∧ beacon)      (failover/back)     datapath lock
///                                                                  └─▶ RARP per moved MAC
/// ```
/// One thread. Link events are acted on as they arrive (the thread sleeps in poll(2) on the
/// libnl socket, at most 100 ms so beacon timing stays on schedule). Health and team state
/// are kept per switch name, so a live reload (which rebuilds the switch runtimes) gets the
/// current state installed again (`reinstall`).
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
        init(switchName: String, teamID: UInt32, beaconProbing: Bool, members: [Member]) {
            self.switchName = switchName; self.teamID = teamID; self.beaconProbing = beaconProbing; self.members = members
        }
    }

    private let datapath: Datapath
    private let teams: [Team]
    private let log: (String) -> Void
    private var socket: OpaquePointer?
    private var thread: Thread?
    private let stopLock = NSLock()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private var lastBeacon: Int64 = 0

    /// - Parameter uplinks: per switch with uplinks: its name, beacon probing on/off, and its
    ///   ports in member order.
    init(datapath: Datapath, topologyName: String, uplinks: [(switchName: String, beaconProbing: Bool, ports: [PacketPort])],
         log: @escaping (String) -> Void) throws {
        self.datapath = datapath
        self.log = log
        var sk: OpaquePointer?
        let rc = cnl_link_monitor_open(&sk)
        guard rc >= 0, let sk else { throw RuntimeError("cannot watch link events (netlink): \(String(cString: nl_geterror(-rc)))") }
        socket = sk
        let nl = try NetlinkSocket()
        var teams: [Team] = []
        for u in uplinks {
            var members: [Member] = []
            for p in u.ports {
                let attrs = try nl.linkAttributes(named: p.name)
                members.append(Member(name: p.name, ifindex: p.ifindex, mac: attrs?.mac ?? .zero, port: p,
                                      link: TeamMonitor.health(of: p.name, nl)))
            }
            teams.append(Team(switchName: u.switchName, teamID: fnv1a32("\(topologyName)/\(u.switchName)"),
                              beaconProbing: u.beaconProbing, members: members))
        }
        self.teams = teams
        let now = monotonicNanoseconds() / 1_000_000
        datapath.withSnapshot {
            for t in teams {
                guard let sw = datapath.switches.first(where: { $0.plan.name == t.switchName }) else { continue }
                if t.beaconProbing {
                    sw.beacons = BeaconMonitor(teamID: t.teamID, memberCount: t.members.count, vlans: sw.plan.uplinkVLANs, now: now)
                }
            }
        }
        for t in teams {
            for m in t.members where !m.link.isUp { log("uplink \(m.name) of switch \(t.switchName): \(TeamMonitor.describe(m.link)) at start") }
        }
        update(now: now)
    }

    deinit { if let s = socket { nl_socket_free(s) } }

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
    }

    private var isStopping: Bool { stopLock.withLock { stopping } }

    private func run() {
        defer { done.signal() }
        guard let sk = socket else { return }
        let fd = cnl_link_monitor_fd(sk)
        let maxEvents = 64
        let events = UnsafeMutablePointer<cnl_link_event>.allocate(capacity: maxEvents)
        defer { events.deallocate() }
        while !isStopping {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            var changed = false
            if ready > 0 {
                let n = Int(cnl_link_monitor_read(sk, events, Int32(maxEvents)))
                if n >= maxEvents { requery() ; changed = true }
                for i in 0..<max(0, n) {
                    let e = events[i]
                    for t in teams {
                        for j in t.members.indices where t.members[j].ifindex == e.ifindex {
                            let h = e.deleted != 0 ? MemberHealth.down(.administrativelyDown)
                                : TeamMonitor.health(up: e.flags & CNL_IFF_UP != 0, carrier: e.flags & CNL_IFF_LOWER_UP != 0)
                            if h != t.members[j].link {
                                log("uplink \(t.members[j].name) of switch \(t.switchName): link \(TeamMonitor.describe(h))")
                                t.members[j].link = h
                                changed = true
                            }
                        }
                    }
                }
            }
            let now = monotonicNanoseconds() / 1_000_000
            if now - lastBeacon >= 1000 {
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
        datapath.withSnapshot { datapath.switches.contains { $0.uplinkErrors.contains { $0 != 0 } } }
    }

    /// One probe per member (whose link is up) per VLAN the uplinks carry.
    private func sendBeacons() {
        for t in teams where t.beaconProbing {
            t.sequence &+= 1
            let vlans = datapath.withSnapshot { datapath.switches.first { $0.plan.name == t.switchName }?.plan.uplinkVLANs ?? [] }
            for (m, member) in t.members.enumerated() where member.link.isUp {
                for v in vlans {
                    member.port.send(TeamFrames.beaconFrame(source: member.mac, vlan: v.isUntaggedDomain ? nil : v,
                                                            teamID: t.teamID, sender: m, sequence: t.sequence))
                }
            }
        }
    }

    /// Installs the team states again after a live reload rebuilt the switch runtimes.
    /// Call under the datapath lock (inside `replaceSwitches`' body).
    func reinstallLocked() {
        let now = monotonicNanoseconds() / 1_000_000
        for t in teams {
            guard let sw = datapath.switches.first(where: { $0.plan.name == t.switchName }), let config = sw.plan.team,
                  config.memberCount == t.members.count else { continue }
            if t.beaconProbing && sw.beacons == nil {
                sw.beacons = BeaconMonitor(teamID: t.teamID, memberCount: t.members.count, vlans: sw.plan.uplinkVLANs, now: now)
            }
            sw.team = TeamState.compute(config: config, health: health(of: t, sw: sw, now: now),
                                        carriedPorts: sw.plan.carriedPorts, portCount: sw.plan.ports.count)
        }
    }

    /// Link health, and beacon health where probing runs (and the link is up).
    private func health(of t: Team, sw: SwitchRuntime, now: Int64) -> [MemberHealth] {
        let beacon = sw.beacons?.health(now: now)
        return t.members.enumerated().map { m, member in
            guard member.link.isUp else { return member.link }
            return beacon?[m] ?? .up
        }
    }

    /// Recomputes each team's state from member health; on a change swaps it in and sends
    /// notify-switches RARPs for the MACs whose uplink changed.
    private func update(now: Int64) {
        var messages: [String] = []
        datapath.withSnapshot {
            for t in teams {
                guard let sw = datapath.switches.first(where: { $0.plan.name == t.switchName }), let config = sw.plan.team,
                      config.memberCount == t.members.count else { continue }
                for (m, err) in sw.uplinkErrors.enumerated() where err != 0 {
                    sw.uplinkErrors[m] = 0
                    if err == ENXIO || err == ENODEV {
                        if t.members[m].link != .down(.administrativelyDown) {
                            messages.append("uplink \(t.members[m].name) of switch \(t.switchName): the NIC is gone")
                            t.members[m].link = .down(.administrativelyDown)
                        }
                    } else if err == ENETDOWN, let nl = try? NetlinkSocket() {
                        t.members[m].link = TeamMonitor.health(of: t.members[m].name, nl)
                    }
                }
                // A member whose link just came back gets a fresh beacon grace period.
                if var b = sw.beacons, let old = sw.team {
                    for m in t.members.indices where t.members[m].link.isUp && old.health[m] != .up && old.health[m] != .down(.beaconLost) {
                        b.reset(member: m, now: now)
                    }
                    sw.beacons = b
                }
                let h = health(of: t, sw: sw, now: now)
                guard let old = sw.team, old.health != h else { continue }
                let new = TeamState.compute(config: config, health: h, carriedPorts: sw.plan.carriedPorts,
                                            portCount: sw.plan.ports.count, previous: old)
                sw.team = new
                for m in t.members.indices where old.health[m] != h[m] {
                    messages.append("uplink \(t.members[m].name) of switch \(t.switchName): \(TeamMonitor.describe(h[m])), now \(new.role(of: m).rawValue)")
                }
                guard old.holders != new.holders || old.assignment != new.assignment else { continue }
                let guests = sw.table.entries(now: now / 1000).filter { !sw.plan.hot[$0.port].isUplink }.map(TeamMACEntry.init)
                let notices = TeamState.announcements(from: old, to: new, entries: guests)
                var sent = 0
                for (m, list) in notices.enumerated() {
                    for a in list {
                        if case .bytes = t.members[m].port.send(TeamFrames.rarpFrame(source: a.mac, vlan: a.vlan.isUntaggedDomain ? nil : a.vlan)) {
                            sent += 1
                        }
                        sw.announcements.stamp(vlan: a.vlan, mac: a.mac, now: now / 1000)
                    }
                }
                let active = new.holders.map { t.members[Int($0)].name }
                messages.append("switch \(t.switchName): team now uses \(active.isEmpty ? "no uplink" : active.joined(separator: ", "))"
                                + (config.notifySwitches ? "; notify-switches sent \(sent) RARP\(sent == 1 ? "" : "s")" : ""))
            }
        }
        for m in messages { log(m) }
    }

    /// For `tapestry ports`: per uplink port name, its role, down reason and the guest ports
    /// it carries. Call under the datapath lock.
    func describeLocked(_ sw: SwitchRuntime) -> [String: (role: String, reason: String?, carries: [String])] {
        guard let state = sw.team else { return [:] }
        var out: [String: (String, String?, [String])] = [:]
        for (m, p) in sw.plan.uplinkPorts.enumerated() {
            var reason: String? = nil
            if m < state.health.count, case .down(let r) = state.health[m] { reason = r.rawValue }
            out[sw.plan.ports[p].name] = (state.role(of: m).rawValue, reason, state.carries(m).map { sw.plan.ports[$0].name })
        }
        return out
    }
}
