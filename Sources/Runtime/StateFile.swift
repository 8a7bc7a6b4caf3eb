import Foundation

/// Where a running topology keeps its files: `/run/tapestry/NAME.{sock,state,log}`.
///
/// The directory is root-only (0700) and the socket 0600: only root may drive the switch.
public enum RunDirectory {
    public static let path = "/run/tapestry"
    public static func socket(_ name: String) -> String { "\(path)/\(name).sock" }
    public static func state(_ name: String) -> String { "\(path)/\(name).state" }
    public static func log(_ name: String) -> String { "\(path)/\(name).log" }

    public static func ensure() throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(path, 0o700)
    }

    /// Names of topologies with a state file (running, or crashed and not yet cleaned).
    public static func knownInstances() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return files.filter { $0.hasSuffix(".state") }.map { String($0.dropLast(6)) }.sorted()
    }
}

/// What a running instance created, written *before* it creates anything, so that the next
/// `up` (or `down`) can remove the leftovers of an instance that was killed with -9.
public struct InstanceState: Codable, Equatable {
    public var name: String
    public var file: String
    public var pid: Int32
    /// Start time of the process (from /proc/PID/stat), to tell a reused pid apart.
    public var processStart: UInt64
    /// Network namespaces this instance creates and owns.
    public var namespaces: [String]
    /// Host-side links it creates (removed if they survive the process).
    public var links: [String]
    /// Its QEMU guests: a QEMU that outlives a crashed instance is found by its pid file
    /// (`VMSupervisor.killStale`) and killed, which also removes its TAPs.
    public var vms: [String]?
    /// Uplink NICs whose GRO was on and that this instance turns off while it runs: a crash
    /// leaves them off, so the next `up` or `down` turns GRO back on.
    public var groOff: [String]?
    /// Helper processes it started inside its netns guests (DHCP clients): killed after a
    /// crash, since a process inside a namespace outlives `ip netns delete`.
    public var dhcpClients: [RecordedProcess]?

    public func write() throws {
        let data = try JSONEncoder().encode(self)
        let path = RunDirectory.state(name)
        let tmp = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw RuntimeError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    public static func read(name: String) -> InstanceState? {
        guard let data = FileManager.default.contents(atPath: RunDirectory.state(name)) else { return nil }
        return try? JSONDecoder().decode(InstanceState.self, from: data)
    }

    /// True while the recorded process is still this instance.
    public var isAlive: Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        return processStartTime(pid) == processStart
    }
}

/// The start time (clock ticks since boot) of a process, field 22 of /proc/PID/stat; 0 when
/// the process is gone or a zombie (killed, not yet reaped: it holds nothing any more).
public func processStartTime(_ pid: Int32) -> UInt64 {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    if fields.first == "Z" || fields.first == "X" { return 0 }
    // fields[0] is the state (field 3), so field 22 is fields[19].
    return fields.count > 19 ? UInt64(fields[19]) ?? 0 : 0
}

/// A failure of the runtime, with a message meant for the admin.
public struct RuntimeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}
