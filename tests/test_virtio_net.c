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
#include <poll.h>
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

#include "../core/snaprec.h"
#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "../guest/host/netns.h"
#include "../virtio/net.h"
#include "common/testutil.h"

#define BASE    0xd0100000ULL
#define QSZ     16
#define RXR     0x10000ULL  /* queue 0 rings; queue q's 64 KiB further */
#define NS_IP   0x0a4d0001u /* 10.77.0.1: the namespace's side of the tap */
#define NS_PORT 7777
#define BUFS    0x100000ULL /* 4 KiB a descriptor */
#define HDR     12

struct net {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_mem *m;
    struct virtio_net *dev;
    int peer; /* the socket pair's other end, or an AF_PACKET socket on the tap */
    int udp;  /* a tap's namespace: a UDP socket on NS_IP:NS_PORT */
    uint16_t avail[5], used_seen[5];
    uint16_t qsz[5]; /* queue sizes: QSZ, or larger for the first receive queue */
};

static uint32_t rd(struct net *n, uint64_t off)
{
    return mmio_rd32(n->vm, BASE + off);
}

static void wr(struct net *n, uint64_t off, uint32_t val)
{
    mmio_wr32(n->vm, BASE + off, val);
}

/* Queue q's rings: descriptors, avail +0x1000, used +0x2000. */
static uint64_t ring(int q)
{
    return RXR + 0x10000ULL * (uint64_t)q;
}

/*
 * A tap of nq queues in a network namespace of its own, made by this thread
 * and left at once: the tap's fds for the device, an AF_PACKET socket on it
 * (the host side, raw) and a UDP socket on the namespace's address
 * (NS_IP:NS_PORT). The namespace goes when all are closed. -1 if this host
 * cannot (not root, no /dev/net/tun).
 */
static int tap_in_namespace(unsigned nq, int *fds, int *pkt, int *udp)
{
    int home, r = -1;

    *pkt = *udp = -1;
    if (bg_netns_enter(&home) < 0)
        return -1;
    if (virtio_net_open_tap("rvmtest0", nq, fds) == 0) {
        int ifindex = (int)if_nametoindex("rvmtest0");
        struct sockaddr_ll sll = {
            .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = ifindex};

        *pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
        if (ifindex > 0 && bg_if_up("rvmtest0", NS_IP, 24) == 0 && *pkt >= 0 &&
            bind(*pkt, (struct sockaddr *)&sll, sizeof(sll)) == 0 &&
            (*udp = bg_udp_socket(NS_IP, NS_PORT, 0)) >= 0)
            r = 0;
        if (r < 0)
            for (unsigned i = 0; i < nq; i++)
                close(fds[i]);
    }
    if (bg_netns_leave(home) < 0)
        r = -1;
    if (r < 0) {
        if (*pkt >= 0)
            close(*pkt);
        if (*udp >= 0)
            close(*udp);
    }
    return r;
}

/*
 * kind: 0 a SOCK_SEQPACKET pair, 1 a tap, 2 a pair with small buffers, 3 a
 * SOCK_DGRAM pair. The driver takes MAC, STATUS, MTU and extra (feature
 * bits 0-31), and sets up pairs queue pairs (and the control queue with
 * more than one) of QSZ.
 */
