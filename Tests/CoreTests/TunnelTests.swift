import Testing
import Model
import Core
import TestSupport

/// Tunnel ports in the pure decision: VLAN-based service through the tunnel's
/// tag, head-end replication, split horizon, learning behind a tunnel, the underlay size
/// limit, and the receive side's demultiplexer.
@Suite struct TunnelTests {
    static func tunnel(_ name: String, _ address: String, largest: Int = 1464, vlans: [UInt16] = [0, 10]) -> PortPlan {
        PortPlan(name: name, portGroup: TunnelPeer.portGroup, mode: .trunk(allowed: VLANSet(vlans.map { VLANID($0) }), native: nil),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), usesUplinks: false,
                 tunnel: TunnelPeer(remote: IPAddress(address)!, host: name, vniBase: 5000, largestFrame: largest))
    }

    /// 0: guest VLAN 10, 1: guest none, 2: uplink (trunk 10, native none), 3: tunnel h2, 4: tunnel h3.
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "b.eth0", portGroup: "plain", mode: .access(.untagged)),
        PortPlan(name: "eth9", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([VLANID(10)]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 0, usesUplinks: false,
                 acceptsOffloads: true),
        tunnel("h2", "10.0.0.2"),
        tunnel("h3", "10.0.0.3", largest: 1000),
    ], mtu: 1500)

    func decision(_ frame: [UInt8], from port: Int, table: MACTable) -> Decision {
        var t = NoTrace()
        return frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &t) }
    }

    func outputs(_ d: Decision, from port: Int) -> [Int: EgressRewrite] {
        var out: [Int: EgressRewrite] = [:]
        forEachEgress(of: d, inPort: port, plan: plan) { p, rw, refusal in if refusal == nil { out[p] = rw } }
        return out
    }

    @Test func floodsReachEveryTunnelTaggedWithTheVNIsVLAN() {
        let table = MACTable(limit: 64)
        let d = decision(FrameBuilder(dst: .broadcast, src: mac(1)).bytes, from: 0, table: table)
        #expect(d.verdict == .flood && d.vlan == VLANID(10))
        let out = outputs(d, from: 0)
        #expect(out[3]?.push?.vid == 10 && out[4]?.push?.vid == 10, "head-end replication to both tunnels, VLAN 10 → VNI 5010")
        // The untagged domain travels as a priority tag (VID 0 = VNI BASE), even though it is
        // untagged everywhere else.
        let n = decision(FrameBuilder(dst: .broadcast, src: mac(2)).bytes, from: 1, table: table)
        #expect(n.vlan == .untagged)
        let outN = outputs(n, from: 1)
        #expect(outN[3]?.push == VLANTag(tpid: EtherType.vlan, tci: 0) && outN[4]?.push?.vid == 0)
        #expect(outN[0] == nil, "VLAN 10's guest gets nothing")
    }

    @Test func fromATunnelNeverBackIntoATunnelNorToAnUplink() {
        let table = MACTable(limit: 64)
        let frame = FrameBuilder(dst: .broadcast, src: mac(7)).tagged(10).bytes
        let d = decision(frame, from: 3, table: table)
        #expect(d.verdict == .flood && d.vlan == VLANID(10) && d.learn, "learns (VLAN 10, source) on the tunnel")
        let out = outputs(d, from: 3)
        #expect(Set(out.keys) == [0], "only the local guest: not h3 (split horizon), not the uplink")
        #expect(out[0] == EgressRewrite(strip: 4, push: nil))
        // Known unicast behind another tunnel, or an uplink: split horizon.
        table.learn(vlan: VLANID(10), mac: mac(8), port: 4, now: .seconds(0))
        table.learn(vlan: VLANID(10), mac: mac(9), port: 2, now: .seconds(0))
        #expect(decision(FrameBuilder(dst: mac(8), src: mac(7)).tagged(10).bytes, from: 3, table: table).verdict == .drop(.splitHorizon))
        #expect(decision(FrameBuilder(dst: mac(9), src: mac(7)).tagged(10).bytes, from: 3, table: table).verdict == .drop(.splitHorizon))
        // From the uplink, a MAC behind a tunnel is out of reach too, and floods skip tunnels.
        table.learn(vlan: VLANID(10), mac: mac(7), port: 3, now: .seconds(0))
        #expect(decision(FrameBuilder(dst: mac(7), src: mac(9)).tagged(10).bytes, from: 2, table: table).verdict == .drop(.splitHorizon))
        let up = decision(FrameBuilder(dst: .broadcast, src: mac(9)).tagged(10).bytes, from: 2, table: table)
        #expect(Set(outputs(up, from: 2).keys) == [0])
    }

    @Test func knownUnicastGoesToTheTunnelTheMACWasLearnedBehindAndMovesAtOnce() {
        let table = MACTable(limit: 64)
        table.learn(vlan: VLANID(10), mac: mac(5), port: 3, now: .seconds(0))
        #expect(decision(FrameBuilder(dst: mac(5), src: mac(1)).bytes, from: 0, table: table).verdict == .forward(3))
        // The guest reappears behind h3: its first frame moves the entry.
        let d = decision(FrameBuilder(dst: .broadcast, src: mac(5)).tagged(10).type(EtherType.rarp).bytes, from: 4, table: table)
        #expect(d.learn)
        table.learn(vlan: d.learningVLAN, mac: d.source, port: 4, now: .seconds(1))
        #expect(decision(FrameBuilder(dst: mac(5), src: mac(1)).bytes, from: 0, table: table).verdict == .forward(4))
    }

    @Test func vniBaseIsTheUntaggedDomainAndAnInnerTagCannotHop() {
        let table = MACTable(limit: 64)
        #expect(decision(FrameBuilder(dst: .broadcast, src: mac(7)).tagged(0).bytes, from: 3, table: table).vlan == .untagged)
        // VNI BASE carrying a frame tagged 10 inside: still the untagged domain (QinQ inner tag).
        let hop = decision(FrameBuilder(dst: .broadcast, src: mac(7)).tagged(0).tagged(10).bytes, from: 3, table: table)
        #expect(hop.vlan == .untagged && hop.ingressTagLength == 4)
        #expect(Set(outputs(hop, from: 3).keys) == [1], "reaches the none guest only")
        // A VLAN the tunnel does not carry (a remote VTEP's `vlans:`): vlan-not-allowed on it.
        #expect(decision(FrameBuilder(dst: .broadcast, src: mac(7)).tagged(20).bytes, from: 3, table: table).verdict == .drop(.vlanNotAllowed))
        // A plain trunk without native still refuses priority tags.
        let header = FrameBuilder(dst: .broadcast, src: mac(7)).tagged(0).bytes.withUnsafeBytes { FrameHeader.parse($0) }!
        #expect(ingressClass(of: header, on: .trunk(allowed: VLANSet([VLANID(10)]), native: nil)) == .drop(.untaggedOnTrunk))
    }

    @Test func framesTooLargeForTheUnderlayAreRefusedNeverFragmented() {
        let table = MACTable(limit: 64)
        // h3 carries inner frames up to 1000 bytes; on the wire the tag becomes the VNI.
        let small = decision(FrameBuilder(dst: .broadcast, src: mac(1)).payload(1000 - 14).bytes, from: 0, table: table)
        var refused: [Int: DropReason] = [:]
        forEachEgress(of: small, inPort: 0, plan: plan) { p, _, r in if let r { refused[p] = r } }
        #expect(refused.isEmpty)
        let big = decision(FrameBuilder(dst: .broadcast, src: mac(1)).payload(1000 - 13).bytes, from: 0, table: table)
        forEachEgress(of: big, inPort: 0, plan: plan) { p, _, r in if let r { refused[p] = r } }
        #expect(refused == [4: .underlayMTUExceeded], "h2 (1464) still takes it")
    }

    @Test func tunnelsAreMulticastRouterPorts() {
        #expect(plan.multicastRouterPorts.contains(3) && plan.multicastRouterPorts.contains(4))
    }

    @Test func demultiplexesBySourceAndVNI() throws {
        let other = SwitchPlan(name: "sw1", ports: [
            PortPlan(name: "c.eth0", portGroup: "v", mode: .access(VLANID(5))),
            PortPlan(name: "h2", portGroup: TunnelPeer.portGroup, mode: .trunk(allowed: VLANSet([VLANID(5)]), native: nil),
                     usesUplinks: false, tunnel: TunnelPeer(remote: IPAddress("10.0.0.2")!, host: "h2", vniBase: 10000, largestFrame: 1464)),
        ])
        let v6 = SwitchPlan(name: "sw2", ports: [
            PortPlan(name: "h6", portGroup: TunnelPeer.portGroup, mode: .trunk(allowed: VLANSet([VLANID(1)]), native: nil),
                     usesUplinks: false, tunnel: TunnelPeer(remote: IPAddress("fd00::6")!, host: "h6", vniBase: 20000, largestFrame: 1444)),
        ])
        let demux = TunnelDemux(plans: [plan, other, v6], udpPort: 4789)
        func look(_ a: String, _ vni: UInt32) -> Result<TunnelDemux.Target, TunnelDemux.MissError> {
            let k = TunnelDemux.key(IPAddress(a)!)
            return demux.lookup(high: k.high, low: k.low, vni: vni)
        }
        #expect(try look("10.0.0.2", 5010).get() == TunnelDemux.Target(switchIndex: 0, port: 3, vlan: VLANID(10)))
        #expect(try look("10.0.0.2", 5000).get() == TunnelDemux.Target(switchIndex: 0, port: 3, vlan: .untagged))
        #expect(try look("10.0.0.2", 10005).get() == TunnelDemux.Target(switchIndex: 1, port: 1, vlan: VLANID(5)))
        #expect(try look("10.0.0.3", 5020).get() == TunnelDemux.Target(switchIndex: 0, port: 4, vlan: VLANID(20)))
        #expect(try look("fd00::6", 20001).get() == TunnelDemux.Target(switchIndex: 2, port: 0, vlan: VLANID(1)))
        #expect(look("10.0.0.9", 5010) == .failure(.init(.unknownVTEP)))
        #expect(look("10.0.0.3", 10005) == .failure(.init(.unknownVNI)), "h3 shares only sw0 with us")
        #expect(look("10.0.0.2", 5000 + 4095) == .failure(.init(.unknownVNI)), "BASE + 4095 is no VLAN")
        #expect(look("10.0.0.2", 4999) == .failure(.init(.unknownVNI)))
        #expect(TunnelDemux(plans: [plan], udpPort: 8472).isEmpty)
    }
}
