import Testing
@testable import Topology

/// What a valid file makes the running instance allocate is bounded too: the MAC tables of
/// all switches together (`TopologyLimits.maxTotalMACEntries`), each allocated in full when
/// the topology comes up. Found while fuzzing the reload path: 256 switches of
/// `limit: 1048576` validated, and `up` would have allocated some 10 GB.
@Test func theMACTablesOfAllSwitchesTogetherAreBounded() throws {
    func yaml(_ switches: Int, limit: Int) -> String {
        "name: lab\nswitches:\n" + (0..<switches).map { "  sw\($0): {mac-table: {limit: \(limit)}, port-groups: {v: {vlan: 1}}}\n" }.joined()
    }
    // Four switches at the per-switch maximum fit (4 Mi entries, about 160 MiB) ...
    let four = try TopologyLoader.parse(yaml(4, limit: 1_048_576), file: "t.yaml")
    #expect(four.switches.reduce(0) { $0 + $1.macLimit } == TopologyLimits.standard.maxTotalMACEntries)
    // ... a fifth does not; the error names the switch that crossed the bound, once.
    #expect(diagnostics(yaml: yaml(5, limit: 1_048_576)) == [
        "t.yaml:7:3: error: the MAC tables of all switches would hold 5242880 entries (about 200 MiB, allocated when the topology comes up); at most 4194304 in all: lower 'mac-table: {limit}' (switch 'sw4' takes the total past the bound)",
    ])
    #expect(diagnostics(yaml: yaml(256, limit: 1_048_576)).count == 1)
    // The default limit on the most switches a file may have is far inside the bound.
    #expect(try TopologyLoader.parse(yaml(256, limit: 8192), file: "t.yaml").switches.count == 256)
}
