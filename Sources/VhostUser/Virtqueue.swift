import Synchronization

/// Why a virtqueue was given up on: the driver broke the ring's rules. The port is reset
/// (the connection closed, the frontend starts the device again) and counted under the name.
/// Each is checked before the offending memory is touched (virtio 1.2 §2.7).
public enum VirtqueueFault: UInt8, CaseIterable, CustomStringConvertible {
    /// `avail.idx` ran more than the ring size ahead of the entries we consumed.
    case availIndexOutOfRange = 1
    /// A head or `next` index at or beyond the table's size.
    case descriptorIndexOutOfRange
    /// A buffer (or an indirect table) not inside one region of the memory table.
    case descriptorOutsideMemory
    /// A chain longer than its table: a loop (virtio §2.7.5.2: a chain never exceeds the queue size).
    case descriptorLoop
    /// An indirect table whose length is zero or not a multiple of 16, one with more than
    /// `Virtqueue.maxIndirect` entries, one inside an indirect table, or one combined with NEXT.
    case indirectTableInvalid

    /// The counter's name.
    public var description: String {
        switch self {
        case .availIndexOutOfRange: "avail-index-out-of-range"
        case .descriptorIndexOutOfRange: "descriptor-index-out-of-range"
        case .descriptorOutsideMemory: "descriptor-outside-memory"
        case .descriptorLoop: "descriptor-loop"
        case .indirectTableInvalid: "indirect-table-invalid"
        }
    }
}

/// Progress through one running split virtqueue: the indexes only the device side keeps.
///
/// Lives in memory allocated by `VirtqueueProgressBox` (a plain struct behind a pointer, so
/// the datapath updates it without reference counting). Written only by the thread that
/// runs the ring; the control thread reads `lastAvail` for GET_VRING_BASE after that thread
/// has acknowledged the ring's stop (see `VhostUserPort`).
public struct VirtqueueProgress {
    /// The next `avail.ring` slot to consume (SET_VRING_BASE sets it, GET_VRING_BASE reports it).
    public var lastAvail: UInt16
    /// `used.idx` counting every used element written: what `publishUsed` makes the driver see.
    public var usedIndex: UInt16
    /// `used.idx` as it is in guest memory (equal to `usedIndex` after `publishUsed`).
    public var publishedUsed: UInt16
    /// `avail.idx` as last read: the entries up to it are consumed before it is read again,
    /// so the driver's cache line is fetched once per burst, not once per frame.
    public var availSeen: UInt16
    /// `used.idx` at the last notification decision (EVENT_IDX's "old").
    public var signalled: UInt16
    /// We asked the driver to kick (after finding the ring empty).
    public var notificationsOn: Bool
    /// Non-zero once the ring faulted (`VirtqueueFault.rawValue`): it is never touched again.
    public var fault: UInt8
    /// With an `availIndexOutOfRange` fault: the `avail.idx` that was read (diagnostics).
    public var faultAvailIndex: UInt16

    public init(lastAvail: UInt16, usedIndex: UInt16) {
        self.lastAvail = lastAvail
        self.usedIndex = usedIndex
        publishedUsed = usedIndex
        availSeen = lastAvail
        signalled = usedIndex
        notificationsOn = false
        fault = 0
        faultAvailIndex = 0
    }
}

/// Owns one `VirtqueueProgress` for the life of a started ring (kept across memory-table
/// and log changes, replaced when the ring is started again).
public final class VirtqueueProgressBox {
    public let pointer: UnsafeMutablePointer<VirtqueueProgress>
    public init(_ value: VirtqueueProgress) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
    }
    deinit { pointer.deallocate() }
}

/// A frame given to `Virtqueue.enqueue` as pieces (the switch's iovecs, a test's arrays):
/// a generic parameter, specialised away on the frame path.
public protocol FramePieces {
    /// Number of pieces.
    var pieceCount: Int { get }
    /// Piece `index`: its first byte and length.
    func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int)
}

/// Outcome of taking one frame from a device-readable (guest TX) ring.
public enum DequeueResult: Equatable {
    /// No chain available.
    case empty
    /// A chain was consumed and this many bytes copied.
    case frame(Int)
    /// A chain was consumed but held more than the buffer: dropped.
    case oversize
    /// The driver broke the rules; the ring is dead (`progress.fault` set).
    case fault(VirtqueueFault)
}

