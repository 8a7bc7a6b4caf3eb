/// The QEMU command line for one guest: a pure function of the spec, the image, the
/// accelerator and the paths, so every flag is unit-tested without QEMU.
///
/// ```
/// qemu-system-x86_64 -name web1 -machine pc -accel tcg -m 256 -smp 1
///   -nodefaults -no-user-config -display none
///   -kernel vmlinux -initrd initramfs.cpio.gz -append "console=ttyS0 quiet panic=-1 tapestry.…"
///   -chardev socket,id=ser0,path=RUN/web1.console,server=on,wait=off,logfile=LOG/web1.console.log,logappend=on
///   -serial chardev:ser0
///   -qmp unix:RUN/web1.qmp,server=on,wait=off   -pidfile RUN/web1.pid
///   -device pvpanic -action panic=exit-failure
///   -netdev tap,id=n0,fd=3
///   -device virtio-net-pci,netdev=n0,mac=…,romfile=[,csum=off,gso=off,… with offloads: false]
/// ```
/// Decisions:
/// - `-machine pc` (i440fx): ACPI (the power button for a graceful stop) and PCI for
///   virtio-net; q35's PCIe brings nothing a busybox guest uses and costs boot time under TCG.
/// - The TAP is opened with IFF_VNET_HDR and the NIC keeps virtio-net's offloads (csum, gso,
///   guest/host TSO4/6, ECN): a guest's TCP crosses the TAP as 64 KiB GSO frames with partial
///   checksums, described by the header, and the switch's AF_PACKET port on the TAP netdev
///   sends and receives them whole. (QEMU takes the vnet-header mode from the descriptor
///   itself: `vnet_hdr=` is rejected next to `fd=`.) `offloads: false` turns every one off.
/// - `romfile=` (empty): no iPXE option ROM; the kernel is loaded directly.
/// - The serial port is a chardev socket server with a log file: the log keeps everything the
///   guest printed (the READY marker is read from it) whether or not anyone is attached, and
///   `tapestry vm console` connects to the socket. QEMU serves one console client at a time.
/// - pvpanic + `-action panic=exit-failure`: a guest kernel panic ends QEMU with status 1, a
///   failure for the restart policy. A guest `reboot` reboots inside the same QEMU process.
/// - KVM gets `-cpu host`; TCG keeps QEMU's default CPU model.
/// - A vhost-user NIC (`NICBackend.vhostUser`): the guest's RAM is a shared memfd
///   (`-object memory-backend-memfd,…,share=on -numa node,memdev=mem`), QEMU serves the NIC's
///   socket (`-chardev socket,…,server=on,wait=off`, so QEMU never waits for the switch and a
///   switch restart reconnects), `-netdev vhost-user`, and the NIC's offloads are on.
///   Under TCG the device gets `vectors=0` (no MSI-X): QEMU 7.2 segfaults in
///   `msix_set_vector_notifiers` when a vhost-user virtio-net device starts with MSI-X under
///   TCG (measured on these machines); the guest then uses legacy INTx interrupts.
///   Delete the workaround once the QEMU in use no longer crashes without it; KVM keeps MSI-X.
public struct QEMUCommand: Sendable, Equatable {
    /// NIC i's TAP is descriptor `firstNICDescriptor + i` in QEMU (after stdin/out/err).
    public static let firstNICDescriptor: Int32 = 3

    /// argv[0]: the QEMU binary (a path, or a name looked up on PATH when spawning).
    public var executable: String
    /// argv[1…].
    public var arguments: [String]

    public var argv: [String] { [executable] + arguments }

