import CLinux
import Foundation
import Glibc
import Testing
import TestSupport
import Wire
@testable import LinuxIO

// With real kernels: an AF_PACKET ring with virtio-net headers on the receiving
// end of a veth (and of a macvlan on it), traffic from real stacks and tools (iperf3 TCP,
// a UDP_SEGMENT sender, a kernel vxlan tunnel) in the other namespace. Every frame the ring
// hands over is finished by Wire (checksum completion, segmentation) and must then verify —
// in process, and by tshark.

/// Two namespaces joined by a veth: `outside` (`a`, 10.98.0.1, fd98::1) sends, `inside`
/// (`b`, 10.98.0.2, fd98::2) receives — the PacketSocket listens on `b`, or on a macvlan
/// `m` on `b` moved into a third namespace `macvlanNS` (10.98.0.3), so that only `m`
/// answers for its address. Removed with the namespaces; processes are started with
/// `timeout`, so none outlives its command.
private struct Wire2 {
    let outside: String, inside: String, a: String, b: String, m: String, macvlanNS: String

    /// `senderTX`: checksum offload (and with it TSO) on the sending veth end;
    /// `receiverGRO`: GRO on the receiving end; `macvlan`: add `m` on `b`.
    init(senderTX: Bool = true, receiverGRO: Bool = false, macvlan: Bool = false) throws {
        let p = Capabilities.uniquePrefix("tof")
        outside = p + "o"; inside = p + "i"; a = p + "a"; b = p + "b"; m = p + "m"; macvlanNS = p + "v"
        var script = """
            ip netns add \(outside) && ip netns add \(inside) && \
            ip link add \(a) netns \(outside) type veth peer name \(b) netns \(inside) && \
            ip -n \(outside) addr add 10.98.0.1/24 dev \(a) && ip -n \(outside) addr add fd98::1/64 dev \(a) nodad && \
            ip -n \(inside) addr add 10.98.0.2/24 dev \(b) && ip -n \(inside) addr add fd98::2/64 dev \(b) nodad && \
            ip -n \(outside) link set \(a) up && ip -n \(inside) link set \(b) up && \
            ip -n \(outside) link set lo up && ip -n \(inside) link set lo up
            """
        if !senderTX { script += " && ip netns exec \(outside) ethtool -K \(a) tx off" }
        if receiverGRO { script += " && ip netns exec \(inside) ethtool -K \(b) gro on" }
        if macvlan {
            script += " && ip netns add \(macvlanNS) && ip -n \(inside) link add \(m) link \(b) type macvlan mode bridge"
                + " && ip -n \(inside) link set \(m) netns \(macvlanNS) && ip -n \(macvlanNS) addr add 10.98.0.3/24 dev \(m)"
                + " && ip -n \(macvlanNS) link set \(m) up && ip -n \(macvlanNS) link set lo up"
        }
        let r = sh(script)
        if !r.succeeded {
            remove()
            throw SystemError(operation: "namespace setup: \(r.stderr)", subject: p, errno: EIO)
        }
    }

    func remove() { sh("ip netns del \(outside) 2>/dev/null; ip netns del \(inside) 2>/dev/null; ip netns del \(macvlanNS) 2>/dev/null") }
    func outsideRun(_ cmd: String) -> String { "ip netns exec \(outside) \(cmd)" }
    func insideRun(_ cmd: String) -> String { "ip netns exec \(inside) \(cmd)" }

    /// iperf3 TCP from outside to `server` in namespace `serverNS` (default: inside),
    /// `bytes` in total, paced at `rate`.
    func iperfTCP(to server: String, in serverNS: String? = nil, bytes: String = "6M", rate: String = "400M") -> CommandResult {
        let ns = serverNS ?? inside
        return sh("""
            ip netns exec \(ns) timeout 20 iperf3 -s -1 -B \(server) -p 5201 >/dev/null 2>&1 & S=$!; \
            for i in $(seq 50); do ip netns exec \(ns) ss -ltn | grep -q ':5201 ' && break; sleep 0.05; done; \
            \(outsideRun("timeout 20 iperf3 -c \(server) -p 5201 -n \(bytes) -b \(rate) -l 64K")); R=$?; wait $S; exit $R
            """, timeout: 40)
    }

