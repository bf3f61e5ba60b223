/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_CORE_VM_INTERNAL_H
#define RINGVM_CORE_VM_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <ringvm/boot.h>
#include <ringvm/vcpu.h>
#include <ringvm/vm.h>

#include "bus.h"
#include "dirty.h"
#include "fwdev.h"
#include "hv_internal.h"

/* What the managed vCPU threads are asked to do; vm->run_state. */
enum run_state {
    RUN_GO = 0,
    RUN_PAUSE,
    RUN_STOP,
};

/*
 * The first cache line holds everything the managed loop touches per port or
 * MMIO exit (after KVM_RUN the caches are cold: each extra line costs).
 */
struct rvm_vcpu {
    struct kvm_run *run; /* mmap of the vCPU fd */
    struct rvm_vm *vm;
    /*
     * Quiescent-state counter for bus-table reclamation: odd while the vCPU
     * holds a bus table (dispatching an exit), even otherwise.
     */
    uint64_t qs;
    int fd;
    /* What the last exit left pending: RVM_EXIT_IO_IN, RVM_EXIT_MMIO_READ or NONE. */
    uint8_t pending;                 /* enum rvm_exit_reason */
    uint64_t exits[RVM_EXIT__COUNT]; /* written by the running thread only */
    uint64_t unhandled_io;
    uint64_t failed_io;
    uint32_t id;
    pthread_t thread;
    bool thread_started;
    /*
     * Parked with its last exit completed (a KVM_RUN with immediate_exit on
     * its own thread, as KVM wants before the state is read). Under vm->ctl.
     */
    bool parked_complete;
    /* The thread inside rvm_vcpu_dispatch() (manual execution), __atomic. */
    pthread_t manual_dispatcher;
    /* The thread inside rvm_vcpu_run() (manual execution), so that kicks reach it. */
    pthread_mutex_t run_lock;
    bool in_manual_run;
    pthread_t manual_runner;
    struct vcpu_dirty_ring dring; /* under vm->dirty.lock */
    /*
     * The last exits, for crash reports: kvm_run's reason and the first bytes
     * of its exit union, copied as they are (decoded only for a report).
     * Written by the running thread, read once it has stopped.
     */
    uint32_t trace_next;
    struct exit_raw {
        uint32_t kvm_reason;
        uint32_t pad;
        uint64_t u[3]; /* io or mmio: all of io, mmio up to is_write */
    } trace[RVM_CRASH_EXITS];
} __attribute__((aligned(64)));

struct recbuf;
struct rvm_restore_params;

/* What a device kind gets to re-create one of its devices from a snapshot. */
struct dev_restore {
    const uint8_t *state; /* the whole state, checked */
    size_t len;
    uint32_t index;   /* the device's place in the snapshot's device list */
    uint32_t ordinal; /* its place among the snapshot's devices of its kind */
    const struct rvm_restore_params *params;
};

/* How a device's state goes into a snapshot and comes back (kind: enum rec_type). */
struct vm_snap_ops {
    uint32_t kind;
    /*
     * A device of this kind added to vm as the snapshot had it, its backend
     * from params (never from the state, unless trust_snapshot_paths); its
     * state comes later, through load.
     */
    int (*recreate)(struct rvm_vm *vm, const struct dev_restore *r);
    int (*save)(void *dev, struct recbuf *b, uint32_t index);
    int (*load)(void *dev, const uint8_t *state, size_t len, uint32_t index);
    /*
     * Optional: stop writing guest memory (in-flight work finished), and
     * start again. A snapshot quiesces every device before it saves their
     * state and the last memory, and resumes them after (all of them, also
     * when one failed). Quiesce is 0 or -errno (-ETIMEDOUT: in-flight work
     * did not finish in the device's bound), which fails the snapshot.
     */
    int (*quiesce)(void *dev);
    void (*resume)(void *dev);
};

/* The snapshot ops of a device kind (devices/kinds.c), or NULL for none. */
const struct vm_snap_ops *vm_device_kind(uint32_t kind);

/* A device owned by the VM: notified when the VM ends, freed with it. */
struct vm_device {
    void (*on_end)(void *dev);
    void (*on_resume)(void *dev); /* optional: after rvm_vm_resume() let the vCPUs go */
    void (*destroy)(void *dev);
    const struct vm_snap_ops *snap; /* NULL: the device cannot be snapshotted */
    void *dev;
    struct vm_device *next;
};

struct rvm_vm {
    /* Hot, first: the run state and the bus tables every exit reads. */
    int run_state; /* enum run_state, __atomic */
    struct rvm_bus bus[2];

    struct rvm_hv *hv;
    int fd;
    struct rvm_mem *mem;
    struct rvm_vm_config config;
    uint32_t nvcpus;
    struct rvm_vcpu **vcpus; /* nvcpus slots; NULL until created */

    int lifecycle;       /* enum rvm_vm_state, __atomic */
    pthread_mutex_t ctl; /* slow path only: start/pause/resume/stop/wait */
    pthread_cond_t cond;
    uint32_t threads_alive;
    uint32_t threads_parked;

    int ended;         /* __atomic: 1 once the result is set */
    bool end_notified; /* devices' on_end ran (under ctl) */
    bool dev_stopped;  /* a device paused the VM (under ctl), until resume */
    struct rvm_device_stop dev_stop;
    pthread_mutex_t join_lock; /* serialises joiners; never taken by vCPU threads */
    pthread_t *join_buf;       /* nvcpus slots, used under join_lock */
    struct rvm_vm_result result;
    int crash_claimed; /* __atomic: 1 once a vCPU has filled crash */
    struct rvm_crash crash;

