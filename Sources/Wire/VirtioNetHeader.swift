/// The virtio-net header that travels in front of every frame carrying offload metadata
/// inside the switch: `struct virtio_net_hdr_v1` (virtio 1.2 §5.1.6, "Device Operation";
/// Linux `include/uapi/linux/virtio_net.h`, where the same 12 bytes are also called
/// `virtio_net_hdr_mrg_rxbuf`).
///
/// ```
///  0       1          2         4          6            8             10            12
///  +-------+----------+---------+----------+------------+-------------+-------------+
///  | flags | gso_type | hdr_len | gso_size | csum_start | csum_offset | num_buffers |
///  +-------+----------+---------+----------+------------+-------------+-------------+
///  16-bit fields little-endian (VIRTIO_F_VERSION_1; the kernel's vio_le() on x86-64/arm64)
/// ```
///
/// Decision (lead): the switch carries the **12-byte** form everywhere, because vhost-user
/// with VERSION_1 always uses it; TAPs get `TUNSETVNETHDRSZ 12` and AF_PACKET sockets
/// `PACKET_VNET_HDR_SZ 12`. The 10-byte legacy form (no `num_buffers`) is what TAPs and
/// AF_PACKET use by default; `init(loading:size:)`/`store(to:size:)` read and write both.
///
/// Offsets (`csum_start`, `hdr_len`) count from the first byte of the Ethernet header, so
/// pushing or popping an 802.1Q tag in front of the L3 header moves them (`shift(by:)`).
/// A pure value: no allocation, no traps on any input.
public struct VirtioNetHeader: Equatable, Hashable, Sendable {
    /// `VIRTIO_NET_HDR_F_*` bits.
    public var flags: UInt8
    /// `VIRTIO_NET_HDR_GSO_*`: the segmentation kind in the low bits, `ecn` (0x80) on top.
    public var gsoType: UInt8
    /// `hdr_len`: bytes of headers (Ethernet through L4) — only a hint: Linux fills it with
    /// the skb's linear length on receive, so segmentation parses the headers itself.
    public var hdrLen: UInt16
    /// `gso_size`: L4 payload bytes per segment (the MSS for TCP), when `gsoType != none`.
    public var gsoSize: UInt16
    /// `csum_start`: offset of the first byte the partial checksum covers (the L4 header).
    public var csumStart: UInt16
    /// `csum_offset`: where the checksum field sits, counted from `csum_start` (16 for TCP,
    /// 6 for UDP).
    public var csumOffset: UInt16
    /// `num_buffers` (12-byte form only): descriptors a mergeable receive buffer spans.
    /// 0 on every frame the switch itself produces; a vhost-user backend sets 1 where the
    /// driver negotiated VIRTIO_NET_F_MRG_RXBUF.
    public var numBuffers: UInt16

