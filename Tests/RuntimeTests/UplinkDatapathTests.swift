import Core
import Foundation
import Model
import Runtime
import Testing
import TestSupport

/// The datapath with a NIC team, over socket-pair ports: an uplink reads plain frames and
/// writes frames with a virtio-net header (like `PacketPort` with PACKET_VNET_HDR).
@Suite(.serialized) struct UplinkDatapathTests {
    static let v10 = VLANID(10)
    let plan = SwitchPlan(name: "sw0", ports: [
        PortPlan(name: "a.eth0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xA), acceptsOffloads: true),
        PortPlan(name: "b.eth0", portGroup: "lan", mode: .access(v10), configuredMAC: mac(0xB), acceptsOffloads: true),
        PortPlan(name: "u0", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 0, usesUplinks: false, acceptsOffloads: true),
        PortPlan(name: "u1", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([v10]), native: .untagged),
                 security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true), uplinkMember: 1, usesUplinks: false, acceptsOffloads: true),
    ], team: TeamConfig(memberCount: 2, policy: .failoverOrder, active: [0], standby: [1]))

    func ports() -> [SocketPairPort] {
        [SocketPairPort(vnetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 12),
         SocketPairPort(vnetHeaderSize: 0, txVNetHeaderSize: 12), SocketPairPort(vnetHeaderSize: 0, txVNetHeaderSize: 12)]
    }

    @Test func aGuestsGSOFrameLeavesByTheActiveUplinkTaggedWithItsHeader() throws {
        let p = ports()
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let frame = FrameBuilder(dst: mac(0xEE), src: mac(0xA)).payload(20_000).bytes
        p[0].inject(OffloadTests.header() + frame)
        let tagged = FrameBuilder(dst: mac(0xEE), src: mac(0xA)).tagged(10).payload(20_000).bytes
        #expect(p[2].received() == [OffloadTests.header(hdrLen: 58, csumStart: 38) + tagged],
                "whole, tagged 10, offsets shifted: the kernel segments it")
        #expect(p[3].received(waitingMilliseconds: 50).isEmpty, "never by the standby")
        _ = p[1].received()
    }

    @Test func framesFromOutsideReachGuestsWithAPlainHeaderAndNeverTheOtherUplink() throws {
        let p = ports()
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: p)])
        dp.start()
        defer { dp.stop() }
        let frame = FrameBuilder(dst: .broadcast, src: mac(0xEE)).tagged(10).bytes
        p[2].inject(frame)
        let untagged = FrameBuilder(dst: .broadcast, src: mac(0xEE)).bytes
        let zero = [UInt8](repeating: 0, count: 12)
        #expect(p[0].received() == [zero + untagged])
        #expect(p[1].received() == [zero + untagged])
        #expect(p[3].received(waitingMilliseconds: 50).isEmpty)
        // The standby receives nothing: its copy of the flood is dropped and counted.
        p[3].inject(frame)
        #expect(p[0].received(waitingMilliseconds: 50).isEmpty)
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 3).drops } == [.teamInactiveUplink: 1])
        // A reflection of a guest's own frame is dropped.
        p[0].inject(zero + FrameBuilder(dst: .broadcast, src: mac(0xA)).bytes)
        _ = p[1].received(); _ = p[2].received()
        p[2].inject(FrameBuilder(dst: .broadcast, src: mac(0xA)).tagged(10).bytes)
        #expect(p[1].received(waitingMilliseconds: 50).isEmpty)
        #expect(dp.withLock { l in l.switches[0].counters(l).snapshot(port: 2).drops } == [.teamReflectedSource: 1])
    }
}
