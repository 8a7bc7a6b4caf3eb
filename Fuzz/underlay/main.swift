// libFuzzer target "underlay": the overlay's receive path as the datapath runs it
// (Datapath+Underlay.swift): a received message split into datagrams by its UDP_GRO segment
// size, each datagram's VXLAN header (Wire), the demultiplexer from (outer source, VNI) to a
// switch's tunnel port and VLAN (Core's TunnelDemux), the tunnel form written in place (the
// MACs moved 4 bytes up into the VXLAN header, the VNI's VLAN as an 802.1Q tag), consecutive
// TCP segments on one port coalesced in place (Wire's TCPCoalescer), then decide, learn and
// collectEgress on that switch for every frame.
//
// Input: byte 0 picks the outer source (0-3: the three VTEPs of the plans below and a
// stranger), byte 1 the UDP_GRO segment size (0: one datagram; else 24 + 8·byte), the rest
// is the message. Checks:
//   - a refused header or an unknown VTEP/VNI never reaches a port; a stranger never does;
//   - a target is a tunnel port of its switch and its VLAN is VNI - base (≤ 4094);
//   - a frame (coalesced or not) lies inside the message slot; a coalesced one is a TCP GSO
//     frame whose headers parse, with gso_size at most its payload;
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
private let slotSize = 65536
private let slot = UnsafeMutableRawPointer.allocate(byteCount: slotSize, alignment: 64)
private let vnet = UnsafeMutableRawPointer.allocate(byteCount: 12, alignment: 16)
private var clock: Int64 = 0

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-underlay invariant violated: \(what())") }
}

/// Decides one frame from tunnel `t` as the datapath does, and checks the verdict.
private func deliver(_ frame: UnsafeMutableRawPointer, _ length: Int, _ t: TunnelDemux.Target, coalesced: Bool) {
    check(frame >= slot && frame + length <= slot + slotSize, "frame outside the slot")
    var offload = FrameOffload.none
    if coalesced {
        let h = VirtioNetHeader(loading: vnet)
        check(h.isGSO && h.needsCsum, "a coalesced frame is GSO with NEEDS_CSUM")
        guard case .layout(let l) = TransportLayout.parse(UnsafeRawBufferPointer(start: frame, count: length)) else {
            fatalError("fuzz-underlay invariant violated: a coalesced frame does not parse")
        }
        check(l.transportProtocol == IPProtocol.tcp && Int(h.gsoSize) < l.end - l.payloadOffset && l.end == length, "coalesced layout")
        offload = FrameOffload(isGSO: true, needsChecksum: true)
    }
    let plan = plans[t.switchIndex]
    clock += 1_000_000
    let table = tables[t.switchIndex]
    let context = DecisionContext(table: table, now: MonotonicInstant(nanoseconds: clock))
    let d = decide(frame: UnsafeRawBufferPointer(start: frame, count: length), offload: offload, inPort: t.port, plan: plan, context: context)
    if d.learn { table.learn(vlan: d.learningVLAN, mac: d.source, port: t.port, now: context.now, portLimit: plan.hot[t.port].macLimit) }
    if case .drop = d.verdict {} else { check(d.vlan == t.vlan, "decided VLAN \(d.vlan) for the VNI's \(t.vlan)") }
    list.prepare(portCount: plan.ports.count)
    _ = collectEgress(of: d, inPort: t.port, plan: plan, context: context, into: list)
    for i in 0..<list.count where list[i].kind == .output {
        let out = plan.ports[Int(list[i].port)]
        check(!out.isTunnel && !out.isUplink, "split horizon: \(plan.ports[t.port].name) → \(out.name)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let stranger = data[0] & 3 == 3
    let source = sources[Int(data[0] & 3)]
    let length = min(size - 2, slotSize)
    let step = data[1] == 0 ? max(length, 1) : 24 + 8 * Int(data[1])
    slot.copyMemory(from: data + 2, byteCount: length)
    var run = TCPCoalescer()
    var runTarget: TunnelDemux.Target? = nil
    func finishRun() {
        guard let t = runTarget else { return }
        let r = run.finish(header: vnet)
        runTarget = nil
        guard let f = r.frame else { fatalError("fuzz-underlay invariant violated: an open run without a frame") }
        deliver(f, r.length, t, coalesced: r.coalesced)
    }
    var offset = 0
    while offset < length {
        let n = min(step, length - offset)
        let d = slot + offset
        offset += n
        let vni: UInt32
        switch VXLAN.decapsulate(udpPayload: UnsafeRawBufferPointer(start: d, count: n)) {
        case .refused: continue
        case .frame(let f): vni = f.vni
        }
        guard case .success(let t) = demux.lookup(high: source.high, low: source.low, vni: vni) else { continue }
        check(!stranger, "a stranger reached a port")
        check(t.switchIndex < plans.count && t.port < plans[t.switchIndex].ports.count, "target out of range")
        guard let peer = plans[t.switchIndex].ports[t.port].tunnel else { fatalError("fuzz-underlay invariant violated: target is not a tunnel") }
        check(UInt32(t.vlan.rawValue) == vni - peer.vniBase && t.vlan.rawValue <= 4094, "VLAN \(t.vlan) for VNI \(vni)")
        (d + 4).copyMemory(from: d + 8, byteCount: 12)
        d.storeBytes(of: EtherType.vlan.bigEndian, toByteOffset: 16, as: UInt16.self)
        d.storeBytes(of: t.vlan.rawValue.bigEndian, toByteOffset: 18, as: UInt16.self)
        let frame = d + 4, frameLength = n - 4
        if run.isOpen, let rt = runTarget, rt == t, run.append(frame, length: frameLength) { continue }
        finishRun()
        if run.start(frame, length: frameLength, capacity: slot + slotSize - frame) {
            runTarget = t
        } else {
            deliver(frame, frameLength, t, coalesced: false)
        }
    }
    finishRun()
    return 0
}
