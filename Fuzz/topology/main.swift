// libFuzzer target "topology": TopologyLoader.parse (bounded libyaml composition + validation), then
// compile() on success, then one broadcast and one tagged frame through `decide` from every
// port of every compiled plan: a topology that passes validation must never make the
// datapath trap. Errors must carry a diagnostic (the loader reports every problem).
import Core
import Model
import Topology

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-topology invariant violated: \(what())") }
}

private let probeFrames: [[UInt8]] = [
    // broadcast ARP, untagged
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06] + [UInt8](repeating: 0, count: 46),
    // unicast IPv4 in an 802.1Q tag, VLAN 10
    [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00] + [UInt8](repeating: 0, count: 46),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let topology: Topology
    do {
        topology = try TopologyLoader.parse(text, file: "fuzz.yaml")
    } catch let e as TopologyErrors {
        check(!e.diagnostics.isEmpty, "TopologyErrors without diagnostics")
        _ = e.description
        return 0
    } catch {
        fatalError("fuzz-topology: parse threw a non-TopologyErrors error: \(error)")
    }
    // Pure functions over a valid topology: a diff with itself is empty; every host's part
    // is computable and its tunnels belong to its switches.
    check((try? Topology.diff(from: topology, to: topology))?.isEmpty == true, "diff of a topology with itself is not empty")
    for h in topology.hosts {
        guard let part = try? topology.part(forHost: h.name) else { fatalError("fuzz-topology: part(forHost: \(h.name)) threw") }
        let names = Set(part.topology.switches.map(\.name))
        check(part.tunnels.allSatisfy { names.contains($0.switchName) }, "a tunnel of host \(h.name) is on a switch it does not run")
    }
    let plans = topology.compile()
    check(plans.count == topology.switches.count, "compile() returned \(plans.count) plans for \(topology.switches.count) switches")
    let egress = EgressList(capacity: 8192)
    for plan in plans {
        egress.prepare(portCount: plan.ports.count)
        _ = plan.usedVLANs
        let table = MACTable(limit: max(1, min(plan.macLimit, 64)), staticCapacity: 16, portCount: plan.ports.count)
        for s in plan.staticEntries { _ = table.addStatic(vlan: s.vlan, mac: s.mac, port: s.port) }
        for port in plan.ports.indices.prefix(16) {
            _ = plan.ports[port].mode.description
            for frame in probeFrames {
                var none = NoTrace()
                let d = frame.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, table: table, trace: &none) }
                _ = collectEgress(of: d, inPort: port, plan: plan, context: DecisionContext(table: table), into: egress)
                for i in 0..<egress.count {
                    let p = Int(egress[i].port)
                    check(plan.ports.indices.contains(p), "egress port \(p) out of range")
                    _ = rewritten(frame, egress[i].rewrite)
                }
            }
        }
    }
    return 0
}
