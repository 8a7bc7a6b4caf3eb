import Core
import Foundation
import Model
import Wire

/// Builds a frame from a description such as `src=02:00:00:00:0a:01,dst=ff:ff:ff:ff:ff:ff,vlan=20,type=arp`
/// (`tapestry trace --frame`).
///
/// Keys: `src`, `dst` (required MACs), `vlan` (an 802.1Q tag; `vlan=10/20` for two tags,
/// outer first), `stag` (an 802.1ad outer tag), `type` (`arp`, `rarp`, `ipv4`, `ipv6`, or
/// `0xNNNN`; default ipv4), `len` (frame length without tags, default 60).
public enum FrameDescription {
    public static func bytes(from text: String) throws -> [UInt8] {
        var fields: [String: String] = [:]
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2 else { throw RuntimeError("frame description: expected key=value, got '\(part)'") }
            guard ["src", "dst", "vlan", "stag", "type", "len"].contains(kv[0]) else {
                throw RuntimeError("frame description: unknown key '\(kv[0])' (expected src, dst, vlan, stag, type, len)")
            }
            fields[kv[0]] = kv[1]
        }
        guard let s = fields["src"], let src = MACAddress(s) else { throw RuntimeError("frame description: src=MAC is required") }
        guard let d = fields["dst"], let dst = MACAddress(d) else { throw RuntimeError("frame description: dst=MAC is required") }
        var type: UInt16 = EtherType.ipv4
        switch fields["type"] ?? "ipv4" {
        case "arp": type = EtherType.arp
        case "rarp": type = EtherType.rarp
        case "ipv4", "ip": type = EtherType.ipv4
        case "ipv6": type = EtherType.ipv6
        case let t where t.hasPrefix("0x"):
            guard let v = UInt16(t.dropFirst(2), radix: 16) else { throw RuntimeError("frame description: bad type '\(t)'") }
            type = v
        case let t: throw RuntimeError("frame description: bad type '\(t)' (arp, rarp, ipv4, ipv6 or 0xNNNN)")
        }
        var tags: [(UInt16, UInt16)] = []
        if let st = fields["stag"] {
            guard let v = UInt16(st), v < 4096 else { throw RuntimeError("frame description: bad stag '\(st)'") }
            tags.append((EtherType.qinq, v))
        }
        if let vl = fields["vlan"] {
            for piece in vl.split(separator: "/") {
                guard let v = UInt16(piece), v < 4096 else { throw RuntimeError("frame description: bad vlan '\(vl)' (0..4095)") }
                tags.append((EtherType.vlan, v))
            }
        }
        let length = Int(fields["len"] ?? "60") ?? -1
        guard (14...65535).contains(length) else { throw RuntimeError("frame description: bad len (14..65535)") }
        var out = dst.octets + src.octets
        for (tpid, vid) in tags { out += [UInt8(tpid >> 8), UInt8(tpid & 0xFF), UInt8(vid >> 8), UInt8(vid & 0xFF)] }
        out += [UInt8(type >> 8), UInt8(type & 0xFF)]
        out += [UInt8](repeating: 0, count: length - 14)
        return out
    }
}

extension Array where Element == UInt8 {
    /// Lowercase hex, for carrying frames in JSON.
    public var hexString: String { map { String(format: "%02x", $0) }.joined() }
    public init?(hexString: String) {
        guard hexString.count % 2 == 0 else { return nil }
        var out: [UInt8] = []; out.reserveCapacity(hexString.count / 2)
        var it = hexString.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let v = UInt8(String(decoding: [a, b], as: UTF8.self), radix: 16) else { return nil }
            out.append(v)
        }
        self = out
    }
}

