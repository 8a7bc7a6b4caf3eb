import Core
import Foundation
import LinuxIO
import Model
import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock (aging, uptime). Read once per batch, not per frame.
public func monotonicSeconds() -> Int64 { monotonicNanoseconds() / 1_000_000_000 }

/// Nanoseconds on the monotonic clock (storm control).
public func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Something a switch port can send frames to and receive frames from.
///
/// A netns guest's port is a TAP character device owned by the switch (one fd per queue);
/// AF_PACKET ports (NIC uplinks, QEMU guests' TAP netdevs: `PacketPort`) sit behind the
/// same calls with a single queue.
public protocol PortIO: AnyObject {
    /// Receive queues (each read by one datapath thread); 1 unless multiqueue.
    var queueCount: Int { get }
    /// A descriptor epoll can watch for readability of queue `queue`.
    func pollFD(queue: Int) -> Int32
    /// Bytes of virtio-net header before each frame read (0: plain frames).
    var vnetHeaderSize: Int { get }
    /// Bytes of virtio-net header before each frame written.
    var txVNetHeaderSize: Int { get }
    /// Reads one frame from queue `queue`.
    func read(queue: Int, into: UnsafeMutableRawBufferPointer) -> IOResult
    /// Writes one frame through queue `queue` (any queue reaches the same link).
    func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
    /// Reads and clears a pending socket error after epoll reported EPOLLERR (0: none).
    func takePendingError() -> Int32
    func close()
}

/// Single-queue ports implement the queue-less calls; the queue is ignored.
public protocol SingleQueuePortIO: PortIO {
    var pollFD: Int32 { get }
    func read(into: UnsafeMutableRawBufferPointer) -> IOResult
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
}

extension SingleQueuePortIO {
    public var queueCount: Int { 1 }
    public func pollFD(queue: Int) -> Int32 { pollFD }
    @inline(__always) public func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult { read(into: buffer) }
    @inline(__always) public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult { writev(iov, count: count) }
}

extension TAPDevice: PortIO {
    public var vnetHeaderSize: Int { vnetHeader ? VNetHeader.size : 0 }
    public var txVNetHeaderSize: Int { vnetHeaderSize }
    public func takePendingError() -> Int32 { 0 }
}

/// The live state of one switch inside the datapath: its plan, MAC table, counters and the
/// I/O of each port (indexed like `plan.ports`).
public final class SwitchRuntime {
    public let plan: SwitchPlan
    public let table: MACTable
    public let counters: PortCounters
    let ports: [PortIO]

    public init(plan: SwitchPlan, ports: [PortIO]) {
        precondition(plan.ports.count == ports.count)
        self.plan = plan
        self.ports = ports
        table = MACTable(limit: plan.macLimit, staticCapacity: max(16, plan.staticEntries.count), portCount: plan.ports.count)
        counters = PortCounters(portCount: plan.ports.count)
        for e in plan.staticEntries { table.addStatic(vlan: e.vlan, mac: e.mac, port: e.port) }
        storm = StormControl(plan: plan)
        uplinkErrors = Array(repeating: 0, count: plan.uplinkPorts.count)
        hasTeam = plan.team != nil
        if let config = plan.team {
            team = TeamState.compute(config: config, health: Array(repeating: .up, count: config.memberCount),
                                     carriedPorts: plan.carriedPorts, portCount: plan.ports.count)
        }
        mirrorStamp = .allocate(capacity: max(1, plan.ports.count))
        mirrorStamp.initialize(repeating: 0, count: max(1, plan.ports.count))
    }

    /// The NIC team's current state (nil without uplinks); replaced by the team monitor
    /// under the datapath lock when a member's health changes.
    public internal(set) var team: TeamState?
    /// The switch has uplinks (a team); fixed for the runtime's life.
    let hasTeam: Bool
    /// Recent GARP/RARP announcements (the team's reflection guard).
    public let announcements = AnnouncementLock()
    /// Beacon probing bookkeeping, when the team uses it (fed by the datapath, read by the
    /// team monitor under the datapath lock).
    var beacons: BeaconMonitor?
    /// Set by the datapath when an uplink's socket reports an error (ENETDOWN, ENXIO: the
    /// NIC went down or away); the team monitor reads and clears it.
    var uplinkErrors: [Int32]

    /// Token buckets of the ports that have storm limits.
    let storm: StormControl
    /// Per port: the serial of the last frame mirrored to it (mirror copies once per frame).
    let mirrorStamp: UnsafeMutablePointer<UInt64>
    deinit { mirrorStamp.deallocate() }
}

