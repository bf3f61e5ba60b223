/* SPDX-License-Identifier: MIT */
/*
 * A virtual machine: its guest memory, vCPUs, I/O buses and lifecycle.
 *
 * Two ways to run it:
 *  - managed: rvm_vm_start() creates one thread per vCPU, pinned as the config
 *    says, each running a lock-free loop that dispatches exits to the VM's
 *    buses; rvm_vm_pause(), rvm_vm_resume(), rvm_vm_stop() and rvm_vm_wait()
 *    control it from any thread;
 *  - manual: the embedder creates vCPUs with rvm_vcpu_create() and calls
 *    rvm_vcpu_run() itself, seeing every exit (see vcpu.h).
 */
#ifndef RINGVM_VM_H
#define RINGVM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>
#include <ringvm/mem.h>

struct rvm_vm;
struct rvm_hv;
struct rvm_vcpu;

#define RVM_MAX_CPUS_LIST   256
#define RVM_MAX_CPUID_EDITS 32

enum rvm_cpuid_reg { RVM_CPUID_EAX = 0, RVM_CPUID_EBX, RVM_CPUID_ECX, RVM_CPUID_EDX };

/*
 * One change to the CPUID every vCPU gets, applied after ringvm has made
 * it (KVM_GET_SUPPORTED_CPUID, the paravirtual leaves, the VM's topology):
 * register reg of leaf `function` becomes (value & ~clear) | set. index is
 * the subleaf, for leaves KVM marks as indexed; any_index edits every
 * subleaf. A leaf KVM does not report is added (all zero, then the edit)
 * when set is non-zero; the leaf range's maximum (leaf 0, 0x40000000 or
 * 0x80000000 EAX) is the caller's to raise if it must. For hiding what a
 * host reports but cannot run, e.g. KVM's PV IPI, PV sched-yield and PV
 * unhalt (leaf 0x40000001 EAX bits 11, 13, 7) where hypercalls do not work.
 */
struct rvm_cpuid_edit {
    uint32_t function, index;
    bool any_index;
    uint8_t reg; /* enum rvm_cpuid_reg */
    uint32_t clear, set;
};

struct rvm_vm_config {
    struct rvm_mem_config mem;
    uint32_t vcpus; /* 0 means 1 */
    /*
     * Pinning for managed vCPU threads: vCPU i runs on cpus[i % n_cpus] when
     * n_cpus > 0; else on the CPUs of numa_node (round robin) when numa_node
     * >= 0; else wherever the scheduler likes. numa_node also places memory
     * when mem.numa_node is -1.
     */
    unsigned n_cpus;
    int cpus[RVM_MAX_CPUS_LIST];
    int numa_node;
    /*
     * CPUs for the VM's device workers (the virtio-blk I/O threads). With
     * n_io_cpus == 0: the CPUs the thread calling rvm_vm_create() may run on,
     * less the CPUs in cpus[] (all of them if that leaves none). A worker on
     * a vCPU's CPU competes with a guest that polls; give it its own.
     */
    unsigned n_io_cpus;
    int io_cpus[RVM_MAX_CPUS_LIST];
    /*
     * Dirty tracking (ringvm/dirty.h): entries of each vCPU's KVM dirty ring,
     * a power of two from 1024 up to what KVM allows (65536 on most hosts),
     * or 0 for the bitmap instead. Set before the vCPUs exist, so here. A
     * ring costs 16 bytes an entry per vCPU for the VM's life. Size it for
     * the pages a vCPU can dirty between two harvests: dirty_reap_us apart
     * (0: 1000 us; negative: no reaper, harvest only at collections and at
     * full-ring exits).
     */
    uint32_t dirty_ring_entries;
    int32_t dirty_reap_us;
    /* CPUID changes, in order (struct rvm_cpuid_edit). */
    unsigned n_cpuid_edits;
    struct rvm_cpuid_edit cpuid_edits[RVM_MAX_CPUID_EDITS];
};

/* A config with defaults: 1 vCPU, 128 MiB anonymous memory, no pinning. */
void rvm_vm_config_init(struct rvm_vm_config *config);

/*
 * Creates a VM: KVM VM, in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT,
 * TSS and identity-map pages placed in the 32-bit hole, guest memory
 * allocated and registered. No vCPU exists yet. On success *out owns it.
 */
int rvm_vm_create(struct rvm_hv *hv, const struct rvm_vm_config *config, struct rvm_vm **out);

/*
 * Stops (if running), joins every vCPU thread, frees everything. Not from a
 * vCPU thread or handler; a manual loop must have returned from
 * rvm_vcpu_run() (rvm_vm_stop() kicks it out) before this is called.
 */
void rvm_vm_destroy(struct rvm_vm *vm);

