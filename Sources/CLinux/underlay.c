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
#include <linux/filter.h>

#ifndef UDP_NO_CHECK6_RX
#define UDP_NO_CHECK6_RX 102
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
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

int clu_udp_open(int family, struct clu_address address, uint16_t port, int rcvbuf, int gro) {
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
    if (gro) (void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
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

int clu_udp_gro_enabled(int fd) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_UDP, UDP_GRO, &v, &len) < 0) return -errno;
    return v != 0;
}

int clu_udp_sender_open(int family, struct clu_address address, uint16_t port, int sndbuf, int checksum) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    if (!checksum && family == AF_INET && setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) < 0) goto fail;
    // Never fragment (RFC 7348 §4.3): DF over IPv4, no fragmentation over IPv6; a datagram
    // beyond the path MTU fails with EMSGSIZE.
    if (family == AF_INET6) {
        int v = IPV6_PMTUDISC_DO;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) goto fail;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v) < 0) goto fail;
    } else {
        int v = IP_PMTUDISC_DO;
        if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v) < 0) goto fail;
    }
    // Receive nothing: a one-instruction classic BPF program that accepts 0 bytes drops
    // every datagram sent to this port before it is queued.
    struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog = {.len = 1, .filter = &drop};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) goto fail;
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
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

int clu_udp_send_batch(int fd, int family, uint16_t port, struct iovec *iov, const struct clu_message *messages, unsigned n) {
    if (n > CLU_BATCH) n = CLU_BATCH;
    struct mmsghdr msgs[CLU_BATCH];
    struct sockaddr_storage names[CLU_BATCH];
    // One UDP_SEGMENT control message per message (CMSG_SPACE(sizeof(uint16_t)) bytes).
    union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } controls[CLU_BATCH];
    for (unsigned i = 0; i < n; i++) {
        socklen_t len;
        memset(&msgs[i], 0, sizeof msgs[i]);
        to_sockaddr(family, messages[i].destination, port, &names[i], &len);
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = len;
        msgs[i].msg_hdr.msg_iov = &iov[messages[i].first];
        msgs[i].msg_hdr.msg_iovlen = messages[i].count;
        if (messages[i].segment > 0) {
            memset(controls[i].buf, 0, sizeof controls[i].buf);
            msgs[i].msg_hdr.msg_control = controls[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof controls[i].buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = (uint16_t)messages[i].segment;
            memcpy(CMSG_DATA(c), &size, sizeof size);
        }
    }
    int r;
    do { r = sendmmsg(fd, msgs, n, MSG_DONTWAIT); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int clu_recv_gro_batch(int fd, struct iovec *iov, unsigned n, struct clu_address *sources, uint32_t *lengths,
                       uint16_t *segments) {
    if (n > CLU_BATCH) n = CLU_BATCH;
    struct mmsghdr msgs[CLU_BATCH];
    struct sockaddr_storage names[CLU_BATCH];
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } controls[CLU_BATCH];
    for (unsigned i = 0; i < n; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof names[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = controls[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof controls[i].buf;
    }
    int r;
    do { r = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL); } while (r < 0 && errno == EINTR);
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < r; i++) {
        sources[i] = from_sockaddr(&names[i]);
        lengths[i] = msgs[i].msg_len | ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0x80000000u : 0);
        segments[i] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int size;
                memcpy(&size, CMSG_DATA(c), sizeof size);
                segments[i] = size > 0 && size < 65536 ? (uint16_t)size : 0;
            }
        }
    }
    return r;
}
