// `wire-bench ring`: reads an AF_PACKET ring with virtio-net headers for a while and reports
// what arrived and what reading it cost — the measurement behind the ring choice for GRO'd
// frames. Run inside the namespace that holds the link, with traffic flowing
// (Scripts/bench/offload-ring.sh sets that up):
//
//   wire-bench ring --interface IF --ring v2copy|v2big|v3 [--seconds S] [--finish]
//
// v2copy: TPACKET_V2, 2 KiB slots (4096 of them), oversize frames whole through the socket
//         queue (PACKET_COPY_THRESH, 16 MiB);
// v2big:  TPACKET_V2, 68 KiB slots (256 of them: 17 MiB), every frame in its slot;
// v3:     TPACKET_V3, 64 blocks of 256 KiB (16 MiB), frames packed, 1 ms block timeout.
// --finish also runs what the datapath does for an egress without offloads: Segmentation
// of GSO frames (headers into scratch, writev model) and ChecksumCompletion of the others.
import Glibc
import LinuxIO
import Wire

func ringMain(_ arguments: [String]) -> Never {
    var interface = "", ring = "v2copy", seconds = 5.0, finish = false
    var args = arguments[...]
    while let a = args.popFirst() {
        switch a {
        case "--interface": interface = args.popFirst() ?? ""
        case "--ring": ring = args.popFirst() ?? ""
        case "--seconds": seconds = Double(args.popFirst() ?? "") ?? seconds
        case "--finish": finish = true
        default: print("usage: wire-bench ring --interface IF --ring v2copy|v2big|v3 [--seconds S] [--finish]"); exit(2)
        }
    }
    let configuration: PacketSocket.Configuration
    let memory: Int
    switch ring {
    case "v2copy":
        configuration = .init(blockSize: 128 * 1024, blockCount: 64, frameSize: 2048, perFrameWakeups: true,
                               vnetHeaderSize: 12, copyOversizeFrames: true, copyQueueBytes: 16 << 20)
        memory = 128 * 1024 * 64
    case "v2big":
        configuration = .init(blockSize: 69_632, blockCount: 256, frameSize: 69_632, perFrameWakeups: true, vnetHeaderSize: 12)
        memory = 69_632 * 256
    case "v3":
        configuration = .init(blockSize: 256 * 1024, blockCount: 64, frameSize: 2048, vnetHeaderSize: 12)
        memory = 256 * 1024 * 64
    default:
        print("ring: unknown ring \(ring)"); exit(2)
    }
    let port: PacketSocket
    do { port = try PacketSocket(interface: interface, configuration: configuration) } catch {
        print("ring: \(error)"); exit(1)
    }
    let ep: Epoll
    do { ep = try Epoll(); try ep.add(port.pollFD, events: Epoll.readable, data: 1) } catch { print("ring: \(error)"); exit(1) }
    var events = [EpollEvent](repeating: EpollEvent(), count: 4)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 64)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: 64 * TransportLayout.maximumHeaderLength, alignment: 64)
    var frames = 0, bytes = 0, segments = 0, refused = 0
    var checksums: UInt64 = 0   // read back, so the optimiser cannot drop the work
    let start = nanoseconds()
    let end = start + UInt64(seconds * 1e9)
    var first: UInt64 = 0, last: UInt64 = 0
    while nanoseconds() < end {
        switch port.read(into: buffer) {
        case .bytes(let n):
            if first == 0 { first = nanoseconds() }
            last = nanoseconds()
            frames += 1
            bytes += n - 12
            guard finish else { continue }
            let header = VirtioNetHeader(loading: buffer.baseAddress!)
            let frame = UnsafeRawBufferPointer(start: buffer.baseAddress! + 12, count: n - 12)
            if header.isGSO {
                switch Segmentation.plan(frame: frame, header: header) {
                case .segments(let plan):
                    for i in 0..<plan.segmentCount {
                        let slot = scratch + (i & 63) * TransportLayout.maximumHeaderLength
                        let seg = plan.header(ofSegment: i, into: slot)
                        checksums &+= UInt64(seg.payloadSum) &+ UInt64(slot.load(fromByteOffset: seg.headerLength - 2, as: UInt8.self))
                    }
                    segments += plan.segmentCount
                case .refused: refused += 1
                }
            } else {
                switch ChecksumCompletion(frame: frame, header: header) {
                case .refused: refused += 1
                case .store(_, let v): checksums &+= UInt64(v); segments += 1
                case .notNeeded: segments += 1
                }
            }
        case .wouldBlock:
            _ = try? events.withUnsafeMutableBufferPointer { try ep.wait(into: $0, timeoutMilliseconds: 50) }
        case .failed(let e):
            print("ring: read failed: \(e)"); exit(1)
        }
    }
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    let cpu = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    let drops = (try? port.stats())?.drops ?? 0
    let active = Double(last &- first) / 1e9
    let gigabytes = Double(bytes) / 1e9
    let gbits = active > 0 ? gigabytes * 8 / active : 0
    let perGB = gigabytes > 0 ? cpu / gigabytes : 0
    var line = "ring \(ring)\(finish ? "+finish" : ""): \(frames) frames (GSO \(port.gsoFrames), "
    line += "via socket queue \(port.copiedFrames)), \(format(gigabytes, 2)) GB in \(format(active, 2)) s = \(format(gbits, 2)) Gb/s; "
    line += "kernel drops \(drops), truncated \(port.truncatedFrames), missing copies \(port.missingCopies); "
    line += "reader CPU \(format(cpu, 2)) s (\(format(perGB, 3)) s/GB); ring \(memory >> 20) MiB"
    if finish { line += "; finished into \(segments) wire frames, \(refused) refused (\(checksums & 0xF))" }
    print(line)
    exit(0)
}
