/* SPDX-License-Identifier: MIT */
/*
 * The bench guest's virtio-mmio transport and split virtqueues, shared by
 * its block (blk.c) and network (net.c) drivers. Both register layouts are
 * driven: modern (version 2) and legacy (version 1). Register offsets and
 * bit values follow the virtio 1.x spec and Linux's <linux/virtio_mmio.h>,
 * <linux/virtio_ring.h>.
 */
#ifndef RINGVM_GUEST_VIO_H
#define RINGVM_GUEST_VIO_H

#include <stdint.h>

#include "bg.h"

/* virtio-mmio register offsets (INTERRUPT_STATUS / _ACK are in bg.h: boot.S uses them). */
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

#define VIRTIO_MMIO_MAGIC  0x74726976 /* "virt" */
#define VIRTIO_ID_NET      1
#define VIRTIO_ID_BLOCK    2
#define VIRTIO_F_VERSION_1 32 /* feature bit number */

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

/* Largest queue the drivers use; VQ_MEM_SIZE bytes (4 KiB aligned) hold its rings. */
#define VQ_SIZE_MAX 256
#define VQ_MEM_SIZE (3 * 4096)

/* IOAPIC (the first one; microvm puts a second 24-pin one at +0x10000 when enabled). */
#define IOAPIC_BASE        0xfec00000ULL
#define IOAPIC_STRIDE      0x10000
#define IOAPIC_PINS        24
#define IOAPIC_IOREGSEL    0x00
#define IOAPIC_IOWIN       0x10
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_RTE_MASKED  0x10000

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

_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");

/* A device found on the command line, and what was negotiated with it. */
struct vdev {
    uint64_t base;
    uint32_t irq;
    uint32_t version;  /* 2 modern, 1 legacy */
    uint64_t features; /* negotiated */
};

/*
 * One split queue in the legacy layout (descriptors, the available ring, the
 * used ring at the next 4 KiB boundary), which also satisfies the modern
 * alignment, so both transports share it.
 */
struct vq {
    struct vring_desc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[size] */
    volatile uint16_t *used;  /* flags, idx, then the vring_used_elem ring */
    uint16_t index, size;
    uint16_t avail_idx; /* next free available-ring index (free running) */
    uint16_t used_seen; /* used-ring entries consumed (free running) */
};

#define VQ_AVAIL_FLAGS(q)   ((q)->avail[0])
#define VQ_AVAIL_IDX(q)     ((q)->avail[1])
#define VQ_AVAIL_RING(q, i) ((q)->avail[2 + (i)])
#define VQ_USED_FLAGS(q)    ((q)->used[0])
#define VQ_USED_IDX(q)      ((q)->used[1])
#define VQ_USED_RING(q)     ((volatile struct vring_used_elem *)((q)->used + 2))

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

static inline uint32_t vdev_rd(const struct vdev *d, uint32_t reg)
{
    return rd32(d->base + reg);
}

static inline void vdev_wr(const struct vdev *d, uint32_t reg, uint32_t v)
{
    wr32(d->base + reg, v);
}

/* "ERROR msg" and BG_EXIT_NO_DEVICE. */
void dev_error(const char *msg) __attribute__((noreturn));

/* A number at *p (0x hex or decimal); advances *p. 0 if none or it overflows. */
int parse_u64(const char **p, uint64_t *out);

/*
 * The index'th virtio-mmio device whose device ID is device_id (all count
 * when device_id is 0): from the `virtio_mmio.device=<size>@<base>:<irq>`
 * words of cmdline or, when it has none, from the LNRO0005 devices of the
 * ACPI DSDT (vdev_set_acpi). 1 if found, 0 if not; a malformed word is a
 * command line error.
 */
int vdev_find(const char *cmdline, uint32_t device_id, uint64_t index, struct vdev *d);

/*
 * Reset, negotiate the device's features & want (plus VERSION_1 on modern,
 * which it must offer) and set up to FEATURES_OK. Errors end the guest.
 */
void vdev_init(struct vdev *d, uint32_t device_id, uint64_t want);

/*
 * Queue index in mem (VQ_MEM_SIZE bytes, 4 KiB aligned), its size the
 * device's maximum capped at max; interrupts off when no_interrupt.
 */
void vq_init(struct vdev *d, struct vq *q, uint16_t index, void *mem, uint16_t max,
             int no_interrupt);

/* DRIVER_OK; ends the guest if the device then reports a failure. */
void vdev_ready(struct vdev *d);

/* Config space: consistent reads (modern: inside a generation check). */
uint64_t vdev_config64(const struct vdev *d, uint32_t off);
uint32_t vdev_config32(const struct vdev *d, uint32_t off);
uint8_t vdev_config8(const struct vdev *d, uint32_t off);

/* Make the entries added since the last publish visible (x86: stores stay in order). */
static inline void vq_publish(struct vq *q)
{
    barrier();
    VQ_AVAIL_IDX(q) = q->avail_idx;
}

/*
 * Publish and notify the device unless it has said it does not want it
 * (VRING_USED_F_NO_NOTIFY: it is polling). 1 if a notification was written.
 */
int vq_kick(struct vdev *d, struct vq *q);

/* Route the device's IOAPIC pin to vector on APIC ID 0 and enable the local APIC and IF. */
void vdev_irq_init(struct vdev *d, uint8_t vector);
void vdev_irq_fini(struct vdev *d, uint8_t vector);

#endif
