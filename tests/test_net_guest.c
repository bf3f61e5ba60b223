/* SPDX-License-Identifier: MIT */
/*
 * virtio-net with a real driver: the bench guest's net-* workloads on a tap
 * in a network namespace each test makes for itself (its kernel is the
 * other end: it answers ARP and ping, and its sockets send and count UDP),
 * and two guests linked by the socket backend. The namespaces and taps go
 * when their tests end. Tests skip, saying so, without KVM or without the
 * right to make a namespace (root).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "../guest/abi.h"
#include "../guest/host/netns.h"
#include "common/testutil.h"

#define TAP "rvmnet0"

struct gvm {
    struct tvm t;
    char word[96];
};

/* A VM with a virtio-net device on nc; the guest is loaded by gvm_load(). */
static void gvm_create(struct gvm *g, const struct rvm_net_config *nc)
{
    struct rvm_hv_config hc = {
        .log = log_to_buf, .log_opaque = &g->t.log, .log_level = RVM_LOG_WARN};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &g->t.con};
    struct rvm_vm_config c;

    memset(g, 0, sizeof(*g));
    rvm_vm_config_init(&c);
    c.mem.size = 64 << 20;
    assert_int_equal(rvm_hv_open(&hc, &g->t.hv), 0);
    assert_int_equal(rvm_vm_create(g->t.hv, &c, &g->t.vm), 0);
    assert_int_equal(rvm_uart_attach(g->t.vm, &uc, NULL), 0);
    assert_int_equal(rvm_debug_exit_attach(g->t.vm, 0), 0);
    assert_int_equal(rvm_vm_add_virtio_net(g->t.vm, nc, g->word, sizeof(g->word)), 0);
}

static void gvm_start(struct gvm *g, const char *args)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "%s %s", args, g->word);
    struct rvm_pvh_params pp = {.cmdline = cmd};
    assert_int_equal(rvm_vm_load_pvh_file(g->t.vm, guest_path(), &pp, NULL), 0);
    assert_int_equal(rvm_vm_start(g->t.vm), 0);
}

/* Waits for the guest's exit: the debug-exit code, or -1 (timeout, another end). */
static int gvm_wait(struct gvm *g, int timeout_ms)
{
    struct rvm_vm_result res;

    if (rvm_vm_wait(g->t.vm, timeout_ms, &res) < 0 || res.end != RVM_END_DEBUG_EXIT)
        return -1;
    return (int)res.value;
}

static uint64_t result(struct gvm *g, const char *key)
{
    uint64_t v = UINT64_MAX;

    if (bg_result_value(g->t.con.buf, key, &v) < 0)
        print_message("no %s= in the guest's output:\n%s\n", key, g->t.con.buf);
    return v;
}

/*
 * Moves this thread into a new namespace and makes the VM with tap TAP in
 * it, the namespace's address on it. Skips when this host cannot. The test
 * leaves with leave() (the namespace goes with the VM's tap).
 */
static int enter_with_tap(struct gvm *g)
{
    struct rvm_net_config nc = {.tap = TAP, .fd = -1};
    int home;

    SKIP_WITHOUT_KVM();
    if (bg_netns_enter(&home) < 0) {
        print_message("SKIP: cannot make a network namespace (needs root)\n");
        skip();
    }
    gvm_create(g, &nc);
    assert_int_equal(bg_if_up(TAP, BG_NET_HOST_IP, 24), 0);
    return home;
}

static void leave(struct gvm *g, int home)
{
    tvm_destroy(&g->t);
    assert_int_equal(bg_netns_leave(home), 0);
}

/* The guest pings the namespace's kernel (ARP both ways first). */
static void test_guest_pings_host(void **state)
{
    struct gvm g;
    (void)state;

    int home = enter_with_tap(&g);
    gvm_start(&g, "test=net-ping n=50");
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "replies"), 50);
    assert_int_equal(result(&g, "lost"), 0);
    assert_true(result(&g, "rtt_min") > 0);
    assert_int_equal(result(&g, "link"), 1);
    leave(&g, home);
}

