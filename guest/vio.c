/* SPDX-License-Identifier: MIT */
/* The bench guest's virtio-mmio transport and split virtqueues (see vio.h). */
#include <stddef.h>
#include <stdint.h>

#include "vio.h"

#define LEGACY_PAGE_SIZE   4096
#define LEGACY_QUEUE_ALIGN 4096

_Static_assert(VQ_SIZE_MAX * 16 + 6 + 2 * VQ_SIZE_MAX <= 2 * 4096, "avail ring fits");
_Static_assert(2 * 4096 + 6 + 8 * VQ_SIZE_MAX <= VQ_MEM_SIZE, "used ring fits");

void dev_error(const char *msg)
{
    con_puts("ERROR ");
    con_puts(msg);
    con_putc('\n');
    bg_exit(BG_EXIT_NO_DEVICE);
}

int parse_u64(const char **p, uint64_t *out)
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
    if (*v == 'K' || *v == 'k' || *v == 'M' || *v == 'm' || *v == 'G' || *v == 'g')
        v++;
    if (*v++ != '@' || !parse_u64(&v, base) || *v++ != ':' || !parse_u64(&v, &irq64))
        return 0;
    if (irq64 >= 2 * IOAPIC_PINS || *base == 0 || *base >= (1ULL << 32) || (*base & 3))
        return 0;
    *irq = (uint32_t)irq64;
    return 1;
}

static uint64_t acpi_rsdp;

