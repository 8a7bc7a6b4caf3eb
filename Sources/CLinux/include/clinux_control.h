// CLinux control-plane helpers: GNU calls that Glibc's Swift module does not import
// (they are declared only under _GNU_SOURCE). Same contract as the rest of CLinux:
// a non-negative result, or -errno.
#ifndef CLINUX_CONTROL_H
#define CLINUX_CONTROL_H

#ifdef __cplusplus
extern "C" {
#endif

/// mkostemp(template, O_CLOEXEC): creates a unique file from `template` (which must end in
/// "XXXXXX", replaced in place), mode 0600, close-on-exec from the start (no window for a
/// concurrent fork+exec to inherit it). Returns the fd or -errno.
int cl_mkstemp_cloexec(char *template_path);

/// accept4(fd, NULL, NULL, SOCK_NONBLOCK|SOCK_CLOEXEC). Returns the new fd or -errno
/// (-EAGAIN when no client waits).
int cl_accept_nonblock(int fd);

/// getsockopt(SO_PEERGROUPS) on a connected Unix socket: the peer's supplementary group
/// IDs when it connected (Linux >= 4.13; Glibc's Swift module lacks the constant). Fills at
/// most `max` into `groups` and returns how many the peer has (-ERANGE when more than
/// `max`), or -errno.
int cl_peer_groups(int fd, unsigned int *groups, int max);

#ifdef __cplusplus
}
#endif
#endif
