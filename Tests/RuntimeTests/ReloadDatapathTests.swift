import Core
import Foundation
import LinuxIO
import Model
import Runtime
import TestSupport
import Testing

/// `Datapath.replaceSwitches`: the swap half of live reload, with socket-pair ports.
@Suite(.serialized) struct ReloadDatapathTests {
    static func port(_ name: String, _ vlan: UInt16) -> PortPlan {
        PortPlan(name: name, portGroup: "g\(vlan)", mode: .access(VLANID(vlan)))
    }

    @Test func survivingPortsKeepEntriesAndCountersAcrossReorderingAndRemoval() throws {
        let a = SocketPairPort(), b = SocketPairPort(), c = SocketPairPort()
        let old = SwitchPlan(name: "sw0", ports: [Self.port("a.eth0", 10), Self.port("c.eth0", 10), Self.port("b.eth0", 10)])
        let dp = try Datapath(switches: [SwitchRuntime(plan: old, ports: [a, c, b])])
        dp.start()
        defer { dp.stop() }
        a.inject(FrameBuilder(dst: .broadcast, src: mac(0xA)).type(EtherType.arp).bytes)
        #expect(b.received().count == 1 && c.received().count == 1)
        b.inject(FrameBuilder(dst: mac(0xA), src: mac(0xB)).bytes)
        #expect(a.received().count == 1)

        // c goes away, b moves from index 2 to 0, a new port d arrives in VLAN 10.
        let d = SocketPairPort()
        let new = SwitchPlan(name: "sw0", ports: [Self.port("b.eth0", 10), Self.port("a.eth0", 10), Self.port("d.eth0", 10)])
        try dp.replaceSwitches([SwitchRuntime(plan: new, ports: [b, a, d])])

        let (entries, counters) = dp.withLock { l in
            (l.switches[0].table(l).entries(now: .now), (0..<3).map { l.switches[0].counters(l).snapshot(port: $0) })
        }
        #expect(Set(entries.map { "\($0.mac)/\($0.port)" }) == ["\(mac(0xA))/1", "\(mac(0xB))/0"], "entries follow their ports' new indexes")
        #expect(counters[0].rxFrames == 1 && counters[0].txFrames == 1, "b kept its counters")
        #expect(counters[1].rxFrames == 1 && counters[1].txFrames == 1, "a kept its counters")
        #expect(counters[2].rxFrames == 0, "d starts at zero")

        // Known unicast is still not flooded (d sees nothing); the moved fds forward correctly.
        a.inject(FrameBuilder(dst: mac(0xB), src: mac(0xA)).bytes)
        #expect(b.received().count == 1)
        #expect(d.received(waitingMilliseconds: 50).isEmpty)
        #expect(c.received(waitingMilliseconds: 50).isEmpty, "a removed port gets nothing")
        d.inject(FrameBuilder(dst: mac(0xA), src: mac(0xD)).bytes)
        #expect(a.received().count == 1, "the new port forwards")
    }

    @Test func entriesOfAPortThatLeftTheVLANAreDropped() throws {
        let a = SocketPairPort(), b = SocketPairPort()
        let dp = try Datapath(switches: [SwitchRuntime(plan: SwitchPlan(name: "sw0", ports: [Self.port("a.eth0", 10), Self.port("b.eth0", 10)]), ports: [a, b])])
        dp.start()
        defer { dp.stop() }
        a.inject(FrameBuilder(dst: .broadcast, src: mac(0xA)).type(EtherType.arp).bytes)
        #expect(b.received().count == 1)
        try dp.replaceSwitches([SwitchRuntime(plan: SwitchPlan(name: "sw0", ports: [Self.port("a.eth0", 20), Self.port("b.eth0", 10)]), ports: [a, b])])
        #expect(dp.withLock { l in l.switches[0].table(l).count } == 0, "a is no longer in VLAN 10: its VLAN 10 entry is gone")
        a.inject(FrameBuilder(dst: .broadcast, src: mac(0xA)).type(EtherType.arp).bytes)
        #expect(b.received(waitingMilliseconds: 100).isEmpty, "VLAN 20 does not reach b")
    }
}
