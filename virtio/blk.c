/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include <stdio.h>
#include <ringvm/snapshot.h>
#include <ringvm/virtio.h>
#include <ringvm/vm.h>

#include "../core/counter.h"
#include "../core/log.h"
#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "../core/snaprec.h"
#include "blk.h"
#include "blk_req.h"
#include "mmio.h"
#include "ratelimit.h"
#include "worker.h"

#define RING_ENTRIES  512
#define FILE_DIRECT   0 /* registered file indices */
#define FILE_BUFFERED 1

struct blk_slot {
    struct blk_req req;
    uint16_t queue, head;
    uint64_t expect; /* bytes the operation must move */
    int next_free;
};

struct virtio_blk {
    struct rvm_vm *vm;
    struct virtio_mmio *t;
    struct virtio_device_ops ops;
    struct virtio_blk_config cfg;
    char id[VIRTIO_BLK_ID_BYTES];
    bool ro, has_direct;
    int fd_direct, fd_buffered;
    uint32_t dio_mem_align, dio_off_align; /* what O_DIRECT needs of buffers and offsets */
    uint64_t capacity;                     /* sectors */
    uint16_t nq;
    uint64_t poll_ns; /* device-side polling window; 0: none */
    char path[4096];  /* the backing file, absolute ("" when handed as an fd) */
    bool other_copy;  /* restored onto a disk the caller vouched for: identity not compared */
    uint8_t on_error; /* enum rvm_blk_on_error */
    char name[48];    /* "virtio-blk at 0x...", for the log and rvm_vm_device_stop() */
    struct rvm_rate_limit limit_cfg;
    uint32_t resumes; /* __atomic: VM resumes, counted by blk_vm_resumed() */
    int stop_err;     /* __atomic: the error the device stopped on; 0 when it has not */

    /* Set at activate, used by the worker alone until reset. */
    struct vq *vqs;
    struct worker w;
    bool completed; /* slots came free this round: every queue may have waited for one */
    struct blk_slot *slots;
    int nslots, free_head, inflight;
    struct vq_seg seg[BLK_SEG_MAX + 2];
    /* The rate limit's: its buckets, and the parsed requests that wait for them, in order. */
    struct rate_limit limit;
    int *waiting, wait_head, nwaiting;
    /* The error policy's: requests held after a backend error, and whether new ones wait. */
    int *held, nheld;
    bool stopped;
    uint32_t resumes_seen;

    uint64_t stat_requests, stat_errors, stat_batches, stat_irqs; /* __atomic */
};

void virtio_blk_stats(const struct virtio_blk *b, struct virtio_blk_stats *s)
{
    s->requests = __atomic_load_n(&b->stat_requests, __ATOMIC_RELAXED);
    s->errors = __atomic_load_n(&b->stat_errors, __ATOMIC_RELAXED);
    s->batches = __atomic_load_n(&b->stat_batches, __ATOMIC_RELAXED);
    s->interrupts = __atomic_load_n(&b->stat_irqs, __ATOMIC_RELAXED);
}

/* Gives a request back to the driver with its status; records what the device wrote. */
static void complete(struct virtio_blk *b, uint16_t q, uint16_t head, struct blk_req *r,
                     uint8_t status, uint32_t written)
{
    struct rvm_mem *mem = rvm_vm_mem(b->vm);

    if (r && r->status) {
        *r->status = status;
        mem_mark_dirty(mem, r->status_gpa, 1);
        written += 1;
    }
    if (status != VIRTIO_BLK_S_OK)
        counter_bump(&b->stat_errors);
    counter_bump(&b->stat_requests);
    vq_add_used(&b->vqs[q], head, written);
}

/* Whether the backend takes r with O_DIRECT: buffers, lengths and offset as it requires. */
static bool direct_ok(const struct virtio_blk *b, const struct blk_req *r)
{
    if (!b->has_direct || (r->sector * BLK_SECTOR + r->done) % b->dio_off_align)
        return false;
    for (unsigned i = 0; i < r->niov; i++)
        if ((uintptr_t)r->iov[i].iov_base % b->dio_mem_align ||
            r->iov[i].iov_len % b->dio_off_align)
            return false;
    return true;
}

static void submit(struct virtio_blk *b, int slot);

/* Whether the error policy stops the VM for err rather than failing the request. */
static bool stops_on(const struct virtio_blk *b, int err)
{
    if (err == -ECANCELED || err == -EINTR)
        return false; /* a reset cancelled it */
    return b->on_error == RVM_BLK_ERROR_STOP ||
           (b->on_error == RVM_BLK_ERROR_STOP_ENOSPC && (err == -ENOSPC || err == -EDQUOT));
}

