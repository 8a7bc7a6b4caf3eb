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
/// batches and receive areas, and counters.
///
/// ```
///   receive (Datapath+Underlay.swift, a worker per socket):
///     recvmmsg ≤ 64 messages, each one datagram or a UDP_GRO run of them
///       → per datagram: VXLAN header (Wire) → TunnelDemux (Core) → tunnel form in place
///       → consecutive TCP segments of one flow coalesced (Wire.TCPCoalescer)   (no lock)
///       → decide and forward each frame                                         (lock)
///   send (TunnelPort.writev / flush, from the datapath's transmit list):
///     per frame: VXLAN header + inner head in the queue's batch; equal datagrams of one
///     flow to one VTEP join one message (a UDP GSO run, ≤ 64) → sendmmsg per source socket
/// ```
/// Every tunnel port on this UDP port (every switch, every peer) shares the endpoint, so a
/// flood to three tunnels is one system call.
///
/// ## Speed (Scripts/bench/overlay.sh, TCP one stream between guests on two hosts)
/// A guest's 64 KiB TSO frame bound for a tunnel is cut in software (the transmit list,
/// `Wire.Segmentation`) into ~45 segments. Measured step by step (5 s runs, same machine,
/// kernel vxlan + bridge alongside; the shared 2-core machine swings the kernel's number):
///
/// | send | receive | Tapestry | kernel |
/// |---|---|---:|---:|
/// | raw IP socket, sendmmsg | recvmmsg, a frame per datagram | 0.79 | 11.88 |
/// | UDP sockets, sendmmsg | recvmmsg, a frame per datagram | 1.04 | 13.68 |
/// | UDP_SEGMENT runs | the same (the kernel splits runs) | 1.57 | 13.98 |
/// | UDP_SEGMENT runs | UDP_GRO, a frame per datagram | 2.06 | 11.14 |
/// | UDP_SEGMENT runs | UDP_GRO + coalescing (TCPCoalescer) | 7.46 | 8.91 |
///
/// Three rounds at the end (load average ~5 from other jobs): 6.58 vs 12.84 Gb/s (0.51×;
/// Scripts/bench/overlay-results.md). What is left is mostly copies: the TAP read and the
/// send on one host, the receive, the coalescing move and the TAP write on the other, where
/// the kernel's path copies nothing between the guests' stacks; checksums (segmenting and
/// verifying) are ~9% of the datapath threads.
///
/// Most of the gap was the receiving guest taking ~45 frames per 64 KiB, each a TAP write
/// and a trip through its TCP stack; UDP_SEGMENT and UDP_GRO each save system calls and
/// skbs, and make the runs that coalescing needs arrive together.
///
/// Threads: queue q's receive area and send batch belong to the worker that uses queue q
/// (receive: the worker polling socket q; send: worker q, since tunnel ports have one queue
/// per worker). `demux` changes only under the datapath lock with every worker's I/O lock
/// held, so a worker reads it under its own I/O lock; the receive counters change under the
/// datapath lock; the send counters are atomics (sends happen outside the lock).
public final class UnderlayEndpoint {
    /// The endpoint's sockets (receive per queue; the sending pool).
    public let socket: UnderlaySocket
    /// The UDP port: where it listens, and the destination port of what it sends.
    public let udpPort: UInt16
    /// Source ports in the sending pool (`socket.senders.count`, at most 256).
    let senderCount: Int
    /// This host's underlay address (outer source).
    public let local: UnderlayAddress
    /// `ADDRESS:PORT` (IPv6 in brackets), and ` in netns NS` when in one.
    public let label: String
    /// The network namespace holding the address (nil: the daemon's own).
    public let namespace: String?
    /// The underlay link's MTU when the endpoint was opened.
    public let mtu: Int
    /// Bytes of IP and UDP header per datagram (28 over IPv4, 48 over IPv6): for `txBytes`.
    let outerOverhead: Int
    /// Rebuilt by `Datapath.replaceSwitches` from the running plans (under the lock).
    var demux = TunnelDemux(plans: [], udpPort: 0)
    fileprivate let batches: [SendBatch]
    let receive: [ReceiveScratch]
    /// Datagrams of one flow leave as UDP GSO runs (UDP_SEGMENT); cleared for good when the
    /// kernel refuses one (EIO/EINVAL: see `flush`).
    let sendsRuns = Atomic<Bool>(true)

