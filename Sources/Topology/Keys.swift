/// The key tables of the topology file: every mapping's keys, the shape of each value and a
/// one-line description. The loader takes its allowed-key lists from here (`names`), and
/// `TopologySchema` generates `Topologies/tapestry.schema.json` from the same tables, so the
/// two cannot drift apart in which keys exist; a test checks the schema file is current.
///
/// Shapes describe what a YAML 1.2 reader (an editor) sees; where the loader is stricter
/// (it reads scalars from their source text), the description says so.
indirect enum Shape: Sendable {
    /// A reusable definition (`#/definitions/NAME`).
    case ref(String)
    case object(KeyTable)
    /// A mapping from names matching `keyPattern` (with `maxKeyLength`) to values.
    case map(keyPattern: String, maxKeyLength: Int?, value: Shape, minEntries: Int)
    case list(Shape, minItems: Int, maxItems: Int?)
    case anyOf([Shape])
    /// A string, optionally with a regular expression (ECMA 262, anchored) and a length cap.
    case string(pattern: String?, maxLength: Int?)
    /// One of these strings.
    case enumeration([String])
    /// An integer in a range (the loader also takes it quoted).
    case integer(ClosedRange<Int>)
    case boolean
    /// `null` (an empty value).
    case null
}

/// One key of a mapping.
struct KeyDoc: Sendable {
    var name: String
    var shape: Shape
    var required = false
    var description: String
}

/// The keys of one kind of mapping.
struct KeyTable: Sendable {
    var title: String
    var keys: [KeyDoc]
    /// The allowed key names, in documentation order.
    var names: [String] { keys.map(\.name) }
}

/// The tables, one per kind of mapping in a topology file.
enum Keys {
    static let nameRule = "^[a-z0-9][a-z0-9-]*$"

    /// Definitions shared by several keys (`#/definitions/…` in the schema).
    static let definitions: [(String, Shape, String)] = [
        ("vlan-id", .anyOf([.integer(1...4094), .string(pattern: "^[1-9][0-9]{0,3}$", maxLength: nil)]),
         "An 802.1Q VLAN number 1..4094. Stricter than YAML 1.2: a leading zero (`010`, which YAML 1.2 reads as 10) is an error, and quoted digits mean the same number."),
        ("vlan-or-none", .anyOf([.ref("vlan-id"), .enumeration(["none"])]),
         "A VLAN number, or `none` for the untagged domain."),
        ("vlan-list", .list(.anyOf([.ref("vlan-id"), .string(pattern: "^[1-9][0-9]{0,3}-[1-9][0-9]{0,3}$", maxLength: nil)]), minItems: 1, maxItems: 4094),
         "VLAN numbers and ranges FIRST-LAST (first ≤ last); an empty list is an error, not \"all\"."),
        ("mac", .string(pattern: "^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$", maxLength: nil),
         "A MAC address aa:bb:cc:dd:ee:ff. Quote it: a YAML 1.1 reader takes 52:54:00:00:50:01 for a base-60 integer, and ruamel's C loader rejects it unquoted in a flow mapping. The loader reads it from the source text either way."),
        ("ip-address", .string(pattern: "^[0-9A-Fa-f:.]+$", maxLength: 45),
         "An IPv4 address (dotted quad, no leading zeros) or an IPv6 address (RFC 4291 text form, no zone)."),
        ("ip-prefix", .string(pattern: "^[0-9A-Fa-f:.]+/[0-9]{1,3}$", maxLength: 49),
         "ADDRESS/LENGTH: IPv4 1..32, IPv6 1..128."),
        ("boolean", .anyOf([.boolean, .enumeration(["true", "false"])]),
         "true or false. Stricter than YAML 1.1: yes, no, on and off are errors."),
        ("duration", .anyOf([.integer(0...100_000_000), .string(pattern: "^[0-9]+[smh]?$", maxLength: nil)]),
         "Seconds: 30s, 5m, 1h or plain seconds."),
        ("poll-duration", .anyOf([.integer(0...1_000_000), .string(pattern: "^[0-9]+(us|ms|s)$", maxLength: nil)]),
         "A busy-poll window: 0 (off), 50us, 1ms, up to 1s; a plain number is microseconds."),
        ("rate", .string(pattern: "^[0-9]+([kKmMgGtT])?[bB][iI][tT]$", maxLength: nil),
         "Bits per second: 500kbit, 50mbit, 1gbit (decimal prefixes, as tc writes them). kbps and the like are refused: tc reads them as bytes per second."),
        ("byte-size", .anyOf([.integer(1...1 << 30), .string(pattern: "^[0-9]+(KiB|MiB|GiB)?$", maxLength: nil)]),
         "Bytes: plain, or with KiB, MiB or GiB."),
        ("memory-size", .string(pattern: "^[0-9]+[MG]$", maxLength: nil),
         "256M or 1G (MiB and GiB)."),
        ("interface-name", .string(pattern: "^[^/:\\s]{1,15}$", maxLength: 15),
         "A kernel interface name: 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'."),
        ("port-name", .string(pattern: "^\\S+$", maxLength: 64),
         "A switch port: GUEST.ethN, an uplink NIC's name, link-SWITCH[-N] or a tunnel's name."),
    ]

