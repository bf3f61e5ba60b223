/* SPDX-License-Identifier: MIT */
/* Unit: the split virtqueue against a hostile driver, on fake guest memory (no KVM). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../mem/mem_internal.h"
#include "../virtio/virtqueue.h"
#include "common/testutil.h"

#define MEM    (4ULL << 20)
#define QSZ    8
#define DESC   0x10000ULL
#define AVAIL  0x11000ULL
#define USED   0x12000ULL
#define ITABLE 0x13000ULL
#define DATA   0x20000ULL
#define MAXSEG 16

struct fx {
    struct rvm_mem *m;
    struct vq q;
    uint16_t avail_idx;
    struct vq_seg seg[MAXSEG];
    struct vq_chain c;
};

static int setup(void **state)
{
    struct rvm_mem_config mc = {.size = MEM, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct fx *f = calloc(1, sizeof(*f));

    if (!f || rvm_mem_create(NULL, &mc, &f->m) < 0 ||
        vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, true) < 0)
        return -1;
    f->c.seg = f->seg;
    f->c.max_seg = MAXSEG;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    rvm_mem_destroy(f->m);
    free(f);
    return 0;
}

/* The driver's side: write descriptor i of the table at `table`. */
static void desc(struct fx *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                 uint16_t flags, uint16_t next)
{
    struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
    assert_int_equal(rvm_mem_write(f->m, table + 16ULL * i, &d, sizeof(d)), 0);
}

/* Puts head in the available ring and bumps avail->idx. */
static void offer(struct fx *f, uint16_t head)
{
    uint16_t slot = f->avail_idx % QSZ;

    assert_int_equal(rvm_mem_write(f->m, AVAIL + 4 + 2 * slot, &head, 2), 0);
    f->avail_idx++;
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &f->avail_idx, 2), 0);
}

static enum vq_chain_err pop_err(struct fx *f)
{
    assert_int_equal(vq_pop(&f->q, &f->c), 1);
    return f->c.err;
}

static uint16_t used_idx(struct fx *f)
{
    uint16_t v;
    rvm_mem_read(f->m, USED + 2, &v, 2);
    return v;
}

static void test_setup_checks(void **state)
{
    struct fx *f = *state;
    struct vq q;

    assert_int_equal(vq_setup(&q, f->m, 6, 256, DESC, AVAIL, USED, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 0, 256, DESC, AVAIL, USED, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 512, 256, DESC, AVAIL, USED, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 8, 256, DESC + 8, AVAIL, USED, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 8, 256, DESC, AVAIL + 1, USED, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 8, 256, DESC, AVAIL, USED + 2, false, false), -EINVAL);
    /* Rings past the end of RAM, or wrapping around. */
    assert_int_equal(vq_setup(&q, f->m, 256, 256, MEM - 16 * 128, AVAIL, USED, false, false),
                     -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 8, 256, DESC, AVAIL, UINT64_MAX - 3, false, false),
                     -EINVAL);
    assert_int_equal(q.size, 0); /* left unset */
    assert_int_equal(vq_pop(&q, &f->c), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, 256, 256, DESC, AVAIL, USED, false, false), 0);
    assert_int_equal(vq_used_bytes(256), 4 + 8 * 256 + 2);
}

static void test_simple_chain_and_used(void **state)
{
    struct fx *f = *state;
    struct vring_used_elem e;

    desc(f, DESC, 3, DATA, 512, VRING_DESC_F_NEXT, 5);
    desc(f, DESC, 5, DATA + 4096, 1, VRING_DESC_F_WRITE, 0);
    offer(f, 3);
    assert_int_equal(vq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.err, VQ_OK);
    assert_int_equal(f->c.head, 3);
    assert_int_equal(f->c.nseg, 2);
    assert_int_equal(f->c.out_len, 512);
    assert_int_equal(f->c.in_len, 1);
    assert_ptr_equal(f->seg[0].hva, rvm_mem_hva(f->m, DATA, 1));
    assert_false(f->seg[0].write);
    assert_true(f->seg[1].write);
    assert_int_equal(vq_pop(&f->q, &f->c), 0); /* nothing more */

    assert_false(mem_dirty_test(f->m, USED));
    vq_add_used(&f->q, 3, 1);
    assert_int_equal(used_idx(f), 0);    /* not visible before publish */
    assert_true(vq_publish_used(&f->q)); /* no suppression asked for */
    assert_int_equal(used_idx(f), 1);
    rvm_mem_read(f->m, USED + 4, &e, sizeof(e));
    assert_int_equal(e.id, 3);
    assert_int_equal(e.len, 1);
    assert_true(mem_dirty_test(f->m, USED)); /* the device's writes are logged */
    assert_false(mem_dirty_test(f->m, DATA));
    assert_false(vq_publish_used(&f->q)); /* nothing new */
}

