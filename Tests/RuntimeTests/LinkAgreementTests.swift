import Core
import Foundation
import LinuxIO
import Model
import Runtime
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Two switches joined by a real `PatchPort` pair inside one datapath: `trace`,
/// followed across the link (`traceFrame(_:switchIndex:switches:)`), and forwarding agree
/// on random frames: the same drops on the ingress port, and the same frames with the same
/// tags out of every guest port of both switches.
@Suite(.serialized) struct LinkAgreementTests {
    static let vlans: [UInt16] = [10, 20, 30]

    /// Switch `name`: 4 guest ports of random modes, then its link port (a trunk of 10 and
    /// 20, native random).
    static func plan(_ name: String, peer: String, _ rng: inout SeededRandom) -> SwitchPlan {
        var ports: [PortPlan] = []
        for i in 0..<4 {
            let mode: PortMode
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: mode = .access(.untagged)
            case 1, 2: mode = .access(VLANID(vlans.randomElement(using: &rng)!))
            default: mode = .trunk(allowed: VLANSet([VLANID(10), VLANID(30)]), native: [nil, .untagged, VLANID(20)].randomElement(using: &rng)!)
            }
            ports.append(PortPlan(name: "\(name)g\(i).eth0", portGroup: "pg", mode: mode,
                                  security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                  acceptsOffloads: i % 2 == 0))
        }
        let native: VLANID? = [nil, .untagged, VLANID(30)].randomElement(using: &rng)!
        ports.append(PortPlan(name: "link-\(peer)", portGroup: "trunk", mode: .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: native),
                              security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                              macLimit: 8192, acceptsOffloads: true, link: LinkPeer(switchName: peer, portName: "link-\(name)")))
        return SwitchPlan(name: name, ports: ports)
    }

    @Test(arguments: Array(0..<6))
    func traceAcrossALinkAgreesWithForwarding(_ round: Int) throws {
        let seed = UInt64(0x1116_0000 + round)
        var rng = SeededRandom(state: seed)
        let a = Self.plan("sa", peer: "sb", &rng), b = Self.plan("sb", peer: "sa", &rng)
        let (la, lb) = try PatchPort.pair(labels: ("sa/link-sb", "sb/link-sa"), queues: 1)
        let guestsA = try (0..<4).map { try MemoryPort(vnetHeaderSize: $0 % 2 == 0 ? 12 : 0) }
        let guestsB = try (0..<4).map { try MemoryPort(vnetHeaderSize: $0 % 2 == 0 ? 12 : 0) }
        let clock = TraceAgreesWithForwardingTests.ManualClock()
        let dp = try Datapath(switches: [SwitchRuntime(plan: a, ports: guestsA + [la]), SwitchRuntime(plan: b, ports: guestsB + [lb])],
                              clock: { clock.now })
        dp.start()
        defer { dp.stop() }
        let macs = (1...8).map { mac(UInt64($0)) }
        var crossed = 0
        for step in 0..<120 {
            clock.advance(milliseconds: 10)
            let s = Int.random(in: 0..<2, using: &rng), p = Int.random(in: 0..<4, using: &rng)
            let plan = s == 0 ? a : b
            var builder = FrameBuilder(dst: (macs + [.broadcast]).randomElement(using: &rng)!, src: macs.randomElement(using: &rng)!)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: builder = builder.tagged(10)
            case 1: builder = builder.tagged(Self.vlans.randomElement(using: &rng)!, pcp: 3, dei: true)
            default: break
            }
            let bytes = builder.bytes
            let header: [UInt8] = p % 2 == 0 ? [UInt8](repeating: 0, count: 12) : []
            let trace = dp.withLock { l in
                traceFrame(bytes, inPort: p, switchIndex: s, switches: l.switches.map { TracedSwitch(plan: $0.plan, context: $0.context(now: clock.now, l)) })
            }
            let before = dp.withLock { l in (0..<plan.ports.count).map { l.switches[s].counters(l).snapshot(port: $0) } }
            let injectedAt = dp.withLock { $0.batchesCompleted }
            (s == 0 ? guestsA : guestsB)[p].inject(header + bytes)
            // Quiescent: the frame and whatever crossed the link were handled (no frame left
            // in the link's rings, the batch count still for a moment).
            let deadline = Date().addingTimeInterval(5)
            while dp.withLock({ $0.batchesCompleted }) == injectedAt && Date() < deadline { usleep(200) }
            var last = dp.withLock { $0.batchesCompleted }
            var stable = 0
            while stable < 20 && Date() < deadline {
                usleep(1000)
                let now = dp.withLock { $0.batchesCompleted }
                stable = (now == last && la.queuedBytes == 0 && lb.queuedBytes == 0) ? stable + 1 : 0
                last = now
            }
            let after = dp.withLock { l in (0..<plan.ports.count).map { l.switches[s].counters(l).snapshot(port: $0) } }
            let context = "seed \(seed) step \(step): \(trace.summary) in on \(plan.ports[p].name)"
            let newDrops = after[p].drops.filter { $0.value > (before[p].drops[$0.key] ?? 0) }.map(\.key.description)
            #expect(newDrops == (trace.verdict == "drop" ? [trace.dropReason ?? "?"] : []), "\(context): trace \(trace.verdict), datapath dropped \(newDrops)")

            // Predicted: every guest-port egress of the trace and of its crossings.
            var predicted: [String: [String]] = [:]
            func collect(_ t: TraceReport.FrameTrace) {
                for e in t.egress where !e.port.hasPrefix("link-") { predicted[e.port, default: []].append(e.tag) }
                for c in t.crossings ?? [] { if let n = c.trace { crossed += 1; collect(n) } }
            }
            collect(trace)
            var actual: [String: [String]] = [:]
            for (i, port) in guestsA.enumerated() { for f in port.takeWritten() { actual[a.ports[i].name, default: []].append(TraceAgreesWithForwardingTests.tagText(f)) } }
            for (i, port) in guestsB.enumerated() { for f in port.takeWritten() { actual[b.ports[i].name, default: []].append(TraceAgreesWithForwardingTests.tagText(f)) } }
            #expect(actual.mapValues { $0.sorted() } == predicted.mapValues { $0.sorted() }, "\(context): trace predicted \(predicted), the datapath sent \(actual)")
        }
        #expect(crossed > 0, "seed \(seed): some frames crossed the link")
        print("link agreement seed \(seed): \(crossed) link crossings compared")
    }

    /// A trace never nests deeper than the hop bound, even when plans make a ring of links
    /// (validation refuses one; the bound holds anyway).
    @Test func theHopBoundStopsATraceThroughARingOfLinks() throws {
        // Three switches, each with a guest port and links to both others: a loop.
        let names = ["x", "y", "z"]
        let plans = names.map { n in
            SwitchPlan(name: n, ports: [PortPlan(name: "\(n).g", portGroup: "pg", mode: .access(VLANID(10)))]
                + names.filter { $0 != n }.map { o in
                    PortPlan(name: "link-\(o)", portGroup: "t", mode: .access(VLANID(10)),
                             security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                             link: LinkPeer(switchName: o, portName: "link-\(n)"))
                })
        }
        let tables = plans.map { MACTable(limit: 64, staticCapacity: 16, portCount: $0.ports.count) }
        let switches = zip(plans, tables).map { TracedSwitch(plan: $0, context: DecisionContext(table: $1, now: MonotonicInstant(nanoseconds: 1))) }
        let t = traceFrame(FrameBuilder(dst: .broadcast, src: mac(1)).bytes, inPort: 0, switchIndex: 0, switches: switches, hops: 3)
        func depth(_ t: TraceReport.FrameTrace) -> Int { 1 + ((t.crossings ?? []).compactMap(\.trace).map(depth).max() ?? 0) }
        func truncated(_ t: TraceReport.FrameTrace) -> Int { (t.crossings ?? []).reduce(0) { $0 + ($1.truncated ? 1 : 0) + ($1.trace.map(truncated) ?? 0) } }
        #expect(depth(t) == 4, "the first switch and three hops")
        #expect(truncated(t) > 0, "crossings beyond the bound are listed as truncated")
    }
}
