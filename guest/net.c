/* SPDX-License-Identifier: MIT */
/*
 * Bench guest network workloads (test=net-ping|net-udp-tx|net-udp-rx): a
 * polled virtio-net driver at CPL3 (one receive and one transmit queue, no
 * interrupts) and just enough Ethernet, ARP, IPv4, ICMP and UDP to resolve
 * one peer, answer ARP and echo requests, ping, and send or count UDP.
 *
 * Command line: ip=A.B.C.D (ours), peer=A.B.C.D (the host or the other
 * guest), nic=K (the K'th virtio-net device, default 0), port= (UDP port:
 * the peer's for net-udp-tx, ours for net-udp-rx; default 5201), size=
 * (UDP payload bytes, default 1400), n= (pings, datagrams). Header layouts
 * follow RFC 791/792/768/826 and the virtio spec's virtio_net_hdr.
 */
#include <stddef.h>
#include <stdint.h>

#include "vio.h"

#define VIRTIO_NET_F_MTU     3
#define VIRTIO_NET_F_MAC     5
#define VIRTIO_NET_F_STATUS  16
#define VIRTIO_NET_S_LINK_UP 1

#define RXQ       0
#define TXQ       1
#define BUF_SIZE  4096u
#define RX_BUF(i) ((uint8_t *)(uintptr_t)(BG_NET_BUF_ADDR + (uint64_t)(i)*BUF_SIZE))
#define TX_BUF(i) ((uint8_t *)(uintptr_t)(BG_NET_BUF_ADDR + BG_NET_BUF_SIZE / 2 + (i)*BUF_SIZE))
_Static_assert(2 * VQ_SIZE_MAX * BUF_SIZE <= BG_NET_BUF_SIZE, "buffers fit");

#define ETH_HLEN      14
#define ETH_P_IP      0x0800
#define ETH_P_ARP     0x0806
#define IP_HLEN       20
#define IPPROTO_ICMP_ 1
#define IPPROTO_UDP_  17
#define UDP_HLEN      8
#define ICMP_HLEN     8
#define PING_PAYLOAD  56
#define DEFAULT_PORT  5201
#define SRC_PORT      40000
#define DEFAULT_SIZE  1400

/* Spins between looks at the device's status while waiting (NEEDS_RESET, dead peer). */
#define STATUS_CHECK_SPINS (1u << 20)
/* An unanswered ping or ARP request is given up after about this many TSC cycles. */
#define TIMEOUT_CYCLES (1ULL << 32)
#define ARP_TRIES      20

static uint8_t rx_mem[VQ_MEM_SIZE] __attribute__((aligned(4096)));
static uint8_t tx_mem[VQ_MEM_SIZE] __attribute__((aligned(4096)));

static struct {
    struct vdev d;
    struct vq rx, tx;
    uint32_t hdr; /* virtio_net_hdr bytes before each frame: 12 modern, 10 legacy */
    uint32_t mtu;
    uint8_t mac[6], peer_mac[6];
    int peer_known;
    uint32_t ip, peer_ip; /* host byte order */
    uint16_t port;
    uint16_t tx_free[VQ_SIZE_MAX];
    uint32_t tx_nfree;
    uint16_t ip_id;
    uint64_t kicks;
    /* What arrived. */
    uint64_t rx_frames, rx_bad, arp_answered, echo_answered;
    /* net-ping: the reply awaited. */
    uint16_t ping_seq;
    int ping_wait;
    uint64_t ping_tsc;
    /* net-udp-rx. */
    uint32_t want_size; /* 0: any */
    uint64_t udp_rx, udp_bytes, udp_bad, udp_reordered, udp_last_seq, udp_first_tsc, udp_last_tsc;
    int udp_stop;
    int link_lost; /* the device took the link down while we waited */
} net;

/* ---- bytes ---- */

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void copy(uint8_t *d, const uint8_t *s, uint32_t n)
{
    while (n--)
        *d++ = *s++;
}

static int same(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    while (n--)
        if (*a++ != *b++)
            return 0;
    return 1;
}