/// Outcome of giving one frame to a device-writable (guest RX) ring.
public enum EnqueueResult: Equatable {
    /// Delivered in this many buffers (`num_buffers`).
    case delivered(Int)
    /// Not enough buffers posted: nothing consumed (the frame is dropped by the caller).
    case noBuffers
    /// Without MRG_RXBUF, the first chain was too short for the frame: nothing consumed.
    case tooLarge
    /// The driver broke the rules; the ring is dead.
    case fault(VirtqueueFault)
}

/// One running split virtqueue (virtio 1.2 §2.7): the pure ring logic over raw memory.
///
/// ```
///   descriptor table  size × 16 B   {addr u64, len u32, flags u16, next u16}
///   avail ring        4 + 2·size + 2 {flags, idx, ring[size], used_event}
///   used ring         4 + 8·size + 2 {flags, idx, ring[size] {id u32, len u32}, avail_event}
/// ```
/// All fields little-endian (VERSION_1). Indexes are free-running 16-bit counters; a slot is
/// `index & (size - 1)` (the size is a power of two). Every guest value is read once into a
/// local before it is checked and used, so a driver changing memory under us can make us
/// drop a frame but never step outside the memory table.
///
/// Ordering: `avail.idx` is read, then an acquire fence, then the entries it covers; used
/// entries are written, then a release fence, then `used.idx`; between publishing `used.idx`
/// (or re-enabling kicks) and reading the driver's `used_event`/flags (or re-reading
/// `avail.idx`) stands a full fence (the "mb()" of Linux `vhost_notify`/`vhost_enable_notify`).
///
/// With a `DirtyLog` (live migration), every guest byte written — RX buffers, used
/// elements, `used.idx`, `avail_event`, `used.flags` — marks its page.
///
/// A value of pointers and flags: copying it costs no reference counting. The memory it
/// points into must outlive it (the port keeps the mapping's owner alive).
public struct Virtqueue {
    /// Most entries of one indirect table (Linux builds at most MAX_SKB_FRAGS + 2).
    public static let maxIndirect = 1024

    public let size: Int
    public let descriptors: UnsafeMutableRawPointer
    public let avail: UnsafeMutableRawPointer
    public let used: UnsafeMutableRawPointer
    /// EVENT_IDX was negotiated.
    public let eventIndex: Bool
    public let memory: GuestMemory
    public let log: DirtyLog?
    /// The used ring's guest-physical address (for the log).
    public let usedGuestAddress: UInt64
    public let progress: UnsafeMutablePointer<VirtqueueProgress>

    /// Bytes of the descriptor table, avail ring and used ring for `size` entries (with the
    /// EVENT_IDX fields, which exist in memory either way).
    public static func byteCounts(size: Int) -> (descriptors: Int, avail: Int, used: Int) {
        (16 * size, 6 + 2 * size, 6 + 8 * size)
    }

    /// Whether `size` is a valid split-ring size: a power of two, 1…32768 (virtio §2.7).
    public static func isValidSize(_ size: Int) -> Bool { size >= 1 && size <= 32768 && size & (size - 1) == 0 }

    public init(size: Int, descriptors: UnsafeMutableRawPointer, avail: UnsafeMutableRawPointer, used: UnsafeMutableRawPointer,
                eventIndex: Bool, memory: GuestMemory, log: DirtyLog?, usedGuestAddress: UInt64,
                progress: UnsafeMutablePointer<VirtqueueProgress>) {
        precondition(Virtqueue.isValidSize(size))
        self.size = size
        self.descriptors = descriptors
        self.avail = avail
        self.used = used
        self.eventIndex = eventIndex
        self.memory = memory
        self.log = log
        self.usedGuestAddress = usedGuestAddress
        self.progress = progress
    }

    // MARK: - Guest fields

    // The indexes and flags shared with the driver are read and written with single 16-bit
    // accesses (`sharedLoad16`/`sharedStore16`): a torn index is a ring fault or, worse, phantom
    // used entries for the guest.
    @inline(__always) var availIndex: UInt16 {
        let v = UInt16(littleEndian: sharedLoad16(avail + 2))
        atomicMemoryFence(ordering: .acquiring)
        return v
    }
    @inline(__always) var availFlags: UInt16 { UInt16(littleEndian: sharedLoad16(avail)) }
    @inline(__always) var usedEvent: UInt16 { UInt16(littleEndian: sharedLoad16(avail + 4 + 2 * size)) }
    /// `used.idx` as it is in guest memory (a ring's start value).
    public var usedIndexInMemory: UInt16 { UInt16(littleEndian: sharedLoad16(used + 2)) }

