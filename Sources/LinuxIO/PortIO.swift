import CLinux
import Model
#if canImport(Glibc)
import Glibc
#endif

/// Something a switch port can send frames to and receive frames from.
///
/// A netns guest's port is a TAP character device owned by the switch (one fd per queue);
/// AF_PACKET ports (NIC uplinks, QEMU guests' TAP netdevs: `PacketPort`) sit behind the
/// same calls with a single queue.
public protocol PortIO: AnyObject {
    /// Receive queues (each read by one datapath thread); 1 unless multiqueue.
    var queueCount: Int { get }
    /// A descriptor epoll can watch for readability of queue `queue`.
    func pollFD(queue: Int) -> Int32
    /// Bytes of virtio-net header before each frame read (0: plain frames).
    var vnetHeaderSize: Int { get }
    /// Bytes of virtio-net header before each frame written.
    var txVNetHeaderSize: Int { get }
    /// Reads one frame from queue `queue`.
    func read(queue: Int, into: UnsafeMutableRawBufferPointer) -> IOResult
    /// Reads a batch of frames from queue `queue` into `batch` (see `ReadBatch`); the
    /// datapath's one call per batch. The default calls `read` per frame; a port whose
    /// frames are in memory (a virtqueue) does its per-call work once per batch instead.
    func readBatch(queue: Int, into batch: ReadBatch) -> ReadBatch.Outcome
    /// Writes one frame through queue `queue` (any queue reaches the same link).
    func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
    /// Writes a batch of frames through queue `queue` (see `WriteBatch`), each as `writev`
    /// would, its outcome in `batch.results`. The default calls `writev` per frame; a port
    /// whose frames go to memory (a virtqueue) does its per-call work once per batch.
    func writeBatch(queue: Int, _ batch: WriteBatch)
    /// Reads and clears a pending socket error after epoll reported EPOLLERR (0: none).
    func takePendingError() -> Int32
    /// Ends a batch of writes through queue `queue`: a port that defers work per write
    /// (a virtqueue's guest notification, a batched send) does it here, once per batch.
    /// The datapath calls it after the writes of each batch to every port it wrote to.
    func flush(queue: Int)
    /// Ends a batch of reads from queue `queue`: a port that defers work per read (a
    /// virtqueue gives the guest its buffers back once per batch) does it here. The datapath
    /// calls it after each batch of reads, before letting the port's gate go.
    func endReads(queue: Int)
    func close()
    /// False for a port the datapath never polls: its frames arrive through something
    /// shared (a tunnel port's frames come in on its underlay endpoint's sockets, which the
    /// datapath polls instead). Its `pollFD` is not used.
    var isPolled: Bool { get }
    /// Non-nil for a port that must never be entered by two threads at once (a vhost-user
    /// port: one thread at a time may run its virtqueues). Whoever reads a batch from it, or
    /// writes a batch to it and ends that batch with `flush`, holds the gate meanwhile: once
    /// per batch, never per frame (Open vSwitch-DPDK takes a spinlock per burst on a vhost
    /// transmit queue shared by PMD threads the same way). A thread holding several gates
    /// takes them in ascending port order. Kernel-backed ports (TAP queues, sockets) need
    /// none: the kernel serialises them.
    var accessGate: PortAccessGate? { get }
    /// Whether the datapath should read this queue again at once, without asking epoll
    /// first (`Datapath`, "direct rounds"), after a batch of `count` frames. True for a
    /// port whose `read` finds frames by looking at memory it shares with its guest (a
    /// virtqueue, no system call) when the batch had frames or the port is polling its
    /// empty ring; false for file descriptors, which epoll must report.
    func readsAgain(after count: Int) -> Bool
}

/// Where a batch of reads goes: frames back to back in `area`, each at a 64-byte aligned
/// offset, each read offered `frameMax` bytes; the batch ends after `limit` frames, when
/// less than `frameMax` bytes of `areaSize` remain, when the queue runs dry, or on an error.
/// Frame `i`'s offset and length (bytes, vnet header included) go to `offsets[i]` and
/// `lengths[i]`. Memory the caller allocated once; nothing here allocates.
public struct ReadBatch {
    public let area: UnsafeMutableRawPointer
    public let areaSize: Int
    public let frameMax: Int
    public let offsets: UnsafeMutablePointer<Int>
    public let lengths: UnsafeMutablePointer<Int>
    public let limit: Int

    public init(area: UnsafeMutableRawPointer, areaSize: Int, frameMax: Int, offsets: UnsafeMutablePointer<Int>,
                lengths: UnsafeMutablePointer<Int>, limit: Int) {
        self.area = area; self.areaSize = areaSize; self.frameMax = frameMax
        self.offsets = offsets; self.lengths = lengths; self.limit = limit
    }

    /// The frames read, and the errno of a read that failed (0: none; the batch ended
    /// because the queue ran dry or the batch was full).
    public struct Outcome: Equatable {
        public var count: Int
        public var error: Int32
        public init(count: Int, error: Int32) { self.count = count; self.error = error }
    }

    /// Whether frame `count` + 1 still fits (the limit, and `frameMax` bytes at `offset`).
    @inline(__always) public func hasRoom(count: Int, offset: Int) -> Bool {
        count < limit && offset + frameMax <= areaSize
    }

    /// Records frame `count` of `length` bytes at `offset`; returns the next frame's offset.
    @inline(__always) public func record(_ count: Int, offset: Int, length: Int) -> Int {
        offsets[count] = offset
        lengths[count] = length
        return offset + ((length + 63) & ~63)
    }
}

