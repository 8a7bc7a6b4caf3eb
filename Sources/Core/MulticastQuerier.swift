import Model

/// The switch's IGMP/MLD querier as a pure state machine: when to send a general query on
/// which VLAN, and when to stay quiet because another querier won the election.
///
/// ## States (per VLAN and family)
/// ```
///   start ──▶ querier: startup queries every QI/4 (robustness of them), then every QI
///     ▲            │ hears a query from an address ≤ ours
///     │            ▼
///     └── non-querier: silent until the other querier present interval passes without
///         hearing it again
/// ```
/// RFC 3376 §6.6.2 / RFC 3810 §7.6.2: the lowest address wins ("or equal" here, so two
/// snooping switches with the default 0.0.0.0 do not both query). The datapath tells it the
/// queries it hears (`heard`, through `MulticastGroupTable.snoop`); the querier service asks
/// it what is due (`takeDue`) once a tick, under the datapath lock, and sends outside it.
///
/// ## Threads
/// Read and written under the datapath lock only. Fixed arrays sized once from the plan's
/// VLANs: `heard` allocates nothing.
public final class MulticastQuerier {
    public let settings: MulticastQuerierSettings
    /// The VLANs it queries (see `MulticastQuerierSettings`).
    public let vlans: [VLANID]
    /// VLAN → index into the per-VLAN state (-1: not queried), for `heard`.
    let indexOf: [Int16]
    // Per (VLAN index × 2 + family): next query, startup queries left, the other querier.
    var nextQuery: [Int64]
    var startupLeft: [Int]
    var otherUntil: [Int64]
    var otherAddress: [WireIPAddress]
    /// Queries sent, and queries heard from other queriers.
    public private(set) var sent: UInt64 = 0
    public private(set) var heardQueries: UInt64 = 0

    /// A querier for `vlans`, whose first queries are due at `now`.
    public init(settings: MulticastQuerierSettings, vlans: [VLANID], now: MonotonicInstant) {
        self.settings = settings
        self.vlans = vlans
        var map = [Int16](repeating: -1, count: 4096)
        for (i, v) in vlans.enumerated() { map[Int(v.rawValue)] = Int16(i) }
        indexOf = map
        let n = 2 * vlans.count
        nextQuery = Array(repeating: now.nanoseconds, count: n)
        startupLeft = Array(repeating: settings.timers.robustness, count: n)
        otherUntil = Array(repeating: 0, count: n)
        otherAddress = Array(repeating: WireIPAddress(high: 0, low: 0), count: n)
    }

    /// The VLANs a querier of `plan` queries: those with a guest port, a private VLAN's
    /// secondaries left to its primary (whose queries reach them).
    public static func queriedVLANs(of plan: SwitchPlan) -> [VLANID] {
        var out: [VLANID] = []
        for v in plan.usedVLANs {
            if let role = plan.privateVLANRole(of: v), role.type != .promiscuous { continue }
            let guests = plan.floodSet(v).contains { !plan.hot[Int($0)].isUplink }
            if guests { out.append(v) }
        }
        return out
    }

    @inline(__always) func slot(_ i: Int, _ family: IPFamily) -> Int { 2 * i + (family == .ipv4 ? 0 : 1) }

    /// True while the switch is the querier of `vlan` for `family` (no lower querier heard
    /// within the other querier present interval).
    public func isQuerier(vlan: VLANID, family: IPFamily, now: MonotonicInstant) -> Bool {
        let i = Int(indexOf[Int(vlan.rawValue)])
        guard i >= 0 else { return false }
        return otherUntil[slot(i, family)] <= now.nanoseconds
    }

    /// The other querier heard on `vlan` for `family`, while it holds the role.
    public func otherQuerier(vlan: VLANID, family: IPFamily, now: MonotonicInstant) -> WireIPAddress? {
        let i = Int(indexOf[Int(vlan.rawValue)])
        guard i >= 0, otherUntil[slot(i, family)] > now.nanoseconds else { return nil }
        return otherAddress[slot(i, family)]
    }

    /// When the next query of `vlan`/`family` is due (nil: not queried here).
    public func nextQuery(vlan: VLANID, family: IPFamily) -> MonotonicInstant? {
        let i = Int(indexOf[Int(vlan.rawValue)])
        return i >= 0 ? MonotonicInstant(nanoseconds: nextQuery[slot(i, family)]) : nil
    }

