import Foundation
import Model
import Testing
@testable import VMRunner

/// Pure parts of the VM runner: no QEMU, no root.
@Suite struct AccelerationTests {
    /// (flags, /dev/kvm usable, PVM?) → accelerator. The PVM row is this project's machines:
    /// a device node that opens, no vmx/svm.
    @Test(arguments: [
        (["fpu", "vmx", "sse2"], true, false, Accel.kvm),
        (["fpu", "svm"], true, nil, Accel.kvm),
        (["fpu", "sse2", "hypervisor"], true, true, Accel.tcg),   // nested PVM: /dev/kvm present, no vmx
        (["fpu", "sse2", "hypervisor"], true, false, Accel.tcg),  // no hardware virtualisation
        (["fpu", "vmx"], false, false, Accel.tcg),                // no usable /dev/kvm
        (["fpu", "vmx"], true, true, Accel.tcg),                  // PVM even with vmx shown
        ([], false, nil, Accel.tcg),
    ] as [([String], Bool, Bool?, Accel)])
    func decision(_ flags: [String], _ device: Bool, _ pvm: Bool?, _ expected: Accel) {
        let d = Accel.decide(cpuFlags: Set(flags), kvmDeviceUsable: device, hypervisorIsPVM: pvm)
        #expect(d.accel == expected)
        #expect(d.reason.hasPrefix(expected == .kvm ? "KVM" : "TCG"))
    }

    @Test func reasonsNameTheCause() {
        #expect(Accel.decide(cpuFlags: ["sse2"], kvmDeviceUsable: true, hypervisorIsPVM: true).reason.contains("no vmx/svm"))
        #expect(Accel.decide(cpuFlags: ["vmx"], kvmDeviceUsable: true, hypervisorIsPVM: true).reason.contains("PVM"))
        #expect(Accel.decide(cpuFlags: ["svm"], kvmDeviceUsable: false, hypervisorIsPVM: false).reason.contains("/dev/kvm"))
    }

    @Test func readsFlagsFromCPUInfo() {
        let text = """
        processor\t: 0
        model name\t: Some CPU
        flags\t\t: fpu vme vmx sse2
        bugs\t\t: spectre_v1

        processor\t: 1
        flags\t\t: fpu vme vmx sse2
        """
        #expect(Accel.cpuFlags(fromCPUInfo: text) == ["fpu", "vme", "vmx", "sse2"])
        #expect(Accel.cpuFlags(fromCPUInfo: "") == [])
    }

    /// The probe on this machine agrees with the pure decision over the same inputs.
    @Test func probeIsConsistent() {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Accel.cpuFlags(fromCPUInfo: cpuinfo)
        let probed = Accel.probe()
        if !flags.contains("vmx") && !flags.contains("svm") { #expect(probed.accel == .tcg) }
        if FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") { #expect(probed.accel == .tcg) }
    }
}

@Suite struct QEMUCommandTests {
    let image = GuestImage(kernel: "/img/vmlinux", initrd: "/img/initramfs.cpio.gz", boot: .pvh, kernelVersion: "6.1.0-56-amd64")
    let paths = VMPaths(name: "web1", runDirectory: "/run/tapestry/lab", logDirectory: "/var/log/tapestry")

    func spec() -> VMSpec {
        VMSpec(name: "web1", memoryMiB: 384, cpus: 2, nics: [
            GuestNIC(mac: MACAddress("52:54:00:00:0a:01")!, tapFD: 17, addresses: ["10.0.10.5/24"]),
            GuestNIC(mac: MACAddress("52:54:00:00:14:01")!, tapFD: 9, addresses: ["10.0.20.5/24", "10.0.21.5/24"], mtu: 9000),
        ], gateway: "10.0.10.1")
    }

    /// The value following `flag` each time it occurs.
    func values(_ argv: [String], _ flag: String) -> [String] {
        argv.indices.filter { argv[$0] == flag && $0 + 1 < argv.count }.map { argv[$0 + 1] }
    }

