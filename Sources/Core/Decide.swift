import Model

/// A frame for the switch itself: consumed, not forwarded, not a drop.
public enum LocalFrame: UInt8, Equatable, Sendable {
    /// A NIC team's beacon probe (`Beacon.parse(frame:)` reads it: rare frames, so its
    /// payload is not carried in every decision).
    case teamBeacon
    /// An LLDPDU from the physical network on an uplink (`LLDPFrames.isLLDP`): the
    /// datapath hands it to the switch's LLDP agent, which parses it off the frame path.
    case lldp
}

/// Which frames are LLDP (IEEE 802.1AB-2016 §7.1, §7.2): EtherType 0x88cc (after any VLAN
/// tags) sent to one of the three LLDP group addresses — nearest bridge 01:80:c2:00:00:0e,
/// nearest non-TPMR bridge 01:80:c2:00:00:03, nearest customer bridge 01:80:c2:00:00:00.
///
/// The one place the rule is written: `decide` consumes such frames from uplinks, and the
/// Observability module's `LLDP.isLLDP` (the agent's parser) asks the same question.
public enum LLDPFrames {
    /// The LLDP EtherType.
    public static let etherType: UInt16 = 0x88CC

    /// True for an LLDP frame. No allocation; for the datapath.
    @inlinable @inline(__always)
    public static func isLLDP(_ h: FrameHeader) -> Bool {
        h.etherType == etherType
            && (h.destination.rawValue == 0x0180_C200_000E || h.destination.rawValue == 0x0180_C200_0003
                || h.destination.rawValue == 0x0180_C200_0000)
    }
}

/// What happens to a frame.
public enum Verdict: Equatable, Sendable {
    /// Out of exactly one port (known unicast destination).
    case forward(PortIndex)
    /// Out of every other member port of the VLAN (broadcast, multicast, unknown unicast).
    case flood
    /// A reserved-group frame (STP, LACP, LLDP…) on a port group with L2 transparency: out
    /// of the other ports of the same port group in the VLAN.
    case floodPortGroup
    /// For the switch itself (a NIC team's beacon probe, an LLDPDU from the physical
    /// network): not forwarded, not a drop.
    case local(LocalFrame)
    /// IGMP/MLD snooping: data to a registered group, out of its member ports (the group at
    /// this slot of `DecisionContext.multicast`), the multicast-router ports and the
    /// promiscuous ports of the VLAN.
    case multicastGroup(Int32)
    /// IGMP/MLD snooping: a membership report or leave, out of the multicast-router ports
    /// (and the promiscuous ports) only (RFC 4541 §2.1.1).
    case multicastRouters
    case drop(DropReason)
}

/// The forwarding decision for one frame: a small value, no I/O, no side effects.
///
/// Every per-frame policy is decided here, so `trace` (which runs the same `decide` and the
/// same `collectEgress`) can never disagree with forwarding. Side effects are *requested*,
/// not done: the datapath applies them (`learn` → `MACTable.learn`, `takesStormToken` →
/// `StormControl.take`, `takesShapingTokens` → `TrafficShaper.take` (and, per output to a
/// port shaped on egress, the same for egress), `snoops` → `MulticastGroupTable.snoop`,
/// `announces` → `AnnouncementLock.stamp`, a `.local` beacon → `BeaconMonitor.received`, a
/// `.local` LLDPDU → the LLDP agent's inbox);
/// `trace` shows them and applies none (OVS `allow_side_effects`).
public struct Decision: Equatable, Sendable {
    public var verdict: Verdict
    /// The VLAN the frame was classified into (meaningless for early drops).
    public var vlan: VLANID
    /// The VLAN (vlan, MAC) is learned and looked up in, and the multicast group table's
    /// VLAN: `vlan`, or the primary of a private VLAN (shared learning, the 802.1Q FID).
    public var learningVLAN: VLANID = .untagged
    /// PCP and DEI of the ingress tag (`VLANTag.priorityBits`), relayed into egress tags.
    public var priority: UInt16
    /// The team member (uplink) a guest's frame leaves by when it goes outside; -1 when it
    /// never does (no team, `uplinks: none`, from an uplink, or no healthy member).
    public var uplink: Int16 = -1
    /// Why the frame floods (nil unless it floods): its storm-control class.
    public var floodReason: FloodReason?
    /// What the frame's virtio-net header leaves to the receiver (egress refuses or, later,
    /// segments it for ports without offloads).
    public var offload: FrameOffload = .none
    /// `ingressTagLength`, in the byte it needs.
    @usableFromInline var tagBytes: UInt8
    /// The requested effects, one bit each (`Effects`): one byte to carry and test instead of
    /// five booleans (the decision lives in registers between `decide` and the datapath's
    /// effects; every field is a register to keep).
    @usableFromInline var effects: UInt8 = 0
    public var source: MACAddress
    public var destination: MACAddress
    /// `length`, in 32 bits (a frame, even a GSO one, is far under 4 GiB: it is a buffer the
    /// datapath read).
    @usableFromInline var length32: UInt32 = 0

