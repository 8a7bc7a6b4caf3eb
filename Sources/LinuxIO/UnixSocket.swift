#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// Fills a `sockaddr_un` for `path`; nil when the path does not fit `sun_path` (108 bytes
/// with its NUL).
func unixAddress(_ path: String) -> sockaddr_un? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { return nil }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    return addr
}

/// The peer of a Unix stream socket (SO_PEERCRED's `struct ucred`, which Glibc imports only
/// under _GNU_SOURCE): its pid, uid and gid when it connected.
public struct PeerCredentials: Equatable, Sendable {
    public var pid: Int32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public init(pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0) { self.pid = pid; self.uid = uid; self.gid = gid }
}

/// A listening Unix stream socket at a path (socket(2), bind(2), listen(2); unix(7)).
///
/// The socket file is created with mode `mode` (bound under a umask that leaves no other
/// bits, then chmod'ed), so there is no moment when others could connect. The listening fd
/// is non-blocking: `accept()` returns nil when no client waits, for use under `Epoll`.
/// Any failure (ENOSPC or EDQUOT creating the socket file on a full file system, EADDRINUSE,
/// a path longer than `sun_path`) closes the fd and removes a file this call bound, and
/// throws a `SystemError` naming the path. Needs write access to the directory.
public final class UnixListener {
    /// The socket file.
    public let path: String
    /// The listening fd, or -1 after `close`.
    public private(set) var fd: Int32

    /// Binds and listens on `path`, replacing a stale socket file there (the caller owns
    /// the name: see `FileLock`). `backlog` is listen(2)'s queue of unaccepted clients.
    /// `group`, when given, becomes the socket file's group (chown(2), before the chmod to
    /// `mode`, so the group's access starts only once it is the right group).
    public init(path: String, mode: mode_t = 0o600, group: gid_t? = nil, backlog: Int32 = 64) throws {
        guard var addr = unixAddress(path) else {
            throw SystemError(operation: "bind (path longer than sun_path's 107 bytes)", subject: path, errno: ENAMETOOLONG)
        }
        self.path = path
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw SystemError(operation: "socket(AF_UNIX)", subject: path, errno: errno) }
        unlink(path)
        let old = umask(0o777 & ~mode)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(old)
        guard rc == 0 else {
            _ = Glibc.close(s)
            throw SystemError(operation: "bind", subject: path, errno: bindErrno)
        }
        if let g = group, chown(path, uid_t.max, g) != 0 {
            let e = errno
            _ = Glibc.close(s); unlink(path)
            throw SystemError(operation: "chown (group \(g))", subject: path, errno: e)
        }
        if chmod(path, mode) != 0 {
            let e = errno
            _ = Glibc.close(s); unlink(path)
            throw SystemError(operation: "chmod", subject: path, errno: e)
        }
        if listen(s, backlog) != 0 {
            let e = errno
            _ = Glibc.close(s); unlink(path)
            throw SystemError(operation: "listen", subject: path, errno: e)
        }
        fd = s
    }

    deinit { if fd >= 0 { _ = Glibc.close(fd) } }

    /// Accepts one waiting client (accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC). nil when none
    /// waits (EAGAIN) or the client gave up before we got to it (ECONNABORTED).
    /// - Throws: `SystemError` for anything else (EMFILE/ENFILE when out of fds, EINVAL after
    ///   shutdown).
    public func accept() throws -> UnixConnection? {
        while true {
            let c = cl_accept_nonblock(fd)
            if c >= 0 { return UnixConnection(fd: c) }
            switch -c {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK, ECONNABORTED: return nil
            case let e: throw SystemError(operation: "accept", subject: path, errno: e)
            }
        }
    }

    /// Closes the fd and, with `removing`, unlinks the socket file. Idempotent.
    public func close(removing: Bool = true) {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
        if removing { unlink(path) }
    }
}

/// One connected Unix stream socket (a client of `UnixListener`, or our end of
/// `UnixConnection.connect`). Owns its fd unless made with `borrowing:`.
///
/// Reads and writes retry EINTR; `send` uses MSG_NOSIGNAL, so a peer that went away is an
/// error, never a SIGPIPE.
public final class UnixConnection {
    /// The socket fd, or -1 after `close`.
    public private(set) var fd: Int32
    private let owned: Bool

    init(fd: Int32) { self.fd = fd; owned = true }

