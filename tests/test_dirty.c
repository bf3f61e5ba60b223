/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking against KVM: the bench guest dirties a known working set
 * (test=mem-dirty / mem-touch) and the collected ranges must cover it, in
 * ring mode and bitmap mode, with full-ring exits, and when the emulated
 * ring-0 code of a software-nested host overruns the ring.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/vm_internal.h"
#include "../guest/abi.h"
#include "../mem/mem_internal.h"
#include "common/testutil.h"

#define PAGE 4096ULL

/* The collected pages, as a bitmap over the first 64 MiB of guest-physical space. */
struct seen {
    unsigned char page[(64 << 20) / 4096];
    uint64_t pages, ranges, last_end;
    int fail_with; /* nonzero: the callback returns it */
    bool ordered;
};

static int on_range(void *opaque, uint64_t gpa, uint64_t len)
{
    struct seen *s = opaque;

    if (s->fail_with)
        return s->fail_with;
    if (gpa < s->last_end || len == 0 || len % PAGE || gpa % PAGE)
        s->ordered = false;
    s->last_end = gpa + len;
    for (uint64_t p = gpa / PAGE; p < (gpa + len) / PAGE && p < sizeof(s->page); p++)
        s->page[p] = 1;
    s->pages += len / PAGE;
    s->ranges++;
    return 0;
}

static void seen_reset(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    s->ordered = true;
}

/* How many of the working set's ws pages are in s. */
static uint64_t ws_seen(const struct seen *s, uint64_t ws)
{
    uint64_t n = 0;

    for (uint64_t i = 0; i < ws; i++)
        n += s->page[BG_MEM_ADDR / PAGE + i];
    return n;
}

static void config(struct rvm_vm_config *c, uint32_t ring, int32_t reap_us)
{
    rvm_vm_config_init(c);
    c->mem.size = 64 << 20;
    c->dirty_ring_entries = ring;
    c->dirty_reap_us = reap_us;
}

/* Runs cmdline to its end with tracking on; returns the result. */
static struct rvm_vm_result run_tracked(struct tvm *t, const char *cmdline,
                                        const struct rvm_vm_config *c)
{
    struct rvm_vm_result res;

    tvm_create(t, cmdline, c);
    assert_int_equal(rvm_vm_dirty_enable(t->vm), 0);
    assert_int_equal(rvm_vm_start(t->vm), 0);
    assert_int_equal(rvm_vm_wait(t->vm, 120000, &res), 0);
    return res;
}

static void check_working_set(uint32_t ring, enum rvm_dirty_mode mode)
{
    struct rvm_vm_config c;
    struct rvm_dirty_stats st;
    struct rvm_vm_result res;
    struct seen *s = calloc(1, sizeof(*s));
    struct tvm t;

    config(&c, ring, 0);
    res = run_tracked(&t, "test=mem-dirty ws=1024 passes=2", &c);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_non_null(strstr(t.con.buf, "mismatches=0"));
    assert_int_equal(rvm_vm_dirty_mode(t.vm), mode);

    seen_reset(s);
    assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, &st), 0);
    assert_true(s->ordered);
    assert_int_equal(ws_seen(s, 1024), 1024);
    assert_true(s->pages >= 1024 && s->pages < 1024 + 256); /* plus stack, state, tables */
    assert_int_equal(st.pages, s->pages);
    assert_int_equal(st.ranges, s->ranges);
    assert_true(s->ranges < 64); /* coalesced, not a range a page */
    assert_false(st.overflowed);
    assert_true(s->page[BG_MEM_STATE / PAGE]);
    if (mode == RVM_DIRTY_RING)
        assert_true(st.harvested >= 1024);

    /* A new interval: nothing ran since, so nothing is dirty. */
    seen_reset(s);
    assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, &st), 0);
    assert_int_equal(s->pages, 0);
    tvm_destroy(&t);
    free(s);
}

static void test_ring_sees_guest_writes(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    check_working_set(4096, RVM_DIRTY_RING);
}

static void test_bitmap_sees_guest_writes(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    check_working_set(0, RVM_DIRTY_BITMAP);
}

/* Device writes (the VMM-side log) are merged; a failed consumer loses nothing. */
static void test_device_writes_and_put_back(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct seen *s = calloc(1, sizeof(*s));
    struct tvm t;

    for (int ring = 0; ring < 2; ring++) {
        config(&c, ring ? 1024 : 0, 0);
        tvm_create(&t, "test=pio n=1", &c);
        assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, NULL), -EINVAL); /* off */
        assert_int_equal(rvm_vm_dirty_disable(t.vm), -EINVAL);
        assert_int_equal(rvm_vm_dirty_enable(t.vm), 0);
        assert_int_equal(rvm_vm_dirty_enable(t.vm), -EALREADY);
        mem_mark_dirty(rvm_vm_mem(t.vm), 0x300000, 3 * PAGE); /* three pages */
        mem_mark_dirty(rvm_vm_mem(t.vm), 0x500010, 1);

        seen_reset(s);
        s->fail_with = -EIO;
        assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, NULL), -EIO);
        seen_reset(s); /* put back: the next collection has them again */
        assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, NULL), 0);
        assert_int_equal(s->pages, 4);
        assert_int_equal(s->ranges, 2);
        assert_true(s->page[0x300] && s->page[0x301] && s->page[0x302] && s->page[0x500]);

        assert_int_equal(rvm_vm_dirty_disable(t.vm), 0);
        assert_int_equal(rvm_vm_dirty_mode(t.vm), RVM_DIRTY_OFF);
        tvm_destroy(&t);
    }
    free(s);
}

