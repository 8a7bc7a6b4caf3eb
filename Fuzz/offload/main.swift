// libFuzzer target "offload": the Wire layer the datapath runs on frames that carry offload
// metadata — ChecksumCompletion (value and in place), Segmentation.plan/header/write,
// TransportLayout.parse, VirtioNetHeader.shift and FlowHash.of — over arbitrary header and
// frame bytes.
//
// Input: bytes 0–11 are the 12-byte virtio-net header (missing bytes read as 0), the rest is
// the frame. Besides "does not trap", it checks what must hold for every input:
//   - a completed checksum lies inside the frame, and the pseudo-header seed plus the sum of
//     the finished range verifies (the contract of NEEDS_CSUM);
//   - a plan has 1…512 segments whose payload slices tile [headers, datagram end) exactly;
//   - every segment re-parses with the same layout, ends where its IP length says, and its
//     IPv4 header and TCP/UDP checksums verify; the writev form equals the contiguous form;
//   - a tag shift that succeeds can be undone;
//   - coalescing undoes segmentation: the segments of a TCP plan, laid out as a UDP_GRO
//     buffer lays out VXLAN datagrams (each behind 8 bytes), coalesced in place by
//     TCPCoalescer, cut again by Segmentation with the coalescer's virtio-net header, give
//     the merged segments back byte for byte; the run stays within its capacity and an IP
//     length of 65535.
import Glibc
import Wire

private let scratch = UnsafeMutableRawPointer.allocate(byteCount: TransportLayout.maximumHeaderLength, alignment: 16)
private let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 16)
private let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 16)
/// The segments of a plan back to back (each behind 8 bytes), for coalescing; and the
/// originals, to compare with.
private let gro = UnsafeMutableRawBufferPointer.allocate(byteCount: 512 * (TransportLayout.maximumHeaderLength + 8) + 70_000, alignment: 16)
private let originals = UnsafeMutableRawBufferPointer.allocate(byteCount: 512 * TransportLayout.maximumHeaderLength + 70_000, alignment: 16)
private let vnet = UnsafeMutableRawPointer.allocate(byteCount: 12, alignment: 16)

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-offload invariant violated: \(what())") }
}

private func be16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }

/// The IPv4 header and L4 checksums of a segment verify.
private func verifySegment(_ seg: UnsafeRawBufferPointer, _ layout: TransportLayout) {
    guard case .layout(let l) = TransportLayout.parse(seg) else { fatalError("fuzz-offload: a segment does not re-parse") }
    check(l.networkOffset == layout.networkOffset && l.transportOffset == layout.transportOffset
          && l.payloadOffset == layout.payloadOffset && l.isIPv6 == layout.isIPv6 && l.transportProtocol == layout.transportProtocol,
          "segment layout \(l) differs from \(layout)")
    check(l.end == seg.count, "segment end \(l.end) != length \(seg.count)")
    let base = seg.baseAddress!
    if !l.isIPv6 {
        let ihl = Int(seg[l.networkOffset] & 0x0F) * 4
        check(InternetChecksum.sum(base + l.networkOffset, count: ihl) == 0xFFFF, "IPv4 header checksum")
    }
    let length = l.end - l.transportOffset
    let pseudo = l.isIPv6
        ? InternetChecksum.pseudoHeaderSum(ipv6Addresses: base + l.networkOffset + 8, nextHeader: l.transportProtocol, length: length)
        : InternetChecksum.pseudoHeaderSum(ipv4Source: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l.networkOffset + 12, as: UInt32.self)),
                                           destination: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l.networkOffset + 16, as: UInt32.self)),
                                           protocol: l.transportProtocol, length: length)
    check(InternetChecksum.add(pseudo, InternetChecksum.sum(base + l.transportOffset, count: length)) == 0xFFFF, "L4 checksum")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var raw = [UInt8](repeating: 0, count: 12)
    for i in 0..<min(12, size) { raw[i] = data[i] }
    let header = raw.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
    let frameCount = max(0, size - 12)
    guard frameCount <= copy.count else { return 0 }
    let frame = UnsafeRawBufferPointer(start: size > 12 ? UnsafeRawPointer(data + 12) : UnsafeRawPointer(scratch), count: frameCount)

    // Tag shifts.
    var shifted = header
    if shifted.shift(by: 4) {
        check(shifted.shift(by: -4) && shifted == header, "shift +4/-4 round trip")
    }

    // Checksum completion: the value, then in place on a copy.
    if frameCount > 0 { copy.baseAddress!.copyMemory(from: frame.baseAddress!, byteCount: frameCount) }
    let mutable = UnsafeMutableRawBufferPointer(rebasing: copy[0..<frameCount])
    let value = ChecksumCompletion(frame: frame, header: header)
    let reason = ChecksumCompletion.complete(mutable, header: header)
    switch value {
    case .notNeeded:
        check(reason == nil && !header.needsCsum, "notNeeded only without NEEDS_CSUM")
    case .refused(let r):
        check(reason == r, "refusal differs: \(String(describing: reason)) vs \(r)")
    case .store(let offset, let v):
        check(reason == nil && offset >= 14 && offset + 2 <= frameCount, "store at \(offset) of \(frameCount)")
        check(be16(copy.baseAddress!, offset) == v, "stored value")
        let start = Int(header.csumStart), end = TransportLayout.datagramEnd(frame)
        let seed = be16(frame.baseAddress!, offset)
        let s = InternetChecksum.add(seed, InternetChecksum.sum(copy.baseAddress! + start, count: end - start))
        check(s == 0xFFFF || s == 0, "completed checksum verifies against its seed: \(s)")
    }

    _ = FlowHash.of(frame)

    // Segmentation.
    guard case .segments(let plan) = Segmentation.plan(frame: frame, header: header) else { return 0 }
    let layout = plan.layout
    check(plan.segmentCount >= 1 && plan.segmentCount <= 512, "segment count \(plan.segmentCount)")
    check(plan.headerLength <= TransportLayout.maximumHeaderLength && layout.end <= frameCount, "header/end bounds")
    var next = layout.payloadOffset
    for i in 0..<plan.segmentCount {
        let seg = plan.header(ofSegment: i, into: scratch)
        check(seg.headerLength == plan.headerLength, "header length")
        check(seg.payloadOffset == next && seg.payloadLength >= 0 && seg.payloadOffset + seg.payloadLength <= layout.end,
              "segment \(i) slice \(seg.payloadOffset)+\(seg.payloadLength), expected at \(next), end \(layout.end)")
        check(seg.payloadLength <= plan.segmentSize, "segment larger than gso_size")
        next += seg.payloadLength
        let n = plan.write(segment: i, into: out)
        check(n == seg.length, "contiguous length")
        check(memcmp(out.baseAddress!, scratch, seg.headerLength) == 0, "writev header == contiguous header")
        check(seg.payloadLength == 0 || memcmp(out.baseAddress! + seg.headerLength, frame.baseAddress! + seg.payloadOffset, seg.payloadLength) == 0,
              "contiguous payload is the slice")
        verifySegment(UnsafeRawBufferPointer(rebasing: out[0..<n]), layout)
    }
    check(next == layout.end, "slices tile the payload: ended at \(next), datagram ends at \(layout.end)")
    if layout.transportProtocol == IPProtocol.tcp { coalesceBack(plan) }
    return 0
}