/// One-line description of a frame's header: `02:..:01 > ff:..:ff, 802.1Q vlan 20, type 0x0806 (arp), 64 bytes`.
public func frameSummary(_ bytes: [UInt8]) -> String {
    guard let h = bytes.withUnsafeBytes({ FrameHeader.parse($0) }) else { return "runt frame, \(bytes.count) bytes" }
    var parts = ["\(h.source) > \(h.destination)"]
    for tag in [h.outerTag, h.innerTag].compactMap({ $0 }) { parts.append(tagDescription(tag)) }
    parts.append(typeDescription(h.etherType))
    parts.append("\(bytes.count) bytes")
    return parts.joined(separator: ", ")
}

func tagName(_ tpid: UInt16) -> String { tpid == EtherType.vlan ? "802.1Q" : tpid == EtherType.qinq ? "802.1ad" : String(format: "tpid 0x%04x", tpid) }
/// `type 0x0806 (arp)`.
func typeDescription(_ t: UInt16) -> String {
    "type \(String(format: "0x%04x", t))" + (typeName(t).map { " (\($0))" } ?? "")
}

func typeName(_ t: UInt16) -> String? {
    switch t {
    case EtherType.arp: return "arp"
    case EtherType.rarp: return "rarp"
    case EtherType.ipv4: return "ipv4"
    case EtherType.ipv6: return "ipv6"
    default: return nil
    }
}

/// The reason a dropped frame carries in a capture's packet comment, e.g.
/// `dropped: tagged frame on access port (vlan 20)`.
public func dropComment(_ reason: DropReason, frame: [UInt8]) -> String {
    var text = "dropped: \(reason.explanation)"
    if reason == .taggedOnAccessPort || reason == .vlanNotAllowed,
       let tag = frame.withUnsafeBytes({ FrameHeader.parse($0) })?.outerTag {
        text += " (vlan \(tag.vid))"
    }
    return text
}

/// Runs the datapath's own decision on a frame — `decide`, then `collectEgress` — with a
/// recording sink, and explains every step: VLAN classification, team admission, lookup,
/// storm control as of now, each output with its tag, refusals, mirror copies (an egress
/// copy "if sent") and the team uplink. Changes nothing: the learn request, the storm token
/// and the announcement stamp are shown, never applied. `context` is the switch's live
/// state (`SwitchRuntime.context(now:_:)`, under the datapath lock).
///
/// `vnetHeader` is the frame's virtio-net header as it arrived (`VNetHeader.size` bytes, or
/// nil for a plain frame): with it, `offload` follows from it, and a GSO frame or partial
/// checksum for a port without offloads is planned as the datapath would (segments, a
/// finished checksum, or a refusal).
public func traceFrame(_ bytes: [UInt8], offload: FrameOffload = .none, vnetHeader: [UInt8]? = nil, inPort: PortIndex, plan: SwitchPlan,
                       context: DecisionContext) -> TraceReport.FrameTrace {
    traceDecision(bytes, offload: offload, vnetHeader: vnetHeader, inPort: inPort, plan: plan, context: context).trace
}

/// What the datapath would do for a copy that must be finished in software (a summary of
/// `TransmitList.Finish`, which holds pointers into the frame).
enum FinishSummary {
    case segments(Int)
    case checksum
    case plain
    case refused(String)

    init(bytes: [UInt8], vnetHeader: [UInt8]?) {
        guard let h = vnetHeader, h.count >= VirtioNetHeader.size else { self = .plain; return }
        self = bytes.withUnsafeBytes { frame in
            h.withUnsafeBytes { raw in
                switch SoftwareOffload(frame: frame, header: raw.baseAddress) {
                case .segments(let s): return .segments(s.segmentCount)
                case .checksum: return .checksum
                case .plain: return .plain
                case .refused(let r): return .refused(r.description)
                }
            }
        }
    }
}

