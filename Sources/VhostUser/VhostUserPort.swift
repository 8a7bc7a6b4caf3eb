import CLinux
import CVhost
import LinuxIO
import Model
import Synchronization
import Wire
#if canImport(Glibc)
import Glibc
#endif

/// A switch port whose guest is a vhost-user frontend (QEMU, DPDK's virtio-user): the guest's
/// virtqueues live in shared memory and the datapath reads and writes them directly.
///
/// ```
///   frontend ──Unix socket (control messages, fds)──▶ control thread ─┐ publish (epoch)
///      │                                                              ▼
///   guest memory (memfd, shared) ◀── read/writev/flush ── datapath worker
///      kick eventfd ─▶ inner epoll (pollFD) ◀─ wake eventfd (control) / spin eventfd (polling)
/// ```
/// **Threads.** One control thread per port speaks the protocol (`VhostDevice`): blocking
/// reads on one socket are the simplest correct code, the messages are rare, and a slow or
/// hostile frontend stalls only its own port (5 s socket timeouts bound a half-sent message).
/// Calls to `read`, `writev` and `flush` never overlap: the port is polled by one datapath
/// worker (a single queue), and any thread that writes to it (another worker, the multicast
/// querier) holds `accessGate` for its batch of writes and the `flush` that ends it, as the
/// reader does for its batch of reads — a lock per batch, never per frame.
///
/// **The rule between them.** The control thread never touches a running ring. It builds an
/// immutable `VhostDatapathConfig` (rings translated into this process, fds, features, log),
/// publishes it under a mutex, signals the wake eventfd, then stores the new epoch (an
/// atomic). At the start of every call the datapath compares that epoch with the one it
/// runs (one relaxed-cost atomic load, no lock); when it changed it drains the wake fd, takes
/// the new snapshot, notifies the guest for what the old rings published, and acknowledges
/// the epoch. A call never keeps a guest pointer past its return, so every call boundary is a
/// safe point. While rings run, the control thread answers the frontend only after that
/// acknowledgement, so a reply means "in effect" — which dirty logging requires: once QEMU
/// has the reply to SET_FEATURES(LOG_ALL), every guest write must be logged. Old mappings and fds are released by reference counting only when no
/// snapshot refers to them any more — never while the datapath still runs one. A ring
/// stopped by GET_VRING_BASE is reported only after the datapath acknowledged a snapshot
/// without it (or, when no datapath runs this port, at once), so its `last_avail_idx` is
/// final and it is never touched again.
///
/// **Kicks or polling.** `pollFD` is a private epoll holding the TX kick eventfd, the wake
/// eventfd and a "spin" eventfd. With kicks (`pollMicroseconds` 0), a read that finds the
/// guest's TX ring empty drains the kick, re-enables kicks (EVENT_IDX: `avail_event`),
/// re-checks the ring, and sleeps; frames that re-check finds keep the spin eventfd
/// signalled until the ring is empty again (no kick announced them, and a reader may stop
/// at its batch limit before it has them all). With polling, an empty ring keeps the spin
/// eventfd signalled for `pollMicroseconds` after the last frame, so the datapath's epoll
/// reports the port readable and calls `read` again without the guest kicking (and without
/// a wake-up); then it arms kicks as above. Guest interrupts: RX once per batch in `flush`
/// (EVENT_IDX `used_event`, or VRING_AVAIL_F_NO_INTERRUPT), TX completions when the ring
/// runs empty.
///
/// **Frames.** `read` returns `[virtio_net_hdr_v1 (12 B)][frame]`; `writev` takes iovec 0 = the
/// 12-byte header (10 is accepted too) and the frame's pieces after it, fills MRG_RXBUF
/// buffers and `num_buffers`. Offloads pass as the header says when the guest negotiated
/// them. A GSO or partial-checksum frame for a guest that did not (`offloads: false`, a
/// DPDK application without receive offloads, a guest whose driver turned them off) is
/// finished here, in software, by the switch's one routine (`Wire.SoftwareOffload`): cut
/// into wire segments (TCP, UDP; every checksum complete) or its checksum completed, then
/// delivered as plain frames — never dropped for it. The decision lives in the port
/// because only the port knows, frame by frame, what its guest negotiated (a frontend may
/// reconnect with other features at any time); `trace` shows such a frame leaving whole.
/// Nothing on these paths allocates, locks or throws.
///
/// **Bad guests.** A descriptor outside the memory table, a loop, an index out of range or a
/// bad indirect table faults the ring (`VirtqueueFault`): it is never touched again, the
/// reset is counted, and the control thread closes the connection (the frontend restarts
/// the device on reconnection). A malformed message closes the connection too
/// (`protocol-error`).
public final class VhostUserPort: PortIO {
    /// How the port meets its frontend.
    public enum Mode: Equatable, Sendable {
        /// We listen on the socket path; the frontend connects (libvirt, a DPDK app).
        case server(VhostSocketPermissions)
        /// We connect to the frontend's socket, and reconnect whenever it goes away (QEMU
        /// started by Tapestry with `server=on`).
        case client
    }

