import Core
import Foundation
import LinuxIO
import Model
import Runtime
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A switch port backed by a datagram socket pair: the datapath owns one end, the test the
/// other. Datagrams keep frame boundaries, so frames go in and come out exactly as on a TAP,
/// without root.
class SocketPairPort: SingleQueuePortIO {
    let switchEnd: Int32
    let testEnd: Int32
    /// 10 to behave like a TAP with IFF_VNET_HDR (frames carry a virtio-net header).
    let vnetHeaderSize: Int
    /// Like an AF_PACKET uplink: plain frames in, a vnet header on frames out.
    let txVNetHeaderSize: Int

    init(vnetHeaderSize: Int = 0, txVNetHeaderSize: Int? = nil) {
        self.vnetHeaderSize = vnetHeaderSize
        self.txVNetHeaderSize = txVNetHeaderSize ?? vnetHeaderSize
        var fds: [Int32] = [0, 0]
        let rc = socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        precondition(rc == 0)
        switchEnd = fds[0]; testEnd = fds[1]
    }
    deinit { Glibc.close(switchEnd); Glibc.close(testEnd) }
    func close() {}
    func takePendingError() -> Int32 { 0 }

    var pollFD: Int32 { switchEnd }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        Syscall.io { Glibc.read(switchEnd, buffer.baseAddress, buffer.count) }
    }
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        Syscall.io { Glibc.writev(switchEnd, iov, count) }
    }

    /// The guest sends a frame into the switch.
    func inject(_ frame: [UInt8]) {
        _ = frame.withUnsafeBytes { send(testEnd, $0.baseAddress, $0.count, 0) }
    }

    /// Frames the switch sent to this port within `ms` milliseconds.
    func received(waitingMilliseconds ms: Int32 = 200) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var pfd = pollfd(fd: testEnd, events: Int16(POLLIN), revents: 0)
        while poll(&pfd, 1, out.isEmpty ? ms : 20) > 0 {
            var buf = [UInt8](repeating: 0, count: 70000)
            let n = buf.withUnsafeMutableBytes { recv(testEnd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(Array(buf[0..<n]))
        }
        return out
    }
}

