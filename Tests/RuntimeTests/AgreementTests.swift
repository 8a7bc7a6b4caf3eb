import Core
import Foundation
import LinuxIO
import Model
import Runtime
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A port that lives in memory: frames the test injects are read by the datapath, frames
/// the datapath writes are kept in order. Writes never fail, so what reaches a port is
/// exactly what the decision said (no transmit drops to tell apart).
final class MemoryPort: SingleQueuePortIO, @unchecked Sendable {
    let wake: EventFD
    let vnetHeaderSize: Int
    var txVNetHeaderSize: Int { vnetHeaderSize }
    private let lock = NSLock()
    private var inbox: [[UInt8]] = []
    private var outbox: [[UInt8]] = []

    init(vnetHeaderSize: Int) throws {
        wake = try EventFD()
        self.vnetHeaderSize = vnetHeaderSize
    }
    var pollFD: Int32 { wake.fd }
    func takePendingError() -> Int32 { 0 }
    func close() {}

    func inject(_ frame: [UInt8]) {
        lock.withLock { inbox.append(frame) }
        wake.signal()
    }
    /// Queues `frames` at once: the datapath reads them in one batch.
    func inject(all frames: [[UInt8]]) {
        lock.withLock { inbox.append(contentsOf: frames) }
        wake.signal()
    }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        lock.withLock {
            guard !inbox.isEmpty else { _ = wake.drain(); return .wouldBlock }
            let f = inbox.removeFirst()
            buffer.copyBytes(from: f)
            if inbox.isEmpty { _ = wake.drain() }
            return .bytes(f.count)
        }
    }
    func writev(_ iov: UnsafePointer<iovec>, count: Int32) -> IOResult {
        var bytes: [UInt8] = []
        for i in 0..<Int(count) {
            bytes.append(contentsOf: UnsafeRawBufferPointer(start: iov[i].iov_base, count: iov[i].iov_len))
        }
        lock.withLock { outbox.append(bytes) }
        return .bytes(bytes.count)
    }
    /// Frames written since the last call (each without its vnet header).
    func takeWritten() -> [[UInt8]] {
        lock.withLock {
            defer { outbox.removeAll() }
            return outbox.map { Array($0.dropFirst(vnetHeaderSize)) }
        }
    }
}

/// SplitMix64: a small seeded generator, so a failing case can be replayed from its seed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `trace` and forwarding agree, on random switches and random frames.
///
/// Random switches — access, untagged and trunk ports, the security trio, storm limits,
/// mirrors in every direction, promiscuous ports, a NIC team, ports with and without
/// offloads, traffic shaping in both directions, a private VLAN (promiscuous, isolated and
/// community ports, trunks carrying it), IGMP/MLD snooping — receive random frames (unicast
/// to known and unknown MACs, broadcast, multicast, reserved groups, wrong tags, priority
/// tags with DEI, GSO and partial checksums, IGMP and MLD reports, leaves and queries,
/// multicast data, malformed IGMP) on random ports, one at a time. Before each frame is injected, `traceFrame`
/// runs on the same live state under the datapath lock, with the datapath's injected clock
/// at the same instant; then the datapath forwards the frame through in-memory ports that
/// never fail a write. Both must give the same verdict (with the same drop reason), the
/// same egress ports with the same tags, and the same mirror copies.
@Suite(.serialized) struct TraceAgreesWithForwardingTests {
    final class ManualClock: @unchecked Sendable {
        let nanoseconds = Atomic<Int64>(1_000_000_000)
        var now: MonotonicInstant { MonotonicInstant(nanoseconds: nanoseconds.load(ordering: .sequentiallyConsistent)) }
        func advance(milliseconds: Int64) { nanoseconds.add(milliseconds * 1_000_000, ordering: .sequentiallyConsistent) }
    }

    static let vlans: [UInt16] = [10, 20, 30]
    /// The private VLAN some plans have: primary 40, isolated 41, communities 42 and 43.
    static let privateVLAN = PrivateVLAN(primary: VLANID(40), isolated: VLANID(41), community: [VLANID(42), VLANID(43)])
    static let groups: [UInt32] = [ipv4(239, 1, 1, 1), ipv4(239, 1, 1, 2), ipv4(224, 0, 0, 251)]

