#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// An AF_PACKET switch port on an existing netdev: a physical NIC uplink, or the host-side
/// netdev of a TAP that QEMU holds (DESIGN.md "Attaching guests").
///
/// Receives through a TPACKET_V3 ring mmap'ed once (default 64 blocks × 128 KiB, 2048-byte
/// frames, 1 ms block retire timeout): `read(into:)` copies the next frame out of the ring
/// without a system call and hands each block back to the kernel once its last frame was
/// copied. The kernel strips the outer 802.1Q/802.1ad tag into the ring header; `read`
/// puts it back after the MACs, so the switch core sees frames as they were on the wire.
/// Transmits with one `sendmsg(2)` per frame (no TX ring yet). Frames this socket (or the
/// host stack) sends on the interface are not read back: `PACKET_IGNORE_OUTGOING` (Linux
/// ≥ 4.20), or a userspace filter on `PACKET_OUTGOING` where the option is missing.
/// The interface is put in promiscuous mode for the socket's lifetime.
///
/// Frames longer than the ring frame (frame size − ~80 bytes of headers) arrive truncated
/// and are counted in `truncatedFrames`: turn GRO/LRO off on the netdev (`ethtool -K … gro
/// off`) so the kernel does not coalesce frames beyond the MTU before we see them.
///
/// Usable as a datapath port (`pollFD`, `vnetHeaderSize`, `read(into:)`, `writev`). Needs
/// CAP_NET_RAW. Not thread-safe: one owner (a datapath thread) at a time.
public final class PacketSocket {
    /// Ring geometry. Block size must be a multiple of the page size; frame size a
    /// multiple of 16 that bounds the largest frame received.
    public struct Configuration: Equatable {
        public var blockSize: UInt32
        public var blockCount: UInt32
        public var frameSize: UInt32
        public var retireMilliseconds: UInt32
        /// Skip PACKET_IGNORE_OUTGOING and drop outgoing frames in `read` instead (what
        /// happens anyway on kernels before 4.20); for tests of that fallback.
        public var filterOutgoingInUserspace: Bool
        /// TPACKET_V2 (one slot per frame, a wake-up per frame: no added latency) instead of
        /// TPACKET_V3 (frames packed in blocks, handed over when a block fills or after
        /// `retireMilliseconds`: a lone frame can wait up to that long). Switch ports use V2.
        public var perFrameWakeups: Bool

        public init(blockSize: UInt32 = 128 * 1024, blockCount: UInt32 = 64,
                    frameSize: UInt32 = 2048, retireMilliseconds: UInt32 = 1,
                    filterOutgoingInUserspace: Bool = false, perFrameWakeups: Bool = false) {
            self.filterOutgoingInUserspace = filterOutgoingInUserspace
            self.perFrameWakeups = perFrameWakeups
            self.blockSize = blockSize
            self.blockCount = blockCount
            self.frameSize = frameSize
            self.retireMilliseconds = retireMilliseconds
        }
    }

    /// Kernel counters accumulated since the socket opened (PACKET_STATISTICS).
    public struct Statistics: Equatable {
        /// Frames the socket accepted, including `drops`.
        public var packets: UInt64 = 0
        /// Frames dropped because the ring was full.
        public var drops: UInt64 = 0
        /// Times the ring filled up (the queue froze until a block came back).
        public var freezes: UInt64 = 0
    }

    /// The socket fd, or -1 after `close()`.
    public private(set) var fd: Int32
    /// The interface name this port is bound to.
    public let name: String
    /// The interface index this port is bound to.
    public let ifindex: Int32
    /// Whether the kernel filters our own transmitted frames (PACKET_IGNORE_OUTGOING);
    /// false means `read` filters them.
    public let kernelIgnoresOutgoing: Bool

    @usableFromInline let ring: UnsafeMutablePointer<clp_ring>
    private var accumulated = Statistics()

