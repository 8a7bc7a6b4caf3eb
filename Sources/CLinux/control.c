#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include "clinux_control.h"

int cl_mkstemp_cloexec(char *template_path) {
    int fd = mkostemp(template_path, O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cl_accept_nonblock(int fd) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return c < 0 ? -errno : c;
}

int cl_peer_groups(int fd, unsigned int *groups, int max) {
    socklen_t len = (socklen_t)(max * sizeof(unsigned int));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) return -errno;
    return (int)(len / sizeof(unsigned int));
}
