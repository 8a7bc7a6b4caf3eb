import Core
import Foundation
import LinuxIO
import Model
import Wire
import Synchronization

/// Proof that the datapath lock is held.
///
/// A `DatapathLock` exists only inside `Datapath.withLock`'s body (it is noncopyable and
/// handed out borrowed, so it cannot be kept), and every accessor of a switch's mutable
/// state (`SwitchRuntime.table(_:)`, `counters(_:)`, …) asks for one: code that reads or
/// changes forwarding state holds the lock by construction. The contract that comes with
/// it: **no system call, no blocking and no allocation that grows with the state while
/// holding it** — build frames and lists under the lock, send and log after it.
public struct DatapathLock: ~Copyable {
    @usableFromInline unowned(unsafe) let datapath: Datapath
    @usableFromInline init(_ datapath: Datapath) { self.datapath = datapath }
    /// The running switches, in plan order.
    public var switches: [SwitchRuntime] { datapath.switches }
    /// Copies the frames each worker has read since start into `out` (sized to the thread
    /// count beforehand; no allocation here).
    public func copyFramesPerWorker(into out: inout [UInt64]) {
        for (i, w) in datapath.workers.enumerated() where i < out.count { out[i] = w.frames }
    }
    /// Per worker, the longest it waited for the datapath lock since the last `resetLockWaits`.
    public var longestLockWaits: [Duration] { datapath.workers.map { .nanoseconds($0.longestLockWait) } }
    /// Copies `longestLockWaits` into `out` in nanoseconds (sized to the thread count
    /// beforehand; no allocation here).
    public func copyLongestLockWaits(into out: inout [Int64]) {
        for (i, w) in datapath.workers.enumerated() where i < out.count { out[i] = w.longestLockWait }
    }
    /// How many times the control side (`Datapath.withLock`) has taken the lock since start,
    /// this hold included: tells how a control operation splits its work into holds.
    public var controlHolds: UInt64 { datapath.controlHolds }
    /// Frames whose decision was the one before reused (`decisionIsReusable`) since start,
    /// all workers together.
    public var reusedDecisions: UInt64 { datapath.workers.reduce(0) { $0 &+ $1.reusedDecisions } }
    /// Batches decided, sent and accounted since start, all workers together.
    public var batchesCompleted: UInt64 { datapath.workers.reduce(0) { $0 &+ $1.batches } }
    /// Starts measuring the longest lock waits afresh.
    public func resetLockWaits() { for w in datapath.workers { w.longestLockWait = 0 } }
    /// True while `session` is fed frames (a reload that changed its ports ends it).
    public func feeds(_ session: CaptureSession) -> Bool { datapath.captures.contains { $0 === session } }
}

/// The forwarding loop: worker threads (one per core by default), each with its own epoll
/// over its share of the port queues, processing frames in batches.
///
/// ```
///   epoll_wait ─▶ port errors: read and clear them                          (no lock)
///             ─▶ per readable queue: read ≤ 64 frames                       (no lock)
///                   ─▶ per frame: decide (Core), apply its effects (learn, storm
///                      token, announcement, beacon), collect its egress copies
///                      (Core), put them on the transmit list                 (lock)
///                   ─▶ writev each entry through this worker's queue,
///                      flush each port written                               (no lock)
///                   ─▶ count the outcomes, egress captures                   (lock)
///                control tick (≥ 1 s, worker 0): MAC aging                  (lock)
/// ```
/// Every per-frame policy is Core's (`decide`, `collectEgress`); this loop only moves bytes
/// and applies the decisions' requested effects, so `trace` sees what forwarding does.
///
/// Ownership: the MAC tables, counters, storm buckets, team state, link states and capture
/// rings are read and written only under `lock`, the datapath lock, reached through a
/// `DatapathLock` value. A worker takes it to decide a batch and again to account for the
/// batch's transmits, never across a system call: deciding costs ~100 ns a frame, the
/// kernel's work in read/write several µs, so workers contend little and their I/O runs in
/// parallel. The control side takes the lock for consistent snapshots. A queue fd is read
/// only by the worker whose epoll has it (queue q of a port belongs to worker q mod
/// threads; single-queue ports — AF_PACKET uplinks and VM ports — to worker 0); a worker
/// writes to any port through its own queue of that port (worker index mod the port's
/// queues). Each worker holds its `ioLock` for a whole batch; `replaceSwitches` takes every
/// worker's `ioLock` before `lock`, so no read or write ever uses a port a reload removed.
/// Lock order: `ioLock`, then `lock`. The per-frame path allocates nothing: each worker's
/// receive area, transmit list and egress list are allocated once.
///
/// A port whose device goes away (EPOLLERR on a TAP whose netdev was deleted, a read that
/// finds the device gone, an AF_PACKET guest port whose netdev vanished) is marked down
/// (`PortLinks`), its MAC entries flushed, and every worker stops polling it; the rest keeps
/// forwarding. Uplink errors go to the team monitor instead (failover).
public final class Datapath {
    /// `withLock` holds since start (under the lock; `DatapathLock.controlHolds`).
    var controlHolds: UInt64 = 0
    /// Replaced only by `replaceSwitches`, under `lock` and every worker's `ioLock`.
    fileprivate(set) var switches: [SwitchRuntime]
    /// Bumped by every `replaceSwitches`: epoll events fetched before a swap are stale.
    private var generation: UInt64 = 0
    /// Bumped whenever a port goes down: workers drop that port's queues from their epoll.
    private var linkGeneration: UInt64 = 0
    let lock = NSLock()
    fileprivate let workers: [DatapathWorker]
    private let done = DispatchSemaphore(value: 0)
    private var started = false
    private var stopping = false
    /// Set while `replaceSwitches` waits for the workers' I/O locks: a worker does not start
    /// another batch meanwhile (NSLock is not fair; a busy worker would take its lock again
    /// at once and stall the reload, and with it the workers already paused).
    private let reloadPending = Atomic<Bool>(false)
    private static let wakeToken: UInt64 = .max
    /// Direct rounds in a row before epoll is asked again (see `run`).
    static let directRoundLimit = 8
    /// Running capture sessions; changed only under `lock` (`addCapture`/`removeCapture`).
    fileprivate var captures: [CaptureSession] = []
    /// One predictable branch per frame when nobody captures.
    private var capturing = false
    /// How long a worker spins after a batch with work before it sleeps in epoll_wait
    /// (poll mode; 0 = off). docs/ARCHITECTURE.md, "Poll mode".
    private let busyPollNanoseconds: Int64
    /// Told (outside the lock) when a port goes down: switch name, port name, reason.
    public var onPortDown: ((String, String, PortDownReason) -> Void)?
    /// The clock the workers read once per batch (the monotonic clock; tests inject their own
    /// so that storm buckets and ages are reproducible).
    let clock: () -> MonotonicInstant
    /// VXLAN underlay endpoints whose sockets the workers poll (Datapath+Underlay.swift);
    /// replaced only by `replaceSwitches`, under `lock` and every worker's `ioLock`.
    var underlays: [UnderlayEndpoint] = []

