/* SPDX-License-Identifier: MIT */
/*
 * The device kinds a snapshot can hold, for restore to find by record kind.
 * Each device keeps its own save, load and re-creation; this list is all
 * that core learns of them.
 */
#include <stddef.h>

#include "../core/vm_internal.h"

extern const struct vm_snap_ops uart_snap, debug_exit_snap, i8042_snap, boot_timer_snap,
    pvpanic_snap, virtio_blk_snap, virtio_net_snap;

/* A virtio device's transport is part of its device (and of its record). */
static const struct vm_snap_ops *const kinds[] = {
    &uart_snap,    &debug_exit_snap, &i8042_snap,      &boot_timer_snap,
    &pvpanic_snap, &virtio_blk_snap, &virtio_net_snap,
};

const struct vm_snap_ops *vm_device_kind(uint32_t kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i]->kind == kind)
            return kinds[i];
    return NULL;
}
