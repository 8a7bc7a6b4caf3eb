import Core
import Foundation
import Model
@testable import Runtime
import Testing
import TestSupport

/// Across a live reload (`Datapath.replaceSwitches`, as `tapestry reload` swaps
/// plans): shaping buckets, the group table and the querier behave as docs/policies.md
/// says ("Across a live reload"). Socket-pair ports and a frozen clock: no root needed.
@Suite(.serialized) struct PolicyReloadTests {
    /// A clock the test moves by hand (the datapath reads it once per batch).
    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var ns: Int64 = 1_000_000_000
        var now: MonotonicInstant { lock.withLock { MonotonicInstant(nanoseconds: ns) } }
        func advance(_ d: Duration) { lock.withLock { ns += d.nanosecondsCount } }
    }

    static func shapedPlan(burst: Int) -> SwitchPlan {
        SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
            PortPlan(name: "b.eth0", portGroup: "shaped", mode: .access(VLANID(10)),
                     shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 8_000, burstBytes: burst))),
        ])
    }

    /// 1000-byte broadcasts from b: how many of `count` reach a, and b's shaping drops.
    static func send(_ count: Int, from b: SocketPairPort, to a: SocketPairPort) -> Int {
        var passed = 0
        for i in 0..<count {
            b.inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).payload(986).bytes)
            // Each frame is decided before the next is sent (a drop shows as silence).
            passed += a.received(waitingMilliseconds: i == count - 1 ? 150 : 60).count
        }
        return passed
    }

    @Test func shapingBucketsCarryOverUnlessTheLimitsChange() throws {
        let clock = Clock()
        let a = SocketPairPort(), b = SocketPairPort()
        let dp = try Datapath(switches: [SwitchRuntime(plan: Self.shapedPlan(burst: 3000), ports: [a, b])], clock: { clock.now })
        dp.start()
        defer { dp.stop() }
        // The clock stands still, so the 3000-byte bucket never refills: three frames pass.
        #expect(Self.send(4, from: b, to: a) == 3)
        // A reload with the same limits keeps the empty bucket: no fresh burst.
        try dp.replaceSwitches([SwitchRuntime(plan: Self.shapedPlan(burst: 3000), ports: [a, b])])
        #expect(Self.send(2, from: b, to: a) == 0, "the bucket was carried over, still empty")
        // Time refills it at the average rate across the reload: 1000 bytes per second.
        clock.advance(.seconds(2))
        #expect(Self.send(3, from: b, to: a) == 2)
        let drops = dp.withLock { l in l.switches[0].counters(l).snapshot(port: 1).drops[.shapingIngress] ?? 0 }
        #expect(drops == 4, "dropped: 1 + 2 + 1, counters carried over too")
        // New limits: the direction starts full with them.
        try dp.replaceSwitches([SwitchRuntime(plan: Self.shapedPlan(burst: 5000), ports: [a, b])])
        #expect(Self.send(6, from: b, to: a) == 5)
        // A port re-created (new I/O) is a new port: full bucket.
        let b2 = SocketPairPort()
        try dp.replaceSwitches([SwitchRuntime(plan: Self.shapedPlan(burst: 5000), ports: [a, b2])])
        #expect(Self.send(6, from: b2, to: a) == 5)
    }

    static func snoopingPlan(aVLAN: UInt16 = 10, interval: Duration = .seconds(260), snooping: Bool = true) -> SwitchPlan {
        let q = MulticastQuerierSettings.derived(topology: "t", switchName: "sw0", membershipInterval: interval)
        return SwitchPlan(name: "sw0", ports: [
            PortPlan(name: "a.eth0", portGroup: "a", mode: .access(VLANID(aVLAN))),
            PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10))),
            PortPlan(name: "c.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        ], multicast: snooping ? MulticastSnooping(membershipInterval: interval, querier: q) : nil)
    }

    @Test func membershipsAndTheQuerierCarryOver() throws {
        let clock = Clock()
        let ports = (0..<3).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: Self.snoopingPlan(), ports: ports)], clock: { clock.now })
        dp.start()
        defer { dp.stop() }
        let group = WireIPAddress(ipv4: ipv4(239, 1, 2, 3))
        func due() -> [String] {
            dp.withLock { l in l.switches[0].multicast(l)!.querier!.takeDue(now: clock.now).map { "\($0.vlan) \($0.family)" } }
        }
        func isQuerier() -> Bool {
            dp.withLock { l in l.switches[0].multicast(l)!.querier!.isQuerier(vlan: VLANID(10), family: .ipv4, now: clock.now) }
        }
        func members() -> [Int] { dp.withLock { l in l.switches[0].multicast(l)?.members(vlan: VLANID(10), group: group) ?? [] } }

        // Up: the first queries are due at once (startup), then not again for a while.
        #expect(due() == ["10 ipv4", "10 ipv6"])
        #expect(due() == [])
        // a joins; another IPv4 querier (0.0.0.0, equal to ours) is heard on c: we stand down.
        ports[0].inject(MulticastFrames.igmpv2Report(from: mac(0xA), source: ipv4(10, 0, 0, 1), group: ipv4(239, 1, 2, 3)))
        ports[2].inject(MulticastFrames.igmpQuery(from: mac(0xC), source: 0))
        _ = ports[0].received(waitingMilliseconds: 150)
        _ = ports[1].received(waitingMilliseconds: 50)   // the query flooded to b
        #expect(members() == [0])
        #expect(isQuerier() == false)

        // Reload with the same snooping: the membership, the router port c, the election
        // and the schedule all carry over (no query is due, none is sent twice).
        try dp.replaceSwitches([SwitchRuntime(plan: Self.snoopingPlan(), ports: ports)])
        #expect(members() == [0])
        #expect(dp.withLock { l in l.switches[0].multicast(l)!.routers(vlan: VLANID(10)) } == [2])
        #expect(isQuerier() == false)
        #expect(due() == [], "no query right after a reload that kept the querier")
        // The startup series goes on where it was (MLD: the second startup query after QI/4).
        clock.advance(.seconds(32))
        #expect(due() == ["10 ipv6"])

        // A new membership interval restarts the schedule; the other querier is still heard.
        try dp.replaceSwitches([SwitchRuntime(plan: Self.snoopingPlan(interval: .seconds(100)), ports: ports)])
        #expect(due() == ["10 ipv6"], "new timers: a startup query at once, IPv4 still stood down")
        #expect(members() == [0], "memberships keep their expiry across an interval change")

        // The carried membership forwards: c's data reaches member a, not non-member b.
        let data = MulticastFrames.udp(from: mac(0xC), source: ipv4(10, 0, 0, 3), group: ipv4(239, 1, 2, 3))
        ports[2].inject(data)
        #expect(ports[0].received().count == 1 && ports[1].received(waitingMilliseconds: 100).isEmpty)

        // a moves to VLAN 20: its VLAN 10 membership goes.
        try dp.replaceSwitches([SwitchRuntime(plan: Self.snoopingPlan(aVLAN: 20, interval: .seconds(100)), ports: ports)])
        #expect(members() == [])
        // Back in VLAN 10 with snooping off: no table, the group's data floods the VLAN again.
        try dp.replaceSwitches([SwitchRuntime(plan: Self.snoopingPlan(snooping: false), ports: ports)])
        #expect(dp.withLock { l in l.switches[0].multicast(l) } == nil)
        ports[2].inject(data)
        #expect(ports[0].received().count == 1 && ports[1].received().count == 1)
    }
}
