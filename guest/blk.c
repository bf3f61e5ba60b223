/* SPDX-License-Identifier: MIT */
/*
 * Bench guest block workloads (test=blk-read|blk-write|blk-verify): a minimal
 * virtio-mmio block driver running at CPL3. Devices are found Linux style from
 * `virtio_mmio.device=<size>@<base>:<irq>` command line words. Both the modern
 * (version 2) and the legacy (version 1) register layouts are driven; one
 * request queue, 3-descriptor chains, up to qd requests in flight, completions
 * polled from the used ring or signalled by an IOAPIC-routed interrupt.
 *
 * Register offsets and bit values follow the virtio 1.x spec / Linux's
 * <linux/virtio_mmio.h>, <linux/virtio_ring.h> and <linux/virtio_blk.h>.
 */
#include <stddef.h>
#include <stdint.h>

#include "vio.h"

/* virtio-blk requests. */
#define VIRTIO_BLK_T_IN  0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_S_OK  0
#define SECTOR_SIZE      512

/* Workload limits and defaults. */
#define MAX_QD                  64
#define DEFAULT_BS              4096
#define MAX_BS                  (1u << 20) /* the device's size_max: one buffer */
#define NEEDS_RESET_CHECK_SPINS (1u << 20) /* pause iterations between Status reads */

struct blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

_Static_assert(sizeof(struct blk_req_hdr) == 16, "request header layout");

static uint8_t vq_mem[VQ_MEM_SIZE] __attribute__((aligned(4096)));

/* Per in-flight slot: request header and status byte (slot s owns descriptors 3s..3s+2). */
static struct {
    struct blk_req_hdr hdr;
    uint8_t status;
    uint8_t busy;    /* in flight */
    uint64_t sector; /* of the request in this slot */
} slots[MAX_QD] __attribute__((aligned(16)));

volatile uint64_t blk_isr_mmio;
volatile uint64_t blk_isr_count;

/* The device in use, its queue and its size. */
static struct vdev dev;
static struct vq vq;
static uint64_t capacity; /* in 512-byte sectors */
static volatile uint64_t *const blk_done = (volatile uint64_t *)(uintptr_t)BG_BLK_DONE;

/* ---- requests ---- */

/* Sector-derived data for blk-verify: word w of sector s. */
static inline uint64_t pattern_word(uint64_t sector, uint64_t w)
{
    return sector * 0x9E3779B97F4A7C15ULL ^ w;
}

static void pattern_fill(uint64_t *buf, uint64_t sector, uint32_t bs)
{
    for (uint32_t s = 0; s < bs / SECTOR_SIZE; s++)
        for (uint32_t w = 0; w < SECTOR_SIZE / 8; w++)
            *buf++ = pattern_word(sector + s, w);
}

static int pattern_check(const uint64_t *buf, uint64_t sector, uint32_t bs)
{
    for (uint32_t s = 0; s < bs / SECTOR_SIZE; s++)
        for (uint32_t w = 0; w < SECTOR_SIZE / 8; w++)
            if (*buf++ != pattern_word(sector + s, w))
                return 0;
    return 1;
}

/* The sequence of request start sectors: sequential or xorshift64* random. */
struct sector_gen {
    uint64_t state, next, slots, per_req; /* slots: bs-aligned positions on the disk */
    int rand;
};

static void gen_init(struct sector_gen *g, int rand, uint32_t bs)
{
    g->state = 0x2545F4914F6CDD1DULL;
    g->next = 0;
    g->per_req = bs / SECTOR_SIZE;
    g->slots = capacity / g->per_req;
    g->rand = rand;
}

static uint64_t gen_next(struct sector_gen *g)
{
    uint64_t slot;

    if (g->rand) {
        g->state ^= g->state >> 12;
        g->state ^= g->state << 25;
        g->state ^= g->state >> 27;
        slot = (g->state * 0x2545F4914F6CDD1DULL >> 11) % g->slots;
    } else {
        slot = g->next;
        g->next = g->next + 1 == g->slots ? 0 : g->next + 1;
    }
    return slot * g->per_req;
}

struct run {
    uint32_t bs, qd;
    int irq_mode;
    uint64_t errors, mismatches, notifies;
};

