// libFuzzer target "reload": the pure half of a live reload, bounded.
//
// The input is two topology files separated by a NUL byte: the running one and the one
// `tapestry reload` is given (without a NUL, the running one is `base` below, a topology with
// every policy on, and the input is the new file). Both go through TopologyLoader.parse (the
// loader's own limits: Topologies/README.md "Limits"); a running topology is always valid, so
// an invalid first file is skipped, and an invalid second file must say why. Then
// Topology.diff(old, new), compile() of both, and for every switch in both the carry-over a
// reload does between the old switch's state and the new one (SwitchRuntime.carryOver's
// Core steps: MAC entries by port name, multicast memberships and router entries, shaping
// buckets, the querier), then one frame through `decide` from every new port.
//
// Checks: diff is pure and consistent (old → old is empty; what old → new adds, new → old
// removes; a guest or switch is never both added and changed); a diff that says "no
// changes" really changes no plan (a reload would ignore the change silently otherwise);
// carried state lands only on ports of the new plan that may hold it, within every table's
// capacity. Scripts/fuzz.sh runs it with -rss_limit_mb and -timeout: two files the loader
// accepts must not make a reload's planning take unbounded memory or time.
import Core
import Model
import Topology

private func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("fuzz-reload invariant violated: \(what())") }
}

/// The running topology when the input has no NUL: two switches joined by a link, uplinks,
/// a mirror, shaping, a private VLAN, snooping with a querier, static groups and router ports.
private let base = """
name: fuzz
switches:
  sw0:
    uplinks: {nics: [eth1, eth2], policy: failover-order, active: [eth1], standby: [eth2]}
    private-vlans:
      100: {isolated: 101, community: [102]}
    multicast-snooping: true
    multicast-querier: true
    multicast-membership-interval: 60s
    multicast-router-ports: [r.eth0]
    multicast-static-groups:
      - {group: 239.1.1.1, ports: [a.eth0]}
      - {group: "ff15::1", vlan: 101, ports: [i.eth0]}
    mac-table: {aging: 60s, limit: 1024, static: [{mac: "02:00:00:00:00:99", port: b.eth0}]}
    port-groups:
      web: {vlan: 10, shaping: {ingress: {average: 50mbit, burst: 2MiB}}}
      db: {vlan: 20, storm-control: {broadcast: 100}}
      prom: {vlan: {private: 100}}
      iso: {vlan: {private: 101}}
      comm: {vlan: {private: 102}, shaping: {egress: {average: 10mbit, peak: 20mbit}}}
      tr: {vlan: {trunk: [10, 20, 100-102], native: 10}}
      mon: {vlan: 10}
    mirrors: [{name: span, source: [web], destination: {port-group: mon}}]
  sw1:
    port-groups:
      tr: {vlan: {trunk: [10, 20]}}
      v10: {vlan: 10}
links: [{between: [sw0/tr, sw1/tr]}]
guests:
  a: {kind: netns, nics: [{switch: sw0, port-group: web}]}
  b: {kind: netns, nics: [{switch: sw0, port-group: db}, {switch: sw1, port-group: v10}]}
  p: {kind: netns, nics: [{switch: sw0, port-group: prom}]}
  i: {kind: netns, nics: [{switch: sw0, port-group: iso}]}
  c: {kind: netns, nics: [{switch: sw0, port-group: comm}]}
  r: {kind: netns, nics: [{switch: sw0, port-group: tr}]}
  m: {kind: netns, nics: [{switch: sw0, port-group: mon}]}
"""

private let probe: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06] + [UInt8](repeating: 0, count: 46)

/// The Core state of one switch, as a SwitchRuntime holds it (tables kept small: their size
/// is not what this target is about).
private struct SwitchState {
    let plan: SwitchPlan
    let table: MACTable
    let groups: MulticastGroupTable?
    let shaper: TrafficShaper

    init(_ plan: SwitchPlan) {
        self.plan = plan
        table = MACTable(limit: max(1, min(plan.macLimit, 64)), staticCapacity: max(16, plan.staticEntries.count), portCount: plan.ports.count)
        for e in plan.staticEntries { table.addStatic(vlan: plan.learningVLAN(e.vlan), mac: e.mac, port: e.port) }
        groups = plan.multicast.map { m in
            MulticastGroupTable(snooping: m, portCount: plan.ports.count,
                                querier: m.querier.map { MulticastQuerier(settings: $0, vlans: MulticastQuerier.queriedVLANs(of: plan), now: .seconds(0)) })
        }
        shaper = TrafficShaper(plan: plan)
    }

