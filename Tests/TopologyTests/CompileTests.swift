import Core
import Foundation
import Model
import Testing
@testable import Topology

/// `Topologies/` at the package root, found from this file's path.
let topologiesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().appendingPathComponent("../../Topologies").standardizedFileURL

@Test func compilesPortsInGuestThenNICOrder() throws {
    let t = try TopologyLoader.parse("""
    name: lab
    switches:
      sw0:
        mtu: 9000
        mac-table:
          aging: 30
          limit: 1024
          static:
            - {mac: 02:00:00:00:99:01, port: b.eth2}
            - {mac: 02:00:00:00:99:02, vlan: 20, port: t.eth0}
            - {mac: 02:00:00:00:99:03, vlan: none, port: n.eth0}
        port-groups:
          web: {vlan: 10}
          db: {vlan: 20}
          tr: {vlan: {trunk: [10, 20]}}
          plain: {vlan: none}
      sw1:
        port-groups:
          web: {vlan: 10}
    guests:
      b:
        kind: netns
        nics: [{switch: sw0, port-group: web}, {switch: sw1, port-group: web}, {switch: sw0, port-group: db}]
      a:
        kind: netns
        nics: [{switch: sw0, port-group: db}]
      t:
        kind: netns
        nics: [{switch: sw0, port-group: tr}]
      n:
        kind: netns
        nics: [{switch: sw0, port-group: plain}]
    """, file: "c")
    let plans = t.compile()
    #expect(plans.map(\.name) == ["sw0", "sw1"])
    let p = plans[0]
    #expect(p.ports.map(\.name) == ["b.eth0", "b.eth2", "a.eth0", "t.eth0", "n.eth0"])
    #expect(p.ports.map(\.portGroup) == ["web", "db", "db", "tr", "plain"])
    #expect(p.ports[0].mode == .access(VLANID(10)))
    #expect(p.ports[3].mode == .trunk(allowed: VLANSet([VLANID(10), VLANID(20)]), native: nil))
    #expect(p.mtu == 9000 && p.aging == .seconds(30) && p.macLimit == 1024)
    #expect(Array(p.floodSet(VLANID(10))) == [0, 3])
    #expect(Array(p.floodSet(VLANID(20))) == [1, 2, 3])
    #expect(Array(p.floodSet(.untagged)) == [4])
    #expect(p.floodSet(VLANID(30)).isEmpty)
    #expect(p.staticEntries == [
        StaticMACEntry(vlan: VLANID(20), mac: MACAddress("02:00:00:00:99:01")!, port: 1),
        StaticMACEntry(vlan: VLANID(20), mac: MACAddress("02:00:00:00:99:02")!, port: 3),
        StaticMACEntry(vlan: .untagged, mac: MACAddress("02:00:00:00:99:03")!, port: 4),
    ])
    #expect(plans[1].ports.map(\.name) == ["b.eth1"])
}

@Test func staticEntriesMustMatchThePortsVLANs() {
    let yaml = """
    name: lab
    switches:
      sw0:
        mac-table:
          static:
            - {mac: 02:00:00:00:99:01, vlan: 30, port: a.eth0}
            - {mac: 02:00:00:00:99:02, port: t.eth0}
            - {mac: 01:00:00:00:99:02, port: a.eth0}
        port-groups:
          web: {vlan: 10}
          tr: {vlan: {trunk: [10, 20]}}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: web}]}
      t: {kind: netns, nics: [{switch: sw0, port-group: tr}]}
    """
    #expect(diagnostics(yaml: yaml) == [
        "t.yaml:6:42: error: port a.eth0 is not a member of VLAN 30 (its mode is access 10)",
        "t.yaml:7:11: error: 'vlan' is required for a static MAC on trunk port t.eth0",
        "t.yaml:8:17: error: MAC address 01:00:00:00:99:02 is a multicast address (low bit of the first octet set); a static MAC entry must be unicast",
    ])
}

@Test func demoTopologyCompilesAsDocumented() throws {
    let t = try TopologyLoader.load(path: topologiesDirectory.appendingPathComponent("demo.yaml").path)
    #expect(t.name == "demo")
    let plan = try #require(t.compile().first)
    #expect(plan.name == "sw0")
    #expect(plan.ports.map(\.name) == ["web1.eth0", "web2.eth0", "db1.eth0", "db2.eth0", "tap1.eth0", "app1.eth0"])
    #expect(Array(plan.floodSet(VLANID(10))) == [0, 1, 4, 5])
    #expect(t.guests.last?.kind == .qemu && t.guests.last?.restart == .onFailure)
    #expect(Array(plan.floodSet(VLANID(20))) == [2, 3, 4])
    #expect(plan.floodSet(.untagged).isEmpty)
    #expect(t.guests.first { $0.name == "db2" }?.nics[0].ip == IPv4CIDR("10.0.10.3/24"))
    #expect(t.guests.first { $0.name == "tap1" }?.nics[0].ip == nil)
    #expect(t.guests.allSatisfy { $0.nics.allSatisfy(\.macDeclared) })
}

@Test func everyShippedTopologyParsesAndCompiles() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: topologiesDirectory.path)
        .filter { $0.hasSuffix(".yaml") }.sorted()
    #expect(files.count >= 3)
    #expect(Set(["demo.yaml", "isolated.yaml", "vlans.yaml"]).isSubset(of: Set(files)))
    for f in files {
        let path = topologiesDirectory.appendingPathComponent(f).path
        do {
            let t = try TopologyLoader.load(path: path)
            let plans = t.compile()
            #expect(plans.count == t.switches.count, "\(f)")
            let nics = t.guests.reduce(0) { $0 + $1.nics.count }
            let uplinks = t.switches.reduce(0) { $0 + ($1.uplinks?.nics.count ?? 0) }
            let linkEnds = 2 * t.links.count
            #expect(plans.reduce(0) { $0 + $1.ports.count } == nics + uplinks + linkEnds, "one port per guest NIC, per uplink and per link end: \(f)")
        } catch {
            Issue.record("\(f): \(error)")
        }
    }
}