    /// Writes a used element's field (published later by `used.idx`) and logs it.
    @inline(__always) func storeUsed(_ value: UInt32, at offset: Int) {
        used.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
        log?.mark(guestPhysical: usedGuestAddress &+ UInt64(offset), length: 4)
    }

    /// Writes a 16-bit field the driver reads concurrently (`used.idx`, `used.flags`,
    /// `avail_event`) in one access, and logs it.
    @inline(__always) func storeUsed16(_ value: UInt16, at offset: Int) {
        sharedStore16(used + offset, value.littleEndian)
        log?.mark(guestPhysical: usedGuestAddress &+ UInt64(offset), length: 2)
    }

    /// Whether the three parts sit at the alignment virtio requires (§2.7: descriptor table
    /// 16, avail ring 2, used ring 4): the shared indexes are then naturally aligned.
    public static func isAligned(descriptors: UnsafeRawPointer, avail: UnsafeRawPointer, used: UnsafeRawPointer) -> Bool {
        UInt(bitPattern: descriptors) % 16 == 0 && UInt(bitPattern: avail) % 2 == 0 && UInt(bitPattern: used) % 4 == 0
    }

    /// Entries the driver made available and we have not consumed, or a fault. `avail.idx`
    /// is read again only when the entries up to the last value read are consumed.
    @inline(__always) func pendingHead() -> (head: UInt16, fault: VirtqueueFault?)? {
        let p = progress
        if p.pointee.availSeen == p.pointee.lastAvail {
            let idx = availIndex
            let pending = idx &- p.pointee.lastAvail
            if pending == 0 { return nil }
            if Int(pending) > size {
                p.pointee.faultAvailIndex = idx
                return (0, .availIndexOutOfRange)
            }
            p.pointee.availSeen = idx
            // A new burst: fetch its first descriptors, then the first buffers after the
            // current one, together (their misses overlap) rather than each in its turn.
            for i in 0..<min(Int(pending), 16) { prefetchDescriptor(ofEntry: p.pointee.lastAvail &+ UInt16(i)) }
            for i in 1..<max(1, min(Int(pending), Virtqueue.prefetchDistance)) { prefetchBuffer(ofEntry: p.pointee.lastAvail &+ UInt16(i)) }
        }
        let head = availEntry(p.pointee.lastAvail)
        if Int(head) >= size { return (head, .descriptorIndexOutOfRange) }
        return (head, nil)
    }

    /// Hints the cache about the chains after the current one (`lastAvail` not yet advanced):
    /// the first buffer of the chain `prefetchDistance` ahead, whose descriptor an earlier
    /// call fetched, and the descriptor twice that far ahead. The lines were written by the
    /// driver on the other core; fetched one at a time, each miss would stall the copy in
    /// turn. Only entries `avail.idx` already covers, and only translated addresses, are
    /// touched.
    @inline(__always) func prefetchAhead(forWriting: Bool) {
        let p = progress
        let last = p.pointee.lastAvail
        let known = Int(p.pointee.availSeen &- last)
        let d = Virtqueue.prefetchDistance
        if known > d { prefetchBuffer(ofEntry: last &+ UInt16(d), forWriting: forWriting) }
        if known > 2 * d { prefetchDescriptor(ofEntry: last &+ UInt16(2 * d)) }
    }

    /// The head index the driver wrote in `avail.ring` for free-running entry `entry`
    /// (unchecked: the caller checks it against the size, or masks it for a hint).
    @inline(__always) func availEntry(_ entry: UInt16) -> UInt16 {
        UInt16(littleEndian: sharedLoad16(avail + 4 + 2 * (Int(entry) & (size - 1))))
    }

    /// Prefetches the descriptor of the chain at avail entry `entry` (a hint: the head is
    /// masked into the table, never checked).
    @inline(__always) func prefetchDescriptor(ofEntry entry: UInt16) {
        prefetchRead(descriptors + 16 * (Int(availEntry(entry)) & (size - 1)))
    }

    /// How many chains ahead of the one being copied the buffers are prefetched.
    static let prefetchDistance = 6

