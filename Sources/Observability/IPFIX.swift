/// IPFIX (RFC 7011) message encoding for Tapestry's flow records.
///
/// ```
///  Message   = Header (16) + Set*            RFC 7011 §3.1
///  Header    = version 10 | length | export time (s) | sequence | observation domain
///  Set       = set ID | length | records     2: templates, 3: options templates, ≥256: data
/// ```
/// Templates (IDs fixed, so a collector's cache survives our restarts):
///
/// | ID  | records for                 | fields (IE number, bytes)                                           |
/// |-----|-----------------------------|---------------------------------------------------------------------|
/// | 256 | IPv4 TCP/UDP/other          | L2 part + sourceIPv4Address 8, destinationIPv4Address 12, protocolIdentifier 4, sourceTransportPort 7, destinationTransportPort 11 + counters |
/// | 257 | ICMP                        | L2 part + IPv4 addresses + protocolIdentifier + icmpTypeCodeIPv4 32 + counters |
/// | 258 | IPv6 TCP/UDP/other          | as 256 with sourceIPv6Address 27, destinationIPv6Address 28          |
/// | 259 | ICMPv6                      | as 257 with IPv6 addresses and icmpTypeCodeIPv6 139                  |
/// | 260 | non-IP (L2 flows)           | L2 part + ethernetType 256 + counters                                |
/// | 261 | options: interface names    | scope ingressInterface 10; interfaceName 82 (variable length)        |
/// | 262 | options: sampling           | scope observationDomainId 149; samplingPacketInterval 305 (= 1), samplingPacketSpace 306 (= N − 1) (RFC 5477) |
///
/// L2 part: sourceMacAddress 56, destinationMacAddress 80, vlanId 58, ingressInterface 10,
/// egressInterface 14 (0: flooded). Counters: packetDeltaCount 2, octetDeltaCount 1,
/// flowStartMilliseconds 152, flowEndMilliseconds 153, flowEndReason 136.
///
/// ICMP gets its own templates because `icmpTypeCodeIPv4` and `destinationTransportPort`
/// must not both appear (collectors such as nfdump store both in one "port" column).
/// Sampling is announced with the RFC 5477 elements for systematic count-based sampling
/// (select 1 packet, skip N − 1), which nfdump (1.7) applies to scale packet and byte
/// counts. `selectorAlgorithm` (304) is left out on purpose: those two elements are only
/// defined for systematic count-based sampling (RFC 5477 §8.2.2), and nfdump 1.7.1 ignores
/// a sampler whose options template also carries 304. The deprecated samplingInterval (34)
/// is not sent.
public enum IPFIX {
    /// IPFIX version number in the message header.
    public static let version: UInt16 = 10
    /// The IANA-assigned IPFIX port (RFC 7011 §10.3.2), the collector's default.
    public static let defaultPort: UInt16 = 4739

    /// Information element numbers used here (IANA "IPFIX Information Elements" registry).
    public enum Element: UInt16, Sendable {
        case octetDeltaCount = 1
        case packetDeltaCount = 2
        case protocolIdentifier = 4
        case sourceTransportPort = 7
        case sourceIPv4Address = 8
        case ingressInterface = 10
        case destinationTransportPort = 11
        case destinationIPv4Address = 12
        case egressInterface = 14
        case sourceIPv6Address = 27
        case destinationIPv6Address = 28
        case icmpTypeCodeIPv4 = 32
        case sourceMacAddress = 56
        case vlanId = 58
        case destinationMacAddress = 80
        case interfaceName = 82
        case flowEndReason = 136
        case icmpTypeCodeIPv6 = 139
        case observationDomainId = 149
        case flowStartMilliseconds = 152
        case flowEndMilliseconds = 153
        case ethernetType = 256
        case samplingPacketInterval = 305
        case samplingPacketSpace = 306
    }

    /// One field of a template: element and length in bytes (65535: variable length, §7).
    public struct FieldSpecifier: Equatable, Sendable {
        /// The information element.
        public var element: Element
        /// Bytes of the field in each record, or `IPFIX.variableLength`.
        public var length: UInt16
        public init(_ element: Element, _ length: UInt16) { self.element = element; self.length = length }
    }

