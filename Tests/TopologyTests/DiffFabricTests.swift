import Core
import Model
import Testing
@testable import Topology

/// `Topology.diff` for links, hosts, remote VTEPs, settings and the switch / port-group
/// policies (what a live reload acts on).
@Suite struct DiffFabricTests {
    static let base = """
    name: lab
    datapath: {threads: 2}
    hosts:
      h1: {underlay: 10.0.0.1}
      h2: {underlay: 10.0.0.2}
    etcd: {endpoints: ["http://127.0.0.1:2379"]}
    switches:
      sw0:
        overlay: {vni: 100, remote-vteps: [10.0.0.9, {address: 10.0.0.10, vlans: [10]}]}
        port-groups:
          v10: {vlan: 10}
          tr: {vlan: {trunk: [10, 20]}}
      sw1:
        port-groups:
          tr: {vlan: {trunk: [10, 20]}}
          v20: {vlan: 20}
    links:
      - {between: [sw0/tr, sw1/tr], host: h1}
    guests:
      a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10}]}
    """

    func diff(_ edit: (String) -> String) throws -> TopologyDiff {
        try Topology.diff(from: TopologyLoader.parse(Self.base, file: "a"), to: TopologyLoader.parse(edit(Self.base), file: "b"))
    }

    @Test func unchanged() throws { #expect(try diff { $0 }.isEmpty) }

    @Test func linksComeAndGo() throws {
        let removed = try diff { $0.replacingOccurrences(of: "links:\n  - {between: [sw0/tr, sw1/tr], host: h1}\n", with: "") }
        #expect(removed.linksRemoved.map(\.label) == ["sw0/tr~sw1/tr"] && removed.linksAdded.isEmpty)
        #expect(removed.switchesChanged.isEmpty, "a link is not a switch change, as a guest is not")
        #expect(removed.summary == "links -sw0/tr~sw1/tr")
        let moved = try diff { $0.replacingOccurrences(of: "host: h1}\n", with: "host: h2}\n") }
        #expect(moved.linksRemoved.count == 1 && moved.linksAdded.first?.host == "h2")
    }

    @Test func hostsAndSettings() throws {
        let d = try diff {
            $0.replacingOccurrences(of: "  h2: {underlay: 10.0.0.2}", with: "  h2: {underlay: 10.0.0.2, cpus: 4}\n  h3: {underlay: 10.0.0.3}")
              .replacingOccurrences(of: "datapath: {threads: 2}", with: "datapath: {threads: 3}")
        }
        #expect(d.hostsAdded == ["h3"] && d.hostsChanged == ["h2"] && d.hostsRemoved.isEmpty)
        #expect(d.datapathChanged && !d.etcdChanged && !d.haChanged)
        #expect(d.summary == "hosts +h3 ~h2; settings ~datapath")
    }

    @Test func remoteVTEPs() throws {
        let d = try diff { $0.replacingOccurrences(of: "[10.0.0.9, {address: 10.0.0.10, vlans: [10]}]", with: "[{address: 10.0.0.10, vlans: [10, 20]}, 10.0.0.11]") }
        #expect(d.remoteVTEPsRemoved.map(\.description) == ["sw0/vtep-10.0.0.9"])
        #expect(d.remoteVTEPsAdded.map(\.description) == ["sw0/vtep-10.0.0.11"])
        #expect(d.remoteVTEPsChanged.map(\.description) == ["sw0/vtep-10.0.0.10"])
        #expect(d.switchChanges == [SwitchChange(name: "sw0", aspects: [.overlay])])
    }

    @Test func switchAndPortGroupPolicies() throws {
        let d = try diff {
            $0.replacingOccurrences(of: "      v10: {vlan: 10}", with: "      v10: {vlan: 10, shaping: {egress: {average: 1gbit}}, security: {promiscuous: true}}")
              .replacingOccurrences(of: "  sw1:\n", with: "  sw1:\n    multicast-snooping: true\n    flow-export: {collector: \"c:4739\"}\n")
        }
        #expect(d.switchesChanged == ["sw0", "sw1"])
        #expect(d.switchChanges[0] == SwitchChange(name: "sw0", aspects: [.portGroups], portGroups: [PortGroupChange(name: "v10", aspects: [.security, .shaping])]))
        #expect(d.switchChanges[1].aspects == [.multicast, .flowExport])
    }
}
