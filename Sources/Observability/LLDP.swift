import Core
import Model

/// LLDP (IEEE 802.1AB-2016): frame constants, the LLDPDU model, a parser robust to any
/// input, and the builder of our own LLDPDUs.
///
/// ```
///  Ethernet: dst 01:80:c2:00:00:0e (nearest bridge) | src NIC MAC | EtherType 0x88cc | LLDPDU
///  LLDPDU:   TLV*  where TLV = type (7 bits) | length (9 bits) | value (length bytes)
///            Chassis ID (1), Port ID (2), TTL (3) first and in that order (§8.2), then
///            optional TLVs, then End (0) (optional since 802.1AB-2016: the frame may end).
/// ```
/// LLDP frames arrive every 30 s or so: parsing runs on the control path and allocates
/// (strings, arrays). The datapath only needs `LLDP.isLLDP(_:)` to divert them, which is
/// allocation-free.
public enum LLDP {
    /// EtherType of LLDP frames.
    public static let etherType: UInt16 = 0x88CC
    /// Nearest bridge group address 01:80:c2:00:00:0e (802.1AB §7.1), what lldpd sends to.
    public static let nearestBridge = MACAddress(rawValue: 0x0180_C200_000E)
    /// Nearest non-TPMR bridge 01:80:c2:00:00:03 and nearest customer bridge 01:80:c2:00:00:00.
    public static let nearestNonTPMRBridge = MACAddress(rawValue: 0x0180_C200_0003)
    /// Nearest customer bridge 01:80:c2:00:00:00.
    public static let nearestCustomerBridge = MACAddress(rawValue: 0x0180_C200_0000)
    /// IEEE 802.1 organizationally specific TLVs (Annex D).
    public static let ieee8021OUI: UInt32 = 0x0080C2

    /// True for a frame the switch must consume as LLDP: EtherType 0x88cc (after any tags)
    /// sent to one of the three LLDP group addresses. No allocation. The rule lives in Core
    /// (`LLDPFrames.isLLDP`, what `decide` consumes on uplinks); this asks the same question.
    @inlinable
    public static func isLLDP(_ h: FrameHeader) -> Bool { LLDPFrames.isLLDP(h) }

    /// TLV types of 802.1AB §8.4.
    public enum TLVType: UInt8, Sendable {
        case end = 0, chassisID = 1, portID = 2, ttl = 3, portDescription = 4, systemName = 5
        case systemDescription = 6, systemCapabilities = 7, managementAddress = 8, organizationallySpecific = 127
    }

    /// Parses an Ethernet frame carrying an LLDPDU (up to two VLAN tags are skipped).
    public static func parse(frame: UnsafeRawBufferPointer) -> Result<LLDPDU, LLDPParseError> {
        guard let h = FrameHeader.parse(frame) else { return .failure(.notLLDP) }
        guard h.etherType == etherType else { return .failure(.notLLDP) }
        return LLDPDU.parse(UnsafeRawBufferPointer(rebasing: frame[h.payloadOffset...]))
    }

    /// An Ethernet frame carrying `du` from `source` to the nearest-bridge address, padded
    /// to the 60-byte minimum.
    public static func frame(from source: MACAddress, _ du: LLDPDU) -> [UInt8] {
        var out = nearestBridge.octets + source.octets + [0x88, 0xCC] + du.encoded()
        if out.count < 60 { out += [UInt8](repeating: 0, count: 60 - out.count) }
        return out
    }
}

/// Why an LLDPDU was discarded (802.1AB §9.2.7.7.1); each is a named counter.
public enum LLDPParseError: Error, Equatable, CaseIterable, Sendable, CustomStringConvertible {
    /// Not an LLDP frame (EtherType) or too short for an Ethernet header.
    case notLLDP
    /// A TLV header or value runs past the end of the frame.
    case truncatedTLV
    /// The first TLV is not a Chassis ID, or it has a bad length (2…256).
    case badChassisID
    /// The second TLV is not a Port ID, or it has a bad length (2…256).
    case badPortID
    /// The third TLV is not a TTL of length ≥ 2.
    case badTTL
    /// A second Chassis ID, Port ID or TTL TLV after the first three.
    case duplicateMandatoryTLV

