import CFabric
import Foundation

/// The fabric's keys in etcd, per topology name (a running instance is topology name plus
/// host; every host of one topology shares these keys).
///
/// ```
/// /tapestry/v1/TOPOLOGY/members/HOST     MemberRecord   under HOST's lease (TTL ≈ 3 s, renewed
///                                                       every second): present ⇔ HOST is alive
/// /tapestry/v1/TOPOLOGY/placement/GUEST  PlacementRecord no lease: which host runs GUEST; the
///                                                       fabric's desired state, changed only by
///                                                       compare-and-swap transactions
/// /tapestry/v1/TOPOLOGY/claims/GUEST     ClaimRecord    no lease: the last HA restart of GUEST
///                                                       (who claimed it, from which dead host),
///                                                       written in the same transaction as the
///                                                       placement it changed
/// /tapestry/v1/TOPOLOGY/migrations/GUEST MigrationRecord under the SOURCE host's lease: one
///                                                       live migration in flight, how source
///                                                       and destination coordinate (they may
///                                                       be on different machines); gone with
///                                                       the source, so a dead source never
///                                                       leaves a destination waiting
/// ```
/// Values are JSON objects (snake_case keys, times as Unix seconds). `v1` versions the
/// layout; a later layout gets a new prefix instead of reinterpreting this one.
public struct FabricKeys: Sendable, Equatable {
    /// The topology's name (`name:` of the file).
    public let topology: String
    /// The keys of topology `topology`.
    public init(topology: String) { self.topology = topology }

    /// `/tapestry/v1/TOPOLOGY/`: every key of the topology starts with it.
    public var root: String { "/tapestry/v1/\(topology)/" }
    /// Prefix of the membership records.
    public var membersPrefix: String { root + "members/" }
    /// Prefix of the placements.
    public var placementPrefix: String { root + "placement/" }
    /// Prefix of the HA claim records.
    public var claimsPrefix: String { root + "claims/" }
    /// Prefix of the migrations in flight.
    public var migrationsPrefix: String { root + "migrations/" }
    /// The migration key of `guest`.
    public func migration(_ guest: String) -> String { migrationsPrefix + guest }
    /// The membership key of `host`.
    public func member(_ host: String) -> String { membersPrefix + host }
    /// The placement key of `guest`.
    public func placement(_ guest: String) -> String { placementPrefix + guest }
    /// The claim key of `guest`.
    public func claim(_ guest: String) -> String { claimsPrefix + guest }

    /// The last path component of `key` if it lies directly under `prefix`.
    public static func name(of key: String, under prefix: String) -> String? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        return rest.isEmpty || rest.contains("/") ? nil : String(rest)
    }
}

/// A host's membership record, kept under its lease: what the other hosts need to know.
public struct MemberRecord: Codable, Sendable, Equatable {
    /// The host's name (`hosts:` key).
    public var host: String
    /// The host's underlay (VTEP) address.
    public var underlay: String
    /// The daemon's pid on its machine.
    public var pid: Int32
    /// `topologyHash` of the file this host runs (SHA-256, hex).
    public var topologyHash: String
    /// Guests this host runs now, sorted.
    public var guests: [String]
    /// When the daemon registered (Unix seconds).
    public var startedAt: Double

    /// A record; `guests` is stored sorted.
    public init(host: String, underlay: String, pid: Int32, topologyHash: String, guests: [String], startedAt: Double) {
        self.host = host; self.underlay = underlay; self.pid = pid; self.topologyHash = topologyHash
        self.guests = guests.sorted(); self.startedAt = startedAt
    }

    enum CodingKeys: String, CodingKey {
        case host, underlay, pid, guests
        case topologyHash = "topology_hash", startedAt = "started_at"
    }
}

/// Why a guest is placed where it is.
public enum PlacementReason: String, Codable, Sendable {
    /// The host the topology file names, recorded when that host first started it.
    case initial
    /// Restarted there by HA after its host died.
    case failover
    /// Moved there by `tapestry vm migrate`.
    case migration
}

/// Where one guest runs: the fabric's desired state for it.
public struct PlacementRecord: Codable, Sendable, Equatable {
    /// The guest's name.
    public var guest: String
    /// The host that runs it.
    public var host: String
    /// Why it is there.
    public var reason: PlacementReason
    /// The previous host (failover, migration).
    public var from: String?
    /// When it was recorded (Unix seconds).
    public var at: Double

    /// A placement recorded at Unix time `at`.
    public init(guest: String, host: String, reason: PlacementReason, from: String? = nil, at: Double) {
        self.guest = guest; self.host = host; self.reason = reason; self.from = from; self.at = at
    }
}

/// The record of one HA restart decision.
public struct ClaimRecord: Codable, Sendable, Equatable {
    /// The guest restarted.
    public var guest: String
    /// The dead host.
    public var from: String
    /// The host chosen to run it.
    public var to: String
    /// The surviving host whose transaction won the claim.
    public var by: String
    /// Unix seconds.
    public var at: Double
    /// The placement's mod revision that the claim replaced (compare-and-swap witness).
    public var replacedRevision: Int64

