/// What an IP multicast frame says to an IGMP/MLD snooping switch (RFC 4541): a membership
/// report or leave, a query, plain data to a group, or a malformed control message.
///
/// ## Where the messages sit
/// ```
///  IPv4: Ethernet | IPv4 (proto 2, options: Router Alert 0x94 04 0000) | IGMP
///        IGMP types: 0x11 query (v1/v2: 8 bytes, v3: ≥ 12), 0x12 v1 report, 0x16 v2 report,
///                    0x17 v2 leave, 0x22 v3 report (RFC 1112, 2236, 3376)
///  IPv6: Ethernet | IPv6 (next 0) | Hop-by-Hop (Router Alert, type 5, value 0 = MLD) | ICMPv6
///        ICMPv6 types: 130 query (v1: 24 bytes, v2: ≥ 28), 131 v1 report, 132 v1 done,
///                      143 v2 report (RFC 2710, 3810)
/// ```
/// ## What is checked (and what a failure means)
/// - IGMP (IPv4 protocol 2): the IPv4 header (version, IHL, total length within the frame, no
///   fragment), the IGMP checksum, the message's length for its type, groups that must be
///   multicast, v3 records within the message. Any failure: `.malformed(.ipv4, …)`, which
///   the switch drops and counts (`malformed-igmp`). The Router Alert option is noted, not
///   required: IGMPv1 has none, and Linux's own snooping accepts messages without it.
/// - MLD: only an ICMPv6 message of an MLD type behind a Hop-by-Hop header with the MLD
///   Router Alert is MLD (RFC 3810 §5; Linux's `ipv6_mc_check_mld` agrees); without one it
///   is forwarded as data. With it: the checksum (with the pseudo-header), lengths, groups,
///   records, and a link-local source for queries (§5.1.14). Failure: `.malformed(.ipv6, …)`
///   (`malformed-mld`).
/// - Anything else to a multicast IP destination is `.data(group:)`: forwarded to the group's
///   members once the group is registered. A fragment (IPv6 Fragment header, or an IPv4 one)
///   of anything but IGMP is data too.
///
/// Parsing reads only inside the frame, allocates nothing and never traps (fuzzed:
/// `Fuzz/multicast`). Records of a v3/MLDv2 report are not copied out: `MembershipReport`
/// says where they are and `records(in:)` walks them again (the datapath applies a report
/// after deciding it, like learning).
public enum MulticastSignal: Equatable, Sendable {
    /// Not an IP packet to a multicast destination (ARP, a broadcast, non-IP multicast, an
    /// IP header too short to read): the switch's ordinary flooding applies.
    case notSnooped
    /// IP data (or an IGMP/ICMPv6 message the snooping switch does not handle) to `group`.
    case data(group: WireIPAddress)
    case query(MulticastQuery)
    case report(MembershipReport)
    /// IGMPv2 leave (RFC 2236 §3) or MLDv1 done (RFC 2710 §3.7) for `group`.
    case leave(group: WireIPAddress, family: IPFamily)
    /// An IGMP or MLD message that fails its checks: dropped and counted.
    case malformed(IPFamily, MulticastMalformation)

    /// IGMP's IP protocol number (RFC 1112).
    public static let igmpProtocol: UInt8 = 2
    /// ICMPv6's next-header value (RFC 4443).
    public static let icmpv6NextHeader: UInt8 = 58

    /// Classifies the L3 payload at `l3Offset` of `frame` (`FrameHeader.payloadOffset`),
    /// whose EtherType is `etherType`. `verifyChecksums: false` for a frame whose virtio-net
    /// header says its checksum is partial (the guest left it to be completed).
    public static func parse(_ frame: UnsafeRawBufferPointer, l3Offset o: Int, etherType: UInt16,
                             verifyChecksums: Bool = true) -> MulticastSignal {
        guard o >= 0 && o <= frame.count else { return .notSnooped }
        switch etherType {
        case EtherType.ipv4: return parseIPv4(frame, o, verifyChecksums)
        case EtherType.ipv6: return parseIPv6(frame, o, verifyChecksums)
        default: return .notSnooped
        }
    }

    @inline(__always) static func be16(_ f: UnsafeRawBufferPointer, _ o: Int) -> Int {
        Int(f[o]) << 8 | Int(f[o + 1])
    }
    @inline(__always) static func be32(_ f: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(f[o]) << 24 | UInt32(f[o + 1]) << 16 | UInt32(f[o + 2]) << 8 | UInt32(f[o + 3])
    }

