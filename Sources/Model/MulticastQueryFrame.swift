/// Builders for the general queries a snooping switch's querier sends (untagged Ethernet
/// frames; the sender inserts a VLAN tag per port as it does for any egress).
///
/// ```
///  IGMP: 01:00:5e:00:00:01 ← MAC | IPv4 TOS 0xc0, TTL 1, Router Alert, SRC → 224.0.0.1 | IGMP 0x11
///  MLD:  33:33:00:00:00:01 ← MAC | IPv6 hop limit 1, fe80::EUI-64 → ff02::1 | HbH Router Alert | ICMPv6 130
/// ```
/// The IPv4 source is configurable (`0.0.0.0` by default, as Linux's bridge querier sends);
/// the MLD source must be link-local, or hosts drop the query (RFC 3810 §5.1.14).
public enum MulticastQueryFrame {
    /// The all-systems group `224.0.0.1` as a destination MAC (RFC 1112 §6.4).
    public static let allSystemsMAC = MACAddress(rawValue: 0x0100_5E00_0001)
    /// The all-nodes group `ff02::1` as a destination MAC (RFC 2464 §7).
    public static let allNodesMAC = MACAddress(rawValue: 0x3333_0000_0001)

    /// An IGMP general query: IGMPv2 (8 bytes, RFC 2236 §2) or IGMPv3 (12 bytes, RFC 3376 §4.1).
    ///
    /// - Parameters:
    ///   - version: 2 or 3.
    ///   - source: the IPv4 source, host order.
    ///   - maxResponseMilliseconds: Max Resp Time (tenths of a second on the wire; v2 ≤ 25.5 s).
    ///   - queryIntervalSeconds: QQIC (v3 only).
    ///   - robustness: QRV (v3 only, 1–7).
    public static func igmp(version: Int, from mac: MACAddress, source: UInt32, maxResponseMilliseconds: Int,
                            queryIntervalSeconds: Int, robustness: Int) -> [UInt8] {
        let tenths = max(1, maxResponseMilliseconds / 100)
        let code: UInt8 = version == 2 ? UInt8(min(255, tenths)) : encodeCode8(tenths)
        var igmp: [UInt8] = [0x11, code, 0, 0, 0, 0, 0, 0]
        if version != 2 { igmp += [UInt8(min(7, max(1, robustness))), encodeCode8(queryIntervalSeconds), 0, 0] }
        let sum = ~internetChecksum(igmp)
        igmp[2] = UInt8(sum >> 8); igmp[3] = UInt8(sum & 0xFF)
        var ip: [UInt8] = [0x46, 0xC0] + be16(24 + igmp.count)
        ip += [0, 0, 0x40, 0, 1, MulticastSignal.igmpProtocol, 0, 0]
        ip += be32(source) + [224, 0, 0, 1] + [0x94, 0x04, 0x00, 0x00]
        let ipSum = ~internetChecksum(ip)
        ip[10] = UInt8(ipSum >> 8); ip[11] = UInt8(ipSum & 0xFF)
        return allSystemsMAC.octets + mac.octets + [0x08, 0x00] + ip + igmp
    }

    /// An MLDv2 general query (RFC 3810 §5.1) from the link-local address `source`.
    public static func mld(from mac: MACAddress, source: WireIPAddress, maxResponseMilliseconds: Int,
                           queryIntervalSeconds: Int, robustness: Int) -> [UInt8] {
        var icmp: [UInt8] = [130, 0, 0, 0] + be16(Int(encodeCode16(maxResponseMilliseconds))) + [0, 0]
        icmp += [UInt8](repeating: 0, count: 16)                          // general: group ::
        icmp += [UInt8(min(7, max(1, robustness))), encodeCode8(queryIntervalSeconds), 0, 0]
        let hbh: [UInt8] = [MulticastSignal.icmpv6NextHeader, 0, 5, 2, 0, 0, 1, 0]   // Router Alert (MLD), PadN
        let destination = WireIPAddress(high: 0xFF02_0000_0000_0000, low: 1)
        // Checksum over the pseudo-header (RFC 8200 §8.1) and the message.
        let pseudo = source.bytes + destination.bytes + be32(UInt32(icmp.count)) + [0, 0, 0, MulticastSignal.icmpv6NextHeader]
        let sum = ~internetChecksum(pseudo + icmp)
        icmp[2] = UInt8(sum >> 8); icmp[3] = UInt8(sum & 0xFF)
        let ip: [UInt8] = [0x60, 0, 0, 0] + be16(hbh.count + icmp.count) + [0, 1] + source.bytes + destination.bytes
        return allNodesMAC.octets + mac.octets + [0x86, 0xDD] + ip + hbh + icmp
    }

    /// The 8-bit code of IGMPv3's Max Resp Code and QQIC (RFC 3376 §4.1.1, §4.1.7): exact
    /// below 128, else the floating-point form rounded down.
    public static func encodeCode8(_ value: Int) -> UInt8 {
        if value < 128 { return UInt8(max(0, value)) }
        var exponent = 0
        while exponent < 7 && (value >> (exponent + 3)) > 0x1F { exponent += 1 }
        let mantissa = min(0x0F, (value >> (exponent + 3)) & 0x0F)
        return UInt8(0x80 | exponent << 4 | mantissa)
    }

    /// MLDv2's 16-bit Maximum Response Code (RFC 3810 §5.1.3), from milliseconds.
    public static func encodeCode16(_ value: Int) -> UInt16 {
        if value < 32768 { return UInt16(max(0, value)) }
        var exponent = 0
        while exponent < 7 && (value >> (exponent + 3)) > 0x1FFF { exponent += 1 }
        let mantissa = min(0x0FFF, (value >> (exponent + 3)) & 0x0FFF)
        return UInt16(0x8000 | exponent << 12 | mantissa)
    }

    static func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
        bytes.withUnsafeBytes { Model.internetChecksum($0, from: 0, count: $0.count, initial: 0) }
    }
    static func be16(_ v: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * $0)) } }
}
