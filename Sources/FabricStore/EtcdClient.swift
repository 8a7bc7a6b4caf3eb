import Foundation

/// One etcd member's client URL, parsed: `http://HOST:PORT` or `https://HOST:PORT` (IPv6 in
/// brackets; port default 2379).
public struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// https (TLS) or http.
    public var secure: Bool
    /// Host name or address literal (IPv6 without brackets).
    public var host: String
    /// TCP port.
    public var port: UInt16
    /// "host:port" for the Host header (IPv6 in brackets).
    public var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    public var description: String { (secure ? "https://" : "http://") + authority }

    /// Parses a URL. Throws `EtcdError.invalidEndpoint` for another scheme, a path, user
    /// info, or a bad port.
    public init(_ url: String) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased() else {
            throw EtcdError.invalidEndpoint(url, reason: "not a URL (expected http://HOST:PORT or https://HOST:PORT)")
        }
        guard scheme == "http" || scheme == "https" else {
            throw EtcdError.invalidEndpoint(url, reason: "scheme must be http or https")
        }
        guard var host = c.host, !host.isEmpty else { throw EtcdError.invalidEndpoint(url, reason: "no host") }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard c.path.isEmpty || c.path == "/" else { throw EtcdError.invalidEndpoint(url, reason: "a path is not allowed") }
        guard c.user == nil, c.query == nil else { throw EtcdError.invalidEndpoint(url, reason: "user info and queries are not allowed") }
        let port = c.port ?? 2379
        guard (1...65535).contains(port) else { throw EtcdError.invalidEndpoint(url, reason: "port out of range") }
        secure = scheme == "https"; self.host = host; self.port = UInt16(port)
    }
}

/// How to reach etcd: the topology's `etcd: {endpoints, tls}` plus deadlines.
public struct EtcdConfiguration: Sendable {
    /// Client URLs of the cluster's members, tried in turn.
    public var endpoints: [String]
    /// Client-certificate TLS for `https` endpoints.
    public var tls: TLSFiles?
    /// Seconds one attempt at one endpoint may take (connect, TLS, request, response).
    public var attemptTimeout: Double
    /// Seconds a whole call may take, across endpoints and retries, unless the call names
    /// its own.
    public var requestTimeout: Double
    /// Largest response body accepted, in bytes.
    public var maxResponseBytes: Int
    /// A network namespace file (/run/netns/NAME) whose stack reaches etcd, or nil for the
    /// process's own (a host with `netns:` whose daemon runs outside it).
    public var namespace: String?

    /// The endpoints and TLS files of the topology's `etcd:`, with deadlines in seconds and the response limit in bytes.
    public init(endpoints: [String], tls: TLSFiles? = nil, attemptTimeout: Double = 1.0, requestTimeout: Double = 2.5,
                maxResponseBytes: Int = 8 << 20, namespace: String? = nil) {
        self.endpoints = endpoints; self.tls = tls; self.attemptTimeout = attemptTimeout
        self.requestTimeout = requestTimeout; self.maxResponseBytes = maxResponseBytes; self.namespace = namespace
    }
}

/// A small etcd v3 client over the JSON gateway (etcd 3.4: `/v3/kv/range`, `/v3/kv/put`,
/// `/v3/kv/deleterange`, `/v3/kv/txn`, `/v3/lease/grant|keepalive|revoke|timetolive`,
/// `/v3/watch`; keys and values base64, 64-bit integers as JSON strings; see etcd's
/// Documentation/dev-guide/api_grpc_gateway.md and rpc.proto).
///
/// ## Failover and deadlines
/// Each call has a deadline (`requestTimeout`, or its own). Endpoints are tried in turn,
/// starting with the one that last answered; each attempt is bounded by `attemptTimeout`.
/// An attempt that fails in transport (refused, reset, timed out, TLS), or that etcd answers
/// with "unavailable" (gRPC 14, e.g. no leader) or a deadline error (gRPC 4), moves on to
/// the next endpoint; when all failed and time is left, the round is repeated after 100 ms
/// (a leader election takes about an election timeout). Any other etcd error is thrown at
/// once. So a call returns or throws by its deadline, whatever the cluster does (name
/// resolution aside: endpoints should be addresses).
///
/// A retried write may have been applied by the attempt that timed out: puts are
/// idempotent here, and every compare-and-swap of this module checks by reading back
/// (see `FabricStore`).
///
/// ## Connections
/// One connection per call (`Connection: close`): with one keep-alive per second and one
/// poll per half second this is a few connections a second, and a failed member never
/// leaves a stale pooled connection behind. Thread-safe: calls may run concurrently.
public final class EtcdClient: @unchecked Sendable {
    /// The configuration it was made with.
    public let configuration: EtcdConfiguration
    /// The parsed endpoints, in the order given.
    public let endpoints: [EtcdEndpoint]
    let tls: TLSContext?
    private let lock = NSLock()
    private var preferred = 0   // guarded by lock

