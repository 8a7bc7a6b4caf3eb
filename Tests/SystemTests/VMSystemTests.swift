import Foundation
import Testing
import TestSupport

/// QEMU guests attached to switch ports (TCG here: boots take seconds, so one topology is
/// shared by the checks, in order). VM a keeps the TAP backend (`backend: tap`), so the TAP
/// path stays covered now that vhost-user is the default (VM b, and VhostUserSystemTests).
@Suite(.serialized, .enabled(if: Harness.enabled && Harness.hasQEMU, "needs root, /dev/net/tun and qemu-system-x86_64 (Scripts/setup.sh installs it)"))
struct VMSystemTests {
    static func qemuProcesses(named names: [String]) -> [String] {
        sh("ps -eo pid,args").stdout.split(separator: "\n").map(String.init).filter { line in
            line.contains("qemu-system") && names.contains { line.contains("-name \($0) ") }
        }
    }

    @Test func vmsBootPingRestartAndStop() throws {
        let p = Capabilities.uniquePrefix("v")
        let yaml = """
        name: \(p)vm
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
              v20: {vlan: 20}
        guests:
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.71.0.1/24}]}
          \(p)a: {kind: qemu, memory: 256M, restart: on-failure, nics: [{switch: sw0, port-group: v10, mac: "52:54:00:71:00:02", ip: 10.71.0.2/24, backend: tap}]}
          \(p)b: {kind: qemu, memory: 256M, restart: on-failure, nics: [{switch: sw0, port-group: v20, mac: "52:54:00:71:00:03", ip: 10.71.0.3/24}]}
        """
        let names = ["\(p)a", "\(p)b"]
        var taps: [String] = []
        do {
            let t = RunningTopology(name: "\(p)vm", yaml: yaml)
            try #require(t.up.succeeded, "up failed: \(t.up.stderr) \(t.up.stdout)")
            #expect(Self.qemuProcesses(named: names).count == 2, "one QEMU per VM, named after it")

            // The netns guest reaches the VM in its VLAN; the VM's MAC is the declared one.
            #expect(t.ping(from: "\(p)n", to: "10.71.0.2", count: 3))
            #expect(t.exec("\(p)n", "ip neigh show 10.71.0.2").stdout.contains("52:54:00:71:00:02"))
            // The VM in VLAN 20 is unreachable, though in the same subnet.
            #expect(!t.ping(from: "\(p)n", to: "10.71.0.3", count: 2))

            // status / vm list show both running, with pid and accel.
            let list = Harness.tapestry("vm list --name \(p)vm --json")
            let vms = ((try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8))) as? [String: Any])?["vms"] as? [[String: Any]] ?? []
            #expect(vms.count == 2 && vms.allSatisfy { $0["state"] as? String == "running" && $0["pid"] != nil }, "\(list.stdout)")
            #expect(vms.allSatisfy { ["tcg", "kvm"].contains($0["accel"] as? String ?? "") })
            let backends = Dictionary(uniqueKeysWithValues: t.ports().map { ($0["name"] as? String ?? "", $0["backend"] as? String ?? "") })
            #expect(backends["\(p)a.eth0"] == "tap" && backends["\(p)b.eth0"] == "vhost-user", "\(backends)")
            // The TAP-backed VM's TAP, by name (other tests' TAPs come and go meanwhile).
            taps = [expectedHostTAPName(topology: "\(p)vm", guest: "\(p)a", nic: 0)]
            let running = sh("ip -o link show").stdout
            #expect(taps.allSatisfy { running.contains(" \($0):") || running.contains(" \($0)@") }, "the TAP exists while the VM runs: \(taps)")

            // kill -9 the VM: restart on-failure brings it back on the same port, same MAC.
            let pid = (vms.first { $0["name"] as? String == "\(p)a" }?["pid"] as? NSNumber)?.int32Value ?? 0
            try #require(pid > 0)
            kill(pid, SIGKILL)
            let start = Date()
            var back = false
            while Date().timeIntervalSince(start) < 90 {
                if t.exec("\(p)n", "ping -c 1 -W 1 10.71.0.2").succeeded { back = true; break }
            }
            let took = Date().timeIntervalSince(start)
            print("vm restart: pingable again \(String(format: "%.1f", took)) s after kill -9")
            #expect(back, "the VM came back after kill -9")
            #expect(t.exec("\(p)n", "ip neigh show 10.71.0.2").stdout.contains("52:54:00:71:00:02"), "same MAC")
            let after = ((try? JSONSerialization.jsonObject(with: Data(Harness.tapestry("vm list --name \(p)vm --json").stdout.utf8))) as? [String: Any])?["vms"] as? [[String: Any]] ?? []
            let a = after.first { $0["name"] as? String == "\(p)a" }
            #expect((a?["restarts"] as? NSNumber)?.intValue == 1)
            #expect((a?["pid"] as? NSNumber)?.int32Value != pid)

            // vm stop: powered down, not restarted.
            let stop = Harness.tapestry("vm stop \(p)b --name \(p)vm")
            #expect(stop.succeeded, "\(stop.stderr)")
            #expect(Self.qemuProcesses(named: ["\(p)b"]).isEmpty)
            // deinit: down
        }
        // down stopped every QEMU it started and removed their TAPs.
        #expect(Self.qemuProcesses(named: names).isEmpty, "no stray QEMU after down")
        let left = sh("ip -o link show").stdout
        for tap in taps where !tap.isEmpty { #expect(!left.contains(" \(tap):") && !left.contains(" \(tap)@"), "TAP \(tap) removed") }
    }

    /// A VM that does not boot in time: `up --detach` says so, with the console's last lines,
    /// and leaves nothing behind.
    @Test func aVMThatNeverBootsIsReportedAndNothingStays() throws {
        let p = Capabilities.uniquePrefix("v")
        let file = NSTemporaryDirectory() + "tapestry-\(p)-slow.yaml"
        try """
        name: \(p)sl
        switches:
          sw0:
            port-groups:
              lan: {vlan: none}
        guests:
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: lan}]}
          \(p)s: {kind: qemu, nics: [{switch: sw0, port-group: lan}]}
        """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file); Harness.tapestry("down --name \(p)sl") }
        let up = sh("TAPESTRY_VM_BOOT_TIMEOUT=1 '\(Harness.binary)' up '\(file)' --detach", timeout: 120)
        #expect(!up.succeeded)
        #expect(up.stderr.contains("VM \(p)s: not ready after 1 s") && up.stderr.contains("Last console lines"), "names the VM, the failure and its console: \(up.stderr)")
        #expect(Self.qemuProcesses(named: ["\(p)s"]).isEmpty, "its QEMU was killed")
        #expect(!Harness.namespaces().contains("\(p)n"), "nothing half-started")
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)sl.vms"), "no VM run directory (console, QMP, pid files) left")
    }
}
