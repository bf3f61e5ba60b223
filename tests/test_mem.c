/* SPDX-License-Identifier: MIT */
/* Unit: guest memory layout, bounds and backings (no KVM). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/testutil.h"

static struct rvm_mem *make(uint64_t size, enum rvm_mem_backing b)
{
    struct rvm_mem_config c = {.size = size, .backing = b, .numa_node = -1};
    struct rvm_mem *m = NULL;

    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0);
    return m;
}

static void test_read_write_bounds(void **state)
{
    struct rvm_mem *m = make(16 << 20, RVM_MEM_ANON);
    char buf[16] = "hello, guest";
    char back[16];
    (void)state;

    assert_int_equal(rvm_mem_size(m), 16 << 20);
    assert_int_equal(rvm_mem_write(m, 0x1000, buf, sizeof(buf)), 0);
    assert_int_equal(rvm_mem_read(m, 0x1000, back, sizeof(back)), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    /* The last bytes are reachable, one past is not. */
    assert_int_equal(rvm_mem_write(m, (16 << 20) - 16, buf, 16), 0);
    assert_int_equal(rvm_mem_write(m, (16 << 20) - 15, buf, 16), -EFAULT);
    assert_int_equal(rvm_mem_read(m, 16 << 20, back, 1), -EFAULT);
    /* Overflowing ranges are refused, not wrapped. */
    assert_int_equal(rvm_mem_read(m, UINT64_MAX - 4, back, 16), -EFAULT);
    assert_null(rvm_mem_hva(m, 8, UINT64_MAX));
    assert_null(rvm_mem_hva(m, UINT64_MAX, 2));
    /* A refused write changes nothing. */
    memset(back, 0, sizeof(back));
    assert_int_equal(rvm_mem_read(m, (16 << 20) - 16, back, 16), 0);
    assert_memory_equal(back, buf, 16);
    assert_ptr_equal((char *)rvm_mem_hva(m, 0x1000, 16), (char *)rvm_mem_hva(m, 0, 1) + 0x1000);
    rvm_mem_destroy(m);
}

static void test_bad_sizes(void **state)
{
    struct rvm_mem_config c = {.size = 0, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_mem *m = NULL;
    (void)state;

    assert_int_equal(rvm_mem_create(NULL, &c, &m), -EINVAL);
    c.size = 4096 + 1;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), -EINVAL);
    c.size = UINT64_MAX - 4095; /* page-aligned, but size + THP alignment would wrap */
    c.backing = RVM_MEM_THP;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), -EINVAL);
    c.size = RVM_MEM_MAX_SIZE + 4096;
    c.backing = RVM_MEM_ANON;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), -EINVAL);
    c.size = 3ULL << 20; /* not a 2 MiB multiple */
    c.backing = RVM_MEM_HUGE_2M;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), -EINVAL);
    assert_null(m);
}

/* Above 3 GiB the rest of RAM moves to 4 GiB, leaving the 32-bit hole unbacked. */
static void test_split_above_low_limit(void **state)
{
    struct rvm_mem *m = make(4ULL << 30, RVM_MEM_ANON); /* NORESERVE: costs nothing untouched */
    const struct rvm_mem_region *lo, *hi;
    uint32_t v = 0xdeadbeef, back = 0;
    (void)state;

    assert_int_equal(rvm_mem_region_count(m), 2);
    lo = rvm_mem_region(m, 0);
    hi = rvm_mem_region(m, 1);
    assert_int_equal(lo->gpa, 0);
    assert_int_equal(lo->size, RVM_MEM_LOW_LIMIT);
    assert_int_equal(hi->gpa, RVM_MEM_HIGH_BASE);
    assert_int_equal(hi->size, (4ULL << 30) - RVM_MEM_LOW_LIMIT);
    assert_null(rvm_mem_region(m, 2));
    assert_null(rvm_mem_hva(m, RVM_MEM_LOW_LIMIT, 4));     /* the hole */
    assert_null(rvm_mem_hva(m, RVM_MEM_LOW_LIMIT - 2, 4)); /* straddles the end of low RAM */
    assert_null(rvm_mem_hva(m, RVM_MEM_HIGH_BASE - 2, 4)); /* straddles into high RAM */
    assert_int_equal(rvm_mem_write(m, RVM_MEM_HIGH_BASE + 0x10, &v, 4), 0);
    assert_int_equal(rvm_mem_read(m, RVM_MEM_HIGH_BASE + 0x10, &back, 4), 0);
    assert_int_equal(back, v);
    assert_int_equal(rvm_mem_read(m, RVM_MEM_HIGH_BASE + hi->size - 2, &back, 4), -EFAULT);
    rvm_mem_destroy(m);
}

