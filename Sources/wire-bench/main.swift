// Micro-benchmark of the Wire module's per-frame work: the Internet checksum, checksum
// completion, software GSO of a 64 KiB TSO frame, VXLAN encapsulation and decapsulation, and
// the heap allocations each makes (counted by CMallocCounter's malloc wrapper: the budget
// is 0 per frame).
//
//   swift build -c release --product wire-bench && .build/release/wire-bench [SCENARIO...] [--iterations N] [--runs R]
//   wire-bench ring …   (an AF_PACKET ring with virtio-net headers under traffic: Ring.swift)
//
// SCENARIO: checksum, complete, segment, vxlan (default: all). Each measurement runs R
// times (default 5) over N iterations and prints the median and best ns per operation;
// `--only TEXT` keeps the measurements whose name contains TEXT. For exact instruction
// counts run one measurement under callgrind and divide the total by the iterations, e.g.
//   valgrind --tool=callgrind .build/release/wire-bench segment --only writev --iterations 1000 --runs 1
// (and once with --iterations 0-ish baseline: `--iterations 1`, to subtract the setup).
import CMallocCounter
import Glibc
import Model
import Wire

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "ring" { ringMain(Array(CommandLine.arguments.dropFirst(2))) }

var scenarios: [String] = []
var iterations = 0
var runs = 5
var only = ""
do {
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--iterations": iterations = Int(args.popFirst() ?? "") ?? 0
        case "--runs": runs = max(1, Int(args.popFirst() ?? "") ?? runs)
        case "--only": only = args.popFirst() ?? ""
        case "checksum", "complete", "segment", "coalesce", "vxlan": scenarios.append(a)
        default:
            print("usage: wire-bench [checksum|complete|segment|coalesce|vxlan]... [--iterations N] [--runs R] [--only TEXT]")
            exit(2)
        }
    }
    if scenarios.isEmpty { scenarios = ["checksum", "complete", "segment", "coalesce", "vxlan"] }
}

func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Keeps results alive so the optimiser cannot drop the measured work.
var sink: UInt64 = 0

/// An optimisation barrier: the optimiser cannot see through it, so work on its result
/// is neither hoisted out of the measured loop nor folded away.
@_optimize(none) func opaque<T>(_ x: T) -> T { x }

/// A number with `decimals` digits after the point (no Foundation here).
func format(_ v: Double, _ decimals: Int) -> String {
    let m = (0..<decimals).reduce(1.0) { r, _ in r * 10 }
    let x = (v * m).rounded() / m
    var s = String(x)
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        if have < decimals { s += String(repeating: "0", count: decimals - have) }
    }
    return s
}
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

/// Runs `body` `count` times per run, `runs` runs; prints ns per operation (median, best)
/// and the heap allocations per operation over all runs.
@MainActor func report(_ name: String, count: Int, unit: String = "op", _ body: () -> UInt64) {
    guard only.isEmpty || name.contains(only) else { return }
    var times: [Double] = []
    let before = cmc_allocations()
    for _ in 0..<runs {
        let start = nanoseconds()
        var acc: UInt64 = 0
        for _ in 0..<count { acc &+= body() }
        times.append(Double(nanoseconds() - start) / Double(count))
        sink &+= acc
    }
    let allocations = Double(cmc_allocations() - before) / Double(count * runs)
    times.sort()
    print("\(pad(name, 46)) median \(lpad(format(times[times.count / 2], 1), 9)) ns/\(unit), best \(lpad(format(times[0], 1), 9)); allocations/\(unit) \(format(allocations, 3))")
}

/// Ethernet / IPv4 / TCP (timestamps) with `payload` bytes, checksum partial (seeded).
func tcpFrame(payload: Int, tagged: Bool = false) -> [UInt8] {
    var f: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]
    if tagged { f += [0x81, 0x00, 0x00, 10] }
    f += [0x08, 0x00]
    var ip: [UInt8] = [0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
    let total = 20 + 32 + payload
    ip[2] = UInt8(total >> 8); ip[3] = UInt8(total & 0xFF)
    var tcp: [UInt8] = [0x9C, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x80, 0x18, 0x01, 0xF6, 0, 0, 0, 0,
                        1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]
    let seed = InternetChecksum.pseudoHeaderSum(ipv4Source: 0x0A00_0001, destination: 0x0A00_0002, protocol: 6, length: 32 + payload)
    tcp[16] = UInt8(seed >> 8); tcp[17] = UInt8(seed & 0xFF)
    f += ip + tcp + (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    return f
}

if scenarios.contains("checksum") {
    let n = iterations > 0 ? iterations : 2_000_000
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65_536 + 64, alignment: 64)
    for i in 0..<(65_536 + 64) { buffer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 13), toByteOffset: i, as: UInt8.self) }
    report("checksum 1500 B (aligned)", count: n) { UInt64(InternetChecksum.sum(opaque(buffer), count: 1500)) }
    report("checksum 1500 B (offset 1)", count: n) { UInt64(InternetChecksum.sum(opaque(buffer) + 1, count: 1500)) }
    report("checksum 64 B", count: n) { UInt64(InternetChecksum.sum(opaque(buffer), count: 64)) }
    report("checksum 64 KiB", count: max(1, n / 40)) { UInt64(InternetChecksum.sum(opaque(buffer), count: 65_536)) }
    buffer.deallocate()
}

