/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport driven register by register as a guest driver
 * would (through the VM's MMIO bus), with a test device behind it. Needs a
 * KVM VM for the ioeventfds and the irqfd.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "../core/vm_internal.h"
#include "../virtio/mmio.h"
#include "common/testutil.h"

#define BASE   0xd0100000ULL
#define GSI    5
#define FEAT_A (1ULL << 3)
#define FEAT_B (1ULL << VIRTIO_RING_F_EVENT_IDX)

struct testdev {
    uint8_t config[12];
    int activations, resets;
    int stuck;          /* bounded resets to refuse: in-flight I/O that does not complete */
    uint64_t last_wait; /* the bound the last reset was given */
    struct vq *queues;
    uint64_t features;
    uint8_t last_write[8];
};

static void cfg_read(void *d, uint32_t off, void *buf, uint32_t len)
{
    memcpy(buf, ((struct testdev *)d)->config + off, len);
}

static void cfg_write(void *d, uint32_t off, const void *buf, uint32_t len)
{
    memcpy(((struct testdev *)d)->config + off, buf, len);
}

static int activate(void *d, struct vq *queues, uint64_t features)
{
    struct testdev *t = d;

    t->activations++;
    t->queues = queues;
    t->features = features;
    return 0;
}

static int reset(void *d, uint64_t timeout_ns)
{
    struct testdev *t = d;

    t->last_wait = timeout_ns;
    if (t->stuck && timeout_ns != UINT64_MAX) {
        t->stuck--;
        return -ETIMEDOUT;
    }
    t->resets++;
    return 0;
}

static const struct virtio_device_ops ops = {
    .device_id = 42,
    .features = FEAT_A | FEAT_B,
    .num_queues = 2,
    .queue_max = 256,
    .config_size = 12,
    .config_read = cfg_read,
    .config_write = cfg_write,
    .activate = activate,
    .reset = reset,
};

struct fx {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct virtio_mmio *t;
    struct testdev dev;
};

static int setup(void **state)
{
    static struct fx f;

    *state = NULL;
    if (!kvm_usable())
        return 0;
    memset(&f, 0, sizeof(f));
    memcpy(f.dev.config, "ringvm-cfg!", 12);
    if (kvm_fixture_open(&f.hv, &f.vm, 16 << 20) < 0 ||
        virtio_mmio_attach(f.vm, BASE, GSI, &ops, &f.dev, &f.t) < 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f) {
        virtio_mmio_destroy(f->t); /* the device owns its transport */
        kvm_fixture_close(f->hv, f->vm);
    }
    return 0;
}

static uint32_t rd(struct fx *f, uint64_t off)
{
    return mmio_rd32(f->vm, BASE + off);
}

static void wr(struct fx *f, uint64_t off, uint32_t val)
{
    mmio_wr32(f->vm, BASE + off, val);
}

/* The driver's start: reset, ACK, DRIVER, features, FEATURES_OK. Returns the status read back. */
static uint32_t negotiate(struct fx *f, uint64_t features)
{
    wr(f, VIRTIO_MMIO_STATUS, 0);
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    wr(f, VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    return rd(f, VIRTIO_MMIO_STATUS);
}

static void queue(struct fx *f, uint32_t sel, uint32_t num, uint64_t desc, uint64_t avail,
                  uint64_t used)
{
    wr(f, VIRTIO_MMIO_QUEUE_SEL, sel);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, num);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
    wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

#define OK_STATUS                                                                                  \
    (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK)

static void test_identity(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    uint64_t v;
    char cmd[128];

    assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
    assert_int_equal(rd(f, VIRTIO_MMIO_VERSION), 2);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), 42);
    assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
    /* Registers take aligned 32-bit accesses only. */
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE, 2, false, &v), -EIO);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 2, 4, false, &v), -EIO);
    assert_int_equal(virtio_mmio_cmdline(BASE, GSI, cmd, sizeof(cmd)) > 0, 1);
    assert_string_equal(cmd, "virtio_mmio.device=0x200@0xd0100000:5");
    assert_int_equal(virtio_mmio_cmdline(BASE, GSI, cmd, 8), -ENOSPC);
}

