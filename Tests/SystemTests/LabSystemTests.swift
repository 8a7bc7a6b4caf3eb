import Foundation
import Testing
import TestSupport

/// Against real namespaces, TAPs and kernel stacks: switches joined by patch links,
/// guests with several addresses of both families, gateways and routes through a router
/// guest, and DHCP from dnsmasq running in another guest.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct LabSystemTests {
    static func id() -> String { Capabilities.uniquePrefix("l") }

    static func json(_ r: CommandResult) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    /// Two switches joined by a trunk link carrying VLANs 10 and 20.
    static func linked(_ p: String, extraLinks: String = "", extraSwitches: String = "") -> String {
        """
        name: \(p)ln
        switches:
          \(p)sa:
            port-groups:
              trunk: {vlan: {trunk: [10, 20]}}
              v10: {vlan: 10}
              v20: {vlan: 20}
          \(p)sb:
            port-groups:
              trunk: {vlan: {trunk: [10, 20]}}
              v10: {vlan: 10}
              v20: {vlan: 20}
        \(extraSwitches)
        links:
          - {between: [\(p)sa/trunk, \(p)sb/trunk]}
        \(extraLinks)
        guests:
          \(p)a: {kind: netns, nics: [{switch: \(p)sa, port-group: v10, mac: "02:00:00:16:00:01", ip: 10.16.1.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: \(p)sb, port-group: v10, mac: "02:00:00:16:00:02", ip: 10.16.1.2/24}]}
          \(p)c: {kind: netns, nics: [{switch: \(p)sb, port-group: v20, mac: "02:00:00:16:00:03", ip: 10.16.1.3/24}]}
          \(p)d: {kind: netns, nics: [{switch: \(p)sa, port-group: v20, mac: "02:00:00:16:00:04", ip: 10.16.1.4/24}]}
        """
    }

    @Test func linkedSwitchesForwardPerVLANAndTraceCrossesTheLink() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)ln", yaml: Self.linked(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")

        // VLAN 10 on switch A reaches VLAN 10 on switch B across the link…
        #expect(lab.ping(from: "\(p)a", to: "10.16.1.2", count: 3), "a (sa, VLAN 10) → b (sb, VLAN 10)")
        // …and VLAN 20 across the link too, but never VLAN 10 to VLAN 20 (same subnet: only
        // the switches keep them apart).
        #expect(lab.ping(from: "\(p)d", to: "10.16.1.3", count: 2), "d (sa, VLAN 20) → c (sb, VLAN 20)")
        #expect(!lab.ping(from: "\(p)a", to: "10.16.1.3", count: 2), "VLAN 10 must not reach VLAN 20 across the link")
        #expect(!lab.ping(from: "\(p)b", to: "10.16.1.4", count: 2), "VLAN 10 must not reach VLAN 20 across the link")

        // ports: one link port per switch, kind link, with its peer; frames counted.
        let rows = lab.ports()
        let la = rows.first { $0["name"] as? String == "link-\(p)sb" && $0["switch"] as? String == "\(p)sa" }
        let lb = rows.first { $0["name"] as? String == "link-\(p)sa" && $0["switch"] as? String == "\(p)sb" }
        try #require(la != nil && lb != nil, "link ports in 'ports': \(rows.map { $0["name"] ?? "" })")
        #expect(la?["kind"] as? String == "link" && la?["peer"] as? String == "\(p)sb/link-\(p)sa")
        #expect(((la?["tx_frames"] as? NSNumber)?.intValue ?? 0) >= 3 && ((lb?["rx_frames"] as? NSNumber)?.intValue ?? 0) >= 3)

        // fdb: a's MAC is learned on switch B's link port, in VLAN 10.
        let fdb = Harness.tapestry("fdb --name \(p)ln --switch \(p)sb --vlan 10")
        #expect(fdb.stdout.split(separator: "\n").contains { $0.contains("02:00:00:16:00:01") && $0.contains("link-\(p)sa") }, "\(fdb.stdout)")

        // trace: a frame from a to b, followed into switch B's decision.
        let frame = "src=02:00:00:16:00:01,dst=02:00:00:16:00:02"
        let text = Harness.tapestry("trace --name \(p)ln --switch \(p)sa --in \(p)a.eth0 --frame '\(frame)'")
        #expect(text.succeeded, "\(text.stderr)")
        #expect(text.stdout.contains("crosses link-\(p)sb into switch \(p)sb by link-\(p)sa"), "\(text.stdout)")
        #expect(text.stdout.contains("forward to \(p)b.eth0"), "the other switch's decision: \(text.stdout)")
        let traced = Self.json(Harness.tapestry("trace --name \(p)ln --switch \(p)sa --in \(p)a.eth0 --frame '\(frame)' --json"))
        let first = (traced["frames"] as? [[String: Any]])?.first
        #expect((first?["egress"] as? [[String: Any]])?.first?["tag"] as? String == "vlan 10", "tagged onto the trunk link")
        let crossing = (first?["crossings"] as? [[String: Any]])?.first
        #expect(crossing?["switch"] as? String == "\(p)sb" && crossing?["in_port"] as? String == "link-\(p)sa", "\(String(describing: first))")
        let inner = crossing?["trace"] as? [String: Any]
        #expect(inner?["verdict"] as? String == "forward")
        #expect((inner?["egress"] as? [[String: Any]])?.first?["port"] as? String == "\(p)b.eth0")
        #expect((inner?["egress"] as? [[String: Any]])?.first?["tag"] as? String == "untagged")

        // capture on a link port: the ICMP crossing the link, tagged VLAN 10.
        let pcap = NSTemporaryDirectory() + "tapestry-\(p)-link.pcapng"
        defer { unlink(pcap) }
        let cap = sh("'\(Harness.binary)' capture --name \(p)ln --switch \(p)sa --port link-\(p)sb -c 4 --duration 10s -w \(pcap) >/dev/null 2>&1 & echo $!")
        usleep(500_000)
        _ = lab.ping(from: "\(p)a", to: "10.16.1.2", count: 3)
        if let pid = Int32(cap.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) {
            for _ in 0..<100 where isRunning(pid) { usleep(100_000) }
        }
        let seen = sh("tcpdump -e -nn -r \(pcap) 2>/dev/null").stdout
        #expect(seen.contains("vlan 10") && seen.contains("ICMP echo"), "capture on the link port: \(seen)")

        // reload: a third switch linked to B comes and goes; a↔b keeps forwarding, the
        // first link's counters survive (its ports are untouched).
        let before = (lb?["rx_frames"] as? NSNumber)?.intValue ?? 0
        let third = """
          \(p)sc:
            port-groups:
              trunk: {vlan: {trunk: [10]}}
              v10: {vlan: 10}
        """
        let withC = Self.linked(p, extraLinks: "  - {between: [\(p)sb/trunk, \(p)sc/trunk]}", extraSwitches: third)
            .replacingOccurrences(of: "guests:\n", with: "guests:\n  \(p)e: {kind: netns, nics: [{switch: \(p)sc, port-group: v10, mac: \"02:00:00:16:00:05\", ip: 10.16.1.5/24}]}\n")
        let add = ReloadSystemTests.reload(lab, withC, tag: "add")
        #expect(add.succeeded, "\(add.stderr)")
        #expect(add.stdout.contains("links +"), "\(add.stdout)")
        #expect(lab.ping(from: "\(p)a", to: "10.16.1.5", count: 3), "a → e across two links")
        let mid = ((lab.ports().first { $0["name"] as? String == "link-\(p)sa" && $0["switch"] as? String == "\(p)sb" })?["rx_frames"] as? NSNumber)?.intValue ?? -1
        #expect(mid >= before, "the untouched link kept its counters (\(before) → \(mid))")
        let remove = ReloadSystemTests.reload(lab, Self.linked(p), tag: "remove")
        #expect(remove.succeeded, "\(remove.stderr)")
        #expect(!lab.ports().contains { ($0["name"] as? String) == "link-\(p)sc" }, "the removed link's port is gone")
        #expect(lab.ping(from: "\(p)a", to: "10.16.1.2", count: 2), "a → b after the reloads")
    }

    @Test func aLoopOfThreeLinksIsRefusedWithLocatedErrors() throws {
        let p = Self.id()
        let file = NSTemporaryDirectory() + "tapestry-\(p)-loop.yaml"
        defer { unlink(file) }
        let yaml = """
        name: \(p)lp
        switches:
          s1: {port-groups: {t: {vlan: {trunk: [10]}}}}
          s2: {port-groups: {t: {vlan: {trunk: [10]}}}}
          s3: {port-groups: {t: {vlan: {trunk: [10]}}}}
        links:
          - {between: [s1/t, s2/t]}
          - {between: [s2/t, s3/t]}
          - {between: [s3/t, s1/t]}
        guests: {}
        """
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let r = Harness.tapestry("validate '\(file)'")
        #expect(r.status == 1, "a loop must be refused: \(r.stdout) \(r.stderr)")
        let out = r.stdout + r.stderr
        // Located at the link that closes the loop (line 9 of the file).
        #expect(out.contains("\(file):9:"), "\(out)")
        #expect(out.lowercased().contains("loop"), "\(out)")
        #expect(Harness.tapestry("up '\(file)' --detach").status == 1, "up refuses it too")
        #expect(!Harness.namespaces().contains { $0.hasPrefix(p) })
    }

    @Test func everyAddressOfAGuestAnswersAndNoneIsLeftTentative() throws {
        let p = Self.id()
        let yaml = """
        name: \(p)ad
        switches:
          sw0: {port-groups: {v10: {vlan: 10}}}
        guests:
          \(p)m: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: [10.16.2.10/24, 10.16.3.11/24, "2001:db8:16:2::10/64"]}]}
          \(p)q: {kind: netns, nics: [{switch: sw0, port-group: v10, ip: [10.16.2.20/24, 10.16.3.20/24, "2001:db8:16:2::20/64"]}]}
        """
        let lab = RunningTopology(name: "\(p)ad", yaml: yaml)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let shown = lab.exec("\(p)m", "ip -o addr show dev eth0").stdout
        for a in ["10.16.2.10/24", "10.16.3.11/24", "2001:db8:16:2::10/64"] { #expect(shown.contains(a), "\(a) on eth0: \(shown)") }
        // Usable at once: nothing tentative, nothing dadfailed (IFA_F_NODAD).
        #expect(!shown.contains("tentative") && !shown.contains("dadfailed"), "\(shown)")
        #expect(lab.ping(from: "\(p)q", to: "10.16.2.10"))
        #expect(lab.ping(from: "\(p)q", to: "10.16.3.11"))
        #expect(lab.exec("\(p)q", "ping -6 -c 2 -i 0.2 -W 1 2001:db8:16:2::10").succeeded, "IPv6 address answers")
        // And the replies come from the address asked (not from the first one).
        let reply = lab.exec("\(p)q", "ping -c 1 -W 1 10.16.3.11").stdout
        #expect(reply.contains("from 10.16.3.11"), "\(reply)")
    }

    /// h1 (VLAN 10) and h2 (VLAN 20) on different switches, r routing between them with a
    /// NIC in each VLAN on the core switch, linked to both access switches.
    static func routed(_ p: String) -> String {
        """
        name: \(p)rt
        switches:
          \(p)co:
            port-groups:
              trunk: {vlan: {trunk: [10, 20]}}
              v10: {vlan: 10}
              v20: {vlan: 20}
          \(p)a1: {port-groups: {up: {vlan: {trunk: [10]}}, v10: {vlan: 10}}}
          \(p)a2: {port-groups: {up: {vlan: {trunk: [20]}}, v20: {vlan: 20}}}
        links:
          - {between: [\(p)co/trunk, \(p)a1/up]}
          - {between: [\(p)co/trunk, \(p)a2/up]}
        guests:
          \(p)r:
            kind: netns
            nics:
              - {switch: \(p)co, port-group: v10, ip: [10.16.10.1/24, "2001:db8:16:10::1/64"]}
              - {switch: \(p)co, port-group: v20, ip: [10.16.20.1/24, "2001:db8:16:20::1/64"]}
          \(p)h1:
            kind: netns
            gateway: [10.16.10.1, "2001:db8:16:10::1"]
            nics: [{switch: \(p)a1, port-group: v10, ip: [10.16.10.10/24, "2001:db8:16:10::10/64"]}]
          \(p)h2:
            kind: netns
            routes:
              - {to: 10.16.10.0/24, via: 10.16.20.1}
              - {to: "2001:db8:16:10::/64", via: "2001:db8:16:20::1"}
            nics: [{switch: \(p)a2, port-group: v20, ip: [10.16.20.10/24, "2001:db8:16:20::10/64"]}]
        """
    }

    @Test func guestsRouteThroughARouterGuestByGatewayAndByRoutes() throws {
        let p = Self.id()
        let lab = RunningTopology(name: "\(p)rt", yaml: Self.routed(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        // The routes the file asked for are in place.
        let r1 = lab.exec("\(p)h1", "ip route show default").stdout
        #expect(r1.contains("via 10.16.10.1 dev eth0"), "\(r1)")
        #expect(lab.exec("\(p)h1", "ip -6 route show default").stdout.contains("via 2001:db8:16:10::1 dev eth0"))
        let r2 = lab.exec("\(p)h2", "ip route").stdout
        #expect(r2.contains("10.16.10.0/24 via 10.16.20.1 dev eth0"), "\(r2)")
        #expect(lab.exec("\(p)h2", "ip -6 route").stdout.contains("2001:db8:16:10::/64 via 2001:db8:16:20::1 dev eth0"))

        // Forwarding off: the router drops between its subnets.
        lab.exec("\(p)r", "sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0")
        #expect(!lab.ping(from: "\(p)h1", to: "10.16.20.10", count: 1), "no forwarding, no route")
        // Forwarding on (the router guest): h1 reaches h2 by its gateway, h2 answers by its
        // static route; the same in IPv6.
        lab.exec("\(p)r", "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
        #expect(lab.ping(from: "\(p)h1", to: "10.16.20.10", count: 3), "h1 → h2 through r (gateway:)")
        #expect(lab.ping(from: "\(p)h2", to: "10.16.10.10", count: 3), "h2 → h1 through r (routes:)")
        #expect(lab.exec("\(p)h1", "ping -6 -c 3 -i 0.2 -W 1 2001:db8:16:20::10").succeeded, "IPv6 h1 → h2 through r")
        // The path really goes through r: one hop less in the TTL.
        let ttl = lab.exec("\(p)h1", "ping -c 1 -W 1 10.16.20.10").stdout
        #expect(ttl.contains("ttl=63"), "\(ttl)")
    }

    /// dnsmasq serving 10.16.30.100–150 inside guest `server`; returns its pid.
    static func startDnsmasq(in server: String, prefix p: String, leases: String) -> Int32? {
        let log = NSTemporaryDirectory() + "tapestry-\(p)-dnsmasq.log"
        let r = sh("(ip netns exec \(server) dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=0 --user=root "
                   + "--interface=eth0 --bind-interfaces --dhcp-range=10.16.30.100,10.16.30.150,255.255.255.0,5m "
                   + "--dhcp-option=option:router,10.16.30.2 --dhcp-leasefile=\(leases) --log-dhcp >\(log) 2>&1 & echo $!)")
        return Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static var hasDHCPTools: Bool { sh("command -v dnsmasq && (command -v udhcpc || command -v busybox)").succeeded }

    @Test(.enabled(if: LabSystemTests.hasDHCPTools, "needs dnsmasq and udhcpc (Scripts/setup.sh installs dnsmasq-base and udhcpc)"))
    func aNetnsGuestGetsItsAddressFromDnsmasqInAnotherGuest() throws {
        let p = Self.id()
        let leases = NSTemporaryDirectory() + "tapestry-\(p)-leases"
        defer { unlink(leases) }
        let yaml = """
        name: \(p)dh
        switches:
          sw0: {port-groups: {v30: {vlan: 30}}}
        guests:
          \(p)s: {kind: netns, nics: [{switch: sw0, port-group: v30, ip: 10.16.30.2/24}]}
          \(p)c: {kind: netns, nics: [{switch: sw0, port-group: v30, mac: "02:00:00:16:30:09", ip: dhcp}]}
        """
        var clientPID: Int32 = 0
        do {
            let lab = RunningTopology(name: "\(p)dh", yaml: yaml)
            try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
            // The switch started a DHCP client in c and recorded it in the state file.
            let state = (try? String(contentsOfFile: "/run/tapestry/\(p)dh.state", encoding: .utf8)) ?? ""
            let obj = (try? JSONSerialization.jsonObject(with: Data(state.utf8))) as? [String: Any]
            clientPID = ((obj?["dhcpClients"] as? [[String: Any]])?.first?["pid"] as? NSNumber)?.int32Value ?? 0
            try #require(clientPID > 0 && isRunning(clientPID), "DHCP client recorded in the state file: \(state)")
            // The server starts after the guest: the client keeps asking until it answers.
            let dnsmasq = Self.startDnsmasq(in: "\(p)s", prefix: p, leases: leases)
            defer { if let d = dnsmasq { kill(d, SIGTERM) } }
            var leased = ""
            for _ in 0..<150 {
                let shown = lab.exec("\(p)c", "ip -4 -o addr show dev eth0").stdout
                if let r = shown.range(of: "10.16.30.1[0-9][0-9]", options: .regularExpression) { leased = String(shown[r]); break }
                usleep(200_000)
            }
            try #require(!leased.isEmpty, "c got no lease; dhcp log: \(sh("cat /var/log/tapestry/\(p)dh/\(p)c.eth0.dhcp.log").stdout)")
            #expect((try? String(contentsOfFile: leases, encoding: .utf8))?.contains("02:00:00:16:30:09 \(leased)") == true, "dnsmasq's lease")
            #expect(lab.ping(from: "\(p)s", to: leased), "the leased address answers")
            // The lease's router became c's default route (c has no gateway: of its own).
            #expect(lab.exec("\(p)c", "ip route show default").stdout.contains("via 10.16.30.2"))
        }
        // down killed the client.
        #expect(clientPID > 0 && !isRunning(clientPID), "the DHCP client is gone after down")
    }

    @Test(.enabled(if: LabSystemTests.hasDHCPTools && Harness.hasQEMU, "needs dnsmasq, udhcpc and qemu-system-x86_64 (Scripts/setup.sh)"))
    func aQEMUGuestGetsItsLeaseAndItsIPv6AddressAndRouteThroughFwCfg() throws {
        let p = Self.id()
        let leases = NSTemporaryDirectory() + "tapestry-\(p)-vmleases"
        defer { unlink(leases) }
        // The VM: a DHCP lease, an IPv6 address and a route to 2001:db8:16:41::/64 through
        // the server guest, all delivered by fw_cfg.
        let yaml = """
        name: \(p)vd
        switches:
          sw0: {port-groups: {v30: {vlan: 30}}}
        guests:
          \(p)s: {kind: netns, nics: [{switch: sw0, port-group: v30, ip: [10.16.30.2/24, "2001:db8:16:40::2/64"]}]}
          \(p)v:
            kind: qemu
            memory: 256M
            routes: [{to: "2001:db8:16:41::/64", via: "2001:db8:16:40::2"}]
            nics: [{switch: sw0, port-group: v30, mac: "52:54:00:16:30:05", ip: [dhcp, "2001:db8:16:40::5/64"]}]
        """
        do {
        let lab = RunningTopology(name: "\(p)vd", yaml: yaml)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr) \(lab.up.stdout)")
        #expect(FileManager.default.fileExists(atPath: "/run/tapestry/\(p)vd.vms/\(p)v.net"), "the fw_cfg file QEMU serves")
        // A netns guest's UDP leaves with a partial checksum (TAP offloads), which a VM port
        // refuses (`offload-not-supported`: the datapath does not finish checksums yet), so
        // the server computes its own.
        #expect(lab.exec("\(p)s", "ethtool -K eth0 tx off").succeeded)
        let dnsmasq = Self.startDnsmasq(in: "\(p)s", prefix: p, leases: leases)
        defer { if let d = dnsmasq { kill(d, SIGTERM) } }
        var leased = ""
        for _ in 0..<300 {
            let text = (try? String(contentsOfFile: leases, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("52:54:00:16:30:05") }) {
                leased = String(line.split(separator: " ")[2]); break
            }
            usleep(200_000)
        }
        let console = "/var/log/tapestry/\(p)vd/\(p)v.console.log"
        try #require(!leased.isEmpty, "the VM got no lease; console: \(sh("tail -20 \(console)").stdout)")
        #expect(lab.ping(from: "\(p)s", to: leased, count: 3), "the VM answers on its leased address \(leased)")
        #expect(lab.exec("\(p)s", "ping -6 -c 3 -i 0.3 -W 2 2001:db8:16:40::5").succeeded, "the VM's IPv6 address (fw_cfg) answers")
        // The reply to a source in 2001:db8:16:41::/64 needs the VM's static route.
        lab.exec("\(p)s", "ip addr add 2001:db8:16:41::2/128 dev lo")
        let routed = lab.exec("\(p)s", "ping -6 -c 3 -i 0.3 -W 2 -I 2001:db8:16:41::2 2001:db8:16:40::5")
        #expect(routed.succeeded, "the VM routes 2001:db8:16:41::/64 via the server: \(routed.stdout)")
        let log = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
        #expect(!log.contains("cannot add"), "the guest's /init applied every directive: \(log.suffix(600))")
        }
        // down removed the VM's files, the fw_cfg file included.
        #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(p)vd.vms"), "nothing left in /run/tapestry")
    }
}
