import Testing
import Model
import Core
import TestSupport

/// The decision and its egress, with the effects applied as the datapath applies them
/// (learning, storm and shaping tokens, snooping), over a manual clock.
final class Switch {
    let plan: SwitchPlan
    let table: MACTable
    let shaper: TrafficShaper
    let groups: MulticastGroupTable?
    var now = MonotonicInstant.seconds(1)
    let list = EgressList()

    init(_ plan: SwitchPlan, querier: MulticastQuerier? = nil) {
        self.plan = plan
        table = MACTable(limit: 1024, portCount: plan.ports.count)
        shaper = TrafficShaper(plan: plan)
        groups = plan.multicast.map { MulticastGroupTable(snooping: $0, portCount: plan.ports.count, querier: querier) }
        list.prepare(portCount: plan.ports.count)
    }

    var context: DecisionContext {
        DecisionContext(table: table, now: now, shaper: shaper.isActive ? shaper : nil, multicast: groups)
    }

    struct Result {
        var decision: Decision
        /// Outputs: port → tag (nil: untagged).
        var outputs: [Int: UInt16?]
        var refused: [Int: DropReason]
        var ingressDrop: DropReason?
        var steps: [TraceStep]
        var verdict: Verdict { decision.verdict }
        var ports: Set<Int> { Set(outputs.keys) }
    }

    /// Decides `frame` from `port`, applies its effects, returns what it did.
    @discardableResult
    func send(_ frame: [UInt8], from port: Int, apply: Bool = true) -> Result {
        var trace = RecordingTrace()
        let ctx = context
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, context: ctx, trace: &trace) }
        if apply {
            if d.takesShapingTokens { ctx.shaper?.take(port: port, .ingress, bytes: frame.count, now: now) }
            if d.snoops { frame.withUnsafeBytes { _ = ctx.multicast?.snoop(frame: $0, verifyChecksums: true, port: port, vlan: d.learningVLAN, now: now) } }
            if d.learn { table.learn(vlan: d.learningVLAN, mac: d.source, port: port, now: now) }
        }
        let drop = collectEgress(of: d, inPort: port, plan: plan, context: ctx, into: list)
        var outputs: [Int: UInt16?] = [:], refused: [Int: DropReason] = [:]
        for i in 0..<list.count {
            let item = list[i]
            switch item.kind {
            case .output:
                outputs.updateValue(item.rewrite.push.map { $0.vid }, forKey: Int(item.port))
                if apply, ctx.shaper?.shapes(port: Int(item.port), .egress) == true {
                    ctx.shaper?.take(port: Int(item.port), .egress, bytes: egressLength(frame.count, item.rewrite), now: now)
                }
            case .refused: refused[Int(item.port)] = item.refusal
            default: break
            }
        }
        return Result(decision: d, outputs: outputs, refused: refused, ingressDrop: drop, steps: trace.steps)
    }

    func advance(milliseconds: Int64) { now = now + .milliseconds(milliseconds) }
}

