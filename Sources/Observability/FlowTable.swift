import Model

/// A flow's counters as handed to the exporter when it expires (an IPFIX data record).
public struct FlowRecord: Equatable, Sendable {
    /// Why the record was produced (`flowEndReason`, IE 136, RFC 5102 values).
    public enum EndReason: UInt8, Sendable {
        /// No frame for the idle timeout.
        case idleTimeout = 1
        /// Still active after the active timeout: a partial record, the flow goes on.
        case activeTimeout = 2
        /// The exporter is shutting down (or was told to flush).
        case forcedEnd = 4
    }
    /// The flow (addresses, ports, MACs, VLAN, interfaces).
    public var key: FlowKey
    /// Frames accounted since the last record of this flow (`packetDeltaCount`, IE 2).
    public var packets: UInt64
    /// Bytes of those frames, Ethernet header included (`octetDeltaCount`, IE 1).
    public var octets: UInt64
    /// First and last frame of this record, Unix epoch milliseconds (IEs 152, 153).
    public var startMilliseconds: UInt64
    public var endMilliseconds: UInt64
    /// `flowEndReason` (IE 136).
    public var reason: EndReason

    public init(key: FlowKey, packets: UInt64, octets: UInt64, startMilliseconds: UInt64, endMilliseconds: UInt64, reason: EndReason) {
        self.key = key; self.packets = packets; self.octets = octets
        self.startMilliseconds = startMilliseconds; self.endMilliseconds = endMilliseconds; self.reason = reason
    }
}

/// 1-in-N count-based frame sampling (RFC 5475 §5.1 "systematic count-based", selector
/// algorithm 1): every Nth frame a worker carries is selected. One sampler per datapath
/// worker, so the datapath never shares it; N = 1 selects every frame.
public struct FlowSampler: Sendable {
    /// N: one frame in `interval` is selected (1…2³²−1).
    public let interval: UInt32
    @usableFromInline var countdown: UInt32

    /// - Parameter interval: N ≥ 1 (0 is taken as 1).
    public init(interval: UInt32) {
        self.interval = max(1, interval)
        countdown = self.interval
    }

    /// Counts one frame; true when it is the one to account (the Nth, 2Nth, …).
    @inlinable @inline(__always)
    public mutating func select() -> Bool {
        countdown &-= 1
        if countdown == 0 { countdown = interval; return true }
        return false
    }
}

/// The flows one datapath worker has seen, bounded and allocated once.
///
/// **What.** Open addressing with linear probing over a power-of-two array of slots, twice
/// the flow capacity (so the load factor stays ≤ ½). A slot holds the 64-byte `FlowKey`, the
/// counters and the home index + 1 (0 = empty). Nothing on `account` allocates: the slots are
/// allocated in `init` and never grow.
///
/// **Full.** When `capacity` flows are tracked, or a probe chain would exceed `maxProbe`
/// slots (a hostile or unlucky hash), a frame of a new flow is counted in `notTracked` and
/// otherwise ignored; frames of existing flows are still counted. Expiry makes room again.
/// The hash is seeded per table at random, so a guest cannot aim its flows at one chain.
///
/// **Expiry** (`expire`, on the control tick, never per frame) walks all slots: a flow idle
/// for `idleTimeout` is exported and removed (backward-shift deletion, no tombstones); a
/// flow older than `activeTimeout` since its record started is exported as a partial record
/// and its counters restart. That walk costs O(slots) once per tick (about 1 ms per 100 000
/// slots here), which is why it is not on the frame path.
///
/// **Threads.** One owner: the worker that accounts frames, or whoever holds the datapath
/// lock (accounting happens while deciding a batch; `expire` runs under the same lock).
public final class FlowTable {
    /// The most flows tracked at once.
    public let capacity: Int
    /// The longest probe chain `account` walks before counting a frame as not tracked.
    public let maxProbe: Int
    @usableFromInline let slotCount: Int
    @usableFromInline let mask: Int
    @usableFromInline let seed: UInt64
    @usableFromInline let slots: UnsafeMutablePointer<Slot>

    /// Flows currently tracked.
    public private(set) var count = 0
    /// Frames accounted into a tracked flow.
    public private(set) var accountedFrames: UInt64 = 0
    /// Frames of new flows that found the table full (or a probe chain too long).
    public private(set) var notTracked: UInt64 = 0
    @usableFromInline var anomalyCounts: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    @usableFromInline
    struct Slot {
        @usableFromInline var key: FlowKey
        @usableFromInline var packets: UInt64
        @usableFromInline var octets: UInt64
        @usableFromInline var first: UInt64
        @usableFromInline var last: UInt64
        /// Home slot index + 1; 0 marks an empty slot.
        @usableFromInline var home: Int
    }

    /// - Parameters:
    ///   - capacity: flows tracked at most (1…16 777 216). Memory: 2 × next power of two ×
    ///     112 bytes (65 536 flows: 14.7 MB).
    ///   - maxProbe: longest probe chain (default 64).
    ///   - seed: hash seed; random unless a test fixes it.
    public init(capacity: Int, maxProbe: Int = 64, seed: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        precondition((1...(1 << 24)).contains(capacity), "FlowTable capacity must be 1…16777216")
        self.capacity = capacity
        var slots = 2
        while slots < capacity * 2 { slots <<= 1 }
        slotCount = slots
        mask = slots - 1
        self.maxProbe = max(1, min(maxProbe, slots))
        self.seed = seed
        self.slots = .allocate(capacity: slots)
        self.slots.initialize(repeating: Slot(key: FlowKey(), packets: 0, octets: 0, first: 0, last: 0, home: 0), count: slots)
    }

