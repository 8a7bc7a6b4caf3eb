import Foundation
import Testing
import TestSupport

/// Drives the real `tapestry` binary against real namespaces, TAPs and kernel stacks.
enum Harness {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The binary under test: $TAPESTRY_BIN, or the debug build (built on demand).
    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["TAPESTRY_BIN"], FileManager.default.isExecutableFile(atPath: b) { return b }
        let b = packageRoot + "/.build/debug/tapestry"
        if !FileManager.default.isExecutableFile(atPath: b) {
            sh("cd '\(packageRoot)' && swift build --product tapestry", timeout: 900)
        }
        return b
    }()

    /// System tests need root (namespaces, TAP devices), /dev/net/tun and iproute2.
    static var enabled: Bool { Capabilities.canCreateTAP && Capabilities.canCreateNamespaces }

    /// Python with scapy (Debian's python3-scapy lives in the system interpreter).
    static let python = "/usr/bin/python3"
    static var hasScapy: Bool { sh("\(python) -c 'import scapy.all'").succeeded }

    static var hasQEMU: Bool { sh("command -v qemu-system-x86_64").succeeded }
    static var hasTshark: Bool { sh("command -v tshark && command -v capinfos").succeeded }

    @discardableResult
    static func tapestry(_ args: String) -> CommandResult { sh("'\(binary)' \(args)", timeout: 180) }

    static func namespaces() -> Set<String> {
        Set(sh("ip netns list").stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }
}

/// A topology brought up for one test and always brought down again.
final class RunningTopology {
    let name: String
    let file: String
    let up: CommandResult

    /// Writes `yaml` to a temporary file and runs `tapestry up --detach` on it.
    init(name: String, yaml: String) {
        self.name = name
        file = NSTemporaryDirectory() + "tapestry-\(name).yaml"
        try? yaml.write(toFile: file, atomically: true, encoding: .utf8)
        up = Harness.tapestry("up '\(file)' --detach")
    }

    deinit {
        Harness.tapestry("down --name \(name)")
        unlink(file)
        // The daemon's log is kept after `down` (for admins); a test removes its own.
        sh("rm -rf '/var/log/tapestry/\(name)'")
    }

    /// The last `lines` lines of the daemon's log and of each VM's QEMU and console logs
    /// (`/var/log/tapestry/NAME/`), for a failure message: what the switch and the guests
    /// said when a check failed.
    func logTails(lines: Int = 15) -> String {
        let dir = "/var/log/tapestry/\(name)"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".log") }.sorted()
        return files.map { f in
            let tail = sh("tail -n \(lines) '\(dir)/\(f)' | cut -c1-200").stdout
            return "--- \(f) ---\n\(tail)"
        }.joined(separator: "\n")
    }

    /// Runs a command inside a guest's namespace.
    @discardableResult
    func exec(_ guest: String, _ command: String, timeout: TimeInterval = 60) -> CommandResult {
        sh("ip netns exec \(guest) \(command)", timeout: timeout)
    }

    func ping(from guest: String, to ip: String, count: Int = 2) -> Bool {
        exec(guest, "ping -c \(count) -i 0.2 -W 1 \(ip)").succeeded
    }

    /// The daemon's pid, as `tapestry status --json` reports it.
    func daemonPID() -> Int32? {
        let status = Harness.tapestry("status --name \(name) --json").stdout
        let obj = try? JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any]
        return (obj?["pid"] as? NSNumber)?.int32Value
    }

    /// Per-port counters from `tapestry ports --json`.
    func ports() -> [[String: Any]] {
        let r = Harness.tapestry("ports --name \(name) --json")
        let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return obj?["ports"] as? [[String: Any]] ?? []
    }

    func drops(port: String, reason: String) -> Int {
        let row = ports().first { $0["name"] as? String == port }
        return ((row?["drops"] as? [String: Any])?[reason] as? NSNumber)?.intValue ?? 0
    }

    /// Sends frames built by a scapy expression from a guest's eth0.
    @discardableResult
    func scapySend(from guest: String, _ expression: String, count: Int = 1) -> CommandResult {
        exec(guest, "\(Harness.python) -c \"from scapy.all import *; sendp(\(expression), iface='eth0', count=\(count), inter=0.05, verbose=0)\"")
    }
}

/// A tcpdump running in a guest's namespace, writing a pcap file; read it back when done.
final class Capture {
    let file: String
    let log: String
    let guest: String
    let pidFile: String

    /// - `interface`: the interface in the namespace (default the guest's eth0).
    /// - `direction`: tcpdump's `-Q` (`in`, `out`, `inout`).
    /// - `seconds`: the longest the capture runs; `lines()` ends it sooner. Generous, as a
    ///   loaded machine (the whole suite at once on two cores) runs a test's steps slowly.
    init(in guest: String, interface: String = "eth0", direction: String = "inout", filter: String = "", seconds: Int = 30) {
        self.guest = guest
        let base = NSTemporaryDirectory() + "tapestry-cap-\(guest)-\(UInt32.random(in: 0...UInt32.max))"
        file = base + ".pcap"
        log = base + ".log"
        pidFile = base + ".pid"
        // `ip netns exec` execs `timeout`, so $! is timeout's pid; timeout passes signals on.
        sh("(ip netns exec \(guest) timeout \(seconds) tcpdump -i \(interface) -Q \(direction) --immediate-mode -U -nn -w \(file) '\(filter)' >\(log) 2>&1 & echo $! >\(pidFile))")
        // Wait until tcpdump says it is listening, so no frame is missed.
        for _ in 0..<100 {
            if (try? String(contentsOfFile: log, encoding: .utf8))?.contains("listening on") == true { break }
            usleep(50_000)
        }
    }

    /// Stops the capture and returns `tcpdump -e -nn -r` lines, optionally filtered.
    func lines(_ filter: String = "") -> [String] {
        usleep(300_000)   // frames still in flight through the switch
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGINT)
            for _ in 0..<40 where isRunning(pid) { usleep(50_000) }
        }
        unlink(pidFile)
        let out = sh("tcpdump -e -nn -r \(file) \(filter) 2>/dev/null").stdout
        unlink(file); unlink(log)
        return out.split(separator: "\n").map(String.init)
    }
}

/// True while `pid` exists and is not a zombie (an exited child nobody reaped yet).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}
