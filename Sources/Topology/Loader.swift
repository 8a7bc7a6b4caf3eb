import Core
import Foundation
import Model

/// Reads topology files: YAML text → source tree → validated `Topology`.
///
/// ```
///   text ──size cap──▶ libyaml events ──composer (nodes, depth, aliases)──▶ SourceNode tree
///        ──Validator──▶ Topology ──compile()──▶ [SwitchPlan]
///          (all errors, in file order)
/// ```
/// Host checks (`Topology.hostProblems`) are a separate step, so a file written for another
/// machine can be validated here.
public enum TopologyLoader {
    /// Loads and validates the file at `path`.
    ///
    /// Reads at most `limits.maxFileBytes + 1` bytes, so an oversized file is refused without
    /// being read whole.
    /// - Throws: `TopologyErrors`, also when the file cannot be read (reported at 1:1).
    public static func load(path: String, limits: TopologyLimits = .standard) throws -> Topology {
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            data = try handle.read(upToCount: limits.maxFileBytes + 1) ?? Data()
        } catch {
            let reason = (error as NSError).localizedDescription
            throw TopologyErrors(diagnostics: [
                TopologyDiagnostic(file: path, line: 1, column: 1, message: "cannot read \(path): \(reason)")])
        }
        if data.count > limits.maxFileBytes {
            throw TopologyErrors(diagnostics: [
                TopologyDiagnostic(file: path, line: 1, column: 1,
                                   message: "the file is larger than \(limits.maxFileBytes) bytes (\(limits.maxFileBytes / 1024) KiB), the most a topology file may have")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TopologyErrors(diagnostics: [
                TopologyDiagnostic(file: path, line: 1, column: 1, message: "cannot read topology: not valid UTF-8")])
        }
        return try parse(text, file: path, limits: limits)
    }

    /// Parses and validates YAML `text`; `file` names it in diagnostics.
    /// - Throws: `TopologyErrors` with every problem found, in file order.
    public static func parse(_ text: String, file: String, limits: TopologyLimits = .standard) throws -> Topology {
        var validator = Validator(file: file, limits: limits)
        switch composeSource(text, limits: limits) {
        case .syntaxError(let message, let location):
            validator.error(message, at: location)
        case .document(nil):
            validator.error("empty topology: expected a mapping with 'name' and 'switches'", at: .start)
        case .document(let root?):
            if var topology = validator.topology(root), !validator.sink.hasErrors {
                topology.warnings = validator.sink.sortedWarnings
                return topology
            }
        }
        throw TopologyErrors(diagnostics: validator.sink.sorted)
    }
}

extension Topology {
    /// The MAC of a NIC declared without `mac:`: stable across runs and machines, unique in
    /// practice, locally administered unicast.
    ///
    /// FNV-1a 64 over the UTF-8 of `"TOPOLOGY/GUEST/INDEX"` (e.g. `demo/web1/0`); the low 40 bits
    /// of the hash become the last five octets, the first octet is `02` (locally administered,
    /// unicast). Renaming the topology or guest, or moving the NIC in the list, changes it.
    public static func derivedMAC(topology: String, guest: String, nicIndex: Int) -> MACAddress {
        MACAddress(rawValue: 0x02_00_0000_0000 | (FNV1a.hash64("\(topology)/\(guest)/\(nicIndex)") & 0xFF_FFFF_FFFF))
    }
}

// MARK: - Validation

/// Walks the source tree, builds the model and records every error it finds on the way.
///
/// It keeps going after an error wherever the structure allows: a bad value drops only that
/// value (defaults stand in), a bad entry drops only that entry.
///
/// **Root errors only.** Cross references (NIC → switch / port group / host, static MAC →
/// port, mirror → port groups, link → switch / port group, …) are resolved against every
/// name that was *declared*, valid or not: a reference to a port group whose own value is
/// wrong (`vlan: 010`) is not reported again as "unknown port group", only the root error is.
/// A name that was never declared is unknown, with a "did you mean" among the declared ones.
struct Validator {
    var sink: DiagnosticSink
    let limits: TopologyLimits
    /// "Did you mean" suggestions left (`TopologyLimits.maxSuggestions`).
    var suggestionsLeft: Int

    init(file: String, limits: TopologyLimits = .standard) {
        sink = DiagnosticSink(file: file); self.limits = limits; suggestionsLeft = limits.maxSuggestions
        sink.maxMessageLength = limits.maxMessageLength
    }

