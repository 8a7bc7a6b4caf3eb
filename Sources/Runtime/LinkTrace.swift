import Core
import Model

/// One switch as `trace` sees it: its plan and its live decision context (taken under the
/// datapath lock).
public struct TracedSwitch {
    public var plan: SwitchPlan
    public var context: DecisionContext
    public init(plan: SwitchPlan, context: DecisionContext) { self.plan = plan; self.context = context }
}

/// Most link hops a trace follows. Validation refuses links that form a loop, so
/// a frame crosses each link at most once and the number of switches bounds the depth
/// anyway; the bound keeps a trace's size bounded whatever the plans say.
public let linkTraceHops = 8

/// Traces `bytes` entering switch `switchIndex` by `inPort`, and follows every output to a
/// link port into the switch at the other end, as the datapath would: the frame as it
/// leaves the link port (tag pushed or stripped by that port's VLAN mode, the same
/// `EgressRewrite`), entering the peer switch by the peer port. The peer's decision is
/// nested under `crossings`, recursively, at most `hops` links deep (then the crossing is
/// listed with `truncated: true` and no trace). Mirror copies that go to a link port are
/// not followed (they are listed under `mirrors`). Pure: reads the plans and contexts only;
/// nothing is learned.
public func traceFrame(_ bytes: [UInt8], offload: FrameOffload = .none, inPort: PortIndex, switchIndex: Int,
                       switches: [TracedSwitch], hops: Int = linkTraceHops) -> TraceReport.FrameTrace {
    let here = switches[switchIndex]
    var (trace, outputs) = traceDecision(bytes, offload: offload, inPort: inPort, plan: here.plan, context: here.context)
    var crossings: [TraceReport.LinkCrossing] = []
    for (port, rewrite) in outputs {
        let p = here.plan.ports[port]
        guard let peer = p.link else { continue }
        guard let s = switches.firstIndex(where: { $0.plan.name == peer.switchName }),
              let q = switches[s].plan.portIndex(named: peer.portName) else {
            trace.steps.append(.init(stage: "link", detail: "\(p.name): the other end \(peer.switchName)/\(peer.portName) is not running"))
            continue
        }
        guard hops > 0 else {
            crossings.append(.init(via: p.name, switch: peer.switchName, inPort: peer.portName, trace: nil, truncated: true))
            trace.steps.append(.init(stage: "link", detail: "crosses \(p.name) into switch \(peer.switchName) by \(peer.portName); not followed (more than \(linkTraceHops) links deep)"))
            continue
        }
        trace.steps.append(.init(stage: "link", detail: "crosses \(p.name) into switch \(peer.switchName) by \(peer.portName)"))
        let next = traceFrame(rewritten(bytes, rewrite), offload: offload, inPort: q, switchIndex: s, switches: switches, hops: hops - 1)
        crossings.append(.init(via: p.name, switch: peer.switchName, inPort: peer.portName, trace: next, truncated: false))
    }
    if !crossings.isEmpty { trace.crossings = crossings }
    return trace
}
