import Testing
@testable import Capture

/// Byte-level layout of the blocks against draft-ietf-opsawg-pcapng, parsed by the tests'
/// own reader rather than the encoder's helpers.
@Suite struct PcapngLayoutTests {
    @Test func sectionHeaderLayout() throws {
        let shb = Pcapng.sectionHeader(application: "tap")
        let blocks = try #require(parseBlocks(shb))
        #expect(blocks.count == 1)
        let b = blocks[0]
        #expect(Array(shb[0..<4]) == [0x0A, 0x0D, 0x0D, 0x0A])
        #expect(Array(shb[8..<12]) == [0x4D, 0x3C, 0x2B, 0x1A], "byte-order magic, little-endian")
        #expect(b.totalLength == shb.count && b.trailingLength == shb.count && shb.count % 4 == 0)
        #expect(le(b.body, 4, as: UInt16.self) == 1 && le(b.body, 6, as: UInt16.self) == 0, "version 1.0")
        #expect(Array(b.body[8..<16]) == [UInt8](repeating: 0xFF, count: 8), "section length -1")
        let opts = parseOptions(b.body, from: 16)
        #expect(opts == [
            ParsedOption(code: 4, value: Array("tap".utf8), padding: [0]),
            ParsedOption(code: 0, value: [], padding: []),
        ])
        #expect(shb.count == 12 + 16 + 8 + 4)
    }

    @Test func interfaceDescriptionLayout() throws {
        let idb = Pcapng.interfaceDescription(
            PcapngInterface(name: "web1.eth0", description: "port group web, access 10", snapLength: 1518))
        let b = try #require(parseBlocks(idb)?.first)
        #expect(b.type == 1)
        #expect(b.totalLength == idb.count && b.trailingLength == idb.count && idb.count % 4 == 0)
        #expect(le(b.body, 0, as: UInt16.self) == 1, "LINKTYPE_ETHERNET")
        #expect(le(b.body, 2, as: UInt16.self) == 0, "reserved")
        #expect(le(b.body, 4, as: UInt32.self) == 1518)
        #expect(parseOptions(b.body, from: 8) == [
            ParsedOption(code: 2, value: Array("web1.eth0".utf8), padding: [0, 0, 0]),
            ParsedOption(code: 3, value: Array("port group web, access 10".utf8), padding: [0, 0, 0]),
            ParsedOption(code: 9, value: [9], padding: [0, 0, 0]),
            ParsedOption(code: 0, value: [], padding: []),
        ])
    }

    @Test func interfaceWithoutDescriptionHasNoDescriptionOption() throws {
        let b = try #require(parseBlocks(Pcapng.interfaceDescription(PcapngInterface(name: "tap1.eth0")))?.first)
        #expect(parseOptions(b.body, from: 8).map(\.code) == [2, 9, 0])
    }

    @Test(arguments: [60, 61, 62, 63, 64])
    func enhancedPacketLayout(length: Int) throws {
        let frame = (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ 1) }
        let ts: UInt64 = 1_700_000_000_123_456_789
        let comment = "dropped: tagged frame on access port (vlan 20) — ✓"
        let epb = frame.withUnsafeBytes {
            Pcapng.enhancedPacket(interface: 1, timestampNanoseconds: ts, frame: $0, originalLength: 1500,
                                  direction: .outbound, comment: comment)
        }
        let b = try #require(parseBlocks(epb)?.first)
        #expect(b.type == 6)
        #expect(b.totalLength == epb.count && b.trailingLength == epb.count && epb.count % 4 == 0)
        #expect(le(b.body, 0, as: UInt32.self) == 1)
        #expect(UInt64(le(b.body, 4, as: UInt32.self)) << 32 | UInt64(le(b.body, 8, as: UInt32.self)) == ts)
        #expect(le(b.body, 12, as: UInt32.self) == UInt32(length), "captured length, unpadded")
        #expect(le(b.body, 16, as: UInt32.self) == 1500, "original length")
        #expect(Array(b.body[20..<(20 + length)]) == frame)
        let padded = (length + 3) / 4 * 4
        #expect(b.body[(20 + length)..<(20 + padded)].allSatisfy { $0 == 0 })
        let utf8 = Array(comment.utf8)
        #expect(utf8.count > comment.count, "the comment has multi-byte characters")
        #expect(parseOptions(b.body, from: 20 + padded) == [
            ParsedOption(code: 1, value: utf8, padding: [UInt8](repeating: 0, count: (4 - utf8.count % 4) % 4)),
            ParsedOption(code: 2, value: [2, 0, 0, 0], padding: []),
            ParsedOption(code: 0, value: [], padding: []),
        ])
    }

    @Test func enhancedPacketWithoutCommentOrDirectionHasNoOptions() throws {
        let frame = [UInt8](repeating: 0xAB, count: 61)
        let epb = frame.withUnsafeBytes {
            Pcapng.enhancedPacket(interface: 0, timestampNanoseconds: 0, frame: $0, originalLength: 61,
                                  direction: .unknown, comment: nil)
        }
        let b = try #require(parseBlocks(epb)?.first)
        #expect(b.body.count == 20 + 64, "fixed fields and padded data only: no empty option list")
        #expect(epb.count == 12 + 20 + 64)
    }

    @Test func layoutRules() {
        #expect((0...8).map(Pcapng.paddingLength) == [0, 3, 2, 1, 0, 3, 2, 1, 0])
        #expect(Pcapng.option(1, [0x41]) == [1, 0, 1, 0, 0x41, 0, 0, 0])
        #expect(Pcapng.options([]) == [])
        #expect(Pcapng.block(type: 6, body: [1, 2, 3]) == [6, 0, 0, 0, 16, 0, 0, 0, 1, 2, 3, 0, 16, 0, 0, 0])
    }
}
