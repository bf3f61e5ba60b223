/* SPDX-License-Identifier: MIT */
/*
 * virtio-net end to end without a guest: this test plays the driver
 * (through the VM's MMIO bus and guest memory) and the network (the other
 * end of a SOCK_SEQPACKET pair the device uses as its backend).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "../virtio/net.h"
#include "common/testutil.h"

#define BASE 0xd0100000ULL
#define QSZ  16
#define RXR  0x10000ULL  /* queue 0 rings: desc, avail +0x1000, used +0x2000 */
#define TXR  0x20000ULL  /* queue 1 */
#define BUFS 0x100000ULL /* 4 KiB a descriptor */
#define HDR  12

struct net {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_mem *m;
    struct virtio_net *dev;
    int peer;
    uint16_t avail[2], used_seen[2];
};

static uint32_t rd(struct net *n, uint64_t off)
{
    return mmio_rd32(n->vm, BASE + off);
}

static void wr(struct net *n, uint64_t off, uint32_t val)
{
    mmio_wr32(n->vm, BASE + off, val);
}

static uint64_t ring(int q)
{
    return q ? TXR : RXR;
}

/*
 * A tap in a network namespace of its own, made by this thread and left at
 * once: the tap's fd for the device, an AF_PACKET socket on it for the test
 * (the host side). The namespace goes when both are closed. -1 if this host
 * cannot (not root, no /dev/net/tun).
 */
static int tap_in_namespace(int *tap, int *pkt)
{
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), s = -1, r = -1;
    struct ifreq ifr;

    *tap = *pkt = -1;
    if (home < 0 || unshare(CLONE_NEWNET) < 0) {
        if (home >= 0)
            close(home);
        return -1;
    }
    if ((*tap = virtio_net_open_tap("rvmtest0")) >= 0 &&
        (s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) >= 0) {
        memset(&ifr, 0, sizeof(ifr));
        strcpy(ifr.ifr_name, "rvmtest0");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
            ifr.ifr_flags |= IFF_UP;
            if (ioctl(s, SIOCSIFFLAGS, &ifr) == 0 && ioctl(s, SIOCGIFINDEX, &ifr) == 0) {
                struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                                          .sll_protocol = htons(ETH_P_ALL),
                                          .sll_ifindex = ifr.ifr_ifindex};
                *pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
                if (*pkt >= 0 && bind(*pkt, (struct sockaddr *)&sll, sizeof(sll)) == 0)
                    r = 0;
            }
        }
    }
    if (s >= 0)
        close(s);
    if (setns(home, CLONE_NEWNET) < 0)
        r = -1;
    close(home);
    if (r < 0) {
        if (*tap >= 0)
            close(*tap);
        if (*pkt >= 0)
            close(*pkt);
    }
    return r;
}