    /// The port's name (`GUEST.ethN`), for logs.
    public let name: String
    /// The Unix socket path.
    public let socketPath: String
    public let mode: Mode
    /// 0: kicks; otherwise how long an empty ring is polled after its last frame.
    public let pollMicroseconds: Int
    /// The virtio-net features offered to the frontend (`VirtioFeature.offered`, without the
    /// checksum and TSO bits when the port was made with `offloads: false`).
    public let offeredFeatures: UInt64
    /// Serialises the datapath's calls (see the type's doc comment and `PortIO.accessGate`).
    public let gate = PortAccessGate()

    // Shared between the control thread and the datapath.
    let published = Mutex<VhostDatapathConfig>(VhostDatapathConfig.empty)
    let publishedEpoch = Atomic<UInt64>(0)
    let ackedEpoch = Atomic<UInt64>(0)
    let attached = Atomic<Bool>(false)
    let inner: Epoll
    let wake: EventFD
    let spin: EventFD
    /// Datapath → control: a ring faulted.
    let faultSignal: EventFD
    let stats: UnsafeMutablePointer<UInt64>

    // Datapath thread only.
    private var current = VhostDatapathConfig.empty
    private var seenEpoch: UInt64 = 0
    private var txQueue: Virtqueue?
    private var rxQueue: Virtqueue?
    private var kickFD: Int32 = -1
    private var txCallFD: Int32 = -1
    private var rxCallFD: Int32 = -1
    private var kickless = false
    private var mergeable = false
    private var guestHeaderSize = 12
    private var acceptsCSUM = false, acceptsTSO4 = false, acceptsTSO6 = false, acceptsECN = false
    private var spinning = false
    private var active = false
    private var idleSince: Int64 = 0
    private var rarpSerialSeen: UInt64 = 0
    private var pendingRARP: [UInt8]? = nil
    private let pollNanoseconds: Int64
    private let headerScratch: UnsafeMutableRawPointer
    /// Software offloads: a frame that arrived in pieces (a tag pushed or popped), made
    /// contiguous; one segment's rewritten headers; a zero virtio-net header; a finished
    /// checksum. Allocated once.
    private let linear: UnsafeMutableRawPointer
    private static let linearCapacity = 65536 + 256
    private let segmentHeader: UnsafeMutableRawPointer

    var control: VhostControl!