    @Test func basicFlags() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: paths).argv
        #expect(argv.first == "qemu-system-x86_64")
        #expect(values(argv, "-name") == ["web1"])
        #expect(values(argv, "-accel") == ["tcg"])
        #expect(values(argv, "-m") == ["384"])
        #expect(values(argv, "-smp") == ["2"])
        #expect(values(argv, "-kernel") == ["/img/vmlinux"])
        #expect(values(argv, "-initrd") == ["/img/initramfs.cpio.gz"])
        #expect(values(argv, "-qmp") == ["unix:/run/tapestry/lab/web1.qmp,server=on,wait=off"])
        #expect(values(argv, "-pidfile") == ["/run/tapestry/lab/web1.pid"])
        #expect(values(argv, "-chardev") == ["socket,id=ser0,path=/run/tapestry/lab/web1.console,server=on,wait=off,logfile=/var/log/tapestry/web1.console.log,logappend=on"])
        #expect(values(argv, "-serial") == ["chardev:ser0"])
        #expect(argv.contains("-nodefaults") && argv.contains("-no-user-config"))
        #expect(values(argv, "-display") == ["none"])
        #expect(!argv.contains("-cpu"))
    }

    @Test func kvmUsesTheHostCPU() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .kvm, paths: paths).argv
        #expect(values(argv, "-accel") == ["kvm"])
        #expect(values(argv, "-cpu") == ["host"])
    }

    /// NIC i's TAP is fd 3+i in QEMU, whatever the caller's descriptor numbers; virtio-net's
    /// offloads on, unless the NIC says `offloads: false`, which turns every one off.
    @Test func nicsUseFixedDescriptorsAndMACs() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: paths).argv
        #expect(values(argv, "-netdev") == ["tap,id=n0,fd=3", "tap,id=n1,fd=4"])
        let devices = values(argv, "-device").filter { $0.hasPrefix("virtio-net-pci") }
        #expect(devices == ["virtio-net-pci,netdev=n0,mac=52:54:00:00:0a:01,romfile=", "virtio-net-pci,netdev=n1,mac=52:54:00:00:14:01,romfile="],
                "offloads on: QEMU's defaults")
        var noOffloads = spec()
        noOffloads.nics[1].offloads = false
        let off = values(QEMUCommand(spec: noOffloads, image: image, accel: .tcg, paths: paths).argv, "-device").filter { $0.hasPrefix("virtio-net-pci") }
        #expect(off[0] == devices[0], "the other NIC keeps its offloads")
        for offload in ["csum", "gso", "guest_csum", "guest_tso4", "guest_tso6", "guest_ecn", "host_tso4", "host_tso6", "host_ecn"] {
            #expect(off[1].split(separator: ",").contains("\(offload)=off"), "\(offload)")
        }
    }

    @Test func panicIsAFailure() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: paths).argv
        #expect(values(argv, "-action") == ["panic=exit-failure"])
        #expect(values(argv, "-device").contains("pvpanic"))
    }

    @Test func kernelCommandLine() {
        let line = QEMUCommand.kernelCommandLine(for: spec())
        #expect(line == "console=ttyS0 quiet panic=-1 tapestry.hostname=web1 tapestry.macs=52:54:00:00:0a:01,52:54:00:00:14:01 "
            + "tapestry.ip=eth0=10.0.10.5/24,eth1=10.0.20.5/24,eth1=10.0.21.5/24 tapestry.mtu=eth1=9000 tapestry.gw=10.0.10.1")
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: paths).argv
        #expect(values(argv, "-append") == [line])
        let bare = QEMUCommand.kernelCommandLine(for: VMSpec(name: "x", extraKernelArguments: ["tapestry.ip=eth0.10=10.1.0.1/24"]))
        #expect(bare == "console=ttyS0 quiet panic=-1 tapestry.hostname=x tapestry.ip=eth0.10=10.1.0.1/24")
    }

    /// A comma in a path is doubled inside QEMU's option syntax.
    @Test func commasInPathsAreEscaped() {
        let odd = VMPaths(name: "web1", runDirectory: "/run/a,b")
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: odd).argv
        #expect(values(argv, "-qmp") == ["unix:/run/a,,b/web1.qmp,server=on,wait=off"])
    }
}

