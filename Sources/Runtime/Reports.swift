import Foundation
// The control-request fuzzer (Scripts/fuzz.sh) compiles this file without the VMRunner module.
#if canImport(VMRunner)
import VMRunner
#endif

/// Replies of the control socket. Keys are encoded in snake_case; they are a stable
/// interface (`--json`), documented in README.md.

public struct StatusReport: Codable, Equatable {
    public var name: String
    public var file: String
    public var pid: Int32
    public var uptimeSeconds: Int64
    /// Datapath worker threads (each netns guest's TAP has as many queues).
    public var datapathThreads: Int?
    /// Poll mode: how long a worker spins after work before sleeping (0: off).
    public var busyPollMicroseconds: Int?
    /// Frames each datapath thread has read (how the load spreads over them).
    public var datapathFrames: [UInt64]?
    /// Per datapath worker, the longest it waited for the datapath lock (µs, 0.1 µs
    /// resolution) since start or since a `status --reset-lock-waits`.
    public var datapathLockWaitMaxMicroseconds: [Double]? = nil
    public var switches: [SwitchSummary]
    public var guests: [GuestSummary]
    /// IPFIX flow export per switch that has it (nil from a daemon that predates it).
    public var flowExport: [FlowExportSummary]? = nil
    /// The host this instance runs, for a topology that spans hosts.
    public var host: String? = nil
    /// Its VXLAN underlay endpoints' counters.
    public var underlays: [UnderlayCounters]? = nil
    /// The fabric in etcd as this host sees it; nil without `etcd:`.
    public var fabric: FabricReport? = nil

    public struct SwitchSummary: Codable, Equatable {
        public var name: String
        public var mtu: Int
        public var ports: Int
        public var vlans: [String]
        public var macEntries: Int
        public var macLimit: Int
        public var agingSeconds: Int
    }
    public struct GuestSummary: Codable, Equatable {
        public var name: String
        public var kind: String
        public var namespace: String?
        public var nics: [NICSummary]
        #if canImport(VMRunner)
        /// QEMU guests: state, pid, accel, uptime, restarts, console socket and log.
        public var vm: VMStatus?
        #endif
    }
    public struct NICSummary: Codable, Equatable {
        public var port: String
        public var interface: String
        public var mac: String
        /// The first IPv4 address (kept for scripts that read one address).
        public var ip: String?
        /// Every static address, IPv4 and IPv6, in file order (nil: none).
        public var addresses: [String]? = nil
        /// True for `ip: dhcp` (nil otherwise).
        public var dhcp: Bool? = nil
    }
}

/// One switch's IPFIX flow export (`flow-export`), as `status` shows it: its settings and
/// what it has done since the daemon (or the switch's current settings) started.
public struct FlowExportSummary: Codable, Equatable {
    public var `switch`: String
    /// `HOST:PORT` of the collector.
    public var collector: String
    public var observationDomain: UInt32
    /// N of 1-in-N sampling (per datapath worker).
    public var sampling: Int
    public var activeTimeoutSeconds: Int
    public var idleTimeoutSeconds: Int
    /// Flows in the flow tables now.
    public var flows: Int = 0
    /// Sampled frames counted into a tracked flow.
    public var accountedFrames: UInt64 = 0
    /// Sampled frames of new flows that found the flow table full (not tracked).
    public var notTrackedFrames: UInt64 = 0
    /// Flow records the kernel accepted for the collector.
    public var recordsExported: UInt64 = 0
    /// IPFIX messages sent (templates and options included).
    public var messagesSent: UInt64 = 0
    /// Messages that could not be sent (collector unreachable, no socket, buffer full).
    public var sendFailures: UInt64 = 0
    /// Of those, sends refused by the collector's host (ICMP port unreachable, ECONNREFUSED).
    public var collectorUnreachable: UInt64 = 0
    /// Flow records lost with the failed messages.
    public var recordsLost: UInt64 = 0
    /// The latest failure, as text (nil: none).
    public var lastError: String? = nil
}

