import Foundation
import Model
import Testing
import TestSupport
@testable import VMRunner

/// Real QEMU guests (TCG here) on a real TAP: boot, ping, crash and restart, console, stop.
///
/// Needs root (TAP, namespaces) and qemu-system-x86_64 (installed by Scripts/setup.sh); skips
/// with a printed reason otherwise. The image is built on first use into the shared cache
/// (/var/cache/tapestry/guest-image, ~20 s once). Everything created carries a `vmt` prefix
/// and is removed on every exit path; only processes started here are signalled, by pid.
/// Serialized: two TCG guests at once on two cores would only make both slower.
@Suite(.serialized) struct VMRunnerSystemTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// nil when the tests can run, else why not.
    static var skipReason: String? {
        if !Capabilities.canCreateTAP { return "needs root and /dev/net/tun" }
        if !Capabilities.canCreateNamespaces { return "needs root and iproute2" }
        if Spawn.which("qemu-system-x86_64") == nil { return "qemu-system-x86_64 is not installed (Scripts/setup.sh installs qemu-system-x86)" }
        return nil
    }

    static func image() throws -> GuestImage {
        try GuestImage.prepare(script: packageRoot + "/Scripts/guest-image.sh") { print("  \($0)") }
    }

    /// One guest shared by every check (a TCG boot costs ~5 s): READY, ping from a namespace
    /// holding the TAP's netdev, QMP, the console, kill -9 → restart on the same TAP and MAC,
    /// then a graceful stop that leaves no process.
    @Test func bootPingCrashRestartConsoleStop() throws {
        if let reason = Self.skipReason { try Test.cancel("VMRunnerSystemTests skipped: \(reason)") }
        let image = try Self.image()
        let p = Capabilities.uniquePrefix("vmt")
        let ns = "\(p)ns", tapName = "\(p)tap"
        let mac = MACAddress("52:54:00:7e:57:01")!
        let runDir = NSTemporaryDirectory() + "\(p)-run"
        let tap = try openTAP(tapName)
        defer {
            close(tap)
            sh("ip netns del \(ns)")
            sh("rm -rf '\(runDir)'")
        }
        #expect(sh("ip netns add \(ns) && ip link set \(tapName) netns \(ns) && ip -n \(ns) addr add 10.213.0.1/24 dev \(tapName) && ip -n \(ns) link set \(tapName) up").succeeded)
        // VLAN 10 on the same wire, for the guest's eth0.10 sub-interface (tapestry.ip=eth0.10=…),
        // when the host kernel has 802.1Q (some CI kernels do not).
        let hostVLAN = sh("ip -n \(ns) link add link \(tapName) name \(p)v10 type vlan id 10 && ip -n \(ns) addr add 10.213.10.1/24 dev \(p)v10 && ip -n \(ns) link set \(p)v10 up").succeeded

        let restarts = Counter()
        let accel = Accel.probe()
        print("  accel: \(accel.reason)")
        let vm = try VMSupervisor(
            spec: VMSpec(name: "\(p)vm", nics: [GuestNIC(mac: mac, tapFD: tap, addresses: ["10.213.0.2/24"], mtu: 1400)],
                         gateway: "10.213.0.1", extraKernelArguments: ["tapestry.ip=eth0.10=10.213.10.2/24"]),
            image: image, accel: accel.accel, paths: VMPaths(name: "\(p)vm", runDirectory: runDir),
            restartPolicy: .onFailure, backoff: Backoff(initial: 0.5, maximum: 5, resetAfter: 60),
            onRestart: { _ in restarts.increment() }, log: { print("  \($0)") })
        defer { vm.stop(gracePeriod: 5) }

        // Boot.
        let started = Date()
        try vm.start()
        let first = vm.status
        print("  booted in \(String(format: "%.1f", Date().timeIntervalSince(started))) s (\(image.boot.rawValue), \(image.kernelVersion))")
        #expect(first.state == .running)
        let firstPID = try #require(first.pid)
        #expect(String(decoding: FileManager.default.contents(atPath: "/proc/\(firstPID)/cmdline") ?? Data(), as: UTF8.self)
            .split(separator: "\0").contains { $0 == "\(p)vm" }, "ps shows -name")

        // The guest answers on its TAP, with its MAC.
        #expect(ping(ns, "10.213.0.2"), "guest answers ping")
        #expect(neighbourMAC(ns, "10.213.0.2", dev: tapName) == "\(mac)")
        if hostVLAN {
            #expect(ping(ns, "10.213.10.2"), "guest answers on its VLAN 10 sub-interface")
        } else {
            print("  host has no 802.1Q support: the VLAN sub-interface is checked inside the guest only")
        }

        // QMP.
        let qmp = try QMPClient(path: vm.paths.qmpSocket)
        #expect(try qmp.queryStatus().status == "running")
        qmp.close()

        // The console gives a shell (Console.attach with pipes standing in for the terminal).
        // Its MTU and default route came from the kernel command line.
        let console = try consoleRoundTrip(vm.paths.consoleSocket, name: "\(p)vm",
                                           command: "echo vmt-answer-$((6*7)) mtu=$(cat /sys/class/net/eth0/mtu); ip route; ip -o addr show dev eth0.10")
        #expect(console.contains("vmt-answer-42 mtu=1400"), "console output: \(console)")
        #expect(console.contains("default via 10.213.0.1"), "console output: \(console)")
        #expect(console.contains("inet 10.213.10.2/24"), "eth0.10 configured; console output: \(console)")

        // Crash: kill -9 our QEMU; on-failure restarts it on the same TAP.
        kill(firstPID, SIGKILL)
        let back = waitFor(timeout: 40) { let s = vm.status; return s.restarts == 1 && s.state == .running ? s : nil }
        let second = try #require(back, "restarted and READY again (status \(vm.status))")
        #expect(second.pid != firstPID)
        #expect(second.lastExit == ProcessExit(signal: SIGKILL))
        #expect(restarts.value == 1, "onRestart called once")
        sh("ip -n \(ns) neigh flush dev \(tapName)")
        #expect(ping(ns, "10.213.0.2"), "the restarted guest answers ping")
        #expect(neighbourMAC(ns, "10.213.0.2", dev: tapName) == "\(mac)", "same MAC after the restart")

        // Graceful stop: the power button, no process left.
        let secondPID = try #require(second.pid)
        let stopStarted = Date()
        vm.stop(gracePeriod: 10)
        print("  stopped in \(String(format: "%.1f", Date().timeIntervalSince(stopStarted))) s")
        #expect(vm.status.state == .stopped)
        #expect(vm.status.pid == nil)
        #expect(kill(secondPID, 0) != 0 && errno == ESRCH, "QEMU is gone")
        #expect(vm.status.lastExit == ProcessExit(code: 0), "powered off cleanly")
        let log = (try? String(contentsOfFile: vm.paths.consoleLog, encoding: .utf8)) ?? ""
        #expect(log.contains("power button pressed"), "stopped by the ACPI power button, not by QMP quit")
        #expect(restarts.value == 1, "a requested stop is not restarted")
    }

    /// A QEMU that exits during the first boot is reported with its own words, and nothing is
    /// restarted.
    @Test func firstBootFailureIsReported() throws {
        if let reason = Self.skipReason { try Test.cancel("VMRunnerSystemTests skipped: \(reason)") }
        let p = Capabilities.uniquePrefix("vmt")
        let runDir = NSTemporaryDirectory() + "\(p)-run"
        defer { sh("rm -rf '\(runDir)'") }
        let bogus = GuestImage(kernel: runDir + "/no-such-vmlinux", initrd: runDir + "/no-such-initrd", boot: .pvh, kernelVersion: "none")
        let vm = try VMSupervisor(spec: VMSpec(name: "\(p)vm"), image: bogus, accel: .tcg,
                                  paths: VMPaths(name: "\(p)vm", runDirectory: runDir), restartPolicy: .always, log: { print("  \($0)") })
        do {
            try vm.start()
            Issue.record("start succeeded without a kernel")
        } catch let error as VMError {
            guard case .exitedDuringBoot(_, let status, _, let processTail) = error else { Issue.record("unexpected \(error)"); return }
            #expect(status.isFailure)
            #expect(processTail.joined().contains("no-such-vmlinux"), "QEMU's message names the kernel: \(processTail)")
        }
        #expect(vm.status.state == .failed)
        #expect(vm.status.restarts == 0)
    }

    /// No READY within the boot timeout: QEMU is killed and the error carries the console tail.
    @Test func bootTimeoutKillsAndReports() throws {
        if let reason = Self.skipReason { try Test.cancel("VMRunnerSystemTests skipped: \(reason)") }
        let image = try Self.image()
        let p = Capabilities.uniquePrefix("vmt")
        let runDir = NSTemporaryDirectory() + "\(p)-run"
        defer { sh("rm -rf '\(runDir)'") }
        // A guest that cannot become ready however long it runs: the initramfs starts a
        // shell instead of /init (no READY marker ever), and the kernel logs verbosely, so
        // the console has lines to report even when a loaded machine starts QEMU slowly.
        let vm = try VMSupervisor(spec: VMSpec(name: "\(p)vm", extraKernelArguments: ["loglevel=7", "rdinit=/bin/sh"]), image: image, accel: .tcg,
                                  paths: VMPaths(name: "\(p)vm", runDirectory: runDir), bootTimeout: 8, log: { print("  \($0)") })
        #expect {
            try vm.start()
        } throws: { error in
            guard case VMError.bootTimeout(_, _, let tail) = error else { return false }
            return !tail.isEmpty
        }
        #expect(vm.status.state == .failed)
        #expect(vm.status.pid == nil)
    }

    // MARK: - Helpers

    /// Opens /dev/net/tun as TAP `name` (IFF_TAP | IFF_NO_PI, no IFF_VNET_HDR), as the switch does.
    func openTAP(_ name: String) throws -> Int32 {
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw VMError.io(operation: "open", path: "/dev/net/tun", errno: errno) }
        var ifr = [UInt8](repeating: 0, count: 40)  // struct ifreq: name[16], then flags (short)
        for (i, b) in name.utf8.prefix(15).enumerated() { ifr[i] = b }
        let flags: UInt16 = 0x0002 | 0x1000  // IFF_TAP | IFF_NO_PI
        ifr[16] = UInt8(flags & 0xFF)
        ifr[17] = UInt8(flags >> 8)
        let tunSetIFF: UInt = 0x4004_54CA
        guard ifr.withUnsafeMutableBytes({ ioctl(fd, tunSetIFF, $0.baseAddress!) }) == 0 else {
            let e = errno
            close(fd)
            throw VMError.io(operation: "TUNSETIFF", path: name, errno: e)
        }
        return fd
    }

    func ping(_ ns: String, _ ip: String) -> Bool {
        sh("ip netns exec \(ns) ping -c 2 -i 0.3 -W 2 \(ip)", timeout: 20).succeeded
    }

    func neighbourMAC(_ ns: String, _ ip: String, dev: String) -> String? {
        ipJSON("ip -j -n \(ns) neigh show \(ip) dev \(dev)").first?["lladdr"] as? String
    }

    /// Runs `command` in the guest's shell through `Console.attach` (pipes standing in for the
    /// terminal) and returns what came back.
    func consoleRoundTrip(_ socket: String, name: String, command: String) throws -> String {
        var input: [Int32] = [0, 0]
        #expect(pipe(&input) == 0)
        let outPath = NSTemporaryDirectory() + "\(name)-console.out"
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(out); unlink(outPath) }
        let writer = input[1]
        let feeder = Thread {
            let line = Array("\n\(command)\n".utf8)
            _ = line.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
            usleep(2_500_000)
            var escape = Console.escapeByte
            _ = write(writer, &escape, 1)
            close(writer)
        }
        feeder.start()
        try Console.attach(socketPath: socket, name: name, input: input[0], output: out)
        close(input[0])
        return (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    }

    func waitFor<T>(timeout: TimeInterval, _ probe: () -> T?) -> T? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let v = probe() { return v }
            usleep(100_000)
        }
        return probe()
    }
}