/// A batch of frames to write, as the datapath's transmit list holds them: frame `i` is
/// `stride` iovecs after frame `i - 1`; its first iovec is a virtio-net header, then
/// `pieces[i]` iovecs of frame. `withHeader` false: the port takes no header, and the
/// frame's iovecs alone are written. Outcome `i` goes to `results[i]`. Memory the caller
/// allocated once; nothing here allocates.
public struct WriteBatch {
    public let iov: UnsafePointer<iovec>
    public let stride: Int
    public let pieces: UnsafePointer<Int32>
    public let results: UnsafeMutablePointer<IOResult>
    public let count: Int
    public let withHeader: Bool

    public init(iov: UnsafePointer<iovec>, stride: Int, pieces: UnsafePointer<Int32>, results: UnsafeMutablePointer<IOResult>,
                count: Int, withHeader: Bool) {
        self.iov = iov; self.stride = stride; self.pieces = pieces; self.results = results
        self.count = count; self.withHeader = withHeader
    }

    /// Frame `i`'s iovecs and their number, as `writev` takes them.
    @inline(__always) public func frame(_ i: Int) -> (iov: UnsafePointer<iovec>, count: Int32) {
        let first = iov + stride * i
        return withHeader ? (first, pieces[i] + 1) : (first + 1, pieces[i])
    }
}

extension PortIO {
    /// One `writev` per frame.
    public func writeBatch(queue: Int, _ batch: WriteBatch) {
        for i in 0..<batch.count {
            let f = batch.frame(i)
            batch.results[i] = writev(queue: queue, f.iov, count: f.count)
        }
    }

    /// One `read` per frame until the batch is full, the queue runs dry or a read fails.
    public func readBatch(queue: Int, into batch: ReadBatch) -> ReadBatch.Outcome {
        var count = 0, offset = 0
        while batch.hasRoom(count: count, offset: offset) {
            switch read(queue: queue, into: UnsafeMutableRawBufferPointer(start: batch.area + offset, count: batch.frameMax)) {
            case .bytes(let n):
                offset = batch.record(count, offset: offset, length: n)
                count += 1
            case .wouldBlock:
                return ReadBatch.Outcome(count: count, error: 0)
            case .failed(let e):
                return ReadBatch.Outcome(count: count, error: e)
            }
        }
        return ReadBatch.Outcome(count: count, error: 0)
    }

    /// Most ports send each frame at once: nothing to do.
    public func flush(queue: Int) {}
    /// Most ports finish each read at once: nothing to do.
    public func endReads(queue: Int) {}
    /// Most ports are polled.
    public var isPolled: Bool { true }
    /// Most ports are safe to call from several threads (the kernel serialises them).
    public var accessGate: PortAccessGate? { nil }
    /// Most ports are file descriptors: epoll says when to read them.
    public func readsAgain(after count: Int) -> Bool { false }
}

/// The mutual exclusion of one port whose calls must not overlap (`PortIO.accessGate`): a
/// pthread mutex held for a batch of reads, or a batch of writes and its `flush`.
/// Uncontended it costs one atomic exchange per batch; a thread that finds it held (another
/// worker in the middle of a batch on the same port) sleeps in the kernel instead of spinning.
public final class PortAccessGate: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Takes the gate (waits while another thread holds it).
    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    /// Lets it go; only the thread that took it may.
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }
    /// Runs `body` holding the gate.
    @inline(__always) public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock(); defer { unlock() }
        return try body()
    }
}

/// Single-queue ports implement the queue-less calls; the queue is ignored.
public protocol SingleQueuePortIO: PortIO {
    var pollFD: Int32 { get }
    func read(into: UnsafeMutableRawBufferPointer) -> IOResult
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
}

extension SingleQueuePortIO {
    public var queueCount: Int { 1 }
    public func pollFD(queue: Int) -> Int32 { pollFD }
    @inline(__always) public func read(queue: Int, into buffer: UnsafeMutableRawBufferPointer) -> IOResult { read(into: buffer) }
    @inline(__always) public func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult { writev(iov, count: count) }
}

extension TAPDevice: PortIO {
    public var vnetHeaderSize: Int { vnetHeader ? VNetHeader.size : 0 }   // set to 12 by `init`
    public var txVNetHeaderSize: Int { vnetHeaderSize }
    public func takePendingError() -> Int32 { 0 }
}

/// The virtio-net header the switch puts before every frame that carries offload metadata:
/// `struct virtio_net_hdr_v1` (virtio 1.x §5.1.6, 12 bytes, little-endian): flags,
/// gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. TAPs are set to it
/// (TUNSETVNETHDRSZ), AF_PACKET sockets too (PACKET_VNET_HDR_SZ), and vhost-user uses it
/// with VERSION_1, so a frame crosses the switch with the same header whatever its ports.
/// A view over the receive buffer; `raw == nil` for ports without one. The full model is
/// `Wire.VirtioNetHeader`.
public struct VNetHeader {
    public static let size = 12
    public let raw: UnsafeRawPointer?
    @inline(__always) public init(_ raw: UnsafeRawPointer?) { self.raw = raw }

    /// A TSO/GSO frame: longer than the MTU, segmented by whoever finally delivers it.
    @inline(__always) public var isGSO: Bool { raw.map { $0.load(fromByteOffset: 1, as: UInt8.self) & 0x7F != UInt8(CL_VNET_GSO_NONE) } ?? false }
    /// The L4 checksum is left to the receiver (NEEDS_CSUM).
    @inline(__always) public var needsChecksum: Bool {
        raw.map { $0.load(fromByteOffset: 0, as: UInt8.self) & UInt8(CL_VNET_F_NEEDS_CSUM) != 0 } ?? false
    }
    /// GSO, or a checksum left for the receiver to complete.
    @inline(__always) public var needsOffload: Bool { isGSO || needsChecksum }
}
