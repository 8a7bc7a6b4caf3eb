import Model

/// A private VLAN of a switch (802.1Q private VLAN edge, the distributed switch's PVLAN):
/// a primary VLAN and its secondaries, one isolated and any number of communities.
///
/// Topology: switch `private-vlans: {PRIMARY: {isolated: ID, community: [ID...]}}`. A port
/// group's `vlan: {private: ID}` compiles to an **access port in VLAN ID** (`.access(ID)`):
/// the ID alone says what the port is (`PrivateVLANType`), since validation keeps every
/// VLAN of a private VLAN out of plain access use.
///
/// ```
///                 to: promiscuous  isolated  community C  community D  trunk carrying the VLAN
///   from promiscuous      yes        yes        yes          yes        yes, tagged primary
///   from isolated         yes        no         no           no         yes, tagged isolated
///   from community C      yes        no         yes          no         yes, tagged C
/// ```
/// Frames keep the VLAN they entered with (over trunks and uplinks: the secondary's tag, or
/// the primary's for promiscuous traffic, as a physical PVLAN switch upstream expects); a
/// frame entering a trunk tagged with a secondary counts as coming from a port of that
/// secondary. Trunks are transit ports: they carry a private VLAN's frames like any VLAN
/// they list. MAC learning is shared across the primary and its secondaries (the primary is
/// the filtering ID, 802.1Q shared VLAN learning), so a reply to an isolated port is known
/// unicast, not flooded; `fdb` lists those entries under the primary.
public struct PrivateVLAN: Hashable, Sendable {
    public var primary: VLANID
    /// The isolated secondary, if any.
    public var isolated: VLANID?
    /// Community secondaries.
    public var community: [VLANID]
    public init(primary: VLANID, isolated: VLANID? = nil, community: [VLANID] = []) {
        self.primary = primary; self.isolated = isolated; self.community = community
    }
    /// The primary and every secondary.
    public var vlans: [VLANID] { [primary] + (isolated.map { [$0] } ?? []) + community }
}

/// What a VLAN, or an access port in it, is within a private VLAN (VMware's PVLAN types).
public enum PrivateVLANType: UInt8, Sendable, CustomStringConvertible {
    /// The primary: talks to every port of the private VLAN.
    case promiscuous = 1
    /// The isolated secondary: talks to promiscuous ports only.
    case isolated = 2
    /// A community secondary: talks to its community and to promiscuous ports.
    case community = 3
    public var description: String {
        switch self {
        case .promiscuous: return "promiscuous"
        case .isolated: return "isolated"
        case .community: return "community"
        }
    }
}

extension SwitchPlan {
    /// The switch's private VLANs.
    @inlinable public var privateVLANs: [PrivateVLAN] { storage.privateVLANs }
    /// True when the switch has private VLANs (one branch on the per-frame path otherwise).
    @inlinable public var hasPrivateVLANs: Bool { storage.hasPrivateVLANs }

    /// What `vlan` is in a private VLAN (with its primary), or nil for a plain VLAN.
    public func privateVLANRole(of vlan: VLANID) -> (type: PrivateVLANType, primary: VLANID)? {
        guard storage.hasPrivateVLANs else { return nil }
        let info = storage.privateVLANInfo[Int(vlan.rawValue)]
        guard let t = PrivateVLANType(rawValue: UInt8(info & 0xFF)) else { return nil }
        return (t, VLANID(UInt16(info >> 8)))
    }

    /// The VLAN under which (vlan, MAC) is learned and looked up: the primary for a private
    /// VLAN's VLANs (shared learning: the 802.1Q filtering ID), else `vlan` itself.
    @inlinable @inline(__always)
    public func learningVLAN(_ vlan: VLANID) -> VLANID {
        storage.hasPrivateVLANs ? VLANID(UInt16(truncatingIfNeeded: storage.privateVLANInfo[Int(vlan.rawValue)] >> 8)) : vlan
    }

    /// True when a frame classified into `vlan` may leave by `port` (the egress half of the
    /// VLAN rules and of the private VLAN matrix): a trunk that lists `vlan` (or has it as
    /// native), an access port of `vlan`, or a private VLAN access port the matrix allows.
    @inlinable @inline(__always)
    public func delivers(_ vlan: VLANID, to port: HotPort) -> Bool {
        if port.isTrunk { return port.native == vlan || trunk(port, allows: vlan) }
        if port.privateVLANType == 0 { return port.access == vlan }
        return privateVLANDelivers(vlan, toAccess: port)
    }

    /// The private VLAN matrix for an access port of a private VLAN (see `PrivateVLAN`).
    @inlinable @inline(__always)
    func privateVLANDelivers(_ vlan: VLANID, toAccess port: HotPort) -> Bool {
        let info = storage.privateVLANInfo[Int(vlan.rawValue)]
        let from = UInt8(info & 0xFF)
        guard from != 0, UInt16(truncatingIfNeeded: info >> 8) == port.privateVLANPrimary.rawValue else { return false }
        if from == PrivateVLANType.promiscuous.rawValue || port.privateVLANType == PrivateVLANType.promiscuous.rawValue { return true }
        return from == PrivateVLANType.community.rawValue && port.access == vlan
    }

    /// For `trace`: the access ports of `vlan`'s private VLAN that a frame of `vlan` does not
    /// reach, each with its type (the matrix's "no" cells), `except` left out.
    public func privateVLANExcluded(_ vlan: VLANID, except: PortIndex) -> [(port: PortIndex, type: PrivateVLANType)] {
        guard let role = privateVLANRole(of: vlan) else { return [] }
        var out: [(PortIndex, PrivateVLANType)] = []
        for (i, h) in storage.hot.enumerated() where i != except && !h.isTrunk && h.privateVLANType != 0
            && h.privateVLANPrimary == role.primary && !delivers(vlan, to: h) {
            out.append((i, PrivateVLANType(rawValue: h.privateVLANType)!))
        }
        return out
    }
}

extension SwitchPlan {
    /// True when `port` learns MAC entries under `learningVLAN` (a VLAN it is a member of,
    /// or the primary of a private VLAN one of whose VLANs it carries). Control path (live
    /// reload keeps such entries).
    public func learns(_ learningVLAN: VLANID, on port: PortIndex) -> Bool {
        let mode = ports[port].mode
        if mode.isMember(learningVLAN) { return true }
        guard let pv = privateVLANs.first(where: { $0.primary == learningVLAN }) else { return false }
        return pv.vlans.contains { mode.isMember($0) }
    }
}
