import Model

/// One direction of a port's traffic shaping, with VMware's semantics: the long-term rate
/// is held to `averageBitsPerSecond`, and up to `burstBytes` may pass at up to
/// `peakBitsPerSecond`. Excess frames are dropped (a policer: nothing is buffered).
///
/// Topology: a port group's `shaping: {ingress|egress: {average: RATE, peak: RATE, burst:
/// SIZE}}` (SPEC.md §5); `peak` defaults to `average`, `burst` to the smallest
/// safe value (`ShapingLimit.largestFrame` with offloads, MTU + 18 without).
public struct ShapingLimit: Hashable, Sendable {
    /// The long-term rate, bits per second (> 0).
    public var averageBitsPerSecond: UInt64
    /// The rate during a burst, bits per second (≥ average).
    public var peakBitsPerSecond: UInt64
    /// Bytes that may pass above the average rate (at up to the peak rate): the depth of the
    /// average-rate bucket. Should be at least the largest frame the port carries, or that
    /// frame only passes by borrowing (see `TrafficShaper`).
    public var burstBytes: Int

    /// - Precondition: 0 < average ≤ 1 Tbit/s, 0 < burst ≤ 1 GiB (the topology's bounds).
    ///   `peak` below `average` is raised to it; above 1 Tbit/s it is lowered to that.
    public init(averageBitsPerSecond: UInt64, peakBitsPerSecond: UInt64? = nil, burstBytes: Int) {
        precondition(averageBitsPerSecond > 0 && averageBitsPerSecond <= ShapingLimit.maximumRate, "shaping average must be 1 bit/s … 1 Tbit/s")
        precondition(burstBytes > 0 && burstBytes <= 1 << 30, "shaping burst must be 1 byte … 1 GiB")
        self.averageBitsPerSecond = averageBitsPerSecond
        self.peakBitsPerSecond = min(ShapingLimit.maximumRate, max(averageBitsPerSecond, peakBitsPerSecond ?? averageBitsPerSecond))
        self.burstBytes = burstBytes
    }

    /// The largest frame a port with offloads can carry: a 65 535-byte IPv6 payload, its
    /// 40-byte header, the Ethernet header and one 802.1Q tag (65 593 bytes). The peak-rate
    /// bucket is this deep (or `burstBytes`, if smaller), so one GSO frame can always pass.
    public static let largestFrame = 65_535 + 40 + 14 + 4

    /// The depth of the peak-rate bucket, bytes: what may pass back to back above the peak
    /// rate: `burst × average / peak`, at least one largest frame, at most the burst. With
    /// peak = average (the default) it is the burst: one bucket, `burst` bytes back to back,
    /// the average after. The higher the peak, the more the peak bucket clips back-to-back
    /// frames to the peak rate.
    ///
    /// Why not one frame (Linux `tbf`'s `mtu`): a policer buffers nothing, and TCP with TSO
    /// sends its window as back-to-back 64 KiB frames; with a one-frame peak bucket all but
    /// one of them were dropped, and iperf3 through a 50 Mbit/s average, 100 Mbit/s peak,
    /// 1 MiB burst port measured 3 Mbit/s (this rule: 26 Mbit/s; peak = average: 44 Mbit/s,
    /// PolicySystemTests.shapingHoldsTCPNearTheAverage).
    public var peakBucketBytes: Int {
        let scaled = Int(Double(burstBytes) * Double(averageBitsPerSecond) / Double(peakBitsPerSecond))
        return min(burstBytes, max(ShapingLimit.largestFrame, scaled))
    }

    /// The highest rate the shaper's integer arithmetic is sized for: 1 Tbit/s.
    public static let maximumRate: UInt64 = 1_000_000_000_000
}

/// A port's traffic shaping. **Ingress** is traffic entering the switch from the guest,
/// **egress** traffic the switch sends to the guest (the distributed switch's directions).
/// `nil` directions are not shaped.
public struct ShapingPolicy: Hashable, Sendable {
    public var ingress: ShapingLimit?
    public var egress: ShapingLimit?
    public init(ingress: ShapingLimit? = nil, egress: ShapingLimit? = nil) { self.ingress = ingress; self.egress = egress }
}

/// Which way a frame crosses a shaped port.
public enum ShapingDirection: UInt8, Sendable, CustomStringConvertible {
    /// From the guest into the switch.
    case ingress = 0
    /// From the switch to the guest.
    case egress = 1
    public var description: String { self == .ingress ? "ingress" : "egress" }
    /// The drop counted when a frame is over the rate.
    public var drop: DropReason { self == .ingress ? .shapingIngress : .shapingEgress }
}

