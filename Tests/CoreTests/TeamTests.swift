import Testing
import Model
import Core
import TestSupport

private let up = MemberHealth.up
private let cut = MemberHealth.down(.noCarrier)

/// Guest ports 0..<12 of a 12-port switch, all carried by the team.
private func state(_ config: TeamConfig, _ health: [MemberHealth], previous: TeamState? = nil,
                   ports: Int = 12, carried: [PortIndex]? = nil) -> TeamState {
    TeamState.compute(config: config, health: health, carriedPorts: carried ?? Array(0..<ports), portCount: ports, previous: previous)
}

private func ports(_ s: TeamState) -> [Int?] {
    (0..<s.assignment.count).map { s.uplink(forGuestPort: $0, source: mac(UInt64($0))) }
}

/// An Ethernet + IPv4 header (no options) from `src` to `dst`.
private func ipv4Frame(src: UInt32, dst: UInt32, vlan: UInt16? = nil) -> [UInt8] {
    var b = FrameBuilder(dst: mac(0xFE), src: mac(1)).payload(0)
    if let vlan { b = b.tagged(vlan) }
    var f = b.bytes
    var ip = [UInt8](repeating: 0, count: 20)
    ip[0] = 0x45
    for i in 0..<4 {
        ip[12 + i] = UInt8(truncatingIfNeeded: src >> UInt32(24 - 8 * i))
        ip[16 + i] = UInt8(truncatingIfNeeded: dst >> UInt32(24 - 8 * i))
    }
    f += ip
    return f
}

/// An ARP frame (request) with the given sender/target IPs.
private func arpFrame(src: MACAddress, sha: MACAddress, spa: [UInt8], tpa: [UInt8]) -> [UInt8] {
    var f = MACAddress.broadcast.octets + src.octets + [0x08, 0x06]
    f += [0, 1, 8, 0, 6, 4, 0, 1] + sha.octets + spa + [0, 0, 0, 0, 0, 0] + tpa
    return f
}

@Suite struct TeamSelectionTests {
    @Test func portIDPinsEachGuestToAHomeUplink() {
        let s = state(TeamConfig(memberCount: 3), [up, up, up])
        #expect(ports(s) == (0..<12).map { $0 % 3 })
        #expect(s.carries(1) == [1, 4, 7, 10])
        #expect(s.holders == [0, 1, 2])
        #expect((0..<3).map { s.role(of: $0) } == [.active, .active, .active])
    }