    /// The bits of `effects`.
    @usableFromInline enum Effects {
        @usableFromInline static let learn: UInt8 = 1
        @usableFromInline static let takesStormToken: UInt8 = 2
        @usableFromInline static let announces: UInt8 = 4
        @usableFromInline static let takesShapingTokens: UInt8 = 8
        @usableFromInline static let snoops: UInt8 = 16
    }

    @inlinable @inline(__always)
    func has(_ bit: UInt8) -> Bool { effects & bit != 0 }
    @inlinable @inline(__always)
    mutating func set(_ bit: UInt8, _ on: Bool) { effects = on ? effects | bit : effects & ~bit }

    /// Bytes of outer tag consumed at ingress (0 or 4): egress strips them.
    @inlinable public var ingressTagLength: Int {
        @inline(__always) get { Int(tagBytes) }
        set { tagBytes = UInt8(truncatingIfNeeded: newValue) }
    }
    /// The frame's length as received (bytes, a GSO frame's whole length): what shaping charges.
    @inlinable public var length: Int {
        @inline(__always) get { Int(length32) }
        set { length32 = UInt32(truncatingIfNeeded: newValue) }
    }
    /// The datapath learns (vlan, source) on the ingress port. Never set on a drop.
    @inlinable public var learn: Bool {
        @inline(__always) get { has(Effects.learn) }
        set { set(Effects.learn, newValue) }
    }
    /// The datapath spends one storm-control token of class `floodReason` on the ingress port.
    @inlinable public var takesStormToken: Bool {
        @inline(__always) get { has(Effects.takesStormToken) }
        set { set(Effects.takesStormToken, newValue) }
    }
    /// A local guest announces itself (gratuitous ARP or RARP) towards a team: the datapath
    /// stamps the announcement lock, so the echo from the physical network is not taken
    /// for a move away.
    @inlinable public var announces: Bool {
        @inline(__always) get { has(Effects.announces) }
        set { set(Effects.announces, newValue) }
    }
    /// The datapath charges the frame to the ingress port's ingress shaping buckets.
    @inlinable public var takesShapingTokens: Bool {
        @inline(__always) get { has(Effects.takesShapingTokens) }
        set { set(Effects.takesShapingTokens, newValue) }
    }
    /// IGMP/MLD snooping: the datapath records the frame's report, leave or query
    /// (`MulticastGroupTable.snoop`) for the ingress port in `learningVLAN`.
    @inlinable public var snoops: Bool {
        @inline(__always) get { has(Effects.snoops) }
        set { set(Effects.snoops, newValue) }
    }