/* Collections while the guest runs: each interval sees the pages written in it. */
static void test_collect_while_running(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct rvm_vm_result res;
    struct seen *s = calloc(1, sizeof(*s));
    struct tvm t;

    config(&c, 4096, 0);
    tvm_create(&t, "test=mem-dirty ws=512 passes=0 gap=20000", &c);
    assert_int_equal(rvm_vm_dirty_enable(t.vm), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    for (int round = 0; round < 3; round++) {
        volatile uint64_t *gst = rvm_mem_hva(rvm_vm_mem(t.vm), BG_MEM_STATE, PAGE);
        uint64_t done = gst[BG_MEM_ST_PASSES_DONE];

        /* Wait for a whole pass after this collection's start. */
        seen_reset(s);
        assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, NULL), 0);
        seen_reset(s);
        for (int i = 0; i < 20000 && gst[BG_MEM_ST_PASSES_DONE] < done + 2; i++)
            sleep_ms(1);
        assert_true(gst[BG_MEM_ST_PASSES_DONE] >= done + 2);
        assert_int_equal(rvm_vm_dirty_collect(t.vm, on_range, s, NULL), 0);
        assert_int_equal(ws_seen(s, 512), 512);
    }
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    assert_int_equal(rvm_vm_wait(t.vm, 10000, &res), 0);
    assert_non_null(strstr(t.con.buf, "START"));
    tvm_destroy(&t);
    free(s);
}

/* A 1024-entry ring, no reaper: cmdline runs to its end; then the collection into s. */
static void run_small_ring(struct tvm *t, const char *cmdline, struct seen *s,
                           struct rvm_dirty_stats *st)
{
    struct rvm_vm_config c;
    struct rvm_vm_result res;

    config(&c, 1024, -1);
    res = run_tracked(t, cmdline, &c);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    seen_reset(s);
    assert_int_equal(rvm_vm_dirty_collect(t->vm, on_range, s, st), 0);
}

/* No reaper and a small ring: the vCPU fills it, harvests on the full exit, goes on. */
static void test_ring_full_exits(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_dirty_stats st;
    struct seen *s = calloc(1, sizeof(*s));
    struct tvm t;

    run_small_ring(&t, "test=mem-dirty ws=4096 passes=1", s, &st);
    assert_true(st.ring_full_exits >= 3);
    assert_int_equal(ws_seen(s, 4096), 4096);
    tvm_destroy(&t);
    free(s);
}

/*
 * On software-nested hosts, ring-0 code emulated in batches writes past a
 * ring's end (on hardware the soft limit holds and this run never
 * overflows). No hang, the guest goes on, and no dirty page goes
 * unreported: the pages are all there, or the collection is all of RAM.
 */
static void test_ring_overrun_at_cpl0(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_dirty_stats st;
    struct seen *s = calloc(1, sizeof(*s));
    struct tvm t;

    /* The ring is resynchronised, so the guest runs to its end. */
    run_small_ring(&t, "test=mem-touch ws=8192 passes=2 cpl=0", s, &st);
    assert_int_equal(ws_seen(s, 8192), 8192);
    if (st.overflowed) /* entries were lost: everything is reported */
        assert_int_equal(st.pages, rvm_mem_size(rvm_vm_mem(t.vm)) / PAGE);
    print_message("    %llu full exits, ring %s\n", (unsigned long long)st.ring_full_exits,
                  st.overflowed ? "overran and was resynchronised" : "never overran");
    tvm_destroy(&t);
    free(s);
}

static void test_bad_ring_sizes(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct rvm_hv *hv;
    struct rvm_vm *vm;

    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    config(&c, 3000, 0); /* not a power of two */
    assert_int_equal(rvm_vm_create(hv, &c, &vm), -EINVAL);
    config(&c, 512, 0); /* too small */
    assert_int_equal(rvm_vm_create(hv, &c, &vm), -EINVAL);
    config(&c, 1U << 30, 0); /* beyond KVM's maximum */
    assert_int_equal(rvm_vm_create(hv, &c, &vm), -EINVAL);
    rvm_hv_close(hv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_sees_guest_writes),
        cmocka_unit_test(test_bitmap_sees_guest_writes),
        cmocka_unit_test(test_device_writes_and_put_back),
        cmocka_unit_test(test_collect_while_running),
        cmocka_unit_test(test_ring_full_exits),
        cmocka_unit_test(test_ring_overrun_at_cpl0),
        cmocka_unit_test(test_bad_ring_sizes),
    };
    return cmocka_run_group_tests_name("dirty", tests, NULL, NULL);
}
