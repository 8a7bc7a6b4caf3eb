import CVMSpawn
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One line from QEMU's QMP socket, classified. QMP is newline-delimited JSON: a greeting,
/// then for each command exactly one `return` or `error` (carrying the command's `id`), with
/// asynchronous events (`{"event": …}`) interleaved anywhere.
public enum QMPMessage {
    case greeting(version: String)
    case success(id: String?, value: Any)
    case failure(id: String?, errorClass: String, description: String)
    case event(name: String)

    /// Parses one line; throws `QMPError.protocolError` for anything that is not a QMP message.
    public static func parse(_ line: String) throws -> QMPMessage {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)), let dict = object as? [String: Any] else {
            throw QMPError.protocolError("not a JSON object: \(line.prefix(200))")
        }
        let id = dict["id"] as? String
        if let value = dict["return"] { return .success(id: id, value: value) }
        if let error = dict["error"] as? [String: Any] {
            return .failure(id: id, errorClass: error["class"] as? String ?? "GenericError", description: error["desc"] as? String ?? "")
        }
        if let event = dict["event"] as? String { return .event(name: event) }
        if let qmp = dict["QMP"] as? [String: Any] {
            let v = (qmp["version"] as? [String: Any])?["qemu"] as? [String: Any]
            let parts = ["major", "minor", "micro"].map { (v?[$0] as? NSNumber)?.stringValue ?? "?" }
            return .greeting(version: parts.joined(separator: "."))
        }
        throw QMPError.protocolError("unknown QMP message: \(line.prefix(200))")
    }
}

/// Errors of the QMP client.
public enum QMPError: Error, CustomStringConvertible, Equatable {
    case connect(path: String, errno: Int32)
    case timeout(path: String, waitingFor: String)
    /// QEMU closed the socket (it exited, or `quit` was executed).
    case closed(path: String)
    case protocolError(String)
    case commandFailed(command: String, errorClass: String, description: String)

    public var description: String {
        switch self {
        case let .connect(path, e): return "QMP \(path): cannot connect: \(String(cString: strerror(e)))"
        case let .timeout(path, what): return "QMP \(path): no answer to \(what) in time"
        case let .closed(path): return "QMP \(path): QEMU closed the connection"
        case let .protocolError(m): return "QMP: \(m)"
        case let .commandFailed(command, cls, desc): return "QMP \(command): \(cls): \(desc)"
        }
    }
}

/// A minimal client for QEMU's QMP socket: connect, greeting, `qmp_capabilities`, then
/// synchronous commands; asynchronous events are skipped.
///
/// QEMU serves ONE QMP client at a time (a second connection gets no greeting until the first
/// closes), so this client is meant to be short-lived: connect, run a command or two, close.
/// The supervisor never holds a connection between operations, which keeps the socket free
/// for an operator's `socat - UNIX:…qmp`. Not thread-safe: one owner.
public final class QMPClient {
    public let path: String
    public let timeout: TimeInterval
    /// The QEMU version from the greeting, e.g. "7.2.22".
    public private(set) var qemuVersion = ""
    private var fd: Int32 = -1
    private var buffer = [UInt8]()
    private var nextID = 1

