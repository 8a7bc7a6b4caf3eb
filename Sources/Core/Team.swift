import Model

/// NIC teaming: which uplink (team member) a frame leaves by, which uplink may bring a
/// broadcast in, and which MACs to announce after a failover.
///
/// ## What it is
/// A switch's uplinks form one team of physical NICs, numbered 0..<n in the order of the
/// topology's `nics`. The team is **switch-independent** (VMware's default, OVS `balance-slb`
/// / `active-backup`): the physical switch sees n unrelated ports, so each guest MAC must
/// appear on one uplink only, and every broadcast the physical switch floods arrives once
/// per uplink. The one exception is `ipHash`, which needs switch-*dependent* teaming.
///
/// ## Slots: VMware's active / standby semantics
/// The `active` list has one **slot** per entry (`failoverOrder`: one slot in all). Slot i
/// is *owned* by `active[i]`; it is *held* by a healthy member, or vacant.
/// - A healthy owner holds its own slot. When it fails, the first free healthy member in
///   failover order (`active` then `standby`) takes the slot: a standby replaces a failed
///   active member one-for-one, so the number of uplinks in use stays the same.
/// - `failback: true`: a recovered owner takes its slot back at once; the stand-in returns to
///   standby. `failback: false`: the stand-in keeps the slot until *it* fails; the recovered
///   owner idles (it is then the first candidate when a slot falls vacant).
///
/// A frame's key (guest port, source MAC hash, IP pair hash) picks a *home slot*,
/// `key % slots`. When the home slot is held, its holder carries the frame; when it is
/// vacant, the frame spreads over the holders (`holders[(key / slots) % holders.count]`).
/// So a guest moves only when its own home slot changes hands (or, while vacant, when the
/// set of holders changes): never because of a change elsewhere in the team. That is
/// stronger than "port % healthy members", which moves most guests on any failure.
///
/// ## Policies
/// - `portID` (default): key = the guest's switch port index. A guest is pinned to one
///   uplink; precomputed per port in `TeamState.assignment`.
/// - `srcMAC`: key = hash of the frame's source MAC (a guest with several MACs may use
///   several uplinks).
/// - `ipHash`: key = hash of IPv4 source and destination (other frames: the source MAC).
///   One guest uses every uplink, so the physical switch sees its MAC on several ports at
///   once: this **requires static link aggregation upstream** (Cisco EtherChannel "mode on",
///   a static LAG; not LACP, which this switch does not speak). With the LAG the physical
///   switch itself sends each broadcast down one member and never reflects our own frames
///   back into the LAG, so ipHash has no designated receiver (see `admission`) and no
///   notify-switches (the MAC lives on the LAG, not on one member).
/// - `failoverOrder`: one slot; everything leaves by its holder: the first healthy member of
///   `active` then `standby` (with `failback: false`, the current one until it fails).
///
/// ## Reflection guards (switch-independent teaming)
/// Open vSwitch's bonding documentation (`Documentation/topics/bonding.rst`, "SLB bonding")
/// explains the two loops a switch-independent team must break:
/// 1. The physical switch floods a broadcast to every uplink: accept it from one uplink
///    only, the VLAN's **designated receiver** (`designatedReceiver(vlan:)`), the member a
///    frame keyed by the VLAN would leave by. Per VLAN, so broadcast reception spreads too.
/// 2. A guest's broadcast leaving by uplink A comes back in by uplink B (the physical switch
///    floods it there too). A frame arriving on an uplink whose source MAC is learned on a
///    guest port is such a reflection and is dropped — except a gratuitous ARP or RARP,
///    which announces that the MAC really moved (a guest migrated to another host). The
///    caller must not treat *our own* announcements as moves: like OVS's grat-ARP lock it
///    passes `announcementLocked` for a MAC the switch or the guest announced recently
///    (`TeamState.announcementLock`).
///
/// ## Threads
/// `TeamState` is an immutable value: the control tick computes a new one when health or
/// configuration changes and the datapath swaps it in between batches, like the plan.
/// Every per-frame query is allocation-free and O(1).
/// How traffic is spread over the members of an uplink team: an uplink's `policy:` in the
/// topology (the raw values are the YAML spelling) and the plan's `TeamConfig.policy`, one
/// type for both.
public enum TeamPolicy: String, CaseIterable, Sendable {
    /// By the originating port (VMware's "route based on originating virtual port"; the default).
    case portID = "port-id"
    /// By a hash of the source MAC.
    case srcMAC = "src-mac"
    /// By a hash of the IPv4 source and destination (needs a static LAG upstream).
    case ipHash = "ip-hash"
    /// Only the first healthy NIC of `active`, then `standby`, carries traffic.
    case failoverOrder = "failover-order"
}

