import CVMSpawn
import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

/// Runs one QEMU guest and keeps it running: spawn, wait for READY, reap, restart by policy,
/// stop gracefully.
///
/// ## Processes and descriptors
/// QEMU is posix_spawned in its own process group with the NICs' TAP descriptors at fds 3,
/// 4, … and nothing else inherited (CVMSpawn). The caller keeps its own TAP descriptors open:
/// the TAP netdev — the switch's port — outlives any one QEMU process, so a restarted guest
/// comes back on the same port with the same MAC. stdout and stderr go to `processLog`; the
/// serial console goes to `consoleLog` (and the console socket).
///
/// ## Threads
/// One monitor thread per running VM owns the child: it polls a pidfd for the exit (falling
/// back to a 200 ms tick without pidfd), scans the console log for the READY marker while
/// booting (every 50 ms), enforces the boot timeout, reaps, and applies the restart policy
/// with back-off. Callers (`start`, `stop`, `status`) share the state under one
/// NSCondition. The exit is observed with waitid(WNOWAIT) and reaped under the lock, so a pid
/// held in `pid` is never recycled while another thread may signal it.
///
/// ## Stopping
/// `stop()` marks the stop as requested (so the exit is not a failure and nothing restarts),
/// presses the ACPI power button over QMP (`system_powerdown`; the guest's acpid powers off,
/// normally within a second), waits `gracePeriod`, then sends QMP `quit`, waits 5 s, then
/// SIGKILLs the process group, and returns once the process is reaped. A guest that is still
/// booting (its acpid may not run yet) skips the power button.
///
/// The owner must not set SIGCHLD to SIG_IGN (children would be reaped by the kernel and the
/// exit status lost) nor reap with waitpid(-1).
public final class VMSupervisor: @unchecked Sendable {
    public let spec: VMSpec
    public let image: GuestImage
    public let accel: Accel
    public let paths: VMPaths
    public let restartPolicy: RestartPolicy
    public let backoff: Backoff
    /// Seconds from spawning QEMU to the READY marker before the boot counts as failed.
    public let bootTimeout: TimeInterval
    /// The resolved QEMU binary.
    public let qemuExecutable: String

    private let onRestart: (@Sendable (VMSupervisor) -> Void)?
    private let log: @Sendable (String) -> Void

    // Guarded by `cond`.
    private let cond = NSCondition()
    private var state: VMState = .stopped
    private var pid: pid_t?
    private var startedAt: TimeInterval?
    private var bootTime: TimeInterval?
    private var restarts = 0
    private var lastExit: ProcessExit?
    private var lastError: String?
    private var restartAt: TimeInterval?
    private var stopRequested = false
    private var monitorRunning = false
    private var bootError: VMError?
    /// The current QEMU process receives a live migration (`startIncoming`): no READY marker
    /// is expected, and it counts as running once `incomingResumed` is called.
    private var incoming = false
    private var resumed = false

