// See include/clinux_packet.h for each function's contract: >= 0 on success, -errno on failure.
#define _GNU_SOURCE
#include "clinux_packet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef PACKET_VNET_HDR_SZ
#define PACKET_VNET_HDR_SZ CLP_PACKET_VNET_HDR_SZ
#endif
#define CLP_DEFAULT_COPY_QUEUE_BYTES (4u * 1024u * 1024u)
// What the kernel writes in front of the MAC header of a ring slot: struct virtio_net_hdr,
// 10 bytes, whatever PACKET_VNET_HDR_SZ says (tpacket_rcv: h.raw + macoff - 10).
#define CLP_RING_VNET_BYTES 10

#define CLP_DEFAULT_BLOCK_SIZE (128u * 1024u)
#define CLP_DEFAULT_BLOCK_COUNT 64u
#define CLP_DEFAULT_FRAME_SIZE 2048u
#define CLP_DEFAULT_RETIRE_MS 1u

static int clp_fail(int fd, struct clp_ring *ring, int err) {
    if (ring->map != NULL) munmap(ring->map, ring->map_len);
    ring->map = NULL;
    if (fd >= 0) close(fd);
    ring->fd = -1;
    return err;
}

int clp_open(const char *ifname, const struct clp_config *cfg, struct clp_ring *ring) {
    if (ifname == NULL || ring == NULL) return -EINVAL;
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
    if (strlen(ifname) >= IF_NAMESIZE) return -ENAMETOOLONG;
    unsigned int ifindex = if_nametoindex(ifname);
    if (ifindex == 0) return -ENODEV;

    struct clp_config c = { 0 };
    if (cfg != NULL) c = *cfg;
    if (c.block_size == 0) c.block_size = CLP_DEFAULT_BLOCK_SIZE;
    if (c.block_count == 0) c.block_count = CLP_DEFAULT_BLOCK_COUNT;
    if (c.frame_size == 0) c.frame_size = CLP_DEFAULT_FRAME_SIZE;
    if (c.retire_ms == 0) c.retire_ms = CLP_DEFAULT_RETIRE_MS;

    // Protocol 0: the socket receives nothing until bind() names the interface below.
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;

    int version = c.version == 2 ? TPACKET_V2 : TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0)
        return clp_fail(fd, ring, -errno);
    if (c.frame_size == 0 || c.frame_size > c.block_size) return clp_fail(fd, ring, -EINVAL);
    if (c.vnet_hdr_size != 0 && c.vnet_hdr_size != 10 && c.vnet_hdr_size != 12) return clp_fail(fd, ring, -EINVAL);

    // The vnet header option must precede PACKET_RX_RING (the kernel answers -EBUSY after).
    if (c.vnet_hdr_size != 0) {
        int size = (int)c.vnet_hdr_size;
        if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR_SZ, &size, sizeof size) == 0) {
            ring->kernel_vnet_hdr_size = c.vnet_hdr_size;
        } else {
            // Before Linux 6.2: the 10-byte header; the ring looks the same, clp_ring_next
            // widens it to the size asked for.
            int on = 1;
            if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) < 0) return clp_fail(fd, ring, -errno);
            ring->kernel_vnet_hdr_size = 10;
        }
        ring->vnet_hdr_size = c.vnet_hdr_size;
    }
    if (c.copy_oversize && version == TPACKET_V2) {
        int on = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &on, sizeof on) < 0) return clp_fail(fd, ring, -errno);
        int bytes = (int)(c.copy_queue_bytes ? c.copy_queue_bytes : CLP_DEFAULT_COPY_QUEUE_BYTES);
        // FORCE needs CAP_NET_ADMIN and ignores net.core.rmem_max; plain SO_RCVBUF is capped by it.
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
        ring->copy_oversize = 1;
    }

    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = c.block_size;
    req.tp_block_nr = c.block_count;
    req.tp_frame_size = c.frame_size;
    req.tp_frame_nr = (unsigned int)(((uint64_t)c.block_size / c.frame_size) * c.block_count);
    req.tp_retire_blk_tov = c.retire_ms;
    req.tp_feature_req_word = 0;
    // V2 takes the leading struct tpacket_req part of tpacket_req3.
    socklen_t req_len = version == TPACKET_V2 ? sizeof(struct tpacket_req) : sizeof req;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, req_len) < 0)
        return clp_fail(fd, ring, -errno);
    ring->version = (uint32_t)version;
    ring->frame_size = c.frame_size;
    ring->frames_per_block = c.block_size / c.frame_size;
    ring->frame_count = req.tp_frame_nr;
    ring->frame = 0;

    ring->map_len = (size_t)c.block_size * c.block_count;
    void *map = mmap(NULL, ring->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (map == MAP_FAILED) // MAP_LOCKED may exceed RLIMIT_MEMLOCK; the ring works unlocked.
        map = mmap(NULL, ring->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return clp_fail(fd, ring, -errno);
    ring->map = map;
    ring->block_size = c.block_size;
    ring->block_count = c.block_count;

    // Set before bind so no own frame is ever queued; a missing option is not fatal.
    int one = 1;
    ring->kernel_ignores_outgoing = !c.filter_outgoing_in_userspace &&
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) == 0;

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) return clp_fail(fd, ring, -errno);

    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = (int)ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
        return clp_fail(fd, ring, -errno);

    ring->fd = fd;
    ring->ifindex = (int)ifindex;
    return fd;
}