/* The Internet checksum (RFC 1071) of n bytes, folded and complemented. */
static uint16_t csum(const uint8_t *p, uint32_t n)
{
    uint64_t s = 0;

    for (; n > 1; p += 2, n -= 2)
        s += get16(p);
    if (n)
        s += (uint32_t)p[0] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* The payload of datagram seq, len bytes (len >= 8). */
static void payload_fill(uint8_t *p, uint64_t seq, uint32_t len)
{
    for (uint32_t k = 0; k < len; k++) {
        uint64_t w = k < 8 ? seq : BG_NET_WORD(seq, k / 8);
        p[k] = (uint8_t)(w >> (8 * (k % 8)));
    }
}

static int payload_check(const uint8_t *p, uint32_t len, uint64_t *seq)
{
    uint64_t s = 0;

    if (len < 8)
        return 0;
    for (int k = 7; k >= 0; k--)
        s = s << 8 | p[k];
    for (uint32_t k = 8; k < len; k++)
        if (p[k] != (uint8_t)(BG_NET_WORD(s, k / 8) >> (8 * (k % 8))))
            return 0;
    *seq = s;
    return 1;
}

/* ---- command line ---- */

static uint32_t parse_ip(const char *v, const char *what)
{
    const char *p = v;
    uint32_t ip = 0;

    for (int i = 0; i < 4; i++) {
        uint64_t b;

        if (!parse_u64(&p, &b) || b > 255 || (i < 3 && *p++ != '.'))
            cmdline_error(what, v);
        ip = ip << 8 | (uint32_t)b;
    }
    if (*p && !is_space(*p))
        cmdline_error(what, v);
    return ip;
}

/* ---- the device ---- */

static void status_check(void)
{
    if (vdev_rd(&net.d, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
        dev_error("device set NEEDS_RESET");
}

static int link_up(void)
{
    if (!(net.d.features & (1ULL << VIRTIO_NET_F_STATUS)))
        return 1;
    return (vdev_config32(&net.d, 4) >> 16) & VIRTIO_NET_S_LINK_UP;
}

static void rx_post(uint16_t id)
{
    VQ_AVAIL_RING(&net.rx, net.rx.avail_idx % net.rx.size) = id;
    net.rx.avail_idx++;
}

static void dev_setup(const char *cmdline)
{
    uint64_t nic = 0;

    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "nic=")))
            nic = parse_param(v, "bad nic=", 0, 63);
    }
    if (!vdev_find(cmdline, VIRTIO_ID_NET, nic, &net.d))
        dev_error("no virtio-net device for nic=");
    vdev_init(&net.d, VIRTIO_ID_NET,
              1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_MTU);
    /* Legacy devices without MRG_RXBUF use the 10-byte header. */
    net.hdr = net.d.version >= 2 ? 12 : 10;
    vq_init(&net.d, &net.rx, RXQ, rx_mem, VQ_SIZE_MAX, 1);
    vq_init(&net.d, &net.tx, TXQ, tx_mem, VQ_SIZE_MAX, 1);
    if (net.d.features & (1ULL << VIRTIO_NET_F_MAC)) {
        for (uint32_t i = 0; i < 6; i++)
            net.mac[i] = vdev_config8(&net.d, i);
    } else {
        static const uint8_t def[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
        copy(net.mac, def, 6);
    }
    net.mtu = 1500;
    if (net.d.features & (1ULL << VIRTIO_NET_F_MTU))
        net.mtu = vdev_config32(&net.d, 8) >> 16;
    if (net.mtu < 68 || net.hdr + ETH_HLEN + net.mtu > BUF_SIZE)
        dev_error("MTU out of range for the guest's buffers");

    for (uint16_t i = 0; i < net.rx.size; i++) {
        net.rx.desc[i].addr = (uintptr_t)RX_BUF(i);
        net.rx.desc[i].len = BUF_SIZE;
        net.rx.desc[i].flags = VRING_DESC_F_WRITE;
        rx_post(i);
    }
    for (uint16_t i = 0; i < net.tx.size; i++) {
        net.tx.desc[i].addr = (uintptr_t)TX_BUF(i);
        net.tx_free[i] = (uint16_t)(net.tx.size - 1 - i);
    }
    net.tx_nfree = net.tx.size;
    vdev_ready(&net.d);
    net.kicks += (uint64_t)vq_kick(&net.d, &net.rx);
}

/* Takes back the transmit buffers the device is done with. */
static void tx_reclaim(void)
{
    uint16_t used = VQ_USED_IDX(&net.tx);

    barrier();
    while (net.tx.used_seen != used) {
        uint32_t id = VQ_USED_RING(&net.tx)[net.tx.used_seen % net.tx.size].id;

        net.tx.used_seen++;
        if (id >= net.tx.size || net.tx_nfree >= net.tx.size)
            dev_error("bad id in transmit used ring");
        net.tx_free[net.tx_nfree++] = (uint16_t)id;
    }
}

