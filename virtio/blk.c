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
#include "blk_exec.h"
#include "worker.h"

#define RING_ENTRIES  512
#define FILE_DIRECT   0 /* registered file indices */
#define FILE_BUFFERED 1

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
    struct blk_exec exec; /* the requests: their slots, the limit's and the policy's lists */
    bool completed;       /* slots came free this round: every queue may have waited for one */
    struct vq_seg seg[BLK_SEG_MAX + 2];
    uint32_t resumes_seen; /* resumes when the policy stopped: only a later one retries */

    uint64_t stat_batches, stat_irqs; /* __atomic */
};

void virtio_blk_stats(const struct virtio_blk *b, struct virtio_blk_stats *s)
{
    s->requests = __atomic_load_n(&b->exec.stat_requests, __ATOMIC_RELAXED);
    s->errors = __atomic_load_n(&b->exec.stat_errors, __ATOMIC_RELAXED);
    s->batches = __atomic_load_n(&b->stat_batches, __ATOMIC_RELAXED);
    s->interrupts = __atomic_load_n(&b->stat_irqs, __ATOMIC_RELAXED);
}

/* ---- the request engine's backend (blk_exec.h): the worker's io_uring ---- */

static int ring_start(void *ctx, uint64_t tag, const struct blk_io *io)
{
    struct virtio_blk *b = ctx;
    struct io_uring_sqe *sqe = worker_sqe(&b->w);
    int file = io->direct ? FILE_DIRECT : FILE_BUFFERED;

    if (!sqe)
        return -EAGAIN; /* the kernel refused to take more */
    switch (io->type) {
    case VIRTIO_BLK_T_IN:
        io_uring_prep_readv(sqe, file, io->iov, io->niov, (off_t)io->off);
        break;
    case VIRTIO_BLK_T_OUT:
        io_uring_prep_writev(sqe, file, io->iov, io->niov, (off_t)io->off);
        break;
    case VIRTIO_BLK_T_FLUSH:
        io_uring_prep_fsync(sqe, FILE_BUFFERED, 0);
        break;
    default: /* DISCARD, WRITE_ZEROES */
        io_uring_prep_fallocate(sqe, FILE_BUFFERED,
                                FALLOC_FL_KEEP_SIZE |
                                    (io->unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE),
                                (off_t)io->off, (off_t)io->len);
        break;
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static void ring_wake_after(void *ctx, uint64_t ns)
{
    worker_wake_after(&((struct virtio_blk *)ctx)->w, ns);
}

/* The error policy stopped the device: the VM pauses until the embedder resumes it. */
static void ring_stopped(void *ctx, int err)
{
    struct virtio_blk *b = ctx;

    b->resumes_seen = __atomic_load_n(&b->resumes, __ATOMIC_ACQUIRE); /* only a later one */
    __atomic_store_n(&b->stop_err, err, __ATOMIC_RELEASE);
    rvm_err(b->vm->hv, "%s: %s on %s: the VM is paused until it is resumed, which retries", b->name,
            strerror(-err), b->path[0] ? b->path : "its disk");
    vm_request_pause(b->vm, b->name, err);
}

static uint64_t ring_now_ns(void *ctx)
{
    (void)ctx;
    return vm_now_ns();
}

static const struct blk_exec_ops ring_ops = {
    .start = ring_start,
    .wake_after = ring_wake_after,
    .stopped = ring_stopped,
    .now_ns = ring_now_ns,
};

/*
 * After a stop: once the VM has resumed, the held requests go again and new
 * ones are taken. False while still stopped.
 */
static bool retry_held(struct virtio_blk *b)
{
    if (__atomic_load_n(&b->resumes, __ATOMIC_ACQUIRE) == b->resumes_seen)
        return false;
    __atomic_store_n(&b->stop_err, 0, __ATOMIC_RELEASE);
    return blk_exec_retry(&b->exec);
}

/* ---- taking chains ---- */
struct take_ctx {
    struct virtio_blk *b;
    uint16_t q;
};

static bool take_chain(void *arg, struct vq_chain *c)
{
    struct take_ctx *t = arg;

    blk_exec_chain(&t->b->exec, t->q, c);
    /* Out of slots: completions bring us back; held back by the limit: its timer does. */
    return blk_exec_room(&t->b->exec);
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

    if (!b->vqs[q].size || !blk_exec_room(&b->exec))
        return true;
    return vq_drain(&b->vqs[q], &c, quiet, take_chain, &t) == 0;
}

/* ---- the worker's callbacks (worker.h) ---- */

static bool blk_take(void *dev, uint32_t kicked, bool polled)
{
    struct virtio_blk *b = dev;
    bool any = b->completed || polled;

    if (b->exec.stopped) {
        if (!retry_held(b))
            return true; /* new requests wait in their rings until the VM resumes */
        any = true;      /* they came without a notification the worker kept */
    }
    if (b->exec.nwaiting) {
        if (!blk_exec_release(&b->exec, false))
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

    blk_exec_complete(&b->exec, tag, res);
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

    return blk_exec_idle(&b->exec);
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
        blk_exec_drop_waiting(&b->exec);
    else
        blk_exec_release(&b->exec, true);
}

/* Polling: a queue has a chain and there is a slot for it. */
static bool blk_has_work(void *dev)
{
    struct virtio_blk *b = dev;

    if (blk_exec_room(&b->exec))
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

static int blk_activate(void *dev, struct vq *queues, uint64_t features)
{
    struct virtio_blk *b = dev;
    int files[2], r;

    (void)features;
    int nslots = 0;
    for (uint16_t q = 0; q < b->nq; q++)
        nslots += queues[q].size;
    b->vqs = queues;
    /* Field by field: the counters stay, read from other threads. */
    struct blk_exec *e = &b->exec;
    e->ops = &ring_ops;
    e->ctx = b;
    e->mem = rvm_vm_mem(b->vm);
    e->vqs = queues;
    e->capacity = b->capacity;
    e->ro = b->ro;
    e->on_error = b->on_error;
    e->id = b->id;
    e->has_direct = b->has_direct;
    e->dio_mem_align = b->dio_mem_align;
    e->dio_off_align = b->dio_off_align;
    e->limit_cfg = b->limit_cfg;
    if ((r = blk_exec_init(&b->exec, nslots)) < 0)
        return r;
    __atomic_store_n(&b->stop_err, 0, __ATOMIC_RELEASE);
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
    if ((r = worker_init(&b->w, RING_ENTRIES, (unsigned)nslots + b->nq + 4)) < 0)
        goto err_slots;
    files[FILE_DIRECT] = b->has_direct ? b->fd_direct : b->fd_buffered;
    files[FILE_BUFFERED] = b->fd_buffered;
    if ((r = io_uring_register_files(&b->w.ring, files, 2)) < 0 || (r = worker_start(&b->w)) < 0)
        goto err_worker;
    return 0;

err_worker:
    worker_fini(&b->w);
err_slots:
    blk_exec_fini(&b->exec);
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
    blk_exec_fini(
        &b->exec); /* requests held on an error or by the limit: the driver forgets them too */
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