    /// Opens the port and starts its control thread (listening, or connecting in the
    /// background). Throws when the socket cannot be created (server mode: a bad path, a
    /// name in use by something that is not a socket, an unknown owner or group).
    ///
    /// - Parameters:
    ///   - socketPath: e.g. `/run/tapestry/lab.vhost/vm1.eth0.sock` (≤ 107 bytes).
    ///   - pollMicroseconds: 0 for kicks; see the type's doc comment.
    ///   - offloads: false offers the frontend no checksum or TSO features (a topology's
    ///     `offloads: false`), so every frame crosses as a finished wire frame.
    ///   - log: called on the control thread with one line per event (connected, lost, reset).
    public init(name: String, socketPath: String, mode: Mode, pollMicroseconds: Int = 0, offloads: Bool = true,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        guard socketPath.utf8.count <= 107, !socketPath.isEmpty else {
            throw SystemError(operation: "vhost-user socket", subject: socketPath, errno: ENAMETOOLONG)
        }
        self.name = name
        self.socketPath = socketPath
        self.mode = mode
        self.pollMicroseconds = max(0, pollMicroseconds)
        offeredFeatures = offloads ? VirtioFeature.offered : VirtioFeature.offered & ~VirtioFeature.offloads
        pollNanoseconds = Int64(max(0, pollMicroseconds)) * 1000
        inner = try Epoll()
        wake = try EventFD()
        spin = try EventFD()
        faultSignal = try EventFD()
        try inner.add(wake.fd, data: 0)
        try inner.add(spin.fd, data: 1)
        stats = .allocate(capacity: Stat.count)
        stats.initialize(repeating: 0, count: Stat.count)
        headerScratch = .allocate(byteCount: 16, alignment: 8)
        linear = .allocate(byteCount: VhostUserPort.linearCapacity, alignment: 64)
        segmentHeader = .allocate(byteCount: 512, alignment: 64)
        segmentHeader.initializeMemory(as: UInt8.self, repeating: 0, count: 512)
        control = try VhostControl(port: self, log: log)
        control.start()
    }

    deinit {
        close()
        stats.deallocate()
        headerScratch.deallocate()
        linear.deallocate()
        segmentHeader.deallocate()
    }

    /// Stops the control thread and closes the socket. The datapath must no longer call the
    /// port (remove it from the datapath first). Idempotent.
    public func close() {
        control?.stop()
    }

    /// Says that no datapath thread calls this port any more (it was removed from the
    /// datapath): ring stops are then reported without waiting for an acknowledgement.
    public func detachFromDatapath() {
        attached.store(false, ordering: .releasing)
    }

    /// Whether both rings run (the frontend finished setting up the device).
    public var isRunning: Bool { published.withLock { $0.rx != nil && $0.tx != nil } }

    /// A copy of the port's counters (any thread; values may lag a batch).
    public var statistics: VhostPortStatistics {
        var resets: [String: UInt64] = [:]
        for f in VirtqueueFault.allCases { let v = stats[Stat.fault(f)]; if v > 0 { resets[f.description] = v } }
        if stats[Stat.protocolError] > 0 { resets["protocol-error"] = stats[Stat.protocolError] }
        var drops: [String: UInt64] = [:]
        for (k, n) in [(Stat.txOversize, "tx-oversize"), (Stat.txRunt, "tx-runt"), (Stat.rxTooLarge, "rx-too-large"),
                       (Stat.rxOffload, "rx-offload-malformed"), (Stat.segmentsLost, "rx-segments-lost")] where stats[k] > 0 { drops[n] = stats[k] }
        return VhostPortStatistics(resets: resets, drops: drops, rarps: stats[Stat.rarps],
                                   connections: stats[Stat.connections], disconnects: stats[Stat.disconnects], dirtyLogs: stats[Stat.dirtyLogs],
                                   segmentedInSoftware: stats[Stat.segmented], checksummedInSoftware: stats[Stat.checksummed])
    }

    /// The features the frontend and this port agreed on (SET_FEATURES; 0 while none is
    /// connected). Any thread; may lag a message.
    public var negotiatedFeatures: UInt64 { published.withLock { $0.features } }

    // MARK: - PortIO