    @inlinable
    public init(verdict: Verdict, vlan: VLANID = .untagged, ingressTagLength: Int = 0, priority: UInt16 = 0, learn: Bool = false,
                source: MACAddress = .zero, destination: MACAddress = .zero, floodReason: FloodReason? = nil) {
        self.verdict = verdict; self.vlan = vlan; self.tagBytes = UInt8(truncatingIfNeeded: ingressTagLength); self.priority = priority
        self.effects = learn ? Effects.learn : 0
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
    /// Storm control's answer for a flooded frame as of now (`framesLeft`: whole frames in
    /// the port's bucket of that class before this one).
    case stormControl(reason: FloodReason, admitted: Bool, framesLeft: Int64, ratePerSecond: Int64)
    case forwarding(port: PortIndex)
    case transparent(portGroup: String)
    /// A frame for the switch itself (a team beacon probe).
    case consumed(what: String)
    /// A guest's frame that goes outside leaves by team member `member` (port `port`).
    case teamUplink(member: Int, port: PortIndex)
    /// A frame from uplink `member` passed the team's reflection and receiver checks.
    case teamAdmitted(member: Int)
    /// A local guest's gratuitous ARP/RARP: the team's announcement lock will be stamped.
    case announcement(vlan: VLANID, mac: MACAddress)
    /// The frame's VLAN belongs to a private VLAN: what it is, and its primary (learning is
    /// shared under the primary; egress follows the matrix).
    case privateVLAN(vlan: VLANID, type: PrivateVLANType, primary: VLANID)
    /// The known destination's port may not receive this frame (private VLAN matrix).
    case privateVLANBlocked(port: PortIndex)
    /// Traffic shaping's answer for the frame on `port` as of now: the bytes in the average
    /// and peak buckets before it (negative: paying back a frame larger than the bucket).
    case shaping(port: PortIndex, direction: ShapingDirection, admitted: Bool, bytes: Int, averageBytes: Int64, peakBytes: Int64)
    /// IGMP/MLD snooping.
    case snooping(SnoopingStep)
    case dropped(DropReason)
}

/// What IGMP/MLD snooping made of a multicast frame (a trace step).
public enum SnoopingStep: Equatable, Sendable {
    /// The frame as the snooping parser reads it.
    case signal(MulticastSignal)
    /// Data to a link-local group: always flooded.
    case linkLocal(WireIPAddress)
    /// Data to a registered group (slot `slot` of the group table).
    case registered(WireIPAddress, vlan: VLANID, slot: Int)
    /// Data to a group nobody joined: flooded (Open vSwitch's default).
    case unregistered(WireIPAddress, vlan: VLANID)
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

/// What `decide` reads besides the frame and the plan: the switch's live state, as of one
/// instant. The datapath builds one per batch under its lock; `trace` builds one the same way.
public struct DecisionContext {
    public var table: MACTable
    /// The NIC team's state (nil for a switch without uplinks).
    public var team: TeamContext?
    /// Storm-control buckets (nil, or inactive, when no port has a limit).
    public var storm: StormControl?
    /// Ports whose device went away (nil when all are up): they get no copies.
    public var links: PortLinks?
    public var now: MonotonicInstant
    /// Traffic-shaping buckets (nil when no port is shaped).
    public var shaper: TrafficShaper?
    /// The multicast group table (nil when snooping is off: multicast floods).
    public var multicast: MulticastGroupTable?
    @inlinable
    public init(table: MACTable, team: TeamContext? = nil, storm: StormControl? = nil, links: PortLinks? = nil,
                now: MonotonicInstant = MonotonicInstant(nanoseconds: 0), shaper: TrafficShaper? = nil,
                multicast: MulticastGroupTable? = nil) {
        self.table = table; self.team = team; self.storm = storm; self.links = links; self.now = now
        self.shaper = shaper; self.multicast = multicast
    }
}

/// Decides what the switch does with `frame` arriving on `inPort`.
///
/// Reads like OVS's `xlate_normal`: parse (once) → mirror destination? → size → source
/// check → LLDP from an uplink (consumed) → VLAN classification (and its private VLAN) → reserved destination → team
/// admission (from an uplink) → lookup (private VLAN matrix for a known destination) /
/// IGMP/MLD snooping (multicast) → forward / flood / group / routers / drop(reason) →
/// storm control → ingress shaping → learn request. Pure: reads the
/// plan and `context`, writes nothing (the trace sink is the caller's). `offload` says what
/// the frame's virtio-net header left undone: a GSO frame is longer than the MTU by design,
/// so the oversize check does not apply; egress refuses (or segments) it for ports that
/// cannot take it.
///
/// ## Cost
/// The body is the spine of the common case (a guest's known unicast on a switch without
/// policies, ≈ 60 instructions); every other stage sits in an out-of-line helper behind one
/// predictable branch: `uplinkIngress` (a frame from a team member), `multicastIngress`
/// (broadcast and multicast, with IGMP/MLD snooping), `teamForward` (a guest's frame to the
/// physical network) and `ingressPolicies` (storm control, ingress shaping, the team member
/// of a flood, announcements), skipped at once for a known unicast when no port is shaped.
///
/// `@inlinable @inline(__always)`, and so are the helpers (`@inline(never)`): the caller's
/// module (the datapath, `trace`, the benchmark) specialises all of it for its trace sink,
/// `NoTrace` makes every trace step vanish, and the `Decision` stays in registers for the
/// caller's `learn` and `collectEgress` instead of being written to memory and read back
/// (callgrind, `tapestry-bench forward`: see `Scripts/bench/instructions-results.md`).
@inlinable @inline(always)
public func decide<T: TraceSink>(
    frame: UnsafeRawBufferPointer,
    offload: FrameOffload = .none,
    inPort: PortIndex,
    plan: SwitchPlan,
    context: DecisionContext,
    trace: inout T
) -> Decision {
    trace.record(.received(port: inPort, length: frame.count))
    guard let h = FrameHeader.parse(frame) else {
        trace.record(.dropped(.runt))
        return Decision(verdict: .drop(.runt))
    }
    trace.record(.parsed(h))
    let storage = plan.storage
    // Fields are read through the pointer where they are used: no copy of the whole record.
    let port = storage.hotPorts + inPort
    if port.pointee.isMirrorDestination {
        trace.record(.dropped(.mirrorDestinationPort))
        return Decision(verdict: .drop(.mirrorDestinationPort))
    }
    if !offload.isGSO && frame.count > plan.maximumFrameLength(tags: h.tagCount) {
        trace.record(.dropped(.oversize))
        return Decision(verdict: .drop(.oversize))
    }
    if !h.source.isUnicast {
        trace.record(.dropped(.invalidSourceMAC))
        return Decision(verdict: .drop(.invalidSourceMAC))
    }
    if let own = port.pointee.configuredMAC, !port.pointee.security.forgedTransmits, h.source != own {
        trace.record(.dropped(.forgedTransmit))
        return Decision(verdict: .drop(.forgedTransmit))
    }
    let fromUplink = port.pointee.isUplink
    if fromUplink && LLDPFrames.isLLDP(h) {
        // LLDP from the physical network (802.1AB): the switch's own LLDP agent reads it, on
        // every team member, active or standby, whatever VLAN the frame is in — so before
        // VLAN classification, the reserved-destination drop and team admission — and it
        // never reaches a guest. A guest's LLDP keeps the reserved-destination rule
        // (`l2-transparency` is a port group's choice).
        trace.record(.consumed(what: "LLDP frame from the physical network (IEEE 802.1AB), for the switch's LLDP agent"))
        var d = Decision(verdict: .local(.lldp), source: h.source, destination: h.destination)
        d.length = frame.count
        return d
    }
    let cls = plan.ingressClass(of: h, on: port.pointee)
    trace.record(.classified(cls, mode: plan.ports[inPort].mode))
    guard case let .member(vlan, tagLength, priority) = cls else {
        if case let .drop(r) = cls { return Decision(verdict: .drop(r)) }
        return Decision(verdict: .drop(.runt))
    }
    var d = Decision(verdict: .flood, vlan: vlan, ingressTagLength: tagLength, priority: priority,
                     source: h.source, destination: h.destination)
    d.offload = offload
    d.length = frame.count
    // Shared learning across a private VLAN (one predictable branch without them).
    var fid = vlan
    let privateVLANs = storage.hasPrivateVLANs
    if privateVLANs {
        let info = storage.privateVLANInfo[Int(vlan.rawValue)]
        fid = VLANID(UInt16(truncatingIfNeeded: info >> 8))
        if info & 0xFF != 0 {
            trace.record(.privateVLAN(vlan: vlan, type: PrivateVLANType(rawValue: UInt8(info & 0xFF))!, primary: fid))
        }
    }
    d.learningVLAN = fid
    if h.destination.isReservedBridgeGroup && !port.pointee.l2Transparency { return dropped(d, .reservedDestination, trace: &trace) }
    let table = context.table
    // For a frame from an uplink: where its (unicast) destination is, looked up once for the
    // team's checks and the forwarding below.
    var uplinkDestination: PortIndex? = nil
    if fromUplink {
        switch uplinkIngress(frame: frame, header: HeaderFields(h), vlan: vlan, learningVLAN: fid, inPort: inPort, plan: plan,
                             context: context, trace: &trace) {
        case .beacon:
            d.verdict = .local(.teamBeacon)
            return d
        case .refused(let reason):
            return dropped(d, reason, trace: &trace)
        case .admitted(let known):
            uplinkDestination = known
        }
    }
    if h.destination.isReservedBridgeGroup {
        trace.record(.transparent(portGroup: plan.ports[inPort].portGroup))
        d.verdict = .floodPortGroup
    } else if h.destination.isMulticast {
        let m = multicastIngress(frame: frame, header: HeaderFields(h), offload: offload, vlan: vlan, learningVLAN: fid,
                                 context: context, trace: &trace)
        d.floodReason = m.floodReason
        if case .drop(let r) = m.verdict { return dropped(d, r, trace: &trace) }
        d.verdict = m.verdict
        d.snoops = m.snoops
    } else if let out = fromUplink ? uplinkDestination : table.lookup(vlan: fid, mac: h.destination) {
        trace.record(.lookedUp(vlan: fid, mac: h.destination, port: out))
        let outPort = storage.hotPorts + out
        if outPort.pointee.isUplink && !fromUplink {
            // Out to the physical network: by the member the team picks for this guest,
            // whichever uplink the destination was learned on.
            let t = teamForward(frame: frame, header: HeaderFields(h), inPort: inPort, plan: plan, context: context, trace: &trace)
            d.uplink = t.uplink
            if case .drop(let r) = t.verdict { return dropped(d, r, trace: &trace) }
            d.verdict = t.verdict
        } else if out == inPort {
            return dropped(d, .hairpin, trace: &trace)
        } else if port.pointee.isTunnel && outPort.pointee.isTunnel {
            return dropped(d, .splitHorizon, trace: &trace)
        } else if privateVLANs && !plan.delivers(vlan, to: outPort.pointee) {
            trace.record(.privateVLANBlocked(port: out))
            return dropped(d, .privateVLANNotAllowed, trace: &trace)
        } else {
            trace.record(.forwarding(port: out))
            d.verdict = .forward(out)
        }
    } else {
        trace.record(.lookedUp(vlan: fid, mac: h.destination, port: nil))
        trace.record(.flooding(vlan: vlan, reason: .unknownUnicast))
        d.floodReason = .unknownUnicast
    }
    // The policy stage: nothing in it concerns a known unicast (or a frame flooded within
    // its port group) unless the switch shapes some port.
    if d.floodReason != nil || context.shaper != nil {
        let a = ingressPolicies(frame: frame, header: HeaderFields(h), verdict: d.verdict, floodReason: d.floodReason,
                                learningVLAN: fid, inPort: inPort, plan: plan, context: context, trace: &trace)
        if let r = a.refusal { return dropped(d, r, trace: &trace) }
        d.takesStormToken = a.takesStormToken
        d.takesShapingTokens = a.takesShapingTokens
        if a.uplink >= 0 { d.uplink = a.uplink }
        d.announces = a.announces
    }
    trace.record(.learnRequested(vlan: fid, mac: h.source, port: inPort, currentPort: table.lookup(vlan: fid, mac: h.source)))
    d.learn = true
    return d
}

/// The fields of a frame's header that `decide`'s out-of-line stages read. Its tags are
/// spent by VLAN classification before those stages, so they are not carried there: every
/// value the stages could need would stay in a register (or a spill slot) through the
/// lookup on the common path too.
@usableFromInline
struct HeaderFields {
    @usableFromInline var destination: MACAddress
    @usableFromInline var source: MACAddress
    @usableFromInline var etherType: UInt16
    @usableFromInline var payloadOffset: Int
    @inlinable @inline(__always)
    init(_ h: FrameHeader) {
        destination = h.destination; source = h.source; etherType = h.etherType; payloadOffset = h.payloadOffset
    }
}

/// What the team makes of a frame from an uplink (`uplinkIngress`).
@usableFromInline
enum UplinkIngress {
    /// A team beacon probe: the switch's own.
    case beacon
    /// Refused by the team's checks (`teamAdmission`) or the destination's port.
    case refused(DropReason)
    /// Admitted; the port of its unicast destination, looked up once (nil: multicast or
    /// unknown).
    case admitted(PortIndex?)
}

/// `decide`'s stage for a frame from an uplink, out of line: beacon probes first (every
/// member, standby or not, must hear them), then the destination's lookup and the team's
/// admission checks.
@inlinable @inline(never)
func uplinkIngress<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: HeaderFields, vlan: VLANID, learningVLAN fid: VLANID,
                                 inPort: PortIndex, plan: SwitchPlan, context: DecisionContext, trace: inout T) -> UplinkIngress {
    if h.destination == TeamFrames.beaconDestination && h.etherType == TeamFrames.beaconEtherType {
        trace.record(.consumed(what: "team beacon probe"))
        return .beacon
    }
    let known = h.destination.isMulticast ? nil : context.table.lookup(vlan: fid, mac: h.destination)
    if let reason = teamAdmission(frame: frame, header: h, vlan: vlan, learningVLAN: fid, port: plan.storage.hotPorts[inPort],
                                  inPort: inPort, destinationPort: known, plan: plan, table: context.table, team: context.team,
                                  trace: &trace) {
        return .refused(reason)
    }
    return .admitted(known)
}

/// `decide`'s drop after classification: the decision so far with verdict `.drop(r)` (and no
/// snooping).
@inlinable @inline(always)
func dropped<T: TraceSink>(_ d: Decision, _ r: DropReason, trace: inout T) -> Decision {
    trace.record(.dropped(r))
    var d = d
    d.verdict = .drop(r)
    d.snoops = false
    return d
}

/// `decide`'s stage for a broadcast or multicast destination, out of line: the flood
/// class, and IGMP/MLD snooping (RFC 4541; Open vSwitch's semantics, see
/// `MulticastSnooping`) when it is on. Returns the verdict (`.flood`, `.multicastGroup`,
/// `.multicastRouters`, or `.drop` for a malformed IGMP/MLD message), the flood class, and
/// whether the datapath records the message (`Decision.snoops`).
@inlinable @inline(never)
func multicastIngress<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: HeaderFields, offload: FrameOffload, vlan: VLANID,
                                    learningVLAN fid: VLANID, context: DecisionContext,
                                    trace: inout T) -> (verdict: Verdict, floodReason: FloodReason, snoops: Bool) {
    let reason: FloodReason = h.destination.isBroadcast ? .broadcast : .multicast
    var verdict = Verdict.flood, snoops = false
    if let groups = context.multicast, !h.destination.isBroadcast {
        let signal = MulticastSignal.parse(frame, l3Offset: h.payloadOffset, etherType: h.etherType,
                                           verifyChecksums: !offload.needsChecksum)
        trace.record(.snooping(.signal(signal)))
        switch signal {
        case .notSnooped:
            break
        case .data(let group):
            if group.isLinkLocalMulticast {
                trace.record(.snooping(.linkLocal(group)))
            } else {
                let slot = groups.slot(vlan: fid, group: group)
                if slot >= 0 {
                    trace.record(.snooping(.registered(group, vlan: fid, slot: slot)))
                    verdict = .multicastGroup(Int32(slot))
                } else {
                    trace.record(.snooping(.unregistered(group, vlan: fid)))
                }
            }
        case .query:
            snoops = true
        case .report, .leave:
            snoops = true
            verdict = .multicastRouters
        case .malformed(let family, _):
            return (.drop(family == .ipv4 ? .malformedIGMP : .malformedMLD), reason, false)
        }
    }
    if case .flood = verdict { trace.record(.flooding(vlan: vlan, reason: reason)) }
    return (verdict, reason, snoops)
}