static void test_feature_negotiation(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)(FEAT_A | FEAT_B));
    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 (bit 32) */
    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);

    /* Legacy (no VERSION_1) and unoffered bits are refused: FEATURES_OK reads back 0. */
    assert_int_equal(negotiate(f, FEAT_A) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    assert_int_equal(
        negotiate(f, FEAT_A | (1ULL << 32) | (1ULL << 7)) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    assert_int_equal(negotiate(f, FEAT_A | (1ULL << 32)), OK_STATUS);
    /* Features are frozen once FEATURES_OK is set. */
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(FEAT_A | FEAT_B));
    queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 1);
    assert_int_equal(f->dev.features, FEAT_A | (1ULL << 32));
    /* Status bits cannot be taken back except by a reset. */
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void test_queue_setup_and_reset(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    uint64_t n = 0;

    assert_int_equal(negotiate(f, (1ULL << 32) | FEAT_B), OK_STATUS);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 7); /* no such queue */
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    queue(f, 0, 16, 0x10000, 0x11000, 0x12000); /* queue 1 left off */
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, 32); /* ready: its registers are locked */
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 1);
    assert_int_equal(f->dev.queues[0].size, 16);
    assert_int_equal(f->dev.queues[0].used_gpa, 0x12000);
    assert_true(f->dev.queues[0].event_idx);
    assert_int_equal(f->dev.queues[1].size, 0);

    /* A notify through the register reaches the queue's eventfd; bad ones do not. */
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_int_equal(read(virtio_mmio_queue_eventfd(f->t, 0), &n, sizeof(n)), sizeof(n));
    assert_int_equal(n, 1);
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1); /* not ready */
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 9); /* no such queue */
    assert_int_equal(read(virtio_mmio_queue_eventfd(f->t, 1), &n, sizeof(n)), -1);
    assert_int_equal(virtio_mmio_queue_eventfd(f->t, 9), -1);

    /* Reset: the device is stopped and everything is forgotten. */
    wr(f, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(f->dev.resets, 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
}

/* Queues the driver set up wrongly fail the device (NEEDS_RESET), never activate it. */
static void test_bad_queues_need_reset(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
    queue(f, 0, 6, 0x10000, 0x11000, 0x12000); /* not a power of two */
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(f->dev.activations, 0);

    const uint32_t bad[][4] = {
        {512, 0x10000, 0x11000, 0x12000},  /* above QueueNumMax */
        {8, 0x10008, 0x11000, 0x12000},    /* misaligned descriptors */
        {8, 0x10000, 0x11000, 0xfffffff0}, /* used ring outside RAM */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
        queue(f, 0, bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
        assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    }
    assert_int_equal(f->dev.activations, 0);
    /* DRIVER_OK without FEATURES_OK is refused too. */
    wr(f, VIRTIO_MMIO_STATUS, 0);
    wr(f, VIRTIO_MMIO_STATUS,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(f->dev.activations, 0);
}

static void test_config_space(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    uint64_t v = 0;

    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x100, 4, false, &v), 0);
    assert_memory_equal(&v, "ring", 4);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x106, 2, false, &v), 0);
    assert_memory_equal(&v, "-c", 2);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x108, 8, false, &v), -EIO);
    assert_int_equal(v, ~0ULL); /* past the 12 bytes */
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x10c, 1, false, &v), -EIO);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x100, 3, false, &v), -EIO);
    v = 0x4141;
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_MMIO, BASE + 0x10a, 2, true, &v), 0);
    assert_memory_equal(f->dev.config + 10, "AA", 2);
}

