/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for virtio-blk's request execution (virtio/blk_exec.c,
 * the real code) over a real split virtqueue in guest RAM and a fake
 * backend whose completions the input chooses: full, short, nothing,
 * errors, refusals at start. The rate limit runs on a fake clock and the
 * error policy may stop and retry. What must hold:
 *  - every I/O the backend is given lies inside the chain it came from, in
 *    the buffers the direction allows, inside the disk, aligned when it
 *    says direct, never a write on a read-only disk, one at a time per tag;
 *  - a transfer cut short goes on exactly where it stopped;
 *  - every chain taken goes back to the driver once, with a used length
 *    no larger than its writable bytes;
 *  - the device writes only the chains' writable buffers and its used
 *    ring, and every page it wrote (or had the backend write) is dirty;
 *  - a stopped device starts nothing new until it is resumed;
 *  - the rate limit's wait is honest: at the time it names, the request
 *    at its head goes;
 *  - once the backend completes everything, nothing is left in flight,
 *    held or waiting, and every slot is free.
 * A violation aborts.
 *
 * Input: [0] log2 queue size (mod 7) [1] flags: bit 0 EVENT_IDX, bit 1
 * INDIRECT, bit 2 read-only, bit 3 an O_DIRECT file, bits 4-5 on_error
 * (mod 3), bit 6 4 KiB direct alignment [2..5] capacity in sectors [6]
 * ops/s (x16) [7] bytes/s (KiB x64) [8] program length L, then L
 * operation bytes, then the image of guest RAM.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ringvm/mem.h>

#include "../mem/mem_internal.h"
#include "../virtio/blk_exec.h"
#include "check.h"

#define RAM       (64u << 10)
#define PAGE      4096u
#define DESC_GPA  0x0
#define AVAIL_GPA 0x1000
#define USED_GPA  0x1800
#define MAX_Q     64

static struct rvm_mem *mem;
static uint8_t *ram, shadow[RAM], allowed[RAM];

/* What the harness knows of each slot (tag): the chain it took, its I/O on the backend. */
struct tag_state {
    bool busy;      /* a chain is in the slot: not yet given back */
    bool in_flight; /* the backend holds an I/O of it */
    uint16_t head;
    uint16_t nseg;
    struct vq_seg seg[BLK_SEG_MAX + 2];
    uint64_t in_len;
    struct blk_io io;
    struct iovec iov[BLK_SEG_MAX];
    bool cut;          /* the last completion was short */
    uint64_t next_off; /* where the rest must start then */
    uint64_t next_len; /* and how much of it */
};

static struct fuzz {
    struct blk_exec e;
    struct vq q;
    struct tag_state tag[MAX_Q];
    unsigned outstanding[MAX_Q]; /* per head: chains taken and not given back */
    uint64_t in_len[MAX_Q];      /* per head: the writable bytes of its longest chain out */
    uint64_t now, wake_at;
    bool wake_set, fail_next, resumed, unlimited, retrying;
    uint16_t seen_used;
} f;

static bool inside(const struct tag_state *t, const struct iovec *v, bool writable)
{
    const uint8_t *p = v->iov_base;

    for (unsigned i = 0; i < t->nseg; i++) {
        const uint8_t *b = t->seg[i].hva;
        if (t->seg[i].write == writable && p >= b && p + v->iov_len <= b + t->seg[i].len)
            return true;
    }
    return false;
}

