import Model
#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock (aging, uptime). Read once per batch, not per frame.
public func monotonicSeconds() -> Int64 { monotonicNanoseconds() / 1_000_000_000 }

/// Nanoseconds on the monotonic clock (storm control).
public func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Wall-clock nanoseconds for capture timestamps (read only when a capture is running).
@inline(__always)
public func realtimeNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension MonotonicInstant {
    /// The monotonic clock now (`clock_gettime(CLOCK_MONOTONIC)`).
    @inline(__always) public static var now: MonotonicInstant { MonotonicInstant(nanoseconds: monotonicNanoseconds()) }
}
