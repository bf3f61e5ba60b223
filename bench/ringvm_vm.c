/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "ringvm_vm.h"

/* A device that takes writes and reads zero: the cheapest possible handler. */
static int null_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    (void)opaque, (void)off, (void)size;
    *data = 0;
    return 0;
}

static int null_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)opaque, (void)off, (void)size, (void)data;
    return 0;
}

static const struct rvm_io_ops null_ops = {.read = null_read, .write = null_write};

int bench_vm_create_config(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline,
                           const struct rvm_vm_config *c, struct bench_vm *b)
{
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &b->con};
    int r;

    memset(b, 0, sizeof(*b));
    b->efd = -1;
    if ((r = rvm_vm_create(hv, c, &b->vm)) < 0)
        return r;
    if ((r = rvm_uart_attach(b->vm, &uc, NULL)) < 0 || (r = rvm_debug_exit_attach(b->vm, 0)) < 0)
        return r;
    return img ? bench_vm_load(b, img, cmdline) : 0;
}

int bench_vm_load(struct bench_vm *b, const struct guest_image *img, const char *cmdline)
{
    struct rvm_pvh_params pp = {.cmdline = cmdline};

    return rvm_vm_load_pvh(b->vm, img->elf, img->elf_size, &pp, NULL);
}

void bench_vm_config_pin_apart(struct rvm_vm_config *c, int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (cpu < 0)
        return;
    c->n_cpus = 1;
    c->cpus[0] = cpu;
    for (int i = 0; i < n && c->n_io_cpus < RVM_MAX_CPUS_LIST; i++)
        if (i != cpu)
            c->io_cpus[c->n_io_cpus++] = i;
}

int bench_vm_create(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline, int cpu,
                    struct bench_vm *b)
{
    struct rvm_vm_config c;

    rvm_vm_config_init(&c);
    c.mem.size = BENCH_MEM_SIZE;
    if (cpu >= 0) {
        c.n_cpus = 1;
        c.cpus[0] = cpu;
    }
    return bench_vm_create_config(hv, img, cmdline, &c, b);
}

int bench_vm_add_exit_targets(struct bench_vm *b)
{
    int r;

    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0)
        return -errno;
    if ((r = rvm_vm_map_io(b->vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &null_ops, NULL)) < 0 ||
        (r = rvm_vm_map_io(b->vm, RVM_BUS_MMIO, BG_MMIO_ADDR, 4096, &null_ops, NULL)) < 0 ||
        (r = rvm_vm_add_ioeventfd(b->vm, RVM_BUS_PIO, BG_IOEVENTFD_PIO_PORT, 4, false, 0, b->efd)) <
            0)
        return r;
    return rvm_vm_add_ioeventfd(b->vm, RVM_BUS_MMIO, BG_IOEVENTFD_MMIO_ADDR, 4, false, 0, b->efd);
}

void bench_vm_destroy(struct bench_vm *b)
{
    rvm_vm_destroy(b->vm);
    b->vm = NULL;
    if (b->efd >= 0)
        close(b->efd);
    b->efd = -1;
}

int bench_vm_run(struct bench_vm *b)
{
    return bench_vm_run_for(b, -1);
}

int bench_vm_run_for(struct bench_vm *b, int timeout_ms)
{
    struct rvm_vm_result res;
    int r;

    if ((r = rvm_vm_start(b->vm)) < 0 || (r = rvm_vm_wait(b->vm, timeout_ms, &res)) < 0)
        return r;
    if (res.end != RVM_END_DEBUG_EXIT || res.value != BG_EXIT_OK)
        return -EIO;
    return 0;
}