/*
 * A chain the device took before, walked again by its head (a restored
 * device's held buffers): the same segments, the rings untouched, a head
 * past the queue refused and a bad chain reported as vq_pop() would.
 */
static void test_chain_at(void **state)
{
    struct fx *f = *state;
    uint16_t last = f->q.last_avail;

    desc(f, DESC, 2, DATA, 256, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
    desc(f, DESC, 6, DATA + 8192, 100, VRING_DESC_F_WRITE, 0);
    assert_int_equal(vq_chain_at(&f->q, 2, &f->c), 0);
    assert_int_equal(f->c.err, VQ_OK);
    assert_int_equal(f->c.head, 2);
    assert_int_equal(f->c.nseg, 2);
    assert_int_equal(f->c.in_len, 356);
    assert_int_equal(f->c.out_len, 0);
    assert_ptr_equal(f->seg[1].hva, rvm_mem_hva(f->m, DATA + 8192, 1));
    assert_int_equal(f->q.last_avail, last);
    assert_int_equal(vq_pop(&f->q, &f->c), 0); /* nothing was made available */
    assert_int_equal(vq_chain_at(&f->q, QSZ, &f->c), -ERANGE);
    desc(f, DESC, 6, MEM - 8, 100, VRING_DESC_F_WRITE, 0); /* past guest RAM */
    assert_int_equal(vq_chain_at(&f->q, 2, &f->c), 0);
    assert_int_equal(f->c.err, VQ_ERR_ADDR);
    struct vq unset = {.size = 0};
    assert_int_equal(vq_chain_at(&unset, 0, &f->c), -EINVAL);
}

static void test_loop(void **state)
{
    struct fx *f = *state;

    desc(f, DESC, 0, DATA, 64, VRING_DESC_F_NEXT, 1);
    desc(f, DESC, 1, DATA, 64, VRING_DESC_F_NEXT, 0);
    offer(f, 0);
    /* A longer chain can fit in max_seg: the loop is caught by the table bound. */
    f->c.max_seg = MAXSEG;
    assert_int_equal(pop_err(f), VQ_ERR_TOO_LONG);
    assert_int_equal(f->c.head, 0);                   /* still given back */
    desc(f, DESC, 2, DATA, 64, VRING_DESC_F_NEXT, 2); /* a self-loop */
    offer(f, 2);
    assert_int_equal(pop_err(f), VQ_ERR_TOO_LONG);
    assert_int_equal(vq_pop(&f->q, &f->c), 0);
}

static void test_index_and_addresses(void **state)
{
    struct fx *f = *state;

    desc(f, DESC, 0, DATA, 64, VRING_DESC_F_NEXT, QSZ); /* next past the table */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_INDEX);
    desc(f, DESC, 0, MEM - 10, 100, 0, 0); /* runs past the end of RAM */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_ADDR);
    desc(f, DESC, 0, UINT64_MAX - 5, 100, 0, 0); /* addr + len wraps */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_ADDR);
    desc(f, DESC, 0, MEM - 16, 16, 0, 0); /* the last bytes are fine */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_OK);
    desc(f, DESC, 0, DATA, 0, 0, 0); /* zero length */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_ZERO_LEN);
}

static void test_direction_and_segments(void **state)
{
    struct fx *f = *state;

    desc(f, DESC, 0, DATA, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    desc(f, DESC, 1, DATA, 16, 0, 0); /* readable after writable */
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_ORDER);
    /* A whole-table chain: fine with room for it, refused with too little. */
    for (uint16_t i = 0; i < QSZ; i++)
        desc(f, DESC, i, DATA, 16, i + 1 < QSZ ? VRING_DESC_F_NEXT : 0, i + 1);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_OK);
    assert_int_equal(f->c.nseg, QSZ);
    f->c.max_seg = QSZ - 1;
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_TOO_MANY_SEGS);
}

