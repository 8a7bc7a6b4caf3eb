import Foundation
import LinuxIO
import Topology
import VhostUser

/// How one NIC of a QEMU guest reaches its switch port: a TAP whose fd the switch keeps (and
/// QEMU inherits), or a vhost-user socket QEMU serves and the switch's port connects to.
enum VMNICAttachment {
    case tap(TAPDevice)
    case vhostUser(String)
}

/// vhost-user ports: the QEMU guests' (`backend: vhost-user`, the default) and the
/// `kind: vhost-user` guests', for frontends Tapestry does not start.
///
/// ```
///   /run/tapestry/STEM.vhost/          0700, or 0711 when a non-root frontend must reach it
///     vm1.eth0.sock                    QEMU serves it (server=on); the port connects (client)
///     app.eth0.sock                    the port serves it (kind vhost-user, server mode),
///                                      with the guest's socket owner, group and permissions
/// ```
/// STEM is the instance's (`NAME`, or `NAME@HOST` for one host of a multi-host topology), so
/// two hosts of one topology on one machine never share a socket. The directory is recorded
/// in the state file before it exists, removed (with the sockets left in it: a killed QEMU's)
/// at `down` and by the next `up` or `down` after a crash (`cleanStale`). While some
/// instance's directory is reachable by others, `/run/tapestry` itself lets others through
/// (search only: `RunDirectory.updateTraversal`).
///
/// **Kicks or polling.** A port polls its guest's empty transmit ring for 50 µs
/// (`TAPESTRY_VHOST_POLL_US`), or for the datapath's poll window when that is longer
/// (`datapath: {poll: …}`, `TAPESTRY_BUSY_POLL_US`), then sleeps until the guest kicks. A
/// frontend that sends again within the window never kicks, and the switch does not sleep
/// between its bursts; a quiet guest costs at most the window's spinning per burst, never a
/// core (on a machine shared with the guests, 2 cores here, a poller that never stops would
/// take one from them). The benchmark runs this default, kicks only, and poll mode side by
/// side (Scripts/bench/vhost-results.md).
///
/// **Removal.** A port leaves the datapath (`replaceSwitches`) first, is then told so
/// (`detachFromDatapath`: its control thread stops waiting for the datapath's
/// acknowledgements), and is closed last (`retire`).
extension Fabric {
    /// Whether `t` has a NIC with a socket in the instance's vhost-user directory.
    static func usesVhostDirectory(_ t: Topology) -> Bool {
        t.guests.contains { g in
            switch g.kind {
            case .netns: false
            case .qemu: g.nics.contains { $0.backend == .vhostUser }
            case .vhostUser: (g.socket?.mode ?? .server) == .server
            }
        }
    }

    /// Whether a non-root frontend must reach guest `g`'s sockets: a server-mode vhost-user
    /// guest whose sockets belong to another user or group, or grant group or others access.
    static func socketsReachableByOthers(_ g: GuestSpec) -> Bool {
        let s = g.socket ?? VhostUserSocketSpec()
        guard g.kind == .vhostUser, s.mode == .server else { return false }
        let root = { (v: String?) in v == nil || v == "root" || v == "0" }
        return !root(s.owner) || !root(s.group) || (s.permissions ?? 0o600) & 0o077 != 0
    }

    /// Creates (or adjusts) the instance's socket directory for topology `t`: 0711 when one of
    /// its guests' sockets is for a non-root frontend, else 0700; then the run directory's
    /// search bit follows. Nothing when `t` needs no directory.
    func prepareVhostDirectory(for t: Topology) throws {
        guard Fabric.usesVhostDirectory(t) else { return }
        let reachable = t.guests.contains(where: Fabric.socketsReachableByOthers)
        if vhostDirectoryReady && reachable == vhostDirectoryReachable { return }
        let dir = RunDirectory.vhostDirectory(stem)
        do { try VhostSocketDirectory.prepare(dir, reachableByOthers: reachable) }
        catch { throw RuntimeError("cannot create the vhost-user socket directory \(dir): \(error)") }
        vhostDirectoryReady = true
        vhostDirectoryReachable = reachable
        RunDirectory.updateTraversal()
    }

