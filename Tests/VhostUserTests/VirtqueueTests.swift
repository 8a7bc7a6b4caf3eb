import Testing
@testable import VhostUser

/// The device side of split virtqueues over fake guest memory (no QEMU, no sockets): chains,
/// indirect tables, MRG_RXBUF, EVENT_IDX, 16-bit wrap-around, the dirty log, and every
/// driver mistake that must fault the ring instead of touching memory outside the table.
@Suite struct VirtqueueTests {
    let tx = 1, rx = 0

    /// A device-side queue over ring `q` of `driver`. The progress box is kept alive by the
    /// driver (the queue only holds a pointer into it).
    func fresh(_ driver: FakeDriver, _ q: Int, eventIndex: Bool = false, log: DirtyLog? = nil, at index: UInt16 = 0) -> (Virtqueue, VirtqueueProgressBox) {
        driver.startIndexes(q, at: index)
        let box = VirtqueueProgressBox(VirtqueueProgress(lastAvail: index, usedIndex: index))
        driver.keepAlive.append(box)
        return (driver.queue(q, eventIndex: eventIndex, log: log, progress: box), box)
    }

    /// Runs `body` with a dirty log over a zeroed 4 KiB bitmap (pages 0 to 32767, which
    /// cover the fake guest memory), freed afterwards.
    func withDirtyLog<T>(_ body: (DirtyLog) -> T) -> T {
        let bitmap = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 8)
        defer { bitmap.deallocate() }
        bitmap.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        return body(DirtyLog(bitmap: bitmap, size: 4096))
    }

    func dequeue(_ q: Virtqueue, capacity: Int = 65600) -> (DequeueResult, [UInt8]) {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buf.deallocate() }
        let r = q.dequeue(into: buf, capacity: capacity)
        if case .frame(let n) = r { return (r, Array(UnsafeRawBufferPointer(start: buf, count: n))) }
        return (r, [])
    }

    // MARK: - TX (device-readable)

    @Test func singleDescriptorChain() {
        let d = FakeDriver()
        let (q, box) = fresh(d, tx)
        let bytes = vnetHeader() + testFrame(60)
        let (head, _) = d.post(tx, [.readable(bytes)])
        let (r, got) = dequeue(q)
        #expect(r == .frame(72))
        #expect(got == bytes)
        let used = d.takeUsed(tx)
        #expect(used.count == 1 && used[0].id == head && used[0].len == 0)
        #expect(box.pointer.pointee.lastAvail == 1)
        #expect(dequeue(q).0 == .empty)
    }

    @Test func multiDescriptorChainIsConcatenated() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx)
        let h = vnetHeader(flags: 1, csumStart: 34, csumOffset: 16)
        let a = testFrame(14, seed: 3), b = testFrame(1000, seed: 9), c = testFrame(1, seed: 5)
        d.post(tx, [.readable(h), .readable(a), .readable(b), .readable(c)])
        let (r, got) = dequeue(q)
        #expect(r == .frame(12 + 1015))
        #expect(got == h + a + b + c)
    }

    @Test func indirectChain() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx)
        let parts = [vnetHeader(), testFrame(100, seed: 2), testFrame(200, seed: 4)]
        let (head, _) = d.post(tx, parts.map { .readable($0) }, indirect: true)
        let (r, got) = dequeue(q)
        #expect(r == .frame(312))
        #expect(got == parts.flatMap { $0 })
        #expect(d.takeUsed(tx).map(\.id) == [head])
    }

    @Test func chainLongerThanTheBufferIsConsumedAndReported() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx)
        d.post(tx, [.readable(testFrame(3000))])
        d.post(tx, [.readable(testFrame(64))])
        #expect(dequeue(q, capacity: 2048).0 == .oversize)
        #expect(dequeue(q, capacity: 2048).0 == .frame(64), "the next chain still comes through")
        #expect(d.takeUsed(tx).count == 2)
    }

    @Test func wrapAroundOfThe16BitIndexes() {
        let d = FakeDriver(queueSize: 8)
        let (q, box) = fresh(d, tx, at: 65533)
        var sent: [[UInt8]] = []
        for i in 0..<20 {
            let f = testFrame(60 + i, seed: UInt8(i))
            sent.append(f)
            d.post(tx, [.readable(f)])
            let (r, got) = dequeue(q)
            #expect(r == .frame(f.count))
            #expect(got == f)
        }
        #expect(box.pointer.pointee.lastAvail == 65533 &+ 20)
        #expect(d.takeUsed(tx).count == 20)
        #expect(d.load16(d.usedOffset(tx) + 2) == 65533 &+ 20)
    }

    /// Without `publish`, used elements wait for `publishUsed`: the driver sees `used.idx`
    /// move once for the batch, to the count of every chain taken, on both kinds of ring.
    @Test func usedIndexIsPublishedOncePerBatch() {
        let d = FakeDriver()
        let (t, _) = fresh(d, tx)
        for i in 0..<3 { d.post(tx, [.readable(vnetHeader() + testFrame(60, seed: UInt8(i)))]) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        defer { buf.deallocate() }
        for _ in 0..<3 { #expect(t.dequeue(into: buf, capacity: 2048, publish: false) == .frame(72)) }
        #expect(d.load16(d.usedOffset(tx) + 2) == 0, "nothing published before publishUsed")
        t.publishUsed()
        #expect(d.load16(d.usedOffset(tx) + 2) == 3)
        #expect(d.takeUsed(tx).count == 3)

        let (r, _) = fresh(d, rx)
        for _ in 0..<2 { d.post(rx, [.writable(256)]) }
        let header = vnetHeader()
        for _ in 0..<2 {
            let got = header.withUnsafeBytes { r.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(60)]), mergeable: true, publish: false) }
            #expect(got == .delivered(1))
        }
        #expect(d.load16(d.usedOffset(rx) + 2) == 0)
        // needsInterrupt publishes first: what it decides about is what the driver can see.
        _ = r.needsInterrupt()
        #expect(d.load16(d.usedOffset(rx) + 2) == 2)
    }

    /// `avail.idx` is read again only once the entries it covered are consumed; chains the
    /// driver adds meanwhile are found then, and a bad index still faults the ring.
    @Test func availIndexIsReadOncePerBurst() {
        let d = FakeDriver()
        let (q, box) = fresh(d, tx)
        d.post(tx, [.readable(testFrame(60, seed: 1))])
        d.post(tx, [.readable(testFrame(61, seed: 2))])
        #expect(dequeue(q).0 == .frame(60))
        #expect(box.pointer.pointee.availSeen == 2)
        d.post(tx, [.readable(testFrame(62, seed: 3))])
        #expect(box.pointer.pointee.availSeen == 2, "not read while an entry it covered is pending")
        #expect(dequeue(q).0 == .frame(61))
        #expect(dequeue(q).0 == .frame(62), "read again once the burst is consumed")
        #expect(box.pointer.pointee.availSeen == 3)
        #expect(dequeue(q).0 == .empty)
        d.store16(d.availOffset(tx) + 2, 3 &+ 300)
        #expect(dequeue(q).0 == .fault(.availIndexOutOfRange))
    }

    // MARK: - RX (device-writable)

    @Test func mergeableBuffersCarryNumBuffers() {
        let d = FakeDriver()
        let (q, _) = fresh(d, rx)
        var offsets: [Int] = []
        for _ in 0..<4 { offsets.append(d.post(rx, [.writable(1024)]).offsets[0]) }
        let header = vnetHeader(flags: 1, csumStart: 34, csumOffset: 6)
        let frame = [testFrame(14), testFrame(2974, seed: 8)]
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: frame), mergeable: true) }
        #expect(r == .delivered(3))
        let used = d.takeUsed(rx)
        #expect(used.map(\.len) == [1024, 1024, 12 + 2988 - 2048])
        let got = d.bytes(at: offsets[0], count: 1024) + d.bytes(at: offsets[1], count: 1024) + d.bytes(at: offsets[2], count: 12 + 2988 - 2048)
        #expect(Array(got[0..<10]) == Array(header[0..<10]))
        #expect(got[10] == 3 && got[11] == 0, "num_buffers = 3")
        #expect(Array(got[12...]) == frame.flatMap { $0 })
    }

    @Test func headerSplitAcrossTwoDescriptorsStillGetsNumBuffers() {
        let d = FakeDriver()
        let (q, _) = fresh(d, rx)
        let (_, offs) = d.post(rx, [.writable(11), .writable(200)])
        let header = vnetHeader()
        let frame = testFrame(60)
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [frame]), mergeable: true) }
        #expect(r == .delivered(1))
        #expect(d.bytes(at: offs[0] + 10, count: 1) == [1], "low byte in the first descriptor")
        #expect(d.bytes(at: offs[1], count: 1) == [0], "high byte in the second")
        #expect(d.bytes(at: offs[1] + 1, count: 60) == frame)
        #expect(d.takeUsed(rx).map(\.len) == [72])
    }

    @Test func notEnoughBuffersConsumesNothing() {
        let d = FakeDriver()
        let (q, box) = fresh(d, rx)
        d.post(rx, [.writable(1024)])
        let header = vnetHeader()
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(3000)]), mergeable: true) }
        #expect(r == .noBuffers)
        #expect(box.pointer.pointee.lastAvail == 0)
        #expect(d.takeUsed(rx).isEmpty)
        // A frame that fits still goes into that buffer afterwards.
        let ok = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(500)]), mergeable: true) }
        #expect(ok == .delivered(1))
    }

    @Test func withoutMergeableOneChainMustHoldTheFrame() {
        let d = FakeDriver()
        let (q, box) = fresh(d, rx)
        d.post(rx, [.writable(1000)])
        d.post(rx, [.writable(1000)])
        let header = vnetHeader()
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(1500)]), mergeable: false) }
        #expect(r == .tooLarge)
        #expect(box.pointer.pointee.lastAvail == 0)
        // A big chain (as Linux posts without MRG_RXBUF: header + pages) takes it.
        let (_, offs) = d.post(rx, [.writable(12), .writable(4096)])
        // Skip the two small ones by consuming them with small frames.
        for _ in 0..<2 {
            _ = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(60)]), mergeable: false) }
        }
        let big = testFrame(1500, seed: 6)
        let r2 = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [big]), mergeable: false) }
        #expect(r2 == .delivered(1))
        #expect(d.bytes(at: offs[1], count: 1500) == big)
    }

    @Test func legacyTenByteHeader() {
        let d = FakeDriver()
        let (q, _) = fresh(d, rx)
        let (_, offs) = d.post(rx, [.writable(2048)])
        let header = vnetHeader(flags: 1, csumStart: 20, csumOffset: 16)
        let frame = testFrame(100)
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 10, frame: ArrayPieces(parts: [frame]), mergeable: false) }
        #expect(r == .delivered(1))
        #expect(d.bytes(at: offs[0], count: 10) == Array(header[0..<10]))
        #expect(d.bytes(at: offs[0] + 10, count: 100) == frame)
        #expect(d.takeUsed(rx).map(\.len) == [110])
    }

    @Test func rxWrapAround() {
        let d = FakeDriver(queueSize: 4)
        let (q, _) = fresh(d, rx, at: 65534)
        let header = vnetHeader()
        for i in 0..<10 {
            let (_, offs) = d.post(rx, [.writable(256)])
            let f = testFrame(100, seed: UInt8(i))
            let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [f]), mergeable: true) }
            #expect(r == .delivered(1))
            #expect(d.bytes(at: offs[0] + 12, count: 100) == f)
            #expect(d.takeUsed(rx).count == 1)
        }
    }

    // MARK: - Notifications

    @Test func eventIndexInterruptsOnlyWhenUsedEventIsCrossed() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx, eventIndex: true)
        d.setUsedEvent(tx, 2)           // "interrupt me when used.idx passes 2"
        for _ in 0..<2 { d.post(tx, [.readable(testFrame(60))]); _ = dequeue(q) }
        #expect(!q.needsInterrupt(), "used.idx 0→2 does not cross used_event 2")
        d.post(tx, [.readable(testFrame(60))]); _ = dequeue(q)
        #expect(q.needsInterrupt(), "2→3 crosses it")
        #expect(!q.needsInterrupt(), "nothing new since")
        d.post(tx, [.readable(testFrame(60))]); _ = dequeue(q)
        #expect(!q.needsInterrupt(), "used_event left behind: no interrupt")
    }

    @Test func eventIndexKicksAreArmedAtAvailEvent() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx, eventIndex: true, at: 100)
        d.post(tx, [.readable(testFrame(60))]); _ = dequeue(q)
        #expect(q.enableNotifications() == false)
        #expect(d.availEvent(tx) == 101, "kick me when avail passes 101")
        d.post(tx, [.readable(testFrame(60))], publish: true)
        #expect(q.enableNotifications() == true, "the re-check sees a buffer that arrived")
    }

    @Test func withoutEventIndexTheFlagsAreUsed() {
        let d = FakeDriver()
        let (q, _) = fresh(d, rx)
        d.post(rx, [.writable(256)])
        let header = vnetHeader()
        _ = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(60)]), mergeable: true) }
        d.setAvailFlags(rx, VringFlag.availNoInterrupt)
        #expect(!q.needsInterrupt(), "VRING_AVAIL_F_NO_INTERRUPT")
        d.post(rx, [.writable(256)])
        _ = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(60)]), mergeable: true) }
        d.setAvailFlags(rx, 0)
        #expect(q.needsInterrupt())
        // Kicks: flag cleared when armed, set when the device is busy again.
        #expect(q.enableNotifications() == false)
        #expect(d.usedFlags[rx] & VringFlag.usedNoNotify == 0)
        q.disableNotifications()
        #expect(d.usedFlags[rx] & VringFlag.usedNoNotify != 0)
    }

    // MARK: - Dirty log

    @Test func dirtyLogMarksBuffersAndUsedRing() {
        withDirtyLog { log in
            let d = FakeDriver()
            let (q, _) = fresh(d, rx, log: log)
            d.heap = 0x80000 - 100                      // a buffer straddling two pages
            let (_, offs) = d.post(rx, [.writable(300)])
            let header = vnetHeader()
            _ = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(200)]), mergeable: true) }
            let first = d.gpa(offs[0]) / 4096, last = (d.gpa(offs[0]) + 211) / 4096
            #expect(first != last)
            #expect(log.isMarked(page: first) && log.isMarked(page: last))
            #expect(log.isMarked(page: d.gpa(d.usedOffset(rx)) / 4096), "used ring page")
            #expect(!log.isMarked(page: d.gpa(d.descOffset(rx)) / 4096), "the descriptor table is only read")
        }
    }

    /// A chain of one descriptor takes a shorter path in `dequeue` and `enqueue` than the
    /// chain walk: for frames of many sizes, cut into pieces, with both header sizes, the
    /// guest sees the same bytes, `num_buffers`, used lengths and dirty pages as through a
    /// chain of the same buffer cut in two (which only the walk takes).
    @Test(arguments: [12, 10])
    func oneDescriptorChainsMatchTheChainWalk(headerSize: Int) {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let length = Int.random(in: 14...3000, using: &rng)
            let frame = testFrame(length, seed: UInt8(truncatingIfNeeded: round))
            let cut = Int.random(in: 0...length, using: &rng)
            let pieces = [Array(frame[..<cut]), Array(frame[cut...])]
            let header = vnetHeader(flags: 1, csumStart: 34, csumOffset: 16)
            let total = headerSize + length
            let room = total + Int.random(in: 0...64, using: &rng)
            var seen: [[UInt8]] = [], lengths: [[Int]] = [], pages: [[UInt64]] = []
            for split in [false, true] {
                withDirtyLog { log in
                    let d = FakeDriver()
                    let (q, _) = fresh(d, rx, log: log)
                    let first = split ? max(16, (room / 2) & ~15) : room   // buffers laid end to end (16-byte aligned)
                    let (_, offs) = d.post(rx, split ? [.writable(first), .writable(room - first)] : [.writable(room)])
                    let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: headerSize, frame: ArrayPieces(parts: pieces), mergeable: true) }
                    #expect(r == .delivered(1))
                    let contiguous = offs.count == 1 || offs[1] == offs[0] + first
                    #expect(contiguous, "the fake driver lays the two buffers end to end")
                    seen.append(d.bytes(at: offs[0], count: total))
                    lengths.append(d.takeUsed(rx).map(\.len))
                    pages.append((0..<UInt64(2048)).filter { log.isMarked(page: $0) })
                }
            }
            #expect(seen[0] == seen[1] && lengths[0] == lengths[1] && pages[0] == pages[1], "round \(round): \(length) bytes cut at \(cut)")
            #expect(Array(seen[0][headerSize...]) == frame)
            if headerSize == 12 { #expect(seen[0][10] == 1 && seen[0][11] == 0, "num_buffers 1") }

            // The way out: the same bytes from one readable descriptor and from two.
            var out: [[UInt8]] = []
            for split in [false, true] {
                let d = FakeDriver()
                let (q, _) = fresh(d, tx)
                let bytes = header + frame
                let k = split ? bytes.count / 2 : bytes.count
                d.post(tx, split ? [.readable(Array(bytes[..<k])), .readable(Array(bytes[k...]))] : [.readable(bytes)])
                let (r, got) = dequeue(q)
                #expect(r == .frame(bytes.count))
                #expect(d.takeUsed(tx).map(\.len) == [0])
                out.append(got)
            }
            #expect(out[0] == out[1] && out[0] == header + frame)
        }
    }

    /// A one-descriptor chain longer than the buffer it is read into is reported as oversize,
    /// as a longer chain is.
    @Test func aOneDescriptorChainLongerThanTheBufferIsOversize() {
        let d = FakeDriver()
        let (q, _) = fresh(d, tx)
        d.post(tx, [.readable(vnetHeader() + testFrame(200))])
        #expect(dequeue(q, capacity: 100).0 == .oversize)
        #expect(d.takeUsed(tx).count == 1, "consumed")
    }

    // MARK: - Driver mistakes

    func expectFault(_ q: Virtqueue, _ box: VirtqueueProgressBox, _ f: VirtqueueFault, _ comment: Comment? = nil) {
        #expect(dequeue(q).0 == .fault(f), comment)
        #expect(box.pointer.pointee.fault == f.rawValue)
        #expect(dequeue(q).0 == .fault(f), "the ring stays dead")
    }

    @Test func descriptorOutsideTheMemoryTable() {
        let d = FakeDriver()
        let (q, box) = fresh(d, tx)
        d.writeDescriptor(table: d.descOffset(tx), 0, addr: d.gpaBase + UInt64(d.size) - 10, len: 100, flags: 0, next: 0)
        d.makeAvailable(tx, head: 0)
        expectFault(q, box, .descriptorOutsideMemory)
    }

    @Test func descriptorBelowTheRegionAndWrappingLengths() {
        for (addr, len) in [(UInt64(0), UInt32(64)), (UInt64.max - 8, UInt32(64)), (0x100000 + 4 << 20, UInt32(1))] {
            let d = FakeDriver()
            let (q, box) = fresh(d, tx)
            d.writeDescriptor(table: d.descOffset(tx), 0, addr: addr, len: len, flags: 0, next: 0)
            d.makeAvailable(tx, head: 0)
            expectFault(q, box, .descriptorOutsideMemory, "addr \(addr) len \(len)")
        }
    }

    @Test func descriptorLoop() {
        let d = FakeDriver(queueSize: 16)
        let (q, box) = fresh(d, tx)
        let o = d.alloc(64)
        d.writeDescriptor(table: d.descOffset(tx), 0, addr: d.gpa(o), len: 8, flags: VringFlag.next, next: 1)
        d.writeDescriptor(table: d.descOffset(tx), 1, addr: d.gpa(o), len: 8, flags: VringFlag.next, next: 0)
        d.makeAvailable(tx, head: 0)
        expectFault(q, box, .descriptorLoop)
    }

    @Test func indexesOutOfRange() {
        let d = FakeDriver(queueSize: 16)
        let (q, box) = fresh(d, tx)
        d.makeAvailable(tx, head: 16)                  // head beyond the table
        expectFault(q, box, .descriptorIndexOutOfRange)

        let d2 = FakeDriver(queueSize: 16)
        let (q2, box2) = fresh(d2, tx)
        let o = d2.alloc(64)
        d2.writeDescriptor(table: d2.descOffset(tx), 0, addr: d2.gpa(o), len: 8, flags: VringFlag.next, next: 300)
        d2.makeAvailable(tx, head: 0)
        expectFault(q2, box2, .descriptorIndexOutOfRange, "next beyond the table")

        let d3 = FakeDriver(queueSize: 16)
        let (q3, box3) = fresh(d3, tx)
        d3.store16(d3.availOffset(tx) + 2, 17)        // 17 entries in a 16-entry ring
        expectFault(q3, box3, .availIndexOutOfRange)
    }

    @Test func badIndirectTables() {
        // Length not a multiple of 16, zero, nested, with NEXT, too long, outside memory.
        let cases: [(UInt32, UInt16, Bool, VirtqueueFault)] = [
            (24, VringFlag.indirect, false, .indirectTableInvalid),
            (0, VringFlag.indirect, false, .indirectTableInvalid),
            (32, VringFlag.indirect | VringFlag.next, false, .indirectTableInvalid),
            (UInt32(16 * (Virtqueue.maxIndirect + 1)), VringFlag.indirect, false, .indirectTableInvalid),
            (32, VringFlag.indirect, true, .indirectTableInvalid),
        ]
        for (len, flags, nested, fault) in cases {
            let d = FakeDriver()
            let (q, box) = fresh(d, tx)
            let table = d.alloc(Int(max(len, 32)) + 64)
            if nested {
                d.writeDescriptor(table: table, 0, addr: d.gpa(table), len: 32, flags: VringFlag.indirect, next: 0)
            } else {
                d.writeDescriptor(table: table, 0, addr: d.gpa(table), len: 8, flags: 0, next: 0)
            }
            d.writeDescriptor(table: d.descOffset(tx), 0, addr: d.gpa(table), len: len, flags: flags, next: 0)
            d.makeAvailable(tx, head: 0)
            expectFault(q, box, fault, "len \(len) flags \(flags) nested \(nested)")
        }
        let d = FakeDriver()
        let (q, box) = fresh(d, tx)
        d.writeDescriptor(table: d.descOffset(tx), 0, addr: 0x10, len: 32, flags: VringFlag.indirect, next: 0)
        d.makeAvailable(tx, head: 0)
        expectFault(q, box, .descriptorOutsideMemory, "indirect table outside memory")
    }

    @Test func loopInsideAnIndirectTable() {
        let d = FakeDriver()
        let (q, box) = fresh(d, tx)
        let table = d.alloc(32)
        let buf = d.alloc(8)
        d.writeDescriptor(table: table, 0, addr: d.gpa(buf), len: 8, flags: VringFlag.next, next: 1)
        d.writeDescriptor(table: table, 1, addr: d.gpa(buf), len: 8, flags: VringFlag.next, next: 0)
        d.writeDescriptor(table: d.descOffset(tx), 0, addr: d.gpa(table), len: 32, flags: VringFlag.indirect, next: 0)
        d.makeAvailable(tx, head: 0)
        expectFault(q, box, .descriptorLoop)
    }

    @Test func rxFaultsToo() {
        let d = FakeDriver()
        let (q, box) = fresh(d, rx)
        d.writeDescriptor(table: d.descOffset(rx), 0, addr: 1, len: 4096, flags: VringFlag.write, next: 0)
        d.makeAvailable(rx, head: 0)
        let header = vnetHeader()
        let r = header.withUnsafeBytes { q.enqueue(header: $0.baseAddress!, headerSize: 12, frame: ArrayPieces(parts: [testFrame(60)]), mergeable: true) }
        #expect(r == .fault(.descriptorOutsideMemory))
        #expect(box.pointer.pointee.fault != 0)
    }
}
