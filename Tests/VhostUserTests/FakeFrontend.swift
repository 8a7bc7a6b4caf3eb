import CLinux
import CVhost
import Foundation
import LinuxIO
import Synchronization
@testable import VhostUser

/// A vhost-user frontend in the test process: speaks the protocol over a real Unix socket
/// (fds passed with SCM_RIGHTS), shares a memfd as guest memory, and drives the rings with
/// a `FakeDriver` — what QEMU and its guest do, minus the VM.
final class FakeFrontend {
    var fd: Int32
    let memfd: Int32
    let memory: UnsafeMutableRawPointer
    let memorySize: Int
    let driver: FakeDriver
    let kick: [EventFD]
    let call: [EventFD]

    static let memorySize = 4 << 20

    /// Connects to a listening backend at `path`.
    convenience init(connectTo path: String, queueSize: Int = 256) throws {
        let fd = try Syscall.require("connect", subject: path) { cv_connect(path) }
        try self.init(fd: fd, queueSize: queueSize)
    }

    init(fd: Int32, queueSize: Int = 256) throws {
        self.fd = fd
        _ = cv_set_timeouts(fd, 5000)
        let size = Self.memorySize
        memorySize = size
        let mfd = try Syscall.require("memfd") { cv_memfd("fake-guest", UInt64(size)) }
        memfd = mfd
        var p: UnsafeMutableRawPointer? = nil
        try Syscall.require("mmap") { cv_mmap_shared(mfd, UInt64(size), 0, &p) }
        memory = p!
        driver = FakeDriver(queueSize: queueSize, size: Self.memorySize, memory: memory)
        kick = [try EventFD(), try EventFD()]
        call = [try EventFD(), try EventFD()]
    }

    deinit {
        if fd >= 0 { close(fd) }
        close(memfd)
        _ = cv_munmap(memory, UInt64(memorySize))
    }

    func disconnect() { if fd >= 0 { close(fd); fd = -1 } }

    // MARK: - Messages

    func send(_ code: VhostRequestCode, payload: [UInt8] = [], fds: [Int32] = [], needReply: Bool = false) throws {
        try sendRaw(VhostMessage.request(code.rawValue, flags: 1 | (needReply ? VhostMessageHeader.needReplyFlag : 0), payload: payload), fds: fds)
    }

    func sendRaw(_ bytes: [UInt8], fds: [Int32] = []) throws {
        let n = bytes.withUnsafeBytes { b in fds.withUnsafeBufferPointer { cv_send(fd, b.baseAddress, b.count, $0.baseAddress, Int32(fds.count)) } }
        guard n == bytes.count else { throw SystemError(operation: "send", subject: "fake frontend", errno: Int32(truncatingIfNeeded: n < 0 ? -n : Int(EIO))) }
    }

    /// Reads one reply: (request, payload).
    func receive() throws -> (UInt32, [UInt8]) {
        var h = [UInt8](repeating: 0, count: 12)
        var nfds: Int32 = 0
        var fds = [Int32](repeating: -1, count: 8)
        let n = h.withUnsafeMutableBytes { b in fds.withUnsafeMutableBufferPointer { cv_recv(fd, b.baseAddress, 12, $0.baseAddress, 8, &nfds) } }
        guard n == 12 else { throw SystemError(operation: "recv reply", subject: "fake frontend", errno: n < 0 ? Int32(-n) : EPIPE) }
        let code = UInt32(h[0]) | UInt32(h[1]) << 8 | UInt32(h[2]) << 16 | UInt32(h[3]) << 24
        let size = Int(h[8]) | Int(h[9]) << 8
        var payload = [UInt8](repeating: 0, count: size)
        if size > 0 {
            let m = payload.withUnsafeMutableBytes { b in fds.withUnsafeMutableBufferPointer { cv_recv(fd, b.baseAddress, size, $0.baseAddress, 8, &nfds) } }
            guard m == size else { throw SystemError(operation: "recv payload", subject: "fake frontend", errno: EPIPE) }
        }
        return (code, payload)
    }

    func u64(_ v: UInt64) -> [UInt8] { var a: [UInt8] = []; a.appendLE64(v); return a }
    func state(_ i: Int, _ n: Int) -> [UInt8] { var a: [UInt8] = []; a.appendLE32(UInt32(i)); a.appendLE32(UInt32(n)); return a }
    func le64(_ p: [UInt8]) -> UInt64 { p.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }

    func get(_ code: VhostRequestCode) throws -> UInt64 {
        try send(code)
        let (c, p) = try receive()
        precondition(c == code.rawValue)
        return le64(p)
    }

    /// The sequence QEMU sends when it starts the device, with `features` acked.
    func setUp(features wanted: UInt64 = VirtioFeature.offered & ~VirtioFeature.logAll, protocolFeatures: UInt64 = VhostProtocolFeature.offered, kickFDs: Bool = true) throws {
        let offered = try get(.getFeatures)
        let protocolOffered = try get(.getProtocolFeatures)
        try send(.setProtocolFeatures, payload: u64(protocolOffered & protocolFeatures))
        try send(.setOwner)
        _ = try get(.getQueueNum)
        try send(.setFeatures, payload: u64(offered & wanted))
        try setMemTable()
        for q in 0..<2 { try setUpRing(q, kickFD: kickFDs) }
    }