    /// A random switch: 4–9 guest ports, maybe two uplinks, maybe mirrors. `plain`: no
    /// mirrors, no shaping and no promiscuous ports (where the datapath may reuse decisions);
    /// `snooping` false: never IGMP/MLD snooping.
    static func randomPlan(_ rng: inout SeededRandom, macs: [MACAddress], plain: Bool = false, snooping: Bool = true) -> (SwitchPlan, [Bool]) {
        let guests = Int.random(in: 4...9, using: &rng)
        let withTeam = Bool.random(using: &rng)
        let withPVLAN = Bool.random(using: &rng)
        let withShaping = Bool.random(using: &rng) && !plain
        let withSnooping = Bool.random(using: &rng) && snooping
        let pvlanVLANs: [UInt16] = withPVLAN ? [40, 41, 42, 43] : []
        func limit() -> ShapingLimit? {
            guard Bool.random(using: &rng) else { return nil }
            let avg = UInt64.random(in: 8_000...40_000, using: &rng)
            return ShapingLimit(averageBitsPerSecond: avg, peakBitsPerSecond: avg * UInt64.random(in: 1...3, using: &rng),
                                burstBytes: Int.random(in: 1000...3000, using: &rng))
        }
        var ports: [PortPlan] = []
        var offloads: [Bool] = []
        for i in 0..<guests {
            let mode: PortMode
            switch Int.random(in: 0..<(withPVLAN ? 6 : 4), using: &rng) {
            case 0: mode = .access(.untagged)
            case 1, 2: mode = .access(VLANID(vlans.randomElement(using: &rng)!))
            case 4, 5: mode = .access(VLANID(pvlanVLANs.randomElement(using: &rng)!))
            default:
                var allowed = VLANSet((vlans + pvlanVLANs).filter { _ in Bool.random(using: &rng) }.map(VLANID.init))
                if allowed.isEmpty { allowed.insert(VLANID(10)) }
                let native: VLANID? = [nil, .untagged, VLANID(10), VLANID(20)].randomElement(using: &rng)!
                mode = .trunk(allowed: allowed, native: native)
            }
            let security = PortSecurity(promiscuous: Int.random(in: 0..<6, using: &rng) == 0 && !plain,
                                        macChanges: Bool.random(using: &rng), forgedTransmits: Bool.random(using: &rng))
            let storm = Bool.random(using: &rng)
                ? StormLimits(broadcast: Int.random(in: 1...4, using: &rng), multicast: Int.random(in: 1...4, using: &rng),
                              unknownUnicast: Int.random(in: 1...4, using: &rng))
                : StormLimits()
            let accepts = Bool.random(using: &rng)
            offloads.append(accepts)
            ports.append(PortPlan(name: "g\(i).eth0", portGroup: "pg\(Int.random(in: 0..<3, using: &rng))", mode: mode,
                                  configuredMAC: Bool.random(using: &rng) ? macs[i] : nil, security: security,
                                  macLimit: 64, storm: storm, l2Transparency: Int.random(in: 0..<4, using: &rng) == 0,
                                  usesUplinks: withTeam && Int.random(in: 0..<4, using: &rng) != 0, acceptsOffloads: accepts,
                                  shaping: withShaping ? ShapingPolicy(ingress: limit(), egress: limit()) : nil))
        }
        var team: TeamConfig? = nil
        if withTeam {
            var carried = VLANSet((vlans + pvlanVLANs).map(VLANID.init))
            carried.insert(VLANID(10))
            for m in 0..<2 {
                ports.append(PortPlan(name: "nic\(m)", portGroup: PortPlan.uplinkGroup, mode: .trunk(allowed: carried, native: .untagged),
                                      security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                      uplinkMember: m, usesUplinks: false, acceptsOffloads: true))
                offloads.append(true)
            }
            team = TeamConfig(memberCount: 2, policy: [TeamPolicy.portID, .srcMAC, .failoverOrder].randomElement(using: &rng)!)
        }
        var mirrors: [MirrorPlan] = []
        if Int.random(in: 0..<4, using: &rng) != 0 && !plain {
            // Destinations are guest ports that are not sources; a destination is never a source.
            let dst = [guests - 1]
            let sources = (0..<(guests - 1)).filter { _ in Bool.random(using: &rng) }
            if !sources.isEmpty {
                let dir = Int.random(in: 0..<3, using: &rng)
                mirrors.append(MirrorPlan(name: "m0", sources: sources, ingress: dir != 1, egress: dir != 0, destinations: dst))
            }
        }
        let snooping: MulticastSnooping? = withSnooping
            ? MulticastSnooping(membershipInterval: .seconds(Int64.random(in: 1...20, using: &rng)),
                                routerPorts: Bool.random(using: &rng) ? [0] : [],
                                staticGroups: Bool.random(using: &rng) ? [StaticMulticastGroup(vlan: VLANID(10), group: WireIPAddress(ipv4: groups[1]), ports: [1])] : [],
                                groupCapacity: 2, membershipCapacity: 4, routerCapacity: 3)
            : nil
        return (SwitchPlan(name: "sw0", ports: ports, mtu: 1500, macLimit: 256, mirrors: mirrors, team: team,
                           privateVLANs: withPVLAN ? [privateVLAN] : [], multicast: snooping), offloads)
    }

