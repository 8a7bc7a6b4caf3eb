import ArgumentParser
import Foundation
import Runtime
import Topology
#if canImport(Glibc)
import Glibc
#endif

/// A failure to report as `tapestry: error: MESSAGE` with exit status 1.
struct Failure: Error { var message: String }

struct Tapestry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tapestry",
        abstract: "A userspace virtual switch and network fabric for Linux.",
        discussion: "Exit status: 0 success, 1 failure, 2 usage error. Commands that talk to a running topology take --name NAME, needed only when several are running.",
        version: BuildInfo.version,
        subcommands: [Up.self, Down.self, ReloadCommand.self, Validate.self, List.self, Status.self, Ports.self, FDB.self, MDB.self, Trace.self,
                      CaptureCommand.self, VMCommand.self, Neighbors.self, GraphCommand.self, Extcap.self]
    )
}

// MARK: - Checking what the command line names

/// Throws a usage error (exit 2) unless `problem` is nil.
func check(_ option: String, _ problem: String?) throws {
    if let p = problem { throw ValidationError("\(option): \(p)") }
}

/// A file the command reads: it must exist and be a regular file (a FIFO or a device such as
/// /dev/zero could block or never end). nil when fine, else the problem.
func inputFileProblem(_ path: String) -> String? {
    if path.isEmpty { return "empty file name" }
    if path.utf8.contains(0) { return "file name contains a NUL byte" }
    var st = stat()
    guard stat(path, &st) == 0 else { return "cannot read '\(path)': \(String(cString: strerror(errno)))" }
    guard (st.st_mode & S_IFMT) == S_IFREG else { return "'\(path)' is not a regular file" }
    guard access(path, R_OK) == 0 else { return "cannot read '\(path)': \(String(cString: strerror(errno)))" }
    return nil
}

/// A VLAN filter: 1..4094 or none.
func vlanProblem(_ text: String) -> String? {
    if text == "none" { return nil }
    guard text.utf8.allSatisfy({ (48...57).contains($0) }), let n = Int(text), (1...4094).contains(n), !text.hasPrefix("0") else {
        return "invalid VLAN '\(text)': expected 1..4094 or none"
    }
    return nil
}

/// Loads and validates a topology file, printing located errors and warnings; with
/// `hostChecks`, also what only this host can tell (uplink NICs that do not exist).
func loadTopology(_ path: String, hostChecks: Bool = true, printWarnings: Bool = true) throws -> Topology {
    if let p = inputFileProblem(path) { throw Failure(message: p) }
    let t: Topology
    do {
        t = try TopologyLoader.load(path: path)
    } catch let errors as TopologyErrors {
        FileHandle.standardError.write(Data((errors.description + "\n").utf8))
        throw ExitCode(1)
    }
    if printWarnings { for w in t.warnings { FileHandle.standardError.write(Data((w.description + "\n").utf8)) } }
    if hostChecks {
        let problems = Fabric.hostProblems(of: t)
        if !problems.isEmpty {
            FileHandle.standardError.write(Data((problems.map(\.description).joined(separator: "\n") + "\n").utf8))
            throw ExitCode(1)
        }
    }
    return t
}

// MARK: - Which instance

/// `--name` and `--host`: which running instance a command talks to.
struct NameOption: ParsableArguments {
    @Option(help: "The running topology to talk to (needed only when several are running).")
    var name: String?
    @Option(help: "The host of a topology that spans hosts (the instance NAME@HOST; needed only when several run here).")
    var host: String?

    func validate() throws {
        if let n = name { try check("--name", NameRules.problem(with: n, as: .topology)) }
        if let h = host { try check("--host", NameRules.problem(with: h, as: .host)) }
    }

    /// The identity named on the command line, if any: `--name` (with `--host`), or
    /// `--host` alone when exactly one known instance runs that host.
    func identity() throws -> InstanceIdentity? {
        guard let n = name else {
            guard let h = host else { return nil }
            let matches = RunDirectory.knownInstances().compactMap { InstanceIdentity(stem: $0) }.filter { $0.host == h }
            switch matches.count {
            case 1: return matches[0]
            case 0: throw Failure(message: "no topology runs host '\(h)' here" + (RunDirectory.knownInstances().isEmpty ? "" : " (running: \(RunDirectory.knownInstances().joined(separator: ", ")))"))
            default: throw Failure(message: "several topologies run host '\(h)' (\(matches.map(\.stem).joined(separator: ", "))): pass --name")
            }
        }
        do { return try InstanceIdentity(name: n, host: host) } catch let e as RuntimeError { throw ValidationError(e.description) }
    }
}

