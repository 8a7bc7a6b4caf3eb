import Model

/// IGMP and MLD frames for tests, built byte by byte from the RFCs (independently of the
/// switch's own query builders), with correct checksums unless told otherwise.
public enum MulticastFrames {
    /// An IPv4 packet (IHL 6 with a Router Alert when `routerAlert`) carrying `payload` of
    /// `protocol` from `source` to `destination`, in an Ethernet frame from `mac`.
    public static func ipv4(from mac: MACAddress, source: UInt32, destination: UInt32, protocol proto: UInt8, payload: [UInt8],
                            routerAlert: Bool = true, vlan: UInt16? = nil) -> [UInt8] {
        let options: [UInt8] = routerAlert ? [0x94, 0x04, 0, 0] : []
        let ihl = (20 + options.count) / 4
        var ip: [UInt8] = [UInt8(0x40 | ihl), 0xC0, 0, 0, 0, 0, 0x40, 0, 1, proto, 0, 0]
        let total = 20 + options.count + payload.count
        ip[2] = UInt8(total >> 8); ip[3] = UInt8(total & 0xFF)
        ip += be32(source) + be32(destination) + options
        let sum = ~checksum(ip)
        ip[10] = UInt8(sum >> 8); ip[11] = UInt8(sum & 0xFF)
        return ethernet(dst: multicastMAC(ipv4: destination), src: mac, type: 0x0800, vlan: vlan) + ip + payload
    }

    /// An IGMP message with its checksum filled in (`corrupt`: a wrong one).
    public static func igmp(_ bytes: [UInt8], corrupt: Bool = false) -> [UInt8] {
        var m = bytes
        m[2] = 0; m[3] = 0
        var sum = ~checksum(m)
        if corrupt { sum ^= 0x5A5A }
        m[2] = UInt8(sum >> 8); m[3] = UInt8(sum & 0xFF)
        return m
    }

    /// IGMPv2 membership report for `group` (RFC 2236 §2), sent to the group.
    public static func igmpv2Report(from mac: MACAddress, source: UInt32, group: UInt32, vlan: UInt16? = nil) -> [UInt8] {
        ipv4(from: mac, source: source, destination: group, protocol: 2, payload: igmp([0x16, 0, 0, 0] + be32(group)), vlan: vlan)
    }

    /// IGMPv2 leave for `group`, to 224.0.0.2.
    public static func igmpv2Leave(from mac: MACAddress, source: UInt32, group: UInt32) -> [UInt8] {
        ipv4(from: mac, source: source, destination: 0xE000_0002, protocol: 2, payload: igmp([0x17, 0, 0, 0] + be32(group)))
    }

    /// IGMPv3 report (RFC 3376 §4.2) with `records` (type, group, sources), to 224.0.0.22.
    public static func igmpv3Report(from mac: MACAddress, source: UInt32, records: [(UInt8, UInt32, [UInt32])]) -> [UInt8] {
        var m: [UInt8] = [0x22, 0, 0, 0, 0, 0, UInt8(records.count >> 8), UInt8(records.count & 0xFF)]
        for (type, group, sources) in records {
            m += [type, 0, UInt8(sources.count >> 8), UInt8(sources.count & 0xFF)] + be32(group)
            for s in sources { m += be32(s) }
        }
        return ipv4(from: mac, source: source, destination: 0xE000_0016, protocol: 2, payload: igmp(m))
    }

    /// IGMP general query: v2 (8 bytes) or v3 (12 bytes), to 224.0.0.1.
    public static func igmpQuery(from mac: MACAddress, source: UInt32, version: Int = 2, group: UInt32 = 0, vlan: UInt16? = nil) -> [UInt8] {
        var m: [UInt8] = [0x11, 100, 0, 0] + be32(group)
        if version == 3 { m += [2, 125, 0, 0] }
        return ipv4(from: mac, source: source, destination: group == 0 ? 0xE000_0001 : group, protocol: 2, payload: igmp(m), vlan: vlan)
    }

