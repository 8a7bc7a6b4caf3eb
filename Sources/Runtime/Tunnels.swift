import Core
import Foundation
import LinuxIO
import Model
import Topology

/// Multi-host instances and their tunnels, as `apply` (Build.swift) uses them.
///
/// - An instance runs one host's part of a topology (`Topology.part(forHost:)`): its
///   guests, the switches with a port on it, and one tunnel port per other host running
///   each overlay switch and per remote VTEP. A topology without `hosts:` is one host.
/// - Tunnel ports are `TunnelPort`s over shared `UnderlayEndpoint`s (one per UDP port, on
///   this host's underlay address, opened in its `netns:` when it has one). Reload adds and
///   removes tunnels like ports: an untouched tunnel keeps its I/O object, so its MAC
///   entries and counters carry over (`SwitchRuntime.carryOver`) and its frames keep flowing.
/// - Changing this host's own underlay address or namespace needs a `down` and `up` (the
///   endpoints' sockets are bound to it).
extension Fabric {
    /// Tunnels to create and to retire in one `apply`.
    struct TunnelPlan {
        var added: [TunnelSpec] = []
        var removed: [TunnelSpec] = []
        var isEmpty: Bool { added.isEmpty && removed.isEmpty }
    }

    /// The part of `t` this instance runs, and its tunnels.
    /// - Throws: `RuntimeError` when `t` spans hosts and no host was chosen, or does not
    ///   have the instance's host.
    func runningPart(of t: Topology) throws -> (topology: Topology, tunnels: [TunnelSpec]) {
        guard let h = hostName else {
            if !t.hosts.isEmpty {
                throw RuntimeError("topology '\(t.name)' spans hosts (\(t.hosts.map(\.name).joined(separator: ", "))): run one with --host HOST")
            }
            return (t, [])
        }
        do {
            let part = try t.part(forHost: h)
            var run = part.topology
            // With etcd, the placement adjusts the file's part (HA.swift): guests moved away
            // or withheld go, guests moved here come (only onto switches that run here).
            if !notHere.isEmpty { run.guests.removeAll { notHere.contains($0.name) } }
            let switches = Set(run.switches.map(\.name))
            for g in t.guests where movedHere.contains(g.name) && !run.guests.contains(where: { $0.name == g.name }) {
                if g.nics.allSatisfy({ switches.contains($0.switchName) }) { run.guests.append(g) }
                else { log("fabric: \(g.name) cannot run here: its switches do not all run on host \(h)") }
            }
            return (run, part.tunnels)
        } catch { throw RuntimeError("\(error)") }
    }

