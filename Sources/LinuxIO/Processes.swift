#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process calls the runtime makes about itself and about processes it recorded by PID
/// (DHCP clients, QEMU guests, a crashed predecessor): kill(2), waitpid(2), /proc/PID/stat.
/// Nothing here signals a process the caller did not start or record.
public enum Processes {
    /// This process's PID (getpid(2)).
    public static var current: Int32 { getpid() }

    /// This process's effective user ID (geteuid(2)).
    public static var effectiveUser: UInt32 { geteuid() }

    /// Whether a process `pid` exists: kill(pid, 0) succeeds, or fails with EPERM (it exists
    /// but belongs to someone else).
    public static func exists(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    /// Sends `signal` (SIGTERM, SIGKILL…) to `pid`. Returns false when the process is gone
    /// (ESRCH) or may not be signalled; a PID ≤ 0 is refused (it would name a group).
    @discardableResult
    public static func signal(_ pid: Int32, _ signal: Int32) -> Bool {
        pid > 0 && kill(pid, signal) == 0
    }

    /// Sends `signal` to this process (the daemon's `down` request wakes its main thread,
    /// which waits for SIGTERM).
    public static func signalSelf(_ signal: Int32) { _ = kill(getpid(), signal) }

    /// Waits until child `pid` has exited and reaps it (waitpid(2), retried on EINTR).
    /// Returns its wait status, or nil when `pid` is not a child of this process.
    @discardableResult
    public static func waitForExit(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { return status }
            if r < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// The clock ticks per second of /proc times (sysconf(_SC_CLK_TCK), usually 100).
    public static var clockTicksPerSecond: Double { max(1, Double(sysconf(Int32(_SC_CLK_TCK)))) }

    /// The start time of process `pid` in clock ticks since boot (field 22 of
    /// /proc/PID/stat, proc(5)); 0 when it is gone or a zombie (killed, not yet reaped: it
    /// holds nothing any more). With the PID it identifies a process across PID reuse.
    public static func startTime(_ pid: Int32) -> UInt64 {
        guard pid > 0 else { return 0 }
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
        guard let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return 0 }
        let fields = buffer[(close + 1)..<n].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19, fields[0].first != UInt8(ascii: "Z"), fields[0].first != UInt8(ascii: "X") else { return 0 }
        return UInt64(String(decoding: fields[19], as: UTF8.self)) ?? 0
    }

    /// Sleeps `microseconds` (usleep(3)); for control threads' polling loops only.
    public static func pause(microseconds: UInt32) { usleep(microseconds) }
}

/// Small file-system calls of the runtime that Foundation does not offer as such.
public enum Files {
    /// Removes the file or socket at `path` (unlink(2)); a missing one is not an error.
    /// Returns false on any other failure.
    @discardableResult
    public static func remove(_ path: String) -> Bool {
        unlink(path) == 0 || errno == ENOENT
    }

    /// Whether `path` names a file this process may execute (access(2) X_OK).
    public static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// Gives directory or file `path` to root and group `gid` with `groupMode` when `gid` is
    /// given and chown(2) succeeds; otherwise (or without a group) sets `ownerOnlyMode`.
    /// Returns whether the group was applied.
    @discardableResult
    public static func restrict(_ path: String, group gid: UInt32?, groupMode: UInt32, ownerOnlyMode: UInt32) -> Bool {
        if let gid, chown(path, 0, gid) == 0 {
            chmod(path, mode_t(groupMode))
            return true
        }
        chmod(path, mode_t(ownerOnlyMode))
        return false
    }

    /// Closes descriptor `fd` (close(2)); a negative one is ignored.
    public static func closeDescriptor(_ fd: Int32) { if fd >= 0 { _ = close(fd) } }

    /// Sets the permission bits of `path` (chmod(2)); returns false on failure.
    @discardableResult
    public static func setMode(_ path: String, _ mode: UInt32) -> Bool { chmod(path, mode_t(mode)) == 0 }

    /// The group owning `path` (stat(2)), or nil when it cannot be read.
    public static func groupID(of path: String) -> UInt32? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_gid : nil
    }

    /// Runs `body` with a descriptor of `path` opened for appending (created with `mode` if
    /// missing, close-on-exec), closed afterwards; `body` gets -1 when it cannot be opened
    /// (a child process then inherits no log).
    public static func withAppendDescriptor<T>(_ path: String, mode: UInt32 = 0o600, _ body: (Int32) throws -> T) rethrows -> T {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode_t(mode))
        defer { if fd >= 0 { close(fd) } }
        return try body(fd)
    }
}

/// The C library's text for error number `code` (strerror(3)), e.g. "No space left on device".
public func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
