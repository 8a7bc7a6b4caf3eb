import Model

/// Builds Ethernet frames as byte arrays for pure tests.
public struct FrameBuilder {
    public var destination: MACAddress
    public var source: MACAddress
    public var tags: [VLANTag] = []
    public var etherType: UInt16 = EtherType.ipv4
    public var payloadLength = 46

    public init(dst: MACAddress, src: MACAddress) { destination = dst; source = src }

    /// Adds an 802.1Q tag (or another TPID) outside any tags already added... innermost last.
    public func tagged(_ vid: UInt16, tpid: UInt16 = EtherType.vlan, pcp: UInt16 = 0, dei: Bool = false) -> FrameBuilder {
        var b = self; b.tags.append(VLANTag(tpid: tpid, tci: pcp << 13 | (dei ? 0x1000 : 0) | vid)); return b
    }
    public func type(_ t: UInt16) -> FrameBuilder { var b = self; b.etherType = t; return b }
    public func payload(_ n: Int) -> FrameBuilder { var b = self; b.payloadLength = n; return b }

    public var bytes: [UInt8] {
        var out = destination.octets + source.octets
        for t in tags { out += [UInt8(t.tpid >> 8), UInt8(t.tpid & 0xFF), UInt8(t.tci >> 8), UInt8(t.tci & 0xFF)] }
        out += [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
        out += (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0) }
        return out
    }
}

/// A shorthand for test MACs: `mac(1)` is 02:00:00:00:00:01.
public func mac(_ n: UInt64) -> MACAddress { MACAddress(rawValue: 0x0200_0000_0000 | n) }

import Core

/// The egress half of a decision as a list of (port, rewrite, refusal) — outputs and
/// refusals, mirror copies left out — for table-driven tests (over `collectEgress`).
public func forEachEgress(of d: Decision, inPort: PortIndex, plan: SwitchPlan, context: DecisionContext? = nil,
                          _ body: (PortIndex, EgressRewrite, DropReason?) -> Void) {
    let list = EgressList()
    list.prepare(portCount: plan.ports.count)
    _ = collectEgress(of: d, inPort: inPort, plan: plan, context: context ?? DecisionContext(table: MACTable()), into: list)
    for i in 0..<list.count {
        let item = list[i]
        switch item.kind {
        case .output: body(Int(item.port), item.rewrite, nil)
        case .refused: body(Int(item.port), item.rewrite, item.refusal)
        case .mirrorIngress, .mirrorEgress: continue
        }
    }
}

/// Real TCP/IPv4 frames with a virtio-net header, as a guest's TCP stack hands them over
/// with TSO: one super-frame of `payload` bytes to be cut into `segmentSize`-byte segments,
/// its TCP checksum left partial (NEEDS_CSUM, seeded with the pseudo-header sum as Linux
/// does).
public enum TCPFrames {
    /// The frame (Ethernet, IPv4 10.0.0.1 → 10.0.0.2, TCP 40000 → 5201, seq 1000, ACK|PSH)
    /// and its 12-byte virtio-net header (GSO TCPv4, csum_start 34, csum_offset 16).
    public static func gso(dst: MACAddress, src: MACAddress, payload: Int, segmentSize: Int) -> (frame: [UInt8], header: [UInt8]) {
        var f = dst.octets + src.octets + [0x08, 0x00]
        let total = 20 + 20 + payload
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let ipSum = onesComplement(ip)
        ip[10] = UInt8(~ipSum >> 8); ip[11] = UInt8(~ipSum & 0xFF)
        f += ip
        // TCP header; checksum field = the pseudo-header sum (not complemented), as Linux seeds it.
        var tcp: [UInt8] = [0x9C, 0x40, 0x14, 0x51, 0, 0, 0x03, 0xE8, 0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
        let pseudo = onesComplement([10, 0, 0, 1, 10, 0, 0, 2, 0, 6, UInt8((20 + payload) >> 8 & 0xFF), UInt8((20 + payload) & 0xFF)])
        tcp[16] = UInt8(pseudo >> 8); tcp[17] = UInt8(pseudo & 0xFF)
        f += tcp
        f += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        func le(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
        let header: [UInt8] = [1, 1] + le(54) + le(segmentSize) + le(34) + le(16) + le(0)
        return (f, header)
    }

    /// The header with csum_start and hdr_len moved by `delta` (a tag inserted before L3).
    public static func shifted(_ h: [UInt8], by delta: Int) -> [UInt8] {
        var h = h
        let hdrLen = Int(h[2]) | Int(h[3]) << 8, start = Int(h[6]) | Int(h[7]) << 8
        h[2] = UInt8((hdrLen + delta) & 0xFF); h[3] = UInt8((hdrLen + delta) >> 8)
        h[6] = UInt8((start + delta) & 0xFF); h[7] = UInt8((start + delta) >> 8)
        return h
    }

    /// The 16-bit ones' complement sum of `bytes` (RFC 1071), not complemented.
    public static func onesComplement(_ bytes: [UInt8]) -> UInt16 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { s += UInt32(bytes[i]) << 8 }
        while s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
        return UInt16(s)
    }
}
