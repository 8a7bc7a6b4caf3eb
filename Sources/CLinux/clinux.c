// See include/clinux.h for each function's contract: >= 0 on success, -errno on failure.
#define _GNU_SOURCE
#include "clinux.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>

// MARK: - file descriptors

int cl_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    return 0;
}

int cl_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -errno;
    if (fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -errno;
    return 0;
}

// The raw system calls, not glibc's read/writev: those are thread-cancellation points and
// wrap every call in __pthread_enable/disable_asynccancel (~3% of the datapath's CPU in a
// 64-byte profile). Tapestry never cancels threads.
long cl_read(int fd, void *buf, unsigned long len) {
    long n = syscall(SYS_read, fd, buf, len);
    return n < 0 ? -errno : n;
}

long cl_write(int fd, const void *buf, unsigned long len) {
    ssize_t n = write(fd, buf, len);
    return n < 0 ? -errno : (long)n;
}

long cl_writev(int fd, const struct iovec *iov, int count) {
    long n = syscall(SYS_writev, fd, iov, count);
    return n < 0 ? -errno : n;
}

// MARK: - TAP

int cl_tap_open(const char *name, int vnet_hdr, int multi_queue, char out_name[16]) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (name != NULL) {
        if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    }
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0) | (multi_queue ? IFF_MULTI_QUEUE : 0);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (out_name != NULL) {
        memcpy(out_name, ifr.ifr_name, IFNAMSIZ);
        out_name[IFNAMSIZ - 1] = '\0';
    }
    return fd;
}

int cl_vnet_hdr_size(void) { return (int)sizeof(struct virtio_net_hdr); }

// MARK: - epoll

const uint32_t CL_EPOLLIN = EPOLLIN;
const uint32_t CL_EPOLLOUT = EPOLLOUT;
const uint32_t CL_EPOLLERR = EPOLLERR;
const uint32_t CL_EPOLLHUP = EPOLLHUP;
const uint32_t CL_EPOLLET = EPOLLET;

int cl_epoll_create(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    return ep < 0 ? -errno : ep;
}

static int cl_epoll_ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(ep, op, fd, &ev) < 0 ? -errno : 0;
}

int cl_epoll_add(int ep, int fd, uint32_t events, uint64_t data) {
    return cl_epoll_ctl(ep, EPOLL_CTL_ADD, fd, events, data);
}

int cl_epoll_mod(int ep, int fd, uint32_t events, uint64_t data) {
    return cl_epoll_ctl(ep, EPOLL_CTL_MOD, fd, events, data);
}

int cl_epoll_del(int ep, int fd) {
    return cl_epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0, 0);
}

int cl_epoll_wait(int ep, struct cl_epoll_event *evs, int max, int timeout_ms) {
    // The kernel struct is packed on x86-64; collect on the stack, then unpack.
    struct epoll_event raw[CL_EPOLL_MAX_EVENTS];
    if (max <= 0) return -EINVAL;
    if (max > CL_EPOLL_MAX_EVENTS) max = CL_EPOLL_MAX_EVENTS;
    int n = epoll_wait(ep, raw, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        evs[i].events = raw[i].events;
        evs[i].data = raw[i].data.u64;
    }
    return n;
}

// MARK: - eventfd

