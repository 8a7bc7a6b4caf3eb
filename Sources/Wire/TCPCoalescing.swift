/// Receive coalescing of TCP segments — GRO done by the switch: consecutive segments of one
/// TCP flow become one GSO super-frame with a virtio-net header (`gso_type` TCPV4/TCPV6,
/// `gso_size` the segments' payload size, NEEDS_CSUM), so a port that takes offloads gets
/// one frame for a run of up to 64 KiB instead of one per segment — the receive half of
/// what `Segmentation` undoes on send. Used on the overlay's receive path, where
/// a UDP_GRO socket hands over a whole run of VXLAN datagrams at once.
///
/// In place, over the caller's buffer, never allocating or trapping:
/// ```
///  before:  | seg 0: H | p0 |  seg 1: [..] H | p1 |  seg 2: [..] H | p2 |     (H: headers)
///  after:   | H' | p0 | p1 | p2 |                      (each payload moved up; H' merged)
/// ```
/// `start(_:length:capacity:)` opens a run on a segment that qualifies; `append` moves a
/// following segment's payload to the end of the run when it continues it, and refuses
/// (changing nothing) when it does not; `finish` writes the merged headers and the
/// virtio-net header. A refused segment is the caller's to deliver as it is: nothing is
/// ever dropped for being unusual.
///
/// The rules are Linux's `tcp_gro_receive`/`inet_gro_receive`/`ipv6_gro_receive`, kept
/// strict so that `Segmentation` of the super-frame gives back the original segments byte
/// for byte:
/// - A segment qualifies when it is TCP over IPv4 without options (IHL 5) or IPv6 without
///   extension headers, behind at most two VLAN tags, carries payload, ends where its IP
///   length says (no padding), has ACK set and none of SYN, FIN, RST, URG, CWR (CWR marks
///   the first segment after a window reduction: RFC 3168 §6.1.2), and its IPv4 header
///   checksum and TCP checksum verify — the super-frame's checksum is left to the
///   receiver (NEEDS_CSUM), so a corrupted segment must never hide inside it.
/// - A segment continues the run when every header byte equals the run's first segment's
///   except the IPv4 total length, ID (which must be the previous + 1), header checksum,
///   IPv6 payload length, TCP sequence number (which must follow the run's last byte),
///   checksum and PSH; when its payload is at most the first's (`gso_size`); and when the
///   run is not closed. A shorter segment or one with PSH is taken and closes the run (PSH
///   stays on the super-frame, as on the last segment).
/// - A run stays within `capacity` bytes and an IP length of 65535.
///
/// The super-frame: the first segment's headers with the IP length of the whole, the IPv4
/// header checksum recomputed, PSH when the last segment had it, and in the TCP checksum
/// field the pseudo-header sum over the whole length (what a NEEDS_CSUM sender puts there:
/// Linux `tcp4_gro_complete`); the virtio-net header has `hdr_len` = headers, `csum_start`
/// = the TCP header, `csum_offset` 16. A run of one segment is left as it arrived, without
/// a virtio-net header.
public struct TCPCoalescer {
    /// The run's first byte (nil: no run open).
    public private(set) var frame: UnsafeMutableRawPointer?
    /// Bytes of the run so far (headers and every payload).
    public private(set) var length: Int = 0
    /// Segments in the run.
    public private(set) var segments: Int = 0
    @usableFromInline var capacity = 0
    @usableFromInline var networkOffset = 0
    @usableFromInline var transportOffset = 0
    @usableFromInline var headerLength = 0
    @usableFromInline var isIPv6 = false
    @usableFromInline var segmentSize = 0
    @usableFromInline var nextSequence: UInt32 = 0
    @usableFromInline var nextID: UInt16 = 0
    @usableFromInline var closed = false
    @usableFromInline var push = false

    /// The largest IP length of a super-frame (the 16-bit IPv4 total length and IPv6 payload
    /// length fields).
    public static let maximumIPLength = 65535

    /// A closed coalescer (no run).
    public init() {}

    /// A run is open.
    @inlinable public var isOpen: Bool { frame != nil }

    // TCP flag bits (RFC 9293 §3.1, RFC 3168 §6.1).
    @usableFromInline static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, psh: UInt8 = 0x08
    @usableFromInline static let ack: UInt8 = 0x10, urg: UInt8 = 0x20, cwr: UInt8 = 0x80