    public var description: String {
        switch self {
        case .notLLDP: return "not-lldp"
        case .truncatedTLV: return "truncated-tlv"
        case .badChassisID: return "bad-chassis-id"
        case .badPortID: return "bad-port-id"
        case .badTTL: return "bad-ttl"
        case .duplicateMandatoryTLV: return "duplicate-mandatory-tlv"
        }
    }
}

/// A Chassis ID or Port ID: subtype and raw value (802.1AB §8.5.2, §8.5.3).
public struct LLDPIdentifier: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Chassis ID subtypes: 1 chassis component, 2 interface alias, 3 port component,
    /// 4 MAC address, 5 network address, 6 interface name, 7 locally assigned.
    /// Port ID subtypes: 1 interface alias, 2 port component, 3 MAC address, 4 network
    /// address, 5 interface name, 6 agent circuit ID, 7 locally assigned.
    public var subtype: UInt8
    /// The value's bytes (1…255).
    public var value: [UInt8]
    /// True for a Port ID (changes which subtypes are MAC / network address).
    public var isPort: Bool

    public init(subtype: UInt8, value: [UInt8], isPort: Bool) { self.subtype = subtype; self.value = value; self.isPort = isPort }

    /// Chassis ID subtype 7, "locally assigned": our host name (see `LLDPDU.tapestry`).
    public static func locallyAssignedChassis(_ name: String) -> LLDPIdentifier {
        LLDPIdentifier(subtype: 7, value: Array(name.utf8.prefix(255)), isPort: false)
    }
    /// Chassis ID subtype 4, a MAC address.
    public static func chassisMAC(_ mac: MACAddress) -> LLDPIdentifier { LLDPIdentifier(subtype: 4, value: mac.octets, isPort: false) }
    /// Port ID subtype 5, "interface name" (ifName, RFC 2863).
    public static func interfaceNamePort(_ name: String) -> LLDPIdentifier {
        LLDPIdentifier(subtype: 5, value: Array(name.utf8.prefix(255)), isPort: true)
    }

    /// The subtype's name as lldpcli prints it (`mac`, `ifname`, `local`, …).
    public var subtypeName: String {
        switch (isPort, subtype) {
        case (false, 1): return "chassis-component"
        case (_, 2) where !isPort, (true, 1): return "ifalias"
        case (false, 3), (true, 2): return "port-component"
        case (false, 4), (true, 3): return "mac"
        case (false, 5), (true, 4): return "ip"
        case (false, 6), (true, 5): return "ifname"
        case (true, 6): return "agent-circuit-id"
        case (_, 7): return "local"
        default: return "reserved-\(subtype)"
        }
    }

    /// Human form: a MAC as `aa:bb:…`, a network address as an IP, text subtypes as text,
    /// anything else (or non-UTF-8 text) as hex.
    public var description: String {
        switch subtypeName {
        case "mac" where value.count == 6:
            return MACAddress(rawValue: value.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }).description
        case "ip":
            return LLDPManagementAddress.text(family: value.first ?? 0, Array(value.dropFirst()))
        case "chassis-component", "ifalias", "port-component", "ifname", "local", "agent-circuit-id":
            if let s = String(validating: value, as: UTF8.self), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 }) { return s }
            return hex(value)
        default:
            return hex(value)
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
}

/// System Capabilities TLV (§8.5.8): bit 0 other, 1 repeater, 2 MAC bridge, 3 WLAN AP,
/// 4 router, 5 telephone, 6 DOCSIS, 7 station only, 8 C-VLAN component, 9 S-VLAN, 10 TPMR.
public struct LLDPCapabilities: Equatable, Sendable {
    /// Capabilities the system has (bit mask above).
    public var system: UInt16
    /// Capabilities enabled now.
    public var enabled: UInt16
    public init(system: UInt16, enabled: UInt16) { self.system = system; self.enabled = enabled }
    /// MAC bridge (bit 2).
    public static let bridge: UInt16 = 1 << 2
    /// Router (bit 4).
    public static let router: UInt16 = 1 << 4
    /// Station only (bit 7).
    public static let station: UInt16 = 1 << 7
}

