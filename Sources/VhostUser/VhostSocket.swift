import CVhost
import LinuxIO
#if canImport(Glibc)
import Glibc
#endif

/// Who may connect to a server-mode socket: the socket file's owner, group and mode
/// (a frontend needs write permission on it to connect), applied right after bind.
///
/// Owner and group are names (`libvirt-qemu`) or numeric ids; nil keeps root. The default,
/// 0600 root, admits only root frontends.
public struct VhostSocketPermissions: Equatable, Sendable {
    public var owner: String?
    public var group: String?
    /// Permission bits, e.g. 0o660.
    public var mode: UInt16

    public init(owner: String? = nil, group: String? = nil, mode: UInt16 = 0o600) {
        self.owner = owner
        self.group = group
        self.mode = mode
    }

    /// The uid and gid to give the socket (-1: unchanged). Throws for an unknown name or a
    /// mode beyond 0777.
    func resolve() throws -> (uid_t, gid_t) {
        guard mode & ~0o777 == 0 else { throw VhostSetupError.invalidMode(mode) }
        var uid = uid_t.max, gid = gid_t.max
        if let o = owner {
            if let n = UInt32(o) { uid = n } else if let pw = getpwnam(o) { uid = pw.pointee.pw_uid } else { throw VhostSetupError.unknownUser(o) }
        }
        if let g = group {
            if let n = UInt32(g) { gid = n } else if let gr = getgrnam(g) { gid = gr.pointee.gr_gid } else { throw VhostSetupError.unknownGroup(g) }
        }
        return (uid, gid)
    }
}

/// A vhost-user port that cannot be set up.
public enum VhostSetupError: Error, Equatable, CustomStringConvertible {
    case unknownUser(String)
    case unknownGroup(String)
    case invalidMode(UInt16)
    /// Something that is not a socket sits at the path.
    case pathInUse(String)

    public var description: String {
        switch self {
        case .unknownUser(let u): "vhost-user socket owner '\(u)' is not a user of this host"
        case .unknownGroup(let g): "vhost-user socket group '\(g)' is not a group of this host"
        case .invalidMode(let m): "vhost-user socket mode 0\(String(m, radix: 8)) is not a permission mode (at most 0777)"
        case .pathInUse(let p): "\(p) exists and is not a socket"
        }
    }
}

/// The per-instance socket directory, `/run/tapestry/NAME.vhost` (NAME plus the host when
/// several hosts share a machine: the caller passes the path).
public enum VhostSocketDirectory {
    /// The socket path of guest NIC `port` (`vm1.eth0`) in `directory`.
    public static func socketPath(directory: String, port: String) -> String { "\(directory)/\(port).sock" }

    /// Creates `directory` (and missing parents, 0755) owned by root. With
    /// `reachableByOthers` (the default) its mode is 0711: any user may reach a socket inside
    /// by its known name (each socket's own mode decides who may connect), nobody but root may
    /// list or create entries; without, 0700: root's frontends only (QEMU started by the
    /// switch). An existing directory gets the same mode.
    public static func prepare(_ directory: String, reachableByOthers: Bool = true) throws {
        var path = ""
        for part in directory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError(operation: "mkdir", subject: path, errno: errno) }
        }
        if chmod(directory, reachableByOthers ? 0o711 : 0o700) != 0 { throw SystemError(operation: "chmod", subject: directory, errno: errno) }
    }

    /// Whether `directory` lets other users through (mode o+x), as `prepare` left it.
    public static func isReachableByOthers(_ directory: String) -> Bool {
        var st = stat()
        return stat(directory, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o001 != 0
    }

    /// Removes `directory` and the sockets in it (ours are unlinked when their ports close;
    /// what is left is a QEMU's server socket after it was killed, or a crashed switch's),
    /// then the directory itself. Only sockets are removed: anything else stays, and so does
    /// the directory then.
    public static func remove(_ directory: String) {
        if let d = opendir(directory) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                var st = stat()
                let path = directory + "/" + name
                if lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
            }
            closedir(d)
        }
        rmdir(directory)
    }
}

/// Listening socket for server mode: a stale socket at the path (a previous run) is replaced;
/// anything else there is an error.
func listenVhost(path: String, permissions: VhostSocketPermissions) throws -> Int32 {
    let (uid, gid) = try permissions.resolve()
    var st = stat()
    if lstat(path, &st) == 0 {
        guard st.st_mode & S_IFMT == S_IFSOCK else { throw VhostSetupError.pathInUse(path) }
        unlink(path)
    }
    let fd = try Syscall.require("listen", subject: path) { cv_listen(path) }
    do {
        try Syscall.require("chmod", subject: path) { chmod(path, mode_t(permissions.mode)) == 0 ? 0 : -errno }
        if uid != uid_t.max || gid != gid_t.max {
            try Syscall.require("chown", subject: path) { chown(path, uid, gid) == 0 ? 0 : -errno }
        }
    } catch {
        Glibc.close(fd)
        unlink(path)
        throw error
    }
    return fd
}
