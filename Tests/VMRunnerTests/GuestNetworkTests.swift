import Foundation
import Model
import Testing
@testable import VMRunner

/// The fw_cfg network configuration of QEMU guests: payload, QEMU arguments,
/// kernel command line, validation.
struct GuestNetworkTests {
    static let config = GuestNetworkConfig(
        interfaces: [.init(name: "eth0", addresses: ["10.0.10.5/24", "2001:db8::5/64"], mtu: 1500),
                     .init(name: "eth1", dhcp: true)],
        gateways: [.init(address: "10.0.10.1", interface: "eth0"), .init(address: "2001:db8::1", interface: "eth0")],
        routes: [.init(to: "10.2.0.0/24", via: "10.0.10.254", interface: "eth0")])

    @Test func payloadListsEveryDirectiveInApplyOrder() {
        #expect(Self.config.payload == """
        # tapestry guest network v1
        mtu eth0 1500
        addr eth0 10.0.10.5/24
        addr eth0 2001:db8::5/64
        gw 10.0.10.1 eth0
        gw 2001:db8::1 eth0
        route 10.2.0.0/24 10.0.10.254 eth0
        dhcp eth1

        """)
        #expect(Self.config.problems().isEmpty)
    }

    @Test func qemuServesTheFileAndTheCommandLineSaysSo() {
        let spec = VMSpec(name: "vm1", nics: [GuestNIC(mac: MACAddress("52:54:00:00:00:01")!, tapFD: 5),
                                              GuestNIC(mac: MACAddress("52:54:00:00:00:02")!, tapFD: 6)], network: Self.config)
        let paths = VMPaths(name: "vm1", runDirectory: "/run/x,y")
        let cmd = QEMUCommand(spec: spec, image: GuestImage(kernel: "/k", initrd: "/i", boot: .pvh, kernelVersion: "v"), accel: .tcg, paths: paths)
        let i = cmd.arguments.firstIndex(of: "-fw_cfg")
        #expect(i != nil && cmd.arguments[i! + 1] == "name=opt/tapestry/net,file=/run/x,,y/vm1.net", "a comma in the path is doubled")
        let line = QEMUCommand.kernelCommandLine(for: spec)
        #expect(line.hasSuffix("tapestry.net=fw_cfg"))
        #expect(!line.contains("tapestry.ip="), "addresses travel in fw_cfg only")
        #expect(QEMUCommand(spec: VMSpec(name: "x"), image: GuestImage(kernel: "/k", initrd: "/i", boot: .pvh, kernelVersion: "v"),
                            accel: .tcg, paths: paths).arguments.contains("-fw_cfg") == false)
    }

    @Test func aLabSizedConfigurationFitsWhereTheCommandLineCouldNot() {
        // 28 NICs with two IPv4 and two IPv6 addresses each, and 100 routes: far over the
        // 2 KiB kernel command line, well under the payload bound.
        var c = GuestNetworkConfig()
        for n in 0..<28 {
            c.interfaces.append(.init(name: "eth\(n)", addresses: ["10.\(n).0.5/24", "10.\(n).1.5/24", "2001:db8:\(n)::5/64", "2001:db8:\(n):1::5/64"], mtu: 9000))
        }
        for r in 0..<100 { c.routes.append(.init(to: "10.200.\(r).0/24", via: "10.0.0.1", interface: "eth0")) }
        #expect(c.payload.utf8.count > 4096 && c.payload.utf8.count < GuestNetworkConfig.maximumPayload)
        #expect(c.problems().isEmpty)
    }

    @Test func everyFieldIsCheckedSoNoLineCanCarryAnotherDirective() {
        let bad = GuestNetworkConfig(
            interfaces: [.init(name: "eth0; reboot", addresses: ["10.0.0.1/24\nroute x y z"], mtu: 20),
                         .init(name: "eth28"), .init(name: "eth0.4095")],
            gateways: [.init(address: "10.0.0.1 eth0", interface: "eth9")],
            routes: [.init(to: "10.1.0.0", via: "$(x)", interface: "eth0")])
        let p = bad.problems()
        #expect(p.count == 10, "\(p)")   // …and route and gateway name no declared interface
        #expect(throws: VMError.self) { try VMSpec(name: "x", network: bad).validate() }
        var huge = GuestNetworkConfig(interfaces: [.init(name: "eth0")])
        huge.routes = (0..<3000).map { .init(to: "10.\($0 / 256).\($0 % 256).0/24", via: "10.0.0.1", interface: "eth0") }
        #expect(huge.problems().contains { $0.contains("at most") })
    }
}
