import Core
import Foundation
import Model
@testable import Runtime
import Testing
import TestSupport

/// The datapath applies the policies' effects, `tapestry mdb` reads the group table, and
/// `trace` explains all three (over socket-pair ports: no root needed).
@Suite(.serialized) struct PolicyRuntimeTests {
    static let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "v10", mode: .access(VLANID(10))),
        PortPlan(name: "b.eth0", portGroup: "v10", mode: .access(VLANID(10)),
                 shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 8_000, burstBytes: 1500))),
        PortPlan(name: "p.eth0", portGroup: "prom", mode: .access(VLANID(100))),
        PortPlan(name: "i.eth0", portGroup: "iso", mode: .access(VLANID(101))),
        PortPlan(name: "j.eth0", portGroup: "iso", mode: .access(VLANID(101))),
    ], privateVLANs: [PrivateVLAN(primary: VLANID(100), isolated: VLANID(101))],
       multicast: MulticastSnooping(staticGroups: [StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(ipv4: ipv4(239, 9, 9, 9)), ports: [1])]))

    @Test func reportsJoinAndMDBListsThem() throws {
        let ports = (0..<5).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: Self.plan, ports: ports)])
        dp.start()
        defer { dp.stop() }
        ports[0].inject(MulticastFrames.igmpv2Report(from: mac(0xA), source: ipv4(10, 0, 0, 1), group: ipv4(239, 1, 1, 1)))
        #expect(ports[1].received(waitingMilliseconds: 100).isEmpty, "a report goes to router ports only (there are none)")
        // Data to the group reaches the member only.
        ports[1].inject(MulticastFrames.udp(from: mac(0xB), source: ipv4(10, 0, 0, 2), group: ipv4(239, 1, 1, 1)))
        #expect(ports[0].received().count == 1)
        let report = Fabric.mdb(of: dp, only: nil)
        #expect(Set(report.entries.map { "\($0.vlan) \($0.group) \($0.port) \($0.type)" })
                == ["10 239.1.1.1 a.eth0 dynamic", "10 239.9.9.9 b.eth0 static"])
        #expect(report.tables.first?.groups == 2 && report.tables.first?.groupCapacity == 2048)
        let json = String(decoding: try JSON.encoder().encode(report), as: UTF8.self)
        for key in ["\"age_seconds\"", "\"expires_seconds\"", "\"membership_interval_seconds\"", "\"refused_joins\"", "\"group_capacity\""] {
            #expect(json.contains(key), "mdb JSON has \(key)")
        }
        // A malformed IGMP message is counted on its port.
        ports[0].inject(MulticastFrames.ipv4(from: mac(0xA), source: ipv4(10, 0, 0, 1), destination: ipv4(239, 1, 1, 1), protocol: 2,
                                             payload: MulticastFrames.igmp([0x16, 0, 0, 0, 239, 1, 1, 1], corrupt: true)))
        usleep(100_000)
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 0).drops[.malformedIGMP] } == 1)
    }

    @Test func traceExplainsSnoopingPrivateVLANsAndShaping() throws {
        let ports = (0..<5).map { _ in SocketPairPort() }
        let dp = try Datapath(switches: [SwitchRuntime(plan: Self.plan, ports: ports)])
        dp.start()
        defer { dp.stop() }
        func trace(_ frame: [UInt8], _ port: Int) -> TraceReport.FrameTrace {
            dp.withLock { l in traceFrame(frame, inPort: port, plan: Self.plan, context: l.switches[0].context(now: dp.now(), l)) }
        }
        let report = trace(MulticastFrames.igmpv3Report(from: mac(0xA), source: ipv4(10, 0, 0, 1),
                                                        records: [(2, ipv4(239, 1, 1, 1), []), (3, ipv4(239, 1, 1, 2), [])]), 0)
        #expect(report.verdict == "multicast-routers")
        #expect(report.multicast?.kind == "report")
        #expect(report.multicast?.records?.map { "\($0.type) \($0.group) \($0.effect)" } == ["IS_EX 239.1.1.1 join", "TO_IN 239.1.1.2 not-a-member"])
        #expect(report.steps.contains { $0.stage == "snoop" })
        let data = trace(MulticastFrames.udp(from: mac(0xA), source: ipv4(10, 0, 0, 1), group: ipv4(239, 9, 9, 9)), 0)
        #expect(data.verdict == "multicast-group" && data.multicast?.registered == true && data.multicast?.members == ["b.eth0"])
        #expect(data.egress.map(\.port) == ["b.eth0"])
        // Private VLAN: an isolated port's broadcast reaches the promiscuous port only.
        let iso = trace(FrameBuilder(dst: .broadcast, src: mac(0x11)).type(EtherType.arp).bytes, 3)
        #expect(iso.privateVlan?.type == "isolated" && iso.privateVlan?.primary == "100")
        #expect(iso.privateVlan?.skipped.map(\.port) == ["j.eth0"])
        #expect(iso.egress.map(\.port) == ["p.eth0"])
        // Shaping: b's bucket holds 1500 bytes; a 1514-byte frame is over it only once the
        // bucket is not full (it borrows when full): trace shows the answer.
        let shaped = trace(FrameBuilder(dst: .broadcast, src: mac(0xB)).payload(1500).bytes, 1)
        #expect(shaped.shaping?.first?.direction == "ingress" && shaped.shaping?.first?.admitted == true)
        ports[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).payload(1500).bytes)
        _ = ports[0].received()
        let after = trace(FrameBuilder(dst: .broadcast, src: mac(0xB)).payload(1500).bytes, 1)
        #expect(after.verdict == "drop" && after.dropReason == "shaping-ingress")
        ports[1].inject(FrameBuilder(dst: .broadcast, src: mac(0xB)).payload(1500).bytes)
        usleep(100_000)
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 1).drops[.shapingIngress] } == 1, "and forwarding agrees")
    }
}
