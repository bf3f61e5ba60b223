/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the split virtqueue (virtio/virtqueue.c, the real
 * code) against a hostile driver: the input is the rings' placement and
 * features, a program of device operations (pop, chain_at, add_used,
 * publish, notify on/off, drain) interleaved with driver writes, and an
 * image of guest RAM. Every segment handed out must lie inside guest RAM
 * and obey the chain rules; the device may write only its used ring; every
 * call returns (a hang is a libFuzzer timeout). A violation aborts.
 *
 * Input: [0] log2 queue size (mod 9) [1] flags: bit 0 EVENT_IDX, bit 1
 * INDIRECT, [2..7] desc/avail/used gpa / 2 (16 bits each), [8] program
 * length L, then L operation bytes, then the RAM image.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ringvm/mem.h>

#include "../mem/mem_internal.h"
#include "../virtio/virtqueue.h"
#include "check.h"

#define RAM     (64u << 10)
#define MAX_SEG 32

static struct rvm_mem *mem;
static uint8_t *ram, shadow[RAM];

static void check_chain(const struct vq *q, const struct vq_chain *c)
{
    uint64_t in = 0, out = 0;
    bool seen_write = false;

    CHECK(c->head < q->size);
    CHECK(c->nseg <= c->max_seg);
    for (unsigned i = 0; i < c->nseg; i++) {
        const struct vq_seg *s = &c->seg[i];

        CHECK(s->len > 0 && s->gpa < RAM && s->len <= RAM - s->gpa);
        CHECK((uint8_t *)s->hva == ram + s->gpa);
        CHECK(!(seen_write && !s->write));
        seen_write |= s->write;
        if (s->write)
            in += s->len;
        else
            out += s->len;
    }
    if (c->err == VQ_OK)
        CHECK(in == c->in_len && out == c->out_len);
}

struct drain_arg {
    const struct vq *q;
    unsigned taken, room;
};

static bool take(void *arg, struct vq_chain *c)
{
    struct drain_arg *d = arg;

    check_chain(d->q, c);
    return ++d->taken < d->room;
}

/* The driver writes RAM: the shadow follows, so that only device writes differ. */
static void driver_write(uint32_t gpa, const void *p, size_t n)
{
    if (gpa >= RAM || n > RAM - gpa)
        return;
    memcpy(ram + gpa, p, n);
    memcpy(shadow + gpa, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vq q;
    struct vq_seg seg[MAX_SEG];
    struct vq_chain c = {.seg = seg, .max_seg = MAX_SEG};
    uint16_t last_head = 0;

    if (!mem) {
        struct rvm_mem_config mc = {.size = RAM, .backing = RVM_MEM_ANON, .numa_node = -1};
        if (rvm_mem_create(NULL, &mc, &mem) < 0)
            abort();
        ram = rvm_mem_hva(mem, 0, RAM);
        CHECK(ram);
    }
    if (size < 9)
        return 0;
    uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
    bool event_idx = data[1] & 1, indirect = data[1] & 2;
    uint64_t desc = 2ull * (data[2] | data[3] << 8), avail = 2ull * (data[4] | data[5] << 8),
             used = 2ull * (data[6] | data[7] << 8);
    size_t plen = data[8];
    const uint8_t *prog = data + 9;
    if (plen > size - 9)
        plen = size - 9;
    const uint8_t *img = prog + plen;
    size_t ilen = size - 9 - plen;

    memset(ram, 0, RAM);
    memcpy(ram, img, ilen < RAM ? ilen : RAM);
    memcpy(shadow, ram, RAM);
    if (vq_setup(&q, mem, qsize, 256, desc, avail, used, event_idx, indirect) != 0)
        return 0;
    /* Accepted: the areas are apart and inside RAM. */
    uint64_t ulen = vq_used_bytes(qsize) - (event_idx ? 0 : 2);
    CHECK(used + ulen <= RAM && avail + vq_avail_bytes(qsize) - (event_idx ? 0 : 2) <= RAM);
    CHECK(desc + vq_desc_bytes(qsize) <= RAM);

    for (size_t i = 0; i < plen; i++) {
        uint8_t op = prog[i], arg = i + 1 < plen ? prog[i + 1] : 0;
        int r;

        switch (op % 8) {
        case 0: /* pop */
            r = vq_pop(&q, &c);
            CHECK(r == 0 || r == 1 || r == -EIO);
            CHECK(r != -EIO || q.broken);
            if (r == 1) {
                check_chain(&q, &c);
                last_head = c.head;
            }
            break;
        case 1: /* give the last chain back */
            vq_add_used(&q, last_head, arg);
            break;
        case 2:
            vq_publish_used(&q);
            break;
        case 3:
            vq_set_notify(&q, op & 8);
            break;
        case 4: /* a held chain walked again */
            r = vq_chain_at(&q, (uint16_t)(arg % (qsize + 1)), &c);
            CHECK(r == 0 || r == -ERANGE);
            if (r == 0)
                check_chain(&q, &c);
            i++;
            break;
        case 5: { /* a drain with room for a few */
            struct drain_arg d = {.q = &q, .room = 1 + arg % 8};
            r = vq_drain(&q, &c, op & 8, take, &d);
            CHECK(r == 0 || (r == -EIO && q.broken));
            CHECK(d.taken <= d.room);
            i++;
            break;
        }
        case 6: { /* the driver moves avail->idx on */
            uint16_t idx;
            memcpy(&idx, ram + avail + 2, 2);
            idx = (uint16_t)(idx + 1 + arg % 4);
            driver_write((uint32_t)avail + 2, &idx, 2);
            i++;
            break;
        }
        default: { /* the driver rewrites a byte anywhere (a descriptor, a ring entry) */
            uint32_t at = (uint32_t)(arg | (i + 2 < plen ? prog[i + 2] << 8 : 0)) % RAM;
            uint8_t v = (uint8_t)(op ^ arg);
            driver_write(at, &v, 1);
            i += 2;
            break;
        }
        }
    }
    /* The device wrote nothing outside its used ring. */
    CHECK(memcmp(ram, shadow, used) == 0);
    CHECK(memcmp(ram + used + ulen, shadow + used + ulen, RAM - used - ulen) == 0);
    return 0;
}