int cl_eventfd_create(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cl_eventfd_signal(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -errno;
}

int64_t cl_eventfd_drain(int fd) {
    uint64_t count = 0;
    if (read(fd, &count, sizeof count) != (ssize_t)sizeof count) return errno == EAGAIN ? 0 : -errno;
    return (int64_t)count;
}

// MARK: - network namespaces

#define CL_NETNS_RUN_DIR "/run/netns"

static int cl_netns_path(const char *name, char path[PATH_MAX]) {
    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return -EINVAL;
    if (snprintf(path, PATH_MAX, "%s/%s", CL_NETNS_RUN_DIR, name) >= PATH_MAX) return -ENAMETOOLONG;
    return 0;
}

// Serialises the /run/netns mount upgrade within this process, so concurrent creators
// do not stack two bind mounts on it.
static pthread_mutex_t cl_netns_lock = PTHREAD_MUTEX_INITIALIZER;

// Makes /run/netns a shared mount point, as iproute2's netns_add does, so that unmounting
// a namespace file propagates to other mount namespaces.
static int cl_netns_prepare_run_dir(void) {
    if (mkdir("/run", 0755) < 0 && errno != EEXIST) return -errno;
    if (mkdir(CL_NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST) return -errno;
    int made_mount = 0;
    while (mount("", CL_NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0) {
        // EINVAL: not a mount point yet. Upgrade it by bind-mounting it on itself.
        if (errno != EINVAL || made_mount) return -errno;
        if (mount(CL_NETNS_RUN_DIR, CL_NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0) return -errno;
        made_mount = 1;
    }
    return 0;
}

struct cl_netns_job { const char *path; int result; };

// Runs on its own thread: a thread may unshare its network namespace without affecting
// the rest of the process, and the namespace outlives the thread through the bind mount.
static void *cl_netns_thread(void *arg) {
    struct cl_netns_job *job = arg;
    if (unshare(CLONE_NEWNET) < 0) { job->result = -errno; return NULL; }
    job->result = mount("/proc/thread-self/ns/net", job->path, "none", MS_BIND, NULL) < 0 ? -errno : 0;
    return NULL;
}

int cl_netns_create(const char *name) {
    char path[PATH_MAX];
    int err = cl_netns_path(name, path);
    if (err < 0) return err;
    pthread_mutex_lock(&cl_netns_lock);
    err = cl_netns_prepare_run_dir();
    pthread_mutex_unlock(&cl_netns_lock);
    if (err < 0) return err;
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) return -errno;
    close(fd);
    struct cl_netns_job job = { .path = path, .result = 0 };
    pthread_t thread;
    err = pthread_create(&thread, NULL, cl_netns_thread, &job);
    if (err != 0) { unlink(path); return -err; }
    pthread_join(thread, NULL);
    if (job.result < 0) unlink(path);
    return job.result;
}

int cl_netns_delete(const char *name) {
    char path[PATH_MAX];
    int err = cl_netns_path(name, path);
    if (err < 0) return err;
    // Like `ip netns del`: a failed unmount (e.g. never mounted) still removes the file.
    (void)umount2(path, MNT_DETACH);
    return unlink(path) < 0 ? -errno : 0;
}

int cl_netns_open(const char *name) {
    char path[PATH_MAX];
    int err = cl_netns_path(name, path);
    if (err < 0) return err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

struct cl_in_netns_job { int ns_fd; cl_netns_job job; void *ctx; int err; };

static void *cl_in_netns_thread(void *arg) {
    struct cl_in_netns_job *j = arg;
    if (setns(j->ns_fd, CLONE_NEWNET) < 0) { j->err = -errno; return NULL; }
    j->job(j->ctx);
    return NULL;
}

int cl_run_in_netns(int ns_fd, cl_netns_job job, void *ctx) {
    struct cl_in_netns_job j = { .ns_fd = ns_fd, .job = job, .ctx = ctx, .err = 0 };
    pthread_t thread;
    int err = pthread_create(&thread, NULL, cl_in_netns_thread, &j);
    if (err != 0) return -err;
    pthread_join(thread, NULL);
    return j.err;
}

// MARK: - misc

int cl_sysctl_write(const char *path, const char *value) {
    char full[PATH_MAX];
    if (snprintf(full, sizeof full, "/proc/sys/%s", path) >= (int)sizeof full) return -ENAMETOOLONG;
    int fd = open(full, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int err = n < 0 ? -errno : (n == (ssize_t)len ? 0 : -EIO);
    close(fd);
    return err;
}

struct cl_sysctl_job { int ns_fd; const char *path; const char *value; int result; };

static void *cl_sysctl_thread(void *arg) {
    struct cl_sysctl_job *job = arg;
    job->result = setns(job->ns_fd, CLONE_NEWNET) < 0 ? -errno : cl_sysctl_write(job->path, job->value);
    return NULL;
}

int cl_sysctl_write_in_netns(int ns_fd, const char *path, const char *value) {
    struct cl_sysctl_job job = { .ns_fd = ns_fd, .path = path, .value = value, .result = 0 };
    pthread_t thread;
    int err = pthread_create(&thread, NULL, cl_sysctl_thread, &job);
    if (err != 0) return -err;
    pthread_join(thread, NULL);
    return job.result;
}

int cl_tap_set_offload(int fd, int tso) {
    unsigned int flags = tso ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) : 0;
    return ioctl(fd, TUNSETOFFLOAD, flags) < 0 ? -errno : 0;
}

int cl_tap_set_offload_flags(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0 ? -errno : 0;
}

int cl_tap_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? -errno : 0;
}

int cl_tap_get_vnet_hdr_size(int fd) {
    int size = 0;
    return ioctl(fd, TUNGETVNETHDRSZ, &size) < 0 ? -errno : size;
}

// MARK: - ethtool (GRO/LRO on uplink NICs)

#include <sys/socket.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>

static int cl_ethtool(const char *ifname, void *data) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (strlen(ifname) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = data;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int cl_ethtool_get_gro(const char *ifname) {
    struct ethtool_value v = { .cmd = ETHTOOL_GGRO };
    int rc = cl_ethtool(ifname, &v);
    return rc < 0 ? rc : (v.data ? 1 : 0);
}

int cl_ethtool_set_gro(const char *ifname, int on) {
    struct ethtool_value v = { .cmd = ETHTOOL_SGRO, .data = on ? 1 : 0 };
    return cl_ethtool(ifname, &v);
}

// MARK: - threads

#include <sys/prctl.h>

int cl_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0) == 0 ? 0 : -errno;
}
