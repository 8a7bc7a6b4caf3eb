import Core
import Model

/// Guests, their NICs and addressing (issues 13, 16, 17, 18).
extension Validator {
    mutating func guest(_ name: String, _ key: SourceNode, _ node: SourceNode, topologyName: String,
                        switches: [String: SwitchSpec], hostsDeclared: Bool, validHosts: Set<String>, etcdDeclared: Bool = false) -> GuestSpec? {
        let what = "guest '\(name)'"
        guard let f = mapping(node, what, allowed: Self.guestKeys) else { return nil }
        var g = GuestSpec(name: name, kind: .netns, memoryMiB: 256, cpus: 1, restart: .never, nics: [])
        var ok = true
        var kindKnown = false
        if let k = require("kind", in: f, what, at: key.location),
           let kind = choice(k.value, "guest kind", GuestKind.allCases) {
            g.kind = kind
            kindKnown = true
            if kind != .qemu {
                for q in Self.qemuOnlyKeys {
                    guard let field = f[q] else { continue }
                    if q == "restart" && kind == .netns {
                        // A netns guest has no process to restart: its policy only tells HA
                        // to re-create it on a surviving host, so it needs etcd.
                        if !etcdDeclared {
                            error("'restart' on a netns guest tells HA to re-create it on another host when its host dies: it needs a top-level 'etcd' (\(what) is kind netns)", at: field.key.location)
                            ok = false
                        } else if let v = choice(field.value, "restart policy", RestartPolicy.allCases) { g.restart = v } else { ok = false }
                        continue
                    }
                    error("'\(q)' applies only to guests of kind qemu (\(what) is kind \(kind.rawValue))", at: field.key.location)
                    ok = false
                }
            } else {
                if let m = f["memory"] {
                    if let v = size(m.value, "memory", inMiB: 64...65536) { g.memoryMiB = v } else { ok = false }
                }
                if let c = f["cpus"] {
                    if let v = integer(c.value, "cpus", in: 1...16) { g.cpus = v } else { ok = false }
                }
                if let r = f["restart"] {
                    if let v = choice(r.value, "restart policy", RestartPolicy.allCases) { g.restart = v } else { ok = false }
                }
            }
            if kind == .vhostUser {
                for k in ["gateway", "routes"] where f[k] != nil {
                    error("'\(k)' does not apply to a vhost-user guest: Tapestry does not configure the frontend's network stack",
                          at: f[k]!.key.location)
                    ok = false
                }
                var sock = VhostUserSocketSpec()
                if let s = f["socket"] {
                    // Keep what did parse (the mode), so the NICs are checked against it.
                    let (v, valid) = socketSpec(s.value, guest: name)
                    sock = v
                    if !valid { ok = false }
                }
                g.socket = sock
            } else if let s = f["socket"] {
                error("'socket' applies only to guests of kind vhost-user (\(what) is kind \(kind.rawValue))", at: s.key.location)
                ok = false
            }
        } else { ok = false }

        if let h = f["host"] {
            if !hostsDeclared {
                error("'host' names a host of a multi-host fabric, but the file has no top-level 'hosts'", at: h.key.location)
                ok = false
            } else if let s = text(h.value, "'host'") {
                if validHosts.contains(s) { g.host = s } else {
                    unresolved("host", s, "", declared: declaredHosts, at: h.value.location)
                    ok = false
                }
            } else { ok = false }
        } else if hostsDeclared {
            error("missing required key 'host' in \(what): the file has 'hosts', so every guest names the host that runs it", at: key.location)
            ok = false
        }

        if let n = require("nics", in: f, what, at: key.location), let items = list(n.value, "'nics' of \(what)") {
            if items.isEmpty { error("'nics' of \(what) is empty: a guest needs at least one NIC", at: n.value.location); ok = false }
            if items.count > limits.maxNICs {
                error("\(what) has \(items.count) NICs, at most \(limits.maxNICs)", at: items[limits.maxNICs].location); ok = false
            } else {
                for (i, item) in items.enumerated() {
                    if let nic = nic(i, item, guest: g, kindKnown: kindKnown, topologyName: topologyName, switches: switches) {
                        g.nics.append(nic)
                    } else { ok = false }
                }
            }
        } else { ok = false }

        // Gateways and routes need the NICs' subnets: only when every NIC validated.
        if ok {
            if let gw = f["gateway"] {
                if let v = gateways(gw.value, of: g) { g.gateways = v } else { ok = false }
            }
            if let r = f["routes"], !r.value.isNull {
                if let v = routes(r.value, of: g) { g.routes = v } else { ok = false }
            }
        }
        return ok ? g : nil
    }

