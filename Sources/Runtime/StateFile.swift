import Foundation
import LinuxIO
import Topology
import VhostUser

/// Which running instance: a topology name, plus the host once a topology spans hosts
/// (the overlay's `up FILE --host H`). At most one instance per identity runs on a machine
/// (`InstanceLock`).
///
/// Its files are named by `stem`: `NAME`, or `NAME@HOST`. Both parts follow the topology
/// file's own rules (`NameRules`), so an identity built from the command line can never
/// name a path outside the run directory (`down --name ../../tmp/x` is refused before any
/// file is read).
public struct InstanceIdentity: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var host: String?

    /// - Throws: `RuntimeError` naming the option (`--name`, `--host`) and the rule broken.
    public init(name: String, host: String? = nil) throws {
        if let p = NameRules.problem(with: name, as: .topology) { throw RuntimeError("--name: \(p)") }
        if let h = host, let p = NameRules.problem(with: h, as: .host) { throw RuntimeError("--host: \(p)") }
        self.name = name
        self.host = host
    }

    /// Parses a stem (`NAME` or `NAME@HOST`), e.g. a run-directory file name; nil if invalid.
    public init?(stem: String) {
        let parts = stem.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let id = try? InstanceIdentity(name: parts[0], host: parts.count > 1 ? parts[1] : nil) else { return nil }
        self = id
    }

    /// `NAME` or `NAME@HOST`: names the instance's files.
    public var stem: String { host.map { "\(name)@\($0)" } ?? name }
    public var description: String { host.map { "topology '\(name)' on host '\($0)'" } ?? "topology '\(name)'" }
}

/// Where a running instance keeps its files: `/run/tapestry/STEM.{sock,state,lock}`, and its
/// logs under `/var/log/tapestry/STEM/` (kept after `down`).
///
/// The run directory is root-only (0700) and the socket 0600: only root may drive the switch.
/// Functions take the stem (`InstanceIdentity.stem`; the topology name for a single host).
public enum RunDirectory {
    /// `/run/tapestry` (SPEC.md §3).
    public static let path = "/run/tapestry"
    /// `/var/log/tapestry`: per instance a directory with `daemon.log` and the VMs' logs.
    public static let logRoot = "/var/log/tapestry"
    public static func socket(_ stem: String) -> String { "\(path)/\(stem).sock" }
    public static func state(_ stem: String) -> String { "\(path)/\(stem).state" }
    /// The instance lock (`InstanceLock`).
    public static func lock(_ stem: String) -> String { "\(path)/\(stem).lock" }
    /// The daemon's log: timestamped lines, appended across runs, kept after `down`.
    public static func log(_ stem: String) -> String { "\(logRoot)/\(stem)/daemon.log" }
    /// The instance's vhost-user sockets, `GUEST.ethN.sock`: QEMU guests' (QEMU
    /// serves them) and `kind: vhost-user` guests' in server mode (the switch serves them).
    public static func vhostDirectory(_ stem: String) -> String { "\(path)/\(stem).vhost" }

    /// Creates the run directory: 0700 root, or 0750 with group `tapestry` when that group
    /// exists (its members may reach the control sockets, which admit them for `ports` and
    /// `capture` only; state and lock files stay 0600). Others get search permission (x, never
    /// read) while some instance serves vhost-user sockets to non-root frontends
    /// (`updateTraversal`).
    /// - Throws: `RuntimeError` naming the path and errno.
    public static func ensure() throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RuntimeError("cannot create \(path): \((error as NSError).underlyingErrorDescription)")
        }
        Files.restrict(path, group: TapestryGroup.id(), groupMode: 0o750, ownerOnlyMode: 0o700)
        updateTraversal()
    }

    /// Sets the run directory's mode: 0700 (0750 when it belongs to group `tapestry`), plus
    /// search permission for others (0711 / 0751) exactly while some `STEM.vhost` directory
    /// inside is itself reachable by others — a vhost-user guest whose sockets a non-root
    /// frontend (libvirt's QEMU user, a DPDK application) must reach by path. Search alone
    /// lists nothing; every file inside keeps its own mode (control sockets 0600/0660,
    /// state and lock files 0600, the `.vms` and DHCP directories root's), so it opens
    /// nothing else. Two instances changing it at once may leave the bit set until the next
    /// `up` or `down` looks again.
    public static func updateTraversal() {
        let grouped = TapestryGroup.id().map { Files.groupID(of: path) == $0 } == true
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let others = files.contains { $0.hasSuffix(".vhost") && VhostSocketDirectory.isReachableByOthers("\(path)/\($0)") }
        Files.setMode(path, (grouped ? 0o750 : 0o700) | (others ? 0o001 : 0))
    }

    /// Stems of instances with a state file (running, or crashed and not yet cleaned).
    public static func knownInstances() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return files.filter { $0.hasSuffix(".state") && !$0.hasPrefix(".") }.map { String($0.dropLast(6)) }
            .filter { InstanceIdentity(stem: $0) != nil }.sorted()
    }
}

extension NSError {
    /// The POSIX reason behind a Foundation file error ("No space left on device"), else its text.
    var underlyingErrorDescription: String {
        if let u = userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return errorText(Int32(u.code))
        }
        return localizedDescription
    }
}

/// The lock that makes an instance the only one of its identity (`/run/tapestry/STEM.lock`,
/// flock(2)).
///
/// Taken before anything is touched (no state file, no cleanup of a predecessor, no log
/// truncated) and held for the instance's life: the daemon keeps the fd; a crashed daemon's
/// lock is free again at once. A contender that finds it held touches nothing and says who
/// holds it. `down` takes it too before cleaning up after a crashed instance, so it can never
/// remove what a starting instance just created.
public final class InstanceLock {
    public let identity: InstanceIdentity
    let file: FileLock

