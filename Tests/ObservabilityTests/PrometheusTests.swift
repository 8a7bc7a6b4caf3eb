import Foundation
import Glibc
import Testing
import TestSupport
@testable import Observability

/// The text format writer, Tapestry's metric set (checked by `promtool check metrics`) and
/// the /metrics server (scraped with curl).
@Suite(.serialized) struct PrometheusTests {
    static var snapshot: MetricsSnapshot {
        var s = MetricsSnapshot(topology: "lab", startTimeSeconds: 1_764_000_000.25)
        s.ports = [
            .init(switch: "sw0", name: "web1.eth0", portGroup: "web", kind: "guest", rxFrames: 120, rxBytes: 11_760, txFrames: 118,
                  txBytes: 11_564, drops: [("tagged-on-access-port", 3), ("runt", 1)], macEntries: 1, macLimit: 1024, macEvictions: 0),
            .init(switch: "sw0", name: "eth1", portGroup: "(uplinks)", kind: "uplink", rxFrames: 5, rxBytes: 300,
                  drops: [("team-inactive-uplink", 5)], macEntries: 0, macLimit: 8192),
            // A label value that needs every escape: backslash, quote, newline.
            .init(switch: "sw\\1", name: "odd\"name\n.eth0", portGroup: "g", kind: "guest"),
        ]
        s.switches = [.init(name: "sw0", macEntries: 2, macLimit: 8192, macEvictions: 7)]
        s.uplinks = [.init(switch: "sw0", nic: "eth1", role: "standby"), .init(switch: "sw0", nic: "eth2", role: "active")]
        s.workerFrames = [1000, 2000]
        s.vms = [.init(name: "vm1", state: "running", restarts: 2)]
        s.flowExport = [.init(switch: "sw0", accountedFrames: 40, notTrackedFrames: 3, activeFlows: 2, recordsSent: 10, sendFailures: 1)]
        return s
    }