    bool have_boot;
    struct rvm_boot_info boot;
    uint64_t created_ns;   /* CLOCK_MONOTONIC at rvm_vm_create() */
    uint64_t boot_mark_ns; /* __atomic: the boot timer's first mark, since created_ns; 0 none */

    pthread_mutex_t dev_lock;
    struct vm_device *devices;

    uint32_t virtio_slots; /* virtio-mmio slots handed out (under dev_lock) */
    unsigned n_fw_devs;    /* what the firmware tables describe (under dev_lock) */
    struct rvm_acpi_device fw_devs[FW_MAX_DEVS];
    cpu_set_t creator_cpus; /* the creating thread's affinity, for device workers */

    /* Bus tables replaced from a vCPU thread, freed after a later grace period (under ctl). */
    struct bus_table *retired;

    struct vm_dirty dirty;

    /*
     * The VM's latest snapshot: a diff's parent. busy (atomic) is held by the
     * one snapshot that may run at a time, and guards the rest; hold (under
     * ctl) refuses rvm_vm_resume() while a snapshot owns the VM's pause.
     */
    struct {
        int busy;
        bool hold;
        bool devices_held; /* __atomic: quiesced by a snapshot of a paused VM, until resume */
        uint64_t foreign_completions; /* exits a snapshot completed from its own thread */
        bool have_parent;
        uint64_t parent_id;
        char parent[1024];
    } snap;
} __attribute__((aligned(64)));

/*
 * Waits until every vCPU holding a bus table has passed a quiescent point.
 * Must not be called from a thread inside a vCPU's dispatch (it would wait
 * for itself): see vm_retire().
 */
void vm_synchronize(struct rvm_vm *vm);

/*
 * Frees a bus table that a writer has just replaced: after a grace period,
 * or, when the caller is itself dispatching an exit of this VM, later (the
 * next writer that can wait, or rvm_vm_destroy()).
 */
void vm_retire(struct rvm_vm *vm, struct bus_table *old);

/*
 * One access on a bus from a thread that is not a vCPU (tests, device
 * models that forward accesses): as the guest's would be dispatched. Holds
 * the bus's writer lock meanwhile, so maps and unmaps wait (and a handler
 * reached this way must not map or unmap). 0, -ENOENT when nothing claims
 * the access, -EIO when its handler refused it, -EINVAL for a bad bus.
 */
int vm_io_access(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t size, bool write,
                 uint64_t *val);

/* Takes ownership of dev: on_end (may be NULL) at VM end, destroy at VM destroy. */
int vm_add_device(struct rvm_vm *vm, void *dev, void (*on_end)(void *), void (*destroy)(void *));
/* Sets the on_resume hook of the device added with dev. */
void vm_device_on_resume(struct rvm_vm *vm, void *dev, void (*on_resume)(void *));
/*
 * From any thread but a vCPU's, without waiting: pauses the VM for a device
 * (rvm_vm_device_stop() says which and why; the first since the last resume
 * is kept). Nothing if the VM is not running or paused.
 */
void vm_request_pause(struct rvm_vm *vm, const char *device, int err);
/* The same, for a device whose state snapshots can carry. */
int vm_add_device_snap(struct rvm_vm *vm, void *dev, void (*on_end)(void *),
                       void (*destroy)(void *), const struct vm_snap_ops *snap);

/* Interrupts every vCPU's KVM_RUN (immediate_exit + signal). */
void vm_kick_all(struct rvm_vm *vm);

/* rvm_vm_request_end() naming the vCPU that ended the VM. */
void vm_request_end(struct rvm_vm *vm, enum rvm_vm_end end, int64_t value, uint32_t vcpu);

/*
 * A snapshot's hold on the VM: from vm_hold_begin() on, rvm_vm_resume()
 * fails with -EBUSY; vm_hold_pause() pauses a running VM (*paused: whether
 * it was this call that paused it); vm_hold_end() lets go and resumes the VM
 * if resume, in one step under the lifecycle lock.
 */
void vm_hold_begin(struct rvm_vm *vm);
int vm_hold_pause(struct rvm_vm *vm, bool *paused);
void vm_hold_end(struct rvm_vm *vm, bool resume);
/* Devices a snapshot of a paused VM left quiesced start again (rvm_vm_resume()). */
void vm_snap_devices_resume(struct rvm_vm *vm);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t vm_now_ns(void);

/*
 * The managed loop's step: one KVM_RUN, then port and MMIO exits dispatched
 * straight from kvm_run (no struct rvm_exit), others through
 * rvm_vcpu_dispatch(). 0 to go on, 1 when the VM ended, -errno on failure.
 */
int vcpu_run_dispatch(struct rvm_vcpu *v);

/*
 * The CPUs a device's worker thread should run on: those the VM's creator
 * could use, less the ones its vCPUs are pinned to (unless that leaves none),
 * so that I/O completes while the guest spins on its own CPU.
 */
void vm_io_cpus(struct rvm_vm *vm, cpu_set_t *set);

/*
 * Starts a device or tracking thread on the VM's I/O CPUs (never by
 * inheritance: the caller may be a vCPU thread). 0 or -errno.
 */
int vm_io_thread_create(struct rvm_vm *vm, pthread_t *thread, void *(*fn)(void *), void *arg);

/* (Re-)registers guest memory with KVM, every slot with these flags (KVM_MEM_*). */
int vm_register_memory(struct rvm_vm *vm, uint32_t flags);

/* rvm_vcpu_create() with vm->ctl held. */
int vcpu_create_locked(struct rvm_vm *vm, uint32_t id, struct rvm_vcpu **out);

/* The managed loop of one vCPU thread. */
void *vcpu_thread_main(void *arg);

#endif
