import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server for Prometheus scrapes: `GET /metrics` (and `HEAD`), nothing else.
///
/// Decision: our own ~250 lines over poll(2) rather than FlyingFox 0.27.1 (in the package
/// mirror). Measured here: a fresh debug build of a package using FlyingFox took 10.9 s wall
/// (0.4 GB peak memory) on this 2-core machine, small next to CI's budget; the build cost is
/// not the reason. A scrape endpoint needs one route and hard bounds (clients, request size,
/// deadline), which FlyingFox's async/await server would still need wrapped around it, and
/// it would be the project's only use of Swift concurrency and a third package to resolve.
///
/// Bounds (all in `Limits`): at most `maxClients` connections at once (one more is answered
/// 503 and closed at once), a request (line and headers) of at most `maxRequestBytes` (else
/// 431), and `deadline` milliseconds from accept to the last byte sent (else the connection
/// is closed). One thread serves all connections with non-blocking sockets, so a slow or
/// silent client costs a slot, never a thread, and never touches the datapath.
///
/// The body comes from `families`, called on the server thread for each scrape. The runtime
/// implements it by copying its counters into a `MetricsSnapshot` under the datapath lock
/// (one batch's wait at most) and building the families after releasing it.
public final class MetricsServer {
    /// Resource bounds of the server.
    public struct Limits: Sendable {
        /// Connections served at once.
        public var maxClients: Int
        /// Request line and headers, bytes.
        public var maxRequestBytes: Int
        /// Milliseconds from accept to the last byte of the response.
        public var deadline: Int
        public init(maxClients: Int = 8, maxRequestBytes: Int = 8192, deadline: Int = 5000) {
            self.maxClients = max(1, maxClients); self.maxRequestBytes = max(256, maxRequestBytes); self.deadline = max(10, deadline)
        }
    }

    /// What the server has done (for tests and a metric of its own).
    public struct Counters: Equatable, Sendable {
        /// `GET /metrics` answered 200.
        public var scrapes: UInt64 = 0
        /// Requests answered 400/404/405/431.
        public var rejected: UInt64 = 0
        /// Connections refused with 503 because `maxClients` were open.
        public var busy: UInt64 = 0
        /// Connections closed at the deadline.
        public var timedOut: UInt64 = 0
    }

    /// The bounds it enforces.
    public let limits: Limits
    /// The port the server listens on (the given one, or the kernel's pick for port 0).
    public let port: UInt16
    private let families: () -> [MetricFamily]
    private var listenFD: Int32
    private var wakeRead: Int32 = -1, wakeWrite: Int32 = -1
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var counterStore = Counters()

    /// Counters so far (thread-safe).
    public var counters: Counters { lock.lock(); defer { lock.unlock() }; return counterStore }