static void test_indirect(void **state)
{
    struct fx *f = *state;

    /* A good table: two readable, one writable. */
    desc(f, ITABLE, 0, DATA, 16, VRING_DESC_F_NEXT, 1);
    desc(f, ITABLE, 1, DATA + 16, 512, VRING_DESC_F_NEXT, 2);
    desc(f, ITABLE, 2, DATA + 4096, 1, VRING_DESC_F_WRITE, 0);
    desc(f, DESC, 0, ITABLE, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_OK);
    assert_int_equal(f->c.nseg, 3);
    assert_int_equal(f->c.out_len, 528);

    desc(f, DESC, 0, ITABLE, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_INDIRECT); /* INDIRECT with NEXT */
    desc(f, DESC, 0, ITABLE, 3 * 16 + 4, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_INDIRECT); /* not whole descriptors */
    desc(f, DESC, 0, ITABLE + 8, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_INDIRECT); /* misaligned table */
    desc(f, DESC, 0, MEM - 16, 32, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_ADDR); /* table past RAM */

    desc(f, ITABLE, 1, ITABLE, 48, VRING_DESC_F_INDIRECT, 0); /* an indirect inside */
    desc(f, DESC, 0, ITABLE, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_NESTED);

    desc(f, ITABLE, 0, DATA, 16, VRING_DESC_F_NEXT, 1); /* a loop inside the table */
    desc(f, ITABLE, 1, DATA, 16, VRING_DESC_F_NEXT, 0);
    desc(f, DESC, 0, ITABLE, 2 * 16, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_TOO_LONG);

    /* Not negotiated: refused. */
    assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, false), 0);
    f->avail_idx = 0;
    desc(f, ITABLE, 0, DATA, 16, 0, 0);
    desc(f, DESC, 0, ITABLE, 16, VRING_DESC_F_INDIRECT, 0);
    offer(f, 0);
    assert_int_equal(pop_err(f), VQ_ERR_INDIRECT);
}

/* A driver that lies about its ring breaks the queue for good: NEEDS_RESET. */
static void test_corrupt_ring(void **state)
{
    struct fx *f = *state;
    uint16_t idx = QSZ + 1, bad = QSZ;

    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &idx, 2), 0); /* more than it can hold */
    assert_int_equal(vq_pop(&f->q, &f->c), -EIO);
    assert_true(f->q.broken);
    idx = 0;
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &idx, 2), 0);
    assert_int_equal(vq_pop(&f->q, &f->c), -EIO); /* stays broken until reset */

    assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, true), 0);
    f->avail_idx = 0;
    offer(f, 0);
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 4, &bad, 2), 0); /* head past the table */
    assert_int_equal(vq_pop(&f->q, &f->c), -EIO);
    assert_true(f->q.broken);
}

/*
 * A driver that offers heads the device still holds (the same head over and
 * over) would let the device hold more chains than the queue has: found by
 * review, a receive device then overran what it saves of its held chains.
 * Once as many chains are out as the queue holds, one more breaks the ring.
 */
static void test_heads_offered_twice(void **state)
{
    struct fx *f = *state;

    desc(f, DESC, 0, DATA, 64, VRING_DESC_F_WRITE, 0);
    for (int i = 0; i < QSZ; i++)
        offer(f, 0);
    for (int i = 0; i < QSZ; i++)
        assert_int_equal(vq_pop(&f->q, &f->c), 1);
    assert_false(f->q.broken);
    offer(f, 0);
    assert_int_equal(vq_pop(&f->q, &f->c), -EIO);
    assert_true(f->q.broken);

    /* Given back, a head may come again as often as the driver likes. */
    assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, true), 0);
    f->avail_idx = 0;
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &f->avail_idx, 2), 0);
    for (int i = 0; i < 3 * QSZ; i++) {
        offer(f, 0);
        assert_int_equal(vq_pop(&f->q, &f->c), 1);
        vq_add_used(&f->q, 0, 0);
    }
    assert_false(f->q.broken);
}

/*
 * Rings that share bytes are refused: with the used ring over the avail
 * ring, the device's own flags write moved avail->idx and its drain loops
 * never ended. Rings packed edge to edge are fine, with or without the event
 * fields (which exist only with EVENT_IDX).
 */
