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

    /// The IPv4 prefix as the family-neutral `IPPrefix`.
    public var prefix: IPPrefix { IPPrefix(address: .v4(IPv4Address(rawValue: address)), prefixLength: prefixLength) }

    /// The IPv4 `prefix`; `nil` for IPv6.
    public init?(_ prefix: IPPrefix) {
        guard case .v4(let a) = prefix.address else { return nil }
        self.init(address: a.rawValue, prefixLength: prefix.prefixLength)
    }
}

/// A decimal number of at most 3 digits without a leading zero (IPv4 octets and prefixes).
private func strictDecimal(_ s: Substring) -> Int? {
    guard (1...3).contains(s.count), s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    if s.count > 1 && s.first == "0" { return nil }
    return Int(s)
}

/// How a guest runs.
public enum GuestKind: String, Sendable, CaseIterable {
    /// A network namespace named after the guest; its NICs are TAP netdevs moved inside.
    case netns
    /// A QEMU virtual machine booted from the default guest image.
    case qemu
    /// A frontend Tapestry does not start (a libvirt VM, a DPDK application): each NIC is a
    /// vhost-user socket `/run/tapestry/NAME.vhost/GUEST.ethN.sock` the switch serves (or,
    /// in client mode, a socket it connects to).
    case vhostUser = "vhost-user"
}

/// How a NIC's frames reach the switch.
public enum NICBackend: String, Sendable, CaseIterable {
    /// A TAP device: the kernel netdev (netns guests), or QEMU's `-netdev tap`.
    case tap
    /// A vhost-user socket: the guest's virtqueues in shared memory (QEMU's default here,
    /// and every NIC of a `vhost-user` guest).
    case vhostUser = "vhost-user"
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
    /// Static addresses (`ip:`), IPv4 and IPv6, in file order; each with the host bits of
    /// an interface address (`10.0.10.1/24`, `2001:db8::5/64`).
    public var addresses: [IPPrefix]
    /// True for `ip: dhcp` (alone or in the list): the guest runs a DHCPv4 client on the NIC.
    public var dhcp: Bool
    /// The switch port's name, `GUEST.ethN`.
    public var portName: String
    /// The interface name inside the guest, `ethN`.
    public var interfaceName: String
    /// `tap` or `vhost-user`: `tap` for netns guests, `vhost-user` for vhost-user guests, the
    /// file's `backend:` (default `vhost-user`) for QEMU guests.
    public var backend: NICBackend
    /// False for `offloads: false`: the guest's checksum and TSO offloads stay off (a guest
    /// driver that misbehaves with them).
    public var offloads: Bool
    /// For a NIC of a `vhost-user` guest in client mode: the frontend's socket to connect to.
    public var socketPath: String?

    public init(index: Int, switchName: String, portGroup: String, mac: MACAddress, macDeclared: Bool,
                ip: IPv4CIDR?, portName: String, interfaceName: String) {
        self.init(index: index, switchName: switchName, portGroup: portGroup, mac: mac, macDeclared: macDeclared,
                  addresses: ip.map { [$0.prefix] } ?? [], portName: portName, interfaceName: interfaceName)
    }

    public init(index: Int, switchName: String, portGroup: String, mac: MACAddress, macDeclared: Bool,
                addresses: [IPPrefix], dhcp: Bool = false, portName: String, interfaceName: String,
                backend: NICBackend = .tap, offloads: Bool = true, socketPath: String? = nil) {
        self.index = index; self.switchName = switchName; self.portGroup = portGroup
        self.mac = mac; self.macDeclared = macDeclared; self.addresses = addresses; self.dhcp = dhcp
        self.portName = portName; self.interfaceName = interfaceName
        self.backend = backend; self.offloads = offloads; self.socketPath = socketPath
    }

    /// The first IPv4 address of `addresses`, for code written when a NIC had one IPv4
    /// address at most. New code reads `addresses` (and `dhcp`).
    public var ip: IPv4CIDR? { addresses.lazy.compactMap { IPv4CIDR($0) }.first }
}

