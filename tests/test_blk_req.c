/* SPDX-License-Identifier: MIT */
/* Unit: virtio-blk request parsing on fake chains over fake guest memory (no KVM). */
#include <string.h>
#include <linux/virtio_blk.h>

#include "../virtio/blk_req.h"
#include "common/testutil.h"

#define CAP 2048 /* sectors: a 1 MiB disk */

static uint8_t mem[64 * 1024];
static struct vq_seg seg[8];
static struct vq_chain c;
static struct blk_req r;

/* Builds a chain: a 16-byte header at mem[0], then buffers described by (len, write). */
static void chain(uint32_t type, uint64_t sector, unsigned n, const uint32_t *len,
                  const bool *write)
{
    uint32_t h[4] = {type, 0, (uint32_t)sector, (uint32_t)(sector >> 32)};
    size_t off = 64;

    memset(&c, 0, sizeof(c));
    memcpy(mem, h, sizeof(h));
    c.seg = seg;
    c.max_seg = 8;
    seg[0] = (struct vq_seg){.hva = mem, .gpa = 0x1000, .len = 16, .write = false};
    c.nseg = 1;
    for (unsigned i = 0; i < n; i++) {
        seg[c.nseg++] = (struct vq_seg){
            .hva = mem + off, .gpa = 0x1000 + off, .len = len[i], .write = write[i]};
        off += len[i];
    }
}

static void test_read_write(void **state)
{
    (void)state;
    chain(VIRTIO_BLK_T_IN, 8, 2, (uint32_t[]){4096, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.type, VIRTIO_BLK_T_IN);
    assert_int_equal(r.sector, 8);
    assert_int_equal(r.niov, 1);
    assert_int_equal(r.data_len, 4096);
    assert_ptr_equal(r.status, seg[2].hva);
    assert_int_equal(r.gpa[0], seg[1].gpa);

    chain(VIRTIO_BLK_T_OUT, CAP - 8, 3, (uint32_t[]){2048, 2048, 1}, (bool[]){false, false, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.niov, 2);
    assert_int_equal(r.data_len, 4096); /* exactly up to the end of the disk */

    /* Data and status sharing the last buffer (a read). */
    chain(VIRTIO_BLK_T_IN, 0, 1, (uint32_t[]){513}, (bool[]){true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.data_len, 512);
    assert_ptr_equal(r.status, (uint8_t *)seg[1].hva + 512);
}

static void test_short_header_and_no_status(void **state)
{
    (void)state;
    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    seg[0].len = 12; /* short header */
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
    assert_non_null(r.status); /* there is a status byte to answer in */

    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    seg[0].write = true; /* header device-writable */
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR);

    chain(VIRTIO_BLK_T_OUT, 0, 1, (uint32_t[]){512}, (bool[]){false}); /* no status byte */
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_DROP);
    chain(VIRTIO_BLK_T_OUT, 0, 0, NULL, NULL); /* a header alone */
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_DROP);
    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    c.err = VQ_ERR_ADDR; /* the queue already refused the chain */
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_DROP);
}