/// Why a member is not carrying traffic.
public enum MemberDownReason: String, Equatable, Sendable {
    /// The NIC reports no carrier (link-status detection).
    case noCarrier = "no-carrier"
    /// Beacon probing: the member stopped hearing the other members' probes.
    case beaconLost = "beacon-lost"
    /// The link is administratively down, or missing.
    case administrativelyDown = "admin-down"
}

/// A member's health as the control path last saw it.
public enum MemberHealth: Equatable, Sendable {
    case up
    case down(MemberDownReason)
    @inlinable public var isUp: Bool { self == .up }
}

/// What a member does right now, for `tapestry ports`.
public enum MemberRole: String, Equatable, Sendable {
    /// Holds a slot: carries traffic.
    case active
    /// Healthy, holds no slot (a standby, or a recovered active with failback off).
    case standby
    /// Not healthy.
    case down
    /// In neither `active` nor `standby`: never used.
    case unused
}

/// The team as configured (validated by Topology).
public struct TeamConfig: Hashable, Sendable {
    /// Number of member NICs; members are 0..<memberCount.
    public var memberCount: Int
    public var policy: TeamPolicy
    /// Ordered active members (failover order); one slot each (`failoverOrder`: one slot).
    public var active: [Int]
    /// Ordered standby members: used only in place of failed active ones.
    public var standby: [Int]
    /// A recovered active member takes its traffic back (VMware's default).
    public var failback: Bool
    /// Send RARPs for the MACs behind an uplink that newly carries them.
    public var notifySwitches: Bool

    /// - `active` nil: every member not in `standby` (in member order).
    /// - `standby` nil: every member not in `active` (SPEC: "others are standby").
    public init(memberCount: Int, policy: TeamPolicy = .portID, active: [Int]? = nil, standby: [Int]? = nil,
                failback: Bool = true, notifySwitches: Bool = true) {
        precondition(memberCount >= 0 && memberCount <= Int(Int16.max))
        let all = Array(0..<memberCount)
        let s0 = standby ?? []
        let a = active ?? all.filter { !s0.contains($0) }
        let s = standby ?? all.filter { !a.contains($0) }
        precondition((a + s).allSatisfy { (0..<memberCount).contains($0) }, "team member out of range")
        precondition(Set(a + s).count == a.count + s.count, "a member is listed twice")
        self.memberCount = memberCount; self.policy = policy; self.active = a; self.standby = s
        self.failback = failback; self.notifySwitches = notifySwitches
    }

    /// Slots: one per active member, one in all for `failoverOrder` (none without members).
    public var slotCount: Int {
        if active.isEmpty && standby.isEmpty { return 0 }
        return policy == .failoverOrder ? 1 : max(active.count, 1)
    }

    /// `active` then `standby`.
    public var orderedMembers: [Int] { active + standby }
}

/// What `admission` says about a frame arriving on an uplink.
///
/// Proposed `DropReason` cases for wiring: `notDesignatedReceiver`
/// ("team-not-designated-receiver") and `reflectedOwnSource` ("team-reflected-source").
public enum TeamAdmission: Equatable, Sendable {
    case accept
    /// A broadcast/multicast on an uplink that is not its VLAN's designated receiver: the
    /// same frame also arrives on the designated one.
    case dropNotDesignatedReceiver
    /// The source MAC is learned on a guest port: our own frame, reflected by the physical
    /// switch.
    case dropReflectedOwnSource
}

/// One MAC table row as the team sees it (a guest-side location).
public struct TeamMACEntry: Hashable, Sendable {
    public var vlan: VLANID
    public var mac: MACAddress
    public var port: PortIndex
    public init(vlan: VLANID, mac: MACAddress, port: PortIndex) { self.vlan = vlan; self.mac = mac; self.port = port }
    public init(_ e: MACTable.Entry) { self.init(vlan: e.vlan, mac: e.mac, port: e.port) }
}