    /// Binds and listens on `endpoint` (`ADDR:PORT`; port 0 picks a free one).
    /// - Throws: `SocketEndpoint.Invalid` naming the address and errno (EADDRINUSE, EACCES…).
    public init(listen endpoint: SocketEndpoint, limits: Limits = Limits(), families: @escaping () -> [MetricFamily]) throws {
        self.limits = limits
        self.families = families
        var (family, address, length) = try endpoint.resolve(socketType: Int32(SOCK_STREAM.rawValue))
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SocketEndpoint.Invalid(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0, listen(fd, 64) == 0 else {
            let e = errno; _ = Glibc.close(fd)
            throw SocketEndpoint.Invalid(description: "cannot listen on \(endpoint): \(String(cString: strerror(e)))")
        }
        var bound = sockaddr_storage()
        var blen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &blen) } }
        port = withUnsafeBytes(of: &bound) { raw in UInt16(raw[2]) << 8 | UInt16(raw[3]) }   // sin_port / sin6_port, network order
        listenFD = fd
        var pipeFDs: [Int32] = [-1, -1]
        // pipe2/accept4 are GNU extensions Glibc's module does not import: pipe + fcntl.
        guard pipe(&pipeFDs) == 0 else {
            _ = Glibc.close(fd)
            throw SocketEndpoint.Invalid(description: "pipe: \(String(cString: strerror(errno)))")
        }
        wakeRead = pipeFDs[0]; wakeWrite = pipeFDs[1]
        for p in pipeFDs { MetricsServer.setNonBlockingCloseOnExec(p) }
    }

    deinit { stop() }

    /// Starts serving on a thread of its own (`tapestry-metrics`).
    public func start() {
        guard thread == nil, listenFD >= 0 else { return }
        let t = Thread { [unowned self] in self.serve(); self.done.signal() }
        t.name = "tapestry-metrics"
        thread = t
        t.start()
    }

    /// Stops the thread, closes every connection and the listening socket. Idempotent.
    public func stop() {
        guard listenFD >= 0 else { return }
        if thread != nil {
            var b: UInt8 = 1
            _ = write(wakeWrite, &b, 1)
            done.wait()
            thread = nil
        }
        _ = Glibc.close(listenFD); listenFD = -1
        _ = Glibc.close(wakeRead); _ = Glibc.close(wakeWrite)
    }

    private struct Client {
        var fd: Int32
        var request: [UInt8] = []
        var response: [UInt8] = []
        var sent = 0
        var deadline: UInt64
    }

    private func count(_ update: (inout Counters) -> Void) { lock.lock(); update(&counterStore); lock.unlock() }

    private func serve() {
        var clients: [Client] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0), pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            for c in clients { fds.append(pollfd(fd: c.fd, events: Int16(c.response.isEmpty ? POLLIN : POLLOUT), revents: 0)) }
            let now = monotonicMilliseconds()
            let wait = clients.map { $0.deadline > now ? Int32(min($0.deadline - now, 1000)) : 0 }.min() ?? 1000
            let n = poll(&fds, nfds_t(fds.count), wait)
            if n < 0 && errno != EINTR { break }
            if fds[0].revents != 0 { break }   // stop()
            let after = monotonicMilliseconds()
            // Existing clients first (their indices match fds[2...]).
            var keep: [Client] = []
            for (i, var c) in clients.enumerated() {
                let ev = fds[i + 2].revents
                if after >= c.deadline { count { $0.timedOut += 1 }; _ = Glibc.close(c.fd); continue }
                var open = true
                if c.response.isEmpty && ev & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    let r = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if r > 0 {
                        c.request += buffer[0..<r]
                        if let response = respond(to: c.request) { c.response = response }
                    } else if r == 0 || (errno != EAGAIN && errno != EINTR) {
                        open = false
                    }
                }
                if open && !c.response.isEmpty {
                    let r = c.response.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, $0.count - c.sent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                    if r > 0 { c.sent += r } else if r < 0 && errno != EAGAIN && errno != EINTR { open = false }
                    if c.sent == c.response.count { open = false }
                }
                if open { keep.append(c) } else { _ = Glibc.close(c.fd) }
            }
            clients = keep
            if fds[1].revents & Int16(POLLIN) != 0 {
                while true {
                    let fd = accept(listenFD, nil, nil)
                    if fd < 0 { break }
                    MetricsServer.setNonBlockingCloseOnExec(fd)
                    if clients.count >= limits.maxClients {
                        count { $0.busy += 1 }
                        let r = MetricsServer.reply(503, "Service Unavailable", "too many scrapes at once\n")
                        _ = r.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                        _ = Glibc.close(fd)
                        continue
                    }
                    clients.append(Client(fd: fd, deadline: after + UInt64(limits.deadline)))
                }
            }
        }
        for c in clients { _ = Glibc.close(c.fd) }
    }

    /// The response to a request once its header is complete; nil while more is needed.
    private func respond(to request: [UInt8]) -> [UInt8]? {
        let end = headerEnd(request)
        if request.count > limits.maxRequestBytes || end.map({ $0 >= limits.maxRequestBytes }) == true {
            count { $0.rejected += 1 }
            return MetricsServer.reply(431, "Request Header Fields Too Large", "request larger than \(limits.maxRequestBytes) bytes\n")
        }
        guard end != nil else { return nil }
        let lineEnd = request.firstIndex(of: UInt8(ascii: "\n")) ?? request.count
        let line = String(decoding: request[..<lineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            count { $0.rejected += 1 }
            return MetricsServer.reply(400, "Bad Request", "expected 'GET /metrics HTTP/1.1'\n")
        }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            count { $0.rejected += 1 }
            return MetricsServer.reply(404, "Not Found", "only /metrics is served here\n")
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            count { $0.rejected += 1 }
            return MetricsServer.reply(405, "Method Not Allowed", "only GET and HEAD\n", extra: "Allow: GET, HEAD\r\n")
        }
        let body = PrometheusText.render(families())
        count { $0.scrapes += 1 }
        return MetricsServer.reply(200, "OK", body, contentType: PrometheusText.contentType, headOnly: parts[0] == "HEAD")
    }

    private func headerEnd(_ r: [UInt8]) -> Int? {
        guard r.count >= 2 else { return nil }
        for i in 1..<r.count where r[i] == 10 {
            if r[i - 1] == 10 { return i }
            if i >= 3 && r[i - 1] == 13 && r[i - 2] == 10 { return i }
        }
        return nil
    }

    static func setNonBlockingCloseOnExec(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    static func reply(_ status: Int, _ reason: String, _ body: String, contentType: String = "text/plain; charset=utf-8",
                      extra: String = "", headOnly: Bool = false) -> [UInt8] {
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : bytes)
    }
}

/// CLOCK_MONOTONIC in milliseconds.
func monotonicMilliseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}