/// `decide`'s stage for a guest's known unicast whose destination is behind an uplink, out
/// of line: it leaves by the member the team picks for this guest, whichever uplink the
/// destination was learned on (never from a tunnel, never from a port group with
/// `uplinks: none`). Returns `.forward` to that member's port, or a drop, and the member
/// (-1: none).
@inlinable @inline(never)
func teamForward<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: HeaderFields, inPort: PortIndex, plan: SwitchPlan,
                               context: DecisionContext, trace: inout T) -> (verdict: Verdict, uplink: Int16) {
    let port = plan.storage.hotPorts + inPort
    if port.pointee.isTunnel { return (.drop(.splitHorizon), -1) }
    if !port.pointee.usesUplinks { return (.drop(.uplinkIsolated), -1) }
    let uplink = Int16(context.team?.state.uplink(forGuestPort: inPort, source: h.source, etherType: h.etherType,
                                                  payloadOffset: h.payloadOffset, frame: frame) ?? -1)
    guard uplink >= 0 else { return (.drop(.noHealthyUplink), uplink) }
    let p = plan.storage.uplinkPorts[Int(uplink)]
    trace.record(.teamUplink(member: Int(uplink), port: p))
    trace.record(.forwarding(port: p))
    return (.forward(p), uplink)
}