    /// Whether `count` bytes at `a` and `b` are equal (true for count ≤ 0): 8 bytes a step.
    @inlinable @inline(__always)
    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Bool {
        var i = 0
        while i &+ 8 <= count {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i &+= 8
        }
        while i < count {
            if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
            i &+= 1
        }
        return true
    }

    /// Where a qualifying segment's headers are: (layout, payload bytes), or nil when the
    /// segment does not qualify (see the type's rules). Reads only.
    @inlinable
    static func qualify(_ base: UnsafeRawPointer, length: Int) -> (layout: TransportLayout, payload: Int)? {
        guard case .layout(let l) = TransportLayout.parse(UnsafeRawBufferPointer(start: base, count: length)) else { return nil }
        guard l.transportProtocol == IPProtocol.tcp, l.end == length, l.payloadOffset < l.end else { return nil }
        let l3 = l.networkOffset, l4 = l.transportOffset
        if l.isIPv6 {
            guard l4 == l3 + 40 else { return nil }
        } else {
            guard base.load(fromByteOffset: l3, as: UInt8.self) == 0x45 else { return nil }
            guard InternetChecksum.sum(base + l3, count: 20) == 0xFFFF else { return nil }
        }
        let flags = base.load(fromByteOffset: l4 + 13, as: UInt8.self)
        guard flags & ack != 0, flags & (syn | fin | rst | urg | cwr) == 0 else { return nil }
        // The TCP checksum over the pseudo-header and the whole segment.
        let l4Length = l.end - l4
        let pseudo: UInt16
        if l.isIPv6 {
            pseudo = InternetChecksum.pseudoHeaderSum(ipv6Addresses: base + l3 + 8, nextHeader: IPProtocol.tcp, length: l4Length)
        } else {
            pseudo = InternetChecksum.pseudoHeaderSum(
                ipv4Source: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l3 + 12, as: UInt32.self)),
                destination: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self)),
                protocol: IPProtocol.tcp, length: l4Length)
        }
        guard InternetChecksum.add(pseudo, InternetChecksum.sum(base + l4, count: l4Length)) == 0xFFFF else { return nil }
        return (l, l.end - l.payloadOffset)
    }

    /// Opens a run on the segment at `base` (`length` bytes, Ethernet first) if it
    /// qualifies; the run may grow to `capacity` bytes from `base`. Returns false, leaving
    /// no run open, when the segment does not qualify (deliver it as it is) or carries PSH
    /// (a run of one). A run already open is abandoned: `finish` it first.
    public mutating func start(_ base: UnsafeMutableRawPointer, length: Int, capacity: Int) -> Bool {
        frame = nil
        guard length <= capacity, let (l, payload) = TCPCoalescer.qualify(base, length: length) else { return false }
        let l4 = l.transportOffset
        guard base.load(fromByteOffset: l4 + 13, as: UInt8.self) & TCPCoalescer.psh == 0 else { return false }
        frame = base
        self.length = length
        self.capacity = capacity
        segments = 1
        networkOffset = l.networkOffset
        transportOffset = l4
        headerLength = l.payloadOffset
        isIPv6 = l.isIPv6
        segmentSize = payload
        nextSequence = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l4 + 4, as: UInt32.self)) &+ UInt32(payload)
        nextID = isIPv6 ? 0 : UInt16(bigEndian: base.loadUnaligned(fromByteOffset: l.networkOffset + 4, as: UInt16.self)) &+ 1
        closed = false
        push = false
        return true
    }

    /// Appends the segment at `base` (`length` bytes, Ethernet first) to the open run when
    /// it continues it: its payload is moved to the end of the run (memmove: it may lie
    /// anywhere after the run's end, in the same buffer or another). Returns false, changing
    /// nothing, when no run is open or the segment does not continue it.
    public mutating func append(_ base: UnsafeRawPointer, length: Int) -> Bool {
        guard let run = frame, !closed else { return false }
        let h = headerLength, l3 = networkOffset, l4 = transportOffset
        guard length > h else { return false }
        let payload = length - h
        guard payload <= segmentSize, self.length + payload <= capacity,
              self.length + payload - l3 - (isIPv6 ? 40 : 0) <= TCPCoalescer.maximumIPLength else { return false }
        // Header bytes equal to the first segment's, but for the per-segment fields.
        @inline(__always) func same(_ from: Int, _ to: Int) -> Bool { TCPCoalescer.equal(run + from, base + from, count: to - from) }
        @inline(__always) func be16(_ o: Int) -> Int { Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        guard same(0, l3) else { return false }
        if isIPv6 {
            guard same(l3, l3 + 4), be16(l3 + 4) == length - l3 - 40, same(l3 + 6, l3 + 40) else { return false }
        } else {
            guard same(l3, l3 + 2), be16(l3 + 2) == length - l3, UInt16(be16(l3 + 4)) == nextID,
                  same(l3 + 6, l3 + 10), same(l3 + 12, l3 + 20) else { return false }
        }
        guard same(l4, l4 + 4),
              UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l4 + 4, as: UInt32.self)) == nextSequence,
              same(l4 + 8, l4 + 13) else { return false }
        let flags = base.load(fromByteOffset: l4 + 13, as: UInt8.self)
        guard flags & ~TCPCoalescer.psh == run.load(fromByteOffset: l4 + 13, as: UInt8.self), same(l4 + 14, l4 + 16), same(l4 + 18, h)
        else { return false }
        // Same headers: the checksums decide (the first segment's were checked by `start`).
        guard TCPCoalescer.qualify(base, length: length) != nil else { return false }
        (run + self.length).copyMemory(from: base + h, byteCount: payload)   // memmove semantics: may overlap
        self.length += payload
        segments += 1
        nextSequence &+= UInt32(payload)
        nextID &+= 1
        if payload < segmentSize || flags & TCPCoalescer.psh != 0 {
            closed = true
            push = flags & TCPCoalescer.psh != 0
        }
        return true
    }

    /// Ends the run and closes the coalescer: the frame, its length, and whether it is a
    /// super-frame (two or more segments), in which case its headers were merged and its
    /// virtio-net header (12 bytes, `VirtioNetHeader`) written to `header`. A run of one
    /// segment is returned as it arrived and `header` is not touched. With no run open:
    /// (nil, 0, false).
    public mutating func finish(header: UnsafeMutableRawPointer) -> (frame: UnsafeMutableRawPointer?, length: Int, coalesced: Bool) {
        guard let run = frame else { return (nil, 0, false) }
        frame = nil
        guard segments > 1 else { return (run, length, false) }
        let l3 = networkOffset, l4 = transportOffset
        if isIPv6 {
            run.storeBytes(of: UInt16(truncatingIfNeeded: length - l3 - 40).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
        } else {
            run.storeBytes(of: UInt16(truncatingIfNeeded: length - l3).bigEndian, toByteOffset: l3 + 2, as: UInt16.self)
            run.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
            run.storeBytes(of: (~InternetChecksum.sum(run + l3, count: 20)).bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
        }
        if push {
            let f = run.load(fromByteOffset: l4 + 13, as: UInt8.self)
            run.storeBytes(of: f | TCPCoalescer.psh, toByteOffset: l4 + 13, as: UInt8.self)
        }
        let l4Length = length - l4
        let seed: UInt16
        if isIPv6 {
            seed = InternetChecksum.pseudoHeaderSum(ipv6Addresses: run + l3 + 8, nextHeader: IPProtocol.tcp, length: l4Length)
        } else {
            seed = InternetChecksum.pseudoHeaderSum(
                ipv4Source: UInt32(bigEndian: run.loadUnaligned(fromByteOffset: l3 + 12, as: UInt32.self)),
                destination: UInt32(bigEndian: run.loadUnaligned(fromByteOffset: l3 + 16, as: UInt32.self)),
                protocol: IPProtocol.tcp, length: l4Length)
        }
        run.storeBytes(of: seed.bigEndian, toByteOffset: l4 + 16, as: UInt16.self)
        VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, gsoType: isIPv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                        hdrLen: UInt16(headerLength), gsoSize: UInt16(segmentSize), csumStart: UInt16(l4), csumOffset: 16)
            .store(to: header)
        return (run, length, true)
    }
}
