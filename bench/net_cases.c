/* SPDX-License-Identifier: MIT */
/*
 * Networking: the bench guest's net-* workloads on a ringvm virtio-net
 * device over a tap, against the same traffic moved through a tap of this
 * process's own (the host's ceiling), each case in a network namespace it
 * makes for itself and drops after (no traffic leaves it):
 *  net/ping_rtt/{ringvm,host}        ICMP echo round trips to the namespace's
 *                                    kernel (median, us): the guest's net-ping, or
 *                                    this process writing the request into a
 *                                    tap and reading the reply back
 *  net/udp_tx_{64b,1400b}/{ringvm,host}  UDP datagrams into the namespace
 *                                    (pps, Gbit/s of payload): the guest's
 *                                    net-udp-tx, or this process writing the
 *                                    same frames into a tap; a socket bound
 *                                    in the namespace counts what arrived
 *  net/udp_rx_1400b/{ringvm,host}    UDP datagrams from the namespace: queued
 *                                    in the tap first, then taken by the
 *                                    guest's net-udp-rx, or read from the tap
 *                                    by this process
 * The guest's own TSC times its runs; VM creation is outside them.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "../guest/host/netns.h"
#include "bench.h"
#include "ringvm_vm.h"

#define TAP       "rvmbench0"
#define PING_N    1000
#define RX_N      20000
#define FRAME_MAX 2048
#define TX_FRAMES 256 /* distinct frames the host case cycles through */

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x00, 0x4d, 0x02};

struct net_work {
    const char *test; /* net-ping, net-udp-tx, net-udp-rx */
    uint32_t size;    /* UDP payload */
    uint32_t n;
};

static int set_txqlen(const char *ifname, int len)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

    if (s < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_qlen = len;
    if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0)
        r = -errno;
    close(s);
    return r;
}

/*
 * The namespace's side of tap TAP (it exists by now): the host address, the
 * guest's MAC known without ARP, a queue deep enough for RX_N frames.
 */
static int plumb(uint8_t host_mac[6])
{
    int r;

    if ((r = bg_if_up(TAP, BG_NET_HOST_IP, 24)) < 0 ||
        (r = bg_neigh_add(TAP, BG_NET_GUEST_IP, guest_mac)) < 0 ||
        (r = set_txqlen(TAP, 2 * RX_N)) < 0 || (r = bg_if_mac(TAP, host_mac)) < 0)
        return r;
    return 0;
}

/* n datagrams of size bytes to the guest's address, then the stop datagram. */
static int send_to_guest(uint32_t n, uint32_t size)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(BG_NET_PORT),
                             .sin_addr.s_addr = htonl(BG_NET_GUEST_IP)};
    uint8_t buf[FRAME_MAX];
    int s = bg_udp_socket(BG_NET_HOST_IP, 0, 0);

    if (s < 0)
        return s;
    for (uint32_t i = 0; i < n; i++) {
        bg_net_payload(buf, i, size);
        if (sendto(s, buf, size, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)size) {
            close(s);
            return -EIO;
        }
    }
    ssize_t w = sendto(s, BG_NET_STOP, BG_NET_STOP_LEN, 0, (struct sockaddr *)&to, sizeof(to));
    close(s);
    return w == BG_NET_STOP_LEN ? 0 : -EIO;
}

/* What reached the namespace's UDP socket: datagrams with a valid payload. */
static uint64_t drain_count(int s)
{
    uint8_t buf[FRAME_MAX];
    uint64_t ok = 0, seq;
    ssize_t k;

    while ((k = recv(s, buf, sizeof(buf), MSG_DONTWAIT)) >= 0)
        if (bg_net_payload_check(buf, (size_t)k, &seq))
            ok++;
    return ok;
}

/* ---- ringvm ---- */

