import Model

/// OVS's "gratuitous ARP lock" for switch-independent teaming: remembers, per (VLAN, MAC),
/// when the switch (notify-switches) or a local guest last announced the MAC with a GARP or
/// RARP. Within `TeamState.announcementLock` such an announcement coming back in on
/// an uplink is our own echo, not a guest that moved away.
///
/// A fixed table of 1024 timestamps indexed by a hash of (VLAN, MAC): no allocation per
/// frame, O(1). Two MACs that share a slot share a lock, which errs on the safe side (an
/// echo is never taken for a move; a real move is then recognised by the next announcement
/// after the lock ends: QEMU sends five over ~1 s, and guests re-announce).
///
/// Owned by the datapath thread (the control path stamps it under the datapath lock).
public final class AnnouncementLock {
    @usableFromInline static let slots = 1024
    @usableFromInline let stamps: UnsafeMutablePointer<Int64>   // nanoseconds

    public init() {
        stamps = .allocate(capacity: Self.slots)
        stamps.initialize(repeating: Int64.min / 2, count: Self.slots)
    }
    deinit { stamps.deallocate() }

    @inlinable @inline(__always)
    static func slot(_ vlan: VLANID, _ mac: MACAddress) -> Int {
        Int(teamHash(UInt64(vlan.rawValue) << 48 | mac.rawValue) & UInt64(slots - 1))
    }

    /// Records an announcement of `mac` in `vlan` at `now`.
    @inlinable
    public func stamp(vlan: VLANID, mac: MACAddress, now: MonotonicInstant) { stamps[Self.slot(vlan, mac)] = now.nanoseconds }

    /// True within `TeamState.announcementLock` of the last `stamp` for (vlan, mac).
    @inlinable
    public func isLocked(vlan: VLANID, mac: MACAddress, now: MonotonicInstant) -> Bool {
        now.nanoseconds - stamps[Self.slot(vlan, mac)] < TeamState.announcementLockNanoseconds
    }
}

/// What `decide` needs to know about a switch's team for one frame: the current state, the
/// announcement lock and the time. The datapath builds one per batch.
public struct TeamContext {
    public var state: TeamState
    public var locks: AnnouncementLock
    public var now: MonotonicInstant
    @inlinable public init(state: TeamState, locks: AnnouncementLock, now: MonotonicInstant) {
        self.state = state; self.locks = locks; self.now = now
    }
}
