import Foundation
import Testing
import TestSupport

/// Runs `command` in QEMU guest `guest` of topology `topology` through its serial console
/// (the console socket under /run/tapestry); see `guestConsoleRun`.
func vmExec(_ topology: String, _ guest: String, _ command: String, timeout: Int = 30) -> String? {
    guestConsoleRun(socket: "/run/tapestry/\(topology).vms/\(guest).console", command: command, timeout: timeout)
}

/// TCP both ways between netns guest `netns` (address `netnsAddress`) and QEMU guest `vm`
/// (address `vmAddress`) of running topology `lab`: `bytes` from the netns guest to the VM
/// (busybox nc in the VM counts them; a sleep holds its stdin open, as busybox nc quits
/// when its stdin ends), then `bytes` from the VM to a counting listener in the netns guest.
/// Records an issue for each direction whose count is not `bytes`.
func exchangeTCPBothWays(_ lab: RunningTopology, netns: String, netnsAddress: String, vm: String, vmAddress: String, bytes: Int,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
    try #require(vmExec(lab.name, vm, "setsid sh -c 'sleep 120 | nc -l -p 5001 | wc -c > /tmp/tcp-in' </dev/null >/dev/null 2>&1 &") != nil,
                 "the VM's console runs commands\n\(lab.logTails())", sourceLocation: sourceLocation)
    let send = lab.exec(netns, "\(Harness.python) -c \"import socket, time\nfor i in range(40):\n  try:\n    s=socket.create_connection(('\(vmAddress)', 5001), timeout=20); break\n  except ConnectionRefusedError: time.sleep(0.5)\ns.sendall(b'x' * \(bytes)); s.close()\"", timeout: 60)
    #expect(send.succeeded, "netns → VM TCP connect and send: \(send.stderr)", sourceLocation: sourceLocation)
    var received: String? = nil
    for _ in 0..<30 {
        received = vmExec(lab.name, vm, "cat /tmp/tcp-in 2>/dev/null")?.trimmingCharacters(in: .whitespacesAndNewlines)
        if received?.hasSuffix("\(bytes)") == true { break }
        sleep(1)
    }
    #expect(received?.hasSuffix("\(bytes)") == true, "the VM received \(received ?? "nothing") of \(bytes) bytes", sourceLocation: sourceLocation)
    let count = NSTemporaryDirectory() + "tapestry-\(vm)-count"
    defer { unlink(count) }
    sh("(ip netns exec \(netns) timeout 60 \(Harness.python) -c \"import socket; l=socket.socket(); l.bind(('0.0.0.0', 5002)); l.listen(1); c,_=l.accept(); n=0\nwhile True:\n  b=c.recv(65536)\n  if not b: break\n  n+=len(b)\nopen('\(count)','w').write(str(n))\" >/dev/null 2>&1 &)")
    usleep(500_000)
    #expect(vmExec(lab.name, vm, "head -c \(bytes) /dev/zero | nc -w 3 \(netnsAddress) 5002", timeout: 60) != nil, sourceLocation: sourceLocation)
    for _ in 0..<20 where (try? String(contentsOfFile: count, encoding: .utf8)) == nil { usleep(250_000) }
    #expect((try? String(contentsOfFile: count, encoding: .utf8)) == "\(bytes)", "the netns guest received the VM's bytes", sourceLocation: sourceLocation)
}

/// The guest's TCP and UDP receive checksum errors (`/proc/net/snmp`, InCsumErrors).
func checksumErrors(in namespace: String) -> (tcp: Int, udp: Int) {
    let snmp = sh("ip netns exec \(namespace) cat /proc/net/snmp").stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
    func field(_ proto: String) -> Int {
        guard let names = snmp.first(where: { $0.first == proto + ":" && Int($0.last ?? "") == nil }),
              let values = snmp.first(where: { $0.first == proto + ":" && Int($0.last ?? "") != nil }),
              let i = names.firstIndex(of: "InCsumErrors"), i < values.count else { return -1 }
        return Int(values[i]) ?? -1
    }
    return (field("Tcp"), field("Udp"))
}