static inline uint8_t *slot_buf(unsigned int s, uint32_t bs)
{
    return (uint8_t *)(uintptr_t)(BG_BLK_BUF_ADDR + (uint64_t)s * bs);
}

/* Point each slot's fixed 3-descriptor chain at its header, data buffer and status. */
static void chains_init(uint32_t bs, uint32_t qd)
{
    for (unsigned int s = 0; s < qd; s++) {
        struct vring_desc *d = &vq.desc[3 * s];

        d[0].addr = (uintptr_t)&slots[s].hdr;
        d[0].len = sizeof(slots[s].hdr);
        d[0].flags = VRING_DESC_F_NEXT;
        d[0].next = (uint16_t)(3 * s + 1);
        d[1].addr = (uintptr_t)slot_buf(s, bs);
        d[1].len = bs;
        d[1].next = (uint16_t)(3 * s + 2);
        d[2].addr = (uintptr_t)&slots[s].status;
        d[2].len = 1;
        d[2].flags = VRING_DESC_F_WRITE;
        d[2].next = 0;
    }
}

/* Waits until the used ring has something (polling or interrupt driven). */
static void wait_used(int irq_mode)
{
    uint32_t spins = 0;

    for (;;) {
        uint64_t seen = blk_isr_count;

        barrier();
        if (VQ_USED_IDX(&vq) != vq.used_seen)
            return;
        if (irq_mode) {
            while (blk_isr_count == seen && ++spins != NEEDS_RESET_CHECK_SPINS)
                cpu_pause();
        } else {
            cpu_pause();
            ++spins;
        }
        if (spins == NEEDS_RESET_CHECK_SPINS) {
            spins = 0;
            if (vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
                dev_error("device set NEEDS_RESET");
        }
    }
}

/*
 * One pass of n requests of type `type` with up to r->qd in flight; sectors
 * from g. Writes in verify mode fill the sector pattern first; reads in
 * verify mode check it and count mismatching requests.
 */
static void run_pass(struct run *r, struct sector_gen *g, uint32_t type, int verify, uint64_t n)
{
    uint8_t free_slots[MAX_QD];
    unsigned int nfree = r->qd;
    uint64_t issued = 0, done = 0;

    for (unsigned int s = 0; s < r->qd; s++)
        free_slots[s] = (uint8_t)(r->qd - 1 - s);

    while (done < n) {
        /* Fill the available ring up to qd in flight, then notify once. */
        if (nfree && issued < n) {
            while (nfree && issued < n) {
                unsigned int s = free_slots[--nfree];
                uint64_t sector = gen_next(g);

                if (verify && type == VIRTIO_BLK_T_OUT)
                    pattern_fill((uint64_t *)slot_buf(s, r->bs), sector, r->bs);
                slots[s].sector = sector;
                slots[s].hdr.type = type;
                slots[s].hdr.reserved = 0;
                slots[s].hdr.sector = sector;
                slots[s].status = 0xff;
                slots[s].busy = 1;
                vq.desc[3 * s + 1].flags =
                    VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0);
                VQ_AVAIL_RING(&vq, vq.avail_idx % vq.size) = (uint16_t)(3 * s);
                vq.avail_idx++;
                issued++;
            }
            r->notifies += (uint64_t)vq_kick(&dev, &vq);
        }

        wait_used(r->irq_mode);
        uint16_t used = VQ_USED_IDX(&vq);
        barrier(); /* the index before the entries, status bytes and data */
        while (vq.used_seen != used) {
            uint32_t id = VQ_USED_RING(&vq)[vq.used_seen % vq.size].id;
            unsigned int s = id / 3;

            vq.used_seen++;
            if (id % 3 || s >= r->qd || !slots[s].busy)
                dev_error("bad id in used ring");
            slots[s].busy = 0;
            if (slots[s].status != VIRTIO_BLK_S_OK)
                r->errors++;
            else if (verify && type == VIRTIO_BLK_T_IN &&
                     !pattern_check((const uint64_t *)slot_buf(s, r->bs), slots[s].sector, r->bs))
                r->mismatches++;
            free_slots[nfree++] = (uint8_t)s;
            done++;
            *blk_done = *blk_done + 1;
        }
    }
}