/// What `ingressPolicies` answers.
@usableFromInline
struct IngressPolicyAnswer {
    /// The frame is dropped (storm control, ingress shaping).
    @usableFromInline var refusal: DropReason?
    @usableFromInline var takesStormToken = false
    @usableFromInline var takesShapingTokens = false
    /// The team member a flood or a group's traffic leaves by; -1: none.
    @usableFromInline var uplink: Int16 = -1
    @usableFromInline var announces = false
    @inlinable init(refusal: DropReason? = nil) { self.refusal = refusal }
}

/// `decide`'s policy stage, out of line: storm control (a flood's class), ingress shaping,
/// the team member a flood or a group's traffic leaves by, and a local guest's
/// announcement. Questions only: the tokens are spent by the caller, and only by a frame
/// that passes every check (storm and shaping alike).
@inlinable @inline(never)
func ingressPolicies<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: HeaderFields, verdict: Verdict,
                                   floodReason: FloodReason?, learningVLAN fid: VLANID, inPort: PortIndex, plan: SwitchPlan,
                                   context: DecisionContext, trace: inout T) -> IngressPolicyAnswer {
    var answer = IngressPolicyAnswer()
    if let why = floodReason, let storm = context.storm, storm.isActive, let rate = storm.rate(port: inPort, reason: why) {
        let admitted = storm.wouldAdmit(port: inPort, reason: why, now: context.now)
        trace.record(.stormControl(reason: why, admitted: admitted,
                                   framesLeft: storm.frames(port: inPort, reason: why, now: context.now) ?? 0, ratePerSecond: rate))
        guard admitted else { return IngressPolicyAnswer(refusal: why.stormDrop) }
        answer.takesStormToken = true
    }
    if let shaper = context.shaper, shaper.shapes(port: inPort, .ingress) {
        let admitted = shaper.wouldAdmit(port: inPort, .ingress, bytes: frame.count, now: context.now)
        trace.record(.shaping(port: inPort, direction: .ingress, admitted: admitted, bytes: frame.count,
                              averageBytes: shaper.available(port: inPort, .ingress, now: context.now)?.average ?? 0,
                              peakBytes: shaper.available(port: inPort, .ingress, now: context.now)?.peak ?? 0))
        guard admitted else { return IngressPolicyAnswer(refusal: .shapingIngress) }
        answer.takesShapingTokens = true
    }
    let port = plan.storage.hotPorts + inPort
    switch verdict {
    case .flood, .multicastGroup, .multicastRouters:
        // Uplinks are multicast-router ports: a group's traffic and reports leave by the team.
        if plan.storage.team != nil, port.pointee.usesUplinks {
            answer.uplink = Int16(context.team?.state.uplink(forGuestPort: inPort, source: h.source, etherType: h.etherType,
                                                             payloadOffset: h.payloadOffset, frame: frame) ?? -1)
            if answer.uplink >= 0 { trace.record(.teamUplink(member: Int(answer.uplink), port: plan.uplinkPorts[Int(answer.uplink)])) }
        }
    default: break
    }
    if plan.storage.team != nil && !port.pointee.isUplink && h.destination.isBroadcast
        && isAnnouncement(etherType: h.etherType, payloadOffset: h.payloadOffset, source: h.source, frame: frame) {
        trace.record(.announcement(vlan: fid, mac: h.source))
        answer.announces = true
    }
    return answer
}