/// A guest's default gateway of one family (`gateway:`), with the NIC it is reached on.
public struct GatewaySpec: Sendable, Equatable {
    /// An address on one of the NIC's subnets (or, for IPv6, possibly link-local).
    public var address: IPAddress
    /// Index into the guest's `nics` of the NIC whose subnet holds `address`.
    public var nic: Int
    public init(address: IPAddress, nic: Int) { self.address = address; self.nic = nic }
}

/// A static route of a guest (`routes: [{to, via}]`).
public struct RouteSpec: Sendable, Equatable {
    /// The destination network (host bits zero; `0.0.0.0/0` or `::/0` is a default route).
    public var to: IPPrefix
    /// The next hop, on one of the guest's subnets, of the same family as `to`.
    public var via: IPAddress
    /// Index into the guest's `nics` of the NIC whose subnet holds `via`.
    public var nic: Int
    public init(to: IPPrefix, via: IPAddress, nic: Int) { self.to = to; self.via = via; self.nic = nic }
}

/// Server or client end of a vhost-user socket.
public enum VhostUserMode: String, Sendable, CaseIterable {
    /// The switch listens on `/run/tapestry/NAME.vhost/GUEST.ethN.sock` (the default).
    case server
    /// The switch connects to the frontend's socket (`socket-path:` on each NIC), and
    /// reconnects when it goes away.
    case client
}

/// The sockets of a `vhost-user` guest (`socket:`): who may connect to them.
public struct VhostUserSocketSpec: Sendable, Equatable {
    public var mode: VhostUserMode
    /// The server socket's owner, a user name or numeric uid; `nil`: root.
    public var owner: String?
    /// The server socket's group, a group name or numeric gid; `nil`: root's group.
    public var group: String?
    /// The server socket's permission bits (`permissions: "0660"`, always octal); `nil`: 0600.
    public var permissions: Int?
    public init(mode: VhostUserMode = .server, owner: String? = nil, group: String? = nil, permissions: Int? = nil) {
        self.mode = mode; self.owner = owner; self.group = group; self.permissions = permissions
    }
}

/// A guest: a network namespace, a QEMU VM or a vhost-user frontend, with its NICs.
public struct GuestSpec: Sendable, Equatable {
    public var name: String
    public var kind: GuestKind
    /// VM memory (qemu); 256 for other kinds, where it means nothing.
    public var memoryMiB: Int
    /// VM CPUs (qemu); 1 for other kinds.
    public var cpus: Int
    /// VM restart policy (qemu); `.never` for other kinds.
    public var restart: RestartPolicy
    public var nics: [NICSpec]
    /// The host that runs the guest (`host:`); `nil` in a file without `hosts:`.
    public var host: String?
    /// Default gateways, at most one per family, IPv4 first.
    public var gateways: [GatewaySpec]
    /// Static routes, in file order.
    public var routes: [RouteSpec]
    /// For `kind: vhost-user`: its sockets' mode and permissions; `nil` for other kinds.
    public var socket: VhostUserSocketSpec?

    public init(name: String, kind: GuestKind, memoryMiB: Int, cpus: Int, restart: RestartPolicy, nics: [NICSpec],
                host: String? = nil, gateways: [GatewaySpec] = [], routes: [RouteSpec] = [],
                socket: VhostUserSocketSpec? = nil) {
        self.name = name; self.kind = kind; self.memoryMiB = memoryMiB; self.cpus = cpus
        self.restart = restart; self.nics = nics; self.host = host; self.gateways = gateways
        self.routes = routes; self.socket = socket
    }

    /// The IPv4 default gateway, if any.
    public var gateway4: GatewaySpec? { gateways.first { !$0.address.isIPv6 } }
    /// The IPv6 default gateway, if any.
    public var gateway6: GatewaySpec? { gateways.first { $0.address.isIPv6 } }
}

