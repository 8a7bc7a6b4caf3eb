import CLinux
import CVhost
import Foundation
import LinuxIO
import Model
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A message the device refuses: the connection is closed and counted (`protocol-error`).
struct VhostDeviceError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The control thread of one `VhostUserPort`: connects (or accepts), then handles the
/// frontend's messages one at a time (vhost-user.rst, "Front-end message types"), keeping the
/// device state and publishing datapath snapshots. All state here belongs to that thread.
///
/// Decisions:
/// - One queue pair (GET_QUEUE_NUM = 1); a ring index beyond 1 is a protocol error.
/// - Rings start disabled when PROTOCOL_FEATURES was negotiated, enabled otherwise, and run
///   once they have a kick (or the "no fd" flag: then the datapath polls the ring).
/// - A ring's start index is SET_VRING_BASE's; its used index is read from guest memory.
/// - SET_FEATURES with bits we never offered, a ring size that is not a power of two up to
///   32768, a ring address outside the memory table, a mapping that fails: protocol errors.
/// - On disconnection the device is reset (rings stopped, memory and log unmapped once the
///   datapath let go, features cleared): the frontend starts from scratch when it comes back.
final class VhostControl {
    private var port: VhostUserPort?
    private let log: @Sendable (String) -> Void
    private let mode: VhostUserPort.Mode
    private let path: String
    private var listenFD: Int32 = -1
    private let connection = Atomic<Int32>(-1)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // Device state.
    private var features: UInt64 = 0
    private var protocolFeatures: UInt64 = 0
    private var status: UInt8 = 0
    private var memory: VhostMemoryMap?
    private var logMap: VhostLogMap?
    private var rings = [RingSetup(), RingSetup()]
    private var epoch: UInt64 = 0
    private var rarp: [UInt8]?
    private var rarpSerial: UInt64 = 0
    /// The kick fd in the port's inner epoll (kept open while registered).
    private var watchedKick: OwnedFD?
    /// The last snapshot published had a running ring.
    private var ringsWereRunning = false
    /// `TAPESTRY_VHOST_TRACE=1`: log every message (protocol debugging).
    private let traceMessages = getenv("TAPESTRY_VHOST_TRACE") != nil

    struct RingSetup {
        var num = 0
        var address: VringAddress?
        var base: UInt16 = 0
        var kick: OwnedFD?
        var call: OwnedFD?
        var started = false
        var enabled = false
        var progress: VirtqueueProgressBox?
    }

    init(port: VhostUserPort, log: @escaping @Sendable (String) -> Void) throws {
        self.port = port
        self.log = log
        mode = port.mode
        path = port.socketPath
        if case .server(let permissions) = mode {
            listenFD = try listenVhost(path: path, permissions: permissions)
        }
    }

    func start() {
        let t = Thread { [self] in
            _ = cl_set_thread_name("tapestry-vhost")
            run()
            finished.signal()
        }
        t.stackSize = 512 * 1024
        thread = t
        t.start()
    }

