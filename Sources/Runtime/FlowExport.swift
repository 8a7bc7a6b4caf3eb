import Core
import Foundation
import LinuxIO
import Model
import Observability
import Topology

/// What the datapath needs to account one switch's sampled frames into IPFIX flows: per
/// worker a flow table and a 1-in-N sampler, and per port of the switch's plan its stable
/// interface ID.
///
/// ```
///  worker n, per frame the switch forwards or floods (under the datapath lock):
///    samplers[n].select()? ─▶ tables[n].account(frame, ingress: ids[in], egress: ids[out] or 0)
/// ```
/// The tables and samplers belong to the switch's `FlowExportService.SwitchState` and
/// survive reloads while the switch's `flow-export` stays the same; the interface IDs are
/// this plan's (a reload moves port indices, never IDs). Dropped frames and frames for the
/// switch itself (LLDP, team beacons) are not flows and are not sampled. A flooded frame's
/// egress is 0 (RFC 7012 leaves ifIndex 0 unused: "no interface"). A GSO super-frame counts
/// as one packet with all its bytes (the guest's TCP as the switch carried it).
///
/// Threads: read and used by the workers under the datapath lock; `epochOffset` is set by
/// the service under the same lock.
public final class FlowAccounting {
    /// The switch's export state (owns the tables and the samplers).
    let state: FlowExportService.SwitchState
    /// Per port index of the plan: the port's stable interface ID (`InterfaceRegistry`).
    let interfaceIDs: UnsafeMutablePointer<UInt32>
    let portCount: Int
    /// Unix epoch milliseconds minus the datapath clock's milliseconds (the batch clock is
    /// monotonic; flow times are wall-clock milliseconds, RFC 7012 §5.9). Refreshed by the
    /// service every tick, so a wall-clock step reaches the records within a second.
    var epochOffset: Int64

    init(state: FlowExportService.SwitchState, interfaceIDs: [UInt32], epochOffset: Int64) {
        self.state = state
        portCount = interfaceIDs.count
        self.interfaceIDs = .allocate(capacity: max(1, interfaceIDs.count))
        for (i, id) in interfaceIDs.enumerated() { self.interfaceIDs[i] = id }
        self.epochOffset = epochOffset
    }

    deinit { interfaceIDs.deallocate() }

    /// Samples and accounts one decided frame received on `inPort` by worker `worker`.
    /// Under the datapath lock; allocates nothing, no existential, no throw.
    @inline(__always)
    func account(_ frame: UnsafeRawBufferPointer, _ d: Decision, inPort: Int, worker: Int, now: MonotonicInstant) {
        let egress: UInt32
        switch d.verdict {
        case .drop, .local: return
        case .forward(let p): egress = interfaceIDs[p]
        case .flood, .floodPortGroup, .multicastGroup, .multicastRouters: egress = 0
        }
        guard state.samplers[worker].select() else { return }
        let ms = UInt64(truncatingIfNeeded: now.nanoseconds / 1_000_000 &+ epochOffset)
        state.tables[worker].account(frame: frame, ingress: interfaceIDs[inPort], egress: egress, vlan: d.vlan, length: frame.count, now: ms)
    }
}