@Suite struct VMSpecTests {
    let mac = MACAddress("52:54:00:00:0a:01")!

    @Test func acceptsAGoodSpec() throws {
        try VMSpec(name: "web-1_a", nics: [GuestNIC(mac: mac, tapFD: 5, addresses: ["10.0.0.1/24"], mtu: 1500)], gateway: "10.0.0.254").validate()
    }

    @Test func reportsEveryProblem() {
        let bad = VMSpec(name: "bad name", memoryMiB: 8, cpus: 0, nics: [
            GuestNIC(mac: MACAddress("01:00:5e:00:00:01")!, tapFD: -1, addresses: ["10.0.0.1", "300.0.0.1/24", "10.0.0.1/33"], mtu: 20),
            GuestNIC(mac: mac, tapFD: 4), GuestNIC(mac: mac, tapFD: 5),
        ], gateway: "10.0.0", extraKernelArguments: ["a b"])
        do {
            try bad.validate()
            Issue.record("validate accepted a bad spec")
        } catch VMError.invalidSpec(_, let problems) {
            #expect(problems.count == 12, "\(problems)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// A host's namespace name goes into /run/netns/NAME: a plain name only.
    @Test func networkNamespaceIsAPlainName() throws {
        try VMSpec(name: "vm", networkNamespace: "lab-h1").validate()
        for bad in ["", "..", "a/b", "../etc"] {
            #expect(throws: VMError.self, "\(bad)") { try VMSpec(name: "vm", networkNamespace: bad).validate() }
        }
    }

    @Test func socketPathsMustFit() {
        let long = VMPaths(name: "web1", runDirectory: "/run/" + String(repeating: "x", count: 100))
        #expect(throws: VMError.self) { try long.validate() }
    }
}

@Suite struct RestartPolicyTests {
    @Test(arguments: [
        (RestartPolicy.never, ProcessExit(code: 1), false),
        (.never, ProcessExit(signal: 9), false),
        (.onFailure, ProcessExit(code: 0), false),
        (.onFailure, ProcessExit(code: 1), true),
        (.onFailure, ProcessExit(signal: 9), true),
        (.always, ProcessExit(code: 0), true),
        (.always, ProcessExit(signal: 15), true),
    ])
    func decision(_ policy: RestartPolicy, _ exit: ProcessExit, _ expected: Bool) {
        #expect(policy.restarts(after: exit, stopRequested: false) == expected)
        // A stop the user asked for is never followed by a restart.
        #expect(policy.restarts(after: exit, stopRequested: true) == false)
    }

    @Test func policyNamesMatchTheTopologyFile() {
        #expect(RestartPolicy(rawValue: "on-failure") == .onFailure)
        #expect(RestartPolicy.allCases.map(\.rawValue) == ["never", "on-failure", "always"])
    }

    @Test func decodesWaitStatuses() {
        #expect(ProcessExit(waitStatus: 0) == ProcessExit(code: 0))
        #expect(ProcessExit(waitStatus: 1 << 8) == ProcessExit(code: 1))
        #expect(ProcessExit(waitStatus: 9) == ProcessExit(signal: 9))
        #expect(ProcessExit(waitStatus: 0x80 | 11) == ProcessExit(signal: 11))  // core dumped
        #expect(!ProcessExit(code: 0).isFailure && ProcessExit(code: 2).isFailure && ProcessExit(signal: 15).isFailure)
        #expect(ProcessExit(signal: 9).description == "killed by signal 9 (SIGKILL)")
        #expect(ProcessExit(code: 3).description == "exited with status 3")
    }

    @Test func backoffDoublesToTheCap() {
        let b = Backoff()
        #expect((1...8).map { b.delay(attempt: $0) } == [1, 2, 4, 8, 16, 30, 30, 30])
        #expect(b.delay(attempt: 1000) == 30)
    }

    /// A streak of quick failures climbs; a run longer than `resetAfter` starts over.
    @Test func backoffStreakResetsAfterAHealthyRun() {
        let b = Backoff(initial: 1, maximum: 30, resetAfter: 60)
        var attempt = 0
        var delays: [TimeInterval] = []
        for uptime in [5.0, 5, 5, 120, 5] {
            attempt = b.nextAttempt(previous: attempt, uptime: uptime)
            delays.append(b.delay(attempt: attempt))
        }
        #expect(delays == [1, 2, 4, 1, 2])
    }

    @Test func statusEncodesStableKeys() throws {
        let s = VMStatus(name: "vm1", state: .backingOff, pid: nil, accel: .tcg, uptime: nil, bootTime: 4.2, restarts: 2,
                         lastExit: ProcessExit(signal: 9), lastError: "QEMU killed by signal 9 (SIGKILL)", restartIn: 1.5,
                         consoleSocket: "/run/x.console", consoleLog: "/var/log/x.console.log")
        let data = try JSONEncoder().encode(s)
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(obj["state"] as? String == "backing-off")
        #expect(obj["accel"] as? String == "tcg")
        #expect((obj["lastExit"] as? [String: Any])?["signal"] as? Int == 9)
        #expect(try JSONDecoder().decode(VMStatus.self, from: data) == s)
    }
}

@Suite struct QMPParsingTests {
    @Test func greeting() throws {
        let line = #"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}"#
        guard case .greeting(let v) = try QMPMessage.parse(line) else { Issue.record("not a greeting"); return }
        #expect(v == "7.2.22")
    }

    @Test func returnErrorAndEvent() throws {
        guard case .success(let id, let value) = try QMPMessage.parse(#"{"return": {"status": "running", "running": true}, "id": "tapestry-2"}"#) else {
            Issue.record("not a return"); return
        }
        #expect(id == "tapestry-2")
        #expect((value as? [String: Any])?["status"] as? String == "running")
        guard case .failure(_, let cls, let desc) = try QMPMessage.parse(#"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#) else {
            Issue.record("not an error"); return
        }
        #expect(cls == "CommandNotFound" && desc.contains("nope"))
        guard case .event(let name) = try QMPMessage.parse(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}"#) else {
            Issue.record("not an event"); return
        }
        #expect(name == "POWERDOWN")
        guard case .success(_, let empty) = try QMPMessage.parse(#"{"return": {}}"#) else { Issue.record("not a return"); return }
        #expect((empty as? [String: Any])?.isEmpty == true)
    }

    @Test func rejectsGarbage() {
        #expect(throws: QMPError.self) { try QMPMessage.parse("not json") }
        #expect(throws: QMPError.self) { try QMPMessage.parse("[1, 2]") }
        #expect(throws: QMPError.self) { try QMPMessage.parse(#"{"something": 1}"#) }
    }
}

@Suite struct GuestImageTests {
    @Test func parsesScriptOutput() {
        let out = "kernel=/c/vmlinux\ninitrd=/c/initramfs.cpio.gz\nboot=pvh\nversion=6.1.0-56-amd64\n"
        #expect(GuestImage.parse(scriptOutput: out) == GuestImage(kernel: "/c/vmlinux", initrd: "/c/initramfs.cpio.gz", boot: .pvh, kernelVersion: "6.1.0-56-amd64"))
        #expect(GuestImage.parse(scriptOutput: "kernel=/c/bzImage\ninitrd=/i\nboot=bzimage\nversion=v\n")?.boot == .bzimage)
        #expect(GuestImage.parse(scriptOutput: "kernel=/c/vmlinux\ninitrd=/i\n") == nil)
        #expect(GuestImage.parse(scriptOutput: "kernel=/k\ninitrd=/i\nboot=floppy\nversion=v\n") == nil)
    }

    /// A build in .build/debug finds the script in the checkout above it.
    @Test func candidatesWalkUpFromTheExecutable() {
        let c = GuestImage.candidateScripts(explicit: "/x/g.sh", environment: ["TAPESTRY_GUEST_IMAGE_SCRIPT": "/env/g.sh"],
                                            executable: "/src/tapestry/.build/debug/tapestry", currentDirectory: "/home/u")
        #expect(c.prefix(2) == ["/x/g.sh", "/env/g.sh"])
        #expect(c.contains("/src/tapestry/Scripts/guest-image.sh"))
        #expect(c.contains("/home/u/Scripts/guest-image.sh"))
        #expect(c.firstIndex(of: "/src/tapestry/Scripts/guest-image.sh")! < c.firstIndex(of: "/home/u/Scripts/guest-image.sh")!)
    }

    /// The script in this checkout is found from the current directory.
    @Test func locatesThisCheckoutsScript() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        #expect(try GuestImage.locateScript(explicit: root + "/Scripts/guest-image.sh") == root + "/Scripts/guest-image.sh")
    }
}

@Suite struct ConsoleLogTests {
    @Test func readyMarkerNeedsTheExactNameAndALineEnd() {
        let marker = Array("TAPESTRY-GUEST-READY name=web1".utf8)
        #expect(ReadyMarkerScanner.containsMarker(Array("boot\r\nTAPESTRY-GUEST-READY name=web1\r\n".utf8), marker: marker))
        #expect(ReadyMarkerScanner.containsMarker(Array("TAPESTRY-GUEST-READY name=web1\n".utf8), marker: marker))
        #expect(!ReadyMarkerScanner.containsMarker(Array("TAPESTRY-GUEST-READY name=web10\r\n".utf8), marker: marker))
        #expect(!ReadyMarkerScanner.containsMarker(Array("TAPESTRY-GUEST-READY name=web1".utf8), marker: marker))
        #expect(!ReadyMarkerScanner.containsMarker(Array("TAPESTRY-GUEST-READY name=web2\r\n".utf8), marker: marker))
    }