    @Test func portIDMovesOnlyTheFailedMembersGuests() {
        let c = TeamConfig(memberCount: 3)
        let before = state(c, [up, up, up])
        let after = state(c, [up, cut, up], previous: before)
        let b = ports(before), a = ports(after)
        for p in 0..<12 {
            if b[p] != 1 { #expect(a[p] == b[p], "port \(p) moved although its uplink is healthy") }
            else { #expect(a[p] == 0 || a[p] == 2) }
        }
        // The orphans spread over both survivors.
        #expect(Set(after.carries(0)).isSuperset(of: before.carries(0)))
        #expect(!after.carries(0).filter { before.carries(1).contains($0) }.isEmpty)
        #expect(!after.carries(2).filter { before.carries(1).contains($0) }.isEmpty)
        #expect(after.carries(1).isEmpty)
        #expect(after.role(of: 1) == .down)
    }

    @Test func portIDIsStickyAcrossUnrelatedChanges() {
        let c3 = TeamConfig(memberCount: 3, active: [0, 1], standby: [2])
        let base = state(c3, [up, up, up])
        // A standby failing, more guest ports attaching, a port group losing its uplinks:
        // no guest that stays carried moves.
        let standbyDown = state(c3, [up, up, cut], previous: base)
        let morePorts = state(c3, [up, up, up], previous: base, ports: 20)
        let fewerCarried = state(c3, [up, up, up], previous: base, carried: [0, 1, 2, 3, 4, 5])
        for p in 0..<12 {
            #expect(ports(standbyDown)[p] == ports(base)[p])
            #expect(ports(morePorts)[p] == ports(base)[p])
            if p < 6 { #expect(ports(fewerCarried)[p] == ports(base)[p]) } else { #expect(ports(fewerCarried)[p] == nil) }
        }
    }

    struct FailbackCase: CustomTestStringConvertible, Sendable {
        var failback: Bool
        /// Holders of the slots after: active 0 fails, 0 recovers, standby 2 fails.
        var afterFailure: [Int16], afterRecovery: [Int16], afterStandbyFailure: [Int16]
        var roleOfZeroAfterRecovery: MemberRole
        var testDescription: String { "failback \(failback)" }
    }

    @Test(arguments: [
        FailbackCase(failback: true, afterFailure: [2, 1], afterRecovery: [0, 1], afterStandbyFailure: [0, 1],
                     roleOfZeroAfterRecovery: .active),
        FailbackCase(failback: false, afterFailure: [2, 1], afterRecovery: [2, 1], afterStandbyFailure: [0, 1],
                     roleOfZeroAfterRecovery: .standby),
    ])
    func standbyReplacesAFailedActiveOneForOne(_ t: FailbackCase) {
        let c = TeamConfig(memberCount: 3, policy: .portID, active: [0, 1], standby: [2], failback: t.failback)
        let s0 = state(c, [up, up, up])
        #expect(s0.slotHolders == [0, 1] && s0.role(of: 2) == .standby)
        let s1 = state(c, [cut, up, up], previous: s0)
        #expect(s1.slotHolders == t.afterFailure)
        // Guests of the failed active follow the standby; guests of member 1 stay.
        #expect(s1.carries(2) == s0.carries(0) && s1.carries(1) == s0.carries(1))
        let s2 = state(c, [up, up, up], previous: s1)
        #expect(s2.slotHolders == t.afterRecovery)
        #expect(s2.role(of: 0) == t.roleOfZeroAfterRecovery)
        #expect(s2.carries(Int(t.afterRecovery[0])) == s0.carries(0))
        let s3 = state(c, [up, up, cut], previous: s2)
        #expect(s3.slotHolders == t.afterStandbyFailure)
        #expect(s3.carries(0) == s0.carries(0))
    }

    struct OrderCase: Sendable {
        var failback: Bool
        var steps: [([MemberHealth], Int?)]
    }

    @Test(arguments: [
        // failback on: always the first healthy one of active then standby.
        OrderCase(failback: true, steps: [([up, up, up], 0), ([cut, up, up], 1), ([cut, cut, up], 2),
                                          ([up, cut, up], 0), ([cut, up, cut], 1), ([cut, cut, cut], nil), ([up, up, up], 0)]),
        // failback off: traffic stays where it moved until that member fails.
        OrderCase(failback: false, steps: [([up, up, up], 0), ([cut, up, up], 1), ([up, up, up], 1), ([up, cut, up], 0),
                                           ([cut, cut, up], 2), ([up, up, up], 2), ([cut, cut, cut], nil), ([cut, up, up], 1)]),
    ])
    func failoverOrderUsesOneUplinkAtATime(_ t: OrderCase) {
        let c = TeamConfig(memberCount: 3, policy: .failoverOrder, active: [0], standby: [1, 2], failback: t.failback)
        var s: TeamState? = nil
        for (i, (health, expected)) in t.steps.enumerated() {
            let next = state(c, health, previous: s)
            for p in 0..<12 { #expect(next.uplink(forGuestPort: p, source: mac(9)) == expected, "step \(i) port \(p)") }
            #expect(next.holders.count == (expected == nil ? 0 : 1))
            s = next
        }
    }

    @Test func srcMACHashesOverHealthyMembersAndKeepsOthersPut() {
        let c = TeamConfig(memberCount: 4, policy: .srcMAC)
        let s = state(c, [up, up, up, up])
        let macs = (1...400).map { mac(UInt64($0)) }
        let chosen = macs.map { s.uplink(forGuestPort: 0, source: $0)! }
        for m in 0..<4 { #expect(chosen.filter { $0 == m }.count > 60, "member \(m) underused") }
        // Same MAC, same uplink, whatever the guest port.
        #expect(s.uplink(forGuestPort: 5, source: macs[7]) == chosen[7])
        let failed = state(c, [up, up, cut, up], previous: s)
        for (i, m) in macs.enumerated() {
            let now = failed.uplink(forGuestPort: 0, source: m)!
            #expect(now != 2)
            if chosen[i] != 2 { #expect(now == chosen[i]) }
        }
    }

    @Test func ipHashSpreadsFlowsOfOneGuest() {
        let c = TeamConfig(memberCount: 4, policy: .ipHash)
        let s = state(c, [up, up, up, up])
        var count = [0, 0, 0, 0]
        for d in 0..<1000 {
            let f = ipv4Frame(src: 0x0A00_0001, dst: 0xC0A8_0000 | UInt32(d), vlan: d % 2 == 0 ? 10 : nil)
            let u = f.withUnsafeBytes { b in s.uplink(forGuestPort: 3, header: FrameHeader.parse(b)!, frame: b) }
            count[u!] += 1
        }
        for m in 0..<4 { #expect(count[m] > 150, "member \(m) got \(count[m]) of 1000 flows") }
        // A flow always takes the same member; non-IP frames hash on the source MAC.
        #expect(s.uplink(forGuestPort: 3, source: mac(1), ipv4: (1, 2)) == s.uplink(forGuestPort: 7, source: mac(2), ipv4: (1, 2)))
        let arp = FrameBuilder(dst: .broadcast, src: mac(1)).type(EtherType.arp).bytes
        let viaARP = arp.withUnsafeBytes { b in s.uplink(forGuestPort: 3, header: FrameHeader.parse(b)!, frame: b) }
        #expect(viaARP == s.uplink(forGuestPort: 3, source: mac(1)))
        #expect(s.designatedReceiver(vlan: VLANID(10)) == nil)
    }

    @Test(arguments: TeamPolicy.allCases)
    func noHealthyUplinkMeansNil(_ policy: TeamPolicy) {
        let c = TeamConfig(memberCount: 2, policy: policy)
        let s = state(c, [cut, .down(.beaconLost)])
        #expect(s.holders.isEmpty)
        for p in 0..<12 { #expect(s.uplink(forGuestPort: p, source: mac(1), ipv4: (1, 2)) == nil) }
        #expect(s.designatedReceiver(vlan: VLANID(10)) == nil)
        // Missing health entries count as down too.
        #expect(state(c, []).holders.isEmpty)
    }

    @Test(arguments: TeamPolicy.allCases)
    func portsTheTeamDoesNotCarryNeverLeaveByIt(_ policy: TeamPolicy) {
        let s = state(TeamConfig(memberCount: 2, policy: policy), [up, up], ports: 6, carried: [0, 1, 2])
        for p in 3..<8 { #expect(s.uplink(forGuestPort: p, source: mac(1), ipv4: (1, 2)) == nil) }
        #expect(s.uplink(forGuestPort: -1, source: mac(1)) == nil)
        for p in 0..<3 { #expect(s.uplink(forGuestPort: p, source: mac(1), ipv4: (1, 2)) != nil) }
    }

    @Test func configDefaults() {
        let c = TeamConfig(memberCount: 3)
        #expect(c.policy == .portID && c.active == [0, 1, 2] && c.standby == [] && c.failback && c.notifySwitches)
        let f = TeamConfig(memberCount: 3, policy: .failoverOrder, active: [1])
        #expect(f.standby == [0, 2] && f.slotCount == 1)
        let s = TeamConfig(memberCount: 3, standby: [0])
        #expect(s.active == [1, 2] && s.slotCount == 2)
        let unused = state(TeamConfig(memberCount: 3, active: [0], standby: [1]), [up, up, up])
        #expect(unused.role(of: 2) == .unused)
    }
}

@Suite struct TeamAdmissionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var ingress: Int
        var destination: MACAddress
        var learnedOnGuest: Bool
        var announcement: Bool
        var locked: Bool = false
        var expected: TeamAdmission
        var testDescription: String { name }
    }

    static let vlan = VLANID(10)
    static let s = state(TeamConfig(memberCount: 3), [up, up, up])
    static let designated = s.designatedReceiver(vlan: vlan)!
    static let other = (designated + 1) % 3
    static let unicast = mac(0x50)
    static let multicast = MACAddress("01:00:5e:00:00:fb")!

    @Test(arguments: [
        Case(name: "broadcast on the designated receiver", ingress: designated, destination: .broadcast,
             learnedOnGuest: false, announcement: false, expected: .accept),
        Case(name: "broadcast on another uplink", ingress: other, destination: .broadcast,
             learnedOnGuest: false, announcement: false, expected: .dropNotDesignatedReceiver),
        Case(name: "multicast on another uplink", ingress: other, destination: multicast,
             learnedOnGuest: false, announcement: false, expected: .dropNotDesignatedReceiver),
        Case(name: "unicast on any uplink", ingress: other, destination: unicast,
             learnedOnGuest: false, announcement: false, expected: .accept),
        Case(name: "own source reflected (broadcast, designated)", ingress: designated, destination: .broadcast,
             learnedOnGuest: true, announcement: false, expected: .dropReflectedOwnSource),
        Case(name: "own source reflected (unicast)", ingress: other, destination: unicast,
             learnedOnGuest: true, announcement: false, expected: .dropReflectedOwnSource),
        Case(name: "GARP/RARP for a moved MAC", ingress: designated, destination: .broadcast,
             learnedOnGuest: true, announcement: true, expected: .accept),
        Case(name: "GARP/RARP for a moved MAC, non-designated copy", ingress: other, destination: .broadcast,
             learnedOnGuest: true, announcement: true, expected: .dropNotDesignatedReceiver),
        Case(name: "echo of our own announcement (locked)", ingress: designated, destination: .broadcast,
             learnedOnGuest: true, announcement: true, locked: true, expected: .dropReflectedOwnSource),
    ])
    func admission(_ c: Case) {
        #expect(Self.s.admission(ingressUplink: c.ingress, vlan: Self.vlan, destination: c.destination,
                                 sourceLearnedOnGuestPort: c.learnedOnGuest, isGratuitousARPOrRARP: c.announcement,
                                 announcementLocked: c.locked) == c.expected)
    }

    @Test func designatedReceiversSpreadOverVLANsAndFollowFailures() {
        let s = Self.s
        let receivers = (1...60).map { s.designatedReceiver(vlan: VLANID(UInt16($0)))! }
        #expect(Set(receivers) == [0, 1, 2])
        let failed = state(TeamConfig(memberCount: 3), [up, cut, up], previous: s)
        for v in 1...60 {
            let r = failed.designatedReceiver(vlan: VLANID(UInt16(v)))!
            #expect(r != 1)
            if receivers[v - 1] != 1 { #expect(r == receivers[v - 1]) }
        }
        // Failover order: the current uplink receives everything.
        let fo = state(TeamConfig(memberCount: 2, policy: .failoverOrder, active: [1]), [up, up])
        #expect((1...20).allSatisfy { fo.designatedReceiver(vlan: VLANID(UInt16($0))) == 1 })
    }

    @Test func ipHashAcceptsBroadcastOnEveryMember() {
        let s = state(TeamConfig(memberCount: 2, policy: .ipHash), [up, up])
        for m in 0..<2 {
            #expect(s.admission(ingressUplink: m, vlan: VLANID(10), destination: .broadcast, sourceLearnedOnGuestPort: false,
                                isGratuitousARPOrRARP: false) == .accept)
        }
    }

    @Test func announcementsAreRecognised() {
        let garp = arpFrame(src: mac(1), sha: mac(1), spa: [10, 0, 0, 5], tpa: [10, 0, 0, 5])
        let request = arpFrame(src: mac(1), sha: mac(1), spa: [10, 0, 0, 5], tpa: [10, 0, 0, 1])
        let proxied = arpFrame(src: mac(2), sha: mac(1), spa: [10, 0, 0, 5], tpa: [10, 0, 0, 5])
        let rarp = TeamFrames.rarpFrame(source: mac(1), vlan: VLANID(10))
        let ipv4 = ipv4Frame(src: 1, dst: 1)
        func check(_ f: [UInt8]) -> Bool { f.withUnsafeBytes { isAnnouncement(header: FrameHeader.parse($0)!, frame: $0) } }
        #expect(check(garp) && check(rarp))
        #expect(!check(request) && !check(proxied) && !check(ipv4))
        #expect(!check(Array(garp.prefix(30))))
    }
}

@Suite struct TeamNotifyTests {
    let entries = (0..<12).map { TeamMACEntry(vlan: VLANID(10), mac: mac(UInt64(0x100 + $0)), port: $0) }
        + [TeamMACEntry(vlan: VLANID(20), mac: mac(0x200), port: 1),
           TeamMACEntry(vlan: VLANID(10), mac: mac(0x300), port: 40)]   // not carried

    @Test func failoverAndFailbackAnnounceWhatMoved() {
        let c = TeamConfig(memberCount: 3, active: [0, 1], standby: [2])
        let s0 = state(c, [up, up, up])
        let s1 = state(c, [cut, up, up], previous: s0)
        let moved = s0.carries(0)  // ports 0, 2, 4, …
        let expected = entries.filter { moved.contains($0.port) }.map { TeamAnnouncement(vlan: $0.vlan, mac: $0.mac) }
        #expect(TeamState.announcements(from: s0, to: s1, entries: entries) == [[], [], expected])
        let s2 = state(c, [up, up, up], previous: s1)
        #expect(TeamState.announcements(from: s1, to: s2, entries: entries) == [expected, [], []])
        #expect(TeamState.announcements(from: s2, to: s2, entries: entries) == [[], [], []])
    }

    @Test func failoverOrderAnnouncesEveryGuestMAC() {
        let c = TeamConfig(memberCount: 2, policy: .failoverOrder, active: [0])
        let s0 = state(c, [up, up])
        let s1 = state(c, [cut, up], previous: s0)
        let all = entries.filter { $0.port < 12 }.map { TeamAnnouncement(vlan: $0.vlan, mac: $0.mac) }
        #expect(TeamState.announcements(from: s0, to: s1, entries: entries) == [[], all])
        // Coming back from "no uplink at all" announces too.
        let none = state(c, [cut, cut], previous: s1)
        #expect(TeamState.announcements(from: s1, to: none, entries: entries) == [[], []])
        #expect(TeamState.announcements(from: none, to: state(c, [cut, up], previous: none), entries: entries) == [[], all])
    }

    @Test func srcMACAnnouncesOnlyTheFailedMembersMACs() {
        let c = TeamConfig(memberCount: 3, policy: .srcMAC)
        let s0 = state(c, [up, up, up])
        let s1 = state(c, [up, up, cut], previous: s0)
        let lists = TeamState.announcements(from: s0, to: s1, entries: entries)
        let announced = lists.flatMap { $0 }
        let onTwo = entries.filter { s0.uplink(carrying: $0) == 2 }.map { TeamAnnouncement(vlan: $0.vlan, mac: $0.mac) }
        #expect(Set(announced) == Set(onTwo) && !onTwo.isEmpty && lists[2].isEmpty)
    }

    @Test func nothingWithoutNotifySwitchesOrWithIPHash() {
        let off = TeamConfig(memberCount: 2, notifySwitches: false)
        #expect(TeamState.announcements(from: state(off, [up, up]), to: state(off, [cut, up]), entries: entries) == [[], []])
        let ip = TeamConfig(memberCount: 2, policy: .ipHash)
        #expect(TeamState.announcements(from: state(ip, [up, up]), to: state(ip, [cut, up]), entries: entries) == [[], []])
    }
}

@Suite struct TeamFrameTests {
    @Test func rarpUntaggedBytes() {
        let f = TeamFrames.rarpFrame(source: MACAddress("52:54:00:12:34:56")!, vlan: nil)
        let expected: [UInt8] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x80, 0x35,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03,
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0,
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0,
        ] + [UInt8](repeating: 0, count: 18)
        #expect(f == expected)
        #expect(f.count == 60)
        #expect(TeamFrames.rarpFrame(source: MACAddress("52:54:00:12:34:56")!, vlan: .untagged) == expected)
    }

    @Test func rarpTaggedBytes() {
        let f = TeamFrames.rarpFrame(source: MACAddress("52:54:00:12:34:56")!, vlan: VLANID(100))
        let expected: [UInt8] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0x00, 0x64, 0x80, 0x35,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03,
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0,
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0,
        ] + [UInt8](repeating: 0, count: 14)
        #expect(f == expected)
        let h = f.withUnsafeBytes { FrameHeader.parse($0)! }
        #expect(h.outerTag?.vid == 100 && h.etherType == EtherType.rarp && h.destination.isBroadcast)
    }

    @Test(arguments: [nil, VLANID(7)] as [VLANID?])
    func beaconRoundTrip(_ vlan: VLANID?) {
        let f = TeamFrames.beaconFrame(source: mac(0xA1), vlan: vlan, teamID: 0xDEAD_BEEF, sender: 2, sequence: 0x0102_0304)
        #expect(f.count == 60)
        let (h, b) = f.withUnsafeBytes { raw -> (FrameHeader, Beacon?) in
            let h = FrameHeader.parse(raw)!
            return (h, Beacon.parse(header: h, frame: raw))
        }
        #expect(h.destination == TeamFrames.beaconDestination && h.destination.isMulticast && h.destination.isLocallyAdministered)
        #expect(h.etherType == 0x88B5 && h.source == mac(0xA1) && h.outerTag?.vid == vlan?.rawValue)
        #expect(b == Beacon(teamID: 0xDEAD_BEEF, sender: 2, sequence: 0x0102_0304))
        #expect(Array(f[(h.payloadOffset)..<(h.payloadOffset + 4)]) == [0x54, 0x42, 1, 0])
        // Another 0x88B5 user is not a beacon.
        var other = f; other[h.payloadOffset] = 0
        #expect(other.withUnsafeBytes { Beacon.parse(header: FrameHeader.parse($0)!, frame: $0) } == nil)
    }
}

@Suite struct BeaconMonitorTests {
    let v10 = VLANID(10), v20 = VLANID(20)

    func probe(_ sender: Int, team: UInt32 = 7) -> Beacon { Beacon(teamID: team, sender: sender, sequence: 0) }

    @Test func missingThreeProbesMarksDownAndAProbeBringsItBack() {
        var m = BeaconMonitor(teamID: 7, memberCount: 3, vlans: [v10, v20], now: .milliseconds(0))
        #expect(m.warning == nil)
        // Every second: members 1 and 2 hear each other on both VLANs; member 0 hears nothing.
        for t in stride(from: Int64(1000), through: 5000, by: 1000) {
            for v in [v10, v20] {
                m.received(probe(2), on: 1, vlan: v, now: .milliseconds(t))
                m.received(probe(1), on: 2, vlan: v, now: .milliseconds(t))
                m.received(probe(0), on: 0, vlan: v, now: .milliseconds(t))       // its own probe proves nothing
                m.received(probe(1, team: 8), on: 0, vlan: v, now: .milliseconds(t))   // another team's neither
            }
            let expected: [MemberHealth] = t < 3000 ? [.up, .up, .up] : [.down(.beaconLost), .up, .up]
            #expect(m.health(now: .milliseconds(t)) == expected, "at \(t) ms")
        }
        #expect(m.health(now: .milliseconds(2999)) == [.up, .up, .up])
        // Member 0 hears member 1 on VLAN 10 only: still down (VLAN 20 is broken for it).
        m.received(probe(1), on: 0, vlan: v10, now: .milliseconds(5500))
        #expect(m.health(now: .milliseconds(5500))[0] == .down(.beaconLost))
        m.received(probe(2), on: 0, vlan: v20, now: .milliseconds(5600))
        #expect(m.health(now: .milliseconds(5600)) == [.up, .up, .up])
        // A VLAN the monitor does not watch is ignored.
        m.received(probe(1), on: 0, vlan: VLANID(30), now: .milliseconds(9000))
        m.received(probe(2), on: 1, vlan: v10, now: .milliseconds(9000))
        m.received(probe(2), on: 1, vlan: v20, now: .milliseconds(9000))
        #expect(m.health(now: .milliseconds(9000))[0] == .down(.beaconLost))
    }

    @Test func fewerThanThreeUplinksWarnsAndBlamesNobody() {
        let two = BeaconMonitor(teamID: 1, memberCount: 2, vlans: [v10], now: .milliseconds(0))
        #expect(two.warning != nil)
        #expect(BeaconMonitor(teamID: 1, memberCount: 1, vlans: [v10], now: .milliseconds(0)).warning != nil)
        // With two members a broken path silences both: nobody can be blamed.
        #expect(two.health(now: .milliseconds(10_000)) == [.up, .up])
        // Everybody silent in a bigger team: not isolated either.
        #expect(BeaconMonitor(teamID: 1, memberCount: 3, vlans: [v10], now: .milliseconds(0)).health(now: .milliseconds(10_000)) == [.up, .up, .up])
    }

    @Test func beaconHealthFeedsTheTeam() {
        var m = BeaconMonitor(teamID: 7, memberCount: 3, vlans: [v10], now: .milliseconds(0))
        m.received(probe(2), on: 1, vlan: v10, now: .milliseconds(3000))
        m.received(probe(1), on: 2, vlan: v10, now: .milliseconds(3000))
        let s = state(TeamConfig(memberCount: 3, policy: .failoverOrder, active: [0]), m.health(now: .milliseconds(3000)))
        #expect(s.uplink(forGuestPort: 0, source: mac(1)) == 1)
    }
}
