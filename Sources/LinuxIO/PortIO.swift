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
    /// Writes one frame through queue `queue` (any queue reaches the same link).
    func writev(queue: Int, _ iov: UnsafePointer<iovec>, count: Int32) -> IOResult
    /// Reads and clears a pending socket error after epoll reported EPOLLERR (0: none).
    func takePendingError() -> Int32
    /// Ends a batch of writes through queue `queue`: a port that defers work per write
    /// (a virtqueue's guest notification, a batched send) does it here, once per batch.
    /// The datapath calls it after the writes of each batch to every port it wrote to.
    func flush(queue: Int)
    func close()
    /// False for a port the datapath never polls: its frames arrive through something
    /// shared (a tunnel port's frames come in on its underlay endpoint's sockets, which the
    /// datapath polls instead). Its `pollFD` is not used.
    var isPolled: Bool { get }
}

extension PortIO {
    /// Most ports send each frame at once: nothing to do.
    public func flush(queue: Int) {}
    /// Most ports are polled.
    public var isPolled: Bool { true }
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
    public var vnetHeaderSize: Int { vnetHeader ? VNetHeader.size : 0 }
    public var txVNetHeaderSize: Int { vnetHeaderSize }
    public func takePendingError() -> Int32 { 0 }
}

/// The `struct virtio_net_hdr` a TAP with IFF_VNET_HDR puts before each frame (10 bytes,
/// little-endian on the hosts we run on): flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset. A view over the receive buffer; `raw == nil` for ports without one.
public struct VNetHeader {
    public static let size = 10
    public let raw: UnsafeRawPointer?
    @inline(__always) public init(_ raw: UnsafeRawPointer?) { self.raw = raw }

    /// A TSO/GSO frame: longer than the MTU, segmented by whoever finally delivers it.
    @inline(__always) public var isGSO: Bool { raw.map { $0.load(fromByteOffset: 1, as: UInt8.self) != UInt8(CL_VNET_GSO_NONE) } ?? false }
    /// GSO, or a checksum left for the receiver to complete.
    @inline(__always) public var needsOffload: Bool {
        guard let r = raw else { return false }
        return isGSO || r.load(fromByteOffset: 0, as: UInt8.self) & UInt8(CL_VNET_F_NEEDS_CSUM) != 0
    }

    /// Moves csum_start (and hdr_len of a GSO frame) by `delta` bytes: what inserting or
    /// removing a tag before the L3 header does to those offsets.
    public static func shift(_ h: UnsafeMutableRawPointer, by delta: Int) {
        if h.load(fromByteOffset: 0, as: UInt8.self) & UInt8(CL_VNET_F_NEEDS_CSUM) != 0 {
            let start = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(start) + delta).littleEndian, toByteOffset: 6, as: UInt16.self)
        }
        let len = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        if h.load(fromByteOffset: 1, as: UInt8.self) != UInt8(CL_VNET_GSO_NONE), len != 0 {
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(len) + delta).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
    }
}
