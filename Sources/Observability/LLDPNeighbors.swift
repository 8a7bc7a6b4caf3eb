/// How an uplink takes part in LLDP (`uplinks.lldp` in the topology).
public enum LLDPMode: String, CaseIterable, Sendable {
    /// Read what the physical switch says (the default).
    case listen
    /// Send our LLDPDUs, ignore theirs (they are still consumed, never forwarded).
    case advertise
    case both
    /// Neither; LLDP frames from the uplink are still consumed, not forwarded to guests.
    case off

    /// Neighbours are recorded.
    public var receives: Bool { self == .listen || self == .both }
    /// Our LLDPDUs are sent.
    public var transmits: Bool { self == .advertise || self == .both }
}

/// What an uplink's neighbour said, and when.
public struct LLDPNeighbor: Equatable, Sendable {
    /// The uplink (NIC name) it was heard on.
    public var port: String
    /// The latest LLDPDU.
    public var du: LLDPDU
    /// Monotonic milliseconds of the first and the latest LLDPDU.
    public var firstSeen: UInt64
    public var lastSeen: UInt64
    /// Monotonic milliseconds when the information expires (lastSeen + TTL s).
    public var expires: UInt64
}

/// The neighbours heard on each uplink (802.1AB's remote systems MIB, kept small), keyed
/// by MSAP (Chassis ID + Port ID, §6.5.1) per port.
///
/// An LLDPDU with TTL 0 removes its MSAP at once (shutdown, §9.2.7.7.3); otherwise the entry
/// expires TTL seconds after the latest LLDPDU (`expire(now:)`, on the control tick).
/// Bounded: at most `maxPerPort` neighbours per uplink and `maxTotal` overall; a new MSAP
/// beyond that is refused and counted in `tooManyNeighbors` (a hub or a flood of forged
/// LLDPDUs cannot grow the table). Not thread-safe: one owner, the LLDP agent.
public struct LLDPNeighborTable: Sendable {
    /// Most neighbours kept per uplink.
    public let maxPerPort: Int
    /// Most neighbours kept overall.
    public let maxTotal: Int
    private var entries: [String: [LLDPNeighbor]] = [:]
    private var total = 0
    /// New neighbours refused because a bound was reached.
    public private(set) var tooManyNeighbors: UInt64 = 0
    /// Entries removed because their TTL ran out.
    public private(set) var ageouts: UInt64 = 0

    /// What `receive` did.
    public enum Update: Equatable, Sendable {
        case added, refreshed, changed, removed, refused
    }

    public init(maxPerPort: Int = 8, maxTotal: Int = 256) {
        self.maxPerPort = max(1, maxPerPort); self.maxTotal = max(1, maxTotal)
    }

    /// Records an LLDPDU heard on `port` at `now` (monotonic milliseconds).
    @discardableResult
    public mutating func receive(_ du: LLDPDU, on port: String, now: UInt64) -> Update {
        var list = entries[port] ?? []
        let i = list.firstIndex { $0.du.chassisID == du.chassisID && $0.du.portID == du.portID }
        if du.ttl == 0 {
            guard let i else { return .refreshed }
            list.remove(at: i); total -= 1
            entries[port] = list.isEmpty ? nil : list
            return .removed
        }
        let expires = now + UInt64(du.ttl) * 1000
        if let i {
            let changed = list[i].du != du
            list[i].du = du; list[i].lastSeen = now; list[i].expires = expires
            entries[port] = list
            return changed ? .changed : .refreshed
        }
        guard list.count < maxPerPort, total < maxTotal else { tooManyNeighbors += 1; return .refused }
        list.append(LLDPNeighbor(port: port, du: du, firstSeen: now, lastSeen: now, expires: expires))
        total += 1
        entries[port] = list
        return .added
    }

    /// Removes neighbours whose TTL ran out; returns them.
    @discardableResult
    public mutating func expire(now: UInt64) -> [LLDPNeighbor] {
        var gone: [LLDPNeighbor] = []
        for (port, list) in entries {
            let keep = list.filter { $0.expires > now }
            if keep.count != list.count {
                gone += list.filter { $0.expires <= now }
                entries[port] = keep.isEmpty ? nil : keep
            }
        }
        total -= gone.count
        ageouts += UInt64(gone.count)
        return gone
    }

