#define _GNU_SOURCE
#include "cvmspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int cvm_spawn(const char *path, char *const argv[], char *const envp[],
              int stdin_fd, int stdout_fd, int stderr_fd,
              const int *inherit, int count, pid_t *pid) {
    if (count < 0 || count > 64) return -EINVAL;
    // Every source moves above every target first, so that dup2(source_i, 3 + i) can never
    // overwrite a source still to be duplicated (a TAP fd 4 meant for 3, a log fd 3…).
    int floor = 3 + count + 1;
    int dups[64 + 3];
    int sources[64 + 3];
    int n = 0;
    sources[n++] = stdin_fd;
    sources[n++] = stdout_fd;
    sources[n++] = stderr_fd;
    for (int i = 0; i < count; i++) sources[n++] = inherit[i];
    int rc = 0;
    int made = 0;
    for (; made < n; made++) {
        if (sources[made] < 0) { dups[made] = -1; continue; }
        dups[made] = fcntl(sources[made], F_DUPFD_CLOEXEC, floor);
        if (dups[made] < 0) { rc = -errno; goto out; }
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    if ((rc = -posix_spawn_file_actions_init(&fa)) != 0) goto out;
    if ((rc = -posix_spawnattr_init(&attr)) != 0) { posix_spawn_file_actions_destroy(&fa); goto out; }

    if (dups[0] < 0) rc = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    else rc = -posix_spawn_file_actions_adddup2(&fa, dups[0], 0);
    for (int target = 1; target <= 2 && !rc; target++) {
        if (dups[target] < 0) rc = -posix_spawn_file_actions_addopen(&fa, target, "/dev/null", O_WRONLY, 0);
        else rc = -posix_spawn_file_actions_adddup2(&fa, dups[target], target);
    }
    for (int i = 0; i < count && !rc; i++) rc = -posix_spawn_file_actions_adddup2(&fa, dups[3 + i], 3 + i);
    // dup2 cleared close-on-exec on the targets; everything from 3 + count up is closed.
    if (!rc) rc = -posix_spawn_file_actions_addclosefrom_np(&fa, 3 + count);

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    if (!rc) rc = -posix_spawnattr_setsigmask(&attr, &empty);
    if (!rc) rc = -posix_spawnattr_setsigdefault(&attr, &all);
    if (!rc) rc = -posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!rc) rc = -posix_spawn(pid, path, &fa, &attr, argv, envp);

    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
out:
    for (int i = 0; i < made; i++) if (dups[i] >= 0) close(dups[i]);
    return rc;
}

int cvm_pidfd_open(pid_t pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int cvm_has_exited(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) return -errno;
    return info.si_pid != 0;
}

int cvm_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
}

long cvm_send_with_fd(int sock, const void *buf, unsigned long len, int fd) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char space[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (long)n;
}

struct cvm_netns_spawn {
    int ns_fd;
    const char *path;
    char *const *argv;
    char *const *envp;
    int stdin_fd, stdout_fd, stderr_fd;
    const int *inherit;
    int count;
    pid_t *pid;
    int rc;
};

// A thread of its own enters the namespace (setns changes only the calling thread's) and
// spawns: the child takes the spawning thread's namespaces.
static void *cvm_netns_spawn_thread(void *arg) {
    struct cvm_netns_spawn *j = arg;
    if (setns(j->ns_fd, CLONE_NEWNET) < 0) { j->rc = -errno; return NULL; }
    j->rc = cvm_spawn(j->path, j->argv, j->envp, j->stdin_fd, j->stdout_fd, j->stderr_fd, j->inherit, j->count, j->pid);
    return NULL;
}

int cvm_spawn_in_netns(const char *netns_path, const char *path, char *const argv[], char *const envp[],
                       int stdin_fd, int stdout_fd, int stderr_fd,
                       const int *inherit, int count, pid_t *pid) {
    int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) return -errno;
    struct cvm_netns_spawn j = {ns, path, argv, envp, stdin_fd, stdout_fd, stderr_fd, inherit, count, pid, 0};
    pthread_t thread;
    int err = pthread_create(&thread, NULL, cvm_netns_spawn_thread, &j);
    if (err == 0) pthread_join(thread, NULL);
    close(ns);
    return err != 0 ? -err : j.rc;
}
