/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <ringvm/boot.h>

#include "../../core/log.h"
#include "../../core/vm_internal.h"
#include "arch.h"

#define CPUID_1_ECX_HYPERVISOR (1U << 31)
#define CPUID_1_ECX_X2APIC     (1U << 21)

static int vm_ioctl(struct rvm_vm *vm, unsigned long req, unsigned long arg, const char *what)
{
    if (ioctl(vm->fd, req, arg) < 0) {
        int e = -errno;
        rvm_err(vm->hv, "%s: %s", what, strerror(-e));
        return e;
    }
    return 0;
}

int arch_vm_init(struct rvm_vm *vm)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    uint64_t identity = ARCH_IDENTITY_MAP_GPA;
    int r;

    /* Both must precede vCPU creation; Intel needs them for real-mode emulation. */
    if ((r = vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, (unsigned long)&identity,
                      "KVM_SET_IDENTITY_MAP_ADDR")) < 0)
        return r;
    if ((r = vm_ioctl(vm, KVM_SET_TSS_ADDR, ARCH_TSS_GPA, "KVM_SET_TSS_ADDR")) < 0)
        return r;
    if ((r = vm_ioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")) < 0)
        return r;
    return vm_ioctl(vm, KVM_CREATE_PIT2, (unsigned long)&pit, "KVM_CREATE_PIT2");
}

/* Bits of an APIC ID that number n things: ceil(log2(n)). */
static uint32_t id_bits(uint32_t n)
{
    uint32_t b = 0;

    while ((1U << b) < n)
        b++;
    return b;
}

/*
 * The host's supported CPUID, made this vCPU's, with the topology of the VM
 * rather than the host's: one package of nvcpus cores, one thread each,
 * APIC IDs 0..nvcpus-1 (as the MADT says). Leaf 1: APIC ID, logical count,
 * HTT, the hypervisor bit; leaves 0xb/0x1f: an SMT level of 1 and a core
 * level of nvcpus; leaf 4 (Intel): cores per package; 0x80000008 (AMD): the
 * core count and APIC ID size; 0x8000001e (AMD): the extended APIC ID, one
 * thread per core.
 */
static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

/*
 * The extended topology leaf fn (0xb, or 0x1f where KVM lists it) with all
 * three subleaves the guest walks: SMT, core, and the invalid level that
 * ends the walk. KVM may report only subleaf 0 (seen with leaf 0xb here);
 * without the core level a guest counts one package per vCPU. c has room
 * for the entries added.
 */
static void cpuid_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn)
{
    struct kvm_cpuid_entry2 *e0 = cpuid_find(c, 0, 0);

    if (!e0 || e0->eax < fn || (fn == 0x1f && !cpuid_find(c, 0x1f, 0)))
        return;
    for (uint32_t idx = 0; idx < 3; idx++)
        if (!cpuid_find(c, fn, idx))
            c->entries[c->nent++] = (struct kvm_cpuid_entry2){
                .function = fn, .index = idx, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
}

static void cpuid_for_vcpu(struct kvm_cpuid2 *c, uint32_t id, uint32_t nvcpus)
{
    uint32_t bits = id_bits(nvcpus);

    cpuid_topology_leaf(c, 0xb);
    cpuid_topology_leaf(c, 0x1f);
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];

        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffU) | (id << 24) | ((nvcpus > 255 ? 255 : nvcpus) << 16);
            e->ecx |= CPUID_1_ECX_HYPERVISOR;
            if (nvcpus > 1)
                e->edx |= 1U << 28; /* HTT: the logical count in EBX[23:16] is valid */
            break;
        case 4:
            /* EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing the cache - 1
             * (the caches are per core, but the last level is the package's). */
            if (e->eax & 0x1f) {
                bool llc = ((e->eax >> 5) & 7) >= 3;
                e->eax = (e->eax & 0x3fff) | ((nvcpus - 1) << 26) | ((llc ? nvcpus - 1 : 0) << 14);
            }
            break;
        case 0xb:
        case 0x1f:
            if (e->index == 0) { /* SMT: one thread per core */
                e->eax = 0;
                e->ebx = 1;
                e->ecx = (1U << 8) | 0;
            } else if (e->index == 1) { /* cores: all of them in one package */
                e->eax = bits;
                e->ebx = nvcpus;
                e->ecx = (2U << 8) | 1;
            } else {
                e->eax = e->ebx = 0;
                e->ecx = e->index;
            }
            e->edx = id;
            break;
        case 0x80000008:
            e->ecx = (e->ecx & ~0xf0ffU) | (bits << 12) | (nvcpus - 1);
            break;
        case 0x8000001e:
            e->eax = id;        /* extended APIC ID */
            e->ebx = id & 0xff; /* compute unit (core) ID, one thread per core */
            e->ecx &= ~0x7ffU;  /* node 0, one node per package */
            break;
        default:
            break;
        }
    }
}

static uint32_t *cpuid_reg(struct kvm_cpuid_entry2 *e, uint8_t reg)
{
    switch (reg) {
    case RVM_CPUID_EAX:
        return &e->eax;
    case RVM_CPUID_EBX:
        return &e->ebx;
    case RVM_CPUID_ECX:
        return &e->ecx;
    default:
        return &e->edx;
    }
}

