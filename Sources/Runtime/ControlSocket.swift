import Foundation
import LinuxIO

/// The running instance's control endpoint: a Unix stream socket (mode 0600) under
/// /run/tapestry. One request per connection: a JSON line in, a JSON line out (or a stream,
/// for `capture`).
///
/// ```
///  clients ──▶ listener ──▶ reactor thread (epoll: listener + waiting connections)
///                              │  reads requests without blocking; each has a deadline
///                              │  refuses beyond `maxWaiting` and `maxActive`
///                              ▼
///                     one handler thread per complete request (at most `maxActive`)
/// ```
///
/// Every resource a client can hold is bounded:
/// - a connection that has not delivered its whole request line within
///   `requestDeadline` seconds (from accept) is answered with an error and closed, so a
///   client trickling one byte per second holds nothing for long;
/// - waiting connections cost an fd and a buffer, never a thread: the reactor reads them all;
///   beyond `maxWaiting` at once the one that has waited longest is dropped with a message
///   (not the newcomer: a flood of slow clients must not lock out a quick `status`);
/// - complete requests run on their own threads (a long `capture` stream does not hold up
///   `status` or `down`), at most `maxActive` at once; one more is refused with a message;
/// - a request line is at most `maxRequest` bytes; replies are sent with a `sendTimeout`.
/// Only root (or the daemon's own user) may connect, whatever the file mode says (peer
/// credentials, SO_PEERCRED) — and, with `ControlAccess.group`, members of that group
/// (the opt-in `tapestry` group: socket mode 0660), who may run only
/// `ControlAccess.groupCommands` (`ports` and `capture`: what Wireshark's extcap needs).
/// The datapath never waits for a client. All socket calls go through LinuxIO
/// (`UnixListener`, `UnixConnection`, `Epoll`).
public final class ControlServer {
    /// The socket file.
    public let path: String
    /// Answers a request: a reply to send, or nil when the handler streamed its own reply on
    /// the connection's fd (and returns when the stream ends).
    public typealias Handler = (ControlRequest, Int32) -> Data?

    /// The bounds; the defaults are what a running instance uses.
    public struct Limits: Sendable {
        /// Seconds from accept until the request line must be complete.
        public var requestDeadline: Double = 2
        /// Connections whose request is still arriving.
        public var maxWaiting: Int = 256
        /// Requests being handled at once (streams included).
        public var maxActive: Int = 16
        /// Bytes of one request line.
        public var maxRequest: Int = 65536
        /// Seconds one blocked send of a reply may take before the client is dropped.
        public var sendTimeout: Int = 2
        public init(requestDeadline: Double = 2, maxWaiting: Int = 256, maxActive: Int = 16, maxRequest: Int = 65536, sendTimeout: Int = 2) {
            self.requestDeadline = requestDeadline; self.maxWaiting = maxWaiting; self.maxActive = maxActive
            self.maxRequest = maxRequest; self.sendTimeout = sendTimeout
        }
    }

    public let limits: Limits
    /// Who besides root may connect, and what they may run.
    public let access: ControlAccess
    private let handler: Handler
    private let listener: UnixListener
    private let epoll: Epoll
    private let wake: EventFD
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let stopping = NSLock()
    private var stopped = false
    /// Requests being handled (handler threads alive).
    private let activeLock = NSLock()
    private var active = 0

    /// Connections whose request is still arriving; reactor thread only.
    private struct Waiting {
        let connection: UnixConnection
        var buffer: [UInt8]
        let deadline: Double
        /// A group member (not root): only `access.groupCommands`.
        let restricted: Bool
    }
    private var waiting: [UInt64: Waiting] = [:]
    private var nextID: UInt64 = 2
    private static let listenerToken: UInt64 = 0
    private static let wakeToken: UInt64 = 1

    /// The legacy bound, kept for callers: `Limits().maxRequest`.
    public static let maxRequest = 65536

