// CNetlink: libnl-route-3 for Swift.
//
// Why this header re-declares libnl's API instead of including <netlink/netlink.h>:
// libnl installs its headers under /usr/include/libnl3, and the target's cSettings
// (-I/usr/include/libnl3) reach only the compilation of cnetlink.c, not Swift modules that
// import this header (Swift would need `-Xcc -I/usr/include/libnl3` in every client target,
// or a systemLibrary target with pkgConfig "libnl-route-3.0"). So the public header forward-
// declares libnl's opaque types and the (non-variadic) functions Swift calls, with libnl's
// exact prototypes. cnetlink.c includes this header AND the real libnl headers, so any
// drift is a compile error ("conflicting types"), and static asserts pin the NLE_* values.
// Delete these declarations and #include the libnl headers once Package.swift passes the
// include path to Swift clients.
//
// Error contract (libnl's own): 0 or a count on success, a NEGATIVE NLE_* code on failure.
// NLE_* codes are not errno values: describe them with nl_geterror(). Where a system call
// fails inside a helper, its errno is also reported through an out-parameter.
#ifndef CNETLINK_H
#define CNETLINK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - libnl types (opaque)

struct nl_sock;
struct nl_cache;
struct nl_object;
struct nl_addr;
struct rtnl_link;
struct rtnl_addr;

// MARK: - libnl error codes (netlink/errno.h; pinned by static asserts in cnetlink.c)

#define CNL_NLE_FAILURE      1
#define CNL_NLE_BAD_SOCK     3
#define CNL_NLE_NOMEM        5
#define CNL_NLE_EXIST        6
#define CNL_NLE_INVAL        7
#define CNL_NLE_OPNOTSUPP    10
#define CNL_NLE_OBJ_NOTFOUND 12
#define CNL_NLE_NOADDR       19
#define CNL_NLE_BUSY         25
#define CNL_NLE_PERM         28
#define CNL_NLE_NODEV        31

/// Interface flag bits (linux/if.h), re-exported so Swift need not import linux/if.h,
/// which clashes with glibc's net/if.h.
extern const unsigned int CNL_IFF_UP;
extern const unsigned int CNL_IFF_RUNNING;
extern const unsigned int CNL_IFF_LOWER_UP;

/// AF_UNSPEC, for rtnl_link_alloc_cache.
extern const int CNL_AF_UNSPEC;

// MARK: - libnl functions Swift calls directly (prototypes exactly as libnl declares them)

extern const char *nl_geterror(int);
extern int nl_syserr2nlerr(int);
extern void nl_socket_free(struct nl_sock *);

extern void nl_cache_free(struct nl_cache *);
extern struct nl_object *nl_cache_get_first(struct nl_cache *);
extern struct nl_object *nl_cache_get_next(struct nl_object *);

extern struct rtnl_link *rtnl_link_alloc(void);
extern void rtnl_link_put(struct rtnl_link *);
extern int rtnl_link_alloc_cache(struct nl_sock *, int, struct nl_cache **);
extern int rtnl_link_get_kernel(struct nl_sock *, int, const char *, struct rtnl_link **);
extern int rtnl_link_change(struct nl_sock *, struct rtnl_link *, struct rtnl_link *, int);
extern int rtnl_link_delete(struct nl_sock *, const struct rtnl_link *);
extern void rtnl_link_set_name(struct rtnl_link *, const char *);
extern char *rtnl_link_get_name(struct rtnl_link *);
extern void rtnl_link_set_flags(struct rtnl_link *, unsigned int);
extern void rtnl_link_unset_flags(struct rtnl_link *, unsigned int);
extern unsigned int rtnl_link_get_flags(struct rtnl_link *);
extern void rtnl_link_set_mtu(struct rtnl_link *, unsigned int);
extern unsigned int rtnl_link_get_mtu(struct rtnl_link *);
extern int rtnl_link_get_ifindex(struct rtnl_link *);
extern void rtnl_link_set_ns_fd(struct rtnl_link *, int);

extern struct rtnl_addr *rtnl_addr_alloc(void);
extern void rtnl_addr_put(struct rtnl_addr *);
extern int rtnl_addr_add(struct nl_sock *, struct rtnl_addr *, int);
extern void rtnl_addr_set_ifindex(struct rtnl_addr *, int);

// MARK: - helpers

/// Allocates a libnl socket and connects it to NETLINK_ROUTE in the calling thread's
/// network namespace. On success stores it in `*out` (free with nl_socket_free) and
/// returns 0; otherwise returns a negative NLE_* code and `*out` is NULL.
int cnl_route_socket(struct nl_sock **out);

