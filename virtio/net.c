/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include <ringvm/snapshot.h>
#include <ringvm/virtio.h>
#include <ringvm/vm.h>

#include "../core/log.h"
#include "../core/snaprec.h"
#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "mmio.h"
#include "worker.h"
#include "net.h"
#include "net_req.h"
#include "ratelimit.h"

#define TX_SLOTS      64
#define RX_DEPTH      32 /* receives posted at once, as one ordered chain */
#define RX_CHAIN_SEG  20 /* pieces of one receive chain (Linux's big-packet chains have 19) */
#define RX_IOV_MAX    64 /* pieces of one receive (merged buffers) */
#define MAX_SEG       64
#define RING_SIZE     256
#define TAG_RX        (1ULL << 55) /* | slot (worker.h: below WORKER_TAG_DEVICE_LIMIT) */
#define TAG_TX        (1ULL << 54) /* | slot */
#define NOTIFY_RX     1            /* a pair's notifications, as bits of the worker's kicked mask */
#define NOTIFY_TX     2
#define NOTIFY_CTRL   4
#define NET_QUEUE_MAX 256

/* Offloads passed through to a tap in the virtio-net header. */
#define TAP_OFFLOADS                                                                               \
    ((1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |                             \
     (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6) |                         \
     (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6))

struct tx_slot {
    struct net_tx tx; /* the checked frame (a tap's header: the checked copy) */
    uint16_t head;
    int next_free;
    struct msghdr msg;
};

/* A receive chain the device holds: popped, not yet used. */
struct rx_chain {
    bool out; /* the device has it (held or posted): the driver must not offer it again */
    uint16_t nseg;
    uint32_t room; /* device-writable bytes */
    struct vq_seg seg[RX_CHAIN_SEG];
};

/* One posted receive: the chains it may fill, in order (more than one with MRG_RXBUF). */
struct rx_slot {
    uint16_t chain[RX_IOV_MAX];
    unsigned nchains;
    struct iovec iov[RX_IOV_MAX];
    struct msghdr msg;
};

struct virtio_net;

/* A receive/transmit queue pair with its backend fd, worker and ring. */
struct pair {
    struct virtio_net *n;
    unsigned index;
    int fd;
    struct vq *rx, *tx, *ctrl; /* ctrl: pair 0 only, when negotiated */
    struct worker w;
    bool detached; /* a tap queue the guest has not enabled (MQ); __atomic */
    bool parked;   /* the worker found it detached and stopped reading */
    bool txd, rxd; /* transmits, receives completed this round */
    struct tx_slot tx_slots[TX_SLOTS];
    int tx_free, tx_inflight;
    int tx_pending;  /* a checked frame's slot that waits for the transmit limit; -1: none */
    bool rx_limited; /* receives wait for the receive limit (its timer brings the worker) */
    struct rx_slot rx_slots[RX_DEPTH];
    int rx_posted; /* receives in flight; they complete in slot order */
    int rx_batch;  /* receives posted in the last batch: the in-flight ones are its last */
    bool rx_eof;
    struct rx_chain *rxc; /* by head, rx->size of them */
    uint16_t *held;       /* heads of held chains, a ring of rx->size */
    unsigned held_first, held_n;
    struct vq_seg seg[MAX_SEG + 2];
};

struct virtio_net {
    struct rvm_vm *vm;
    struct virtio_mmio *t;
    struct virtio_device_ops ops;
    struct virtio_net_config cfg;
    bool tap;         /* the backend reads and writes the virtio-net header with the frame */
    uint16_t link;    /* config status: VIRTIO_NET_S_LINK_UP or 0; __atomic */
    bool eof_on_zero; /* a 0-byte read means the peer is gone (not a datagram socket) */
    uint64_t poll_ns; /* device-side polling window; 0: none */
    unsigned npairs;  /* queue pairs offered (one fd each) */
    struct pair pairs[RVM_NET_MAX_QUEUE_PAIRS];

    /* Set at activate, for the workers. */
    struct vq *vqs;
    uint64_t features;
    bool mrg;                       /* VIRTIO_NET_F_MRG_RXBUF */
    uint32_t rx_need;               /* with mrg: bytes a receive gathers room for */
    struct net_tx_limits tx_limits; /* what a transmit is checked against */
    unsigned active_pairs;          /* queue pairs the driver enabled (MQ); pair 0's worker */

    uint64_t stat_tx, stat_tx_drop, stat_rx, stat_rx_drop; /* __atomic, several writers */

    /* Rate limits for the device as a whole: every pair's worker takes from the same buckets. */
    struct net_limiter {
        pthread_mutex_t lock;
        bool on;
        struct rate_limit l;
    } tx_lim, rx_lim;

    /* While net_load() loads the transport: the held receive chains its activation takes up. */
    const struct net_held *restored;
};

/* The receive chains each pair held when the snapshot was taken, oldest first. */
struct net_held {
    uint16_t n[RVM_NET_MAX_QUEUE_PAIRS];
    uint16_t pad;
    uint16_t head[RVM_NET_MAX_QUEUE_PAIRS][NET_QUEUE_MAX];
};

static void stat_add(uint64_t *c)
{
    __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

void virtio_net_stats(const struct virtio_net *n, struct virtio_net_stats *s)
{
    s->tx_frames = __atomic_load_n(&n->stat_tx, __ATOMIC_RELAXED);
    s->tx_dropped = __atomic_load_n(&n->stat_tx_drop, __ATOMIC_RELAXED);
    s->rx_frames = __atomic_load_n(&n->stat_rx, __ATOMIC_RELAXED);
    s->rx_dropped = __atomic_load_n(&n->stat_rx_drop, __ATOMIC_RELAXED);
}

static bool has(const struct virtio_net *n, unsigned bit)
{
    return n->features & (1ULL << bit);
}

static void net_config_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct virtio_net *n = dev;
    struct virtio_net_config c = n->cfg; /* fixed after attach, but for the link */

    c.status = __atomic_load_n(&n->link, __ATOMIC_ACQUIRE);
    memcpy(buf, (const uint8_t *)&c + off, len);
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
    if (__atomic_exchange_n(&n->link, 0, __ATOMIC_ACQ_REL))
        virtio_mmio_interrupt(n->t, VIRTIO_MMIO_INT_CONFIG);
}

/* A detached tap queue answers -EBADFD too; that is the guest's choice, not a lost tap. */
static bool is_detached(struct pair *p)
{
    return __atomic_load_n(&p->detached, __ATOMIC_ACQUIRE);
}

/* ---- rate limits ---- */

static void limiter_init(struct net_limiter *m, const struct rvm_rate_limit *c)
{
    pthread_mutex_init(&m->lock, NULL);
    rate_limit_init(&m->l, c, vm_now_ns());
    m->on = rate_limit_on(&m->l);
}

/* A frame of bytes may go now (its cost taken); else *wait_ns says how long until it may. */
static bool limiter_take(struct net_limiter *m, uint64_t bytes, uint64_t *wait_ns)
{
    if (!m->on)
        return true;
    pthread_mutex_lock(&m->lock);
    uint64_t now = vm_now_ns();
    bool ok = rate_limit_take(&m->l, bytes, now);
    if (!ok)
        *wait_ns = rate_limit_wait_ns(&m->l, bytes, now);
    pthread_mutex_unlock(&m->lock);
    return ok;
}

/*
 * Receives: how many frames of up to unit bytes may be read now (at least
 * one while the buckets are out of debt; 0 and *wait_ns while in debt); the
 * charge for one that was, after.
 */
static unsigned limiter_ready(struct net_limiter *m, uint64_t unit, unsigned most,
                              uint64_t *wait_ns)
{
    if (!m->on)
        return most;
    pthread_mutex_lock(&m->lock);
    uint64_t now = vm_now_ns(), room = 0;
    bool ok = rate_limit_ready(&m->l, now);
    if (!ok)
        *wait_ns = rate_limit_ready_wait_ns(&m->l, now);
    else
        room = rate_limit_room(&m->l, unit, now);
    pthread_mutex_unlock(&m->lock);
    return !ok ? 0 : room < 1 ? 1 : room > most ? most : (unsigned)room;
}

static void limiter_charge(struct net_limiter *m, uint64_t bytes)
{
    if (!m->on)
        return;
    pthread_mutex_lock(&m->lock);
    rate_limit_charge(&m->l, bytes, vm_now_ns());
    pthread_mutex_unlock(&m->lock);
}

/* ---- transmit ---- */

/*
 * A transmit chain: sent as one message, or given back at once (malformed,
 * too big, an offload not negotiated). Sends of one batch are hard-linked so
 * they leave in the guest's order (io_uring would otherwise run a send that
 * found room before an earlier one that had to wait) and one failure does
 * not cancel the rest.
 */
static void tx_send(struct pair *p, int slot, struct io_uring_sqe **prev)
{
    struct virtio_net *n = p->n;
    struct tx_slot *s = &p->tx_slots[slot];
    struct io_uring_sqe *sqe = worker_sqe(&p->w);

    if (!sqe) { /* the kernel refused to take more: this frame is dropped */
        s->next_free = p->tx_free;
        p->tx_free = slot;
        stat_add(&n->stat_tx_drop);
        vq_add_used(p->tx, s->head, 0);
        return;
    }
    if (n->tap)
        io_uring_prep_writev(sqe, p->fd, s->tx.iov, (unsigned)s->tx.niov, 0);
    else
        io_uring_prep_sendmsg(sqe, p->fd, &s->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG_TX | (uint64_t)slot);
    if (*prev)
        (*prev)->flags |= IOSQE_IO_HARDLINK;
    *prev = sqe;
    p->tx_inflight++;
}

static void tx_chain(struct pair *p, struct vq_chain *c, struct io_uring_sqe **prev)
{
    struct virtio_net *n = p->n;
    struct tx_slot *s = &p->tx_slots[p->tx_free];
    uint64_t wait = 0;

    if (!net_tx_parse(&n->tx_limits, c, &s->tx)) {
        stat_add(&n->stat_tx_drop);
        vq_add_used(p->tx, c->head, 0);
        return;
    }
    int slot = p->tx_free;
    p->tx_free = s->next_free;
    s->head = c->head;
    memset(&s->msg, 0, sizeof(s->msg));
    s->msg.msg_iov = s->tx.iov;
    s->msg.msg_iovlen = (size_t)s->tx.niov;
    if (!limiter_take(&n->tx_lim, s->tx.frame_len, &wait)) {
        p->tx_pending = slot; /* the next batch starts with it, once the limit allows */
        worker_wake_after(&p->w, wait);
        return;
    }
    tx_send(p, slot, prev);
}

struct tx_ctx {
    struct pair *p;
    struct io_uring_sqe *prev;
};

static bool take_tx(void *arg, struct vq_chain *c)
{
    struct tx_ctx *t = arg;

    tx_chain(t->p, c, &t->prev);
    /* Out of slots: the batch's completions bring us back; held by the limit: its timer. */
    return t->p->tx_free >= 0 && t->p->tx_pending < 0;
}

/*
 * Takes transmit chains while slots last, as one batch; a new batch starts
 * only when the last one is done (their order holds). Notifications stay
 * off when quiet (the worker polls). False when the ring is corrupt.
 */
static bool drain_tx(struct pair *p, bool quiet)
{
    struct vq_chain c = {.seg = p->seg, .max_seg = MAX_SEG + 2};
    struct tx_ctx t = {p, NULL};

    if (!p->tx->size || p->tx_inflight)
        return true; /* the batch's completions bring us back */
    if (io_uring_sq_space_left(&p->w.ring) < TX_SLOTS)
        io_uring_submit(&p->w.ring); /* the batch must not be cut by a submit */
    if (p->tx_pending >= 0) {
        uint64_t wait = 0;
        int slot = p->tx_pending;

        if (!limiter_take(&p->n->tx_lim, p->tx_slots[slot].tx.frame_len, &wait)) {
            worker_wake_after(&p->w, wait);
            return true;
        }
        p->tx_pending = -1;
        tx_send(p, slot, &t.prev);
    }
    return vq_drain(p->tx, &c, quiet, take_tx, &t) == 0;
}

static void tx_done(struct pair *p, int slot, int res)
{
    struct virtio_net *n = p->n;

    if (res < 0)
        stat_add(&n->stat_tx_drop);
    else
        stat_add(&n->stat_tx);
    if (backend_gone(res) && !is_detached(p))
        link_down(n);
    vq_add_used(p->tx, p->tx_slots[slot].head, 0);
    p->tx_slots[slot].next_free = p->tx_free;
    p->tx_free = slot;
    p->tx_inflight--;
}

/* ---- receive ---- */

static void held_push_front(struct pair *p, uint16_t head)
{
    p->held_first = (p->held_first + p->rx->size - 1) % p->rx->size;
    p->held[p->held_first] = head;
    p->held_n++;
}

/* Takes a receive chain into rxc[head], if a frame fits it; false if not. */
static bool rx_keep(struct pair *p, const struct vq_chain *c)
{
    /* Merged buffers must each hold a header; a lone buffer a header and a frame. */
    uint32_t min = p->n->mrg ? NET_HDR : NET_HDR + NET_ETH_HLEN;

    if (c->err != VQ_OK || c->out_len != 0 || c->in_len < min || c->nseg > RX_CHAIN_SEG)
        return false;
    struct rx_chain *rc = &p->rxc[c->head];
    rc->out = true;
    rc->nseg = c->nseg;
    rc->room = (uint32_t)c->in_len;
    memcpy(rc->seg, c->seg, c->nseg * sizeof(c->seg[0]));
    return true;
}

/*
 * The next chain to receive into: a held one, else the guest's next (taken
 * into rxc[head]). 1 with *head, 0 when there is none, -1 when the ring is
 * corrupt. Chains no frame fits in are refused on the spot (used, 0 bytes).
 */
static int rx_take(struct pair *p, uint16_t *head)
{
    struct virtio_net *n = p->n;
    struct vq_chain c = {.seg = p->seg, .max_seg = MAX_SEG + 2};

    if (p->held_n) {
        *head = p->held[p->held_first];
        p->held_first = (p->held_first + 1) % p->rx->size;
        p->held_n--;
        return 1;
    }
    for (;;) {
        int r = vq_pop(p->rx, &c);
        if (r <= 0)
            return r < 0 ? -1 : 0;
        if (p->rxc[c.head].out) {
            p->rx->broken = true; /* offered again while the device has it: lost track */
            return -1;
        }
        if (!rx_keep(p, &c)) {
            stat_add(&n->stat_rx_drop);
            vq_add_used(p->rx, c.head, 0);
            continue;
        }
        *head = c.head;
        return 1;
    }
}

/* Gives a receive's chains back to the held list (nothing was written that counts). */
static void rx_unwind(struct pair *p, struct rx_slot *s)
{
    while (s->nchains)
        held_push_front(p, s->chain[--s->nchains]);
}

/*
 * Posts receives into the buffers the guest has given, up to RX_DEPTH as one
 * hard-linked chain (frames land in the order they came), when none is in
 * flight: no buffer, no read (the backend keeps the frame). With merged
 * buffers a receive gathers chains until a largest frame fits, or until the
 * device holds all the guest has given. False when the ring is corrupt.
 */
static bool post_rx(struct pair *p, bool quiet)
{
    struct virtio_net *n = p->n;
    struct vq *vq = p->rx;
    struct io_uring_sqe *prev = NULL;

    uint64_t wait = 0;

    if (!vq->size || p->rx_posted || p->rx_eof || p->parked)
        return true;
    /* Under a receive limit, no more receives than it has room for frames of the MTU. */
    unsigned most = limiter_ready(&n->rx_lim, n->cfg.mtu + NET_ETH_HLEN, RX_DEPTH, &wait);
    p->rx_limited = most == 0;
    if (p->rx_limited) { /* frames wait in the backend until the limit allows */
        worker_wake_after(&p->w, wait);
        return true;
    }
    if (io_uring_sq_space_left(&p->w.ring) < RX_DEPTH)
        io_uring_submit(&p->w.ring);
    bool rechecked = false;
    uint16_t mark = 0;
    vq_set_notify(vq, false);
    while (p->rx_posted < (int)most) {
        struct rx_slot *s = &p->rx_slots[p->rx_posted];
        uint64_t room = 0;
        int niov = 0, r = 0;
        bool full = false; /* out of pieces: gathering more cannot help */
        uint16_t h;

        s->nchains = 0;
        while ((n->mrg ? room < n->rx_need : s->nchains == 0) && !full &&
               (r = rx_take(p, &h)) > 0) {
            struct rx_chain *rc = &p->rxc[h];
            uint64_t got = 0;

            if (niov + rc->nseg > RX_IOV_MAX) {
                held_push_front(p, h);
                full = true;
                break;
            }
            /* A socket's frame goes past the header room; a tap writes the header itself. */
            net_iov_from(rc->seg, rc->nseg, !n->tap && s->nchains == 0 ? NET_HDR : 0, s->iov, &niov,
                         RX_IOV_MAX, &got);
            s->chain[s->nchains++] = h;
            room += rc->room;
            full = s->nchains == RX_IOV_MAX || niov == RX_IOV_MAX;
        }
        if (r < 0)
            return false;
        /* Short of room, a receive waits for more chains, unless none can come or fit. */
        bool short_of_room =
            n->mrg && room < n->rx_need && !full && p->held_n + s->nchains < vq->size;
        if (s->nchains == 0 || short_of_room) {
            rx_unwind(p, s);
            /* Completions, polling or the guest's next buffer bring us back. */
            if (p->rx_posted || quiet || !vq_set_notify(vq, true))
                break;
            /* Told "more" again and nothing was taken since: notifications are on; done. */
            if (rechecked && vq->last_avail == mark)
                break;
            rechecked = true;
            mark = vq->last_avail;
            vq_set_notify(vq, false);
            continue;
        }
        memset(&s->msg, 0, sizeof(s->msg));
        s->msg.msg_iov = s->iov;
        s->msg.msg_iovlen = (size_t)niov;
        struct io_uring_sqe *sqe = worker_sqe(&p->w);
        if (!sqe) { /* the kernel refused to take more: completions bring us back */
            rx_unwind(p, s);
            break;
        }
        if (n->tap) /* the tap writes the header (its first 10 bytes) and the frame */
            io_uring_prep_readv(sqe, p->fd, s->iov, (unsigned)niov, 0);
        else
            io_uring_prep_recvmsg(sqe, p->fd, &s->msg, 0);
        io_uring_sqe_set_data64(sqe, TAG_RX | (uint64_t)p->rx_posted);
        if (prev)
            prev->flags |= IOSQE_IO_HARDLINK;
        prev = sqe;
        p->rx_posted++;
        p->rx_batch = p->rx_posted;
    }
    return true;
}

/* Writes len bytes at offset off of chain rc. */
static void rx_write(struct rx_chain *rc, uint32_t off, const void *src, uint32_t len)
{
    const uint8_t *b = src;

    for (unsigned i = 0; i < rc->nseg && len; i++) {
        uint32_t sl = rc->seg[i].len;
        if (off >= sl) {
            off -= sl;
            continue;
        }
        uint32_t k = sl - off < len ? sl - off : len;
        memcpy((uint8_t *)rc->seg[i].hva + off, b, k);
        b += k, len -= k, off = 0;
    }
}

/* Marks what a receive wrote into a chain (len bytes from its start). */
static void rx_mark(struct virtio_net *n, const struct rx_chain *rc, uint64_t len)
{
    for (unsigned i = 0; i < rc->nseg && len; i++) {
        uint64_t k = rc->seg[i].len < len ? rc->seg[i].len : len;
        mem_mark_dirty(rvm_vm_mem(n->vm), rc->seg[i].gpa, k);
        len -= k;
    }
}

static void rx_done(struct pair *p, struct rx_slot *s, int res)
{
    struct virtio_net *n = p->n;

    if (res == -ECANCELED || p->rx_eof || p->parked) {
        rx_unwind(p, s); /* stopping, or the backend went earlier in this chain */
        return;
    }
    if (res == -EBADFD && is_detached(p)) {
        p->parked = true; /* the guest turned this pair off; attaching it wakes us */
        rx_unwind(p, s);
        return;
    }
    if ((res == 0 && n->eof_on_zero) || backend_gone(res)) {
        p->rx_eof = true; /* the guest keeps its buffers */
        link_down(n);
        rx_unwind(p, s);
        return;
    }
    if (res < 0 || (s->msg.msg_flags & MSG_TRUNC) ||
        res < (n->tap ? (int)NET_HDR : 0) + NET_ETH_HLEN) {
        stat_add(&n->stat_rx_drop); /* larger than the buffers, or not a frame */
        rx_unwind(p, s);
        return;
    }
    uint64_t total = (n->tap ? 0 : NET_HDR) + (uint64_t)res;
    uint32_t room[RX_IOV_MAX], len[RX_IOV_MAX];
    for (unsigned i = 0; i < s->nchains; i++)
        room[i] = p->rxc[s->chain[i]].room;
    unsigned used = net_rx_spread(room, s->nchains, total, len);
    /* The header: a socket's is all ours; a tap fills its first 10 bytes, not num_buffers. */
    struct rx_chain *first = &p->rxc[s->chain[0]];
    if (n->tap) {
        uint16_t nb = (uint16_t)used;
        rx_write(first, offsetof(struct virtio_net_hdr_v1, num_buffers), &nb, sizeof(nb));
    } else {
        struct virtio_net_hdr_v1 h = {.gso_type = VIRTIO_NET_HDR_GSO_NONE,
                                      .num_buffers = (uint16_t)used};
        rx_write(first, 0, &h, NET_HDR);
    }
    for (unsigned i = 0; i < used; i++) {
        struct rx_chain *rc = &p->rxc[s->chain[i]];

        rx_mark(n, rc, len[i]);
        rc->out = false;
        vq_add_used(p->rx, s->chain[i], len[i]);
    }
    /* Chains this frame did not need stay with the device for the next. */
    while (s->nchains > used)
        held_push_front(p, s->chain[--s->nchains]);
    stat_add(&n->stat_rx);
    limiter_charge(&n->rx_lim, (uint64_t)res - (n->tap ? NET_HDR : 0));
}

/* ---- control queue (pair 0's worker) ---- */

static void set_active_pairs(struct virtio_net *n, unsigned active)
{
    n->active_pairs = active;
    for (unsigned i = 1; i < n->npairs; i++) {
        struct pair *p = &n->pairs[i];
        bool detach = i >= active;
        struct ifreq ifr;

        if (detach == is_detached(p))
            continue;
        memset(&ifr, 0, sizeof(ifr));
        ifr.ifr_flags = detach ? IFF_DETACH_QUEUE : IFF_ATTACH_QUEUE;
        if (detach)
            __atomic_store_n(&p->detached, true, __ATOMIC_RELEASE);
        if (ioctl(p->fd, TUNSETQUEUE, &ifr) < 0)
            rvm_warn(n->vm->hv, "virtio-net: queue pair %u: TUNSETQUEUE: %s", i, strerror(errno));
        if (!detach) {
            uint64_t one = 1;

            __atomic_store_n(&p->detached, false, __ATOMIC_RELEASE);
            /* Its worker parked on -EBADFD: a receive-queue kick wakes it. */
            if (p->rx && p->rx->size &&
                write(virtio_mmio_queue_eventfd(n->t, (uint16_t)(2 * i)), &one, sizeof(one)) < 0)
                rvm_warn(n->vm->hv, "virtio-net: cannot wake queue pair %u", i);
        }
    }
}

/* One command: MQ's VQ_PAIRS_SET is the only one taken; the rest get an error. */
static void ctrl_chain(struct virtio_net *n, struct vq *vq, struct vq_chain *c)
{
    struct net_ctrl cmd;
    uint8_t ack = VIRTIO_NET_ERR;

    if (!net_ctrl_parse(c, &cmd)) {
        vq_add_used(vq, c->head, 0);
        return;
    }
    if (cmd.class == VIRTIO_NET_CTRL_MQ && cmd.cmd == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET &&
        cmd.data_len >= 2 && has(n, VIRTIO_NET_F_MQ)) {
        unsigned pairs = (unsigned)cmd.data[0] | (unsigned)cmd.data[1] << 8;

        if (pairs >= 1 && pairs <= n->npairs) {
            set_active_pairs(n, pairs);
            ack = VIRTIO_NET_OK;
        }
    }
    *cmd.ack = ack;
    mem_mark_dirty(rvm_vm_mem(n->vm), cmd.ack_gpa, 1);
    vq_add_used(vq, c->head, 1);
}

static bool take_ctrl(void *arg, struct vq_chain *c)
{
    struct pair *p = arg;

    ctrl_chain(p->n, p->ctrl, c);
    return true;
}

/* Commands are answered at once, so notifications always go back on. */
static bool drain_ctrl(struct pair *p)
{
    struct vq_chain c = {.seg = p->seg, .max_seg = MAX_SEG + 2};

    return !p->ctrl || !p->ctrl->size || vq_drain(p->ctrl, &c, false, take_ctrl, p) == 0;
}

/* ---- the worker's callbacks (worker.h), one worker per pair ---- */

static struct vq *pair_queue(struct pair *p, unsigned k)
{
    return k == 0 ? p->rx : k == 1 ? p->tx : p->ctrl;
}

static uint16_t pair_queue_index(struct pair *p, unsigned k)
{
    return k < 2 ? (uint16_t)(2 * p->index + k) : (uint16_t)(2 * p->n->npairs);
}

static bool rx_waits(const struct pair *p)
{
    return p->rx->size && !p->rx_posted && !p->rx_eof && !p->parked && !p->rx_limited;
}

static bool tx_waits(const struct pair *p)
{
    return p->tx->size && !p->tx_inflight && p->tx_pending < 0;
}

static bool net_take(void *dev, uint32_t kicked, bool polled)
{
    struct pair *p = dev;
    bool quiet = p->n->poll_ns != 0, txd = p->txd, rxd = p->rxd;

    p->txd = p->rxd = false;
    /* A frame or receives the rate limits held back: their timer's round takes them. */
    if ((kicked & NOTIFY_TX || txd || polled || p->tx_pending >= 0) && !drain_tx(p, quiet))
        return false;
    if ((kicked & NOTIFY_RX || rxd || polled || p->rx_limited) && !post_rx(p, quiet))
        return false;
    return !(kicked & NOTIFY_CTRL) || drain_ctrl(p);
}

static void net_kicked(void *dev, uint32_t kicked)
{
    struct pair *p = dev;

    if ((kicked & NOTIFY_RX) && p->parked && !is_detached(p))
        p->parked = false; /* attached again */
}

static void net_complete(void *dev, uint64_t tag, int res)
{
    struct pair *p = dev;

    if (tag & TAG_RX) {
        rx_done(p, &p->rx_slots[tag & 0xffff], res);
        p->rx_posted--;
        p->rxd = true;
    } else if (tag & TAG_TX) {
        tx_done(p, (int)(tag & 0xffff), res);
        p->txd = true;
    } /* else a cancel's own completion */
}

static bool net_publish(void *dev)
{
    struct pair *p = dev;
    bool irq = false;

    for (unsigned k = 0; k < 3; k++)
        if (pair_queue(p, k) && pair_queue(p, k)->size)
            irq |= vq_publish_used(pair_queue(p, k));
    return irq;
}

static bool net_idle(void *dev)
{
    struct pair *p = dev;

    return !p->tx_inflight && !p->rx_posted && p->tx_pending < 0;
}

/* Polling: chains the device would take now. */
static bool net_has_work(void *dev)
{
    struct pair *p = dev;

    return (tx_waits(p) && vq_has_avail(p->tx)) || (rx_waits(p) && vq_has_avail(p->rx));
}

/* Notifications back on where the device waits for the guest (not while its own I/O is out). */
static bool net_notify_on(void *dev)
{
    struct pair *p = dev;

    return (tx_waits(p) && vq_set_notify(p->tx, true)) ||
           (rx_waits(p) && vq_set_notify(p->rx, true));
}

/*
 * While stopping, or pausing on a socket: cancel all. A receive waits for a
 * frame that may never come, a send for a peer that may never read: their
 * chains go back (unused, unsent). Pausing on a tap: cancel the receives
 * only (the device keeps their chains), sends to a tap finish at once. A
 * hard link goes on after a cancelled request, so this repeats until the
 * chains are through (each cancel's own completion brings the loop back).
 * Without a submission entry now, the next round asks again.
 */
static void net_cancel(void *dev, bool stopping)
{
    struct pair *p = dev;
    struct io_uring_sqe *sqe;

    /*
     * The frame the transmit limit holds: dropped when stopping (its chain
     * back unsent); for a snapshot sent now, after the batch before it.
     */
    if (p->tx_pending >= 0 && (stopping || !p->tx_inflight)) {
        struct io_uring_sqe *prev = NULL;
        int slot = p->tx_pending;

        p->tx_pending = -1;
        if (stopping) {
            vq_add_used(p->tx, p->tx_slots[slot].head, 0);
            p->tx_slots[slot].next_free = p->tx_free;
            p->tx_free = slot;
        } else {
            tx_send(p, slot, &prev);
        }
    }

    if (stopping || !p->n->tap) {
        if ((sqe = worker_sqe(&p->w))) {
            io_uring_prep_cancel_fd(sqe, p->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, 0);
        }
        return;
    }
    for (int i = p->rx_batch - p->rx_posted; i < p->rx_batch; i++) {
        if (!(sqe = worker_sqe(&p->w)))
            return;
        io_uring_prep_cancel64(sqe, TAG_RX | (uint64_t)i, 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
}

static const struct worker_ops net_worker_ops = {
    .take = net_take,
    .complete = net_complete,
    .publish = net_publish,
    .idle = net_idle,
    .has_work = net_has_work,
    .notify_on = net_notify_on,
    .kicked = net_kicked,
    .cancel = net_cancel,
};

static void pair_free(struct pair *p)
{
    free(p->rxc);
    free(p->held);
    p->rxc = NULL;
    p->held = NULL;
}

/*
 * A restored pair takes up the receive chains it held when the snapshot was
 * taken, walked again from the descriptor table: each a chain a frame fits,
 * none twice, and exactly the chains the queue says the device has out (it
 * had nothing in flight then). -EINVAL otherwise: the restore is refused.
 */
static int pair_take_held(struct pair *p, const struct net_held *h)
{
    struct vq_chain c = {.seg = p->seg, .max_seg = MAX_SEG + 2};
    uint16_t n = h->n[p->index], out = (uint16_t)(p->rx->last_avail - p->rx->used_idx);
    uint8_t seen[NET_QUEUE_MAX] = {0};

    if (n != out || n > p->rx->size)
        return -EINVAL;
    for (uint16_t i = 0; i < n; i++) {
        uint16_t head = h->head[p->index][i];

        if (head >= p->rx->size || seen[head] || vq_chain_at(p->rx, head, &c) < 0 ||
            !rx_keep(p, &c))
            return -EINVAL;
        seen[head] = 1;
        p->held[(p->held_first + p->held_n++) % p->rx->size] = head;
    }
    return 0;
}

static int pair_start(struct pair *p)
{
    int r;

    p->tx_free = 0;
    for (int i = 0; i < TX_SLOTS; i++)
        p->tx_slots[i].next_free = i + 1 < TX_SLOTS ? i + 1 : -1;
    p->tx_inflight = p->rx_posted = 0;
    p->tx_pending = -1;
    p->rx_limited = false;
    p->rx_eof = !__atomic_load_n(&p->n->link, __ATOMIC_ACQUIRE); /* a gone backend stays gone */
    p->parked = false;
    p->held_first = p->held_n = 0;
    if (p->rx->size && (!(p->rxc = calloc(p->rx->size, sizeof(*p->rxc))) ||
                        !(p->held = calloc(p->rx->size, sizeof(*p->held))))) {
        pair_free(p);
        return -ENOMEM;
    }
    if (p->n->restored && p->rx->size && (r = pair_take_held(p, p->n->restored)) < 0) {
        rvm_err(p->n->vm->hv,
                "virtio-net: the snapshot's held receive buffers of pair %u do "
                "not match its queue",
                p->index);
        pair_free(p);
        return r;
    }
    p->txd = p->rxd = false;
    p->w = (struct worker){.ops = &net_worker_ops,
                           .dev = p,
                           .vm = p->n->vm,
                           .t = p->n->t,
                           .name = "virtio-net",
                           .thread_name = "rvm-net",
                           .poll_ns = p->n->poll_ns,
                           .nnotify = 3};
    for (unsigned k = 0; k < 3; k++)
        p->w.notify_fd[k] = pair_queue(p, k) && pair_queue(p, k)->size
                                ? virtio_mmio_queue_eventfd(p->n->t, pair_queue_index(p, k))
                                : -1;
    /* Completions: every send and receive, a cancel for each receive, the loop's own reads. */
    if ((r = worker_init(&p->w, RING_SIZE, TX_SLOTS + 2 * RX_DEPTH + 8)) < 0) {
        pair_free(p);
        return r;
    }
    if ((r = worker_start(&p->w)) < 0) {
        worker_fini(&p->w);
        pair_free(p);
    }
    return r;
}

static int pair_stop(struct pair *p, uint64_t timeout_ns)
{
    int r;

    if (!p->w.running)
        return 0;
    if ((r = worker_stop_wait(&p->w, timeout_ns)) < 0)
        return r;
    /* The chains it held are forgotten: a reset's driver forgets its rings too. */
    pair_free(p);
    return 0;
}

/* The tap's offloads: what the guest takes (GUEST_*), as TUN_F_* flags. */
static int tap_offloads(struct virtio_net *n)
{
    unsigned long f = 0;

    if (has(n, VIRTIO_NET_F_GUEST_CSUM)) {
        f |= TUN_F_CSUM;
        if (has(n, VIRTIO_NET_F_GUEST_TSO4))
            f |= TUN_F_TSO4;
        if (has(n, VIRTIO_NET_F_GUEST_TSO6))
            f |= TUN_F_TSO6;
    }
    return ioctl(n->pairs[0].fd, TUNSETOFFLOAD, f) < 0 ? -errno : 0;
}

/* Every pair's worker stopped (each waits up to timeout_ns); -ETIMEDOUT if one has not. */
static int net_reset(void *dev, uint64_t timeout_ns)
{
    struct virtio_net *n = dev;
    int r = 0;

    for (unsigned i = 0; i < n->npairs; i++)
        if (pair_stop(&n->pairs[i], timeout_ns) < 0)
            r = -ETIMEDOUT;
    return r;
}

static int net_activate(void *dev, struct vq *queues, uint64_t features)
{
    struct virtio_net *n = dev;
    int r = 0;

    n->vqs = queues;
    n->features = features;
    n->mrg = has(n, VIRTIO_NET_F_MRG_RXBUF);
    bool gso_in = has(n, VIRTIO_NET_F_GUEST_TSO4) || has(n, VIRTIO_NET_F_GUEST_TSO6);
    n->rx_need = NET_HDR + NET_ETH_HLEN + NET_VLAN_HLEN + (gso_in ? NET_GSO_MAX : n->cfg.mtu);
    n->tx_limits = (struct net_tx_limits){
        .features = features,
        .mtu = n->cfg.mtu,
        .tx_max = has(n, VIRTIO_NET_F_HOST_TSO4) || has(n, VIRTIO_NET_F_HOST_TSO6)
                      ? NET_ETH_HLEN + NET_VLAN_HLEN + NET_GSO_MAX
                      : (uint32_t)n->cfg.mtu + NET_ETH_HLEN + NET_VLAN_HLEN,
        .tap = n->tap};
    if (n->tap && (r = tap_offloads(n)) < 0) {
        rvm_err(n->vm->hv, "virtio-net: TUNSETOFFLOAD: %s", strerror(-r));
        return r;
    }
    /* One pair is active until the driver asks for more (MQ). */
    if (n->npairs > 1)
        set_active_pairs(n, 1);
    for (unsigned i = 0; i < n->npairs; i++) {
        struct pair *p = &n->pairs[i];

        p->rx = &queues[2 * i];
        p->tx = &queues[2 * i + 1];
        p->ctrl = i == 0 && n->npairs > 1 ? &queues[2 * n->npairs] : NULL;
        if (!p->rx->size && !p->tx->size && !(p->ctrl && p->ctrl->size))
            continue; /* the driver did not set this pair up */
        if ((r = pair_start(p)) < 0) {
            net_reset(n, UINT64_MAX);
            break;
        }
    }
    return r;
}

/*
 * A snapshot's pause: every pair's worker parked, the receive chains it held
 * still its own. 0, or the first pair's error (those after are not asked).
 */
static int net_quiesce(void *dev)
{
    struct virtio_net *n = dev;
    int r = 0;

    for (unsigned i = 0; i < n->npairs && r == 0; i++)
        r = worker_pause_dev(&n->pairs[i].w, WORKER_PAUSE_WAIT_NS);
    return r;
}

static void net_resume(void *dev)
{
    struct virtio_net *n = dev;

    for (unsigned i = 0; i < n->npairs; i++)
        worker_resume_dev(&n->pairs[i].w);
}

static void net_destroy(void *dev)
{
    struct virtio_net *n = dev;

    virtio_mmio_destroy(n->t); /* resets the device: the workers are gone after */
    net_reset(n, UINT64_MAX);
    for (unsigned i = 0; i < n->npairs; i++)
        close(n->pairs[i].fd);
    pthread_mutex_destroy(&n->tx_lim.lock);
    pthread_mutex_destroy(&n->rx_lim.lock);
    free(n);
}

/* ---- snapshots ---- */

/* What a restore needs to make the device again; the queues are the transport's. */
struct net_state {
    uint8_t mac[6];
    uint16_t mtu;
    uint16_t npairs;
    uint16_t active_pairs; /* the driver's VQ_PAIRS_SET (MQ); 0 in older records: 1 */
    uint32_t poll_us;      /* as the device ran: 0 never */
    char tap[IFNAMSIZ];
    struct net_held held;
    struct mmio_state transport; /* the record is the whole device */
};

/*
 * Only a tap can be saved: it is reopened by name on restore (its name asked
 * of the fd, so a tap the embedder opened counts too). A socket's peer
 * cannot be found again.
 */
static int net_save(void *dev, struct recbuf *b, uint32_t index)
{
    struct virtio_net *n = dev;
    struct net_state s;
    struct ifreq ifr;

    if (!n->t)
        return -ENODEV; /* its attach failed: there is no device to save */
    memset(&s, 0, sizeof(s));
    memset(&ifr, 0, sizeof(ifr));
    if (!n->tap || ioctl(n->pairs[0].fd, TUNGETIFF, &ifr) < 0) {
        rvm_err(n->vm->hv, "snapshot: a virtio-net device on a socket cannot be saved (its peer "
                           "could not be found again on restore)");
        return -EOPNOTSUPP;
    }
    memcpy(s.mac, n->cfg.mac, sizeof(s.mac));
    s.mtu = n->cfg.mtu;
    s.npairs = (uint16_t)n->npairs;
    s.poll_us = (uint32_t)(n->poll_ns / 1000);
    s.active_pairs = (uint16_t)(n->npairs > 1 ? n->active_pairs : 1); /* workers parked */
    memcpy(s.tap, ifr.ifr_name, IFNAMSIZ - 1);
    /* Quiesced: each worker parked, its held chains oldest first. */
    for (unsigned i = 0; i < n->npairs; i++) {
        const struct pair *p = &n->pairs[i];

        if (p->w.running && p->held_n > p->rx->size)
            return -EIO; /* cannot be: the queue refuses more chains out than it holds */
        for (unsigned k = 0; p->w.running && p->held && k < p->held_n; k++)
            s.held.head[i][s.held.n[i]++] = p->held[(p->held_first + k) % p->rx->size];
    }
    virtio_mmio_save(n->t, &s.transport);
    rec_put(b, REC_DEV_VIRTIO_NET, index, &s, sizeof(s));
    return b->err;
}

/* Device index's record, whole. */
static int net_state_get(const uint8_t *st, size_t len, uint32_t index, struct net_state *s)
{
    if (rec_get(st, len, REC_DEV_VIRTIO_NET, index, s, sizeof(*s)) < 0)
        return -EBADMSG;
    if (s->tap[IFNAMSIZ - 1] || !s->tap[0] || s->npairs < 1 || s->npairs > RVM_NET_MAX_QUEUE_PAIRS)
        return -EBADMSG;
    for (unsigned i = 0; i < RVM_NET_MAX_QUEUE_PAIRS; i++)
        if (s->held.n[i] > (i < s->npairs ? NET_QUEUE_MAX : 0))
            return -EBADMSG;
    return 0;
}

/* The device was made again from the record: check it is the one saved. */
static int net_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    struct virtio_net *n = dev;
    struct net_state s;

    if (net_state_get(st, len, index, &s) < 0)
        return -EBADMSG;
    if (memcmp(s.mac, n->cfg.mac, 6) || s.mtu != n->cfg.mtu || s.npairs != n->npairs)
        return -EINVAL;
    for (unsigned i = 0; i < RVM_NET_MAX_QUEUE_PAIRS; i++)
        if (s.held.n[i] && !s.transport.active)
            return -EBADMSG; /* buffers held by a device that was not running */
    if (s.active_pairs > n->npairs)
        return -EBADMSG;
    /* For the workers that the transport's state starts (if the device was live). */
    n->restored = &s.held;
    int r = virtio_mmio_load(n->t, &s.transport);
    n->restored = NULL;
    /* Activation enabled one pair, as for a new driver; this one had asked for more. */
    if (r == 0 && s.transport.active && s.active_pairs > 1)
        set_active_pairs(n, s.active_pairs);
    return r;
}

/*
 * A device on a socket cannot be saved (net_save()): refused here, before
 * its pause would cancel the sends in flight and lose those frames for a
 * snapshot that then fails anyway.
 */
static int net_quiesce_dev(void *dev)
{
    struct virtio_net *n = dev;

    if (n->t && !n->tap) {
        rvm_err(n->vm->hv, "snapshot: a virtio-net device on a socket cannot be saved (its peer "
                           "could not be found again on restore)");
        return -EOPNOTSUPP;
    }
    return virtio_mmio_quiesce(n->t);
}

static void net_resume_dev(void *dev)
{
    virtio_mmio_resume(((struct virtio_net *)dev)->t);
}

/*
 * The device again, on the backend the caller hands for it (the ordinal-th
 * NIC: a tap by name, or an open tap or socket), or on the recorded tap
 * name only when the caller trusts the snapshot's names.
 */
static int net_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    const struct rvm_restore_params *p = r->params;
    const struct rvm_restore_net *nic = r->ordinal < p->nnets ? &p->nets[r->ordinal] : NULL;
    struct net_state s;
    struct rvm_net_config c = {.fd = -1};

    if (net_state_get(r->state, r->len, r->index, &s) < 0)
        return -EBADMSG;
    if (nic && (nic->tap || nic->fd >= 0)) {
        c.tap = nic->tap;
        c.fd = nic->tap ? -1 : nic->fd;
        c.fd_is_tap = nic->fd_is_tap;
        c.tx_limit = nic->tx_limit;
        c.rx_limit = nic->rx_limit;
    } else if (p->trust_snapshot_paths) {
        c.tap = s.tap; /* by name, in our network namespace */
    } else {
        rvm_err(vm->hv,
                "restore: no backend given for the snapshot's virtio-net %u (saved on tap %s)",
                r->ordinal, s.tap);
        return -ENODEV;
    }
    c.mtu = s.mtu;
    c.queues = s.npairs;
    c.poll_us = s.poll_us ? s.poll_us : RVM_NET_NO_POLL; /* as it ran: 0 was never */
    memcpy(c.mac, s.mac, 6);
    return rvm_vm_add_virtio_net(vm, &c, NULL, 0);
}

const struct vm_snap_ops virtio_net_snap = {.kind = REC_DEV_VIRTIO_NET,
                                            .recreate = net_recreate,
                                            .save = net_save,
                                            .load = net_load,
                                            .quiesce = net_quiesce_dev,
                                            .resume = net_resume_dev};

int virtio_net_open_tap(const char *name, unsigned queues, int *fds)
{
    struct ifreq ifr;
    int hs = NET_HDR;

    if (!name || strlen(name) >= IFNAMSIZ || queues < 1 || queues > RVM_NET_MAX_QUEUE_PAIRS)
        return -EINVAL;
    for (unsigned i = 0; i < queues; i++) {
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

        if (fd < 0)
            goto fail;
        memset(&ifr, 0, sizeof(ifr));
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (queues > 1 ? IFF_MULTI_QUEUE : 0);
        memcpy(ifr.ifr_name, name, strlen(name));
        if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 ||
            (i == 0 && ioctl(fd, TUNSETOFFLOAD, 0) < 0)) {
            int e = errno;
            close(fd);
            errno = e;
            goto fail;
        }
        fds[i] = fd;
        continue;
    fail:;
        int e = -errno;
        while (i)
            close(fds[--i]);
        return e;
    }
    return 0;
}

