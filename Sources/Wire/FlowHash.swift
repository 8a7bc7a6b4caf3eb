import Model

/// A stable, cheap hash of a frame's flow: MAC addresses, up to two VLAN IDs, the
/// EtherType, and for IPv4/IPv6 the addresses and protocol, plus TCP/UDP/SCTP ports when
/// the L4 header directly follows the IP header of a non-fragment.
///
/// Used for VXLAN's UDP source port (RFC 7348 §5: "a hash of fields from the inner packet",
/// for ECMP entropy) and the IPv6 flow label (RFC 6438). Every frame of one TCP or UDP
/// flow hashes alike, whatever its payload, length, TTL or IP ID — so a flow stays on one
/// underlay path and in order. The value is deterministic (no per-process seed): the same
/// flow picks the same port on every host and after restarts. Not symmetric: the two
/// directions of a connection may take different ports, as with Linux's vxlan.
///
/// Cost: one header parse and a few multiply-xorshift rounds (the SplitMix64 finalizer,
/// the same mixer as Core's team hash); no allocation, no traps on any input.
public enum FlowHash {
    /// The 32-bit flow hash of `frame` (Ethernet first).
    public static func of(_ frame: UnsafeRawBufferPointer) -> UInt32 {
        let n = frame.count
        guard n >= 14, let base = frame.baseAddress else {
            return finish(mix(0x5441_5045, UInt64(n)))     // runts: any fixed value works
        }
        @inline(__always) func be16(_ o: Int) -> UInt64 { UInt64(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        @inline(__always) func be32(_ o: Int) -> UInt64 { UInt64(UInt32(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        @inline(__always) func be64(_ o: Int) -> UInt64 { UInt64(bigEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        // Both MACs (bytes 0–11) as two words; then up to two tags' VIDs and the EtherType.
        var h = mix(be64(0), be32(8))
        var l3 = 14
        var type = be16(12)
        var vids: UInt64 = 0
        while EtherTypes.isTag(UInt16(type)) && l3 < 22 && l3 + 4 <= n {
            vids = vids << 12 | (be16(l3) & 0x0FFF)
            type = be16(l3 + 2)
            l3 += 4
        }
        h = mix(h, vids << 16 | type)
        var l4 = -1
        var proto: UInt64 = 0
        switch UInt16(type) {
        case EtherTypes.ipv4 where l3 + 20 <= n:
            h = mix(h, be64(l3 + 12))                                   // source, destination
            proto = UInt64(base.load(fromByteOffset: l3 + 9, as: UInt8.self))
            let ihl = Int(base.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) * 4
            if be16(l3 + 6) & 0x3FFF == 0 && ihl >= 20 { l4 = l3 + ihl }   // not a fragment
        case EtherTypes.ipv6 where l3 + 40 <= n:
            h = mix(h, be64(l3 + 8) ^ (be64(l3 + 16) &* 0x9E37_79B9_7F4A_7C15))    // source address
            h = mix(h, be64(l3 + 24) ^ (be64(l3 + 32) &* 0xC2B2_AE3D_27D4_EB4F))   // destination address
            proto = UInt64(base.load(fromByteOffset: l3 + 6, as: UInt8.self))
            l4 = l3 + 40
        default:
            break
        }
        // TCP, UDP, SCTP (132), UDP-Lite (136): the ports are the first 4 bytes.
        if l4 >= 0, proto == 6 || proto == 17 || proto == 132 || proto == 136, l4 + 4 <= n {
            h = mix(h, proto << 32 | be32(l4))
        } else {
            h = mix(h, proto)
        }
        return finish(h)
    }

    @inline(__always)
    static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = (a ^ b) &+ 0x9E37_79B9_7F4A_7C15 &+ (a << 6)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    static func finish(_ h: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: h ^ (h >> 32)) }
}
