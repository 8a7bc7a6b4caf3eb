import Core
import FabricStore
import Foundation
import LinuxIO
import Model
import Netlink
import Topology
import VhostUser
import VMRunner
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// A running topology: its namespaces, TAP devices, datapath and control socket.
///
/// `up` order: refuse if running → clean a crashed predecessor → check every name is free →
/// record what will be created → create → forward. `down` (or a signal) removes everything
/// in reverse. If anything fails half way, what was created is removed before the error is
/// reported, so a failed `up` leaves nothing behind.
public final class Fabric {
    /// The topology and plans being run; replaced by `apply` (Build.swift), so control
    /// threads read them through these accessors.
    public var topology: Topology { view.withLock { _topology } }
    public var plans: [SwitchPlan] { view.withLock { _plans } }
    let view = NSLock()
    var _topology: Topology
    var _plans: [SwitchPlan] = []
    /// The vhost-user ports in the datapath by port name (for `ports`), published with the plans.
    var _vhostPorts: [String: VhostUserPort] = [:]
    /// The whole file last applied (`currentFile`, HA.swift).
    var _fileTopology: Topology?
    /// The topology file `up` brings up (the running one starts empty and becomes it, or
    /// this host's part of it: `runningPart`).
    let target: Topology
    /// The host this instance runs (`up --host`, or the one whose underlay address is
    /// local); nil for a topology without `hosts:`.
    public let hostName: String?
    /// `NAME` or `NAME@HOST`: names every file of the instance (socket, state, lock, logs,
    /// VM and DHCP directories), so two hosts of one topology never share one.
    public let stem: String
    /// The tunnel ports running (this host's part's tunnels), and the underlay endpoints
    /// they send through, by UDP port (Tunnels.swift).
    var tunnels: [TunnelSpec] = []
    var underlayEndpoints: [UInt16: UnderlayEndpoint] = [:]
    /// Serialises `apply` (up, reload, SIGHUP) and `down`.
    let reloading = NSLock()
    private(set) var datapath: Datapath?
    private var control: ControlServer?
    /// Every port's I/O by port name (TAPs of netns guests, AF_PACKET on uplinks and VM
    /// TAPs), as swapped into the datapath last.
    var portsByName: [String: PortIO] = [:]
    /// Uplink NIC ports by NIC name (also in `portsByName`).
    var uplinkPorts: [String: PacketPort] = [:]
    var teamMonitor: TeamMonitor?
    /// IPFIX flow export of the switches with `flow-export` (FlowExport.swift); its
    /// interface registry lives as long as the daemon.
    var flowExport: FlowExportService?
    /// LLDP on the uplinks and `tapestry neighbors` (LLDPAgent.swift).
    var lldpAgent: LLDPAgent?
    /// Sends the general queries of switches with `multicast-querier: true` (idle otherwise).
    var querierService: MulticastQuerierService?
    /// QEMU guests by name, and how each NIC attaches: the TAP whose fd the switch keeps, or
    /// the vhost-user socket QEMU serves (VMs.swift). `vms` is changed only with `reloading`
    /// held; its lock lets control threads read it while the fabric's threads (HA,
    /// migrations) change it.
    var vms: [String: VMSupervisor] {
        get { vmsLock.withLock { _vms } }
        set { vmsLock.withLock { _vms = newValue } }
    }
    private let vmsLock = NSLock()
    private var _vms: [String: VMSupervisor] = [:]
    var vmNICs: [String: [VMNICAttachment]] = [:]
    /// The vhost-user socket directory exists (`RunDirectory.vhostDirectory(stem)`), and
    /// whether other users may reach it (VhostPorts.swift).
    var vhostDirectoryReady = false
    var vhostDirectoryReachable = false
    var createdNamespaces: [String] = []
    /// The nsfs inode of each namespace this instance created: a namespace is deleted only
    /// while its name still refers to the one created here (on one machine another host of
    /// the fabric may have taken the name over after HA moved the guest; HA.swift).
    var namespaceInodes: [String: UInt64] = [:]
    /// Membership, HA and migrations through etcd (HA.swift, VMotion.swift), for a topology
    /// with `etcd:` run with a host; nil otherwise (nothing changes without it).
    var fabricService: FabricService?
    /// Placement overrides of this host's part of the file (HA.swift), changed with
    /// `reloading` held: guests of other hosts' entries that etcd places here (HA restarts,
    /// migrations in), and guests of this host's entries that do not run here (moved away,
    /// or withheld at start-up).
    var movedHere: Set<String> = []
    var notHere: Set<String> = []
    /// Guests whose ports exist for an incoming migration: `apply` creates their ports and
    /// leaves their QEMU to VMotion.swift (`-incoming`), instead of booting it.
    var incoming: Set<String> = []
    /// The state file as last written (`writeState` skips writing the same again).
    var lastState: InstanceState?
    /// DHCP clients running inside netns guests, by guest (GuestAddressing.swift).
    var dhcpClients: [String: [RecordedProcess]] = [:]
    /// The port watch thread (PortWatch.swift).
    let portWatchStop = NSLock()
    var portWatchStopping = false
    var portWatchRunning = false
    let portWatchDone = DispatchSemaphore(value: 0)
    /// Set when `down` begins, so streaming clients (capture) end.
    private(set) var isStopping = false
    private let startedAt = monotonicSeconds()
    /// When this instance started, Unix epoch seconds (`process_start_time_seconds`).
    let startedAtEpoch = Double(realtimeNanoseconds()) / 1e9
    let log: (String) -> Void
    /// Datapath worker threads and poll window (the file's `datapath:`, the environment's
    /// overrides); the thread count is also the queue count of each netns guest's TAP.
    let settings: DatapathSettings
    var datapathThreads: Int { settings.threads }

