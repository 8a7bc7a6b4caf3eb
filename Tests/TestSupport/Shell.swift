import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The result of running a command for a test.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
}

/// Runs `/bin/sh -c command` and waits for it (at most `timeout` seconds, then its process
/// group is killed and the status is 124, like timeout(1)).
///
/// Output goes to temporary files, not pipes, and the child is reaped with waitpid here:
/// a command that leaves a background process (tcpdump, a daemon) must not keep the test
/// waiting for an EOF that never comes, and Foundation's Process has been seen to leave
/// such children unreaped.
@discardableResult
public func sh(_ command: String, timeout: TimeInterval = 120) -> CommandResult {
    let base = NSTemporaryDirectory() + "tapestry-sh-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let outPath = base + ".out", errPath = base + ".err"
    defer { unlink(outPath); unlink(errPath) }
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&fa, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t(); sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setpgroup(&attr, 0)
    // Children get default SIGPIPE handling even if a test runner ignores it.
    var defaults = sigset_t(); sigemptyset(&defaults); sigaddset(&defaults, SIGPIPE)
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [String] = ["/bin/sh", "-c", command]
    var args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for a in args { free(a) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, "/bin/sh", &fa, &attr, &args, environ) == 0 else {
        return CommandResult(status: 127, stdout: "", stderr: "cannot spawn /bin/sh")
    }
    let deadline = Date().addingTimeInterval(timeout)
    var status: Int32 = 0
    var exitStatus: Int32 = 124
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            // WIFEXITED / WEXITSTATUS / WTERMSIG by hand: the macros are not imported.
            let sig = status & 0x7F
            exitStatus = sig == 0 ? (status >> 8) & 0xFF : 128 + sig
            break
        }
        if r < 0 && errno != EINTR { exitStatus = 127; break }
        if Date() > deadline {
            kill(-pid, SIGKILL)
            waitpid(pid, &status, 0)
            break
        }
        usleep(5_000)
    }
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return CommandResult(status: exitStatus, stdout: out, stderr: err)
}

/// Runs an `ip -j …` command and parses its JSON array (empty on failure).
public func ipJSON(_ command: String) -> [[String: Any]] {
    let r = sh(command)
    guard r.succeeded, let array = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else { return [] }
    return array
}

/// What this machine lets a test do. Privileged tests are gated on these and print why
/// they skip; in CI (root) they run.
public enum Capabilities {
    /// Effective user is root.
    public static var isRoot: Bool { geteuid() == 0 }
    /// /dev/net/tun exists and we are root.
    public static var canCreateTAP: Bool { isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") }
    /// Root and the `ip` tool exist (network namespaces).
    public static var canCreateNamespaces: Bool {
        isRoot && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.fileExists(atPath: $0) }
    }
    /// A short, unique prefix for names a test creates (namespaces, links): the tag plus two
    /// base-36 characters.
    public static func uniquePrefix(_ tag: String) -> String {
        let n = UInt32(truncatingIfNeeded: getpid()) &* 2654435761 &+ UInt32.random(in: 0...0xFFFF)
        let s = String(n % 1296, radix: 36)
        return tag + String(repeating: "0", count: 2 - s.count) + s
    }
}
