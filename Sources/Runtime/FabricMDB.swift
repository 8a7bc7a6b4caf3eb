import Core
import Foundation
import Model

/// `tapestry mdb`: the multicast group tables, read a chunk per lock hold (as `fdb`).
extension Fabric {
    func mdb(switch filter: String?) throws -> MDBReport {
        if let f = filter { _ = try resolveSwitch(f) }
        guard let dp = datapath else { return MDBReport() }
        return Fabric.mdb(of: dp, only: filter)
    }

    /// The report for every switch of `dp` (or the one named `only`). Memberships are copied
    /// 512 per lock hold, so the hold does not grow with the table; router and querier
    /// state is small (bounded pools) and read in one hold per switch.
    static func mdb(of dp: Datapath, only: String?) -> MDBReport {
        let now = dp.now()
        var report = MDBReport()
        let chunk = UnsafeMutableBufferPointer<MulticastGroupTable.Entry>.allocate(capacity: 512)
        defer { chunk.deallocate() }
        let plans = dp.withLock { lock in lock.switches.map(\.plan) }.filter { only == nil || $0.name == only }
        for plan in plans {
            guard let snooping = plan.multicast else { continue }
            var cursor = 0
            var entries: [MulticastGroupTable.Entry] = []
            while true {
                let n: Int = dp.withLock { lock in
                    guard let sw = lock.switches.first(where: { $0.plan.isSame(plan) }), let t = sw.multicast(lock) else { return 0 }
                    var got = 0
                    // Skip empty stretches of the pool within this hold (bounded by the pool).
                    while got == 0 && cursor < t.membershipCapacity { got = t.copyEntries(from: &cursor, into: chunk, now: now) }
                    return got
                }
                if n == 0 { break }
                entries.append(contentsOf: chunk[0..<n])
            }
            let name = { (p: PortIndex) in plan.ports[p].name }
            for e in entries.sorted(by: { ($0.vlan, $0.group, name($0.port)) < ($1.vlan, $1.group, name($1.port)) }) {
                report.entries.append(.init(switch: plan.name, vlan: e.vlan.description, group: e.group.description, port: name(e.port),
                                            ageSeconds: e.age.secondsCount, expiresSeconds: e.expiresIn.map { $0.secondsCount },
                                            type: e.isStatic ? "static" : "dynamic"))
            }
            let state: (routers: [MulticastGroupTable.RouterEntry], queriers: [MDBReport.Querier], table: MDBReport.Table)? = dp.withLock { lock in
                guard let sw = lock.switches.first(where: { $0.plan.isSame(plan) }), let t = sw.multicast(lock) else { return nil }
                var queriers: [MDBReport.Querier] = []
                if let q = t.querier {
                    for v in q.vlans {
                        for f in [IPFamily.ipv4, .ipv6] {
                            let other = q.otherQuerier(vlan: v, family: f, now: now)
                            queriers.append(.init(switch: plan.name, vlan: v.description, family: f.description,
                                                  role: other == nil ? "querier" : "other",
                                                  address: (other ?? q.settings.source(f)).description,
                                                  nextQuerySeconds: other == nil ? q.nextQuery(vlan: v, family: f).map { max(0, ($0 - now).secondsCount) } : nil))
                        }
                    }
                }
                let table = MDBReport.Table(switch: plan.name, groups: t.groupCount, groupCapacity: t.groupCapacity,
                                            memberships: t.membershipCount, membershipCapacity: t.membershipCapacity,
                                            routers: t.routerCount, routerCapacity: t.routerCapacity,
                                            refusedJoins: t.refusedJoins, refusedRouters: t.refusedRouters,
                                            membershipIntervalSeconds: snooping.membershipInterval.secondsCount)
                return (t.routerEntries(now: now), queriers, table)
            }
            guard let state else { continue }
            for r in state.routers.sorted(by: { ($0.vlan, name($0.port)) < ($1.vlan, name($1.port)) }) {
                report.routers.append(.init(switch: plan.name, vlan: r.vlan.description, port: name(r.port), type: "dynamic",
                                            ageSeconds: r.age.secondsCount, expiresSeconds: r.expiresIn.secondsCount))
            }
            for p in plan.multicastRouterPorts.map({ Int($0) }) {
                report.routers.append(.init(switch: plan.name, vlan: nil, port: name(p), type: plan.ports[p].isUplink ? "uplink" : "static",
                                            ageSeconds: nil, expiresSeconds: nil))
            }
            report.queriers += state.queriers
            report.tables.append(state.table)
        }
        return report
    }
}