    mutating func nic(_ index: Int, _ node: SourceNode, guest g: GuestSpec, kindKnown: Bool, topologyName: String,
                      switches: [String: SwitchSpec]) -> NICSpec? {
        let what = "NIC \(index) of guest '\(g.name)'"
        guard let f = mapping(node, what, allowed: Self.nicKeys) else { return nil }
        var ok = true
        var sw: SwitchSpec? = nil
        if let s = require("switch", in: f, what, at: node.location), let name = text(s.value, "'switch'") {
            sw = switches[name]
            if sw == nil {
                unresolved("switch", name, "", declared: declaredSwitches, at: s.value.location)
                ok = false
            }
        } else { ok = false }
        var group = ""
        if let p = require("port-group", in: f, what, at: node.location), let name = text(p.value, "'port-group'") {
            if let sw {
                if validGroups[sw.name]?[name] == nil {
                    unresolved("port group", name, " on switch '\(sw.name)'", declared: declaredPortGroups[sw.name] ?? [], at: p.value.location)
                    ok = false
                } else { group = name }
            }
        } else { ok = false }
        var mac = Topology.derivedMAC(topology: topologyName, guest: g.name, nicIndex: index)
        var declared = false
        var macLocation = node.location
        if let m = f["mac"] {
            if let v = unicastMAC(m.value, "a NIC's MAC") { mac = v; declared = true; macLocation = m.value.location } else { ok = false }
        } else if kindKnown && g.kind == .vhostUser {
            error("missing required key 'mac' in \(what): a vhost-user guest's NICs need a MAC, so the security policies have something to check",
                  at: node.location)
            ok = false
        }

        var addresses: [IPPrefix] = []
        var dhcp = false
        if let a = f["ip"] {
            if kindKnown && g.kind == .vhostUser {
                error("'ip' does not apply to a vhost-user guest: Tapestry does not configure the frontend's addresses", at: a.key.location)
                ok = false
            } else if let (list, d) = nicAddresses(a.value) { addresses = list; dhcp = d } else { ok = false }
        }

        var backend: NICBackend = g.kind == .netns ? .tap : .vhostUser
        if let b = f["backend"] {
            if kindKnown && g.kind != .qemu {
                error("'backend' applies only to NICs of qemu guests (guest '\(g.name)' is kind \(g.kind.rawValue))", at: b.key.location)
                ok = false
            } else if let v = choice(b.value, "NIC backend", NICBackend.allCases) { backend = v } else { ok = false }
        }
        var offloads = true
        if let o = f["offloads"] {
            if let v = boolean(o.value, "'offloads'") { offloads = v } else { ok = false }
        }
        var socketPath: String? = nil
        let clientMode = g.socket?.mode == .client
        if let p = f["socket-path"] {
            if !(kindKnown && g.kind == .vhostUser && clientMode) {
                error("'socket-path' applies only to NICs of vhost-user guests in client mode (socket: {mode: client})", at: p.key.location)
                ok = false
            } else if let s = text(p.value, "'socket-path'") {
                if let problem = socketPathProblem(s) { error(problem, at: p.value.location); ok = false } else { socketPath = s }
            } else { ok = false }
        } else if kindKnown && g.kind == .vhostUser && clientMode {
            error("missing required key 'socket-path' in \(what): in client mode the switch connects to the frontend's socket", at: node.location)
            ok = false
        }

        guard ok, let sw else { return nil }
        let port = "\(g.name).eth\(index)"
        nicLocations[port] = macLocation
        nicNodes[port] = node
        return NICSpec(index: index, switchName: sw.name, portGroup: group, mac: mac, macDeclared: declared,
                       addresses: addresses, dhcp: dhcp, portName: port, interfaceName: "eth\(index)",
                       backend: backend, offloads: offloads, socketPath: socketPath)
    }

    /// An absolute path a Unix socket can bind to (`sun_path` holds 107 bytes and a NUL).
    func socketPathProblem(_ s: String) -> String? {
        if !s.hasPrefix("/") { return "invalid socket path '\(s)': expected an absolute path" }
        if s.utf8.count > 107 { return "invalid socket path '\(s)': \(s.utf8.count) bytes, at most 107 (sun_path)" }
        if s.contains("\0") || s.split(separator: "/").contains("..") { return "invalid socket path '\(s)': no '..' components or NUL bytes" }
        return nil
    }

