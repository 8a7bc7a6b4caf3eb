import Core
import Model

/// Port-group and switch policies: shaping, private VLANs, multicast snooping, flow export
/// (issues 20, 21).
extension Validator {
    /// `shaping: {ingress: {average, peak, burst}, egress: {…}}`. The burst's lower bound
    /// needs the NICs (their offloads), so it is checked later (`checkShaping`); here `burst`
    /// defaults to 0, meaning "the minimum for the group".
    mutating func shapingSpec(_ node: SourceNode, _ what: String) -> ShapingSpec? {
        guard let f = mapping(node, "'shaping' of \(what)", allowed: Keys.shaping.names) else { return nil }
        var spec = ShapingSpec(), ok = true
        if f.known.isEmpty { error("'shaping' of \(what) is empty: give ingress, egress or both", at: node.location); return nil }
        for dir in ["ingress", "egress"] {
            guard let d = f[dir] else { continue }
            let ctx = "'\(dir)' shaping of \(what)"
            guard let m = mapping(d.value, ctx, allowed: Keys.shapingRate.names) else { ok = false; continue }
            guard let a = require("average", in: m, ctx, at: d.value.location), let average = rate(a.value, "average") else { ok = false; continue }
            var peak = average
            if let p = m["peak"] {
                guard let v = rate(p.value, "peak") else { ok = false; continue }
                guard v >= average else {
                    error("peak \(describeRate(v)) is below average \(describeRate(average)): the peak is the rate during a burst, at least the average",
                          at: p.value.location)
                    ok = false; continue
                }
                peak = v
            }
            var burst = 0
            if let b = m["burst"] {
                guard let v = byteSize(b.value, "burst", in: 1...(1 << 30)) else { ok = false; continue }
                burst = v
            }
            let r = ShapingRate(average: average, peak: peak, burst: burst)
            if dir == "ingress" { spec.ingress = r } else { spec.egress = r }
        }
        return ok ? spec : nil
    }

    /// `private-vlans: {PRIMARY: {isolated: ID, community: [ID...]}}`.
    mutating func privateVLANs(_ node: SourceNode, of switchName: String) -> [PrivateVLANSpec] {
        guard let entries = namedEntries(node, "'private-vlans' of switch '\(switchName)'") else { return [] }
        var out: [PrivateVLANSpec] = []
        /// Every ID in use, with what it is and where.
        var used: [VLANID: (String, Int)] = [:]
        func claim(_ v: VLANID, _ role: String, at location: SourceLocation, _ me: inout Validator) -> Bool {
            if let (other, line) = used[v] {
                me.error("VLAN \(v) is already \(other) (line \(line)): a VLAN belongs to at most one private VLAN, once", at: location)
                return false
            }
            used[v] = (role, location.line)
            return true
        }
        for e in entries {
            guard let primary = vlanNumber(e.name, at: e.key.location) else { continue }
            var spec = PrivateVLANSpec(primary: primary), ok = claim(primary, "the primary of private VLAN \(primary)", at: e.key.location, &self)
            let what = "private VLAN \(primary)"
            if !e.value.isNull, let f = mapping(e.value, what, allowed: Keys.privateVLAN.names) {
                if let i = f["isolated"], let s = text(i.value, "'isolated'"), let v = vlanNumber(s, at: i.value.location) {
                    if claim(v, "the isolated VLAN of private VLAN \(primary)", at: i.value.location, &self) { spec.isolated = v } else { ok = false }
                } else if f["isolated"] != nil { ok = false }
                if let c = f["community"], let items = list(c.value, "'community' of \(what)") {
                    if tooMany(items.count, 4094, "'community'", firstBeyond: items.dropFirst(4094).first?.location) { ok = false }
                    for item in items.prefix(4094) {
                        guard let s = text(item, "a community VLAN"), let v = vlanNumber(s, at: item.location) else { ok = false; continue }
                        if claim(v, "a community VLAN of private VLAN \(primary)", at: item.location, &self) { spec.community.append(v) } else { ok = false }
                    }
                }
            } else if !e.value.isNull { ok = false }
            if ok { out.append(spec) }
        }
        return out
    }

    /// Multicast keys waiting for the port names (router ports, static groups).
    struct PendingMulticast {
        var routerPorts: [SourceNode] = []
        var staticGroups: [(group: IPAddress, vlan: VLANID?, vlanNode: SourceNode?, ports: [SourceNode], location: SourceLocation)] = []
    }

