// libFuzzer target "control": the control-socket request decoder and the trace helpers.
//
// The input is (1) decoded as a ControlRequest with JSON.decoder(); the hex frames of a
// decoded request go through [UInt8](hexString:) and, when valid, traceFrame on a small fixed
// plan (what the `trace` command does); (2) used as text for [UInt8](hexString:) and
// FrameDescription.bytes(from:) (`tapestry trace --frame`). Reports.swift, Trace.swift and
// RuntimeError.swift are compiled into this module: linking all of Runtime would
// drag in LinuxIO, Netlink and libnl for nothing.
import Core
import Foundation
import Model

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-control invariant violated: \(what())") }
}

private let plan = SwitchPlan(name: "sw0", ports: [
    PortPlan(name: "web1.eth0", portGroup: "web", mode: .access(VLANID(10))),
    PortPlan(name: "db1.eth0", portGroup: "db", mode: .access(VLANID(20))),
    PortPlan(name: "obs.eth0", portGroup: "trunk", mode: .trunk(allowed: VLANSet([10, 20].map { VLANID($0) }), native: nil)),
    PortPlan(name: "iso.eth0", portGroup: "none", mode: .access(.untagged)),
])
private let decoder = JSON.decoder()
private let encoder = JSON.encoder()

private func trace(_ bytes: [UInt8], table: MACTable) {
    for inPort in plan.ports.indices {
        let t = traceFrame(bytes, inPort: inPort, plan: plan, context: DecisionContext(table: table, now: .seconds(5)))
        check(!t.steps.isEmpty, "trace without steps")
        _ = try? encoder.encode(t)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = Data(bytes: data, count: size)
    let table = MACTable(limit: 8, staticCapacity: 2, portCount: plan.ports.count)
    table.learn(vlan: VLANID(10), mac: MACAddress(rawValue: 0x02_00_00_00_0a_02), port: 0, now: .seconds(1))
    if let request = try? decoder.decode(ControlRequest.self, from: raw) {
        // Round trip: what we decoded encodes and decodes to the same request.
        if let again = try? encoder.encode(request) {
            check((try? decoder.decode(ControlRequest.self, from: again)) == request, "ControlRequest does not round-trip")
        }
        for hex in (request.frames ?? []).prefix(8) {
            if let bytes = [UInt8](hexString: hex) { trace(bytes, table: table) }
        }
    }
    let text = String(decoding: raw, as: UTF8.self)
    if let bytes = [UInt8](hexString: text) {
        check(bytes.count * 2 == text.utf8.count, "hex decode of \(text.utf8.count) characters gave \(bytes.count) bytes")
        _ = frameSummary(bytes)
    }
    if let frame = try? FrameDescription.bytes(from: text) {
        check(frame.withUnsafeBytes { FrameHeader.parse($0) } != nil, "FrameDescription built an unparsable frame")
        check([UInt8](hexString: frame.hexString) == frame, "hexString does not round-trip")
        trace(frame, table: table)
    }
    return 0
}