    /// Binds the socket (replacing a stale file; the instance lock makes the name ours).
    /// - Throws: `RuntimeError` naming the path and errno (ENOSPC on a full /run, a path too
    ///   long for `sun_path`); nothing is left behind.
    /// - Parameter access: root only (mode 0600, the default), or also a group's members
    ///   (mode 0660, the file's group set to it) for a few commands.
    public init(path: String, limits: Limits = Limits(), access: ControlAccess = .rootOnly, handler: @escaping Handler) throws {
        self.path = path
        self.limits = limits
        self.access = access
        self.handler = handler
        do {
            listener = try UnixListener(path: path, mode: access.group == nil ? 0o600 : 0o660, group: access.group, backlog: 128)
            epoll = try Epoll()
            wake = try EventFD()
            try epoll.add(listener.fd, data: ControlServer.listenerToken)
            try epoll.add(wake.fd, data: ControlServer.wakeToken)
        } catch {
            throw RuntimeError("cannot open the control socket: \(error)")
        }
    }

    deinit { listener.close(removing: false) }

    /// Starts the reactor thread.
    public func start() {
        let t = Thread { [self] in
            self.serve()
            self.done.signal()
        }
        t.name = "tapestry-control"
        thread = t
        t.start()
    }

    /// Stops accepting, closes waiting connections and removes the socket file. Requests
    /// already being handled finish on their own threads. Idempotent.
    public func stop() {
        stopping.lock()
        let first = !stopped
        stopped = true
        stopping.unlock()
        guard first else { return }
        wake.signal()
        if thread != nil { done.wait(); thread = nil }
        listener.close(removing: true)
    }

    /// Requests being handled right now (for tests and `status`).
    public var activeRequests: Int { activeLock.withLock { active } }

    private var isStopped: Bool { stopping.withLock { stopped } }

    private func serve() {
        var events = [EpollEvent](repeating: EpollEvent(), count: 64)
        var acceptPausedUntil = 0.0
        while !isStopped {
            let now = monotonic()
            if acceptPausedUntil > 0 && now >= acceptPausedUntil {
                acceptPausedUntil = 0
                try? epoll.add(listener.fd, data: ControlServer.listenerToken)
            }
            let nearest = waiting.values.map(\.deadline).min() ?? (now + 1)
            let timeout = Int32(max(0, min(1000, (min(nearest, acceptPausedUntil > 0 ? acceptPausedUntil : nearest) - now) * 1000)).rounded(.up))
            let n = (try? events.withUnsafeMutableBufferPointer { try epoll.wait(into: $0, timeoutMilliseconds: timeout) }) ?? 0
            for e in events.prefix(n) {
                switch e.data {
                case ControlServer.wakeToken: wake.drain()
                case ControlServer.listenerToken:
                    if !acceptClients() {
                        // Out of fds: stop polling the listener for a moment instead of spinning.
                        try? epoll.remove(listener.fd)
                        acceptPausedUntil = monotonic() + 0.1
                    }
                default: readRequest(e.data)
                }
            }
            let later = monotonic()
            for (id, w) in waiting where w.deadline <= later {
                finish(id, refusing: "request not complete within \(ControlServer.seconds(limits.requestDeadline)) (the deadline); send one JSON line such as {\"command\":\"status\"}")
            }
        }
        for id in Array(waiting.keys) { finish(id, refusing: nil) }
    }

    /// Accepts every waiting client. False when accept failed for lack of fds.
    private func acceptClients() -> Bool {
        while true {
            let c: UnixConnection?
            do { c = try listener.accept() } catch { return false }
            guard let conn = c else { return true }
            // Only root may talk to the switch, whatever the file mode says — and members of
            // the access group, for its few commands (checked once the request is read).
            var restricted = false
            if let cred = conn.peerCredentials(), cred.uid != 0, cred.uid != Processes.effectiveUser {
                guard let g = access.group, cred.gid == g || conn.peerGroups()?.contains(g) == true else {
                    ControlServer.refuse(conn, "permission denied: only root may control tapestry"
                                         + (access.group == nil ? "" : " (members of group '\(access.groupName)' may run \(access.commandList))"))
                    continue
                }
                restricted = true
            }
            if waiting.count >= limits.maxWaiting, let oldest = waiting.min(by: { $0.value.deadline < $1.value.deadline })?.key {
                // Full: the connection that has waited longest goes, so a flood of slow
                // clients cannot lock out a client whose request arrives at once.
                finish(oldest, refusing: "too many control connections (\(limits.maxWaiting) still sending their request, the limit): this one waited longest and is dropped; try again")
            }
            let id = nextID
            nextID += 1
            do { try epoll.add(conn.fd, data: id) } catch {
                ControlServer.refuse(conn, "internal error: \(error)")
                continue
            }
            waiting[id] = Waiting(connection: conn, buffer: [], deadline: monotonic() + limits.requestDeadline, restricted: restricted)
        }
    }