    @Test func rendersHelpTypeAndEscapedLabels() {
        let f = MetricFamily(name: "x_total", help: "a \\ b\nc", type: .counter,
                             samples: [.init([.init("l", "q\"b\\n\nx")], .integer(18_446_744_073_709_551_615))])
        #expect(PrometheusText.render([f]) == """
            # HELP x_total a \\\\ b\\nc
            # TYPE x_total counter
            x_total{l="q\\"b\\\\n\\nx"} 18446744073709551615

            """)
        #expect(MetricValue.double(.infinity).text == "+Inf" && MetricValue.double(-.infinity).text == "-Inf")
        #expect(MetricValue.double(.nan).text == "NaN" && MetricValue.double(0.5).text == "0.5" && MetricValue.double(3).text == "3")
        #expect(PrometheusText.render([MetricFamily(name: "empty", help: "", type: .gauge, samples: [])]).isEmpty)
    }

    @Test func namesAreValidatedAndTheMetricSetFollowsConventions() {
        #expect(PrometheusText.isValidMetricName("tapestry_port_receive_frames_total") && PrometheusText.isValidMetricName("a:b"))
        #expect(!PrometheusText.isValidMetricName("1abc") && !PrometheusText.isValidMetricName("a-b") && !PrometheusText.isValidMetricName(""))
        #expect(PrometheusText.isValidLabelName("port_group") && !PrometheusText.isValidLabelName("__x") && !PrometheusText.isValidLabelName("a:b"))
        #expect(!MetricFamily(name: "x_frames", help: "", type: .counter, samples: []).validate().isEmpty)
        let families = TapestryMetrics.families(Self.snapshot)
        for f in families { #expect(f.validate().isEmpty, "\(f.name): \(f.validate())") }
        let text = PrometheusText.render(families)
        #expect(text.contains("tapestry_port_dropped_frames_total{switch=\"sw0\",port=\"web1.eth0\",reason=\"tagged-on-access-port\"} 3"))
        #expect(text.contains("tapestry_uplink_team_role{switch=\"sw0\",uplink=\"eth1\",role=\"standby\"} 1"))
        #expect(text.contains("tapestry_uplink_team_role{switch=\"sw0\",uplink=\"eth1\",role=\"active\"} 0"))
        #expect(text.contains("tapestry_vm_state{vm=\"vm1\",state=\"running\"} 1"))
        #expect(text.contains("tapestry_datapath_worker_frames_total{worker=\"1\"} 2000"))
        #expect(text.contains("process_start_time_seconds 1764000000.25"))
        #expect(text.contains("port=\"odd\\\"name\\n.eth0\""))
    }

    /// An instance of a multi-host topology labels every sample with its host,
    /// first; a single-host one has no `host` label anywhere. promtool accepts both.
    @Test func aMultiHostInstanceLabelsEverySampleWithItsHost() throws {
        var s = Self.snapshot
        s.host = "h2"
        let families = TapestryMetrics.families(s)
        let samples = families.flatMap(\.samples)
        #expect(!samples.isEmpty && samples.allSatisfy { $0.labels.first == .init("host", "h2") }, "every sample has host first")
        for f in families { #expect(f.validate().isEmpty, "\(f.name): \(f.validate())") }
        let text = PrometheusText.render(families)
        #expect(text.contains("tapestry_topology_info{host=\"h2\",topology=\"lab\"} 1"))
        #expect(text.contains("tapestry_port_dropped_frames_total{host=\"h2\",switch=\"sw0\",port=\"web1.eth0\",reason=\"tagged-on-access-port\"} 3"))
        #expect(text.contains("process_start_time_seconds{host=\"h2\"} 1764000000.25"))
        #expect(!PrometheusText.render(TapestryMetrics.families(Self.snapshot)).contains("host="), "no host label on a single host")
        if commandExists("promtool") {
            let dir = temporaryDirectory("promhost")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try text.write(toFile: dir + "/m.txt", atomically: true, encoding: .utf8)
            let r = sh("promtool check metrics < '\(dir)/m.txt' 2>&1")
            #expect(r.succeeded && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(r.stdout)")
        }
    }

    /// `promtool check metrics` (Debian's prometheus package) lints the real output.
    @Test func promtoolAcceptsTheOutput() throws {
        guard commandExists("promtool") else { try Test.cancel("skip: promtool not installed (Scripts/setup.sh installs prometheus)") }
        let dir = temporaryDirectory("prom")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/metrics.txt"
        try PrometheusText.render(TapestryMetrics.families(Self.snapshot)).write(toFile: file, atomically: true, encoding: .utf8)
        let r = sh("promtool check metrics < '\(file)' 2>&1")
        #expect(r.succeeded && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(r.stdout)")
        // And promtool does catch what we avoid: a counter without _total.
        try "# HELP bad_frames x\n# TYPE bad_frames counter\nbad_frames 1\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(sh("promtool check metrics < '\(file)' 2>&1").stdout.contains("_total"))
    }

    @Test func serverAnswersScrapesWithCurlAndRefusesEverythingElse() throws {
        guard commandExists("curl") else { try Test.cancel("skip: curl not installed") }
        let calls = Counter()
        let server = try MetricsServer(listen: SocketEndpoint(host: "127.0.0.1", port: 0)) {
            calls.increment()
            return TapestryMetrics.families(Self.snapshot)
        }
        server.start()
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)"
        let ok = sh("curl -sS -D - '\(url)/metrics'", timeout: 10)
        #expect(ok.succeeded && ok.stdout.hasPrefix("HTTP/1.1 200 OK"))
        #expect(ok.stdout.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(ok.stdout.contains("tapestry_port_receive_frames_total{switch=\"sw0\",port=\"web1.eth0\",port_group=\"web\",kind=\"guest\"} 120"))
        if commandExists("promtool") {
            let lint = sh("curl -sS '\(url)/metrics' | promtool check metrics 2>&1", timeout: 10)
            #expect(lint.succeeded && lint.stdout.isEmpty, "\(lint.stdout)")
        }
        #expect(sh("curl -s -o /dev/null -w '%{http_code}' '\(url)/'").stdout == "404")
        #expect(sh("curl -s -o /dev/null -w '%{http_code}' -X POST '\(url)/metrics'").stdout == "405")
        let head = sh("curl -sS -I '\(url)/metrics?x=1'")
        #expect(head.stdout.hasPrefix("HTTP/1.1 200") && head.stdout.contains("Content-Length:"))
        // A request header larger than the cap is refused, not buffered forever.
        let big = String(repeating: "a", count: 9000)
        #expect(sh("curl -s -o /dev/null -w '%{http_code}' -H 'X-Big: \(big)' '\(url)/metrics'").stdout == "431")
        #expect(server.counters.scrapes == calls.value && server.counters.scrapes >= 3)
        #expect(server.counters.rejected == 3)
    }

    @Test func silentClientsAreBoundedAndTimedOut() throws {
        let server = try MetricsServer(listen: SocketEndpoint(host: "127.0.0.1", port: 0),
                                       limits: .init(maxClients: 2, maxRequestBytes: 1024, deadline: 300)) { [] }
        server.start()
        defer { server.stop() }
        func connectIdle() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET); a.sin_port = server.port.bigEndian; a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            return fd
        }
        let idle = [connectIdle(), connectIdle()]
        usleep(100_000)
        let third = connectIdle()
        var buf = [UInt8](repeating: 0, count: 512)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(third, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let n = recv(third, &buf, buf.count, 0)
        #expect(n > 0 && String(decoding: buf[0..<max(0, n)], as: UTF8.self).hasPrefix("HTTP/1.1 503"))
        close(third)
        usleep(600_000)   // past the 300 ms deadline: both idle connections are closed by the server
        for fd in idle {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            #expect(recv(fd, &buf, buf.count, 0) == 0)
            close(fd)
        }
        #expect(server.counters.busy == 1 && server.counters.timedOut == 2)
        // Slots are free again: a scrape works.
        if commandExists("curl") {
            #expect(sh("curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:\(server.port)/metrics'").stdout == "200")
        }
        #expect(throws: SocketEndpoint.Invalid.self) {
            _ = try MetricsServer(listen: SocketEndpoint(host: "127.0.0.1", port: server.port)) { [] }
        }
    }
}

/// A thread-safe counter for closures called on the server thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n: UInt64 = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: UInt64 { lock.lock(); defer { lock.unlock() }; return n }
}