    static func parseIPv4(_ f: UnsafeRawBufferPointer, _ o: Int, _ verify: Bool) -> MulticastSignal {
        let n = f.count
        guard n - o >= 20, f[o] >> 4 == 4 else { return .notSnooped }
        let dst = WireIPAddress.ipv4(in: f, at: o + 16)
        guard dst.isMulticast else { return .notSnooped }
        guard f[o + 9] == igmpProtocol else { return .data(group: dst) }
        func bad(_ m: MulticastMalformation) -> MulticastSignal { .malformed(.ipv4, m) }
        let ihl = Int(f[o] & 0x0F) * 4
        let total = be16(f, o + 2)
        guard ihl >= 20, total >= ihl, o + total <= n else { return bad(.badIPHeader) }
        guard be16(f, o + 6) & 0x3FFF == 0 else { return bad(.fragment) }
        // Options: look for the Router Alert (RFC 2113: 0x94, length 4).
        var routerAlert = false
        var p = o + 20
        while p < o + ihl {
            let type = f[p]
            if type == 0 { break }                        // end of options
            if type == 1 { p += 1; continue }              // no-op
            guard p + 1 < o + ihl else { return bad(.badIPHeader) }
            let len = Int(f[p + 1])
            guard len >= 2, p + len <= o + ihl else { return bad(.badIPHeader) }
            if type == 0x94 && len == 4 { routerAlert = true }
            p += len
        }
        let igmp = o + ihl, length = total - ihl
        guard length >= 8 else { return bad(.truncated) }
        if verify && internetChecksum(f, from: igmp, count: length, initial: 0) != 0xFFFF { return bad(.badChecksum) }
        let source = WireIPAddress.ipv4(in: f, at: o + 12)
        let groupField = WireIPAddress.ipv4(in: f, at: igmp + 4)
        switch f[igmp] {
        case 0x11:
            // RFC 3376 §7.1: 8 bytes is v1 (max response 0) or v2; ≥ 12 is v3; 9–11 is invalid.
            var version: UInt8 = 3
            var maxResponse: Int
            let code = Int(f[igmp + 1])
            if length == 8 {
                version = code == 0 ? 1 : 2
                maxResponse = code == 0 ? 10_000 : code * 100
            } else {
                guard length >= 12 else { return bad(.truncated) }
                let sources = be16(f, igmp + 10)
                guard 12 + 4 * sources <= length else { return bad(.truncated) }
                maxResponse = decodeCode8(code) * 100
            }
            let general = groupField.ipv4 == 0
            guard general || groupField.isMulticast else { return bad(.groupNotMulticast) }
            return .query(MulticastQuery(family: .ipv4, version: version, source: source, group: general ? nil : groupField,
                                         maxResponseMilliseconds: maxResponse, hasRouterAlert: routerAlert))
        case 0x12, 0x16:
            guard groupField.isMulticast else { return bad(.groupNotMulticast) }
            return .report(MembershipReport(family: .ipv4, version: f[igmp] == 0x12 ? 1 : 2, source: source, group: groupField,
                                            recordsOffset: igmp + 8, recordCount: 0, end: igmp + length, hasRouterAlert: routerAlert))
        case 0x17:
            guard groupField.isMulticast else { return bad(.groupNotMulticast) }
            return .leave(group: groupField, family: .ipv4)
        case 0x22:
            let count = be16(f, igmp + 6)
            if let m = checkRecords(f, family: .ipv4, from: igmp + 8, count: count, end: igmp + length) { return bad(m) }
            return .report(MembershipReport(family: .ipv4, version: 3, source: source, group: nil,
                                            recordsOffset: igmp + 8, recordCount: count, end: igmp + length, hasRouterAlert: routerAlert))
        default:
            // DVMRP, PIMv1, mtrace…: not membership signalling; forwarded as data.
            return .data(group: dst)
        }
    }