    /// A claim record.
    public init(guest: String, from: String, to: String, by: String, at: Double, replacedRevision: Int64) {
        self.guest = guest; self.from = from; self.to = to; self.by = by; self.at = at; self.replacedRevision = replacedRevision
    }

    enum CodingKeys: String, CodingKey {
        case guest, from, to, by, at
        case replacedRevision = "replaced_revision"
    }
}

/// One live migration in flight (`tapestry vm migrate`), the record through which the
/// source and destination daemons coordinate:
///
/// ```
///  source                          etcd: migrations/GUEST            destination
///  checks, puts ────────────────▶ requested (source's lease) ──────▶ sees it (poll): creates
///                                                                    the ports, QEMU -incoming
///  connects, QMP migrate ◀─────── ready, listen ADDR:PORT ◀───────── defer -S, a listener
///  QEMU completes (guest paused on both)
///  one transaction: placement ──▶ committed, counters ─────────────▶ cont (resumes), adds the
///  stops its QEMU, removes ports                                     counters, deletes the key
///  (failure anywhere before the commit: failed + error; the source resumes its copy)
/// ```
/// The commit is the switch-over: it succeeds only while the record is unchanged since the
/// source last read it, so a destination that gave up (CAS to `failed`) and a source that
/// commits can never both win.
public struct MigrationRecord: Codable, Sendable, Equatable {
    /// Where the migration stands.
    public enum State: String, Codable, Sendable {
        /// Written by the source: the destination is to prepare.
        case requested
        /// Written by the destination: its QEMU waits, its listener is `listen`.
        case ready
        /// Written by the source with the placement, in one transaction: the destination runs it.
        case committed
        /// Written by either side: it ended without a commit (`error` says why); the guest
        /// stays on the source.
        case failed
    }
    /// A random ID (one migration attempt).
    public var id: String
    /// The guest.
    public var guest: String
    /// The source host.
    public var from: String
    /// The destination host.
    public var to: String
    /// Where it stands.
    public var state: State
    /// `ADDRESS:PORT` (IPv6 in brackets) of the destination's migration listener (ready).
    public var listen: String?
    /// The guest's port counters on the source at the switch-over, by port name (committed).
    public var counters: [String: PortCarry]?
    /// Why it failed.
    public var error: String?
    /// Unix seconds of the last change.
    public var at: Double

    /// A record.
    public init(id: String, guest: String, from: String, to: String, state: State, listen: String? = nil,
                counters: [String: PortCarry]? = nil, error: String? = nil, at: Double) {
        self.id = id; self.guest = guest; self.from = from; self.to = to; self.state = state; self.listen = listen
        self.counters = counters; self.error = error; self.at = at
    }
}

/// One port's counters carried from a migration's source to its destination (a distributed
/// switch's port statistics follow the VM).
public struct PortCarry: Codable, Sendable, Equatable {
    /// Frames and bytes received from the guest.
    public var rxFrames: UInt64, rxBytes: UInt64
    /// Frames and bytes sent to the guest.
    public var txFrames: UInt64, txBytes: UInt64
    /// Drops by reason (the counter's name).
    public var drops: [String: UInt64]

    /// The counters.
    public init(rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64, txBytes: UInt64, drops: [String: UInt64]) {
        self.rxFrames = rxFrames; self.rxBytes = rxBytes; self.txFrames = txFrames; self.txBytes = txBytes; self.drops = drops
    }

    enum CodingKeys: String, CodingKey {
        case drops
        case rxFrames = "rx_frames", rxBytes = "rx_bytes", txFrames = "tx_frames", txBytes = "tx_bytes"
    }
}

/// A host of the topology (`hosts: {H: {underlay, netns?, cpus?, memory?}}`), as
/// far as placement cares.
public struct FabricHost: Sendable, Equatable {
    /// The host's name.
    public var name: String
    /// Its underlay (VTEP) address.
    public var underlay: String
    /// Virtual CPUs guests may reserve here; nil: not limited.
    public var cpus: Int?
    /// MiB of memory guests may reserve here; nil: not limited.
    public var memoryMiB: Int?
    /// The switches that run on it (those with a port there in the topology file, issue
    /// only such hosts have tunnels for the switch); nil: any. A guest can move here
    /// (HA, migration) only when every switch of its NICs runs here, so that the overlay
    /// reaches its new port.
    public var switches: Set<String>?

    /// A host; nil limits mean unlimited, nil switches any.
    public init(name: String, underlay: String, cpus: Int? = nil, memoryMiB: Int? = nil, switches: Set<String>? = nil) {
        self.name = name; self.underlay = underlay; self.cpus = cpus; self.memoryMiB = memoryMiB; self.switches = switches
    }
}