    /// Traffic on the old switch: each port (the first 64) learns a MAC, joins a group and
    /// is a router port in its first VLAN, and spends shaping tokens; the querier sends.
    func exercise() {
        for (i, p) in plan.ports.enumerated().prefix(64) where !plan.isMirrorDestination[i] {
            guard let v = p.mode.memberVLANs.first else { continue }
            let lv = plan.learningVLAN(v)
            table.learn(vlan: lv, mac: MACAddress(rawValue: 0x0200_0000_1000 + UInt64(i)), port: i, now: .seconds(10))
            groups?.join(vlan: lv, group: WireIPAddress(ipv4: 0xEF00_0100 + UInt32(i)), port: i, now: .seconds(10))
            if i % 3 == 0 { groups?.markRouter(vlan: lv, port: i, now: .seconds(10)) }
            shaper.take(port: i, .ingress, bytes: 65_000, now: .seconds(10))
            shaper.take(port: i, .egress, bytes: 1500, now: .seconds(10))
        }
        _ = groups?.querier?.takeDue(now: .seconds(10))
    }

    /// SwitchRuntime.carryOver's Core steps, ports shared by name.
    func carryOver(from old: SwitchState) {
        var newIndex = Array(repeating: -1, count: old.plan.ports.count)
        for (i, p) in old.plan.ports.enumerated() { newIndex[i] = plan.portIndex(named: p.name) ?? -1 }
        let now = MonotonicInstant.seconds(11)
        for e in old.table.entries(now: now).filter({ !$0.isStatic }).sorted(by: { $0.age > $1.age }) {
            let j = newIndex[e.port]
            guard j >= 0, plan.learns(e.vlan, on: j), !plan.isMirrorDestination[j] else { continue }
            table.learn(vlan: e.vlan, mac: e.mac, port: j, now: now - e.age)
        }
        if let g = groups, let was = old.groups {
            g.carryOver(from: was, newIndex: newIndex, isMember: { plan.learns($0, on: $1) }, now: now)
            if let q = g.querier, let wq = was.querier { q.carryOver(from: wq) }
        }
        if shaper.isActive && old.shaper.isActive { shaper.carryOver(from: old.shaper, newIndex: newIndex) }
    }

    func checkInvariants() {
        let n = plan.ports.count
        for e in table.entries(now: .seconds(11)) where !e.isStatic {
            check(e.port >= 0 && e.port < n, "MAC entry on port \(e.port) of \(n)")
            check(plan.learns(e.vlan, on: e.port), "MAC entry in VLAN \(e.vlan) on \(plan.ports[e.port].name), which does not learn there")
        }
        if let g = groups {
            check(g.groupCount <= g.groupCapacity && g.membershipCount <= g.membershipCapacity && g.routerCount <= g.routerCapacity,
                  "group table over capacity")
            var cursor = 0
            let chunk = UnsafeMutableBufferPointer<MulticastGroupTable.Entry>.allocate(capacity: 64)
            defer { chunk.deallocate() }
            while cursor < g.membershipCapacity {
                let got = g.copyEntries(from: &cursor, into: chunk, now: .seconds(11))
                for e in chunk.prefix(got) {
                    check(e.port >= 0 && e.port < n, "membership on port \(e.port) of \(n)")
                    check(e.isStatic || plan.learns(e.vlan, on: e.port), "membership in VLAN \(e.vlan) on \(plan.ports[e.port].name)")
                }
            }
            for r in g.routerEntries(now: .seconds(11)) { check(plan.learns(r.vlan, on: r.port), "router entry in VLAN \(r.vlan) on port \(r.port)") }
        }
        for i in 0..<n {
            for d in [ShapingDirection.ingress, .egress] {
                guard let (a, p) = shaper.available(port: i, d, now: .seconds(11)),
                      let limit = d == .ingress ? plan.ports[i].shaping?.ingress : plan.ports[i].shaping?.egress else { continue }
                check(a <= Int64(limit.burstBytes) && p <= Int64(limit.peakBucketBytes), "shaping bucket above its depth on port \(i)")
            }
        }
    }
}

