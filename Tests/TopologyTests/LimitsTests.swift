import Foundation
import Glibc
import Model
import Testing
@testable import Topology

// The loader's cost is bounded. In-process tests pin the located errors;
// child-process tests run the real `tapestry validate` and read its peak RSS from wait4's
// rusage (no timing thresholds tighter than seconds).

/// The 448-byte "billion laughs": nine anchors, each a list of ten aliases to the
/// previous one (10⁹ leaves when expanded).
let billionLaughs: String = {
    var s = "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\nlol:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n"
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"]
    var previous = "a"
    for n in names {
        s += "  \(n): &\(n) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ",") + "]\n"
        previous = n
    }
    return s
}()

@Test func billionLaughsFailsFastAtTheAliasThatCrossesTheNodeLimit() throws {
    let start = ContinuousClock.now
    let d = diagnostics(yaml: billionLaughs)
    #expect(ContinuousClock.now - start < .seconds(5))
    #expect(d.count == 1)
    // Anchors a…e stand for 11, 111, 1 111, 11 111 and 111 111 nodes (123 455 in all, with
    // no copy made); the first alias of 'e' inside 'f' crosses 200 000.
    #expect(d.first?.hasPrefix("t.yaml:9:10: error: alias '*e' stands for 111111 nodes, which takes the file past 200000 YAML nodes") == true, "\(d)")
}

@Test func compositionLimitsAreLocated() {
    var small = TopologyLimits()
    small.maxNodes = 50; small.maxDepth = 4; small.maxAliases = 3; small.maxFileBytes = 200
    func errors(_ yaml: String) -> [String] {
        do { _ = try TopologyLoader.parse(yaml, file: "t.yaml", limits: small); return [] } catch let e as TopologyErrors {
            return e.diagnostics.map(\.description)
        } catch { return ["\(error)"] }
    }
    #expect(errors("a: [[[[[1]]]]]\n") == ["t.yaml:1:7: error: lists and mappings nested deeper than 4 levels; a topology file may nest at most 4"])
    #expect(errors("a: &x 1\nb: [*x, *x, *x, *x]\n") == ["t.yaml:2:17: error: more than 3 aliases; a topology file may use at most 3"])
    #expect(errors("a: [" + Array(repeating: "1", count: 60).joined(separator: ",") + "]\n")
            == ["t.yaml:1:99: error: more than 50 YAML nodes; a topology file may have at most 50"])
    #expect(errors(String(repeating: "#", count: 201)) == ["t.yaml:1:1: error: the file is 201 bytes; a topology file may have at most 200 bytes (0 KiB)"])
    #expect(errors("a: *nope\n") == ["t.yaml:1:4: error: invalid YAML: found undefined alias 'nope'"])
    #expect(errors("a: &x [*x]\n") == ["t.yaml:1:8: error: invalid YAML: found undefined alias 'x'"], "an alias inside its own anchor is undefined, so no cycle")
}

@Test func listsAndMappingsHaveEntryLimits() {
    let trunk = "name: lab\nswitches:\n  sw0:\n    port-groups:\n      t: {vlan: {trunk: [" + Array(repeating: "7", count: 4095).joined(separator: ", ") + "]}}\n"
    #expect(diagnostics(yaml: trunk).first?.contains("error: trunk list: 4095 entries, at most 4094") == true)
    var guests = "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\nguests:\n"
    for i in 0..<4097 { guests += "  g\(i): {kind: netns, nics: [{switch: sw0, port-group: w}]}\n" }
    #expect(diagnostics(yaml: guests) == ["t.yaml:4100:3: error: 'guests': 4097 entries, at most 4096"])
}

@Test func thousandsOfDuplicateKeysAreEachReportedInLinearTime() {
    var yaml = "name: lab\nswitches:\n  sw0:\n    port-groups:\n"
    for _ in 0..<5000 { yaml += "      w: {vlan: 1}\n" }
    let start = ContinuousClock.now
    let d = diagnostics(yaml: yaml)
    #expect(ContinuousClock.now - start < .seconds(10))
    #expect(d.count == 4999)
    #expect(d.first == "t.yaml:6:7: error: duplicate key 'w' in 'port-groups' of switch 'sw0' (first defined at line 5)")
    #expect(d.last == "t.yaml:5004:7: error: duplicate key 'w' in 'port-groups' of switch 'sw0' (first defined at line 5)")
}

