import Core
import Model

/// One end of a link: a port made from a port group of a switch.
public struct LinkEnd: Sendable, Equatable, Hashable {
    public var switchName: String
    public var portGroup: String
    /// The port's name on `switchName`: `link-OTHERSWITCH`, or `link-OTHERSWITCH-N` (N = 2,
    /// 3, … in file order) for the second and later links between the same two switches.
    public var portName: String
    public init(switchName: String, portGroup: String, portName: String) {
        self.switchName = switchName; self.portGroup = portGroup; self.portName = portName
    }
}

/// A patch link between two switches (`links: [{between: [A/PG, B/PG]}]`): one
/// port on each switch, joined in memory like an Open vSwitch patch port. Frames cross it as
/// if a cable joined two ports with those port groups' VLAN modes.
public struct LinkSpec: Sendable, Equatable, Hashable {
    /// The two ends, in the order written.
    public var ends: [LinkEnd]
    /// The host the link runs on (`host:`); `nil` in a file without `hosts:`. A link is
    /// instantiated on exactly one host, so linked switches that span hosts cannot loop
    /// through the overlay.
    public var host: String?
    public init(ends: [LinkEnd], host: String? = nil) { self.ends = ends; self.host = host }

    /// The end on `switchName`, if the link touches it.
    public func end(on switchName: String) -> LinkEnd? { ends.first { $0.switchName == switchName } }
}

/// Datapath settings (`datapath:`, file-wide and per host). `nil` fields keep the runtime's
/// defaults (and its environment overrides `TAPESTRY_DATAPATH_THREADS`, `TAPESTRY_BUSY_POLL_US`).
public struct DatapathSpec: Sendable, Equatable {
    /// Forwarding threads, 1…64.
    public var threads: Int?
    /// Busy-poll window in microseconds, 0…1 000 000 (`poll: 50us`, `1ms`, `0`).
    public var pollMicroseconds: Int?
    public init(threads: Int? = nil, pollMicroseconds: Int? = nil) {
        self.threads = threads; self.pollMicroseconds = pollMicroseconds
    }

    /// `self` with `other`'s set fields taking precedence (a host's settings over the file's).
    public func overridden(by other: DatapathSpec) -> DatapathSpec {
        DatapathSpec(threads: other.threads ?? threads, pollMicroseconds: other.pollMicroseconds ?? pollMicroseconds)
    }
}

/// One host of a multi-host fabric (`hosts.NAME`).
public struct HostSpec: Sendable, Equatable {
    public var name: String
    /// This host's VTEP address (IPv4, or IPv6).
    public var underlay: IPAddress
    /// The network namespace that holds `underlay` (`netns:`), for several hosts on one
    /// machine; `nil`: the root namespace.
    public var netns: String?
    /// CPUs guests may use on this host (HA admission); `nil`: not declared.
    public var cpus: Int?
    /// Memory guests may use on this host, MiB (HA admission); `nil`: not declared.
    public var memoryMiB: Int?
    /// Overrides of the file-wide `datapath:` for this host.
    public var datapath: DatapathSpec
    public init(name: String, underlay: IPAddress, netns: String? = nil, cpus: Int? = nil, memoryMiB: Int? = nil,
                datapath: DatapathSpec = DatapathSpec()) {
        self.name = name; self.underlay = underlay; self.netns = netns; self.cpus = cpus
        self.memoryMiB = memoryMiB; self.datapath = datapath
    }
}

/// A VTEP that is not a Tapestry host: a Linux `vxlan` device, Open vSwitch, a hardware switch.
public struct RemoteVTEPSpec: Sendable, Equatable {
    public var address: IPAddress
    /// The VLANs it serves (`.untagged` for `none`); `nil`: every VLAN of the switch.
    public var vlans: VLANSet?
    public init(address: IPAddress, vlans: VLANSet? = nil) { self.address = address; self.vlans = vlans }

    /// Its tunnel port's name: `vtep-` and the canonical address, `:` written `-`
    /// (`vtep-192.0.2.9`, `vtep-2001-db8--9`). Unique per address: addresses never contain `-`.
    public var portName: String { OverlaySpec.tunnelPortName(remoteVTEP: address) }
}

