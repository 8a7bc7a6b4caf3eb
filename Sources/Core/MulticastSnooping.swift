import Model

/// IGMP/MLD snooping of a switch (`SwitchPlan.multicast`; nil: off, multicast floods).
///
/// Open vSwitch's `mcast_snooping` semantics (RFC 4541): group membership is learned per
/// VLAN from IGMPv1/v2/v3 and MLDv1/v2 reports and leaves; a registered group's traffic goes
/// to its member ports and to the multicast-router ports only; reports and leaves go to
/// router ports only; queries flood (and make their port a router port); link-local groups
/// (224.0.0.0/24, IPv6 scope ≤ 2) and unregistered groups flood, as OVS does by default
/// (`mcast-snooping-disable-flood-unregistered=false`). A leave removes the port's
/// membership at once (OVS; no last-member query). No per-source (SSM) state: see
/// `MembershipRecord.isLeave`.
///
/// Topology keys (switch): `multicast-snooping: true` turns it on; `multicast-membership-
/// interval` → `membershipInterval` (and, through `init(membershipInterval:…)`, the query
/// timers); `multicast-router-ports` → `routerPorts`; `multicast-static-groups` →
/// `staticGroups`; `multicast-querier: true` → `querier` (`multicast-querier-source` →
/// `MulticastQuerierSettings.ipv4Source`).
public struct MulticastSnooping: Hashable, Sendable {
    /// Group membership interval: a membership not refreshed by a report this long ages out
    /// (RFC 3376 §8.4: robustness × query interval + query response interval = 260 s).
    public var membershipInterval: Duration
    /// How long a port stays a multicast-router port after the last query it brought (RFC
    /// 3376 §8.5's other querier present interval: robustness × query interval + half the
    /// query response interval = 255 s).
    public var routerInterval: Duration
    /// Ports that are always multicast-router ports (in every VLAN they carry): the
    /// topology's `multicast-router-ports`, and — when the overlay lands — every tunnel port,
    /// so groups are not pruned across hosts. Uplinks are router ports without being listed.
    public var routerPorts: [PortIndex]
    /// Memberships that never age.
    public var staticGroups: [StaticMulticastGroup]
    /// The querier, when the switch sends general queries itself (nil: it does not).
    public var querier: MulticastQuerierSettings?
    /// Most groups (VLAN, group) registered at once (Open vSwitch's default table size).
    /// Beyond it a join is refused and counted; the group keeps flooding.
    public var groupCapacity: Int
    /// Most (group, port) memberships at once; beyond it, refused and counted.
    public var membershipCapacity: Int
    /// Most dynamic (VLAN, router port) entries at once; beyond it, refused and counted.
    public var routerCapacity: Int

    /// - Parameters:
    ///   - membershipInterval: the group membership interval (default 260 s; ≥ 1 s).
    ///   - routerInterval: default: the other querier present interval that goes with it
    ///     (robustness 2 × query interval + query response interval / 2).
    public init(membershipInterval: Duration = .seconds(260), routerInterval: Duration? = nil, routerPorts: [PortIndex] = [],
                staticGroups: [StaticMulticastGroup] = [], querier: MulticastQuerierSettings? = nil,
                groupCapacity: Int = 2048, membershipCapacity: Int = 8192, routerCapacity: Int = 1024) {
        precondition(membershipInterval >= .seconds(1), "the membership interval is at least a second")
        precondition(groupCapacity > 0 && membershipCapacity > 0 && routerCapacity > 0)
        self.membershipInterval = membershipInterval
        let timers = MulticastTimers(membershipInterval: membershipInterval)
        self.routerInterval = routerInterval ?? timers.otherQuerierPresentInterval
        self.routerPorts = routerPorts; self.staticGroups = staticGroups; self.querier = querier
        self.groupCapacity = groupCapacity; self.membershipCapacity = membershipCapacity; self.routerCapacity = routerCapacity
    }
}

