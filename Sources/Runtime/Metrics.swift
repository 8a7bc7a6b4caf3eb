import Core
import Foundation
import Observability
import VhostUser
import VMRunner

/// Prometheus metrics of a running instance (`tapestry up --metrics ADDR:PORT`).
///
/// A scrape calls `metricFamilies()` on the metrics server's thread: the switches' counters
/// are copied under the datapath lock into storage sized before it (`Datapath.snapshots`,
/// the same copy `ports` and `status` take: no allocation, no system call, no formatting
/// under the lock), so a scrape holds the datapath for one copy — about as long as one
/// batch's decisions — however slow the client; everything else (names, labels, text)
/// happens after the lock is let go. Families and names: `TapestryMetrics`.
extension Fabric {
    /// Plain values copied out of the running instance for one scrape.
    public func metricsSnapshot() -> MetricsSnapshot {
        var s = MetricsSnapshot(topology: topology.name, host: hostName, startTimeSeconds: startedAtEpoch)
        guard let dp = datapath else { return s }
        let vhost = view.withLock { _vhostPorts }
        for snap in dp.snapshots() {
            guard let plan = snap.plan else { continue }
            let team = TeamMonitor.describe(snap.team, plan: plan)
            var evictions: UInt64 = 0
            for (i, p) in plan.ports.enumerated() {
                let c = snap.counters(port: i)
                evictions &+= snap.macEvictions[i]
                // A vhost-user port's own drops count with the switch's (as in `ports`).
                var drops = Dictionary(uniqueKeysWithValues: c.drops.map { ($0.key.description, $0.value) })
                if p.kind == "guest", let v = vhost[p.name] { for (k, n) in v.statistics.drops { drops[k, default: 0] += n } }
                s.ports.append(.init(switch: plan.name, name: p.name, portGroup: p.portGroup, kind: p.kind,
                                     rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames, txBytes: c.txBytes,
                                     drops: drops.map { (reason: $0.key, count: $0.value) }.sorted { $0.reason < $1.reason },
                                     macEntries: snap.macEntries[i], macLimit: p.macLimit, macEvictions: snap.macEvictions[i]))
                if let t = team[p.name] { s.uplinks.append(.init(switch: plan.name, nic: p.name, role: t.role)) }
            }
            s.switches.append(.init(name: plan.name, macEntries: snap.tableCount, macLimit: plan.macLimit, macEvictions: evictions))
        }
        var frames = Array(repeating: UInt64(0), count: dp.threadCount)
        dp.withLock { lock in lock.copyFramesPerWorker(into: &frames) }
        s.workerFrames = frames
        s.vms = vms.values.map(\.status).sorted { $0.name < $1.name }.map { .init(name: $0.name, state: $0.state.rawValue, restarts: $0.restarts) }
        s.flowExport = (flowExport?.summaries() ?? []).map {
            .init(switch: $0.switch, accountedFrames: $0.accountedFrames, notTrackedFrames: $0.notTrackedFrames, activeFlows: $0.flows,
                  recordsSent: $0.recordsExported, sendFailures: $0.sendFailures)
        }
        return s
    }

    /// The metric families of one scrape (`MetricsServer`'s body).
    public func metricFamilies() -> [MetricFamily] { TapestryMetrics.families(metricsSnapshot()) }
}