/// IPFIX flow export (RFC 7011/7012) for the switches with `flow-export`: their flow tables,
/// their exporters, and the daemon's interface registry.
///
/// ```
///  datapath workers ─▶ per worker FlowTable (sampled frames, under the datapath lock)
///  tick (1 s, this thread):  per switch, per worker table: lock ─▶ expire (idle, active
///        timeouts) into a preallocated record list ─▶ unlock ─▶ encode and send over UDP
///        (IPFIXExporter: templates and options re-sent every 60 s; failures counted)
///  down: stop the thread ─▶ flush every table (forced end) ─▶ send ─▶ close
/// ```
/// **The datapath lock** is held for one table's expiry at a time: a walk of its slots
/// (2 × `flowsPerWorker`, about 0.1 ms) that appends into a list whose capacity was
/// reserved beforehand, so nothing grows under the lock; encoding and sending happen after.
///
/// **Reloads.** `prepare` (before the swap) gives each new plan its `FlowAccounting`: the
/// same tables when the switch's `flow-export` is unchanged, fresh ones otherwise; `commit`
/// (after the swap, when no worker can reach the old tables) retires the replaced ones,
/// which the next tick flushes and exports (forced end). Ports keep their interface IDs
/// across reloads: the registry lives as long as the daemon (`InterfaceRegistry`).
///
/// **Failures are counted, never fatal**: an unresolvable collector (retried every 10 s), a
/// closed port (ECONNREFUSED), a full socket buffer — all in `summaries()` (`status`).
public final class FlowExportService {
    /// Flows tracked per worker per switch (`FlowTable` capacity): 16 384 flows, 3.7 MB of
    /// slots per table. Beyond it new flows are counted as not tracked until expiry frees room.
    public static let flowsPerWorker = 16_384
    /// Seconds between expiry rounds.
    static let tickSeconds = 1.0
    /// Milliseconds between attempts to open an exporter that failed (a DNS name that does
    /// not resolve yet).
    static let retryMilliseconds: UInt64 = 10_000

    /// One exporting switch: its tables (one per worker), samplers, exporter and counters.
    /// Tables are touched only under the datapath lock; the exporter only by the service
    /// thread (or by `stop` once the thread is gone); the summary fields under `lock`.
    final class SwitchState {
        let name: String
        let spec: FlowExportSpec
        let tables: ContiguousArray<FlowTable>
        let samplers: UnsafeMutablePointer<FlowSampler>
        let workers: Int
        /// Expired records of one table; capacity reserved for a whole table (no growth
        /// under the lock).
        var records: [FlowRecord] = []
        var exporter: IPFIXExporter?
        var exporterError: String?
        var nextAttempt: UInt64 = 0
        var announcedVersion = -1
        /// Failures while no exporter could be opened.
        var failuresWithoutExporter: UInt64 = 0
        var recordsLostWithoutExporter: UInt64 = 0
        /// The last summary (under the service's `lock`).
        var summary: FlowExportSummary

        init(name: String, spec: FlowExportSpec, workers: Int, capacity: Int) {
            self.name = name
            self.spec = spec
            self.workers = workers
            tables = ContiguousArray((0..<workers).map { _ in FlowTable(capacity: capacity) })
            samplers = .allocate(capacity: workers)
            samplers.initialize(repeating: FlowSampler(interval: UInt32(clamping: spec.sampling)), count: workers)
            records.reserveCapacity(capacity)
            summary = FlowExportSummary(switch: name, collector: FlowExportService.collectorText(spec), observationDomain: spec.observationDomain,
                                        sampling: spec.sampling, activeTimeoutSeconds: spec.activeTimeoutSeconds,
                                        idleTimeoutSeconds: spec.idleTimeoutSeconds)
        }

        deinit { samplers.deinitialize(count: workers); samplers.deallocate() }
    }

    /// What `prepare` computed for a set of plans: hand each runtime its accounting, then
    /// `commit` once the swap succeeded.
    public struct Prepared {
        /// By switch name: the accounting to set on the new runtime (absent: no export).
        public var accounting: [String: FlowAccounting]
        var states: [String: SwitchState]
        var names: Set<String>
    }

    private let datapath: Datapath
    private let workers: Int
    private let capacity: Int
    private let log: (String) -> Void
    private let lock = NSLock()
    private var states: [String: SwitchState] = [:]
    private var retired: [SwitchState] = []
    private var registry = InterfaceRegistry()
    private var registryVersion = 0
    private var thread: Thread?
    private let stopSignal = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - workers: the datapath's thread count (one table and sampler per worker).
    ///   - capacity: flows per table (tests use small ones).
    public init(datapath: Datapath, workers: Int, capacity: Int = FlowExportService.flowsPerWorker, log: @escaping (String) -> Void) {
        self.datapath = datapath
        self.workers = max(1, workers)
        self.capacity = capacity
        self.log = log
    }

    /// `HOST:PORT` (`[v6]:PORT`).
    static func collectorText(_ spec: FlowExportSpec) -> String {
        SocketEndpoint(host: spec.collectorHost, port: UInt16(clamping: spec.collectorPort)).description
    }

