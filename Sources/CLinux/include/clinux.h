// CLinux: the few Linux interfaces Swift's Glibc module cannot import or call well
// (TUNSETIFF and IFF_* macros, the packed struct epoll_event, eventfd, network
// namespaces without spawning `ip`). Each function is a small wrapper with one contract:
// it returns a non-negative result on success and -errno on failure, so Swift never has
// to read the global errno after the fact. Swift wraps these in LinuxIO (one owner per fd).
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - file descriptors

/// Sets O_NONBLOCK on `fd`. Returns 0 or -errno.
int cl_set_nonblocking(int fd);

/// Sets FD_CLOEXEC on `fd`. Returns 0 or -errno.
int cl_set_cloexec(int fd);

/// read(2): the byte count (0 at end of file) or -errno (-EAGAIN, -EINTR included).
long cl_read(int fd, void *buf, unsigned long len);

/// write(2): the byte count or -errno (-EAGAIN, -EINTR included).
long cl_write(int fd, const void *buf, unsigned long len);

/// writev(2): the byte count or -errno (-EAGAIN, -EINTR included).
long cl_writev(int fd, const struct iovec *iov, int count);

// MARK: - TAP

/// Opens /dev/net/tun (O_RDWR|O_NONBLOCK|O_CLOEXEC) and attaches it with TUNSETIFF as a
/// TAP device: IFF_TAP|IFF_NO_PI, plus IFF_VNET_HDR when `vnet_hdr` is non-zero.
/// `name` may be NULL or "" (the kernel picks tapN) and must be shorter than 16 bytes.
/// On success returns the fd and writes the kernel's name (NUL-terminated) into
/// `out_name` (may be NULL). Returns -errno on failure (-EPERM without CAP_NET_ADMIN,
/// -ENAMETOOLONG for a long name, -EBUSY/-EINVAL if the name is taken by another link).
/// The netdev exists while the fd is open (non-persistent) and vanishes on close.
/// With `multi_queue` non-zero the device is IFF_MULTI_QUEUE: each further call with the
/// same name (and the same flags) attaches one more queue fd (up to 256), and the netdev
/// lives while any queue fd is open.
int cl_tap_open(const char *name, int vnet_hdr, int multi_queue, char out_name[16]);

/// Size of `struct virtio_net_hdr` that precedes each frame on an IFF_VNET_HDR TAP
/// (10 bytes, the kernel default before TUNSETVNETHDRSZ).
int cl_vnet_hdr_size(void);

// MARK: - epoll

/// Event bits, re-exported because Glibc's EPOLL* are enum members Swift imports awkwardly.
extern const uint32_t CL_EPOLLIN;
extern const uint32_t CL_EPOLLOUT;
extern const uint32_t CL_EPOLLERR;
extern const uint32_t CL_EPOLLHUP;
extern const uint32_t CL_EPOLLET;

/// An unpacked epoll event. The kernel's `struct epoll_event` is packed on x86-64, which
/// Swift cannot import field by field; cl_epoll_wait converts into this layout.
struct cl_epoll_event {
    uint32_t events;
    uint64_t data;
};

/// Most events one cl_epoll_wait call returns (it converts through a stack array).
#define CL_EPOLL_MAX_EVENTS 256

/// epoll_create1(EPOLL_CLOEXEC). Returns the epoll fd or -errno.
int cl_epoll_create(void);

/// EPOLL_CTL_ADD `fd` with `events`, and `data` handed back by cl_epoll_wait. 0 or -errno.
int cl_epoll_add(int ep, int fd, uint32_t events, uint64_t data);

/// EPOLL_CTL_MOD `fd` to `events` and `data`. 0 or -errno.
int cl_epoll_mod(int ep, int fd, uint32_t events, uint64_t data);

/// EPOLL_CTL_DEL `fd`. 0 or -errno.
int cl_epoll_del(int ep, int fd);

/// epoll_wait for at most `max` (clamped to CL_EPOLL_MAX_EVENTS) events, converted into
/// `evs`. Returns the number of events (0 on timeout) or -errno (-EINTR included: the
/// caller decides whether to retry). `timeout_ms` < 0 waits forever.
int cl_epoll_wait(int ep, struct cl_epoll_event *evs, int max, int timeout_ms);

// MARK: - eventfd

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC). Returns the fd or -errno.
int cl_eventfd_create(void);

/// Adds 1 to the counter (wakes pollers). 0 or -errno (-EAGAIN if it would overflow).
int cl_eventfd_signal(int fd);

/// Reads and resets the counter. Returns the count (> 0), 0 if it was already zero, or -errno.
int64_t cl_eventfd_drain(int fd);

// MARK: - network namespaces

/// Creates the named network namespace exactly as iproute2's `ip netns add NAME` leaves it,
/// without spawning a process: mkdir -p /run/netns; make /run/netns a shared mount
/// (bind-mounting it on itself first if it is not a mount point yet); create
/// /run/netns/NAME with O_EXCL (-EEXIST if present); then, on a short-lived pthread,
/// unshare(CLONE_NEWNET) and bind-mount that thread's /proc/thread-self/ns/net onto the
/// file. On failure the file is removed. The calling thread's namespace is unchanged.
/// Needs CAP_SYS_ADMIN. Returns 0 or -errno; -EINVAL unless `name` is a plain file name.
int cl_netns_create(const char *name);

/// Removes the named namespace like `ip netns del`: umount2(MNT_DETACH), then unlink.
/// The namespace itself lives on while processes or fds still hold it.
/// Returns 0 or -errno (-ENOENT if absent).
int cl_netns_delete(const char *name);

