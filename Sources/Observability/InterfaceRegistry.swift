import Model

/// Stable interface IDs for switch ports, as exported in IPFIX `ingressInterface` /
/// `egressInterface` (IEs 10, 14) and mapped to names in an options record.
///
/// A port's index in the compiled plan moves when a reload adds or removes ports, so the
/// index is never exported. Instead each port name (`SWITCH/PORT`, e.g. `sw0/web1.eth0`)
/// gets an ID derived from the name (FNV-1a, 32 bits), the same in every run of the daemon;
/// a collision with a different name already registered moves to the next free value. The
/// registry lives as long as the daemon (not the plan): a reload asks for the same names
/// and gets the same IDs, whatever their new indices. 0 is never assigned: it means "no
/// interface" (a flooded frame's egress, RFC 7012 §5.2 leaves 0 unused by SNMP ifIndex).
///
/// Bounded: at most `limit` names (default 65 536). `retain(only:)` forgets names no longer
/// in the topology, so reloads cannot grow it without bound. Not thread-safe: the control
/// thread owns it and hands the datapath plain `[UInt32]` tables indexed by port index.
public struct InterfaceRegistry: Sendable {
    /// Port name (`SWITCH/PORT`) → stable ID.
    public private(set) var idByName: [String: UInt32] = [:]
    /// Stable ID → port name.
    public private(set) var nameByID: [UInt32: String] = [:]
    /// Most names held.
    public let limit: Int

    public init(limit: Int = 65_536) { self.limit = limit }

    /// Errors of `id(for:)`.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case full(limit: Int)
        public var description: String {
            switch self { case .full(let l): return "interface registry full (\(l) names): too many ports" }
        }
    }

    /// The stable ID of `name`, assigning one on first use.
    /// - Throws: `Failure.full` when `limit` names are registered.
    public mutating func id(for name: String) throws -> UInt32 {
        if let id = idByName[name] { return id }
        guard idByName.count < limit else { throw Failure.full(limit: limit) }
        var id = InterfaceRegistry.hash(name)
        while id == 0 || nameByID[id] != nil { id &+= 1 }
        idByName[name] = id
        nameByID[id] = name
        return id
    }

    /// Forgets every name not in `names` (call after a reload with the ports that remain).
    public mutating func retain(only names: Set<String>) {
        for (name, id) in idByName where !names.contains(name) {
            idByName[name] = nil
            nameByID[id] = nil
        }
    }

    /// The (ID, name) pairs, sorted by ID: the rows of the interface options record.
    public var mapping: [(id: UInt32, name: String)] {
        nameByID.sorted { $0.key < $1.key }.map { (id: $0.key, name: $0.value) }
    }

    /// FNV-1a over the UTF-8 bytes (32-bit): `Model.FNV1a.hash32`.
    public static func hash(_ name: String) -> UInt32 { FNV1a.hash32(name) }
}
