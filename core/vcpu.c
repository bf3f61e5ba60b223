/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../arch/x86_64/arch.h"
#include "counter.h"
#include "log.h"
#include "vm_internal.h"

static const char *const exit_names[RVM_EXIT__COUNT] = {
    [RVM_EXIT_NONE] = "none",
    [RVM_EXIT_IO_IN] = "io-in",
    [RVM_EXIT_IO_OUT] = "io-out",
    [RVM_EXIT_MMIO_READ] = "mmio-read",
    [RVM_EXIT_MMIO_WRITE] = "mmio-write",
    [RVM_EXIT_HLT] = "hlt",
    [RVM_EXIT_SHUTDOWN] = "shutdown",
    [RVM_EXIT_SYSTEM_EVENT] = "system-event",
    [RVM_EXIT_INTERNAL_ERROR] = "internal-error",
    [RVM_EXIT_FAIL_ENTRY] = "fail-entry",
    [RVM_EXIT_DIRTY_RING_FULL] = "dirty-ring-full",
    [RVM_EXIT_INTR] = "intr",
    [RVM_EXIT_DEBUG] = "debug",
    [RVM_EXIT_UNKNOWN] = "unknown",
};

const char *rvm_exit_reason_name(enum rvm_exit_reason reason)
{
    return (unsigned)reason < RVM_EXIT__COUNT ? exit_names[reason] : "invalid";
}

/* Caller holds vm->ctl. */
int vcpu_create_locked(struct rvm_vm *vm, uint32_t id, struct rvm_vcpu **out)
{
    struct rvm_vcpu *v;
    int r;

    if (id >= vm->nvcpus)
        return -EINVAL;
    if (vm->vcpus[id])
        return -EEXIST;
    v = aligned_alloc(64, sizeof(*v)); /* its own cache lines: vCPUs never share one */
    if (!v)
        return -ENOMEM;
    memset(v, 0, sizeof(*v));
    pthread_mutex_init(&v->run_lock, NULL);
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        r = -errno;
        rvm_err(vm->hv, "KVM_CREATE_VCPU %u: %s", id, strerror(-r));
        goto err_free;
    }
    v->run =
        mmap(NULL, (size_t)vm->hv->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        r = -errno;
        goto err_close;
    }
    if ((r = vcpu_dirty_init(v)) < 0)
        goto err_unmap;
    if ((r = arch_vcpu_init(v)) < 0)
        goto err_unmap;
    if (id == 0 && vm->have_boot && (r = arch_vcpu_set_pvh_entry(v, &vm->boot)) < 0)
        goto err_unmap;
    __atomic_store_n(&vm->vcpus[id], v, __ATOMIC_RELEASE);
    if (out)
        *out = v;
    return 0;

err_unmap:
    vcpu_dirty_fini(v);
    munmap(v->run, (size_t)vm->hv->vcpu_mmap_size);
err_close:
    close(v->fd);
err_free:
    pthread_mutex_destroy(&v->run_lock);
    free(v);
    return r;
}

int rvm_vcpu_create(struct rvm_vm *vm, uint32_t id, struct rvm_vcpu **out)
{
    int r;

    pthread_mutex_lock(&vm->ctl);
    r = vcpu_create_locked(vm, id, out);
    pthread_mutex_unlock(&vm->ctl);
    return r;
}

uint32_t rvm_vcpu_id(const struct rvm_vcpu *v)
{
    return v->id;
}

static inline void count_exit(struct rvm_vcpu *v, enum rvm_exit_reason r)
{
    counter_bump(&v->exits[r]);
}

/* Counts an access nobody claimed, or one its handler refused. */
static inline void count_access(struct rvm_vcpu *v, int r)
{
    if (r == -ENOENT)
        counter_bump(&v->unhandled_io);
    else if (r < 0)
        counter_bump(&v->failed_io);
}

static uint64_t load_le(const void *p, unsigned size)
{
    uint64_t v = 0;

    memcpy(&v, p, size > 8 ? 8 : size);
    return v;
}

