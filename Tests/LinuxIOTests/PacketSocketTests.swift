import CLinux
import Foundation
import Glibc
import Testing
import TestSupport
@testable import LinuxIO

/// A veth pair `tpkXXa` (host side, where the PacketSocket attaches) / `tpkXXb` (in the
/// namespace `tpkXXn`, 10.97.0.1/24, IPv6 off). `remove()` deletes the namespace (and with
/// it both ends) and the host end in case it was never moved.
private struct VethFixture {
    let ns: String, a: String, b: String
    let peerMAC: [UInt8]

    init() throws {
        let p = Capabilities.uniquePrefix("tpk")
        ns = p + "n"; a = p + "a"; b = p + "b"
        let setup = sh("""
            ip netns add \(ns) && \
            ip link add \(a) type veth peer name \(b) netns \(ns) && \
            echo 1 > /proc/sys/net/ipv6/conf/\(a)/disable_ipv6 && \
            ip link set \(a) up && \
            ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.\(b).disable_ipv6=1 && \
            ip -n \(ns) addr add 10.97.0.1/24 dev \(b) && ip -n \(ns) link set \(b) up && ip -n \(ns) link set lo up
            """)
        if !setup.succeeded {
            VethFixture.remove(ns: ns, a: a)
            throw SystemError(operation: "veth setup: \(setup.stderr)", subject: a, errno: EIO)
        }
        let info = ipJSON("ip -n \(ns) -j link show \(b)").first
        guard let mac = MACAddressText(info?["address"] as? String) else {
            VethFixture.remove(ns: ns, a: a)
            throw SystemError(operation: "read MAC", subject: b, errno: EIO)
        }
        peerMAC = mac
    }

    func remove() { VethFixture.remove(ns: ns, a: a) }

    private static func remove(ns: String, a: String) {
        sh("ip link del \(a) 2>/dev/null; ip netns del \(ns) 2>/dev/null")
    }

    /// Sends `count` frames out of `b` from a python raw socket in the namespace: each is
    /// `head` (hex, up to the payload) + a 4-byte big-endian sequence number + zero padding
    /// to at least 60 bytes.
    func sendFromNamespace(headHex: String, count: Int = 1) -> CommandResult {
        let script = """
            import socket, struct
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind(('\(b)', 0))
            head = bytes.fromhex('\(headHex)')
            pad = b'\\0' * max(0, 60 - len(head) - 4)
            for i in range(\(count)):
                s.send(head + struct.pack('!I', i) + pad)
            """
        return sh("ip netns exec \(ns) /usr/bin/python3 -c \"\(script)\"", timeout: 60)
    }
}

/// Carries a background command's result to the test (written before `DispatchGroup`
/// leaves, read after `wait`, so the group orders the accesses).
private final class ResultBox: @unchecked Sendable { var result: CommandResult? }

private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Local experimental ethertype: nothing in the namespace answers it.
private let experimental: [UInt8] = [0x88, 0xB5]
private let ourMAC: [UInt8] = [0x02, 0x00, 0x00, 0x97, 0x00, 0x0A]
private let nsSenderMAC: [UInt8] = [0x02, 0x00, 0x00, 0x97, 0x00, 0x0B]

/// Reads frames until `deadline` passes or `take` returns false, waiting on epoll when the
/// ring is empty.
private func readFrames(_ port: PacketSocket, seconds: Double, _ take: ([UInt8]) -> Bool) throws {
    let ep = try Epoll()
    try ep.add(port.pollFD, events: Epoll.readable, data: 7)
    var events = [EpollEvent](repeating: EpollEvent(), count: 4)
    var buf = [UInt8](repeating: 0, count: 2048)
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        switch buf.withUnsafeMutableBytes({ port.read(into: $0) }) {
        case .bytes(let n):
            if !take(Array(buf[0..<n])) { return }
        case .wouldBlock:
            _ = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 50) }
        case .failed(let e):
            Issue.record("read failed: \(e)")
            return
        }
    }
}