int virtio_net_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_net_opts *o, struct virtio_net **out)
{
    struct virtio_net *n;
    unsigned nfds = o && o->nfds ? o->nfds : 1;
    int r;

    if (!vm || !o || o->fds[0] < 0 || nfds > RVM_NET_MAX_QUEUE_PAIRS || (nfds > 1 && !o->tap) ||
        (o->mtu && (o->mtu < 68 || o->mtu > 65535 - NET_ETH_HLEN)) ||
        rate_limit_check(&o->tx_limit) < 0 || rate_limit_check(&o->rx_limit) < 0) {
        for (unsigned i = 0; o && i < nfds && i < RVM_NET_MAX_QUEUE_PAIRS; i++)
            if (o->fds[i] >= 0)
                close(o->fds[i]);
        return -EINVAL;
    }
    if (!(n = calloc(1, sizeof(*n)))) {
        for (unsigned i = 0; i < nfds; i++)
            close(o->fds[i]);
        return -ENOMEM;
    }
    n->vm = vm;
    n->tap = o->tap;
    n->npairs = nfds;
    n->poll_ns = (uint64_t)o->poll_us * 1000;
    limiter_init(&n->tx_lim, &o->tx_limit);
    limiter_init(&n->rx_lim, &o->rx_limit);
    for (unsigned i = 0; i < nfds; i++) {
        n->pairs[i].n = n;
        n->pairs[i].index = i;
        n->pairs[i].fd = o->fds[i];
        /* io_uring waits for readiness itself; a nonblocking fd would spin on -EAGAIN. */
        int fl = fcntl(o->fds[i], F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(o->fds[i], F_SETFL, fl & ~O_NONBLOCK);
    }
    int type = 0;
    socklen_t tl = sizeof(type);
    n->eof_on_zero =
        n->tap || getsockopt(o->fds[0], SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_DGRAM;
    memcpy(n->cfg.mac, o->mac, sizeof(n->cfg.mac));
    n->link = VIRTIO_NET_S_LINK_UP;
    n->cfg.max_virtqueue_pairs = (uint16_t)nfds;
    n->cfg.mtu = o->mtu ? o->mtu : 1500;
    uint64_t features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
                        (1ULL << VIRTIO_NET_F_MTU) | (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
                        (1ULL << VIRTIO_RING_F_EVENT_IDX);
    if (n->tap)
        features |= TAP_OFFLOADS; /* a socket carries bare frames: nothing to offload to */
    if (nfds > 1)
        features |= (1ULL << VIRTIO_NET_F_CTRL_VQ) | (1ULL << VIRTIO_NET_F_MQ);
    n->ops = (struct virtio_device_ops){
        .device_id = VIRTIO_ID_NET,
        .features = features,
        .num_queues = (uint16_t)(nfds > 1 ? 2 * nfds + 1 : 2),
        .queue_max = NET_QUEUE_MAX,
        .config_size = offsetof(struct virtio_net_config, speed),
        .config_read = net_config_read,
        .activate = net_activate,
        .reset = net_reset,
        .quiesce = net_quiesce,
        .resume = net_resume,
    };
    if ((r = vm_add_device_snap(vm, n, NULL, net_destroy, &virtio_net_snap)) < 0) {
        for (unsigned i = 0; i < nfds; i++)
            close(o->fds[i]);
        free(n);
        return r;
    }
    if ((r = virtio_mmio_attach(vm, base, gsi, &n->ops, n, &n->t)) < 0)
        return r; /* n (and the fds) go with the VM */
    if (out)
        *out = n;
    return 0;
}

int rvm_vm_add_virtio_net(struct rvm_vm *vm, const struct rvm_net_config *config,
                          char *cmdline_word, size_t len)
{
    static const uint8_t zero[6];
    struct virtio_net_opts o = {.fds = {-1}};
    unsigned queues;
    uint64_t base;
    uint32_t gsi;
    int r;

    if (!vm || !config || (!config->tap && config->fd < 0))
        return -EINVAL;
    queues = config->queues ? config->queues : 1;
    if (queues > RVM_NET_MAX_QUEUE_PAIRS || (queues > 1 && !config->tap)) {
        if (!config->tap)
            close(config->fd);
        return -EINVAL;
    }
    if ((r = virtio_mmio_next_slot(vm, &base, &gsi)) < 0)
        return r;
    if (config->tap) {
        if ((r = virtio_net_open_tap(config->tap, queues, o.fds)) < 0) {
            rvm_err(vm->hv, "virtio-net: tap %s: %s", config->tap, strerror(-r));
            return r;
        }
        o.nfds = queues;
        o.tap = true;
    } else {
        o.fds[0] = config->fd;
        o.nfds = 1;
        o.tap = config->fd_is_tap;
    }
    memcpy(o.mac, config->mac, sizeof(o.mac));
    if (!memcmp(o.mac, zero, sizeof(zero))) {
        static const uint8_t def[5] = {0x52, 0x54, 0x00, 0x52, 0x56};
        memcpy(o.mac, def, sizeof(def));
        o.mac[5] = (uint8_t)(gsi - RVM_VIRTIO_GSI_BASE);
    }
    o.mtu = config->mtu;
    o.tx_limit = config->tx_limit;
    o.rx_limit = config->rx_limit;
    o.poll_us = config->poll_us == 0                 ? RVM_NET_POLL_DEFAULT_US
                : config->poll_us == RVM_NET_NO_POLL ? 0
                                                     : config->poll_us;
    if ((r = virtio_net_attach(vm, base, gsi, &o, NULL)) < 0)
        return r; /* the fds were taken over, and are closed */
    if (cmdline_word && (r = virtio_mmio_cmdline(base, gsi, cmdline_word, len)) < 0)
        return r;
    return 0;
}
