import Core
import Model
import Testing
@testable import Topology

// Issues 15 (datapath), 17 (hosts, overlay), 19 (etcd, HA).

let twoHosts = """
name: fab
hosts:
  h1: {underlay: 10.70.0.1}
  h2: {underlay: 10.70.0.2, netns: fab-h2}
  h3: {underlay: 10.70.0.3}
switches:
  sw0:
    overlay: {vni: 5000, remote-vteps: [10.70.0.9, {address: 10.70.0.8, vlans: [none, 10, 20-22]}]}
    port-groups: {v10: {vlan: 10}}
  sw1:
    port-groups: {v10: {vlan: 10}}
guests:
  a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.1/24}, {switch: sw1, port-group: v10, ip: 10.1.0.1/24}]}
  b: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v10, ip: 10.0.0.2/24}, {switch: sw1, port-group: v10, ip: 10.1.0.1/24}]}

"""

@Test func hostsAndOverlayParse() throws {
    let t = try TopologyLoader.parse(twoHosts, file: "t")
    #expect(t.hosts.map(\.name) == ["h1", "h2", "h3"])
    #expect(t.hosts[1].underlay == IPAddress("10.70.0.2") && t.hosts[1].netns == "fab-h2")
    let o = try #require(t.switches[0].overlay)
    #expect(o.vniBase == 5000 && o.port == 4789 && o.vni(for: .untagged) == 5000 && o.vni(for: VLANID(4094)) == 9094)
    #expect(o.vlan(forVNI: 5010) == VLANID(10) && o.vlan(forVNI: 4999) == nil && o.vlan(forVNI: 9095) == nil)
    #expect(o.remoteVTEPs.map(\.portName) == ["vtep-10.70.0.9", "vtep-10.70.0.8"])
    #expect(RemoteVTEPSpec(address: IPAddress("2001:db8::9")!).portName == "vtep-2001-db8--9")
    var vlans = VLANSet([.untagged, VLANID(10)]); vlans.insert(range: 20...22)
    #expect(o.remoteVTEPs[1].vlans == vlans && o.remoteVTEPs[0].vlans == nil)
    // sw1 has no overlay: the same address on two hosts is two separate networks.
    #expect(t.guests[1].nics[1].addresses == t.guests[0].nics[1].addresses)
}

@Test func hostPartsAndTunnels() throws {
    let t = try TopologyLoader.parse(twoHosts, file: "t")
    let h1 = try t.part(forHost: "h1")
    #expect(h1.topology.guests.map(\.name) == ["a"] && h1.topology.switches.map(\.name) == ["sw0", "sw1"])
    #expect(h1.tunnels.map(\.portName) == ["h2", "vtep-10.70.0.9", "vtep-10.70.0.8"], "h3 runs no part of sw0: no tunnel to it")
    #expect(h1.tunnels[0].peer == .host("h2") && h1.tunnels[0].remote == IPAddress("10.70.0.2"))
    #expect(h1.tunnels.allSatisfy { $0.vniBase == 5000 && $0.udpPort == 4789 })
    let h3 = try t.part(forHost: "h3")
    #expect(h3.topology.guests.isEmpty && h3.topology.switches.isEmpty && h3.tunnels.isEmpty)
    #expect(throws: HostSelectionError("topology 'fab' has no host 'h9' (its hosts: h1, h2, h3)")) { _ = try t.part(forHost: "h9") }

    // Reload: a new remote VTEP adds one tunnel; the others are untouched.
    let more = twoHosts.replacingOccurrences(of: "remote-vteps: [10.70.0.9,", with: "remote-vteps: [10.70.0.9, 10.70.0.10,")
    let t2 = try TopologyLoader.parse(more, file: "t")
    let changes = HostPart.tunnelChanges(from: h1, to: try t2.part(forHost: "h1"))
    #expect(changes.added.map(\.portName) == ["vtep-10.70.0.10"] && changes.removed.isEmpty)
    let d = try Topology.diff(from: t, to: t2)
    #expect(d.remoteVTEPsAdded == [RemoteVTEPRef(switchName: "sw0", address: IPAddress("10.70.0.10")!)])
    #expect(d.switchChanges.map(\.aspects) == [[.overlay]])
}

@Test func upPicksTheOneLocalHostWithoutNetns() throws {
    let t = try TopologyLoader.parse(twoHosts, file: "t")
    #expect(try t.localHost(among: [IPAddress("10.70.0.1")!, IPAddress("192.0.2.1")!]) == "h1")
    #expect(throws: HostSelectionError("several hosts of 'fab' have an underlay address on this machine (h1 10.70.0.1, h3 10.70.0.3): pass --host")) {
        _ = try t.localHost(among: [IPAddress("10.70.0.1")!, IPAddress("10.70.0.3")!])
    }
    #expect(throws: HostSelectionError("no host of 'fab' has its underlay address on this machine (h1 10.70.0.1, h3 10.70.0.3); hosts with netns (h2) are chosen with --host: pass --host HOST")) {
        _ = try t.localHost(among: [IPAddress("10.70.0.2")!])
    }
    let single = try TopologyLoader.parse("name: one\nswitches: {sw0: {port-groups: {w: {vlan: 1}}}}\n", file: "t")
    #expect(try single.localHost(among: []) == nil)
}