    /// A template record (§3.4.1) or, with `scopeCount > 0`, an options template (§3.4.2.2).
    public struct Template: Equatable, Sendable {
        /// Template ID (≥ 256), the set ID of its data sets.
        public var id: UInt16
        /// Fields in record order.
        public var fields: [FieldSpecifier]
        /// The first `scopeCount` fields are scope fields (options templates only).
        public var scopeCount: Int
        /// True for an options template (sent in set 3).
        public var isOptions: Bool { scopeCount > 0 }
        /// Bytes of one data record (fixed-length templates only).
        public var recordLength: Int { fields.reduce(0) { $0 + Int($1.length) } }
    }

    /// Variable length marker (RFC 7011 §7).
    public static let variableLength: UInt16 = 0xFFFF

    static let l2Part: [FieldSpecifier] = [
        .init(.sourceMacAddress, 6), .init(.destinationMacAddress, 6), .init(.vlanId, 2),
        .init(.ingressInterface, 4), .init(.egressInterface, 4),
    ]
    static let counters: [FieldSpecifier] = [
        .init(.packetDeltaCount, 8), .init(.octetDeltaCount, 8),
        .init(.flowStartMilliseconds, 8), .init(.flowEndMilliseconds, 8), .init(.flowEndReason, 1),
    ]
    static let v4: [FieldSpecifier] = [.init(.sourceIPv4Address, 4), .init(.destinationIPv4Address, 4), .init(.protocolIdentifier, 1)]
    static let v6: [FieldSpecifier] = [.init(.sourceIPv6Address, 16), .init(.destinationIPv6Address, 16), .init(.protocolIdentifier, 1)]
    static let ports: [FieldSpecifier] = [.init(.sourceTransportPort, 2), .init(.destinationTransportPort, 2)]

    /// Template 256: IPv4 flows other than ICMP.
    public static let ipv4Transport = Template(id: 256, fields: l2Part + v4 + ports + counters, scopeCount: 0)
    /// Template 257: ICMP flows.
    public static let ipv4ICMP = Template(id: 257, fields: l2Part + v4 + [.init(.icmpTypeCodeIPv4, 2)] + counters, scopeCount: 0)
    /// Template 258: IPv6 flows other than ICMPv6.
    public static let ipv6Transport = Template(id: 258, fields: l2Part + v6 + ports + counters, scopeCount: 0)
    /// Template 259: ICMPv6 flows.
    public static let ipv6ICMP = Template(id: 259, fields: l2Part + v6 + [.init(.icmpTypeCodeIPv6, 2)] + counters, scopeCount: 0)
    /// Template 260: non-IP (L2) flows.
    public static let l2 = Template(id: 260, fields: l2Part + [.init(.ethernetType, 2)] + counters, scopeCount: 0)
    /// Options template 261: interface ID → port name.
    public static let interfaceNames = Template(id: 261, fields: [.init(.ingressInterface, 4), .init(.interfaceName, variableLength)], scopeCount: 1)
    /// Options template 262: the 1-in-N sampling of the observation domain.
    public static let sampling = Template(id: 262, fields: [.init(.observationDomainId, 4),
                                                            .init(.samplingPacketInterval, 4), .init(.samplingPacketSpace, 4)], scopeCount: 1)
    /// Every template, in the order they are announced.
    public static let dataTemplates = [ipv4Transport, ipv4ICMP, ipv6Transport, ipv6ICMP, l2]
    /// The options templates, in the order they are announced.
    public static let optionsTemplates = [interfaceNames, sampling]

    /// The template a record is encoded with.
    public static func template(for key: FlowKey) -> Template {
        switch key.family {
        case .ipv4: return key.isICMP ? ipv4ICMP : ipv4Transport
        case .ipv6: return key.isICMP ? ipv6ICMP : ipv6Transport
        case .l2: return l2
        }
    }

