#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// A failed system call: what we tried, on what, and the errno the kernel returned.
///
/// Modelled on swift-system's `Errno` plus NIO's `IOError`: the operation and subject make
/// the message actionable ("open /dev/net/tun (tap tp1234): Operation not permitted")
/// without the caller re-wrapping it.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    /// The call or step that failed, e.g. "open /dev/net/tun" or "TUNSETIFF".
    public var operation: String
    /// What it acted on, e.g. "tap tp1234" or "netns tio1"; may be empty.
    public var subject: String
    /// The errno value (positive).
    public var errno: Int32

    /// Creates an error from an errno value (positive; a negative one is negated).
    public init(operation: String, subject: String, errno: Int32) {
        self.operation = operation
        self.subject = subject
        self.errno = errno < 0 ? -errno : errno
    }

    /// The C library's text for `errno`, e.g. "Operation not permitted".
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String {
        subject.isEmpty ? "\(operation): \(reason)" : "\(operation) (\(subject)): \(reason)"
    }
}

/// The outcome of one read or write on the per-frame path.
///
/// A value, not a thrown error: the datapath must neither throw nor allocate per frame, and
/// "no frame ready" (`wouldBlock`) is the normal end of every batch, not a failure.
public enum IOResult: Equatable {
    /// The call moved this many bytes (0 from a read means end of file).
    case bytes(Int)
    /// The fd is non-blocking and had nothing to read / no room to write (EAGAIN).
    case wouldBlock
    /// The call failed with this errno; the caller counts it and decides what to do.
    case failed(Int32)
}

/// The one place that turns raw system-call results into Swift outcomes.
///
/// Every CLinux helper returns a non-negative result or `-errno`. `Syscall` owns the policy
/// (after SwiftNIO's `System.swift`):
/// - EINTR is retried here, so no caller ever sees it;
/// - EAGAIN/EWOULDBLOCK is a value (`.wouldBlock`), never an error;
/// - EBADF and EFAULT are bugs in this process (a closed or foreign fd, a bad pointer), so
///   they trap rather than travel as errors;
/// - anything else becomes a `SystemError` (control path) or `.failed(errno)` (frame path).
public enum Syscall {
    /// A control-path result: the value, or "not ready" on a non-blocking fd.
    public enum Outcome<Value> {
        /// The call succeeded with this result.
        case value(Value)
        /// EAGAIN/EWOULDBLOCK: try again when the fd is ready.
        case wouldBlock
    }

    /// Runs `body` (a call returning `>= 0` or `-errno`) with the policy above, throwing
    /// `SystemError(operation:subject:errno:)` for real failures. `operation` and `subject`
    /// are only evaluated on failure.
    @inlinable
    public static func call<R: SignedInteger & FixedWidthInteger>(
        _ operation: @autoclosure () -> String,
        subject: @autoclosure () -> String = "",
        _ body: () -> R
    ) throws -> Outcome<R> {
        while true {
            let r = body()
            if r >= 0 { return .value(r) }
            let e = Int32(truncatingIfNeeded: -r)
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case EBADF, EFAULT: trapOnOwnBug(e, operation())
            default: throw SystemError(operation: operation(), subject: subject(), errno: e)
            }
        }
    }

    /// Like `call`, for calls where "not ready" cannot happen or is itself a failure
    /// (creating fds, namespaces): EAGAIN is thrown too.
    @inlinable
    @discardableResult
    public static func require<R: SignedInteger & FixedWidthInteger>(
        _ operation: @autoclosure () -> String,
        subject: @autoclosure () -> String = "",
        _ body: () -> R
    ) throws -> R {
        switch try call(operation(), subject: subject(), body) {
        case .value(let v): return v
        case .wouldBlock: throw SystemError(operation: operation(), subject: subject(), errno: EAGAIN)
        }
    }

    /// The per-frame variant: no throwing, no allocation, no string work. `body` returns a
    /// byte count or `-errno`.
    @inlinable
    @inline(__always)
    public static func io(_ body: () -> Int) -> IOResult {
        while true {
            let r = body()
            if r >= 0 { return .bytes(r) }
            let e = Int32(truncatingIfNeeded: -r)
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case EBADF, EFAULT: trapOnOwnBug(e, "frame I/O")
            default: return .failed(e)
            }
        }
    }

    @usableFromInline
    static func trapOnOwnBug(_ e: Int32, _ operation: String) -> Never {
        preconditionFailure("\(operation): \(String(cString: strerror(e))) — a bug in this process (stale fd or bad pointer)")
    }
}
