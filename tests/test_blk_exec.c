/* SPDX-License-Identifier: MIT */
/*
 * Unit: virtio-blk request execution (virtio/blk_exec.c) over a real split
 * virtqueue in guest RAM and a fake backend the test completes by hand (no
 * KVM, no worker). The cases fuzz_blk_exec found are here by name.
 */
#include <errno.h>
#include <string.h>
#include <linux/virtio_blk.h>

#include <ringvm/mem.h>

#include "../mem/mem_internal.h"
#include "../virtio/blk_exec.h"
#include "common/testutil.h"

#define RAM     (256u << 10)
#define QSIZE   16
#define AVAIL   0x1000
#define USED    0x2000
#define HDR     0x3000
#define STATUS  0x3f00
#define DATA    0x10000
#define CAP     2048 /* sectors */
#define MAX_IOS 16

static struct rvm_mem *mem;
static uint8_t *ram;
static struct vq q;
static struct blk_exec e;
static uint16_t ndesc, navail;

/* What the fake backend was given, in order, and what the device told it. */
static struct {
    uint64_t tag;
    struct blk_io io;
} ios[MAX_IOS];
static int nios, refuse, nstops, stop_err;
static uint64_t now = 1000000000;

static int fake_start(void *ctx, uint64_t tag, const struct blk_io *io)
{
    (void)ctx;
    if (refuse)
        return -refuse;
    assert_true(nios < MAX_IOS);
    ios[nios].tag = tag;
    ios[nios++].io = *io;
    return 0;
}

static void fake_wake_after(void *ctx, uint64_t ns)
{
    (void)ctx;
    (void)ns;
}

static void fake_stopped(void *ctx, int err)
{
    (void)ctx;
    nstops++;
    stop_err = err;
}

static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    return now;
}

static const struct blk_exec_ops fake_ops = {
    .start = fake_start,
    .wake_after = fake_wake_after,
    .stopped = fake_stopped,
    .now_ns = fake_now,
};

static void desc(uint64_t gpa, uint32_t len, uint16_t flags)
{
    struct vring_desc d = {.addr = gpa, .len = len, .flags = flags, .next = 0};

    if (flags & VRING_DESC_F_NEXT)
        d.next = (uint16_t)(ndesc + 1);
    memcpy(ram + 16 * ndesc++, &d, sizeof(d));
}

/* A request made available: header, one data buffer of len at DATA + 64 KiB * n, status. */
static uint16_t request(uint32_t type, uint64_t sector, uint32_t len)
{
    uint16_t head = ndesc, n = navail;
    struct virtio_blk_outhdr h = {.type = type, .sector = sector};

    memcpy(ram + HDR + 16 * n, &h, sizeof(h));
    desc(HDR + 16 * n, 16, VRING_DESC_F_NEXT);
    desc(DATA + 0x4000ull * n, len,
         VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0));
    desc(STATUS + n, 1, VRING_DESC_F_WRITE);
    memcpy(ram + AVAIL + 4 + 2 * n, &head, 2);
    navail++;
    memcpy(ram + AVAIL + 2, &navail, 2);
    ram[STATUS + n] = 0xff;
    return head;
}

static bool take(void *arg, struct vq_chain *c)
{
    (void)arg;
    blk_exec_chain(&e, 0, c);
    return blk_exec_room(&e);
}

static void drain(void)
{
    static struct vq_seg seg[BLK_SEG_MAX + 2];
    struct vq_chain c = {.seg = seg, .max_seg = BLK_SEG_MAX + 2};

    if (blk_exec_room(&e))
        assert_int_equal(vq_drain(&q, &c, true, take, NULL), 0);
}

/* The used entry k the device added. */
static struct vring_used_elem used(unsigned k)
{
    struct vring_used_elem el;

    memcpy(&el, ram + USED + 4 + 8 * (k % QSIZE), sizeof(el));
    return el;
}

static int setup(void **state)
{
    (void)state;
    if (!mem) {
        struct rvm_mem_config mc = {.size = RAM, .backing = RVM_MEM_ANON, .numa_node = -1};
        assert_int_equal(rvm_mem_create(NULL, &mc, &mem), 0);
        ram = rvm_mem_hva(mem, 0, RAM);
    }
    memset(ram, 0, RAM);
    mem_dirty_clear(mem);
    ndesc = navail = 0;
    nios = refuse = nstops = stop_err = 0;
    assert_int_equal(vq_setup(&q, mem, QSIZE, QSIZE, 0, AVAIL, USED, false, false), 0);
    e = (struct blk_exec){.ops = &fake_ops,
                          .mem = mem,
                          .vqs = &q,
                          .capacity = CAP,
                          .id = "unit-disk",
                          .dio_mem_align = 512,
                          .dio_off_align = 512};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    blk_exec_fini(&e);
    return 0;
}