static void check_io(struct tag_state *t, const struct blk_io *io)
{
    uint64_t disk = f.e.capacity * BLK_SECTOR, sum = 0;
    bool rw = io->type == VIRTIO_BLK_T_IN || io->type == VIRTIO_BLK_T_OUT;

    CHECK(t->busy && !t->in_flight);
    CHECK(!f.e.ro || io->type == VIRTIO_BLK_T_IN || io->type == VIRTIO_BLK_T_FLUSH);
    if (rw) {
        CHECK(io->niov > 0 && io->niov <= BLK_SEG_MAX);
        for (unsigned i = 0; i < io->niov; i++) {
            CHECK(io->iov[i].iov_len > 0);
            CHECK(inside(t, &io->iov[i], io->type == VIRTIO_BLK_T_IN));
            if (io->direct)
                CHECK((uintptr_t)io->iov[i].iov_base % f.e.dio_mem_align == 0 &&
                      io->iov[i].iov_len % f.e.dio_off_align == 0);
            sum += io->iov[i].iov_len;
        }
        CHECK(sum == io->len && io->len > 0);
        CHECK(io->off <= disk && io->len <= disk - io->off);
        CHECK(!io->direct || (f.e.has_direct && io->off % f.e.dio_off_align == 0));
        if (t->cut)
            CHECK(io->off == t->next_off && io->len == t->next_len);
    } else if (io->type != VIRTIO_BLK_T_FLUSH) {
        CHECK(io->type == VIRTIO_BLK_T_DISCARD || io->type == VIRTIO_BLK_T_WRITE_ZEROES);
        CHECK(io->len > 0 && io->off <= disk && io->len <= disk - io->off);
        CHECK(io->off % BLK_SECTOR == 0 && io->len % BLK_SECTOR == 0);
    }
}

static int fake_start(void *ctx, uint64_t tag, const struct blk_io *io)
{
    (void)ctx;
    CHECK(tag < (uint64_t)f.e.nslots);
    struct tag_state *t = &f.tag[tag];

    /* Stopped, nothing new goes: only a retry, a snapshot's release of the waiting, or the
     * rest of a transfer that was in flight and came back short. */
    CHECK(!f.e.stopped || f.unlimited || t->cut);
    check_io(t, io);
    if (f.fail_next) {
        f.fail_next = false;
        return -EAGAIN;
    }
    t->io = *io;
    if (io->niov)
        memcpy(t->iov, io->iov, io->niov * sizeof(*io->iov));
    t->io.iov = t->iov;
    t->in_flight = true;
    t->cut = false;
    return 0;
}

static void fake_wake_after(void *ctx, uint64_t ns)
{
    (void)ctx;
    CHECK(ns > 0);
    f.wake_at = f.now + ns;
    f.wake_set = true;
}

static void fake_stopped(void *ctx, int err)
{
    (void)ctx;
    CHECK(err < 0 && f.e.on_error != RVM_BLK_ERROR_REPORT);
    CHECK(f.e.on_error == RVM_BLK_ERROR_STOP || err == -ENOSPC);
    f.resumed = false;
}

static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    return f.now;
}

static const struct blk_exec_ops fake_ops = {
    .start = fake_start,
    .wake_after = fake_wake_after,
    .stopped = fake_stopped,
    .now_ns = fake_now,
};

/* The used entries the device added since the last look: each a chain it had, once. */
static void check_used(void)
{
    while (f.seen_used != f.q.used_idx) {
        struct vring_used_elem el;
        memcpy(&el, ram + USED_GPA + 4 + (f.seen_used % f.q.size) * sizeof(el), sizeof(el));
        CHECK(el.id < f.q.size && f.outstanding[el.id] > 0);
        CHECK(el.len <= f.in_len[el.id]);
        f.outstanding[el.id]--;
        f.seen_used++;
    }
    /* A slot on the free list holds no chain (and none is on it twice). */
    int n = 0;
    for (int s = f.e.free_head; s >= 0; s = f.e.slots[s].next_free) {
        CHECK(s < f.e.nslots && ++n <= f.e.nslots && !f.tag[s].in_flight);
        f.tag[s].busy = false;
    }
}

/* The backend completes the I/O of tag: a read's bytes land first, as the kernel's would. */
static void finish(int tag, int res)
{
    struct tag_state *t = &f.tag[tag];

    t->in_flight = false;
    if (res > 0 && t->io.type == VIRTIO_BLK_T_IN) {
        uint64_t left = (uint64_t)res;
        for (unsigned i = 0; i < t->io.niov && left; i++) {
            size_t k = t->iov[i].iov_len < left ? t->iov[i].iov_len : left;
            memset(t->iov[i].iov_base, 0xa5 ^ tag, k);
            left -= k;
        }
    }
    if (res > 0 && (uint64_t)res < t->io.len) {
        t->cut = true;
        t->next_off = t->io.off + (uint64_t)res;
        t->next_len = t->io.len - (uint64_t)res;
    }
    blk_exec_complete(&f.e, (uint64_t)tag, res);
    check_used();
}