/// Management Address TLV (§8.5.9): an address (IANA family 1 IPv4, 2 IPv6, 6 802 MAC…),
/// the interface numbering (2 ifIndex, 3 system port number) and an optional OID.
public struct LLDPManagementAddress: Equatable, Sendable, CustomStringConvertible {
    /// IANA address family number (1 IPv4, 2 IPv6, 6 MAC).
    public var family: UInt8
    /// The address bytes (1…31).
    public var address: [UInt8]
    /// Interface numbering subtype: 1 unknown, 2 ifIndex, 3 system port number.
    public var interfaceSubtype: UInt8
    /// The interface number (e.g. the ifIndex).
    public var interfaceNumber: UInt32
    /// An object identifier (BER), usually empty.
    public var oid: [UInt8]

    public init(family: UInt8, address: [UInt8], interfaceSubtype: UInt8 = 2, interfaceNumber: UInt32 = 0, oid: [UInt8] = []) {
        self.family = family; self.address = address; self.interfaceSubtype = interfaceSubtype
        self.interfaceNumber = interfaceNumber; self.oid = oid
    }

    /// An IPv4 management address (first octet most significant).
    public static func ipv4(_ a: UInt32, interfaceNumber: UInt32 = 0) -> LLDPManagementAddress {
        LLDPManagementAddress(family: 1, address: [UInt8(a >> 24), UInt8((a >> 16) & 0xFF), UInt8((a >> 8) & 0xFF), UInt8(a & 0xFF)],
                              interfaceNumber: interfaceNumber)
    }

    public var description: String { LLDPManagementAddress.text(family: family, address) }

    static func text(family: UInt8, _ a: [UInt8]) -> String {
        switch (family, a.count) {
        case (1, 4): return a.map(String.init).joined(separator: ".")
        case (2, 16):
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(a[$0]) << 8 | UInt16(a[$0 + 1]), radix: 16) }.joined(separator: ":")
        case (6, 6): return MACAddress(rawValue: a.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }).description
        default: return hex(a)
        }
    }
}

/// One LLDPDU: the mandatory TLVs and the optional ones Tapestry reads and sends.
public struct LLDPDU: Equatable, Sendable {
    /// Chassis ID TLV (1): identifies the system.
    public var chassisID: LLDPIdentifier
    /// Port ID TLV (2): identifies the sending port.
    public var portID: LLDPIdentifier
    /// Seconds the receiver keeps this information; 0 means "forget me" (shutdown, §9.2.7.7.3).
    public var ttl: UInt16
    /// Port Description TLV (4), e.g. ifDescr.
    public var portDescription: String?
    /// System Name TLV (5), e.g. the host name.
    public var systemName: String?
    /// System Description TLV (6).
    public var systemDescription: String?
    /// System Capabilities TLV (7).
    public var capabilities: LLDPCapabilities?
    /// At most `maxManagementAddresses` are kept.
    public var managementAddresses: [LLDPManagementAddress]
    /// IEEE 802.1 Port VLAN ID (Annex D.2.1); nil when absent (0 means "not supported").
    public var portVLAN: UInt16?
    /// Optional TLVs that were malformed (bad length) and skipped, or unknown/duplicates.
    public var skippedTLVs: Int

    /// Management addresses kept per LLDPDU (bounds a hostile neighbour).
    public static let maxManagementAddresses = 8

    public init(chassisID: LLDPIdentifier, portID: LLDPIdentifier, ttl: UInt16, portDescription: String? = nil,
                systemName: String? = nil, systemDescription: String? = nil, capabilities: LLDPCapabilities? = nil,
                managementAddresses: [LLDPManagementAddress] = [], portVLAN: UInt16? = nil) {
        self.chassisID = chassisID; self.portID = portID; self.ttl = ttl; self.portDescription = portDescription
        self.systemName = systemName; self.systemDescription = systemDescription; self.capabilities = capabilities
        self.managementAddresses = managementAddresses; self.portVLAN = portVLAN; self.skippedTLVs = 0
    }

