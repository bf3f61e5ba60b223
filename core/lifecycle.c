/* SPDX-License-Identifier: MIT */
/*
 * Managed execution: one pinned thread per vCPU and the controls around them.
 *
 * The run loop takes no lock. vm->run_state (GO, PAUSE, STOP) is read with
 * one atomic load per exit; a controller changes it, then kicks every vCPU
 * (kvm_run->immediate_exit = 1, then the kick signal) so that a vCPU inside
 * KVM_RUN comes out and one about to enter returns at once. Only the slow
 * paths (parking, ending, joining) use vm->ctl and vm->cond.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "vm_internal.h"

/*
 * Gets v out of KVM_RUN, or keeps it from entering: immediate_exit first,
 * then the kick signal to whichever thread runs it (its managed thread, or
 * the embedder's thread inside rvm_vcpu_run()). Caller holds vm->ctl, so
 * managed thread handles are stable; run_lock keeps a manual runner inside
 * rvm_vcpu_run() while it is signalled.
 */
static void kick_locked(struct rvm_vcpu *v)
{
    int sig = v->vm->hv->kick_signal;

    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started) {
        pthread_kill(v->thread, sig);
        return;
    }
    pthread_mutex_lock(&v->run_lock);
    if (v->in_manual_run)
        pthread_kill(v->manual_runner, sig);
    pthread_mutex_unlock(&v->run_lock);
}

static void kick_all_locked(struct rvm_vm *vm)
{
    for (uint32_t i = 0; i < vm->nvcpus; i++)
        if (vm->vcpus[i])
            kick_locked(vm->vcpus[i]);
}

int rvm_vcpu_kick(struct rvm_vcpu *v)
{
    if (!v)
        return -EINVAL;
    pthread_mutex_lock(&v->vm->ctl);
    kick_locked(v);
    pthread_mutex_unlock(&v->vm->ctl);
    return 0;
}

void vm_kick_all(struct rvm_vm *vm)
{
    pthread_mutex_lock(&vm->ctl);
    kick_all_locked(vm);
    pthread_mutex_unlock(&vm->ctl);
}

void vm_request_end(struct rvm_vm *vm, enum rvm_vm_end end, int64_t value, uint32_t vcpu)
{
    pthread_mutex_lock(&vm->ctl);
    if (!__atomic_load_n(&vm->ended, __ATOMIC_RELAXED)) {
        vm->result.end = end;
        vm->result.value = value;
        vm->result.qemu_status = end == RVM_END_DEBUG_EXIT ? (int)((value << 1) | 1) : 0;
        vm->result.vcpu = vcpu;
        /* A vCPU that crashes files its report before it ends the VM (capture_crash()). */
        if ((end == RVM_END_SHUTDOWN || end == RVM_END_ERROR) &&
            __atomic_load_n(&vm->crash_claimed, __ATOMIC_ACQUIRE) && vm->crash.vcpu == vcpu) {
            vm->result.crashed = true;
            vm->result.crash = vm->crash;
        }
        __atomic_store_n(&vm->ended, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&vm->run_state, RUN_STOP, __ATOMIC_SEQ_CST);
    kick_all_locked(vm);
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->ctl);
}

void rvm_vm_request_end(struct rvm_vm *vm, enum rvm_vm_end end, int64_t value)
{
    vm_request_end(vm, end, value, 0);
}

/*
 * What the vCPU's last exit left half done (an IN's data, an MMIO read's
 * value) handed to KVM on its own thread: KVM_RUN with immediate_exit
 * completes it and returns at once. 0, or -errno.
 */
static int complete_last_exit(struct rvm_vcpu *v)
{
    uint8_t was = __atomic_exchange_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    int r = ioctl(v->fd, KVM_RUN, 0), e = errno;

    __atomic_store_n(&v->run->immediate_exit, was, __ATOMIC_SEQ_CST);
    return r == 0 ? -EIO : e == EINTR ? 0 : -e;
}

static void park(struct rvm_vcpu *v)
{
    struct rvm_vm *vm = v->vm;
    bool done = complete_last_exit(v) == 0; /* before a snapshot reads its state */

    pthread_mutex_lock(&vm->ctl);
    v->parked_complete = done;
    vm->threads_parked++;
    pthread_cond_broadcast(&vm->cond);
    while (__atomic_load_n(&vm->run_state, __ATOMIC_SEQ_CST) == RUN_PAUSE)
        pthread_cond_wait(&vm->cond, &vm->ctl);
    vm->threads_parked--;
    v->parked_complete = false;
    pthread_mutex_unlock(&vm->ctl);
}

