/// A point on the host's monotonic clock (`CLOCK_MONOTONIC`), in nanoseconds.
///
/// One type for every timestamp the switch keeps (MAC-table ages, storm buckets, the
/// team's announcement lock, beacon probes), so seconds, milliseconds and nanoseconds can no
/// longer be mixed up: a count of some unit only appears through the named accessors. Spans
/// between instants are the standard library's `Duration`; the per-frame code compares raw
/// nanoseconds (`nanoseconds`), never `Duration` arithmetic.
public struct MonotonicInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since an arbitrary start (the kernel's boot, for `CLOCK_MONOTONIC`).
    public var nanoseconds: Int64
    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    /// The instant `seconds` whole seconds after the clock's start (tests, fixtures).
    @inlinable public static func seconds(_ seconds: Int64) -> MonotonicInstant { MonotonicInstant(nanoseconds: seconds * 1_000_000_000) }
    /// The instant `milliseconds` after the clock's start (tests, fixtures).
    @inlinable public static func milliseconds(_ ms: Int64) -> MonotonicInstant { MonotonicInstant(nanoseconds: ms * 1_000_000) }
    /// Whole seconds since the clock's start (rounded down).
    @inlinable public var seconds: Int64 { nanoseconds / 1_000_000_000 }
    /// Whole milliseconds since the clock's start (rounded down).
    @inlinable public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    @inlinable public static func < (a: MonotonicInstant, b: MonotonicInstant) -> Bool { a.nanoseconds < b.nanoseconds }
    /// `later - earlier` as a duration (negative when `later` is earlier).
    @inlinable public static func - (a: MonotonicInstant, b: MonotonicInstant) -> Duration { .nanoseconds(a.nanoseconds - b.nanoseconds) }
    @inlinable public static func + (a: MonotonicInstant, d: Duration) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: a.nanoseconds + d.nanosecondsCount)
    }
    @inlinable public static func - (a: MonotonicInstant, d: Duration) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: a.nanoseconds - d.nanosecondsCount)
    }
    public var description: String { "\(seconds).\(String(Int(nanoseconds % 1_000_000_000) / 1_000_000 + 1000).dropFirst())s" }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating at ±2⁶³ ns, about 292 years).
    @inlinable public var nanosecondsCount: Int64 {
        let (s, a) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return ns &+ a / 1_000_000_000
    }
    /// The duration in whole seconds (rounded toward zero).
    @inlinable public var secondsCount: Int64 { components.seconds }
    /// The duration in whole milliseconds (rounded toward zero).
    @inlinable public var millisecondsCount: Int64 { nanosecondsCount / 1_000_000 }
}
