import CLinux
import Core
import LinuxIO
import Model
import Synchronization
import Wire
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// Why a packet that reached an underlay endpoint never reached a tunnel port; counted per
/// endpoint (shown by `tapestry ports` and `status` under "underlay"). `description` is the
/// counter's name.
public enum UnderlayDrop: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// The outer source address is not a VTEP of the fabric (`TunnelDemux.Miss.unknownVTEP`).
    case unknownVTEP
    /// The VNI is in no range the sending VTEP shares with this host.
    case unknownVNI
    /// Shorter than the VXLAN header and an inner Ethernet header.
    case truncated
    /// The VXLAN I flag is clear (RFC 7348 §5).
    case missingIFlag
    /// VXLAN-GPE's P bit: the payload may not be Ethernet.
    case notEthernet
    /// Longer than the largest frame a switch takes (MTU 9216 and tags): cut by the
    /// receive buffer.
    case oversize

    public var description: String {
        switch self {
        case .unknownVTEP: return "unknown-vtep"
        case .unknownVNI: return "unknown-vni"
        case .truncated: return VXLAN.DropReason.truncated.description
        case .missingIFlag: return VXLAN.DropReason.missingIFlag.description
        case .notEthernet: return VXLAN.DropReason.nextProtocolNotEthernet.description
        case .oversize: return "vxlan-oversize"
        }
    }

    init(_ r: VXLAN.DropReason) {
        switch r {
        case .missingIFlag: self = .missingIFlag
        case .nextProtocolNotEthernet: self = .notEthernet
        default: self = .truncated
        }
    }

    init(_ m: TunnelDemux.Miss) { self = m == .unknownVTEP ? .unknownVTEP : .unknownVNI }
}

/// One VXLAN underlay endpoint of this host: its address, one UDP port, the sockets
/// (`UnderlaySocket`), the demultiplexer from (source, VNI) to tunnel port, per-queue send
/// batches, and counters.
///
/// ```
///   receive (Datapath+Underlay.swift, a worker per socket):
///     recvmmsg ≤ 64 → VXLAN header (Wire) → TunnelDemux (Core) → tag for the VLAN → decide
///   send (TunnelPort.writev / flush, from the datapath's transmit list):
///     per frame: outer IP/UDP/VXLAN built in the queue's batch → one sendmmsg per ≤ 64
/// ```
/// Every tunnel port on this UDP port (every switch, every peer) shares the endpoint, so a
/// flood to three tunnels is one system call.
///
/// Threads: queue q's receive scratch and send batch belong to the worker that uses queue q
/// (receive: the worker polling socket q; send: worker q, since tunnel ports have one queue
/// per worker). `demux` and the receive counters change only under the datapath lock; the
/// send counters are atomics (sends happen outside the lock).
public final class UnderlayEndpoint {
    public let socket: UnderlaySocket
    public let udpPort: UInt16
    /// This host's underlay address (outer source).
    public let local: UnderlayAddress
    /// `ADDRESS:PORT` (IPv6 in brackets), and ` in netns NS` when in one.
    public let label: String
    /// The network namespace holding the address (nil: the daemon's own).
    public let namespace: String?
    /// The underlay link's MTU when the endpoint was opened.
    public let mtu: Int
    /// Rebuilt by `Datapath.replaceSwitches` from the running plans (under the lock).
    var demux = TunnelDemux(plans: [], udpPort: 0)
    fileprivate let batches: [SendBatch]
    let receive: [ReceiveScratch]

    // Receive counters: under the datapath lock.
    var rxPackets: UInt64 = 0
    var rxBytes: UInt64 = 0
    var drops: [UInt64] = Array(repeating: 0, count: UnderlayDrop.allCases.count)
    // Send counters: updated once per sendmmsg, outside the lock.
    let txPackets = Atomic<UInt64>(0)
    let txBytes = Atomic<UInt64>(0)
    let txErrors = Atomic<UInt64>(0)

    /// Receive queues (one socket each).
    public var queueCount: Int { socket.receivers.count }
    func pollFD(queue: Int) -> Int32 { socket.receivers[queue] }