    /// Forgets every neighbour of `port` (the uplink went away or its link went down).
    public mutating func removeAll(on port: String) {
        total -= entries[port]?.count ?? 0
        entries[port] = nil
    }

    /// Neighbours of one uplink, oldest first.
    public func neighbors(on port: String) -> [LLDPNeighbor] { entries[port] ?? [] }
    /// Every neighbour, by port name then age.
    public var all: [LLDPNeighbor] { entries.keys.sorted().flatMap { entries[$0]! } }
    /// Neighbours held.
    public var count: Int { total }
}

/// When an advertising uplink sends its next LLDPDU: every `interval` milliseconds
/// (802.1AB msgTxInterval, default 30 s), and soon after something changed (a link came up),
/// at most once a second (`txFast` credit of 802.1AB §9.2.5 kept simple).
public struct LLDPTransmitSchedule: Sendable {
    /// Milliseconds between LLDPDUs (msgTxInterval).
    public let interval: UInt64
    private var next: UInt64 = 0
    private var lastSent: UInt64?

    public init(interval: UInt64 = 30_000) { self.interval = max(1000, interval) }

    /// True when an LLDPDU is due at `now` (monotonic ms); records it as sent.
    public mutating func due(now: UInt64) -> Bool {
        guard now >= next else { return false }
        lastSent = now
        next = now + interval
        return true
    }

    /// Asks for a transmission soon (within a second of the previous one).
    public mutating func somethingChanged(now: UInt64) {
        next = min(next, max(now, (lastSent ?? 0) + 1000))
    }
}

/// One row of `tapestry neighbors --json` (keys snake_case through the control socket's
/// JSON encoder: `uplink`, `chassis_id`, `chassis_id_type`, `port_id`, `port_id_type`,
/// `system_name`, `system_description`, `port_description`, `management_addresses`,
/// `port_vlan`, `capabilities`, `ttl_seconds`, `age_seconds`, `expires_in_seconds`).
public struct LLDPNeighborRow: Codable, Equatable, Sendable {
    public var uplink: String
    /// The Chassis ID as text (MAC, IP, or the string) and its subtype name (`mac`, `local`…).
    public var chassisId: String
    public var chassisIdType: String
    public var portId: String
    public var portIdType: String
    public var systemName: String?
    public var systemDescription: String?
    public var portDescription: String?
    public var managementAddresses: [String]
    public var portVlan: Int?
    /// Enabled capabilities by name (`bridge`, `router`, `station`, …).
    public var capabilities: [String]
    public var ttlSeconds: Int
    public var ageSeconds: Int
    public var expiresInSeconds: Int

    /// The row for `n` at `now` (monotonic milliseconds, the table's clock).
    public init(_ n: LLDPNeighbor, now: UInt64) {
        uplink = n.port
        chassisId = n.du.chassisID.description; chassisIdType = n.du.chassisID.subtypeName
        portId = n.du.portID.description; portIdType = n.du.portID.subtypeName
        systemName = n.du.systemName; systemDescription = n.du.systemDescription; portDescription = n.du.portDescription
        managementAddresses = n.du.managementAddresses.map(\.description)
        portVlan = n.du.portVLAN.map(Int.init)
        let names = ["other", "repeater", "bridge", "wlan-ap", "router", "telephone", "docsis", "station", "c-vlan", "s-vlan", "tpmr"]
        let enabled = n.du.capabilities?.enabled ?? 0
        capabilities = names.indices.filter { enabled & (1 << UInt16($0)) != 0 }.map { names[$0] }
        ttlSeconds = Int(n.du.ttl)
        ageSeconds = Int((now >= n.firstSeen ? now - n.firstSeen : 0) / 1000)
        expiresInSeconds = Int((n.expires > now ? n.expires - now : 0) / 1000)
    }
}
