/* SPDX-License-Identifier: MIT */
/*
 * pvpanic, QEMU's ISA device (its pvpanic spec): one port that reads the
 * events the device can report and takes the event a guest writes when its
 * kernel panics. Linux's pvpanic driver finds it through ACPI (_HID
 * QEMU0001, one I/O port) and writes PVPANIC_PANICKED from its panic
 * notifier, before `panic=` reboots the machine, so the VM ends with
 * RVM_END_PANIC instead of a reboot that looks like a clean one.
 */
#include <errno.h>
#include <stdlib.h>

#include <ringvm/devices.h>
#include <ringvm/vm.h>

#include "../core/log.h"
#include "../core/snaprec.h"
#include "../core/vm_internal.h"

struct pvpanic {
    struct rvm_vm *vm;
    uint16_t port;
};

static int pvpanic_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    (void)opaque, (void)off, (void)size;
    *data = RVM_PVPANIC_PANICKED | RVM_PVPANIC_CRASH_LOADED;
    return 0;
}

static int pvpanic_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct pvpanic *p = opaque;

    (void)off, (void)size;
    data &= 0xff;
    if (data & RVM_PVPANIC_PANICKED) {
        rvm_warn(p->vm->hv, "pvpanic: the guest kernel panicked (event 0x%llx)",
                 (unsigned long long)data);
        rvm_vm_request_end(p->vm, RVM_END_PANIC, (int64_t)data);
    } else if (data & RVM_PVPANIC_CRASH_LOADED) {
        /* A crash kernel takes over: the VM goes on, into it. */
        rvm_warn(p->vm->hv, "pvpanic: the guest kernel crashed into its crash kernel");
    }
    return 0;
}

static const struct rvm_io_ops pvpanic_ops = {.read = pvpanic_read, .write = pvpanic_write};

static int pvpanic_save(void *dev, struct recbuf *b, uint32_t index)
{
    return rec_put_port(b, REC_DEV_PVPANIC, index, ((struct pvpanic *)dev)->port);
}

static int pvpanic_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    return rec_check_port(st, len, REC_DEV_PVPANIC, index, ((struct pvpanic *)dev)->port);
}

static int pvpanic_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    uint16_t port;
    int e = rec_get_port(r->state, r->len, REC_DEV_PVPANIC, r->index, &port);

    return e < 0 ? e : rvm_pvpanic_attach(vm, port);
}

const struct vm_snap_ops pvpanic_snap = {.kind = REC_DEV_PVPANIC,
                                         .recreate = pvpanic_recreate,
                                         .save = pvpanic_save,
                                         .load = pvpanic_load};

int rvm_pvpanic_attach(struct rvm_vm *vm, uint16_t port)
{
    struct rvm_acpi_device d = {.name = "PEVT", .hid = "QEMU0001", .io = true, .len = 1, .gsi = -1};
    struct pvpanic *p;
    int r;

    if (!vm)
        return -EINVAL;
    if (!(p = calloc(1, sizeof(*p))))
        return -ENOMEM;
    p->vm = vm;
    p->port = port ? port : RVM_PVPANIC_PORT;
    d.base = p->port;
    if ((r = rvm_vm_map_io(vm, RVM_BUS_PIO, p->port, 1, &pvpanic_ops, p)) < 0) {
        free(p);
        return r;
    }
    if ((r = vm_add_fw_dev(vm, &d)) < 0 ||
        (r = vm_add_device_snap(vm, p, NULL, free, &pvpanic_snap)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_PIO, p->port);
        free(p);
    }
    return r;
}