static int open_device_rxq(void **state, int kind, uint32_t extra, unsigned pairs, uint16_t rxq)
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
    n.udp = -1;
    if (tap) {
        if (tap_in_namespace(pairs, o.fds, &n.peer, &n.udp) < 0) {
            print_message("SKIP: cannot make a tap in a namespace of its own (needs root)\n");
            return 0;
        }
        o.nfds = pairs;
    } else {
        if (socketpair(AF_UNIX, (kind == 3 ? SOCK_DGRAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0, sv) <
            0)
            return -1;
        o.fds[0] = sv[0];
        n.peer = sv[1];
    }
    if (kind == 2) {
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    if (kvm_fixture_open(&n.hv, &n.vm, 16 << 20) < 0)
        return -1;
    n.m = rvm_vm_mem(n.vm);
    if (virtio_net_attach(n.vm, BASE, 5, &o, &n.dev) < 0)
        return -1;
    wr(&n, VIRTIO_MMIO_STATUS, ok);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(&n, VIRTIO_MMIO_DRIVER_FEATURES,
       (1U << VIRTIO_NET_F_MAC) | (1U << VIRTIO_NET_F_STATUS) | (1U << VIRTIO_NET_F_MTU) | extra);
    wr(&n, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(rd(&n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK))
        return -1;
    for (unsigned q = 0; q < 2 * pairs + (pairs > 1); q++) {
        wr(&n, VIRTIO_MMIO_QUEUE_SEL, q);
        n.qsz[q] = q == 0 ? rxq : QSZ;
        wr(&n, VIRTIO_MMIO_QUEUE_NUM, n.qsz[q]);
        wr(&n, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring((int)q));
        wr(&n, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(ring((int)q) + 0x1000));
        wr(&n, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(ring((int)q) + 0x2000));
        wr(&n, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    wr(&n, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    if (rd(&n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
        return -1;
    *state = &n;
    return 0;
}

static int open_device(void **state, int kind, uint32_t extra, unsigned pairs)
{
    return open_device_rxq(state, kind, extra, pairs, QSZ);
}

static int setup(void **state)
{
    return open_device(state, 0, 0, 1);
}

/* The device's end of the pair sends into a peer that holds little and reads nothing. */
static int setup_small(void **state)
{
    return open_device(state, 2, 0, 1);
}

static int setup_dgram(void **state)
{
    return open_device(state, 3, 0, 1);
}

static int setup_tap(void **state)
{
    return open_device(state, 1, 0, 1);
}

static int teardown(void **state)
{
    struct net *n = *state;

    if (n) {
        kvm_fixture_close(n->hv, n->vm);
        if (n->peer >= 0)
            close(n->peer);
        if (n->udp >= 0)
            close(n->udp);
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
    uint16_t slot = n->avail[q] % n->qsz[q];

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
    rvm_mem_read(n->m, ring(q) + 0x2000 + 4 + 8ULL * (n->used_seen[q] % n->qsz[q]), &e, sizeof(e));
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
    /* The blocked sends were cancelled; chains still in the ring when a batch blocked were
     * never taken (a reset forgets them). */
    assert_true(st.tx_frames + st.tx_dropped <= QSZ);
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
    /* Dropped, and the buffer kept for the next frame. */
    uint8_t frame[80];
    make_frame(frame, sizeof(frame), 5);
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    struct vring_used_elem e = next_used(n, 0);
    assert_int_equal(e.id, 0);
    assert_int_equal(e.len, HDR + sizeof(frame));
    struct virtio_net_stats st;
    virtio_net_stats(n->dev, &st);
    assert_int_equal(st.rx_dropped, 1);
    assert_int_equal(st.rx_frames, 1);
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x106, 2, false, &v), 0);
    assert_int_equal(v, VIRTIO_NET_S_LINK_UP);
}

/* ---- merged receive buffers, offloads, several queue pairs ---- */

/* Puts head in queue q's available ring without a notification. */
static void offer_quietly(struct net *n, int q, uint16_t head)
{
    uint16_t slot = n->avail[q] % n->qsz[q];

    rvm_mem_write(n->m, ring(q) + 0x1000 + 4 + 2 * slot, &head, 2);
    n->avail[q]++;
    __atomic_store_n((uint16_t *)rvm_mem_hva(n->m, ring(q) + 0x1000 + 2, 2), n->avail[q],
                     __ATOMIC_RELEASE);
}

static bool needs_reset_within(struct net *n, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
            return true;
        sleep_ms(1);
    }
    return false;
}

/*
 * A receive head offered while the device still has it: the ring has lost
 * track, and the device says so (NEEDS_RESET) instead of filling one chain
 * twice and giving its id back twice.
 */
static void test_rx_head_offered_twice(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;

    desc(n, 0, 0, 2048, true, -1);
    offer_quietly(n, 0, 0);
    offer_quietly(n, 0, 0);
    wr(n, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_true(needs_reset_within(n, 5000));
    /* A reset brings the device back. */
    wr(n, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS), 0);
}

static int setup_mrg(void **state)
{
    return open_device(state, 0, 1U << VIRTIO_NET_F_MRG_RXBUF, 1);
}

static int setup_mrg_big_rxq(void **state)
{
    return open_device_rxq(state, 0, 1U << VIRTIO_NET_F_MRG_RXBUF, 1, 128);
}

static int setup_tap_offloads(void **state)
{
    return open_device(state, 1,
                       (1U << VIRTIO_NET_F_CSUM) | (1U << VIRTIO_NET_F_GUEST_CSUM) |
                           (1U << VIRTIO_NET_F_HOST_TSO4) | (1U << VIRTIO_NET_F_GUEST_TSO4) |
                           (1U << VIRTIO_NET_F_MRG_RXBUF),
                       1);
}

static int setup_tap_mq(void **state)
{
    return open_device(state, 1, (1U << VIRTIO_NET_F_CTRL_VQ) | (1U << VIRTIO_NET_F_MQ), 2);
}

#define SKIP_WITHOUT_TAP(state)                                                                    \
    do {                                                                                           \
        if (!*(state)) {                                                                           \
            print_message("SKIP: no usable /dev/kvm, or no tap (said above)\n");                   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* A frame larger than one buffer spans two (num_buffers 2); what is left waits for room. */
/*
 * Merged receive buffers in many tiny pieces: chains of 15 one-byte buffers
 * run out of the 64 pieces a receive takes before a largest frame fits,
 * while more chains wait. The device used to give them back, see that more
 * was available, take the same ones again and spin for ever; its worker then
 * served nothing else (this transmit never completed). Now it receives into
 * what fits: a small frame arrives in 5 chains.
 */
static void test_mrg_tiny_buffers(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[200], got[2048];
    struct virtio_net_stats st;
    struct virtio_net_hdr_v1 h;

    for (uint16_t c = 0; c < 7; c++) {
        for (uint16_t k = 0; k < 15; k++)
            desc(n, 0, (uint16_t)(15 * c + k), 1, true, k < 14 ? 15 * c + k + 1 : -1);
        avail(n, 0, (uint16_t)(15 * c));
    }
    /* The same worker serves transmits: it is not stuck. */
    make_frame(frame, sizeof(frame), 5);
    send_frame(n, 0, frame, 60);
    next_used(n, 1);
    assert_int_equal(recv(n->peer, got, sizeof(got), 0), 60);

    /* 12 + 60 bytes: four chains of 15 and 12 bytes of a fifth. */
    assert_int_equal(send(n->peer, frame, 60, 0), 60);
    for (int c = 0; c < 5; c++) {
        struct vring_used_elem e = next_used(n, 0);
        assert_int_equal(e.id, 15 * c);
        assert_int_equal(e.len, c < 4 ? 15 : 12);
        for (uint16_t k = 0; k < e.len; k++)
            got[15 * c + k] = *(uint8_t *)buf(n, 0, (uint16_t)(15 * c + k));
    }
    memcpy(&h, got, sizeof(h));
    assert_int_equal(h.num_buffers, 5);
    assert_memory_equal(got + HDR, frame, 60);

    /* Two chains are left (30 bytes): a larger frame waits for more room, then spans three. */
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    sleep_ms(50);
    assert_int_equal(used_idx(n, 0), 5);
    desc(n, 0, 105, 2048, true, -1);
    avail(n, 0, 105);
    assert_int_equal(next_used(n, 0).len, 15);
    assert_int_equal(next_used(n, 0).len, 15);
    struct vring_used_elem e = next_used(n, 0);
    assert_int_equal(e.id, 105);
    assert_int_equal(e.len, HDR + sizeof(frame) - 30);
    virtio_net_stats(n->dev, &st);
    assert_int_equal(st.rx_frames, 2);
    assert_int_equal(st.rx_dropped, 0);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

/*
 * A receive gathers at most 64 chains. A socket's first chain may be only
 * the header's 12 bytes (no piece of it holds frame data), and each further
 * 12-byte chain adds one piece: the device once took a 65th chain into a
 * receive of 64 (past its array). Now a receive of 64 chains of 12 bytes
 * (756 bytes of frame room) takes a 700-byte frame across 60 of them, each
 * id once and valid, and the rest wait for the next frame.
 */
static void test_mrg_many_small_chains(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[700], got[800];
    struct virtio_net_hdr_v1 h;
    bool seen[128] = {false};

    for (uint16_t i = 0; i < 70; i++) {
        desc(n, 0, i, HDR, true, -1);
        avail(n, 0, i);
    }
    make_frame(frame, sizeof(frame), 3);
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    uint32_t off = 0;
    for (int k = 0; k < 60; k++) {
        struct vring_used_elem e = next_used(n, 0);
        assert_true(e.id < 70 && !seen[e.id]);
        seen[e.id] = true;
        assert_int_equal(e.id, k); /* in the order offered */
        assert_int_equal(e.len, k < 59 ? HDR : (HDR + sizeof(frame)) - 59 * HDR);
        memcpy(got + off, buf(n, 0, (uint16_t)e.id), e.len);
        off += e.len;
    }
    memcpy(&h, got, sizeof(h));
    assert_int_equal(h.num_buffers, 60);
    assert_memory_equal(got + HDR, frame, sizeof(frame));
    sleep_ms(50);
    assert_int_equal(used_idx(n, 0), 60); /* the other ten wait */
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

static void test_mrg_rxbuf(void **state)
{
    NEED_KVM(state);
    struct net *n = *state;
    uint8_t frame[1000], got[1000];
    struct virtio_net_hdr_v1 h;

    for (uint16_t i = 0; i < 3; i++) {
        desc(n, 0, i, 512, true, -1);
        avail(n, 0, i);
    }
    make_frame(frame, sizeof(frame), 11);
    assert_int_equal(send(n->peer, frame, sizeof(frame), 0), sizeof(frame));
    struct vring_used_elem a = next_used(n, 0), b = next_used(n, 0);
    assert_int_equal(a.id, 0);
    assert_int_equal(a.len, 512);
    assert_int_equal(b.id, 1);
    assert_int_equal(b.len, HDR + sizeof(frame) - 512);
    memcpy(&h, buf(n, 0, 0), sizeof(h));
    assert_int_equal(h.num_buffers, 2);
    memcpy(got, (uint8_t *)buf(n, 0, 0) + HDR, 512 - HDR);
    memcpy(got + 512 - HDR, buf(n, 0, 1), sizeof(frame) - (512 - HDR));
    assert_memory_equal(got, frame, sizeof(frame));

    /* One 512-byte buffer left: less than a largest frame needs, so nothing is read yet. */
    make_frame(frame, 100, 12);
    assert_int_equal(send(n->peer, frame, 100, 0), 100);
    sleep_ms(50);
    assert_int_equal(used_idx(n, 0), 2);
    for (uint16_t i = 3; i < 6; i++) {
        desc(n, 0, i, 512, true, -1);
        avail(n, 0, i);
    }
    struct vring_used_elem c = next_used(n, 0);
    assert_int_equal(c.id, 2); /* the buffer the device held */
    assert_int_equal(c.len, HDR + 100);
    memcpy(&h, buf(n, 0, 2), sizeof(h));
    assert_int_equal(h.num_buffers, 1);
    assert_memory_equal((uint8_t *)buf(n, 0, 2) + HDR, frame, 100);
}

static void put16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

/* An IPv4 frame from 10.77.0.2 (the device) to dst, l4 bytes of protocol proto after it. */
static size_t ip_frame(uint8_t *f, const uint8_t *dmac, const uint8_t *smac, uint32_t src,
                       uint32_t dst, uint8_t proto, size_t l4)
{
    memcpy(f, dmac, 6);
    memcpy(f + 6, smac, 6);
    f[12] = 0x08, f[13] = 0x00;
    uint8_t *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16be(ip + 2, (uint16_t)(20 + l4));
    ip[8] = 64;
    ip[9] = proto;
    put16be(ip + 12, (uint16_t)(src >> 16));
    put16be(ip + 14, (uint16_t)src);
    put16be(ip + 16, (uint16_t)(dst >> 16));
    put16be(ip + 18, (uint16_t)dst);
    put16be(ip + 10, bg_inet_csum(ip, 20));
    return 14 + 20 + l4;
}

#define DEV_IP 0x0a4d0002u /* 10.77.0.2 */

/*
 * Offloads through the tap's virtio-net header. Transmit: a UDP datagram
 * whose checksum the guest left to the device (NEEDS_CSUM) reaches the
 * namespace's socket; the same bytes without the flag, their checksum
 * wrong, do not. Receive: a TCP segment of 8000 bytes sent into the tap as
 * one GSO frame (AF_PACKET with a virtio-net header) reaches the guest whole,
 * in merged buffers, its GSO header intact.
 */
static void test_tap_offloads(void **state)
{
    SKIP_WITHOUT_TAP(state);
    struct net *n = *state;
    static const uint8_t dev_mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    uint8_t ns_mac[6], f[9000], got[64];
    struct virtio_net_hdr_v1 h;
    struct pollfd pfd = {.fd = n->udp, .events = POLLIN};

    /* The namespace's MAC: from the frames it sends? Simpler: ask it through the fd's name. */
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "rvmtest0");
    assert_int_equal(ioctl(n->peer, SIOCGIFHWADDR, &ifr), 0);
    memcpy(ns_mac, ifr.ifr_hwaddr.sa_data, 6);

    for (int pass = 0; pass < 2; pass++) {
        size_t len = ip_frame(f, ns_mac, dev_mac, DEV_IP, NS_IP, 17, 8 + 10);
        uint8_t *u = f + 34;
        put16be(u, 4000);
        put16be(u + 2, NS_PORT);
        put16be(u + 4, 8 + 10);
        memcpy(u + 8, pass ? "no-offload" : "offload-ok", 10);
        memset(&h, 0, sizeof(h));
        if (pass ==
            0) { /* the pseudo-header sum, folded, not complemented: the device adds the rest */
            uint32_t sum =
                (DEV_IP >> 16) + (DEV_IP & 0xffff) + (NS_IP >> 16) + (NS_IP & 0xffff) + 17 + 18;
            while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
            put16be(u + 6, (uint16_t)sum);
            h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h.csum_start = 34;
            h.csum_offset = 6;
        } else {
            put16be(u + 6, 0x1234); /* wrong, and nothing to fix it */
        }
        uint8_t *b = buf(n, 1, (uint16_t)pass);
        memcpy(b, &h, HDR);
        memcpy(b + HDR, f, len);
        desc(n, 1, (uint16_t)pass, (uint32_t)(HDR + len), false, -1);
        avail(n, 1, (uint16_t)pass);
        next_used(n, 1);
        if (pass == 0) {
            assert_int_equal(poll(&pfd, 1, 5000), 1);
            assert_int_equal(recv(n->udp, got, sizeof(got), 0), 10);
            assert_memory_equal(got, "offload-ok", 10);
        } else {
            assert_int_equal(poll(&pfd, 1, 300), 0);
        }
    }

    /* Receive: one GSO frame, TCP over IPv4, 8000 bytes of payload. */
    int one = 1;
    assert_int_equal(setsockopt(n->peer, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)), 0);
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                .hdr_len = 54,
                                .gso_size = 1448,
                                .csum_start = 34,
                                .csum_offset = 16};
    uint8_t pkt[sizeof(vh) + 9000];
    size_t len = ip_frame(f, dev_mac, ns_mac, NS_IP, DEV_IP, 6, 20 + 8000);
    uint8_t *t = f + 34;
    memset(t, 0, 20);
    put16be(t, 5001);
    put16be(t + 2, 5002);
    t[12] = 5 << 4;
    t[13] = 0x18; /* PSH, ACK */
    put16be(t + 14, 65535);
    for (int i = 0; i < 8000; i++)
        t[20 + i] = (uint8_t)(i * 13 + 1);
    memcpy(pkt, &vh, sizeof(vh));
    memcpy(pkt + sizeof(vh), f, len);
    for (uint16_t i = 0; i < QSZ; i++) {
        desc(n, 0, i, 4096, true, -1);
        avail(n, 0, i);
    }
    assert_int_equal(send(n->peer, pkt, sizeof(vh) + len, 0), (ssize_t)(sizeof(vh) + len));
    for (;;) { /* frames the kernel sends itself come first, if any: skipped */
        struct vring_used_elem e = next_used(n, 0);
        uint8_t *b0 = buf(n, 0, (uint16_t)e.id);
        memcpy(&h, b0, sizeof(h));
        if (!(b0[HDR + 12] == 0x08 && b0[HDR + 13] == 0 && b0[HDR + 23] == 6)) {
            for (int k = 1; k < h.num_buffers; k++)
                next_used(n, 0);
            continue;
        }
        assert_int_equal(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
        assert_int_equal(h.gso_size, 1448);
        assert_int_equal(h.num_buffers, 2); /* 12 + 8054 bytes in 4 KiB buffers */
        assert_int_equal(e.len, 4096);
        struct vring_used_elem e2 = next_used(n, 0);
        assert_int_equal(e2.len, HDR + len - 4096);
        uint8_t whole[9000];
        memcpy(whole, b0 + HDR, 4096 - HDR);
        memcpy(whole + 4096 - HDR, buf(n, 0, (uint16_t)e2.id), e2.len);
        assert_memory_equal(whole + 54, f + 54, 8000);
        break;
    }
}

/* A control command on queue 4 (2 pairs): class, command, data; returns the ack byte. */
static uint8_t ctrl(struct net *n, uint8_t class, uint8_t cmd, const void *data, uint32_t len)
{
    static uint16_t next;
    uint16_t d0 = (uint16_t)(next % (QSZ / 2) * 2);
    uint8_t *c = buf(n, 4, d0), *ack = buf(n, 4, (uint16_t)(d0 + 1));

    next++;
    c[0] = class, c[1] = cmd;
    memcpy(c + 2, data, len);
    *ack = 0xee;
    desc(n, 4, d0, 2 + len, false, d0 + 1);
    desc(n, 4, (uint16_t)(d0 + 1), 1, true, -1);
    avail(n, 4, d0);
    struct vring_used_elem e = next_used(n, 4);
    assert_int_equal(e.id, d0);
    return *ack;
}

static uint8_t pairs_set(struct net *n, uint16_t pairs)
{
    return ctrl(n, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, sizeof(pairs));
}

/*
 * Injects UDP frame k (source port 1000 + k) into the tap; returns the receive
 * queue (0 or 2) it reached, after giving its buffer back.
 */
static int inject_udp(struct net *n, int k)
{
    static const uint8_t dev_mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 1};
    uint8_t f[128];
    size_t len = ip_frame(f, dev_mac, src, NS_IP, DEV_IP, 17, 8 + 16);

    put16be(f + 34, (uint16_t)(1000 + k));
    put16be(f + 36, 9);
    put16be(f + 38, 8 + 16);
    assert_int_equal(send(n->peer, f, len, 0), (ssize_t)len);
    for (int i = 0; i < 5000; i++) {
        for (int q = 0; q <= 2; q += 2)
            if (used_idx(n, q) != n->used_seen[q]) {
                struct vring_used_elem e = next_used(n, q);
                uint8_t *b = buf(n, q, (uint16_t)e.id);
                assert_int_equal(e.len, HDR + len);
                assert_int_equal((b[HDR + 34] << 8 | b[HDR + 35]), 1000 + k);
                avail(n, q, (uint16_t)e.id);
                return q;
            }
        sleep_ms(1);
    }
    fail_msg("frame %d reached no receive queue", k);
    return -1;
}

/*
 * Two queue pairs on a multi-queue tap: the control queue turns the second
 * on (and refuses counts out of range); frames then spread over both pairs'
 * receive queues and the second pair transmits; back to one pair, all
 * frames come to the first.
 */
static void test_tap_mq(void **state)
{
    SKIP_WITHOUT_TAP(state);
    struct net *n = *state;
    uint8_t frame[90], got[2048];
    int seen[3] = {0, 0, 0}, k = 0;

    uint64_t v = 0;
    assert_int_equal(vm_io_access(n->vm, RVM_BUS_MMIO, BASE + 0x108, 2, false, &v), 0);
    assert_int_equal(v, 2); /* max_virtqueue_pairs */
    assert_int_equal(pairs_set(n, 0), VIRTIO_NET_ERR);
    assert_int_equal(pairs_set(n, 3), VIRTIO_NET_ERR);
    assert_int_equal(ctrl(n, 99, 0, "", 0), VIRTIO_NET_ERR);
    assert_int_equal(pairs_set(n, 2), VIRTIO_NET_OK);
    for (uint16_t i = 0; i < QSZ; i++) {
        desc(n, 0, i, 2048, true, -1);
        avail(n, 0, i);
        desc(n, 2, i, 2048, true, -1);
        avail(n, 2, i);
    }
    for (; k < 64 && (!seen[0] || !seen[2]); k++)
        seen[inject_udp(n, k)]++;
    assert_true(seen[0] > 0 && seen[2] > 0);

    /* The second pair transmits. */
    test_frame(frame, sizeof(frame), 8);
    uint8_t *b = buf(n, 3, 0);
    memset(b, 0, HDR);
    memcpy(b + HDR, frame, sizeof(frame));
    desc(n, 3, 0, HDR + sizeof(frame), false, -1);
    avail(n, 3, 0);
    next_used(n, 3);
    assert_int_equal(recv_test_frame(n->peer, got, sizeof(got)), sizeof(frame));
    assert_memory_equal(got, frame, sizeof(frame));

    /* One pair again: everything to the first. */
    assert_int_equal(pairs_set(n, 1), VIRTIO_NET_OK);
    for (int i = 0; i < 16; i++, k++)
        assert_int_equal(inject_udp(n, k), 0);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

/*
 * The pairs the driver enabled (MQ) are part of the device's state: saved,
 * and after a load the tap's second queue is attached again. The record
 * used to leave that out, and a restored guest that had asked for two
 * pairs got one (frames on its second receive queue never came).
 */
static void test_snapshot_keeps_active_pairs(void **state)
{
    SKIP_WITHOUT_TAP(state);
    struct net *n = *state;
    const struct vm_snap_ops *ops = vm_device_kind(REC_DEV_VIRTIO_NET);
    struct recbuf rb = {0};
    int seen[3] = {0, 0, 0}, k = 0;

    assert_non_null(ops);
    assert_int_equal(pairs_set(n, 2), VIRTIO_NET_OK);
    for (uint16_t i = 0; i < QSZ; i++) {
        desc(n, 0, i, 2048, true, -1);
        avail(n, 0, i);
        desc(n, 2, i, 2048, true, -1);
        avail(n, 2, i);
    }
    ops->quiesce(n->dev);
    assert_int_equal(ops->save(n->dev, &rb, 0), 0);
    /* Loaded back into the device: reset, started again where it was. */
    assert_int_equal(ops->load(n->dev, rb.p, rb.len, 0), 0);
    rec_free(&rb);
    for (; k < 64 && (!seen[0] || !seen[2]); k++)
        seen[inject_udp(n, k)]++;
    assert_true(seen[0] > 0 && seen[2] > 0);
    assert_int_equal(rd(n, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
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
        T(test_rx_head_offered_twice),
        cmocka_unit_test_setup_teardown(test_tap, setup_tap, teardown),
        cmocka_unit_test_setup_teardown(test_reset_with_sends_blocked, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_dgram_empty_frame, setup_dgram, teardown),
        cmocka_unit_test_setup_teardown(test_mrg_rxbuf, setup_mrg, teardown),
        cmocka_unit_test_setup_teardown(test_mrg_tiny_buffers, setup_mrg_big_rxq, teardown),
        cmocka_unit_test_setup_teardown(test_mrg_many_small_chains, setup_mrg_big_rxq, teardown),
        cmocka_unit_test_setup_teardown(test_tap_offloads, setup_tap_offloads, teardown),
        cmocka_unit_test_setup_teardown(test_tap_mq, setup_tap_mq, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_keeps_active_pairs, setup_tap_mq, teardown),
    };
    return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
