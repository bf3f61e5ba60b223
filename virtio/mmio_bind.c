/* SPDX-License-Identifier: MIT */
/* A virtio-mmio transport on a VM: its window, ioeventfds, irqfd and ACPI entry (mmio.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <linux/virtio_mmio.h>

#include <ringvm/virtio.h>
#include <ringvm/vm.h>

#include "../core/vm_internal.h"
#include "mmio_internal.h"

/*
 * The device for the DSDT: LNRO0005 (what Linux's virtio_mmio driver
 * matches), named and numbered by its slot.
 */
static int describe(struct rvm_vm *vm, uint64_t base, uint32_t gsi)
{
    uint64_t slot = (base - RVM_VIRTIO_MMIO_BASE) / RVM_VIRTIO_MMIO_STRIDE;
    struct rvm_acpi_device d = {
        .hid = "LNRO0005", .base = base, .len = VIRTIO_MMIO_SIZE, .gsi = (int32_t)gsi};

    if (base < RVM_VIRTIO_MMIO_BASE || slot > 999)
        slot = vm_fw_devs(vm, NULL, 0) % 1000; /* outside the slots (tests): still unique */
    d.uid = (uint32_t)slot;
    snprintf(d.name, sizeof(d.name), "V%03u", (unsigned)slot);
    return vm_add_fw_dev(vm, &d);
}

int virtio_mmio_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                       const struct virtio_device_ops *ops, void *dev, struct virtio_mmio **out)
{
    struct virtio_mmio *t;
    int r;

    if (!vm)
        return -EINVAL;
    if ((r = virtio_mmio_create(rvm_vm_mem(vm), ops, dev, &t)) < 0)
        return r;
    t->vm = vm;
    t->base = base;
    t->gsi = gsi;
    if ((r = rvm_vm_add_irqfd(vm, gsi, t->irqfd)) < 0)
        goto err;
    for (int i = 0; i < ops->num_queues; i++)
        if ((r = rvm_vm_add_ioeventfd(vm, RVM_BUS_MMIO, base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, true,
                                      (uint64_t)i, t->q[i].efd)) < 0)
            goto err;
    if ((r = rvm_vm_map_io(vm, RVM_BUS_MMIO, base, VIRTIO_MMIO_SIZE, &mmio_bus_ops, t)) < 0)
        goto err;
    if ((r = describe(vm, base, gsi)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_MMIO, base);
        goto err;
    }
    if (out)
        *out = t;
    return 0;

err:
    /* KVM drops its bindings with the VM; closing our ends is enough here. */
    virtio_mmio_destroy(t);
    return r;
}

int virtio_mmio_next_slot(struct rvm_vm *vm, uint64_t *base, uint32_t *gsi)
{
    uint32_t slot;

    pthread_mutex_lock(&vm->dev_lock);
    slot = vm->virtio_slots < RVM_VIRTIO_MAX_DEVICES ? vm->virtio_slots++ : UINT32_MAX;
    pthread_mutex_unlock(&vm->dev_lock);
    if (slot == UINT32_MAX)
        return -ENOSPC;
    *base = RVM_VIRTIO_MMIO_BASE + slot * RVM_VIRTIO_MMIO_STRIDE;
    *gsi = RVM_VIRTIO_GSI_BASE + slot;
    return 0;
}

int virtio_mmio_cmdline(uint64_t base, uint32_t gsi, char *buf, size_t len)
{
    int n = snprintf(buf, len, "virtio_mmio.device=0x%x@0x%llx:%u", VIRTIO_MMIO_SIZE,
                     (unsigned long long)base, gsi);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}
