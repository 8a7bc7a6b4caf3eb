// CLinux packet sockets: an AF_PACKET switch port (NIC uplinks, QEMU guests' TAP netdevs)
// receiving through a TPACKET_V2 or V3 memory-mapped ring, optionally with virtio-net headers. Swift's Glibc does not import
// TPACKET3_HDRLEN, the ring structs or their barriers, so the ring is walked here.
// Contract as in clinux.h: every function returns >= 0 on success and -errno on failure.
// Swift wraps these in LinuxIO.PacketSocket (one owner, one thread at a time).
#ifndef CLINUX_PACKET_H
#define CLINUX_PACKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Ring geometry for clp_open. Zero fields take the defaults: 64 blocks of 128 KiB,
/// 2048-byte frames, 1 ms block retire timeout. `block_size` must be a multiple of the
/// page size, `frame_size` a multiple of 16 (TPACKET_ALIGNMENT) no larger than a block.
/// `frame_size` bounds the largest frame received: a frame longer than
/// frame_size - 80 bytes (header + sockaddr_ll) arrives truncated (counted in `truncated`).
struct clp_config {
    uint32_t block_size;
    uint32_t block_count;
    uint32_t frame_size;
    uint32_t retire_ms;
    /// Non-zero: do not set PACKET_IGNORE_OUTGOING; clp_ring_next filters PACKET_OUTGOING
    /// frames itself (the pre-4.20 fallback, selectable so it can be tested).
    uint32_t filter_outgoing_in_userspace;
    /// 2: TPACKET_V2 — one fixed slot per frame, and the kernel wakes the reader for every
    /// frame (low latency; what a switch port wants). 0 or 3: TPACKET_V3 — variable-size
    /// frames packed in blocks; the reader is woken only when a block fills or its retire
    /// timer (retire_ms, at least 1 ms) fires, so a lone frame may wait up to that long
    /// (high throughput for capture-like use, up to +1 ms of latency).
    uint32_t version;
    /// Bytes of virtio-net header clp_ring_next puts in front of every frame: 0 (none),
    /// 10 (struct virtio_net_hdr) or 12 (struct virtio_net_hdr_v1, num_buffers 0). Non-zero
    /// turns on PACKET_VNET_HDR_SZ (Linux >= 6.2) — or PACKET_VNET_HDR where that option is
    /// missing: in the ring the kernel writes the same 10 bytes either way — before the
    /// ring is created, as the kernel requires (-EBUSY after). The kernel then describes
    /// CHECKSUM_PARTIAL frames (NEEDS_CSUM, csum_start/csum_offset), GRO/GSO super-frames
    /// (gso_type TCPV4/TCPV6/UDP_L4, gso_size) and verified checksums (DATA_VALID); a GSO
    /// frame it cannot describe (SCTP, GRE, UDP tunnels) it drops and counts in
    /// PACKET_STATISTICS tp_drops (`clp_stats` `drops`).
    uint32_t vnet_hdr_size;
    /// TPACKET_V2 only, non-zero: a frame longer than a ring slot (a GRO or GSO super-frame,
    /// up to 64 KiB) is still delivered whole. PACKET_COPY_THRESH makes the kernel queue a
    /// full copy on the socket's receive queue and mark the (truncated) slot TP_STATUS_COPY;
    /// clp_ring_next then reads the copy with one recvmsg. Small frames keep the ring's
    /// zero-syscall path and small slots. `copy_queue_bytes` (0: 4 MiB) sizes that queue
    /// (SO_RCVBUFFORCE, else SO_RCVBUF); when it is full the kernel stops copying and the
    /// frame arrives truncated (counted in `truncated`).
    uint32_t copy_oversize;
    uint32_t copy_queue_bytes;
};

/// The receive ring and its read cursor. Filled by clp_open, released by clp_close; the
/// caller owns the memory (allocate one per socket) and never writes the fields.
struct clp_ring {
    int fd;                    ///< the AF_PACKET socket, -1 once closed
    int ifindex;               ///< the bound interface
    int kernel_ignores_outgoing; ///< 1: PACKET_IGNORE_OUTGOING is set; 0: clp_ring_next filters
    uint8_t *map;              ///< the mmap'ed ring (block_count * block_size bytes)
    size_t map_len;
    uint32_t block_size;
    uint32_t block_count;
    uint32_t block;            ///< index of the block being read (or awaited)
    uint32_t remaining;        ///< frames left in `block` while `in_block`
    uint32_t in_block;         ///< 1 while we own `block` (TP_STATUS_USER seen)
    uint8_t *next;             ///< the next tpacket3_hdr in `block`
    uint32_t version;          ///< TPACKET_V2 or TPACKET_V3 (the ring's layout)
    uint32_t frame_size;       ///< V2: slot size
    uint32_t frames_per_block; ///< V2: slots per block
    uint32_t frame_count;      ///< V2: slots in the ring
    uint32_t frame;            ///< V2: index of the next slot to read
    uint64_t truncated;        ///< frames longer than the ring frame or the caller's buffer
    uint64_t csum_not_ready;   ///< frames with TP_STATUS_CSUMNOTREADY (checksum left to offload)
    uint64_t outgoing_skipped; ///< own/host-sent frames filtered in userspace (fallback path)
    uint32_t vnet_hdr_size;    ///< bytes of virtio-net header before each frame read (0, 10, 12)
    uint32_t kernel_vnet_hdr_size; ///< the size the kernel uses on the socket (recvmsg path)
    uint32_t copy_oversize;    ///< 1: oversize frames come whole through the socket queue
    uint64_t csum_valid;       ///< frames with TP_STATUS_CSUM_VALID (checksum verified)
    uint64_t gso;              ///< frames whose virtio-net header says GSO (gso_type != NONE)
    uint64_t copied;           ///< oversize frames read whole from the socket queue
    uint64_t copy_missing;     ///< TP_STATUS_COPY slots whose copy could not be read (dropped)
};

