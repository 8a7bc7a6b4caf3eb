#define _GNU_SOURCE
#include "clinux_underlay.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <endian.h>

#ifndef UDP_NO_CHECK6_RX
#define UDP_NO_CHECK6_RX 102
#endif
#ifndef IPV6_HDRINCL
#define IPV6_HDRINCL 36
#endif

static void to_sockaddr(int family, struct clu_address a, uint16_t port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        s->sin_addr.s_addr = htonl((uint32_t)a.lo);
        *len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        uint64_t hi = htobe64(a.hi), lo = htobe64(a.lo);
        memcpy(&s->sin6_addr.s6_addr[0], &hi, 8);
        memcpy(&s->sin6_addr.s6_addr[8], &lo, 8);
        *len = sizeof *s;
    }
}

static struct clu_address from_sockaddr(const struct sockaddr_storage *ss) {
    struct clu_address a = {0, 0};
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        a.lo = 0xFFFF00000000ULL | ntohl(s->sin_addr.s_addr);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        uint64_t hi, lo;
        memcpy(&hi, &s->sin6_addr.s6_addr[0], 8);
        memcpy(&lo, &s->sin6_addr.s6_addr[8], 8);
        a.hi = be64toh(hi);
        a.lo = be64toh(lo);
    }
    return a;
}

int clu_udp_open(int family, struct clu_address address, uint16_t port, int rcvbuf) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (family == AF_INET6) {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) goto fail;
        if (setsockopt(fd, IPPROTO_UDP, UDP_NO_CHECK6_RX, &one, sizeof one) < 0) goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    to_sockaddr(family, address, port, &ss, &len);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int clu_raw_open(int family, int sndbuf) {
    int fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return -errno;
    int one = 1;
    if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_HDRINCL, &one, sizeof one);
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    // Never receive: a raw IPPROTO_RAW socket gets nothing anyway; shut the direction.
    (void)shutdown(fd, SHUT_RD);
    return fd;
}

int clu_recv_batch(int fd, struct iovec *iov, unsigned n, struct clu_address *sources, uint32_t *lengths) {
    if (n > CLU_BATCH) n = CLU_BATCH;
    struct mmsghdr msgs[CLU_BATCH];
    struct sockaddr_storage names[CLU_BATCH];
    for (unsigned i = 0; i < n; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof names[i];
        msgs[i].msg_hdr.msg_iov = &iov[2 * i];
        msgs[i].msg_hdr.msg_iovlen = 2;
    }
    int r;
    do { r = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL); } while (r < 0 && errno == EINTR);
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < r; i++) {
        sources[i] = from_sockaddr(&names[i]);
        lengths[i] = msgs[i].msg_len | ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0x80000000u : 0);
    }
    return r;
}

int clu_send_batch(int fd, int family, struct iovec *iov, const uint32_t *first, const uint32_t *count,
                   const struct clu_address *destinations, unsigned n) {
    if (n > CLU_BATCH) n = CLU_BATCH;
    struct mmsghdr msgs[CLU_BATCH];
    struct sockaddr_storage names[CLU_BATCH];
    for (unsigned i = 0; i < n; i++) {
        socklen_t len;
        memset(&msgs[i], 0, sizeof msgs[i]);
        // A raw IPv6 socket takes the protocol in the port field; 0 is fine with HDRINCL.
        to_sockaddr(family, destinations[i], 0, &names[i], &len);
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = len;
        msgs[i].msg_hdr.msg_iov = &iov[first[i]];
        msgs[i].msg_hdr.msg_iovlen = count[i];
    }
    int r;
    do { r = sendmmsg(fd, msgs, n, MSG_DONTWAIT); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int clu_mtu_of_address(int family, struct clu_address address) {
    struct ifaddrs *list;
    if (getifaddrs(&list) < 0) return -errno;
    char name[IF_NAMESIZE + 1] = {0};
    for (struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != family) continue;
        struct clu_address a = from_sockaddr((const struct sockaddr_storage *)i->ifa_addr);
        if (a.hi == address.hi && a.lo == address.lo) { strncpy(name, i->ifa_name, IF_NAMESIZE); break; }
    }
    freeifaddrs(list);
    if (!name[0]) return -EADDRNOTAVAIL;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strncpy(req.ifr_name, name, IF_NAMESIZE - 1);
    int r = ioctl(fd, SIOCGIFMTU, &req);
    int e = errno;
    close(fd);
    return r < 0 ? -e : req.ifr_mtu;
}

int clu_local_addresses(struct clu_address *out, uint8_t *is_v6, unsigned cap) {
    struct ifaddrs *list;
    if (getifaddrs(&list) < 0) return -errno;
    unsigned n = 0;
    for (struct ifaddrs *i = list; i && n < cap; i = i->ifa_next) {
        if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
        out[n] = from_sockaddr((const struct sockaddr_storage *)i->ifa_addr);
        is_v6[n] = i->ifa_addr->sa_family == AF_INET6;
        n++;
    }
    freeifaddrs(list);
    return (int)n;
}