/// TCPCoalescer undoes Segmentation (see the header).
private func coalesceBack(_ plan: Segmentation) {
    var offsets: [Int] = [], lengths: [Int] = [], originalOffsets: [Int] = []
    var o = 0, k = 0
    for i in 0..<plan.segmentCount {
        o += 8
        let n = plan.write(segment: i, into: UnsafeMutableRawBufferPointer(rebasing: gro[o...]))
        (originals.baseAddress! + k).copyMemory(from: gro.baseAddress! + o, byteCount: n)
        offsets.append(o); lengths.append(n); originalOffsets.append(k)
        o += n; k += n
    }
    let base = gro.baseAddress!
    var c = TCPCoalescer()
    let capacity = gro.count - offsets[0]
    guard c.start(base + offsets[0], length: lengths[0], capacity: capacity) else { return }
    var merged = 1
    for i in 1..<plan.segmentCount {
        guard c.append(base + offsets[i], length: lengths[i]) else { break }
        merged += 1
        check(c.length <= capacity, "run beyond its capacity")
    }
    check(c.segments == merged, "segments counted \(c.segments), merged \(merged)")
    let run = c.finish(header: vnet)
    check(!c.isOpen && run.frame == base + offsets[0], "the run starts where it was opened")
    guard run.coalesced else {
        check(merged == 1 && run.length == lengths[0], "a run of one is the segment as it came")
        return
    }
    let h = VirtioNetHeader(loading: vnet)
    check(h.needsCsum && (h.gsoKind == VirtioNetHeader.gsoTCPv4 || h.gsoKind == VirtioNetHeader.gsoTCPv6), "coalesced header \(h)")
    check(Int(h.gsoSize) == plan.segmentSize && Int(h.hdrLen) == plan.headerLength, "gso_size/hdr_len")
    let frame = UnsafeRawBufferPointer(start: run.frame!, count: run.length)
    check(run.length - plan.layout.networkOffset <= TCPCoalescer.maximumIPLength + (plan.layout.isIPv6 ? 40 : 0), "IP length bound")
    guard case .segments(let again) = Segmentation.plan(frame: frame, header: h) else { fatalError("fuzz-offload: a coalesced frame does not re-plan") }
    check(again.segmentCount == merged, "re-cut into \(again.segmentCount), merged \(merged)")
    for i in 0..<merged {
        let n = again.write(segment: i, into: out)
        check(n == lengths[i] && memcmp(out.baseAddress!, originals.baseAddress! + originalOffsets[i], n) == 0,
              "segment \(i) cut again differs from the one received")
    }
}