/// A named port policy; every guest NIC attached to it becomes a port with this policy.
public struct PortGroupSpec: Sendable, Equatable {
    public var name: String
    public var mode: PortMode
    /// False for `uplinks: none`: frames of this group never reach an uplink.
    public var usesUplinks: Bool
    /// VMware's security trio (`security:`), the plan's own type.
    public var security: PortSecurity
    /// Per-port learning limit (`mac-limit`, default 1024).
    public var macLimit: Int
    /// Per-port storm-control rates in frames per second (`storm-control`).
    public var storm: StormLimits
    /// Forward STP/LACP/LLDP (01:80:c2:00:00:0x) within the group (`l2-transparency`).
    public var l2Transparency: Bool
    /// Traffic shaping (`shaping:`), per direction; `nil` directions are unshaped.
    public var shaping: ShapingSpec
    /// For `vlan: {private: ID}`: the private VLAN ID (a primary: promiscuous port; or one of
    /// its secondaries: isolated or community port, see `SwitchSpec.privateVLANRole(of:)`).
    /// `mode` is then `.access(ID)`, the VLAN the port's frames are classified into.
    public var privateVLAN: VLANID?

    public init(name: String, mode: PortMode, usesUplinks: Bool = true, security: PortSecurity = PortSecurity(),
                macLimit: Int = PortPlan.defaultMACLimit, storm: StormLimits = StormLimits(), l2Transparency: Bool = false,
                shaping: ShapingSpec = ShapingSpec(), privateVLAN: VLANID? = nil) {
        self.name = name; self.mode = mode; self.usesUplinks = usesUplinks; self.security = security
        self.macLimit = macLimit; self.storm = storm; self.l2Transparency = l2Transparency
        self.shaping = shaping; self.privateVLAN = privateVLAN
    }
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
    /// How traffic is spread over the NICs (`policy:`), the plan's own type.
    public var policy: TeamPolicy
    /// NICs carrying traffic, in order. All NICs unless the policy is `failover-order`.
    public var active: [String]
    /// NICs used when active ones fail (`failover-order` only).
    public var standby: [String]
    public var failback: Bool
    public var notifySwitches: Bool
    public var detection: FailureDetection
    /// LLDP on every NIC of the team (`lldp:`, default `listen`).
    public var lldp: LLDPMode
    /// Where each NIC is named in the file (parallel to `nics`; empty when built in code).
    public var nicPositions: [TextPosition] = []

    public init(nics: [String], policy: TeamPolicy = .portID, active: [String]? = nil, standby: [String] = [],
                failback: Bool = true, notifySwitches: Bool = true, detection: FailureDetection = .linkStatus,
                lldp: LLDPMode = .listen) {
        self.nics = nics; self.policy = policy; self.active = active ?? nics; self.standby = standby
        self.failback = failback; self.notifySwitches = notifySwitches; self.detection = detection; self.lldp = lldp
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
    /// VXLAN overlay across hosts and remote VTEPs (`overlay:`).
    public var overlay: OverlaySpec?
    /// Private VLANs (`private-vlans:`), by primary, in file order.
    public var privateVLANs: [PrivateVLANSpec]
    /// IGMP/MLD snooping and the querier (`multicast-*` keys).
    public var multicast: MulticastSpec
    /// IPFIX flow export (`flow-export:`).
    public var flowExport: FlowExportSpec?

    public init(name: String, mtu: Int = 1500, agingSeconds: Int = 300, macLimit: Int = 8192,
                portGroups: [PortGroupSpec], uplinks: UplinkSpec? = nil, mirrors: [MirrorSpec] = [],
                staticMACs: [StaticMACSpec] = [], overlay: OverlaySpec? = nil, privateVLANs: [PrivateVLANSpec] = [],
                multicast: MulticastSpec = MulticastSpec(), flowExport: FlowExportSpec? = nil) {
        self.name = name; self.mtu = mtu; self.agingSeconds = agingSeconds; self.macLimit = macLimit
        self.portGroups = portGroups; self.uplinks = uplinks; self.mirrors = mirrors; self.staticMACs = staticMACs
        self.overlay = overlay; self.privateVLANs = privateVLANs; self.multicast = multicast; self.flowExport = flowExport
    }

    /// The port group called `name`, if any.
    public func portGroup(named name: String) -> PortGroupSpec? { portGroups.first { $0.name == name } }

    /// What `vlan` is in this switch's private VLANs, if anything.
    public func privateVLANRole(of vlan: VLANID) -> PrivateVLANRole? {
        for p in privateVLANs {
            if p.primary == vlan { return .promiscuous(primary: p.primary) }
            if p.isolated == vlan { return .isolated(primary: p.primary, secondary: vlan) }
            if p.community.contains(vlan) { return .community(primary: p.primary, secondary: vlan) }
        }
        return nil
    }
}

/// A validated topology file: what `tapestry up` builds.
public struct Topology: Sendable, Equatable {
    /// The instance name (`name:`).
    public var name: String
    /// The path or label the file was loaded from; diagnostics use it.
    public var file: String
    /// In file order.
    public var switches: [SwitchSpec]
    /// In file order.
    public var guests: [GuestSpec]
    /// Patch links between switches (`links:`), in file order.
    public var links: [LinkSpec] = []
    /// The hosts of a multi-host fabric (`hosts:`), in file order; empty for one host.
    public var hosts: [HostSpec] = []
    /// File-wide datapath settings (`datapath:`); see `datapath(forHost:)`.
    public var datapath = DatapathSpec()
    /// Where the fabric's shared state lives (`etcd:`).
    public var etcd: EtcdSpec?
    /// Host-failure handling (`ha:`).
    public var ha: HASpec?
    /// Things that run but deserve attention (e.g. beacon probing with fewer than 3 NICs).
    public var warnings: [TopologyDiagnostic] = []

