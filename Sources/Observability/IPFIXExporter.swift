#if canImport(Glibc)
import Glibc
#endif

/// A UDP address of a collector or a listener: `HOST:PORT`, `[IPv6]:PORT`.
public struct SocketEndpoint: Equatable, Sendable, CustomStringConvertible {
    /// A host name or a numeric IPv4/IPv6 address (without brackets).
    public var host: String
    /// 1…65535.
    public var port: UInt16

    /// Errors of `SocketEndpoint.parse` and `resolve`.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    public init(host: String, port: UInt16) { self.host = host; self.port = port }

    /// Parses `HOST:PORT` or `[V6ADDR]:PORT` (port 1…65535).
    /// - Throws: `Invalid` naming what is wrong.
    public static func parse(_ text: String) throws -> SocketEndpoint {
        var host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw Invalid(description: "bad address '\(text)': expected [IPV6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon else {
                throw Invalid(description: "bad address '\(text)': expected HOST:PORT (IPv6 as [ADDR]:PORT)")
            }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw Invalid(description: "bad address '\(text)': no host") }
        guard let p = UInt16(port), p > 0 else { throw Invalid(description: "bad address '\(text)': port must be 1…65535") }
        return SocketEndpoint(host: String(host), port: p)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Resolves to a socket address (getaddrinfo; numeric addresses do not touch DNS).
    /// - Throws: `Invalid` when the name does not resolve.
    func resolve(socketType: Int32) throws -> (family: Int32, address: sockaddr_storage, length: socklen_t) {
        var hints = addrinfo()
        hints.ai_socktype = socketType
        hints.ai_flags = AI_ADDRCONFIG
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw Invalid(description: "cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        let len = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(len)))
        }
        return (first.pointee.ai_family, storage, len)
    }
}

/// Sends IPFIX messages to one collector over UDP (RFC 7011 §10.3).
///
/// Failures are counted, never fatal: the socket is `connect`ed, so an ICMP port
/// unreachable from the collector's host comes back as ECONNREFUSED on a later send
/// (counted in `connectionRefused`), and a send that would block (socket buffer full) drops
/// the message (counted in `sendFailures`). Templates and options (interface names,
/// sampling) are announced with the first export and again every `templateRefresh`
/// milliseconds (§8.4: over UDP a collector learns them only by repetition).
///
/// Threads: one owner, the control thread that expires flow tables on its tick; it calls
/// `export` outside the datapath lock. Sends are non-blocking (MSG_DONTWAIT).
public final class IPFIXExporter {
    /// Counters of an exporter (exported as metrics too).
    public struct Counters: Equatable, Sendable {
        /// Messages the kernel accepted.
        public var messagesSent: UInt64 = 0
        /// Flow data records in those messages.
        public var recordsSent: UInt64 = 0
        /// Messages not sent, for any reason (including `connectionRefused`).
        public var sendFailures: UInt64 = 0
        /// Of those, sends that reported ECONNREFUSED (the collector's port was closed).
        public var connectionRefused: UInt64 = 0
        /// Flow records lost with the failed messages.
        public var recordsLost: UInt64 = 0
        /// errno of the last failure (0: none yet).
        public var lastErrno: Int32 = 0
    }

    /// Where messages go.
    public let collector: SocketEndpoint
    /// Milliseconds between template announcements.
    public let templateRefresh: UInt64
    /// What was sent and what failed so far.
    public private(set) var counters = Counters()
    private var encoder: IPFIXEncoder
    private var fd: Int32
    private var lastAnnouncement: UInt64?

    /// Opens a UDP socket connected to `collector`.
    /// - Parameters:
    ///   - collector: `HOST:PORT` of the collector (resolved once, here).
    ///   - observationDomain: the Observation Domain ID (`flow-export.observation-domain`).
    ///   - templateRefresh: milliseconds between template announcements (default 60 000).
    /// - Throws: `SocketEndpoint.Invalid` for an unresolvable collector; a `SocketEndpoint.Invalid`
    ///   naming the errno when the socket cannot be created or connected.
    public init(collector: SocketEndpoint, observationDomain: UInt32, templateRefresh: UInt64 = 60_000, maxMessageSize: Int = 1400) throws {
        self.collector = collector
        self.templateRefresh = templateRefresh
        encoder = IPFIXEncoder(observationDomain: observationDomain, maxMessageSize: maxMessageSize)
        var (family, address, length) = try collector.resolve(socketType: Int32(SOCK_DGRAM.rawValue))
        fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketEndpoint.Invalid(description: "socket for \(collector): \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        guard rc == 0 else {
            let e = errno; _ = Glibc.close(fd); fd = -1
            throw SocketEndpoint.Invalid(description: "connect to collector \(collector): \(String(cString: strerror(e)))")
        }
    }

    deinit { close() }

    /// Closes the socket. Idempotent; later exports count as failures.
    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    /// Sends `records`, preceded by the template announcement when it is due.
    /// - Parameters:
    ///   - interfaces: the current interface ID → port name mapping (options record).
    ///   - samplingInterval: N of 1-in-N sampling (options record).
    ///   - now: Unix epoch milliseconds (export time in headers is its seconds).
    public func export(_ records: [FlowRecord], interfaces: [(id: UInt32, name: String)], samplingInterval: UInt32, now: UInt64) {
        let exportTime = UInt32(truncatingIfNeeded: now / 1000)
        if lastAnnouncement.map({ now < $0 || now - $0 >= templateRefresh }) ?? true {
            for m in encoder.announcement(interfaces: interfaces, samplingInterval: samplingInterval, exportTime: exportTime) {
                _ = send(m, records: 0)
            }
            lastAnnouncement = now
        }
        guard !records.isEmpty else { return }
        let messages = encoder.messages(for: records, exportTime: exportTime)
        // Records per message, for the counters: parse each message's set lengths back.
        for m in messages { _ = send(m, records: IPFIXExporter.dataRecordCount(m)) }
    }

    /// Forces the next `export` to announce templates again (e.g. after a reload renamed ports).
    public func announceAgain() { lastAnnouncement = nil }

    private func send(_ message: [UInt8], records: Int) -> Bool {
        guard fd >= 0 else {
            counters.sendFailures += 1; counters.recordsLost += UInt64(records); counters.lastErrno = EBADF
            return false
        }
        while true {
            let n = message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == message.count {
                counters.messagesSent += 1
                counters.recordsSent += UInt64(records)
                return true
            }
            let e = n < 0 ? errno : EMSGSIZE
            if e == EINTR { continue }
            counters.sendFailures += 1
            counters.recordsLost += UInt64(records)
            counters.lastErrno = e
            if e == ECONNREFUSED { counters.connectionRefused += 1 }
            return false
        }
    }

    /// Flow data records (sets with ID ≥ 256 other than options) in an encoded message.
    static func dataRecordCount(_ m: [UInt8]) -> Int {
        var total = 0
        var off = 16
        while off + 4 <= m.count {
            let id = UInt16(m[off]) << 8 | UInt16(m[off + 1])
            let len = Int(UInt16(m[off + 2]) << 8 | UInt16(m[off + 3]))
            guard len >= 4, off + len <= m.count else { break }
            if let t = IPFIX.dataTemplates.first(where: { $0.id == id }) { total += (len - 4) / t.recordLength }
            off += len
        }
        return total
    }
}