/// Storm control: one token bucket per port and traffic class (broadcast, multicast,
/// unknown unicast), each refilled at the port's rate with one second of burst.
///
/// Tokens are kept in nano-frames (1 frame = 10⁹), so refilling is integer arithmetic on
/// the batch's monotonic time: `tokens += elapsed_ns × rate`, capped at `rate × 10⁹`.
final class StormControl {
    private let rates: [Int64]                      // ports × 3, 0 = unlimited
    private let tokens: UnsafeMutablePointer<Int64>
    private let last: UnsafeMutablePointer<Int64>
    let isActive: Bool

    init(plan: SwitchPlan) {
        var r: [Int64] = []
        for p in plan.ports {
            r += [p.storm.broadcast, p.storm.multicast, p.storm.unknownUnicast].map { Int64($0 ?? 0) }
        }
        rates = r
        isActive = r.contains { $0 > 0 }
        tokens = .allocate(capacity: max(1, r.count))
        last = .allocate(capacity: max(1, r.count))
        for i in 0..<r.count { tokens[i] = r[i] * 1_000_000_000; last[i] = 0 }
    }
    deinit { tokens.deallocate(); last.deallocate() }

    /// Takes one frame's token for `port` and `reason`; false when over the rate.
    @inline(__always)
    func admit(port: Int, reason: FloodReason, nowNanos: Int64) -> Bool {
        let i = port * 3 + (reason == .broadcast ? 0 : reason == .multicast ? 1 : 2)
        let rate = rates[i]
        if rate == 0 { return true }
        let cap = rate * 1_000_000_000
        // Workers read the clock before waiting for the lock, so times may arrive slightly out
        // of order: never refill backwards.
        if last[i] != 0 && nowNanos > last[i] { tokens[i] = min(cap, tokens[i] + (nowNanos - last[i]) * rate) }
        last[i] = max(last[i], nowNanos)
        guard tokens[i] >= 1_000_000_000 else { return false }
        tokens[i] -= 1_000_000_000
        return true
    }
}

/// The forwarding loop: worker threads (one per core by default), each with its own epoll
/// over its share of the port queues, processing frames in batches.
///
/// ```
///   epoll_wait ─▶ per readable queue: read ≤ 64 frames                      (no lock)
///                   ─▶ decide, learn, count; build the transmit list         (lock)
///                      (per egress port: iovecs over the received frame)
///                   ─▶ writev each entry through this worker's queue         (no lock)
///                   ─▶ count the outcomes, egress captures                   (lock)
///                control tick (≥ 1 s, worker 0): MAC aging                  (lock)
/// ```
/// Ownership: the MAC tables, counters, storm buckets, team bookkeeping, mirror stamps and
/// capture rings are read and written only under `lock`, the datapath lock. A worker takes
/// it to decide a batch and again to account for the batch's transmits, never across a
/// system call: deciding costs ~100 ns a frame, the kernel's work in read/write several
/// µs, so workers contend little and their I/O runs in parallel. The control side takes
/// the lock for consistent snapshots. A queue fd is read only by the worker whose epoll
/// has it (queue q of a port belongs to worker q mod threads; single-queue ports — AF_PACKET
/// uplinks and VM ports — to worker 0); a worker writes to any port through its own queue
/// of that port (worker index mod the port's queues). Each worker holds its `ioLock` for
/// a whole batch; `replaceSwitches` takes every worker's `ioLock` before `lock`, so no
/// read or write ever uses a port a reload removed. Lock order: `ioLock`, then `lock`.
/// The per-frame path allocates nothing: each worker's receive area, transmit list and
/// scratch space are allocated once.
public final class Datapath {
    /// Replaced only by `replaceSwitches`, under `lock` and every worker's `ioLock`.
    public private(set) var switches: [SwitchRuntime]
    /// Bumped by every `replaceSwitches`: epoll events fetched before a swap are stale.
    private var generation: UInt64 = 0
    private let lock = NSLock()
    private let workers: [DatapathWorker]
    private let done = DispatchSemaphore(value: 0)
    private var started = false
    private var stopping = false
    /// Set while `replaceSwitches` waits for the workers' I/O locks: a worker does not start
    /// another batch meanwhile (NSLock is not fair; a busy worker would take its lock again
    /// at once and stall the reload, and with it the workers already paused).
    private let reloadPending = Atomic<Bool>(false)
    private static let wakeToken: UInt64 = .max
    /// Running capture sessions; changed only under `lock` (`addCapture`/`removeCapture`).
    private var captures: [CaptureSession] = []
    /// One predictable branch per frame when nobody captures.
    private var capturing = false
    /// Numbers frames for mirror de-duplication (`SwitchRuntime.mirrorStamp`).
    private var mirrorSerial: UInt64 = 0
    /// How long a worker spins after a batch with work before it sleeps in epoll_wait
    /// (poll mode; 0 = off). README, Architecture: "Poll mode".
    private let busyPollNanoseconds: Int64