    /// Interface names longer than this many bytes are cut (one-byte variable length).
    public static let maxInterfaceNameBytes = 254
}

/// Encodes flow records, templates and options into IPFIX messages no larger than
/// `maxMessageSize` (default 1400 bytes: one UDP datagram that fits any Ethernet path
/// without fragmentation, RFC 7011 §10.3.3).
///
/// Keeps the per-observation-domain sequence number (§3.1: data records sent so far,
/// options data records included, modulo 2³²). Control path: allocates freely.
public struct IPFIXEncoder: Sendable {
    /// Observation Domain ID in every header (RFC 7011 §3.1).
    public let observationDomain: UInt32
    /// Largest message in bytes.
    public let maxMessageSize: Int
    /// Data records (flow and options) encoded so far, modulo 2³².
    public private(set) var sequenceNumber: UInt32 = 0

    /// - Parameters:
    ///   - observationDomain: the Observation Domain ID in every header.
    ///   - maxMessageSize: bytes per message (256…65535).
    public init(observationDomain: UInt32, maxMessageSize: Int = 1400) {
        precondition((256...65535).contains(maxMessageSize), "IPFIX message size must be 256…65535")
        self.observationDomain = observationDomain
        self.maxMessageSize = maxMessageSize
    }

    /// The messages announcing every template and the options data: interface ID → name and
    /// the sampling (1 in `samplingInterval`). Sent first and then periodically (over UDP a
    /// collector may have missed or forgotten them, §8.4).
    public mutating func announcement(interfaces: [(id: UInt32, name: String)], samplingInterval: UInt32, exportTime: UInt32) -> [[UInt8]] {
        var out = MessageAssembler(domain: observationDomain, limit: maxMessageSize, exportTime: exportTime, sequence: sequenceNumber)
        var templates = ByteWriter()
        for t in IPFIX.dataTemplates { templates.templateRecord(t) }
        out.add(set: 2, body: templates.bytes, records: 0)
        // One options template per set: RFC 7011 allows several in one set, but nfdump 1.7
        // reads only the first record of an options template set.
        for t in IPFIX.optionsTemplates {
            var options = ByteWriter()
            options.templateRecord(t)
            out.add(set: 3, body: options.bytes, records: 0)
        }

        var sampling = ByteWriter()
        let n = max(1, samplingInterval)
        sampling.u32(observationDomain); sampling.u32(1); sampling.u32(n - 1)
        out.add(set: IPFIX.sampling.id, body: sampling.bytes, records: 1)

        // Interface names: as many rows per set as fit; the assembler splits messages.
        var rows: [[UInt8]] = []
        for (id, name) in interfaces {
            var w = ByteWriter()
            w.u32(id)
            let bytes = Array(name.utf8.prefix(IPFIX.maxInterfaceNameBytes))
            w.u8(UInt8(bytes.count)); w.bytes += bytes
            rows.append(w.bytes)
        }
        out.addRecords(set: IPFIX.interfaceNames.id, rows)
        sequenceNumber = out.sequence
        return out.finish()
    }

    /// Data messages for `records` (grouped by template, in order within a template).
    public mutating func messages(for records: [FlowRecord], exportTime: UInt32) -> [[UInt8]] {
        var out = MessageAssembler(domain: observationDomain, limit: maxMessageSize, exportTime: exportTime, sequence: sequenceNumber)
        for t in IPFIX.dataTemplates {
            let rows = records.filter { IPFIX.template(for: $0.key).id == t.id }.map { IPFIXEncoder.encode($0, t) }
            if !rows.isEmpty { out.addRecords(set: t.id, rows) }
        }
        sequenceNumber = out.sequence
        return out.finish()
    }

