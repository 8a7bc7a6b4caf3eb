import Model

/// What changes between two versions of a topology: the input of a live reload.
///
/// A pure value, computed by `Topology.diff(from:to:)`; the runtime turns it into actions
/// (create guests, swap switch plans, delete guests). Names are listed in the order of the
/// file they come from (removed ones in the old file's order, the rest in the new file's).
///
/// - A guest whose kind, resources or NICs (switch, port group, MAC, IP, count) differ is
///   **changed**: it is removed and created again (new namespace, new TAPs).
/// - A switch whose MTU, MAC-table settings, port groups, uplinks, mirrors or static entries
///   differ is **changed**: its plan is recompiled and swapped in between batches; its ports
///   keep their TAP devices, MAC entries and counters.
/// - Which guests (and so ports) a switch has is not a switch change: ports come and go with
///   their guests.
public struct TopologyDiff: Equatable, Sendable {
    public var guestsAdded: [String] = []
    public var guestsRemoved: [String] = []
    /// Removed and re-added.
    public var guestsChanged: [String] = []
    public var switchesAdded: [String] = []
    public var switchesRemoved: [String] = []
    public var switchesChanged: [String] = []
    /// What changed on each changed switch, in `switchesChanged` order.
    public var switchChanges: [SwitchChange] = []
    /// Links of the new file that the old one does not have (by their two port names), and
    /// links whose port groups or host changed (also in `linksRemoved`, in their old form).
    public var linksAdded: [LinkSpec] = []
    public var linksRemoved: [LinkSpec] = []
    public var hostsAdded: [String] = []
    public var hostsRemoved: [String] = []
    /// Hosts whose underlay, netns, capacity or datapath settings changed.
    public var hostsChanged: [String] = []
    /// Remote VTEPs per switch; a VTEP whose VLAN list changed is in `remoteVTEPsChanged`.
    /// VTEPs of added or removed switches are not listed (they come and go with the switch).
    public var remoteVTEPsAdded: [RemoteVTEPRef] = []
    public var remoteVTEPsRemoved: [RemoteVTEPRef] = []
    public var remoteVTEPsChanged: [RemoteVTEPRef] = []
    /// The file-wide `datapath:` changed (threads, poll).
    public var datapathChanged = false
    /// `etcd:` or `ha:` changed.
    public var etcdChanged = false
    public var haChanged = false

    public init(guestsAdded: [String] = [], guestsRemoved: [String] = [], guestsChanged: [String] = [],
                switchesAdded: [String] = [], switchesRemoved: [String] = [], switchesChanged: [String] = []) {
        self.guestsAdded = guestsAdded; self.guestsRemoved = guestsRemoved; self.guestsChanged = guestsChanged
        self.switchesAdded = switchesAdded; self.switchesRemoved = switchesRemoved; self.switchesChanged = switchesChanged
    }

    /// True when applying the diff would change nothing.
    public var isEmpty: Bool {
        guestsAdded.isEmpty && guestsRemoved.isEmpty && guestsChanged.isEmpty
            && switchesAdded.isEmpty && switchesRemoved.isEmpty && switchesChanged.isEmpty
            && linksAdded.isEmpty && linksRemoved.isEmpty && hostsAdded.isEmpty && hostsRemoved.isEmpty && hostsChanged.isEmpty
            && remoteVTEPsAdded.isEmpty && remoteVTEPsRemoved.isEmpty && remoteVTEPsChanged.isEmpty
            && !datapathChanged && !etcdChanged && !haChanged
    }

    /// Guests whose namespace and TAPs go away (removed, and the old version of changed ones).
    public var guestsToDestroy: [String] { guestsRemoved + guestsChanged }
    /// Guests to create (added, and the new version of changed ones).
    public var guestsToCreate: [String] { guestsAdded + guestsChanged }

