import Model

/// The MAC learning table of one switch: (VLAN, MAC) → port.
///
/// ## What it is
/// Learning maps a source address seen on a port to that port, per VLAN, so later frames to
/// the address go to one port instead of being flooded. Keys are `vlan << 48 | mac` in one
/// `UInt64` (VLAN 0 is the untagged domain).
///
/// ## Layout
/// Entries live in a fixed pool (`limit` dynamic slots plus room for static entries) whose
/// slot numbers never change. A separate open-addressing index (linear probing, power-of-two
/// size ≥ 2 × pool, Fibonacci hashing, backward-shift deletion) maps keys to slots, so a
/// lookup is a multiply, a shift and usually one compare — no `Dictionary` (≈300
/// instructions a lookup here) and no allocation after `init`.
///
/// What the per-frame path reads of an entry (key, port, last seen, static flag) sits in one
/// 24-byte `Slot` record, so a lookup or a refresh touches two cache lines (index, slot)
/// rather than one per field; the LRU links, touched at most once a second per entry, live
/// in arrays of their own.
///
/// Each port threads its dynamic entries on an intrusive doubly linked list in least- to
/// most-recently-seen order. That gives, in O(1):
/// - refresh: move the entry to its port's tail;
/// - **fair eviction** (OVS `mac-learning.c`): when the table is full, the least recently
///   seen entry of the port holding the most entries goes, so one port flooding random
///   source MACs can only evict its own entries once it holds the most;
/// - **aging**: walk each port's list from the head while entries are older than the limit.
///
/// ## The per-frame path
/// `lookup` and the common case of `learn` (the source was already seen on this port within
/// the same second: nothing to change) are `@inlinable` and read only immutable pointers,
/// so they inline into the datapath with no call, no reference counting and no exclusivity
/// checks; everything that changes the table is behind `learnSlowly`, out of line.
///
/// ## Complications
/// - Moves: a known MAC seen on another port moves at once (a migrated or failed-over guest,
///   QEMU's announce RARPs). Static entries never move, age or get evicted.
/// - Multicast and zero source addresses are never learned (`decide` drops them first).
///
/// ## Threads
/// One owner: the datapath thread that forwards the switch's frames mutates it. Anyone else
/// (control socket) reads only while holding the datapath's batch lock.
public final class MACTable {
    /// Most dynamic entries held at once.
    public let limit: Int
    /// Pool slots: dynamic limit plus static headroom.
    public let poolCapacity: Int
    public private(set) var count = 0
    public private(set) var staticCount = 0
    /// Entries pushed out by fair eviction since creation.
    public private(set) var evictions: UInt64 = 0
    /// Entries that changed port since creation.
    public private(set) var moves: UInt64 = 0

    /// The hot part of one pool entry (24 bytes).
    @usableFromInline struct Slot {
        /// `vlan << 48 | mac`.
        @usableFromInline var key: UInt64
        /// Seconds; meaningless for static entries.
        @usableFromInline var lastSeen: Int64
        /// The port; -1 while the slot is free.
        @usableFromInline var port: Int32
        @usableFromInline var isStatic: Bool
    }

    @usableFromInline let slots: UnsafeMutablePointer<Slot>
    private let prev: UnsafeMutablePointer<Int32>
    private let next: UnsafeMutablePointer<Int32>
    private var freeHead: Int32

    /// Open-addressing index: slot numbers, `none` when empty.
    @usableFromInline let index: UnsafeMutablePointer<Int32>
    @usableFromInline let indexMask: Int
    /// 64 − log2(index size): the Fibonacci hash keeps the top bits of the product.
    @usableFromInline let indexShift: UInt64

    // Per-port LRU lists, grown on demand (control path only).
    private var head: [Int32]
    private var tail: [Int32]
    private var perPort: [Int]
    private var portEvictions: [UInt64]

    @usableFromInline static var none: Int32 { -1 }

