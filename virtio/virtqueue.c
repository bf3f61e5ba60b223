/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <ringvm/mem.h>

#include "../mem/mem_internal.h"
#include "virtqueue.h"

/* The guest may rewrite a descriptor at any time: copy it once, then only use the copy. */
static inline void read_desc(struct vring_desc *d, const struct vring_desc *src)
{
    memcpy(d, src, sizeof(*d));
    __asm__ volatile("" ::: "memory"); /* the copy is made here, never re-read later */
}

static bool is_pow2(uint32_t x)
{
    return x && !(x & (x - 1));
}

/* Whether [a, a+alen) and [b, b+blen) share a byte; lengths are non-zero, ends may wrap. */
static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a - b < blen || b - a < alen;
}

uint64_t vq_desc_bytes(uint16_t size)
{
    return 16ULL * size;
}

uint64_t vq_avail_bytes(uint16_t size)
{
    return 4 + 2ULL * size + 2;
}

uint64_t vq_used_bytes(uint16_t size)
{
    return 4 + 8ULL * size + 2;
}

int vq_setup(struct vq *q, struct rvm_mem *mem, uint16_t size, uint16_t max_size, uint64_t desc_gpa,
             uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect)
{
    void *desc, *avail, *used;

    vq_reset(q);
    if (!is_pow2(size) || size > max_size || max_size > VQ_MAX_SIZE)
        return -EINVAL;
    if (desc_gpa % VRING_DESC_ALIGN_SIZE || avail_gpa % VRING_AVAIL_ALIGN_SIZE ||
        used_gpa % VRING_USED_ALIGN_SIZE)
        return -EINVAL;
    /* The event fields exist only with EVENT_IDX: a driver may pack the rings without them. */
    uint64_t dlen = vq_desc_bytes(size), alen = vq_avail_bytes(size) - (event_idx ? 0 : 2),
             ulen = vq_used_bytes(size) - (event_idx ? 0 : 2);
    /*
     * The device writes the used ring: over the avail ring it would change the
     * indices it reads (its own flags write would move avail->idx), over the
     * table the descriptors it walks. No two areas may share a byte.
     */
    if (overlap(desc_gpa, dlen, avail_gpa, alen) || overlap(desc_gpa, dlen, used_gpa, ulen) ||
        overlap(avail_gpa, alen, used_gpa, ulen))
        return -EINVAL;
    desc = rvm_mem_hva(mem, desc_gpa, dlen);
    avail = rvm_mem_hva(mem, avail_gpa, alen);
    used = rvm_mem_hva(mem, used_gpa, ulen);
    if (!desc || !avail || !used)
        return -EINVAL;
    q->mem = mem;
    q->size = size;
    q->event_idx = event_idx;
    q->indirect = indirect;
    q->desc_gpa = desc_gpa;
    q->avail_gpa = avail_gpa;
    q->used_gpa = used_gpa;
    q->desc = desc;
    q->avail = avail;
    q->used = used;
    return 0;
}

void vq_reset(struct vq *q)
{
    memset(q, 0, sizeof(*q));
}

const char *vq_chain_err_name(enum vq_chain_err err)
{
    static const char *const names[] = {
        [VQ_OK] = "ok",
        [VQ_ERR_INDEX] = "descriptor index past the table",
        [VQ_ERR_TOO_LONG] = "chain longer than the table (a loop)",
        [VQ_ERR_TOO_MANY_SEGS] = "more buffers than the device takes",
        [VQ_ERR_ADDR] = "buffer outside guest memory",
        [VQ_ERR_ZERO_LEN] = "zero-length buffer",
        [VQ_ERR_NESTED] = "nested indirect table",
        [VQ_ERR_INDIRECT] = "bad indirect descriptor",
        [VQ_ERR_ORDER] = "readable buffer after a writable one",
    };
    return (unsigned)err < sizeof(names) / sizeof(names[0]) ? names[err] : "?";
}

/* Follows a chain from head, checking each descriptor as it is copied. */
static enum vq_chain_err walk(const struct vq *q, struct vq_chain *c)
{
    const struct vring_desc *table = q->desc;
    uint32_t table_size = q->size, idx = c->head, count = 0;
    bool in_indirect = false, seen_write = false;