    /// UDP data to `group`.
    public static func udp(from mac: MACAddress, source: UInt32, group: UInt32, payload: Int = 32, vlan: UInt16? = nil) -> [UInt8] {
        let udp: [UInt8] = [0x13, 0x88, 0x13, 0x88, UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xFF), 0, 0]
            + [UInt8](repeating: 0xAB, count: payload)
        return ipv4(from: mac, source: source, destination: group, protocol: 17, payload: udp, routerAlert: false, vlan: vlan)
    }

    /// An IPv6 packet from `source` to `destination`; with `routerAlert`, a Hop-by-Hop header
    /// carrying the MLD Router Alert comes first. `next` is the upper-layer protocol.
    public static func ipv6(from mac: MACAddress, source: [UInt8], destination: [UInt8], next: UInt8, payload: [UInt8],
                            routerAlert: Bool = true) -> [UInt8] {
        var upper = payload
        if next == 58 {
            // ICMPv6 checksum over the pseudo-header.
            upper[2] = 0; upper[3] = 0
            let pseudo = source + destination + be32(UInt32(upper.count)) + [0, 0, 0, 58]
            let sum = ~checksum(pseudo + upper)
            upper[2] = UInt8(sum >> 8); upper[3] = UInt8(sum & 0xFF)
        }
        let hbh: [UInt8] = routerAlert ? [next, 0, 5, 2, 0, 0, 1, 0] : []
        let length = hbh.count + upper.count
        let ip: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xFF), routerAlert ? 0 : next, 1] + source + destination
        let dmac = MACAddress(rawValue: 0x3333_0000_0000 | UInt64(destination[12]) << 24 | UInt64(destination[13]) << 16
                              | UInt64(destination[14]) << 8 | UInt64(destination[15]))
        return ethernet(dst: dmac, src: mac, type: 0x86DD, vlan: nil) + ip + hbh + upper
    }

    /// `fe80::N`.
    public static func linkLocal(_ n: UInt8) -> [UInt8] { [0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [n] }
    /// `ff15::N` (a site-scope group: snooped).
    public static func siteGroup(_ n: UInt8) -> [UInt8] { [0xFF, 0x15] + [UInt8](repeating: 0, count: 13) + [n] }
    /// `ff02::16` (all MLDv2-capable routers).
    public static let allMLDv2Routers: [UInt8] = [0xFF, 0x02] + [UInt8](repeating: 0, count: 13) + [0x16]

    /// MLDv1 report (RFC 2710) for `group`, sent to it.
    public static func mldv1Report(from mac: MACAddress, source: [UInt8], group: [UInt8], routerAlert: Bool = true) -> [UInt8] {
        ipv6(from: mac, source: source, destination: group, next: 58, payload: [131, 0, 0, 0, 0, 0, 0, 0] + group, routerAlert: routerAlert)
    }

    /// MLDv2 report (RFC 3810 §5.2) with `records` (type, group, source count), to ff02::16.
    public static func mldv2Report(from mac: MACAddress, source: [UInt8], records: [(UInt8, [UInt8], Int)]) -> [UInt8] {
        var m: [UInt8] = [143, 0, 0, 0, 0, 0, UInt8(records.count >> 8), UInt8(records.count & 0xFF)]
        for (type, group, sources) in records {
            m += [type, 0, 0, UInt8(sources)] + group
            for i in 0..<sources { m += linkLocal(UInt8(100 + i)) }
        }
        return ipv6(from: mac, source: source, destination: allMLDv2Routers, next: 58, payload: m)
    }

    /// MLDv2 general query from `source`, to ff02::1.
    public static func mldQuery(from mac: MACAddress, source: [UInt8]) -> [UInt8] {
        let allNodes: [UInt8] = [0xFF, 0x02] + [UInt8](repeating: 0, count: 13) + [1]
        let m: [UInt8] = [130, 0, 0, 0, 0x27, 0x10, 0, 0] + [UInt8](repeating: 0, count: 16) + [2, 125, 0, 0]
        return ipv6(from: mac, source: source, destination: allNodes, next: 58, payload: m)
    }

    /// UDP data over IPv6 to `group`.
    public static func udp6(from mac: MACAddress, source: [UInt8], group: [UInt8]) -> [UInt8] {
        ipv6(from: mac, source: source, destination: group, next: 17, payload: [0x13, 0x88, 0x13, 0x88, 0, 16, 0, 0] + [UInt8](repeating: 1, count: 8),
             routerAlert: false)
    }

    public static func multicastMAC(ipv4 group: UInt32) -> MACAddress { MACAddress(rawValue: 0x0100_5E00_0000 | UInt64(group & 0x7F_FFFF)) }

    static func ethernet(dst: MACAddress, src: MACAddress, type: UInt16, vlan: UInt16?) -> [UInt8] {
        var e = dst.octets + src.octets
        if let v = vlan { e += [0x81, 0x00, UInt8(v >> 8), UInt8(v & 0xFF)] }
        return e + [UInt8(type >> 8), UInt8(type & 0xFF)]
    }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func checksum(_ b: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < b.count { sum += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { sum += UInt32(b[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return UInt16(sum)
    }
}

/// `a.b.c.d` as a host-order IPv4 address.
public func ipv4(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: UInt32) -> UInt32 { a << 24 | b << 16 | c << 8 | d }