    /// Bytes of the form the switch uses (`virtio_net_hdr_v1`).
    @inlinable public static var size: Int { 12 }
    /// Bytes of the legacy form (`virtio_net_hdr`), without `num_buffers`.
    @inlinable public static var legacySize: Int { 10 }
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial — the field holds the
    /// pseudo-header sum and the receiver must add the sum over `[csum_start, end)`.
    @inlinable public static var flagNeedsCsum: UInt8 { 1 }
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive only; Linux
    /// `CHECKSUM_UNNECESSARY`).
    @inlinable public static var flagDataValid: UInt8 { 2 }
    /// `VIRTIO_NET_HDR_F_RSC_INFO`: coalescing info in `csum_*` (never produced here).
    @inlinable public static var flagRSCInfo: UInt8 { 4 }
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    @inlinable public static var gsoNone: UInt8 { 0 }
    /// `VIRTIO_NET_HDR_GSO_TCPV4`: TSO over IPv4.
    @inlinable public static var gsoTCPv4: UInt8 { 1 }
    /// `VIRTIO_NET_HDR_GSO_UDP`: UFO (IP fragmentation of UDP), removed from Linux; refused.
    @inlinable public static var gsoUDP: UInt8 { 3 }
    /// `VIRTIO_NET_HDR_GSO_TCPV6`: TSO over IPv6.
    @inlinable public static var gsoTCPv6: UInt8 { 4 }
    /// `VIRTIO_NET_HDR_GSO_UDP_L4` (5, Linux ≥ 6.2; absent from the 6.1 headers): USO,
    /// each segment its own UDP datagram, over IPv4 or IPv6.
    @inlinable public static var gsoUDPL4: UInt8 { 5 }
    /// `VIRTIO_NET_HDR_GSO_ECN`: the TCP stream uses ECN (CWR may be set in the frame).
    @inlinable public static var gsoECN: UInt8 { 0x80 }
    /// A header with every field given (defaults: a plain, complete frame).
    @inlinable
    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, hdrLen: UInt16 = 0, gsoSize: UInt16 = 0,
                csumStart: UInt16 = 0, csumOffset: UInt16 = 0, numBuffers: UInt16 = 0) {
        self.flags = flags; self.gsoType = gsoType; self.hdrLen = hdrLen; self.gsoSize = gsoSize
        self.csumStart = csumStart; self.csumOffset = csumOffset; self.numBuffers = numBuffers
    }

    /// Reads a header of `size` bytes (10 or 12; any other value reads 10) at `raw`.
    /// `numBuffers` is 0 for the 10-byte form.
    @inlinable
    public init(loading raw: UnsafeRawPointer, size: Int = VirtioNetHeader.size) {
        @inline(__always) func le16(_ o: Int) -> UInt16 { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        flags = raw.load(fromByteOffset: 0, as: UInt8.self)
        gsoType = raw.load(fromByteOffset: 1, as: UInt8.self)
        hdrLen = le16(2)
        gsoSize = le16(4)
        csumStart = le16(6)
        csumOffset = le16(8)
        numBuffers = size >= 12 ? le16(10) : 0
    }

    /// Writes the header as `size` bytes (10 or 12; any other value writes 10) at `raw`.
    @inlinable
    public func store(to raw: UnsafeMutableRawPointer, size: Int = VirtioNetHeader.size) {
        raw.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
        raw.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        raw.storeBytes(of: hdrLen.littleEndian, toByteOffset: 2, as: UInt16.self)
        raw.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        raw.storeBytes(of: csumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        raw.storeBytes(of: csumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
        if size >= 12 { raw.storeBytes(of: numBuffers.littleEndian, toByteOffset: 10, as: UInt16.self) }
    }

    /// `NEEDS_CSUM` is set: the checksum at `csumStart + csumOffset` is partial.
    @inlinable public var needsCsum: Bool { flags & VirtioNetHeader.flagNeedsCsum != 0 }
    /// `DATA_VALID` is set: the receiver verified the checksum.
    @inlinable public var dataValid: Bool { flags & VirtioNetHeader.flagDataValid != 0 }
    /// The frame is a GSO super-frame (`gso_type` other than NONE, ECN bit ignored).
    @inlinable public var isGSO: Bool { gsoKind != VirtioNetHeader.gsoNone }
    /// `gso_type` without the ECN bit: NONE, TCPV4, UDP, TCPV6 or UDP_L4 (or garbage).
    @inlinable public var gsoKind: UInt8 { gsoType & ~VirtioNetHeader.gsoECN }
    /// The ECN bit of `gso_type`.
    @inlinable public var hasECN: Bool { gsoType & VirtioNetHeader.gsoECN != 0 }
    /// GSO or a partial checksum: a port without offloads cannot take the frame as it is.
    @inlinable public var needsOffload: Bool { isGSO || needsCsum }

    /// Moves the offsets by `delta` bytes: what inserting (`+4`) or removing (`-4`) an
    /// 802.1Q tag in front of the L3 header does to them. `csum_start` moves when
    /// NEEDS_CSUM is set, `hdr_len` when the frame is GSO and `hdr_len` is not 0 (0 means
    /// "unknown" to Linux). Both must lie at or after the end of an untagged Ethernet
    /// header (14) before and after the move, and within 16 bits; otherwise this returns
    /// false, changing nothing, and the caller drops the frame (offsets inside the
    /// Ethernet header are malformed). So a shift that succeeds can always be undone.
    @inlinable
    public mutating func shift(by delta: Int) -> Bool {
        var start = Int(csumStart), len = Int(hdrLen)
        if needsCsum {
            start += delta
            guard csumStart >= 14 && start >= 14 && start <= 0xFFFF else { return false }
        }
        if isGSO && hdrLen != 0 {
            len += delta
            guard hdrLen >= 14 && len >= 14 && len <= 0xFFFF else { return false }
        }
        csumStart = UInt16(start)
        hdrLen = UInt16(len)
        return true
    }

    /// `shift(by:)` applied to a header stored at `raw` (10- or 12-byte form: the fields it
    /// changes are in the first 10 bytes). Returns false, changing nothing, when it cannot.
    @inlinable
    public static func shift(_ raw: UnsafeMutableRawPointer, by delta: Int) -> Bool {
        var h = VirtioNetHeader(loading: UnsafeRawPointer(raw), size: legacySize)
        guard h.shift(by: delta) else { return false }
        h.store(to: raw, size: legacySize)
        return true
    }
}
