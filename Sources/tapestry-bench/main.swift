// In-process micro-benchmark of the forwarding core: decide + learn + egress walk on 64-byte
// frames with 10 000 MACs in the table, the same on a 256-port switch with 4094 VLANs, heap
// allocations per frame (counted by wrapping malloc), lookup and learning rates, and the
// MAC table's memory at 1 million entries.
//
//   swift run -c release tapestry-bench [SCENARIO...] [--frames N] [--runs R]
//
// SCENARIO: forward, forward-mirror, forward-storm, forward-mirror-storm (`forward` with a
// mirror, storm-control limits, or both), scale, scale-trunks, lookup, learning, memory, and
// the port-group policies: forward-shaped (`forward` with every port shaped on ingress and
// egress at rates it never reaches: the cost of asking and charging), forward-snooping
// (`forward` with IGMP/MLD snooping on: what unicast pays for it), multicast-flood (UDP to a
// group, snooping off: flooded to 15 ports) and multicast-group (the same frames, snooping
// on, the group registered on 2 ports plus a router port). Default: forward, forward-mirror,
// forward-storm, scale, scale-trunks, lookup, learning, memory. `scale` is `forward`'s
// traffic (access port to access port, known unicast) on a 256-port switch whose trunks
// carry all 4094 VLANs: the cost of size alone; `scale-trunks` adds tagged traffic between
// the trunks in 1190 more VLANs (a different mix, so more work per frame, mostly
// mispredicted branches between the tagged and untagged paths). Each throughput scenario
// runs R times (default 5) over N frames (default 20 000 000) and prints the median and the
// best run. Numbers are for this machine and this run; there are no thresholds anywhere:
// compare runs, not absolutes. Instructions per frame (exact, whatever the machine's load):
// `Scripts/bench/instructions.sh SCENARIO...` runs a scenario under callgrind at two frame
// counts and divides the difference.
//
// The measured loop does per frame what `Datapath.forward` does between its read and its
// writes, minus the counters and the transmit list: `decide`, the decision's requested
// effects (storm and shaping tokens, snooping, announcements, learning with the port's own
// limit), `collectEgress`, and the egress shaping charge of each output.
import CMallocCounter
import Core
import Foundation
import Model

// MARK: - Arguments

var scenarios: [String] = []
var frameTotal = 20_000_000
var runs = 5
do {
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--frames": frameTotal = Int(args.popFirst() ?? "") ?? frameTotal
        case "--runs": runs = max(1, Int(args.popFirst() ?? "") ?? runs)
        case "forward", "forward-mirror", "forward-storm", "forward-mirror-storm", "scale", "scale-trunks", "lookup", "learning", "memory",
             "forward-shaped", "forward-snooping", "multicast-flood", "multicast-group": scenarios.append(a)
        default:
            if let n = Int(a) { frameTotal = n; continue }   // the old `tapestry-bench N`
            print("usage: tapestry-bench [forward|forward-mirror|forward-storm|forward-mirror-storm|forward-shaped|forward-snooping|multicast-flood|multicast-group|scale|scale-trunks|lookup|learning|memory]... [--frames N] [--runs R]")
            exit(2)
        }
    }
    if scenarios.isEmpty { scenarios = ["forward", "forward-mirror", "forward-storm", "scale", "scale-trunks", "lookup", "learning", "memory"] }
}

