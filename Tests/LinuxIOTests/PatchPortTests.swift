import CLinux
import LinuxIO
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `PatchRing` and `PatchPort`: frames written to one end are read, whole and in
/// order, at the other; a full ring refuses without blocking; the eventfd wakes the reader.
struct PatchPortTests {
    /// Writes `pieces` as one frame through `port` queue 0.
    static func write(_ port: PatchPort, _ pieces: [[UInt8]]) -> IOResult {
        var storage = pieces
        var iov: [iovec] = []
        for i in storage.indices { storage[i].withUnsafeMutableBytes { iov.append(iovec(iov_base: $0.baseAddress, iov_len: $0.count)) } }
        // The arrays' buffers stay alive (and unmoved) while `storage` lives.
        return withExtendedLifetime(storage) { iov.withUnsafeBufferPointer { port.writev(queue: 0, $0.baseAddress!, count: Int32($0.count)) } }
    }

    static func read(_ port: PatchPort, queue: Int = 0) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 70_000)
        let r = buf.withUnsafeMutableBytes { port.read(queue: queue, into: $0) }
        guard case .bytes(let n) = r else { return nil }
        return Array(buf[0..<n])
    }

    @Test func framesCrossInOrderWithTheirHeaderInBothDirections() throws {
        let (a, b) = try PatchPort.pair(labels: ("a", "b"), queues: 2, ringBytes: 1 << 20)
        #expect(a.queueCount == 2 && a.vnetHeaderSize == 12 && a.txVNetHeaderSize == 12)
        let header = [UInt8](repeating: 0, count: 11) + [7]
        for n in [60, 61, 1514, 9000, 65536] {
            let frame = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) }
            #expect(Self.write(a, [header, Array(frame[0..<12]), Array(frame[12...])]) == .bytes(12 + n))
        }
        #expect(Self.read(a) == nil, "nothing comes back to the writer")
        for n in [60, 61, 1514, 9000, 65536] {
            let got = try #require(Self.read(b))
            #expect(got == header + (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) })
        }
        #expect(Self.read(b) == nil)
        // The other direction, and queues are separate rings.
        #expect(Self.write(b, [header, [1, 2, 3]]) == .bytes(15))
        #expect(Self.read(a, queue: 1) == nil)
        #expect(Self.read(a, queue: 0) == header + [1, 2, 3])
    }

    @Test func aFullRingRefusesAndRecoversAcrossTheWrap() throws {
        let (a, b) = try PatchPort.pair(labels: ("a", "b"), queues: 1, ringBytes: 0)   // the minimum: two largest records
        let frame = [UInt8](repeating: 0xAB, count: 30_000)
        var accepted = 0
        while Self.write(a, [frame]) == .bytes(frame.count) { accepted += 1; if accepted > 100 { break } }
        #expect(accepted >= 4 && accepted < 100, "bounded: \(accepted) frames fit")
        #expect(Self.write(a, [frame]) == .wouldBlock, "full: refused, not blocked")
        // Drain and refill many times: records wrap around the end of the buffer intact and
        // in order (each frame's first byte numbers it).
        var expected = [UInt8](repeating: 0xAB, count: accepted)
        for round in 0..<50 {
            let got = try #require(Self.read(b), "round \(round)")
            #expect(got.count == frame.count && got.first == expected.removeFirst() && got.dropFirst().allSatisfy { $0 == 0xAB })
            #expect(Self.write(a, [[UInt8(round)] + frame.dropFirst()]) == .bytes(frame.count))
            expected.append(UInt8(round))
        }
        while let got = Self.read(b) { #expect(got.first == expected.removeFirst()) }
        #expect(expected.isEmpty)
        #expect(b.queuedBytes == 0)
        #expect(Self.write(a, [[UInt8](repeating: 0, count: PatchRing.largestPayload + 1)]) == .failed(EMSGSIZE))
    }

    @Test func flushWakesTheReaderOncePerBatchAndCloseStopsBothWays() throws {
        let (a, b) = try PatchPort.pair(labels: ("a", "b"), queues: 1)
        let epoll = try Epoll()
        try epoll.add(b.pollFD(queue: 0), data: 1)
        let events = UnsafeMutableBufferPointer<EpollEvent>.allocate(capacity: 4)
        defer { events.deallocate() }
        for _ in 0..<3 { _ = Self.write(a, [[UInt8](repeating: 1, count: 70)]) }
        #expect(try epoll.wait(into: events, timeoutMilliseconds: 0) == 0, "not readable before the batch ends")
        a.flush(queue: 0)
        #expect(try epoll.wait(into: events, timeoutMilliseconds: 100) == 1)
        var n = 0
        while Self.read(b) != nil { n += 1 }
        #expect(n == 3)
        #expect(try epoll.wait(into: events, timeoutMilliseconds: 0) == 0, "an empty ring drains the eventfd")
        a.close()
        #expect(Self.write(a, [[1]]) == .failed(EBADF))
        #expect(Self.read(a) == nil)
    }
}
