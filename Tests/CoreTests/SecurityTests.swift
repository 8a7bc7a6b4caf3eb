import Testing
import Model
import Core
import TestSupport

/// VMware's security trio, L2 transparency and MAC-flood protection, decided purely.
@Suite struct SecurityTests {
    static let a = mac(0xA), b = mac(0xB), p = mac(0xC)
    static func plan(security: PortSecurity = PortSecurity(), transparency: Bool = false) -> SwitchPlan {
        SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "a", portGroup: "lab", mode: .access(VLANID(10)), configuredMAC: a, security: security, l2Transparency: transparency),
            PortPlan(name: "b", portGroup: "lab", mode: .access(VLANID(10)), configuredMAC: b, security: security, l2Transparency: transparency),
            PortPlan(name: "promisc", portGroup: "tap", mode: .access(VLANID(10)), configuredMAC: p, security: PortSecurity(promiscuous: true)),
            PortPlan(name: "other", portGroup: "lab", mode: .access(VLANID(20)), configuredMAC: mac(0xD), security: PortSecurity(promiscuous: true)),
        ])
    }

    func outcome(_ frame: [UInt8], from port: Int, plan: SwitchPlan, table: MACTable = MACTable(limit: 64)) -> (Verdict, [String: DropReason?]) {
        var t = NoTrace()
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &t) }
        var out: [String: DropReason?] = [:]
        forEachEgress(of: d, inPort: port, plan: plan) { q, _, refused in out[plan.ports[q].name] = refused }
        return (d.verdict, out)
    }

    @Test func forgedTransmitDroppedUnlessAllowed() {
        let forged = FrameBuilder(dst: Self.b, src: mac(0x66)).bytes
        #expect(outcome(forged, from: 0, plan: Self.plan()).0 == .drop(.forgedTransmit))
        #expect(outcome(forged, from: 0, plan: Self.plan(security: PortSecurity(forgedTransmits: true))).0 == .flood)
        #expect(outcome(FrameBuilder(dst: Self.b, src: Self.a).bytes, from: 0, plan: Self.plan()).0 == .flood, "its own MAC is fine")
    }

    @Test func unicastToAnotherMACIsRefusedUnlessMACChangesAllowed() {
        // b's guest changed its MAC to 0x77: frames for 0x77 flood (unknown) but b refuses them.
        let toNew = FrameBuilder(dst: mac(0x77), src: Self.a).bytes
        let (_, refused) = outcome(toNew, from: 0, plan: Self.plan())
        #expect(refused["b"] == .some(.macChangeRejected))
        #expect(refused["promisc"] == .some(nil), "a promiscuous port takes everything in its VLAN")
        let (_, allowed) = outcome(toNew, from: 0, plan: Self.plan(security: PortSecurity(macChanges: true)))
        #expect(allowed["b"] == .some(nil))
        // Broadcast is never refused.
        #expect(outcome(FrameBuilder(dst: .broadcast, src: Self.a).bytes, from: 0, plan: Self.plan()).1["b"] == .some(nil))
    }

    @Test func promiscuousPortSeesKnownUnicastOfItsVLANOnly() {
        let table = MACTable(limit: 64)
        table.learn(vlan: VLANID(10), mac: Self.b, port: 1, now: .seconds(0))
        let (verdict, out) = outcome(FrameBuilder(dst: Self.b, src: Self.a).bytes, from: 0, plan: Self.plan(), table: table)
        #expect(verdict == .forward(1))
        #expect(Set(out.keys) == ["b", "promisc"], "the VLAN 20 promiscuous port sees nothing of VLAN 10")
    }

    @Test func reservedGroupFramesCrossOnlyWithTransparency() {
        let stp = FrameBuilder(dst: MACAddress("01:80:c2:00:00:00")!, src: Self.a).type(0x0026).bytes
        #expect(outcome(stp, from: 0, plan: Self.plan()).0 == .drop(.reservedDestination))
        let (verdict, out) = outcome(stp, from: 0, plan: Self.plan(transparency: true))
        #expect(verdict == .floodPortGroup)
        #expect(Set(out.keys) == ["b"], "only the same port group, in the same VLAN")
        let lldp = FrameBuilder(dst: MACAddress("01:80:c2:00:00:0e")!, src: Self.a).type(0x88CC).bytes
        #expect(outcome(lldp, from: 0, plan: Self.plan(transparency: true)).0 == .floodPortGroup)
    }

    @Test func perPortLimitEvictsOnlyTheFloodersOwnEntries() {
        let t = MACTable(limit: 8192)
        for i in 0..<10 { t.learn(vlan: VLANID(10), mac: mac(UInt64(i)), port: 0, now: .seconds(0), portLimit: 100) }
        for i in 0..<5000 { t.learn(vlan: VLANID(10), mac: mac(0x10000 + UInt64(i)), port: 1, now: .seconds(1), portLimit: 100) }
        #expect(t.count(port: 1) == 100 && t.evictions(port: 1) == 4900)
        #expect(t.count(port: 0) == 10 && t.evictions(port: 0) == 0)
        for i in 0..<10 { #expect(t.lookup(vlan: VLANID(10), mac: mac(UInt64(i))) == 0) }
    }
}