    // Receive counters: under the datapath lock.
    var rxPackets: UInt64 = 0
    var rxBytes: UInt64 = 0
    var rxCoalesced: UInt64 = 0
    var rxCoalescedDatagrams: UInt64 = 0
    var drops: [UInt64] = Array(repeating: 0, count: UnderlayDrop.allCases.count)
    // Send counters: updated once per flush, outside the lock.
    let txPackets = Atomic<UInt64>(0)
    let txBytes = Atomic<UInt64>(0)
    let txErrors = Atomic<UInt64>(0)
    /// UDP GSO messages sent (each a run of ≥ 2 datagrams, counted in `txPackets` too).
    let txRuns = Atomic<UInt64>(0)

    /// Receive queues (one socket each).
    public var queueCount: Int { socket.receivers.count }
    func pollFD(queue: Int) -> Int32 { socket.receivers[queue] }

    /// Opens the endpoint for `address`:`port` with `queues` receive sockets, in namespace
    /// `namespace` (nil: the daemon's). Reads the MTU of the link holding the address there.
    /// Allocates each queue's receive area (`ReceiveScratch`: 4 MiB) and send batch.
    /// - Throws: `SystemError` naming the endpoint and errno (EADDRNOTAVAIL: the address is
    ///   not on any link of that namespace).
    public init(address: IPAddress, port: UInt16, namespace: String?, queues: Int) throws {
        let k = TunnelDemux.key(address)
        local = UnderlayAddress(high: k.high, low: k.low)
        udpPort = port
        self.namespace = namespace
        outerOverhead = address.isIPv6 ? 48 : 28
        let text = address.isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
        label = text + (namespace.map { " in netns \($0)" } ?? "")
        let open = { [label] () throws -> (UnderlaySocket, Int) in
            let mtu = try UnderlaySocket.mtu(ipv6: address.isIPv6, address: k.high, k.low, label: label)
            return (try UnderlaySocket(ipv6: address.isIPv6, address: k.high, k.low, port: port, queues: queues, label: label), mtu)
        }
        (socket, mtu) = try namespace.map { try NetworkNamespace.run(in: $0, open) } ?? open()
        senderCount = socket.senders.count
        precondition(senderCount >= 1 && senderCount <= 256, "the flush sorts by sender in 256 buckets")
        batches = (0..<queues).map { _ in SendBatch() }
        receive = (0..<queues).map { _ in ReceiveScratch() }
    }

    /// Closes the sockets. Idempotent.
    public func close() { socket.close() }

    /// Counts a dropped packet (under the datapath lock).
    @inline(__always) func drop(_ why: UnderlayDrop) { drops[why.rawValue] &+= 1 }