    /// Opens the endpoint for `address`:`port` with `queues` receive sockets, in namespace
    /// `namespace` (nil: the daemon's). Reads the MTU of the link holding the address there.
    /// - Throws: `SystemError` naming the endpoint and errno (EADDRNOTAVAIL: the address is
    ///   not on any link of that namespace).
    public init(address: IPAddress, port: UInt16, namespace: String?, queues: Int) throws {
        let k = TunnelDemux.key(address)
        local = UnderlayAddress(high: k.high, low: k.low)
        udpPort = port
        self.namespace = namespace
        let text = address.isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
        label = text + (namespace.map { " in netns \($0)" } ?? "")
        let open = { [label] () throws -> (UnderlaySocket, Int) in
            let mtu = try UnderlaySocket.mtu(ipv6: address.isIPv6, address: k.high, k.low, label: label)
            return (try UnderlaySocket(ipv6: address.isIPv6, address: k.high, k.low, port: port, queues: queues, label: label), mtu)
        }
        (socket, mtu) = try namespace.map { try NetworkNamespace.run(in: $0, open) } ?? open()
        batches = (0..<queues).map { _ in SendBatch() }
        receive = (0..<queues).map { _ in ReceiveScratch() }
    }

    /// Closes the sockets. Idempotent.
    public func close() { socket.close() }

    /// Counts a dropped packet (under the datapath lock).
    @inline(__always) func drop(_ why: UnderlayDrop) { drops[why.rawValue] &+= 1 }

    /// Sends whatever queue `queue` has batched (one sendmmsg per 64 packets). A packet the
    /// kernel refuses is counted in `txErrors` and skipped; the rest still go.
    func flush(queue: Int) {
        let b = batches[queue]
        guard b.count > 0 else { return }
        var i = 0, sent = 0, bytes: UInt64 = 0, errors: UInt64 = 0
        while i < b.count {
            let n = min(b.count - i, UnderlaySocket.batch)
            let r = socket.send(b.iov, first: b.first + i, counts: b.pieces + i, destinations: b.destinations + i, count: n)
            if r > 0 {
                for j in i..<(i + r) { bytes &+= UInt64(b.lengths[j]) }
                sent += r; i += r
            } else {
                errors &+= 1; i += 1   // the packet at i failed (or EAGAIN: the socket is full)
            }
        }
        b.count = 0; b.iovUsed = 0
        if sent > 0 {
            txPackets.add(UInt64(sent), ordering: .relaxed)
            txBytes.add(bytes, ordering: .relaxed)
        }
        if errors > 0 { txErrors.add(errors, ordering: .relaxed) }
    }