/// A switch's VXLAN overlay (`overlay:`, RFC 7348): VLAN-based service, one VNI per VLAN.
public struct OverlaySpec: Sendable, Equatable {
    /// VNI of the untagged domain (`vlan: none`); VLAN V travels as `vniBase + V`.
    /// 1 ≤ vniBase and vniBase + 4094 ≤ 2²⁴ − 1.
    public var vniBase: UInt32
    public var remoteVTEPs: [RemoteVTEPSpec]
    /// The UDP destination port, default 4789 (IANA, RFC 7348 §5).
    public var port: UInt16
    public init(vniBase: UInt32, remoteVTEPs: [RemoteVTEPSpec] = [], port: UInt16 = 4789) {
        self.vniBase = vniBase; self.remoteVTEPs = remoteVTEPs; self.port = port
    }

    /// The largest base: `vniBase + 4094` must fit in 24 bits.
    public static let maxVNIBase: UInt32 = (1 << 24) - 1 - 4094

    /// The VNI that carries `vlan` (the untagged domain: the base).
    public func vni(for vlan: VLANID) -> UInt32 { vniBase + UInt32(vlan.rawValue) }

    /// The VLAN a VNI stands for, if it is in this switch's range.
    public func vlan(forVNI vni: UInt32) -> VLANID? {
        guard vni >= vniBase, vni - vniBase <= 4094 else { return nil }
        return VLANID(UInt16(vni - vniBase))
    }

    /// `vtep-ADDRESS` with `:` written `-`.
    public static func tunnelPortName(remoteVTEP address: IPAddress) -> String {
        "vtep-" + address.description.replacingColons()
    }
}

extension String {
    fileprivate func replacingColons() -> String { String(map { $0 == ":" ? "-" : $0 }) }
}

/// A tunnel port of a switch on one host: to another Tapestry host, or to a remote VTEP.
public struct TunnelSpec: Sendable, Equatable {
    /// What is at the far end.
    public enum Peer: Sendable, Equatable {
        /// Another host of the topology running the same switch.
        case host(String)
        /// A `remote-vteps` entry.
        case remoteVTEP
    }
    public var switchName: String
    /// The port name: the peer host's name, or `vtep-ADDRESS`.
    public var portName: String
    public var peer: Peer
    /// The far end's underlay address.
    public var remote: IPAddress
    /// The VLANs carried; `nil`: all of the switch's.
    public var vlans: VLANSet?
    /// UDP destination port.
    public var udpPort: UInt16
    public var vniBase: UInt32
    public init(switchName: String, portName: String, peer: Peer, remote: IPAddress, vlans: VLANSet?,
                udpPort: UInt16, vniBase: UInt32) {
        self.switchName = switchName; self.portName = portName; self.peer = peer; self.remote = remote
        self.vlans = vlans; self.udpPort = udpPort; self.vniBase = vniBase
    }
}

/// One etcd endpoint (`etcd.endpoints`): `http://HOST:PORT` or `https://HOST:PORT`.
public struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// `http` or `https`.
    public var scheme: String
    /// An IP address or a DNS name (IPv6 written in brackets in the URL, bare here).
    public var host: String
    /// Default 2379 (etcd's client port).
    public var port: Int
    public init(scheme: String, host: String, port: Int) { self.scheme = scheme; self.host = host; self.port = port }
    /// The URL, normalised: `https://10.0.0.1:2379`, `http://[2001:db8::1]:2379`.
    public var description: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// Where the fabric's state lives (`etcd:`).
public struct EtcdSpec: Sendable, Equatable {
    public var endpoints: [EtcdEndpoint]
    public var tls: EtcdTLSSpec?
    public init(endpoints: [EtcdEndpoint], tls: EtcdTLSSpec? = nil) { self.endpoints = endpoints; self.tls = tls }
}

/// TLS material for etcd (absolute paths): the CA that signed etcd's server certificate, and
/// a client certificate and key (both or neither).
public struct EtcdTLSSpec: Sendable, Equatable {
    public var ca: String?
    public var cert: String?
    public var key: String?
    public init(ca: String? = nil, cert: String? = nil, key: String? = nil) { self.ca = ca; self.cert = cert; self.key = key }
}

/// What an isolated host does with its guests (VMware HA's isolation response).
public enum IsolationResponse: String, Sendable, CaseIterable {
    /// Leave them running (default).
    case none
    /// Stop its QEMU guests, so survivors can restart them without running them twice.
    case powerOff = "power-off"
}

/// Host-failure handling (`ha:`).
public struct HASpec: Sendable, Equatable {
    /// Addresses a host pings to tell "I am isolated" from "etcd is down".
    public var isolationAddresses: [IPAddress]
    public var isolationResponse: IsolationResponse
    public init(isolationAddresses: [IPAddress] = [], isolationResponse: IsolationResponse = .none) {
        self.isolationAddresses = isolationAddresses; self.isolationResponse = isolationResponse
    }
}
