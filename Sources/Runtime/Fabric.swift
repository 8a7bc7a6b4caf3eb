import CLinux
import Core
import Foundation
import LinuxIO
import Model
import Netlink
import Topology
import VMRunner
#if canImport(Glibc)
import Glibc
#endif

/// A running topology: its namespaces, TAP devices, datapath and control socket.
///
/// `up` order: refuse if running → clean a crashed predecessor → check every name is free →
/// record what will be created → create → forward. `down` (or a signal) removes everything
/// in reverse. If anything fails half way, what was created is removed before the error is
/// reported, so a failed `up` leaves nothing behind.
public final class Fabric {
    /// The topology and plans being run; replaced by a live reload (see Reload.swift), so
    /// control threads read them through these accessors.
    public var topology: Topology { view.withLock { _topology } }
    public var plans: [SwitchPlan] { view.withLock { _plans } }
    let view = NSLock()
    var _topology: Topology
    var _plans: [SwitchPlan]
    /// Serialises reloads (control socket and SIGHUP).
    let reloading = NSLock()
    private(set) var datapath: Datapath?
    private var control: ControlServer?
    /// Per switch, per port: the port's I/O (TAPs of netns guests, AF_PACKET on uplinks).
    var ports: [[PortIO]] = []
    /// Uplink NIC ports by NIC name (also in `ports`).
    var uplinkPorts: [String: PacketPort] = [:]
    private(set) var teamMonitor: TeamMonitor?
    /// QEMU guests by name, and the TAPs whose fds the switch keeps for them (VMs.swift).
    var vms: [String: VMSupervisor] = [:]
    var vmTaps: [String: [TAPDevice]] = [:]
    var createdNamespaces: [String] = []
    /// Set when `down` begins, so streaming clients (capture) end.
    private(set) var isStopping = false
    private let startedAt = monotonicSeconds()
    let log: (String) -> Void
    /// Datapath worker threads; also the queues of each netns guest's TAP (one per worker).
    let datapathThreads = Datapath.configuredThreads()

    public init(topology: Topology, log: @escaping (String) -> Void) {
        self._topology = topology
        self._plans = topology.compile()
        self.log = log
    }

    /// What only this host can tell about `t` (uplink NICs that do not exist), as located
    /// errors. Empty when netlink is unavailable (then `up` reports its own error).
    public static func hostProblems(of t: Topology) -> [TopologyDiagnostic] {
        guard let nl = try? NetlinkSocket() else { return [] }
        return t.hostProblems { (try? nl.linkExists(named: $0)) == true }
    }