    /// Puts one frame on queue `queue`'s batch, encapsulated for `tunnel`. The frame is
    /// `iov[0..<count]` in the tunnel's form (MACs, an 802.1Q tag naming the VLAN, the rest;
    /// `TunnelPeer`): the tag becomes the VNI, the outer headers go into the batch's scratch
    /// with the first bytes of the inner frame, the rest is sent from where it lies (until
    /// `flush`, which the datapath calls before its buffers change).
    ///
    /// Returns `.bytes(length)`, or `.failed(EINVAL)` for a frame without the tag or shorter
    /// than an Ethernet header (a bug upstream), `.failed(EMSGSIZE)` beyond 16-bit lengths.
    /// Per-frame path: no allocation, no lock.
    @inline(__always)
    func enqueue(queue: Int, _ tunnel: TunnelPort, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        let b = batches[queue]
        if b.count == SendBatch.capacity || b.iovUsed + Int(count) + 1 > SendBatch.iovCapacity { flush(queue: queue) }
        var total = 0
        for i in 0..<Int(count) { total += iov[i].iov_len }
        guard total >= 18 else { return .failed(EINVAL) }
        let k = b.count
        let slot = b.scratch + k * SendBatch.slotSize
        // The first bytes of the frame, gathered: MACs, tag, and enough for the flow hash.
        let head = min(total, SendBatch.headBytes)
        let tmp = b.gather
        var got = 0, piece = 0, inPiece = 0
        while got < head {
            let take = min(iov[piece].iov_len - inPiece, head - got)
            if take > 0 { (tmp + got).copyMemory(from: iov[piece].iov_base! + inPiece, byteCount: take) }
            got += take; inPiece += take
            if inPiece == iov[piece].iov_len { piece += 1; inPiece = 0 }
        }
        guard UInt16(bigEndian: tmp.loadUnaligned(fromByteOffset: 12, as: UInt16.self)) == EtherType.vlan else { return .failed(EINVAL) }
        let vid = UInt16(bigEndian: tmp.loadUnaligned(fromByteOffset: 14, as: UInt16.self)) & 0x0FFF
        // The inner frame's head after the outer headers: MACs, then what followed the tag.
        let inner = slot + SendBatch.innerOffset
        inner.copyMemory(from: tmp, byteCount: 12)
        (inner + 12).copyMemory(from: tmp + 16, byteCount: head - 16)
        let innerHead = head - 4
        let innerLength = total - 4
        let e = tunnel.encapsulation
        let hash = FlowHash.of(UnsafeRawBufferPointer(start: inner, count: innerHead))
        var innerSum: UInt16 = 0
        if e.needsInnerSum {
            innerSum = InternetChecksum.sum(inner, count: innerHead)
            var odd = innerHead & 1 == 1
            var p = piece, off = inPiece
            while p < Int(count) {
                let n = iov[p].iov_len - off
                if n > 0 {
                    var s = InternetChecksum.sum(iov[p].iov_base! + off, count: n)
                    if odd { s = s.byteSwapped }
                    innerSum = InternetChecksum.add(innerSum, s)
                    if n & 1 == 1 { odd.toggle() }
                }
                p += 1; off = 0
            }
        }
        let headerLength = e.headerLength
        b.ipID &+= 1
        guard e.write(to: inner - headerLength, vni: tunnel.vniBase &+ UInt32(vid), innerLength: innerLength, flowHash: hash,
                      ipv4ID: b.ipID, innerSum: innerSum) == headerLength else { return .failed(EMSGSIZE) }
        // The message: [outer headers + inner head] then the rest where it lies.
        var v = b.iovUsed
        b.first[k] = UInt32(v)
        b.iov[v] = iovec(iov_base: inner - headerLength, iov_len: headerLength + innerHead); v += 1
        var p = piece, off = inPiece
        while p < Int(count) {
            let n = iov[p].iov_len - off
            if n > 0 { b.iov[v] = iovec(iov_base: iov[p].iov_base! + off, iov_len: n); v += 1 }
            p += 1; off = 0
        }
        b.pieces[k] = UInt32(v - b.iovUsed)
        b.iovUsed = v
        b.destinations[k] = tunnel.destination
        b.lengths[k] = UInt32(headerLength + innerLength)
        b.count = k + 1
        return .bytes(total)
    }

    /// A copy of the counters (call under the datapath lock for the receive side).
    func counters() -> UnderlayCounters {
        UnderlayCounters(label: label, rxPackets: rxPackets, rxBytes: rxBytes,
                         txPackets: txPackets.load(ordering: .relaxed), txBytes: txBytes.load(ordering: .relaxed),
                         txErrors: txErrors.load(ordering: .relaxed),
                         drops: Dictionary(uniqueKeysWithValues: UnderlayDrop.allCases.compactMap { d in
                             drops[d.rawValue] > 0 ? (d.description, drops[d.rawValue]) : nil }))
    }
}

/// An underlay endpoint's counters, as `ports` and `status` show them.
public struct UnderlayCounters: Codable, Equatable, Sendable {
    /// `ADDRESS:PORT`, and ` in netns NS`.
    public var label: String
    /// VXLAN packets received (all, dropped ones included) and their UDP payload bytes.
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    /// Packets handed to the kernel, and their IP bytes.
    public var txPackets: UInt64
    public var txBytes: UInt64
    /// Packets the kernel refused (a full socket buffer, no route, EMSGSIZE).
    public var txErrors: UInt64
    /// Packets dropped before any tunnel port, by `UnderlayDrop` name.
    public var drops: [String: UInt64]
}

