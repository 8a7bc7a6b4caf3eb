/// Which way a captured frame was travelling, as pcapng's `epb_flags` bits 0-1 record it.
///
/// Relative to the switch port the capture interface stands for: `inbound` is a frame the
/// switch received on that port (ingress), `outbound` one it sent (egress).
public enum PacketDirection: UInt32, Sendable {
    /// Not recorded: no `epb_flags` option is written.
    case unknown = 0
    /// Received on the port (ingress).
    case inbound = 1
    /// Sent on the port (egress).
    case outbound = 2
}

/// One pcapng interface: in Tapestry, one switch port (`web1.eth0`), so tcpdump and
/// Wireshark show which port saw each frame.
public struct PcapngInterface: Sendable, Equatable {
    /// `if_name`: the port's name, e.g. "web1.eth0".
    public var name: String
    /// `if_description`: free text, e.g. "port group web, access 10"; omitted when nil.
    public var description: String?
    /// The link type; 1 is LINKTYPE_ETHERNET (DLT_EN10MB).
    public var linkType: UInt16 = 1
    /// The most bytes of any frame stored; longer frames are truncated (originalLength kept).
    public var snapLength: UInt32 = 262144

    /// Creates an interface description.
    public init(name: String, description: String? = nil, linkType: UInt16 = 1, snapLength: UInt32 = 262144) {
        self.name = name
        self.description = description
        self.linkType = linkType
        self.snapLength = snapLength
    }
}

/// The pcapng block encoder (draft-ietf-opsawg-pcapng), always little-endian.
///
/// Every block is `type, total length, body, total length`, 32-bit aligned; every option is
/// `code, length, value` padded to 32 bits, and an option list ends with `opt_endofopt`.
/// Those three rules are `block(type:body:)`, `option(_:_:)` and `paddingLength(_:)`; the
/// public functions only lay out fixed fields. Pure functions: safe from any thread.
public enum Pcapng {
    /// Section Header Block type.
    static let sectionHeaderType: UInt32 = 0x0A0D_0D0A
    /// Interface Description Block type.
    static let interfaceDescriptionType: UInt32 = 0x0000_0001
    /// Enhanced Packet Block type.
    static let enhancedPacketType: UInt32 = 0x0000_0006
    /// The byte-order magic; written little-endian it reads 4D 3C 2B 1A.
    static let byteOrderMagic: UInt32 = 0x1A2B_3C4D

    // Option codes.
    static let optEndOfOpt: UInt16 = 0
    static let optComment: UInt16 = 1
    static let shbUserAppl: UInt16 = 4
    static let ifName: UInt16 = 2
    static let ifDescription: UInt16 = 3
    static let ifTsresol: UInt16 = 9
    static let epbFlags: UInt16 = 2

    /// A Section Header Block: byte-order magic, version 1.0, section length -1 (unknown,
    /// as a stream cannot seek back), and `shb_userappl` naming the writer.
    public static func sectionHeader(application: String = "tapestry") -> [UInt8] {
        var body: [UInt8] = []
        body.appendLittleEndian(byteOrderMagic)
        body.appendLittleEndian(UInt16(1))   // major version
        body.appendLittleEndian(UInt16(0))   // minor version
        body.appendLittleEndian(Int64(-1))   // section length: not specified
        body += options([option(shbUserAppl, Array(application.utf8))])
        return block(type: sectionHeaderType, body: body)
    }

    /// An Interface Description Block with `if_name`, `if_description` (when non-nil) and
    /// `if_tsresol` = 9, so every timestamp in this file counts nanoseconds.
    public static func interfaceDescription(_ i: PcapngInterface) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLittleEndian(i.linkType)
        body.appendLittleEndian(UInt16(0))   // reserved
        body.appendLittleEndian(i.snapLength)
        var opts = [option(ifName, Array(i.name.utf8))]
        if let d = i.description { opts.append(option(ifDescription, Array(d.utf8))) }
        opts.append(option(ifTsresol, [9]))
        body += options(opts)
        return block(type: interfaceDescriptionType, body: body)
    }

    /// An Enhanced Packet Block holding all of `frame` (the caller truncates to the snap
    /// length), with `opt_comment` when `comment` is non-nil and `epb_flags` when the
    /// direction is known. `timestampNanoseconds` is since the Unix epoch (`if_tsresol` 9).
    public static func enhancedPacket(
        interface: UInt32, timestampNanoseconds: UInt64, frame: UnsafeRawBufferPointer,
        originalLength: Int, direction: PacketDirection, comment: String?
    ) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(20 + frame.count + 3 + 64)
        body.appendLittleEndian(interface)
        body.appendLittleEndian(UInt32(truncatingIfNeeded: timestampNanoseconds >> 32))
        body.appendLittleEndian(UInt32(truncatingIfNeeded: timestampNanoseconds))
        body.appendLittleEndian(UInt32(frame.count))
        body.appendLittleEndian(UInt32(clamping: max(originalLength, frame.count)))
        body.append(contentsOf: frame)
        body.appendZeros(paddingLength(frame.count))
        var opts: [[UInt8]] = []
        if let c = comment { opts.append(option(optComment, Array(c.utf8))) }
        if direction != .unknown {
            var flags: [UInt8] = []
            flags.appendLittleEndian(direction.rawValue)
            opts.append(option(epbFlags, flags))
        }
        body += options(opts)
        return block(type: enhancedPacketType, body: body)
    }

    // MARK: - The three layout rules

    /// Bytes of zero padding that bring `length` up to a multiple of 4.
    static func paddingLength(_ length: Int) -> Int { (4 - length % 4) % 4 }

    /// One option: code, value length (unpadded), value, zero padding to 32 bits.
    static func option(_ code: UInt16, _ value: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLittleEndian(code)
        out.appendLittleEndian(UInt16(clamping: value.count))
        out += value.prefix(Int(UInt16.max))
        out.appendZeros(paddingLength(min(value.count, Int(UInt16.max))))
        return out
    }

    /// An option list: the options then `opt_endofopt`; nothing at all when empty (the
    /// spec makes the whole list optional).
    static func options(_ list: [[UInt8]]) -> [UInt8] {
        list.isEmpty ? [] : list.joined() + option(optEndOfOpt, [])
    }

    /// A block: type, total length, the body padded to 32 bits, total length again.
    static func block(type: UInt32, body: [UInt8]) -> [UInt8] {
        let padded = body.count + paddingLength(body.count)
        let total = UInt32(12 + padded)
        var out: [UInt8] = []
        out.reserveCapacity(Int(total))
        out.appendLittleEndian(type)
        out.appendLittleEndian(total)
        out += body
        out.appendZeros(padded - body.count)
        out.appendLittleEndian(total)
        return out
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order whatever the host's.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes.
    mutating func appendZeros(_ count: Int) {
        if count > 0 { append(contentsOf: repeatElement(0, count: count)) }
    }
}