static void describe_exit(struct rvm_vcpu *v, struct rvm_exit *e)
{
    const struct kvm_run *run = v->run;

    e->kvm_reason = run->exit_reason;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        e->reason = run->io.direction == KVM_EXIT_IO_OUT ? RVM_EXIT_IO_OUT : RVM_EXIT_IO_IN;
        e->u.io.port = run->io.port;
        e->u.io.size = run->io.size;
        e->u.io.count = run->io.count;
        e->u.io.data = e->reason == RVM_EXIT_IO_OUT
                           ? load_le((const uint8_t *)run + run->io.data_offset, run->io.size)
                           : 0;
        if (e->reason == RVM_EXIT_IO_IN)
            v->pending = RVM_EXIT_IO_IN;
        break;
    case KVM_EXIT_MMIO:
        e->reason = run->mmio.is_write ? RVM_EXIT_MMIO_WRITE : RVM_EXIT_MMIO_READ;
        e->u.mmio.addr = run->mmio.phys_addr;
        e->u.mmio.size = (uint8_t)run->mmio.len;
        e->u.mmio.data = run->mmio.is_write ? load_le(run->mmio.data, run->mmio.len) : 0;
        if (!run->mmio.is_write)
            v->pending = RVM_EXIT_MMIO_READ;
        break;
    case KVM_EXIT_HLT:
        e->reason = RVM_EXIT_HLT;
        break;
    case KVM_EXIT_SHUTDOWN:
        e->reason = RVM_EXIT_SHUTDOWN;
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        e->reason = RVM_EXIT_SYSTEM_EVENT;
        e->u.system_event.type = run->system_event.type;
        e->u.system_event.ndata = run->system_event.ndata > 16 ? 16 : run->system_event.ndata;
        memcpy(e->u.system_event.data, run->system_event.data,
               e->u.system_event.ndata * sizeof(uint64_t));
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        e->reason = RVM_EXIT_INTERNAL_ERROR;
        e->u.internal.suberror = run->internal.suberror;
        e->u.internal.ndata = run->internal.ndata > 16 ? 16 : run->internal.ndata;
        memcpy(e->u.internal.data, run->internal.data, e->u.internal.ndata * sizeof(uint64_t));
        break;
    case KVM_EXIT_FAIL_ENTRY:
        e->reason = RVM_EXIT_FAIL_ENTRY;
        e->u.fail_entry.reason = run->fail_entry.hardware_entry_failure_reason;
        e->u.fail_entry.cpu = run->fail_entry.cpu;
        break;
    case KVM_EXIT_DIRTY_RING_FULL:
        e->reason = RVM_EXIT_DIRTY_RING_FULL;
        break;
    case KVM_EXIT_INTR:
        e->reason = RVM_EXIT_INTR;
        break;
    case KVM_EXIT_DEBUG:
        e->reason = RVM_EXIT_DEBUG;
        break;
    default:
        e->reason = RVM_EXIT_UNKNOWN;
        break;
    }
}

_Static_assert((RVM_CRASH_EXITS & (RVM_CRASH_EXITS - 1)) == 0, "a power of two");
_Static_assert(offsetof(struct kvm_run, mmio.is_write) - offsetof(struct kvm_run, io) <
                   sizeof(((struct exit_raw *)0)->u),
               "the copied bytes cover mmio up to is_write");

/* Notes the exit in the vCPU's short history: a copy, no decoding on this path. */
static inline void trace_exit(struct rvm_vcpu *v)
{
    struct exit_raw *t = &v->trace[v->trace_next++ & (RVM_CRASH_EXITS - 1)];

    t->kvm_reason = v->run->exit_reason;
    memcpy(t->u, &v->run->io, sizeof(t->u));
}

/* A noted exit as a report gives it: the port or address, the size, the direction. */
static struct rvm_exit_trace trace_decode(const struct exit_raw *t)
{
    struct kvm_run r; /* only the union is read */
    struct rvm_exit_trace out = {.kvm_reason = t->kvm_reason};

    memcpy(&r.io, t->u, sizeof(t->u));
    if (t->kvm_reason == KVM_EXIT_IO) {
        out.size = r.io.size;
        out.write = r.io.direction == KVM_EXIT_IO_OUT;
        out.addr = r.io.port;
    } else if (t->kvm_reason == KVM_EXIT_MMIO) {
        out.size = (uint8_t)r.mmio.len;
        out.write = r.mmio.is_write;
        out.addr = r.mmio.phys_addr;
    }
    return out;
}

/* One KVM_RUN. 0: an exit to describe; 1: kicked (counted); -errno: failure. */
static int enter(struct rvm_vcpu *v)
{
    v->pending = RVM_EXIT_NONE;
    if (ioctl(v->fd, KVM_RUN, 0) == 0) {
        trace_exit(v);
        return 0;
    }
    if (errno != EINTR && errno != EAGAIN)
        return -errno;
    /*
     * Kicked. Clear immediate_exit before the caller re-reads the run state:
     * a kick after this point finds the new state (it is stored before
     * immediate_exit is set) or interrupts the next KVM_RUN.
     */
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    count_exit(v, RVM_EXIT_INTR);
    return 1;
}

int rvm_vcpu_run(struct rvm_vcpu *v, struct rvm_exit *e)
{
    int r;

    /* Manual execution: let kicks find this thread (see kick_locked()). */
    pthread_mutex_lock(&v->run_lock);
    v->in_manual_run = true;
    v->manual_runner = pthread_self();
    pthread_mutex_unlock(&v->run_lock);
    r = enter(v);
    pthread_mutex_lock(&v->run_lock);
    v->in_manual_run = false;
    pthread_mutex_unlock(&v->run_lock);

    if (r < 0)
        return r;
    if (r == 1) {
        e->reason = RVM_EXIT_INTR;
        e->kvm_reason = KVM_EXIT_INTR;
        return 0;
    }
    describe_exit(v, e);
    count_exit(v, e->reason);
    return 0;
}