/// Traffic shaping: per port and direction, a two-rate token bucket in bytes (a policer).
///
/// ## The two buckets
/// Like Linux `tbf` with a peak rate (or RFC 2698's two-rate policer): the **average** bucket
/// fills at the average rate and holds `burstBytes`; the **peak** bucket fills at the peak
/// rate and holds `burst × average / peak` (`ShapingLimit.peakBucketBytes`: at least one
/// largest frame, at most the burst). A frame of L bytes passes when both hold L; both are
/// then charged L. So the long-term rate is the average, and a burst of up to `burstBytes`
/// passes at no more than the peak rate beyond the peak bucket's depth.
///
/// ## TCP never stalls
/// A GSO frame counts for its full length (up to 64 KiB). A frame longer than a bucket can
/// ever hold passes when that bucket is full and leaves it in debt (negative), which later
/// refills pay back: the long-term rate stays exact, and no frame is refused forever, even
/// with a `burst` below the largest frame (topology validation refuses those anyway).
///
/// ## Units and arithmetic
/// Tokens are bit-nanoseconds: 1 byte = 8 × 10⁹ tokens, so refilling is integer arithmetic
/// on the monotonic clock: `tokens += elapsed_ns × bits_per_second`, capped at the depth
/// (elapsed time is clamped first, so nothing overflows for rates ≤ 1 Tbit/s and bursts ≤ 1 GiB).
///
/// ## Question and effect
/// As `StormControl`: `wouldAdmit` (pure) is what `decide` asks for ingress and
/// `collectEgress` for each output; `take` (the effect) is what the datapath applies for a
/// frame it forwards, right after, under the same lock. Workers read the clock before they
/// wait for the lock: buckets never refill backwards.
///
/// ## Threads
/// Read and written only under the datapath lock.
public final class TrafficShaper {
    /// Per port × direction: rates (bits/s; 0 = not shaped) and depths (tokens).
    @usableFromInline let averageRate: UnsafeMutablePointer<Int64>
    @usableFromInline let peakRate: UnsafeMutablePointer<Int64>
    @usableFromInline let averageDepth: UnsafeMutablePointer<Int64>
    @usableFromInline let peakDepth: UnsafeMutablePointer<Int64>
    /// Longest refill worth computing (ns): the time to fill an empty bucket (plus debt).
    @usableFromInline let averageFill: UnsafeMutablePointer<Int64>
    @usableFromInline let peakFill: UnsafeMutablePointer<Int64>
    @usableFromInline let averageTokens: UnsafeMutablePointer<Int64>
    @usableFromInline let peakTokens: UnsafeMutablePointer<Int64>
    @usableFromInline let last: UnsafeMutablePointer<Int64>
    public let portCount: Int
    /// True when some port shapes some direction (otherwise nobody asks).
    public let isActive: Bool
    /// True when some port shapes egress (one branch per frame otherwise).
    public let shapesEgress: Bool

    /// Tokens per byte.
    public static let tokensPerByte: Int64 = 8_000_000_000

    /// Full buckets for every port of `plan`.
    public init(plan: SwitchPlan) {
        let n = plan.ports.count
        portCount = n
        let slots = max(1, 2 * n)
        func make() -> UnsafeMutablePointer<Int64> {
            let p = UnsafeMutablePointer<Int64>.allocate(capacity: slots)
            p.initialize(repeating: 0, count: slots)
            return p
        }
        averageRate = make(); peakRate = make(); averageDepth = make(); peakDepth = make()
        averageFill = make(); peakFill = make(); averageTokens = make(); peakTokens = make(); last = make()
        var active = false, egress = false
        for (i, p) in plan.ports.enumerated() {
            for (d, limit) in [(0, p.shaping?.ingress), (1, p.shaping?.egress)] {
                guard let l = limit else { continue }
                let k = 2 * i + d
                let avg = Int64(clamping: l.averageBitsPerSecond), peak = Int64(clamping: l.peakBitsPerSecond)
                averageRate[k] = avg; peakRate[k] = peak
                averageDepth[k] = Int64(l.burstBytes) * TrafficShaper.tokensPerByte
                peakDepth[k] = Int64(l.peakBucketBytes) * TrafficShaper.tokensPerByte
                // Enough time to refill from the deepest debt (a largest frame) to full.
                let span = Int64(ShapingLimit.largestFrame) * TrafficShaper.tokensPerByte
                averageFill[k] = (averageDepth[k] + span) / avg + 1
                peakFill[k] = (peakDepth[k] + span) / peak + 1
                averageTokens[k] = averageDepth[k]; peakTokens[k] = peakDepth[k]
                active = true
                if d == 1 { egress = true }
            }
        }
        isActive = active
        shapesEgress = egress
    }