@Suite(.serialized) struct DatapathTests {
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "c.eth0", portGroup: "v20", mode: .access(VLANID(20))),
        PortPlan(name: "t.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil)),
    ], mtu: 1500, staticEntries: [StaticMACEntry(vlan: VLANID(20), mac: mac(0x99), port: 2)])

    func running() throws -> (Datapath, [SocketPairPort]) {
        let ports = (0..<4).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: ports)])
        dp.start()
        return (dp, ports)
    }

    @Test func floodsThenForwardsLearnedUnicast() throws {
        let (dp, p) = try running()
        defer { dp.stop() }
        let a = mac(0xA), b = mac(0xB)
        p[0].inject(FrameBuilder(dst: .broadcast, src: a).type(EtherType.arp).bytes)
        #expect(p[1].received() == [FrameBuilder(dst: .broadcast, src: a).type(EtherType.arp).bytes], "untagged to the other access port")
        #expect(p[3].received() == [FrameBuilder(dst: .broadcast, src: a).tagged(10).type(EtherType.arp).bytes], "tagged 10 to the trunk")
        #expect(p[2].received(waitingMilliseconds: 50).isEmpty, "nothing crosses into VLAN 20")

        p[1].inject(FrameBuilder(dst: a, src: b).bytes)          // reply: a is known
        #expect(p[0].received() == [FrameBuilder(dst: a, src: b).bytes])
        #expect(p[3].received(waitingMilliseconds: 50).isEmpty, "learned unicast is not flooded to the trunk")

        p[0].inject(FrameBuilder(dst: b, src: a).bytes)
        #expect(p[1].received().count == 1)
        #expect(p[3].received(waitingMilliseconds: 50).isEmpty)

        // The trunk reaches VLAN 10 tagged; the access port gets it untagged.
        p[3].inject(FrameBuilder(dst: b, src: mac(0x7)).tagged(10).bytes)
        #expect(p[1].received() == [FrameBuilder(dst: b, src: mac(0x7)).bytes])

        let entries = dp.withLock { l in l.switches[0].table(l).entries(now: .now) }
        #expect(Set(entries.map { "\($0.vlan)/\($0.mac)/\($0.port)" }) == ["10/\(a)/0", "10/\(b)/1", "10/\(mac(0x7))/3", "20/\(mac(0x99))/2"])
    }

    @Test func staticEntryForwardsWithoutLearning() throws {
        let (dp, p) = try running()
        defer { dp.stop() }
        p[3].inject(FrameBuilder(dst: mac(0x99), src: mac(0x5)).tagged(20).bytes)
        #expect(p[2].received() == [FrameBuilder(dst: mac(0x99), src: mac(0x5)).bytes])
    }

    @Test func malformedFramesAreCountedAndForwardingGoesOn() throws {
        let (dp, p) = try running()
        defer { dp.stop() }
        p[0].inject([0x01, 0x02, 0x03])                                            // runt
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).tagged(20).bytes)   // VLAN hop attempt
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).payload(1600).bytes)
        p[0].inject(FrameBuilder(dst: .broadcast, src: .broadcast).bytes)
        p[3].inject(FrameBuilder(dst: .broadcast, src: mac(2)).tagged(30).bytes)
        p[3].inject(FrameBuilder(dst: .broadcast, src: mac(2)).bytes)
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).bytes)              // a good one last
        #expect(p[1].received().count == 1, "only the good frame arrives")
        #expect(p[2].received(waitingMilliseconds: 50).isEmpty)
        let (a, t) = dp.withLock { l in (l.switches[0].counters(l).snapshot(port: 0), l.switches[0].counters(l).snapshot(port: 3)) }
        #expect(a.drops == [.runt: 1, .taggedOnAccessPort: 1, .oversize: 1, .invalidSourceMAC: 1])
        #expect(a.rxFrames == 5)
        #expect(t.drops == [.vlanNotAllowed: 1, .untaggedOnTrunk: 1])
    }
}

@Suite(.serialized) struct ControlSocketTests {
    /// A private socket path, so these tests need neither root nor /run/tapestry.
    static let path = NSTemporaryDirectory() + "tapestry-rt-\(getpid()).sock"

    func request(_ command: String) throws -> Data {
        try controlRequest(socket: Self.path, name: "ctl", ControlRequest(command: command))
    }

    @Test func answersRequestsAndRejectsGarbage() throws {
        let server = try ControlServer(path: Self.path) { req, _ in
            req.command == "status" ? Data("{\"name\":\"ctl\"}".utf8) : ControlServer.error("unknown command '\(req.command)'")
        }
        server.start()
        defer { server.stop() }
        var st = stat()
        #expect(stat(Self.path, &st) == 0 && st.st_mode & 0o777 == 0o600, "socket is 0600")

        let reply = try request("status")
        #expect(String(decoding: reply, as: UTF8.self).contains("\"name\":\"ctl\""))
        #expect(throws: RuntimeError.self) { try request("explode") }

        // Raw garbage and an oversized request get an error reply, never a hang or a crash.
        #expect(raw("not json\n").contains("malformed request"))
        #expect(raw(String(repeating: "x", count: 70_000)).contains("too large"))
        // A client that connects and says nothing is timed out; the server still answers others.
        let silent = connectRaw()
        let again = try request("status")
        #expect(!again.isEmpty)
        close(silent)
    }

    @Test func unknownInstanceIsAClearError() {
        #expect(throws: RuntimeError.self) { try controlRequest(socket: Self.path + ".absent", name: "nosuch", ControlRequest(command: "status")) }
    }

    func connectRaw() -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(Self.path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        return fd
    }

    func raw(_ text: String) -> String {
        let fd = connectRaw()
        defer { close(fd) }
        _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buf = [UInt8](repeating: 0, count: 4096)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }
}

/// A port whose every write fails (a vanished netdev).
final class FailingPort: SocketPairPort {
    override func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult { .failed(EIO) }
}

