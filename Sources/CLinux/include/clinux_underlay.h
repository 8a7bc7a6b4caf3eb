// CLinux underlay sockets: the UDP sockets of a VXLAN underlay endpoint, with
// batched receive and send (recvmmsg/sendmmsg, UDP_GRO, UDP_SEGMENT). Swift's Glibc does
// not import struct mmsghdr, UDP_NO_CHECK6_RX or UDP_SEGMENT (they need _GNU_SOURCE /
// linux/udp.h), so the batches and their control messages are built here, on the stack
// (at most CLU_BATCH messages per call: nothing is allocated). Contract as in clinux.h:
// >= 0 on success, -errno on failure. Swift wraps these in LinuxIO.UnderlaySocket (one
// owner per fd).
#ifndef CLINUX_UNDERLAY_H
#define CLINUX_UNDERLAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Most messages one clu_recv_gro_batch or clu_udp_send_batch call handles.
#define CLU_BATCH 64

/// An address as 128 bits in host order (`hi` = bytes 0-7): IPv4 mapped into IPv6
/// (::ffff:a.b.c.d), as Wire.UnderlayAddress and Core.TunnelDemux keep it.
struct clu_address {
    uint64_t hi;
    uint64_t lo;
};

/// Opens the receiving socket of an endpoint: UDP, non-blocking, close-on-exec, bound to
/// `address`:`port` (`family` AF_INET or AF_INET6; `address` the 128-bit form), with
/// SO_REUSEPORT (one socket per datapath worker: the kernel spreads flows by their 4-tuple)
/// and a receive buffer of `rcvbuf` bytes (SO_RCVBUFFORCE, falling back to SO_RCVBUF).
/// IPv6: IPV6_V6ONLY, and UDP_NO_CHECK6_RX (accept a zero UDP checksum, RFC 6935, as Linux's
/// vxlan `udp6zerocsumrx`). With `gro` non-zero, UDP_GRO (Linux 5.0; ignored where the
/// kernel lacks it): a run of datagrams of one 4-tuple arrives as one buffer with the
/// segment size in a control message (`clu_recv_gro_batch`). Needs CAP_NET_ADMIN for the
/// forced buffer size only.
int clu_udp_open(int family, struct clu_address address, uint16_t port, int rcvbuf, int gro);

/// 1 when UDP_GRO is on for `fd`, 0 when off, -errno (-ENOPROTOOPT: the kernel lacks it).
int clu_udp_gro_enabled(int fd);

/// Opens one sending socket of an endpoint: UDP, non-blocking, close-on-exec, SO_REUSEPORT
/// (a port's two sending sockets, with and without checksums, share it), bound to
/// `address`:`port` (the source port its datagrams carry), never fragmenting
/// (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = PMTUDISC_DO: DF over IPv4; a datagram beyond the
/// path MTU fails with EMSGSIZE), receiving nothing (a classic BPF filter that drops every
/// datagram), send buffer `sndbuf` (SO_SNDBUFFORCE, falling back to SO_SNDBUF). IPv6:
/// IPV6_V6ONLY. With `checksum` 0 over IPv4, SO_NO_CHECK: UDP checksums sent as zero (RFC
/// 7348 §5; Linux's UDP GSO refuses such a socket, so runs need `checksum` 1; IPv6 always
/// has checksums). Returns the fd or -errno (-EADDRINUSE: the port is taken).
int clu_udp_sender_open(int family, struct clu_address address, uint16_t port, int sndbuf, int checksum);

/// One message of `clu_udp_send_batch`: iov[first ..< first + count] is its UDP payload,
/// sent to `destination`. With `segment` > 0 the payload is a run of datagrams of
/// `segment` bytes each (the last may be shorter) sent as one UDP GSO message
/// (UDP_SEGMENT, Linux 4.18): at most 64 datagrams and 65507 bytes.
struct clu_message {
    uint32_t first;
    uint32_t count;
    uint32_t segment;
    uint32_t reserved;
    struct clu_address destination;
};

/// Sends `n` (<= CLU_BATCH) messages with sendmmsg(MSG_DONTWAIT) on a UDP socket, each to
/// its destination's UDP port `port` (`family` AF_INET or AF_INET6). Returns how many were
/// sent (an error after the first ends the call early), or -errno when the first failed
/// (-EIO or -EINVAL for a UDP_SEGMENT message: an IPsec route, or before Linux 6.11 a
/// device without checksum offload).
int clu_udp_send_batch(int fd, int family, uint16_t port, struct iovec *iov, const struct clu_message *messages, unsigned n);

/// Receives up to `n` (<= CLU_BATCH) messages with one recvmmsg(MSG_DONTWAIT) on a socket
/// with UDP_GRO: message i lands in iov[i]; its source in sources[i], its length in
/// lengths[i] (bit 31 set when longer than iov[i]: MSG_TRUNC), and in segments[i] the
/// UDP_GRO segment size when the kernel coalesced a run of datagrams into it (each
/// `segments[i]` bytes, the last possibly shorter), else 0 (one datagram).
/// Returns the number received (0 when none is waiting), or -errno.
int clu_recv_gro_batch(int fd, struct iovec *iov, unsigned n, struct clu_address *sources, uint32_t *lengths,
                       uint16_t *segments);

/// The MTU of the interface that holds `address` in the calling thread's network namespace
/// (getifaddrs, then SIOCGIFMTU), or -EADDRNOTAVAIL when no interface has it.
int clu_mtu_of_address(int family, struct clu_address address);

/// The IPv4 and IPv6 addresses of every interface in the calling thread's namespace
/// (getifaddrs), at most `cap`: into out[i], with is_v6[i] set for IPv6. Returns the count.
int clu_local_addresses(struct clu_address *out, uint8_t *is_v6, unsigned cap);

#ifdef __cplusplus
}
#endif

#endif