    public init(name: String, file: String, switches: [SwitchSpec], guests: [GuestSpec]) {
        self.name = name; self.file = file; self.switches = switches; self.guests = guests
    }

    /// Checks that need the host: every uplink NIC must exist (`linkExists`). Located
    /// errors; `validate` and `up` run them before anything starts. A separate step from
    /// loading, so `validate --no-host-checks` can check a file written for another machine.
    public func hostProblems(linkExists: (String) -> Bool) -> [TopologyDiagnostic] {
        hostProblems(linkExists: linkExists, userExists: { _ in true }, groupExists: { _ in true }, fileExists: { _ in true })
    }

    /// Every check that needs the host: uplink NICs (`linkExists`), the owners and groups of
    /// vhost-user sockets (`userExists`, `groupExists`: a name or a numeric id as written),
    /// and the etcd TLS files (`fileExists`). Located errors.
    public func hostProblems(linkExists: (String) -> Bool, userExists: (String) -> Bool,
                             groupExists: (String) -> Bool, fileExists: (String) -> Bool) -> [TopologyDiagnostic] {
        var out: [TopologyDiagnostic] = []
        func at(_ p: TextPosition?) -> TextPosition { p ?? TextPosition(line: 1, column: 1) }
        func add(_ p: TextPosition?, _ message: String) {
            let p = at(p)
            out.append(TopologyDiagnostic(file: file, line: p.line, column: p.column, message: message))
        }
        for s in switches {
            guard let u = s.uplinks else { continue }
            for (i, nic) in u.nics.enumerated() where !linkExists(nic) {
                add(i < u.nicPositions.count ? u.nicPositions[i] : nil,
                    "uplink NIC '\(nic)' of switch '\(s.name)' does not exist on this host")
            }
        }
        for g in guests {
            guard let sock = g.socket else { continue }
            if let o = sock.owner, !userExists(o) {
                add(sourcePositions["guest.\(g.name).owner"], "user '\(o)' (owner of the vhost-user sockets of guest '\(g.name)') does not exist on this host")
            }
            if let gr = sock.group, !groupExists(gr) {
                add(sourcePositions["guest.\(g.name).group"], "group '\(gr)' (of the vhost-user sockets of guest '\(g.name)') does not exist on this host")
            }
        }
        if let tls = etcd?.tls {
            for (key, path) in [("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)] {
                if let path, !fileExists(path) {
                    add(sourcePositions["etcd.tls.\(key)"], "etcd TLS file '\(path)' ('\(key)') does not exist on this host")
                }
            }
        }
        return out
    }

    /// Where some values were written, for the checks made after loading (`hostProblems`).
    /// Keys: `guest.NAME.owner`, `guest.NAME.group`, `etcd.tls.ca|cert|key`, `host.NAME`.
    public var sourcePositions: [String: TextPosition] = [:]
}