/// What a plan forwards by, with ports named instead of numbered, in name order.
private func canonical(_ p: SwitchPlan) -> String {
    let name = { (i: PortIndex) in p.ports[i].name }
    var out = ["\(p.name) mtu \(p.mtu) aging \(p.aging) limit \(p.macLimit) team \(String(describing: p.team)) pvlans \(p.privateVLANs)"]
    out += p.ports.map { "\($0)" }.sorted()
    out += p.staticEntries.map { "static \($0.vlan) \($0.mac) \(name($0.port))" }.sorted()
    out += p.mirrors.map { "mirror \($0.name) \($0.sources.map(name).sorted()) \($0.ingress) \($0.egress) \($0.destinations.map(name).sorted())" }.sorted()
    if let m = p.multicast {
        out.append("snooping \(m.membershipInterval) \(m.routerInterval) \(m.routerPorts.map(name).sorted()) \(String(describing: m.querier)) \(m.groupCapacity) \(m.membershipCapacity) \(m.routerCapacity)")
        out += m.staticGroups.map { "group \($0.vlan) \($0.group) \($0.ports.map(name).sorted())" }.sorted()
    }
    return out.joined(separator: "\n")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let oldText: String, newText: String
    if let nul = bytes.firstIndex(of: 0) {
        oldText = String(decoding: bytes[..<nul], as: UTF8.self)
        newText = String(decoding: bytes[(nul + 1)...], as: UTF8.self)
    } else {
        oldText = base
        newText = String(decoding: bytes, as: UTF8.self)
    }
    guard let old = try? TopologyLoader.parse(oldText, file: "old.yaml") else { return 0 }
    let new: Topology
    do {
        new = try TopologyLoader.parse(newText, file: "new.yaml")
    } catch let e as TopologyErrors {
        check(!e.diagnostics.isEmpty, "TopologyErrors without diagnostics: an invalid reload must say why")
        return 0
    } catch {
        fatalError("fuzz-reload: parse threw a non-TopologyErrors error: \(error)")
    }
    let d: TopologyDiff
    do { d = try Topology.diff(from: old, to: new) } catch {
        check(old.name != new.name, "diff threw for two topologies of one name: \(error)")
        return 0
    }
    guard let back = try? Topology.diff(from: new, to: old) else { fatalError("fuzz-reload: the reverse diff threw") }
    check((try? Topology.diff(from: old, to: old))?.isEmpty == true, "diff of a topology with itself is not empty")
    check(Set(d.guestsAdded) == Set(back.guestsRemoved) && Set(d.guestsRemoved) == Set(back.guestsAdded)
          && Set(d.guestsChanged) == Set(back.guestsChanged), "guest diff is not symmetric")
    check(Set(d.switchesAdded) == Set(back.switchesRemoved) && Set(d.switchesChanged) == Set(back.switchesChanged), "switch diff is not symmetric")
    check(Set(d.linksAdded.map(\.label)) == Set(back.linksRemoved.map(\.label)), "link diff is not symmetric")
    check(Set(d.guestsAdded).isDisjoint(with: d.guestsChanged) && Set(d.switchesAdded).isDisjoint(with: d.switchesChanged), "added and changed at once")
    let oldGuests = Set(old.guests.map(\.name)), newGuests = Set(new.guests.map(\.name))
    check(d.guestsAdded.allSatisfy { newGuests.contains($0) && !oldGuests.contains($0) }, "an added guest is not new")
    check(d.guestsRemoved.allSatisfy { oldGuests.contains($0) && !newGuests.contains($0) }, "a removed guest is still there")
    _ = d.summary

    // What the reload would allocate for MAC tables (each switch's in full) is bounded.
    check(new.switches.reduce(0) { $0 + $1.macLimit } <= TopologyLimits.standard.maxTotalMACEntries,
          "a valid file asks for more MAC-table entries than TopologyLimits.maxTotalMACEntries")
    let before = old.compile(), after = new.compile()
    check(before.count == old.switches.count && after.count == new.switches.count, "compile() lost a switch")
    if d.isEmpty {
        // "no changes": the running plans stay; the new file must compile to the same ones
        // (up to the order of ports: a file that only lists guests in another order changes
        // nothing that forwards).
        for (a, b) in zip(before, after) {
            check(canonical(a) == canonical(b), "diff says 'no changes' but switch \(b.name) compiles differently: a reload would ignore the change")
        }
    }
    let egress = EgressList(capacity: 8192)
    for plan in after {
        let state = SwitchState(plan)
        if let was = before.first(where: { $0.name == plan.name }) {
            let oldState = SwitchState(was)
            oldState.exercise()
            state.carryOver(from: oldState)
        }
        state.checkInvariants()
        egress.prepare(portCount: plan.ports.count)
        let ctx = DecisionContext(table: state.table, now: .seconds(11), shaper: state.shaper.isActive ? state.shaper : nil, multicast: state.groups)
        for port in plan.ports.indices.prefix(16) {
            var none = NoTrace()
            let decision = probe.withUnsafeBytes { decide(frame: $0, inPort: port, plan: plan, context: ctx, trace: &none) }
            _ = collectEgress(of: decision, inPort: port, plan: plan, context: ctx, into: egress)
            for i in 0..<egress.count { check(plan.ports.indices.contains(Int(egress[i].port)), "egress port out of range") }
        }
    }
    return 0
}
