// CVMSpawn: process creation for the VM runner, in C because Swift's Glibc module does not
// import posix_spawn_file_actions_addclosefrom_np (it needs _GNU_SOURCE) nor pidfd_open.
// Each function returns a non-negative result on success and -errno on failure, so Swift
// never reads the global errno after the fact.
#ifndef CVMSPAWN_H
#define CVMSPAWN_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// posix_spawn(3)s `path` (absolute) with `argv` and `envp` (NULL-terminated) such that the
/// child:
///   - reads stdin from /dev/null when `stdin_fd` < 0, else from `stdin_fd`;
///   - writes stdout to `stdout_fd` and stderr to `stderr_fd` (/dev/null when < 0);
///   - has `inherit[i]` at descriptor 3 + i (i < `count`), e.g. TAP fds for `-netdev tap,fd=N`;
///   - has every other descriptor closed (the daemon's epoll, sockets and other TAPs stay out);
///   - leads its own process group (a terminal's Ctrl-C does not reach it; the whole group
///     can be signalled);
///   - starts with an empty signal mask and default dispositions for every signal, whatever
///     the caller blocks or ignores (SIGPIPE, SIGCHLD…).
/// The caller's descriptors are untouched: source and target numbers may overlap, because
/// each source is first duplicated above every target (close-on-exec) and the duplicates are
/// closed again before returning. Writes the child's pid to `*pid`. Returns 0 or -errno
/// (-ENOENT, -EACCES for `path`; -EBADF for a bad descriptor).
int cvm_spawn(const char *path, char *const argv[], char *const envp[],
              int stdin_fd, int stdout_fd, int stderr_fd,
              const int *inherit, int count, pid_t *pid);

/// `cvm_spawn` with the child in the network namespace at `netns_path` (a file such as
/// /run/netns/NAME): a short-lived thread enters it with setns(CLONE_NEWNET) and spawns, so
/// the child starts there; the caller's threads are untouched. Needs CAP_SYS_ADMIN. Returns
/// 0 or -errno (-ENOENT: no such namespace; the rest as `cvm_spawn`).
int cvm_spawn_in_netns(const char *netns_path, const char *path, char *const argv[], char *const envp[],
                       int stdin_fd, int stdout_fd, int stderr_fd,
                       const int *inherit, int count, pid_t *pid);

/// pidfd_open(2): a descriptor (close-on-exec) that polls readable when process `pid`
/// exits. Returns the fd or -errno (-ENOSYS before Linux 5.3, -ESRCH).
int cvm_pidfd_open(pid_t pid);

/// waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT): 1 when `pid` has exited (it stays a
/// zombie, so its pid cannot be reused until it is reaped), 0 while it runs, or -errno
/// (-ECHILD: not our child or already reaped).
int cvm_has_exited(pid_t pid);

/// pipe2(2) with O_CLOEXEC: fds[0] reads, fds[1] writes. Returns 0 or -errno.
int cvm_pipe(int fds[2]);

/// sendmsg(2) of `len` bytes of `buf` on Unix stream socket `sock`, carrying descriptor `fd`
/// as SCM_RIGHTS ancillary data (unix(7)): how QMP's `getfd` receives a descriptor (a
/// migration socket for `migrate fd:NAME`). MSG_NOSIGNAL; retried on EINTR. Returns the
/// bytes sent (the descriptor travels with the first byte) or -errno.
long cvm_send_with_fd(int sock, const void *buf, unsigned long len, int fd);

#ifdef __cplusplus
}
#endif

#endif