    public var queueCount: Int { 1 }
    public func pollFD(queue: Int) -> Int32 { inner.fd }
    public var vnetHeaderSize: Int { VirtioNetHeader.size }
    public var txVNetHeaderSize: Int { VirtioNetHeader.size }
    public func takePendingError() -> Int32 { 0 }
    public var accessGate: PortAccessGate? { gate }
    /// A batch with frames, or a ring still polled (the poll window, or a frontend that
    /// never kicks): read again without a system call.
    public func readsAgain(after count: Int) -> Bool { count > 0 || spinning }

    /// Takes one frame the guest sent: `[12-byte virtio-net header][frame]`.
    public func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        sync()
        guard let base = buffer.baseAddress else { return .wouldBlock }
        if let r = takeRARP(into: base, capacity: buffer.count) { return r }
        guard let tx = txQueue else { stopSpinning(); return .wouldBlock }
        return take(from: tx, into: base, capacity: buffer.count)
    }

    /// Takes frames the guest sent until the batch is full or the ring is empty: `read`'s
    /// work with the snapshot checked and the ring looked up once for the batch, not per frame.
    public func readBatch(queue: Int, into batch: ReadBatch) -> ReadBatch.Outcome {
        sync()
        var count = 0, offset = 0
        if batch.hasRoom(count: 0, offset: 0), let r = takeRARP(into: batch.area, capacity: batch.frameMax) {
            guard case .bytes(let n) = r else { return ReadBatch.Outcome(count: 0, error: 0) }
            offset = batch.record(0, offset: 0, length: n)
            count = 1
        }
        guard let tx = txQueue else {
            stopSpinning()
            return ReadBatch.Outcome(count: count, error: 0)
        }
        while batch.hasRoom(count: count, offset: offset) {
            guard case .bytes(let n) = take(from: tx, into: batch.area + offset, capacity: batch.frameMax) else { break }
            offset = batch.record(count, offset: offset, length: n)
            count += 1
        }
        return ReadBatch.Outcome(count: count, error: 0)
    }

    /// The RARP a migration asked for (`SEND_RARP`), if one is pending: nil when none.
    @inline(__always)
    private func takeRARP(into base: UnsafeMutableRawPointer, capacity: Int) -> IOResult? {
        guard let frame = pendingRARP else { return nil }
        pendingRARP = nil
        guard capacity >= frame.count else { return .wouldBlock }
        frame.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        stats[Stat.rarps] &+= 1
        return .bytes(frame.count)
    }

    /// No ring to poll (not started, stopped, faulted): stop spinning.
    private func stopSpinning() {
        if spinning { spinning = false; spin.drain() }
    }

    /// One frame from the guest's TX ring `tx` (the port's `txQueue`, after `sync`) into
    /// `base`. After a fault the ring is the port's no more: the caller stops.
    @inline(__always)
    private func take(from tx: Virtqueue, into base: UnsafeMutableRawPointer, capacity: Int) -> IOResult {
        let pad = VirtioNetHeader.size - guestHeaderSize
        while true {
            switch tx.dequeue(into: base + pad, capacity: capacity - pad, publish: false) {
            case .frame(let n):
                if !active {
                    active = true
                    tx.disableNotifications()
                }
                if n < guestHeaderSize {
                    stats[Stat.txRunt] &+= 1
                    continue
                }
                if pad > 0 {
                    // A legacy 10-byte header: move it to the front and add num_buffers = 0.
                    let a = (base + pad).loadUnaligned(as: UInt64.self)
                    let b = (base + pad + 8).loadUnaligned(as: UInt16.self)
                    base.storeBytes(of: a, as: UInt64.self)
                    base.storeBytes(of: b, toByteOffset: 8, as: UInt16.self)
                    base.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                }
                return .bytes(n + pad)
            case .oversize:
                stats[Stat.txOversize] &+= 1
            case .empty:
                tx.publishUsed()
                if idle(tx) { return .wouldBlock }
            case .fault(let f):
                ringFault(f)
                return .wouldBlock
            }
        }
    }

    /// The guest's TX ring is empty: poll on (true: return `wouldBlock`, the spin eventfd
    /// keeps the port readable), or arm kicks and re-check (false: frames arrived meanwhile).
    @inline(__always)
    private func idle(_ tx: Virtqueue) -> Bool {
        if active {
            active = false
            // TX completions: the guest may be waiting to reclaim its buffers.
            if tx.needsInterrupt() && txCallFD >= 0 { _ = cl_eventfd_signal(txCallFD) }
            if pollNanoseconds > 0 || kickless {
                idleSince = monotonicNanoseconds()
                if !spinning { spinning = true; spin.signal() }
                return true
            }
        } else if spinning {
            if kickless || monotonicNanoseconds() - idleSince < pollNanoseconds { return true }
        }
        if spinning { spinning = false; spin.drain() }
        if kickFD >= 0 { _ = cl_eventfd_drain(kickFD) }
        if tx.enableNotifications() {
            // Frames came while kicks were off, so none announced them, and both fds were
            // just drained: keep the port readable (the spin eventfd) until the ring is empty
            // again, or a reader that stops at its batch limit would wait for a kick the
            // guest will not send.
            tx.disableNotifications()
            active = true
            if !spinning { spinning = true; spin.signal() }
            return false
        }
        return true
    }

    /// Gives one frame to the guest: iovec 0 is the virtio-net header (12 bytes, or 10),
    /// the rest the frame. `.wouldBlock` when the guest posted no room (the switch counts
    /// transmit-queue-full); `.failed(ENOTCONN)` while no frontend runs the guest's receive
    /// ring (the switch counts no-frontend). Offloads the guest did not negotiate are
    /// finished first (`finishInSoftware`).
    public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        sync()
        guard let rx = rxQueue else { return .failed(ENOTCONN) }
        return put(iov, count: count, into: rx)
    }

    /// Gives a batch of frames to the guest: `writev`'s work with the snapshot checked and
    /// the ring looked up once for the batch, not per frame. After a ring fault the rest
    /// find no ring, as they would one call each.
    public func writeBatch(queue: Int, _ batch: WriteBatch) {
        sync()
        var i = 0
        if let rx = rxQueue {
            while i < batch.count {
                let f = batch.frame(i)
                let r = put(f.iov, count: f.count, into: rx)
                batch.results[i] = r
                i += 1
                if case .failed(EIO) = r, rxQueue == nil { break }
            }
        }
        while i < batch.count { batch.results[i] = .failed(ENOTCONN); i += 1 }
    }

    /// One frame into the guest's RX ring `rx` (the port's `rxQueue`, after `sync`; see `writev`).
    @inline(__always)
    private func put(_ iov: UnsafePointer<iovec>, count: Int32, into rx: Virtqueue) -> IOResult {
        guard count >= 1, let h = iov[0].iov_base else { return .failed(EINVAL) }
        var header = UnsafeRawPointer(h)
        if iov[0].iov_len < VirtioNetHeader.size {
            headerScratch.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            headerScratch.copyMemory(from: h, byteCount: min(iov[0].iov_len, VirtioNetHeader.legacySize))
            header = UnsafeRawPointer(headerScratch)
        }
        let flags = header.load(as: UInt8.self)
        let gso = header.load(fromByteOffset: 1, as: UInt8.self)
        let pieces = IOVPieces(iov: iov + 1, count: Int(count) - 1)
        if (flags & VirtioNetHeader.needsCSUM != 0 && !acceptsCSUM) || !acceptsGSO(gso) {
            return finishInSoftware(rx, header: header, pieces: pieces)
        }
        if flags != 0 && !acceptsCSUM {
            // DATA_VALID (a checksum the sender's kernel verified) for a driver without
            // GUEST_CSUM: "the device MUST set flags to zero" (virtio 1.2 §5.1.6.3.1).
            if header != UnsafeRawPointer(headerScratch) { headerScratch.copyMemory(from: header, byteCount: VirtioNetHeader.size) }
            headerScratch.storeBytes(of: UInt8(0), as: UInt8.self)
            header = UnsafeRawPointer(headerScratch)
        }
        switch rx.enqueue(header: header, headerSize: guestHeaderSize, frame: pieces, mergeable: mergeable, publish: false) {
        case .delivered:
            var n = 0
            for i in 0..<pieces.count { n += pieces.iov[i].iov_len }
            return .bytes(n)
        case .noBuffers:
            return .wouldBlock
        case .tooLarge:
            stats[Stat.rxTooLarge] &+= 1
            return .failed(EMSGSIZE)
        case .fault(let f):
            ringFault(f)
            return .failed(EIO)
        }
    }

    @inline(__always) private func acceptsGSO(_ gso: UInt8) -> Bool {
        switch gso & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoNone: return true
        case VirtioNetHeader.gsoTCPv4: return acceptsTSO4 && (gso & VirtioNetHeader.gsoECN == 0 || acceptsECN)
        case VirtioNetHeader.gsoTCPv6: return acceptsTSO6 && (gso & VirtioNetHeader.gsoECN == 0 || acceptsECN)
        default: return false
        }
    }

    /// A GSO or partial-checksum frame for a guest that did not negotiate that offload: cut
    /// into wire segments or its checksum completed (`Wire.SoftwareOffload`), each delivered
    /// with a zero virtio-net header. The payload is copied once, into the guest's buffers
    /// (plus once into `linear` when the switch handed the frame over in pieces). A frame
    /// Wire refuses (malformed headers) is counted `rx-offload-malformed`; segments that find
    /// the ring full after the first went in are counted `rx-segments-lost` (the frame
    /// counts as sent: its first part reached the guest, TCP recovers the rest).
    private func finishInSoftware(_ rx: Virtqueue, header: UnsafeRawPointer, pieces: IOVPieces) -> IOResult {
        var total = 0
        for i in 0..<pieces.count { total += pieces.iov[i].iov_len }
        let frame: UnsafeRawBufferPointer
        if pieces.count == 1, let b = pieces.iov[0].iov_base {
            frame = UnsafeRawBufferPointer(start: b, count: total)
        } else {
            guard total <= VhostUserPort.linearCapacity else { stats[Stat.rxTooLarge] &+= 1; return .failed(EMSGSIZE) }
            var at = 0
            for i in 0..<pieces.count where pieces.iov[i].iov_len > 0 {
                (linear + at).copyMemory(from: pieces.iov[i].iov_base!, byteCount: pieces.iov[i].iov_len)
                at += pieces.iov[i].iov_len
            }
            frame = UnsafeRawBufferPointer(start: linear, count: total)
        }
        // Bytes 0..<16: the zero virtio-net header every finished frame carries; 16..<18: a
        // completed checksum; the rest of `segmentHeader` from 64: one segment's headers.
        let zero = UnsafeRawPointer(segmentHeader)
        switch SoftwareOffload(frame: frame, header: header) {
        case .refused:
            stats[Stat.rxOffload] &+= 1
            return .failed(EINVAL)
        case .plain:
            return deliver(rx, header: zero, OnePiece(base: frame.baseAddress!, count: total), length: total)
        case .checksum(let offset, let value):
            segmentHeader.storeBytes(of: value.bigEndian, toByteOffset: 16, as: UInt16.self)
            let f = frame.baseAddress!
            let r = deliver(rx, header: zero, ThreePieces(a: (f, offset), b: (UnsafeRawPointer(segmentHeader + 16), 2),
                                                          c: (f + offset + 2, total - offset - 2)), length: total)
            if case .bytes = r { stats[Stat.checksummed] &+= 1 }
            return r
        case .segments(let plan):
            // Room for every segment first (one chain each at least): a frame is refused
            // whole rather than cut short when the guest is behind.
            if rx.pendingCount < plan.segmentCount { return .wouldBlock }
            let slot = segmentHeader + 64
            for i in 0..<plan.segmentCount {
                let seg = plan.header(ofSegment: i, into: slot)
                let piece = TwoPieces(a: (UnsafeRawPointer(slot), seg.headerLength), b: (frame.baseAddress! + seg.payloadOffset, seg.payloadLength))
                let r = deliver(rx, header: zero, piece, length: seg.length)
                switch r {
                case .bytes: continue
                case .wouldBlock, .failed(EMSGSIZE):
                    if i == 0 { return r }
                    stats[Stat.segmentsLost] &+= UInt64(plan.segmentCount - i)
                    return .bytes(total)
                case .failed:
                    return r
                }
            }
            stats[Stat.segmented] &+= 1
            return .bytes(total)
        }
    }

    /// One plain frame into the guest's RX ring (the outcomes of `writev`).
    @inline(__always)
    private func deliver<P: FramePieces>(_ rx: Virtqueue, header: UnsafeRawPointer, _ pieces: P, length: Int) -> IOResult {
        switch rx.enqueue(header: header, headerSize: guestHeaderSize, frame: pieces, mergeable: mergeable, publish: false) {
        case .delivered: return .bytes(length)
        case .noBuffers: return .wouldBlock
        case .tooLarge:
            stats[Stat.rxTooLarge] &+= 1
            return .failed(EMSGSIZE)
        case .fault(let f):
            ringFault(f)
            return .failed(EIO)
        }
    }

    /// Ends a batch of writes: the guest's RX ring's `used.idx` is published, and the guest
    /// interrupted if it wants to be.
    public func flush(queue: Int) {
        sync()
        if let rx = rxQueue, rx.needsInterrupt(), rxCallFD >= 0 { _ = cl_eventfd_signal(rxCallFD) }
    }

    /// Ends a batch of reads: the TX chains taken are given back (`used.idx` published once
    /// for the batch; a read that finds the ring empty does it too).
    public func endReads(queue: Int) {
        txQueue?.publishUsed()
    }

    // MARK: - Datapath side of the publication rule

    @inline(__always) private func sync() {
        if publishedEpoch.load(ordering: .acquiring) != seenEpoch { adopt() }
    }

    /// Takes the newest snapshot (see the type's doc comment). Rare: not on the frame path.
    private func adopt() {
        if !attached.load(ordering: .relaxed) { attached.store(true, ordering: .releasing) }
        seenEpoch = publishedEpoch.load(ordering: .acquiring)
        wake.drain()
        let next = published.withLock { $0 }
        // What the old rings published gets its interrupt through the old call fds (still
        // open: `current` holds them).
        if let rx = rxQueue, rx.progress.pointee.fault == 0, rx.needsInterrupt(), rxCallFD >= 0 { _ = cl_eventfd_signal(rxCallFD) }
        if let tx = txQueue, tx.progress.pointee.fault == 0, tx.needsInterrupt(), txCallFD >= 0 { _ = cl_eventfd_signal(txCallFD) }
        let txChanged = next.tx?.progress !== current.tx?.progress
        current = next
        rxQueue = next.rx?.queue
        txQueue = next.tx?.queue
        if let q = rxQueue, q.progress.pointee.fault != 0 { rxQueue = nil }
        if let q = txQueue, q.progress.pointee.fault != 0 { txQueue = nil }
        kickFD = next.tx?.kick?.fd ?? -1
        kickless = next.tx != nil && next.tx?.kick == nil
        txCallFD = next.tx?.call?.fd ?? -1
        rxCallFD = next.rx?.call?.fd ?? -1
        mergeable = next.mergeable
        guestHeaderSize = next.guestHeaderSize
        acceptsCSUM = next.acceptsCSUM; acceptsTSO4 = next.acceptsTSO4; acceptsTSO6 = next.acceptsTSO6; acceptsECN = next.acceptsECN
        if txChanged {
            // A (re)started ring: look at it as if just woken.
            active = true
        }
        if next.rarpSerial != rarpSerialSeen {
            rarpSerialSeen = next.rarpSerial
            pendingRARP = next.rarp
        }
        if pendingRARP != nil && !spinning {
            // Make sure the datapath comes back for it.
            spinning = true
            spin.signal()
            idleSince = monotonicNanoseconds()
        }
        ackedEpoch.store(next.epoch, ordering: .releasing)
    }

    private func ringFault(_ f: VirtqueueFault) {
        stats[Stat.fault(f)] &+= 1
        if let q = txQueue, q.progress.pointee.fault != 0 { txQueue = nil }
        if let q = rxQueue, q.progress.pointee.fault != 0 { rxQueue = nil }
        faultSignal.signal()
    }

    // MARK: - Control side

    /// Publishes `config` to the datapath (control thread; see the type's doc comment).
    func publish(_ config: VhostDatapathConfig) {
        published.withLock { $0 = config }
        wake.signal()
        publishedEpoch.store(config.epoch, ordering: .releasing)
    }

    /// Waits until the datapath runs snapshot `epoch` or newer (at most `timeout` seconds);
    /// true at once when no datapath thread calls this port.
    func waitForDatapath(epoch: UInt64, timeout: Double = 2) -> Bool {
        let deadline = monotonicNanoseconds() + Int64(timeout * 1e9)
        while attached.load(ordering: .acquiring) && ackedEpoch.load(ordering: .acquiring) < epoch {
            if monotonicNanoseconds() > deadline { return false }
            usleep(50)
        }
        return true
    }

    /// Adds or removes the TX kick fd in the inner epoll (control thread).
    func watchKick(add: Int32?, remove: Int32?) {
        if let r = remove { try? inner.remove(r) }
        if let a = add { try? inner.add(a, data: 2) }
    }
}

