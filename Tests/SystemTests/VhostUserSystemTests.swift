import Foundation
import Testing
import TestSupport

/// vhost-user ports through the real `tapestry` binary: QEMU guests on their
/// default backend, and a `kind: vhost-user` guest served to DPDK's testpmd.
///
/// QEMU runs under TCG here (boots take seconds), so one topology of two VMs carries every
/// VM check, in order. testpmd (Debian `dpdk-dev`) runs with `--no-huge` (its memory is a
/// memfd it passes over the socket) and ends by itself when its stdin closes; only processes
/// started here are signalled.
@Suite(.serialized, .enabled(if: Harness.enabled, "needs root and /dev/net/tun"))
struct VhostUserSystemTests {
    static var hasTestpmd: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/dpdk-testpmd") }

    /// The `ports --json` row of `port`.
    static func row(_ lab: RunningTopology, _ port: String) -> [String: Any] {
        lab.ports().first { $0["name"] as? String == port } ?? [:]
    }

    static func vhost(_ lab: RunningTopology, _ port: String) -> [String: Any] {
        row(lab, port)["vhost_user"] as? [String: Any] ?? [:]
    }

    static func number(_ v: Any?) -> Int { (v as? NSNumber)?.intValue ?? -1 }

    /// Waits up to `seconds` for `condition`.
    static func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline { if condition() { return true }; usleep(200_000) }
        return condition()
    }

    /// Two QEMU guests on vhost-user (the default backend) and a netns guest: both VMs are
    /// reached from the namespace and from each other, TCP runs both ways between the
    /// namespace and a VM, a capture on a VM's vhost-user port sees its ICMP both ways, and
    /// after `kill -9` of a QEMU the supervisor restarts it and the port reconnects by itself.
    /// `down` leaves no QEMU and no socket directory.
    @Test(.enabled(if: Harness.hasQEMU, "needs qemu-system-x86_64 (Scripts/setup.sh installs it)"))
    func qemuGuestsOnVhostUserForwardReconnectAndAreCaptured() throws {
        let p = Capabilities.uniquePrefix("u")
        let name = "\(p)vu"
        let socketDirectory = "/run/tapestry/\(name).vhost"
        do {
            let lab = RunningTopology(name: name, yaml: """
            name: \(name)
            switches:
              sw0:
                port-groups:
                  lan: {vlan: 10}
            guests:
              \(p)n: {kind: netns, nics: [{switch: sw0, port-group: lan, ip: 10.79.0.1/24}]}
              \(p)a: {kind: qemu, memory: 256M, restart: on-failure, nics: [{switch: sw0, port-group: lan, mac: "52:54:00:79:00:02", ip: 10.79.0.2/24}]}
              \(p)b: {kind: qemu, memory: 256M, nics: [{switch: sw0, port-group: lan, mac: "52:54:00:79:00:03", ip: 10.79.0.3/24}]}
            """)
            try #require(lab.up.succeeded, "up failed: \(lab.up.stderr) \(lab.up.stdout)")

            // The VMs' ports are vhost-user clients of the sockets QEMU serves, connected.
            for vm in ["\(p)a", "\(p)b"] {
                let row = Self.row(lab, "\(vm).eth0"), v = Self.vhost(lab, "\(vm).eth0")
                #expect(row["backend"] as? String == "vhost-user" && row["link"] as? String == "up", "\(row)")
                #expect(v["mode"] as? String == "client" && v["connected"] as? Bool == true, "\(v)")
                #expect(v["socket"] as? String == "\(socketDirectory)/\(vm).eth0.sock")
                var st = stat()
                #expect(lstat("\(socketDirectory)/\(vm).eth0.sock", &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK, "QEMU serves the socket")
            }
            #expect(Self.row(lab, "\(p)n.eth0")["backend"] as? String == "tap")
            let text = Harness.tapestry("ports --name \(name)").stdout
            #expect(text.contains("vhost-user \(p)a.eth0 (sw0): connected; client of \(socketDirectory)/\(p)a.eth0.sock"), "\(text)")

            // Reached from the namespace; the VM has its declared MAC.
            #expect(lab.ping(from: "\(p)n", to: "10.79.0.2", count: 3))
            #expect(lab.ping(from: "\(p)n", to: "10.79.0.3", count: 3))
            #expect(lab.exec("\(p)n", "ip neigh show 10.79.0.2").stdout.contains("52:54:00:79:00:02"))

            // A capture on a vhost-user port: the ICMP both ways, named after the port.
            let pcap = NSTemporaryDirectory() + "tapestry-\(p)-vhost.pcapng"
            defer { unlink(pcap) }
            sh("('\(Harness.binary)' capture --name \(name) --port \(p)a.eth0 --filter icmp -c 6 --duration 20s -w \(pcap) >/dev/null 2>&1 &)")
            usleep(800_000)
            #expect(lab.ping(from: "\(p)n", to: "10.79.0.2", count: 3))
            _ = Self.eventually(10) { sh("tcpdump -nn -r \(pcap) 2>/dev/null").stdout.split(separator: "\n").count >= 6 }
            let captured = sh("tcpdump -nn -r \(pcap) 2>/dev/null").stdout.split(separator: "\n").map(String.init)
            #expect(captured.filter { $0.contains("ICMP echo request") }.count >= 3 && captured.filter { $0.contains("ICMP echo reply") }.count >= 3,
                    "\(captured)")
            if Harness.hasTshark {
                #expect(sh("tshark -r \(pcap) -T fields -e frame.interface_name 2>/dev/null").stdout.contains("\(p)a.eth0"))
            }

            // The two VMs reach each other (from a's console).
            let vmPing = vmExec(name, "\(p)a", "ping -c 3 -W 2 10.79.0.3", timeout: 30) ?? ""
            #expect(vmPing.contains("3 packets received"), "VM a → VM b: \(vmPing.suffix(200))\n\(lab.logTails())")

            // TCP both ways between the namespace and VM a (busybox nc in the VM).
            try exchangeTCPBothWays(lab, netns: "\(p)n", netnsAddress: "10.79.0.1", vm: "\(p)a", vmAddress: "10.79.0.2", bytes: 4_000_000)
            #expect(checksumErrors(in: "\(p)n").tcp == 0)

            // kill -9 of VM a's QEMU: restarted on the same port; the port reconnects by itself.
            let list = ((try? JSONSerialization.jsonObject(with: Data(Harness.tapestry("vm list --name \(name) --json").stdout.utf8))) as? [String: Any])?["vms"] as? [[String: Any]] ?? []
            let pid = (list.first { $0["name"] as? String == "\(p)a" }?["pid"] as? NSNumber)?.int32Value ?? 0
            try #require(pid > 0)
            kill(pid, SIGKILL)
            let start = Date()
            var back = false
            while Date().timeIntervalSince(start) < 90 {
                if lab.exec("\(p)n", "ping -c 1 -W 1 10.79.0.2").succeeded { back = true; break }
            }
            print("vhost-user VM restart: pingable again \(String(format: "%.1f", Date().timeIntervalSince(start))) s after kill -9")
            #expect(back, "the VM came back after kill -9 and its port reconnected")
            let v = Self.vhost(lab, "\(p)a.eth0")
            #expect(Self.number(v["connections"]) >= 2 && Self.number(v["disconnects"]) >= 1 && v["connected"] as? Bool == true, "\(v)")
            #expect((v["resets"] as? [String: Any] ?? [:]).isEmpty, "a QEMU crash is a disconnection, not a reset: \(v)")
            #expect(lab.exec("\(p)n", "ip neigh show 10.79.0.2").stdout.contains("52:54:00:79:00:02"), "same MAC")
            #expect(Self.vhost(lab, "\(p)b.eth0")["connections"] as? NSNumber == 1, "the other VM's port was untouched")
            // deinit: down
        }
        #expect(VMSystemTests.qemuProcesses(named: ["\(p)a", "\(p)b"]).isEmpty, "no stray QEMU after down")
        #expect(!FileManager.default.fileExists(atPath: socketDirectory), "down removed the socket directory")
    }

    /// A `kind: vhost-user` guest served to DPDK's testpmd (a virtio-user client, MAC-swap
    /// forwarding): UDP from a netns guest comes back through the switch with the MACs
    /// swapped and a valid checksum (the port completed it: testpmd negotiates no receive
    /// offloads); a capture on the port, a mirror and `trace` see it like any port. The
    /// socket belongs to the user the file names, and that user reaches it.
    @Test(.enabled(if: hasTestpmd, "needs dpdk-testpmd (Scripts/setup.sh installs dpdk-dev)"))
    func testpmdOnAVhostUserGuestExchangesFramesWithANetnsGuest() throws {
        let p = Capabilities.uniquePrefix("t")
        let name = "\(p)tp"
        let socketDirectory = "/run/tapestry/\(name).vhost"
        let socket = "\(socketDirectory)/\(p)app.eth0.sock"
        let appMAC = "02:00:00:79:01:02", nMAC = "02:00:00:79:01:01"
        do {
            let lab = RunningTopology(name: name, yaml: """
            name: \(name)
            switches:
              sw0:
                port-groups:
                  lan: {vlan: 20}
                  mon: {vlan: 20}
                mirrors:
                  - {name: m0, source: [lan], direction: both, destination: {port-group: mon}}
            guests:
              \(p)n: {kind: netns, nics: [{switch: sw0, port-group: lan, mac: "\(nMAC)", ip: 10.79.1.1/24}]}
              \(p)m: {kind: netns, nics: [{switch: sw0, port-group: mon, ip: 10.79.1.99/24}]}
              \(p)app:
                kind: vhost-user
                socket: {owner: nobody, permissions: "0600"}
                nics: [{switch: sw0, port-group: lan, mac: "\(appMAC)"}]
            """)
            try #require(lab.up.succeeded, "up failed: \(lab.up.stderr) \(lab.up.stdout)")

            // The socket: the file's owner and mode; the directories let that user through.
            var st = stat()
            #expect(lstat(socket, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600, "socket mode")
            #expect(st.st_uid == getpwnam("nobody")!.pointee.pw_uid, "owned by the user the file names")
            #expect(stat(socketDirectory, &st) == 0 && st.st_mode & 0o777 == 0o711)
            #expect(stat("/run/tapestry", &st) == 0 && st.st_mode & 0o001 != 0, "others may pass through /run/tapestry")
            #expect(Self.row(lab, "\(p)app.eth0")["link"] as? String == "no-frontend")
            let connect = sh("runuser -u nobody -- \(Harness.python) -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('\(socket)'); print('connected')\" 2>&1")
            #expect(connect.stdout.contains("connected"), "a non-root frontend reaches the socket: \(connect.stdout)")
            #expect(Self.eventually(5) { Self.number(Self.vhost(lab, "\(p)app.eth0")["disconnects"]) == 1 })

            // testpmd as the frontend: MAC-swap forwarding on its one port. Its stdin is a FIFO
            // this process holds open for writing (close-on-exec, so testpmd holds no writer
            // itself): testpmd runs until that fd is closed below, however slowly a loaded
            // machine runs the steps in between.
            let log = NSTemporaryDirectory() + "tapestry-\(p)-testpmd.log"
            let fifo = NSTemporaryDirectory() + "tapestry-\(p)-testpmd.in"
            defer { unlink(log); unlink(fifo) }
            unlink(fifo)   // one a killed run left
            try #require(mkfifo(fifo, 0o600) == 0, "mkfifo: \(errno)")
            var holder = open(fifo, O_RDWR | O_CLOEXEC)
            try #require(holder >= 0, "open FIFO: \(errno)")
            defer { if holder >= 0 { close(holder) } }
            sh("(timeout 300 dpdk-testpmd -l 0-1 --no-pci --no-huge -m 512 --file-prefix=\(p) "
               + "--vdev 'net_virtio_user0,path=\(socket),queue_size=256,mac=\(appMAC)' -- --forward-mode=macswap --port-topology=loop "
               + "--auto-start --nb-cores=1 --total-num-mbufs=8192 <\(fifo) >\(log) 2>&1 &)")
            try #require(Self.eventually(20) { Self.vhost(lab, "\(p)app.eth0")["connected"] as? Bool == true },
                         "testpmd started the device: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(500) ?? "")")
            #expect(Self.row(lab, "\(p)app.eth0")["link"] as? String == "up")

            // Connected is not yet forwarding: until testpmd has started its port (posted
            // receive buffers) the switch counts transmit-queue-full. Probes (UDP port 9998)
            // go out every half second until one comes back MAC-swapped, for up to 60 s.
            lab.exec("\(p)n", "ip neigh replace 10.79.1.2 lladdr \(appMAC) dev eth0")
            let probe = NSTemporaryDirectory() + "tapestry-\(p)-probe.py"
            defer { unlink(probe) }
            try """
            import socket, time
            r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            r.bind(("eth0", 0)); r.settimeout(0.1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            end = time.time() + 60
            while time.time() < end:
                s.sendto(b"probe", ("10.79.1.2", 9998))
                wait = time.time() + 0.5
                while time.time() < wait:
                    try:
                        f = r.recv(2048)
                    except socket.timeout:
                        continue
                    if f[6:12] == bytes.fromhex("\(appMAC.replacingOccurrences(of: ":", with: ""))") and f[36:38] == (9998).to_bytes(2, "big"):
                        print("forwarding after %.1f s" % (60 - (end - time.time()))); raise SystemExit(0)
            raise SystemExit(1)
            """.write(toFile: probe, atomically: true, encoding: .utf8)
            let ready = lab.exec("\(p)n", "\(Harness.python) \(probe)", timeout: 90)
            print("testpmd: \(ready.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
            try #require(ready.succeeded, "testpmd forwards: \(ready.stdout) \(Self.row(lab, "\(p)app.eth0")) \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(500) ?? "")")

            let pcap = NSTemporaryDirectory() + "tapestry-\(p)-app.pcapng"
            defer { unlink(pcap) }
            sh("('\(Harness.binary)' capture --name \(name) --port \(p)app.eth0 --filter 'udp port 9999' -c 100 --duration 60s -w \(pcap) >/dev/null 2>&1 &)")
            let back = Capture(in: "\(p)n", filter: "udp port 9999 and ether src \(appMAC)", seconds: 120)
            let mirror = Capture(in: "\(p)m", filter: "udp port 9999", seconds: 120)
            usleep(800_000)
            let sent = lab.exec("\(p)n", "\(Harness.python) -c \"import socket, time\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(50):\n  s.sendto(b'tapestry' * 20, ('10.79.1.2', 9999)); time.sleep(0.01)\"")
            #expect(sent.succeeded, "\(sent.stderr)")
            // Until the 50 datagrams are back at the sender (or 20 s: a loaded machine).
            _ = Self.eventually(20) { sh("tcpdump -nn -r \(back.file) 2>/dev/null").stdout.split(separator: "\n").count >= 50 }
            let returned = back.lines()
            #expect(returned.filter { $0.contains("\(appMAC) > \(nMAC)") }.count == 50, "50 datagrams came back MAC-swapped: \(returned.count) \(returned.prefix(2))")
            let mirrored = mirror.lines()
            #expect(mirrored.filter { $0.contains("\(nMAC) > \(appMAC)") }.count == 50 && mirrored.filter { $0.contains("\(appMAC) > \(nMAC)") }.count == 50,
                    "the mirror saw both directions: \(mirrored.count)")
            _ = Self.eventually(10) { sh("tcpdump -nn -r \(pcap) 2>/dev/null").stdout.split(separator: "\n").count >= 100 }
            // Frames from testpmd (ingress at the port) carry the checksum the port completed.
            let fromApp = sh("tcpdump -nn -vv -e -r \(pcap) 'ether src \(appMAC)' 2>/dev/null").stdout
            #expect(fromApp.components(separatedBy: "udp sum ok").count - 1 == 50, "valid UDP checksums from the app: \(fromApp.suffix(300))")
            #expect(sh("tcpdump -nn -e -r \(pcap) 'ether src \(nMAC)' 2>/dev/null").stdout.split(separator: "\n").count == 50, "the capture has the way in")

            let row = Self.row(lab, "\(p)app.eth0"), v = Self.vhost(lab, "\(p)app.eth0")
            #expect(Self.number(row["rx_frames"]) >= 50 && Self.number(row["tx_frames"]) >= 50, "\(row)")
            #expect(Self.number(v["checksummed_in_software"]) >= 50, "partial checksums completed for a frontend without GUEST_CSUM: \(v)")
            #expect((v["resets"] as? [String: Any] ?? [:]).isEmpty, "\(v)")

            // trace explains a frame from the vhost-user port like any other.
            let trace = Harness.tapestry("trace --name \(name) --in \(p)app.eth0 --frame src=\(appMAC),dst=\(nMAC)")
            #expect(trace.stdout.contains("hit on \(p)n.eth0"), "\(trace.stdout)")

            // testpmd leaves (its stdin closes): the port waits for the next frontend.
            close(holder); holder = -1
            #expect(Self.eventually(40) { Self.vhost(lab, "\(p)app.eth0")["connected"] as? Bool == false }, "testpmd left")
            #expect(Self.row(lab, "\(p)app.eth0")["link"] as? String == "no-frontend")
            // deinit: down
        }
        #expect(!FileManager.default.fileExists(atPath: socketDirectory), "down removed the socket directory")
    }

    /// A switch killed with -9 leaves its socket directory behind; the next `down` (or `up`)
    /// removes it, recorded in the state file.
    @Test func aCrashedInstancesSocketDirectoryIsCleanedUp() throws {
        let p = Capabilities.uniquePrefix("k")
        let name = "\(p)vk"
        let socketDirectory = "/run/tapestry/\(name).vhost"
        let lab = RunningTopology(name: name, yaml: """
        name: \(name)
        switches: {sw0: {port-groups: {lan: {vlan: none}}}}
        guests:
          \(p)app: {kind: vhost-user, nics: [{switch: sw0, port-group: lan, mac: "02:00:00:79:02:02"}]}
        """)
        try #require(lab.up.succeeded, "up failed: \(lab.up.stderr)")
        let state = (try? String(contentsOfFile: "/run/tapestry/\(name).state", encoding: .utf8)) ?? ""
        #expect(state.contains("\(name).vhost"), "the state file records the directory: \(state)")
        let pid = try #require(lab.daemonPID())
        kill(pid, SIGKILL)
        _ = Self.eventually(5) { !isRunning(pid) }
        #expect(FileManager.default.fileExists(atPath: "\(socketDirectory)/\(p)app.eth0.sock"), "the crash left the socket")
        let down = Harness.tapestry("down --name \(name)")
        #expect(down.succeeded && down.stdout.contains("vhost-user sockets in \(socketDirectory)"), "\(down.stdout) \(down.stderr)")
        #expect(!FileManager.default.fileExists(atPath: socketDirectory))
    }
}