/// Bytes at the start of a frame that `decide` reads for a decision `decisionIsReusable`
/// accepts: destination and source MAC, up to two 802.1Q/802.1ad tags, the EtherType.
public let reusableDecisionKeyBytes = 24

/// Whether `d`, decided for a frame on `inPort`, is what `decide` answers again for any
/// frame on the same port with the same first `reusableDecisionKeyBytes` bytes, the same
/// length and the same offload, under the same context, once `d`'s effects are applied and
/// its learn request found the source already known on `inPort` (`LearnOutcome.refreshed`:
/// nothing changed). The datapath reuses such a decision for the next frame of a batch
/// instead of deciding it again, as Open vSwitch's exact-match cache reuses a flow: most
/// frames of a batch from one guest go to the same place.
///
/// Only a guest's known unicast to another guest port qualifies: no effect but learning, no
/// team (its hash may read the IP header), no tunnel, no mirror, no promiscuous port, no
/// shaping (its buckets change per frame). Those read nothing past the tags: the lookup, the
/// security checks, VLAN classification and the private VLAN matrix read the MACs and tags,
/// the size check the length, and everything else the plan and the context.
@inlinable
public func decisionIsReusable(_ d: Decision, inPort: PortIndex, plan: SwitchPlan, context: DecisionContext) -> Bool {
    guard case .forward(let out) = d.verdict, d.effects == Decision.Effects.learn, d.uplink < 0, context.shaper == nil else { return false }
    let storage = plan.storage
    guard !storage.hasMirrors, !storage.hasPromiscuousPorts else { return false }
    let from = storage.hotPorts + inPort, to = storage.hotPorts + out
    return !from.pointee.isUplink && !from.pointee.isTunnel && !to.pointee.isUplink && !to.pointee.isTunnel
}

