import Model

/// One copy of a decided frame: where it goes and how (collected by `collectEgress`).
public struct EgressItem: Sendable {
    public enum Kind: UInt8, Sendable {
        /// The frame itself, out of `port`, rewritten by `rewrite`.
        case output
        /// `port` would get the frame (or a mirror copy of it), but refuses it: `refusal` is
        /// counted as a drop on `port`.
        case refused
        /// A mirror (SPAN) copy of the frame as it was received, to mirror destination `port`.
        case mirrorIngress
        /// A mirror copy of what leaves by output item `after`, to destination `port`: sent
        /// only if that output is sent ("copy if sent"); when several outputs of one frame
        /// offer a copy to the same destination, only the first one sent goes.
        case mirrorEgress
    }
    public var port: Int32
    public var kind: Kind
    /// Why `port` refuses the copy (`.refused` only).
    public var refusal: DropReason
    /// `.mirrorEgress`: the index (in the same list) of the output it copies; -1 otherwise.
    public var after: Int32
    /// How the copy leaves (identity for an ingress mirror copy: the frame as received).
    public var rewrite: EgressRewrite
    /// The frame is a GSO frame or carries a partial checksum, and `port` cannot take
    /// offloads (`PortPlan.acceptsOffloads` false: a tunnel, a port without a virtio-net
    /// header): the datapath segments it in software (TCP/UDP, checksums complete) or
    /// finishes its checksum before sending (`Wire.Segmentation`, `Wire.ChecksumCompletion`).
    public var finishOffload: Bool
    @inlinable init(port: Int, kind: Kind, refusal: DropReason = .runt, after: Int32 = -1, rewrite: EgressRewrite, finishOffload: Bool = false) {
        self.port = Int32(truncatingIfNeeded: port); self.kind = kind; self.refusal = refusal; self.after = after; self.rewrite = rewrite
        self.finishOffload = finishOffload
    }
}

/// The copies of one frame, in the order they are to be sent: a fixed buffer reused for
/// every frame (the datapath keeps one per worker, `trace` makes its own), so collecting
/// allocates nothing.
///
/// It also keeps, per port, the serial of the last frame that sent the port an ingress
/// mirror copy: each mirror destination gets at most one copy of a frame, however many of
/// its monitored ports the frame touches (the copy as first seen).
public final class EgressList {
    /// Copies one frame may have before the rest are counted as `transmit-queue-full`.
    public let capacity: Int
    @usableFromInline let items: UnsafeMutablePointer<EgressItem>
    @usableFromInline var used = 0
    @usableFromInline var dropped = 0
    @usableFromInline var stamps: UnsafeMutablePointer<UInt32>
    /// Per port, the serial of the last frame that offered it a multicast copy (a port that is
    /// both a group member and a router port gets one copy).
    @usableFromInline var marks: UnsafeMutablePointer<UInt32>
    @usableFromInline var stampCapacity: Int
    @usableFromInline var serial: UInt32 = 0

    public init(capacity: Int = 4096) {
        self.capacity = capacity
        items = .allocate(capacity: capacity)
        stampCapacity = 64
        stamps = .allocate(capacity: stampCapacity)
        stamps.initialize(repeating: 0, count: stampCapacity)
        marks = .allocate(capacity: stampCapacity)
        marks.initialize(repeating: 0, count: stampCapacity)
    }
    deinit { items.deallocate(); stamps.deallocate(); marks.deallocate() }

    /// Copies collected for the current frame.
    @inlinable public var count: Int { used }
    /// Copies that did not fit (the caller counts them on the ingress port).
    @inlinable public var overflow: Int { dropped }
    @inlinable public subscript(i: Int) -> EgressItem { items[i] }

    /// Makes room for a switch of `portCount` ports. Allocates only when a bigger switch
    /// than any before appears; call once per batch, outside the per-frame loop.
    public func prepare(portCount: Int) {
        guard portCount > stampCapacity else { return }
        stamps.deallocate(); marks.deallocate()
        stampCapacity = max(portCount, stampCapacity * 2)
        stamps = .allocate(capacity: stampCapacity)
        stamps.initialize(repeating: 0, count: stampCapacity)
        marks = .allocate(capacity: stampCapacity)
        marks.initialize(repeating: 0, count: stampCapacity)
        serial = 0
    }

    /// Starts a new frame's mirror stamps and multicast marks.
    @inlinable @inline(__always)
    func nextFrame() {
        serial &+= 1
        if serial == 0 {
            stamps.update(repeating: 0, count: stampCapacity)
            marks.update(repeating: 0, count: stampCapacity)
            serial = 1
        }
    }