struct rvm_mem *rvm_vm_mem(struct rvm_vm *vm);
struct rvm_hv *rvm_vm_hv(struct rvm_vm *vm);
uint32_t rvm_vm_vcpu_count(const struct rvm_vm *vm);
/* vCPU i if it exists, else NULL. */
struct rvm_vcpu *rvm_vm_vcpu(struct rvm_vm *vm, uint32_t i);

/* ---- I/O buses ---------------------------------------------------------- */

enum rvm_bus_kind {
    RVM_BUS_PIO = 0,  /* x86 port I/O, addresses 0..0xffff */
    RVM_BUS_MMIO = 1, /* guest-physical MMIO */
};

/*
 * A device's handlers. They run on the vCPU thread that took the exit, with
 * no library lock held, possibly on several vCPU threads at once: a device
 * shared by vCPUs synchronises itself. `offset` is relative to the range's
 * base; size is 1, 2, 4 or 8. read fills *data (the low `size` bytes are
 * used). A handler returns 0, or -errno to refuse the access: it is counted
 * in rvm_vcpu_stats().failed_io and a refused read returns all ones. A NULL
 * handler ignores writes / reads ones.
 */
struct rvm_io_ops {
    int (*read)(void *opaque, uint64_t offset, uint32_t size, uint64_t *data);
    int (*write)(void *opaque, uint64_t offset, uint32_t size, uint64_t data);
};

/*
 * Maps [base, base + len) on a bus to ops/opaque. -EEXIST when it overlaps a
 * range already mapped, -EINVAL for len 0, overflow, or a PIO range beyond
 * 0xffff. Safe while vCPUs run: the new table is published atomically and
 * the old one freed once every vCPU has passed a quiescent point. Safe from
 * a bus handler too (a device remapping itself): the old table is then freed
 * later, by the next call from elsewhere or by rvm_vm_destroy().
 */
int rvm_vm_map_io(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t base, uint64_t len,
                  const struct rvm_io_ops *ops, void *opaque);

/*
 * Unmaps the range starting exactly at base. -ENOENT if none does. Called
 * from outside the VM's handlers, it returns when no vCPU is still inside
 * that range's handlers; called from a handler, other vCPUs may still be
 * finishing an access to it.
 */
int rvm_vm_unmap_io(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t base);

/*
 * Binds eventfd `fd` to guest writes of `len` bytes (1, 2, 4 or 8) at addr,
 * so they signal the fd inside KVM without an exit to user space. If
 * has_match, only writes of value `match` do. The fd stays the caller's.
 */
int rvm_vm_add_ioeventfd(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t len,
                         bool has_match, uint64_t match, int fd);
int rvm_vm_remove_ioeventfd(struct rvm_vm *vm, enum rvm_bus_kind bus, uint64_t addr, uint32_t len,
                            bool has_match, uint64_t match, int fd);

/* Binds eventfd fd to interrupt line gsi (IOAPIC pins 0-23): a write raises an edge. */
int rvm_vm_add_irqfd(struct rvm_vm *vm, uint32_t gsi, int fd);
int rvm_vm_remove_irqfd(struct rvm_vm *vm, uint32_t gsi, int fd);

/* Sets interrupt line gsi to level (KVM_IRQ_LINE). */
int rvm_vm_set_irq(struct rvm_vm *vm, uint32_t gsi, bool level);

/* ---- Lifecycle (managed execution) --------------------------------------- */

enum rvm_vm_state {
    RVM_VM_CREATED = 0,
    RVM_VM_RUNNING,
    RVM_VM_PAUSED,
    RVM_VM_STOPPED,
};

enum rvm_vm_end {
    RVM_END_NONE = 0,   /* still running, or never started */
    RVM_END_STOPPED,    /* rvm_vm_stop() from the host */
    RVM_END_DEBUG_EXIT, /* the guest wrote to the debug-exit port */
    RVM_END_POWEROFF,   /* the guest powered off (KVM system event) */
    RVM_END_RESET,      /* the guest asked for a reset */
    RVM_END_SHUTDOWN,   /* triple fault */
    RVM_END_ERROR,      /* internal error, failed entry, or a run-loop error */
    RVM_END_PANIC,      /* the guest's kernel panicked (pvpanic); value: its event bits */
};

#define RVM_CRASH_EXITS 16

/* One exit in a vCPU's recent history: what KVM reported and where. */
struct rvm_exit_trace {
    uint32_t kvm_reason; /* KVM_EXIT_* */
    uint8_t size;        /* port or MMIO access size, else 0 */
    uint8_t write;       /* 1 for an out or MMIO write */
    uint64_t addr;       /* the port or guest-physical address */
};

/*
 * What the vCPU that ended a VM by a crash looked like (a triple fault, an
 * emulation failure or another KVM internal error, a failed VM entry, an
 * exit nothing handles): its registers, the instruction at RIP, and the
 * exits it took before. rvm_crash_format() writes it out for a person.
 */