/*
 * A request the backend failed, kept as it stands (what it moved stays
 * moved) for a retry after the VM resumes. The first one stops the device
 * taking new requests and pauses the VM.
 */
static void hold(struct virtio_blk *b, int slot, int err)
{
    b->held[b->nheld++] = slot;
    b->inflight--;
    if (b->stopped)
        return;
    b->stopped = true;
    b->resumes_seen = __atomic_load_n(&b->resumes, __ATOMIC_ACQUIRE); /* only a later one */
    __atomic_store_n(&b->stop_err, err, __ATOMIC_RELEASE);
    rvm_err(b->vm->hv, "%s: %s on %s: the VM is paused until it is resumed, which retries", b->name,
            strerror(-err), b->path[0] ? b->path : "its disk");
    vm_request_pause(b->vm, b->name, err);
}

/*
 * A resume after a stop: the held requests go again, from where they
 * stopped, and new ones are taken. False while still stopped.
 */
static bool retry_held(struct virtio_blk *b)
{
    uint32_t resumes = __atomic_load_n(&b->resumes, __ATOMIC_ACQUIRE);

    if (resumes == b->resumes_seen)
        return false;
    b->stopped = false;
    __atomic_store_n(&b->stop_err, 0, __ATOMIC_RELEASE);
    /* Taken from the end: one that fails at once is held again where it was taken from. */
    while (b->nheld && !b->stopped)
        submit(b, b->held[--b->nheld]);
    return !b->stopped;
}

/* A read's first `bytes` bytes landed in guest memory: recorded for dirty tracking. */
static void mark_landed(struct virtio_blk *b, const struct blk_req *r, uint64_t bytes)
{
    for (unsigned i = 0; i < r->niov && bytes; i++) {
        uint64_t k = r->iov[i].iov_len < bytes ? r->iov[i].iov_len : bytes;
        mem_mark_dirty(rvm_vm_mem(b->vm), r->gpa[i], k);
        bytes -= k;
    }
}

/*
 * An I/O completion. A transfer cut short goes on with what remains (a
 * backend may move less than asked); one that moves nothing more fails.
 * Either way a read's bytes that landed are marked dirty, exactly those.
 */
static void finish(struct virtio_blk *b, int slot, int res)
{
    struct blk_slot *s = &b->slots[slot];
    struct blk_req *r = &s->req;
    bool rw = r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT;

    if (res < 0 && stops_on(b, res)) {
        hold(b, slot, res);
        return;
    }
    if (rw && res > 0 && (uint64_t)res < s->expect) {
        if (r->type == VIRTIO_BLK_T_IN)
            mark_landed(b, r, (uint64_t)res);
        blk_req_advance(r, (uint64_t)res);
        b->inflight--;
        submit(b, slot); /* the rest, from where it stopped */
        return;
    }
    bool ok = res >= 0 && (uint64_t)res == s->expect;
    if (r->type == VIRTIO_BLK_T_IN && res > 0) {
        mark_landed(b, r, (uint64_t)res);
        r->done += (uint64_t)res;
    }
    /* What the device wrote into the buffers: a read's bytes, all or as far as it came. */
    uint32_t written = r->type == VIRTIO_BLK_T_IN ? (uint32_t)r->done : 0;
    complete(b, s->queue, s->head, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, written);
    s->next_free = b->free_head;
    b->free_head = slot;
    b->inflight--;
}

/* Starts one parsed request on the ring. */
static void submit(struct virtio_blk *b, int slot)
{
    struct blk_slot *s = &b->slots[slot];
    struct blk_req *r = &s->req;
    struct io_uring_sqe *sqe = worker_sqe(&b->w);
    int file = direct_ok(b, r) ? FILE_DIRECT : FILE_BUFFERED;
    off_t off = (off_t)(r->sector * BLK_SECTOR + r->done);

    b->inflight++;
    if (!sqe) { /* the kernel refused to take more: this request fails, the device goes on */
        finish(b, slot, -EAGAIN);
        return;
    }

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
        io_uring_prep_readv(sqe, file, r->iov, r->niov, off);
        s->expect = r->data_len - r->done;
        break;
    case VIRTIO_BLK_T_OUT:
        io_uring_prep_writev(sqe, file, r->iov, r->niov, off);
        s->expect = r->data_len - r->done;
        break;
    case VIRTIO_BLK_T_FLUSH:
        io_uring_prep_fsync(sqe, FILE_BUFFERED, 0);
        s->expect = 0;
        break;
    default: { /* DISCARD, WRITE_ZEROES */
        int mode =
            FALLOC_FL_KEEP_SIZE | (r->type == VIRTIO_BLK_T_DISCARD ||
                                           (r->range_flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
                                       ? FALLOC_FL_PUNCH_HOLE
                                       : FALLOC_FL_ZERO_RANGE);
        io_uring_prep_fallocate(sqe, FILE_BUFFERED, mode, off,
                                (off_t)(r->num_sectors * BLK_SECTOR));
        s->expect = 0;
        break;
    }
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, (uint64_t)slot);
}

