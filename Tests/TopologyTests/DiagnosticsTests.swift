import Foundation
import Testing
@testable import Topology

/// The text of a fixture under `Fixtures/`.
func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    return try String(contentsOf: url, encoding: .utf8)
}

/// The diagnostics `parse` reports for a fixture, labelled with its file name.
func diagnostics(_ name: String) throws -> [String] {
    do {
        _ = try TopologyLoader.parse(try fixture(name), file: name)
        return []
    } catch let e as TopologyErrors {
        return e.diagnostics.map(\.description)
    }
}

/// Parses inline YAML, returning diagnostics (empty when valid).
func diagnostics(yaml: String) -> [String] {
    do {
        _ = try TopologyLoader.parse(yaml, file: "t.yaml")
        return []
    } catch let e as TopologyErrors {
        return e.diagnostics.map(\.description)
    } catch {
        return ["unexpected \(error)"]
    }
}

/// One fixture per error class; each file has exactly one error.
let errorCases: [(String, String)] = [
    ("unknown-key.yaml", "4:5: error: unknown key 'port_groups' in switch 'sw0'; did you mean 'port-groups'?"),
    ("missing-key.yaml", "7:3: error: missing required key 'kind' in guest 'web1'"),
    ("bad-name.yaml", "7:3: error: invalid guest name 'Web_1': use lowercase letters, digits and '-', starting with a lowercase letter or digit"),
    ("name-too-long.yaml", "1:7: error: topology name 'averylongname' is too long: 13 characters, at most 12"),
    ("interface-too-long.yaml", "5:22: error: invalid interface name 'enp0s31f6-uplink0': 17 bytes, at most 15"),
    ("duplicate-guest.yaml", "11:3: error: duplicate key 'web1' in 'guests' (first defined at line 7)"),
    ("vlan-out-of-range.yaml", "5:19: error: VLAN 4095 is out of range 1..4094"),
    ("leading-zero.yaml", "6:15: error: '010' has a leading zero; write 10"),
    ("empty-trunk.yaml", "5:32: error: empty trunk list: list the VLANs the trunk carries (an empty list does not mean all)"),
    ("bad-range.yaml", "5:37: error: invalid VLAN range '200-100': the start is greater than the end"),
    ("multicast-mac.yaml", "10:45: error: MAC address 01:00:5e:00:00:01 is a multicast address (low bit of the first octet set); a NIC's MAC must be unicast"),
    ("bad-mac.yaml", "12:14: error: invalid MAC address '02:00:00:00:0a': expected six two-digit hex octets like 02:00:00:00:0a:01"),
    ("bad-cidr.yaml", "10:44: error: invalid IPv4 address '10.0.010.1/24': expected a.b.c.d/len like 10.0.10.1/24 (octets 0..255 without leading zeros, len 1..32)"),
    ("unknown-switch.yaml", "10:18: error: unknown switch 'sw1'; did you mean 'sw0'?"),
    ("unknown-port-group.yaml", "11:35: error: unknown port group 'wbe' on switch 'sw0'; did you mean 'web'?"),
    ("duplicate-mac.yaml", "14:45: error: MAC 02:00:00:00:0a:01 of web2.eth0 is already used by web1.eth0 (line 10) on switch 'sw0'"),
    ("wrong-kind.yaml", "10:7: error: expected a list for 'nics' of guest 'web1', found a mapping"),
    ("syntax-error.yaml", "6:7: error: invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping at line 5, column 12)"),
    ("bad-boolean.yaml", "7:33: error: expected true or false for 'promiscuous', found 'yes'"),
    ("qemu-only-key.yaml", "9:5: error: 'memory' applies only to guests of kind qemu (guest 'web1' is kind netns)"),
    ("duplicate-uplink.yaml", "8:30: error: uplink NIC 'enp1s0' is already an uplink of switch 'sw0' (line 4)"),
    ("mirror-into-source.yaml", "8:73: error: mirror destination 'monitor' is also a source; a mirror cannot copy into its own source"),
]

@Test(arguments: errorCases)
func fixtureReportsExactlyOneError(file: String, expected: String) throws {
    #expect(try diagnostics(file) == ["\(file):\(expected)"])
}

