// libFuzzer target "underlay": the overlay's receive path around VXLAN decapsulation, as the
// datapath runs it (Datapath+Underlay.swift) — the VXLAN header (Wire), the demultiplexer
// from (outer source, VNI) to a switch's tunnel port and VLAN (Core's TunnelDemux), the
// tunnel form (the VNI's VLAN as an 802.1Q tag written after the inner MACs, in the same
// scattered slot layout), then decide, learn and collectEgress on that switch.
//
// Input: byte 0 picks the outer source (0-3: the three VTEPs of the plans below and a
// stranger), the rest is the UDP payload. Checks:
//   - a refused header or an unknown VTEP/VNI never reaches a port; a stranger never does;
//   - a target is a tunnel port of its switch and its VLAN is VNI - base (≤ 4094);
//   - split horizon: nothing decided for a frame from a tunnel goes out of a tunnel or an uplink;
//   - the VLAN decided is the VNI's (or the frame is dropped).
import Glibc
import Core
import Model
import Wire

private func tunnel(_ name: String, _ address: String, base: UInt32, vlans: [UInt16]) -> PortPlan {
    PortPlan(name: name, portGroup: TunnelPeer.portGroup, mode: .trunk(allowed: VLANSet(vlans.map { VLANID($0) }), native: nil),
             security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), usesUplinks: false,
             tunnel: TunnelPeer(remote: IPAddress(address)!, host: name, vniBase: base, largestFrame: 1464))
}

private let plans = [
    SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "b.eth0", portGroup: "plain", mode: .access(.untagged)),
        PortPlan(name: "t.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil)),
        PortPlan(name: "eth9", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([VLANID(10)]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 0, usesUplinks: false),
        tunnel("h2", "10.0.0.2", base: 5000, vlans: [0, 10, 20]),
        tunnel("vtep-10.0.0.9", "10.0.0.9", base: 5000, vlans: [0]),
    ]),
    SwitchPlan(name: "sw1", ports: [
        PortPlan(name: "c.eth0", portGroup: "v5", mode: .access(VLANID(5))),
        tunnel("h2", "10.0.0.2", base: 10000, vlans: [5]),
        tunnel("h3", "fd00::3", base: 10000, vlans: [5]),
    ]),
]
private let demux = TunnelDemux(plans: plans, udpPort: 4789)
private let sources = ["10.0.0.2", "10.0.0.9", "fd00::3", "10.0.0.66"].map { TunnelDemux.key(IPAddress($0)!) }
private let tables = plans.map { MACTable(limit: 64, portCount: $0.ports.count) }
private let list = EgressList()
private let slot = UnsafeMutableRawPointer.allocate(byteCount: 16384, alignment: 64)
private var clock: Int64 = 0

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-underlay invariant violated: \(what())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let source = sources[Int(data[0] & 3)]
    let length = min(size - 1, 16384 - 24)
    // The datapath's scatter: payload bytes 0..<20 at slot+0, the rest at slot+24.
    slot.copyMemory(from: data + 1, byteCount: min(length, 20))
    if length > 20 { (slot + 24).copyMemory(from: data + 21, byteCount: length - 20) }
    let vni: UInt32
    switch VXLAN.decapsulate(udpPayload: UnsafeRawBufferPointer(start: slot, count: length)) {
    case .refused: return 0
    case .frame(let d): vni = d.vni
    }
    guard case .success(let t) = demux.lookup(high: source.high, low: source.low, vni: vni) else { return 0 }
    check(data[0] & 3 != 3, "a stranger reached a port")
    check(t.switchIndex < plans.count && t.port < plans[t.switchIndex].ports.count, "target out of range")
    let plan = plans[t.switchIndex]
    guard let peer = plan.ports[t.port].tunnel else { fatalError("fuzz-underlay invariant violated: target is not a tunnel") }
    check(UInt32(t.vlan.rawValue) == vni - peer.vniBase && t.vlan.rawValue <= 4094, "VLAN \(t.vlan) for VNI \(vni)")
    slot.storeBytes(of: EtherType.vlan.bigEndian, toByteOffset: 20, as: UInt16.self)
    slot.storeBytes(of: t.vlan.rawValue.bigEndian, toByteOffset: 22, as: UInt16.self)
    let frame = UnsafeRawBufferPointer(start: slot + 8, count: length - 8 + 4)
    clock += 1_000_000
    let table = tables[t.switchIndex]
    let context = DecisionContext(table: table, now: MonotonicInstant(nanoseconds: clock))
    let d = decide(frame: frame, inPort: t.port, plan: plan, context: context)
    if d.learn { table.learn(vlan: d.learningVLAN, mac: d.source, port: t.port, now: context.now, portLimit: plan.hot[t.port].macLimit) }
    if case .drop = d.verdict {} else { check(d.vlan == t.vlan, "decided VLAN \(d.vlan) for the VNI's \(t.vlan)") }
    list.prepare(portCount: plan.ports.count)
    _ = collectEgress(of: d, inPort: t.port, plan: plan, context: context, into: list)
    for i in 0..<list.count where list[i].kind == .output {
        let out = plan.ports[Int(list[i].port)]
        check(!out.isTunnel && !out.isUplink, "split horizon: \(plan.ports[t.port].name) → \(out.name)")
    }
    return 0
}
