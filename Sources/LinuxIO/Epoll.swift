#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// One readiness event as `Epoll.wait` reports it: `events` (bits such as `Epoll.readable`)
/// and the `data` registered with the fd. An unpacked copy of the kernel's packed struct.
public typealias EpollEvent = cl_epoll_event

/// An epoll instance: the datapath's single blocking point.
///
/// Registrations carry a caller-chosen 64-bit `data` (a port handle, say) that comes back
/// with each event, so the loop never maps fds to ports. `wait` fills a buffer the caller
/// allocated once: no allocation per wait. Wraps `cl_epoll_*` (epoll_create1/ctl/wait);
/// needs no privileges.
public final class Epoll {
    /// Readable (EPOLLIN).
    public static let readable: UInt32 = CL_EPOLLIN
    /// Writable (EPOLLOUT).
    public static let writable: UInt32 = CL_EPOLLOUT
    /// Error condition (EPOLLERR), always reported.
    public static let error: UInt32 = CL_EPOLLERR
    /// Hang-up (EPOLLHUP), always reported.
    public static let hangUp: UInt32 = CL_EPOLLHUP
    /// Edge-triggered mode (EPOLLET).
    public static let edgeTriggered: UInt32 = CL_EPOLLET
    /// Most events one `wait` returns, whatever the buffer size.
    public static let maxEventsPerWait = Int(CL_EPOLL_MAX_EVENTS)

    /// The epoll fd, or -1 after `close()`.
    public private(set) var fd: Int32

    /// Creates the instance (epoll_create1(EPOLL_CLOEXEC)).
    public init() throws {
        fd = try Syscall.require("epoll_create1") { cl_epoll_create() }
    }

    deinit { close() }

    /// Starts watching `fd` for `events` (EPOLL_CTL_ADD); `data` comes back with each event.
    public func add(_ fd: Int32, events: UInt32 = Epoll.readable, data: UInt64) throws {
        try Syscall.require("epoll_ctl(ADD)", subject: "fd \(fd)") { cl_epoll_add(self.fd, fd, events, data) }
    }

    /// Changes what `fd` is watched for (EPOLL_CTL_MOD).
    public func modify(_ fd: Int32, events: UInt32, data: UInt64) throws {
        try Syscall.require("epoll_ctl(MOD)", subject: "fd \(fd)") { cl_epoll_mod(self.fd, fd, events, data) }
    }

    /// Stops watching `fd` (EPOLL_CTL_DEL). Closing an fd also removes it.
    public func remove(_ fd: Int32) throws {
        try Syscall.require("epoll_ctl(DEL)", subject: "fd \(fd)") { cl_epoll_del(self.fd, fd) }
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever, 0: poll) and fills `events` from the
    /// start. Returns how many were filled (0 on timeout). An interrupted wait is retried.
    public func wait(into events: UnsafeMutableBufferPointer<EpollEvent>, timeoutMilliseconds: Int32) throws -> Int {
        guard let base = events.baseAddress, events.count > 0 else { return 0 }
        let max = Int32(Swift.min(events.count, Epoll.maxEventsPerWait))
        switch try Syscall.call("epoll_wait", { cl_epoll_wait(fd, base, max, timeoutMilliseconds) }) {
        case .value(let n): return Int(n)
        case .wouldBlock: return 0
        }
    }

    /// Closes the epoll fd. Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
    }
}

/// A counter fd that wakes an `Epoll` from another thread (eventfd(2), non-blocking).
///
/// The control side calls `signal()` after publishing a new plan or a stop request; the
/// datapath sees the fd readable and calls `drain()`. Needs no privileges.
public final class EventFD {
    /// The eventfd, or -1 after `close()`.
    public private(set) var fd: Int32

    /// Creates the counter at zero (eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC)).
    public init() throws {
        fd = try Syscall.require("eventfd") { cl_eventfd_create() }
    }

    deinit { close() }

    /// Adds one to the counter, making the fd readable. Safe from any thread; a saturated
    /// counter (already signalled 2^64-2 times) is still readable, so that case is ignored.
    public func signal() {
        let fd = self.fd
        guard fd >= 0 else { return }
        _ = Syscall.io { Int(cl_eventfd_signal(fd)) }
    }

    /// Reads and resets the counter; returns how many signals arrived (0 if none).
    @discardableResult
    public func drain() -> UInt64 {
        let fd = self.fd
        guard fd >= 0 else { return 0 }
        switch Syscall.io({ Int(cl_eventfd_drain(fd)) }) {
        case .bytes(let n): return UInt64(n)
        case .wouldBlock, .failed: return 0
        }
    }

    /// Closes the fd. Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
    }
}
