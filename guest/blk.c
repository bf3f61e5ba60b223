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

#include "bg.h"

/* virtio-mmio register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_GUEST_PAGE_SIZE     0x028 /* legacy */
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_ALIGN         0x03c /* legacy */
#define VIRTIO_MMIO_QUEUE_PFN           0x040 /* legacy */
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW     0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH    0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW      0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH     0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100
/* VIRTIO_MMIO_INTERRUPT_STATUS / _ACK are in bg.h (boot.S uses them). */

#define VIRTIO_MMIO_MAGIC  0x74726976 /* "virt" */
#define VIRTIO_ID_BLOCK    2
#define VIRTIO_F_VERSION_1 32 /* feature bit number */
#define LEGACY_PAGE_SIZE   4096
#define LEGACY_QUEUE_ALIGN 4096

/* Device status bits. */
#define STATUS_ACKNOWLEDGE 0x01
#define STATUS_DRIVER      0x02
#define STATUS_DRIVER_OK   0x04
#define STATUS_FEATURES_OK 0x08
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED      0x80

/* Split virtqueue. */
#define VRING_DESC_F_NEXT          1
#define VRING_DESC_F_WRITE         2 /* device writes this buffer */
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

#define QUEUE_SIZE_MAX 256

/* virtio-blk requests. */
#define VIRTIO_BLK_T_IN  0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_S_OK  0
#define SECTOR_SIZE      512

/* IOAPIC (the first one; microvm puts a second 24-pin one at +0x10000 when enabled). */
#define IOAPIC_BASE        0xfec00000ULL
#define IOAPIC_STRIDE      0x10000
#define IOAPIC_PINS        24
#define IOAPIC_IOREGSEL    0x00
#define IOAPIC_IOWIN       0x10
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_RTE_MASKED  0x10000

/* Workload limits and defaults. */
#define MAX_QD                  64
#define DEFAULT_BS              4096
#define MAX_BS                  (4u << 20)
#define NEEDS_RESET_CHECK_SPINS (1u << 20) /* pause iterations between Status reads */

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct blk_req_hdr) == 16, "request header layout");

/*
 * Virtqueue memory in the legacy layout (descriptors, then the available ring,
 * then the used ring at the next 4 KiB boundary), which also satisfies the
 * modern 16/2/4 alignment, so both transports share it. For 256 entries the
 * used ring starts at 8 KiB and ends before 12 KiB.
 */
static uint8_t vq_mem[3 * 4096] __attribute__((aligned(4096)));
_Static_assert(QUEUE_SIZE_MAX * 16 + 6 + 2 * QUEUE_SIZE_MAX <= 2 * 4096, "avail ring fits");
_Static_assert(2 * 4096 + 6 + 8 * QUEUE_SIZE_MAX <= sizeof(vq_mem), "used ring fits");

/* Per in-flight slot: request header and status byte (slot s owns descriptors 3s..3s+2). */
static struct {
    struct blk_req_hdr hdr;
    uint8_t status;
    uint8_t busy;    /* in flight */
    uint64_t sector; /* of the request in this slot */
} slots[MAX_QD] __attribute__((aligned(16)));

volatile uint64_t blk_isr_mmio;
volatile uint64_t blk_isr_count;

/* The device in use and the queue state. */
static struct {
    uint64_t base;
    uint32_t irq;
    uint32_t version;
    uint16_t qsize;
    uint16_t avail_idx; /* next free available-ring index (free running) */
    uint16_t used_seen; /* used-ring entries consumed (free running) */
    uint64_t capacity;  /* in 512-byte sectors */
} dev;

static struct vring_desc *const vq_desc = (struct vring_desc *)vq_mem;
static volatile uint16_t *vq_avail; /* flags, idx, ring[qsize] */
static volatile uint16_t *vq_used;  /* flags, idx, then the vring_used_elem ring */
#define AVAIL_FLAGS   (vq_avail[0])
#define AVAIL_IDX     (vq_avail[1])
#define AVAIL_RING(i) (vq_avail[2 + (i)])
#define USED_FLAGS    (vq_used[0])
#define USED_IDX      (vq_used[1])
#define USED_RING     ((volatile struct vring_used_elem *)(vq_used + 2))

