import Core
import Foundation
import LinuxIO
import Model
import CLinux
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
/// A netns guest's port is a TAP character device owned by the switch; AF_PACKET ports
/// (NIC uplinks, QEMU guests' TAP netdevs: `PacketPort`) sit behind the same calls.
public protocol PortIO: AnyObject {
    /// A descriptor epoll can watch for readability.
    var pollFD: Int32 { get }
    /// Bytes of virtio-net header before each frame read (0: plain frames).
    var vnetHeaderSize: Int { get }
    /// Bytes of virtio-net header before each frame written.
    var txVNetHeaderSize: Int { get }
    func read(into: UnsafeMutableRawBufferPointer) -> IOResult
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
    /// Reads and clears a pending socket error after epoll reported EPOLLERR (0: none).
    func takePendingError() -> Int32
    func close()
}

extension TAPDevice: PortIO {
    public var pollFD: Int32 { fd }
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
        if last[i] != 0 { tokens[i] = min(cap, tokens[i] + (nowNanos - last[i]) * rate) }
        last[i] = nowNanos
        guard tokens[i] >= 1_000_000_000 else { return false }
        tokens[i] -= 1_000_000_000
        return true
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
    /// Replaced only by `replaceSwitches`, under `lock`.
    public private(set) var switches: [SwitchRuntime]
    /// Bumped by every `replaceSwitches`: epoll events fetched before a swap are stale.
    private var generation: UInt64 = 0
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
    /// A virtio-net header rewritten for a tag push/pop, or zeroed for a plain frame.
    private let vnetScratch: UnsafeMutablePointer<UInt8>
    private static let wakeToken: UInt64 = .max
    /// Running capture sessions; changed only under `lock` (`addCapture`/`removeCapture`).
    private var captures: [CaptureSession] = []
    /// One predictable branch per frame when nobody captures.
    private var capturing = false
    /// Numbers frames for mirror de-duplication (`SwitchRuntime.mirrorStamp`).
    private var mirrorSerial: UInt64 = 0
    /// How long to spin after a busy batch before blocking (`TAPESTRY_BUSY_POLL_US`, default
    /// 0 = off): trades CPU for latency; measure with Scripts/bench/run.sh before turning on.
    private let busyPollNanoseconds: Int64 = Int64(ProcessInfo.processInfo.environment["TAPESTRY_BUSY_POLL_US"].flatMap { Int($0) } ?? 0) * 1000
    /// Frames read from one port per wake-up before moving on (fairness between ports).
    private let batchPerPort = 64

    public init(switches: [SwitchRuntime]) throws {
        self.switches = switches
        epoll = try Epoll()
        wake = try EventFD()
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
        iov = .allocate(capacity: 4)
        tagScratch = .allocate(capacity: 4)
        vnetScratch = .allocate(capacity: VNetHeader.size)
        try epoll.add(wake.fd, data: Datapath.wakeToken)
        for (s, sw) in switches.enumerated() {
            for (p, port) in sw.ports.enumerated() {
                try epoll.add(port.pollFD, data: UInt64(s) << 32 | UInt64(p))
            }
        }
    }