@Suite struct ShapingDecisionTests {
    /// Port 0 shaped on ingress (8 Mbit/s = 1 MB/s, peak 16 Mbit/s, burst 100 000 bytes),
    /// port 2 shaped on egress (8 Mbit/s, burst 4000); port 1 unshaped.
    static func plan() -> SwitchPlan {
        SwitchPlan(name: "sw", ports: [
            PortPlan(name: "a", portGroup: "g", mode: .access(VLANID(10)),
                     shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 8_000_000, peakBitsPerSecond: 16_000_000, burstBytes: 100_000))),
            PortPlan(name: "b", portGroup: "g", mode: .access(VLANID(10))),
            PortPlan(name: "c", portGroup: "g", mode: .access(VLANID(10)),
                     shaping: ShapingPolicy(egress: ShapingLimit(averageBitsPerSecond: 8_000_000, burstBytes: 4000))),
        ])
    }

    @Test func burstPassesAtPeakThenTheAverageHolds() {
        let sw = Switch(Self.plan())
        let frame = FrameBuilder(dst: mac(2), src: mac(1)).payload(986).bytes   // 1000 bytes
        #expect(frame.count == 1000)
        sw.table.learn(vlan: VLANID(10), mac: mac(2), port: 1, now: sw.now)
        // At one instant the peak bucket (one largest frame, 65 593 bytes) limits the burst.
        var admitted = 0
        for _ in 0..<200 where sw.send(frame, from: 0).verdict == .forward(1) { admitted += 1 }
        #expect(admitted == 65, "a burst at one instant: the peak bucket holds 65 frames of 1000 bytes")
        let refused = sw.send(frame, from: 0)
        #expect(refused.verdict == .drop(.shapingIngress))
        #expect(refused.steps.contains { if case .shaping(0, .ingress, false, 1000, _, _) = $0 { return true }; return false })
        // Over 10 s, offering 10 MB/s, the port gets burst + 1 MB/s × 10 s, within a frame.
        var bytes = 0
        for _ in 0..<100_000 {
            sw.now = sw.now + .microseconds(100)
            if sw.send(frame, from: 0).verdict == .forward(1) { bytes += 1000 }
        }
        let expected = 100_000 - 65_000 + 10_000_000
        #expect(abs(bytes - expected) <= 2000, "long-term: \(bytes) bytes passed, \(expected) expected")
        // Port b is not shaped.
        for _ in 0..<1000 { #expect(sw.send(FrameBuilder(dst: mac(1), src: mac(2)).payload(986).bytes, from: 1).verdict == .forward(0)) }
    }

    @Test func peakBoundsTheBurstRate() {
        // 1 MB/s average, 2 MB/s peak, 1 MB burst: the peak bucket holds 1 MB × 1/2 = 500 kB.
        // Offered 10 MB/s for 200 ms from full buckets: the peak binds (500 kB + 400 kB),
        // not the average (1 MB + 200 kB).
        let limit = ShapingLimit(averageBitsPerSecond: 8_000_000, peakBitsPerSecond: 16_000_000, burstBytes: 1_000_000)
        #expect(limit.peakBucketBytes == 500_000)
        #expect(ShapingLimit(averageBitsPerSecond: 8_000_000, burstBytes: 1_000_000).peakBucketBytes == 1_000_000, "peak = average: one bucket")
        #expect(ShapingLimit(averageBitsPerSecond: 1_000_000, peakBitsPerSecond: 1_000_000_000, burstBytes: 1_000_000).peakBucketBytes
                == ShapingLimit.largestFrame, "never below one largest frame")
        let sw = Switch(SwitchPlan(name: "sw", ports: [
            PortPlan(name: "a", portGroup: "g", mode: .access(VLANID(10)), shaping: ShapingPolicy(ingress: limit)),
            PortPlan(name: "b", portGroup: "g", mode: .access(VLANID(10))),
        ]))
        let frame = FrameBuilder(dst: .broadcast, src: mac(1)).payload(986).bytes
        var bytes = 0
        for _ in 0..<2000 {
            if case .flood = sw.send(frame, from: 0).verdict { bytes += 1000 }
            sw.now = sw.now + .microseconds(100)
        }
        #expect(abs(bytes - 900_000) <= 2000, "in 200 ms: \(bytes) bytes (900 000 expected)")
    }

    @Test func egressOverRateIsRefusedOnThatPortOnly() {
        let sw = Switch(Self.plan())
        let frame = FrameBuilder(dst: .broadcast, src: mac(2)).payload(986).bytes
        var toC = 0, toA = 0
        for _ in 0..<10 {
            let r = sw.send(frame, from: 1)
            if r.outputs[2] != nil { toC += 1 } else { #expect(r.refused[2] == .shapingEgress) }
            if r.outputs[0] != nil { toA += 1 }
        }
        #expect(toC == 4 && toA == 10, "c's egress burst is 4000 bytes: 4 of 10 frames; a is not shaped on egress")
        sw.advance(milliseconds: 1)   // 1000 bytes refill
        #expect(sw.send(frame, from: 1).outputs[2] != nil)
        #expect(sw.send(frame, from: 1).refused[2] == .shapingEgress)
    }

    @Test func aGSOFrameLargerThanTheBucketPassesAndIsPaidBack() {
        let plan = SwitchPlan(name: "sw", ports: [
            PortPlan(name: "a", portGroup: "g", mode: .access(VLANID(10)),
                     shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 8_000_000, burstBytes: 10_000))),
            PortPlan(name: "b", portGroup: "g", mode: .access(VLANID(10))),
        ])
        let sw = Switch(plan)
        let gso = FrameBuilder(dst: .broadcast, src: mac(1)).payload(60_000).bytes
        var trace = RecordingTrace()
        let d = gso.withUnsafeBytes { decide(frame: $0, offload: FrameOffload(isGSO: true), inPort: 0, plan: plan, context: sw.context, trace: &trace) }
        #expect(d.verdict == .flood && d.takesShapingTokens, "a frame larger than the burst passes when the bucket is full (TCP never stalls)")
        sw.shaper.take(port: 0, .ingress, bytes: gso.count, now: sw.now)
        // In debt by ~50 KB: at 1 MB/s, ~50 ms before a 1000-byte frame passes again.
        let small = FrameBuilder(dst: .broadcast, src: mac(1)).payload(986).bytes
        sw.advance(milliseconds: 45)
        #expect(sw.send(small, from: 0).verdict == .drop(.shapingIngress))
        sw.advance(milliseconds: 10)
        #expect(sw.send(small, from: 0).verdict == .flood)
    }

    @Test func noShapingMeansNoShaper() {
        let plain = SwitchPlan(name: "sw", ports: [PortPlan(name: "a", portGroup: "g", mode: .access(VLANID(10)))])
        #expect(!TrafficShaper(plan: plain).isActive && !plain.hasShaping)
        #expect(Self.plan().hasShaping)
    }
}