static inline void barrier(void)
{
    __asm__ volatile("" : : : "memory");
}

static inline void cpu_pause(void)
{
    __asm__ volatile("pause" : : : "memory");
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint32_t rd32(uint64_t addr)
{
    return *(volatile uint32_t *)(uintptr_t)addr;
}

static inline void wr32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}

static inline uint32_t vm_rd(uint32_t reg)
{
    return rd32(dev.base + reg);
}

static inline void vm_wr(uint32_t reg, uint32_t v)
{
    wr32(dev.base + reg, v);
}

static void __attribute__((noreturn)) dev_error(const char *msg)
{
    con_puts("ERROR ");
    con_puts(msg);
    con_putc('\n');
    bg_exit(BG_EXIT_NO_DEVICE);
}

/* ---- command line ---- */

/*
 * Parse an unsigned number at *p: 0x-prefixed hex or decimal. Advances *p past
 * the digits; returns 0 and leaves *p alone if there are none or it overflows.
 */
static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    unsigned int base = 10;
    uint64_t v = 0;
    int digits = 0;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    for (;; s++, digits++) {
        unsigned int d;

        if (*s >= '0' && *s <= '9')
            d = (unsigned int)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned int)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned int)(*s - 'A' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / base)
            return 0;
        v = v * base + d;
    }
    if (!digits)
        return 0;
    *p = s;
    *out = v;
    return 1;
}

/* A whole-word number parameter (value of key=) within [lo, hi]. */
uint64_t parse_param(const char *v, const char *what, uint64_t lo, uint64_t hi)
{
    const char *p = v;
    uint64_t x;

    if (!parse_u64(&p, &x) || (*p && !is_space(*p)) || x < lo || x > hi)
        cmdline_error(what, v);
    return x;
}

/* virtio_mmio.device=<size>[K|M|G]@<base>:<irq>[:<id>]: base and irq. */
static int parse_vmmio(const char *v, uint64_t *base, uint32_t *irq)
{
    uint64_t size, irq64;

    if (!parse_u64(&v, &size))
        return 0;
    if (*v == 'K' || *v == 'k')
        v++;
    else if (*v == 'M' || *v == 'm')
        v++;
    else if (*v == 'G' || *v == 'g')
        v++;
    if (*v++ != '@' || !parse_u64(&v, base) || *v++ != ':' || !parse_u64(&v, &irq64))
        return 0;
    if (irq64 >= 2 * IOAPIC_PINS || *base == 0 || *base >= (1ULL << 32) || (*base & 3))
        return 0;
    *irq = (uint32_t)irq64;
    return 1;
}

/* ---- virtio-mmio device setup ---- */

/* Reads a u64 from device config space consistently (modern: generation check). */
static uint64_t config_read64(uint32_t off)
{
    uint32_t gen, lo, hi;

    do {
        gen = dev.version >= 2 ? vm_rd(VIRTIO_MMIO_CONFIG_GENERATION) : 0;
        lo = vm_rd(VIRTIO_MMIO_CONFIG + off);
        hi = vm_rd(VIRTIO_MMIO_CONFIG + off + 4);
    } while (dev.version >= 2 && gen != vm_rd(VIRTIO_MMIO_CONFIG_GENERATION));
    return ((uint64_t)hi << 32) | lo;
}

