import CLinux
import Core
import Foundation
import LinuxIO
import Model
import Wire

/// The receive side of the VXLAN overlay (issue 17): a worker reads a batch of datagrams
/// from one underlay socket and hands each frame to the datapath as if it had arrived on its
/// tunnel port.
///
/// ```
///   recvmmsg ≤ 64, each datagram scattered so the inner frame's tag slot is free:
///     slot: [VXLAN 8][dst 6][src 6][ 4 free ][rest of the inner frame …]
///            iov[2i] = slot+0 ..< slot+20,  iov[2i+1] = slot+24 ..< slot+16384  (no lock)
///   per datagram: VXLAN header (Wire) → (source, VNI) → tunnel port and VLAN (Core's
///   TunnelDemux) → the tag for the VLAN written into the free slot → forward, as from a
///   tunnel port: [dst][src][8100 VLAN][rest], the tunnel's frame form  (lock)
/// ```
/// Nothing is copied: the inner frame is decided where the kernel put it. Drops before a
/// port (unknown VTEP or VNI, a malformed header, a datagram cut by the buffer) are counted
/// on the endpoint; everything after is the tunnel port's (trunk rules, learning, split
/// horizon), counted on it like any port's.
extension Datapath {
    /// Bytes per datagram slot in the worker's area (64 of them fill 1 MiB): the largest
    /// inner frame a switch takes (MTU 9216, Ethernet header, two tags) plus the VXLAN header
    /// fits with room to spare.
    static let underlaySlot = 16384

    /// One batch from socket `queue` of underlay endpoint `e`. Called with `w.ioLock` held.
    func serviceUnderlay(_ w: DatapathWorker, endpoint e: Int, queue: Int) {
        guard e < underlays.count else { return }
        let ep = underlays[e]
        let rx = ep.receive[queue]
        let slots = min(UnderlaySocket.batch, DatapathWorker.areaSize / Datapath.underlaySlot)
        for i in 0..<slots {
            let slot = w.area + i * Datapath.underlaySlot
            rx.iov[2 * i] = iovec(iov_base: slot, iov_len: 20)
            rx.iov[2 * i + 1] = iovec(iov_base: slot + 24, iov_len: Datapath.underlaySlot - 24)
        }
        let n = ep.socket.receive(queue: queue, rx.iov, count: slots, sources: rx.sources, lengths: rx.lengths)
        guard n > 0 else { return }
        let waitStart = monotonicNanoseconds()
        lock.lock()
        w.noteLockWait(since: waitStart)
        let now = clock()
        w.frames &+= UInt64(n)
        var current = -1
        var sw: SwitchRuntime! = nil
        var plan: SwitchPlan! = nil
        var counters: PortCounters! = nil
        var flows: FlowAccounting? = nil
        var context: DecisionContext! = nil
        var reserve = 0
        let demux = ep.demux
        for i in 0..<n {
            let raw = rx.lengths[i]
            let length = Int(raw & 0x7FFF_FFFF)
            ep.rxPackets &+= 1
            ep.rxBytes &+= UInt64(length)
            if raw & 0x8000_0000 != 0 { ep.drop(.oversize); continue }
            let slot = w.area + i * Datapath.underlaySlot
            let vni: UInt32
            switch VXLAN.decapsulate(udpPayload: UnsafeRawBufferPointer(start: slot, count: length)) {
            case .refused(let r): ep.drop(UnderlayDrop(r)); continue
            case .frame(let d): vni = d.vni
            }
            let target: TunnelDemux.Target
            switch demux.lookup(high: rx.sources[i].hi, low: rx.sources[i].lo, vni: vni) {
            case .failure(let m): ep.drop(UnderlayDrop(m.miss)); continue
            case .success(let t): target = t
            }
            guard target.switchIndex < switches.count else { ep.drop(.unknownVNI); continue }
            if target.switchIndex != current {
                if current >= 0 && w.tx.count > 0 { flush(w, sw, switchIndex: current) }
                current = target.switchIndex
                sw = switches[current]
                plan = sw.plan
                counters = sw.counters
                flows = sw.flows
                context = sw.context(now: now)
                w.egress.prepare(portCount: plan.ports.count)
                w.tx.prepare(portCount: plan.ports.count)
                reserve = plan.ports.count * (plan.hasMirrors ? 1 + plan.mirrorFanout : 1) + 1
            }
            guard target.port < plan.ports.count else { ep.drop(.unknownVNI); continue }
            // The VNI's VLAN as the tunnel form's tag, in the free slot after the MACs.
            slot.storeBytes(of: EtherType.vlan.bigEndian, toByteOffset: 20, as: UInt16.self)
            slot.storeBytes(of: target.vlan.rawValue.bigEndian, toByteOffset: 22, as: UInt16.self)
            if w.tx.count > 0 && w.tx.count + reserve > TransmitList.capacity {
                flush(w, sw, switchIndex: current)
                context = sw.context(now: now)
            }
            w.tx.frameStart = Int32(w.tx.count)
            forward(UnsafeRawBufferPointer(start: slot + 8, count: length - 8 + 4), vnet: VNetHeader(nil), worker: w,
                    sw: sw, plan: plan, counters: counters, flows: flows, context: context, switchIndex: current, inPort: target.port)
        }
        if current >= 0 && w.tx.count > 0 { flush(w, sw, switchIndex: current) }
        w.batches &+= 1
        lock.unlock()
    }

    /// Every underlay endpoint's counters (receive side under the lock).
    public func underlayCounters() -> [UnderlayCounters] {
        withLock { _ in underlays.map { $0.counters() } }
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
