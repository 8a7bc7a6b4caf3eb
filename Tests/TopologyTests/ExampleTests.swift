import Core
import Foundation
import Model
import Testing
@testable import Topology

/// Every file in `Topologies/` loads without errors or warnings (host checks aside), names
/// the schema in its modeline, and quotes its MACs.
@Test func everyExampleValidatesCleanly() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: topologiesDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
    #expect(Set(["demo.yaml", "isolated.yaml", "vlans.yaml", "uplinks.yaml", "lab.yaml", "fabric.yaml", "policies.yaml"]).isSubset(of: Set(files)))
    for f in files {
        let path = topologiesDirectory.appendingPathComponent(f).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix("# yaml-language-server: $schema=tapestry.schema.json\n"), "\(f): modeline")
        #expect(text.range(of: #"mac: [0-9a-fA-F]{2}:"#, options: .regularExpression) == nil, "\(f): unquoted MAC")
        do {
            let t = try TopologyLoader.load(path: path)
            #expect(t.warnings.isEmpty, "\(f): \(t.warnings)")
        } catch {
            Issue.record("\(f): \(error)")
        }
    }
}

@Test func labExampleHasLinksRoutesAndAddresses() throws {
    let t = try TopologyLoader.load(path: topologiesDirectory.appendingPathComponent("lab.yaml").path)
    #expect(t.links.map(\.label) == ["core/trunk~access1/uplink", "core/trunk~access2/uplink"])
    #expect(t.links[0].ends.map(\.portName) == ["link-access1", "link-core"])
    let h1 = try #require(t.guests.first { $0.name == "h1" })
    #expect(h1.nics[0].addresses.map(\.description) == ["10.1.0.10/24", "10.1.0.11/24", "2001:db8:10::10/64"])
    #expect(h1.gateways.map(\.address.description) == ["10.1.0.1", "2001:db8:10::1"])
    let h2 = try #require(t.guests.first { $0.name == "h2" })
    #expect(h2.routes.map { "\($0.to) via \($0.via) dev eth\($0.nic)" } == ["10.1.0.0/24 via 10.2.0.1 dev eth0", "2001:db8:10::/64 via 2001:db8:20::1 dev eth0"])
    #expect(t.guests.first { $0.name == "c1" }?.nics[0].dhcp == true)
    #expect(t.guests.first { $0.name == "r1" }?.nics[1].ip == IPv4CIDR("10.2.0.1/24"))
}

@Test func fabricExampleSplitsIntoHostParts() throws {
    let t = try TopologyLoader.load(path: topologiesDirectory.appendingPathComponent("fabric.yaml").path)
    #expect(t.hosts.map(\.name) == ["h1", "h2"])
    let h1 = try t.part(forHost: "h1")
    #expect(h1.topology.guests.map(\.name) == ["a1", "a2"])
    #expect(h1.tunnels.map(\.portName) == ["h2", "vtep-10.70.0.9"])
    #expect(h1.tunnels[1].vlans == VLANSet([VLANID(10)]))
    #expect(h1.datapath == DatapathSpec(threads: 2, pollMicroseconds: 0))
    let h2 = try t.part(forHost: "h2")
    #expect(h2.datapath == DatapathSpec(threads: 2, pollMicroseconds: 50))
    #expect(h2.topology.guests.map(\.name) == ["b1", "vm1"])
    #expect(h2.topology.guests[1].nics[0].backend == .tap)
    #expect(t.switches[0].overlay?.vni(for: VLANID(10)) == 5010)
    #expect(t.etcd?.endpoints.map(\.description) == ["http://10.70.0.100:2379"])
    #expect(t.ha?.isolationResponse == .powerOff)
    // Both hosts have netns: up needs --host.
    #expect(throws: HostSelectionError.self) { _ = try t.localHost(among: [IPAddress("10.70.0.1")!]) }
}

@Test func policiesExample() throws {
    let t = try TopologyLoader.load(path: topologiesDirectory.appendingPathComponent("policies.yaml").path)
    let sw = t.switches[0]
    #expect(sw.privateVLANs == [PrivateVLANSpec(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102)])])
    #expect(sw.portGroup(named: "tenants")?.privateVLAN == VLANID(101))
    #expect(sw.privateVLANRole(of: VLANID(101)) == .isolated(primary: VLANID(100), secondary: VLANID(101)))
    #expect(sw.multicast.snooping && sw.multicast.querier && sw.multicast.membershipIntervalSeconds == 260)
    #expect(sw.flowExport == FlowExportSpec(collectorHost: "127.0.0.1", collectorPort: 4739, observationDomain: 1))
    let web = try #require(sw.portGroup(named: "web"))
    #expect(web.shaping.ingress == ShapingRate(average: 50_000_000, peak: 50_000_000, burst: 2 << 20))
    #expect(web.shaping.egress == ShapingRate(average: 200_000_000, peak: 400_000_000, burst: 65_593))
    let app = try #require(t.guests.first { $0.name == "app" })
    #expect(app.kind == .vhostUser && app.socket == VhostUserSocketSpec(mode: .server, group: "kvm", permissions: 0o660))
    #expect(app.nics[0].backend == .vhostUser)
    #expect(t.guests.first { $0.name == "a1" }?.nics[0].offloads == false)
}

/// uplinks.yaml names NICs that exist only while Scripts/uplink-lab.sh runs: loading it needs
/// no host, and the host checks are a separate step that reports them.
@Test func uplinksExampleLoadsWithoutTheHostAndHostChecksFindTheMissingNICs() throws {
    let path = topologiesDirectory.appendingPathComponent("uplinks.yaml").path
    let t = try TopologyLoader.load(path: path)
    #expect(t.hostProblems(linkExists: { _ in true }).isEmpty)
    let problems = t.hostProblems(linkExists: { _ in false }).map(\.message)
    #expect(problems == ["uplink NIC 'labnic0' of switch 'sw0' does not exist on this host",
                         "uplink NIC 'labnic1' of switch 'sw0' does not exist on this host"])
}
