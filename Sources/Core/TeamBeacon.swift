import Model

/// Beacon probing bookkeeping (detection: beacon-probing).
///
/// ## What it is
/// Link status only sees the cable to the first switch. With beacon probing every member
/// sends a probe (`TeamFrames.beaconFrame`) on every VLAN of the switch once per `interval`;
/// the physical network floods it to the other members. A member that hears no probe from
/// any other member on a VLAN for `missLimit` (3) intervals cannot reach the rest of the
/// team there and is down (VMware's rule). Per VLAN, because an upstream trunk may lack one
/// VLAN only.
///
/// ## Complications
/// - Isolation needs a quorum: with two members, a failure of either path silences both
///   (each hears nothing from the other), and nothing tells which one broke. So a member is
///   only declared down when some *other* member still hears probes on that VLAN; when
///   nobody does, no member is blamed (all stay up, like VMware's "shotgun" mode, rather
///   than black-holing the team). Hence `warning` below three members, as VMware warns.
/// - Probes a member hears from itself (sender == receiver) prove nothing and are ignored;
///   so are probes of another team.
///
/// ## Threads
/// Owned by the datapath thread that receives the team's uplink frames (`received` is per
/// frame and allocation-free); `health(now:)` runs on the control tick.
public struct BeaconMonitor: Sendable {
    public let teamID: UInt32
    public let memberCount: Int
    /// The monitored VLANs (every VLAN the switch carries on its uplinks).
    public let vlans: [VLANID]
    /// Probe interval (one second, VMware's).
    public let interval: Duration
    /// Missed intervals before a member is down.
    public let missLimit: Int64
    /// Per VLAN number, its index in `vlans`, or -1.
    @usableFromInline let vlanIndex: [Int16]
    /// `lastHeard[member * vlans.count + vlanIndex]`: when the member last received a probe
    /// from another member on that VLAN (monotonic nanoseconds).
    @usableFromInline var lastHeard: [Int64]
    /// `missLimit × interval` in nanoseconds.
    @usableFromInline let missNanoseconds: Int64

    /// All members count as having heard a probe at `now` (a grace period of `missLimit`
    /// intervals after start).
    public init(teamID: UInt32, memberCount: Int, vlans: [VLANID], now: MonotonicInstant, interval: Duration = .seconds(1), missLimit: Int64 = 3) {
        self.teamID = teamID; self.memberCount = memberCount; self.vlans = vlans
        self.interval = interval; self.missLimit = missLimit
        missNanoseconds = missLimit * interval.nanosecondsCount
        var index = Array(repeating: Int16(-1), count: 4096)
        for (i, v) in vlans.enumerated() { index[Int(v.rawValue)] = Int16(i) }
        vlanIndex = index
        lastHeard = Array(repeating: now.nanoseconds, count: memberCount * vlans.count)
    }

    /// Beacon probing cannot isolate a single failure with fewer than three members.
    public var warning: String? {
        memberCount < 3
            ? "beacon probing needs at least 3 uplinks: with \(memberCount) a single failure cannot be isolated"
            : nil
    }

    /// Records a probe that member `member` received on `vlan`. Per frame, no allocation.
    @inlinable
    public mutating func received(_ beacon: Beacon, on member: Int, vlan: VLANID, now instant: MonotonicInstant) {
        let now = instant.nanoseconds
        guard beacon.teamID == teamID, beacon.sender != member, member >= 0, member < memberCount,
              beacon.sender >= 0, beacon.sender < memberCount else { return }
        let v = Int(vlanIndex[Int(vlan.rawValue)])
        guard v >= 0 else { return }
        let i = member * vlans.count + v
        if now > lastHeard[i] { lastHeard[i] = now }
    }

    /// Gives member `m` a fresh grace period (its link just came back up).
    public mutating func reset(member m: Int, now: MonotonicInstant) {
        guard m >= 0 && m < memberCount else { return }
        for v in vlans.indices { lastHeard[m * vlans.count + v] = now.nanoseconds }
    }

    /// True when member `m` missed `missLimit` probes on VLAN index `v`.
    @inlinable
    func missed(_ m: Int, _ v: Int, now: MonotonicInstant) -> Bool {
        now.nanoseconds - lastHeard[m * vlans.count + v] >= missNanoseconds
    }

    /// Per member: `.up`, or `.down(.beaconLost)` when it missed `missLimit` probes on some
    /// VLAN on which another member still hears probes. Control tick.
    public func health(now: MonotonicInstant) -> [MemberHealth] {
        var out = Array(repeating: MemberHealth.up, count: memberCount)
        for v in vlans.indices {
            let hearing = (0..<memberCount).filter { !missed($0, v, now: now) }
            guard !hearing.isEmpty else { continue }
            for m in 0..<memberCount where missed(m, v, now: now) { out[m] = .down(.beaconLost) }
        }
        return out
    }
}