    /// Parses the endpoints and loads the TLS files. Throws `noEndpoints`,
    /// `invalidEndpoint`, or `tls` (an https endpoint without `tls`, `tls` with an http
    /// endpoint, unreadable files).
    public init(_ configuration: EtcdConfiguration) throws {
        guard !configuration.endpoints.isEmpty else { throw EtcdError.noEndpoints }
        let eps = try configuration.endpoints.map(EtcdEndpoint.init)
        if let files = configuration.tls {
            if let plain = eps.first(where: { !$0.secure }) {
                throw EtcdError.tls("etcd tls is set but endpoint \(plain) is http (use https://)")
            }
            tls = try TLSContext(files)
        } else {
            if let secure = eps.first(where: { $0.secure }) {
                throw EtcdError.tls("etcd endpoint \(secure) is https but etcd.tls (ca, cert, key) is not set")
            }
            tls = nil
        }
        guard configuration.attemptTimeout > 0, configuration.requestTimeout > 0 else {
            throw EtcdError.invalidEndpoint(configuration.endpoints[0], reason: "timeouts must be positive")
        }
        self.configuration = configuration
        self.endpoints = eps
    }

    // MARK: KV

    /// Puts `value` at `key` (attached to `lease` unless 0). Returns the store revision after it.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0, timeout: Double? = nil) throws -> Int64 {
        var body: [String: Any] = ["key": b64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { body["lease"] = String(lease) }
        let r = try call("/v3/kv/put", body, timeout: timeout)
        return revision(of: r)
    }

    /// The pair at `key`, or nil.
    public func get(_ key: String, timeout: Double? = nil) throws -> KeyValue? {
        try range(["key": b64(key)], timeout: timeout).kvs.first
    }

    /// Every pair whose key starts with `prefix`, in key order, and the revision read at.
    public func range(prefix: String, timeout: Double? = nil) throws -> EtcdRange {
        try range(["key": b64(prefix), "range_end": Data(prefixEnd(Array(prefix.utf8))).base64EncodedString()], timeout: timeout)
    }

    private func range(_ body: [String: Any], timeout: Double?) throws -> EtcdRange {
        let r = try call("/v3/kv/range", body, timeout: timeout)
        return EtcdRange(kvs: try kvs(of: r), revision: revision(of: r))
    }