/// iperf3's received bits per second for a `seconds`-long run (client in `from`).
func iperf3(from: String, to server: String, address: String, seconds: Int = 3, extra: String = "") -> Double? {
    sh("ip netns exec \(server) iperf3 -s -1 -D -p 5201 >/dev/null 2>&1")
    usleep(300_000)
    let r = sh("ip netns exec \(from) iperf3 -c \(address) -p 5201 -t \(seconds) -J \(extra)", timeout: TimeInterval(seconds + 30))
    guard let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
          let end = obj["end"] as? [String: Any] else { return nil }
    let sum = (end["sum_received"] ?? end["sum"]) as? [String: Any]
    return (sum?["bits_per_second"] as? NSNumber)?.doubleValue
}

/// A one-file DNS responder (UDP port 53 on argv[1]) answering every A query with
/// `answer` and logging each query's name to `log`; it quits after 30 s.
func dnsResponder(answer: String, log: String) -> String {
    """
    import socket, struct, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 53))
    end = time.time() + 30
    while time.time() < end:
        s.settimeout(max(0.1, end - time.time()))
        try:
            q, peer = s.recvfrom(512)
        except socket.timeout:
            break
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += q[i] + 1
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        answer = b""
        if qtype == 1:
            answer = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("\(answer)")
        s.sendto(q[:2] + b"\\x81\\x80" + struct.pack("!HHHH", 1, 1 if answer else 0, 0, 0) + question + answer, peer)
        with open("\(log)", "a") as f:
            f.write(".".join(labels) + "\\n")
    """
}

/// Checksums that always arrive finished, and offloads across uplinks and VM ports: a guest
/// and an outside host behind a veth uplink whose outside end keeps its default offloads
/// (partial checksums, TSO; GRO on the NIC); two Tapestry instances joined by a veth wire; a
/// QEMU guest and a netns guest, with the VM's offloads on and off.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root, /dev/net/tun and iproute2 (network namespaces and TAP devices)"))
struct NorthSouthSystemTests {
    /// An outside host in namespace `outside` reached through uplink NIC `nic` (a veth whose
    /// peer is the outside host's eth0), with the outside end's offloads as `outsideOffloads`.
    static func outsideHost(nic: String, outside: String, address: String, outsideOffloads: String?, macvlan: Bool = false) -> String {
        let lower = macvlan ? nic + "l" : nic
        var script = """
        set -e
        ip netns add \(outside)
        ip link add \(lower) type veth peer name eth0 netns \(outside)
        ip -n \(outside) addr add \(address) dev eth0
        ip -n \(outside) link set eth0 up; ip -n \(outside) link set lo up
        ip link set \(lower) up
        """
        if let o = outsideOffloads { script += "\nip netns exec \(outside) ethtool -K eth0 \(o) >/dev/null" }
        if macvlan { script += "\nip link add \(nic) link \(lower) type macvlan mode passthru\nip link set \(nic) up" }
        let r = sh(script)
        return r.succeeded ? "" : r.stderr
    }

