import Core
import Foundation
import LinuxIO
import Model
import Netlink
import Topology
import VhostUser
import VMRunner
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// QEMU guests (`kind: qemu`): their switch ports, and their lifecycle through `VMSupervisor`.
///
/// ## Attachment, vhost-user (`backend: vhost-user`, the default)
/// QEMU serves each NIC's socket `/run/tapestry/STEM.vhost/GUEST.ethN.sock` (`server=on`,
/// `wait=off`: QEMU never waits for the switch) and the switch's port is a `VhostUserPort` in
/// client mode that connects to it — and reconnects whenever it goes away — as Open
/// vSwitch-DPDK's `dpdkvhostuserclient` ports do: a QEMU crash or restart (`restart:
/// on-failure`, `vm restart`) and a switch restart each find the other again by themselves.
/// The port (its counters and MAC entries) outlives QEMU as a TAP-backed one does. The
/// guest's RAM is a shared memfd (`QEMUCommand`), which the switch maps; frames move between
/// the guest's virtqueues and the switch without a system call (`VhostUserPort`). The port is
/// single-queue: worker 0 polls it, the other workers write to it under its access gate.
///
/// ## Attachment, TAP (`backend: tap`)
/// For each NIC the switch creates a TAP with a virtio-net header (IFF_VNET_HDR) and keeps
/// its fd; QEMU gets a copy of that fd (`-netdev tap,fd=N`, by inheritance) and so speaks
/// virtio-net headers on it, with the NIC's offloads on (unless `offloads: false`). The
/// switch's port is an AF_PACKET `PacketPort` with 12-byte virtio-net headers on the TAP's
/// kernel netdev — the same port type as NIC uplinks: the VM's TSO frames and partial
/// checksums arrive described, and what the switch sends the VM leaves whole; the kernel
/// segments or finishes it for whatever offloads QEMU enabled on the TAP (TUNSETOFFLOAD
/// follows the guest's features). The netdev stays in the host namespace with IPv6 off and
/// no address, so the host stack ignores it. "The host namespace" is the daemon's, or on a
/// multi-host topology's host with `netns:` that namespace: there the TAP is created, the
/// AF_PACKET port opened and QEMU started (`VMSpec.networkNamespace`), so a VM of host h1
/// runs inside h1 as its netns guests' traffic does. Because the switch holds the TAP fd, the
/// netdev (and so the port, its counters and MAC entries) outlives a QEMU crash: a
/// restarted VM comes back on the same port with the same MAC.
///
/// ## Files
/// Control sockets and pid files under `/run/tapestry/TOPOLOGY.vms/`; console and QEMU logs
/// under `/var/log/tapestry/TOPOLOGY/` (kept after `down`, for debugging).
extension Fabric {
    /// - Parameter topology: the instance's stem (`NAME` or `NAME@HOST`), so two hosts of one
    ///   topology on one machine never share a VM's files.
    static func vmPaths(topology: String, guest: String) -> VMPaths {
        VMPaths(name: guest, runDirectory: "\(RunDirectory.path)/\(topology).vms", logDirectory: "/var/log/tapestry/\(topology)")
    }

    /// The network namespace this instance's QEMU guests, their TAPs and their ports live in:
    /// its host's `netns:` (several hosts of one topology on one machine, each VM inside its
    /// host), or nil for the daemon's own.
    func vmNamespace(in topology: Topology) -> String? {
        guard let h = hostName else { return nil }
        return topology.hosts.first { $0.name == h }?.netns
    }

    /// Creates the port of every NIC of qemu guest `g`, recorded in `vmNICs` as they are made
    /// (so a failure half way is cleaned up by `down`): for `backend: tap` a TAP and an
    /// AF_PACKET port on it, for `backend: vhost-user` a client-mode `VhostUserPort` on the
    /// socket QEMU will serve (it connects once QEMU runs; a path socket needs no namespace).
    /// On a host with `netns:` a TAP and its port are made inside that namespace
    /// (`NetworkNamespace.run`): the TAP netdev is born there, and the AF_PACKET sockets stay
    /// bound to it from there; the daemon's threads use them as any other port.
    func createVMPorts(_ g: GuestSpec, of topology: Topology, host: NetlinkSocket, into byPort: inout [String: PortIO]) throws {
        let ns = vmNamespace(in: topology)
        let inside = try ns.map { try NetlinkSocket(namespace: $0) } ?? host
        let nsFD = try ns.map { try NetworkNamespace.open($0) }
        defer { if let fd = nsFD { Files.closeDescriptor(fd) } }
        func here<T>(_ body: () throws -> T) throws -> T { try ns.map { try NetworkNamespace.run(in: $0, body) } ?? body() }
        for nic in g.nics {
            if nic.backend == .vhostUser {
                let path = try vhostSocketPath(for: nic)
                vmNICs[g.name, default: []].append(.vhostUser(path))
                byPort[nic.portName] = try makeVhostUserPort(nic, path: path, mode: .client)
                continue
            }
            let name = Fabric.hostTAPName(topology: tapStem(topology), guest: g.name, nic: nic.index)
            let tap = try here { try TAPDevice(name: name, vnetHeader: true) }
            vmNICs[g.name, default: []].append(.tap(tap))
            // Keep the host stack out: no IPv6 (no link-local address, no ND), no IPv4 address.
            if let fd = nsFD {
                try? Sysctl.write("net/ipv6/conf/\(name)/disable_ipv6", "1", inNamespace: fd)
            } else {
                try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", atomically: false, encoding: .utf8)
            }
            let mtu = topology.mtu(of: nic)
            guard let index = try inside.linkIndex(named: name) else {
                throw RuntimeError("\(nic.portName): TAP \(name) vanished\(ns.map { " from netns \($0)" } ?? "")")
            }
            try inside.configureLink(index: index, mtu: mtu, up: true)
            byPort[nic.portName] = try here { try PacketPort(interface: name, mtu: mtu) }
        }
    }