/* Echo requests from a raw ICMP socket: n sent, the replies checked. */
static int host_pings(int n)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(BG_NET_GUEST_IP)};
    int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP), got = 0;

    if (s < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        uint8_t m[64], r[256];

        memset(m, 0, sizeof(m));
        m[0] = 8;
        m[4] = 0x12, m[5] = 0x34; /* id */
        m[6] = 0, m[7] = (uint8_t)i;
        for (int k = 8; k < 64; k++)
            m[k] = (uint8_t)(k * 3 + i);
        uint16_t c = bg_inet_csum(m, sizeof(m));
        m[2] = (uint8_t)(c >> 8), m[3] = (uint8_t)c;
        if (sendto(s, m, sizeof(m), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(m))
            break;
        for (;;) {
            struct pollfd p = {.fd = s, .events = POLLIN};
            if (poll(&p, 1, 5000) != 1)
                goto out;
            ssize_t k = recv(s, r, sizeof(r), 0);
            /* A raw socket sees the IP header; our own request comes back too on some paths. */
            if (k >= 20 + 64 && r[20] == 0 && r[24] == 0x12 && r[25] == 0x34 &&
                r[27] == (uint8_t)i) {
                if (!memcmp(r + 28, m + 8, 56))
                    got++;
                break;
            }
        }
    }
out:
    close(s);
    return got;
}

/*
 * The namespace pings the guest (the kernel ARPs for it; the guest answers
 * while it waits for UDP), then sends it UDP it checks payload by payload.
 */
static void test_host_pings_and_sends_to_guest(void **state)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(BG_NET_PORT),
                             .sin_addr.s_addr = htonl(BG_NET_GUEST_IP)};
    uint8_t buf[1400];
    struct gvm g;
    (void)state;

    int home = enter_with_tap(&g);
    gvm_start(&g, "test=net-udp-rx n=300 size=1000");
    assert_int_equal(host_pings(20), 20);
    int s = bg_udp_socket(BG_NET_HOST_IP, 0, 0);
    assert_true(s >= 0);
    for (uint64_t i = 0; i < 300; i++) {
        bg_net_payload(buf, i, 1000);
        assert_int_equal(sendto(s, buf, 1000, 0, (struct sockaddr *)&to, sizeof(to)), 1000);
        if (i % 50 == 49)
            sleep_ms(5); /* well under the tap's queue: nothing is dropped for room */
    }
    close(s);
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "received"), 300);
    assert_int_equal(result(&g, "bytes"), 300 * 1000);
    assert_int_equal(result(&g, "bad"), 0);
    assert_int_equal(result(&g, "reordered"), 0);
    assert_true(result(&g, "echo_answered") >= 20);
    assert_true(result(&g, "arp_answered") >= 1);
    leave(&g, home);
}

/* The guest sends 2000 datagrams; the namespace's socket gets each, in order, intact. */
static void test_guest_udp_to_host(void **state)
{
    uint8_t buf[2048];
    struct gvm g;
    uint64_t seq, next = 0;
    bool stopped = false;
    (void)state;

    int home = enter_with_tap(&g);
    int s = bg_udp_socket(BG_NET_HOST_IP, BG_NET_PORT, 64 << 20);
    assert_true(s >= 0);
    gvm_start(&g, "test=net-udp-tx n=2000 size=1400");
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "sent"), 2000);
    for (;;) {
        ssize_t k = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
        if (k < 0)
            break;
        if (k == BG_NET_STOP_LEN && !memcmp(buf, BG_NET_STOP, BG_NET_STOP_LEN)) {
            stopped = true;
            continue;
        }
        assert_int_equal(k, 1400);
        assert_true(bg_net_payload_check(buf, (size_t)k, &seq));
        assert_int_equal(seq, next);
        next++;
    }
    close(s);
    assert_int_equal(next, 2000);
    assert_true(stopped);
    leave(&g, home);
}

/* Deleting the tap under a pinging guest: the link goes down, the guest sees it and ends. */
static void test_tap_disappears(void **state)
{
    struct gvm g;
    (void)state;

    int home = enter_with_tap(&g);
    gvm_start(&g, "test=net-ping n=100000000");
    sleep_ms(300); /* some replies first */
    assert_int_equal(system("ip link del " TAP), 0);
    assert_int_equal(gvm_wait(&g, 60000), 0); /* the VM ran on: the guest exited by itself */
    assert_true(result(&g, "replies") > 0);
    assert_int_equal(result(&g, "lost"), 1);
    assert_int_equal(result(&g, "link"), 0);
    assert_non_null(strstr(g.t.con.buf, "RESULT test=net-ping"));
    leave(&g, home);
}

