/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../arch/x86_64/arch.h"
#include "log.h"
#include "vm_internal.h"

int vm_register_memory(struct rvm_vm *vm, uint32_t flags)
{
    for (unsigned i = 0; i < rvm_mem_region_count(vm->mem); i++) {
        const struct rvm_mem_region *r = rvm_mem_region(vm->mem, i);
        struct kvm_userspace_memory_region slot = {
            .slot = i,
            .flags = flags,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uintptr_t)r->hva,
        };

        if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
            int e = -errno;
            rvm_err(vm->hv, "KVM_SET_USER_MEMORY_REGION slot %u: %s", i, strerror(-e));
            return e;
        }
    }
    return 0;
}

uint64_t vm_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int rvm_vm_create(struct rvm_hv *hv, const struct rvm_vm_config *config, struct rvm_vm **out)
{
    struct rvm_mem_config mc;
    struct rvm_vm *vm;
    int r;

    if (!hv || !config || !out)
        return -EINVAL;
    if (config->vcpus > hv->caps.max_vcpus) {
        rvm_err(hv, "%u vCPUs asked, KVM allows %u", config->vcpus, hv->caps.max_vcpus);
        return -EINVAL;
    }
    if (config->n_cpus > RVM_MAX_CPUS_LIST || config->n_io_cpus > RVM_MAX_CPUS_LIST)
        return -EINVAL;
    if (config->n_cpuid_edits > RVM_MAX_CPUID_EDITS)
        return -EINVAL;
    for (unsigned i = 0; i < config->n_cpuid_edits; i++)
        if (config->cpuid_edits[i].reg > RVM_CPUID_EDX) {
            rvm_err(hv, "CPUID edit %u: no register %u", i, config->cpuid_edits[i].reg);
            return -EINVAL;
        }
    for (unsigned i = 0; i < config->n_io_cpus; i++)
        if (config->io_cpus[i] < 0 || config->io_cpus[i] >= CPU_SETSIZE) {
            rvm_err(hv, "I/O CPU %d out of range", config->io_cpus[i]);
            return -EINVAL;
        }
    vm = aligned_alloc(64, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    memset(vm, 0, sizeof(*vm));
    vm->hv = hv;
    vm->created_ns = vm_now_ns();
    vm->fd = -1;
    vm->config = *config;
    if (sched_getaffinity(0, sizeof(vm->creator_cpus), &vm->creator_cpus) < 0)
        CPU_ZERO(&vm->creator_cpus);
    vm->nvcpus = config->vcpus ? config->vcpus : 1;
    vm->vcpus = calloc(vm->nvcpus, sizeof(vm->vcpus[0]));
    vm->join_buf = calloc(vm->nvcpus, sizeof(vm->join_buf[0]));
    if (!vm->vcpus || !vm->join_buf) {
        r = -ENOMEM;
        goto err_free;
    }
    pthread_mutex_init(&vm->ctl, NULL);
    pthread_cond_init(&vm->cond, NULL);
    pthread_mutex_init(&vm->dev_lock, NULL);
    pthread_mutex_init(&vm->join_lock, NULL);
    if ((r = bus_init(&vm->bus[RVM_BUS_PIO], 0x10000)) < 0)
        goto err_sync;
    if ((r = bus_init(&vm->bus[RVM_BUS_MMIO], 0)) < 0)
        goto err_bus_pio;

    /*
     * KVM_CREATE_VM fails with EINTR when the thread has a signal or task
     * work pending while it registers its MMU notifier (io_uring completions
     * of a snapshot this thread just took are such work): each return to
     * user space runs it, so asking again succeeds.
     */
    for (int tries = 0;
         (vm->fd = ioctl(hv->kvm_fd, KVM_CREATE_VM, 0)) < 0 && errno == EINTR && tries < 1000;
         tries++)
        ;
    if (vm->fd < 0) {
        r = -errno;
        rvm_err(hv, "KVM_CREATE_VM: %s", strerror(-r));
        goto err_bus_mmio;
    }
    if ((r = arch_vm_init(vm)) < 0)
        goto err_vm;

    mc = config->mem;
    if (mc.numa_node < 0)
        mc.numa_node = config->numa_node;
    if ((r = rvm_mem_create(hv, &mc, &vm->mem)) < 0)
        goto err_vm;
    if ((r = vm_register_memory(vm, 0)) < 0)
        goto err_mem;
    if ((r = vm_dirty_init(vm)) < 0)
        goto err_dirty;
    __atomic_store_n(&vm->lifecycle, RVM_VM_CREATED, __ATOMIC_RELEASE);
    *out = vm;
    return 0;

err_dirty:
    vm_dirty_free(&vm->dirty);
    pthread_mutex_destroy(&vm->dirty.lock);
err_mem:
    rvm_mem_destroy(vm->mem);
err_vm:
    close(vm->fd);
err_bus_mmio:
    bus_fini(&vm->bus[RVM_BUS_MMIO]);
err_bus_pio:
    bus_fini(&vm->bus[RVM_BUS_PIO]);
err_sync:
    pthread_mutex_destroy(&vm->join_lock);
    pthread_mutex_destroy(&vm->dev_lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->ctl);
err_free:
    free(vm->join_buf);
    free(vm->vcpus);
    free(vm);
    return r;
}

static void vcpu_free(struct rvm_vcpu *v, int mmap_size)
{
    vcpu_dirty_fini(v);
    munmap(v->run, (size_t)mmap_size);
    close(v->fd);
    pthread_mutex_destroy(&v->run_lock);
    free(v);
}

void rvm_vm_destroy(struct rvm_vm *vm)
{
    struct vm_device *d, *next;

    if (!vm)
        return;
    rvm_vm_stop(vm);
    vm_dirty_fini(vm); /* the reaper reads the vCPUs' rings */
    for (d = vm->devices; d; d = next) {
        next = d->next;
        if (d->destroy)
            d->destroy(d->dev);
        free(d);
    }
    for (uint32_t i = 0; i < vm->nvcpus; i++)
        if (vm->vcpus[i])
            vcpu_free(vm->vcpus[i], vm->hv->vcpu_mmap_size);
    while (vm->retired) { /* every thread is joined: no reader is left */
        struct bus_table *t = vm->retired;
        vm->retired = t->next_retired;
        free(t);
    }
    close(vm->fd); /* the memory slots go with the VM */
    rvm_mem_destroy(vm->mem);
    bus_fini(&vm->bus[RVM_BUS_MMIO]);
    bus_fini(&vm->bus[RVM_BUS_PIO]);
    pthread_mutex_destroy(&vm->join_lock);
    pthread_mutex_destroy(&vm->dev_lock);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->ctl);
    free(vm->join_buf);
    free(vm->vcpus);
    free(vm);
}