    /// Prefetches the first two lines of the first buffer of the chain at avail entry `entry`
    /// (its descriptor read, not checked beyond the translation; an indirect one is skipped).
    @inline(__always) func prefetchBuffer(ofEntry entry: UInt16, forWriting: Bool = false) {
        let d = descriptors + 16 * (Int(availEntry(entry)) & (size - 1))
        let addr = UInt64(littleEndian: d.loadUnaligned(as: UInt64.self))
        let flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        if flags & VringFlag.indirect == 0, let b = memory.translate(guestPhysical: addr, length: 1) {
            if forWriting { prefetchWrite(b); prefetchWrite(b + 64) } else { prefetchRead(b); prefetchRead(b + 64) }
        }
    }

    @inline(__always) func fail(_ f: VirtqueueFault) -> VirtqueueFault {
        progress.pointee.fault = f.rawValue
        return f
    }

    // MARK: - Device-readable rings (the guest's TX)

    /// Takes the next chain, copies its device-readable bytes into `buffer` (at most
    /// `capacity`), returns it to the driver (used length 0) and, with `publish`, publishes
    /// `used.idx` (without, `publishUsed` does, once for a batch: the driver polls that
    /// cache line, and a store per frame hands it back and forth between the two cores).
    /// A longer chain is consumed and reported as `.oversize`.
    ///
    /// Inlined: the common chain (one descriptor that fits) is taken in the caller's loop;
    /// any other goes to `dequeueChain`, out of line.
    @inline(__always)
    public func dequeue(into buffer: UnsafeMutableRawPointer, capacity: Int, publish: Bool = true) -> DequeueResult {
        guard progress.pointee.fault == 0 else { return .fault(VirtqueueFault(rawValue: progress.pointee.fault)!) }
        guard let (head, bad) = pendingHead() else { return .empty }
        if let f = bad { return .fault(fail(f)) }
        prefetchAhead(forWriting: false)
        // The common chain, one device-readable descriptor that fits: what the walk below
        // would do, without it.
        if let (src, len, _) = singleDescriptor(head, flags: 0), len <= capacity {
            buffer.copyMemory(from: src, byteCount: len)
            returnChain(head, length: 0, publish: publish)
            return .frame(len)
        }
        return dequeueChain(head, into: buffer, capacity: capacity, publish: publish)
    }

    /// `dequeue` for any chain at `head` (the avail entry at `lastAvail`): the walk.
    @inline(never)
    func dequeueChain(_ head: UInt16, into buffer: UnsafeMutableRawPointer, capacity: Int, publish: Bool) -> DequeueResult {
        var walk = ChainWalk(queue: self, head: head)
        var copied = 0
        var truncated = false
        loop: while true {
            switch walk.next() {
            case .segment(let p, let len, let writable, _):
                if writable { continue }
                let n = min(len, capacity - copied)
                if n > 0 { (buffer + copied).copyMemory(from: p, byteCount: n) }
                copied += n
                if n < len { truncated = true }
            case .end: break loop
            case .fault(let f): return .fault(fail(f))
            }
        }
        returnChain(head, length: 0, publish: publish)
        return truncated ? .oversize : .frame(copied)
    }

    /// The buffer (its address here, its length, its guest-physical address) of the chain at
    /// `head` when that chain is one descriptor whose flags are exactly
    /// `flags` (0: device-readable; WRITE: device-writable; no NEXT, no INDIRECT) and lies
    /// inside the memory table; nil for any other chain (the walk handles it, faults included).
    @inline(__always) func singleDescriptor(_ head: UInt16, flags wanted: UInt16) -> (UnsafeMutableRawPointer, Int, guestAddress: UInt64)? {
        let d = descriptors + 16 * Int(head)
        let flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        guard flags == wanted else { return nil }
        let addr = UInt64(littleEndian: d.loadUnaligned(as: UInt64.self))
        let len = UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard let p = memory.translate(guestPhysical: addr, length: UInt64(len)) else { return nil }
        return (p, Int(len), addr)
    }

