import Core
import Model

extension Topology {
    /// One plan per switch, in `switches` order.
    ///
    /// A switch's ports are the guest NICs attached to it, in guest order then NIC order;
    /// each `PortPlan` is named `GUEST.ethN` and takes its mode from its port group. Static MAC
    /// entries and mirrors are resolved to port indexes. Uplink ports are added by the uplink feature.
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
                                          macLimit: group.macLimit, storm: group.storm, l2Transparency: group.l2Transparency))
                }
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
            return SwitchPlan(name: sw.name, ports: ports, mtu: sw.mtu, agingSeconds: sw.agingSeconds,
                              macLimit: sw.macLimit, staticEntries: statics, mirrors: mirrors)
        }
    }
}
