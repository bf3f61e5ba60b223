/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport, modern (version 2). It knows nothing of a
 * device's type: a device describes itself with struct virtio_device_ops and
 * gets its queues, set up and checked, when the driver sets DRIVER_OK.
 *
 * Queue notifications are ioeventfds (one per queue, matching the queue
 * index written to QueueNotify), so a kick never leaves KVM; the device's
 * worker waits on them. Interrupts go out through one irqfd on the device's
 * IOAPIC pin. Register handlers run on vCPU threads and serialise on the
 * transport's lock.
 */
#ifndef RINGVM_VIRTIO_MMIO_H
#define RINGVM_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "virtqueue.h"

struct rvm_mem;
struct rvm_vm;
struct virtio_mmio;

#define VIRTIO_MMIO_SIZE       0x200 /* registers and up to 256 bytes of config space */
#define VIRTIO_MMIO_MAX_QUEUES 16
#define VIRTIO_MMIO_VENDOR     0x4d565252 /* "RRVM" */

struct virtio_device_ops {
    uint32_t device_id;   /* VIRTIO_ID_* */
    uint64_t features;    /* offered; VIRTIO_F_VERSION_1 is added by the transport */
    uint16_t num_queues;  /* 1..VIRTIO_MMIO_MAX_QUEUES */
    uint16_t queue_max;   /* largest queue size offered, a power of two */
    uint32_t config_size; /* bytes of device config space, <= 256 */
    /* Copies config bytes [off, off+len) (already bounds-checked) out / in. */
    void (*config_read)(void *dev, uint32_t off, void *buf, uint32_t len);
    void (*config_write)(void *dev, uint32_t off, const void *buf, uint32_t len);
    /*
     * DRIVER_OK: the queues (num_queues of them; size 0 = not enabled by the
     * driver) and the accepted features. 0, or -errno to fail the device
     * (NEEDS_RESET). The device may keep the pointer until reset.
     */
    int (*activate)(void *dev, struct vq *queues, uint64_t features);
    /*
     * Stops all processing: 0 once it has, the queues forgotten after.
     * Waits up to timeout_ns for what is in flight (cancelled first where
     * the backend allows); -ETIMEDOUT when that has not completed: the
     * device then still owns its queues and buffers, goes on stopping, and a
     * later call waits again.
     */
    int (*reset)(void *dev, uint64_t timeout_ns);
    /*
     * Optional, for snapshots: stop writing guest memory (what is in flight
     * finished and published) without forgetting anything (0; -ETIMEDOUT
     * when in-flight requests do not complete in the device's bound), and
     * go on. A device without them is reset and activated again instead,
     * which its driver may see.
     */
    int (*quiesce)(void *dev);
    void (*resume)(void *dev);
};

/*
 * Maps a device at [base, base + VIRTIO_MMIO_SIZE) on the VM's MMIO bus with
 * its interrupt on IOAPIC pin gsi, and binds one ioeventfd per queue. The
 * device owns the transport: its destroy calls virtio_mmio_destroy() first.
 */
int virtio_mmio_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                       const struct virtio_device_ops *ops, void *dev, struct virtio_mmio **out);

/*
 * A transport over guest memory alone, on no bus and bound to no VM: its
 * interrupt and queue notifications are plain eventfds, its registers are
 * reached through virtio_mmio_access(). What virtio_mmio_attach() builds
 * on, and what the tests and the fuzzer drive. 0 or -errno.
 */
int virtio_mmio_create(struct rvm_mem *mem, const struct virtio_device_ops *ops, void *dev,
                       struct virtio_mmio **out);

/*
 * One access at offset off of the window (registers: 4 bytes, aligned;
 * config space: 1, 2, 4 or 8 bytes inside it), as the bus makes it. 0, or
 * -EINVAL for an access the transport refuses (a read then gives 0).
 */
int virtio_mmio_access(struct virtio_mmio *t, uint64_t off, uint32_t size, bool is_write,
                       uint64_t *data);

/*
 * How long a guest's reset (status 0) may hold its vCPU for the device's
 * in-flight requests. Past it the reset goes on in the background: status
 * reads back nonzero (a driver waits for 0, as virtio 1.x asks) and writes
 * are ignored until the device has stopped, which each access checks again
 * for as long once more.
 */
#define VIRTIO_RESET_WAIT_NS (100 * 1000000ULL)

/*
 * Resets the device if it is live, waiting for it without a bound, and
 * frees the transport (NULL: nothing).
 */
void virtio_mmio_destroy(struct virtio_mmio *t);

/* The eventfd the guest's notifications of queue q signal (the device polls it). */
int virtio_mmio_queue_eventfd(const struct virtio_mmio *t, uint16_t q);

/* Sets ISR bits (VIRTIO_MMIO_INT_VRING / _CONFIG) and raises the interrupt. */
int virtio_mmio_interrupt(struct virtio_mmio *t, uint32_t isr_bits);

/* Marks the device broken (NEEDS_RESET) and tells the driver (config interrupt). */
void virtio_mmio_needs_reset(struct virtio_mmio *t);

/* The device status register, for tests and logs. */
uint32_t virtio_mmio_status(const struct virtio_mmio *t);

/* The VM's next virtio slot: its window base and IOAPIC pin. -ENOSPC when all are taken. */
int virtio_mmio_next_slot(struct rvm_vm *vm, uint64_t *base, uint32_t *gsi);

/* Writes "virtio_mmio.device=<size>@<base>:<irq>" (Linux's form) into buf. */
int virtio_mmio_cmdline(uint64_t base, uint32_t gsi, char *buf, size_t len);

/*
 * A transport's state, saved inside its device's record (a device's state
 * and its transport's are one: they are restored together or not at all);
 * the tests craft them.
 */
struct mmio_queue_state {
    uint64_t desc, avail, used;
    uint16_t num, last_avail, used_idx, signalled_used;
    uint8_t ready, signalled_valid, broken, pad;
    uint32_t pad2;
};

struct mmio_state {
    uint64_t base, driver_features;
    uint32_t gsi, device_id, status, isr, dev_feat_sel, drv_feat_sel, queue_sel, nq;
    uint8_t active, pad[7];
    struct mmio_queue_state q[VIRTIO_MMIO_MAX_QUEUES];
};

/*
 * Snapshots, for the device that owns t. Quiesce stops the device writing
 * guest memory (its quiesce op, else a reset) and resume lets it go on (or
 * activates it again); save reads the transport as it stands (quiesced
 * first, so the queues hold still). Load, into a transport just attached:
 * checks the state is one only a real transport could be in (-EBADMSG) and
 * is this transport's (-EINVAL), sets registers, queues (checked against
 * guest memory again) and their positions, and activates a live device
 * where it stopped (-EIO if it cannot start).
 */
/* These two: NULL is nothing. Quiesce: 0, or -ETIMEDOUT / -EBUSY (a reset not yet done). */
int virtio_mmio_quiesce(struct virtio_mmio *t);
void virtio_mmio_resume(struct virtio_mmio *t);
void virtio_mmio_save(struct virtio_mmio *t, struct mmio_state *s);
int virtio_mmio_load(struct virtio_mmio *t, const struct mmio_state *s);

#endif
