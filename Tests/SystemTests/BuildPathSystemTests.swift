import Foundation
import Testing
import TestSupport

/// One build path (`up` is a reload from an empty topology): reload adds and removes QEMU
/// guests and uplinks, and the state file it writes lets `down` clean up after a crash.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct BuildPathSystemTests {
    static func reload(_ lab: RunningTopology, _ text: String, tag: String) -> CommandResult {
        let file = NSTemporaryDirectory() + "tapestry-\(lab.name)-\(tag).yaml"
        try? text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        return Harness.tapestry("reload '\(file)' --name \(lab.name)")
    }

    /// A topology with one VM; a reload adds a netns guest; the daemon is killed with -9;
    /// `down` then finds the QEMU and both namespaces in the state file and removes them.
    @Test(.enabled(if: Harness.hasQEMU, "needs qemu-system-x86_64 (Scripts/setup.sh installs it)"))
    func reloadThenKillThenDownLeavesNothing() throws {
        let p = Capabilities.uniquePrefix("k")
        let base = """
        name: \(p)kd
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
        guests:
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.74.0.1/24}]}
          \(p)v: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: v10, mac: "52:54:00:74:00:02", ip: 10.74.0.2/24}]}
        """
        let lab = RunningTopology(name: "\(p)kd", yaml: base)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr) \(lab.up.stdout)")
        #expect(lab.ping(from: "\(p)n", to: "10.74.0.2", count: 3), "the VM answers")
        let added = base + "\n  \(p)m: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.74.0.3/24}]}\n"
        let r = Self.reload(lab, added, tag: "add")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        #expect(lab.ping(from: "\(p)m", to: "10.74.0.2", count: 2), "the added guest reaches the VM")
        let qemuBefore = VMSystemTests.qemuProcesses(named: ["\(p)v"])
        #expect(qemuBefore.count == 1)
        // The state file after the reload still lists the VM and both namespaces.
        let state = (try? String(contentsOfFile: "/run/tapestry/\(p)kd.state", encoding: .utf8)) ?? ""
        #expect(state.contains("\(p)v") && state.contains("\(p)m") && state.contains("\(p)n"), "state file: \(state)")

        let pid = try #require(lab.daemonPID())
        kill(pid, SIGKILL)
        for _ in 0..<50 where isRunning(pid) { usleep(100_000) }
        let down = Harness.tapestry("down --name \(p)kd")
        #expect(down.succeeded, "\(down.stderr)")
        for _ in 0..<50 where !VMSystemTests.qemuProcesses(named: ["\(p)v"]).isEmpty { usleep(100_000) }
        #expect(VMSystemTests.qemuProcesses(named: ["\(p)v"]).isEmpty, "no QEMU left")
        let left = Harness.namespaces().filter { $0.hasPrefix(p) }
        #expect(left.isEmpty, "no namespace left: \(left)")
        let runFiles = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/tapestry")) ?? []).filter { $0.hasPrefix("\(p)kd") }
        #expect(runFiles.isEmpty, "nothing of the instance left in /run/tapestry: \(runFiles)")
    }

    /// Reload adds a QEMU guest to a running topology (it boots and answers), and removes it
    /// again (its QEMU stops), while a netns guest keeps its port.
    @Test(.enabled(if: Harness.hasQEMU, "needs qemu-system-x86_64 (Scripts/setup.sh installs it)"))
    func reloadAddsAndRemovesAVM() throws {
        let p = Capabilities.uniquePrefix("q")
        let base = """
        name: \(p)rv
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
        guests:
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.75.0.1/24}]}
        """
        let lab = RunningTopology(name: "\(p)rv", yaml: base)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let withVM = base + "\n  \(p)v: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: v10, ip: 10.75.0.2/24}]}\n"
        let add = Self.reload(lab, withVM, tag: "vm")
        #expect(add.succeeded, "reload adding a VM: \(add.stderr)")
        #expect(VMSystemTests.qemuProcesses(named: ["\(p)v"]).count == 1)
        #expect(lab.ping(from: "\(p)n", to: "10.75.0.2", count: 3), "the added VM answers")
        let remove = Self.reload(lab, base, tag: "novm")
        #expect(remove.succeeded, "reload removing the VM: \(remove.stderr)")
        for _ in 0..<100 where !VMSystemTests.qemuProcesses(named: ["\(p)v"]).isEmpty { usleep(100_000) }
        #expect(VMSystemTests.qemuProcesses(named: ["\(p)v"]).isEmpty, "its QEMU stopped")
        #expect(!lab.ports().contains { $0["name"] as? String == "\(p)v.eth0" }, "its port is gone")
    }

    /// Reload adds uplinks to a switch that had none (a veth "NIC" whose peer sits in an
    /// upstream namespace), traffic leaves by it, and a reload removes it again.
    @Test func reloadAddsAndRemovesUplinks() throws {
        let p = Capabilities.uniquePrefix("u")
        let nic = "\(p)nic0", peer = "\(p)peer0", up = "\(p)up"
        sh("ip netns add \(up) && ip link add \(nic) type veth peer name \(peer) && ip link set \(peer) netns \(up) && ip -n \(up) addr add 10.76.0.9/24 dev \(peer) && ip -n \(up) link set \(peer) up && ip -n \(up) link set lo up")
        defer { sh("ip link del \(nic) 2>/dev/null; ip netns del \(up) 2>/dev/null") }
        let base = """
        name: \(p)ru
        switches:
          sw0:
            port-groups:
              lan: {vlan: none}
        guests:
          \(p)g: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.76.0.1/24}]}
        """
        let withUplink = base.replacingOccurrences(of: "    port-groups:", with: "    uplinks: {nics: [\(nic)]}\n    port-groups:")
        let lab = RunningTopology(name: "\(p)ru", yaml: base)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(!lab.ping(from: "\(p)g", to: "10.76.0.9", count: 1), "no uplink yet: the outside is unreachable")
        let add = Self.reload(lab, withUplink, tag: "uplink")
        #expect(add.succeeded, "reload adding an uplink: \(add.stderr)")
        #expect(lab.ports().contains { $0["name"] as? String == nic && $0["kind"] as? String == "uplink" })
        #expect(lab.ping(from: "\(p)g", to: "10.76.0.9", count: 3), "the guest reaches the outside through the new uplink")
        let remove = Self.reload(lab, base, tag: "nouplink")
        #expect(remove.succeeded, "reload removing the uplink: \(remove.stderr)")
        #expect(!lab.ports().contains { $0["name"] as? String == nic })
        #expect(!lab.ping(from: "\(p)g", to: "10.76.0.9", count: 1), "the outside is unreachable again")
    }
}