/// Like cnl_route_socket, but the socket is created inside the network namespace `ns_fd`
/// refers to (an fd of /run/netns/NAME): a short-lived pthread calls setns(ns_fd,
/// CLONE_NEWNET), then nl_socket_alloc + nl_connect(NETLINK_ROUTE). A netlink socket stays
/// bound to the namespace it was created in, so every request on it acts in that namespace;
/// the calling thread's namespace is untouched. Needs CAP_SYS_ADMIN for setns.
/// Returns 0 or a negative NLE_* code; when setns or pthread_create failed, `*out_errno`
/// (if not NULL) receives their errno, else 0.
int cnl_route_socket_in_netns(int ns_fd, struct nl_sock **out, int *out_errno);

/// Sets the link-layer address of `link` to the 6 octets at `mac` (nl_addr_build(AF_LLC)
/// + rtnl_link_set_addr). Returns 0 or -NLE_NOMEM.
int cnl_link_set_mac(struct rtnl_link *link, const uint8_t mac[6]);

/// Copies the link-layer address of `link` into `mac` if it is 6 bytes long.
/// Returns 0, or -NLE_NOADDR when the link has no 6-byte address.
int cnl_link_get_mac(struct rtnl_link *link, uint8_t mac[6]);

/// Sets the local IPv4 address and prefix length of `addr` (nl_addr_build(AF_INET) plus
/// nl_addr_set_prefixlen, then rtnl_addr_set_local and rtnl_addr_set_prefixlen).
/// `address` is in host byte order. Returns 0 or a negative NLE_* code.
int cnl_addr_set_ipv4_local(struct rtnl_addr *addr, uint32_t address, int prefixlen);

// MARK: - addresses and routes of both families

/// AF_INET and AF_INET6, for the helpers below.
extern const int CNL_AF_INET;
extern const int CNL_AF_INET6;

/// Adds the address `address` (4 bytes for AF_INET, 16 for AF_INET6, network byte order)
/// with `prefixlen` to link `ifindex` (rtnl_addr_add: RTM_NEWADDR with NLM_F_CREATE |
/// NLM_F_EXCL). `no_dad` != 0 sets IFA_F_NODAD: an IPv6 address is usable at once, never
/// `tentative`, and never ends `dadfailed` (see Fabric+Addressing.swift for why).
/// Returns 0 or a negative NLE_* code (-NLE_EXIST when the address is already there).
int cnl_addr_add(struct nl_sock *sk, int ifindex, int family, const uint8_t *address, int prefixlen, int no_dad);

/// Adds a unicast route in the main table (rtnl_route_add with NLM_F_EXCL; protocol static,
/// scope universe): destination `dst`/`dst_len` (`dst_len` 0 is the default route; `dst`
/// may then be NULL), through gateway `gateway` (NULL: directly connected) on link
/// `ifindex`. Addresses as for cnl_addr_add, all of `family`.
/// Returns 0 or a negative NLE_* code (-NLE_EXIST when such a route exists).
int cnl_route_add(struct nl_sock *sk, int family, const uint8_t *dst, int dst_len, const uint8_t *gateway, int ifindex);

// MARK: - link events (RTNLGRP_LINK)

/// One link change as the kernel announced it (RTM_NEWLINK / RTM_DELLINK).
struct cnl_link_event {
    int ifindex;
    unsigned int flags;   ///< IFF_* (IFF_UP, IFF_LOWER_UP = carrier, IFF_RUNNING)
    int deleted;          ///< 1 for RTM_DELLINK: the interface is gone
    char name[16];        ///< IFLA_IFNAME when present, else empty
};

/// Opens a libnl socket subscribed to RTNLGRP_LINK (nl_socket_add_membership), non-blocking,
/// sequence checks off (events are unsolicited). Returns 0 or a negative NLE_* code.
int cnl_link_monitor_open(struct nl_sock **out);

/// The socket's fd, for poll/epoll.
int cnl_link_monitor_fd(struct nl_sock *sk);

/// Reads what is queued (nl_recvmsgs_default through a callback) into `out`, at most `max`
/// events; returns their count (0 when nothing was queued) or a negative NLE_* code.
/// Events beyond `max` in one read are dropped: callers re-query link state when the
/// count reaches `max`.
int cnl_link_monitor_read(struct nl_sock *sk, struct cnl_link_event *out, int max);

#ifdef __cplusplus
}
#endif
#endif
