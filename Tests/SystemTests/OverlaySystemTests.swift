import Foundation
import Testing
import TestSupport

/// A two-host fabric on one machine: hosts h1 and h2 are network namespaces on a
/// veth underlay bridge (`Scripts/lab/fabric-underlay.sh`), each running its part of one
/// topology with `tapestry up FILE --host H`; a Linux kernel VTEP (`ip link add … type
/// vxlan id 5000`) in a bridge with one guest is a remote VTEP of the switch.
final class OverlayLab {
    let p: String
    let name: String
    let file: String
    var up: [String: CommandResult] = [:]
    let underlay: CommandResult

    /// - `family`: `ipv4` or `ipv6` underlay; `mtu`: the underlay links' MTU.
    /// - `upArguments`: extra `up` arguments per host (e.g. `--metrics`).
    init(prefix p: String, yaml: String, family: String = "ipv4", mtu: Int = 1600, hosts: [String] = ["h1", "h2"],
         upArguments: [String: String] = [:]) {
        self.p = p
        name = "\(p)fab"
        file = NSTemporaryDirectory() + "tapestry-\(p)fab.yaml"
        try? yaml.write(toFile: file, atomically: true, encoding: .utf8)
        underlay = sh("MTU=\(mtu) '\(Harness.packageRoot)/Scripts/lab/fabric-underlay.sh' up \(p) \(family)", timeout: 60)
        guard underlay.succeeded else { return }
        for h in hosts { up[h] = Harness.tapestry("up '\(file)' --host \(h) --detach \(upArguments[h] ?? "")") }
    }

    func down(_ host: String) -> CommandResult { Harness.tapestry("down --name \(name) --host \(host)") }

    deinit {
        for h in up.keys { _ = down(h) }
        sh("'\(Harness.packageRoot)/Scripts/lab/fabric-underlay.sh' down \(p)")
        unlink(file)
        for h in up.keys { sh("rm -rf '/var/log/tapestry/\(name)@\(h)'") }
    }

    @discardableResult
    func exec(_ ns: String, _ command: String, timeout: TimeInterval = 60) -> CommandResult {
        sh("ip netns exec \(ns) \(command)", timeout: timeout)
    }

    func ping(_ from: String, _ to: String, count: Int = 3, extra: String = "") -> Bool {
        exec(from, "ping -c \(count) -i 0.2 -W 1 \(extra) \(to)").succeeded
    }

    func json(_ command: String, host: String) -> [String: Any] {
        let r = Harness.tapestry("\(command) --name \(name) --host \(host) --json")
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    func port(_ port: String, host: String) -> [String: Any]? {
        (json("ports", host: host)["ports"] as? [[String: Any]])?.first { $0["name"] as? String == port }
    }

    func drops(_ port: String, _ reason: String, host: String) -> Int {
        ((self.port(port, host: host)?["drops"] as? [String: Any])?[reason] as? NSNumber)?.intValue ?? 0
    }

    func underlayDrops(_ reason: String, host: String) -> Int {
        let u = (json("ports", host: host)["underlays"] as? [[String: Any]])?.first
        return ((u?["drops"] as? [String: Any])?[reason] as? NSNumber)?.intValue ?? 0
    }

    /// The first underlay endpoint's counter `key` on `host` (`ports --json`, `underlays`).
    func underlayCounter(_ key: String, host: String) -> Int {
        (((json("ports", host: host)["underlays"] as? [[String: Any]])?.first)?[key] as? NSNumber)?.intValue ?? 0
    }

    /// Sends `bytes` pseudo-random bytes over one TCP connection from namespace `from` to
    /// `address` (a listener in `to`); returns (sent, received) as "COUNT SHA256", so a
    /// stream corrupted, reordered or cut anywhere on the way shows.
    func transfer(from: String, to: String, address: String, bytes: Int) -> (sent: String, received: String) {
        let dir = NSTemporaryDirectory() + "tapestry-\(p)-xfer"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = """
        import socket, hashlib, sys
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 5300)); s.listen(1); s.settimeout(30)
        c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
        while True:
            b = c.recv(1 << 20)
            if not b: break
            h.update(b); n += len(b)
        open(sys.argv[1] + '.tmp', 'w').write('%d %s' % (n, h.hexdigest()))
        import os; os.rename(sys.argv[1] + '.tmp', sys.argv[1])
        """
        let client = """
        import socket, hashlib, random, sys
        data = random.Random(7).randbytes(int(sys.argv[2]))
        c = socket.create_connection((sys.argv[1], 5300), timeout=30); c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
        print('%d %s' % (len(data), hashlib.sha256(data).hexdigest()))
        """
        try? server.write(toFile: dir + "/server.py", atomically: true, encoding: .utf8)
        try? client.write(toFile: dir + "/client.py", atomically: true, encoding: .utf8)
        sh("(ip netns exec \(to) timeout 60 \(Harness.python) \(dir)/server.py \(dir)/received >/dev/null 2>&1 &)")
        usleep(500_000)
        let sent = exec(from, "timeout 60 \(Harness.python) \(dir)/client.py \(address) \(bytes)", timeout: 70).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: dir + "/received") { usleep(100_000) }
        let received = (try? String(contentsOfFile: dir + "/received", encoding: .utf8)) ?? "nothing"
        return (sent, received)
    }

