import Core

/// LLDP frames on their way from the datapath to the LLDP agent: a small ring of frame
/// copies, allocated once.
///
/// ```
///  worker (under the datapath lock)            LLDP agent (tick, under the lock, then not)
///  decide → .local(.lldp) ─▶ put(frame, port) ─▶ [slot 0][slot 1]…[slot 15] ─▶ take(into:)
///                            full or too long: counted, dropped               parse outside
/// ```
/// Why a ring and not a parse in place: parsing an LLDPDU builds strings and arrays, which
/// the frame path must not do. LLDP is slow (one LLDPDU per neighbour every 30 s by
/// default), so 16 slots drained every 200 ms cover 80 LLDPDUs a second per switch; a burst
/// beyond that — a flood of forged LLDPDUs — is dropped and counted in `dropped`, and a
/// frame longer than `slotBytes` (an LLDPDU fits one standard frame, 802.1AB §7.3) in
/// `oversize`. Neither grows anything.
///
/// Threads: `put` runs on a datapath worker and `take` on the agent, both under the
/// datapath lock (the inbox belongs to a `SwitchRuntime`, whose state the lock guards).
final class LLDPInbox {
    /// Frames held at most.
    static let capacity = 16
    /// Longest frame kept (1518-byte frame with a tag; LLDPDUs are at most 1500 bytes).
    static let slotBytes = 1522

    private let storage: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private let ports: UnsafeMutablePointer<Int>
    private var head = 0
    private(set) var count = 0
    /// Frames dropped because the ring was full.
    private(set) var dropped: UInt64 = 0
    /// Frames dropped because they were longer than `slotBytes`.
    private(set) var oversize: UInt64 = 0

    init() {
        storage = .allocate(byteCount: LLDPInbox.capacity * LLDPInbox.slotBytes, alignment: 64)
        lengths = .allocate(capacity: LLDPInbox.capacity)
        ports = .allocate(capacity: LLDPInbox.capacity)
    }

    deinit { storage.deallocate(); lengths.deallocate(); ports.deallocate() }

    /// Keeps a copy of `frame` received on port `port` (an uplink). Under the datapath lock;
    /// allocates nothing.
    @inline(__always)
    func put(_ frame: UnsafeRawBufferPointer, port: Int) {
        guard frame.count <= LLDPInbox.slotBytes else { oversize &+= 1; return }
        guard count < LLDPInbox.capacity else { dropped &+= 1; return }
        let slot = (head + count) % LLDPInbox.capacity
        (storage + slot * LLDPInbox.slotBytes).copyMemory(from: frame.baseAddress!, byteCount: frame.count)
        lengths[slot] = frame.count
        ports[slot] = port
        count += 1
    }

    /// Moves every held frame into `area` (at least `capacity × slotBytes` bytes), one per
    /// `slotBytes`, with its length and port in `lengths`/`ports`; returns how many. Under
    /// the datapath lock; allocates nothing.
    func take(into area: UnsafeMutableRawPointer, lengths outLengths: UnsafeMutablePointer<Int>,
              ports outPorts: UnsafeMutablePointer<Int>) -> Int {
        let n = count
        for i in 0..<n {
            let slot = (head + i) % LLDPInbox.capacity
            (area + i * LLDPInbox.slotBytes).copyMemory(from: storage + slot * LLDPInbox.slotBytes, byteCount: lengths[slot])
            outLengths[i] = lengths[slot]
            outPorts[i] = ports[slot]
        }
        head = (head + n) % LLDPInbox.capacity
        count = 0
        return n
    }
}