    func setMemTable(needReply: Bool = true) throws {
        var p: [UInt8] = []
        p.appendLE32(1); p.appendLE32(0)
        p.appendLE64(driver.gpaBase); p.appendLE64(UInt64(memorySize)); p.appendLE64(driver.frontendBase); p.appendLE64(0)
        try send(.setMemTable, payload: p, fds: [memfd], needReply: needReply)
        if needReply {
            let (_, ack) = try receive()
            precondition(le64(ack) == 0, "SET_MEM_TABLE refused")
        }
    }

    func setUpRing(_ q: Int, base: Int = 0, kickFD: Bool = true) throws {
        try send(.setVringNum, payload: state(q, driver.queueSize))
        try send(.setVringBase, payload: state(q, base))
        var a: [UInt8] = []
        a.appendLE32(UInt32(q)); a.appendLE32(0)
        a.appendLE64(driver.frontendBase + UInt64(driver.descOffset(q)))
        a.appendLE64(driver.frontendBase + UInt64(driver.usedOffset(q)))
        a.appendLE64(driver.frontendBase + UInt64(driver.availOffset(q)))
        a.appendLE64(driver.gpa(driver.usedOffset(q)))
        try send(.setVringAddr, payload: a)
        if kickFD {
            try send(.setVringKick, payload: u64(UInt64(q)), fds: [kick[q].fd])
        } else {
            try send(.setVringKick, payload: u64(UInt64(q) | 0x100))
        }
        try send(.setVringCall, payload: u64(UInt64(q)), fds: [call[q].fd])
        try send(.setVringEnable, payload: state(q, 1), needReply: true)
        _ = try receive()
    }

    func getVringBase(_ q: Int) throws -> Int {
        try send(.getVringBase, payload: state(q, 0))
        let (c, p) = try receive()
        precondition(c == VhostRequestCode.getVringBase.rawValue && p.count == 8)
        return Int(le64(p) >> 32)
    }

    /// Guest transmit: posts `frame` (with a 12-byte header) and kicks.
    func transmit(_ bytes: [UInt8]) {
        driver.post(1, [.readable(bytes)])
        kick[1].signal()
    }
}

/// Plays the datapath for one port in tests: a thread that waits on `pollFD`, reads every
/// frame into `received`, and writes what `send` queued (then flushes) — the single thread
/// allowed to call the port.
final class PortRunner: @unchecked Sendable {
    let port: VhostUserPort
    private let lock = NSLock()
    private var inbox: [[UInt8]] = []
    private var outbox: [([UInt8], [Int])] = []
    private var results: [IOResult] = []
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let nudge: EventFD

    init(_ port: VhostUserPort) throws {
        self.port = port
        nudge = try EventFD()
        let t = Thread { [self] in loop(); done.signal() }
        t.start()
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        nudge.signal()
        done.wait()
        port.detachFromDatapath()
    }

    var received: [[UInt8]] { lock.lock(); defer { lock.unlock() }; return inbox }
    var sendResults: [IOResult] { lock.lock(); defer { lock.unlock() }; return results }

    /// Queues a `[12-byte header][frame]` for the port; `pieces` cuts the frame into iovecs
    /// of these lengths (and the rest), as the switch hands over a frame whose tag it pushed.
    func send(_ bytes: [UInt8], pieces: [Int] = []) {
        lock.lock(); outbox.append((bytes, pieces)); lock.unlock()
        nudge.signal()
    }

    /// Waits until `condition` holds (checked every 10 ms), at most `timeout` seconds.
    func wait(timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline { if condition() { return true }; usleep(10_000) }
        return condition()
    }

    private func loop() {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 65600, alignment: 64)
        defer { buf.deallocate() }
        while !stopping.load(ordering: .acquiring) {
            let ready = cv_poll2(port.pollFD(queue: 0), nudge.fd, 50)
            nudge.drain()
            // Like the datapath: the port is read only when its pollFD says so.
            for _ in 0..<(ready > 0 && ready & 1 != 0 ? 64 : 0) {
                guard case .bytes(let n) = port.read(queue: 0, into: buf) else { break }
                let f = Array(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
                lock.lock(); inbox.append(f); lock.unlock()
            }
            lock.lock(); let out = outbox; outbox = []; lock.unlock()
            if !out.isEmpty {
                var rs: [IOResult] = []
                for (bytes, pieces) in out {
                    var f = bytes
                    let r: IOResult = f.withUnsafeMutableBytes { b in
                        var iov = [iovec(iov_base: b.baseAddress, iov_len: 12)]
                        var at = 12
                        for n in pieces { iov.append(iovec(iov_base: b.baseAddress! + at, iov_len: n)); at += n }
                        iov.append(iovec(iov_base: b.baseAddress! + at, iov_len: b.count - at))
                        return iov.withUnsafeMutableBufferPointer { port.writev(queue: 0, $0.baseAddress!, count: Int32($0.count)) }
                    }
                    rs.append(r)
                }
                port.flush(queue: 0)
                lock.lock(); results += rs; lock.unlock()
            }
        }
    }
}