    /// Consumes the chain at `lastAvail` (whose head is `head`): a used element of `length`
    /// bytes, `used.idx` published with `publish`.
    @inline(__always) func returnChain(_ head: UInt16, length: UInt32, publish: Bool) {
        let p = progress
        p.pointee.lastAvail &+= 1
        // The element {id, len} in one 8-byte store (the driver reads it only after
        // `used.idx`, which the release fence in `publishUsed` orders after it), logged once.
        let offset = 4 + 8 * (Int(p.pointee.usedIndex) & (size - 1))
        used.storeBytes(of: (UInt64(length) << 32 | UInt64(head)).littleEndian, toByteOffset: offset, as: UInt64.self)
        if let log { log.mark(guestPhysical: usedGuestAddress &+ UInt64(offset), length: 8) }
        p.pointee.usedIndex &+= 1
        if publish { publishUsed() }
    }

    // MARK: - Device-writable rings (the guest's RX)

    /// Writes `header` (its first `headerSize` bytes: 12, or 10 for a legacy guest) and the
    /// frame's pieces into the next chain(s) and publishes them. With `mergeable`
    /// (MRG_RXBUF) a frame may take several chains and the header's `num_buffers` says how
    /// many; without, it must fit one chain. When it does not fit, nothing is consumed.
    /// Without `publish`, `used.idx` waits for `publishUsed` (once per batch).
    ///
    /// Inlined: the common chain (one device-writable descriptor the frame fits) is filled in
    /// the caller's loop; anything else goes to `enqueueChains`, out of line.
    @inline(__always)
    public func enqueue<P: FramePieces>(header: UnsafeRawPointer, headerSize: Int, frame: P, mergeable: Bool, publish: Bool = true) -> EnqueueResult {
        let p = progress
        guard p.pointee.fault == 0 else { return .fault(VirtqueueFault(rawValue: p.pointee.fault)!) }
        var total = headerSize
        for i in 0..<frame.pieceCount { total += frame.piece(i).count }
        // No chain, or a bad one: nothing consumed (the loop below would say the same).
        guard let (head, bad) = pendingHead() else { return .noBuffers }
        if let f = bad { return .fault(fail(f)) }
        // The common chain, one device-writable descriptor the whole frame fits: what the
        // loop below would write (header, frame, num_buffers 1), without it.
        if let (dst, len, gpa) = singleDescriptor(head, flags: VringFlag.write), len >= total {
            prefetchAhead(forWriting: true)
            dst.copyMemory(from: header, byteCount: headerSize)
            var at = headerSize
            for i in 0..<frame.pieceCount {
                let (b, c) = frame.piece(i)
                if c > 0 { (dst + at).copyMemory(from: b, byteCount: c) }
                at += c
            }
            if headerSize == 12 { dst.storeBytes(of: UInt16(1).littleEndian, toByteOffset: 10, as: UInt16.self) }
            log?.mark(guestPhysical: gpa, length: UInt64(total))
            returnChain(head, length: UInt32(total), publish: publish)
            return .delivered(1)
        }
        return enqueueChains(header: header, headerSize: headerSize, frame: frame, total: total, mergeable: mergeable, publish: publish)
    }