/// What kind of guest, for HA and migration.
public enum FabricGuestKind: String, Sendable {
    /// A QEMU VM: HA restarts it, migration moves it, isolation power-off stops it.
    case qemu
    /// A network-namespace guest: HA re-creates it; it cannot be migrated.
    case netns
    /// A guest Tapestry serves but does not start (a vhost-user frontend): never restarted.
    case external
}

/// The restart policy (`restart: never | on-failure | always`). HA restarts guests of a
/// dead host whose policy is not `never` (VMware HA's restart priority "disabled").
public enum FabricRestart: String, Sendable {
    case never, onFailure = "on-failure", always
}

/// A guest of the topology, as far as placement cares.
public struct FabricGuest: Sendable, Equatable {
    /// The guest's name.
    public var name: String
    /// QEMU, netns or external.
    public var kind: FabricGuestKind
    /// The host the topology file puts it on (`host:`).
    public var host: String
    /// Virtual CPUs it reserves (0 for netns guests: they reserve nothing).
    public var cpus: Int
    /// MiB of memory it reserves (0 for netns guests).
    public var memoryMiB: Int
    /// Its restart policy.
    public var restart: FabricRestart
    /// The switches its NICs attach to.
    public var switches: Set<String>

    /// A guest; netns guests reserve 0 CPUs and 0 MiB.
    public init(name: String, kind: FabricGuestKind, host: String, cpus: Int = 0, memoryMiB: Int = 0, restart: FabricRestart = .never,
                switches: Set<String> = []) {
        self.name = name; self.kind = kind; self.host = host; self.cpus = cpus; self.memoryMiB = memoryMiB; self.restart = restart
        self.switches = switches
    }

    /// Whether HA restarts it when its host dies.
    public var isRestartedByHA: Bool { restart != .never && kind != .external }
}

/// The part of a topology that the fabric store needs; the runtime builds it from the
/// validated topology.
public struct FabricSpec: Sendable, Equatable {
    /// The topology's name.
    public var topology: String
    /// `FabricSpec.hash(of:)` of the topology file's bytes.
    public var topologyHash: String
    /// The hosts, by name.
    public var hosts: [String: FabricHost]
    /// The guests, by name.
    public var guests: [String: FabricGuest]

    /// A spec; duplicate names keep the first.
    public init(topology: String, topologyHash: String, hosts: [FabricHost], guests: [FabricGuest]) {
        self.topology = topology; self.topologyHash = topologyHash
        self.hosts = Dictionary(hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.guests = Dictionary(guests.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// SHA-256 of a topology file's bytes, lower-case hex: what hosts compare to find out
    /// whether they run the same file.
    public static func hash(of bytes: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = bytes.withUnsafeBytes { cf_sha256($0.baseAddress, $0.count, &out) }
        precondition(rc == 0, "SHA-256 failed")
        return out.map { String(format: "%02x", $0) }.joined()
    }
}

/// What etcd said about the fabric at one revision (one transaction reads members and
/// placements together, so the two agree).
public struct FabricSnapshot: Sendable, Equatable {
    /// A live host's record with the lease that keeps it and the key's create revision
    /// (which identifies one registration: a host that re-registers gets a new one).
    public struct Member: Sendable, Equatable {
        /// The decoded record.
        public var record: MemberRecord
        /// The lease that keeps it.
        public var lease: Int64
        /// The key's create revision (one per registration).
        public var createRevision: Int64
    }
    /// A placement with its key's mod revision (the compare-and-swap witness).
    public struct Placement: Sendable, Equatable {
        /// The decoded record.
        public var record: PlacementRecord
        /// The key's mod revision.
        public var modRevision: Int64
    }
    /// A migration in flight with its key's mod revision and lease (the source's).
    public struct Migration: Sendable, Equatable {
        /// The decoded record.
        public var record: MigrationRecord
        /// The key's mod revision (the compare-and-swap witness).
        public var modRevision: Int64
        /// The lease it lives under (the source host's).
        public var lease: Int64
    }
    /// The store revision of the read.
    public var revision: Int64
    /// Live hosts' registrations, by host.
    public var members: [String: Member]
    /// Placements, by guest.
    public var placements: [String: Placement]
    /// Migrations in flight, by guest.
    public var migrations: [String: Migration]
    /// Keys whose value could not be decoded (skipped, reported).
    public var malformedKeys: [String]

    /// A snapshot (tests build their own).
    public init(revision: Int64, members: [String: Member], placements: [String: Placement], migrations: [String: Migration] = [:],
                malformedKeys: [String] = []) {
        self.revision = revision; self.members = members; self.placements = placements; self.migrations = migrations
        self.malformedKeys = malformedKeys
    }

    /// Whether `host` holds a live registration.
    public func isAlive(_ host: String) -> Bool { members[host] != nil }
}

let recordEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return e
}()

func encodeRecord<T: Encodable>(_ value: T) -> [UInt8] {
    // Encoding these plain structs cannot fail.
    Array((try? recordEncoder.encode(value)) ?? Data("{}".utf8))
}

func decodeRecord<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
    try? JSONDecoder().decode(type, from: Data(bytes))
}
