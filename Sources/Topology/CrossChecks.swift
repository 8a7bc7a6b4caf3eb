import Core
import Model

/// The L2 domains of a topology: which (switch, VLAN) pairs frames can travel between.
///
/// A switch's VLAN is one domain; a link joins domains of two switches the way a cable
/// between two ports with those port groups' modes would (a frame of VLAN v leaves port A
/// untagged when A is an access port or v is A's native VLAN, tagged otherwise; port B
/// classifies it by its own mode, so VLANs can even be translated across a link). With
/// `hosts:`, a switch without an overlay is a separate domain on each host; with an overlay it
/// is one domain across the fabric.
///
/// Union-find over node keys `switch << 32 | hostSlot << 12 | vlan` (path halving, union by
/// size): near-linear in the number of link VLANs.
struct L2Domains {
    private var parent: [Int: Int] = [:]
    private var size: [Int: Int] = [:]
    let switchIndex: [String: Int]
    let hostIndex: [String: Int]
    let overlay: Set<String>

    init(switches: [SwitchSpec], hosts: [HostSpec]) {
        switchIndex = Dictionary(switches.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        hostIndex = Dictionary(hosts.enumerated().map { ($1.name, $0 + 1) }, uniquingKeysWith: { a, _ in a })
        overlay = Set(switches.filter { $0.overlay != nil }.map(\.name))
    }

    /// The node of `vlan` on `switchName`, as seen from `host` (nil: no hosts).
    func node(_ switchName: String, _ vlan: VLANID, host: String?) -> Int {
        let slot = overlay.contains(switchName) ? 0 : (host.flatMap { hostIndex[$0] } ?? 0)
        return (switchIndex[switchName] ?? 0) << 32 | slot << 12 | Int(vlan.rawValue)
    }

    mutating func find(_ x: Int) -> Int {
        var x = x
        while let p = parent[x], p != x {
            let gp = parent[p] ?? p
            parent[x] = gp
            x = gp
        }
        return x
    }

    /// Joins two nodes; false when they were already in one domain.
    @discardableResult
    mutating func union(_ a: Int, _ b: Int) -> Bool {
        let ra = find(a), rb = find(b)
        if ra == rb { return false }
        let (big, small) = size[ra, default: 1] >= size[rb, default: 1] ? (ra, rb) : (rb, ra)
        parent[small] = big
        parent[big] = parent[big] ?? big
        size[big] = size[big, default: 1] + size[small, default: 1]
        return true
    }

    /// The domain edges a link makes, as (VLAN on end 0, VLAN on end 1) pairs, deduplicated.
    static func edges(_ a: PortMode, _ b: PortMode) -> [(VLANID, VLANID)] {
        var out: [(VLANID, VLANID)] = []
        var seen = Set<UInt32>()
        func add(_ x: VLANID, _ y: VLANID) {
            if seen.insert(UInt32(x.rawValue) << 16 | UInt32(y.rawValue)).inserted { out.append((x, y)) }
        }
        for v in a.memberVLANs { if let w = arrival(of: v, from: a, at: b) { add(v, w) } }
        for w in b.memberVLANs { if let v = arrival(of: w, from: b, at: a) { add(v, w) } }
        return out
    }

    /// The VLAN a frame of `vlan` leaving a port with mode `from` belongs to on arriving at a
    /// port with mode `to`; nil when `to` drops it.
    static func arrival(of vlan: VLANID, from: PortMode, at to: PortMode) -> VLANID? {
        let untagged: Bool
        switch from {
        case .access: untagged = true
        case .trunk(_, let native): untagged = native == vlan
        }
        switch to {
        case .access(let v): return untagged ? v : nil
        case .trunk(let allowed, let native):
            if untagged { return native }
            return allowed.contains(vlan) || native == vlan ? vlan : nil
        }
    }
}

extension Validator {
    /// The same MAC on two ports of one switch would make learning flap between them.
    mutating func checkDuplicateMACs(_ guests: [GuestSpec]) {
        var seen: [String: [MACAddress: String]] = [:]
        for g in guests {
            for nic in g.nics {
                let here = nicLocations[nic.portName] ?? .start
                if let other = seen[nic.switchName]?[nic.mac] {
                    let line = nicLocations[other]?.line ?? 0
                    error("MAC \(nic.mac) of \(nic.portName) is already used by \(other) (line \(line)) on switch '\(nic.switchName)'",
                          at: here)
                } else {
                    seen[nic.switchName, default: [:]][nic.mac] = nic.portName
                }
            }
        }
    }