    /// Wall-clock milliseconds minus the datapath clock's milliseconds.
    func epochOffset() -> Int64 {
        Int64(realtimeNanoseconds() / 1_000_000) - datapath.now().nanoseconds / 1_000_000
    }

    /// The accounting for each plan whose switch has `flow-export` in `specs` (by switch
    /// name). Registers the plans' ports (`SWITCH/PORT`) in the interface registry. Call
    /// before the swap; nothing changes for running switches until `commit`.
    public func prepare(plans: [SwitchPlan], specs: [String: FlowExportSpec]) -> Prepared {
        lock.lock(); defer { lock.unlock() }
        var out = Prepared(accounting: [:], states: [:], names: [])
        let offset = epochOffset()
        for plan in plans {
            for p in plan.ports { out.names.insert("\(plan.name)/\(p.name)") }
            guard let spec = specs[plan.name] else { continue }
            let state = states[plan.name].flatMap { $0.spec == spec ? $0 : nil }
                ?? SwitchState(name: plan.name, spec: spec, workers: workers, capacity: capacity)
            let ids = plan.ports.map { p -> UInt32 in
                do { return try registry.id(for: "\(plan.name)/\(p.name)") } catch {
                    log("flow export \(plan.name): port \(p.name) gets no interface ID (\(error)); exported as 0")
                    return 0
                }
            }
            out.states[plan.name] = state
            out.accounting[plan.name] = FlowAccounting(state: state, interfaceIDs: ids, epochOffset: offset)
        }
        return out
    }

    /// Makes `prepared` current (call after the swap put its accountings in the datapath):
    /// states no longer used are flushed and exported by the next tick; ports gone from
    /// every plan leave the registry; collectors hear the new interface names at once.
    public func commit(_ prepared: Prepared) {
        lock.lock(); defer { lock.unlock() }
        for (name, old) in states where prepared.states[name] !== old {
            retired.append(old)
            log("flow export \(name): " + (prepared.states[name] == nil ? "off" : "settings changed; flows so far are exported now"))
        }
        for (name, s) in prepared.states where states[name] !== s {
            log("flow export \(name): to \(s.summary.collector), observation domain \(s.spec.observationDomain), sampling 1 in \(s.spec.sampling), "
                + "timeouts active \(s.spec.activeTimeoutSeconds)s idle \(s.spec.idleTimeoutSeconds)s, \(capacity) flows per worker")
        }
        states = prepared.states
        let before = registry.mapping.count
        registry.retain(only: prepared.names)
        if registry.mapping.count != before || !prepared.states.isEmpty { registryVersion += 1 }
    }

    /// Starts the expiry thread (`tapestry-ipfix`).
    public func start() {
        guard thread == nil else { return }
        let t = Thread { [unowned self] in
            ThreadControl.setName("tapestry-ipfix")
            while self.stopSignal.wait(timeout: .now() + FlowExportService.tickSeconds) == .timedOut { self.tick() }
            self.done.signal()
        }
        thread = t
        t.start()
    }

    /// Stops the thread, then flushes every table (flows end as `forcedEnd`), exports them
    /// and closes the sockets. Idempotent.
    public func stop() {
        if thread != nil {
            stopSignal.signal()
            done.wait()
            thread = nil
        }
        let all: [SwitchState] = lock.withLock {
            let list = Array(states.values) + retired
            states = [:]; retired = []
            return list
        }
        for s in all { flush(s) }
    }

    /// Per exporting switch: its settings and counters (`status`, metrics).
    public func summaries() -> [FlowExportSummary] {
        lock.withLock { states.values.map(\.summary).sorted { $0.switch < $1.switch } }
    }

