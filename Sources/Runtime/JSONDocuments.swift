import Foundation
import VMRunner

/// A JSON value with every key written out, `null` included (Foundation's encoders leave
/// nil optionals out, which is what `--json` must never do).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public static func number<T: BinaryInteger>(_ v: T) -> JSONValue { .int(Int64(v)) }
    public static func optional<T>(_ v: T?, _ make: (T) -> JSONValue) -> JSONValue { v.map(make) ?? .null }

    /// A value's stored properties as JSON, recursively: structs and classes become objects
    /// with snake_case keys (`inPort` → `in_port`, as `JSONEncoder.convertToSnakeCase`),
    /// optionals their value or `null` (the key stays), arrays arrays, dictionaries objects,
    /// enums their raw value. For report types whose every field belongs in `--json`.
    public static func reflecting(_ value: Any) -> JSONValue {
        switch value {
        case let v as JSONValue: return v
        case let b as Bool: return .bool(b)
        case let s as String: return .string(s)
        case let i as Int: return .int(Int64(i))
        case let i as Int64: return .int(i)
        case let i as Int32: return .int(Int64(i))
        case let i as Int16: return .int(Int64(i))
        case let i as UInt8: return .int(Int64(i))
        case let i as UInt16: return .int(Int64(i))
        case let i as UInt32: return .int(Int64(i))
        case let i as UInt64: return .int(Int64(clamping: i))
        case let d as Double: return .double(d)
        case let f as Float: return .double(Double(f))
        default: break
        }
        let m = Mirror(reflecting: value)
        switch m.displayStyle {
        case .optional?: return m.children.first.map { reflecting($0.value) } ?? .null
        case .collection?, .set?: return .array(m.children.map { reflecting($0.value) })
        case .dictionary?:
            var o: [String: JSONValue] = [:]
            for c in m.children {
                let pair = Mirror(reflecting: c.value).children.map(\.value)
                if pair.count == 2 { o[String(describing: pair[0])] = reflecting(pair[1]) }
            }
            return .object(o)
        case .struct?, .class?:
            var o: [String: JSONValue] = [:]
            for c in m.children { if let label = c.label { o[snakeCase(label)] = reflecting(c.value) } }
            return .object(o)
        case .enum?:
            if let r = value as? any RawRepresentable { return reflecting(r.rawValue) }
            return .string(String(describing: value))
        default: return .string(String(describing: value))
        }
    }

    /// `camelCase` → `camel_case`.
    static func snakeCase(_ s: String) -> String {
        var out = ""
        var previousLowerOrDigit = false
        for ch in s {
            if ch.isUppercase {
                if previousLowerOrDigit { out.append("_") }
                out += ch.lowercased()
                previousLowerOrDigit = false
            } else {
                out.append(ch)
                previousLowerOrDigit = ch.isLowercase || ch.isNumber
            }
        }
        return out
    }

    /// The keys of an object (empty otherwise).
    public var keys: Set<String> { if case .object(let o) = self { return Set(o.keys) } else { return [] } }
    public subscript(key: String) -> JSONValue? { if case .object(let o) = self { return o[key] } else { return nil } }

    /// Pretty-printed text, keys sorted, two-space indentation, `/` not escaped.
    public func text(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1), end = String(repeating: "  ", count: indent)
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            guard d.isFinite else { return "null" }
            return d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : String(d)
        case .string(let s): return JSONValue.quote(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[\n" + a.map { pad + $0.text(indent: indent + 1) }.joined(separator: ",\n") + "\n\(end)]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.keys.sorted().map { pad + JSONValue.quote($0) + ": " + o[$0]!.text(indent: indent + 1) }.joined(separator: ",\n") + "\n\(end)}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// The `--json` documents of every read command: what users and scripts rely on.
///
/// Rules (README "JSON output"): every document is an object with `schema_version`; every
/// key is always present, `null` when it has no value; quantities carry their unit in the key
/// (`uptime_seconds`); keys are snake_case. Schema 2 renamed keys that lacked units and
/// keeps the old names for one version (`deprecatedKeys`), so scripts have a release to move.
public enum JSONDocuments {
    /// 1: the keys before versioning (no `schema_version`; `vm list` a bare array).
    /// 2: `schema_version`, every key always present, units in names, `vm list` an object.
    public static let schemaVersion = 2

    /// Old key → its replacement, still written in schema 2 and to be removed in schema 3.
    public static let deprecatedKeys: [String: String] = [
        "uptime": "uptime_seconds",
        "boot_time": "boot_time_seconds",
        "restart_in": "restart_in_seconds",
    ]

    static func document(_ fields: [String: JSONValue]) -> JSONValue {
        var f = fields
        f["schema_version"] = .number(schemaVersion)
        return .object(f)
    }

    static func strings(_ list: [String]) -> JSONValue { .array(list.map { .string($0) }) }

    /// `tapestry status --json`.
    public static func status(_ s: StatusReport, host: String? = nil) -> JSONValue {
        document([
            "name": .string(s.name),
            "host": .optional(host ?? s.host) { .string($0) },
            "underlays": .array((s.underlays ?? []).map(underlay)),
            "fabric": .optional(s.fabric) { fabric($0) },
            "file": .string(s.file),
            "pid": .number(s.pid),
            "uptime_seconds": .number(s.uptimeSeconds),
            "datapath_threads": .optional(s.datapathThreads) { .number($0) },
            "busy_poll_microseconds": .optional(s.busyPollMicroseconds) { .number($0) },
            "datapath_frames": .optional(s.datapathFrames) { .array($0.map { .number($0) }) },
            "datapath_lock_wait_max_microseconds": .optional(s.datapathLockWaitMaxMicroseconds) { (w: [Double]) -> JSONValue in .array(w.map { JSONValue.double($0) }) },
            "switches": .array(s.switches.map { sw in
                .object([
                    "name": .string(sw.name),
                    "mtu": .number(sw.mtu),
                    "ports": .number(sw.ports),
                    "vlans": strings(sw.vlans),
                    "vlan_ranges": strings(vlanRanges(sw.vlans)),
                    "mac_entries": .number(sw.macEntries),
                    "mac_limit": .number(sw.macLimit),
                    "aging_seconds": .number(sw.agingSeconds),
                ])
            }),
            "guests": .array(s.guests.map { g in
                .object([
                    "name": .string(g.name),
                    "kind": .string(g.kind),
                    "namespace": .optional(g.namespace) { .string($0) },
                    "nics": .array(g.nics.map { n in
                        .object(["port": .string(n.port), "interface": .string(n.interface), "mac": .string(n.mac),
                                 "ip": .optional(n.ip) { .string($0) },
                                 "addresses": strings(n.addresses ?? []), "dhcp": .bool(n.dhcp ?? false)])
                    }),
                    "vm": .optional(g.vm) { vm($0, host: host ?? s.host) },
                ])
            }),
            "flow_export": .array((s.flowExport ?? []).map { f in
                .object([
                    "switch": .string(f.switch), "collector": .string(f.collector), "observation_domain": .number(f.observationDomain),
                    "sampling": .number(f.sampling), "active_timeout_seconds": .number(f.activeTimeoutSeconds),
                    "idle_timeout_seconds": .number(f.idleTimeoutSeconds), "flows": .number(f.flows),
                    "accounted_frames": .number(f.accountedFrames), "not_tracked_frames": .number(f.notTrackedFrames),
                    "records_exported": .number(f.recordsExported), "messages_sent": .number(f.messagesSent),
                    "send_failures": .number(f.sendFailures), "collector_unreachable": .number(f.collectorUnreachable),
                    "records_lost": .number(f.recordsLost), "last_error": .optional(f.lastError) { .string($0) },
                ])
            }),
        ])
    }

    /// One VM (`vm list`, and `status`'s `guests[].vm`); `host`: the host it runs on (null
    /// on a single host).
    public static func vm(_ v: VMStatus, host: String? = nil) -> JSONValue {
        let uptime: JSONValue = .optional(v.uptime) { .double($0) }
        let boot: JSONValue = .optional(v.bootTime) { .double($0) }
        let restartIn: JSONValue = .optional(v.restartIn) { .double($0) }
        return .object([
            "name": .string(v.name),
            "state": .string(v.state.rawValue),
            "pid": .optional(v.pid) { .number($0) },
            "accel": .string(v.accel.rawValue),
            "uptime_seconds": uptime, "uptime": uptime,
            "boot_time_seconds": boot, "boot_time": boot,
            "restarts": .number(v.restarts),
            "last_exit": .optional(v.lastExit) { e in
                .object(["code": .optional(e.code) { .number($0) }, "signal": .optional(e.signal) { .number($0) }])
            },
            "last_error": .optional(v.lastError) { .string($0) },
            "restart_in_seconds": restartIn, "restart_in": restartIn,
            "console_socket": .string(v.consoleSocket),
            "console_log": .string(v.consoleLog),
            "host": .optional(host) { .string($0) },
        ])
    }

    /// `tapestry vm list --json` (and `vm start|stop|restart --json`); `host`: the host whose
    /// daemon answered, which runs every VM it lists.
    public static func vmList(_ list: [VMStatus], host: String? = nil) -> JSONValue {
        document(["vms": .array(list.map { vm($0, host: host) })])
    }

    /// `tapestry vm migrate --json`.
    public static func migration(_ r: MigrationReport) -> JSONValue {
        document([
            "guest": .string(r.guest), "from": .string(r.from), "to": .string(r.to), "backend": .string(r.backend),
            "total_seconds": .double(r.totalSeconds),
            "qemu_total_milliseconds": .optional(r.qemuTotalMilliseconds) { .number($0) },
            "qemu_downtime_milliseconds": .optional(r.qemuDowntimeMilliseconds) { .number($0) },
            "transferred_bytes": .optional(r.transferredBytes) { .number($0) },
            "commit_milliseconds": .double(r.commitMilliseconds),
        ])
    }

    /// `status`'s `fabric`.
    static func fabric(_ f: FabricReport) -> JSONValue {
        .object([
            "host": .string(f.host), "registered": .bool(f.registered), "lease": .optional(f.lease) { .string($0) },
            "isolated": .bool(f.isolated), "etcd_endpoints": strings(f.etcdEndpoints), "topology_hash": .string(f.topologyHash),
            "hosts": .array(f.hosts.map { h in
                .object(["name": .string(h.name), "alive": .bool(h.alive), "underlay": .optional(h.underlay) { .string($0) },
                         "pid": .optional(h.pid) { .number($0) }, "topology_hash": .optional(h.topologyHash) { .string($0) },
                         "same_topology": .bool(h.sameTopology), "guests": strings(h.guests)])
            }),
            "topology_mismatches": strings(f.hosts.filter { !$0.sameTopology }.map(\.name)),
            "unplaceable": .object(f.unplaceable.mapValues { .string($0) }),
            "withheld": .object(f.withheld.mapValues { .string($0) }),
            "last_error": .optional(f.lastError) { .string($0) },
            "migrations": .array(f.migrations.map { m in
                .object(["guest": .string(m.guest), "from": .string(m.from), "to": .string(m.to), "state": .string(m.state),
                         "error": .optional(m.error) { .string($0) }])
            }),
            "last_read_seconds_ago": .optional(f.lastReadSecondsAgo) { .double($0) },
        ])
    }

    /// `tapestry ports --json`.
    public static func ports(_ r: PortsReport) -> JSONValue {
        document(["underlays": .array((r.underlays ?? []).map(underlay)), "ports": .array(r.ports.map { p in
            .object([
                "name": .string(p.name), "switch": .string(p.switch), "port_group": .string(p.portGroup),
                "kind": .string(p.kind), "vlan_mode": .string(p.vlanMode), "link": .string(p.link),
                "peer": .optional(p.peer) { .string($0) },
                "team": .optional(p.team) { t in
                    .object(["role": .string(t.role), "reason": .optional(t.reason) { .string($0) }, "carries": strings(t.carries)])
                },
                "mac_entries": .number(p.macEntries), "mac_limit": .number(p.macLimit), "mac_evictions": .number(p.macEvictions),
                "rx_frames": .number(p.rxFrames), "rx_bytes": .number(p.rxBytes), "tx_frames": .number(p.txFrames), "tx_bytes": .number(p.txBytes),
                "drops": .object(p.drops.mapValues { .number($0) }),
                "backend": .optional(p.backend) { .string($0) },
                "vhost_user": .optional(p.vhostUser) { v in
                    .object(["socket": .string(v.socket), "mode": .string(v.mode), "connected": .bool(v.connected),
                             "connections": .number(v.connections), "disconnects": .number(v.disconnects),
                             "resets": .object(v.resets.mapValues { .number($0) }), "rarps": .number(v.rarps),
                             "dirty_logs": .number(v.dirtyLogs), "segmented_in_software": .number(v.segmentedInSoftware),
                             "checksummed_in_software": .number(v.checksummedInSoftware),
                             "drops": .object(v.drops.mapValues { .number($0) })])
                },
            ])
        })])
    }

    /// One underlay endpoint's counters (`ports --json`'s `underlays`).
    static func underlay(_ u: UnderlayCounters) -> JSONValue {
        .object(["endpoint": .string(u.label), "rx_packets": .number(u.rxPackets), "rx_bytes": .number(u.rxBytes),
                 "rx_coalesced": .number(u.rxCoalesced ?? 0), "rx_coalesced_packets": .number(u.rxCoalescedPackets ?? 0),
                 "tx_packets": .number(u.txPackets), "tx_bytes": .number(u.txBytes), "tx_errors": .number(u.txErrors),
                 "tx_runs": .number(u.txRuns ?? 0), "drops": .object(u.drops.mapValues { .number($0) })])
    }

    /// `tapestry fdb --json`.
    public static func fdb(_ r: FDBReport) -> JSONValue {
        document([
            "entries": .array(r.entries.map { e in
                .object(["switch": .string(e.switch), "vlan": .string(e.vlan), "mac": .string(e.mac), "port": .string(e.port),
                         "age_seconds": .number(e.ageSeconds), "type": .string(e.type), "vtep": .optional(e.vtep) { .string($0) }])
            }),
            "ports": .array(r.ports.map { u in
                .object(["switch": .string(u.switch), "port": .string(u.port), "entries": .number(u.entries),
                         "limit": .number(u.limit), "evictions": .number(u.evictions)])
            }),
        ])
    }

    /// `tapestry trace --json`: every stored property of `TraceReport`, recursively, in
    /// snake_case, nil as `null` (built by reflection, so fields the report gains appear
    /// without a change here).
    public static func trace(_ r: TraceReport) -> JSONValue {
        guard case .object(let fields) = JSONValue.reflecting(r) else { return document([:]) }
        return document(fields)
    }

    /// `tapestry mdb --json`: every stored property of `MDBReport`, in snake_case, nil as
    /// `null` (by reflection, like `trace`).
    public static func mdb(_ r: MDBReport) -> JSONValue {
        guard case .object(let fields) = JSONValue.reflecting(r) else { return document([:]) }
        return document(fields)
    }

    /// `tapestry list --json`.
    public static func list(_ rows: [InstanceSummary]) -> JSONValue {
        document(["instances": .array(rows.map { r in
            .object([
                "name": .string(r.name), "host": .optional(r.host) { .string($0) }, "state": .string(r.state.rawValue),
                "pid": .number(r.pid), "file": .string(r.file), "uptime_seconds": .optional(r.uptimeSeconds) { .number($0) },
                "socket": .string(r.socket), "log": .string(r.log),
            ])
        })])
    }

    /// Compresses a VLAN list such as `["10", "11", "12", "20", "none"]` into ranges
    /// (`["10-12", "20", "none"]`); non-numeric entries keep their place after the numbers.
    public static func vlanRanges(_ vlans: [String]) -> [String] {
        let numbers = vlans.compactMap { Int($0) }.sorted()
        var out: [String] = []
        var i = 0
        while i < numbers.count {
            var j = i
            while j + 1 < numbers.count && numbers[j + 1] <= numbers[j] + 1 { j += 1 }
            out.append(numbers[i] == numbers[j] ? "\(numbers[i])" : "\(numbers[i])-\(numbers[j])")
            i = j + 1
        }
        return out + vlans.filter { Int($0) == nil }
    }
}

/// One row of `tapestry list`: an instance with a state file under /run/tapestry.
public struct InstanceSummary: Equatable, Sendable {
    public enum State: String, Sendable {
        /// Its daemon is alive.
        case running
        /// Its daemon is gone but its state file (and maybe namespaces) remain:
        /// `tapestry down --name NAME` cleans up.
        case crashed
    }
    public var name: String
    public var host: String?
    public var state: State
    public var pid: Int32
    public var file: String
    public var uptimeSeconds: Int64?
    public var socket: String
    public var log: String

    /// Every instance with a state file, by stem.
    public static func all() -> [InstanceSummary] {
        RunDirectory.knownInstances().compactMap { stem in
            guard let s = InstanceState.read(stem: stem) else { return nil }
            let alive = s.isAlive
            return InstanceSummary(name: s.name, host: s.host, state: alive ? .running : .crashed, pid: s.pid, file: s.file,
                                   uptimeSeconds: alive ? s.uptimeSeconds : nil, socket: RunDirectory.socket(stem), log: RunDirectory.log(stem))
        }
    }
}
