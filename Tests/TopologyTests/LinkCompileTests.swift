import Core
import Model
import Testing
@testable import Topology

// Link ends compile into ports of their switches.

@Test func eachLinkEndIsAPortWithItsGroupsVLANModeAndItsPeer() throws {
    let t = try TopologyLoader.parse(threeSwitches + """
    links:
      - {between: [s1/tr, s2/tr]}
      - {between: [s2/v20, s3/v10]}
      - {between: [s1/x, s2/v10]}
    guests:
      g1: {kind: netns, nics: [{switch: s1, port-group: v10}]}
    """, file: "t")
    let plans = t.compile()
    let s1 = plans[0], s2 = plans[1], s3 = plans[2]
    #expect(s1.ports.map(\.name) == ["g1.eth0", "link-s2", "link-s2-2"])
    #expect(s2.ports.map(\.name) == ["link-s1", "link-s3", "link-s1-2"])
    #expect(s3.ports.map(\.name) == ["link-s2"])
    let l = s1.ports[1]
    #expect(l.isLink && l.kind == "link" && !l.isUplink)
    #expect(l.link == LinkPeer(switchName: "s2", portName: "link-s1"))
    #expect(l.mode == t.switches[0].portGroup(named: "tr")!.mode && l.portGroup == "tr")
    // A link carries every MAC behind the other switch: any source, the switch's table size.
    #expect(l.security == PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true))
    #expect(l.macLimit == t.switches[0].macLimit && l.acceptsOffloads && l.configuredMAC == nil)
    #expect(s2.ports[1].mode == .access(VLANID(20)) && s3.ports[0].mode == .access(VLANID(10)), "VLAN translation: 20 on s2, 10 on s3")
    #expect(s1.ports[0].kind == "guest")
}

@Test func aLinkReloadChangesOnlyTheLinks() throws {
    let base = threeSwitches + "links:\n  - {between: [s1/tr, s2/tr]}\n"
    let old = try TopologyLoader.parse(base, file: "t")
    let new = try TopologyLoader.parse(base + "  - {between: [s2/v20, s3/v10]}\n", file: "t")
    let d = try Topology.diff(from: old, to: new)
    #expect(d.linksAdded.map(\.label) == ["s2/v20~s3/v10"] && d.linksRemoved.isEmpty)
    #expect(d.switchesChanged.isEmpty && d.guestsChanged.isEmpty, "no switch or guest is touched: \(d.summary)")
}