    /// Opens the port on interface `name` (wraps `clp_open`: socket, PACKET_VERSION V3,
    /// PACKET_RX_RING, mmap, bind, PACKET_MR_PROMISC, PACKET_IGNORE_OUTGOING).
    /// - Throws: `SystemError`: ENODEV for an unknown interface, EPERM without
    ///   CAP_NET_RAW, EINVAL for a bad ring geometry, ENOMEM if the ring cannot be allocated.
    public init(interface name: String, configuration: Configuration = Configuration()) throws {
        let ring = UnsafeMutablePointer<clp_ring>.allocate(capacity: 1)
        ring.initialize(to: clp_ring())
        var cfg = clp_config(block_size: configuration.blockSize, block_count: configuration.blockCount,
                             frame_size: configuration.frameSize, retire_ms: configuration.retireMilliseconds,
                             filter_outgoing_in_userspace: configuration.filterOutgoingInUserspace ? 1 : 0,
                             version: configuration.perFrameWakeups ? 2 : 3)
        do {
            fd = try Syscall.require("open AF_PACKET ring", subject: "interface \(name)") {
                clp_open(name, &cfg, ring)
            }
        } catch {
            ring.deallocate()
            throw error
        }
        self.ring = ring
        self.name = name
        self.ifindex = ring.pointee.ifindex
        self.kernelIgnoresOutgoing = ring.pointee.kernel_ignores_outgoing != 0
    }

    deinit {
        close()
        ring.deallocate()
    }

    /// The fd to watch for readability (a ring block is ready for us).
    public var pollFD: Int32 { fd }

    /// Frames carry no virtio-net header.
    public var vnetHeaderSize: Int { 0 }

    /// Copies the next frame from the ring into `buffer` (wraps `clp_ring_next`, no system
    /// call). Returns `.bytes(n)`, `.wouldBlock` when the ring holds no complete block, or
    /// `.failed(EBADF)` after `close()`. A stripped VLAN tag is put back (so `n` includes
    /// it); a frame longer than the buffer is cut to fit (counted in `truncatedFrames`).
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        guard fd >= 0 else { return .failed(EBADF) }
        guard let base = buffer.baseAddress else { return .failed(EINVAL) }
        let ring = self.ring
        return Syscall.io { clp_ring_next(ring, base, buffer.count) }
    }

    /// Sends one frame gathered from `count` pieces (sendmsg(2), MSG_DONTWAIT): e.g. MACs,
    /// a pushed VLAN tag and the rest without copying them together. `.wouldBlock` when the
    /// socket buffer is full; `.failed(ENOBUFS)` when the device queue is, EMSGSIZE above
    /// the MTU, ENETDOWN/ENXIO when the link is down or gone, EBADF after `close()`.
    @inlinable
    public func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        let fd = self.fd
        guard fd >= 0 else { return .failed(EBADF) }
        return Syscall.io { clp_sendv(fd, iov, count) }
    }

    /// Sends one whole frame (see `writev`).
    @inlinable
    public func write(_ buffer: UnsafeRawBufferPointer) -> IOResult {
        var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
        return writev(&iov, count: 1)
    }

    /// Kernel counters since the socket opened. The kernel resets PACKET_STATISTICS on
    /// every read; this accumulates the deltas, so call it from the owning thread only.
    public func stats() throws -> Statistics {
        guard fd >= 0 else { return accumulated }
        var p: UInt64 = 0, d: UInt64 = 0, f: UInt64 = 0
        let fd = self.fd
        try Syscall.require("getsockopt PACKET_STATISTICS", subject: "interface \(name)") { clp_stats(fd, &p, &d, &f) }
        accumulated.packets &+= p
        accumulated.drops &+= d
        accumulated.freezes &+= f
        return accumulated
    }

    /// Frames cut short, by the ring's frame size or a too-small read buffer.
    public var truncatedFrames: UInt64 { ring.pointee.truncated }
    /// Frames whose checksum was left to offload (TP_STATUS_CSUMNOTREADY), e.g. sent by
    /// the local stack on a veth with tx checksum offload on.
    public var checksumNotReadyFrames: UInt64 { ring.pointee.csum_not_ready }
    /// Outgoing frames dropped by the userspace filter (only when !kernelIgnoresOutgoing).
    public var outgoingFramesSkipped: UInt64 { ring.pointee.outgoing_skipped }

    /// Unmaps the ring and closes the socket (promiscuous mode is dropped). Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        _ = clp_close(ring)
        fd = -1
    }
}
