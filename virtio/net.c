/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include <ringvm/virtio.h>
#include <ringvm/vm.h>

#include "../core/counter.h"
#include "../core/log.h"
#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "mmio.h"
#include "worker.h"
#include "net.h"

#define NET_HDR    ((uint32_t)sizeof(struct virtio_net_hdr_v1))
#define ETH_HLEN_  14
#define RXQ        0
#define TXQ        1
#define TX_SLOTS   64
#define RX_DEPTH   32 /* receives posted at once, as one ordered chain */
#define MAX_SEG    64
#define RING_SIZE  256
#define TAG_STOP   (1ULL << 62)
#define TAG_NOTIFY (1ULL << 61) /* | queue */
#define TAG_RX     (1ULL << 60) /* | slot */
#define TAG_TX     (1ULL << 59) /* | slot */

struct tx_slot {
    uint16_t head;
    int next_free;
    int niov;
    struct iovec iov[MAX_SEG];
    struct msghdr msg;
};

struct rx_slot {
    uint16_t head;
    unsigned nseg;
    struct vq_seg seg[MAX_SEG + 2];
    struct iovec iov[MAX_SEG];
    struct msghdr msg;
};

struct virtio_net {
    struct rvm_vm *vm;
    struct virtio_mmio *t;
    struct virtio_device_ops ops;
    struct virtio_net_config cfg;
    int fd;
    bool tap;         /* the backend reads and writes the virtio-net header with the frame */
    uint16_t link;    /* config status: VIRTIO_NET_S_LINK_UP or 0; __atomic */
    bool eof_on_zero; /* a 0-byte read means the peer is gone (not a datagram socket) */

    /* The worker's, between activate and reset. */
    struct vq *vqs;
    pthread_t worker;
    bool running;
    int stop_efd;
    struct io_uring ring;
    bool ring_disabled;
    uint64_t poll_ns; /* device-side polling window; 0: none */
    uint64_t notify_buf[2], stop_buf;
    struct tx_slot tx[TX_SLOTS];
    int tx_free, tx_inflight;
    struct rx_slot *rx; /* RX_DEPTH of them */
    int rx_posted;      /* receives in flight; they complete in slot order */
    bool rx_eof;
    struct vq_seg seg[MAX_SEG + 2];

    uint64_t stat_tx, stat_tx_drop, stat_rx, stat_rx_drop; /* __atomic, single writer */
};

void virtio_net_stats(const struct virtio_net *n, struct virtio_net_stats *s)
{
    s->tx_frames = __atomic_load_n(&n->stat_tx, __ATOMIC_RELAXED);
    s->tx_dropped = __atomic_load_n(&n->stat_tx_drop, __ATOMIC_RELAXED);
    s->rx_frames = __atomic_load_n(&n->stat_rx, __ATOMIC_RELAXED);
    s->rx_dropped = __atomic_load_n(&n->stat_rx_drop, __ATOMIC_RELAXED);
}

static void net_config_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct virtio_net *n = dev;
    struct virtio_net_config c = n->cfg; /* fixed after attach, but for the link */

    c.status = __atomic_load_n(&n->link, __ATOMIC_ACQUIRE);
    memcpy(buf, (const uint8_t *)&c + off, len);
}

/*
 * The chain's bytes from offset skip on, as iovecs. False when the chain is
 * shorter than skip or has too many pieces.
 */
static bool iov_from(const struct vq_seg *seg, unsigned nseg, uint32_t skip, struct iovec *iov,
                     int *niov, uint64_t *payload)
{
    *niov = 0;
    *payload = 0;
    for (unsigned i = 0; i < nseg; i++) {
        uint32_t len = seg[i].len, off = 0;

        if (skip) {
            off = skip < len ? skip : len;
            skip -= off;
        }
        if (off == len)
            continue;
        if (*niov == MAX_SEG)
            return false;
        iov[*niov].iov_base = (uint8_t *)seg[i].hva + off;
        iov[*niov].iov_len = len - off;
        *payload += len - off;
        (*niov)++;
    }
    return skip == 0;
}