static void dev_init(int irq_mode)
{
    uint32_t status;
    uint64_t features;

    if (vm_rd(VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC)
        dev_error("bad virtio-mmio magic");
    dev.version = vm_rd(VIRTIO_MMIO_VERSION);
    if (dev.version != 1 && dev.version != 2)
        dev_error("unsupported virtio-mmio version");
    if (vm_rd(VIRTIO_MMIO_DEVICE_ID) != VIRTIO_ID_BLOCK)
        dev_error("not a virtio block device");

    vm_wr(VIRTIO_MMIO_STATUS, 0); /* reset */
    if (dev.version >= 2)
        while (vm_rd(VIRTIO_MMIO_STATUS) != 0)
            cpu_pause();
    vm_wr(VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE);
    vm_wr(VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;

    vm_wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    features = vm_rd(VIRTIO_MMIO_DEVICE_FEATURES);
    vm_wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    features |= (uint64_t)vm_rd(VIRTIO_MMIO_DEVICE_FEATURES) << 32;

    /* Accept VIRTIO_F_VERSION_1 (modern only) and nothing else. */
    if (dev.version >= 2 && !(features & (1ULL << VIRTIO_F_VERSION_1)))
        dev_error("device does not offer VIRTIO_F_VERSION_1");
    vm_wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    vm_wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
    vm_wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    vm_wr(VIRTIO_MMIO_DRIVER_FEATURES, dev.version >= 2 ? 1u << (VIRTIO_F_VERSION_1 - 32) : 0);

    if (dev.version >= 2) {
        status |= STATUS_FEATURES_OK;
        vm_wr(VIRTIO_MMIO_STATUS, status);
        if (!(vm_rd(VIRTIO_MMIO_STATUS) & STATUS_FEATURES_OK)) {
            vm_wr(VIRTIO_MMIO_STATUS, status | STATUS_FAILED);
            dev_error("device refused FEATURES_OK");
        }
    } else {
        vm_wr(VIRTIO_MMIO_GUEST_PAGE_SIZE, LEGACY_PAGE_SIZE);
    }

    /* Queue 0. */
    vm_wr(VIRTIO_MMIO_QUEUE_SEL, 0);
    if (dev.version >= 2 ? vm_rd(VIRTIO_MMIO_QUEUE_READY) : vm_rd(VIRTIO_MMIO_QUEUE_PFN))
        dev_error("queue 0 already in use");
    uint32_t qmax = vm_rd(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (qmax == 0)
        dev_error("queue 0 not available");
    dev.qsize = (uint16_t)(qmax < QUEUE_SIZE_MAX ? qmax : QUEUE_SIZE_MAX);
    uint32_t used_off =
        (dev.qsize * 16u + 6 + 2 * dev.qsize + LEGACY_QUEUE_ALIGN - 1) & ~(LEGACY_QUEUE_ALIGN - 1);
    vq_avail = (volatile uint16_t *)(vq_mem + dev.qsize * 16u);
    vq_used = (volatile uint16_t *)(vq_mem + used_off);
    AVAIL_FLAGS = irq_mode ? 0 : VRING_AVAIL_F_NO_INTERRUPT; /* polling: no interrupts */
    vm_wr(VIRTIO_MMIO_QUEUE_NUM, dev.qsize);
    if (dev.version >= 2) {
        uint64_t d = (uintptr_t)vq_desc, a = (uintptr_t)vq_avail, u = (uintptr_t)vq_used;

        vm_wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)d);
        vm_wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(d >> 32));
        vm_wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)a);
        vm_wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(a >> 32));
        vm_wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)u);
        vm_wr(VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(u >> 32));
        vm_wr(VIRTIO_MMIO_QUEUE_READY, 1);
    } else {
        /* Legacy: the device derives the avail/used addresses from the PFN, as above. */
        vm_wr(VIRTIO_MMIO_QUEUE_ALIGN, LEGACY_QUEUE_ALIGN);
        vm_wr(VIRTIO_MMIO_QUEUE_PFN, (uint32_t)((uintptr_t)vq_mem / LEGACY_PAGE_SIZE));
    }

    dev.capacity = config_read64(0);
    vm_wr(VIRTIO_MMIO_STATUS, status | STATUS_DRIVER_OK);
    if (vm_rd(VIRTIO_MMIO_STATUS) & (STATUS_NEEDS_RESET | STATUS_FAILED))
        dev_error("device needs reset");
}

/*
 * The legacy 8259 PIC sees IRQs 0-15 too (KVM wires each such GSI to both
 * chips) and LINT0 passes its output on, but it is never initialised here:
 * its vector base is 0, so IRQ 5 would arrive as vector 5. Mask it whole, as
 * any OS that uses the IOAPIC does. CPL0 only (its ports are not in the TSS
 * I/O bitmap): through bg_cpl0_call.
 */
static uint64_t pic_mask_all(uint64_t unused)
{
    (void)unused;
    __asm__ volatile("outb %b0, $0x21\n\toutb %b0, $0xa1" : : "a"(0xff));
    return 0;
}