@Test func duplicateKeysAreAllReportedAtTheRepeatedKey() throws {
    #expect(try diagnostics("duplicate-key.yaml") == [
        "duplicate-key.yaml:6:23: error: duplicate key 'vlan' in port group 'web' (first defined at line 6)",
        "duplicate-key.yaml:7:5: error: duplicate key 'mtu' in switch 'sw0' (first defined at line 4)",
    ])
    // Three times in one mapping, in a block mapping: two errors, both pointing at line 2.
    let yaml = "name: lab\nname: lab\nname: lab\nswitches:\n  sw0:\n    port-groups: {web: {vlan: 1}}\n"
    #expect(diagnostics(yaml: yaml) == [
        "t.yaml:2:1: error: duplicate key 'name' in the topology (first defined at line 1)",
        "t.yaml:3:1: error: duplicate key 'name' in the topology (first defined at line 1)",
    ])
}

@Test func everyErrorInAFileIsReportedInFileOrder() throws {
    let d = try diagnostics("many-errors.yaml")
    #expect(d == [
        "many-errors.yaml:1:7: error: invalid topology name 'Lab': use lowercase letters, digits and '-', starting with a lowercase letter",
        "many-errors.yaml:4:10: error: mtu 65 is out of range 68..9216",
        "many-errors.yaml:5:24: error: expected a duration like 300s, 5m or 1h for mac-table aging, found '10d'",
        "many-errors.yaml:7:23: error: unknown key 'securty' in port group 'web'; did you mean 'security'?",
        "many-errors.yaml:8:34: error: VLAN 5000 is out of range 1..4094",
        "many-errors.yaml:11:11: error: invalid guest kind 'vm': expected netns, qemu or vhost-user",
        "many-errors.yaml:13:45: error: MAC address ff:ff:ff:ff:ff:ff is the broadcast address; a NIC's MAC must be unicast",
        "many-errors.yaml:16:11: error: cpus 0 is out of range 1..16",
        "many-errors.yaml:17:14: error: invalid restart policy 'sometimes': expected never, on-failure or always",
        "many-errors.yaml:19:35: error: unknown port group 'dbs' on switch 'sw0'",
        "many-errors.yaml:19:44: error: invalid IPv4 address '10.0.0.1/33': expected a.b.c.d/len like 10.0.10.1/24 (octets 0..255 without leading zeros, len 1..32)",
    ])
    do {
        _ = try TopologyLoader.parse(try fixture("many-errors.yaml"), file: "many-errors.yaml")
        Issue.record("expected errors")
    } catch let e as TopologyErrors {
        #expect(e.description == d.joined(separator: "\n"))
        #expect(e.diagnostics[1] == TopologyDiagnostic(file: "many-errors.yaml", line: 4, column: 10,
                                                        message: "mtu 65 is out of range 68..9216"))
    }
}

/// Small inline cases: one YAML snippet for a switch body or guest, one expected message.
let base = "name: lab\nswitches:\n  sw0:\n    port-groups:\n      web: {vlan: 10}\n"

@Test func keySuggestionsCoverCaseAndUnderscoreVariants() {
    #expect(suggestion(for: "portGroups", among: Validator.switchKeys) == "port-groups")
    #expect(suggestion(for: "port_groups", among: Validator.switchKeys) == "port-groups")
    #expect(suggestion(for: "mac_table", among: Validator.switchKeys) == "mac-table")
    #expect(suggestion(for: "mut", among: Validator.switchKeys) == "mtu")
    #expect(suggestion(for: "colour", among: Validator.switchKeys) == nil)
    #expect(diagnostics(yaml: "name: lab\nswitch:\n  sw0: {}\n") == [
        "t.yaml:2:1: error: unknown key 'switch' in the topology; did you mean 'switches'?",
    ])
}