/// `traceFrame`, plus each output (not mirror copies) with its rewrite, so a trace can
/// follow the frame as it leaves by a link port (LinkTrace.swift).
func traceDecision(_ bytes: [UInt8], offload given: FrameOffload, vnetHeader: [UInt8]? = nil, inPort: PortIndex, plan: SwitchPlan,
                   context: DecisionContext) -> (trace: TraceReport.FrameTrace, outputs: [(port: PortIndex, rewrite: EgressRewrite)]) {
    let offload = vnetHeader.flatMap { h -> FrameOffload? in
        guard h.count >= VirtioNetHeader.size else { return nil }
        let v = h.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
        return FrameOffload(isGSO: v.isGSO, needsChecksum: v.needsCsum)
    } ?? given
    var rec = RecordingTrace()
    let d = bytes.withUnsafeBytes { decide(frame: $0, offload: offload, inPort: inPort, plan: plan, context: context, trace: &rec) }
    let name = { (p: PortIndex) in plan.ports[p].name }
    var steps: [TraceReport.Step] = []
    var storm: TraceReport.Storm? = nil
    var uplink: String? = nil
    var shaping: [TraceReport.Shaping] = []
    var privateVLAN: TraceReport.PrivateVLANTrace? = nil
    var multicast: TraceReport.MulticastTrace? = nil
    func shapingRow(_ port: PortIndex, _ direction: ShapingDirection, admitted: Bool, bytes: Int, average: Int64, peak: Int64) -> TraceReport.Shaping? {
        guard let limit = direction == .ingress ? plan.ports[port].shaping?.ingress : plan.ports[port].shaping?.egress else { return nil }
        return .init(port: name(port), direction: direction.description, admitted: admitted, frameBytes: bytes, averageBytes: average,
                     peakBytes: peak, averageBitsPerSecond: limit.averageBitsPerSecond, peakBitsPerSecond: limit.peakBitsPerSecond,
                     burstBytes: limit.burstBytes)
    }
    func shapingText(_ r: TraceReport.Shaping) -> String {
        "\(r.direction) shaping of \(r.port): average \(bitRate(r.averageBitsPerSecond)), peak \(bitRate(r.peakBitsPerSecond)), burst \(r.burstBytes) bytes; "
            + "the buckets hold \(r.averageBytes) / \(r.peakBytes) bytes now; \(r.frameBytes)-byte frame: "
            + (r.admitted ? "admitted (it would be charged; not by trace)" : "over the rate")
    }
    for step in rec.steps {
        switch step {
        case .received(let port, let length):
            let p = plan.ports[port]
            steps.append(.init(stage: "ingress", detail: "port \(p.name) (group \(p.portGroup), \(p.mode)), \(length) bytes"))
        case .parsed(let h):
            let tags = [h.outerTag, h.innerTag].compactMap { $0 }.map(tagDescription)
            steps.append(.init(stage: "parse", detail: "dst \(h.destination), src \(h.source), " +
                               (tags.isEmpty ? "untagged" : "tags: " + tags.joined(separator: ", ")) +
                               ", " + typeDescription(h.etherType)))
        case .classified(let cls, let mode):
            switch cls {
            case .member(let vlan, let tagLength, let priority):
                let prio = priority == 0 ? "" : ", pcp \(priority >> 1)\(priority & 1 == 1 ? " dei" : "") kept"
                steps.append(.init(stage: "vlan", detail: "VLAN \(vlan) (\(tagLength > 0 ? "tagged" : "untagged") frame on \(mode))\(prio)"))
            case .drop(let r):
                steps.append(.init(stage: "vlan", detail: "\(dropComment(r, frame: bytes)) on \(mode)"))
            }
        case .learnRequested(let vlan, let mac, let port, let current):
            let what: String
            switch current {
            case nil: what = "new entry"
            case let c? where c == port: what = "refresh (already on \(name(port)))"
            case let c?: what = "move from \(name(c))"
            }
            steps.append(.init(stage: "learn", detail: "would learn \(mac) in VLAN \(vlan) on \(name(port)): \(what); not applied by trace"))
        case .lookedUp(let vlan, let mac, let port):
            if let p = port {
                let age = context.table.age(vlan: vlan, mac: mac, now: context.now).map { ", age \($0.secondsCount)s" } ?? ""
                steps.append(.init(stage: "lookup", detail: "\(mac) in VLAN \(vlan): hit on \(name(p))\(age)"))
            } else {
                steps.append(.init(stage: "lookup", detail: "\(mac) in VLAN \(vlan): miss"))
            }
        case .flooding(let vlan, let reason):
            steps.append(.init(stage: "output", detail: "flood in VLAN \(vlan) (\(reason.rawValue))"))
        case .stormControl(let reason, let admitted, let left, let rate):
            let cls = reason == .unknownUnicast ? "unknown-unicast" : reason.rawValue
            storm = .init(class: cls, admitted: admitted, framesLeft: left, ratePerSecond: rate)
            steps.append(.init(stage: "storm", detail: "\(cls) limit \(rate)/s, \(left) frame\(left == 1 ? "" : "s") left in the bucket now: "
                               + (admitted ? "admitted (one token would be spent; not by trace)" : "over the rate")))
        case .forwarding(let port):
            steps.append(.init(stage: "output", detail: "forward to \(name(port))"))
        case .transparent(let group):
            steps.append(.init(stage: "output", detail: "reserved group address forwarded within port group \(group) (l2-transparency)"))
        case .consumed(let what):
            steps.append(.init(stage: "local", detail: "\(what): handled by the switch, not forwarded"))
        case .teamUplink(let member, let port):
            uplink = name(port)
            steps.append(.init(stage: "team", detail: "leaves the switch by uplink \(name(port)) (team member \(member))"))
        case .teamAdmitted(let member):
            steps.append(.init(stage: "team", detail: "accepted from uplink member \(member) (active, designated receiver, not a reflection)"))
        case .announcement(let vlan, let mac):
            steps.append(.init(stage: "team", detail: "gratuitous ARP/RARP from a local guest: \(mac) in VLAN \(vlan) would be stamped in the announcement lock"))
        case .privateVLAN(let vlan, let type, let primary):
            let skipped = plan.privateVLANExcluded(vlan, except: inPort)
            privateVLAN = .init(vlan: vlan.description, primary: primary.description, type: type.description,
                                skipped: skipped.map { .init(port: name($0.port), reason: "\($0.type) port") })
            let reach: String
            switch type {
            case .promiscuous: reach = "reaches every port of the private VLAN"
            case .isolated: reach = "reaches promiscuous ports and trunks carrying VLAN \(vlan) only"
            case .community: reach = "reaches its community, promiscuous ports and trunks carrying VLAN \(vlan)"
            }
            steps.append(.init(stage: "pvlan", detail: "VLAN \(vlan) is the \(type == .promiscuous ? "primary (promiscuous)" : "\(type) secondary") of private VLAN \(primary): \(reach); MAC learning shared under VLAN \(primary)"))
            for x in skipped {
                steps.append(.init(stage: "pvlan", detail: "not to \(name(x.port)): \(x.type) port (\(type) → \(x.type) is not allowed)"))
            }
        case .privateVLANBlocked(let port):
            steps.append(.init(stage: "pvlan", detail: "the destination is behind \(name(port)), which may not receive from this port (private VLAN matrix)"))
        case .shaping(let port, let direction, let admitted, let length, let average, let peak):
            if let row = shapingRow(port, direction, admitted: admitted, bytes: length, average: average, peak: peak) {
                shaping.append(row)
                steps.append(.init(stage: "shaping", detail: shapingText(row)))
            }
        case .snooping(let what):
            let (detail, info) = describeSnooping(what, bytes: bytes, inPort: inPort, plan: plan, context: context, previous: multicast)
            if let detail { steps.append(.init(stage: "snoop", detail: detail)) }
            multicast = info
        case .dropped(let r):
            steps.append(.init(stage: "drop", detail: dropComment(r, frame: bytes)))
        }
    }
    let list = EgressList(capacity: max(16, plan.ports.count * (1 + plan.mirrorFanout) + 1))
    list.prepare(portCount: plan.ports.count)
    let ingressDrop = collectEgress(of: d, inPort: inPort, plan: plan, context: context, into: list)
    var egress: [TraceReport.Egress] = []
    var mirrors: [TraceReport.MirrorCopy] = []
    var refused: [TraceReport.Refusal] = []
    var outputs: [(port: PortIndex, rewrite: EgressRewrite)] = []
    // A copy for a port without offloads: segmented or finished in software (planned once).
    var finishPlan: FinishSummary? = nil
    func finishing() -> FinishSummary {
        if finishPlan == nil { finishPlan = FinishSummary(bytes: bytes, vnetHeader: vnetHeader) }
        return finishPlan!
    }
    /// The copies a finished item makes (0: refused, counted on its port).
    func finishedCopies(_ item: EgressItem, _ p: Int, _ what: String) -> Int {
        guard item.finishOffload else { return 1 }
        switch finishing() {
        case .segments(let n):
            steps.append(.init(stage: "offload", detail: "\(what) \(name(p)): cut in software into \(n) wire frames (the port takes no offloads)"))
            return n
        case .checksum:
            steps.append(.init(stage: "offload", detail: "\(what) \(name(p)): checksum finished in software (the port takes no offloads)"))
            return 1
        case .plain:
            return 1
        case .refused(let why):
            refused.append(.init(port: name(p), reason: DropReason.offloadNotSupported.description))
            steps.append(.init(stage: "offload", detail: "not to \(name(p)): \(DropReason.offloadNotSupported.explanation) (\(why))"))
            return 0
        }
    }
    var unsent = Set<Int>()   // outputs refused after all: their egress mirror copies do not go
    for i in 0..<list.count {
        let item = list[i]
        let p = Int(item.port)
        switch item.kind {
        case .output:
            let copies = finishedCopies(item, p, "to")
            if copies == 0 { unsent.insert(i); continue }
            for _ in 0..<copies { egress.append(.init(port: name(p), tag: item.rewrite.push.map(egressTagText) ?? "untagged")) }
            outputs.append((p, item.rewrite))
            if let shaper = context.shaper, shaper.shapesEgress, let (a, pk) = shaper.available(port: p, .egress, now: context.now),
               let row = shapingRow(p, .egress, admitted: true, bytes: egressLength(bytes.count, item.rewrite), average: a, peak: pk) {
                shaping.append(row)
                steps.append(.init(stage: "shaping", detail: shapingText(row)))
            }
        case .refused:
            refused.append(.init(port: name(p), reason: item.refusal.description))
            if item.refusal == .shapingEgress, let shaper = context.shaper, let (a, pk) = shaper.available(port: p, .egress, now: context.now),
               let row = shapingRow(p, .egress, admitted: false, bytes: egressLength(bytes.count, item.rewrite), average: a, peak: pk) {
                shaping.append(row)
                steps.append(.init(stage: "shaping", detail: shapingText(row)))
            }
            steps.append(.init(stage: "output", detail: "not to \(name(p)): \(item.refusal.explanation)"))
        case .mirrorIngress:
            let copies = finishedCopies(item, p, "mirror copy to")
            if copies == 0 { continue }
            for _ in 0..<copies { mirrors.append(.init(port: name(p), point: "ingress", of: nil, ifSent: false)) }
            steps.append(.init(stage: "mirror", detail: "copy to \(name(p)) as received on \(name(inPort))"))
        case .mirrorEgress:
            if unsent.contains(Int(item.after)) { continue }
            let copies = finishedCopies(item, p, "mirror copy to")
            if copies == 0 { continue }
            let of = name(Int(list[Int(item.after)].port))
            for _ in 0..<copies { mirrors.append(.init(port: name(p), point: "egress", of: of, ifSent: true)) }
            steps.append(.init(stage: "mirror", detail: "copy to \(name(p)) of what leaves by \(of), if sent"
                               + (item.rewrite.push.map { " (\(tagDescription($0)))" } ?? "")))
        }
    }
    let verdict: String, reason: String?
    switch d.verdict {
    case .forward: verdict = "forward"; reason = nil
    case .flood, .floodPortGroup:
        if ingressDrop == .noEgressPort { verdict = "drop"; reason = DropReason.noEgressPort.description }
        else { verdict = "flood"; reason = nil }
    case .drop(let r): verdict = "drop"; reason = r.description
    case .local: verdict = "local"; reason = nil
    case .multicastGroup: verdict = "multicast-group"; reason = nil
    case .multicastRouters: verdict = "multicast-routers"; reason = nil
    }
    if let r = ingressDrop { steps.append(.init(stage: "drop", detail: r.explanation)) }
    if case .multicastRouters = d.verdict, egress.isEmpty {
        steps.append(.init(stage: "output", detail: "no multicast-router port in VLAN \(d.learningVLAN): the report stays with the snooping switch"))
    }
    return (.init(summary: frameSummary(bytes), steps: steps, verdict: verdict, dropReason: reason, egress: egress,
                  mirrors: mirrors, refused: refused, storm: storm, uplink: uplink,
                  shaping: shaping.isEmpty ? nil : shaping, privateVlan: privateVLAN, multicast: multicast), outputs)
}

