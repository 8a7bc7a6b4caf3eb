import Core
import LinuxIO
import Model
#if canImport(Glibc)
import Glibc
#endif

/// One frame copy on a worker's transmit list.
struct TxEntry {
    static let pending: Int16 = -1
    static let sent: Int16 = -2
    static let skipped: Int16 = -3
    var port: Int32
    /// Frame pieces after the vnet header iovec (1–3).
    var pieces: Int32
    /// Bytes on the wire (counted as sent).
    var length: Int32
    /// -1, or the entry that must have been sent for this one to go (an egress mirror copy).
    var after: Int32
    /// The first entry of this entry's frame (entries of one frame are contiguous).
    var frameStart: Int32
    /// The frame's VLAN (for capture filters).
    var vlan: VLANID
    /// The frame's own egress (capture sessions see it), not a mirror copy.
    var captured: Bool
    /// `pending`, `sent`, `skipped`, or a `DropReason` raw value.
    var outcome: Int16
}

/// A worker's transmit list: the frame copies a batch decided, as iovecs over the frames in
/// the worker's receive area, written after the datapath lock is let go.
///
/// Each copy is an iovec: `[0]` the virtio-net header (for ports that take one), `[1...]`
/// the frame as 1–3 pieces (MACs, pushed tag, rest), so neither a tag push nor a pop copies
/// the payload. A GSO frame crosses the switch whole, its header adjusted when a tag moves
/// the L3 offsets. Allocated once.
final class TransmitList {
    /// Frame copies on the list before it is flushed.
    static let capacity = 4096

    /// 4 per entry: vnet header, then up to 3 frame pieces.
    let iov: UnsafeMutablePointer<iovec>
    /// 16 bytes per entry: a rewritten (or zero) vnet header at 0, a pushed tag at 12.
    let scratch: UnsafeMutableRawPointer
    let entries: UnsafeMutablePointer<TxEntry>
    var count = 0
    /// Where the current frame's entries begin.
    var frameStart: Int32 = 0
    /// Per port, the flush round that last wrote to it (`flush(queue:)` once per port).
    private var touched: UnsafeMutablePointer<UInt32>
    private var touchedCapacity = 64
    private var round: UInt32 = 0

    init() {
        iov = .allocate(capacity: 4 * TransmitList.capacity)
        scratch = .allocate(byteCount: 16 * TransmitList.capacity, alignment: 16)
        entries = .allocate(capacity: TransmitList.capacity)
        touched = .allocate(capacity: touchedCapacity)
        touched.initialize(repeating: 0, count: touchedCapacity)
    }

    deinit { iov.deallocate(); scratch.deallocate(); entries.deallocate(); touched.deallocate() }

    /// Makes room for a switch of `portCount` ports (allocates only for a bigger switch than
    /// any before; once per batch).
    func prepare(portCount: Int) {
        guard portCount > touchedCapacity else { return }
        touched.deallocate()
        touchedCapacity = max(portCount, touchedCapacity * 2)
        touched = .allocate(capacity: touchedCapacity)
        touched.initialize(repeating: 0, count: touchedCapacity)
        round = 0
    }

    /// Puts one copy of `frame` (rewritten by `rewrite`, identity = as received) for `port` on
    /// the list; returns its index, or -1 when the list is full (the caller counts it).
    @inline(__always)
    func append(port: Int, frame base: UnsafeMutableRawPointer, count frameLength: Int, vnet: VNetHeader, rewrite rw: EgressRewrite,
                vlan: VLANID, captured: Bool, after: Int32) -> Int32 {
        let k = count
        guard k < TransmitList.capacity else { return -1 }
        count = k + 1
        let iov = self.iov + 4 * k
        let scratch = self.scratch + 16 * k
        var pieces = 1, length = frameLength, delta = 0
        if !rw.isIdentity {
            iov[1] = iovec(iov_base: base, iov_len: 12)
            if let tag = rw.push {
                scratch.storeBytes(of: tag.tpid.bigEndian, toByteOffset: 12, as: UInt16.self)
                scratch.storeBytes(of: tag.tci.bigEndian, toByteOffset: 14, as: UInt16.self)
                iov[2] = iovec(iov_base: scratch + 12, iov_len: 4)
                pieces = 2
                length += 4
                delta = 4
            }
            iov[pieces + 1] = iovec(iov_base: base + 12 + rw.strip, iov_len: frameLength - 12 - rw.strip)
            pieces += 1
            length -= rw.strip
            delta -= rw.strip
        } else {
            iov[1] = iovec(iov_base: base, iov_len: frameLength)
        }
        if let h = vnet.raw {
            if delta == 0 {
                iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: h), iov_len: VNetHeader.size)
            } else {
                scratch.copyMemory(from: h, byteCount: VNetHeader.size)
                VNetHeader.shift(scratch, by: delta)
                iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
            }
        } else {
            // From a port without vnet header: a plain frame, fully checksummed.
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: VNetHeader.size)
            iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
        }
        entries[k] = TxEntry(port: Int32(port), pieces: Int32(pieces), length: Int32(length), after: after, frameStart: frameStart,
                             vlan: vlan, captured: captured, outcome: TxEntry.pending)
        return Int32(k)
    }

    /// Whether an egress mirror copy of the same frame (entries `from..<before`) already
    /// went to `port`.
    func mirrorCopySent(to port: Int32, before k: Int, from start: Int) -> Bool {
        for j in start..<k where entries[j].after >= 0 && entries[j].port == port && entries[j].outcome == TxEntry.sent { return true }
        return false
    }

    /// Writes every entry through queue `queue` of its port (worker `worker`'s queue), then
    /// ends the batch on each port written (`PortIO.flush`). No lock: the I/O lock of the
    /// worker is held, the datapath lock is not.
    func transmit(through sw: SwitchRuntime, worker: Int) {
        round &+= 1
        if round == 0 { touched.update(repeating: 0, count: touchedCapacity); round = 1 }
        var firstTouched = -1
        for k in 0..<count {
            let e = entries[k]
            if e.after >= 0 {
                // An egress mirror copy: only if its frame went out, and only the first such
                // copy of this frame for this destination.
                if entries[Int(e.after)].outcome != TxEntry.sent || mirrorCopySent(to: e.port, before: k, from: Int(e.frameStart)) {
                    entries[k].outcome = TxEntry.skipped
                    continue
                }
            }
            let p = Int(e.port)
            let io = sw.ports[p]
            let iov = self.iov + 4 * k
            let queue = worker % io.queueCount
            let result = io.txVNetHeaderSize > 0 ? io.writev(queue: queue, iov, count: e.pieces + 1)
                                                 : io.writev(queue: queue, iov + 1, count: e.pieces)
            switch result {
            case .bytes: entries[k].outcome = TxEntry.sent
            case .wouldBlock: entries[k].outcome = Int16(DropReason.transmitQueueFull.rawValue)
            case .failed: entries[k].outcome = Int16(DropReason.transmitError.rawValue)
            }
            if p < touchedCapacity && touched[p] != round {
                touched[p] = round
                if firstTouched < 0 { firstTouched = k }
            }
        }
        guard firstTouched >= 0 else { return }
        // Each port written once more: end its batch (a virtqueue notifies its guest here).
        round &+= 1
        if round == 0 { touched.update(repeating: 0, count: touchedCapacity); round = 1 }
        for k in firstTouched..<count {
            let p = Int(entries[k].port)
            guard entries[k].outcome == TxEntry.sent, p < touchedCapacity, touched[p] != round else { continue }
            touched[p] = round
            let io = sw.ports[p]
            io.flush(queue: worker % io.queueCount)
        }
    }
}