void *vcpu_thread_main(void *arg)
{
    struct rvm_vcpu *v = arg;
    struct rvm_vm *vm = v->vm;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, vm->hv->kick_signal);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    /* A device writing to a pipe whose reader left gets EPIPE, not a dead process. */
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    for (;;) {
        int st = __atomic_load_n(&vm->run_state, __ATOMIC_SEQ_CST);
        int r;

        if (st == RUN_STOP)
            break;
        if (st == RUN_PAUSE) {
            park(v);
            continue;
        }
        r = vcpu_run_dispatch(v);
        if (r < 0) {
            rvm_err(vm->hv, "vCPU %u: KVM_RUN: %s", v->id, strerror(-r));
            vm_request_end(vm, RVM_END_ERROR, r, v->id);
            break;
        }
    }

    pthread_mutex_lock(&vm->ctl);
    vm->threads_alive--;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->ctl);
    return NULL;
}

/* The CPUs vCPU i is pinned to; *pin false when it is not pinned. */
static int vcpu_cpuset(struct rvm_vm *vm, uint32_t i, cpu_set_t *set, bool *pin)
{
    const struct rvm_vm_config *c = &vm->config;
    cpu_set_t allowed, node;
    int cpu = -1;

    *pin = false;
    CPU_ZERO(set);
    if (c->n_cpus > 0) {
        cpu = c->cpus[i % c->n_cpus];
    } else if (c->numa_node >= 0) {
        int r = rvm_hv_node_cpus(vm->hv, c->numa_node, &node);
        int k, n = CPU_COUNT(&node);

        if (r < 0 || n == 0) {
            rvm_err(vm->hv, "NUMA node %d: no CPUs", c->numa_node);
            return r < 0 ? r : -EINVAL;
        }
        k = (int)(i % (uint32_t)n);
        for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &node) && k-- == 0)
                break;
    } else {
        return 0;
    }
    if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        return -errno;
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
        rvm_err(vm->hv, "vCPU %u: CPU %d is not available to this process", i, cpu);
        return -EINVAL;
    }
    CPU_SET(cpu, set);
    *pin = true;
    return 0;
}

/* Takes the started threads' handles under ctl, then joins them without it. */
static void join_all(struct rvm_vm *vm)
{
    pthread_t *t = vm->join_buf; /* guarded by join_lock */
    uint32_t n = 0;

    pthread_mutex_lock(&vm->join_lock);
    pthread_mutex_lock(&vm->ctl);
    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];

        if (v && v->thread_started) {
            t[n++] = v->thread;
            v->thread_started = false;
        }
    }
    pthread_mutex_unlock(&vm->ctl);
    for (uint32_t i = 0; i < n; i++)
        pthread_join(t[i], NULL);

    pthread_mutex_lock(&vm->ctl);
    if (__atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED) != RVM_VM_CREATED ||
        __atomic_load_n(&vm->ended, __ATOMIC_RELAXED))
        __atomic_store_n(&vm->lifecycle, RVM_VM_STOPPED, __ATOMIC_RELEASE);
    bool notify = !vm->end_notified && __atomic_load_n(&vm->ended, __ATOMIC_RELAXED);
    vm->end_notified |= notify;
    pthread_mutex_unlock(&vm->ctl);
    if (notify) {
        pthread_mutex_lock(&vm->dev_lock);
        for (struct vm_device *d = vm->devices; d; d = d->next)
            if (d->on_end)
                d->on_end(d->dev);
        pthread_mutex_unlock(&vm->dev_lock);
    }
    pthread_mutex_unlock(&vm->join_lock);
}

static int start_threads_locked(struct rvm_vm *vm)
{
    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];
        pthread_attr_t attr;
        cpu_set_t set;
        bool pin;
        int r;

        if ((r = vcpu_cpuset(vm, i, &set, &pin)) < 0)
            return r;
        pthread_attr_init(&attr);
        if (pin)
            pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
        r = -pthread_create(&v->thread, &attr, vcpu_thread_main, v);
        pthread_attr_destroy(&attr);
        if (r < 0) {
            rvm_err(vm->hv, "vCPU %u: cannot start its thread: %s", i, strerror(-r));
            return r;
        }
        v->thread_started = true;
        vm->threads_alive++;
    }
    return 0;
}

