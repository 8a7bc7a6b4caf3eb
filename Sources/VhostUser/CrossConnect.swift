import CLinux
import Foundation
import LinuxIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Forwards every frame between two ports on one thread, like a patch cable: the stand-in for
/// the switch datapath in the vhost-user tests and benchmark (`tapestry-vhost-bench`), until
/// Runtime's datapath runs these ports.
///
/// It drives the ports exactly as the datapath does (see `PortIO`): epoll over both
/// `pollFD`s, up to 64 `read`s from a ready port, one `writev` per frame to the other port
/// (iovec 0 = the virtio-net header as read, cut to the egress port's size, iovec 1 = the
/// frame), then one `flush`. A TAP with a 10-byte vnet header can sit on either side. Receive
/// area and iovecs are allocated once: nothing per frame allocates.
public final class CrossConnect<A: PortIO, B: PortIO> {
    public let a: A
    public let b: B
    private let epoll: Epoll
    private let stopFD: EventFD
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private var started = false
    /// Frames read from A and written to B (delivered), and those B refused; the reverse.
    private let counts: UnsafeMutablePointer<UInt64>

    /// Frames per batch, as the datapath.
    public static var batch: Int { 64 }

    /// The datapath's poll mode (`TAPESTRY_BUSY_POLL_US`): after a batch with work, spin on a
    /// non-blocking `epoll_wait` (yielding when nothing is ready) for this long before sleeping.
    public let busyPollNanoseconds: Int64

    public init(_ a: A, _ b: B, busyPollMicroseconds: Int = 0) throws {
        self.a = a
        self.b = b
        busyPollNanoseconds = Int64(max(0, busyPollMicroseconds)) * 1000
        epoll = try Epoll()
        stopFD = try EventFD()
        try epoll.add(a.pollFD(queue: 0), data: 0)
        try epoll.add(b.pollFD(queue: 0), data: 1)
        try epoll.add(stopFD.fd, data: 2)
        counts = .allocate(capacity: 4)
        counts.initialize(repeating: 0, count: 4)
    }

    deinit {
        stop()
        counts.deallocate()
    }

    /// Frames delivered A→B, refused by B, delivered B→A, refused by A (read on any thread;
    /// may lag a batch).
    public var statistics: (aToB: UInt64, droppedAtB: UInt64, bToA: UInt64, droppedAtA: UInt64) {
        (counts[0], counts[1], counts[2], counts[3])
    }

    /// Starts the forwarding thread (named `tapestry-xc`).
    public func start() {
        guard !started else { return }
        started = true
        let t = Thread { [self] in
            _ = cl_set_thread_name("tapestry-xc")
            loop()
            done.signal()
        }
        t.stackSize = 1 << 20
        t.start()
    }

    /// Stops the thread and waits for it; the ports are no longer called afterwards.
    public func stop() {
        guard started else { return }
        started = false
        stopping.store(true, ordering: .releasing)
        stopFD.signal()
        done.wait()
        if let p = a as? VhostUserPort { p.detachFromDatapath() }
        if let p = b as? VhostUserPort { p.detachFromDatapath() }
    }

    /// Largest read (a 64 KiB GSO frame and its header) and the batch area, as the datapath.
    static var frameMax: Int { 65536 + 64 }
    static var areaSize: Int { (1 << 20) + frameMax }

    private func loop() {
        let area = UnsafeMutableRawPointer.allocate(byteCount: Self.areaSize, alignment: 64)
        let offsets = UnsafeMutablePointer<Int>.allocate(capacity: Self.batch)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: Self.batch)
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 2)
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: 8)
        defer { area.deallocate(); offsets.deallocate(); lengths.deallocate(); iov.deallocate(); events.deallocate() }
        var hadWork = false
        while !stopping.load(ordering: .acquiring) {
            // As the datapath's poll mode (Datapath.run): spin briefly after work.
            var n = 0
            if busyPollNanoseconds > 0 && hadWork {
                let until = monotonicNanoseconds() + busyPollNanoseconds
                repeat {
                    n = (try? epoll.wait(into: events, timeoutMilliseconds: 0)) ?? 0
                    if n == 0 { sched_yield() }
                } while n == 0 && monotonicNanoseconds() < until
            }
            if n == 0 { n = (try? epoll.wait(into: events, timeoutMilliseconds: 200)) ?? 0 }
            hadWork = n > 0
            for i in 0..<n {
                switch events[i].data {
                case 0: pump(from: a, to: b, counts: counts, area: area, offsets: offsets, lengths: lengths, iov: iov)
                case 1: pump(from: b, to: a, counts: counts + 2, area: area, offsets: offsets, lengths: lengths, iov: iov)
                default: stopFD.drain()
                }
            }
        }
    }

    /// One batch from `src` to `dst`: frames read back to back (64-byte aligned) into `area`.
    @inline(__always)
    private func pump<S: PortIO, D: PortIO>(from src: S, to dst: D, counts: UnsafeMutablePointer<UInt64>, area: UnsafeMutableRawPointer,
                                             offsets: UnsafeMutablePointer<Int>, lengths: UnsafeMutablePointer<Int>, iov: UnsafeMutablePointer<iovec>) {
        let header = src.vnetHeaderSize
        // The virtio_net_hdr_v1 starts with the legacy 10-byte header: a shorter egress header
        // is a prefix of it; a longer one (10 → 12) the vhost-user port completes itself.
        let egressHeader = min(header, dst.txVNetHeaderSize)
        var count = 0, offset = 0
        while count < Self.batch && offset + Self.frameMax <= Self.areaSize {
            guard case .bytes(let len) = src.read(queue: 0, into: UnsafeMutableRawBufferPointer(start: area + offset, count: Self.frameMax)) else { break }
            offsets[count] = offset
            lengths[count] = len
            count += 1
            offset += (len + 63) & ~63
        }
        src.endReads(queue: 0)
        guard count > 0 else { return }
        var sent: UInt64 = 0, refused: UInt64 = 0
        for k in 0..<count {
            let len = lengths[k]
            let p = area + offsets[k]
            guard len >= header else { continue }
            iov[0] = iovec(iov_base: p, iov_len: egressHeader)
            iov[1] = iovec(iov_base: p + header, iov_len: len - header)
            let r = egressHeader > 0 ? dst.writev(queue: 0, iov, count: 2) : dst.writev(queue: 0, iov + 1, count: 1)
            switch r {
            case .bytes: sent += 1
            default: refused += 1
            }
        }
        dst.flush(queue: 0)
        counts[0] &+= sent
        counts[1] &+= refused
    }
}
