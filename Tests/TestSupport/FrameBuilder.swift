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
