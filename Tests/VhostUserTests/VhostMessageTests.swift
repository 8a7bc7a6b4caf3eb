import Model
import Testing
@testable import VhostUser

/// The message parser: every request this backend handles, and the malformed inputs that
/// close a connection instead of reaching the device.
@Suite struct VhostMessageTests {
    func parse(_ bytes: [UInt8], fds: Int = 0) -> Result<VhostRequest, VhostProtocolError> {
        bytes.withUnsafeBytes { all in
            switch VhostMessageHeader.parse(UnsafeRawBufferPointer(rebasing: all[0..<min(12, all.count)])) {
            case .failure(let e): return .failure(e)
            case .success(let h):
                return VhostMessage.parse(header: h, payload: UnsafeRawBufferPointer(rebasing: all[12...]), fdCount: fds)
            }
        }
    }
    func msg(_ code: VhostRequestCode, _ payload: [UInt8] = [], flags: UInt32 = 1) -> [UInt8] {
        VhostMessage.request(code.rawValue, flags: flags, payload: payload)
    }
    func u64(_ v: UInt64) -> [UInt8] { var a: [UInt8] = []; a.appendLE64(v); return a }
    func u32s(_ vs: UInt32...) -> [UInt8] { var a: [UInt8] = []; for v in vs { a.appendLE32(v) }; return a }