/// Opens /run/netns/NAME O_RDONLY|O_CLOEXEC (for setns or rtnl_link_set_ns_fd).
/// Returns the fd or -errno.
int cl_netns_open(const char *name);

/// A job for cl_run_in_netns.
typedef void (*cl_netns_job)(void *ctx);

/// Runs `job(ctx)` on a new thread that first enters the network namespace `ns_fd` refers
/// to (setns(2), CLONE_NEWNET), and waits for it. Sockets the job opens belong to that
/// namespace for life (an AF_PACKET port on a link inside a guest's or a host's
/// namespace); the calling thread's namespace is untouched. Needs CAP_SYS_ADMIN.
/// Returns 0 once the job ran, or -errno from pthread_create/setns (the job did not run).
int cl_run_in_netns(int ns_fd, cl_netns_job job, void *ctx);

// MARK: - misc

/// Writes `value` to /proc/sys/`path` (e.g. "net/ipv6/conf/tap0/disable_ipv6"). 0 or -errno.
int cl_sysctl_write(const char *path, const char *value);
/// cl_sysctl_write inside the network namespace `ns_fd` refers to (an fd of
/// /run/netns/NAME): a short-lived pthread calls setns(ns_fd, CLONE_NEWNET), then writes;
/// per-namespace keys (net/ipv6/conf/IF/...) resolve in the namespace of the writer. The
/// caller's namespace is untouched. Returns 0 or -errno (setns: -EPERM without CAP_SYS_ADMIN).
int cl_sysctl_write_in_netns(int ns_fd, const char *path, const char *value);

/// TUNSETOFFLOAD: tell the kernel which offloads our side of the TAP accepts (TUN_F_CSUM,
/// TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN when `tso` is non-zero; 0 turns them off). The
/// guest-facing netdev then advertises checksum offload and TSO, so the guest's TCP stack
/// hands over 64 KiB GSO frames with a partial checksum, described by the vnet header.
/// Needs a TAP opened with IFF_VNET_HDR. Returns 0 or -errno.
int cl_tap_set_offload(int fd, int tso);

/// TUNSETOFFLOAD with explicit `flags` (CL_TUN_F_* below, or'ed): what the switch's side
/// of the TAP accepts, so the guest-facing netdev advertises the matching offloads. USO
/// (CL_TUN_F_USO4|USO6, Linux >= 6.2) needs both bits and TUN_F_CSUM. Needs IFF_VNET_HDR.
/// Returns 0 or -errno (-EINVAL for flags the kernel does not know).
int cl_tap_set_offload_flags(int fd, unsigned int flags);

/// TUNSETVNETHDRSZ: the size of the virtio-net header before each frame read from or
/// written to the TAP fd: 10 (struct virtio_net_hdr, the default) or 12 (struct
/// virtio_net_hdr_v1 / _mrg_rxbuf, what the switch uses; the kernel writes 10 bytes and
/// leaves num_buffers as the reader's buffer had it, so callers zero it). Applies to the
/// whole TAP (every queue). Returns 0 or -errno (-EINVAL below 10).
int cl_tap_set_vnet_hdr_size(int fd, int size);

/// TUNGETVNETHDRSZ: the TAP's virtio-net header size, or -errno.
int cl_tap_get_vnet_hdr_size(int fd);

/// Generic receive offload of interface `ifname` (SIOCETHTOOL ETHTOOL_GGRO/SGRO): 1 on,
/// 0 off, or -errno. An uplink turns GRO off so the AF_PACKET ring sees wire-sized frames
/// (GRO merges them into up to 64 KiB super-frames that a guest could not take).
int cl_ethtool_get_gro(const char *ifname);
int cl_ethtool_set_gro(const char *ifname, int on);

/// The fields of `struct virtio_net_hdr` the datapath adjusts when it pushes or pops a tag.
#define CL_VNET_F_NEEDS_CSUM 1
#define CL_VNET_GSO_NONE 0
/// The rest of the virtio-net header's values (Linux include/uapi/linux/virtio_net.h).
/// VIRTIO_NET_HDR_GSO_UDP_L4 (USO) appeared in Linux 6.2; the installed 6.1 headers lack it.
#define CL_VNET_F_DATA_VALID 2
#define CL_VNET_GSO_TCPV4 1
#define CL_VNET_GSO_UDP 3
#define CL_VNET_GSO_TCPV6 4
#define CL_VNET_GSO_UDP_L4 5
#define CL_VNET_GSO_ECN 0x80
/// struct virtio_net_hdr (10) and struct virtio_net_hdr_v1 / _mrg_rxbuf (12).
#define CL_VNET_HDR_LEGACY_SIZE 10
#define CL_VNET_HDR_V1_SIZE 12

/// TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h). USO4/USO6 appeared in Linux 6.2.
#define CL_TUN_F_CSUM 0x01
#define CL_TUN_F_TSO4 0x02
#define CL_TUN_F_TSO6 0x04
#define CL_TUN_F_TSO_ECN 0x08
#define CL_TUN_F_UFO 0x10
#define CL_TUN_F_USO4 0x20
#define CL_TUN_F_USO6 0x40

// AF_PACKET ring helpers (PacketSocket); this header is the module's umbrella, so it
// includes them for Swift.
#include "clinux_packet.h"
#include "clinux_control.h"
#include "clinux_underlay.h"

/// Names the calling thread for ps/top (prctl(PR_SET_NAME); at most 15 bytes kept).
/// Returns 0 or -errno.
int cl_set_thread_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