    static func parseIPv6(_ f: UnsafeRawBufferPointer, _ o: Int, _ verify: Bool) -> MulticastSignal {
        let n = f.count
        guard n - o >= 40, f[o] >> 4 == 6 else { return .notSnooped }
        let dst = WireIPAddress.ipv6(in: f, at: o + 24)
        guard dst.isMulticast else { return .notSnooped }
        let payload = be16(f, o + 4)
        let end = o + 40 + payload
        // A jumbogram (payload length 0) or a truncated packet is not walked: data.
        guard payload > 0, end <= n else { return .data(group: dst) }
        var next = f[o + 6]
        var p = o + 40
        var routerAlert = false
        var headers = 0
        while next != icmpv6NextHeader {
            // Hop-by-Hop (first only), Routing, Destination Options; at most 8 in a row.
            guard next == 0 || next == 43 || next == 60, headers < 8, !(next == 0 && headers > 0) else { return .data(group: dst) }
            guard p + 2 <= end else { return routerAlert ? .malformed(.ipv6, .truncated) : .data(group: dst) }
            let len = (Int(f[p + 1]) + 1) * 8
            guard p + len <= end else { return routerAlert || next == 0 ? .malformed(.ipv6, .badIPHeader) : .data(group: dst) }
            if next == 0 {
                var q = p + 2
                while q < p + len {
                    let type = f[q]
                    if type == 0 { q += 1; continue }     // Pad1
                    guard q + 1 < p + len else { return .malformed(.ipv6, .badIPHeader) }
                    let optLen = Int(f[q + 1])
                    guard q + 2 + optLen <= p + len else { return .malformed(.ipv6, .badIPHeader) }
                    // Router Alert (RFC 2711): type 5, length 2, value 0 = MLD.
                    if type == 5 && optLen == 2 && f[q + 2] == 0 && f[q + 3] == 0 { routerAlert = true }
                    q += 2 + optLen
                }
            }
            next = f[p]
            p += len
            headers += 1
        }
        let length = end - p
        guard length >= 1 else { return .data(group: dst) }
        let type = f[p]
        guard type == 130 || type == 131 || type == 132 || type == 143 else { return .data(group: dst) }
        guard routerAlert else { return .data(group: dst) }
        func bad(_ m: MulticastMalformation) -> MulticastSignal { .malformed(.ipv6, m) }
        guard length >= 8 else { return bad(.truncated) }
        if verify {
            // The ICMPv6 pseudo-header (RFC 8200 §8.1): source, destination, length, next header.
            var sum = internetChecksumPartial(f, from: o + 8, count: 32, initial: 0)
            sum += UInt32(length >> 16) + UInt32(length & 0xFFFF) + UInt32(icmpv6NextHeader)
            if internetChecksum(f, from: p, count: length, initial: sum) != 0xFFFF { return bad(.badChecksum) }
        }
        let source = WireIPAddress.ipv6(in: f, at: o + 8)
        switch type {
        case 130:
            let version: UInt8
            let maxResponse: Int
            if length == 24 {
                version = 1
                maxResponse = be16(f, p + 4)
            } else {
                guard length >= 28 else { return bad(.truncated) }
                let sources = be16(f, p + 26)
                guard 28 + 16 * sources <= length else { return bad(.truncated) }
                version = 2
                maxResponse = decodeCode16(be16(f, p + 4))
            }
            guard source.isIPv6LinkLocalUnicast else { return bad(.sourceNotLinkLocal) }
            let group = WireIPAddress.ipv6(in: f, at: p + 8)
            let general = group.high == 0 && group.low == 0
            guard general || group.isMulticast else { return bad(.groupNotMulticast) }
            return .query(MulticastQuery(family: .ipv6, version: version, source: source, group: general ? nil : group,
                                         maxResponseMilliseconds: maxResponse, hasRouterAlert: true))
        case 131, 132:
            guard length >= 24 else { return bad(.truncated) }
            let group = WireIPAddress.ipv6(in: f, at: p + 8)
            guard group.isMulticast else { return bad(.groupNotMulticast) }
            if type == 132 { return .leave(group: group, family: .ipv6) }
            return .report(MembershipReport(family: .ipv6, version: 1, source: source, group: group,
                                            recordsOffset: p + 24, recordCount: 0, end: end, hasRouterAlert: true))
        default:   // 143
            let count = be16(f, p + 6)
            if let m = checkRecords(f, family: .ipv6, from: p + 8, count: count, end: end) { return bad(m) }
            return .report(MembershipReport(family: .ipv6, version: 2, source: source, group: nil,
                                            recordsOffset: p + 8, recordCount: count, end: end, hasRouterAlert: true))
        }
    }

    /// Checks that `count` group records fit between `from` and `end` and name multicast
    /// groups (records of unknown types are skipped by receivers, RFC 3376 §4.2.12, but must
    /// still fit).
    static func checkRecords(_ f: UnsafeRawBufferPointer, family: IPFamily, from: Int, count: Int, end: Int) -> MulticastMalformation? {
        var p = from
        let fixed = family == .ipv4 ? 8 : 20, address = family == .ipv4 ? 4 : 16
        for _ in 0..<count {
            guard p + fixed <= end else { return .recordsOverrun }
            let size = fixed + address * be16(f, p + 2) + 4 * Int(f[p + 1])
            guard p + size <= end else { return .recordsOverrun }
            let group = family == .ipv4 ? WireIPAddress.ipv4(in: f, at: p + 4) : WireIPAddress.ipv6(in: f, at: p + 4)
            if (1...6).contains(f[p]) && !group.isMulticast { return .groupNotMulticast }
            p += size
        }
        return nil
    }

