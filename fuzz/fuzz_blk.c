/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for virtio-blk's request parsing (virtio/blk_req.c, the
 * real code) on chains a hostile driver could build. What it accepts must
 * be what the device relies on: a status byte in the chain's last writable
 * buffer, data buffers taken from the chain in order and within size_max
 * and seg_max, a transfer in the direction the type asks and inside the
 * disk, a discard or write-zeroes range inside the disk; a transfer cut
 * short goes on with exactly what remains (blk_req_advance). A violation
 * aborts.
 *
 * Input: [0..7] capacity in sectors [8] read-only [9] pieces, each
 * [len, 3 bytes][write flag], then the bytes the pieces hold (the header).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_blk.h>

#include "../virtio/blk_req.h"
#include "check.h"

#define MAX_PIECES (BLK_SEG_MAX + 8)
#define BUF        (64u << 10)

static uint8_t buf[BUF];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vq_seg seg[MAX_PIECES];
    static struct blk_req r;
    struct vq_chain c = {.seg = seg, .max_seg = MAX_PIECES};
    uint64_t cap, gpa = 0x100000;
    size_t off = 10, at = 0;
    bool seen_write = false;

    if (size < 10)
        return 0;
    memcpy(&cap, data, 8);
    cap %= 1ULL << 40;
    bool ro = data[8] & 1;
    unsigned n = data[9] % MAX_PIECES;
    for (unsigned i = 0; i < n && size - off >= 4; i++, off += 4) {
        uint32_t len = 1 + (uint32_t)(data[off] | data[off + 1] << 8 | data[off + 2] << 16) %
                               (2 * BLK_SIZE_MAX);
        bool w = (data[off + 3] & 1) || seen_write;
        /* Pieces past the buffer's end share its last bytes: blk_parse reads only a header,
         * a range and (never) data, and those come from the first pieces. */
        uint32_t room = at < BUF ? BUF - (uint32_t)at : 0;
        uint8_t *hva = room >= len ? buf + at : buf + BUF - (len < BUF ? len : BUF);
        seen_write |= w;
        seg[c.nseg++] = (struct vq_seg){.hva = hva, .gpa = gpa, .len = len, .write = w};
        gpa += len;
        at += len;
        if (w)
            c.in_len += len;
        else
            c.out_len += len;
    }
    memset(buf, 0, sizeof(buf));
    memcpy(buf, data + off, size - off < BUF ? size - off : BUF);

    int rc = blk_parse(&c, cap, ro, &r);
    if (rc == BLK_DROP)
        return 0;
    /* Anything answered has its status byte: the last byte of the last, writable piece. */
    const struct vq_seg *last = &c.seg[c.nseg - 1];
    CHECK(c.nseg >= 2 && last->write);
    CHECK(r.status == (uint8_t *)last->hva + last->len - 1 &&
          r.status_gpa == last->gpa + last->len - 1);
    if (rc != BLK_SUBMIT) {
        CHECK(rc == VIRTIO_BLK_S_IOERR || rc == VIRTIO_BLK_S_UNSUPP);
        return 0;
    }
    CHECK(!c.seg[0].write && c.seg[0].len >= 16);
    CHECK(r.niov <= BLK_SEG_MAX);
    uint64_t sum = 0;
    for (unsigned i = 0; i < r.niov; i++) {
        const struct vq_seg *s = &c.seg[i + 1];
        CHECK(r.iov[i].iov_base == s->hva && r.gpa[i] == s->gpa);
        CHECK(r.iov[i].iov_len <= BLK_SIZE_MAX && r.iov[i].iov_len > 0);
        CHECK(r.iov[i].iov_len == s->len || (i + 2 == c.nseg && r.iov[i].iov_len == s->len - 1));
        sum += r.iov[i].iov_len;
    }
    CHECK(sum == r.data_len);
    switch (r.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        CHECK(r.data_len > 0 && r.data_len % BLK_SECTOR == 0);
        CHECK(r.sector <= cap && r.data_len / BLK_SECTOR <= cap - r.sector);
        CHECK(r.type == VIRTIO_BLK_T_IN || !ro);
        for (unsigned i = 0; i < r.niov; i++)
            CHECK(c.seg[i + 1].write == (r.type == VIRTIO_BLK_T_IN));
        /* A transfer cut short twice, at places the input picks: what remains adds up. */
        for (int k = 0; k < 2 && r.done < r.data_len; k++) {
            uint64_t left = r.data_len - r.done, moved = 1 + (cap + (uint64_t)k * 7919) % left;
            CHECK(blk_req_advance(&r, moved) == left - moved);
            uint64_t rest = 0;
            for (unsigned i = 0; i < r.niov; i++) {
                CHECK(r.iov[i].iov_len > 0);
                rest += r.iov[i].iov_len;
            }
            CHECK(rest == r.data_len - r.done);
        }
        break;
    case VIRTIO_BLK_T_FLUSH:
        break;
    case VIRTIO_BLK_T_GET_ID:
        CHECK(r.data_len > 0);
        for (unsigned i = 0; i < r.niov; i++)
            CHECK(c.seg[i + 1].write);
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        CHECK(!ro && r.num_sectors > 0 && r.sector <= cap && r.num_sectors <= cap - r.sector);
        CHECK(r.niov == 1 && !c.seg[1].write);
        break;
    default:
        CHECK(0); /* an unknown type is never submitted */
    }
    return 0;
}