    /// Builds the guest image if it is missing or stale (cached otherwise); `progress` gets
    /// the build's messages.
    public static func prepareGuestImage(progress: @escaping (String) -> Void) throws {
        do { _ = try GuestImage.prepare(progress: progress) }
        catch { throw RuntimeError("cannot prepare the guest image: \(error)") }
    }

    /// Builds (first use) the guest image, probes acceleration once, and boots `guests` (qemu
    /// guests of `topology` whose ports exist) in parallel; returns when all printed READY.
    /// Throws (naming each VM that failed, with its console's last lines) when any did not
    /// boot within the boot timeout.
    func startVMs(_ guests: [GuestSpec], of topology: Topology) throws {
        guard !guests.isEmpty else { return }
        try bootVMs(try prepareVMs(guests, of: topology))
    }

    /// A supervisor (not started) for each of `guests` whose ports exist, registered in
    /// `vms`; builds the guest image on first use and probes acceleration. Call with
    /// `reloading` held.
    func prepareVMs(_ guests: [GuestSpec], of topology: Topology) throws -> [VMSupervisor] {
        guard !guests.isEmpty else { return [] }
        let image: GuestImage
        do { image = try GuestImage.prepare(progress: { [log] in log("guest image: \($0)") }) }
        catch { throw RuntimeError("cannot prepare the guest image: \(error)") }
        let (accel, reason) = Accel.probe()
        log("VMs run with \(accel == .kvm ? "KVM" : "TCG (software emulation)"): \(reason)")
        var supervisors: [VMSupervisor] = []
        for g in guests {
            guard let attached = vmNICs[g.name], attached.count == g.nics.count else { continue }
            // Addresses (both families), MTUs, DHCP, gateways and routes go through fw_cfg
            // (GuestNetworkConfig): the kernel command line is too small for a lab's.
            let nics = g.nics.enumerated().map { i, nic in
                switch attached[i] {
                case .tap(let tap): GuestNIC(mac: nic.mac, tapFD: tap.fd, offloads: nic.offloads)
                case .vhostUser(let path): GuestNIC(mac: nic.mac, backend: .vhostUser(socketPath: path), offloads: nic.offloads)
                }
            }
            let spec = VMSpec(name: g.name, memoryMiB: g.memoryMiB, cpus: g.cpus, nics: nics,
                              network: Fabric.guestNetwork(g, of: topology), networkNamespace: vmNamespace(in: topology))
            let paths = Fabric.vmPaths(topology: stem, guest: g.name)
            _ = VMSupervisor.killStale(paths: paths)
            let s = try VMSupervisor(spec: spec, image: image, accel: accel, paths: paths, restartPolicy: g.restart,
                                     bootTimeout: Fabric.vmBootTimeout,
                                     onRestart: { [weak self] s in self?.vmRestarted(s.spec.name) },
                                     log: { [log] in log($0) })
            supervisors.append(s)
            vms[g.name] = s
        }
        return supervisors
    }

