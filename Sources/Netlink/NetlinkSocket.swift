#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinux
import CNetlink
import Model

/// A NETLINK_ROUTE socket (libnl `nl_sock`) and the link/address requests Tapestry makes:
/// look up, move between namespaces, rename, set MAC/MTU/up, delete links; add IPv4
/// addresses. The runtime never shells out to `ip`.
///
/// A route socket acts in the network namespace it was created in, whatever thread later
/// uses it. `init(namespace:)` creates one inside a named namespace, which is how a guest's
/// `eth0` gets configured from the host.
///
/// One owner; requests are synchronous and not thread-safe (libnl sockets are not). Each
/// request owns the libnl objects it allocates (`rtnl_link_put`, `rtnl_addr_put`,
/// `nl_cache_free` on every path). Changing links needs CAP_NET_ADMIN in the namespace;
/// `init(namespace:)` also needs CAP_SYS_ADMIN (setns).
public final class NetlinkSocket {
    private var sock: OpaquePointer?
    /// The namespace this socket acts in, or nil for the creator's namespace.
    public let namespace: String?

    /// A route socket in the caller's network namespace (nl_socket_alloc + nl_connect).
    public init() throws {
        var sk: OpaquePointer?
        try check(cnl_route_socket(&sk), "nl_connect(NETLINK_ROUTE)", "")
        sock = sk
        namespace = nil
    }

    /// A route socket bound inside the named namespace (/run/netns/NAME): a short-lived
    /// thread enters it with setns and connects there (`cnl_route_socket_in_netns`); the
    /// socket stays in that namespace for its whole life.
    public init(namespace name: String) throws {
        let nsfd = cl_netns_open(name)
        if nsfd < 0 {
            throw NetlinkError(operation: "open network namespace", subject: "netns \(name)",
                               code: nl_syserr2nlerr(-nsfd), systemErrno: -nsfd)
        }
        defer { _ = Glibc.close(nsfd) }
        var sk: OpaquePointer?
        var sysErrno: Int32 = 0
        let r = cnl_route_socket_in_netns(nsfd, &sk, &sysErrno)
        if r < 0 {
            throw NetlinkError(operation: sysErrno != 0 ? "setns" : "nl_connect(NETLINK_ROUTE)",
                               subject: "netns \(name)", code: r, systemErrno: sysErrno == 0 ? nil : sysErrno)
        }
        sock = sk
        namespace = name
    }

    deinit { close() }

    /// Frees the socket (nl_socket_free). Idempotent; requests afterwards throw.
    public func close() {
        if let sk = sock { nl_socket_free(sk) }
        sock = nil
    }

    private func socket(_ operation: String) throws -> OpaquePointer {
        guard let sk = sock else { throw NetlinkError(operation: operation, subject: "closed socket", code: CNL_NLE_BAD_SOCK) }
        return sk
    }

    /// " in netns NAME" for messages about a namespaced socket, else "".
    private var namespaceSuffix: String { namespace.map { " in netns \($0)" } ?? "" }

    // MARK: - looking links up

