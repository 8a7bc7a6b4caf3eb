import CVhost
import Foundation
import Synchronization
@testable import VhostUser

/// A virtio driver's side of split rings over fake guest memory: what a guest kernel does
/// (post buffers, publish avail, read used), for tests of the device side.
///
/// Guest memory is one region at guest-physical `gpaBase` (not 0, so translation is
/// exercised), mapped here at `base` (heap memory, or a shared mapping of a memfd that a
/// fake frontend passes over the socket). Layout inside: ring structures at fixed offsets,
/// then a buffer heap.
final class FakeDriver {
    let base: UnsafeMutableRawPointer
    let size: Int
    let gpaBase: UInt64
    /// The address the "frontend" sees for byte 0 (SET_VRING_ADDR uses these).
    let frontendBase: UInt64
    let queueSize: Int
    var region: UnsafeMutablePointer<GuestMemoryRegion>
    private let ownsMemory: Bool

    // Offsets (from `base`) of the structures of ring q (0 and 1).
    func descOffset(_ q: Int) -> Int { 0x1000 + q * 0x10000 }
    func availOffset(_ q: Int) -> Int { descOffset(q) + 0x8000 }
    func usedOffset(_ q: Int) -> Int { descOffset(q) + 0xA000 }
    /// Heap for buffers and indirect tables.
    var heap = 0x40000

    var availIdx: [UInt16] = [0, 0]
    var usedSeen: [UInt16] = [0, 0]
    var nextDesc: [Int] = [0, 0]
    /// Objects whose memory the tests' queues point into.
    var keepAlive: [AnyObject] = []

    init(queueSize: Int = 256, size: Int = 4 << 20, gpaBase: UInt64 = 0x100000, memory: UnsafeMutableRawPointer? = nil) {
        self.queueSize = queueSize
        self.size = size
        self.gpaBase = gpaBase
        frontendBase = 0x7f00_0000_0000
        if let m = memory { base = m; ownsMemory = false } else {
            base = .allocate(byteCount: size, alignment: 4096)
            ownsMemory = true
        }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        region = .allocate(capacity: 1)
        region.initialize(to: GuestMemoryRegion(guestPhysicalAddress: gpaBase, size: UInt64(size), frontendAddress: frontendBase, base: base))
    }

    deinit {
        if ownsMemory { base.deallocate() }
        region.deallocate()
    }

    var memory: GuestMemory { GuestMemory(regions: region, count: 1) }
    func gpa(_ offset: Int) -> UInt64 { gpaBase + UInt64(offset) }

    /// A device-side `Virtqueue` for ring q over this memory.
    func queue(_ q: Int, eventIndex: Bool = false, log: DirtyLog? = nil, progress: VirtqueueProgressBox) -> Virtqueue {
        Virtqueue(size: queueSize, descriptors: base + descOffset(q), avail: base + availOffset(q), used: base + usedOffset(q),
                  eventIndex: eventIndex, memory: memory, log: log, usedGuestAddress: gpa(usedOffset(q)), progress: progress.pointer)
    }

    /// Sets both sides' indexes (wrap-around tests).
    func startIndexes(_ q: Int, at index: UInt16) {
        availIdx[q] = index
        usedSeen[q] = index
        store16(availOffset(q) + 2, index)
        store16(usedOffset(q) + 2, index)
    }

    func alloc(_ n: Int, align: Int = 16) -> Int {
        heap = (heap + align - 1) / align * align
        let o = heap
        heap += n
        precondition(heap <= size, "fake guest memory exhausted")
        return o
    }

