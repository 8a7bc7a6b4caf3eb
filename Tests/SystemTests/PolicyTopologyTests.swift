import Foundation
import Testing
import TestSupport

/// Through the real binary: topology files with `shaping`, `private-vlans` and
/// `multicast-*` brought up with `tapestry up`, changed with `tapestry reload`, read with
/// `tapestry mdb` and `ports`, against real namespaces, kernel stacks and tools (iperf3,
/// python sockets, tcpdump, ping). `Tests/RuntimeTests/PolicySystemTests.swift` drives the
/// same behaviour in-process from hand-built plans.
@Suite(.serialized, .enabled(if: PolicyTools.available, "needs root, /dev/net/tun, iproute2, tcpdump, iperf3 and python3 (Scripts/setup.sh installs them)"))
struct PolicyTopologyTests {

    /// Writes `yaml` to a file of its own and reloads `lab` from it.
    @discardableResult
    static func reload(_ lab: RunningTopology, _ yaml: String, tag: String) -> CommandResult {
        let file = NSTemporaryDirectory() + "tapestry-\(lab.name)-\(tag).yaml"
        try? yaml.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        return Harness.tapestry("reload '\(file)' --name \(lab.name)")
    }

    // MARK: - Traffic shaping

    /// `a` in a shaped port group, `b` plain, both netns guests with offloads (TSO: GSO
    /// frames of up to 64 KiB count whole). `shaping` is the group's `shaping:` value.
    static func shapingYAML(_ p: String, shaping: String) -> String {
        """
        name: \(p)shp
        switches:
          sw0:
            port-groups:
              shaped: {vlan: 10, shaping: \(shaping)}
              plain: {vlan: 10}
        guests:
          \(p)a: {kind: netns, nics: [{switch: sw0, port-group: shaped, mac: "02:00:00:20:00:01", ip: 10.20.0.1/24}]}
          \(p)b: {kind: netns, nics: [{switch: sw0, port-group: plain, mac: "02:00:00:20:00:02", ip: 10.20.0.2/24}]}
        """
    }

    /// TCP throughput a → b (or b → a with `reverse`) as iperf3's receiver measured it, bits/s.
    static func iperf(_ lab: RunningTopology, _ p: String, reverse: Bool) -> Double? {
        let r = lab.exec("\(p)a", "iperf3 -c 10.20.0.2 -p 5302 -t 5 -O 1 -J \(reverse ? "-R" : "")", timeout: 40)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let end = obj["end"] as? [String: Any], let recv = end["sum_received"] as? [String: Any] else { return nil }
        return (recv["bits_per_second"] as? NSNumber)?.doubleValue
    }

    /// An iperf3 TCP stream from the shaped guest lands within ±20% of `average` while the
    /// other direction is unshaped; a live reload that moves the shaping to the egress
    /// direction, at another average, is in force at once.
    ///
    /// Burst: 2 MiB with peak = average (the topology's default and the shaping advice for
    /// TCP: a policer with a peak bucket shorter than TCP's bursts clips them; see
    /// docs/policies.md).
    @Test func tcpThroughAShapedPortGroupLandsAtTheAverage() throws {
        let p = Capabilities.uniquePrefix("s")
        let lab = RunningTopology(name: "\(p)shp", yaml: Self.shapingYAML(p, shaping: "{ingress: {average: 50mbit, burst: 2MiB}}"))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let server = GuestProcess(guest: "\(p)b", command: "exec iperf3 -s -B 10.20.0.2 -p 5302")
        defer { server.stop() }
        usleep(700_000)

        let shaped = try #require(Self.iperf(lab, p, reverse: false), "iperf3 a → b ran")
        let open = try #require(Self.iperf(lab, p, reverse: true), "iperf3 b → a ran")
        print("shaping (ingress 50mbit, burst 2MiB): a → b \(Int(shaped / 1e6)) Mbit/s, b → a \(Int(open / 1e6)) Mbit/s")
        #expect(abs(shaped - 50e6) <= 0.2 * 50e6, "shaped TCP at \(shaped / 1e6) Mbit/s, within ±20% of 50")
        #expect(open > 2 * 50e6, "the other direction is not shaped: \(open / 1e6) Mbit/s")
        #expect(lab.drops(port: "\(p)a.eth0", reason: "shaping-ingress") > 0, "excess counted as shaping-ingress on a.eth0")
        #expect(lab.drops(port: "\(p)a.eth0", reason: "shaping-egress") == 0)

        // Reload: egress shaping (switch → guest a) at 20 Mbit/s instead. The port keeps its
        // TAP (the guest is untouched); the new limits apply at once.
        let r = Self.reload(lab, Self.shapingYAML(p, shaping: "{egress: {average: 20mbit, burst: 2MiB}}"), tag: "egress")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        #expect(r.stdout.contains("switches ~sw0"), "\(r.stdout)")
        let toA = try #require(Self.iperf(lab, p, reverse: true), "iperf3 b → a ran after the reload")
        let fromA = try #require(Self.iperf(lab, p, reverse: false), "iperf3 a → b ran after the reload")
        print("shaping after reload (egress 20mbit, burst 2MiB): b → a \(Int(toA / 1e6)) Mbit/s, a → b \(Int(fromA / 1e6)) Mbit/s")
        #expect(abs(toA - 20e6) <= 0.2 * 20e6, "egress-shaped TCP at \(toA / 1e6) Mbit/s, within ±20% of 20")
        #expect(fromA > 2 * 50e6, "ingress is no longer shaped: \(fromA / 1e6) Mbit/s")
        #expect(lab.drops(port: "\(p)a.eth0", reason: "shaping-egress") > 0, "excess counted as shaping-egress on a.eth0")
    }