struct ringvm_out {
    double seconds;   /* the measured stretch, by the guest's TSC */
    uint64_t count;   /* replies, datagrams sent or received */
    double rtt_us;    /* net-ping: the median */
    uint64_t arrived; /* net-udp-tx: what the namespace's socket got */
};

static int ringvm_run(struct rvm_hv *hv, const struct guest_image *img, const struct net_work *w,
                      int cpu, struct ringvm_out *o)
{
    struct rvm_net_config nc = {.tap = TAP, .fd = -1};
    struct rvm_vm_config c;
    struct bench_vm b = {.vm = NULL};
    uint8_t host_mac[6];
    char word[96], cmd[320];
    uint64_t v = 0, rtt = 0;
    int r, sock = -1, home;

    memcpy(nc.mac, guest_mac, 6);
    if ((r = bg_netns_enter(&home)) < 0)
        return r;
    rvm_vm_config_init(&c);
    c.mem.size = 64ULL << 20;
    bench_vm_config_pin_apart(&c, cpu);
    /* The command line needs the device's word, so the VM comes first, then its guest. */
    r = bench_vm_create_config(hv, NULL, NULL, &c, &b);
    if (r == 0)
        r = rvm_vm_add_virtio_net(b.vm, &nc, word, sizeof(word));
    if (r == 0)
        r = plumb(host_mac);
    if (r == 0 && w->test[4] == 'u' && w->test[8] == 't') {
        sock = bg_udp_socket(BG_NET_HOST_IP, BG_NET_PORT, 256 << 20);
        r = sock < 0 ? sock : 0;
    }
    if (r == 0 && w->test[8] == 'r')
        r = send_to_guest(w->n, w->size); /* queued in the tap until the guest reads */
    snprintf(cmd, sizeof(cmd), "test=%s n=%u size=%u port=%u %s", w->test, w->n, w->size,
             BG_NET_PORT, word);
    if (r == 0)
        r = bench_vm_load(&b, img, cmd);
    if (r == 0)
        r = bench_vm_run_for(&b, 60000);
    int64_t khz = b.vm ? rvm_vcpu_tsc_khz(rvm_vm_vcpu(b.vm, 0)) : 0;
    if (r == 0 && khz <= 0)
        r = -EIO;
    if (r == 0 && w->test[4] == 'p') {
        if (bg_result_value(b.con.buf, "replies", &o->count) < 0 ||
            bg_result_value(b.con.buf, "rtt_median", &rtt) < 0 || o->count != w->n)
            r = -EIO;
        o->rtt_us = (double)rtt / (double)khz * 1e3;
        o->seconds = o->rtt_us * 1e-6 * (double)o->count;
    } else if (r == 0) {
        if (bg_result_value(b.con.buf, "cycles", &v) < 0 ||
            bg_result_value(b.con.buf, w->test[8] == 't' ? "sent" : "received", &o->count) < 0 ||
            v == 0)
            r = -EIO;
        o->seconds = (double)v / ((double)khz * 1e3);
        if (sock >= 0)
            o->arrived = drain_count(sock);
    }
    bench_vm_destroy(&b);
    if (sock >= 0)
        close(sock);
    bg_netns_leave(home);
    return r;
}

static void ringvm_case(struct bench_ctx *ctx, const struct net_work *w)
{
    struct guest_image img;
    struct rvm_hv *hv;
    int cpu;

    if (guest_image_get(&img) < 0) {
        bench_fail(ctx, "cannot load the guest");
        return;
    }
    if (rvm_hv_open(NULL, &hv) < 0) {
        bench_fail(ctx, "cannot open /dev/kvm");
        free(img.elf);
        return;
    }
    cpu = bench_pin_self();
    while (bench_keep_running(ctx)) {
        struct ringvm_out o = {0};
        int r = ringvm_run(hv, &img, w, cpu, &o);

        if (r < 0) {
            bench_fail(ctx, r == -EPERM ? "cannot make a network namespace (needs root)"
                                        : "the guest's network run failed");
            break;
        }
        bench_set_iteration_time(ctx, o.seconds);
        if (w->test[4] == 'p') {
            bench_counter_add(ctx, "rtt_us", o.rtt_us);
        } else {
            bench_counter_add(ctx, "pps", (double)o.count / o.seconds);
            bench_counter_add(ctx, "Gbit_per_s", (double)o.count * w->size * 8 / o.seconds / 1e9);
            if (w->test[8] == 't')
                bench_counter_add(ctx, "arrived_pct", 100.0 * (double)o.arrived / o.count);
        }
    }
    rvm_hv_close(hv);
    free(img.elf);
}