    /// Sends whatever queue `queue` has batched: its messages grouped by sending socket
    /// (a stable counting sort: a flow's datagrams keep their order), one sendmmsg per ≤ 64
    /// messages of a socket. A message the kernel refuses is counted in `txErrors` (all its
    /// datagrams) and skipped; the rest still go. A UDP GSO run the kernel cannot send (EIO:
    /// an IPsec route, or before Linux 6.11 a device without checksum offload; EINVAL) turns
    /// runs off for the endpoint and goes again as single datagrams. (Not reached in the
    /// tests: on 6.18 a device without checksum offload gets its runs checksummed in
    /// software.)
    func flush(queue: Int) {
        let b = batches[queue]
        guard b.messageCount > 0 else { return }
        let senders = senderCount
        // Counting sort of the messages by sending socket, into `b.order`.
        for i in 0..<senders { b.bucket[i] = 0 }
        for m in 0..<b.messageCount { b.bucket[Int(b.messageSender[m])] &+= 1 }
        var sum: Int32 = 0
        for i in 0..<senders { let c = b.bucket[i]; b.bucket[i] = sum; sum &+= c }
        for m in 0..<b.messageCount {
            let s = Int(b.messageSender[m])
            b.order[Int(b.bucket[s])] = Int32(m)
            b.bucket[s] &+= 1
        }
        var datagrams: UInt64 = 0, bytes: UInt64 = 0, errors: UInt64 = 0, runsSent: UInt64 = 0
        var i = 0
        while i < b.messageCount {
            let sender = Int(b.messageSender[Int(b.order[i])])
            var end = i
            while end < b.messageCount && Int(b.messageSender[Int(b.order[end])]) == sender { end += 1 }
            // Messages i..<end share the socket: wire them up in order and send.
            for j in i..<end {
                let m = Int(b.order[j])
                b.wire[j - i] = UnderlayMessage(first: b.messageFirst[m], count: b.messagePieces[m],
                                            segment: b.messageDatagrams[m] > 1 ? UInt32(b.messageSize[m]) : 0, reserved: 0,
                                            destination: b.messageDestination[m])
            }
            // Consecutive messages of one kind (runs, or single datagrams) share a call:
            // the two kinds leave by the port's two sockets, in the flow's order.
            var k = i
            while k < end {
                let runs = b.messageDatagrams[Int(b.order[k])] > 1
                var stop = k + 1
                while stop < end && stop - k < UnderlaySocket.batch && (b.messageDatagrams[Int(b.order[stop])] > 1) == runs { stop += 1 }
                let r = socket.send(sender: sender, runs: runs, b.iov, messages: b.wire + (k - i), count: stop - k)
                if r > 0 {
                    for j in k..<(k + r) {
                        let m = Int(b.order[j])
                        datagrams &+= UInt64(b.messageDatagrams[m])
                        bytes &+= UInt64(b.messageBytes[m]) &+ UInt64(b.messageDatagrams[m] * outerOverhead)
                    }
                    if runs { runsSent &+= UInt64(r) }
                    k += r
                    continue
                }
                let m = Int(b.order[k])
                if runs && (r == -Int(EIO) || r == -Int(EINVAL)) {
                    sendsRuns.store(false, ordering: .relaxed)
                    let (sent, sentBytes, failed) = sendSingly(b, message: m, sender: sender)
                    datagrams &+= sent; bytes &+= sentBytes; errors &+= failed
                } else {
                    errors &+= UInt64(b.messageDatagrams[m])   // EAGAIN (full socket buffer), EMSGSIZE, no route
                }
                k += 1
            }
            i = end
        }
        b.reset()
        if datagrams > 0 {
            txPackets.add(datagrams, ordering: .relaxed)
            txBytes.add(bytes, ordering: .relaxed)
        }
        if errors > 0 { txErrors.add(errors, ordering: .relaxed) }
        if runsSent > 0 { txRuns.add(runsSent, ordering: .relaxed) }
    }

    /// Sends the datagrams of run `m` one message each (after the kernel refused the run).
    /// Returns (sent, their IP bytes, failed).
    private func sendSingly(_ b: SendBatch, message m: Int, sender: Int) -> (UInt64, UInt64, UInt64) {
        let first = Int(b.messageFirstDatagram[m]), count = Int(b.messageDatagrams[m])
        var sent: UInt64 = 0, bytes: UInt64 = 0, failed: UInt64 = 0
        var d = first
        while d < first + count {
            let n = min(first + count - d, UnderlaySocket.batch)
            for j in 0..<n {
                b.single[j] = UnderlayMessage(first: b.datagramFirst[d + j], count: b.datagramPieces[d + j], segment: 0, reserved: 0,
                                          destination: b.messageDestination[m])
            }
            let r = socket.send(sender: sender, runs: false, b.iov, messages: b.single, count: n)
            if r > 0 {
                for j in 0..<r { sent &+= 1; bytes &+= UInt64(b.datagramLength[d + j]) &+ UInt64(outerOverhead) }
                d += r
            } else {
                failed &+= 1; d += 1
            }
        }
        return (sent, bytes, failed)
    }

