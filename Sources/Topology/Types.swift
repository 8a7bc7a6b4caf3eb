import Core
import Model

/// An IPv4 address with a prefix length, as written in a NIC's `ip:` (`10.0.10.1/24`).
///
/// Parsing is strict: a dotted quad of decimal octets 0…255 without leading zeros (`010` is
/// octal to some tools and decimal to others, so it is refused), then `/` and 0…32.
public struct IPv4CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The address, first octet in the most significant byte.
    public var address: UInt32
    /// 0…32.
    public var prefixLength: Int

    public init(address: UInt32, prefixLength: Int) {
        self.address = address; self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/len`; `nil` for anything else.
    public init?(_ text: String) {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, let len = strictDecimal(halves[1]), len <= 32 else { return nil }
        let octets = halves[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for o in octets {
            guard let b = strictDecimal(o), b <= 255 else { return nil }
            value = value << 8 | UInt32(b)
        }
        self.address = value
        self.prefixLength = len
    }

    /// `10.0.10.1`
    public var addressString: String {
        (0..<4).map { String((address >> UInt32(24 - 8 * $0)) & 0xFF) }.joined(separator: ".")
    }

    /// `10.0.10.1/24`
    public var description: String { "\(addressString)/\(prefixLength)" }
}

/// A decimal number of at most 3 digits without a leading zero (IPv4 octets and prefixes).
private func strictDecimal(_ s: Substring) -> Int? {
    guard (1...3).contains(s.count), s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    if s.count > 1 && s.first == "0" { return nil }
    return Int(s)
}

/// How a guest runs.
public enum GuestKind: String, Sendable {
    /// A network namespace named after the guest; its NICs are TAP netdevs moved inside.
    case netns
    /// A QEMU virtual machine booted from the default guest image.
    case qemu
}

/// What the VM runner does when a QEMU guest's process exits.
public enum RestartPolicy: String, Sendable {
    case never
    case onFailure = "on-failure"
    case always
}

/// One NIC of a guest; it becomes one switch port named `GUEST.ethN`.
public struct NICSpec: Sendable, Equatable {
    /// Position in the guest's `nics` list (the N of `ethN`).
    public var index: Int
    public var switchName: String
    public var portGroup: String
    /// The NIC's MAC: as written, or derived from the names (see `derivedMAC`).
    public var mac: MACAddress
    /// True when the file gave `mac:`; false when it was derived.
    public var macDeclared: Bool
    public var ip: IPv4CIDR?
    /// The switch port's name, `GUEST.ethN`.
    public var portName: String
    /// The interface name inside the guest, `ethN`.
    public var interfaceName: String

    public init(index: Int, switchName: String, portGroup: String, mac: MACAddress, macDeclared: Bool,
                ip: IPv4CIDR?, portName: String, interfaceName: String) {
        self.index = index; self.switchName = switchName; self.portGroup = portGroup
        self.mac = mac; self.macDeclared = macDeclared; self.ip = ip
        self.portName = portName; self.interfaceName = interfaceName
    }
}

/// A guest: a network namespace or a QEMU VM, with its NICs.
public struct GuestSpec: Sendable, Equatable {
    public var name: String
    public var kind: GuestKind
    /// VM memory (qemu); 256 for netns guests, where it means nothing.
    public var memoryMiB: Int
    /// VM CPUs (qemu); 1 for netns guests.
    public var cpus: Int
    /// VM restart policy (qemu); `.never` for netns guests.
    public var restart: RestartPolicy
    public var nics: [NICSpec]

    public init(name: String, kind: GuestKind, memoryMiB: Int, cpus: Int, restart: RestartPolicy, nics: [NICSpec]) {
        self.name = name; self.kind = kind; self.memoryMiB = memoryMiB; self.cpus = cpus
        self.restart = restart; self.nics = nics
    }
}

/// VMware's security trio of a port group; all default to `false` (reject).
public struct SecuritySpec: Sendable, Equatable {
    /// Deliver every frame of the port's VLANs to the port, not only those addressed to it.
    public var promiscuous = false
    /// Accept traffic after the guest changes its NIC's MAC.
    public var macChanges = false
    /// Accept frames whose source MAC is not the NIC's MAC.
    public var forgedTransmits = false

    public init(promiscuous: Bool = false, macChanges: Bool = false, forgedTransmits: Bool = false) {
        self.promiscuous = promiscuous; self.macChanges = macChanges; self.forgedTransmits = forgedTransmits
    }
}

/// A named port policy; every guest NIC attached to it becomes a port with this policy.
public struct PortGroupSpec: Sendable, Equatable {
    public var name: String
    public var mode: PortMode
    /// False for `uplinks: none`: frames of this group never reach an uplink.
    public var usesUplinks: Bool
    public var security: SecuritySpec
    /// Per-port learning limit (`mac-limit`, default 1024).
    public var macLimit: Int
    /// Per-port storm-control rates in frames per second (`storm-control`).
    public var storm: StormLimits
    /// Forward STP/LACP/LLDP (01:80:c2:00:00:0x) within the group (`l2-transparency`).
    public var l2Transparency: Bool

    public init(name: String, mode: PortMode, usesUplinks: Bool = true, security: SecuritySpec = SecuritySpec(),
                macLimit: Int = PortPlan.defaultMACLimit, storm: StormLimits = StormLimits(), l2Transparency: Bool = false) {
        self.name = name; self.mode = mode; self.usesUplinks = usesUplinks; self.security = security
        self.macLimit = macLimit; self.storm = storm; self.l2Transparency = l2Transparency
    }
}

/// How traffic is spread over the members of an uplink team.
public enum TeamingPolicy: String, Sendable {
    /// By the originating port (VMware "route based on originating virtual port").
    case portID = "port-id"
    /// By source MAC hash.
    case srcMAC = "src-mac"
    /// By IP hash (source and destination).
    case ipHash = "ip-hash"
    /// Only the first healthy NIC of `active`, then `standby`, carries traffic.
    case failoverOrder = "failover-order"
}

/// How a team decides a member has failed.
public enum FailureDetection: String, Sendable {
    case linkStatus = "link-status"
    case beaconProbing = "beacon-probing"
}

/// A switch's physical NICs and their teaming.
public struct UplinkSpec: Sendable, Equatable {
    /// Kernel interface names, in file order.
    public var nics: [String]
    public var policy: TeamingPolicy
    /// NICs carrying traffic, in order. All NICs unless the policy is `failover-order`.
    public var active: [String]
    /// NICs used when active ones fail (`failover-order` only).
    public var standby: [String]
    public var failback: Bool
    public var notifySwitches: Bool
    public var detection: FailureDetection
    /// Where each NIC is named in the file (parallel to `nics`; empty when built in code).
    public var nicPositions: [TextPosition] = []

    public init(nics: [String], policy: TeamingPolicy = .portID, active: [String]? = nil, standby: [String] = [],
                failback: Bool = true, notifySwitches: Bool = true, detection: FailureDetection = .linkStatus) {
        self.nics = nics; self.policy = policy; self.active = active ?? nics; self.standby = standby
        self.failback = failback; self.notifySwitches = notifySwitches; self.detection = detection
    }
}

/// Which frames of the source ports a mirror copies.
public enum MirrorDirection: String, Sendable {
    /// Frames the source ports receive from their guests (switch ingress).
    case `in`
    /// Frames the switch sends out of the source ports (switch egress).
    case out
    case both
}

/// A port mirror (SPAN): copies of the traffic of some port groups go to another port group.
public struct MirrorSpec: Sendable, Equatable {
    public var name: String
    public var sourcePortGroups: [String]
    public var direction: MirrorDirection
    public var destinationPortGroup: String

    public init(name: String, sourcePortGroups: [String], direction: MirrorDirection, destinationPortGroup: String) {
        self.name = name; self.sourcePortGroups = sourcePortGroups
        self.direction = direction; self.destinationPortGroup = destinationPortGroup
    }
}

/// A MAC pinned to a port in one VLAN.
public struct StaticMACSpec: Sendable, Equatable {
    public var mac: MACAddress
    public var vlan: VLANID
    /// A guest port name, `GUEST.ethN`.
    public var port: String

    public init(mac: MACAddress, vlan: VLANID, port: String) { self.mac = mac; self.vlan = vlan; self.port = port }
}

/// One switch of the topology.
public struct SwitchSpec: Sendable, Equatable {
    public var name: String
    public var mtu: Int
    public var agingSeconds: Int
    public var macLimit: Int
    /// In file order.
    public var portGroups: [PortGroupSpec]
    /// `nil` for a guest-only switch.
    public var uplinks: UplinkSpec?
    public var mirrors: [MirrorSpec]
    public var staticMACs: [StaticMACSpec]

    public init(name: String, mtu: Int = 1500, agingSeconds: Int = 300, macLimit: Int = 8192,
                portGroups: [PortGroupSpec], uplinks: UplinkSpec? = nil, mirrors: [MirrorSpec] = [],
                staticMACs: [StaticMACSpec] = []) {
        self.name = name; self.mtu = mtu; self.agingSeconds = agingSeconds; self.macLimit = macLimit
        self.portGroups = portGroups; self.uplinks = uplinks; self.mirrors = mirrors; self.staticMACs = staticMACs
    }

    /// The port group called `name`, if any.
    public func portGroup(named name: String) -> PortGroupSpec? { portGroups.first { $0.name == name } }
}

/// A validated topology file: what `tapestry up` builds.
public struct Topology: Sendable {
    /// The instance name (`name:`).
    public var name: String
    /// The path or label the file was loaded from; diagnostics use it.
    public var file: String
    /// In file order.
    public var switches: [SwitchSpec]
    /// In file order.
    public var guests: [GuestSpec]
    /// Things that run but deserve attention (e.g. beacon probing with fewer than 3 NICs).
    public var warnings: [TopologyDiagnostic] = []

    public init(name: String, file: String, switches: [SwitchSpec], guests: [GuestSpec]) {
        self.name = name; self.file = file; self.switches = switches; self.guests = guests
    }

    /// Checks that need the host: every uplink NIC must exist (`linkExists`). Located
    /// errors; `validate` and `up` run them before anything starts.
    public func hostProblems(linkExists: (String) -> Bool) -> [TopologyDiagnostic] {
        var out: [TopologyDiagnostic] = []
        for s in switches {
            guard let u = s.uplinks else { continue }
            for (i, nic) in u.nics.enumerated() where !linkExists(nic) {
                let at = i < u.nicPositions.count ? u.nicPositions[i] : TextPosition(line: 1, column: 1)
                out.append(TopologyDiagnostic(file: file, line: at.line, column: at.column,
                                              message: "uplink NIC '\(nic)' of switch '\(s.name)' does not exist on this host"))
            }
        }
        return out
    }
}
