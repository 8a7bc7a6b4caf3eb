import Foundation
import Testing
@testable import FabricStore

/// Pure HA, placement, start-up, isolation and migration decisions, on made-up snapshots.
enum Fixture {
    static let hash = FabricSpec.hash(of: Array("name: lab\n".utf8))
    /// h1, h2, h3 with 4 CPUs / 1024 MiB (h3: 2 CPUs / 512 MiB); vm1..vm3 on h1, web (netns) on h1.
    static func spec(h3CPUs: Int? = 2, h3Memory: Int? = 512) -> FabricSpec {
        FabricSpec(topology: "lab", topologyHash: hash,
                   hosts: [FabricHost(name: "h1", underlay: "192.0.2.1", cpus: 4, memoryMiB: 1024),
                           FabricHost(name: "h2", underlay: "192.0.2.2", cpus: 4, memoryMiB: 1024),
                           FabricHost(name: "h3", underlay: "192.0.2.3", cpus: h3CPUs, memoryMiB: h3Memory)],
                   guests: [FabricGuest(name: "vm1", kind: .qemu, host: "h1", cpus: 2, memoryMiB: 512, restart: .onFailure),
                            FabricGuest(name: "vm2", kind: .qemu, host: "h1", cpus: 1, memoryMiB: 256, restart: .always),
                            FabricGuest(name: "vm3", kind: .qemu, host: "h1", cpus: 1, memoryMiB: 128, restart: .never),
                            FabricGuest(name: "web", kind: .netns, host: "h1", restart: .onFailure),
                            FabricGuest(name: "ext", kind: .external, host: "h1", restart: .always),
                            FabricGuest(name: "db", kind: .qemu, host: "h2", cpus: 2, memoryMiB: 512, restart: .onFailure)])
    }

    static func member(_ h: String, lease: Int64, hash: String = Fixture.hash, created: Int64 = 10) -> FabricSnapshot.Member {
        .init(record: MemberRecord(host: h, underlay: "192.0.2.\(h.last!)", pid: 1, topologyHash: hash, guests: [], startedAt: 0),
              lease: lease, createRevision: created)
    }

    static func placement(_ g: String, on h: String, rev: Int64 = 5) -> FabricSnapshot.Placement {
        .init(record: PlacementRecord(guest: g, host: h, reason: .initial, at: 0), modRevision: rev)
    }

    /// Every guest placed where the spec says; the given hosts alive (lease = index + 1).
    static func snapshot(alive: [String], spec: FabricSpec = Fixture.spec(), hashes: [String: String] = [:]) -> FabricSnapshot {
        var members: [String: FabricSnapshot.Member] = [:]
        for (i, h) in alive.enumerated() { members[h] = member(h, lease: Int64(i + 1), hash: hashes[h] ?? hash) }
        var placements: [String: FabricSnapshot.Placement] = [:]
        for (n, g) in spec.guests { placements[n] = placement(n, on: g.host, rev: Int64(100 + n.count)) }
        return FabricSnapshot(revision: 200, members: members, placements: placements)
    }
}

@Suite struct PlacementTests {
    @Test func capacityCountsEffectivePlacement() {
        let spec = Fixture.spec()
        var snap = Fixture.snapshot(alive: ["h1", "h2"])
        snap.placements["vm2"] = Fixture.placement("vm2", on: "h2")
        let cap = Placement.capacity(spec: spec, placement: Placement.effective(spec: spec, snapshot: snap))
        #expect(cap["h1"] == HostCapacity(cpus: 4, memoryMiB: 1024, usedCPUs: 3, usedMemoryMiB: 640))
        #expect(cap["h2"] == HostCapacity(cpus: 4, memoryMiB: 1024, usedCPUs: 3, usedMemoryMiB: 768))
        #expect(cap["h3"]?.usedCPUs == 0)
        #expect(cap["h1"]!.fits(cpus: 1, memoryMiB: 384))
        #expect(!cap["h1"]!.fits(cpus: 2, memoryMiB: 1))
        #expect(!cap["h1"]!.fits(cpus: 0, memoryMiB: 385))
        #expect(HostCapacity(cpus: nil, memoryMiB: nil, usedCPUs: 100, usedMemoryMiB: 1 << 20).fits(cpus: 64, memoryMiB: 1 << 20))
    }

