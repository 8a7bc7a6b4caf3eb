// CNetlink: libnl-route-3 for Swift. Swift calls libnl's non-variadic API directly through
// these includes; the helpers below cover what Swift cannot express well (a socket bound
// inside another network namespace, building nl_addr values, macros).
//
// Error contract: helpers return 0 (or a count) on success and a NEGATIVE libnl NLE_* code
// on failure, exactly like libnl itself. NLE_* codes are not errno values: describe them
// with nl_geterror(). Where a system call fails, the helper also reports its errno through
// an out-parameter, so the caller can say precisely what went wrong.
#ifndef CNETLINK_H
#define CNETLINK_H

#include <stdint.h>
#include <netlink/netlink.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <netlink/cache.h>
#include <netlink/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/addr.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Interface flag bits (linux/if.h), re-exported so Swift need not import linux/if.h,
/// which clashes with glibc's net/if.h.
extern const unsigned int CNL_IFF_UP;
extern const unsigned int CNL_IFF_RUNNING;
extern const unsigned int CNL_IFF_LOWER_UP;

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

/// Sets the link-layer address of `link` to the 6 octets at `mac` (nl_addr_build(AF_LLC)).
/// Returns 0 or -NLE_NOMEM.
int cnl_link_set_mac(struct rtnl_link *link, const uint8_t mac[6]);

/// Copies the link-layer address of `link` into `mac` if it is 6 bytes long.
/// Returns 0, or -NLE_NOADDR when the link has no 6-byte address.
int cnl_link_get_mac(struct rtnl_link *link, uint8_t mac[6]);

/// Sets the local IPv4 address and prefix length of `addr` (nl_addr_build(AF_INET) plus
/// nl_addr_set_prefixlen, then rtnl_addr_set_local and rtnl_addr_set_prefixlen).
/// `address` is in host byte order. Returns 0 or a negative NLE_* code.
int cnl_addr_set_ipv4_local(struct rtnl_addr *addr, uint32_t address, int prefixlen);

#ifdef __cplusplus
}
#endif
#endif
