import Model

/// What a flow is keyed by: one frame's L2 identity (MACs, EtherType, VLAN, ingress and
/// egress interface) and, for IPv4/IPv6, its 5-tuple.
///
/// Packed into eight `UInt64` words (one 64-byte cache line) so that comparing two keys is
/// eight integer compares and hashing is eight multiply-rotates:
/// ```
///  w0  source MAC (48) | EtherType (16)
///  w1  destination MAC (48) | VLAN ID (12) | family (4: 0 L2, 4 IPv4, 6 IPv6)
///  w2  ingress interface ID (32) | egress interface ID (32)
///  w3  protocol (8) << 32 | source port (16) << 16 | destination port (16)
///  w4  w5  source address (IPv6: 128 bits; IPv4: low 32 bits of w5)
///  w6  w7  destination address (same)
/// ```
/// For ICMP and ICMPv6 the source port is 0 and the destination port holds type × 256 + code
/// (the `icmpTypeCodeIPv4`/`icmpTypeCodeIPv6` encoding of RFC 7012 §5.4.24/§5.4.25); for a
/// non-first fragment both ports are 0, because the transport header is not in the fragment.
public struct FlowKey: Hashable, Sendable {
    /// The packed words (layout above); read them through the named accessors.
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64
    /// The addresses (layout above).
    public var w4: UInt64, w5: UInt64, w6: UInt64, w7: UInt64

    @inlinable
    public init(w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0,
                w4: UInt64 = 0, w5: UInt64 = 0, w6: UInt64 = 0, w7: UInt64 = 0) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
        self.w4 = w4; self.w5 = w5; self.w6 = w6; self.w7 = w7
    }

    /// The network-layer family of a flow.
    public enum Family: UInt8, Sendable {
        /// Not IP (ARP, RARP, LLDP…) or an IP packet too broken to read: an L2 flow.
        case l2 = 0
        case ipv4 = 4
        case ipv6 = 6
    }

    /// `sourceMacAddress` (IE 56).
    public var sourceMAC: MACAddress { MACAddress(rawValue: w0 >> 16) }
    /// `destinationMacAddress` (IE 80).
    public var destinationMAC: MACAddress { MACAddress(rawValue: w1 >> 16) }
    /// The EtherType after any VLAN tags (`ethernetType`, IE 256).
    public var etherType: UInt16 { UInt16(truncatingIfNeeded: w0) }
    /// The switch's VLAN of the frame (0: the untagged domain, `vlan: none`).
    public var vlan: VLANID { VLANID(UInt16(truncatingIfNeeded: w1 >> 4) & 0xFFF) }
    /// L2, IPv4 or IPv6: which template the record uses.
    public var family: Family { Family(rawValue: UInt8(truncatingIfNeeded: w1 & 0xF)) ?? .l2 }
    /// Stable interface ID of the port the frame came in on (`ingressInterface`, IE 10).
    public var ingressInterface: UInt32 { UInt32(truncatingIfNeeded: w2 >> 32) }
    /// Stable interface ID of the port it left by; 0 when it was flooded (`egressInterface`, IE 14).
    public var egressInterface: UInt32 { UInt32(truncatingIfNeeded: w2) }
    /// IP protocol number (`protocolIdentifier`, IE 4); 0 for L2 flows.
    public var protocolIdentifier: UInt8 { UInt8(truncatingIfNeeded: w3 >> 32) }
    /// `sourceTransportPort` (IE 7); 0 for ICMP, non-first fragments and other protocols.
    public var sourcePort: UInt16 { UInt16(truncatingIfNeeded: w3 >> 16) }
    /// Destination port, or ICMP type × 256 + code.
    public var destinationPort: UInt16 { UInt16(truncatingIfNeeded: w3) }
    /// IPv4 source address (first octet most significant); meaningful for `.ipv4` only.
    public var sourceIPv4: UInt32 { UInt32(truncatingIfNeeded: w5) }
    /// IPv4 destination address; meaningful for `.ipv4` only.
    public var destinationIPv4: UInt32 { UInt32(truncatingIfNeeded: w7) }
    /// IPv6 source address as (high, low) 64-bit halves, network order.
    public var sourceIPv6: (UInt64, UInt64) { (w4, w5) }
    /// IPv6 destination address as (high, low) halves; meaningful for `.ipv6` only.
    public var destinationIPv6: (UInt64, UInt64) { (w6, w7) }
    /// True for ICMP (IPv4, protocol 1) and ICMPv6 (protocol 58) flows.
    public var isICMP: Bool {
        (family == .ipv4 && protocolIdentifier == 1) || (family == .ipv6 && protocolIdentifier == 58)
    }

    /// A 64-bit hash of the key, mixed with `seed` (a per-table random value, so that a guest
    /// cannot aim frames at one probe chain). Eight multiply-xorshift rounds.
    @inlinable @inline(__always)
    public func hash(seed: UInt64) -> UInt64 {
        @inline(__always) func mix(_ h: UInt64, _ v: UInt64) -> UInt64 {
            var x = (h ^ v) &* 0x9E37_79B9_7F4A_7C15
            x ^= x >> 29
            return x
        }
        var h = seed
        h = mix(h, w0); h = mix(h, w1); h = mix(h, w2); h = mix(h, w3)
        h = mix(h, w4); h = mix(h, w5); h = mix(h, w6); h = mix(h, w7)
        h ^= h >> 32
        return h &* 0xD6E8_FEB8_6659_FD93
    }
}