public struct PortsReport: Codable, Equatable {
    public var ports: [PortRow]
    /// The VXLAN underlay endpoints of this host: packets and the drops that
    /// happen before any tunnel port (unknown VTEP, unknown VNI, malformed headers).
    public var underlays: [UnderlayCounters]? = nil
    public struct PortRow: Codable, Equatable {
        public var name: String
        public var `switch`: String
        public var portGroup: String
        /// `guest`, `uplink`, `link` or `tunnel`.
        public var kind: String
        /// Link ports: the port at the other end, `SWITCH/PORT`; tunnel ports: the remote
        /// VTEP, `ADDRESS:PORT (host H)` or `ADDRESS:PORT (remote VTEP)` (nil for other kinds).
        public var peer: String? = nil
        public var vlanMode: String
        /// Guests: `up`. Uplinks: the team role (`active`, `standby`, `down (reason)`, `unused`).
        public var link: String
        /// Uplinks only: role, down reason, and the guest ports whose traffic it carries.
        public var team: TeamInfo?
        public var macEntries: Int
        /// The port's learning limit and how many of its entries were evicted.
        public var macLimit: Int
        public var macEvictions: UInt64
        public var rxFrames: UInt64
        public var rxBytes: UInt64
        public var txFrames: UInt64
        public var txBytes: UInt64
        /// Drop counters by reason name (only reasons that occurred). A vhost-user port adds
        /// the drops that happen inside it, before the switch sees a frame or after it let
        /// one go (`VhostPortStatistics.drops`: `tx-oversize`, `tx-runt`, `rx-too-large`,
        /// `rx-offload-malformed`, `rx-segments-lost`).
        public var drops: [String: UInt64]
        /// Guest ports: how the guest's NIC reaches the switch, `tap` (a netns guest's TAP, a
        /// QEMU guest's TAP netdev) or `vhost-user`; nil for uplinks, links and tunnels.
        public var backend: String? = nil
        /// vhost-user ports: the socket, the frontend's state and the port's own counters.
        public var vhostUser: VhostUserInfo? = nil
    }
    /// A vhost-user port's side of `ports`.
    public struct VhostUserInfo: Codable, Equatable {
        /// `/run/tapestry/STEM.vhost/GUEST.ethN.sock`, or a client-mode guest's `socket-path`.
        public var socket: String
        /// `server` (the switch listens) or `client` (it connects, and reconnects).
        public var mode: String
        /// The frontend runs both rings (`VhostUserPort.isRunning`).
        public var connected: Bool
        /// Connections made (accepted or connected) and lost since the port opened.
        public var connections: UInt64
        public var disconnects: UInt64
        /// Port resets by reason: a ring fault (`descriptor-outside-memory`, `descriptor-loop`,
        /// …) or `protocol-error`.
        public var resets: [String: UInt64]
        /// RARPs announced on the frontend's behalf (SEND_RARP), which went through the switch.
        public var rarps: UInt64
        /// Dirty-page logs mapped (live migrations started).
        public var dirtyLogs: UInt64
        /// Frames finished in software for a guest without that offload: GSO frames cut into
        /// segments, partial checksums completed.
        public var segmentedInSoftware: UInt64
        public var checksummedInSoftware: UInt64
        /// The port's own drops by reason (also counted in the row's `drops`).
        public var drops: [String: UInt64]
    }
    public struct TeamInfo: Codable, Equatable {
        public var role: String
        public var reason: String?
        public var carries: [String]
    }
}

public struct FDBReport: Codable, Equatable {
    public var entries: [Entry]
    /// Per port: dynamic entries held, its learning limit, entries evicted so far.
    public var ports: [PortUsage]
    public struct PortUsage: Codable, Equatable {
        public var `switch`: String
        public var port: String
        public var entries: Int
        public var limit: Int
        public var evictions: UInt64
    }
    public struct Entry: Codable, Equatable {
        public var `switch`: String
        public var vlan: String
        public var mac: String
        public var port: String
        public var ageSeconds: Int64
        public var type: String
        /// For an entry on a tunnel port: the remote VTEP's underlay address it was learned
        /// behind (nil otherwise).
        public var vtep: String? = nil
    }
}

/// A control request: one JSON object on one line.
public struct ControlRequest: Codable, Equatable {
    public var command: String
    public var `switch`: String?
    public var vlan: String?
    /// `trace`: ingress port; `capture`: selected ports (comma-separated names).
    public var port: String?
    public var portGroup: String?
    /// `capture`: in, out or both.
    public var direction: String?
    /// `capture`: dropped frames only, with reasons.
    public var drops: Bool?
    /// `trace`: frames as lowercase hex strings.
    public var frames: [String]?
    /// `reload`: absolute path of the topology file the daemon loads.
    public var file: String?
    /// `vm`: list, start, stop or restart, and the VM's name.
    public var action: String?
    public var vm: String?
    /// `vm migrate`: the destination host.
    public var to: String? = nil
    public init(command: String, switch sw: String? = nil, vlan: String? = nil, port: String? = nil,
                portGroup: String? = nil, direction: String? = nil, drops: Bool? = nil, frames: [String]? = nil,
                file: String? = nil, action: String? = nil, vm: String? = nil, to: String? = nil) {
        self.file = file; self.action = action; self.vm = vm; self.to = to
        self.command = command; self.switch = sw; self.vlan = vlan; self.port = port
        self.portGroup = portGroup; self.direction = direction; self.drops = drops; self.frames = frames
    }
}