@Test func valueErrors() {
    let cases: [(String, String)] = [
        (base + "    mtu: 1500x\n", "6:10: error: expected a decimal integer for mtu, found '1500x'"),
        (base + "    mac-table: {aging: 0s}\n", "6:24: error: mac-table aging 0s is out of range 1s..1000000s"),
        (base + "    mac-table: {limit: 15}\n", "6:24: error: mac-table limit 15 is out of range 16..1048576"),
        (base + "    uplinks: {nics: [eth0], policy: src-mac, active: [eth0]}\n",
         "6:46: error: 'active' applies only to policy failover-order (policy is src-mac)"),
        (base + "    uplinks: {nics: [eth0, eth1], policy: failover-order, active: [eth0], standby: [eth0]}\n",
         "6:85: error: 'eth0' is already listed in 'active' (line 6)"),
        (base + "    uplinks: {nics: [eth0], policy: failover-order, active: [eht1]}\n",
         "6:62: error: 'eht1' in 'active' is not one of the uplink nics; did you mean 'eth0'?"),
        (base + "    uplinks: {nics: [eth0], policy: round-robin}\n",
         "6:37: error: invalid teaming policy 'round-robin': expected port-id, src-mac, ip-hash or failover-order"),
        (base + "    uplinks: {nics: [eth0, eth0]}\n", "6:28: error: duplicate uplink NIC 'eth0' (first listed at line 6)"),
        (base + "    uplinks: {nics: []}\n", "6:21: error: 'nics' of uplinks is empty: list at least one interface"),
        (base + "    uplinks: {nics: [a/b]}\n", "6:22: error: invalid interface name 'a/b': no '/', ':' or whitespace, and not '.' or '..'"),
        (base + "      lab: {vlan: 30, uplinks: all}\n",
         "6:32: error: invalid 'uplinks' of a port group 'all': expected none (omit the key to use the switch's uplinks)"),
        (base + "      t: {vlan: {trunk: [10], native: 0}}\n", "6:39: error: VLAN 0 is out of range 1..4094"),
        (base + "      t: {vlan: {trunk: [10-]}}\n", "6:26: error: invalid VLAN range '10-': expected FIRST-LAST like 100-199"),
        (base + "      t: {vlan: {trunk: 10}}\n", "6:25: error: expected a list for 'trunk', found a scalar"),
        (base + "      t: {vlan: {tronk: [10]}}\n",
         "6:18: error: unknown key 'tronk' in 'vlan' of port group 't'; did you mean 'trunk'?"),
        (base + "      t: {vlan: ten}\n", "6:17: error: invalid VLAN 'ten': expected a number 1..4094, none, {trunk: [...], native: ...} or {private: ID}"),
        (base + "      t: {uplinks: none}\n", "6:7: error: missing required key 'vlan' in port group 't'"),
        (base + "      t: {vlan: }\n", "6:17: error: missing value for 'vlan' of port group 't'"),
        (base + "      mon: {vlan: {trunk: [10]}}\n    mirrors:\n      - {name: m0, source: [web], direction: sideways, destination: {port-group: mon}}\n",
         "8:46: error: invalid mirror direction 'sideways': expected in, out or both"),
        (base + "guests:\n  g1: {kind: qemu, memory: 32M, nics: [{switch: sw0, port-group: web}]}\n",
         "7:28: error: memory 32M is out of range 64M..65536M"),
        (base + "guests:\n  g1: {kind: qemu, memory: 256, nics: [{switch: sw0, port-group: web}]}\n",
         "7:28: error: expected a size like 256M or 1G for memory, found '256'"),
        (base + "guests:\n  g1: {kind: netns, nics: []}\n", "7:27: error: 'nics' of guest 'g1' is empty: a guest needs at least one NIC"),
        (base + "guests:\n  g1: {kind: netns, restart: always, nics: [{switch: sw0, port-group: web}]}\n",
         "7:21: error: 'restart' on a netns guest tells HA to re-create it on another host when its host dies: it needs a top-level 'etcd' (guest 'g1' is kind netns)"),
        (base + "guests:\n  g1: {kind: netns, nics: [{switch: sw0, port-group: web, mac: 00:00:00:00:00:00}]}\n",
         "7:64: error: MAC address 00:00:00:00:00:00 is the all-zero address; a NIC's MAC must be unicast"),
        (base + "guests:\n  g1: {kind: netns, nics: [{switch: sw0}]}\n", "7:28: error: missing required key 'port-group' in NIC 0 of guest 'g1'"),
        (base + "guests:\n  g1: {kind: netns, nics: [[sw0, web]]}\n", "7:28: error: expected a mapping for NIC 0 of guest 'g1', found a list"),
        (base + "guests:\n  g1: {kind: [netns], nics: [{switch: sw0, port-group: web}]}\n",
         "7:14: error: expected a scalar for guest kind, found a list"),
        (base + "guests:\n  a-very-long-guest: {kind: netns, nics: [{switch: sw0, port-group: web}]}\n",
         "7:3: error: guest name 'a-very-long-guest' is too long: 17 characters, at most 15"),
        ("name: lab\nswitches: {}\n", "2:11: error: 'switches' is empty: declare at least one switch"),
        ("name: lab\n", "1:1: error: missing required key 'switches' in the topology"),
        ("", "1:1: error: empty topology: expected a mapping with 'name' and 'switches'"),
        ("- a\n- b\n", "1:1: error: expected a mapping for the topology, found a list"),
        ("name: lab\nswitches:\n  SW0: {port-groups: {web: {vlan: 1}}}\n",
         "3:3: error: invalid switch name 'SW0': use lowercase letters, digits and '-', starting with a lowercase letter or digit"),
        ("name: lab\nswitches:\n  sw0: {port-groups: {Web: {vlan: 1}}}\n",
         "3:23: error: invalid port group name 'Web': use lowercase letters, digits and '-', starting with a lowercase letter or digit"),
        ("name: lab\nswitches:\n  sw0: {port-groups: {web: {vlan: 1}}, mtu: 10000}\n", "3:45: error: mtu 10000 is out of range 68..9216"),
        ("name: lab\nswitches: [sw0]\n", "2:11: error: expected a mapping for 'switches', found a list"),
        ("name: [lab]\nswitches: {sw0: {port-groups: {web: {vlan: 1}}}}\n", "1:7: error: expected a scalar for 'name', found a list"),
        (base + "    mac-table:\n      static:\n        - {mac: 02:00:00:00:00:01, port: nobody.eth0}\n",
         "8:42: error: unknown port 'nobody.eth0' on switch 'sw0': expected a guest port GUEST.ethN"),
    ]
    for (yaml, expected) in cases {
        #expect(diagnostics(yaml: yaml) == ["t.yaml:" + expected], "\(yaml)")
    }
}

