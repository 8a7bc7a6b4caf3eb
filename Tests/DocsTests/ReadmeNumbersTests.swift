import Foundation
import Testing

/// The README's performance figures come from result files, never from hand typing
/// (`Scripts/bench/publish.py` copies each `Scripts/bench/NAME.md` into the block
/// `<!-- bench:begin NAME -->` … `<!-- bench:end NAME -->`).
@Suite struct ReadmeNumbersTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func read(_ path: String) -> String { (try? String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)) ?? "" }

    /// A generated block: its name, its body, and where it sits in the text.
    struct Block { var name: String; var body: String; var range: Range<String.Index> }

    static func blocks(in text: String) -> [Block] {
        let pattern = try! NSRegularExpression(pattern: "<!-- bench:begin(?: ([a-z0-9-]+))? -->\\n(.*?)\\n?<!-- bench:end(?: ([a-z0-9-]+))? -->",
                                               options: [.dotMatchesLineSeparators])
        return pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { m in
            let name = Range(m.range(at: 1), in: text).map { String(text[$0]) } ?? "results"
            let end = Range(m.range(at: 3), in: text).map { String(text[$0]) } ?? "results"
            #expect(name == end, "block markers disagree: begin \(name), end \(end)")
            return Block(name: name, body: Range(m.range(at: 2), in: text).map { String(text[$0]) } ?? "", range: Range(m.range, in: text)!)
        }
    }

    /// What publish.py puts in a block: the result file without its `# ` title lines.
    static func expectedBody(_ name: String) -> String? {
        let file = read("Scripts/bench/\(name).md")
        guard !file.isEmpty else { return nil }
        return file.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("# ") }
            .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The `## Performance` section (to the next `## ` heading).
    static func performanceSection(_ readme: String) -> Substring? {
        guard let start = readme.range(of: "\n## Performance\n") else { return nil }
        let rest = readme[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return readme[start.lowerBound..<end]
    }

    @Test func everyGeneratedBlockEqualsItsResultFile() throws {
        let readme = Self.read("README.md")
        let blocks = Self.blocks(in: readme)
        #expect(!blocks.isEmpty, "README.md has generated blocks")
        for b in blocks {
            let expected = try #require(Self.expectedBody(b.name), "Scripts/bench/\(b.name).md exists for block '\(b.name)'")
            #expect(b.body.trimmingCharacters(in: .whitespacesAndNewlines) == expected,
                    "block '\(b.name)' differs from Scripts/bench/\(b.name).md: run python3 Scripts/bench/publish.py")
            #expect(expected.range(of: #"date: \d{4}-\d\d-\d\d"#, options: .regularExpression) != nil, "Scripts/bench/\(b.name).md carries its date")
        }
    }

    @Test func everyNumberInThePerformanceSectionIsGenerated() throws {
        let readme = Self.read("README.md")
        let section = try #require(Self.performanceSection(readme), "README.md has a '## Performance' section")
        var text = String(section)
        // Cut the generated blocks, fenced code and inline code (commands and flags).
        for b in Self.blocks(in: text).reversed() { text.removeSubrange(b.range) }
        text = text.replacingOccurrences(of: "```[^`]*```", with: "", options: .regularExpression)
        text = text.replacingOccurrences(of: "`[^`\n]*`", with: "", options: .regularExpression)
        let offending = text.split(separator: "\n").filter { $0.rangeOfCharacter(from: .decimalDigits) != nil }
        #expect(offending.isEmpty, "numbers typed by hand in the Performance section (put them in a result file):\n\(offending.joined(separator: "\n"))")
        // Every result file has its block here, and every block its file.
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Scripts/bench").path)) ?? [])
            .filter { $0.hasSuffix(".md") }.map { String($0.dropLast(3)) }.sorted()
        #expect(files.count >= 11, "the bench result files: \(files)")
        #expect(Self.blocks(in: String(section)).map(\.name).sorted() == files)
    }

    @Test func theCheckCatchesAHandTypedNumber() {
        // The same check on a doctored section: a figure outside the blocks is found.
        let doctored = "\n## Performance\nTapestry forwards 30 M frames/s.\n<!-- bench:begin results -->\nx 1\n<!-- bench:end results -->\n"
        var text = String(Self.performanceSection(doctored) ?? "")
        for b in Self.blocks(in: text).reversed() { text.removeSubrange(b.range) }
        #expect(text.split(separator: "\n").contains { $0.rangeOfCharacter(from: .decimalDigits) != nil })
    }
}