/* A free transmit buffer (its frame starts net.hdr bytes in); waits for one. */
static uint16_t tx_get(uint8_t **frame)
{
    uint32_t spins = 0;

    while (!net.tx_nfree) {
        tx_reclaim();
        if (!net.tx_nfree) {
            cpu_pause();
            if (++spins == STATUS_CHECK_SPINS) {
                spins = 0;
                status_check();
            }
        }
    }
    uint16_t id = net.tx_free[--net.tx_nfree];
    uint8_t *b = TX_BUF(id);

    for (uint32_t i = 0; i < net.hdr; i++) /* no offloads: flags 0, GSO_NONE */
        b[i] = 0;
    *frame = b + net.hdr;
    return id;
}

/* Queues the frame in buffer id (len bytes past the header); kick() sends what is queued. */
static void tx_queue(uint16_t id, uint32_t len)
{
    net.tx.desc[id].len = net.hdr + len;
    net.tx.desc[id].flags = 0;
    VQ_AVAIL_RING(&net.tx, net.tx.avail_idx % net.tx.size) = id;
    net.tx.avail_idx++;
}

static void tx_kick(void)
{
    net.kicks += (uint64_t)vq_kick(&net.d, &net.tx);
}

static void eth_fill(uint8_t *f, const uint8_t *dst, uint16_t type)
{
    copy(f, dst, 6);
    copy(f + 6, net.mac, 6);
    put16(f + 12, type);
}

/* An IPv4 header for len payload bytes of protocol proto to dst. */
static void ip_fill(uint8_t *ip, uint32_t dst, uint8_t proto, uint32_t len)
{
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, (uint16_t)(IP_HLEN + len));
    put16(ip + 4, net.ip_id++);
    put16(ip + 6, 0x4000); /* DF */
    ip[8] = 64;
    ip[9] = proto;
    put16(ip + 10, 0);
    put32(ip + 12, net.ip);
    put32(ip + 16, dst);
    put16(ip + 10, csum(ip, IP_HLEN));
}

static void arp_send(uint16_t op, const uint8_t *tha, uint32_t tpa)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[6];
    uint8_t *f;
    uint16_t id = tx_get(&f);

    eth_fill(f, op == 1 ? bcast : tha, ETH_P_ARP);
    put16(f + 14, 1);
    put16(f + 16, ETH_P_IP);
    f[18] = 6;
    f[19] = 4;
    put16(f + 20, op);
    copy(f + 22, net.mac, 6);
    put32(f + 28, net.ip);
    copy(f + 32, op == 1 ? zero : tha, 6);
    put32(f + 38, tpa);
    for (uint32_t i = 42; i < 60; i++) /* pad to the 60-byte minimum */
        f[i] = 0;
    tx_queue(id, 60);
    tx_kick();
}

static void rx_arp(const uint8_t *f, uint32_t len)
{
    if (len < 42 || get16(f + 14) != 1 || get16(f + 16) != ETH_P_IP || f[18] != 6 || f[19] != 4)
        return;
    uint16_t op = get16(f + 20);
    uint32_t spa = get32(f + 28), tpa = get32(f + 38);

    if (spa == net.peer_ip && (op == 2 || tpa == net.ip)) {
        copy(net.peer_mac, f + 22, 6);
        net.peer_known = 1;
    }
    if (op == 1 && tpa == net.ip) {
        arp_send(2, f + 22, spa);
        net.arp_answered++;
    }
}