int rvm_vm_start(struct rvm_vm *vm)
{
    int r = 0;

    pthread_mutex_lock(&vm->ctl);
    if (__atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED) != RVM_VM_CREATED ||
        __atomic_load_n(&vm->ended, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&vm->ctl);
        return -EBUSY;
    }
    for (uint32_t i = 0; i < vm->nvcpus && r == 0; i++)
        if (!vm->vcpus[i])
            r = vcpu_create_locked(vm, i, NULL);
    if (r == 0) {
        /* The threads read run_state first: GO before any starts. */
        __atomic_store_n(&vm->run_state, RUN_GO, __ATOMIC_SEQ_CST);
        __atomic_store_n(&vm->lifecycle, RVM_VM_RUNNING, __ATOMIC_RELEASE);
        r = start_threads_locked(vm);
    }
    pthread_mutex_unlock(&vm->ctl);
    if (r < 0) {
        vm_request_end(vm, RVM_END_ERROR, r, 0);
        join_all(vm);
    }
    return r;
}

/* Is the caller one of this VM's managed vCPU threads? Caller holds ctl. */
static bool on_vcpu_thread_locked(struct rvm_vm *vm)
{
    pthread_t self = pthread_self();

    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];

        if (v && v->thread_started && pthread_equal(v->thread, self))
            return true;
    }
    return false;
}

/* Pauses the VM (caller holds ctl); *flipped: this call stopped a running VM. */
static int pause_locked(struct rvm_vm *vm, bool *flipped)
{
    int st;

    *flipped = false;
    if (on_vcpu_thread_locked(vm))
        return -EDEADLK; /* it would wait for itself to park */
    st = __atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED);
    if ((st != RVM_VM_RUNNING && st != RVM_VM_PAUSED) ||
        __atomic_load_n(&vm->run_state, __ATOMIC_RELAXED) == RUN_STOP)
        return -EINVAL; /* not started, or ended */
    if (__atomic_load_n(&vm->run_state, __ATOMIC_RELAXED) != RUN_PAUSE) {
        __atomic_store_n(&vm->run_state, RUN_PAUSE, __ATOMIC_SEQ_CST);
        kick_all_locked(vm);
        *flipped = true;
    }
    /* A second pauser waits for the same condition as the first. */
    while (vm->threads_parked < vm->threads_alive &&
           __atomic_load_n(&vm->run_state, __ATOMIC_RELAXED) == RUN_PAUSE)
        pthread_cond_wait(&vm->cond, &vm->ctl);
    if (__atomic_load_n(&vm->run_state, __ATOMIC_RELAXED) != RUN_PAUSE)
        return -ECANCELED; /* ended, or resumed by another thread, while pausing */
    __atomic_store_n(&vm->lifecycle, RVM_VM_PAUSED, __ATOMIC_RELEASE);
    return 0;
}

static int resume_locked(struct rvm_vm *vm)
{
    /* Only a paused VM that has not ended: an end leaves run_state at STOP for good. */
    if (__atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED) != RVM_VM_PAUSED ||
        __atomic_load_n(&vm->run_state, __ATOMIC_RELAXED) != RUN_PAUSE)
        return -EINVAL;
    __atomic_store_n(&vm->run_state, RUN_GO, __ATOMIC_SEQ_CST);
    __atomic_store_n(&vm->lifecycle, RVM_VM_RUNNING, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&vm->cond);
    return 0;
}

int rvm_vm_pause(struct rvm_vm *vm)
{
    bool flipped;
    int r;

    pthread_mutex_lock(&vm->ctl);
    r = pause_locked(vm, &flipped);
    pthread_mutex_unlock(&vm->ctl);
    return r;
}

/* Devices told the VM goes on (a disk retries what its error policy held). */
static void devices_resumed(struct rvm_vm *vm)
{
    pthread_mutex_lock(&vm->dev_lock);
    for (struct vm_device *d = vm->devices; d; d = d->next)
        if (d->on_resume)
            d->on_resume(d->dev);
    pthread_mutex_unlock(&vm->dev_lock);
}

int rvm_vm_resume(struct rvm_vm *vm)
{
    int r;

    pthread_mutex_lock(&vm->ctl);
    /* A snapshot owns the pause until its memory and sums are written. */
    r = vm->snap.hold ? -EBUSY : 0;
    pthread_mutex_unlock(&vm->ctl);
    if (r < 0)
        return r;
    vm_snap_devices_resume(vm); /* before a vCPU can kick them */
    pthread_mutex_lock(&vm->ctl);
    r = vm->snap.hold ? -EBUSY : resume_locked(vm);
    if (r == 0)
        vm->dev_stopped = false;
    pthread_mutex_unlock(&vm->ctl);
    if (r == 0)
        devices_resumed(vm);
    return r;
}

