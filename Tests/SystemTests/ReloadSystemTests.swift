import Foundation
import Testing
import TestSupport

/// Live reload (`tapestry reload`, SIGHUP) against real namespaces, TAPs and kernel stacks.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct ReloadSystemTests {
    static func id() -> String { Capabilities.uniquePrefix("r") }

    /// Guests `a`, `b` in VLAN 10, `d` in VLAN 20 (same subnet: only the switch separates
    /// them); `extra` is spliced into the guest list; `edit` rewrites the whole text.
    static func yaml(_ p: String, bGroup: String = "v10", v20: String = "20", extra: String = "") -> String {
        """
        name: \(p)rl
        switches:
          sw0:
            port-groups:
              v10: {vlan: 10}
              v20: {vlan: \(v20)}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:03:00:01", ip: 10.3.0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: \(bGroup), mac: "02:00:00:03:00:02", ip: 10.3.0.2/24}]}
          \(p)d: {kind: netns, nics: [{switch: sw0, port-group: v20, mac: "02:00:00:03:00:04", ip: 10.3.0.4/24}]}
        \(extra)
        """
    }

    static func withC(_ p: String) -> String {
        yaml(p, extra: "  \(p)c: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: \"02:00:00:03:00:03\", ip: 10.3.0.3/24}]}")
    }

    /// Writes `text` to a file of its own and reloads `lab` from it.
    @discardableResult
    static func reload(_ lab: RunningTopology, _ text: String, tag: String = "next") -> CommandResult {
        let file = NSTemporaryDirectory() + "tapestry-\(lab.name)-\(tag).yaml"
        try? text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        return Harness.tapestry("reload '\(file)' --name \(lab.name)")
    }

    static func portNames(_ lab: RunningTopology) -> [String] { lab.ports().compactMap { $0["name"] as? String }.sorted() }

    static func counter(_ lab: RunningTopology, _ port: String, _ key: String) -> Int {
        ((lab.ports().first { $0["name"] as? String == port })?[key] as? NSNumber)?.intValue ?? -1
    }

    @Test func untouchedTrafficLosesNothingWhileGuestsComeAndGo() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rl", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)a", to: "10.3.0.2"), "warm-up ping")
        let out = NSTemporaryDirectory() + "tapestry-\(p)-ping.txt"
        defer { unlink(out) }
        // 200 echo requests 10 ms apart (about 2 s) while the topology changes twice.
        sh("(ip netns exec \(p)a ping -c 200 -i 0.01 -W 2 10.3.0.2 >\(out) 2>&1 &)")
        usleep(300_000)
        let t0 = Date()
        let add = Self.reload(lab, Self.withC(p), tag: "add")
        let addTime = Date().timeIntervalSince(t0)
        #expect(add.succeeded, "\(add.stderr)")
        #expect(add.stdout.contains("guests +\(p)c"), "\(add.stdout)")
        let t1 = Date()
        let remove = Self.reload(lab, Self.yaml(p), tag: "remove")
        let removeTime = Date().timeIntervalSince(t1)
        #expect(remove.succeeded, "\(remove.stderr)")
        #expect(remove.stdout.contains("guests -\(p)c"), "\(remove.stdout)")
        var text = ""
        for _ in 0..<200 {
            text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if text.contains("packet loss") { break }
            usleep(50_000)
        }
        print("reload timings: add \(String(format: "%.3f", addTime)) s, remove \(String(format: "%.3f", removeTime)) s; ping: \(text.split(separator: "\n").suffix(2).joined(separator: " | "))")
        #expect(text.contains("200 packets transmitted, 200 received, 0% packet loss"), "\(text.suffix(300))")
        // Counters of the untouched ports survived both swaps (≥ warm-up + 200 requests).
        #expect(Self.counter(lab, "\(p)a.eth0", "rx_frames") >= 200)
        #expect(Self.counter(lab, "\(p)b.eth0", "tx_frames") >= 200)
        // And the learned MACs too: both ends are still in the table.
        let fdb = Harness.tapestry("fdb --name \(p)rl --vlan 10").stdout
        #expect(fdb.contains("02:00:00:03:00:01") && fdb.contains("02:00:00:03:00:02"), "\(fdb)")
    }

    @Test func addedGuestAppearsAndRemovedGuestDisappears() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rl", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let add = Self.reload(lab, Self.withC(p))
        try #require(add.succeeded, "\(add.stderr)")
        #expect(Harness.namespaces().contains("\(p)c"))
        #expect(lab.ping(from: "\(p)c", to: "10.3.0.1"), "the new guest reaches its VLAN 10 peer")
        #expect(!lab.ping(from: "\(p)c", to: "10.3.0.4", count: 1), "and not VLAN 20")
        #expect(Self.portNames(lab).contains("\(p)c.eth0"))
        let state = (try? String(contentsOfFile: "/run/tapestry/\(p)rl.state", encoding: .utf8)) ?? ""
        #expect(state.contains("\"\(p)c\""), "the state file records the new namespace: \(state)")
        let status = Harness.tapestry("status --name \(p)rl").stdout
        #expect(status.contains("\(p)c.eth0"), "\(status)")

        let remove = Self.reload(lab, Self.yaml(p))
        try #require(remove.succeeded, "\(remove.stderr)")
        #expect(!Harness.namespaces().contains("\(p)c"), "namespace removed")
        #expect(!Self.portNames(lab).contains("\(p)c.eth0"), "port removed")
        #expect(Self.portNames(lab) == ["\(p)a.eth0", "\(p)b.eth0", "\(p)d.eth0"].sorted())
        let after = (try? String(contentsOfFile: "/run/tapestry/\(p)rl.state", encoding: .utf8)) ?? ""
        #expect(!after.contains("\"\(p)c\""), "\(after)")
        #expect(lab.ping(from: "\(p)a", to: "10.3.0.2"))
        let same = Self.reload(lab, Self.yaml(p))
        #expect(same.succeeded && same.stdout.contains("no changes"), "\(same.stdout)\(same.stderr)")
    }

    @Test func brokenFileIsRejectedAndChangesNothing() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rl", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let before = Self.portNames(lab)
        // Only this test's names: other suites create namespaces in parallel.
        func ours() -> Set<String> { Harness.namespaces().filter { $0.hasPrefix(p) } }
        let namespaces = ours()
        let file = NSTemporaryDirectory() + "tapestry-\(p)-broken.yaml"
        defer { unlink(file) }
        try Self.withC(p).replacingOccurrences(of: "v20: {vlan: 20}", with: "v20: {vlan: 5000}")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = Harness.tapestry("reload '\(file)' --name \(p)rl")
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(file):6:"), "located error: \(r.stderr)")
        #expect(r.stderr.contains(": error: "), "\(r.stderr)")
        // The daemon itself also refuses an invalid file sent past the CLI.
        let raw = sh("printf '%s\\n' '{\"command\":\"reload\",\"file\":\"\(file)\"}' | timeout 10 /usr/bin/python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/tapestry/\(p)rl.sock'); s.sendall(sys.stdin.buffer.read()); import json; print(json.loads(s.recv(65536))['error'])\"")
        #expect(raw.stdout.contains("\(file):6:") && raw.stdout.contains("error"), "daemon reply: \(raw.stdout) \(raw.stderr)")
        // A renamed topology is refused too.
        let renamed = Self.reload(lab, Self.yaml(p).replacingOccurrences(of: "name: \(p)rl", with: "name: \(p)xx"))
        #expect(renamed.status == 1 && renamed.stderr.contains("cannot be renamed"), "\(renamed.stderr)")
        // An added guest whose namespace is taken: refused by name before anything changes.
        sh("ip netns add \(p)c")
        defer { sh("ip netns del \(p)c") }
        let taken = Self.reload(lab, Self.withC(p).replacingOccurrences(of: "v10: {vlan: 10}", with: "v10: {vlan: 11}"))
        #expect(taken.status == 1 && taken.stderr.contains("network namespace '\(p)c' already exists"), "\(taken.stderr)")

        #expect(Self.portNames(lab) == before, "same ports")
        #expect(ours() == namespaces.union(["\(p)c"]))
        let status = Harness.tapestry("status --name \(p)rl").stdout
        #expect(status.contains("vlans 10,20"), "the port groups are unchanged: \(status)")
        #expect(lab.ping(from: "\(p)a", to: "10.3.0.2"), "still forwarding")
        #expect(!lab.ping(from: "\(p)a", to: "10.3.0.4", count: 1))
    }

    @Test func sighupReloadsTheFileTheInstanceStartedFrom() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rl", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let status = Harness.tapestry("status --name \(p)rl --json").stdout
        let pid = try #require(((try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])?["pid"] as? NSNumber)?.int32Value)
        // An invalid file: logged, nothing changes, the daemon keeps running.
        try "name: \(p)rl\nswitches: [\n".write(toFile: lab.file, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        let log = "/var/log/tapestry/\(p)rl/daemon.log"
        var text = ""
        for _ in 0..<100 {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains("SIGHUP: reload of") { break }
            usleep(50_000)
        }
        #expect(text.contains("failed, nothing changed") && text.contains("\(lab.file):"), "\(text)")
        #expect(isRunning(pid))
        #expect(lab.ping(from: "\(p)a", to: "10.3.0.2"))
        // A valid change: applied.
        try Self.withC(p).write(toFile: lab.file, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        for _ in 0..<200 {
            if Harness.namespaces().contains("\(p)c") && Self.portNames(lab).contains("\(p)c.eth0") { break }
            usleep(50_000)
        }
        #expect(Self.portNames(lab).contains("\(p)c.eth0"))
        #expect(lab.ping(from: "\(p)c", to: "10.3.0.2"))
        text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("SIGHUP: reloaded \(lab.file): guests +\(p)c"), "\(text)")
    }

    @Test func vlanChangesTakeEffect() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rl", yaml: Self.yaml(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        #expect(lab.ping(from: "\(p)b", to: "10.3.0.1"))
        #expect(!lab.ping(from: "\(p)b", to: "10.3.0.4", count: 1))

        // b's NIC moves to port group v20: b is re-created in VLAN 20.
        let move = Self.reload(lab, Self.yaml(p, bGroup: "v20"))
        try #require(move.succeeded, "\(move.stderr)")
        #expect(move.stdout.contains("guests ~\(p)b"), "\(move.stdout)")
        #expect(lab.ping(from: "\(p)b", to: "10.3.0.4"), "b reaches its new VLAN 20 peer")
        #expect(!lab.ping(from: "\(p)b", to: "10.3.0.1", count: 1), "and no longer VLAN 10")
        let ports = Harness.tapestry("ports --name \(p)rl").stdout
        #expect(ports.split(separator: "\n").contains { $0.contains("\(p)b.eth0") && $0.contains("access 20") }, "\(ports)")

        // The port group v20 itself moves to VLAN 10: b and d keep their namespaces and TAPs
        // (a switch change), and now share VLAN 10 with a.
        let pid = sh("ip netns exec \(p)d sh -c 'sleep 60 >/dev/null 2>&1 & echo $!'").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { if let n = Int32(pid) { kill(n, SIGKILL) } }
        let regroup = Self.reload(lab, Self.yaml(p, bGroup: "v20", v20: "10"))
        try #require(regroup.succeeded, "\(regroup.stderr)")
        #expect(regroup.stdout.contains("switches ~sw0") && !regroup.stdout.contains("guests"), "\(regroup.stdout)")
        #expect(lab.ping(from: "\(p)b", to: "10.3.0.1"), "VLAN 10 peers now reachable")
        #expect(lab.ping(from: "\(p)d", to: "10.3.0.1"))
        #expect(sh("ip netns identify \(pid)").stdout.contains("\(p)d"), "d's namespace was kept")
    }
}