    // MARK: - Private VLANs

    /// Primary 100 (promiscuous `p`), isolated 101 (`i1`, `i2`), communities 102 (`c1`, `c2`)
    /// and 103 (`d`), one subnet; `t` is a trunk guest carrying all four. `i2Group` is the
    /// VLAN of i2's port group (a reload moves it).
    static func pvlanYAML(_ p: String, i2Group: String = "{private: 101}") -> String {
        """
        name: \(p)pvl
        switches:
          sw0:
            private-vlans:
              100: {isolated: 101, community: [102, 103]}
            port-groups:
              prom: {vlan: {private: 100}}
              iso: {vlan: {private: 101}}
              iso2: {vlan: \(i2Group)}
              ca: {vlan: {private: 102}}
              cb: {vlan: {private: 103}}
              tr: {vlan: {trunk: [100-103]}}
        guests:
          \(p)p: {kind: netns, nics: [{switch: sw0, port-group: prom, mac: "02:00:00:21:00:01", ip: 10.21.0.1/24}]}
          \(p)i1: {kind: netns, nics: [{switch: sw0, port-group: iso, mac: "02:00:00:21:00:02", ip: 10.21.0.2/24}]}
          \(p)i2: {kind: netns, nics: [{switch: sw0, port-group: iso2, mac: "02:00:00:21:00:03", ip: 10.21.0.3/24}]}
          \(p)c1: {kind: netns, nics: [{switch: sw0, port-group: ca, mac: "02:00:00:21:00:04", ip: 10.21.0.4/24}]}
          \(p)c2: {kind: netns, nics: [{switch: sw0, port-group: ca, mac: "02:00:00:21:00:05", ip: 10.21.0.5/24}]}
          \(p)d: {kind: netns, nics: [{switch: sw0, port-group: cb, mac: "02:00:00:21:00:06", ip: 10.21.0.6/24}]}
          \(p)t: {kind: netns, nics: [{switch: sw0, port-group: tr, mac: "02:00:00:21:00:07"}]}
        """
    }

