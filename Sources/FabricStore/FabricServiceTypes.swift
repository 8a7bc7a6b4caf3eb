// The settings, callbacks and status of a FabricService.

/// Timing and HA settings of a `FabricService`.
public struct FabricOptions: Sendable {
    /// Lease TTL in seconds (about 3 s).
    public var leaseTTL: Int64 = 3
    /// Seconds between lease renewals.
    public var keepAliveInterval: Double = 1
    /// Seconds between reads of the fabric (the bound on how late a change is seen).
    public var pollInterval: Double = 0.5
    /// Seconds a survivor waits after first seeing a host dead before restarting its guests.
    public var grace: Double = 3
    /// `ha.isolation-addresses`: IPv4/IPv6 addresses pinged when the lease is lost.
    public var isolationAddresses: [String] = []
    /// `ha.isolation-response`.
    public var isolationResponse: IsolationResponse = .none
    /// Seconds to wait for an isolation address's echo reply.
    public var probeTimeout: Double = 0.5
    /// Seconds each etcd call of the service may take.
    public var requestTimeout: Double = 1

    /// The defaults: TTL 3 s, renewal every 1 s, poll every 0.5 s, grace 3 s, no isolation addresses, response none.
    public init() {}
}

/// Why the service asks the runtime to stop guests.
public enum GuestStopReason: Sendable, Equatable, CustomStringConvertible {
    /// This host is isolated and `isolation-response: power-off`: stop them hard (SIGKILL or
    /// QMP `quit`; the survivors restart them after the grace period).
    case isolation
    /// etcd's placement names another live host (HA restarted it there while this host was
    /// cut off): the copy here must go.
    case placedElsewhere(String)
    public var description: String {
        switch self {
        case .isolation: return "host isolated (isolation-response: power-off)"
        case .placedElsewhere(let h): return "placed on host \(h) in etcd"
        }
    }
}

/// How the service reaches into the runtime. Called on the service's threads: each should
/// return quickly (hand long work such as a VM boot to another thread and report the
/// outcome with `guestStarted` / `guestStopped`).
public struct FabricCallbacks: Sendable {
    /// Start a guest that etcd places on this host and that does not run here. Return true
    /// when it was started (or its start is under way).
    public var startGuest: @Sendable (String) -> Bool
    /// Stop these guests, for the reason given.
    public var stopGuests: @Sendable ([String], GuestStopReason) -> Void
    /// One line per event worth logging.
    public var log: @Sendable (String) -> Void
    /// A migration to this host was requested (`MigrationRecord.State.requested`; once per
    /// record ID), with the record's mod revision and lease: prepare the destination (on
    /// another thread) and report its end with `incomingFinished`. The service already holds
    /// the guest out of reconciliation (`prepareIncoming`).
    public var incomingMigration: @Sendable (MigrationRecord, _ revision: Int64, _ lease: Int64) -> Void

    /// The callbacks; without `incomingMigration`, requests to migrate here are refused by
    /// marking them failed.
    public init(startGuest: @escaping @Sendable (String) -> Bool, stopGuests: @escaping @Sendable ([String], GuestStopReason) -> Void,
                log: @escaping @Sendable (String) -> Void,
                incomingMigration: (@Sendable (MigrationRecord, Int64, Int64) -> Void)? = nil) {
        self.startGuest = startGuest; self.stopGuests = stopGuests; self.log = log
        self.acceptsMigrations = incomingMigration != nil
        self.incomingMigration = incomingMigration ?? { _, _, _ in }
    }
    /// Whether `incomingMigration` was given.
    public let acceptsMigrations: Bool
}

/// The fabric as one host sees it, for `tapestry status`.
public struct FabricStatus: Sendable, Equatable {
    /// One host of the topology as etcd last showed it.
    public struct Host: Sendable, Equatable {
        /// Its name.
        public var name: String
        /// Whether it holds a registration.
        public var alive: Bool
        /// Its underlay address (registered, else declared).
        public var underlay: String?
        /// Its daemon's pid, when registered.
        public var pid: Int32?
        /// Its topology file's hash, when registered.
        public var topologyHash: String?
        /// Whether it runs the same topology file as this host.
        public var sameTopology: Bool
        /// Guests etcd places on it.
        public var guests: [String]
    }
    /// This host.
    public var host: String
    /// Whether this host holds a registration now.
    public var registered: Bool
    /// Its lease ID (0: none).
    public var lease: Int64
    /// Whether it is isolated (lease lost, no isolation address answers).
    public var isolated: Bool
    /// Every host of the topology, by name.
    public var hosts: [Host]
    /// Guests of dead hosts that fit nowhere, with why.
    public var unplaceable: [String: String]
    /// Guests this host did not start at start-up, with why.
    public var withheld: [String: String]
    /// The last etcd error, if the last call failed.
    public var lastError: String?
    /// Migrations in flight, as etcd last showed them.
    public var migrations: [MigrationRecord] = []
    /// Seconds since the fabric was last read successfully (nil: never).
    public var lastReadSecondsAgo: Double? = nil
}