int rvm_vcpu_set_io_result(struct rvm_vcpu *v, uint64_t value)
{
    struct kvm_run *run = v->run;
    uint8_t *p = (uint8_t *)run + run->io.data_offset;

    if (v->pending != RVM_EXIT_IO_IN)
        return -EINVAL;
    for (uint32_t i = 0; i < run->io.count; i++)
        memcpy(p + (size_t)i * run->io.size, &value, run->io.size);
    return 0;
}

int rvm_vcpu_set_mmio_result(struct rvm_vcpu *v, uint64_t value)
{
    struct kvm_run *run = v->run;

    if (v->pending != RVM_EXIT_MMIO_READ || run->mmio.len > 8)
        return -EINVAL;
    memcpy(run->mmio.data, &value, run->mmio.len);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

/* Enter/leave a bus-table read section (see vm_synchronize). */
static inline void qs_enter(struct rvm_vcpu *v)
{
    __atomic_add_fetch(&v->qs, 1, __ATOMIC_SEQ_CST);
}

static inline void qs_leave(struct rvm_vcpu *v)
{
    __atomic_add_fetch(&v->qs, 1, __ATOMIC_RELEASE);
}

static void dispatch_pio(struct rvm_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *p = (uint8_t *)run + run->io.data_offset;
    bool write = run->io.direction == KVM_EXIT_IO_OUT;
    const struct bus_range *r;

    qs_enter(v);
    r = bus_find(bus_current(&v->vm->bus[RVM_BUS_PIO]), run->io.port, run->io.size);
    for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size) {
        uint64_t val = write ? load_le(p, run->io.size) : 0;

        count_access(v, bus_range_access(r, run->io.port, run->io.size, write, &val));
        if (!write)
            memcpy(p, &val, run->io.size);
    }
    qs_leave(v);
    v->pending = RVM_EXIT_NONE;
}

static void dispatch_mmio(struct rvm_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
    bool write = run->mmio.is_write;
    uint64_t val = write ? load_le(run->mmio.data, len) : 0;

    qs_enter(v);
    if (bus_range_access(bus_find(bus_current(&v->vm->bus[RVM_BUS_MMIO]), run->mmio.phys_addr, len),
                         run->mmio.phys_addr, len, write, &val) < 0)
        counter_bump(&v->unhandled_io);
    qs_leave(v);
    if (!write)
        memcpy(run->mmio.data, &val, len);
    v->pending = RVM_EXIT_NONE;
}

/*
 * Fills the VM's crash report from this vCPU, stopped after the exit that
 * ends the VM, unless another vCPU's report came first; logs its first line
 * either way.
 */
static void capture_crash(struct rvm_vcpu *v)
{
    struct rvm_vm *vm = v->vm;
    const struct kvm_run *run = v->run;
    struct rvm_crash *c = calloc(1, sizeof(*c));
    uint32_t n = v->trace_next < RVM_CRASH_EXITS ? v->trace_next : RVM_CRASH_EXITS;
    int zero = 0;

    if (!c) {
        rvm_err(vm->hv, "vCPU %u: ended the VM (KVM exit %u); no memory for its report", v->id,
                run->exit_reason);
        return;
    }
    c->vcpu = v->id;
    c->kvm_reason = run->exit_reason;
    if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
        c->suberror = run->internal.suberror;
        c->ndata = run->internal.ndata < 16 ? run->internal.ndata : 16;
        memcpy(c->data, run->internal.data, c->ndata * sizeof(c->data[0]));
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
            (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
            c->insn_len =
                run->emulation_failure.insn_size < 15 ? run->emulation_failure.insn_size : 15;
            memcpy(c->insn, run->emulation_failure.insn_bytes, c->insn_len);
            c->insn_from_kvm = true;
        }
    } else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
        c->hw_reason = run->fail_entry.hardware_entry_failure_reason;
    }
    c->nexits = n;
    for (uint32_t i = 0; i < n; i++)
        c->exits[i] = trace_decode(&v->trace[(v->trace_next - n + i) & (RVM_CRASH_EXITS - 1)]);
    arch_vcpu_crash(v, c);
    char line[160];
    rvm_crash_format(c, line, sizeof(line));
    line[strcspn(line, "\n")] = '\0';
    if (__atomic_compare_exchange_n(&vm->crash_claimed, &zero, 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        vm->crash = *c;
        rvm_err(vm->hv, "%s; the full report is in the VM's result (rvm_crash_format())", line);
    } else {
        rvm_err(vm->hv, "%s (another vCPU's report came first)", line);
    }
    free(c);
}