    /// The host-side name of a NIC's TAP before it moves into its guest: `tp` + 8 hex digits
    /// of FNV-1a over "topology/guest/index" (≤ 15 bytes, stable, unlikely to collide).
    public static func hostTAPName(topology: String, guest: String, nic: Int) -> String {
        let hex = String(fnv1a32("\(topology)/\(guest)/\(nic)"), radix: 16)
        return "tp" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    // MARK: - Up

    public func up() throws {
        try RunDirectory.ensure()
        try Fabric.cleanStale(name: topology.name, log: log)
        try preflight()
        var state = InstanceState(name: topology.name, file: topology.file, pid: getpid(),
                                  processStart: processStartTime(getpid()),
                                  namespaces: topology.guests.filter { $0.kind == .netns }.map(\.name), links: [])
        state.vms = topology.guests.filter { $0.kind == .qemu }.map(\.name)
        state.groOff = topology.switches.flatMap { $0.uplinks?.nics ?? [] }.filter { cl_ethtool_get_gro($0) == 1 }
        try state.write()
        do {
            var byPort: [String: PortIO] = [:]
            try openUplinks(into: &byPort)
            try createGuests(into: &byPort)
            ports = plans.map { plan in plan.ports.map { byPort[$0.name]! } }
            let runtimes = plans.enumerated().map { SwitchRuntime(plan: $0.element, ports: ports[$0.offset]) }
            let dp = try Datapath(switches: runtimes, threads: datapathThreads, busyPollMicroseconds: Datapath.configuredBusyPoll())
            log("datapath: \(dp.threadCount) thread\(dp.threadCount == 1 ? "" : "s")"
                + (dp.busyPollMicroseconds > 0 ? ", poll mode (spins \(dp.busyPollMicroseconds) µs after work)" : ""))
            datapath = dp
            try startTeams(dp)
            dp.start()
            teamMonitor?.start()
            try startVMs()
            let server = try ControlServer(path: RunDirectory.socket(topology.name)) { [unowned self] req, fd in self.respond(to: req, fd: fd) }
            control = server
            server.start()
            state.links = []
            try state.write()
        } catch {
            down()
            throw error
        }
    }

    /// Every name this topology needs must be free, and every uplink NIC must exist; all
    /// problems are reported at once.
    private func preflight() throws {
        let missing = Fabric.hostProblems(of: topology)
        if !missing.isEmpty { throw RuntimeError(missing.map(\.description).joined(separator: "\n")) }
        try preflight(topology.guests)
    }

    /// Opens an AF_PACKET port on each uplink NIC (up, promiscuous, GRO off while we run).
    private func openUplinks(into byPort: inout [String: PortIO]) throws {
        let nl = try NetlinkSocket()
        for s in topology.switches {
            guard let u = s.uplinks else { continue }
            for nic in u.nics {
                try nl.setLinkUp(named: nic)
                let port = try PacketPort(interface: nic, txVNetHeader: true, disableGRO: true, mtu: s.mtu)
                uplinkPorts[nic] = port
                byPort[nic] = port
            }
            log("switch \(s.name): uplinks \(u.nics.joined(separator: ", ")) (policy \(u.policy.rawValue), \(u.detection.rawValue)"
                + (u.policy == .failoverOrder ? ", active \(u.active.joined(separator: ",")), standby \(u.standby.joined(separator: ","))" : "") + ")")
        }
    }

    /// Starts watching the teams' health (link events, beacons).
    private func startTeams(_ dp: Datapath) throws {
        let teams = topology.switches.compactMap { s in
            s.uplinks.map { u in (switchName: s.name, beaconProbing: u.detection == .beaconProbing, ports: u.nics.map { uplinkPorts[$0]! }) }
        }
        guard !teams.isEmpty else { return }
        teamMonitor = try TeamMonitor(datapath: dp, topologyName: topology.name, uplinks: teams, log: log)
    }

    /// `guests`' names must be free (also checked for the guests a reload adds).
    func preflight(_ guests: [GuestSpec]) throws {
        var problems: [String] = []
        for g in guests where g.kind == .netns && NetworkNamespace.exists(g.name) {
            problems.append("network namespace '\(g.name)' already exists (not created by topology '\(topology.name)'); remove it or rename guest '\(g.name)'")
        }
        let nl = try NetlinkSocket()
        for g in guests {
            for nic in g.nics {
                let host = Fabric.hostTAPName(topology: topology.name, guest: g.name, nic: nic.index)
                if (try? nl.linkExists(named: host)) == true { problems.append("link '\(host)' (for \(nic.portName)) already exists") }
            }
        }
        if !problems.isEmpty { throw RuntimeError(problems.joined(separator: "\n")) }
    }

    private func createGuests(into byPort: inout [String: PortIO]) throws {
        let host = try NetlinkSocket()
        for g in topology.guests {
            switch g.kind {
            case .netns: try createGuest(g, of: topology, host: host, into: &byPort)
            case .qemu: try createVMPorts(g, of: topology, host: host, into: &byPort)
            case .vhostUser: throw RuntimeError("guest \(g.name): kind vhost-user is not supported by this runtime yet")
            }
        }
    }

    /// Creates one netns guest of `topology`: its namespace (recorded in `createdNamespaces`
    /// first, so a failure half way is cleaned up by `down`), and one TAP per NIC, moved
    /// inside and configured; the TAPs land in `byPort` (by port name) as they are made.
    /// Used by `up` and by a live reload for the guests it adds.
    func createGuest(_ g: GuestSpec, of topology: Topology, host: NetlinkSocket, into byPort: inout [String: PortIO]) throws {
        try NetworkNamespace.create(g.name)
        createdNamespaces.append(g.name)
        let inside = try NetlinkSocket(namespace: g.name)
        try inside.setLinkUp(named: "lo")
        let nsfd = try NetworkNamespace.open(g.name)
        defer { close(nsfd) }
        for nic in g.nics {
            let name = Fabric.hostTAPName(topology: topology.name, guest: g.name, nic: nic.index)
            // vnet header + TSO/checksum offload: the guest's TCP moves as 64 KiB GSO frames
            // through the switch instead of 1500-byte ones (README "Datapath").
            let tap = try TAPDevice(name: name, vnetHeader: true, queues: datapathThreads)
            try tap.enableOffloads()
            byPort[nic.portName] = tap
            try host.moveLink(named: tap.name, toNamespaceFD: nsfd)
            guard let index = try inside.linkIndex(named: tap.name) else {
                throw RuntimeError("\(nic.portName): link \(tap.name) did not arrive in namespace \(g.name)")
            }
            let mtu = topology.mtu(of: nic)
            try inside.configureLink(index: index, name: nic.interfaceName, mac: nic.mac, mtu: mtu, up: true)
            if let ip = nic.ip {
                try inside.addIPv4Address(index: index, address: ip.address, prefixLength: ip.prefixLength)
            }
        }
        log("guest \(g.name): namespace up, " + g.nics.map { "\($0.interfaceName) \($0.mac)\($0.ip.map { " \($0)" } ?? "") on \($0.switchName)/\($0.portGroup)" }.joined(separator: "; "))
    }

    // MARK: - Down

    /// Stops forwarding and removes everything this instance created. Idempotent.
    public func down() {
        // Waits for a reload in progress to finish, so nothing it creates is left behind.
        reloading.lock(); defer { reloading.unlock() }
        isStopping = true
        control?.stop(); control = nil
        stopVMs()
        teamMonitor?.stop(); teamMonitor = nil
        datapath?.stop(); datapath = nil
        for row in ports { for t in row { t.close() } }
        for p in uplinkPorts.values { p.close() }
        ports = []
        uplinkPorts = [:]
        for ns in createdNamespaces.reversed() {
            do { try NetworkNamespace.delete(ns) } catch { log("warning: cannot delete namespace \(ns): \(error)") }
        }
        createdNamespaces = []
        unlink(RunDirectory.socket(topology.name))
        unlink(RunDirectory.state(topology.name))
    }

    /// Removes what a crashed instance of `name` left behind; refuses if it is alive.
    public static func cleanStale(name: String, log: (String) -> Void) throws {
        guard let old = InstanceState.read(name: name) else { return }
        if old.isAlive {
            throw RuntimeError("topology '\(name)' is already running (pid \(old.pid), from \(old.file)); stop it with 'tapestry down --name \(name)'")
        }
        var removed: [String] = []
        for vm in old.vms ?? [] {
            if let pid = VMSupervisor.killStale(paths: vmPaths(topology: name, guest: vm)) { removed.append("VM \(vm) (QEMU pid \(pid))") }
        }
        for ns in old.namespaces where NetworkNamespace.exists(ns) {
            try? NetworkNamespace.delete(ns); removed.append("namespace \(ns)")
        }
        for nic in old.groOff ?? [] where cl_ethtool_set_gro(nic, 1) == 0 { removed.append("GRO on \(nic) turned back on") }
        if let nl = try? NetlinkSocket() {
            for l in old.links where (try? nl.linkExists(named: l)) == true { try? nl.deleteLink(named: l); removed.append("link \(l)") }
        }
        unlink(RunDirectory.socket(name))
        unlink(RunDirectory.state(name))
        log("cleaned up after topology '\(name)' (pid \(old.pid) is gone)" + (removed.isEmpty ? "" : ": removed " + removed.joined(separator: ", ")))
    }

    // MARK: - Control

    func respond(to req: ControlRequest, fd: Int32) -> Data? {
        let enc = JSON.encoder()
        do {
            switch req.command {
            case "status": return try enc.encode(status())
            case "ports": return try enc.encode(ports(switch: req.switch))
            case "fdb": return try enc.encode(fdb(switch: req.switch, vlan: req.vlan))
            case "trace": return try enc.encode(trace(req))
            case "capture": return try streamCapture(req, fd: fd)
            case "reload": return try enc.encode(reload(req))
            case "vm": return try enc.encode(vmCommand(req))
            case "down":
                // The main thread waits for SIGTERM; tearing down from here would pull the
                // socket out from under this very reply.
                kill(getpid(), SIGTERM)
                return try enc.encode(["stopping": topology.name])
            default:
                return ControlServer.error("unknown command '\(req.command)' (expected status, ports, fdb, trace, capture, reload, vm or down)")
            }
        } catch {
            return ControlServer.error("\(error)")
        }
    }

    func status() -> StatusReport {
        let switches: [StatusReport.SwitchSummary] = plans.map { plan in
            // By name: a reload may have replaced the switches since `plans` was read.
            let entries = datapath.map { dp in
                dp.withSnapshot { dp.switches.first { $0.plan.name == plan.name }.map { $0.table.count + $0.table.staticCount } ?? 0 }
            } ?? 0
            return .init(name: plan.name, mtu: plan.mtu, ports: plan.ports.count, vlans: plan.usedVLANs.map(\.description),
                         macEntries: entries, macLimit: plan.macLimit, agingSeconds: plan.agingSeconds)
        }
        let guests: [StatusReport.GuestSummary] = topology.guests.map { g in
            .init(name: g.name, kind: g.kind.rawValue, namespace: g.kind == .netns ? g.name : nil,
                  nics: g.nics.map { .init(port: $0.portName, interface: $0.interfaceName, mac: $0.mac.description, ip: $0.ip?.description) },
                  vm: vms[g.name]?.status)
        }
        return StatusReport(name: topology.name, file: topology.file, pid: getpid(),
                            uptimeSeconds: monotonicSeconds() - startedAt,
                            datapathThreads: datapath?.threadCount, busyPollMicroseconds: datapath?.busyPollMicroseconds,
                            datapathFrames: datapath.map { dp in dp.withSnapshot { dp.framesPerWorker } },
                            switches: switches, guests: guests)
    }

    func ports(switch filter: String?) throws -> PortsReport {
        if let f = filter { _ = try resolveSwitch(f) }
        guard let dp = datapath else { return PortsReport(ports: []) }
        var rows: [PortsReport.PortRow] = []
        dp.withSnapshot {
            for sw in dp.switches where filter == nil || sw.plan.name == filter {
                let team = teamMonitor?.describeLocked(sw) ?? [:]
                for (i, p) in sw.plan.ports.enumerated() {
                    let c = sw.counters.snapshot(port: i)
                    let t = team[p.name]
                    var link = "up"
                    if p.isUplink { link = t.map { $0.role + ($0.reason.map { " (\($0))" } ?? "") } ?? "unknown" }
                    rows.append(.init(name: p.name, switch: sw.plan.name, portGroup: p.portGroup, kind: p.isUplink ? "uplink" : "guest",
                                      vlanMode: p.mode.description, link: link, team: t.map { .init(role: $0.role, reason: $0.reason, carries: $0.carries) },
                                      macEntries: sw.table.count(port: i),
                                      macLimit: p.macLimit, macEvictions: sw.table.evictions(port: i),
                                      rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames, txBytes: c.txBytes,
                                      drops: Dictionary(uniqueKeysWithValues: c.drops.map { ($0.key.description, $0.value) })))
                }
            }
        }
        return PortsReport(ports: rows)
    }

    func fdb(switch filter: String?, vlan: String?) throws -> FDBReport {
        if let f = filter { _ = try resolveSwitch(f) }
        let vlanFilter = try parseVLAN(vlan)
        guard let dp = datapath else { return FDBReport(entries: [], ports: []) }
        let now = monotonicSeconds()
        var out: [FDBReport.Entry] = []
        var ports: [FDBReport.PortUsage] = []
        dp.withSnapshot {
            for sw in dp.switches where filter == nil || sw.plan.name == filter {
                for e in sw.table.entries(now: now) where vlanFilter == nil || e.vlan == vlanFilter {
                    out.append(.init(switch: sw.plan.name, vlan: e.vlan.description, mac: e.mac.description,
                                     port: sw.plan.ports[e.port].name, ageSeconds: e.age, type: e.isStatic ? "static" : "dynamic"))
                }
                for (i, p) in sw.plan.ports.enumerated() {
                    ports.append(.init(switch: sw.plan.name, port: p.name, entries: sw.table.count(port: i),
                                       limit: sw.plan.hot[i].macLimit, evictions: sw.table.evictions(port: i)))
                }
            }
        }
        return FDBReport(entries: out, ports: ports)
    }
}

/// 32-bit FNV-1a of `text`'s UTF-8: short stable names and ids (TAP names, team ids).
func fnv1a32(_ text: String) -> UInt32 {
    var h: UInt32 = 0x811C_9DC5
    for b in text.utf8 { h = (h ^ UInt32(b)) &* 0x0100_0193 }
    return h
}

extension Topology {
    /// The MTU of the switch a NIC attaches to.
    func mtu(of nic: NICSpec) -> Int { switches.first { $0.name == nic.switchName }?.mtu ?? 1500 }
}
