import Core
import Model

/// Datapath settings, hosts, links, overlay, etcd and HA (issues 15, 16, 17, 19).
extension Validator {
    /// `datapath: {threads, poll}`.
    mutating func datapathSpec(_ node: SourceNode, _ what: String) -> DatapathSpec? {
        guard let f = mapping(node, what, allowed: Keys.datapath.names) else { return nil }
        var d = DatapathSpec(), ok = true
        if let t = f["threads"] {
            if let v = integer(t.value, "datapath threads", in: 1...64) { d.threads = v } else { ok = false }
        }
        if let p = f["poll"] {
            if let v = microseconds(p.value, "datapath poll", in: 0...1_000_000) { d.pollMicroseconds = v } else { ok = false }
        }
        return ok ? d : nil
    }

    /// `hosts: {NAME: {underlay, netns?, cpus?, memory?, datapath?}}`.
    mutating func hostSpecs(_ node: SourceNode) -> [HostSpec] {
        guard let entries = namedEntries(node, "'hosts'") else { return [] }
        declaredHosts = entries.map(\.name)
        if tooMany(entries.count, limits.maxHosts, "'hosts'", firstBeyond: entries.dropFirst(limits.maxHosts).first?.key.location) { return [] }
        var out: [HostSpec] = []
        var underlays: [IPAddress: (String, Int)] = [:]
        var namespaces: [String: (String, Int)] = [:]
        for e in entries {
            guard self.name(e.name, "host name", maxLength: 15, at: e.key.location) else { continue }
            let what = "host '\(e.name)'"
            guard let f = mapping(e.value, what, allowed: Keys.host.names) else { continue }
            hostLocations[e.name] = e.key.location
            sourcePositions["host.\(e.name)"] = TextPosition(line: e.key.location.line, column: e.key.location.column)
            var ok = true
            var underlay: IPAddress? = nil
            if let u = require("underlay", in: f, what, at: e.key.location) {
                if let a = unicastAddress(u.value, "underlay of \(what)") {
                    if let (other, line) = underlays[a] {
                        error("underlay \(a) of \(what) is already the underlay of host '\(other)' (line \(line))", at: u.value.location)
                        ok = false
                    } else {
                        underlays[a] = (e.name, u.value.location.line)
                        underlay = a
                    }
                } else { ok = false }
            } else { ok = false }
            var h = HostSpec(name: e.name, underlay: underlay ?? .v4(IPv4Address(rawValue: 0)))
            if let n = f["netns"], let s = text(n.value, "'netns'") {
                let b = Array(s.utf8)
                let valid = !b.isEmpty && b.count <= 63 && s != "." && s != ".."
                    && b.allSatisfy { (97...122).contains($0) || (65...90).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 45 || $0 == 46 }
                if !valid {
                    error("invalid netns name '\(s)': 1..63 letters, digits, '_', '-' or '.', not '.' or '..'", at: n.value.location)
                    ok = false
                } else if let (other, line) = namespaces[s] {
                    error("netns '\(s)' of \(what) is already the namespace of host '\(other)' (line \(line))", at: n.value.location)
                    ok = false
                } else {
                    namespaces[s] = (e.name, n.value.location.line)
                    h.netns = s
                }
            } else if f["netns"] != nil { ok = false }
            if let c = f["cpus"] {
                if let v = integer(c.value, "cpus of \(what)", in: 1...4096) { h.cpus = v } else { ok = false }
            }
            if let m = f["memory"] {
                if let v = size(m.value, "memory of \(what)", inMiB: 64...(64 << 20)) { h.memoryMiB = v } else { ok = false }
            }
            if let d = f["datapath"] {
                if let v = datapathSpec(d.value, "'datapath' of \(what)") { h.datapath = v } else { ok = false }
            }
            if ok { out.append(h) }
        }
        return out
    }