struct rvm_mem *rvm_vm_mem(struct rvm_vm *vm)
{
    return vm->mem;
}

struct rvm_hv *rvm_vm_hv(struct rvm_vm *vm)
{
    return vm->hv;
}

uint32_t rvm_vm_vcpu_count(const struct rvm_vm *vm)
{
    return vm->nvcpus;
}

struct rvm_vcpu *rvm_vm_vcpu(struct rvm_vm *vm, uint32_t i)
{
    return i < vm->nvcpus ? __atomic_load_n(&vm->vcpus[i], __ATOMIC_ACQUIRE) : NULL;
}

void vm_io_cpus(struct rvm_vm *vm, cpu_set_t *set)
{
    cpu_set_t rest;

    if (vm->config.n_io_cpus > 0) {
        CPU_ZERO(set);
        for (unsigned i = 0; i < vm->config.n_io_cpus && i < RVM_MAX_CPUS_LIST; i++)
            if (vm->config.io_cpus[i] >= 0 && vm->config.io_cpus[i] < CPU_SETSIZE)
                CPU_SET(vm->config.io_cpus[i], set);
        return;
    }
    *set = vm->creator_cpus;
    rest = *set;
    for (unsigned i = 0; i < vm->config.n_cpus; i++)
        if (vm->config.cpus[i] >= 0 && vm->config.cpus[i] < CPU_SETSIZE)
            CPU_CLR(vm->config.cpus[i], &rest);
    if (CPU_COUNT(&rest) > 0)
        *set = rest;
}

