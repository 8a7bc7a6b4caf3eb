import Model

/// What happens to a frame.
public enum Verdict: Equatable, Sendable {
    /// Out of exactly one port (known unicast destination).
    case forward(PortIndex)
    /// Out of every other member port of the VLAN (broadcast, multicast, unknown unicast).
    case flood
    /// A reserved-group frame (STP, LACP, LLDP…) on a port group with L2 transparency: out
    /// of the other ports of the same port group in the VLAN.
    case floodPortGroup
    case drop(DropReason)
}

/// The forwarding decision for one frame: a small value, no I/O, no side effects.
///
/// Learning is *requested*, not done: the datapath applies it (`MACTable.learn`), `trace`
/// shows it and discards it, so tracing never changes state (OVS `allow_side_effects`).
public struct Decision: Equatable, Sendable {
    public var verdict: Verdict
    /// The VLAN the frame was classified into (meaningless for early drops).
    public var vlan: VLANID
    /// Bytes of outer tag consumed at ingress (0 or 4): egress strips them.
    public var ingressTagLength: Int
    /// Priority bits carried from the ingress tag to egress tags.
    public var pcp: UInt16
    /// True when the caller should learn (vlan, source MAC) on the ingress port.
    public var learn: Bool
    public var source: MACAddress
    public var destination: MACAddress
    /// Why the frame floods, for storm control (nil unless it floods).
    public var floodReason: FloodReason?

    @inlinable
    public init(verdict: Verdict, vlan: VLANID = .untagged, ingressTagLength: Int = 0, pcp: UInt16 = 0, learn: Bool = false,
                source: MACAddress = .zero, destination: MACAddress = .zero, floodReason: FloodReason? = nil) {
        self.verdict = verdict; self.vlan = vlan; self.ingressTagLength = ingressTagLength; self.pcp = pcp; self.learn = learn
        self.source = source; self.destination = destination; self.floodReason = floodReason
    }
}

/// One step of a decision, for `tapestry trace`. Built lazily: with `NoTrace` none of these
/// values is ever constructed.
public enum TraceStep: Equatable, Sendable {
    case received(port: PortIndex, length: Int)
    case parsed(FrameHeader)
    case classified(IngressClass, mode: PortMode)
    case learnRequested(vlan: VLANID, mac: MACAddress, port: PortIndex, currentPort: PortIndex?)
    case lookedUp(vlan: VLANID, mac: MACAddress, port: PortIndex?)
    case flooding(vlan: VLANID, reason: FloodReason)
    case forwarding(port: PortIndex)
    case transparent(portGroup: String)
    case dropped(DropReason)
}

/// Why a frame floods.
public enum FloodReason: String, Equatable, Sendable {
    case broadcast, multicast
    case unknownUnicast = "unknown unicast"
}

/// Receives the steps of a decision. `decide` is generic over it so the datapath's
/// `NoTrace` specialises to nothing.
public protocol TraceSink {
    mutating func record(_ step: @autoclosure () -> TraceStep)
}

/// The datapath's sink: records nothing, costs nothing.
public struct NoTrace: TraceSink {
    @inlinable public init() {}
    @inlinable @inline(__always) public mutating func record(_ step: @autoclosure () -> TraceStep) {}
}

/// A sink that keeps every step (trace, tests).
public struct RecordingTrace: TraceSink {
    public private(set) var steps: [TraceStep] = []
    public init() {}
    public mutating func record(_ step: @autoclosure () -> TraceStep) { steps.append(step()) }
}

