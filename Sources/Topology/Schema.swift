/// The JSON Schema of topology files (`Topologies/tapestry.schema.json`), generated from the
/// loader's key tables (`Keys`), so editors (yaml-language-server, VS Code, IntelliJ) complete
/// and check keys the way `tapestry validate` does.
///
/// Draft 2020-12 by `$schema`, written with only what draft-07 tools also understand:
/// `definitions` with `#/definitions/…` references (a JSON pointer resolves under both),
/// `type`, `properties`, `required`, `additionalProperties`, `patternProperties`,
/// `propertyNames`, `items` as a single schema, `anyOf`, `enum`, `pattern`, `minimum`,
/// `maximum`, `minItems`, `maxItems`, `maxLength`, `minProperties`. The schema is looser than
/// the loader in places a schema cannot express (cross references, duplicates, address
/// classes); descriptions say where the loader is stricter than YAML 1.2.
public enum TopologySchema {
    /// The schema document, pretty-printed with two-space indentation and a final newline.
    public static func json() -> String {
        var root: [(String, JSON)] = [
            ("$schema", .string("https://json-schema.org/draft/2020-12/schema")),
            ("$id", .string("https://tapestry.invalid/schemas/tapestry.schema.json")),
            ("title", .string("Tapestry topology")),
            ("description", .string("A Tapestry topology file (Topologies/README.md). Generated from the loader's key tables by Tests/TopologyTests/SchemaTests.swift; do not edit by hand. `tapestry validate` is stricter: it reads every scalar from its source text (a leading zero, yes/no, an unquoted MAC are errors or mean what they look like), and checks cross references, duplicates and addresses.")),
        ]
        root += object(Keys.topLevel)
        root.append(("definitions", .object(Keys.definitions.map { name, shape, description in
            (name, .object(withDescription(schema(shape), description)))
        })))
        return render(.object(root), indent: 0) + "\n"
    }

    indirect enum JSON {
        case string(String), int(Int), bool(Bool), array([JSON]), object([(String, JSON)])
    }

    static func withDescription(_ s: JSON, _ description: String) -> [(String, JSON)] {
        guard case .object(let pairs) = s else { return [("description", .string(description))] }
        if pairs.count == 1, pairs[0].0 == "$ref" {
            // Draft 7 ignores siblings of $ref: wrap it so the description is kept.
            return [("description", .string(description)), ("allOf", .array([s]))]
        }
        return [("description", .string(description))] + pairs
    }

    static func object(_ table: KeyTable) -> [(String, JSON)] {
        var out: [(String, JSON)] = [("type", .string("object"))]
        out.append(("properties", .object(table.keys.map { k in (k.name, .object(withDescription(schema(k.shape), k.description))) })))
        let required = table.keys.filter(\.required).map { JSON.string($0.name) }
        if !required.isEmpty { out.append(("required", .array(required))) }
        out.append(("additionalProperties", .bool(false)))
        return out
    }

    static func schema(_ shape: Shape) -> JSON {
        switch shape {
        case .ref(let name): return .object([("$ref", .string("#/definitions/\(name)"))])
        case .object(let table): return .object(object(table))
        case .map(let pattern, let maxKeyLength, let value, let minEntries):
            var names: [(String, JSON)] = [("pattern", .string(pattern))]
            if let m = maxKeyLength { names.append(("maxLength", .int(m))) }
            var out: [(String, JSON)] = [("type", .string("object")), ("propertyNames", .object(names)),
                                         ("additionalProperties", schema(value))]
            if minEntries > 0 { out.append(("minProperties", .int(minEntries))) }
            return .object(out)
        case .list(let item, let minItems, let maxItems):
            var out: [(String, JSON)] = [("type", .string("array")), ("items", schema(item))]
            if minItems > 0 { out.append(("minItems", .int(minItems))) }
            if let m = maxItems { out.append(("maxItems", .int(m))) }
            return .object(out)
        case .anyOf(let shapes): return .object([("anyOf", .array(shapes.map(schema)))])
        case .string(let pattern, let maxLength):
            var out: [(String, JSON)] = [("type", .string("string"))]
            if let p = pattern { out.append(("pattern", .string(p))) }
            if let m = maxLength { out.append(("maxLength", .int(m))) }
            return .object(out)
        case .enumeration(let values): return .object([("type", .string("string")), ("enum", .array(values.map(JSON.string)))])
        case .integer(let r): return .object([("type", .string("integer")), ("minimum", .int(r.lowerBound)), ("maximum", .int(r.upperBound))])
        case .boolean: return .object([("type", .string("boolean"))])
        case .null: return .object([("type", .string("null"))])
        }
    }

    static func render(_ value: JSON, indent: Int) -> String {
        let pad = String(repeating: "  ", count: indent + 1), close = String(repeating: "  ", count: indent)
        switch value {
        case .string(let s): return quote(s)
        case .int(let n): return String(n)
        case .bool(let b): return b ? "true" : "false"
        case .array(let items):
            if items.allSatisfy({ if case .object = $0 { return false } else { return true } }) {
                return "[" + items.map { render($0, indent: indent + 1) }.joined(separator: ", ") + "]"
            }
            return "[\n" + items.map { pad + render($0, indent: indent + 1) }.joined(separator: ",\n") + "\n" + close + "]"
        case .object(let pairs):
            if pairs.isEmpty { return "{}" }
            return "{\n" + pairs.map { pad + quote($0.0) + ": " + render($0.1, indent: indent + 1) }.joined(separator: ",\n") + "\n" + close + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += unicodeEscape(u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    private static func unicodeEscape(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