/* An internal error, a failed entry or an exit nothing handles: the VM ends, reported. */
static int end_with_error(struct rvm_vcpu *v, const struct rvm_exit *e)
{
    capture_crash(v); /* its log line says what happened */
    vm_request_end(v->vm, RVM_END_ERROR, e->kvm_reason, v->id);
    return 1;
}

int rvm_vcpu_dispatch(struct rvm_vcpu *v, const struct rvm_exit *e)
{
    struct rvm_vm *vm = v->vm;

    /*
     * Remember who dispatches (manual execution), so that a handler may map
     * ranges without waiting for itself. The managed loop's port and MMIO
     * exits do not come through here: they are recognised by thread.
     */
    __atomic_store_n(&v->manual_dispatcher, pthread_self(), __ATOMIC_RELAXED);
    switch (e->reason) {
    case RVM_EXIT_IO_IN:
    case RVM_EXIT_IO_OUT:
        dispatch_pio(v);
        break;
    case RVM_EXIT_MMIO_READ:
    case RVM_EXIT_MMIO_WRITE:
        dispatch_mmio(v);
        break;
    case RVM_EXIT_NONE:
    case RVM_EXIT_INTR:
    case RVM_EXIT_HLT:
    case RVM_EXIT_DEBUG:
        break;
    case RVM_EXIT_DIRTY_RING_FULL:
        if (vcpu_dirty_ring_full(v))
            return 1;
        break;
    case RVM_EXIT_SHUTDOWN:
        rvm_info(vm->hv, "vCPU %u: triple fault (shutdown)", v->id);
        capture_crash(v);
        vm_request_end(vm, RVM_END_SHUTDOWN, 0, v->id);
        return 1;
    case RVM_EXIT_SYSTEM_EVENT:
        if (e->u.system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
            vm_request_end(vm, RVM_END_POWEROFF, 0, v->id);
            return 1;
        }
        if (e->u.system_event.type == KVM_SYSTEM_EVENT_RESET) {
            vm_request_end(vm, RVM_END_RESET, 0, v->id);
            return 1;
        }
        return end_with_error(v, e);
    default:
        return end_with_error(v, e);
    }
    return __atomic_load_n(&vm->ended, __ATOMIC_ACQUIRE) ? 1 : 0;
}

int vcpu_run_dispatch(struct rvm_vcpu *v)
{
    const struct kvm_run *run = v->run;
    struct rvm_exit e;
    int r = enter(v);

    if (r != 0)
        return r < 0 ? r : 0;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        count_exit(v, run->io.direction == KVM_EXIT_IO_OUT ? RVM_EXIT_IO_OUT : RVM_EXIT_IO_IN);
        dispatch_pio(v);
        return 0; /* an ended VM is seen in run_state at the top of the loop */
    case KVM_EXIT_MMIO:
        count_exit(v, run->mmio.is_write ? RVM_EXIT_MMIO_WRITE : RVM_EXIT_MMIO_READ);
        dispatch_mmio(v);
        return 0;
    default:
        describe_exit(v, &e);
        count_exit(v, e.reason);
        return rvm_vcpu_dispatch(v, &e);
    }
}

int rvm_vcpu_get_regs(struct rvm_vcpu *v, struct kvm_regs *regs)
{
    return ioctl(v->fd, KVM_GET_REGS, regs) < 0 ? -errno : 0;
}

int rvm_vcpu_set_regs(struct rvm_vcpu *v, const struct kvm_regs *regs)
{
    return ioctl(v->fd, KVM_SET_REGS, regs) < 0 ? -errno : 0;
}

int rvm_vcpu_get_sregs(struct rvm_vcpu *v, struct kvm_sregs *sregs)
{
    return ioctl(v->fd, KVM_GET_SREGS, sregs) < 0 ? -errno : 0;
}

int rvm_vcpu_set_sregs(struct rvm_vcpu *v, const struct kvm_sregs *sregs)
{
    return ioctl(v->fd, KVM_SET_SREGS, sregs) < 0 ? -errno : 0;
}

int64_t rvm_vcpu_tsc_khz(struct rvm_vcpu *v)
{
    int r = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);

    return r < 0 ? -errno : r;
}

void rvm_vcpu_stats(const struct rvm_vcpu *v, struct rvm_vcpu_stats *s)
{
    for (int i = 0; i < RVM_EXIT__COUNT; i++)
        s->exits[i] = __atomic_load_n(&v->exits[i], __ATOMIC_RELAXED);
    s->unhandled_io = __atomic_load_n(&v->unhandled_io, __ATOMIC_RELAXED);
    s->failed_io = __atomic_load_n(&v->failed_io, __ATOMIC_RELAXED);
}
