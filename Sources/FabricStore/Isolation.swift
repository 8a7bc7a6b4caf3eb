import CFabric
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What an isolated host does with its guests (`ha: {isolation-response: …}`; VMware HA's
/// host isolation response).
public enum IsolationResponse: String, Sendable {
    /// Keep running them (default).
    case none
    /// Stop its QEMU guests, so the survivors can restart them without two copies running.
    case powerOff = "power-off"
}

/// Host isolation as VMware HA defines it, as a state machine: a host is isolated when it
/// has lost its lease (no renewal for longer than the lease TTL, so etcd has expired it or
/// will at once) and none of its isolation addresses answers. An etcd outage while an
/// isolation address answers is not isolation: nothing is powered off. With no isolation
/// addresses configured a host never declares itself isolated.
///
/// Timing against the survivors (`FailoverMonitor`): a survivor restarts the guests no
/// earlier than TTL + `grace` after this host's last renewal; this host decides at its first
/// keep-alive tick after TTL, plus one probe timeout. With the defaults (TTL 3 s, tick 1 s,
/// probe 0.5 s, grace 3 s) the power-off callback runs ≥ 1.5 s before any survivor may
/// restart, so the runtime must power off hard (SIGKILL or QMP `quit`), not wait for an
/// ACPI shutdown.
public struct IsolationMonitor: Sendable, Equatable {
    /// The lease TTL in seconds.
    public let ttl: Double
    /// Monotonic time at which the last successful renewal was sent (the lease was renewed
    /// no earlier, so it expires no earlier than this + TTL).
    public private(set) var lastRenewal: Double
    /// Whether the host is isolated now.
    public private(set) var isolated = false
    /// Whether the guests were powered off in this isolation episode.
    public private(set) var poweredOff = false

    /// What the service should do after a probe.
    public enum Action: Sendable, Equatable {
        /// Nothing (not isolated, or already acted in this episode).
        case nothing
        /// The host just became isolated: report it, and power off when `powerOff`.
        case isolated(powerOff: Bool)
        /// The host was isolated and an isolation address answers again.
        case recovered
    }

    /// A monitor for a lease of `ttl` seconds last renewed at monotonic time `renewedAt`.
    public init(ttl: Double, renewedAt: Double) { self.ttl = ttl; self.lastRenewal = renewedAt }

    /// A renewal sent at `sendTime` succeeded: the episode (if any) ends.
    public mutating func renewed(sentAt sendTime: Double) -> Action {
        lastRenewal = max(lastRenewal, sendTime)
        let was = isolated
        isolated = false; poweredOff = false
        return was ? .recovered : .nothing
    }

    /// Whether the lease must be taken as lost at monotonic time `now`.
    public func leaseLost(now: Double) -> Bool { now - lastRenewal > ttl }

    /// The result of probing the isolation addresses at `now` (call only while the lease is
    /// lost). `anyAnswered`: at least one address replied. `response`: the configured one.
    public mutating func probed(anyAnswered: Bool, now: Double, response: IsolationResponse) -> Action {
        guard leaseLost(now: now) else { return .nothing }
        if anyAnswered {
            if isolated { isolated = false; return .recovered }
            return .nothing
        }
        if isolated { return .nothing }
        isolated = true
        let off = response == .powerOff && !poweredOff
        if off { poweredOff = true }
        return .isolated(powerOff: off)
    }
}

/// ICMP echo (RFC 792; ICMPv6 RFC 4443 §4) to isolation addresses, as VMware HA pings its
/// isolation addresses. One socket per address, all sent at once, answered when any
/// replies or the timeout passes. Uses an unprivileged ping socket (SOCK_DGRAM,
/// IPPROTO_ICMP; net.ipv4.ping_group_range) when allowed, else a raw socket (CAP_NET_RAW).
/// Sockets are made inside `namespace` (/run/netns/NAME) when given.
public struct ICMPProbe: Sendable {
    /// Network namespace file to probe from (nil: the process's own).
    public var namespace: String?
    /// A probe from `namespace`.
    public init(namespace: String? = nil) { self.namespace = namespace }

    /// The first address that answered within `timeout` seconds (nil: none), and one reason
    /// per address that could not even be probed.
    public func firstAnswer(_ addresses: [String], timeout: Double) -> (answered: String?, errors: [String]) {
        var sockets: [(fd: Int32, address: String, v6: Bool, raw: Bool, id: UInt16)] = []
        var errors: [String] = []
        defer { for s in sockets { close(s.fd) } }
        let id = UInt16.random(in: 1...0xFFFF)
        for address in addresses {
            var v4 = sockaddr_in(), v6 = sockaddr_in6()
            let isV4 = inet_pton(AF_INET, address, &v4.sin_addr) == 1
            let isV6 = !isV4 && inet_pton(AF_INET6, address, &v6.sin6_addr) == 1
            guard isV4 || isV6 else { errors.append("\(address): not an IP address"); continue }
            let family = isV4 ? AF_INET : AF_INET6
            let proto = isV4 ? Int32(IPPROTO_ICMP) : Int32(IPPROTO_ICMPV6)
            var raw = false
            var fd = open(family: family, type: Int32(SOCK_DGRAM.rawValue), proto: proto)
            if fd < 0 { raw = true; fd = open(family: family, type: Int32(SOCK_RAW.rawValue), proto: proto) }
            guard fd >= 0 else { errors.append("\(address): cannot open an ICMP socket: \(String(cString: strerror(-fd)))"); continue }
            let connected: Int32
            if isV4 {
                v4.sin_family = sa_family_t(AF_INET)
                connected = withUnsafePointer(to: &v4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            } else {
                v6.sin6_family = sa_family_t(AF_INET6)
                connected = withUnsafePointer(to: &v6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            }
            if connected != 0 { errors.append("\(address): \(String(cString: strerror(errno)))"); close(fd); continue }
            var packet: [UInt8] = [isV4 ? 8 : 128, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xff), 0, 1]
            packet += Array("tapestry-isolate".utf8)
            if isV4 {
                let sum = Self.checksum(packet)
                packet[2] = UInt8(sum >> 8); packet[3] = UInt8(sum & 0xff)
            }   // ICMPv6: the kernel fills in the checksum (it covers a pseudo-header)
            if send(fd, packet, packet.count, Int32(MSG_NOSIGNAL)) < 0 {
                errors.append("\(address): send: \(String(cString: strerror(errno)))"); close(fd); continue
            }
            sockets.append((fd, address, isV6, raw, id))
        }
        let deadline = Deadline.after(timeout)
        var buffer = [UInt8](repeating: 0, count: 1500)
        while !sockets.isEmpty {
            let ms = deadline.pollMilliseconds
            if ms == 0 { break }
            var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let r = poll(&fds, nfds_t(fds.count), ms)
            if r < 0 && errno != EINTR { break }
            for (i, p) in fds.enumerated() where p.revents != 0 {
                let s = sockets[i]
                while true {
                    let n = recv(s.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    if n <= 0 { break }
                    var icmp = ArraySlice(buffer[0..<n])
                    if s.raw && !s.v6 {   // a raw IPv4 socket hands over the IP header too
                        let ihl = Int(buffer[0] & 0x0f) * 4
                        guard n >= ihl + 8 else { continue }
                        icmp = buffer[ihl..<n]
                    }
                    guard icmp.count >= 8 else { continue }
                    let type = icmp[icmp.startIndex]
                    let replyID = UInt16(icmp[icmp.startIndex + 4]) << 8 | UInt16(icmp[icmp.startIndex + 5])
                    let isReply = s.v6 ? type == 129 : type == 0
                    // A ping socket's replies carry the kernel's identifier, and only its own arrive.
                    if isReply && (!s.raw || replyID == s.id) { return (s.address, errors) }
                }
            }
        }
        return (nil, errors)
    }

    private func open(family: Int32, type: Int32, proto: Int32) -> Int32 {
        let t = type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if let namespace { return cf_socket_in_netns(namespace, family, t, proto) }
        let fd = socket(family, t, proto)
        return fd >= 0 ? fd : -errno
    }

    /// The Internet checksum (RFC 1071) of `bytes`.
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
