/// Why the switch dropped a frame. Every drop has exactly one reason, counted per port
/// (`PortCounters`), shown by `tapestry ports`, and (later) written into drop captures.
/// The `description` is the counter's stable name in `--json` output.
public enum DropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// Shorter than an Ethernet header, or than the tags it announces.
    case runt
    /// Longer than the switch MTU plus Ethernet header and tags.
    case oversize
    /// Source MAC is multicast, broadcast or all-zero: never a sender, never learned.
    case invalidSourceMAC
    /// Destination is an IEEE 802.1D reserved group address (01:80:c2:00:00:0x: STP, LACP, LLDP…).
    case reservedDestination
    /// A tagged frame (any TPID, priority tags included) arrived on an access port.
    case taggedOnAccessPort
    /// A trunk port received a VLAN outside its allowed list.
    case vlanNotAllowed
    /// An untagged (or priority-tagged) frame arrived on a trunk without a native VLAN.
    case untaggedOnTrunk
    /// An 802.1ad S-tag (0x88a8/0x9100) arrived on a trunk; QinQ is not terminated here.
    case serviceTagNotSupported
    /// The destination was learned on the ingress port: sending it back would loop.
    case hairpin
    /// Flooding found no port but the ingress one in the VLAN.
    case noEgressPort
    /// The kernel refused the frame on transmit (counted on the egress port).
    case transmitError
    /// The egress queue was full (EAGAIN/ENOBUFS on transmit; counted on the egress port).
    case transmitQueueFull
    /// A mirror (SPAN) destination port sent a frame: it only receives copies, it never
    /// learns or forwards traffic of its own.
    case mirrorDestinationPort
    /// The guest sent with a source MAC other than its NIC's (security: forged-transmits false).
    case forgedTransmit
    /// Unicast to an address other than the port's configured MAC (security: mac-changes
    /// false; counted on the egress port).
    case macChangeRejected
    /// Over the port's broadcast rate (storm control).
    case broadcastStorm
    /// Over the port's multicast rate (storm control).
    case multicastStorm
    /// Over the port's unknown-unicast rate (storm control).
    case unknownUnicastStorm
    /// A GSO frame or one with a partial checksum for a port without offloads (counted on
    /// the egress port).
    case offloadNotSupported
    /// A frame arrived on an uplink that carries no traffic right now (standby, failed, or
    /// unused): its copies arrive on the active members too (NIC teaming).
    case teamInactiveUplink
    /// A flood (broadcast, multicast, unknown unicast) arrived on an uplink that is not the
    /// VLAN's designated receiver, or a unicast on an uplink other than the one carrying its
    /// destination guest: the physical switch sent the same frame to another member.
    case teamNotDesignatedReceiver
    /// A frame arrived on an uplink with a source MAC learned on a guest port: our own frame
    /// reflected by the physical network (a gratuitous ARP/RARP for a moved MAC excepted).
    case teamReflectedSource
    /// Between an uplink and a port group with `uplinks: none` (either direction).
    case uplinkIsolated
    /// The destination is behind another uplink: uplinks never forward to each other.
    case uplinkToUplink
    /// The frame must leave by the team, and no uplink is healthy.
    case noHealthyUplink
    /// Over the port's ingress traffic-shaping rate (from the guest into the switch).
    case shapingIngress
    /// Over the port's egress traffic-shaping rate (from the switch to the guest; counted on
    /// the egress port).
    case shapingEgress
    /// A known unicast whose destination port the private VLAN matrix forbids (isolated to
    /// isolated, community to another community…), or a trunk that does not carry the
    /// frame's private VLAN.
    case privateVLANNotAllowed
    /// An IGMP message that fails its checks (header, length, checksum, group) with IGMP
    /// snooping on.
    case malformedIGMP
    /// An MLD message (behind a Router Alert) that fails its checks, with MLD snooping on.
    case malformedMLD
    /// Split horizon: a frame from a tunnel is never sent into a tunnel, and
    /// tunnels and uplinks never exchange frames (a known unicast that would; floods just
    /// skip those ports).
    case splitHorizon
    /// The frame is too large for the underlay once encapsulated (VXLAN never fragments,
    /// RFC 7348 §4.3); counted on the tunnel port.
    case underlayMTUExceeded
    /// A vhost-user port whose frontend runs no receive ring (not connected yet, restarting,
    /// or reset): the frame had nowhere to go (counted on the egress port, like
    /// Open vSwitch-DPDK's tx_dropped on a vhost port without a running guest).
    case noFrontend

    public var description: String {
        switch self {
        case .runt: return "runt"
        case .oversize: return "oversize"
        case .invalidSourceMAC: return "invalid-source-mac"
        case .reservedDestination: return "reserved-destination"
        case .taggedOnAccessPort: return "tagged-on-access-port"
        case .vlanNotAllowed: return "vlan-not-allowed"
        case .untaggedOnTrunk: return "untagged-on-trunk"
        case .serviceTagNotSupported: return "service-tag-not-supported"
        case .hairpin: return "hairpin"
        case .noEgressPort: return "no-egress-port"
        case .transmitError: return "transmit-error"
        case .transmitQueueFull: return "transmit-queue-full"
        case .mirrorDestinationPort: return "mirror-destination-port"
        case .forgedTransmit: return "forged-transmit"
        case .macChangeRejected: return "mac-change-rejected"
        case .broadcastStorm: return "storm-control-broadcast"
        case .multicastStorm: return "storm-control-multicast"
        case .unknownUnicastStorm: return "storm-control-unknown-unicast"
        case .offloadNotSupported: return "offload-not-supported"
        case .teamInactiveUplink: return "team-inactive-uplink"
        case .teamNotDesignatedReceiver: return "team-not-designated-receiver"
        case .teamReflectedSource: return "team-reflected-source"
        case .uplinkIsolated: return "uplink-isolated"
        case .uplinkToUplink: return "uplink-to-uplink"
        case .noHealthyUplink: return "no-healthy-uplink"
        case .shapingIngress: return "shaping-ingress"
        case .shapingEgress: return "shaping-egress"
        case .privateVLANNotAllowed: return "private-vlan-not-allowed"
        case .malformedIGMP: return "malformed-igmp"
        case .malformedMLD: return "malformed-mld"
        case .splitHorizon: return "split-horizon"
        case .underlayMTUExceeded: return "underlay-mtu-exceeded"
        case .noFrontend: return "no-frontend"
        }
    }

    /// A sentence for humans (trace output, capture comments).
    public var explanation: String {
        switch self {
        case .runt: return "runt frame (shorter than its Ethernet header)"
        case .oversize: return "oversize frame (longer than the switch MTU allows)"
        case .invalidSourceMAC: return "source MAC is multicast or zero"
        case .reservedDestination: return "reserved IEEE 802.1D destination (01:80:c2:00:00:0x)"
        case .taggedOnAccessPort: return "tagged frame on access port"
        case .vlanNotAllowed: return "VLAN not allowed on this trunk"
        case .untaggedOnTrunk: return "untagged frame on trunk without native VLAN"
        case .serviceTagNotSupported: return "802.1ad service tag on trunk"
        case .hairpin: return "destination is behind the ingress port (hairpin)"
        case .noEgressPort: return "no other port in the VLAN"
        case .transmitError: return "transmit error"
        case .transmitQueueFull: return "transmit queue full"
        case .mirrorDestinationPort: return "frame from a mirror destination port"
        case .forgedTransmit: return "forged transmit (source MAC is not the NIC's MAC)"
        case .macChangeRejected: return "destination is not the port's configured MAC (mac-changes rejected)"
        case .broadcastStorm: return "broadcast over the storm-control rate"
        case .multicastStorm: return "multicast over the storm-control rate"
        case .unknownUnicastStorm: return "unknown unicast over the storm-control rate"
        case .offloadNotSupported: return "GSO frame or partial checksum that could not be finished for a port without offloads (malformed or unsupported)"
        case .teamInactiveUplink: return "arrived on an uplink that is standby or down"
        case .teamNotDesignatedReceiver: return "arrived on an uplink that is not the designated receiver (its copy arrives on another)"
        case .teamReflectedSource: return "source MAC is a local guest's: our own frame reflected by the physical network"
        case .uplinkIsolated: return "port group does not use uplinks (uplinks: none)"
        case .uplinkToUplink: return "destination is behind an uplink (no uplink-to-uplink forwarding)"
        case .noHealthyUplink: return "no healthy uplink to leave by"
        case .shapingIngress: return "over the port's ingress shaping rate"
        case .shapingEgress: return "over the port's egress shaping rate"
        case .privateVLANNotAllowed: return "private VLAN: the destination port may not receive from this one"
        case .malformedIGMP: return "malformed IGMP message"
        case .malformedMLD: return "malformed MLD message"
        case .splitHorizon: return "split horizon: never from a tunnel into a tunnel, never between a tunnel and an uplink"
        case .underlayMTUExceeded: return "too large for the underlay MTU once encapsulated (VXLAN never fragments)"
        case .noFrontend: return "no frontend runs this vhost-user port's receive ring"
        }
    }
}