void vdev_set_acpi(uint64_t rsdp_paddr)
{
    acpi_rsdp = rsdp_paddr;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int same(const uint8_t *a, const char *b, size_t n)
{
    while (n--)
        if (*a++ != (uint8_t)*b++)
            return 0;
    return 1;
}

/* The DSDT through RSDP (revision 2), XSDT and FADT; its length in *len. NULL if none. */
static const uint8_t *find_dsdt(uint32_t *len)
{
    const uint8_t *rsdp = (const uint8_t *)(uintptr_t)acpi_rsdp, *xsdt, *fadt;

    if (!acpi_rsdp || !same(rsdp, "RSD PTR ", 8) || rsdp[15] < 2)
        return 0;
    xsdt = (const uint8_t *)(uintptr_t)get64(rsdp + 24);
    if (!xsdt || !same(xsdt, "XSDT", 4))
        return 0;
    for (uint32_t off = 36; off + 8 <= get32(xsdt + 4); off += 8) {
        fadt = (const uint8_t *)(uintptr_t)get64(xsdt + off);
        if (!same(fadt, "FACP", 4) || get32(fadt + 4) < 148)
            continue;
        const uint8_t *dsdt = (const uint8_t *)(uintptr_t)get64(fadt + 140);
        if (!dsdt)
            dsdt = (const uint8_t *)(uintptr_t)get32(fadt + 40);
        if (!dsdt || !same(dsdt, "DSDT", 4))
            return 0;
        *len = get32(dsdt + 4);
        return dsdt;
    }
    return 0;
}

/*
 * The DSDT's virtio-mmio devices in order: after each _HID "LNRO0005", its
 * _CRS's Memory32Fixed (base) and Interrupt (the first GSI) descriptors.
 * Finds the index'th with device_id as vdev_find() does.
 */
static int acpi_find(uint32_t device_id, uint64_t index, struct vdev *d)
{
    static const char hid[] = "_HID\x0dLNRO0005";
    uint32_t len;
    const uint8_t *t = find_dsdt(&len);

    if (!t)
        return 0;
    for (uint32_t i = 36; i + sizeof(hid) <= len; i++) {
        uint32_t end = i + 96 < len ? i + 96 : len, j;
        uint64_t base = 0;
        uint32_t irq = 0;

        if (!same(t + i, hid, sizeof(hid)))
            continue;
        for (j = i + sizeof(hid); j + 12 <= end && !base; j++)
            if (t[j] == 0x86 && t[j + 1] == 9 && t[j + 2] == 0)
                base = get32(t + j + 4);
        for (; j + 9 <= end && !irq; j++)
            if (t[j] == 0x89 && t[j + 1] == 6 && t[j + 2] == 0 && t[j + 4] == 1)
                irq = get32(t + j + 5);
        if (!base || !irq || irq >= IOAPIC_PINS)
            continue;
        d->base = base;
        d->irq = irq;
        if (device_id && (vdev_rd(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC ||
                          vdev_rd(d, VIRTIO_MMIO_DEVICE_ID) != device_id))
            continue;
        if (index-- == 0)
            return 1;
    }
    return 0;
}

int vdev_find(const char *cmdline, uint32_t device_id, uint64_t index, struct vdev *d)
{
    int words = 0;

    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v = word_value(w, "virtio_mmio.device=");

        if (!v)
            continue;
        words = 1;
        if (!parse_vmmio(v, &d->base, &d->irq))
            cmdline_error("bad virtio_mmio.device=", v);
        if (device_id && (vdev_rd(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC ||
                          vdev_rd(d, VIRTIO_MMIO_DEVICE_ID) != device_id))
            continue;
        if (index-- == 0)
            return 1;
    }
    return words ? 0 : acpi_find(device_id, index, d);
}

void vdev_init(struct vdev *d, uint32_t device_id, uint64_t want)
{
    uint32_t status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    uint64_t offered;

    if (vdev_rd(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC)
        dev_error("bad virtio-mmio magic");
    d->version = vdev_rd(d, VIRTIO_MMIO_VERSION);
    if (d->version != 1 && d->version != 2)
        dev_error("unsupported virtio-mmio version");
    if (vdev_rd(d, VIRTIO_MMIO_DEVICE_ID) != device_id)
        dev_error(device_id == VIRTIO_ID_BLOCK ? "not a virtio block device"
                                               : "not a virtio network device");

    vdev_wr(d, VIRTIO_MMIO_STATUS, 0); /* reset */
    if (d->version >= 2)
        while (vdev_rd(d, VIRTIO_MMIO_STATUS) != 0)
            cpu_pause();
    vdev_wr(d, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE);
    vdev_wr(d, VIRTIO_MMIO_STATUS, status);

    vdev_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    offered = vdev_rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
    vdev_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    offered |= (uint64_t)vdev_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;

    if (d->version >= 2) {
        if (!(offered & (1ULL << VIRTIO_F_VERSION_1)))
            dev_error("device does not offer VIRTIO_F_VERSION_1");
        want |= 1ULL << VIRTIO_F_VERSION_1;
    } else {
        want &= ~(1ULL << VIRTIO_F_VERSION_1) & 0xffffffffULL; /* legacy: 32 bits */
    }
    d->features = offered & want;
    vdev_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    vdev_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
    vdev_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    vdev_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));

    if (d->version >= 2) {
        status |= STATUS_FEATURES_OK;
        vdev_wr(d, VIRTIO_MMIO_STATUS, status);
        if (!(vdev_rd(d, VIRTIO_MMIO_STATUS) & STATUS_FEATURES_OK)) {
            vdev_wr(d, VIRTIO_MMIO_STATUS, status | STATUS_FAILED);
            dev_error("device refused FEATURES_OK");
        }
    } else {
        vdev_wr(d, VIRTIO_MMIO_GUEST_PAGE_SIZE, LEGACY_PAGE_SIZE);
    }
}

void vq_init(struct vdev *d, struct vq *q, uint16_t index, void *mem, uint16_t max,
             int no_interrupt)
{
    uint8_t *m = mem;

    vdev_wr(d, VIRTIO_MMIO_QUEUE_SEL, index);
    if (d->version >= 2 ? vdev_rd(d, VIRTIO_MMIO_QUEUE_READY) : vdev_rd(d, VIRTIO_MMIO_QUEUE_PFN))
        dev_error("queue already in use");
    uint32_t qmax = vdev_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (qmax == 0)
        dev_error("queue not available");
    if (max > VQ_SIZE_MAX)
        max = VQ_SIZE_MAX;
    q->index = index;
    q->size = (uint16_t)(qmax < max ? qmax : max);
    q->avail_idx = q->used_seen = 0;
    uint32_t used_off =
        (q->size * 16u + 6 + 2 * q->size + LEGACY_QUEUE_ALIGN - 1) & ~(LEGACY_QUEUE_ALIGN - 1);
    q->desc = (struct vring_desc *)m;
    q->avail = (volatile uint16_t *)(m + q->size * 16u);
    q->used = (volatile uint16_t *)(m + used_off);
    for (uint32_t i = 0; i < VQ_MEM_SIZE; i++)
        m[i] = 0;
    VQ_AVAIL_FLAGS(q) = no_interrupt ? VRING_AVAIL_F_NO_INTERRUPT : 0;
    vdev_wr(d, VIRTIO_MMIO_QUEUE_NUM, q->size);
    if (d->version >= 2) {
        uint64_t de = (uintptr_t)q->desc, a = (uintptr_t)q->avail, u = (uintptr_t)q->used;

        vdev_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)de);
        vdev_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(de >> 32));
        vdev_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)a);
        vdev_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(a >> 32));
        vdev_wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)u);
        vdev_wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(u >> 32));
        vdev_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
    } else {
        /* Legacy: the device derives the avail/used addresses from the PFN, as above. */
        vdev_wr(d, VIRTIO_MMIO_QUEUE_ALIGN, LEGACY_QUEUE_ALIGN);
        vdev_wr(d, VIRTIO_MMIO_QUEUE_PFN, (uint32_t)((uintptr_t)m / LEGACY_PAGE_SIZE));
    }
}

