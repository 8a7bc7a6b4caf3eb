// libFuzzer target "control": the control socket's request path against its limits, and the
// trace helpers.
//
// The input is what one client sends on the control socket. (1) It goes through the same
// framing as ControlServer (ControlRequestFraming: at most maxRequest + 1 bytes buffered, one
// line, refused beyond the limit) and the same decoder (ControlRequest.decode); a decoded
// request's hex frames go through [UInt8](hexString:) and traceFrame on a switch with every
// per-frame policy on (mirror, storm control, shaping, a private VLAN, IGMP/MLD snooping with
// members), as `trace` does under the datapath lock, and the report is encoded as the reply.
// Scripts/fuzz.sh runs it with -max_len just above the request limit, -rss_limit_mb and
// -timeout: a request the limits admit must not take the daemon's memory or hold the
// datapath lock for long. (2) The input is also used as text for [UInt8](hexString:) and
// FrameDescription.bytes(from:) (`tapestry trace --frame`).
//
// Reports.swift, Trace.swift and RuntimeError.swift are compiled into this module: linking
// all of Runtime would drag in LinuxIO, Netlink and libnl for nothing.
import Core
import Foundation
import Model

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-control invariant violated: \(what())") }
}

/// The daemon's request limit (ControlServer.Limits().maxRequest; Limits lives in
/// ControlSocket.swift, which needs LinuxIO).
private let maxRequest = 65536

private let group = WireIPAddress(ipv4: 0xEF01_0101)
private let plan = SwitchPlan(name: "sw0", ports: [
    PortPlan(name: "web1.eth0", portGroup: "web", mode: .access(VLANID(10)),
             storm: StormLimits(broadcast: 100, multicast: 100, unknownUnicast: 100)),
    PortPlan(name: "db1.eth0", portGroup: "db", mode: .access(VLANID(20)),
             shaping: ShapingPolicy(ingress: ShapingLimit(averageBitsPerSecond: 1_000_000, burstBytes: 70_000),
                                    egress: ShapingLimit(averageBitsPerSecond: 1_000_000, peakBitsPerSecond: 2_000_000, burstBytes: 70_000))),
    PortPlan(name: "obs.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([10, 20, 100, 101, 102].map { VLANID($0) }), native: VLANID(10))),
    PortPlan(name: "iso.eth0", portGroup: "none", mode: .access(.untagged)),
    PortPlan(name: "prom.eth0", portGroup: "prom", mode: .access(VLANID(100))),
    PortPlan(name: "i1.eth0", portGroup: "isolated", mode: .access(VLANID(101))),
    PortPlan(name: "c1.eth0", portGroup: "community", mode: .access(VLANID(102))),
    PortPlan(name: "mon.eth0", portGroup: "monitor", mode: .access(VLANID(10))),
], mirrors: [MirrorPlan(name: "span", sources: [0], ingress: true, egress: true, destinations: [7])],
   privateVLANs: [PrivateVLAN(primary: VLANID(100), isolated: VLANID(101), community: [VLANID(102)])],
   multicast: MulticastSnooping(routerPorts: [2], staticGroups: [StaticMulticastGroup(vlan: VLANID(10), group: group, ports: [0])],
                                querier: .derived(topology: "fuzz", switchName: "sw0")))
private let decoder = JSON.decoder()
private let encoder = JSON.encoder()
private let storm = StormControl(plan: plan)
private let shaper = TrafficShaper(plan: plan)

private func context(_ table: MACTable, _ groups: MulticastGroupTable) -> DecisionContext {
    DecisionContext(table: table, storm: storm, now: .seconds(5), shaper: shaper, multicast: groups)
}

private func trace(_ bytes: [UInt8], _ context: DecisionContext) {
    for inPort in plan.ports.indices {
        let t = traceFrame(bytes, inPort: inPort, plan: plan, context: context)
        check(!t.steps.isEmpty, "trace without steps")
        _ = try? encoder.encode(t)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = [UInt8](UnsafeBufferPointer(start: data, count: size))
    let table = MACTable(limit: 8, staticCapacity: 2, portCount: plan.ports.count)
    table.learn(vlan: VLANID(10), mac: MACAddress(rawValue: 0x02_00_00_00_0a_02), port: 0, now: .seconds(1))
    let groups = MulticastGroupTable(snooping: plan.multicast!, portCount: plan.ports.count)
    groups.join(vlan: VLANID(10), group: WireIPAddress(ipv4: 0xEF01_0102), port: 2, now: .seconds(1))
    let ctx = context(table, groups)

    // (1) The request path: what the reactor buffers (at most maxRequest + 1 bytes, the
    // client done sending), framed and decoded as the daemon does.
    let received = Array(input.prefix(maxRequest + 1))
    switch ControlRequestFraming.of(received, ended: true, limit: maxRequest) {
    case .incomplete:
        fatalError("fuzz-control: a request whose client stopped sending is never left incomplete")
    case .tooLarge:
        check(received.count > maxRequest && !received.prefix(maxRequest + 1).contains(UInt8(ascii: "\n")), "tooLarge for a short or complete request")
    case .line(let line):
        check(line.count <= maxRequest && !line.contains(UInt8(ascii: "\n")), "a request line of \(line.count) bytes, or with a newline")
        if let request = ControlRequest.decode(line: line) {
            // Round trip: what we decoded encodes and decodes to the same request.
            if let again = try? encoder.encode(request) {
                check((try? decoder.decode(ControlRequest.self, from: again)) == request, "ControlRequest does not round-trip")
            }
            // `trace`: every frame of the request, as the daemon traces them (one report).
            var traces: [TraceReport.FrameTrace] = []
            for hex in request.frames ?? [] {
                guard let bytes = [UInt8](hexString: hex) else { continue }
                let t = traceFrame(bytes, inPort: 0, plan: plan, context: ctx)
                check(!t.steps.isEmpty, "trace without steps")
                traces.append(t)
            }
            _ = try? encoder.encode(TraceReport(switch: plan.name, inPort: plan.ports[0].name, frames: traces))
        }
    }

    // (2) The same bytes as `trace --frame` text and as hex.
    let text = String(decoding: input.prefix(4096), as: UTF8.self)
    if let bytes = [UInt8](hexString: text) {
        check(bytes.count * 2 == text.utf8.count, "hex decode of \(text.utf8.count) characters gave \(bytes.count) bytes")
        _ = frameSummary(bytes)
        trace(bytes, ctx)
    }
    if let frame = try? FrameDescription.bytes(from: text) {
        check(frame.withUnsafeBytes { FrameHeader.parse($0) } != nil, "FrameDescription built an unparsable frame")
        check([UInt8](hexString: frame.hexString) == frame, "hexString does not round-trip")
        trace(frame, ctx)
    }
    return 0
}
