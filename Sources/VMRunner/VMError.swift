import Foundation

/// Everything that can go wrong starting, running or stopping a VM, with a message that says
/// what to do about it. Console tails are the last lines the guest printed (kernel panics,
/// init errors), which is usually the whole diagnosis.
public enum VMError: Error, CustomStringConvertible, LocalizedError, Equatable {
    case invalidSpec(name: String, problems: [String])
    /// The QEMU binary is not installed (or not on PATH).
    case qemuNotFound(String)
    case spawnFailed(name: String, executable: String, errno: Int32)
    /// READY did not appear on the console within the boot timeout; QEMU was killed.
    case bootTimeout(name: String, seconds: Double, consoleTail: [String])
    /// QEMU exited before the guest was ready.
    case exitedDuringBoot(name: String, status: ProcessExit, consoleTail: [String], processLogTail: [String])
    case alreadyRunning(name: String)
    /// Scripts/guest-image.sh was not found next to the executable, in the current directory
    /// or its parents, nor given.
    case imageScriptNotFound(searched: [String])
    /// Scripts/guest-image.sh failed; the tail of its stderr says why.
    case imageBuildFailed(status: ProcessExit, stderrTail: [String])
    case io(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .invalidSpec(name, problems):
            return "VM \(name): " + problems.joined(separator: "; ")
        case let .qemuNotFound(binary):
            return "\(binary) not found: install qemu-system-x86 (apt-get install qemu-system-x86; Scripts/setup.sh does)"
        case let .spawnFailed(name, executable, e):
            return "VM \(name): cannot start \(executable): \(String(cString: strerror(e)))"
        case let .bootTimeout(name, seconds, tail):
            return "VM \(name): not ready after \(Int(seconds)) s (no READY marker on its console); QEMU was stopped. Last console lines:\n"
                + tail.map { "  | " + $0 }.joined(separator: "\n")
        case let .exitedDuringBoot(name, status, tail, processTail):
            return "VM \(name): QEMU \(status) before the guest was ready.\nQEMU said:\n"
                + processTail.map { "  | " + $0 }.joined(separator: "\n")
                + "\nLast console lines:\n" + tail.map { "  | " + $0 }.joined(separator: "\n")
        case let .alreadyRunning(name):
            return "VM \(name) is already running"
        case let .imageScriptNotFound(searched):
            return "guest image script Scripts/guest-image.sh not found (looked in: \(searched.joined(separator: ", "))); set TAPESTRY_GUEST_IMAGE_SCRIPT"
        case let .imageBuildFailed(status, tail):
            return "building the guest image failed (\(status)):\n" + tail.map { "  | " + $0 }.joined(separator: "\n")
        case let .io(operation, path, e):
            return "\(operation) \(path): \(String(cString: strerror(e)))"
        }
    }

    public var errorDescription: String? { description }
}