/* What a request costs the byte bucket: the data it moves. */
static uint64_t limit_bytes(const struct blk_req *r)
{
    return r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT ? r->data_len : 0;
}

/* A parsed request goes now, or waits behind the others its rate limit holds back. */
static void admit(struct virtio_blk *b, int slot)
{
    const struct blk_req *r = &b->slots[slot].req;

    if (!b->nwaiting && rate_limit_take(&b->limit, limit_bytes(r), vm_now_ns())) {
        submit(b, slot);
        return;
    }
    b->waiting[(b->wait_head + b->nwaiting++) % b->nslots] = slot;
    if (b->nwaiting == 1)
        worker_wake_after(&b->w, rate_limit_wait_ns(&b->limit, limit_bytes(r), vm_now_ns()));
}

/*
 * The requests the rate limit held back, in order, while it lets them go
 * (all of them when unlimited: a snapshot's pause). True when none waits.
 */
static bool release_waiting(struct virtio_blk *b, bool unlimited)
{
    while (b->nwaiting) {
        int slot = b->waiting[b->wait_head];
        uint64_t bytes = limit_bytes(&b->slots[slot].req);

        if (!unlimited && !rate_limit_take(&b->limit, bytes, vm_now_ns())) {
            worker_wake_after(&b->w, rate_limit_wait_ns(&b->limit, bytes, vm_now_ns()));
            return false;
        }
        b->wait_head = (b->wait_head + 1) % b->nslots;
        b->nwaiting--;
        submit(b, slot);
    }
    return true;
}