    for (;;) {
        struct vring_desc d;
        void *hva;
        bool w;

        if (idx >= table_size)
            return VQ_ERR_INDEX;
        if (++count > table_size)
            return VQ_ERR_TOO_LONG; /* every descriptor used once and more: a loop */
        read_desc(&d, &table[idx]);

        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (!q->indirect || (d.flags & VRING_DESC_F_NEXT) || d.len == 0 ||
                d.len % sizeof(struct vring_desc) ||
                d.len / sizeof(struct vring_desc) > VQ_MAX_SIZE)
                return VQ_ERR_INDIRECT;
            if (in_indirect)
                return VQ_ERR_NESTED;
            /* Aligned like a descriptor table, so that it can be read in place. */
            if (d.addr % VRING_DESC_ALIGN_SIZE)
                return VQ_ERR_INDIRECT;
            table = rvm_mem_hva(q->mem, d.addr, d.len);
            if (!table)
                return VQ_ERR_ADDR;
            table_size = d.len / sizeof(struct vring_desc);
            in_indirect = true;
            idx = 0;
            count = 0;
            continue;
        }
        if (d.len == 0)
            return VQ_ERR_ZERO_LEN;
        w = d.flags & VRING_DESC_F_WRITE;
        if (!w && seen_write)
            return VQ_ERR_ORDER;
        seen_write |= w;
        hva = rvm_mem_hva(q->mem, d.addr, d.len);
        if (!hva)
            return VQ_ERR_ADDR;
        if (c->nseg == c->max_seg)
            return VQ_ERR_TOO_MANY_SEGS;
        c->seg[c->nseg++] = (struct vq_seg){.hva = hva, .gpa = d.addr, .len = d.len, .write = w};
        if (w)
            c->in_len += d.len;
        else
            c->out_len += d.len;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return VQ_OK;
        idx = d.next;
    }
}

int vq_pop(struct vq *q, struct vq_chain *c)
{
    uint16_t avail_idx, head;

    if (!q->size)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    /* Acquire: the ring entry and descriptors the driver wrote before idx. */
    avail_idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
    if (avail_idx == q->last_avail)
        return 0;
    if ((uint16_t)(avail_idx - q->last_avail) > q->size ||
        (uint16_t)(q->last_avail - q->used_idx) >= q->size) {
        q->broken = true; /* more outstanding than the queue can hold (heads offered twice) */
        return -EIO;
    }
    head = __atomic_load_n(&q->avail->ring[q->last_avail & (q->size - 1)], __ATOMIC_RELAXED);
    if (head >= q->size) {
        q->broken = true; /* no id to give back: the ring cannot be trusted */
        return -EIO;
    }
    q->last_avail++;
    c->head = head;
    c->nseg = 0;
    c->in_len = c->out_len = 0;
    c->err = walk(q, c);
    return 1;
}

int vq_chain_at(struct vq *q, uint16_t head, struct vq_chain *c)
{
    if (!q->size)
        return -EINVAL;
    if (head >= q->size)
        return -ERANGE;
    c->head = head;
    c->nseg = 0;
    c->in_len = c->out_len = 0;
    c->err = walk(q, c);
    return 0;
}

void vq_add_used(struct vq *q, uint16_t head, uint32_t len)
{
    uint16_t slot = q->used_idx & (q->size - 1);
    struct vring_used_elem *e = &q->used->ring[slot];

    __atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
    mem_mark_dirty(q->mem, q->used_gpa + 4 + 8ULL * slot, sizeof(*e));
    q->used_idx++;
}

bool vq_publish_used(struct vq *q)
{
    uint16_t old = q->signalled_used, now = q->used_idx;
    bool valid = q->signalled_valid;

    if (valid && old == now)
        return false; /* nothing new */
    /* Seq_cst: the entries before idx, and idx before the used_event read below. */
    __atomic_store_n(&q->used->idx, now, __ATOMIC_SEQ_CST);
    mem_mark_dirty(q->mem, q->used_gpa + 2, 2);
    q->signalled_used = now;
    q->signalled_valid = true;
    if (q->event_idx) {
        uint16_t event = __atomic_load_n(&q->avail->ring[q->size], __ATOMIC_SEQ_CST);
        return !valid || vring_need_event(event, now, old);
    }
    return !(__atomic_load_n(&q->avail->flags, __ATOMIC_SEQ_CST) & VRING_AVAIL_F_NO_INTERRUPT);
}

bool vq_set_notify(struct vq *q, bool enable)
{
    uint16_t *avail_event = (uint16_t *)&q->used->ring[q->size];

    if (q->event_idx) {
        if (!enable)
            return false; /* the driver notifies only when it passes avail_event */
        __atomic_store_n(avail_event, q->last_avail, __ATOMIC_SEQ_CST);
        mem_mark_dirty(q->mem, q->used_gpa + 4 + 8ULL * q->size, 2);
    } else {
        __atomic_store_n(&q->used->flags, enable ? 0 : VRING_USED_F_NO_NOTIFY, __ATOMIC_SEQ_CST);
        mem_mark_dirty(q->mem, q->used_gpa, 2);
        if (!enable)
            return false;
    }
    /* Buffers added before the driver could see the request would get no notify. */
    return __atomic_load_n(&q->avail->idx, __ATOMIC_SEQ_CST) != q->last_avail;
}

int vq_drain(struct vq *q, struct vq_chain *c, bool quiet,
             bool (*take)(void *arg, struct vq_chain *c), void *arg)
{
    bool room = true;

    for (unsigned round = 0;; round++) {
        unsigned popped = 0;

        vq_set_notify(q, false);
        while (room) {
            int r = vq_pop(q, c);

            if (r < 0)
                return -EIO;
            if (r == 0)
                break;
            popped++;
            room = take(arg, c);
        }
        if (!room || quiet || !vq_set_notify(q, true))
            return 0;
        if (round > 0 && popped == 0)
            return 0; /* told "more" twice and nothing came: notifications are on; done */
    }
}
