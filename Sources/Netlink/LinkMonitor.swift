import CNetlink
import Model
#if canImport(Glibc)
import Glibc
#endif

/// One link change the kernel announced (RTM_NEWLINK / RTM_DELLINK on RTNLGRP_LINK).
public struct LinkEvent: Equatable, Sendable {
    public var ifindex: Int32
    /// `IFF_UP`: administratively up.
    public var up: Bool
    /// `IFF_LOWER_UP`: the carrier is present.
    public var carrier: Bool
    /// RTM_DELLINK: the interface is gone.
    public var deleted: Bool
    /// IFLA_IFNAME, when the message carried it.
    public var name: String
}

/// A netlink socket subscribed to link events (rtnetlink `RTNLGRP_LINK`, libnl), read as
/// they arrive: carrier loss, admin down, an interface deleted.
///
/// One owner (the team monitor's thread). Events that overflow one read are lost:
/// `read(max:)` says so, and the caller re-queries the link state.
public final class LinkMonitor {
    private var socket: OpaquePointer?
    private let buffer: UnsafeMutablePointer<cnl_link_event>
    private let capacity = 64

    /// Opens and subscribes the socket.
    /// - Throws: `NetlinkError` when libnl cannot open or subscribe it.
    public init() throws {
        var sk: OpaquePointer?
        let rc = cnl_link_monitor_open(&sk)
        guard rc >= 0, let sk else { throw NetlinkError(operation: "watch link events (RTNLGRP_LINK)", subject: "", code: rc) }
        socket = sk
        buffer = .allocate(capacity: capacity)
    }

    deinit { close(); buffer.deallocate() }

    /// Waits up to `timeoutMilliseconds` for events (`poll(2)`); true when some are queued.
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        guard let sk = socket else { return false }
        var pfd = pollfd(fd: cnl_link_monitor_fd(sk), events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, timeoutMilliseconds) > 0
    }

    /// The events queued now (none when nothing was). `overflowed` is true when more were
    /// queued than one read takes: some were lost, re-query what matters.
    public func read() -> (events: [LinkEvent], overflowed: Bool) {
        guard let sk = socket else { return ([], false) }
        let n = Int(cnl_link_monitor_read(sk, buffer, Int32(capacity)))
        guard n > 0 else { return ([], n < 0) }
        var out: [LinkEvent] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let e = buffer[i]
            let name = withUnsafeBytes(of: e.name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            out.append(LinkEvent(ifindex: e.ifindex, up: e.flags & CNL_IFF_UP != 0, carrier: e.flags & CNL_IFF_LOWER_UP != 0,
                                 deleted: e.deleted != 0, name: name))
        }
        return (out, n >= capacity)
    }

    public func close() {
        if let s = socket { nl_socket_free(s); socket = nil }
    }
}