    /// Deletes `key` (or every key under the prefix). Returns how many were deleted.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false, timeout: Double? = nil) throws -> Int64 {
        var body: [String: Any] = ["key": b64(key)]
        if prefix { body["range_end"] = Data(prefixEnd(Array(key.utf8))).base64EncodedString() }
        let r = try call("/v3/kv/deleterange", body, timeout: timeout)
        return int64(r["deleted"])
    }

    /// An atomic transaction: when every comparison holds, `success` runs, else `failure`.
    public func txn(_ compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = [], timeout: Double? = nil) throws -> EtcdTxnResult {
        let body: [String: Any] = [
            "compare": compares.map(json(of:)),
            "success": success.map(json(of:)),
            "failure": failure.map(json(of:)),
        ]
        let r = try call("/v3/kv/txn", body, timeout: timeout)
        let succeeded = (r["succeeded"] as? Bool) ?? false
        let ran = succeeded ? success : failure
        let responses = r["responses"] as? [[String: Any]] ?? []
        guard responses.count == ran.count else {
            throw EtcdError.malformedResponse("txn returned \(responses.count) results for \(ran.count) operations")
        }
        var results: [EtcdOperationResult] = []
        for (op, resp) in zip(ran, responses) {
            switch op {
            case .put: results.append(.put)
            case .range: results.append(.range(try kvs(of: resp["response_range"] as? [String: Any] ?? [:])))
            case .delete: results.append(.delete(int64((resp["response_delete_range"] as? [String: Any])?["deleted"])))
            }
        }
        return EtcdTxnResult(succeeded: succeeded, revision: revision(of: r), results: results)
    }

    // MARK: Leases

    /// Grants a lease of `ttl` seconds. Returns its ID and the TTL granted.
    public func grantLease(ttl: Int64, timeout: Double? = nil) throws -> EtcdLease {
        let r = try call("/v3/lease/grant", ["TTL": String(ttl), "ID": "0"], timeout: timeout)
        if let e = r["error"] as? String, !e.isEmpty { throw EtcdError.server(code: 0, message: e) }
        let id = int64(r["ID"])
        guard id != 0 else { throw EtcdError.malformedResponse("lease grant without an ID") }
        return EtcdLease(id: id, ttl: int64(r["TTL"]))
    }

    /// Renews lease `id` once (one LeaseKeepAlive exchange). Returns the TTL it now has in
    /// seconds, or 0 when the lease has expired or never existed.
    public func keepAlive(_ id: Int64, timeout: Double? = nil) throws -> Int64 {
        let r = try call("/v3/lease/keepalive", ["ID": String(id)], timeout: timeout)
        // A streaming method: the gateway wraps the one message in {"result": …}.
        let result = r["result"] as? [String: Any] ?? r
        return max(0, int64(result["TTL"]))
    }

    /// Revokes lease `id`, deleting every key attached to it. A lease that is already gone
    /// is not an error.
    public func revoke(_ id: Int64, timeout: Double? = nil) throws {
        do { _ = try call("/v3/lease/revoke", ["ID": String(id)], timeout: timeout) }
        catch EtcdError.server(let code, _) where code == 5 { }   // NotFound: already expired
    }

    /// Seconds lease `id` has left, or -1 when it does not exist (expired or revoked).
    public func timeToLive(_ id: Int64, timeout: Double? = nil) throws -> Int64 {
        let r = try call("/v3/lease/timetolive", ["ID": String(id)], timeout: timeout)
        return r["TTL"] == nil ? 0 : int64(r["TTL"])
    }

    // MARK: Watch

    /// Watches every key under `prefix` from `startRevision` (0: from now) until `deadline`
    /// or until `handler` returns false, handing it each batch of events with the store
    /// revision of the batch. Returns normally at the deadline or when the handler stops;
    /// throws `unavailable` when no endpoint accepts the watch or the stream breaks, and
    /// `server` for a compacted start revision (then read again and watch from the revision
    /// read). One endpoint serves the whole watch; the caller watches again after an error.
    public func watch(prefix: String, startRevision: Int64 = 0, until deadline: Deadline,
                      _ handler: (_ events: [EtcdEvent], _ revision: Int64) -> Bool) throws {
        var create: [String: Any] = ["key": b64(prefix), "range_end": Data(prefixEnd(Array(prefix.utf8))).base64EncodedString()]
        if startRevision > 0 { create["start_revision"] = String(startRevision) }
        let body = try JSONSerialization.data(withJSONObject: ["create_request": create])
        var failures: [String] = []
        for endpoint in orderedEndpoints() {
            let connectBy = Deadline.after(configuration.attemptTimeout).capped(at: deadline)
            let connection: StreamConnection
            do {
                connection = try StreamConnection.open(host: endpoint.host, port: endpoint.port, tls: tls,
                                                       namespace: configuration.namespace, deadline: connectBy)
                try HTTP1.sendPOST(connection, authority: endpoint.authority, path: "/v3/watch", body: Array(body), deadline: connectBy)
            } catch let e as TransportError {
                failures.append("\(endpoint): \(e.description)")
                continue
            }
            defer { connection.close() }
            var pending: [UInt8] = []
            var stopped = false
            var streamError: Error?
            do {
                try HTTP1.readResponse(connection, deadline: deadline, maxBody: Int.max, onHead: { head in
                    if head.status != 200 { throw TransportError("watch: HTTP \(head.status)") }
                }, onBody: { bytes in
                    pending.append(contentsOf: bytes)
                    if pending.count > configuration.maxResponseBytes { throw TransportError("watch message over \(configuration.maxResponseBytes) bytes") }
                    // The gateway writes one JSON object per message, each followed by "\n".
                    while let nl = pending.firstIndex(of: 10) {
                        let line = Array(pending[..<nl])
                        pending.removeFirst(nl + 1)
                        if line.allSatisfy({ $0 == 32 || $0 == 13 }) { continue }
                        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                            throw EtcdError.malformedResponse("watch message is not JSON")
                        }
                        if let err = obj["error"] as? [String: Any] {
                            throw EtcdError.server(code: Int(int64(err["http_code"] ?? err["grpc_code"])), message: err["message"] as? String ?? "watch error")
                        }
                        let result = obj["result"] as? [String: Any] ?? [:]
                        if result["compact_revision"] != nil, int64(result["compact_revision"]) > 0 {
                            throw EtcdError.server(code: 11, message: "watch start revision \(startRevision) compacted (compact revision \(int64(result["compact_revision"])))")
                        }
                        let events = try (result["events"] as? [[String: Any]] ?? []).map { e -> EtcdEvent in
                            let kind: EtcdEvent.Kind = (e["type"] as? String) == "DELETE" ? .delete : .put
                            return EtcdEvent(kind: kind, kv: try keyValue(e["kv"] as? [String: Any] ?? [:]))
                        }
                        let rev = revision(of: result)
                        if !events.isEmpty || result["created"] as? Bool == true {
                            if !handler(events, rev) { stopped = true; return false }
                        }
                    }
                    return true
                })
            } catch let e as TransportError {
                if deadline.hasPassed { return }   // the deadline ends a watch normally
                streamError = EtcdError.unavailable(failures + ["\(endpoint): \(e.description)"])
            } catch {
                streamError = error
            }
            if stopped { return }
            if let streamError { throw streamError }
            return
        }
        throw EtcdError.unavailable(failures)
    }

    // MARK: Transport

    private func orderedEndpoints() -> [EtcdEndpoint] {
        lock.lock(); let first = preferred; lock.unlock()
        return (0..<endpoints.count).map { endpoints[(first + $0) % endpoints.count] }
    }

    private func markPreferred(_ endpoint: EtcdEndpoint) {
        guard let i = endpoints.firstIndex(of: endpoint) else { return }
        lock.lock(); preferred = i; lock.unlock()
    }

    /// POSTs `body` to `path`, failing over between endpoints until the deadline (see the
    /// type's comment). Returns the decoded JSON object.
    func call(_ path: String, _ body: [String: Any], timeout: Double?) throws -> [String: Any] {
        let deadline = Deadline.after(timeout ?? configuration.requestTimeout)
        let payload = Array(try JSONSerialization.data(withJSONObject: body))
        var failures: [String] = []
        repeat {
            for endpoint in orderedEndpoints() {
                if deadline.hasPassed { break }
                let attemptBy = Deadline.after(configuration.attemptTimeout).capped(at: deadline)
                do {
                    let result = try attempt(endpoint, path: path, payload: payload, deadline: attemptBy)
                    markPreferred(endpoint)
                    return result
                } catch let e as TransportError {
                    failures.append("\(endpoint): \(e.description)")
                } catch EtcdError.server(let code, let message) where code == 14 || code == 4 {
                    failures.append("\(endpoint): \(message)")
                }
            }
            if deadline.remaining > 0.1 { usleep(100_000) } else { break }
        } while !deadline.hasPassed
        // Keep the report short: the last attempt at each endpoint.
        var last: [String: String] = [:]
        var order: [String] = []
        for f in failures {
            let ep = String(f.prefix { $0 != " " }.dropLast())
            if last[ep] == nil { order.append(ep) }
            last[ep] = f
        }
        throw EtcdError.unavailable(order.compactMap { last[$0] })
    }

    private func attempt(_ endpoint: EtcdEndpoint, path: String, payload: [UInt8], deadline: Deadline) throws -> [String: Any] {
        let connection = try StreamConnection.open(host: endpoint.host, port: endpoint.port, tls: tls,
                                                   namespace: configuration.namespace, deadline: deadline)
        defer { connection.close() }
        try HTTP1.sendPOST(connection, authority: endpoint.authority, path: path, body: payload, deadline: deadline)
        var status = 0
        var body: [UInt8] = []
        try HTTP1.readResponse(connection, deadline: deadline, maxBody: configuration.maxResponseBytes,
                               onHead: { status = $0.status },
                               onBody: { body.append(contentsOf: $0); return true })
        let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        if let obj = object, obj["error"] != nil || (status != 200 && obj["code"] != nil) {
            let code = Int(int64(obj["code"]))
            let message = (obj["message"] as? String) ?? (obj["error"] as? String) ?? "HTTP \(status)"
            // A streaming method's error arrives inside "error": {grpc_code, message}.
            if let inner = obj["error"] as? [String: Any] {
                throw EtcdError.server(code: Int(int64(inner["grpc_code"])), message: inner["message"] as? String ?? message)
            }
            throw EtcdError.server(code: code, message: message)
        }
        if status == 503 || status == 502 || status == 504 { throw TransportError("HTTP \(status)") }
        guard status == 200 else {
            throw EtcdError.server(code: 0, message: "HTTP \(status) for \(path): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        guard let obj = object else { throw EtcdError.malformedResponse("\(path): body is not a JSON object") }
        return obj
    }
}

// MARK: JSON helpers (the gateway's encoding of etcdserverpb messages)

func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

/// A 64-bit integer that the gateway writes as a string (or a number); 0 when absent.
func int64(_ any: Any?) -> Int64 {
    if let s = any as? String { return Int64(s) ?? 0 }
    if let n = any as? NSNumber { return n.int64Value }
    return 0
}

func revision(of response: [String: Any]) -> Int64 {
    int64((response["header"] as? [String: Any])?["revision"])
}

func keyValue(_ kv: [String: Any]) throws -> KeyValue {
    guard let k = kv["key"] as? String, let keyData = Data(base64Encoded: k) else {
        throw EtcdError.malformedResponse("key-value without a base64 key")
    }
    var value: [UInt8] = []
    if let v = kv["value"] as? String {
        guard let d = Data(base64Encoded: v) else { throw EtcdError.malformedResponse("value is not base64") }
        value = Array(d)
    }
    return KeyValue(key: String(decoding: keyData, as: UTF8.self), value: value,
                    createRevision: int64(kv["create_revision"]), modRevision: int64(kv["mod_revision"]),
                    version: int64(kv["version"]), lease: int64(kv["lease"]))
}

func kvs(of response: [String: Any]) throws -> [KeyValue] {
    try (response["kvs"] as? [[String: Any]] ?? []).map(keyValue)
}

func json(of c: EtcdCompare) -> [String: Any] {
    var o: [String: Any] = ["key": b64(c.key), "result": c.relation.rawValue]
    switch c.target {
    case .version(let v): o["target"] = "VERSION"; o["version"] = String(v)
    case .createRevision(let v): o["target"] = "CREATE"; o["create_revision"] = String(v)
    case .modRevision(let v): o["target"] = "MOD"; o["mod_revision"] = String(v)
    case .value(let v): o["target"] = "VALUE"; o["value"] = Data(v).base64EncodedString()
    case .lease(let v): o["target"] = "LEASE"; o["lease"] = String(v)
    }
    return o
}

func json(of op: EtcdOperation) -> [String: Any] {
    switch op {
    case .put(let key, let value, let lease):
        var p: [String: Any] = ["key": b64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { p["lease"] = String(lease) }
        return ["request_put": p]
    case .range(let key, let prefix):
        var r: [String: Any] = ["key": b64(key)]
        if prefix { r["range_end"] = Data(prefixEnd(Array(key.utf8))).base64EncodedString() }
        return ["request_range": r]
    case .delete(let key, let prefix):
        var d: [String: Any] = ["key": b64(key)]
        if prefix { d["range_end"] = Data(prefixEnd(Array(key.utf8))).base64EncodedString() }
        return ["request_delete_range": d]
    }
}
