import Model

/// The multicast group table of one switch: per VLAN, group → member ports with expiry, and
/// the multicast-router ports (IGMP/MLD snooping, `MulticastSnooping`).
///
/// ## What it is
/// Keys are (learning VLAN, group), the group an IPv4 or IPv6 multicast address
/// (`WireIPAddress`). Each group has a list of memberships (group, port), each with its own
/// expiry: refreshed by a report from that port, removed by its leave or after the group
/// membership interval. Router ports are kept per VLAN with an expiry too (refreshed by each
/// query arriving on the port); static ones come from the plan (`routerPorts`, uplinks).
///
/// ## Layout
/// Three fixed pools allocated once — groups, memberships, router entries — and an
/// open-addressing index over the groups (linear probing, power-of-two size ≥ 2 × groups,
/// backward-shift deletion), as `MACTable`. Memberships of a group are a singly linked list
/// from the group; every dynamic membership is also on one list in refresh order (oldest
/// first), so aging pops expired ones from its head and a refresh moves one to its tail: O(1)
/// per change, O(expired) per tick. Router entries of a VLAN are a linked list from a
/// 4096-entry head array.
///
/// ## The per-frame path
/// `slot(vlan:group:)`, the member walk (`firstMember`/`nextMember`/`memberPort`) and the
/// router walk read immutable pointers only and allocate nothing; `collectEgress` uses them
/// for a registered group's data. Every change (`snoop`, `expire`) is an effect the datapath
/// applies under its lock; `trace` only reads.
///
/// ## Complications
/// - Full tables: a join that finds no free group or membership is refused and counted
///   (`refusedJoins`); the group keeps flooding (unregistered) or keeps its other members.
/// - Link-local groups are never registered (they always flood).
/// - A port that goes down loses its memberships and router entries (`flush(port:)`).
///
/// ## Threads
/// Read and written under the datapath lock only.
public final class MulticastGroupTable {
    public let groupCapacity: Int
    public let membershipCapacity: Int
    public let routerCapacity: Int
    /// Membership and router-port intervals, nanoseconds.
    public let membershipNanoseconds: Int64
    public let routerNanoseconds: Int64
    /// The switch's querier, when it has one (fed by `snoop` with the queries it hears).
    public let querier: MulticastQuerier?

    // Groups.
    @usableFromInline let groupVLAN: UnsafeMutablePointer<UInt16>      // 0xFFFF: free
    @usableFromInline let groupHigh: UnsafeMutablePointer<UInt64>
    @usableFromInline let groupLow: UnsafeMutablePointer<UInt64>
    @usableFromInline let groupFirst: UnsafeMutablePointer<Int32>      // first membership
    let groupNext: UnsafeMutablePointer<Int32>                          // free list
    var groupFree: Int32
    /// Groups registered now.
    public private(set) var groupCount = 0

    // Memberships.
    @usableFromInline let memberPortOf: UnsafeMutablePointer<Int32>    // -1: free
    @usableFromInline let memberNextOf: UnsafeMutablePointer<Int32>    // next in its group
    let memberGroup: UnsafeMutablePointer<Int32>
    let memberExpires: UnsafeMutablePointer<Int64>                      // .max: static
    let memberSeen: UnsafeMutablePointer<Int64>
    let lruPrev: UnsafeMutablePointer<Int32>
    let lruNext: UnsafeMutablePointer<Int32>
    var lruHead: Int32 = -1, lruTail: Int32 = -1
    var memberFree: Int32
    /// Memberships held now (static ones included).
    public private(set) var membershipCount = 0

    // Router ports.
    @usableFromInline let routerFirstOf: UnsafeMutablePointer<Int32>   // per VLAN (4096)
    @usableFromInline let routerNextOf: UnsafeMutablePointer<Int32>
    @usableFromInline let routerPortOf: UnsafeMutablePointer<Int32>    // -1: free
    let routerVLAN: UnsafeMutablePointer<UInt16>
    let routerExpires: UnsafeMutablePointer<Int64>
    let routerSeen: UnsafeMutablePointer<Int64>
    var routerFree: Int32
    public private(set) var routerCount = 0

