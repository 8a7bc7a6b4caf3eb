import Core
import Foundation
import LinuxIO
import Model
import Wire

/// The receive side of the VXLAN overlay: a worker reads a batch of messages
/// from one underlay socket and hands each frame to the datapath as if it had arrived on its
/// tunnel port.
///
/// ```
///   recvmmsg ≤ 64 messages, each into its own 64 KiB slot; with UDP_GRO a message is a run
///   of datagrams of one sender, each `segments[i]` bytes (the last may be shorter):
///     slot: [VXLAN 8][dst 6][src 6][type…inner frame…] [VXLAN 8][dst][src][…] …
///   per datagram (no lock):
///     VXLAN header (Wire) → (source, VNI) → tunnel port and VLAN (Core's TunnelDemux)
///     → the tunnel form in place: the MACs move 4 bytes up into the VXLAN header and the
///       VLAN's tag takes their old last 4 bytes:
///           [VX 4][dst 6][src 6][8100 VLAN][type…]      frame = slot + 4
///     → consecutive TCP segments of one flow on one tunnel port coalesced into one GSO
///       frame (Wire.TCPCoalescer: payloads moved up behind the first segment's headers,
///       a virtio-net header beside), anything else a frame of its own
///   then (lock): decide and forward each frame, as from its tunnel port
/// ```
/// Nothing else is copied: frames are decided where the kernel put them. The parsing,
/// checksum checks and moves of coalescing happen before the datapath lock. Drops before a
/// port (unknown VTEP or VNI, a malformed header, a datagram cut by the buffer) are counted
/// on the endpoint; everything after is the tunnel port's (trunk rules, learning, split
/// horizon), counted on it like any port's. A coalesced frame counts as one received frame
/// on the tunnel port (as a guest's TSO frame does on its port); the endpoint counts
/// datagrams.
///
/// Who gets a coalesced frame: ports that take offloads (`PortPlan.acceptsOffloads`, every
/// guest port) get it whole, with its virtio-net header (GSO TCPV4/TCPV6, NEEDS_CSUM); any
/// other port gets the segments again, cut by the transmit list (`Wire.Segmentation`), byte
/// for byte what arrived. Captures on the tunnel port record the coalesced frame as it is
/// (as they record a guest's TSO frame).
extension Datapath {
    /// One batch from socket `queue` of underlay endpoint `e`. Called with `w.ioLock` held
    /// (so the endpoint's demultiplexer cannot change: `replaceSwitches` holds every I/O lock).
    func serviceUnderlay(_ w: DatapathWorker, endpoint e: Int, queue: Int) {
        guard e < underlays.count else { return }
        let ep = underlays[e]
        let rx = ep.receive[queue]
        let n = ep.socket.receive(queue: queue, rx.iov, count: ReceiveScratch.slots, sources: rx.sources, lengths: rx.lengths,
                                  segments: rx.segments)
        guard n > 0 else { return }
        let demux = ep.demux
        var run = TCPCoalescer()
        var runSwitch: Int32 = -1, runPort: Int32 = -1
        for i in 0..<n {
            let raw = rx.lengths[i]
            let length = Int(raw & 0x7FFF_FFFF)
            let slot = rx.area + i * ReceiveScratch.slotSize
            let slotEnd = slot + ReceiveScratch.slotSize
            if raw & 0x8000_0000 != 0 {
                rx.datagrams &+= 1; rx.bytes &+= UInt64(length)
                rx.drops[UnderlayDrop.oversize.rawValue] &+= 1
                continue
            }
            let step = rx.segments[i] > 0 ? Int(rx.segments[i]) : max(length, 1)
            var offset = 0
            while offset < length {
                let size = min(step, length - offset)
                let d = slot + offset
                offset += size
                rx.datagrams &+= 1
                rx.bytes &+= UInt64(size)
                let vni: UInt32
                switch VXLAN.decapsulate(udpPayload: UnsafeRawBufferPointer(start: d, count: size)) {
                case .refused(let r): rx.drops[UnderlayDrop(r).rawValue] &+= 1; continue
                case .frame(let f): vni = f.vni
                }
                let target: TunnelDemux.Target
                switch demux.lookup(high: rx.sources[i].hi, low: rx.sources[i].lo, vni: vni) {
                case .failure(let m): rx.drops[UnderlayDrop(m.miss).rawValue] &+= 1; continue
                case .success(let t): target = t
                }
                // The tunnel form in place: MACs up 4 bytes, the VNI's VLAN as the tag.
                (d + 4).copyMemory(from: d + 8, byteCount: 12)
                d.storeBytes(of: EtherType.vlan.bigEndian, toByteOffset: 16, as: UInt16.self)
                d.storeBytes(of: target.vlan.rawValue.bigEndian, toByteOffset: 18, as: UInt16.self)
                let frame = d + 4, frameLength = size - 4
                let s = Int32(target.switchIndex), p = Int32(target.port)
                if run.isOpen && s == runSwitch && p == runPort && run.append(frame, length: frameLength) { continue }
                if run.isOpen { finishRun(&run, rx, w, ep, switchIndex: runSwitch, port: runPort) }
                if rx.frameCount == ReceiveScratch.frameCapacity { deliverUnderlay(w, ep, rx) }
                if run.start(frame, length: frameLength, capacity: slotEnd - frame) {
                    runSwitch = s; runPort = p
                } else {
                    rx.add(frame, length: frameLength, switchIndex: s, port: p, header: -1)
                }
            }
        }
        if run.isOpen { finishRun(&run, rx, w, ep, switchIndex: runSwitch, port: runPort) }
        deliverUnderlay(w, ep, rx)
    }

