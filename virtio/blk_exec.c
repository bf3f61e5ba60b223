/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/counter.h"
#include "../mem/mem_internal.h"
#include "blk_exec.h"

int blk_exec_init(struct blk_exec *e, int nslots)
{
    e->slots = calloc((size_t)nslots + 1, sizeof(*e->slots));
    e->held = calloc((size_t)nslots + 1, sizeof(*e->held));
    e->waiting = calloc((size_t)nslots + 1, sizeof(*e->waiting));
    if (!e->slots || !e->held || !e->waiting) {
        blk_exec_fini(e);
        return -ENOMEM;
    }
    e->nslots = nslots;
    for (int i = 0; i < nslots; i++)
        e->slots[i].next_free = i + 1 < nslots ? i + 1 : -1;
    e->free_head = nslots ? 0 : -1;
    e->inflight = 0;
    e->wait_head = e->nwaiting = 0;
    e->nheld = 0;
    e->stopped = false;
    rate_limit_init(&e->limit, &e->limit_cfg, e->ops->now_ns(e->ctx));
    return 0;
}

void blk_exec_fini(struct blk_exec *e)
{
    free(e->slots);
    free(e->held);
    free(e->waiting);
    e->slots = NULL;
    e->held = NULL;
    e->waiting = NULL;
    e->nslots = 0;
    e->free_head = -1;
}

/* Gives a request back to the driver with its status; records what the device wrote. */
static void complete(struct blk_exec *e, uint16_t q, uint16_t head, struct blk_req *r,
                     uint8_t status, uint32_t written)
{
    if (r && r->status) {
        *r->status = status;
        mem_mark_dirty(e->mem, r->status_gpa, 1);
        written += 1;
    }
    if (status != VIRTIO_BLK_S_OK)
        counter_bump(&e->stat_errors);
    counter_bump(&e->stat_requests);
    vq_add_used(&e->vqs[q], head, written);
}

/* Whether the backend takes r with O_DIRECT: buffers, lengths and offset as it requires. */
static bool direct_ok(const struct blk_exec *e, const struct blk_req *r)
{
    if (!e->has_direct || (r->sector * BLK_SECTOR + r->done) % e->dio_off_align)
        return false;
    for (unsigned i = 0; i < r->niov; i++)
        if ((uintptr_t)r->iov[i].iov_base % e->dio_mem_align ||
            r->iov[i].iov_len % e->dio_off_align)
            return false;
    return true;
}

static void submit(struct blk_exec *e, int slot);

/* Whether the error policy stops the VM for err rather than failing the request. */
static bool stops_on(const struct blk_exec *e, int err)
{
    if (err == -ECANCELED || err == -EINTR)
        return false; /* a reset cancelled it */
    return e->on_error == RVM_BLK_ERROR_STOP ||
           (e->on_error == RVM_BLK_ERROR_STOP_ENOSPC && (err == -ENOSPC || err == -EDQUOT));
}

/*
 * A request the backend failed, kept as it stands (what it moved stays
 * moved) for a retry after the VM resumes. The first one stops the device
 * taking new requests and tells the caller.
 */
static void hold(struct blk_exec *e, int slot, int err)
{
    e->held[e->nheld++] = slot;
    e->inflight--;
    if (e->stopped)
        return;
    e->stopped = true;
    e->ops->stopped(e->ctx, err);
}

bool blk_exec_retry(struct blk_exec *e)
{
    e->stopped = false;
    /* Taken from the end: one that fails at once is held again where it was taken from. */
    while (e->nheld && !e->stopped)
        submit(e, e->held[--e->nheld]);
    return !e->stopped;
}

/* A read's first `bytes` bytes landed in guest memory: recorded for dirty tracking. */
static void mark_landed(struct blk_exec *e, const struct blk_req *r, uint64_t bytes)
{
    for (unsigned i = 0; i < r->niov && bytes; i++) {
        uint64_t k = r->iov[i].iov_len < bytes ? r->iov[i].iov_len : bytes;
        mem_mark_dirty(e->mem, r->gpa[i], k);
        bytes -= k;
    }
}

/*
 * A transfer cut short goes on with what remains (a backend may move less
 * than asked); one that moves nothing more fails. Either way a read's bytes
 * that landed are marked dirty, exactly those.
 */