int vm_io_thread_create(struct rvm_vm *vm, pthread_t *thread, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    cpu_set_t cpus;
    int r;

    vm_io_cpus(vm, &cpus);
    pthread_attr_init(&attr);
    if (CPU_COUNT(&cpus) > 0)
        pthread_attr_setaffinity_np(&attr, sizeof(cpus), &cpus);
    r = -pthread_create(thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return r;
}

int vm_add_device(struct rvm_vm *vm, void *dev, void (*on_end)(void *), void (*destroy)(void *))
{
    return vm_add_device_snap(vm, dev, on_end, destroy, NULL);
}

int vm_add_device_snap(struct rvm_vm *vm, void *dev, void (*on_end)(void *),
                       void (*destroy)(void *), const struct vm_snap_ops *snap)
{
    struct vm_device *d = calloc(1, sizeof(*d));

    if (!d)
        return -ENOMEM;
    d->dev = dev;
    d->snap = snap;
    d->on_end = on_end;
    d->destroy = destroy;
    pthread_mutex_lock(&vm->dev_lock);
    d->next = vm->devices;
    vm->devices = d;
    pthread_mutex_unlock(&vm->dev_lock);
    return 0;
}

void vm_device_on_resume(struct rvm_vm *vm, void *dev, void (*on_resume)(void *))
{
    pthread_mutex_lock(&vm->dev_lock);
    for (struct vm_device *d = vm->devices; d; d = d->next)
        if (d->dev == dev)
            d->on_resume = on_resume;
    pthread_mutex_unlock(&vm->dev_lock);
}

/* ---- buses --------------------------------------------------------------- */

void vm_synchronize(struct rvm_vm *vm)
{
    /*
     * The store-buffer pattern: the writer stores the table then loads qs,
     * a reader increments qs then loads the table. All four are seq_cst
     * (bus.c, bus_current, qs_enter, below), so at least one side sees the
     * other: an even qs read here means that reader will load the new table.
     */
    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = rvm_vm_vcpu(vm, i);
        uint64_t c;

        if (!v)
            continue;
        c = __atomic_load_n(&v->qs, __ATOMIC_SEQ_CST);
        if (!(c & 1))
            continue; /* not holding a table now; any later load sees the new one */
        while (__atomic_load_n(&v->qs, __ATOMIC_SEQ_CST) == c)
            sched_yield();
    }
}

/* Is the calling thread inside the dispatch of one of this VM's exits? Caller holds ctl. */
static bool in_dispatch_locked(struct rvm_vm *vm)
{
    pthread_t self = pthread_self();
    bool found = false;

    for (uint32_t i = 0; i < vm->nvcpus && !found; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];

        if (!v || !(__atomic_load_n(&v->qs, __ATOMIC_SEQ_CST) & 1))
            continue;
        /* A dispatch in progress on our own thread: managed, or a manual caller. */
        found = (v->thread_started && pthread_equal(v->thread, self)) ||
                pthread_equal(__atomic_load_n(&v->manual_dispatcher, __ATOMIC_RELAXED), self);
    }
    return found;
}

