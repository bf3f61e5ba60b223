/* SPDX-License-Identifier: MIT */
/*
 * The architecture interface core/ calls. Everything x86-specific (irqchip,
 * CPUID, register reset state, boot protocols) lives behind it.
 */
#ifndef RINGVM_ARCH_H
#define RINGVM_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rvm_vm;
struct rvm_vcpu;
struct rvm_boot_info;

/* Where the KVM TSS (3 pages) and identity-map page live: top of the 32-bit hole. */
#define ARCH_IDENTITY_MAP_GPA 0xfeffc000ULL
#define ARCH_TSS_GPA          0xfeffd000ULL

/*
 * Per-VM set-up after KVM_CREATE_VM and before any vCPU: TSS and identity
 * map addresses, in-kernel irqchip, PIT. Returns 0 or -errno (logged).
 */
int arch_vm_init(struct rvm_vm *vm);

/* Per-vCPU set-up after KVM_CREATE_VCPU: CPUID for this vCPU's APIC ID. */
int arch_vcpu_init(struct rvm_vcpu *vcpu);

/* Loads info's entry state into vcpu: PVH (32-bit flat protected mode) or Linux 64-bit. */
int arch_vcpu_set_pvh_entry(struct rvm_vcpu *vcpu, const struct rvm_boot_info *info);

struct rvm_mem;

/* A range of the guest's physical memory map, e820 style (type 1 RAM, 2 reserved). */
struct x86_ram_range {
    uint64_t addr, size;
    uint32_t type;
};
#define X86_RAM      1
#define X86_RESERVED 2

/* The map both boot protocols give: RAM below 0x9fc00, the BIOS hole, RAM above. */
unsigned x86_ram_map(const struct rvm_mem *mem, struct x86_ram_range *out, unsigned max);

struct rvm_crash;

/*
 * The architectural part of a crash report, from a vCPU that has stopped
 * in KVM_RUN: registers, CPL, and (unless c already has them from KVM) the
 * instruction bytes at CS:RIP read through the guest's page tables.
 */
void arch_vcpu_crash(struct rvm_vcpu *vcpu, struct rvm_crash *c);

struct recbuf;

/* Snapshot records of a vCPU (stopped, its I/O completed) and of the VM's irqchip, PIT, clock. */
int arch_vcpu_save(struct rvm_vcpu *vcpu, struct recbuf *b);
int arch_vm_save(struct rvm_vm *vm, struct recbuf *b);
/* Loads them back (the state checked with snap_check_state() first). 0, -EBADMSG or -errno. */
int arch_vcpu_load(struct rvm_vcpu *vcpu, const uint8_t *state, size_t len);
int arch_vm_load(struct rvm_vm *vm, const uint8_t *state, size_t len, bool allow_tsc_drift);

#endif