    /// IGMPv3's 8-bit Max Resp Code / QQIC (RFC 3376 §4.1.1): below 128 the value itself,
    /// above a floating-point form (mantissa | 0x10) << (exponent + 3).
    public static func decodeCode8(_ code: Int) -> Int {
        code < 128 ? code : ((code & 0x0F) | 0x10) << (((code >> 4) & 0x07) + 3)
    }

    /// MLDv2's 16-bit Maximum Response Code (RFC 3810 §5.1.3), in milliseconds.
    public static func decodeCode16(_ code: Int) -> Int {
        code < 32768 ? code : ((code & 0x0FFF) | 0x1000) << (((code >> 12) & 0x07) + 3)
    }
}

/// Why an IGMP or MLD message is malformed (trace explains it; the drop is counted as
/// `malformed-igmp` or `malformed-mld`).
public enum MulticastMalformation: UInt8, Sendable, CustomStringConvertible {
    /// Shorter than its type requires (or than its source list).
    case truncated
    /// The IGMP / ICMPv6 checksum does not verify.
    case badChecksum
    /// The IP header (IHL, total length, options, extension headers) is inconsistent.
    case badIPHeader
    /// An IGMP message in an IPv4 fragment.
    case fragment
    /// A report, leave or group-specific query for a group that is not multicast.
    case groupNotMulticast
    /// A v3/MLDv2 report whose group records run past the message.
    case recordsOverrun
    /// An MLD query from a source that is not link-local (RFC 3810 §5.1.14).
    case sourceNotLinkLocal

    public var description: String {
        switch self {
        case .truncated: return "truncated message"
        case .badChecksum: return "bad checksum"
        case .badIPHeader: return "inconsistent IP header"
        case .fragment: return "fragmented IGMP"
        case .groupNotMulticast: return "group is not a multicast address"
        case .recordsOverrun: return "group records run past the message"
        case .sourceNotLinkLocal: return "MLD query from a source that is not link-local"
        }
    }
}

/// An IGMP or MLD query.
public struct MulticastQuery: Equatable, Sendable {
    public var family: IPFamily
    /// IGMP 1, 2 or 3 (RFC 3376 §7.1); MLD 1 or 2 (RFC 3810 §8.1).
    public var version: UInt8
    /// The querier's address (the election's key).
    public var source: WireIPAddress
    /// nil: a general query; else a group-specific one.
    public var group: WireIPAddress?
    /// The Maximum Response Time, decoded, in milliseconds.
    public var maxResponseMilliseconds: Int
    public var hasRouterAlert: Bool
    public init(family: IPFamily, version: UInt8, source: WireIPAddress, group: WireIPAddress?, maxResponseMilliseconds: Int,
                hasRouterAlert: Bool) {
        self.family = family; self.version = version; self.source = source; self.group = group
        self.maxResponseMilliseconds = maxResponseMilliseconds; self.hasRouterAlert = hasRouterAlert
    }
}

/// An IGMP or MLD membership report: one group (IGMPv1/v2, MLDv1), or group records
/// (IGMPv3, MLDv2) at `recordsOffset` of the frame, walked by `records(in:)`.
public struct MembershipReport: Equatable, Sendable {
    public var family: IPFamily
    /// IGMP 1, 2 or 3; MLD 1 or 2.
    public var version: UInt8
    public var source: WireIPAddress
    /// The group of a v1/v2 report (MLDv1); nil for record-based reports.
    public var group: WireIPAddress?
    /// Frame offset of the first group record.
    public var recordsOffset: Int
    /// Group records (0 for v1/v2 reports).
    public var recordCount: Int
    /// Frame offset just past the message.
    public var end: Int
    public var hasRouterAlert: Bool
    public init(family: IPFamily, version: UInt8, source: WireIPAddress, group: WireIPAddress?, recordsOffset: Int,
                recordCount: Int, end: Int, hasRouterAlert: Bool) {
        self.family = family; self.version = version; self.source = source; self.group = group
        self.recordsOffset = recordsOffset; self.recordCount = recordCount; self.end = end; self.hasRouterAlert = hasRouterAlert
    }

    /// The report's group records as they are in `frame` (the frame it was parsed from);
    /// a v1/v2 report yields one `MODE_IS_EXCLUDE({})` record for its group (a join).
    public func records(in frame: UnsafeRawBufferPointer) -> MembershipRecords {
        MembershipRecords(frame: frame, report: self)
    }
}