static void test_overlapping_rings(void **state)
{
    struct fx *f = *state;
    struct vq q;

    /* The case a fuzzer found: avail at 0x2, used at 0x4, no EVENT_IDX. */
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, 0x2, 0x4, false, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, AVAIL, AVAIL + 4, false, false), -EINVAL);
    /* The used ring over the table, the table over the avail ring, and all three at one place. */
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, AVAIL, DESC + 16 * QSZ - 4, false, false),
                     -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, DESC + 16 * QSZ - 2, USED, false, false),
                     -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, DESC, DESC, false, false), -EINVAL);
    /* The avail ring's used_event field under the used ring: only with EVENT_IDX a clash. */
    uint64_t packed = AVAIL + 4 + 2 * QSZ;
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, AVAIL, packed, true, false), -EINVAL);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, AVAIL, packed, false, false), 0);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, AVAIL, packed + 4, true, false), 0);
    assert_int_equal(vq_setup(&q, f->m, QSZ, 256, DESC, DESC + 16 * QSZ, USED, false, false), 0);
}

struct drain_count {
    unsigned taken, room;
};

static bool count_take(void *arg, struct vq_chain *c)
{
    struct drain_count *d = arg;

    (void)c;
    return ++d->taken < d->room;
}

/*
 * vq_drain() ends whatever the ring says. Here the rings overlap as
 * vq_setup() no longer allows (the used flags on avail->idx), so every
 * notification change makes the ring look non-empty again: the old
 * "disable; drain; while (enable says more)" loop never ended on it.
 */
static void test_drain_ends(void **state)
{
    struct fx *f = *state;
    struct drain_count d = {.room = 1000};

    desc(f, DESC, 0, DATA, 64, VRING_DESC_F_WRITE, 0);
    /* avail at an address 2 past 4-aligned (it needs only 2), used right after its flags. */
    f->q.avail = rvm_mem_hva(f->m, AVAIL + 2, vq_avail_bytes(QSZ));
    f->q.avail_gpa = AVAIL + 2;
    f->q.used = rvm_mem_hva(f->m, AVAIL + 4, vq_used_bytes(QSZ));
    f->q.used_gpa = AVAIL + 4;
    assert_int_equal(vq_drain(&f->q, &f->c, false, count_take, &d), 0);
    assert_true(d.taken <= 2);
    assert_int_equal(f->q.used->flags, 0); /* notifications left on */

    /* A sound ring: everything offered is taken; out of room, the rest waits. */
    assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, true), 0);
    f->avail_idx = 0;
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &f->avail_idx, 2), 0);
    for (int i = 0; i < 5; i++)
        offer(f, 0);
    d = (struct drain_count){.room = 3};
    assert_int_equal(vq_drain(&f->q, &f->c, false, count_take, &d), 0);
    assert_int_equal(d.taken, 3);
    assert_int_equal(f->q.used->flags, VRING_USED_F_NO_NOTIFY); /* completions bring it back */
    d = (struct drain_count){.room = 100};
    assert_int_equal(vq_drain(&f->q, &f->c, false, count_take, &d), 0);
    assert_int_equal(d.taken, 2);
    assert_int_equal(f->q.used->flags, 0);
    /* Quiet (a polling device): notifications stay off. */
    offer(f, 0);
    assert_int_equal(vq_drain(&f->q, &f->c, true, count_take, &d), 0);
    assert_int_equal(d.taken, 3);
    assert_int_equal(f->q.used->flags, VRING_USED_F_NO_NOTIFY);
    /* A corrupt ring: -EIO. */
    f->avail_idx += 100;
    assert_int_equal(rvm_mem_write(f->m, AVAIL + 2, &f->avail_idx, 2), 0);
    assert_int_equal(vq_drain(&f->q, &f->c, false, count_take, &d), -EIO);
    assert_true(f->q.broken);
}

