/// What a frame's virtio-net header (virtio 1.x §5.1.6, `struct virtio_net_hdr`) says the
/// receiver still has to do, reduced to what the forwarding decision needs.
///
/// A frame from a port with offloads (a TAP with `IFF_VNET_HDR`, an AF_PACKET socket with
/// `PACKET_VNET_HDR`, a vhost-user virtqueue) may be a GSO frame (one TCP or UDP super-frame
/// of up to 64 KiB, segmented by whoever finally puts it on a wire) or carry a partial
/// checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`). A port that cannot take either gets the frame
/// segmented or its checksum finished first, or refused.
public struct FrameOffload: Equatable, Sendable {
    /// A GSO frame: longer than the MTU by design.
    public var isGSO: Bool
    /// The L4 checksum is partial (`NEEDS_CSUM`): only a receiver that understands the
    /// header, or software completion, can finish it.
    public var needsChecksum: Bool
    @inlinable public init(isGSO: Bool = false, needsChecksum: Bool = false) { self.isGSO = isGSO; self.needsChecksum = needsChecksum }
    /// A plain frame: complete, wire-sized.
    @inlinable public static var none: FrameOffload { FrameOffload() }
    /// GSO, or a checksum left to the receiver: a port without offloads cannot take it as is.
    @inlinable public var needsOffload: Bool { isGSO || needsChecksum }
}