    /// Puts one frame on queue `queue`'s batch, encapsulated for `tunnel`. The frame is
    /// `iov[0..<count]` in the tunnel's form (MACs, an 802.1Q tag naming the VLAN, the rest;
    /// `TunnelPeer`): the tag becomes the VNI; the VXLAN header and the first bytes of the
    /// inner frame go into the batch's scratch, the rest is sent from where it lies (until
    /// `flush`, which the datapath calls before its buffers change). The inner flow hash
    /// picks the sending socket (the source port). The datagram joins the batch's last
    /// message when that is a run to the same VTEP from the same socket that it can extend
    /// (`SendBatch.joins`): the segments of a TSO frame become one UDP GSO message.
    ///
    /// Returns `.bytes(length)`, or `.failed(EINVAL)` for a frame without the tag or shorter
    /// than an Ethernet header (a bug upstream), `.failed(EMSGSIZE)` beyond one UDP datagram.
    /// Per-frame path: no allocation, no lock.
    @inline(__always)
    func enqueue(queue: Int, _ tunnel: TunnelPort, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        let b = batches[queue]
        if b.count == SendBatch.capacity || b.iovUsed + Int(count) + 1 > SendBatch.iovCapacity { flush(queue: queue) }
        var total = 0
        for i in 0..<Int(count) { total += iov[i].iov_len }
        guard total >= 18 else { return .failed(EINVAL) }
        let datagram = VXLAN.headerLength + total - 4
        guard datagram <= UnderlaySocket.maximumPayload else { return .failed(EMSGSIZE) }
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
        // The inner frame's head after the VXLAN header: MACs, then what followed the tag.
        let inner = slot + SendBatch.innerOffset
        inner.copyMemory(from: tmp, byteCount: 12)
        (inner + 12).copyMemory(from: tmp + 16, byteCount: head - 16)
        let innerHead = head - 4
        let hash = FlowHash.of(UnsafeRawBufferPointer(start: inner, count: innerHead))
        VXLAN.writeHeader(vni: tunnel.vniBase &+ UInt32(vid), to: inner - VXLAN.headerLength)
        let sender = UInt16(truncatingIfNeeded: (UInt64(hash) &* UInt64(senderCount)) >> 32)
        // The datagram: [VXLAN + inner head] then the rest where it lies.
        var v = b.iovUsed
        let firstIOV = v
        b.iov[v] = iovec(iov_base: inner - VXLAN.headerLength, iov_len: VXLAN.headerLength + innerHead); v += 1
        var p = piece, off = inPiece
        while p < Int(count) {
            let n = iov[p].iov_len - off
            if n > 0 { b.iov[v] = iovec(iov_base: iov[p].iov_base! + off, iov_len: n); v += 1 }
            p += 1; off = 0
        }
        let pieces = v - firstIOV
        b.iovUsed = v
        b.datagramFirst[k] = UInt32(firstIOV)
        b.datagramPieces[k] = UInt32(pieces)
        b.datagramLength[k] = UInt32(datagram)
        b.count = k + 1
        if b.joins(sender: sender, destination: tunnel.destination, length: datagram,
                   runs: tunnel.sendsRuns && sendsRuns.load(ordering: .relaxed)) {
            let m = b.messageCount - 1
            b.messagePieces[m] &+= UInt32(pieces)
            b.messageDatagrams[m] &+= 1
            b.messageBytes[m] &+= UInt32(datagram)
            if datagram < Int(b.messageSize[m]) { b.sealed = true }
        } else {
            let m = b.messageCount
            b.messageFirst[m] = UInt32(firstIOV)
            b.messagePieces[m] = UInt32(pieces)
            b.messageFirstDatagram[m] = UInt32(k)
            b.messageDatagrams[m] = 1
            b.messageBytes[m] = UInt32(datagram)
            b.messageSize[m] = UInt16(datagram)
            b.messageSender[m] = sender
            b.messageDestination[m] = tunnel.destination
            b.messageCount = m + 1
            b.sealed = false
        }
        return .bytes(total)
    }

    /// A copy of the counters (call under the datapath lock for the receive side).
    func counters() -> UnderlayCounters {
        UnderlayCounters(label: label, rxPackets: rxPackets, rxBytes: rxBytes,
                         rxCoalesced: rxCoalesced, rxCoalescedPackets: rxCoalescedDatagrams,
                         txPackets: txPackets.load(ordering: .relaxed), txBytes: txBytes.load(ordering: .relaxed),
                         txErrors: txErrors.load(ordering: .relaxed), txRuns: txRuns.load(ordering: .relaxed),
                         drops: Dictionary(uniqueKeysWithValues: UnderlayDrop.allCases.compactMap { d in
                             drops[d.rawValue] > 0 ? (d.description, drops[d.rawValue]) : nil }))
    }
}