    /// `links: [{between: [A/PG, B/PG], host?}]`; port names `link-OTHER`, `link-OTHER-N`.
    mutating func linkSpecs(_ node: SourceNode, switches: [SwitchSpec], hostsDeclared: Bool, validHosts: Set<String>) -> [LinkSpec] {
        guard let items = list(node, "'links'") else { return [] }
        if tooMany(items.count, limits.maxLinks, "'links'", firstBeyond: items.dropFirst(limits.maxLinks).first?.location) { return [] }
        let byName = Dictionary(switches.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var pairCount: [String: Int] = [:]
        var out: [LinkSpec] = []
        for item in items {
            guard let f = mapping(item, "a link", allowed: Keys.link.names) else { continue }
            guard let b = require("between", in: f, "a link", at: item.location), let ends = list(b.value, "'between' of a link") else { continue }
            guard ends.count == 2 else {
                error("'between' of a link has \(ends.count) ends: a link joins exactly two, SWITCH/PORT-GROUP each", at: b.value.location)
                continue
            }
            var ok = true
            var parsed: [(sw: String, pg: String, node: SourceNode)] = []
            for end in ends {
                guard let s = text(end, "a link end") else { ok = false; continue }
                let parts = s.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    error("invalid link end '\(s)': expected SWITCH/PORT-GROUP like sw0/trunk", at: end.location)
                    ok = false; continue
                }
                let swName = String(parts[0]), pgName = String(parts[1])
                guard let sw = byName[swName] else {
                    unresolved("switch", swName, "", declared: declaredSwitches, at: end.location)
                    ok = false; continue
                }
                guard validGroups[sw.name]?[pgName] != nil else {
                    unresolved("port group", pgName, " on switch '\(swName)'", declared: declaredPortGroups[swName] ?? [], at: end.location)
                    ok = false; continue
                }
                parsed.append((swName, pgName, end))
            }
            guard ok, parsed.count == 2 else { continue }
            if parsed[0].sw == parsed[1].sw {
                error("a link cannot join switch '\(parsed[0].sw)' to itself (its port groups already share the switch)", at: parsed[1].node.location)
                continue
            }
            var host: String? = nil
            if let h = f["host"] {
                if !hostsDeclared {
                    error("'host' names a host of a multi-host fabric, but the file has no top-level 'hosts'", at: h.key.location)
                    continue
                }
                guard let s = text(h.value, "'host'") else { continue }
                guard validHosts.contains(s) else { unresolved("host", s, "", declared: declaredHosts, at: h.value.location); continue }
                host = s
            } else if hostsDeclared {
                error("missing required key 'host' in a link: with 'hosts', a link runs on exactly one host", at: item.location)
                continue
            }
            let key = [parsed[0].sw, parsed[1].sw].sorted().joined(separator: "/")
            let n = pairCount[key, default: 0] + 1
            pairCount[key] = n
            let suffix = n == 1 ? "" : "-\(n)"
            out.append(LinkSpec(ends: [
                LinkEnd(switchName: parsed[0].sw, portGroup: parsed[0].pg, portName: "link-\(parsed[1].sw)\(suffix)"),
                LinkEnd(switchName: parsed[1].sw, portGroup: parsed[1].pg, portName: "link-\(parsed[0].sw)\(suffix)"),
            ], host: host))
            linkLocations.append(item.location)
        }
        if out.count < items.count { someLinkFailed = true }
        return out
    }

