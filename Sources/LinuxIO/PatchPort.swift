import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One direction of one queue of a patch link: a bounded single-producer, single-consumer
/// byte ring of frame records, allocated once, with an eventfd the consumer polls.
///
/// ```
///   buffer (capacity bytes, a multiple of 8)
///   ┌────────┬──────────────────────┬─pad─┬────────┬─────────┬───────────┐
///   │ len u32│ vnet header + frame  │     │ len u32│ …       │ 0xFFFFFFFF│ (wrap marker)
///   └────────┴──────────────────────┴─────┴────────┴─────────┴───────────┘
///   tail (consumer) ─────────────────────────────▶ head (producer), both counting bytes
///   forever; position = counter mod capacity
/// ```
/// A record is a 4-byte length and the bytes written (the virtio-net header first, then the
/// frame), padded to 8 bytes. A record that would not fit before the end of the buffer is
/// written at its start instead, after a wrap marker (a length of all ones) that tells the
/// consumer to skip the rest. The producer publishes `head` with release ordering after
/// copying; the consumer reads it with acquire ordering, copies, then publishes `tail`.
/// A full ring refuses the frame (`push` returns false; the datapath counts
/// `transmit-queue-full`), it never waits and never allocates.
///
/// Threads: exactly one producer and one consumer at a time (see `PatchPort`). Either may
/// be any thread.
public final class PatchRing {
    /// Bytes of ring memory (virtual: pages are touched only as records reach them).
    public let capacity: Int
    /// Largest record payload (virtio-net header + a 64 KiB GSO frame); larger writes fail.
    public static let largestPayload = 65536 + 64
    private let buffer: UnsafeMutableRawPointer
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    /// Signalled once per batch by the producer (`PatchPort.flush`); polled by the consumer.
    public let event: EventFD
    private static let wrapMarker = UInt32.max

    /// - Parameter capacity: ring bytes, rounded up to a multiple of 8 and at least two
    ///   largest records.
    /// - Throws: `SystemError` when the eventfd cannot be created.
    public init(capacity: Int) throws {
        let c = max((capacity + 7) & ~7, 2 * (PatchRing.largestPayload + 8))
        self.capacity = c
        event = try EventFD()
        buffer = .allocate(byteCount: c, alignment: 8)
    }

    deinit { buffer.deallocate(); event.close() }

    @inline(__always) private static func recordSize(_ payload: Int) -> Int { (4 + payload + 7) & ~7 }

    /// Bytes queued (records, padding and wrap gaps), for tests and reports.
    public var usedBytes: Int { head.load(ordering: .acquiring) &- tail.load(ordering: .acquiring) }

    /// Appends one record gathered from `iov` (producer only). False when it does not fit
    /// (the ring is full) or is larger than `largestPayload`.
    @inline(__always)
    public func push(_ iov: UnsafePointer<iovec>, count: Int32) -> Bool {
        var total = 0
        for i in 0..<Int(count) { total += iov[i].iov_len }
        guard total <= PatchRing.largestPayload else { return false }
        let size = PatchRing.recordSize(total)
        let h = head.load(ordering: .relaxed)
        let free = capacity - (h &- tail.load(ordering: .acquiring))
        var at = h % capacity
        var advance = size
        if at + size > capacity {
            // Does not fit before the end: mark the gap, start over at 0.
            let gap = capacity - at
            guard free >= gap + size else { return false }
            buffer.storeBytes(of: PatchRing.wrapMarker, toByteOffset: at, as: UInt32.self)
            advance += gap
            at = 0
        } else {
            guard free >= size else { return false }
        }
        buffer.storeBytes(of: UInt32(total), toByteOffset: at, as: UInt32.self)
        var off = at + 4
        for i in 0..<Int(count) {
            let n = iov[i].iov_len
            if n > 0 { (buffer + off).copyMemory(from: iov[i].iov_base!, byteCount: n) }
            off += n
        }
        head.store(h &+ advance, ordering: .releasing)
        return true
    }

    /// Takes the oldest record into `into` (consumer only): its length, or nil when the
    /// ring is empty. A record longer than `into` is cut to fit (the datapath's buffers
    /// hold `largestPayload`, so this does not happen there).
    @inline(__always)
    public func pop(into out: UnsafeMutableRawBufferPointer) -> Int? {
        var t = tail.load(ordering: .relaxed)
        let h = head.load(ordering: .acquiring)
        guard t != h else { return nil }
        var at = t % capacity
        if buffer.load(fromByteOffset: at, as: UInt32.self) == PatchRing.wrapMarker {
            t &+= capacity - at
            at = 0
        }
        let length = Int(buffer.load(fromByteOffset: at, as: UInt32.self))
        let n = min(length, out.count)
        if n > 0 { out.baseAddress!.copyMemory(from: buffer + at + 4, byteCount: n) }
        tail.store(t &+ PatchRing.recordSize(length), ordering: .releasing)
        return n
    }
}