/// How the control socket frames a request: what its read loop makes of the bytes a client
/// has sent so far (`ControlServer`; pure, so the control fuzzer runs the same code).
///
/// A request is one line: the bytes before the first newline, or all of them when the client
/// closed its sending side first. More than `limit` bytes without a newline is refused; the
/// reader never buffers more than `limit + 1` bytes of a request.
public enum ControlRequestFraming: Equatable {
    /// No newline yet, within the limit, the client still sending: keep reading.
    case incomplete
    /// The request line (without its newline).
    case line(ArraySlice<UInt8>)
    /// More than the limit without a newline.
    case tooLarge

    /// - Parameters:
    ///   - buffer: the bytes received so far (at most `limit + 1`).
    ///   - ended: the client closed its sending side (a read returned 0 bytes).
    ///   - limit: the longest request line, bytes (`ControlServer.Limits.maxRequest`).
    public static func of(_ buffer: [UInt8], ended: Bool, limit: Int) -> ControlRequestFraming {
        if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")), nl <= limit { return .line(buffer[..<nl]) }
        if buffer.count > limit { return .tooLarge }
        return ended ? .line(buffer[...]) : .incomplete
    }
}

extension ControlRequest {
    /// Decodes one request line (one JSON object, `JSON.decoder()`); nil when it is not one.
    public static func decode(line: ArraySlice<UInt8>) -> ControlRequest? {
        try? JSON.decoder().decode(ControlRequest.self, from: Data(line))
    }
}

/// The reply to `trace`: each frame's decision, step by step.
public struct TraceReport: Codable, Equatable {
    public var `switch`: String
    public var inPort: String
    public var frames: [FrameTrace]
    public struct FrameTrace: Codable, Equatable {
        public var summary: String
        public var steps: [Step]
        /// forward, flood, multicast-group (a registered group's members and router ports),
        /// multicast-routers (a report or leave: router ports only), local or drop.
        public var verdict: String
        public var dropReason: String?
        public var egress: [Egress]
        /// Mirror (SPAN) copies the frame would make.
        public var mirrors: [MirrorCopy]
        /// Ports that would get the frame but refuse it, with the reason counted there.
        public var refused: [Refusal]
        /// Storm control's answer as of now (nil: the frame does not flood, or no limit applies).
        public var storm: Storm?
        /// The uplink (team member) a frame leaving the switch goes by (nil: none).
        public var uplink: String?
        /// For each output to a link port: the frame followed into the other switch's
        /// decision, as it arrives there. nil when the frame leaves by no link.
        public var crossings: [LinkCrossing]? = nil
        /// Traffic shaping's answers as of now: ingress on the ingress port, egress on each
        /// shaped port the frame would go to (absent: no shaping applies).
        public var shaping: [Shaping]? = nil
        /// The frame's private VLAN (absent: its VLAN is a plain one).
        public var privateVlan: PrivateVLANTrace? = nil
        /// What IGMP/MLD snooping made of the frame (absent: snooping off, or not multicast).
        public var multicast: MulticastTrace? = nil

