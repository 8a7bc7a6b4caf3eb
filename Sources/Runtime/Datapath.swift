import Core
import Foundation
import LinuxIO
import Model
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock (aging, uptime). Read once per batch, not per frame.
public func monotonicSeconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec)
}

/// Something a switch port can send frames to and receive frames from.
///
/// Today every port is a TAP character device owned by the switch; AF_PACKET ports (NIC
/// uplinks, QEMU guests' TAP netdevs) slot in behind the same three calls.
public protocol PortIO: AnyObject {
    /// A descriptor epoll can watch for readability.
    var pollFD: Int32 { get }
    func read(into: UnsafeMutableRawBufferPointer) -> IOResult
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
}

extension TAPDevice: PortIO {
    public var pollFD: Int32 { fd }
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
    }
}

/// The forwarding loop: one thread, epoll over every port, frames processed in batches.
///
/// ```
///   epoll_wait ──▶ for each readable port: read until EAGAIN (≤ batch)
///                     │ decide() ─▶ learn (side effect) ─▶ forEachEgress ─▶ writev(iovec)
///                     ▼
///                  control tick (≥ 1 s): MAC aging
/// ```
/// Ownership: the datapath thread owns the MAC tables and counters. It holds `lock` for the
/// duration of each batch (never per frame); the control socket takes the same lock to read
/// a consistent snapshot. The per-frame path allocates nothing: the receive buffer, the
/// iovec array and the tag scratch space are allocated once here.
public final class Datapath {
    public let switches: [SwitchRuntime]
    private let epoll: Epoll
    private let wake: EventFD
    private let lock = NSLock()
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var stopping = false

    /// Receive buffer: one frame at a time, up to 64 KiB (largest TAP frame).
    private let bufferSize = 65536 + 64
    private let buffer: UnsafeMutableRawPointer
    private let iov: UnsafeMutablePointer<iovec>
    private let tagScratch: UnsafeMutablePointer<UInt8>
    private static let wakeToken: UInt64 = .max
    /// Frames read from one port per wake-up before moving on (fairness between ports).
    private let batchPerPort = 64

    public init(switches: [SwitchRuntime]) throws {
        self.switches = switches
        epoll = try Epoll()
        wake = try EventFD()
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
        iov = .allocate(capacity: 3)
        tagScratch = .allocate(capacity: 4)
        try epoll.add(wake.fd, data: Datapath.wakeToken)
        for (s, sw) in switches.enumerated() {
            for (p, port) in sw.ports.enumerated() {
                try epoll.add(port.pollFD, data: UInt64(s) << 32 | UInt64(p))
            }
        }
    }

    deinit {
        buffer.deallocate(); iov.deallocate(); tagScratch.deallocate()
    }

    /// Starts the forwarding thread.
    public func start() {
        let t = Thread { [unowned self] in self.run() }
        t.name = "tapestry-datapath"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops the thread and waits for it to finish its batch.
    public func stop() {
        guard thread != nil else { return }
        lock.lock(); stopping = true; lock.unlock()
        wake.signal()
        done.wait()
        thread = nil
    }

    /// Runs `body` while the datapath is between batches (control-path reads).
    public func withSnapshot<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    private func run() {
        let maxEvents = 64
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: maxEvents)
        defer { events.deallocate(); done.signal() }
        var lastTick = monotonicSeconds()
        while true {
            let n = (try? epoll.wait(into: events, timeoutMilliseconds: 1000)) ?? 0
            lock.lock()
            if stopping { lock.unlock(); return }
            let now = monotonicSeconds()
            for i in 0..<n {
                let data = events[i].data
                if data == Datapath.wakeToken { wake.drain(); continue }
                let sw = switches[Int(data >> 32)]
                service(sw, port: Int(data & 0xFFFF_FFFF), now: now)
            }
            if now - lastTick >= 1 {
                lastTick = now
                for sw in switches { sw.table.expire(now: now, agingSeconds: Int64(sw.plan.agingSeconds)) }
            }
            lock.unlock()
        }
    }

    /// Reads up to `batchPerPort` frames from one port and forwards each.
    private func service(_ sw: SwitchRuntime, port: Int, now: Int64) {
        let io = sw.ports[port]
        let rx = UnsafeMutableRawBufferPointer(start: buffer, count: bufferSize)
        for _ in 0..<batchPerPort {
            switch io.read(into: rx) {
            case .bytes(let n):
                forward(UnsafeRawBufferPointer(start: buffer, count: n), sw: sw, inPort: port, now: now)
            case .wouldBlock, .failed:
                return
            }
        }
    }

    /// The per-frame path: decide, learn, transmit. Allocates nothing.
    @inline(__always)
    private func forward(_ frame: UnsafeRawBufferPointer, sw: SwitchRuntime, inPort: Int, now: Int64) {
        let counters = sw.counters
        counters.received(port: inPort, bytes: frame.count)
        var trace = NoTrace()
        let d = decide(frame: frame, inPort: inPort, plan: sw.plan, table: sw.table, trace: &trace)
        if case .drop(let reason) = d.verdict {
            counters.dropped(port: inPort, reason: reason)
            return
        }
        if d.learn, let h = FrameHeader.parse(frame) {
            sw.table.learn(vlan: d.vlan, mac: h.source, port: inPort, now: now)
        }
        var sentAny = false
        let base = UnsafeMutableRawPointer(mutating: frame.baseAddress!)
        forEachEgress(of: d, inPort: inPort, plan: sw.plan) { p, rw in
            sentAny = true
            let result: IOResult
            var length = frame.count
            if rw.isIdentity {
                iov[0] = iovec(iov_base: base, iov_len: frame.count)
                result = sw.ports[p].writev(iov, count: 1)
            } else {
                iov[0] = iovec(iov_base: base, iov_len: 12)
                var count: Int32 = 1
                if let tag = rw.push {
                    tagScratch[0] = UInt8(tag.tpid >> 8); tagScratch[1] = UInt8(tag.tpid & 0xFF)
                    tagScratch[2] = UInt8(tag.tci >> 8); tagScratch[3] = UInt8(tag.tci & 0xFF)
                    iov[1] = iovec(iov_base: UnsafeMutableRawPointer(tagScratch), iov_len: 4)
                    count = 2
                    length += 4
                }
                iov[Int(count)] = iovec(iov_base: base + 12 + rw.strip, iov_len: frame.count - 12 - rw.strip)
                length -= rw.strip
                result = sw.ports[p].writev(iov, count: count + 1)
            }
            switch result {
            case .bytes: counters.sent(port: p, bytes: length)
            case .wouldBlock: counters.dropped(port: p, reason: .transmitQueueFull)
            case .failed: counters.dropped(port: p, reason: .transmitError)
            }
        }
        if !sentAny, case .flood = d.verdict { counters.dropped(port: inPort, reason: .noEgressPort) }
    }
}