    /// Another querier's query was heard on `vlan` at `now`: stand down if its address is
    /// lower than or equal to ours (the effect; `MulticastGroupTable.snoop` applies it).
    public func heard(_ q: MulticastQuery, vlan: VLANID, now: MonotonicInstant) {
        let i = Int(indexOf[Int(vlan.rawValue)])
        guard i >= 0 else { return }
        heardQueries &+= 1
        guard q.source <= settings.source(q.family) else { return }
        let k = slot(i, q.family)
        otherUntil[k] = now.nanoseconds + settings.timers.otherQuerierPresentInterval.nanosecondsCount
        otherAddress[k] = q.source
    }

    /// The general queries due at `now` (VLAN and family), each scheduled again as sent
    /// (startup queries every startup query interval, then every query interval). While
    /// another querier holds the role nothing is due; when it goes quiet, startup begins
    /// again (RFC 3376 §8.6). The effect the querier service applies once a tick.
    public func takeDue(now: MonotonicInstant) -> [(vlan: VLANID, family: IPFamily)] {
        var out: [(VLANID, IPFamily)] = []
        let t = settings.timers
        for (i, v) in vlans.enumerated() {
            for family in [IPFamily.ipv4, .ipv6] {
                let k = slot(i, family)
                if otherUntil[k] > now.nanoseconds {
                    startupLeft[k] = t.robustness
                    nextQuery[k] = otherUntil[k]
                    continue
                }
                guard nextQuery[k] <= now.nanoseconds else { continue }
                out.append((v, family))
                sent &+= 1
                if startupLeft[k] > 1 {
                    startupLeft[k] -= 1
                    nextQuery[k] = now.nanoseconds + t.startupQueryInterval.nanosecondsCount
                } else {
                    startupLeft[k] = 0
                    nextQuery[k] = now.nanoseconds + t.queryInterval.nanosecondsCount
                }
            }
        }
        return out
    }

    /// Takes over what `old` (the same switch's querier before a live reload) knew, per
    /// VLAN and family both query:
    /// - another querier that holds the role stays heard until its other querier present
    ///   interval runs out, if its address still wins against this querier's source (≤);
    /// - with the same timers, the schedule carries over too (the next query and how many
    ///   startup queries are left), so a reload neither sends an extra query nor restarts
    ///   the startup series. With other timers (a new membership interval) the VLAN starts
    ///   again: startup queries, the first one at once, as RFC 3376 §8.6 has a querier do
    ///   when it starts.
    /// VLANs new to this querier start as at `up`. Control path, under the datapath lock.
    public func carryOver(from old: MulticastQuerier) {
        let sameTimers = old.settings.timers == settings.timers
        for (i, v) in vlans.enumerated() {
            let j = Int(old.indexOf[Int(v.rawValue)])
            guard j >= 0 else { continue }
            for family in [IPFamily.ipv4, .ipv6] {
                let k = slot(i, family), o = old.slot(j, family)
                if old.otherUntil[o] > 0, old.otherAddress[o] <= settings.source(family) {
                    otherUntil[k] = old.otherUntil[o]
                    otherAddress[k] = old.otherAddress[o]
                }
                if sameTimers {
                    nextQuery[k] = old.nextQuery[o]
                    startupLeft[k] = old.startupLeft[o]
                }
            }
        }
        sent = old.sent
        heardQueries = old.heardQueries
    }

    /// The general query frame for `family` (untagged; see `MulticastQueryFrame`).
    public func queryFrame(_ family: IPFamily) -> [UInt8] {
        let t = settings.timers
        let mrt = Int(t.queryResponseInterval.millisecondsCount), qi = Int(t.queryInterval.secondsCount)
        switch family {
        case .ipv4:
            return MulticastQueryFrame.igmp(version: settings.igmpVersion, from: settings.mac, source: settings.ipv4Source,
                                            maxResponseMilliseconds: mrt, queryIntervalSeconds: qi, robustness: t.robustness)
        case .ipv6:
            return MulticastQueryFrame.mld(from: settings.mac, source: settings.mldSource, maxResponseMilliseconds: mrt,
                                           queryIntervalSeconds: qi, robustness: t.robustness)
        }
    }
}
