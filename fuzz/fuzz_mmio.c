/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the virtio-mmio transport (virtio/mmio.c and
 * mmio_snap.c, the real code, made with virtio_mmio_create() over guest
 * RAM) driven by a hostile driver: a sequence of register and config-space
 * accesses of any offset and size, and optionally a saved transport state
 * to load first (the snapshot's transport record). The device behind it is
 * a stand-in that checks what the transport hands it: config accesses
 * inside its config space, activation only with queues that are set up,
 * inside RAM and apart, never twice without a reset in between.
 *
 * Input: [0] bit 0: load a state first (then sizeof(struct mmio_state)
 * bytes follow); bit 1: EVENT_IDX and INDIRECT offered. Then accesses of
 * 7 bytes: [op: bit 0 write, bits 1-2 size 1/2/4/8] [offset, 2 bytes]
 * [value, 4 bytes]. Guest RAM is zeroed and the driver's rings are
 * whatever the registers say.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_ring.h>

#include <ringvm/mem.h>

#include "../virtio/mmio.h"
#include "check.h"

#define RAM     (64u << 10)
#define NQ      3
#define CFG_LEN 24

struct fake {
    uint8_t cfg[CFG_LEN];
    bool active;
    unsigned activations;
    unsigned stuck;  /* bounded resets still to refuse (-ETIMEDOUT) */
    unsigned resets; /* done */
};

static struct rvm_mem *mem;

static void cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct fake *f = dev;

    CHECK(off < CFG_LEN && len <= CFG_LEN - off && len <= 8);
    memcpy(buf, f->cfg + off, len);
}

static void cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
    struct fake *f = dev;

    CHECK(off < CFG_LEN && len <= CFG_LEN - off && len <= 8);
    memcpy(f->cfg + off, buf, len);
}

static bool apart(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a + alen <= b || b + blen <= a;
}

static int activate(void *dev, struct vq *q, uint64_t features)
{
    struct fake *f = dev;

    CHECK(!f->active);
    CHECK(features & (1ULL << 32)); /* VERSION_1: a modern driver only */
    for (int i = 0; i < NQ; i++) {
        if (!q[i].size)
            continue;
        CHECK(q[i].size <= 256 && !(q[i].size & (q[i].size - 1)));
        uint64_t d = vq_desc_bytes(q[i].size), a = vq_avail_bytes(q[i].size) - 2,
                 u = vq_used_bytes(q[i].size) - 2;
        CHECK(q[i].desc_gpa + d <= RAM && q[i].avail_gpa + a <= RAM && q[i].used_gpa + u <= RAM);
        CHECK(apart(q[i].desc_gpa, d, q[i].avail_gpa, a) &&
              apart(q[i].desc_gpa, d, q[i].used_gpa, u) &&
              apart(q[i].avail_gpa, a, q[i].used_gpa, u));
    }
    f->active = true;
    f->activations++;
    return 0;
}

/* A backend that holds the first f->stuck bounded resets past their bound. */
static int reset(void *dev, uint64_t timeout_ns)
{
    struct fake *f = dev;

    CHECK(f->active);
    if (f->stuck && timeout_ns != UINT64_MAX) {
        f->stuck--;
        return -ETIMEDOUT;
    }
    f->active = false;
    f->resets++;
    return 0;
}

static int quiesce(void *dev)
{
    CHECK(((struct fake *)dev)->active);
    return 0;
}

static void resume(void *dev)
{
    CHECK(((struct fake *)dev)->active);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fake f = {.active = false, .stuck = size ? (data[0] >> 2) & 7 : 0};
    struct virtio_mmio *t;

    if (!mem) {
        struct rvm_mem_config mc = {.size = RAM, .backing = RVM_MEM_ANON, .numa_node = -1};
        if (rvm_mem_create(NULL, &mc, &mem) < 0)
            abort();
    }
    if (size < 1)
        return 0;
    struct virtio_device_ops ops = {
        .device_id = 2,
        .features = (data[0] & 2)
                        ? (1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC)
                        : 0,
        .num_queues = NQ,
        .queue_max = 256,
        .config_size = CFG_LEN,
        .config_read = cfg_read,
        .config_write = cfg_write,
        .activate = activate,
        .reset = reset,
        .quiesce = quiesce,
        .resume = resume,
    };
    CHECK(virtio_mmio_create(mem, &ops, &f, &t) == 0);
    size_t off = 1;
    if ((data[0] & 1) && size - off >= sizeof(struct mmio_state)) {
        struct mmio_state s;
        memcpy(&s, data + off, sizeof(s));
        off += sizeof(s);
        int r = virtio_mmio_load(t, &s);
        CHECK(r == 0 || r == -EBADMSG || r == -EINVAL || r == -EIO);
        if (r == 0) { /* what was loaded saves back as it was given */
            struct mmio_state back;
            virtio_mmio_save(t, &back);
            CHECK(back.status == s.status && back.driver_features == s.driver_features);
            virtio_mmio_quiesce(t);
            virtio_mmio_resume(t);
        }
    }
    for (; size - off >= 7; off += 7) {
        const uint8_t *a = data + off;
        bool write = a[0] & 1;
        uint32_t len = 1u << ((a[0] >> 1) & 3);
        uint64_t reg = (uint64_t)(a[1] | a[2] << 8) % 0x240, v = 0;
        memcpy(&v, a + 3, 4);
        uint32_t before = virtio_mmio_status(t);
        unsigned resets = f.resets;
        int r = virtio_mmio_access(t, reg, len, write, &v);
        CHECK(r == 0 || r == -EINVAL);
        if (!write && r < 0)
            CHECK(v == 0);
        uint32_t after = virtio_mmio_status(t);
        /* Status bits are only added, until the driver writes 0 (or a pending reset ends). */
        CHECK((before & ~after) == 0 || (write && reg == 0x70 && (uint32_t)v == 0) ||
              f.resets != resets);
    }
    virtio_mmio_destroy(t);
    CHECK(!f.active);
    return 0;
}
