/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport's state, shared by its registers (mmio.c), its
 * place on a VM's bus (mmio_bind.c) and its snapshots (mmio_snap.c).
 */
#ifndef RINGVM_VIRTIO_MMIO_INTERNAL_H
#define RINGVM_VIRTIO_MMIO_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_config.h>

#include <ringvm/vm.h>

#include "mmio.h"

struct mmio_queue {
    uint16_t num;
    bool ready;
    uint64_t desc, avail, used;
    int efd; /* ioeventfd: the guest's notifications of this queue */
};

struct virtio_mmio {
    struct rvm_mem *mem;
    struct rvm_vm *vm; /* NULL for a transport on no bus (virtio_mmio_create()) */
    uint64_t base;
    uint32_t gsi;
    const struct virtio_device_ops *ops;
    void *dev;
    pthread_mutex_t lock; /* register state; never held by the device's worker */
    uint32_t status;      /* __atomic: the worker may set NEEDS_RESET */
    uint32_t isr;         /* __atomic */
    uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
    uint64_t driver_features;
    bool active;
    bool resetting;          /* the driver reset it; the device has not stopped yet */
    bool reset_for_snapshot; /* a device without quiesce stopped by virtio_mmio_quiesce() */
    int irqfd;
    struct mmio_queue q[VIRTIO_MMIO_MAX_QUEUES];
    struct vq vqs[VIRTIO_MMIO_MAX_QUEUES]; /* the device's while active */
};

static inline uint64_t mmio_offered(const struct virtio_mmio *t)
{
    return t->ops->features | (1ULL << VIRTIO_F_VERSION_1);
}

static inline uint32_t mmio_status(const struct virtio_mmio *t)
{
    return __atomic_load_n(&t->status, __ATOMIC_ACQUIRE);
}

/*
 * Back to the state after power-on, once the device has stopped (waiting up
 * to timeout_ns for it): 0. -ETIMEDOUT: t->resetting, registers as they
 * were; a later call finishes it. Caller holds t->lock.
 */
int mmio_reset_locked(struct virtio_mmio *t, uint64_t timeout_ns);

/*
 * Every ready queue set up on guest memory from its registers (the others
 * reset), with the negotiated ring features. Caller holds t->lock. 0, or
 * -EINVAL when one does not pass vq_setup().
 */
int mmio_setup_queues_locked(struct virtio_mmio *t);

/* The register interface, as the bus calls it. */
extern const struct rvm_io_ops mmio_bus_ops;

#endif