    /// A random frame for port `p` of `plan`, with its virtio-net header when the port has one.
    static func randomFrame(_ rng: inout SeededRandom, plan: SwitchPlan, port p: Int, vnet: Bool, macs: [MACAddress]) -> (bytes: [UInt8], header: [UInt8], offload: FrameOffload) {
        let dstChoices: [MACAddress] = macs + [.broadcast, MACAddress(rawValue: 0x0100_5E00_0001), MACAddress(rawValue: 0x0180_C200_0000),
                                              MACAddress(rawValue: 0x0200_0000_EEEE)]
        var src = macs.randomElement(using: &rng)!
        if Int.random(in: 0..<30, using: &rng) == 0 { src = .broadcast }
        if Int.random(in: 0..<3, using: &rng) == 0 {
            // IGMP/MLD signalling and multicast data, tagged as the port expects.
            let mode = plan.ports[p].mode
            var tag: UInt16? = nil
            if case .trunk(let allowed, let native) = mode, native == nil || Bool.random(using: &rng) {
                tag = Array(allowed).randomElement(using: &rng)!.rawValue
            }
            let g = groups.randomElement(using: &rng)!
            let host = ipv4(10, 0, 0, UInt32.random(in: 1...200, using: &rng))
            var frame: [UInt8]
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: frame = MulticastFrames.igmpv2Report(from: src, source: host, group: g)
            case 1: frame = MulticastFrames.igmpv2Leave(from: src, source: host, group: g)
            case 2: frame = MulticastFrames.igmpv3Report(from: src, source: host, records: [(UInt8.random(in: 1...6, using: &rng), g, []),
                                                                                          (4, groups.randomElement(using: &rng)!, [host])])
            case 3: frame = MulticastFrames.igmpQuery(from: src, source: host, version: Bool.random(using: &rng) ? 2 : 3)
            case 4: frame = MulticastFrames.mldv2Report(from: src, source: MulticastFrames.linkLocal(UInt8.random(in: 1...9, using: &rng)),
                                                        records: [(UInt8.random(in: 1...6, using: &rng), MulticastFrames.siteGroup(1), 0)])
            case 5: frame = MulticastFrames.udp6(from: src, source: MulticastFrames.linkLocal(7), group: MulticastFrames.siteGroup(1))
            case 6: frame = MulticastFrames.ipv4(from: src, source: host, destination: g, protocol: 2,
                                                 payload: MulticastFrames.igmp([0x16, 0, 0, 0] + [239, 1, 1, 1], corrupt: true))
            default: frame = MulticastFrames.udp(from: src, source: host, group: g, payload: Int.random(in: 10...1400, using: &rng))
            }
            if let t = tag { frame.insert(contentsOf: [0x81, 0x00, UInt8(t >> 8), UInt8(t & 0xFF)], at: 12) }
            return (frame, vnet ? [UInt8](repeating: 0, count: 12) : [], .none)
        }
        var b = FrameBuilder(dst: dstChoices.randomElement(using: &rng)!, src: src)
        if Int.random(in: 0..<8, using: &rng) == 0 { b = b.type(EtherType.arp) }
        if Int.random(in: 0..<3, using: &rng) == 0 { b = b.payload(Int.random(in: 46...1400, using: &rng)) }
        // Tags: what the port expects most of the time, something else sometimes.
        let mode = plan.ports[p].mode
        switch (mode, Int.random(in: 0..<5, using: &rng)) {
        case (.trunk(let allowed, _), 0...2):
            let v = Array(allowed).randomElement(using: &rng)!
            b = b.tagged(v.rawValue, pcp: UInt16.random(in: 0...7, using: &rng), dei: Bool.random(using: &rng))
        case (_, 3): b = b.tagged(vlans.randomElement(using: &rng)!, pcp: 3, dei: true)
        case (_, 4) where Bool.random(using: &rng): b = b.tagged(0, pcp: 5, dei: Bool.random(using: &rng))   // priority tag
        default: break
        }
        var offload = FrameOffload.none
        var header: [UInt8] = []
        if vnet {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: offload = FrameOffload(isGSO: true); b = b.payload(3000)
                header = [1, 1, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 0, 0]
            case 1: offload = FrameOffload(needsChecksum: true); header = [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]
            case 2:
                // A real TCP/IPv4 GSO frame: a port without offloads gets it cut in software.
                let tags = b.tags
                var tcp = TCPFrames.gso(dst: b.destination, src: b.source, payload: Int.random(in: 2000...9000, using: &rng), segmentSize: 1448)
                if let t = tags.first {
                    tcp.frame.insert(contentsOf: [UInt8(t.tpid >> 8), UInt8(t.tpid & 0xFF), UInt8(t.tci >> 8), UInt8(t.tci & 0xFF)], at: 12)
                    tcp.header = TCPFrames.shifted(tcp.header, by: 4)
                }
                return (tcp.frame, tcp.header, FrameOffload(isGSO: true, needsChecksum: true))
            default: header = [UInt8](repeating: 0, count: 12)
            }
        }
        return (b.bytes, header, offload)
    }

    /// A frame's outer tag as trace writes an egress tag (`vlan 10 pcp 3 dei`, `untagged`).
    static func tagText(_ frame: [UInt8]) -> String {
        let h = frame.withUnsafeBytes { FrameHeader.parse($0) }
        return h?.outerTag.map { "vlan \($0.vid)" + ($0.pcp > 0 || $0.dei ? " pcp \($0.pcp)\($0.dei ? " dei" : "")" : "") } ?? "untagged"
    }

    @Test(arguments: Array(0..<24))
    func traceAndForwardingAgree(_ round: Int) throws {
        let seed = UInt64(0x7A9E_5700 + round)
        var rng = SeededRandom(state: seed)
        let macs = (1...10).map { mac(UInt64($0)) }
        let (plan, offloads) = Self.randomPlan(&rng, macs: macs)
        let ports = try offloads.map { try MemoryPort(vnetHeaderSize: $0 ? 12 : 0) }
        let clock = ManualClock()
        let dp = try Datapath(switches: [SwitchRuntime(plan: plan, ports: ports)], clock: { clock.now })
        dp.start()
        defer { dp.stop() }
        var compared = 0, mirrored = 0, stormDrops = 0, forwards = 0, shapingDrops = 0, pvlanDrops = 0, groupVerdicts = 0, shapingAnswers = 0, egressShapingRefusals = 0
        for step in 0..<150 {
            clock.advance(milliseconds: Int64.random(in: 0...150, using: &rng))
            let p = Int.random(in: 0..<plan.ports.count, using: &rng)
            let f = Self.randomFrame(&rng, plan: plan, port: p, vnet: offloads[p], macs: macs)
            let batchesBefore = dp.withLock { $0.batchesCompleted }
            let trace = dp.withLock { l in
                traceFrame(f.bytes, offload: f.offload, vnetHeader: f.header.isEmpty ? nil : f.header, inPort: p, plan: plan,
                           context: l.switches[0].context(now: clock.now, l))
            }
            let countersBefore = dp.withLock { l in (0..<plan.ports.count).map { l.switches[0].counters(l).snapshot(port: $0) } }
            ports[p].inject(f.header + f.bytes)
            let deadline = Date().addingTimeInterval(5)
            while dp.withLock({ $0.batchesCompleted }) == batchesBefore && Date() < deadline { usleep(200) }
            let countersAfter = dp.withLock { l in (0..<plan.ports.count).map { l.switches[0].counters(l).snapshot(port: $0) } }
            let context = "seed \(seed) step \(step): \(trace.summary) in on \(plan.ports[p].name)"

            // Verdict: a drop is counted on the ingress port under the reason trace gave.
            let newDrops = countersAfter[p].drops.filter { $0.value > (countersBefore[p].drops[$0.key] ?? 0) }.map(\.key.description)
            if trace.verdict == "drop" {
                #expect(newDrops == [trace.dropReason ?? "?"], "\(context): trace dropped (\(trace.dropReason ?? "?")), datapath counted \(newDrops)")
                if trace.dropReason?.hasPrefix("storm-control") == true { stormDrops += 1 }
                if trace.dropReason == "shaping-ingress" { shapingDrops += 1 }
                if trace.dropReason == "private-vlan-not-allowed" { pvlanDrops += 1 }
            } else {
                #expect(newDrops.isEmpty, "\(context): trace said \(trace.verdict), datapath dropped \(newDrops)")
            }
            if trace.verdict == "forward" { forwards += 1 }
            shapingAnswers += trace.shaping?.count ?? 0
            if trace.verdict.hasPrefix("multicast-") { groupVerdicts += 1 }
            // Egress shaping: a port trace says refuses for its rate counts one such drop.
            for r in trace.refused where r.reason == "shaping-egress" {
                egressShapingRefusals += 1
                let q = plan.portIndex(named: r.port)!
                #expect((countersAfter[q].drops[.shapingEgress] ?? 0) > (countersBefore[q].drops[.shapingEgress] ?? 0),
                        "\(context): trace refused \(r.port) for its egress rate, the datapath did not count it")
            }

            // Egress and mirror copies: what each port got, as (port, tag) and as copies.
            let received = Self.tagText(f.bytes)
            var predicted: [String: [String]] = [:]
            for e in trace.egress { predicted[e.port, default: []].append(e.tag) }
            // Per destination, the first candidate's copies go (an egress copy "if sent":
            // writes never fail); a copy cut into segments lists one entry per segment.
            var mirrorChosen: [String: String] = [:]
            for m in trace.mirrors {
                let key = m.point + "/" + (m.of ?? "")
                if mirrorChosen[m.port] == nil { mirrorChosen[m.port] = key }
                guard mirrorChosen[m.port] == key else { continue }
                if m.point == "ingress" {
                    predicted[m.port, default: []].append("copy " + received)
                } else {
                    let tag = trace.egress.first { $0.port == m.of }?.tag ?? "?"
                    predicted[m.port, default: []].append("copy " + tag)
                }
                mirrored += 1
            }
            var actual: [String: [String]] = [:]
            let mirrorDestinations = Set(plan.mirrors.flatMap(\.destinations))
            for (i, port) in ports.enumerated() {
                for frame in port.takeWritten() {
                    let tag = Self.tagText(frame)
                    if mirrorDestinations.contains(i) {
                        actual[plan.ports[i].name, default: []].append("copy " + tag)
                    } else {
                        actual[plan.ports[i].name, default: []].append(tag)
                    }
                }
            }
            #expect(actual.mapValues { $0.sorted() } == predicted.mapValues { $0.sorted() },
                    "\(context): trace predicted \(predicted), the datapath sent \(actual)")
            compared += 1
        }
        #expect(compared == 150)
        print("agreement seed \(seed): \(plan.ports.count) ports, \(plan.mirrors.count) mirror(s), team \(plan.team != nil), pvlan \(plan.hasPrivateVLANs), shaping \(plan.hasShaping), snooping \(plan.multicast != nil): \(forwards) forwards, \(stormDrops) storm drops, \(shapingDrops) shaping drops (\(shapingAnswers) shaping answers, \(egressShapingRefusals) egress refusals), \(pvlanDrops) pvlan drops, \(groupVerdicts) group/router verdicts, \(mirrored) mirror copies compared")
    }

    /// A frame repeated within one batch, where the datapath may reuse the decision before
    /// (`decisionIsReusable`), ends exactly as the same copies sent one batch each: on two
    /// datapaths with the same random plan and clock, the same frames reach every port in
    /// the same order, and every port's counters agree. Plans without mirrors, shaping or
    /// promiscuous ports half the time; several copies of a frame: known unicasts after the first.
    @Test(arguments: Array(0..<16))
    func repeatedFramesInOneBatchEndAsOneFramePerBatch(_ round: Int) throws {
        let seed = UInt64(0x5EED_1000 + round)
        var rng = SeededRandom(state: seed)
        let macs = (1...10).map { mac(UInt64($0)) }
        // No snooping: its memberships expire on the datapath's own once-a-second tick, which
        // the two datapaths' threads take at instants the test does not control.
        let (plan, offloads) = Self.randomPlan(&rng, macs: macs, plain: round % 2 == 0, snooping: false)
        let batchedPorts = try offloads.map { try MemoryPort(vnetHeaderSize: $0 ? 12 : 0) }
        let singlePorts = try offloads.map { try MemoryPort(vnetHeaderSize: $0 ? 12 : 0) }
        let batchedClock = ManualClock(), singleClock = ManualClock()
        let batched = try Datapath(switches: [SwitchRuntime(plan: plan, ports: batchedPorts)], clock: { batchedClock.now })
        let single = try Datapath(switches: [SwitchRuntime(plan: plan, ports: singlePorts)], clock: { singleClock.now })
        batched.start(); single.start()
        defer { batched.stop(); single.stop() }
        func settle(_ dp: Datapath, after batches: UInt64) {
            let deadline = Date().addingTimeInterval(5)
            while dp.withLock({ $0.batchesCompleted }) == batches && Date() < deadline { usleep(200) }
        }
        var repeated = 0
        for step in 0..<100 {
            let ms = Int64.random(in: 0...400, using: &rng)
            batchedClock.advance(milliseconds: ms); singleClock.advance(milliseconds: ms)
            let p = Int.random(in: 0..<plan.ports.count, using: &rng)
            let f = Self.randomFrame(&rng, plan: plan, port: p, vnet: offloads[p], macs: macs)
            let copies = Int.random(in: 1...4, using: &rng)
            let before = batched.withLock { $0.batchesCompleted }
            batchedPorts[p].inject(all: Array(repeating: f.header + f.bytes, count: copies))
            settle(batched, after: before)
            for _ in 0..<copies {
                let b = single.withLock { $0.batchesCompleted }
                singlePorts[p].inject(f.header + f.bytes)
                settle(single, after: b)
            }
            repeated += copies - 1
            let context = "seed \(seed) step \(step): \(copies) × a frame on \(plan.ports[p].name)"
            for q in 0..<plan.ports.count {
                let a = batchedPorts[q].takeWritten(), b = singlePorts[q].takeWritten()
                #expect(a == b, "\(context): \(plan.ports[q].name) got \(a.count) frame(s) from one batch, \(b.count) from one frame per batch")
            }
            let ca = batched.withLock { l in (0..<plan.ports.count).map { l.switches[0].counters(l).snapshot(port: $0) } }
            let cb = single.withLock { l in (0..<plan.ports.count).map { l.switches[0].counters(l).snapshot(port: $0) } }
            #expect(ca == cb, "\(context): counters differ: one batch \(ca), one frame per batch \(cb)")
        }
        let reused = batched.withLock { $0.reusedDecisions }
        // The other datapath reads one frame per batch: it never reuses a decision.
        #expect(single.withLock { $0.reusedDecisions } == 0)
        if round % 2 == 0 {
            // Plain plans: the test must reach the reused path it is about.
            #expect(reused > 0, "seed \(seed): no decision was reused in \(repeated) repeated frames")
        }
        print("reuse seed \(seed): \(plan.ports.count) ports, mirrors \(plan.mirrors.count), shaping \(plan.hasShaping), team \(plan.team != nil): \(repeated) repeated frames, \(reused) decisions reused")
    }
}