    /// Worker threads.
    public var threadCount: Int { workers.count }
    /// Frames each worker has read since start. Call inside `withSnapshot`.
    public var framesPerWorker: [UInt64] { workers.map(\.frames) }
    /// The busy-poll window in microseconds (0: off).
    public var busyPollMicroseconds: Int { Int(busyPollNanoseconds / 1000) }

    /// Datapath threads when the environment does not say: one per core, at most 4.
    /// `TAPESTRY_DATAPATH_THREADS` (1–64) overrides it.
    public static func configuredThreads(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let v = environment["TAPESTRY_DATAPATH_THREADS"].flatMap({ Int($0) }), (1...64).contains(v) { return v }
        return max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))
    }

    /// The busy-poll window from `TAPESTRY_BUSY_POLL_US` (microseconds, 0–1 000 000; default 0).
    public static func configuredBusyPoll(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        guard let v = environment["TAPESTRY_BUSY_POLL_US"].flatMap({ Int($0) }) else { return 0 }
        return min(max(v, 0), 1_000_000)
    }

    /// - Parameters:
    ///   - threads: worker threads; a port's queue q is read by worker q mod threads.
    ///   - busyPollMicroseconds: spin this long after a batch with work before sleeping.
    public init(switches: [SwitchRuntime], threads: Int = 1, busyPollMicroseconds: Int = 0) throws {
        precondition(threads >= 1)
        self.switches = switches
        busyPollNanoseconds = Int64(busyPollMicroseconds) * 1000
        workers = try (0..<threads).map { try DatapathWorker(index: $0) }
        for w in workers {
            try w.epoll.add(w.wake.fd, data: Datapath.wakeToken)
            for (fd, data) in Datapath.registrations(switches, worker: w.index, of: threads) {
                try w.epoll.add(fd, data: data)
            }
        }
    }

    /// The epoll registrations of worker `w`: fd → (switch, queue, port).
    private static func registrations(_ list: [SwitchRuntime], worker w: Int, of threads: Int) -> [Int32: UInt64] {
        var out: [Int32: UInt64] = [:]
        for (s, sw) in list.enumerated() {
            for (p, port) in sw.ports.enumerated() {
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

    /// Runs `body` while no worker is deciding or accounting a batch (control-path reads).
    public func withSnapshot<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    // MARK: - Live reload

    /// Swaps in a new set of switches between two batches (live reload).
    ///
    /// Under every worker's I/O lock and the datapath lock: the epoll registrations follow
    /// the new layout (fds of ports that went away are removed, new ones added, ports whose
    /// (switch, port) index moved are re-registered with their new data); each new switch
    /// takes over the MAC entries and counters of the ports it shares (same name, same I/O
    /// object) with the old switch of the same name (`SwitchRuntime.carryOver`); capture
    /// sessions whose switch layout changed are ended. If a new fd cannot be added, nothing
    /// changes. `body`, if given, runs in the same critical section after the swap (the
    /// caller publishes its own view of the plans there, so readers never see a mix).
    /// When this returns, no worker uses a port that is not in `new`: the caller may close
    /// the others.
    public func replaceSwitches(_ new: [SwitchRuntime], then body: () -> Void = {}) throws {
        reloadPending.store(true, ordering: .sequentiallyConsistent)
        for w in workers { w.ioLock.lock() }
        lock.lock()
        defer {
            lock.unlock()
            for w in workers.reversed() { w.ioLock.unlock() }
            reloadPending.store(false, ordering: .sequentiallyConsistent)
        }
        let n = workers.count
        let before = workers.map { Datapath.registrations(switches, worker: $0.index, of: n) }
        let after = workers.map { Datapath.registrations(new, worker: $0.index, of: n) }
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

        let now = monotonicSeconds()
        for sw in new {
            if let old = switches.first(where: { $0.plan.name == sw.plan.name }) { sw.carryOver(from: old, now: now) }
        }
        let oldLayout = switches.map { (name: $0.plan.name, ports: $0.plan.ports.map(\.name)) }
        let newLayout = new.map { (name: $0.plan.name, ports: $0.plan.ports.map(\.name)) }
        captures.removeAll { !$0.selection.survives(old: oldLayout, new: newLayout) }
        capturing = !captures.isEmpty
        switches = new
        generation &+= 1
        body()
    }

    /// True while `session` is fed frames (a reload that changed its switch's ports ends it).
    /// Call inside `withSnapshot`.
    public func feeds(_ session: CaptureSession) -> Bool { captures.contains { $0 === session } }

    // MARK: - Workers

    private func run(_ w: DatapathWorker) {
        // Named for `top -H` / `ps -L` (Foundation's Thread.name does not reach the kernel).
        _ = cl_set_thread_name("tapestry-dp\(w.index)")
        let maxEvents = 64
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: maxEvents)
        defer { events.deallocate(); done.signal() }
        var lastTick = monotonicSeconds()
        lock.lock(); var seen = generation; lock.unlock()
        var hadWork = false
        while true {
            // Poll mode: right after a batch with work, spin on a non-blocking wait for up
            // to `busyPollNanoseconds` before sleeping in the kernel; a frame that arrives
            // meanwhile skips the thread wake-up (README, Architecture: "Poll mode").
            var n = 0
            if busyPollNanoseconds > 0 && hadWork {
                let until = monotonicNanoseconds() + busyPollNanoseconds
                repeat {
                    n = (try? w.epoll.wait(into: events, timeoutMilliseconds: 0)) ?? 0
                    // A guest's task woken on this CPU (the pinger getting its reply) runs at
                    // once instead of waiting for the scheduler to preempt the spin.
                    if n == 0 { sched_yield() }
                } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 { n = (try? w.epoll.wait(into: events, timeoutMilliseconds: 1000)) ?? 0 }
            hadWork = n > 0
            while reloadPending.load(ordering: .sequentiallyConsistent) { usleep(100) }
            w.ioLock.lock()
            lock.lock()
            if stopping { lock.unlock(); w.ioLock.unlock(); return }
            if generation != seen {
                // The switches were replaced while this thread waited: these events carry
                // old (switch, port) indexes. Drop them; level-triggered epoll reports the
                // still-readable fds again under their new indexes.
                seen = generation
                lock.unlock(); w.ioLock.unlock()
                continue
            }
            let nowNanos = monotonicNanoseconds()
            let now = nowNanos / 1_000_000_000
            if w.index == 0 && now - lastTick >= 1 {
                lastTick = now
                for sw in switches { sw.table.expire(now: now, agingSeconds: Int64(sw.plan.agingSeconds)) }
            }
            for i in 0..<n where events[i].events & Epoll.error != 0 && events[i].data != Datapath.wakeToken {
                let key = QueueKey(events[i].data)
                portError(switchIndex: key.switchIndex, port: key.port)
            }
            lock.unlock()
            for i in 0..<n {
                if events[i].data == Datapath.wakeToken { w.wake.drain(); continue }
                let key = QueueKey(events[i].data)
                service(w, switchIndex: key.switchIndex, queue: key.queue, port: key.port, now: now, nowNanos: nowNanos)
            }
            w.ioLock.unlock()
        }
    }

    /// EPOLLERR on a port: read and clear the error (epoll reports it until then). On an
    /// uplink it tells the team monitor (ENETDOWN: our NIC went down; ENXIO/ENODEV: gone).
    /// Under `lock`.
    private func portError(switchIndex: Int, port: Int) {
        let sw = switches[switchIndex]
        let err = sw.ports[port].takePendingError()
        let member = Int(sw.plan.hot[port].teamMember)
        if err != 0 && member >= 0 { sw.uplinkErrors[member] = err }
    }

    /// One batch from one port queue: read up to 64 frames, decide them under the lock,
    /// transmit without it, account under it. Called with `w.ioLock` held.
    private func service(_ w: DatapathWorker, switchIndex: Int, queue: Int, port: Int, now: Int64, nowNanos: Int64) {
        let sw = switches[switchIndex]
        let io = sw.ports[port]
        var count = 0, offset = 0
        read: while count < DatapathWorker.batch && offset + DatapathWorker.frameMax <= DatapathWorker.areaSize {
            switch io.read(queue: queue, into: UnsafeMutableRawBufferPointer(start: w.area + offset, count: DatapathWorker.frameMax)) {
            case .bytes(let n):
                w.rxOffset[count] = offset
                w.rxLength[count] = n
                count += 1
                offset += (n + 63) & ~63
            case .wouldBlock, .failed:
                break read
            }
        }
        guard count > 0 else { return }
        let header = io.vnetHeaderSize
        lock.lock()
        w.frames &+= UInt64(count)
        // Without uplinks there is no team: skip copying the optional state (~150 instructions).
        var team = sw.hasTeam ? sw.team.map { TeamContext(state: $0, locks: sw.announcements, now: now) } : nil
        // Loaded once per batch: each load of a class reference costs a retain/release pair.
        let plan = sw.plan, counters = sw.counters, table = sw.table
        // Room for any one frame: every port once, plus its mirror copies.
        let reserve = plan.ports.count * (plan.hasMirrors ? 1 + plan.mirrorFanout : 1) + 1
        for i in 0..<count {
            let n = w.rxLength[i]
            guard n >= header else { continue }
            if w.txCount > 0 && w.txCount + reserve > DatapathWorker.txCapacity {
                flush(w, sw, switchIndex: switchIndex)
                // The lock was let go: the team monitor may have swapped the team state.
                if sw.hasTeam { team = sw.team.map { TeamContext(state: $0, locks: sw.announcements, now: now) } }
            }
            w.frameStart = Int32(w.txCount)
            let start = w.area + w.rxOffset[i]
            let vnet = VNetHeader(header > 0 ? UnsafeRawPointer(start) : nil)
            classify(UnsafeRawBufferPointer(start: start + header, count: n - header), vnet: vnet, worker: w,
                     sw: sw, plan: plan, counters: counters, table: table, switchIndex: switchIndex, inPort: port,
                     now: now, nowNanos: nowNanos, team: team)
        }
        if w.txCount > 0 { flush(w, sw, switchIndex: switchIndex) }
        lock.unlock()
    }

    /// Sends the transmit list without the lock, then accounts for it. Called and returns
    /// with `lock` held.
    private func flush(_ w: DatapathWorker, _ sw: SwitchRuntime, switchIndex: Int) {
        lock.unlock()
        transmit(w, sw)
        lock.lock()
        account(w, sw, switchIndex: switchIndex)
    }

    /// The per-frame decision: decide, learn, count, and put each copy the frame leaves as
    /// on the worker's transmit list (plus mirror copies). Under `lock`; allocates nothing.
    ///
    /// Each copy is an iovec: `[0]` the virtio-net header (for ports that take one),
    /// `[1...]` the frame as 1–3 pieces (MACs, pushed tag, rest), so neither a tag push nor
    /// a pop copies the payload. A GSO frame (TSO from a guest) crosses the switch whole,
    /// its header adjusted when a tag moves the L3 offsets.
    @inline(__always)
    private func classify(_ frame: UnsafeRawBufferPointer, vnet: VNetHeader, worker w: DatapathWorker, sw: SwitchRuntime,
                          plan: SwitchPlan, counters: PortCounters, table: MACTable,
                          switchIndex: Int, inPort: Int, now: Int64, nowNanos: Int64, team: TeamContext?) {
        counters.received(port: inPort, bytes: frame.count)
        var d = decide(frame: frame, inPort: inPort, plan: plan, table: table, segmented: vnet.isGSO, team: team)
        if case .local = d.verdict {
            // A team beacon probe: bookkeeping only.
            if sw.beacons != nil, let h = FrameHeader.parse(frame), let b = Beacon.parse(header: h, frame: frame) {
                sw.beacons!.received(b, on: Int(plan.hot[inPort].teamMember), vlan: d.vlan, now: nowNanos / 1_000_000)
            }
            return
        }
        if team != nil && d.destination.isBroadcast && !plan.hot[inPort].isUplink,
           let h = FrameHeader.parse(frame), isAnnouncement(header: h, frame: frame) {
            // A local guest announces itself (GARP/RARP, e.g. after a migration): its echo
            // from the physical network must not look like a move away.
            sw.announcements.stamp(vlan: d.vlan, mac: d.source, now: now)
        }
        if sw.storm.isActive, let why = d.floodReason, !sw.storm.admit(port: inPort, reason: why, nowNanos: nowNanos) {
            d.verdict = .drop(why == .broadcast ? .broadcastStorm : why == .multicast ? .multicastStorm : .unknownUnicastStorm)
        }
        let base = UnsafeMutableRawPointer(mutating: frame.baseAddress!)
        if plan.hasMirrors {
            mirrorSerial &+= 1
            for dst in plan.mirrorOnIngress[inPort] where sw.mirrorStamp[dst] != mirrorSerial {
                sw.mirrorStamp[dst] = mirrorSerial
                if w.append(port: dst, frame: base, count: frame.count, vnet: vnet, rewrite: nil, vlan: d.vlan, captured: false, after: -1) < 0 {
                    counters.dropped(port: dst, reason: .transmitQueueFull)
                }
            }
        }
        if case .drop(let reason) = d.verdict {
            counters.dropped(port: inPort, reason: reason)
            if capturing { captureIngress(w, switchIndex, port: inPort, frame: frame, vlan: nil, reason: reason) }
            return
        }
        if capturing { captureIngress(w, switchIndex, port: inPort, frame: frame, vlan: d.vlan, reason: nil) }
        if d.learn {
            table.learn(vlan: d.vlan, mac: d.source, port: inPort, now: now, portLimit: plan.hot[inPort].macLimit)
        }
        // The walk only records the egress ports (a closure that captures nothing but a
        // buffer: the transmit work inside it cost ~15 retain/release pairs per frame).
        let items = w.egress
        var count = 0
        forEachEgress(of: d, inPort: inPort, plan: plan) { p, rw, refused in
            if count < DatapathWorker.txCapacity { items[count] = EgressItem(port: Int32(p), rewrite: rw, refused: refused) }
            count += 1
        }
        for i in 0..<min(count, DatapathWorker.txCapacity) {
            let item = items[i]
            let p = Int(item.port)
            if let r = item.refused {
                counters.dropped(port: p, reason: r)
                continue
            }
            let k = w.append(port: p, frame: base, count: frame.count, vnet: vnet, rewrite: item.rewrite, vlan: d.vlan, captured: true, after: -1)
            guard k >= 0 else {
                counters.dropped(port: p, reason: .transmitQueueFull)
                continue
            }
            if plan.hasMirrors {
                // A frame between two monitored ports reaches each destination once (the
                // copy as first seen), not once per source port it touched. A copy goes only
                // if the frame itself was sent, so each egress gets a candidate copy and
                // `transmit` sends the first whose frame went out (an ingress copy already
                // stamped the destination: none).
                for dst in plan.mirrorOnEgress[p] where sw.mirrorStamp[dst] != mirrorSerial {
                    _ = w.append(port: dst, frame: base, count: frame.count, vnet: vnet, rewrite: item.rewrite, vlan: d.vlan, captured: false, after: k)
                }
            }
        }
        // Ports beyond the list (a switch of more than 4096 ports): counted, never lost silently.
        if count > DatapathWorker.txCapacity { counters.dropped(port: inPort, reason: .transmitQueueFull) }
        let sentAny = count > 0
        if !sentAny, case .flood = d.verdict { counters.dropped(port: inPort, reason: .noEgressPort) }
    }

    /// Writes every entry of the transmit list (no lock; `w.ioLock` held).
    private func transmit(_ w: DatapathWorker, _ sw: SwitchRuntime) {
        for k in 0..<w.txCount {
            let e = w.tx[k]
            if e.after >= 0 {
                // An egress mirror copy: only if its frame went out, and only the first such
                // copy of this frame for this destination.
                if w.tx[Int(e.after)].outcome != TxEntry.sent || w.mirrorCopySent(to: e.port, before: k, from: Int(e.frameStart)) {
                    w.tx[k].outcome = TxEntry.skipped
                    continue
                }
            }
            let io = sw.ports[Int(e.port)]
            let iov = w.txIOV + 4 * k
            let queue = w.index % io.queueCount
            let result: IOResult
            if io.txVNetHeaderSize > 0 {
                result = io.writev(queue: queue, iov, count: e.pieces + 1)
            } else if e.needsOffload {
                // A port without offloads cannot take a GSO frame or a partial checksum.
                w.tx[k].outcome = Int16(DropReason.offloadNotSupported.rawValue)
                continue
            } else {
                result = io.writev(queue: queue, iov + 1, count: e.pieces)
            }
            switch result {
            case .bytes: w.tx[k].outcome = TxEntry.sent
            case .wouldBlock: w.tx[k].outcome = Int16(DropReason.transmitQueueFull.rawValue)
            case .failed: w.tx[k].outcome = Int16(DropReason.transmitError.rawValue)
            }
        }
    }

    /// Counts the transmit list's outcomes and offers the sent (or refused) copies to the
    /// capture sessions; empties the list. Under `lock`.
    private func account(_ w: DatapathWorker, _ sw: SwitchRuntime, switchIndex: Int) {
        let counters = sw.counters
        for k in 0..<w.txCount {
            let e = w.tx[k]
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
                capture(switchIndex, port: Int(e.port), point: .egress, vlan: e.vlan, reason: reason,
                        segments: w.txIOV + 4 * k + 1, pieces: Int(e.pieces))
            }
        }
        w.txCount = 0
    }

    private func captureIngress(_ w: DatapathWorker, _ switchIndex: Int, port: Int, frame: UnsafeRawBufferPointer, vlan: VLANID?, reason: DropReason?) {
        w.rxIOV[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress!), iov_len: frame.count)
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

/// What a port queue's epoll registration carries: switch (16 bits), queue (16), port (32).
/// Never equal to the wake-up token (all ones).
struct QueueKey {
    let switchIndex: Int, queue: Int, port: Int
    init(switchIndex: Int, queue: Int, port: Int) { self.switchIndex = switchIndex; self.queue = queue; self.port = port }
    init(_ data: UInt64) {
        switchIndex = Int(data >> 48); queue = Int((data >> 32) & 0xFFFF); port = Int(data & 0xFFFF_FFFF)
    }
    var data: UInt64 { UInt64(switchIndex) << 48 | UInt64(queue) << 32 | UInt64(port) }
}

/// One port a decided frame leaves by (collected by the egress walk).
struct EgressItem {
    var port: Int32
    var rewrite: EgressRewrite
    var refused: DropReason?
}

/// One frame copy on a worker's transmit list.
struct TxEntry {
    static let pending: Int16 = -1
    static let sent: Int16 = -2
    static let skipped: Int16 = -3
    var port: Int32
    /// Frame pieces after the vnet header iovec (1–3).
    var pieces: Int32
    /// Bytes on the wire (counted as sent).
    var length: Int32
    /// -1, or the entry that must have been sent for this one to go (an egress mirror copy).
    var after: Int32
    /// The first entry of this entry's frame (entries of one frame are contiguous).
    var frameStart: Int32
    /// The frame's VLAN (for capture filters).
    var vlan: VLANID
    /// The frame's own egress (capture sessions see it), not a mirror copy.
    var captured: Bool
    /// GSO or partial checksum: only ports with a vnet header can take it.
    var needsOffload: Bool
    /// `pending`, `sent`, `skipped`, or a `DropReason` raw value.
    var outcome: Int16
}

/// What one datapath thread owns: its epoll (its share of the port queues), wake-up fd,
/// receive area, transmit list and scratch space, all allocated once.
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
    /// Frame copies on the transmit list before it is flushed.
    static let txCapacity = 4096

    let area: UnsafeMutableRawPointer
    let rxOffset: UnsafeMutablePointer<Int>
    let rxLength: UnsafeMutablePointer<Int>
    /// 4 per entry: vnet header, then up to 3 frame pieces.
    let txIOV: UnsafeMutablePointer<iovec>
    /// 16 bytes per entry: a rewritten (or zero) vnet header at 0, a pushed tag at 12.
    let txScratch: UnsafeMutableRawPointer
    let tx: UnsafeMutablePointer<TxEntry>
    var txCount = 0
    /// Frames this worker read (changed and read under the datapath lock).
    var frames: UInt64 = 0
    /// Where the current frame's entries begin.
    var frameStart: Int32 = 0
    /// One iovec for ingress captures.
    let rxIOV: UnsafeMutablePointer<iovec>
    /// The egress walk's output for the frame being decided (one per port, at most).
    let egress: UnsafeMutablePointer<EgressItem>

    init(index: Int) throws {
        self.index = index
        epoll = try Epoll()
        wake = try EventFD()
        area = .allocate(byteCount: DatapathWorker.areaSize, alignment: 64)
        rxOffset = .allocate(capacity: DatapathWorker.batch)
        rxLength = .allocate(capacity: DatapathWorker.batch)
        txIOV = .allocate(capacity: 4 * DatapathWorker.txCapacity)
        txScratch = .allocate(byteCount: 16 * DatapathWorker.txCapacity, alignment: 16)
        tx = .allocate(capacity: DatapathWorker.txCapacity)
        rxIOV = .allocate(capacity: 1)
        egress = .allocate(capacity: DatapathWorker.txCapacity)
    }

    deinit {
        area.deallocate(); rxOffset.deallocate(); rxLength.deallocate()
        txIOV.deallocate(); txScratch.deallocate(); tx.deallocate(); rxIOV.deallocate(); egress.deallocate()
    }

    /// Puts one copy of `frame` (rewritten by `rewrite`, nil = as received) for `port` on
    /// the transmit list; returns its index, or -1 when the list is full (a frame with more
    /// copies than the list holds: a switch of thousands of ports; the caller counts it).
    @inline(__always)
    func append(port: Int, frame base: UnsafeMutableRawPointer, count: Int, vnet: VNetHeader, rewrite: EgressRewrite?,
                vlan: VLANID, captured: Bool, after: Int32) -> Int32 {
        let k = txCount
        guard k < DatapathWorker.txCapacity else { return -1 }
        txCount = k + 1
        let iov = txIOV + 4 * k
        let scratch = txScratch + 16 * k
        var pieces = 1, length = count, delta = 0
        if let rw = rewrite, !rw.isIdentity {
            iov[1] = iovec(iov_base: base, iov_len: 12)
            if let tag = rw.push {
                scratch.storeBytes(of: tag.tpid.bigEndian, toByteOffset: 12, as: UInt16.self)
                scratch.storeBytes(of: tag.tci.bigEndian, toByteOffset: 14, as: UInt16.self)
                iov[2] = iovec(iov_base: scratch + 12, iov_len: 4)
                pieces = 2
                length += 4
                delta = 4
            }
            iov[pieces + 1] = iovec(iov_base: base + 12 + rw.strip, iov_len: count - 12 - rw.strip)
            pieces += 1
            length -= rw.strip
            delta -= rw.strip
        } else {
            iov[1] = iovec(iov_base: base, iov_len: count)
        }
        if let h = vnet.raw {
            if delta == 0 {
                iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: h), iov_len: VNetHeader.size)
            } else {
                scratch.copyMemory(from: h, byteCount: VNetHeader.size)
                VNetHeader.shift(scratch, by: delta)
                iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
            }
        } else {
            // From a port without vnet header: a plain frame, fully checksummed.
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: VNetHeader.size)
            iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
        }
        tx[k] = TxEntry(port: Int32(port), pieces: Int32(pieces), length: Int32(length), after: after, frameStart: frameStart,
                        vlan: vlan, captured: captured, needsOffload: vnet.needsOffload, outcome: TxEntry.pending)
        return Int32(k)
    }

    /// Whether an egress mirror copy of the same frame (entries `from..<before`) already
    /// went to `port`.
    func mirrorCopySent(to port: Int32, before k: Int, from start: Int) -> Bool {
        for j in start..<k where tx[j].after >= 0 && tx[j].port == port && tx[j].outcome == TxEntry.sent { return true }
        return false
    }
}