/* fuzz_blk_exec: a backend saying it read more than asked gave a used length past the chain. */
static void test_completion_past_the_request_fails(void **state)
{
    (void)state;
    assert_int_equal(blk_exec_init(&e, QSIZE), 0);
    request(VIRTIO_BLK_T_IN, 8, 4096);
    drain();
    assert_int_equal(nios, 1);
    assert_int_equal(ios[0].io.len, 4096);
    blk_exec_complete(&e, ios[0].tag, 4097);
    assert_int_equal(q.used_idx, 1);
    assert_int_equal(ram[STATUS], VIRTIO_BLK_S_IOERR);
    /* No more than the chain's writable bytes (4096 + status); none of the data believed. */
    assert_int_equal(used(0).len, 1);
    /* The buffer may have been written: it is dirty, and so is the status. */
    assert_true(mem_dirty_test(mem, DATA));
    assert_true(mem_dirty_test(mem, STATUS));
    assert_true(blk_exec_idle(&e));
}

/* A short read goes on exactly where it stopped, and only the bytes that landed are dirty. */
static void test_short_read_goes_on(void **state)
{
    (void)state;
    assert_int_equal(blk_exec_init(&e, QSIZE), 0);
    request(VIRTIO_BLK_T_IN, 8, 3 * 4096);
    drain();
    assert_int_equal(nios, 1);
    blk_exec_complete(&e, ios[0].tag, 4096 + 100);
    assert_int_equal(nios, 2);
    assert_int_equal(ios[1].tag, ios[0].tag);
    assert_int_equal(ios[1].io.off, 8 * 512 + 4096 + 100);
    assert_int_equal(ios[1].io.len, 2 * 4096 - 100);
    assert_ptr_equal(ios[1].io.iov[0].iov_base, ram + DATA + 4096 + 100);
    assert_int_equal(q.used_idx, 0); /* not given back yet */
    assert_true(mem_dirty_test(mem, DATA + 4096));
    assert_false(mem_dirty_test(mem, DATA + 2 * 4096)); /* nothing landed there yet */
    blk_exec_complete(&e, ios[1].tag, 2 * 4096 - 100);
    assert_int_equal(q.used_idx, 1);
    assert_int_equal(ram[STATUS], VIRTIO_BLK_S_OK);
    assert_int_equal(used(0).len, 3 * 4096 + 1);
    assert_true(mem_dirty_test(mem, DATA + 2 * 4096));
}

/* A read that moves nothing more fails, with what had landed counted as written. */
static void test_read_that_stops_moving_fails(void **state)
{
    (void)state;
    assert_int_equal(blk_exec_init(&e, QSIZE), 0);
    request(VIRTIO_BLK_T_IN, 0, 4096);
    drain();
    blk_exec_complete(&e, ios[0].tag, 512);
    assert_int_equal(nios, 2);
    blk_exec_complete(&e, ios[1].tag, 0);
    assert_int_equal(ram[STATUS], VIRTIO_BLK_S_IOERR);
    assert_int_equal(used(0).len, 512 + 1);
}

/* On ENOSPC under the policy the device stops, takes nothing new, and a retry goes on. */
static void test_stop_holds_and_retries(void **state)
{
    (void)state;
    e.on_error = RVM_BLK_ERROR_STOP_ENOSPC;
    assert_int_equal(blk_exec_init(&e, QSIZE), 0);
    request(VIRTIO_BLK_T_OUT, 16, 8192);
    drain();
    blk_exec_complete(&e, ios[0].tag, 4096);
    assert_int_equal(nios, 2); /* the rest, from 4096 on */
    blk_exec_complete(&e, ios[1].tag, -ENOSPC);
    assert_int_equal(nstops, 1);
    assert_int_equal(stop_err, -ENOSPC);
    assert_true(e.stopped);
    assert_int_equal(q.used_idx, 0); /* held: the guest sees nothing yet */
    assert_false(blk_exec_room(&e)); /* and nothing new is taken */
    request(VIRTIO_BLK_T_OUT, 32, 4096);
    assert_true(blk_exec_retry(&e));
    assert_int_equal(nios, 3);
    assert_int_equal(ios[2].io.off, 16 * 512 + 4096);
    assert_int_equal(ios[2].io.len, 4096);
    blk_exec_complete(&e, ios[2].tag, 4096);
    assert_int_equal(ram[STATUS], VIRTIO_BLK_S_OK);
    drain(); /* the request that waited in the ring */
    assert_int_equal(nios, 4);
    assert_int_equal(ios[3].io.off, 32 * 512);
    /* Any other error is the guest's to see. */
    blk_exec_complete(&e, ios[3].tag, -EIO);
    assert_int_equal(ram[STATUS + 1], VIRTIO_BLK_S_IOERR);
    assert_int_equal(nstops, 1);
}

/* A backend that refuses to start a request fails that one; the device goes on. */
static void test_refused_start_fails_one(void **state)
{
    (void)state;
    assert_int_equal(blk_exec_init(&e, QSIZE), 0);
    refuse = EAGAIN;
    request(VIRTIO_BLK_T_IN, 0, 4096);
    drain();
    assert_int_equal(ram[STATUS], VIRTIO_BLK_S_IOERR);
    assert_int_equal(q.used_idx, 1);
    refuse = 0;
    request(VIRTIO_BLK_T_IN, 8, 4096);
    drain();
    assert_int_equal(nios, 1);
    assert_true(blk_exec_room(&e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_completion_past_the_request_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_read_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_that_stops_moving_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_holds_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_start_fails_one, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