    /// One data record in template `t`'s field order.
    static func encode(_ r: FlowRecord, _ t: IPFIX.Template) -> [UInt8] {
        var w = ByteWriter()
        let k = r.key
        for f in t.fields {
            switch f.element {
            case .sourceMacAddress: w.mac(k.sourceMAC.rawValue)
            case .destinationMacAddress: w.mac(k.destinationMAC.rawValue)
            case .vlanId: w.u16(k.vlan.rawValue)
            case .ingressInterface: w.u32(k.ingressInterface)
            case .egressInterface: w.u32(k.egressInterface)
            case .sourceIPv4Address: w.u32(k.sourceIPv4)
            case .destinationIPv4Address: w.u32(k.destinationIPv4)
            case .sourceIPv6Address: w.u64(k.sourceIPv6.0); w.u64(k.sourceIPv6.1)
            case .destinationIPv6Address: w.u64(k.destinationIPv6.0); w.u64(k.destinationIPv6.1)
            case .protocolIdentifier: w.u8(k.protocolIdentifier)
            case .sourceTransportPort: w.u16(k.sourcePort)
            case .destinationTransportPort, .icmpTypeCodeIPv4, .icmpTypeCodeIPv6: w.u16(k.destinationPort)
            case .ethernetType: w.u16(k.etherType)
            case .packetDeltaCount: w.u64(r.packets)
            case .octetDeltaCount: w.u64(r.octets)
            case .flowStartMilliseconds: w.u64(r.startMilliseconds)
            case .flowEndMilliseconds: w.u64(r.endMilliseconds)
            case .flowEndReason: w.u8(r.reason.rawValue)
            case .interfaceName, .observationDomainId, .samplingPacketInterval, .samplingPacketSpace:
                break   // options only
            }
        }
        return w.bytes
    }
}

/// Big-endian byte appender.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }
    mutating func u64(_ v: UInt64) { u32(UInt32(v >> 32)); u32(UInt32(v & 0xFFFF_FFFF)) }
    mutating func mac(_ v: UInt64) { for i in 0..<6 { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(40 - 8 * i))) } }
    /// A template record: ID, field count, [scope field count], field specifiers.
    mutating func templateRecord(_ t: IPFIX.Template) {
        u16(t.id); u16(UInt16(t.fields.count))
        if t.isOptions { u16(UInt16(t.scopeCount)) }
        for f in t.fields { u16(f.element.rawValue); u16(f.length) }
    }
}

/// Packs sets into messages of at most `limit` bytes.
struct MessageAssembler {
    let domain: UInt32
    let limit: Int
    let exportTime: UInt32
    var sequence: UInt32
    var messages: [[UInt8]] = []
    var current: [UInt8] = []
    /// Sequence number of the message being filled (records before it).
    var currentSequence: UInt32

    init(domain: UInt32, limit: Int, exportTime: UInt32, sequence: UInt32) {
        self.domain = domain; self.limit = limit; self.exportTime = exportTime
        self.sequence = sequence; self.currentSequence = sequence
    }

    /// Adds one whole set (templates, or options data that is known to fit).
    mutating func add(set id: UInt16, body: [UInt8], records: Int) {
        if !current.isEmpty && 16 + current.count + 4 + body.count > limit { flush() }
        var w = ByteWriter(); w.u16(id); w.u16(UInt16(4 + body.count))
        current += w.bytes + body
        sequence &+= UInt32(records)
    }

    /// Adds data records of one template, as many sets (and messages) as they need.
    mutating func addRecords(set id: UInt16, _ rows: [[UInt8]]) {
        var i = 0
        while i < rows.count {
            if 16 + current.count + 4 + rows[i].count > limit { flush() }
            var body: [UInt8] = []
            var n = 0
            while i < rows.count && 16 + current.count + 4 + body.count + rows[i].count <= limit {
                body += rows[i]; i += 1; n += 1
            }
            if n == 0 { i += 1; continue }   // a record larger than a message: cannot be sent
            add(set: id, body: body, records: n)
        }
    }

    mutating func flush() {
        guard !current.isEmpty else { return }
        var h = ByteWriter()
        h.u16(IPFIX.version); h.u16(UInt16(16 + current.count)); h.u32(exportTime)
        h.u32(currentSequence); h.u32(domain)
        messages.append(h.bytes + current)
        current = []
        currentSequence = sequence
    }

    mutating func finish() -> [[UInt8]] { flush(); return messages }
}