void vm_request_pause(struct rvm_vm *vm, const char *device, int err)
{
    pthread_mutex_lock(&vm->ctl);
    int st = __atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED);
    int run = __atomic_load_n(&vm->run_state, __ATOMIC_RELAXED);

    if ((st == RVM_VM_RUNNING || st == RVM_VM_PAUSED) && run != RUN_STOP) {
        if (!vm->dev_stopped) {
            vm->dev_stopped = true;
            snprintf(vm->dev_stop.device, sizeof(vm->dev_stop.device), "%s", device);
            vm->dev_stop.error = err;
        }
        if (run != RUN_PAUSE) {
            __atomic_store_n(&vm->run_state, RUN_PAUSE, __ATOMIC_SEQ_CST);
            kick_all_locked(vm);
        }
        /* Paused from now on: the vCPUs park as they see it, and a resume lets them go. */
        __atomic_store_n(&vm->lifecycle, RVM_VM_PAUSED, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&vm->ctl);
}

int rvm_vm_device_stop(struct rvm_vm *vm, struct rvm_device_stop *out)
{
    int r = -ENOENT;

    pthread_mutex_lock(&vm->ctl);
    if (vm->dev_stopped) {
        *out = vm->dev_stop;
        r = 0;
    }
    pthread_mutex_unlock(&vm->ctl);
    return r;
}

void vm_hold_begin(struct rvm_vm *vm)
{
    pthread_mutex_lock(&vm->ctl);
    vm->snap.hold = true;
    pthread_mutex_unlock(&vm->ctl);
}

int vm_hold_pause(struct rvm_vm *vm, bool *paused)
{
    int r;

    pthread_mutex_lock(&vm->ctl);
    r = pause_locked(vm, paused);
    pthread_mutex_unlock(&vm->ctl);
    return r;
}

void vm_hold_end(struct rvm_vm *vm, bool resume)
{
    pthread_mutex_lock(&vm->ctl);
    vm->snap.hold = false;
    if (resume && !vm->dev_stopped) /* a device that paused it meanwhile keeps it paused */
        resume_locked(vm);
    pthread_mutex_unlock(&vm->ctl);
}

int rvm_vm_stop(struct rvm_vm *vm)
{
    bool self;

    vm_request_end(vm, RVM_END_STOPPED, 0, 0);
    pthread_mutex_lock(&vm->ctl);
    self = on_vcpu_thread_locked(vm);
    pthread_mutex_unlock(&vm->ctl);
    if (self)
        return -EDEADLK; /* ended; a stop or wait from another thread joins */
    join_all(vm);
    return 0;
}

int rvm_vm_wait(struct rvm_vm *vm, int timeout_ms, struct rvm_vm_result *result)
{
    struct timespec deadline;
    int r = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&vm->ctl);
    if (on_vcpu_thread_locked(vm)) {
        pthread_mutex_unlock(&vm->ctl);
        return -EDEADLK; /* it would wait for its own thread to end */
    }
    if (__atomic_load_n(&vm->lifecycle, __ATOMIC_RELAXED) == RVM_VM_CREATED &&
        !__atomic_load_n(&vm->ended, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&vm->ctl);
        return -EINVAL; /* never started: nothing would end it */
    }
    while (!(__atomic_load_n(&vm->ended, __ATOMIC_RELAXED) && vm->threads_alive == 0)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&vm->cond, &vm->ctl);
        } else if (timeout_ms == 0 ||
                   pthread_cond_timedwait(&vm->cond, &vm->ctl, &deadline) == ETIMEDOUT) {
            r = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&vm->ctl);
    if (r == 0)
        join_all(vm);
    if (result)
        rvm_vm_result(vm, result);
    return r;
}

enum rvm_vm_state rvm_vm_state(const struct rvm_vm *vm)
{
    return __atomic_load_n(&vm->lifecycle, __ATOMIC_ACQUIRE);
}

void rvm_vm_result(const struct rvm_vm *vm, struct rvm_vm_result *result)
{
    struct rvm_vm *m = (struct rvm_vm *)vm;

    pthread_mutex_lock(&m->ctl);
    if (__atomic_load_n(&m->ended, __ATOMIC_RELAXED))
        *result = m->result;
    else
        memset(result, 0, sizeof(*result));
    pthread_mutex_unlock(&m->ctl);
}

int rvm_vcpu_thread_affinity(struct rvm_vcpu *v, void *cpus)
{
    struct rvm_vm *vm = v->vm;
    int r;

    pthread_mutex_lock(&vm->ctl);
    if (!v->thread_started)
        r = -ESRCH;
    else
        r = -pthread_getaffinity_np(v->thread, sizeof(cpu_set_t), cpus);
    pthread_mutex_unlock(&vm->ctl);
    return r;
}