static void test_interrupt_status(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_int_equal(virtio_mmio_interrupt(f->t, VIRTIO_MMIO_INT_VRING), 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    /* A device that breaks tells a live driver through a config interrupt. */
    assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
    queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    virtio_mmio_needs_reset(f->t);
    assert_true(virtio_mmio_status(f->t) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
}

/*
 * Defect: a crafted record saying "active" activated the device whatever its
 * saved status (0x23232323, or one without DRIVER_OK); the guest's own
 * bring-up then activated it a second time while it ran (on virtio-blk: two
 * workers, one outliving the device). Every restored status is validated,
 * and an active device is never activated again.
 */
static void test_restored_status_never_activates_twice(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    struct mmio_state good, s;

    assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
    queue(f, 0, 16, 0x10000, 0x11000, 0x12000);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 1);
    virtio_mmio_save(f->t, &good);
    assert_int_equal(good.active, 1);

    const uint32_t bad_status[] = {
        0x23232323, /* unknown bits */
        OK_STATUS,  /* active without DRIVER_OK */
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK,
        0x100 | OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK, /* a bit virtio does not define */
    };
    for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
        s = good;
        s.status = bad_status[i];
        assert_int_equal(virtio_mmio_load(f->t, &s), -EBADMSG);
    }
    s = good; /* DRIVER_OK, not live, no NEEDS_RESET: no real device is like that */
    s.active = 0;
    assert_int_equal(virtio_mmio_load(f->t, &s), -EBADMSG);
    s = good;
    s.active = 2;
    assert_int_equal(virtio_mmio_load(f->t, &s), -EBADMSG);
    s = good;
    s.isr = 0x80;
    assert_int_equal(virtio_mmio_load(f->t, &s), -EBADMSG);
    s = good;
    s.driver_features = 0; /* live without VERSION_1 */
    assert_int_equal(virtio_mmio_load(f->t, &s), -EBADMSG);
    assert_int_equal(f->dev.activations, 1); /* none of them activated it */

    /* The good record: activated once; the guest's DRIVER_OK again changes nothing. */
    assert_int_equal(virtio_mmio_load(f->t, &good), 0);
    assert_int_equal(f->dev.activations, 2);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 2);
    /* A failed device comes back failed, not live. */
    s = good;
    s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    assert_int_equal(virtio_mmio_load(f->t, &s), 0);
    assert_int_equal(f->dev.activations, 2);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/*
 * A reset whose device cannot stop within the bound (a backend that does not
 * answer) holds the vCPU no longer than VIRTIO_RESET_WAIT_NS an access: the
 * status reads back nonzero and the driver's writes are dropped until the
 * device has stopped; then the reset completes, on the access that finds it
 * stopped, and the device can be set up again.
 */
static void test_reset_waits_for_the_device(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
    queue(f, 0, 16, 0x10000, 0x11000, 0x12000);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 1);

    f->dev.stuck = 3; /* the write, and two accesses after it, find it still stopping */
    wr(f, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(f->dev.last_wait, VIRTIO_RESET_WAIT_NS); /* bounded, on a vCPU */
    assert_int_equal(f->dev.resets, 0);
    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE); /* dropped */
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.stuck, 0);
    assert_int_equal(f->dev.resets, 0);
    assert_int_equal(virtio_mmio_quiesce(f->t), -EBUSY); /* no snapshot of a device mid-reset */

    /* Stopped now: the next access completes the reset. */
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(f->dev.resets, 1);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_int_equal(negotiate(f, 1ULL << 32), OK_STATUS);
    queue(f, 0, 16, 0x10000, 0x11000, 0x12000);
    wr(f, VIRTIO_MMIO_STATUS, OK_STATUS | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->dev.activations, 2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity),
        T(test_feature_negotiation),
        T(test_queue_setup_and_reset),
        T(test_bad_queues_need_reset),
        T(test_config_space),
        T(test_interrupt_status),
        T(test_restored_status_never_activates_twice),
        T(test_reset_waits_for_the_device),
    };
    return cmocka_run_group_tests_name("virtio_mmio", tests, NULL, NULL);
}