/*
 * The backend is gone for good (a deleted tap answers -EBADFD, a closed
 * socket EOF or -EPIPE): the link goes down, the guest is told through a
 * config interrupt, and the device stops reading; the VM runs on.
 */
static bool backend_gone(int res)
{
    return res == -EBADFD || res == -EPIPE || res == -ENXIO || res == -ENODEV ||
           res == -ECONNRESET || res == -ENOTCONN;
}

static void link_down(struct virtio_net *n)
{
    n->rx_eof = true;
    if (__atomic_exchange_n(&n->link, 0, __ATOMIC_ACQ_REL))
        virtio_mmio_interrupt(n->t, VIRTIO_MMIO_INT_CONFIG);
}

/*
 * A transmit chain: sent as one message, or given back at once (malformed,
 * too big). Sends of one batch are hard-linked so they leave in the guest's
 * order (io_uring would otherwise run a send that found room before an
 * earlier one that had to wait) and one failure does not cancel the rest.
 */
static void tx_chain(struct virtio_net *n, struct vq_chain *c, struct io_uring_sqe **prev)
{
    struct tx_slot *s = &n->tx[n->tx_free];
    uint64_t payload;
    bool ok = c->err == VQ_OK && c->in_len == 0;

    /* A socket gets the frame alone; a tap the header too (it reads it). */
    ok = ok && iov_from(c->seg, c->nseg, n->tap ? 0 : NET_HDR, s->iov, &s->niov, &payload);
    if (n->tap && ok)
        ok = payload >= NET_HDR, payload -= NET_HDR;
    ok = ok && payload >= ETH_HLEN_ && payload <= (uint64_t)n->cfg.mtu + ETH_HLEN_ + 4;
    if (!ok) {
        counter_bump(&n->stat_tx_drop);
        vq_add_used(&n->vqs[TXQ], c->head, 0);
        return;
    }
    int slot = n->tx_free;
    n->tx_free = s->next_free;
    s->head = c->head;
    memset(&s->msg, 0, sizeof(s->msg));
    s->msg.msg_iov = s->iov;
    s->msg.msg_iovlen = (size_t)s->niov;
    struct io_uring_sqe *sqe = worker_sqe(&n->ring);
    if (n->tap)
        io_uring_prep_writev(sqe, n->fd, s->iov, (unsigned)s->niov, 0);
    else
        io_uring_prep_sendmsg(sqe, n->fd, &s->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG_TX | (uint64_t)slot);
    if (*prev)
        (*prev)->flags |= IOSQE_IO_HARDLINK;
    *prev = sqe;
    n->tx_inflight++;
}

/*
 * Takes transmit chains while slots last, as one batch; a new batch starts
 * only when the last one is done (their order holds). False when the ring
 * is corrupt.
 */
static bool drain_tx(struct virtio_net *n, bool quiet)
{
    struct vq *vq = &n->vqs[TXQ];
    struct vq_chain c = {.seg = n->seg, .max_seg = MAX_SEG + 2};
    struct io_uring_sqe *prev = NULL;

    if (!vq->size || n->tx_inflight)
        return true; /* the batch's completions bring us back */
    if (io_uring_sq_space_left(&n->ring) < TX_SLOTS)
        io_uring_submit(&n->ring); /* the batch must not be cut by a submit */
    do {
        vq_set_notify(vq, false);
        while (n->tx_free >= 0) {
            int r = vq_pop(vq, &c);
            if (r < 0)
                return false;
            if (r == 0)
                break;
            tx_chain(n, &c, &prev);
        }
        if (n->tx_free < 0 || quiet)
            return true; /* completions, or the polling worker, bring us back */
    } while (vq_set_notify(vq, true));
    return true;
}

/*
 * Posts receives into the buffers the guest has given, up to RX_DEPTH as
 * one hard-linked chain (frames land in the order they came), when none is
 * in flight: no buffer, no read (the backend keeps the frame). False when
 * the ring is corrupt.
 */
