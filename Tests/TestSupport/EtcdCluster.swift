import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Real etcd members for tests (Debian's `etcd-server`, 3.4): one member or a cluster,
/// started on loopback (or on an address inside a test's own network namespace) with free
/// ports and a temporary data directory, plain or with TLS client-certificate auth.
/// Raft timing is tuned for a loaded 2-core machine: heartbeat 100 ms, election 1200 ms
/// (etcd's minimum lease TTL is then 1.8 s, below the fabric's 3 s).
///
/// Only the processes it started are signalled (by pid), and `shutdown()` (also run by
/// deinit) kills them and removes the directory, also after a failed test.
///
///     let etcd = try EtcdCluster(tag: "fs1", members: 3)
///     defer { etcd.shutdown() }
///     etcd.kill(member: 0); try etcd.restart(member: 0)
public final class EtcdCluster: @unchecked Sendable {
    /// One member: its name, URLs, data directory, log, and its process while running.
    public struct Member: Sendable {
        public var name: String
        public var clientURL: String
        public var peerURL: String
        public var dataDir: String
        public var log: String
        public var pid: pid_t?
    }

    /// PEM files made by `makeCertificates`.
    public struct Certificates: Sendable {
        public var ca: String
        public var serverCert: String
        public var serverKey: String
        public var clientCert: String
        public var clientKey: String
        /// A client certificate signed by a different CA (etcd must refuse it).
        public var strangerCert: String
        public var strangerKey: String
        /// The stranger CA (a client that trusts only it must refuse etcd's certificate).
        public var strangerCA: String
    }

    /// Whether the etcd binary is installed (Scripts/setup.sh installs etcd-server).
    public static var isAvailable: Bool { executable != nil }
    static var executable: String? {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public private(set) var members: [Member]
    public let directory: String
    public let certificates: Certificates?
    let address: String
    let namespace: String?
    let token: String
    private var isShutDown = false

    /// Client URLs of every member, in member order.
    public var endpoints: [String] { members.map(\.clientURL) }

    /// Starts `members` members and waits (up to `readyTimeout` seconds) until each serves
    /// clients with a leader elected. `tag` prefixes the directory and cluster token.
    /// - address: where members listen (default loopback); with `namespace`, an address in
    ///   that network namespace, and the members run inside it (`ip netns exec`).
    /// - tls: serve clients over https with `--client-cert-auth` and certificates made here
    ///   for `address`.
    public init(tag: String, members count: Int = 1, address: String = "127.0.0.1", namespace: String? = nil,
                tls: Bool = false, readyTimeout: Double = 30) throws {
        guard let _ = EtcdCluster.executable else { throw HarnessError("etcd is not installed (apt-get install etcd-server)") }
        directory = NSTemporaryDirectory() + "tapestry-etcd-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.address = address
        self.namespace = namespace
        token = "\(tag)-\(UInt32.random(in: 0...UInt32.max))"
        certificates = tls ? try EtcdCluster.makeCertificates(in: directory + "/pki", serverAddress: address) : nil
        members = []
        let scheme = tls ? "https" : "http"
        let host = address.contains(":") ? "[\(address)]" : address
        // Free ports: bind port 0, read the port, close (another process may take it before
        // etcd does; a member that fails to start is retried with new ports below).
        for i in 0..<count {
            let (c, p) = (try EtcdCluster.freePort(namespace: namespace, address: address),
                          try EtcdCluster.freePort(namespace: namespace, address: address))
            members.append(Member(name: "m\(i)", clientURL: "\(scheme)://\(host):\(c)", peerURL: "http://\(host):\(p)",
                                  dataDir: directory + "/m\(i).data", log: directory + "/m\(i).log", pid: nil))
        }
        do {
            for i in 0..<count { try spawn(member: i, initial: true) }
            try waitReady(Array(0..<count), timeout: readyTimeout)
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// Kills every member (SIGKILL, by pid), reaps them and removes the directory. Idempotent.
    public func shutdown() {
        if isShutDown { return }
        isShutDown = true
        for i in members.indices { kill(member: i) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// SIGKILLs member `i` (if running) and reaps it.
    public func kill(member i: Int) {
        guard let pid = members[i].pid else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        members[i].pid = nil
    }

    /// Starts member `i` again on its data directory and waits until it serves.
    public func restart(member i: Int, readyTimeout: Double = 30) throws {
        guard members[i].pid == nil else { return }
        try spawn(member: i, initial: false)
        try waitReady([i], timeout: readyTimeout)
    }

    /// Starts several stopped members at once (a quorum needs them together) and waits.
    public func restart(members list: [Int], readyTimeout: Double = 30) throws {
        for i in list where members[i].pid == nil { try spawn(member: i, initial: false) }
        try waitReady(list, timeout: readyTimeout)
    }

    /// Whether member `i`'s process is alive.
    public func isRunning(member i: Int) -> Bool {
        guard let pid = members[i].pid else { return false }
        return Glibc.kill(pid, 0) == 0 && waitpid(pid, nil, WNOHANG) == 0
    }

    /// The last `lines` lines of member `i`'s log, for failure messages.
    public func logTail(member i: Int, lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: members[i].log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    private func spawn(member i: Int, initial: Bool) throws {
        let m = members[i]
        let cluster = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        var args = [EtcdCluster.executable!,
                    "--name", m.name, "--data-dir", m.dataDir,
                    "--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
                    "--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
                    "--initial-cluster", cluster, "--initial-cluster-token", token,
                    "--initial-cluster-state", "new",
                    "--heartbeat-interval", "100", "--election-timeout", "1200",
                    "--logger", "zap", "--log-outputs", "stderr"]
        if let c = certificates {
            args += ["--cert-file", c.serverCert, "--key-file", c.serverKey, "--trusted-ca-file", c.ca, "--client-cert-auth"]
        }
        if let ns = namespace { args = ["/usr/sbin/ip", "netns", "exec", ns] + args }
        // A restart appends to the same log; readiness is judged from what it writes after.
        let offset = (try? FileManager.default.attributesOfItem(atPath: m.log)[.size] as? Int) ?? 0
        members[i].pid = try spawnBackground(args, log: m.log)
        readyFrom[i] = offset
    }

    private var readyFrom: [Int: Int] = [:]

    private func waitReady(_ list: [Int], timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var pending = Set(list)
        while !pending.isEmpty {
            for i in pending {
                guard isRunning(member: i) else {
                    throw HarnessError("etcd member \(i) exited:\n\(logTail(member: i))")
                }
                let data = FileManager.default.contents(atPath: members[i].log) ?? Data()
                let text = String(decoding: data.dropFirst(readyFrom[i] ?? 0), as: UTF8.self)
                // Printed once the member has published itself through raft (a leader exists)
                // and opened its client listener.
                if text.contains("serving client traffic") && text.contains("published local member to cluster") {
                    pending.remove(i)
                }
            }
            if pending.isEmpty { break }
            if Date() > deadline {
                throw HarnessError("etcd members \(pending.sorted()) not ready after \(timeout) s:\n" + pending.map { logTail(member: $0) }.joined(separator: "\n---\n"))
            }
            usleep(50_000)
        }
    }

    /// A TCP port nobody listens on now (bound to port 0 and released), on `address`, inside
    /// `namespace` when given.
    public static func freePort(namespace: String?, address: String) throws -> Int {
        if let ns = namespace {
            // Ask inside the namespace: python binds port 0 there and prints the port.
            let family = address.contains(":") ? "AF_INET6" : "AF_INET"
            let r = sh("ip netns exec \(ns) python3 -c 'import socket; s=socket.socket(socket.\(family)); s.bind((\"\(address)\", 0)); print(s.getsockname()[1])'")
            guard r.succeeded, let p = Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw HarnessError("no free port in \(ns): \(r.stderr)")
            }
            return p
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = 0
        inet_pton(AF_INET, address, &a.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw HarnessError("cannot bind \(address):0") }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// Makes a CA, a server certificate for `serverAddress` (IP SAN, plus 127.0.0.1 and
    /// localhost), a client certificate, and a stranger CA with its own client certificate,
    /// all EC P-256, with `openssl req` / `openssl x509`.
    public static func makeCertificates(in dir: String, serverAddress: String = "127.0.0.1") throws -> Certificates {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ecParams = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        let san = serverAddress == "127.0.0.1" ? "IP:127.0.0.1,DNS:localhost" : "IP:\(serverAddress),IP:127.0.0.1,DNS:localhost"
        let script = """
        set -e
        cd '\(dir)'
        for ca in ca stranger-ca; do
          openssl req -x509 \(ecParams) -keyout $ca.key -out $ca.pem -days 2 -subj "/CN=tapestry test $ca" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        done
        printf 'subjectAltName=\(san)\\nextendedKeyUsage=serverAuth,clientAuth\\nkeyUsage=critical,digitalSignature,keyEncipherment\\n' > server.ext
        printf 'extendedKeyUsage=clientAuth\\nkeyUsage=critical,digitalSignature,keyEncipherment\\n' > client.ext
        openssl req \(ecParams) -keyout server.key -out server.csr -subj "/CN=etcd" 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
        openssl req \(ecParams) -keyout client.key -out client.csr -subj "/CN=tapestry" 2>/dev/null
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
        openssl req \(ecParams) -keyout stranger.key -out stranger.csr -subj "/CN=stranger" 2>/dev/null
        openssl x509 -req -in stranger.csr -CA stranger-ca.pem -CAkey stranger-ca.key -CAcreateserial -days 2 -extfile client.ext -out stranger.pem 2>/dev/null
        """
        let r = sh(script)
        guard r.succeeded else { throw HarnessError("openssl failed: \(r.stderr)") }
        return Certificates(ca: dir + "/ca.pem", serverCert: dir + "/server.pem", serverKey: dir + "/server.key",
                            clientCert: dir + "/client.pem", clientKey: dir + "/client.key",
                            strangerCert: dir + "/stranger.pem", strangerKey: dir + "/stranger.key",
                            strangerCA: dir + "/stranger-ca.pem")
    }
}

/// A test harness failure (a tool missing, a process that did not start), with the reason.
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// posix_spawns `argv` (argv[0] an absolute path) in its own process group with stdin from
/// /dev/null and stdout and stderr appended to `log`, and returns its pid without waiting.
/// The caller kills it by that pid and reaps it with waitpid.
public func spawnBackground(_ argv: [String], log: String) throws -> pid_t {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
    posix_spawn_file_actions_adddup2(&fa, 1, 2)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t(); sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    var defaults = sigset_t(); sigemptyset(&defaults); sigaddset(&defaults, SIGPIPE)
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setpgroup(&attr, 0)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for a in args { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &fa, &attr, &args, environ)
    guard rc == 0 else { throw HarnessError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
    return pid
}
