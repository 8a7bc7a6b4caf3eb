/// Finishing a partial checksum: what a NIC does for `CHECKSUM_PARTIAL` (Linux
/// `skb_checksum_help`), done in software for an egress that cannot (a TAP or AF_PACKET
/// port without a virtio-net header, a tunnel, a capture).
///
/// The contract of `VIRTIO_NET_HDR_F_NEEDS_CSUM` (virtio 1.2 §5.1.6.2): the 16-bit field
/// at `csum_start + csum_offset` already holds the sum of the pseudo-header; the
/// receiver adds the ones' complement sum of every byte from `csum_start` to the end of
/// the packet — field included — and stores its complement there. Nothing else of the
/// frame is parsed, so the same code finishes TCP, UDP and ICMPv6 checksums, tagged or
/// not. Two details go beyond the letter of the contract:
/// - "the end of the packet" is the end of the IP datagram by its length field when the
///   frame is IPv4/IPv6 (`TransportLayout.datagramEnd`), so Ethernet padding never enters
///   the sum;
/// - a result of 0 is stored as 0xFFFF (Linux `CSUM_MANGLED_0`): the same value for TCP,
///   and for UDP the only correct one (0 means "no checksum", RFC 768).
///
/// After completion the frame is complete: send it with a header whose flags do not have
/// NEEDS_CSUM (0, or DATA_VALID), to every port — a receiver finishing the "partial"
/// checksum a second time would corrupt it.
public enum ChecksumCompletion: Equatable, Sendable {
    /// The header does not ask for completion (no NEEDS_CSUM; DATA_VALID or nothing).
    case notNeeded
    /// Store `value` big-endian at byte `offset` of the frame.
    case store(offset: Int, value: UInt16)
    /// The header's offsets do not fit the frame (or `csum_offset` is odd).
    case refused(OffloadDropReason)

    /// Computes the finished checksum of `frame` as described by `header`, without
    /// changing the frame: the datapath can patch it through an iovec (frame prefix,
    /// 2 bytes of scratch, the rest) when the same frame also leaves whole elsewhere.
    public init(frame: UnsafeRawBufferPointer, header: VirtioNetHeader) {
        guard header.needsCsum else { self = .notNeeded; return }
        let start = Int(header.csumStart)
        let field = start + Int(header.csumOffset)
        let end = TransportLayout.datagramEnd(frame)
        // An odd csum_offset would put the field across two of the summed words: no
        // checksum field is placed so (TCP 16, UDP 6, ICMPv6 2), and the result could not
        // verify. Linux does not check it; we refuse it with the out-of-range frames.
        guard let base = frame.baseAddress, start >= 14, header.csumOffset & 1 == 0, field + 2 <= end else {
            self = .refused(.checksumOutOfRange)
            return
        }
        let s = InternetChecksum.sum(base + start, count: end - start)
        let c = ~s
        self = .store(offset: field, value: c == 0 ? 0xFFFF : c)
    }

    /// Finishes the partial checksum of `frame` in place. Returns nil when done (or when
    /// nothing was to be done), or why the frame must be dropped.
    @discardableResult
    public static func complete(_ frame: UnsafeMutableRawBufferPointer, header: VirtioNetHeader) -> OffloadDropReason? {
        switch ChecksumCompletion(frame: UnsafeRawBufferPointer(frame), header: header) {
        case .notNeeded:
            return nil
        case .store(let offset, let value):
            frame.baseAddress!.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
            return nil
        case .refused(let reason):
            return reason
        }
    }
}
