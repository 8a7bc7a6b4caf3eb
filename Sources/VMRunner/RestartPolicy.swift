import Foundation
import Model

/// How a QEMU process ended, decoded from a waitpid(2) status.
///
/// Exactly one of `code` (it called exit) and `signal` (a signal killed it) is set. Encoded as
/// `{"code": 1}` or `{"signal": 9}` in `--json` output.
public struct ProcessExit: Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32?
    public var signal: Int32?

    public init(code: Int32) { self.code = code; self.signal = nil }
    public init(signal: Int32) { self.code = nil; self.signal = signal }

    /// Decodes a raw waitpid status (WIFEXITED / WEXITSTATUS / WTERMSIG by hand: the macros
    /// are not imported into Swift).
    public init(waitStatus status: Int32) {
        let sig = status & 0x7F
        if sig == 0 { self.init(code: (status >> 8) & 0xFF) } else { self.init(signal: sig) }
    }

    /// Non-zero exit or killed by a signal. QEMU exits 0 when the guest powers off, when QMP
    /// `quit` is sent and on SIGTERM/SIGINT (which it handles); a guest kernel panic exits 1
    /// (`-action panic=exit-failure` with the pvpanic device).
    public var isFailure: Bool { signal != nil || code != 0 }

    public var description: String {
        if let s = signal { return "killed by signal \(s)\(Self.signalNames[s].map { " (\($0))" } ?? "")" }
        return "exited with status \(code ?? 0)"
    }

    private static let signalNames: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"]
}

/// The supervisor's side of `RestartPolicy` (the type is Model's, shared with the topology).
extension RestartPolicy {
    /// The pure decision, made after each exit: false when the user asked for the stop;
    /// otherwise `never` never, `onFailure` after a failure (`ProcessExit.isFailure`),
    /// `always` always.
    public func restarts(after exit: ProcessExit, stopRequested: Bool) -> Bool {
        if stopRequested { return false }
        switch self {
        case .never: return false
        case .onFailure: return exit.isFailure
        case .always: return true
        }
    }
}

/// Exponential back-off between automatic restarts: 1 s, 2 s, 4 s … capped at 30 s, so a
/// guest that dies at once does not spin QEMU in a loop; a run that lasted `resetAfter` counts
/// as healthy and the next failure starts again at `initial` (systemd's and Kubernetes'
/// CrashLoopBackOff shape).
public struct Backoff: Sendable, Equatable, Codable {
    public var initial: TimeInterval
    public var maximum: TimeInterval
    public var resetAfter: TimeInterval

    public init(initial: TimeInterval = 1, maximum: TimeInterval = 30, resetAfter: TimeInterval = 60) {
        self.initial = initial
        self.maximum = maximum
        self.resetAfter = resetAfter
    }

    /// The delay before restart number `attempt` of a streak (1 for the first restart after a
    /// healthy run): initial · 2^(attempt−1), capped at `maximum`.
    public func delay(attempt: Int) -> TimeInterval {
        let exponent = max(0, min(attempt - 1, 32))
        return min(maximum, initial * pow(2, Double(exponent)))
    }

    /// The streak's next attempt number after a run that lasted `uptime` seconds: back to 1
    /// after a healthy run, otherwise one more than `previous`.
    public func nextAttempt(previous: Int, uptime: TimeInterval) -> Int {
        uptime >= resetAfter ? 1 : previous + 1
    }
}
