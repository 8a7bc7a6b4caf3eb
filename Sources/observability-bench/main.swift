// Micro-benchmark of the observability hot spots: the flow table's per-frame
// accounting (what the datapath pays per sampled frame), heap allocations per accounted
// frame (malloc wrapped and counted, budget 0), the expiry walk, IPFIX encoding, and the
// Prometheus rendering of a 256-port switch.
//
//   swift run -c release observability-bench [--frames N] [--flows F] [--runs R]
//
// Frames are 64-byte IPv4/UDP frames of F distinct flows (default 1 000 and 50 000), fed in
// a fixed pseudo-random order so the table is probed as traffic would. No thresholds: numbers
// are for this machine and this run. For instructions, run under
// `valgrind --tool=callgrind observability-bench --frames 200000 --runs 1` and divide.
import CMallocCounter
import Foundation
import Model
import Observability

var frames = 5_000_000, runs = 5, flowCounts = [1_000, 50_000]
do {
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--frames": frames = Int(args.popFirst() ?? "") ?? frames
        case "--runs": runs = max(1, Int(args.popFirst() ?? "") ?? runs)
        case "--flows": flowCounts = [Int(args.popFirst() ?? "") ?? 1000]
        default: print("usage: observability-bench [--frames N] [--flows F] [--runs R]"); exit(2)
        }
    }
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// `count` distinct 64-byte IPv4/UDP frames (one per flow), in one buffer.
func makeFrames(_ count: Int) -> [UInt8] {
    var all = [UInt8](); all.reserveCapacity(count * 64)
    for i in 0..<count {
        var f: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
        f += [0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, UInt8((i >> 8) & 0xFF), UInt8(i & 0xFF), 10, 1, 0, 1]
        f += [UInt8((i >> 16) & 0xFF), UInt8(i & 0xFF), 0, 53, 0, 30, 0, 0]
        f += [UInt8](repeating: 0, count: 64 - f.count)
        all += f
    }
    return all
}

for flows in flowCounts {
    let data = makeFrames(flows)
    // A fixed random order of flow indices, so probing is not sequential.
    var order = [Int32](repeating: 0, count: 1 << 16)
    var x: UInt64 = 88172645463325252
    for i in order.indices { x ^= x << 13; x ^= x >> 7; x ^= x << 17; order[i] = Int32(x % UInt64(flows)) }
    var perFrame: [Double] = []
    var allocations: UInt64 = 0
    let table = FlowTable(capacity: max(flows, 65_536))
    data.withUnsafeBytes { raw in
        // Warm the table (first frames insert).
        for i in 0..<flows {
            table.account(frame: UnsafeRawBufferPointer(rebasing: raw[(i * 64)..<(i * 64 + 64)]), ingress: 1, egress: 2, vlan: VLANID(10), length: 64, now: 1)
        }
        for _ in 0..<runs {
            let a0 = cmc_allocations()
            let t0 = now()
            for n in 0..<frames {
                let i = Int(order[n & 0xFFFF])
                table.account(frame: UnsafeRawBufferPointer(rebasing: raw[(i * 64)..<(i * 64 + 64)]), ingress: 1, egress: 2,
                              vlan: VLANID(10), length: 64, now: 2)
            }
            let t1 = now()
            allocations += cmc_allocations() - a0
            perFrame.append(Double(t1 - t0) / Double(frames))
        }
    }
    perFrame.sort()
    print(String(format: "account, %6d flows: median %.1f ns/frame, best %.1f ns/frame; heap allocations: %llu in %d frames (%.6f per frame)",
                 flows, perFrame[perFrame.count / 2], perFrame[0], allocations, frames * runs, Double(allocations) / Double(frames * runs)))
    var records: [FlowRecord] = []
    records.reserveCapacity(flows)
    let e0 = now()
    table.expire(now: 1_000_000, idleTimeout: 15_000, activeTimeout: 60_000, into: &records)
    let e1 = now()
    print(String(format: "expire (full walk of %d slots, %d records): %.2f ms", table.capacity * 2, records.count, Double(e1 - e0) / 1e6))
    var encoder = IPFIXEncoder(observationDomain: 1)
    let c0 = now()
    let messages = encoder.messages(for: records, exportTime: 1)
    let c1 = now()
    print(String(format: "IPFIX encoding: %d records in %d messages, %.0f ns/record", records.count, messages.count, Double(c1 - c0) / Double(max(1, records.count))))
}

var snapshot = MetricsSnapshot(topology: "bench", startTimeSeconds: 0)
snapshot.ports = (0..<256).map { .init(switch: "sw0", name: "g\($0).eth0", portGroup: "web", kind: "guest", rxFrames: 1, rxBytes: 64, drops: [("runt", 1)]) }
snapshot.switches = [.init(name: "sw0", macEntries: 256, macLimit: 8192, macEvictions: 0)]
let r0 = now()
var bytes = 0
for _ in 0..<20 { bytes = PrometheusText.render(TapestryMetrics.families(snapshot)).utf8.count }
let r1 = now()
print(String(format: "Prometheus: families + render of 256 ports: %.2f ms, %d bytes", Double(r1 - r0) / 20e6, bytes))