@Suite(.serialized) struct PacketSocketTests {
    @Test(.enabled(if: Capabilities.isRoot, "needs root (CAP_NET_RAW, namespaces, veth)"))
    func opensOnAnInterfaceAndClosesIdempotently() throws {
        let f = try VethFixture()
        defer { f.remove() }
        let port = try PacketSocket(interface: f.a)
        #expect(port.name == f.a)
        #expect(port.ifindex == Int32(if_nametoindex(f.a)))
        #expect(port.pollFD >= 0 && port.vnetHeaderSize == 0)
        #expect(port.kernelIgnoresOutgoing, "Linux >= 4.20 has PACKET_IGNORE_OUTGOING")
        #expect(sh("ip -d -j link show \(f.a)").stdout.contains("\"promiscuity\":1"))
        var buf = [UInt8](repeating: 0, count: 2048)
        #expect(buf.withUnsafeMutableBytes { port.read(into: $0) } == .wouldBlock)
        port.close()
        port.close()
        #expect(port.fd == -1)
        #expect(buf.withUnsafeMutableBytes { port.read(into: $0) } == .failed(EBADF))
        #expect(buf.withUnsafeBytes { port.write($0) } == .failed(EBADF))
        #expect(sh("ip -d -j link show \(f.a)").stdout.contains("\"promiscuity\":0"))
        #expect(throws: SystemError.self) { _ = try PacketSocket(interface: "tpk-none") }
    }