    /// Ends `run` and puts its frame on `rx`'s list (with its virtio-net header when it holds
    /// more than one segment); delivers the list first when it is full.
    @inline(__always)
    private func finishRun(_ run: inout TCPCoalescer, _ rx: ReceiveScratch, _ w: DatapathWorker, _ ep: UnderlayEndpoint,
                           switchIndex: Int32, port: Int32) {
        if rx.frameCount == ReceiveScratch.frameCapacity { deliverUnderlay(w, ep, rx) }
        let h = rx.headerCount
        let segments = run.segments
        let out = run.finish(header: rx.headers + h * 16)
        guard let frame = out.frame else { return }
        if out.coalesced {
            rx.headerCount = h + 1
            rx.coalesced &+= 1
            rx.coalescedDatagrams &+= UInt64(segments)
        }
        rx.add(frame, length: out.length, switchIndex: switchIndex, port: port, header: out.coalesced ? Int32(h) : -1)
    }

    /// Decides and forwards the frames on `rx`'s list under the datapath lock, adds the
    /// batch's counts to the endpoint's, and empties the list. Called with `w.ioLock` held.
    func deliverUnderlay(_ w: DatapathWorker, _ ep: UnderlayEndpoint, _ rx: ReceiveScratch) {
        w.takeLock(lock)
        ep.rxPackets &+= rx.datagrams
        ep.rxBytes &+= rx.bytes
        for i in 0..<rx.drops.count where rx.drops[i] > 0 { ep.drops[i] &+= rx.drops[i]; rx.drops[i] = 0 }
        ep.rxCoalesced &+= rx.coalesced
        ep.rxCoalescedDatagrams &+= rx.coalescedDatagrams
        rx.datagrams = 0; rx.bytes = 0; rx.coalesced = 0; rx.coalescedDatagrams = 0
        let now = clock()
        w.frames &+= UInt64(rx.frameCount)
        var current = -1
        var sw: SwitchRuntime! = nil
        var plan: SwitchPlan! = nil
        var counters: PortCounters! = nil
        var flows: FlowAccounting? = nil
        var context: DecisionContext! = nil
        var reserve = 0
        for i in 0..<rx.frameCount {
            let s = Int(rx.frameSwitch[i]), port = Int(rx.framePort[i])
            guard s < switches.count else { ep.drop(.unknownVNI); continue }
            if s != current {
                if current >= 0 && w.tx.count > 0 { flush(w, sw, switchIndex: current) }
                current = s
                sw = switches[current]
                plan = sw.plan
                counters = sw.counters
                flows = sw.flows
                context = sw.context(now: now)
                w.egress.prepare(portCount: plan.ports.count)
                w.tx.prepare(portCount: plan.ports.count)
                reserve = plan.ports.count * (plan.hasMirrors ? 1 + plan.mirrorFanout : 1) + 1
            }
            guard port < plan.ports.count else { ep.drop(.unknownVNI); continue }
            if w.tx.count > 0 && w.tx.count + reserve > TransmitList.capacity {
                flush(w, sw, switchIndex: current)
                context = sw.context(now: now)
            }
            w.tx.frameStart = Int32(w.tx.count)
            let h = rx.frameHeader[i]
            let vnet = VNetHeader(h >= 0 ? UnsafeRawPointer(rx.headers + Int(h) * 16) : nil)
            forward(UnsafeRawBufferPointer(start: rx.frames[i], count: Int(rx.frameLength[i])), vnet: vnet, worker: w,
                    sw: sw, plan: plan, counters: counters, flows: flows, context: context, switchIndex: current, inPort: port)
        }
        if current >= 0 && w.tx.count > 0 { flush(w, sw, switchIndex: current) }
        w.batches &+= 1
        lock.unlock()
        rx.frameCount = 0
        rx.headerCount = 0
    }

    /// Every underlay endpoint's counters (receive side under the lock).
    public func underlayCounters() -> [UnderlayCounters] {
        withLock { _ in underlays.map { $0.counters() } }
    }
}

extension ReceiveScratch {
    /// Puts a frame on the list (room checked by the caller).
    @inline(__always)
    func add(_ frame: UnsafeMutableRawPointer, length: Int, switchIndex: Int32, port: Int32, header: Int32) {
        let k = frameCount
        frames[k] = frame
        frameLength[k] = Int32(length)
        frameSwitch[k] = switchIndex
        framePort[k] = port
        frameHeader[k] = header
        frameCount = k + 1
    }
}

extension Datapath {
    /// A frame in the tunnel form (`TunnelPeer`: MACs, the VLAN's tag, the rest), given as
    /// `count` (≤ 4) iovecs, written into `out` without bytes 12..<16: the inner frame as it
    /// travels inside VXLAN. Returns the number of iovecs written (≤ count + 1). What
    /// `capture --port TUNNEL` records.
    static func innerFrame(_ pieces: UnsafePointer<iovec>, _ count: Int, into out: UnsafeMutablePointer<iovec>) -> Int {
        var n = 0, offset = 0
        for i in 0..<count {
            let base = pieces[i].iov_base!, length = pieces[i].iov_len
            let start = offset, end = offset + length
            // The part before the tag, and the part after it.
            if start < 12 { let take = min(end, 12) - start; if take > 0 { out[n] = iovec(iov_base: base, iov_len: take); n += 1 } }
            if end > 16 {
                let from = max(start, 16)
                out[n] = iovec(iov_base: base + (from - start), iov_len: end - from); n += 1
            }
            offset = end
        }
        return n
    }
}
