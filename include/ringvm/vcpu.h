/* SPDX-License-Identifier: MIT */
/*
 * vCPUs and their exits. In manual execution the embedder owns the loop:
 *
 *     struct rvm_exit e;
 *     for (;;) {
 *         int r = rvm_vcpu_run(vcpu, &e);      // one KVM_RUN, one exit
 *         if (r < 0) break;
 *         r = rvm_vcpu_dispatch(vcpu, &e);     // optional: let the VM's buses handle it
 *         if (r > 0) break;                    // the VM has ended
 *     }
 *
 * A vCPU is driven by one thread at a time. Registers may be read and set
 * only from that thread, or while the vCPU is not running (before start, or
 * paused).
 */
#ifndef RINGVM_VCPU_H
#define RINGVM_VCPU_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

struct rvm_vm;
struct rvm_vcpu;

enum rvm_exit_reason {
    RVM_EXIT_NONE = 0,
    RVM_EXIT_IO_IN,          /* port read: answer with rvm_vcpu_set_io_result() */
    RVM_EXIT_IO_OUT,         /* port write: io.data holds the value */
    RVM_EXIT_MMIO_READ,      /* answer with rvm_vcpu_set_mmio_result() */
    RVM_EXIT_MMIO_WRITE,     /* mmio.data holds the value */
    RVM_EXIT_HLT,            /* only without an in-kernel LAPIC */
    RVM_EXIT_SHUTDOWN,       /* triple fault */
    RVM_EXIT_SYSTEM_EVENT,   /* system_event.type: KVM_SYSTEM_EVENT_* */
    RVM_EXIT_INTERNAL_ERROR, /* internal.suberror: KVM_INTERNAL_ERROR_* */
    RVM_EXIT_FAIL_ENTRY,     /* fail_entry.reason: hardware entry failure */
    RVM_EXIT_DIRTY_RING_FULL,
    RVM_EXIT_INTR,    /* KVM_RUN interrupted (a kick, a signal); no guest progress needed */
    RVM_EXIT_DEBUG,   /* guest debug trap */
    RVM_EXIT_UNKNOWN, /* anything else: unknown.kvm_reason says what */
    RVM_EXIT__COUNT
};

struct rvm_exit {
    enum rvm_exit_reason reason;
    uint32_t kvm_reason; /* the raw KVM_EXIT_* value */
    union {
        struct {
            uint16_t port;
            uint8_t size;   /* 1, 2 or 4 */
            uint32_t count; /* > 1 for string I/O (rep ins/outs) */
            uint64_t data;  /* OUT: the first value written */
        } io;
        struct {
            uint64_t addr;
            uint8_t size;  /* 1..8 */
            uint64_t data; /* WRITE: the value written */
        } mmio;
        struct {
            uint32_t type;
            uint32_t ndata;
            uint64_t data[16];
        } system_event;
        struct {
            uint32_t suberror;
            uint32_t ndata;
            uint64_t data[16];
        } internal;
        struct {
            uint64_t reason;
            uint32_t cpu;
        } fail_entry;
    } u;
};

/* A short name for an exit reason ("io-out", "mmio-read", ...). */
const char *rvm_exit_reason_name(enum rvm_exit_reason reason);

/*
 * Creates vCPU `id` (0 <= id < the config's vcpus), sets CPUID and the
 * architectural reset state. -EEXIST if it exists; -EINVAL for a bad id.
 * The vCPU belongs to the VM and is freed with it.
 */
int rvm_vcpu_create(struct rvm_vm *vm, uint32_t id, struct rvm_vcpu **out);

uint32_t rvm_vcpu_id(const struct rvm_vcpu *vcpu);

/*
 * Enters the guest until the next exit and describes it in *exit. Returns 0,
 * or -errno when KVM_RUN itself fails (never for EINTR: that is
 * RVM_EXIT_INTR). For IO_IN/MMIO_READ the result must be supplied (set_*_result
 * or rvm_vcpu_dispatch) before the next call, else the guest reads zero.
 */
int rvm_vcpu_run(struct rvm_vcpu *vcpu, struct rvm_exit *exit);

/*
 * Handles an exit the way the managed loop does: port and MMIO accesses go
 * to the VM's buses (unmapped: reads all-ones, writes dropped), shutdown,
 * system events and errors end the VM. Returns 0 to go on, 1 when the VM
 * has ended (see rvm_vm_result), -errno on failure.
 */
int rvm_vcpu_dispatch(struct rvm_vcpu *vcpu, const struct rvm_exit *exit);

/*
 * Makes the vCPU leave KVM_RUN (RVM_EXIT_INTR) or return at once from its
 * next rvm_vcpu_run(): for a manual loop that must stop or look at its own
 * state while the guest halts. Safe from any thread. rvm_vm_request_end(),
 * rvm_vm_stop() and rvm_vm_pause() kick every vCPU this way, managed or not.
 * The kick signal (rvm_hv_config.kick_signal) must not be blocked in the
 * thread that runs the vCPU.
 */
int rvm_vcpu_kick(struct rvm_vcpu *vcpu);

/*
 * Supply the value a pending IO_IN / MMIO_READ exit reads. -EINVAL if the last
 * exit was not of that kind. For string I/O the value fills every element.
 */
int rvm_vcpu_set_io_result(struct rvm_vcpu *vcpu, uint64_t value);
int rvm_vcpu_set_mmio_result(struct rvm_vcpu *vcpu, uint64_t value);

int rvm_vcpu_get_regs(struct rvm_vcpu *vcpu, struct kvm_regs *regs);
int rvm_vcpu_set_regs(struct rvm_vcpu *vcpu, const struct kvm_regs *regs);
int rvm_vcpu_get_sregs(struct rvm_vcpu *vcpu, struct kvm_sregs *sregs);
int rvm_vcpu_set_sregs(struct rvm_vcpu *vcpu, const struct kvm_sregs *sregs);

/*
 * The CPUs the vCPU's managed thread may run on, read back from the thread
 * (a cpu_set_t into *cpus). -ESRCH when the vCPU has no running thread.
 */
int rvm_vcpu_thread_affinity(struct rvm_vcpu *vcpu, void *cpus);

/* The guest TSC frequency in kHz (KVM_GET_TSC_KHZ), or -errno. */
int64_t rvm_vcpu_tsc_khz(struct rvm_vcpu *vcpu);

/* Per-vCPU exit counters, indexed by enum rvm_exit_reason. Racy reads are fine. */
struct rvm_vcpu_stats {
    uint64_t exits[RVM_EXIT__COUNT];
    uint64_t unhandled_io; /* accesses no bus range claimed */
    uint64_t failed_io;    /* accesses whose handler returned -errno */
};
void rvm_vcpu_stats(const struct rvm_vcpu *vcpu, struct rvm_vcpu_stats *stats);

#endif