/// One group record of an IGMPv3 (RFC 3376 §4.2.4) or MLDv2 (RFC 3810 §5.2.4) report.
public struct MembershipRecord: Equatable, Sendable {
    /// Record types (RFC 3376 §4.2.12): 1 MODE_IS_INCLUDE, 2 MODE_IS_EXCLUDE,
    /// 3 CHANGE_TO_INCLUDE_MODE, 4 CHANGE_TO_EXCLUDE_MODE, 5 ALLOW_NEW_SOURCES,
    /// 6 BLOCK_OLD_SOURCES. Others are ignored.
    public var type: UInt8
    public var group: WireIPAddress
    public var sourceCount: Int

    public init(type: UInt8, group: WireIPAddress, sourceCount: Int) { self.type = type; self.group = group; self.sourceCount = sourceCount }

    /// A type receivers act on (1…6); unknown ones are skipped (RFC 3376 §4.2.12).
    @inlinable public var isKnownType: Bool { type >= 1 && type <= 6 }

    /// Open vSwitch's reading (`mcast_snooping_add_report`), which Tapestry follows: an
    /// INCLUDE of no sources (`IS_IN({})`, `TO_IN({})`) is a leave; every other known record
    /// is a join of the whole group. Per-source state (SSM) is not kept: an `INCLUDE(S)` or
    /// `ALLOW(S)` record subscribes the port to all of the group's traffic, and a `BLOCK(S)`
    /// record leaves the membership as it is.
    @inlinable public var isLeave: Bool { (type == 1 || type == 3) && sourceCount == 0 }

    /// `IS_IN`, `IS_EX`, `TO_IN`, `TO_EX`, `ALLOW`, `BLOCK` (RFC 3376 §4.2.12's short names).
    public var typeName: String {
        switch type {
        case 1: return "IS_IN"
        case 2: return "IS_EX"
        case 3: return "TO_IN"
        case 4: return "TO_EX"
        case 5: return "ALLOW"
        case 6: return "BLOCK"
        default: return "type \(type)"
        }
    }
}

/// Walks the group records of a report without allocating (stops early, never traps, if
/// the frame is not the one the report was parsed from).
public struct MembershipRecords: Sequence, IteratorProtocol {
    let frame: UnsafeRawBufferPointer
    let family: IPFamily
    var offset: Int
    var remaining: Int
    let end: Int
    var single: WireIPAddress?

    init(frame: UnsafeRawBufferPointer, report: MembershipReport) {
        self.frame = frame; family = report.family; offset = report.recordsOffset; remaining = report.recordCount
        end = Swift.min(report.end, frame.count); single = report.group
    }

    public mutating func next() -> MembershipRecord? {
        if let g = single { single = nil; return MembershipRecord(type: 2, group: g, sourceCount: 0) }
        let fixed = family == .ipv4 ? 8 : 20, address = family == .ipv4 ? 4 : 16
        guard remaining > 0, offset >= 0, offset + fixed <= end else { return nil }
        let f = frame, p = offset
        let sources = MulticastSignal.be16(f, p + 2)
        let size = fixed + address * sources + 4 * Int(f[p + 1])
        guard p + size <= end else { remaining = 0; return nil }
        let group = family == .ipv4 ? WireIPAddress.ipv4(in: f, at: p + 4) : WireIPAddress.ipv6(in: f, at: p + 4)
        offset += size
        remaining -= 1
        return MembershipRecord(type: f[p], group: group, sourceCount: sources)
    }
}

/// The 16-bit one's complement sum of RFC 1071, folded, without the final complement:
/// 0xFFFF when the bytes (with a correct checksum among them) verify.
public func internetChecksum(_ f: UnsafeRawBufferPointer, from: Int, count: Int, initial: UInt32) -> UInt16 {
    var sum = internetChecksumPartial(f, from: from, count: count, initial: initial)
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
}

/// The one's complement sum of 16-bit big-endian words (a trailing odd byte padded with
/// zero) plus `initial`, folded to 16 bits (so small values may be added to it safely).
public func internetChecksumPartial(_ f: UnsafeRawBufferPointer, from: Int, count: Int, initial: UInt32) -> UInt32 {
    var sum = UInt64(initial)
    var i = from
    let end = from + count
    while i + 1 < end { sum += UInt64(f[i]) << 8 | UInt64(f[i + 1]); i += 2 }
    if i < end { sum += UInt64(f[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt32(sum)
}
