import Model

/// Index of a port within one switch's `SwitchPlan` (0-based, dense).
public typealias PortIndex = Int

/// The VLAN policy of a switch port.
///
/// ```
///   access(10)                trunk([10,20], native: 10)         access(.untagged)
///   guest ──untagged──▶ VLAN 10   guest ──tag 20──▶ VLAN 20          guest ──untagged──▶ domain "none"
///         ◀─untagged──                 ──untagged──▶ VLAN 10 (native)
///   tagged in: dropped            tag 30 in: dropped (not allowed)   tagged in: dropped
///                                 untagged, no native: dropped
/// ```
/// `vlan: none` in a topology is `access(.untagged)`: an untagged domain separate from all
/// 802.1Q VLANs. Uplinks (a later issue) are trunks whose native VLAN is `.untagged`.
public enum PortMode: Hashable, Sendable, CustomStringConvertible {
    /// One VLAN, untagged to the guest. `.untagged` is the `vlan: none` domain.
    case access(VLANID)
    /// 802.1Q tags for the allowed VLANs; untagged frames belong to `native` (or are dropped).
    /// The native VLAN is always a member, whether or not it is listed in `allowed`.
    case trunk(allowed: VLANSet, native: VLANID?)

    public var description: String {
        switch self {
        case .access(let v): return v.isUntaggedDomain ? "none" : "access \(v)"
        case .trunk(let allowed, let native):
            return "trunk \(allowed.rangesDescription)" + (native.map { " native \($0)" } ?? "")
        }
    }

    /// True when frames of `vlan` may leave or enter this port.
    @inlinable
    public func isMember(_ vlan: VLANID) -> Bool {
        switch self {
        case .access(let v): return v == vlan
        case .trunk(let allowed, let native): return native == vlan || allowed.contains(vlan)
        }
    }

    /// Every VLAN this port belongs to.
    public var memberVLANs: [VLANID] {
        switch self {
        case .access(let v): return [v]
        case .trunk(let allowed, let native):
            var s = allowed
            if let n = native { s.insert(n) }
            return Array(s)
        }
    }
}

/// The result of classifying an ingress frame into a VLAN.
public enum IngressClass: Equatable, Sendable {
    /// The frame belongs to `vlan`; `tagLength` bytes of outer tag (0 or 4) were consumed;
    /// `priority` is the ingress tag's PCP and DEI (`VLANTag.priorityBits`, 0 when untagged),
    /// relayed into any tag the frame leaves with.
    case member(vlan: VLANID, tagLength: Int, priority: UInt16)
    case drop(DropReason)
}

/// Classifies a frame arriving on a port with `mode` (802.1Q ingress rules).
///
/// - Access ports accept untagged frames only. Any tag, priority tags (VID 0) and S-tags
///   included, is dropped: this is what stops single- and double-tag VLAN hopping.
/// - Trunk ports accept C-tags (0x8100) of allowed VLANs; a priority tag (VID 0) or an
///   untagged frame goes to the native VLAN; S-tags (0x88a8, 0x9100) are not terminated here.
@inlinable
public func ingressClass(of header: FrameHeader, on mode: PortMode) -> IngressClass {
    switch mode {
    case .access(let v):
        return ingressClass(of: header, trunk: false, access: v, native: nil) { _ in false }
    case .trunk(let allowed, let native):
        return ingressClass(of: header, trunk: true, access: .untagged, native: native) { allowed.contains($0) }
    }
}

/// The rule itself, over plain values (the per-frame path passes `HotPort` fields and a
/// bitmap lookup, so no array-holding `PortMode` is copied per frame).
@inlinable @inline(__always)
public func ingressClass(of header: FrameHeader, trunk: Bool, access: VLANID, native: VLANID?,
                         allows: (VLANID) -> Bool) -> IngressClass {
    guard trunk else {
        if header.outerTag != nil { return .drop(.taggedOnAccessPort) }
        return .member(vlan: access, tagLength: 0, priority: 0)
    }
    guard let tag = header.outerTag else {
        guard let n = native else { return .drop(.untaggedOnTrunk) }
        return .member(vlan: n, tagLength: 0, priority: 0)
    }
    guard tag.tpid == EtherType.vlan else { return .drop(.serviceTagNotSupported) }
    if tag.vid == 0 {
        // A trunk that lists the untagged domain itself (a tunnel port: `TunnelPeer`) takes
        // a priority tag as that domain; other trunks never list VLAN 0.
        guard let n = native else {
            return allows(.untagged) ? .member(vlan: .untagged, tagLength: 4, priority: tag.priorityBits) : .drop(.untaggedOnTrunk)
        }
        return .member(vlan: n, tagLength: 4, priority: tag.priorityBits)
    }
    let vlan = VLANID(tag.vid)
    if tag.vid == 0xFFF { return .drop(.vlanNotAllowed) }
    guard allows(vlan) || native == vlan else { return .drop(.vlanNotAllowed) }
    return .member(vlan: vlan, tagLength: 4, priority: tag.priorityBits)
}

/// How a frame of `vlan` leaves a port with `mode`, given how it arrived; `nil` when the port
/// is not a member of `vlan`.
@inlinable
public func egressRewrite(vlan: VLANID, ingressTagLength: Int, priority: UInt16, on mode: PortMode) -> EgressRewrite? {
    switch mode {
    case .access(let v):
        return egressRewrite(vlan: vlan, ingressTagLength: ingressTagLength, priority: priority, trunk: false, access: v, native: nil) { _ in false }
    case .trunk(let allowed, let native):
        return egressRewrite(vlan: vlan, ingressTagLength: ingressTagLength, priority: priority, trunk: true, access: .untagged, native: native) {
            allowed.contains($0)
        }
    }
}

/// The egress rule over plain values (see `ingressClass(of:trunk:access:native:allows:)`).
@inlinable @inline(__always)
public func egressRewrite(vlan: VLANID, ingressTagLength: Int, priority: UInt16, trunk: Bool, access: VLANID,
                          native: VLANID?, allows: (VLANID) -> Bool) -> EgressRewrite? {
    guard trunk else {
        guard access == vlan else { return nil }
        return EgressRewrite(strip: ingressTagLength, push: nil)
    }
    if native == vlan { return EgressRewrite(strip: ingressTagLength, push: nil) }
    guard allows(vlan) else { return nil }
    return EgressRewrite(strip: ingressTagLength, push: VLANTag(tpid: EtherType.vlan, tci: priority << 12 | vlan.rawValue))
}