    /// Worker threads.
    public var threadCount: Int { workers.count }
    /// The datapath's "now" (what the next batch would read): trace and reports use it.
    public func now() -> MonotonicInstant { clock() }
    /// The busy-poll window in microseconds (0: off).
    public var busyPollMicroseconds: Int { Int(busyPollNanoseconds / 1000) }

    /// - Parameters:
    ///   - threads: worker threads; a port's queue q is read by worker q mod threads.
    ///   - busyPollMicroseconds: spin this long after a batch with work before sleeping.
    ///   - clock: what workers read as "now" once per batch.
    public init(switches: [SwitchRuntime], threads: Int = 1, busyPollMicroseconds: Int = 0,
                clock: @escaping () -> MonotonicInstant = { .now }) throws {
        precondition(threads >= 1)
        self.switches = switches
        self.clock = clock
        busyPollNanoseconds = Int64(busyPollMicroseconds) * 1000
        workers = try (0..<threads).map { try DatapathWorker(index: $0) }
        for w in workers {
            try w.epoll.add(w.wake.fd, data: Datapath.wakeToken)
            for (fd, data) in Datapath.registrations(switches, underlays: [], worker: w.index, of: threads) {
                try w.epoll.add(fd, data: data)
            }
        }
    }

    /// The epoll registrations of worker `w`: fd → (switch, queue, port), for every port
    /// that is up.
    private static func registrations(_ list: [SwitchRuntime], underlays: [UnderlayEndpoint], worker w: Int, of threads: Int) -> [Int32: UInt64] {
        var out: [Int32: UInt64] = [:]
        for (e, endpoint) in underlays.enumerated() {
            var q = w
            while q < endpoint.queueCount {
                out[endpoint.pollFD(queue: q)] = QueueKey(switchIndex: QueueKey.underlay, queue: q, port: e).data
                q += threads
            }
        }
        for (s, sw) in list.enumerated() {
            for (p, port) in sw.ports.enumerated() where !sw.links.isDown(p) && port.isPolled {
                var q = w
                while q < port.queueCount {
                    out[port.pollFD(queue: q)] = QueueKey(switchIndex: s, queue: q, port: p).data
                    q += threads
                }
            }
        }
        return out
    }