    /// `ip:` — one `ADDRESS/LEN`, `dhcp`, or a list of them (dhcp at most once).
    mutating func nicAddresses(_ node: SourceNode) -> ([IPPrefix], Bool)? {
        let items: [SourceNode]
        switch node.kind {
        case .sequence(let list):
            if list.isEmpty { error("'ip' is an empty list: give an address, dhcp, or omit the key", at: node.location); return nil }
            if tooMany(list.count, limits.maxAddresses, "'ip'", firstBeyond: list.dropFirst(limits.maxAddresses).first?.location) { return nil }
            items = list
        default:
            items = [node]
        }
        var out: [IPPrefix] = [], dhcp = false, ok = true
        var seen: [IPAddress: Int] = [:]
        for item in items {
            guard let s = text(item, "'ip'") else { ok = false; continue }
            if s == "dhcp" {
                if dhcp { error("'dhcp' is listed twice", at: item.location); ok = false }
                dhcp = true
                continue
            }
            guard let p = interfaceAddress(s, at: item.location) else { ok = false; continue }
            if let line = seen[p.address] {
                error("address \(p.address) is listed twice on this NIC (first at line \(line))", at: item.location)
                ok = false; continue
            }
            seen[p.address] = item.location.line
            out.append(p)
        }
        return ok ? (out, dhcp) : nil
    }

    /// An address a host interface can be given: `ADDRESS/LEN`, unicast, not loopback,
    /// unspecified, reserved, or a subnet's network or broadcast address.
    mutating func interfaceAddress(_ s: String, at location: SourceLocation) -> IPPrefix? {
        guard let p = IPPrefix(s) else {
            if IPAddress(s) != nil {
                error("address '\(s)' has no prefix length: write it with one, like \(s.contains(":") ? "\(s)/64" : "\(s)/24")", at: location)
            } else if s.contains(":") {
                error("invalid IPv6 address '\(s)': expected ADDRESS/LEN like 2001:db8::5/64 (RFC 4291 text form, no zone, len 1..128)", at: location)
            } else {
                error("invalid IPv4 address '\(s)': expected a.b.c.d/len like 10.0.10.1/24 (octets 0..255 without leading zeros, len 1..32)", at: location)
            }
            return nil
        }
        if let problem = unicastProblem(p.address, "address") { error(problem, at: location); return nil }
        if p.prefixLength == 0 {
            error("prefix length 0 in '\(s)' would put every address on this link; use the subnet's real length (and 'gateway' or 'routes' for the rest)", at: location)
            return nil
        }
        switch p.address {
        case .v4(let a):
            if p.prefixLength <= 30 {
                if p.isNetwork {
                    error("\(a) is the network address of \(p.network)/\(p.prefixLength), not a host address", at: location); return nil
                }
                if p.address.hostBitsAllOnes(after: p.prefixLength) {
                    error("\(a) is the broadcast address of \(p.network)/\(p.prefixLength), not a host address", at: location); return nil
                }
            }
        case .v6(let a):
            if p.prefixLength <= 126 && p.isNetwork && !a.isLinkLocal {
                error("\(a) is the subnet-router anycast address of \(p.network)/\(p.prefixLength) (RFC 4291 §2.6.1), not a host address", at: location)
                return nil
            }
        }
        return p
    }

    /// Why `a` cannot be a host's unicast address, if it cannot.
    func unicastProblem(_ a: IPAddress, _ what: String) -> String? {
        switch a {
        case .v4(let v):
            if v.isUnspecified { return "\(what) \(v) is the unspecified address (RFC 1122 §3.2.1.3)" }
            if v.isThisNetwork { return "\(what) \(v) is in 0.0.0.0/8, \"this network\" (RFC 1122 §3.2.1.3), not a host address" }
            if v.isLoopback { return "\(what) \(v) is a loopback address (127.0.0.0/8)" }
            if v.isMulticast { return "\(what) \(v) is a multicast address (224.0.0.0/4)" }
            if v.isLimitedBroadcast { return "\(what) \(v) is the limited broadcast address" }
            if v.isReserved { return "\(what) \(v) is in 240.0.0.0/4, reserved (RFC 1112 §4)" }
        case .v6(let v):
            if v.isUnspecified { return "\(what) \(v) is the unspecified address (RFC 4291 §2.5.2)" }
            if v.isLoopback { return "\(what) \(v) is the loopback address (RFC 4291 §2.5.3)" }
            if v.isMulticast { return "\(what) \(v) is a multicast address (ff00::/8)" }
            if v.isIPv4Mapped { return "\(what) \(v) is an IPv4-mapped address (RFC 4291 §2.5.5.2); write the IPv4 address" }
        }
        return nil
    }