    /// `overlay: {vni, remote-vteps?, port?}`.
    mutating func overlaySpec(_ node: SourceNode, of switchName: String) -> OverlaySpec? {
        let what = "'overlay' of switch '\(switchName)'"
        guard let f = mapping(node, what, allowed: Keys.overlay.names) else { return nil }
        var ok = true
        var spec = OverlaySpec(vniBase: 1)
        if let v = require("vni", in: f, what, at: node.location) {
            if let n = integer(v.value, "VNI base", in: 1...Int(OverlaySpec.maxVNIBase)) { spec.vniBase = UInt32(n) } else {
                if case .scalar(let s) = v.value.kind, let n = Int(s), n > Int(OverlaySpec.maxVNIBase) {
                    sink.annotateLast(" (VLAN 4094 travels as VNI \(n)+4094, and a VNI has 24 bits: at most \((1 << 24) - 1))")
                }
                ok = false
            }
        } else { ok = false }
        if let p = f["port"] {
            if let n = integer(p.value, "overlay UDP port", in: 1...65535) { spec.port = UInt16(n) } else { ok = false }
        }
        if let r = f["remote-vteps"], !r.value.isNull, let items = list(r.value, "'remote-vteps' of \(what)") {
            if tooMany(items.count, limits.maxRemoteVTEPs, "'remote-vteps'", firstBeyond: items.dropFirst(limits.maxRemoteVTEPs).first?.location) { return nil }
            var seen: [IPAddress: Int] = [:]
            var locations: [SourceLocation] = []
            for item in items {
                var vtep: RemoteVTEPSpec? = nil
                var at = item.location
                if case .mapping = item.kind {
                    guard let m = mapping(item, "a remote VTEP", allowed: Keys.remoteVTEP.names),
                          let a = require("address", in: m, "a remote VTEP", at: item.location),
                          let addr = unicastAddress(a.value, "remote VTEP address") else { ok = false; continue }
                    at = a.value.location
                    var v = RemoteVTEPSpec(address: addr)
                    if let vl = m["vlans"] {
                        guard let vlItems = list(vl.value, "'vlans' of a remote VTEP") else { ok = false; continue }
                        if vlItems.isEmpty { error("'vlans' of a remote VTEP is empty: omit it to serve every VLAN", at: vl.value.location); ok = false; continue }
                        if tooMany(vlItems.count, 4095, "'vlans'", firstBeyond: vlItems.dropFirst(4095).first?.location) { ok = false; continue }
                        guard let set = vlanList(vlItems, what: "remote VTEP", allowNone: true) else { ok = false; continue }
                        v.vlans = set
                    }
                    vtep = v
                } else {
                    guard let addr = unicastAddress(item, "remote VTEP address") else { ok = false; continue }
                    vtep = RemoteVTEPSpec(address: addr)
                }
                guard let vtep else { continue }
                if let line = seen[vtep.address] {
                    error("remote VTEP \(vtep.address) is listed twice (first at line \(line))", at: at)
                    ok = false; continue
                }
                seen[vtep.address] = at.line
                spec.remoteVTEPs.append(vtep)
                locations.append(at)
            }
            remoteVTEPLocations[switchName] = locations
        }
        return ok ? spec : nil
    }

    /// `etcd: {endpoints, tls?}`.
    mutating func etcdSpec(_ node: SourceNode) -> EtcdSpec? {
        guard let f = mapping(node, "'etcd'", allowed: Keys.etcd.names) else { return nil }
        var ok = true
        var endpoints: [EtcdEndpoint] = []
        if let e = require("endpoints", in: f, "'etcd'", at: node.location), let items = list(e.value, "'endpoints' of etcd") {
            if items.isEmpty { error("'endpoints' of etcd is empty: list at least one URL", at: e.value.location); ok = false }
            if tooMany(items.count, limits.maxEtcdEndpoints, "'endpoints'", firstBeyond: items.dropFirst(limits.maxEtcdEndpoints).first?.location) { return nil }
            var seen: [String: Int] = [:]
            for item in items {
                guard let s = text(item, "an etcd endpoint") else { ok = false; continue }
                guard let ep = etcdEndpoint(s) else {
                    error("invalid etcd endpoint '\(s)': expected http://HOST[:PORT] or https://HOST[:PORT] (an IPv6 host in brackets), no path", at: item.location)
                    ok = false; continue
                }
                if let line = seen[ep.description] {
                    error("etcd endpoint \(ep) is listed twice (first at line \(line))", at: item.location); ok = false; continue
                }
                seen[ep.description] = item.location.line
                if let first = endpoints.first, first.scheme != ep.scheme {
                    error("etcd endpoint \(ep) uses \(ep.scheme) but \(first) uses \(first.scheme): use one scheme for all", at: item.location)
                    ok = false; continue
                }
                endpoints.append(ep)
            }
        } else { ok = false }
        var tls: EtcdTLSSpec? = nil
        if let t = f["tls"], let m = mapping(t.value, "'tls' of etcd", allowed: Keys.etcdTLS.names) {
            var spec = EtcdTLSSpec()
            for key in ["ca", "cert", "key"] {
                guard let field = m[key], let s = text(field.value, "'\(key)'") else { continue }
                guard s.hasPrefix("/"), !s.contains("\0"), s.utf8.count <= 4096 else {
                    error("invalid \(key) path '\(s)': expected an absolute path (the daemon's working directory is not the file's)", at: field.value.location)
                    ok = false; continue
                }
                sourcePositions["etcd.tls.\(key)"] = TextPosition(line: field.value.location.line, column: field.value.location.column)
                switch key { case "ca": spec.ca = s; case "cert": spec.cert = s; default: spec.key = s }
            }
            if (m["cert"] == nil) != (m["key"] == nil) {
                error("'cert' and 'key' of etcd tls go together: a client certificate needs its key", at: t.value.location)
                ok = false
            }
            if m.known.isEmpty {
                error("'tls' of etcd is empty: give 'ca', and 'cert' with 'key' for client authentication", at: t.value.location)
                ok = false
            }
            if endpoints.contains(where: { $0.scheme == "http" }) {
                error("'tls' is set but the etcd endpoints use http: write https:// endpoints", at: t.key.location)
                ok = false
            }
            tls = spec
        } else if f["tls"] != nil { ok = false }
        return ok ? EtcdSpec(endpoints: endpoints, tls: tls) : nil
    }