    static func integer(_ r: ClosedRange<Int>) -> Shape {
        .anyOf([.integer(r), .string(pattern: "^(0|[1-9][0-9]*)$", maxLength: nil)])
    }
    static func name(_ max: Int) -> Shape { .string(pattern: nameRule, maxLength: max) }

    static let topLevel = KeyTable(title: "topology", keys: [
        KeyDoc(name: "name", shape: .string(pattern: "^[a-z][a-z0-9-]*$", maxLength: 12), required: true,
               description: "The instance name: [a-z][a-z0-9-]*, at most 12 characters. Feeds derived MACs."),
        KeyDoc(name: "switches", shape: .map(keyPattern: nameRule, maxKeyLength: 15, value: .object(switch_), minEntries: 1), required: true,
               description: "Switches by name ([a-z0-9][a-z0-9-]*, at most 15 characters); at least one."),
        KeyDoc(name: "guests", shape: .anyOf([.null, .map(keyPattern: nameRule, maxKeyLength: 15, value: .object(guest), minEntries: 0)]),
               description: "Guests by name ([a-z0-9][a-z0-9-]*, at most 15 characters)."),
        KeyDoc(name: "links", shape: .anyOf([.null, .list(.object(link), minItems: 0, maxItems: 1024)]),
               description: "Patch links between switches; no loops (there is no spanning tree)."),
        KeyDoc(name: "hosts", shape: .anyOf([.null, .map(keyPattern: nameRule, maxKeyLength: 15, value: .object(host), minEntries: 0)]),
               description: "The hosts of a multi-host fabric; with hosts, every guest names its host."),
        KeyDoc(name: "datapath", shape: .object(datapath),
               description: "Datapath settings for the whole file (a host's own datapath overrides them)."),
        KeyDoc(name: "etcd", shape: .object(etcd), description: "Where the fabric's shared state lives (needs hosts)."),
        KeyDoc(name: "ha", shape: .object(ha), description: "Host-failure handling (needs etcd)."),
    ])

    static let switch_ = KeyTable(title: "switch", keys: [
        KeyDoc(name: "mtu", shape: integer(68...9216), description: "68..9216 (default 1500); every port of the switch uses it."),
        KeyDoc(name: "mac-table", shape: .object(macTable), description: "Learning table settings."),
        KeyDoc(name: "uplinks", shape: .object(uplinks), description: "Physical NICs, teamed; without them the switch is a guest-only network."),
        KeyDoc(name: "port-groups", shape: .map(keyPattern: nameRule, maxKeyLength: 31, value: .object(portGroup), minEntries: 1), required: true,
               description: "Port groups by name ([a-z0-9][a-z0-9-]*, at most 31 characters); at least one."),
        KeyDoc(name: "mirrors", shape: .anyOf([.null, .list(.object(mirror), minItems: 0, maxItems: 64)]), description: "Port mirrors (SPAN)."),
        KeyDoc(name: "overlay", shape: .object(overlay), description: "VXLAN across hosts and remote VTEPs: VLAN V travels as VNI vni+V."),
        KeyDoc(name: "private-vlans", shape: .anyOf([.null, .map(keyPattern: "^[1-9][0-9]{0,3}$", maxKeyLength: 4, value: .anyOf([.null, .object(privateVLAN)]), minEntries: 0)]),
               description: "Private VLANs by primary VLAN number."),
        KeyDoc(name: "multicast-snooping", shape: .ref("boolean"), description: "IGMP/MLD snooping (default false: multicast floods)."),
        KeyDoc(name: "multicast-querier", shape: .ref("boolean"), description: "Send IGMP/MLD general queries (default false); needs multicast-snooping."),
        KeyDoc(name: "multicast-querier-source", shape: .ref("ip-address"), description: "The IGMP querier's IPv4 source (default 0.0.0.0, as Linux does)."),
        KeyDoc(name: "multicast-membership-interval", shape: .ref("duration"), description: "Group membership interval, 10s..3600s (default 260s, RFC 3376 §8.4)."),
        KeyDoc(name: "multicast-router-ports", shape: .anyOf([.null, .list(.ref("port-name"), minItems: 0, maxItems: 4096)]), description: "Ports that are always multicast-router ports."),
        KeyDoc(name: "multicast-static-groups", shape: .anyOf([.null, .list(.object(staticGroup), minItems: 0, maxItems: 4096)]), description: "Group memberships that never age."),
        KeyDoc(name: "flow-export", shape: .object(flowExport), description: "IPFIX flow export (RFC 7011)."),
    ])