/* Route the device's IOAPIC pin to VEC_BLK on APIC ID 0 and enable the local APIC. */
static void irq_init(void)
{
    uint64_t ioapic = IOAPIC_BASE + (uint64_t)(dev.irq / IOAPIC_PINS) * IOAPIC_STRIDE;
    uint32_t pin = dev.irq % IOAPIC_PINS;

    blk_isr_mmio = dev.base;
    bg_cpl0_call(pic_mask_all, 0);
    /* Drop anything pending from before, so the first completion is a fresh edge. */
    vm_wr(VIRTIO_MMIO_INTERRUPT_ACK, vm_rd(VIRTIO_MMIO_INTERRUPT_STATUS));
    wr32(APIC_BASE + APIC_SVR, APIC_SVR_ENABLE | VEC_SPURIOUS);
    /* Destination (high word) first, then unmask: fixed, physical, active high, edge. */
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(pin) + 1);
    wr32(ioapic + IOAPIC_IOWIN, 0u << 24);
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(pin));
    wr32(ioapic + IOAPIC_IOWIN, VEC_BLK);
    bg_cpl0_call(bg_set_user_if, 1);
}

static void irq_fini(void)
{
    uint64_t ioapic = IOAPIC_BASE + (uint64_t)(dev.irq / IOAPIC_PINS) * IOAPIC_STRIDE;

    bg_cpl0_call(bg_set_user_if, 0);
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(dev.irq % IOAPIC_PINS));
    wr32(ioapic + IOAPIC_IOWIN, IOAPIC_RTE_MASKED | VEC_BLK);
}

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
    g->slots = dev.capacity / g->per_req;
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
        struct vring_desc *d = &vq_desc[3 * s];

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
        if (USED_IDX != dev.used_seen)
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
            if (vm_rd(VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
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
                vq_desc[3 * s + 1].flags =
                    VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0);
                AVAIL_RING(dev.avail_idx % dev.qsize) = (uint16_t)(3 * s);
                dev.avail_idx++;
                issued++;
            }
            barrier(); /* ring entries before the index (x86: stores are ordered) */
            AVAIL_IDX = dev.avail_idx;
            /* The index before the device's flag is read (a store then a load: a full
             * fence); a polling device has turned notifications off. */
            __asm__ volatile("mfence" ::: "memory");
            if (!(USED_FLAGS & VRING_USED_F_NO_NOTIFY)) {
                vm_wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
                r->notifies++;
            }
        }

        wait_used(r->irq_mode);
        uint16_t used = USED_IDX;
        barrier(); /* the index before the entries, status bytes and data */
        while (dev.used_seen != used) {
            uint32_t id = USED_RING[dev.used_seen % dev.qsize].id;
            unsigned int s = id / 3;

            dev.used_seen++;
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
        }
    }
}

/* ---- entry ---- */

void blk_main(const char *cmdline, const char *test, uint64_t n)
{
    struct run r = {.bs = DEFAULT_BS, .qd = 1};
    uint64_t disk = 0, ndev = 0;
    int rand = 1, found = 0;
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

    /* First pass: parameters (disk= may follow the device words). */
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

    /* Second pass: the disk'th virtio_mmio.device= word. */
    for (const char *w = word_first(cmdline); w && !found; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "virtio_mmio.device=")) && ndev++ == disk) {
            if (!parse_vmmio(v, &dev.base, &dev.irq))
                cmdline_error("bad virtio_mmio.device=", v);
            found = 1;
        }
    }
    if (!found)
        dev_error("no virtio_mmio.device= word for disk=");

    dev_init(r.irq_mode);
    if (3 * r.qd > dev.qsize)
        dev_error("queue too small for qd=");
    if (dev.capacity < r.bs / SECTOR_SIZE)
        dev_error("disk smaller than bs=");
    chains_init(r.bs, r.qd);
    if (r.irq_mode)
        irq_init();

    struct sector_gen g;
    uint64_t bytes = n * r.bs, t0, cycles;

    gen_init(&g, rand, r.bs);
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
        irq_fini();
    if (vm_rd(VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
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
