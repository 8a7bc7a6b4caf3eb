// CVhost: the Linux calls a vhost-user backend needs that Swift's Glibc module cannot make
// cleanly: Unix-socket messages carrying descriptors (SCM_RIGHTS), shared mappings of the
// frontend's memory fds, memfd_create (tests stand in for a frontend with it), and poll(2)
// over two fds. Each function returns a non-negative result or -errno, like CLinux.
// Wrapped by the VhostUser module (one owner per fd / mapping).
#ifndef CVHOST_H
#define CVHOST_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Most descriptors one vhost-user message carries (VHOST_MEMORY_BASELINE_NREGIONS,
/// QEMU docs/interop/vhost-user.rst "Memory regions description").
#define CV_MAX_FDS 8

/// Creates a SOCK_STREAM Unix socket bound to `path` and listening (backlog 1), CLOEXEC.
/// `path` must fit sockaddr_un (at most 107 bytes: -ENAMETOOLONG). An existing file at
/// `path` makes bind fail with -EADDRINUSE: the caller decides whether to unlink it.
/// Returns the fd or -errno.
int cv_listen(const char *path);

/// accept4(SOCK_CLOEXEC) on a listening socket. Returns the connection fd or -errno.
int cv_accept(int fd);

/// Connects a new CLOEXEC SOCK_STREAM Unix socket to `path`. Returns the fd or -errno
/// (-ENOENT: no socket there yet, -ECONNREFUSED: nobody listening).
int cv_connect(const char *path);

/// recvmsg(2) of up to `len` bytes with MSG_CMSG_CLOEXEC|MSG_WAITALL; descriptors passed
/// with SCM_RIGHTS are stored in `fds` (at most `max_fds`, the rest closed) and their
/// number in `*nfds`. A message whose control data was truncated (MSG_CTRUNC) closes what
/// arrived and returns -EMSGSIZE. Returns the byte count (0: peer closed) or -errno.
long cv_recv(int fd, void *buf, size_t len, int *fds, int max_fds, int *nfds);

/// sendmsg(2) of `len` bytes (MSG_NOSIGNAL) with `nfds` (≤ CV_MAX_FDS) descriptors as
/// SCM_RIGHTS. Returns the byte count or -errno (-EPIPE when the peer went away).
long cv_send(int fd, const void *buf, size_t len, const int *fds, int nfds);

/// mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset). Writes the address to
/// `*out` and returns 0, or -errno. `size` must be non-zero; offset page-aligned.
int cv_mmap_shared(int fd, uint64_t size, uint64_t offset, void **out);

/// munmap(2). 0 or -errno.
int cv_munmap(void *addr, uint64_t size);

/// memfd_create(name, MFD_CLOEXEC) then ftruncate to `size`. Returns the fd or -errno.
int cv_memfd(const char *name, uint64_t size);

/// poll(2) for readability of `a` and `b` (either may be -1) for up to `timeout_ms`
/// (-1: forever). Returns a bit set: 1 when `a` is readable or hung up, 2 for `b`;
/// 0 on timeout; -errno on failure (-EINTR included).
int cv_poll2(int a, int b, int timeout_ms);

/// shutdown(fd, SHUT_RDWR): wakes a thread blocked reading `fd`. 0 or -errno.
int cv_shutdown(int fd);

/// fstat's st_size of `fd` (-errno on failure): tests check mappings against it.
int64_t cv_file_size(int fd);

/// fstat's st_blksize of `fd`: the huge page size for a hugetlbfs file, which a mapping's
/// length must be a multiple of (DPDK's frontends pass hugepage fds). -errno on failure.
int64_t cv_block_size(int fd);

/// SO_RCVTIMEO and SO_SNDTIMEO of `ms` milliseconds: a frontend that stops halfway through a
/// message cannot hold the control thread forever. 0 or -errno.
int cv_set_timeouts(int fd, int ms);

/// Atomically ORs `bits` into the byte at `p` (__atomic_fetch_or, relaxed): one dirty-page
/// bit of a migration log that the frontend harvests and clears concurrently.
static inline void cv_atomic_or8(uint8_t *p, uint8_t bits) { __atomic_fetch_or(p, bits, __ATOMIC_RELAXED); }

/// Single-instruction 16-bit accesses to the indexes a virtqueue shares with the guest
/// (`avail.idx`, `used.idx`, flags, `used_event`, `avail_event`). Swift's `loadUnaligned` /
/// `storeBytes` may copy byte by byte in unoptimised builds, and a torn index (0x34FE read
/// while the driver moved 0x33FE → 0x3400) looks like 254 phantom entries: measured with
/// testpmd. `p` must be 2-byte aligned (the rings are: checked at setup).
static inline uint16_t cv_load16_acquire(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE); }
static inline uint16_t cv_load16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED); }
static inline void cv_store16_release(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }
static inline void cv_store16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED); }
/* A hint that the caller will soon read (write = 0) or write (write = 1) the cache line at `p`;
 * never faults, whatever `p` is. The virtqueue prefetches the next chain's descriptor and
 * buffer while it copies the current one, as DPDK's vhost library does per burst. */
static inline void cv_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 3); }
#if defined(__x86_64__)
/* PREFETCHW (AMD since K8, Intel since Broadwell; executes as a NOP elsewhere) fetches the
 * line for writing, so the store that follows does not ask for ownership a second time. */
static inline void cv_prefetch_write(const void *p) { __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p)); }
#else
static inline void cv_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }
#endif

#ifdef __cplusplus
}
#endif
#endif
