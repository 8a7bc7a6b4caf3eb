import Testing
import Model
import Core
import TestSupport

/// `decide` and `forEachEgress` with a NIC team: which uplink a guest's frame leaves by, and
/// what the team lets in from the physical network.
@Suite struct TeamDecideTests {
    static let v10 = VLANID(10)
    // Ports: g0, g1 (use uplinks), g2 (`uplinks: none`), u0, u1 (team members 0, 1).
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "g0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xA0)),
        PortPlan(name: "g1", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xA1)),
        PortPlan(name: "g2", portGroup: "lab", mode: .access(v10), configuredMAC: mac(0xA2), usesUplinks: false),
        PortPlan(name: "u0", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 0, usesUplinks: false),
        PortPlan(name: "u1", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 1, usesUplinks: false),
    ], team: TeamConfig(memberCount: 2, policy: .portID))
    let locks = AnnouncementLock()

    func team(_ health: [MemberHealth] = [.up, .up]) -> TeamContext {
        TeamContext(state: TeamState.compute(config: plan.team!, health: health, carriedPorts: plan.carriedPorts,
                                             portCount: plan.ports.count), locks: locks, now: .seconds(100))
    }

    func run(_ frame: [UInt8], from port: Int, table: MACTable, team: TeamContext? = nil) -> (Decision, [String]) {
        var t = NoTrace()
        let ctx = team ?? self.team()
        let d = frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &t, team: ctx) }
        var out: [String] = []
        forEachEgress(of: d, inPort: port, plan: plan) { p, rw, refused in
            if refused == nil { out.append(plan.ports[p].name + (rw.push.map { ":\($0.vid)" } ?? "")) }
        }
        return (d, out)
    }

    @Test func uplinksAreTrunksAfterTheGuests() {
        #expect(plan.uplinkPorts == [3, 4])
        #expect(plan.carriedPorts == [0, 1])
        #expect(plan.uplinkVLANs == [.untagged, Self.v10])
    }

    @Test func aGuestsFloodLeavesByItsOwnUplinkTagged() {
        let table = MACTable(limit: 64)
        let s = team().state
        for g in [0, 1] {
            let (d, out) = run(FrameBuilder(dst: .broadcast, src: mac(0xA0 + UInt64(g))).bytes, from: g, table: table)
            let member = s.uplink(forGuestPort: g, source: mac(0xA0 + UInt64(g)))!
            #expect(Int(d.uplink) == member)
            #expect(out.filter { $0.hasPrefix("u") } == ["u\(member):10"], "one uplink, tagged 10: \(out)")
            #expect(out.filter { $0.hasPrefix("g") }.count == 2)
        }
        #expect(s.uplink(forGuestPort: 0, source: mac(0xA0)) != s.uplink(forGuestPort: 1, source: mac(0xA1)), "port-id spreads")
    }

    @Test func isolatedGroupNeverReachesUplinks() {
        let table = MACTable(limit: 64)
        table.learn(vlan: Self.v10, mac: mac(0xEE), port: 3, now: .seconds(0))
        let (flood, out) = run(FrameBuilder(dst: .broadcast, src: mac(0xA2)).bytes, from: 2, table: table)
        #expect(flood.uplink == -1 && out == ["g0", "g1"])
        let (d, _) = run(FrameBuilder(dst: mac(0xEE), src: mac(0xA2)).bytes, from: 2, table: table)
        #expect(d.verdict == .drop(.uplinkIsolated))
        // …and nothing from outside reaches it.
        let r = team().state.designatedReceiver(vlan: Self.v10)!
        let (b, bout) = run(FrameBuilder(dst: .broadcast, src: mac(0xEE)).tagged(10).bytes, from: 3 + r, table: table)
        #expect(b.verdict == .flood && bout == ["g0", "g1"])
        let (u, _) = run(FrameBuilder(dst: mac(0xA2), src: mac(0xEE)).tagged(10).bytes, from: 3 + r,
                         table: { table.learn(vlan: Self.v10, mac: mac(0xA2), port: 2, now: .seconds(0)); return table }())
        #expect(u.verdict == .drop(.uplinkIsolated))
    }

    @Test func unicastToTheOutsideUsesTheGuestsUplinkNotWhereTheMACWasLearned() {
        let table = MACTable(limit: 64)
        let s = team().state
        let m0 = s.uplink(forGuestPort: 0, source: mac(0xA0))!
        let other = 1 - m0
        table.learn(vlan: Self.v10, mac: mac(0xEE), port: 3 + other, now: .seconds(0))
        let (d, out) = run(FrameBuilder(dst: mac(0xEE), src: mac(0xA0)).bytes, from: 0, table: table)
        #expect(d.verdict == .forward(3 + m0))
        #expect(out == ["u\(m0):10"])
    }

    @Test func broadcastsEnterOnlyThroughTheDesignatedReceiverAndNeverLeaveAgain() {
        let table = MACTable(limit: 64)
        let r = team().state.designatedReceiver(vlan: Self.v10)!
        let frame = FrameBuilder(dst: .broadcast, src: mac(0xEE)).tagged(10).bytes
        let (d, out) = run(frame, from: 3 + r, table: table)
        #expect(d.verdict == .flood)
        #expect(out == ["g0", "g1"], "to the guests, never to the other uplink: \(out)")
        #expect(run(frame, from: 3 + (1 - r), table: table).0.verdict == .drop(.teamNotDesignatedReceiver))
        // Unknown unicast is a flood too.
        #expect(run(FrameBuilder(dst: mac(0x77), src: mac(0xEE)).tagged(10).bytes, from: 3 + (1 - r), table: table).0.verdict
                == .drop(.teamNotDesignatedReceiver))
    }

    @Test func knownUnicastEntersOnlyThroughTheGuestsUplink() {
        let table = MACTable(limit: 64)
        table.learn(vlan: Self.v10, mac: mac(0xA0), port: 0, now: .seconds(0))
        let m0 = team().state.uplink(forGuestPort: 0, source: mac(0xA0))!
        let frame = FrameBuilder(dst: mac(0xA0), src: mac(0xEE)).tagged(10).bytes
        #expect(run(frame, from: 3 + m0, table: table).0.verdict == .forward(0))
        #expect(run(frame, from: 3 + (1 - m0), table: table).0.verdict == .drop(.teamNotDesignatedReceiver))
    }

    @Test func reflectionsOfOurOwnFramesAreDroppedButRealMovesAccepted() {
        let table = MACTable(limit: 64)
        table.learn(vlan: Self.v10, mac: mac(0xA0), port: 0, now: .seconds(0))
        let r = team().state.designatedReceiver(vlan: Self.v10)!
        let echo = FrameBuilder(dst: .broadcast, src: mac(0xA0)).tagged(10).bytes
        #expect(run(echo, from: 3 + r, table: table).0.verdict == .drop(.teamReflectedSource))
        // A RARP for the MAC: it moved (a migration) — accepted and learned on the uplink…
        let rarp = TeamFrames.rarpFrame(source: mac(0xA0), vlan: Self.v10)
        let (moved, _) = run(rarp, from: 3 + r, table: table)
        #expect(moved.verdict == .flood && moved.learn)
        // …unless we announced it ourselves moments ago (our own echo).
        locks.stamp(vlan: Self.v10, mac: mac(0xA0), now: .seconds(99))
        #expect(run(rarp, from: 3 + r, table: table).0.verdict == .drop(.teamReflectedSource))
    }

    @Test func standbyAndFailedMembersReceiveNothing() {
        let table = MACTable(limit: 64)
        let ctx = team([.up, .down(.noCarrier)])
        let frame = FrameBuilder(dst: .broadcast, src: mac(0xEE)).tagged(10).bytes
        #expect(run(frame, from: 4, table: table, team: ctx).0.verdict == .drop(.teamInactiveUplink))
        #expect(run(frame, from: 3, table: table, team: ctx).0.verdict == .flood)
        // Every guest now leaves by u0.
        for g in [0, 1] { #expect(run(FrameBuilder(dst: .broadcast, src: mac(0xA0 + UInt64(g))).bytes, from: g, table: table, team: ctx).1.contains("u0:10")) }
    }

    @Test func noHealthyUplink() {
        let table = MACTable(limit: 64)
        table.learn(vlan: Self.v10, mac: mac(0xEE), port: 3, now: .seconds(0))
        let ctx = team([.down(.noCarrier), .down(.beaconLost)])
        #expect(run(FrameBuilder(dst: mac(0xEE), src: mac(0xA0)).bytes, from: 0, table: table, team: ctx).0.verdict == .drop(.noHealthyUplink))
        let (f, out) = run(FrameBuilder(dst: .broadcast, src: mac(0xA0)).bytes, from: 0, table: table, team: ctx)
        #expect(f.verdict == .flood && out == ["g1", "g2"])
    }

    @Test func uplinkToUplinkNever() {
        let table = MACTable(limit: 64)
        table.learn(vlan: Self.v10, mac: mac(0xEF), port: 4, now: .seconds(0))
        let s = team().state
        let (d, _) = run(FrameBuilder(dst: mac(0xEF), src: mac(0xEE)).tagged(10).bytes, from: 3, table: table)
        #expect(d.verdict == .drop(.uplinkToUplink))
        _ = s
    }

    @Test func beaconsAreForTheSwitch() {
        let table = MACTable(limit: 64)
        let b = TeamFrames.beaconFrame(source: mac(0xB0), vlan: Self.v10, teamID: 7, sender: 1, sequence: 3)
        for port in [3, 4] {
            let (d, out) = run(b, from: port, table: table, team: team([.up, .down(.noCarrier)]))
            #expect(d.verdict == .local(.teamBeacon) && b.withUnsafeBytes({ Beacon.parse(frame: $0) }) == Beacon(teamID: 7, sender: 1, sequence: 3) && out.isEmpty, "even a standby member hears beacons")
        }
        #expect(table.count == 0, "beacons are not learned")
        // From a guest it is just a multicast.
        #expect(run(TeamFrames.beaconFrame(source: mac(0xA0), vlan: nil, teamID: 7, sender: 1, sequence: 3), from: 0, table: table).0.verdict == .flood)
    }

    @Test func traceShowsTheTeamSteps() {
        let table = MACTable(limit: 64)
        var rec = RecordingTrace()
        let frame = FrameBuilder(dst: .broadcast, src: mac(0xA0)).bytes
        _ = frame.withUnsafeBytes { decide(frame: $0, inPort: 0, plan: plan, table: table, trace: &rec, team: team()) }
        #expect(rec.steps.contains { if case .teamUplink = $0 { return true } else { return false } })
    }
}