/// Why a frame's network header could not be read. The frame is still counted, as an L2
/// flow (it did cross the switch); each anomaly has its own counter in `FlowTable`.
public enum FlowParseAnomaly: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Shorter than an Ethernet header (or than the tags it announces): not counted at all.
    case runt = 0
    /// EtherType IPv4/IPv6 but the IP header is cut short, or its length field is impossible.
    case truncatedNetworkHeader
    /// EtherType IPv4/IPv6 but the version nibble disagrees.
    case badIPVersion
    /// The IP header is fine but the transport header (ports, ICMP type) is cut short:
    /// counted as an IP flow with ports 0.
    case truncatedTransportHeader

    public var description: String {
        switch self {
        case .runt: return "runt"
        case .truncatedNetworkHeader: return "truncated-network-header"
        case .badIPVersion: return "bad-ip-version"
        case .truncatedTransportHeader: return "truncated-transport-header"
        }
    }
}

extension FlowKey {
    /// Builds the key of one frame. Reads at most the Ethernet header (with up to two tags),
    /// the IP header (IPv6: up to 8 extension headers) and 4 bytes of transport header;
    /// never traps, never allocates. `nil` only for a runt; other anomalies are reported
    /// through `anomaly` and give an L2 key (or ports 0).
    ///
    /// - Parameters:
    ///   - frame: the frame from its Ethernet header on (no virtio-net header).
    ///   - ingress, egress: stable interface IDs (egress 0: flooded).
    ///   - vlan: the switch's VLAN classification of the frame.
    @inlinable
    public static func of(frame: UnsafeRawBufferPointer, ingress: UInt32, egress: UInt32, vlan: VLANID,
                          anomaly: inout FlowParseAnomaly?) -> FlowKey? {
        guard let h = FrameHeader.parse(frame) else { anomaly = .runt; return nil }
        var key = FlowKey()
        key.w0 = h.source.rawValue << 16 | UInt64(h.etherType)
        let l2w1 = h.destination.rawValue << 16 | UInt64(vlan.rawValue & 0xFFF) << 4
        key.w1 = l2w1
        key.w2 = UInt64(ingress) << 32 | UInt64(egress)
        let n = frame.count
        let off = h.payloadOffset
        @inline(__always) func byte(_ o: Int) -> UInt8 { frame.load(fromByteOffset: o, as: UInt8.self) }
        @inline(__always) func be16(_ o: Int) -> UInt16 { UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        @inline(__always) func be32(_ o: Int) -> UInt32 { UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        @inline(__always) func be64(_ o: Int) -> UInt64 { UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }

        var proto: UInt8 = 0
        var l4 = 0
        var firstFragment = true
        switch h.etherType {
        case EtherType.ipv4:
            guard n >= off + 20 else { anomaly = .truncatedNetworkHeader; return key }
            let vihl = byte(off)
            guard vihl >> 4 == 4 else { anomaly = .badIPVersion; return key }
            let ihl = Int(vihl & 0xF) * 4
            guard ihl >= 20, n >= off + ihl else { anomaly = .truncatedNetworkHeader; return key }
            proto = byte(off + 9)
            firstFragment = be16(off + 6) & 0x1FFF == 0
            key.w5 = UInt64(be32(off + 12))
            key.w7 = UInt64(be32(off + 16))
            key.w1 = l2w1 | 4
            l4 = off + ihl
        case EtherType.ipv6:
            guard n >= off + 40 else { anomaly = .truncatedNetworkHeader; return key }
            guard byte(off) >> 4 == 6 else { anomaly = .badIPVersion; return key }
            key.w4 = be64(off + 8); key.w5 = be64(off + 16)
            key.w6 = be64(off + 24); key.w7 = be64(off + 32)
            key.w1 = l2w1 | 6
            proto = byte(off + 6)
            l4 = off + 40
            // Extension headers (RFC 8200 §4): hop-by-hop 0, routing 43, fragment 44,
            // destination options 60, AH 51. At most 8, then the rest counts as "no ports".
            var walked = 0
            while walked < 8 {
                if proto == 0 || proto == 43 || proto == 60 {
                    guard n >= l4 + 8 else { anomaly = .truncatedTransportHeader; proto = 0; l4 = n; break }
                    proto = byte(l4)
                    l4 += (Int(byte(l4 + 1)) + 1) * 8
                } else if proto == 44 {
                    guard n >= l4 + 8 else { anomaly = .truncatedTransportHeader; proto = 0; l4 = n; break }
                    firstFragment = firstFragment && be16(l4 + 2) & 0xFFF8 == 0
                    proto = byte(l4)
                    l4 += 8
                } else if proto == 51 {
                    guard n >= l4 + 8 else { anomaly = .truncatedTransportHeader; proto = 0; l4 = n; break }
                    proto = byte(l4)
                    l4 += (Int(byte(l4 + 1)) + 2) * 4
                } else { break }
                walked += 1
            }
        default:
            return key
        }
        var ports: UInt64 = 0
        if firstFragment {
            switch proto {
            case 6, 17, 33, 132, 136:   // TCP, UDP, DCCP, SCTP, UDP-Lite: ports first
                if n >= l4 + 4 { ports = UInt64(be16(l4)) << 16 | UInt64(be16(l4 + 2)) }
                else { anomaly = .truncatedTransportHeader }
            case 1 where key.w1 & 0xF == 4, 58 where key.w1 & 0xF == 6:   // ICMP, ICMPv6: type, code
                if n >= l4 + 2 { ports = UInt64(byte(l4)) << 8 | UInt64(byte(l4 + 1)) }
                else { anomaly = .truncatedTransportHeader }
            default: break
            }
        }
        key.w3 = UInt64(proto) << 32 | ports
        return key
    }
}