/*
 * The embedder's edits (rvm_vm_config.cpuid_edits), in order. c has room
 * for one more entry per edit: a leaf KVM does not report is added.
 */
static void cpuid_apply_edits(struct kvm_cpuid2 *c, const struct rvm_vm_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_cpuid_edits; i++) {
        const struct rvm_cpuid_edit *ed = &cfg->cpuid_edits[i];
        bool found = false;

        for (uint32_t j = 0; j < c->nent; j++) {
            struct kvm_cpuid_entry2 *e = &c->entries[j];

            if (e->function != ed->function ||
                (!ed->any_index && (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
                 e->index != ed->index))
                continue;
            *cpuid_reg(e, ed->reg) = (*cpuid_reg(e, ed->reg) & ~ed->clear) | ed->set;
            found = true;
        }
        if (!found && ed->set) {
            struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

            memset(e, 0, sizeof(*e));
            e->function = ed->function;
            e->index = ed->any_index ? 0 : ed->index;
            e->flags = ed->index && !ed->any_index ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
            *cpuid_reg(e, ed->reg) = ed->set;
        }
    }
}

int arch_vcpu_init(struct rvm_vcpu *v)
{
    const struct kvm_cpuid2 *src = v->vm->hv->cpuid;
    size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
    unsigned extra = v->vm->config.n_cpuid_edits + 6; /* edits, topology subleaves */
    struct kvm_cpuid2 *c = malloc(sz + extra * sizeof(src->entries[0]));
    int r = 0;

    if (!c)
        return -ENOMEM;
    memcpy(c, src, sz);
    cpuid_for_vcpu(c, v->id, v->vm->nvcpus);
    cpuid_apply_edits(c, &v->vm->config);
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
        r = -errno;
        rvm_err(v->vm->hv, "vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(-r));
    }
    free(c);
    return r;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type)
{
    *s = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = 1,
        .s = 1,
        .l = 0,
        .g = 1,
    };
}

/* General registers at an entry: all zero but RIP, RBX, RSI and the reserved RFLAGS bit. */
static int set_entry_regs(struct rvm_vcpu *v, uint64_t rip, uint64_t rbx, uint64_t rsi)
{
    struct kvm_regs regs;

    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = rip;
    regs.rbx = rbx;
    regs.rsi = rsi;
    return rvm_vcpu_set_regs(v, &regs);
}

/*
 * The Linux 64-bit boot protocol's entry: long mode, paging on the loader's
 * identity map, CS = __BOOT_CS (0x10, 64-bit code), the data segments
 * __BOOT_DS (0x18), interrupts off, RSI = the zero page.
 */
static int set_linux64_entry(struct rvm_vcpu *v, const struct rvm_boot_info *info)
{
    struct kvm_sregs sregs;
    int r;

    if ((r = rvm_vcpu_get_sregs(v, &sregs)) < 0)
        return r;
    flat_segment(&sregs.cs, 0x10, 0xb);
    sregs.cs.db = 0;
    sregs.cs.l = 1;
    flat_segment(&sregs.ds, 0x18, 0x3);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = 0, .type = 0xb, .present = 1, .s = 0};
    sregs.gdt.base = RVM_LINUX_GDT_GPA;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = RVM_LINUX_PML4_GPA;
    sregs.cr4 = 0x20;              /* PAE */
    sregs.cr0 = 0x80000011 | 0x20; /* PG | ET | PE, NE */
    sregs.efer = 0x500;            /* LME | LMA */
    if ((r = rvm_vcpu_set_sregs(v, &sregs)) < 0)
        return r;
    return set_entry_regs(v, info->entry, 0, info->start_info_gpa);
}

int arch_vcpu_set_pvh_entry(struct rvm_vcpu *v, const struct rvm_boot_info *info)
{
    struct kvm_sregs sregs;
    int r;

    if (info->protocol == RVM_BOOT_LINUX64)
        return set_linux64_entry(v, info);
    if ((r = rvm_vcpu_get_sregs(v, &sregs)) < 0)
        return r;
    /* PVH: 32-bit flat protected mode, paging off, CS exec/read, data read/write. */
    flat_segment(&sregs.cs, 0x8, 0xb);
    flat_segment(&sregs.ds, 0x10, 0x3);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    /* A busy 32-bit TSS: VM entry checks want a usable TR even if it is never used. */
    sregs.tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = 0x18, .type = 0xb, .present = 1, .s = 0};
    sregs.cr0 = 0x11; /* PE | ET */
    sregs.cr4 = 0;
    sregs.efer = 0;
    if ((r = rvm_vcpu_set_sregs(v, &sregs)) < 0)
        return r;
    return set_entry_regs(v, info->entry, info->start_info_gpa, 0);
}

int rvm_vcpu_set_pvh_entry(struct rvm_vcpu *v, const struct rvm_boot_info *info)
{
    if (!v || !info)
        return -EINVAL;
    return arch_vcpu_set_pvh_entry(v, info);
}