/* kind: 0 a SOCK_SEQPACKET pair, 1 a tap, 2 a pair with small buffers, 3 a SOCK_DGRAM pair. */
static int open_device(void **state, int kind)
{
    bool tap = kind == 1;
    static struct net n;
    struct virtio_net_opts o = {.mac = {0x52, 0x54, 0, 0x12, 0x34, 0x56}, .mtu = 1500, .tap = tap};
    int sv[2];
    uint32_t ok = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;

    *state = NULL;
    if (!kvm_usable())
        return 0;
    memset(&n, 0, sizeof(n));
    if (tap) {
        if (tap_in_namespace(&sv[0], &sv[1]) < 0) {
            print_message("SKIP: cannot make a tap in a namespace of its own (needs root)\n");
            return 0;
        }
    } else if (socketpair(AF_UNIX, (kind == 3 ? SOCK_DGRAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0,
                          sv) < 0) {
        return -1;
    }
    if (kind == 2) {
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    if (kvm_fixture_open(&n.hv, &n.vm, 16 << 20) < 0)
        return -1;
    n.m = rvm_vm_mem(n.vm);
    n.peer = sv[1];
    o.fd = sv[0];
    if (virtio_net_attach(n.vm, BASE, 5, &o, &n.dev) < 0)
        return -1;
    /* The driver: modern, MAC, STATUS, MTU; both queues of QSZ. */
    wr(&n, VIRTIO_MMIO_STATUS, ok);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES,
       (1U << VIRTIO_NET_F_MAC) | (1U << VIRTIO_NET_F_STATUS) | (1U << VIRTIO_NET_F_MTU));
    wr(&n, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK);
    for (int q = 0; q < 2; q++) {
        wr(&n, VIRTIO_MMIO_QUEUE_SEL, q);
        wr(&n, VIRTIO_MMIO_QUEUE_NUM, QSZ);
        wr(&n, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring(q));
        wr(&n, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(ring(q) + 0x1000));
        wr(&n, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(ring(q) + 0x2000));
        wr(&n, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    wr(&n, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    if (rd(&n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
        return -1;
    *state = &n;
    return 0;
}

static int setup(void **state)
{
    return open_device(state, 0);
}

/* The device's end of the pair sends into a peer that holds little and reads nothing. */
static int setup_small(void **state)
{
    return open_device(state, 2);
}

static int setup_dgram(void **state)
{
    return open_device(state, 3);
}

static int setup_tap(void **state)
{
    return open_device(state, 1);
}

static int teardown(void **state)
{
    struct net *n = *state;

    if (n) {
        kvm_fixture_close(n->hv, n->vm);
        close(n->peer);
    }
    return 0;
}

/* Descriptor i of queue q: buffer i (4 KiB apart), len bytes, device-writable or not. */
static void desc(struct net *n, int q, uint16_t i, uint32_t len, bool write, int next)
{
    struct vring_desc d = {
        .addr = BUFS + (uint64_t)q * 0x80000 + 4096ULL * i,
        .len = len,
        .flags = (uint16_t)((write ? VRING_DESC_F_WRITE : 0) | (next >= 0 ? VRING_DESC_F_NEXT : 0)),
        .next = (uint16_t)(next >= 0 ? next : 0)};
    assert_int_equal(rvm_mem_write(n->m, ring(q) + 16ULL * i, &d, sizeof(d)), 0);
}

static void *buf(struct net *n, int q, uint16_t i)
{
    return rvm_mem_hva(n->m, BUFS + (uint64_t)q * 0x80000 + 4096ULL * i, 4096);
}

/* Makes the chain at head available on queue q and kicks. */
static void avail(struct net *n, int q, uint16_t head)
{
    uint16_t slot = n->avail[q] % QSZ;

    rvm_mem_write(n->m, ring(q) + 0x1000 + 4 + 2 * slot, &head, 2);
    n->avail[q]++;
    __atomic_store_n((uint16_t *)rvm_mem_hva(n->m, ring(q) + 0x1000 + 2, 2), n->avail[q],
                     __ATOMIC_RELEASE);
    wr(n, VIRTIO_MMIO_QUEUE_NOTIFY, (uint32_t)q);
}

static uint16_t used_idx(struct net *n, int q)
{
    return __atomic_load_n((uint16_t *)rvm_mem_hva(n->m, ring(q) + 0x2000 + 2, 2),
                           __ATOMIC_ACQUIRE);
}

/* The next used entry of queue q (waits up to 5 s): its id and length. */
static struct vring_used_elem next_used(struct net *n, int q)
{
    struct vring_used_elem e;

    for (int i = 0; i < 5000 && used_idx(n, q) == n->used_seen[q]; i++)
        sleep_ms(1);
    assert_int_not_equal(used_idx(n, q), n->used_seen[q]);
    rvm_mem_read(n->m, ring(q) + 0x2000 + 4 + 8ULL * (n->used_seen[q] % QSZ), &e, sizeof(e));
    n->used_seen[q]++;
    return e;
}

/* A transmit: header and frame in descriptor i (one buffer). */
static void send_frame(struct net *n, uint16_t i, const uint8_t *frame, uint32_t len)
{
    uint8_t *b = buf(n, 1, i);

    memset(b, 0, HDR);
    memcpy(b + HDR, frame, len);
    desc(n, 1, i, HDR + len, false, -1);
    avail(n, 1, i);
}

static void make_frame(uint8_t *f, uint32_t len, uint8_t seed)
{
    for (uint32_t i = 0; i < len; i++)
        f[i] = (uint8_t)(seed + i * 7);
}

static void test_config_and_tx(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[60], got[2048];
    uint64_t v;

    assert_int_equal(rd(n, VIRTIO_MMIO_DEVICE_ID), 1);
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x100, 1, false, &v), 0);
    assert_int_equal(v, 0x52);
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x106, 2, false, &v), 0);
    assert_int_equal(v, VIRTIO_NET_S_LINK_UP);
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x10a, 2, false, &v), 0);
    assert_int_equal(v, 1500);

    make_frame(frame, sizeof(frame), 1);
    send_frame(n, 0, frame, sizeof(frame));
    struct vring_used_elem e = next_used(n, 1);
    assert_int_equal(e.id, 0);
    assert_int_equal(recv(n->peer, got, sizeof(got), 0), sizeof(frame)); /* the frame alone */
    assert_memory_equal(got, frame, sizeof(frame));
}