void blk_exec_complete(struct blk_exec *e, uint64_t tag, int res)
{
    int slot = (int)tag;
    struct blk_slot *s = &e->slots[slot];
    struct blk_req *r = &s->req;
    bool rw = r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT;

    if (res > 0 && (uint64_t)res > s->expect) {
        /* More than asked, which no backend may say: what it wrote of the buffers is unknown
         * (all of them are dirty), and the request fails. */
        if (r->type == VIRTIO_BLK_T_IN)
            mark_landed(e, r, s->expect);
        res = -EIO;
    }
    if (res < 0 && stops_on(e, res)) {
        hold(e, slot, res);
        return;
    }
    if (rw && res > 0 && (uint64_t)res < s->expect) {
        if (r->type == VIRTIO_BLK_T_IN)
            mark_landed(e, r, (uint64_t)res);
        blk_req_advance(r, (uint64_t)res);
        e->inflight--;
        submit(e, slot); /* the rest, from where it stopped */
        return;
    }
    bool ok = res >= 0 && (uint64_t)res == s->expect;
    if (r->type == VIRTIO_BLK_T_IN && res > 0) {
        mark_landed(e, r, (uint64_t)res);
        r->done += (uint64_t)res;
    }
    /* What the device wrote into the buffers: a read's bytes, all or as far as it came. */
    uint32_t written = r->type == VIRTIO_BLK_T_IN ? (uint32_t)r->done : 0;
    complete(e, s->queue, s->head, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, written);
    s->next_free = e->free_head;
    e->free_head = slot;
    e->inflight--;
}

/* Starts one parsed request on the backend. */
static void submit(struct blk_exec *e, int slot)
{
    struct blk_slot *s = &e->slots[slot];
    struct blk_req *r = &s->req;
    struct blk_io io = {.type = r->type, .off = r->sector * BLK_SECTOR + r->done};

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        io.direct = direct_ok(e, r);
        io.iov = r->iov;
        io.niov = r->niov;
        io.len = s->expect = r->data_len - r->done;
        break;
    case VIRTIO_BLK_T_FLUSH:
        s->expect = 0;
        break;
    default: /* DISCARD, WRITE_ZEROES */
        io.unmap = r->type == VIRTIO_BLK_T_DISCARD ||
                   (r->range_flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        io.len = r->num_sectors * BLK_SECTOR;
        s->expect = 0;
        break;
    }
    e->inflight++;
    int rc = e->ops->start(e->ctx, (uint64_t)slot, &io);
    if (rc < 0) /* the backend refused to take it: this request fails, the device goes on */
        blk_exec_complete(e, (uint64_t)slot, rc);
}

/* What a request costs the byte bucket: the data it moves. */
static uint64_t limit_bytes(const struct blk_req *r)
{
    return r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT ? r->data_len : 0;
}

/* A parsed request goes now, or waits behind the others its rate limit holds back. */
static void admit(struct blk_exec *e, int slot)
{
    const struct blk_req *r = &e->slots[slot].req;
    uint64_t now = e->ops->now_ns(e->ctx);

    if (!e->nwaiting && rate_limit_take(&e->limit, limit_bytes(r), now)) {
        submit(e, slot);
        return;
    }
    e->waiting[(e->wait_head + e->nwaiting++) % e->nslots] = slot;
    if (e->nwaiting == 1)
        e->ops->wake_after(e->ctx, rate_limit_wait_ns(&e->limit, limit_bytes(r), now));
}

bool blk_exec_release(struct blk_exec *e, bool unlimited)
{
    while (e->nwaiting) {
        int slot = e->waiting[e->wait_head];
        uint64_t bytes = limit_bytes(&e->slots[slot].req), now = e->ops->now_ns(e->ctx);

        if (!unlimited && !rate_limit_take(&e->limit, bytes, now)) {
            e->ops->wake_after(e->ctx, rate_limit_wait_ns(&e->limit, bytes, now));
            return false;
        }
        e->wait_head = (e->wait_head + 1) % e->nslots;
        e->nwaiting--;
        submit(e, slot);
    }
    return true;
}

void blk_exec_drop_waiting(struct blk_exec *e)
{
    e->nwaiting = 0;
}

/* GET_ID: the serial, as much as the buffers take, with no I/O. */
static void answer_id(struct blk_exec *e, uint16_t q, uint16_t head, struct blk_req *r)
{
    uint32_t n = 0;

    for (unsigned i = 0; i < r->niov && n < VIRTIO_BLK_ID_BYTES; i++) {
        uint32_t k =
            (uint32_t)(r->iov[i].iov_len < VIRTIO_BLK_ID_BYTES - n ? r->iov[i].iov_len
                                                                   : VIRTIO_BLK_ID_BYTES - n);
        memcpy(r->iov[i].iov_base, e->id + n, k);
        mem_mark_dirty(e->mem, r->gpa[i], k);
        n += k;
    }
    complete(e, q, head, r, VIRTIO_BLK_S_OK, n);
}

void blk_exec_chain(struct blk_exec *e, uint16_t q, const struct vq_chain *c)
{
    int slot = e->free_head;
    struct blk_req *r = &e->slots[slot].req;
    int rc = blk_parse(c, e->capacity, e->ro, r);

    if (rc == BLK_DROP) {
        complete(e, q, c->head, NULL, VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (rc != BLK_SUBMIT) {
        complete(e, q, c->head, r, (uint8_t)rc, 0);
        return;
    }
    if (r->type == VIRTIO_BLK_T_GET_ID) {
        answer_id(e, q, c->head, r);
        return;
    }
    e->free_head = e->slots[slot].next_free;
    e->slots[slot].queue = q;
    e->slots[slot].head = c->head;
    admit(e, slot);
}