/// `decide` as the datapath calls it: no trace.
///
/// Inlined into the caller with the generic body, which `NoTrace` specialises to the bare
/// decision (an unspecialised generic call pays a witness-table call for every trace step
/// and generic prologues: ≈30% more instructions per frame, callgrind on
/// `tapestry-bench forward`).
@inlinable @inline(always)
public func decide(frame: UnsafeRawBufferPointer, offload: FrameOffload = .none, inPort: PortIndex, plan: SwitchPlan,
                   context: DecisionContext) -> Decision {
    var trace = NoTrace()
    return decide(frame: frame, offload: offload, inPort: inPort, plan: plan, context: context, trace: &trace)
}

/// `decide` over a MAC table and an optional team, without storm control (tests and tools).
public func decide(frame: UnsafeRawBufferPointer, inPort: PortIndex, plan: SwitchPlan, table: MACTable,
                   segmented: Bool = false, team: TeamContext? = nil) -> Decision {
    decide(frame: frame, offload: FrameOffload(isGSO: segmented), inPort: inPort, plan: plan,
           context: DecisionContext(table: table, team: team, now: team?.now ?? MonotonicInstant(nanoseconds: 0)))
}

/// `decide` with a recording sink over a MAC table and an optional team (tests).
public func decide<T: TraceSink>(frame: UnsafeRawBufferPointer, inPort: PortIndex, plan: SwitchPlan, table: MACTable,
                                 trace: inout T, segmented: Bool = false, team: TeamContext? = nil) -> Decision {
    decide(frame: frame, offload: FrameOffload(isGSO: segmented), inPort: inPort, plan: plan,
           context: DecisionContext(table: table, team: team, now: team?.now ?? MonotonicInstant(nanoseconds: 0)), trace: &trace)
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
@inlinable @inline(__always)
func teamAdmission<T: TraceSink>(frame: UnsafeRawBufferPointer, header h: HeaderFields, vlan: VLANID, learningVLAN fid: VLANID,
                                 port: HotPort, inPort: PortIndex, destinationPort known: PortIndex?, plan: SwitchPlan, table: MACTable,
                                 team: TeamContext?, trace: inout T) -> DropReason? {
    let member = Int(port.teamMember)
    if let q = known {
        if q == inPort { return .hairpin }
        if plan.storage.hotPorts[q].isUplink { return .uplinkToUplink }
        if plan.storage.hotPorts[q].isTunnel { return .splitHorizon }
        if !plan.storage.hotPorts[q].usesUplinks { return .uplinkIsolated }
    }
    guard let t = team else { return nil }
    if !t.state.holders.contains(Int16(member)) { return .teamInactiveUplink }
    if let q = table.lookup(vlan: fid, mac: h.source), !plan.storage.hotPorts[q].isUplink {
        let announcement = isAnnouncement(etherType: h.etherType, payloadOffset: h.payloadOffset, source: h.source, frame: frame)
        if !announcement || t.locks.isLocked(vlan: fid, mac: h.source, now: t.now) { return .teamReflectedSource }
    }
    if h.destination.isMulticast || known == nil {
        if let r = t.state.designatedReceiver(vlan: vlan), r != member { return .teamNotDesignatedReceiver }
    } else if let q = known,
              let carrier = t.state.uplink(carrying: TeamMACEntry(vlan: fid, mac: h.destination, port: q)), carrier != member {
        return .teamNotDesignatedReceiver
    }
    trace.record(.teamAdmitted(member: member))
    return nil
}