    // Index.
    @usableFromInline let index: UnsafeMutablePointer<Int32>
    @usableFromInline let indexMask: Int
    @usableFromInline let indexShift: UInt64

    /// Joins refused because the group or membership pool was full.
    public private(set) var refusedJoins: UInt64 = 0
    /// Router entries refused because their pool was full.
    public private(set) var refusedRouters: UInt64 = 0

    /// A table for `snooping`, with its static groups installed (ports beyond `portCount`
    /// are ignored); `querier` hears the queries `snoop` sees.
    public init(snooping: MulticastSnooping, portCount: Int, querier: MulticastQuerier? = nil) {
        groupCapacity = snooping.groupCapacity
        membershipCapacity = snooping.membershipCapacity
        routerCapacity = snooping.routerCapacity
        membershipNanoseconds = snooping.membershipInterval.nanosecondsCount
        routerNanoseconds = snooping.routerInterval.nanosecondsCount
        self.querier = querier
        func ints(_ n: Int, _ v: Int32) -> UnsafeMutablePointer<Int32> {
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: n); p.initialize(repeating: v, count: n); return p
        }
        func longs(_ n: Int) -> UnsafeMutablePointer<Int64> {
            let p = UnsafeMutablePointer<Int64>.allocate(capacity: n); p.initialize(repeating: 0, count: n); return p
        }
        let g = groupCapacity, m = membershipCapacity, r = routerCapacity
        groupVLAN = .allocate(capacity: g); groupVLAN.initialize(repeating: 0xFFFF, count: g)
        groupHigh = .allocate(capacity: g); groupHigh.initialize(repeating: 0, count: g)
        groupLow = .allocate(capacity: g); groupLow.initialize(repeating: 0, count: g)
        groupFirst = ints(g, -1)
        groupNext = ints(g, -1)
        for i in 0..<(g - 1) { groupNext[i] = Int32(i + 1) }
        groupFree = 0
        memberPortOf = ints(m, -1); memberNextOf = ints(m, -1); memberGroup = ints(m, -1)
        memberExpires = longs(m); memberSeen = longs(m)
        lruPrev = ints(m, -1); lruNext = ints(m, -1)
        for i in 0..<(m - 1) { memberNextOf[i] = Int32(i + 1) }
        memberFree = 0
        routerFirstOf = ints(4096, -1)
        routerNextOf = ints(r, -1); routerPortOf = ints(r, -1)
        for i in 0..<(r - 1) { routerNextOf[i] = Int32(i + 1) }
        routerFree = 0
        routerVLAN = .allocate(capacity: r); routerVLAN.initialize(repeating: 0, count: r)
        routerExpires = longs(r); routerSeen = longs(r)
        var size = 16
        while size < g * 2 { size <<= 1 }
        index = ints(size, -1)
        indexMask = size - 1
        indexShift = UInt64(64 - size.trailingZeroBitCount)
        for s in snooping.staticGroups {
            for p in s.ports where p >= 0 && p < portCount { _ = join(vlan: s.vlan, group: s.group, port: p, now: .seconds(0), isStatic: true) }
        }
    }

    deinit {
        groupVLAN.deallocate(); groupHigh.deallocate(); groupLow.deallocate(); groupFirst.deallocate(); groupNext.deallocate()
        memberPortOf.deallocate(); memberNextOf.deallocate(); memberGroup.deallocate(); memberExpires.deallocate(); memberSeen.deallocate()
        lruPrev.deallocate(); lruNext.deallocate()
        routerFirstOf.deallocate(); routerNextOf.deallocate(); routerPortOf.deallocate(); routerVLAN.deallocate()
        routerExpires.deallocate(); routerSeen.deallocate()
        index.deallocate()
    }
}

// MARK: - Lookups (the per-frame path)

extension MulticastGroupTable {
    @inlinable @inline(__always)
    func home(vlan: VLANID, group: WireIPAddress) -> Int {
        let k = (group.high &* 0x9E37_79B9_7F4A_7C15) ^ (group.low &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(vlan.rawValue) &* 0x1656_67B1_9E37_79F9
        return Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> indexShift)
    }