    /// Reads what a waiting connection sent; dispatches a complete line.
    private func readRequest(_ id: UInt64) {
        guard var w = waiting[id] else { return }
        let result = w.connection.receive(appendingTo: &w.buffer, limit: limits.maxRequest + 1 - w.buffer.count)
        waiting[id] = w
        let ended: Bool
        switch result {
        case .wouldBlock: return
        case .bytes(let n): ended = n == 0
        case .failed: finish(id, refusing: nil); return
        }
        switch ControlRequestFraming.of(w.buffer, ended: ended, limit: limits.maxRequest) {
        case .incomplete: return
        case .tooLarge: finish(id, refusing: "request too large (limit \(limits.maxRequest) bytes)")
        // A closed sending side without a newline: what the client sent is the request.
        case .line(let line): dispatch(id, line: line)
        }
    }

    private func dispatch(_ id: UInt64, line: ArraySlice<UInt8>) {
        guard let req = ControlRequest.decode(line: line) else {
            finish(id, refusing: "malformed request: expected one JSON object such as {\"command\":\"status\"}")
            return
        }
        if waiting[id]?.restricted == true && !access.groupCommands.contains(req.command) {
            finish(id, refusing: "permission denied: members of group '\(access.groupName)' may run \(access.commandList); '\(req.command)' needs root")
            return
        }
        guard let w = waiting.removeValue(forKey: id) else { return }
        try? epoll.remove(w.connection.fd)
        let admitted = activeLock.withLock { () -> Bool in
            guard active < limits.maxActive else { return false }
            active += 1
            return true
        }
        guard admitted else {
            ControlServer.refuse(w.connection, "busy: \(limits.maxActive) requests in progress (the limit); try again")
            return
        }
        let conn = w.connection
        conn.setBlocking(true)
        conn.setTimeouts(receiveSeconds: limits.sendTimeout, sendSeconds: limits.sendTimeout)
        let t = Thread { [self] in
            if let data = self.handler(req, conn.fd) { ControlServer.reply(conn, data) }
            conn.close()
            self.activeLock.withLock { self.active -= 1 }
        }
        t.name = "tapestry-ctl-req"
        t.start()
    }

    /// Drops a waiting connection, first sending `message` as an error reply when given.
    private func finish(_ id: UInt64, refusing message: String?) {
        guard let w = waiting.removeValue(forKey: id) else { return }
        try? epoll.remove(w.connection.fd)
        if let m = message { ControlServer.refuse(w.connection, m) }
        w.connection.close()
    }

    /// Sends an error line without waiting (a short line fits the socket buffer) and closes.
    private static func refuse(_ conn: UnixConnection, _ message: String) {
        conn.setBlocking(false)
        var out = [UInt8](error(message))
        out.append(UInt8(ascii: "\n"))
        conn.send(out)
        conn.close()
    }

    private static func reply(_ conn: UnixConnection, _ data: Data) {
        var out = [UInt8](data)
        out.append(UInt8(ascii: "\n"))
        conn.send(out)
    }

    private static func seconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }

    private func monotonic() -> Double { Double(monotonicNanoseconds()) / 1e9 }

    public static func error(_ message: String) -> Data {
        (try? JSON.encoder().encode(ControlError(error: message))) ?? Data("{\"error\":\"internal\"}".utf8)
    }
}

