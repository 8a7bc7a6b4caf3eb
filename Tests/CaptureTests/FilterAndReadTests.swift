import CPcap
import Foundation
import Glibc
import Model
import Testing
import TestSupport
@testable import Capture

@Suite struct BPFFilterTests {
    let arp = FrameBuilder(dst: MACAddress(rawValue: 0xFFFF_FFFF_FFFF), src: mac(1)).type(EtherType.arp).bytes
    let ipv4 = FrameBuilder(dst: mac(2), src: mac(1)).type(EtherType.ipv4).bytes

    @Test func arpMatchesArpOnly() throws {
        let f = try BPFFilter("arp")
        #expect(f.expression == "arp")
        #expect(f.matches(arp))
        #expect(!f.matches(ipv4))
    }

    @Test func vlanMatchesTheTaggedVLANOnly() throws {
        let f = try BPFFilter("vlan 10")
        #expect(f.matches(FrameBuilder(dst: mac(2), src: mac(1)).tagged(10).bytes))
        #expect(!f.matches(FrameBuilder(dst: mac(2), src: mac(1)).tagged(20).bytes))
        #expect(!f.matches(ipv4))
        #expect(try BPFFilter("vlan 10 and arp").matches(FrameBuilder(dst: mac(2), src: mac(1)).tagged(10).type(EtherType.arp).bytes))
    }

    @Test func etherSourceMatchesTheAddress() throws {
        let f = try BPFFilter("ether src 02:00:00:00:00:01")
        #expect(f.matches(ipv4))
        #expect(!f.matches(FrameBuilder(dst: mac(1), src: mac(2)).bytes))
    }

    @Test func truncatedFrameIsJudgedOnItsBytesWithTheWireLength() throws {
        let f = try BPFFilter("greater 1000")
        ipv4.withUnsafeBytes { b in
            #expect(f.matches(b, wireLength: 1500))
            #expect(!f.matches(b, wireLength: b.count))
        }
        #expect(!f.matches([]))
    }

    @Test(arguments: ["tcp port", "ether src nonsense", "vlan 10 andd arp"])
    func badExpressionThrowsAClearMessage(expression: String) {
        do {
            _ = try BPFFilter(expression)
            Issue.record("'\(expression)' compiled")
        } catch let e as CaptureError {
            #expect(e.description.hasPrefix("bad filter '\(expression)': "), "\(e)")
            #expect(e.description.count > "bad filter '\(expression)': ".count + 3, "\(e)")
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func badExpressionSaysSyntaxError() {
        #expect(throws: CaptureError("bad filter 'tcp port': syntax error")) { try BPFFilter("tcp port") }
    }
}

@Suite struct CaptureFileTests {
    /// Writes a classic (microsecond) pcap with libpcap's own dumper, as tcpdump -w would.
    func writeClassicPcap(_ path: String, linkType: Int32 = DLT_EN10MB, frames: [([UInt8], Int, Int)]) throws {
        let dead = try #require(pcap_open_dead(linkType, 65535))
        defer { pcap_close(dead) }
        let dumper = try #require(pcap_dump_open(dead, path), "\(String(cString: pcap_geterr(dead)))")
        for (bytes, sec, usec) in frames {
            var h = pcap_pkthdr()
            h.ts.tv_sec = sec
            h.ts.tv_usec = usec
            h.caplen = UInt32(bytes.count)
            h.len = UInt32(bytes.count)
            pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), &h, bytes)
        }
        pcap_dump_close(dumper)
    }

    @Test func readsClassicPcapWithTimestampsInNanoseconds() throws {
        let path = temporaryPath(".pcap")
        defer { unlink(path) }
        let a = FrameBuilder(dst: mac(2), src: mac(1)).bytes
        let b = FrameBuilder(dst: mac(1), src: mac(2)).tagged(10).type(EtherType.arp).payload(47).bytes
        try writeClassicPcap(path, frames: [(a, 1_700_000_000, 123_456), (b, 1_700_000_001, 999_999)])
        let frames = try CaptureFile.read(path: path)
        #expect(frames == [
            CapturedFrame(bytes: a, originalLength: a.count, timestampNanoseconds: 1_700_000_000_123_456_000),
            CapturedFrame(bytes: b, originalLength: b.count, timestampNanoseconds: 1_700_000_001_999_999_000),
        ])
    }

    @Test func nonEthernetLinkTypeIsAnErrorNamingIt() throws {
        let path = temporaryPath(".pcap")
        defer { unlink(path) }
        try writeClassicPcap(path, linkType: DLT_RAW, frames: [([0x45, 0, 0, 20], 1, 0)])
        do {
            _ = try CaptureFile.read(path: path)
            Issue.record("a raw-IP capture was accepted")
        } catch let e as CaptureError {
            #expect(e.message.contains(path) && e.message.contains("RAW") && e.message.contains("not Ethernet"), "\(e)")
        }
    }

    @Test func missingOrGarbageFileIsAnErrorNamingThePath() throws {
        let missing = temporaryPath(".pcap")
        #expect(throws: CaptureError.self) { try CaptureFile.read(path: missing) }
        do { _ = try CaptureFile.read(path: missing) } catch let e as CaptureError {
            #expect(e.message.hasPrefix("read \(missing): "), "\(e)")
        }
        let garbage = temporaryPath(".pcap")
        defer { unlink(garbage) }
        #expect(FileManager.default.createFile(atPath: garbage, contents: Data("not a capture file at all".utf8)))
        #expect(throws: CaptureError.self) { try CaptureFile.read(path: garbage) }
    }
}
