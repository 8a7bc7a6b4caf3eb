import Core
import Model

/// Readers for the leaves of the file. Each reads the scalar's source text, reports what is
/// wrong at the node's location and returns `nil` when the value is unusable.
extension Validator {
    /// Checks `node` is a mapping and returns its pairs by key (first occurrence of each).
    ///
    /// Reports non-scalar keys, duplicate keys (at the repeated key, naming the first one's
    /// line) and, when `allowed` is given, unknown keys with a suggestion.
    mutating func mapping(_ node: SourceNode, _ what: String, allowed: [String]) -> SourceFields? {
        guard let pairs = mappingPairs(node, what) else { return nil }
        var out = SourceFields()
        for (key, value) in pairs {
            guard let k = key.scalar else {
                error("expected a scalar key in \(what), found \(key.kindName)", at: key.location)
                continue
            }
            if let first = out.known[k] {
                error("duplicate key '\(k)' in \(what) (first defined at line \(first.key.location.line))", at: key.location)
                continue
            }
            if !allowed.contains(k) {
                var guess: String? = nil
                if suggestionsLeft > 0, k.utf8.count <= 64 { suggestionsLeft -= 1; guess = suggestion(for: k, among: allowed) }
                if let guess { out.suggested.insert(guess) }
                error("unknown key '\(k)' in \(what)" + (guess.map { "; did you mean '\($0)'?" } ?? ""), at: key.location)
                continue
            }
            out.known[k] = SourceField(key: key, value: value)
        }
        return out
    }

    /// The pairs of a mapping whose keys are names (switches, port groups, guests), in file
    /// order; duplicates and non-scalar keys are reported and left out.
    mutating func namedEntries(_ node: SourceNode, _ what: String) -> [(name: String, key: SourceNode, value: SourceNode)]? {
        guard let pairs = mappingPairs(node, what) else { return nil }
        var seen: [String: SourceNode] = [:]
        var out: [(name: String, key: SourceNode, value: SourceNode)] = []
        for (key, value) in pairs {
            guard let k = key.scalar, !key.isNull else {
                error("expected a name as key in \(what), found \(key.kindName)", at: key.location)
                continue
            }
            if let first = seen[k] {
                error("duplicate key '\(k)' in \(what) (first defined at line \(first.location.line))", at: key.location)
                continue
            }
            seen[k] = key
            out.append((k, key, value))
        }
        return out
    }

    private mutating func mappingPairs(_ node: SourceNode, _ what: String) -> [(key: SourceNode, value: SourceNode)]? {
        if case .mapping(let pairs) = node.kind { return pairs }
        error("expected a mapping for \(what), found \(node.kindName)", at: node.location)
        return nil
    }

    /// Reports a missing required key of a mapping at `location`.
    mutating func require(_ key: String, in fields: SourceFields, _ what: String, at location: SourceLocation) -> SourceField? {
        if let f = fields[key] { return f }
        if fields.suggested.contains(key) { return nil }
        error("missing required key '\(key)' in \(what)", at: location)
        return nil
    }

    mutating func list(_ node: SourceNode, _ what: String) -> [SourceNode]? {
        if case .sequence(let items) = node.kind { return items }
        error("expected a list for \(what), found \(node.kindName)", at: node.location)
        return nil
    }

    /// The text of a scalar; a missing value (`key:` alone) is an error.
    mutating func text(_ node: SourceNode, _ what: String) -> String? {
        guard let s = node.scalar else {
            error("expected a scalar for \(what), found \(node.kindName)", at: node.location)
            return nil
        }
        if node.isNull && s.isEmpty {
            error("missing value for \(what)", at: node.location)
            return nil
        }
        return s
    }

    /// Decimal digits only; a leading zero is refused (`010` is octal to some readers).
    mutating func integer(_ node: SourceNode, _ what: String, in range: ClosedRange<Int>, unit: String = "") -> Int? {
        guard let s = text(node, what) else { return nil }
        return integer(s, what, in: range, unit: unit, at: node.location)
    }

    mutating func integer(_ s: String, _ what: String, in range: ClosedRange<Int>, unit: String = "",
                          at location: SourceLocation) -> Int? {
        guard let value = decimal(s, what, at: location) else { return nil }
        guard range.contains(value) else {
            error("\(what) \(s)\(unit) is out of range \(range.lowerBound)\(unit)..\(range.upperBound)\(unit)", at: location)
            return nil
        }
        return value
    }

    /// Parses decimal digits, reporting non-digits and leading zeros. Huge values saturate.
    mutating func decimalValue(_ s: String, _ what: String, at location: SourceLocation) -> Int? { decimal(s, what, at: location) }