@Suite(.serialized) struct MirrorAndCaptureTests {
    /// web ports 0 and 1 are mirrored (both directions) to port 2.
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "w1.eth0", portGroup: "web", mode: .access(VLANID(10))),
        PortPlan(name: "w2.eth0", portGroup: "web", mode: .access(VLANID(10))),
        PortPlan(name: "m1.eth0", portGroup: "monitor", mode: .access(VLANID(10))),
    ], mirrors: [MirrorPlan(name: "span0", sources: [0, 1], ingress: true, egress: true, destinations: [2])])

    @Test func mirrorDestinationGetsCopiesOnly() throws {
        let p = (0..<3).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let frame = FrameBuilder(dst: .broadcast, src: mac(1)).bytes
        p[0].inject(frame)
        #expect(p[1].received() == [frame], "forwarded normally")
        // w1 and w2 are both sources: the frame touched both, the monitor gets it once.
        #expect(p[2].received() == [frame])
        p[2].inject(FrameBuilder(dst: .broadcast, src: mac(9)).bytes)
        #expect(p[0].received(waitingMilliseconds: 50).isEmpty && p[1].received(waitingMilliseconds: 50).isEmpty)
        let drops = dp.withLock { l in l.switches[0].counters(l).snapshot(port: 2).drops }
        #expect(drops == [.mirrorDestinationPort: 1])
        #expect(dp.withLock { l in l.switches[0].table(l).lookup(vlan: VLANID(10), mac: mac(9)) } == nil, "a mirror destination never learns")
    }

    @Test func anEgressMirrorCopyFollowsTheFirstEgressThatWasSent() throws {
        // x floods to a and b; both are egress-mirrored to m. a's write fails: m must still
        // get one copy (through b), and only one.
        let plan = SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "x.eth0", portGroup: "web", mode: .access(VLANID(10))),
            PortPlan(name: "a.eth0", portGroup: "web", mode: .access(VLANID(10))),
            PortPlan(name: "b.eth0", portGroup: "web", mode: .access(VLANID(10))),
            PortPlan(name: "m.eth0", portGroup: "monitor", mode: .access(VLANID(10))),
        ], mirrors: [MirrorPlan(name: "span0", sources: [1, 2], ingress: false, egress: true, destinations: [3])])
        let p = [SocketPairPort(), FailingPort(), SocketPairPort(), SocketPairPort()]
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let frame = FrameBuilder(dst: .broadcast, src: mac(1)).bytes
        p[0].inject(frame)
        #expect(p[2].received() == [frame])
        #expect(p[3].received() == [frame], "one copy, through b")
        let aDrops = dp.withLock { l in l.switches[0].counters(l).snapshot(port: 1).drops }
        #expect(aDrops == [.transmitError: 1])
        // Both egresses sent: still one copy.
        let q = [SocketPairPort(), SocketPairPort(), SocketPairPort(), SocketPairPort()]
        let dp2 = try Datapath(switches: [SwitchRuntime(plan: plan, ports: q)])
        dp2.start()
        defer { dp2.stop() }
        q[0].inject(frame)
        #expect(q[1].received() == [frame] && q[2].received() == [frame])
        #expect(q[3].received() == [frame], "de-duplicated")
    }

    @Test func captureSeesIngressEgressAndDropsAndCountsRingOverflow() throws {
        let p = (0..<3).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: SwitchPlan(name: "sw0", ports: Array(plan.ports.prefix(2)) + [PortPlan(name: "x", portGroup: "g", mode: .access(VLANID(20)))]), ports: p)])
        dp.start()
        defer { dp.stop() }
        let all = CaptureSession(selection: CaptureSelection(switchIndex: 0, ports: [true, true, true], vlan: nil, ingress: true, egress: true, drops: false))
        let drops = CaptureSession(selection: CaptureSelection(switchIndex: 0, ports: [true, true, true], vlan: nil, ingress: true, egress: true, drops: true))
        let tiny = CaptureSession(selection: CaptureSelection(switchIndex: 0, ports: [true, true, true], vlan: nil, ingress: true, egress: false, drops: false), slotCount: 2)
        for s in [all, drops, tiny] { dp.addCapture(s) }
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).bytes)
        _ = p[1].received()
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).tagged(20).bytes)
        p[0].inject(FrameBuilder(dst: .broadcast, src: mac(1)).bytes)
        _ = p[1].received()
        let (a, d, t, lost) = dp.withLock { l in (all.drain(), drops.drain(), tiny.drain(), tiny.lost) }
        // The ingress point shows every frame as received, the dropped one too (with its reason).
        #expect(a.map { "\($0.port)\($0.point)" } == ["0ingress", "1egress", "0ingress", "0ingress", "1egress"])
        #expect(a.map(\.reason) == [nil, nil, .taggedOnAccessPort, nil, nil])
        #expect(d.count == 1 && d[0].reason == .taggedOnAccessPort && d[0].port == 0 && d[0].bytes.count == 64)
        #expect(t.count == 2 && lost == 1, "a full ring loses frames and counts them")
        for s in [all, drops, tiny] { dp.removeCapture(s) }
    }
}

