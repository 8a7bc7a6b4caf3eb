// See include/cnetlink.h for each helper's contract: 0 on success, negative NLE_* on failure.
#define _GNU_SOURCE
#include "cnetlink.h"
// The real libnl headers after ours: the compiler checks every prototype we re-declared.
#include <netlink/netlink.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <netlink/cache.h>
#include <netlink/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/if.h>

_Static_assert(CNL_NLE_FAILURE == NLE_FAILURE, "NLE_FAILURE");
_Static_assert(CNL_NLE_BAD_SOCK == NLE_BAD_SOCK, "NLE_BAD_SOCK");
_Static_assert(CNL_NLE_NOMEM == NLE_NOMEM, "NLE_NOMEM");
_Static_assert(CNL_NLE_EXIST == NLE_EXIST, "NLE_EXIST");
_Static_assert(CNL_NLE_INVAL == NLE_INVAL, "NLE_INVAL");
_Static_assert(CNL_NLE_OPNOTSUPP == NLE_OPNOTSUPP, "NLE_OPNOTSUPP");
_Static_assert(CNL_NLE_OBJ_NOTFOUND == NLE_OBJ_NOTFOUND, "NLE_OBJ_NOTFOUND");
_Static_assert(CNL_NLE_NOADDR == NLE_NOADDR, "NLE_NOADDR");
_Static_assert(CNL_NLE_BUSY == NLE_BUSY, "NLE_BUSY");
_Static_assert(CNL_NLE_PERM == NLE_PERM, "NLE_PERM");
_Static_assert(CNL_NLE_NODEV == NLE_NODEV, "NLE_NODEV");

const int CNL_AF_UNSPEC = AF_UNSPEC;
const int CNL_AF_INET = AF_INET;
const int CNL_AF_INET6 = AF_INET6;

static int cnl_address_length(int family) { return family == AF_INET ? 4 : family == AF_INET6 ? 16 : -1; }

int cnl_addr_add(struct nl_sock *sk, int ifindex, int family, const uint8_t *address, int prefixlen, int no_dad) {
    int len = cnl_address_length(family);
    if (len < 0 || prefixlen < 0 || prefixlen > 8 * len) return -NLE_INVAL;
    struct rtnl_addr *addr = rtnl_addr_alloc();
    if (addr == NULL) return -NLE_NOMEM;
    struct nl_addr *local = nl_addr_build(family, address, len);
    if (local == NULL) { rtnl_addr_put(addr); return -NLE_NOMEM; }
    nl_addr_set_prefixlen(local, prefixlen);
    rtnl_addr_set_ifindex(addr, ifindex);
    rtnl_addr_set_family(addr, family);
    int err = rtnl_addr_set_local(addr, local); // takes its own reference
    nl_addr_put(local);
    if (err == 0) {
        rtnl_addr_set_prefixlen(addr, prefixlen);
        if (no_dad) rtnl_addr_set_flags(addr, IFA_F_NODAD);
        err = rtnl_addr_add(sk, addr, 0);
    }
    rtnl_addr_put(addr);
    return err;
}

int cnl_route_add(struct nl_sock *sk, int family, const uint8_t *dst, int dst_len, const uint8_t *gateway, int ifindex) {
    int len = cnl_address_length(family);
    if (len < 0 || dst_len < 0 || dst_len > 8 * len || (dst == NULL && dst_len != 0)) return -NLE_INVAL;
    uint8_t zero[16] = {0};
    struct rtnl_route *route = rtnl_route_alloc();
    if (route == NULL) return -NLE_NOMEM;
    int err = 0;
    struct nl_addr *d = nl_addr_build(family, dst ? dst : zero, len);
    if (d == NULL) { err = -NLE_NOMEM; goto out; }
    nl_addr_set_prefixlen(d, dst_len);
    rtnl_route_set_family(route, family);
    err = rtnl_route_set_dst(route, d); // takes its own reference
    nl_addr_put(d);
    if (err < 0) goto out;
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, RTPROT_STATIC);
    rtnl_route_set_scope(route, gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
    rtnl_route_set_type(route, RTN_UNICAST);
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (nh == NULL) { err = -NLE_NOMEM; goto out; }
    rtnl_route_nh_set_ifindex(nh, ifindex);
    if (gateway) {
        struct nl_addr *gw = nl_addr_build(family, gateway, len);
        if (gw == NULL) { rtnl_route_nh_free(nh); err = -NLE_NOMEM; goto out; }
        rtnl_route_nh_set_gateway(nh, gw); // takes its own reference
        nl_addr_put(gw);
    }
    rtnl_route_add_nexthop(route, nh); // the route owns nh from here
    err = rtnl_route_add(sk, route, NLM_F_EXCL);
out:
    rtnl_route_put(route);
    return err;
}
const unsigned int CNL_IFF_UP = IFF_UP;
const unsigned int CNL_IFF_RUNNING = IFF_RUNNING;
const unsigned int CNL_IFF_LOWER_UP = IFF_LOWER_UP;