    @Test func choosesByHeadroomLargestFirstAndReportsMisfits() {
        let cap: [String: HostCapacity] = [
            "a": HostCapacity(cpus: 4, memoryMiB: 1024, usedCPUs: 2, usedMemoryMiB: 512),   // half used
            "b": HostCapacity(cpus: 8, memoryMiB: 4096, usedCPUs: 2, usedMemoryMiB: 1024),  // quarter used
        ]
        let big = FabricGuest(name: "big", kind: .qemu, host: "x", cpus: 4, memoryMiB: 2048, restart: .always)
        let small = FabricGuest(name: "small", kind: .qemu, host: "x", cpus: 1, memoryMiB: 256, restart: .always)
        let huge = FabricGuest(name: "huge", kind: .qemu, host: "x", cpus: 1, memoryMiB: 8192, restart: .always)
        let r = Placement.choose([small, huge, big], candidates: ["a", "b"], capacity: cap)
        // big first (largest) goes to b (only fit); then small: a keeps 0.5 - 0.25 = 0.25 of memory
        // headroom, b after big keeps 1024/4096 = 0.25 of memory but 1/8 of CPUs: a wins.
        #expect(r.placed.map { "\($0.guest)@\($0.host)" } == ["big@b", "small@a"])
        #expect(r.unplaceable.map(\.guest) == ["huge"])
        #expect(r.unplaceable[0].reason.contains("needs 1 CPUs and 8192 MiB"))
        let none = Placement.choose([small], candidates: [], capacity: cap)
        #expect(none.unplaceable[0].reason.contains("no surviving host"))
        // Equal hosts: the name breaks the tie, so every survivor computes the same plan.
        let equal = Placement.choose([small], candidates: ["y", "x"], capacity: ["x": HostCapacity(cpus: 2, memoryMiB: nil, usedCPUs: 0, usedMemoryMiB: 0),
                                                                                 "y": HostCapacity(cpus: 2, memoryMiB: nil, usedCPUs: 0, usedMemoryMiB: 0)])
        #expect(equal.placed.map(\.host) == ["x"])
    }