/// GSO frames (TSO from a guest) through the switch, with vnet-header ports.
@Suite(.serialized) struct OffloadTests {
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10)), acceptsOffloads: true),
        PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10)), acceptsOffloads: true),
        PortPlan(name: "t.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10)]), native: nil), acceptsOffloads: true),
        PortPlan(name: "plain", portGroup: "v10", mode: .access(VLANID(10))),
    ], mtu: 1500)

    /// virtio_net_hdr: NEEDS_CSUM, GSO TCPv4, hdr_len 54, gso_size 1448, csum_start 34, csum_offset 16.
    static func header(hdrLen: UInt16 = 54, csumStart: UInt16 = 34) -> [UInt8] {
        func le(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        return [1, 1] + le(hdrLen) + le(1448) + le(csumStart) + le(16) + le(0)
    }

    @Test func gsoFrameCrossesTagPushAndPopWithShiftedOffsets() throws {
        let p = [SocketPairPort(vnetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 12), SocketPairPort()]
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let capture = CaptureSession(selection: CaptureSelection(switchIndex: 0, ports: [true, true, true, true], vlan: nil, ingress: true, egress: false, drops: false))
        dp.addCapture(capture)
        // A 20 000-byte TCP GSO frame, far over the 1500 MTU, flooded (unknown unicast).
        let frame = FrameBuilder(dst: mac(0xB), src: mac(0xA)).payload(20_000).bytes
        p[0].inject(Self.header() + frame)
        let atB = p[1].received(), atT = p[2].received()
        #expect(atB == [Self.header() + frame], "access → access: header and frame unchanged")
        let tagged = FrameBuilder(dst: mac(0xB), src: mac(0xA)).tagged(10).payload(20_000).bytes
        #expect(atT == [Self.header(hdrLen: 58, csumStart: 38) + tagged], "push: csum_start and hdr_len move by +4")
        #expect(p[3].received(waitingMilliseconds: 50).isEmpty, "a port without offloads cannot take it")
        let plainDrops = dp.withLock { l in l.switches[0].counters(l).snapshot(port: 3).drops }
        #expect(plainDrops == [.offloadNotSupported: 1])

        // And back: from the trunk, tagged, to the access port: offsets move by -4.
        p[2].inject(Self.header(hdrLen: 58, csumStart: 38) + tagged)
        #expect(p[0].received() == [Self.header() + frame])
        _ = p[1].received()

        // The capture sees the frame without the vnet header, cut at the snap length.
        let records = dp.withLock { l in capture.drain() }
        #expect(records.first?.originalLength == frame.count)
        #expect(records.first?.bytes == Array(frame.prefix(capture.slotSize)))
        dp.removeCapture(capture)
    }

    @Test func oversizeStillAppliesToFramesThatAreNotGSO() throws {
        let p = [SocketPairPort(vnetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 12), SocketPairPort()]
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let noOffload = [UInt8](repeating: 0, count: 12)
        p[0].inject(noOffload + FrameBuilder(dst: .broadcast, src: mac(0xA)).payload(3000).bytes)
        p[0].inject(noOffload + FrameBuilder(dst: .broadcast, src: mac(0xA)).bytes)
        #expect(p[1].received().count == 1)
        #expect(p[3].received() == [FrameBuilder(dst: .broadcast, src: mac(0xA)).bytes], "a plain frame reaches a plain port, header removed")
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 0).drops } == [.oversize: 1])
    }
}