@Suite struct PrivateVLANDecisionTests {
    // Primary 100, isolated 101, communities 102 and 103.
    static let pvlan = PrivateVLAN(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102), VLANID(103)])
    static let names = ["prom", "iso1", "iso2", "comA1", "comA2", "comB", "trunk", "plain"]
    static func plan() -> SwitchPlan {
        SwitchPlan(name: "sw", ports: [
            PortPlan(name: "prom", portGroup: "p", mode: .access(VLANID(100))),
            PortPlan(name: "iso1", portGroup: "i", mode: .access(VLANID(101))),
            PortPlan(name: "iso2", portGroup: "i", mode: .access(VLANID(101))),
            PortPlan(name: "comA1", portGroup: "ca", mode: .access(VLANID(102))),
            PortPlan(name: "comA2", portGroup: "ca", mode: .access(VLANID(102))),
            PortPlan(name: "comB", portGroup: "cb", mode: .access(VLANID(103))),
            PortPlan(name: "trunk", portGroup: "t", mode: .trunk(allowed: VLANSet([100, 101, 102, 103, 10].map { VLANID($0) }), native: nil)),
            PortPlan(name: "plain", portGroup: "v10", mode: .access(VLANID(10))),
        ], privateVLANs: [pvlan])
    }

    /// Who receives a broadcast from each access port, and with which tag on the trunk.
    @Test func theFullMatrixForBroadcasts() {
        let sw = Switch(Self.plan())
        let expected: [Int: [Int: UInt16?]] = [
            0: [1: nil, 2: nil, 3: nil, 4: nil, 5: nil, 6: 100],   // promiscuous → all, trunk tagged primary
            1: [0: nil, 6: 101],                                   // isolated → promiscuous only, trunk tagged 101
            2: [0: nil, 6: 101],
            3: [0: nil, 4: nil, 6: 102],                           // community → community + promiscuous
            4: [0: nil, 3: nil, 6: 102],
            5: [0: nil, 6: 103],                                   // a community of one
            7: [6: 10],                                            // the plain VLAN never mixes in
        ]
        for (from, want) in expected {
            let r = sw.send(FrameBuilder(dst: .broadcast, src: mac(UInt64(from + 1))).type(EtherType.arp).bytes, from: from)
            #expect(r.outputs == want, "broadcast from \(Self.names[from]): got \(r.outputs), want \(want)")
        }
    }

    @Test func theMatrixOverTheTrunk() {
        let sw = Switch(Self.plan())
        func from(_ vlan: UInt16) -> Set<Int> {
            sw.send(FrameBuilder(dst: .broadcast, src: mac(0x77)).tagged(vlan).bytes, from: 6).ports
        }
        #expect(from(100) == [0, 1, 2, 3, 4, 5], "tagged primary from upstream: every port of the private VLAN")
        #expect(from(101) == [0], "tagged isolated: promiscuous only")
        #expect(from(102) == [0, 3, 4], "tagged community A: its community and promiscuous")
        #expect(from(103) == [0, 5])
    }

    @Test func learningIsSharedSoRepliesToIsolatedPortsAreNotFlooded() {
        let sw = Switch(Self.plan())
        let iso = mac(0x11), gw = mac(0x10)
        var r = sw.send(FrameBuilder(dst: gw, src: iso).bytes, from: 1)
        #expect(r.verdict == .flood && r.ports == [0, 6])
        #expect(r.decision.learningVLAN == VLANID(100))
        #expect(sw.table.lookup(vlan: VLANID(100), mac: iso) == 1, "learned under the primary")
        #expect(r.steps.contains(.privateVLAN(vlan: VLANID(101), type: .isolated, primary: VLANID(100))))
        // The gateway (promiscuous) replies: known unicast to the isolated port, not a flood.
        r = sw.send(FrameBuilder(dst: iso, src: gw).bytes, from: 0)
        #expect(r.verdict == .forward(1) && r.outputs == [1: nil])
        // And the isolated host's next frame to the gateway is known unicast too.
        #expect(sw.send(FrameBuilder(dst: gw, src: iso).bytes, from: 1).verdict == .forward(0))
    }

    @Test func knownUnicastAcrossTheMatrixIsDropped() {
        let sw = Switch(Self.plan())
        let h1 = mac(0x21), h2 = mac(0x22), ca = mac(0x31), cb = mac(0x41)
        for (m, p) in [(h1, 1), (h2, 2), (ca, 3), (cb, 5)] { sw.send(FrameBuilder(dst: .broadcast, src: m).bytes, from: p) }
        for (dst, from) in [(h2, 1), (ca, 1), (h1, 3), (cb, 3), (ca, 5)] {
            let r = sw.send(FrameBuilder(dst: dst, src: mac(0x99 + UInt64(from))).bytes, from: from)
            #expect(r.verdict == .drop(.privateVLANNotAllowed), "\(Self.names[from]) → \(dst)")
            #expect(r.outputs.isEmpty)
        }
        // Within a community, and to the promiscuous port, it flows.
        sw.send(FrameBuilder(dst: .broadcast, src: mac(0x32)).bytes, from: 4)
        #expect(sw.send(FrameBuilder(dst: mac(0x32), src: ca).bytes, from: 3).verdict == .forward(4))
        // An isolated host upstream (tagged 101) cannot reach a local isolated port either.
        #expect(sw.send(FrameBuilder(dst: h1, src: mac(0x55)).tagged(101).bytes, from: 6).verdict == .drop(.privateVLANNotAllowed))
        #expect(sw.send(FrameBuilder(dst: h1, src: mac(0x56)).tagged(100).bytes, from: 6).verdict == .forward(1))
    }

    @Test func excludedPortsAreNamedForTrace() {
        let plan = Self.plan()
        let excluded = plan.privateVLANExcluded(VLANID(101), except: 1).map { "\(plan.ports[$0.port].name):\($0.type)" }
        #expect(Set(excluded) == ["iso2:isolated", "comA1:community", "comA2:community", "comB:community"])
        #expect(plan.privateVLANExcluded(VLANID(100), except: 0).isEmpty)
        #expect(plan.privateVLANExcluded(VLANID(10), except: 7).isEmpty)
    }
}

