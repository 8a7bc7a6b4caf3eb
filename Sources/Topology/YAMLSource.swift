// Yams' C target: libyaml's event parser. Topology reaches it through the Yams product it
// depends on (SwiftPM puts CYaml's module map on the path of every target that depends on
// Yams), because composing has to be bounded while it happens, and Yams' `compose` is not:
// see `composeSource`.
import CYaml

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

/// Result of reading YAML text: a root node, or the error that stopped reading (a syntax
/// error, or a limit of `TopologyLimits`).
enum Composition {
    case document(SourceNode?)
    case syntaxError(message: String, location: SourceLocation)
}

/// Composes `text` into `SourceNode`s from libyaml's parse events, within `limits`.
///
/// Why not `Yams.compose`: it has no bounds, and its cost is not linear in the input.
/// - An alias becomes the anchored `Node` value. That shares storage, so composing nine
///   anchors of ten aliases each is cheap, but every walk of the tree (our conversion, the
///   validator) then visits 10⁹ nodes: the 448-byte "billion laughs" file grew `validate` to
///   4–7 GB.
/// - Duplicate keys are found by hashing whole key nodes (an aliased key hashes its whole
///   expansion) and reported by throwing, which hid every other error; working around that
///   meant composing the file again once per duplicate (quadratic).
/// - It builds the whole tree before anything can count it: a 50 MB trunk list of 17 M
///   entries took 3.8 GB.
///
/// Here every limit is checked as the events arrive, so memory stays proportional to what was
/// accepted: the byte size first (before libyaml sees the text), then the nesting depth, the
/// number of aliases and the number of nodes, where an alias counts as many nodes as the tree
/// it stands for (its expansion is counted, never built: the alias shares the anchored node's
/// storage). Duplicate keys are kept and reported by the validator, in one pass.
func composeSource(_ text: String, limits: TopologyLimits = .standard) -> Composition {
    var text = text
    let size = text.utf8.count
    if size > limits.maxFileBytes {
        return .syntaxError(message: "the file is \(size) bytes; a topology file may have at most \(limits.maxFileBytes) bytes (\(limits.maxFileBytes / 1024) KiB)",
                            location: .start)
    }
    return text.withUTF8 { buffer in
        var composer = EventComposer(limits: limits, text: buffer)
        return composer.run()
    }
}

/// Builds `SourceNode`s from libyaml events without recursion (an explicit stack), counting
/// nodes, depth and aliases as it goes.
private struct EventComposer {
    let limits: TopologyLimits
    let text: UnsafeBufferPointer<UInt8>

    /// A collection being composed.
    struct Open {
        var location: SourceLocation
        var anchor: String?
        var isMapping: Bool
        var items: [SourceNode] = []
        var pairs: [(key: SourceNode, value: SourceNode)] = []
        var pendingKey: SourceNode? = nil
        /// Nodes in this collection's expansion so far, itself included.
        var weight = 1
    }

    var stack: [Open] = []
    /// Completed anchored nodes and the number of nodes each stands for.
    var anchors: [String: (node: SourceNode, weight: Int)] = [:]
    var nodes = 0
    var aliases = 0
    var root: SourceNode? = nil
    var documents = 0

    init(limits: TopologyLimits, text: UnsafeBufferPointer<UInt8>) { self.limits = limits; self.text = text }