struct rvm_crash {
    uint32_t vcpu;
    uint32_t kvm_reason; /* KVM_EXIT_SHUTDOWN, _INTERNAL_ERROR, _FAIL_ENTRY, ... */
    uint32_t suberror;   /* internal error: KVM_INTERNAL_ERROR_* */
    uint64_t hw_reason;  /* failed entry: the hardware's reason */
    uint32_t ndata;      /* internal error: KVM's data words, as given */
    uint64_t data[16];
    bool have_regs; /* false if KVM would not give the registers */
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint8_t cpl;
    /* The instruction bytes at CS:RIP: KVM's own (emulation failure) or read from guest memory. */
    uint8_t insn_len;
    bool insn_from_kvm;
    uint8_t insn[15];
    uint32_t nexits; /* the last exits before this one, oldest first */
    struct rvm_exit_trace exits[RVM_CRASH_EXITS];
};

struct rvm_vm_result {
    enum rvm_vm_end end;
    /*
     * RVM_END_DEBUG_EXIT: the value the guest wrote; qemu_status is the
     * status QEMU's isa-debug-exit would exit with, (value << 1) | 1.
     * RVM_END_ERROR: a negative errno in value for run-loop errors, or the
     * KVM exit reason; vcpu names the vCPU that ended the VM.
     */
    int64_t value;
    int qemu_status;
    uint32_t vcpu;
    /* RVM_END_SHUTDOWN, and RVM_END_ERROR from a vCPU's exit: what that vCPU looked like. */
    bool crashed;
    struct rvm_crash crash;
};

/*
 * Writes c for a person into buf[0..len) (NUL-terminated, truncated if it
 * must be): the reason, the general, segment and control registers, EFER,
 * CPL, the instruction bytes and the last exits, over several lines.
 * Returns the length it needed, as snprintf does.
 */
int rvm_crash_format(const struct rvm_crash *c, char *buf, size_t len);

/*
 * Creates the missing vCPUs (rvm_vcpu_create), then one pinned thread per
 * vCPU running the managed loop. -EBUSY if already started or ended. If a
 * vCPU or thread cannot be created or pinned, the threads started are
 * stopped and joined, the VM ends (RVM_END_ERROR) and the error is returned:
 * destroy it.
 */
int rvm_vm_start(struct rvm_vm *vm);

/*
 * Kicks every vCPU out of KVM_RUN and returns once all are parked (not in
 * KVM_RUN, not in a handler). Idempotent; concurrent callers all wait.
 * -EINVAL unless running or paused; -ECANCELED if the VM ended (or another
 * thread resumed it) meanwhile; -EDEADLK from a vCPU thread (a handler).
 */
int rvm_vm_pause(struct rvm_vm *vm);

/* Lets parked vCPUs run again. -EINVAL unless paused (an ended VM stays ended). */
int rvm_vm_resume(struct rvm_vm *vm);

/*
 * Ends the VM (RVM_END_STOPPED unless the guest ended it first), kicks and
 * joins every vCPU thread. Safe from any thread, more than once. From a
 * vCPU thread (a handler) it ends the VM but cannot join its own thread:
 * -EDEADLK, and a later stop or wait from another thread joins.
 */
int rvm_vm_stop(struct rvm_vm *vm);

/*
 * Ends the VM from a device handler or any thread without waiting: records
 * end/value (the first caller wins) and kicks the vCPUs. Threads are joined
 * by rvm_vm_stop()/rvm_vm_wait().
 */
void rvm_vm_request_end(struct rvm_vm *vm, enum rvm_vm_end end, int64_t value);

/*
 * Blocks until the VM has ended (the guest or rvm_vm_request_end), joins the
 * vCPU threads and fills *result. timeout_ms < 0 waits forever; -ETIMEDOUT
 * when the time runs out first; -EINVAL if never started; -EDEADLK from a
 * vCPU thread.
 */
int rvm_vm_wait(struct rvm_vm *vm, int timeout_ms, struct rvm_vm_result *result);

enum rvm_vm_state rvm_vm_state(const struct rvm_vm *vm);

/* The result so far (end is RVM_END_NONE while the VM runs). */
void rvm_vm_result(const struct rvm_vm *vm, struct rvm_vm_result *result);

/*
 * A device that paused the VM: a disk whose error policy stops the VM on a
 * host I/O error (struct rvm_blk_config.on_error) keeps the failed requests,
 * takes no new ones and pauses the VM; the embedder fixes the backend (grows
 * the filesystem, say) and calls rvm_vm_resume(), which retries them.
 */
struct rvm_device_stop {
    char device[48]; /* "virtio-blk at 0xd0000000" */
    int error;       /* the backend's -errno: -ENOSPC, -EIO, ... */
};

/*
 * Why a device paused the VM: 0 with *out filled while it is paused for
 * that and not yet resumed; -ENOENT otherwise.
 */
int rvm_vm_device_stop(struct rvm_vm *vm, struct rvm_device_stop *out);

#endif
