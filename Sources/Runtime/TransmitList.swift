import Core
import LinuxIO
import Model
import Wire
#if canImport(Glibc)
import Glibc  // types and constants (iovec, errno values, signals); calls go through LinuxIO
#endif

/// One frame copy on a worker's transmit list.
struct TxEntry {
    static let pending: Int16 = -1
    static let sent: Int16 = -2
    static let skipped: Int16 = -3
    var port: Int32
    /// Frame pieces after the vnet header iovec (1–5).
    var pieces: Int32
    /// Bytes on the wire (counted as sent).
    var length: Int32
    /// -1, or the entry that must have been sent for this one to go (an egress mirror copy).
    var after: Int32
    /// The first entry of this entry's frame (entries of one frame are contiguous).
    var frameStart: Int32
    /// A segment after the first of a copy finished in software: the first segment's entry,
    /// whose fate it shares (a skipped mirror copy skips all its segments); -1 otherwise.
    var lead: Int32 = -1
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
/// the frame as pieces (MACs, pushed tag, rest), so neither a tag push nor a pop copies the
/// payload. A GSO frame crosses the switch whole, its header's offsets moved when a tag is
/// pushed or popped. For a port that cannot take offloads (`EgressItem.finishOffload`) the
/// frame is finished in software (`appendFinished`): a GSO frame becomes one entry per
/// wire segment — its rewritten headers in a 256-byte slot of `headers`, then a slice of
/// the original payload — and a partial checksum is completed through a 2-byte piece in the
/// entry's scratch, so the received frame itself never changes (other copies may leave
/// whole). Allocated once.
final class TransmitList {
    /// Frame copies on the list before it is flushed.
    static let capacity = 4096
    /// iovecs per entry: vnet header, then up to 5 frame pieces.
    static let iovPerEntry = 6
    /// Scratch bytes per entry: a rewritten (or zero) vnet header at 0, a pushed tag at 12,
    /// a finished checksum at 16.
    static let scratchPerEntry = 32
    /// Bytes of rewritten headers per segment entry (`Wire.TransportLayout.maximumHeaderLength`).
    static let headerSlot = 256

    let iov: UnsafeMutablePointer<iovec>
    let scratch: UnsafeMutableRawPointer
    /// One header slot per entry, for segments.
    let headers: UnsafeMutableRawPointer
    let entries: UnsafeMutablePointer<TxEntry>
    var count = 0
    /// Where the current frame's entries begin.
    var frameStart: Int32 = 0
    /// Per port, the flush round that last wrote to it (`flush(queue:)` once per port).
    private var touched: UnsafeMutablePointer<UInt32>
    private var touchedCapacity = 64
    private var round: UInt32 = 0
    /// The gated ports (`PortIO.accessGate`) this batch holds, ascending (`transmit`).
    private var held: UnsafeMutablePointer<Int32>
    /// One run of writes to a port (`transmit`): each entry's piece count, then its outcome.
    private let runPieces: UnsafeMutablePointer<Int32>
    private let runResults: UnsafeMutablePointer<IOResult>

    init() {
        iov = .allocate(capacity: TransmitList.iovPerEntry * TransmitList.capacity)
        scratch = .allocate(byteCount: TransmitList.scratchPerEntry * TransmitList.capacity, alignment: 16)
        headers = .allocate(byteCount: TransmitList.headerSlot * TransmitList.capacity, alignment: 64)
        entries = .allocate(capacity: TransmitList.capacity)
        touched = .allocate(capacity: touchedCapacity)
        touched.initialize(repeating: 0, count: touchedCapacity)
        held = .allocate(capacity: touchedCapacity)
        runPieces = .allocate(capacity: TransmitList.capacity)
        runResults = .allocate(capacity: TransmitList.capacity)
        runResults.initialize(repeating: .wouldBlock, count: TransmitList.capacity)
    }

    deinit {
        iov.deallocate(); scratch.deallocate(); headers.deallocate(); entries.deallocate(); touched.deallocate(); held.deallocate()
        runPieces.deallocate(); runResults.deallocate()
    }

