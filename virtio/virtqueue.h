/* SPDX-License-Identifier: MIT */
/*
 * The split virtqueue (virtio 1.x, section 2.7), device side.
 *
 * Everything the driver writes is hostile. A descriptor is copied out of
 * guest memory once and checked before use; a chain that breaks a rule fails
 * that request only (vq_pop reports it, the device completes it with an
 * error or zero length); a ring that cannot be trusted any more (a head index
 * out of range, more buffers available than the queue holds) marks the queue
 * broken, and the device must go to NEEDS_RESET. Nothing a driver writes can
 * make these functions loop unboundedly, read or write outside guest RAM.
 *
 * A queue is used by one thread at a time (the device's worker); setup and
 * reset happen while the worker does not touch it.
 */
#ifndef RINGVM_VIRTIO_VIRTQUEUE_H
#define RINGVM_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_ring.h>

struct rvm_mem;

#define VQ_MAX_SIZE 32768 /* the largest queue size virtio allows */

/* Why a chain was refused (chain->err); 0 when it is good. */
enum vq_chain_err {
    VQ_OK = 0,
    VQ_ERR_INDEX,         /* a next index past the table */
    VQ_ERR_TOO_LONG,      /* more descriptors than the queue (or table) has: a loop */
    VQ_ERR_TOO_MANY_SEGS, /* more buffers than the device accepts */
    VQ_ERR_ADDR,          /* a buffer not wholly inside guest RAM (incl. overflow) */
    VQ_ERR_ZERO_LEN,      /* a zero-length buffer */
    VQ_ERR_NESTED,        /* an indirect table inside an indirect table */
    VQ_ERR_INDIRECT,      /* a bad indirect table (size, NEXT with INDIRECT, not offered) */
    VQ_ERR_ORDER,         /* a device-readable buffer after a device-writable one */
};

/* One buffer of a chain, resolved to host memory. */
struct vq_seg {
    void *hva;
    uint64_t gpa;
    uint32_t len;
    bool write; /* device-writable */
};

/* A popped chain; seg[] is the caller's, max_seg entries long. */
struct vq_chain {
    uint16_t head; /* what vq_add_used() takes back */
    uint16_t nseg;
    uint16_t max_seg;
    struct vq_seg *seg;
    uint64_t out_len; /* device-readable bytes */
    uint64_t in_len;  /* device-writable bytes */
    enum vq_chain_err err;
};

struct vq {
    struct rvm_mem *mem;
    uint16_t size; /* 0 while not set up */
    bool event_idx;
    bool indirect;
    bool broken;             /* the ring is corrupt: the device needs a reset */
    uint16_t last_avail;     /* next available entry to take */
    uint16_t used_idx;       /* our copy of used->idx, published by vq_publish_used() */
    uint16_t signalled_used; /* used->idx when the driver was last notified */
    bool signalled_valid;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
};

/*
 * Sets q up on the driver's rings: size a power of two in [1, max_size],
 * rings aligned as virtio 1.x requires (16, 2, 4) and wholly inside guest
 * RAM. event_idx and indirect are the negotiated features. 0 or -EINVAL
 * (q is left unset).
 */
int vq_setup(struct vq *q, struct rvm_mem *mem, uint16_t size, uint16_t max_size, uint64_t desc_gpa,
             uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect);

/* Forgets the rings (device reset). */
void vq_reset(struct vq *q);

/* Bytes a ring of `size` entries takes: descriptor table, available ring, used ring. */
uint64_t vq_desc_bytes(uint16_t size);
uint64_t vq_avail_bytes(uint16_t size); /* with used_event */
uint64_t vq_used_bytes(uint16_t size);  /* with avail_event */

/*
 * Takes the next available chain. Returns 1 with *c filled (c->err says
 * whether the chain is usable; either way the device must give c->head back
 * with vq_add_used()), 0 when nothing is available, -EIO when the ring is
 * corrupt (q->broken is set; stop using the queue), -EINVAL if not set up.
 */
int vq_pop(struct vq *q, struct vq_chain *c);

/*
 * The chain at descriptor head, walked and checked as vq_pop() does, for a
 * chain the device took before (a restored device's held buffers): the
 * driver does not touch the descriptors of a chain it gave. 0 with *c
 * filled (c->err as for vq_pop), -ERANGE for a head past the queue,
 * -EINVAL if not set up.
 */
int vq_chain_at(struct vq *q, uint16_t head, struct vq_chain *c);

/*
 * Returns a chain to the driver with `len` bytes written into it. Visible to
 * the driver only after vq_publish_used(). Device writes to guest memory
 * (the used ring) are recorded for dirty tracking.
 */
void vq_add_used(struct vq *q, uint16_t head, uint32_t len);

/*
 * Publishes the used entries added so far (one store of used->idx) and says
 * whether the driver wants an interrupt for them (EVENT_IDX's used_event, or
 * the NO_INTERRUPT flag).
 */
bool vq_publish_used(struct vq *q);

/*
 * Asks the driver to notify (enable) or not (disable) when it adds buffers.
 * Enabling returns true if buffers arrived meanwhile, so that the caller
 * processes them instead of sleeping: the usual
 * "disable; drain; enable; if (true) drain again" loop.
 */
bool vq_set_notify(struct vq *q, bool enable);

/*
 * A device's drain of q: with notifications off, hands each available chain
 * to take(), which returns whether the device can take another. Out of room,
 * or quiet (the caller polls the ring), notifications stay off; else they
 * are turned back on and what raced with that is taken too. A re-check that
 * pops nothing ends it, whatever the ring says: a hostile layout cannot keep
 * it going. 0, or -EIO when the ring is corrupt (q->broken; the device needs
 * a reset).
 */
int vq_drain(struct vq *q, struct vq_chain *c, bool quiet,
             bool (*take)(void *arg, struct vq_chain *c), void *arg);

/* Whether the driver has made a chain available that vq_pop() has not taken. */
static inline bool vq_has_avail(const struct vq *q)
{
    return __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE) != q->last_avail;
}

const char *vq_chain_err_name(enum vq_chain_err err);

#endif
