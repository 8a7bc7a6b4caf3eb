import Foundation
import Glibc
import Testing
import TestSupport
import VMRunner
@testable import Runtime

/// Threads of this process (/proc/self/status `Threads:`).
func threadCount(_ pid: String = "self") -> Int {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").first { $0.hasPrefix("Threads:") }.flatMap { Int($0.dropFirst(8).trimmingCharacters(in: .whitespaces)) } ?? -1
}

/// A raw client socket connected to `path` (blocking, 5 s receive timeout).
func rawClient(_ path: String) -> Int32 {
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

/// Everything the server sends until it closes (or 5 s pass).
func readAll(_ fd: Int32) -> String {
    var out = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

@Suite(.serialized) struct ControlServerLimitTests {
    static func path(_ tag: String) -> String { NSTemporaryDirectory() + "tapestry-cs-\(tag)-\(getpid()).sock" }

    @Test func aTricklingClientIsCutOffAtTheDeadlineAndHoldsNoThread() throws {
        let path = Self.path("trickle")
        let server = try ControlServer(path: path, limits: .init(requestDeadline: 1)) { _, _ in Data("{\"ok\":true}".utf8) }
        server.start()
        defer { server.stop() }
        let before = threadCount()
        // 100 clients sending one byte now and then: none ever completes a line.
        let clients = (0..<100).map { _ in rawClient(path) }
        defer { for c in clients { close(c) } }
        for c in clients { _ = send(c, "{", 1, Int32(MSG_NOSIGNAL)) }
        usleep(300_000)
        #expect(threadCount() <= before + 2, "waiting clients cost no threads: \(before) -> \(threadCount())")
        // A normal request still answers while they trickle.
        let reply = try controlRequest(socket: path, name: "t", ControlRequest(command: "status"), timeout: 5)
        #expect(String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "{\"ok\":true}")
        for c in clients { _ = send(c, "\"", 1, Int32(MSG_NOSIGNAL)) }
        // Each is answered with the deadline error and closed about a second after connecting.
        let start = Date()
        let answer = readAll(clients[0])
        #expect(answer.contains("deadline"), "\(answer)")
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(clients.dropFirst().allSatisfy { readAll($0).contains("deadline") })
    }

    @Test func beyondTheWaitingLimitTheOldestWaiterIsDroppedWithAMessage() throws {
        let path = Self.path("waiting")
        let server = try ControlServer(path: path, limits: .init(requestDeadline: 5, maxWaiting: 3)) { _, _ in Data("{\"ok\":true}".utf8) }
        server.start()
        defer { server.stop() }
        var idle: [Int32] = []
        for _ in 0..<3 { idle.append(rawClient(path)); usleep(50_000) }
        defer { for c in idle { close(c) } }
        // A fourth client with a whole request is served; the longest waiter makes room.
        let reply = try controlRequest(socket: path, name: "t", ControlRequest(command: "status"), timeout: 5)
        #expect(String(decoding: reply, as: UTF8.self).contains("ok"))
        let text = readAll(idle[0])
        #expect(text.contains("too many control connections") && text.contains("limit"), "\(text)")
    }

    @Test func requestsBeyondTheActiveLimitAreRefusedWithAMessage() throws {
        let path = Self.path("active")
        let gate = DispatchSemaphore(value: 0)
        let server = try ControlServer(path: path, limits: .init(maxActive: 2)) { req, _ in
            if req.command == "slow" { gate.wait() }
            return Data("{\"done\":true}".utf8)
        }
        server.start()
        defer { server.stop() }
        let slow = (0..<2).map { _ -> Int32 in
            let c = rawClient(path)
            _ = send(c, "{\"command\":\"slow\"}\n", 19, Int32(MSG_NOSIGNAL))
            return c
        }
        for _ in 0..<100 where server.activeRequests < 2 { usleep(10_000) }
        #expect(server.activeRequests == 2)
        #expect(throws: RuntimeError.self) { try controlRequest(socket: path, name: "t", ControlRequest(command: "status"), timeout: 5) }
        do { _ = try controlRequest(socket: path, name: "t", ControlRequest(command: "status"), timeout: 5) } catch {
            #expect("\(error)".contains("busy") && "\(error)".contains("limit"), "\(error)")
        }
        gate.signal(); gate.signal()
        for c in slow { #expect(readAll(c).contains("done")); close(c) }
        for _ in 0..<100 where server.activeRequests > 0 { usleep(10_000) }
        #expect(try controlRequest(socket: path, name: "t", ControlRequest(command: "status"), timeout: 5).count > 0, "served again")
    }

    @Test func stopRemovesTheSocketAndClosesWaitingClients() throws {
        let path = Self.path("stop")
        let server = try ControlServer(path: path) { _, _ in Data("{}".utf8) }
        server.start()
        let waiting = rawClient(path)
        defer { close(waiting) }
        usleep(100_000)
        server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(readAll(waiting).isEmpty, "closed without a reply")
        server.stop()  // idempotent
    }
}

@Suite struct DatapathSettingsTests {
    func resolve(_ env: [String: String], file: Int? = nil, poll: Int? = nil, cores: Int = 2) throws -> DatapathSettings {
        try DatapathSettings.resolve(fileThreads: file, fileBusyPollMicroseconds: poll, environment: env, cores: cores)
    }

    @Test func defaultsFileValuesAndOverrides() throws {
        #expect(try resolve([:]) == DatapathSettings(threads: 2, busyPollMicroseconds: 0))
        #expect(try resolve([:], cores: 16).threads == 4, "one per core, at most 4")
        #expect(try resolve([:], cores: 1).threads == 1)
        #expect(try resolve([:], file: 3, poll: 500) == DatapathSettings(threads: 3, busyPollMicroseconds: 500))
        #expect(try resolve(["TAPESTRY_DATAPATH_THREADS": "8", "TAPESTRY_BUSY_POLL_US": "20000"], file: 3, poll: 500)
                == DatapathSettings(threads: 8, busyPollMicroseconds: 20000), "the environment overrides the file")
        #expect(try resolve(["TAPESTRY_DATAPATH_THREADS": "", "TAPESTRY_BUSY_POLL_US": ""], file: 3) == DatapathSettings(threads: 3, busyPollMicroseconds: 0),
                "empty is unset")
        #expect(try resolve(["TAPESTRY_DATAPATH_THREADS": "64", "TAPESTRY_BUSY_POLL_US": "1000000"]) == DatapathSettings(threads: 64, busyPollMicroseconds: 1_000_000))
        #expect(try resolve(["TAPESTRY_DATAPATH_THREADS": "1", "TAPESTRY_BUSY_POLL_US": "0"]) == DatapathSettings(threads: 1, busyPollMicroseconds: 0))
        // The vhost-user ring poll window: 50 µs unless the variable says otherwise (0: kicks only).
        #expect(try resolve([:]).vhostPollMicroseconds == 50)
        #expect(try resolve(["TAPESTRY_VHOST_POLL_US": "0"]).vhostPollMicroseconds == 0)
        #expect(try resolve(["TAPESTRY_VHOST_POLL_US": "2000", "TAPESTRY_BUSY_POLL_US": "7"]) == DatapathSettings(threads: 2, busyPollMicroseconds: 7, vhostPollMicroseconds: 2000))
    }

    @Test(arguments: [
        ("TAPESTRY_DATAPATH_THREADS", "99", "out of range"), ("TAPESTRY_DATAPATH_THREADS", "abc", "not a number"),
        ("TAPESTRY_DATAPATH_THREADS", "0", "out of range"), ("TAPESTRY_DATAPATH_THREADS", "-1", "not a number"),
        ("TAPESTRY_DATAPATH_THREADS", "4 ", "not a number"), ("TAPESTRY_DATAPATH_THREADS", "99999999999999999999", "not a number"),
        ("TAPESTRY_BUSY_POLL_US", "abc", "not a number"), ("TAPESTRY_BUSY_POLL_US", "1000001", "out of range"),
        ("TAPESTRY_VHOST_POLL_US", "-1", "not a number"), ("TAPESTRY_VHOST_POLL_US", "1000001", "out of range"),
        ("TAPESTRY_BUSY_POLL_US", "20ms", "not a number"), ("TAPESTRY_BUSY_POLL_US", "-5", "not a number"),
    ])
    func invalidOverridesFailLoudlyNamingTheVariable(variable: String, value: String, kind: String) {
        do {
            _ = try resolve([variable: value])
            Issue.record("\(variable)=\(value) was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains(variable) && text.contains(kind), "\(text)")
        }
    }
}

@Suite struct InstanceIdentityTests {
    @Test func stemsAndTheFileRules() throws {
        #expect(try InstanceIdentity(name: "lab").stem == "lab")
        #expect(try InstanceIdentity(name: "lab", host: "h1").stem == "lab@h1")
        #expect(InstanceIdentity(stem: "lab@h1") == (try InstanceIdentity(name: "lab", host: "h1")))
        for bad in ["../../tmp/x", "", "Lab", "1lab", "lab/x", "averylongname1", ".", "lab@x"] {
            #expect(throws: RuntimeError.self, "\(bad)") { try InstanceIdentity(name: bad) }
        }
        #expect(throws: RuntimeError.self) { try InstanceIdentity(name: "lab", host: "../h") }
        #expect(InstanceIdentity(stem: "../x") == nil)
        #expect(RunDirectory.lock("lab@h1") == "/run/tapestry/lab@h1.lock")
        #expect(RunDirectory.log("lab") == "/var/log/tapestry/lab/daemon.log")
    }
}

@Suite struct JSONDocumentTests {
    /// Every object in `v`, recursively (path → keys), to compare shapes.
    func shapes(_ v: JSONValue, _ path: String = "$") -> [String: Set<String>] {
        switch v {
        case .object(let o):
            var out = [path: Set(o.keys)]
            for (k, x) in o { out.merge(shapes(x, path + "." + k)) { $0.union($1) } }
            return out
        case .array(let a):
            var out: [String: Set<String>] = [:]
            for x in a { out.merge(shapes(x, path + "[]")) { $0.union($1) } }
            return out
        default: return [:]
        }
    }

    func vm(_ name: String, full: Bool) -> VMStatus {
        full ? VMStatus(name: name, state: .running, pid: 42, accel: .tcg, uptime: 9.5, bootTime: 6.1, restarts: 1,
                        lastExit: ProcessExit(signal: 9), lastError: "x", restartIn: 2, consoleSocket: "/s", consoleLog: "/l")
             : VMStatus(name: name, state: .stopped, accel: .tcg, consoleSocket: "/s", consoleLog: "/l")
    }

    func status(full: Bool) -> StatusReport {
        StatusReport(name: "lab", file: "/f.yaml", pid: 1, uptimeSeconds: 3,
                     datapathThreads: full ? 2 : nil, busyPollMicroseconds: full ? 0 : nil, datapathFrames: full ? [1, 2] : nil,
                     switches: [.init(name: "sw0", mtu: 1500, ports: 2, vlans: (1...4094).map(String.init), macEntries: 0, macLimit: 8192, agingSeconds: 300)],
                     guests: [.init(name: "g", kind: full ? "qemu" : "netns", namespace: full ? nil : "g",
                                    nics: [.init(port: "g.eth0", interface: "eth0", mac: "02:00:00:00:00:01", ip: full ? "10.0.0.1/24" : nil)],
                                    vm: full ? vm("g", full: true) : nil)])
    }

    @Test func everyKeyIsAlwaysPresentNullWhenAbsent() {
        let sparse = JSONDocuments.status(status(full: false)), full = JSONDocuments.status(status(full: true))
        #expect(sparse["schema_version"] == .int(2))
        #expect(sparse["datapath_threads"] == .null && sparse["host"] == .null)
        // The nested vm object exists only in one of them; every object both have has the same keys.
        let a = shapes(sparse), b = shapes(full)
        for (path, keys) in a where b[path] != nil { #expect(keys == b[path]!, "\(path): \(keys.symmetricDifference(b[path]!))") }
        let sparseVM = JSONDocuments.vm(vm("a", full: false)), fullVM = JSONDocuments.vm(vm("a", full: true))
        #expect(sparseVM.keys == fullVM.keys)
        #expect(sparseVM["pid"] == .null && sparseVM["last_exit"] == .null && sparseVM["restart_in_seconds"] == .null)
        #expect(shapes(JSONDocuments.vmList([vm("a", full: true)]))["$.vms[].last_exit"] == ["code", "signal"])
    }

    @Test func unitsInNamesAndDeprecatedNamesKeptForOneVersion() {
        let v = JSONDocuments.vm(vm("a", full: true))
        #expect(v["uptime_seconds"] == .double(9.5) && v["uptime"] == .double(9.5))
        #expect(v["boot_time_seconds"] == .double(6.1) && v["boot_time"] == .double(6.1))
        #expect(v["restart_in_seconds"] == .double(2) && v["restart_in"] == .double(2))
        for (old, new) in JSONDocuments.deprecatedKeys { #expect(v[old] != nil && v[new] != nil && v[old] == v[new]) }
        let list = JSONDocuments.vmList([])
        #expect(list.keys == ["schema_version", "vms"], "vm list is an object now")
    }

    @Test func traceDocumentsKeepNilFieldsAsNull() {
        let frame = TraceReport.FrameTrace(summary: "s", steps: [.init(stage: "ingress", detail: "d")], verdict: "forward", dropReason: nil,
                                           egress: [.init(port: "b.eth0", tag: "untagged")])
        let dropped = TraceReport.FrameTrace(summary: "s", steps: [], verdict: "drop", dropReason: "runt", egress: [])
        let doc = JSONDocuments.trace(TraceReport(switch: "sw0", inPort: "a.eth0", frames: [frame, dropped]))
        #expect(doc["schema_version"] == .int(2) && doc["in_port"] == .string("a.eth0") && doc["switch"] == .string("sw0"))
        guard case .array(let frames)? = doc["frames"] else { Issue.record("no frames"); return }
        #expect(frames[0]["drop_reason"] == .null && frames[1]["drop_reason"] == .string("runt"))
        #expect(frames[0].keys == frames[1].keys)
        #expect(JSONValue.snakeCase("ratePerSecond") == "rate_per_second" && JSONValue.snakeCase("ifSent") == "if_sent")
    }

    /// `ports --json`: a vhost-user port's backend, frontend state and own counters (issue
    /// 18); every other row has the same keys with `vhost_user` null.
    @Test func portsDocumentsShowVhostUserPorts() {
        func row(_ name: String, kind: String, backend: String?, vhost: PortsReport.VhostUserInfo?) -> PortsReport.PortRow {
            PortsReport.PortRow(name: name, switch: "sw0", portGroup: "lan", kind: kind, vlanMode: "access 10", link: vhost.map { $0.connected ? "up" : "no-frontend" } ?? "up",
                                macEntries: 0, macLimit: 1024, macEvictions: 0, rxFrames: 1, rxBytes: 60, txFrames: 2, txBytes: 120,
                                drops: vhost?.drops ?? [:], backend: backend, vhostUser: vhost)
        }
        let info = PortsReport.VhostUserInfo(socket: "/run/tapestry/lab.vhost/vm1.eth0.sock", mode: "client", connected: true,
                                             connections: 2, disconnects: 1, resets: ["descriptor-loop": 1], rarps: 3, dirtyLogs: 0,
                                             segmentedInSoftware: 4, checksummedInSoftware: 5, drops: ["tx-runt": 6])
        let doc = JSONDocuments.ports(PortsReport(ports: [row("vm1.eth0", kind: "guest", backend: "vhost-user", vhost: info),
                                                          row("n.eth0", kind: "guest", backend: "tap", vhost: nil),
                                                          row("eth9", kind: "uplink", backend: nil, vhost: nil)]))
        guard case .array(let rows)? = doc["ports"] else { Issue.record("no ports"); return }
        #expect(rows[0].keys == rows[1].keys && rows[1].keys == rows[2].keys)
        #expect(rows[0]["backend"] == .string("vhost-user") && rows[1]["backend"] == .string("tap") && rows[2]["backend"] == .null)
        #expect(rows[1]["vhost_user"] == .null && rows[2]["vhost_user"] == .null)
        #expect(rows[0]["vhost_user"]?["connected"] == .bool(true) && rows[0]["vhost_user"]?["mode"] == .string("client"))
        #expect(rows[0]["vhost_user"]?["connections"] == .int(2) && rows[0]["vhost_user"]?["rarps"] == .int(3))
        #expect(rows[0]["vhost_user"]?["resets"]?["descriptor-loop"] == .int(1))
        #expect(rows[0]["vhost_user"]?["segmented_in_software"] == .int(4) && rows[0]["vhost_user"]?["checksummed_in_software"] == .int(5))
        #expect(rows[0]["drops"]?["tx-runt"] == .int(6), "the port's own drops count in the row's drops")
        #expect(shapes(doc)["$.ports[].vhost_user"] == ["socket", "mode", "connected", "connections", "disconnects", "resets", "rarps",
                                                         "dirty_logs", "segmented_in_software", "checksummed_in_software", "drops"])
    }

    @Test func vlanListsPrintAsRanges() {
        #expect(JSONDocuments.vlanRanges((1...4094).map(String.init)) == ["1-4094"])
        #expect(JSONDocuments.vlanRanges(["10", "11", "12", "20", "100", "none"]) == ["10-12", "20", "100", "none"])
        #expect(JSONDocuments.vlanRanges([]) == [])
        let doc = JSONDocuments.status(status(full: false))
        guard case .array(let sws)? = doc["switches"], case .object(let sw) = sws[0] else { Issue.record("no switches"); return }
        #expect(sw["vlan_ranges"] == .array([.string("1-4094")]))
    }

    @Test func textIsValidJSONWithSortedKeysAndEscapes() throws {
        let v = JSONValue.object(["b": .string("a\"b\\c\n\u{1}/"), "a": .array([.int(1), .null, .bool(true), .double(1.5)]), "c": .object([:])])
        let text = v.text()
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(parsed["b"] as? String == "a\"b\\c\n\u{1}/")
        #expect(text.firstRange(of: "\"a\"")!.lowerBound < text.firstRange(of: "\"b\"")!.lowerBound)
    }
}

@Suite struct CaptureSelectionTests {
    @Test func spansSwitchesWithAFlatBitmap() {
        let s = CaptureSelection(ports: [[false, true], [], [true, false, true]], vlan: nil, ingress: true, egress: true, drops: false)
        #expect(s.contains(switchIndex: 0, port: 1) && !s.contains(switchIndex: 0, port: 0))
        #expect(s.contains(switchIndex: 2, port: 0) && s.contains(switchIndex: 2, port: 2) && !s.contains(switchIndex: 2, port: 1))
        #expect(!s.contains(switchIndex: 1, port: 0) && !s.contains(switchIndex: 3, port: 0) && !s.contains(switchIndex: 0, port: 2))
        #expect(s.switchIndices == [0, 2])
        let old: [(name: String, ports: [String])] = [("a", ["x", "y"]), ("b", []), ("c", ["p", "q", "r"])]
        #expect(s.survives(old: old, new: old))
        var changedB = old; changedB[1].ports = ["new"]
        #expect(s.survives(old: old, new: changedB), "a switch it does not cover may change")
        var changedC = old; changedC[2].ports = ["p", "q"]
        #expect(!s.survives(old: old, new: changedC))
        #expect(!s.survives(old: old, new: Array(old.prefix(2))))
    }
}