    /// - Parameters:
    ///   - limit: most dynamic entries (OVS default 8192).
    ///   - staticCapacity: room for static entries on top of `limit`.
    ///   - portCount: ports known at creation (more are added on demand).
    public init(limit: Int = 8192, staticCapacity: Int = 256, portCount: Int = 0) {
        precondition(limit > 0)
        self.limit = limit
        poolCapacity = limit + staticCapacity
        slots = .allocate(capacity: poolCapacity)
        prev = .allocate(capacity: poolCapacity)
        next = .allocate(capacity: poolCapacity)
        for i in 0..<poolCapacity {
            next[i] = Int32(i + 1)
            (slots + i).initialize(to: Slot(key: 0, lastSeen: 0, port: -1, isStatic: false))
        }
        next[poolCapacity - 1] = MACTable.none
        freeHead = 0
        var size = 16
        while size < poolCapacity * 2 { size <<= 1 }
        index = .allocate(capacity: size)
        index.initialize(repeating: MACTable.none, count: size)
        indexMask = size - 1
        indexShift = UInt64(64 - size.trailingZeroBitCount)
        head = Array(repeating: MACTable.none, count: portCount)
        tail = Array(repeating: MACTable.none, count: portCount)
        perPort = Array(repeating: 0, count: portCount)
        portEvictions = Array(repeating: 0, count: portCount)
    }

    deinit {
        slots.deallocate(); prev.deallocate(); next.deallocate(); index.deallocate()
    }

    @inlinable @inline(__always)
    static func key(_ vlan: VLANID, _ mac: MACAddress) -> UInt64 { UInt64(vlan.rawValue) << 48 | mac.rawValue }

    @inlinable @inline(__always)
    func home(_ key: UInt64) -> Int {
        // `&>>`: `indexShift` is 1...60 (the index has 16 or more slots), so the masking
        // shift is the plain one, without `>>`'s check for shifts of 64 and more.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) &>> indexShift)
    }

    /// Index position holding `key`'s slot, or -1.
    @inline(__always)
    private func position(of key: UInt64) -> Int {
        var i = home(key)
        while true {
            let s = index[i]
            if s == MACTable.none { return -1 }
            if slots[Int(s)].key == key { return i }
            i = (i + 1) & indexMask
        }
    }

    /// The slot holding `key`, or -1. Pointer reads only (see "The per-frame path").
    @inlinable @inline(__always)
    func slot(of key: UInt64) -> Int {
        var i = home(key)
        while true {
            let s = Int(index[i])
            if s < 0 || slots[s].key == key { return s }
            i = (i + 1) & indexMask
        }
    }

    /// The port `mac` was learned on in `vlan`, if any. No side effects.
    @inlinable @inline(__always)
    public func lookup(vlan: VLANID, mac: MACAddress) -> PortIndex? {
        let s = slot(of: MACTable.key(vlan, mac))
        return s < 0 ? nil : Int(slots[s].port)
    }

    /// Time since the entry was last refreshed (whole seconds; zero for static entries), if present.
    public func age(vlan: VLANID, mac: MACAddress, now: MonotonicInstant) -> Duration? {
        let s = slot(of: MACTable.key(vlan, mac))
        guard s >= 0 else { return nil }
        return slots[s].isStatic ? .zero : .seconds(now.seconds - slots[s].lastSeen)
    }

    /// What `learn` did.
    public enum LearnOutcome: Equatable, Sendable {
        case refreshed
        case learned
        /// Learned after evicting the least recent entry of the fullest port.
        case learnedAfterEviction(evictedPort: PortIndex)
        case moved(from: PortIndex)
        /// A static entry holds this address; learning left it alone.
        case staticEntry
    }

    /// Records that `mac` was seen as a source on `port` in `vlan` at `now` (kept to the second).
    ///
    /// `portLimit` is the port's own learning limit (MAC-flood protection): a port already
    /// holding that many entries makes room by evicting its own least recently seen entry,
    /// so a guest flooding random source MACs only ever churns its own share of the table.
    ///
    /// Inlined: the common case, a known source seen again within the same second on the
    /// same port, is already the most recent entry of its port as far as aging can tell, so
    /// there is nothing to do (no LRU relink, no write); only that is checked here.
    @inlinable @inline(__always) @discardableResult
    public func learn(vlan: VLANID, mac: MACAddress, port: PortIndex, now instant: MonotonicInstant, portLimit: Int = .max) -> LearnOutcome {
        let now = instant.seconds
        let key = MACTable.key(vlan, mac)
        let s = slot(of: key)
        if s >= 0 && Int(slots[s].port) == port && slots[s].lastSeen == now && !slots[s].isStatic { return .refreshed }
        return learnSlowly(key: key, slot: s, port: port, now: now, portLimit: portLimit)
    }

