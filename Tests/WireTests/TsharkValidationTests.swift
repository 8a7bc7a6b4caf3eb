import Foundation
import Model
import Testing
import TestSupport
@testable import Wire

/// Our output judged by a real tool: Wireshark's dissectors (tshark 4.x) with IPv4, TCP
/// and UDP checksum verification on. A checksum status reads 1 when good, 0 when bad.
@Suite(.serialized) struct TsharkValidationTests {
    private func path(_ name: String) -> String { NSTemporaryDirectory() + "wire-\(getpid())-\(name).pcap" }

    /// Segments of TSO/USO frames (0–2 tags, IPv4 with options, IPv6 with an extension
    /// header, TCP with options) and completed partial checksums: tshark finds every IPv4
    /// header, TCP and UDP checksum good, and the TCP sequence numbers continuous.
    @Test(.enabled(if: hasTshark, "tshark is not installed (Scripts/setup.sh installs it)"))
    func segmentsAndCompletedFramesVerify() throws {
        var frames: [[UInt8]] = []
        var expectedTCP = 0, expectedUDP = 0, expectedIPv4 = 0
        var shapes: [TestPacket] = []
        for tags in [[], [10], [100, 20]] as [[UInt16]] {
            for ipv6 in [false, true] {
                for tcp in [true, false] {
                    var p = TestPacket(); p.tags = tags; p.ipv6 = ipv6; p.tcp = tcp
                    p.payload = (0..<3500).map { UInt8(truncatingIfNeeded: $0 &* 11) }
                    if !ipv6 && tags.count == 1 { p.ipv4Options = [1, 1, 1, 0] }
                    if ipv6 && tags.count == 1 { p.ipv6Extensions = [(60, [0, 0, 1, 4, 0, 0, 0, 0])] }
                    if tcp { p.tcpOptions = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2] }
                    shapes.append(p)
                }
            }
        }
        for p in shapes {
            let kind = p.tcp ? (p.ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4) : VirtioNetHeader.gsoUDPL4
            var h = p.partialHeader; h.gsoType = kind; h.gsoSize = 1200
            let segs = try segments(p.partialBytes, h).get()
            #expect(segs.count == 3)
            frames += segs
            // The same frame, small, with a partial checksum finished in place.
            var small = p; small.payload = Array(p.payload[0..<100])
            var f = small.partialBytes
            #expect(f.withUnsafeMutableBytes { ChecksumCompletion.complete($0, header: small.partialHeader) } == nil)
            frames.append(f)
            if p.tcp { expectedTCP += 4 } else { expectedUDP += 4 }
            if !p.ipv6 { expectedIPv4 += 4 }
        }
        let file = path("segments")
        defer { unlink(file) }
        try writePcap(file, frames: frames)
        let r = tsharkFields(file, ["frame.number", "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "tcp.seq_raw", "tcp.len"])
        try #require(r.succeeded, "tshark: \(r.stderr)")
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.count == frames.count)
        var tcpGood = 0, udpGood = 0, ipGood = 0
        for row in rows where row.count == 6 {
            if row[1] == "1" { ipGood += 1 } else if !row[1].isEmpty { Issue.record("frame \(row[0]): bad IPv4 header checksum") }
            if row[2] == "1" { tcpGood += 1 } else if !row[2].isEmpty { Issue.record("frame \(row[0]): bad TCP checksum") }
            if row[3] == "1" { udpGood += 1 } else if !row[3].isEmpty { Issue.record("frame \(row[0]): bad UDP checksum") }
        }
        #expect(tcpGood == expectedTCP && udpGood == expectedUDP && ipGood == expectedIPv4,
                "tcp \(tcpGood)/\(expectedTCP) udp \(udpGood)/\(expectedUDP) ipv4 \(ipGood)/\(expectedIPv4)")
        // Sequence numbers continue across the segments of the first TCP frame.
        let first = rows.prefix(3).compactMap { row -> (UInt32, Int)? in
            guard row.count == 6, let s = UInt32(row[4]), let l = Int(row[5]) else { return nil }
            return (s, l)
        }
        #expect(first.count == 3 && first[1].0 == first[0].0 &+ UInt32(first[0].1) && first[2].0 == first[1].0 &+ UInt32(first[1].1))
    }

    /// VXLAN packets (outer Ethernet + IPv4 or IPv6 + UDP 4789) decode as VXLAN with our
    /// VNI and the I flag, the inner frame's addresses and checksums are right, the outer
    /// IPv4 header checksum and the IPv6 UDP checksum are good.
    @Test(.enabled(if: hasTshark, "tshark is not installed (Scripts/setup.sh installs it)"))
    func vxlanDecodes() throws {
        var p = TestPacket(); p.tags = [30]; p.payload = Array(repeating: 0x33, count: 600)
        let inner = p.bytes
        let v4 = encapsulated(inner, VXLANEncapsulation(source: vtep4a, destination: vtep4b, ethernet: (mac(0xA), mac(0xB))), vni: 5030)
        let v6 = encapsulated(inner, VXLANEncapsulation(source: vtep6a, destination: vtep6b, ethernet: (mac(0xA), mac(0xB))), vni: 16_777_215)
        let file = path("vxlan")
        defer { unlink(file) }
        try writePcap(file, frames: [v4, v6])
        let r = tsharkFields(file, ["vxlan.vni", "vxlan.flag_i", "eth.src", "ip.checksum.status", "udp.checksum.status", "tcp.checksum.status", "vlan.id"])
        try #require(r.succeeded, "tshark: \(r.stderr)")
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
        try #require(rows.count == 2 && rows.allSatisfy { $0.count == 7 }, "\(r.stdout)")
        #expect(rows[0][0] == "5030" && rows[1][0] == "16777215")
        for row in rows {
            #expect(row[1] == "1" || row[1] == "True", "I flag: \(row[1])")
            #expect(row[2] == "02:00:00:00:00:0a,02:00:00:00:00:01", "outer then inner source MAC: \(row[2])")
            #expect(row[5] == "1", "inner TCP checksum")
            #expect(row[6] == "30", "inner VLAN")
        }
        #expect(rows[0][3] == "1,1", "outer and inner IPv4 header checksums: \(rows[0][3])")
        #expect(rows[1][4].hasPrefix("1"), "outer UDP checksum over IPv6: \(rows[1][4])")
    }
}
