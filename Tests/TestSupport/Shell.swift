import Foundation

/// The result of running a command for a test.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
}

/// Runs `/bin/sh -c command` and waits for it; output is captured (not inherited).
/// For privileged system tests that drive `ip`, `tcpdump` and the `tapestry` binary.
@discardableResult
public func sh(_ command: String, timeout: TimeInterval = 120) -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    p.standardInput = FileHandle.nullDevice
    do { try p.run() } catch { return CommandResult(status: 127, stdout: "", stderr: "\(error)") }
    // Read both pipes concurrently so a chatty command cannot block on a full pipe.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let deadline = DispatchTime.now() + timeout
    let timer = DispatchWorkItem { if p.isRunning { p.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: deadline, execute: timer)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    timer.cancel()
    group.wait()
    return CommandResult(status: p.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
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
        isRoot && (FileManager.default.fileExists(atPath: "/usr/sbin/ip") || FileManager.default.fileExists(atPath: "/sbin/ip") || FileManager.default.fileExists(atPath: "/usr/bin/ip"))
    }
    /// A short, unique prefix for names a test creates (namespaces, links): 4 characters.
    public static func uniquePrefix(_ tag: String) -> String {
        let n = UInt32(truncatingIfNeeded: getpid()) &* 2654435761 &+ UInt32.random(in: 0...0xFFFF)
        return tag + String(n % 1296, radix: 36)
    }
}