    /// Everything `learn` does beyond the common case: refresh with relink, move, insert,
    /// eviction. `s` is `slot(of: key)`.
    @usableFromInline @inline(never)
    func learnSlowly(key: UInt64, slot s: Int, port: PortIndex, now: Int64, portLimit: Int) -> LearnOutcome {
        if s >= 0 {
            if slots[s].isStatic { return .staticEntry }
            let old = Int(slots[s].port)
            if old == port && slots[s].lastSeen == now { return .refreshed }
            slots[s].lastSeen = now
            if old == port {
                unlink(s, from: old); append(s, to: port)
                return .refreshed
            }
            unlink(s, from: old)
            slots[s].port = Int32(port)
            append(s, to: port)
            moves &+= 1
            return .moved(from: old)
        }
        var outcome = LearnOutcome.learned
        if count(port: port) >= portLimit {
            remove(slot: Int(head[port]))
            evictions &+= 1
            portEvictions[port] &+= 1
            outcome = .learnedAfterEviction(evictedPort: port)
        } else if count >= limit {
            let victimPort = fullestPort()
            remove(slot: Int(head[victimPort]))
            evictions &+= 1
            portEvictions[victimPort] &+= 1
            outcome = .learnedAfterEviction(evictedPort: victimPort)
        }
        let s = insert(key: key, port: port, now: now, isStatic: false)
        append(s, to: port)
        count += 1
        return outcome
    }

    /// Pins `mac` in `vlan` to `port`; replaces any dynamic entry. Returns false when the
    /// static headroom is full.
    @discardableResult
    public func addStatic(vlan: VLANID, mac: MACAddress, port: PortIndex) -> Bool {
        let key = MACTable.key(vlan, mac)
        let s = slot(of: key)
        if s >= 0 {
            if slots[s].isStatic { slots[s].port = Int32(port); return true }
            remove(slot: s)
        }
        guard staticCount < poolCapacity - limit, freeHead != MACTable.none else { return false }
        _ = insert(key: key, port: port, now: 0, isStatic: true)
        staticCount += 1
        return true
    }

    /// Removes dynamic entries last seen more than `aging` before `now` (to the second);
    /// returns how many.
    @discardableResult
    public func expire(now instant: MonotonicInstant, aging: Duration) -> Int {
        let now = instant.seconds, agingSeconds = aging.secondsCount
        var removed = 0
        for port in 0..<head.count {
            while head[port] != MACTable.none, now - slots[Int(head[port])].lastSeen > agingSeconds {
                remove(slot: Int(head[port])); removed += 1
            }
        }
        return removed
    }

    /// Removes every dynamic entry on `port` (the port went away).
    @discardableResult
    public func flush(port: PortIndex) -> Int {
        guard port < head.count else { return 0 }
        var removed = 0
        while head[port] != MACTable.none { remove(slot: Int(head[port])); removed += 1 }
        return removed
    }

    /// Entries of `port` pushed out by eviction (its own limit, or the table's).
    public func evictions(port: PortIndex) -> UInt64 { port < portEvictions.count ? portEvictions[port] : 0 }

    /// Dynamic entries currently held for `port`.
    public func count(port: PortIndex) -> Int { port < perPort.count ? perPort[port] : 0 }

    /// One table row, for `tapestry fdb`.
    public struct Entry: Equatable, Sendable {
        public var vlan: VLANID
        public var mac: MACAddress
        public var port: PortIndex
        /// Time since last seen, in whole seconds (zero for static entries).
        public var age: Duration
        public var isStatic: Bool
        public init(vlan: VLANID, mac: MACAddress, port: PortIndex, age: Duration, isStatic: Bool) {
            self.vlan = vlan; self.mac = mac; self.port = port; self.age = age; self.isStatic = isStatic
        }
    }