/* Takes one chain off queue q: completed at once, or started on the ring. */
static void handle_chain(struct virtio_blk *b, uint16_t q, struct vq_chain *c)
{
    int slot = b->free_head;
    struct blk_req *r = &b->slots[slot].req;
    int rc = blk_parse(c, b->capacity, b->ro, r);

    if (rc == BLK_DROP) {
        complete(b, q, c->head, NULL, VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (rc != BLK_SUBMIT) {
        complete(b, q, c->head, r, (uint8_t)rc, 0);
        return;
    }
    if (r->type == VIRTIO_BLK_T_GET_ID) {
        uint32_t n = 0;
        for (unsigned i = 0; i < r->niov && n < sizeof(b->id); i++) {
            uint32_t k = (uint32_t)(r->iov[i].iov_len < sizeof(b->id) - n ? r->iov[i].iov_len
                                                                          : sizeof(b->id) - n);
            memcpy(r->iov[i].iov_base, b->id + n, k);
            mem_mark_dirty(rvm_vm_mem(b->vm), r->gpa[i], k);
            n += k;
        }
        complete(b, q, c->head, r, VIRTIO_BLK_S_OK, n);
        return;
    }
    b->free_head = b->slots[slot].next_free;
    b->slots[slot].queue = q;
    b->slots[slot].head = c->head;
    admit(b, slot);
}

struct take_ctx {
    struct virtio_blk *b;
    uint16_t q;
};

static bool take_chain(void *arg, struct vq_chain *c)
{
    struct take_ctx *t = arg;

    handle_chain(t->b, t->q, c);
    /* Out of slots: completions bring us back; held back by the limit: its timer does. */
    return t->b->free_head >= 0 && !t->b->nwaiting;
}

/*
 * Takes every available chain of queue q while slots last (vq_drain();
 * notifications stay off when quiet: the worker is polling the ring). False
 * if the queue broke (the worker then puts the device in NEEDS_RESET).
 */
static bool drain_queue(struct virtio_blk *b, uint16_t q, bool quiet)
{
    struct vq_chain c = {.seg = b->seg, .max_seg = BLK_SEG_MAX + 2};
    struct take_ctx t = {b, q};

    if (!b->vqs[q].size || b->free_head < 0)
        return true;
    return vq_drain(&b->vqs[q], &c, quiet, take_chain, &t) == 0;
}

/* ---- the worker's callbacks (worker.h) ---- */

static bool blk_take(void *dev, uint32_t kicked, bool polled)
{
    struct virtio_blk *b = dev;
    bool any = b->completed || polled;

    if (b->stopped) {
        if (!retry_held(b))
            return true; /* new requests wait in their rings until the VM resumes */
        any = true;      /* they came without a notification the worker kept */
    }
    if (b->nwaiting) {
        if (!release_waiting(b, false))
            return true; /* the rest waits in the rings: taking it would jump the queue */
        any = true;
    }
    b->completed = false;
    for (uint16_t q = 0; q < b->nq; q++)
        if (((kicked >> q) & 1 || any) && !drain_queue(b, q, b->poll_ns != 0))
            return false;
    return true;
}

static void blk_complete(void *dev, uint64_t tag, int res)
{
    struct virtio_blk *b = dev;

    finish(b, (int)tag, res);
    b->completed = true;
}

static bool blk_publish(void *dev)
{
    struct virtio_blk *b = dev;
    bool irq = false;

    for (uint16_t q = 0; q < b->nq; q++)
        if (b->vqs[q].size)
            irq |= vq_publish_used(&b->vqs[q]);
    counter_bump(&b->stat_batches);
    if (irq)
        counter_bump(&b->stat_irqs);
    return irq;
}

static bool blk_idle(void *dev)
{
    struct virtio_blk *b = dev;

    return b->inflight == 0 && b->nwaiting == 0;
}

/*
 * Stopping: what the rate limit holds back is dropped (a reset's driver
 * forgets it); pausing for a snapshot: it goes now, unlimited, so that the
 * snapshot finds every request the device took completed.
 */
static void blk_cancel(void *dev, bool stopping)
{
    struct virtio_blk *b = dev;

    if (stopping)
        b->nwaiting = 0;
    else
        release_waiting(b, true);
}

/* Polling: a queue has a chain and there is a slot for it. */
static bool blk_has_work(void *dev)
{
    struct virtio_blk *b = dev;

    if (b->free_head >= 0 && !b->stopped && !b->nwaiting)
        for (uint16_t q = 0; q < b->nq; q++)
            if (b->vqs[q].size && vq_has_avail(&b->vqs[q]))
                return true;
    return false;
}

static bool blk_notify_on(void *dev)
{
    struct virtio_blk *b = dev;
    bool raced = false;

    for (uint16_t q = 0; q < b->nq; q++)
        if (b->vqs[q].size && vq_set_notify(&b->vqs[q], true))
            raced = true;
    return raced;
}

static const struct worker_ops blk_worker_ops = {
    .take = blk_take,
    .complete = blk_complete,
    .publish = blk_publish,
    .idle = blk_idle,
    .has_work = blk_has_work,
    .notify_on = blk_notify_on,
    .cancel = blk_cancel,
};

/* The per-request arrays activate made: the slots, and the held and waiting lists. */
static void slots_free(struct virtio_blk *b)
{
    free(b->slots);
    free(b->held);
    free(b->waiting);
    b->slots = NULL;
    b->held = NULL;
    b->waiting = NULL;
}

static int blk_activate(void *dev, struct vq *queues, uint64_t features)
{
    struct virtio_blk *b = dev;
    int files[2], r;

    (void)features;
    b->vqs = queues;
    b->nslots = 0;
    for (uint16_t q = 0; q < b->nq; q++)
        b->nslots += queues[q].size;
    b->slots = calloc((size_t)b->nslots + 1, sizeof(*b->slots));
    b->held = calloc((size_t)b->nslots + 1, sizeof(*b->held));
    b->waiting = calloc((size_t)b->nslots + 1, sizeof(*b->waiting));
    if (!b->slots || !b->held || !b->waiting) {
        slots_free(b);
        return -ENOMEM;
    }
    b->wait_head = b->nwaiting = 0;
    rate_limit_init(&b->limit, &b->limit_cfg, vm_now_ns());
    b->nheld = 0;
    b->stopped = false;
    __atomic_store_n(&b->stop_err, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < b->nslots; i++)
        b->slots[i].next_free = i + 1 < b->nslots ? i + 1 : -1;
    b->free_head = b->nslots ? 0 : -1;
    b->inflight = 0;
    b->completed = false;
    b->w = (struct worker){.ops = &blk_worker_ops,
                           .dev = b,
                           .vm = b->vm,
                           .t = b->t,
                           .name = "virtio-blk",
                           .thread_name = "rvm-blk",
                           .poll_ns = b->poll_ns,
                           .nnotify = b->nq};
    for (uint16_t q = 0; q < b->nq; q++)
        b->w.notify_fd[q] = queues[q].size ? virtio_mmio_queue_eventfd(b->t, q) : -1;
    /* Completions: every slot's, and the loop's own (a notification per queue, stop, pause,
     * a timer and its update).
     */
    if ((r = worker_init(&b->w, RING_ENTRIES, (unsigned)b->nslots + b->nq + 4)) < 0)
        goto err_slots;
    files[FILE_DIRECT] = b->has_direct ? b->fd_direct : b->fd_buffered;
    files[FILE_BUFFERED] = b->fd_buffered;
    if ((r = io_uring_register_files(&b->w.ring, files, 2)) < 0 || (r = worker_start(&b->w)) < 0)
        goto err_worker;
    return 0;

err_worker:
    worker_fini(&b->w);
err_slots:
    slots_free(b);
    rvm_err(b->vm->hv, "virtio-blk: cannot start: %s", strerror(-r));
    return r;
}

/*
 * Stops the worker once its in-flight I/O is done or cancelled (it writes
 * into guest RAM): the slots are its until then.
 */
static int blk_reset(void *dev, uint64_t timeout_ns)
{
    struct virtio_blk *b = dev;
    int r;

    if (!b->w.running)
        return 0;
    if ((r = worker_stop_wait(&b->w, timeout_ns)) < 0)
        return r;
    slots_free(b); /* requests held on an error or by the limit: the driver forgets them too */
    __atomic_store_n(&b->stop_err, 0, __ATOMIC_RELEASE);
    return 0;
}

/*
 * A snapshot's pause: in-flight I/O done and published, the worker waiting;
 * nothing forgotten. Bounded: a backend that does not answer fails the
 * snapshot instead of holding the caller.
 */
static int blk_quiesce(void *dev)
{
    struct virtio_blk *b = dev;

    if (__atomic_load_n(&b->stop_err, __ATOMIC_ACQUIRE)) {
        /* Held requests are in no ring: a snapshot would lose them. */
        rvm_err(b->vm->hv, "snapshot: %s holds requests its backend failed; resume it first",
                b->name);
        return -EBUSY;
    }
    return worker_pause_dev(&b->w, WORKER_PAUSE_WAIT_NS);
}

/* The VM resumed: a device stopped on an error retries (its worker is woken for it). */
static void blk_vm_resumed(void *dev)
{
    struct virtio_blk *b = dev;

    __atomic_fetch_add(&b->resumes, 1, __ATOMIC_ACQ_REL);
    if (__atomic_load_n(&b->stop_err, __ATOMIC_ACQUIRE))
        worker_wake(&b->w);
}

static void blk_resume(void *dev)
{
    worker_resume_dev(&((struct virtio_blk *)dev)->w);
}

static void blk_config_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    memcpy(buf, (const uint8_t *)&((struct virtio_blk *)dev)->cfg + off, len);
}

/*
 * What a restore needs to re-create the device, and the disk's identity
 * when it was saved: its size, and its inode and modification time (a
 * restore onto another disk, or onto this one after someone wrote it, would
 * hand the guest a file system that is not the one its caches describe).
 * Then the transport's state: the record is the whole device.
 */
struct blk_state {
    uint64_t capacity;
    uint32_t poll_us;
    uint16_t queues, queue_size;
    uint8_t ro, on_error, pad[6]; /* on_error: 0 (report) in records from before it */
    char path[4096];
    uint64_t dev, ino;
    int64_t mtime_sec, mtime_nsec;
    struct mmio_state transport;
};

/* Quiesced first: every write the guest made has landed, the queues hold still. */
static int blk_save(void *dev, struct recbuf *rb, uint32_t index)
{
    struct virtio_blk *b = dev;
    struct blk_state *s;
    struct stat st;

    if (!b->t)
        return -ENODEV; /* its attach failed: there is no device to save */
    if (!(s = calloc(1, sizeof(*s))))
        return -ENOMEM;
    s->capacity = b->capacity;
    s->poll_us = (uint32_t)(b->poll_ns / 1000);
    s->queues = b->nq;
    s->queue_size = b->ops.queue_max;
    s->ro = b->ro;
    s->on_error = b->on_error;
    memcpy(s->path, b->path, sizeof(s->path));
    if (fstat(b->fd_buffered, &st) < 0) {
        free(s);
        return -errno;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->mtime_sec = st.st_mtim.tv_sec;
    s->mtime_nsec = st.st_mtim.tv_nsec;
    virtio_mmio_save(b->t, &s->transport);
    rec_put(rb, REC_DEV_VIRTIO_BLK, index, s, sizeof(*s));
    free(s);
    return rb->err;
}

/* Device index's record, whole, its path terminated. */
static int blk_state_get(const uint8_t *st, size_t len, uint32_t index, struct blk_state *s)
{
    if (rec_get(st, len, REC_DEV_VIRTIO_BLK, index, s, sizeof(*s)) < 0)
        return -EBADMSG;
    if (s->path[sizeof(s->path) - 1] || s->ro > 1 || s->on_error > RVM_BLK_ERROR_STOP ||
        s->queues == 0 || s->queues > VIRTIO_MMIO_MAX_QUEUES)
        return -EBADMSG;
    return 0;
}

/* Whether the disk behind fd is the one the record describes (beyond its size). */
static bool same_disk(int fd, const struct blk_state *s)
{
    struct stat st;

    return fstat(fd, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino &&
           st.st_mtim.tv_sec == s->mtime_sec && st.st_mtim.tv_nsec == s->mtime_nsec;
}

/*
 * The device was re-created from the record: check the disk is still the
 * one saved, then the transport's state (a live device starts again).
 */
static int blk_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    struct virtio_blk *b = dev;
    struct blk_state *s = malloc(sizeof(*s));
    int r = 0;

    if (!s)
        return -ENOMEM;
    if (blk_state_get(st, len, index, s) < 0) {
        r = -EBADMSG;
    } else if (s->capacity != b->capacity) {
        rvm_err(b->vm->hv, "virtio-blk: %s has %llu sectors, %llu when saved", b->path,
                (unsigned long long)b->capacity, (unsigned long long)s->capacity);
        r = -ESTALE;
    } else if (!b->other_copy && !same_disk(b->fd_buffered, s)) {
        rvm_err(b->vm->hv,
                "virtio-blk: disk %u (%s) is not the one saved: another file, or written since",
                index, b->path[0] ? b->path : "an fd");
        r = -ESTALE;
    } else {
        r = virtio_mmio_load(b->t, &s->transport);
    }
    free(s);
    return r;
}

static int blk_quiesce_dev(void *dev)
{
    return virtio_mmio_quiesce(((struct virtio_blk *)dev)->t);
}

static void blk_resume_dev(void *dev)
{
    virtio_mmio_resume(((struct virtio_blk *)dev)->t);
}

/*
 * The device again, on the disk the caller hands for it (the ordinal-th
 * disk), or on the recorded path only when the caller trusts the snapshot's
 * paths: a crafted snapshot never makes ringvm open a host file.
 */
static int blk_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    const struct rvm_restore_params *p = r->params;
    const struct rvm_restore_disk *disk = r->ordinal < p->ndisks ? &p->disks[r->ordinal] : NULL;
    struct virtio_blk_config_opts o = {.fd = -1};
    struct virtio_blk *b;
    struct blk_state *s = malloc(sizeof(*s));
    uint64_t base;
    uint32_t gsi;
    int e;

    if (!s)
        return -ENOMEM;
    if ((e = blk_state_get(r->state, r->len, r->index, s)) < 0)
        goto out;
    if (disk && (disk->path || disk->fd >= 0)) {
        o.path = disk->path;
        o.fd = disk->path ? -1 : disk->fd;
    } else if (p->trust_snapshot_paths && s->path[0]) {
        o.path = s->path;
    } else {
        rvm_err(vm->hv, "restore: no disk given for the snapshot's virtio-blk %u (saved on %s)",
                r->ordinal, s->path[0] ? s->path : "an fd");
        e = -ENODEV;
        goto out;
    }
    o.ro = s->ro;
    o.on_error = s->on_error;
    if (disk)
        o.limit = disk->limit; /* the restoring host's, not the snapshot's */
    o.queues = s->queues;
    o.queue_size = s->queue_size;
    o.poll_us = s->poll_us; /* as the device ran: 0 is never */
    if ((e = virtio_mmio_next_slot(vm, &base, &gsi)) == 0 &&
        (e = virtio_blk_attach(vm, base, gsi, &o, &b)) == 0)
        b->other_copy = disk && disk->other_copy;
out:
    free(s);
    return e;
}

const struct vm_snap_ops virtio_blk_snap = {.kind = REC_DEV_VIRTIO_BLK,
                                            .recreate = blk_recreate,
                                            .save = blk_save,
                                            .load = blk_load,
                                            .quiesce = blk_quiesce_dev,
                                            .resume = blk_resume_dev};

static void blk_destroy(void *dev)
{
    struct virtio_blk *b = dev;

    virtio_mmio_destroy(b->t); /* resets the device: the worker is gone after */
    blk_reset(b, UINT64_MAX);  /* (attached without a transport) */
    if (b->has_direct)
        close(b->fd_direct);
    close(b->fd_buffered);
    free(b);
}

/* The backing file: opened by path, or the caller's fd (which must allow what the device does). */
static int blk_open(struct rvm_vm *vm, const struct virtio_blk_config_opts *o, int flags,
                    struct virtio_blk *b, struct stat *st)
{
    int r;

    if (!o->path) {
        int mode = fcntl(o->fd, F_GETFL);
        b->fd_buffered = o->fd;
        if (mode < 0 || fstat(o->fd, st) < 0) {
            r = -errno;
            rvm_err(vm->hv, "virtio-blk: disk fd %d: %s", o->fd, strerror(-r));
            goto fail;
        }
        if ((!o->ro && (mode & O_ACCMODE) != O_RDWR) ||
            (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode))) {
            rvm_err(vm->hv, "virtio-blk: disk fd %d: not a %s image", o->fd,
                    o->ro ? "readable" : "writable");
            r = -EBADF;
            goto fail;
        }
        return 0;
    }
    if (!realpath(o->path, b->path) && strlen(o->path) < sizeof(b->path))
        memcpy(b->path, o->path, strlen(o->path) + 1);
    b->fd_buffered = open(o->path, flags);
    if (b->fd_buffered >= 0 && fstat(b->fd_buffered, st) == 0)
        return 0;
    r = -errno;
    rvm_err(vm->hv, "virtio-blk: %s: %s", o->path, strerror(-r));
fail:
    if (b->fd_buffered >= 0)
        close(b->fd_buffered);
    return r;
}