    deinit {
        slots.deinitialize(count: slotCount)
        slots.deallocate()
    }

    /// How often each parse anomaly was seen (`runt` frames are not accounted at all).
    public func anomalies(_ a: FlowParseAnomaly) -> UInt64 {
        switch a {
        case .runt: return anomalyCounts.0
        case .truncatedNetworkHeader: return anomalyCounts.1
        case .badIPVersion: return anomalyCounts.2
        case .truncatedTransportHeader: return anomalyCounts.3
        }
    }

    /// Counts one (sampled) frame into its flow. The datapath calls it for each frame the
    /// worker's `FlowSampler` selects, after deciding it, with the frame as received.
    ///
    /// - Parameters:
    ///   - frame: the frame from its Ethernet header (no virtio-net header).
    ///   - ingress: stable interface ID of the receiving port (`InterfaceRegistry`).
    ///   - egress: stable interface ID of the egress port, 0 for a flooded frame.
    ///   - vlan: the switch's VLAN of the frame.
    ///   - length: bytes on the wire (for a GSO frame, the whole super-frame).
    ///   - now: Unix epoch milliseconds (the batch clock).
    /// Allocates nothing, takes no lock, never traps. Not `@inlinable`: one direct call per
    /// sampled frame keeps the table's layout private to this module.
    public func account(frame: UnsafeRawBufferPointer, ingress: UInt32, egress: UInt32, vlan: VLANID, length: Int, now: UInt64) {
        var anomaly: FlowParseAnomaly? = nil
        let k = FlowKey.of(frame: frame, ingress: ingress, egress: egress, vlan: vlan, anomaly: &anomaly)
        if let a = anomaly {
            switch a {
            case .runt: anomalyCounts.0 &+= 1
            case .truncatedNetworkHeader: anomalyCounts.1 &+= 1
            case .badIPVersion: anomalyCounts.2 &+= 1
            case .truncatedTransportHeader: anomalyCounts.3 &+= 1
            }
        }
        guard let key = k else { return }
        account(key: key, length: length, now: now)
    }

    /// Counts one frame of `key` (see `account(frame:…)`); for callers that built the key.
    public func account(key: FlowKey, length: Int, now: UInt64) {
        let home = Int(truncatingIfNeeded: key.hash(seed: seed)) & mask
        var i = home
        var probes = 0
        while probes < maxProbe {
            let s = slots + i
            if s.pointee.home == 0 {
                guard count < capacity else { break }
                s.pointee = Slot(key: key, packets: 1, octets: UInt64(length), first: now, last: now, home: home + 1)
                count += 1
                accountedFrames &+= 1
                return
            }
            if s.pointee.key == key {
                if s.pointee.packets == 0 { s.pointee.first = now }
                s.pointee.packets &+= 1
                s.pointee.octets &+= UInt64(length)
                s.pointee.last = now
                accountedFrames &+= 1
                return
            }
            i = (i + 1) & mask
            probes += 1
        }
        notTracked &+= 1
    }

    /// Exports flows whose time is up and makes room. Runs on the control tick (allocates
    /// only to grow `records`).
    ///
    /// - Parameters:
    ///   - now: Unix epoch milliseconds.
    ///   - idleTimeout: milliseconds without a frame after which a flow ends.
    ///   - activeTimeout: milliseconds after which a long flow gets a partial record.
    ///   - records: receives one `FlowRecord` per expired flow or partial record.
    public func expire(now: UInt64, idleTimeout: UInt64, activeTimeout: UInt64, into records: inout [FlowRecord]) {
        var i = 0
        while i < slotCount {
            let s = slots + i
            guard s.pointee.home != 0 else { i += 1; continue }
            if now &- s.pointee.last >= idleTimeout && now >= s.pointee.last {
                if s.pointee.packets > 0 { records.append(record(s.pointee, .idleTimeout)) }
                remove(at: i)
                continue   // another entry may have shifted into slot i
            }
            if s.pointee.packets > 0 && now >= s.pointee.first && now - s.pointee.first >= activeTimeout {
                records.append(record(s.pointee, .activeTimeout))
                s.pointee.packets = 0
                s.pointee.octets = 0
            }
            i += 1
        }
    }

    /// Exports every flow with counts and empties the table (shutdown, or a switch removed).
    public func flush(into records: inout [FlowRecord]) {
        for i in 0..<slotCount where slots[i].home != 0 {
            if slots[i].packets > 0 { records.append(record(slots[i], .forcedEnd)) }
            slots[i].home = 0
        }
        count = 0
    }

    private func record(_ s: Slot, _ reason: FlowRecord.EndReason) -> FlowRecord {
        FlowRecord(key: s.key, packets: s.packets, octets: s.octets, startMilliseconds: s.first, endMilliseconds: s.last, reason: reason)
    }

    /// Backward-shift deletion (Knuth 6.4 algorithm R): pull later members of the probe
    /// chain into the hole so lookups never need tombstones.
    private func remove(at index: Int) {
        var hole = index
        var j = index
        while true {
            j = (j + 1) & mask
            let home = slots[j].home
            if home == 0 { break }
            let h = home - 1
            // Move j into the hole when its home is not cyclically inside (hole, j].
            let distanceToHole = (j - hole) & mask
            let distanceToHome = (j - h) & mask
            if distanceToHome >= distanceToHole {
                slots[hole] = slots[j]
                hole = j
            }
        }
        slots[hole].home = 0
        count -= 1
    }
}