@Suite struct SnoopingDecisionTests {
    static let g1 = ipv4(239, 1, 1, 1), g2 = ipv4(239, 1, 1, 2), g3 = ipv4(239, 1, 1, 3)
    /// Four guests in VLAN 10, a trunk carrying 10, a guest in VLAN 20; port 6 is a
    /// configured router port.
    static func plan(interval: Duration = .seconds(260)) -> SwitchPlan {
        SwitchPlan(name: "sw", ports: [
            PortPlan(name: "a", portGroup: "g", mode: .access(VLANID(10))),
            PortPlan(name: "b", portGroup: "g", mode: .access(VLANID(10))),
            PortPlan(name: "c", portGroup: "g", mode: .access(VLANID(10))),
            PortPlan(name: "d", portGroup: "g", mode: .access(VLANID(10))),
            PortPlan(name: "t", portGroup: "t", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil)),
            PortPlan(name: "e", portGroup: "h", mode: .access(VLANID(20))),
            PortPlan(name: "r", portGroup: "g", mode: .access(VLANID(10))),
        ], multicast: MulticastSnooping(membershipInterval: interval, routerPorts: [6]))
    }
    static func data(_ group: UInt32, from port: Int = 3) -> [UInt8] {
        MulticastFrames.udp(from: mac(UInt64(0x50 + port)), source: ipv4(10, 0, 0, UInt32(port)), group: group)
    }

    @Test func joinThenDataGoesToMembersAndRoutersOnly() {
        let sw = Switch(Self.plan())
        // Unregistered: flooded.
        #expect(sw.send(Self.data(Self.g1), from: 3).ports == [0, 1, 2, 4, 6])
        // a joins with an IGMPv2 report: the report goes to router ports only.
        let report = sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g1), from: 0)
        #expect(report.verdict == .multicastRouters && report.decision.snoops)
        #expect(report.ports == [6], "a report reaches the router ports only")
        #expect(sw.groups!.members(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g1)) == [0])
        // Data: the member and the router port; the trunk and the others see nothing.
        let r = sw.send(Self.data(Self.g1), from: 3)
        guard case .multicastGroup = r.verdict else { Issue.record("not a group verdict: \(r.verdict)"); return }
        #expect(r.ports == [0, 6])
        #expect(r.steps.contains(.snooping(.registered(WireIPAddress(ipv4: Self.g1), vlan: VLANID(10), slot: sw.groups!.slot(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g1))))))
        // Another group is still unregistered; the VLAN 20 port never sees VLAN 10's group.
        #expect(sw.send(Self.data(Self.g2), from: 3).ports == [0, 1, 2, 4, 6])
        #expect(sw.send(Self.data(Self.g1), from: 0).ports == [6], "the sender itself gets nothing back")
    }

    @Test func leaveStopsTheGroupAtOnce() {
        let sw = Switch(Self.plan())
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g1), from: 0)
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x51), source: ipv4(10, 0, 0, 2), group: Self.g1), from: 1)
        #expect(sw.send(Self.data(Self.g1), from: 3).ports == [0, 1, 6])
        let leave = sw.send(MulticastFrames.igmpv2Leave(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g1), from: 0)
        #expect(leave.verdict == .multicastRouters && leave.ports == [6])
        #expect(sw.send(Self.data(Self.g1), from: 3).ports == [1, 6])
        sw.send(MulticastFrames.igmpv2Leave(from: mac(0x51), source: ipv4(10, 0, 0, 2), group: Self.g1), from: 1)
        #expect(sw.groups!.slot(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g1)) == -1, "the last leave frees the group")
        #expect(sw.send(Self.data(Self.g1), from: 3).verdict == .flood, "unregistered again: flooded")
    }

    @Test func membershipsAgeOutAfterTheInterval() {
        let sw = Switch(Self.plan(interval: .seconds(30)))
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g1), from: 0)
        sw.advance(milliseconds: 20_000)
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x51), source: ipv4(10, 0, 0, 2), group: Self.g1), from: 1)
        sw.advance(milliseconds: 11_000)
        #expect(sw.groups!.expire(now: sw.now) == 1)
        #expect(sw.send(Self.data(Self.g1), from: 3).ports == [1, 6], "a aged out after 30 s; b's report is 11 s old")
        sw.advance(milliseconds: 20_000)
        sw.groups!.expire(now: sw.now)
        #expect(sw.send(Self.data(Self.g1), from: 3).verdict == .flood)
    }

    @Test func queriesMakeRouterPortsThatAgeToo() {
        let sw = Switch(Self.plan(interval: .seconds(30)))
        let q = sw.send(MulticastFrames.igmpQuery(from: mac(0x60), source: ipv4(10, 0, 0, 254), vlan: 10), from: 4)
        #expect(q.verdict == .flood && q.decision.snoops, "a query floods")
        #expect(q.ports == [0, 1, 2, 3, 6])
        #expect(sw.groups!.routers(vlan: VLANID(10)) == [4])
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g1), from: 0)
        #expect(sw.send(Self.data(Self.g1), from: 3).outputs == [0: nil, 4: 10, 6: nil], "members, the dynamic router (tagged) and the configured one")
        // The router interval that goes with 30 s: 2 × QI + QRI / 2 = 2 × 11.25 + 3.75 = 26.25 s.
        sw.advance(milliseconds: 27_000)
        sw.groups!.expire(now: sw.now)
        #expect(sw.groups!.routers(vlan: VLANID(10)).isEmpty)
    }

    @Test func igmpv3ReportWithSeveralRecords() {
        let sw = Switch(Self.plan())
        sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: Self.g2), from: 0)
        let r = sw.send(MulticastFrames.igmpv3Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), records: [
            (2, Self.g1, []),                           // IS_EX {}: join g1
            (3, Self.g2, []),                           // TO_IN {}: leave g2
            (5, Self.g3, [ipv4(10, 9, 9, 9)]),          // ALLOW {S}: join g3 (no SSM: whole group)
            (9, ipv4(239, 9, 9, 9), []),                // unknown type: ignored
            (4, ipv4(224, 0, 0, 251), []),              // link-local (mDNS): never registered
        ]), from: 0)
        #expect(r.verdict == .multicastRouters && r.ports == [6])
        let t = sw.groups!
        #expect(t.members(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g1)) == [0])
        #expect(t.members(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g2)).isEmpty)
        #expect(t.members(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g3)) == [0])
        #expect(t.groupCount == 2)
        #expect(sw.send(MulticastFrames.udp(from: mac(0x53), source: ipv4(10, 0, 0, 4), group: ipv4(224, 0, 0, 251)), from: 3).verdict == .flood,
                "link-local groups always flood")
    }

    @Test func mldReportsAndData() {
        let sw = Switch(Self.plan())
        let group = MulticastFrames.siteGroup(0x42)
        let g = WireIPAddress(high: 0xFF15_0000_0000_0000, low: 0x42)
        var r = sw.send(MulticastFrames.mldv2Report(from: mac(0x50), source: MulticastFrames.linkLocal(1), records: [(4, group, 0)]), from: 0)
        #expect(r.verdict == .multicastRouters && r.ports == [6])
        r = sw.send(MulticastFrames.mldv1Report(from: mac(0x51), source: MulticastFrames.linkLocal(2), group: group), from: 1)
        #expect(sw.groups!.members(vlan: VLANID(10), group: g).sorted() == [0, 1])
        r = sw.send(MulticastFrames.udp6(from: mac(0x53), source: MulticastFrames.linkLocal(4), group: group), from: 3)
        #expect(r.ports == [0, 1, 6])
        // Without the Router Alert it is not MLD: forwarded as data to the group, not snooped.
        r = sw.send(MulticastFrames.mldv1Report(from: mac(0x52), source: MulticastFrames.linkLocal(3), group: group, routerAlert: false), from: 2)
        #expect(!r.decision.snoops && r.ports == [0, 1, 6])
        // Solicited-node and other ff02:: groups always flood.
        let solicited: [UInt8] = [0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0, 0, 1]
        #expect(sw.send(MulticastFrames.udp6(from: mac(0x53), source: MulticastFrames.linkLocal(4), group: solicited), from: 3).verdict == .flood)
        // An MLD query makes a router port.
        sw.send(MulticastFrames.mldQuery(from: mac(0x61), source: MulticastFrames.linkLocal(9)), from: 2)
        #expect(sw.groups!.routers(vlan: VLANID(10)) == [2])
    }

    @Test func malformedMessagesAreDroppedByReason() {
        let sw = Switch(Self.plan())
        var bad = MulticastFrames.ipv4(from: mac(0x50), source: ipv4(10, 0, 0, 1), destination: Self.g1, protocol: 2,
                                       payload: MulticastFrames.igmp([0x16, 0, 0, 0] + [239, 1, 1, 1], corrupt: true))
        #expect(sw.send(bad, from: 0).verdict == .drop(.malformedIGMP))
        bad = MulticastFrames.ipv4(from: mac(0x50), source: ipv4(10, 0, 0, 1), destination: Self.g1, protocol: 2,
                                   payload: MulticastFrames.igmp([0x16, 0, 0, 0] + [10, 1, 1, 1]))
        #expect(sw.send(bad, from: 0).verdict == .drop(.malformedIGMP), "a report for a unicast group")
        var mld = MulticastFrames.mldv1Report(from: mac(0x51), source: MulticastFrames.linkLocal(2), group: MulticastFrames.siteGroup(1))
        mld[mld.count - 1] ^= 0xFF
        #expect(sw.send(mld, from: 0).verdict == .drop(.malformedMLD))
        #expect(sw.groups!.groupCount == 0 && sw.table.count == 0, "nothing learned from malformed messages")
        // Snooping off: the same frame is plain multicast.
        let off = Switch(SwitchPlan(name: "sw", ports: Array(Self.plan().ports)))
        #expect(off.send(bad, from: 0).verdict == .flood)
    }

    @Test func aFullTableRefusesAndCounts() {
        let plan = SwitchPlan(name: "sw", ports: Self.plan().ports,
                              multicast: MulticastSnooping(groupCapacity: 2, membershipCapacity: 3))
        let sw = Switch(plan)
        for i in 0..<4 {
            sw.send(MulticastFrames.igmpv2Report(from: mac(0x50), source: ipv4(10, 0, 0, 1), group: ipv4(239, 2, 0, UInt32(i))), from: 0)
        }
        #expect(sw.groups!.groupCount == 2 && sw.groups!.refusedJoins == 2)
        #expect(sw.send(Self.data(ipv4(239, 2, 0, 3)), from: 3).verdict == .flood, "a refused group keeps flooding")
    }

    @Test func staticGroupsNeverAge() {
        let plan = SwitchPlan(name: "sw", ports: Self.plan().ports, multicast: MulticastSnooping(
            membershipInterval: .seconds(10), staticGroups: [StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(ipv4: Self.g1), ports: [2])]))
        let sw = Switch(plan)
        sw.advance(milliseconds: 1_000_000)
        sw.groups!.expire(now: sw.now)
        sw.send(MulticastFrames.igmpv2Leave(from: mac(0x52), source: ipv4(10, 0, 0, 3), group: Self.g1), from: 2)
        #expect(sw.send(Self.data(Self.g1, from: 0), from: 0).ports == [2])
    }

    @Test func querierElectionAndSchedule() {
        let settings = MulticastQuerierSettings(ipv4Source: ipv4(10, 0, 0, 100), mac: mac(0xFE), timers: MulticastTimers(membershipInterval: .seconds(260)))
        let q = MulticastQuerier(settings: settings, vlans: [VLANID(10)], now: .seconds(0))
        #expect(q.takeDue(now: .seconds(1)).count == 2, "IGMP and MLD at once")
        #expect(q.takeDue(now: .seconds(2)).isEmpty)
        #expect(q.takeDue(now: .milliseconds(32_300)).count == 2, "the second startup query after QI/4 = 31.25 s")
        #expect(q.takeDue(now: .seconds(60)).isEmpty)
        #expect(q.takeDue(now: .milliseconds(157_300)).count == 2, "then every 125 s")
        // A higher address does not silence it; a lower one does, for 255 s.
        q.heard(MulticastQuery(family: .ipv4, version: 3, source: WireIPAddress(ipv4: ipv4(10, 0, 0, 200)), group: nil,
                               maxResponseMilliseconds: 10_000, hasRouterAlert: true), vlan: VLANID(10), now: .seconds(200))
        #expect(q.isQuerier(vlan: VLANID(10), family: .ipv4, now: .seconds(200)))
        q.heard(MulticastQuery(family: .ipv4, version: 3, source: WireIPAddress(ipv4: ipv4(10, 0, 0, 1)), group: nil,
                               maxResponseMilliseconds: 10_000, hasRouterAlert: true), vlan: VLANID(10), now: .seconds(200))
        #expect(!q.isQuerier(vlan: VLANID(10), family: .ipv4, now: .seconds(201)))
        #expect(q.isQuerier(vlan: VLANID(10), family: .ipv6, now: .seconds(201)), "IPv6 has its own election")
        #expect(q.takeDue(now: .seconds(300)).map(\.family) == [.ipv6])
        #expect(q.takeDue(now: .seconds(456)).map(\.family) == [.ipv4, .ipv6], "IPv4 back as querier once the other is silent for 255 s; IPv6 on its schedule")
        // Its frames parse as the queries they are.
        for family in [IPFamily.ipv4, .ipv6] {
            let frame = q.queryFrame(family)
            let signal = frame.withUnsafeBytes { MulticastSignal.parse($0, l3Offset: 14, etherType: family == .ipv4 ? EtherType.ipv4 : EtherType.ipv6) }
            guard case .query(let parsed) = signal else { Issue.record("\(family): \(signal)"); continue }
            #expect(parsed.source == settings.source(family) && parsed.group == nil && parsed.maxResponseMilliseconds == 10_000)
            #expect(parsed.version == (family == .ipv4 ? 3 : 2) && parsed.hasRouterAlert)
        }
        #expect(settings.mldSource.description == "fe80::ff:fe00:fe", "EUI-64 of 02:00:00:00:00:fe")
    }
}
