/// What a scrape reports: plain values copied out of the running instance.
///
/// The runtime fills it under the datapath lock (one copy of the counters, the same way
/// the control socket's `ports` and `status` do), releases the lock, and only then are the
/// metric families built and rendered, on the metrics server's thread. So a scrape holds the
/// datapath for one copy, never for formatting or for a slow client.
public struct MetricsSnapshot: Equatable, Sendable {
    /// One switch port's counters (as `tapestry ports` shows them).
    public struct Port: Equatable, Sendable {
        /// The switch it belongs to.
        public var `switch`: String
        /// `GUEST.ethN` or the uplink NIC's name.
        public var name: String
        /// The port group, or `(uplinks)` for an uplink.
        public var portGroup: String
        /// `guest` or `uplink`.
        public var kind: String
        /// Frames and bytes received from / sent to the port, from the switch's side.
        public var rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64, txBytes: UInt64
        /// Drop counters by reason name (`DropReason` description), only those that occurred.
        public var drops: [(reason: String, count: UInt64)]
        /// MAC-table entries learned on the port, its limit, entries evicted.
        public var macEntries: Int, macLimit: Int, macEvictions: UInt64

        public init(switch sw: String, name: String, portGroup: String, kind: String, rxFrames: UInt64 = 0, rxBytes: UInt64 = 0,
                    txFrames: UInt64 = 0, txBytes: UInt64 = 0, drops: [(reason: String, count: UInt64)] = [],
                    macEntries: Int = 0, macLimit: Int = 0, macEvictions: UInt64 = 0) {
            self.switch = sw; self.name = name; self.portGroup = portGroup; self.kind = kind
            self.rxFrames = rxFrames; self.rxBytes = rxBytes; self.txFrames = txFrames; self.txBytes = txBytes
            self.drops = drops; self.macEntries = macEntries; self.macLimit = macLimit; self.macEvictions = macEvictions
        }

        public static func == (a: Port, b: Port) -> Bool {
            a.switch == b.switch && a.name == b.name && a.portGroup == b.portGroup && a.kind == b.kind
                && a.rxFrames == b.rxFrames && a.rxBytes == b.rxBytes && a.txFrames == b.txFrames && a.txBytes == b.txBytes
                && a.drops.map(\.reason) == b.drops.map(\.reason) && a.drops.map(\.count) == b.drops.map(\.count)
                && a.macEntries == b.macEntries && a.macLimit == b.macLimit && a.macEvictions == b.macEvictions
        }
    }
    /// One switch's MAC table.
    public struct Switch: Equatable, Sendable {
        /// The switch's name.
        public var name: String
        /// Dynamic entries, the table limit, entries evicted.
        public var macEntries: Int, macLimit: Int, macEvictions: UInt64
        public init(name: String, macEntries: Int, macLimit: Int, macEvictions: UInt64) {
            self.name = name; self.macEntries = macEntries; self.macLimit = macLimit; self.macEvictions = macEvictions
        }
    }
    /// One uplink NIC's team role.
    public struct Uplink: Equatable, Sendable {
        /// The switch it belongs to.
        public var `switch`: String
        /// The NIC's name.
        public var nic: String
        /// `active`, `standby`, `down` or `unused` (`tapestry ports`' role without its reason).
        public var role: String
        public init(switch sw: String, nic: String, role: String) { self.switch = sw; self.nic = nic; self.role = role }
    }
    /// One QEMU guest.
    public struct VM: Equatable, Sendable {
        /// The guest's name.
        public var name: String
        /// `starting`, `running`, `stopping`, `backing-off`, `stopped` or `failed`.
        public var state: String
        /// Restarts by the VM runner.
        public var restarts: Int
        public init(name: String, state: String, restarts: Int) { self.name = name; self.state = state; self.restarts = restarts }
    }
    public struct FlowExport: Equatable, Sendable {
        public var `switch`: String
        public var accountedFrames: UInt64, notTrackedFrames: UInt64, activeFlows: Int
        public var recordsSent: UInt64, sendFailures: UInt64
        public init(switch sw: String, accountedFrames: UInt64, notTrackedFrames: UInt64, activeFlows: Int, recordsSent: UInt64, sendFailures: UInt64) {
            self.switch = sw; self.accountedFrames = accountedFrames; self.notTrackedFrames = notTrackedFrames
            self.activeFlows = activeFlows; self.recordsSent = recordsSent; self.sendFailures = sendFailures
        }
    }