static void test_rx(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[100];
    struct virtio_net_hdr_v1 h;

    /* A buffer split across two descriptors: 12 bytes of header room, then 2 KiB. */
    desc(n, 0, 0, HDR, true, 1);
    desc(n, 0, 1, 2048, true, -1);
    avail(n, 0, 0);
    make_frame(frame, sizeof(frame), 9);
    mem_dirty_clear(n->m);
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    struct vring_used_elem e = next_used(n, 0);
    assert_int_equal(e.id, 0);
    assert_int_equal(e.len, HDR + sizeof(frame));
    memcpy(&h, buf(n, 0, 0), sizeof(h));
    assert_int_equal(h.num_buffers, 1);
    assert_int_equal(h.gso_type, VIRTIO_NET_HDR_GSO_NONE);
    assert_memory_equal(buf(n, 0, 1), frame, sizeof(frame));
    assert_true(mem_dirty_test(n->m, BUFS + 4096)); /* logged as device-written */
}

/* No receive buffers: nothing is read, nothing grows; buffers later get the frames in order. */
static void test_rx_backpressure(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[64];
    int sent = 0;

    for (; sent < 20; sent++) {
        make_frame(frame, sizeof(frame), (uint8_t)sent);
        if (send(n->peer, frame, sizeof(frame), MSG_DONTWAIT) != sizeof(frame))
            break;
    }
    assert_int_equal(sent, 20);
    sleep_ms(50);
    assert_int_equal(used_idx(n, 0), 0); /* nothing taken */
    for (uint16_t i = 0; i < 3; i++) {
        desc(n, 0, i, 2048, true, -1);
        avail(n, 0, i);
    }
    for (int k = 0; k < 3; k++) {
        struct vring_used_elem e = next_used(n, 0);
        assert_int_equal(e.len, HDR + sizeof(frame));
        make_frame(frame, sizeof(frame), (uint8_t)k);
        assert_memory_equal((uint8_t *)buf(n, 0, (uint16_t)e.id) + HDR, frame, sizeof(frame));
    }
    struct virtio_net_stats st;
    virtio_net_stats(n->dev, &st);
    assert_int_equal(st.rx_frames, 3);
    assert_int_equal(st.rx_dropped, 0);
}