    mutating func run() -> Composition {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            return .syntaxError(message: "invalid YAML: the parser could not start (out of memory)", location: .start)
        }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(&parser, text.baseAddress, text.count)
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else { return parserError(parser) }
            defer { yaml_event_delete(&event) }
            let mark = SourceLocation(line: event.start_mark.line + 1, column: event.start_mark.column + 1)
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return .document(root)
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    return .syntaxError(message: "a topology file holds one YAML document; found a second one here", location: mark)
                }
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                if Int(s.length) > limits.maxScalarBytes {
                    return .syntaxError(message: "a scalar of \(s.length) bytes; a topology file's scalars have at most \(limits.maxScalarBytes)", location: mark)
                }
                let value = string(s.value, Int(s.length))
                let isNull = s.style == YAML_PLAIN_SCALAR_STYLE && (value.isEmpty || value == "~" || value == "null")
                if let error = add(SourceNode(kind: .scalar(value), location: mark, isNull: isNull), weight: 1,
                                   anchor: cString(s.anchor), at: mark) { return error }
            case YAML_ALIAS_EVENT:
                let name = cString(event.data.alias.anchor) ?? ""
                aliases += 1
                if aliases > limits.maxAliases {
                    return .syntaxError(message: "more than \(limits.maxAliases) aliases; a topology file may use at most \(limits.maxAliases)", location: mark)
                }
                guard let target = anchors[name] else {
                    return .syntaxError(message: "invalid YAML: found undefined alias '\(name)'", location: mark)
                }
                // The alias shares the anchored node's storage; only its size is counted.
                var node = target.node
                node.location = mark
                if let error = add(node, weight: target.weight, anchor: nil, at: mark, alias: name) { return error }
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                if stack.count >= limits.maxDepth {
                    return .syntaxError(message: "lists and mappings nested deeper than \(limits.maxDepth) levels; a topology file may nest at most \(limits.maxDepth)",
                                        location: mark)
                }
                if let error = count(1, at: mark, alias: nil) { return error }
                let isMapping = event.type == YAML_MAPPING_START_EVENT
                let anchor = isMapping ? cString(event.data.mapping_start.anchor) : cString(event.data.sequence_start.anchor)
                stack.append(Open(location: mark, anchor: anchor, isMapping: isMapping))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let open = stack.removeLast()
                let kind: SourceNode.Kind = open.isMapping ? .mapping(open.pairs) : .sequence(open.items)
                // Already counted at the start event: attach without counting again.
                if let error = add(SourceNode(kind: kind, location: open.location, isNull: false), weight: open.weight,
                                   anchor: open.anchor, at: open.location, counted: true) { return error }
            default:
                break   // stream start, document end
            }
        }
    }

    /// Adds `n` nodes to the total, failing once it passes the limit.
    mutating func count(_ n: Int, at mark: SourceLocation, alias: String?) -> Composition? {
        nodes += n
        guard nodes > limits.maxNodes else { return nil }
        if let alias {
            return .syntaxError(message: "alias '*\(alias)' stands for \(n) nodes, which takes the file past \(limits.maxNodes) YAML nodes (an alias counts as a copy of what it refers to); a topology file may have at most \(limits.maxNodes)",
                                location: mark)
        }
        return .syntaxError(message: "more than \(limits.maxNodes) YAML nodes; a topology file may have at most \(limits.maxNodes)", location: mark)
    }

    /// Attaches a completed node to the collection being composed (or makes it the root).
    mutating func add(_ node: SourceNode, weight: Int, anchor: String?, at mark: SourceLocation,
                      alias: String? = nil, counted: Bool = false) -> Composition? {
        if !counted, let error = count(weight, at: mark, alias: alias) { return error }
        if let anchor { anchors[anchor] = (node, weight) }
        guard !stack.isEmpty else { root = node; return nil }
        let top = stack.count - 1
        stack[top].weight += weight
        if stack[top].isMapping {
            if let key = stack[top].pendingKey {
                stack[top].pairs.append((key, node))
                stack[top].pendingKey = nil
            } else {
                stack[top].pendingKey = node
            }
        } else {
            stack[top].items.append(node)
        }
        return nil
    }

    func string(_ p: UnsafeMutablePointer<yaml_char_t>?, _ length: Int) -> String {
        guard let p, length > 0 else { return "" }
        return String(decoding: UnsafeBufferPointer(start: p, count: length), as: UTF8.self)
    }

    func cString(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let p else { return nil }
        return String(cString: p)
    }

    /// A libyaml error as a located message (the format Yams used: the problem, then the
    /// context and where it began).
    func parserError(_ parser: yaml_parser_t) -> Composition {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        switch parser.error {
        case YAML_MEMORY_ERROR:
            return .syntaxError(message: "invalid YAML: out of memory", location: .start)
        case YAML_READER_ERROR:
            // The offset counts bytes of the UTF-8 input; columns count Unicode scalars.
            let offset = min(parser.problem_offset, text.count)
            let before = String(decoding: UnsafeBufferPointer(rebasing: text[0..<offset]), as: UTF8.self)
            let lines = before.split(separator: "\n", omittingEmptySubsequences: false)
            return .syntaxError(message: "invalid YAML: \(problem)",
                                location: SourceLocation(line: lines.count, column: (lines.last?.unicodeScalars.count ?? 0) + 1))
        default:
            let mark = SourceLocation(line: parser.problem_mark.line + 1, column: parser.problem_mark.column + 1)
            var message = "invalid YAML: \(problem)"
            if let context = parser.context {
                message += " (\(String(cString: context)) at line \(parser.context_mark.line + 1), column \(parser.context_mark.column + 1))"
            }
            return .syntaxError(message: message, location: mark)
        }
    }
}