/* ---- entry ---- */

void blk_main(const char *cmdline, const char *test, uint64_t n)
{
    struct run r = {.bs = DEFAULT_BS, .qd = 1};
    uint64_t disk = 0;
    int rand = 1;
    const char *name;

    if (word_eq(test, "blk-read"))
        name = "blk-read";
    else if (word_eq(test, "blk-write"))
        name = "blk-write";
    else if (word_eq(test, "blk-verify"))
        name = "blk-verify";
    else {
        unknown_test(test);
    }

    /* Parameters (disk= may follow the device words). */
    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "bs="))) {
            r.bs = (uint32_t)parse_param(v, "bad bs=", SECTOR_SIZE, MAX_BS);
            if (r.bs % SECTOR_SIZE)
                cmdline_error("bad bs=", v);
        } else if ((v = word_value(w, "qd=")))
            r.qd = (uint32_t)parse_param(v, "bad qd=", 1, MAX_QD);
        else if ((v = word_value(w, "disk=")))
            disk = parse_param(v, "bad disk=", 0, UINT32_MAX);
        else if ((v = word_value(w, "irq=")))
            r.irq_mode = (int)parse_param(v, "bad irq=", 0, 1);
        else if (word_eq(w, "pattern=rand"))
            rand = 1;
        else if (word_eq(w, "pattern=seq"))
            rand = 0;
        else if ((v = word_value(w, "pattern=")))
            cmdline_error("bad pattern=", v);
    }
    if ((uint64_t)r.bs * r.qd > BG_BLK_BUF_MAX)
        cmdline_error("bs*qd too large", NULL);

    /* The disk'th virtio_mmio.device= word (of any kind). */
    if (!vdev_find(cmdline, 0, disk, &dev))
        dev_error("no virtio_mmio.device= word for disk=");
    vdev_init(&dev, VIRTIO_ID_BLOCK, 0);
    vq_init(&dev, &vq, 0, vq_mem, VQ_SIZE_MAX, !r.irq_mode); /* polling: no interrupts */
    capacity = vdev_config64(&dev, 0);
    vdev_ready(&dev);
    if (3 * r.qd > vq.size)
        dev_error("queue too small for qd=");
    if (capacity < r.bs / SECTOR_SIZE)
        dev_error("disk smaller than bs=");
    chains_init(r.bs, r.qd);
    if (r.irq_mode) {
        blk_isr_mmio = dev.base;
        vdev_irq_init(&dev, VEC_BLK);
    }

    struct sector_gen g;
    uint64_t bytes = n * r.bs, t0, cycles;

    gen_init(&g, rand, r.bs);
    *blk_done = 0;
    t0 = rdtsc();
    if (name[4] == 'r') {
        run_pass(&r, &g, VIRTIO_BLK_T_IN, 0, n);
    } else if (name[4] == 'w') {
        run_pass(&r, &g, VIRTIO_BLK_T_OUT, 0, n);
    } else {
        run_pass(&r, &g, VIRTIO_BLK_T_OUT, 1, n);
        gen_init(&g, rand, r.bs); /* the same sectors again */
        run_pass(&r, &g, VIRTIO_BLK_T_IN, 1, n);
        bytes *= 2;
    }
    cycles = rdtsc() - t0;

    if (r.irq_mode)
        vdev_irq_fini(&dev, VEC_BLK);
    if (vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
        dev_error("device set NEEDS_RESET");

    con_puts("RESULT test=");
    con_puts(name);
    con_puts(" n=");
    con_putdec(n);
    con_puts(" bs=");
    con_putdec(r.bs);
    con_puts(" qd=");
    con_putdec(r.qd);
    con_puts(" cycles=");
    con_putdec(cycles);
    con_puts(" bytes=");
    con_putdec(bytes);
    con_puts(" errors=");
    con_putdec(r.errors);
    con_puts(" mismatches=");
    con_putdec(r.mismatches);
    con_puts(" irqs=");
    con_putdec(blk_isr_count);
    con_puts(" notifies=");
    con_putdec(r.notifies);
    con_putc('\n');
    bg_exit(BG_EXIT_OK);
}