/// Opens an AF_PACKET SOCK_RAW socket on interface `ifname` (SOCK_NONBLOCK|SOCK_CLOEXEC),
/// sets PACKET_VERSION = TPACKET_V3 and PACKET_RX_RING with `cfg` (NULL: defaults), mmaps
/// the ring once, binds to the interface with protocol ETH_P_ALL, adds
/// PACKET_MR_PROMISC membership and sets PACKET_IGNORE_OUTGOING (Linux >= 4.20; if the
/// kernel refuses it, clp_ring_next drops sll_pkttype == PACKET_OUTGOING frames instead).
/// The socket is created with protocol 0 and only bound with ETH_P_ALL after the ring is
/// set up, so no frame of another interface ever lands in the ring.
/// Fills `ring` and returns the fd, or -errno (-ENODEV for an unknown interface, -EPERM
/// without CAP_NET_RAW, -EINVAL for a bad geometry); on failure nothing stays open.
int clp_open(const char *ifname, const struct clp_config *cfg, struct clp_ring *ring);

/// Copies the next received frame into `buf` (at most `cap` bytes) and returns its length,
/// or -EAGAIN when the ring holds no more frames, -EBADF after clp_close.
/// With `vnet_hdr_size` the frame is preceded by its virtio-net header (the returned length
/// includes it; `cap` must exceed it, else -ENOBUFS); when a stripped tag is put back,
/// csum_start (NEEDS_CSUM) and a non-zero hdr_len (GSO) move by 4 with it. A TP_STATUS_COPY
/// slot (`copy_oversize`) is replaced by the whole frame read from the socket queue. With a
/// virtio-net header a truncated frame (longer than its slot without a copy, or than `cap`)
/// is counted in `truncated` and skipped, never returned: its header would describe bytes
/// that are not there. Without one it is returned cut (the frame as far as it goes).
/// An 802.1Q/802.1ad tag the kernel stripped into tp_vlan_tci (TP_STATUS_VLAN_VALID) is
/// put back after the two MAC addresses, with TPID tp_vlan_tpid when
/// TP_STATUS_VLAN_TPID_VALID is set and 0x8100 otherwise, so callers always see the frame
/// as it was on the wire. A frame longer than `cap` is cut to `cap` bytes (counted in
/// ring->truncated). A block is handed back to the kernel (block_status = TP_STATUS_KERNEL,
/// release store) as soon as its last frame has been copied.
long clp_ring_next(struct clp_ring *ring, void *buf, size_t cap);

/// Sends one frame gathered from `count` pieces with sendmsg(MSG_DONTWAIT) on the bound
/// interface (one system call per frame; no TX ring). Returns the byte count or -errno
/// (-EAGAIN when the socket buffer is full, -ENOBUFS when the device queue is, -EMSGSIZE
/// for a frame above the MTU, -ENETDOWN/-ENXIO when the link is down or gone).
long clp_sendv(int fd, const struct iovec *iov, int count);

/// PACKET_STATISTICS (struct tpacket_stats_v3). The kernel resets its counters on every
/// read, so these are the deltas since the previous call. `packets` counts every frame
/// the socket accepted including `drops` (ring full); `freezes` counts ring-full episodes.
/// Returns 0 or -errno.
int clp_stats(int fd, uint64_t *packets, uint64_t *drops, uint64_t *freezes);

/// munmap's the ring and closes the socket; sets ring->fd = -1. Idempotent; returns 0.
int clp_close(struct clp_ring *ring);

/// Opens a send-only AF_PACKET socket bound to `ifname` (non-blocking, close-on-exec).
/// `vnet_hdr`: 0, no header; 1 or 10, each frame sent starts with a 10-byte struct
/// virtio_net_hdr (PACKET_VNET_HDR); 12, with a 12-byte struct virtio_net_hdr_v1
/// (PACKET_VNET_HDR_SZ, Linux >= 6.2: -ENOPROTOOPT before — no silent fallback, the size
/// decides where the frame starts). GSO frames and partial checksums then pass to the
/// kernel, which segments / completes them for the device (or hands them to the NIC's
/// offloads). Returns the fd or -errno (-EINVAL for another size).
int clp_open_tx(const char *ifname, int vnet_hdr);

/// PACKET_VNET_HDR_SZ (include/uapi/linux/if_packet.h, Linux >= 6.2; not in the 6.1 headers).
#define CLP_PACKET_VNET_HDR_SZ 24

/// Reads and clears the socket's pending error (SO_ERROR): AF_PACKET reports ENETDOWN when
/// its interface goes down or away, and epoll keeps reporting EPOLLERR until it is read.
/// Returns the error (0: none) or -errno.
int clp_take_error(int fd);

/// Whether interface `ifindex` exists in the network namespace of socket `fd` (SIOCGIFNAME
/// on the socket: the lookup uses the socket's namespace, not the calling thread's). Returns
/// 1, 0 (ENODEV), or -errno.
int clp_device_exists(int fd, int ifindex);

#ifdef __cplusplus
}
#endif
#endif