/* Two guests linked by a SOCK_SEQPACKET pair: ARP, then 3000 datagrams, all in order. */
static void test_two_guests_socket(void **state)
{
    struct gvm a, b;
    int sv[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config na = {.fd = sv[0]}, nb = {.fd = sv[1]};
    gvm_create(&a, &na);
    gvm_create(&b, &nb);
    gvm_start(&b, "test=net-udp-rx n=3000 size=512 ip=10.9.0.2 peer=10.9.0.1");
    gvm_start(&a, "test=net-udp-tx n=3000 size=512 ip=10.9.0.1 peer=10.9.0.2");
    assert_int_equal(gvm_wait(&a, 120000), 0);
    assert_int_equal(gvm_wait(&b, 120000), 0);
    assert_int_equal(result(&a, "sent"), 3000);
    assert_int_equal(result(&b, "received"), 3000);
    assert_int_equal(result(&b, "bad"), 0);
    assert_int_equal(result(&b, "reordered"), 0);
    assert_int_equal(result(&b, "arp_answered"), 1);
    tvm_destroy(&a.t);
    tvm_destroy(&b.t);
}

/* A payload larger than the device's MTU allows is refused by the guest before it sends. */
static void test_size_over_mtu(void **state)
{
    struct gvm g;
    int sv[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config nc = {.fd = sv[0], .mtu = 576};
    gvm_create(&g, &nc);
    gvm_start(&g, "test=net-udp-tx n=10 size=1400");
    assert_int_equal(gvm_wait(&g, 60000), BG_EXIT_BAD_CMDLINE);
    assert_non_null(strstr(g.t.con.buf, "ERROR size= over the MTU"));
    tvm_destroy(&g.t);
    close(sv[1]);
}

/* Datagrams seq [from, to) of size bytes to the guest, a little apart. */
static void send_range(uint64_t from, uint64_t to, size_t size)
{
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons(BG_NET_PORT),
                              .sin_addr.s_addr = htonl(BG_NET_GUEST_IP)};
    uint8_t buf[1400];
    int s = bg_udp_socket(BG_NET_HOST_IP, 0, 0);

    assert_true(s >= 0);
    for (uint64_t i = from; i < to; i++) {
        bg_net_payload(buf, i, size);
        assert_int_equal(sendto(s, buf, size, 0, (struct sockaddr *)&dst, sizeof(dst)),
                         (ssize_t)size);
        if (i % 25 == 24)
            sleep_ms(5);
    }
    close(s);
}

/*
 * A snapshot in the middle of a receiving guest, restored into a new VM: the
 * tap is reopened by name, the guest's queues go on where they were, and it
 * counts the rest of the datagrams without a gap or a bad one.
 */
static void test_snapshot_restore(void **state)
{
    struct gvm g;
    struct console con2 = {.len = 0};
    struct rvm_vm *vm2;
    struct rvm_vm_result res;
    char dir[64], path[96];
    uint64_t v = 0;
    (void)state;

    int home = enter_with_tap(&g);
    gvm_start(&g, "test=net-udp-rx n=200 size=600");
    send_range(0, 100, 600);
    sleep_ms(200);
    snprintf(dir, sizeof(dir), "/tmp/ringvm-netsnap-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s", dir);
    assert_int_equal(rvm_vm_snapshot(g.t.vm, path, RVM_SNAPSHOT_FULL, NULL), 0);
    rvm_vm_destroy(g.t.vm); /* its tap goes with it */

    struct rvm_restore_params rp;
    rvm_restore_params_init(&rp);
    rp.uart = (struct rvm_uart_config){.out = console_out, .out_opaque = &con2};
    /* Without a backend for the NIC the restore opens nothing of the snapshot's. */
    assert_int_equal(rvm_vm_restore(g.t.hv, path, &rp, &vm2, NULL), -ENODEV);
    struct rvm_restore_net nic = {.tap = TAP, .fd = -1};
    rp.nets = &nic;
    rp.nnets = 1;
    assert_int_equal(rvm_vm_restore(g.t.hv, path, &rp, &vm2, NULL), 0);
    assert_int_equal(bg_if_up(TAP, BG_NET_HOST_IP, 24), 0); /* the tap is new */
    assert_int_equal(rvm_vm_start(vm2), 0);
    send_range(100, 200, 600);
    assert_int_equal(rvm_vm_wait(vm2, 60000, &res), 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_int_equal(bg_result_value(con2.buf, "received", &v), 0);
    assert_int_equal(v, 200);
    assert_int_equal(bg_result_value(con2.buf, "bad", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bg_result_value(con2.buf, "reordered", &v), 0);
    assert_int_equal(v, 0);
    /* The receive buffers the device held came back with it, not as empty ones. */
    assert_int_equal(bg_result_value(con2.buf, "rx_empty", &v), 0);
    assert_int_equal(v, 0);
    rvm_vm_destroy(vm2);
    rvm_hv_close(g.t.hv);
    assert_int_equal(bg_netns_leave(home), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/*
 * Quiesce is not a reset: snapshots of a receiving guest that runs on pause
 * the device's worker (the same thread serves the guest after) and keep the
 * receive buffers it holds. Before, each snapshot started new workers and
 * gave the held buffers back empty, which the guest saw.
 */
static void test_snapshot_keeps_rx_buffers(void **state)
{
    struct gvm g;
    char dir[64], path[96];
    long before[4], after[4];
    (void)state;

    int home = enter_with_tap(&g);
    gvm_start(&g, "test=net-udp-rx n=200 size=600");
    send_range(0, 100, 600);
    sleep_ms(200);
    snprintf(dir, sizeof(dir), "/tmp/ringvm-netkeep-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(thread_ids("rvm-net", before, 4), 1);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/s%d", dir, i);
        assert_int_equal(rvm_vm_snapshot(g.t.vm, path, RVM_SNAPSHOT_FULL, NULL), 0);
        assert_int_equal(thread_ids("rvm-net", after, 4), 1);
        assert_int_equal(after[0], before[0]);
    }
    send_range(100, 200, 600);
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "received"), 200);
    assert_int_equal(result(&g, "bad"), 0);
    assert_int_equal(result(&g, "rx_empty"), 0);
    leave(&g, home);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A socket's peer cannot be found again: such a VM's snapshot is refused, and it runs on. */
static void test_snapshot_socket_refused(void **state)
{
    struct gvm g;
    int sv[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config nc = {.fd = sv[0]};
    gvm_create(&g, &nc);
    gvm_start(&g, "test=net-udp-rx n=1");
    assert_int_equal(rvm_vm_snapshot(g.t.vm, "/tmp/ringvm-netsnap-never", RVM_SNAPSHOT_FULL, NULL),
                     -EOPNOTSUPP);
    assert_non_null(strstr(g.t.log.last, "socket cannot be saved"));
    close(sv[1]); /* the guest sees its link go down and ends */
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "link"), 0);
    tvm_destroy(&g.t);
}

/* Reads one frame from the guest's socket peer (up to 5 s): its length, or -1. */
static ssize_t peer_recv(int fd, uint8_t *buf, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 5000) == 1 ? recv(fd, buf, len, MSG_DONTWAIT) : -1;
}

/* Answers the guest's ARP request for what it asked (the test is its peer). */
static void peer_answer_arp(int fd)
{
    static const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x99};
    uint8_t f[2048], r[42];
    ssize_t k;

    while ((k = peer_recv(fd, f, sizeof(f))) >= 42 &&
           !(f[12] == 0x08 && f[13] == 0x06 && f[21] == 1))
        ;
    assert_true(k >= 42);
    memcpy(r, f + 6, 6); /* to the asker */
    memcpy(r + 6, mac, 6);
    memcpy(r + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02", 10); /* ARP reply */
    memcpy(r + 22, mac, 6);
    memcpy(r + 28, f + 38, 4);  /* the address it asked for is ours */
    memcpy(r + 32, f + 22, 10); /* its hardware and protocol address */
    assert_int_equal(send(fd, r, sizeof(r), 0), (ssize_t)sizeof(r));
}

/*
 * A snapshot a socket-backed device refuses loses no frame: the refusal comes
 * before the device's pause, which would cancel the sends in flight. The
 * test is the guest's peer: it answers its ARP, then reads nothing until the
 * guest's sends wait on a full socket, snapshots, and then counts every
 * datagram, in order. Before, the pause cancelled those sends and dropped
 * them, and the snapshot failed after.
 */
static void test_snapshot_socket_refused_loses_nothing(void **state)
{
    uint8_t f[2048];
    struct gvm g;
    uint64_t seq, next = 0;
    int sv[2], outq = -1, last = -2, still = 0;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config nc = {.fd = sv[0]};
    gvm_create(&g, &nc);
    gvm_start(&g, "test=net-udp-tx n=3000 size=512 ip=10.9.0.1 peer=10.9.0.2");
    peer_answer_arp(sv[1]);
    /* Nothing read: the socket fills and the device's sends wait in its ring. */
    for (int i = 0; i < 20000 && still < 100; i++) {
        sleep_ms(1);
        assert_int_equal(ioctl(sv[0], SIOCOUTQ, &outq), 0);
        still = outq > 0 && outq == last ? still + 1 : 0;
        last = outq;
    }
    assert_true(still >= 100);
    assert_int_equal(rvm_vm_snapshot(g.t.vm, "/tmp/ringvm-netsnap-never", RVM_SNAPSHOT_FULL, NULL),
                     -EOPNOTSUPP);
    for (;;) {
        ssize_t k = peer_recv(sv[1], f, sizeof(f));
        if (k < 0)
            break;
        if (k < 14 || f[12] != 0x08 || f[13] != 0x00)
            continue; /* not IPv4 */
        size_t udp = 14 + (size_t)(f[14] & 15) * 4;
        size_t plen = (size_t)(f[udp + 4] << 8 | f[udp + 5]) - 8; /* frames may be padded */
        if (plen == BG_NET_STOP_LEN && !memcmp(f + udp + 8, BG_NET_STOP, BG_NET_STOP_LEN))
            break;
        assert_int_equal(plen, 512);
        assert_true(bg_net_payload_check(f + udp + 8, plen, &seq));
        assert_int_equal(seq, next);
        next++;
    }
    assert_int_equal(next, 3000);
    assert_int_equal(gvm_wait(&g, 60000), 0);
    assert_int_equal(result(&g, "sent"), 3000);
    tvm_destroy(&g.t);
    close(sv[1]);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A transmit limit holds the guest to it: 600 datagrams at 300 frames a
 * second (30 at once) take no less than (600 - 30) / 300 s from the first,
 * whatever this host's speed; all arrive, in order. A lower bound: a slow
 * host only exceeds it more.
 */
static void test_tx_rate_limit(void **state)
{
    uint8_t f[2048];
    struct gvm g;
    uint64_t seq, next = 0;
    int sv[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config nc = {.fd = sv[0], .tx_limit = {.ops_per_s = 300}};
    gvm_create(&g, &nc);
    gvm_start(&g, "test=net-udp-tx n=600 size=512 ip=10.9.0.1 peer=10.9.0.2");
    peer_answer_arp(sv[1]);
    double t0 = mono_s();
    for (;;) {
        ssize_t k = peer_recv(sv[1], f, sizeof(f));
        if (k < 0)
            break;
        if (k < 14 || f[12] != 0x08 || f[13] != 0x00)
            continue;
        size_t udp = 14 + (size_t)(f[14] & 15) * 4;
        size_t plen = (size_t)(f[udp + 4] << 8 | f[udp + 5]) - 8;
        if (plen == BG_NET_STOP_LEN && !memcmp(f + udp + 8, BG_NET_STOP, BG_NET_STOP_LEN))
            break;
        assert_true(bg_net_payload_check(f + udp + 8, plen, &seq));
        assert_int_equal(seq, next);
        next++;
    }
    double took = mono_s() - t0;
    print_message("    600 frames at 300/s: %.2f s (no less than %.2f s)\n", took, 570.0 / 300);
    assert_int_equal(next, 600);
    assert_true(took >= 570.0 / 300);
    assert_int_equal(gvm_wait(&g, 60000), 0);
    tvm_destroy(&g.t);
    close(sv[1]);
}

/*
 * A receive limit: the host sends 600 datagrams as fast as the socket takes
 * them; the guest is given them at 64 KiB a second (6.4 KiB at once), so
 * they take no less than (599 * 554 - 6553) / 65536 s; every one arrives,
 * none lost (they wait in the socket, which holds the sender back).
 */
static void test_rx_rate_limit(void **state)
{
    static const uint8_t smac[6] = {0x02, 0, 0, 0, 0, 0x98},
                         bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t f[2048], payload[512];
    struct gvm g;
    int sv[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    struct rvm_net_config nc = {.fd = sv[0], .rx_limit = {.bytes_per_s = 64 << 10}};
    gvm_create(&g, &nc);
    gvm_start(&g, "test=net-udp-rx n=600 size=512 ip=10.9.0.2 peer=10.9.0.1");
    /* Sent at once: until the guest's driver is up, they wait in the socket too. */
    double t0 = mono_s();
    size_t len = 0;
    for (uint64_t i = 0; i < 600; i++) {
        bg_net_payload(payload, i, sizeof(payload));
        len = bg_frame_udp(f, smac, 0x0a090001, bcast, 0x0a090002, BG_NET_PORT, BG_NET_PORT,
                           payload, sizeof(payload));
        assert_int_equal(send(sv[1], f, len, 0), (ssize_t)len);
    }
    assert_int_equal(gvm_wait(&g, 60000), 0);
    /* The burst, and one frame the last check let in. */
    double took = mono_s() - t0, floor = (599.0 * (double)len - 6553.0) / 65536.0;
    print_message("    600 frames at 64 KiB/s: %.2f s (no less than %.2f s)\n", took, floor);
    assert_int_equal(result(&g, "received"), 600);
    assert_int_equal(result(&g, "bad"), 0);
    assert_true(took >= floor);
    tvm_destroy(&g.t);
    close(sv[1]);
}

/*
 * QEMU (microvm, its virtio-net-device on a tap, legacy virtio-mmio) runs the
 * same workloads: runs the guest there with args; 0 when it exited cleanly
 * (QEMU's debug exit gives (0 << 1) | 1). out gets what it printed.
 */
static int qemu_net(const char *args, char *out, size_t len)
{
    char append[256], log[] = "/tmp/ringvm-qemu-net-XXXXXX";
    int fd = mkstemp(log), st = -1;

    if (fd < 0)
        return -1;
    snprintf(append, sizeof(append), "%s", args);
    pid_t pid = fork();
    if (pid == 0) { /* the child inherits this thread's namespace */
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("timeout", "timeout", "120", "qemu-system-x86_64", "-M", "microvm,acpi=off",
               "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "64", "-nodefaults",
               "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4", "-netdev",
               "tap,id=n0,ifname=" TAP ",script=no,downscript=no", "-device",
               "virtio-net-device,netdev=n0", "-kernel", guest_path(), "-append", append,
               (char *)NULL);
        _exit(127);
    }
    /* QEMU makes the tap: give it the namespace's address as soon as it is there. */
    for (int i = 0; i < 500 && pid > 0; i++) {
        if (bg_if_up(TAP, BG_NET_HOST_IP, 24) == 0)
            break;
        sleep_ms(10);
    }
    if (pid > 0)
        waitpid(pid, &st, 0);
    ssize_t k = pread(fd, out, len - 1, 0);
    out[k > 0 ? k : 0] = '\0';
    close(fd);
    unlink(log);
    return WIFEXITED(st) && WEXITSTATUS(st) == 1 ? 0 : -1;
}

static void test_qemu_net(void **state)
{
    static char out[8192];
    uint8_t buf[2048];
    uint64_t v = 0, seq, next = 0;
    int home;
    (void)state;

    SKIP_WITHOUT_KVM();
    if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        print_message("SKIP: qemu-system-x86_64 is not installed\n");
        skip();
    }
    if (bg_netns_enter(&home) < 0) {
        print_message("SKIP: cannot make a network namespace (needs root)\n");
        skip();
    }
    int s = bg_udp_socket(0, BG_NET_PORT, 64 << 20);
    assert_true(s >= 0);
    assert_int_equal(qemu_net("test=net-ping n=20", out, sizeof(out)), 0);
    assert_int_equal(bg_result_value(out, "replies", &v), 0);
    assert_int_equal(v, 20);
    assert_int_equal(qemu_net("test=net-udp-tx n=1000 size=1000", out, sizeof(out)), 0);
    assert_int_equal(bg_result_value(out, "sent", &v), 0);
    assert_int_equal(v, 1000);
    for (;;) {
        ssize_t k = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
        if (k < 0)
            break;
        if (k == 1000 && bg_net_payload_check(buf, (size_t)k, &seq) && seq == next)
            next++;
    }
    assert_int_equal(next, 1000);
    close(s);
    assert_int_equal(bg_netns_leave(home), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guest_pings_host),
        cmocka_unit_test(test_host_pings_and_sends_to_guest),
        cmocka_unit_test(test_guest_udp_to_host),
        cmocka_unit_test(test_tap_disappears),
        cmocka_unit_test(test_two_guests_socket),
        cmocka_unit_test(test_size_over_mtu),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_snapshot_keeps_rx_buffers),
        cmocka_unit_test(test_snapshot_socket_refused),
        cmocka_unit_test(test_snapshot_socket_refused_loses_nothing),
        cmocka_unit_test(test_tx_rate_limit),
        cmocka_unit_test(test_rx_rate_limit),
        cmocka_unit_test(test_qemu_net),
    };
    return cmocka_run_group_tests_name("net_guest", tests, NULL, NULL);
}