/*
 * What O_DIRECT asks of requests on this backend (statx STATX_DIOALIGN,
 * Linux 6.1): the memory and the offset/length alignment; a 4 KiB-sector
 * disk wants 4096 of the latter. Requests that do not meet it go through
 * the page cache instead. Kernels that cannot say get the 512 bytes that
 * held before; a backend that says it has no direct I/O gets none.
 */
static void dio_alignment(struct virtio_blk *b)
{
    struct statx sx;

    b->dio_mem_align = b->dio_off_align = BLK_SECTOR;
    if (statx(b->fd_direct, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) < 0 ||
        !(sx.stx_mask & STATX_DIOALIGN))
        return;
    if (!sx.stx_dio_offset_align || !sx.stx_dio_mem_align ||
        sx.stx_dio_offset_align & (sx.stx_dio_offset_align - 1) ||
        sx.stx_dio_mem_align & (sx.stx_dio_mem_align - 1) || sx.stx_dio_offset_align > 65536) {
        close(b->fd_direct);
        b->has_direct = false;
        return;
    }
    b->dio_mem_align = sx.stx_dio_mem_align;
    b->dio_off_align = sx.stx_dio_offset_align;
}

int virtio_blk_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_blk_config_opts *o, struct virtio_blk **out)
{
    struct virtio_blk *b;
    struct stat st;
    int flags, r;

    if (!vm || !o || (!o->path && o->fd < 0) || o->queues > VIRTIO_MMIO_MAX_QUEUES ||
        rate_limit_check(&o->limit) < 0) {
        if (o && !o->path && o->fd >= 0)
            close(o->fd);
        return -EINVAL;
    }
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->vm = vm;
    b->ro = o->ro;
    b->nq = o->queues ? o->queues : 1;
    b->poll_ns = (uint64_t)o->poll_us * 1000;
    b->on_error = o->on_error <= RVM_BLK_ERROR_STOP ? o->on_error : RVM_BLK_ERROR_REPORT;
    b->limit_cfg = o->limit;
    snprintf(b->name, sizeof(b->name), "virtio-blk at 0x%llx", (unsigned long long)base);
    flags = (o->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if ((r = blk_open(vm, o, flags, b, &st)) < 0)
        goto err_free;
    /* A block device's size is not in its inode. */
    uint64_t bytes = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode) && ioctl(b->fd_buffered, BLKGETSIZE64, &bytes) < 0) {
        r = -errno;
        rvm_err(vm->hv, "virtio-blk: %s: BLKGETSIZE64: %s", b->path, strerror(-r));
        goto err_close;
    }
    if (bytes % BLK_SECTOR) {
        rvm_err(vm->hv, "virtio-blk: %s: size is not a multiple of 512", b->path);
        r = -EINVAL;
        goto err_close;
    }
    if (o->path) {
        b->fd_direct = open(o->path, flags | O_DIRECT);
    } else { /* the same open file again, for O_DIRECT */
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", b->fd_buffered);
        b->fd_direct = open(proc, flags | O_DIRECT);
    }
    b->has_direct = b->fd_direct >= 0; /* tmpfs and some others refuse O_DIRECT */
    if (b->has_direct)
        dio_alignment(b);
    b->capacity = bytes / BLK_SECTOR;
    snprintf(b->id, sizeof(b->id), "ringvm%llx", (unsigned long long)st.st_ino);

    b->cfg.capacity = b->capacity;
    b->cfg.size_max = BLK_SIZE_MAX;
    b->cfg.seg_max = BLK_SEG_MAX;
    /* The backend's own block (a 4 KiB-sector disk): the guest then sends what goes direct. */
    b->cfg.blk_size =
        b->has_direct && b->dio_off_align > BLK_SECTOR ? b->dio_off_align : BLK_SECTOR;
    b->cfg.num_queues = b->nq;
    b->cfg.max_discard_sectors = UINT32_MAX;
    b->cfg.max_discard_seg = 1;
    b->cfg.discard_sector_alignment = 1;
    b->cfg.max_write_zeroes_sectors = UINT32_MAX;
    b->cfg.max_write_zeroes_seg = 1;
    b->cfg.write_zeroes_may_unmap = 1;

    b->ops = (struct virtio_device_ops){
        .device_id = VIRTIO_ID_BLOCK,
        .features =
            (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_SIZE_MAX) |
            (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
            (o->ro ? 1ULL << VIRTIO_BLK_F_RO : 0) | (b->nq > 1 ? 1ULL << VIRTIO_BLK_F_MQ : 0) |
            (o->ro ? 0 : (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)) |
            (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
        .num_queues = b->nq,
        .queue_max = o->queue_size ? o->queue_size : 256,
        .config_size = sizeof(b->cfg),
        .config_read = blk_config_read,
        .activate = blk_activate,
        .reset = blk_reset,
        .quiesce = blk_quiesce,
        .resume = blk_resume,
    };
    if ((r = vm_add_device_snap(vm, b, NULL, blk_destroy, &virtio_blk_snap)) < 0)
        goto err_close;
    vm_device_on_resume(vm, b, blk_vm_resumed);
    if ((r = virtio_mmio_attach(vm, base, gsi, &b->ops, b, &b->t)) < 0)
        return r; /* b is freed with the VM */
    if (out)
        *out = b;
    return 0;

err_close:
    if (b->has_direct)
        close(b->fd_direct);
    close(b->fd_buffered);
err_free:
    free(b);
    return r;
}

int rvm_vm_add_virtio_blk(struct rvm_vm *vm, const struct rvm_blk_config *config,
                          char *cmdline_word, size_t len)
{
    struct virtio_blk_config_opts o;
    uint64_t base;
    uint32_t gsi;
    int r;

    if (!vm || !config)
        return -EINVAL;
    if ((r = virtio_mmio_next_slot(vm, &base, &gsi)) < 0)
        return r;
    o = (struct virtio_blk_config_opts){.path = config->path,
                                        .fd = -1,
                                        .ro = config->ro,
                                        .queues = config->queues,
                                        .queue_size = config->queue_size,
                                        .on_error = (uint8_t)config->on_error,
                                        .limit = config->limit,
                                        .poll_us = config->poll_us == 0 ? RVM_BLK_POLL_DEFAULT_US
                                                   : config->poll_us == RVM_BLK_NO_POLL
                                                       ? 0
                                                       : config->poll_us};
    if ((r = virtio_blk_attach(vm, base, gsi, &o, NULL)) < 0)
        return r;
    if (cmdline_word && (r = virtio_mmio_cmdline(base, gsi, cmdline_word, len)) < 0)
        return r;
    return 0;
}
