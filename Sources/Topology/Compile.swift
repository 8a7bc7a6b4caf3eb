import Core
import Model

extension Topology {
    /// One plan per switch, in `switches` order.
    ///
    /// A switch's ports are the guest NICs attached to it, in guest order then NIC order;
    /// each `PortPlan` is named `GUEST.ethN` and takes its mode from its port group. Static MAC
    /// entries and mirrors are resolved to port indexes.
    ///
    /// Uplinks come after the guest ports, one port per NIC named after it, in `nics` order
    /// (team member i is the i-th NIC). An uplink is a trunk carrying every VLAN of the port
    /// groups that use uplinks, tagged; the `none` domain (VLAN 0) travels untagged as its
    /// native VLAN.
    ///
    /// Link ports (`links:`) come between the guest ports and the uplinks, one per link end
    /// on the switch, named as the model says (`link-OTHER`, `link-OTHER-N`), each knowing
    /// its peer (`PortPlan.link`). A self-link would have two ends on one switch; validation
    /// refuses it, and compiling skips nothing for it (both ends become ports).
    ///
    /// The port-group policies (see docs/policies.md):
    /// - `shaping` → `PortPlan.shaping` on every port made from the group (guest NICs and
    ///   link ends; uplinks are never shaped), `ShapingRate` → `ShapingLimit` one to one.
    /// - `vlan: {private: ID}` is already an access port in VLAN ID (the loader's mode); the
    ///   switch's `private-vlans` → `SwitchPlan(privateVLANs:)`, which makes the ID's role
    ///   (promiscuous, isolated, community) part of the port. Uplinks carry a private VLAN
    ///   whole — its primary and every secondary, tagged — as soon as one port group with
    ///   uplinks is in it: promiscuous traffic travels tagged with the primary, and a
    ///   physical PVLAN switch upstream sends each secondary's frames with its own tag.
    /// - `multicast-*` → `SwitchPlan(multicast:)` when `multicast-snooping: true`
    ///   (`multicastSnooping(of:ports:)`).
    public func compile() -> [SwitchPlan] {
        switches.map { sw in
            var ports: [PortPlan] = []
            for guest in guests {
                for nic in guest.nics where nic.switchName == sw.name {
                    guard let group = sw.portGroup(named: nic.portGroup) else { continue }
                    ports.append(PortPlan(name: nic.portName, portGroup: group.name, mode: group.mode, configuredMAC: nic.mac,
                                          security: group.security,
                                          macLimit: group.macLimit, storm: group.storm, l2Transparency: group.l2Transparency,
                                          usesUplinks: group.usesUplinks && sw.uplinks != nil,
                                          // Every guest port carries a virtio-net header: a netns
                                          // guest's TAP, a VM's AF_PACKET port on its TAP (the
                                          // kernel finishes what the VM's TAP cannot take), a
                                          // vhost-user virtqueue.
                                          acceptsOffloads: true,
                                          shaping: Topology.shapingPolicy(group.shaping, mtu: sw.mtu)))
                }
            }
            // Link ports: one per link end on this switch, in `links` order, with
            // the VLAN mode, storm limits and l2-transparency of the end's port group. A link
            // carries every MAC behind the other switch, so like an uplink it accepts any
            // source MAC (forged-transmits, mac-changes) and may hold as many entries as the
            // switch's table; it is never promiscuous. Frames keep their virtio-net header
            // across the link (`acceptsOffloads`).
            for link in links {
                for (k, end) in link.ends.enumerated() where end.switchName == sw.name {
                    guard let group = sw.portGroup(named: end.portGroup) else { continue }
                    let other = link.ends[1 - k]
                    ports.append(PortPlan(name: end.portName, portGroup: group.name, mode: group.mode,
                                          security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                          macLimit: sw.macLimit, storm: group.storm, l2Transparency: group.l2Transparency,
                                          usesUplinks: group.usesUplinks && sw.uplinks != nil, acceptsOffloads: true,
                                          link: LinkPeer(switchName: other.switchName, portName: other.portName),
                                          shaping: Topology.shapingPolicy(group.shaping, mtu: sw.mtu)))
                }
            }
            var team: TeamConfig? = nil
            if let u = sw.uplinks {
                var carried = VLANSet()
                var untagged = false
                for g in sw.portGroups where g.usesUplinks {
                    for v in g.mode.memberVLANs {
                        if v.isUntaggedDomain { untagged = true; continue }
                        // A private VLAN travels whole (see above).
                        if let pv = sw.privateVLANs.first(where: { $0.vlans.contains(v) }) {
                            for x in pv.vlans { carried.insert(x) }
                        } else {
                            carried.insert(v)
                        }
                    }
                }
                let mode = PortMode.trunk(allowed: carried, native: untagged ? .untagged : nil)
                for (i, nic) in u.nics.enumerated() {
                    ports.append(PortPlan(name: nic, portGroup: PortPlan.uplinkGroup, mode: mode,
                                          security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                          macLimit: sw.macLimit, uplinkMember: i, usesUplinks: false, acceptsOffloads: true))
                }
                let index = { (n: String) in u.nics.firstIndex(of: n)! }
                team = TeamConfig(memberCount: u.nics.count, policy: u.policy,
                                  active: u.active.map(index), standby: u.standby.map(index),
                                  failback: u.failback, notifySwitches: u.notifySwitches)
            }
            let statics: [StaticMACEntry] = sw.staticMACs.compactMap { s in
                guard let index = ports.firstIndex(where: { $0.name == s.port }) else { return nil }
                return StaticMACEntry(vlan: s.vlan, mac: s.mac, port: index)
            }
            let mirrors: [MirrorPlan] = sw.mirrors.map { m in
                let sources = ports.indices.filter { m.sourcePortGroups.contains(ports[$0].portGroup) }
                let destinations = ports.indices.filter { ports[$0].portGroup == m.destinationPortGroup }
                return MirrorPlan(name: m.name, sources: sources, ingress: m.direction != .out,
                                  egress: m.direction != .in, destinations: destinations)
            }
            return SwitchPlan(name: sw.name, ports: ports, mtu: sw.mtu, aging: .seconds(sw.agingSeconds),
                              macLimit: sw.macLimit, staticEntries: statics, mirrors: mirrors, team: team,
                              privateVLANs: sw.privateVLANs.map { PrivateVLAN(primary: $0.primary, isolated: $0.isolated, community: $0.community) },
                              multicast: multicastSnooping(of: sw, ports: ports))
        }
    }

