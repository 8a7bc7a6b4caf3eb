import Core
import Model
import Testing
@testable import Topology

// Issues 13 (offloads), 15 (root errors, native), 18 (vhost-user), 20 (shaping, PVLAN,
// snooping), 21 (flow export, LLDP).

@Test func anInvalidPortGroupIsReportedOnceNotWhereItIsUsed() {
    for bad in ["vlan: 010", "vlan: 5000", "vlan: {trunk: []}", "vlan: ten", "vlan: 10, mac-limit: 0"] {
        let yaml = """
        name: lab
        switches:
          sw0:
            mac-table: {static: [{mac: "02:00:00:00:00:09", port: a.eth0}]}
            port-groups:
              web: {\(bad)}
              mon: {vlan: 10}
            mirrors: [{name: m, source: [web], destination: {port-group: mon}}]
        links: [{between: [sw0/web, sw1/v]}]
        guests:
          a: {kind: netns, nics: [{switch: sw0, port-group: web}]}
        """
        let plain = diagnostics(yaml: yaml)
        #expect(plain.count == 2, "\(bad): \(plain)")   // the root error, and the unknown switch sw1 of the link
        #expect(plain.contains { $0.hasPrefix("t.yaml:6:") }, "\(bad): \(plain)")
        #expect(plain.contains { $0.contains("unknown switch 'sw1'") })
        #expect(!plain.contains { $0.contains("unknown port group") || $0.contains("unknown port") }, "\(bad): \(plain)")
    }
    // Same for a switch whose name is invalid, and a guest whose body is.
    #expect(diagnostics(yaml: "name: lab\nswitches:\n  SW0: {port-groups: {w: {vlan: 1}}}\nguests:\n  a: {kind: netns, nics: [{switch: SW0, port-group: w}]}\n")
            == ["t.yaml:3:3: error: invalid switch name 'SW0': use lowercase letters, digits and '-', starting with a lowercase letter or digit"])
    #expect(diagnostics(yaml: "name: lab\nswitches:\n  sw0:\n    mac-table: {static: [{mac: \"02:00:00:00:00:09\", port: a.eth0}]}\n    port-groups: {w: {vlan: 1}}\nguests:\n  a: {kind: vm, nics: [{switch: sw0, port-group: w}]}\n")
            == ["t.yaml:7:13: error: invalid guest kind 'vm': expected netns, qemu or vhost-user"])
}

@Test func trunkNativeDropUntaggedAndTheDeprecatedNone() throws {
    let base = "name: lab\nswitches:\n  sw0:\n    port-groups:\n"
    let t = try TopologyLoader.parse(base + "      t: {vlan: {trunk: [10], native: drop-untagged}}\n", file: "t.yaml")
    #expect(t.switches[0].portGroups[0].mode == .trunk(allowed: VLANSet([VLANID(10)]), native: nil) && t.warnings.isEmpty)
    let old = try TopologyLoader.parse(base + "      t: {vlan: {trunk: [10], native: none}}\n", file: "t.yaml")
    #expect(old.switches[0].portGroups[0].mode == t.switches[0].portGroups[0].mode)
    #expect(old.warnings.map(\.description) == ["t.yaml:5:39: warning: 'native: none' is deprecated: on a trunk it means untagged frames are dropped, while 'vlan: none' is the untagged domain; write 'native: drop-untagged'"])
}

