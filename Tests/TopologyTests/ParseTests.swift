import Core
import Foundation
import Model
import Testing
@testable import Topology

@Test func scalarsAreReadFromTheirSourceText() throws {
    let t = try TopologyLoader.parse(try fixture("scalars.yaml"), file: "scalars.yaml")
    #expect(t.name == "no")                      // not `false`
    let sw = try #require(t.switches.first)
    #expect(sw.name == "sw0")                    // quoted key
    #expect(sw.mtu == 9000)                      // quoted integer
    #expect(sw.agingSeconds == 3600)
    #expect(sw.macLimit == 16)
    #expect(sw.portGroup(named: "web")?.mode == .access(VLANID(10)))
    #expect(sw.portGroup(named: "quoted")?.mode == sw.portGroup(named: "web")?.mode)
    #expect(sw.portGroup(named: "untagged")?.mode == .access(.untagged))
    let vm = try #require(t.guests.first)
    #expect(vm.kind == .qemu && vm.memoryMiB == 1024 && vm.cpus == 2 && vm.restart == .onFailure)
    #expect(vm.nics[0].mac == MACAddress("52:54:00:00:70:01"))   // unquoted: not a base-60 integer
    #expect(vm.nics[0].mac.rawValue == 0x5254_0000_7001)
    #expect(vm.nics[1].mac == MACAddress("52:54:00:00:70:02"))
    #expect(vm.nics[0].macDeclared && vm.nics[1].macDeclared)
    #expect(vm.nics[1].portName == "vm1.eth1" && vm.nics[1].interfaceName == "eth1")
    let ns = t.guests[1]
    #expect(ns.kind == .netns && ns.memoryMiB == 256 && ns.cpus == 1 && ns.restart == .never)
    #expect(!ns.nics[0].macDeclared)
}

@Test func quotedAndUnquotedMeanTheSame() throws {
    let plain = """
    name: lab
    switches:
      sw0:
        mtu: 1400
        uplinks: {nics: [eth0, eth1], policy: failover-order, active: [eth1], failback: false}
        port-groups:
          web: {vlan: 10, security: {promiscuous: true}}
          tr: {vlan: {trunk: [10, 20-22], native: 30}}
    guests:
      g1:
        kind: netns
        nics: [{switch: sw0, port-group: web, mac: 02:00:00:00:00:01, ip: 10.0.0.1/24}]
    """
    let quoted = """
    "name": 'lab'
    switches:
      'sw0':
        mtu: '1400'
        uplinks: {nics: ["eth0", 'eth1'], policy: "failover-order", active: ['eth1'], failback: "false"}
        port-groups:
          "web": {vlan: "10", security: {promiscuous: 'true'}}
          tr: {vlan: {trunk: ["10", '20-22'], native: "30"}}
    guests:
      g1:
        kind: "netns"
        nics: [{switch: "sw0", port-group: "web", mac: "02:00:00:00:00:01", ip: '10.0.0.1/24'}]
    """
    let a = try TopologyLoader.parse(plain, file: "a"), b = try TopologyLoader.parse(quoted, file: "b")
    for t in [a, b] {
        #expect(t.name == "lab")
        let sw = t.switches[0]
        #expect(sw.mtu == 1400)
        let up = try #require(sw.uplinks)
        #expect(up.nics == ["eth0", "eth1"] && up.policy == .failoverOrder)
        #expect(up.active == ["eth1"] && up.standby == ["eth0"])
        #expect(!up.failback && up.notifySwitches && up.detection == .linkStatus)
        #expect(sw.portGroups[0].security == PortSecurity(promiscuous: true))
        #expect(sw.portGroups[0].usesUplinks)
        var allowed = VLANSet([VLANID(10)]); allowed.insert(range: 20...22)
        #expect(sw.portGroups[1].mode == .trunk(allowed: allowed, native: VLANID(30)))
        #expect(t.guests[0].nics[0].ip == IPv4CIDR("10.0.0.1/24"))
    }
    #expect(a.compile()[0].ports == b.compile()[0].ports)
}

@Test func defaults() throws {
    let t = try TopologyLoader.parse("""
    name: lab
    switches:
      sw0:
        uplinks: {nics: [eth0, eth1]}
        port-groups:
          web: {vlan: 10, uplinks: none}
        mirrors:
          - {name: span0, source: [web], destination: {port-group: mon}}
          - {name: span1, source: [web], direction: in, destination: {port-group: mon}}
    """.replacingOccurrences(of: "web: {vlan: 10, uplinks: none}", with: "web: {vlan: 10, uplinks: none}\n      mon: {vlan: none}"),
                                       file: "d")
    let sw = t.switches[0]
    #expect(sw.mtu == 1500 && sw.agingSeconds == 300 && sw.macLimit == 8192)
    #expect(t.guests.isEmpty)
    let up = try #require(sw.uplinks)
    #expect(up.policy == .portID && up.active == ["eth0", "eth1"] && up.standby.isEmpty)
    #expect(up.failback && up.notifySwitches && up.detection == .linkStatus)
    #expect(!sw.portGroups[0].usesUplinks && sw.portGroups[1].usesUplinks)
    #expect(sw.portGroups[0].security == PortSecurity())
    #expect(sw.mirrors.map(\.name) == ["span0", "span1"])
    #expect(sw.mirrors[0].direction == .both && sw.mirrors[1].direction == .in)
    #expect(sw.mirrors[0].sourcePortGroups == ["web"] && sw.mirrors[0].destinationPortGroup == "mon")
    #expect(sw.uplinks != nil)
    // No guests: the plan holds only the uplink ports, one per NIC, in `nics` order.
    let plan = t.compile()[0]
    #expect(plan.ports.map(\.name) == up.nics && plan.ports.allSatisfy(\.isUplink))
    #expect(plan.uplinkPorts == [0, 1] && plan.team?.memberCount == 2)
}