@Test func unreadableFileIsReportedAtTheStart() {
    #expect(throws: TopologyErrors.self) { try TopologyLoader.load(path: "/nonexistent/lab.yaml") }
    do {
        _ = try TopologyLoader.load(path: "/nonexistent/lab.yaml")
    } catch let e as TopologyErrors {
        #expect(e.diagnostics.count == 1)
        #expect(e.description.hasPrefix("/nonexistent/lab.yaml:1:1: error: cannot read /nonexistent/lab.yaml"))
    } catch { Issue.record("unexpected \(error)") }
}

@Test func oddInputsAreReportedNotCrashed() {
    let inputs = [
        "name: lab\n---\nname: other\n",                                  // two documents
        "name: lab\nswitches:\n\tsw0: {}\n",                               // tab indentation
        "{[a]: 1, [a]: 2}\n",                                             // duplicate complex keys
        "? name\n: lab\n? name\n: lab\n",                                 // explicit keys, duplicated
        "name: lab\nswitches: {sw0: {mtu: 99999999999999999999999999, port-groups: {w: {vlan: 1}}}}\n",
        "name: lab\nswitches: {sw0: &a {port-groups: {w: {vlan: 1}}}, sw1: *a}\n",
        "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: *nope}}}}\n",
        "name: lab\nswitches: {\"\": {}, \"\": {}}\n",
        "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: {trunk: [1-2-3, -5, 5-, ~]}}}}}\n",
        "name: ☃\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\n",
        "name: lab\nguests: {g: {kind: qemu, memory: 99999999999999999999G, nics: [{}]}}\nswitches: {}\n",
        "\u{FEFF}name: lab\n",
        "name: lab\r\nswitches:\r\n  sw0:\r\n    port-groups: {w: {vlan: 1}, w: {vlan: 2}}\r\n",
        "# only a comment\n",
        ":\n",
    ]
    for yaml in inputs {
        let d = diagnostics(yaml: yaml)
        #expect(d.allSatisfy { $0.hasPrefix("t.yaml:") && $0.contains(": error: ") }, "\(yaml) → \(d)")
    }
    // An alias to a valid switch body is a valid switch.
    #expect(diagnostics(yaml: inputs[5]) == [])
    // CRLF line ends: the duplicate is still found at the right place.
    #expect(diagnostics(yaml: inputs[12]) == ["t.yaml:4:33: error: duplicate key 'w' in 'port-groups' of switch 'sw0' (first defined at line 4)"])
}
