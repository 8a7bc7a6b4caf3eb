import Core
import Foundation
import Model
import Testing
@testable import Topology

// The port-group and switch policies compiled into the plan (`Topology.compile`).

@Test func shapingCompilesOntoEveryPortOfTheGroup() throws {
    let t = try TopologyLoader.parse("""
    name: lab
    switches:
      sw0:
        uplinks: {nics: [eth1]}
        port-groups:
          shaped:
            vlan: 10
            shaping:
              ingress: {average: 50mbit, burst: 2MiB}
              egress: {average: 100mbit, peak: 200mbit, burst: 4MiB}
          egress-only: {vlan: 10, shaping: {egress: {average: 1gbit}}}
          plain: {vlan: 10}
          tr: {vlan: {trunk: [10]}, shaping: {ingress: {average: 10mbit}}}
      sw1:
        port-groups: {tr: {vlan: {trunk: [10]}}}
    links: [{between: [sw0/tr, sw1/tr]}]
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: shaped}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: egress-only}, {switch: sw0, port-group: plain}]}
    """, file: "t")
    let plan = t.compile()[0]
    #expect(plan.ports.map(\.name) == ["a.eth0", "b.eth0", "b.eth1", "link-sw1", "eth1"])
    let a = try #require(plan.ports[0].shaping)
    #expect(a.ingress == ShapingLimit(averageBitsPerSecond: 50_000_000, burstBytes: 2 << 20))
    #expect(a.egress == ShapingLimit(averageBitsPerSecond: 100_000_000, peakBitsPerSecond: 200_000_000, burstBytes: 4 << 20))
    // The burst left out is the group's minimum: one TSO frame with its headers.
    #expect(plan.ports[1].shaping == ShapingPolicy(egress: ShapingLimit(averageBitsPerSecond: 1_000_000_000, burstBytes: 65_593)))
    #expect(plan.ports[2].shaping == nil, "an unshaped group compiles to no shaping")
    // A link end is a port of its group, so it is shaped too; uplinks never are.
    #expect(plan.ports[3].shaping?.ingress?.averageBitsPerSecond == 10_000_000 && plan.ports[3].shaping?.egress == nil)
    #expect(plan.ports[4].shaping == nil)
    #expect(plan.hasShaping && !t.compile()[1].hasShaping)
    // The shaper built from the plan shapes exactly those port directions.
    let shaper = TrafficShaper(plan: plan)
    #expect((0..<5).map { shaper.shapes(port: $0, .ingress) } == [true, false, false, true, false])
    #expect((0..<5).map { shaper.shapes(port: $0, .egress) } == [true, true, false, false, false])
}

@Test func aShapingSpecWithoutBurstCompilesToTheMinimum() {
    let p = Topology.shapingPolicy(ShapingSpec(ingress: ShapingRate(average: 1_000_000, peak: 1_000_000, burst: 0)), mtu: 1500)
    #expect(p?.ingress?.burstBytes == ShapingLimit.largestFrame)
    #expect(Topology.shapingPolicy(ShapingSpec(), mtu: 1500) == nil)
}

@Test func privateVLANsCompileIntoThePlan() throws {
    let t = try TopologyLoader.parse("""
    name: lab
    switches:
      sw0:
        uplinks: {nics: [eth1]}
        private-vlans:
          100: {isolated: 101, community: [102, 103]}
          200: {isolated: 201}
        port-groups:
          prom: {vlan: {private: 100}}
          iso: {vlan: {private: 101}}
          comm: {vlan: {private: 102}}
          lab-only: {vlan: {private: 201}, uplinks: none}
          web: {vlan: 10}
          tr: {vlan: {trunk: [10, 100, 101]}}
    guests:
      p: {kind: netns, nics: [{switch: sw0, port-group: prom}]}
      i1: {kind: netns, nics: [{switch: sw0, port-group: iso}]}
      i2: {kind: netns, nics: [{switch: sw0, port-group: iso}]}
      c1: {kind: netns, nics: [{switch: sw0, port-group: comm}]}
      c2: {kind: netns, nics: [{switch: sw0, port-group: comm}]}
      w: {kind: netns, nics: [{switch: sw0, port-group: web}]}
      x: {kind: netns, nics: [{switch: sw0, port-group: tr}]}
      l: {kind: netns, nics: [{switch: sw0, port-group: lab-only}]}
    """, file: "t")
    let plan = t.compile()[0]
    #expect(plan.privateVLANs == [PrivateVLAN(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102), VLANID(103)]),
                                  PrivateVLAN(primary: VLANID(200), isolated: VLANID(201))])
    // A private VLAN port is an access port in its ID; the ID gives its role.
    #expect(plan.ports[0].mode == .access(VLANID(100)) && plan.ports[1].mode == .access(VLANID(101)))
    #expect(plan.hot[0].privateVLANType == PrivateVLANType.promiscuous.rawValue)
    #expect(plan.hot[1].privateVLANType == PrivateVLANType.isolated.rawValue)
    #expect(plan.hot[3].privateVLANType == PrivateVLANType.community.rawValue)
    #expect([0, 1, 3].allSatisfy { plan.hot[$0].privateVLANPrimary == VLANID(100) })
    #expect(plan.hot[5].privateVLANType == 0 && plan.hot[6].privateVLANType == 0)
    #expect(plan.learningVLAN(VLANID(102)) == VLANID(100) && plan.learningVLAN(VLANID(10)) == VLANID(10))
    // The matrix, in the flood sets (uplink eth1 is port 8; trunk x is port 6).
    #expect(Array(plan.floodSet(VLANID(100))) == [0, 1, 2, 3, 4, 6, 8], "promiscuous traffic reaches every port of the PVLAN")
    #expect(Array(plan.floodSet(VLANID(101))) == [0, 6, 8], "isolated: the promiscuous port and the trunks only")
    #expect(Array(plan.floodSet(VLANID(102))) == [0, 3, 4, 8], "community: its members, the promiscuous port, the uplink")
    // Uplinks carry a private VLAN whole (primary and every secondary, 103 without any port
    // too), the plain VLANs of groups with uplinks, and not the lab-only private VLAN.
    guard case .trunk(let carried, let native) = plan.ports[8].mode else { Issue.record("uplink is not a trunk"); return }
    #expect(Array(carried) == [10, 100, 101, 102, 103].map { VLANID($0) } && native == nil)
}

