import ArgumentParser
import Foundation
import Observability
import LinuxIO
import Model
import Runtime
import Topology
#if canImport(Glibc)
import Glibc
#endif

/// Set in the detached daemon: its log lines (and a fatal error) carry timestamps.
nonisolated(unsafe) var daemonMode = false

/// `2026-11-30T18:57:42.123Z `: the prefix of every daemon log line (UTC, milliseconds).
func logTimestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = ts.tv_sec
    var parts = tm()
    gmtime_r(&t, &parts)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                  parts.tm_hour, parts.tm_min, parts.tm_sec, Int(ts.tv_nsec / 1_000_000))
}

/// The fd number a detached daemon finds its instance lock on (passed by `up --detach`).
let inheritedLockFD: Int32 = 3

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the topology's switches, ports and guests, and forward until stopped.",
        discussion: """
        Environment overrides (invalid values are refused before anything starts): \
        TAPESTRY_DATAPATH_THREADS (1..64), TAPESTRY_BUSY_POLL_US (0..1000000), TAPESTRY_VHOST_POLL_US (0..1000000), TAPESTRY_VM_BOOT_TIMEOUT (seconds). \
        One instance per topology name runs at a time (a lock under /run/tapestry); a detached \
        daemon logs to /var/log/tapestry/NAME/daemon.log, kept after 'down'.
        """)
    @Argument(help: "Topology file (YAML).") var file: String
    @Option(help: "Run this host's part of a topology that spans hosts (default: the host without netns whose underlay address is on this machine).")
    var host: String?
    @Flag(help: "Return once every port forwards and every guest is configured.") var detach = false
    @Option(help: ArgumentHelp("Serve Prometheus metrics (text format 0.0.4) at http://ADDR:PORT/metrics, e.g. 127.0.0.1:9464 or [::1]:9464. Off unless given.",
                               valueName: "ADDR:PORT"))
    var metrics: String?
    @Flag(help: .hidden) var daemonChild = false

    func validate() throws {
        if let m = metrics {
            do { _ = try SocketEndpoint.parse(m) } catch { throw ValidationError("--metrics: \(error)") }
        }
    }

    func run() throws {
        if daemonChild {
            daemonMode = true
            // A daemon keeps nothing of its parent but 0-2 (its log, set up by spawnDetached)
            // and the instance lock on fd 3: an inherited pipe would keep whoever ran
            // `up --detach` waiting for EOF forever.
            for fd in Int32(4)..<Int32(4096) { close(fd) }
        }
        if let h = host { try check("--host", NameRules.problem(with: h, as: .host)) }
        let t = try loadTopology(file, printWarnings: !daemonChild)
        guard geteuid() == 0 else { throw Failure(message: "'up' needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for TAP devices and namespaces)") }
        let chosen = try Up.chooseHost(t, given: host)
        let settings: DatapathSettings
        do {
            let file = t.datapath(forHost: chosen)
            settings = try DatapathSettings.resolve(fileThreads: file.threads, fileBusyPollMicroseconds: file.pollMicroseconds,
                                                    environment: ProcessInfo.processInfo.environment,
                                                    cores: ProcessInfo.processInfo.activeProcessorCount)
        } catch let e as RuntimeError { throw Failure(message: e.description) }
        let identity: InstanceIdentity
        do { identity = try InstanceIdentity(name: t.name, host: chosen) } catch let e as RuntimeError { throw Failure(message: e.description) }

        // The lock comes before anything is touched: a loser of a race changes nothing.
        let lock: InstanceLock
        do {
            lock = daemonChild ? try InstanceLock.adopt(identity, fd: inheritedLockFD) : try InstanceLock.acquire(identity)
        } catch let e as RuntimeError { throw Failure(message: e.description) }
        if !daemonChild && t.guests.contains(where: { $0.kind == .qemu }) {
            // Build the guest image here, in the foreground, with progress: a first build
            // downloads the Debian kernel. The daemon then finds it cached.
            do { try Fabric.prepareGuestImage { print("tapestry: guest image: \($0)") } }
            catch { lock.release(); throw Failure(message: "\(error)") }
        }
        if detach && !daemonChild { return try spawnDetached(t, identity: identity, lock: lock) }
        try runForeground(t, host: chosen, lock: lock, settings: settings)
    }

    /// The host `up` runs: `--host` (which must be one of the file's), else the one host
    /// without `netns:` whose underlay address is on this machine; nil for a file without
    /// `hosts:` (then `--host` is refused).
    static func chooseHost(_ t: Topology, given: String?) throws -> String? {
        if t.hosts.isEmpty {
            if let g = given { throw Failure(message: "--host \(g): topology '\(t.name)' has no 'hosts': run it without --host") }
            return nil
        }
        if let g = given {
            guard t.hosts.contains(where: { $0.name == g }) else {
                throw Failure(message: "--host \(g): topology '\(t.name)' has no host '\(g)' (its hosts: \(t.hosts.map(\.name).joined(separator: ", ")))")
            }
            return g
        }
        let local: Set<IPAddress> = Set(UnderlaySocket.localAddresses().map { a in
            a.ipv6 ? IPAddress.v6(IPv6Address(high: a.high, low: a.low)) : IPAddress.v4(IPv4Address(rawValue: UInt32(truncatingIfNeeded: a.low)))
        })
        do { return try t.localHost(among: local) } catch { throw Failure(message: "\(error)") }
    }

    /// Runs the instance in this process until SIGINT, SIGTERM or `tapestry down`.
    func runForeground(_ t: Topology, host: String?, lock: InstanceLock, settings: DatapathSettings) throws {
        signal(SIGPIPE, SIG_IGN)
        // Block the stop signals before any thread exists, so every thread inherits the mask
        // and only sigwait below receives them.
        var set = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM); sigaddset(&set, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let stamped = daemonChild
        let say: (String) -> Void = { print((stamped ? logTimestamp() : "") + "tapestry: \($0)"); fflush(stdout) }
        let fabric = Fabric(topology: t, host: host, settings: settings, log: say)
        // The metrics address is bound before anything is created: one in use (or a name
        // that does not resolve) fails `up` with nothing to clean up.
        var metricsServer: MetricsServer?
        if let m = metrics {
            do {
                metricsServer = try MetricsServer(listen: SocketEndpoint.parse(m)) { fabric.metricFamilies() }
            } catch {
                lock.release()
                throw Failure(message: "--metrics \(m): \(error)")
            }
        }
        do { try fabric.up() } catch {
            metricsServer?.stop()
            lock.release()
            throw Failure(message: "\(error)")
        }
        if let server = metricsServer, let m = metrics {
            server.start()
            say("metrics: http://\((try? SocketEndpoint.parse(m))?.description ?? m)/metrics (Prometheus text format 0.0.4)")
        }
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
        metricsServer?.stop()
        fabric.down()
        say("topology '\(t.name)' is down")
        lock.release()
    }

    /// Starts a copy of this program in its own session, handing it the instance lock (fd 3)
    /// and its log (fds 1 and 2, appended to `/var/log/tapestry/STEM/daemon.log`), and waits
    /// until it answers on its control socket (ready) or exits (failed: this run's part of
    /// its log is shown).
    func spawnDetached(_ t: Topology, identity: InstanceIdentity, lock: InstanceLock) throws {
        let logPath = RunDirectory.log(identity.stem)
        let logFD: Int32
        let logStart: off_t
        do { (logFD, logStart) = try openDaemonLog(logPath, file: file) } catch {
            lock.release()
            throw error
        }
        defer { close(logFD) }
        let absolute = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        let args = ["tapestry", "up", absolute, "--detach", "--daemon-child"] + (metrics.map { ["--metrics", $0] } ?? [])
            + (identity.host.map { ["--host", $0] } ?? [])
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&fa, logFD, 1)
        posix_spawn_file_actions_adddup2(&fa, logFD, 2)
        // dup2 clears FD_CLOEXEC on the copy: the daemon inherits the lock's open file
        // description, so the lock stays held when this process exits.
        posix_spawn_file_actions_adddup2(&fa, lock.fd, inheritedLockFD)
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
        guard rc == 0 else {
            lock.release()
            throw Failure(message: "cannot start the daemon: \(String(cString: strerror(rc)))")
        }
        // The daemon holds the lock now; this process only keeps its own copy until it exits.
        lock.handOver()
        // VMs boot before the daemon answers (each within its boot timeout, in parallel).
        let deadline = Date().addingTimeInterval(t.guests.contains { $0.kind == .qemu } ? 300 : 120)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                FileHandle.standardError.write(Data(logSince(logPath, offset: logStart).utf8))
                FileHandle.standardError.write(Data("tapestry: the daemon's log: \(logPath)\n".utf8))
                throw ExitCode(1)
            }
            if let data = try? controlRequest(name: identity.stem, ControlRequest(command: "status"), timeout: 2),
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

    /// Opens (appending) the daemon's log and writes this run's first line. Returns the fd
    /// and the offset this run starts at.
    /// - Throws: `Failure` naming the path and errno (a full or read-only /var/log); a log
    ///   file this call created is removed again.
    func openDaemonLog(_ path: String, file: String) throws -> (Int32, off_t) {
        let dir = (path as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750]) }
        catch { throw Failure(message: "cannot create the log directory \(dir): \((error as NSError).localizedDescription)") }
        let existed = access(path, F_OK) == 0
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(message: "cannot open the daemon log \(path): \(String(cString: strerror(errno)))") }
        let start = lseek(fd, 0, SEEK_END)
        let line = Array((logTimestamp() + "tapestry: starting \(file) (tapestry \(BuildInfo.version))\n").utf8)
        let n = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n != line.count {
            let e = n < 0 ? errno : ENOSPC
            close(fd)
            if existed { _ = truncate(path, start) } else { unlink(path) }
            throw Failure(message: "cannot write the daemon log \(path): \(String(cString: strerror(e)))")
        }
        return (fd, max(start, 0))
    }

    /// The log's text from `offset` on (this run's lines).
    func logSince(_ path: String, offset: off_t) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? h.close() }
        try? h.seek(toOffset: UInt64(offset))
        return String(decoding: h.readDataToEndOfFile(), as: UTF8.self)
    }
}