@Test func suggestionsStopAfterTheBudget() {
    var yaml = "name: lab\nswitches:\n  sw0:\n    port-groups: {w: {vlan: 1}}\nguests:\n"
    for i in 0..<300 { yaml += "  g\(i): {kind: netns, nics: [{switch: sw1, port-group: w}]}\n" }
    let d = diagnostics(yaml: yaml)
    #expect(d.count == 300)
    #expect(d.filter { $0.hasSuffix("did you mean 'sw0'?") }.count == TopologyLimits.standard.maxSuggestions)
}

// MARK: - Peak memory of the real command

/// `tapestry` beside the test bundle (both are products of `swift build --build-tests`).
func tapestryBinary() -> String? {
    guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
    let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("tapestry").path
    return FileManager.default.isExecutableFile(atPath: path) ? path : nil
}

/// Runs `argv` with stdout and stderr to `output`; returns its exit status, its peak RSS in
/// KiB (`ru_maxrss` of that child alone, from wait4) and the wall time.
func runMeasured(_ argv: [String], output: String) -> (status: Int32, maxRSSKiB: Int, seconds: Double)? {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var cargs = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    var pid: pid_t = 0
    let start = ContinuousClock.now
    guard posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ) == 0 else { return nil }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let elapsed = ContinuousClock.now - start
    let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exit, usage.ru_maxrss, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