/* Hostile chains fail alone; the device goes on. */
static void test_hostile(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[1600], got[2048];
    struct virtio_net_stats st;

    /* Shorter than the header. */
    desc(n, 1, 0, 6, false, -1);
    avail(n, 1, 0);
    assert_int_equal(next_used(n, 1).len, 0);
    /* Over the MTU. */
    make_frame(frame, sizeof(frame), 3);
    send_frame(n, 1, frame, 1500 + 14 + 4 + 1);
    next_used(n, 1);
    /* A device-writable buffer on the transmit queue. */
    desc(n, 1, 2, 100, true, -1);
    avail(n, 1, 2);
    next_used(n, 1);
    virtio_net_stats(n->dev, &st);
    assert_int_equal(st.tx_dropped, 3);
    assert_int_equal(recv(n->peer, got, sizeof(got), MSG_DONTWAIT), -1); /* none sent */
    /* A receive buffer too small for a header and a frame, then a good one. */
    desc(n, 0, 0, 8, true, -1);
    avail(n, 0, 0);
    assert_int_equal(next_used(n, 0).len, 0);
    desc(n, 0, 1, 2048, true, -1);
    avail(n, 0, 1);
    assert_int_equal(send(n->peer, frame, 200, 0), 200);
    assert_int_equal(next_used(n, 0).len, HDR + 200);
    /* And a good transmit still goes out. */
    send_frame(n, 3, frame, 60);
    next_used(n, 1);
    assert_int_equal(recv(n->peer, got, sizeof(got), 0), 60);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

/* The peer going away: the link goes down; the device keeps answering. */
static void test_peer_gone(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint64_t v = 1;

    desc(n, 0, 0, 2048, true, -1);
    avail(n, 0, 0);
    close(n->peer);
    n->peer = -1;
    for (int i = 0; i < 5000 && v; i++) {
        sleep_ms(1);
        assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x106, 2, false, &v), 0);
    }
    assert_int_equal(v, 0); /* link down */
    assert_true(rd(n, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

/* Frames of the test's own EtherType, so that what the kernel sends on the tap is told apart. */
static void test_frame(uint8_t *f, uint32_t len, uint8_t seed)
{
    make_frame(f, len, seed);
    f[12] = 0x88, f[13] = 0xb5; /* local experimental */
}

/* The next frame on fd of the test's EtherType (others skipped), waiting 5 s at most. */
static ssize_t recv_test_frame(int fd, uint8_t *b, size_t len)
{
    for (int i = 0; i < 500; i++) {
        ssize_t r = recv(fd, b, len, MSG_DONTWAIT);
        if (r >= 14 && b[12] == 0x88 && b[13] == 0xb5)
            return r;
        if (r < 0)
            sleep_ms(10);
    }
    return -1;
}

/* The tap backend: the device passes the 12-byte header through, both ways. */
static void test_tap(void **state)
{
    if (!*state) {
        print_message("SKIP: no usable /dev/kvm, or no tap (said above)\n");
        skip();
    }
    struct net *n = *state;
    uint8_t frame[90], got[2048];
    struct virtio_net_hdr_v1 h;

    test_frame(frame, sizeof(frame), 5);
    send_frame(n, 0, frame, sizeof(frame));
    next_used(n, 1);
    assert_int_equal(recv_test_frame(n->peer, got, sizeof(got)), sizeof(frame));
    assert_memory_equal(got, frame, sizeof(frame));

    /* Host to guest: buffers posted until our frame comes (the kernel may send its own first). */
    test_frame(frame, sizeof(frame), 6);
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    for (uint16_t i = 0; i < QSZ; i++) {
        desc(n, 0, i, 2048, true, -1);
        avail(n, 0, i);
        struct vring_used_elem e = next_used(n, 0);
        uint8_t *b = buf(n, 0, (uint16_t)e.id);
        if (e.len >= HDR + 14 && b[HDR + 12] == 0x88 && b[HDR + 13] == 0xb5) {
            assert_int_equal(e.len, HDR + sizeof(frame));
            memcpy(&h, b, sizeof(h));
            assert_int_equal(h.num_buffers, 1);
            assert_memory_equal(b + HDR, frame, sizeof(frame));
            return;
        }
    }
    fail_msg("the frame sent on the tap never reached a receive buffer");
}

/* A peer that never reads: sends block in the kernel; a device reset still returns. */
static void test_reset_with_sends_blocked(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[1500];
    struct virtio_net_stats st;

    make_frame(frame, sizeof(frame), 4);
    for (uint16_t i = 0; i < QSZ; i++) /* far more than the peer's buffer below holds */
        send_frame(n, i, frame, sizeof(frame));
    sleep_ms(50);
    wr(n, VIRTIO_MMIO_STATUS, 0); /* joins the worker: must not wait for the peer */
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS), 0);
    virtio_net_stats(n->dev, &st);
    assert_true(st.tx_frames + st.tx_dropped == QSZ); /* every chain went back */
    assert_true(st.tx_dropped > 0);
}

/* A datagram backend: an empty datagram is a dropped frame, not the peer going away. */
static void test_dgram_empty_frame(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint64_t v;

    desc(n, 0, 0, 2048, true, -1);
    avail(n, 0, 0);
    assert_int_equal(send(n->peer, "", 0, 0), 0);
    assert_int_equal(next_used(n, 0).len, 0);
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x106, 2, false, &v), 0);
    assert_int_equal(v, VIRTIO_NET_S_LINK_UP);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_and_tx),
        T(test_rx),
        T(test_rx_backpressure),
        T(test_hostile),
        T(test_peer_gone),
        cmocka_unit_test_setup_teardown(test_tap, setup_tap, teardown),
        cmocka_unit_test_setup_teardown(test_reset_with_sends_blocked, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_dgram_empty_frame, setup_dgram, teardown),
    };
    return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