/// One end of a patch link between two switches (Open vSwitch's `patch` port): what the
/// datapath writes to this end is read from the other end by the other switch, in memory.
///
/// ```
///   switch A ── writev(q) ─▶ PatchRing A→B [q] ─▶ read(q) ── switch B
///   switch A ◀─ read(q) ──── PatchRing B→A [q] ◀─ writev(q) ─ switch B
///                 flush(q): one eventfd signal per batch, polled as B's pollFD(q)
/// ```
/// Frames keep their 10-byte virtio-net header (`vnetHeaderSize`, `txVNetHeaderSize`), so
/// a GSO frame or one with a partial checksum crosses whole and is finished only where it
/// finally leaves (a TAP, an uplink). Nothing is allocated per frame: each direction has
/// one `PatchRing` per queue, allocated when the pair is made.
///
/// Queues: a pair is made with as many queues as the datapath has workers. Worker w writes
/// through queue `w mod queueCount` (so queue w) and reads queue q when `q mod threads == w`
/// (so queue w): every ring has exactly one producer and one consumer, which is what
/// `PatchRing` needs. A pair must therefore have at least as many queues as the datapath
/// that uses it has workers.
///
/// A full ring drops the frame (`writev` reports `wouldBlock`: the datapath counts it as
/// `transmit-queue-full` on this port). `close()` marks the end closed (reads report
/// `wouldBlock`, writes fail); the rings and their eventfds are freed with the last end.
public final class PatchPort: PortIO {
    /// What this end writes (the other end reads), per queue.
    private let transmit: [PatchRing]
    /// What this end reads (the other end writes), per queue.
    private let receive: [PatchRing]
    private var closed = false
    /// A name for messages (`switch/port`).
    public let label: String

    /// Ring bytes per direction and queue by default: 2 MiB, room for 32 64 KiB GSO frames
    /// or ~1 300 full-size ones (a whole 64-frame batch of either kind).
    public static let defaultRingBytes = 2 << 20

    private init(label: String, transmit: [PatchRing], receive: [PatchRing]) {
        self.label = label; self.transmit = transmit; self.receive = receive
    }

    /// Makes the two joined ends of a patch link.
    /// - Parameters:
    ///   - labels: the ends' names for messages, e.g. `("sw0/link-sw1", "sw1/link-sw0")`.
    ///   - queues: ≥ the datapath's worker count (see the type's comment); ≥ 1.
    ///   - ringBytes: bytes per ring (2 × queues rings).
    /// - Throws: `SystemError` when an eventfd cannot be created.
    public static func pair(labels: (String, String), queues: Int, ringBytes: Int = PatchPort.defaultRingBytes) throws -> (PatchPort, PatchPort) {
        precondition(queues >= 1)
        let ab = try (0..<queues).map { _ in try PatchRing(capacity: ringBytes) }
        let ba = try (0..<queues).map { _ in try PatchRing(capacity: ringBytes) }
        return (PatchPort(label: labels.0, transmit: ab, receive: ba), PatchPort(label: labels.1, transmit: ba, receive: ab))
    }

    public var queueCount: Int { receive.count }
    public func pollFD(queue: Int) -> Int32 { receive[queue].event.fd }
    public var vnetHeaderSize: Int { VNetHeader.size }
    public var txVNetHeaderSize: Int { VNetHeader.size }

    /// Takes the next frame (with its virtio-net header) of queue `queue`. When the ring is
    /// empty the eventfd is drained and the ring checked once more (a frame pushed between
    /// the first check and the drain would otherwise wait for the next signal).
    @inline(__always)
    public func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        if closed { return .wouldBlock }
        let ring = receive[queue]
        if let n = ring.pop(into: buffer) { return .bytes(n) }
        ring.event.drain()
        if let n = ring.pop(into: buffer) { return .bytes(n) }
        return .wouldBlock
    }

    /// Queues one frame (virtio-net header first) for the other end; `wouldBlock` when the
    /// ring is full, `failed(EMSGSIZE)` for a frame over `PatchRing.largestPayload`,
    /// `failed(EBADF)` after `close()`.
    @inline(__always)
    public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        if closed { return .failed(EBADF) }
        var total = 0
        for i in 0..<Int(count) { total += iov[i].iov_len }
        if total > PatchRing.largestPayload { return .failed(EMSGSIZE) }
        return transmit[queue].push(iov, count: count) ? .bytes(total) : .wouldBlock
    }

    /// Wakes the other end's reader once for the batch just written.
    public func flush(queue: Int) {
        if !closed { transmit[queue].event.signal() }
    }

    public func takePendingError() -> Int32 { 0 }

    /// Marks this end closed. Idempotent. The rings live until both ends are released.
    public func close() { closed = true }

    /// Bytes waiting to be read at this end, all queues together (tests, diagnostics).
    public var queuedBytes: Int { receive.reduce(0) { $0 + $1.usedBytes } }
}
