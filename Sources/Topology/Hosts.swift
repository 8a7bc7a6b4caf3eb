import Core
import Model

/// Why `up` cannot tell which host of a topology this machine is.
public struct HostSelectionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}

/// The part of a multi-host topology that one host runs.
public struct HostPart: Sendable, Equatable {
    /// The host's name.
    public var host: String
    /// The topology restricted to the host: its guests, the switches with a port on it (a
    /// guest NIC or a link end), the links that run on it; `hosts`, `etcd` and `ha` stay
    /// whole. The runtime builds, diffs and checks (`hostProblems`) this like any topology.
    public var topology: Topology
    /// The host's tunnel ports: per switch with an overlay, one per other host that runs the
    /// switch and one per remote VTEP, in switch order, then host order, then file order.
    public var tunnels: [TunnelSpec]
    /// The datapath settings that apply on the host (the file's, overridden key by key by
    /// the host's own).
    public var datapath: DatapathSpec
}

extension Topology {
    /// The datapath settings for `host` (the file-wide `datapath:` overridden key by key by
    /// `hosts.H.datapath`); the file-wide ones when `host` is nil or unknown.
    public func datapath(forHost host: String?) -> DatapathSpec {
        guard let host, let h = hosts.first(where: { $0.name == host }) else { return datapath }
        return datapath.overridden(by: h.datapath)
    }

    /// The host `up` runs when no `--host` is given: the one host without `netns:` whose
    /// underlay address is one of `localAddresses` (the root namespace's addresses).
    ///
    /// - Returns: `nil` for a topology without `hosts:` (it is all one host).
    /// - Throws: `HostSelectionError` when no host or several match (naming them), or when
    ///   the only candidates have `netns:` (those need `--host`).
    public func localHost(among localAddresses: Set<IPAddress>) throws -> String? {
        guard !hosts.isEmpty else { return nil }
        let root = hosts.filter { $0.netns == nil }
        let matches = root.filter { localAddresses.contains($0.underlay) }
        if matches.count == 1 { return matches[0].name }
        if matches.count > 1 {
            throw HostSelectionError("several hosts of '\(name)' have an underlay address on this machine (\(matches.map { "\($0.name) \($0.underlay)" }.joined(separator: ", "))): pass --host")
        }
        let namespaced = hosts.filter { $0.netns != nil }.map(\.name)
        var message = "no host of '\(name)' has its underlay address on this machine"
        if !root.isEmpty { message += " (" + root.map { "\($0.name) \($0.underlay)" }.joined(separator: ", ") + ")" }
        if !namespaced.isEmpty { message += "; hosts with netns (\(namespaced.joined(separator: ", "))) are chosen with --host" }
        throw HostSelectionError(message + ": pass --host HOST")
    }

    /// The switches that run on `host`: those with a guest NIC or a link end there.
    public func switchNames(onHost host: String) -> Set<String> {
        var out = Set<String>()
        for g in guests where g.host == host { for nic in g.nics { out.insert(nic.switchName) } }
        for l in links where l.host == host { for e in l.ends { out.insert(e.switchName) } }
        return out
    }

    /// The part of the topology `host` runs: its guests, the switches with a port on it, its
    /// links, and its tunnels (one per other host running each overlay switch, one per
    /// remote VTEP). Pure.
    /// - Throws: `HostSelectionError` for a host the topology does not have.
    public func part(forHost host: String) throws -> HostPart {
        guard hosts.contains(where: { $0.name == host }) else {
            let names = hosts.map(\.name)
            throw HostSelectionError(names.isEmpty
                ? "topology '\(name)' has no 'hosts': run it without --host"
                : "topology '\(name)' has no host '\(host)' (its hosts: \(names.joined(separator: ", ")))")
        }
        let local = switchNames(onHost: host)
        var t = self
        t.guests = guests.filter { $0.host == host }
        t.switches = switches.filter { local.contains($0.name) }
        t.links = links.filter { $0.host == host }
        var tunnels: [TunnelSpec] = []
        for s in t.switches {
            guard let o = s.overlay else { continue }
            for h in hosts where h.name != host && switchNames(onHost: h.name).contains(s.name) {
                tunnels.append(TunnelSpec(switchName: s.name, portName: h.name, peer: .host(h.name), remote: h.underlay,
                                          vlans: nil, udpPort: o.port, vniBase: o.vniBase))
            }
            for v in o.remoteVTEPs {
                tunnels.append(TunnelSpec(switchName: s.name, portName: v.portName, peer: .remoteVTEP, remote: v.address,
                                          vlans: v.vlans, udpPort: o.port, vniBase: o.vniBase))
            }
        }
        return HostPart(host: host, topology: t, tunnels: tunnels, datapath: datapath(forHost: host))
    }

    /// The underlay MTU checks of RFC 7348 §4.3 (never fragment): a warning for each overlay
    /// switch of `host` whose MTU plus the encapsulation (50 bytes over IPv4, 70 over IPv6)
    /// exceeds `underlayMTU`. Pure; the caller reads the underlay link's MTU.
    public func underlayWarnings(forHost host: String, underlayMTU: Int) -> [TopologyDiagnostic] {
        guard let h = hosts.first(where: { $0.name == host }) else { return [] }
        let overhead = h.underlay.isIPv6 ? 70 : 50
        let at = sourcePositions["host.\(host)"] ?? TextPosition(line: 1, column: 1)
        return switches.filter { $0.overlay != nil && switchNames(onHost: host).contains($0.name) && $0.mtu + overhead > underlayMTU }.map {
            TopologyDiagnostic(file: file, line: at.line, column: at.column,
                               message: "switch '\($0.name)' has MTU \($0.mtu), but host '\(host)''s underlay MTU is \(underlayMTU): VXLAN over IPv\(h.underlay.family) needs \($0.mtu + overhead); larger frames are dropped, never fragmented (RFC 7348 §4.3)",
                               severity: .warning)
        }
    }
}
