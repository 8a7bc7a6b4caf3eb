import Model
import Testing
@testable import VMRunner

/// The QEMU command line of vhost-user NICs, next to TAP NICs.
@Suite struct VhostUserArgvTests {
    let image = GuestImage(kernel: "/img/vmlinux", initrd: "/img/initramfs.cpio.gz", boot: .pvh, kernelVersion: "6.1.0-test")
    let paths = VMPaths(name: "vm1", runDirectory: "/run/tapestry/lab", logDirectory: "/var/log/tapestry")
    let macA = MACAddress("52:54:00:00:0a:01")!, macB = MACAddress("52:54:00:00:0a:02")!, macC = MACAddress("52:54:00:00:0a:03")!

    func values(_ argv: [String], _ flag: String) -> [String] {
        argv.indices.filter { argv[$0] == flag && $0 + 1 < argv.count }.map { argv[$0 + 1] }
    }

    func spec() -> VMSpec {
        VMSpec(name: "vm1", memoryMiB: 384, nics: [
            GuestNIC(mac: macA, backend: .vhostUser(socketPath: "/run/tapestry/lab.vhost/vm1.eth0.sock"), addresses: ["10.0.10.5/24"]),
            GuestNIC(mac: macB, tapFD: 17),
            GuestNIC(mac: macC, backend: .vhostUser(socketPath: "/run/tapestry/lab.vhost/vm1.eth2.sock")),
        ])
    }

    @Test func vhostUserNICsUnderTCG() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .tcg, paths: paths).argv
        #expect(values(argv, "-object") == ["memory-backend-memfd,id=mem,size=384M,share=on"])
        #expect(values(argv, "-numa") == ["node,memdev=mem"])
        #expect(values(argv, "-chardev").filter { $0.hasPrefix("socket,id=vu") } == [
            "socket,id=vu0,path=/run/tapestry/lab.vhost/vm1.eth0.sock,server=on,wait=off",
            "socket,id=vu2,path=/run/tapestry/lab.vhost/vm1.eth2.sock,server=on,wait=off",
        ])
        #expect(values(argv, "-netdev") == ["vhost-user,id=n0,chardev=vu0", "tap,id=n1,fd=3", "vhost-user,id=n2,chardev=vu2"],
                "TAP NICs take the inherited descriptors in order, vhost-user NICs none")
        let devices = values(argv, "-device").filter { $0.hasPrefix("virtio-net-pci") }
        #expect(devices.count == 3)
        for d in [devices[0], devices[2]] {
            for on in ["csum=on", "guest_csum=on", "guest_tso4=on", "guest_tso6=on", "host_tso4=on", "host_tso6=on", "mrg_rxbuf=on", "host_ufo=off"] {
                #expect(d.split(separator: ",").contains(Substring(on)), "\(on) in \(d)")
            }
            #expect(d.hasSuffix(",vectors=0"), "TCG: no MSI-X (QEMU 7.2 crash workaround)")
        }
        #expect(devices[0].contains("netdev=n0,mac=52:54:00:00:0a:01"))
        #expect(!devices[1].contains("csum=off") && !devices[1].contains("vectors"),
                "the TAP NIC keeps its offloads (its TAP has a virtio-net header since the north-south work) and MSI-X")
        #expect(spec().tapDescriptors == [17])
    }

    @Test func kvmKeepsMSIX() {
        let argv = QEMUCommand(spec: spec(), image: image, accel: .kvm, paths: paths).argv
        #expect(!values(argv, "-device").contains { $0.contains("vectors=0") })
    }

    @Test func tapOnlyGuestsHaveNoSharedMemory() {
        let argv = QEMUCommand(spec: VMSpec(name: "vm1", nics: [GuestNIC(mac: macA, tapFD: 5), GuestNIC(mac: macB, tapFD: 6)]),
                               image: image, accel: .tcg, paths: paths).argv
        #expect(values(argv, "-object").isEmpty && values(argv, "-numa").isEmpty)
        #expect(values(argv, "-netdev") == ["tap,id=n0,fd=3", "tap,id=n1,fd=4"])
    }

    @Test func socketPathsAreValidatedAndEscaped() throws {
        #expect(throws: VMError.self) {
            try VMSpec(name: "vm1", nics: [GuestNIC(mac: macA, backend: .vhostUser(socketPath: "/" + String(repeating: "x", count: 120)))]).validate()
        }
        #expect(throws: VMError.self) {
            try VMSpec(name: "vm1", nics: [GuestNIC(mac: macA, backend: .vhostUser(socketPath: ""))]).validate()
        }
        try VMSpec(name: "vm1", nics: [GuestNIC(mac: macA, backend: .vhostUser(socketPath: "/run/tapestry/lab.vhost/vm1.eth0.sock"))]).validate()
        #expect(GuestNIC(mac: macA, backend: .vhostUser(socketPath: "/x.sock")).tapFD == -1)
    }
}
