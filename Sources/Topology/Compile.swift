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
    public func compile() -> [SwitchPlan] {
        switches.map { sw in
            var ports: [PortPlan] = []
            for guest in guests {
                for nic in guest.nics where nic.switchName == sw.name {
                    guard let group = sw.portGroup(named: nic.portGroup) else { continue }
                    let sec = group.security
                    ports.append(PortPlan(name: nic.portName, portGroup: group.name, mode: group.mode, configuredMAC: nic.mac,
                                          security: PortSecurity(promiscuous: sec.promiscuous, macChanges: sec.macChanges,
                                                                 forgedTransmits: sec.forgedTransmits),
                                          macLimit: group.macLimit, storm: group.storm, l2Transparency: group.l2Transparency,
                                          usesUplinks: group.usesUplinks && sw.uplinks != nil,
                                          // Every guest port carries a virtio-net header: a netns
                                          // guest's TAP, a VM's AF_PACKET port on its TAP (the
                                          // kernel finishes what the VM's TAP cannot take), a
                                          // vhost-user virtqueue.
                                          acceptsOffloads: true))
                }
            }
            // Link ports (issue 16): one per link end on this switch, in `links` order, with
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
                                          link: LinkPeer(switchName: other.switchName, portName: other.portName)))
                }
            }
            var team: TeamConfig? = nil
            if let u = sw.uplinks {
                var carried = VLANSet()
                var untagged = false
                for g in sw.portGroups where g.usesUplinks {
                    for v in g.mode.memberVLANs { if v.isUntaggedDomain { untagged = true } else { carried.insert(v) } }
                }
                let mode = PortMode.trunk(allowed: carried, native: untagged ? .untagged : nil)
                for (i, nic) in u.nics.enumerated() {
                    ports.append(PortPlan(name: nic, portGroup: PortPlan.uplinkGroup, mode: mode,
                                          security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                          macLimit: sw.macLimit, uplinkMember: i, usesUplinks: false, acceptsOffloads: true))
                }
                let index = { (n: String) in u.nics.firstIndex(of: n)! }
                team = TeamConfig(memberCount: u.nics.count, policy: TeamPolicy(rawValue: u.policy.rawValue) ?? .portID,
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
                              macLimit: sw.macLimit, staticEntries: statics, mirrors: mirrors, team: team)
        }
    }
}