    /// `enqueue` for any chains: header and frame written across as many as it takes
    /// (`mergeable`), or `tooLarge`.
    @inline(never)
    func enqueueChains<P: FramePieces>(header: UnsafeRawPointer, headerSize: Int, frame: P, total: Int, mergeable: Bool,
                                       publish: Bool) -> EnqueueResult {
        let p = progress
        let startAvail = p.pointee.lastAvail
        let startUsed = p.pointee.usedIndex
        var source = SourceCursor(header: header, headerSize: headerSize)
        var written = 0
        var buffers = 0
        // Where the two bytes of num_buffers (header offset 10, 11) landed in guest memory.
        var numBuffersAt: (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt64, UInt64) = (nil, nil, 0, 0)
        while written < total {
            if buffers == 1 && !mergeable {
                p.pointee.lastAvail = startAvail
                return .tooLarge
            }
            guard let (head, bad) = pendingHead() else {
                p.pointee.lastAvail = startAvail
                return .noBuffers
            }
            if let f = bad { return .fault(fail(f)) }
            if buffers == 0 { prefetchAhead(forWriting: true) }
            var walk = ChainWalk(queue: self, head: head)
            var chainBytes = 0
            loop: while written < total {
                switch walk.next() {
                case .segment(let dst, let len, let writable, let gpa):
                    if !writable || len == 0 { continue }
                    var done = 0
                    while done < len && written < total {
                        let n = source.copy(into: dst + done, max: min(len - done, total - written), frame: frame)
                        if n == 0 { break }
                        if headerSize == 12 && written <= 11 {
                            if written <= 10 && written + n > 10 { numBuffersAt.0 = dst + done + (10 - written); numBuffersAt.2 = gpa &+ UInt64(done + 10 - written) }
                            if written + n > 11 { numBuffersAt.1 = dst + done + (11 - written); numBuffersAt.3 = gpa &+ UInt64(done + 11 - written) }
                        }
                        done += n
                        written += n
                    }
                    log?.mark(guestPhysical: gpa, length: UInt64(done))
                    chainBytes += done
                case .end: break loop
                case .fault(let f): return .fault(fail(f))
                }
            }
            if written < total {
                // The rest of the chain was checked above only as far as we used it.
                if case .fault(let f) = walk.finish() { return .fault(fail(f)) }
            }
            let slot = Int(startUsed &+ UInt16(truncatingIfNeeded: buffers)) & (size - 1)
            storeUsed(UInt32(head), at: 4 + 8 * slot)
            storeUsed(UInt32(chainBytes), at: 8 + 8 * slot)
            buffers += 1
            p.pointee.lastAvail &+= 1
            if buffers > size { return .fault(fail(.availIndexOutOfRange)) }
        }
        if headerSize == 12 {
            let nb = UInt16(truncatingIfNeeded: buffers)
            if let a = numBuffersAt.0 { a.storeBytes(of: UInt8(nb & 0xFF), as: UInt8.self); log?.mark(guestPhysical: numBuffersAt.2, length: 1) }
            if let b = numBuffersAt.1 { b.storeBytes(of: UInt8(nb >> 8), as: UInt8.self); log?.mark(guestPhysical: numBuffersAt.3, length: 1) }
        }
        p.pointee.usedIndex = startUsed &+ UInt16(truncatingIfNeeded: buffers)
        if publish { publishUsed() }
        return .delivered(buffers)
    }

    /// Makes every used element written so far visible to the driver: a release fence, then
    /// `used.idx` (nothing when it is already current, or on a faulted ring).
    @inline(__always) public func publishUsed() {
        let p = progress
        let index = p.pointee.usedIndex
        guard index != p.pointee.publishedUsed, p.pointee.fault == 0 else { return }
        atomicMemoryFence(ordering: .releasing)
        storeUsed16(index, at: 2)
        p.pointee.publishedUsed = index
    }

    // MARK: - Notifications

    /// Whether the driver wants an interrupt for the used entries published since the last
    /// call (EVENT_IDX: `used_event` crossed, virtio §2.7.10; otherwise unless
    /// VRING_AVAIL_F_NO_INTERRUPT). Call once per batch; it publishes `used.idx` first.
    public func needsInterrupt() -> Bool {
        publishUsed()
        let p = progress
        let new = p.pointee.usedIndex
        let old = p.pointee.signalled
        if new == old { return false }
        p.pointee.signalled = new
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if eventIndex {
            let event = usedEvent
            return (new &- event &- 1) < (new &- old)
        }
        return availFlags & VringFlag.availNoInterrupt == 0
    }

    /// Asks the driver to kick when it adds buffers (EVENT_IDX: `avail_event` = our next
    /// slot; otherwise clears VRING_USED_F_NO_NOTIFY), then re-checks: true when buffers
    /// arrived meanwhile (the caller processes them instead of sleeping).
    public func enableNotifications() -> Bool {
        let p = progress
        if eventIndex {
            storeUsed16(p.pointee.lastAvail, at: 4 + 8 * size)
        } else {
            storeUsed16(0, at: 0)
        }
        p.pointee.notificationsOn = true
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return availIndex != p.pointee.lastAvail
    }

    /// Tells the driver not to kick (without EVENT_IDX; with it, `avail_event` left behind
    /// already suppresses kicks).
    public func disableNotifications() {
        let p = progress
        guard p.pointee.notificationsOn else { return }
        p.pointee.notificationsOn = false
        if !eventIndex { storeUsed16(VringFlag.usedNoNotify, at: 0) }
    }

    /// Chains available and not yet consumed (0 on a bad index).
    public var pendingCount: Int {
        let n = Int(availIndex &- progress.pointee.lastAvail)
        return n <= size ? n : 0
    }
}