@Test func underlayMTUWarning() throws {
    let t = try TopologyLoader.parse(twoHosts, file: "t.yaml")
    #expect(t.underlayWarnings(forHost: "h1", underlayMTU: 1550).isEmpty)
    #expect(t.underlayWarnings(forHost: "h1", underlayMTU: 1500).map(\.description) == [
        "t.yaml:3:3: warning: switch 'sw0' has MTU 1500, but host 'h1''s underlay MTU is 1500: VXLAN over IPv4 needs 1550; larger frames are dropped, never fragmented (RFC 7348 §4.3)"])
    let v6 = try TopologyLoader.parse(twoHosts.replacingOccurrences(of: "10.70.0.", with: "2001:db8::"), file: "t.yaml")
    #expect(v6.underlayWarnings(forHost: "h2", underlayMTU: 1550).first?.message.contains("VXLAN over IPv6 needs 1570") == true)
    #expect(try v6.part(forHost: "h1").tunnels.map(\.portName) == ["h2", "vtep-2001-db8--9", "vtep-2001-db8--8"])
}

@Test func fabricErrorsAreLocated() {
    let base = "name: fab\nswitches:\n  sw0:\n    port-groups: {v10: {vlan: 10}}\n"
    let cases: [(String, [String])] = [
        (base + "guests:\n  a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10}]}\n",
         ["t.yaml:6:20: error: 'host' names a host of a multi-host fabric, but the file has no top-level 'hosts'"]),
        (base + "hosts: {h1: {underlay: 10.0.0.1}}\nguests:\n  a: {kind: netns, nics: [{switch: sw0, port-group: v10}]}\n",
         ["t.yaml:7:3: error: missing required key 'host' in guest 'a': the file has 'hosts', so every guest names the host that runs it"]),
        (base + "hosts: {h1: {underlay: 10.0.0.1}}\nguests:\n  a: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v10}]}\n",
         ["t.yaml:7:26: error: unknown host 'h2'; did you mean 'h1'?"]),
        (base + "hosts: {h1: {underlay: 10.0.0.1}, h2: {underlay: 10.0.0.1}}\n",
         ["t.yaml:5:50: error: underlay 10.0.0.1 of host 'h2' is already the underlay of host 'h1' (line 5)"]),
        (base + "hosts: {h1: {underlay: 127.0.0.1}}\n", ["t.yaml:5:24: error: underlay of host 'h1' 127.0.0.1 is a loopback address (127.0.0.0/8)"]),
        (base + "hosts: {h1: {underlay: 10.0.0.1/24}}\n",
         ["t.yaml:5:24: error: invalid IP address '10.0.0.1/24' for underlay of host 'h1': expected an IPv4 address like 10.0.0.1 or an IPv6 address like 2001:db8::1 (no prefix length here)"]),
        ("name: fab\nswitches:\n  sw0:\n    overlay: {vni: 16773122}\n    port-groups: {v10: {vlan: 10}}\n",
         ["t.yaml:4:20: error: VNI base 16773122 is out of range 1..16773121 (VLAN 4094 travels as VNI 16773122+4094, and a VNI has 24 bits: at most 16777215)"]),
        ("name: fab\nswitches:\n  sw0:\n    overlay: {vni: 5000, remote-vteps: [10.0.0.9]}\n    port-groups: {v: {vlan: 1}}\n  sw1:\n    overlay: {vni: 9094, remote-vteps: [10.0.0.9]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:7:5: error: VNI range 9094..13188 of switch 'sw1' overlaps 5000..9094 of switch 'sw0': each switch uses its base and the 4094 VNIs after it"]),
        ("name: fab\nswitches:\n  sw0:\n    overlay: {vni: 5000, remote-vteps: [10.0.0.9, 10.0.0.9]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:4:51: error: remote VTEP 10.0.0.9 is listed twice (first at line 4)"]),
        ("name: fab\nhosts: {h1: {underlay: 10.0.0.9}}\nswitches:\n  sw0:\n    overlay: {vni: 5000, remote-vteps: [10.0.0.9]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:5:41: error: remote VTEP 10.0.0.9 is the underlay of host 'h1': hosts of the topology get their tunnels without being listed"]),
        ("name: fab\nhosts: {eth9: {underlay: 10.0.0.1}}\nswitches:\n  sw0:\n    uplinks: {nics: [eth9]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:2:9: error: host name 'eth9' is also an uplink NIC of switch 'sw0': tunnels are named after hosts, so names must not collide"]),
        ("name: fab\nhosts: {h1: {underlay: 10.0.0.1}}\nswitches:\n  sw0:\n    overlay: {vni: 5000}\n    uplinks: {nics: [h1]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:2:9: error: port name 'h1' of the tunnel to host 'h1' on switch 'sw0' is already the name of uplink NIC 'h1' (line 6)",
          "t.yaml:2:9: error: host name 'h1' is also an uplink NIC of switch 'sw0': tunnels are named after hosts, so names must not collide"]),
        ("name: fab\nswitches:\n  sw0:\n    overlay: {vni: 5000, remote-vteps: [10.0.0.9]}\n    uplinks: {nics: [vtep-10.0.0.9]}\n    port-groups: {v: {vlan: 1}}\n",
         ["t.yaml:4:41: error: port name 'vtep-10.0.0.9' of the tunnel to remote VTEP 10.0.0.9 on switch 'sw0' is already the name of uplink NIC 'vtep-10.0.0.9' (line 5)"]),
        (base + "hosts: {h1: {underlay: 10.0.0.1, netns: a/b}}\n", ["t.yaml:5:41: error: invalid netns name 'a/b': 1..63 letters, digits, '_', '-' or '.', not '.' or '..'"]),
        ("name: fab\nhosts: {h1: {underlay: 10.0.0.1}, h2: {underlay: \"2001:db8::2\"}}\nswitches:\n  sw0:\n    overlay: {vni: 5000, remote-vteps: [\"2001:db8::9\"]}\n    port-groups: {v: {vlan: 1}}\nguests:\n  a: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v}]}\n  b: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v}]}\n",
         ["t.yaml:2:35: error: hosts 'h1' (IPv4) and 'h2' (IPv6) both run switch 'sw0', but a VXLAN tunnel joins two addresses of one family",
          "t.yaml:5:41: error: remote VTEP 2001:db8::9 is IPv6, but the hosts running switch 'sw0' have IPv4 underlays"]),
    ]
    for (yaml, expected) in cases { #expect(diagnostics(yaml: yaml) == expected, "\(yaml)") }
}