/// Who besides root may use a control socket.
public struct ControlAccess: Sendable, Equatable {
    /// The group whose members may connect (nil: root only).
    public var group: UInt32?
    /// Its name, for messages.
    public var groupName: String
    /// The commands its members may run; anything else is refused with a message.
    public var groupCommands: Set<String>

    public init(group: UInt32?, groupName: String, groupCommands: Set<String>) {
        self.group = group; self.groupName = groupName; self.groupCommands = groupCommands
    }

    /// Root (and the daemon's own user) only: socket mode 0600.
    public static let rootOnly = ControlAccess(group: nil, groupName: "", groupCommands: [])

    /// The opt-in `tapestry` group (README, "Wireshark without root"): its members may list
    /// ports (`ports`) and capture (`capture`), and nothing more — no `status`, `fdb`,
    /// `trace`, `reload`, `vm` or `down`. Used when the group exists on the host
    /// (`groupadd --system tapestry`); otherwise root only.
    public static func tapestryGroup() -> ControlAccess {
        guard let gid = TapestryGroup.id() else { return .rootOnly }
        return ControlAccess(group: gid, groupName: TapestryGroup.name, groupCommands: ["ports", "capture"])
    }

    /// `ports and capture`.
    var commandList: String {
        let list = groupCommands.sorted(by: { ($0 == "ports" ? 0 : 1, $0) < ($1 == "ports" ? 0 : 1, $1) })
        return list.count > 1 ? list.dropLast().joined(separator: ", ") + " and " + list.last! : list.joined()
    }
}

/// The opt-in group whose members may list ports and capture without root.
public enum TapestryGroup {
    /// `tapestry`.
    public static let name = "tapestry"
    /// Its group ID, when the group exists (getgrnam(3); /etc/group or NSS).
    public static func id() -> UInt32? {
        guard let g = getgrnam(name) else { return nil }
        return g.pointee.gr_gid
    }
}

/// Most bytes of one reply the client reads (an `fdb` of a million entries is ~150 MB).
let maxReply = 512 << 20

/// Sends one request to a running instance and returns its raw JSON reply.
public func controlRequest(name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Data {
    try controlRequest(socket: RunDirectory.socket(name), name: name, request, timeout: timeout)
}

/// Sends one request to the control socket at `path` (`name` is for messages).
/// - Throws: `RuntimeError` with the daemon's error message, or saying it is not running.
public func controlRequest(socket path: String, name: String, _ request: ControlRequest, timeout: Int = 10) throws -> Data {
    let conn = try openControlStream(socket: path, name: name, request, timeout: timeout)
    defer { conn.close() }
    let reply = conn.receiveUntilEnd(limit: maxReply)
    if let err = try? JSON.decoder().decode(ControlError.self, from: Data(reply)) { throw RuntimeError(err.error) }
    guard !reply.isEmpty else { throw RuntimeError("topology '\(name)' closed the control socket without a reply (timeout \(timeout) s)") }
    return Data(reply)
}

/// Connects to a running instance, sends `request`, and returns the connection for the
/// caller to read the reply (or a stream, for `capture`) from.
public func openControlStream(name: String, _ request: ControlRequest, timeout: Int = 10) throws -> UnixConnection {
    try openControlStream(socket: RunDirectory.socket(name), name: name, request, timeout: timeout)
}

public func openControlStream(socket path: String, name: String, _ request: ControlRequest, timeout: Int = 10) throws -> UnixConnection {
    let conn: UnixConnection
    do { conn = try UnixConnection.connect(path: path, receiveTimeoutSeconds: timeout) } catch let e as SystemError {
        throw RuntimeError("topology '\(name)' is not running (cannot connect to \(path): \(e.reason))")
    }
    conn.setTimeouts(receiveSeconds: 0, sendSeconds: timeout)
    var out = [UInt8](try JSON.encoder().encode(request))
    out.append(UInt8(ascii: "\n"))
    guard conn.send(out) else {
        conn.close()
        throw RuntimeError("topology '\(name)' did not take the request (\(path))")
    }
    return conn
}
