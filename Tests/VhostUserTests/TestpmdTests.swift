import Foundation
import LinuxIO
import Testing
import TestSupport
@testable import VhostUser

/// DPDK's testpmd as a real vhost-user frontend (virtio-user PMD, `--no-huge`: its memory is
/// a memfd it passes over the socket): two virtio-user ports whose sockets are served by two
/// `VhostUserPort`s patched together by `CrossConnect`. testpmd forwards in `io` mode with
/// `--tx-first`, so frames circle testpmd → port A → port B → testpmd → …; the frame counts
/// on both sides must agree.
///
/// Needs root (DPDK's runtime directory) and dpdk-testpmd (Debian `dpdk-dev`, installed by
/// Scripts/setup.sh); skips with the reason otherwise. Only the testpmd started here is
/// signalled (it ends by itself when its stdin closes).
@Suite(.serialized) struct TestpmdTests {
    static var skipReason: String? {
        if !Capabilities.isRoot { return "needs root (DPDK's runtime directory)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/dpdk-testpmd") { return "dpdk-testpmd is not installed (Scripts/setup.sh installs dpdk-dev)" }
        return nil
    }

    /// Runs testpmd for `seconds` against the two sockets; returns its output.
    static func testpmd(_ p: String, sockets: (String, String), seconds: Int, extra: String = "--forward-mode=io --auto-start --tx-first") -> String {
        let log = "/tmp/\(p)-testpmd.log"
        defer { unlink(log) }
        let cmd = "sleep \(seconds) | timeout \(seconds + 30) dpdk-testpmd -l 0-1 --no-pci --no-huge -m 512 --file-prefix=\(p) "
            + "--vdev 'net_virtio_user0,path=\(sockets.0),queue_size=256' --vdev 'net_virtio_user1,path=\(sockets.1),queue_size=256' "
            + "-- \(extra) --nb-cores=1 --total-num-mbufs=16384 > \(log) 2>&1"
        let r = sh(cmd, timeout: Double(seconds + 40))
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        if !r.succeeded { print("  testpmd exited \(r.status); last lines:\n" + out.split(separator: "\n").suffix(15).joined(separator: "\n")) }
        return out
    }

    /// The numbers after "Accumulated forward statistics": (RX-packets, TX-packets).
    static func accumulated(_ out: String) -> (rx: Int, tx: Int)? {
        guard let range = out.range(of: "Accumulated forward statistics") else { return nil }
        let tail = out[range.upperBound...]
        func number(after key: String) -> Int? {
            guard let k = tail.range(of: key) else { return nil }
            return Int(tail[k.upperBound...].drop(while: { $0 == " " }).prefix(while: \.isNumber))
        }
        guard let rx = number(after: "RX-packets:"), let tx = number(after: "TX-packets:") else { return nil }
        return (rx, tx)
    }

    @Test(arguments: [0, 20000]) func testpmdFramesCircleThroughTwoPorts(pollMicroseconds: Int) throws {
        if let reason = Self.skipReason { try Test.cancel("TestpmdTests skipped: \(reason)") }
        let p = Capabilities.uniquePrefix("vhp")
        let sockA = "/tmp/\(p)-a.sock", sockB = "/tmp/\(p)-b.sock"
        let log: @Sendable (String) -> Void = { print("  \($0)") }
        let a = try VhostUserPort(name: "\(p).a", socketPath: sockA, mode: .server(VhostSocketPermissions()), pollMicroseconds: pollMicroseconds, log: log)
        let b = try VhostUserPort(name: "\(p).b", socketPath: sockB, mode: .server(VhostSocketPermissions()), pollMicroseconds: pollMicroseconds, log: log)
        defer { a.close(); b.close() }
        let xc = try CrossConnect(a, b)
        xc.start()
        let out = Self.testpmd(p, sockets: (sockA, sockB), seconds: 4)
        xc.stop()
        let s = xc.statistics
        print("  \(pollMicroseconds == 0 ? "kicks" : "poll"): CrossConnect a→b \(s.aToB) b→a \(s.bToA), refused \(s.droppedAtB)/\(s.droppedAtA)")
        let counts = try #require(Self.accumulated(out), "testpmd printed its statistics")
        print("  testpmd: RX \(counts.rx) TX \(counts.tx)")
        #expect(counts.rx > 1000, "frames circled (a loaded machine slows the poll mode to a few thousand a second)")
        // Every frame testpmd received came through the ports; every frame the ports delivered
        // was sent by testpmd. What is still in a ring when testpmd stops (at most a ring per
        // direction) is the only difference allowed.
        let delivered = Int(s.aToB + s.bToA)
        #expect(delivered >= counts.rx, "testpmd received no frame the ports did not deliver")
        #expect(delivered <= counts.tx, "the ports delivered no frame testpmd did not send")
        #expect(counts.tx - counts.rx <= 2 * 256 + 64, "at most the rings' worth in flight")
        // When testpmd stops it disables its rings with frames still circling: those (at
        // most a burst or two) are refused, nothing else.
        #expect(s.droppedAtA + s.droppedAtB <= 128, "refused only at the stop")
        // testpmd tears its rings down (frees and re-initialises them) before it stops the
        // device, so a port may see `avail.idx` jump and reset itself as the frontend leaves:
        // at most once per port, and only for that reason (a fault while frames circled would
        // also break the counts above).
        for port in [a, b] {
            let resets = port.statistics.resets
            #expect(resets.isEmpty || resets == ["avail-index-out-of-range": 1], "\(port.name): \(resets)")
        }
    }
}