    /// One round: retired switches flushed; every switch's tables expired and exported.
    func tick() {
        let (list, gone, mapping, version): ([SwitchState], [SwitchState], [(id: UInt32, name: String)], Int) = lock.withLock {
            let r = retired
            retired = []
            return (Array(states.values), r, registry.mapping, registryVersion)
        }
        for s in gone { flush(s) }
        let offset = epochOffset()
        datapath.withLock { held in for sw in held.switches { sw.flows?.epochOffset = offset } }
        for s in list {
            let now = UInt64(realtimeNanoseconds() / 1_000_000)
            var flows = 0, accounted: UInt64 = 0, notTracked: UInt64 = 0
            var exported: [FlowRecord] = []
            for t in s.tables {
                s.records.removeAll(keepingCapacity: true)
                datapath.withLock { _ in
                    t.expire(now: now, idleTimeout: UInt64(s.spec.idleTimeoutSeconds) * 1000,
                             activeTimeout: UInt64(s.spec.activeTimeoutSeconds) * 1000, into: &s.records)
                    flows += t.count; accounted &+= t.accountedFrames; notTracked &+= t.notTracked
                }
                exported += s.records
            }
            send(exported, for: s, mapping: mapping, version: version, now: now)
            lock.withLock {
                s.summary.flows = flows
                s.summary.accountedFrames = accounted
                s.summary.notTrackedFrames = notTracked
                fillCounters(s)
            }
        }
    }

    /// Every flow of `s` as a forced-end record, exported; the exporter closed.
    private func flush(_ s: SwitchState) {
        var all: [FlowRecord] = []
        for t in s.tables {
            s.records.removeAll(keepingCapacity: true)
            datapath.withLock { _ in t.flush(into: &s.records) }
            all += s.records
        }
        let (mapping, version) = lock.withLock { (registry.mapping, registryVersion) }
        send(all, for: s, mapping: mapping, version: version, now: UInt64(realtimeNanoseconds() / 1_000_000))
        if !all.isEmpty { log("flow export \(s.name): flushed \(all.count) flow record(s)") }
        s.exporter?.close()
        s.exporter = nil
    }

    /// Sends `records` (and the templates when due) to `s`'s collector, opening the
    /// exporter first if needed. Failures are counted.
    private func send(_ records: [FlowRecord], for s: SwitchState, mapping: [(id: UInt32, name: String)], version: Int, now: UInt64) {
        if s.exporter == nil && now >= s.nextAttempt {
            do {
                s.exporter = try IPFIXExporter(collector: SocketEndpoint(host: s.spec.collectorHost, port: UInt16(clamping: s.spec.collectorPort)),
                                               observationDomain: s.spec.observationDomain)
                if s.exporterError != nil { log("flow export \(s.name): collector \(s.summary.collector) reachable again") }
                s.exporterError = nil
            } catch {
                if s.exporterError != "\(error)" { log("flow export \(s.name): \(error); retrying every \(FlowExportService.retryMilliseconds / 1000) s") }
                s.exporterError = "\(error)"
                s.nextAttempt = now + FlowExportService.retryMilliseconds
            }
        }
        guard let exporter = s.exporter else {
            if !records.isEmpty {
                s.failuresWithoutExporter += 1
                s.recordsLostWithoutExporter += UInt64(records.count)
            }
            return
        }
        if s.announcedVersion != version { exporter.announceAgain(); s.announcedVersion = version }
        let prefix = s.name + "/"
        let own = mapping.filter { $0.name.hasPrefix(prefix) }
        let refusedBefore = exporter.counters.connectionRefused
        exporter.export(records, interfaces: own, samplingInterval: UInt32(clamping: s.spec.sampling), now: now)
        if refusedBefore == 0 && exporter.counters.connectionRefused > 0 {
            log("flow export \(s.name): collector \(s.summary.collector) refuses (ICMP port unreachable); failures are counted in status")
        }
    }

    /// Copies the exporter's counters into the summary (under `lock`).
    private func fillCounters(_ s: SwitchState) {
        let c = s.exporter?.counters
        s.summary.recordsExported = c?.recordsSent ?? 0
        s.summary.messagesSent = c?.messagesSent ?? 0
        s.summary.sendFailures = (c?.sendFailures ?? 0) + s.failuresWithoutExporter
        s.summary.collectorUnreachable = c?.connectionRefused ?? 0
        s.summary.recordsLost = (c?.recordsLost ?? 0) + s.recordsLostWithoutExporter
        let errno = c?.lastErrno ?? 0
        s.summary.lastError = s.exporterError ?? (errno != 0 ? errorText(errno) : nil)
    }
}