static inline struct tpacket_block_desc *clp_block(struct clp_ring *r, uint32_t i) {
    return (struct tpacket_block_desc *)(r->map + (size_t)i * r->block_size);
}

// Hands the current block back to the kernel and moves on to the next one.
static inline void clp_release_block(struct clp_ring *r) {
    struct tpacket_block_desc *bd = clp_block(r, r->block);
    // Release: our reads of the block's frames happen before the kernel may refill it.
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    r->in_block = 0;
    r->block = (r->block + 1 == r->block_count) ? 0 : r->block + 1;
}

// Copies a frame out of the ring into `buf`, putting a tag the kernel stripped back after
// the MACs. Returns the bytes written; sets *truncated when the frame did not fit.
static inline size_t clp_copy_frame(const uint8_t *src, size_t len, int vlan_valid, uint16_t tpid, uint16_t tci,
                                    uint8_t *dst, size_t cap, int *truncated) {
    size_t out = 0;
    if (vlan_valid && len >= 12) {
        uint8_t tag[4] = { (uint8_t)(tpid >> 8), (uint8_t)tpid, (uint8_t)(tci >> 8), (uint8_t)tci };
        size_t n = cap < 12 ? cap : 12;
        memcpy(dst, src, n);
        out = n;
        n = cap - out < 4 ? cap - out : 4;
        memcpy(dst + out, tag, n);
        out += n;
        src += 12;
        len -= 12;
    }
    size_t n = cap - out < len ? cap - out : len;
    memcpy(dst + out, src, n);
    if (n < len) *truncated = 1;
    return out + n;
}

// Writes the ring's virtio-net header (the kernel's 10 bytes at `src`) as `size` bytes at
// `dst` (num_buffers 0), moving csum_start and a non-zero GSO hdr_len by 4 when a stripped
// tag was put back in front of L3 (Wire.VirtioNetHeader.shift does the same in Swift).
static inline void clp_put_vnet(struct clp_ring *r, uint8_t *dst, const uint8_t *src, int tag_inserted) {
    uint8_t h[12];
    memcpy(h, src, 10);
    h[10] = 0;
    h[11] = 0;
    if (tag_inserted) {
        if (h[0] & 1 /* VIRTIO_NET_HDR_F_NEEDS_CSUM */) {
            uint16_t start = (uint16_t)(h[6] | h[7] << 8) + 4;
            h[6] = (uint8_t)start; h[7] = (uint8_t)(start >> 8);
        }
        uint16_t len = (uint16_t)(h[2] | h[3] << 8);
        if (h[1] != 0 && len != 0) {
            len += 4;
            h[2] = (uint8_t)len; h[3] = (uint8_t)(len >> 8);
        }
    }
    if ((h[1] & 0x7F) != 0) r->gso++;
    memcpy(dst, h, r->vnet_hdr_size);
}

// Counts the checksum state of a delivered frame.
static inline void clp_count_status(struct clp_ring *r, uint32_t status) {
    if (status & TP_STATUS_CSUMNOTREADY) r->csum_not_ready++;
    else if (status & TP_STATUS_CSUM_VALID) r->csum_valid++;
}