    /// fdb entries of `host` as (mac, port, vtep).
    func fdb(host: String) -> [(mac: String, port: String, vtep: String?)] {
        ((json("fdb", host: host)["entries"] as? [[String: Any]]) ?? []).map {
            ($0["mac"] as? String ?? "", $0["port"] as? String ?? "", $0["vtep"] as? String)
        }
    }
}

@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct OverlaySystemTests {
    static func id() -> String { Capabilities.uniquePrefix("o") }

    /// sw0 spans h1 and h2 (VNI 5000 + VLAN); the kernel VTEP serves the untagged domain.
    static func fabric(_ p: String, remote: String = "10.77.0.9", mtu: Int = 1500, extraHost: String = "", extraGuest: String = "") -> String {
        let v6 = remote.contains(":")
        return """
        name: \(p)fab
        hosts:
          h1: {underlay: \(v6 ? "fd77::1" : "10.77.0.1"), netns: \(p)h1}
          h2: {underlay: \(v6 ? "fd77::2" : "10.77.0.2"), netns: \(p)h2}
        \(extraHost)
        switches:
          sw0:
            mtu: \(mtu)
            overlay:
              vni: 5000
              remote-vteps:
                - {address: \(remote), vlans: [none]}
            port-groups:
              plain: {vlan: none, security: {forged-transmits: true, mac-changes: true}}
              v10: {vlan: 10}
              v20: {vlan: 20}
        guests:
          \(p)a1: {kind: netns, host: h1, nics: [{switch: sw0, port-group: plain, mac: "02:00:00:77:01:01", ip: 10.78.0.1/24}]}
          \(p)a2: {kind: netns, host: h1, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:77:01:02", ip: 10.78.10.1/24}]}
          \(p)b1: {kind: netns, host: h2, nics: [{switch: sw0, port-group: plain, mac: "02:00:00:77:02:01", ip: 10.78.0.2/24}]}
          \(p)b2: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v10, mac: "02:00:00:77:02:02", ip: 10.78.10.2/24}]}
          \(p)b3: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v20, mac: "02:00:00:77:02:03", ip: 10.78.10.3/24}]}
        \(extraGuest)
        """
    }

    @Test func twoHostsAndAKernelVTEPShareOneSwitch() throws {
        let p = Self.id()
        let lab = OverlayLab(prefix: p, yaml: Self.fabric(p))
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        // A 1600-byte underlay fits MTU 1500 + 50: validate has nothing to say about it; a
        // host whose namespace is not on this machine is not looked at.
        let elsewhere = NSTemporaryDirectory() + "tapestry-\(p)-elsewhere.yaml"
        try? Self.fabric(p, mtu: 1560).replacingOccurrences(of: "netns: \(p)h2", with: "netns: \(p)nowhere")
            .write(toFile: elsewhere, atomically: true, encoding: .utf8)
        defer { unlink(elsewhere) }
        let quiet = Harness.tapestry("validate '\(lab.file)'")
        #expect(quiet.succeeded && !quiet.stderr.contains("warning"), "\(quiet.stderr)")
        let one = Harness.tapestry("validate '\(elsewhere)'")
        #expect(one.succeeded && one.stderr.split(separator: "\n").filter { $0.contains(": warning: ") && $0.contains("1610") }.count == 1,
                "MTU 1560 + 50 > 1600 on h1 only (h2's namespace is elsewhere): \(one.stderr)")

        // Cross-host pings, untagged and per VLAN; VLAN isolation across hosts.
        #expect(lab.ping("\(p)a1", "10.78.0.2"), "untagged (VNI 5000) across hosts")
        #expect(lab.ping("\(p)a2", "10.78.10.2"), "VLAN 10 (VNI 5010) across hosts")
        #expect(!lab.ping("\(p)a2", "10.78.10.3", count: 2), "VLAN 10 must not reach VLAN 20 on the other host")
        // To and from the kernel VTEP's guest (it serves VNI 5000 only).
        #expect(lab.ping("\(p)a1", "10.78.0.9"), "h1 guest → kernel VTEP guest")
        #expect(lab.ping("\(p)kg", "10.78.0.2"), "kernel VTEP guest → h2 guest")
        // Full-size frames cross without fragmenting (1550 bytes on a 1600-byte underlay).
        #expect(lab.ping("\(p)a1", "10.78.0.2", count: 2, extra: "-s 1472 -M do"), "ping -s 1472 -M do across")

        // The VNI on the wire, decoded by tshark; UDP source ports from the flow hash; DF set.
        if Harness.hasTshark {
            let out = NSTemporaryDirectory() + "tapestry-\(p)-vxlan.txt"
            sh("(ip netns exec \(p)ul timeout 12 tshark -i br0 -f 'udp port 4789' -a duration:10 -T fields -e vxlan.vni -e udp.srcport -e ip.flags.df -e ip.src > \(out) 2>/dev/null &)")
            usleep(2_500_000)
            _ = lab.ping("\(p)a2", "10.78.10.2", count: 3)
            _ = lab.ping("\(p)a1", "10.78.0.2", count: 3)
            for _ in 0..<40 where sh("pgrep -f 'tshark -i br0 -f udp port 4789' >/dev/null && ip netns pids \(p)ul | grep -q .").succeeded { usleep(300_000) }
            usleep(500_000)
            let rows = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
            unlink(out)
            let fromUs = rows.filter { $0.count >= 4 && ($0[3] == "10.77.0.1" || $0[3] == "10.77.0.2") }
            #expect(fromUs.contains { $0[0] == "5010" }, "VNI 5010 for VLAN 10 on the wire: \(rows.prefix(10))")
            #expect(fromUs.contains { $0[0] == "5000" }, "VNI 5000 for the untagged domain: \(rows.prefix(10))")
            #expect(!fromUs.isEmpty && fromUs.allSatisfy { Int($0[1]) ?? 0 >= 49152 }, "source ports from the flow hash (49152-65535)")
            #expect(!fromUs.isEmpty && fromUs.allSatisfy { $0[2] == "1" || $0[2] == "True" || $0[2] == "true" }, "DF set over IPv4: \(fromUs.prefix(3))")
        }

        // fdb shows remote MACs on the tunnel port with the VTEP address.
        let fdb1 = lab.fdb(host: "h1")
        #expect(fdb1.contains { $0.mac == "02:00:00:77:02:01" && $0.port == "h2" && $0.vtep == "10.77.0.2" }, "\(fdb1)")
        #expect(fdb1.contains { $0.mac == "02:00:00:77:00:09" && $0.port == "vtep-10.77.0.9" && $0.vtep == "10.77.0.9" }, "\(fdb1)")
        // ports shows tunnels with their kind and peer.
        let tunnel = lab.port("h2", host: "h1")
        #expect(tunnel?["kind"] as? String == "tunnel" && (tunnel?["peer"] as? String)?.contains("10.77.0.2") == true)
        #expect(((tunnel?["rx_frames"] as? NSNumber)?.intValue ?? 0) > 0)

        // trace --in h2: vlan=10 means VNI 5010; untagged means VNI 5000, and a flood from h2
        // reaches a1 only, never the kernel VTEP's tunnel (split horizon).
        let trace = Harness.tapestry("trace --name \(lab.name) --host h1 --in h2 --frame 'src=02:00:00:77:02:09,dst=ff:ff:ff:ff:ff:ff,vlan=10,type=arp'")
        #expect(trace.succeeded && trace.stdout.contains("VNI 5010") && trace.stdout.contains("\(p)a2.eth0"), "\(trace.stdout)\(trace.stderr)")
        let flood = Harness.tapestry("trace --name \(lab.name) --host h1 --in h2 --frame 'src=02:00:00:77:02:09,dst=ff:ff:ff:ff:ff:ff,type=arp'")
        let verdict = flood.stdout.split(separator: "\n").first { $0.contains("verdict") }.map(String.init) ?? ""
        #expect(flood.stdout.contains("VNI 5000") && verdict.contains("\(p)a1.eth0") && !verdict.contains("vtep-"), "\(flood.stdout)\(flood.stderr)")

        // capture --port h2 records the inner frames (no tunnel tag, no outer headers).
        let pcap = NSTemporaryDirectory() + "tapestry-\(p)-h2.pcapng"
        sh("(timeout 15 '\(Harness.binary)' capture --name \(lab.name) --host h1 --port h2 -c 4 -w \(pcap) >/dev/null 2>&1 &)")
        usleep(800_000)
        _ = lab.ping("\(p)a1", "10.78.0.2", count: 3)
        for _ in 0..<50 where sh("pgrep -f 'capture --name \(lab.name) --host h1' >/dev/null").succeeded { usleep(200_000) }
        let captured = sh("tcpdump -e -nn -r \(pcap) 2>/dev/null").stdout
        unlink(pcap)
        #expect(captured.contains("ICMP echo") && captured.contains("02:00:00:77:02:01") && !captured.contains("vlan") && !captured.contains("4789"),
                "inner frames on h2: \(captured)")

        // TCP across hosts (iperf3) with the guests' default offloads: their TSO frames are
        // cut and their partial checksums finished before encapsulation (a tunnel takes no
        // offloads), so the far guest sees no checksum errors.
        lab.exec("\(p)b1", "iperf3 -s -1 -D")
        usleep(300_000)
        let tcp = lab.exec("\(p)a1", "timeout 30 iperf3 -c 10.78.0.2 -t 3 -J", timeout: 40)
        let end = (((try? JSONSerialization.jsonObject(with: Data(tcp.stdout.utf8))) as? [String: Any])?["end"] as? [String: Any])?["sum_received"] as? [String: Any]
        let received = (end?["bytes"] as? NSNumber)?.int64Value ?? 0
        #expect(received > 1_000_000, "TCP across hosts received \(received) bytes \(tcp.stderr)")
        #expect(checksumErrors(in: "\(p)b1").tcp == 0, "no TCP checksum errors on the far guest")
        #expect(lab.drops("h2", "offload-not-supported", host: "h1") == 0)
        // The segments crossed as UDP GSO runs and were coalesced again on h2 (Wire's
        // TCPCoalescer): b1 got GSO frames; and a 48 MiB stream arrives intact both ways
        // (iperf3 does not look at its bytes; a coalescing mistake would, as the far guest
        // trusts a coalesced frame's checksum to be finished by the sender).
        #expect(lab.underlayCounter("rx_coalesced", host: "h2") > 0, "\(lab.json("ports", host: "h2")["underlays"] ?? "")")
        #expect(lab.underlayCounter("tx_runs", host: "h1") > 0, "h1 sent UDP GSO runs: \(lab.json("ports", host: "h1")["underlays"] ?? "")")
        let there = lab.transfer(from: "\(p)a1", to: "\(p)b1", address: "10.78.0.2", bytes: 48 << 20)
        #expect(there.sent.hasPrefix("\(48 << 20) ") && there.sent == there.received, "h1 → h2: \(there)")
        let back = lab.transfer(from: "\(p)b1", to: "\(p)a1", address: "10.78.0.1", bytes: 48 << 20)
        #expect(back.sent.hasPrefix("\(48 << 20) ") && back.sent == back.received, "h2 → h1: \(back)")
        // From the kernel VTEP's guest: the kernel's segments, coalesced by h2, intact.
        let fromKernel = lab.transfer(from: "\(p)kg", to: "\(p)b1", address: "10.78.0.2", bytes: 16 << 20)
        #expect(fromKernel.sent.hasPrefix("\(16 << 20) ") && fromKernel.sent == fromKernel.received, "kernel VTEP → h2: \(fromKernel)")
        #expect(checksumErrors(in: "\(p)b1").tcp == 0 && checksumErrors(in: "\(p)a1").tcp == 0)

        // A stranger VTEP's packets are dropped and counted.
        lab.exec("\(p)kv", "ip addr add 10.77.0.50/24 dev ul0")
        let stranger = """
        import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.77.0.50', 0))
        frame = bytes.fromhex('ffffffffffff020000770050' + '0806') + bytes(46)
        for _ in range(5): s.sendto(bytes([8, 0, 0, 0, 0, 0x13, 0x88, 0]) + frame, ('10.77.0.1', 4789))
        """
        try? stranger.write(toFile: NSTemporaryDirectory() + "tapestry-\(p)-stranger.py", atomically: true, encoding: .utf8)
        lab.exec("\(p)kv", "\(Harness.python) \(NSTemporaryDirectory())tapestry-\(p)-stranger.py")
        unlink(NSTemporaryDirectory() + "tapestry-\(p)-stranger.py")
        usleep(300_000)
        #expect(lab.underlayDrops("unknown-vtep", host: "h1") >= 5, "\(lab.json("ports", host: "h1")["underlays"] ?? "")")
        #expect(!lab.fdb(host: "h1").contains { $0.mac == "02:00:00:77:00:50" }, "a stranger teaches nothing")

        // A MAC moving between hosts: a1's MAC reappears behind h2 and moves at once.
        #expect(lab.fdb(host: "h2").contains { $0.mac == "02:00:00:77:01:01" && $0.port == "h1" })
        lab.exec("\(p)a1", "ip link set eth0 down")
        lab.exec("\(p)b1", "ip link set eth0 address 02:00:00:77:01:01")
        _ = lab.ping("\(p)b1", "10.78.0.9", count: 1)
        #expect(lab.fdb(host: "h1").contains { $0.mac == "02:00:00:77:01:01" && $0.port == "h2" }, "moved behind h2 on h1: \(lab.fdb(host: "h1"))")
        #expect(lab.fdb(host: "h2").contains { $0.mac == "02:00:00:77:01:01" && $0.port == "\(p)b1.eth0" })

        // down on both hosts leaves nothing behind.
        for h in ["h1", "h2"] { #expect(lab.down(h).succeeded) }
        let left = Harness.namespaces().filter { ["\(p)a1", "\(p)a2", "\(p)b1", "\(p)b2", "\(p)b3"].contains($0) }
        #expect(left.isEmpty, "guest namespaces left: \(left)")
        for h in ["h1", "h2"] {
            #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(lab.name)@\(h).state"))
            #expect(!FileManager.default.fileExists(atPath: "/run/tapestry/\(lab.name)@\(h).sock"))
        }
        #expect(!lab.exec("\(p)h1", "ss -uln").stdout.contains(":4789"), "the underlay socket is closed")
    }

    /// IPv6 underlay with MTU 1500: the MTU warning, the oversize drop, and a reload that adds
    /// and removes a host, a remote VTEP and a guest on the other host without disturbing the
    /// untouched tunnel.
    @Test func reloadOverIPv6WithTheMTUWarningAndTheOversizeDrop() throws {
        let p = Self.id()
        let base = Self.fabric(p, remote: "fd77::9")
        let lab = OverlayLab(prefix: p, yaml: base, family: "ipv6", mtu: 1500)
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        // validate and up warn: 1500 + 70 bytes of VXLAN over IPv6 do not fit a 1500 underlay.
        let log = (try? String(contentsOfFile: "/var/log/tapestry/\(lab.name)@h1/daemon.log", encoding: .utf8)) ?? ""
        #expect(log.contains("warning") && log.contains("1570"), "the underlay MTU warning: \(log)")
        // validate says the same, located at the host, for both hosts (their namespaces are
        // on this machine); --no-host-checks does not look.
        let validate = Harness.tapestry("validate '\(lab.file)'")
        let warnings = validate.stderr.split(separator: "\n").filter { $0.contains(": warning: ") && $0.contains("1570") }
        #expect(validate.succeeded && warnings.count == 2 && warnings.allSatisfy { $0.hasPrefix("\(lab.file):") },
                "validate warns per host as file:line:column: warning: \(validate.stderr)")
        let skipped = Harness.tapestry("validate '\(lab.file)' --no-host-checks")
        #expect(skipped.succeeded && !skipped.stderr.contains("1570"), "\(skipped.stderr)")
        #expect(lab.ping("\(p)a1", "10.78.0.2"), "untagged across an IPv6 underlay")
        #expect(lab.ping("\(p)a1", "10.78.0.9"), "to the kernel VTEP over IPv6")
        // Too large for the underlay once encapsulated: dropped and counted, never fragmented.
        #expect(!lab.ping("\(p)a1", "10.78.0.2", count: 2, extra: "-s 1472 -M do"))
        #expect(lab.drops("h2", "underlay-mtu-exceeded", host: "h1") >= 2)
        #expect(lab.ping("\(p)a1", "10.78.0.2", count: 2, extra: "-s 1380 -M do"), "1422-byte frames fit 1500 - 56")

        let before = (lab.port("h2", host: "h1")?["rx_frames"] as? NSNumber)?.intValue ?? 0
        // A ping across the untouched tunnel runs through the reloads.
        let pingLog = NSTemporaryDirectory() + "tapestry-\(p)-ping.txt"
        sh("(ip netns exec \(p)a1 ping -c 40 -i 0.1 -W 1 10.78.0.2 > \(pingLog) 2>&1 &)")
        // Reload 1: host h3 (a new tunnel on h1), a second remote VTEP, a guest on h2.
        let reloaded = Self.fabric(p, remote: "fd77::9", extraHost: "  h3: {underlay: fd77::3, netns: \(p)h3}",
                                   extraGuest: "  \(p)c1: {kind: netns, host: h3, nics: [{switch: sw0, port-group: plain, ip: 10.78.0.3/24}]}\n  \(p)b4: {kind: netns, host: h2, nics: [{switch: sw0, port-group: v10, ip: 10.78.10.4/24}]}")
            .replacingOccurrences(of: "- {address: fd77::9, vlans: [none]}", with: "- {address: fd77::9, vlans: [none]}\n        - fd77::99")
        try? reloaded.write(toFile: lab.file, atomically: true, encoding: .utf8)
        let r1 = Harness.tapestry("reload '\(lab.file)' --name \(lab.name) --host h1")
        #expect(r1.succeeded, "\(r1.stdout)\(r1.stderr)")
        let ports1 = (lab.json("ports", host: "h1")["ports"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(ports1.contains("h3") && ports1.contains("vtep-fd77--99") && ports1.contains("h2"), "\(ports1)")
        #expect(!ports1.contains("\(p)c1.eth0") && !ports1.contains("\(p)b4.eth0"), "guests of other hosts are not ports here")
        // Reload 2: back to the first file (h3, the VTEP and the guest go away).
        try? base.write(toFile: lab.file, atomically: true, encoding: .utf8)
        let r2 = Harness.tapestry("reload '\(lab.file)' --name \(lab.name) --host h1")
        #expect(r2.succeeded, "\(r2.stdout)\(r2.stderr)")
        let ports2 = (lab.json("ports", host: "h1")["ports"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(!ports2.contains("h3") && !ports2.contains("vtep-fd77--99") && ports2.contains("h2"), "\(ports2)")
        // The untouched tunnel kept its counters, and the ping through it lost nothing.
        let after = (lab.port("h2", host: "h1")?["rx_frames"] as? NSNumber)?.intValue ?? 0
        #expect(after > before, "h2's counters carried over: \(before) → \(after)")
        for _ in 0..<60 where !(((try? String(contentsOfFile: pingLog, encoding: .utf8)) ?? "").contains("packet loss")) { usleep(200_000) }
        let summary = (try? String(contentsOfFile: pingLog, encoding: .utf8)) ?? ""
        unlink(pingLog)
        #expect(summary.contains(" 0% packet loss"), "no loss across the reloads: \(summary.split(separator: "\n").suffix(2))")
    }

    /// TCP over an IPv6 underlay (MTU 1600): UDP GSO runs with IPv6 UDP checksums, coalesced
    /// on the far host; 32 MiB cross intact both ways, and the guests see no checksum errors.
    @Test func tcpOverAnIPv6UnderlayArrivesIntact() throws {
        let p = Self.id()
        let lab = OverlayLab(prefix: p, yaml: Self.fabric(p, remote: "fd77::9"), family: "ipv6")
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        #expect(lab.ping("\(p)a1", "10.78.0.2"))
        let there = lab.transfer(from: "\(p)a1", to: "\(p)b1", address: "10.78.0.2", bytes: 32 << 20)
        #expect(there.sent.hasPrefix("\(32 << 20) ") && there.sent == there.received, "h1 → h2 over IPv6: \(there)")
        let back = lab.transfer(from: "\(p)b1", to: "\(p)a1", address: "10.78.0.1", bytes: 32 << 20)
        #expect(back.sent.hasPrefix("\(32 << 20) ") && back.sent == back.received, "h2 → h1 over IPv6: \(back)")
        #expect(lab.underlayCounter("rx_coalesced", host: "h2") > 0 && lab.underlayCounter("rx_coalesced", host: "h1") > 0)
        #expect(checksumErrors(in: "\(p)b1").tcp == 0 && checksumErrors(in: "\(p)a1").tcp == 0)
        #expect(lab.underlayCounter("tx_errors", host: "h1") == 0 && lab.underlayCounter("tx_errors", host: "h2") == 0)
    }

    /// An underlay device without checksum offload: Linux ≥ 6.11 sends UDP GSO runs with
    /// checksums computed in software, older kernels refuse them (EIO) and the endpoint turns
    /// runs off and sends datagram by datagram. Either way nothing is lost and TCP arrives
    /// intact.
    @Test func anUnderlayWithoutChecksumOffloadLosesNothing() throws {
        let p = Self.id()
        let lab = OverlayLab(prefix: p, yaml: Self.fabric(p))
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        try #require(lab.exec("\(p)h1", "ethtool -K ul0 tx off").succeeded, "ethtool")
        let there = lab.transfer(from: "\(p)a1", to: "\(p)b1", address: "10.78.0.2", bytes: 16 << 20)
        #expect(there.sent.hasPrefix("\(16 << 20) ") && there.sent == there.received, "h1 → h2: \(there)")
        #expect(lab.underlayCounter("tx_errors", host: "h1") == 0, "\(lab.json("ports", host: "h1")["underlays"] ?? "")")
        #expect(lab.underlayCounter("tx_packets", host: "h1") > (16 << 20) / 1500)
        #expect(checksumErrors(in: "\(p)b1").tcp == 0)
    }

    /// A QEMU guest of a host with `netns:` runs inside that namespace: its TAP is
    /// born there (a `backend: tap` NIC; a vhost-user NIC's path socket needs no namespace:
    /// `VMotionSystemTests`), its QEMU process lives there, and it reaches a netns guest on the
    /// other host across the overlay, both ways; `down` stops it and leaves nothing.
    @Test(.enabled(if: Harness.hasQEMU, "needs qemu-system-x86_64 (Scripts/setup.sh installs it)"))
    func qemuGuestOfANetnsHostRunsInsideItsNamespace() throws {
        let p = Self.id()
        let yaml = """
        name: \(p)fab
        hosts:
          h1: {underlay: 10.77.0.1, netns: \(p)h1}
          h2: {underlay: 10.77.0.2, netns: \(p)h2}
        switches:
          sw0:
            overlay: {vni: 5000}
            port-groups:
              plain: {vlan: none}
        guests:
          \(p)vm: {kind: qemu, host: h1, memory: 256M, nics: [{switch: sw0, port-group: plain, backend: tap, mac: "52:54:00:77:01:09", ip: 10.78.0.19/24}]}
          \(p)b1: {kind: netns, host: h2, nics: [{switch: sw0, port-group: plain, ip: 10.78.0.2/24}]}
        """
        let lab = OverlayLab(prefix: p, yaml: yaml)
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        let qemu = VMSystemTests.qemuProcesses(named: ["\(p)vm"])
        try #require(qemu.count == 1, "one QEMU: \(qemu)")
        let pid = qemu[0].trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
        let identified = sh("ip netns identify \(pid)").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(identified == "\(p)h1", "QEMU \(pid) runs in netns '\(identified)', expected \(p)h1")
        // Its TAP lives in h1's namespace, not in the daemon's.
        let taps = lab.exec("\(p)h1", "ip -o link show type tun").stdout.split(separator: "\n")
            .compactMap { $0.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces) }
        #expect(taps.count == 1 && taps[0].hasPrefix("tp"), "the VM's TAP in \(p)h1: \(taps)")
        for t in taps { #expect(!sh("ip link show \(t)").succeeded, "\(t) is not in the root namespace") }
        // Across the overlay: the netns guest's echo requests reach the VM and its replies
        // come back (both directions).
        var reached = false
        for _ in 0..<10 where !reached { reached = lab.ping("\(p)b1", "10.78.0.19", count: 2); if !reached { sleep(1) } }
        #expect(reached, "h2's netns guest reaches h1's VM across the overlay")
        #expect(lab.fdb(host: "h2").contains { $0.mac == "52:54:00:77:01:09" && $0.port == "h1" }, "the VM's MAC behind h1 on h2")
        // The VM's port on h1 is up and counted.
        let port = lab.port("\(p)vm.eth0", host: "h1")
        #expect(port?["link"] as? String != "down" && ((port?["rx_frames"] as? NSNumber)?.intValue ?? 0) > 0, "\(port ?? [:])")
        #expect(lab.down("h1").succeeded)
        for _ in 0..<50 where !VMSystemTests.qemuProcesses(named: ["\(p)vm"]).isEmpty { usleep(100_000) }
        #expect(VMSystemTests.qemuProcesses(named: ["\(p)vm"]).isEmpty, "QEMU stopped")
        #expect(lab.exec("\(p)h1", "ip -o link show type tun").stdout.isEmpty, "no TAP left in \(p)h1")
    }

    /// Metrics and Wireshark's extcap are keyed by host: two hosts of one topology
    /// on one machine serve /metrics with `host` on every sample, and extcap lists each
    /// host's ports as `tapestry:NAME@HOST/PORT` and captures from one (h1's tunnel to h2).
    @Test(.enabled(if: sh("command -v curl").succeeded, "needs curl"))
    func metricsAndExtcapAreKeyedByHost() throws {
        let p = Self.id()
        let ports = (ObservabilityWiringSystemTests.freePort(udp: false), ObservabilityWiringSystemTests.freePort(udp: false))
        let lab = OverlayLab(prefix: p, yaml: Self.fabric(p), upArguments: ["h1": "--metrics 127.0.0.1:\(ports.0)", "h2": "--metrics 127.0.0.1:\(ports.1)"])
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        for h in ["h1", "h2"] { try #require(lab.up[h]?.succeeded == true, "up --host \(h): \(lab.up[h]?.stderr ?? "")") }
        #expect(lab.ping("\(p)a1", "10.78.0.2"))
        for (host, port, peer) in [("h1", ports.0, "h2"), ("h2", ports.1, "h1")] {
            let text = ObservabilityWiringSystemTests.scrape(port)
            let samples = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
            #expect(!samples.isEmpty && samples.allSatisfy { $0.contains("{host=\"\(host)\"") }, "every sample of \(host) has host first: \(samples.prefix(3))")
            #expect(text.contains("tapestry_topology_info{host=\"\(host)\",topology=\"\(p)fab\"} 1"))
            let tunnel = "tapestry_port_receive_frames_total{host=\"\(host)\",switch=\"sw0\",port=\"\(peer)\",port_group=\"(tunnels)\",kind=\"tunnel\"}"
            let frames = samples.first { $0.hasPrefix(tunnel) }.flatMap { UInt64($0.split(separator: " ").last ?? "") } ?? 0
            #expect(frames > 0, "\(host)'s tunnel to \(peer) counted frames: \(samples.filter { $0.contains("kind=\"tunnel\"") }.prefix(4))")
            if sh("command -v promtool").succeeded {
                let lint = sh("curl -sS 'http://127.0.0.1:\(port)/metrics' | promtool check metrics 2>&1")
                #expect(lint.succeeded && lint.stdout.isEmpty, "\(lint.stdout)")
            }
        }
        // extcap: both hosts' ports, apart.
        let list = Harness.tapestry("extcap --extcap-interfaces").stdout
        for (host, port) in [("h1", "h2"), ("h2", "h1"), ("h1", "\(p)a1.eth0"), ("h2", "\(p)b1.eth0")] {
            #expect(list.contains("interface {value=tapestry:\(p)fab@\(host)/\(port)}{display=Tapestry \(p)fab on host \(host) \(port)"), "\(host)/\(port) in: \(list)")
        }
        // Capturing through extcap from h1's tunnel port to h2: the inner ICMP frames.
        let out = NSTemporaryDirectory() + "tapestry-\(p)-extcap.pcapng"
        defer { unlink(out) }
        // `timeout` passes the SIGINT on to the capture, which then closes its file.
        let pid = sh("timeout 15 '\(Harness.binary)' extcap --extcap-interface 'tapestry:\(p)fab@h1/h2' --capture --fifo \(out) >/dev/null 2>&1 & echo $!")
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        usleep(800_000)
        _ = lab.ping("\(p)a1", "10.78.0.2", count: 3)
        usleep(500_000)
        if let n = Int32(pid) {
            kill(n, SIGINT)
            for _ in 0..<50 where kill(n, 0) == 0 { usleep(100_000) }
        }
        let captured = sh("tcpdump -nn -r \(out) 2>/dev/null").stdout
        #expect(captured.contains("ICMP echo request") && captured.contains("ICMP echo reply") && !captured.contains("4789"), "extcap capture on h1/h2: \(captured.prefix(400))")
        let bad = Harness.tapestry("extcap --extcap-interface 'tapestry:\(p)fab@/h2' --extcap-dlts")
        #expect(!bad.succeeded && bad.stderr.contains("tapestry:NAME@HOST/PORT"), "\(bad.stderr)")
    }

    /// The demo (`Scripts/fabric-lab.sh`) in its non-interactive mode: every check passes and
    /// nothing is left behind.
    @Test func fabricLabDemoPassesItsChecks() {
        let p = Self.id()
        let r = sh("FABRIC_LAB_PREFIX=\(p) TAPESTRY_BIN='\(Harness.binary)' '\(Harness.packageRoot)/Scripts/fabric-lab.sh' --non-interactive", timeout: 180)
        #expect(r.succeeded && r.stdout.contains("every check passed"), "\(r.stdout.suffix(1500))\(r.stderr.suffix(500))")
        #expect(!Harness.namespaces().contains { $0.hasPrefix(p) }, "the lab's namespaces are gone")
        sh("rm -rf '/var/log/tapestry/\(p)fab@h1' '/var/log/tapestry/\(p)fab@h2'")
    }

    /// Interop with Open vSwitch's userspace `type=vxlan` (datapath_type=netdev), started by
    /// the test without systemd (`Scripts/lab/ovs-vtep.sh`): OVS is a remote VTEP of h1.
    @Test(.enabled(if: sh("command -v ovs-vswitchd && command -v ovsdb-server").succeeded, "needs openvswitch-switch (Scripts/setup.sh)"))
    func openVSwitchUserspaceVXLANInteroperates() throws {
        let p = Self.id()
        let yaml = Self.fabric(p, remote: "10.77.0.8")
        let lab = OverlayLab(prefix: p, yaml: yaml, hosts: [])
        try #require(lab.underlay.succeeded, "underlay: \(lab.underlay.stderr)")
        defer { sh("'\(Harness.packageRoot)/Scripts/lab/ovs-vtep.sh' down \(p)") }
        let ovs = sh("'\(Harness.packageRoot)/Scripts/lab/ovs-vtep.sh' up \(p) 10.77.0.1 5000", timeout: 60)
        try #require(ovs.succeeded, "OVS: \(ovs.stdout)\(ovs.stderr)")
        lab.up["h1"] = Harness.tapestry("up '\(lab.file)' --host h1 --detach")
        try #require(lab.up["h1"]?.succeeded == true, "up --host h1: \(lab.up["h1"]?.stderr ?? "")")
        #expect(lab.ping("\(p)a1", "10.78.0.8"), "Tapestry guest → OVS guest (VNI 5000)")
        #expect(lab.ping("\(p)og", "10.78.0.1"), "OVS guest → Tapestry guest")
        #expect(lab.ping("\(p)a1", "10.78.0.8", count: 2, extra: "-s 1472 -M do"), "full-size frames both ways")
        #expect(lab.fdb(host: "h1").contains { $0.mac == "02:00:00:77:00:08" && $0.port == "vtep-10.77.0.8" && $0.vtep == "10.77.0.8" })
        // TCP both ways, intact: OVS reads its packets off a veth, so h1 sends it single
        // datagrams (no UDP GSO runs) with zero UDP checksums.
        let there = lab.transfer(from: "\(p)a1", to: "\(p)og", address: "10.78.0.8", bytes: 8 << 20)
        #expect(there.sent.hasPrefix("\(8 << 20) ") && there.sent == there.received, "Tapestry → OVS: \(there)")
        let back = lab.transfer(from: "\(p)og", to: "\(p)a1", address: "10.78.0.1", bytes: 8 << 20)
        #expect(back.sent.hasPrefix("\(8 << 20) ") && back.sent == back.received, "OVS → Tapestry: \(back)")
    }
}
