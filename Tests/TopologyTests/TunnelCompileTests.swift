import Core
import Model
import Testing
@testable import Topology

/// A host's part compiled with its tunnel ports: names, VLANs carried, the
/// underlay size limit, and what stays as `compile()` made it.
@Suite struct TunnelCompileTests {
    static let yaml = """
    name: lab
    hosts:
      h1: {underlay: 10.0.0.1}
      h2: {underlay: 10.0.0.2}
      h3: {underlay: 10.0.0.3}
    switches:
      sw0:
        mtu: 1450
        overlay: {vni: 5000, remote-vteps: [10.0.0.9, {address: 10.0.0.10, vlans: [none, 20, 30]}]}
        port-groups:
          v10: {vlan: 10}
          plain: {vlan: none}
          tr: {vlan: {trunk: [20, 21]}}
      sw1:
        port-groups:
          v5: {vlan: 5}
    guests:
      a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10}, {switch: sw1, port-group: v5}]}
      b: {kind: netns, host: h2, nics: [{switch: sw0, port-group: plain}]}
      c: {kind: netns, host: h3, nics: [{switch: sw1, port-group: v5}]}
    """

    @Test func tunnelsFollowTheirSwitchsPortsAsTrunksOfItsVLANs() throws {
        let t = try TopologyLoader.parse(Self.yaml, file: "lab.yaml")
        let part = try t.part(forHost: "h1")
        let plans = part.topology.compile(tunnels: part.tunnels, underlayMTU: 1500)
        let sw0 = try #require(plans.first { $0.name == "sw0" })
        #expect(sw0.ports.map(\.name) == ["a.eth0", "h2", "vtep-10.0.0.9", "vtep-10.0.0.10"], "h3 runs no sw0 port: no tunnel")
        let h2 = sw0.ports[1]
        #expect(h2.kind == "tunnel" && h2.tunnel?.host == "h2" && h2.tunnel?.vniBase == 5000 && h2.tunnel?.largestFrame == 1464)
        #expect(h2.mode == .trunk(allowed: VLANSet([.untagged, VLANID(10), VLANID(20), VLANID(21)]), native: nil))
        #expect(!h2.usesUplinks && !h2.acceptsOffloads && h2.security.forgedTransmits)
        #expect(sw0.ports[3].mode == .trunk(allowed: VLANSet([.untagged, VLANID(20)]), native: nil), "a remote VTEP's vlans: limit (30 is not used)")
        #expect(sw0.ports[2].tunnel?.host == nil)
        // A switch without an overlay gets no tunnel, even though it spans hosts.
        #expect(plans.first { $0.name == "sw1" }?.ports.map(\.name) == ["a.eth1"])
        // Without tunnels, exactly compile().
        #expect(part.topology.compile(tunnels: [], underlayMTU: nil).map { $0.ports } == part.topology.compile().map { $0.ports })
    }

    @Test func ipv6UnderlaysLeaveLessRoom() {
        #expect(TunnelPeer.largestFrame(underlayMTU: 1500, ipv6: false) == 1464)
        #expect(TunnelPeer.largestFrame(underlayMTU: 1500, ipv6: true) == 1444)
    }
}