/// A (VLAN, MAC) to announce with a RARP on an uplink after it took the MAC over.
public struct TeamAnnouncement: Hashable, Sendable {
    public var vlan: VLANID
    public var mac: MACAddress
    public init(vlan: VLANID, mac: MACAddress) { self.vlan = vlan; self.mac = mac }
}

/// An immutable snapshot of a team: slot holders and per-port assignments.
/// Built by `compute` on the control path; queried per frame without allocation.
public struct TeamState: Equatable, Sendable {
    public let config: TeamConfig
    /// Per member, as given to `compute`.
    public let health: [MemberHealth]
    /// Per slot, the holding member, or -1 when vacant.
    public let slotHolders: [Int16]
    /// The holders of occupied slots, in slot order: the members carrying traffic.
    public let holders: [Int16]
    /// Per switch port, the member carrying the port's traffic under `portID` (and the
    /// port's home choice for the other policies' `carries`); -1: not carried by the team
    /// (an uplink port, a `uplinks: none` port group, or no healthy member).
    public let assignment: [Int16]

    /// OVS's grat-ARP lock (`GRAT_ARP_LOCK_TIME`, 5 s): after the switch or a guest announced
    /// a MAC, a GARP/RARP for it arriving on an uplink is our own echo, not a move.
    public static let announcementLock: Duration = .seconds(5)
    /// `announcementLock` in nanoseconds, for the per-frame comparison.
    @inlinable public static var announcementLockNanoseconds: Int64 { 5_000_000_000 }

    /// Computes the team's state for the current health.
    ///
    /// - Parameters:
    ///   - health: per member (missing members count as administratively down).
    ///   - carriedPorts: the switch ports whose traffic may leave by the team (guest ports
    ///     of port groups with uplinks).
    ///   - portCount: the switch's port count (size of `assignment`).
    ///   - previous: the state being replaced; with `failback: false` slot holders stick.
    ///     Ignored when its configuration differs.
    /// Control path (allocates).
    public static func compute(config: TeamConfig, health: [MemberHealth], carriedPorts: some Sequence<PortIndex> = [],
                               portCount: Int = 0, previous: TeamState? = nil) -> TeamState {
        let n = config.memberCount
        var h = Array(repeating: MemberHealth.down(.administrativelyDown), count: n)
        for i in 0..<min(n, health.count) { h[i] = health[i] }
        let order = config.orderedMembers
        let slots = config.slotCount
        let owners: [Int] = (0..<slots).map { $0 < order.count ? order[$0] : -1 }
        var holder = Array(repeating: -1, count: slots)
        var busy = Array(repeating: false, count: n)
        // Pass 1: who keeps or takes back a slot.
        let prev = (previous?.config == config && previous?.slotHolders.count == slots) ? previous : nil
        for s in 0..<slots {
            let keep: Int
            if !config.failback, let prev { keep = Int(prev.slotHolders[s]) } else { keep = owners[s] }
            if keep >= 0 && keep < n && h[keep].isUp && !busy[keep] { holder[s] = keep; busy[keep] = true }
        }
        // Pass 2: vacant slots, in slot order: the owner if free, else the first free healthy
        // member in failover order.
        for s in 0..<slots where holder[s] < 0 {
            let candidates = [owners[s]] + order
            if let m = candidates.first(where: { $0 >= 0 && h[$0].isUp && !busy[$0] }) {
                holder[s] = m; busy[m] = true
            }
        }
        let holders = holder.filter { $0 >= 0 }.map { Int16($0) }
        var assignment = Array(repeating: Int16(-1), count: portCount)
        let slotHolders = holder.map { Int16($0) }
        for p in carriedPorts where p >= 0 && p < portCount {
            assignment[p] = Int16(Self.member(key: UInt64(p), slotHolders: slotHolders, holders: holders) ?? -1)
        }
        return TeamState(config: config, health: h, slotHolders: slotHolders, holders: holders, assignment: assignment)
    }

    // MARK: - Per-frame queries (no allocation)