static bool post_rx(struct virtio_net *n, bool quiet)
{
    struct vq *vq = &n->vqs[RXQ];
    struct io_uring_sqe *prev = NULL;

    if (!vq->size || n->rx_posted || n->rx_eof)
        return true;
    if (io_uring_sq_space_left(&n->ring) < RX_DEPTH)
        io_uring_submit(&n->ring);
    while (n->rx_posted < RX_DEPTH) {
        struct rx_slot *s = &n->rx[n->rx_posted];
        struct vq_chain c = {.seg = s->seg, .max_seg = MAX_SEG + 2};
        uint64_t room;
        int niov;

        vq_set_notify(vq, false);
        int r = vq_pop(vq, &c);
        if (r < 0)
            return false;
        if (r == 0) {
            if (n->rx_posted || quiet || !vq_set_notify(vq, true))
                return true; /* completions, polling or the guest's next buffer bring us back */
            continue;
        }
        /* A buffer the device cannot write, or too small for a header and a frame: refused. */
        if (c.err != VQ_OK || c.out_len != 0 || c.in_len < NET_HDR + ETH_HLEN_ ||
            !iov_from(c.seg, c.nseg, n->tap ? 0 : NET_HDR, s->iov, &niov, &room)) {
            counter_bump(&n->stat_rx_drop);
            vq_add_used(vq, c.head, 0);
            continue;
        }
        s->head = c.head;
        s->nseg = c.nseg;
        memset(&s->msg, 0, sizeof(s->msg));
        s->msg.msg_iov = s->iov;
        s->msg.msg_iovlen = (size_t)niov;
        struct io_uring_sqe *sqe = worker_sqe(&n->ring);
        if (n->tap) /* the tap writes the header (its first 10 bytes) and the frame */
            io_uring_prep_readv(sqe, n->fd, s->iov, (unsigned)niov, 0);
        else
            io_uring_prep_recvmsg(sqe, n->fd, &s->msg, 0);
        io_uring_sqe_set_data64(sqe, TAG_RX | (uint64_t)n->rx_posted);
        if (prev)
            prev->flags |= IOSQE_IO_HARDLINK;
        prev = sqe;
        n->rx_posted++;
    }
    return true;
}

/* Writes len bytes at offset off of a receive chain. */
static void rx_write(struct rx_slot *s, uint32_t off, const void *p, uint32_t len)
{
    const uint8_t *src = p;

    for (unsigned i = 0; i < s->nseg && len; i++) {
        uint32_t sl = s->seg[i].len;
        if (off >= sl) {
            off -= sl;
            continue;
        }
        uint32_t k = sl - off < len ? sl - off : len;
        memcpy((uint8_t *)s->seg[i].hva + off, src, k);
        src += k, len -= k, off = 0;
    }
}

/* Marks what a receive of total bytes (header included) wrote into the chain. */
static void rx_mark(struct virtio_net *n, struct rx_slot *s, uint64_t total)
{
    for (unsigned i = 0; i < s->nseg && total; i++) {
        uint64_t k = s->seg[i].len < total ? s->seg[i].len : total;
        mem_mark_dirty(rvm_vm_mem(n->vm), s->seg[i].gpa, k);
        total -= k;
    }
}

static void rx_done(struct virtio_net *n, struct rx_slot *s, int res)
{
    struct virtio_net_hdr_v1 h = {.gso_type = VIRTIO_NET_HDR_GSO_NONE, .num_buffers = 1};
    uint32_t len = 0;

    if (res == -ECANCELED || n->rx_eof) {
        /* Stopping, or the backend went earlier in this chain: back unused. */
    } else if ((res == 0 && n->eof_on_zero) || backend_gone(res)) {
        link_down(n); /* the guest keeps its other buffers */
    } else if (res < 0 || (s->msg.msg_flags & MSG_TRUNC) ||
               res < (n->tap ? (int)NET_HDR : 0) + ETH_HLEN_) {
        counter_bump(&n->stat_rx_drop); /* larger than the buffer, or not a frame */
    } else if (n->tap) {
        uint16_t one = 1; /* num_buffers: the tap fills only the legacy 10 bytes */
        rx_write(s, offsetof(struct virtio_net_hdr_v1, num_buffers), &one, sizeof(one));
        len = (uint32_t)res;
        rx_mark(n, s, len);
        counter_bump(&n->stat_rx);
    } else {
        rx_write(s, 0, &h, NET_HDR);
        len = NET_HDR + (uint32_t)res;
        rx_mark(n, s, len);
        counter_bump(&n->stat_rx);
    }
    vq_add_used(&n->vqs[RXQ], s->head, len);
}