    /// What Tapestry advertises on an uplink.
    ///
    /// Decision: the Chassis ID is the host name with subtype 7 "locally assigned", not a
    /// MAC: a chassis ID must be the same on every port of the system (§8.5.2.2), and a
    /// switch's uplinks each have their own MAC, with none of them the obvious "chassis"
    /// one; the host name is what the issue names as our chassis and what an admin looks for
    /// in `show lldp neighbors`. System Name repeats it (§8.5.6). The Port ID is the NIC's
    /// name with subtype 5 "interface name"; capabilities: bridge, enabled.
    /// - Parameters:
    ///   - hostName: the OS host name, or the topology's `hosts:` name.
    ///   - nic: the uplink NIC's name (`eth1`).
    ///   - ttl: seconds; 802.1AB's default is msgTxInterval 30 × msgTxHold 4 (+1) = 121.
    public static func tapestry(hostName: String, nic: String, systemDescription: String, ttl: UInt16 = 121,
                                portDescription: String? = nil, managementAddresses: [LLDPManagementAddress] = []) -> LLDPDU {
        LLDPDU(chassisID: .locallyAssignedChassis(hostName), portID: .interfaceNamePort(nic), ttl: ttl,
               portDescription: portDescription, systemName: hostName, systemDescription: systemDescription,
               capabilities: LLDPCapabilities(system: LLDPCapabilities.bridge, enabled: LLDPCapabilities.bridge),
               managementAddresses: managementAddresses)
    }

    /// Parses an LLDPDU (the bytes after the EtherType). Never traps, whatever the input:
    /// every length is checked before it is used.
    public static func parse(_ b: UnsafeRawBufferPointer) -> Result<LLDPDU, LLDPParseError> {
        var off = 0
        /// The next TLV: (type, value range) or nil at the end of the buffer.
        func next() -> Result<(UInt8, Range<Int>)?, LLDPParseError> {
            guard off < b.count else { return .success(nil) }
            guard off + 2 <= b.count else { return .failure(.truncatedTLV) }
            let header = UInt16(b[off]) << 8 | UInt16(b[off + 1])
            let type = UInt8(header >> 9), length = Int(header & 0x1FF)
            guard off + 2 + length <= b.count else { return .failure(.truncatedTLV) }
            let range = (off + 2)..<(off + 2 + length)
            off = range.upperBound
            return .success((type, range))
        }
        func bytes(_ r: Range<Int>) -> [UInt8] { Array(b[r]) }
        func identifier(_ r: Range<Int>, port: Bool) -> LLDPIdentifier? {
            guard r.count >= 2 && r.count <= 256 else { return nil }
            return LLDPIdentifier(subtype: b[r.lowerBound], value: bytes(r.dropFirst()), isPort: port)
        }

        // The three mandatory TLVs, in order.
        guard case .success(let t1) = next() else { return .failure(.truncatedTLV) }
        guard let (type1, r1) = t1, type1 == 1, let chassis = identifier(r1, port: false) else { return .failure(.badChassisID) }
        guard case .success(let t2) = next() else { return .failure(.truncatedTLV) }
        guard let (type2, r2) = t2, type2 == 2, let port = identifier(r2, port: true) else { return .failure(.badPortID) }
        guard case .success(let t3) = next() else { return .failure(.truncatedTLV) }
        guard let (type3, r3) = t3, type3 == 3, r3.count >= 2 else { return .failure(.badTTL) }
        var du = LLDPDU(chassisID: chassis, portID: port, ttl: UInt16(b[r3.lowerBound]) << 8 | UInt16(b[r3.lowerBound + 1]))

        func text(_ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }
        loop: while true {
            switch next() {
            case .failure(let e): return .failure(e)
            case .success(nil): break loop
            case .success(let (type, r)?):
                switch type {
                case 0: break loop
                case 1, 2, 3: return .failure(.duplicateMandatoryTLV)
                case 4 where du.portDescription == nil: du.portDescription = text(r)
                case 5 where du.systemName == nil: du.systemName = text(r)
                case 6 where du.systemDescription == nil: du.systemDescription = text(r)
                case 7 where du.capabilities == nil && r.count == 4:
                    let s = r.lowerBound
                    du.capabilities = LLDPCapabilities(system: UInt16(b[s]) << 8 | UInt16(b[s + 1]), enabled: UInt16(b[s + 2]) << 8 | UInt16(b[s + 3]))
                case 8:
                    if let m = managementAddress(b, r), du.managementAddresses.count < maxManagementAddresses {
                        du.managementAddresses.append(m)
                    } else { du.skippedTLVs += 1 }
                case 127 where r.count >= 4:
                    let s = r.lowerBound
                    let oui = UInt32(b[s]) << 16 | UInt32(b[s + 1]) << 8 | UInt32(b[s + 2])
                    if oui == LLDP.ieee8021OUI && b[s + 3] == 1 && r.count == 6 && du.portVLAN == nil {
                        du.portVLAN = UInt16(b[s + 4]) << 8 | UInt16(b[s + 5])
                    } else { du.skippedTLVs += 1 }
                default: du.skippedTLVs += 1
                }
            }
        }
        return .success(du)
    }

