// libFuzzer target "vxlan": VXLAN decapsulation of arbitrary bytes — as a whole IP packet
// (a raw socket's view, with and without checksum verification) and as a UDP payload (a
// UDP socket's view) — and an encapsulation round trip of the input taken as an inner frame.
//
// Input: byte 0 selects (bit 0: IPv6 outer for the round trip; bit 1: verify checksums on
// the raw parse; bit 2: zero UDP checksum over IPv6), the rest is the packet. Checks:
//   - a decapsulated frame lies inside the input, is at least an Ethernet header long and
//     its VNI has 24 bits;
//   - encapsulating the input (as an inner frame) and decapsulating the result, with
//     checksums verified, gives back the VNI, the source VTEP and the inner bytes.
import Glibc
import Wire

private let packet = UnsafeMutableRawPointer.allocate(byteCount: 70_000, alignment: 16)
private let v4 = VXLANEncapsulation(source: UnderlayAddress("192.0.2.1")!, destination: UnderlayAddress("192.0.2.2")!)
private let v6 = VXLANEncapsulation(source: UnderlayAddress("2001:db8::1")!, destination: UnderlayAddress("2001:db8::2")!)
private let v6zero = VXLANEncapsulation(source: UnderlayAddress("2001:db8::1")!, destination: UnderlayAddress("2001:db8::2")!,
                                        zeroChecksumOverIPv6: true)

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-vxlan invariant violated: \(what())") }
}

private func checkFrame(_ o: VXLAN.Outcome, count: Int) {
    if case .frame(let d) = o {
        check(d.innerLength >= 14 && d.innerOffset >= 8 && d.innerOffset + d.innerLength <= count,
              "inner frame \(d.innerOffset)+\(d.innerLength) of \(count)")
        check(d.vni <= VXLAN.maximumVNI, "VNI \(d.vni)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    checkFrame(VXLAN.decapsulate(ipPacket: input, verifyingChecksums: mode & 2 != 0), count: input.count)
    checkFrame(VXLAN.decapsulate(ipPacket: input, port: 4790, verifyingChecksums: false), count: input.count)
    checkFrame(VXLAN.decapsulate(udpPayload: input), count: input.count)

    // Round trip of the input as an inner frame.
    let e = mode & 1 == 0 ? v4 : (mode & 4 == 0 ? v6 : v6zero)
    guard input.count >= 14, input.count + e.headerLength <= 70_000, input.count <= e.maximumInnerLength else { return 0 }
    let vni = UInt32(size) &* 2_654_435_761 & VXLAN.maximumVNI
    let hash = FlowHash.of(input)
    let sum = e.needsInnerSum ? InternetChecksum.sum(input) : 0
    let h = e.write(to: packet, vni: vni, innerLength: input.count, flowHash: hash, ipv4ID: UInt16(truncatingIfNeeded: size), innerSum: sum)
    check(h == e.headerLength, "header length \(h)")
    (packet + h).copyMemory(from: input.baseAddress!, byteCount: input.count)
    let whole = UnsafeRawBufferPointer(start: packet, count: h + input.count)
    switch VXLAN.decapsulate(ipPacket: whole, verifyingChecksums: true) {
    case .refused(let r):
        fatalError("fuzz-vxlan: our own packet refused: \(r)")
    case .frame(let d):
        check(d.vni == vni && d.innerOffset == h && d.innerLength == input.count && d.source == e.source, "round trip \(d)")
        check(d.sourcePort >= 49152 && d.sourcePort == VXLAN.sourcePort(flowHash: hash), "source port \(d.sourcePort)")
        check(memcmp(packet + h, input.baseAddress!, input.count) == 0, "inner bytes")
    }
    return 0
}