    /// Makes room for a switch of `portCount` ports (allocates only for a bigger switch than
    /// any before; once per batch).
    func prepare(portCount: Int) {
        guard portCount > touchedCapacity else { return }
        touched.deallocate()
        held.deallocate()
        touchedCapacity = max(portCount, touchedCapacity * 2)
        touched = .allocate(capacity: touchedCapacity)
        touched.initialize(repeating: 0, count: touchedCapacity)
        held = .allocate(capacity: touchedCapacity)
        round = 0
    }

    /// Free entries.
    var room: Int { TransmitList.capacity - count }

    /// Fills `iov` pieces for `[start ..< end)` of a frame rewritten by `rw`: the MACs,
    /// the pushed tag (from `scratch`), the rest after the stripped tag. Returns the pieces
    /// written and the bytes they hold. `start` is 0 or later; pieces before 12 + strip are
    /// the header part.
    @inline(__always)
    private func rewrittenPieces(_ iov: UnsafeMutablePointer<iovec>, head base: UnsafeRawPointer, headLength: Int, rest: UnsafeRawPointer?,
                                 restLength: Int, rewrite rw: EgressRewrite, scratch: UnsafeMutableRawPointer) -> (pieces: Int, length: Int) {
        var pieces = 0, length = 0
        if rw.isIdentity {
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: headLength)
            pieces = 1; length = headLength
        } else {
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: 12)
            pieces = 1; length = 12
            if let tag = rw.push {
                scratch.storeBytes(of: tag.tpid.bigEndian, toByteOffset: 12, as: UInt16.self)
                scratch.storeBytes(of: tag.tci.bigEndian, toByteOffset: 14, as: UInt16.self)
                iov[1] = iovec(iov_base: scratch + 12, iov_len: 4)
                pieces = 2; length += 4
            }
            let after = 12 + rw.strip
            if headLength > after {
                iov[pieces] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + after), iov_len: headLength - after)
                pieces += 1; length += headLength - after
            }
        }
        if let r = rest, restLength > 0 {
            iov[pieces] = iovec(iov_base: UnsafeMutableRawPointer(mutating: r), iov_len: restLength)
            pieces += 1; length += restLength
        }
        return (pieces, length)
    }

    /// Puts one copy of `frame` (rewritten by `rewrite`, identity = as received) for `port` on
    /// the list; returns its index, or -1 when the list is full (the caller counts it), or -2
    /// when its virtio-net header cannot follow the rewrite (offsets inside the Ethernet
    /// header: a malformed header; the caller counts `offload-not-supported`).
    @inline(__always)
    func append(port: Int, frame base: UnsafeMutableRawPointer, count frameLength: Int, vnet: VNetHeader, rewrite rw: EgressRewrite,
                vlan: VLANID, captured: Bool, after: Int32) -> Int32 {
        let k = count
        guard k < TransmitList.capacity else { return -1 }
        let iov = self.iov + TransmitList.iovPerEntry * k
        let scratch = self.scratch + TransmitList.scratchPerEntry * k
        let (pieces, length) = rewrittenPieces(iov + 1, head: base, headLength: frameLength, rest: nil, restLength: 0, rewrite: rw, scratch: scratch)
        let delta = length - frameLength
        if let h = vnet.raw {
            if delta == 0 {
                iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: h), iov_len: VNetHeader.size)
            } else {
                scratch.copyMemory(from: h, byteCount: VNetHeader.size)
                guard VirtioNetHeader.shift(scratch, by: delta) else { return -2 }
                iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
            }
        } else {
            // From a port without vnet header: a plain frame, fully checksummed.
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: VNetHeader.size)
            iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
        }
        count = k + 1
        entries[k] = TxEntry(port: Int32(port), pieces: Int32(pieces), length: Int32(length), after: after, frameStart: frameStart,
                             vlan: vlan, captured: captured, outcome: TxEntry.pending)
        return Int32(k)
    }

    /// How a copy for a port without offloads is finished (`Wire.SoftwareOffload`).
    typealias Finish = SoftwareOffload

    /// Puts a copy finished in software (`finish`) for `port` on the list: one entry per
    /// segment, or one entry with its checksum completed; each leaves as a plain frame (a
    /// zero virtio-net header). Returns the first entry's index, -1 when the list has no
    /// room for all of them (the caller flushes first: `room`), -2 when it cannot be
    /// finished (the caller counts `offload-not-supported`).
    func appendFinished(port: Int, frame base: UnsafeMutableRawPointer, count frameLength: Int, finish: Finish, rewrite rw: EgressRewrite,
                        vlan: VLANID, captured: Bool, after: Int32) -> Int32 {
        guard room >= finish.frames else { return -1 }
        let first = count
        switch finish {
        case .refused:
            return -2
        case .plain:
            return append(port: port, frame: base, count: frameLength, vnet: VNetHeader(nil), rewrite: rw, vlan: vlan, captured: captured, after: after)
        case .checksum(let offset, let value):
            guard offset >= 12 + rw.strip, offset + 2 <= frameLength else { return -2 }
            let k = count
            let iov = self.iov + TransmitList.iovPerEntry * k
            let scratch = self.scratch + TransmitList.scratchPerEntry * k
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: VNetHeader.size)
            iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
            scratch.storeBytes(of: value.bigEndian, toByteOffset: 16, as: UInt16.self)
            var (pieces, length) = rewrittenPieces(iov + 1, head: base, headLength: offset, rest: nil, restLength: 0, rewrite: rw, scratch: scratch)
            iov[1 + pieces] = iovec(iov_base: scratch + 16, iov_len: 2)
            iov[2 + pieces] = iovec(iov_base: base + offset + 2, iov_len: frameLength - offset - 2)
            pieces += 2; length += frameLength - offset
            count = k + 1
            entries[k] = TxEntry(port: Int32(port), pieces: Int32(pieces), length: Int32(length), after: after, frameStart: frameStart,
                                 vlan: vlan, captured: captured, outcome: TxEntry.pending)
        case .segments(let plan):
            for i in 0..<plan.segmentCount {
                let k = count
                let iov = self.iov + TransmitList.iovPerEntry * k
                let scratch = self.scratch + TransmitList.scratchPerEntry * k
                let slot = headers + TransmitList.headerSlot * k
                let seg = plan.header(ofSegment: i, into: slot)
                scratch.initializeMemory(as: UInt8.self, repeating: 0, count: VNetHeader.size)
                iov[0] = iovec(iov_base: scratch, iov_len: VNetHeader.size)
                let (pieces, length) = rewrittenPieces(iov + 1, head: slot, headLength: seg.headerLength, rest: base + seg.payloadOffset,
                                                       restLength: seg.payloadLength, rewrite: rw, scratch: scratch)
                count = k + 1
                entries[k] = TxEntry(port: Int32(port), pieces: Int32(pieces), length: Int32(length), after: i == 0 ? after : -1,
                                     frameStart: frameStart, lead: i == 0 ? -1 : Int32(first), vlan: vlan, captured: captured,
                                     outcome: TxEntry.pending)
            }
        }
        return Int32(first)
    }

    /// Whether an egress mirror copy of the same frame (entries `from..<before`) already
    /// went to `port`.
    func mirrorCopySent(to port: Int32, before k: Int, from start: Int) -> Bool {
        for j in start..<k where entries[j].after >= 0 && entries[j].port == port && entries[j].outcome == TxEntry.sent { return true }
        return false
    }

    /// Writes every entry through queue `queue` of its port (worker `worker`'s queue), then
    /// ends the batch on each port written (`PortIO.flush`). No datapath lock: the I/O lock
    /// of the worker is held. Ports with an access gate (vhost-user: one thread at a time)
    /// are held from before their first write to after their flush — once per batch, taken
    /// in ascending port order so two workers never wait for each other crosswise.
    func transmit(through sw: SwitchRuntime, worker: Int) {
        let heldCount = sw.gatedPorts.isEmpty ? 0 : holdGates(of: sw)
        defer { for i in 0..<heldCount { sw.gates[Int(held[i])]!.unlock() } }
        round &+= 1
        if round == 0 { touched.update(repeating: 0, count: touchedCapacity); round = 1 }
        var firstTouched = -1
        // The port list, read once per batch, and the port taken from it once per run of
        // entries for the same port (a batch from one port to another is one run): taking an
        // element out of the array costs a retain and a release, which per frame was 29% of a
        // vhost-user forwarding thread (perf) through `sw.ports[p]`, 18% from a local array.
        let ports = sw.ports
        guard count > 0 else { return }
        var runPort = Int(entries[0].port)
        var io = ports[runPort]
        var queue = worker % io.queueCount
        var headerSize = io.txVNetHeaderSize
        var k = 0
        while k < count {
            let e = entries[k]
            if e.lead >= 0 && entries[Int(e.lead)].outcome == TxEntry.skipped {
                entries[k].outcome = TxEntry.skipped
                k += 1
                continue
            }
            if e.after >= 0 {
                // An egress mirror copy: only if its frame went out, and only the first such
                // copy of this frame for this destination.
                if entries[Int(e.after)].outcome != TxEntry.sent || mirrorCopySent(to: e.port, before: k, from: Int(e.frameStart)) {
                    entries[k].outcome = TxEntry.skipped
                    k += 1
                    continue
                }
            }
            let p = Int(e.port)
            if p != runPort {
                runPort = p
                io = ports[p]
                queue = worker % io.queueCount
                headerSize = io.txVNetHeaderSize
            }
            // The run of entries written in one call: this one and the next ones for the same
            // port whose fate does not hang on an entry not yet written (an egress mirror
            // copy waits for its frame; a later segment goes unless its first was skipped).
            var j = k
            repeat {
                runPieces[j - k] = entries[j].pieces
                j += 1
            } while j < count && entries[j].port == e.port && entries[j].after < 0
                && (entries[j].lead < 0 || entries[Int(entries[j].lead)].outcome != TxEntry.skipped)
            io.writeBatch(queue: queue, WriteBatch(iov: self.iov + TransmitList.iovPerEntry * k, stride: TransmitList.iovPerEntry,
                                                   pieces: runPieces, results: runResults, count: j - k, withHeader: headerSize > 0))
            for m in k..<j {
                switch runResults[m - k] {
                case .bytes: entries[m].outcome = TxEntry.sent
                case .wouldBlock: entries[m].outcome = Int16(DropReason.transmitQueueFull.rawValue)
                // ENOTCONN: a vhost-user port without a running frontend (VhostUserPort.writev).
                case .failed(let e): entries[m].outcome = Int16((e == ENOTCONN ? DropReason.noFrontend : .transmitError).rawValue)
                }
            }
            if p < touchedCapacity && touched[p] != round {
                touched[p] = round
                if firstTouched < 0 { firstTouched = k }
            }
            k = j
        }
        guard firstTouched >= 0 else { return }
        // Each port written once more: end its batch (a virtqueue notifies its guest here).
        round &+= 1
        if round == 0 { touched.update(repeating: 0, count: touchedCapacity); round = 1 }
        for k in firstTouched..<count {
            let p = Int(entries[k].port)
            guard entries[k].outcome == TxEntry.sent, p < touchedCapacity, touched[p] != round else { continue }
            touched[p] = round
            let io = ports[p]
            io.flush(queue: worker % io.queueCount)
        }
    }

    /// Takes the gates of the gated ports this list writes to, in ascending port order;
    /// returns how many (listed in `held`).
    private func holdGates(of sw: SwitchRuntime) -> Int {
        round &+= 1
        if round == 0 { touched.update(repeating: 0, count: touchedCapacity); round = 1 }
        for k in 0..<count {
            let p = Int(entries[k].port)
            if p < touchedCapacity { touched[p] = round }
        }
        var n = 0
        for p in sw.gatedPorts where p < touchedCapacity && touched[p] == round {
            sw.gates[p]!.lock()
            held[n] = Int32(p)
            n += 1
        }
        return n
    }
}
