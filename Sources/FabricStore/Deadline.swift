import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A point in time on the monotonic clock (CLOCK_MONOTONIC, seconds), by which a call must
/// have finished. Every network call of this module takes one, so nothing here blocks
/// longer than its caller allowed (wall-clock jumps do not move it).
public struct Deadline: Sendable, Comparable {
    /// Seconds on CLOCK_MONOTONIC.
    public var seconds: Double

    /// A deadline at `seconds` on CLOCK_MONOTONIC.
    public init(seconds: Double) { self.seconds = seconds }

    /// The monotonic clock now, in seconds.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// `interval` seconds from now.
    public static func after(_ interval: Double) -> Deadline { Deadline(seconds: now() + interval) }

    /// Seconds left (0 when passed).
    public var remaining: Double { max(0, seconds - Deadline.now()) }

    /// Milliseconds left for poll(2): at least 1 while time remains, 0 once passed, at most
    /// Int32.max.
    var pollMilliseconds: Int32 {
        let r = remaining
        if r <= 0 { return 0 }
        return Int32(min(Double(Int32.max), max(1, (r * 1000).rounded(.up))))
    }

    /// Whether the deadline has passed.
    public var hasPassed: Bool { Deadline.now() >= seconds }

    /// The earlier of the two.
    public func capped(at other: Deadline) -> Deadline { self < other ? self : other }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.seconds < b.seconds }
}