        public init(summary: String, steps: [Step], verdict: String, dropReason: String?, egress: [Egress],
                    mirrors: [MirrorCopy] = [], refused: [Refusal] = [], storm: Storm? = nil, uplink: String? = nil, crossings: [LinkCrossing]? = nil,
                    shaping: [Shaping]? = nil, privateVlan: PrivateVLANTrace? = nil, multicast: MulticastTrace? = nil) {
            self.summary = summary; self.steps = steps; self.verdict = verdict; self.dropReason = dropReason
            self.egress = egress; self.mirrors = mirrors; self.refused = refused; self.storm = storm
            self.uplink = uplink; self.crossings = crossings
            self.shaping = shaping; self.privateVlan = privateVlan; self.multicast = multicast
        }
    }
    /// A frame crossing a patch link: it left this switch by link port `via` and enters
    /// switch `switch` by its port `inPort`, where `trace` is that switch's decision on it
    /// (which may cross further links, up to `Fabric.linkTraceHops` deep).
    public struct LinkCrossing: Codable, Equatable {
        /// The link port on the switch the frame leaves.
        public var via: String
        /// The switch at the other end.
        public var `switch`: String
        /// Its link port the frame enters by.
        public var inPort: String
        /// That switch's decision; nil when the trace stopped at the hop bound (`truncated`).
        public var trace: FrameTrace?
        /// True when the trace was not followed further (hop bound reached).
        public var truncated: Bool
    }
    public struct Shaping: Codable, Equatable {
        public var port: String
        /// ingress (from the guest) or egress (to the guest).
        public var direction: String
        public var admitted: Bool
        /// The frame's bytes as charged (a GSO frame's whole length; egress: as sent).
        public var frameBytes: Int
        /// Bytes in the average- and peak-rate buckets now (negative: paying back a frame
        /// larger than the bucket).
        public var averageBytes: Int64
        public var peakBytes: Int64
        public var averageBitsPerSecond: UInt64
        public var peakBitsPerSecond: UInt64
        public var burstBytes: Int
    }
    public struct PrivateVLANTrace: Codable, Equatable {
        public var vlan: String
        public var primary: String
        /// promiscuous, isolated or community.
        public var type: String
        /// Ports of the private VLAN the frame does not reach, and why (their type).
        public var skipped: [Refusal]
    }
    public struct MulticastTrace: Codable, Equatable {
        /// data, query, report, leave, malformed, or not-ip-multicast.
        public var kind: String
        /// The group (data, leave, group-specific query).
        public var group: String?
        /// The learning VLAN the group table is keyed by.
        public var vlan: String
        /// Data: the group has members (false: flooded as unregistered or link-local).
        public var registered: Bool?
        /// Data to a registered group: its member ports.
        public var members: [String]?
        /// Router ports the switch knows in the VLAN (dynamic ones, configured ones, uplinks).
        public var routers: [String]?
        /// Reports: each group record and what it would do (join, refresh, leave, ignored).
        public var records: [Record]?
        /// Queries: the querier's address, and what it changes.
        public var querier: String?
        /// Malformed messages: why.
        public var problem: String?
    }
    public struct Record: Codable, Equatable {
        /// IS_IN, IS_EX, TO_IN, TO_EX, ALLOW, BLOCK (RFC 3376 §4.2.12).
        public var type: String
        public var group: String
        public var sources: Int
        /// join (new membership), refresh, leave, not-a-member, link-local (not registered), ignored.
        public var effect: String
    }
    public struct MirrorCopy: Codable, Equatable {
        /// The mirror destination port.
        public var port: String
        /// "ingress": a copy of the frame as received; "egress": a copy of what leaves by `of`.
        public var point: String
        /// For an egress copy: the port whose output it copies.
        public var of: String?
        /// True for an egress copy: it goes only if that output is sent (copy if sent).
        public var ifSent: Bool
    }
    public struct Refusal: Codable, Equatable {
        public var port: String
        public var reason: String
    }
    public struct Storm: Codable, Equatable {
        /// broadcast, multicast or unknown-unicast.
        public var `class`: String
        public var admitted: Bool
        public var framesLeft: Int64
        public var ratePerSecond: Int64
    }
    public struct Step: Codable, Equatable {
        /// ingress, parse, vlan, pvlan, learn, lookup, snoop, storm, shaping, team, output,
        /// mirror, local, drop.
        public var stage: String
        public var detail: String
    }
    public struct Egress: Codable, Equatable {
        public var port: String
        /// "untagged" or "vlan N".
        public var tag: String
    }
}

/// First line of a `capture` stream: the interfaces (ports) that records refer to by index.
public struct CaptureHeader: Codable, Equatable {
    public var `switch`: String
    public var interfaces: [Interface]
    public struct Interface: Codable, Equatable {
        public var name: String
        public var description: String
    }
}

/// A control reply: `ok` plus either a report or an error message.
public struct ControlError: Codable, Equatable {
    public var error: String
}

public enum JSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return e
    }
    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}

