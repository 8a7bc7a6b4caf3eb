import Yams

/// A YAML node reduced to what validation needs: its kind, its source text and where it is.
///
/// Scalars keep the text exactly as written (after YAML unquoting) and no resolved type, so
/// `52:54:00:00:70:01` stays a MAC rather than a base-60 integer, `no` stays the string "no",
/// and `"10"` means the same as `10`. Mappings keep every pair, duplicates included, so they
/// can be reported where they are.
struct SourceNode {
    enum Kind {
        case scalar(String)
        case mapping([(key: SourceNode, value: SourceNode)])
        case sequence([SourceNode])
    }
    var kind: Kind
    var location: SourceLocation
    /// A plain empty scalar (`key:` with nothing after it), `~` or `null`.
    var isNull: Bool

    var scalar: String? { if case .scalar(let s) = kind { return s } else { return nil } }

    /// "a mapping", "a list", "a scalar" — for "expected …, found …" messages.
    var kindName: String {
        switch kind {
        case .scalar: return isNull ? "nothing" : "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }
}

/// A pair of a mapping whose key is known: where the key is, and the value.
struct SourceField {
    var key: SourceNode
    var value: SourceNode
}

/// The known keys of one mapping, plus the known keys that unknown ones were taken for
/// (so a misspelt required key is reported once, as unknown, not again as missing).
struct SourceFields {
    var known: [String: SourceField] = [:]
    var suggested: Set<String> = []
    subscript(key: String) -> SourceField? { known[key] }
}

/// Result of reading YAML text: a root node, or the syntax error that stopped the parser.
enum Composition {
    case document(SourceNode?)
    case syntaxError(message: String, location: SourceLocation)
}

/// Composes `text` with Yams (libyaml) into `SourceNode`s.
///
/// Yams rejects a mapping with duplicate keys outright, which would hide every other error and
/// point at the first key rather than the repeated one. So on that error the first occurrence
/// is renamed in a private copy of the text (its first character replaced by a private-use
/// scalar: same length, so every other node keeps its line and column) and composition is
/// retried; the original key text is restored in the resulting tree, and `Validator` reports
/// the duplicate at the second occurrence like any other error.
func composeSource(_ text: String) -> Composition {
    var scalars = Array(text.unicodeScalars)
    var renamed: [SourceLocation: String] = [:]
    var attempt = 0
    while true {
        let current = String(String.UnicodeScalarView(scalars))
        do {
            let root = try Yams.compose(yaml: current)
            return .document(root.map { convert($0, renamed: renamed) })
        } catch let error as YamlError {
            switch error {
            case .duplicatedKeysInMapping(let duplicates, let context):
                let loc = SourceLocation(line: context.mark.line, column: context.mark.column)
                guard attempt < 1000, let original = duplicates.sorted().first, original != "<uncovertable>",
                      renameKey(at: loc, in: &scalars, marker: attempt) else {
                    let key = duplicates.sorted().first.flatMap { $0 == "<uncovertable>" ? nil : "'\($0)'" }
                    return .syntaxError(message: "duplicate key \(key ?? "(a list or mapping used as a key)") in a mapping",
                                        location: loc)
                }
                renamed[loc] = original
                attempt += 1
            default:
                let (message, loc) = describe(error, text: current)
                return .syntaxError(message: message, location: loc)
            }
        } catch {
            return .syntaxError(message: "invalid YAML: \(error)", location: .start)
        }
    }
}

/// Replaces the first character of the key starting at `location` with a private-use scalar.
private func renameKey(at location: SourceLocation, in scalars: inout [Unicode.Scalar], marker: Int) -> Bool {
    guard let start = offset(of: location, in: scalars) else { return false }
    var i = start
    if i < scalars.count, scalars[i] == "\"" || scalars[i] == "'" { i += 1 }
    guard i < scalars.count, !isLineBreak(scalars[i]), scalars[i] != "\"", scalars[i] != "'" else { return false }
    if i == start, ["{", "[", "?", "&", "*", "!", "|", ">"].contains(scalars[i]) { return false }
    scalars[i] = Unicode.Scalar(0xE000 + UInt32(marker % 6000))!
    return true
}

private func isLineBreak(_ s: Unicode.Scalar) -> Bool {
    s == "\n" || s == "\r" || s == "\u{85}" || s == "\u{2028}" || s == "\u{2029}"
}

/// Index of a 1-based line/column (columns in Unicode scalars, as libyaml counts them).
private func offset(of location: SourceLocation, in scalars: [Unicode.Scalar]) -> Int? {
    var line = 1, i = 0
    while line < location.line {
        guard i < scalars.count else { return nil }
        if scalars[i] == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
        if isLineBreak(scalars[i]) { line += 1 }
        i += 1
    }
    let target = i + location.column - 1
    return target < scalars.count ? target : nil
}

private func convert(_ node: Node, renamed: [SourceLocation: String]) -> SourceNode {
    let loc = node.mark.map { SourceLocation(line: $0.line, column: $0.column) } ?? .start
    switch node {
    case .scalar(let s):
        let text = renamed[loc] ?? s.string
        let isNull = s.style == .plain && (text.isEmpty || text == "~" || text == "null")
        return SourceNode(kind: .scalar(text), location: loc, isNull: isNull)
    case .mapping(let m):
        let pairs = m.map { (key: convert($0.key, renamed: renamed), value: convert($0.value, renamed: renamed)) }
        return SourceNode(kind: .mapping(pairs), location: loc, isNull: false)
    case .sequence(let s):
        return SourceNode(kind: .sequence(s.map { convert($0, renamed: renamed) }), location: loc, isNull: false)
    case .alias:
        // Yams resolves aliases to the anchored node while composing; an unresolved one is empty.
        return SourceNode(kind: .scalar(""), location: loc, isNull: true)
    }
}

private func describe(_ error: YamlError, text: String) -> (String, SourceLocation) {
    func loc(_ m: Mark) -> SourceLocation { SourceLocation(line: m.line, column: m.column) }
    func msg(_ context: YamlError.Context?, _ problem: String) -> String {
        "invalid YAML: \(problem)" + (context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? "")
    }
    switch error {
    case let .scanner(context, problem, mark, _): return (msg(context, problem), loc(mark))
    case let .parser(context, problem, mark, _): return (msg(context, problem), loc(mark))
    case let .composer(context, problem, mark, _): return (msg(context, problem), loc(mark))
    case let .reader(problem, offset, _, _):
        guard let offset else { return ("invalid YAML: \(problem)", .start) }
        // The reader's offset counts bytes of the UTF-8 input.
        let prefix = text.utf8.prefix(offset)
        let before = String(decoding: prefix, as: UTF8.self)
        let lines = before.split(separator: "\n", omittingEmptySubsequences: false)
        return ("invalid YAML: \(problem)", SourceLocation(line: lines.count, column: (lines.last?.unicodeScalars.count ?? 0) + 1))
    default:
        return ("invalid YAML: \(error)", .start)
    }
}