    /// UDP datagrams of `size` bytes sent with UDP_SEGMENT (UDP GSO, `segment` bytes per
    /// wire datagram) from outside to `address`:9 (discard; nothing listens, the datagrams
    /// are just received and dropped by the inside stack).
    func udpGSO(to address: String, size: Int, segment: Int, count: Int) -> CommandResult {
        let script = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_UDP, 103, \(segment))  # UDP_SEGMENT
            for i in range(\(count)):
                s.sendto(bytes([i % 256]) * \(size), ('\(address)', 9))
            """
        return sh(outsideRun("timeout 20 /usr/bin/python3 -c \"\(script)\""), timeout: 30)
    }
}

/// Reads frames from `port` on the calling thread until `done` is set and the ring stays
/// empty for 200 ms (or 20 s pass); returns copies (header + frame).
private func collect(_ port: PacketSocket, until done: ManagedFlag) throws -> [[UInt8]] {
    let ep = try Epoll()
    try ep.add(port.pollFD, events: Epoll.readable, data: 1)
    var events = [EpollEvent](repeating: EpollEvent(), count: 4)
    var buffer = [UInt8](repeating: 0, count: 70_000)
    var frames: [[UInt8]] = []
    var idleSince: Date? = nil
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
        switch buffer.withUnsafeMutableBytes({ port.read(into: $0) }) {
        case .bytes(let n):
            frames.append(Array(buffer[0..<n]))
            idleSince = nil
        case .wouldBlock:
            if done.value {
                if let s = idleSince, Date().timeIntervalSince(s) > 0.2 { return frames }
                if idleSince == nil { idleSince = Date() }
            }
            _ = try events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 20) }
        case .failed(let e):
            Issue.record("read failed: \(e)")
            return frames
        }
    }
    return frames
}

private final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool { lock.lock(); defer { lock.unlock() }; return v }
    func set() { lock.lock(); v = true; lock.unlock() }
}

/// Runs `traffic` on another thread while this one collects frames from `port`.
private func capture(_ port: PacketSocket, during traffic: @escaping @Sendable () -> CommandResult) throws -> ([[UInt8]], CommandResult) {
    let done = ManagedFlag()
    let box = ResultBox2()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { box.result = traffic(); done.set() }
    let frames = try collect(port, until: done)
    group.wait()
    return (frames, box.result!)
}

private final class ResultBox2: @unchecked Sendable { var result: CommandResult? }

/// What a ring handed over, and what Wire made of it.
private struct Handover: CustomStringConvertible {
    var frames = 0
    var byKind: [String: Int] = [:]          // "tcpv4", "udp_l4", …, "none"
    var needsCsum = 0, dataValid = 0, noFlags = 0
    var largest = 0
    var refused: [OffloadDropReason: Int] = [:]
    var verified = 0, failed = 0
    /// NEEDS_CSUM frames whose csum_start is not the TCP/UDP header's offset (a tag put
    /// back without moving it would show here).
    var misplacedCsumStart = 0
    var output: [[UInt8]] = []                // finished wire frames (first ones, for tshark)

    var description: String {
        let kinds = byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "\(frames) frames (\(kinds)); NEEDS_CSUM \(needsCsum), DATA_VALID \(dataValid), no flags \(noFlags); largest \(largest) B; "
            + "after Wire: \(verified) wire frames verify, \(failed) fail, refused \(refused), misplaced csum_start \(misplacedCsumStart)"
    }
}

private let kindNames: [UInt8: String] = [0: "none", 1: "tcpv4", 3: "udp(ufo)", 4: "tcpv6", 5: "udp_l4"]

/// IPv4 header and TCP/UDP checksums of a finished frame (true for frames that are not
/// TCP/UDP over IP: ARP, ND, ICMP pass unchecked).
private func checksumsVerify(_ frame: UnsafeRawBufferPointer) -> Bool {
    guard case .layout(let l) = TransportLayout.parse(frame), let base = frame.baseAddress else { return true }
    if !l.isIPv6 {
        let ihl = Int(frame[l.networkOffset] & 0x0F) * 4
        if InternetChecksum.sum(base + l.networkOffset, count: ihl) != 0xFFFF { return false }
    }
    let length = l.end - l.transportOffset
    let pseudo: UInt16
    if l.isIPv6 {
        pseudo = InternetChecksum.pseudoHeaderSum(ipv6Addresses: base + l.networkOffset + 8, nextHeader: l.transportProtocol, length: length)
    } else {
        let src = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l.networkOffset + 12, as: UInt32.self))
        let dst = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l.networkOffset + 16, as: UInt32.self))
        pseudo = InternetChecksum.pseudoHeaderSum(ipv4Source: src, destination: dst, protocol: l.transportProtocol, length: length)
    }
    if l.transportProtocol == IPProtocol.udp && frame[l.transportOffset + 6] == 0 && frame[l.transportOffset + 7] == 0 { return !l.isIPv6 }
    return InternetChecksum.add(pseudo, InternetChecksum.sum(base + l.transportOffset, count: length)) == 0xFFFF
}

/// Finishes every frame (12-byte header first) as the datapath would for an egress without
/// offloads, and verifies the result.
private func analyse(_ frames: [[UInt8]], keep: Int = 600) -> Handover {
    var h = Handover()
    var scratch = [UInt8](repeating: 0, count: 70_000)
    for f in frames {
        guard f.count > VirtioNetHeader.size else { continue }
        h.frames += 1
        let header = f.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
        var body = Array(f[VirtioNetHeader.size...])
        h.largest = max(h.largest, body.count)
        h.byKind[kindNames[header.gsoKind] ?? "gso \(header.gsoKind)", default: 0] += 1
        if header.needsCsum { h.needsCsum += 1 } else if header.dataValid { h.dataValid += 1 } else { h.noFlags += 1 }
        if header.needsCsum, case .layout(let l) = body.withUnsafeBytes({ TransportLayout.parse($0) }), Int(header.csumStart) != l.transportOffset {
            h.misplacedCsumStart += 1
        }
        func accept(_ wire: [UInt8]) {
            if wire.withUnsafeBytes({ checksumsVerify($0) }) { h.verified += 1 } else { h.failed += 1 }
            if h.output.count < keep { h.output.append(wire) }
        }
        if header.isGSO {
            body.withUnsafeBytes { raw in
                switch Segmentation.plan(frame: raw, header: header) {
                case .refused(let r): h.refused[r, default: 0] += 1
                case .segments(let plan):
                    for i in 0..<plan.segmentCount {
                        let n = scratch.withUnsafeMutableBytes { plan.write(segment: i, into: $0) }
                        accept(Array(scratch[0..<n]))
                    }
                }
            }
        } else {
            if let r = body.withUnsafeMutableBytes({ ChecksumCompletion.complete($0, header: header) }) {
                h.refused[r, default: 0] += 1
            } else {
                accept(body)
            }
        }
    }
    return h
}

/// tshark over the finished frames: every IPv4 header, TCP and UDP checksum good.
private func tsharkAgrees(_ frames: [[UInt8]], _ name: String) throws {
    guard hasTshark, !frames.isEmpty else { return }
    let file = NSTemporaryDirectory() + "offload-\(getpid())-\(name).pcap"
    defer { unlink(file) }
    try writePcap(file, frames: frames)
    let r = tsharkFields(file, ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status"])
    #expect(r.succeeded, "tshark: \(r.stderr)")
    let statuses = r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).map(String.init)
    #expect(!statuses.isEmpty && statuses.allSatisfy { $0 == "1" }, "tshark finds a bad checksum in \(name): \(Set(statuses))")
}

/// The V2 ring the switch uses for uplinks (2 KiB slots, oversize frames whole through the
/// socket queue) and a V3 ring whose 256 KiB blocks hold 64 KiB frames.
private let rings: [(String, PacketSocket.Configuration)] = [
    ("v2", .init(perFrameWakeups: true, vnetHeaderSize: 12, copyOversizeFrames: true, copyQueueBytes: 16 << 20)),
    ("v3", .init(blockSize: 256 * 1024, blockCount: 64, frameSize: 2048, vnetHeaderSize: 12)),
]

private func openPort(_ w: Wire2, on link: String, in ns: String? = nil, _ cfg: PacketSocket.Configuration) throws -> PacketSocket {
    try NetworkNamespace.run(in: ns ?? w.inside) { try PacketSocket(interface: link, configuration: cfg) }
}

@Suite(.serialized) struct OffloadReceiveTests {
    static let canRun = Capabilities.canCreateNamespaces && FileManager.default.isExecutableFile(atPath: "/usr/bin/iperf3")

    /// The default veth (tx checksum and TSO on, as a container's or lab's veth is): the
    /// sender's TCP arrives as 64 KiB TSO frames with partial checksums (TCPV4/TCPV6,
    /// NEEDS_CSUM) — delivered whole on V2 (socket-queue copy) and V3 — and every one
    /// segments into wire frames that verify, in process and in tshark.
    @Test(.enabled(if: canRun, "needs root, namespaces and iperf3"), arguments: [0, 1])
    func vethWithOffloadsHandsOverTSOFramesDescribed(ring: Int) throws {
        let (name, cfg) = rings[ring]
        let w = try Wire2()
        defer { w.remove() }
        let port = try openPort(w, on: w.b, cfg)
        defer { port.close() }
        #expect(port.vnetHeaderSize == 12 && port.kernelVNetHeaderSize == 12, "PACKET_VNET_HDR_SZ 12 on Linux ≥ 6.2")
        let (frames4, r4) = try capture(port) { w.iperfTCP(to: "10.98.0.2") }
        try #require(r4.succeeded, "iperf3 over IPv4: \(r4.stdout) \(r4.stderr)")
        let (frames6, r6) = try capture(port) { w.iperfTCP(to: "fd98::2", bytes: "3M") }
        try #require(r6.succeeded, "iperf3 over IPv6: \(r6.stdout) \(r6.stderr)")
        let h4 = analyse(frames4), h6 = analyse(frames6)
        print("veth tx on, \(name), IPv4: \(h4)")
        print("veth tx on, \(name), IPv6: \(h6)")
        #expect(h4.byKind["tcpv4", default: 0] > 0 && h4.largest > 30_000, "TSO frames arrive whole")
        #expect(h6.byKind["tcpv6", default: 0] > 0)
        #expect(h4.needsCsum > 0 && h4.failed == 0 && h6.failed == 0 && h4.refused.isEmpty && h6.refused.isEmpty)
        #expect(h4.misplacedCsumStart == 0 && h6.misplacedCsumStart == 0)
        #expect(port.checksumNotReadyFrames > 0 && port.gsoFrames > 0)
        #expect(port.truncatedFrames == 0 && port.missingCopies == 0)
        if ring == 0 { #expect(port.copiedFrames > 0, "super-frames came through the socket queue") }
        let stats = try port.stats()
        #expect(stats.drops == 0, "\(stats)")
        try tsharkAgrees(h4.output + h6.output, "veth-\(name)")
    }

    /// 802.1Q-tagged frames with offload metadata (this kernel has no 8021q module, so
    /// they are written by our own send socket with a 12-byte virtio-net header, the way
    /// an uplink transmits): the receiving veth strips the tag into the ring header, `read`
    /// puts it back after the MACs and moves csum_start (and hdr_len) by 4 with it, so the
    /// header still points at the TCP header; completion and segmentation give frames that
    /// verify, tag included. Also shows what the kernel accepts on send: a tagged frame
    /// with a partial checksum, and whether a tagged GSO frame is taken (see the report).
    @Test(.enabled(if: Capabilities.canCreateNamespaces, "needs root and namespaces"))
    func taggedFramesKeepTheirOffsetsRight() throws {
        let w = try Wire2()
        defer { w.remove() }
        let tx = try NetworkNamespace.run(in: w.outside) { try Syscall.require("open tx", subject: w.a) { clp_open_tx(w.a, 12) } }
        defer { Glibc.close(tx) }
        let port = try openPort(w, on: w.b, rings[0].1)
        defer { port.close() }

        var p = TaggedTCP()
        let partial = p.frame(payload: 300)
        let gsoFrame = p.frame(payload: 5000)
        let sentPartial = send(tx, header: VirtioNetHeader(flags: 1, csumStart: 38, csumOffset: 16), frame: partial)
        let sentGSO = send(tx, header: VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoTCPv4, hdrLen: 58, gsoSize: 1000,
                                                        csumStart: 38, csumOffset: 16), frame: gsoFrame)
        print("send socket, tagged: partial checksum → \(sentPartial), TCPV4 GSO → \(sentGSO) (bytes or -errno)")
        #expect(sentPartial == 12 + partial.count)
        let done = ManagedFlag(); done.set()
        let frames = try collect(port, until: done).filter { $0.count > 30 && $0[24] == 0x81 && $0[25] == 0x00 && $0[27] == 10 }
        let h = analyse(frames)
        print("802.1Q VID 10 through the ring: \(h)")
        #expect(h.needsCsum >= 1 && h.misplacedCsumStart == 0 && h.failed == 0 && h.refused.isEmpty && h.verified >= 1)
        for f in frames {
            let header = f.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
            #expect(!header.needsCsum || header.csumStart == 14 + 4 + 20, "TCP header after MACs, tag, EtherType, IPv4")
            if header.isGSO { #expect(header.hdrLen == 0 || header.hdrLen >= 14 + 4 + 20 + 20) }
        }
        if sentGSO > 0 { #expect(h.byKind["tcpv4", default: 0] == 1 && h.verified == 6) }
        try tsharkAgrees(h.output, "vlan")
    }

    /// Without the socket-queue copy, a V2 ring's 2 KiB slots cut TSO super-frames: each is
    /// counted in `truncatedFrames` and skipped — never handed over with a header that
    /// describes bytes the slot does not hold — while wire-sized frames still come through.
    @Test(.enabled(if: canRun, "needs root, namespaces and iperf3"))
    func cutSuperFramesAreCountedNotDelivered() throws {
        let w = try Wire2()
        defer { w.remove() }
        let port = try openPort(w, on: w.b, .init(perFrameWakeups: true, vnetHeaderSize: 12))
        defer { port.close() }
        #expect(!port.copiesOversizeFrames)
        let (frames, r) = try capture(port) { w.iperfTCP(to: "10.98.0.2", bytes: "2M") }
        try #require(r.succeeded, "iperf3: \(r.stdout) \(r.stderr)")
        let h = analyse(frames)
        print("V2 without copy: \(h); truncated \(port.truncatedFrames)")
        #expect(port.truncatedFrames > 0, "TSO frames did not fit the slots")
        #expect(h.largest <= 2048 - 78 && h.failed == 0 && h.refused.isEmpty, "only whole frames were delivered")
        #expect(h.frames > 0)
    }

    /// `ethtool -K … tx off` on the sender: wire-sized frames with complete checksums and
    /// no flags. With GRO on at the receiver the kernel coalesces them into GRO frames
    /// (TCPV4 + NEEDS_CSUM, as tcp_gro_complete leaves them), which segment back into
    /// frames that verify.
    @Test(.enabled(if: canRun, "needs root, namespaces and iperf3"), arguments: [false, true])
    func vethWithoutTXOffload(receiverGRO: Bool) throws {
        let w = try Wire2(senderTX: false, receiverGRO: receiverGRO)
        defer { w.remove() }
        let port = try openPort(w, on: w.b, rings[0].1)
        defer { port.close() }
        let (frames, r) = try capture(port) { w.iperfTCP(to: "10.98.0.2", bytes: "4M", rate: "200M") }
        try #require(r.succeeded, "iperf3: \(r.stdout) \(r.stderr)")
        let h = analyse(frames)
        print("veth tx off, receiver GRO \(receiverGRO ? "on" : "off"): \(h)")
        #expect(h.failed == 0 && h.refused.isEmpty && h.verified > 100)
        if receiverGRO {
            #expect(h.byKind["tcpv4", default: 0] > 0 && h.largest > 3000, "GRO built super-frames")
        } else {
            #expect(h.byKind.keys.sorted() == ["none"] && h.largest <= 1514 && h.needsCsum == 0, "plain wire frames")
        }
        let drops = try port.stats().drops
        #expect(port.truncatedFrames == 0 && drops == 0)
        try tsharkAgrees(h.output, "veth-tx-off")
    }

    /// A macvlan on the veth: the same TSO frames with partial checksums arrive through it.
    @Test(.enabled(if: canRun, "needs root, namespaces and iperf3"))
    func macvlanHandsOverTSOFrames() throws {
        let w: Wire2
        do { w = try Wire2(macvlan: true) } catch {
            // CONFIG_MACVLAN missing: the only reason to skip.
            print("macvlan unavailable on this kernel: \(error)"); return
        }
        defer { w.remove() }
        let port = try openPort(w, on: w.m, in: w.macvlanNS, rings[0].1)
        defer { port.close() }
        let (frames, r) = try capture(port) { w.iperfTCP(to: "10.98.0.3", in: w.macvlanNS) }
        try #require(r.succeeded, "iperf3: \(r.stdout) \(r.stderr)")
        let h = analyse(frames)
        print("macvlan on veth: \(h)")
        #expect(h.byKind["tcpv4", default: 0] > 0 && h.needsCsum > 0 && h.failed == 0 && h.refused.isEmpty)
        let drops = try port.stats().drops
        #expect(port.truncatedFrames == 0 && drops == 0)
        try tsharkAgrees(h.output, "macvlan")
    }

    /// A UDP GSO sender (UDP_SEGMENT): each 12 000-byte send crosses the veth as one
    /// super-frame described as GSO_UDP_L4 (5, absent from the 6.1 headers) with gso_size
    /// 1200, and segments into ten datagrams whose checksums verify.
    @Test(.enabled(if: canRun, "needs root, namespaces and python3"))
    func udpGSOIsDescribedAsUDPL4() throws {
        let w = try Wire2()
        defer { w.remove() }
        let port = try openPort(w, on: w.b, rings[0].1)
        defer { port.close() }
        let (frames, r) = try capture(port) { w.udpGSO(to: "10.98.0.2", size: 12_000, segment: 1200, count: 20) }
        try #require(r.succeeded, "python: \(r.stderr)")
        let udp = frames.filter { f in
            f.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }.gsoType == VirtioNetHeader.gsoUDPL4
        }
        print("UDP_SEGMENT sender: \(analyse(frames))")
        #expect(udp.count == 20, "every send is one UDP_L4 super-frame")
        for f in udp {
            let header = f.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
            #expect(header.gsoSize == 1200 && header.needsCsum && f.count == 12 + 14 + 20 + 8 + 12_000)
        }
        let h = analyse(udp)
        #expect(h.verified == 200 && h.failed == 0)
        try tsharkAgrees(h.output, "udp-gso")
    }

    /// A GSO frame the virtio-net header cannot describe — a kernel vxlan tunnel's TCP
    /// (SKB_GSO_UDP_TUNNEL) crossing the veth — is counted, never silently lost: the kernel
    /// drops it and counts it in PACKET_STATISTICS, or hands it over as TCPV4 over a UDP
    /// header, which Segmentation refuses as `gso-type-mismatch`.
    @Test(.enabled(if: canRun, "needs root, namespaces and iperf3"))
    func tunnelGSOIsCounted() throws {
        let w = try Wire2()
        defer { w.remove() }
        let vx = w.a.dropLast() + "x"
        let setup = sh("""
            \(w.outsideRun("ip link add \(vx) type vxlan id 42 dstport 4789 local 10.98.0.1 remote 10.98.0.2 dev \(w.a)")) && \
            \(w.insideRun("ip link add \(vx) type vxlan id 42 dstport 4789 local 10.98.0.2 remote 10.98.0.1 dev \(w.b)")) && \
            ip -n \(w.outside) addr add 10.99.0.1/24 dev \(vx) && ip -n \(w.inside) addr add 10.99.0.2/24 dev \(vx) && \
            ip -n \(w.outside) link set \(vx) up && ip -n \(w.inside) link set \(vx) up
            """)
        try #require(setup.succeeded, "vxlan setup: \(setup.stderr)")
        let port = try openPort(w, on: w.b, rings[0].1)
        defer { port.close() }
        let (frames, r) = try capture(port) { w.iperfTCP(to: "10.99.0.2", bytes: "4M") }
        try #require(r.succeeded, "iperf3 through vxlan: \(r.stdout) \(r.stderr)")
        let h = analyse(frames)
        let drops = try port.stats().drops
        print("vxlan-in-veth: \(h); kernel drops \(drops)")
        let refusedAsMismatch = h.refused[.gsoTypeMismatch, default: 0]
        #expect(drops > 0 || refusedAsMismatch > 0, "tunnel super-frames are counted somewhere")
        #expect(h.failed == 0, "whatever was handed over and finished verifies")
    }

    /// The send socket with a 12-byte virtio-net header (PACKET_VNET_HDR_SZ): a UDP GSO
    /// frame (4000 bytes, gso_size 1000) with a partial checksum, written by us into a
    /// veth whose tx checksum offload is off, is segmented and its checksums completed by
    /// the kernel (software GSO for the device); the inside stack validates them and its
    /// socket receives four 1000-byte datagrams, `InCsumErrors` unchanged. A wrong
    /// pseudo-header seed, sent next, is counted as four checksum errors: the check bites.
    /// The 10-byte form works the same way; other sizes are refused.
    @Test(.enabled(if: Capabilities.canCreateNamespaces, "needs root and namespaces"), arguments: [12, 10])
    func sendSocketTakesVirtioNetHeaders(size: Int) throws {
        let w = try Wire2(senderTX: false)
        defer { w.remove() }
        #expect(clp_open_tx("lo", 11) == -EINVAL)
        let fd = try NetworkNamespace.run(in: w.outside) { try Syscall.require("open tx", subject: w.a) { clp_open_tx(w.a, Int32(size)) } }
        defer { Glibc.close(fd) }
        let mac = sh(w.insideRun("cat /sys/class/net/\(w.b)/address")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let dst = mac.split(separator: ":").map { UInt8($0, radix: 16)! }
        try #require(dst.count == 6)

        func send(seedDelta: UInt16) -> Int {
            // Ethernet / IPv4 10.98.0.1 → 10.98.0.2 / UDP 7777 → 7000, 4000 bytes.
            var frame = dst + [2, 0, 0, 0, 0x98, 1, 0x08, 0x00]
            var ip: [UInt8] = [0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 98, 0, 1, 10, 98, 0, 2]
            let total = 20 + 8 + 4000
            ip[2] = UInt8(total >> 8); ip[3] = UInt8(total & 0xFF)
            let c = ip.withUnsafeBytes { ~InternetChecksum.sum($0) }
            ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xFF)
            frame += ip + [0x1E, 0x61, 0x1B, 0x58, UInt8((8 + 4000) >> 8), UInt8((8 + 4000) & 0xFF), 0, 0]
            frame += (0..<4000).map { UInt8(truncatingIfNeeded: $0) }
            let seed = InternetChecksum.pseudoHeaderSum(ipv4Source: 0x0A62_0001, destination: 0x0A62_0002, protocol: 17, length: 4008) &+ seedDelta
            frame[14 + 20 + 6] = UInt8(seed >> 8); frame[14 + 20 + 7] = UInt8(seed & 0xFF)
            var header = [UInt8](repeating: 0xEE, count: size)
            header.withUnsafeMutableBytes {
                VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoUDPL4, hdrLen: 42, gsoSize: 1000, csumStart: 34, csumOffset: 6)
                    .store(to: $0.baseAddress!, size: size)
            }
            return header.withUnsafeMutableBytes { h in
                frame.withUnsafeMutableBytes { f in
                    var iov = [iovec(iov_base: h.baseAddress, iov_len: h.count), iovec(iov_base: f.baseAddress, iov_len: f.count)]
                    return clp_sendv(fd, &iov, 2) - size - f.count
                }
            }
        }
        // A listener that prints the size of every datagram it gets within 2 s of quiet.
        let listener = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(('10.98.0.2', 7000))
            s.settimeout(2)
            sizes = []
            try:
                while True: sizes.append(len(s.recv(65536)))
            except socket.timeout: pass
            print(' '.join(map(str, sizes)))
            """
        let box = ResultBox2()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { box.result = sh(w.insideRun("timeout 20 /usr/bin/python3 -c \"\(listener)\""), timeout: 30) }
        for _ in 0..<100 where !sh(w.insideRun("ss -lun")).stdout.contains(":7000 ") { usleep(20_000) }
        let before = udpCounters(w)
        #expect(send(seedDelta: 0) == 0, "the whole frame was accepted")
        group.wait()
        let good = udpCounters(w)
        #expect(box.result?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1000 1000 1000 1000", "datagrams: \(box.result?.stdout ?? "") \(box.result?.stderr ?? "")")
        #expect(good.checksumErrors == before.checksumErrors, "no checksum error")
        #expect(send(seedDelta: 1) == 0)
        var bad = udpCounters(w)
        for _ in 0..<40 where bad.checksumErrors - good.checksumErrors < 4 { usleep(50_000); bad = udpCounters(w) }
        #expect(bad.checksumErrors - good.checksumErrors == 4, "a wrong seed gives four checksum errors")
    }

    /// A TAP with a 12-byte virtio-net header (TUNSETVNETHDRSZ) and USO among its offloads:
    /// a UDP_SEGMENT sender in the guest namespace hands the switch one UDP_L4 super-frame
    /// per send, described in the first 10 bytes, the frame starting at byte 12.
    @Test(.enabled(if: Capabilities.canCreateTAP && Capabilities.canCreateNamespaces, "needs root, /dev/net/tun and namespaces"))
    func tapWithTwelveByteHeaderAndUSO() throws {
        let p = Capabilities.uniquePrefix("tot")
        let ns = p + "n", name = p + "t"
        let tap = try TAPDevice(name: name, vnetHeader: true)
        defer { tap.close(); sh("ip netns del \(ns) 2>/dev/null") }
        #expect(try tap.currentVNetHeaderSize() == 12, "TAPDevice sets the switch's 12-byte header")
        try tap.setVNetHeaderSize(10)
        #expect(try tap.currentVNetHeaderSize() == 10)
        try tap.setVNetHeaderSize(12)
        #expect(try tap.currentVNetHeaderSize() == 12)
        try tap.setOffloads([.tcp, .uso4, .uso6])
        let setup = sh("""
            ip netns add \(ns) && ip link set \(name) netns \(ns) && ip -n \(ns) addr add 10.97.5.1/24 dev \(name) && \
            ip -n \(ns) link set \(name) up && ip -n \(ns) neigh add 10.97.5.2 lladdr 02:00:00:00:05:02 dev \(name) && \
            ip netns exec \(ns) ethtool -k \(name)
            """)
        try #require(setup.succeeded, "setup: \(setup.stderr)")
        #expect(setup.stdout.contains("tx-udp-segmentation: on"), "USO advertised to the guest")
        let script = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_UDP, 103, 1000)
            for i in range(5):
                s.sendto(b'u' * 5000, ('10.97.5.2', 9))
            """
        let r = sh("ip netns exec \(ns) timeout 10 /usr/bin/python3 -c \"\(script)\"")
        try #require(r.succeeded, "python: \(r.stderr)")
        var buffer = [UInt8](repeating: 0, count: 70_000)
        var found = 0
        for _ in 0..<100 {
            switch buffer.withUnsafeMutableBytes({ tap.read(into: $0) }) {
            case .bytes(let n):
                let h = buffer.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!, size: VirtioNetHeader.legacySize) }
                let frame = Array(buffer[12..<n])
                guard h.gsoType == VirtioNetHeader.gsoUDPL4 else { continue }
                found += 1
                #expect(h.gsoSize == 1000 && h.needsCsum && frame.count == 14 + 20 + 8 + 5000 && frame[12] == 0x08 && frame[13] == 0x00)
                if case .segments(let plan) = frame.withUnsafeBytes({ Segmentation.plan(frame: $0, header: h) }) {
                    #expect(plan.segmentCount == 5)
                } else { Issue.record("USO frame from the TAP did not plan") }
            case .wouldBlock: usleep(10_000)
            case .failed(let e): Issue.record("read: \(e)")
            }
            if found == 5 { break }
        }
        #expect(found == 5, "five UDP_L4 super-frames")
    }
}

/// Udp NoPorts and InCsumErrors of the inside namespace (/proc/net/snmp).
private func udpCounters(_ w: Wire2) -> (noPorts: Int, checksumErrors: Int) {
    let lines = sh(w.insideRun("cat /proc/net/snmp")).stdout.split(separator: "\n").filter { $0.hasPrefix("Udp:") }
    guard lines.count >= 2 else { return (-1, -1) }
    let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
    func value(_ n: String) -> Int { names.firstIndex { $0 == n }.flatMap { Int(values[$0]) } ?? -1 }
    return (value("NoPorts"), value("InCsumErrors"))
}

/// A TCP segment 10.98.0.1:40000 → 10.98.0.2:5201 in VLAN 10, checksum partial (seeded).
private struct TaggedTCP {
    var sequence: UInt32 = 1000
    mutating func frame(payload n: Int) -> [UInt8] {
        var f: [UInt8] = [2, 0, 0, 0, 0x98, 2, 2, 0, 0, 0, 0x98, 1, 0x81, 0x00, 0x00, 10, 0x08, 0x00]
        var ip: [UInt8] = [0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 98, 0, 1, 10, 98, 0, 2]
        let total = 20 + 20 + n
        ip[2] = UInt8(total >> 8); ip[3] = UInt8(total & 0xFF)
        let c = ip.withUnsafeBytes { ~InternetChecksum.sum($0) }
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xFF)
        var tcp: [UInt8] = [0x9C, 0x40, 0x14, 0x51, 0, 0, 0, 0, 0, 0, 0, 1, 0x50, 0x18, 0x01, 0xF6, 0, 0, 0, 0]
        for k in 0..<4 { tcp[4 + k] = UInt8(truncatingIfNeeded: sequence >> UInt32(24 - 8 * k)) }
        let seed = InternetChecksum.pseudoHeaderSum(ipv4Source: 0x0A62_0001, destination: 0x0A62_0002, protocol: 6, length: 20 + n)
        tcp[16] = UInt8(seed >> 8); tcp[17] = UInt8(seed & 0xFF)
        f += ip + tcp + (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        sequence &+= UInt32(n)
        return f
    }
}

/// Writes one frame with a 12-byte virtio-net header through a send socket; the byte
/// count or -errno.
private func send(_ fd: Int32, header: VirtioNetHeader, frame: [UInt8]) -> Int {
    var h = [UInt8](repeating: 0, count: 12)
    var f = frame
    h.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
    return h.withUnsafeMutableBytes { hb in
        f.withUnsafeMutableBytes { fb in
            var iov = [iovec(iov_base: hb.baseAddress, iov_len: 12), iovec(iov_base: fb.baseAddress, iov_len: fb.count)]
            return clp_sendv(fd, &iov, 2)
        }
    }
}

@Suite struct NamespaceRunTests {
    /// `NetworkNamespace.run` runs its body inside the namespace (a different
    /// /proc/thread-self/ns/net than the caller's, the same inode as /run/netns/NAME), leaves
    /// the caller where it was, and passes results and errors through.
    @Test(.enabled(if: Capabilities.canCreateNamespaces, "needs root (CAP_SYS_ADMIN)"))
    func runsTheBodyInsideTheNamespace() throws {
        let ns = uniqueName("r")
        try NetworkNamespace.create(ns)
        defer { try? NetworkNamespace.delete(ns) }
        func current() -> String { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net")) ?? "?" }
        let mine = current()
        let theirs = try NetworkNamespace.run(in: ns) { current() }
        var st = stat()
        #expect(stat("\(NetworkNamespace.directory)/\(ns)", &st) == 0)
        #expect(theirs == "net:[\(st.st_ino)]" && theirs != mine)
        #expect(current() == mine, "the caller stays in its namespace")
        struct Marker: Error, Equatable {}
        #expect(throws: Marker.self) { try NetworkNamespace.run(in: ns) { throw Marker() } }
        #expect(throws: SystemError.self) { try NetworkNamespace.run(in: "tio-no-such-ns") { 1 } }
    }
}
