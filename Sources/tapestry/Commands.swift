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
        subcommands: [Up.self, Down.self, ReloadCommand.self, Validate.self, Status.self, Ports.self, FDB.self, MDB.self, Trace.self, CaptureCommand.self, VMCommand.self]
    )
}

/// Loads and validates a topology file, printing located errors and warnings; with
/// `hostChecks`, also what only this host can tell (uplink NICs that do not exist).
func loadTopology(_ path: String, hostChecks: Bool = true, printWarnings: Bool = true) throws -> Topology {
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

/// The instance a read command talks to: `--name`, or the only one running.
func resolveInstance(_ name: String?) throws -> String {
    if let n = name { return n }
    let running = RunDirectory.knownInstances().filter { InstanceState.read(name: $0)?.isAlive == true }
    switch running.count {
    case 0: throw Failure(message: "no topology is running (start one with 'tapestry up FILE')")
    case 1: return running[0]
    default: throw Failure(message: "several topologies are running (\(running.joined(separator: ", "))): pass --name")
    }
}

func request<T: Decodable>(_ name: String?, _ req: ControlRequest, as type: T.Type, timeout: Int = 10) throws -> (T, Data) {
    let instance = try resolveInstance(name)
    do {
        let data = try controlRequest(name: instance, req, timeout: timeout)
        return (try JSON.decoder().decode(T.self, from: data), data)
    } catch let e as RuntimeError {
        throw Failure(message: e.description)
    }
}

func printJSON(_ data: Data) {
    // Re-encode pretty and with sorted keys for people; the keys are the stable interface.
    if let obj = try? JSONSerialization.jsonObject(with: data),
       let pretty = try? JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]) {
        print(String(decoding: pretty, as: UTF8.self))
    } else {
        print(String(decoding: data, as: UTF8.self))
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

struct NameOption: ParsableArguments {
    @Option(help: "The running topology to talk to (needed only when several are running).")
    var name: String?
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a topology file; errors as file:line:column: error: message.")
    @Argument(help: "Topology file (YAML).") var file: String

    func run() throws {
        let t = try loadTopology(file)
        let ports = t.guests.reduce(0) { $0 + $1.nics.count }
        print("\(file): topology '\(t.name)' is valid: \(t.switches.count) switch(es), \(t.guests.count) guest(s), \(ports) port(s)")
    }
}

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create the topology's switches, ports and guests, and forward until stopped.")
    @Argument(help: "Topology file (YAML).") var file: String
    @Flag(help: "Return once every port forwards and every guest is configured.") var detach = false
    @Flag(help: .hidden) var daemonChild = false

    func run() throws {
        if daemonChild {
            // A daemon keeps nothing of its parent but 0-2 (set up by spawnDetached): an
            // inherited pipe would keep whoever ran `up --detach` waiting for EOF forever.
            for fd in Int32(3)..<Int32(4096) { close(fd) }
        }
        let t = try loadTopology(file, printWarnings: !daemonChild)
        guard geteuid() == 0 else { throw Failure(message: "'up' needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for TAP devices and namespaces)") }
        if !daemonChild && t.guests.contains(where: { $0.kind == .qemu }) {
            // Build the guest image here, in the foreground, with progress: a first build
            // downloads the Debian kernel. The daemon then finds it cached.
            do { _ = try Fabric.prepareGuestImage { print("tapestry: guest image: \($0)") } }
            catch { throw Failure(message: "\(error)") }
        }
        if detach && !daemonChild { return try spawnDetached(t) }
        try runForeground(t)
    }

    /// Runs the instance in this process until SIGINT, SIGTERM or `tapestry down`.
    func runForeground(_ t: Topology) throws {
        signal(SIGPIPE, SIG_IGN)
        // Block the stop signals before any thread exists, so every thread inherits the mask
        // and only sigwait below receives them.
        var set = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM); sigaddset(&set, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let say: (String) -> Void = { print("tapestry: \($0)"); fflush(stdout) }
        let fabric = Fabric(topology: t, log: say)
        do { try fabric.up() } catch { throw Failure(message: "\(error)") }
        let ports = fabric.plans.reduce(0) { $0 + $1.ports.count }
        say("topology '\(t.name)' is up: \(t.switches.count) switch(es), \(ports) port(s), \(t.guests.count) guest(s); pid \(getpid())")
        var sig: Int32 = 0
        while true {
            sigwait(&set, &sig)
            if sig == SIGHUP {
                // Reload the file this instance was started from; an invalid file changes nothing.
                do {
                    let r = try fabric.reload(path: t.file)
                    say("SIGHUP: reloaded \(t.file): \(r.summary)")
                } catch {
                    say("SIGHUP: reload of \(t.file) failed, nothing changed:\n\(error)")
                }
                continue
            }
            break
        }
        say("stopping topology '\(t.name)' (\(sig == SIGINT ? "SIGINT" : "SIGTERM"))")
        fabric.down()
        say("topology '\(t.name)' is down")
        // A clean stop leaves nothing behind, the daemon's log included; a crash keeps it
        // (for the admin) until the next `up` or `down`.
        if daemonChild { unlink(RunDirectory.log(t.name)) }
    }

    /// Starts a copy of this program in its own session and waits until it answers on its
    /// control socket (ready) or exits (failed: its log is shown).
    func spawnDetached(_ t: Topology) throws {
        try RunDirectory.ensure()
        if let old = InstanceState.read(name: t.name), old.isAlive {
            throw Failure(message: "topology '\(t.name)' is already running (pid \(old.pid)); stop it with 'tapestry down --name \(t.name)'")
        }
        let logPath = RunDirectory.log(t.name)
        let absolute = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        let args = ["tapestry", "up", absolute, "--detach", "--daemon-child"]
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(); sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        // POSIX_SPAWN_SETSID (glibc ≥ 2.26) is visible only under _GNU_SOURCE; its value is 0x80.
        let spawnSetSID: Int32 = 0x80
        posix_spawnattr_setflags(&attr, Int16(spawnSetSID | POSIX_SPAWN_SETSIGMASK))
        var cargs = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, &cargs, environ)
        guard rc == 0 else { throw Failure(message: "cannot start the daemon: \(String(cString: strerror(rc)))") }
        // VMs boot before the daemon answers (each within its boot timeout, in parallel).
        let deadline = Date().addingTimeInterval(t.guests.contains { $0.kind == .qemu } ? 300 : 120)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                FileHandle.standardError.write(Data(text.utf8))
                unlink(logPath)   // shown above; a failed up leaves nothing behind
                throw ExitCode(1)
            }
            if let data = try? controlRequest(name: t.name, ControlRequest(command: "status"), timeout: 2),
               (try? JSON.decoder().decode(StatusReport.self, from: data)) != nil {
                let ports = t.guests.reduce(0) { $0 + $1.nics.count }
                print("topology '\(t.name)' is up: \(t.switches.count) switch(es), \(ports) port(s), \(t.guests.count) guest(s); pid \(pid); log \(logPath)")
                return
            }
            usleep(50_000)
        }
        kill(pid, SIGTERM)
        throw Failure(message: "the daemon did not become ready in time; see \(logPath)")
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a running topology and remove everything it created.")
    @OptionGroup var options: NameOption

    func run() throws {
        let name: String
        if let n = options.name { name = n } else {
            let known = RunDirectory.knownInstances()
            guard !known.isEmpty else { throw Failure(message: "no topology is running") }
            guard known.count == 1 else { throw Failure(message: "several topologies are known (\(known.joined(separator: ", "))): pass --name") }
            name = known[0]
        }
        guard let state = InstanceState.read(name: name) else { throw Failure(message: "no topology named '\(name)' is running") }
        if !state.isAlive {
            try Fabric.cleanStale(name: name) { print("tapestry: \($0)") }
            unlink(RunDirectory.log(name))
            return
        }
        do { _ = try controlRequest(name: name, ControlRequest(command: "down")) } catch {
            kill(state.pid, SIGTERM)
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, state.isAlive { usleep(50_000) }
        if state.isAlive { throw Failure(message: "topology '\(name)' (pid \(state.pid)) did not stop within 60 s") }
        // A daemon that died instead of stopping leaves its state file: clean up after it.
        try Fabric.cleanStale(name: name) { print("tapestry: \($0)") }
        unlink(RunDirectory.log(name))
        print("topology '\(name)' is down")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running topology: switches, guests, uptime and the daemon's pid.")
    @OptionGroup var options: NameOption
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let (s, data) = try request(options.name, ControlRequest(command: "status"), as: StatusReport.self)
        if json { return printJSON(data) }
        print("topology \(s.name) (\(s.file)), pid \(s.pid), up \(s.uptimeSeconds)s")
        if let t = s.datapathThreads {
            let poll = (s.busyPollMicroseconds ?? 0) > 0 ? ", poll mode \(s.busyPollMicroseconds!) µs" : ""
            let frames = s.datapathFrames.map { " (frames read: " + $0.map(String.init).joined(separator: ", ") + ")" } ?? ""
            print("datapath: \(t) thread\(t == 1 ? "" : "s")\(poll)\(frames)")
        }
        for sw in s.switches {
            print("switch \(sw.name): mtu \(sw.mtu), \(sw.ports) port(s), vlans \(sw.vlans.joined(separator: ",")), mac table \(sw.macEntries)/\(sw.macLimit) (aging \(sw.agingSeconds)s)")
        }
        print("guests:")
        print(table(["GUEST", "KIND", "PORT", "IF", "MAC", "IP"], s.guests.flatMap { g in
            g.nics.map { [g.name, g.kind, $0.port, $0.interface, $0.mac, $0.ip ?? "-"] }
        }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        let vms = s.guests.compactMap(\.vm)
        if !vms.isEmpty {
            print("VMs:")
            print(VMCommand.rows(vms).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
    }
}

struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Per-port counters: frames, bytes and drops by reason.")
    @OptionGroup var options: NameOption
    @Option(name: .customLong("switch"), help: "Only this switch.") var switchName: String?
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let (r, data) = try request(options.name, ControlRequest(command: "ports", switch: switchName), as: PortsReport.self)
        if json { return printJSON(data) }
        print(table(["PORT", "SWITCH", "GROUP", "KIND", "VLAN", "LINK", "MACS", "EVICTED", "RX", "RX-BYTES", "TX", "TX-BYTES", "DROPS"], r.ports.map { p in
            let drops = p.drops.isEmpty ? "0" : p.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return [p.name, p.switch, p.portGroup, p.kind, p.vlanMode, p.link, "\(p.macEntries)/\(p.macLimit)", "\(p.macEvictions)", "\(p.rxFrames)", "\(p.rxBytes)", "\(p.txFrames)", "\(p.txBytes)", drops]
        }))
        for p in r.ports { if let t = p.team {
            print("uplink \(p.name) (\(p.switch)): \(t.role)\(t.reason.map { " (\($0))" } ?? ""); carries \(t.carries.isEmpty ? "no guest ports" : t.carries.joined(separator: ", "))")
        } }
    }
}

struct FDB: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fdb", abstract: "The MAC table: VLAN, MAC, port, age, static/dynamic.")
    @OptionGroup var options: NameOption
    @Option(name: .customLong("switch"), help: "Only this switch.") var switchName: String?
    @Option(help: "Only this VLAN (1..4094 or none).") var vlan: String?
    @Flag(help: "Print JSON (stable keys).") var json = false

    func run() throws {
        let (r, data) = try request(options.name, ControlRequest(command: "fdb", switch: switchName, vlan: vlan), as: FDBReport.self)
        if json { return printJSON(data) }
        print(table(["SWITCH", "VLAN", "MAC", "PORT", "AGE", "TYPE"], r.entries.map {
            [$0.switch, $0.vlan, $0.mac, $0.port, "\($0.ageSeconds)", $0.type]
        }))
        // MAC-flood protection at a glance: ports at their limit or that lost entries.
        for u in r.ports where u.entries >= u.limit || u.evictions > 0 {
            print("\(u.switch)/\(u.port): \(u.entries)/\(u.limit) entries\(u.entries >= u.limit ? " (limit reached)" : ""), \(u.evictions) evicted")
        }
    }
}
