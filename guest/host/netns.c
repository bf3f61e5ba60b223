/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>
#include <unistd.h>

#include "../abi.h"
#include "netns.h"

static int ifreq_ioctl(unsigned long req, struct ifreq *ifr)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

    if (s < 0)
        return -errno;
    if (ioctl(s, req, ifr) < 0)
        r = -errno;
    close(s);
    return r;
}

static int set_flags(const char *ifname, short on)
{
    struct ifreq ifr;
    int r;

    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if ((r = ifreq_ioctl(SIOCGIFFLAGS, &ifr)) < 0)
        return r;
    ifr.ifr_flags |= on;
    return ifreq_ioctl(SIOCSIFFLAGS, &ifr);
}

int bg_netns_enter(int *home)
{
    *home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (*home < 0)
        return -errno;
    if (unshare(CLONE_NEWNET) < 0) {
        int e = -errno;
        close(*home);
        *home = -1;
        return e;
    }
    set_flags("lo", IFF_UP);
    /* No IPv6 in here: its neighbour discovery and MLD frames would only be noise. */
    for (int i = 0; i < 2; i++) {
        int fd = open(i ? "/proc/sys/net/ipv6/conf/all/disable_ipv6"
                        : "/proc/sys/net/ipv6/conf/default/disable_ipv6",
                      O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) != 1) {
                /* an IPv6-less kernel: nothing to quieten */
            }
            close(fd);
        }
    }
    return 0;
}

int bg_netns_leave(int home)
{
    int r = setns(home, CLONE_NEWNET) < 0 ? -errno : 0;

    close(home);
    return r;
}

static void set_addr(struct sockaddr *sa, uint32_t ip)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip)};

    memcpy(sa, &sin, sizeof(sin));
}

int bg_if_up(const char *ifname, uint32_t ip, int prefix)
{
    struct ifreq ifr;
    int r;

    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    set_addr(&ifr.ifr_addr, ip);
    if ((r = ifreq_ioctl(SIOCSIFADDR, &ifr)) < 0)
        return r;
    set_addr(&ifr.ifr_netmask, prefix ? ~0u << (32 - prefix) : 0);
    if ((r = ifreq_ioctl(SIOCSIFNETMASK, &ifr)) < 0)
        return r;
    return set_flags(ifname, IFF_UP);
}

int bg_neigh_add(const char *ifname, uint32_t ip, const uint8_t mac[6])
{
    struct arpreq a;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

    if (s < 0)
        return -errno;
    memset(&a, 0, sizeof(a));
    set_addr(&a.arp_pa, ip);
    a.arp_ha.sa_family = ARPHRD_ETHER;
    memcpy(a.arp_ha.sa_data, mac, 6);
    a.arp_flags = ATF_PERM | ATF_COM;
    strncpy(a.arp_dev, ifname, sizeof(a.arp_dev) - 1);
    if (ioctl(s, SIOCSARP, &a) < 0)
        r = -errno;
    close(s);
    return r;
}

int bg_if_mac(const char *ifname, uint8_t mac[6])
{
    struct ifreq ifr;
    int r;

    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if ((r = ifreq_ioctl(SIOCGIFHWADDR, &ifr)) < 0)
        return r;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

int bg_tap_open(const char *name)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int bg_udp_socket(uint32_t ip, uint16_t port, int rcvbuf)
{
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0)
        return -errno;
    if ((rcvbuf && setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0) ||
        bind(s, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        int e = -errno;
        close(s);
        return e;
    }
    return s;
}

void bg_net_payload(uint8_t *p, uint64_t seq, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        uint64_t w = k < 8 ? seq : BG_NET_WORD(seq, k / 8);
        p[k] = (uint8_t)(w >> (8 * (k % 8)));
    }
}

bool bg_net_payload_check(const uint8_t *p, size_t len, uint64_t *seq)
{
    uint64_t s = 0;

    if (len < 8)
        return false;
    for (int k = 7; k >= 0; k--)
        s = s << 8 | p[k];
    for (size_t k = 8; k < len; k++)
        if (p[k] != (uint8_t)(BG_NET_WORD(s, k / 8) >> (8 * (k % 8))))
            return false;
    *seq = s;
    return true;
}

uint16_t bg_inet_csum(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t s = 0;

    for (; len > 1; b += 2, len -= 2)
        s += (uint32_t)b[0] << 8 | b[1];
    if (len)
        s += (uint32_t)b[0] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* Ethernet and IPv4 headers for an l4 of len bytes; returns the l4's start. */
static uint8_t *eth_ip(uint8_t *f, const uint8_t smac[6], uint32_t sip, const uint8_t dmac[6],
                       uint32_t dip, uint8_t proto, size_t len)
{
    uint8_t *ip = f + 14;

    memcpy(f, dmac, 6);
    memcpy(f + 6, smac, 6);
    put16(f + 12, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + len));
    put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, sip);
    put32(ip + 16, dip);
    put16(ip + 10, bg_inet_csum(ip, 20));
    return ip + 20;
}

static size_t pad(uint8_t *f, size_t len)
{
    for (; len < 60; len++)
        f[len] = 0;
    return len;
}

size_t bg_frame_udp(uint8_t *f, const uint8_t smac[6], uint32_t sip, const uint8_t dmac[6],
                    uint32_t dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
                    size_t len)
{
    uint8_t *u = eth_ip(f, smac, sip, dmac, dip, 17, 8 + len);

    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(8 + len));
    put16(u + 6, 0);
    memcpy(u + 8, payload, len);
    return pad(f, 14 + 20 + 8 + len);
}

size_t bg_frame_echo(uint8_t *f, const uint8_t smac[6], uint32_t sip, const uint8_t dmac[6],
                     uint32_t dip, uint16_t id, uint16_t seq)
{
    uint8_t *m = eth_ip(f, smac, sip, dmac, dip, 1, 8 + 56);

    m[0] = 8;
    m[1] = 0;
    put16(m + 2, 0);
    put16(m + 4, id);
    put16(m + 6, seq);
    for (int k = 0; k < 56; k++)
        m[8 + k] = (uint8_t)(seq + k);
    put16(m + 2, bg_inet_csum(m, 64));
    return pad(f, 14 + 20 + 64);
}

bool bg_frame_is_echo_reply(const uint8_t *f, size_t len, uint16_t id, uint16_t seq)
{
    const uint8_t *m = f + 34;

    return len >= 34 + 8 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1 && m[0] == 0 &&
           (m[4] << 8 | m[5]) == id && (m[6] << 8 | m[7]) == seq;
}