/*
 * Device-side polling, as virtio-blk's: spins until a completion is ready
 * or a queue has chains the device would take, for at most poll_ns, with
 * guest notifications off. Returns whether work came.
 */
static bool poll_for_work(struct virtio_net *n)
{
    struct vq *tx = &n->vqs[TXQ], *rx = &n->vqs[RXQ];
    uint64_t start = worker_now_ns();

    io_uring_submit(&n->ring);
    for (unsigned i = 1;; i++) {
        if (io_uring_cq_ready(&n->ring))
            return true;
        if (tx->size && !n->tx_inflight && vq_has_avail(tx))
            return true;
        if (rx->size && !n->rx_posted && !n->rx_eof && vq_has_avail(rx))
            return true;
        if ((n->rx_posted || n->tx_inflight) && worker_has_task_work(&n->ring, n->ring_disabled))
            io_uring_get_events(&n->ring); /* runs the completions' task work */
        if (i % 8 == 0)
            sched_yield(); /* io_uring's kernel workers may need this CPU */
        if (i % 64 == 0 && worker_now_ns() - start > n->poll_ns)
            return false;
        __builtin_ia32_pause();
    }
}

static void *net_worker(void *arg)
{
    struct virtio_net *n = arg;
    bool stopping = false, broken = false;

    pthread_setname_np(pthread_self(), "rvm-net");
    if (worker_ring_enable(&n->ring, n->ring_disabled) < 0) {
        rvm_err(n->vm->hv, "virtio-net: cannot enable the io_uring; device needs a reset");
        virtio_mmio_needs_reset(n->t);
        return NULL;
    }
    for (uint16_t q = 0; q < 2; q++)
        if (n->vqs[q].size)
            worker_arm_eventfd(&n->ring, virtio_mmio_queue_eventfd(n->t, q), &n->notify_buf[q],
                               TAG_NOTIFY | q);
    worker_arm_eventfd(&n->ring, n->stop_efd, &n->stop_buf, TAG_STOP);
    bool quiet = n->poll_ns != 0;
    broken = !post_rx(n, quiet) || !drain_tx(n, quiet);

    while (!stopping || n->tx_inflight > 0 || n->rx_posted > 0) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        bool kicked[2] = {false, false}, tx_done = false, rx_any = false, polled = false;

        if (quiet && !stopping && !broken) {
            polled = poll_for_work(n);
            /* Before sleeping, notifications back on where the device waits for the guest
             * (not while its own I/O is in flight); what raced with that is work. */
            if (!polled && !n->tx_inflight && vq_set_notify(&n->vqs[TXQ], true))
                polled = true;
            if (!polled && !n->rx_posted && !n->rx_eof && vq_set_notify(&n->vqs[RXQ], true))
                polled = true;
        }
        int w = polled ? 0 : io_uring_submit_and_wait(&n->ring, 1);
        if (w < 0 && w != -EINTR) /* liburing returns -errno; errno is not set */
            break;
        io_uring_for_each_cqe(&n->ring, head, cqe)
        {
            uint64_t tag = io_uring_cqe_get_data64(cqe);

            seen++;
            if (tag == TAG_STOP) {
                stopping = true;
            } else if (tag & TAG_NOTIFY) {
                kicked[tag & 1] = true;
            } else if (tag & TAG_RX) {
                rx_done(n, &n->rx[tag & 0xffff], cqe->res);
                n->rx_posted--;
                rx_any = true;
            } else if (tag & TAG_TX) {
                int slot = (int)(tag & 0xffff);
                if (cqe->res < 0)
                    counter_bump(&n->stat_tx_drop);
                else
                    counter_bump(&n->stat_tx);
                if (backend_gone(cqe->res))
                    link_down(n);
                vq_add_used(&n->vqs[TXQ], n->tx[slot].head, 0);
                n->tx[slot].next_free = n->tx_free;
                n->tx_free = slot;
                n->tx_inflight--;
                tx_done = true;
            }
        }
        io_uring_cq_advance(&n->ring, seen);
        if (stopping && (n->rx_posted || n->tx_inflight)) {
            /*
             * A receive waits for a frame that may never come, a send for a peer that may
             * never read: cancel all, their chains go back (unused, unsent). A hard link
             * goes on after a cancelled request, so this repeats until the chains are
             * through (each cancel's own completion brings the loop back).
             */
            struct io_uring_sqe *sqe = worker_sqe(&n->ring);
            io_uring_prep_cancel_fd(sqe, n->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, 0);
        }
        if (!stopping && !broken) {
            if (kicked[TXQ] || tx_done || polled)
                broken = !drain_tx(n, quiet);
            if (!broken && (kicked[RXQ] || rx_any || polled))
                broken = !post_rx(n, quiet);
            for (uint16_t q = 0; q < 2; q++)
                if (kicked[q])
                    worker_arm_eventfd(&n->ring, virtio_mmio_queue_eventfd(n->t, q),
                                       &n->notify_buf[q], TAG_NOTIFY | q);
            if (broken) {
                rvm_err(n->vm->hv, "virtio-net: a queue is corrupt; device needs a reset");
                virtio_mmio_needs_reset(n->t);
            }
        }
        bool irq = false;
        for (uint16_t q = 0; q < 2; q++)
            if (n->vqs[q].size)
                irq |= vq_publish_used(&n->vqs[q]);
        if (irq)
            virtio_mmio_interrupt(n->t, VIRTIO_MMIO_INT_VRING);
    }
    return NULL;
}