/// One queue's batch of outgoing datagrams, allocated once: per datagram its scratch slot
/// (VXLAN header, inner head) and iovecs; per message (one datagram, or a run of equal
/// ones for UDP_SEGMENT) its iovec range, size, socket and destination.
final class SendBatch {
    /// Datagrams per batch (a 64 KiB TSO frame is ~45 of them).
    static let capacity = 512
    static let iovCapacity = SendBatch.capacity * 6
    /// Per datagram: the VXLAN header in the 8 bytes before `innerOffset`, then the inner
    /// frame's first `headBytes - 4` bytes.
    static let slotSize = 192
    static let innerOffset = 64
    static let headBytes = 128
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: SendBatch.capacity * SendBatch.slotSize, alignment: 64)
    let gather = UnsafeMutableRawPointer.allocate(byteCount: SendBatch.headBytes, alignment: 16)
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: SendBatch.iovCapacity)
    // Per datagram.
    let datagramFirst = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let datagramPieces = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let datagramLength = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    // Per message.
    let messageFirst = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let messagePieces = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let messageFirstDatagram = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    let messageDatagrams = UnsafeMutablePointer<Int>.allocate(capacity: SendBatch.capacity)
    let messageBytes = UnsafeMutablePointer<UInt32>.allocate(capacity: SendBatch.capacity)
    /// The run's datagram size (its first datagram's bytes: UDP_SEGMENT's gso_size).
    let messageSize = UnsafeMutablePointer<UInt16>.allocate(capacity: SendBatch.capacity)
    let messageSender = UnsafeMutablePointer<UInt16>.allocate(capacity: SendBatch.capacity)
    let messageDestination = UnsafeMutablePointer<UnderlayWireAddress>.allocate(capacity: SendBatch.capacity)
    // Flush scratch: the messages in socket order, as the C call takes them.
    let order = UnsafeMutablePointer<Int32>.allocate(capacity: SendBatch.capacity)
    let bucket = UnsafeMutablePointer<Int32>.allocate(capacity: 256)
    let wire = UnsafeMutablePointer<UnderlayMessage>.allocate(capacity: SendBatch.capacity)
    let single = UnsafeMutablePointer<UnderlayMessage>.allocate(capacity: UnderlaySocket.batch)
    /// Datagrams batched.
    var count = 0
    var iovUsed = 0
    var messageCount = 0
    /// The last message cannot grow (its last datagram was shorter than its size).
    var sealed = false

    /// Whether a datagram of `length` bytes from socket `sender` to `destination` extends the
    /// last message (its iovecs follow the message's, as every datagram's follow the one
    /// before): a run to the same place from the same socket, not sealed, at most `size`
    /// bytes, within 64 datagrams and 65507 bytes (`UnderlaySocket.maximumRun`,
    /// `maximumPayload`); `runs` false (UDP GSO refused) never joins.
    @inline(__always)
    func joins(sender: UInt16, destination: UnderlayWireAddress, length: Int, runs: Bool) -> Bool {
        guard runs, messageCount > 0, !sealed else { return false }
        let m = messageCount - 1
        return messageSender[m] == sender && messageDestination[m].hi == destination.hi && messageDestination[m].lo == destination.lo
            && length <= Int(messageSize[m]) && messageDatagrams[m] < UnderlaySocket.maximumRun
            && Int(messageBytes[m]) + length <= UnderlaySocket.maximumPayload
    }

    func reset() { count = 0; iovUsed = 0; messageCount = 0; sealed = false }

    deinit {
        scratch.deallocate(); gather.deallocate(); iov.deallocate()
        datagramFirst.deallocate(); datagramPieces.deallocate(); datagramLength.deallocate()
        messageFirst.deallocate(); messagePieces.deallocate(); messageFirstDatagram.deallocate(); messageDatagrams.deallocate()
        messageBytes.deallocate(); messageSize.deallocate(); messageSender.deallocate(); messageDestination.deallocate()
        order.deallocate(); bucket.deallocate(); wire.deallocate(); single.deallocate()
    }
}