@Test func shaping() throws {
    let base = "name: lab\nswitches:\n  sw0:\n    mtu: 9000\n    port-groups:\n"
    let t = try TopologyLoader.parse(base + """
          s: {vlan: 1, shaping: {ingress: {average: 500kbit, peak: 1Mbit, burst: 128KiB}, egress: {average: 1gbit, burst: 70000}}}
          n: {vlan: 2, shaping: {egress: {average: 10mbit, burst: 9018}}}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: n, offloads: false}]}
    """, file: "t")
    let s = t.switches[0].portGroups[0].shaping
    #expect(s.ingress == ShapingRate(average: 500_000, peak: 1_000_000, burst: 128 * 1024))
    #expect(s.egress == ShapingRate(average: 1_000_000_000, peak: 1_000_000_000, burst: 70_000))
    // Every NIC of 'n' has offloads off: its largest frame is MTU + 18.
    #expect(t.switches[0].portGroups[1].shaping.egress?.burst == 9018)
    #expect(t.guests[0].nics[0].offloads == false)
    let cases: [(String, String)] = [
        ("s: {vlan: 1, shaping: {ingress: {average: 5mbps}}}", "t.yaml:6:49: error: invalid average rate '5mbps': write bits per second as kbit, mbit or gbit (tc reads kbps as kilobytes per second)"),
        ("s: {vlan: 1, shaping: {ingress: {average: 10mbit, peak: 5mbit}}}", "t.yaml:6:63: error: peak 5mbit is below average 10mbit: the peak is the rate during a burst, at least the average"),
        ("s: {vlan: 1, shaping: {ingress: {average: 10mbit, burst: 64KiB}}}", "t.yaml:6:20: error: ingress burst of 65536 bytes on port group 's' is below the largest frame its ports carry (65593 bytes: a 64 KiB TSO frame with its headers; set offloads: false on its NICs to shape wire-sized frames): such a frame could never pass, and TCP would stall"),
        ("s: {vlan: 1, shaping: {ingress: {average: 10mbit, burst: 64KB}}}", "t.yaml:6:64: error: expected a size like 64KiB, 1MiB or plain bytes for burst, found '64KB' (binary units only: KiB, MiB, GiB)"),
        ("s: {vlan: 1, shaping: {ingress: {peak: 10mbit}}}", "t.yaml:6:39: error: missing required key 'average' in 'ingress' shaping of port group 's'"),
        ("s: {vlan: 1, shaping: {ingress: {average: 100bit}}}", "t.yaml:6:49: error: average rate 100bit is out of range 1kbit..1tbit"),
        ("s: {vlan: 1, shaping: {}}", "t.yaml:6:29: error: 'shaping' of port group 's' is empty: give ingress, egress or both"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + "      " + line + "\n") == [expected], "\(line)") }
}

@Test func privateVLANs() throws {
    let base = "name: lab\nswitches:\n  sw0:\n    private-vlans:\n      100: {isolated: 101, community: [102, 103]}\n      200: {community: [201]}\n    port-groups:\n"
    let t = try TopologyLoader.parse(base + """
          p: {vlan: {private: 100}}
          i: {vlan: {private: 101}}
          c: {vlan: {private: 103}}
          tr: {vlan: {trunk: [100-103]}}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: p, ip: 10.0.0.1/24}]}
      b: {kind: netns, nics: [{switch: sw0, port-group: i, ip: 10.0.0.2/24}]}
    """, file: "t")
    let sw = t.switches[0]
    #expect(sw.privateVLANs.map(\.primary) == [VLANID(100), VLANID(200)])
    #expect(sw.portGroups.map(\.privateVLAN) == [VLANID(100), VLANID(101), VLANID(103), nil])
    #expect(sw.portGroups[1].mode == .access(VLANID(101)))
    #expect(sw.privateVLANRole(of: VLANID(103)) == .community(primary: VLANID(100), secondary: VLANID(103)))
    #expect(sw.privateVLANRole(of: VLANID(100))?.primary == VLANID(100) && sw.privateVLANRole(of: VLANID(5)) == nil)
    let cases: [(String, String)] = [
        ("      x: {vlan: 101}\n", "t.yaml:8:17: error: VLAN 101 is the isolated VLAN of a private VLAN of switch 'sw0': write vlan: {private: 101}"),
        ("      x: {vlan: {private: 300}}\n", "t.yaml:8:27: error: VLAN 300 is not a private VLAN of switch 'sw0' (its private VLANs: 100, 101, 102, 103, 200, 201)"),
        ("      x: {vlan: {trunk: [5], native: 102}}\n", "t.yaml:8:38: error: VLAN 102 is a private VLAN of switch 'sw0' and cannot be a trunk's native VLAN"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + line) == [expected], "\(line)") }
    // Secondaries reused across primaries, and a primary reused as a secondary.
    #expect(diagnostics(yaml: "name: lab\nswitches:\n  sw0:\n    private-vlans:\n      100: {isolated: 101}\n      200: {community: [101, 100]}\n    port-groups: {w: {vlan: 1}}\n") == [
        "t.yaml:6:25: error: VLAN 101 is already the isolated VLAN of private VLAN 100 (line 5): a VLAN belongs to at most one private VLAN, once",
        "t.yaml:6:30: error: VLAN 100 is already the primary of private VLAN 100 (line 5): a VLAN belongs to at most one private VLAN, once",
    ])
    // A trunk carrying secondaries without the primary: warned.
    let w = try TopologyLoader.parse(base + "      tr: {vlan: {trunk: [101]}}\n", file: "t.yaml")
    #expect(w.warnings.map(\.message) == ["trunk port group 'tr' carries secondaries of private VLAN 100 but not the primary: promiscuous traffic travels tagged 100"])
    // The same address on a promiscuous and an isolated port: one subnet, one domain.
    #expect(diagnostics(yaml: base + "      p: {vlan: {private: 100}}\n      i: {vlan: {private: 101}}\nguests:\n  a: {kind: netns, nics: [{switch: sw0, port-group: p, ip: 10.0.0.1/24}]}\n  b: {kind: netns, nics: [{switch: sw0, port-group: i, ip: 10.0.0.1/24}]}\n").count == 1)
}