    /// Pings every pair at once (a failing ping waits out its timeout) and returns, per pair,
    /// whether it got replies.
    static func pings(_ p: String, _ pairs: [(String, String)]) -> [Bool] {
        let address = ["p": 1, "i1": 2, "i2": 3, "c1": 4, "c2": 5, "d": 6]
        let base = NSTemporaryDirectory() + "tapestry-\(p)-ping"
        let script = pairs.enumerated().map { k, pair in
            "(ip netns exec \(p)\(pair.0) ping -c 2 -i 0.3 -W 2 10.21.0.\(address[pair.1]!) >/dev/null 2>&1; echo $? > \(base)\(k)) &"
        }.joined(separator: "\n") + "\nwait"
        sh(script, timeout: 60)
        return pairs.indices.map { k in
            defer { unlink("\(base)\(k)") }
            return (try? String(contentsOfFile: "\(base)\(k)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
        }
    }

    /// Pings follow the promiscuous/isolated/community matrix; a trunk sees each guest's
    /// frames tagged with the VLAN it entered with (the secondary's, or the primary's for the
    /// promiscuous port); a reload that makes i2's group a community port of 102 changes
    /// whom i2 reaches, at once.
    @Test func privateVLANPingsFollowTheMatrix() throws {
        let p = Capabilities.uniquePrefix("v")
        let lab = RunningTopology(name: "\(p)pvl", yaml: Self.pvlanYAML(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let onTrunk = Capture(in: "\(p)t", filter: "vlan and arp", seconds: 30)
        let pairs: [(String, String, Bool)] = [
            ("p", "i1", true), ("i1", "p", true), ("p", "c1", true), ("p", "d", true), ("d", "p", true),   // promiscuous ↔ all
            ("i1", "i2", false), ("i2", "i1", false),                                                     // isolated ↮ isolated
            ("i1", "c1", false), ("c1", "i1", false), ("i1", "d", false),                                  // isolated ↮ community
            ("c1", "c2", true), ("c2", "c1", true),                                                        // within a community
            ("c1", "d", false), ("d", "c2", false),                                                        // across communities
        ]
        let got = Self.pings(p, pairs.map { ($0.0, $0.1) })
        for (k, pair) in pairs.enumerated() {
            #expect(got[k] == pair.2, "ping \(pair.0) → \(pair.1): \(pair.2 ? "should pass" : "should fail")")
        }
        // The trunk carries each secondary's frames with its own tag, the primary's for p.
        let tagged = onTrunk.lines()
        for (vlan, mac) in [(100, "02:00:00:21:00:01"), (101, "02:00:00:21:00:02"), (102, "02:00:00:21:00:04"), (103, "02:00:00:21:00:06")] {
            let lines = tagged.filter { $0.contains("\(mac) > ff:ff:ff:ff:ff:ff") }
            #expect(!lines.isEmpty && lines.allSatisfy { $0.contains("vlan \(vlan),") }, "ARP from \(mac) crosses the trunk tagged \(vlan): \(lines)")
        }
        // Shared learning: every entry of the private VLAN is listed under the primary.
        let fdb = Harness.tapestry("fdb --name \(p)pvl --json").stdout
        let entries = ((try? JSONSerialization.jsonObject(with: Data(fdb.utf8)) as? [String: Any])?["entries"] as? [[String: Any]]) ?? []
        #expect(!entries.isEmpty && entries.allSatisfy { "\($0["vlan"] ?? "")" == "100" }, "fdb under the primary: \(entries.map { $0["vlan"] ?? "?" })")

        // Reload: i2's group becomes community 102. i2 keeps its TAP and now reaches c1, not i1.
        let r = Self.reload(lab, Self.pvlanYAML(p, i2Group: "{private: 102}"), tag: "community")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        #expect(!r.stdout.contains("guests"), "no guest is re-created: \(r.stdout)")
        let after = Self.pings(p, [("i2", "c1"), ("c2", "i2"), ("i2", "i1"), ("i2", "p")])
        #expect(after == [true, true, false, true], "after the reload: \(after)")
    }

    // MARK: - IGMP/MLD snooping

    static let group4 = "239.21.1.1"
    static let group6 = "ff15::21:1"

    /// `s` sends, `m` joins, `n` never does, `r` is a static member of both groups (so they
    /// stay registered when m's membership goes: an unregistered group floods, as Open
    /// vSwitch does by default); all in VLAN 10. `querier` turns the querier on, `spare` adds
    /// a port group (an unrelated change of the switch).
    static func snoopingYAML(_ p: String, snooping: Bool = true, querier: Bool = false, spare: Bool = false) -> String {
        let keys = """
            multicast-membership-interval: 10s
            multicast-querier: \(querier)
            multicast-static-groups:
              - {group: \(group4), ports: [\(p)r.eth0]}
              - {group: "\(group6)", ports: [\(p)r.eth0]}
        """
        return """
        name: \(p)mc
        switches:
          sw0:
            multicast-snooping: \(snooping)
        \(snooping ? keys : "")
            port-groups:
              v10: {vlan: 10}
              \(spare ? "spare: {vlan: 11}" : "")
        guests:
          \(p)s: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:22:00:01", ip: 10.22.0.1/24}]}
          \(p)m: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:22:00:02", ip: 10.22.0.2/24}]}
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:22:00:03", ip: 10.22.0.3/24}]}
          \(p)r: {kind: netns, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:22:00:04", ip: 10.22.0.4/24}]}
        """
    }

    /// Datagrams to each group that reached a guest.
    struct Seen: CustomStringConvertible {
        var m4 = 0, m6 = 0, n4 = 0, n6 = 0, r4 = 0, r6 = 0
        var description: String { "member \(m4)/\(m6), non-member \(n4)/\(n6), static member \(r4)/\(r6) (IPv4/IPv6)" }
    }

    /// How many of `count` datagrams `s` sends to each group reach m, n and r (tcpdump in
    /// their namespaces).
    static func delivered(_ p: String, count: Int = 10) -> Seen {
        let filter = "udp and (dst host \(group4) or dst host \(group6))"
        let caps = ["m", "n", "r"].map { Capture(in: "\(p)\($0)", direction: "in", filter: filter) }
        GuestProcess.run(guest: "\(p)s", python: MulticastScripts.send(group4, count: count) + MulticastScripts.send(group6, count: count))
        let lines = caps.map { $0.lines() }
        func n(_ k: Int, _ g: String) -> Int { lines[k].filter { $0.contains(g) }.count }
        return Seen(m4: n(0, group4), m6: n(0, group6), n4: n(1, group4), n6: n(1, group6), r4: n(2, group4), r6: n(2, group6))
    }

    /// `tapestry mdb --json`.
    static func mdb(_ p: String) -> [String: Any] {
        let r = Harness.tapestry("mdb --name \(p)mc --json")
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    /// The memberships `mdb --json` lists, as `GROUP PORT TYPE`.
    static func members(_ p: String) -> Set<String> {
        Set(((mdb(p)["entries"] as? [[String: Any]]) ?? []).map { "\($0["group"] ?? "") \($0["port"] ?? "") \($0["type"] ?? "")" })
    }

    /// The static memberships of r, always there.
    static func statics(_ p: String) -> Set<String> { ["\(group4) \(p)r.eth0 static", "\(group6) \(p)r.eth0 static"] }
    /// m's dynamic memberships.
    static func joined(_ p: String) -> Set<String> { ["\(group4) \(p)m.eth0 dynamic", "\(group6) \(p)m.eth0 dynamic"] }

    /// A guest joins both groups with real sockets (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP): it
    /// receives their traffic and a non-member port sees none; `tapestry mdb` (text and
    /// JSON) lists the memberships; with no querier they age out after the membership
    /// interval and the traffic stops; joined again and then left (the socket closes: the
    /// kernel's leave), it stops at once.
    @Test func joinedGuestsReceiveTheGroupUntilTheyAgeOutOrLeave() throws {
        let p = Capabilities.uniquePrefix("m")
        let lab = RunningTopology(name: "\(p)mc", yaml: Self.snoopingYAML(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let joined = Date()
        let member = GuestProcess(guest: "\(p)m", python: MulticastScripts.join([Self.group4, Self.group6], seconds: 40))
        defer { member.stop() }
        usleep(1_500_000)   // the kernel's unsolicited reports (IGMPv3/MLDv2: two within a second)

        let m = "\(p)m.eth0"
        #expect(Self.members(p) == Self.joined(p).union(Self.statics(p)))
        let doc = Self.mdb(p)
        let entry = ((doc["entries"] as? [[String: Any]]) ?? []).first { "\($0["group"] ?? "")" == Self.group4 && $0["port"] as? String == m }
        #expect(entry?["switch"] as? String == "sw0" && "\(entry?["vlan"] ?? "")" == "10" && entry?["type"] as? String == "dynamic")
        #expect((entry?["age_seconds"] as? NSNumber).map { $0.intValue <= 3 } == true && (entry?["expires_seconds"] as? NSNumber).map { $0.intValue <= 10 } == true,
                "age and expiry of a fresh membership: \(entry ?? [:])")
        let table = ((doc["tables"] as? [[String: Any]]) ?? []).first
        #expect((table?["membership_interval_seconds"] as? NSNumber)?.intValue == 10 && (table?["groups"] as? NSNumber)?.intValue == 2
                && (table?["memberships"] as? NSNumber)?.intValue == 4, "\(table ?? [:])")
        let text = Harness.tapestry("mdb --name \(p)mc").stdout
        #expect(text.contains(Self.group4) && text.contains(Self.group6) && text.contains(m) && text.contains("dynamic"), "\(text)")

        var seen = Self.delivered(p)
        #expect(seen.m4 >= 9 && seen.m6 >= 9 && seen.r4 >= 9 && seen.r6 >= 9, "the members receive both groups: \(seen)")
        #expect(seen.n4 == 0 && seen.n6 == 0, "the non-member port sees none of it: \(seen)")

        // Aging: no querier asks, so the kernel does not report again; 10 s after its last
        // report the membership is gone (the aging tick runs every second) and so is the traffic.
        let wait = 14.5 - Date().timeIntervalSince(joined)
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        #expect(Self.members(p) == Self.statics(p), "m aged out")
        seen = Self.delivered(p)
        #expect(seen.m4 == 0 && seen.m6 == 0 && seen.n4 == 0 && seen.n6 == 0, "after aging m gets nothing: \(seen)")
        #expect(seen.r4 >= 9 && seen.r6 >= 9, "the static member still does: \(seen)")
        member.stop()

        // Leave: join for 5 s; when the socket closes the kernel sends the leave (IGMPv3
        // TO_IN({}), MLDv2 likewise) and the membership goes at once, well before aging
        // (which could not happen before rejoin + 10 s).
        let rejoined = Date()
        let brief = GuestProcess(guest: "\(p)m", python: MulticastScripts.join([Self.group4, Self.group6], seconds: 5))
        defer { brief.stop() }
        usleep(1_000_000)
        seen = Self.delivered(p, count: 6)
        #expect(seen.m4 >= 5 && seen.m6 >= 5 && seen.n4 == 0 && seen.n6 == 0, "joined again: \(seen)")
        #expect(Self.members(p) == Self.joined(p).union(Self.statics(p)))
        let untilLeave = 6.0 - Date().timeIntervalSince(rejoined)
        if untilLeave > 0 { usleep(UInt32(untilLeave * 1_000_000)) }
        let left = Self.members(p)
        #expect(Date().timeIntervalSince(rejoined) < 9.5, "checked before the membership could have aged out")
        #expect(left == Self.statics(p), "the leave removed both memberships at once: \(left)")
        seen = Self.delivered(p)
        #expect(seen.m4 == 0 && seen.m6 == 0 && seen.n4 == 0 && seen.n6 == 0 && seen.r4 >= 9, "after the leave: \(seen)")
        #expect(lab.drops(port: m, reason: "malformed-igmp") == 0 && lab.drops(port: m, reason: "malformed-mld") == 0)
    }

    /// Live reloads of the multicast keys: turning the querier on keeps memberships alive past
    /// the interval (Linux answers its IGMPv3/MLDv2 queries), also across another reload;
    /// `mdb` shows this switch as the querier; turning snooping off floods the groups again.
    @Test func reloadTurnsTheQuerierOnAndSnoopingOff() throws {
        let p = Capabilities.uniquePrefix("k")
        let lab = RunningTopology(name: "\(p)mc", yaml: Self.snoopingYAML(p))
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        var r = Self.reload(lab, Self.snoopingYAML(p, querier: true), tag: "querier")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        let queriers = (Self.mdb(p)["queriers"] as? [[String: Any]]) ?? []
        #expect(Set(queriers.map { "\($0["vlan"] ?? "") \($0["family"] ?? "") \($0["role"] ?? "")" }) == ["10 ipv4 querier", "10 ipv6 querier"],
                "\(queriers)")
        #expect(queriers.first { $0["family"] as? String == "ipv6" }.map { "\($0["address"] ?? "")".hasPrefix("fe80::") } == true,
                "the MLD querier's source is link-local")

        let joined = Date()
        let member = GuestProcess(guest: "\(p)m", python: MulticastScripts.join([Self.group4, Self.group6], seconds: 40))
        defer { member.stop() }
        usleep(3_000_000)
        // Another reload half way (an unrelated change: the membership interval stays) must
        // not disturb the querier or the memberships.
        r = Self.reload(lab, Self.snoopingYAML(p, querier: true, spare: true), tag: "spare")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        #expect(r.stdout.contains("switches ~sw0"), "\(r.stdout)")
        let wait = 15.0 - Date().timeIntervalSince(joined)
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        #expect(Self.members(p) == Self.joined(p).union(Self.statics(p)), "answers to the queries kept both memberships past 10 s")
        var seen = Self.delivered(p)
        #expect(seen.m4 >= 9 && seen.m6 >= 9 && seen.n4 == 0 && seen.n6 == 0, "still pruned to the members: \(seen)")

        // Snooping off: the groups flood the VLAN, and mdb says no switch snoops.
        r = Self.reload(lab, Self.snoopingYAML(p, snooping: false), tag: "off")
        try #require(r.succeeded, "reload failed: \(r.stderr)")
        seen = Self.delivered(p)
        #expect(seen.n4 >= 9 && seen.n6 >= 9, "the non-member now receives the flood: \(seen)")
        #expect(Harness.tapestry("mdb --name \(p)mc").stdout.contains("no switch has multicast snooping"))
    }
}

/// The tools the policy tests drive.
enum PolicyTools {
    static var available: Bool {
        Harness.enabled && sh("command -v tcpdump && command -v iperf3 && command -v ping && test -x /usr/bin/python3").succeeded
    }
}

/// A process started in a guest's namespace (its own session, so its whole group can be
/// signalled), killed by `stop` by its pid.
final class GuestProcess {
    let pid: Int32
    let script: String?

    /// Runs `command` with `sh` in `guest`.
    init(guest: String, command: String) {
        script = nil
        let r = sh("ip netns exec \(guest) setsid sh -c '\(command)' >/dev/null 2>&1 & echo $!")
        pid = Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Runs the Python program `python` in `guest`.
    init(guest: String, python: String) {
        let file = NSTemporaryDirectory() + "tapestry-py-\(UInt32.random(in: 0...UInt32.max)).py"
        try? python.write(toFile: file, atomically: true, encoding: .utf8)
        script = file
        let r = sh("ip netns exec \(guest) setsid /usr/bin/python3 \(file) >/dev/null 2>&1 & echo $!")
        pid = Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Runs the Python program `python` in `guest` to its end.
    static func run(guest: String, python: String) {
        let file = NSTemporaryDirectory() + "tapestry-py-\(UInt32.random(in: 0...UInt32.max)).py"
        try? python.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        sh("ip netns exec \(guest) /usr/bin/python3 \(file)", timeout: 30)
    }

    /// Ends the process group (TERM, then KILL); idempotent.
    func stop() {
        if pid > 0 {
            kill(-pid, SIGTERM); kill(pid, SIGTERM)
            for _ in 0..<20 where isRunning(pid) { usleep(50_000) }
            kill(-pid, SIGKILL); kill(pid, SIGKILL)
        }
        if let s = script { unlink(s) }
    }
}

/// Python programs for the multicast tests: real sockets, the kernel does the IGMP/MLD.
enum MulticastScripts {
    /// Joins `groups` on eth0 (IPv4: `IP_ADD_MEMBERSHIP` with an `ip_mreqn`; IPv6:
    /// `IPV6_JOIN_GROUP`), holds them `seconds`, exits (the kernel then sends the leaves).
    static func join(_ groups: [String], seconds: Double) -> String {
        var lines = ["import socket, struct, time", "ifindex = socket.if_nametoindex('eth0')", "keep = []"]
        for g in groups {
            if g.contains(":") {
                lines += ["s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
                          "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6, '\(g)') + struct.pack('@I', ifindex))",
                          "keep.append(s)"]
            } else {
                lines += ["s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
                          "s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton('\(g)') + struct.pack('@I', 0) + struct.pack('@i', ifindex))",
                          "keep.append(s)"]
            }
        }
        lines.append("time.sleep(\(seconds))")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Sends `count` UDP datagrams to `group` port 5000 out of eth0, 30 ms apart.
    static func send(_ group: String, count: Int) -> String {
        let v6 = group.contains(":")
        return """
        import socket, struct, time
        ifindex = socket.if_nametoindex('eth0')
        s = socket.socket(socket.\(v6 ? "AF_INET6" : "AF_INET"), socket.SOCK_DGRAM)
        \(v6 ? "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)"
             : "s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack('4s4si', b'\\0' * 4, b'\\0' * 4, ifindex))")
        for i in range(\(count)):
            s.sendto(b'tapestry', ('\(group)', 5000))
            time.sleep(0.03)

        """
    }
}