    static let macTable = KeyTable(title: "mac-table", keys: [
        KeyDoc(name: "aging", shape: .ref("duration"), description: "1s..1000000s (default 300s)."),
        KeyDoc(name: "limit", shape: integer(16...1_048_576), description: "16..1048576 entries (default 8192)."),
        KeyDoc(name: "static", shape: .anyOf([.null, .list(.object(staticMAC), minItems: 0, maxItems: 16384)]), description: "Entries that never age, move or get evicted."),
    ])
    static let staticMAC = KeyTable(title: "static MAC entry", keys: [
        KeyDoc(name: "mac", shape: .ref("mac"), required: true, description: "A unicast MAC."),
        KeyDoc(name: "vlan", shape: .ref("vlan-or-none"), description: "Required on a trunk port; defaults to an access port's VLAN."),
        KeyDoc(name: "port", shape: .ref("port-name"), required: true, description: "A guest port GUEST.ethN on this switch."),
    ])
    static let uplinks = KeyTable(title: "uplinks", keys: [
        KeyDoc(name: "nics", shape: .list(.ref("interface-name"), minItems: 1, maxItems: 32), required: true,
               description: "Kernel interface names (existing links on every host that runs the switch); 1..32, no duplicates."),
        KeyDoc(name: "policy", shape: .enumeration(["port-id", "src-mac", "ip-hash", "failover-order"]), description: "Teaming policy (default port-id)."),
        KeyDoc(name: "active", shape: .list(.ref("interface-name"), minItems: 0, maxItems: 32), description: "failover-order only: the ordered active NICs."),
        KeyDoc(name: "standby", shape: .list(.ref("interface-name"), minItems: 0, maxItems: 32), description: "failover-order only: the standby NICs."),
        KeyDoc(name: "failback", shape: .ref("boolean"), description: "Default true."),
        KeyDoc(name: "notify-switches", shape: .ref("boolean"), description: "RARP per moved MAC after a failover (default true)."),
        KeyDoc(name: "detection", shape: .enumeration(["link-status", "beacon-probing"]), description: "Default link-status."),
        KeyDoc(name: "lldp", shape: .enumeration(LLDPMode.allCases.map(\.rawValue)), description: "LLDP on each NIC: listen (default), advertise, both or off."),
    ])
    static let portGroup = KeyTable(title: "port group", keys: [
        KeyDoc(name: "vlan", shape: .anyOf([.ref("vlan-or-none"), .object(trunk), .object(privateVLANRef)]), required: true,
               description: "Access VLAN N, none (untagged domain), {trunk: [...], native: ...} or {private: ID}."),
        KeyDoc(name: "uplinks", shape: .enumeration(["none"]), description: "none: never leaves through an uplink."),
        KeyDoc(name: "security", shape: .object(security), description: "VMware's security trio; all default to false (reject)."),
        KeyDoc(name: "mac-limit", shape: integer(1...1_048_576), description: "Most MAC entries one port may hold (default 1024)."),
        KeyDoc(name: "storm-control", shape: .object(storm), description: "Frames per second each port may send, per class."),
        KeyDoc(name: "l2-transparency", shape: .ref("boolean"), description: "Forward IEEE reserved group frames (STP, LACP, LLDP) within the group."),
        KeyDoc(name: "shaping", shape: .object(shaping), description: "Traffic shaping per direction (ingress: from the guest into the switch)."),
    ])
    static let trunk = KeyTable(title: "trunk", keys: [
        KeyDoc(name: "trunk", shape: .ref("vlan-list"), required: true, description: "The VLANs the trunk carries, tagged."),
        KeyDoc(name: "native", shape: .anyOf([.ref("vlan-id"), .enumeration(["drop-untagged", "none"])]),
               description: "The VLAN untagged frames belong to, or drop-untagged (the default: untagged frames are dropped). `none` is a deprecated spelling of drop-untagged."),
    ])
    static let privateVLANRef = KeyTable(title: "private VLAN port", keys: [
        KeyDoc(name: "private", shape: .ref("vlan-id"), required: true,
               description: "A primary VLAN of the switch's private-vlans (a promiscuous port) or one of its secondaries."),
    ])
    static let security = KeyTable(title: "security", keys: [
        KeyDoc(name: "promiscuous", shape: .ref("boolean"), description: "Receive every frame of the port's VLANs."),
        KeyDoc(name: "mac-changes", shape: .ref("boolean"), description: "Accept traffic after the guest changes its MAC."),
        KeyDoc(name: "forged-transmits", shape: .ref("boolean"), description: "Accept frames whose source MAC is not the NIC's."),
    ])
    static let storm = KeyTable(title: "storm-control", keys: [
        KeyDoc(name: "broadcast", shape: integer(1...100_000_000), description: "Frames per second."),
        KeyDoc(name: "multicast", shape: integer(1...100_000_000), description: "Frames per second."),
        KeyDoc(name: "unknown-unicast", shape: integer(1...100_000_000), description: "Frames per second."),
    ])
    static let shaping = KeyTable(title: "shaping", keys: [
        KeyDoc(name: "ingress", shape: .object(shapingRate), description: "Traffic from the guest into the switch."),
        KeyDoc(name: "egress", shape: .object(shapingRate), description: "Traffic from the switch to the guest."),
    ])
    static let shapingRate = KeyTable(title: "shaping direction", keys: [
        KeyDoc(name: "average", shape: .ref("rate"), required: true, description: "Long-term rate, 1kbit..1tbit."),
        KeyDoc(name: "peak", shape: .ref("rate"), description: "Rate during a burst, at least average (default: average)."),
        KeyDoc(name: "burst", shape: .ref("byte-size"), description: "Bytes that may pass at peak; at least the largest frame a port of the group carries (65593 bytes with offloads, MTU+18 when every NIC has offloads: false), which is also the default. At most 1 GiB."),
    ])
    static let mirror = KeyTable(title: "mirror", keys: [
        KeyDoc(name: "name", shape: name(31), required: true, description: "Unique on the switch."),
        KeyDoc(name: "source", shape: .list(name(31), minItems: 1, maxItems: nil), required: true, description: "Port groups whose traffic is copied."),
        KeyDoc(name: "direction", shape: .enumeration(["in", "out", "both"]), description: "Default both."),
        KeyDoc(name: "destination", shape: .object(mirrorDestination), required: true, description: "Where copies go."),
    ])
    static let mirrorDestination = KeyTable(title: "mirror destination", keys: [
        KeyDoc(name: "port-group", shape: name(31), required: true, description: "A port group of the switch that is not a source."),
    ])
    static let overlay = KeyTable(title: "overlay", keys: [
        KeyDoc(name: "vni", shape: integer(1...Int(OverlaySpec.maxVNIBase)), required: true,
               description: "The base VNI: vlan none travels as it, VLAN V as vni+V; vni+4094 must fit in 24 bits. Ranges of two switches must not overlap."),
        KeyDoc(name: "remote-vteps", shape: .anyOf([.null, .list(.anyOf([.ref("ip-address"), .object(remoteVTEP)]), minItems: 0, maxItems: 1024)]),
               description: "VTEPs that are not Tapestry hosts (a Linux vxlan device, Open vSwitch, a hardware switch)."),
        KeyDoc(name: "port", shape: integer(1...65535), description: "UDP port (default 4789)."),
    ])
    static let remoteVTEP = KeyTable(title: "remote VTEP", keys: [
        KeyDoc(name: "address", shape: .ref("ip-address"), required: true, description: "Its underlay address."),
        KeyDoc(name: "vlans", shape: .list(.anyOf([.ref("vlan-id"), .string(pattern: "^[1-9][0-9]{0,3}-[1-9][0-9]{0,3}$", maxLength: nil), .enumeration(["none"])]), minItems: 1, maxItems: 4095),
               description: "The VLANs it serves (none for the untagged domain); default all."),
    ])
    static let privateVLAN = KeyTable(title: "private VLAN", keys: [
        KeyDoc(name: "isolated", shape: .ref("vlan-id"), description: "The isolated secondary VLAN."),
        KeyDoc(name: "community", shape: .list(.ref("vlan-id"), minItems: 0, maxItems: 4094), description: "Community secondary VLANs."),
    ])
    static let staticGroup = KeyTable(title: "static multicast group", keys: [
        KeyDoc(name: "group", shape: .ref("ip-address"), required: true, description: "An IPv4 or IPv6 multicast group, not link-local scope."),
        KeyDoc(name: "vlan", shape: .ref("vlan-or-none"), description: "Defaults to the VLAN of the ports when they are access ports of one VLAN."),
        KeyDoc(name: "ports", shape: .list(.ref("port-name"), minItems: 1, maxItems: nil), required: true, description: "Member ports."),
    ])
    static let flowExport = KeyTable(title: "flow-export", keys: [
        KeyDoc(name: "collector", shape: .string(pattern: "^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]]+):[0-9]{1,5}$", maxLength: 260), required: true,
               description: "HOST:PORT (an IPv6 address in brackets: [2001:db8::1]:4739)."),
        KeyDoc(name: "active-timeout", shape: .ref("duration"), description: "1s..3600s (default 60s)."),
        KeyDoc(name: "idle-timeout", shape: .ref("duration"), description: "1s..3600s (default 15s)."),
        KeyDoc(name: "sampling", shape: integer(1...16_777_215), description: "Sample one frame in N (default 1)."),
        KeyDoc(name: "observation-domain", shape: integer(0...4_294_967_295), description: "IPFIX observation domain ID (default 0)."),
    ])

