import Testing
import Model
import Core
import TestSupport

/// LLDP from the physical network is the switch's own: `decide` consumes it on
/// every uplink, active, standby or down, whatever the uplink's VLAN mode, before the
/// reserved-destination drop and team admission; from a guest it stays a reserved-group
/// frame (dropped, or flooded within an `l2-transparency` group).
@Suite struct LLDPDecideTests {
    static let v10 = VLANID(10)
    static let lldpGroups: [MACAddress] = [MACAddress(rawValue: 0x0180_C200_000E), MACAddress(rawValue: 0x0180_C200_0003),
                                           MACAddress(rawValue: 0x0180_C200_0000)]
    // g0 (VLAN 10), g1 (VLAN 10, l2-transparency), u0, u1: team members that carry VLAN 10
    // tagged only (no native VLAN: an untagged frame would be `untagged-on-trunk`).
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "g0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xA0)),
        PortPlan(name: "g1", portGroup: "lab", mode: .access(v10), configuredMAC: mac(0xA1), l2Transparency: true),
        PortPlan(name: "u0", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: nil),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 0, usesUplinks: false),
        PortPlan(name: "u1", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: nil),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 1, usesUplinks: false),
    ], team: TeamConfig(memberCount: 2, policy: .failoverOrder, active: [0], standby: [1]))

    func team(_ health: [MemberHealth]) -> TeamContext {
        TeamContext(state: TeamState.compute(config: plan.team!, health: health, carriedPorts: plan.carriedPorts, portCount: plan.ports.count),
                    locks: AnnouncementLock(), now: .seconds(100))
    }

    func decision(_ frame: [UInt8], from port: Int, health: [MemberHealth] = [.up, .up], table: MACTable = MACTable(limit: 64)) -> (Decision, [TraceStep], [Int]) {
        var rec = RecordingTrace()
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &rec, team: team(health)) }
        var out: [Int] = []
        forEachEgress(of: d, inPort: port, plan: plan) { p, _, refused in if refused == nil { out.append(p) } }
        return (d, rec.steps, out)
    }

    @Test func lldpFromEveryUplinkIsConsumedWhateverItsRoleOrTag() {
        let table = MACTable(limit: 64)
        for dst in Self.lldpGroups {
            for frame in [FrameBuilder(dst: dst, src: mac(0xEE)).type(LLDPFrames.etherType).payload(40).bytes,
                          FrameBuilder(dst: dst, src: mac(0xEE)).tagged(10).type(LLDPFrames.etherType).payload(40).bytes,
                          FrameBuilder(dst: dst, src: mac(0xEE)).tagged(99).type(LLDPFrames.etherType).payload(40).bytes] {
                // u0 active, u1 standby (failover order); then u0 down.
                for (port, health) in [(2, [MemberHealth.up, .up]), (3, [.up, .up]), (2, [.down(.noCarrier), .up])] {
                    let (d, steps, out) = decision(frame, from: port, health: health, table: table)
                    #expect(d.verdict == .local(.lldp), "\(dst) from port \(port): \(d.verdict)")
                    #expect(out.isEmpty && !d.learn && d.length == frame.count)
                    #expect(steps.contains { if case .consumed = $0 { return true } else { return false } })
                    #expect(!steps.contains { if case .classified = $0 { return true } else { return false } }, "consumed before VLAN classification")
                    #expect(!steps.contains { if case .teamAdmitted = $0 { return true } else { return false } }, "and before team admission")
                }
            }
        }
        #expect(table.count == 0, "LLDP sources are not learned")
    }

    @Test func lldpFromAGuestKeepsTheReservedGroupRules() {
        let lldp = FrameBuilder(dst: Self.lldpGroups[0], src: mac(0xA0)).type(LLDPFrames.etherType).payload(40).bytes
        #expect(decision(lldp, from: 0).0.verdict == .drop(.reservedDestination))
        let transparent = FrameBuilder(dst: Self.lldpGroups[0], src: mac(0xA1)).type(LLDPFrames.etherType).payload(40).bytes
        #expect(decision(transparent, from: 1).0.verdict == .floodPortGroup)
    }

    @Test func otherReservedFramesFromUplinksAreStillDropped() {
        // STP to 01:80:c2:00:00:00 (not LLDP's EtherType), and 0x88cc to a non-LLDP address.
        let stp = FrameBuilder(dst: Self.lldpGroups[2], src: mac(0xEE)).tagged(10).type(0x0026).payload(40).bytes
        #expect(decision(stp, from: 2).0.verdict == .drop(.reservedDestination))
        let notLLDP = FrameBuilder(dst: MACAddress(rawValue: 0x0180_C200_0002), src: mac(0xEE)).tagged(10).type(LLDPFrames.etherType).payload(40).bytes
        #expect(decision(notLLDP, from: 2).0.verdict == .drop(.reservedDestination))
        let multicast = FrameBuilder(dst: MACAddress(rawValue: 0x0100_5E00_0001), src: mac(0xEE)).tagged(10).type(LLDPFrames.etherType).payload(40).bytes
        #expect(decision(multicast, from: 3).0.verdict == .drop(.teamInactiveUplink), "a standby member's ordinary multicast")
    }
}