    /// One line for people: `guests +c1 -d1 ~e1; switches ~sw0` (or `no changes`).
    public var summary: String {
        var parts: [String] = []
        func add(_ label: String, _ plus: [String], _ minus: [String], _ tilde: [String]) {
            let all = plus.map { "+\($0)" } + minus.map { "-\($0)" } + tilde.map { "~\($0)" }
            if !all.isEmpty { parts.append(label + " " + all.joined(separator: " ")) }
        }
        add("guests", guestsAdded, guestsRemoved, guestsChanged)
        add("switches", switchesAdded, switchesRemoved, switchesChanged)
        add("links", linksAdded.map(\.label), linksRemoved.map(\.label), [])
        add("hosts", hostsAdded, hostsRemoved, hostsChanged)
        add("remote-vteps", remoteVTEPsAdded.map(\.description), remoteVTEPsRemoved.map(\.description), remoteVTEPsChanged.map(\.description))
        let settings = (datapathChanged ? ["datapath"] : []) + (etcdChanged ? ["etcd"] : []) + (haChanged ? ["ha"] : [])
        if !settings.isEmpty { parts.append("settings ~" + settings.joined(separator: " ~")) }
        return parts.isEmpty ? "no changes" : parts.joined(separator: "; ")
    }
}

/// What changed on one switch that exists in both files.
public struct SwitchChange: Equatable, Sendable {
    public var name: String
    /// In declaration order of `SwitchAspect`.
    public var aspects: [SwitchAspect]
    /// Port groups whose policy changed, each with what changed (added and removed groups
    /// show as `.portGroups` in `aspects` only).
    public var portGroups: [PortGroupChange]
    public init(name: String, aspects: [SwitchAspect], portGroups: [PortGroupChange] = []) {
        self.name = name; self.aspects = aspects; self.portGroups = portGroups
    }
}

/// A part of a switch's configuration.
public enum SwitchAspect: String, Equatable, Sendable, CaseIterable {
    case mtu, macTable = "mac-table", portGroups = "port-groups", uplinks, mirrors, staticMACs = "static-macs"
    case overlay, privateVLANs = "private-vlans", multicast, flowExport = "flow-export"
}

/// A port group whose policy changed, and which parts.
public struct PortGroupChange: Equatable, Sendable {
    public var name: String
    public var aspects: [PortGroupAspect]
    public init(name: String, aspects: [PortGroupAspect]) { self.name = name; self.aspects = aspects }
}

/// A part of a port group's policy.
public enum PortGroupAspect: String, Equatable, Sendable, CaseIterable {
    case vlan, uplinks, security, macLimit = "mac-limit", stormControl = "storm-control"
    case l2Transparency = "l2-transparency", shaping
}

/// A remote VTEP of a switch, by address.
public struct RemoteVTEPRef: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var switchName: String
    public var address: IPAddress
    public init(switchName: String, address: IPAddress) { self.switchName = switchName; self.address = address }
    /// `sw0/vtep-192.0.2.9`
    public var description: String { "\(switchName)/\(OverlaySpec.tunnelPortName(remoteVTEP: address))" }
}

extension LinkSpec {
    /// `sw0/trunk~sw1/trunk`
    public var label: String { ends.map { "\($0.switchName)/\($0.portGroup)" }.joined(separator: "~") }
    /// The link's identity across reloads: its two (switch, port name) ends.
    var identity: [String] { ends.map { "\($0.switchName)/\($0.portName)" }.sorted() }
}

extension HostPart {
    /// Tunnels to create and to remove when `old` becomes `new` on one host; untouched
    /// tunnels (same switch, name, remote, VLANs, port and VNI base) are in neither list.
    public static func tunnelChanges(from old: HostPart, to new: HostPart) -> (added: [TunnelSpec], removed: [TunnelSpec]) {
        func key(_ t: TunnelSpec) -> String { "\(t.switchName)/\(t.portName)" }
        let before = Dictionary(old.tunnels.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.tunnels.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        let removed = old.tunnels.filter { after[key($0)] != $0 }
        let added = new.tunnels.filter { before[key($0)] != $0 }
        return (added, removed)
    }
}

/// A reload that cannot be expressed as a diff (the instance would have to be another one).
public struct TopologyDiffError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}