    /// Stops the thread (closing the connection) and waits for it. Idempotent.
    func stop() {
        guard let port, !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        port.faultSignal.signal()
        let c = connection.load(ordering: .acquiring)
        if c >= 0 { _ = cv_shutdown(c) }
        if thread != nil { finished.wait() }
        if listenFD >= 0 { Glibc.close(listenFD); listenFD = -1; unlink(path) }
        self.port = nil
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    // MARK: - Connection loop

    private func run() {
        guard let port else { return }
        var backoffMs: Int32 = 50
        while !isStopping {
            var fd: Int32 = -1
            switch mode {
            case .server:
                let r = cv_poll2(listenFD, port.faultSignal.fd, -1)
                if r < 0 { if r == -EINTR { continue }; log("\(port.name): poll: \(r)"); return }
                if r & 2 != 0 { port.faultSignal.drain(); continue }
                fd = cv_accept(listenFD)
                if fd < 0 { continue }
            case .client:
                fd = cv_connect(path)
                if fd < 0 {
                    _ = cv_poll2(-1, port.faultSignal.fd, backoffMs)
                    port.faultSignal.drain()
                    backoffMs = min(1000, backoffMs * 2)
                    continue
                }
                backoffMs = 50
            }
            connection.store(fd, ordering: .releasing)
            if isStopping { connection.store(-1, ordering: .releasing); Glibc.close(fd); break }
            _ = cv_set_timeouts(fd, 5000)
            port.stats[Stat.connections] &+= 1
            log("\(port.name): frontend connected (\(path))")
            let why = serve(fd, port)
            reset(port)
            connection.store(-1, ordering: .releasing)
            Glibc.close(fd)
            port.stats[Stat.disconnects] &+= 1
            log("\(port.name): frontend disconnected: \(why)")
        }
        reset(port)
    }

    /// Handles messages until the connection ends; returns why it ended.
    private func serve(_ fd: Int32, _ port: VhostUserPort) -> String {
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: VhostMessageHeader.size, alignment: 8)
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: VhostMessageHeader.maxPayload, alignment: 8)
        defer { header.deallocate(); payload.deallocate() }
        var fds = [Int32](repeating: -1, count: Int(CV_MAX_FDS))
        while true {
            let r = cv_poll2(fd, port.faultSignal.fd, -1)
            if r == -EINTR { continue }
            if r < 0 { return "poll failed (\(-r))" }
            if r & 2 != 0 {
                port.faultSignal.drain()
                if isStopping { return "port closed" }
                for (i, ring) in rings.enumerated() {
                    if let p = ring.progress, p.pointer.pointee.fault != 0 {
                        let f = VirtqueueFault(rawValue: p.pointer.pointee.fault)!
                        return "ring \(i) reset: \(f) (\(ringState(i, p)))"
                    }
                }
            }
            guard r & 1 != 0 else { continue }
            var nfds: Int32 = 0
            let n = fds.withUnsafeMutableBufferPointer { cv_recv(fd, header.baseAddress, header.count, $0.baseAddress, CV_MAX_FDS, &nfds) }
            if n == 0 { return "frontend closed the connection" }
            if n < 0 { return isStopping ? "port closed" : "receive failed: \(SystemError(operation: "recvmsg", subject: path, errno: Int32(-n)).reason)" }
            var received = Array(fds.prefix(Int(nfds)))
            func fail(_ why: String) -> String {
                for f in received { Glibc.close(f) }
                port.stats[Stat.protocolError] &+= 1
                return "protocol error: \(why)"
            }
            if n < VhostMessageHeader.size { return fail("truncated header") }
            let h: VhostMessageHeader
            switch VhostMessageHeader.parse(UnsafeRawBufferPointer(header)) {
            case .success(let v): h = v
            case .failure(let e): return fail(e.description)
            }
            let size = Int(h.size)
            if size > 0 {
                var more: Int32 = 0
                let m = fds.withUnsafeMutableBufferPointer { cv_recv(fd, payload.baseAddress, size, $0.baseAddress, CV_MAX_FDS, &more) }
                received += fds.prefix(Int(more))
                if m != size { return fail("truncated payload (\(m) of \(size) bytes)") }
            }
            let request: VhostRequest
            switch VhostMessage.parse(header: h, payload: UnsafeRawBufferPointer(rebasing: payload[0..<size]), fdCount: received.count) {
            case .success(let v): request = v
            case .failure(let e): return fail(e.description)
            }
            if traceMessages { log("\(port.name): <- \(request)\(h.needsReply ? " (reply wanted)" : "")") }
            let reply: [UInt8]?
            do {
                let taken = received
                received = []
                reply = try handle(request, code: h.request, fds: taken, port: port)
            } catch {
                port.stats[Stat.protocolError] &+= 1
                return "protocol error: \(error)"
            }
            var out = reply
            if out == nil && h.needsReply && protocolFeatures & VhostProtocolFeature.replyAck != 0 {
                out = VhostMessage.reply(to: h.request, u64: 0)
            }
            if let bytes = out {
                let s = bytes.withUnsafeBytes { cv_send(fd, $0.baseAddress, $0.count, nil, 0) }
                if s != bytes.count { return "send failed" }
            }
        }
    }

    /// The indexes of ring `i` as the device and the driver see them (for the reset's log line).
    private func ringState(_ i: Int, _ p: VirtqueueProgressBox) -> String {
        var text = "last_avail \(p.pointer.pointee.lastAvail), used \(p.pointer.pointee.usedIndex)"
        if p.pointer.pointee.fault == VirtqueueFault.availIndexOutOfRange.rawValue { text += ", avail.idx read \(p.pointer.pointee.faultAvailIndex)" }
        if let mem = memory?.memory, let a = rings[i].address,
           let avail = mem.translate(frontend: a.avail, length: 4), let used = mem.translate(frontend: a.used, length: 4) {
            text += ", avail.idx \(UInt16(littleEndian: cv_load16(avail + 2)))"
            text += ", used.idx \(UInt16(littleEndian: cv_load16(used + 2)))"
        }
        return text
    }

    // MARK: - Messages

    /// Applies one request; returns its reply (nil: none, or a REPLY_ACK added by the caller).
    /// Takes ownership of `fds` (closes what it does not keep, also when it throws).
    private func handle(_ request: VhostRequest, code: UInt32, fds: [Int32], port: VhostUserPort) throws -> [UInt8]? {
        var pending = fds
        defer { for f in pending { Glibc.close(f) } }
        func takeFD() -> OwnedFD? { pending.isEmpty ? nil : OwnedFD(pending.removeFirst()) }
        func ring(_ i: Int) throws -> Int {
            guard i >= 0 && i < rings.count else { throw VhostDeviceError("ring \(i) does not exist (one queue pair)") }
            return i
        }
        switch request {
        case .getFeatures:
            return VhostMessage.reply(to: code, u64: port.offeredFeatures)
        case .setFeatures(let f):
            guard f & ~port.offeredFeatures == 0 else { throw VhostDeviceError("SET_FEATURES 0x\(String(f, radix: 16)) asks for features never offered") }
            features = f
            try publish(port)
        case .setOwner:
            break
        case .reset:
            reset(port)
        case .getProtocolFeatures:
            return VhostMessage.reply(to: code, u64: VhostProtocolFeature.offered)
        case .setProtocolFeatures(let f):
            protocolFeatures = f & VhostProtocolFeature.offered
        case .getQueueNum:
            return VhostMessage.reply(to: code, u64: 1)
        case .setMemTable(let regions):
            let map = try VhostMemoryMap(regions, fds: pending)
            pending = []
            memory = map
            try publish(port)
        case .setLogBase(let size, let offset):
            let fd = pending.removeFirst()
            logMap = try VhostLogMap(fd: fd, size: size, offset: offset)
            port.stats[Stat.dirtyLogs] &+= 1
            log("\(port.name): dirty-page log of \(size) bytes (live migration)")
            try publish(port)
            return VhostMessage.reply(to: code)
        case .setLogFD:
            break
        case .setVringNum(let i, let num):
            let r = try ring(i)
            guard Virtqueue.isValidSize(num) else { throw VhostDeviceError("ring \(i) size \(num) is not a power of two in 1…32768") }
            rings[r].num = num
        case .setVringAddr(let a):
            let r = try ring(a.index)
            rings[r].address = a
            if rings[r].progress != nil { try publish(port) }
        case .setVringBase(let i, let base):
            let r = try ring(i)
            guard base <= 0xFFFF else { throw VhostDeviceError("ring \(i) base \(base) exceeds 16 bits") }
            rings[r].base = UInt16(base)
            rings[r].progress = nil
        case .getVringBase(let i):
            let r = try ring(i)
            let base = stopRing(r, port)
            return VhostMessage.reply(to: code, index: i, num: Int(base))
        case .setVringKick(let i, _):
            let r = try ring(i)
            rings[r].kick = takeFD()
            rings[r].started = true
            if features & VirtioFeature.protocolFeatures == 0 { rings[r].enabled = true }
            try publish(port)
        case .setVringCall(let i, _):
            let r = try ring(i)
            rings[r].call = takeFD()
            try publish(port)
        case .setVringErr(let i, _):
            _ = try ring(i)
        case .setVringEnable(let i, let enable):
            let r = try ring(i)
            rings[r].enabled = enable
            try publish(port)
        case .sendRARP(let mac):
            rarp = rarpFrame(for: mac)
            rarpSerial += 1
            try publish(port)
            log("\(port.name): SEND_RARP for \(mac)")
        case .setStatus(let s):
            status = s
        case .getStatus:
            return VhostMessage.reply(to: code, u64: UInt64(status))
        case .unsupported(let c):
            log("\(port.name): request \(c) not supported, ignored")
            return nil
        }
        return nil
    }

    /// Builds and publishes the datapath snapshot for the current state.
    private func publish(_ port: VhostUserPort) throws {
        epoch += 1
        var built: [VhostRingConfig?] = [nil, nil]
        let logging = features & VirtioFeature.logAll != 0 ? logMap?.log : nil
        for i in 0..<rings.count {
            let ring = rings[i]
            guard ring.started, ring.enabled, let map = memory, let a = ring.address, ring.num > 0 else { continue }
            let mem = map.memory
            let sizes = Virtqueue.byteCounts(size: ring.num)
            guard let desc = mem.translate(frontend: a.descriptors, length: UInt64(sizes.descriptors)),
                  let avail = mem.translate(frontend: a.avail, length: UInt64(sizes.avail)),
                  let used = mem.translate(frontend: a.used, length: UInt64(sizes.used)) else {
                throw VhostDeviceError("ring \(i) lies outside the memory table")
            }
            guard Virtqueue.isAligned(descriptors: desc, avail: avail, used: used) else {
                throw VhostDeviceError("ring \(i) is misaligned (descriptors 16, avail 2, used 4 bytes: virtio 1.2 §2.7)")
            }
            let usedGPA = a.flags & VringAddress.logFlag != 0 ? a.log : (mem.guestPhysical(frontend: a.used) ?? 0)
            let box: VirtqueueProgressBox
            if let b = ring.progress {
                box = b
            } else {
                let usedIdx = UInt16(littleEndian: cv_load16(used + 2))
                box = VirtqueueProgressBox(VirtqueueProgress(lastAvail: ring.base, usedIndex: usedIdx))
                rings[i].progress = box
            }
            let q = Virtqueue(size: ring.num, descriptors: desc, avail: avail, used: used,
                              eventIndex: features & VirtioFeature.eventIdx != 0, memory: mem, log: logging,
                              usedGuestAddress: usedGPA, progress: box.pointer)
            built[i] = VhostRingConfig(queue: q, progress: box, kick: ring.kick, call: ring.call)
        }
        // The TX kick is watched exactly while the ring runs: a kick for a ring the datapath
        // does not run would keep the port readable with nothing to drain it.
        let kick = built[1]?.kick
        if kick?.fd != watchedKick?.fd {
            port.watchKick(add: kick?.fd, remove: watchedKick?.fd)
            watchedKick = kick
        }
        port.publish(VhostDatapathConfig(epoch: epoch, rx: built[0], tx: built[1], memory: memory, log: logMap,
                                         features: features, rarp: rarp, rarpSerial: rarpSerial))
        // The reply to this message goes out only once the datapath runs the new snapshot.
        // For dirty logging this is the protocol's rule: QEMU waits for the reply to
        // SET_FEATURES(LOG_ALL) and then assumes every write from that point on is logged; a
        // write by a datapath still on the old snapshot would be lost to the migration (a
        // corrupted guest, measured). For the rest it makes each reply mean "in effect".
        let running = built[0] != nil || built[1] != nil
        if running || ringsWereRunning {
            if !port.waitForDatapath(epoch: epoch) { log("\(port.name): datapath did not take the new configuration within 2 s") }
        }
        ringsWereRunning = running
    }

    /// GET_VRING_BASE: stops ring `r` and returns its next avail index, once the datapath no
    /// longer runs it.
    private func stopRing(_ r: Int, _ port: VhostUserPort) -> UInt16 {
        rings[r].started = false
        try? publish(port)                          // waits for the datapath to let go
        rings[r].kick = nil
        let base = rings[r].progress.map { $0.pointer.pointee.lastAvail } ?? rings[r].base
        rings[r].base = base
        rings[r].progress = nil
        return base
    }

    /// Back to the state of a fresh connection; the datapath drops the rings first.
    private func reset(_ port: VhostUserPort) {
        rings = [RingSetup(), RingSetup()]
        features = 0
        protocolFeatures = 0
        status = 0
        rarp = nil
        try? publish(port)
        memory = nil
        logMap = nil
        try? publish(port)
    }
}