    /// - Parameter settings: the resolved datapath settings (`DatapathSettings.resolve`); by
    ///   default the file's, with valid environment overrides.
    /// - Parameter host: the host to run (`up --host`); nil for a topology without `hosts:`.
    public init(topology: Topology, host: String? = nil, settings: DatapathSettings? = nil, log: @escaping (String) -> Void) {
        hostName = host
        stem = host.map { "\(topology.name)@\($0)" } ?? topology.name
        let file = topology.datapath(forHost: host)
        self.settings = settings ?? (try? DatapathSettings.resolve(fileThreads: file.threads, fileBusyPollMicroseconds: file.pollMicroseconds,
                                                                    environment: ProcessInfo.processInfo.environment,
                                                                    cores: ProcessInfo.processInfo.activeProcessorCount))
            ?? DatapathSettings(threads: 1, busyPollMicroseconds: 0)
        target = topology
        _topology = Topology(name: topology.name, file: topology.file, switches: [], guests: [])
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
        let hex = String(FNV1a.hash32("\(topology)/\(guest)/\(nic)"), radix: 16)
        return "tp" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    // MARK: - Up

    /// Brings the topology up: refuses if it runs, cleans a crashed predecessor, then applies
    /// it as a change from an empty topology (`apply`, the same path as `reload`) and opens
    /// the control socket. If anything fails half way, what was created is removed before
    /// the error is reported, so a failed `up` leaves nothing behind.
    public func up() throws {
        try RunDirectory.ensure()
        try Fabric.cleanStale(name: stem, log: log)
        // This host's part (the whole file without `hosts:`).
        let run = try runningPart(of: target).topology
        // Everything the target will create, recorded before anything exists.
        try writeState(file: target.file, extraNamespaces: run.guests.filter { $0.kind == .netns }.map(\.name),
                       extraVMs: run.guests.filter { $0.kind == .qemu }.map(\.name), vhostDirectory: Fabric.usesVhostDirectory(run))
        do {
            let dp = try Datapath(switches: [], threads: settings.threads, busyPollMicroseconds: settings.busyPollMicroseconds)
            dp.onPortDown = { [log] s, p, r in log("switch \(s): port \(p) is down (\(r)); reload re-creates it") }
            log("datapath: \(dp.threadCount) thread\(dp.threadCount == 1 ? "" : "s")"
                + (dp.busyPollMicroseconds > 0 ? ", poll mode (spins \(dp.busyPollMicroseconds) µs after work)" : ""))
            datapath = dp
            dp.start()
            flowExport = FlowExportService(datapath: dp, workers: dp.threadCount, log: log)
            lldpAgent = LLDPAgent(datapath: dp, topologyName: target.name, chassis: LLDPAgent.chassisName(for: target), log: log)
            let hostErrors = Fabric.hostProblems(of: run)
            if !hostErrors.isEmpty { throw RuntimeError(hostErrors.map(\.description).joined(separator: "\n")) }
            // With etcd: register, read the placement, and run only what it allows (HA.swift).
            // The fabric's threads wait for `reloading` until this first apply is done.
            _ = try reloading.withLock { () throws -> Applied in
                try startFabricService()
                return try apply(target, file: target.file)
            }
            flowExport?.start()
            lldpAgent?.start()
            let queries = MulticastQuerierService(datapath: dp, log: log)
            querierService = queries
            queries.start()
            startPortWatch()
            let access = ControlAccess.tapestryGroup()
            if access.group != nil { log("control socket: members of group '\(access.groupName)' may run \(access.commandList)") }
            let server = try ControlServer(path: RunDirectory.socket(stem), access: access) { [unowned self] req, fd in self.respond(to: req, fd: fd) }
            control = server
            server.start()
        } catch {
            down()
            throw error
        }
    }

    /// Creates one netns guest of `topology`: its namespace (recorded in `createdNamespaces`
    /// first, so a failure half way is cleaned up by `down`), and one TAP per NIC, moved
    /// inside and configured; the TAPs land in `byPort` (by port name) as they are made.
    func createGuest(_ g: GuestSpec, of topology: Topology, host: NetlinkSocket, into byPort: inout [String: PortIO]) throws {
        try NetworkNamespace.create(g.name)
        createdNamespaces.append(g.name)
        namespaceInodes[g.name] = Fabric.namespaceInode(g.name)
        let inside = try NetlinkSocket(namespace: g.name)
        try inside.setLinkUp(named: "lo")
        try NetworkNamespace.withDescriptor(g.name) { nsfd in
            try disableDAD(namespaceFD: nsfd, guest: g.name)
            for nic in g.nics {
                let name = Fabric.hostTAPName(topology: tapStem(topology), guest: g.name, nic: nic.index)
                // A 12-byte virtio-net header and, unless `offloads: false`, checksum offload,
                // TSO and USO: the guest's TCP moves as 64 KiB GSO frames through the switch
                // instead of 1500-byte ones (docs/ARCHITECTURE.md). Without offloads the guest
                // sends finished wire frames; what the switch writes to it is taken whole either way.
                let tap = try TAPDevice(name: name, vnetHeader: true, queues: datapathThreads)
                if nic.offloads {
                    // USO (UDP GSO) needs Linux ≥ 6.2: without it, checksum offload and TSO.
                    do { try tap.setOffloads([.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6]) }
                    catch { try tap.setOffloads([.checksum, .tso4, .tso6, .tsoECN]) }
                }
                byPort[nic.portName] = tap
                try host.moveLink(named: tap.name, toNamespaceFD: nsfd)
                guard let index = try inside.linkIndex(named: tap.name) else {
                    throw RuntimeError("\(nic.portName): link \(tap.name) did not arrive in namespace \(g.name)")
                }
                let mtu = topology.mtu(of: nic)
                try inside.configureLink(index: index, name: nic.interfaceName, mac: nic.mac, mtu: mtu, up: true)
                try configureAddresses(of: nic, index: index, inside: inside)
            }
        }
        try configureRoutes(of: g, inside: inside)
        log("guest \(g.name): namespace up, " + g.nics.map { nic in
            "\(nic.interfaceName) \(nic.mac)" + nic.addresses.map { " \($0)" }.joined() + (nic.dhcp ? " dhcp" : "") + " on \(nic.switchName)/\(nic.portGroup)"
        }.joined(separator: "; ") + g.gateways.map { "; gateway \($0.address)" }.joined() + (g.routes.isEmpty ? "" : "; \(g.routes.count) route(s)"))
    }

    // MARK: - Down

    /// Stops forwarding and removes everything this instance created. Idempotent.
    public func down() {
        // Waits for a reload in progress to finish, so nothing it creates is left behind.
        reloading.lock(); defer { reloading.unlock() }
        isStopping = true
        stopPortWatch()
        control?.stop(); control = nil
        // Leaves the fabric first: a clean `down` deletes this host's placements, so no
        // survivor restarts the guests stopped below.
        stopFabricService()
        stopVMs(Array(vms.keys) + Array(vmNICs.keys))
        stopDHCPClients()
        teamMonitor?.stop(); teamMonitor = nil
        // LLDP says goodbye (TTL 0) while the uplinks are still open.
        lldpAgent?.stop(); lldpAgent = nil
        querierService?.stop(); querierService = nil
        datapath?.stop(); datapath = nil
        // Every flow still in the tables is exported (forced end) before the sockets close.
        flowExport?.stop(); flowExport = nil
        for p in portsByName.values { retire(p) }
        for p in uplinkPorts.values { p.close() }
        for e in underlayEndpoints.values { e.close() }
        underlayEndpoints = [:]
        tunnels = []
        portsByName = [:]
        uplinkPorts = [:]
        for ns in createdNamespaces.reversed() { deleteOwnNamespace(ns) }
        createdNamespaces = []
        removeVhostDirectory()
        Files.remove(RunDirectory.socket(stem))
        Files.remove(RunDirectory.state(stem))
        try? FileManager.default.removeItem(atPath: Fabric.dhcpDirectory(stem))
    }

    /// Removes what a crashed instance left behind; refuses if it is alive.
    /// - Parameter name: the instance's stem (`NAME`, or `NAME@HOST` for one host of a
    ///   multi-host topology).
    public static func cleanStale(name: String, log: (String) -> Void) throws {
        guard let old = InstanceState.read(name: name) else { return }
        if old.isAlive {
            throw RuntimeError("topology '\(name)' is already running (pid \(old.pid), from \(old.file)); stop it with 'tapestry down --name \(name)'")
        }
        var removed: [String] = []
        for vm in old.vms ?? [] {
            if let pid = VMSupervisor.killStale(paths: vmPaths(topology: name, guest: vm)) { removed.append("VM \(vm) (QEMU pid \(pid))") }
        }
        let helpers = (old.dhcpClients ?? []).filter(\.isAlive)
        Fabric.stop(helpers)
        for p in helpers { removed.append("DHCP client of \(p.guest) (pid \(p.pid))") }
        // A namespace another live instance lists is its now (HA re-created the guest on a
        // host of the same fabric on this machine): it is left alone.
        let taken = Fabric.namespacesOfOtherLiveInstances(than: name)
        for ns in old.namespaces where NetworkNamespace.exists(ns) {
            if taken.contains(ns) { removed.append("(namespace \(ns) left to the instance that runs it now)"); continue }
            try? NetworkNamespace.delete(ns); removed.append("namespace \(ns)")
        }
        // State files of earlier versions list NICs whose GRO they had turned off.
        for nic in old.groOff ?? [] where GenericReceiveOffload.set(nic, enabled: true) { removed.append("GRO on \(nic) turned back on") }
        if let nl = try? NetlinkSocket() {
            for l in old.links where (try? nl.linkExists(named: l)) == true { try? nl.deleteLink(named: l); removed.append("link \(l)") }
        }
        // The vhost-user socket directory (only the one this stem names), with what a killed
        // QEMU left in it.
        if let dir = old.vhostDirectory, dir == RunDirectory.vhostDirectory(name), FileManager.default.fileExists(atPath: dir) {
            VhostSocketDirectory.remove(dir)
            RunDirectory.updateTraversal()
            removed.append("vhost-user sockets in \(dir)")
        }
        // The VMs' run directory (their QEMUs were killed above) and the DHCP clients' files.
        if FileManager.default.fileExists(atPath: "\(RunDirectory.path)/\(name).vms") {
            Fabric.removeVMDirectory(name)
            removed.append("\(RunDirectory.path)/\(name).vms")
        }
        try? FileManager.default.removeItem(atPath: Fabric.dhcpDirectory(name))
        Files.remove(RunDirectory.socket(name))
        Files.remove(RunDirectory.state(name))
        log("cleaned up after topology '\(name)' (pid \(old.pid) is gone)" + (removed.isEmpty ? "" : ": removed " + removed.joined(separator: ", ")))
    }

    // MARK: - Control

    func respond(to req: ControlRequest, fd: Int32) -> Data? {
        let enc = JSON.encoder()
        do {
            switch req.command {
            case "status": return try enc.encode(status(resetLockWaits: req.action == "reset-lock-waits"))
            case "ports": return try enc.encode(ports(switch: req.switch))
            case "fdb": return try enc.encode(fdb(switch: req.switch, vlan: req.vlan))
            case "mdb": return try enc.encode(mdb(switch: req.switch))
            case "neighbors": return try enc.encode(neighbors(switch: req.switch))
            case "trace": return try enc.encode(trace(req))
            case "capture": return try streamCapture(req, fd: fd)
            case "reload": return try enc.encode(reload(req))
            case "vm" where req.action == "migrate": return try enc.encode(migrate(req))
            case "vm": return try enc.encode(vmCommand(req))
            case "down":
                // The main thread waits for SIGTERM; tearing down from here would pull the
                // socket out from under this very reply.
                Processes.signalSelf(SIGTERM)
                return try enc.encode(["stopping": topology.name])
            default:
                return ControlServer.error("unknown command '\(req.command)' (expected status, ports, fdb, mdb, neighbors, trace, capture, reload, vm or down)")
            }
        } catch {
            return ControlServer.error("\(error)")
        }
    }

    func status(resetLockWaits: Bool = false) -> StatusReport {
        let snaps = datapath?.snapshots() ?? []
        let switches: [StatusReport.SwitchSummary] = plans.map { plan in
            // By name: a reload may have replaced the switches since `plans` was read.
            let entries = snaps.first { $0.plan?.name == plan.name }.map { $0.tableCount + $0.staticCount } ?? 0
            return .init(name: plan.name, mtu: plan.mtu, ports: plan.ports.count, vlans: plan.usedVLANs.map(\.description),
                         macEntries: entries, macLimit: plan.macLimit, agingSeconds: Int(plan.aging.secondsCount))
        }
        let guests: [StatusReport.GuestSummary] = topology.guests.map { g in
            .init(name: g.name, kind: g.kind.rawValue, namespace: g.kind == .netns ? g.name : nil,
                  nics: g.nics.map { .init(port: $0.portName, interface: $0.interfaceName, mac: $0.mac.description, ip: $0.ip?.description,
                                          addresses: $0.addresses.isEmpty ? nil : $0.addresses.map(\.description), dhcp: $0.dhcp ? true : nil) },
                  vm: vms[g.name]?.status)
        }
        var frames: [UInt64]? = nil, waits: [Double]? = nil
        if let dp = datapath {
            var copy = Array(repeating: UInt64(0), count: dp.threadCount)
            var longest = Array(repeating: Int64(0), count: dp.threadCount)
            dp.withLock { lock in
                lock.copyFramesPerWorker(into: &copy)
                lock.copyLongestLockWaits(into: &longest)
                if resetLockWaits { lock.resetLockWaits() }
            }
            frames = copy
            waits = longest.map { (Double($0) / 100).rounded() / 10 }
        }
        return StatusReport(name: topology.name, file: topology.file, pid: Processes.current,
                            uptimeSeconds: monotonicSeconds() - startedAt,
                            datapathThreads: datapath?.threadCount, busyPollMicroseconds: datapath?.busyPollMicroseconds,
                            datapathFrames: frames, datapathLockWaitMaxMicroseconds: waits, switches: switches, guests: guests,
                            flowExport: flowExport?.summaries() ?? [], host: hostName,
                            underlays: datapath?.underlayCounters(), fabric: fabricReport())
    }

    /// `tapestry neighbors`: what the physical switches said on each uplink (LLDP).
    func neighbors(switch filter: String?) throws -> NeighborsReport {
        if let f = filter { _ = try resolveSwitch(f) }
        return lldpAgent?.report(switch: filter) ?? NeighborsReport(chassis: LLDPAgent.chassisName(for: topology), uplinks: [], tooManyNeighbors: 0, ageouts: 0)
    }

    func ports(switch filter: String?) throws -> PortsReport {
        if let f = filter { _ = try resolveSwitch(f) }
        guard let dp = datapath else { return PortsReport(ports: []) }
        var rows: [PortsReport.PortRow] = []
        let io = view.withLock { _vhostPorts }
        let backends = Dictionary(topology.guests.flatMap { $0.nics.map { ($0.portName, $0.backend.rawValue) } }, uniquingKeysWith: { a, _ in a })
        for snap in dp.snapshots(only: filter) {
            guard let plan = snap.plan else { continue }
            let team = TeamMonitor.describe(snap.team, plan: plan)
            for (i, p) in plan.ports.enumerated() {
                let c = snap.counters(port: i)
                let t = team[p.name]
                var link = "up"
                if p.isUplink { link = t.map { $0.role + ($0.reason.map { " (\($0))" } ?? "") } ?? "unknown" }
                // A vhost-user port is up once its frontend runs both rings.
                let vhost = p.isLink || p.isTunnel || p.isUplink ? nil : vhostUserInfo(io[p.name])
                if let v = vhost, !v.connected { link = "no-frontend" }
                if let r = snap.down[i] { link = "down (\(r))" }
                var drops = Dictionary(uniqueKeysWithValues: c.drops.map { ($0.key.description, $0.value) })
                for (k, n) in vhost?.drops ?? [:] { drops[k, default: 0] += n }
                rows.append(.init(name: p.name, switch: plan.name, portGroup: p.portGroup, kind: p.kind,
                                  peer: p.link.map { "\($0.switchName)/\($0.portName)" } ?? p.tunnel.map(Fabric.tunnelPeerText),
                                  vlanMode: p.mode.description, link: link, team: t.map { .init(role: $0.role, reason: $0.reason, carries: $0.carries) },
                                  macEntries: snap.macEntries[i],
                                  macLimit: p.macLimit, macEvictions: snap.macEvictions[i],
                                  rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames, txBytes: c.txBytes,
                                  drops: drops, backend: p.kind == "guest" ? backends[p.name] : nil, vhostUser: vhost))
            }
        }
        return PortsReport(ports: rows, underlays: dp.underlayCounters())
    }

    func fdb(switch filter: String?, vlan: String?) throws -> FDBReport {
        if let f = filter { _ = try resolveSwitch(f) }
        let vlanFilter = try parseVLAN(vlan)
        guard let dp = datapath else { return FDBReport(entries: [], ports: []) }
        let now = dp.now()
        var out: [FDBReport.Entry] = []
        var ports: [FDBReport.PortUsage] = []
        // The table is copied a chunk per lock hold (the hold does not grow with the table).
        let chunk = UnsafeMutableBufferPointer<MACTable.Entry>.allocate(capacity: 512)
        defer { chunk.deallocate() }
        for snap in dp.snapshots(only: filter) {
            guard let plan = snap.plan else { continue }
            var cursor = 0
            var entries: [UInt64: MACTable.Entry] = [:]   // by (VLAN, MAC): a chunked walk may see one twice
            while true {
                let n: Int = dp.withLock { lock in
                    guard let sw = lock.switches.first(where: { $0.plan.isSame(plan) }) else { return 0 }
                    return sw.table(lock).copyEntries(from: &cursor, into: chunk, now: now)
                }
                if n == 0 { break }
                for e in chunk[0..<n] where vlanFilter == nil || e.vlan == vlanFilter {
                    entries[UInt64(e.vlan.rawValue) << 48 | e.mac.rawValue] = e
                }
            }
            for e in entries.values.sorted(by: { ($0.vlan, $0.mac) < ($1.vlan, $1.mac) }) {
                out.append(.init(switch: plan.name, vlan: e.vlan.description, mac: e.mac.description,
                                 port: plan.ports[e.port].name, ageSeconds: e.age.secondsCount, type: e.isStatic ? "static" : "dynamic",
                                 vtep: plan.ports[e.port].tunnel.map { "\($0.remote)" }))
            }
            for (i, p) in plan.ports.enumerated() {
                ports.append(.init(switch: plan.name, port: p.name, entries: snap.macEntries[i],
                                   limit: plan.hot[i].macLimit, evictions: snap.macEvictions[i]))
            }
        }
        return FDBReport(entries: out, ports: ports)
    }
}

extension Topology {
    /// The MTU of the switch a NIC attaches to.
    func mtu(of nic: NICSpec) -> Int { switches.first { $0.name == nic.switchName }?.mtu ?? 1500 }
}