    /// Management Address TLV value: length-prefixed address, interface numbering, OID.
    static func managementAddress(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> LLDPManagementAddress? {
        var p = r.lowerBound
        guard r.count >= 9 else { return nil }
        let addressLength = Int(b[p])              // subtype + address: 2…32
        guard (2...32).contains(addressLength), p + 1 + addressLength + 5 + 1 <= r.upperBound else { return nil }
        let family = b[p + 1]
        let address = Array(b[(p + 2)..<(p + 1 + addressLength)])
        p += 1 + addressLength
        let ifSubtype = b[p]
        let ifNumber = UInt32(b[p + 1]) << 24 | UInt32(b[p + 2]) << 16 | UInt32(b[p + 3]) << 8 | UInt32(b[p + 4])
        p += 5
        let oidLength = Int(b[p])
        guard oidLength <= 128, p + 1 + oidLength == r.upperBound else { return nil }
        return LLDPManagementAddress(family: family, address: address, interfaceSubtype: ifSubtype, interfaceNumber: ifNumber,
                                     oid: Array(b[(p + 1)..<(p + 1 + oidLength)]))
    }

    /// The TLVs of this LLDPDU, End included. Strings are cut to the TLV's 511-byte limit
    /// (255 for the identifiers).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func tlv(_ type: UInt8, _ value: [UInt8]) {
            let v = Array(value.prefix(511))
            out += [type << 1 | UInt8(v.count >> 8), UInt8(v.count & 0xFF)] + v
        }
        tlv(1, [chassisID.subtype] + chassisID.value.prefix(255))
        tlv(2, [portID.subtype] + portID.value.prefix(255))
        tlv(3, [UInt8(ttl >> 8), UInt8(ttl & 0xFF)])
        if let s = portDescription { tlv(4, Array(s.utf8)) }
        if let s = systemName { tlv(5, Array(s.utf8)) }
        if let s = systemDescription { tlv(6, Array(s.utf8)) }
        if let c = capabilities { tlv(7, [UInt8(c.system >> 8), UInt8(c.system & 0xFF), UInt8(c.enabled >> 8), UInt8(c.enabled & 0xFF)]) }
        for m in managementAddresses.prefix(LLDPDU.maxManagementAddresses) {
            let a = Array(m.address.prefix(31)), oid = Array(m.oid.prefix(128))
            let n = m.interfaceNumber
            tlv(8, [UInt8(a.count + 1), m.family] + a + [m.interfaceSubtype, UInt8(n >> 24), UInt8((n >> 16) & 0xFF),
                                                          UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), UInt8(oid.count)] + oid)
        }
        if let v = portVLAN { tlv(127, [0x00, 0x80, 0xC2, 1, UInt8(v >> 8), UInt8(v & 0xFF)]) }
        tlv(0, [])
        return out
    }
}
