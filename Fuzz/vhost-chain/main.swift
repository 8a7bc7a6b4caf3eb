// libFuzzer target "vhost-chain": the split-virtqueue code over a fake memory table whose
// contents — descriptor table, avail and used rings, indirect tables — come from the input.
//
// Input: byte 0 = ring size (2^(b%9): 1…256), byte 1 = flags (bit 0 EVENT_IDX, bit 1
// MRG_RXBUF, bit 2 legacy 10-byte header, bit 3 a dirty log, bits 4-5 last_avail start),
// bytes 2-3 = frame length for the receive side; the rest is copied over guest memory (a
// 64 KiB region at guest-physical 0x10000; the rings sit at its start, so the input writes
// them; descriptors may point anywhere, inside the region or not).
// Then: dequeue until empty or fault (the TX side), enqueue one frame (the RX side) on a
// second ring over the same memory, notification checks. ASan catches any access outside
// the region; the checks below catch broken bookkeeping: copied lengths within capacity,
// faults sticky, `last_avail` advanced by at most the ring size per call, nothing consumed
// on `noBuffers`/`tooLarge`.
import Model

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-vhost-chain invariant violated: \(what())") }
}

private let memorySize = 65536
private let gpaBase: UInt64 = 0x10000
private let memory = UnsafeMutableRawPointer.allocate(byteCount: memorySize, alignment: 4096)
private let region: UnsafeMutablePointer<GuestMemoryRegion> = {
    let r = UnsafeMutablePointer<GuestMemoryRegion>.allocate(capacity: 1)
    r.initialize(to: GuestMemoryRegion(guestPhysicalAddress: gpaBase, size: UInt64(memorySize), frontendAddress: 0x7000_0000, base: memory))
    return r
}()
private let logBytes = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
private let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
private let frame = UnsafeMutableRawPointer.allocate(byteCount: 70000, alignment: 16)
private let header: [UInt8] = [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]

private struct Pieces: FramePieces {
    let length: Int
    var pieceCount: Int { 2 }
    func piece(_ i: Int) -> (base: UnsafeRawPointer, count: Int) {
        i == 0 ? (UnsafeRawPointer(frame), min(14, length)) : (UnsafeRawPointer(frame + 14), max(0, length - 14))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let ringSize = 1 << Int(data[0] % 9)
    let flags = data[1]
    let frameLength = Int(data[2]) | Int(data[3]) << 8
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: memorySize)
    memory.copyMemory(from: data + 4, byteCount: min(size - 4, memorySize))
    logBytes.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
    let mem = GuestMemory(regions: region, count: 1)
    let log: DirtyLog? = flags & 8 != 0 ? DirtyLog(bitmap: logBytes, size: 64) : nil
    let start = UInt16(flags >> 4 & 3) &* 0x5555
    let sizes = Virtqueue.byteCounts(size: ringSize)
    // Ring 1 (TX) at 0, ring 0 (RX) after it; both inside the region for every size.
    func ring(at base: Int) -> (Virtqueue, UnsafeMutablePointer<VirtqueueProgress>) {
        let p = UnsafeMutablePointer<VirtqueueProgress>.allocate(capacity: 1)
        p.initialize(to: VirtqueueProgress(lastAvail: start, usedIndex: start))
        let desc = memory + base, avail = desc + sizes.descriptors, used = avail + sizes.avail + 2
        return (Virtqueue(size: ringSize, descriptors: desc, avail: avail, used: used, eventIndex: flags & 1 != 0, memory: mem,
                          log: log, usedGuestAddress: gpaBase + UInt64(base + sizes.descriptors + sizes.avail + 2), progress: p), p)
    }
    let (tx, txp) = ring(at: 0)
    let (rx, rxp) = ring(at: 8192)
    defer { txp.deallocate(); rxp.deallocate() }

    var calls = 0
    loop: while calls < 2 * ringSize + 2 {
        calls += 1
        let before = txp.pointee.lastAvail
        switch tx.dequeue(into: buffer, capacity: 4096) {
        case .empty: break loop
        case .frame(let n): check(n >= 0 && n <= 4096, "copied length within capacity")
        case .oversize: break
        case .fault(let f):
            check(txp.pointee.fault == f.rawValue, "fault recorded")
            check(tx.dequeue(into: buffer, capacity: 4096) == .fault(f), "fault sticky")
            break loop
        }
        check(txp.pointee.lastAvail &- before == 1, "one chain per dequeue")
    }
    _ = tx.needsInterrupt()
    if !tx.enableNotifications() { tx.disableNotifications() }

    let headerSize = flags & 4 != 0 ? 10 : 12
    let before = rxp.pointee.lastAvail
    let r = header.withUnsafeBytes { rx.enqueue(header: $0.baseAddress!, headerSize: headerSize, frame: Pieces(length: min(frameLength, 70000)), mergeable: flags & 2 != 0) }
    switch r {
    case .delivered(let n):
        check(n >= 1 && n <= ringSize, "buffers within the ring")
        check(rxp.pointee.lastAvail &- before == UInt16(n), "consumed what it used")
    case .noBuffers, .tooLarge:
        check(rxp.pointee.lastAvail == before, "nothing consumed")
    case .fault(let f):
        check(rxp.pointee.fault == f.rawValue, "fault recorded")
    }
    _ = rx.needsInterrupt()
    return 0
}
