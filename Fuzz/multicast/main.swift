// libFuzzer target "multicast": the IGMP/MLD parser (MulticastSignal.parse, record walks),
// decide with snooping and a private VLAN, the group table's snoop effect and aging.
//
// Input: byte 0 picks the ingress port and whether checksums are verified; the rest is the
// frame. Besides "does not trap", it checks properties that must hold for every frame:
//   - parsing is deterministic, and a report's records stay inside its message;
//   - decide is pure (NoTrace and RecordingTrace agree; the group table is unchanged);
//   - a malformed message is dropped as malformed-igmp / malformed-mld, never snooped;
//   - the table never holds more than its capacities;
//   - every egress port of a group or router verdict is a VLAN member (PVLAN rules included).
import Core
import Model

private func mac(_ v: UInt64) -> MACAddress { MACAddress(rawValue: 0x0200_0000_0000 | v) }

private let pvlan = PrivateVLAN(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102)])
private let plan = SwitchPlan(name: "fuzz", ports: [
    PortPlan(name: "a", portGroup: "v10", mode: .access(VLANID(10))),
    PortPlan(name: "b", portGroup: "v10", mode: .access(VLANID(10))),
    PortPlan(name: "p", portGroup: "prom", mode: .access(VLANID(100))),
    PortPlan(name: "i", portGroup: "iso", mode: .access(VLANID(101))),
    PortPlan(name: "c", portGroup: "com", mode: .access(VLANID(102))),
    PortPlan(name: "t", portGroup: "trunk", mode: .trunk(allowed: VLANSet([10, 100, 101, 102].map { VLANID($0) }), native: VLANID(10))),
    PortPlan(name: "s", portGroup: "shaped", mode: .access(VLANID(10)),
             shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 1_000_000, burstBytes: 3000),
                                    egress: ShapingLimit(averageBitsPerSecond: 1_000_000, burstBytes: 3000))),
], privateVLANs: [pvlan], multicast: MulticastSnooping(membershipInterval: .seconds(5), routerPorts: [5],
                                                         groupCapacity: 8, membershipCapacity: 16, routerCapacity: 4))
private let querier = MulticastQuerier(settings: .derived(topology: "fuzz", switchName: "fuzz"), vlans: [VLANID(10), VLANID(100)], now: .seconds(0))
nonisolated(unsafe) private let groups = MulticastGroupTable(snooping: plan.multicast!, portCount: plan.ports.count, querier: querier)
nonisolated(unsafe) private let shaper = TrafficShaper(plan: plan)
private let table = MACTable(limit: 64, portCount: plan.ports.count)
nonisolated(unsafe) private var clock: Int64 = 1_000_000_000

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-multicast invariant violated: \(what())") }
}

private func snapshot() -> [String] {
    var cursor = 0
    let buffer = UnsafeMutableBufferPointer<MulticastGroupTable.Entry>.allocate(capacity: 64)
    defer { buffer.deallocate() }
    let n = groups.copyEntries(from: &cursor, into: buffer, now: MonotonicInstant(nanoseconds: clock))
    return buffer[0..<n].map { "\($0.vlan)/\($0.group)/\($0.port)" } + groups.routerEntries(now: MonotonicInstant(nanoseconds: clock)).map { "r\($0.vlan)/\($0.port)" }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = Int(data[0])
    let inPort = selector % plan.ports.count
    let verify = selector & 0x80 == 0
    let frame = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    clock += Int64(selector) * 10_000_000
    let now = MonotonicInstant(nanoseconds: clock)

    frame.withUnsafeBytes { raw in
        // The parser on every offset the header parser could give, and the raw frame.
        if let h = FrameHeader.parse(raw) {
            let a = MulticastSignal.parse(raw, l3Offset: h.payloadOffset, etherType: h.etherType, verifyChecksums: verify)
            let b = MulticastSignal.parse(raw, l3Offset: h.payloadOffset, etherType: h.etherType, verifyChecksums: verify)
            check(a == b, "parse is not deterministic")
            if case .report(let r) = a {
                check(r.end <= raw.count && r.recordsOffset <= r.end, "report bounds \(r.recordsOffset)..\(r.end) outside \(raw.count)")
                var n = 0
                for rec in r.records(in: raw) { n += 1; _ = rec.isLeave; check(n <= max(1, r.recordCount), "more records than announced") }
                check(r.group != nil || n == r.recordCount, "\(n) records walked, \(r.recordCount) announced")
            }
        }
        for o in [0, 14, 18, 22, raw.count] {
            _ = MulticastSignal.parse(raw, l3Offset: o, etherType: EtherType.ipv4)
            _ = MulticastSignal.parse(raw, l3Offset: o, etherType: EtherType.ipv6)
        }

        let before = snapshot()
        let context = DecisionContext(table: table, now: now, shaper: shaper, multicast: groups)
        var rec = RecordingTrace(), none = NoTrace()
        let d = decide(frame: raw, inPort: inPort, plan: plan, context: context, trace: &rec)
        let d2 = decide(frame: raw, inPort: inPort, plan: plan, context: context, trace: &none)
        check(d == d2, "NoTrace and RecordingTrace disagree")
        check(snapshot() == before, "decide changed the group table")
        if case .drop(let r) = d.verdict { check(!d.snoops, "a dropped frame (\(r)) asks to be snooped") }

        let list = EgressList(capacity: 64)
        list.prepare(portCount: plan.ports.count)
        _ = collectEgress(of: d, inPort: inPort, plan: plan, context: context, into: list)
        for i in 0..<list.count where list[i].kind == .output {
            let p = Int(list[i].port)
            check(p != inPort, "output back to the ingress port")
            check(plan.delivers(d.vlan, to: plan.hot[p]), "output to \(plan.ports[p].name), which may not receive VLAN \(d.vlan)")
        }
        // The effects, as the datapath applies them.
        if d.takesShapingTokens { shaper.take(port: inPort, .ingress, bytes: raw.count, now: now) }
        if d.snoops { groups.snoop(frame: raw, verifyChecksums: verify, port: inPort, vlan: d.learningVLAN, now: now) }
        if d.learn { table.learn(vlan: d.learningVLAN, mac: d.source, port: inPort, now: now) }
    }
    check(groups.groupCount <= groups.groupCapacity && groups.membershipCount <= groups.membershipCapacity
          && groups.routerCount <= groups.routerCapacity, "table over capacity")
    if selector & 0x40 != 0 { groups.expire(now: now) }
    if selector == 0x3F { groups.flush(port: inPort) }
    if selector & 0x0F == 0 {
        for f in [IPFamily.ipv4, .ipv6] {
            let q = querier.queryFrame(f)
            let s = q.withUnsafeBytes { MulticastSignal.parse($0, l3Offset: 14, etherType: f == .ipv4 ? EtherType.ipv4 : EtherType.ipv6) }
            if case .query = s {} else { check(false, "the querier's own \(f) query does not parse: \(s)") }
        }
        _ = querier.takeDue(now: now)
    }
    return 0
}
