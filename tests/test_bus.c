/* SPDX-License-Identifier: MIT */
/* Unit: the I/O bus table (no KVM). */
#include <errno.h>
#include <stdlib.h>

#include "../core/bus.h"
#include "common/testutil.h"

static int fake_read(void *o, uint64_t off, uint32_t size, uint64_t *d)
{
    (void)o, (void)size;
    *d = off;
    return 0;
}
static const struct rvm_io_ops ops = {.read = fake_read};

static int insert(struct rvm_bus *b, uint64_t base, uint64_t len, void *opaque)
{
    struct bus_table *old = NULL;
    int r = bus_insert(b, base, len, &ops, opaque, &old);

    free(old); /* no readers in a unit test */
    return r;
}

static void test_insert_lookup(void **state)
{
    struct rvm_bus b;
    int tag1, tag2;
    (void)state;

    assert_int_equal(bus_init(&b, 0x10000), 0);
    assert_int_equal(insert(&b, 0x3f8, 8, &tag1), 0);
    assert_int_equal(insert(&b, 0xf4, 4, &tag2), 0);
    const struct bus_table *t = bus_current(&b);
    assert_int_equal(t->n, 2);
    assert_true(t->r[0].base < t->r[1].base); /* kept sorted */
    assert_ptr_equal(bus_lookup(t, 0x3f8)->opaque, &tag1);
    assert_ptr_equal(bus_lookup(t, 0x3ff)->opaque, &tag1);
    assert_null(bus_lookup(t, 0x400));
    assert_null(bus_lookup(t, 0x3f7));
    assert_ptr_equal(bus_lookup(t, 0xf7)->opaque, &tag2);
    assert_null(bus_lookup(t, 0xf8));
    assert_ptr_equal(bus_lookup(t, 0xf4)->ops.read, fake_read);
    bus_fini(&b);
}

static void test_overlap_rejected(void **state)
{
    struct rvm_bus b;
    (void)state;

    assert_int_equal(bus_init(&b, 0), 0);
    assert_int_equal(insert(&b, 0x1000, 0x100, NULL), 0);
    assert_int_equal(insert(&b, 0x1000, 0x100, NULL), -EEXIST);  /* same */
    assert_int_equal(insert(&b, 0x0f80, 0x100, NULL), -EEXIST);  /* left overlap */
    assert_int_equal(insert(&b, 0x10ff, 0x10, NULL), -EEXIST);   /* right overlap */
    assert_int_equal(insert(&b, 0x0800, 0x1000, NULL), -EEXIST); /* contains */
    assert_int_equal(insert(&b, 0x1010, 0x10, NULL), -EEXIST);   /* inside */
    assert_int_equal(insert(&b, 0x0f00, 0x100, NULL), 0);        /* adjacent below */
    assert_int_equal(insert(&b, 0x1100, 0x100, NULL), 0);        /* adjacent above */
    assert_int_equal(bus_current(&b)->n, 3);
    bus_fini(&b);
}

static void test_bad_ranges(void **state)
{
    struct rvm_bus b;
    (void)state;

    assert_int_equal(bus_init(&b, 0x10000), 0);
    assert_int_equal(insert(&b, 0x10, 0, NULL), -EINVAL);           /* empty */
    assert_int_equal(insert(&b, 0xfffe, 4, NULL), -EINVAL);         /* past the PIO limit */
    assert_int_equal(insert(&b, UINT64_MAX - 1, 4, NULL), -EINVAL); /* wraps */
    assert_int_equal(insert(&b, 0xfffc, 4, NULL), 0);               /* up to the limit */
    bus_fini(&b);

    assert_int_equal(bus_init(&b, 0), 0);
    assert_int_equal(insert(&b, UINT64_MAX - 0xfff, 0x1000, NULL), -EINVAL); /* end wraps to 0 */
    assert_int_equal(insert(&b, UINT64_MAX - 0xfff, 0xfff, NULL), 0);
    assert_non_null(bus_lookup(bus_current(&b), UINT64_MAX - 1));
    assert_null(bus_lookup(bus_current(&b), UINT64_MAX));
    bus_fini(&b);
}

static void test_remove(void **state)
{
    struct bus_table *old = NULL;
    struct rvm_bus b;
    (void)state;

    assert_int_equal(bus_init(&b, 0), 0);
    assert_int_equal(insert(&b, 0x100, 0x10, NULL), 0);
    assert_int_equal(insert(&b, 0x200, 0x10, NULL), 0);
    assert_int_equal(bus_remove(&b, 0x108, &old), -ENOENT); /* not a base */
    assert_int_equal(bus_remove(&b, 0x100, &old), 0);
    free(old);
    assert_null(bus_lookup(bus_current(&b), 0x100));
    assert_non_null(bus_lookup(bus_current(&b), 0x200));
    assert_int_equal(insert(&b, 0x100, 0x10, NULL), 0); /* the space is free again */
    bus_fini(&b);
}

/* Many ranges inserted in a scrambled order: every address maps to its own range. */
static void test_many_ranges(void **state)
{
    struct rvm_bus b;
    static int tags[512];
    (void)state;

    assert_int_equal(bus_init(&b, 0), 0);
    for (unsigned i = 0; i < 512; i++) {
        unsigned k = (i * 197) % 512; /* 197 is coprime with 512: a permutation */
        assert_int_equal(insert(&b, 0x10000 + k * 0x20, 0x10, &tags[k]), 0);
    }
    const struct bus_table *t = bus_current(&b);
    assert_int_equal(t->n, 512);
    for (unsigned k = 0; k < 512; k++) {
        assert_ptr_equal(bus_lookup(t, 0x10000 + k * 0x20)->opaque, &tags[k]);
        assert_ptr_equal(bus_lookup(t, 0x10000 + k * 0x20 + 0xf)->opaque, &tags[k]);
        assert_null(bus_lookup(t, 0x10000 + k * 0x20 + 0x10)); /* the gaps stay empty */
    }
    bus_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_lookup), cmocka_unit_test(test_overlap_rejected),
        cmocka_unit_test(test_bad_ranges),    cmocka_unit_test(test_remove),
        cmocka_unit_test(test_many_ranges),
    };
    return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