/// One receive queue's buffers, allocated once (4 MiB and some): 64 message slots of 64 KiB
/// (a UDP_GRO run is one UDP datagram's worth at most), their metadata, and the frames the
/// batch hands to the datapath (`Datapath.serviceUnderlay`).
final class ReceiveScratch {
    /// Bytes per message slot: the largest UDP payload (65535 - 8) fits.
    static let slotSize = 65536
    /// Messages per recvmmsg.
    static let slots = UnderlaySocket.batch
    /// Frames one batch may hand over before it delivers mid-batch: a run is ≤ 64 datagrams
    /// (the kernel's UDP_GRO_CNT_MAX) in each of 64 messages.
    static let frameCapacity = 4096
    let area = UnsafeMutableRawPointer.allocate(byteCount: ReceiveScratch.slots * ReceiveScratch.slotSize, alignment: 64)
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: ReceiveScratch.slots)
    let sources = UnsafeMutablePointer<UnderlayWireAddress>.allocate(capacity: ReceiveScratch.slots)
    let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: ReceiveScratch.slots)
    let segments = UnsafeMutablePointer<UInt16>.allocate(capacity: ReceiveScratch.slots)
    // The frames to forward: where, how long, which tunnel port, and the virtio-net header
    // of a coalesced one (slot i of `headers`, or -1).
    let frames = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: ReceiveScratch.frameCapacity)
    let frameLength = UnsafeMutablePointer<Int32>.allocate(capacity: ReceiveScratch.frameCapacity)
    let frameSwitch = UnsafeMutablePointer<Int32>.allocate(capacity: ReceiveScratch.frameCapacity)
    let framePort = UnsafeMutablePointer<Int32>.allocate(capacity: ReceiveScratch.frameCapacity)
    let frameHeader = UnsafeMutablePointer<Int32>.allocate(capacity: ReceiveScratch.frameCapacity)
    let headers = UnsafeMutableRawPointer.allocate(byteCount: ReceiveScratch.frameCapacity * 16, alignment: 16)
    var frameCount = 0
    var headerCount = 0
    // Counted without the lock, added to the endpoint's counters under it.
    var datagrams: UInt64 = 0
    var bytes: UInt64 = 0
    var drops: [UInt64] = Array(repeating: 0, count: UnderlayDrop.allCases.count)
    /// Frames this batch coalesced from more than one datagram, and the datagrams in them.
    var coalesced: UInt64 = 0
    var coalescedDatagrams: UInt64 = 0

    init() {
        for i in 0..<ReceiveScratch.slots {
            iov[i] = iovec(iov_base: area + i * ReceiveScratch.slotSize, iov_len: ReceiveScratch.slotSize)
        }
    }

    deinit {
        area.deallocate(); iov.deallocate(); sources.deallocate(); lengths.deallocate(); segments.deallocate()
        frames.deallocate(); frameLength.deallocate(); frameSwitch.deallocate(); framePort.deallocate(); frameHeader.deallocate()
        headers.deallocate()
    }
}

/// A tunnel port: one remote VTEP of one switch, sending through the shared
/// `UnderlayEndpoint` of its UDP port. Its frames arrive through the endpoint (the datapath
/// polls the endpoint's sockets, not the port: `isPolled` is false).
///
/// Queues: one per datapath worker, so each worker fills its own send batch; `flush(queue:)`
/// sends the batch (every tunnel's frames of that worker's round together).
///
/// Offloads: none (`txVNetHeaderSize` 0): `PortPlan.acceptsOffloads` is false for tunnels,
/// so the transmit list cuts a GSO frame into segments (`appendFinished`) and each arrives
/// here as a plain frame, one `writev` per segment; consecutive equal segments of one flow
/// leave as one UDP GSO message (`UnderlayEndpoint.enqueue`) when the peer is a Tapestry
/// host (`sendsRuns`).
public final class TunnelPort: PortIO {
    let endpoint: UnderlayEndpoint
    let destination: UnderlayWireAddress
    let vniBase: UInt32
    /// Consecutive equal datagrams may leave as one UDP GSO run: only to another Tapestry
    /// host, which reads them through a UDP socket (its kernel segments or hands over the
    /// run). A remote VTEP gets single datagrams: on a veth underlay a run would reach a
    /// receiver that reads packets (Open vSwitch's userspace datapath) as one 64 KiB packet.
    let sendsRuns: Bool
    /// `SWITCH/PORT`, for messages.
    public let label: String
    public let queueCount: Int

    /// - Parameters:
    ///   - queues: the datapath's worker count (worker w writes through queue w).
    ///   - sendsRuns: the peer is a Tapestry host (see `sendsRuns`).
    public init(label: String, endpoint: UnderlayEndpoint, remote: IPAddress, vniBase: UInt32, queues: Int, sendsRuns: Bool) {
        self.label = label
        self.sendsRuns = sendsRuns
        self.endpoint = endpoint
        let k = TunnelDemux.key(remote)
        destination = UnderlayWireAddress(hi: k.high, lo: k.low)
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