    /// Connects to `path`, reads the greeting and negotiates capabilities (leaving the
    /// capabilities-negotiation mode in which only `qmp_capabilities` is accepted).
    /// `timeout` bounds each step.
    public init(path: String, timeout: TimeInterval = 5) throws {
        self.path = path
        self.timeout = timeout
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw QMPError.connect(path: path, errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close()
            throw QMPError.connect(path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close()
            throw QMPError.connect(path: path, errno: e)
        }
        do {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                if case .greeting(let v) = try QMPMessage.parse(try readLine(until: deadline, waitingFor: "the greeting")) {
                    qemuVersion = v
                    break
                }
            }
            _ = try execute("qmp_capabilities")
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes the connection (idempotent).
    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// Runs `command` with `arguments` and returns its `return` value (usually a dictionary;
    /// `{}` for commands without a result). Events received meanwhile are skipped.
    /// Throws `commandFailed` for an `error` answer, `timeout`, or `closed`.
    @discardableResult
    public func execute(_ command: String, arguments: [String: Any]? = nil, timeout: TimeInterval? = nil) throws -> Any {
        try execute(command, arguments: arguments, timeout: timeout, passing: nil)
    }

    private func execute(_ command: String, arguments: [String: Any]?, timeout: TimeInterval?, passing descriptor: Int32?) throws -> Any {
        guard fd >= 0 else { throw QMPError.closed(path: path) }
        let id = "tapestry-\(nextID)"
        nextID += 1
        var request: [String: Any] = ["execute": command, "id": id]
        if let arguments { request["arguments"] = arguments }
        var data = try JSONSerialization.data(withJSONObject: request)
        data.append(UInt8(ascii: "\n"))
        if let descriptor {
            // The descriptor rides on the first bytes of the command (SCM_RIGHTS); QEMU
            // attaches it to the command that those bytes belong to.
            let sent = data.withUnsafeBytes { cvm_send_with_fd(fd, $0.baseAddress, UInt($0.count), descriptor) }
            guard sent > 0 else { throw QMPError.closed(path: path) }
            data.removeFirst(Int(sent))
        }
        if !data.isEmpty { try writeAll(data) }
        let deadline = Date().addingTimeInterval(timeout ?? self.timeout)
        while true {
            switch try QMPMessage.parse(try readLine(until: deadline, waitingFor: command)) {
            case let .success(answerID, value) where answerID == id || answerID == nil:
                return value
            case let .failure(answerID, cls, desc) where answerID == id || answerID == nil:
                throw QMPError.commandFailed(command: command, errorClass: cls, description: desc)
            default:
                continue  // events, or a late answer to an earlier command
            }
        }
    }

    /// `query-status`: the run state ("running", "paused", "shutdown", …).
    public func queryStatus() throws -> (status: String, running: Bool) {
        let value = try execute("query-status") as? [String: Any] ?? [:]
        return (value["status"] as? String ?? "unknown", value["running"] as? Bool ?? false)
    }

    /// `system_powerdown`: presses the ACPI power button; the guest decides what to do.
    public func systemPowerdown() throws { try execute("system_powerdown") }

    /// `getfd`: hands QEMU a copy of descriptor `descriptor` under `name` (SCM_RIGHTS on
    /// this connection), for a later `fd:NAME` URI (`migrate`, `migrate-incoming`). The
    /// caller keeps (and closes) its own copy.
    public func sendDescriptor(_ descriptor: Int32, name: String) throws {
        _ = try execute("getfd", arguments: ["fdname": name], timeout: nil, passing: descriptor)
    }

    /// `migrate`: starts a live migration to `uri` (`tcp:HOST:PORT`, `fd:NAME`, …) and returns
    /// at once; follow it with `queryMigrate`. QEMU's default stop-and-copy target
    /// (`downtime-limit`, 300 ms) applies.
    public func migrate(uri: String) throws { try execute("migrate", arguments: ["uri": uri]) }

    /// `migrate-incoming`: a QEMU started with `-incoming defer` receives its migration from
    /// `uri` (`fd:NAME` for a connected socket handed over with `sendDescriptor`).
    public func migrateIncoming(uri: String) throws { try execute("migrate-incoming", arguments: ["uri": uri]) }

    /// `query-migrate`: the state of this QEMU's outgoing (or incoming) migration.
    public func queryMigrate() throws -> MigrationInfo {
        MigrationInfo(try execute("query-migrate") as? [String: Any] ?? [:])
    }

    /// `migrate_cancel`: abandons an outgoing migration; the guest keeps running here.
    public func cancelMigration() throws { try execute("migrate_cancel") }

    /// `cont`: resumes a paused guest (a destination started with `-S`, a source whose
    /// migration finished but must stay).
    public func cont() throws { try execute("cont") }

    /// `quit`: QEMU exits at once (status 0). The connection closing before the answer
    /// arrives counts as success.
    public func quit() throws {
        do { try execute("quit") } catch QMPError.closed {}
    }

    private func writeAll(_ data: Data) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw QMPError.closed(path: path)
                }
                offset += n
            }
        }
    }

    /// The next newline-terminated line, waiting at most until `deadline`.
    private func readLine(until deadline: Date, waitingFor what: String) throws -> String {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                if line.allSatisfy(\.isWhitespace) { continue }
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw QMPError.timeout(path: path, waitingFor: what) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32(max(1, min(remaining * 1000, 60_000))))
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { continue }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw QMPError.closed(path: path) }
            buffer += chunk[0..<n]
        }
    }
}

/// What `query-migrate` says about a live migration (QEMU's MigrationInfo, qapi/migration.json).
public struct MigrationInfo: Sendable, Equatable {
    /// `none`, `setup`, `active`, `pre-switchover`, `device`, `completed`, `failed`,
    /// `cancelling`, `cancelled`, … (absent before any migration: `none`).
    public var status: String
    /// Milliseconds since the migration started (total, once completed).
    public var totalTimeMilliseconds: Int?
    /// Milliseconds QEMU had the guest stopped for the final copy (once completed).
    public var downtimeMilliseconds: Int?
    /// Bytes of guest RAM sent so far.
    public var transferredBytes: Int?
    /// Why it failed (`error-desc`).
    public var error: String?

    /// Parses `query-migrate`'s return value.
    public init(_ d: [String: Any]) {
        status = d["status"] as? String ?? "none"
        totalTimeMilliseconds = (d["total-time"] as? NSNumber)?.intValue
        downtimeMilliseconds = (d["downtime"] as? NSNumber)?.intValue
        transferredBytes = ((d["ram"] as? [String: Any])?["transferred"] as? NSNumber)?.intValue
        error = d["error-desc"] as? String
    }

    /// A value (tests).
    public init(status: String, totalTimeMilliseconds: Int? = nil, downtimeMilliseconds: Int? = nil, transferredBytes: Int? = nil, error: String? = nil) {
        self.status = status; self.totalTimeMilliseconds = totalTimeMilliseconds; self.downtimeMilliseconds = downtimeMilliseconds
        self.transferredBytes = transferredBytes; self.error = error
    }

    /// Whether the migration has ended (completed, failed or cancelled).
    public var isFinished: Bool { ["completed", "failed", "cancelled"].contains(status) }
}