    public var topology: String
    /// The host this instance runs of a topology that spans hosts (`up --host`),
    /// or nil: then no sample carries a `host` label.
    public var host: String?
    /// The daemon's start, Unix epoch seconds (`process_start_time_seconds`).
    public var startTimeSeconds: Double
    public var ports: [Port] = []
    public var switches: [Switch] = []
    public var uplinks: [Uplink] = []
    /// Frames each datapath worker has read, by worker index.
    public var workerFrames: [UInt64] = []
    public var vms: [VM] = []
    public var flowExport: [FlowExport] = []

    public init(topology: String, host: String? = nil, startTimeSeconds: Double) {
        self.topology = topology; self.host = host; self.startTimeSeconds = startTimeSeconds
    }
}

/// Tapestry's metric names (Prometheus conventions: `tapestry_` prefix, base units, `_total`
/// on counters, `_bytes` for octets, state sets as gauges of 0/1 with the state as a label).
///
/// | metric | type | labels |
/// |---|---|---|
/// | `tapestry_topology_info` | gauge (1) | topology (and host, as every sample of a multi-host instance) |
/// | `process_start_time_seconds` | gauge | |
/// | `tapestry_port_receive_frames_total`, `…_receive_bytes_total`, `…_transmit_frames_total`, `…_transmit_bytes_total` | counter | switch, port, port_group, kind |
/// | `tapestry_port_dropped_frames_total` | counter | switch, port, reason |
/// | `tapestry_port_mac_entries`, `tapestry_port_mac_limit` | gauge | switch, port |
/// | `tapestry_port_mac_evictions_total` | counter | switch, port |
/// | `tapestry_mac_table_entries`, `tapestry_mac_table_limit` | gauge | switch |
/// | `tapestry_mac_table_evictions_total` | counter | switch |
/// | `tapestry_uplink_team_role` | gauge (0/1 per role) | switch, uplink, role |
/// | `tapestry_datapath_worker_frames_total` | counter | worker |
/// | `tapestry_vm_state` | gauge (0/1 per state) | vm, state |
/// | `tapestry_vm_restarts_total` | counter | vm |
/// | `tapestry_flow_export_accounted_frames_total`, `…_not_tracked_frames_total`, `…_records_sent_total`, `…_send_failures_total` | counter | switch |
/// | `tapestry_flow_export_active_flows` | gauge | switch |
///
/// Receive/transmit are from the switch's side, as in `tapestry ports`: receive = frames the
/// switch took in from the port.
///
/// An instance of a topology that spans hosts (`NAME@HOST`) puts `host` first on every sample
/// (`process_start_time_seconds` included), so the series of two hosts of one topology never
/// collide, whichever target labels a scraper adds — two hosts run the same switch names,
/// and on one machine the same port names (their tunnel ports); a single-host instance's
/// output has no `host` label.
public enum TapestryMetrics {
    /// Uplink roles as a state set; a role outside it still gets its own sample.
    public static let uplinkRoles = ["active", "standby", "down", "unused"]
    /// VM states as a state set (README `vm list`).
    public static let vmStates = ["starting", "running", "stopping", "backing-off", "stopped", "failed"]

