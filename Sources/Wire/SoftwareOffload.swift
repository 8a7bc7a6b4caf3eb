/// What a switch does for a copy of a frame bound for a port that cannot take offloads (a
/// tunnel, a port without a virtio-net header): the frame's GSO or partial checksum,
/// finished in software. Planned once per frame; pure, no allocation.
///
/// - a GSO frame becomes `segments` (TCP or UDP, every checksum complete: `Segmentation`);
/// - a partial checksum (NEEDS_CSUM) becomes a `checksum` to store at `offset`
///   (`ChecksumCompletion`; the frame itself is not changed, so other copies may still
///   leave whole);
/// - a frame whose header asks for nothing stays `plain`;
/// - a malformed or unsupported one is `refused`, with the reason.
public enum SoftwareOffload {
    case segments(Segmentation)
    case checksum(offset: Int, value: UInt16)
    case plain
    case refused(OffloadDropReason)

    /// Plans the finishing of `frame` (Ethernet first) described by the 12-byte virtio-net
    /// header at `header` (nil: a plain frame).
    public init(frame: UnsafeRawBufferPointer, header raw: UnsafeRawPointer?) {
        guard let raw else { self = .plain; return }
        let h = VirtioNetHeader(loading: raw)
        if h.isGSO {
            switch Segmentation.plan(frame: frame, header: h) {
            case .segments(let s): self = .segments(s)
            case .refused(let r): self = .refused(r)
            }
        } else {
            switch ChecksumCompletion(frame: frame, header: h) {
            case .notNeeded: self = .plain
            case .store(let offset, let value): self = .checksum(offset: offset, value: value)
            case .refused(let r): self = .refused(r)
            }
        }
    }

    /// Wire frames the copy becomes (1 unless segmented).
    @inlinable public var frames: Int {
        if case .segments(let s) = self { return s.segmentCount }
        return 1
    }
}