static int net_activate(void *dev, struct vq *queues, uint64_t features)
{
    struct virtio_net *n = dev;
    int r;

    (void)features;
    n->vqs = queues;
    for (int i = 0; i < TX_SLOTS; i++)
        n->tx[i].next_free = i + 1 < TX_SLOTS ? i + 1 : -1;
    n->tx_free = 0;
    n->tx_inflight = 0;
    n->rx_posted = 0;
    n->rx_eof = !__atomic_load_n(&n->link, __ATOMIC_ACQUIRE); /* a gone backend stays gone */
    if ((r = worker_ring_init(&n->ring, RING_SIZE, &n->ring_disabled)) < 0)
        return r;
    n->stop_efd = eventfd(0, EFD_CLOEXEC);
    if (n->stop_efd < 0) {
        r = -errno;
        io_uring_queue_exit(&n->ring);
        return r;
    }
    if ((r = vm_io_thread_create(n->vm, &n->worker, net_worker, n)) < 0) {
        close(n->stop_efd);
        io_uring_queue_exit(&n->ring);
        return r;
    }
    n->running = true;
    return 0;
}

static void net_reset(void *dev)
{
    struct virtio_net *n = dev;

    if (!n->running)
        return;
    if (worker_stop(n->worker, n->stop_efd, &n->ring) < 0)
        rvm_err(n->vm->hv, "virtio-net: cannot signal the worker to stop");
    n->running = false;
}

static void net_destroy(void *dev)
{
    struct virtio_net *n = dev;

    net_reset(n);
    close(n->fd);
    free(n->rx);
    free(n);
}

