#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// An AF_PACKET switch port on an existing netdev: a physical NIC uplink, or the host-side
/// netdev of a TAP that QEMU holds (DESIGN.md "Attaching guests").
///
/// Receives through a TPACKET_V3 ring (default 64 blocks × 128 KiB, 1 ms block retire
/// timeout) or a TPACKET_V2 ring (`perFrameWakeups`, 2048-byte slots), mmap'ed once:
/// `read(into:)` copies the next frame out of the ring without a system call and hands its
/// slot (block) back to the kernel once copied. The kernel strips the outer 802.1Q/802.1ad tag into the ring header; `read`
/// puts it back after the MACs, so the switch core sees frames as they were on the wire.
/// Transmits with one `sendmsg(2)` per frame (no TX ring yet). Frames this socket (or the
/// host stack) sends on the interface are not read back: `PACKET_IGNORE_OUTGOING` (Linux
/// ≥ 4.20), or a userspace filter on `PACKET_OUTGOING` where the option is missing.
/// The interface is put in promiscuous mode for the socket's lifetime.
///
/// Frames longer than the ring frame (frame size − ~80 bytes of headers) arrive truncated
/// and are counted in `truncatedFrames` — unless `copyOversizeFrames` (V2) has the kernel
/// deliver them whole through the socket queue (below).
///
/// **Offloads** (`vnetHeaderSize` 12 or 10): every frame read is preceded by a
/// virtio-net header (PACKET_VNET_HDR_SZ, set before the ring exists), so what the kernel
/// knows about a frame travels with it instead of being lost:
/// - `CHECKSUM_PARTIAL` (TP_STATUS_CSUMNOTREADY; a local sender on a veth/macvlan/tap with
///   tx offload on): NEEDS_CSUM with csum_start/csum_offset — finish it with
///   `Wire.ChecksumCompletion` where the egress cannot;
/// - GRO and GSO super-frames (up to 64 KiB): gso_type TCPV4/TCPV6/UDP_L4 and gso_size —
///   pass them whole to a vnet-header egress or cut them with `Wire.Segmentation`;
/// - a verified checksum (TP_STATUS_CSUM_VALID): DATA_VALID.
/// A stripped VLAN tag put back moves csum_start/hdr_len by 4. A GSO frame the header
/// cannot describe (SCTP, GRE, a UDP tunnel's GSO) is dropped by the kernel and counted in
/// `stats().drops`.
///
/// **Large frames on V2**: `copyOversizeFrames` (PACKET_COPY_THRESH) keeps 2 KiB slots for
/// wire-sized frames (no system call per frame) while a super-frame that does not fit its
/// slot is queued whole on the socket and read with one `recvmsg` (~45 wire frames' worth
/// per call). The choice for switch ports, measured by `Scripts/bench/offload-ring.sh` (one
/// iperf3 TSO stream over a veth, 2 shared cores, three runs): every ring kept up with
/// 9–17 Gb/s; reader CPU 0.13–0.14 s per GB for V2 with the copy, 0.12–0.15 for 68 KiB V2
/// slots, 0.08–0.12 for V3 (no system call at all). The memory decides: the copy ring
/// holds 4096 frames in 8 MiB (plus a socket queue used only by super-frames), 68 KiB slots
/// hold 256 frames in 17 MiB (4096 would take 272 MiB), and V3's 16 MiB of blocks add up
/// to a block timeout (≥ 1 ms) to every lone frame.
///
/// Usable as a datapath port (`pollFD`, `vnetHeaderSize`, `read(into:)`, `writev`). Needs
/// CAP_NET_RAW (CAP_NET_ADMIN to size the copy queue beyond net.core.rmem_max). Not
/// thread-safe: one owner (a datapath thread) at a time.
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
        /// Bytes of virtio-net header before each frame `read` returns: 0 (none), 10
        /// (`struct virtio_net_hdr`) or 12 (`virtio_net_hdr_v1`, the switch's form;
        /// PACKET_VNET_HDR_SZ on Linux ≥ 6.2, emulated over PACKET_VNET_HDR before).
        public var vnetHeaderSize: Int
        /// V2 only: deliver frames longer than a slot whole, through the socket queue
        /// (PACKET_COPY_THRESH) instead of truncated. Ignored on V3, whose frames may
        /// use a whole block.
        public var copyOversizeFrames: Bool
        /// Bytes the kernel may hold queued for `copyOversizeFrames` (SO_RCVBUFFORCE);
        /// 0: 4 MiB. When full, oversize frames arrive truncated (`truncatedFrames`).
        public var copyQueueBytes: UInt32

        public init(blockSize: UInt32 = 128 * 1024, blockCount: UInt32 = 64,
                    frameSize: UInt32 = 2048, retireMilliseconds: UInt32 = 1,
                    filterOutgoingInUserspace: Bool = false, perFrameWakeups: Bool = false,
                    vnetHeaderSize: Int = 0, copyOversizeFrames: Bool = false, copyQueueBytes: UInt32 = 0) {
            self.filterOutgoingInUserspace = filterOutgoingInUserspace
            self.perFrameWakeups = perFrameWakeups
            self.vnetHeaderSize = vnetHeaderSize
            self.copyOversizeFrames = copyOversizeFrames
            self.copyQueueBytes = copyQueueBytes
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
        /// Frames the kernel dropped: the ring was full, or (with a virtio-net header) a
        /// GSO frame whose type the header cannot describe (SCTP, GRE, UDP tunnels).
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

    /// Opens the port on interface `name` (wraps `clp_open`: socket, PACKET_VERSION V2/V3,
    /// PACKET_VNET_HDR_SZ, PACKET_COPY_THRESH, PACKET_RX_RING, mmap, bind,
    /// PACKET_MR_PROMISC, PACKET_IGNORE_OUTGOING).
    /// - Throws: `SystemError`: ENODEV for an unknown interface, EPERM without
    ///   CAP_NET_RAW, EINVAL for a bad ring geometry or a `vnetHeaderSize` other than 0,
    ///   10, 12, ENOMEM if the ring cannot be allocated.
    public init(interface name: String, configuration: Configuration = Configuration()) throws {
        guard [0, 10, 12].contains(configuration.vnetHeaderSize) else {
            throw SystemError(operation: "open AF_PACKET ring: virtio-net header size \(configuration.vnetHeaderSize)", subject: "interface \(name)", errno: EINVAL)
        }
        let ring = UnsafeMutablePointer<clp_ring>.allocate(capacity: 1)
        ring.initialize(to: clp_ring())
        var cfg = clp_config(block_size: configuration.blockSize, block_count: configuration.blockCount,
                             frame_size: configuration.frameSize, retire_ms: configuration.retireMilliseconds,
                             filter_outgoing_in_userspace: configuration.filterOutgoingInUserspace ? 1 : 0,
                             version: configuration.perFrameWakeups ? 2 : 3,
                             vnet_hdr_size: UInt32(configuration.vnetHeaderSize),
                             copy_oversize: configuration.copyOversizeFrames ? 1 : 0,
                             copy_queue_bytes: configuration.copyQueueBytes)
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

    /// Bytes of virtio-net header before each frame `read` returns (0, 10 or 12).
    public var vnetHeaderSize: Int { Int(ring.pointee.vnet_hdr_size) }
    /// The header size the kernel itself uses on this socket: 12 where PACKET_VNET_HDR_SZ
    /// exists (Linux ≥ 6.2), 10 where the 12-byte form is emulated, 0 without a header.
    public var kernelVNetHeaderSize: Int { Int(ring.pointee.kernel_vnet_hdr_size) }
    /// Whether oversize frames come whole through the socket queue (V2 with
    /// `copyOversizeFrames`).
    public var copiesOversizeFrames: Bool { ring.pointee.copy_oversize != 0 }

    /// Copies the next frame from the ring into `buffer` (wraps `clp_ring_next`, no system
    /// call — one `recvmsg` for an oversize frame with `copyOversizeFrames`). Returns
    /// `.bytes(n)`, `.wouldBlock` when the ring holds no complete block, `.failed(ENOBUFS)`
    /// when the buffer cannot even hold the virtio-net header, or `.failed(EBADF)` after
    /// `close()`. With `vnetHeaderSize` the frame is preceded by its virtio-net header (in
    /// `n`). A stripped VLAN tag is put back (so `n` includes it, and the header's offsets
    /// account for it). A frame longer than its ring slot (without `copyOversizeFrames`) or
    /// the buffer is counted in `truncatedFrames`: without a virtio-net header it is returned
    /// cut to fit; with one it is skipped (its header would describe missing bytes).
    /// Allocates nothing.
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
    /// the local stack on a veth with tx checksum offload on. With a virtio-net header
    /// they carry NEEDS_CSUM; without one they cannot be finished.
    public var checksumNotReadyFrames: UInt64 { ring.pointee.csum_not_ready }
    /// Frames whose checksum the kernel or NIC verified (TP_STATUS_CSUM_VALID; DATA_VALID
    /// in the virtio-net header).
    public var checksumValidFrames: UInt64 { ring.pointee.csum_valid }
    /// Frames whose virtio-net header says GSO (a GRO or GSO super-frame).
    public var gsoFrames: UInt64 { ring.pointee.gso }
    /// Oversize frames read whole from the socket queue (`copyOversizeFrames`).
    public var copiedFrames: UInt64 { ring.pointee.copied }
    /// TP_STATUS_COPY slots whose copy was not on the queue (dropped; should stay 0).
    public var missingCopies: UInt64 { ring.pointee.copy_missing }
    /// Outgoing frames dropped by the userspace filter (only when !kernelIgnoresOutgoing).
    public var outgoingFramesSkipped: UInt64 { ring.pointee.outgoing_skipped }

    /// Unmaps the ring and closes the socket (promiscuous mode is dropped). Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        _ = clp_close(ring)
        fd = -1
    }
}