    /// A trunk that carries a private VLAN's secondary without its primary: promiscuous
    /// replies travel tagged with the primary, so the far side would never see them.
    mutating func checkPrivateVLANUse(_ switches: [SwitchSpec]) {
        for sw in switches where !sw.privateVLANs.isEmpty {
            for pg in sw.portGroups {
                guard case .trunk(let allowed, _) = pg.mode else { continue }
                for p in sw.privateVLANs {
                    let secondaries = (p.isolated.map { [$0] } ?? []) + p.community
                    if secondaries.contains(where: { allowed.contains($0) }), !allowed.contains(p.primary) {
                        warning("trunk port group '\(pg.name)' carries secondaries of private VLAN \(p.primary) but not the primary: promiscuous traffic travels tagged \(p.primary)",
                                at: portGroupLocations["\(sw.name)/\(pg.name)"] ?? .start)
                    }
                }
            }
        }
    }

    /// Fills in default bursts and rejects a burst below the largest frame a port of the group
    /// can carry (`ShapingSpec.minimumBurst`): a GSO frame larger than the bucket would never
    /// pass, and TCP would stall.
    mutating func checkShaping(_ switches: [SwitchSpec], guests: [GuestSpec], links: [LinkSpec]) -> [SwitchSpec] {
        var switches = switches
        var noOffloads: [String: Bool] = [:]   // "switch/group" → every NIC has offloads: false
        for g in guests {
            for nic in g.nics {
                let key = "\(nic.switchName)/\(nic.portGroup)"
                noOffloads[key] = (noOffloads[key] ?? true) && !nic.offloads
            }
        }
        for l in links { for e in l.ends { noOffloads["\(e.switchName)/\(e.portGroup)"] = false } }
        for i in switches.indices {
            for j in switches[i].portGroups.indices {
                let pg = switches[i].portGroups[j]
                let key = "\(switches[i].name)/\(pg.name)"
                let offloads = !(noOffloads[key] ?? false)
                let minimum = ShapingSpec.minimumBurst(mtu: switches[i].mtu, offloads: offloads)
                for (dir, rate) in [("ingress", pg.shaping.ingress), ("egress", pg.shaping.egress)] {
                    guard var r = rate else { continue }
                    if r.burst == 0 {
                        r.burst = minimum
                    } else if r.burst < minimum {
                        error("\(dir) burst of \(r.burst) bytes on port group '\(pg.name)' is below the largest frame its ports carry (\(minimum) bytes"
                              + (offloads ? ": a 64 KiB TSO frame with its headers; set offloads: false on its NICs to shape wire-sized frames" : ": MTU + 18")
                              + "): such a frame could never pass, and TCP would stall",
                              at: shapingLocations[key] ?? .start)
                    }
                    if dir == "ingress" { switches[i].portGroups[j].shaping.ingress = r } else { switches[i].portGroups[j].shaping.egress = r }
                }
            }
        }
        return switches
    }

    /// Links must not form a loop: there is no spanning tree. Each link's domain edges are
    /// checked against the domains the earlier links made (a link never loops with itself:
    /// flooding never leaves through the port a frame came in on).
    mutating func checkLinkLoops(_ links: [LinkSpec], switches: [SwitchSpec], domains: inout L2Domains) {
        for (i, link) in links.enumerated() {
            guard let a = validGroups[link.ends[0].switchName]?[link.ends[0].portGroup],
                  let b = validGroups[link.ends[1].switchName]?[link.ends[1].portGroup] else { continue }
            let edges = L2Domains.edges(a.mode, b.mode)
            let nodes = edges.map { (domains.node(link.ends[0].switchName, $0.0, host: link.host),
                                     domains.node(link.ends[1].switchName, $0.1, host: link.host), $0.0, $0.1) }
            if let loop = nodes.first(where: { domains.find($0.0) == domains.find($0.1) }) {
                let at = i < linkLocations.count ? linkLocations[i] : .start
                error("this link between '\(link.ends[0].switchName)' and '\(link.ends[1].switchName)' makes a loop: VLAN \(loop.2) of '\(link.ends[0].switchName)' already reaches VLAN \(loop.3) of '\(link.ends[1].switchName)' through other links (there is no spanning tree)",
                      at: at)
                continue
            }
            if edges.isEmpty {
                warning("this link between '\(link.ends[0].switchName)/\(link.ends[0].portGroup)' and '\(link.ends[1].switchName)/\(link.ends[1].portGroup)' carries no VLAN: their VLAN modes share none",
                        at: i < linkLocations.count ? linkLocations[i] : .start)
            }
            for n in nodes { domains.union(n.0, n.1) }
        }
    }

