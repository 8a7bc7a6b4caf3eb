import Testing
import Model
import Core
import TestSupport

/// The VLAN matrix: (ingress mode, ingress tags, egress mode) → verdict and egress tag.
///
/// Ports of the test switch:
/// ```
///  0 access 10     1 access 10     2 access 20     3 trunk [10,20] (no native)
///  4 trunk [10,20,30] native 10    5 none          6 trunk [20]    7 none
/// ```
/// The MAC table is empty, so every frame floods to the members of its VLAN: the set of
/// (port, bytes) delivered is the whole behaviour.
struct VLANMatrix {
    static let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a10", portGroup: "g", mode: .access(VLANID(10))),
        PortPlan(name: "b10", portGroup: "g", mode: .access(VLANID(10))),
        PortPlan(name: "a20", portGroup: "g", mode: .access(VLANID(20))),
        PortPlan(name: "t1020", portGroup: "g", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil)),
        PortPlan(name: "tn10", portGroup: "g", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20), VLANID(30)]), native: VLANID(10))),
        PortPlan(name: "n1", portGroup: "g", mode: .access(.untagged)),
        PortPlan(name: "t20", portGroup: "g", mode: .trunk(allowed: VLANSet([VLANID(20)]), native: nil)),
        PortPlan(name: "n2", portGroup: "g", mode: .access(.untagged)),
    ])

    /// What leaves each port, as (port name, outer VID or nil when untagged, inner VID or nil).
    struct Out: Hashable, CustomStringConvertible {
        var port: String; var outer: UInt16?; var inner: UInt16?
        var description: String { "\(port):\(outer.map(String.init) ?? "-")/\(inner.map(String.init) ?? "-")" }
    }

    static func run(_ frame: [UInt8], from port: String) -> (Verdict, Set<Out>) {
        let table = MACTable(limit: 64)
        let inPort = plan.portIndex(named: port)!
        var trace = NoTrace()
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: inPort, plan: plan, table: table, trace: &trace) }
        var outs = Set<Out>()
        forEachEgress(of: d, inPort: inPort, plan: plan) { p, rw, _ in
            let bytes = rewritten(frame, rw)
            let h = bytes.withUnsafeBytes { FrameHeader.parse($0) }!
            outs.insert(Out(port: plan.ports[p].name, outer: h.outerTag?.vid, inner: h.innerTag?.vid))
        }
        return (d.verdict, outs)
    }
}

struct MatrixCase: CustomTestStringConvertible, Sendable {
    var name: String
    var from: String
    var tags: [(tpid: UInt16, vid: UInt16)]
    var verdict: Verdict
    var outs: [String]   // "port:outer/inner"
    var testDescription: String { name }
}

