// libFuzzer target "frame": FrameHeader.parse + decide + its effects + collectEgress + rewritten.
//
// Input: byte 0 picks the plan (MTU 1500, a tiny MTU 68 so `oversize` is reachable with short
// inputs, or one of two plans with a NIC team), the ingress port and the team members' health;
// the rest is the frame.
// Besides "does not trap", it checks properties that must hold for every frame:
//   - decide is pure: NoTrace and RecordingTrace give the same Decision, the table is unchanged;
//   - a flood never leaves by the ingress port; every egress port is a member of the VLAN;
//   - with a team: never uplink to uplink, never more than one uplink, never from `uplinks: none`;
//   - the rewritten frame has exactly `count - strip + (push ? 4 : 0)` bytes and re-parses;
//   - an egress mirror copy always follows the output it copies.
import Core
import Model

private func mac(_ v: UInt64) -> MACAddress { MACAddress(rawValue: v) }

private let ports: [PortPlan] = [
    PortPlan(name: "a10.eth0", portGroup: "v10", mode: .access(VLANID(10))),
    PortPlan(name: "a20.eth0", portGroup: "v20", mode: .access(VLANID(20)),
             storm: StormLimits(broadcast: 2, multicast: 2, unknownUnicast: 2), acceptsOffloads: true),
    PortPlan(name: "none.eth0", portGroup: "none", mode: .access(.untagged)),
    PortPlan(name: "t-native10.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([10, 20, 100, 4094].map { VLANID($0) }), native: VLANID(10))),
    PortPlan(name: "t-nonative.eth0", portGroup: "trunk2", mode: .trunk(allowed: VLANSet([10, 20].map { VLANID($0) }), native: nil)),
    PortPlan(name: "uplink", portGroup: "uplink", mode: .trunk(allowed: VLANSet([20, 100].map { VLANID($0) }), native: .untagged)),
    PortPlan(name: "span.eth0", portGroup: "span", mode: .access(VLANID(10))),
]
private let statics = [
    StaticMACEntry(vlan: VLANID(10), mac: mac(0x02_00_00_00_0a_01), port: 0),
    StaticMACEntry(vlan: VLANID(20), mac: mac(0x02_00_00_00_14_01), port: 5),
]
private let mirrors = [MirrorPlan(name: "span", sources: [0, 3], ingress: true, egress: true, destinations: [6])]
/// The same ports plus a NIC team of two (failover-order or port-id, picked per input).
private let uplinkMode = PortMode.trunk(allowed: VLANSet([10, 20, 100].map { VLANID($0) }), native: .untagged)
private let teamPorts: [PortPlan] = ports + [
    PortPlan(name: "nic0", portGroup: PortPlan.uplinkGroup, mode: uplinkMode, uplinkMember: 0, usesUplinks: false),
    PortPlan(name: "nic1", portGroup: PortPlan.uplinkGroup, mode: uplinkMode, uplinkMember: 1, usesUplinks: false),
]
private let plans = [
    SwitchPlan(name: "sw1500", ports: ports, mtu: 1500, staticEntries: statics, mirrors: mirrors),
    SwitchPlan(name: "sw68", ports: ports, mtu: 68, staticEntries: statics, mirrors: mirrors),
    SwitchPlan(name: "team", ports: teamPorts, mtu: 1500, staticEntries: statics, mirrors: mirrors,
               team: TeamConfig(memberCount: 2, policy: .portID)),
    SwitchPlan(name: "team-fo", ports: teamPorts, mtu: 1500, staticEntries: statics, mirrors: mirrors,
               team: TeamConfig(memberCount: 2, policy: .failoverOrder, active: [0], standby: [1])),
]
private let locks = AnnouncementLock()
/// Storm buckets per plan (kept across inputs: the buckets drain and refill as frames come).
nonisolated(unsafe) private var buckets: [String: StormControl] = [:]
private func storm(_ plan: SwitchPlan) -> StormControl {
    if let s = buckets[plan.name] { return s }
    let s = StormControl(plan: plan)
    buckets[plan.name] = s
    return s
}

/// A small table (limit 4) so learning also exercises eviction; pre-seeded so lookups hit.
private func makeTable(_ plan: SwitchPlan) -> MACTable {
    let t = MACTable(limit: 4, staticCapacity: 4, portCount: 2)   // fewer ports than the plan: grows on demand
    for s in plan.staticEntries { _ = t.addStatic(vlan: s.vlan, mac: s.mac, port: s.port) }
    t.learn(vlan: VLANID(10), mac: mac(0x02_00_00_00_0a_02), port: 3, now: .seconds(1))
    t.learn(vlan: VLANID(20), mac: mac(0x02_00_00_00_14_02), port: 1, now: .seconds(2))
    t.learn(vlan: .untagged, mac: mac(0x02_00_00_00_00_01), port: 2, now: .seconds(3))
    t.learn(vlan: VLANID(100), mac: mac(0x02_00_00_00_64_01), port: 5, now: .seconds(4))
    return t
}

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-frame invariant violated: \(what())") }
}

