import CVMSpawn
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Process creation and reaping for the runner: posix_spawn with fixed inherited descriptors
/// (CVMSpawn), never Foundation's Process, which neither places fds at chosen numbers nor
/// closes the rest, and has been seen to leave children unreaped (see TestSupport's `sh`).
/// Public for the runtime's other helper processes (netns guests' DHCP clients).
public enum Spawn {
    /// Spawns `path` in its own process group with `inherit[i]` at fd 3+i and every other
    /// descriptor closed (see `cvm_spawn`), in the named network namespace `networkNamespace`
    /// (/run/netns/NAME, `cvm_spawn_in_netns`) when given. Returns the pid or the errno
    /// (ENOENT for a namespace that does not exist).
    public static func spawn(path: String, arguments: [String], stdin: Int32 = -1, stdout: Int32, stderr: Int32,
                      inherit: [Int32] = [], networkNamespace: String? = nil) -> Result<pid_t, Errno> {
        let argv = [path] + arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        let rc = inherit.withUnsafeBufferPointer { fds in
            if let ns = networkNamespace {
                return cvm_spawn_in_netns("/run/netns/\(ns)", path, &cArgs, environ, stdin, stdout, stderr, fds.baseAddress, Int32(fds.count), &pid)
            }
            return cvm_spawn(path, &cArgs, environ, stdin, stdout, stderr, fds.baseAddress, Int32(fds.count), &pid)
        }
        return rc == 0 ? .success(pid) : .failure(Errno(rawValue: -rc))
    }

    /// The first executable `name` on $PATH (or `name` itself when it contains a slash).
    public static func which(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let dirs = (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":")
        for d in dirs {
            let candidate = "\(d)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Reaps `pid` if it has exited (never blocks). nil while it runs.
    public static func reapIfExited(_ pid: pid_t) -> ProcessExit? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return ProcessExit(waitStatus: status) }
            if r < 0 && errno == EINTR { continue }
            // r == 0: running; r < 0 (ECHILD): not our child any more; report it as gone.
            return r == 0 ? nil : ProcessExit(signal: SIGKILL)
        }
    }

    /// True when `pid` has exited but is not reaped yet (waitid WNOWAIT): the pid cannot be
    /// reused meanwhile, so signalling it is safe until `reapIfExited`.
    static func hasExited(_ pid: pid_t) -> Bool {
        cvm_has_exited(pid) != 0  // 1, or -ECHILD: gone already
    }
}

/// An errno value with its message.
public struct Errno: Error, Equatable, CustomStringConvertible {
    public var rawValue: Int32
    public var description: String { String(cString: strerror(rawValue)) }
}

/// Reads the last `count` lines of `path` from byte `offset` on (at most the last 64 KiB),
/// without carriage returns and terminal escape sequences: for error messages.
func tailLines(of path: String, from offset: UInt64 = 0, count: Int = 20) -> [String] {
    guard let h = FileHandle(forReadingAtPath: path) else { return [] }
    defer { try? h.close() }
    let end = (try? h.seekToEnd()) ?? 0
    let start = max(offset, end > 65_536 ? end - 65_536 : 0)
    guard end > start, (try? h.seek(toOffset: start)) != nil, let data = try? h.readToEnd() else { return [] }
    // Split the bytes, not the String: "\r\n" is one Character, which "\n" never matches.
    let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        .map { stripEscapes(String(decoding: $0.filter { $0 != UInt8(ascii: "\r") }, as: UTF8.self)) }
    var trimmed = Array(lines.drop { $0.isEmpty })
    while trimmed.last?.isEmpty == true { trimmed.removeLast() }
    return Array(trimmed.suffix(count))
}

/// Removes ANSI CSI sequences (busybox's shell asks the terminal for the cursor position
/// with ESC [ 6 n).
func stripEscapes(_ s: String) -> String {
    var out = ""
    var it = s.unicodeScalars.makeIterator()
    while let c = it.next() {
        if c == "\u{1B}" {
            guard let n = it.next() else { break }
            if n == "[" { while let f = it.next(), !(0x40...0x7E).contains(f.value) {} }
            continue
        }
        out.unicodeScalars.append(c)
    }
    return out
}
