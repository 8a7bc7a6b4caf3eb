#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Blocking TCP stream sockets for the control plane: a live migration's stream between two
/// hosts' underlay addresses (VMotion), whose descriptors are handed to QEMU (QMP `getfd`,
/// then `migrate fd:NAME` / `migrate-incoming fd:NAME`). Each socket can be made inside a
/// network namespace (`hosts.H.netns`: a host of a lab on one machine), so the stream
/// crosses that host's underlay link, as between two machines, whatever namespace QEMU
/// runs in. socket(2), bind(2), listen(2), accept4(2), connect(2), poll(2); tcp(7).
///
/// Every descriptor is close-on-exec; the caller owns and closes what it gets. Not for the
/// per-frame path (these block and allocate).
public enum TCPStream {
    /// A listener on `address` (an IPv4 or IPv6 literal) and an ephemeral port, inside
    /// `namespace` (a name under /run/netns) when given; backlog 1. Returns the descriptor
    /// and the port the kernel chose.
    /// - Throws: `SystemError` (EADDRNOTAVAIL: the address is on no link there).
    public static func listen(address: String, namespace: String?) throws -> (fd: Int32, port: UInt16) {
        let make: () throws -> (Int32, UInt16) = {
            var storage = sockaddr_storage()
            let (family, length) = try fill(&storage, address: address, port: 0)
            let fd = try Syscall.require("socket(TCP)", subject: address) { socketOrErrno(family) }
            do {
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                try Syscall.require("bind", subject: address) { withSockaddr(&storage) { bind(fd, $0, length) == 0 ? 0 : -errno } }
                try Syscall.require("listen", subject: address) { Glibc.listen(fd, 1) == 0 ? 0 : -errno }
                var bound = sockaddr_storage()
                var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                try Syscall.require("getsockname", subject: address) { withSockaddr(&bound) { getsockname(fd, $0, &len) == 0 ? 0 : -errno } }
                return (fd, port(of: bound))
            } catch {
                Glibc.close(fd)
                throw error
            }
        }
        if let namespace { return try NetworkNamespace.run(in: namespace, make) }
        return try make()
    }

    /// Waits up to `timeout` seconds for one connection on `listener`. Returns its
    /// descriptor (blocking mode), or nil at the timeout.
    public static func accept(_ listener: Int32, timeout: Double) throws -> Int32? {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        let deadline = monotonicSeconds() + timeout
        while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return nil }
            let r = poll(&pfd, 1, Int32(min(left * 1000, 1000)) + 1)
            if r < 0 && errno != EINTR { throw SystemError(operation: "poll", subject: "migration listener", errno: errno) }
            if r > 0 {
                let c = Glibc.accept(listener, nil, nil)
                if c >= 0 { _ = fcntl(c, F_SETFD, FD_CLOEXEC); return c }
                if errno != EINTR && errno != EAGAIN { throw SystemError(operation: "accept", subject: "migration listener", errno: errno) }
            }
        }
    }

    /// Connects to `address`:`port` from inside `namespace` (when given), waiting at most
    /// `timeout` seconds. Returns the connected descriptor (blocking mode).
    /// - Throws: `SystemError` (ECONNREFUSED, ETIMEDOUT, ENETUNREACH…).
    public static func connect(address: String, port: UInt16, namespace: String?, timeout: Double) throws -> Int32 {
        let subject = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
        let make: () throws -> Int32 = {
            var storage = sockaddr_storage()
            let (family, _) = try fill(&storage, address: address, port: port)
            return try Syscall.require("socket(TCP)", subject: subject) { socketOrErrno(family) }
        }
        let fd = try namespace.map { ns in try NetworkNamespace.run(in: ns, make) } ?? make()
        do {
            var storage = sockaddr_storage()
            let (_, length) = try fill(&storage, address: address, port: port)
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            let rc = withSockaddr(&storage) { Glibc.connect(fd, $0, length) }
            if rc != 0 && errno != EINPROGRESS { throw SystemError(operation: "connect", subject: subject, errno: errno) }
            if rc != 0 {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var r: Int32
                repeat { r = poll(&pfd, 1, Int32(timeout * 1000)) } while r < 0 && errno == EINTR
                if r == 0 { throw SystemError(operation: "connect", subject: subject, errno: ETIMEDOUT) }
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err != 0 { throw SystemError(operation: "connect", subject: subject, errno: err) }
            }
            _ = fcntl(fd, F_SETFL, flags)
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Closes a descriptor this type returned (close(2)); -1 is ignored.
    public static func close(_ fd: Int32) { if fd >= 0 { _ = Glibc.close(fd) } }

    private static func socketOrErrno(_ family: Int32) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_TCP))
        return fd >= 0 ? fd : -errno
    }

    /// Fills `storage` with `address`:`port`; returns the family and the address length.
    private static func fill(_ storage: inout sockaddr_storage, address: String, port: UInt16) throws -> (Int32, socklen_t) {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, address, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: v4) { raw.copyMemory(from: $0) } }
            return (AF_INET, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, address, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: v6) { raw.copyMemory(from: $0) } }
            return (AF_INET6, socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        throw SystemError(operation: "parse address", subject: address, errno: EINVAL)
    }

    private static func port(of storage: sockaddr_storage) -> UInt16 {
        var s = storage
        return withUnsafeBytes(of: &s) { raw in
            // sin_port and sin6_port sit at the same offset (2), in network order.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }

    private static func withSockaddr<R>(_ storage: inout sockaddr_storage, _ body: (UnsafeMutablePointer<sockaddr>) -> R) -> R {
        withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }

    private static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