@Test func multicastSnooping() throws {
    let base = "name: lab\nswitches:\n  sw0:\n    uplinks: {nics: [eth1]}\n    port-groups: {v10: {vlan: 10}, tr: {vlan: {trunk: [10, 20]}}}\n"
    let t = try TopologyLoader.parse(base + """
        multicast-snooping: true
        multicast-querier: true
        multicast-querier-source: 10.0.0.254
        multicast-membership-interval: 5m
        multicast-router-ports: [eth1, r.eth0]
        multicast-static-groups:
          - {group: 239.1.1.1, ports: [a.eth0]}
          - {group: "ff05::1:3", vlan: 20, ports: [r.eth0, eth1]}
    guests:
      a: {kind: netns, nics: [{switch: sw0, port-group: v10}]}
      r: {kind: netns, nics: [{switch: sw0, port-group: tr}]}
    """, file: "t")
    let m = t.switches[0].multicast
    #expect(m.snooping && m.querier && m.querierSource == IPv4Address("10.0.0.254") && m.membershipIntervalSeconds == 300)
    #expect(m.routerPorts == ["eth1", "r.eth0"])
    #expect(m.staticGroups == [MulticastStaticGroupSpec(group: IPAddress("239.1.1.1")!, vlan: VLANID(10), ports: ["a.eth0"]),
                               MulticastStaticGroupSpec(group: IPAddress("ff05::1:3")!, vlan: VLANID(20), ports: ["r.eth0", "eth1"])])
    #expect(try TopologyLoader.parse(base, file: "t").switches[0].multicast == MulticastSpec())
    let g = "guests:\n  a: {kind: netns, nics: [{switch: sw0, port-group: v10}]}\n"
    let cases: [(String, String)] = [
        ("    multicast-querier: true\n", "t.yaml:6:5: error: 'multicast-querier' needs 'multicast-snooping: true' on switch 'sw0': queries only matter to a snooping switch"),
        ("    multicast-snooping: yes\n", "t.yaml:6:25: error: expected true or false for 'multicast-snooping', found 'yes'"),
        ("    multicast-snooping: true\n    multicast-static-groups: [{group: 224.0.0.251, ports: [a.eth0]}]\n",
         "t.yaml:7:39: error: group 224.0.0.251 is link-local scope (224.0.0.0/24, IPv6 scope 0-2 such as ff02::/16): it is always flooded, a static entry would mean nothing"),
        // Flagged link-local scope (ff12::/16) too: the datapath floods it like ff02::/16.
        ("    multicast-snooping: true\n    multicast-static-groups: [{group: \"ff12::1:5\", ports: [a.eth0]}]\n",
         "t.yaml:7:39: error: group ff12::1:5 is link-local scope (224.0.0.0/24, IPv6 scope 0-2 such as ff02::/16): it is always flooded, a static entry would mean nothing"),
        ("    multicast-snooping: true\n    multicast-static-groups: [{group: 10.0.0.1, ports: [a.eth0]}]\n",
         "t.yaml:7:39: error: invalid multicast group '10.0.0.1': expected an IPv4 address in 224.0.0.0/4 or an IPv6 address in ff00::/8"),
        ("    multicast-snooping: true\n    multicast-router-ports: [b.eth0]\n", "t.yaml:7:30: error: unknown port 'b.eth0' on switch 'sw0': expected GUEST.ethN, an uplink NIC or link-SWITCH; did you mean 'a.eth0'?"),
        ("    multicast-snooping: true\n    multicast-static-groups: [{group: 239.1.1.1, ports: [a.eth0, eth1]}]\n",
         "t.yaml:7:31: error: 'vlan' is required for static group 239.1.1.1: its ports are not access ports of one VLAN"),
        ("    multicast-snooping: true\n    multicast-membership-interval: 1s\n", "t.yaml:7:36: error: multicast membership interval 1s is out of range 10s..3600s"),
        ("    multicast-snooping: true\n    multicast-querier: true\n    multicast-querier-source: 224.0.0.1\n",
         "t.yaml:8:31: error: querier source 224.0.0.1 is a multicast address (224.0.0.0/4) (0.0.0.0 or a unicast IPv4 address)"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + line + g) == [expected], "\(line)") }
}