    /// The slot of (vlan, group), or -1 when the group is not registered. No side effects.
    @inlinable @inline(__always)
    public func slot(vlan: VLANID, group: WireIPAddress) -> Int {
        var i = home(vlan: vlan, group: group)
        while true {
            let s = Int(index[i])
            if s < 0 { return -1 }
            if groupVLAN[s] == vlan.rawValue && groupLow[s] == group.low && groupHigh[s] == group.high { return s }
            i = (i + 1) & indexMask
        }
    }

    /// The first membership of group `slot` (-1: none); walk with `nextMember`.
    @inlinable @inline(__always) public func firstMember(_ slot: Int) -> Int { Int(groupFirst[slot]) }
    @inlinable @inline(__always) public func nextMember(_ m: Int) -> Int { Int(memberNextOf[m]) }
    @inlinable @inline(__always) public func memberPort(_ m: Int) -> Int { Int(memberPortOf[m]) }

    /// The first dynamic router entry of `vlan` (-1: none); walk with `nextRouter`.
    @inlinable @inline(__always) public func firstRouter(_ vlan: VLANID) -> Int { Int(routerFirstOf[Int(vlan.rawValue)]) }
    @inlinable @inline(__always) public func nextRouter(_ r: Int) -> Int { Int(routerNextOf[r]) }
    @inlinable @inline(__always) public func routerPort(_ r: Int) -> Int { Int(routerPortOf[r]) }

    /// The group of `slot` and its VLAN (for trace).
    public func group(ofSlot slot: Int) -> (vlan: VLANID, group: WireIPAddress) {
        (VLANID(groupVLAN[slot]), WireIPAddress(high: groupHigh[slot], low: groupLow[slot]))
    }

    /// The member ports of (vlan, group), in list order (for trace and tests).
    public func members(vlan: VLANID, group: WireIPAddress) -> [PortIndex] {
        let s = slot(vlan: vlan, group: group)
        guard s >= 0 else { return [] }
        var out: [PortIndex] = [], m = firstMember(s)
        while m >= 0 { out.append(memberPort(m)); m = nextMember(m) }
        return out
    }

    /// The dynamic router ports of `vlan` (for trace and tests).
    public func routers(vlan: VLANID) -> [PortIndex] {
        var out: [PortIndex] = [], r = firstRouter(vlan)
        while r >= 0 { out.append(routerPort(r)); r = nextRouter(r) }
        return out
    }

    /// True when `port` is a member of (vlan, group) (for trace).
    public func isMember(vlan: VLANID, group: WireIPAddress, port: PortIndex) -> Bool {
        members(vlan: vlan, group: group).contains(port)
    }
}

// MARK: - Changes (effects, under the datapath lock)

extension MulticastGroupTable {
    /// What `join` did.
    public enum JoinOutcome: Equatable, Sendable {
        case joined, refreshed
        /// A link-local group (always flooded): not registered.
        case linkLocal
        /// No free group or membership: refused and counted.
        case tableFull
    }

    private func membership(ofGroup s: Int, port: Int) -> Int {
        var m = Int(groupFirst[s])
        while m >= 0 { if Int(memberPortOf[m]) == port { return m }; m = Int(memberNextOf[m]) }
        return -1
    }

    private func lruUnlink(_ m: Int) {
        let p = lruPrev[m], n = lruNext[m]
        if p >= 0 { lruNext[Int(p)] = n } else if lruHead == Int32(m) { lruHead = n }
        if n >= 0 { lruPrev[Int(n)] = p } else if lruTail == Int32(m) { lruTail = p }
        lruPrev[m] = -1; lruNext[m] = -1
    }

    private func lruAppend(_ m: Int) {
        lruPrev[m] = lruTail; lruNext[m] = -1
        if lruTail >= 0 { lruNext[Int(lruTail)] = Int32(m) } else { lruHead = Int32(m) }
        lruTail = Int32(m)
    }