@Test func datapathSettingsAndHostOverrides() throws {
    let t = try TopologyLoader.parse("""
    name: fab
    datapath: {threads: 4, poll: 1ms}
    hosts:
      h1: {underlay: 10.0.0.1, datapath: {threads: 1}}
      h2: {underlay: 10.0.0.2, cpus: 8, memory: 16G}
    switches: {sw0: {port-groups: {v: {vlan: 1}}}}
    """, file: "t")
    #expect(t.datapath == DatapathSpec(threads: 4, pollMicroseconds: 1000))
    #expect(t.datapath(forHost: "h1") == DatapathSpec(threads: 1, pollMicroseconds: 1000))
    #expect(t.datapath(forHost: "h2") == t.datapath && t.datapath(forHost: nil) == t.datapath)
    #expect(t.hosts[1].cpus == 8 && t.hosts[1].memoryMiB == 16 * 1024)
    let base = "name: x\nswitches: {sw0: {port-groups: {v: {vlan: 1}}}}\n"
    let cases: [(String, String)] = [
        ("datapath: {threads: 99}", "t.yaml:3:21: error: datapath threads 99 is out of range 1..64"),
        ("datapath: {threads: 0}", "t.yaml:3:21: error: datapath threads 0 is out of range 1..64"),
        ("datapath: {threads: abc}", "t.yaml:3:21: error: expected a decimal integer for datapath threads, found 'abc'"),
        ("datapath: {poll: 2s}", "t.yaml:3:18: error: datapath poll 2s is out of range 0..1s"),
        ("datapath: {poll: 5 ms}", "t.yaml:3:18: error: expected a duration like 0, 50us, 1ms or 1s for datapath poll, found '5 ms'"),
        ("datapath: {thread: 2}", "t.yaml:3:12: error: unknown key 'thread' in 'datapath'; did you mean 'threads'?"),
    ]
    for (line, expected) in cases { #expect(diagnostics(yaml: base + line + "\n") == [expected], "\(line)") }
    #expect(try TopologyLoader.parse(base + "datapath: {poll: 0}\n", file: "t").datapath.pollMicroseconds == 0)
    #expect(try TopologyLoader.parse(base + "datapath: {poll: 250us}\n", file: "t").datapath.pollMicroseconds == 250)
}

@Test func etcdAndHA() throws {
    let base = "name: fab\nhosts: {h1: {underlay: 10.0.0.1}}\nswitches: {sw0: {port-groups: {v: {vlan: 1}}}}\n"
    let t = try TopologyLoader.parse(base + """
    etcd:
      endpoints: ["https://10.0.0.5:2379", "https://[2001:db8::5]", "https://etcd.lab:12379/"]
      tls: {ca: /etc/tapestry/ca.pem, cert: /etc/tapestry/c.pem, key: /etc/tapestry/c.key}
    ha: {isolation-addresses: [10.0.0.254, "2001:db8::fe"], isolation-response: power-off}
    """, file: "t")
    #expect(t.etcd?.endpoints.map(\.description) == ["https://10.0.0.5:2379", "https://[2001:db8::5]:2379", "https://etcd.lab:12379"])
    #expect(t.etcd?.tls == EtcdTLSSpec(ca: "/etc/tapestry/ca.pem", cert: "/etc/tapestry/c.pem", key: "/etc/tapestry/c.key"))
    #expect(t.ha == HASpec(isolationAddresses: [IPAddress("10.0.0.254")!, IPAddress("2001:db8::fe")!], isolationResponse: .powerOff))
    #expect(t.hostProblems(linkExists: { _ in true }, userExists: { _ in true }, groupExists: { _ in true },
                           fileExists: { $0 != "/etc/tapestry/c.key" }).map(\.description)
            == ["t:6:67: error: etcd TLS file '/etc/tapestry/c.key' ('key') does not exist on this host"])
    let cases: [(String, String)] = [
        ("etcd: {endpoints: [10.0.0.5:2379]}", "t.yaml:4:20: error: invalid etcd endpoint '10.0.0.5:2379': expected http://HOST[:PORT] or https://HOST[:PORT] (an IPv6 host in brackets), no path"),
        ("etcd: {endpoints: [\"http://a:1\", \"https://b:2\"]}", "t.yaml:4:34: error: etcd endpoint https://b:2 uses https but http://a:1 uses http: use one scheme for all"),
        ("etcd: {endpoints: [\"http://a:1\"], tls: {ca: /x}}", "t.yaml:4:35: error: 'tls' is set but the etcd endpoints use http: write https:// endpoints"),
        ("etcd: {endpoints: [\"https://a:1\"], tls: {cert: /x}}", "t.yaml:4:41: error: 'cert' and 'key' of etcd tls go together: a client certificate needs its key"),
        ("etcd: {endpoints: [\"https://a:1\"], tls: {ca: ca.pem}}", "t.yaml:4:46: error: invalid ca path 'ca.pem': expected an absolute path (the daemon's working directory is not the file's)"),
        ("etcd: {endpoints: [\"http://a:99999\"]}", "t.yaml:4:20: error: invalid etcd endpoint 'http://a:99999': expected http://HOST[:PORT] or https://HOST[:PORT] (an IPv6 host in brackets), no path"),
        ("ha: {isolation-response: power-off}", "t.yaml:4:1: error: 'ha' decides restarts through etcd: it needs a top-level 'etcd'"),
    ]
    for (line, expected) in cases {
        let d = diagnostics(yaml: base + line + "\n")
        #expect(d.first == expected, "\(line) → \(d)")
    }
    #expect(diagnostics(yaml: base + "etcd: {endpoints: [\"http://a\"]}\nha: {isolation-response: power-off}\n")
            == ["t.yaml:5:26: error: isolation-response power-off needs 'isolation-addresses': without them an etcd outage would look like isolation to every host"])
    #expect(diagnostics(yaml: "name: x\nswitches: {sw0: {port-groups: {v: {vlan: 1}}}}\netcd: {endpoints: [\"http://a\"]}\n")
            == ["t.yaml:3:1: error: 'etcd' holds the state of a multi-host fabric: it needs a top-level 'hosts'"])
}

/// With `etcd:`, a netns guest's `restart:` tells HA to re-create it on a survivor;
/// without etcd it would mean nothing and is an error.
@Test func netnsGuestsTakeARestartPolicyForHA() throws {
    let base = "name: fab\nhosts: {h1: {underlay: 10.0.0.1}}\nswitches: {sw0: {port-groups: {v: {vlan: 1}}}}\n"
    let guest = "guests:\n  g1: {kind: netns, host: h1, restart: on-failure, nics: [{switch: sw0, port-group: v}]}\n"
    let t = try TopologyLoader.parse(base + "etcd: {endpoints: [\"http://10.0.0.5:2379\"]}\n" + guest, file: "t")
    #expect(t.guests.first?.restart == .onFailure)
    #expect(diagnostics(yaml: base + guest).first?.contains("'restart' on a netns guest tells HA to re-create it on another host when its host dies: it needs a top-level 'etcd'") == true)
    #expect(diagnostics(yaml: base + "etcd: {endpoints: [\"http://10.0.0.5:2379\"]}\n" + guest.replacingOccurrences(of: "on-failure", with: "often")).first?
        .contains("invalid restart policy 'often'") == true)
}