/// Decides what the switch does with `frame` arriving on `inPort`.
///
/// Reads like OVS's `xlate_normal`: parse → size → source check → VLAN classification →
/// reserved destination → learn request → lookup → forward / flood / drop(reason).
/// Pure: reads the plan and the MAC table, writes nothing (the trace sink is the caller's).
/// `segmented` marks a GSO frame (TSO from a guest): longer than the MTU by design, so the
/// oversize check does not apply; whoever delivers it cuts it into MTU-sized segments.
public func decide<T: TraceSink>(
    frame: UnsafeRawBufferPointer,
    inPort: PortIndex,
    plan: SwitchPlan,
    table: MACTable,
    trace: inout T,
    segmented: Bool = false
) -> Decision {
    trace.record(.received(port: inPort, length: frame.count))
    guard let h = FrameHeader.parse(frame) else {
        trace.record(.dropped(.runt))
        return Decision(verdict: .drop(.runt))
    }
    trace.record(.parsed(h))
    let port = plan.hot[inPort]
    if port.isMirrorDestination {
        trace.record(.dropped(.mirrorDestinationPort))
        return Decision(verdict: .drop(.mirrorDestinationPort))
    }
    if !segmented && frame.count > plan.maximumFrameLength(tags: h.tagCount) {
        trace.record(.dropped(.oversize))
        return Decision(verdict: .drop(.oversize))
    }
    if !h.source.isUnicast {
        trace.record(.dropped(.invalidSourceMAC))
        return Decision(verdict: .drop(.invalidSourceMAC))
    }
    if let own = port.configuredMAC, !port.security.forgedTransmits, h.source != own {
        trace.record(.dropped(.forgedTransmit))
        return Decision(verdict: .drop(.forgedTransmit))
    }
    let cls = plan.ingressClass(of: h, on: port)
    trace.record(.classified(cls, mode: plan.ports[inPort].mode))
    guard case let .member(vlan, tagLength, pcp) = cls else {
        if case let .drop(r) = cls { return Decision(verdict: .drop(r)) }
        return Decision(verdict: .drop(.runt))
    }
    if h.destination.isReservedBridgeGroup && !port.l2Transparency {
        trace.record(.dropped(.reservedDestination))
        return Decision(verdict: .drop(.reservedDestination), vlan: vlan, ingressTagLength: tagLength, pcp: pcp)
    }
    trace.record(.learnRequested(vlan: vlan, mac: h.source, port: inPort, currentPort: table.lookup(vlan: vlan, mac: h.source)))
    var d = Decision(verdict: .flood, vlan: vlan, ingressTagLength: tagLength, pcp: pcp, learn: true,
                     source: h.source, destination: h.destination)
    if h.destination.isReservedBridgeGroup {
        trace.record(.transparent(portGroup: plan.ports[inPort].portGroup))
        d.verdict = .floodPortGroup
    } else if h.destination.isMulticast {
        d.floodReason = h.destination.isBroadcast ? .broadcast : .multicast
        trace.record(.flooding(vlan: vlan, reason: d.floodReason!))
    } else if let out = table.lookup(vlan: vlan, mac: h.destination) {
        trace.record(.lookedUp(vlan: vlan, mac: h.destination, port: out))
        if out == inPort {
            trace.record(.dropped(.hairpin))
            d.verdict = .drop(.hairpin)
        } else {
            trace.record(.forwarding(port: out))
            d.verdict = .forward(out)
        }
    } else {
        trace.record(.lookedUp(vlan: vlan, mac: h.destination, port: nil))
        trace.record(.flooding(vlan: vlan, reason: .unknownUnicast))
        d.floodReason = .unknownUnicast
    }
    return d
}

/// Whether `port` may receive a frame for `destination` under its security policy: with
/// `mac-changes` rejected (and not promiscuous), unicast goes only to the configured MAC.
@inline(__always)
public func egressRefusal(of destination: MACAddress, to port: HotPort) -> DropReason? {
    guard let own = port.configuredMAC, !port.security.macChanges, !port.security.promiscuous,
          !destination.isMulticast, destination != own else { return nil }
    return .macChangeRejected
}

/// Calls `body` for each port a decided frame leaves by, with the rewrite it needs, or the
/// reason the port's policy refuses it (the caller counts that as a drop on that port).
/// Flooding skips the ingress port; a forward to a port outside the VLAN yields nothing;
/// promiscuous ports of the VLAN also get forwarded unicast.
@inline(__always)
public func forEachEgress(of d: Decision, inPort: PortIndex, plan: SwitchPlan,
                          _ body: (PortIndex, EgressRewrite, DropReason?) -> Void) {
    @inline(__always) func offer(_ p: PortIndex) {
        let port = plan.hot[p]
        if let rw = plan.egressRewrite(vlan: d.vlan, ingressTagLength: d.ingressTagLength, pcp: d.pcp, on: port) {
            body(p, rw, egressRefusal(of: d.destination, to: port))
        }
    }
    switch d.verdict {
    case .drop: return
    case .forward(let p):
        offer(p)
        for q32 in plan.promiscuousSet(d.vlan) {
            let q = Int(q32)
            if q != inPort && q != p { offer(q) }
        }
    case .flood:
        for p32 in plan.floodSet(d.vlan) {
            let p = Int(p32)
            if p != inPort { offer(p) }
        }
    case .floodPortGroup:
        let group = plan.hot[inPort].group
        for p32 in plan.floodSet(d.vlan) {
            let p = Int(p32)
            if p != inPort && plan.hot[p].l2Transparency && plan.hot[p].group == group { offer(p) }
        }
    }
}
