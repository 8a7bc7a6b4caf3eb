import Model

/// Frames the team sends itself: notify-switches RARPs and beacon probes.
///
/// Both are built on the control path (they allocate); the beacon parser runs per frame on
/// uplink ingress and does not.
public enum TeamFrames {
    /// Minimum Ethernet frame without FCS; shorter frames are zero-padded.
    public static let minimumFrameLength = 60

    /// Beacon probe destination: `03:54:41:50:42:01` — group bit and locally administered
    /// bit set ("TAPB"), so no registered protocol uses it and bridges flood it like any
    /// multicast.
    public static let beaconDestination = MACAddress(rawValue: 0x0354_4150_4201)
    /// Beacon EtherType: IEEE 802 "Local Experimental EtherType 1" (0x88B5), reserved for
    /// exactly this kind of private protocol.
    public static let beaconEtherType: UInt16 = 0x88B5
    /// First payload bytes of a beacon ("TB"), so another user of 0x88B5 is not mistaken for one.
    public static let beaconMagic: UInt16 = 0x5442
    public static let beaconVersion: UInt8 = 1

    /// A RARP request (RFC 903) announcing `source`, as QEMU sends after migration and
    /// VMware's notify-switches does after a failover: the physical switches learn the MAC
    /// behind the uplink it leaves by.
    ///
    /// ```
    ///  ff:ff:ff:ff:ff:ff | source | [8100 | vid] | 8035 |
    ///  htype 0001 | ptype 0800 | hlen 06 | plen 04 | op 0003 (request reverse) |
    ///  sha = source | spa = 0.0.0.0 | tha = source | tpa = 0.0.0.0 | zero pad to 60 bytes
    /// ```
    /// `vlan` nil or `.untagged`: no tag (the untagged domain); otherwise an 802.1Q tag, PCP 0.
    public static func rarpFrame(source: MACAddress, vlan: VLANID?) -> [UInt8] {
        var f = [UInt8](); f.reserveCapacity(64)
        f += MACAddress.broadcast.octets
        f += source.octets
        appendTag(&f, vlan)
        be16(&f, EtherType.rarp)
        be16(&f, 1)                 // hardware type: Ethernet
        be16(&f, EtherType.ipv4)    // protocol type
        f += [6, 4]                 // hardware / protocol address lengths
        be16(&f, 3)                 // opcode: request reverse
        f += source.octets; f += [0, 0, 0, 0]
        f += source.octets; f += [0, 0, 0, 0]
        pad(&f)
        return f
    }

    /// A beacon probe sent by team member `sender` out of its own NIC (source: the NIC's MAC)
    /// on `vlan` (tagged unless untagged):
    /// ```
    ///  03:54:41:50:42:01 | nic MAC | [8100 | vid] | 88b5 |
    ///  magic "TB" (2) | version 1 (1) | reserved 0 (1) | team id (4) | sender member (2) |
    ///  sequence (4) | zero pad to 60 bytes          (all big-endian)
    /// ```
    public static func beaconFrame(source: MACAddress, vlan: VLANID?, teamID: UInt32, sender: Int, sequence: UInt32) -> [UInt8] {
        var f = [UInt8](); f.reserveCapacity(64)
        f += beaconDestination.octets
        f += source.octets
        appendTag(&f, vlan)
        be16(&f, beaconEtherType)
        be16(&f, beaconMagic)
        f += [beaconVersion, 0]
        be16(&f, UInt16(truncatingIfNeeded: teamID >> 16)); be16(&f, UInt16(truncatingIfNeeded: teamID))
        be16(&f, UInt16(truncatingIfNeeded: sender))
        be16(&f, UInt16(truncatingIfNeeded: sequence >> 16)); be16(&f, UInt16(truncatingIfNeeded: sequence))
        pad(&f)
        return f
    }

    private static func appendTag(_ f: inout [UInt8], _ vlan: VLANID?) {
        if let v = vlan, !v.isUntaggedDomain { be16(&f, EtherType.vlan); be16(&f, v.rawValue) }
    }
    private static func be16(_ f: inout [UInt8], _ v: UInt16) { f += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    private static func pad(_ f: inout [UInt8]) {
        if f.count < minimumFrameLength { f += Array(repeating: 0, count: minimumFrameLength - f.count) }
    }
}

/// A received beacon probe.
public struct Beacon: Equatable, Sendable {
    public var teamID: UInt32
    public var sender: Int
    public var sequence: UInt32
    @inlinable public init(teamID: UInt32, sender: Int, sequence: UInt32) {
        self.teamID = teamID; self.sender = sender; self.sequence = sequence
    }

    /// Parses the beacon in a whole frame; nil for any other frame. No allocation.
    @inlinable
    public static func parse(frame: UnsafeRawBufferPointer) -> Beacon? {
        guard let h = FrameHeader.parse(frame) else { return nil }
        return parse(header: h, frame: frame)
    }

    /// Parses a beacon; nil for any other frame. No allocation (per frame on uplinks).
    @inlinable
    public static func parse(header: FrameHeader, frame: UnsafeRawBufferPointer) -> Beacon? {
        guard header.etherType == TeamFrames.beaconEtherType, header.destination == TeamFrames.beaconDestination else { return nil }
        let o = header.payloadOffset
        guard frame.count >= o + 14 else { return nil }
        @inline(__always) func be16(_ i: Int) -> UInt32 { UInt32(frame[i]) << 8 | UInt32(frame[i + 1]) }
        guard be16(o) == UInt32(TeamFrames.beaconMagic), frame[o + 2] == TeamFrames.beaconVersion else { return nil }
        return Beacon(teamID: be16(o + 4) << 16 | be16(o + 6), sender: Int(be16(o + 8)),
                      sequence: be16(o + 10) << 16 | be16(o + 12))
    }
}