static void test_prefault_and_resident(void **state)
{
    struct rvm_mem_config c = {.size = 8 << 20, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_mem *m = make(8 << 20, RVM_MEM_ANON);
    (void)state;

    assert_true(rvm_mem_resident_bytes(m) < (1 << 20));
    memset(rvm_mem_hva(m, 0, 1 << 20), 1, 1 << 20);
    assert_true(rvm_mem_resident_bytes(m) >= (1 << 20));
    rvm_mem_destroy(m);

    c.prefault = true;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0);
    assert_int_equal(rvm_mem_resident_bytes(m), 8 << 20);
    rvm_mem_destroy(m);
}

static void test_thp_aligned(void **state)
{
    struct rvm_mem *m = make(8 << 20, RVM_MEM_THP);
    (void)state;

    assert_int_equal((uintptr_t)rvm_mem_hva(m, 0, 1) % (2 << 20), 0);
    assert_int_equal(rvm_mem_write(m, (8 << 20) - 1, "x", 1), 0);
    rvm_mem_destroy(m);
}

static void test_numa_nodes(void **state)
{
    struct rvm_mem_config c = {.size = 4 << 20, .backing = RVM_MEM_ANON, .numa_node = 0};
    struct rvm_mem *m = NULL;
    (void)state;

    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0); /* every host has node 0 */
    rvm_mem_destroy(m);
    c.numa_node = 200;
    assert_int_equal(rvm_mem_create(NULL, &c, &m), -ENODEV);
}

/* Asking for more hugepages than the pool has fails now, with a log line, not SIGBUS later. */
static void test_hugepage_pool_short(void **state)
{
    struct logbuf log = {.count = 0};
    struct rvm_hv_config hc = {.log = log_to_buf, .log_opaque = &log, .log_level = RVM_LOG_ERROR};
    struct rvm_hv_caps caps;
    struct rvm_hv *hv = NULL;
    uint64_t nfree = 0;
    (void)state;

    SKIP_WITHOUT_KVM(); /* needs a hypervisor handle for its log */
    assert_int_equal(rvm_hv_open(&hc, &hv), 0);
    assert_int_equal(rvm_hv_caps(hv, &caps), 0);
    for (unsigned i = 0; i < caps.n_hugepage_pools; i++)
        if (caps.hugepages[i].page_size == (2 << 20))
            nfree = caps.hugepages[i].free;
    struct rvm_mem_config c = {
        .size = (nfree + 1) * (2 << 20), .backing = RVM_MEM_HUGE_2M, .numa_node = -1};
    struct rvm_mem *m = NULL;
    assert_int_equal(rvm_mem_create(hv, &c, &m), -ENOMEM);
    assert_null(m);
    assert_non_null(strstr(log.last, "hugepage pool short"));
    rvm_hv_close(hv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write_bounds),     cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_split_above_low_limit), cmocka_unit_test(test_prefault_and_resident),
        cmocka_unit_test(test_thp_aligned),           cmocka_unit_test(test_numa_nodes),
        cmocka_unit_test(test_hugepage_pool_short),
    };
    return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