int cnl_route_socket(struct nl_sock **out) {
    *out = NULL;
    struct nl_sock *sk = nl_socket_alloc();
    if (sk == NULL) return -NLE_NOMEM;
    int err = nl_connect(sk, NETLINK_ROUTE);
    if (err < 0) { nl_socket_free(sk); return err; }
    *out = sk;
    return 0;
}

struct cnl_netns_job { int ns_fd; struct nl_sock *sk; int result; int sys_errno; };

// Runs on its own thread so that setns changes only this thread's namespace.
static void *cnl_netns_thread(void *arg) {
    struct cnl_netns_job *job = arg;
    if (setns(job->ns_fd, CLONE_NEWNET) < 0) {
        job->sys_errno = errno;
        job->result = -nl_syserr2nlerr(errno);
        return NULL;
    }
    job->result = cnl_route_socket(&job->sk);
    return NULL;
}

int cnl_route_socket_in_netns(int ns_fd, struct nl_sock **out, int *out_errno) {
    struct cnl_netns_job job = { .ns_fd = ns_fd, .sk = NULL, .result = 0, .sys_errno = 0 };
    pthread_t thread;
    *out = NULL;
    int err = pthread_create(&thread, NULL, cnl_netns_thread, &job);
    if (err != 0) {
        if (out_errno) *out_errno = err;
        return -nl_syserr2nlerr(err);
    }
    pthread_join(thread, NULL);
    if (out_errno) *out_errno = job.sys_errno;
    *out = job.sk;
    return job.result;
}

int cnl_link_set_mac(struct rtnl_link *link, const uint8_t mac[6]) {
    struct nl_addr *a = nl_addr_build(AF_LLC, mac, 6);
    if (a == NULL) return -NLE_NOMEM;
    rtnl_link_set_addr(link, a); // takes its own reference
    nl_addr_put(a);
    return 0;
}

int cnl_link_get_mac(struct rtnl_link *link, uint8_t mac[6]) {
    struct nl_addr *a = rtnl_link_get_addr(link); // borrowed
    if (a == NULL || nl_addr_get_len(a) != 6) return -NLE_NOADDR;
    memcpy(mac, nl_addr_get_binary_addr(a), 6);
    return 0;
}

int cnl_addr_set_ipv4_local(struct rtnl_addr *addr, uint32_t address, int prefixlen) {
    uint32_t be = htonl(address);
    struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof be);
    if (a == NULL) return -NLE_NOMEM;
    nl_addr_set_prefixlen(a, prefixlen);
    int err = rtnl_addr_set_local(addr, a); // takes its own reference
    nl_addr_put(a);
    if (err < 0) return err;
    rtnl_addr_set_prefixlen(addr, prefixlen);
    return 0;
}

// MARK: - link events

#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>

int cnl_link_monitor_open(struct nl_sock **out) {
    *out = NULL;
    struct nl_sock *sk = nl_socket_alloc();
    if (sk == NULL) return -NLE_NOMEM;
    nl_socket_disable_seq_check(sk);
    int err = nl_connect(sk, NETLINK_ROUTE);
    if (err < 0) { nl_socket_free(sk); return err; }
    err = nl_socket_add_membership(sk, RTNLGRP_LINK);
    if (err < 0) { nl_socket_free(sk); return err; }
    err = nl_socket_set_nonblocking(sk);
    if (err < 0) { nl_socket_free(sk); return err; }
    *out = sk;
    return 0;
}

int cnl_link_monitor_fd(struct nl_sock *sk) { return nl_socket_get_fd(sk); }

struct cnl_event_buffer { struct cnl_link_event *out; int max; int count; };

static int cnl_on_link_message(struct nl_msg *msg, void *arg) {
    struct cnl_event_buffer *b = arg;
    struct nlmsghdr *h = nlmsg_hdr(msg);
    if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) return NL_OK;
    if (b->count >= b->max) return NL_OK;
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return NL_OK;
    struct ifinfomsg *ifi = nlmsg_data(h);
    struct cnl_link_event *e = &b->out[b->count++];
    memset(e, 0, sizeof *e);
    e->ifindex = ifi->ifi_index;
    e->flags = ifi->ifi_flags;
    e->deleted = h->nlmsg_type == RTM_DELLINK;
    struct nlattr *name = nlmsg_find_attr(h, sizeof(struct ifinfomsg), IFLA_IFNAME);
    if (name != NULL) {
        int len = nla_len(name);
        if (len > 15) len = 15;
        memcpy(e->name, nla_data(name), (size_t)len);
        e->name[len] = 0;
        e->name[15] = 0;
    }
    return NL_OK;
}

int cnl_link_monitor_read(struct nl_sock *sk, struct cnl_link_event *out, int max) {
    struct cnl_event_buffer b = { out, max, 0 };
    nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, cnl_on_link_message, &b);
    int err = nl_recvmsgs_default(sk);
    nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, NULL, NULL);
    if (err < 0 && err != -NLE_AGAIN) return b.count > 0 ? b.count : err;
    return b.count;
}