    /// Removes the socket directory (at `down`) and lets the run directory's search bit follow.
    func removeVhostDirectory() {
        guard vhostDirectoryReady else { return }
        VhostSocketDirectory.remove(RunDirectory.vhostDirectory(stem))
        vhostDirectoryReady = false
        RunDirectory.updateTraversal()
    }

    /// `/run/tapestry/STEM.vhost/GUEST.ethN.sock`.
    /// - Throws: when the path does not fit a Unix socket address (107 bytes).
    func vhostSocketPath(for nic: NICSpec) throws -> String {
        let path = VhostSocketDirectory.socketPath(directory: RunDirectory.vhostDirectory(stem), port: nic.portName)
        guard path.utf8.count <= 107 else { throw RuntimeError("\(nic.portName): vhost-user socket path \(path) is longer than 107 bytes") }
        return path
    }

    /// A vhost-user port for `nic`: it polls its guest's empty ring for the ring poll window
    /// (`DatapathSettings.vhostPollMicroseconds`), or the datapath's poll window when longer,
    /// then sleeps until kicked (see the type's essay); the NIC's offloads; log lines in the
    /// daemon's log.
    func makeVhostUserPort(_ nic: NICSpec, path: String, mode: VhostUserPort.Mode) throws -> VhostUserPort {
        do {
            let poll = max(settings.busyPollMicroseconds, settings.vhostPollMicroseconds)
            return try VhostUserPort(name: nic.portName, socketPath: path, mode: mode, pollMicroseconds: poll,
                                     offloads: nic.offloads, log: { [log] in log("vhost-user \($0)") })
        } catch {
            throw RuntimeError("\(nic.portName): cannot open vhost-user socket \(path): \(error)")
        }
    }

    /// Creates the ports of `kind: vhost-user` guest `g`: in server mode each serves
    /// `/run/tapestry/STEM.vhost/GUEST.ethN.sock` with the guest's owner, group and
    /// permissions; in client mode each connects to its NIC's `socket-path` and reconnects
    /// whenever the frontend goes away. Nothing is started.
    func createVhostUserGuest(_ g: GuestSpec, into byPort: inout [String: PortIO]) throws {
        let spec = g.socket ?? VhostUserSocketSpec()
        for nic in g.nics {
            switch spec.mode {
            case .server:
                let permissions = VhostSocketPermissions(owner: spec.owner, group: spec.group, mode: UInt16(spec.permissions ?? 0o600))
                let path = try vhostSocketPath(for: nic)
                byPort[nic.portName] = try makeVhostUserPort(nic, path: path, mode: .server(permissions))
            case .client:
                guard let path = nic.socketPath else { throw RuntimeError("\(nic.portName): client mode needs a socket-path") }
                byPort[nic.portName] = try makeVhostUserPort(nic, path: path, mode: .client)
            }
        }
        log("guest \(g.name): vhost-user, " + g.nics.map { nic in
            "\(nic.portName) \(nic.mac) on \(nic.switchName)/\(nic.portGroup) "
                + (spec.mode == .server ? "serving \((try? vhostSocketPath(for: nic)) ?? "?")" : "connecting to \(nic.socketPath ?? "?")")
        }.joined(separator: "; "))
    }

    /// Closes a port that left the datapath; a vhost-user port is told first that no
    /// datapath thread calls it any more (see the type's essay).
    func retire(_ io: PortIO) {
        (io as? VhostUserPort)?.detachFromDatapath()
        io.close()
    }

    /// What `ports` shows of a vhost-user port (nil for other ports).
    func vhostUserInfo(_ port: VhostUserPort?) -> PortsReport.VhostUserInfo? {
        guard let v = port else { return nil }
        let s = v.statistics
        let mode: String
        switch v.mode {
        case .server: mode = "server"
        case .client: mode = "client"
        }
        return PortsReport.VhostUserInfo(socket: v.socketPath, mode: mode, connected: v.isRunning,
                                         connections: s.connections, disconnects: s.disconnects, resets: s.resets,
                                         rarps: s.rarps, dirtyLogs: s.dirtyLogs,
                                         segmentedInSoftware: s.segmentedInSoftware, checksummedInSoftware: s.checksummedInSoftware,
                                         drops: s.drops)
    }
}
