import Model

/// How a guest NIC reaches its switch port (`nics[].backend` in a topology).
public enum NICBackend: Sendable, Equatable {
    /// A TAP device. `fd` is the caller's descriptor of it, opened with IFF_VNET_HDR (QEMU
    /// follows the descriptor's mode: frames carry a virtio-net header, so the NIC's offloads
    /// cross the TAP; `offloads: false` turns them off in the device). The runner duplicates
    /// it into QEMU at a fixed number; the caller keeps its own copy open, so the TAP netdev
    /// (the switch's port) survives QEMU exiting, crashing and restarting.
    case tap(fd: Int32)
    /// vhost-user: QEMU serves the Unix socket at `socketPath` (`server=on`) and
    /// the switch's `VhostUserPort` connects to it as a client, reconnecting whenever QEMU
    /// (or the switch) restarts, as Open vSwitch-DPDK's `dpdkvhostuserclient` ports do. The
    /// guest's memory becomes a shared memfd and the NIC's checksum and TSO offloads are on.
    case vhostUser(socketPath: String)
}

/// One virtio NIC of a guest: its backend and how the guest configures it.
public struct GuestNIC: Sendable, Equatable {
    /// The NIC's MAC. It stays the same across QEMU restarts: the switch port is bound to it.
    public var mac: MACAddress
    /// TAP or vhost-user.
    public var backend: NICBackend
    /// IPv4 addresses with prefix length ("10.0.10.5/24") for ethN inside the guest.
    public var addresses: [String]
    /// The interface MTU inside the guest; nil keeps the kernel's 1500.
    public var mtu: Int?
    /// virtio-net's checksum and segmentation offloads (csum, gso, guest/host TSO4/6, ECN)
    /// on; false turns every one off (`offloads: false`, for a guest whose driver misbehaves).
    public var offloads: Bool

    public init(mac: MACAddress, backend: NICBackend, addresses: [String] = [], mtu: Int? = nil, offloads: Bool = true) {
        self.mac = mac
        self.backend = backend
        self.addresses = addresses
        self.mtu = mtu
        self.offloads = offloads
    }

    /// A TAP-backed NIC (see `NICBackend.tap`).
    public init(mac: MACAddress, tapFD: Int32, addresses: [String] = [], mtu: Int? = nil, offloads: Bool = true) {
        self.init(mac: mac, backend: .tap(fd: tapFD), addresses: addresses, mtu: mtu, offloads: offloads)
    }

    /// The TAP descriptor, or -1 for a vhost-user NIC.
    public var tapFD: Int32 {
        if case .tap(let fd) = backend { return fd }
        return -1
    }

    /// The vhost-user socket path, or nil for a TAP NIC.
    public var vhostUserSocket: String? {
        if case .vhostUser(let path) = backend { return path }
        return nil
    }
}

/// What to boot: one guest of kind `qemu`. NIC i is `eth<i>` in the guest (matched by MAC,
/// not by PCI probe order) and `GUEST.eth<i>` on the switch.
public struct VMSpec: Sendable, Equatable {
    /// The guest's name: QEMU's `-name` (so `ps` tells which VM a process is), the guest's
    /// hostname, and the stem of its socket and log files.
    public var name: String
    public var memoryMiB: Int
    public var cpus: Int
    public var nics: [GuestNIC]
    /// IPv4 default gateway inside the guest.
    public var gateway: String?
    /// Appended to the kernel command line, e.g. `tapestry.ip=eth0.10=10.0.10.5/24` for an
    /// address on a VLAN sub-interface of a trunk NIC (see Scripts/guest/init).
    public var extraKernelArguments: [String]
    /// The full network configuration (IPv6, DHCP, gateways, routes), passed through fw_cfg
    /// (`GuestNetworkConfig`); nil: only what the command line says (`nics[].addresses`,
    /// `mtu`, `gateway`). The two add up; give each address in one place only.
    public var network: GuestNetworkConfig?
    /// The named network namespace (/run/netns/NAME) QEMU runs in — its host's `netns:` in a
    /// multi-host topology, where the NICs' TAPs live too; nil: the caller's.
    public var networkNamespace: String?

    public init(name: String, memoryMiB: Int = 256, cpus: Int = 1, nics: [GuestNIC] = [],
                gateway: String? = nil, extraKernelArguments: [String] = [], network: GuestNetworkConfig? = nil,
                networkNamespace: String? = nil) {
        self.networkNamespace = networkNamespace
        self.name = name
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.nics = nics
        self.gateway = gateway
        self.extraKernelArguments = extraKernelArguments
        self.network = network
    }

    /// The TAP descriptors QEMU inherits, in NIC order (vhost-user NICs have none): TAP NIC
    /// number k (counting TAP NICs only) is descriptor `QEMUCommand.firstNICDescriptor + k`.
    public var tapDescriptors: [Int32] { nics.compactMap { $0.vhostUserSocket == nil ? $0.tapFD : nil } }

