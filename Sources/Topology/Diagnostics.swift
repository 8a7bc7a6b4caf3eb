/// One problem found in a topology file, located at the offending YAML node.
///
/// Rendered the way compilers do (`file:line:column: error: message`) so editors and CI logs
/// can jump to it. Lines and columns are 1-based; columns count Unicode scalars (libyaml's unit).
public struct TopologyDiagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    /// Errors stop `up`; warnings are printed and the topology runs.
    public var severity: Severity

    public init(file: String, line: Int, column: Int, message: String, severity: Severity = .error) {
        self.file = file; self.line = line; self.column = column; self.message = message; self.severity = severity
    }

    /// `file:line:column: error: message` (or `warning:`)
    public var description: String { "\(file):\(line):\(column): \(severity.rawValue): \(message)" }
}

/// A public line:column (1-based) kept in the model for checks made after loading (e.g. an
/// uplink NIC that does not exist on this host).
public struct TextPosition: Hashable, Sendable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
}

/// Every problem found in one topology file, in file order (line, then column).
///
/// Loading never stops at the first error: a user fixing a file wants the whole list at once
/// (`tapestry validate`).
public struct TopologyErrors: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [TopologyDiagnostic]
    public init(diagnostics: [TopologyDiagnostic]) { self.diagnostics = diagnostics }
    /// One diagnostic per line.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// A position in the source text (1-based line and column).
struct SourceLocation: Hashable, Sendable {
    var line: Int
    var column: Int
    static let start = SourceLocation(line: 1, column: 1)
}

/// Collects diagnostics while a file is validated.
struct DiagnosticSink {
    let file: String
    private(set) var diagnostics: [TopologyDiagnostic] = []
    private(set) var warnings: [TopologyDiagnostic] = []

    /// Longest message kept (`TopologyLimits.maxMessageLength`); longer ones are cut.
    var maxMessageLength = 1_024

    init(file: String) { self.file = file }

    mutating func warning(_ message: String, at location: SourceLocation) {
        warnings.append(TopologyDiagnostic(file: file, line: location.line, column: location.column, message: cut(message), severity: .warning))
    }

    mutating func error(_ message: String, at location: SourceLocation) {
        diagnostics.append(TopologyDiagnostic(file: file, line: location.line, column: location.column, message: cut(message)))
    }

    /// `message`, or its first `maxMessageLength` characters and a note that it was cut.
    private func cut(_ message: String) -> String {
        guard message.utf8.count > maxMessageLength else { return message }
        return String(message.prefix(maxMessageLength)) + "… (cut)"
    }

    var hasErrors: Bool { !diagnostics.isEmpty }

    /// Appends `text` to the last error's message (a detail only the caller knows).
    mutating func annotateLast(_ text: String) {
        guard !diagnostics.isEmpty else { return }
        diagnostics[diagnostics.count - 1].message += text
    }

    /// Warnings in file order.
    var sortedWarnings: [TopologyDiagnostic] { Self.inFileOrder(warnings) }

    /// Diagnostics in file order; equal positions keep the order they were found in.
    var sorted: [TopologyDiagnostic] { Self.inFileOrder(diagnostics) }

    static func inFileOrder(_ list: [TopologyDiagnostic]) -> [TopologyDiagnostic] {
        list.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }
}

// MARK: - "Did you mean"

/// The candidate a misspelt `word` most likely meant, if any.
///
/// A candidate matches when it differs only in case, `-` and `_` (`port_groups`, `portGroups`
/// → `port-groups`), or is within optimal-string-alignment distance 2 (a transposition counts
/// once) and the distance is smaller than the candidate's length, so `ab` never "means" `ip`.
/// Ties go to the closer candidate, then to the earlier one in `candidates`.
func suggestion(for word: String, among candidates: [String]) -> String? {
    func folded(_ s: String) -> String { String(s.lowercased().filter { $0 != "-" && $0 != "_" }) }
    let f = folded(word)
    if let exact = candidates.first(where: { folded($0) == f }) { return exact }
    var best: (String, Int)? = nil
    for c in candidates {
        let d = editDistance(word.lowercased(), c.lowercased())
        guard d <= 2, d < c.count else { continue }
        if best == nil || d < best!.1 { best = (c, d) }
    }
    return best?.0
}

/// `"; did you mean 'x'?"` or the empty string.
func didYouMean(_ word: String, among candidates: [String]) -> String {
    suggestion(for: word, among: candidates).map { "; did you mean '\($0)'?" } ?? ""
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
func editDistance(_ a: String, _ b: String) -> Int {
    let s = Array(a.unicodeScalars), t = Array(b.unicodeScalars)
    if s.isEmpty { return t.count }
    if t.isEmpty { return s.count }
    var d = Array(repeating: Array(repeating: 0, count: t.count + 1), count: s.count + 1)
    for i in 0...s.count { d[i][0] = i }
    for j in 0...t.count { d[0][j] = j }
    for i in 1...s.count {
        for j in 1...t.count {
            let cost = s[i - 1] == t[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, s[i - 1] == t[j - 2], s[i - 2] == t[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[s.count][t.count]
}