    /// The families for one snapshot, in a stable order.
    public static func families(_ s: MetricsSnapshot) -> [MetricFamily] {
        typealias L = MetricFamily.Label
        typealias S = MetricFamily.Sample
        var out: [MetricFamily] = []
        func add(_ name: String, _ type: MetricType, _ help: String, _ samples: [S]) {
            out.append(MetricFamily(name: name, help: help, type: type, samples: samples))
        }
        add("tapestry_topology_info", .gauge, "The running topology (always 1).", [S([L("topology", s.topology)], .integer(1))])
        add("process_start_time_seconds", .gauge, "Start time of the tapestry daemon since the Unix epoch in seconds.",
            [S([], .double(s.startTimeSeconds))])

        func portLabels(_ p: MetricsSnapshot.Port) -> [L] {
            [L("switch", p.switch), L("port", p.name), L("port_group", p.portGroup), L("kind", p.kind)]
        }
        add("tapestry_port_receive_frames_total", .counter, "Frames the switch received from the port (including dropped ones).",
            s.ports.map { S(portLabels($0), .integer($0.rxFrames)) })
        add("tapestry_port_receive_bytes_total", .counter, "Bytes of the frames the switch received from the port.",
            s.ports.map { S(portLabels($0), .integer($0.rxBytes)) })
        add("tapestry_port_transmit_frames_total", .counter, "Frames the switch sent to the port.",
            s.ports.map { S(portLabels($0), .integer($0.txFrames)) })
        add("tapestry_port_transmit_bytes_total", .counter, "Bytes of the frames the switch sent to the port.",
            s.ports.map { S(portLabels($0), .integer($0.txBytes)) })
        add("tapestry_port_dropped_frames_total", .counter, "Frames dropped on the port, by drop reason (see tapestry ports).",
            s.ports.flatMap { p in p.drops.map { S([L("switch", p.switch), L("port", p.name), L("reason", $0.reason)], .integer($0.count)) } })
        add("tapestry_port_mac_entries", .gauge, "Dynamic MAC-table entries learned on the port.",
            s.ports.map { S([L("switch", $0.switch), L("port", $0.name)], .integer(UInt64(max(0, $0.macEntries)))) })
        add("tapestry_port_mac_limit", .gauge, "The port's MAC learning limit (mac-limit).",
            s.ports.map { S([L("switch", $0.switch), L("port", $0.name)], .integer(UInt64(max(0, $0.macLimit)))) })
        add("tapestry_port_mac_evictions_total", .counter, "MAC-table entries of the port evicted to make room.",
            s.ports.map { S([L("switch", $0.switch), L("port", $0.name)], .integer($0.macEvictions)) })

        add("tapestry_mac_table_entries", .gauge, "Dynamic entries in the switch's MAC table.",
            s.switches.map { S([L("switch", $0.name)], .integer(UInt64(max(0, $0.macEntries)))) })
        add("tapestry_mac_table_limit", .gauge, "The switch's MAC-table limit (mac-table.limit).",
            s.switches.map { S([L("switch", $0.name)], .integer(UInt64(max(0, $0.macLimit)))) })
        add("tapestry_mac_table_evictions_total", .counter, "Entries evicted from the switch's MAC table to make room.",
            s.switches.map { S([L("switch", $0.name)], .integer($0.macEvictions)) })

        add("tapestry_uplink_team_role", .gauge, "The uplink NIC's team role: 1 for its current role, 0 for the others.",
            s.uplinks.flatMap { u -> [S] in
                let roles = uplinkRoles.contains(u.role) ? uplinkRoles : uplinkRoles + [u.role]
                return roles.map { S([L("switch", u.switch), L("uplink", u.nic), L("role", $0)], .integer($0 == u.role ? 1 : 0)) }
            })
        add("tapestry_datapath_worker_frames_total", .counter, "Frames each datapath worker thread has read.",
            s.workerFrames.enumerated().map { S([L("worker", String($0.offset))], .integer($0.element)) })
        add("tapestry_vm_state", .gauge, "The QEMU guest's state: 1 for its current state, 0 for the others.",
            s.vms.flatMap { vm -> [S] in
                let states = vmStates.contains(vm.state) ? vmStates : vmStates + [vm.state]
                return states.map { S([L("vm", vm.name), L("state", $0)], .integer($0 == vm.state ? 1 : 0)) }
            })
        add("tapestry_vm_restarts_total", .counter, "Times the VM runner restarted the QEMU guest.",
            s.vms.map { S([L("vm", $0.name)], .integer(UInt64(max(0, $0.restarts)))) })

        add("tapestry_flow_export_accounted_frames_total", .counter, "Sampled frames counted into IPFIX flows.",
            s.flowExport.map { S([L("switch", $0.switch)], .integer($0.accountedFrames)) })
        add("tapestry_flow_export_not_tracked_frames_total", .counter, "Sampled frames of new flows not tracked because the flow table was full.",
            s.flowExport.map { S([L("switch", $0.switch)], .integer($0.notTrackedFrames)) })
        add("tapestry_flow_export_active_flows", .gauge, "Flows in the flow tables.",
            s.flowExport.map { S([L("switch", $0.switch)], .integer(UInt64(max(0, $0.activeFlows)))) })
        add("tapestry_flow_export_records_sent_total", .counter, "IPFIX flow records sent to the collector.",
            s.flowExport.map { S([L("switch", $0.switch)], .integer($0.recordsSent)) })
        add("tapestry_flow_export_send_failures_total", .counter, "IPFIX messages that could not be sent (collector unreachable, buffer full).",
            s.flowExport.map { S([L("switch", $0.switch)], .integer($0.sendFailures)) })
        if let h = s.host {
            for f in out.indices { for i in out[f].samples.indices { out[f].samples[i].labels.insert(L("host", h), at: 0) } }
        }
        return out
    }
}
