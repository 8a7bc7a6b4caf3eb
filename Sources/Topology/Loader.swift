import Core
import Foundation
import Model

/// Reads topology files: YAML text → source tree → validated `Topology`.
///
/// ```
///   text ──Yams.compose──▶ SourceNode tree ──Validator──▶ Topology ──compile()──▶ [SwitchPlan]
///        (syntax errors)   (text + line:col)  (all errors, in file order)
/// ```
public enum TopologyLoader {
    /// Loads and validates the file at `path`.
    /// - Throws: `TopologyErrors`, also when the file cannot be read (reported at 1:1).
    public static func load(path: String) throws -> Topology {
        let text: String
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let s = String(data: data, encoding: .utf8) else {
                throw TopologyErrors(diagnostics: [
                    TopologyDiagnostic(file: path, line: 1, column: 1, message: "cannot read topology: not valid UTF-8")])
            }
            text = s
        } catch let e as TopologyErrors {
            throw e
        } catch {
            let reason = (error as NSError).localizedDescription
            throw TopologyErrors(diagnostics: [
                TopologyDiagnostic(file: path, line: 1, column: 1, message: "cannot read \(path): \(reason)")])
        }
        return try parse(text, file: path)
    }

    /// Parses and validates YAML `text`; `file` names it in diagnostics.
    /// - Throws: `TopologyErrors` with every problem found, in file order.
    public static func parse(_ text: String, file: String) throws -> Topology {
        var validator = Validator(file: file)
        switch composeSource(text) {
        case .syntaxError(let message, let location):
            validator.error(message, at: location)
        case .document(nil):
            validator.error("empty topology: expected a mapping with 'name' and 'switches'", at: .start)
        case .document(let root?):
            if var topology = validator.topology(root), !validator.sink.hasErrors {
                topology.warnings = validator.sink.warnings
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
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(topology)/\(guest)/\(nicIndex)".utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return MACAddress(rawValue: 0x02_00_0000_0000 | (hash & 0xFF_FFFF_FFFF))
    }
}

// MARK: - Validation

/// Walks the source tree, builds the model and records every error it finds on the way.
///
/// It keeps going after an error wherever the structure allows: a bad value drops only that
/// value (defaults stand in), a bad entry drops only that entry. Cross references (NIC →
/// switch / port group, static MAC → port, mirror → port groups) are checked against what did
/// validate, so one typo does not cascade into a page of errors.
struct Validator {
    var sink: DiagnosticSink

    init(file: String) { sink = DiagnosticSink(file: file) }

    mutating func error(_ message: String, at location: SourceLocation) { sink.error(message, at: location) }

    static let topLevelKeys = ["name", "switches", "guests"]
    static let switchKeys = ["mtu", "mac-table", "uplinks", "port-groups", "mirrors"]
    static let macTableKeys = ["aging", "limit", "static"]
    static let staticKeys = ["mac", "vlan", "port"]
    static let uplinkKeys = ["nics", "policy", "active", "standby", "failback", "notify-switches", "detection"]
    static let portGroupKeys = ["vlan", "uplinks", "security", "mac-limit", "storm-control", "l2-transparency"]
    static let stormKeys = ["broadcast", "multicast", "unknown-unicast"]
    static let trunkKeys = ["trunk", "native"]
    static let securityKeys = ["promiscuous", "mac-changes", "forged-transmits"]
    static let mirrorKeys = ["name", "source", "direction", "destination"]
    static let destinationKeys = ["port-group"]
    static let guestKeys = ["kind", "memory", "cpus", "restart", "nics"]
    static let qemuOnlyKeys = ["memory", "cpus", "restart"]
    static let nicKeys = ["switch", "port-group", "mac", "ip"]

    /// A static MAC entry waiting for the guest ports to exist.
    struct PendingStatic {
        var mac: MACAddress
        var vlan: VLANID?
        var vlanNode: SourceNode?
        var port: String
        var portNode: SourceNode
        var location: SourceLocation
    }

    mutating func topology(_ root: SourceNode) -> Topology? {
        guard let top = mapping(root, "the topology", allowed: Self.topLevelKeys) else { return nil }
        var name = ""
        if let f = require("name", in: top, "the topology", at: root.location), let s = text(f.value, "'name'") {
            if self.name(s, "topology name", maxLength: 12, letterFirst: true, at: f.value.location) { name = s }
        }

        var switches: [SwitchSpec] = []
        var pendingStatics: [String: [PendingStatic]] = [:]
        var uplinkOwners: [String: (switchName: String, line: Int)] = [:]
        if let f = require("switches", in: top, "the topology", at: root.location) {
            if f.value.isNull {
                error("'switches' is empty: declare at least one switch", at: f.value.location)
            } else if let entries = namedEntries(f.value, "'switches'") {
                if entries.isEmpty { error("'switches' is empty: declare at least one switch", at: f.value.location) }
                for e in entries {
                    guard self.name(e.name, "switch name", maxLength: 15, at: e.key.location) else { continue }
                    let (sw, statics) = switchSpec(e.name, e.key, e.value, uplinkOwners: &uplinkOwners)
                    if let sw { switches.append(sw); pendingStatics[sw.name] = statics }
                }
            }
        }

        var guests: [GuestSpec] = []
        if let f = top["guests"], !f.value.isNull, let entries = namedEntries(f.value, "'guests'") {
            for e in entries {
                guard self.name(e.name, "guest name", maxLength: 15, at: e.key.location) else { continue }
                if let g = guest(e.name, e.key, e.value, topologyName: name, switches: switches) { guests.append(g) }
            }
        }

        checkDuplicateMACs(guests)
        for i in switches.indices {
            switches[i].staticMACs = resolveStatics(pendingStatics[switches[i].name] ?? [], on: switches[i], guests: guests)
        }
        return Topology(name: name, file: sink.file, switches: switches, guests: guests)
    }

    // MARK: Switches

    mutating func switchSpec(_ name: String, _ key: SourceNode, _ node: SourceNode,
                             uplinkOwners: inout [String: (switchName: String, line: Int)]) -> (SwitchSpec?, [PendingStatic]) {
        let what = "switch '\(name)'"
        guard let fields = mapping(node, what, allowed: Self.switchKeys) else { return (nil, []) }
        var sw = SwitchSpec(name: name, portGroups: [])
        if let f = fields["mtu"], let v = integer(f.value, "mtu", in: 68...9216) { sw.mtu = v }

        var statics: [PendingStatic] = []
        if let f = fields["mac-table"], let mt = mapping(f.value, "'mac-table' of \(what)", allowed: Self.macTableKeys) {
            if let a = mt["aging"], let v = duration(a.value, "mac-table aging", in: 1...1_000_000) { sw.agingSeconds = v }
            if let l = mt["limit"], let v = integer(l.value, "mac-table limit", in: 16...1_048_576) { sw.macLimit = v }
            if let s = mt["static"], !s.value.isNull, let items = list(s.value, "'static' of \(what)") {
                for item in items { if let p = pendingStatic(item, what) { statics.append(p) } }
            }
        }

        if let f = require("port-groups", in: fields, what, at: key.location),
           let entries = namedEntries(f.value, "'port-groups' of \(what)") {
            if entries.isEmpty { error("'port-groups' of \(what) is empty: declare at least one port group", at: f.value.location) }
            for e in entries {
                guard self.name(e.name, "port group name", maxLength: 31, at: e.key.location) else { continue }
                if let pg = portGroup(e.name, e.key, e.value, of: name) { sw.portGroups.append(pg) }
            }
        }

        if let f = fields["uplinks"], let u = uplinks(f.value, of: name, owners: &uplinkOwners) { sw.uplinks = u }

        if let f = fields["mirrors"], !f.value.isNull, let items = list(f.value, "'mirrors' of \(what)") {
            var seen: [String: Int] = [:]
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
        return (sw, statics)
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

    mutating func portGroup(_ name: String, _ key: SourceNode, _ node: SourceNode, of switchName: String) -> PortGroupSpec? {
        let what = "port group '\(name)'"
        guard let f = mapping(node, what, allowed: Self.portGroupKeys) else { return nil }
        var pg = PortGroupSpec(name: name, mode: .access(.untagged))
        var ok = true
        if let v = require("vlan", in: f, what, at: key.location) {
            if let mode = portMode(v.value, what) { pg.mode = mode } else { ok = false }
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
        return ok ? pg : nil
    }

    /// `vlan:` — a number (access), `none` (untagged domain) or `{trunk: [...], native: N|none}`.
    mutating func portMode(_ node: SourceNode, _ what: String) -> PortMode? {
        switch node.kind {
        case .scalar(let s):
            if node.isNull && s.isEmpty { error("missing value for 'vlan' of \(what)", at: node.location); return nil }
            if s == "none" { return .access(.untagged) }
            guard s.utf8.allSatisfy({ (48...57).contains($0) }) else {
                error("invalid VLAN '\(s)': expected a number 1..4094, none, or {trunk: [...], native: ...}", at: node.location)
                return nil
            }
            return vlanNumber(s, at: node.location).map { .access($0) }
        case .sequence:
            error("expected a VLAN number, none or a mapping {trunk: [...]} for 'vlan' of \(what), found a list", at: node.location)
            return nil
        case .mapping:
            guard let f = mapping(node, "'vlan' of \(what)", allowed: Self.trunkKeys) else { return nil }
            var native: VLANID? = nil
            var ok = true
            if let n = f["native"] {
                if let id = vlanOrNone(n.value, "'native'") { native = id.isUntaggedDomain ? nil : id } else { ok = false }
            }
            guard let t = require("trunk", in: f, "'vlan' of \(what)", at: node.location),
                  let items = list(t.value, "'trunk'") else { return nil }
            if items.isEmpty {
                error("empty trunk list: list the VLANs the trunk carries (an empty list does not mean all)", at: t.value.location)
                return nil
            }
            var allowed = VLANSet()
            for item in items {
                guard let s = text(item, "a trunk VLAN") else { ok = false; continue }
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
                    error("'none' cannot be in a trunk list; use native: none for untagged frames", at: item.location)
                    ok = false
                } else if let v = vlanNumber(s, at: item.location) {
                    allowed.insert(v)
                } else { ok = false }
            }
            return ok ? .trunk(allowed: allowed, native: native) : nil
        }
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
            var seen: [String: Int] = [:]
            for item in items {
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
        var spec = UplinkSpec(nics: nics)
        spec.nicPositions = positions
        var policyKnown = true
        if let p = f["policy"] {
            if let v = choice(p.value, "teaming policy", [TeamingPolicy.portID, .srcMAC, .ipHash, .failoverOrder]) {
                spec.policy = v
            } else { ok = false; policyKnown = false }
        }
        if let b = f["failback"].flatMap({ boolean($0.value, "'failback'") }) { spec.failback = b }
        if let b = f["notify-switches"].flatMap({ boolean($0.value, "'notify-switches'") }) { spec.notifySwitches = b }
        if let d = f["detection"] {
            if let v = choice(d.value, "failure detection", [FailureDetection.linkStatus, .beaconProbing]) {
                spec.detection = v
                if v == .beaconProbing && !nics.isEmpty && nics.count < 3 {
                    sink.warning("beacon probing with \(nics.count) NIC\(nics.count == 1 ? "" : "s"): at least 3 are needed to tell which path failed; with fewer, a silent failure is not isolated (link status still works)",
                                 at: d.value.location)
                }
            } else { ok = false }
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
            var names: [String] = []
            for item in items {
                guard let name = text(item, "a NIC in '\(key)'") else { ok = false; continue }
                guard nics.contains(name) else {
                    error("'\(name)' in '\(key)' is not one of the uplink nics" + didYouMean(name, among: nics), at: item.location)
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
            case let (a?, nil): spec.active = a; spec.standby = nics.filter { !a.contains($0) }
            case let (nil, s?): spec.standby = s; spec.active = nics.filter { !s.contains($0) }
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
        let groups = sw.portGroups.map(\.name)
        var ok = true
        var name = "", nameNode = node
        if let n = require("name", in: f, what, at: node.location), let s = text(n.value, "'name' of a mirror") {
            if self.name(s, "mirror name", maxLength: 31, at: n.value.location) { name = s; nameNode = n.value } else { ok = false }
        } else { ok = false }
        var sources: [String] = []
        if let s = require("source", in: f, what, at: node.location), let items = list(s.value, "'source' of a mirror") {
            if items.isEmpty { error("'source' of a mirror is empty: list at least one port group", at: s.value.location); ok = false }
            for item in items {
                guard let g = text(item, "a source port group") else { ok = false; continue }
                guard groups.contains(g) else {
                    error("unknown port group '\(g)' on switch '\(sw.name)'" + didYouMean(g, among: groups), at: item.location)
                    ok = false; continue
                }
                if !sources.contains(g) { sources.append(g) }
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
                    error("unknown port group '\(s)' on switch '\(sw.name)'" + didYouMean(s, among: groups), at: g.value.location)
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

    // MARK: Guests

    /// Where each NIC's MAC came from, for duplicate reports.
    var nicLocations: [String: SourceLocation] = [:]

    mutating func guest(_ name: String, _ key: SourceNode, _ node: SourceNode, topologyName: String,
                        switches: [SwitchSpec]) -> GuestSpec? {
        let what = "guest '\(name)'"
        guard let f = mapping(node, what, allowed: Self.guestKeys) else { return nil }
        var g = GuestSpec(name: name, kind: .netns, memoryMiB: 256, cpus: 1, restart: .never, nics: [])
        var ok = true
        if let k = require("kind", in: f, what, at: key.location),
           let kind = choice(k.value, "guest kind", [GuestKind.netns, .qemu]) {
            g.kind = kind
            if kind == .netns {
                for q in Self.qemuOnlyKeys {
                    if let field = f[q] {
                        error("'\(q)' applies only to guests of kind qemu (\(what) is kind netns)", at: field.key.location)
                        ok = false
                    }
                }
            } else {
                if let m = f["memory"] {
                    if let v = size(m.value, "memory", inMiB: 64...65536) { g.memoryMiB = v } else { ok = false }
                }
                if let c = f["cpus"] {
                    if let v = integer(c.value, "cpus", in: 1...16) { g.cpus = v } else { ok = false }
                }
                if let r = f["restart"] {
                    if let v = choice(r.value, "restart policy", [RestartPolicy.never, .onFailure, .always]) { g.restart = v } else { ok = false }
                }
            }
        } else { ok = false }

        if let n = require("nics", in: f, what, at: key.location), let items = list(n.value, "'nics' of \(what)") {
            if items.isEmpty { error("'nics' of \(what) is empty: a guest needs at least one NIC", at: n.value.location); ok = false }
            if items.count > 8 { error("\(what) has \(items.count) NICs, at most 8", at: items[8].location); ok = false }
            for (i, item) in items.enumerated() {
                if let nic = nic(i, item, guest: name, topologyName: topologyName, switches: switches) {
                    g.nics.append(nic)
                } else { ok = false }
            }
        } else { ok = false }
        return ok ? g : nil
    }

    mutating func nic(_ index: Int, _ node: SourceNode, guest: String, topologyName: String,
                      switches: [SwitchSpec]) -> NICSpec? {
        let what = "NIC \(index) of guest '\(guest)'"
        guard let f = mapping(node, what, allowed: Self.nicKeys) else { return nil }
        var ok = true
        var sw: SwitchSpec? = nil
        if let s = require("switch", in: f, what, at: node.location), let name = text(s.value, "'switch'") {
            sw = switches.first { $0.name == name }
            if sw == nil {
                error("unknown switch '\(name)'" + didYouMean(name, among: switches.map(\.name)), at: s.value.location)
                ok = false
            }
        } else { ok = false }
        var group = ""
        if let p = require("port-group", in: f, what, at: node.location), let name = text(p.value, "'port-group'") {
            if let sw {
                if sw.portGroup(named: name) == nil {
                    let names = sw.portGroups.map(\.name)
                    error("unknown port group '\(name)' on switch '\(sw.name)'" + didYouMean(name, among: names), at: p.value.location)
                    ok = false
                } else { group = name }
            }
        } else { ok = false }
        var mac = Topology.derivedMAC(topology: topologyName, guest: guest, nicIndex: index)
        var declared = false
        var macLocation = node.location
        if let m = f["mac"] {
            if let v = unicastMAC(m.value, "a NIC's MAC") { mac = v; declared = true; macLocation = m.value.location } else { ok = false }
        }
        var ip: IPv4CIDR? = nil
        if let a = f["ip"], let s = text(a.value, "'ip'") {
            if let v = IPv4CIDR(s) { ip = v } else {
                error("invalid IPv4 address '\(s)': expected a.b.c.d/len like 10.0.10.1/24 (octets 0..255 without leading zeros, len 0..32)",
                      at: a.value.location)
                ok = false
            }
        } else if f["ip"] != nil { ok = false }
        guard ok, let sw else { return nil }
        let port = "\(guest).eth\(index)"
        nicLocations[port] = macLocation
        return NICSpec(index: index, switchName: sw.name, portGroup: group, mac: mac, macDeclared: declared,
                       ip: ip, portName: port, interfaceName: "eth\(index)")
    }

    // MARK: Cross checks

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

    mutating func resolveStatics(_ pending: [PendingStatic], on sw: SwitchSpec, guests: [GuestSpec]) -> [StaticMACSpec] {
        var ports: [String: PortMode] = [:]
        var portNames: [String] = []
        for g in guests {
            for nic in g.nics where nic.switchName == sw.name {
                if let pg = sw.portGroup(named: nic.portGroup) { ports[nic.portName] = pg.mode; portNames.append(nic.portName) }
            }
        }
        var out: [StaticMACSpec] = []
        var seen: [VLANID: [MACAddress: Int]] = [:]
        for p in pending {
            guard let mode = ports[p.port] else {
                error("unknown port '\(p.port)' on switch '\(sw.name)': expected a guest port GUEST.ethN"
                      + didYouMean(p.port, among: portNames), at: p.portNode.location)
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
}