/* ---- the host's ceiling: a tap of this process's own ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Round trips of echo requests written into the tap, replies read back: the median (us). */
static int host_ping(int tap, const uint8_t host_mac[6], uint32_t n, double *rtt_us)
{
    uint8_t f[FRAME_MAX], r[FRAME_MAX];
    static double t[PING_N];

    for (uint32_t i = 0; i < n && i < PING_N; i++) {
        size_t len = bg_frame_echo(f, guest_mac, BG_NET_GUEST_IP, host_mac, BG_NET_HOST_IP,
                                   BG_NET_PING_ID, (uint16_t)i);
        double t0 = bench_now();
        if (write(tap, f, len) != (ssize_t)len)
            return -EIO;
        for (;;) { /* other frames, if any, are skipped */
            ssize_t k = read(tap, r, sizeof(r));
            if (k < 0)
                return -errno;
            if (bg_frame_is_echo_reply(r, (size_t)k, BG_NET_PING_ID, (uint16_t)i))
                break;
        }
        t[i] = (bench_now() - t0) * 1e6;
    }
    qsort(t, n, sizeof(t[0]), cmp_double);
    *rtt_us = t[n / 2];
    return 0;
}

static int host_udp_tx(int tap, const uint8_t host_mac[6], const struct net_work *w,
                       double *seconds)
{
    static uint8_t frames[TX_FRAMES][FRAME_MAX];
    static size_t lens[TX_FRAMES];
    uint8_t payload[FRAME_MAX];

    for (uint32_t i = 0; i < TX_FRAMES; i++) {
        bg_net_payload(payload, i, w->size);
        lens[i] = bg_frame_udp(frames[i], guest_mac, BG_NET_GUEST_IP, host_mac, BG_NET_HOST_IP,
                               40000, BG_NET_PORT, payload, w->size);
    }
    double t0 = bench_now();
    for (uint32_t i = 0; i < w->n; i++)
        if (write(tap, frames[i % TX_FRAMES], lens[i % TX_FRAMES]) != (ssize_t)lens[i % TX_FRAMES])
            return -EIO;
    *seconds = bench_now() - t0;
    return 0;
}

static int host_udp_rx(int tap, const struct net_work *w, double *seconds, uint64_t *got)
{
    uint8_t f[FRAME_MAX];
    double t0 = 0;

    *got = 0;
    while (*got < w->n) {
        ssize_t k = read(tap, f, sizeof(f));
        if (k < 0)
            return -errno;
        /* The stop datagram (UDP length 8 + 7) before n arrived: the rest was dropped. */
        if (k >= 42 + BG_NET_STOP_LEN && f[23] == 17 &&
            (f[38] << 8 | f[39]) == 8 + BG_NET_STOP_LEN &&
            !memcmp(f + 42, BG_NET_STOP, BG_NET_STOP_LEN))
            break;
        if (k >= 42 + 8 && f[12] == 0x08 && f[13] == 0 && f[23] == 17) {
            if (!*got)
                t0 = bench_now();
            ++*got;
        }
    }
    *seconds = bench_now() - t0;
    return 0;
}

