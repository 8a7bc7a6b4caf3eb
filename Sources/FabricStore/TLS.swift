import CFabric
import Foundation

/// Where the PEM files of a TLS client configuration are: the topology's
/// `etcd: {tls: {ca, cert, key}}`. `ca` verifies the servers; `cert` and `key` (both or
/// neither) are the client certificate etcd checks with `--client-cert-auth`.
public struct TLSFiles: Sendable, Equatable {
    /// PEM bundle of the certificate authorities trusted for the servers.
    public var ca: String
    /// PEM client certificate (chain), or nil for no client certificate.
    public var cert: String?
    /// PEM private key of `cert` (unencrypted), or nil.
    public var key: String?

    /// The three paths as in the topology file.
    public init(ca: String, cert: String? = nil, key: String? = nil) {
        self.ca = ca; self.cert = cert; self.key = key
    }
}

/// An OpenSSL client context (`SSL_CTX`) loaded from `TLSFiles`: the CA bundle, the client
/// certificate and its key, checked against each other when created. One owner; freed in
/// deinit. Connections made from it verify the server's certificate against the endpoint's
/// host (IP SAN for an address, DNS name otherwise) and require TLS 1.2 or newer.
///
/// Why OpenSSL through a C shim, not swift-nio-ssl: the client is a handful of small
/// request/response calls on background threads, OpenSSL is already on every Debian machine
/// (libssl-dev to build), and swift-nio-ssl would add 2.5–4.5 minutes of CI build (it
/// compiles BoringSSL) plus an event loop this thread-based runtime does not use.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The files it was loaded from.
    public let files: TLSFiles

    /// Loads and checks the files. Throws `EtcdError.tls` naming the file and OpenSSL's reason
    /// (missing file, not PEM, key not matching the certificate, only one of cert/key given).
    public init(_ files: TLSFiles) throws {
        if (files.cert == nil) != (files.key == nil) {
            throw EtcdError.tls("etcd tls: cert and key must be given together")
        }
        for path in [files.ca, files.cert, files.key].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: path) {
            throw EtcdError.tls("etcd tls: cannot read \(path)")
        }
        var err = [CChar](repeating: 0, count: 512)
        guard let ctx = cf_tls_ctx_new(files.ca, files.cert, files.key, &err, err.count) else {
            throw EtcdError.tls(String(cString: err))
        }
        pointer = ctx
        self.files = files
    }

    deinit { cf_tls_ctx_free(pointer) }
}