extension Topology {
    /// The diff that turns `old` into `new`. Pure: reads only its arguments.
    ///
    /// - Throws: `TopologyDiffError` when the topology's `name` differs: the name is the
    ///   instance's identity (socket, state file, derived MACs), so renaming is a `down` and
    ///   an `up`, not a reload.
    public static func diff(from old: Topology, to new: Topology) throws -> TopologyDiff {
        guard old.name == new.name else {
            throw TopologyDiffError("the topology's name changed from '\(old.name)' to '\(new.name)': a running topology cannot be renamed by reload (bring it down and up instead)")
        }
        var d = TopologyDiff()
        let oldGuests = Dictionary(old.guests.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newGuests = Set(new.guests.map(\.name))
        d.guestsRemoved = old.guests.map(\.name).filter { !newGuests.contains($0) }
        for g in new.guests {
            guard let was = oldGuests[g.name] else { d.guestsAdded.append(g.name); continue }
            if was != g { d.guestsChanged.append(g.name) }
        }
        let oldSwitches = Dictionary(old.switches.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newSwitches = Set(new.switches.map(\.name))
        d.switchesRemoved = old.switches.map(\.name).filter { !newSwitches.contains($0) }
        for s in new.switches {
            guard let was = oldSwitches[s.name] else { d.switchesAdded.append(s.name); continue }
            if was != s {
                d.switchesChanged.append(s.name)
                d.switchChanges.append(switchChange(from: was, to: s))
            }
        }

        let oldLinks = Dictionary(old.links.map { ($0.identity, $0) }, uniquingKeysWith: { a, _ in a })
        let newLinks = Dictionary(new.links.map { ($0.identity, $0) }, uniquingKeysWith: { a, _ in a })
        d.linksRemoved = old.links.filter { newLinks[$0.identity] != $0 }
        d.linksAdded = new.links.filter { oldLinks[$0.identity] != $0 }

        let oldHosts = Dictionary(old.hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newHostNames = Set(new.hosts.map(\.name))
        d.hostsRemoved = old.hosts.map(\.name).filter { !newHostNames.contains($0) }
        for h in new.hosts {
            guard let was = oldHosts[h.name] else { d.hostsAdded.append(h.name); continue }
            if was != h { d.hostsChanged.append(h.name) }
        }

        for s in new.switches {
            guard let was = oldSwitches[s.name] else { continue }
            let before = Dictionary((was.overlay?.remoteVTEPs ?? []).map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
            let after = Dictionary((s.overlay?.remoteVTEPs ?? []).map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
            for v in was.overlay?.remoteVTEPs ?? [] where after[v.address] == nil {
                d.remoteVTEPsRemoved.append(RemoteVTEPRef(switchName: s.name, address: v.address))
            }
            for v in s.overlay?.remoteVTEPs ?? [] {
                guard let b = before[v.address] else { d.remoteVTEPsAdded.append(RemoteVTEPRef(switchName: s.name, address: v.address)); continue }
                if b != v { d.remoteVTEPsChanged.append(RemoteVTEPRef(switchName: s.name, address: v.address)) }
            }
        }
        d.datapathChanged = old.datapath != new.datapath
        d.etcdChanged = old.etcd != new.etcd
        d.haChanged = old.ha != new.ha
        return d
    }
}

/// What differs between two versions of one switch.
func switchChange(from a: SwitchSpec, to b: SwitchSpec) -> SwitchChange {
    var aspects: [SwitchAspect] = []
    if a.mtu != b.mtu { aspects.append(.mtu) }
    if a.agingSeconds != b.agingSeconds || a.macLimit != b.macLimit { aspects.append(.macTable) }
    if a.portGroups != b.portGroups { aspects.append(.portGroups) }
    if a.uplinks != b.uplinks { aspects.append(.uplinks) }
    if a.mirrors != b.mirrors { aspects.append(.mirrors) }
    if a.staticMACs != b.staticMACs { aspects.append(.staticMACs) }
    if a.overlay != b.overlay { aspects.append(.overlay) }
    if a.privateVLANs != b.privateVLANs { aspects.append(.privateVLANs) }
    if a.multicast != b.multicast { aspects.append(.multicast) }
    if a.flowExport != b.flowExport { aspects.append(.flowExport) }
    var groups: [PortGroupChange] = []
    let before = Dictionary(a.portGroups.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
    for g in b.portGroups {
        guard let was = before[g.name], was != g else { continue }
        var pa: [PortGroupAspect] = []
        if was.mode != g.mode || was.privateVLAN != g.privateVLAN { pa.append(.vlan) }
        if was.usesUplinks != g.usesUplinks { pa.append(.uplinks) }
        if was.security != g.security { pa.append(.security) }
        if was.macLimit != g.macLimit { pa.append(.macLimit) }
        if was.storm != g.storm { pa.append(.stormControl) }
        if was.l2Transparency != g.l2Transparency { pa.append(.l2Transparency) }
        if was.shaping != g.shaping { pa.append(.shaping) }
        groups.append(PortGroupChange(name: g.name, aspects: pa))
    }
    return SwitchChange(name: b.name, aspects: aspects, portGroups: groups)
}