@Test func multicastSnoopingCompilesWithPortIndexes() throws {
    let t = try TopologyLoader.parse("""
    name: lab
    switches:
      sw0:
        uplinks: {nics: [eth1]}
        private-vlans: {100: {isolated: 101}}
        multicast-snooping: true
        multicast-querier: true
        multicast-querier-source: 10.0.0.254
        multicast-membership-interval: 90s
        multicast-router-ports: [r.eth0]
        multicast-static-groups:
          - {group: 239.1.1.1, ports: [a.eth0, b.eth0]}
          - {group: "ff05::1:3", vlan: 101, ports: [i.eth0]}
        port-groups:
          v10: {vlan: 10}
          tr: {vlan: {trunk: [10, 20]}}
          iso: {vlan: {private: 101}}
      quiet:
        port-groups: {v10: {vlan: 10}}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: v10}, {switch: quiet, port-group: v10}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: v10}]}
      r: {kind: netns, nics: [{switch: sw0, port-group: tr}]}
      i: {kind: netns, nics: [{switch: sw0, port-group: iso}]}
    """, file: "t")
    let plans = t.compile()
    #expect(plans[1].multicast == nil, "snooping is off unless asked for")
    let plan = plans[0]
    #expect(plan.ports.map(\.name) == ["a.eth0", "b.eth0", "r.eth0", "i.eth0", "eth1"])
    let m = try #require(plan.multicast)
    #expect(m.membershipInterval == .seconds(90))
    #expect(m.routerPorts == [2])
    #expect(plan.multicastRouterPorts == [2, 4], "the configured router port and the uplink")
    #expect(m.staticGroups == [
        StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(ipv4: 0xEF01_0101), ports: [0, 1]),
        // A secondary's group is kept under its primary, the VLAN it is learned in.
        StaticMulticastGroup(vlan: VLANID(100), group: WireIPAddress(high: 0xFF05_0000_0000_0000, low: 0x1_0003), ports: [3]),
    ])
    let q = try #require(m.querier)
    #expect(q == MulticastQuerierSettings.derived(topology: "lab", switchName: "sw0", ipv4Source: 0x0A00_00FE, membershipInterval: .seconds(90)))
    #expect(q.mldSource.isIPv6LinkLocalUnicast, "MLD queries come from a link-local source (RFC 3810 §5)")
    #expect(q.timers.queryResponseInterval == .seconds(10) && q.timers.queryInterval == .seconds(40))
    // The group table built from the plan holds the static memberships.
    let table = MulticastGroupTable(snooping: m, portCount: plan.ports.count)
    #expect(table.members(vlan: VLANID(10), group: WireIPAddress(ipv4: 0xEF01_0101)).sorted() == [0, 1])
    #expect(table.members(vlan: VLANID(100), group: WireIPAddress(high: 0xFF05_0000_0000_0000, low: 0x1_0003)) == [3])
    // Without a querier the plan has none; the querier of another switch differs.
    let noQuerier = try TopologyLoader.parse("name: lab\nswitches:\n  sw1:\n    multicast-snooping: true\n    port-groups: {v: {vlan: 1}}\n", file: "t")
    #expect(noQuerier.compile()[0].multicast?.querier == nil && noQuerier.compile()[0].multicast?.routerPorts == [])
    #expect(MulticastQuerierSettings.derived(topology: "lab", switchName: "sw1").mac != q.mac)
}

@Test func aTunnelPortWouldBeAMulticastRouterPort() {
    // The overlay's hook: no compiled port is a tunnel yet, so nothing is implicit today.
    let ports = [PortPlan(name: "a.eth0", portGroup: "v", mode: .access(VLANID(1))),
                 PortPlan(name: "eth1", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: VLANSet([VLANID(1)]), native: nil), uplinkMember: 0)]
    #expect(Topology.implicitRouterPorts(ports) == [])
}

@Test func thePoliciesTopologyCompilesAllThree() throws {
    let t = try TopologyLoader.load(path: topologiesDirectory.appendingPathComponent("policies.yaml").path)
    let plan = t.compile()[0]
    let w1 = try #require(plan.portIndex(named: "w1.eth0"))
    #expect(plan.ports[w1].shaping?.ingress == ShapingLimit(averageBitsPerSecond: 50_000_000, burstBytes: 2 << 20))
    #expect(plan.ports[w1].shaping?.egress?.peakBitsPerSecond == 400_000_000)
    #expect(plan.privateVLANs.map(\.primary) == [VLANID(100)])
    let t1 = try #require(plan.portIndex(named: "t1.eth0")), t2 = try #require(plan.portIndex(named: "t2.eth0"))
    #expect(plan.hot[t1].privateVLANType == PrivateVLANType.isolated.rawValue)
    #expect(!plan.floodSet(VLANID(101)).contains(Int32(t2)), "isolated ports do not reach each other")
    #expect(plan.multicast?.querier != nil)
}