// Delivers a frame from a ring slot: [vnet header][frame, tag put back]. Returns its length,
// or -1 for a truncated frame with a vnet header: its header describes bytes that are not
// there (a super-frame cut at the slot), so it is counted and dropped, never handed on.
static inline long clp_deliver(struct clp_ring *r, uint32_t status, const uint8_t *mac, uint32_t snaplen, uint32_t len,
                               uint16_t tpid, uint16_t tci, uint8_t *buf, size_t cap) {
    size_t hs = r->vnet_hdr_size;
    int vlan = (status & TP_STATUS_VLAN_VALID) != 0;
    int truncated = len > snaplen;
    if (hs && truncated) { r->truncated++; return -1; }
    clp_count_status(r, status);
    if (hs) clp_put_vnet(r, buf, mac - CLP_RING_VNET_BYTES, vlan && snaplen >= 12);
    size_t n = clp_copy_frame(mac, snaplen, vlan, tpid, tci, buf + hs, cap - hs, &truncated);
    if (truncated) {
        r->truncated++;
        if (hs) return -1;
    }
    return (long)(hs + n);
}

// A TP_STATUS_COPY slot: the whole frame waits on the socket queue. Reads it with one
// recvmsg, scattering the kernel's header into `khdr` and leaving a 4-byte hole after the
// MACs for a stripped tag. Returns its length, or -1 (counted) when no copy was there.
static long clp_recv_copy(struct clp_ring *r, uint32_t status, uint16_t tpid, uint16_t tci, uint8_t *buf, size_t cap) {
    size_t hs = r->vnet_hdr_size, ks = r->kernel_vnet_hdr_size;
    int vlan = (status & TP_STATUS_VLAN_VALID) != 0;
    uint8_t khdr[12];
    uint8_t *frame = buf + hs;
    size_t room = cap - hs;
    struct iovec iov[3];
    int n = 0;
    if (ks) iov[n++] = (struct iovec){ .iov_base = khdr, .iov_len = ks };
    if (vlan && room >= 16) {
        iov[n++] = (struct iovec){ .iov_base = frame, .iov_len = 12 };
        iov[n++] = (struct iovec){ .iov_base = frame + 16, .iov_len = room - 16 };
    } else {
        vlan = 0;
        iov[n++] = (struct iovec){ .iov_base = frame, .iov_len = room };
    }
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t got;
    do { got = recvmsg(r->fd, &msg, MSG_DONTWAIT); } while (got < 0 && errno == EINTR);
    if (got < (ssize_t)ks + 12) { r->copy_missing++; return -1; }
    size_t flen = (size_t)got - ks;
    if (msg.msg_flags & MSG_TRUNC) {
        r->truncated++;
        if (hs) return -1;   // as clp_deliver: a cut super-frame is dropped
    }
    if (vlan) {
        uint8_t tag[4] = { (uint8_t)(tpid >> 8), (uint8_t)tpid, (uint8_t)(tci >> 8), (uint8_t)tci };
        memcpy(frame + 12, tag, 4);
        flen += 4;
    }
    clp_count_status(r, status);
    if (hs) {
        if (!ks) memset(khdr, 0, sizeof khdr);
        clp_put_vnet(r, buf, khdr, vlan);
    }
    r->copied++;
    return (long)(hs + flen);
}

// TPACKET_V2: one slot per frame, status per slot.
static long clp_ring_next_v2(struct clp_ring *r, void *buf, size_t cap) {
    for (;;) {
        uint32_t i = r->frame;
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(r->map + (size_t)(i / r->frames_per_block) * r->block_size
                                                         + (size_t)(i % r->frames_per_block) * r->frame_size);
        // Acquire: the kernel's write of the frame is visible once we see USER.
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER)) return -EAGAIN;
        r->frame = i + 1 == r->frame_count ? 0 : i + 1;
        int skip = 0;
        if (!r->kernel_ignores_outgoing) {
            const struct sockaddr_ll *sll =
                (const struct sockaddr_ll *)((uint8_t *)h + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
            if (sll->sll_pkttype == PACKET_OUTGOING) {
                r->outgoing_skipped++;
                skip = 1;
                // Its whole copy waits on the socket queue: discard it, or the next copy
                // read would return this frame.
                if (status & TP_STATUS_COPY) (void)recv(r->fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC);
            }
        }
        long out = -1;
        if (!skip) {
            uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) && h->tp_vlan_tpid != 0 ? h->tp_vlan_tpid : ETH_P_8021Q;
            if (status & TP_STATUS_COPY)
                out = clp_recv_copy(r, status, tpid, h->tp_vlan_tci, buf, cap);
            else
                out = clp_deliver(r, status, (const uint8_t *)h + h->tp_mac, h->tp_snaplen, h->tp_len,
                                  tpid, h->tp_vlan_tci, buf, cap);
        }
        // Release: our read of the slot happens before the kernel may refill it.
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        if (out >= 0) return out;
    }
}