    public init(spec: VMSpec, image: GuestImage, accel: Accel, paths: VMPaths, executable: String = "qemu-system-x86_64") {
        self.executable = executable
        var a: [String] = [
            "-name", spec.name,
            "-machine", "pc",
            "-accel", accel.rawValue,
        ]
        if accel == .kvm { a += ["-cpu", "host"] }
        a += [
            "-m", "\(spec.memoryMiB)",
            "-smp", "\(spec.cpus)",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", image.kernel,
            "-initrd", image.initrd,
            "-append", Self.kernelCommandLine(for: spec),
            "-chardev", "socket,id=ser0,path=\(Self.escaped(paths.consoleSocket)),server=on,wait=off,logfile=\(Self.escaped(paths.consoleLog)),logappend=on",
            "-serial", "chardev:ser0",
            "-qmp", "unix:\(Self.escaped(paths.qmpSocket)),server=on,wait=off",
            "-pidfile", paths.pidFile,
            "-device", "pvpanic",
            "-action", "panic=exit-failure",
        ]
        if spec.network != nil {
            // The network configuration file (written by the supervisor before each start).
            a += ["-fw_cfg", "name=\(GuestNetworkConfig.fwCfgName),file=\(Self.escaped(paths.networkConfig))"]
        }
        if spec.usesVhostUser {
            // vhost-user needs guest memory the backend can map: a shared memfd.
            a += ["-object", "memory-backend-memfd,id=mem,size=\(spec.memoryMiB)M,share=on", "-numa", "node,memdev=mem"]
        }
        var tapIndex: Int32 = 0
        for (i, nic) in spec.nics.enumerated() {
            switch nic.backend {
            case .tap:
                a += [
                    "-netdev", "tap,id=n\(i),fd=\(Self.firstNICDescriptor + tapIndex)",
                    "-device", "virtio-net-pci,netdev=n\(i),mac=\(nic.mac),romfile=" + (nic.offloads ? "" : "," + Self.offloadsOff),
                ]
                tapIndex += 1
            case .vhostUser(let path):
                a += [
                    "-chardev", "socket,id=vu\(i),path=\(Self.escaped(path)),server=on,wait=off",
                    "-netdev", "vhost-user,id=n\(i),chardev=vu\(i)",
                    "-device", "virtio-net-pci,netdev=n\(i),mac=\(nic.mac),romfile=," + (nic.offloads ? Self.offloadsOn : Self.offloadsOff) + (accel == .tcg ? ",vectors=0" : ""),
                ]
            }
        }
        arguments = a
    }

    /// A value inside QEMU's `key=value,…` option syntax: a comma is written twice.
    static func escaped(_ value: String) -> String { value.split(separator: ",", omittingEmptySubsequences: false).joined(separator: ",,") }

    /// A vhost-user NIC's offloads: checksum and TSO both ways (the switch carries them in the
    /// virtio-net header: a guest's TSO frame crosses whole), mergeable receive buffers; no
    /// UFO (the backend does not offer it).
    static let offloadsOn = (["csum", "guest_csum", "guest_tso4", "guest_tso6", "guest_ecn", "host_tso4", "host_tso6", "host_ecn", "mrg_rxbuf"].map { "\($0)=on" }
        + ["guest_ufo", "host_ufo"].map { "\($0)=off" }).joined(separator: ",")

    /// Every checksum and segmentation offload of virtio-net, off (`offloads: false`). UFO is
    /// gone from current kernels; its flags are listed so QEMU never offers it either.
    static let offloadsOff = ["csum", "gso", "guest_csum", "guest_tso4", "guest_tso6", "guest_ecn", "guest_ufo",
                              "host_tso4", "host_tso6", "host_ecn", "host_ufo"].map { "\($0)=off" }.joined(separator: ",")

    /// The kernel command line: the serial console, `quiet` (every console byte is an emulated
    /// I/O under TCG; panics still print), `panic=-1` (reboot at once if pvpanic is missing),
    /// and the parameters our /init reads (Scripts/guest/init):
    /// `tapestry.hostname=`, `tapestry.macs=` (NIC order by MAC), `tapestry.ip=`,
    /// `tapestry.mtu=`, `tapestry.gw=`, `tapestry.net=fw_cfg` (the rest of the configuration
    /// is in the fw_cfg file `opt/tapestry/net`, see `GuestNetworkConfig`); then
    /// `extraKernelArguments`.
    public static func kernelCommandLine(for spec: VMSpec) -> String {
        var args = ["console=ttyS0", "quiet", "panic=-1", "tapestry.hostname=\(spec.name)"]
        if !spec.nics.isEmpty {
            args.append("tapestry.macs=" + spec.nics.map { "\($0.mac)" }.joined(separator: ","))
        }
        let ips = spec.nics.enumerated().flatMap { i, nic in nic.addresses.map { "eth\(i)=\($0)" } }
        if !ips.isEmpty { args.append("tapestry.ip=" + ips.joined(separator: ",")) }
        let mtus = spec.nics.enumerated().compactMap { i, nic in nic.mtu.map { "eth\(i)=\($0)" } }
        if !mtus.isEmpty { args.append("tapestry.mtu=" + mtus.joined(separator: ",")) }
        if let gw = spec.gateway { args.append("tapestry.gw=\(gw)") }
        if spec.network != nil { args.append("tapestry.net=fw_cfg") }
        return (args + spec.extraKernelArguments).joined(separator: " ")
    }
}
