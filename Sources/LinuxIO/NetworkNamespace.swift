#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux

/// Named network namespaces in iproute2's layout (/run/netns/NAME), so `ip netns list`,
/// `ip -n NAME …` and `ip netns del` work on ours and we work on theirs.
///
/// Created without spawning `ip`: a short-lived thread unshares its network namespace and
/// bind-mounts it onto the name (see `cl_netns_create`). Creating and deleting need
/// CAP_SYS_ADMIN; `exists` and `list` need nothing.
public enum NetworkNamespace {
    /// Where iproute2 keeps named namespaces.
    public static let directory = "/run/netns"

    /// Creates the namespace `name` (like `ip netns add`). Wraps `cl_netns_create`.
    /// - Throws: `SystemError` with EEXIST if it already exists, EPERM without
    ///   CAP_SYS_ADMIN, EINVAL for a name that is not a plain file name.
    public static func create(_ name: String) throws {
        try Syscall.require("create network namespace", subject: "netns \(name)") { cl_netns_create(name) }
    }

    /// Removes the name (like `ip netns del`): unmount, then unlink. Links inside the
    /// namespace vanish once nothing else holds it. Wraps `cl_netns_delete`.
    /// - Throws: `SystemError` with ENOENT if it does not exist.
    public static func delete(_ name: String) throws {
        try Syscall.require("delete network namespace", subject: "netns \(name)") { cl_netns_delete(name) }
    }

    /// Whether /run/netns/NAME exists.
    public static func exists(_ name: String) -> Bool {
        guard !name.isEmpty, !name.contains("/") else { return false }
        return access("\(directory)/\(name)", F_OK) == 0
    }

    /// The names in /run/netns, sorted; empty if the directory is missing.
    public static func list() -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Runs `body` on a short-lived thread inside namespace `name` and returns its result
    /// (wraps `cl_run_in_netns`: pthread + setns(CLONE_NEWNET)). Sockets `body` opens stay
    /// in that namespace for life, e.g. a `PacketSocket` on a link that lives there; the
    /// calling thread's namespace is untouched. Control path (a thread per call).
    /// - Throws: `SystemError` (ENOENT for an unknown namespace, EPERM without
    ///   CAP_SYS_ADMIN), or whatever `body` throws.
    public static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        let fd = try open(name)
        defer { _ = Glibc.close(fd) }
        var result: Result<T, Error>?
        try withoutActuallyEscaping(body) { escapable in
            let job = Unmanaged.passRetained(NamespaceJob { result = Result { try escapable() } })
            defer { job.release() }
            try Syscall.require("enter network namespace", subject: "netns \(name)") {
                cl_run_in_netns(fd, { raw in Unmanaged<NamespaceJob>.fromOpaque(raw!).takeUnretainedValue().run() }, job.toOpaque())
            }
        }
        return try result!.get()
    }

    /// Opens /run/netns/NAME (O_RDONLY|O_CLOEXEC) for setns(2) or moving links into it.
    /// The caller owns the returned fd and must close it. Wraps `cl_netns_open`.
    public static func open(_ name: String) throws -> Int32 {
        try Syscall.require("open network namespace", subject: "netns \(name)") { cl_netns_open(name) }
    }

    /// The nsfs inode of namespace `name` (stat(2) of /run/netns/NAME, the bind mount `ip
    /// netns` makes), or nil when there is none: tells two namespaces of one name apart (one
    /// deleted and another made under its name).
    public static func inode(_ name: String) -> UInt64? {
        var st = stat()
        return stat("/run/netns/\(name)", &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// Runs `body` with a descriptor of namespace `name` (`open`), closed afterwards.
    public static func withDescriptor<T>(_ name: String, _ body: (Int32) throws -> T) throws -> T {
        let fd = try open(name)
        defer { close(fd) }
        return try body(fd)
    }
}

/// The closure `NetworkNamespace.run` hands to the C thread.
private final class NamespaceJob {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