static void rx_icmp(const uint8_t *f, uint32_t iplen)
{
    const uint8_t *icmp = f + ETH_HLEN + IP_HLEN;
    uint32_t n = iplen - IP_HLEN;

    if (n < ICMP_HLEN || csum(icmp, n) != 0)
        return;
    if (icmp[0] == 8 && n <= net.mtu - IP_HLEN) { /* echo request: the same back */
        uint8_t *r;
        uint16_t id = tx_get(&r);

        eth_fill(r, f + 6, ETH_P_IP);
        ip_fill(r + ETH_HLEN, get32(f + ETH_HLEN + 12), IPPROTO_ICMP_, n);
        copy(r + ETH_HLEN + IP_HLEN, icmp, n);
        r[ETH_HLEN + IP_HLEN] = 0;
        put16(r + ETH_HLEN + IP_HLEN + 2, 0);
        put16(r + ETH_HLEN + IP_HLEN + 2, csum(r + ETH_HLEN + IP_HLEN, n));
        tx_queue(id, ETH_HLEN + IP_HLEN + n);
        tx_kick();
        net.echo_answered++;
    } else if (icmp[0] == 0 && net.ping_wait && get16(icmp + 4) == BG_NET_PING_ID &&
               get16(icmp + 6) == net.ping_seq) {
        net.ping_tsc = rdtsc();
        net.ping_wait = 0;
    }
}

static void rx_udp(const uint8_t *f, uint32_t iplen)
{
    const uint8_t *udp = f + ETH_HLEN + IP_HLEN;
    uint32_t ulen;
    uint64_t seq;

    if (iplen < IP_HLEN + UDP_HLEN || get16(udp + 2) != net.port)
        return;
    ulen = get16(udp + 4);
    if (ulen < UDP_HLEN || ulen > iplen - IP_HLEN)
        return;
    ulen -= UDP_HLEN;
    if (ulen == BG_NET_STOP_LEN && same(udp + UDP_HLEN, (const uint8_t *)BG_NET_STOP, ulen)) {
        net.udp_stop = 1;
        return;
    }
    uint64_t now = rdtsc();
    if (!net.udp_rx)
        net.udp_first_tsc = now;
    net.udp_last_tsc = now;
    net.udp_rx++;
    net.udp_bytes += ulen;
    if ((net.want_size && ulen != net.want_size) || !payload_check(udp + UDP_HLEN, ulen, &seq)) {
        net.udp_bad++;
        return;
    }
    if (net.udp_rx > 1 && seq <= net.udp_last_seq)
        net.udp_reordered++;
    net.udp_last_seq = seq;
}

static void rx_ip(const uint8_t *f, uint32_t len)
{
    const uint8_t *ip = f + ETH_HLEN;
    uint32_t tot;

    if (len < ETH_HLEN + IP_HLEN || ip[0] != 0x45 || csum(ip, IP_HLEN) != 0)
        return; /* not IPv4, options (never sent to us here), or damaged */
    tot = get16(ip + 2);
    if (tot < IP_HLEN || tot > len - ETH_HLEN || get32(ip + 16) != net.ip ||
        (get16(ip + 6) & 0x3fff)) /* fragments are not reassembled */
        return;
    if (ip[9] == IPPROTO_ICMP_)
        rx_icmp(f, tot);
    else if (ip[9] == IPPROTO_UDP_)
        rx_udp(f, tot);
}

/* Handles every frame that has arrived and gives the buffers back. */
static void rx_poll(void)
{
    uint16_t used = VQ_USED_IDX(&net.rx);
    int any = 0;

    barrier();
    while (net.rx.used_seen != used) {
        volatile struct vring_used_elem *e = &VQ_USED_RING(&net.rx)[net.rx.used_seen % net.rx.size];
        uint32_t id = e->id, len = e->len;

        net.rx.used_seen++;
        if (id >= net.rx.size)
            dev_error("bad id in receive used ring");
        if (len > net.hdr + ETH_HLEN && len <= BUF_SIZE) {
            const uint8_t *f = RX_BUF(id) + net.hdr;

            len -= net.hdr;
            net.rx_frames++;
            if (get16(f + 12) == ETH_P_ARP)
                rx_arp(f, len);
            else if (get16(f + 12) == ETH_P_IP)
                rx_ip(f, len);
        } else {
            net.rx_bad++;
        }
        rx_post((uint16_t)id);
        any = 1;
    }
    if (any)
        net.kicks += (uint64_t)vq_kick(&net.d, &net.rx);
}

/* Polls the receive queue until *flag reads `until` or timeout cycles pass; 1 if it did. */
static int rx_wait(volatile int *flag, int until, uint64_t timeout)
{
    uint64_t t0 = rdtsc();
    uint32_t spins = 0;

    for (;;) {
        rx_poll();
        if (*flag == until)
            return 1;
        if (++spins % 1024 == 0 && rdtsc() - t0 > timeout)
            return 0;
        cpu_pause();
        if (spins == STATUS_CHECK_SPINS) {
            spins = 0;
            status_check();
            if (!link_up()) {
                net.link_lost = 1;
                return 0;
            }
        }
    }
}