    /// Records that `port` joined (or is still in) (vlan, group) at `now`.
    @discardableResult
    public func join(vlan: VLANID, group: WireIPAddress, port: PortIndex, now: MonotonicInstant, isStatic: Bool = false) -> JoinOutcome {
        if group.isLinkLocalMulticast { return .linkLocal }
        var s = slot(vlan: vlan, group: group)
        if s >= 0 {
            let m = membership(ofGroup: s, port: port)
            if m >= 0 {
                guard memberExpires[m] != .max else { return .refreshed }
                if isStatic { lruUnlink(m); memberExpires[m] = .max; return .refreshed }
                memberExpires[m] = now.nanoseconds + membershipNanoseconds
                memberSeen[m] = now.nanoseconds
                lruUnlink(m); lruAppend(m)
                return .refreshed
            }
        }
        guard memberFree >= 0, s >= 0 || groupFree >= 0 else { refusedJoins &+= 1; return .tableFull }
        if s < 0 {
            s = Int(groupFree)
            groupFree = groupNext[s]
            groupVLAN[s] = vlan.rawValue; groupHigh[s] = group.high; groupLow[s] = group.low; groupFirst[s] = -1
            var i = home(vlan: vlan, group: group)
            while index[i] >= 0 { i = (i + 1) & indexMask }
            index[i] = Int32(s)
            groupCount += 1
        }
        let m = Int(memberFree)
        memberFree = memberNextOf[m]
        memberPortOf[m] = Int32(port); memberGroup[m] = Int32(s)
        memberNextOf[m] = groupFirst[s]; groupFirst[s] = Int32(m)
        memberSeen[m] = now.nanoseconds
        if isStatic { memberExpires[m] = .max } else { memberExpires[m] = now.nanoseconds + membershipNanoseconds; lruAppend(m) }
        membershipCount += 1
        return .joined
    }

    /// Removes `port`'s dynamic membership of (vlan, group), at once (Open vSwitch: no
    /// last-member query). Returns true if there was one. Static memberships stay.
    @discardableResult
    public func leave(vlan: VLANID, group: WireIPAddress, port: PortIndex) -> Bool {
        let s = slot(vlan: vlan, group: group)
        guard s >= 0 else { return false }
        let m = membership(ofGroup: s, port: port)
        guard m >= 0, memberExpires[m] != .max else { return false }
        remove(membership: m)
        return true
    }

    /// Unlinks membership `m` from its group and the LRU list, frees it, and frees the group
    /// when it has no member left.
    private func remove(membership m: Int) {
        let s = Int(memberGroup[m])
        var prev = -1, c = Int(groupFirst[s])
        while c >= 0 && c != m { prev = c; c = Int(memberNextOf[c]) }
        if prev < 0 { groupFirst[s] = memberNextOf[m] } else { memberNextOf[prev] = memberNextOf[m] }
        if memberExpires[m] != .max { lruUnlink(m) }
        memberPortOf[m] = -1; memberGroup[m] = -1
        memberNextOf[m] = memberFree; memberFree = Int32(m)
        membershipCount -= 1
        if groupFirst[s] < 0 { removeGroup(s) }
    }