    /// The `multicast-*` keys of a switch.
    mutating func multicastSpec(_ f: SourceFields, of switchName: String, into sw: inout SwitchSpec) -> PendingMulticast {
        var pending = PendingMulticast()
        var m = MulticastSpec()
        if let s = f["multicast-snooping"], let b = boolean(s.value, "'multicast-snooping'") { m.snooping = b }
        if let q = f["multicast-querier"], let b = boolean(q.value, "'multicast-querier'") {
            m.querier = b
            if b && !m.snooping {
                error("'multicast-querier' needs 'multicast-snooping: true' on switch '\(switchName)': queries only matter to a snooping switch",
                      at: q.key.location)
            }
        }
        let dependent = ["multicast-querier-source", "multicast-membership-interval", "multicast-router-ports", "multicast-static-groups"]
        for key in dependent where f[key] != nil && !m.snooping {
            error("'\(key)' needs 'multicast-snooping: true' on switch '\(switchName)'", at: f[key]!.key.location)
        }
        if let s = f["multicast-querier-source"], let t = text(s.value, "'multicast-querier-source'") {
            if !m.querier {
                error("'multicast-querier-source' needs 'multicast-querier: true'", at: s.key.location)
            } else if let a = IPv4Address(t) {
                if a.isUnspecified {
                    m.querierSource = a
                } else if let problem = unicastProblem(.v4(a), "querier source") {
                    error(problem + " (0.0.0.0 or a unicast IPv4 address)", at: s.value.location)
                } else { m.querierSource = a }
            } else {
                error("invalid querier source '\(t)': expected an IPv4 address (the MLD querier's source is derived from the switch)", at: s.value.location)
            }
        }
        if let i = f["multicast-membership-interval"], let v = duration(i.value, "multicast membership interval", in: 10...3600) {
            m.membershipIntervalSeconds = v
        }
        if let r = f["multicast-router-ports"], !r.value.isNull, let items = list(r.value, "'multicast-router-ports'") {
            if !tooMany(items.count, limits.maxMulticastStatics, "'multicast-router-ports'",
                        firstBeyond: items.dropFirst(limits.maxMulticastStatics).first?.location) { pending.routerPorts = items }
        }
        if let g = f["multicast-static-groups"], !g.value.isNull, let items = list(g.value, "'multicast-static-groups'") {
            if !tooMany(items.count, limits.maxMulticastStatics, "'multicast-static-groups'",
                        firstBeyond: items.dropFirst(limits.maxMulticastStatics).first?.location) {
                for item in items {
                    guard let gf = mapping(item, "a static multicast group", allowed: Keys.staticGroup.names),
                          let gr = require("group", in: gf, "a static multicast group", at: item.location),
                          let ps = require("ports", in: gf, "a static multicast group", at: item.location),
                          let gt = text(gr.value, "'group'") else { continue }
                    guard let addr = IPAddress(gt), addr.isMulticast else {
                        error("invalid multicast group '\(gt)': expected an IPv4 address in 224.0.0.0/4 or an IPv6 address in ff00::/8", at: gr.value.location)
                        continue
                    }
                    // The datapath's rule (`WireIPAddress.isLinkLocalMulticast`): IPv6 scopes 0–2,
                    // flagged forms too (ff12::1 is link-local), not only ff02::/16.
                    if addr.wire.isLinkLocalMulticast {
                        error("group \(addr) is link-local scope (224.0.0.0/24, IPv6 scope 0-2 such as ff02::/16): it is always flooded, a static entry would mean nothing", at: gr.value.location)
                        continue
                    }
                    var vlan: VLANID? = nil
                    if let v = gf["vlan"] { guard let id = vlanOrNone(v.value, "'vlan'") else { continue }; vlan = id }
                    guard let ports = list(ps.value, "'ports' of a static multicast group") else { continue }
                    if ports.isEmpty { error("'ports' of a static multicast group is empty", at: ps.value.location); continue }
                    pending.staticGroups.append((addr, vlan, gf["vlan"]?.value, ports, item.location))
                }
            }
        }
        sw.multicast = m
        return pending
    }