static int host_run(const struct net_work *w, double *seconds, double *value, uint64_t *count)
{
    uint8_t host_mac[6];
    int home, tap, sock = -1, r;

    if ((r = bg_netns_enter(&home)) < 0)
        return r;
    if ((tap = bg_tap_open(TAP)) < 0) {
        bg_netns_leave(home);
        return tap;
    }
    r = plumb(host_mac);
    if (r == 0 && w->test[4] == 'p') {
        r = host_ping(tap, host_mac, w->n, value);
        *seconds = *value * 1e-6 * w->n;
        *count = w->n;
    } else if (r == 0 && w->test[8] == 't') {
        sock = bg_udp_socket(BG_NET_HOST_IP, BG_NET_PORT, 256 << 20);
        r = sock < 0 ? sock : host_udp_tx(tap, host_mac, w, seconds);
        *count = w->n;
        if (r == 0)
            *value = (double)drain_count(sock);
    } else if (r == 0) {
        r = send_to_guest(w->n, w->size);
        if (r == 0)
            r = host_udp_rx(tap, w, seconds, count);
    }
    if (sock >= 0)
        close(sock);
    close(tap);
    bg_netns_leave(home);
    return r;
}

static void host_case(struct bench_ctx *ctx, const struct net_work *w)
{
    bench_pin_self(); /* as the ringvm cases: the tap's traffic on one CPU */
    while (bench_keep_running(ctx)) {
        double s = 0, value = 0;
        uint64_t count = 0;
        int r = host_run(w, &s, &value, &count);

        if (r < 0 || s <= 0) {
            bench_fail(ctx, r == -EPERM ? "cannot make a network namespace (needs root)"
                                        : "the host's tap run failed");
            break;
        }
        bench_set_iteration_time(ctx, s);
        if (w->test[4] == 'p') {
            bench_counter_add(ctx, "rtt_us", value);
        } else {
            bench_counter_add(ctx, "pps", (double)count / s);
            bench_counter_add(ctx, "Gbit_per_s", (double)count * w->size * 8 / s / 1e9);
            if (w->test[8] == 't')
                bench_counter_add(ctx, "arrived_pct", 100.0 * value / (double)count);
        }
    }
}

static const struct net_work ping = {"net-ping", 56, PING_N};
static const struct net_work udp_tx_64 = {"net-udp-tx", 64, 100000};
static const struct net_work udp_tx_1400 = {"net-udp-tx", 1400, 40000};
static const struct net_work udp_rx_1400 = {"net-udp-rx", 1400, RX_N};

#define NET_CASE(name, work)                                                                       \
    static void name##_ringvm(struct bench_ctx *c)                                                 \
    {                                                                                              \
        ringvm_case(c, &work);                                                                     \
    }                                                                                              \
    static void name##_host(struct bench_ctx *c)                                                   \
    {                                                                                              \
        host_case(c, &work);                                                                       \
    }

NET_CASE(ping, ping)
NET_CASE(udp_tx_64, udp_tx_64)
NET_CASE(udp_tx_1400, udp_tx_1400)
NET_CASE(udp_rx_1400, udp_rx_1400)

const struct bench_case bench_net_cases[] = {
    {"net/ping_rtt/host", ping_host, true, 0, "rtt_us", 0, NULL},
    {"net/ping_rtt/ringvm", ping_ringvm, true, 0, "rtt_us", 0, NULL},
    {"net/udp_tx_64b/host", udp_tx_64_host, true, 0, "pps", 0, NULL},
    {"net/udp_tx_64b/ringvm", udp_tx_64_ringvm, true, 0, "pps", 0, NULL},
    {"net/udp_tx_1400b/host", udp_tx_1400_host, true, 0, "pps", 0, NULL},
    {"net/udp_tx_1400b/ringvm", udp_tx_1400_ringvm, true, 0, "pps", 0, NULL},
    {"net/udp_rx_1400b/host", udp_rx_1400_host, true, 0, "pps", 0, NULL},
    {"net/udp_rx_1400b/ringvm", udp_rx_1400_ringvm, true, 0, "pps", 0, NULL},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