    private func removeGroup(_ s: Int) {
        // Backward-shift deletion from the index.
        var i = home(vlan: VLANID(groupVLAN[s]), group: WireIPAddress(high: groupHigh[s], low: groupLow[s]))
        while Int(index[i]) != s { i = (i + 1) & indexMask }
        var hole = i
        var j = (i + 1) & indexMask
        while index[j] >= 0 {
            let t = Int(index[j])
            let h = home(vlan: VLANID(groupVLAN[t]), group: WireIPAddress(high: groupHigh[t], low: groupLow[t]))
            // Move t into the hole if its home is not in (hole, j] cyclically.
            let inRange = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j)
            if !inRange { index[hole] = index[j]; hole = j }
            j = (j + 1) & indexMask
        }
        index[hole] = -1
        groupVLAN[s] = 0xFFFF
        groupNext[s] = groupFree; groupFree = Int32(s)
        groupCount -= 1
    }

    /// Makes `port` a multicast-router port of `vlan` until `now` + the router interval.
    public func markRouter(vlan: VLANID, port: PortIndex, now: MonotonicInstant) {
        var r = firstRouter(vlan)
        while r >= 0 {
            if routerPort(r) == port { routerExpires[r] = now.nanoseconds + routerNanoseconds; routerSeen[r] = now.nanoseconds; return }
            r = nextRouter(r)
        }
        guard routerFree >= 0 else { refusedRouters &+= 1; return }
        let n = Int(routerFree)
        routerFree = routerNextOf[n]
        routerPortOf[n] = Int32(port); routerVLAN[n] = vlan.rawValue
        routerExpires[n] = now.nanoseconds + routerNanoseconds; routerSeen[n] = now.nanoseconds
        routerNextOf[n] = routerFirstOf[Int(vlan.rawValue)]; routerFirstOf[Int(vlan.rawValue)] = Int32(n)
        routerCount += 1
    }

    private func removeRouters(where drop: (Int) -> Bool) {
        for v in 0..<4096 where routerFirstOf[v] >= 0 {
            var prev = -1, r = Int(routerFirstOf[v])
            while r >= 0 {
                let next = Int(routerNextOf[r])
                if drop(r) {
                    if prev < 0 { routerFirstOf[v] = Int32(next) } else { routerNextOf[prev] = Int32(next) }
                    routerPortOf[r] = -1
                    routerNextOf[r] = routerFree; routerFree = Int32(r)
                    routerCount -= 1
                } else { prev = r }
                r = next
            }
        }
    }

    /// Removes memberships and router entries that expired by `now` (the control tick).
    /// Returns the memberships removed.
    @discardableResult
    public func expire(now: MonotonicInstant) -> Int {
        var removed = 0
        while lruHead >= 0 && memberExpires[Int(lruHead)] <= now.nanoseconds {
            remove(membership: Int(lruHead))
            removed += 1
        }
        if routerCount > 0 { removeRouters { self.routerExpires[$0] <= now.nanoseconds } }
        return removed
    }

    /// Forgets everything `port` had: dynamic memberships and router entries (a port that
    /// went down).
    public func flush(port: PortIndex) {
        var m = Int(lruHead)
        while m >= 0 {
            let next = Int(lruNext[m])
            if Int(memberPortOf[m]) == port { remove(membership: m) }
            m = next
        }
        if routerCount > 0 { removeRouters { self.routerPortOf[$0] == Int32(port) } }
    }

    /// What `snoop` did with a frame.
    public struct SnoopOutcome: Equatable, Sendable {
        public var joined = 0, refreshed = 0, left = 0, refused = 0
        /// The ingress port was (re)marked a router port (a query).
        public var markedRouter = false
        public init() {}
    }

    /// The effect of a membership report, leave or query that `decide` asked for
    /// (`Decision.snoops`): parses `frame` again and records it for `port` in `vlan` (the
    /// learning VLAN) at `now`. Reports: each record joins or leaves (`MembershipRecord.
    /// isLeave`); a leave leaves; a query makes `port` a router port of `vlan` and is told
    /// to the querier. Allocates nothing.
    @discardableResult
    public func snoop(frame: UnsafeRawBufferPointer, verifyChecksums: Bool, port: PortIndex, vlan: VLANID,
                      now: MonotonicInstant) -> SnoopOutcome {
        var out = SnoopOutcome()
        guard let h = FrameHeader.parse(frame) else { return out }
        switch MulticastSignal.parse(frame, l3Offset: h.payloadOffset, etherType: h.etherType, verifyChecksums: verifyChecksums) {
        case .report(let r):
            for rec in r.records(in: frame) where rec.isKnownType && !rec.group.isLinkLocalMulticast {
                if rec.isLeave {
                    if leave(vlan: vlan, group: rec.group, port: port) { out.left += 1 }
                } else {
                    switch join(vlan: vlan, group: rec.group, port: port, now: now) {
                    case .joined: out.joined += 1
                    case .refreshed: out.refreshed += 1
                    case .tableFull: out.refused += 1
                    case .linkLocal: break
                    }
                }
            }
        case .leave(let g, _):
            if leave(vlan: vlan, group: g, port: port) { out.left += 1 }
        case .query(let q):
            markRouter(vlan: vlan, port: port, now: now)
            out.markedRouter = true
            querier?.heard(q, vlan: vlan, now: now)
        case .notSnooped, .data, .malformed:
            break
        }
        return out
    }
}