    /// A port group's `shaping:` as the plan's `ShapingPolicy` (nil when neither direction
    /// is shaped). A `burst` of 0 (a spec built in code, not by the loader, which fills in
    /// the group's minimum) becomes the minimum for a port with offloads.
    static func shapingPolicy(_ spec: ShapingSpec, mtu: Int) -> ShapingPolicy? {
        func limit(_ r: ShapingRate?) -> ShapingLimit? {
            guard let r else { return nil }
            let burst = r.burst > 0 ? r.burst : ShapingSpec.minimumBurst(mtu: mtu, offloads: true)
            return ShapingLimit(averageBitsPerSecond: r.average, peakBitsPerSecond: r.peak, burstBytes: burst)
        }
        let policy = ShapingPolicy(ingress: limit(spec.ingress), egress: limit(spec.egress))
        return policy.ingress == nil && policy.egress == nil ? nil : policy
    }

    /// The switch's IGMP/MLD snooping for its compiled `ports` (nil unless
    /// `multicast-snooping: true`).
    ///
    /// - The membership interval (seconds) sets every timer (`MulticastTimers`).
    /// - `multicast-router-ports` → `routerPorts` by name, plus `implicitRouterPorts`. Uplinks
    ///   are router ports without being listed (`SwitchPlan.multicastRouterPorts`).
    /// - `multicast-static-groups` → `staticGroups` by port name; a static group of a private
    ///   VLAN's secondary is kept under its primary, the VLAN it is learned in.
    /// - `multicast-querier: true` → `MulticastQuerierSettings.derived(topology:switchName:…)`:
    ///   its MAC (and so the MLD source, `fe80::` + EUI-64) derived from the topology's and
    ///   the switch's names, the IPv4 source from `multicast-querier-source`.
    func multicastSnooping(of sw: SwitchSpec, ports: [PortPlan]) -> MulticastSnooping? {
        let m = sw.multicast
        guard m.snooping else { return nil }
        let index = Dictionary(ports.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        var routers = m.routerPorts.compactMap { index[$0] }
        for p in Topology.implicitRouterPorts(ports) where !routers.contains(p) { routers.append(p) }
        let statics = m.staticGroups.map { g in
            StaticMulticastGroup(vlan: sw.privateVLANRole(of: g.vlan)?.primary ?? g.vlan, group: g.group.wire,
                                 ports: g.ports.compactMap { index[$0] })
        }
        let interval = Duration.seconds(m.membershipIntervalSeconds)
        let querier = m.querier ? MulticastQuerierSettings.derived(topology: name, switchName: sw.name, ipv4Source: m.querierSource.rawValue,
                                                                   membershipInterval: interval) : nil
        return MulticastSnooping(membershipInterval: interval, routerPorts: routers, staticGroups: statics, querier: querier)
    }

    /// Ports that are multicast-router ports without being listed in
    /// `multicast-router-ports`, beyond the uplinks (which the plan itself adds).
    ///
    /// **The overlay's hook**: a tunnel counts as a router port, so groups
    /// are not pruned across hosts — a member behind another host's switch is not known
    /// here. Today no compiled port is a tunnel, so this is empty; when tunnels become ports
    /// of the plan, a port whose `kind` is `tunnel` is returned here with no other change.
    static func implicitRouterPorts(_ ports: [PortPlan]) -> [PortIndex] {
        ports.indices.filter { ports[$0].kind == "tunnel" }
    }
}

extension PrivateVLANSpec {
    /// The primary, then the isolated secondary, then the communities.
    public var vlans: [VLANID] { [primary] + (isolated.map { [$0] } ?? []) + community }
}
