import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// One message of a batched underlay send (`UnderlaySocket.send`): where its UDP payload's
/// pieces start in the iovec array and how many, the UDP GSO segment size for a run (0 for
/// one datagram), and its destination. The C layout `clu_message` (CLinux), named here so
/// callers above LinuxIO use it without importing the C shim.
public typealias UnderlayMessage = clu_message
/// An underlay address as 128 bits in host order (IPv4 mapped into IPv6): `clu_address`.
public typealias UnderlayWireAddress = clu_address

/// The sockets of one VXLAN underlay endpoint: this host's underlay address and
/// one UDP port, opened in the namespace that holds the address.
///
/// ```
///   receive: UDP sockets bound to ADDRESS:PORT, SO_REUSEPORT, one per datapath worker
///            (the kernel spreads flows over them by 4-tuple), UDP_GRO on; recvmmsg, ≤ 64
///            messages per call, each one datagram or a run of them (`segments`)
///   send:    a pool of `senderCount` source ports P in 49152–65535, each with two UDP
///            sockets bound to ADDRESS:P (SO_REUSEPORT): one for single datagrams (a zero
///            UDP checksum over IPv4), one for runs of equal datagrams sent as one UDP GSO
///            message (UDP_SEGMENT, checksummed); a frame's inner flow hash picks the port
///            (RFC 7348 §5: ECMP entropy); sendmmsg
/// ```
/// Why UDP sockets for sending (the first version wrote whole IP packets on a raw
/// IPPROTO_RAW socket to choose the source port per packet): a raw socket cannot do UDP
/// GSO, so every segment of a guest's 64 KiB TSO frame crossed the stack alone; with
/// UDP_SEGMENT one system call and one skb carry up to 64 of them, and on a veth or a NIC
/// with UDP segmentation offload they stay one skb to the receiver, whose UDP_GRO hands them
/// over in one buffer. Measured (Scripts/bench/overlay.sh, TCP one stream across two hosts):
/// see Underlay.swift in Runtime. The source port's entropy now comes from a pool: a flow
/// keeps its port (its hash picks the same socket), and `senderCount` ports spread flows
/// over up to that many ECMP paths. DF is set over IPv4 (RFC 7348 §4.3) by
/// IP_PMTUDISC_DO. UDP checksums: zero over IPv4 for single datagrams (RFC 7348 §5, Linux's
/// vxlan default); runs carry them, as Linux's UDP GSO refuses `SO_NO_CHECK` (allowed by
/// §5, and computed by the device where it can); the IPv6 flow label is the kernel's automatic one (from the 5-tuple,
/// so per source port). The sending sockets never receive (a drop-all socket filter).
///
/// Needs CAP_NET_ADMIN for the forced buffer sizes only (CAP_NET_RAW no more). Owns its
/// fds: `close()` is idempotent and `deinit` closes.
public final class UnderlaySocket {
    /// AF_INET or AF_INET6.
    public let family: Int32
    /// Receiving sockets, one per queue.
    public private(set) var receivers: [Int32]
    /// Sending sockets for single datagrams; `senders[i]` sends from source port
    /// `sourcePorts[i]`, with a zero UDP checksum over IPv4 (RFC 7348 §5, as Linux's vxlan).
    public private(set) var senders: [Int32]
    /// Sending sockets for UDP GSO runs, `runSenders[i]` on the same port as `senders[i]`
    /// (SO_REUSEPORT), with UDP checksums (UDP GSO needs them).
    public private(set) var runSenders: [Int32]
    /// The source port of each sending socket, in 49152–65535.
    public let sourcePorts: [UInt16]
    /// The endpoint's UDP port (the destination port of what it sends).
    public let port: UInt16
    /// UDP_GRO is on for the receiving sockets (the kernel may hand over runs).
    public let receivesRuns: Bool
    /// For messages: `ADDRESS:PORT` (and the namespace).
    public let label: String

    /// Sending sockets per endpoint: 16 source ports. ECMP underlays hash over a few paths
    /// (2–16 is typical), so 16 ports spread flows as well as the full range would, for 16
    /// descriptors; a flow's port is stable (its hash picks the socket).
    public static let defaultSenderCount = 16

