import Model

/// Storm control: one token bucket per port and traffic class (broadcast, multicast,
/// unknown unicast), each refilled at the port's rate with one second of burst.
///
/// ## Question and effect
/// Like learning, admission is split in two so that `trace` can ask without changing
/// anything: `wouldAdmit` (pure: would a frame of this class pass now?) is what `decide`
/// asks; `take` (the effect: spend the token) is what the datapath applies for a frame it
/// forwards. Both run under the datapath lock, back to back, so they agree.
///
/// ## Units
/// Tokens are kept in nano-frames (1 frame = 10⁹), so refilling is integer arithmetic on
/// the monotonic clock: `tokens += elapsed_ns × rate`, capped at `rate × 10⁹` (one second
/// of frames). Rates are frames per second.
///
/// ## Threads
/// Read and written only under the datapath lock. Workers read the clock before they wait
/// for the lock, so instants may arrive slightly out of order: a bucket never refills
/// backwards.
public final class StormControl {
    @usableFromInline let rates: [Int64]                      // ports × 3, 0 = unlimited
    @usableFromInline let tokens: UnsafeMutablePointer<Int64>
    @usableFromInline let last: UnsafeMutablePointer<Int64>
    /// True when some port has a limit (otherwise `decide` never asks).
    public let isActive: Bool

    /// Buckets for every port of `plan`, full.
    public init(plan: SwitchPlan) {
        var r: [Int64] = []
        for p in plan.ports {
            r += [p.storm.broadcast, p.storm.multicast, p.storm.unknownUnicast].map { Int64($0 ?? 0) }
        }
        rates = r
        isActive = r.contains { $0 > 0 }
        tokens = .allocate(capacity: max(1, r.count))
        last = .allocate(capacity: max(1, r.count))
        for i in 0..<r.count { tokens[i] = r[i] * 1_000_000_000; last[i] = 0 }
    }
    deinit { tokens.deallocate(); last.deallocate() }

    @inlinable @inline(__always)
    static func index(port: Int, reason: FloodReason) -> Int {
        port * 3 + (reason == .broadcast ? 0 : reason == .multicast ? 1 : 2)
    }

    /// The tokens of bucket `i` as of `now` (nano-frames), without changing anything.
    @inlinable @inline(__always)
    func level(_ i: Int, now: MonotonicInstant) -> Int64 {
        let rate = rates[i]
        let cap = rate * 1_000_000_000
        let t = now.nanoseconds
        if last[i] != 0 && t > last[i] { return min(cap, tokens[i] + (t - last[i]) * rate) }
        return tokens[i]
    }

    /// Whether `port` may send one more frame of class `reason` at `now` (the question;
    /// changes nothing). Always true for a class without a limit.
    @inlinable @inline(__always)
    public func wouldAdmit(port: Int, reason: FloodReason, now: MonotonicInstant) -> Bool {
        let i = Self.index(port: port, reason: reason)
        return rates[i] == 0 || level(i, now: now) >= 1_000_000_000
    }

    /// Spends one frame's token of `port` and `reason` at `now` (the effect, after
    /// `wouldAdmit` said yes).
    @inlinable @inline(__always)
    public func take(port: Int, reason: FloodReason, now: MonotonicInstant) {
        let i = Self.index(port: port, reason: reason)
        guard rates[i] != 0 else { return }
        tokens[i] = max(0, level(i, now: now) - 1_000_000_000)
        last[i] = max(last[i], now.nanoseconds)
    }

    /// Whole frames left in the bucket as of `now` (nil: no limit). For `trace`.
    public func frames(port: Int, reason: FloodReason, now: MonotonicInstant) -> Int64? {
        let i = Self.index(port: port, reason: reason)
        return rates[i] == 0 ? nil : level(i, now: now) / 1_000_000_000
    }

    /// The limit of `port` for `reason` in frames per second (nil: none).
    public func rate(port: Int, reason: FloodReason) -> Int64? {
        let r = rates[Self.index(port: port, reason: reason)]
        return r == 0 ? nil : r
    }
}

extension FloodReason {
    /// The storm-control drop for this class of traffic.
    @inlinable public var stormDrop: DropReason {
        switch self {
        case .broadcast: return .broadcastStorm
        case .multicast: return .multicastStorm
        case .unknownUnicast: return .unknownUnicastStorm
        }
    }
}