    /// The member carrying `key`: its home slot's holder, or, with the home slot vacant,
    /// one of the holders; nil when no member is healthy.
    @inlinable @inline(__always)
    static func member(key: UInt64, slotHolders: [Int16], holders: [Int16]) -> Int? {
        let slots = UInt64(slotHolders.count)
        guard !holders.isEmpty, slots > 0 else { return nil }
        let home = Int(slotHolders[Int(key % slots)])
        if home >= 0 { return home }
        return Int(holders[Int((key / slots) % UInt64(holders.count))])
    }

    /// The member carrying `key` in this state.
    @inlinable
    public func member(key: UInt64) -> Int? { Self.member(key: key, slotHolders: slotHolders, holders: holders) }

    /// The uplink (member) a frame from guest port `port` leaves by; nil when no member is
    /// healthy or the port's traffic never leaves by the team.
    /// - `ipv4`: the IPv4 (source, destination) of the frame, for `ipHash` (`ipv4Pair`).
    @inlinable
    public func uplink(forGuestPort port: PortIndex, source: MACAddress, ipv4: (source: UInt32, destination: UInt32)? = nil) -> Int? {
        switch config.policy {
        case .portID, .failoverOrder:
            guard port >= 0 && port < assignment.count else { return nil }
            let m = Int(assignment[port])
            return m >= 0 ? m : nil
        case .srcMAC:
            guard port >= 0 && port < assignment.count, assignment[port] >= 0 else { return nil }
            return member(key: teamHash(source.rawValue))
        case .ipHash:
            guard port >= 0 && port < assignment.count, assignment[port] >= 0 else { return nil }
            if let ip = ipv4 { return member(key: teamHash(UInt64(ip.source) << 32 | UInt64(ip.destination))) }
            return member(key: teamHash(source.rawValue))
        }
    }

    /// `uplink(forGuestPort:source:ipv4:)` reading the IPv4 pair from the frame itself.
    @inlinable
    public func uplink(forGuestPort port: PortIndex, header: FrameHeader, frame: UnsafeRawBufferPointer) -> Int? {
        uplink(forGuestPort: port, source: header.source, etherType: header.etherType, payloadOffset: header.payloadOffset, frame: frame)
    }

    /// `uplink(forGuestPort:header:frame:)` from the header fields it reads.
    @inlinable
    public func uplink(forGuestPort port: PortIndex, source: MACAddress, etherType: UInt16, payloadOffset: Int,
                       frame: UnsafeRawBufferPointer) -> Int? {
        let ip = config.policy == .ipHash ? ipv4Pair(etherType: etherType, payloadOffset: payloadOffset, frame: frame) : nil
        return uplink(forGuestPort: port, source: source, ipv4: ip)
    }

    /// The member that accepts broadcast and multicast of `vlan` from the physical network:
    /// the member a frame keyed by the VLAN leaves by. nil with `ipHash` (every member
    /// accepts: the upstream LAG sends each frame down one link) or with no healthy member.
    @inlinable
    public func designatedReceiver(vlan: VLANID) -> Int? {
        if config.policy == .ipHash { return nil }
        return member(key: teamHash(UInt64(vlan.rawValue) | 0x5641_0000_0000))
    }

    /// Whether a frame arriving on member `ingressUplink` enters the switch.
    ///
    /// - `sourceLearnedOnGuestPort`: the MAC table has (vlan, source) on a guest port.
    /// - `isGratuitousARPOrRARP`: `isAnnouncement(header:frame:)`.
    /// - `announcementLocked`: the switch (notify-switches) or the guest itself announced
    ///   the source within `announcementLock`: a GARP/RARP is then our own echo.
    @inlinable
    public func admission(ingressUplink: Int, vlan: VLANID, destination: MACAddress, sourceLearnedOnGuestPort: Bool,
                          isGratuitousARPOrRARP: Bool, announcementLocked: Bool = false) -> TeamAdmission {
        if sourceLearnedOnGuestPort && (!isGratuitousARPOrRARP || announcementLocked) {
            return .dropReflectedOwnSource
        }
        if destination.isMulticast, config.policy != .ipHash, designatedReceiver(vlan: vlan) != ingressUplink {
            return .dropNotDesignatedReceiver
        }
        return .accept
    }

    // MARK: - Control-path queries

    /// What member `m` does right now.
    public func role(of m: Int) -> MemberRole {
        guard m >= 0 && m < config.memberCount, config.orderedMembers.contains(m) else { return .unused }
        if holders.contains(Int16(m)) { return .active }
        return health[m].isUp ? .standby : .down
    }

