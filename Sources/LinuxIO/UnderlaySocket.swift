import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The sockets of one VXLAN underlay endpoint (issue 17): this host's underlay address and
/// one UDP port, opened in the namespace that holds the address.
///
/// ```
///   receive: UDP sockets bound to ADDRESS:PORT, SO_REUSEPORT, one per datapath worker
///            (the kernel spreads flows over them by 4-tuple); recvmmsg, ≤ 64 per call
///   send:    one raw IP socket (IPPROTO_RAW: we write the IP header), sendmmsg
/// ```
/// Why raw for sending: a UDP socket sends from its bound port, but RFC 7348 §5 wants the
/// UDP source port to follow the inner flow (ECMP entropy), as Linux's vxlan and Open
/// vSwitch do; with the whole header ours we also set DF over IPv4 (§4.3) and compute the
/// IPv6 UDP checksum that Linux's vxlan requires by default. The UDP sockets still receive,
/// so the kernel checks lengths and checksums and demultiplexes by port; over IPv6 they
/// accept a zero UDP checksum (`UDP_NO_CHECK6_RX`).
///
/// Needs CAP_NET_RAW (the raw socket) and CAP_NET_ADMIN (forced buffer sizes). Owns its fds:
/// `close()` is idempotent and `deinit` closes.
public final class UnderlaySocket {
    /// AF_INET or AF_INET6.
    public let family: Int32
    /// Receiving sockets, one per queue.
    public private(set) var receivers: [Int32]
    /// The raw sending socket.
    public private(set) var sender: Int32
    /// For messages: `ADDRESS:PORT` (and the namespace).
    public let label: String

    /// Opens `queues` receiving sockets and the sending socket in the calling thread's
    /// network namespace (wrap in `NetworkNamespace.run(in:)` for another).
    /// - Parameters:
    ///   - address: the local underlay address, 128 bits (IPv4 mapped, see `clu_address`).
    /// - Throws: `SystemError` naming the socket and errno (EADDRNOTAVAIL: the address is
    ///   not on this host; EADDRINUSE: another program, such as a kernel vxlan device, holds
    ///   the port without SO_REUSEPORT).
    public init(ipv6: Bool, address high: UInt64, _ low: UInt64, port: UInt16, queues: Int, label: String) throws {
        precondition(queues >= 1)
        let family = ipv6 ? Int32(AF_INET6) : Int32(AF_INET)
        self.family = family
        self.label = label
        var fds: [Int32] = []
        let a = clu_address(hi: high, lo: low)
        do {
            for q in 0..<queues {
                fds.append(try Syscall.require("open underlay UDP socket \(q)", subject: label) {
                    clu_udp_open(family, a, port, 4 << 20)
                })
            }
            sender = try Syscall.require("open raw underlay socket", subject: label) { clu_raw_open(family, 4 << 20) }
        } catch {
            for fd in fds { _ = Glibc.close(fd) }
            throw error
        }
        receivers = fds
    }

    deinit { close() }

    /// Closes every socket. Idempotent.
    public func close() {
        for fd in receivers where fd >= 0 { _ = Glibc.close(fd) }
        receivers = []
        if sender >= 0 { _ = Glibc.close(sender); sender = -1 }
    }

    /// Receives up to `count` (≤ `UnderlaySocket.batch`) datagrams from queue `queue`:
    /// message i scattered over `iov[2i]`, `iov[2i+1]`; its source into `sources[i]`, its
    /// length into `lengths[i]` (bit 31: truncated). Returns how many arrived (0: none
    /// waiting), or -errno. Per-frame path: no allocation.
    @inline(__always)
    public func receive(queue: Int, _ iov: UnsafeMutablePointer<iovec>, count: Int,
                        sources: UnsafeMutablePointer<clu_address>, lengths: UnsafeMutablePointer<UInt32>) -> Int {
        Int(clu_recv_batch(receivers[queue], iov, UInt32(min(count, UnderlaySocket.batch)), sources, lengths))
    }

    /// Sends `count` (≤ `UnderlaySocket.batch`) whole IP packets: packet i is
    /// `iov[first[i] ..< first[i] + counts[i]]`, routed to `destinations[i]`. Returns how
    /// many were sent, or -errno when the first failed.
    @inline(__always)
    public func send(_ iov: UnsafeMutablePointer<iovec>, first: UnsafePointer<UInt32>, counts: UnsafePointer<UInt32>,
                     destinations: UnsafePointer<clu_address>, count: Int) -> Int {
        Int(clu_send_batch(sender, family, iov, first, counts, destinations, UInt32(min(count, UnderlaySocket.batch))))
    }

    /// Most messages per `receive` or `send` call (`CLU_BATCH`).
    public static let batch = Int(CLU_BATCH)

    /// The MTU of the interface holding `address` in the calling thread's namespace.
    /// - Throws: `SystemError` (EADDRNOTAVAIL: no interface has the address).
    public static func mtu(ipv6: Bool, address high: UInt64, _ low: UInt64, label: String) throws -> Int {
        Int(try Syscall.require("find the underlay interface", subject: label) {
            clu_mtu_of_address(ipv6 ? Int32(AF_INET6) : Int32(AF_INET), clu_address(hi: high, lo: low))
        })
    }
}

extension UnderlaySocket {
    /// The addresses of this namespace's interfaces (for `up` without `--host`: which host
    /// of the topology is this one), each as (IPv6?, high, low) in the 128-bit form.
    public static func localAddresses() -> [(ipv6: Bool, high: UInt64, low: UInt64)] {
        let cap = 1024
        var out = [clu_address](repeating: clu_address(hi: 0, lo: 0), count: cap)
        var v6 = [UInt8](repeating: 0, count: cap)
        let n = Int(clu_local_addresses(&out, &v6, UInt32(cap)))
        guard n > 0 else { return [] }
        return (0..<n).map { (v6[$0] != 0, out[$0].hi, out[$0].lo) }
    }
}
