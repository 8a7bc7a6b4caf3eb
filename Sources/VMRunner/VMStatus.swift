/// The life cycle of one supervised VM.
///
/// ```
///   start() ──▶ starting ──READY──▶ running ──exit──▶ restart? ──yes──▶ backing-off ──▶ starting
///                  │                   │                   └──no──▶ stopped (exit 0) / failed
///                  └─timeout/exit──▶ failed (first boot: reported to the caller, no restart)
///   stop(): starting/running/backing-off ──▶ stopping ──▶ stopped
/// ```
public enum VMState: String, Codable, Sendable {
    /// QEMU runs; the guest has not printed READY yet.
    case starting
    /// The guest printed READY: its interfaces are configured.
    case running
    /// A stop was requested; QEMU is being powered down.
    case stopping
    /// QEMU ended and the restart policy restarts it after a delay.
    case backingOff = "backing-off"
    /// Not running: never started, stopped by request, or ended cleanly under on-failure/never.
    case stopped
    /// Not running after a failure the policy does not restart (see `lastExit`, `lastError`).
    case failed
}

/// A snapshot of one VM for `tapestry vm list` (`--json`: these keys).
public struct VMStatus: Codable, Sendable, Equatable {
    public var name: String
    public var state: VMState
    /// The QEMU process, while there is one.
    public var pid: Int32?
    public var accel: Accel
    /// Seconds since the current QEMU process started.
    public var uptime: Double?
    /// Seconds from spawning the current QEMU process to the guest's READY marker.
    public var bootTime: Double?
    /// Automatic restarts since `start()` (user restarts are not counted).
    public var restarts: Int
    public var lastExit: ProcessExit?
    public var lastError: String?
    /// Seconds until the next automatic restart, while backing off.
    public var restartIn: Double?
    public var consoleSocket: String
    public var consoleLog: String

    public init(name: String, state: VMState, pid: Int32? = nil, accel: Accel, uptime: Double? = nil, bootTime: Double? = nil,
                restarts: Int = 0, lastExit: ProcessExit? = nil, lastError: String? = nil, restartIn: Double? = nil,
                consoleSocket: String, consoleLog: String) {
        self.name = name
        self.state = state
        self.pid = pid
        self.accel = accel
        self.uptime = uptime
        self.bootTime = bootTime
        self.restarts = restarts
        self.lastExit = lastExit
        self.lastError = lastError
        self.restartIn = restartIn
        self.consoleSocket = consoleSocket
        self.consoleLog = consoleLog
    }
}