static void resolve_peer(void)
{
    for (int i = 0; i < ARP_TRIES && !net.peer_known; i++) {
        arp_send(1, NULL, net.peer_ip);
        rx_wait(&net.peer_known, 1, TIMEOUT_CYCLES / 8);
    }
    if (!net.peer_known)
        dev_error("no ARP reply from peer=");
}

/* ---- workloads ---- */

struct net_run {
    uint64_t n, cycles, ok, lost, rtt_min, rtt_max, rtt_sum;
    uint32_t size;
};

/* net-ping: each round trip's cycles, for the median (the first RTT_KEPT pings). */
#define RTT_KEPT 65536
static uint64_t rtts[RTT_KEPT];

static uint64_t median(uint64_t *v, uint64_t n)
{
    /* Shell sort, gaps shrinking by 2.2: no recursion, no allocation. */
    for (uint64_t gap = n / 2; gap > 0; gap = gap == 2 ? 1 : gap * 5 / 11)
        for (uint64_t i = gap; i < n; i++) {
            uint64_t x = v[i], j = i;

            for (; j >= gap && v[j - gap] > x; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
    return n ? v[n / 2] : 0;
}

static void do_ping(struct net_run *r)
{
    resolve_peer();
    r->rtt_min = UINT64_MAX;
    for (uint64_t i = 0; i < r->n; i++) {
        uint8_t *f;
        uint16_t id = tx_get(&f);
        uint8_t *icmp = f + ETH_HLEN + IP_HLEN;

        eth_fill(f, net.peer_mac, ETH_P_IP);
        ip_fill(f + ETH_HLEN, net.peer_ip, IPPROTO_ICMP_, ICMP_HLEN + PING_PAYLOAD);
        icmp[0] = 8;
        icmp[1] = 0;
        put16(icmp + 2, 0);
        put16(icmp + 4, BG_NET_PING_ID);
        put16(icmp + 6, (uint16_t)i);
        for (uint32_t k = 0; k < PING_PAYLOAD; k++)
            icmp[ICMP_HLEN + k] = (uint8_t)(i + k);
        put16(icmp + 2, csum(icmp, ICMP_HLEN + PING_PAYLOAD));
        net.ping_seq = (uint16_t)i;
        net.ping_wait = 1;
        tx_queue(id, ETH_HLEN + IP_HLEN + ICMP_HLEN + PING_PAYLOAD);
        uint64_t t0 = rdtsc();
        tx_kick();
        if (!rx_wait(&net.ping_wait, 0, TIMEOUT_CYCLES)) {
            net.ping_wait = 0;
            r->lost++;
            if (net.link_lost)
                break; /* nothing more will come */
            continue;
        }
        uint64_t rtt = net.ping_tsc - t0;
        if (r->ok < RTT_KEPT)
            rtts[r->ok] = rtt;
        r->ok++;
        r->rtt_sum += rtt;
        r->rtt_min = rtt < r->rtt_min ? rtt : r->rtt_min;
        r->rtt_max = rtt > r->rtt_max ? rtt : r->rtt_max;
    }
    if (!r->ok)
        r->rtt_min = 0;
}

static void udp_send(const uint8_t *payload_or_null, uint64_t seq, uint32_t size)
{
    uint8_t *f;
    uint16_t id = tx_get(&f);
    uint8_t *udp = f + ETH_HLEN + IP_HLEN;

    eth_fill(f, net.peer_mac, ETH_P_IP);
    ip_fill(f + ETH_HLEN, net.peer_ip, IPPROTO_UDP_, UDP_HLEN + size);
    put16(udp, SRC_PORT);
    put16(udp + 2, net.port);
    put16(udp + 4, (uint16_t)(UDP_HLEN + size));
    put16(udp + 6, 0); /* no checksum: allowed over IPv4 (RFC 768) */
    if (payload_or_null)
        copy(udp + UDP_HLEN, payload_or_null, size);
    else
        payload_fill(udp + UDP_HLEN, seq, size);
    uint32_t len = ETH_HLEN + IP_HLEN + UDP_HLEN + size;
    for (; len < 60; len++) /* pad to the 60-byte minimum */
        f[len] = 0;
    tx_queue(id, len);
}

static void do_udp_tx(struct net_run *r)
{
    resolve_peer();
    uint64_t t0 = rdtsc();
    for (uint64_t seq = 0; seq < r->n;) {
        /* As many as there are free buffers, then one kick for the batch. */
        tx_reclaim();
        do {
            udp_send(NULL, seq++, r->size);
        } while (seq < r->n && net.tx_nfree);
        tx_kick();
    }
    while (net.tx_nfree != net.tx.size) /* until the device has sent them all */
        tx_reclaim();
    r->cycles = rdtsc() - t0;
    r->ok = r->n;
    udp_send((const uint8_t *)BG_NET_STOP, 0, BG_NET_STOP_LEN);
    tx_kick();
    while (net.tx_nfree != net.tx.size)
        tx_reclaim();
}

static void do_udp_rx(struct net_run *r)
{
    uint32_t spins = 0;

    while (net.udp_rx < r->n && !net.udp_stop && !net.link_lost) {
        rx_poll();
        cpu_pause();
        if (++spins == STATUS_CHECK_SPINS) {
            spins = 0;
            status_check();
            net.link_lost = !link_up();
        }
    }
    r->ok = net.udp_rx;
    r->cycles = net.udp_rx > 1 ? net.udp_last_tsc - net.udp_first_tsc : 0;
}

static void put_kv(const char *k, uint64_t v)
{
    con_putc(' ');
    con_puts(k);
    con_putc('=');
    con_putdec(v);
}

void net_main(const char *cmdline, const char *test, uint64_t n)
{
    struct net_run r = {.n = n, .size = DEFAULT_SIZE};
    int size_given = 0;
    const char *name;

    if (word_eq(test, "net-ping"))
        name = "net-ping";
    else if (word_eq(test, "net-udp-tx"))
        name = "net-udp-tx";
    else if (word_eq(test, "net-udp-rx"))
        name = "net-udp-rx";
    else
        unknown_test(test);

    net.ip = parse_ip("192.168.77.2", "");
    net.peer_ip = parse_ip("192.168.77.1", "");
    net.port = DEFAULT_PORT;
    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "ip=")))
            net.ip = parse_ip(v, "bad ip=");
        else if ((v = word_value(w, "peer=")))
            net.peer_ip = parse_ip(v, "bad peer=");
        else if ((v = word_value(w, "port=")))
            net.port = (uint16_t)parse_param(v, "bad port=", 1, 65535);
        else if ((v = word_value(w, "size="))) {
            r.size = (uint32_t)parse_param(v, "bad size=", 8, 65535);
            size_given = 1;
        }
    }
    dev_setup(cmdline);
    if (r.size > net.mtu - IP_HLEN - UDP_HLEN)
        cmdline_error("size= over the MTU", NULL);
    if (!link_up())
        dev_error("link down");

    if (name[4] == 'p') {
        do_ping(&r);
    } else if (name[8] == 't') {
        do_udp_tx(&r);
    } else {
        net.want_size = size_given ? r.size : 0;
        do_udp_rx(&r);
    }
    status_check();

    con_puts("RESULT test=");
    con_puts(name);
    put_kv("n", n);
    if (name[4] == 'p') {
        put_kv("replies", r.ok);
        put_kv("lost", r.lost);
        put_kv("rtt_min", r.rtt_min);
        put_kv("rtt_avg", r.ok ? r.rtt_sum / r.ok : 0);
        put_kv("rtt_median", median(rtts, r.ok < RTT_KEPT ? r.ok : RTT_KEPT));
        put_kv("rtt_max", r.rtt_max);
    } else {
        put_kv(name[8] == 't' ? "sent" : "received", r.ok);
        put_kv("size", r.size);
        put_kv("cycles", r.cycles);
        if (name[8] == 'r') {
            put_kv("bytes", net.udp_bytes);
            put_kv("bad", net.udp_bad);
            put_kv("reordered", net.udp_reordered);
            put_kv("stopped", (uint64_t)net.udp_stop);
        }
    }
    put_kv("rx_frames", net.rx_frames);
    put_kv("rx_empty", net.rx_bad); /* buffers given back without a frame */
    put_kv("arp_answered", net.arp_answered);
    put_kv("echo_answered", net.echo_answered);
    put_kv("kicks", net.kicks);
    put_kv("link", (uint64_t)link_up());
    con_putc('\n');
    bg_exit(BG_EXIT_OK);
}