    /// Resolves router ports and static groups against the switch's port names.
    mutating func resolveMulticast(_ switches: inout [SwitchSpec], pending: [String: PendingMulticast], guests: [GuestSpec], links: [LinkSpec]) {
        let validGuests = Set(guests.map(\.name))
        for i in switches.indices {
            guard let p = pending[switches[i].name], !(p.routerPorts.isEmpty && p.staticGroups.isEmpty) else { continue }
            let sw = switches[i]
            let groups = Dictionary(sw.portGroups.map { ($0.name, $0.mode) }, uniquingKeysWith: { a, _ in a })
            var modes: [String: PortMode] = [:]
            var names: [String] = []
            for g in guests { for nic in g.nics where nic.switchName == sw.name { modes[nic.portName] = groups[nic.portGroup]; names.append(nic.portName) } }
            for l in links { if let e = l.end(on: sw.name) { modes[e.portName] = groups[e.portGroup]; names.append(e.portName) } }
            let uplinkNames = Set(sw.uplinks?.nics ?? [])
            names += sw.uplinks?.nics ?? []
            func known(_ node: SourceNode, _ me: inout Validator) -> String? {
                guard let s = me.text(node, "a port") else { return nil }
                if modes[s] != nil || uplinkNames.contains(s) { return s }
                // Root errors only: a port of a guest, uplink or link that failed its own checks.
                if let dot = s.lastIndex(of: "."), me.declaredGuests.contains(String(s[..<dot])), !validGuests.contains(String(s[..<dot])) { return nil }
                if me.declaredUplinks[sw.name]?.contains(s) == true { return nil }
                if s.hasPrefix("link-") && me.someLinkFailed { return nil }
                me.error("unknown port '\(s)' on switch '\(sw.name)': expected GUEST.ethN, an uplink NIC or link-SWITCH" + me.hint(s, among: names), at: node.location)
                return nil
            }
            var seen = Set<String>()
            for node in p.routerPorts {
                guard let s = known(node, &self) else { continue }
                if !seen.insert(s).inserted { error("router port '\(s)' is listed twice", at: node.location); continue }
                switches[i].multicast.routerPorts.append(s)
            }
            var groupSeen: [String: Int] = [:]
            for g in p.staticGroups {
                var ports: [String] = []
                var ok = true
                for node in g.ports { if let s = known(node, &self) { ports.append(s) } else { ok = false } }
                guard ok else { continue }
                var vlan = g.vlan
                if vlan == nil {
                    let accessVLANs = Set(ports.compactMap { name -> VLANID? in
                        if uplinkNames.contains(name) { return nil }
                        if case .access(let v)? = modes[name] { return v } else { return nil }
                    })
                    if accessVLANs.count == 1, ports.allSatisfy({ !uplinkNames.contains($0) }) { vlan = accessVLANs.first }
                }
                guard let v = vlan else {
                    error("'vlan' is required for static group \(g.group): its ports are not access ports of one VLAN", at: g.location)
                    continue
                }
                for name in ports where !uplinkNames.contains(name) {
                    if let mode = modes[name], !mode.isMember(v) {
                        error("port \(name) is not a member of VLAN \(v) (its mode is \(mode))", at: (g.vlanNode ?? g.ports[0]).location)
                        ok = false
                    }
                }
                let key = "\(v)/\(g.group)"
                if let line = groupSeen[key] { error("static group \(g.group) in VLAN \(v) is listed twice (first at line \(line))", at: g.location); continue }
                groupSeen[key] = g.location.line
                if ok { switches[i].multicast.staticGroups.append(MulticastStaticGroupSpec(group: g.group, vlan: v, ports: ports)) }
            }
        }
    }

    /// `flow-export: {collector, active-timeout, idle-timeout, sampling, observation-domain}`.
    mutating func flowExportSpec(_ node: SourceNode, of switchName: String) -> FlowExportSpec? {
        let what = "'flow-export' of switch '\(switchName)'"
        guard let f = mapping(node, what, allowed: Keys.flowExport.names) else { return nil }
        var ok = true
        var host = "", port = 0
        if let c = require("collector", in: f, what, at: node.location), let s = text(c.value, "'collector'") {
            if let (h, p) = hostPort(s) { host = h; port = p } else {
                error("invalid collector '\(s)': expected HOST:PORT like 192.0.2.10:4739, [2001:db8::10]:4739 or collector.lab:4739", at: c.value.location)
                ok = false
            }
        } else { ok = false }
        var spec = FlowExportSpec(collectorHost: host, collectorPort: port)
        if let a = f["active-timeout"] {
            if let v = duration(a.value, "active timeout", in: 1...3600) { spec.activeTimeoutSeconds = v } else { ok = false }
        }
        if let i = f["idle-timeout"] {
            if let v = duration(i.value, "idle timeout", in: 1...3600) { spec.idleTimeoutSeconds = v } else { ok = false }
        }
        if ok, spec.idleTimeoutSeconds > spec.activeTimeoutSeconds, let i = f["idle-timeout"] {
            warning("idle-timeout \(spec.idleTimeoutSeconds)s is longer than active-timeout \(spec.activeTimeoutSeconds)s: every flow is exported by the active timeout first",
                    at: i.value.location)
        }
        if let s = f["sampling"] {
            if let v = integer(s.value, "sampling", in: 1...16_777_215) { spec.sampling = v } else { ok = false }
        }
        if let o = f["observation-domain"] {
            if let v = integer(o.value, "observation domain", in: 0...4_294_967_295) { spec.observationDomain = UInt32(v) } else { ok = false }
        }
        return ok ? spec : nil
    }

    /// `HOST:PORT` with HOST an IPv4 address, `[IPv6]` or a DNS name; PORT 1…65535.
    func hostPort(_ s: String) -> (String, Int)? {
        var host: Substring, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            guard after.hasPrefix(":") else { return nil }
            portText = after.dropFirst()
            guard let a = IPv6Address(host), !a.isMulticast, !a.isUnspecified else { return nil }
            host = Substring(a.description)
        } else {
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            host = parts[0]; portText = parts[1]
            if let a = IPv4Address(host) { guard !a.isMulticast, !a.isUnspecified, !a.isReserved else { return nil } } else if !isHostName(host) { return nil }
        }
        guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              portText.count == 1 || portText.first != "0", let p = Int(portText), (1...65535).contains(p) else { return nil }
        return (String(host), p)
    }
}

/// `50mbit`
func describeRate(_ bits: UInt64) -> String {
    for (unit, scale) in [("tbit", UInt64(1_000_000_000_000)), ("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)]
        where bits >= scale && bits % scale == 0 { return "\(bits / scale)\(unit)" }
    return "\(bits)bit"
}