    static let guest = KeyTable(title: "guest", keys: [
        KeyDoc(name: "kind", shape: .enumeration(GuestKind.allCases.map(\.rawValue)), required: true, description: "netns, qemu or vhost-user."),
        KeyDoc(name: "host", shape: name(15), description: "The host that runs it; required when the file has hosts, an error otherwise."),
        KeyDoc(name: "memory", shape: .ref("memory-size"), description: "qemu only: 64M..65536M (default 256M)."),
        KeyDoc(name: "cpus", shape: integer(1...16), description: "qemu only: 1..16 (default 1)."),
        KeyDoc(name: "restart", shape: .enumeration(["never", "on-failure", "always"]), description: "qemu (default never); on a netns guest, with etcd, whether HA re-creates it on another host."),
        KeyDoc(name: "gateway", shape: .anyOf([.ref("ip-address"), .list(.ref("ip-address"), minItems: 1, maxItems: 2)]),
               description: "Default gateway: one address, or a list of at most one IPv4 and one IPv6; each on one of the guest's subnets."),
        KeyDoc(name: "routes", shape: .anyOf([.null, .list(.object(route), minItems: 0, maxItems: 256)]), description: "Static routes."),
        KeyDoc(name: "socket", shape: .object(socket), description: "vhost-user only: the sockets' mode and permissions."),
        KeyDoc(name: "nics", shape: .list(.object(nic), minItems: 1, maxItems: 8), required: true, description: "1..8 NICs; NIC N is port GUEST.ethN."),
    ])
    static let route = KeyTable(title: "route", keys: [
        KeyDoc(name: "to", shape: .anyOf([.ref("ip-prefix"), .enumeration(["default"])]), required: true,
               description: "A network (host bits zero), or default."),
        KeyDoc(name: "via", shape: .ref("ip-address"), required: true, description: "The next hop, on one of the guest's subnets, of the same family."),
    ])
    static let socket = KeyTable(title: "vhost-user socket", keys: [
        KeyDoc(name: "mode", shape: .enumeration(VhostUserMode.allCases.map(\.rawValue)),
               description: "server (default): the switch serves /run/tapestry/NAME.vhost/GUEST.ethN.sock; client: it connects to each NIC's socket-path."),
        KeyDoc(name: "owner", shape: .string(pattern: "^([a-z_][a-z0-9_-]*[$]?|[0-9]+)$", maxLength: 32), description: "server mode: the socket's owner (user name or uid)."),
        KeyDoc(name: "group", shape: .string(pattern: "^([a-z_][a-z0-9_-]*[$]?|[0-9]+)$", maxLength: 32), description: "server mode: the socket's group (group name or gid)."),
        KeyDoc(name: "permissions", shape: .string(pattern: "^0?[0-7]{3}$", maxLength: 4),
               description: "server mode: permission bits, always octal like chmod (default 0600). Quote it: YAML 1.2 reads 0660 as the decimal 660."),
    ])
    static let nic = KeyTable(title: "NIC", keys: [
        KeyDoc(name: "switch", shape: name(15), required: true, description: "A switch of the file."),
        KeyDoc(name: "port-group", shape: name(31), required: true, description: "A port group of that switch."),
        KeyDoc(name: "mac", shape: .ref("mac"), description: "Unicast; derived from the names when absent (required for vhost-user guests)."),
        KeyDoc(name: "ip", shape: .anyOf([.ref("ip-prefix"), .enumeration(["dhcp"]), .list(.anyOf([.ref("ip-prefix"), .enumeration(["dhcp"])]), minItems: 1, maxItems: 16)]),
               description: "An address with prefix (IPv4 or IPv6), dhcp, or a list of them (dhcp at most once)."),
        KeyDoc(name: "backend", shape: .enumeration(NICBackend.allCases.map(\.rawValue)), description: "qemu only: vhost-user (default) or tap."),
        KeyDoc(name: "offloads", shape: .ref("boolean"), description: "false turns the guest's checksum/TSO offloads off (default true)."),
        KeyDoc(name: "socket-path", shape: .string(pattern: "^/", maxLength: 107), description: "vhost-user client mode: the frontend's socket (absolute path)."),
    ])
    static let link = KeyTable(title: "link", keys: [
        KeyDoc(name: "between", shape: .list(.string(pattern: "^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$", maxLength: 47), minItems: 2, maxItems: 2), required: true,
               description: "Two ends SWITCH/PORT-GROUP on different switches."),
        KeyDoc(name: "host", shape: name(15), description: "The host the link runs on; required when the file has hosts."),
    ])
    static let host = KeyTable(title: "host", keys: [
        KeyDoc(name: "underlay", shape: .ref("ip-address"), required: true, description: "This host's VTEP address (IPv4 or IPv6)."),
        KeyDoc(name: "netns", shape: .string(pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]*$", maxLength: 63), description: "The network namespace that holds the underlay address (several hosts on one machine)."),
        KeyDoc(name: "cpus", shape: integer(1...4096), description: "CPUs guests may use here (HA admission)."),
        KeyDoc(name: "memory", shape: .ref("memory-size"), description: "Memory guests may use here (HA admission)."),
        KeyDoc(name: "datapath", shape: .object(datapath), description: "Overrides of the file-wide datapath, key by key."),
    ])
    static let datapath = KeyTable(title: "datapath", keys: [
        KeyDoc(name: "threads", shape: integer(1...64), description: "Forwarding threads, 1..64."),
        KeyDoc(name: "poll", shape: .ref("poll-duration"), description: "Busy-poll window, 0..1s (0: off)."),
    ])
    static let etcd = KeyTable(title: "etcd", keys: [
        KeyDoc(name: "endpoints", shape: .list(.string(pattern: "^https?://", maxLength: 300), minItems: 1, maxItems: 16), required: true,
               description: "http://HOST[:PORT] or https://HOST[:PORT] (default port 2379); one scheme for all."),
        KeyDoc(name: "tls", shape: .object(etcdTLS), description: "TLS files (absolute paths), for https endpoints."),
    ])
    static let etcdTLS = KeyTable(title: "etcd tls", keys: [
        KeyDoc(name: "ca", shape: .string(pattern: "^/", maxLength: 4096), description: "CA certificate of etcd's server certificate."),
        KeyDoc(name: "cert", shape: .string(pattern: "^/", maxLength: 4096), description: "Client certificate (with key)."),
        KeyDoc(name: "key", shape: .string(pattern: "^/", maxLength: 4096), description: "Client key (with cert)."),
    ])
    static let ha = KeyTable(title: "ha", keys: [
        KeyDoc(name: "isolation-addresses", shape: .anyOf([.null, .list(.ref("ip-address"), minItems: 0, maxItems: 8)]),
               description: "Addresses a host pings to tell isolation from an etcd outage."),
        KeyDoc(name: "isolation-response", shape: .enumeration(IsolationResponse.allCases.map(\.rawValue)), description: "none (default) or power-off."),
    ])
}
