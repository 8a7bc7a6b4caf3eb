import Model
import Testing
@testable import Topology

// Validate what `up` would reject, and guest addressing.

let oneSwitch = """
name: lab
switches:
  sw0:
    port-groups:
      v10: {vlan: 10}
      v20: {vlan: 20}
      tr: {vlan: {trunk: [10, 20]}}
guests:

"""

func guestYAML(_ body: String) -> String { oneSwitch + body }

@Test func addressesAndDHCPParse() throws {
    let t = try TopologyLoader.parse(guestYAML("""
      a:
        kind: netns
        nics:
          - {switch: sw0, port-group: v10, ip: [10.0.0.1/24, 10.0.0.2/24, "2001:DB8:0:0::5/64", dhcp]}
          - {switch: sw0, port-group: v20, ip: "fe80::1/64"}
    """), file: "t.yaml")
    let nic = t.guests[0].nics[0]
    #expect(nic.addresses.map(\.description) == ["10.0.0.1/24", "10.0.0.2/24", "2001:db8::5/64"])
    #expect(nic.dhcp && nic.ip == IPv4CIDR("10.0.0.1/24"))
    #expect(t.guests[0].nics[1].addresses.map(\.description) == ["fe80::1/64"])
    #expect(t.guests[0].nics[1].ip == nil)
}

@Test(arguments: [
    ("10.0.0.1/0", "prefix length 0 in '10.0.0.1/0' would put every address on this link; use the subnet's real length (and 'gateway' or 'routes' for the rest)"),
    ("1.2.3.4/0", "prefix length 0 in '1.2.3.4/0' would put every address on this link; use the subnet's real length (and 'gateway' or 'routes' for the rest)"),
    ("127.0.0.2/8", "address 127.0.0.2 is a loopback address (127.0.0.0/8)"),
    ("224.0.0.5/24", "address 224.0.0.5 is a multicast address (224.0.0.0/4)"),
    ("0.0.0.0/24", "address 0.0.0.0 is the unspecified address (RFC 1122 §3.2.1.3)"),
    ("0.1.2.3/24", "address 0.1.2.3 is in 0.0.0.0/8, \"this network\" (RFC 1122 §3.2.1.3), not a host address"),
    ("240.0.0.1/24", "address 240.0.0.1 is in 240.0.0.0/4, reserved (RFC 1112 §4)"),
    ("255.255.255.255/32", "address 255.255.255.255 is the limited broadcast address"),
    ("10.0.0.0/24", "10.0.0.0 is the network address of 10.0.0.0/24, not a host address"),
    ("10.0.0.255/24", "10.0.0.255 is the broadcast address of 10.0.0.0/24, not a host address"),
    ("10.0.0.1", "address '10.0.0.1' has no prefix length: write it with one, like 10.0.0.1/24"),
    ("10.0.0.1/33", "invalid IPv4 address '10.0.0.1/33': expected a.b.c.d/len like 10.0.10.1/24 (octets 0..255 without leading zeros, len 1..32)"),
    ("::1/128", "address ::1 is the loopback address (RFC 4291 §2.5.3)"),
    ("::/64", "address :: is the unspecified address (RFC 4291 §2.5.2)"),
    ("ff02::1/64", "address ff02::1 is a multicast address (ff00::/8)"),
    ("::ffff:10.0.0.1/96", "address ::ffff:10.0.0.1 is an IPv4-mapped address (RFC 4291 §2.5.5.2); write the IPv4 address"),
    ("2001:db8::/64", "2001:db8:: is the subnet-router anycast address of 2001:db8::/64 (RFC 4291 §2.6.1), not a host address"),
    ("2001:db8::1%eth0/64", "invalid IPv6 address '2001:db8::1%eth0/64': expected ADDRESS/LEN like 2001:db8::5/64 (RFC 4291 text form, no zone, len 1..128)"),
    ("2001:db8:::1/64", "invalid IPv6 address '2001:db8:::1/64': expected ADDRESS/LEN like 2001:db8::5/64 (RFC 4291 text form, no zone, len 1..128)"),
])
func addressesUpWouldRejectAreRefused(ip: String, message: String) {
    let d = diagnostics(yaml: guestYAML("  a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: \"\(ip)\"}]}\n"))
    #expect(d == ["t.yaml:9:62: error: " + message])
}

@Test func pointToPointAndHostRoutesAreAccepted() throws {
    let t = try TopologyLoader.parse(guestYAML("""
      a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: [10.0.0.0/31, 10.9.9.9/32, "2001:db8::/127"]}]}
    """), file: "t")
    #expect(t.guests[0].nics[0].addresses.count == 3)
}

@Test func duplicateAddressesInOneL2DomainAreRefused() {
    let d = diagnostics(yaml: guestYAML("""
      a: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: v20, ip: 10.0.0.1/24}]}
      c: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: [10.0.0.9/24, 10.0.0.1/24]}]}
      d: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: [10.0.0.7/24, 10.0.0.7/25]}]}
    """))
    #expect(d == [
        "t.yaml:11:76: error: address 10.0.0.1 of c.eth0 is already used by a.eth0 (line 9) in the same L2 domain (VLAN 10 of switch 'sw0')",
        "t.yaml:12:76: error: address 10.0.0.7 is listed twice on this NIC (first at line 12)",
    ])
}

