// libFuzzer target "observability": the parsers of Sources/Observability that read bytes from
// the wire — LLDP.parse(frame:) and the neighbour table, FlowKey.of and FlowTable.account.
//
// Input: byte 0 selects what the rest is: even = an Ethernet frame for LLDP, odd = a frame
// for flow accounting (bits 1-3 pick the VLAN and egress). Besides "does not trap", it checks:
//   - an LLDPDU that parses re-encodes and parses to the same value (builder and parser agree);
//   - the neighbour table stays within its bounds;
//   - a frame is either accounted into one flow or counted (runt or not tracked), never both.
import Model

private var table = FlowTable(capacity: 64, maxProbe: 8, seed: 1)
private var neighbors = LLDPNeighborTable(maxPerPort: 2, maxTotal: 4)
private var clock: UInt64 = 0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let frame = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    clock += 1000
    if selector & 1 == 0 {
        if case .success(let du) = LLDP.parse(frame: frame) {
            let again = LLDP.frame(from: MACAddress(rawValue: 0x0200_0000_0001), du)
            guard case .success(let back) = again.withUnsafeBytes({ LLDP.parse(frame: $0) }) else { fatalError("re-encoded LLDPDU does not parse") }
            // skippedTLVs is not carried (unknown TLVs are not re-sent); strings may be cut.
            if du.portDescription.map({ $0.utf8.count <= 511 }) ?? true && du.systemDescription.map({ $0.utf8.count <= 511 }) ?? true {
                if back.chassisID != du.chassisID || back.portID != du.portID || back.ttl != du.ttl || back.portVLAN != du.portVLAN {
                    fatalError("LLDPDU round trip changed the mandatory TLVs")
                }
            }
            neighbors.receive(du, on: selector & 2 == 0 ? "eth1" : "eth2", now: clock)
            if neighbors.count > 4 { fatalError("neighbour table over its bound") }
            neighbors.expire(now: clock)
        }
    } else {
        let before = (table.accountedFrames, table.notTracked, table.anomalies(.runt))
        table.account(frame: frame, ingress: 1, egress: UInt32((selector >> 1) & 3), vlan: VLANID(UInt16(selector >> 3)),
                      length: frame.count, now: clock)
        let after = (table.accountedFrames, table.notTracked, table.anomalies(.runt))
        let steps = (after.0 - before.0) + (after.1 - before.1) + (after.2 - before.2)
        if steps != 1 { fatalError("a frame was counted \(steps) times") }
        if table.count > table.capacity { fatalError("flow table over capacity") }
        if clock % 16_000 == 0 {
            var records: [FlowRecord] = []
            table.expire(now: clock, idleTimeout: 4000, activeTimeout: 8000, into: &records)
        }
    }
    return 0
}