@Test func flowExportAndLLDP() throws {
    let base = "name: lab\nswitches:\n  sw0:\n    uplinks: {nics: [eth1], lldp: both}\n    port-groups: {v: {vlan: 1}}\n"
    let t = try TopologyLoader.parse(base + "    flow-export: {collector: \"[2001:db8::10]:4739\", active-timeout: 2m, idle-timeout: 10, sampling: 100, observation-domain: 7}\n", file: "t")
    #expect(t.switches[0].uplinks?.lldp == .both)
    #expect(t.switches[0].flowExport == FlowExportSpec(collectorHost: "2001:db8::10", collectorPort: 4739, activeTimeoutSeconds: 120,
                                                       idleTimeoutSeconds: 10, sampling: 100, observationDomain: 7))
    #expect(try TopologyLoader.parse(base.replacingOccurrences(of: ", lldp: both", with: ""), file: "t").switches[0].uplinks?.lldp == .listen)
    let cases: [(String, String)] = [
        ("    flow-export: {collector: 10.0.0.1}\n", "t.yaml:6:30: error: invalid collector '10.0.0.1': expected HOST:PORT like 192.0.2.10:4739, [2001:db8::10]:4739 or collector.lab:4739"),
        ("    flow-export: {collector: \"2001:db8::1:4739\"}\n", "t.yaml:6:30: error: invalid collector '2001:db8::1:4739': expected HOST:PORT like 192.0.2.10:4739, [2001:db8::10]:4739 or collector.lab:4739"),
        ("    flow-export: {collector: \"c:4739\", sampling: 0}\n", "t.yaml:6:50: error: sampling 0 is out of range 1..16777215"),
        ("    flow-export: {sampling: 2}\n", "t.yaml:6:18: error: missing required key 'collector' in 'flow-export' of switch 'sw0'"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + line) == [expected], "\(line)") }
    #expect(diagnostics(yaml: base.replacingOccurrences(of: "lldp: both", with: "lldp: on")) == ["t.yaml:4:35: error: invalid LLDP mode 'on': expected listen, advertise, both or off; did you mean 'off'?"])
    let warned = try TopologyLoader.parse(base + "    flow-export: {collector: \"c:1\", idle-timeout: 90s}\n", file: "t")
    #expect(warned.warnings.map(\.message) == ["idle-timeout 90s is longer than active-timeout 60s: every flow is exported by the active timeout first"])
}