// MARK: - Reading it out (control path)

extension MulticastGroupTable {
    /// One membership as `tapestry mdb` shows it.
    public struct Entry: Equatable, Sendable {
        public var vlan: VLANID
        public var group: WireIPAddress
        public var port: PortIndex
        /// Since the last report (zero for static entries).
        public var age: Duration
        /// Until it ages out (nil: static).
        public var expiresIn: Duration?
        public var isStatic: Bool { expiresIn == nil }
    }

    /// One dynamic router entry.
    public struct RouterEntry: Equatable, Sendable {
        public var vlan: VLANID
        public var port: PortIndex
        public var age: Duration
        public var expiresIn: Duration
    }

    /// Copies up to `out.count` memberships, starting at pool position `cursor` (advanced
    /// past what was read), into `out`; returns how many. Allocates nothing: a caller reads
    /// the table a chunk per lock hold (as `MACTable.copyEntries`).
    public func copyEntries(from cursor: inout Int, into out: UnsafeMutableBufferPointer<Entry>, now: MonotonicInstant) -> Int {
        var n = 0
        while cursor < membershipCapacity && n < out.count {
            let m = cursor
            cursor += 1
            guard memberPortOf[m] >= 0 else { continue }
            let s = Int(memberGroup[m])
            let isStatic = memberExpires[m] == .max
            out[n] = Entry(vlan: VLANID(groupVLAN[s]), group: WireIPAddress(high: groupHigh[s], low: groupLow[s]),
                           port: Int(memberPortOf[m]), age: isStatic ? .zero : .nanoseconds(max(0, now.nanoseconds - memberSeen[m])),
                           expiresIn: isStatic ? nil : .nanoseconds(max(0, memberExpires[m] - now.nanoseconds)))
            n += 1
        }
        return n
    }

    /// Every dynamic router entry (the pool is small: `routerCapacity`).
    public func routerEntries(now: MonotonicInstant) -> [RouterEntry] {
        var out: [RouterEntry] = []
        for r in 0..<routerCapacity where routerPortOf[r] >= 0 {
            out.append(RouterEntry(vlan: VLANID(routerVLAN[r]), port: Int(routerPortOf[r]),
                                   age: .nanoseconds(max(0, now.nanoseconds - routerSeen[r])),
                                   expiresIn: .nanoseconds(max(0, routerExpires[r] - now.nanoseconds))))
        }
        return out
    }

    /// Moves what `old` knew about ports that survive a reload (`newIndex[old port]`, -1:
    /// gone) into this table: memberships keep their age and expiry; routers too.
    public func carryOver(from old: MulticastGroupTable, newIndex: [Int], isMember: (VLANID, PortIndex) -> Bool, now: MonotonicInstant) {
        var m = Int(old.lruHead)
        while m >= 0 {
            let s = Int(old.memberGroup[m]), p = Int(old.memberPortOf[m])
            let vlan = VLANID(old.groupVLAN[s])
            if p < newIndex.count, newIndex[p] >= 0, isMember(vlan, newIndex[p]) {
                let group = WireIPAddress(high: old.groupHigh[s], low: old.groupLow[s])
                if join(vlan: vlan, group: group, port: newIndex[p], now: MonotonicInstant(nanoseconds: old.memberSeen[m])) == .joined {
                    let k = slot(vlan: vlan, group: group)
                    let mine = membership(ofGroup: k, port: newIndex[p])
                    if mine >= 0 && memberExpires[mine] != .max { memberExpires[mine] = old.memberExpires[m] }
                }
            }
            m = Int(old.lruNext[m])
        }
        for e in old.routerEntries(now: now) where e.port < newIndex.count && newIndex[e.port] >= 0 && isMember(e.vlan, newIndex[e.port]) {
            markRouter(vlan: e.vlan, port: newIndex[e.port], now: now - (.nanoseconds(routerNanoseconds) - e.expiresIn))
        }
    }
}