    @inlinable @inline(__always)
    func append(_ item: EgressItem) {
        if used < capacity { items[used] = item; used &+= 1 } else { dropped &+= 1 }
    }

    /// True the first time `port` is stamped for the current frame.
    @inlinable @inline(__always)
    func stamp(_ port: Int) -> Bool {
        guard port < stampCapacity else { return true }
        if stamps[port] == serial { return false }
        stamps[port] = serial
        return true
    }

    @inlinable @inline(__always)
    func isStamped(_ port: Int) -> Bool { port < stampCapacity && stamps[port] == serial }

    /// True the first time `port` is marked for the current frame (multicast fan-out).
    @inlinable @inline(__always)
    func mark(_ port: Int) -> Bool {
        guard port < stampCapacity else { return true }
        if marks[port] == serial { return false }
        marks[port] = serial
        return true
    }
}

/// Whether `port` may receive a frame for `destination` under its security policy: with
/// `mac-changes` rejected (and not promiscuous), unicast goes only to the configured MAC.
@inlinable @inline(__always)
public func egressRefusal(of destination: MACAddress, to port: HotPort) -> DropReason? {
    guard let own = port.configuredMAC, !port.security.macChanges, !port.security.promiscuous,
          !destination.isMulticast, destination != own else { return nil }
    return .macChangeRejected
}

/// Collects into `list` every copy decided frame `d` leaves the switch as: outputs with
/// their rewrite, ports whose policy refuses it, and mirror copies; returns a drop for the
/// ingress port when there is one to count (`no-egress-port`: a flood reached no port;
/// `transmit-queue-full`: more copies than the list holds).
///
/// The egress half of the decision, pure like `decide` (the mirror stamps in `list` are
/// scratch space), and shared by the datapath and `trace`:
/// - A flood goes to every other member port of the VLAN; a forward to one port, plus the
///   promiscuous ports of the VLAN. A port outside the VLAN gets nothing.
/// - The team: a guest's frame leaves by its one chosen member (`d.uplink`), never by the
///   others; a frame from an uplink goes only to guests of port groups that use uplinks.
/// - A port whose device is gone (`context.links`) gets nothing.
/// - IGMP/MLD snooping: a registered group's data goes to its member ports, the
///   multicast-router ports (dynamic ones of the learning VLAN, configured ones, the uplinks)
///   and the promiscuous ports; a report or leave to the router and promiscuous ports. Each
///   port once; every port still passes the VLAN (and private VLAN) rules, so a membership
///   never carries a frame across VLANs or through the PVLAN matrix.
/// - A port refuses unicast for another MAC (`mac-changes` rejected). A GSO frame or a
///   partial checksum for a port that cannot take offloads goes out marked `finishOffload`:
///   segmented, or its checksum finished, in software by the datapath.
/// - A port shaped on egress refuses a frame over its rate (`shaping-egress`): the question
///   (`TrafficShaper.wouldAdmit`) is asked here; the datapath charges each output it sends.
/// - Mirrors (SPAN): a copy of the frame as received to each destination of the ingress
///   port's ingress mirrors, whatever the verdict (dropped frames too, as a SPAN port sees
///   them); for each output, a copy of it as sent to the destinations of that port's egress
///   mirrors, sent only if the output is ("copy if sent"). A destination gets at most one
///   copy of a frame (the ingress copy first).
///
/// Inlined into the caller: a known unicast on a switch without mirrors and promiscuous
/// ports (the common case) is one offer, in line; everything else runs the full walk
/// (`collectEgressInFull`) in Core, out of line. (Offering a mirrored switch's known
/// unicast in line too saves a third of the mirror's cost but costs every switch's known
/// unicast some 14 instructions, callgrind: the mirror checks crowd the registers.)
@inlinable @inline(always)
public func collectEgress(of d: Decision, inPort: PortIndex, plan: SwitchPlan, context: DecisionContext,
                          into list: EgressList) -> DropReason? {
    let storage = plan.storage
    if case .forward(let p) = d.verdict, !storage.hasMirrors, !storage.hasPromiscuousPorts {
        list.used = 0; list.dropped = 0
        let from = storage.hotPorts + inPort
        offerEgress(p, of: d, from: from.pointee.isUplink, fromTunnel: from.pointee.isTunnel, plan: plan, context: context,
                    offload: d.offload.needsOffload, into: list)
        return list.dropped > 0 ? .transmitQueueFull : nil
    }
    // The decision by address, taken here: passed by value, the compiler would write the
    // whole record to memory where it is computed, on the common path too.
    return withUnsafePointer(to: d) { collectEgressInFull(of: $0, inPort: inPort, plan: plan, context: context, into: list) }
}