    /// Opens `queues` receiving sockets and `senders` sending sockets in the calling thread's
    /// network namespace (wrap in `NetworkNamespace.run(in:)` for another).
    /// - Parameters:
    ///   - address: the local underlay address, 128 bits (IPv4 mapped, see `clu_address`).
    ///   - senders: sending sockets (source ports), ≥ 1.
    /// - Throws: `SystemError` naming the socket and errno (EADDRNOTAVAIL: the address is
    ///   not on this host; EADDRINUSE: another program, such as a kernel vxlan device, holds
    ///   the port without SO_REUSEPORT, or no free source port was found).
    public init(ipv6: Bool, address high: UInt64, _ low: UInt64, port: UInt16, queues: Int,
                senders senderCount: Int = UnderlaySocket.defaultSenderCount, label: String) throws {
        precondition(queues >= 1 && senderCount >= 1)
        let family = ipv6 ? Int32(AF_INET6) : Int32(AF_INET)
        self.family = family
        self.label = label
        self.port = port
        var fds: [Int32] = []
        var out: [Int32] = []
        var runs: [Int32] = []
        var ports: [UInt16] = []
        let a = clu_address(hi: high, lo: low)
        do {
            for q in 0..<queues {
                fds.append(try Syscall.require("open underlay UDP socket \(q)", subject: label) {
                    clu_udp_open(family, a, port, 4 << 20, 1)
                })
            }
            // Source ports: from a point that depends on the address and port (two endpoints
            // on one machine start apart), upwards through 49152–65535, skipping taken ones.
            let mixed = (high ^ low ^ UInt64(port)) &* 0x9E37_79B9_7F4A_7C15
            var candidate = Int(mixed >> 50) % 16384
            var tried = 0
            while out.count < senderCount {
                guard tried < 16384 else {
                    throw SystemError(operation: "find \(senderCount) free UDP source ports in 49152-65535", subject: label, errno: EADDRINUSE)
                }
                let p = UInt16(49152 + candidate)
                candidate = (candidate + 1) % 16384
                tried += 1
                // The pair: without checksums (single datagrams) and with (runs), one port.
                let plain = clu_udp_sender_open(family, a, p, 4 << 20, 0)
                if plain == -EADDRINUSE { continue }
                out.append(try Syscall.require("open underlay sending socket on port \(p)", subject: label) { plain })
                let checked = clu_udp_sender_open(family, a, p, 4 << 20, 1)
                if checked == -EADDRINUSE { _ = Glibc.close(out.removeLast()); continue }
                runs.append(try Syscall.require("open underlay sending socket (UDP GSO) on port \(p)", subject: label) { checked })
                ports.append(p)
            }
        } catch {
            for fd in fds + out + runs { _ = Glibc.close(fd) }
            throw error
        }
        receivers = fds
        senders = out
        runSenders = runs
        sourcePorts = ports
        receivesRuns = clu_udp_gro_enabled(fds[0]) == 1
    }

    deinit { close() }

    /// Closes every socket. Idempotent.
    public func close() {
        for fd in receivers + senders + runSenders where fd >= 0 { _ = Glibc.close(fd) }
        receivers = []
        senders = []
        runSenders = []
    }

    /// Receives up to `count` (≤ `UnderlaySocket.batch`) messages from queue `queue`:
    /// message i into `iov[i]`; its source into `sources[i]`, its length into `lengths[i]`
    /// (bit 31: truncated), its UDP_GRO segment size into `segments[i]` (0: one datagram).
    /// Returns how many arrived (0: none waiting), or -errno. Per-frame path: no allocation.
    @inline(__always)
    public func receive(queue: Int, _ iov: UnsafeMutablePointer<iovec>, count: Int, sources: UnsafeMutablePointer<clu_address>,
                        lengths: UnsafeMutablePointer<UInt32>, segments: UnsafeMutablePointer<UInt16>) -> Int {
        guard queue < receivers.count else { return -Int(EBADF) }   // closed
        return Int(clu_recv_gro_batch(receivers[queue], iov, UInt32(min(count, UnderlaySocket.batch)), sources, lengths, segments))
    }

    /// Sends `count` (≤ `UnderlaySocket.batch`) messages from source port `sourcePorts[sender]`
    /// (`clu_message`: a datagram, or with `runs` a UDP GSO run, its UDP payload in `iov`).
    /// Returns how many were sent, or -errno when the first failed (-EBADF once closed).
    @inline(__always)
    public func send(sender: Int, runs: Bool, _ iov: UnsafeMutablePointer<iovec>, messages: UnsafePointer<UnderlayMessage>, count: Int) -> Int {
        let pool = runs ? runSenders : senders
        guard sender < pool.count else { return -Int(EBADF) }
        return Int(clu_udp_send_batch(pool[sender], family, port, iov, messages, UInt32(min(count, UnderlaySocket.batch))))
    }

    /// Most messages per `receive` or `send` call (`CLU_BATCH`).
    public static let batch = Int(CLU_BATCH)
    /// Most datagrams in one UDP GSO message (the kernel's UDP_MAX_SEGMENTS in Linux < 6.14).
    public static let maximumRun = 64
    /// Most bytes of UDP payload in one message (a UDP length of 65535, and 65535 bytes of
    /// IPv4 datagram: 65535 - 20 - 8).
    public static let maximumPayload = 65507

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
