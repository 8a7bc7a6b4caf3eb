/*
 * tapcopy: a minimal TAP-to-TAP copier, the "C copier (reference)" column of
 * Scripts/bench/run.sh. It is a reference point, NOT part of Tapestry: no MAC learning,
 * no VLANs, no counters, just the floor of any userspace switch that moves frames between
 * TAP fds — one read() and one write() per frame, woken by epoll.
 *
 *   tapcopy TAP_A TAP_B      creates both TAPs, prints "ready", copies A <-> B until killed
 *
 * Like Tapestry, it opens the TAPs with IFF_VNET_HDR and enables TSO/checksum offload
 * (TUNSETOFFLOAD), so TCP crosses it as 64 KiB GSO frames with the virtio-net header
 * passed through unchanged. A frame the other side cannot take (EAGAIN) is dropped.
 * Built by run.sh with `cc -O2`.
 */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static int open_tap(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  int hdr = 10; /* struct virtio_net_hdr, without num_buffers */
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) die("TUNSETVNETHDRSZ");
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) die("TUNSETOFFLOAD");
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: tapcopy TAP_A TAP_B\n"); return 2; }
  int fds[2] = { open_tap(argv[1]), open_tap(argv[2]) };
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
  }
  static char buf[10 + 65536 + 64]; /* vnet header + a 64 KiB GSO frame */
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    struct epoll_event evs[2];
    int n = epoll_wait(ep, evs, 2, -1);
    for (int e = 0; e < n; e++) {
      int from = evs[e].data.u32;
      for (int k = 0; k < 64; k++) { /* up to 64 frames per wake-up, then the other side */
        ssize_t len = read(fds[from], buf, sizeof buf);
        if (len <= 0) break;
        (void)!write(fds[1 - from], buf, len);
      }
    }
  }
}