/// A thread-safe counter for callbacks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// Live migration as VMotion drives it, between two QEMU processes on this machine: the
/// source boots; the destination starts with `-incoming defer -S` (`startIncoming`) and is
/// `starting` with QMP answering; each QEMU gets one end of a socket pair over QMP `getfd`
/// (SCM_RIGHTS) and the stream runs `migrate fd:…` → `migrate-incoming fd:…`; the
/// destination stays paused until `cont`, counts as running after `incomingResumed`, and
/// the guest answers on its console; the source is then quit without the power button.
@Suite(.serialized) struct VMRunnerMigrationTests {
    @Test func incomingQEMUReceivesThroughPassedDescriptorsAndResumesOnCont() throws {
        if let reason = VMRunnerSystemTests.skipReason { try Test.cancel("VMRunnerMigrationTests skipped: \(reason)") }
        let image = try VMRunnerSystemTests.image()
        let p = Capabilities.uniquePrefix("vmm")
        let runDir = NSTemporaryDirectory() + "\(p)-run"
        defer { sh("rm -rf '\(runDir)'") }
        let accel = Accel.probe().accel
        let spec = VMSpec(name: "\(p)vm", memoryMiB: 128)
        let source = try VMSupervisor(spec: spec, image: image, accel: accel, paths: VMPaths(name: "\(p)s", runDirectory: runDir),
                                      restartPolicy: .never, log: { print("  \($0)") })
        defer { source.stop(gracePeriod: 0, powerButton: false) }
        let dest = try VMSupervisor(spec: spec, image: image, accel: accel, paths: VMPaths(name: "\(p)d", runDirectory: runDir),
                                    restartPolicy: .never, log: { print("  \($0)") })
        defer { dest.stop(gracePeriod: 0, powerButton: false) }
        try source.start()
        try dest.startIncoming()
        #expect(dest.status.state == .starting && dest.status.pid != nil, "waiting for the stream")
        let dq = try QMPClient(path: dest.paths.qmpSocket)
        defer { dq.close() }
        #expect(try dq.queryStatus().status == "inmigrate")

        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let sq = try QMPClient(path: source.paths.qmpSocket)
        defer { sq.close() }
        try dq.sendDescriptor(pair[1], name: "mig")
        try dq.migrateIncoming(uri: "fd:mig")
        try sq.sendDescriptor(pair[0], name: "mig")
        try sq.migrate(uri: "fd:mig")
        close(pair[0]); close(pair[1]); pair = [-1, -1]
        var info = MigrationInfo(status: "setup")
        let started = Date()
        while !info.isFinished && Date().timeIntervalSince(started) < 120 {
            info = try sq.queryMigrate()
            usleep(20_000)
        }
        print("  migration \(info.status): QEMU \(info.totalTimeMilliseconds ?? -1) ms, downtime \(info.downtimeMilliseconds ?? -1) ms, \(info.transferredBytes ?? 0) bytes")
        #expect(info.status == "completed", "\(info.error ?? "")")
        #expect((info.transferredBytes ?? 0) > 0 && info.downtimeMilliseconds != nil)
        #expect(try sq.queryStatus().status == "postmigrate", "the source stays paused after the migration")
        var destState = ""
        for _ in 0..<200 { destState = (try? dq.queryStatus().status) ?? ""; if destState == "paused" { break }; usleep(100_000) }
        #expect(destState == "paused", "-S: the destination stays paused")
        #expect(dest.status.state == .starting)
        try dq.cont()
        dest.incomingResumed()
        #expect(dest.status.state == .running && dest.status.bootTime != nil)
        #expect(try dq.queryStatus().running)
        let out = guestConsoleRun(socket: dest.paths.consoleSocket, command: "echo migrated-$((6*7))") ?? ""
        #expect(out.contains("migrated-42"), "the guest runs on the destination: \(out.suffix(300))")
        sq.close()
        let t0 = Date()
        source.stop(gracePeriod: 10, powerButton: false)
        #expect(source.status.state == .stopped && Date().timeIntervalSince(t0) < 8, "quit at once, without the power button")
    }
}

@Suite struct MigrationInfoTests {
    @Test func parsesQueryMigrate() {
        let done = MigrationInfo(["status": "completed", "total-time": 488, "downtime": 17, "setup-time": 2,
                                  "ram": ["transferred": 65_000_000, "total": 134_000_000]])
        #expect(done == MigrationInfo(status: "completed", totalTimeMilliseconds: 488, downtimeMilliseconds: 17, transferredBytes: 65_000_000))
        #expect(done.isFinished)
        let active = MigrationInfo(["status": "active", "expected-downtime": 300, "total-time": 10])
        #expect(!active.isFinished && active.downtimeMilliseconds == nil, "expected downtime is not the downtime")
        let failed = MigrationInfo(["status": "failed", "error-desc": "Unable to write to socket"])
        #expect(failed.isFinished && failed.error == "Unable to write to socket")
        #expect(MigrationInfo([:]).status == "none")
    }
}