/// The RFC 3376 §8 / RFC 3810 §9 timers that follow from a group membership interval, with
/// robustness 2: query response interval = min(10 s, GMI / 4); query interval = (GMI − query
/// response interval) / 2 (so GMI = 2 × QI + QRI, §8.4); other querier present interval =
/// 2 × QI + QRI / 2 (§8.5); startup query interval = QI / 4 (§8.6). For the default 260 s:
/// 10 s, 125 s, 255 s and 31.25 s, RFC 3376's defaults.
public struct MulticastTimers: Hashable, Sendable {
    public var membershipInterval: Duration
    public var queryResponseInterval: Duration
    public var queryInterval: Duration
    public var otherQuerierPresentInterval: Duration
    public var startupQueryInterval: Duration
    public var robustness: Int
    public init(membershipInterval gmi: Duration) {
        let g = gmi.nanosecondsCount
        let qri = min(10_000_000_000, g / 4)
        let qi = max(1_000_000, (g - qri) / 2)
        membershipInterval = gmi
        queryResponseInterval = .nanoseconds(qri)
        queryInterval = .nanoseconds(qi)
        otherQuerierPresentInterval = .nanoseconds(2 * qi + qri / 2)
        startupQueryInterval = .nanoseconds(max(1_000_000, qi / 4))
        robustness = 2
    }
}

/// A membership that never ages (`multicast-static-groups`).
public struct StaticMulticastGroup: Hashable, Sendable {
    /// The learning VLAN (a private VLAN's primary for its secondaries).
    public var vlan: VLANID
    /// An IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group, not link-local scope.
    public var group: WireIPAddress
    public var ports: [PortIndex]
    public init(vlan: VLANID, group: WireIPAddress, ports: [PortIndex]) { self.vlan = vlan; self.group = group; self.ports = ports }
}

/// The switch's own querier (`multicast-querier: true`), for guest-only networks that have
/// no multicast router to send queries.
///
/// It sends general queries on every VLAN of the switch that has a guest port (a private
/// VLAN's on its primary, which reaches every port of it), out of guest ports only: uplinks
/// lead to a physical network whose routers query for themselves. It stands down per VLAN
/// and family while another querier with a lower or equal address is heard (RFC 3376 §6.6.2,
/// RFC 3810 §7.6.2; "or equal" so two 0.0.0.0 queriers do not both query), for the other
/// querier present interval.
public struct MulticastQuerierSettings: Hashable, Sendable {
    /// The IGMP queries' IPv4 source, host order (default 0.0.0.0, as Linux's bridge does).
    public var ipv4Source: UInt32
    /// The queries' Ethernet source, and the MLD source's interface identifier (EUI-64).
    public var mac: MACAddress
    /// IGMP version of the queries: 2 or 3 (default 3; IGMPv2 hosts answer v3 queries too,
    /// RFC 3376 §7.1).
    public var igmpVersion: Int
    /// The timers (from the membership interval).
    public var timers: MulticastTimers

    public init(ipv4Source: UInt32 = 0, mac: MACAddress, igmpVersion: Int = 3, timers: MulticastTimers) {
        precondition(igmpVersion == 2 || igmpVersion == 3, "IGMP query version 2 or 3")
        self.ipv4Source = ipv4Source; self.mac = mac; self.igmpVersion = igmpVersion; self.timers = timers
    }

    /// The settings for switch `switchName` of topology `topology`: the MAC is derived from
    /// the names (locally administered, `02:` + 40 bits of FNV-1a), so it is stable across
    /// restarts and differs between switches.
    public static func derived(topology: String, switchName: String, ipv4Source: UInt32 = 0,
                               membershipInterval: Duration = .seconds(260)) -> MulticastQuerierSettings {
        let mac = MACAddress(rawValue: 0x0200_0000_0000 | (FNV1a.hash64("\(topology)/\(switchName)/querier") & 0xFF_FFFF_FFFF))
        return MulticastQuerierSettings(ipv4Source: ipv4Source, mac: mac, timers: MulticastTimers(membershipInterval: membershipInterval))
    }

    /// The MLD queries' source: the link-local address of `mac` (RFC 3810 §5: hosts drop
    /// queries from any other source).
    public var mldSource: WireIPAddress { .linkLocal(eui64: mac) }

    /// The querier's own address in `family`.
    public func source(_ family: IPFamily) -> WireIPAddress {
        family == .ipv4 ? WireIPAddress(ipv4: ipv4Source) : mldSource
    }
}

extension SwitchPlan {
    /// IGMP/MLD snooping (nil: off).
    @inlinable public var multicast: MulticastSnooping? { storage.multicast }
}