    /// Starts the worker threads.
    public func start() {
        guard !started else { return }
        started = true
        lock.lock(); stopping = false; lock.unlock()
        for w in workers {
            let t = Thread { [unowned self] in self.run(w) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    /// Stops the threads and waits for each to finish its batch.
    public func stop() {
        guard started else { return }
        lock.lock(); stopping = true; lock.unlock()
        for w in workers { w.wake.signal() }
        for _ in workers { done.wait() }
        started = false
    }

    /// Starts feeding a capture session.
    public func addCapture(_ session: CaptureSession) {
        lock.lock(); captures.append(session); capturing = true; lock.unlock()
    }

    /// Stops feeding a capture session.
    public func removeCapture(_ session: CaptureSession) {
        lock.lock(); captures.removeAll { $0 === session }; capturing = !captures.isEmpty; lock.unlock()
    }

    /// Runs `body` while no worker is deciding or accounting a batch, with the proof that
    /// the lock is held. Keep `body` short: no system calls, no logging (see `DatapathLock`).
    public func withLock<T>(_ body: (borrowing DatapathLock) throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        controlHolds &+= 1
        let held = DatapathLock(self)
        return try body(held)
    }

    /// Runs `body` while worker 0 holds no batch: the running switches' port I/O stays open
    /// meanwhile (a reload waits for every worker's I/O lock before it swaps and closes
    /// ports), so `body` may write frames through ports of `lock.switches` it read under the
    /// datapath lock. System calls are allowed in `body` (it holds an I/O lock, not the
    /// datapath lock); take the datapath lock inside only briefly (lock order: I/O lock, then
    /// the datapath lock). Worker 0 waits meanwhile: keep `body` to a few writes (the
    /// multicast querier's queries).
    public func withPortWrites<T>(_ body: () throws -> T) rethrows -> T {
        let w = workers[0]
        w.ioLock.lock(); defer { w.ioLock.unlock() }
        return try body()
    }

    /// Marks port `port` of switch `switchName` down (its device left the guest, say) and
    /// stops polling it; the port's MAC entries are flushed. No-op if it is already down.
    public func setPortDown(switch switchName: String, port: String, reason: PortDownReason) {
        let changed: Bool = withLock { _ in
            guard let sw = switches.first(where: { $0.plan.name == switchName }), let p = sw.plan.portIndex(named: port) else { return false }
            return markDown(sw, port: p, reason: reason)
        }
        if changed {
            for w in workers { w.wake.signal() }
            onPortDown?(switchName, port, reason)
        }
    }

    /// Under `lock`.
    private func markDown(_ sw: SwitchRuntime, port: Int, reason: PortDownReason) -> Bool {
        guard sw.links.setDown(port, reason) else { return false }
        sw.table.flush(port: port)
        sw.multicast?.flush(port: port)
        linkGeneration &+= 1
        return true
    }

    // MARK: - Live reload

    /// Swaps in a new set of switches between two batches (live reload).
    ///
    /// Under every worker's I/O lock and the datapath lock: each new switch takes over the
    /// MAC entries, counters and link states of the ports it shares (same name, same I/O
    /// object) with the old switch of the same name (`SwitchRuntime.carryOver`); the epoll
    /// registrations follow the new layout (fds of ports that went away or are down are
    /// removed, new ones added, ports whose (switch, port) index moved are re-registered
    /// with their new data); capture sessions whose switch layout changed are ended. If a
    /// new fd cannot be added, nothing changes. `body`, if given, runs in the same critical
    /// section after the swap (the caller publishes its own view of the plans there, so
    /// readers never see a mix). When this returns, no worker uses a port that is not in
    /// `new`: the caller may close the others.
    ///
    /// `underlays`, when given, replaces the polled underlay endpoints (nil keeps them); each
    /// endpoint's demultiplexer is rebuilt from `new` either way, before the locks are taken.
    public func replaceSwitches(_ new: [SwitchRuntime], underlays newUnderlays: [UnderlayEndpoint]? = nil,
                                then body: (borrowing DatapathLock) -> Void = { _ in }) throws {
        let endpoints = newUnderlays ?? withLock { _ in underlays }
        let plans = new.map(\.plan)
        let demuxes = endpoints.map { TunnelDemux(plans: plans, udpPort: $0.udpPort) }
        reloadPending.store(true, ordering: .sequentiallyConsistent)
        for w in workers { w.ioLock.lock() }
        lock.lock()
        defer {
            lock.unlock()
            for w in workers.reversed() { w.ioLock.unlock() }
            reloadPending.store(false, ordering: .sequentiallyConsistent)
        }
        let held = DatapathLock(self)
        let now = clock()
        for sw in new {
            if let old = switches.first(where: { $0.plan.name == sw.plan.name }) { sw.carryOver(from: old, now: now, held) }
        }
        let n = workers.count
        let before = workers.map { Datapath.registrations(switches, underlays: underlays, worker: $0.index, of: n) }
        let after = workers.map { Datapath.registrations(new, underlays: endpoints, worker: $0.index, of: n) }
        var added: [(Epoll, Int32)] = []
        for w in workers {
            for (fd, data) in after[w.index] where before[w.index][fd] == nil {
                do { try w.epoll.add(fd, data: data); added.append((w.epoll, fd)) } catch {
                    for (e, f) in added { try? e.remove(f) }
                    throw error
                }
            }
        }
        for w in workers {
            for (fd, data) in after[w.index] {
                if let old = before[w.index][fd], old != data { try? w.epoll.modify(fd, events: Epoll.readable, data: data) }
            }
            for fd in before[w.index].keys where after[w.index][fd] == nil { try? w.epoll.remove(fd) }
        }
        let oldLayout = switches.map { (name: $0.plan.name, ports: $0.plan.ports.map(\.name)) }
        let newLayout = new.map { (name: $0.plan.name, ports: $0.plan.ports.map(\.name)) }
        captures.removeAll { !$0.selection.survives(old: oldLayout, new: newLayout) }
        capturing = !captures.isEmpty
        switches = new
        for (e, d) in zip(endpoints, demuxes) { e.demux = d }
        underlays = endpoints
        generation &+= 1
        body(held)
    }

    // MARK: - Workers

    private func run(_ w: DatapathWorker) {
        ThreadControl.setName("tapestry-dp\(w.index)")
        let maxEvents = 64
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: maxEvents)
        let errors = UnsafeMutableBufferPointer<(key: UInt64, error: Int32)>.allocate(capacity: maxEvents)
        defer { events.deallocate(); errors.deallocate(); done.signal() }
        var lastTick = clock()
        lock.lock(); var seen = generation; var seenLinks = linkGeneration; lock.unlock()
        var hadWork = false
        var downed: [(String, String, PortDownReason)] = []
        downed.reserveCapacity(maxEvents)
        var unpoll: [Int32] = []
        unpoll.reserveCapacity(256)
        // Direct rounds: the queues of ports polled in memory (vhost-user) whose last batch
        // had frames, or whose empty ring is still polled, are read again at once, without
        // asking epoll (`PortIO.readsAgain`) — a busy or polled virtqueue then costs no
        // system call per batch, as a DPDK poll-mode thread polls its queues. After
        // `directRoundLimit` such rounds in a row, or when no queue asks for one, epoll is
        // asked as usual, so the other ports and the wake-up fd wait a few batches at most.
        let direct = UnsafeMutablePointer<UInt64>.allocate(capacity: maxEvents)
        defer { direct.deallocate() }
        var directCount = 0, directRounds = 0
        while true {
            // Poll mode: right after a batch with work, spin on a non-blocking wait for up
            // to `busyPollNanoseconds` before sleeping in the kernel; a frame that arrives
            // meanwhile skips the thread wake-up (docs/ARCHITECTURE.md, "Poll mode").
            var n = 0
            if directCount > 0 && directRounds < Datapath.directRoundLimit {
                directRounds += 1
                for i in 0..<directCount { events[i] = EpollEvent(events: Epoll.readable, data: direct[i]) }
                n = directCount
            } else {
                directRounds = 0
            }
            directCount = 0
            if n == 0 && busyPollNanoseconds > 0 && hadWork {
                let until = monotonicNanoseconds() + busyPollNanoseconds
                repeat {
                    n = (try? w.epoll.wait(into: events, timeoutMilliseconds: 0)) ?? 0
                    // A guest's task woken on this CPU (the pinger getting its reply) runs at
                    // once instead of waiting for the scheduler to preempt the spin.
                    if n == 0 { ThreadControl.yield() }
                } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 { n = (try? w.epoll.wait(into: events, timeoutMilliseconds: 1000)) ?? 0 }
            hadWork = n > 0
            while reloadPending.load(ordering: .sequentiallyConsistent) { ThreadControl.sleep(microseconds: 100) }
            w.ioLock.lock()
            // Port errors: read and clear them before the datapath lock (system calls).
            var errorCount = 0
            for i in 0..<n where events[i].events & (Epoll.error | Epoll.hangUp) != 0 && events[i].data != Datapath.wakeToken {
                errors[errorCount] = (events[i].data, pendingError(QueueKey(events[i].data)))
                errorCount += 1
            }
            w.takeLock(lock)
            if stopping { lock.unlock(); w.ioLock.unlock(); return }
            if generation != seen {
                // The switches were replaced while this thread waited: these events carry
                // old (switch, port) indexes. Drop them; level-triggered epoll reports the
                // still-readable fds again under their new indexes.
                seen = generation
                seenLinks = linkGeneration
                lock.unlock(); w.ioLock.unlock()
                continue
            }
            let now = clock()
            if w.index == 0 && now.nanoseconds - lastTick.nanoseconds >= 1_000_000_000 {
                lastTick = now
                for sw in switches {
                    sw.table.expire(now: now, aging: sw.plan.aging)
                    sw.multicast?.expire(now: now)
                }
            }
            for i in 0..<errorCount {
                let key = QueueKey(errors[i].key)
                if let d = portError(switchIndex: key.switchIndex, port: key.port, error: errors[i].error) { downed.append(d) }
            }
            if linkGeneration != seenLinks {
                seenLinks = linkGeneration
                for sw in switches where sw.links.downCount > 0 {
                    for (p, port) in sw.ports.enumerated() where sw.links.isDown(p) {
                        var q = w.index
                        while q < port.queueCount { unpoll.append(port.pollFD(queue: q)); q += workers.count }
                    }
                }
            }
            lock.unlock()
            for fd in unpoll { try? w.epoll.remove(fd) }
            if !unpoll.isEmpty { unpoll.removeAll(keepingCapacity: true); w.ioLock.unlock(); reportDown(&downed); continue }
            for i in 0..<n {
                if events[i].data == Datapath.wakeToken { _ = w.wake.drain(); continue }
                if events[i].events & (Epoll.error | Epoll.hangUp) != 0 { continue }
                let key = QueueKey(events[i].data)
                if key.switchIndex == QueueKey.underlay {
                    serviceUnderlay(w, endpoint: key.port, queue: key.queue)
                    continue
                }
                if let d = service(w, switchIndex: key.switchIndex, queue: key.queue, port: key.port) { downed.append(d) }
                if w.readAgain { direct[directCount] = events[i].data; directCount += 1 }
            }
            w.ioLock.unlock()
            reportDown(&downed)
        }
    }

    /// Tells `onPortDown` about ports that went down (outside every lock).
    private func reportDown(_ list: inout [(String, String, PortDownReason)]) {
        guard !list.isEmpty else { return }
        for (s, p, r) in list { onPortDown?(s, p, r) }
        list.removeAll(keepingCapacity: true)
        // The other workers drop the port's queues from their epoll on their next round.
        for w in workers { w.wake.signal() }
    }

    /// The pending error of the port behind `key` (a system call: no datapath lock). The
    /// switch list cannot change meanwhile (this worker's I/O lock is held).
    private func pendingError(_ key: QueueKey) -> Int32 {
        guard key.switchIndex < switches.count, key.port < switches[key.switchIndex].ports.count else { return 0 }
        let io = switches[key.switchIndex].ports[key.port]
        let e = io.takePendingError()
        // A guest's AF_PACKET port whose netdev went away reports ENETDOWN once: tell that
        // apart from a link that is merely down.
        if e == ENETDOWN, let pp = io as? PacketPort, !pp.deviceExists { return ENODEV }
        return e
    }

    /// EPOLLERR/EPOLLHUP on a port, with the error it reported. On an uplink it tells the
    /// team monitor (ENETDOWN: our NIC went down; ENXIO/ENODEV: gone); a guest port whose
    /// device is gone goes down. Under `lock`; returns what to report.
    private func portError(switchIndex: Int, port: Int, error err: Int32) -> (String, String, PortDownReason)? {
        guard switchIndex < switches.count else { return nil }   // an underlay socket: nothing to mark
        let sw = switches[switchIndex]
        let member = Int(sw.plan.hot[port].teamMember)
        if member >= 0 {
            if err != 0 { sw.uplinkErrors[member] = err }
            return nil
        }
        // A TAP whose netdev was deleted reports EPOLLERR with no socket error; a guest's
        // AF_PACKET port, ENODEV (see `pendingError`). ENETDOWN alone: the link is down, not gone.
        guard err == 0 || err == ENODEV || err == ENXIO else { return nil }
        guard markDown(sw, port: port, reason: .deviceGone) else { return nil }
        return (sw.plan.name, sw.plan.ports[port].name, .deviceGone)
    }

    /// One batch from one port queue: read up to 64 frames, decide them under the lock,
    /// transmit without it, account under it. Called with `w.ioLock` held. Returns a port
    /// that went down (its device vanished under the read).
    private func service(_ w: DatapathWorker, switchIndex: Int, queue: Int, port: Int) -> (String, String, PortDownReason)? {
        let sw = switches[switchIndex]
        let io = sw.ports[port]
        // A port whose calls must not overlap (vhost-user) is held for the batch of reads.
        let gate = sw.gates[port]
        gate?.lock()
        let got = io.readBatch(queue: queue, into: w.readBatch)
        let count = got.count
        // EBADFD: a TAP whose netdev was deleted; ENXIO/ENODEV: the device is gone.
        let gone = got.error == EBADFD || got.error == ENXIO || got.error == ENODEV
        io.endReads(queue: queue)
        gate?.unlock()
        w.readAgain = io.readsAgain(after: count)
        var downed: (String, String, PortDownReason)? = nil
        guard count > 0 || gone else { return nil }
        let header = io.vnetHeaderSize
        w.takeLock(lock)
        if gone && sw.plan.hot[port].teamMember < 0 && markDown(sw, port: port, reason: .deviceGone) {
            downed = (sw.plan.name, sw.plan.ports[port].name, .deviceGone)
        }
        let now = clock()
        w.frames &+= UInt64(count)
        w.egress.prepare(portCount: sw.plan.ports.count)
        w.tx.prepare(portCount: sw.plan.ports.count)
        // Loaded once per batch: each load of a class reference costs a retain/release pair.
        let plan = sw.plan, counters = sw.counters, flows = sw.flows
        // Room for any one frame: every port once, plus its mirror copies.
        let reserve = plan.ports.count * (plan.hasMirrors ? 1 + plan.mirrorFanout : 1) + 1
        var i = 0
        while i < count {
            // One context per run of frames between two flushes, a `let`: passed to each
            // frame by reference, never copied (a `var` reassigned after a flush was copied
            // through the stack per frame).
            let context = sw.context(now: now)
            w.memo.clear()
            while i < count {
                let n = w.rxLength[i]
                if n < header { i += 1; continue }
                if w.tx.count > 0 && w.tx.count + reserve > TransmitList.capacity {
                    // The lock is let go: the team monitor may swap the team state, so the
                    // next frames get a fresh context.
                    flush(w, sw, switchIndex: switchIndex)
                    break
                }
                w.tx.frameStart = Int32(w.tx.count)
                let start = w.area + w.rxOffset[i]
                let vnet = VNetHeader(header > 0 ? UnsafeRawPointer(start) : nil)
                forward(UnsafeRawBufferPointer(start: start + header, count: n - header), vnet: vnet, worker: w,
                        sw: sw, plan: plan, counters: counters, flows: flows, context: context, switchIndex: switchIndex, inPort: port)
                i += 1
            }
        }
        if w.tx.count > 0 { flush(w, sw, switchIndex: switchIndex) }
        w.batches &+= 1
        lock.unlock()
        return downed
    }

    /// Sends the transmit list without the lock, then accounts for it. Called and returns
    /// with `lock` held.
    func flush(_ w: DatapathWorker, _ sw: SwitchRuntime, switchIndex: Int) {
        // The lock is let go: what the last decision read may change.
        w.memo.clear()
        lock.unlock()
        w.tx.transmit(through: sw, worker: w.index)
        w.takeLock(lock)
        account(w, sw, switchIndex: switchIndex)
    }

    /// One frame: Core decides (`decide`, `collectEgress`); this applies the decision's
    /// effects and puts each copy on the transmit list. Under `lock`; allocates nothing.
    @inline(__always)
    func forward(_ frame: UnsafeRawBufferPointer, vnet: VNetHeader, worker w: DatapathWorker, sw: SwitchRuntime,
                         plan: SwitchPlan, counters: PortCounters, flows: FlowAccounting?, context: DecisionContext,
                         switchIndex: Int, inPort: Int) {
        counters.received(port: inPort, bytes: frame.count)
        let egress = w.egress
        let d: Decision
        let ingressDrop: DropReason?
        if let again = w.memo.decision(for: frame, offload: vnet.offload) {
            // The frame before in this run had the same first bytes, length and offload, and
            // Core says its decision holds for this one (`decisionIsReusable`): its effects
            // changed nothing, and the copies Core collected for it are still in `egress`.
            d = again
            ingressDrop = nil
            w.reusedDecisions &+= 1
        } else {
            let fresh = decide(frame: frame, offload: vnet.offload, inPort: inPort, plan: plan, context: context)
            // The decision's requested effects.
            if case .local(let what) = fresh.verdict {
                w.memo.clear()
                switch what {
                case .teamBeacon:
                    if sw.beacons != nil, let b = Beacon.parse(frame: frame) {
                        sw.beacons!.received(b, on: Int(plan.hot[inPort].teamMember), vlan: fresh.vlan, now: context.now)
                    }
                case .lldp:
                    // A copy for the LLDP agent, which parses it off the frame path.
                    sw.lldpInbox?.put(frame, port: inPort)
                }
                if capturing { captureIngress(w, switchIndex, port: inPort, frame: frame, vlan: nil, reason: nil) }
                return
            }
            if fresh.takesStormToken, let why = fresh.floodReason { context.storm?.take(port: inPort, reason: why, now: context.now) }
            if fresh.takesShapingTokens { context.shaper?.take(port: inPort, .ingress, bytes: frame.count, now: context.now) }
            if fresh.snoops {
                context.multicast?.snoop(frame: frame, verifyChecksums: !fresh.offload.needsChecksum, port: inPort, vlan: fresh.learningVLAN, now: context.now)
            }
            if fresh.announces { sw.announcements.stamp(vlan: fresh.learningVLAN, mac: fresh.source, now: context.now) }
            var unchanged = true
            if fresh.learn {
                unchanged = context.table.learn(vlan: fresh.learningVLAN, mac: fresh.source, port: inPort, now: context.now,
                                                portLimit: plan.macLimit(port: inPort)) == .refreshed
            }
            ingressDrop = collectEgress(of: fresh, inPort: inPort, plan: plan, context: context, into: egress)
            if unchanged && ingressDrop == nil && decisionIsReusable(fresh, inPort: inPort, plan: plan, context: context) {
                w.memo.remember(fresh, for: frame, offload: vnet.offload)
            } else {
                w.memo.clear()
            }
            d = fresh
        }
        if case .drop(let reason) = d.verdict {
            counters.dropped(port: inPort, reason: reason)
            if capturing { captureIngress(w, switchIndex, port: inPort, frame: frame, vlan: nil, reason: reason) }
        } else {
            if capturing { captureIngress(w, switchIndex, port: inPort, frame: frame, vlan: d.vlan, reason: nil) }
            if let r = ingressDrop { counters.dropped(port: inPort, reason: r) }
            // IPFIX: a sampled frame the switch forwards or floods, as received.
            else if let f = flows { f.account(frame, d, inPort: inPort, worker: w.index, now: context.now) }
        }
        let base = UnsafeMutableRawPointer(mutating: frame.baseAddress!)
        // Egress shaping's effect: each output to a port shaped on egress is charged.
        let egressShaper = context.shaper.flatMap { $0.shapesEgress ? $0 : nil }
        // How a copy for a port without offloads is finished (planned once per frame).
        var finish: TransmitList.Finish? = nil
        for i in 0..<egress.count {
            let item = egress[i]
            let p = Int(item.port)
            var entries = 1
            if item.finishOffload {
                if finish == nil { finish = SoftwareOffload(frame: frame, header: vnet.raw) }
                entries = finish!.frames
            }
            // Room for this copy (and an output's mirror copies, which follow it): a frame cut
            // into segments may need more than the batch reserved. Flushing here is safe
            // between outputs: an egress mirror copy refers only to its own output.
            if item.kind == .output && w.tx.room < entries + plan.mirrorFanout {
                flush(w, sw, switchIndex: switchIndex)
                w.tx.frameStart = 0
            }
            var k: Int32 = -1
            switch item.kind {
            case .refused:
                counters.dropped(port: p, reason: item.refusal)
                continue
            case .output:
                if let s = egressShaper, s.shapes(port: p, .egress) {
                    s.take(port: p, .egress, bytes: egressLength(frame.count, item.rewrite), now: context.now)
                }
                k = item.finishOffload
                    ? w.tx.appendFinished(port: p, frame: base, count: frame.count, finish: finish!, rewrite: item.rewrite, vlan: d.vlan, captured: true, after: -1)
                    : w.tx.append(port: p, frame: base, count: frame.count, vnet: vnet, rewrite: item.rewrite, vlan: d.vlan, captured: true, after: -1)
            case .mirrorIngress:
                k = item.finishOffload
                    ? w.tx.appendFinished(port: p, frame: base, count: frame.count, finish: finish!, rewrite: item.rewrite, vlan: d.vlan, captured: false, after: -1)
                    : w.tx.append(port: p, frame: base, count: frame.count, vnet: vnet, rewrite: item.rewrite, vlan: d.vlan, captured: false, after: -1)
            case .mirrorEgress:
                let of = w.txIndex[Int(item.after)]
                guard of >= 0 else { continue }
                k = item.finishOffload
                    ? w.tx.appendFinished(port: p, frame: base, count: frame.count, finish: finish!, rewrite: item.rewrite, vlan: d.vlan, captured: false, after: of)
                    : w.tx.append(port: p, frame: base, count: frame.count, vnet: vnet, rewrite: item.rewrite, vlan: d.vlan, captured: false, after: of)
            }
            w.txIndex[i] = k
            if k == -1 { counters.dropped(port: p, reason: .transmitQueueFull) }
            if k == -2 { counters.dropped(port: p, reason: .offloadNotSupported) }
        }
    }

    /// Counts the transmit list's outcomes and offers the sent (or refused) copies to the
    /// capture sessions; empties the list. Under `lock`.
    private func account(_ w: DatapathWorker, _ sw: SwitchRuntime, switchIndex: Int) {
        let counters = sw.counters
        let tx = w.tx
        for k in 0..<tx.count {
            let e = tx.entries[k]
            let reason: DropReason?
            switch e.outcome {
            case TxEntry.sent: counters.sent(port: Int(e.port), bytes: Int(e.length)); reason = nil
            case TxEntry.skipped, TxEntry.pending: continue
            default:
                let r = DropReason(rawValue: UInt8(e.outcome))!
                counters.dropped(port: Int(e.port), reason: r)
                reason = r
            }
            if capturing && e.captured {
                if sw.plan.hot[Int(e.port)].isTunnel {
                    // A tunnel's capture shows the inner frame, without the tunnel form's tag.
                    let n = Datapath.innerFrame(tx.iov + TransmitList.iovPerEntry * k + 1, Int(e.pieces), into: w.captureIOV)
                    capture(switchIndex, port: Int(e.port), point: .egress, vlan: e.vlan, reason: reason, segments: w.captureIOV, pieces: n)
                } else {
                    capture(switchIndex, port: Int(e.port), point: .egress, vlan: e.vlan, reason: reason,
                            segments: tx.iov + TransmitList.iovPerEntry * k + 1, pieces: Int(e.pieces))
                }
            }
        }
        tx.count = 0
    }

    private func captureIngress(_ w: DatapathWorker, _ switchIndex: Int, port: Int, frame: UnsafeRawBufferPointer, vlan: VLANID?, reason: DropReason?) {
        w.rxIOV[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress!), iov_len: frame.count)
        if switches[switchIndex].plan.hot[port].isTunnel {
            let n = Datapath.innerFrame(w.rxIOV, 1, into: w.captureIOV)
            capture(switchIndex, port: port, point: .ingress, vlan: vlan, reason: reason, segments: w.captureIOV, pieces: n)
            return
        }
        capture(switchIndex, port: port, point: .ingress, vlan: vlan, reason: reason, segments: w.rxIOV, pieces: 1)
    }

    /// Offers a frame given as iovec pieces to every capture session that wants it.
    private func capture(_ switchIndex: Int, port: Int, point: CapturePoint, vlan: VLANID?, reason: DropReason?,
                         segments: UnsafePointer<iovec>, pieces: Int) {
        var now: UInt64 = 0
        for s in captures where s.wants(switchIndex: switchIndex, port: port, point: point, vlan: vlan, dropped: reason != nil) {
            if now == 0 { now = realtimeNanoseconds() }
            s.record(switchIndex: switchIndex, port: port, point: point, reason: reason, segments: segments, count: pieces, now: now)
        }
    }
}

/// The monotonic clock now.
@inline(__always)
func monotonicNow() -> MonotonicInstant { .now }

extension VNetHeader {
    /// What the header leaves to the receiver (none for a port without a header).
    @inline(__always) var offload: FrameOffload {
        raw == nil ? .none : FrameOffload(isGSO: isGSO, needsChecksum: needsChecksum)
    }
}

/// What a port queue's epoll registration carries: switch (16 bits), queue (16), port (32).
/// Never equal to the wake-up token (all ones).
struct QueueKey {
    let switchIndex: Int, queue: Int, port: Int
    init(switchIndex: Int, queue: Int, port: Int) { self.switchIndex = switchIndex; self.queue = queue; self.port = port }
    init(_ data: UInt64) {
        switchIndex = Int(data >> 48); queue = Int((data >> 32) & 0xFFFF); port = Int(data & 0xFFFF_FFFF)
    }
    var data: UInt64 { UInt64(switchIndex) << 48 | UInt64(queue) << 32 | UInt64(port) }
    /// The switch index that marks an underlay endpoint's socket (`port` = endpoint index).
    static let underlay = 0xFFFE
}

/// A decision `decisionIsReusable` accepted, and the frame it was decided for: its first
/// `reusableDecisionKeyBytes` (24) bytes, its length and its offload. A frame equal in all
/// three, next in the same run (same port, same context, the lock held since), gets the same
/// decision without `decide`. Cleared when a run starts, when the lock is let go (`flush`),
/// and after every frame whose decision is not reusable.
struct DecisionMemo {
    private var decision: Decision? = nil
    private var key0: UInt64 = 0, key1: UInt64 = 0, key2: UInt64 = 0
    private var length = 0
    private var offload = FrameOffload.none

    /// The remembered decision if `frame` matches it.
    @inline(__always) func decision(for frame: UnsafeRawBufferPointer, offload o: FrameOffload) -> Decision? {
        guard let d = decision, frame.count == length, o == offload, let b = frame.baseAddress else { return nil }
        guard b.loadUnaligned(as: UInt64.self) == key0, b.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == key1,
              b.loadUnaligned(fromByteOffset: 16, as: UInt64.self) == key2 else { return nil }
        return d
    }

    @inline(__always) mutating func remember(_ d: Decision, for frame: UnsafeRawBufferPointer, offload o: FrameOffload) {
        guard frame.count >= reusableDecisionKeyBytes, reusableDecisionKeyBytes == 24, let b = frame.baseAddress else { decision = nil; return }
        key0 = b.loadUnaligned(as: UInt64.self)
        key1 = b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        key2 = b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        length = frame.count
        offload = o
        decision = d
    }

    @inline(__always) mutating func clear() { decision = nil }
}

/// What one datapath thread owns: its epoll (its share of the port queues), wake-up fd,
/// receive area, transmit and egress lists, all allocated once.
final class DatapathWorker {
    let index: Int
    let epoll: Epoll
    let wake: EventFD
    /// Held for a whole batch (see `Datapath`).
    let ioLock = NSLock()

    /// Largest read: a 64 KiB GSO frame plus its vnet header.
    static let frameMax = 65536 + 64
    /// The batch's frames back to back (64-byte aligned); a read needs `frameMax` free.
    static let areaSize = (1 << 20) + frameMax
    /// Frames read from one queue per wake-up before moving on (fairness between ports).
    static let batch = 64

    let area: UnsafeMutableRawPointer
    let rxOffset: UnsafeMutablePointer<Int>
    let rxLength: UnsafeMutablePointer<Int>
    let tx = TransmitList()
    /// The current frame's copies, as Core collected them.
    let egress = EgressList(capacity: TransmitList.capacity)
    /// Per egress item of the current frame, its transmit-list entry (-1: none).
    let txIndex: UnsafeMutablePointer<Int32>
    /// Frames this worker read (changed and read under the datapath lock).
    var frames: UInt64 = 0
    /// The last `service`'s port asked to be read again directly (`PortIO.readsAgain`).
    var readAgain = false
    /// Batches this worker decided, sent and accounted (under the datapath lock).
    var batches: UInt64 = 0
    /// The longest this worker waited for the datapath lock (nanoseconds; under the lock).
    var longestLockWait: Int64 = 0
    /// `area`, `rxOffset` and `rxLength` as one port's `readBatch` fills them.
    let readBatch: ReadBatch
    /// The last decision of the current run of frames, when the next frame may reuse it.
    var memo = DecisionMemo()
    /// Frames that reused the decision before (under the datapath lock).
    var reusedDecisions: UInt64 = 0
    /// One iovec for ingress captures.
    let rxIOV: UnsafeMutablePointer<iovec>
    /// A tunnel port's captured frame without its tag (`Datapath.innerFrame`).
    let captureIOV = UnsafeMutablePointer<iovec>.allocate(capacity: 8)

    init(index: Int) throws {
        self.index = index
        epoll = try Epoll()
        wake = try EventFD()
        area = .allocate(byteCount: DatapathWorker.areaSize, alignment: 64)
        rxOffset = .allocate(capacity: DatapathWorker.batch)
        rxLength = .allocate(capacity: DatapathWorker.batch)
        txIndex = .allocate(capacity: TransmitList.capacity)
        rxIOV = .allocate(capacity: 1)
        readBatch = ReadBatch(area: area, areaSize: DatapathWorker.areaSize, frameMax: DatapathWorker.frameMax,
                              offsets: rxOffset, lengths: rxLength, limit: DatapathWorker.batch)
    }

    deinit { area.deallocate(); rxOffset.deallocate(); rxLength.deallocate(); txIndex.deallocate(); rxIOV.deallocate(); captureIOV.deallocate() }

    /// Takes the datapath lock and records a wait for it: an uncontended lock is taken by a
    /// try, without reading the clock (clock reads were 4.7% of a vhost-user forwarding
    /// thread under perf, most of them around this lock); a contended one is timed from the
    /// failed try.
    @inline(__always)
    func takeLock(_ lock: NSLock) {
        if lock.try() { return }
        let start = monotonicNanoseconds()
        lock.lock()
        let waited = monotonicNanoseconds() - start
        if waited > longestLockWait { longestLockWait = waited }
    }
}