    @Test func requestsDecode() throws {
        #expect(try parse(msg(.getFeatures)).get() == .getFeatures)
        #expect(try parse(msg(.setFeatures, u64(VirtioFeature.version1 | 1))).get() == .setFeatures(VirtioFeature.version1 | 1))
        #expect(try parse(msg(.setOwner)).get() == .setOwner)
        #expect(try parse(msg(.resetOwner)).get() == .reset)
        #expect(try parse(msg(.setVringNum, u32s(1, 256))).get() == .setVringNum(index: 1, num: 256))
        #expect(try parse(msg(.setVringBase, u32s(0, 65535))).get() == .setVringBase(index: 0, base: 65535))
        #expect(try parse(msg(.getVringBase, u32s(1, 0))).get() == .getVringBase(index: 1))
        #expect(try parse(msg(.setVringEnable, u32s(1, 1))).get() == .setVringEnable(index: 1, enable: true))
        #expect(try parse(msg(.setVringKick, u64(1)), fds: 1).get() == .setVringKick(index: 1, hasFD: true))
        #expect(try parse(msg(.setVringKick, u64(0x101))).get() == .setVringKick(index: 1, hasFD: false), "the no-fd flag: polling")
        #expect(try parse(msg(.setVringCall, u64(0)), fds: 1).get() == .setVringCall(index: 0, hasFD: true))
        #expect(try parse(msg(.setStatus, u64(0x0F))).get() == .setStatus(0x0F))
        #expect(try parse(msg(.getStatus)).get() == .getStatus)
        #expect(try parse(msg(.getQueueNum)).get() == .getQueueNum)
        #expect(try parse(msg(.sendRARP, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0])).get() == .sendRARP(MACAddress("52:54:00:12:34:56")!))
        #expect(try parse(msg(.setLogBase, u64(4096) + u64(0)), fds: 1).get() == .setLogBase(size: 4096, offset: 0))
        var addr: [UInt8] = u32s(1, 1)
        for v: UInt64 in [0x1000, 0x3000, 0x2000, 0x9000] { addr.appendLE64(v) }
        #expect(try parse(msg(.setVringAddr, addr)).get() == .setVringAddr(VringAddress(index: 1, flags: 1, descriptors: 0x1000, used: 0x3000, avail: 0x2000, log: 0x9000)))
        var mem = u32s(2, 0)
        for v: UInt64 in [0, 0x1000_0000, 0x7f00_0000_0000, 0, 0x1_0000_0000, 0x1000, 0x7f10_0000_0000, 0x1000_0000] { mem.appendLE64(v) }
        #expect(try parse(msg(.setMemTable, mem), fds: 2).get() == .setMemTable([
            MemoryRegionDescription(guestPhysicalAddress: 0, size: 0x1000_0000, frontendAddress: 0x7f00_0000_0000, mmapOffset: 0),
            MemoryRegionDescription(guestPhysicalAddress: 0x1_0000_0000, size: 0x1000, frontendAddress: 0x7f10_0000_0000, mmapOffset: 0x1000_0000),
        ]))
        #expect(try parse(msg(.setVringNum, u32s(0, 8), flags: 1 | VhostMessageHeader.needReplyFlag)).get() == .setVringNum(index: 0, num: 8))
        #expect(try parse(VhostMessage.request(77, payload: [1, 2, 3])).get() == .unsupported(77))
    }

    @Test func headerErrors() {
        #expect(throws: VhostProtocolError.badVersion(2)) { try parse(msg(.getFeatures, flags: 2)).get() }
        #expect(throws: VhostProtocolError.unexpectedReply) { try parse(msg(.getFeatures, flags: 1 | VhostMessageHeader.replyFlag)).get() }
        var big = VhostMessage.request(1, payload: [])
        big[8] = 0x01; big[9] = 0x10                 // size 4097
        #expect(throws: VhostProtocolError.payloadTooLarge(4097)) { try parse(big).get() }
        #expect(throws: VhostProtocolError.truncated) { try parse([1, 0, 0]).get() }
    }

    @Test func payloadErrors() {
        #expect(throws: VhostProtocolError.payloadSize(request: 2, expected: 8, got: 4)) { try parse(msg(.setFeatures, [1, 2, 3, 4])).get() }
        #expect(throws: VhostProtocolError.payloadSize(request: 1, expected: 0, got: 1)) { try parse(msg(.getFeatures, [0])).get() }
        #expect(throws: VhostProtocolError.payloadSize(request: 9, expected: 40, got: 8)) { try parse(msg(.setVringAddr, u64(0))).get() }
        #expect(throws: VhostProtocolError.regionCount(0)) { try parse(msg(.setMemTable, u32s(0, 0))).get() }
        #expect(throws: VhostProtocolError.regionCount(9)) { try parse(msg(.setMemTable, u32s(9, 0) + [UInt8](repeating: 0, count: 9 * 32)), fds: 9).get() }
        #expect(throws: VhostProtocolError.payloadSize(request: 5, expected: 72, got: 40)) { try parse(msg(.setMemTable, u32s(2, 0) + [UInt8](repeating: 1, count: 32)), fds: 2).get() }
        var wrap = u32s(1, 0)
        for v: UInt64 in [UInt64.max - 10, 100, 0, 0] { wrap.appendLE64(v) }
        #expect(throws: VhostProtocolError.invalidRegion(0)) { try parse(msg(.setMemTable, wrap), fds: 1).get() }
        var empty = u32s(1, 0)
        for v: UInt64 in [0, 0, 0, 0] { empty.appendLE64(v) }
        #expect(throws: VhostProtocolError.invalidRegion(0)) { try parse(msg(.setMemTable, empty), fds: 1).get() }
    }

    @Test func descriptorCountsMustMatch() {
        var mem = u32s(1, 0)
        for v: UInt64 in [0, 4096, 0, 0] { mem.appendLE64(v) }
        #expect(throws: VhostProtocolError.fdCount(request: 5, expected: 1, got: 0)) { try parse(msg(.setMemTable, mem)).get() }
        #expect(throws: VhostProtocolError.fdCount(request: 12, expected: 1, got: 0)) { try parse(msg(.setVringKick, u64(1))).get() }
        #expect(throws: VhostProtocolError.fdCount(request: 12, expected: 0, got: 1)) { try parse(msg(.setVringKick, u64(0x101)), fds: 1).get() }
        #expect(throws: VhostProtocolError.fdCount(request: 1, expected: 0, got: 2)) { try parse(msg(.getFeatures), fds: 2).get() }
    }

    @Test func repliesEncode() {
        #expect(VhostMessage.reply(to: 1, u64: 0x1_0000_0001) == [1, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
        #expect(VhostMessage.reply(to: 11, index: 1, num: 300) == [11, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 44, 1, 0, 0])
        #expect(VhostMessage.reply(to: 6) == [6, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func rarpFrameLayout() {
        let f = rarpFrame(for: MACAddress("52:54:00:ab:cd:ef")!)
        #expect(f.count == 72)
        #expect(f[0..<12].allSatisfy { $0 == 0 }, "zero virtio-net header")
        let e = Array(f[12...])
        #expect(Array(e[0..<6]) == [255, 255, 255, 255, 255, 255])
        #expect(Array(e[6..<12]) == [0x52, 0x54, 0, 0xab, 0xcd, 0xef])
        #expect(Array(e[12..<14]) == [0x80, 0x35])
        #expect(Array(e[20..<22]) == [0, 3], "reverse request")
        #expect(Array(e[22..<28]) == Array(e[6..<12]) && Array(e[32..<38]) == Array(e[6..<12]))
    }
}