/// `collectEgress` for every verdict and every plan: the whole walk described there.
@usableFromInline
func collectEgressInFull(of decision: UnsafePointer<Decision>, inPort: PortIndex, plan: SwitchPlan, context: DecisionContext,
                         into list: EgressList) -> DropReason? {
    let d = decision.pointee
    list.used = 0; list.dropped = 0
    let storage = plan.storage
    if case .drop = d.verdict, !storage.hasMirrors { return nil }
    if case .local = d.verdict { return nil }
    let offload = d.offload.needsOffload
    let multicast: Bool
    switch d.verdict { case .multicastGroup, .multicastRouters: multicast = true; default: multicast = false }
    if storage.hasMirrors || multicast { list.nextFrame() }
    if storage.hasMirrors {
        appendIngressMirrorCopies(inPort: inPort, offload: offload, plan: plan, links: context.links, into: list)
    }
    let mirrorsEnd = list.used
    let from = storage.hotPorts[inPort].isUplink
    let fromTunnel = storage.hotPorts[inPort].isTunnel
    switch d.verdict {
    case .drop, .local:
        return nil
    case .forward(let p):
        offerEgress(p, of: d, from: from, fromTunnel: fromTunnel, plan: plan, context: context, offload: offload, into: list)
        // One predictable branch on switches without promiscuous ports.
        if storage.hasPromiscuousPorts {
            let set = storage.promiscuousPorts, start = storage.promiscuousStart, v = Int(d.vlan.rawValue)
            for i in Int(start[v])..<Int(start[v + 1]) {
                let q = Int(set[i])
                if q != inPort && q != p {
                    offerEgress(q, of: d, from: from, fromTunnel: fromTunnel, plan: plan, context: context, offload: offload, into: list)
                }
            }
        }
    case .multicastGroup, .multicastRouters:
        // Out of line: the unicast path above pays nothing for it.
        multicastFanOut(of: d, inPort: inPort, plan: plan, groups: context.multicast, into: list) { p in
            offerEgress(p, of: d, from: from, fromTunnel: fromTunnel, plan: plan, context: context, offload: offload, into: list)
        }
    case .flood:
        // Indexes into the flood set rather than `floodSet(_:)`'s slice: no reference
        // counting on the per-frame path.
        let set = storage.floodPorts, start = storage.floodStart, v = Int(d.vlan.rawValue)
        for i in Int(start[v])..<Int(start[v + 1]) {
            let p = Int(set[i])
            if p != inPort { offerEgress(p, of: d, from: from, fromTunnel: fromTunnel, plan: plan, context: context, offload: offload, into: list) }
        }
        if list.dropped > 0 { return .transmitQueueFull }
        if list.used == mirrorsEnd { return .noEgressPort }
        return nil
    case .floodPortGroup:
        let group = storage.hotPorts[inPort].group
        for p32 in plan.floodSet(d.vlan) {
            let p = Int(p32)
            if p != inPort && storage.hotPorts[p].l2Transparency && storage.hotPorts[p].group == group {
                offerEgress(p, of: d, from: from, fromTunnel: fromTunnel, plan: plan, context: context, offload: offload, into: list)
            }
        }
    }
    return list.dropped > 0 ? .transmitQueueFull : nil
}

/// One port `collectEgress` offers decided frame `d` to: nothing when the team or a VLAN
/// keeps it away, else an output (with its egress mirror copies) or a refusal.
@inlinable @inline(always)
func offerEgress(_ p: Int, of d: Decision, from fromUplink: Bool, fromTunnel: Bool, plan: SwitchPlan, context: DecisionContext,
                 offload: Bool, into list: EgressList) {
    if portIsDown(p, context) { return }
    let storage = plan.storage
    // Fields are read through the pointer where they are used (a copy of the whole record
    // would load every field up front).
    let port = storage.hotPorts + p
    // Split horizon: never from a tunnel into a tunnel (tunnels and uplinks are kept apart
    // below: a tunnel does not use uplinks, and a frame from a tunnel never gets a team
    // member).
    if fromTunnel && port.pointee.isTunnel { return }
    // The team: a guest's frame leaves by its one chosen member, never by the others; from
    // an uplink only to guests of port groups that use uplinks.
    if port.pointee.isUplink {
        if fromUplink || port.pointee.teamMember != d.uplink { return }
    } else if fromUplink && !port.pointee.usesUplinks {
        return
    }
    guard let rw = plan.egressRewrite(vlan: d.vlan, ingressTagLength: d.ingressTagLength, priority: d.priority, on: port.pointee) else { return }
    if let r = egressRefusal(of: d.destination, to: port.pointee) {
        list.append(EgressItem(port: p, kind: .refused, refusal: r, rewrite: rw))
    } else if port.pointee.isTunnel && !offload && egressLength(d.length, rw) - 4 > Int(port.pointee.tunnelLargestFrame) {
        // Never fragment (RFC 7348 §4.3): on the wire the tag becomes the VNI (-4 bytes). A
        // GSO frame is cut to its segment size first (`finishOffload`); the tunnel checks
        // each segment when it sends.
        list.append(EgressItem(port: p, kind: .refused, refusal: .underlayMTUExceeded, rewrite: rw))
    } else if let shaper = context.shaper, shaper.shapesEgress, shaper.shapes(port: p, .egress),
              !shaper.wouldAdmit(port: p, .egress, bytes: egressLength(d.length, rw), now: context.now) {
        list.append(EgressItem(port: p, kind: .refused, refusal: .shapingEgress, rewrite: rw))
    } else {
        let k = Int32(truncatingIfNeeded: list.used)
        list.append(EgressItem(port: p, kind: .output, rewrite: rw, finishOffload: offload && !port.pointee.acceptsOffloads))
        if storage.hasMirrors && list.used == Int(k) + 1 {
            appendEgressMirrorCopies(of: k, port: p, rewrite: rw, offload: offload, plan: plan, links: context.links, into: list)
        }
    }
}

