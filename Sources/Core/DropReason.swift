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
        case .offloadNotSupported: return "segmentation offload frame for a port without offloads"
        }
    }
}