/// The switch's iovecs after the header, as `FramePieces`.
struct IOVPieces: FramePieces {
    let iov: UnsafePointer<iovec>
    let count: Int
    var pieceCount: Int { count }
    @inline(__always) func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int) {
        let v = iov[index]
        return (UnsafeRawPointer(v.iov_base!), v.iov_len)
    }
}

/// A frame in one, two or three pieces (software offloads: a segment's headers and its
/// payload slice; a frame with its finished checksum spliced in).
struct OnePiece: FramePieces {
    let base: UnsafeRawPointer, count: Int
    var pieceCount: Int { 1 }
    @inline(__always) func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int) { (base, count) }
}
struct TwoPieces: FramePieces {
    let a: (UnsafeRawPointer, Int), b: (UnsafeRawPointer, Int)
    var pieceCount: Int { 2 }
    @inline(__always) func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int) { index == 0 ? a : b }
}
struct ThreePieces: FramePieces {
    let a: (UnsafeRawPointer, Int), b: (UnsafeRawPointer, Int), c: (UnsafeRawPointer, Int)
    var pieceCount: Int { 3 }
    @inline(__always) func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int) { index == 0 ? a : index == 1 ? b : c }
}

/// Slots of `VhostUserPort.stats`.
enum Stat {
    static let txOversize = 0, txRunt = 1, rxTooLarge = 2, rxOffload = 3, rarps = 4, connections = 5, disconnects = 6, protocolError = 7, dirtyLogs = 8
    static func fault(_ f: VirtqueueFault) -> Int { 8 + Int(f.rawValue) }
    /// Frames cut into segments, frames whose checksum was completed (software offloads),
    /// and segments lost to a full ring half way through a frame.
    static let segmented = 9 + VirtqueueFault.allCases.count
    static let checksummed = segmented + 1
    static let segmentsLost = segmented + 2
    static let count = segmented + 3
}