/// The ingress mirror (SPAN) copies of a frame received on `inPort`: the frame as received,
/// to each destination of the port's ingress mirrors that is up and not yet stamped for this
/// frame (`collectEgress`).
@inlinable @inline(__always)
func appendIngressMirrorCopies(inPort: PortIndex, offload: Bool, plan: SwitchPlan, links: PortLinks?, into list: EgressList) {
    let storage = plan.storage
    for dst in storage.mirrorOnIngress[inPort] where !portIsDown(dst, links) && list.stamp(dst) {
        list.append(EgressItem(port: dst, kind: .mirrorIngress, rewrite: EgressRewrite(strip: 0, push: nil),
                               finishOffload: offload && !storage.hotPorts[dst].acceptsOffloads))
    }
}

/// The egress mirror copies of output `output` (its index in `list`) to port `p`, as it
/// leaves (`rewrite`): to each destination of `p`'s egress mirrors that is up and has no
/// copy of this frame yet ("copy if sent", see `collectEgress`).
@inlinable @inline(__always)
func appendEgressMirrorCopies(of output: Int32, port p: PortIndex, rewrite: EgressRewrite, offload: Bool, plan: SwitchPlan,
                              links: PortLinks?, into list: EgressList) {
    let storage = plan.storage
    for dst in storage.mirrorOnEgress[p] where !list.isStamped(dst) && !portIsDown(dst, links) {
        list.append(EgressItem(port: dst, kind: .mirrorEgress, after: output, rewrite: rewrite,
                               finishOffload: offload && !storage.hotPorts[dst].acceptsOffloads))
    }
}

/// Whether `port`'s device is gone (`PortLinks`): one load when every port is up.
@inlinable @inline(__always)
func portIsDown(_ port: Int, _ context: DecisionContext) -> Bool { portIsDown(port, context.links) }

@inlinable @inline(__always)
func portIsDown(_ port: Int, _ links: PortLinks?) -> Bool {
    guard let l = links, l.downCount > 0 else { return false }
    return l.isDown(port)
}

/// The ports a snooped multicast frame goes to (`collectEgress`): a registered group's
/// members, then the router ports (dynamic ones of the learning VLAN, configured ones,
/// uplinks), then the VLAN's promiscuous ports, each at most once and never the ingress
/// port or a mirror destination; `offer` applies the VLAN rules and refusals to each.
@usableFromInline @inline(never)
func multicastFanOut(of d: Decision, inPort: PortIndex, plan: SwitchPlan, groups: MulticastGroupTable?, into list: EgressList,
                     offer: (Int) -> Void) {
    let storage = plan.storage
    @inline(__always) func once(_ p: Int) {
        if p != inPort && !storage.hotPorts[p].isMirrorDestination && list.mark(p) { offer(p) }
    }
    if let groups {
        if case .multicastGroup(let slot) = d.verdict {
            var m = groups.firstMember(Int(slot))
            while m >= 0 { once(groups.memberPort(m)); m = groups.nextMember(m) }
        }
        var r = groups.firstRouter(d.learningVLAN)
        while r >= 0 { once(groups.routerPort(r)); r = groups.nextRouter(r) }
    }
    for p in storage.multicastRouterPorts { once(Int(p)) }
    if storage.hasPromiscuousPorts {
        let set = storage.promiscuousPorts, start = storage.promiscuousStart, v = Int(d.vlan.rawValue)
        for i in Int(start[v])..<Int(start[v + 1]) { once(Int(set[i])) }
    }
}
