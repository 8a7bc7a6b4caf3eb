import Foundation
import Testing
@testable import Topology

// `Topologies/tapestry.schema.json`, generated from the loader's key tables, checked
// against real tools: a YAML 1.2 reader (ruamel.yaml, pure Python, as editors read files) and
// a JSON Schema validator (python-jsonschema, draft 2020-12 and draft 7). Both are Debian
// packages that Scripts/setup.sh installs (python3-ruamel.yaml, python3-jsonschema).

let schemaURL = topologiesDirectory.appendingPathComponent("tapestry.schema.json")

/// Regenerate with `TAPESTRY_UPDATE_SCHEMA=1 swift test --skip-build --filter schemaFileIsCurrent`.
@Test func schemaFileIsCurrent() throws {
    let generated = TopologySchema.json()
    if ProcessInfo.processInfo.environment["TAPESTRY_UPDATE_SCHEMA"] == "1" {
        try generated.write(to: schemaURL, atomically: true, encoding: .utf8)
    }
    let file = try String(contentsOf: schemaURL, encoding: .utf8)
    #expect(file == generated, "Topologies/tapestry.schema.json is stale: regenerate it (see this test's comment)")
}

/// Every key of every key table, in the tables' nesting.
func allKeyNames() -> Set<String> {
    var out = Set<String>()
    var seen = Set<String>()
    func walk(_ shape: Shape) {
        switch shape {
        case .object(let t): visit(t)
        case .map(_, _, let v, _): walk(v)
        case .list(let item, _, _): walk(item)
        case .anyOf(let shapes): shapes.forEach(walk)
        default: break
        }
    }
    func visit(_ t: KeyTable) {
        guard seen.insert(t.title).inserted else { return }
        for k in t.keys { out.insert(k.name); walk(k.shape) }
    }
    visit(Keys.topLevel)
    return out
}

/// The loader accepts a file that uses every key of the tables, so the tables (and the
/// schema generated from them) name no key the loader refuses; the loader's allowed-key
/// lists are taken from the same tables, so it accepts no key the schema lacks.
@Test func theLoaderAcceptsEveryKeyOfTheSchemaTables() throws {
    let text = try fixture("every-key.yaml")
    let t = try TopologyLoader.parse(text, file: "every-key.yaml")
    #expect(t.guests.count == 4 && t.links.count == 1 && t.hosts.count == 2)
    for name in allKeyNames() {
        #expect(text.contains("\(name):") || text.contains("{\(name):"), "every-key.yaml does not use '\(name)'")
    }
    #expect(Validator.switchKeys == Keys.switch_.names && Validator.nicKeys == Keys.nic.names && Validator.guestKeys == Keys.guest.names)
}

/// The schema tools: /usr/bin/python3 (Debian's, where apt installs the modules) with
/// ruamel.yaml and jsonschema; nil (and why) when they are absent.
func schemaChecker() -> (String, String?) {
    let python = "/usr/bin/python3"
    guard FileManager.default.isExecutableFile(atPath: python) else { return (python, "no \(python)") }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", "import ruamel.yaml, jsonschema"]
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return (python, "cannot run \(python)") }
    p.waitUntilExit()
    return p.terminationStatus == 0 ? (python, nil) : (python, "python3-ruamel.yaml or python3-jsonschema is not installed (Scripts/setup.sh installs them)")
}

/// Loads each file as YAML 1.2 (ruamel.yaml, pure Python) and validates it against the
/// schema with draft 2020-12 and draft 7 validators; prints one JSON object per file.
let schemaScript = #"""
import json, sys
from ruamel.yaml import YAML
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.Draft7Validator.check_schema(schema)
v2020, v7 = jsonschema.Draft202012Validator(schema), jsonschema.Draft7Validator(schema)
out = {}
for path in sys.argv[2:]:
    yaml = YAML(typ="safe", pure=True)
    try:
        with open(path) as f:
            doc = yaml.load(f)
    except Exception as e:
        out[path] = {"yaml": str(e).splitlines()[0]}
        continue
    macs = []
    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "mac":
                    macs.append(v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    out[path] = {"2020": sorted(e.message for e in v2020.iter_errors(doc)),
                 "7": sorted(e.message for e in v7.iter_errors(doc)),
                 "macs_not_strings": [repr(m) for m in macs if not isinstance(m, str)]}
print(json.dumps(out))
"""#

func runSchemaCheck(_ files: [String]) throws -> [String: [String: [String]]]? {
    let (python, missing) = schemaChecker()
    if let missing { try Test.cancel("skipped: \(missing)") }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", schemaScript, schemaURL.path] + files
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationStatus == 0, "schema check failed: \(errText)")
    guard p.terminationStatus == 0 else { return nil }
    let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    return json.mapValues { ($0 as? [String: Any] ?? [:]).mapValues { ($0 as? [String]) ?? [String(describing: $0)] } }
}

@Test func everyShippedTopologyIsValidYAML12AndValidAgainstTheSchema() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: topologiesDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        .map { topologiesDirectory.appendingPathComponent($0).path }
    let everyKey = try #require(Bundle.module.url(forResource: "Fixtures/every-key", withExtension: "yaml")).path
    guard let results = try runSchemaCheck(files + [everyKey]) else { return }
    #expect(results.count == files.count + 1)
    for (path, r) in results {
        #expect(r["yaml"] == nil, "\(path): not YAML 1.2: \(r["yaml"] ?? [])")
        #expect(r["2020"] == [], "\(path): draft 2020-12: \(r["2020"] ?? [])")
        #expect(r["7"] == [], "\(path): draft 7: \(r["7"] ?? [])")
        #expect(r["macs_not_strings"] == [], "\(path): MACs a YAML reader does not read as strings: \(r["macs_not_strings"] ?? [])")
    }
}

@Test func invalidFixturesFailTheSchemaAndTheLoader() throws {
    let dir = try #require(Bundle.module.url(forResource: "Fixtures/schema-invalid", withExtension: nil))
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
    #expect(files.count >= 10)
    for f in files {
        let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
        #expect(throws: TopologyErrors.self, "\(f) should fail the loader") { _ = try TopologyLoader.parse(text, file: f) }
    }
    guard let results = try runSchemaCheck(files.map { dir.appendingPathComponent($0).path }) else { return }
    for (path, r) in results {
        #expect(r["yaml"] == nil && !(r["2020"] ?? []).isEmpty && !(r["7"] ?? []).isEmpty, "\(path) should fail the schema: \(r)")
    }
}
