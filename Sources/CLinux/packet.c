// See include/clinux_packet.h for each function's contract: >= 0 on success, -errno on failure.
#define _GNU_SOURCE
#include "clinux_packet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

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
            if (sll->sll_pkttype == PACKET_OUTGOING) { r->outgoing_skipped++; skip = 1; }
        }
        long out = 0;
        if (!skip) {
            int truncated = h->tp_len > h->tp_snaplen;
            if (status & TP_STATUS_CSUMNOTREADY) r->csum_not_ready++;
            uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) && h->tp_vlan_tpid != 0 ? h->tp_vlan_tpid : ETH_P_8021Q;
            out = (long)clp_copy_frame((const uint8_t *)h + h->tp_mac, h->tp_snaplen, (status & TP_STATUS_VLAN_VALID) != 0,
                                       tpid, h->tp_vlan_tci, buf, cap, &truncated);
            if (truncated) r->truncated++;
        }
        // Release: our read of the slot happens before the kernel may refill it.
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        if (!skip) return out;
    }
}

long clp_ring_next(struct clp_ring *r, void *buf, size_t cap) {
    if (r == NULL || r->fd < 0 || r->map == NULL) return -EBADF;
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
        int truncated = h->tp_len > h->tp_snaplen;
        if (status & TP_STATUS_CSUMNOTREADY) r->csum_not_ready++;
        uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid != 0 ? h->hv1.tp_vlan_tpid : ETH_P_8021Q;
        size_t out = clp_copy_frame((const uint8_t *)h + h->tp_mac, h->tp_snaplen, (status & TP_STATUS_VLAN_VALID) != 0,
                                    tpid, h->hv1.tp_vlan_tci, buf, cap, &truncated);
        if (truncated) r->truncated++;
        if (r->remaining == 0) clp_release_block(r);
        return (long)out;
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
    if (vnet_hdr) {
        int on = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) < 0) { int e = errno; close(fd); return -e; }
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