    /// Boots `supervisors` in parallel and waits until every guest printed READY. Throws
    /// (naming each VM that failed, with its console's last lines) when any did not boot.
    func bootVMs(_ supervisors: [VMSupervisor]) throws {
        guard !supervisors.isEmpty else { return }
        // Boot in parallel; collect every failure.
        final class Failures: @unchecked Sendable { let lock = NSLock(); var list: [String] = [] }
        let group = DispatchGroup()
        let failures = Failures()
        let started = Date()
        for s in supervisors {
            group.enter()
            Thread.detachNewThread {
                do { try s.start() } catch { failures.lock.withLock { failures.list.append("\(error)") } }
                group.leave()
            }
        }
        group.wait()
        if !failures.list.isEmpty { throw RuntimeError(failures.list.joined(separator: "\n")) }
        log("\(supervisors.count) VM(s) booted in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        waitForVhostUserFrontends(of: supervisors.map(\.spec.name))
    }

    /// After the VMs printed READY, waits (at most 10 s) until each of their vhost-user ports
    /// runs both rings, so `up --detach` returns with every VM's NICs forwarding; a port that
    /// does not is logged, not fatal (QEMU and the port keep reconnecting by themselves).
    private func waitForVhostUserFrontends(of vmNames: [String]) {
        let paths = Set(vmNames.flatMap { vmNICs[$0] ?? [] }.compactMap { a -> String? in
            if case .vhostUser(let path) = a { return path } else { return nil }
        })
        guard !paths.isEmpty else { return }
        let ports = portsByName.values.compactMap { $0 as? VhostUserPort }.filter { paths.contains($0.socketPath) }
        let deadline = Date().addingTimeInterval(10)
        while ports.contains(where: { !$0.isRunning }) && Date() < deadline { usleep(20_000) }
        for p in ports where !p.isRunning { log("vhost-user \(p.name): QEMU has not started the device yet (\(p.socketPath)); it joins when it does") }
    }

    /// The topology part of TAP names: the instance's stem on a multi-host topology, so two
    /// hosts of one fabric on one machine never make the same TAP for one guest (HA and
    /// migration can put a guest's ports on both at once).
    func tapStem(_ topology: Topology) -> String { hostName == nil ? topology.name : stem }

    /// Seconds a VM may take from QEMU's start to READY (TCG boots take ~5 s alone; several
    /// VMs on two cores take longer).
    static var vmBootTimeout: TimeInterval {
        ProcessInfo.processInfo.environment["TAPESTRY_VM_BOOT_TIMEOUT"].flatMap(TimeInterval.init) ?? 90
    }

    /// Stops the VMs named `names` (in parallel, gracefully: ACPI power button, then quit,
    /// then kill) and closes their TAPs.
    func stopVMs(_ names: [String]) {
        let group = DispatchGroup()
        for n in Set(names) {
            guard let s = vms.removeValue(forKey: n) else { continue }
            group.enter()
            Thread.detachNewThread { s.stop(gracePeriod: 5); group.leave() }
        }
        group.wait()
        for n in Set(names) {
            closeVMNICs(n)
            // The fw_cfg network file (GuestNetworkConfig) goes with its VM.
            Files.remove(Fabric.vmPaths(topology: stem, guest: n).networkConfig)
        }
        // The directory is the stem's (`NAME@HOST.vms` on a multi-host topology). Once no VM
        // runs here it goes with whatever its VMs left in it: the console, QMP and pid files
        // of a QEMU that was killed, the network file of a VM that migrated away.
        if vms.isEmpty && vmNICs.isEmpty { Fabric.removeVMDirectory(stem) }
    }

    /// Removes `/run/tapestry/STEM.vms` and everything in it (per-VM console, QMP, pid and
    /// network files); a missing directory is not an error.
    static func removeVMDirectory(_ stem: String) {
        try? FileManager.default.removeItem(atPath: "\(RunDirectory.path)/\(stem).vms")
    }

    /// Closes the TAPs the switch kept for VM `name` and forgets its NICs (their ports, TAP
    /// or vhost-user, are closed with the other ports of the guest).
    func closeVMNICs(_ name: String) {
        for a in vmNICs.removeValue(forKey: name) ?? [] { if case .tap(let t) = a { t.close() } }
    }

    /// A VM came back after a crash (or `vm restart`): forget what its ports had learned, so
    /// nothing is sent on stale information; the same MAC is learned again from its first frame.
    func vmRestarted(_ name: String) {
        guard let dp = datapath else { return }
        let prefix = name + "."
        let flushed = dp.withLock { lock in
            var n = 0
            for sw in lock.switches {
                for (i, p) in sw.plan.ports.enumerated() where p.name.hasPrefix(prefix) { n += sw.table(lock).flush(port: i) }
            }
            return n
        }
        log("vm \(name): restarted on the same port(s); \(flushed) MAC entr\(flushed == 1 ? "y" : "ies") flushed")
    }

    /// `{"command":"vm","action":"list|start|stop|restart","vm":NAME}`.
    func vmCommand(_ req: ControlRequest) throws -> [VMStatus] {
        let action = req.action ?? "list"
        if action == "list" { return vms.values.map(\.status).sorted { $0.name < $1.name } }
        guard let name = req.vm, !name.isEmpty else { throw RuntimeError("vm \(action) needs a VM name") }
        guard let s = vms[name] else {
            let known = vms.keys.sorted()
            throw RuntimeError("no VM '\(name)'" + (known.isEmpty ? " (this topology has none)" : " (VMs: \(known.joined(separator: ", ")))"))
        }
        switch action {
        case "start": try s.start(); fabricService?.guestStarted(name)
        case "stop": s.stop(); fabricService?.guestStopped(name)
        case "restart": try s.restart()
        default: throw RuntimeError("unknown vm action '\(action)' (expected list, start, stop or restart)")
        }
        return [s.status]
    }
}
