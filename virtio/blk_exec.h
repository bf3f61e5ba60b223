/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request execution, over a queue and a backend. The device's
 * worker hands it the chains it pops; it parses each (blk_req.c), answers
 * what needs no I/O, holds what the rate limit or the error policy keeps
 * back, starts the rest through its backend and, as the backend completes
 * them, goes on with short transfers, marks dirty exactly the bytes that
 * landed and gives each request back to the driver once.
 *
 * The backend is an ops table: the worker's io_uring in the device (blk.c),
 * a fake one in the fuzz target. Time comes from the backend too, so the
 * rate limit runs on whatever clock the caller has. One thread uses a
 * struct blk_exec at a time (the worker's), except the two counters.
 */
#ifndef RINGVM_VIRTIO_BLK_EXEC_H
#define RINGVM_VIRTIO_BLK_EXEC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_blk.h>

#include <ringvm/virtio.h>

#include "blk_req.h"
#include "ratelimit.h"
#include "virtqueue.h"

struct rvm_mem;

/* One operation on the disk. */
struct blk_io {
    uint32_t type; /* VIRTIO_BLK_T_IN, _OUT, _FLUSH, _DISCARD or _WRITE_ZEROES */
    bool direct;   /* buffers and offset suit O_DIRECT */
    bool unmap;    /* DISCARD, or WRITE_ZEROES with UNMAP: punch a hole */
    const struct iovec *iov;
    unsigned niov;
    uint64_t off; /* bytes into the disk */
    uint64_t len; /* bytes: what a transfer moves, the range a discard or zeroing covers */
};

struct blk_exec_ops {
    /*
     * Starts io; its completion comes back as blk_exec_complete(tag, res),
     * res the bytes moved (0 for a flush, discard or zeroing) or -errno. The
     * iovecs stay valid until then. 0, or -errno: it could not start (the
     * request then completes with that error at once).
     */
    int (*start)(void *ctx, uint64_t tag, const struct blk_io *io);
    /* The rate limit holds requests back: a round (blk_exec_release()) ns from now. */
    void (*wake_after)(void *ctx, uint64_t ns);
    /* The error policy stopped the device on err: the VM is to pause until resumed. */
    void (*stopped)(void *ctx, int err);
    uint64_t (*now_ns)(void *ctx);
};

struct blk_slot {
    struct blk_req req;
    uint16_t queue, head;
    uint64_t expect; /* bytes the operation must move */
    int next_free;
};

struct blk_exec {
    /* Filled in by the caller before blk_exec_init(); kept across it. */
    const struct blk_exec_ops *ops;
    void *ctx;
    struct rvm_mem *mem; /* guest RAM: device writes are marked dirty in it */
    struct vq *vqs;      /* the queues requests come from and go back to */
    uint64_t capacity;   /* sectors */
    bool ro;
    uint8_t on_error;                      /* enum rvm_blk_on_error */
    const char *id;                        /* VIRTIO_BLK_ID_BYTES, for GET_ID */
    bool has_direct;                       /* the backend has an O_DIRECT file */
    uint32_t dio_mem_align, dio_off_align; /* what O_DIRECT needs of buffers and offsets */
    struct rvm_rate_limit limit_cfg;

    /* blk_exec's. */
    struct blk_slot *slots;
    int nslots, free_head, inflight;
    struct rate_limit limit;
    int *waiting, wait_head, nwaiting;   /* parsed, held back by the limit, in order */
    int *held, nheld;                    /* failed, kept for a retry by the error policy */
    bool stopped;                        /* the policy stopped: new requests wait */
    uint64_t stat_requests, stat_errors; /* __atomic: read from any thread */
};

/* Room for nslots requests in flight (every queue's size together). 0 or -ENOMEM. */
int blk_exec_init(struct blk_exec *e, int nslots);
/* Frees what blk_exec_init() made; what was in flight or held is forgotten (a reset). */
void blk_exec_fini(struct blk_exec *e);

/* Takes chain c of queue q: answered at once, held back, or started. Needs blk_exec_room(). */
void blk_exec_chain(struct blk_exec *e, uint16_t q, const struct vq_chain *c);

/* Whether another chain may be taken now: a free slot, and none held back before it. */
static inline bool blk_exec_room(const struct blk_exec *e)
{
    return e->free_head >= 0 && !e->nwaiting && !e->stopped;
}

/* The backend's completion of tag (what start() was given). */
void blk_exec_complete(struct blk_exec *e, uint64_t tag, int res);

/*
 * Starts the requests the rate limit held back, in order, while it lets
 * them (all, when unlimited: a snapshot's pause). True when none waits.
 */
bool blk_exec_release(struct blk_exec *e, bool unlimited);

/* Forgets the requests the rate limit holds back (a reset: the driver forgets them too). */
void blk_exec_drop_waiting(struct blk_exec *e);

/*
 * After the VM resumed from the error policy's stop: the held requests go
 * again from where they stopped, and new ones may be taken. False if one
 * stopped the device again.
 */
bool blk_exec_retry(struct blk_exec *e);

/* Whether nothing is in flight or held back by the limit. */
static inline bool blk_exec_idle(const struct blk_exec *e)
{
    return e->inflight == 0 && e->nwaiting == 0;
}

#endif
