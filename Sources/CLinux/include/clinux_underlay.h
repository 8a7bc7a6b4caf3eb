// CLinux underlay sockets: the UDP and raw IP sockets of a VXLAN underlay endpoint
// (issue 17), with batched receive and send (recvmmsg/sendmmsg). Swift's Glibc does not
// import struct mmsghdr or UDP_NO_CHECK6_RX (they need _GNU_SOURCE / linux/udp.h), so the
// batches are built here, on the stack (at most CLU_BATCH messages per call: nothing is
// allocated). Contract as in clinux.h: >= 0 on success, -errno on failure.
// Swift wraps these in LinuxIO.UnderlaySocket (one owner per fd).
#ifndef CLINUX_UNDERLAY_H
#define CLINUX_UNDERLAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Most messages one clu_recv_batch or clu_send_batch call handles.
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
/// vxlan `udp6zerocsumrx`). Needs CAP_NET_ADMIN for the forced buffer size only.
int clu_udp_open(int family, struct clu_address address, uint16_t port, int rcvbuf);

/// Opens the sending socket: raw IP with IPPROTO_RAW (IP_HDRINCL / IPV6_HDRINCL: the
/// caller writes the whole IP header, so the UDP source port can vary per flow), non-
/// blocking, close-on-exec, never receiving, send buffer `sndbuf`. Needs CAP_NET_RAW.
int clu_raw_open(int family, int sndbuf);

/// Receives up to `n` (<= CLU_BATCH) datagrams with one recvmmsg(MSG_DONTWAIT). Message i
/// is scattered over iov[2i] and iov[2i+1]; its source lands in sources[i] and its length
/// in lengths[i], with bit 31 set when the datagram was longer than its buffers (MSG_TRUNC).
/// Returns the number received (0 when none is waiting), or -errno.
int clu_recv_batch(int fd, struct iovec *iov, unsigned n, struct clu_address *sources, uint32_t *lengths);

/// Sends `n` (<= CLU_BATCH) packets with sendmmsg(MSG_DONTWAIT) on a raw socket: packet i
/// is iov[first[i] ..< first[i] + count[i]] (whole IP packets), to destinations[i] (the
/// routing destination: the same as the IP header's). `family` AF_INET or AF_INET6.
/// Returns how many were sent (a failure after some were sent ends the call early), or
/// -errno when the first failed.
int clu_send_batch(int fd, int family, struct iovec *iov, const uint32_t *first, const uint32_t *count,
                   const struct clu_address *destinations, unsigned n);

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