    deinit {
        for p in [averageRate, peakRate, averageDepth, peakDepth, averageFill, peakFill, averageTokens, peakTokens, last] { p.deallocate() }
    }

    @inlinable @inline(__always)
    static func slot(_ port: Int, _ direction: ShapingDirection) -> Int { 2 * port + Int(direction.rawValue) }

    /// True when `port` shapes `direction`.
    @inlinable @inline(__always)
    public func shapes(port: Int, _ direction: ShapingDirection) -> Bool {
        port < portCount && averageRate[Self.slot(port, direction)] != 0
    }

    /// The two buckets' tokens as of `now`, without changing anything.
    @inlinable @inline(__always)
    func levels(_ k: Int, now: MonotonicInstant) -> (average: Int64, peak: Int64) {
        let t = now.nanoseconds
        guard last[k] != 0 && t > last[k] else { return (averageTokens[k], peakTokens[k]) }
        let elapsed = t - last[k]
        // Refill = min(room, elapsed × rate), with elapsed clamped first: no product or sum
        // exceeds depth + one largest frame (< 2⁶³ for bursts ≤ 1 GiB, rates ≤ 1 Tbit/s).
        let a = averageTokens[k] + min(averageDepth[k] - averageTokens[k], min(elapsed, averageFill[k]) * averageRate[k])
        let p = peakTokens[k] + min(peakDepth[k] - peakTokens[k], min(elapsed, peakFill[k]) * peakRate[k])
        return (a, p)
    }

    /// Whether a frame of `bytes` may cross `port` in `direction` at `now` (the question;
    /// changes nothing). Always true for a direction that is not shaped.
    @inlinable @inline(__always)
    public func wouldAdmit(port: Int, _ direction: ShapingDirection, bytes: Int, now: MonotonicInstant) -> Bool {
        let k = Self.slot(port, direction)
        guard port < portCount, averageRate[k] != 0 else { return true }
        let cost = Int64(bytes) * TrafficShaper.tokensPerByte
        let (a, p) = levels(k, now: now)
        // A frame larger than a bucket passes when that bucket is full (and borrows).
        return a >= min(cost, averageDepth[k]) && p >= min(cost, peakDepth[k])
    }

    /// Charges a frame of `bytes` to `port`'s `direction` at `now` (the effect, after
    /// `wouldAdmit` said yes).
    @inlinable @inline(__always)
    public func take(port: Int, _ direction: ShapingDirection, bytes: Int, now: MonotonicInstant) {
        let k = Self.slot(port, direction)
        guard port < portCount, averageRate[k] != 0 else { return }
        let cost = Int64(bytes) * TrafficShaper.tokensPerByte
        let (a, p) = levels(k, now: now)
        averageTokens[k] = a - cost
        peakTokens[k] = p - cost
        last[k] = max(last[k], now.nanoseconds)
    }

    /// Takes over the buckets of the ports that survive a live reload (`newIndex[old port]`,
    /// -1: gone) wherever the direction's limits are the same (rates and depths): their
    /// tokens and refill time carry over, so a reload never hands a shaped guest a fresh
    /// burst. A direction whose limits changed, or that was not shaped before, starts full
    /// (as at `up`). Control path, under the datapath lock.
    public func carryOver(from old: TrafficShaper, newIndex: [Int]) {
        for (i, j) in newIndex.enumerated() where j >= 0 && j < portCount && i < old.portCount {
            for d in [ShapingDirection.ingress, .egress] {
                let k = Self.slot(j, d), o = Self.slot(i, d)
                guard averageRate[k] != 0, averageRate[k] == old.averageRate[o], peakRate[k] == old.peakRate[o],
                      averageDepth[k] == old.averageDepth[o], peakDepth[k] == old.peakDepth[o] else { continue }
                averageTokens[k] = old.averageTokens[o]
                peakTokens[k] = old.peakTokens[o]
                last[k] = old.last[o]
            }
        }
    }

    /// Bytes the average and peak buckets of `port`'s `direction` hold at `now` (negative:
    /// in debt), or nil when it is not shaped. For `trace`.
    public func available(port: Int, _ direction: ShapingDirection, now: MonotonicInstant) -> (average: Int64, peak: Int64)? {
        guard shapes(port: port, direction) else { return nil }
        let (a, p) = levels(Self.slot(port, direction), now: now)
        return (a / TrafficShaper.tokensPerByte, p / TrafficShaper.tokensPerByte)
    }
}

/// The bytes a frame of `length` has once `rewrite` is applied: what egress shaping charges
/// (the frame as it leaves, tag pushed or stripped).
@inlinable @inline(__always)
public func egressLength(_ length: Int, _ rewrite: EgressRewrite) -> Int {
    length - rewrite.strip + (rewrite.push == nil ? 0 : 4)
}