    /// `http://HOST[:PORT]` / `https://…`, HOST an IP address (IPv6 in brackets) or a DNS name.
    func etcdEndpoint(_ s: String) -> EtcdEndpoint? {
        let scheme: String
        var rest: Substring
        if s.hasPrefix("http://") { scheme = "http"; rest = s.dropFirst(7) } else if s.hasPrefix("https://") { scheme = "https"; rest = s.dropFirst(8) } else { return nil }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@"), !rest.contains("?"), !rest.contains("#") else { return nil }
        var host: Substring, portText: Substring? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty { guard after.hasPrefix(":") else { return nil }; portText = after.dropFirst() }
            guard IPv6Address(host) != nil else { return nil }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return nil }
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
            guard isHostName(host) || IPv4Address(host) != nil else { return nil }
        }
        var port = 2379
        if let p = portText {
            guard (1...5).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }), p.count == 1 || p.first != "0",
                  let n = Int(p), (1...65535).contains(n) else { return nil }
            port = n
        }
        return EtcdEndpoint(scheme: scheme, host: String(host), port: port)
    }

    /// A DNS name (RFC 1123 labels: letters, digits, '-', not at a label's ends; ≤ 253).
    func isHostName(_ s: Substring) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        for label in s.split(separator: ".", omittingEmptySubsequences: false) {
            let b = Array(label.utf8)
            guard !b.isEmpty, b.count <= 63, b.first != 45, b.last != 45,
                  b.allSatisfy({ (97...122).contains($0) || (65...90).contains($0) || (48...57).contains($0) || $0 == 45 }) else { return false }
        }
        // All-numeric dotted names are mistyped IPv4 addresses, not host names.
        return !s.allSatisfy { $0 == "." || $0.isNumber }
    }

    /// `ha: {isolation-addresses, isolation-response}`.
    mutating func haSpec(_ node: SourceNode) -> HASpec? {
        guard let f = mapping(node, "'ha'", allowed: Keys.ha.names) else { return nil }
        var spec = HASpec(), ok = true
        if let a = f["isolation-addresses"], !a.value.isNull, let items = list(a.value, "'isolation-addresses'") {
            if tooMany(items.count, limits.maxIsolationAddresses, "'isolation-addresses'",
                       firstBeyond: items.dropFirst(limits.maxIsolationAddresses).first?.location) { return nil }
            var seen: [IPAddress: Int] = [:]
            for item in items {
                guard let addr = unicastAddress(item, "isolation address") else { ok = false; continue }
                if let line = seen[addr] { error("isolation address \(addr) is listed twice (first at line \(line))", at: item.location); ok = false; continue }
                seen[addr] = item.location.line
                spec.isolationAddresses.append(addr)
            }
        }
        if let r = f["isolation-response"] {
            if let v = choice(r.value, "isolation response", IsolationResponse.allCases) { spec.isolationResponse = v } else { ok = false }
        }
        if spec.isolationResponse == .powerOff && spec.isolationAddresses.isEmpty {
            error("isolation-response power-off needs 'isolation-addresses': without them an etcd outage would look like isolation to every host",
                  at: f["isolation-response"]!.value.location)
            ok = false
        }
        return ok ? spec : nil
    }
}