    /// A unicast address (no prefix) for a gateway, a next hop, an underlay or an isolation
    /// address.
    mutating func unicastAddress(_ node: SourceNode, _ what: String) -> IPAddress? {
        guard let s = text(node, what) else { return nil }
        guard let a = IPAddress(s) else {
            error("invalid IP address '\(s)' for \(what): expected an IPv4 address like 10.0.0.1 or an IPv6 address like 2001:db8::1"
                  + (s.contains("/") ? " (no prefix length here)" : ""), at: node.location)
            return nil
        }
        if let problem = unicastProblem(a, what) { error(problem, at: node.location); return nil }
        return a
    }

    /// The NIC of `g` whose subnet holds `a` (IPv6 link-local: the only NIC, if there is one).
    func nicReaching(_ a: IPAddress, of g: GuestSpec) -> Int?? {
        if case .v6(let v) = a, v.isLinkLocal { return g.nics.count == 1 ? .some(0) : .some(nil) }
        for nic in g.nics where nic.addresses.contains(where: { $0.contains(a) }) { return nic.index }
        return nil
    }

    mutating func reachable(_ a: IPAddress, _ what: String, of g: GuestSpec, at location: SourceLocation) -> Int? {
        if g.nics.contains(where: { n in n.addresses.contains { $0.address == a } }) {
            error("\(what) \(a) is an address of guest '\(g.name)' itself", at: location); return nil
        }
        switch nicReaching(a, of: g) {
        case .some(.some(let i)): return i
        case .some(.none):
            error("\(what) \(a) is link-local, and guest '\(g.name)' has \(g.nics.count) NICs: it cannot tell which link it is on", at: location)
            return nil
        case .none:
            // With DHCP on a NIC, the subnet is known only at run time.
            if case .v4 = a, let d = g.nics.first(where: \.dhcp) { return d.index }
            let subnets = g.nics.flatMap { $0.addresses.filter { $0.address.isIPv6 == a.isIPv6 } }.map { "\($0.network)/\($0.prefixLength)" }
            error("\(what) \(a) is not on a subnet of guest '\(g.name)'"
                  + (subnets.isEmpty ? " (it has no IPv\(a.family) address)" : " (its IPv\(a.family) subnets: \(subnets.joined(separator: ", ")))"),
                  at: location)
            return nil
        }
    }

    /// `gateway:` — one address, or a list of at most one per family.
    mutating func gateways(_ node: SourceNode, of g: GuestSpec) -> [GatewaySpec]? {
        let items: [SourceNode]
        if case .sequence(let list) = node.kind {
            if list.isEmpty { error("'gateway' is an empty list", at: node.location); return nil }
            items = list
        } else { items = [node] }
        var out: [GatewaySpec] = [], ok = true
        var families: [Int: Int] = [:]
        for item in items {
            guard let a = unicastAddress(item, "gateway") else { ok = false; continue }
            if let line = families[a.family] {
                error("a second IPv\(a.family) gateway (the first is at line \(line)): a guest has at most one default gateway per family", at: item.location)
                ok = false; continue
            }
            families[a.family] = item.location.line
            guard let nic = reachable(a, "gateway", of: g, at: item.location) else { ok = false; continue }
            out.append(GatewaySpec(address: a, nic: nic))
        }
        out.sort { !$0.address.isIPv6 && $1.address.isIPv6 }
        return ok ? out : nil
    }