    mutating func error(_ message: String, at location: SourceLocation) { sink.error(message, at: location) }
    mutating func warning(_ message: String, at location: SourceLocation) { sink.warning(message, at: location) }

    // Allowed keys, from the key tables the JSON Schema is generated from.
    static let topLevelKeys = Keys.topLevel.names
    static let switchKeys = Keys.switch_.names
    static let macTableKeys = Keys.macTable.names
    static let staticKeys = Keys.staticMAC.names
    static let uplinkKeys = Keys.uplinks.names
    static let portGroupKeys = Keys.portGroup.names
    static let stormKeys = Keys.storm.names
    static let trunkKeys = Keys.trunk.names
    static let securityKeys = Keys.security.names
    static let mirrorKeys = Keys.mirror.names
    static let destinationKeys = Keys.mirrorDestination.names
    static let guestKeys = Keys.guest.names
    static let qemuOnlyKeys = ["memory", "cpus", "restart"]
    static let nicKeys = Keys.nic.names

    // MARK: Declared names (for root-error-only cross references)

    /// Every switch key of `switches:`, valid or not.
    var declaredSwitches: [String] = []
    var declaredSwitchSet: Set<String> = []
    /// Every port-group key per switch, valid or not.
    var declaredPortGroups: [String: [String]] = [:]
    /// Every guest key, valid or not.
    var declaredGuests: Set<String> = []
    /// Every host key, valid or not.
    var declaredHosts: [String] = []
    /// Every uplink NIC named per switch, valid or not.
    var declaredUplinks: [String: Set<String>] = [:]
    /// True when some entry of `links:` did not validate (its port names are unknown).
    var someLinkFailed = false

    /// The valid port groups of each valid switch, by name (filled once the switches are
    /// read), so every lookup by name is O(1).
    var validGroups: [String: [String: PortGroupSpec]] = [:]

    /// Where things were written, for cross checks made after the walk.
    var nicLocations: [String: SourceLocation] = [:]
    var nicNodes: [String: SourceNode] = [:]
    var guestLocations: [String: SourceLocation] = [:]
    var portGroupLocations: [String: SourceLocation] = [:]   // "switch/group"
    var shapingLocations: [String: SourceLocation] = [:]     // "switch/group"
    var switchLocations: [String: SourceLocation] = [:]
    var hostLocations: [String: SourceLocation] = [:]
    var linkLocations: [SourceLocation] = []
    var remoteVTEPLocations: [String: [SourceLocation]] = [:]
    var overlayLocations: [String: SourceLocation] = [:]
    var flowExportLocations: [String: SourceLocation] = [:]
    var sourcePositions: [String: TextPosition] = [:]

    /// A reference that resolves to nothing valid: reported only when `name` was never
    /// declared (a declared but invalid target has its own error already).
    mutating func unresolved(_ kind: String, _ name: String, _ context: String, declared: [String], at location: SourceLocation) {
        if declared.contains(name) { return }
        error("unknown \(kind) '\(name)'\(context)" + hint(name, among: declared), at: location)
    }

    /// `"; did you mean 'x'?"` or `""`, within the suggestion budget.
    mutating func hint(_ word: String, among candidates: [String]) -> String {
        guard suggestionsLeft > 0, word.utf8.count <= 64, candidates.count <= 1024 else { return "" }
        suggestionsLeft -= 1
        return didYouMean(word, among: candidates)
    }

    /// Reports more than `max` entries of a list or mapping at the first one beyond.
    mutating func tooMany(_ count: Int, _ max: Int, _ what: String, firstBeyond: SourceLocation?) -> Bool {
        guard count > max else { return false }
        error("\(what): \(count) entries, at most \(max)", at: firstBeyond ?? .start)
        return true
    }

    // MARK: Top level