    /// Fetches one link from the kernel by name or index (rtnl_link_get_kernel), handing the
    /// owned object to `body` and releasing it after. Returns nil when the link is absent.
    private func withKernelLink<T>(index: Int32 = 0, name: String? = nil, _ body: (OpaquePointer) throws -> T) throws -> T? {
        let sk = try socket("rtnl_link_get_kernel")
        var link: OpaquePointer?
        let r = rtnl_link_get_kernel(sk, index, name, &link)
        if r == -CNL_NLE_OBJ_NOTFOUND || r == -CNL_NLE_NODEV { return nil }
        try check(r, "rtnl_link_get_kernel", "link \(name ?? "#\(index)")\(namespaceSuffix)")
        guard let link else { return nil }
        defer { rtnl_link_put(link) }
        return try body(link)
    }

    /// The ifindex of link `name`, or nil if there is none.
    public func linkIndex(named name: String) throws -> Int32? {
        try withKernelLink(name: name) { rtnl_link_get_ifindex($0) }
    }

    /// Whether a link called `name` exists.
    public func linkExists(named name: String) throws -> Bool {
        try linkIndex(named: name) != nil
    }

    /// The names of all links, in ifindex order (a one-shot rtnl_link_alloc_cache dump).
    public func linkNames() throws -> [String] {
        let sk = try socket("rtnl_link_alloc_cache")
        var cache: OpaquePointer?
        try check(rtnl_link_alloc_cache(sk, CNL_AF_UNSPEC, &cache), "rtnl_link_alloc_cache", "links\(namespaceSuffix)")
        guard let cache else { return [] }
        defer { nl_cache_free(cache) }
        var names: [(Int32, String)] = []
        var object = nl_cache_get_first(cache)
        while let obj = object {
            let link = obj // a link cache holds rtnl_link objects (nl_object is their header)
            if let cname = rtnl_link_get_name(link) {
                names.append((rtnl_link_get_ifindex(link), String(cString: cname)))
            }
            object = nl_cache_get_next(obj)
        }
        return names.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Whether link `name` is administratively up (IFF_UP) and has carrier (IFF_LOWER_UP);
    /// nil if there is no such link.
    public func linkState(named name: String) throws -> (up: Bool, carrier: Bool)? {
        try withKernelLink(name: name) { link in
            let flags = rtnl_link_get_flags(link)
            return (flags & CNL_IFF_UP != 0, flags & CNL_IFF_LOWER_UP != 0)
        }
    }

    /// The MAC address and MTU of link `name`; nil if there is no such link.
    public func linkAttributes(named name: String) throws -> (index: Int32, mac: MACAddress?, mtu: Int)? {
        try withKernelLink(name: name) { link in
            var octets = [UInt8](repeating: 0, count: 6)
            let mac: MACAddress? = cnl_link_get_mac(link, &octets) == 0
                ? MACAddress(rawValue: octets.reduce(0) { $0 << 8 | UInt64($1) }) : nil
            return (rtnl_link_get_ifindex(link), mac, Int(rtnl_link_get_mtu(link)))
        }
    }

    // MARK: - changing links

    /// Applies `changes` to the existing link (rtnl_link_change: RTM_NEWLINK, falling back
    /// to RTM_SETLINK on old kernels). Throws CNL_NLE_OBJ_NOTFOUND when the link is absent.
    private func change(index: Int32 = 0, name: String? = nil, operation: String, subject: String,
                        _ fill: (OpaquePointer) throws -> Void) throws {
        let sk = try socket(operation)
        let changed: Void? = try withKernelLink(index: index, name: name) { orig in
            guard let changes = rtnl_link_alloc() else {
                throw NetlinkError(operation: "rtnl_link_alloc", subject: subject, code: CNL_NLE_NOMEM)
            }
            defer { rtnl_link_put(changes) }
            try fill(changes)
            try check(rtnl_link_change(sk, orig, changes, 0), operation, subject)
        }
        if changed == nil { throw NetlinkError(operation: operation, subject: subject, code: CNL_NLE_OBJ_NOTFOUND) }
    }

    /// Moves link `name` into the namespace `fd` refers to (rtnl_link_set_ns_fd +
    /// rtnl_link_change; IFLA_NET_NS_FD). The link goes down and loses its addresses, and
    /// from then on is visible only in the target namespace. A TAP's fd keeps working.
    public func moveLink(named name: String, toNamespaceFD fd: Int32) throws {
        try change(name: name, operation: "rtnl_link_change(netns)", subject: "link \(name)\(namespaceSuffix) -> netns fd \(fd)") {
            rtnl_link_set_ns_fd($0, fd)
        }
    }

    /// Changes link `index` in one request (rtnl_link_change): rename (IFLA_IFNAME), set the
    /// MAC (IFLA_ADDRESS via nl_addr_build(AF_LLC)), the MTU, and IFF_UP on or off. Nil
    /// arguments are left as they are. The kernel applies the rename before the flags, so a
    /// down link can be renamed and brought up at once (a running one cannot be renamed).
    public func configureLink(index: Int32, name: String? = nil, mac: MACAddress? = nil, mtu: Int? = nil, up: Bool) throws {
        try change(index: index, operation: "rtnl_link_change", subject: "link #\(index)\(namespaceSuffix)") { link in
            if let name { rtnl_link_set_name(link, name) }
            if let mac {
                let r = mac.octets.withUnsafeBufferPointer { cnl_link_set_mac(link, $0.baseAddress) }
                try check(r, "nl_addr_build(AF_LLC)", "\(mac)")
            }
            if let mtu { rtnl_link_set_mtu(link, UInt32(mtu)) }
            if up { rtnl_link_set_flags(link, CNL_IFF_UP) } else { rtnl_link_unset_flags(link, CNL_IFF_UP) }
        }
    }

    /// Sets IFF_UP on link `name` (like `ip link set NAME up`).
    public func setLinkUp(named name: String) throws {
        try change(name: name, operation: "rtnl_link_change(up)", subject: "link \(name)\(namespaceSuffix)") {
            rtnl_link_set_flags($0, CNL_IFF_UP)
        }
    }

    /// Deletes link `name` (rtnl_link_delete, RTM_DELLINK). Throws NLE_NODEV if absent.
    /// A TAP's netdev is removed even while an fd holds it; that fd's reads and writes then
    /// fail with EBADFD.
    public func deleteLink(named name: String) throws {
        let sk = try socket("rtnl_link_delete")
        guard let link = rtnl_link_alloc() else {
            throw NetlinkError(operation: "rtnl_link_alloc", subject: "link \(name)", code: CNL_NLE_NOMEM)
        }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        try check(rtnl_link_delete(sk, link), "rtnl_link_delete", "link \(name)\(namespaceSuffix)")
    }

    // MARK: - addresses

    /// Adds IPv4 `address/prefixLength` to link `index` (rtnl_addr_add, RTM_NEWADDR with
    /// NLM_F_CREATE|NLM_F_EXCL). `address` is in host byte order: 10.77.0.1 is 0x0A4D0001.
    /// Throws CNL_NLE_EXIST if the address is already there.
    public func addIPv4Address(index: Int32, address: UInt32, prefixLength: Int) throws {
        let subject = "\(ipv4String(address))/\(prefixLength) on link #\(index)\(namespaceSuffix)"
        let sk = try socket("rtnl_addr_add")
        guard let addr = rtnl_addr_alloc() else {
            throw NetlinkError(operation: "rtnl_addr_alloc", subject: subject, code: CNL_NLE_NOMEM)
        }
        defer { rtnl_addr_put(addr) }
        rtnl_addr_set_ifindex(addr, index)
        try check(cnl_addr_set_ipv4_local(addr, address, Int32(prefixLength)), "nl_addr_build(AF_INET)", subject)
        try check(rtnl_addr_add(sk, addr, 0), "rtnl_addr_add", subject)
    }

    /// Adds `prefix` (an interface address with its prefix length, IPv4 or IPv6:
    /// `10.0.10.1/24`, `2001:db8::5/64`) to link `index` (rtnl_addr_add). With `noDAD`
    /// (the default) an IPv6 address gets IFA_F_NODAD: it is usable at once and can never be
    /// left `dadfailed`. Throws CNL_NLE_EXIST if the address is already there.
    public func addAddress(index: Int32, _ prefix: IPPrefix, noDAD: Bool = true) throws {
        let subject = "\(prefix) on link #\(index)\(namespaceSuffix)"
        let sk = try socket("rtnl_addr_add")
        let (family, bytes) = prefix.address.familyAndBytes
        try check(cnl_addr_add(sk, index, family, bytes, Int32(prefix.prefixLength), noDAD ? 1 : 0), "rtnl_addr_add", subject)
    }

    /// Adds a route to `destination` (host bits zero; `0.0.0.0/0` or `::/0` for a default
    /// route) through `gateway` (nil: directly connected) on link `index` (rtnl_route_add,
    /// main table, protocol static). Families must agree. Throws CNL_NLE_EXIST if the route
    /// exists, CNL_NLE_INVAL for mixed families.
    public func addRoute(to destination: IPPrefix, via gateway: IPAddress?, index: Int32) throws {
        let subject = "\(destination)\(gateway.map { " via \($0)" } ?? "") on link #\(index)\(namespaceSuffix)"
        let sk = try socket("rtnl_route_add")
        let (family, dst) = destination.address.familyAndBytes
        if let g = gateway, g.isIPv6 != destination.address.isIPv6 {
            throw NetlinkError(operation: "rtnl_route_add", subject: subject, code: CNL_NLE_INVAL)
        }
        let rc: Int32
        if let g = gateway {
            rc = cnl_route_add(sk, family, dst, Int32(destination.prefixLength), g.familyAndBytes.bytes, index)
        } else {
            rc = cnl_route_add(sk, family, dst, Int32(destination.prefixLength), nil, index)
        }
        try check(rc, "rtnl_route_add", subject)
    }
}

extension IPAddress {
    /// The address family (AF_INET or AF_INET6) and the address in network byte order.
    var familyAndBytes: (family: Int32, bytes: [UInt8]) {
        switch self {
        case .v4(let a):
            return (CNL_AF_INET, (0..<4).map { UInt8(truncatingIfNeeded: a.rawValue >> (24 - 8 * UInt32($0))) })
        case .v6(let a):
            let hi = (0..<8).map { UInt8(truncatingIfNeeded: a.high >> (56 - 8 * UInt64($0))) }
            let lo = (0..<8).map { UInt8(truncatingIfNeeded: a.low >> (56 - 8 * UInt64($0))) }
            return (CNL_AF_INET6, hi + lo)
        }
    }
}

/// Dotted-quad text of a host-order IPv4 address (for messages).
func ipv4String(_ a: UInt32) -> String {
    "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
}
