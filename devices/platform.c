/* SPDX-License-Identifier: MIT */
/*
 * Two small platform devices Linux guests use:
 *  - the i8042 keyboard controller's reset line: writing 0xfe (pulse the
 *    reset line) to its command port 0x64 ends the VM with RVM_END_RESET
 *    (what `reboot=k` does); the status port reads 0 (no data, ready) and
 *    the data port 0, so a probing driver finds no keyboard and moves on;
 *  - a boot timer: the first write to its port records the time since the
 *    VM was created ("init reached", written by the guest's init).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ringvm/devices.h>
#include <ringvm/vm.h>

#include "../core/log.h"
#include "../core/snaprec.h"
#include "../core/vm_internal.h"

#define I8042_DATA      0x60
#define I8042_CMD       0x64
#define I8042_CMD_RESET 0xfe

static int i8042_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    (void)opaque, (void)off, (void)size;
    *data = 0;
    return 0;
}

static int i8042_data_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)opaque, (void)off, (void)size, (void)data;
    return 0;
}

static int i8042_cmd_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)off, (void)size;
    if ((data & 0xff) == I8042_CMD_RESET)
        rvm_vm_request_end(opaque, RVM_END_RESET, 0);
    return 0;
}

static const struct rvm_io_ops i8042_data_ops = {.read = i8042_read, .write = i8042_data_write};
static const struct rvm_io_ops i8042_cmd_ops = {.read = i8042_read, .write = i8042_cmd_write};

/* Stateless: a restored VM gets the device again. */
static int i8042_save(void *dev, struct recbuf *b, uint32_t index)
{
    (void)dev;
    rec_put(b, REC_DEV_I8042, index, "", 0);
    return b->err;
}

static int i8042_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    const void *p;
    uint32_t l;

    (void)dev;
    return rec_find(st, len, REC_DEV_I8042, index, &p, &l) < 0 || l != 0 ? -EBADMSG : 0;
}

static int i8042_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    (void)r;
    return rvm_i8042_attach(vm);
}

const struct vm_snap_ops i8042_snap = {
    .kind = REC_DEV_I8042, .recreate = i8042_recreate, .save = i8042_save, .load = i8042_load};

int rvm_i8042_attach(struct rvm_vm *vm)
{
    int r;

    if (!vm)
        return -EINVAL;
    /* The data and command ports (0x61, between them, is the PIT's speaker port: KVM's). */
    if ((r = rvm_vm_map_io(vm, RVM_BUS_PIO, I8042_DATA, 1, &i8042_data_ops, vm)) < 0)
        return r;
    if ((r = rvm_vm_map_io(vm, RVM_BUS_PIO, I8042_CMD, 1, &i8042_cmd_ops, vm)) < 0)
        goto unmap;
    if ((r = vm_add_device_snap(vm, vm, NULL, NULL, &i8042_snap)) < 0)
        goto unmap2;
    return 0;
unmap2:
    rvm_vm_unmap_io(vm, RVM_BUS_PIO, I8042_CMD);
unmap:
    rvm_vm_unmap_io(vm, RVM_BUS_PIO, I8042_DATA);
    return r;
}

/* ---- boot timer ---- */

struct boot_timer {
    struct rvm_vm *vm;
    uint16_t port;
};

static int boot_timer_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct boot_timer *t = opaque;
    struct rvm_vm *vm = t->vm;
    uint64_t zero = 0, ns = vm_now_ns() - vm->created_ns;

    (void)off, (void)size, (void)data;
    if (!ns)
        ns = 1; /* 0 means not yet */
    /* The first mark counts; later ones (a second init, a restart) are ignored. */
    if (__atomic_compare_exchange_n(&vm->boot_mark_ns, &zero, ns, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        rvm_info(vm->hv, "boot timer: the guest marked %.3f ms after the VM was created",
                 (double)ns / 1e6);
    return 0;
}

static int boot_timer_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    (void)opaque, (void)off, (void)size;
    *data = 0;
    return 0;
}

static const struct rvm_io_ops boot_timer_ops = {.read = boot_timer_read,
                                                 .write = boot_timer_write};

static int boot_timer_save(void *dev, struct recbuf *b, uint32_t index)
{
    return rec_put_port(b, REC_DEV_BOOT_TIMER, index, ((struct boot_timer *)dev)->port);
}

static int boot_timer_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    return rec_check_port(st, len, REC_DEV_BOOT_TIMER, index, ((struct boot_timer *)dev)->port);
}

static int boot_timer_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    uint16_t port;
    int e = rec_get_port(r->state, r->len, REC_DEV_BOOT_TIMER, r->index, &port);

    return e < 0 ? e : rvm_boot_timer_attach(vm, port);
}

const struct vm_snap_ops boot_timer_snap = {.kind = REC_DEV_BOOT_TIMER,
                                            .recreate = boot_timer_recreate,
                                            .save = boot_timer_save,
                                            .load = boot_timer_load};

int rvm_boot_timer_attach(struct rvm_vm *vm, uint16_t port)
{
    struct boot_timer *t;
    int r;

    if (!vm)
        return -EINVAL;
    if (!(t = calloc(1, sizeof(*t))))
        return -ENOMEM;
    t->vm = vm;
    t->port = port ? port : RVM_BOOT_TIMER_PORT;
    if ((r = rvm_vm_map_io(vm, RVM_BUS_PIO, t->port, 1, &boot_timer_ops, t)) < 0) {
        free(t);
        return r;
    }
    if ((r = vm_add_device_snap(vm, t, NULL, free, &boot_timer_snap)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_PIO, t->port);
        free(t);
    }
    return r;
}

int rvm_vm_boot_time(const struct rvm_vm *vm, uint64_t *ns)
{
    uint64_t v;

    if (!vm || !ns)
        return -EINVAL;
    v = __atomic_load_n(&vm->boot_mark_ns, __ATOMIC_ACQUIRE);
    if (!v)
        return -ENOENT;
    *ns = v;
    return 0;
}