/* EVENT_IDX: interrupts only when the driver's used_event is crossed, across the wrap. */
static void test_event_idx_wraparound(void **state)
{
    struct fx *f = *state;
    uint16_t ev;

    assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, true, true), 0);
    f->q.used_idx = f->q.signalled_used = 65530;
    f->q.signalled_valid = true;
    ev = 65532; /* "interrupt me once entry 65532 is used" */
    rvm_mem_write(f->m, AVAIL + 4 + 2 * QSZ, &ev, 2);
    for (int i = 0; i < 3; i++)
        vq_add_used(&f->q, 0, 0);
    assert_true(vq_publish_used(&f->q)); /* 65530 -> 65533 crosses 65532 */
    ev = 65535;
    rvm_mem_write(f->m, AVAIL + 4 + 2 * QSZ, &ev, 2);
    for (int i = 0; i < 4; i++)
        vq_add_used(&f->q, 0, 0);
    assert_int_equal(f->q.used_idx, 1);  /* wrapped */
    assert_true(vq_publish_used(&f->q)); /* 65533 -> 1 crosses 65535 */
    ev = 5;
    rvm_mem_write(f->m, AVAIL + 4 + 2 * QSZ, &ev, 2);
    vq_add_used(&f->q, 0, 0);
    assert_false(vq_publish_used(&f->q)); /* 1 -> 2 does not reach 5 */
    assert_int_equal(used_idx(f), 2);

    /* avail_event: enabling notifications publishes where the device is. */
    f->avail_idx = 0;
    f->q.last_avail = 0;
    assert_false(vq_set_notify(&f->q, true));
    offer(f, 0);
    assert_true(vq_set_notify(&f->q, true)); /* arrived meanwhile: go on draining */
    rvm_mem_read(f->m, USED + 4 + 8 * QSZ, &ev, 2);
    assert_int_equal(ev, 0);
}

static void test_no_event_idx_flags(void **state)
{
    struct fx *f = *state;
    uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;

    vq_add_used(&f->q, 0, 0);
    assert_true(vq_publish_used(&f->q));
    rvm_mem_write(f->m, AVAIL, &flags, 2);
    vq_add_used(&f->q, 0, 0);
    assert_false(vq_publish_used(&f->q)); /* the driver said no interrupts */
    assert_false(vq_set_notify(&f->q, false));
    rvm_mem_read(f->m, USED, &flags, 2);
    assert_int_equal(flags, VRING_USED_F_NO_NOTIFY);
    assert_false(vq_set_notify(&f->q, true));
    rvm_mem_read(f->m, USED, &flags, 2);
    assert_int_equal(flags, 0);
}

/* Random rings: vq_pop never crashes, never loops, and every buffer it hands out is RAM. */
static void test_fuzz(void **state)
{
    struct fx *f = *state;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int broken = 0, good = 0;

    for (int round = 0; round < 20000; round++) {
        uint8_t junk[16 * QSZ + 64];

        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        /* Mostly plausible addresses and lengths, sometimes anything. */
        for (int i = 0; i < QSZ; i++) {
            struct vring_desc *d = (struct vring_desc *)junk + i;
            if (junk[16 * QSZ + i] & 1) {
                d->addr = DATA + (d->addr % (MEM - DATA));
                d->len %= 8192;
                d->next %= QSZ + 1;
            }
        }
        rvm_mem_write(f->m, DESC, junk, 16 * QSZ);
        rvm_mem_write(f->m, ITABLE, junk, 16 * QSZ);
        if (round % 64 == 0)
            assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, round & 128, true),
                             0);
        uint16_t head = junk[16 * QSZ + 10] % (QSZ + 1);
        uint16_t idx = (uint16_t)(f->q.last_avail + 1 + (junk[16 * QSZ + 11] == 0 ? 40 : 0));
        rvm_mem_write(f->m, AVAIL + 4 + 2 * (f->q.last_avail % QSZ), &head, 2);
        rvm_mem_write(f->m, AVAIL + 2, &idx, 2);
        int r = vq_pop(&f->q, &f->c);
        if (r < 0) {
            broken++;
            assert_true(f->q.broken);
            assert_int_equal(vq_setup(&f->q, f->m, QSZ, 256, DESC, AVAIL, USED, false, true), 0);
            continue;
        }
        assert_int_equal(r, 1);
        for (int i = 0; i < f->c.nseg; i++)
            assert_ptr_equal(f->seg[i].hva, rvm_mem_hva(f->m, f->seg[i].gpa, f->seg[i].len));
        good += f->c.err == VQ_OK;
        vq_add_used(&f->q, f->c.head, 0);
        vq_publish_used(&f->q);
    }
    assert_true(broken > 0 && good > 0); /* both paths were exercised */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_setup_checks),
        T(test_simple_chain_and_used),
        T(test_chain_at),
        T(test_loop),
        T(test_index_and_addresses),
        T(test_direction_and_segments),
        T(test_indirect),
        T(test_corrupt_ring),
        T(test_heads_offered_twice),
        T(test_overlapping_rings),
        T(test_drain_ends),
        T(test_event_idx_wraparound),
        T(test_no_event_idx_flags),
        T(test_fuzz),
    };
    return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
