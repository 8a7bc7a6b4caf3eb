import Foundation

/// Errors of the etcd client. `unavailable` is the one to expect in operation (every
/// endpoint failed or the call's deadline passed): callers treat it as "no decision now".
public enum EtcdError: Error, CustomStringConvertible, Equatable {
    /// An endpoint URL that cannot be used (`reason` says why).
    case invalidEndpoint(String, reason: String)
    /// The endpoint list is empty.
    case noEndpoints
    /// The TLS files could not be loaded or do not fit the endpoints.
    case tls(String)
    /// No endpoint answered usefully before the deadline: one reason per attempt, in order.
    case unavailable([String])
    /// etcd answered with an error: its gRPC status code (google.rpc.Code: 3 invalid
    /// argument, 5 not found, 9 failed precondition, 14 unavailable…) and message.
    case server(code: Int, message: String)
    /// etcd's answer did not have the expected shape.
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .invalidEndpoint(let e, let reason): return "etcd endpoint '\(e)': \(reason)"
        case .noEndpoints: return "etcd: no endpoints"
        case .tls(let m): return m
        case .unavailable(let reasons):
            return "etcd unavailable: " + (reasons.isEmpty ? "deadline passed" : reasons.joined(separator: "; "))
        case .server(let code, let message): return "etcd error \(code): \(message)"
        case .malformedResponse(let m): return "etcd: malformed response: \(m)"
        }
    }
}

/// One key-value pair as etcd stores it (mvccpb.KeyValue). Keys are this module's own
/// ASCII paths, so they are strings; values are bytes.
public struct KeyValue: Sendable, Equatable {
    /// The key (UTF-8).
    public var key: String
    /// The value bytes.
    public var value: [UInt8]
    /// Revision of the last creation of this key.
    public var createRevision: Int64
    /// Revision of the last modification.
    public var modRevision: Int64
    /// Number of modifications since creation (1 after the first put).
    public var version: Int64
    /// The lease the key is attached to (0 = none).
    public var lease: Int64

    /// A pair; revisions and lease default to 0 (as for a missing key).
    public init(key: String, value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0, lease: Int64 = 0) {
        self.key = key; self.value = value; self.createRevision = createRevision
        self.modRevision = modRevision; self.version = version; self.lease = lease
    }
}

/// One comparison of a transaction (etcdserverpb.Compare): `key`'s `target` against a
/// value. A missing key has version, create and mod revision 0.
public struct EtcdCompare: Sendable, Equatable {
    /// What is compared, with the value compared against.
    public enum Target: Sendable, Equatable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }
    /// The relation (etcd's CompareResult).
    public enum Relation: String, Sendable {
        case equal = "EQUAL", greater = "GREATER", less = "LESS", notEqual = "NOT_EQUAL"
    }
    /// The key compared.
    public var key: String
    /// How the key's target relates to the value.
    public var relation: Relation
    /// What is compared, with the value.
    public var target: Target

    /// `key`'s `target` in `relation` to the value it carries (etcd's Compare).
    public init(_ key: String, _ relation: Relation, _ target: Target) {
        self.key = key; self.relation = relation; self.target = target
    }

    /// The key does not exist (create revision 0).
    public static func absent(_ key: String) -> EtcdCompare { EtcdCompare(key, .equal, .createRevision(0)) }
    /// The key exists.
    public static func present(_ key: String) -> EtcdCompare { EtcdCompare(key, .greater, .createRevision(0)) }
    /// The key was last modified at `revision` (0: it does not exist).
    public static func unchanged(_ key: String, since revision: Int64) -> EtcdCompare { EtcdCompare(key, .equal, .modRevision(revision)) }
}

/// One operation of a transaction.
public enum EtcdOperation: Sendable, Equatable {
    /// Put `value` at `key`, attached to `lease` (0: none).
    case put(key: String, value: [UInt8], lease: Int64)
    /// Read `key`, or every key starting with it when `prefix`.
    case range(key: String, prefix: Bool)
    /// Delete `key`, or every key starting with it when `prefix`.
    case delete(key: String, prefix: Bool)
}

/// What one operation of a transaction returned.
public enum EtcdOperationResult: Sendable, Equatable {
    case put
    case range([KeyValue])
    /// Number of keys deleted.
    case delete(Int64)
}

/// A transaction's outcome: whether the comparisons held (success ops ran) or not (failure
/// ops ran), the store revision after it, and the results of the ops that ran.
public struct EtcdTxnResult: Sendable, Equatable {
    /// Whether every comparison held (the success operations ran).
    public var succeeded: Bool
    /// The store revision after the transaction.
    public var revision: Int64
    /// One result per operation that ran, in order.
    public var results: [EtcdOperationResult]
}

/// A range read: the pairs and the store revision it was read at.
public struct EtcdRange: Sendable, Equatable {
    /// The pairs, in key order.
    public var kvs: [KeyValue]
    /// The store revision the read saw.
    public var revision: Int64
}

/// A granted lease: its ID and the TTL etcd granted (seconds; etcd raises a TTL below its
/// minimum, 1.5 × election timeout, to that minimum).
public struct EtcdLease: Sendable, Equatable {
    /// The lease ID.
    public var id: Int64
    /// Seconds granted.
    public var ttl: Int64
}

/// One change seen by a watch (mvccpb.Event).
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable { case put, delete }
    /// A put or a delete.
    public var kind: Kind
    /// The pair after the change (for a delete: the key and its mod revision only).
    public var kv: KeyValue
}

/// The smallest key greater than every key that starts with `prefix` (etcd's range_end for
/// a prefix read): the prefix with its last byte incremented (dropping trailing 0xff).
func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
    var end = prefix
    while let last = end.last {
        if last < 0xff { end[end.count - 1] = last + 1; return end }
        end.removeLast()
    }
    return [0]   // every key
}
