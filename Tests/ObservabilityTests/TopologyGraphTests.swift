import Foundation
import Testing
import TestSupport
import Topology
@testable import Observability

/// The DOT picture, rendered by Graphviz's real `dot -Tsvg`.
@Suite struct TopologyGraphTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func load(_ name: String) throws -> Topology { try TopologyLoader.load(path: root + "/Topologies/" + name) }

    /// `dot -Tsvg` on `source`; the SVG's node titles and texts.
    static func render(_ source: String) throws -> (svg: String, titles: Set<String>) {
        let dir = temporaryDirectory("dot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try source.write(toFile: dir + "/g.dot", atomically: true, encoding: .utf8)
        let r = sh("dot -Tsvg '\(dir)/g.dot' 2>&1")
        #expect(r.succeeded, "dot failed: \(r.stdout)")
        // <title>…</title> per node and edge; XML escapes as dot writes them.
        var titles: Set<String> = []
        var rest = Substring(r.stdout)
        while let open = rest.range(of: "<title>"), let close = rest.range(of: "</title>", range: open.upperBound..<rest.endIndex) {
            titles.insert(String(rest[open.upperBound..<close.lowerBound]).replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&#45;", with: "-").replacingOccurrences(of: "&quot;", with: "\""))
            rest = rest[close.upperBound...]
        }
        return (r.stdout, titles)
    }

    @Test func demoTopologyRendersEveryNodeAndEdge() throws {
        guard commandExists("dot") else { try Test.cancel("skip: Graphviz dot not installed (Scripts/setup.sh installs graphviz)") }
        let t = try Self.load("demo.yaml")
        let (svg, titles) = try Self.render(TopologyGraph.dot(t))
        #expect(svg.hasPrefix("<?xml") && svg.contains("<svg"))
        #expect(titles.contains("switch:sw0") && titles.contains("cluster_sw0"))
        for g in ["web", "db", "observer"] { #expect(titles.contains("group:sw0/\(g)"), "missing group \(g): \(titles.sorted())") }
        for g in ["web1", "web2", "db1", "db2", "tap1", "app1"] { #expect(titles.contains("guest:\(g)")) }
        #expect(titles.contains("guest:web1->group:sw0/web") && titles.contains("guest:tap1->group:sw0/observer"))
        #expect(svg.contains("VLAN 10") && svg.contains("trunk 10,20 native none") && svg.contains("10.0.10.1/24"))
        #expect(svg.contains("qemu") && svg.contains("guest&#45;only") || svg.contains("guest-only"))
    }

    @Test func uplinksShowTheirRunningTeamRoles() throws {
        guard commandExists("dot") else { try Test.cancel("skip: Graphviz dot not installed") }
        let t = try Self.load("uplinks.yaml")
        let state = GraphState(uplinkRoles: ["labnic0": "active", "labnic1": "down (no-carrier)"], portLinks: ["web1.eth0": "up"])
        let source = TopologyGraph.dot(t, state: state)
        let (svg, titles) = try Self.render(source)
        #expect(titles.contains("uplink:sw0/labnic0") && titles.contains("uplink:sw0/labnic1"))
        #expect(titles.contains("switch:sw0->uplink:sw0/labnic0"))
        #expect(svg.contains("down (no&#45;carrier)") || svg.contains("down (no-carrier)"))
        #expect(svg.contains("#c8e6c9") && svg.contains("#f4c7c3"))   // active green, down red
        #expect(svg.contains("no uplinks") && svg.contains("port&#45;id") || svg.contains("port-id"))
        // Without state, the configured roles.
        #expect(TopologyGraph.dot(t).contains("active (configured)"))
    }

    @Test func namesAreQuotedSafely() throws {
        #expect(TopologyGraph.quote("a\"b\\c\nd") == "\"a\\\"b\\\\c\\nd\"")
        guard commandExists("dot") else { return }
        // Every file in Topologies/ renders (new keys must not break the picture).
        for f in try FileManager.default.contentsOfDirectory(atPath: Self.root + "/Topologies") where f.hasSuffix(".yaml") {
            let (_, titles) = try Self.render(TopologyGraph.dot(try Self.load(f)))
            #expect(!titles.isEmpty, "\(f)")
        }
    }
}
