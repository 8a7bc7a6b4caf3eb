/// FNV-1a hashes (Fowler–Noll–Vo, IETF draft-eastlake-fnv), for short stable names and
/// identifiers derived from names: TAP names, team ids, derived MACs. Not for hash tables
/// on the per-frame path (see `teamHash`, `MACTable`'s multiplicative hash).
public enum FNV1a {
    /// 32-bit FNV-1a of `text`'s UTF-8 bytes (offset basis 0x811C9DC5, prime 0x01000193).
    public static func hash32(_ text: String) -> UInt32 {
        var h: UInt32 = 0x811C_9DC5
        for b in text.utf8 { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return h
    }
    /// 64-bit FNV-1a of `text`'s UTF-8 bytes (offset basis 0xCBF29CE484222325, prime 0x100000001B3).
    public static func hash64(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}