    mutating func topology(_ root: SourceNode) -> Topology? {
        guard let top = mapping(root, "the topology", allowed: Self.topLevelKeys) else { return nil }
        var name = ""
        if let f = require("name", in: top, "the topology", at: root.location), let s = text(f.value, "'name'") {
            if self.name(s, "topology name", maxLength: 12, letterFirst: true, at: f.value.location) { name = s }
        }

        var datapath = DatapathSpec()
        if let f = top["datapath"] { datapath = datapathSpec(f.value, "'datapath'") ?? DatapathSpec() }

        var hosts: [HostSpec] = []
        // An empty `hosts:` counts as absent, like an empty `guests:`.
        let hostsField = top["hosts"].flatMap { $0.value.isNull ? nil : $0 }
        if let f = hostsField { hosts = hostSpecs(f.value) }

        var switches: [SwitchSpec] = []
        var pendingStatics: [String: [PendingStatic]] = [:]
        var pendingMulticast: [String: PendingMulticast] = [:]
        var uplinkOwners: [String: (switchName: String, line: Int)] = [:]
        if let f = require("switches", in: top, "the topology", at: root.location) {
            if f.value.isNull {
                error("'switches' is empty: declare at least one switch", at: f.value.location)
            } else if let entries = namedEntries(f.value, "'switches'") {
                if entries.isEmpty { error("'switches' is empty: declare at least one switch", at: f.value.location) }
                declaredSwitches = entries.map(\.name)
                declaredSwitchSet = Set(declaredSwitches)
                if !tooMany(entries.count, limits.maxSwitches, "'switches'", firstBeyond: entries.dropFirst(limits.maxSwitches).first?.key.location) {
                    for e in entries {
                        guard self.name(e.name, "switch name", maxLength: 15, at: e.key.location) else { continue }
                        switchLocations[e.name] = e.key.location
                        let (sw, statics, multicast) = switchSpec(e.name, e.key, e.value, uplinkOwners: &uplinkOwners)
                        if let sw { switches.append(sw); pendingStatics[sw.name] = statics; pendingMulticast[sw.name] = multicast }
                    }
                }
            }
        }

        for s in switches { validGroups[s.name] = Dictionary(s.portGroups.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }

        var guests: [GuestSpec] = []
        if let f = top["guests"], !f.value.isNull, let entries = namedEntries(f.value, "'guests'") {
            declaredGuests = Set(entries.map(\.name))
            if !tooMany(entries.count, limits.maxGuests, "'guests'", firstBeyond: entries.dropFirst(limits.maxGuests).first?.key.location) {
                let switchIndex = Dictionary(switches.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
                let hostNames = Set(hosts.map(\.name))
                for e in entries {
                    guard self.name(e.name, "guest name", maxLength: 15, at: e.key.location) else { continue }
                    guestLocations[e.name] = e.key.location
                    if let g = guest(e.name, e.key, e.value, topologyName: name, switches: switchIndex,
                                     hostsDeclared: hostsField != nil, validHosts: hostNames, etcdDeclared: top["etcd"] != nil) { guests.append(g) }
                }
            }
        }

        var links: [LinkSpec] = []
        if let f = top["links"], !f.value.isNull {
            links = linkSpecs(f.value, switches: switches, hostsDeclared: hostsField != nil, validHosts: Set(hosts.map(\.name)))
        }

        var etcd: EtcdSpec? = nil
        if let f = top["etcd"] {
            etcd = etcdSpec(f.value)
            if hostsField == nil { error("'etcd' holds the state of a multi-host fabric: it needs a top-level 'hosts'", at: f.key.location) }
        }
        var ha: HASpec? = nil
        if let f = top["ha"] {
            ha = haSpec(f.value)
            if top["etcd"] == nil { error("'ha' decides restarts through etcd: it needs a top-level 'etcd'", at: f.key.location) }
        }

        // Cross checks over what validated.
        checkDuplicateMACs(guests)
        var nicsBySwitch: [String: [NICSpec]] = [:]
        for g in guests { for nic in g.nics { nicsBySwitch[nic.switchName, default: []].append(nic) } }
        let validGuests = Set(guests.map(\.name))
        for i in switches.indices where !(pendingStatics[switches[i].name] ?? []).isEmpty {
            switches[i].staticMACs = resolveStatics(pendingStatics[switches[i].name] ?? [], on: switches[i],
                                                    nics: nicsBySwitch[switches[i].name] ?? [], validGuests: validGuests)
        }
        resolveMulticast(&switches, pending: pendingMulticast, guests: guests, links: links)
        checkPrivateVLANUse(switches)
        switches = checkShaping(switches, guests: guests, links: links)
        var domains = L2Domains(switches: switches, hosts: hosts)
        checkLinkLoops(links, switches: switches, domains: &domains)
        checkAddresses(guests, switches: switches, domains: &domains)
        checkOverlays(switches, hosts: hosts, guests: guests, links: links)
        checkPortNames(switches, guests: guests, links: links, hosts: hosts)
        checkHostCapacity(hosts, guests: guests)
        checkFlowExports(switches)
        checkTableMemory(switches)

        var t = Topology(name: name, file: sink.file, switches: switches, guests: guests)
        t.links = links
        t.hosts = hosts
        t.datapath = datapath
        t.etcd = etcd
        t.ha = ha
        t.sourcePositions = sourcePositions
        return t
    }

    // MARK: Switches

    /// A static MAC entry waiting for the guest ports to exist.
    struct PendingStatic {
        var mac: MACAddress
        var vlan: VLANID?
        var vlanNode: SourceNode?
        var port: String
        var portNode: SourceNode
        var location: SourceLocation
    }

    mutating func switchSpec(_ name: String, _ key: SourceNode, _ node: SourceNode,
                             uplinkOwners: inout [String: (switchName: String, line: Int)])
        -> (SwitchSpec?, [PendingStatic], PendingMulticast) {
        let what = "switch '\(name)'"
        guard let fields = mapping(node, what, allowed: Self.switchKeys) else { return (nil, [], PendingMulticast()) }
        var sw = SwitchSpec(name: name, portGroups: [])
        if let f = fields["mtu"], let v = integer(f.value, "mtu", in: 68...9216) { sw.mtu = v }

        var statics: [PendingStatic] = []
        if let f = fields["mac-table"], let mt = mapping(f.value, "'mac-table' of \(what)", allowed: Self.macTableKeys) {
            if let a = mt["aging"], let v = duration(a.value, "mac-table aging", in: 1...1_000_000) { sw.agingSeconds = v }
            if let l = mt["limit"], let v = integer(l.value, "mac-table limit", in: 16...1_048_576) { sw.macLimit = v }
            if let s = mt["static"], !s.value.isNull, let items = list(s.value, "'static' of \(what)") {
                if !tooMany(items.count, limits.maxStaticMACs, "'static' of \(what)", firstBeyond: items.dropFirst(limits.maxStaticMACs).first?.location) {
                    for item in items { if let p = pendingStatic(item, what) { statics.append(p) } }
                }
            }
        }

        // Private VLANs first: port groups' {private: ID} refer to them.
        if let f = fields["private-vlans"], !f.value.isNull { sw.privateVLANs = privateVLANs(f.value, of: name) }

        if let f = require("port-groups", in: fields, what, at: key.location),
           let entries = namedEntries(f.value, "'port-groups' of \(what)") {
            if entries.isEmpty { error("'port-groups' of \(what) is empty: declare at least one port group", at: f.value.location) }
            declaredPortGroups[name] = entries.map(\.name)
            if !tooMany(entries.count, limits.maxPortGroups, "'port-groups' of \(what)",
                        firstBeyond: entries.dropFirst(limits.maxPortGroups).first?.key.location) {
                for e in entries {
                    guard self.name(e.name, "port group name", maxLength: 31, at: e.key.location) else { continue }
                    portGroupLocations["\(name)/\(e.name)"] = e.key.location
                    if let pg = portGroup(e.name, e.key, e.value, of: sw) { sw.portGroups.append(pg) }
                }
            }
        }

        if let f = fields["uplinks"], let u = uplinks(f.value, of: name, owners: &uplinkOwners) { sw.uplinks = u }

        if let f = fields["mirrors"], !f.value.isNull, let items = list(f.value, "'mirrors' of \(what)") {
            var seen: [String: Int] = [:]
            if !tooMany(items.count, limits.maxMirrors, "'mirrors' of \(what)", firstBeyond: items.dropFirst(limits.maxMirrors).first?.location) {
                for item in items {
                    guard let (m, nameNode) = mirror(item, on: sw) else { continue }
                    if let line = seen[m.name] {
                        error("duplicate mirror name '\(m.name)' on \(what) (first defined at line \(line))", at: nameNode.location)
                        continue
                    }
                    seen[m.name] = nameNode.location.line
                    sw.mirrors.append(m)
                }
            }
        }

        if let f = fields["overlay"] {
            overlayLocations[name] = f.key.location
            sw.overlay = overlaySpec(f.value, of: name)
        }
        let multicast = multicastSpec(fields, of: name, into: &sw)
        if let f = fields["flow-export"] {
            flowExportLocations[name] = f.key.location
            sw.flowExport = flowExportSpec(f.value, of: name)
        }
        return (sw, statics, multicast)
    }

    mutating func pendingStatic(_ node: SourceNode, _ what: String) -> PendingStatic? {
        let ctx = "static MAC entry of \(what)"
        guard let f = mapping(node, ctx, allowed: Self.staticKeys) else { return nil }
        let macField = require("mac", in: f, ctx, at: node.location)
        let portField = require("port", in: f, ctx, at: node.location)
        let mac = macField.flatMap { unicastMAC($0.value, "a static MAC entry") }
        let port = portField.flatMap { text($0.value, "'port'") }
        var vlan: VLANID? = nil
        if let v = f["vlan"] {
            guard let id = vlanOrNone(v.value, "'vlan'") else { return nil }
            vlan = id
        }
        guard let mac, let port, let portField else { return nil }
        return PendingStatic(mac: mac, vlan: vlan, vlanNode: f["vlan"]?.value, port: port,
                             portNode: portField.value, location: node.location)
    }

    mutating func portGroup(_ name: String, _ key: SourceNode, _ node: SourceNode, of sw: SwitchSpec) -> PortGroupSpec? {
        let what = "port group '\(name)'"
        guard let f = mapping(node, what, allowed: Self.portGroupKeys) else { return nil }
        var pg = PortGroupSpec(name: name, mode: .access(.untagged))
        var ok = true
        if let v = require("vlan", in: f, what, at: key.location) {
            if let (mode, privateID) = portMode(v.value, what, on: sw) { pg.mode = mode; pg.privateVLAN = privateID } else { ok = false }
        } else { ok = false }
        if let u = f["uplinks"], let s = text(u.value, "'uplinks' of a port group") {
            if s == "none" { pg.usesUplinks = false } else {
                error("invalid 'uplinks' of a port group '\(s)': expected none (omit the key to use the switch's uplinks)",
                      at: u.value.location)
            }
        }
        if let s = f["security"], let sec = mapping(s.value, "'security' of \(what)", allowed: Self.securityKeys) {
            if let b = sec["promiscuous"].flatMap({ boolean($0.value, "'promiscuous'") }) { pg.security.promiscuous = b }
            if let b = sec["mac-changes"].flatMap({ boolean($0.value, "'mac-changes'") }) { pg.security.macChanges = b }
            if let b = sec["forged-transmits"].flatMap({ boolean($0.value, "'forged-transmits'") }) { pg.security.forgedTransmits = b }
        }
        if let m = f["mac-limit"] {
            if let n = integer(m.value, "'mac-limit' of \(what)", in: 1...1_048_576) { pg.macLimit = n } else { ok = false }
        }
        if let st = f["storm-control"], let limits = mapping(st.value, "'storm-control' of \(what)", allowed: Self.stormKeys) {
            let range = 1...100_000_000
            pg.storm.broadcast = limits["broadcast"].flatMap { integer($0.value, "'broadcast' rate", in: range, unit: " fps") }
            pg.storm.multicast = limits["multicast"].flatMap { integer($0.value, "'multicast' rate", in: range, unit: " fps") }
            pg.storm.unknownUnicast = limits["unknown-unicast"].flatMap { integer($0.value, "'unknown-unicast' rate", in: range, unit: " fps") }
        }
        if let t = f["l2-transparency"], let b = boolean(t.value, "'l2-transparency'") { pg.l2Transparency = b }
        if let s = f["shaping"] {
            shapingLocations["\(sw.name)/\(name)"] = s.key.location
            if let spec = shapingSpec(s.value, what) { pg.shaping = spec } else { ok = false }
        }
        return ok ? pg : nil
    }

    /// `vlan:` — a number (access), `none` (untagged domain), `{trunk: [...], native: N|drop-untagged}`
    /// or `{private: ID}`. Returns the mode and, for a private VLAN port, its ID.
    mutating func portMode(_ node: SourceNode, _ what: String, on sw: SwitchSpec) -> (PortMode, VLANID?)? {
        switch node.kind {
        case .scalar(let s):
            if node.isNull && s.isEmpty { error("missing value for 'vlan' of \(what)", at: node.location); return nil }
            if s == "none" { return (.access(.untagged), nil) }
            guard s.utf8.allSatisfy({ (48...57).contains($0) }) else {
                error("invalid VLAN '\(s)': expected a number 1..4094, none, {trunk: [...], native: ...} or {private: ID}", at: node.location)
                return nil
            }
            guard let v = vlanNumber(s, at: node.location) else { return nil }
            if let role = sw.privateVLANRole(of: v) {
                let kind: String
                switch role { case .promiscuous: kind = "the primary"; case .isolated: kind = "the isolated VLAN"; case .community: kind = "a community VLAN" }
                error("VLAN \(v) is \(kind) of a private VLAN of switch '\(sw.name)': write vlan: {private: \(v)}", at: node.location)
                return nil
            }
            return (.access(v), nil)
        case .sequence:
            error("expected a VLAN number, none or a mapping {trunk: [...]} for 'vlan' of \(what), found a list", at: node.location)
            return nil
        case .mapping(let pairs):
            if pairs.contains(where: { $0.key.scalar == "private" }) {
                guard let f = mapping(node, "'vlan' of \(what)", allowed: Keys.privateVLANRef.names),
                      let p = require("private", in: f, "'vlan' of \(what)", at: node.location),
                      let s = text(p.value, "'private'"), let v = vlanNumber(s, at: p.value.location) else { return nil }
                guard sw.privateVLANRole(of: v) != nil else {
                    let known = sw.privateVLANs.flatMap { [$0.primary] + ($0.isolated.map { [$0] } ?? []) + $0.community }.map(\.description)
                    error("VLAN \(v) is not a private VLAN of switch '\(sw.name)'"
                          + (known.isEmpty ? ": declare it under 'private-vlans'" : " (its private VLANs: \(known.joined(separator: ", ")))"),
                          at: p.value.location)
                    return nil
                }
                return (.access(v), v)
            }
            guard let f = mapping(node, "'vlan' of \(what)", allowed: Self.trunkKeys) else { return nil }
            var native: VLANID? = nil
            var ok = true
            if let n = f["native"], let s = text(n.value, "'native'") {
                switch s {
                case "drop-untagged": native = nil
                case "none":
                    warning("'native: none' is deprecated: on a trunk it means untagged frames are dropped, while 'vlan: none' is the untagged domain; write 'native: drop-untagged'",
                            at: n.value.location)
                default:
                    if let v = vlanNumber(s, at: n.value.location) {
                        if sw.privateVLANRole(of: v) != nil {
                            error("VLAN \(v) is a private VLAN of switch '\(sw.name)' and cannot be a trunk's native VLAN", at: n.value.location)
                            ok = false
                        }
                        native = v
                    } else { ok = false }
                }
            } else if f["native"] != nil { ok = false }
            guard let t = require("trunk", in: f, "'vlan' of \(what)", at: node.location),
                  let items = list(t.value, "'trunk'") else { return nil }
            if items.isEmpty {
                error("empty trunk list: list the VLANs the trunk carries (an empty list does not mean all)", at: t.value.location)
                return nil
            }
            if tooMany(items.count, limits.maxTrunkEntries, "trunk list", firstBeyond: items.dropFirst(limits.maxTrunkEntries).first?.location) { return nil }
            guard let allowed = vlanList(items, what: "trunk", allowNone: false) else { return nil }
            return ok ? (.trunk(allowed: allowed, native: native), nil) : nil
        }
    }

    /// VLAN numbers and ranges `a-b` (and `none` when `allowNone`, as the untagged domain).
    mutating func vlanList(_ items: [SourceNode], what: String, allowNone: Bool) -> VLANSet? {
        var allowed = VLANSet()
        var ok = true
        for item in items {
            guard let s = text(item, "a \(what) VLAN") else { ok = false; continue }
            let parts = s.split(separator: "-", omittingEmptySubsequences: false)
            if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty {
                guard let a = vlanNumber(String(parts[0]), at: item.location),
                      let b = vlanNumber(String(parts[1]), at: item.location) else { ok = false; continue }
                guard a <= b else {
                    error("invalid VLAN range '\(s)': the start is greater than the end", at: item.location)
                    ok = false; continue
                }
                allowed.insert(range: a.rawValue...b.rawValue)
            } else if s.contains("-") {
                error("invalid VLAN range '\(s)': expected FIRST-LAST like 100-199", at: item.location)
                ok = false
            } else if s == "none" {
                if allowNone { allowed.insert(.untagged) } else {
                    error("'none' cannot be in a trunk list; untagged frames belong to 'native'", at: item.location)
                    ok = false
                }
            } else if let v = vlanNumber(s, at: item.location) {
                allowed.insert(v)
            } else { ok = false }
        }
        return ok ? allowed : nil
    }

    mutating func uplinks(_ node: SourceNode, of switchName: String,
                          owners: inout [String: (switchName: String, line: Int)]) -> UplinkSpec? {
        let what = "'uplinks' of switch '\(switchName)'"
        guard let f = mapping(node, what, allowed: Self.uplinkKeys) else { return nil }
        var nics: [String] = []
        var positions: [TextPosition] = []
        var ok = true
        if let n = require("nics", in: f, what, at: node.location), let items = list(n.value, "'nics' of uplinks") {
            if items.isEmpty { error("'nics' of uplinks is empty: list at least one interface", at: n.value.location); ok = false }
            if tooMany(items.count, limits.maxUplinkNICs, "'nics' of uplinks", firstBeyond: items.dropFirst(limits.maxUplinkNICs).first?.location) { return nil }
            var seen: [String: Int] = [:]
            for item in items {
                if let s = item.scalar { declaredUplinks[switchName, default: []].insert(s) }
                guard let name = interfaceName(item, "an uplink NIC") else { ok = false; continue }
                if let line = seen[name] {
                    error("duplicate uplink NIC '\(name)' (first listed at line \(line))", at: item.location)
                    ok = false; continue
                }
                if let owner = owners[name] {
                    error("uplink NIC '\(name)' is already an uplink of switch '\(owner.switchName)' (line \(owner.line))",
                          at: item.location)
                    ok = false; continue
                }
                seen[name] = item.location.line
                owners[name] = (switchName, item.location.line)
                nics.append(name)
                positions.append(TextPosition(line: item.location.line, column: item.location.column))
            }
        } else { ok = false }
        let nicSet = Set(nics)
        var spec = UplinkSpec(nics: nics)
        spec.nicPositions = positions
        var policyKnown = true
        if let p = f["policy"] {
            if let v = choice(p.value, "teaming policy", TeamPolicy.allCases) {
                spec.policy = v
            } else { ok = false; policyKnown = false }
        }
        if let b = f["failback"].flatMap({ boolean($0.value, "'failback'") }) { spec.failback = b }
        if let b = f["notify-switches"].flatMap({ boolean($0.value, "'notify-switches'") }) { spec.notifySwitches = b }
        if let d = f["detection"] {
            if let v = choice(d.value, "failure detection", [FailureDetection.linkStatus, .beaconProbing]) {
                spec.detection = v
                if v == .beaconProbing && !nics.isEmpty && nics.count < 3 {
                    warning("beacon probing with \(nics.count) NIC\(nics.count == 1 ? "" : "s"): at least 3 are needed to tell which path failed; with fewer, a silent failure is not isolated (link status still works)",
                            at: d.value.location)
                }
            } else { ok = false }
        }
        if let l = f["lldp"] {
            if let v = choice(l.value, "LLDP mode", LLDPMode.allCases) { spec.lldp = v } else { ok = false }
        }

        // active / standby: failover-order only; disjoint subsets of nics.
        var lists: [String: [String]] = [:]
        var listed: [String: (list: String, line: Int)] = [:]
        for key in ["active", "standby"] {
            guard let field = f[key] else { continue }
            guard policyKnown else { continue }
            if spec.policy != .failoverOrder {
                error("'\(key)' applies only to policy failover-order (policy is \(spec.policy.rawValue))", at: field.key.location)
                ok = false; continue
            }
            guard let items = list(field.value, "'\(key)'") else { ok = false; continue }
            if tooMany(items.count, limits.maxUplinkNICs, "'\(key)'", firstBeyond: items.dropFirst(limits.maxUplinkNICs).first?.location) { ok = false; continue }
            var names: [String] = []
            for item in items {
                guard let name = text(item, "a NIC in '\(key)'") else { ok = false; continue }
                guard nicSet.contains(name) else {
                    error("'\(name)' in '\(key)' is not one of the uplink nics" + hint(name, among: nics), at: item.location)
                    ok = false; continue
                }
                if let prev = listed[name] {
                    error("'\(name)' is already listed in '\(prev.list)' (line \(prev.line))", at: item.location)
                    ok = false; continue
                }
                listed[name] = (key, item.location.line)
                names.append(name)
            }
            lists[key] = names
        }
        if spec.policy == .failoverOrder {
            switch (lists["active"], lists["standby"]) {
            case let (a?, s?): spec.active = a; spec.standby = s
            case let (a?, nil): let set = Set(a); spec.active = a; spec.standby = nics.filter { !set.contains($0) }
            case let (nil, s?): let set = Set(s); spec.standby = s; spec.active = nics.filter { !set.contains($0) }
            case (nil, nil): spec.active = nics; spec.standby = []
            }
            if ok && spec.active.isEmpty {
                error("failover-order needs at least one active NIC", at: (f["active"]?.value ?? node).location)
                ok = false
            }
        } else {
            spec.active = nics; spec.standby = []
        }
        return ok ? spec : nil
    }

    mutating func mirror(_ node: SourceNode, on sw: SwitchSpec) -> (MirrorSpec, SourceNode)? {
        let what = "mirror of switch '\(sw.name)'"
        guard let f = mapping(node, what, allowed: Self.mirrorKeys) else { return nil }
        let groups = Set(sw.portGroups.map(\.name))
        let declared = declaredPortGroups[sw.name] ?? []
        var ok = true
        var name = "", nameNode = node
        if let n = require("name", in: f, what, at: node.location), let s = text(n.value, "'name' of a mirror") {
            if self.name(s, "mirror name", maxLength: 31, at: n.value.location) { name = s; nameNode = n.value } else { ok = false }
        } else { ok = false }
        var sources: [String] = []
        if let s = require("source", in: f, what, at: node.location), let items = list(s.value, "'source' of a mirror") {
            if items.isEmpty { error("'source' of a mirror is empty: list at least one port group", at: s.value.location); ok = false }
            var seen = Set<String>()
            for item in items {
                guard let g = text(item, "a source port group") else { ok = false; continue }
                guard groups.contains(g) else {
                    unresolved("port group", g, " on switch '\(sw.name)'", declared: declared, at: item.location)
                    ok = false; continue
                }
                if seen.insert(g).inserted { sources.append(g) }
            }
        } else { ok = false }
        var direction = MirrorDirection.both
        if let d = f["direction"] {
            if let v = choice(d.value, "mirror direction", [MirrorDirection.in, .out, .both]) { direction = v } else { ok = false }
        }
        var destination = ""
        if let d = require("destination", in: f, what, at: node.location),
           let dm = mapping(d.value, "'destination' of a mirror", allowed: Self.destinationKeys) {
            if let g = require("port-group", in: dm, "'destination' of a mirror", at: d.value.location),
               let s = text(g.value, "'port-group'") {
                if !groups.contains(s) {
                    unresolved("port group", s, " on switch '\(sw.name)'", declared: declared, at: g.value.location)
                    ok = false
                } else if sources.contains(s) {
                    error("mirror destination '\(s)' is also a source; a mirror cannot copy into its own source", at: g.value.location)
                    ok = false
                } else { destination = s }
            } else { ok = false }
        } else { ok = false }
        guard ok else { return nil }
        return (MirrorSpec(name: name, sourcePortGroups: sources, direction: direction, destinationPortGroup: destination), nameNode)
    }

    /// Resolves a switch's static MAC entries against its guest ports (`nics`: the NICs on
    /// the switch).
    mutating func resolveStatics(_ pending: [PendingStatic], on sw: SwitchSpec, nics: [NICSpec], validGuests: Set<String>) -> [StaticMACSpec] {
        var ports: [String: PortMode] = [:]
        var portNames: [String] = []
        let groups = validGroups[sw.name] ?? [:]
        for nic in nics {
            if let pg = groups[nic.portGroup] { ports[nic.portName] = pg.mode; portNames.append(nic.portName) }
        }
        var out: [StaticMACSpec] = []
        var seen: [VLANID: [MACAddress: Int]] = [:]
        for p in pending {
            guard let mode = ports[p.port] else {
                if !declaredPortOf(p.port, validGuests: validGuests) {
                    error("unknown port '\(p.port)' on switch '\(sw.name)': expected a guest port GUEST.ethN"
                          + hint(p.port, among: portNames), at: p.portNode.location)
                }
                continue
            }
            let vlan: VLANID
            if let v = p.vlan {
                guard mode.isMember(v) else {
                    error("port \(p.port) is not a member of VLAN \(v) (its mode is \(mode))", at: (p.vlanNode ?? p.portNode).location)
                    continue
                }
                vlan = v
            } else if case .access(let v) = mode {
                vlan = v
            } else {
                error("'vlan' is required for a static MAC on trunk port \(p.port)", at: p.location)
                continue
            }
            if let line = seen[vlan]?[p.mac] {
                error("duplicate static MAC \(p.mac) in VLAN \(vlan) (first at line \(line))", at: p.location)
                continue
            }
            seen[vlan, default: [:]][p.mac] = p.location.line
            out.append(StaticMACSpec(mac: p.mac, vlan: vlan, port: p.port))
        }
        return out
    }

    /// True when `port` (`GUEST.ethN`) names a NIC of a declared guest that did not validate:
    /// its own error is the root one.
    func declaredPortOf(_ port: String, validGuests: Set<String>) -> Bool {
        guard let dot = port.lastIndex(of: ".") else { return false }
        let guest = String(port[..<dot])
        return declaredGuests.contains(guest) && !validGuests.contains(guest)
    }
}