@Test func vhostUserGuestsAndBackends() throws {
    let base = "name: lab\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\nguests:\n"
    let t = try TopologyLoader.parse(base + """
      d:
        kind: vhost-user
        socket: {owner: libvirt-qemu, group: "107", permissions: "660"}
        nics: [{switch: sw0, port-group: w, mac: "02:00:00:00:00:01", offloads: false}]
      c:
        kind: vhost-user
        socket: {mode: client}
        nics: [{switch: sw0, port-group: w, mac: "02:00:00:00:00:02", socket-path: /var/run/app/vhost0.sock}]
      v:
        kind: qemu
        nics: [{switch: sw0, port-group: w}, {switch: sw0, port-group: w, backend: tap}]
      n: {kind: netns, nics: [{switch: sw0, port-group: w}]}
    """, file: "t")
    #expect(t.guests[0].socket == VhostUserSocketSpec(mode: .server, owner: "libvirt-qemu", group: "107", permissions: 0o660))
    #expect(t.guests[0].nics[0].backend == .vhostUser && !t.guests[0].nics[0].offloads)
    #expect(t.guests[1].socket?.mode == .client && t.guests[1].nics[0].socketPath == "/var/run/app/vhost0.sock")
    #expect(t.guests[2].nics.map(\.backend) == [.vhostUser, .tap])
    #expect(t.guests[3].nics[0].backend == .tap && t.guests[3].socket == nil)
    #expect(t.hostProblems(linkExists: { _ in true }, userExists: { $0 != "libvirt-qemu" }, groupExists: { _ in true }, fileExists: { _ in true })
                .map(\.description) == ["t:6:21: error: user 'libvirt-qemu' (owner of the vhost-user sockets of guest 'd') does not exist on this host"])
    let cases: [(String, String)] = [
        ("  d: {kind: vhost-user, nics: [{switch: sw0, port-group: w}]}", "t.yaml:4:32: error: missing required key 'mac' in NIC 0 of guest 'd': a vhost-user guest's NICs need a MAC, so the security policies have something to check"),
        ("  d: {kind: vhost-user, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\", ip: 10.0.0.1/24}]}", "t.yaml:4:87: error: 'ip' does not apply to a vhost-user guest: Tapestry does not configure the frontend's addresses"),
        ("  d: {kind: vhost-user, socket: {mode: client}, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\"}]}", "t.yaml:4:56: error: missing required key 'socket-path' in NIC 0 of guest 'd': in client mode the switch connects to the frontend's socket"),
        ("  d: {kind: vhost-user, socket: {mode: client, owner: root}, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\", socket-path: /x}]}", "t.yaml:4:48: error: 'owner' applies to the server socket; in client mode the frontend owns the socket"),
        ("  d: {kind: vhost-user, socket: {permissions: \"0400\"}, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\"}]}", "t.yaml:4:47: error: permissions 0400 must let the owner read and write the socket (0600 at least)"),
        ("  d: {kind: vhost-user, socket: {permissions: \"0689\"}, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\"}]}", "t.yaml:4:47: error: invalid permissions '0689': expected octal bits like 0660 (always octal, as chmod reads them)"),
        ("  n: {kind: netns, nics: [{switch: sw0, port-group: w, backend: tap}]}", "t.yaml:4:56: error: 'backend' applies only to NICs of qemu guests (guest 'n' is kind netns)"),
        ("  n: {kind: netns, socket: {mode: server}, nics: [{switch: sw0, port-group: w}]}", "t.yaml:4:20: error: 'socket' applies only to guests of kind vhost-user (guest 'n' is kind netns)"),
        ("  v: {kind: qemu, nics: [{switch: sw0, port-group: w, backend: virtio}]}", "t.yaml:4:64: error: invalid NIC backend 'virtio': expected tap or vhost-user"),
        ("  d: {kind: vhost-user, cpus: 2, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\"}]}", "t.yaml:4:25: error: 'cpus' applies only to guests of kind qemu (guest 'd' is kind vhost-user)"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + line + "\n") == [expected], "\(line)") }
    let ww = try TopologyLoader.parse(base + "  d: {kind: vhost-user, socket: {permissions: \"0666\"}, nics: [{switch: sw0, port-group: w, mac: \"02:00:00:00:00:01\"}]}\n", file: "t")
    #expect(ww.warnings.map(\.message) == ["permissions 0666 let any local user connect a frontend to guest 'd''s ports"])
}

/// Root errors only, for the multicast port references too: an uplink NIC or a link that
/// failed its own checks is not "unknown" where a router port names it.
@Test func routerPortsOfInvalidUplinksOrLinksAreNotReportedAgain() {
    let yaml = """
    name: lab
    switches:
      sw0:
        uplinks: {nics: [eth1], policy: round-robin}
        multicast-snooping: true
        multicast-router-ports: [eth1, link-sw9]
        port-groups: {v: {vlan: 1}}
    links: [{between: [sw0/v, sw9/v]}]
    """
    #expect(diagnostics(yaml: yaml) == [
        "t.yaml:4:37: error: invalid teaming policy 'round-robin': expected port-id, src-mac, ip-hash or failover-order",
        "t.yaml:8:27: error: unknown switch 'sw9'; did you mean 'sw0'?",
    ])
}
