/* SPDX-License-Identifier: MIT */
/*
 * A snapshot's x86 vCPU and VM records, parsed and checked before any of
 * them reaches KVM (state.c applies them): a record missing, of the wrong
 * size, or holding what no KVM state can (more CPUID entries or MSRs than
 * a save makes, an MP state x86 does not have, an XSAVE area larger than
 * this host's) refuses the restore before the first ioctl. Pure: the fuzz
 * target drives it on bytes alone.
 */
#ifndef RINGVM_ARCH_X86_64_STATE_PARSE_H
#define RINGVM_ARCH_X86_64_STATE_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#define STATE_MAX_MSRS  512
#define STATE_MAX_CPUID 256

/* One vCPU's state, in buffers of its own (aligned, as KVM takes them). */
struct vcpu_state {
    struct kvm_cpuid2 *cpuid; /* NULL: the snapshot has none (the vCPU keeps its own) */
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xsave *xsave; /* xsave_max bytes: the saved xsave_len, then zeros */
    uint32_t xsave_len;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs debugregs;
    struct kvm_lapic_state lapic;
    struct kvm_msrs *msrs;
    struct kvm_vcpu_events events;
};

/*
 * vCPU id's records of state[0..len), for a host whose XSAVE area is
 * xsave_max bytes. 0 (free with vcpu_state_free()), -EBADMSG for a record
 * missing or malformed, -E2BIG for an XSAVE area larger than this host's,
 * -ENOMEM. Nothing to free on failure.
 */
int vcpu_state_parse(const uint8_t *state, size_t len, uint32_t id, uint32_t xsave_max,
                     struct vcpu_state *s);
void vcpu_state_free(struct vcpu_state *s);

/* The VM's: the PICs and IOAPIC, the PIT, kvmclock, the TSC rate (kHz, 0: unknown). */
struct vm_state {
    struct kvm_irqchip chip[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    uint32_t tsc_khz;
};

/* 0, or -EBADMSG. */
int vm_state_parse(const uint8_t *state, size_t len, struct vm_state *s);

#endif