    /// The tunnels that change when the running ones become `new` (by switch and port name;
    /// a tunnel whose remote, VLANs, port or VNI base changed is removed and added again).
    /// - Throws: `RuntimeError` when this host's underlay address or namespace changed while
    ///   tunnels use them.
    func tunnelChanges(to new: [TunnelSpec], of file: Topology) throws -> TunnelPlan {
        if let h = hostName, let spec = file.hosts.first(where: { $0.name == h }), !underlayEndpoints.isEmpty {
            let key = TunnelDemux.key(spec.underlay)
            for e in underlayEndpoints.values where e.local.high != key.high || e.local.low != key.low || e.namespace != spec.netns {
                throw RuntimeError("host '\(h)' changed its underlay address or netns (now \(spec.underlay)\(spec.netns.map { " in \($0)" } ?? "")); its tunnels are bound to \(e.label): bring the host down and up instead")
            }
        }
        func key(_ t: TunnelSpec) -> String { "\(t.switchName)/\(t.portName)" }
        let before = Dictionary(tunnels.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        return TunnelPlan(added: new.filter { before[key($0)] != $0 }, removed: tunnels.filter { after[key($0)] != $0 })
    }

    /// A `TunnelPort` per tunnel, by `ioKey` (`SWITCH/PORT`), opening the underlay endpoint
    /// of each UDP port not open yet (in the host's namespace) and warning, once per
    /// endpoint, when its link's MTU is too small for a switch (RFC 7348 §4.3).
    func makeTunnelPorts(_ list: [TunnelSpec], of file: Topology) throws -> [String: PortIO] {
        guard !list.isEmpty else { return [:] }
        guard let h = hostName, let spec = file.hosts.first(where: { $0.name == h }) else {
            throw RuntimeError("tunnels need this host's underlay address: run the topology with --host")
        }
        var out: [String: PortIO] = [:]
        for t in list {
            let endpoint: UnderlayEndpoint
            if let e = underlayEndpoints[t.udpPort] { endpoint = e } else {
                do {
                    endpoint = try UnderlayEndpoint(address: spec.underlay, port: t.udpPort, namespace: spec.netns, queues: datapathThreads)
                } catch {
                    throw RuntimeError("host \(h): cannot open the VXLAN underlay on \(spec.underlay) port \(t.udpPort)\(spec.netns.map { " in netns \($0)" } ?? ""): \(error)")
                }
                underlayEndpoints[t.udpPort] = endpoint
                let ports = endpoint.socket.sourcePorts
                log("underlay: \(endpoint.label), MTU \(endpoint.mtu), \(endpoint.queueCount) receive socket(s)"
                    + (endpoint.socket.receivesRuns ? " with UDP GRO" : "")
                    + ", \(ports.count) sending socket(s) (source ports \(ports.min() ?? 0)-\(ports.max() ?? 0))")
                for w in file.underlayWarnings(forHost: h, underlayMTU: endpoint.mtu) { log(w.description) }
            }
            out["\(t.switchName)/\(t.portName)"] = TunnelPort(label: "\(t.switchName)/\(t.portName)", endpoint: endpoint,
                                                               remote: t.remote, vniBase: t.vniBase, queues: datapathThreads,
                                                               sendsRuns: { if case .host = t.peer { return true } else { return false } }())
        }
        return out
    }

    /// Closes the endpoints no running tunnel uses (after the swap took them out of the
    /// datapath).
    func closeUnusedEndpoints() {
        let used = Set(tunnels.map(\.udpPort))
        for (port, e) in underlayEndpoints where !used.contains(port) {
            e.close()
            underlayEndpoints.removeValue(forKey: port)
        }
    }

    /// The endpoints the running tunnels use, in port order (what the datapath polls).
    func endpointsInUse(for list: [TunnelSpec]) -> [UnderlayEndpoint] {
        let used = Set(list.map(\.udpPort))
        return underlayEndpoints.keys.sorted().filter { used.contains($0) }.map { underlayEndpoints[$0]! }
    }

    func logTunnels(_ plan: TunnelPlan, of file: Topology) {
        func describe(_ t: TunnelSpec) -> String {
            let peer: String
            switch t.peer { case .host(let h): peer = "host \(h)"; case .remoteVTEP: peer = "remote VTEP" }
            return "\(t.switchName)/\(t.portName) (\(peer) \(t.remote):\(t.udpPort), VNI \(t.vniBase)+VLAN)"
        }
        log("tunnels: " + (plan.added.map { "+" + describe($0) } + plan.removed.map { "-" + describe($0) }).joined(separator: ", "))
    }

    /// What `validate` says about the underlays of this machine (RFC 7348 §4.3: never
    /// fragment): for every host of `t` whose underlay address is on this machine — in the
    /// root namespace, or in its `netns:` when that namespace exists and holds it — the
    /// warnings of `Topology.underlayWarnings(forHost:underlayMTU:)` for the MTU of the link
    /// holding the address: the same check and words as `up` logs. Hosts whose address is
    /// elsewhere (another machine, a namespace not created yet, or one this user may not
    /// enter) give nothing. Control path; enters namespaces with a short-lived thread.
    public static func underlayWarnings(of t: Topology) -> [TopologyDiagnostic] {
        var out: [TopologyDiagnostic] = []
        for h in t.hosts {
            let k = TunnelDemux.key(h.underlay)
            let probe = { () throws -> Int in try UnderlaySocket.mtu(ipv6: h.underlay.isIPv6, address: k.high, k.low, label: "host \(h.name)") }
            let mtu: Int?
            if let ns = h.netns {
                mtu = NetworkNamespace.exists(ns) ? try? NetworkNamespace.run(in: ns, probe) : nil
            } else {
                mtu = try? probe()
            }
            if let m = mtu { out += t.underlayWarnings(forHost: h.name, underlayMTU: m) }
        }
        return out
    }

    /// A tunnel port's far end for `ports`: `10.70.0.2:4789 (host h2)`.
    static func tunnelPeerText(_ t: TunnelPeer) -> String {
        let address = t.remote.isIPv6 ? "[\(t.remote)]" : "\(t.remote)"
        return "\(address):\(t.udpPort)" + (t.host.map { " (host \($0))" } ?? " (remote VTEP)")
    }
}
