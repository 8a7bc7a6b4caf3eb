import Foundation
import Testing
import TestSupport

/// The control plane under abuse and accident and the first hour of a
/// new user, against the real binary, namespaces and kernel.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct ControlPlaneSystemTests {
    static func id() -> String { Capabilities.uniquePrefix("k") }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func files(_ dir: String, prefix p: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(p) || $0.hasPrefix(".\(p)") }.sorted()
    }

    /// `n` netns guests on one switch, named PREFIX + g0…
    static func manyGuests(_ p: String, _ n: Int) -> String {
        "name: \(p)race\nswitches: {sw0: {port-groups: {g: {vlan: 10}}}}\nguests:\n"
            + (0..<n).map { "  \(p)g\($0): {kind: netns, nics: [{switch: sw0, port-group: g, ip: 10.44.0.\($0 + 1)/24}]}" }.joined(separator: "\n")
    }

    @Test func racingUpsLeaveExactlyOneCompleteInstanceAndLosersTouchNothing() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)race.yaml"
        try Self.manyGuests(p, 20).write(toFile: file, atomically: true, encoding: .utf8)
        let dir = NSTemporaryDirectory() + "tapestry-\(p)race-out"
        defer { Harness.tapestry("down --name \(p)race"); unlink(file); sh("rm -rf '\(dir)' /var/log/tapestry/\(p)race") }
        let guests = Set((0..<20).map { "\(p)g\($0)" })
        for round in 1...3 {
            sh("rm -rf '\(dir)' && mkdir -p '\(dir)'")
            // Four `up` at once, each recording its exit status and stderr.
            sh("for i in 1 2 3 4; do ('\(Harness.binary)' up '\(file)' --detach >'\(dir)/out'$i 2>'\(dir)/err'$i; echo $? >'\(dir)/rc'$i) & done; wait", timeout: 300)
            let rcs = (1...4).map { (try? String(contentsOfFile: "\(dir)/rc\($0)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?" }
            let errs = (1...4).map { (try? String(contentsOfFile: "\(dir)/err\($0)", encoding: .utf8)) ?? "" }
            #expect(rcs.filter { $0 == "0" }.count == 1, "round \(round): exactly one winner: \(rcs) \(errs)")
            for (rc, err) in zip(rcs, errs) where rc != "0" {
                #expect(rc == "1" && err.contains("already running or starting"), "round \(round): a loser says why: \(err)")
            }
            let present = Harness.namespaces().intersection(guests)
            #expect(present.count == 20, "round \(round): the winner has all 20 namespaces (\(present.count))")
            let status = Self.json(Harness.tapestry("status --name \(p)race --json").stdout)
            #expect((status["guests"] as? [[String: Any]])?.count == 20)
            for g in ["\(p)g0", "\(p)g19"] { #expect(sh("ip netns exec \(g) ip -br addr show eth0").stdout.contains("10.44.0."), "\(g) configured") }
            let down = Harness.tapestry("down --name \(p)race")
            #expect(down.succeeded, "\(down.stderr)")
            #expect(Harness.namespaces().intersection(guests).isEmpty, "round \(round): down removes them all")
            #expect(Self.files("/run/tapestry", prefix: "\(p)race").isEmpty, "no state, socket, lock or temporary file left")
        }
    }

    /// Runs `up` inside a private mount namespace where /run/tapestry (and optionally
    /// /var/log/tapestry) is a tiny tmpfs; returns the result and what was left there.
    func upOnTinyRun(_ file: String, run: String, log: String? = nil, prefill: Bool = false) -> (CommandResult, String) {
        let script = """
        set -e
        mkdir -p /run/tapestry /var/log/tapestry
        mount -t tmpfs -o \(run),mode=0700 tapestry-test /run/tapestry
        \(log.map { "mount -t tmpfs -o \($0) tapestry-test /var/log/tapestry" } ?? "")
        \(prefill ? "dd if=/dev/zero of=/run/tapestry/filler bs=4096 count=64 2>/dev/null || true" : "")
        set +e
        '\(Harness.binary)' up '\(file)' --detach
        rc=$?
        # An up that succeeded runs in this private mount namespace only: stop it from here.
        [ $rc -eq 0 ] && '\(Harness.binary)' down --name "$(sed -n 's/^name: *//p' '\(file)')" >/dev/null 2>&1
        echo "LEFT:$(ls -A /run/tapestry | grep -v '^filler$' | tr '\\n' ' ')"
        exit $rc
        """
        let r = sh("unshare -m --propagation private sh -c \"$(cat <<'EOF'\n\(script)\nEOF\n)\"", timeout: 120)
        let left = r.stdout.split(separator: "\n").first { $0.hasPrefix("LEFT:") }.map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) } ?? "?"
        return (r, left)
    }

    @Test(.enabled(if: sh("command -v unshare").succeeded, "needs unshare(1)"))
    func aFullRunDirectoryFailsLoudlyAndLeavesNothing() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)full.yaml"
        try "name: \(p)full\nswitches: {sw0: {port-groups: {g: {vlan: none}}}}\nguests:\n  \(p)f: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file); sh("rm -rf /var/log/tapestry/\(p)full"); Harness.tapestry("down --name \(p)full") }
        // Each case runs out of room at a different write: the lock file (no inode), the
        // state file (an inode for the lock only), the state file's data (the disk full),
        // the control socket (inodes for lock and state only).
        let cases: [(options: String, prefill: Bool, expect: String)] = [
            ("size=1m,nr_inodes=1", false, "\(p)full.lock"),
            ("size=1m,nr_inodes=2", false, "\(p)full.state"),
            ("size=256k", true, "\(p)full.state"),
            ("size=1m,nr_inodes=3", false, "\(p)full.sock"),
        ]
        for c in cases {
            let (r, left) = upOnTinyRun(file, run: c.options, prefill: c.prefill)
            #expect(r.status == 1, "\(c.options): fails (\(r.status)): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains("/run/tapestry/\(c.expect)") && r.stderr.contains("No space left on device"),
                    "\(c.options): names the path and the errno: \(r.stderr)")
            #expect(left.isEmpty, "\(c.options): nothing left in /run/tapestry: '\(left)'")
            #expect(!Harness.namespaces().contains("\(p)f"), "\(c.options): no namespace left")
        }
        // The daemon's log directory full: refused before the daemon starts, nothing left.
        let (r, left) = upOnTinyRun(file, run: "size=1m", log: "size=4k", prefill: false)
        let logFull = r.stderr.contains("/var/log/tapestry/\(p)full") && r.stderr.contains("No space left on device")
        // A 4 KiB tmpfs still takes one small file; then the log's first line fits and up works.
        #expect(logFull || r.status == 0, "\(r.stderr)")
        if logFull { #expect(r.status == 1 && left.isEmpty, "log full: nothing left in /run/tapestry: '\(left)'") }
        // Whatever happened in the private namespace, the real /run/tapestry is untouched.
        #expect(Self.files("/run/tapestry", prefix: "\(p)full").isEmpty)
    }

    @Test func tricklingClientsAreCutOffAndDoNotGrowTheDaemon() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)slow", yaml: "name: \(p)slow\nswitches: {sw0: {port-groups: {g: {vlan: none}}}}\nguests:\n  \(p)s: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n")
        defer { sh("rm -rf /var/log/tapestry/\(p)slow") }
        try #require(lab.up.succeeded, "\(lab.up.stderr)")
        let pid = try #require(lab.daemonPID())
        let before = threadCount(pid)
        // 300 clients, each sending one byte per second and never a newline.
        let path = "/run/tapestry/\(p)slow.sock"
        let clients = (0..<300).map { _ in rawConnect(path) }
        defer { for c in clients { close(c) } }
        var peak = before
        var statusOK = 0
        for second in 0..<4 {
            for c in clients { _ = send(c, second == 0 ? "{" : " ", 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            peak = max(peak, threadCount(pid))
            if Harness.tapestry("status --name \(p)slow").succeeded { statusOK += 1 }
            usleep(1_000_000)
        }
        print("control socket: daemon threads \(before) before, peak \(peak) with 300 trickling clients; status answered \(statusOK)/4")
        #expect(peak <= before + 4, "threads stay bounded: \(before) -> \(peak)")
        #expect(statusOK == 4, "a normal status answers while they trickle")
        // Every trickler was answered with an error (the deadline, or dropped as the oldest
        // waiter when over the limit) and closed.
        let answers = clients.map { readReply($0) }
        #expect(answers.allSatisfy { $0.contains("deadline") || $0.contains("too many control connections") },
                "\(Set(answers.map { String($0.prefix(60)) }))")
        #expect(threadCount(pid) <= before + 1)
    }

    @Test func namesFromTheCommandLineAreCheckedBeforeAnyFileIsRead() throws {
        let p = Self.id()
        // The old hole: `down --name ../../tmp/x` read /tmp/x.state and deleted what it listed.
        let victim = "\(p)victim"
        sh("ip netns add \(victim)")
        defer { sh("ip netns del \(victim)"); unlink("/tmp/\(p)x.state") }
        let planted = "{\"name\":\"x\",\"file\":\"/x\",\"pid\":1,\"processStart\":1,\"namespaces\":[\"\(victim)\"],\"links\":[]}"
        try planted.write(toFile: "/tmp/\(p)x.state", atomically: true, encoding: .utf8)
        let cases: [(args: String, option: String)] = [
            ("down --name ../../tmp/\(p)x", "--name"),
            ("status --name ../../tmp/\(p)x", "--name"),
            ("status --name \(p)ok --host ../etc", "--host"),
            ("ports --switch ../sw", "--switch"),
            ("fdb --switch 'a b'", "--switch"),
            ("fdb --vlan 5000", "--vlan"),
            ("trace --in ../../x --frame src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff", "--in"),
            ("capture --port 'web1.eth0,../x' -w /dev/null", "--port"),
            ("capture --port-group ../g -w -", "--port-group"),
            ("capture --uplink 'a/b' -w -", "--uplink"),
            ("capture --vlan 0 -w -", "--vlan"),
            ("vm start ../x", "VM"),
            ("vm console 'A B'", "VM"),
        ]
        for c in cases {
            let r = Harness.tapestry(c.args)
            #expect(r.status == 2 && r.stderr.contains(c.option), "\(c.args): a usage error naming \(c.option): \(r.status) \(r.stderr)")
        }
        #expect(Harness.namespaces().contains(victim), "nothing listed in the planted file was touched")
        #expect(FileManager.default.fileExists(atPath: "/tmp/\(p)x.state"))
        // File arguments: only readable regular files.
        for (args, what) in [("validate /dev/zero", "not a regular file"), ("up /tmp --detach", "not a regular file"),
                             ("validate /nonexistent-\(p).yaml", "No such file"), ("reload /dev/null", "not a regular file"),
                             ("trace --in a.eth0 --pcap /dev/zero", "not a regular file")] {
            let r = Harness.tapestry(args)
            #expect(r.status != 0 && r.stderr.contains(what), "\(args): \(r.stderr)")
        }
    }

    @Test func invalidEnvironmentOverridesFailBeforeAnythingStarts() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)env.yaml"
        try "name: \(p)env\nswitches: {sw0: {port-groups: {g: {vlan: none}}}}\nguests:\n  \(p)e: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file); Harness.tapestry("down --name \(p)env"); sh("rm -rf /var/log/tapestry/\(p)env") }
        for (variable, value) in [("TAPESTRY_DATAPATH_THREADS", "99"), ("TAPESTRY_DATAPATH_THREADS", "abc"), ("TAPESTRY_DATAPATH_THREADS", "0"),
                                  ("TAPESTRY_BUSY_POLL_US", "abc"), ("TAPESTRY_BUSY_POLL_US", "2000000")] {
            let r = sh("\(variable)=\(value) '\(Harness.binary)' up '\(file)' --detach")
            #expect(r.status == 1 && r.stderr.contains("\(variable)=\(value)"), "\(variable)=\(value): \(r.stderr)")
            #expect(!Harness.namespaces().contains("\(p)e") && Self.files("/run/tapestry", prefix: "\(p)env").isEmpty, "nothing started")
        }
        let ok = sh("TAPESTRY_DATAPATH_THREADS=1 TAPESTRY_BUSY_POLL_US=0 '\(Harness.binary)' up '\(file)' --detach")
        #expect(ok.succeeded, "\(ok.stderr)")
        #expect(Self.json(Harness.tapestry("status --name \(p)env --json").stdout)["datapath_threads"] as? Int == 1)
    }

    @Test func aCrashedInstanceIsNamedAsSuchAndDownCleansUp() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)crash", yaml: "name: \(p)crash\nswitches: {sw0: {port-groups: {g: {vlan: none}}}}\nguests:\n  \(p)c: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n")
        defer { sh("rm -rf /var/log/tapestry/\(p)crash") }
        try #require(lab.up.succeeded, "\(lab.up.stderr)")
        let listed = Self.json(Harness.tapestry("list --json").stdout)
        let row = (listed["instances"] as? [[String: Any]])?.first { $0["name"] as? String == "\(p)crash" }
        #expect(row?["state"] as? String == "running" && row?["pid"] != nil && row?.keys.contains("host") == true, "\(listed)")
        let pid = try #require(lab.daemonPID())
        kill(pid, SIGKILL)
        for _ in 0..<100 where isRunning(pid) { usleep(50_000) }
        let status = Harness.tapestry("status --name \(p)crash")
        #expect(status.status == 1 && status.stderr.contains("crashed") && status.stderr.contains("tapestry down --name \(p)crash"), "\(status.stderr)")
        #expect(status.stderr.contains("/var/log/tapestry/\(p)crash/daemon.log"), "points at the kept log: \(status.stderr)")
        let list = Harness.tapestry("list")
        #expect(list.stdout.split(separator: "\n").contains { $0.contains("\(p)crash") && $0.contains("crashed") }, "\(list.stdout)")
        let log = (try? String(contentsOfFile: "/var/log/tapestry/\(p)crash/daemon.log", encoding: .utf8)) ?? ""
        #expect(log.split(separator: "\n").allSatisfy { $0.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "#, options: .regularExpression) != nil },
                "every log line starts with a timestamp: \(log)")
        let down = Harness.tapestry("down --name \(p)crash")
        #expect(down.succeeded && down.stdout.contains("crashed"), "\(down.stdout) \(down.stderr)")
        #expect(!Harness.namespaces().contains("\(p)c"))
        #expect(!Harness.tapestry("list").stdout.contains("\(p)crash"))
    }

    @Test func versionListAndUsage() {
        let v = Harness.tapestry("--version")
        #expect(v.succeeded && v.stdout.range(of: #"^\d+\.\d+\.\d+"#, options: .regularExpression) != nil, "\(v.stdout)")
        let none = Harness.tapestry("")
        #expect(none.status == 2 && none.stderr.contains("USAGE"), "no command is a usage error: \(none.status)")
        #expect(Harness.tapestry("list --json").stdout.contains("\"schema_version\": 2"))
        #expect(Harness.tapestry("nosuchcommand").status == 2)
    }

    @Test func validateSkipsHostChecksOnRequest() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)nic.yaml"
        try "name: \(p)nic\nswitches:\n  sw0:\n    uplinks: {nics: [\(p)absent0]}\n    port-groups: {g: {vlan: 10}}\nguests:\n  \(p)n: {kind: netns, nics: [{switch: sw0, port-group: g}]}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let strict = Harness.tapestry("validate '\(file)'")
        #expect(strict.status == 1 && strict.stderr.contains("does not exist on this host"), "\(strict.stderr)")
        let relaxed = Harness.tapestry("validate --no-host-checks '\(file)'")
        #expect(relaxed.succeeded && relaxed.stdout.contains("host checks skipped"), "\(relaxed.stdout) \(relaxed.stderr)")
    }

    @Test func portsFindTheirSwitchAndACaptureSpansSwitches() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)two", yaml: """
        name: \(p)two
        switches:
          sw0: {port-groups: {g: {vlan: 10}, t: {vlan: {trunk: [1-4094], native: none}}}}
          sw1: {port-groups: {g: {vlan: 10}}}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: g, ip: 10.45.0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: g, ip: 10.45.0.2/24}]}
          \(p)c: {kind: netns, nics: [{switch: sw1, port-group: g, ip: 10.45.1.1/24}]}
          \(p)d: {kind: netns, nics: [{switch: sw1, port-group: g, ip: 10.45.1.2/24}]}
          \(p)t: {kind: netns, nics: [{switch: sw0, port-group: t}]}
        """)
        defer { sh("rm -rf /var/log/tapestry/\(p)two") }
        try #require(lab.up.succeeded, "\(lab.up.stderr)")
        // status prints the trunk's VLANs as a range, not 4094 numbers.
        let status = Harness.tapestry("status --name \(p)two")
        let line = status.stdout.split(separator: "\n").first { $0.hasPrefix("switch sw0") } ?? ""
        #expect(line.contains("vlans 1-4094") && line.count < 200, "\(line)")
        // trace finds the switch from the port (there are two switches).
        let trace = Harness.tapestry("trace --name \(p)two --in \(p)c.eth0 --frame src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff --json")
        #expect(trace.succeeded && Self.json(trace.stdout)["switch"] as? String == "sw1", "\(trace.stdout) \(trace.stderr)")
        let unknown = Harness.tapestry("trace --name \(p)two --in \(p)zz.eth0 --frame src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff")
        #expect(unknown.status == 1 && unknown.stderr.contains("no switch has a port"), "\(unknown.stderr)")
        // One capture over a port of each switch, while both switches carry pings.
        let out = NSTemporaryDirectory() + "tapestry-\(p)two.pcapng"
        defer { unlink(out) }
        let cap = sh("('\(Harness.binary)' capture --name \(p)two --port \(p)a.eth0,\(p)c.eth0 --duration 4 -w '\(out)' 2>'\(out).err' &) ; sleep 1; "
                     + "ip netns exec \(p)a ping -c 2 -i 0.3 -W 1 10.45.0.2 >/dev/null; ip netns exec \(p)c ping -c 2 -i 0.3 -W 1 10.45.1.2 >/dev/null; sleep 4; cat '\(out).err'", timeout: 60)
        unlink(out + ".err")
        #expect(cap.stdout.contains("frame(s) captured"), "\(cap.stdout)")
        if Harness.hasTshark {
            let names = Set(sh("tshark -r '\(out)' -T fields -e frame.interface_name 2>/dev/null").stdout.split(separator: "\n").map(String.init))
            #expect(names == ["\(p)a.eth0", "\(p)c.eth0"], "frames from both switches' ports: \(names)")
        }
    }
}

/// A raw client connected to `path` (5 s receive timeout).
func rawConnect(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// What the server sent before closing (or 5 s).
func readReply(_ fd: Int32) -> String {
    var out = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Threads of process `pid` (/proc/PID/status).
func threadCount(_ pid: Int32) -> Int {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").first { $0.hasPrefix("Threads:") }.flatMap { Int($0.dropFirst(8).trimmingCharacters(in: .whitespaces)) } ?? -1
}