    /// Addresses: no two NICs with the same address in one L2 domain; an address on a trunk
    /// NIC without a native VLAN is on an interface whose frames the switch drops.
    mutating func checkAddresses(_ guests: [GuestSpec], switches: [SwitchSpec], domains: inout L2Domains) {
        // Each private VLAN ID → its primary, per switch.
        var primaries: [String: [VLANID: VLANID]] = [:]
        for s in switches {
            for p in s.privateVLANs {
                for v in [p.primary] + (p.isolated.map { [$0] } ?? []) + p.community { primaries[s.name, default: [:]][v] = p.primary }
            }
        }
        var seen: [Int: [IPAddress: (String, SourceLocation)]] = [:]
        for g in guests {
            for nic in g.nics where !nic.addresses.isEmpty || nic.dhcp {
                guard let mode = validGroups[nic.switchName]?[nic.portGroup]?.mode else { continue }
                let vlan: VLANID
                switch mode {
                case .access(let v): vlan = v
                case .trunk(_, let native?): vlan = native
                case .trunk(_, nil):
                    warning("\(nic.portName) is on trunk port group '\(nic.portGroup)' without a native VLAN: its \(nic.dhcp ? "DHCP client" : "address") sits on the untagged interface, whose frames the switch drops (give the trunk a native VLAN, or configure VLAN subinterfaces in the guest)",
                            at: nicLocations[nic.portName] ?? .start)
                    continue
                }
                // A private VLAN's secondaries share the primary's subnet and MAC learning.
                let domainVLAN = primaries[nic.switchName]?[vlan] ?? vlan
                let domain = domains.find(domains.node(nic.switchName, domainVLAN, host: g.host))
                for p in nic.addresses {
                    if let (other, at) = seen[domain]?[p.address] {
                        error("address \(p.address) of \(nic.portName) is already used by \(other) (line \(at.line)) in the same L2 domain (VLAN \(vlan) of switch '\(nic.switchName)'\(domains.overlay.isEmpty && switches.count == 1 ? "" : " and whatever is linked to it"))",
                              at: nicNodes[nic.portName].map { addressLocation($0, p) } ?? .start)
                    } else {
                        seen[domain, default: [:]][p.address] = (nic.portName, nicLocations[nic.portName] ?? .start)
                    }
                }
            }
        }
    }

    /// Where an address of a NIC was written (the `ip:` value, or its list item).
    func addressLocation(_ nic: SourceNode, _ p: IPPrefix) -> SourceLocation {
        guard case .mapping(let pairs) = nic.kind, let ip = pairs.first(where: { $0.key.scalar == "ip" })?.value else { return nic.location }
        if case .sequence(let items) = ip.kind {
            return items.first { $0.scalar.flatMap(IPPrefix.init)?.address == p.address }?.location ?? ip.location
        }
        return ip.location
    }

    /// VNI ranges of two switches must not overlap; remote VTEPs are not hosts; an overlay
    /// has someone to talk to.
    mutating func checkOverlays(_ switches: [SwitchSpec], hosts: [HostSpec], guests: [GuestSpec], links: [LinkSpec]) {
        let withOverlay = switches.compactMap { s in s.overlay.map { (s.name, $0) } }.sorted { $0.1.vniBase < $1.1.vniBase }
        for (prev, next) in zip(withOverlay, withOverlay.dropFirst()) where next.1.vniBase <= prev.1.vniBase + 4094 {
            error("VNI range \(next.1.vniBase)..\(next.1.vniBase + 4094) of switch '\(next.0)' overlaps \(prev.1.vniBase)..\(prev.1.vniBase + 4094) of switch '\(prev.0)': each switch uses its base and the 4094 VNIs after it",
                  at: overlayLocations[next.0] ?? .start)
        }
        let underlays = Dictionary(hosts.map { ($0.underlay, $0.name) }, uniquingKeysWith: { a, _ in a })
        for (name, o) in withOverlay {
            for (i, v) in o.remoteVTEPs.enumerated() {
                if let h = underlays[v.address] {
                    error("remote VTEP \(v.address) is the underlay of host '\(h)': hosts of the topology get their tunnels without being listed",
                          at: remoteVTEPLocations[name]?[safe: i] ?? .start)
                }
            }
            // A tunnel joins two addresses of one family: every host running the switch and
            // every remote VTEP must share the first host's family.
            var running = Set<String>()
            for g in guests { if let h = g.host, g.nics.contains(where: { $0.switchName == name }) { running.insert(h) } }
            for l in links { if let h = l.host, l.end(on: name) != nil { running.insert(h) } }
            let runners = hosts.filter { running.contains($0.name) }
            if let first = runners.first {
                for h in runners.dropFirst() where h.underlay.family != first.underlay.family {
                    error("hosts '\(first.name)' (IPv\(first.underlay.family)) and '\(h.name)' (IPv\(h.underlay.family)) both run switch '\(name)', but a VXLAN tunnel joins two addresses of one family",
                          at: hostLocations[h.name] ?? .start)
                }
                for (i, v) in o.remoteVTEPs.enumerated() where v.address.family != first.underlay.family {
                    error("remote VTEP \(v.address) is IPv\(v.address.family), but the hosts running switch '\(name)' have IPv\(first.underlay.family) underlays",
                          at: remoteVTEPLocations[name]?[safe: i] ?? .start)
                }
            }
            if hosts.isEmpty && o.remoteVTEPs.isEmpty {
                warning("switch '\(name)' has an overlay but no remote VTEPs and no 'hosts': no tunnel will be made", at: overlayLocations[name] ?? .start)
            }
        }
    }