    /// A view of an fd someone else owns (it is never closed here).
    public init(borrowing fd: Int32) { self.fd = fd; owned = false }

    deinit { if owned && fd >= 0 { _ = Glibc.close(fd) } }

    /// Connects to the listener at `path` (blocking socket). `receiveTimeoutSeconds` bounds
    /// each later read (SO_RCVTIMEO; 0 = none).
    /// - Throws: `SystemError` (ENOENT or ECONNREFUSED when nobody listens there).
    public static func connect(path: String, receiveTimeoutSeconds: Int = 0) throws -> UnixConnection {
        guard var addr = unixAddress(path) else {
            throw SystemError(operation: "connect (path longer than sun_path's 107 bytes)", subject: path, errno: ENAMETOOLONG)
        }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw SystemError(operation: "socket(AF_UNIX)", subject: path, errno: errno) }
        let c = UnixConnection(fd: s)
        if receiveTimeoutSeconds > 0 { c.setTimeouts(receiveSeconds: receiveTimeoutSeconds, sendSeconds: 0) }
        while true {
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { return c }
            if errno == EINTR { continue }
            throw SystemError(operation: "connect", subject: path, errno: errno)
        }
    }

    /// The peer's pid, uid and gid (SO_PEERCRED); nil if the kernel does not say.
    public func peerCredentials() -> PeerCredentials? {
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred : nil
    }

    /// The peer's supplementary groups when it connected (SO_PEERGROUPS, Linux ≥ 4.13; the
    /// primary group is `peerCredentials().gid`). nil when the kernel cannot tell.
    public func peerGroups() -> [UInt32]? {
        var groups = [UInt32](repeating: 0, count: 256)
        let n = groups.withUnsafeMutableBufferPointer { cl_peer_groups(fd, $0.baseAddress, Int32($0.count)) }
        return n < 0 ? nil : Array(groups.prefix(Int(n)))
    }

    /// Blocking (true) or non-blocking (false) I/O from now on.
    public func setBlocking(_ blocking: Bool) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return }
        _ = fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK)
    }

    /// Per-call timeouts of blocking reads and writes (SO_RCVTIMEO, SO_SNDTIMEO); 0 leaves
    /// one unset.
    public func setTimeouts(receiveSeconds: Int, sendSeconds: Int) {
        if receiveSeconds > 0 {
            var tv = timeval(tv_sec: receiveSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        if sendSeconds > 0 {
            var tv = timeval(tv_sec: sendSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// Reads what is available into `buffer` (appending at most `limit` bytes). `.bytes(0)`
    /// is end of stream; `.wouldBlock` on a non-blocking socket with nothing to read, or when
    /// a blocking read timed out.
    public func receive(appendingTo buffer: inout [UInt8], limit: Int = 65536) -> IOResult {
        var chunk = [UInt8](repeating: 0, count: max(1, min(limit, 65536)))
        let fd = self.fd
        let r = Syscall.io { () -> Int in
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n >= 0 ? n : -Int(errno)
        }
        if case .bytes(let n) = r, n > 0 { buffer += chunk[0..<n] }
        return r
    }

    /// Sends all of `bytes` (blocking up to the send timeout per call). False when the peer
    /// went away or the send timed out.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Sends all of `bytes`; see `send(_:)`.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { send($0) } }

    /// Waits up to `milliseconds` for the socket to become readable (or hung up). True when
    /// it is.
    public func waitReadable(milliseconds: Int32) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let r = poll(&pfd, 1, milliseconds)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }

    /// True when the peer closed its end (or the socket failed), checked without waiting.
    /// Bytes the peer sent meanwhile are read and discarded (for streams whose client must
    /// not send after its request), so a chatty peer cannot keep the socket readable.
    public func peerHungUp() -> Bool {
        var junk = [UInt8](repeating: 0, count: 512)
        let n = junk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { return false }
        if n == 0 { return true }
        return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    }

    /// Reads until the peer closes its end or `limit` bytes arrived (blocking, each read
    /// bounded by the receive timeout). Returns what arrived.
    public func receiveUntilEnd(limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        while out.count < limit {
            guard case .bytes(let n) = receive(appendingTo: &out, limit: limit - out.count), n > 0 else { break }
        }
        return out
    }

    /// Closes the fd (if owned). Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        if owned { _ = Glibc.close(fd) }
        fd = -1
    }
}
