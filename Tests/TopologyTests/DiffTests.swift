import Core
import Model
import Testing
@testable import Topology

/// `Topology.diff(from:to:)`: the pure half of live reload.
@Suite struct DiffTests {
    static let base = """
    name: lab
    switches:
      sw0:
        port-groups:
          v10: {vlan: 10}
          v20: {vlan: 20}
      sw1:
        port-groups:
          g: {vlan: none}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.2/24}]}
      c: {kind: netns, nics: [{switch: sw1, port-group: g}]}
    """

    func load(_ text: String, file: String = "lab.yaml") throws -> Topology { try TopologyLoader.parse(text, file: file) }

    func diff(_ edit: (String) -> String) throws -> TopologyDiff {
        try Topology.diff(from: load(Self.base), to: load(edit(Self.base), file: "other.yaml"))
    }

    @Test func identicalFilesGiveAnEmptyDiff() throws {
        let d = try diff { $0 }
        #expect(d.isEmpty)
        #expect(d == TopologyDiff())
        #expect(d.summary == "no changes")
    }

    @Test func addedAndRemovedGuests() throws {
        let d = try diff {
            $0.replacingOccurrences(of: "  c: {kind: netns, nics: [{switch: sw1, port-group: g}]}",
                                    with: "  d: {kind: netns, nics: [{switch: sw1, port-group: g}]}")
        }
        #expect(d.guestsAdded == ["d"])
        #expect(d.guestsRemoved == ["c"])
        #expect(d.guestsChanged.isEmpty)
        #expect(d.switchesChanged.isEmpty && d.switchesAdded.isEmpty && d.switchesRemoved.isEmpty)
        #expect(!d.isEmpty)
        #expect(d.guestsToCreate == ["d"] && d.guestsToDestroy == ["c"])
        #expect(d.summary == "guests +d -c")
    }

    @Test(arguments: [
        ("port group", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}", "{switch: sw0, port-group: v20, ip: 10.0.0.2/24}"),
        ("IP", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}", "{switch: sw0, port-group: v10, ip: 10.0.0.9/24}"),
        ("MAC", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24, mac: \"02:00:00:00:00:09\"}"),
        ("switch", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}", "{switch: sw1, port-group: g, ip: 10.0.0.2/24}"),
        ("NIC count", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}", "{switch: sw0, port-group: v10, ip: 10.0.0.2/24}, {switch: sw1, port-group: g}"),
    ])
    func aGuestWithAnyNICChangeIsChanged(what: String, from: String, to: String) throws {
        let d = try diff { $0.replacingOccurrences(of: "b: {kind: netns, nics: [\(from)]}", with: "b: {kind: netns, nics: [\(to)]}") }
        #expect(d.guestsChanged == ["b"], "\(what)")
        #expect(d.guestsAdded.isEmpty && d.guestsRemoved.isEmpty, "\(what)")
        #expect(d.guestsToDestroy == ["b"] && d.guestsToCreate == ["b"], "\(what)")
    }

    @Test func guestOrderAloneChangesNothing() throws {
        let d = try diff {
            $0.replacingOccurrences(of: "  a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]}\n", with: "")
                + "\n  a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]}"
        }
        #expect(d.isEmpty, "\(d)")
    }

    @Test(arguments: [
        ("MTU", "  sw0:\n    port-groups:", "  sw0:\n    mtu: 9000\n    port-groups:"),
        ("aging", "  sw0:\n    port-groups:", "  sw0:\n    mac-table: {aging: 60}\n    port-groups:"),
        ("limit", "  sw0:\n    port-groups:", "  sw0:\n    mac-table: {limit: 100}\n    port-groups:"),
        ("static", "  sw0:\n    port-groups:", "  sw0:\n    mac-table: {static: [{mac: \"02:00:00:00:00:77\", vlan: 10, port: a.eth0}]}\n    port-groups:"),
        ("port-group VLAN", "v20: {vlan: 20}", "v20: {vlan: 30}"),
        ("new port group", "v20: {vlan: 20}", "v20: {vlan: 20}\n      v30: {vlan: 30}"),
        ("mirror", "v20: {vlan: 20}", "v20: {vlan: 20}\n    mirrors:\n      - {name: m, source: [v10], destination: {port-group: v20}}"),
    ])
    func switchChanges(what: String, from: String, to: String) throws {
        let d = try diff { $0.replacingOccurrences(of: from, with: to) }
        #expect(d.switchesChanged == ["sw0"], "\(what): \(d)")
        #expect(d.guestsAdded.isEmpty && d.guestsRemoved.isEmpty && d.guestsChanged.isEmpty, "\(what): guests keep their ports")
        #expect(d.summary == "switches ~sw0", "\(what)")
    }

    @Test func aVLANChangeOfAPortGroupChangesTheSwitchNotItsGuests() throws {
        let d = try diff { $0.replacingOccurrences(of: "v10: {vlan: 10}", with: "v10: {vlan: 20}") }
        var expected = TopologyDiff(switchesChanged: ["sw0"])
        expected.switchChanges = [SwitchChange(name: "sw0", aspects: [.portGroups], portGroups: [PortGroupChange(name: "v10", aspects: [.vlan])])]
        #expect(d == expected)
    }

    @Test func addedAndRemovedSwitches() throws {
        let d = try diff {
            $0.replacingOccurrences(of: "      g: {vlan: none}", with: "      g: {vlan: none}\n  sw2:\n    port-groups:\n      x: {vlan: 5}")
        }
        #expect(d == TopologyDiff(switchesAdded: ["sw2"]))
        let back = try Topology.diff(from: load(Self.base.replacingOccurrences(of: "      g: {vlan: none}", with: "      g: {vlan: none}\n  sw2:\n    port-groups:\n      x: {vlan: 5}")),
                                     to: load(Self.base))
        #expect(back == TopologyDiff(switchesRemoved: ["sw2"]))
    }

    @Test func renamingTheTopologyIsAnError() throws {
        #expect(throws: TopologyDiffError.self) {
            try diff { $0.replacingOccurrences(of: "name: lab", with: "name: lab2") }
        }
        do { _ = try diff { $0.replacingOccurrences(of: "name: lab", with: "name: lab2") } } catch {
            #expect("\(error)".contains("'lab' to 'lab2'"))
        }
    }

    @Test func theFilePathIsNotAChange() throws {
        #expect(try Topology.diff(from: load(Self.base, file: "a.yaml"), to: load(Self.base, file: "/elsewhere/b.yaml")).isEmpty)
    }
}
