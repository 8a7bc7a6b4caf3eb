// See include/cvhost.h for each function's contract: >= 0 on success, -errno on failure.
#define _GNU_SOURCE
#include "cvhost.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int fill_addr(struct sockaddr_un *sa, const char *path) {
    size_t n = strlen(path);
    if (n == 0) return -EINVAL;
    if (n >= sizeof(sa->sun_path)) return -ENAMETOOLONG;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    return 0;
}

int cv_listen(const char *path) {
    struct sockaddr_un sa;
    int r = fill_addr(&sa, path);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cv_accept(int fd) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    return c < 0 ? -errno : c;
}

int cv_connect(const char *path) {
    struct sockaddr_un sa;
    int r = fill_addr(&sa, path);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

long cv_recv(int fd, void *buf, size_t len, int *fds, int max_fds, int *nfds) {
    *nfds = 0;
    union { char buf[CMSG_SPACE(sizeof(int) * CV_MAX_FDS)]; struct cmsghdr align; } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    if (n < 0) return -errno;
    int truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *got = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (!truncated && *nfds < max_fds) fds[(*nfds)++] = got[i];
            else close(got[i]);
        }
    }
    if (truncated) {
        for (int i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
        return -EMSGSIZE;
    }
    return n;
}

long cv_send(int fd, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > CV_MAX_FDS) return -EINVAL;
    union { char buf[CMSG_SPACE(sizeof(int) * CV_MAX_FDS)]; struct cmsghdr align; } control;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(control.buf, 0, sizeof(control.buf));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do { n = sendmsg(fd, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int cv_mmap_shared(int fd, uint64_t size, uint64_t offset, void **out) {
    if (size == 0) return -EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
}

int cv_munmap(void *addr, uint64_t size) { return munmap(addr, size) < 0 ? -errno : 0; }

int cv_memfd(const char *name, uint64_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int cv_poll2(int a, int b, int timeout_ms) {
    struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    int n = poll(p, 2, timeout_ms);
    if (n < 0) return -errno;
    int r = 0;
    if (a >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) r |= 1;
    if (b >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) r |= 2;
    return r;
}

int cv_shutdown(int fd) { return shutdown(fd, SHUT_RDWR) < 0 ? -errno : 0; }

int64_t cv_file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return st.st_size;
}

int64_t cv_block_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return st.st_blksize;
}

int cv_set_timeouts(int fd, int ms) {
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    return 0;
}
