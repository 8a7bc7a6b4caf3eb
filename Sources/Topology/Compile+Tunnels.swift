import Core
import Model

extension Topology {
    /// `compile()`, plus one tunnel port per entry of `tunnels` (a host's part,
    /// `part(forHost:).tunnels`), appended after each switch's own ports in `tunnels` order.
    ///
    /// A tunnel port (see `TunnelPeer` for its frame form) is a trunk without a native VLAN
    /// carrying every VLAN the switch's port groups use — the untagged domain as VLAN 0 —
    /// or, for a remote VTEP with `vlans:`, those of them it serves. Like an uplink it takes
    /// any source MAC and may hold as many entries as the switch's table; it never uses the
    /// switch's uplinks, takes no offloads (no segmentation before encapsulation yet: a GSO
    /// frame is refused, `offload-not-supported`) and is named as the model says (`h2`,
    /// `vtep-192.0.2.9`).
    ///
    /// - Parameter underlayMTU: the MTU of the link holding this host's underlay address;
    ///   nil: unknown (only the 16-bit length fields limit the inner frame).
    public func compile(tunnels: [TunnelSpec], underlayMTU: Int?) -> [SwitchPlan] {
        let plans = compile()
        guard !tunnels.isEmpty else { return plans }
        return plans.map { plan in
            guard let sw = switches.first(where: { $0.name == plan.name }) else { return plan }
            let mine = tunnels.filter { $0.switchName == plan.name }
            guard !mine.isEmpty else { return plan }
            let used = sw.carriedVLANs
            return plan.appending(mine.map { t in
                var vlans = used
                if let served = t.vlans { vlans = VLANSet(used.filter { served.contains($0) }) }
                let ipv6 = t.remote.isIPv6
                let largest = underlayMTU.map { TunnelPeer.largestFrame(underlayMTU: $0, ipv6: ipv6) } ?? (0xFFFF - (ipv6 ? 16 : 36))
                var host: String? = nil
                if case .host(let h) = t.peer { host = h }
                return PortPlan(name: t.portName, portGroup: TunnelPeer.portGroup, mode: .trunk(allowed: vlans, native: nil),
                                security: PortSecurity(promiscuous: false, macChanges: true, forgedTransmits: true),
                                macLimit: sw.macLimit, usesUplinks: false, acceptsOffloads: false,
                                tunnel: TunnelPeer(remote: t.remote, host: host, vniBase: t.vniBase, udpPort: t.udpPort,
                                                   largestFrame: largest))
            })
        }
    }
}

extension SwitchSpec {
    /// Every VLAN a port group of the switch uses (the untagged domain as VLAN 0): what its
    /// tunnels carry.
    public var carriedVLANs: VLANSet {
        var s = VLANSet()
        for g in portGroups { for v in g.mode.memberVLANs { s.insert(v) } }
        return s
    }
}