    /// `routes: [{to: PREFIX|default, via: ADDRESS}]`.
    mutating func routes(_ node: SourceNode, of g: GuestSpec) -> [RouteSpec]? {
        guard let items = list(node, "'routes' of guest '\(g.name)'") else { return nil }
        if tooMany(items.count, limits.maxRoutes, "'routes'", firstBeyond: items.dropFirst(limits.maxRoutes).first?.location) { return nil }
        var out: [RouteSpec] = [], ok = true
        var seen: [IPPrefix: Int] = [:]
        for item in items {
            guard let f = mapping(item, "a route of guest '\(g.name)'", allowed: Keys.route.names) else { ok = false; continue }
            let toField = require("to", in: f, "a route", at: item.location)
            let viaField = require("via", in: f, "a route", at: item.location)
            guard let toField, let viaField, let via = unicastAddress(viaField.value, "'via'"),
                  let toText = text(toField.value, "'to'") else { ok = false; continue }
            let to: IPPrefix
            if toText == "default" {
                to = IPPrefix(address: via.isIPv6 ? .v6(IPv6Address(high: 0, low: 0)) : .v4(IPv4Address(rawValue: 0)), prefixLength: 0)
            } else {
                guard let p = IPPrefix(toText) else {
                    error("invalid route destination '\(toText)': expected a network like 10.1.0.0/16 or 2001:db8:1::/48, or default", at: toField.value.location)
                    ok = false; continue
                }
                guard p.isNetwork else {
                    error("route destination \(toText) has host bits set: the network is \(p.network)/\(p.prefixLength)", at: toField.value.location)
                    ok = false; continue
                }
                guard p.address.isIPv6 == via.isIPv6 else {
                    error("route to \(toText) is IPv\(p.address.family) but 'via' \(via) is IPv\(via.family)", at: viaField.value.location)
                    ok = false; continue
                }
                to = p
            }
            if to.prefixLength == 0, g.gateways.contains(where: { $0.address.isIPv6 == to.address.isIPv6 }) {
                error("a default route via \(via) and 'gateway' both set the IPv\(to.address.family) default route; keep one", at: toField.value.location)
                ok = false; continue
            }
            if let line = seen[to] {
                error("a second route to \(to) (the first is at line \(line))", at: toField.value.location)
                ok = false; continue
            }
            seen[to] = item.location.line
            guard let nic = reachable(via, "'via'", of: g, at: viaField.value.location) else { ok = false; continue }
            out.append(RouteSpec(to: to, via: via, nic: nic))
        }
        return ok ? out : nil
    }

    /// `socket:` of a vhost-user guest.
    mutating func socketSpec(_ node: SourceNode, guest: String) -> (VhostUserSocketSpec, Bool) {
        let what = "'socket' of guest '\(guest)'"
        guard let f = mapping(node, what, allowed: Keys.socket.names) else { return (VhostUserSocketSpec(), false) }
        var s = VhostUserSocketSpec(), ok = true
        if let m = f["mode"] {
            if let v = choice(m.value, "socket mode", VhostUserMode.allCases) { s.mode = v } else { ok = false }
        }
        for key in ["owner", "group", "permissions"] where s.mode == .client && f[key] != nil {
            error("'\(key)' applies to the server socket; in client mode the frontend owns the socket", at: f[key]!.key.location)
            ok = false
        }
        func account(_ key: String) -> String? {
            guard let field = f[key], let t = text(field.value, "'\(key)'") else { return nil }
            let b = Array(t.utf8)
            let numeric = !b.isEmpty && b.count <= 10 && b.allSatisfy { (48...57).contains($0) }
            let named = !b.isEmpty && b.count <= 32 && (b[0] == 95 || (97...122).contains(b[0]))
                && b.enumerated().allSatisfy { i, c in (97...122).contains(c) || (48...57).contains(c) || c == 95 || c == 45 || (c == 36 && i == b.count - 1) }
            guard numeric || named else {
                error("invalid \(key) '\(t)': expected a user or group name ([a-z_][a-z0-9_-]*, at most 32) or a numeric id", at: field.value.location)
                ok = false; return nil
            }
            sourcePositions["guest.\(guest).\(key)"] = TextPosition(line: field.value.location.line, column: field.value.location.column)
            return t
        }
        s.owner = account("owner")
        s.group = account("group")
        if let p = f["permissions"], let t = text(p.value, "'permissions'") {
            let digits = t.count == 4 && t.hasPrefix("0") ? String(t.dropFirst()) : t
            if digits.count == 3, digits.allSatisfy({ ("0"..."7").contains($0) }), let v = Int(digits, radix: 8) {
                s.permissions = v
                if v & 0o002 != 0 {
                    warning("permissions \(t) let any local user connect a frontend to guest '\(guest)''s ports", at: p.value.location)
                }
                if v & 0o600 != 0o600 {
                    error("permissions \(t) must let the owner read and write the socket (0600 at least)", at: p.value.location)
                    ok = false
                }
            } else {
                error("invalid permissions '\(t)': expected octal bits like 0660 (always octal, as chmod reads them)", at: p.value.location)
                ok = false
            }
        }
        return (s, ok)
    }
}
