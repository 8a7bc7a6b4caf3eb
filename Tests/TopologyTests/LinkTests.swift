import Core
import Model
import Testing
@testable import Topology

// Links between switches.

let threeSwitches = """
name: lab
switches:
  s1:
    port-groups: {tr: {vlan: {trunk: [10, 20]}}, v10: {vlan: 10}, v20: {vlan: 20}, x: {vlan: 30}}
  s2:
    port-groups: {tr: {vlan: {trunk: [10, 20]}}, v10: {vlan: 10}, v20: {vlan: 20}}
  s3:
    port-groups: {tr: {vlan: {trunk: [10, 20]}}, v10: {vlan: 10}}

"""

@Test func linksMakeOnePortPerEndNamedAfterTheOtherSwitch() throws {
    let t = try TopologyLoader.parse(threeSwitches + """
    links:
      - {between: [s1/tr, s2/tr]}
      - {between: [s2/v20, s3/v10]}
      - {between: [s1/x, s2/v10]}
    """, file: "t")
    #expect(t.links.map { $0.ends.map { "\($0.switchName):\($0.portName)" } } == [
        ["s1:link-s2", "s2:link-s1"], ["s2:link-s3", "s3:link-s2"], ["s1:link-s2-2", "s2:link-s1-2"],
    ])
    #expect(t.links[1].end(on: "s3")?.portGroup == "v10")
    #expect(t.links[0].host == nil)
}

@Test func aLoopOfThreeLinksIsRefusedAtTheLinkThatClosesIt() {
    let d = diagnostics(yaml: threeSwitches + """
    links:
      - {between: [s1/tr, s2/tr]}
      - {between: [s2/tr, s3/tr]}
      - {between: [s3/tr, s1/tr]}
    """)
    #expect(d == ["t.yaml:12:5: error: this link between 's3' and 's1' makes a loop: VLAN 10 of 's3' already reaches VLAN 10 of 's1' through other links (there is no spanning tree)"])
}

@Test func twoLinksCarryingDifferentVLANsAreNoLoop() throws {
    // s1 and s2 joined twice, once per VLAN: two separate domains, no loop.
    let t = try TopologyLoader.parse(threeSwitches + """
    links:
      - {between: [s1/v10, s2/v10]}
      - {between: [s1/v20, s2/v20]}
    """, file: "t")
    #expect(t.links.count == 2)
    // Twice in the same VLAN (access 10 on both, or access 10 into a trunk's VLAN 10): a loop.
    #expect(diagnostics(yaml: threeSwitches + """
    links:
      - {between: [s1/v10, s2/v10]}
      - {between: [s1/tr, s2/tr]}
    """) == ["t.yaml:11:5: error: this link between 's1' and 's2' makes a loop: VLAN 10 of 's1' already reaches VLAN 10 of 's2' through other links (there is no spanning tree)"])
}

@Test func linksTranslateVLANsTheWayACableWould() {
    // access 30 on s1 ↔ access 10 on s2: s1's VLAN 30 and s2's VLAN 10 are one domain.
    #expect(L2Domains.edges(.access(VLANID(30)), .access(VLANID(10))).map { "\($0.0)-\($0.1)" } == ["30-10"])
    // A trunk into an access port: only untagged frames cross, so only the native VLAN.
    #expect(L2Domains.edges(.trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: VLANID(20)), .access(VLANID(5))).map { "\($0.0)-\($0.1)" } == ["20-5"])
    #expect(L2Domains.edges(.trunk(allowed: VLANSet([VLANID(10)]), native: nil), .access(VLANID(10))).isEmpty)
    // Two trunks: the common VLANs.
    #expect(L2Domains.edges(.trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil),
                            .trunk(allowed: VLANSet([VLANID(20), VLANID(30)]), native: nil)).map { "\($0.0)-\($0.1)" } == ["20-20"])
}

@Test func sameAddressOnLinkedSwitchesIsOneDomain() {
    let d = diagnostics(yaml: threeSwitches + """
    links:
      - {between: [s1/tr, s2/tr]}
    guests:
      a: {kind: netns, nics: [{switch: s1, port-group: v10, ip: 10.0.0.1/24}]}
      b: {kind: netns, nics: [{switch: s2, port-group: v10, ip: 10.0.0.1/24}]}
      c: {kind: netns, nics: [{switch: s3, port-group: v10, ip: 10.0.0.1/24}]}
    """)
    #expect(d == ["t.yaml:13:61: error: address 10.0.0.1 of b.eth0 is already used by a.eth0 (line 12) in the same L2 domain (VLAN 10 of switch 's2' and whatever is linked to it)"])
}

@Test func linkErrorsAreLocated() {
    let cases: [(String, String)] = [
        ("  - {between: [s1/tr, s1/v10]}", "t.yaml:10:23: error: a link cannot join switch 's1' to itself (its port groups already share the switch)"),
        ("  - {between: [s1/tr, s9/tr]}", "t.yaml:10:23: error: unknown switch 's9'; did you mean 's1'?"),
        ("  - {between: [s1/tr, s2/trunk]}", "t.yaml:10:23: error: unknown port group 'trunk' on switch 's2'"),
        ("  - {between: [s1/tr]}", "t.yaml:10:15: error: 'between' of a link has 1 ends: a link joins exactly two, SWITCH/PORT-GROUP each"),
        ("  - {between: [s1-tr, s2/tr]}", "t.yaml:10:16: error: invalid link end 's1-tr': expected SWITCH/PORT-GROUP like sw0/trunk"),
        ("  - {between: [s1/tr, s2/tr], host: h1}", "t.yaml:10:31: error: 'host' names a host of a multi-host fabric, but the file has no top-level 'hosts'"),
        ("  - {betwen: [s1/tr, s2/tr]}", "t.yaml:10:6: error: unknown key 'betwen' in a link; did you mean 'between'?"),
    ]
    for (line, expected) in cases {
        #expect(diagnostics(yaml: threeSwitches + "links:\n" + line + "\n") == [expected], "\(line)")
    }
    // A port group that failed its own validation is not reported again where a link uses it.
    #expect(diagnostics(yaml: threeSwitches.replacingOccurrences(of: "20]}}, v10: {vlan: 10}, v20: {vlan: 20}}\n", with: "20]}}, v10: {vlan: 010}, v20: {vlan: 20}}\n")
                        + "links:\n  - {between: [s1/tr, s2/v10]}\n") == ["t.yaml:6:62: error: '010' has a leading zero; write 10"])
}