void vdev_ready(struct vdev *d)
{
    uint32_t status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK;

    if (d->version >= 2)
        status |= STATUS_FEATURES_OK;
    vdev_wr(d, VIRTIO_MMIO_STATUS, status);
    if (vdev_rd(d, VIRTIO_MMIO_STATUS) & (STATUS_NEEDS_RESET | STATUS_FAILED))
        dev_error("device needs reset");
}

uint64_t vdev_config64(const struct vdev *d, uint32_t off)
{
    uint32_t gen, lo, hi;

    do {
        gen = d->version >= 2 ? vdev_rd(d, VIRTIO_MMIO_CONFIG_GENERATION) : 0;
        lo = vdev_rd(d, VIRTIO_MMIO_CONFIG + off);
        hi = vdev_rd(d, VIRTIO_MMIO_CONFIG + off + 4);
    } while (d->version >= 2 && gen != vdev_rd(d, VIRTIO_MMIO_CONFIG_GENERATION));
    return ((uint64_t)hi << 32) | lo;
}

/* Byte-wise reads: config fields need not be 4-byte aligned (the MAC is not). */
uint8_t vdev_config8(const struct vdev *d, uint32_t off)
{
    return *(volatile uint8_t *)(uintptr_t)(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint32_t vdev_config32(const struct vdev *d, uint32_t off)
{
    return vdev_rd(d, VIRTIO_MMIO_CONFIG + off);
}

int vq_kick(struct vdev *d, struct vq *q)
{
    vq_publish(q);
    /* The index before the device's flag is read (a store then a load: a full fence). */
    __asm__ volatile("mfence" ::: "memory");
    if (VQ_USED_FLAGS(q) & VRING_USED_F_NO_NOTIFY)
        return 0;
    vdev_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
    return 1;
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

void vdev_irq_init(struct vdev *d, uint8_t vector)
{
    uint64_t ioapic = IOAPIC_BASE + (uint64_t)(d->irq / IOAPIC_PINS) * IOAPIC_STRIDE;
    uint32_t pin = d->irq % IOAPIC_PINS;

    bg_cpl0_call(pic_mask_all, 0);
    /* Drop anything pending from before, so the first completion is a fresh edge. */
    vdev_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, vdev_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS));
    wr32(APIC_BASE + APIC_SVR, APIC_SVR_ENABLE | VEC_SPURIOUS);
    /* Destination (high word) first, then unmask: fixed, physical, active high, edge. */
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(pin) + 1);
    wr32(ioapic + IOAPIC_IOWIN, 0u << 24);
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(pin));
    wr32(ioapic + IOAPIC_IOWIN, vector);
    bg_cpl0_call(bg_set_user_if, 1);
}

void vdev_irq_fini(struct vdev *d, uint8_t vector)
{
    uint64_t ioapic = IOAPIC_BASE + (uint64_t)(d->irq / IOAPIC_PINS) * IOAPIC_STRIDE;

    bg_cpl0_call(bg_set_user_if, 0);
    wr32(ioapic + IOAPIC_IOREGSEL, IOAPIC_REDTBL(d->irq % IOAPIC_PINS));
    wr32(ioapic + IOAPIC_IOWIN, IOAPIC_RTE_MASKED | vector);
}