int virtio_net_open_tap(const char *name)
{
    struct ifreq ifr;
    int fd, hs = NET_HDR;

    if (!name || strlen(name) >= IFNAMSIZ)
        return -EINVAL;
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int virtio_net_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_net_opts *o, struct virtio_net **out)
{
    struct virtio_net *n;
    int r;

    if (!vm || !o || o->fd < 0 || (o->mtu && (o->mtu < 68 || o->mtu > 65535 - ETH_HLEN_))) {
        if (o && o->fd >= 0)
            close(o->fd);
        return -EINVAL;
    }
    if (!(n = calloc(1, sizeof(*n))) || !(n->rx = calloc(RX_DEPTH, sizeof(*n->rx)))) {
        free(n);
        close(o->fd);
        return -ENOMEM;
    }
    n->vm = vm;
    n->fd = o->fd;
    n->tap = o->tap;
    n->poll_ns = (uint64_t)o->poll_us * 1000;
    /* io_uring waits for readiness itself; a nonblocking fd would spin on -EAGAIN. */
    int fl = fcntl(n->fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        fcntl(n->fd, F_SETFL, fl & ~O_NONBLOCK);
    int type = 0;
    socklen_t tl = sizeof(type);
    n->eof_on_zero =
        n->tap || getsockopt(n->fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_DGRAM;
    memcpy(n->cfg.mac, o->mac, sizeof(n->cfg.mac));
    n->link = VIRTIO_NET_S_LINK_UP;
    n->cfg.max_virtqueue_pairs = 1;
    n->cfg.mtu = o->mtu ? o->mtu : 1500;
    n->ops = (struct virtio_device_ops){
        .device_id = VIRTIO_ID_NET,
        .features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
                    (1ULL << VIRTIO_NET_F_MTU) | (1ULL << VIRTIO_RING_F_EVENT_IDX),
        .num_queues = 2,
        .queue_max = 256,
        .config_size = offsetof(struct virtio_net_config, speed),
        .config_read = net_config_read,
        .activate = net_activate,
        .reset = net_reset,
    };
    if ((r = vm_add_device(vm, n, NULL, net_destroy)) < 0) {
        close(n->fd);
        free(n->rx);
        free(n);
        return r;
    }
    if ((r = virtio_mmio_attach(vm, base, gsi, &n->ops, n, &n->t)) < 0)
        return r; /* n (and the fd) go with the VM */
    if (out)
        *out = n;
    return 0;
}

int rvm_vm_add_virtio_net(struct rvm_vm *vm, const struct rvm_net_config *config,
                          char *cmdline_word, size_t len)
{
    static const uint8_t zero[6];
    struct virtio_net_opts o = {.fd = -1};
    uint64_t base;
    uint32_t gsi;
    int r;

    if (!vm || !config || (!config->tap && config->fd < 0))
        return -EINVAL;
    if ((r = virtio_mmio_next_slot(vm, &base, &gsi)) < 0)
        return r;
    if (config->tap) {
        if ((o.fd = virtio_net_open_tap(config->tap)) < 0) {
            rvm_err(vm->hv, "virtio-net: tap %s: %s", config->tap, strerror(-o.fd));
            return o.fd;
        }
        o.tap = true;
    } else {
        o.fd = config->fd;
        o.tap = config->fd_is_tap;
    }
    memcpy(o.mac, config->mac, sizeof(o.mac));
    if (!memcmp(o.mac, zero, sizeof(zero))) {
        static const uint8_t def[5] = {0x52, 0x54, 0x00, 0x52, 0x56};
        memcpy(o.mac, def, sizeof(def));
        o.mac[5] = (uint8_t)(gsi - RVM_VIRTIO_GSI_BASE);
    }
    o.mtu = config->mtu;
    o.poll_us = config->poll_us == 0                 ? RVM_NET_POLL_DEFAULT_US
                : config->poll_us == RVM_NET_NO_POLL ? 0
                                                     : config->poll_us;
    if ((r = virtio_net_attach(vm, base, gsi, &o, NULL)) < 0)
        return r; /* the fd was taken over, and is closed */
    if (cmdline_word && (r = virtio_mmio_cmdline(base, gsi, cmdline_word, len)) < 0)
        return r;
    return 0;
}
