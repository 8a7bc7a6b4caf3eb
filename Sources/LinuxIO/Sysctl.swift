import CLinux

/// Kernel parameters under /proc/sys, written without spawning `sysctl`.
///
/// Used to keep switch-owned netdevs away from the host stack (DESIGN.md "Attaching
/// guests"), e.g. `net/ipv6/conf/NAME/disable_ipv6 = 1` on a TAP the switch attaches to.
public enum Sysctl {
    /// Writes `value` to /proc/sys/`key` (slash-separated, e.g.
    /// "net/ipv6/conf/tap0/disable_ipv6"). Wraps `cl_sysctl_write`; most keys need root
    /// (CAP_NET_ADMIN for per-namespace net keys). Acts in the caller's network namespace.
    /// - Throws: `SystemError` (ENOENT for an unknown key or link, EACCES/EPERM, EINVAL).
    public static func write(_ key: String, _ value: String) throws {
        try Syscall.require("write /proc/sys/\(key)", subject: value) { cl_sysctl_write(key, value) }
    }

    /// Writes `value` to /proc/sys/`key` inside the network namespace `namespaceFD` refers
    /// to (`NetworkNamespace.open`): per-namespace keys such as `net/ipv6/conf/eth0/accept_dad`
    /// of a guest. Wraps `cl_sysctl_write_in_netns` (a helper thread enters the namespace);
    /// needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    /// - Throws: `SystemError` (ENOENT for an unknown key or link, EPERM).
    public static func write(_ key: String, _ value: String, inNamespace namespaceFD: Int32) throws {
        try Syscall.require("write /proc/sys/\(key) in a namespace", subject: value) { cl_sysctl_write_in_netns(namespaceFD, key, value) }
    }
}
