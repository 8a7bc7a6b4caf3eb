import Testing
import Model
import Core
import TestSupport

@Suite struct DecideTests {
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "p0", portGroup: "g", mode: .access(VLANID(10))),
        PortPlan(name: "p1", portGroup: "g", mode: .access(VLANID(10))),
        PortPlan(name: "p2", portGroup: "g", mode: .access(VLANID(10))),
    ], mtu: 1500)

    func decision(_ frame: [UInt8], from port: Int, table: MACTable) -> Decision {
        var t = NoTrace()
        return frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &t) }
    }

    @Test func unknownUnicastFloodsThenKnownForwards() {
        let table = MACTable(limit: 16)
        let d = decision(FrameBuilder(dst: mac(2), src: mac(1)).bytes, from: 0, table: table)
        #expect(d.verdict == .flood && d.learn && d.vlan == VLANID(10))
        table.learn(vlan: VLANID(10), mac: mac(2), port: 1, now: .seconds(0))
        #expect(decision(FrameBuilder(dst: mac(2), src: mac(1)).bytes, from: 0, table: table).verdict == .forward(1))
    }

    /// `decisionIsReusable`: a guest's known unicast to another guest is, and whatever follows
    /// its first `reusableDecisionKeyBytes` bytes gets the same decision; floods, drops and a
    /// mirrored switch's frames are not.
    @Test func aKnownUnicastBetweenGuestsIsReusableAndOthersAreNot() {
        #expect(reusableDecisionKeyBytes == 24)
        let table = MACTable(limit: 16)
        table.learn(vlan: VLANID(10), mac: mac(2), port: 1, now: .seconds(0))
        let context = DecisionContext(table: table)
        let known = FrameBuilder(dst: mac(2), src: mac(1)).payload(100).bytes
        let d = decision(known, from: 0, table: table)
        #expect(d.verdict == .forward(1))
        #expect(decisionIsReusable(d, inPort: 0, plan: plan, context: context))
        for fill: UInt8 in [0x00, 0x45, 0xFF] {
            var other = known
            for i in reusableDecisionKeyBytes..<other.count { other[i] = fill }
            #expect(decision(other, from: 0, table: table) == d)
        }
        let flood = decision(FrameBuilder(dst: mac(9), src: mac(1)).bytes, from: 0, table: table)
        #expect(flood.verdict == .flood && !decisionIsReusable(flood, inPort: 0, plan: plan, context: context))
        let hairpin = decision(FrameBuilder(dst: mac(2), src: mac(1)).bytes, from: 1, table: table)
        #expect(hairpin.verdict == .drop(.hairpin) && !decisionIsReusable(hairpin, inPort: 1, plan: plan, context: context))
        let mirrored = SwitchPlan(name: "sw0", ports: plan.ports, mtu: 1500,
                                  mirrors: [MirrorPlan(name: "m0", sources: [0], ingress: true, egress: false, destinations: [2])])
        var t = NoTrace()
        let m = known.withUnsafeBytes { decide(frame: $0, inPort: 0, plan: mirrored, table: table, trace: &t) }
        #expect(m.verdict == .forward(1) && !decisionIsReusable(m, inPort: 0, plan: mirrored, context: context))
    }

    @Test func hairpinDropped() {
        let table = MACTable(limit: 16)
        table.learn(vlan: VLANID(10), mac: mac(2), port: 0, now: .seconds(0))
        #expect(decision(FrameBuilder(dst: mac(2), src: mac(1)).bytes, from: 0, table: table).verdict == .drop(.hairpin))
    }

    @Test func malformedFramesDroppedByReason() {
        let table = MACTable(limit: 16)
        #expect(decision([1, 2, 3], from: 0, table: table).verdict == .drop(.runt))
        #expect(decision([], from: 0, table: table).verdict == .drop(.runt))
        #expect(decision(FrameBuilder(dst: mac(2), src: mac(1)).payload(1501).bytes, from: 0, table: table).verdict == .drop(.oversize))
        #expect(decision(FrameBuilder(dst: mac(2), src: mac(1)).payload(1500).bytes, from: 0, table: table).verdict == .flood)
        let multicastSource = decision(FrameBuilder(dst: mac(2), src: MACAddress("01:00:5e:00:00:01")!).bytes, from: 0, table: table)
        #expect(multicastSource.verdict == .drop(.invalidSourceMAC) && !multicastSource.learn)
        #expect(decision(FrameBuilder(dst: mac(2), src: .zero).bytes, from: 0, table: table).verdict == .drop(.invalidSourceMAC))
        #expect(decision(FrameBuilder(dst: MACAddress("01:80:c2:00:00:00")!, src: mac(1)).bytes, from: 0, table: table).verdict == .drop(.reservedDestination))
        #expect(table.count == 0, "decide never learns by itself")
    }

    @Test func traceRecordsStepsAndChangesNothing() {
        let table = MACTable(limit: 16)
        table.learn(vlan: VLANID(10), mac: mac(2), port: 1, now: .seconds(0))
        var trace = RecordingTrace()
        let frame = FrameBuilder(dst: mac(2), src: mac(1)).bytes
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: 0, plan: plan, table: table, trace: &trace) }
        #expect(d.verdict == .forward(1))
        #expect(trace.steps.contains(.learnRequested(vlan: VLANID(10), mac: mac(1), port: 0, currentPort: nil)))
        #expect(trace.steps.contains(.lookedUp(vlan: VLANID(10), mac: mac(2), port: 1)))
        #expect(trace.steps.contains(.forwarding(port: 1)))
        #expect(trace.steps.last == .learnRequested(vlan: VLANID(10), mac: mac(1), port: 0, currentPort: nil), "learning comes last: only a frame that is not dropped is learned")
        #expect(table.lookup(vlan: VLANID(10), mac: mac(1)) == nil && table.count == 1)
    }

    @Test func countersCountByReason() {
        let c = PortCounters(portCount: 2)
        c.received(port: 1, bytes: 60)
        c.dropped(port: 1, reason: .taggedOnAccessPort)
        c.dropped(port: 1, reason: .taggedOnAccessPort)
        c.sent(port: 0, bytes: 64)
        #expect(c.snapshot(port: 1) == PortCounters.Snapshot(rxFrames: 1, rxBytes: 60, txFrames: 0, txBytes: 0, drops: [.taggedOnAccessPort: 2]))
        #expect(c.snapshot(port: 0).txBytes == 64 && c.snapshot(port: 0).totalDrops == 0)
    }
}