static bool take(void *arg, struct vq_chain *c)
{
    (void)arg;
    check_used(); /* what a retry or release just gave back frees its slot here */
    int slot = f.e.free_head;

    CHECK(slot >= 0 && !f.tag[slot].busy);
    struct tag_state *t = &f.tag[slot];
    *t = (struct tag_state){.busy = true, .head = c->head, .nseg = c->nseg, .in_len = c->in_len};
    memcpy(t->seg, c->seg, c->nseg * sizeof(*c->seg));
    for (unsigned i = 0; i < c->nseg; i++)
        if (c->seg[i].write)
            memset(allowed + c->seg[i].gpa, 1, c->seg[i].len);
    /* A head taken again while out (the guest offers it twice, or the device's writes
     * changed its descriptors): its entries may be either chain's. */
    if (!f.outstanding[c->head]++ || f.in_len[c->head] < c->in_len)
        f.in_len[c->head] = c->in_len;
    blk_exec_chain(&f.e, 0, c);
    check_used();
    return blk_exec_room(&f.e);
}

/* One round of the device's worker: a retry after a resume, the limit's queue, the ring. */
static void round_(bool quiet)
{
    static struct vq_seg seg[BLK_SEG_MAX + 2];
    struct vq_chain c = {.seg = seg, .max_seg = BLK_SEG_MAX + 2};

    if (f.e.stopped) {
        if (!f.resumed)
            return;
        f.resumed = false;
        if (!blk_exec_retry(&f.e))
            return;
    }
    if (f.e.nwaiting && !blk_exec_release(&f.e, false))
        return;
    if (blk_exec_room(&f.e) && vq_drain(&f.q, &c, quiet, take, NULL) < 0)
        CHECK(f.q.broken);
}

/* The rate limit's timer fires when it said: the request at the head of its queue goes. */
static void timer(void)
{
    if (!f.wake_set)
        return;
    f.wake_set = false;
    if (f.now < f.wake_at)
        f.now = f.wake_at;
    int before = f.e.nwaiting;
    if (before && !f.e.stopped) {
        blk_exec_release(&f.e, false);
        CHECK(f.e.nwaiting < before);
    }
}

static int pick_in_flight(unsigned k)
{
    int n = 0;

    for (int s = 0; s < f.e.nslots; s++)
        n += f.tag[s].in_flight;
    if (!n)
        return -1;
    k %= (unsigned)n;
    for (int s = 0; s < f.e.nslots; s++)
        if (f.tag[s].in_flight && k-- == 0)
            return s;
    return -1;
}

static int result(const struct tag_state *t, uint8_t kind, uint8_t x)
{
    switch (kind % 8) {
    case 0:
    case 1:
        return (int)t->io.len;
    case 2: /* short */
        return t->io.len > 1 ? (int)(1 + (x * 509u) % (t->io.len - 1)) : (int)t->io.len;
    case 3:
        return 0;
    case 4:
        return -EIO;
    case 5:
        return -ENOSPC;
    case 6:
        return -ECANCELED;
    default:
        return (int)t->io.len + 1; /* more than asked: a broken backend */
    }
}

static void run(const uint8_t *prog, size_t plen)
{
    for (size_t i = 0; i < plen; i++) {
        uint8_t op = prog[i], arg = i + 1 < plen ? prog[i + 1] : 0;

        switch (op % 8) {
        case 0: { /* the driver makes more chains available */
            uint16_t idx;
            memcpy(&idx, ram + AVAIL_GPA + 2, 2);
            idx = (uint16_t)(idx + 1 + arg % 4);
            memcpy(ram + AVAIL_GPA + 2, &idx, 2);
            memcpy(shadow + AVAIL_GPA + 2, &idx, 2);
            i++;
            break;
        }
        case 1:
            round_(op & 8);
            break;
        case 2: { /* the backend completes one */
            int s = pick_in_flight(arg);
            if (s >= 0)
                finish(s, result(&f.tag[s], op >> 3, i + 2 < plen ? prog[i + 2] : 0));
            i += 2;
            break;
        }
        case 3:
            f.now += (uint64_t)arg * 1000000;
            i++;
            break;
        case 4:
            f.resumed = true;
            break;
        case 5:
            f.fail_next = true;
            break;
        case 6:
            vq_publish_used(&f.q);
            timer();
            break;
        default: /* a snapshot's pause lets the waiting go */
            f.unlimited = true;
            blk_exec_release(&f.e, true);
            f.unlimited = false;
            CHECK(f.e.nwaiting == 0);
            break;
        }
        check_used();
    }
}