long clp_ring_next(struct clp_ring *r, void *buf, size_t cap) {
    if (r == NULL || r->fd < 0 || r->map == NULL) return -EBADF;
    if (cap <= r->vnet_hdr_size) return -ENOBUFS;
    if (r->version == TPACKET_V2) return clp_ring_next_v2(r, buf, cap);
    for (;;) {
        if (!r->in_block) {
            struct tpacket_block_desc *bd = clp_block(r, r->block);
            // Acquire: the kernel's writes of the frames are visible once we see USER.
            uint32_t status = __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
            if (!(status & TP_STATUS_USER)) return -EAGAIN;
            r->in_block = 1;
            r->remaining = bd->hdr.bh1.num_pkts;
            r->next = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
        }
        if (r->remaining == 0) { // an empty retired block
            clp_release_block(r);
            continue;
        }
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)r->next;
        r->remaining--;
        r->next += h->tp_next_offset;

        if (!r->kernel_ignores_outgoing) {
            const struct sockaddr_ll *sll =
                (const struct sockaddr_ll *)((uint8_t *)h + TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
            if (sll->sll_pkttype == PACKET_OUTGOING) {
                r->outgoing_skipped++;
                if (r->remaining == 0) clp_release_block(r);
                continue;
            }
        }

        uint32_t status = h->tp_status;
        uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid != 0 ? h->hv1.tp_vlan_tpid : ETH_P_8021Q;
        long out = clp_deliver(r, status, (const uint8_t *)h + h->tp_mac, h->tp_snaplen, h->tp_len,
                               tpid, h->hv1.tp_vlan_tci, buf, cap);
        if (r->remaining == 0) clp_release_block(r);
        if (out >= 0) return out;
    }
}

long clp_sendv(int fd, const struct iovec *iov, int count) {
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)count;
    ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT);
    return n < 0 ? -errno : (long)n;
}

int clp_stats(int fd, uint64_t *packets, uint64_t *drops, uint64_t *freezes) {
    struct tpacket_stats_v3 st;
    memset(&st, 0, sizeof st);
    socklen_t len = sizeof st;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0) return -errno;
    if (packets) *packets = st.tp_packets;
    if (drops) *drops = st.tp_drops;
    if (freezes) *freezes = st.tp_freeze_q_cnt;
    return 0;
}

int clp_close(struct clp_ring *ring) {
    if (ring == NULL) return 0;
    if (ring->map != NULL) munmap(ring->map, ring->map_len);
    ring->map = NULL;
    if (ring->fd >= 0) close(ring->fd);
    ring->fd = -1;
    ring->in_block = 0;
    return 0;
}

int clp_open_tx(const char *ifname, int vnet_hdr) {
    if (ifname == NULL) return -EINVAL;
    if (strlen(ifname) >= IF_NAMESIZE) return -ENAMETOOLONG;
    unsigned int ifindex = if_nametoindex(ifname);
    if (ifindex == 0) return -ENODEV;
    // Protocol 0: this socket never receives; it only sends.
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (vnet_hdr == 12) {
        int size = 12;
        if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR_SZ, &size, sizeof size) < 0) { int e = errno; close(fd); return -e; }
    } else if (vnet_hdr == 1 || vnet_hdr == 10) {
        int on = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) < 0) { int e = errno; close(fd); return -e; }
    } else if (vnet_hdr != 0) {
        close(fd);
        return -EINVAL;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = 0;
    sll.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int clp_take_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return err;
}

int clp_device_exists(int fd, int ifindex) {
    struct ifreq req;
    memset(&req, 0, sizeof req);
    req.ifr_ifindex = ifindex;
    if (ioctl(fd, SIOCGIFNAME, &req) == 0) return 1;
    return errno == ENODEV ? 0 : -errno;
}