if scenarios.contains("complete") {
    let n = iterations > 0 ? iterations : 2_000_000
    var frame = tcpFrame(payload: 1448)
    let header = VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, csumStart: 34, csumOffset: 16)
    frame.withUnsafeMutableBytes { raw in
        let seed = raw.load(fromByteOffset: 50, as: UInt16.self)
        report("complete partial checksum, 1514 B frame", count: n) {
            raw.storeBytes(of: seed, toByteOffset: 50, as: UInt16.self)   // partial again
            return ChecksumCompletion.complete(opaque(raw), header: header) == nil ? 1 : 0
        }
        report("completion value (no write), 1514 B frame", count: n) {
            if case .store(_, let v) = ChecksumCompletion(frame: opaque(UnsafeRawBufferPointer(raw)), header: header) { return UInt64(v) }
            return 0
        }
    }
}

if scenarios.contains("segment") {
    let n = iterations > 0 ? iterations : 20_000
    // 64 KiB TSO frame: 45 segments of 1448 bytes (+ a last shorter one).
    let payload = 65_535 - 20 - 32
    let frame = tcpFrame(payload: payload)
    let header = VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, gsoType: VirtioNetHeader.gsoTCPv4, hdrLen: 66,
                                 gsoSize: 1448, csumStart: 34, csumOffset: 16)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: 64 * TransportLayout.maximumHeaderLength, alignment: 64)
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
    frame.withUnsafeBytes { raw in
        guard case .segments(let probe) = Segmentation.plan(frame: raw, header: header) else { fatalError("plan") }
        print("segment: \(frame.count)-byte TSO frame, gso_size 1448 → \(probe.segmentCount) segments")
        report("segment 64 KiB TSO, writev (headers only)", count: n, unit: "frame") {
            guard case .segments(let plan) = Segmentation.plan(frame: opaque(raw), header: header) else { return 0 }
            var acc: UInt64 = 0
            for i in 0..<plan.segmentCount {
                let s = plan.header(ofSegment: i, into: scratch + (i & 63) * TransportLayout.maximumHeaderLength)
                acc &+= UInt64(s.payloadSum)
            }
            return acc
        }
        report("segment 64 KiB TSO, contiguous copies", count: n, unit: "frame") {
            guard case .segments(let plan) = Segmentation.plan(frame: opaque(raw), header: header) else { return 0 }
            var acc: UInt64 = 0
            for i in 0..<plan.segmentCount { acc &+= UInt64(plan.write(segment: i, into: out)) }
            return acc
        }
        report("plan only (validation, parse)", count: n * 20, unit: "frame") {
            if case .segments(let plan) = Segmentation.plan(frame: opaque(raw), header: header) { return UInt64(plan.segmentCount) }
            return 0
        }
    }
    let udp: [UInt8] = {
        var f = tcpFrame(payload: 0)
        f = Array(f[0..<34])
        f[23] = 17
        let len = 8 + 63_000
        f[16] = UInt8((20 + len) >> 8); f[17] = UInt8((20 + len) & 0xFF)
        f += [0x30, 0x39, 0x00, 0x09, UInt8(len >> 8), UInt8(len & 0xFF), 0, 0] + [UInt8](repeating: 0x42, count: 63_000)
        return f
    }()
    let uso = VirtioNetHeader(flags: 1, gsoType: VirtioNetHeader.gsoUDPL4, gsoSize: 1400, csumStart: 34, csumOffset: 6)
    udp.withUnsafeBytes { raw in
        report("segment 63 KB USO (45 datagrams), writev", count: n, unit: "frame") {
            guard case .segments(let plan) = Segmentation.plan(frame: opaque(raw), header: uso) else { return 0 }
            var acc: UInt64 = 0
            for i in 0..<plan.segmentCount { acc &+= UInt64(plan.header(ofSegment: i, into: scratch).payloadSum) }
            return acc
        }
    }
    scratch.deallocate()
    out.deallocate()
}