/// The reply to `mdb`: the multicast group table(s), like `bridge mdb` and `ovs-appctl
/// mdb/show`. Keys (snake_case, stable):
/// - `entries`: `switch`, `vlan` (the learning VLAN: a private VLAN's primary), `group`
///   (IPv4 or IPv6 text), `port`, `age_seconds` (since the last report; 0 when static),
///   `expires_seconds` (until it ages out; absent when static), `type` (`static`|`dynamic`).
/// - `routers`: `switch`, `vlan` (absent for configured ports and uplinks: every VLAN they
///   carry), `port`, `type` (`dynamic`: a query arrived there; `static`: configured;
///   `uplink`), `age_seconds` and `expires_seconds` (dynamic ones).
/// - `queriers`: per switch, VLAN and family (`ipv4`|`ipv6`), `role` (`querier` when this
///   switch queries, `other` when another querier holds the role; `address` then), and
///   `next_query_seconds`.
/// - `tables`: per switch, `groups`, `group_capacity`, `memberships`, `membership_capacity`,
///   `routers`, `router_capacity`, `refused_joins`, `refused_routers`, `membership_interval_seconds`.
public struct MDBReport: Codable, Equatable {
    public var entries: [Entry]
    public var routers: [Router]
    public var queriers: [Querier]
    public var tables: [Table]
    public init(entries: [Entry] = [], routers: [Router] = [], queriers: [Querier] = [], tables: [Table] = []) {
        self.entries = entries; self.routers = routers; self.queriers = queriers; self.tables = tables
    }
    public struct Entry: Codable, Equatable {
        public var `switch`: String
        public var vlan: String
        public var group: String
        public var port: String
        public var ageSeconds: Int64
        public var expiresSeconds: Int64?
        public var type: String
    }
    public struct Router: Codable, Equatable {
        public var `switch`: String
        public var vlan: String?
        public var port: String
        public var type: String
        public var ageSeconds: Int64?
        public var expiresSeconds: Int64?
    }
    public struct Querier: Codable, Equatable {
        public var `switch`: String
        public var vlan: String
        public var family: String
        public var role: String
        public var address: String?
        public var nextQuerySeconds: Int64?
    }
    public struct Table: Codable, Equatable {
        public var `switch`: String
        public var groups: Int
        public var groupCapacity: Int
        public var memberships: Int
        public var membershipCapacity: Int
        public var routers: Int
        public var routerCapacity: Int
        public var refusedJoins: UInt64
        public var refusedRouters: UInt64
        public var membershipIntervalSeconds: Int64
    }
}

/// An underlay endpoint's counters, as `ports` and `status` show them.
public struct UnderlayCounters: Codable, Equatable, Sendable {
    /// `ADDRESS:PORT`, and ` in netns NS`.
    public var label: String
    /// VXLAN packets received (all, dropped ones included) and their UDP payload bytes.
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    /// Frames coalesced from two or more received TCP segments (`Wire.TCPCoalescer`), and
    /// the packets in them (nil from a daemon that predates coalescing).
    public var rxCoalesced: UInt64?
    public var rxCoalescedPackets: UInt64?
    /// Packets handed to the kernel, and their IP bytes.
    public var txPackets: UInt64
    public var txBytes: UInt64
    /// Packets the kernel refused (a full socket buffer, no route, EMSGSIZE).
    public var txErrors: UInt64
    /// UDP GSO messages sent, each a run of ≥ 2 of the packets above (nil from a daemon
    /// that predates them).
    public var txRuns: UInt64?
    /// Packets dropped before any tunnel port, by `UnderlayDrop` name.
    public var drops: [String: UInt64]
}

/// The fabric as one host sees it (`tapestry status`, `fabric`): every host of the
/// topology, alive or dead in etcd, the guests etcd places on each, and hosts running
/// another topology file.
public struct FabricReport: Codable, Equatable {
    /// This host.
    public var host: String
    /// Whether it holds a registration in etcd now.
    public var registered: Bool
    /// Its lease ID (hex), when registered.
    public var lease: String?
    /// Whether it is isolated (lease lost and no isolation address answers).
    public var isolated: Bool
    /// The etcd client URLs.
    public var etcdEndpoints: [String]
    /// SHA-256 of this host's topology file (hex).
    public var topologyHash: String
    /// One host of the topology.
    public struct Host: Codable, Equatable {
        public var name: String
        /// Registered in etcd (its lease is alive).
        public var alive: Bool
        public var underlay: String?
        /// Its daemon's pid, when registered.
        public var pid: Int32?
        /// Its topology file's hash, when registered.
        public var topologyHash: String?
        /// Whether it runs the same file as this host (true when unknown).
        public var sameTopology: Bool
        /// Guests etcd places on it (or its file entries, for guests without a placement).
        public var guests: [String]
    }
    public var hosts: [Host]
    /// Guests of dead hosts that fit nowhere, with why.
    public var unplaceable: [String: String]
    /// Guests this host did not start at start-up, with why.
    public var withheld: [String: String]
    /// The last etcd error, when the last call failed.
    public var lastError: String?
    /// A migration in flight.
    public struct Migration: Codable, Equatable {
        public var guest: String
        public var from: String
        public var to: String
        /// requested, ready, committed or failed.
        public var state: String
        public var error: String?
    }
    public var migrations: [Migration]
    /// Seconds since etcd was last read (nil: never).
    public var lastReadSecondsAgo: Double?
}
