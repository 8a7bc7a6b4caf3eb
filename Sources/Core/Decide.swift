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
    /// For the switch itself (a NIC team's beacon probe): not forwarded, not a drop.
    case local
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
    /// The team member (uplink) a guest's frame leaves by when it goes outside; -1 when it
    /// never does (no team, `uplinks: none`, from an uplink, or no healthy member).
    public var uplink: Int16 = -1

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
    /// A frame for the switch itself (a team beacon probe).
    case consumed(what: String)
    /// A guest's frame that goes outside leaves by team member `member` (port `port`).
    case teamUplink(member: Int, port: PortIndex)
    /// A frame from uplink `member` passed the team's reflection and receiver checks.
    case teamAdmitted(member: Int)
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
///
/// `@inline(__always)`: its only caller inside Core is the non-generic datapath entry point
/// below, where the `NoTrace` specialisation is thereby inlined (callers in other modules,
/// such as trace with a `RecordingTrace`, run the generic body as before).
@inline(__always)
public func decide<T: TraceSink>(
    frame: UnsafeRawBufferPointer,
    inPort: PortIndex,
    plan: SwitchPlan,
    table: MACTable,
    trace: inout T,
    segmented: Bool = false,
    team: TeamContext? = nil
) -> Decision {
    trace.record(.received(port: inPort, length: frame.count))
    guard let h = FrameHeader.parse(frame) else {
        trace.record(.dropped(.runt))
        return Decision(verdict: .drop(.runt))
    }
    trace.record(.parsed(h))
    let port = plan.storage.hot[inPort]
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
    // For a frame from an uplink: where its (unicast) destination is, looked up once for the
    // team's checks and the forwarding below.
    var uplinkDestination: PortIndex? = nil
    if port.isUplink {
        // Beacon probes first: every member, standby or not, must hear them.
        if h.destination == TeamFrames.beaconDestination && h.etherType == TeamFrames.beaconEtherType {
            trace.record(.consumed(what: "team beacon probe"))
            return Decision(verdict: .local, vlan: vlan, ingressTagLength: tagLength, pcp: pcp,
                            source: h.source, destination: h.destination)
        }
        uplinkDestination = h.destination.isMulticast ? nil : table.lookup(vlan: vlan, mac: h.destination)
        if let reason = teamAdmission(frame: frame, header: h, vlan: vlan, port: port, inPort: inPort, destinationPort: uplinkDestination,
                                      plan: plan, table: table, team: team, trace: &trace) {
            trace.record(.dropped(reason))
            return Decision(verdict: .drop(reason), vlan: vlan, ingressTagLength: tagLength, pcp: pcp,
                            source: h.source, destination: h.destination)
        }
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
    } else if let out = port.isUplink ? uplinkDestination : table.lookup(vlan: vlan, mac: h.destination) {
        trace.record(.lookedUp(vlan: vlan, mac: h.destination, port: out))
        if plan.storage.hot[out].isUplink && !port.isUplink {
            // Out to the physical network: by the member the team picks for this guest,
            // whichever uplink the destination was learned on.
            if !port.usesUplinks {
                trace.record(.dropped(.uplinkIsolated))
                d.verdict = .drop(.uplinkIsolated)
                return d
            }
            d.uplink = Int16(team?.state.uplink(forGuestPort: inPort, header: h, frame: frame) ?? -1)
            guard d.uplink >= 0 else {
                trace.record(.dropped(.noHealthyUplink))
                d.verdict = .drop(.noHealthyUplink)
                return d
            }
            let p = plan.storage.uplinkPorts[Int(d.uplink)]
            trace.record(.teamUplink(member: Int(d.uplink), port: p))
            trace.record(.forwarding(port: p))
            d.verdict = .forward(p)
            return d
        }
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
    if case .flood = d.verdict, plan.storage.team != nil, port.usesUplinks {
        d.uplink = Int16(team?.state.uplink(forGuestPort: inPort, header: h, frame: frame) ?? -1)
        if d.uplink >= 0 { trace.record(.teamUplink(member: Int(d.uplink), port: plan.uplinkPorts[Int(d.uplink)])) }
    }
    return d
}

/// `decide` as the datapath calls it: no trace.
///
/// Non-generic on purpose. `decide<T>` is not `@inlinable`, so a caller in another module
/// (the datapath, the benchmark) would run its unspecialised body, paying a witness-table
/// call for every trace step and generic prologues (≈30% more instructions per frame,
/// callgrind on `tapestry-bench forward`). This wrapper is compiled inside Core, where
/// `decide<NoTrace>` is specialised and inlined, and the trace steps vanish.
public func decide(frame: UnsafeRawBufferPointer, inPort: PortIndex, plan: SwitchPlan, table: MACTable,
                   segmented: Bool = false, team: TeamContext? = nil) -> Decision {
    var trace = NoTrace()
    return decide(frame: frame, inPort: inPort, plan: plan, table: table, trace: &trace, segmented: segmented, team: team)
}

/// The team's checks on a frame from an uplink (switch-independent teaming, see `TeamState`):
/// returns the drop reason, or nil to admit it.
///
/// 1. Only members that carry traffic receive (standby and failed ones get the physical
///    switch's floods too).
/// 2. A source MAC learned on a guest port is our own frame reflected back, unless it is a
///    GARP/RARP announcing a real move that is not our own echo (announcement lock).
/// 3. Floods (broadcast, multicast, unknown unicast) are accepted from the VLAN's designated
///    receiver only; a known unicast to a guest only from the member carrying that guest.
/// 4. Never to another uplink, never to a port group with `uplinks: none`.
///
/// `known`: the port of the (unicast) destination in the MAC table, nil for multicast or a miss.
@inline(__always)
func teamAdmission<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: FrameHeader, vlan: VLANID, port: HotPort,
                                 inPort: PortIndex, destinationPort known: PortIndex?, plan: SwitchPlan, table: MACTable,
                                 team: TeamContext?, trace: inout T) -> DropReason? {
    let member = Int(port.teamMember)
    if let q = known {
        if q == inPort { return .hairpin }
        if plan.storage.hot[q].isUplink { return .uplinkToUplink }
        if !plan.storage.hot[q].usesUplinks { return .uplinkIsolated }
    }
    guard let t = team else { return nil }
    if !t.state.holders.contains(Int16(member)) { return .teamInactiveUplink }
    if let q = table.lookup(vlan: vlan, mac: h.source), !plan.storage.hot[q].isUplink {
        let announcement = isAnnouncement(header: h, frame: frame)
        if !announcement || t.locks.isLocked(vlan: vlan, mac: h.source, now: t.now) { return .teamReflectedSource }
    }
    if h.destination.isMulticast || known == nil {
        if let r = t.state.designatedReceiver(vlan: vlan), r != member { return .teamNotDesignatedReceiver }
    } else if let q = known,
              let carrier = t.state.uplink(carrying: TeamMACEntry(vlan: vlan, mac: h.destination, port: q)), carrier != member {
        return .teamNotDesignatedReceiver
    }
    trace.record(.teamAdmitted(member: member))
    return nil
}

