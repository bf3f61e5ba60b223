/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <string.h>
#include <linux/virtio_blk.h>

#include "blk_req.h"

struct blk_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct blk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

static bool add_iov(struct blk_req *r, void *base, uint64_t gpa, uint64_t len)
{
    if (r->niov == BLK_SEG_MAX || len > BLK_SIZE_MAX)
        return false; /* past what the device offered (seg_max, size_max) */
    r->iov[r->niov] = (struct iovec){.iov_base = base, .iov_len = len};
    r->gpa[r->niov++] = gpa;
    r->data_len += len;
    return true;
}

/* [sector, sector + n) inside the disk, without overflow. */
static bool in_disk(uint64_t sector, uint64_t n, uint64_t capacity)
{
    return sector <= capacity && n <= capacity - sector;
}

int blk_parse(const struct vq_chain *c, uint64_t capacity, bool ro, struct blk_req *r)
{
    const struct vq_seg *last;
    struct blk_header h;
    bool data_write = true, data_read = true;

    memset(r, 0, offsetof(struct blk_req, iov));
    r->niov = 0;
    r->data_len = 0;
    /* Without a writable last byte there is nowhere to answer: length 0. */
    if (c->err != VQ_OK || c->nseg < 2 || !c->seg[c->nseg - 1].write)
        return BLK_DROP;
    last = &c->seg[c->nseg - 1];
    r->status = (uint8_t *)last->hva + last->len - 1;
    r->status_gpa = last->gpa + last->len - 1;

    /* The header: the first buffer, device-readable. */
    if (c->seg[0].write || c->seg[0].len < sizeof(h))
        return VIRTIO_BLK_S_IOERR;
    memcpy(&h, c->seg[0].hva, sizeof(h)); /* copied once */
    r->type = h.type;
    r->sector = h.sector;

    /* Data: the buffers between, and the last one but its status byte. */
    for (unsigned i = 1; i + 1 < c->nseg; i++)
        if (!add_iov(r, c->seg[i].hva, c->seg[i].gpa, c->seg[i].len))
            return VIRTIO_BLK_S_IOERR;
    if (last->len > 1 && !add_iov(r, last->hva, last->gpa, last->len - 1))
        return VIRTIO_BLK_S_IOERR;
    for (unsigned i = 1; i + 1 < c->nseg; i++) {
        data_write &= c->seg[i].write;
        data_read &= !c->seg[i].write;
    }
    if (last->len > 1)
        data_read = false; /* data in the last buffer is device-writable */

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        if (r->type == VIRTIO_BLK_T_IN ? !data_write : !data_read)
            return VIRTIO_BLK_S_IOERR; /* wrong direction */
        if (r->type == VIRTIO_BLK_T_OUT && ro)
            return VIRTIO_BLK_S_IOERR;
        if (r->data_len == 0 || r->data_len % BLK_SECTOR ||
            !in_disk(r->sector, r->data_len / BLK_SECTOR, capacity))
            return VIRTIO_BLK_S_IOERR;
        return BLK_SUBMIT;
    case VIRTIO_BLK_T_FLUSH:
        return BLK_SUBMIT;
    case VIRTIO_BLK_T_GET_ID:
        return data_write && r->data_len > 0 ? BLK_SUBMIT : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        struct blk_range range;

        /* One range, device-readable (max_discard_seg = max_write_zeroes_seg = 1). */
        if (ro || !data_read || r->niov != 1 || r->data_len != sizeof(range))
            return VIRTIO_BLK_S_IOERR;
        memcpy(&range, r->iov[0].iov_base, sizeof(range));
        if (range.num_sectors == 0 || !in_disk(range.sector, range.num_sectors, capacity) ||
            (r->type == VIRTIO_BLK_T_DISCARD ? range.flags != 0
                                             : (range.flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)))
            return VIRTIO_BLK_S_IOERR;
        r->sector = range.sector;
        r->num_sectors = range.num_sectors;
        r->range_flags = range.flags;
        return BLK_SUBMIT;
    }
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

uint64_t blk_req_advance(struct blk_req *r, uint64_t moved)
{
    unsigned i = 0;

    r->done += moved;
    while (i < r->niov && moved >= r->iov[i].iov_len)
        moved -= r->iov[i++].iov_len;
    if (i < r->niov && moved) {
        r->iov[i].iov_base = (uint8_t *)r->iov[i].iov_base + moved;
        r->iov[i].iov_len -= moved;
        r->gpa[i] += moved;
    }
    memmove(r->iov, r->iov + i, (r->niov - i) * sizeof(r->iov[0]));
    memmove(r->gpa, r->gpa + i, (r->niov - i) * sizeof(r->gpa[0]));
    r->niov -= i;
    return r->data_len - r->done;
}