// MARK: - Helpers

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
    return (Int(text.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func rate(_ count: Int, _ time: Double) -> String { String(format: "%.1f", Double(count) / time / 1e6) }

/// Median and best of `runs` rates (million per second).
func summary(_ rates: [Double]) -> String {
    let s = rates.sorted()
    return String(format: "median %.1f, best %.1f", s[s.count / 2], s.last!)
}

func address(_ i: Int) -> MACAddress { MACAddress(rawValue: 0x0200_0000_0000 | UInt64(i)) }

/// SplitMix64 (Steele, Lea and Flood, 2014) with a fixed seed: every run draws the same
/// frames, so two runs of a scenario at different frame counts walk the same workload and
/// their instruction counts differ by whole frames only (`Scripts/bench/instructions.sh`).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A set of prepared 64-byte frames with their ingress ports, laid out so the measured loop
/// does nothing but index two flat buffers (no slicing, no division, no bounds checks):
/// the benchmark measures the switch, not the harness.
struct Workload {
    static let frameCount = 4096
    let bytes: UnsafeMutableRawPointer
    let inPorts: UnsafeMutablePointer<Int>

    /// `hosts[i]` is host i's VLAN, port and whether it sends tagged frames. Each frame goes
    /// from a random host to a random other host of its VLAN on another port (known
    /// unicast, so every frame is forwarded to one port).
    /// UDP frames (64 bytes) from the hosts to `group`, each from a random host.
    init(hosts: [Host], group: UInt32) {
        bytes = .allocate(byteCount: Workload.frameCount * 64, alignment: 64)
        inPorts = .allocate(capacity: Workload.frameCount)
        var rng = SplitMix64(seed: 0x7A9E_5747)
        for f in 0..<Workload.frameCount {
            let src = Int.random(in: 0..<hosts.count, using: &rng)
            let b = UnsafeMutableRawBufferPointer(start: bytes + f * 64, count: 64)
            b.initializeMemory(as: UInt8.self, repeating: 0)
            MACAddress(rawValue: 0x0100_5E00_0000 | UInt64(group & 0x7F_FFFF)).write(to: b, at: 0)
            address(src).write(to: b, at: 6)
            b[12] = 0x08; b[13] = 0x00
            let ip: [UInt8] = [0x45, 0, 0, 50, 0, 0, 0x40, 0, 1, 17, 0, 0, 10, 0, UInt8(src >> 8 & 0xFF), UInt8(src & 0xFF),
                               UInt8(group >> 24), UInt8(group >> 16 & 0xFF), UInt8(group >> 8 & 0xFF), UInt8(group & 0xFF)]
            for (i, v) in ip.enumerated() { b[14 + i] = v }
            inPorts[f] = hosts[src].port
        }
    }

    init(hosts: [Host]) {
        bytes = .allocate(byteCount: Workload.frameCount * 64, alignment: 64)
        inPorts = .allocate(capacity: Workload.frameCount)
        var rng = SplitMix64(seed: 0x7A9E_5747)
        var byVLAN: [UInt16: [Int]] = [:]
        for (i, h) in hosts.enumerated() { byVLAN[h.vlan.rawValue, default: []].append(i) }
        for f in 0..<Workload.frameCount {
            var src = 0, dst = 0
            repeat {
                src = Int.random(in: 0..<hosts.count, using: &rng)
                let peers = byVLAN[hosts[src].vlan.rawValue]!
                dst = peers[Int.random(in: 0..<peers.count, using: &rng)]
            } while hosts[dst].port == hosts[src].port
            let h = hosts[src]
            let b = UnsafeMutableRawBufferPointer(start: bytes + f * 64, count: 64)
            b.initializeMemory(as: UInt8.self, repeating: 0)
            address(dst).write(to: b, at: 0)
            address(src).write(to: b, at: 6)
            var o = 12
            if h.tagged {
                b[12] = 0x81; b[13] = 0x00; b[14] = UInt8(h.vlan.rawValue >> 8); b[15] = UInt8(h.vlan.rawValue & 0xFF)
                o = 16
            }
            b[o] = 0x08; b[o + 1] = 0x00
            inPorts[f] = h.port
        }
    }

    @inline(__always) func frame(_ f: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: bytes + f * 64, count: 64)
    }
}

struct Host { var vlan: VLANID; var port: Int; var tagged: Bool }

/// One throughput scenario: a switch, its table and its frames, and what the runs measured.
final class Scenario {
    let name: String, what: String
    let plan: SwitchPlan, table: MACTable, workload: Workload
    let storm: StormControl
    let shaper: TrafficShaper
    let groups: MulticastGroupTable?
    let list = EgressList()
    let announcements = AnnouncementLock()
    var rates: [Double] = []
    var forwarded = 0, egress = 0, allocations: UInt64 = 0, frames = 0
    init(_ name: String, _ what: String, _ plan: SwitchPlan, _ table: MACTable, _ workload: Workload) {
        self.name = name; self.what = what; self.plan = plan; self.table = table; self.workload = workload
        storm = StormControl(plan: plan)
        shaper = TrafficShaper(plan: plan)
        groups = plan.multicast.map { MulticastGroupTable(snooping: $0, portCount: plan.ports.count) }
        if let g = groups {
            // The group the multicast workload sends to: two members (ports 3 and 7).
            for p in [3, 7] { g.join(vlan: VLANID(10), group: WireIPAddress(ipv4: benchGroup), port: p, now: .seconds(0)) }
        }
    }

    /// One run of decide + learn + egress walk over `count` frames: the datapath's per-frame
    /// work without the syscalls (what `Datapath.forward` does between its read and its
    /// writes).
    func run(frames count: Int) {
        let plan = self.plan, w = workload
        let mask = Workload.frameCount - 1
        var forwarded = 0, egress = 0
        let list = self.list, announcements = self.announcements
        list.prepare(portCount: plan.ports.count)
        // The clock reads one second after the table was filled, and moves 1 µs per batch of 64.
        let table = self.table, storm: StormControl? = storm.isActive ? storm : nil
        let shaper: TrafficShaper? = shaper.isActive ? shaper : nil, groups = self.groups
        let allocationsBefore = cmc_allocations()
        let time = seconds {
            // Batches of 64 frames, each with its own context a microsecond later: the
            // datapath reads its clock and builds its context once per batch too.
            for batch in stride(from: 0, to: count, by: 64) {
              let context = DecisionContext(table: table, storm: storm, now: MonotonicInstant(nanoseconds: 1_000_000_000 + Int64(batch / 64) * 1000),
                                            shaper: shaper, multicast: groups)
              for n in batch..<min(count, batch + 64) {
                let f = n & mask
                let inPort = w.inPorts[f]
                let d = decide(frame: w.frame(f), inPort: inPort, plan: plan, context: context)
                // The decision's requested effects, as `Datapath.forward` applies them.
                if case .local = d.verdict { continue }
                if d.takesStormToken, let why = d.floodReason { context.storm?.take(port: inPort, reason: why, now: context.now) }
                if d.takesShapingTokens { context.shaper?.take(port: inPort, .ingress, bytes: 64, now: context.now) }
                if d.snoops {
                    context.multicast?.snoop(frame: w.frame(f), verifyChecksums: !d.offload.needsChecksum, port: inPort,
                                             vlan: d.learningVLAN, now: context.now)
                }
                if d.announces { announcements.stamp(vlan: d.learningVLAN, mac: d.source, now: context.now) }
                if d.learn {
                    context.table.learn(vlan: d.learningVLAN, mac: d.source, port: inPort, now: context.now, portLimit: plan.macLimit(port: inPort))
                }
                if case .forward = d.verdict { forwarded &+= 1 }
                _ = collectEgress(of: d, inPort: inPort, plan: plan, context: context, into: list)
                // The egress effects as `Datapath.forward` applies them: charge each output
                // to a port shaped on egress.
                if let s = context.shaper, s.shapesEgress {
                    for i in 0..<list.count where list[i].kind == .output && s.shapes(port: Int(list[i].port), .egress) {
                        s.take(port: Int(list[i].port), .egress, bytes: egressLength(64, list[i].rewrite), now: context.now)
                    }
                }
                egress &+= list.count
              }
            }
        }
        allocations += cmc_allocations() - allocationsBefore
        if frames == 0 { self.forwarded = forwarded; self.egress = egress }
        frames += count
        rates.append(Double(count) / time / 1e6)
    }
}

let macCount = 10_000
var throughput: [Scenario] = []

// MARK: - forward: 16 ports, one VLAN, 10 000 MACs

/// A table holding every host (learned at time 0; the measured loop runs at time 1, so the
/// first frame from each host also refreshes its entry's LRU position once).
func learned(_ hosts: [Host], ports: Int) -> MACTable {
    let table = MACTable(limit: 65_536, portCount: ports)
    for (i, h) in hosts.enumerated() { table.learn(vlan: h.vlan, mac: address(i), port: h.port, now: .seconds(0)) }
    return table
}

/// 15 access ports in VLAN 10 and one trunk carrying it, 10 000 hosts on the access ports.
/// `mirror`: port 0's traffic, both ways, is also copied to a 17th port (a SPAN of one guest,
/// so one frame in 15 makes an ingress copy and one in 15 an egress copy). `storm`: every
/// port has broadcast, multicast and unknown-unicast limits (the known unicast measured
/// here never spends a token: the cost is the check).
func smallSwitch(mirror: Bool = false, storm: Bool = false) -> (SwitchPlan, MACTable, Workload) {
    let ports = 16
    let limits = storm ? StormLimits(broadcast: 1000, multicast: 1000, unknownUnicast: 1000) : StormLimits()
    var list = (0..<ports).map {
        PortPlan(name: "p\($0)", portGroup: "g", mode: $0 == ports - 1 ? .trunk(allowed: VLANSet([VLANID(10)]), native: nil) : .access(VLANID(10)),
                 storm: limits)
    }
    if mirror { list.append(PortPlan(name: "span", portGroup: "span", mode: .access(VLANID(10)))) }
    let plan = SwitchPlan(name: "bench", ports: list, macLimit: 65_536,
                          mirrors: mirror ? [MirrorPlan(name: "m", sources: [0], ingress: true, egress: true, destinations: [ports])] : [])
    let hosts = (0..<macCount).map { Host(vlan: VLANID(10), port: $0 % (ports - 1), tagged: false) }
    return (plan, learned(hosts, ports: list.count), Workload(hosts: hosts))
}

if scenarios.contains("forward") {
    let (plan, table, w) = smallSwitch()
    throughput.append(Scenario("decide+learn+egress", "16 ports, 1 VLAN, \(macCount) MACs, 64-byte frames", plan, table, w))
}
if scenarios.contains("forward-mirror") {
    let (plan, table, w) = smallSwitch(mirror: true)
    throughput.append(Scenario("forward-mirror", "forward plus a mirror of one port (both ways) to a 17th port", plan, table, w))
}
if scenarios.contains("forward-storm") {
    let (plan, table, w) = smallSwitch(storm: true)
    throughput.append(Scenario("forward-storm", "forward with storm-control limits on every port", plan, table, w))
}
if scenarios.contains("forward-mirror-storm") {
    let (plan, table, w) = smallSwitch(mirror: true, storm: true)
    throughput.append(Scenario("forward-mirror-storm", "forward-mirror with storm-control limits on every port", plan, table, w))
}

/// The multicast workload's group (239.1.1.1).
let benchGroup: UInt32 = 0xEF01_0101

/// `smallSwitch`'s plan with every port shaped (1 Tbit/s, 1 GiB bursts: never refused, so
/// the traffic is `forward`'s) or with snooping on (port 15, the trunk, a router port).
func policySwitch(shaped: Bool, snooping: Bool) -> SwitchPlan {
    let (plain, _, _) = smallSwitch()
    let limit = ShapingLimit(averageBitsPerSecond: ShapingLimit.maximumRate, burstBytes: 1 << 30)
    return SwitchPlan(name: "bench", ports: plain.ports.map { p in
        var q = p
        if shaped { q.shaping = ShapingPolicy(ingress: limit, egress: limit) }
        return q
    }, macLimit: 65_536, multicast: snooping ? MulticastSnooping(routerPorts: [15]) : nil)
}

if scenarios.contains("forward-shaped") {
    let (_, table, w) = smallSwitch()
    throughput.append(Scenario("forward-shaped", "forward with every port shaped on ingress and egress (never over the rate)",
                               policySwitch(shaped: true, snooping: false), table, w))
}
if scenarios.contains("forward-snooping") {
    let (_, table, w) = smallSwitch()
    throughput.append(Scenario("forward-snooping", "forward with IGMP/MLD snooping on (unicast traffic)",
                               policySwitch(shaped: false, snooping: true), table, w))
}
if scenarios.contains("multicast-flood") || scenarios.contains("multicast-group") {
    let (_, table, _) = smallSwitch()
    let hosts = (0..<macCount).map { Host(vlan: VLANID(10), port: $0 % 15, tagged: false) }
    let w = Workload(hosts: hosts, group: benchGroup)
    if scenarios.contains("multicast-flood") {
        throughput.append(Scenario("multicast-flood", "UDP to 239.1.1.1, snooping off: flooded to 15 ports", policySwitch(shaped: false, snooping: false), table, w))
    }
    if scenarios.contains("multicast-group") {
        throughput.append(Scenario("multicast-group", "UDP to 239.1.1.1, snooping on: 2 members and a router port",
                                   policySwitch(shaped: false, snooping: true), table, w))
    }
}

// MARK: - scale: 256 ports, 4094 VLANs

/// 254 access ports, two per VLAN, 127 VLANs spread over 1-4033, and two trunks carrying
/// 1-4094. `scale`: 10 000 hosts on the access ports (as in `forward`, one port to another
/// of the same VLAN). `scale-trunks`: 7620 hosts on the access ports and 2380 behind the
/// trunks, in pairs (one per trunk) in 1190 VLANs spread over 1-3571, tagged.
func scaleScenario(trunkHosts: Bool) -> Scenario {
    let ports = 256, access = 254
    var all = VLANSet(); all.insert(range: 1...4094)
    func accessVLAN(_ p: Int) -> VLANID { VLANID(UInt16(1 + (p / 2) * 32)) }
    let plan = SwitchPlan(name: "scale", ports: (0..<ports).map {
        PortPlan(name: "p\($0)", portGroup: $0 < access ? "g\($0 / 2)" : "trunk",
                 mode: $0 < access ? .access(accessVLAN($0)) : .trunk(allowed: all, native: nil))
    }, macLimit: 65_536)
    var hosts = (0..<(trunkHosts ? access * 30 : macCount)).map { Host(vlan: accessVLAN($0 % access), port: $0 % access, tagged: false) }
    for k in 0..<(macCount - hosts.count) { hosts.append(Host(vlan: VLANID(UInt16(1 + (k / 2) * 3)), port: access + k % 2, tagged: true)) }
    let what = "256 ports: 254 access in 127 VLANs + 2 trunks 1-4094, \(hosts.count) MACs in \(Set(hosts.map(\.vlan)).count) VLANs"
        + (trunkHosts ? ", 24% of frames tagged between the trunks" : "")
    return Scenario(trunkHosts ? "scale-trunks" : "scale", what, plan, learned(hosts, ports: ports), Workload(hosts: hosts))
}

if scenarios.contains("scale") { throughput.append(scaleScenario(trunkHosts: false)) }
if scenarios.contains("scale-trunks") { throughput.append(scaleScenario(trunkHosts: true)) }

// Runs alternate between the scenarios (run 1 of each, then run 2 of each, …), so a change
// in the machine's load hits them alike; a ratio is the median of the per-run ratios.
for _ in 0..<runs { for s in throughput { s.run(frames: frameTotal) } }
for s in throughput {
    print("\(s.name): \(summary(s.rates)) Mframes/s on one core (\(s.what); \(frameTotal) frames × \(runs) runs; first run: \(s.forwarded) forwarded, \(s.egress) egress ports)")
    print("\(s.name) heap allocations: \(s.allocations) in \(s.frames) frames (\(String(format: "%.6f", Double(s.allocations) / Double(s.frames))) per frame)")
}
if let base = throughput.first, base.name == "decide+learn+egress" {
    for s in throughput.dropFirst() {
        let ratios = zip(s.rates, base.rates).map { $0 / $1 }.sorted()
        print(String(format: "\(s.name)/forward: median of per-run ratios %.2f (min %.2f, max %.2f)", ratios[ratios.count / 2], ratios.first!, ratios.last!))
    }
}

// MARK: - lookup, learning, memory

if scenarios.contains("lookup") {
    let (_, table, _) = smallSwitch()
    var rates: [Double] = []
    var hits = 0
    for _ in 0..<runs {
        let t = seconds {
            var i = 0
            for _ in 0..<frameTotal {
                if table.lookup(vlan: VLANID(10), mac: address(i)) != nil { hits &+= 1 }
                i += 1; if i == macCount { i = 0 }
            }
        }
        rates.append(Double(frameTotal) / t / 1e6)
    }
    print("lookup: \(summary(rates)) M/s (\(hits) hits)")
}

if scenarios.contains("learning") {
    // RFC 2889 §5.8 style: new addresses per second into an empty table.
    var rates: [Double] = []
    for _ in 0..<runs {
        let fresh = MACTable(limit: 1_048_576, portCount: 16)
        let t = seconds { for i in 0..<1_000_000 { fresh.learn(vlan: VLANID(10), mac: address(i), port: i & 15, now: .seconds(0)) } }
        rates.append(1e6 / t / 1e6)
    }
    print("learning rate: \(summary(rates)) M new addresses/s (1 000 000 addresses into an empty table)")
}

if scenarios.contains("memory") {
    let before = residentBytes()
    let million = MACTable(limit: 1_000_000, portCount: 16)
    for i in 0..<1_000_000 { million.learn(vlan: VLANID(UInt16(1 + i % 4094)), mac: address(i), port: i & 15, now: .seconds(0)) }
    let after = residentBytes()
    print("1 000 000 MAC entries: \(String(format: "%.1f", Double(after - before) / 1_048_576)) MiB resident (\(million.count) entries)")
}
