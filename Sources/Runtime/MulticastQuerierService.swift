import Core
import Foundation
import LinuxIO
import Model

/// Sends the general queries of every switch that has a querier (`multicast-querier: true`).
///
/// ```
///  tick (every 250 ms):  worker 0's I/O lock ─▶ datapath lock: per switch with a querier,
///                        takeDue(now) (the effect: schedules the next) and the ports to send
///                        by ─▶ unlock ─▶ build each query frame (pure, Model) and write it
///                        through every guest port of its VLAN, tagged as egress tags it
///                        ─▶ I/O lock released
/// ```
/// The datapath lock is held only to read the querier's due list and the switch runtimes
/// (no system call under it, the team monitor's rule); the writes happen under worker 0's
/// I/O lock, so a reload cannot close a port meanwhile (`Datapath.withPortWrites`). Queries
/// go to guest ports only (uplinks lead to routers that query for themselves), to ports that
/// are up, not to mirror destinations. Write failures are counted on the port as
/// `transmit-error` / `transmit-queue-full` like any egress.
public final class MulticastQuerierService {
    private let datapath: Datapath
    private let log: (String) -> Void
    private var thread: Thread?
    private let stopLock = NSLock()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    /// Queries written since start (for tests and status).
    public private(set) var written = 0

    /// A service for `datapath`'s switches (those without a querier cost nothing).
    public init(datapath: Datapath, log: @escaping (String) -> Void) {
        self.datapath = datapath
        self.log = log
    }

    /// Starts the thread (a tick every 250 ms).
    public func start() {
        let t = Thread { [unowned self] in self.run() }
        t.name = "tapestry-querier"
        thread = t
        t.start()
    }

    /// Stops the thread and waits for it.
    public func stop() {
        guard thread != nil else { return }
        stopLock.withLock { stopping = true }
        done.wait()
        thread = nil
    }

    private var isStopping: Bool { stopLock.withLock { stopping } }

    private func run() {
        defer { done.signal() }
        while !isStopping {
            tick(now: datapath.now())
            Processes.pause(microseconds: 250_000)
        }
    }

    /// One round: whatever is due at `now` goes out.
    public func tick(now: MonotonicInstant) {
        datapath.withPortWrites {
            // Under the datapath lock: what is due, and where it goes (plain values only).
            struct Send { let sw: SwitchRuntime; let family: IPFamily; let vlan: VLANID; let frame: [UInt8]; let ports: [(Int, EgressRewrite)] }
            let due: [(SwitchRuntime, MulticastQuerier, [(vlan: VLANID, family: IPFamily)], [Bool])] = datapath.withLock { lock in
                lock.switches.compactMap { sw in
                    guard let q = sw.multicast(lock)?.querier else { return nil }
                    let list = q.takeDue(now: now)
                    if list.isEmpty { return nil }
                    return (sw, q, list, (0..<sw.plan.ports.count).map { sw.downReason(port: $0, lock) != nil })
                }
            }
            // Outside it: frames and writes.
            var sends: [Send] = []
            for (sw, q, list, down) in due {
                for (vlan, family) in list {
                    let plan = sw.plan
                    let ports: [(Int, EgressRewrite)] = plan.floodSet(vlan).compactMap { p32 in
                        let p = Int(p32)
                        let h = plan.hot[p]
                        guard !h.isUplink, !h.isTunnel, !down[p], let rw = plan.egressRewrite(vlan: vlan, ingressTagLength: 0, priority: 0, on: h) else { return nil }
                        return (p, rw)
                    }
                    sends.append(Send(sw: sw, family: family, vlan: vlan, frame: q.queryFrame(family), ports: ports))
                }
            }
            var failures: [(SwitchRuntime, Int, DropReason)] = []
            var sent: [(SwitchRuntime, Int, Int)] = []
            for s in sends {
                for (p, rw) in s.ports {
                    let io = s.sw.ports[p]
                    var bytes = [UInt8](repeating: 0, count: io.txVNetHeaderSize) + rewritten(s.frame, rw)
                    // A vhost-user port is entered by one thread at a time (its gate), and
                    // learns of the frame only at `flush` (the guest's interrupt).
                    let gate = io.accessGate
                    gate?.lock()
                    let result = bytes.withUnsafeMutableBytes { raw -> IOResult in
                        var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                        return io.writev(queue: 0, &iov, count: 1)
                    }
                    if case .bytes = result { io.flush(queue: 0) }
                    gate?.unlock()
                    switch result {
                    case .bytes: sent.append((s.sw, p, bytes.count - io.txVNetHeaderSize)); written += 1
                    case .wouldBlock: failures.append((s.sw, p, .transmitQueueFull))
                    case .failed(let e): failures.append((s.sw, p, e == ENOTCONN ? .noFrontend : .transmitError))
                    }
                }
            }
            if !sent.isEmpty || !failures.isEmpty {
                datapath.withLock { lock in
                    for (sw, p, n) in sent { sw.counters(lock).sent(port: p, bytes: n) }
                    for (sw, p, r) in failures { sw.counters(lock).dropped(port: p, reason: r) }
                }
            }
        }
    }
}