/// Walks one descriptor chain, following NEXT links and at most one indirect table, with
/// every index, address and length checked.
struct ChainWalk {
    enum Step {
        case segment(UnsafeMutableRawPointer, Int, writable: Bool, guestAddress: UInt64)
        case end
        case fault(VirtqueueFault)
    }

    let memory: GuestMemory
    var table: UnsafeMutableRawPointer
    var tableSize: Int
    var index: Int
    /// Descriptors this chain may still visit (a chain longer than its table is a loop).
    var budget: Int
    var inIndirect = false
    var done = false

    init(queue: Virtqueue, head: UInt16) {
        memory = queue.memory
        table = queue.descriptors
        tableSize = queue.size
        index = Int(head)
        budget = queue.size
    }

    mutating func next() -> Step {
        while true {
            if done { return .end }
            if index >= tableSize { return .fault(.descriptorIndexOutOfRange) }
            if budget == 0 { return .fault(.descriptorLoop) }
            budget -= 1
            let d = table + 16 * index
            let addr = UInt64(littleEndian: d.loadUnaligned(as: UInt64.self))
            let len = UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: d.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
            if flags & VringFlag.indirect != 0 {
                if inIndirect || flags & VringFlag.next != 0 || len == 0 || len % 16 != 0 || Int(len / 16) > Virtqueue.maxIndirect {
                    return .fault(.indirectTableInvalid)
                }
                guard let t = memory.translate(guestPhysical: addr, length: UInt64(len)) else { return .fault(.descriptorOutsideMemory) }
                table = t
                tableSize = Int(len / 16)
                budget = tableSize
                index = 0
                inIndirect = true
                continue
            }
            guard let p = memory.translate(guestPhysical: addr, length: UInt64(len)) else { return .fault(.descriptorOutsideMemory) }
            if flags & VringFlag.next != 0 { index = Int(next) } else { done = true }
            return .segment(p, Int(len), writable: flags & VringFlag.write != 0, guestAddress: addr)
        }
    }

    /// Walks the rest of the chain (validating it) without using it.
    mutating func finish() -> Step {
        while true {
            switch next() {
            case .segment: continue
            case .end: return .end
            case .fault(let f): return .fault(f)
            }
        }
    }
}

/// Reads the header, then the frame's pieces, as one byte stream.
struct SourceCursor {
    let header: UnsafeRawPointer
    let headerSize: Int
    var piece = -1        // -1: the header
    var offset = 0

    init(header: UnsafeRawPointer, headerSize: Int) {
        self.header = header
        self.headerSize = headerSize
    }

    /// Copies up to `max` bytes into `dst`; returns how many (0 only at the end).
    @inline(__always)
    mutating func copy<P: FramePieces>(into dst: UnsafeMutableRawPointer, max: Int, frame: P) -> Int {
        var copied = 0
        while copied < max {
            let base: UnsafeRawPointer, count: Int
            if piece < 0 {
                base = header; count = headerSize
            } else if piece < frame.pieceCount {
                (base, count) = frame.piece(piece)
            } else {
                return copied
            }
            let n = min(count - offset, max - copied)
            if n > 0 { (dst + copied).copyMemory(from: base + offset, byteCount: n) }
            copied += n
            offset += n
            if offset >= count { piece += 1; offset = 0 }
        }
        return copied
    }
}

#if canImport(CVhost)
import CVhost
@inline(__always) func sharedLoad16(_ p: UnsafeMutableRawPointer) -> UInt16 { cv_load16(p) }
@inline(__always) func sharedStore16(_ p: UnsafeMutableRawPointer, _ v: UInt16) { cv_store16(p, v) }
@inline(__always) func prefetchRead(_ p: UnsafeRawPointer) { cv_prefetch_read(p) }
@inline(__always) func prefetchWrite(_ p: UnsafeRawPointer) { cv_prefetch_write(p) }
#else
// Fuzz builds compile the pure files alone, single-threaded, over rings at any alignment.
@inline(__always) func sharedLoad16(_ p: UnsafeMutableRawPointer) -> UInt16 { p.loadUnaligned(as: UInt16.self) }
@inline(__always) func sharedStore16(_ p: UnsafeMutableRawPointer, _ v: UInt16) { p.storeBytes(of: v, as: UInt16.self) }
@inline(__always) func prefetchRead(_ p: UnsafeRawPointer) {}
@inline(__always) func prefetchWrite(_ p: UnsafeRawPointer) {}
#endif