/// The instance a read command talks to (its stem): `--name`, or the only one running.
/// A crashed instance is named as such, with its log and the command that cleans up.
func resolveInstance(_ options: NameOption) throws -> String {
    if geteuid() != 0, FileManager.default.fileExists(atPath: RunDirectory.path), access(RunDirectory.path, X_OK) != 0 {
        throw Failure(message: "cannot reach \(RunDirectory.path): \(String(cString: strerror(errno))) (running topologies are root's; "
                      + "members of group '\(TapestryGroup.name)' may list ports and capture)")
    }
    if let id = try options.identity() {
        // A member of the `tapestry` group cannot read the (root-only) state file but may
        // reach the socket: the daemon decides what it may do.
        let statePath = RunDirectory.state(id.stem)
        if geteuid() != 0, access(statePath, F_OK) == 0, access(statePath, R_OK) != 0 { return id.stem }
        guard let state = InstanceState.read(stem: id.stem) else {
            throw Failure(message: "no \(id) is running" + (InstanceSummary.all().isEmpty ? "" : " (running: \(InstanceSummary.all().map(\.name).joined(separator: ", ")))"))
        }
        if !state.isAlive { throw Failure(message: crashedMessage(state)) }
        return id.stem
    }
    let all = InstanceSummary.all()
    let running = all.filter { $0.state == .running }
    switch running.count {
    case 1: return stem(running[0])
    case 0:
        if let crashed = all.first, let state = InstanceState.read(stem: stem(crashed)) { throw Failure(message: crashedMessage(state)) }
        throw Failure(message: "no topology is running (start one with 'tapestry up FILE')")
    default:
        throw Failure(message: "several topologies are running (\(running.map(stem).joined(separator: ", "))): pass --name")
    }
}

func stem(_ s: InstanceSummary) -> String { s.host.map { "\(s.name)@\($0)" } ?? s.name }

/// What to say about an instance whose daemon is gone.
func crashedMessage(_ s: InstanceState) -> String {
    let log = RunDirectory.log(s.stem)
    let logHint = FileManager.default.fileExists(atPath: log) ? "; its log: \(log)" : ""
    return "topology '\(s.name)' is not running: its daemon (pid \(s.pid)) is gone, it crashed or was killed\(logHint). "
        + "Clean up what it left with 'tapestry down --name \(s.name)'"
}

func request<T: Decodable>(_ options: NameOption, _ req: ControlRequest, as type: T.Type, timeout: Int = 10) throws -> T {
    let instance = try resolveInstance(options)
    do {
        let data = try controlRequest(name: instance, req, timeout: timeout)
        return try JSON.decoder().decode(T.self, from: data)
    } catch let e as RuntimeError {
        throw Failure(message: e.description)
    }
}

func printJSON(_ value: JSONValue) { print(value.text()) }

/// The instance named by `--name` (no `--host`), or the only one running: the helper's older
/// form, for commands that take a plain name.
func resolveInstance(_ name: String?) throws -> String {
    if let n = name { try check("--name", NameRules.problem(with: n, as: .topology)) }
    // Parsed, not built: a ParsableArguments value made with init() has no values at all.
    return try resolveInstance(NameOption.parse(name.map { ["--name", $0] } ?? []))
}

/// A request to the instance `name` (or the only one running), with its raw reply: the
/// helper's older form. New commands print `JSONDocuments`, not the raw reply.
func request<T: Decodable>(_ name: String?, _ req: ControlRequest, as type: T.Type, timeout: Int = 10) throws -> (T, Data) {
    let instance = try resolveInstance(name)
    do {
        let data = try controlRequest(name: instance, req, timeout: timeout)
        return (try JSON.decoder().decode(T.self, from: data), data)
    } catch let e as RuntimeError {
        throw Failure(message: e.description)
    }
}

/// Left-aligned columns.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
}

