import Foundation
import Testing
import TestSupport

/// A port whose device goes away goes down — counted in `ports`, out of the poll set — while
/// the rest keeps forwarding, and `reload` re-creates it. Every way the device can vanish:
/// deleted inside the guest, the guest's namespace deleted, moved to another namespace, and a
/// VM's TAP netdev deleted while QEMU holds it.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct PortVanishSystemTests {
    static func yaml(_ p: String) -> String {
        """
        name: \(p)pv
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.77.1.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.77.1.2/24}]}
          \(p)c: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.77.1.3/24}]}
        """
    }

    /// CPU ticks (1/100 s) the daemon's datapath threads used so far.
    static func datapathTicks(_ pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var total = 0
        for t in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/comm", encoding: .utf8), comm.hasPrefix("tapestry-dp"),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            total += (Int(f[11]) ?? 0) + (Int(f[12]) ?? 0)   // utime, stime (fields 14, 15)
        }
        return total
    }

    static func link(_ lab: RunningTopology, _ port: String) -> String {
        (lab.ports().first { $0["name"] as? String == port })?["link"] as? String ?? "?"
    }

    static func waitForLink(_ lab: RunningTopology, _ port: String, prefix: String, seconds: Double = 6) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var l = link(lab, port)
        while !l.hasPrefix(prefix) && Date() < deadline { usleep(100_000); l = link(lab, port) }
        return l
    }

    static func reloadSame(_ lab: RunningTopology) -> CommandResult { Harness.tapestry("reload '\(lab.file)' --name \(lab.name)") }

    @Test(arguments: ["deleted inside the guest", "namespace deleted", "moved to another namespace"])
    func aVanishedPortGoesDownAndReloadBringsItBack(_ how: String) throws {
        let p = Capabilities.uniquePrefix("x")
        let lab = RunningTopology(name: "\(p)pv", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)a", to: "10.77.1.3"), "warm-up")
        let pid = try #require(lab.daemonPID())
        let elsewhere = "\(p)else"
        defer { sh("ip netns del \(elsewhere) 2>/dev/null") }
        switch how {
        case "deleted inside the guest": sh("ip -n \(p)c link del eth0")
        case "namespace deleted": sh("ip netns del \(p)c")
        default: sh("ip netns add \(elsewhere) && ip -n \(p)c link set eth0 netns \(elsewhere)")
        }
        let expected = how.hasPrefix("moved") ? "down (device-moved)" : "down (device-gone)"
        #expect(Self.waitForLink(lab, "\(p)c.eth0", prefix: "down") == expected, "ports shows the port down with its reason")
        // The datapath does not spin on the dead port (it was at ~95% of a core per thread).
        let before = Self.datapathTicks(pid)
        sleep(3)
        let used = Self.datapathTicks(pid) - before
        #expect(used < 60, "datapath threads used \(used) ticks (1/100 s) in 3 s: they must be idle")
        // The others keep forwarding.
        #expect(lab.ping(from: "\(p)a", to: "10.77.1.2", count: 3))
        // reload re-creates the vanished port; the guest is reachable again.
        if how == "namespace deleted" { #expect(!Harness.namespaces().contains("\(p)c")) }
        let r = Self.reloadSame(lab)
        #expect(r.succeeded, "reload: \(r.stderr)")
        #expect(Self.link(lab, "\(p)c.eth0") == "up")
        #expect(lab.ping(from: "\(p)a", to: "10.77.1.3", count: 3), "the re-created guest answers")
        let down = Harness.tapestry("down --name \(p)pv")
        #expect(down.succeeded, "down: \(down.stderr)")
        #expect(Harness.namespaces().filter { $0.hasPrefix(p) && $0 != elsewhere }.isEmpty)
    }

    /// A VM on `backend: tap` whose TAP netdev is deleted on the host while QEMU and the switch
    /// both hold its fd: the port goes down (`device-gone`), the datapath does not spin, the
    /// netns guests keep forwarding, and `reload` brings the VM's port back with a new TAP
    /// (QEMU's old one is dead, so the VM is started again on it) and the VM answers.
    @Test func aVMsTAPDeletedUnderQEMU() throws {
        guard Harness.hasQEMU else { try Test.cancel("needs qemu-system-x86_64 (Scripts/setup.sh installs it)") }
        let p = Capabilities.uniquePrefix("x")
        let yaml = """
        name: \(p)pt
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.77.2.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.77.2.2/24}]}
          \(p)vm: {kind: qemu, memory: 128M, nics: [{switch: sw0, port-group: v10, backend: tap, mac: "52:54:00:77:02:0a", ip: 10.77.2.10/24}]}
        """
        let lab = RunningTopology(name: "\(p)pt", yaml: yaml)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)a", to: "10.77.2.10"), "warm-up: the VM answers")
        let pid = try #require(lab.daemonPID())
        let tap = expectedHostTAPName(topology: "\(p)pt", guest: "\(p)vm", nic: 0)
        let del = sh("ip link del \(tap)")
        try #require(del.succeeded, "ip link del \(tap): \(del.stderr)")
        #expect(Self.waitForLink(lab, "\(p)vm.eth0", prefix: "down") == "down (device-gone)", "ports shows the VM's port down with its reason")
        let before = Self.datapathTicks(pid)
        sleep(3)
        let used = Self.datapathTicks(pid) - before
        #expect(used < 60, "datapath threads used \(used) ticks (1/100 s) in 3 s: they must be idle")
        #expect(lab.ping(from: "\(p)a", to: "10.77.2.2", count: 3), "the netns guests keep forwarding")
        #expect(!lab.ping(from: "\(p)a", to: "10.77.2.10", count: 1), "the VM is unreachable without its TAP")
        let r = Self.reloadSame(lab)
        #expect(r.succeeded, "reload: \(r.stderr)")
        #expect(Self.link(lab, "\(p)vm.eth0") == "up")
        let links = sh("ip -o link show").stdout
        #expect(links.contains(" \(tap):") || links.contains(" \(tap)@"), "the TAP is there again")
        var back = false
        let t0 = Date()
        while !back && Date().timeIntervalSince(t0) < 60 { back = lab.ping(from: "\(p)a", to: "10.77.2.10", count: 1) }
        #expect(back, "the VM answers again after reload")
        let down = Harness.tapestry("down --name \(p)pt")
        #expect(down.succeeded, "down: \(down.stderr)")
    }
}