    /// 16-bit fields in one access (the device side reads them concurrently).
    func store16(_ o: Int, _ v: UInt16) { cv_store16(base + o, v.littleEndian) }
    func store32(_ o: Int, _ v: UInt32) { base.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt32.self) }
    func store64(_ o: Int, _ v: UInt64) { base.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self) }
    func load16(_ o: Int) -> UInt16 { UInt16(littleEndian: cv_load16(base + o)) }
    func load32(_ o: Int) -> UInt32 { UInt32(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }

    /// Writes descriptor `i` of the table at `table` (an offset).
    func writeDescriptor(table: Int, _ i: Int, addr: UInt64, len: UInt32, flags: UInt16, next: UInt16) {
        let d = table + 16 * i
        store64(d, addr); store32(d + 8, len); store16(d + 12, flags); store16(d + 14, next)
    }

    /// One buffer of a chain: bytes to put in it (device-readable) or a writable length.
    enum Buffer { case readable([UInt8]); case writable(Int) }

    /// Builds a chain in ring q's table (or, with `indirect`, in an indirect table) and makes
    /// it available. Returns the head index and the buffers' offsets.
    @discardableResult
    func post(_ q: Int, _ buffers: [Buffer], indirect: Bool = false, publish: Bool = true) -> (head: Int, offsets: [Int]) {
        var offsets: [Int] = []
        let table = indirect ? alloc(16 * buffers.count) : descOffset(q)
        var indexes: [Int] = []
        for _ in buffers {
            if indirect { indexes.append(indexes.count) } else { indexes.append(nextDesc[q]); nextDesc[q] = (nextDesc[q] + 1) % queueSize }
        }
        for (k, b) in buffers.enumerated() {
            let last = k == buffers.count - 1
            let next = last ? 0 : UInt16(indexes[k + 1])
            switch b {
            case .readable(let bytes):
                let o = alloc(max(1, bytes.count))
                bytes.withUnsafeBytes { (base + o).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                writeDescriptor(table: table, indexes[k], addr: gpa(o), len: UInt32(bytes.count), flags: last ? 0 : VringFlag.next, next: next)
                offsets.append(o)
            case .writable(let n):
                let o = alloc(n)
                writeDescriptor(table: table, indexes[k], addr: gpa(o), len: UInt32(n),
                                flags: VringFlag.write | (last ? 0 : VringFlag.next), next: next)
                offsets.append(o)
            }
        }
        var head = indexes[0]
        if indirect {
            head = nextDesc[q]; nextDesc[q] = (nextDesc[q] + 1) % queueSize
            writeDescriptor(table: descOffset(q), head, addr: gpa(table), len: UInt32(16 * buffers.count), flags: VringFlag.indirect, next: 0)
        }
        makeAvailable(q, head: head, publish: publish)
        return (head, offsets)
    }

    func makeAvailable(_ q: Int, head: Int, publish: Bool = true) {
        let slot = Int(availIdx[q]) & (queueSize - 1)
        store16(availOffset(q) + 4 + 2 * slot, UInt16(head))
        availIdx[q] &+= 1
        if publish { publishAvail(q) }
    }

    func publishAvail(_ q: Int) {
        atomicMemoryFence(ordering: .releasing)
        store16(availOffset(q) + 2, availIdx[q])
    }

    /// Used entries published since the last call: (id, len).
    func takeUsed(_ q: Int) -> [(id: Int, len: Int)] {
        let idx = load16(usedOffset(q) + 2)
        atomicMemoryFence(ordering: .acquiring)
        var out: [(Int, Int)] = []
        while usedSeen[q] != idx {
            let slot = Int(usedSeen[q]) & (queueSize - 1)
            out.append((Int(load32(usedOffset(q) + 4 + 8 * slot)), Int(load32(usedOffset(q) + 8 + 8 * slot))))
            usedSeen[q] &+= 1
        }
        return out
    }

    func bytes(at offset: Int, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    var usedFlags: [UInt16] { [load16(usedOffset(0)), load16(usedOffset(1))] }
    func availEvent(_ q: Int) -> UInt16 { load16(usedOffset(q) + 4 + 8 * queueSize) }
    func setUsedEvent(_ q: Int, _ v: UInt16) { store16(availOffset(q) + 4 + 2 * queueSize, v) }
    func setAvailFlags(_ q: Int, _ v: UInt16) { store16(availOffset(q), v) }
}

/// Frame pieces from byte arrays.
struct ArrayPieces: FramePieces {
    let parts: [[UInt8]]
    var pieceCount: Int { parts.count }
    func piece(_ index: Int) -> (base: UnsafeRawPointer, count: Int) {
        parts[index].withUnsafeBytes { (UnsafeRawPointer($0.baseAddress!), $0.count) }
    }
}

/// A recognisable frame of `n` bytes.
func testFrame(_ n: Int, seed: UInt8 = 1) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) } }

/// A 12-byte virtio-net header.
func vnetHeader(flags: UInt8 = 0, gso: UInt8 = 0, hdrLen: UInt16 = 0, gsoSize: UInt16 = 0, csumStart: UInt16 = 0, csumOffset: UInt16 = 0) -> [UInt8] {
    var h: [UInt8] = [flags, gso]
    for v in [hdrLen, gsoSize, csumStart, csumOffset, 0] { h += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    return h
}