    /// Validates the spec and finds the QEMU binary (`qemuExecutable`: a name looked up on
    /// PATH, or a path). Starts nothing.
    /// - onRestart: called on the monitor thread after a new QEMU process replaced one that
    ///   ended (automatic restarts) and after `restart()`, once the new process is spawned and
    ///   before its guest sends anything: the switch flushes the VM's learned MACs there.
    /// - log: one line per event worth a log line (accel choice is the caller's; here:
    ///   ready, exits, restarts, back-off, forced stops).
    public init(spec: VMSpec, image: GuestImage, accel: Accel, paths: VMPaths,
                restartPolicy: RestartPolicy = .onFailure, backoff: Backoff = Backoff(),
                bootTimeout: TimeInterval = 60, qemuExecutable: String = "qemu-system-x86_64",
                onRestart: (@Sendable (VMSupervisor) -> Void)? = nil,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws {
        try spec.validate()
        try paths.validate()
        guard let qemu = Spawn.which(qemuExecutable) else { throw VMError.qemuNotFound(qemuExecutable) }
        self.spec = spec
        self.image = image
        self.accel = accel
        self.paths = paths
        self.restartPolicy = restartPolicy
        self.backoff = backoff
        self.bootTimeout = bootTimeout
        self.qemuExecutable = qemu
        self.onRestart = onRestart
        self.log = log
    }

    /// The QEMU command line this supervisor runs.
    public var command: QEMUCommand {
        QEMUCommand(spec: spec, image: image, accel: accel, paths: paths, executable: qemuExecutable)
    }

    /// A snapshot of the VM's state.
    public var status: VMStatus {
        cond.lock()
        defer { cond.unlock() }
        let now = Self.now()
        return VMStatus(name: spec.name, state: state, pid: pid, accel: accel,
                        uptime: pid != nil ? startedAt.map { now - $0 } : nil, bootTime: bootTime,
                        restarts: restarts, lastExit: lastExit, lastError: lastError,
                        restartIn: restartAt.map { max(0, $0 - now) },
                        consoleSocket: paths.consoleSocket, consoleLog: paths.consoleLog)
    }

    /// Spawns QEMU and returns once the guest printed READY (its NICs are configured).
    /// Throws `alreadyRunning`, `spawnFailed`, `bootTimeout` (QEMU is killed) or
    /// `exitedDuringBoot`, each with the console's last lines; after a failed first boot
    /// nothing is restarted (state `failed`).
    public func start() throws {
        try begin(incoming: false)
        cond.lock()
        defer { cond.unlock() }
        while state == .starting { cond.wait() }
        if state == .failed, let e = bootError { throw e }
    }

    /// Spawns QEMU to receive a live migration (VMotion's destination): `-incoming defer -S`,
    /// so it waits for QMP `migrate-incoming` and keeps the guest paused after the migration
    /// until `cont`. Returns once its QMP socket answers (within `qmpTimeout` seconds; QEMU is
    /// killed otherwise). The VM stays `starting`, with no READY marker expected (the guest
    /// booted on the source), until `incomingResumed()`. A QEMU that exits before that (a
    /// failed incoming migration makes QEMU exit 1) ends `failed`, never restarted; after it,
    /// the restart policy applies as after a boot, and restarts boot the guest afresh.
    /// Throws `alreadyRunning`, `spawnFailed`, `exitedDuringBoot` or `bootTimeout`.
    public func startIncoming(qmpTimeout: TimeInterval = 30) throws {
        try begin(incoming: true)
        let deadline = Date().addingTimeInterval(qmpTimeout)
        while true {
            cond.lock()
            let failed = state == .failed ? bootError : nil
            let gone = state != .starting
            cond.unlock()
            if let failed { throw failed }
            if gone { throw VMError.exitedDuringBoot(name: spec.name, status: lastExitValue ?? ProcessExit(signal: SIGKILL), consoleTail: [], processLogTail: []) }
            if (try? QMPClient(path: paths.qmpSocket, timeout: 1)) != nil { return }
            if Date() > deadline {
                cond.lock()
                if let p = pid { kill(-p, SIGKILL); kill(p, SIGKILL) }
                cond.unlock()
                stop(gracePeriod: 0, powerButton: false)
                throw VMError.bootTimeout(name: spec.name, seconds: qmpTimeout, consoleTail: ["(QEMU waiting for an incoming migration did not answer on QMP)"])
            }
            usleep(50_000)
        }
    }

    /// The incoming migration completed and the guest was resumed (`cont`): the VM is
    /// `running` from now on, its boot time the time from spawning QEMU to here.
    public func incomingResumed() {
        cond.lock()
        defer { cond.unlock() }
        guard incoming, !resumed else { return }
        resumed = true
        if state == .starting { state = .running }
        if let s = startedAt { bootTime = Self.now() - s }
        cond.broadcast()
    }

    private var lastExitValue: ProcessExit? { cond.lock(); defer { cond.unlock() }; return lastExit }

    /// Claims the supervisor, spawns the first QEMU process and starts the monitor thread.
    private func begin(incoming receiving: Bool) throws {
        cond.lock()
        guard !monitorRunning else {
            cond.unlock()
            throw VMError.alreadyRunning(name: spec.name)
        }
        // Claimed before spawning, so a concurrent start() fails and a concurrent stop() waits.
        monitorRunning = true
        state = .starting
        stopRequested = false
        lastError = nil
        bootError = nil
        restarts = 0
        bootTime = nil
        incoming = receiving
        resumed = false
        cond.unlock()

        let child: Child
        do {
            child = try launch(extraArguments: receiving ? ["-incoming", "defer", "-S"] : [])
        } catch {
            cond.lock()
            state = .failed
            lastError = "\(error)"
            monitorRunning = false
            cond.broadcast()
            cond.unlock()
            throw error
        }
        cond.lock()
        pid = child.pid
        startedAt = child.startedAt
        cond.unlock()
        let thread = Thread { [self] in monitor(first: child) }
        thread.name = "vm-\(spec.name)"
        thread.start()
    }

    /// Stops the VM (see the type's notes) and returns once QEMU is reaped; state `stopped`.
    /// A VM backing off between restarts just stays down. Idempotent.
    /// - powerButton: false skips the ACPI power button (QMP `quit` at once): a hard power-off
    ///   (HA's isolation response), or a source whose guest has migrated away (paused).
    public func stop(gracePeriod: TimeInterval = 10, powerButton: Bool = true) {
        cond.lock()
        guard monitorRunning else { cond.unlock(); return }
        stopRequested = true
        let wasReady = state == .running && powerButton
        if pid != nil { state = .stopping }
        cond.broadcast()
        let hasProcess = pid != nil
        cond.unlock()

        // Each step waits only if its QMP command went through.
        if hasProcess && wasReady {
            do {
                try QMPClient(path: paths.qmpSocket, timeout: 3).systemPowerdown()
                if !waitForExit(seconds: gracePeriod) {
                    log("VM \(spec.name): no power-off after \(Self.format(gracePeriod)) s; sending QMP quit")
                }
            } catch {
                log("VM \(spec.name): system_powerdown failed (\(error))")
            }
        }
        if processAlive() {
            do {
                try QMPClient(path: paths.qmpSocket, timeout: 3).quit()
                if !waitForExit(seconds: 5) { log("VM \(spec.name): still running after QMP quit; killing it") }
            } catch {
                log("VM \(spec.name): QMP quit failed (\(error)); killing it")
            }
        }
        // Last resort, and the wait for the monitor to finish (also covers a restart that was
        // spawning while the stop came in).
        cond.lock()
        while monitorRunning {
            if let p = pid { kill(-p, SIGKILL); kill(p, SIGKILL) }
            _ = cond.wait(until: Date().addingTimeInterval(0.5))
        }
        cond.unlock()
    }

    /// `stop()` then `start()`; calls `onRestart` after the new process boots. A user restart
    /// is not counted in `restarts`.
    public func restart(gracePeriod: TimeInterval = 10) throws {
        stop(gracePeriod: gracePeriod)
        try start()
        onRestart?(self)
    }

    /// Kills a QEMU left behind by a previous (crashed) runner for `paths`: the pid in its
    /// pid file, only if /proc says that process is a QEMU with `-name NAME`; then removes
    /// the pid file and sockets. Returns the pid killed, if any.
    @discardableResult
    public static func killStale(paths: VMPaths) -> pid_t? {
        defer {
            unlink(paths.pidFile)
            unlink(paths.consoleSocket)
            unlink(paths.qmpSocket)
        }
        guard let text = try? String(contentsOfFile: paths.pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let exe = args.first, exe.contains("qemu-system"),
              let i = args.firstIndex(of: "-name"), i + 1 < args.count, args[i + 1] == paths.name else { return nil }
        kill(pid, SIGKILL)
        for _ in 0..<100 where FileManager.default.fileExists(atPath: "/proc/\(pid)") { usleep(50_000) }
        return pid
    }

    // MARK: - Spawning

    private struct Child {
        var pid: pid_t
        var startedAt: TimeInterval
        var consoleOffset: UInt64
        var processLogOffset: UInt64
    }

    /// Prepares the directories and logs and spawns QEMU.
    private func launch(extraArguments: [String] = []) throws -> Child {
        // 0700: the console socket is a root shell in the guest.
        for dir in Set([paths.runDirectory, paths.logDirectory]) { try makeDirectories(dir, mode: 0o700) }
        unlink(paths.consoleSocket)
        unlink(paths.qmpSocket)
        if let net = spec.network {
            // Served to the guest by `-fw_cfg` (QEMUCommand); validated with the spec.
            guard FileManager.default.createFile(atPath: paths.networkConfig, contents: Data(net.payload.utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw VMError.io(operation: "write", path: paths.networkConfig, errno: errno)
            }
        }
        // One old generation of the console log is kept; the log otherwise grows by one boot
        // per restart (~2 KB with `quiet`).
        if fileSize(paths.consoleLog) > 4 << 20 { rename(paths.consoleLog, paths.consoleLog + ".1") }
        if fileSize(paths.processLog) > 4 << 20 { rename(paths.processLog, paths.processLog + ".1") }
        let consoleOffset = fileSize(paths.consoleLog)
        let logFD = open(paths.processLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw VMError.io(operation: "open", path: paths.processLog, errno: errno) }
        defer { close(logFD) }
        let processLogOffset = fileSize(paths.processLog)
        var cmd = command
        cmd.arguments += extraArguments
        let header = "--- tapestry: \(Date()) starting \(spec.name) (\(accel.rawValue))\(spec.networkNamespace.map { " in netns \($0)" } ?? ""): \(cmd.argv.joined(separator: " "))\n"
        _ = header.withCString { write(logFD, $0, strlen($0)) }
        switch Spawn.spawn(path: qemuExecutable, arguments: cmd.arguments, stdout: logFD, stderr: logFD,
                           inherit: spec.tapDescriptors, networkNamespace: spec.networkNamespace) {
        case .success(let pid):
            return Child(pid: pid, startedAt: Self.now(), consoleOffset: consoleOffset, processLogOffset: processLogOffset)
        case .failure(let e):
            throw VMError.spawnFailed(name: spec.name, executable: qemuExecutable, errno: e.rawValue)
        }
    }

    // MARK: - Monitoring

    private struct Run {
        var exit: ProcessExit
        var becameReady: Bool
        var timedOut: Bool
        var uptime: TimeInterval
    }

    /// The monitor thread: watch each QEMU process to its end and decide what comes next.
    private func monitor(first: Child) {
        var child = first
        var initial = true
        var attempt = 0
        while true {
            let run = watch(child)
            cond.lock()
            if stopRequested {
                finish(.stopped)
                log("VM \(spec.name): stopped (QEMU \(run.exit))")
                return
            }
            if initial && !run.becameReady {
                let consoleTail = tailLines(of: paths.consoleLog, from: child.consoleOffset)
                bootError = run.timedOut
                    ? .bootTimeout(name: spec.name, seconds: bootTimeout, consoleTail: consoleTail)
                    : .exitedDuringBoot(name: spec.name, status: run.exit, consoleTail: consoleTail,
                                        processLogTail: tailLines(of: paths.processLog, from: child.processLogOffset))
                lastError = bootError.map { "\($0)" }
                finish(.failed)
                return
            }
            guard restartPolicy.restarts(after: run.exit, stopRequested: false) else {
                log("VM \(spec.name): QEMU \(run.exit); not restarted (restart: \(restartPolicy.rawValue))")
                finish(run.exit.isFailure ? .failed : .stopped)
                return
            }
            attempt = backoff.nextAttempt(previous: attempt, uptime: run.uptime)
            let delay = backoff.delay(attempt: attempt)
            state = .backingOff
            restartAt = Self.now() + delay
            cond.broadcast()
            log("VM \(spec.name): QEMU \(run.exit)\(run.timedOut ? " (boot timeout)" : "") after \(Int(run.uptime)) s; restarting in \(Self.format(delay)) s (restart: \(restartPolicy.rawValue))")
            while !stopRequested, let at = restartAt, Self.now() < at {
                _ = cond.wait(until: Date().addingTimeInterval(at - Self.now()))
            }
            restartAt = nil
            if stopRequested {
                finish(.stopped)
                return
            }
            cond.unlock()

            do {
                cond.lock(); incoming = false; cond.unlock()
                child = try launch()
            } catch {
                cond.lock()
                lastError = "\(error)"
                log("VM \(spec.name): restart failed: \(error)")
                finish(.failed)
                return
            }
            cond.lock()
            pid = child.pid
            startedAt = child.startedAt
            bootTime = nil
            state = .starting
            restarts += 1
            cond.broadcast()
            cond.unlock()
            initial = false
            onRestart?(self)
        }
    }

    /// Ends the monitor: the final state, under the lock (which it releases).
    private func finish(_ final: VMState) {
        state = final
        restartAt = nil
        monitorRunning = false
        cond.broadcast()
        cond.unlock()
    }

    /// Watches one QEMU process until it has exited and is reaped.
    private func watch(_ child: Child) -> Run {
        let pidfd = cvm_pidfd_open(child.pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        var scanner = ReadyMarkerScanner(path: paths.consoleLog, offset: child.consoleOffset, name: spec.name)
        var ready = false
        var timedOut = false
        cond.lock()
        let receiving = incoming
        cond.unlock()
        while true {
            // Booting: a 50 ms tick to scan the log. Ready: block on the pidfd until the exit.
            let tick: Int32 = ready ? (pidfd >= 0 ? -1 : 200) : 50
            if pidfd >= 0 {
                var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, tick)
            } else {
                usleep(UInt32(tick) * 1000)
            }
            if Spawn.hasExited(child.pid) {
                cond.lock()
                let exit = Spawn.reapIfExited(child.pid) ?? ProcessExit(signal: SIGKILL)
                pid = nil
                lastExit = exit
                if exit.isFailure { lastError = "QEMU \(exit)" }
                let uptime = Self.now() - child.startedAt
                cond.broadcast()
                cond.unlock()
                return Run(exit: exit, becameReady: ready, timedOut: timedOut, uptime: uptime)
            }
            guard !ready else { continue }
            if receiving {
                // A migration's destination: ready once resumed; its owner bounds the wait.
                cond.lock()
                ready = resumed
                cond.unlock()
                if ready { log("VM \(spec.name): running after an incoming migration (pid \(child.pid))") }
                continue
            }
            if scanner.scan() {
                ready = true
                let elapsed = Self.now() - child.startedAt
                cond.lock()
                bootTime = elapsed
                if state == .starting { state = .running }
                cond.broadcast()
                cond.unlock()
                log("VM \(spec.name): ready after \(Self.format(elapsed)) s (pid \(child.pid), \(accel.rawValue))")
            } else if !timedOut && Self.now() - child.startedAt > bootTimeout {
                timedOut = true
                log("VM \(spec.name): no READY after \(Self.format(bootTimeout)) s; killing QEMU (pid \(child.pid))")
                cond.lock()
                if pid == child.pid { kill(-child.pid, SIGKILL); kill(child.pid, SIGKILL) }
                cond.unlock()
            }
        }
    }

    /// Waits until the current QEMU process is reaped, at most `seconds`. True when it was.
    private func waitForExit(seconds: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        cond.lock()
        defer { cond.unlock() }
        while pid != nil {
            if !cond.wait(until: deadline) { return pid == nil }
        }
        return true
    }

    private func processAlive() -> Bool {
        cond.lock()
        defer { cond.unlock() }
        return pid != nil
    }

    /// A monotonic clock in seconds (uptime: wall-clock steps do not shift deadlines).
    static func now() -> TimeInterval { ProcessInfo.processInfo.systemUptime }

    static func format(_ seconds: TimeInterval) -> String { String(format: "%.1f", seconds) }
}

/// mkdir -p: creates `path` and missing parents with `mode`; existing ones are left alone.
private func makeDirectories(_ path: String, mode: mode_t) throws {
    var prefix = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        prefix += "/" + component
        if mkdir(prefix, mode) != 0 && errno != EEXIST {
            throw VMError.io(operation: "create directory", path: prefix, errno: errno)
        }
    }
}

private func fileSize(_ path: String) -> UInt64 {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
}

/// Finds `TAPESTRY-GUEST-READY name=NAME` (then CR or LF) in a growing console log, reading
/// only the bytes appended since the last scan.
struct ReadyMarkerScanner {
    let path: String
    private(set) var offset: UInt64
    private let marker: [UInt8]
    private var carry: [UInt8] = []

    init(path: String, offset: UInt64, name: String) {
        self.path = path
        self.offset = offset
        marker = Array("TAPESTRY-GUEST-READY name=\(name)".utf8)
    }

    /// True once the marker (followed by a line end) has appeared after the start offset.
    mutating func scan() -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        guard (try? h.seek(toOffset: offset)) != nil, let data = try? h.readToEnd(), !data.isEmpty else { return false }
        offset += UInt64(data.count)
        let bytes = carry + Array(data)
        if Self.containsMarker(bytes, marker: marker) { return true }
        carry = Array(bytes.suffix(marker.count + 1))
        return false
    }

    /// The pure search: `marker` immediately followed by "\r" or "\n".
    static func containsMarker(_ bytes: [UInt8], marker: [UInt8]) -> Bool {
        guard bytes.count > marker.count else { return false }
        var i = 0
        while i + marker.count < bytes.count {
            if bytes[i] == marker[0] && bytes[i..<(i + marker.count)].elementsEqual(marker) {
                let next = bytes[i + marker.count]
                if next == UInt8(ascii: "\r") || next == UInt8(ascii: "\n") { return true }
            }
            i += 1
        }
        return false
    }
}