@Test func uplinksCarryTheVLANsOfTheGroupsThatUseThem() throws {
    let t = try TopologyLoader.parse("""
    name: t
    switches:
      sw0:
        uplinks: {nics: [ens1, ens2, ens3], policy: failover-order, active: [ens2], standby: [ens3, ens1], failback: false}
        port-groups:
          web: {vlan: 10}
          trunk: {vlan: {trunk: [20-22], native: 30}}
          plain: {vlan: none}
          lab: {vlan: 40, uplinks: none}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: web}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: lab}]}
    """, file: "t.yaml")
    let plan = t.compile()[0]
    #expect(plan.ports.map(\.name) == ["a.eth0", "b.eth0", "ens1", "ens2", "ens3"])
    #expect(plan.ports[2].mode == .trunk(allowed: VLANSet([10, 20, 21, 22, 30].map { VLANID($0) }), native: .untagged))
    #expect(plan.carriedPorts == [0], "the uplinks: none guest is not carried")
    let team = try #require(plan.team)
    #expect(team.policy == .failoverOrder && team.active == [1] && team.standby == [2, 0] && !team.failback && team.notifySwitches)
    #expect(t.switches[0].uplinks?.nicPositions.first == TextPosition(line: 4, column: 22))
}

@Test func ipv4CIDRParsingIsStrict() {
    #expect(IPv4CIDR("10.0.10.1/24")?.description == "10.0.10.1/24")
    #expect(IPv4CIDR("10.0.10.1/24")?.address == 0x0A00_0A01)
    #expect(IPv4CIDR("10.0.10.1/24")?.addressString == "10.0.10.1")
    #expect(IPv4CIDR("0.0.0.0/0")?.prefixLength == 0)
    #expect(IPv4CIDR("255.255.255.255/32") != nil)
    for bad in ["10.0.10.1", "10.0.10.256/24", "10.0.010.1/24", "10.0.10/24", "10.0.10.1/33", "10.0.10.1/024",
                "10.0.10.1/", "a.b.c.d/8", "10.0.10.1/24/1", " 10.0.10.1/24", "10..10.1/24", "+1.0.0.0/8"] {
        #expect(IPv4CIDR(bad) == nil, "\(bad)")
    }
}

@Test func derivedMACsAreStableUnicastLocalAndDistinct() throws {
    let m = Topology.derivedMAC(topology: "demo", guest: "web1", nicIndex: 0)
    #expect(m == Topology.derivedMAC(topology: "demo", guest: "web1", nicIndex: 0))
    // Pinned: the rule is documented, so a change here is a change to every running network.
    #expect(m.description.hasPrefix("02:"))
    #expect(m.isUnicast && m.isLocallyAdministered)
    let all = [("demo", "web1", 0), ("demo", "web1", 1), ("demo", "web2", 0), ("lab", "web1", 0)]
        .map { Topology.derivedMAC(topology: $0.0, guest: $0.1, nicIndex: $0.2) }
    #expect(Set(all).count == all.count)

    // Through the loader: two parses agree, and differ per NIC and guest.
    let yaml = """
    name: lab
    switches: {sw0: {port-groups: {web: {vlan: none}}}}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: web}, {switch: sw0, port-group: web}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: web}]}
    """
    let t1 = try TopologyLoader.parse(yaml, file: "x"), t2 = try TopologyLoader.parse(yaml, file: "y")
    let macs = t1.guests.flatMap { $0.nics.map(\.mac) }
    #expect(macs == t2.guests.flatMap { $0.nics.map(\.mac) })
    #expect(Set(macs).count == 3)
    #expect(macs[0] == Topology.derivedMAC(topology: "lab", guest: "a", nicIndex: 0))
    #expect(macs.allSatisfy { $0.isUnicast && $0.isLocallyAdministered && $0.rawValue >> 40 == 0x02 })
}

@Test func derivedMACMatchesFNV1a() {
    // FNV-1a 64 of "demo/web1/0", computed independently.
    var h: UInt64 = 14_695_981_039_346_656_037
    for b in Array("demo/web1/0".utf8) { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
    #expect(Topology.derivedMAC(topology: "demo", guest: "web1", nicIndex: 0).rawValue == 0x0200_0000_0000 | (h & 0xFF_FFFF_FFFF))
}
