import Testing
import Model
import TestSupport

@Suite struct MACAddressTests {
    @Test func parsesAndPrints() {
        let m = MACAddress("52:54:00:AB:cd:01")
        #expect(m?.rawValue == 0x5254_00AB_CD01)
        #expect(m?.description == "52:54:00:ab:cd:01")
        #expect(MACAddress("52-54-00-ab-cd-01") == m)
    }

    @Test(arguments: ["", "52:54:00:ab:cd", "52:54:00:ab:cd:01:02", "5:54:00:ab:cd:01", "zz:54:00:ab:cd:01", "52:54:00:ab:cd:0100"])
    func rejectsMalformed(_ text: String) {
        #expect(MACAddress(text) == nil)
    }

    @Test func classifiesAddresses() {
        #expect(MACAddress.broadcast.isMulticast && MACAddress.broadcast.isBroadcast)
        #expect(MACAddress("01:00:5e:00:00:01")!.isMulticast)
        #expect(!MACAddress.zero.isUnicast)
        #expect(mac(1).isUnicast && mac(1).isLocallyAdministered)
        #expect(MACAddress("01:80:c2:00:00:00")!.isReservedBridgeGroup)
        #expect(MACAddress("01:80:c2:00:00:0e")!.isReservedBridgeGroup)
        #expect(!MACAddress("01:80:c2:00:00:10")!.isReservedBridgeGroup)
    }

    /// The word-load readers (the frame parser's fast path) agree with the octets on the wire
    /// at every alignment.
    @Test func readsOctetsAtAnyOffset() {
        let octets: [UInt8] = [0xfe, 0x52, 0x54, 0x00, 0xab, 0xcd, 0x01, 0x80, 0x7f, 0x00, 0xff, 0x11, 0x22, 0x33, 0x44, 0x55]
        octets.withUnsafeBytes { raw in
            for offset in 0...(octets.count - 8) {
                var expected: UInt64 = 0
                for i in 0..<6 { expected = expected << 8 | UInt64(octets[offset + i]) }
                #expect(MACAddress(raw, at: offset).rawValue == expected)
                #expect(MACAddress(loadingEightBytesOf: raw, at: offset).rawValue == expected)
                var out = [UInt8](repeating: 0, count: 6)
                out.withUnsafeMutableBytes { MACAddress(rawValue: expected).write(to: $0, at: 0) }
                #expect(out == Array(octets[offset..<offset + 6]))
            }
            #expect(MACAddress(raw, at: octets.count - 6).rawValue == 0xff11_2233_4455)
        }
    }
}

@Suite struct VLANSetTests {
    @Test func membershipAndRanges() {
        var s = VLANSet([VLANID(10), VLANID(20)])
        s.insert(range: 100...199)
        #expect(s.contains(VLANID(10)) && s.contains(VLANID(150)) && !s.contains(VLANID(30)))
        #expect(s.count == 102)
        #expect(s.rangesDescription == "10,20,100-199")
        #expect(VLANSet().isEmpty)
        #expect(VLANID(checking: 0) == nil && VLANID(checking: 4095) == nil && VLANID(checking: 4094) != nil)
    }
}

@Suite struct FrameHeaderTests {
    func parse(_ bytes: [UInt8]) -> FrameHeader? { bytes.withUnsafeBytes { FrameHeader.parse($0) } }

    @Test func untagged() throws {
        let h = try #require(parse(FrameBuilder(dst: mac(2), src: mac(1)).type(EtherType.arp).bytes))
        #expect(h.destination == mac(2) && h.source == mac(1))
        #expect(h.tagCount == 0 && h.etherType == EtherType.arp && h.payloadOffset == 14)
    }

    @Test func singleAndDoubleTagged() throws {
        let one = try #require(parse(FrameBuilder(dst: mac(2), src: mac(1)).tagged(20, pcp: 5).bytes))
        #expect(one.tagCount == 1 && one.outerTag?.vid == 20 && one.outerTag?.pcp == 5 && one.etherType == EtherType.ipv4 && one.payloadOffset == 18)
        let two = try #require(parse(FrameBuilder(dst: mac(2), src: mac(1)).tagged(10, tpid: EtherType.qinq).tagged(20).bytes))
        #expect(two.tagCount == 2 && two.outerTag?.tpid == EtherType.qinq && two.innerTag?.vid == 20 && two.payloadOffset == 22)
    }

    @Test func runtsNeverTrap() {
        let full = FrameBuilder(dst: mac(2), src: mac(1)).tagged(10).tagged(20).bytes
        for n in 0..<22 {
            let h = parse(Array(full.prefix(n)))
            if n < 14 || n < 18 || n < 22 { #expect(h == nil, "length \(n)") }
        }
        #expect(parse(Array(full.prefix(22))) != nil)
    }

    @Test func rewriteMovesOnlyTheTag() {
        let plain = FrameBuilder(dst: mac(2), src: mac(1)).bytes
        let tagged = FrameBuilder(dst: mac(2), src: mac(1)).tagged(30).bytes
        #expect(rewritten(plain, EgressRewrite(strip: 0, push: VLANTag(tpid: 0x8100, tci: 30))) == tagged)
        #expect(rewritten(tagged, EgressRewrite(strip: 4, push: nil)) == plain)
        #expect(EgressRewrite(strip: 0, push: nil).isIdentity)
    }
}