    private mutating func decimal(_ s: String, _ what: String, at location: SourceLocation) -> Int? {
        guard !s.isEmpty, s.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a decimal integer for \(what), found '\(s)'", at: location)
            return nil
        }
        if s.count > 1 && s.hasPrefix("0") {
            let trimmed = String(s.drop { $0 == "0" })
            error("'\(s)' has a leading zero; write \(trimmed.isEmpty ? "0" : trimmed)", at: location)
            return nil
        }
        return Int(s) ?? Int.max
    }

    /// `true` or `false` only: YAML 1.1's `yes`/`no`/`on`/`off` are refused, not guessed.
    mutating func boolean(_ node: SourceNode, _ what: String) -> Bool? {
        guard let s = text(node, what) else { return nil }
        switch s {
        case "true": return true
        case "false": return false
        default:
            error("expected true or false for \(what), found '\(s)'", at: node.location)
            return nil
        }
    }

    /// One of the raw values of `E`.
    mutating func choice<E: RawRepresentable>(_ node: SourceNode, _ what: String, _ cases: [E]) -> E?
        where E.RawValue == String {
        guard let s = text(node, what) else { return nil }
        if let v = E(rawValue: s) { return v }
        let names = cases.map(\.rawValue)
        error("invalid \(what) '\(s)': expected \(alternatives(names))" + hint(s, among: names), at: node.location)
        return nil
    }

    /// A name: `[a-z0-9][a-z0-9-]*` (or a letter first when `letterFirst`), at most `maxLength`
    /// (the rule lives in `NameRules`, which the command line uses too).
    mutating func name(_ s: String, _ what: String, maxLength: Int, letterFirst: Bool = false,
                       at location: SourceLocation) -> Bool {
        guard let problem = NameRules.problem(with: s, as: .init(what: what, maxLength: maxLength, letterFirst: letterFirst)) else { return true }
        error(problem, at: location)
        return false
    }

    /// A kernel interface name (`IFNAMSIZ` - 1 = 15 bytes; no `/`, `:` or whitespace; not `.`/`..`).
    mutating func interfaceName(_ node: SourceNode, _ what: String) -> String? {
        guard let s = text(node, what) else { return nil }
        if let problem = NameRules.interfaceNameProblem(s) {
            error(problem, at: node.location)
            return nil
        }
        return s
    }

    /// A VLAN number 1…4094.
    mutating func vlanNumber(_ s: String, at location: SourceLocation) -> VLANID? {
        integer(s, "VLAN", in: 1...4094, at: location).flatMap { VLANID(checking: $0) }
    }

    /// `none` (the untagged domain) or a VLAN number.
    mutating func vlanOrNone(_ node: SourceNode, _ what: String) -> VLANID? {
        guard let s = text(node, what) else { return nil }
        if s == "none" { return .untagged }
        return vlanNumber(s, at: node.location)
    }

    /// `aa:bb:cc:dd:ee:ff`.
    mutating func mac(_ node: SourceNode, _ what: String) -> MACAddress? {
        guard let s = text(node, what) else { return nil }
        guard let m = MACAddress(s) else {
            error("invalid MAC address '\(s)': expected six two-digit hex octets like 02:00:00:00:0a:01", at: node.location)
            return nil
        }
        return m
    }

    /// A MAC a port can own: not multicast, broadcast or all-zero.
    mutating func unicastMAC(_ node: SourceNode, _ what: String) -> MACAddress? {
        guard let m = mac(node, what) else { return nil }
        if m.isBroadcast {
            error("MAC address \(m) is the broadcast address; \(what) must be unicast", at: node.location)
            return nil
        }
        if m.isMulticast {
            error("MAC address \(m) is a multicast address (low bit of the first octet set); \(what) must be unicast",
                  at: node.location)
            return nil
        }
        if m == .zero {
            error("MAC address \(m) is the all-zero address; \(what) must be unicast", at: node.location)
            return nil
        }
        return m
    }

    /// `30s`, `5m`, `1h` or plain seconds.
    mutating func duration(_ node: SourceNode, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let s = text(node, what) else { return nil }
        var digits = Substring(s), scale = 1
        switch s.last {
        case "s": digits = digits.dropLast()
        case "m": digits = digits.dropLast(); scale = 60
        case "h": digits = digits.dropLast(); scale = 3600
        default: break
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a duration like 300s, 5m or 1h for \(what), found '\(s)'", at: node.location)
            return nil
        }
        guard let n = decimal(String(digits), what, at: node.location) else { return nil }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow, range.contains(seconds) else {
            error("\(what) \(s) is out of range \(range.lowerBound)s..\(range.upperBound)s", at: node.location)
            return nil
        }
        return seconds
    }

    /// `256M` or `1G`, in MiB.
    mutating func size(_ node: SourceNode, _ what: String, inMiB range: ClosedRange<Int>) -> Int? {
        guard let s = text(node, what) else { return nil }
        var digits = Substring(s), scale = 0
        switch s.last {
        case "M": digits = digits.dropLast(); scale = 1
        case "G": digits = digits.dropLast(); scale = 1024
        default: break
        }
        guard scale > 0, !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a size like 256M or 1G for \(what), found '\(s)'", at: node.location)
            return nil
        }
        guard let n = decimal(String(digits), what, at: node.location) else { return nil }
        let (mib, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow, range.contains(mib) else {
            error("\(what) \(s) is out of range \(range.lowerBound)M..\(range.upperBound)M", at: node.location)
            return nil
        }
        return mib
    }
}