let matrix: [MatrixCase] = [
    MatrixCase(name: "access untagged floods to its VLAN only", from: "a10", tags: [], verdict: .flood,
               outs: ["b10:-/-", "t1020:10/-", "tn10:-/-"]),
    MatrixCase(name: "access 20 reaches trunks tagged 20", from: "a20", tags: [], verdict: .flood,
               outs: ["t1020:20/-", "tn10:20/-", "t20:20/-"]),
    MatrixCase(name: "tag on access port dropped", from: "a10", tags: [(0x8100, 10)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "single-tag hop from access dropped", from: "a10", tags: [(0x8100, 20)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "double-tag hop from access dropped", from: "a10", tags: [(0x8100, 10), (0x8100, 20)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "S-tag hop from access dropped", from: "a10", tags: [(0x88A8, 10), (0x8100, 20)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "priority tag on access dropped", from: "a10", tags: [(0x8100, 0)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "tag on none port dropped", from: "n1", tags: [(0x8100, 20)], verdict: .drop(.taggedOnAccessPort), outs: []),
    MatrixCase(name: "none domain stays untagged and separate", from: "n1", tags: [], verdict: .flood, outs: ["n2:-/-"]),
    MatrixCase(name: "trunk tag 20 to access untagged, trunks tagged", from: "t1020", tags: [(0x8100, 20)], verdict: .flood,
               outs: ["a20:-/-", "tn10:20/-", "t20:20/-"]),
    MatrixCase(name: "trunk VLAN outside list dropped", from: "t1020", tags: [(0x8100, 30)], verdict: .drop(.vlanNotAllowed), outs: []),
    MatrixCase(name: "trunk VID 4095 dropped", from: "tn10", tags: [(0x8100, 4095)], verdict: .drop(.vlanNotAllowed), outs: []),
    MatrixCase(name: "untagged on trunk without native dropped", from: "t1020", tags: [], verdict: .drop(.untaggedOnTrunk), outs: []),
    MatrixCase(name: "priority tag on trunk without native dropped", from: "t1020", tags: [(0x8100, 0)], verdict: .drop(.untaggedOnTrunk), outs: []),
    MatrixCase(name: "S-tag on trunk dropped", from: "t1020", tags: [(0x88A8, 10)], verdict: .drop(.serviceTagNotSupported), outs: []),
    MatrixCase(name: "native VLAN in untagged", from: "tn10", tags: [], verdict: .flood,
               outs: ["a10:-/-", "b10:-/-", "t1020:10/-"]),
    MatrixCase(name: "native VLAN tagged in also accepted", from: "tn10", tags: [(0x8100, 10)], verdict: .flood,
               outs: ["a10:-/-", "b10:-/-", "t1020:10/-"]),
    MatrixCase(name: "priority tag on trunk goes to native", from: "tn10", tags: [(0x8100, 0)], verdict: .flood,
               outs: ["a10:-/-", "b10:-/-", "t1020:10/-"]),
    MatrixCase(name: "native VLAN out untagged", from: "a10", tags: [], verdict: .flood,
               outs: ["b10:-/-", "t1020:10/-", "tn10:-/-"]),
    MatrixCase(name: "VLAN with no other member floods nowhere", from: "tn10", tags: [(0x8100, 30)], verdict: .flood, outs: []),
    MatrixCase(name: "trunk double tag keeps inner tag", from: "t1020", tags: [(0x8100, 20), (0x8100, 99)], verdict: .flood,
               outs: ["a20:99/-", "tn10:20/99", "t20:20/99"]),
]

@Suite struct VLANMatrixTests {
    @Test(arguments: matrix)
    func matrixCase(_ c: MatrixCase) {
        var b = FrameBuilder(dst: .broadcast, src: mac(0x77))
        for t in c.tags { b = b.tagged(t.vid, tpid: t.tpid) }
        let (verdict, outs) = VLANMatrix.run(b.bytes, from: c.from)
        #expect(verdict == c.verdict)
        #expect(Set(outs.map(\.description)) == Set(c.outs))
    }

    @Test func pcpSurvivesRetagging() {
        let frame = FrameBuilder(dst: .broadcast, src: mac(0x77)).tagged(0, pcp: 5).bytes
        let plan = VLANMatrix.plan
        let table = MACTable(limit: 8)
        var t = NoTrace()
        let inPort = plan.portIndex(named: "tn10")!
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: inPort, plan: plan, table: table, trace: &t) }
        var pcps: [String: UInt16] = [:]
        forEachEgress(of: d, inPort: inPort, plan: plan) { p, rw, _ in
            if let tag = rw.push { pcps[plan.ports[p].name] = tag.pcp }
        }
        #expect(pcps == ["t1020": 5])
    }

    @Test func floodSetsArePrecomputed() {
        let plan = VLANMatrix.plan
        #expect(Array(plan.floodSet(VLANID(10))) == [0, 1, 3, 4])
        #expect(Array(plan.floodSet(VLANID(20))) == [2, 3, 4, 6])
        #expect(Array(plan.floodSet(.untagged)) == [5, 7])
        #expect(plan.floodSet(VLANID(99)).isEmpty)
        #expect(plan.usedVLANs == [.untagged, VLANID(10), VLANID(20), VLANID(30)])
    }
}

@Suite struct MirrorPlanTests {
    @Test func destinationsLeaveFloodSetsAndCannotSend() {
        let plan = SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "a", portGroup: "web", mode: .access(VLANID(10))),
            PortPlan(name: "b", portGroup: "web", mode: .access(VLANID(10))),
            PortPlan(name: "m", portGroup: "mon", mode: .access(VLANID(10))),
        ], mirrors: [MirrorPlan(name: "s", sources: [0], ingress: true, egress: false, destinations: [2])])
        #expect(Array(plan.floodSet(VLANID(10))) == [0, 1])
        #expect(plan.mirrorOnIngress == [[2], [], []] && plan.mirrorOnEgress == [[], [], []])
        var t = NoTrace()
        let frame = FrameBuilder(dst: .broadcast, src: mac(3)).bytes
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: 2, plan: plan, table: MACTable(limit: 8), trace: &t) }
        #expect(d.verdict == .drop(.mirrorDestinationPort) && !d.learn)
    }
}

/// 802.1Q DEI (drop eligible indicator) travels with the priority on every re-tag: a tagged
/// frame, a priority-tagged frame, and towards an uplink or a mirror the same way.
@Suite struct DropEligibilityTests {
    static func egressTags(_ frame: [UInt8], from port: String) -> [String: VLANTag?] {
        let plan = VLANMatrix.plan
        let inPort = plan.portIndex(named: port)!
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: inPort, plan: plan, table: MACTable(limit: 64)) }
        var out: [String: VLANTag?] = [:]
        forEachEgress(of: d, inPort: inPort, plan: plan) { p, rw, _ in
            out[plan.ports[p].name] = rewritten(frame, rw).withUnsafeBytes { FrameHeader.parse($0) }?.outerTag
        }
        return out
    }

    @Test func deiAndPCPAreRelayedFromTrunkToTrunk() {
        // VLAN 20, PCP 3, DEI 1 from one trunk leaves the other trunks as PCP 3, DEI 1.
        let f = FrameBuilder(dst: .broadcast, src: mac(1)).tagged(20, pcp: 3, dei: true).bytes
        let out = Self.egressTags(f, from: "t1020")
        for port in ["tn10", "t20"] {
            let tag = out[port] ?? nil
            #expect(tag?.vid == 20 && tag?.pcp == 3 && tag?.dei == true, "\(port): \(String(describing: tag))")
        }
        #expect((out["a20"] ?? nil) == nil, "the access port gets it untagged")
    }

    @Test func aPriorityTagKeepsItsDEI() {
        // A priority tag (VID 0) with DEI on the trunk with native 10: VLAN 10, re-tagged
        // towards the other trunk with the same PCP and DEI.
        let f = FrameBuilder(dst: .broadcast, src: mac(1)).tagged(0, pcp: 5, dei: true).bytes
        let out = Self.egressTags(f, from: "tn10")
        let tag = out["t1020"] ?? nil
        #expect(tag?.vid == 10 && tag?.pcp == 5 && tag?.dei == true, "\(String(describing: tag))")
    }

    @Test func untaggedFramesGetNoDEI() {
        let f = FrameBuilder(dst: .broadcast, src: mac(1)).bytes
        let tag = Self.egressTags(f, from: "a10")["t1020"] ?? nil
        #expect(tag?.vid == 10 && tag?.pcp == 0 && tag?.dei == false)
    }
}