    /// Whether any NIC is vhost-user (the guest's memory must then be shared).
    public var usesVhostUser: Bool { nics.contains { $0.vhostUserSocket != nil } }

    /// Throws `VMError.invalidSpec` naming every problem. Names, addresses and kernel
    /// arguments end up in QEMU's comma-separated option syntax and on a space-separated
    /// kernel command line, so the character sets are strict.
    public func validate() throws {
        var problems: [String] = []
        let nameOK = !name.isEmpty && name.count <= 63 && name.utf8.first.map(isAlnum) == true
            && name.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }
        if !nameOK { problems.append("name '\(name)' must be 1-63 letters, digits, '-' or '_', starting with a letter or digit") }
        if !(64...1_048_576).contains(memoryMiB) { problems.append("memory \(memoryMiB) MiB is outside 64 MiB…1 TiB") }
        if !(1...64).contains(cpus) { problems.append("cpus \(cpus) is outside 1…64") }
        if nics.count > 28 { problems.append("\(nics.count) NICs: at most 28 fit on the PCI bus") }
        var seen = Set<MACAddress>()
        for (i, nic) in nics.enumerated() {
            if !nic.mac.isUnicast { problems.append("eth\(i): \(nic.mac) is not a unicast MAC") }
            if !seen.insert(nic.mac).inserted { problems.append("eth\(i): MAC \(nic.mac) is used twice") }
            switch nic.backend {
            case .tap(let fd):
                if fd < 0 { problems.append("eth\(i): no TAP descriptor") }
            case .vhostUser(let path):
                if path.isEmpty || path.utf8.count > 107 { problems.append("eth\(i): vhost-user socket path '\(path)' is empty or longer than 107 bytes") }
                if path.contains(",") { problems.append("eth\(i): vhost-user socket path '\(path)' contains a comma") }
            }
            for a in nic.addresses where !Self.isIPv4CIDR(a) { problems.append("eth\(i): '\(a)' is not an IPv4 address with prefix (a.b.c.d/n)") }
            if let mtu = nic.mtu, !(68...65535).contains(mtu) { problems.append("eth\(i): MTU \(mtu) is outside 68…65535") }
        }
        if let gw = gateway, !Self.isIPv4(gw) { problems.append("gateway '\(gw)' is not an IPv4 address") }
        if let ns = networkNamespace, ns.isEmpty || ns == "." || ns == ".." || ns.contains("/") || ns.utf8.count > 255 {
            problems.append("network namespace '\(ns)' is not a plain name")
        }
        for arg in extraKernelArguments where arg.isEmpty || arg.contains(where: { $0 == " " || $0 == "\"" || $0 == "\n" }) {
            problems.append("kernel argument '\(arg)' is empty or contains a space, quote or newline")
        }
        if let n = network { problems += n.problems() }
        if !problems.isEmpty { throw VMError.invalidSpec(name: name, problems: problems) }
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCII) && p.allSatisfy(\.isNumber) && Int(p).map { $0 <= 255 } == true
        }
    }

    static func isIPv4CIDR(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, isIPv4(String(parts[0])), let p = Int(parts[1]), (0...32).contains(p), parts[1].allSatisfy(\.isASCII) else { return false }
        return true
    }
}

private func isAlnum(_ c: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c)
        || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
}

/// Where one VM's files live. Sockets and the pid file go under a runtime directory
/// (e.g. /run/tapestry/NAME-vms), logs under a log directory (the same by default).
public struct VMPaths: Sendable, Equatable {
    public var name: String
    public var runDirectory: String
    public var logDirectory: String

    public init(name: String, runDirectory: String, logDirectory: String? = nil) {
        self.name = name
        self.runDirectory = runDirectory
        self.logDirectory = logDirectory ?? runDirectory
    }

    /// The serial console (QEMU's chardev socket server) that `tapestry vm console` attaches to.
    public var consoleSocket: String { "\(runDirectory)/\(name).console" }
    /// QMP, QEMU's JSON control socket.
    public var qmpSocket: String { "\(runDirectory)/\(name).qmp" }
    /// QEMU's `-pidfile`: finds a QEMU left behind by a crashed daemon (`VMSupervisor.killStale`).
    public var pidFile: String { "\(runDirectory)/\(name).pid" }
    /// Everything the guest printed on its serial console, across restarts (appended).
    public var consoleLog: String { "\(logDirectory)/\(name).console.log" }
    /// The network configuration file QEMU serves through fw_cfg (`GuestNetworkConfig`).
    public var networkConfig: String { "\(runDirectory)/\(name).net" }
    /// QEMU's own stdout and stderr, with a line from the runner per start.
    public var processLog: String { "\(logDirectory)/\(name).qemu.log" }

    /// Unix socket paths must fit sockaddr_un.sun_path (108 bytes with the NUL).
    func validate() throws {
        for p in [consoleSocket, qmpSocket] where p.utf8.count > 107 {
            throw VMError.invalidSpec(name: name, problems: ["socket path \(p) is longer than 107 bytes"])
        }
    }
}