/// Ports that cannot take offloads get GSO frames and partial checksums finished in
/// software, by the datapath, judged by tshark's checksum validation.
@Suite(.serialized) struct SoftwareOffloadTests {
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10)), acceptsOffloads: true),
        PortPlan(name: "t.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10)]), native: nil)),   // no offloads
        PortPlan(name: "p.eth0", portGroup: "v10", mode: .access(VLANID(10))),                                     // no offloads
    ], mtu: 1500)

    @Test(.enabled(if: hasTshark, "tshark is not installed (Scripts/setup.sh installs it)"))
    func gsoFramesAreCutAndPartialChecksumsFinishedForPortsWithoutOffloads() throws {
        let p = [SocketPairPort(vnetHeaderSize: 12), SocketPairPort(), SocketPairPort()]
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        // A 20 000-byte TSO super-frame, flooded (unknown destination).
        let gso = TCPFrames.gso(dst: mac(0xB), src: mac(0xA), payload: 20_000, segmentSize: 1448)
        p[0].inject(gso.header + gso.frame)
        let atTrunk = p[1].received(), atPlain = p[2].received()
        let expected = (20_000 + 1447) / 1448
        #expect(atTrunk.count == expected && atPlain.count == expected, "one wire frame per segment: \(atTrunk.count), \(atPlain.count)")
        #expect(atTrunk.allSatisfy { $0.count <= 1518 } && atPlain.allSatisfy { $0.count <= 1514 }, "wire-sized")
        #expect(atTrunk.allSatisfy { $0.withUnsafeBytes { FrameHeader.parse($0) }?.outerTag?.vid == 10 }, "tagged for the trunk")
        // A partial checksum (NEEDS_CSUM, no GSO): finished for the plain port.
        var small = TCPFrames.gso(dst: mac(0xB), src: mac(0xA), payload: 100, segmentSize: 1448)
        small.header[1] = 0   // no GSO: only the checksum is left to the receiver
        p[0].inject(small.header + small.frame)
        let finished = p[2].received(), finishedTagged = p[1].received()
        #expect(finished.count == 1 && finished.first?.count == small.frame.count)
        #expect(finishedTagged.count == 1 && finishedTagged.first?.count == small.frame.count + 4)
        // tshark validates every IPv4 and TCP checksum of what the ports got.
        let file = NSTemporaryDirectory() + "tapestry-swoffload-\(getpid()).pcap"
        defer { unlink(file) }
        try writePcap(file, frames: atTrunk + atPlain + finished + finishedTagged)
        let r = tsharkFields(file, ["ip.checksum.status", "tcp.checksum.status", "tcp.len"])
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.count == 2 * expected + 2, "\(r.stderr)")
        #expect(rows.allSatisfy { $0.count == 3 && $0[0] == "1" && $0[1] == "1" }, "every checksum good (status 1): \(rows.prefix(3))")
        #expect(rows.prefix(expected).compactMap { Int($0.last ?? "") }.reduce(0, +) == 20_000, "the payload, every byte once")
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 1).txFrames } == UInt64(expected + 1))
    }

    @Test func aMalformedGSOFrameIsCountedNotSentBroken() throws {
        let p = [SocketPairPort(vnetHeaderSize: 12), SocketPairPort(), SocketPairPort()]
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        // GSO claimed on a frame that is not IP: no port without offloads gets a broken copy.
        let junk = FrameBuilder(dst: mac(0xB), src: mac(0xA)).payload(3000).bytes
        p[0].inject(OffloadTests.header() + junk)
        #expect(p[2].received(waitingMilliseconds: 100).isEmpty)
        let drops = dp.withLock { l in l.switches[0].counters(l).snapshot(port: 2).drops }
        #expect(drops == [.offloadNotSupported: 1])
    }
}