    @Test(arguments: ["veth, default offloads", "veth, tx off", "macvlan (passthru) on a veth"])
    func guestAndOutsideRunTCPBothWaysThroughAnUplink(_ kind: String) throws {
        let p = Capabilities.uniquePrefix("ns")
        let nic = "\(p)nic", outside = "\(p)out"
        let setup = Self.outsideHost(nic: nic, outside: outside, address: "10.81.0.200/24",
                                     outsideOffloads: kind.contains("tx off") ? "tx off" : nil, macvlan: kind.hasPrefix("macvlan"))
        defer { sh("ip netns del \(outside) 2>/dev/null; ip link del \(nic) 2>/dev/null; ip link del \(nic)l 2>/dev/null") }
        try #require(setup.isEmpty, "setup: \(setup)")
        let lab = RunningTopology(name: "\(p)ns", yaml: """
        name: \(p)ns
        switches:
          sw0:
            uplinks: {nics: [\(nic)]}
            port-groups:
              lan: {vlan: none}
        guests:
          \(p)g: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.81.0.1/24}]}
        """)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)g", to: "10.81.0.200", count: 2), "warm-up ping")
        let before = checksumErrors(in: "\(p)g")
        let out = iperf3(from: "\(p)g", to: outside, address: "10.81.0.200")
        let back = iperf3(from: "\(p)g", to: outside, address: "10.81.0.200", extra: "-R")
        let udp = iperf3(from: "\(p)g", to: outside, address: "10.81.0.200", seconds: 2, extra: "-u -b 200M -R")
        let after = checksumErrors(in: "\(p)g")
        #expect((out ?? 0) > 1e8, "guest → outside: \(out ?? 0) bit/s")
        #expect((back ?? 0) > 1e8, "outside → guest: \(back ?? 0) bit/s")
        #expect((udp ?? 0) > 1e6, "UDP outside → guest: \(udp ?? 0) bit/s")
        #expect(after.tcp == before.tcp && after.udp == before.udp && after.tcp >= 0, "no checksum errors in the guest: \(before) → \(after)")
        print("north-south \(kind): guest → outside \(String(format: "%.2f", (out ?? 0) / 1e9)) Gb/s, outside → guest \(String(format: "%.2f", (back ?? 0) / 1e9)) Gb/s")
    }

    /// Two Tapestry instances joined by a veth "wire" (each end an uplink): TCP between their
    /// guests, both ways, with the wire's default offloads.
    @Test func twoInstancesJoinedByAVethWireRunTCP() throws {
        let p = Capabilities.uniquePrefix("wi")
        sh("ip link add \(p)a type veth peer name \(p)b && ip link set \(p)a up && ip link set \(p)b up")
        defer { sh("ip link del \(p)a 2>/dev/null") }
        func yaml(_ side: String, _ nic: String, _ ip: String) -> String {
            "name: \(p)\(side)\nswitches:\n  sw0:\n    uplinks: {nics: [\(nic)]}\n    port-groups:\n      lan: {vlan: 10}\nguests:\n  \(p)\(side)g: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: \(ip)}]}\n"
        }
        let a = RunningTopology(name: "\(p)x", yaml: yaml("x", "\(p)a", "10.82.0.1/24"))
        let b = RunningTopology(name: "\(p)y", yaml: yaml("y", "\(p)b", "10.82.0.2/24"))
        try #require(a.up.succeeded && b.up.succeeded, "up failed: \(a.up.stderr) \(b.up.stderr)")
        try #require(a.ping(from: "\(p)xg", to: "10.82.0.2", count: 2), "ping across the wire (VLAN 10 tagged on it)")
        let there = iperf3(from: "\(p)xg", to: "\(p)yg", address: "10.82.0.2")
        let back = iperf3(from: "\(p)xg", to: "\(p)yg", address: "10.82.0.2", extra: "-R")
        #expect((there ?? 0) > 1e8 && (back ?? 0) > 1e8, "\(there ?? 0), \(back ?? 0) bit/s")
        #expect(checksumErrors(in: "\(p)yg").tcp == 0 && checksumErrors(in: "\(p)xg").tcp == 0)
    }

    /// A QEMU guest and a netns guest run TCP and UDP both ways (busybox nc in the VM), with
    /// the VM's offloads on, and again with `offloads: false`; on a TAP and on vhost-user.
    @Test(.enabled(if: Harness.hasQEMU, "needs qemu-system-x86_64 (Scripts/setup.sh installs it)"),
          arguments: [("tap", true), ("tap", false), ("vhost-user", true), ("vhost-user", false)])
    func aVMAndANetnsGuestRunTCPAndUDPBothWays(_ backend: String, _ offloads: Bool) throws {
        let p = Capabilities.uniquePrefix((backend == "tap" ? "t" : "u") + (offloads ? "o" : "f"))
        let name = "\(p)vm"
        let lab = RunningTopology(name: name, yaml: """
        name: \(name)
        switches:
          sw0:
            port-groups:
              lan: {vlan: 10}
        guests:
          \(p)n: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.83.0.1/24}]}
          \(p)v: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: lan, ip: 10.83.0.2/24, backend: \(backend), offloads: \(offloads)}]}
        """)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)n", to: "10.83.0.2", count: 3), "ping the VM")
        try exchangeTCPBothWays(lab, netns: "\(p)n", netnsAddress: "10.83.0.1", vm: "\(p)v", vmAddress: "10.83.0.2", bytes: 4_000_000)
        // UDP both ways: the VM's busybox has no UDP nc, so its nslookup asks a DNS responder
        // in the netns guest (query VM → netns, answer netns → VM).
        let dns = NSTemporaryDirectory() + "tapestry-\(p)-dns.py"
        let queries = NSTemporaryDirectory() + "tapestry-\(p)-queries"
        defer { unlink(dns); unlink(queries) }
        try dnsResponder(answer: "10.83.0.77", log: queries).write(toFile: dns, atomically: true, encoding: .utf8)
        sh("(ip netns exec \(p)n timeout 60 \(Harness.python) \(dns) 10.83.0.1 >/dev/null 2>&1 &)")
        usleep(500_000)
        let lookup = vmExec(name, "\(p)v", "nslookup probe.tapestry.test 10.83.0.1", timeout: 30) ?? ""
        #expect(lookup.contains("10.83.0.77"), "the VM's DNS query and its answer crossed: \(lookup.suffix(200))")
        #expect(((try? String(contentsOfFile: queries, encoding: .utf8)) ?? "").contains("probe.tapestry.test"), "the netns guest got the VM's UDP")
        #expect(lab.drops(port: "\(p)v.eth0", reason: "offload-not-supported") == 0)
        #expect(checksumErrors(in: "\(p)n").tcp == 0 && checksumErrors(in: "\(p)n").udp == 0)
    }

    /// A capture of an uplink shows a GRO super-frame as it is: cut at the snap length, with
    /// its original length.
    @Test(.enabled(if: Harness.hasTshark, "needs tshark"))
    func aCaptureShowsAGSOFrameAsItIs() throws {
        let p = Capabilities.uniquePrefix("cg")
        let nic = "\(p)nic", outside = "\(p)out"
        let setup = Self.outsideHost(nic: nic, outside: outside, address: "10.84.0.200/24", outsideOffloads: nil)
        defer { sh("ip netns del \(outside) 2>/dev/null; ip link del \(nic) 2>/dev/null") }
        try #require(setup.isEmpty, "setup: \(setup)")
        sh("ethtool -K \(nic) gro on")
        let lab = RunningTopology(name: "\(p)cg", yaml: """
        name: \(p)cg
        switches:
          sw0:
            uplinks: {nics: [\(nic)]}
            port-groups:
              lan: {vlan: none}
        guests:
          \(p)g: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.84.0.1/24}]}
        """)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        try #require(lab.ping(from: "\(p)g", to: "10.84.0.200", count: 2))
        let file = NSTemporaryDirectory() + "tapestry-\(p)-gso.pcapng"
        defer { unlink(file) }
        sh("('\(Harness.binary)' capture --name \(p)cg --uplink \(nic) --direction in --duration 5s -w \(file) >/dev/null 2>&1 &)")
        usleep(800_000)
        _ = iperf3(from: "\(p)g", to: outside, address: "10.84.0.200", seconds: 2, extra: "-R")
        sleep(4)
        let rows = sh("tshark -r \(file) -T fields -e frame.len -e frame.cap_len 2>/dev/null").stdout.split(separator: "\n")
            .map { $0.split(separator: "\t").compactMap { Int($0) } }
        let big = rows.filter { $0.count == 2 && $0[0] > 9242 }
        #expect(!big.isEmpty, "GRO super-frames in the capture (\(rows.count) frames)")
        #expect(big.allSatisfy { $0[1] < $0[0] && $0[1] <= 9242 }, "cut at the snap length, original length kept: \(big.prefix(3))")
    }
}
