/// A QEMU guest's full network configuration: addresses of both families, DHCP,
/// MTUs, default gateways and static routes, handed to the guest's `/init` through QEMU's
/// firmware configuration device instead of the kernel command line.
///
/// ## Why fw_cfg
/// The kernel command line holds at most 2 KiB (x86 `COMMAND_LINE_SIZE`), and a guest with
/// a few NICs, IPv6 addresses and routes outgrows it. QEMU's `-fw_cfg name=opt/tapestry/net,
/// file=PATH` puts a file of any reasonable size into the guest's fw_cfg device, which
/// Linux's `qemu_fw_cfg` module (a module in Debian's kernel, `CONFIG_FW_CFG_SYSFS=m`) shows
/// at `/sys/firmware/qemu_fw_cfg/by_name/opt/tapestry/net/raw`. The alternative, a second
/// initramfs per VM appended to the image's, would mean writing a cpio archive per boot and
/// passing QEMU a concatenated copy of the whole image. fw_cfg costs one module load
/// (`/init` loads it only when the command line says `tapestry.net=fw_cfg`).
///
/// ## Payload (version 1)
/// Plain text, one directive per line, fields separated by one space (busybox `sh` reads it
/// with `read`); `#` starts a comment line:
/// ```
/// # tapestry guest network v1
/// mtu eth0 1500
/// addr eth0 10.0.10.5/24
/// addr eth0 2001:db8::5/64
/// dhcp eth1
/// gw 10.0.10.1 eth0
/// gw 2001:db8::1 eth0
/// route 10.2.0.0/24 10.0.10.1 eth0
/// ```
/// `/init` applies them in that order: MTUs, addresses (IPv6 ones with `nodad`, see
/// `Fabric` addressing for why), links up, gateways, routes, then one `udhcpc` per `dhcp`
/// interface in the background. Every field is checked here (`validate`) against a strict
/// character set, so no line can smuggle a shell word or a second directive.
public struct GuestNetworkConfig: Sendable, Equatable {
    /// One interface inside the guest (`ethN`).
    public struct Interface: Sendable, Equatable {
        /// `ethN`.
        public var name: String
        /// Addresses with prefix length, IPv4 (`10.0.10.5/24`) or IPv6 (`2001:db8::5/64`).
        public var addresses: [String]
        /// Run a DHCPv4 client (busybox `udhcpc`) on it.
        public var dhcp: Bool
        /// The MTU; nil keeps the kernel's 1500.
        public var mtu: Int?
        public init(name: String, addresses: [String] = [], dhcp: Bool = false, mtu: Int? = nil) {
            self.name = name; self.addresses = addresses; self.dhcp = dhcp; self.mtu = mtu
        }
    }
    /// A default gateway of one family, on an interface.
    public struct Gateway: Sendable, Equatable {
        public var address: String
        public var interface: String
        public init(address: String, interface: String) { self.address = address; self.interface = interface }
    }
    /// A static route: `to` (a prefix) via `via` on `interface`.
    public struct Route: Sendable, Equatable {
        public var to: String
        public var via: String
        public var interface: String
        public init(to: String, via: String, interface: String) { self.to = to; self.via = via; self.interface = interface }
    }

    public var interfaces: [Interface]
    /// At most one per family.
    public var gateways: [Gateway]
    public var routes: [Route]

    public init(interfaces: [Interface] = [], gateways: [Gateway] = [], routes: [Route] = []) {
        self.interfaces = interfaces; self.gateways = gateways; self.routes = routes
    }

    /// The fw_cfg file name (QEMU requires `opt/` for names of our own).
    public static let fwCfgName = "opt/tapestry/net"
    /// Largest payload accepted (bytes): a bound on what a spec can make the runner write.
    /// 64 KiB is ~2 000 directives, far beyond 28 NICs with their addresses and routes.
    public static let maximumPayload = 64 << 10

    /// The payload (see the type's comment).
    public var payload: String {
        var lines = ["# tapestry guest network v1"]
        for i in interfaces { if let m = i.mtu { lines.append("mtu \(i.name) \(m)") } }
        for i in interfaces { for a in i.addresses { lines.append("addr \(i.name) \(a)") } }
        for g in gateways { lines.append("gw \(g.address) \(g.interface)") }
        for r in routes { lines.append("route \(r.to) \(r.via) \(r.interface)") }
        for i in interfaces where i.dhcp { lines.append("dhcp \(i.name)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Every problem with the configuration: interface names `ethN` (N < 28, or a VLAN
    /// sub-interface `ethN.VID`), addresses and prefixes made of hex digits, `.`, `:` and
    /// `/` only (the guest's `ip` parses them), MTUs 68…65535, gateways and routes on a
    /// declared interface, and a payload of at most `maximumPayload` bytes.
    public func problems() -> [String] {
        var out: [String] = []
        let names = Set(interfaces.map(\.name))
        for i in interfaces {
            if !Self.isInterfaceName(i.name) { out.append("interface '\(i.name)' is not ethN or ethN.VID") }
            for a in i.addresses where !Self.isPrefix(a) { out.append("\(i.name): '\(a)' is not an address with a prefix length") }
            if let m = i.mtu, !(68...65535).contains(m) { out.append("\(i.name): MTU \(m) is outside 68…65535") }
        }
        for g in gateways {
            if !Self.isAddress(g.address) { out.append("gateway '\(g.address)' is not an address") }
            if !names.contains(g.interface) { out.append("gateway \(g.address): no interface \(g.interface)") }
        }
        for r in routes {
            if !Self.isPrefix(r.to) { out.append("route to '\(r.to)': not a prefix") }
            if !Self.isAddress(r.via) { out.append("route to \(r.to): via '\(r.via)' is not an address") }
            if !names.contains(r.interface) { out.append("route to \(r.to): no interface \(r.interface)") }
        }
        if payload.utf8.count > Self.maximumPayload {
            out.append("the network configuration is \(payload.utf8.count) bytes (at most \(Self.maximumPayload))")
        }
        return out
    }

    static func isInterfaceName(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts[0].hasPrefix("eth"),
              let n = Int(parts[0].dropFirst(3)), (0..<28).contains(n), parts[0].dropFirst(3).allSatisfy(\.isASCII) else { return false }
        if parts.count == 2 { guard let v = Int(parts[1]), (1...4094).contains(v), parts[1].allSatisfy(\.isASCII) else { return false } }
        return true
    }

    static func isAddress(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 45 && s.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit || $0 == "." || $0 == ":" }
            && s.unicodeScalars.contains { $0 == "." || $0 == ":" }
    }

    static func isPrefix(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, isAddress(String(parts[0])), let p = Int(parts[1]), (0...128).contains(p),
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        return true
    }
}
