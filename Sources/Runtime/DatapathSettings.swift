/// The datapath's effective settings: worker threads and the poll window, from the topology
/// file's `datapath:` key and the environment's overrides.
///
/// Precedence, per setting: the environment variable when set, else the file's value, else
/// the default. A variable that is set but invalid is an error naming it, raised before
/// anything starts (an empty value counts as unset, the shell idiom `VAR= tapestry up`).
///
/// | setting | file key | variable | range | default |
/// |---|---|---|---|---|
/// | worker threads | `datapath.threads` | `TAPESTRY_DATAPATH_THREADS` | 1…64 | one per core, at most 4 |
/// | poll window (µs) | `datapath.poll` | `TAPESTRY_BUSY_POLL_US` | 0…1 000 000 | 0 (off) |
/// | vhost-user ring poll window (µs) | — | `TAPESTRY_VHOST_POLL_US` | 0…1 000 000 | 50 |
///
/// A pure function of its inputs (no environment read here), so it is tested without
/// processes; `up` passes `ProcessInfo.processInfo.environment` and the core count.
public struct DatapathSettings: Equatable, Sendable {
    /// Datapath worker threads (also the queues of each netns guest's TAP).
    public var threads: Int
    /// Poll mode: microseconds a worker spins after a batch with work before sleeping (0: off).
    public var busyPollMicroseconds: Int
    /// Microseconds a vhost-user port keeps polling its guest's empty TX ring after the last
    /// frame before it asks the guest to kick (0: kicks only). The longer of this and
    /// `busyPollMicroseconds` applies. A frontend that sends again within the window (a DPDK
    /// application, a busy guest) never kicks and the switch never sleeps between its bursts;
    /// a quiet one costs at most this much spinning per burst. The default was chosen by
    /// `Scripts/bench/vhost-switch.sh`, which runs kicks only (0), this default and poll mode
    /// side by side (README, "vhost-user ports").
    public var vhostPollMicroseconds: Int

    public init(threads: Int, busyPollMicroseconds: Int, vhostPollMicroseconds: Int = DatapathSettings.defaultVhostPollMicroseconds) {
        self.threads = threads
        self.busyPollMicroseconds = busyPollMicroseconds
        self.vhostPollMicroseconds = vhostPollMicroseconds
    }

    public static let threadsVariable = "TAPESTRY_DATAPATH_THREADS"
    public static let busyPollVariable = "TAPESTRY_BUSY_POLL_US"
    public static let vhostPollVariable = "TAPESTRY_VHOST_POLL_US"
    public static let defaultVhostPollMicroseconds = 50
    public static let threadRange = 1...64
    public static let busyPollRange = 0...1_000_000

    /// The default thread count for `cores` online CPUs: one per core, at most 4.
    public static func defaultThreads(cores: Int) -> Int { max(1, min(4, cores)) }

    /// Resolves the settings.
    /// - Parameters:
    ///   - fileThreads, fileBusyPollMicroseconds: the topology file's `datapath:` values
    ///     (already validated by the loader, with locations), nil when absent.
    ///   - environment: the process environment.
    ///   - cores: online CPUs, for the default thread count.
    /// - Throws: `RuntimeError` naming the variable, its value and the accepted range.
    public static func resolve(fileThreads: Int? = nil, fileBusyPollMicroseconds: Int? = nil,
                               environment: [String: String], cores: Int) throws -> DatapathSettings {
        let threads = try override(threadsVariable, in: environment, range: threadRange, unit: "threads")
            ?? fileThreads ?? defaultThreads(cores: cores)
        let poll = try override(busyPollVariable, in: environment, range: busyPollRange, unit: "microseconds")
            ?? fileBusyPollMicroseconds ?? 0
        let vhostPoll = try override(vhostPollVariable, in: environment, range: busyPollRange, unit: "microseconds")
            ?? defaultVhostPollMicroseconds
        return DatapathSettings(threads: threads, busyPollMicroseconds: poll, vhostPollMicroseconds: vhostPoll)
    }

    /// The variable's value as a decimal integer in `range`; nil when unset or empty.
    static func override(_ variable: String, in environment: [String: String], range: ClosedRange<Int>, unit: String) throws -> Int? {
        guard let text = environment[variable], !text.isEmpty else { return nil }
        let digitsOnly = text.utf8.allSatisfy { (48...57).contains($0) }
        guard digitsOnly, text.utf8.count <= 10, let v = Int(text) else {
            throw RuntimeError("\(variable)=\(quoted(text)) is not a number: expected a whole number of \(unit), \(range.lowerBound)..\(range.upperBound) (or unset it)")
        }
        guard range.contains(v) else {
            throw RuntimeError("\(variable)=\(text) is out of range: expected \(range.lowerBound)..\(range.upperBound) \(unit) (or unset it)")
        }
        return v
    }

    private static func quoted(_ s: String) -> String {
        let printable = s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
        return printable ? s : s.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
    }
}