    /// Port names of a switch must be unique across guest ports, uplink NICs, link ports and
    /// tunnel ports; host names must not be an uplink NIC or port name anywhere.
    mutating func checkPortNames(_ switches: [SwitchSpec], guests: [GuestSpec], links: [LinkSpec], hosts: [HostSpec]) {
        var perSwitch: [String: [String: (String, SourceLocation)]] = [:]
        func claim(_ sw: String, _ port: String, _ what: String, at location: SourceLocation, _ me: inout Validator) {
            if let (other, at) = perSwitch[sw]?[port] {
                me.error("port name '\(port)' of \(what) on switch '\(sw)' is already the name of \(other) (line \(at.line))", at: location)
            } else {
                perSwitch[sw, default: [:]][port] = (what, location)
            }
        }
        for s in switches {
            for (i, nic) in (s.uplinks?.nics ?? []).enumerated() {
                let p = s.uplinks?.nicPositions[safe: i]
                claim(s.name, nic, "uplink NIC '\(nic)'", at: p.map { SourceLocation(line: $0.line, column: $0.column) } ?? .start, &self)
            }
        }
        for g in guests { for nic in g.nics { claim(nic.switchName, nic.portName, "NIC \(nic.portName)", at: nicLocations[nic.portName] ?? .start, &self) } }
        for (i, l) in links.enumerated() {
            for e in l.ends { claim(e.switchName, e.portName, "a link", at: linkLocations[safe: i] ?? .start, &self) }
        }
        for s in switches {
            guard let o = s.overlay else { continue }
            for h in hosts { claim(s.name, h.name, "the tunnel to host '\(h.name)'", at: hostLocations[h.name] ?? .start, &self) }
            for (i, v) in o.remoteVTEPs.enumerated() {
                claim(s.name, v.portName, "the tunnel to remote VTEP \(v.address)", at: remoteVTEPLocations[s.name]?[safe: i] ?? .start, &self)
            }
        }
        // Host names against every uplink NIC and link port, also on switches without an overlay.
        var ports: [String: String] = [:]
        for s in switches { for n in s.uplinks?.nics ?? [] { ports[n] = "an uplink NIC of switch '\(s.name)'" } }
        for l in links { for e in l.ends { ports[e.portName] = "a link port on switch '\(e.switchName)'" } }
        for h in hosts where ports[h.name] != nil {
            error("host name '\(h.name)' is also \(ports[h.name]!): tunnels are named after hosts, so names must not collide", at: hostLocations[h.name] ?? .start)
        }
    }

    /// Guests' declared CPUs and memory against what their host offers (a warning: HA
    /// admission uses the same numbers).
    mutating func checkHostCapacity(_ hosts: [HostSpec], guests: [GuestSpec]) {
        var cpus: [String: Int] = [:], memory: [String: Int] = [:]
        for g in guests where g.kind == .qemu { if let h = g.host { cpus[h, default: 0] += g.cpus; memory[h, default: 0] += g.memoryMiB } }
        for h in hosts {
            if let c = h.cpus, let used = cpus[h.name], used > c {
                warning("the QEMU guests of host '\(h.name)' have \(used) CPUs, more than its cpus: \(c)", at: hostLocations[h.name] ?? .start)
            }
            if let m = h.memoryMiB, let used = memory[h.name], used > m {
                warning("the QEMU guests of host '\(h.name)' have \(used)M of memory, more than its memory: \(m)M", at: hostLocations[h.name] ?? .start)
            }
        }
    }

    /// Two switches exporting to one collector with one observation domain cannot be told
    /// apart by the collector.
    mutating func checkFlowExports(_ switches: [SwitchSpec]) {
        var seen: [String: String] = [:]
        for s in switches {
            guard let f = s.flowExport else { continue }
            let key = "\(f.collectorHost):\(f.collectorPort)/\(f.observationDomain)"
            if let other = seen[key] {
                warning("switch '\(s.name)' exports to \(f.collectorHost):\(f.collectorPort) with observation domain \(f.observationDomain), as switch '\(other)' does: give each its own observation-domain",
                        at: flowExportLocations[s.name] ?? .start)
            } else { seen[key] = s.name }
        }
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