private func run(_ frame: [UInt8], inPort: PortIndex, plan: SwitchPlan, table: MACTable, team: TeamContext?) {
    let before = table.entries(now: .seconds(10))
    var rec = RecordingTrace()
    var none = NoTrace()
    let ctx = DecisionContext(table: table, team: team, storm: storm(plan), now: .seconds(10))
    let d = frame.withUnsafeBytes { decide(frame: $0, inPort: inPort, plan: plan, context: ctx, trace: &rec) }
    let d2 = frame.withUnsafeBytes { decide(frame: $0, inPort: inPort, plan: plan, context: ctx, trace: &none) }
    check(d == d2, "NoTrace and RecordingTrace disagree: \(d) vs \(d2)")
    check(table.entries(now: .seconds(10)) == before, "decide changed the MAC table")
    check(rec.steps.first == .received(port: inPort, length: frame.count), "first trace step is not .received")
    let header = frame.withUnsafeBytes { FrameHeader.parse($0) }
    if header == nil { check(d.verdict == .drop(.runt), "unparsable frame not dropped as runt: \(d)") }

    var uplinksUsed = 0
    let context = DecisionContext(table: table, team: team, storm: storm(plan), now: .seconds(10))
    let list = EgressList(capacity: 64)
    list.prepare(portCount: plan.ports.count)
    let ingressDrop = collectEgress(of: d, inPort: inPort, plan: plan, context: context, into: list)
    if case .drop = d.verdict { check(ingressDrop == nil || ingressDrop == .transmitQueueFull, "a dropped frame also counted \(ingressDrop!)") }
    for i in 0..<list.count {
        let item = list[i]
        let p = Int(item.port), rw = item.rewrite
        check(p >= 0 && p < plan.ports.count, "egress port \(p) out of range")
        if item.kind == .mirrorEgress {
            check(item.after >= 0 && Int(item.after) < i && list[Int(item.after)].kind == .output, "egress mirror copy \(i) without its output")
        }
        guard item.kind == .output else { continue }
        check(p >= 0 && p < plan.ports.count, "egress port \(p) out of range")
        if plan.hot[p].isUplink {
            uplinksUsed += 1
            check(!plan.hot[inPort].isUplink, "uplink \(inPort) forwarded to uplink \(p)")
            check(plan.hot[inPort].usesUplinks, "a port group with uplinks: none reached uplink \(p)")
            check(uplinksUsed == 1, "a frame left by two uplinks")
        }
        if case .flood = d.verdict { check(p != inPort, "flood left by the ingress port \(p)") }
        check(plan.ports[p].mode.isMember(d.vlan), "egress port \(p) not a member of VLAN \(d.vlan)")
        check(rw.strip == d.ingressTagLength, "strip \(rw.strip) != ingress tag length \(d.ingressTagLength)")
        let out = rewritten(frame, rw)
        let expected = frame.count - min(rw.strip, max(0, frame.count - 12)) + (rw.push == nil ? 0 : 4)
        check(out.count == expected, "rewritten length \(out.count), expected \(expected)")
        // A frame with a third (truncated) tag re-parses as a runt once a tag is popped; the
        // parser reads two tags only, so require re-parsing for frames with at most two.
        if let h = header, !EtherType.isTag(h.etherType) {
            check(out.withUnsafeBytes { FrameHeader.parse($0) } != nil, "rewritten frame does not parse")
        }
    }
    if d.takesStormToken, let why = d.floodReason { context.storm?.take(port: inPort, reason: why, now: context.now) }

    if d.learn, let h = header {
        table.learn(vlan: d.vlan, mac: h.source, port: inPort, now: .seconds(20), portLimit: 3)
        check(table.lookup(vlan: d.vlan, mac: h.source) != nil, "learned address not found")
        check(table.count <= table.limit, "table over its limit: \(table.count) > \(table.limit)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = Int(data[0])
    let plan = plans[(selector / teamPorts.count) % plans.count]
    let inPort = selector % plan.ports.count
    let frame = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let table = makeTable(plan)
    var team: TeamContext? = nil
    if let config = plan.team {
        // Health from the selector's top bits: both up, one down, or none.
        let pattern = selector >> 6
        let health: [MemberHealth] = [pattern & 1 == 0 ? .up : .down(.noCarrier), pattern & 2 == 0 ? .up : .down(.beaconLost)]
        team = TeamContext(state: TeamState.compute(config: config, health: health, carriedPorts: plan.carriedPorts,
                                                    portCount: plan.ports.count), locks: locks, now: .seconds(10))
    }
    run(frame, inPort: inPort, plan: plan, table: table, team: team)
    // Second pass with the source learned: exercises hits, hairpins and moves.
    run(frame, inPort: inPort, plan: plan, table: table, team: team)
    // Every rewrite of the raw bytes, including on runts (trace and capture use it on any frame).
    for strip in [0, 4] {
        _ = rewritten(frame, EgressRewrite(strip: strip, push: nil))
        _ = rewritten(frame, EgressRewrite(strip: strip, push: VLANTag(tpid: EtherType.vlan, tci: 0x2014)))
    }
    _ = table.expire(now: .seconds(400), aging: .seconds(300))
    _ = table.flush(port: inPort)
    return 0
}
