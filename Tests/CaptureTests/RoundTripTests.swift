import Foundation
import Glibc
import Model
import Testing
import TestSupport
@testable import Capture

/// Writes pcapng files and streams and reads them back with CaptureFile, tcpdump and tshark.
@Suite struct RoundTripTests {
    static let dropComment = "dropped: tagged frame on access port (vlan 20)"
    static let base: UInt64 = 1_700_000_000_000_000_001

    /// Three frames of odd lengths on two ports: (interface, frame, direction, comment).
    static var sample: [(UInt32, [UInt8], PacketDirection, String?)] {
        [
            (0, FrameBuilder(dst: mac(2), src: mac(1)).payload(46).bytes, .inbound, nil),            // 60
            (1, FrameBuilder(dst: mac(1), src: mac(2)).type(EtherType.arp).payload(47).bytes, .outbound, nil), // 61
            (0, FrameBuilder(dst: mac(2), src: mac(1)).tagged(20).payload(45).bytes, .inbound, dropComment),   // 63
        ]
    }

    /// Writes `sample` to a new file and returns its path.
    static func writeSample() throws -> String {
        let path = temporaryPath(".pcapng")
        let w = try PcapngStreamWriter(path: path)
        #expect(try w.addInterface(PcapngInterface(name: "web1.eth0", description: "port group web, access 10")) == 0)
        #expect(try w.addInterface(PcapngInterface(name: "tap1.eth0", description: "port group app, trunk 10,20")) == 1)
        for (n, (i, f, d, c)) in sample.enumerated() {
            try w.write(interface: i, timestampNanoseconds: base + UInt64(n) * 1_000_000_007, frame: f,
                        direction: d, comment: c)
        }
        w.close()
        w.close()   // idempotent
        return path
    }

    @Test func sampleFramesHaveOddLengths() {
        #expect(Self.sample.map { $0.1.count } == [60, 61, 63])
    }

    @Test func captureFileReadsBackBytesAndNanosecondTimestamps() throws {
        let path = try Self.writeSample()
        defer { unlink(path) }
        let frames = try CaptureFile.read(path: path)
        #expect(frames.map(\.bytes) == Self.sample.map { $0.1 })
        #expect(frames.map(\.originalLength) == [60, 61, 63])
        #expect(frames.map(\.timestampNanoseconds) == (0..<3).map { Self.base + UInt64($0) * 1_000_000_007 })
        #expect(try CaptureFile.read(path: path, limit: 2).count == 2)
    }