if scenarios.contains("coalesce") {
    // The overlay's receive side: the 45 segments of a 64 KiB TSO frame, laid out
    // as a UDP_GRO buffer lays out VXLAN datagrams, coalesced back into one GSO frame in
    // place (checksums verified, payloads moved). Coalescing is destructive, so each round
    // first restores the buffer from a template; "restore only" is that copy alone.
    let n = iterations > 0 ? iterations : 20_000
    let payload = 65_535 - 20 - 32
    let frame = tcpFrame(payload: payload)
    let header = VirtioNetHeader(flags: VirtioNetHeader.flagNeedsCsum, gsoType: VirtioNetHeader.gsoTCPv4, hdrLen: 66,
                                 gsoSize: 1448, csumStart: 34, csumOffset: 16)
    let size = 80_000
    let template = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let work = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let vnet = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    var offsets: [Int] = [], lengths: [Int] = []
    frame.withUnsafeBytes { raw in
        guard case .segments(let plan) = Segmentation.plan(frame: raw, header: header) else { fatalError("plan") }
        var o = 0
        for i in 0..<plan.segmentCount {
            o += 8
            let k = plan.write(segment: i, into: UnsafeMutableRawBufferPointer(start: template + o, count: size - o))
            offsets.append(o); lengths.append(k); o += k
        }
    }
    let used = offsets.last! + lengths.last!
    print("coalesce: \(offsets.count) segments of a \(frame.count)-byte TSO frame in \(used) bytes")
    report("restore only (\(used)-byte copy)", count: n, unit: "frame") {
        work.copyMemory(from: opaque(template), byteCount: used)
        return UInt64(work.load(as: UInt8.self))
    }
    report("coalesce \(offsets.count) segments into one GSO frame (+ restore)", count: n, unit: "frame") {
        work.copyMemory(from: opaque(template), byteCount: used)
        var c = TCPCoalescer()
        guard c.start(work + offsets[0], length: lengths[0], capacity: size - offsets[0]) else { return 0 }
        for i in 1..<offsets.count where !c.append(work + offsets[i], length: lengths[i]) { break }
        return UInt64(c.finish(header: vnet).length)
    }
    template.deallocate(); work.deallocate(); vnet.deallocate()
}

if scenarios.contains("vxlan") {
    let n = iterations > 0 ? iterations : 2_000_000
    let inner = tcpFrame(payload: 1400, tagged: true)
    let v4 = VXLANEncapsulation(source: UnderlayAddress("192.0.2.1")!, destination: UnderlayAddress("192.0.2.2")!)
    let v6 = VXLANEncapsulation(source: UnderlayAddress("2001:db8::1")!, destination: UnderlayAddress("2001:db8::2")!)
    let out = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
    var packet = [UInt8]()
    inner.withUnsafeBytes { raw in
        report("flow hash of a tagged TCP frame", count: n) { UInt64(FlowHash.of(opaque(raw))) }
        var id: UInt16 = 0
        report("VXLAN/IPv4 outer headers (+ hash)", count: n) {
            id &+= 1
            return UInt64(v4.write(to: opaque(out), vni: 5010, innerLength: raw.count, flowHash: FlowHash.of(opaque(raw)), ipv4ID: id))
        }
        report("VXLAN/IPv6 outer headers (+ hash, UDP csum)", count: n) {
            let sum = InternetChecksum.sum(opaque(raw))
            return UInt64(v6.write(to: opaque(out), vni: 5010, innerLength: raw.count, flowHash: FlowHash.of(opaque(raw)), innerSum: sum))
        }
        let h = v4.write(to: out, vni: 5010, innerLength: raw.count, flowHash: 1, ipv4ID: 1)
        packet = Array(UnsafeRawBufferPointer(start: out, count: h)) + inner
    }
    packet.withUnsafeBytes { raw in
        report("decapsulate IPv4 packet (checksums verified)", count: n) {
            if case .frame(let d) = VXLAN.decapsulate(ipPacket: opaque(raw), verifyingChecksums: true) { return UInt64(d.vni) }
            return 0
        }
        let payload = UnsafeRawBufferPointer(rebasing: raw[28...])
        report("decapsulate UDP payload", count: n) {
            if case .frame(let d) = VXLAN.decapsulate(udpPayload: opaque(payload)) { return UInt64(d.vni) }
            return 0
        }
    }
    out.deallocate()
}
print("(sink \(sink & 0xFF))")
