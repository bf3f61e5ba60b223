/* SPDX-License-Identifier: MIT */
/* QEMU's isa-debug-exit: the guest ends the VM with a value of its choice. */
#include <errno.h>

#include <ringvm/devices.h>
#include <ringvm/vm.h>

static int debug_exit_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)off;
    (void)size;
    rvm_vm_request_end(opaque, RVM_END_DEBUG_EXIT, (int64_t)data);
    return 0;
}

static const struct rvm_io_ops debug_exit_ops = {.write = debug_exit_write};

int rvm_debug_exit_attach(struct rvm_vm *vm, uint16_t port)
{
    if (!vm)
        return -EINVAL;
    /* Four ports, so that a 1-, 2- or 4-byte write at the base is taken whole. */
    return rvm_vm_map_io(vm, RVM_BUS_PIO, port ? port : RVM_DEBUG_EXIT_PORT, 4, &debug_exit_ops,
                         vm);
}