void vm_retire(struct rvm_vm *vm, struct bus_table *old)
{
    struct bus_table *list;

    pthread_mutex_lock(&vm->ctl);
    if (in_dispatch_locked(vm)) {
        old->next_retired = vm->retired;
        vm->retired = old;
        pthread_mutex_unlock(&vm->ctl);
        return;
    }
    /* Tables retired before this grace period starts are covered by it. */
    list = vm->retired;
    vm->retired = NULL;
    pthread_mutex_unlock(&vm->ctl);
    vm_synchronize(vm);
    free(old);
    while (list) {
        struct bus_table *next = list->next_retired;
        free(list);
        list = next;
    }
}

int rvm_vm_map_io(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t base, uint64_t len,
                  const struct rvm_io_ops *ops, void *opaque)
{
    struct bus_table *old;
    int r;

    if (bus != RVM_BUS_PIO && bus != RVM_BUS_MMIO)
        return -EINVAL;
    r = bus_insert(&vm->bus[bus], base, len, ops, opaque, &old);
    if (r < 0)
        return r;
    vm_retire(vm, old);
    return 0;
}

int rvm_vm_unmap_io(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t base)
{
    struct bus_table *old;
    int r;

    if (bus != RVM_BUS_PIO && bus != RVM_BUS_MMIO)
        return -EINVAL;
    r = bus_remove(&vm->bus[bus], base, &old);
    if (r < 0)
        return r;
    vm_retire(vm, old);
    return 0;
}

int vm_io_access(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t size, bool write,
                 uint64_t *val)
{
    struct rvm_bus *b;
    int r;

    if (bus != RVM_BUS_PIO && bus != RVM_BUS_MMIO)
        return -EINVAL;
    b = &vm->bus[bus];
    /* Holding the writers' lock: no table can be swapped out and freed under us. */
    pthread_mutex_lock(&b->lock);
    r = bus_range_access(bus_find(b->table, addr, size), addr, size, write, val);
    pthread_mutex_unlock(&b->lock);
    return r;
}

static int ioeventfd(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t len,
                     bool has_match, uint64_t match, int fd, bool remove)
{
    struct kvm_ioeventfd io = {
        .datamatch = has_match ? match : 0,
        .addr = addr,
        .len = len,
        .fd = fd,
        .flags = (bus == RVM_BUS_PIO ? KVM_IOEVENTFD_FLAG_PIO : 0) |
                 (has_match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
                 (remove ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
    };

    if ((bus != RVM_BUS_PIO && bus != RVM_BUS_MMIO) || fd < 0 ||
        (len != 1 && len != 2 && len != 4 && len != 8))
        return -EINVAL;
    if (ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0) {
        int e = -errno;
        rvm_err(vm->hv, "KVM_IOEVENTFD %s 0x%llx/%u: %s", remove ? "remove" : "add",
                (unsigned long long)addr, len, strerror(-e));
        return e;
    }
    return 0;
}

int rvm_vm_add_ioeventfd(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t len,
                         bool has_match, uint64_t match, int fd)
{
    return ioeventfd(vm, bus, addr, len, has_match, match, fd, false);
}

int rvm_vm_remove_ioeventfd(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t len,
                            bool has_match, uint64_t match, int fd)
{
    return ioeventfd(vm, bus, addr, len, has_match, match, fd, true);
}

static int irqfd(struct rvm_vm *vm, uint32_t gsi, int fd, bool remove)
{
    struct kvm_irqfd f = {
        .fd = (uint32_t)fd, .gsi = gsi, .flags = remove ? KVM_IRQFD_FLAG_DEASSIGN : 0};

    if (fd < 0)
        return -EINVAL;
    return ioctl(vm->fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int rvm_vm_add_irqfd(struct rvm_vm *vm, uint32_t gsi, int fd)
{
    return irqfd(vm, gsi, fd, false);
}

int rvm_vm_remove_irqfd(struct rvm_vm *vm, uint32_t gsi, int fd)
{
    return irqfd(vm, gsi, fd, true);
}

int rvm_vm_set_irq(struct rvm_vm *vm, uint32_t gsi, bool level)
{
    struct kvm_irq_level l = {.irq = gsi, .level = level};

    return ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}
