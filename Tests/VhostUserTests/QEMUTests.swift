import CVhost
import Foundation
import LinuxIO
import Model
import Testing
import TestSupport
@testable import VhostUser
@testable import VMRunner

/// Real QEMU guests (TCG here) on vhost-user NICs: QEMU serves each NIC's socket and a
/// `VhostUserPort` in client mode connects to it, as the switch will. `CrossConnect` stands in
/// for the switch: it patches the VM's port to a TAP in a network namespace (10-byte vnet
/// header, checksum/TSO offloads on), or to a second VM's port.
///
/// Needs root (TAP, namespaces) and qemu-system-x86_64; skips with the reason otherwise. The
/// guest image is built on first use (Scripts/guest-image.sh). Everything created carries a
/// `vhq` prefix and is removed on every exit path; only processes started here are signalled.
@Suite(.serialized) struct QEMUTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static var skipReason: String? {
        if !Capabilities.canCreateTAP { return "needs root and /dev/net/tun" }
        if !Capabilities.canCreateNamespaces { return "needs root and iproute2" }
        if !sh("command -v qemu-system-x86_64").succeeded { return "qemu-system-x86_64 is not installed (Scripts/setup.sh installs qemu-system-x86)" }
        if !sh("command -v python3").succeeded { return "python3 is not installed" }
        return nil
    }

    static func image() throws -> GuestImage {
        try GuestImage.prepare(script: packageRoot + "/Scripts/guest-image.sh") { print("  \($0)") }
    }

    func boot(_ name: String, mac: MACAddress, socket: String, ip: String, runDir: String, image: GuestImage,
              restarts: Counter? = nil) throws -> VMSupervisor {
        let vm = try VMSupervisor(
            spec: VMSpec(name: name, nics: [GuestNIC(mac: mac, backend: .vhostUser(socketPath: socket), addresses: [ip])]),
            image: image, accel: Accel.probe().accel, paths: VMPaths(name: name, runDirectory: runDir),
            restartPolicy: .onFailure, backoff: Backoff(initial: 0.5, maximum: 5, resetAfter: 60),
            onRestart: { _ in restarts?.increment() }, log: { print("  \($0)") })
        return vm
    }

    /// Netns guest ↔ QEMU guest: ping, TCP both ways (offloads on, so TSO frames cross the
    /// vhost-user port whole), then kill -9 of QEMU: the port reconnects to the restarted QEMU.
    @Test func vmOnVhostUserTalksToANamespaceAndSurvivesAQEMUCrash() throws {
        if let reason = Self.skipReason { try Test.cancel("QEMUTests skipped: \(reason)") }
        let image = try Self.image()
        let p = Capabilities.uniquePrefix("vhq")
        let ns = "\(p)ns", runDir = "/tmp/\(p)-run", webDir = "/tmp/\(p)-web"
        sh("mkdir -p \(runDir) \(webDir) && dd if=/dev/urandom of=\(webDir)/big bs=1M count=16 2>/dev/null")
        var serverPID: Int32 = 0
        defer {
            if serverPID > 0 { kill(serverPID, SIGTERM) }
            sh("ip netns del \(ns)")
            sh("rm -rf \(runDir) \(webDir)")
        }
        let tap = try TAPDevice(name: "\(p)tap", vnetHeader: true)
        defer { tap.close() }
        try tap.enableOffloads()
        #expect(sh("ip netns add \(ns) && ip link set \(p)tap netns \(ns) && ip -n \(ns) addr add 10.214.0.1/24 dev \(p)tap && ip -n \(ns) link set \(p)tap up && ip -n \(ns) link set lo up").succeeded)

        let socket = "\(runDir)/\(p)vm.eth0.sock"
        let port = try VhostUserPort(name: "\(p)vm.eth0", socketPath: socket, mode: .client, log: { print("  \($0)") })
        defer { port.close() }
        let xc = try CrossConnect(port, tap)
        xc.start()
        defer { xc.stop() }

        let restarts = Counter()
        let mac = MACAddress("52:54:00:7e:58:02")!
        let vm = try boot("\(p)vm", mac: mac, socket: socket, ip: "10.214.0.2/24", runDir: runDir, image: image, restarts: restarts)
        defer { vm.stop(gracePeriod: 5) }
        let started = Date()
        try vm.start()
        print("  booted in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        #expect(waitFor(timeout: 10) { port.isRunning }, "QEMU set up the rings")

        #expect(sh("ip netns exec \(ns) ping -c 3 -i 0.3 -W 3 10.214.0.2", timeout: 30).succeeded, "the namespace pings the VM")
        #expect(ipJSON("ip -j -n \(ns) neigh show 10.214.0.2").first?["lladdr"] as? String == "\(mac)")

        // TCP, VM → namespace: the guest's httpd serves 16 MiB, the namespace fetches it.
        let console = GuestConsole(vm.paths)
        let made = console.run("dd if=/dev/urandom of=/tmp/big bs=1M count=16 2>/dev/null; httpd -p 80 -h /tmp; md5sum /tmp/big", timeout: 60)
        let guestSum = made.split(whereSeparator: \.isWhitespace).first { $0.count == 32 }.map(String.init)
        let t0 = Date()
        let fetched = sh("ip netns exec \(ns) python3 -c 'import urllib.request,hashlib; d=urllib.request.urlopen(\"http://10.214.0.2/big\", timeout=120).read(); print(len(d), hashlib.md5(d).hexdigest())'", timeout: 150)
        print(String(format: "  VM → namespace: %@ (guest md5 %@) in %.1f s", fetched.stdout.trimmingCharacters(in: .whitespacesAndNewlines), guestSum ?? "?", Date().timeIntervalSince(t0)))
        #expect(fetched.stdout.hasPrefix("16777216 "), "16 MiB over TCP from the VM: \(fetched.stderr)")
        #expect(guestSum != nil && fetched.stdout.contains(guestSum!), "intact")

        // TCP, namespace → VM: the namespace serves 16 MiB, the guest fetches it.
        let server = sh("ip netns exec \(ns) python3 -m http.server 8000 --bind 10.214.0.1 --directory \(webDir) >/dev/null 2>&1 & echo $!")
        serverPID = Int32(server.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let hostSum = sh("md5sum \(webDir)/big").stdout.split(separator: " ").first.map(String.init) ?? "?"
        usleep(500_000)
        let t1 = Date()
        let got = console.run("wget -q -O /tmp/in http://10.214.0.1:8000/big; wc -c < /tmp/in; md5sum /tmp/in", timeout: 120)
        print(String(format: "  namespace → VM in %.1f s: ", Date().timeIntervalSince(t1)) + got.split(separator: "\n").filter { !$0.isEmpty }.suffix(3).joined(separator: " | "))
        #expect(got.contains("16777216"), "16 MiB over TCP into the VM")
        #expect(got.contains(hostSum), "intact")
        let s = xc.statistics
        print("  frames VM→ns \(s.aToB) ns→VM \(s.bToA), refused \(s.droppedAtB)/\(s.droppedAtA); port \(port.statistics)")

        // kill -9: QEMU is restarted (on-failure) and the port connects to the new QEMU.
        let firstPID = try #require(vm.status.pid)
        kill(firstPID, SIGKILL)
        #expect(waitFor(timeout: 40) { vm.status.restarts == 1 && vm.status.state == .running }, "restarted (\(vm.status))")
        #expect(waitFor(timeout: 10) { port.statistics.connections >= 2 && port.isRunning }, "the port reconnected: \(port.statistics)")
        sh("ip -n \(ns) neigh flush dev \(p)tap")
        #expect(sh("ip netns exec \(ns) ping -c 3 -i 0.3 -W 3 10.214.0.2", timeout: 30).succeeded, "the restarted VM answers")
        #expect(port.statistics.resets.isEmpty, "no reset: \(port.statistics.resets)")
    }

    /// Two VMs on vhost-user reach each other through two ports patched together.
    @Test func twoVMsReachEachOther() throws {
        if let reason = Self.skipReason { try Test.cancel("QEMUTests skipped: \(reason)") }
        let image = try Self.image()
        let p = Capabilities.uniquePrefix("vhq")
        let runDir = "/tmp/\(p)-run"
        sh("mkdir -p \(runDir)")
        defer { sh("rm -rf \(runDir)") }
        let sockA = "\(runDir)/\(p)a.eth0.sock", sockB = "\(runDir)/\(p)b.eth0.sock"
        let portA = try VhostUserPort(name: "\(p)a.eth0", socketPath: sockA, mode: .client, log: { print("  \($0)") })
        let portB = try VhostUserPort(name: "\(p)b.eth0", socketPath: sockB, mode: .client, log: { print("  \($0)") })
        defer { portA.close(); portB.close() }
        let xc = try CrossConnect(portA, portB)
        xc.start()
        defer { xc.stop() }
        let a = try boot("\(p)a", mac: MACAddress("52:54:00:7e:59:01")!, socket: sockA, ip: "10.215.0.1/24", runDir: runDir, image: image)
        let b = try boot("\(p)b", mac: MACAddress("52:54:00:7e:59:02")!, socket: sockB, ip: "10.215.0.2/24", runDir: runDir, image: image)
        defer { a.stop(gracePeriod: 5); b.stop(gracePeriod: 5) }
        let started = Date()
        let bootB = Thread { try? b.start() }
        bootB.start()
        try a.start()
        #expect(waitFor(timeout: 90) { b.status.state == .running }, "both booted")
        print("  both booted in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        let out = GuestConsole(a.paths).run("ping -c 3 -W 3 10.215.0.2", timeout: 30)
        #expect(out.contains("64 bytes from 10.215.0.2: seq=2 ttl=64"), "VM a pings VM b: \(out)")
        let back = GuestConsole(b.paths).run("ping -c 2 -W 3 10.215.0.1", timeout: 30)
        #expect(back.contains("64 bytes from 10.215.0.1: seq=1 ttl=64"), "and back: \(back)")
        // TCP between the two guests: b fetches 16 MiB from a's httpd (TSO frames both ways).
        _ = GuestConsole(a.paths).run("dd if=/dev/urandom of=/tmp/big bs=1M count=16 2>/dev/null; httpd -p 80 -h /tmp; md5sum /tmp/big", timeout: 60)
        let t0 = Date()
        let fetched = GuestConsole(b.paths).run("wget -q -O /tmp/in http://10.215.0.1/big; wc -c < /tmp/in", timeout: 120)
        let seconds = Date().timeIntervalSince(t0)
        #expect(fetched.contains("16777216"), "16 MiB from VM a to VM b")
        print(String(format: "  TCP VM a → VM b: 16 MiB in %.1f s (%.0f Mb/s, TCG guests)", seconds, 16 * 8.388608 / seconds))
        let s = xc.statistics
        print("  frames a→b \(s.aToB) b→a \(s.bToA)")
        #expect(s.aToB >= 3 && s.bToA >= 3)
    }
}

/// Runs shell commands on a guest's serial console (QEMU's console socket) and returns what
/// the guest printed, read from the console log up to an end marker.
struct GuestConsole {
    let paths: VMPaths
    init(_ paths: VMPaths) { self.paths = paths }

    /// Runs `command` in the guest's shell and returns what it printed ("" when it did not
    /// finish within `timeout` s); see `guestConsoleRun`.
    func run(_ command: String, timeout: Double) -> String {
        guestConsoleRun(socket: paths.consoleSocket, command: command, timeout: Int(timeout)) ?? ""
    }
}

func waitFor<T>(timeout: TimeInterval, _ probe: () -> T?) -> T? {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let v = probe() { return v }
        usleep(100_000)
    }
    return probe()
}

func waitFor(timeout: TimeInterval, _ probe: () -> Bool) -> Bool {
    waitFor(timeout: timeout) { probe() ? true : nil } ?? false
}

/// A thread-safe counter for callbacks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// Live migration between two QEMU processes on this machine, each NIC on its own
/// vhost-user port, while the guest downloads 48 MiB (our port writes its RX buffers the
/// whole time): the file that arrives in the migrated guest must be intact, which it is only
/// if every guest page the port wrote during the migration was logged and copied again.
///
/// Opt-in (`TAPESTRY_TEST_MIGRATION=1`): the migrated guest sometimes comes up with corrupted
/// memory (kernel "list_add corruption", "Bad rss-counter state") — 2 of 4 runs here — and the
/// cause is not established. A control run (`VHT_TAP_CONTROL=1`: the download over a plain TAP
/// NIC, the guest's vhost-user NIC idle, so this backend writes no frames) corrupted 2 of 4
/// guests too, while guests with TAP NICs only and no memfd memory passed 3 of 3, which points
/// at QEMU 7.2/TCG migrating a shared-memfd guest. A further control settled it: a guest with
/// one TAP NIC and no vhost-user device at all, its RAM forced to the same shared memfd (a
/// build whose QEMU argv adds `memory-backend-memfd,share=on` for it), broke in 3 of 4
/// migrations with the download running (unresponsive or a wrong checksum), so QEMU 7.2 under
/// TCG loses pages of shared memory written during a migration, with or without this backend.
/// Runs that pass prove the backend's logging: with dirty logging switched off in this backend
/// the file arrived corrupted every time.
@Suite(.serialized) struct MigrationTests {
    @Test func liveMigrationWithTrafficKeepsGuestMemoryIntact() throws {
        if let reason = QEMUTests.skipReason { try Test.cancel("MigrationTests skipped: \(reason)") }
        if getenv("TAPESTRY_TEST_MIGRATION") == nil {
            try Test.cancel("MigrationTests skipped: opt-in (TAPESTRY_TEST_MIGRATION=1); some migrated memfd guests come up corrupted under QEMU 7.2/TCG, cause not established (see the suite's comment)")
        }
        let image = try QEMUTests.image()
        let p = Capabilities.uniquePrefix("vhm")
        let ns = "\(p)ns", runDir = "/tmp/\(p)-run", webDir = "/tmp/\(p)-web"
        sh("mkdir -p \(runDir) \(webDir) && dd if=/dev/urandom of=\(webDir)/big bs=1M count=48 2>/dev/null")
        let hostSum = sh("md5sum \(webDir)/big").stdout.split(separator: " ").first.map(String.init) ?? "?"
        var serverPID: Int32 = 0, destPID: Int32 = 0
        defer {
            if serverPID > 0 { kill(serverPID, SIGTERM) }
            if destPID > 0 { kill(destPID, SIGKILL); var st: Int32 = 0; waitpid(destPID, &st, 0) }
            sh("ip netns del \(ns)")
            sh("rm -rf \(runDir) \(webDir)")
        }
        // The "switch": a Linux bridge in the namespace with one TAP per QEMU's port; it moves
        // the guest's MAC to the destination's TAP when the guest announces itself.
        let tapA = try TAPDevice(name: "\(p)ta", vnetHeader: true), tapB = try TAPDevice(name: "\(p)tb", vnetHeader: true)
        defer { tapA.close(); tapB.close() }
        try tapA.enableOffloads(); try tapB.enableOffloads()
        #expect(sh("""
            ip netns add \(ns) && ip -n \(ns) link add br0 type bridge && ip -n \(ns) link set lo up && \
            ip link set \(p)ta netns \(ns) && ip link set \(p)tb netns \(ns) && \
            ip -n \(ns) link set \(p)ta master br0 up && ip -n \(ns) link set \(p)tb master br0 up && \
            ip -n \(ns) addr add 10.216.0.1/24 dev br0 && ip -n \(ns) link set br0 up
            """).succeeded)
        let sockS = "\(runDir)/\(p)s.eth0.sock", sockD = "\(runDir)/\(p)d.eth0.sock"
        let log: @Sendable (String) -> Void = { print("  \($0)") }
        let portS = try VhostUserPort(name: "\(p)s.eth0", socketPath: sockS, mode: .client, log: log)
        let portD = try VhostUserPort(name: "\(p)d.eth0", socketPath: sockD, mode: .client, log: log)
        defer { portS.close(); portD.close() }
        let xcS = try CrossConnect(portS, tapA), xcD = try CrossConnect(portD, tapB)
        xcS.start(); xcD.start()
        defer { xcS.stop(); xcD.stop() }

        let mac = MACAddress("52:54:00:7e:5a:01")!
        let accel = Accel.probe().accel
        // VHT_TAP_CONTROL=1: the same migration with TAP-backed NICs (a control experiment for
        // QEMU itself; not run by default).
        let tapControl = getenv("VHT_TAP_CONTROL") != nil
        let plainA = tapControl ? try TAPDevice(name: "\(p)pa") : nil, plainB = tapControl ? try TAPDevice(name: "\(p)pb") : nil
        defer { plainA?.close(); plainB?.close() }
        if tapControl {
            #expect(sh("ip link set \(p)pa netns \(ns) && ip link set \(p)pb netns \(ns) && ip -n \(ns) link set \(p)pa master br0 up && ip -n \(ns) link set \(p)pb master br0 up").succeeded)
            sh("ip -n \(ns) link set \(p)ta down; ip -n \(ns) link set \(p)tb down")
        }
        func spec(_ socket: String) -> VMSpec {
            let backend: NICBackend = tapControl ? .tap(fd: socket == sockS ? plainA!.fd : 3) : .vhostUser(socketPath: socket)
            var nics = [GuestNIC(mac: mac, backend: backend, addresses: ["10.216.0.2/24"])]
            // The control keeps an idle vhost-user NIC: same shared memory, same vhost device.
            if tapControl { nics.append(GuestNIC(mac: MACAddress("52:54:00:7e:5a:09")!, backend: .vhostUser(socketPath: socket))) }
            return VMSpec(name: "\(p)vm", memoryMiB: 384, nics: nics)
        }
        let source = try VMSupervisor(spec: spec(sockS), image: image, accel: accel, paths: VMPaths(name: "\(p)s", runDirectory: runDir),
                                      restartPolicy: .never, log: log)
        defer { source.stop(gracePeriod: 2) }
        try source.start()
        #expect(sh("ip netns exec \(ns) ping -c 2 -i 0.3 -W 3 10.216.0.2", timeout: 30).succeeded)

        // The destination: the same machine and NIC, waiting for the incoming migration.
        let destPaths = VMPaths(name: "\(p)d", runDirectory: runDir)
        let migrationPort = 47000 + Int(UInt16.random(in: 0...999))
        let args = QEMUCommand(spec: spec(sockD), image: image, accel: accel, paths: destPaths).arguments + ["-incoming", "tcp:127.0.0.1:\(migrationPort)"]
        let destLog = open(destPaths.processLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { close(destLog) }
        guard case .success(let pid) = Spawn.spawn(path: Spawn.which("qemu-system-x86_64")!, arguments: args, stdout: destLog, stderr: destLog,
                                                   inherit: tapControl ? [plainB!.fd] : []) else {
            Issue.record("cannot start the destination QEMU"); return
        }
        destPID = pid
        #expect(tapControl || waitFor(timeout: 20) { portD.statistics.connections == 1 }, "the destination port connected")

        // Traffic: the guest downloads 48 MiB while it migrates; pings run meanwhile.
        let server = sh("ip netns exec \(ns) python3 -m http.server 8000 --bind 10.216.0.1 --directory \(webDir) >/dev/null 2>&1 & echo $!")
        serverPID = Int32(server.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        usleep(500_000)
        _ = GuestConsole(source.paths).run("setsid sh -c 'wget -q -O /tmp/in http://10.216.0.1:8000/big' </dev/null >/dev/null 2>&1 &", timeout: 10)
        usleep(1_000_000)
        let pinger = Thread { _ = sh("ip netns exec \(ns) ping -c 150 -i 0.05 -W 1 10.216.0.2 > \(runDir)/ping.out 2>&1", timeout: 60) }
        pinger.start()

        let qmp = try QMPClient(path: source.paths.qmpSocket)
        defer { qmp.close() }
        // 32 MiB/s: the migration takes a few seconds, all of them with the download running.
        try qmp.execute("migrate-set-parameters", arguments: ["max-bandwidth": 32 << 20])
        let started = Date()
        try qmp.execute("migrate", arguments: ["uri": "tcp:127.0.0.1:\(migrationPort)"])
        var status = ""
        var dirtyBeforeEnd: UInt64 = 0
        _ = waitFor(timeout: 120) {
            let info = (try? qmp.execute("query-migrate")) as? [String: Any] ?? [:]
            status = info["status"] as? String ?? "?"
            if status == "active" { dirtyBeforeEnd = portS.statistics.dirtyLogs }
            return status == "completed" || status == "failed" ? true : nil
        }
        print("  migration \(status) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; source port \(portS.statistics)")
        #expect(status == "completed")
        #expect(tapControl || dirtyBeforeEnd >= 1 || portS.statistics.dirtyLogs >= 1, "QEMU turned dirty logging on for the source port")
        #expect(tapControl || waitFor(timeout: 20) { portD.isRunning }, "the destination's rings run")

        // The download finishes in the migrated guest and its bytes are intact.
        let check = GuestConsole(destPaths).run("while [ $(wc -c < /tmp/in) -lt \(48 << 20) ]; do sleep 1; done; md5sum /tmp/in", timeout: 120)
        print("  destination: \(check.split(separator: "\n").filter { $0.contains("/tmp/in") }.last ?? "?")")
        #expect(check.contains("\(hostSum)  /tmp/in"), "48 MiB intact after the migration (host \(hostSum))")
        _ = waitFor(timeout: 60) { pinger.isFinished ? true : nil }
        let pings = (try? String(contentsOfFile: "\(runDir)/ping.out", encoding: .utf8)) ?? ""
        print("  " + (pings.split(separator: "\n").first { $0.contains("packets transmitted") } ?? "no ping summary"))
        #expect(sh("ip netns exec \(ns) ping -c 3 -i 0.3 -W 3 10.216.0.2", timeout: 30).succeeded, "the migrated guest answers through the destination port")
        #expect(tapControl || xcD.statistics.aToB > 0, "frames from the destination port")
        #expect(portS.statistics.resets.isEmpty && portD.statistics.resets.isEmpty)
    }
}