/// `a, b or c`.
func alternatives(_ names: [String]) -> String {
    guard names.count > 1 else { return names.first ?? "" }
    return names.dropLast().joined(separator: ", ") + " or " + names.last!
}

extension Validator {
    /// A busy-poll window: `0`, `50us`, `2ms`, `1s`, or plain microseconds; in microseconds.
    mutating func microseconds(_ node: SourceNode, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let s = text(node, what) else { return nil }
        var digits = Substring(s), scale = 1
        if s.hasSuffix("us") { digits = digits.dropLast(2) } else if s.hasSuffix("ms") { digits = digits.dropLast(2); scale = 1000 } else if s.hasSuffix("s") { digits = digits.dropLast(); scale = 1_000_000 }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a duration like 0, 50us, 1ms or 1s for \(what), found '\(s)'", at: node.location)
            return nil
        }
        guard let n = decimalValue(String(digits), what, at: node.location) else { return nil }
        let (us, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow, range.contains(us) else {
            error("\(what) \(s) is out of range 0..1s", at: node.location)
            return nil
        }
        return us
    }

    /// A rate in bits per second: `500kbit`, `50mbit`, `1gbit`, `1tbit` or `64000bit`
    /// (decimal prefixes, any case, as tc reads them); 1 kbit/s … 1 tbit/s.
    mutating func rate(_ node: SourceNode, _ what: String) -> UInt64? {
        guard let s = text(node, what) else { return nil }
        let lower = s.lowercased()
        if lower.hasSuffix("bps") || lower.hasSuffix("b/s") {
            error("invalid \(what) rate '\(s)': write bits per second as kbit, mbit or gbit (tc reads kbps as kilobytes per second)", at: node.location)
            return nil
        }
        var digits = Substring(lower), scale: UInt64 = 1
        if lower.hasSuffix("bit") {
            digits = digits.dropLast(3)
            switch digits.last {
            case "k": scale = 1_000; digits = digits.dropLast()
            case "m": scale = 1_000_000; digits = digits.dropLast()
            case "g": scale = 1_000_000_000; digits = digits.dropLast()
            case "t": scale = 1_000_000_000_000; digits = digits.dropLast()
            default: break
            }
        } else { digits = "" }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a rate like 500kbit, 50mbit or 1gbit for \(what), found '\(s)'", at: node.location)
            return nil
        }
        guard let n = decimalValue(String(digits), what, at: node.location) else { return nil }
        let (bits, overflow) = UInt64(n).multipliedReportingOverflow(by: scale)
        guard !overflow, (1_000...1_000_000_000_000).contains(bits) else {
            error("\(what) rate \(s) is out of range 1kbit..1tbit", at: node.location)
            return nil
        }
        return bits
    }

    /// A size in bytes: plain bytes, or `KiB`, `MiB`, `GiB`.
    mutating func byteSize(_ node: SourceNode, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let s = text(node, what) else { return nil }
        var digits = Substring(s), scale = 1
        for (unit, factor) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)] where s.hasSuffix(unit) {
            digits = digits.dropLast(3); scale = factor
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }) else {
            error("expected a size like 64KiB, 1MiB or plain bytes for \(what), found '\(s)'"
                  + (s.hasSuffix("KB") || s.hasSuffix("kB") || s.hasSuffix("MB") || s.hasSuffix("K") || s.hasSuffix("M") ? " (binary units only: KiB, MiB, GiB)" : ""),
                  at: node.location)
            return nil
        }
        guard let n = decimalValue(String(digits), what, at: node.location) else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow, range.contains(bytes) else {
            error("\(what) \(s) is out of range \(range.lowerBound)..\(range.upperBound) bytes", at: node.location)
            return nil
        }
        return bytes
    }
}
