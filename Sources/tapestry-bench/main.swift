// In-process micro-benchmark of the forwarding core: decide + learn + lookup on 64-byte
// frames with 10 000 MACs in the table, heap allocations per frame (counted by wrapping
// malloc), the MAC table's memory at 1 million entries, and the learning rate.
//
// Run: swift run -c release tapestry-bench   (numbers are for this machine, this run; no
// thresholds anywhere: compare runs, not absolutes.)
import CMallocCounter
import Core
import Foundation
import Model

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
    return (Int(text.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

let macCount = 10_000
let ports = 16
let plan = SwitchPlan(name: "bench", ports: (0..<ports).map {
    PortPlan(name: "p\($0)", portGroup: "g", mode: $0 == ports - 1 ? .trunk(allowed: VLANSet([VLANID(10)]), native: nil) : .access(VLANID(10)))
}, macLimit: 65_536)
let table = MACTable(limit: 65_536, portCount: ports)
func address(_ i: Int) -> MACAddress { MACAddress(rawValue: 0x0200_0000_0000 | UInt64(i)) }
for i in 0..<macCount { table.learn(vlan: VLANID(10), mac: address(i), port: i % (ports - 1), now: 0) }

// 4096 distinct 64-byte frames between known hosts, laid out in one buffer.
let frameCount = 4096
let frames = UnsafeMutableRawBufferPointer.allocate(byteCount: frameCount * 64, alignment: 64)
var rng = SystemRandomNumberGenerator()
for f in 0..<frameCount {
    let src = Int.random(in: 0..<macCount, using: &rng), dst = Int.random(in: 0..<macCount, using: &rng)
    let b = UnsafeMutableRawBufferPointer(rebasing: frames[(f * 64)..<(f * 64 + 64)])
    address(dst).write(to: b, at: 0)
    address(src).write(to: b, at: 6)
    b[12] = 0x08; b[13] = 0x00
    for i in 14..<64 { b[i] = 0 }
}

// decide + learn (the datapath's per-frame work without the syscalls).
let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 20_000_000 : 20_000_000
var forwarded = 0
var egressPorts = 0
let allocsBefore = cmc_allocations()
let elapsed = seconds {
    var trace = NoTrace()
    for n in 0..<iterations {
        let f = n & (frameCount - 1)
        let frame = UnsafeRawBufferPointer(rebasing: frames[(f * 64)..<(f * 64 + 64)])
        let inPort = Int(frame[11]) % (ports - 1)
        let d = decide(frame: frame, inPort: inPort, plan: plan, table: table, trace: &trace)
        if d.learn { table.learn(vlan: d.vlan, mac: d.source, port: inPort, now: 1, portLimit: 65_536) }
        if case .forward = d.verdict { forwarded += 1 }
        forEachEgress(of: d, inPort: inPort, plan: plan) { _, _, _ in egressPorts += 1 }
    }
}
let allocs = cmc_allocations() - allocsBefore
print("decide+learn+egress: \(String(format: "%.1f", Double(iterations) / elapsed / 1e6)) Mframes/s on one core (\(macCount) MACs, 64-byte frames, \(iterations) frames, \(forwarded) forwarded, \(egressPorts) egress ports)")
print("heap allocations: \(allocs) in \(iterations) frames (\(String(format: "%.6f", Double(allocs) / Double(iterations))) per frame)")

// Lookup alone.
var hits = 0
let lookupTime = seconds {
    for n in 0..<iterations { if table.lookup(vlan: VLANID(10), mac: address(n % macCount)) != nil { hits += 1 } }
}
print("lookup: \(String(format: "%.1f", Double(iterations) / lookupTime / 1e6)) M/s (\(hits) hits)")

// Learning rate (RFC 2889 §5.8 style: new addresses per second into an empty table).
let fresh = MACTable(limit: 1_048_576, portCount: ports)
let learnTime = seconds {
    for i in 0..<1_000_000 { fresh.learn(vlan: VLANID(10), mac: address(i), port: i % ports, now: 0) }
}
print("learning rate: \(String(format: "%.1f", 1e6 / learnTime / 1e6)) M new addresses/s (1 000 000 addresses)")

// Memory of a 1 million entry table.
let before = residentBytes()
let million = MACTable(limit: 1_000_000, portCount: ports)
for i in 0..<1_000_000 { million.learn(vlan: VLANID(UInt16(1 + i % 4094)), mac: address(i), port: i % ports, now: 0) }
let after = residentBytes()
print("1 000 000 MAC entries: \(String(format: "%.1f", Double(after - before) / 1_048_576)) MiB resident (\(million.count) entries)")