    @Test func framesLongerThanTheSnapLengthAreTruncated() throws {
        let path = temporaryPath(".pcapng")
        defer { unlink(path) }
        let w = try PcapngStreamWriter(path: path)
        let i = try w.addInterface(PcapngInterface(name: "web1.eth0", snapLength: 64))
        let frame = FrameBuilder(dst: mac(2), src: mac(1)).payload(86).bytes   // 100 bytes
        try w.write(interface: i, timestampNanoseconds: 5, frame: frame, direction: .inbound)
        try w.write(interface: i, timestampNanoseconds: 6, frame: Array(frame[0..<60]), originalLength: 1514,
                    direction: .outbound)
        #expect(throws: CaptureError.self) {
            try w.write(interface: 7, timestampNanoseconds: 7, frame: frame, direction: .inbound)
        }
        w.close()
        #expect(throws: CaptureError.self) {
            try w.write(interface: i, timestampNanoseconds: 8, frame: frame, direction: .inbound)
        }
        let frames = try CaptureFile.read(path: path)
        #expect(frames.map(\.bytes) == [Array(frame[0..<64]), Array(frame[0..<60])])
        #expect(frames.map(\.originalLength) == [100, 1514])
    }

    @Test(.enabled(if: hasTcpdump, "needs tcpdump"))
    func tcpdumpReadsTheFile() throws {
        let path = try Self.writeSample()
        defer { unlink(path) }
        let r = sh("tcpdump -r \(path) -nn -e")
        #expect(r.succeeded, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 3, "\(r.stdout)")
        #expect(lines.first?.contains("02:00:00:00:00:01 > 02:00:00:00:00:02") == true, "\(r.stdout)")
        #expect(r.stdout.contains("vlan 20"), "\(r.stdout)")
    }

    @Test(.enabled(if: hasTshark, "needs tshark (Debian package tshark)"))
    func capinfosSaysPcapng() throws {
        let path = try Self.writeSample()
        defer { unlink(path) }
        let r = sh("capinfos \(path)")
        #expect(r.succeeded, "\(r.stderr)")
        let type = r.stdout.split(separator: "\n").first { $0.hasPrefix("File type:") }
        #expect(type?.contains("pcapng") == true, "\(r.stdout)")
        #expect(r.stdout.contains("Number of interfaces in file: 2"), "\(r.stdout)")
    }

    @Test(.enabled(if: hasTshark, "needs tshark (Debian package tshark)"))
    func tsharkShowsInterfaceNamesCommentsAndDirections() throws {
        let path = try Self.writeSample()
        defer { unlink(path) }
        // tshark 4.0 shows epb_flags' direction bits as frame.packet_flags_direction.
        let r = sh("tshark -r \(path) -T fields -E separator='|' -e frame.interface_name"
                   + " -e frame.interface_description -e frame.comment -e frame.packet_flags_direction")
        #expect(r.succeeded, "\(r.stderr)")
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.map { $0.first } == ["web1.eth0", "tap1.eth0", "web1.eth0"], "\(r.stdout)")
        #expect(rows.map { $0.count > 1 ? $0[1] : "" }
                == ["port group web, access 10", "port group app, trunk 10,20", "port group web, access 10"])
        #expect(rows.map { $0.count > 2 ? $0[2] : "" } == ["", "", Self.dropComment], "\(r.stdout)")
        let directions = rows.map { $0.count > 3 ? $0[3] : "" }
        #expect(directions.map { Int($0.dropFirst($0.hasPrefix("0x") ? 2 : 0), radix: $0.hasPrefix("0x") ? 16 : 10) }
                == [1, 2, 1], "\(r.stdout)")
    }

    /// `tapestry capture -w - | tcpdump -r -`: tcpdump prints the first frame while the
    /// writer is still open, so each write reached the pipe at once.
    @Test(.enabled(if: hasTcpdump, "needs tcpdump"))
    func streamToAPipeIsFlushedPerFrame() throws {
        // Should tcpdump die early, the write must fail with EPIPE, not kill the test runner.
        signal(SIGPIPE, SIG_IGN)
        // A named pipe rather than an inherited fd: nothing another test spawns meanwhile can
        // hold an end open or take it away.
        let fifo = temporaryPath(".fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let out = temporaryPath(".out"), done = temporaryPath(".done")
        defer { unlink(out); unlink(done); unlink(fifo) }
        let started = sh("(timeout 30 tcpdump -r \(fifo) -nn -l >\(out) 2>&1; touch \(done)) &")
        #expect(started.succeeded)
        // Opening for writing succeeds once tcpdump has opened the read end.
        var writeEnd: Int32 = -1
        #expect(waitFor { writeEnd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC); return writeEnd >= 0 }, "tcpdump never opened the fifo")
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) & ~O_NONBLOCK)
        let w = try PcapngStreamWriter(fd: writeEnd, closesDescriptor: true)
        let port = try w.addInterface(PcapngInterface(name: "web1.eth0"))
        try w.write(interface: port, timestampNanoseconds: Pcapng.realtimeNanoseconds(),
                    frame: FrameBuilder(dst: mac(2), src: mac(1)).type(EtherType.arp).payload(46).bytes,
                    direction: .inbound)
        let seen = waitFor { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("ARP") }
        #expect(seen, "tcpdump printed nothing while the writer was open: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        #expect(!FileManager.default.fileExists(atPath: done), "tcpdump must still be waiting for more")

        try w.write(interface: port, timestampNanoseconds: Pcapng.realtimeNanoseconds(),
                    frame: FrameBuilder(dst: mac(1), src: mac(2)).type(EtherType.arp).payload(46).bytes,
                    direction: .outbound)
        w.close()
        #expect(waitFor { FileManager.default.fileExists(atPath: done) }, "tcpdump ends at EOF")
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(text.split(separator: "\n").filter { $0.contains("ARP") }.count == 2, "\(text)")
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    func waitFor(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
