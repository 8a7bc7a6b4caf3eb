import Foundation
import Model
@testable import Runtime
import Testing
import Topology

/// Pure parts of guest addressing.
struct GuestAddressingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func theNetnsDHCPScriptIsTheOneShippedInTheGuestImage() throws {
        let shipped = try String(contentsOfFile: Self.root + "/Scripts/guest/dhcp-script", encoding: .utf8)
        #expect(DHCPClients.script == shipped, "Sources/Runtime/GuestAddressing.swift and Scripts/guest/dhcp-script must stay identical")
    }

    @Test func aQEMUGuestsConfigurationComesFromItsNICsGatewaysAndRoutes() throws {
        let t = try TopologyLoader.parse("""
        name: lab
        switches:
          sw0: {mtu: 9000, port-groups: {v10: {vlan: 10}, v20: {vlan: 20}}}
        guests:
          vm:
            kind: qemu
            gateway: [10.1.0.1, "2001:db8:1::1"]
            routes: [{to: 10.9.0.0/16, via: 10.2.0.1}]
            nics:
              - {switch: sw0, port-group: v10, ip: [10.1.0.5/24, "2001:db8:1::5/64"]}
              - {switch: sw0, port-group: v20, ip: [dhcp, 10.2.0.5/24]}
        """, file: "lab.yaml")
        let c = Fabric.guestNetwork(t.guests[0], of: t)
        #expect(c.interfaces == [.init(name: "eth0", addresses: ["10.1.0.5/24", "2001:db8:1::5/64"], dhcp: false, mtu: 9000),
                                 .init(name: "eth1", addresses: ["10.2.0.5/24"], dhcp: true, mtu: 9000)])
        #expect(c.gateways == [.init(address: "10.1.0.1", interface: "eth0"), .init(address: "2001:db8:1::1", interface: "eth0")])
        #expect(c.routes == [.init(to: "10.9.0.0/16", via: "10.2.0.1", interface: "eth1")])
        #expect(c.problems().isEmpty)
    }
}