/// The `struct virtio_net_hdr` a TAP with IFF_VNET_HDR puts before each frame (10 bytes,
/// little-endian on the hosts we run on): flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset. A view over the receive buffer; `raw == nil` for ports without one.
struct VNetHeader {
    static let size = 10
    let raw: UnsafeRawPointer?
    @inline(__always) init(_ raw: UnsafeRawPointer?) { self.raw = raw }

    /// A TSO/GSO frame: longer than the MTU, segmented by whoever finally delivers it.
    @inline(__always) var isGSO: Bool { raw.map { $0.load(fromByteOffset: 1, as: UInt8.self) != UInt8(CL_VNET_GSO_NONE) } ?? false }
    /// GSO, or a checksum left for the receiver to complete.
    @inline(__always) var needsOffload: Bool {
        guard let r = raw else { return false }
        return isGSO || r.load(fromByteOffset: 0, as: UInt8.self) & UInt8(CL_VNET_F_NEEDS_CSUM) != 0
    }

    /// Moves csum_start (and hdr_len of a GSO frame) by `delta` bytes: what inserting or
    /// removing a tag before the L3 header does to those offsets.
    static func shift(_ h: UnsafeMutableRawPointer, by delta: Int) {
        if h.load(fromByteOffset: 0, as: UInt8.self) & UInt8(CL_VNET_F_NEEDS_CSUM) != 0 {
            let start = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(start) + delta).littleEndian, toByteOffset: 6, as: UInt16.self)
        }
        let len = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        if h.load(fromByteOffset: 1, as: UInt8.self) != UInt8(CL_VNET_GSO_NONE), len != 0 {
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(len) + delta).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
    }
}