    @Test func hashMismatchesAreReported() {
        let snap = Fixture.snapshot(alive: ["h1", "h2", "h3"], hashes: ["h3": "beef"])
        #expect(Placement.hashMismatches(snap, expected: Fixture.hash) == ["h3": "beef"])
        #expect(FabricSpec.hash(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

@Suite struct FailoverMonitorTests {
    @Test func waitsGraceThenPlansRestartsOfEligibleGuests() {
        let spec = Fixture.spec()
        var m = FailoverMonitor(me: "h2", grace: 3)
        let alive = Fixture.snapshot(alive: ["h1", "h2", "h3"])
        #expect(m.observe(alive, spec: spec, myLease: 2, now: 100).deadHosts.isEmpty)
        let h1Dead = Fixture.snapshot(alive: ["h2", "h3"])
        // h2 is index 0 → lease 1 in this snapshot.
        var d = m.observe(h1Dead, spec: spec, myLease: 1, now: 101)
        #expect(d.deadHosts == ["h1": 0])
        #expect(d.restarts.isEmpty)
        d = m.observe(h1Dead, spec: spec, myLease: 1, now: 103.9)
        #expect(d.restarts.isEmpty)
        d = m.observe(h1Dead, spec: spec, myLease: 1, now: 104)
        // vm1 (2 CPUs, 512) and vm2 (1, 256) and web (netns) restart; vm3 (never) and ext (external) do not.
        #expect(d.restarts.map(\.guest) == ["vm1", "vm2", "web"])
        #expect(d.restarts.allSatisfy { $0.from == "h1" })
        // h2 already holds db (2 CPUs, 512 MiB): vm1 (largest) → h3 (headroom 0 vs h2's 0.0?)
        let hosts = Dictionary(uniqueKeysWithValues: d.restarts.map { ($0.guest, $0.to) })
        // h2 after vm1: CPUs 0/4 left → headroom 0; h3 after vm1: 0/2 CPUs → 0. Tie → more free memory: h2 (512 vs 512 → h2 by name).
        #expect(hosts["vm1"] == "h2")
        #expect(hosts["vm2"] == "h3")
        #expect(d.restarts.first { $0.guest == "vm1" }?.placementRevision == 103)
        #expect(d.unplaceable.isEmpty)
    }

    @Test func decidesNothingWithoutItsOwnLease() {
        let spec = Fixture.spec()
        var m = FailoverMonitor(me: "h2", grace: 0)
        let h1Dead = Fixture.snapshot(alive: ["h2", "h3"])
        #expect(m.observe(h1Dead, spec: spec, myLease: 99, now: 10).restarts.isEmpty)   // another lease
        #expect(m.observe(h1Dead, spec: spec, myLease: 0, now: 11).restarts.isEmpty)    // none
        let meGone = Fixture.snapshot(alive: ["h3"])
        #expect(m.observe(meGone, spec: spec, myLease: 1, now: 12).restarts.isEmpty)
        #expect(!m.observe(h1Dead, spec: spec, myLease: 1, now: 13).restarts.isEmpty)
    }

    @Test func aHostSeenAliveAgainResetsItsTimer() {
        let spec = Fixture.spec()
        var m = FailoverMonitor(me: "h2", grace: 3)
        let h1Dead = Fixture.snapshot(alive: ["h2", "h3"])
        _ = m.observe(h1Dead, spec: spec, myLease: 1, now: 0)
        _ = m.observe(Fixture.snapshot(alive: ["h1", "h2", "h3"]), spec: spec, myLease: 2, now: 2)
        #expect(m.observe(h1Dead, spec: spec, myLease: 1, now: 4).restarts.isEmpty)
        #expect(m.deadSince["h1"] == 4)
        #expect(!m.observe(h1Dead, spec: spec, myLease: 1, now: 7).restarts.isEmpty)
    }

    @Test func onlySameTopologySurvivorsAreCandidatesAndMisfitsAreReported() {
        let spec = Fixture.spec(h3CPUs: 1, h3Memory: 128)
        var m = FailoverMonitor(me: "h3", grace: 0)
        // h2 runs another file: only h3 (1 CPU, 128 MiB) is a candidate.
        let snap = Fixture.snapshot(alive: ["h2", "h3"], spec: spec, hashes: ["h2": "other"])
        let d = m.observe(snap, spec: spec, myLease: 2, now: 1)
        #expect(d.hashMismatches == ["h2": "other"])
        #expect(d.restarts.map(\.guest) == ["web"])   // a netns guest reserves nothing
        #expect(Set(d.unplaceable.keys) == ["vm1", "vm2"])
        #expect(d.unplaceable["vm2"]!.contains("h3: 0/1 CPUs"))
    }
}

@Suite struct StartupTests {
    @Test func returningHostStartsWhatIsPlacedOnItOnly() {
        let spec = Fixture.spec()
        var snap = Fixture.snapshot(alive: ["h2"])
        snap.placements["vm1"] = .init(record: PlacementRecord(guest: "vm1", host: "h2", reason: .failover, from: "h1", at: 0), modRevision: 9)
        snap.placements["db"] = .init(record: PlacementRecord(guest: "db", host: "h1", reason: .migration, from: "h2", at: 0), modRevision: 9)
        snap.placements["vm2"] = nil   // never recorded
        let plan = Startup.plan(spec: spec, me: "h1", snapshot: snap)
        #expect(plan.start == ["db", "ext", "vm2", "vm3", "web"])
        #expect(plan.withheld.keys.sorted() == ["vm1"])
        #expect(plan.withheld["vm1"] == "placed on host h2 (failover from h1)")
    }

    @Test func etcdUnreachableWithholdsEveryGuestThatMayHaveMoved() {
        let plan = Startup.plan(spec: Fixture.spec(), me: "h1", snapshot: nil, unreachableReason: "etcd is unreachable (refused)")
        // vm3 is QEMU (migration moves QEMU guests), web has a restart policy; ext (a
        // vhost-user frontend Tapestry does not start) can never move.
        #expect(plan.start == ["ext"])
        #expect(plan.withheld.count == 4)
        #expect(plan.withheld["vm1"]!.hasPrefix("etcd is unreachable (refused): cannot tell"))
        var spec = Fixture.spec()
        spec.guests["web"]!.restart = .never
        #expect(Startup.plan(spec: spec, me: "h1", snapshot: nil).start == ["ext", "web"])
    }
}

@Suite struct MigrationCheckTests {
    @Test func refusalsAndPlan() {
        let spec = Fixture.spec()
        let snap = Fixture.snapshot(alive: ["h1", "h2"], hashes: [:])
        func refusal(_ g: String, _ to: String, from: String = "h1", _ s: FabricSnapshot? = nil) -> MigrationRefusal? {
            do { _ = try Migration.check(guest: g, to: to, from: from, spec: spec, snapshot: s ?? snap); return nil }
            catch { return error }
        }
        #expect(refusal("nope", "h2") == .unknownGuest("nope"))
        #expect(refusal("web", "h2") == .notQEMU(guest: "web", kind: .netns))
        #expect(refusal("vm1", "h9") == .unknownHost("h9"))
        #expect(refusal("vm1", "h1") == .alreadyThere(guest: "vm1", host: "h1"))
        #expect(refusal("vm1", "h3") == .hostDead("h3"))
        #expect(refusal("db", "h3", from: "h1") == .notPlacedHere(guest: "db", placedOn: "h2", source: "h1"))
        let other = Fixture.snapshot(alive: ["h1", "h2"], hashes: ["h2": "feed"])
        if case .differentTopology(let h, let hash, _) = refusal("vm1", "h2", other) { #expect(h == "h2" && hash == "feed") }
        else { Issue.record("different topology not refused") }
        // h2 holds db (2 CPUs, 512); vm1 (2, 512) fits; with vm2 moved there first it does not.
        var full = snap
        full.placements["vm2"] = Fixture.placement("vm2", on: "h2")
        if case .noCapacity(_, let h, _, let has) = refusal("vm1", "h2", full) { #expect(h == "h2" && has == "3/4 CPUs, 768/1024 MiB") }
        else { Issue.record("no capacity not refused") }
        let plan = try? Migration.check(guest: "vm1", to: "h2", from: "h1", spec: spec, snapshot: snap)
        #expect(plan == MigrationPlan(guest: "vm1", from: "h1", to: "h2", destinationUnderlay: "192.0.2.2", placementRevision: 103, destinationRegistration: 10))
        #expect(MigrationRefusal.hostDead("h3").description.contains("not alive"))
    }
}

@Suite struct IsolationMonitorTests {
    @Test func isolatedOnlyAfterTTLWithoutAnyAnswer() {
        var m = IsolationMonitor(ttl: 3, renewedAt: 100)
        #expect(!m.leaseLost(now: 102.9))
        #expect(m.probed(anyAnswered: false, now: 102.9, response: .powerOff) == .nothing)   // lease not lost yet
        #expect(m.leaseLost(now: 103.1))
        // etcd outage while an isolation address answers: nothing is powered off.
        #expect(m.probed(anyAnswered: true, now: 103.5, response: .powerOff) == .nothing)
        #expect(!m.isolated)
        #expect(m.probed(anyAnswered: false, now: 104, response: .powerOff) == .isolated(powerOff: true))
        #expect(m.isolated)
        #expect(m.probed(anyAnswered: false, now: 105, response: .powerOff) == .nothing)   // once per episode
        #expect(m.probed(anyAnswered: true, now: 106, response: .powerOff) == .recovered)
        #expect(m.probed(anyAnswered: false, now: 107, response: .powerOff) == .isolated(powerOff: false))   // already off
        #expect(m.renewed(sentAt: 108) == .recovered)
        #expect(!m.leaseLost(now: 110))
        #expect(m.probed(anyAnswered: false, now: 111.5, response: .powerOff) == .isolated(powerOff: true))
        var none = IsolationMonitor(ttl: 3, renewedAt: 0)
        #expect(none.probed(anyAnswered: false, now: 5, response: .none) == .isolated(powerOff: false))
    }

    @Test func icmpChecksum() {
        // RFC 1071 example bytes: 00 01 f2 03 f4 f5 f6 f7 → sum 0xddf2, checksum 0x220d.
        #expect(ICMPProbe.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == 0x220d)
    }
}

@Suite struct FabricKeysAndRecordsTests {
    @Test func layoutAndRecordsRoundTrip() throws {
        let k = FabricKeys(topology: "lab")
        #expect(k.member("h1") == "/tapestry/v1/lab/members/h1")
        #expect(k.placement("vm1") == "/tapestry/v1/lab/placement/vm1")
        #expect(k.claim("vm1") == "/tapestry/v1/lab/claims/vm1")
        #expect(FabricKeys.name(of: "/tapestry/v1/lab/members/h1", under: k.membersPrefix) == "h1")
        #expect(FabricKeys.name(of: "/tapestry/v1/lab/members/h1/x", under: k.membersPrefix) == nil)
        #expect(FabricKeys.name(of: "/tapestry/v1/lab/members/", under: k.membersPrefix) == nil)
        let m = MemberRecord(host: "h1", underlay: "192.0.2.1", pid: 42, topologyHash: "ab", guests: ["b", "a"], startedAt: 1.5)
        let bytes = encodeRecord(m)
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"guests":["a","b"],"host":"h1","pid":42,"started_at":1.5,"topology_hash":"ab","underlay":"192.0.2.1"}"#)
        #expect(decodeRecord(MemberRecord.self, bytes) == m)
        let p = PlacementRecord(guest: "vm1", host: "h2", reason: .failover, from: "h1", at: 2)
        #expect(decodeRecord(PlacementRecord.self, encodeRecord(p)) == p)
        #expect(decodeRecord(PlacementRecord.self, Array("{\"guest\":1}".utf8)) == nil)
        #expect(prefixEnd(Array("/a/".utf8)) == Array("/a0".utf8))
        #expect(prefixEnd([0x61, 0xff]) == [0x62])
    }
}

/// A guest moves (HA or migration) only to a host that runs every switch of its NICs, and
/// never while another migration of it is in flight.
@Suite struct SwitchAdmissionTests {
    static func spec() -> FabricSpec {
        FabricSpec(topology: "lab", topologyHash: Fixture.hash,
                   hosts: [FabricHost(name: "h1", underlay: "192.0.2.1", cpus: 4, memoryMiB: 1024, switches: ["sw0", "sw1"]),
                           FabricHost(name: "h2", underlay: "192.0.2.2", cpus: 4, memoryMiB: 1024, switches: ["sw0"]),
                           FabricHost(name: "h3", underlay: "192.0.2.3", cpus: 8, memoryMiB: 4096, switches: ["sw0", "sw1"])],
                   guests: [FabricGuest(name: "both", kind: .qemu, host: "h1", cpus: 1, memoryMiB: 256, restart: .onFailure, switches: ["sw0", "sw1"]),
                            FabricGuest(name: "one", kind: .qemu, host: "h1", cpus: 1, memoryMiB: 256, restart: .onFailure, switches: ["sw0"])])
    }

    @Test func failoverGoesOnlyWhereTheSwitchesRun() {
        let spec = Self.spec()
        let cap = Placement.capacity(spec: spec, placement: [:])
        #expect(cap["h2"]!.runs(["sw0"]) && !cap["h2"]!.runs(["sw0", "sw1"]))
        #expect(HostCapacity(cpus: nil, memoryMiB: nil, usedCPUs: 0, usedMemoryMiB: 0).runs(["anything"]), "nil: any switch" as Comment)
        // "both" needs sw1: of h2 and h3, only h3 qualifies.
        let c = Placement.choose([spec.guests["both"]!, spec.guests["one"]!], candidates: ["h2", "h3"], capacity: cap)
        #expect(c.placed.first { $0.guest == "both" }?.host == "h3")
        #expect(c.unplaceable.isEmpty)
        let none = Placement.choose([spec.guests["both"]!], candidates: ["h2"], capacity: cap)
        #expect(none.placed.isEmpty && none.unplaceable.first?.reason.contains("runs its switches (sw0, sw1)") == true, "\(none.unplaceable)")
    }

    @Test func migrationRefusesMissingSwitchesAndASecondMigration() {
        let spec = Self.spec()
        var snap = Fixture.snapshot(alive: ["h1", "h2", "h3"], spec: spec)
        do { _ = try Migration.check(guest: "both", to: "h2", from: "h1", spec: spec, snapshot: snap); Issue.record("not refused") }
        catch { #expect(error == .switchesMissing(guest: "both", host: "h2", missing: ["sw1"])); #expect("\(error)".contains("sw1 does not run there")) }
        #expect((try? Migration.check(guest: "one", to: "h2", from: "h1", spec: spec, snapshot: snap)) != nil)
        snap.migrations["one"] = .init(record: MigrationRecord(id: "x", guest: "one", from: "h1", to: "h3", state: .requested, at: 0), modRevision: 7, lease: 1)
        do { _ = try Migration.check(guest: "one", to: "h2", from: "h1", spec: spec, snapshot: snap); Issue.record("not refused") }
        catch { #expect(error == .alreadyMigrating(guest: "one", to: "h3")) }
    }

    @Test func migrationRecordRoundTripsWithItsCounters() throws {
        let r = MigrationRecord(id: "ab12", guest: "vm1", from: "h1", to: "h2", state: .committed, listen: "[fd77::2]:40000",
                                counters: ["vm1.eth0": PortCarry(rxFrames: 1, rxBytes: 2, txFrames: 3, txBytes: 4, drops: ["hairpin": 5])],
                                error: nil, at: 9)
        let bytes = encodeRecord(r)
        #expect(decodeRecord(MigrationRecord.self, bytes) == r)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"rx_frames\":1") && text.contains("\"state\":\"committed\""), "\(text)")
        #expect(FabricKeys(topology: "lab").migration("vm1") == "/tapestry/v1/lab/migrations/vm1")
    }
}
