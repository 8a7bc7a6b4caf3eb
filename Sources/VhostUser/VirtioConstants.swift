/// Feature bits of virtio-net and of the vhost-user protocol that this backend knows.
///
/// Sources: the virtio 1.2 specification (§5.1.3 "Feature bits", §6 "Reserved Feature Bits"),
/// Linux `include/uapi/linux/virtio_net.h`, `virtio_ring.h`, `vhost.h`, and QEMU's
/// `docs/interop/vhost-user.rst` ("Protocol features").
public enum VirtioFeature {
    /// Device handles packets with partial checksum (the guest may send NEEDS_CSUM frames).
    public static let csum: UInt64 = 1 << 0
    /// Driver handles packets with partial checksum (we may send NEEDS_CSUM frames).
    public static let guestCSUM: UInt64 = 1 << 1
    /// The guest can receive TSOv4 / TSOv6 / TSO with ECN (we may send GSO frames).
    public static let guestTSO4: UInt64 = 1 << 7
    public static let guestTSO6: UInt64 = 1 << 8
    public static let guestECN: UInt64 = 1 << 9
    /// The device (we) can receive TSOv4 / TSOv6 / TSO with ECN from the guest.
    public static let hostTSO4: UInt64 = 1 << 11
    public static let hostTSO6: UInt64 = 1 << 12
    public static let hostECN: UInt64 = 1 << 13
    /// The guest can merge receive buffers: a frame may span several RX chains (`num_buffers`).
    public static let mrgRXBuf: UInt64 = 1 << 15
    /// The guest announces itself (gratuitous ARP) after a migration when asked; QEMU handles
    /// the control queue, the backend only has to offer the bit.
    public static let guestAnnounce: UInt64 = 1 << 21
    /// Dirty-page logging for live migration (VHOST_F_LOG_ALL, linux/vhost.h).
    public static let logAll: UInt64 = 1 << 26
    /// Descriptors may point at indirect descriptor tables (virtio §2.7.5.3).
    public static let indirectDesc: UInt64 = 1 << 28
    /// `used_event` / `avail_event` notification suppression (virtio §2.7.7, §2.7.10).
    public static let eventIdx: UInt64 = 1 << 29
    /// vhost-user: the frontend may negotiate protocol features (VHOST_USER_F_PROTOCOL_FEATURES).
    public static let protocolFeatures: UInt64 = 1 << 30
    /// Virtio 1.0+ (little-endian everything; the net header is always 12 bytes).
    public static let version1: UInt64 = 1 << 32

    /// The checksum and segmentation offloads, both ways (withheld from a port made with
    /// `offloads: false`).
    public static let offloads: UInt64 = csum | guestCSUM | guestTSO4 | guestTSO6 | guestECN | hostTSO4 | hostTSO6 | hostECN

    /// Everything this backend offers in GET_FEATURES.
    public static let offered: UInt64 = csum | guestCSUM | guestTSO4 | guestTSO6 | guestECN | hostTSO4 | hostTSO6 | hostECN
        | mrgRXBuf | guestAnnounce | logAll | indirectDesc | eventIdx | protocolFeatures | version1
}

/// vhost-user protocol feature bits (vhost-user.rst, "Protocol features").
public enum VhostProtocolFeature {
    /// GET_QUEUE_NUM is answered (we serve one queue pair).
    public static let multiQueue: UInt64 = 1 << 0
    /// SET_LOG_BASE carries the log's shared-memory fd.
    public static let logSHMFD: UInt64 = 1 << 1
    /// SEND_RARP: the backend announces a migrated guest itself.
    public static let rarp: UInt64 = 1 << 2
    /// The frontend may ask for an acknowledgement of any message (`need_reply` flag).
    public static let replyAck: UInt64 = 1 << 3
    /// SET_STATUS / GET_STATUS.
    public static let status: UInt64 = 1 << 16

    /// Everything this backend offers in GET_PROTOCOL_FEATURES.
    public static let offered: UInt64 = multiQueue | logSHMFD | rarp | replyAck | status
}

/// Split-ring layout constants (virtio §2.7, Linux `virtio_ring.h`).
public enum VringFlag {
    /// Descriptor continues via `next`.
    public static let next: UInt16 = 1
    /// Buffer is device-writable (an RX buffer).
    public static let write: UInt16 = 2
    /// Buffer holds an indirect descriptor table.
    public static let indirect: UInt16 = 4
    /// avail.flags: the driver asks for no interrupts (without EVENT_IDX).
    public static let availNoInterrupt: UInt16 = 1
    /// used.flags: the device asks for no kicks (without EVENT_IDX).
    public static let usedNoNotify: UInt16 = 1
}

/// The `virtio_net_hdr_v1` the switch carries before every frame (12 bytes, little-endian:
/// flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers; virtio §5.1.6).
public enum VirtioNetHeader {
    /// Size inside the switch (VERSION_1 / MRG_RXBUF layout).
    public static let size = 12
    /// Size for a legacy guest without VERSION_1 and MRG_RXBUF (no `num_buffers`).
    public static let legacySize = 10
    /// flags: NEEDS_CSUM.
    public static let needsCSUM: UInt8 = 1
    /// gso_type values.
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoECN: UInt8 = 0x80
}