/// One queue's batch of outgoing packets, allocated once.
final class SendBatch {
    static let capacity = 256
    static let iovCapacity = 256 * 6
    /// Per packet: room for the outer headers (≤ 56 bytes) before `innerOffset`, then the
    /// inner frame's first `headBytes - 4` bytes.
    static let slotSize = 192
    static let innerOffset = 64
    static let headBytes = 128
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: SendBatch.capacity * SendBatch.slotSize, alignment: 64)
    let gather = UnsafeMutableRawPointer.allocate(byteCount: SendBatch.headBytes, alignment: 16)
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: SendBatch.iovCapacity)
    let first = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let pieces = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let destinations = UnsafeMutablePointer<clu_address>.allocate(capacity: SendBatch.capacity)
    var count = 0
    var iovUsed = 0
    var ipID: UInt16 = 0
    deinit {
        scratch.deallocate(); gather.deallocate(); iov.deallocate(); first.deallocate(); pieces.deallocate()
        lengths.deallocate(); destinations.deallocate()
    }
}

/// One queue's receive metadata, allocated once (the frames land in the worker's area).
final class ReceiveScratch {
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 2 * UnderlaySocket.batch)
    let sources = UnsafeMutablePointer<clu_address>.allocate(capacity: UnderlaySocket.batch)
    let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: UnderlaySocket.batch)
    deinit { iov.deallocate(); sources.deallocate(); lengths.deallocate() }
}

/// A tunnel port (issue 17): one remote VTEP of one switch, sending through the shared
/// `UnderlayEndpoint` of its UDP port. Its frames arrive through the endpoint (the datapath
/// polls the endpoint's sockets, not the port: `isPolled` is false).
///
/// Queues: one per datapath worker, so each worker fills its own send batch; `flush(queue:)`
/// sends the batch (every tunnel's frames of that worker's round together).
///
/// Offloads: none (`txVNetHeaderSize` 0): `PortPlan.acceptsOffloads` is false for tunnels,
/// so `collectEgress` refuses GSO frames and partial checksums before they get here. When
/// the datapath can segment at egress (issue 13), the hook is the transmit list: hand this
/// port the segments, each a plain frame in the tunnel's form, one `writev` per segment —
/// `enqueue` already builds one outer header per call.
public final class TunnelPort: PortIO {
    let endpoint: UnderlayEndpoint
    let encapsulation: VXLANEncapsulation
    let destination: clu_address
    let vniBase: UInt32
    /// `SWITCH/PORT`, for messages.
    public let label: String
    public let queueCount: Int

    /// - Parameters:
    ///   - queues: the datapath's worker count (worker w writes through queue w).
    public init(label: String, endpoint: UnderlayEndpoint, remote: IPAddress, vniBase: UInt32, queues: Int) {
        self.label = label
        self.endpoint = endpoint
        let k = TunnelDemux.key(remote)
        destination = clu_address(hi: k.high, lo: k.low)
        encapsulation = VXLANEncapsulation(source: endpoint.local, destination: UnderlayAddress(high: k.high, low: k.low),
                                           port: endpoint.udpPort)
        self.vniBase = vniBase
        queueCount = max(1, min(queues, endpoint.queueCount))
    }

    public var isPolled: Bool { false }
    public func pollFD(queue: Int) -> Int32 { -1 }
    public var vnetHeaderSize: Int { 0 }
    public var txVNetHeaderSize: Int { 0 }
    /// Frames arrive through the endpoint: never read here.
    public func read(queue: Int, into: UnsafeMutableRawBufferPointer) -> IOResult { .wouldBlock }
    @inline(__always)
    public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        endpoint.enqueue(queue: queue, self, iov, count: count)
    }
    public func flush(queue: Int) { endpoint.flush(queue: queue) }
    public func takePendingError() -> Int32 { 0 }
    /// The endpoint is shared: the runtime closes it when its last tunnel goes.
    public func close() {}
}