/// `50 Mbit/s`, `1.5 Gbit/s`, `800 bit/s`.
func bitRate(_ bps: UInt64) -> String {
    let units: [(UInt64, String)] = [(1_000_000_000_000, "Tbit/s"), (1_000_000_000, "Gbit/s"), (1_000_000, "Mbit/s"), (1_000, "kbit/s")]
    for (u, n) in units where bps >= u {
        return bps % u == 0 ? "\(bps / u) \(n)" : String(format: "%.2f %@", Double(bps) / Double(u), n)
    }
    return "\(bps) bit/s"
}

/// One snooping trace step as a sentence, and the frame's `multicast` JSON so far.
func describeSnooping(_ step: SnoopingStep, bytes: [UInt8], inPort: PortIndex, plan: SwitchPlan, context: DecisionContext,
                      previous: TraceReport.MulticastTrace?) -> (String?, TraceReport.MulticastTrace?) {
    let name = { (p: PortIndex) in plan.ports[p].name }
    let vlan = plan.learningVLAN(bytes.withUnsafeBytes { FrameHeader.parse($0) }.flatMap { h in
        if case .member(let v, _, _) = plan.ingressClass(of: h, on: plan.hot[inPort]) { return v } else { return nil }
    } ?? .untagged)
    let groups = context.multicast
    func routers() -> [String] {
        let dynamic = groups?.routers(vlan: vlan) ?? []
        return (dynamic + plan.multicastRouterPorts.map { Int($0) }).filter { $0 != inPort }.map(name)
    }
    func family(_ f: IPFamily, _ v: UInt8) -> String { f == .ipv4 ? "IGMPv\(v)" : "MLDv\(v)" }
    var info = previous ?? TraceReport.MulticastTrace(kind: "not-ip-multicast", vlan: vlan.description)
    switch step {
    case .signal(.notSnooped):
        info.kind = "not-ip-multicast"
        return ("not IP multicast: ordinary flooding", info)
    case .signal(.data(let g)):
        info.kind = "data"; info.group = g.description
        return ("IP multicast data to group \(g)", info)
    case .signal(.malformed(let f, let m)):
        info.kind = "malformed"; info.problem = m.description
        return ("malformed \(f == .ipv4 ? "IGMP" : "MLD") message: \(m)", info)
    case .signal(.leave(let g, let f)):
        info.kind = "leave"; info.group = g.description; info.routers = routers()
        let member = groups?.isMember(vlan: vlan, group: g, port: inPort) ?? false
        return ("\(family(f, f == .ipv4 ? 2 : 1)) leave of \(g): \(name(inPort)) " + (member ? "would leave the group at once (not applied by trace)" : "is not a member")
                + "; sent to multicast-router ports only", info)
    case .signal(.query(let q)):
        info.kind = "query"; info.group = q.group?.description; info.querier = q.source.description
        var text = "\(family(q.family, q.version)) \(q.group == nil ? "general" : "group-specific (\(q.group!))") query from \(q.source), "
            + "max response \(q.maxResponseMilliseconds) ms: \(name(inPort)) would become a multicast-router port of VLAN \(vlan); flooded"
        if let querier = groups?.querier, querier.vlans.contains(vlan) {
            text += q.source <= querier.settings.source(q.family)
                ? "; the switch's querier would stand down (\(q.source) ≤ \(querier.settings.source(q.family)))"
                : "; the switch's querier stays (its \(querier.settings.source(q.family)) is lower)"
        }
        return (text + " (not applied by trace)", info)
    case .signal(.report(let r)):
        info.kind = "report"; info.routers = routers()
        var records: [TraceReport.Record] = []
        bytes.withUnsafeBytes { raw in
            for rec in r.records(in: raw) {
                let effect: String
                if !rec.isKnownType { effect = "ignored" }
                else if rec.group.isLinkLocalMulticast { effect = "link-local" }
                else if rec.isLeave { effect = (groups?.isMember(vlan: vlan, group: rec.group, port: inPort) ?? false) ? "leave" : "not-a-member" }
                else { effect = (groups?.isMember(vlan: vlan, group: rec.group, port: inPort) ?? false) ? "refresh" : "join" }
                records.append(.init(type: rec.typeName, group: rec.group.description, sources: rec.sourceCount, effect: effect))
            }
        }
        info.records = records
        let list = records.map { "\($0.type) \($0.group)\($0.sources > 0 ? " (\($0.sources) sources, not tracked: the whole group)" : ""): \($0.effect)" }
        return ("\(family(r.family, r.version)) report on \(name(inPort)) in VLAN \(vlan): " + list.joined(separator: "; ")
                + " (not applied by trace); sent to multicast-router ports only", info)
    case .linkLocal(let g):
        info.registered = false
        return ("\(g) is a link-local group: always flooded", info)
    case .registered(let g, let v, let slot):
        info.registered = true
        var members: [String] = []
        if let t = groups {
            var m = t.firstMember(slot)
            while m >= 0 { members.append(name(t.memberPort(m))); m = t.nextMember(m) }
        }
        info.members = members; info.routers = routers()
        return ("group \(g) in VLAN \(v) is registered: to its members (\(members.joined(separator: ", "))) and the multicast-router ports"
                + (info.routers!.isEmpty ? "" : " (\(info.routers!.joined(separator: ", ")))"), info)
    case .unregistered(let g, let v):
        info.registered = false
        return ("group \(g) has no members in VLAN \(v): flooded (unregistered groups flood, as in Open vSwitch)", info)
    }
}

/// `802.1Q vlan 10`, with its priority bits when set (`pcp 3 dei`).
func tagDescription(_ tag: VLANTag) -> String { "\(tagName(tag.tpid)) " + egressTagText(tag) }

/// `vlan 10`, with its priority bits when set: `vlan 10 pcp 3 dei` (trace's egress `tag`).
func egressTagText(_ tag: VLANTag) -> String {
    "vlan \(tag.vid)" + (tag.pcp > 0 || tag.dei ? " pcp \(tag.pcp)\(tag.dei ? " dei" : "")" : "")
}

/// `dropComment` for a reason as carried on the capture stream (its raw value).
public func dropComment(rawReason: UInt8, frame: [UInt8]) -> String {
    guard let r = DropReason(rawValue: rawReason) else { return "dropped: reason \(rawReason)" }
    return dropComment(r, frame: frame)
}