/* The backend completes everything, the VM resumes, the limit lets all go: nothing is left. */
static void settle(void)
{
    for (int round = 0; round < 4 * MAX_Q + 8; round++) {
        int s = pick_in_flight(0);
        if (s >= 0) {
            finish(s, (int)f.tag[s].io.len);
            continue;
        }
        if (f.e.stopped) {
            f.resumed = true;
            f.e.on_error = RVM_BLK_ERROR_REPORT; /* so the retry cannot stop again */
            round_(true);
            continue;
        }
        if (f.e.nwaiting) {
            f.unlimited = true;
            blk_exec_release(&f.e, true);
            f.unlimited = false;
            continue;
        }
        break;
    }
    check_used();
    CHECK(blk_exec_idle(&f.e) && f.e.nheld == 0 && !f.e.stopped);
    int nfree = 0;
    for (int s = f.e.free_head; s >= 0 && nfree <= f.e.nslots; s = f.e.slots[s].next_free)
        nfree++;
    CHECK(nfree == f.e.nslots);
    for (unsigned h = 0; h < f.q.size; h++)
        CHECK(f.outstanding[h] == 0);
}

/* Only the chains' writable buffers and the used ring changed, and each such page is dirty. */
static void check_writes(void)
{
    for (uint32_t page = 0; page < RAM; page += PAGE) {
        if (!memcmp(ram + page, shadow + page, PAGE))
            continue;
        CHECK(mem_dirty_test(mem, page));
        for (uint32_t a = page; a < page + PAGE; a++)
            CHECK(ram[a] == shadow[a] || allowed[a]);
    }
}

static bool setup(const uint8_t *data)
{
    uint16_t qsize = (uint16_t)(1u << (data[0] % 7));
    uint8_t flags = data[1];
    uint32_t cap;
    memcpy(&cap, data + 2, 4);

    memset(&f, 0, sizeof(f));
    if (vq_setup(&f.q, mem, qsize, MAX_Q, DESC_GPA, AVAIL_GPA, USED_GPA, flags & 1, flags & 2))
        return false;
    memset(allowed, 0, sizeof(allowed));
    memset(allowed + USED_GPA, 1, vq_used_bytes(qsize));
    static const char id[VIRTIO_BLK_ID_BYTES] = "fuzz-disk";
    f.e = (struct blk_exec){
        .ops = &fake_ops,
        .mem = mem,
        .vqs = &f.q,
        .capacity = cap % (1u << 24),
        .ro = flags & 4,
        .has_direct = flags & 8,
        .on_error = (uint8_t)((flags >> 4 & 3) % 3),
        .id = id,
        .dio_mem_align = flags & 64 ? 4096 : 512,
        .dio_off_align = flags & 64 ? 4096 : 512,
        .limit_cfg = {.ops_per_s = data[6] * 16ull, .bytes_per_s = data[7] * 65536ull}};
    if (rate_limit_check(&f.e.limit_cfg) < 0)
        return false;
    f.now = 1000000000;
    CHECK(blk_exec_init(&f.e, qsize) == 0);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mem) {
        struct rvm_mem_config mc = {.size = RAM, .backing = RVM_MEM_ANON, .numa_node = -1};
        if (rvm_mem_create(NULL, &mc, &mem) < 0)
            abort();
        ram = rvm_mem_hva(mem, 0, RAM);
        CHECK(ram);
    }
    if (size < 9)
        return 0;
    size_t plen = data[8] < size - 9 ? data[8] : size - 9;
    const uint8_t *prog = data + 9, *img = prog + plen;
    size_t ilen = size - 9 - plen;

    memset(ram, 0, RAM);
    memcpy(ram, img, ilen < RAM ? ilen : RAM);
    memset(ram + AVAIL_GPA + 2, 0, 2); /* nothing available until the program says so */
    memset(ram + USED_GPA, 0, 4);
    memcpy(shadow, ram, RAM);
    mem_dirty_clear(mem);
    if (!setup(data))
        return 0;
    run(prog, plen);
    settle();
    check_writes();
    blk_exec_fini(&f.e);
    return 0;
}
