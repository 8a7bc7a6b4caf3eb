import CFabric
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why one attempt at one endpoint failed (connect, TLS, I/O, timeout, HTTP framing). The
/// client moves on to the next endpoint after any of these.
struct TransportError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One TCP connection (optionally TLS) to one endpoint, non-blocking underneath, each call
/// bounded by a deadline through poll(2). One owner, one thread at a time; closed in
/// deinit and by an idempotent `close()`.
final class StreamConnection {
    private var fd: Int32
    private var tls: OpaquePointer?
    private var err = [CChar](repeating: 0, count: 512)

    private init(fd: Int32) { self.fd = fd }

    /// Takes ownership of a connected stream socket (tests use one end of a socketpair).
    static func adopting(_ fd: Int32) -> StreamConnection { StreamConnection(fd: fd) }

    deinit { close() }

    /// Frees TLS state and closes the socket (again: nothing).
    func close() {
        if let t = tls { cf_tls_free(t); tls = nil }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// Connects to `host:port` (an address literal, or a name resolved by getaddrinfo, which
    /// is not bounded by the deadline: endpoints should be addresses), inside the network
    /// namespace file `namespace` when given, then runs the TLS handshake when `tls` is given.
    static func open(host: String, port: UInt16, tls: TLSContext?, namespace: String?, deadline: Deadline) throws -> StreamConnection {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw TransportError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var lastError = "no address for \(host)"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            if deadline.hasPassed { throw TransportError("connect to \(host):\(port): timed out") }
            do {
                let c = try connect(a.pointee, namespace: namespace, deadline: deadline, label: "\(host):\(port)")
                if let tls { try c.startTLS(tls, host: host, deadline: deadline) }
                return c
            } catch let e as TransportError {
                lastError = e.description
            }
        }
        throw TransportError(lastError)
    }

    private static func connect(_ a: addrinfo, namespace: String?, deadline: Deadline, label: String) throws -> StreamConnection {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd: Int32
        if let namespace {
            let r = cf_socket_in_netns(namespace, a.ai_family, type, 0)
            guard r >= 0 else { throw TransportError("socket in \(namespace): \(String(cString: strerror(-r)))") }
            fd = r
        } else {
            fd = socket(a.ai_family, type, 0)
            guard fd >= 0 else { throw TransportError("socket: \(String(cString: strerror(errno)))") }
        }
        let c = StreamConnection(fd: fd)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, a.ai_addr, a.ai_addrlen) != 0 {
            let e = errno
            guard e == EINPROGRESS || e == EINTR else {
                throw TransportError("connect to \(label): \(String(cString: strerror(e)))")
            }
            try c.wait(for: Int16(POLLOUT), deadline: deadline, doing: "connect to \(label)")
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            if soError != 0 { throw TransportError("connect to \(label): \(String(cString: strerror(soError)))") }
        }
        return c
    }

    private func startTLS(_ context: TLSContext, host: String, deadline: Deadline) throws {
        guard let t = cf_tls_new(context.pointer, fd, host, &err, err.count) else {
            throw TransportError(String(cString: err))
        }
        tls = t
        while true {
            let r = cf_tls_handshake(t, &err, err.count)
            switch r {
            case 0: return
            case Int32(CF_TLS_WANT_READ): try wait(for: Int16(POLLIN), deadline: deadline, doing: "TLS handshake with \(host)")
            case Int32(CF_TLS_WANT_WRITE): try wait(for: Int16(POLLOUT), deadline: deadline, doing: "TLS handshake with \(host)")
            default: throw TransportError("\(host): \(String(cString: err))")
            }
        }
    }

    /// poll(2) until `events` or the deadline (then throws "timed out").
    private func wait(for events: Int16, deadline: Deadline, doing what: String) throws {
        while true {
            let ms = deadline.pollMilliseconds
            if ms == 0 { throw TransportError("\(what): timed out") }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw TransportError("\(what): poll: \(String(cString: strerror(errno)))") }
        }
    }

    /// Writes all of `bytes` before the deadline.
    func write(_ bytes: [UInt8], deadline: Deadline) throws {
        var offset = 0
        while offset < bytes.count {
            let n: Int = bytes.withUnsafeBytes { raw in
                let p = raw.baseAddress! + offset
                if let t = tls { return cf_tls_write(t, p, raw.count - offset, &err, err.count) }
                return Glibc.send(fd, p, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { offset += n; continue }
            if tls != nil {
                if n == Int(CF_TLS_WANT_READ) { try wait(for: Int16(POLLIN), deadline: deadline, doing: "send"); continue }
                if n == Int(CF_TLS_WANT_WRITE) { try wait(for: Int16(POLLOUT), deadline: deadline, doing: "send"); continue }
                throw TransportError(String(cString: err))
            }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK { try wait(for: Int16(POLLOUT), deadline: deadline, doing: "send"); continue }
            if e == EINTR { continue }
            throw TransportError("send: \(String(cString: strerror(e)))")
        }
    }

    /// Reads up to `max` bytes, appending them to `buffer`, waiting until the deadline for at
    /// least one. Returns the count, 0 at end of stream.
    func read(into buffer: inout [UInt8], max: Int, deadline: Deadline) throws -> Int {
        var chunk = [UInt8](repeating: 0, count: max)
        while true {
            let n: Int = chunk.withUnsafeMutableBytes { raw in
                if let t = tls { return cf_tls_read(t, raw.baseAddress!, raw.count, &err, err.count) }
                return Glibc.recv(fd, raw.baseAddress!, raw.count, 0)
            }
            if n > 0 { buffer.append(contentsOf: chunk[0..<n]); return n }
            if n == 0 { return 0 }
            if tls != nil {
                if n == Int(CF_TLS_WANT_READ) { try wait(for: Int16(POLLIN), deadline: deadline, doing: "receive"); continue }
                if n == Int(CF_TLS_WANT_WRITE) { try wait(for: Int16(POLLOUT), deadline: deadline, doing: "receive"); continue }
                throw TransportError(String(cString: err))
            }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK { try wait(for: Int16(POLLIN), deadline: deadline, doing: "receive"); continue }
            if e == EINTR { continue }
            throw TransportError("receive: \(String(cString: strerror(e)))")
        }
    }
}
