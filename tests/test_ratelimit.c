/* SPDX-License-Identifier: MIT */
/* The devices' token buckets (virtio/ratelimit.c), driven with a clock of the test's own. */
#include <errno.h>

#include "../virtio/ratelimit.h"
#include "common/testutil.h"

#define MS 1000000ULL
#define S  1000000000ULL

/* Runs requests of `bytes` back to back for `span` ns: how many went. */
static uint64_t run_for(struct rate_limit *l, uint64_t bytes, uint64_t start, uint64_t span)
{
    uint64_t now = start, n = 0;

    while (now < start + span) {
        if (rate_limit_take(l, bytes, now))
            n++;
        else
            now += rate_limit_wait_ns(l, bytes, now);
    }
    return n;
}

static void test_no_limit(void **state)
{
    struct rate_limit l;
    (void)state;

    rate_limit_init(&l, NULL, 0);
    assert_false(rate_limit_on(&l));
    for (int i = 0; i < 1000; i++)
        assert_true(rate_limit_take(&l, 1 << 20, 0));
}

/* ops_per_s holds over a long run; the burst goes at once, then the rate. */
static void test_ops_rate(void **state)
{
    struct rvm_rate_limit c = {.ops_per_s = 1000, .ops_burst = 50};
    struct rate_limit l;
    uint64_t now = 5 * S, n = 0;
    (void)state;

    rate_limit_init(&l, &c, now);
    assert_true(rate_limit_on(&l));
    while (rate_limit_take(&l, 4096, now))
        n++;
    assert_int_equal(n, 50); /* the burst */
    uint64_t w = rate_limit_wait_ns(&l, 4096, now);
    assert_true(w > 0 && w <= MS); /* one op's worth at 1000/s */
    n = run_for(&l, 4096, now, 10 * S);
    assert_in_range(n, 9990, 10010); /* 1000 a second */
}

/* bytes_per_s: the data rate holds for any request size, large ones included. */
static void test_bytes_rate(void **state)
{
    struct rvm_rate_limit c = {.bytes_per_s = 100 << 20}; /* 100 MiB/s, burst 10 MiB */
    struct rate_limit l;
    (void)state;

    rate_limit_init(&l, &c, 0);
    uint64_t n = run_for(&l, 4096, 0, 10 * S);
    uint64_t bytes = n * 4096;
    assert_in_range(bytes, 1000ULL << 20, (1010ULL << 20) + (10 << 20));
    /* 1 MiB requests on a bucket of 64 KiB: each goes once the bucket is out of debt. */
    c = (struct rvm_rate_limit){.bytes_per_s = 1 << 20, .bytes_burst = 64 << 10};
    rate_limit_init(&l, &c, 0);
    n = run_for(&l, 1 << 20, 0, 20 * S);
    assert_in_range(n, 19, 21);
}

/* Both buckets: the tighter one decides. */
static void test_both(void **state)
{
    struct rvm_rate_limit c = {.ops_per_s = 10000, .bytes_per_s = 1 << 20};
    struct rate_limit l;
    (void)state;

    rate_limit_init(&l, &c, 0);
    uint64_t n = run_for(&l, 4096, 0, 10 * S); /* bytes: 256 ops/s */
    assert_in_range(n, 2550, 2600);
    rate_limit_init(&l, &c, 0);
    n = run_for(&l, 16, 0, 10 * S); /* ops: 10000/s */
    assert_in_range(n, 99990, 101010);
}

/* An idle bucket fills to its burst and no further; time going backwards adds nothing. */
static void test_idle_refill(void **state)
{
    struct rvm_rate_limit c = {.ops_per_s = 100, .ops_burst = 5};
    struct rate_limit l;
    uint64_t n = 0;
    (void)state;

    rate_limit_init(&l, &c, 0);
    while (rate_limit_take(&l, 0, 0))
        n++;
    assert_int_equal(n, 5);
    n = 0;
    while (rate_limit_take(&l, 0, 3600 * S)) /* an hour later: the burst, no more */
        n++;
    assert_int_equal(n, 5);
    assert_false(rate_limit_take(&l, 0, 10 * S)); /* the clock went back */
}

/* Extreme rates neither overflow nor stall. */
static void test_extremes(void **state)
{
    struct rvm_rate_limit c = {.ops_per_s = UINT64_MAX,
                               .bytes_per_s = UINT64_MAX,
                               .ops_burst = UINT64_MAX,
                               .bytes_burst = UINT64_MAX};
    struct rate_limit l;
    (void)state;

    rate_limit_init(&l, &c, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(rate_limit_take(&l, UINT64_MAX, (uint64_t)i * S * 1000));
    c = (struct rvm_rate_limit){.ops_per_s = 1};
    rate_limit_init(&l, &c, 0);
    assert_true(rate_limit_take(&l, 0, 0));
    assert_false(rate_limit_take(&l, 0, 0));
    assert_in_range(rate_limit_wait_ns(&l, 0, 0), 1, S);
    assert_true(rate_limit_take(&l, 0, UINT64_MAX - 1));
    assert_int_equal(rate_limit_check(&c), 0);
    c = (struct rvm_rate_limit){.bytes_burst = 4096};
    assert_int_equal(rate_limit_check(&c), -EINVAL);
}

/* Charged after the fact (received frames): ready while out of debt, and the rate holds. */
static void test_charge(void **state)
{
    struct rvm_rate_limit c = {.bytes_per_s = 1 << 20, .ops_per_s = 100000};
    struct rate_limit l;
    uint64_t now = 0, bytes = 0;
    (void)state;

    rate_limit_init(&l, &c, 0);
    assert_true(rate_limit_ready(&l, 0));
    rate_limit_charge(&l, 1 << 20, 0); /* a burst's worth and more: in debt */
    assert_false(rate_limit_ready(&l, 0));
    uint64_t w = rate_limit_ready_wait_ns(&l, 0);
    assert_in_range(w, 800 * MS, 1000 * MS); /* 1 MiB less the 100 KiB burst, at 1 MiB/s */
    while (now < 10 * S) {
        if (rate_limit_ready(&l, now)) {
            rate_limit_charge(&l, 1500, now);
            bytes += 1500;
        } else {
            now += rate_limit_ready_wait_ns(&l, now);
        }
    }
    assert_in_range(bytes, 9ULL << 20, 10ULL << 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_limit),    cmocka_unit_test(test_ops_rate),
        cmocka_unit_test(test_bytes_rate),  cmocka_unit_test(test_both),
        cmocka_unit_test(test_idle_refill), cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_charge),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