    /// The scanner reads only what was appended after its start offset (an earlier boot's
    /// marker in the same log does not count) and finds a marker split across two scans.
    @Test func scannerIsIncremental() throws {
        let path = NSTemporaryDirectory() + "vmrunner-scan-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(path) }
        try "TAPESTRY-GUEST-READY name=vm1\r\nold boot\r\n".write(toFile: path, atomically: false, encoding: .utf8)
        let start = UInt64(try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int)
        var scanner = ReadyMarkerScanner(path: path, offset: start, name: "vm1")
        var found = scanner.scan()
        #expect(!found)
        let h = try #require(FileHandle(forWritingAtPath: path))
        try h.seekToEnd()
        h.write(Data("new boot\r\nTAPESTRY-GUEST-RE".utf8))
        found = scanner.scan()
        #expect(!found)
        h.write(Data("ADY name=vm1\r\n".utf8))
        try h.close()
        found = scanner.scan()
        #expect(found)
    }

    @Test func tailsDropEscapesAndCarriageReturns() throws {
        let path = NSTemporaryDirectory() + "vmrunner-tail-\(getpid()).log"
        defer { unlink(path) }
        let lines = (1...30).map { "line \($0)\r" } + ["vm1:/# \u{1B}[6n"]
        try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
        let tail = tailLines(of: path, count: 3)
        #expect(tail == ["line 29", "line 30", "vm1:/# "])
    }
}