    /// A copy of every entry, sorted by VLAN then MAC. Allocates, and takes time in
    /// proportion to the table: for tests and tools. Under the datapath lock use
    /// `copyEntries(from:into:now:)`, which works in bounded chunks.
    public func entries(now: MonotonicInstant) -> [Entry] {
        var out: [Entry] = []
        out.reserveCapacity(count + staticCount)
        var cursor = 0
        let chunk = UnsafeMutableBufferPointer<Entry>.allocate(capacity: 1024)
        defer { chunk.deallocate() }
        while true {
            let n = copyEntries(from: &cursor, into: chunk, now: now)
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out.sorted { ($0.vlan, $0.mac) < ($1.vlan, $1.mac) }
    }

    /// Copies up to `buffer.count` entries, continuing from `cursor` (start at 0), and
    /// advances `cursor`; returns how many were copied (0 when the walk is over).
    ///
    /// Bounded work per call, so a caller under the datapath lock can release it between
    /// chunks (the lock's hold time then does not grow with the table). Between two calls
    /// the table may change: an entry that moved within the index may be missed or seen
    /// twice (callers that need a set deduplicate by (VLAN, MAC)). Allocates nothing.
    public func copyEntries(from cursor: inout Int, into buffer: UnsafeMutableBufferPointer<Entry>, now: MonotonicInstant) -> Int {
        var n = 0
        let t = now.seconds
        while cursor <= indexMask && n < buffer.count {
            let i = index[cursor]
            cursor += 1
            guard i != MACTable.none else { continue }
            let e = slots[Int(i)]
            buffer[n] = Entry(vlan: VLANID(UInt16(e.key >> 48)), mac: MACAddress(rawValue: e.key), port: Int(e.port),
                              age: e.isStatic ? .zero : .seconds(t - e.lastSeen), isStatic: e.isStatic)
            n += 1
        }
        return n
    }

    // MARK: - Internals

    private func fullestPort() -> Int {
        var best = 0
        for p in 0..<perPort.count where perPort[p] > perPort[best] { best = p }
        return best
    }

    private func insert(key: UInt64, port: PortIndex, now: Int64, isStatic stat: Bool) -> Int {
        let s = Int(freeHead)
        freeHead = next[s]
        slots[s] = Slot(key: key, lastSeen: now, port: Int32(port), isStatic: stat)
        prev[s] = MACTable.none; next[s] = MACTable.none
        var i = home(key)
        while index[i] != MACTable.none { i = (i + 1) & indexMask }
        index[i] = Int32(s)
        return s
    }

    private func remove(slot s: Int) {
        if slots[s].isStatic { staticCount -= 1 } else { unlink(s, from: Int(slots[s].port)); count -= 1 }
        // Backward-shift deletion keeps every probe chain unbroken without tombstones.
        var i = position(of: slots[s].key)
        var j = i
        while true {
            j = (j + 1) & indexMask
            let t = index[j]
            if t == MACTable.none { break }
            let h = home(slots[Int(t)].key)
            // Move t back into the hole at i unless its home lies cyclically in (i, j].
            let inRange = i <= j ? (h > i && h <= j) : (h > i || h <= j)
            if !inRange { index[i] = t; i = j }
        }
        index[i] = MACTable.none
        slots[s].isStatic = false; slots[s].port = -1
        next[s] = freeHead
        freeHead = Int32(s)
    }

    private func ensurePort(_ port: Int) {
        if port >= head.count {
            let n = port + 1 - head.count
            head += repeatElement(MACTable.none, count: n)
            tail += repeatElement(MACTable.none, count: n)
            perPort += repeatElement(0, count: n)
            portEvictions += repeatElement(0, count: n)
        }
    }

    @inline(__always)
    private func append(_ s: Int, to port: Int) {
        ensurePort(port)
        prev[s] = tail[port]; next[s] = MACTable.none
        if tail[port] != MACTable.none { next[Int(tail[port])] = Int32(s) } else { head[port] = Int32(s) }
        tail[port] = Int32(s)
        perPort[port] += 1
    }

    @inline(__always)
    private func unlink(_ s: Int, from port: Int) {
        let p = prev[s], n = next[s]
        if p != MACTable.none { next[Int(p)] = n } else { head[port] = n }
        if n != MACTable.none { prev[Int(n)] = p } else { tail[port] = p }
        perPort[port] -= 1
    }
}
