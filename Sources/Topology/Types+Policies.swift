import Core
import Model

/// One direction of traffic shaping (VMware's semantics): the long-term rate is held to
/// `average`, and up to `burst` bytes may pass at up to `peak`. Excess frames are dropped.
public struct ShapingRate: Sendable, Equatable {
    /// Bits per second.
    public var average: UInt64
    /// Bits per second, ≥ `average` (default: `average`).
    public var peak: UInt64
    /// Bytes; at least the largest frame the port can carry (see `ShapingSpec.minimumBurst`).
    public var burst: Int
    public init(average: UInt64, peak: UInt64, burst: Int) { self.average = average; self.peak = peak; self.burst = burst }
}

/// A port group's traffic shaping (`shaping:`). **Ingress** is traffic entering the
/// switch from the guest; **egress** is traffic the switch sends to the guest (the
/// distributed switch's directions).
public struct ShapingSpec: Sendable, Equatable {
    public var ingress: ShapingRate?
    public var egress: ShapingRate?
    public init(ingress: ShapingRate? = nil, egress: ShapingRate? = nil) { self.ingress = ingress; self.egress = egress }

    /// The smallest `burst` a port can be given, in bytes: its largest frame, so a token
    /// bucket of that depth can always pass one frame and TCP never stalls.
    ///
    /// With offloads (a TSO/GSO frame): 65 593 bytes, a 65 535-byte IPv6 payload (the 16-bit
    /// payload length), its 40-byte header, the 14-byte Ethernet header and one 4-byte
    /// 802.1Q tag. Without offloads: MTU + 18 (Ethernet header and tag).
    public static func minimumBurst(mtu: Int, offloads: Bool) -> Int { offloads ? 65_535 + 40 + 14 + 4 : mtu + 18 }
}

/// A private VLAN (`private-vlans: {PRIMARY: {isolated, community}}`).
public struct PrivateVLANSpec: Sendable, Equatable {
    public var primary: VLANID
    /// The isolated secondary VLAN, if any.
    public var isolated: VLANID?
    /// Community secondary VLANs, in file order.
    public var community: [VLANID]
    public init(primary: VLANID, isolated: VLANID? = nil, community: [VLANID] = []) {
        self.primary = primary; self.isolated = isolated; self.community = community
    }
}

/// What a port of `vlan: {private: ID}` is (802.1Q private VLAN edge, the distributed
/// switch's PVLAN): promiscuous ports talk to all; isolated only to promiscuous ports;
/// community ports to their community and to promiscuous ports.
public enum PrivateVLANRole: Sendable, Equatable, Hashable {
    case promiscuous(primary: VLANID)
    case isolated(primary: VLANID, secondary: VLANID)
    case community(primary: VLANID, secondary: VLANID)

    /// The primary VLAN (MAC learning is shared across a primary and its secondaries).
    public var primary: VLANID {
        switch self {
        case .promiscuous(let p), .isolated(let p, _), .community(let p, _): return p
        }
    }
}

/// A static multicast group membership (`multicast-static-groups`).
public struct MulticastStaticGroupSpec: Sendable, Equatable {
    /// An IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group, not link-local scope.
    public var group: IPAddress
    public var vlan: VLANID
    /// Port names (`GUEST.ethN`, uplink NICs, `link-…`).
    public var ports: [String]
    public init(group: IPAddress, vlan: VLANID, ports: [String]) { self.group = group; self.vlan = vlan; self.ports = ports }
}

/// IGMP/MLD snooping and the querier of a switch. The keys are siblings on the
/// switch: `multicast-snooping`, `multicast-querier`, `multicast-querier-source`,
/// `multicast-membership-interval`, `multicast-router-ports`, `multicast-static-groups`.
public struct MulticastSpec: Sendable, Equatable {
    /// Learn memberships from IGMP/MLD reports and forward groups only to members and router
    /// ports (default false: flood, as today). Open vSwitch's semantics.
    public var snooping: Bool
    /// Send general queries (for a guest-only network with no router). Needs `snooping`.
    public var querier: Bool
    /// The IGMP querier's source address (default `0.0.0.0`, as Linux does). The MLD querier
    /// uses a link-local address derived from the switch (RFC 3810 §5).
    public var querierSource: IPv4Address
    /// Group membership interval, seconds (RFC 3376 §8.4: 2 × 125 s + 10 s = 260 s).
    public var membershipIntervalSeconds: Int
    /// Ports that always count as multicast-router ports.
    public var routerPorts: [String]
    public var staticGroups: [MulticastStaticGroupSpec]
    public init(snooping: Bool = false, querier: Bool = false, querierSource: IPv4Address = IPv4Address(rawValue: 0),
                membershipIntervalSeconds: Int = 260, routerPorts: [String] = [], staticGroups: [MulticastStaticGroupSpec] = []) {
        self.snooping = snooping; self.querier = querier; self.querierSource = querierSource
        self.membershipIntervalSeconds = membershipIntervalSeconds; self.routerPorts = routerPorts; self.staticGroups = staticGroups
    }
}

/// IPFIX flow export of a switch (`flow-export:`, RFC 7011/7012).
public struct FlowExportSpec: Sendable, Equatable {
    /// The collector's host: an IPv4 or IPv6 address, or a DNS name.
    public var collectorHost: String
    /// The collector's UDP port.
    public var collectorPort: Int
    /// A long-lived flow is exported every this many seconds (default 60).
    public var activeTimeoutSeconds: Int
    /// A flow idle this long is exported and forgotten (default 15).
    public var idleTimeoutSeconds: Int
    /// One frame in N is sampled, per worker (default 1: every frame).
    public var sampling: Int
    /// The IPFIX observation domain ID (default 0, RFC 7011 §3.1).
    public var observationDomain: UInt32
    public init(collectorHost: String, collectorPort: Int, activeTimeoutSeconds: Int = 60, idleTimeoutSeconds: Int = 15,
                sampling: Int = 1, observationDomain: UInt32 = 0) {
        self.collectorHost = collectorHost; self.collectorPort = collectorPort
        self.activeTimeoutSeconds = activeTimeoutSeconds; self.idleTimeoutSeconds = idleTimeoutSeconds
        self.sampling = sampling; self.observationDomain = observationDomain
    }
}

/// LLDP on an uplink team (`lldp:`).
public enum LLDPMode: String, Sendable, CaseIterable {
    /// Parse the physical switch's LLDPDUs (default).
    case listen
    /// Send ours, read none.
    case advertise
    case both
    case off
}