    deinit {
        buffer.deallocate(); iov.deallocate(); tagScratch.deallocate(); vnetScratch.deallocate()
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

    /// Starts feeding a capture session.
    public func addCapture(_ session: CaptureSession) {
        lock.lock(); captures.append(session); capturing = true; lock.unlock()
    }

    /// Stops feeding a capture session.
    public func removeCapture(_ session: CaptureSession) {
        lock.lock(); captures.removeAll { $0 === session }; capturing = !captures.isEmpty; lock.unlock()
    }

    /// Runs `body` while the datapath is between batches (control-path reads).
    public func withSnapshot<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    // MARK: - Live reload

    /// Swaps in a new set of switches between two batches (live reload).
    ///
    /// Under the batch lock: the epoll registrations follow the new layout (fds of ports that
    /// went away are removed, new ones added, ports whose (switch, port) index moved are
    /// re-registered with their new data); each new switch takes over the MAC entries and
    /// counters of the ports it shares (same name, same I/O object) with the old switch of
    /// the same name (`SwitchRuntime.carryOver`); capture sessions whose switch layout
    /// changed are ended. If a new fd cannot be added, nothing changes.
    /// `body`, if given, runs in the same critical section after the swap (the caller
    /// publishes its own view of the plans there, so readers never see a mix).
    public func replaceSwitches(_ new: [SwitchRuntime], then body: () -> Void = {}) throws {
        lock.lock(); defer { lock.unlock() }
        func registrations(_ list: [SwitchRuntime]) -> [Int32: UInt64] {
            var out: [Int32: UInt64] = [:]
            for (s, sw) in list.enumerated() {
                for (p, port) in sw.ports.enumerated() { out[port.pollFD] = UInt64(s) << 32 | UInt64(p) }
            }
            return out
        }
        let before = registrations(switches), after = registrations(new)
        var added: [Int32] = []
        for (fd, data) in after where before[fd] == nil {
            do { try epoll.add(fd, data: data); added.append(fd) } catch {
                for f in added { try? epoll.remove(f) }
                throw error
            }
        }
        for (fd, data) in after { if let old = before[fd], old != data { try? epoll.modify(fd, events: Epoll.readable, data: data) } }
        for fd in before.keys where after[fd] == nil { try? epoll.remove(fd) }

        let now = monotonicSeconds()
        for sw in new {
            if let old = switches.first(where: { $0.plan.name == sw.plan.name }) { sw.carryOver(from: old, now: now) }
        }
        captures.removeAll { c in
            let i = c.selection.switchIndex
            guard i < switches.count, i < new.count else { return true }
            return new[i].plan.name != switches[i].plan.name || new[i].plan.ports.map(\.name) != switches[i].plan.ports.map(\.name)
        }
        capturing = !captures.isEmpty
        switches = new
        generation &+= 1
        body()
    }

    /// True while `session` is fed frames (a reload that changed its switch's ports ends it).
    /// Call inside `withSnapshot`.
    public func feeds(_ session: CaptureSession) -> Bool { captures.contains { $0 === session } }

    private func run() {
        let maxEvents = 64
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: maxEvents)
        defer { events.deallocate(); done.signal() }
        var lastTick = monotonicSeconds()
        var seen = generation
        var hadWork = false
        while true {
            // Adaptive busy poll: right after a batch with work, spin on a non-blocking wait
            // for up to `busyPollNanoseconds` before sleeping in the kernel; a frame that
            // arrives meanwhile skips the wake-up latency (README "Datapath").
            var n = 0
            if busyPollNanoseconds > 0 && hadWork {
                let until = monotonicNanoseconds() + busyPollNanoseconds
                repeat { n = (try? epoll.wait(into: events, timeoutMilliseconds: 0)) ?? 0 } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 { n = (try? epoll.wait(into: events, timeoutMilliseconds: 1000)) ?? 0 }
            hadWork = n > 0
            lock.lock()
            if stopping { lock.unlock(); return }
            if generation != seen {
                // The switches were replaced while this thread waited: these events carry
                // old (switch, port) indexes. Drop them; level-triggered epoll reports the
                // still-readable fds again under their new indexes.
                seen = generation
                lock.unlock()
                continue
            }
            let nowNanos = monotonicNanoseconds()
            let now = nowNanos / 1_000_000_000
            for i in 0..<n {
                let data = events[i].data
                if data == Datapath.wakeToken { wake.drain(); continue }
                if events[i].events & Epoll.error != 0 { portError(switchIndex: Int(data >> 32), port: Int(data & 0xFFFF_FFFF)) }
                service(switchIndex: Int(data >> 32), port: Int(data & 0xFFFF_FFFF), now: now, nowNanos: nowNanos)
            }
            if now - lastTick >= 1 {
                lastTick = now
                for sw in switches { sw.table.expire(now: now, agingSeconds: Int64(sw.plan.agingSeconds)) }
            }
            lock.unlock()
        }
    }

    /// EPOLLERR on a port: read and clear the error (epoll reports it until then). On an
    /// uplink it tells the team monitor (ENETDOWN: our NIC went down; ENXIO/ENODEV: gone).
    private func portError(switchIndex: Int, port: Int) {
        let sw = switches[switchIndex]
        let err = sw.ports[port].takePendingError()
        let member = Int(sw.plan.hot[port].teamMember)
        if err != 0 && member >= 0 { sw.uplinkErrors[member] = err }
    }

    /// Reads up to `batchPerPort` frames from one port and forwards each.
    private func service(switchIndex: Int, port: Int, now: Int64, nowNanos: Int64) {
        let sw = switches[switchIndex]
        let io = sw.ports[port]
        let header = io.vnetHeaderSize
        let rx = UnsafeMutableRawBufferPointer(start: buffer, count: bufferSize)
        let team = sw.team.map { TeamContext(state: $0, locks: sw.announcements, now: now) }
        for _ in 0..<batchPerPort {
            switch io.read(into: rx) {
            case .bytes(let n):
                guard n >= header else { continue }
                let vnet = VNetHeader(header > 0 ? UnsafeRawPointer(buffer) : nil)
                forward(UnsafeRawBufferPointer(start: buffer + header, count: n - header), vnet: vnet,
                        sw: sw, switchIndex: switchIndex, inPort: port, now: now, nowNanos: nowNanos, team: team)
            case .wouldBlock, .failed:
                return
            }
        }
    }

    /// The per-frame path: decide, learn, transmit (plus mirror and capture copies when
    /// configured). Allocates nothing.
    ///
    /// The frame goes out as an iovec: `iov[0]` is the virtio-net header (for ports that
    /// take one), `iov[1...]` the frame as 1–3 pieces (MACs, pushed tag, rest), so neither a
    /// tag push nor a pop copies the payload. A GSO frame (TSO from a guest) crosses the
    /// switch whole, its header adjusted when a tag moves the L3 offsets.
    @inline(__always)
    private func forward(_ frame: UnsafeRawBufferPointer, vnet: VNetHeader, sw: SwitchRuntime, switchIndex: Int,
                         inPort: Int, now: Int64, nowNanos: Int64, team: TeamContext?) {
        let counters = sw.counters
        let plan = sw.plan
        counters.received(port: inPort, bytes: frame.count)
        var d = decide(frame: frame, inPort: inPort, plan: plan, table: sw.table, segmented: vnet.isGSO, team: team)
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
        setHeader(vnet, delta: 0)
        iov[1] = iovec(iov_base: base, iov_len: frame.count)
        if plan.hasMirrors {
            mirrorSerial &+= 1
            for dst in plan.mirrorOnIngress[inPort] where sw.mirrorStamp[dst] != mirrorSerial {
                sw.mirrorStamp[dst] = mirrorSerial
                transmit(sw, port: dst, pieces: 1, length: frame.count, vnet: vnet)
            }
        }
        if case .drop(let reason) = d.verdict {
            counters.dropped(port: inPort, reason: reason)
            if capturing { capture(switchIndex, port: inPort, point: .ingress, vlan: nil, reason: reason, pieces: 1) }
            return
        }
        if capturing { capture(switchIndex, port: inPort, point: .ingress, vlan: d.vlan, reason: nil, pieces: 1) }
        if d.learn {
            sw.table.learn(vlan: d.vlan, mac: d.source, port: inPort, now: now, portLimit: plan.hot[inPort].macLimit)
        }
        var sentAny = false
        forEachEgress(of: d, inPort: inPort, plan: plan) { p, rw, refused in
            sentAny = true
            if let r = refused {
                counters.dropped(port: p, reason: r)
                return
            }
            var pieces = 1
            var length = frame.count
            if rw.isIdentity {
                setHeader(vnet, delta: 0)
                iov[1] = iovec(iov_base: base, iov_len: frame.count)
            } else {
                iov[1] = iovec(iov_base: base, iov_len: 12)
                if let tag = rw.push {
                    tagScratch[0] = UInt8(tag.tpid >> 8); tagScratch[1] = UInt8(tag.tpid & 0xFF)
                    tagScratch[2] = UInt8(tag.tci >> 8); tagScratch[3] = UInt8(tag.tci & 0xFF)
                    iov[2] = iovec(iov_base: UnsafeMutableRawPointer(tagScratch), iov_len: 4)
                    pieces = 2
                    length += 4
                }
                iov[pieces + 1] = iovec(iov_base: base + 12 + rw.strip, iov_len: frame.count - 12 - rw.strip)
                pieces += 1
                length -= rw.strip
                setHeader(vnet, delta: (rw.push == nil ? 0 : 4) - rw.strip)
            }
            let reason = transmit(sw, port: p, pieces: pieces, length: length, vnet: vnet)
            if capturing { capture(switchIndex, port: p, point: .egress, vlan: d.vlan, reason: reason, pieces: pieces) }
            if plan.hasMirrors, reason == nil {
                // A frame between two monitored ports reaches each destination once (the
                // copy as first seen), not once per source port it touched.
                for dst in plan.mirrorOnEgress[p] where sw.mirrorStamp[dst] != mirrorSerial {
                    sw.mirrorStamp[dst] = mirrorSerial
                    transmit(sw, port: dst, pieces: pieces, length: length, vnet: vnet)
                }
            }
        }
        if !sentAny, case .flood = d.verdict { counters.dropped(port: inPort, reason: .noEgressPort) }
    }

    /// Points `iov[0]` at the vnet header for the frame about to be sent: the received one,
    /// or a copy whose checksum and header offsets move by `delta` bytes (a tag pushed: +4,
    /// popped: -4).
    @inline(__always)
    private func setHeader(_ vnet: VNetHeader, delta: Int) {
        guard let h = vnet.raw else {
            // From a port without vnet header: a plain frame, fully checksummed.
            vnetScratch.initialize(repeating: 0, count: VNetHeader.size)
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(vnetScratch), iov_len: VNetHeader.size)
            return
        }
        if delta == 0 {
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: h), iov_len: VNetHeader.size)
        } else {
            UnsafeMutableRawPointer(vnetScratch).copyMemory(from: h, byteCount: VNetHeader.size)
            VNetHeader.shift(UnsafeMutableRawPointer(vnetScratch), by: delta)
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(vnetScratch), iov_len: VNetHeader.size)
        }
    }

    /// Writes the frame in `iov[1...pieces]` (with the vnet header `iov[0]` when the port
    /// takes one) and counts the outcome; returns the drop reason when it was not sent.
    @inline(__always) @discardableResult
    private func transmit(_ sw: SwitchRuntime, port: Int, pieces: Int, length: Int, vnet: VNetHeader) -> DropReason? {
        let io = sw.ports[port]
        let result: IOResult
        if io.txVNetHeaderSize > 0 {
            result = io.writev(iov, count: Int32(pieces + 1))
        } else {
            // A port without offloads cannot take a GSO frame or a partial checksum.
            if vnet.needsOffload {
                sw.counters.dropped(port: port, reason: .offloadNotSupported)
                return .offloadNotSupported
            }
            result = io.writev(iov + 1, count: Int32(pieces))
        }
        switch result {
        case .bytes: sw.counters.sent(port: port, bytes: length); return nil
        case .wouldBlock: sw.counters.dropped(port: port, reason: .transmitQueueFull); return .transmitQueueFull
        case .failed: sw.counters.dropped(port: port, reason: .transmitError); return .transmitError
        }
    }

    /// Offers the frame in `iov[1...pieces]` to every capture session that wants it.
    private func capture(_ switchIndex: Int, port: Int, point: CapturePoint, vlan: VLANID?, reason: DropReason?, pieces: Int) {
        var now: UInt64 = 0
        for s in captures where s.selection.switchIndex == switchIndex
            && s.wants(port: port, point: point, vlan: vlan, dropped: reason != nil) {
            if now == 0 { now = realtimeNanoseconds() }
            s.record(port: port, point: point, reason: reason, segments: iov + 1, count: pieces, now: now)
        }
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