    private init(identity: InstanceIdentity, file: FileLock) { self.identity = identity; self.file = file }

    /// The fd to hand to a spawned daemon (dup2 onto a fixed number; see `adopt`).
    public var fd: Int32 { file.fd }

    /// Takes the lock, creating the run directory if needed.
    /// - Throws: `RuntimeError` "already running or starting" when another process holds it
    ///   (with its pid and file when its state file tells), or naming the path and errno when
    ///   the lock file cannot be created (a full /run).
    public static func acquire(_ identity: InstanceIdentity) throws -> InstanceLock {
        try RunDirectory.ensure()
        let path = RunDirectory.lock(identity.stem)
        var lock: FileLock?
        // A daemon killed a moment ago may still hold it: its threads close the lock's fd
        // last, after /proc already shows the process as a zombie. When the recorded owner is
        // gone, wait a little for the kernel to finish; a live or starting owner is final.
        let deadline = monotonicSeconds() + 3
        while true {
            do { lock = try FileLock.tryAcquire(path: path) } catch { throw RuntimeError("cannot lock \(identity): \(error)") }
            guard lock == nil, let s = InstanceState.read(stem: identity.stem), !s.isAlive, monotonicSeconds() < deadline else { break }
            Processes.pause(microseconds: 20_000)
        }
        guard let l = lock else {
            var who = ""
            if let s = InstanceState.read(stem: identity.stem), s.isAlive { who = " (pid \(s.pid), from \(s.file))" }
            throw RuntimeError("\(identity) is already running or starting\(who): \(path) is locked by another tapestry process; "
                               + "stop it with 'tapestry down --name \(identity.name)'")
        }
        return InstanceLock(identity: identity, file: l)
    }

    /// Adopts the lock a parent took and passed as `fd` (see `Up --detach`).
    public static func adopt(_ identity: InstanceIdentity, fd: Int32) throws -> InstanceLock {
        do { return InstanceLock(identity: identity, file: try FileLock.adopt(fd: fd, path: RunDirectory.lock(identity.stem))) }
        catch { throw RuntimeError("cannot take over the lock of \(identity): \(error)") }
    }

    /// Ends the instance's claim: removes the lock file (while holding it) and unlocks.
    public func release() { file.release(removing: true) }

    /// Closes this process's copy only (a daemon it spawned keeps the lock).
    public func handOver() { file.closeDescriptor() }
}

/// What a running instance created, written *before* it creates anything, so that the next
/// `up` (or `down`) can remove the leftovers of an instance that was killed with -9.
public struct InstanceState: Codable, Equatable {
    /// The topology name (the stem is derived: `name` or `name@host`).
    public var name: String
    /// The host part of the identity, once topologies span hosts.
    public var host: String?
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
    /// Written by earlier versions, which turned GRO off on uplink NICs while they ran: the
    /// next `up` or `down` after such an instance crashed turns it back on. Never written now
    /// (GRO stays on: GRO'd frames arrive described by their virtio-net header).
    public var groOff: [String]?
    /// Helper processes it started inside its netns guests (DHCP clients): killed after a
    /// crash, since a process inside a namespace outlives `ip netns delete`.
    public var dhcpClients: [RecordedProcess]?
    /// Its vhost-user socket directory (`RunDirectory.vhostDirectory`), once it has one:
    /// removed with the sockets left in it (a killed QEMU's) after a crash.
    public var vhostDirectory: String?

    public init(name: String, host: String? = nil, file: String, pid: Int32, processStart: UInt64, namespaces: [String], links: [String],
                vms: [String]? = nil, groOff: [String]? = nil) {
        self.name = name; self.host = host; self.file = file; self.pid = pid; self.processStart = processStart
        self.namespaces = namespaces; self.links = links; self.vms = vms; self.groOff = groOff
    }

    /// `name` or `name@host`.
    public var stem: String { host.map { "\(name)@\($0)" } ?? name }

    /// Replaces the state file atomically (a unique temporary file, fsync, rename).
    /// - Throws: `RuntimeError` naming the path and errno (ENOSPC on a full /run); nothing
    ///   is left behind.
    public func write() throws {
        let data = try JSONEncoder().encode(self)
        do { try AtomicFile.write(Array(data), to: RunDirectory.state(stem)) }
        catch { throw RuntimeError("cannot write the state file: \(error)") }
    }

    public static func read(stem: String) -> InstanceState? {
        guard let data = FileManager.default.contents(atPath: RunDirectory.state(stem)) else { return nil }
        return try? JSONDecoder().decode(InstanceState.self, from: data)
    }

    /// The state of the single-host instance `name`.
    public static func read(name: String) -> InstanceState? { read(stem: name) }

    /// True while the recorded process is still this instance.
    public var isAlive: Bool {
        guard Processes.exists(pid) else { return false }
        return processStartTime(pid) == processStart
    }

    /// Seconds since the recorded process started (nil when it is gone).
    public var uptimeSeconds: Int64? {
        guard isAlive, let text = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let up = Double(text.split(separator: " ").first ?? "") else { return nil }
        return Int64(up - Double(processStart) / Processes.clockTicksPerSecond)
    }
}

/// The start time (clock ticks since boot) of a process, field 22 of /proc/PID/stat; 0 when
/// the process is gone or a zombie (killed, not yet reaped: it holds nothing any more).
public func processStartTime(_ pid: Int32) -> UInt64 { Processes.startTime(pid) }