static void test_ranges(void **state)
{
    (void)state;
    chain(VIRTIO_BLK_T_IN, CAP - 7, 2, (uint32_t[]){4096, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* past the end */
    chain(VIRTIO_BLK_T_IN, CAP, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
    chain(VIRTIO_BLK_T_IN, UINT64_MAX - 1, 2, (uint32_t[]){1024, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* would wrap */
    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){500, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* not sectors */
}

static void test_direction_and_ro(void **state)
{
    (void)state;
    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){512, 1}, (bool[]){false, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* read into readable */
    chain(VIRTIO_BLK_T_OUT, 0, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* write from writable */
    chain(VIRTIO_BLK_T_OUT, 0, 2, (uint32_t[]){512, 1}, (bool[]){false, true});
    assert_int_equal(blk_parse(&c, CAP, true, &r), VIRTIO_BLK_S_IOERR); /* read-only disk */
    chain(VIRTIO_BLK_T_IN, 0, 2, (uint32_t[]){512, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, true, &r), BLK_SUBMIT); /* reads are fine */
}

static void test_other_types(void **state)
{
    uint32_t range[4] = {16, 0, 8, 0}; /* sector 16, 8 sectors, flags 0 */
    (void)state;

    chain(VIRTIO_BLK_T_FLUSH, 0, 1, (uint32_t[]){1}, (bool[]){true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    chain(VIRTIO_BLK_T_GET_ID, 0, 2, (uint32_t[]){20, 1}, (bool[]){true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    chain(VIRTIO_BLK_T_GET_ID, 0, 1, (uint32_t[]){1}, (bool[]){true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* nowhere to put it */
    chain(77, 0, 1, (uint32_t[]){1}, (bool[]){true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_UNSUPP);

    chain(VIRTIO_BLK_T_DISCARD, 0, 2, (uint32_t[]){16, 1}, (bool[]){false, true});
    memcpy(seg[1].hva, range, 16);
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.sector, 16);
    assert_int_equal(r.num_sectors, 8);
    assert_int_equal(blk_parse(&c, CAP, true, &r), VIRTIO_BLK_S_IOERR); /* ro */
    range[0] = CAP - 4;
    memcpy(seg[1].hva, range, 16);
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* past the end */
    range[0] = 0;
    range[3] = 1; /* flags on a discard */
    memcpy(seg[1].hva, range, 16);
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR);
    chain(VIRTIO_BLK_T_WRITE_ZEROES, 0, 2, (uint32_t[]){16, 1}, (bool[]){false, true});
    memcpy(seg[1].hva, range, 16); /* the unmap flag is allowed here */
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.range_flags, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    chain(VIRTIO_BLK_T_WRITE_ZEROES, 0, 2, (uint32_t[]){32, 1}, (bool[]){false, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), VIRTIO_BLK_S_IOERR); /* two ranges */
}

/*
 * What the device offers it enforces: a data buffer larger than size_max,
 * or more data buffers than seg_max, fails the request (the device used to
 * advertise size_max and take anything).
 */
static void test_size_max_and_seg_max(void **state)
{
    static struct vq_seg big[BLK_SEG_MAX + 3];
    struct vq_chain bc = {.seg = big, .max_seg = BLK_SEG_MAX + 3};
    uint32_t h[4] = {VIRTIO_BLK_T_IN, 0, 0, 0};
    (void)state;

    memcpy(mem, h, sizeof(h));
    big[0] = (struct vq_seg){.hva = mem, .gpa = 0x1000, .len = 16};
    /* The buffers' bytes are never touched for a read: any addresses do. */
    big[1] = (struct vq_seg){.hva = mem + 64, .gpa = 0x100000, .len = BLK_SIZE_MAX, .write = true};
    big[2] = (struct vq_seg){.hva = mem + 32, .gpa = 0x2000, .len = 1, .write = true};
    bc.nseg = 3;
    assert_int_equal(blk_parse(&bc, 1ULL << 30, false, &r), BLK_SUBMIT);
    big[1].len = BLK_SIZE_MAX + 512;
    assert_int_equal(blk_parse(&bc, 1ULL << 30, false, &r), VIRTIO_BLK_S_IOERR);

    for (unsigned i = 1; i <= BLK_SEG_MAX + 1; i++)
        big[i] = (struct vq_seg){
            .hva = mem + 64, .gpa = 0x100000 + 512ULL * i, .len = 512, .write = true};
    big[BLK_SEG_MAX + 2] = (struct vq_seg){.hva = mem + 32, .gpa = 0x2000, .len = 1, .write = true};
    bc.nseg = BLK_SEG_MAX + 3; /* seg_max + 1 data buffers */
    assert_int_equal(blk_parse(&bc, 1ULL << 30, false, &r), VIRTIO_BLK_S_IOERR);
    big[BLK_SEG_MAX + 1] = big[BLK_SEG_MAX + 2];
    bc.nseg = BLK_SEG_MAX + 2; /* exactly seg_max */
    assert_int_equal(blk_parse(&bc, 1ULL << 30, false, &r), BLK_SUBMIT);
    assert_int_equal(r.niov, BLK_SEG_MAX);
}

/* A short transfer goes on from where it stopped: the pieces advance past what moved. */
static void test_advance(void **state)
{
    (void)state;
    chain(VIRTIO_BLK_T_IN, 4, 4, (uint32_t[]){512, 1024, 512, 1}, (bool[]){true, true, true, true});
    assert_int_equal(blk_parse(&c, CAP, false, &r), BLK_SUBMIT);
    assert_int_equal(r.niov, 3);
    uint8_t *second = r.iov[1].iov_base;
    uint64_t second_gpa = r.gpa[1];
    assert_int_equal(blk_req_advance(&r, 700), 2048 - 700);
    assert_int_equal(r.done, 700);
    assert_int_equal(r.niov, 2);
    assert_ptr_equal(r.iov[0].iov_base, second + 188);
    assert_int_equal(r.iov[0].iov_len, 1024 - 188);
    assert_int_equal(r.gpa[0], second_gpa + 188);
    assert_int_equal(r.iov[1].iov_len, 512);
    assert_int_equal(blk_req_advance(&r, 1024 - 188), 512); /* exactly a piece */
    assert_int_equal(r.niov, 1);
    assert_int_equal(blk_req_advance(&r, 512), 0);
    assert_int_equal(r.niov, 0);
    assert_int_equal(r.done, 2048);
    assert_int_equal(r.sector, 4); /* the offset is sector * 512 + done */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write),  cmocka_unit_test(test_short_header_and_no_status),
        cmocka_unit_test(test_ranges),      cmocka_unit_test(test_direction_and_ro),
        cmocka_unit_test(test_other_types), cmocka_unit_test(test_size_max_and_seg_max),
        cmocka_unit_test(test_advance),
    };
    return cmocka_run_group_tests_name("blk_req", tests, NULL, NULL);
}