/// Writes `text` to a temporary file and runs `tapestry validate` on it.
func validateInChild(_ name: String, writing body: (FileHandle) throws -> Void) throws -> (status: Int32, maxRSSKiB: Int, seconds: Double, output: String)? {
    guard let bin = tapestryBinary() else {
        print("skipped: no tapestry binary beside the test bundle (run swift build --build-tests)")
        return nil
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("topo-limits-\(getpid())-\(name)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("\(name).yaml"), out = dir.appendingPathComponent("out.txt")
    FileManager.default.createFile(atPath: file.path, contents: nil)
    let handle = try FileHandle(forWritingTo: file)
    try body(handle)
    try handle.close()
    guard let r = runMeasured([bin, "validate", file.path], output: out.path) else { Issue.record("spawn failed"); return nil }
    return (r.status, r.maxRSSKiB, r.seconds, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
}

@Test func aliasBombIsRefusedInBoundedMemory() throws {
    guard let r = try validateInChild("bomb", writing: { try $0.write(contentsOf: Data(billionLaughs.utf8)) }) else { return }
    print("alias bomb (\(billionLaughs.utf8.count) bytes): exit \(r.status), peak RSS \(r.maxRSSKiB / 1024) MiB, \(String(format: "%.2f", r.seconds)) s")
    #expect(billionLaughs.utf8.count <= 460)
    #expect(r.status == 1)
    #expect(r.output.contains("bomb.yaml:9:10: error: alias '*e' stands for 111111 nodes"))
    #expect(r.maxRSSKiB < 150 * 1024, "peak RSS \(r.maxRSSKiB) KiB")
    #expect(r.seconds < 30)
}

@Test func fiftyMegabyteTrunkListIsRefusedInBoundedMemory() throws {
    guard let r = try validateInChild("huge", writing: { h in
        try h.write(contentsOf: Data("name: lab\nswitches:\n  sw0:\n    port-groups:\n      t: {vlan: {trunk: [".utf8))
        let chunk = Data(String(repeating: "1,2,", count: 1 << 18).utf8)   // 1 MiB, 512 Ki entries
        for _ in 0..<50 { try h.write(contentsOf: chunk) }
        try h.write(contentsOf: Data("3]}}\n".utf8))
    }) else { return }
    print("50 MiB trunk list: exit \(r.status), peak RSS \(r.maxRSSKiB / 1024) MiB, \(String(format: "%.2f", r.seconds)) s")
    #expect(r.status == 1)
    #expect(r.output.contains("huge.yaml:1:1: error: the file is larger than 1048576 bytes"))
    #expect(r.maxRSSKiB < 150 * 1024, "peak RSS \(r.maxRSSKiB) KiB")
    #expect(r.seconds < 30)
}

@Test func theLargestAcceptedFilesCostBoundedMemory() throws {
    // Just under the node limit: one trunk list of 190 000 entries in a 760 KB file.
    guard let r1 = try validateInChild("nodes", writing: { h in
        try h.write(contentsOf: Data("name: lab\nswitches:\n  sw0:\n    port-groups:\n      t: {vlan: {trunk: [".utf8))
        try h.write(contentsOf: Data(Array(repeating: "4094", count: 190_000).joined(separator: ",").utf8))
        try h.write(contentsOf: Data("]}}\n".utf8))
    }) else { return }
    print("190 000-entry trunk list: exit \(r1.status), peak RSS \(r1.maxRSSKiB / 1024) MiB, \(String(format: "%.2f", r1.seconds)) s")
    #expect(r1.status == 1 && r1.output.contains("trunk list: 190000 entries, at most 4094"))
    #expect(r1.maxRSSKiB < 200 * 1024 && r1.seconds < 30)

    // 4096 guests (the most), each with a MAC and an address on one /20: validates.
    guard let r2 = try validateInChild("guests", writing: { h in
        var s = "name: lab\nswitches:\n  sw0:\n    port-groups: {w: {vlan: 10}}\nguests:\n"
        for i in 0..<4096 {
            s += "  g\(i): {kind: netns, nics: [{switch: sw0, port-group: w, ip: 10.0.\(16 + i / 250).\(1 + i % 250)/16}]}\n"
        }
        try h.write(contentsOf: Data(s.utf8))
    }) else { return }
    print("4096 guests: exit \(r2.status), peak RSS \(r2.maxRSSKiB / 1024) MiB, \(String(format: "%.2f", r2.seconds)) s")
    #expect(r2.status == 0, "\(r2.output.prefix(500))")
    #expect(r2.maxRSSKiB < 200 * 1024 && r2.seconds < 30)

    // About 20 000 NICs over 1 024 port groups in just under 1 MiB: every lookup by name
    // is a dictionary's, so this costs about what the 4096 guests above do.
    guard let r3 = try validateInChild("nics", writing: { h in
        var s = "name: lab\nswitches:\n  s:\n    port-groups:\n"
        for g in 0..<1024 { s += "      g\(g): {vlan: \(1 + g)}\n" }
        s += "guests:\n"
        for i in 0..<2500 {
            s += "  x\(i): {kind: netns, nics: [" + (0..<8).map { "{switch: s, port-group: g\((i * 8 + $0) % 1024)}" }.joined(separator: ",") + "]}\n"
        }
        #expect(s.utf8.count < 1 << 20)
        try h.write(contentsOf: Data(s.utf8))
    }) else { return }
    print("20 000 NICs, 1 024 port groups: exit \(r3.status), peak RSS \(r3.maxRSSKiB / 1024) MiB, \(String(format: "%.2f", r3.seconds)) s")
    #expect(r3.status == 0, "\(r3.output.prefix(500))")
    #expect(r3.maxRSSKiB < 300 * 1024 && r3.seconds < 30)
}

@Test func longValuesCannotMultiplyIntoHugeOutput() {
    // An 8 000-byte kind aliased 900 times: 900 errors, each message cut to about 1 KiB.
    var yaml = "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\nk: &k " + String(repeating: "v", count: 8000) + "\nguests:\n"
    for i in 0..<900 { yaml += "  g\(i): {kind: *k, nics: [{switch: sw0, port-group: w}]}\n" }
    let d = diagnostics(yaml: yaml).filter { $0.contains("invalid guest kind") }
    #expect(d.count == 900)
    #expect(d.allSatisfy { $0.utf8.count < 1_100 && $0.hasSuffix("… (cut)") })
    #expect(diagnostics(yaml: "name: " + String(repeating: "a", count: 8193) + "\n")
            == ["t.yaml:1:7: error: a scalar of 8193 bytes; a topology file's scalars have at most 8192"])
}