/// Whether `port` may receive a frame for `destination` under its security policy: with
/// `mac-changes` rejected (and not promiscuous), unicast goes only to the configured MAC.
@inlinable @inline(__always)
public func egressRefusal(of destination: MACAddress, to port: HotPort) -> DropReason? {
    guard let own = port.configuredMAC, !port.security.macChanges, !port.security.promiscuous,
          !destination.isMulticast, destination != own else { return nil }
    return .macChangeRejected
}

/// Calls `body` for each port a decided frame leaves by, with the rewrite it needs, or the
/// reason the port's policy refuses it (the caller counts that as a drop on that port).
/// Flooding skips the ingress port; a forward to a port outside the VLAN yields nothing;
/// promiscuous ports of the VLAN also get forwarded unicast.
///
/// `@inlinable`: the datapath's `body` (the writes) is then inlined into this walk in the
/// caller's module, instead of being called through a closure context per egress port.
@inlinable @inline(__always)
public func forEachEgress(of d: Decision, inPort: PortIndex, plan: SwitchPlan,
                          _ body: (PortIndex, EgressRewrite, DropReason?) -> Void) {
    let from = plan.storage.hot[inPort]
    @inline(__always) func offer(_ p: PortIndex) {
        let port = plan.storage.hot[p]
        // The team: a guest's frame leaves by its one chosen member, never by the others;
        // from an uplink only to guests of port groups that use uplinks.
        if port.isUplink {
            if from.isUplink || port.teamMember != d.uplink { return }
        } else if from.isUplink && !port.usesUplinks {
            return
        }
        if let rw = plan.egressRewrite(vlan: d.vlan, ingressTagLength: d.ingressTagLength, pcp: d.pcp, on: port) {
            body(p, rw, egressRefusal(of: d.destination, to: port))
        }
    }
    switch d.verdict {
    case .drop, .local: return
    case .forward(let p):
        offer(p)
        // One predictable branch on switches without promiscuous ports (no slice built).
        if plan.storage.hasPromiscuousPorts {
            let set = plan.storage.promiscuousPorts, start = plan.storage.promiscuousStart, v = Int(d.vlan.rawValue)
            for i in Int(start[v])..<Int(start[v + 1]) {
                let q = Int(set[i])
                if q != inPort && q != p { offer(q) }
            }
        }
    case .flood:
        // Indexes into the flood set rather than `floodSet(_:)`'s slice: no reference
        // counting on the per-frame path.
        let set = plan.storage.floodPorts, start = plan.storage.floodStart, v = Int(d.vlan.rawValue)
        for i in Int(start[v])..<Int(start[v + 1]) {
            let p = Int(set[i])
            if p != inPort { offer(p) }
        }
    case .floodPortGroup:
        let group = plan.storage.hot[inPort].group
        for p32 in plan.floodSet(d.vlan) {
            let p = Int(p32)
            if p != inPort && plan.storage.hot[p].l2Transparency && plan.storage.hot[p].group == group { offer(p) }
        }
    }
}