    /// Guest ports whose traffic member `m` carries (`portID`/`failoverOrder`; for the hash
    /// policies, the ports whose home choice is `m` — their frames may spread further).
    /// For `tapestry ports`; allocates.
    public func carries(_ m: Int) -> [PortIndex] {
        assignment.indices.filter { Int(assignment[$0]) == m }
    }

    /// The member carrying a learned guest MAC: for notify-switches. nil for `ipHash`
    /// (per flow; the LAG owns the MAC) and for ports the team does not carry.
    public func uplink(carrying entry: TeamMACEntry) -> Int? {
        guard entry.port >= 0 && entry.port < assignment.count, assignment[entry.port] >= 0 else { return nil }
        switch config.policy {
        case .portID, .failoverOrder: return Int(assignment[entry.port])
        case .srcMAC: return member(key: teamHash(entry.mac.rawValue))
        case .ipHash: return nil
        }
    }

    /// Notify-switches: per member of `new`, the (VLAN, MAC)s of guest entries that it carries
    /// now and did not carry in `old` (for which the runtime sends `rarpFrame`s out of that
    /// member). Empty lists when `notifySwitches` is off. Control path.
    public static func announcements(from old: TeamState, to new: TeamState,
                                     entries: some Sequence<TeamMACEntry>) -> [[TeamAnnouncement]] {
        var out = Array(repeating: [TeamAnnouncement](), count: new.config.memberCount)
        guard new.config.notifySwitches else { return out }
        for e in entries {
            guard let now = new.uplink(carrying: e), now < out.count else { continue }
            if old.uplink(carrying: e) != now { out[now].append(TeamAnnouncement(vlan: e.vlan, mac: e.mac)) }
        }
        return out
    }
}

/// The team's key hash: the splitmix64 finalizer (cheap, and every input bit moves every
/// output bit, so MACs differing only in the last octet still spread).
@inlinable @inline(__always)
public func teamHash(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The IPv4 (source, destination) of an IPv4 frame; nil for anything else or a short frame.
@inlinable
public func ipv4Pair(header: FrameHeader, frame: UnsafeRawBufferPointer) -> (source: UInt32, destination: UInt32)? {
    ipv4Pair(etherType: header.etherType, payloadOffset: header.payloadOffset, frame: frame)
}

/// `ipv4Pair(header:frame:)` from the two header fields it reads (`FrameHeader.etherType`,
/// `FrameHeader.payloadOffset`).
@inlinable
public func ipv4Pair(etherType: UInt16, payloadOffset o: Int, frame: UnsafeRawBufferPointer) -> (source: UInt32, destination: UInt32)? {
    guard etherType == EtherType.ipv4 else { return nil }
    guard frame.count >= o + 20 else { return nil }
    @inline(__always) func be32(_ i: Int) -> UInt32 {
        UInt32(frame[i]) << 24 | UInt32(frame[i + 1]) << 16 | UInt32(frame[i + 2]) << 8 | UInt32(frame[i + 3])
    }
    return (be32(o + 12), be32(o + 16))
}

/// True for a frame announcing its sender's location: any RARP (QEMU's announce after
/// migration, our notify-switches), or a gratuitous ARP (sender IP == target IP, sender
/// hardware address == the frame's source). Pure, no allocation.
@inlinable
public func isAnnouncement(header: FrameHeader, frame: UnsafeRawBufferPointer) -> Bool {
    isAnnouncement(etherType: header.etherType, payloadOffset: header.payloadOffset, source: header.source, frame: frame)
}

/// `isAnnouncement(header:frame:)` from the three header fields it reads
/// (`FrameHeader.etherType`, `.payloadOffset`, `.source`).
@inlinable
public func isAnnouncement(etherType: UInt16, payloadOffset o: Int, source: MACAddress, frame: UnsafeRawBufferPointer) -> Bool {
    if etherType == EtherType.rarp { return true }
    guard etherType == EtherType.arp else { return false }
    guard frame.count >= o + 28 else { return false }
    guard MACAddress(frame, at: o + 8) == source else { return false }
    for i in 0..<4 where frame[o + 14 + i] != frame[o + 24 + i] { return false }
    return true
}