    /// (1) The namespace's kernel ARPs for a neighbour that does not exist; the request
    /// arrives through the ring, signalled by epoll.
    /// Both ring layouts: V3 (blocks) and V2 (a slot and a wake-up per frame).
    @Test(.enabled(if: Capabilities.isRoot, "needs root (CAP_NET_RAW, namespaces, veth)"), arguments: [false, true])
    func readsTheKernelsARPRequestThroughTheRing(perFrameWakeups: Bool) throws {
        let f = try VethFixture()
        defer { f.remove() }
        let port = try PacketSocket(interface: f.a, configuration: .init(perFrameWakeups: perFrameWakeups))
        let ping = DispatchGroup()
        DispatchQueue.global().async(group: ping) { sh("ip netns exec \(f.ns) ping -c2 -i0.5 -W1 10.97.0.2") }
        defer { ping.wait() }

        let ep = try Epoll()
        try ep.add(port.pollFD, events: Epoll.readable, data: 42)
        var events = [EpollEvent](repeating: EpollEvent(), count: 4)
        let n = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 3000) }
        #expect(n == 1 && events[0].data == 42 && events[0].events & Epoll.readable != 0)

        var arp: [UInt8]?
        try readFrames(port, seconds: 3) { frame in
            guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x06 else { return true }
            arp = frame
            return false
        }
        let frame = try #require(arp, "an ARP request came through the ring")
        #expect(Array(frame[0..<6]) == [UInt8](repeating: 0xFF, count: 6))
        #expect(Array(frame[6..<12]) == f.peerMAC)
        #expect(frame[20] == 0 && frame[21] == 1, "ARP request")
        #expect(Array(frame[28..<32]) == [10, 97, 0, 1] && Array(frame[38..<42]) == [10, 97, 0, 2])
        let stats = try port.stats()
        #expect(stats.packets >= 1 && stats.drops == 0)
    }

    /// (2) A frame gathered from three pieces (MACs, a pushed 802.1Q tag, the rest) arrives
    /// in the namespace as one tagged frame.
    @Test(.enabled(if: Capabilities.isRoot && FileManager.default.fileExists(atPath: "/usr/bin/tcpdump"), "needs root and tcpdump"))
    func writevSendsOneTaggedFrameIntoTheNamespace() throws {
        let f = try VethFixture()
        defer { f.remove() }
        let port = try PacketSocket(interface: f.a)

        let capture = DispatchGroup()
        let box = ResultBox()
        DispatchQueue.global().async(group: capture) {
            box.result = sh("ip netns exec \(f.ns) timeout 5 tcpdump -l -c1 -e -nn -i \(f.b) ether src 02:00:00:97:00:0a", timeout: 10)
        }
        var macs = [UInt8](repeating: 0xFF, count: 6) + ourMAC
        var tag: [UInt8] = [0x81, 0x00, 0x00, 30]
        var rest = experimental + [UInt8](repeating: 0xAB, count: 46)
        var sent = 0
        // tcpdump needs a moment to attach; send until it has seen one (at most ~5 s).
        while capture.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            let r = macs.withUnsafeMutableBytes { m in
                tag.withUnsafeMutableBytes { t in
                    rest.withUnsafeMutableBytes { p in
                        var iov = [iovec(iov_base: m.baseAddress, iov_len: 12), iovec(iov_base: t.baseAddress, iov_len: 4),
                                   iovec(iov_base: p.baseAddress, iov_len: p.count)]
                        return port.writev(&iov, count: 3)
                    }
                }
            }
            #expect(r == .bytes(12 + 4 + 48))
            sent += 1
        }
        let seen = box.result
        let out = seen?.stdout ?? ""
        #expect(seen?.succeeded == true, "tcpdump: \(seen?.stderr ?? "")")
        #expect(out.contains("02:00:00:97:00:0a > ff:ff:ff:ff:ff:ff"), "\(out)")
        #expect(out.contains("vlan 30"), "\(out)")
        #expect(out.contains("0x88b5"), "\(out)")
        #expect(sent >= 1)

        var whole = [UInt8](repeating: 0xFF, count: 6) + ourMAC + experimental + [UInt8](repeating: 0, count: 46)
        #expect(whole.withUnsafeMutableBytes { port.write(UnsafeRawBufferPointer($0)) } == .bytes(60))
    }

    /// (3) The kernel strips the tag of a received frame into the ring header; `read` puts
    /// it back at offset 12 (802.1Q with priority, and an 802.1ad outer tag).
    @Test(.enabled(if: Capabilities.isRoot, "needs root (CAP_NET_RAW, namespaces, veth)"), arguments: [false, true])
    func readPutsTheStrippedVLANTagBack(perFrameWakeups: Bool) throws {
        let f = try VethFixture()
        defer { f.remove() }
        let port = try PacketSocket(interface: f.a, configuration: .init(perFrameWakeups: perFrameWakeups))
        let dst = [UInt8](repeating: 0xFF, count: 6)
        // 802.1Q, PCP 3, VID 20; then 802.1ad VID 100 over 802.1Q VID 7.
        let q = dst + nsSenderMAC + [0x81, 0x00, 0x60, 20] + experimental
        let ad = dst + nsSenderMAC + [0x88, 0xA8, 0x00, 100, 0x81, 0x00, 0x00, 7] + experimental
        let r1 = f.sendFromNamespace(headHex: hex(q))
        let r2 = f.sendFromNamespace(headHex: hex(ad))
        try #require(r1.succeeded && r2.succeeded, "python: \(r1.stderr) \(r2.stderr)")

        var frames: [[UInt8]] = []
        try readFrames(port, seconds: 3) { frame in
            if frame.count >= 18, Array(frame[6..<12]) == nsSenderMAC { frames.append(frame) }
            return frames.count < 2
        }
        try #require(frames.count == 2, "both tagged frames arrived")
        #expect(frames[0].count == 60 && frames[1].count == 60, "as long as on the wire, tag included")
        #expect(Array(frames[0][0..<18]) == q, "802.1Q tag 0x8100/PCP 3/VID 20 back at offset 12")
        #expect(Array(frames[1][0..<22]) == ad, "802.1ad outer tag keeps its TPID 0x88a8")
    }

    /// (4) Frames transmitted on the interface are not read back: neither this socket's own
    /// (the kernel never loops those back to their socket) nor another sender's on the same
    /// netdev (the host stack, a second socket), which PACKET_IGNORE_OUTGOING drops — or
    /// `read` on the pre-4.20 fallback path.
    @Test(.enabled(if: Capabilities.isRoot, "needs root (CAP_NET_RAW, namespaces, veth)"), arguments: [false, true])
    func transmittedFramesAreNotReadBack(userspaceFilter: Bool) throws {
        let f = try VethFixture()
        defer { f.remove() }
        let port = try PacketSocket(interface: f.a, configuration: .init(filterOutgoingInUserspace: userspaceFilter))
        #expect(port.kernelIgnoresOutgoing == !userspaceFilter)
        let other = try PacketSocket(interface: f.a)
        defer { other.close() }
        let otherMAC: [UInt8] = [0x02, 0x00, 0x00, 0x97, 0x00, 0x0C]
        var frame = [UInt8](repeating: 0xFF, count: 6) + ourMAC + experimental + [UInt8](repeating: 0, count: 46)
        var fromOther = [UInt8](repeating: 0xFF, count: 6) + otherMAC + experimental + [UInt8](repeating: 0, count: 46)
        for _ in 0..<50 {
            #expect(frame.withUnsafeMutableBytes { port.write(UnsafeRawBufferPointer($0)) } == .bytes(60))
            #expect(fromOther.withUnsafeMutableBytes { other.write(UnsafeRawBufferPointer($0)) } == .bytes(60))
        }
        // A marker from the namespace, sent after ours: once it is read, ours would have been.
        let r = f.sendFromNamespace(headHex: hex([UInt8](repeating: 0xFF, count: 6) + nsSenderMAC + experimental))
        try #require(r.succeeded, "python: \(r.stderr)")
        var own = 0, others = 0, marker = false
        try readFrames(port, seconds: 3) { frame in
            if Array(frame[6..<12]) == ourMAC { own += 1 }
            if Array(frame[6..<12]) == otherMAC { others += 1 }
            if Array(frame[6..<12]) == nsSenderMAC { marker = true; return false }
            return true
        }
        #expect(marker, "the namespace's frame arrived")
        #expect(own == 0 && others == 0, "read back \(own) own and \(others) other outgoing frames")
        #expect(port.outgoingFramesSkipped == (userspaceFilter ? 50 : 0))
        #expect((rxPackets(f.b, in: f.ns) ?? 0) >= 100, "the frames did leave")
    }

    /// (5) Bursts of 2000 frames are read completely, in order, across many small blocks
    /// and around the ring.
    /// V2: 4 KiB blocks of two 2 KiB slots, 2048 slots: the second 2000-frame burst wraps around.
    @Test(.enabled(if: Capabilities.isRoot, "needs root (CAP_NET_RAW, namespaces, veth)"), arguments: [false, true])
    func burstsAreReadCompletelyAcrossBlocks(perFrameWakeups: Bool) throws {
        let f = try VethFixture()
        defer { f.remove() }
        // 8 KiB blocks hold ~50 of these frames: 2000 frames span ~40 blocks of 64, so the
        // second burst wraps around the ring.
        let port = try PacketSocket(interface: f.a, configuration: perFrameWakeups
            ? .init(blockSize: 4096, blockCount: 1024, frameSize: 2048, perFrameWakeups: true)
            : .init(blockSize: 8192, blockCount: 64, frameSize: 2048))
        let head = [UInt8](repeating: 0xFF, count: 6) + nsSenderMAC + experimental
        for burst in 0..<2 {
            let r = f.sendFromNamespace(headHex: hex(head), count: 2000)
            try #require(r.succeeded, "python: \(r.stderr)")
            var next: UInt32 = 0, outOfOrder = 0
            try readFrames(port, seconds: 5) { frame in
                guard frame.count >= 18, Array(frame[6..<14]) == nsSenderMAC + experimental else { return true }
                let seq = frame[14..<18].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                if seq != next { outOfOrder += 1 }
                next = seq + 1
                return next < 2000
            }
            #expect(next == 2000 && outOfOrder == 0, "burst \(burst): read up to \(next), \(outOfOrder) out of order")
        }
        let stats = try port.stats()
        #expect(stats.packets >= 4000 && stats.drops == 0, "\(stats)")
        #expect(port.truncatedFrames == 0)
    }
}
