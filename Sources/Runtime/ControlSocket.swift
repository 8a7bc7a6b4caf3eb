import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Fills a `sockaddr_un` for `path`; nil when the path does not fit `sun_path`.
func unixAddress(_ path: String) -> sockaddr_un? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard bytes.count < capacity else { return nil }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    return addr
}

/// `struct ucred` (SO_PEERCRED), which Glibc imports only under _GNU_SOURCE.
struct PeerCredentials { var pid: Int32 = 0; var uid: UInt32 = 0; var gid: UInt32 = 0 }

/// The running instance's control endpoint: a Unix stream socket (mode 0600) under
/// /run/tapestry. One request per connection: a JSON line in, a JSON line out.
///
/// Served on its own thread so a slow client can never stall forwarding; each connection
/// gets a 2 s receive timeout and requests are capped at 64 KiB, so a client that sends
/// nothing or too much gets an error, not a hung server. Each connection is served on its
/// own thread, so a long-running stream (`capture`) does not hold up `status` or `down`.
public final class ControlServer {
    public let path: String
    private var listenFD: Int32 = -1
    private var thread: Thread?
    /// Answers a request: a reply to send, or nil when the handler streamed its own reply on
    /// the connection's fd (and returns when the stream ends).
    public typealias Handler = (ControlRequest, Int32) -> Data?
    private let handler: Handler
    private let done = DispatchSemaphore(value: 0)
    private var stopped = false
    static let maxRequest = 65536

    public init(path: String, handler: @escaping Handler) throws {
        self.path = path
        self.handler = handler
        guard var addr = unixAddress(path) else { throw RuntimeError("control socket path too long: \(path)") }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RuntimeError("socket: \(String(cString: strerror(errno)))") }
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0 else {
            let e = errno; close(fd)
            throw RuntimeError("bind \(path): \(String(cString: strerror(e)))")
        }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else {
            let e = errno; close(fd)
            throw RuntimeError("listen \(path): \(String(cString: strerror(e)))")
        }
        listenFD = fd
    }

    public func start() {
        let t = Thread { [unowned self] in self.serve() }
        t.name = "tapestry-control"
        thread = t
        t.start()
    }

    public func stop() {
        guard listenFD >= 0 else { return }
        stopped = true
        shutdown(listenFD, Int32(SHUT_RDWR))
        if thread != nil { done.wait(); thread = nil }
        close(listenFD)
        listenFD = -1
        unlink(path)
    }

    private func serve() {
        defer { done.signal() }
        while !stopped {
            let c = accept(listenFD, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            // The thread keeps the server alive until its client is done.
            let t = Thread { [self] in
                self.handle(c)
                close(c)
            }
            t.name = "tapestry-control-client"
            t.start()
        }
    }

    private func handle(_ fd: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // Only root may talk to the switch, whatever the file mode says.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var cred = PeerCredentials()
        var len = socklen_t(MemoryLayout<PeerCredentials>.size)
        if getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, cred.uid != 0, cred.uid != geteuid() {
            reply(fd, ControlServer.error("permission denied: only root may control tapestry"))
            return
        }
        var request = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while request.count <= ControlServer.maxRequest, !request.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request += chunk[0..<n]
        }
        if request.count > ControlServer.maxRequest {
            reply(fd, ControlServer.error("request too large (limit \(ControlServer.maxRequest) bytes)"))
            return
        }
        let line = request.split(separator: UInt8(ascii: "\n"), maxSplits: 1).first.map(Array.init) ?? []
        guard let req = try? JSON.decoder().decode(ControlRequest.self, from: Data(line)) else {
            reply(fd, ControlServer.error("malformed request: expected one JSON object such as {\"command\":\"status\"}"))
            return
        }
        if let data = handler(req, fd) { reply(fd, data) }
    }

    private func reply(_ fd: Int32, _ data: Data) {
        var out = data
        out.append(UInt8(ascii: "\n"))
        out.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { return }
                off += n
            }
        }
    }

    public static func error(_ message: String) -> Data {
        (try? JSON.encoder().encode(ControlError(error: message))) ?? Data("{\"error\":\"internal\"}".utf8)
    }
}

/// Sends one request to a running instance and returns its raw JSON reply.
public func controlRequest(name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Data {
    try controlRequest(socket: RunDirectory.socket(name), name: name, request, timeout: timeout)
}

/// Sends one request to the control socket at `path` (`name` is for messages).
public func controlRequest(socket path: String, name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Data {
    let fd = try openControlStream(socket: path, name: name, request, timeout: timeout)
    defer { close(fd) }
    var reply = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        reply += chunk[0..<n]
    }
    if let err = try? JSON.decoder().decode(ControlError.self, from: Data(reply)) { throw RuntimeError(err.error) }
    guard !reply.isEmpty else { throw RuntimeError("topology '\(name)' closed the control socket without a reply") }
    return Data(reply)
}

/// Connects to a running instance, sends `request`, and returns the connected socket for the
/// caller to read the reply (or a stream, for `capture`) from. The caller closes it.
public func openControlStream(name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Int32 {
    try openControlStream(socket: RunDirectory.socket(name), name: name, request, timeout: timeout)
}

public func openControlStream(socket path: String, name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Int32 {
    guard var addr = unixAddress(path) else { throw RuntimeError("control socket path too long: \(path)") }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw RuntimeError("socket: \(String(cString: strerror(errno)))") }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw RuntimeError("topology '\(name)' is not running (cannot connect to \(path): \(String(cString: strerror(e))))")
    }
    var out = try JSON.encoder().encode(request)
    out.append(UInt8(ascii: "\n"))
    _ = out.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    return fd
}