@Test func trunkNICWithAddressButNoNativeVLANIsAWarning() throws {
    let t = try TopologyLoader.parse(guestYAML("  a: {kind: netns, nics: [{switch: sw0, port-group: tr, ip: 10.0.0.1/24}]}\n"), file: "t.yaml")
    #expect(t.warnings.map(\.description) == [
        "t.yaml:9:27: warning: a.eth0 is on trunk port group 'tr' without a native VLAN: its address sits on the untagged interface, whose frames the switch drops (give the trunk a native VLAN, or configure VLAN subinterfaces in the guest)",
    ])
}

@Test func gatewaysAndRoutesMustBeOnTheGuestsSubnets() throws {
    let ok = try TopologyLoader.parse(guestYAML("""
      r:
        kind: netns
        gateway: ["2001:db8::1", 10.0.0.254]
        routes:
          - {to: 10.9.0.0/16, via: 10.0.1.1}
          - {to: "2001:db8:9::/48", via: "2001:db8:1::1"}
        nics:
          - {switch: sw0, port-group: v10, ip: [10.0.0.1/24, "2001:db8::2/64"]}
          - {switch: sw0, port-group: v20, ip: [10.0.1.2/24, "2001:db8:1::2/64"]}
    """), file: "t")
    let r = ok.guests[0]
    #expect(r.gateways == [GatewaySpec(address: IPAddress("10.0.0.254")!, nic: 0), GatewaySpec(address: IPAddress("2001:db8::1")!, nic: 0)])
    #expect(r.gateway4?.nic == 0 && r.gateway6?.address == IPAddress("2001:db8::1"))
    #expect(r.routes.map { "\($0.to) via \($0.via) eth\($0.nic)" } == ["10.9.0.0/16 via 10.0.1.1 eth1", "2001:db8:9::/48 via 2001:db8:1::1 eth1"])

    let cases: [(String, String)] = [
        ("gateway: 10.1.0.1", "t.yaml:11:14: error: gateway 10.1.0.1 is not on a subnet of guest 'g' (its IPv4 subnets: 10.0.0.0/24)"),
        ("gateway: 10.0.0.1", "t.yaml:11:14: error: gateway 10.0.0.1 is an address of guest 'g' itself"),
        ("gateway: \"2001:db8::1\"", "t.yaml:11:14: error: gateway 2001:db8::1 is not on a subnet of guest 'g' (it has no IPv6 address)"),
        ("gateway: [10.0.0.254, 10.0.0.253]", "t.yaml:11:27: error: a second IPv4 gateway (the first is at line 11): a guest has at most one default gateway per family"),
        ("gateway: 10.0.0.254/24", "t.yaml:11:14: error: invalid IP address '10.0.0.254/24' for gateway: expected an IPv4 address like 10.0.0.1 or an IPv6 address like 2001:db8::1 (no prefix length here)"),
        ("routes: [{to: 10.9.0.1/16, via: 10.0.0.254}]", "t.yaml:11:19: error: route destination 10.9.0.1/16 has host bits set: the network is 10.9.0.0/16"),
        ("routes: [{to: 10.9.0.0/16, via: 10.8.0.1}]", "t.yaml:11:37: error: 'via' 10.8.0.1 is not on a subnet of guest 'g' (its IPv4 subnets: 10.0.0.0/24)"),
        ("routes: [{to: \"2001:db8::/32\", via: 10.0.0.254}]", "t.yaml:11:41: error: route to 2001:db8::/32 is IPv6 but 'via' 10.0.0.254 is IPv4"),
        ("routes: [{to: 10.9.0.0/16, via: 10.0.0.254}, {to: 10.9.0.0/16, via: 10.0.0.253}]", "t.yaml:11:55: error: a second route to 10.9.0.0/16 (the first is at line 11)"),
    ]
    for (line, expected) in cases {
        let yaml = guestYAML("  g:\n    kind: netns\n    \(line)\n    nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]\n")
        #expect(diagnostics(yaml: yaml) == [expected], "\(line)")
    }
    // A default route and a gateway of the same family conflict.
    #expect(diagnostics(yaml: guestYAML("  g:\n    kind: netns\n    gateway: 10.0.0.254\n    routes: [{to: default, via: 10.0.0.253}]\n    nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}]\n"))
            == ["t.yaml:12:19: error: a default route via 10.0.0.253 and 'gateway' both set the IPv4 default route; keep one"])
    // With DHCP, the IPv4 subnet is known only at run time: the gateway is accepted.
    #expect(diagnostics(yaml: guestYAML("  g:\n    kind: netns\n    gateway: 192.168.1.1\n    nics: [{switch: sw0, port-group: v10, ip: dhcp}]\n")) == [])
}
