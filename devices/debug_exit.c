/* SPDX-License-Identifier: MIT */
/* QEMU's isa-debug-exit: the guest ends the VM with a value of its choice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ringvm/devices.h>
#include <ringvm/vm.h>

#include "../core/snaprec.h"
#include "../core/vm_internal.h"

struct debug_exit {
    uint16_t port;
};

static int debug_exit_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)off;
    (void)size;
    rvm_vm_request_end(opaque, RVM_END_DEBUG_EXIT, (int64_t)data);
    return 0;
}

static const struct rvm_io_ops debug_exit_ops = {.write = debug_exit_write};

/* Its state is where it is: a restored VM gets the port at the same place. */
static int debug_exit_save(void *dev, struct recbuf *b, uint32_t index)
{
    return rec_put_port(b, REC_DEV_DEBUG_EXIT, index, ((struct debug_exit *)dev)->port);
}

static int debug_exit_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    return rec_check_port(st, len, REC_DEV_DEBUG_EXIT, index, ((struct debug_exit *)dev)->port);
}

static int debug_exit_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    uint16_t port;
    int e = rec_get_port(r->state, r->len, REC_DEV_DEBUG_EXIT, r->index, &port);

    return e < 0 ? e : rvm_debug_exit_attach(vm, port);
}

const struct vm_snap_ops debug_exit_snap = {.kind = REC_DEV_DEBUG_EXIT,
                                            .recreate = debug_exit_recreate,
                                            .save = debug_exit_save,
                                            .load = debug_exit_load};

int rvm_debug_exit_attach(struct rvm_vm *vm, uint16_t port)
{
    struct debug_exit *d;
    int r;

    if (!vm)
        return -EINVAL;
    if (!(d = calloc(1, sizeof(*d))))
        return -ENOMEM;
    d->port = port ? port : RVM_DEBUG_EXIT_PORT;
    /* Four ports, so that a 1-, 2- or 4-byte write at the base is taken whole. */
    if ((r = rvm_vm_map_io(vm, RVM_BUS_PIO, d->port, 4, &debug_exit_ops, vm)) < 0) {
        free(d);
        return r;
    }
    if ((r = vm_add_device_snap(vm, d, NULL, free, &debug_exit_snap)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_PIO, d->port);
        free(d);
    }
    return r;
}