// MARK: - Commands

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a topology file; errors as file:line:column: error: message.",
        discussion: "By default this also checks what only this host can tell (uplink NICs that must exist; the MTU of each host's underlay link whose address is on this machine, a warning when VXLAN would not fit it); --no-host-checks skips that, for a file written for another host.")
    @Argument(help: "Topology file (YAML).") var file: String
    @Flag(inversion: .prefixedNo, help: "Check that uplink NICs exist on this host, and the MTU of underlay links on this machine.") var hostChecks = true

    func run() throws {
        let t = try loadTopology(file, hostChecks: hostChecks)
        if hostChecks {
            for w in Fabric.underlayWarnings(of: t) { FileHandle.standardError.write(Data((w.description + "\n").utf8)) }
        }
        let ports = t.guests.reduce(0) { $0 + $1.nics.count }
        print("\(file): topology '\(t.name)' is valid: \(t.switches.count) switch(es), \(t.guests.count) guest(s), \(ports) port(s)"
              + (hostChecks ? "" : " (host checks skipped)"))
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The topologies running on this host, and crashed ones not cleaned up yet.")
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        if FileManager.default.fileExists(atPath: RunDirectory.path), access(RunDirectory.path, R_OK | X_OK) != 0 {
            throw Failure(message: "cannot read \(RunDirectory.path): \(String(cString: strerror(errno))) (it is root's)")
        }
        let rows = InstanceSummary.all()
        if json { return printJSON(JSONDocuments.list(rows)) }
        if rows.isEmpty { print("no topology is running"); return }
        print(table(["NAME", "STATE", "PID", "UPTIME", "FILE"], rows.map { r in
            [stem(r), r.state == .crashed ? "crashed (run 'tapestry down --name \(r.name)')" : "running", "\(r.pid)",
             r.uptimeSeconds.map { "\($0)s" } ?? "-", r.file]
        }))
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a running topology and remove everything it created (also after a crash).")
    @OptionGroup var options: NameOption

    func run() throws {
        let id: InstanceIdentity
        if let given = try options.identity() { id = given } else {
            let known = RunDirectory.knownInstances()
            guard !known.isEmpty else { throw Failure(message: "no topology is running") }
            guard known.count == 1, let only = InstanceIdentity(stem: known[0]) else {
                throw Failure(message: "several topologies are known (\(known.joined(separator: ", "))): pass --name")
            }
            id = only
        }
        if geteuid() != 0 {
            // Only root stops a topology; a member of group 'tapestry' hears it from the daemon.
            do { _ = try controlRequest(name: id.stem, ControlRequest(command: "down")) } catch { throw Failure(message: "\(error)") }
            print("\(id) is stopping")
            return
        }
        guard let state = InstanceState.read(stem: id.stem) else {
            // A daemon that crashed before writing its state leaves only its (free) lock file.
            if let lock = try? InstanceLock.acquire(id) { lock.release() }
            throw Failure(message: "no \(id) is running")
        }
        let wasAlive = state.isAlive
        if wasAlive {
            do { _ = try controlRequest(name: id.stem, ControlRequest(command: "down")) } catch {
                kill(state.pid, SIGTERM)
            }
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, state.isAlive { usleep(50_000) }
            if state.isAlive { throw Failure(message: "\(id) (pid \(state.pid)) did not stop within 60 s") }
        }
        // Whatever a dead daemon left (a crash, or a daemon that died while stopping) is
        // removed under the instance lock, so a new `up` of the same name cannot be racing us.
        let lock: InstanceLock
        do { lock = try InstanceLock.acquire(id) } catch let e as RuntimeError { throw Failure(message: e.description) }
        defer { lock.release() }
        if InstanceState.read(stem: id.stem) != nil {
            do { try Fabric.cleanStale(name: id.stem) { print("tapestry: \($0)") } }
            catch { throw Failure(message: "\(error)") }
        }
        print("\(id) is down" + (wasAlive ? "" : " (it had crashed; cleaned up)"))
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running topology: switches, guests, uptime and the daemon's pid.")
    @OptionGroup var options: NameOption
    @Flag(help: "Print JSON (stable keys).") var json = false
    @Flag(help: "After reporting, measure the datapath workers' longest lock waits afresh (to see what one operation, a failover or a reload, costs them).")
    var resetLockWaits = false

    func run() throws {
        let s = try request(options, ControlRequest(command: "status", action: resetLockWaits ? "reset-lock-waits" : nil), as: StatusReport.self)
        if json { return printJSON(JSONDocuments.status(s, host: options.host)) }
        print("topology \(s.name) (\(s.file)), pid \(s.pid), up \(s.uptimeSeconds)s")
        if let t = s.datapathThreads {
            let poll = (s.busyPollMicroseconds ?? 0) > 0 ? ", poll mode \(s.busyPollMicroseconds!) µs" : ""
            let frames = s.datapathFrames.map { " (frames read: " + $0.map(String.init).joined(separator: ", ") + ")" } ?? ""
            let waits = s.datapathLockWaitMaxMicroseconds.map { "; longest lock wait per thread: " + $0.map { "\($0) µs" }.joined(separator: ", ") } ?? ""
            print("datapath: \(t) thread\(t == 1 ? "" : "s")\(poll)\(frames)\(waits)")
        }
        if let h = s.host { print("host \(h)") }
        for u in s.underlays ?? [] { print(underlayLine(u)) }
        for sw in s.switches {
            print("switch \(sw.name): mtu \(sw.mtu), \(sw.ports) port(s), vlans \(JSONDocuments.vlanRanges(sw.vlans).joined(separator: ",")), mac table \(sw.macEntries)/\(sw.macLimit) (aging \(sw.agingSeconds)s)")
        }
        print("guests:")
        print(table(["GUEST", "KIND", "PORT", "IF", "MAC", "IP"], s.guests.flatMap { g in
            g.nics.map { nic in
                // Every address, and `dhcp`, comma-separated.
                let ips = (nic.addresses ?? nic.ip.map { [$0] } ?? []) + (nic.dhcp == true ? ["dhcp"] : [])
                return [g.name, g.kind, nic.port, nic.interface, nic.mac, ips.isEmpty ? "-" : ips.joined(separator: ",")]
            }
        }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        for f in s.flowExport ?? [] {
            print("flow export \(f.switch) → \(f.collector) (domain \(f.observationDomain), 1 in \(f.sampling)): \(f.flows) flow(s), "
                  + "\(f.notTrackedFrames) frame(s) not tracked, \(f.recordsExported) record(s) exported, \(f.sendFailures) send failure(s)"
                  + (f.lastError.map { " (last: \($0))" } ?? ""))
        }
        let vms = s.guests.compactMap(\.vm)
        if !vms.isEmpty {
            print("VMs:")
            print(VMCommand.rows(vms).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        if let f = s.fabric { print(Status.fabricText(f)) }
    }

    /// The fabric part of `status`: hosts alive or dead in etcd, the guests etcd
    /// places on each, topology-file mismatches, migrations in flight.
    static func fabricText(_ f: FabricReport) -> String {
        var lines = ["fabric (etcd \(f.etcdEndpoints.joined(separator: ", "))): this host \(f.host) "
                     + (f.registered ? "registered (lease \(f.lease ?? "?"))" : "NOT registered")
                     + (f.isolated ? ", ISOLATED" : "")
                     + (f.lastReadSecondsAgo.map { String(format: ", read %.1f s ago", $0) } ?? ", never read")
                     + ", topology hash \(f.topologyHash.prefix(12))"]
        lines.append(table(["HOST", "STATE", "UNDERLAY", "PID", "TOPOLOGY", "GUESTS"], f.hosts.map { h in
            [h.name, h.alive ? "alive" : "dead", h.underlay ?? "-", h.pid.map(String.init) ?? "-",
             h.topologyHash.map { String($0.prefix(12)) + (h.sameTopology ? "" : " (DIFFERENT FILE)") } ?? "-",
             h.guests.isEmpty ? "-" : h.guests.joined(separator: ",")]
        }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        let mismatched = f.hosts.filter { !$0.sameTopology }.map(\.name)
        if !mismatched.isEmpty { lines.append("  hosts running a different topology file: \(mismatched.joined(separator: ", ")) (vm migrate refuses them)") }
        for (g, why) in f.withheld.sorted(by: { $0.key < $1.key }) { lines.append("  not started here: \(g): \(why)") }
        for (g, why) in f.unplaceable.sorted(by: { $0.key < $1.key }) { lines.append("  cannot restart \(g): \(why)") }
        for m in f.migrations { lines.append("  migration: \(m.guest) \(m.from) → \(m.to): \(m.state)" + (m.error.map { " (\($0))" } ?? "")) }
        if let e = f.lastError { lines.append("  last etcd error: \(e)") }
        return lines.joined(separator: "\n")
    }
}

/// `underlay 10.70.0.1:4789 in netns h1: rx 12 packets (1432 bytes), tx 12 (…), tx errors 0; drops: unknown-vtep=3`.
func underlayLine(_ u: UnderlayCounters) -> String {
    let drops = u.drops.isEmpty ? "none" : u.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    let runs = (u.rxCoalesced ?? 0) > 0 ? " (\(u.rxCoalescedPackets ?? 0) coalesced into \(u.rxCoalesced ?? 0) frames)" : ""
    return "underlay \(u.label): rx \(u.rxPackets) packets (\(u.rxBytes) bytes)\(runs), tx \(u.txPackets) (\(u.txBytes) bytes\((u.txRuns ?? 0) > 0 ? ", \(u.txRuns ?? 0) UDP GSO runs" : "")), tx errors \(u.txErrors); drops: \(drops)"
}

/// `--switch S`, checked like a switch name in the file.
struct SwitchOption: ParsableArguments {
    @Option(name: .customLong("switch"), help: "Only this switch (needed only when a name is on several).") var switchName: String?
    func validate() throws { if let s = switchName { try check("--switch", NameRules.problem(with: s, as: .switch)) } }
}

struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Per-port counters: frames, bytes and drops by reason.")
    @OptionGroup var options: NameOption
    @OptionGroup var sw: SwitchOption
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let r = try request(options, ControlRequest(command: "ports", switch: sw.switchName), as: PortsReport.self)
        if json { return printJSON(JSONDocuments.ports(r)) }
        print(table(["PORT", "SWITCH", "GROUP", "KIND", "VLAN", "LINK", "MACS", "EVICTED", "RX", "RX-BYTES", "TX", "TX-BYTES", "DROPS"], r.ports.map { p in
            let drops = p.drops.isEmpty ? "0" : p.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return [p.name, p.switch, p.portGroup, p.kind, p.vlanMode, p.link, "\(p.macEntries)/\(p.macLimit)", "\(p.macEvictions)", "\(p.rxFrames)", "\(p.rxBytes)", "\(p.txFrames)", "\(p.txBytes)", drops]
        }))
        for p in r.ports { if let t = p.team {
            print("uplink \(p.name) (\(p.switch)): \(t.role)\(t.reason.map { " (\($0))" } ?? ""); carries \(t.carries.isEmpty ? "no guest ports" : t.carries.joined(separator: ", "))")
        } }
        for p in r.ports where p.kind == "tunnel" { print("tunnel \(p.name) (\(p.switch)): VXLAN to \(p.peer ?? "?")") }
        for p in r.ports { if let v = p.vhostUser { print(Ports.vhostUserLine(p.name, p.switch, v)) } }
        for u in r.underlays ?? [] { print(underlayLine(u)) }
    }
}

extension Ports {
    /// `vhost-user vm1.eth0 (sw0): connected; client of /run/tapestry/lab.vhost/vm1.eth0.sock;
    /// 2 connections, 1 disconnect, …`: a vhost-user port's frontend and its own counters.
    static func vhostUserLine(_ name: String, _ sw: String, _ v: PortsReport.VhostUserInfo) -> String {
        func counted(_ d: [String: UInt64]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
        var parts = [v.connected ? "connected" : "no frontend",
                     (v.mode == "client" ? "client of " : "serving ") + v.socket,
                     "\(v.connections) connection\(v.connections == 1 ? "" : "s"), \(v.disconnects) disconnect\(v.disconnects == 1 ? "" : "s")",
                     "\(v.rarps) RARP\(v.rarps == 1 ? "" : "s")"]
        if !v.resets.isEmpty { parts.append("resets " + counted(v.resets)) }
        if v.segmentedInSoftware + v.checksummedInSoftware > 0 {
            parts.append("finished in software: \(v.segmentedInSoftware) segmented, \(v.checksummedInSoftware) checksummed")
        }
        if v.dirtyLogs > 0 { parts.append("\(v.dirtyLogs) dirty-page log\(v.dirtyLogs == 1 ? "" : "s")") }
        return "vhost-user \(name) (\(sw)): " + parts.joined(separator: "; ")
    }
}

struct FDB: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fdb", abstract: "The MAC table: VLAN, MAC, port, age, static/dynamic.")
    @OptionGroup var options: NameOption
    @OptionGroup var sw: SwitchOption
    @Option(help: "Only this VLAN (1..4094 or none).") var vlan: String?
    @Flag(help: "Print JSON (stable keys).") var json = false

    func validate() throws { if let v = vlan { try check("--vlan", vlanProblem(v)) } }

    func run() throws {
        let r = try request(options, ControlRequest(command: "fdb", switch: sw.switchName, vlan: vlan), as: FDBReport.self)
        if json { return printJSON(JSONDocuments.fdb(r)) }
        // Entries learned behind a tunnel name the remote VTEP too.
        let remote = r.entries.contains { $0.vtep != nil }
        print(table(["SWITCH", "VLAN", "MAC", "PORT", "AGE", "TYPE"] + (remote ? ["VTEP"] : []), r.entries.map {
            [$0.switch, $0.vlan, $0.mac, $0.port, "\($0.ageSeconds)", $0.type] + (remote ? [$0.vtep ?? "-"] : [])
        }))
        // MAC-flood protection at a glance: ports at their limit or that lost entries.
        for u in r.ports where u.entries >= u.limit || u.evictions > 0 {
            print("\(u.switch)/\(u.port): \(u.entries)/\(u.limit) entries\(u.entries >= u.limit ? " (limit reached)" : ""), \(u.evictions) evicted")
        }
    }
}
