import Testing
import Model
import Core
import TestSupport

@Suite struct MACTableTests {
    let v10 = VLANID(10), v20 = VLANID(20)

    @Test func learnsPerVLAN() {
        let t = MACTable(limit: 16)
        #expect(t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(0)) == .learned)
        #expect(t.lookup(vlan: v10, mac: mac(1)) == 0)
        #expect(t.lookup(vlan: v20, mac: mac(1)) == nil, "same MAC in another VLAN is another entry")
        #expect(t.learn(vlan: v20, mac: mac(1), port: 3, now: .seconds(0)) == .learned)
        #expect(t.lookup(vlan: v20, mac: mac(1)) == 3 && t.lookup(vlan: v10, mac: mac(1)) == 0)
        #expect(t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(5)) == .refreshed)
        #expect(t.count == 2)
    }

    @Test func agingWithManualClock() {
        let t = MACTable(limit: 16)
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(100))
        t.learn(vlan: v10, mac: mac(2), port: 1, now: .seconds(200))
        #expect(t.expire(now: .seconds(399), aging: .seconds(300)) == 0)
        #expect(t.age(vlan: v10, mac: mac(1), now: .seconds(399)) == .seconds(299))
        #expect(t.expire(now: .seconds(401), aging: .seconds(300)) == 1)
        #expect(t.lookup(vlan: v10, mac: mac(1)) == nil && t.lookup(vlan: v10, mac: mac(2)) == 1)
        // A refresh restarts the clock.
        t.learn(vlan: v10, mac: mac(2), port: 1, now: .seconds(450))
        #expect(t.expire(now: .seconds(600), aging: .seconds(300)) == 0)
        #expect(t.expire(now: .seconds(751), aging: .seconds(300)) == 1)
        #expect(t.count == 0)
    }

    @Test func movesAtOnce() {
        let t = MACTable(limit: 16)
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(0))
        #expect(t.learn(vlan: v10, mac: mac(1), port: 2, now: .seconds(1)) == .moved(from: 0))
        #expect(t.lookup(vlan: v10, mac: mac(1)) == 2)
        #expect(t.count(port: 0) == 0 && t.count(port: 2) == 1 && t.moves == 1)
    }

    @Test func staticEntriesNeitherMoveNorAge() {
        let t = MACTable(limit: 16)
        #expect(t.addStatic(vlan: v10, mac: mac(9), port: 4))
        #expect(t.learn(vlan: v10, mac: mac(9), port: 1, now: .seconds(0)) == .staticEntry)
        #expect(t.lookup(vlan: v10, mac: mac(9)) == 4)
        #expect(t.expire(now: .seconds(1_000_000), aging: .seconds(300)) == 0)
        #expect(t.lookup(vlan: v10, mac: mac(9)) == 4)
        #expect(t.entries(now: .seconds(5)).first { $0.mac == mac(9) }?.isStatic == true)
    }

    /// `learn`'s inlined fast path (same port, same second: nothing to do) must not mistake a
    /// static entry, stored with time 0, for a dynamic one seen this second.
    @Test func fastPathLeavesStaticEntriesAlone() {
        let t = MACTable(limit: 16)
        #expect(t.addStatic(vlan: v10, mac: mac(9), port: 4))
        #expect(t.learn(vlan: v10, mac: mac(9), port: 4, now: .seconds(0)) == .staticEntry)
        #expect(t.count == 0 && t.staticCount == 1)
        #expect(t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(7)) == .learned)
        #expect(t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(7)) == .refreshed)
        #expect(t.age(vlan: v10, mac: mac(1), now: .seconds(9)) == .seconds(2))
        #expect(t.count == 1 && t.count(port: 0) == 1)
    }

    @Test func fairEvictionTakesFromTheFullestPort() {
        let t = MACTable(limit: 8)
        // Port 0 holds 2 entries, port 1 floods 6 random sources: the table is full.
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(0))
        t.learn(vlan: v10, mac: mac(2), port: 0, now: .seconds(1))
        for i in 0..<6 { t.learn(vlan: v10, mac: mac(100 + UInt64(i)), port: 1, now: .seconds(2 + Int64(i))) }
        #expect(t.count == 8)
        // Port 1 keeps learning: only its own oldest entries go.
        for i in 6..<50 {
            let outcome = t.learn(vlan: v10, mac: mac(100 + UInt64(i)), port: 1, now: .seconds(10 + Int64(i)))
            #expect(outcome == .learnedAfterEviction(evictedPort: 1))
        }
        #expect(t.lookup(vlan: v10, mac: mac(1)) == 0 && t.lookup(vlan: v10, mac: mac(2)) == 0)
        #expect(t.count == 8 && t.count(port: 1) == 6 && t.evictions == 44)
        #expect(t.lookup(vlan: v10, mac: mac(149)) == 1 && t.lookup(vlan: v10, mac: mac(100)) == nil)
        // A newcomer on port 2 evicts from port 1 (the fullest), not port 0.
        #expect(t.learn(vlan: v10, mac: mac(7), port: 2, now: .seconds(100)) == .learnedAfterEviction(evictedPort: 1))
        #expect(t.count(port: 0) == 2)
    }

    @Test func evictionPrefersLeastRecentlySeen() {
        let t = MACTable(limit: 3)
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(0))
        t.learn(vlan: v10, mac: mac(2), port: 0, now: .seconds(1))
        t.learn(vlan: v10, mac: mac(3), port: 0, now: .seconds(2))
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(3))   // refresh: mac 2 is now the oldest
        t.learn(vlan: v10, mac: mac(4), port: 0, now: .seconds(4))
        #expect(t.lookup(vlan: v10, mac: mac(2)) == nil)
        #expect(t.lookup(vlan: v10, mac: mac(1)) == 0 && t.lookup(vlan: v10, mac: mac(3)) == 0)
    }

    @Test func flushRemovesAPortsEntries() {
        let t = MACTable(limit: 16)
        t.learn(vlan: v10, mac: mac(1), port: 0, now: .seconds(0))
        t.learn(vlan: v20, mac: mac(2), port: 0, now: .seconds(0))
        t.learn(vlan: v10, mac: mac(3), port: 1, now: .seconds(0))
        #expect(t.flush(port: 0) == 2)
        #expect(t.count == 1 && t.lookup(vlan: v10, mac: mac(3)) == 1)
    }

    /// Random inserts, moves and expiries against a Dictionary model: the open-addressing
    /// index with backward-shift deletion must never lose or invent an entry.
    @Test func agreesWithAReferenceModel() {
        var rng = SplitMix(seed: 42)
        let t = MACTable(limit: 512)
        var model: [UInt64: (port: Int, seen: Int64)] = [:]
        var now: Int64 = 0
        for _ in 0..<20_000 {
            now += Int64(rng.next() % 2)
            let m = mac(rng.next() % 700)
            let v = VLANID(UInt16(rng.next() % 3))
            let port = Int(rng.next() % 5)
            let key = UInt64(v.rawValue) << 48 | m.rawValue
            if model[key] == nil && model.count >= 512 {
                // Eviction picks a victim we cannot predict cheaply here: keep below the limit.
                continue
            }
            t.learn(vlan: v, mac: m, port: port, now: .seconds(now))
            model[key] = (port, now)
            if rng.next() % 50 == 0 {
                t.expire(now: .seconds(now), aging: .seconds(30))
                model = model.filter { now - $0.value.seen <= 30 }
            }
        }
        #expect(t.count == model.count)
        for (key, e) in model {
            #expect(t.lookup(vlan: VLANID(UInt16(key >> 48)), mac: MACAddress(rawValue: key)) == e.port)
        }
        #expect(t.entries(now: .seconds(now)).count == model.count)
    }
}

/// A tiny deterministic generator for repeatable randomised tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