/// The RARP a migrated guest is announced with (what QEMU's own announce sends: reverse
/// request, sender and target hardware address = the guest's MAC, no protocol addresses;
/// RFC 903), padded to 60 bytes, behind a zero 12-byte virtio-net header.
func rarpFrame(for mac: MACAddress) -> [UInt8] {
    var f = [UInt8](repeating: 0, count: VirtioNetHeader.size + 60)
    let m = (0..<6).map { UInt8(truncatingIfNeeded: mac.rawValue >> (8 * (5 - $0))) }
    var o = VirtioNetHeader.size
    for _ in 0..<6 { f[o] = 0xFF; o += 1 }
    for b in m { f[o] = b; o += 1 }
    f[o] = 0x80; f[o + 1] = 0x35; o += 2            // ethertype RARP
    f[o] = 0; f[o + 1] = 1; o += 2                  // htype Ethernet
    f[o] = 0x08; f[o + 1] = 0x00; o += 2            // ptype IPv4
    f[o] = 6; f[o + 1] = 4; o += 2                  // hlen, plen
    f[o] = 0; f[o + 1] = 3; o += 2                  // op: reverse request
    for b in m { f[o] = b; o += 1 }                 // sha
    o += 4                                          // spa
    for b in m { f[o] = b; o += 1 }                 // tha
    return f
}
