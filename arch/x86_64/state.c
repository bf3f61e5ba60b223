/* SPDX-License-Identifier: MIT */
/*
 * Everything KVM holds for an x86 VM, as snapshot records: per vCPU the
 * registers, segment and control state, XSAVE (or legacy FPU), XCRs, the
 * MSRs of KVM's index list, LAPIC, pending events, debug registers and MP
 * state; per VM the PICs, IOAPIC, PIT and kvmclock. Loading parses and
 * checks every record first (state_parse.c), then applies them in the order
 * KVM needs (state that others depend on first, events last).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "../../core/log.h"
#include "../../core/snaprec.h"
#include "../../core/vm_internal.h"
#include "arch.h"
#include "state_parse.h"

#define MAX_MSRS STATE_MAX_MSRS

/* KVM's list of MSRs to save, read once per call (small). */
static int msr_index_list(struct rvm_hv *hv, struct kvm_msr_list **out)
{
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + MAX_MSRS * sizeof(uint32_t));

    if (!l)
        return -ENOMEM;
    l->nmsrs = MAX_MSRS;
    if (ioctl(hv->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        int e = -errno;
        free(l);
        return e;
    }
    *out = l;
    return 0;
}

static int xsave_size(struct rvm_vm *vm)
{
    int n = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

    return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

/* The MSRs KVM lets us read: those of the index list that read back. */
static int save_msrs(struct rvm_vcpu *v, struct recbuf *b)
{
    struct kvm_msr_list *l = NULL;
    struct kvm_msrs *m;
    int r;

    if ((r = msr_index_list(v->vm->hv, &l)) < 0)
        return r;
    m = calloc(1, sizeof(*m) + l->nmsrs * sizeof(struct kvm_msr_entry));
    if (!m) {
        free(l);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < l->nmsrs; i++)
        m->entries[i].index = l->indices[i];
    m->nmsrs = l->nmsrs;
    /* KVM_GET_MSRS stops at the first MSR it cannot read: drop that one, go on. */
    r = ioctl(v->fd, KVM_GET_MSRS, m);
    while (r >= 0 && (uint32_t)r < m->nmsrs) {
        /* entry r failed: remove it and read the rest again */
        memmove(&m->entries[r], &m->entries[r + 1],
                (m->nmsrs - (uint32_t)r - 1) * sizeof(struct kvm_msr_entry));
        m->nmsrs--;
        r = ioctl(v->fd, KVM_GET_MSRS, m);
    }
    if (r < 0) {
        r = -errno;
    } else {
        rec_put(b, REC_VCPU_MSRS, v->id, m,
                (uint32_t)(sizeof(*m) + m->nmsrs * sizeof(struct kvm_msr_entry)));
        r = 0;
    }
    free(m);
    free(l);
    return r;
}

#define GET(ioc, type, rec)                                                                        \
    do {                                                                                           \
        type s_;                                                                                   \
        memset(&s_, 0, sizeof(s_));                                                                \
        if (ioctl(v->fd, ioc, &s_) < 0)                                                            \
            return -errno;                                                                         \
        rec_put(b, rec, v->id, &s_, sizeof(s_));                                                   \
    } while (0)

#define MAX_CPUID STATE_MAX_CPUID

/* The vCPU's CPUID as KVM holds it: what the guest saw, the embedder's edits included. */
static int save_cpuid(struct rvm_vcpu *v, struct recbuf *b)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + MAX_CPUID * sizeof(c->entries[0]));
    int r = 0;

    if (!c)
        return -ENOMEM;
    c->nent = MAX_CPUID;
    if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0)
        r = -errno;
    else
        rec_put(b, REC_VCPU_CPUID, v->id, c,
                (uint32_t)(sizeof(*c) + c->nent * sizeof(c->entries[0])));
    free(c);
    return r;
}

/*
 * The feature registers a guest may rely on, and the bits in them that KVM
 * changes as the guest runs (OSXSAVE, APIC enabled, OSPKE): those are state,
 * not features, and are not compared.
 */
static const struct {
    uint32_t leaf, sub;
    uint8_t reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    uint32_t dynamic;
} feature_regs[] = {
    {1, 0, 2, 1u << 27},   {1, 0, 3, 1u << 9},    {7, 0, 1, 0},          {7, 0, 2, 1u << 4},
    {7, 0, 3, 0},          {7, 1, 0, 0},          {0xd, 1, 0, 0},        {0x80000001, 0, 2, 0},
    {0x80000001, 0, 3, 0}, {0x80000007, 0, 3, 0}, {0x80000008, 0, 1, 0},
};

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t leaf,
                                                 uint32_t sub)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == leaf &&
            (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
             c->entries[i].index == sub))
            return &c->entries[i];
    return NULL;
}

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, uint8_t reg)
{
    return !e ? 0 : reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

/*
 * A guest saved on a host with features this one lacks would find them gone
 * under its feet (an illegal instruction, a #GP on an MSR): refused, naming
 * the leaf, the register and the bits. "This host" is what KVM gives the
 * new vCPU here (its CPUID as created, read back: KVM may report more than
 * KVM_GET_SUPPORTED_CPUID listed).
 */
static int cpuid_fits_host(struct rvm_vcpu *v, const struct kvm_cpuid2 *saved)
{
    static const char regs[4][4] = {"eax", "ebx", "ecx", "edx"};
    struct kvm_cpuid2 *host = calloc(1, sizeof(*host) + MAX_CPUID * sizeof(host->entries[0]));
    int r = 0;

    if (!host)
        return -ENOMEM;
    host->nent = MAX_CPUID;
    if (ioctl(v->fd, KVM_GET_CPUID2, host) < 0) {
        free(host);
        return -errno;
    }

    for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
        uint32_t leaf = feature_regs[i].leaf, sub = feature_regs[i].sub;
        const struct kvm_cpuid_entry2 *s = cpuid_find(saved, leaf, sub);
        uint32_t want = cpuid_reg(s, feature_regs[i].reg) & ~feature_regs[i].dynamic;
        uint32_t have = cpuid_reg(cpuid_find(host, leaf, sub), feature_regs[i].reg);

        if (want & ~have) {
            rvm_err(v->vm->hv,
                    "vCPU %u: the snapshot's CPUID %#x.%u %s has bits %#x this host lacks", v->id,
                    leaf, sub, regs[feature_regs[i].reg], want & ~have);
            r = -EOPNOTSUPP;
            break;
        }
    }
    free(host);
    return r;
}

/* Puts a saved CPUID back (before the vCPU first runs), if it fits this host. */
static int load_cpuid(struct rvm_vcpu *v, struct kvm_cpuid2 *c)
{
    int r;

    if ((r = cpuid_fits_host(v, c)) < 0)
        return r;
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
        r = -errno;
        rvm_err(v->vm->hv, "vCPU %u: restoring its CPUID: %s", v->id, strerror(-r));
    }
    return r;
}

int arch_vcpu_save(struct rvm_vcpu *v, struct recbuf *b)
{
    int xs = xsave_size(v->vm), r;
    struct kvm_xsave *x;

    GET(KVM_GET_MP_STATE, struct kvm_mp_state, REC_VCPU_MP_STATE);
    GET(KVM_GET_REGS, struct kvm_regs, REC_VCPU_REGS);
    GET(KVM_GET_SREGS, struct kvm_sregs, REC_VCPU_SREGS);
    GET(KVM_GET_XCRS, struct kvm_xcrs, REC_VCPU_XCRS);
    GET(KVM_GET_DEBUGREGS, struct kvm_debugregs, REC_VCPU_DEBUGREGS);
    GET(KVM_GET_LAPIC, struct kvm_lapic_state, REC_VCPU_LAPIC);
    GET(KVM_GET_VCPU_EVENTS, struct kvm_vcpu_events, REC_VCPU_EVENTS);
    if (!(x = calloc(1, (size_t)xs)))
        return -ENOMEM;
    if (ioctl(v->fd, xs > (int)sizeof(*x) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x) < 0) {
        free(x);
        return -errno;
    }
    rec_put(b, REC_VCPU_XSAVE, v->id, x, (uint32_t)xs);
    free(x);
    if ((r = save_msrs(v, b)) < 0 || (r = save_cpuid(v, b)) < 0)
        return r;
    return b->err;
}

/* One ioctl of the load; its failure logged. */
static int set(struct rvm_vcpu *v, unsigned long ioc, const char *name, void *arg)
{
    if (ioctl(v->fd, ioc, arg) < 0) {
        int e = -errno;
        rvm_err(v->vm->hv, "vCPU %u: restoring %s: %s", v->id, name, strerror(-e));
        return e;
    }
    return 0;
}

#define SET(ioc, arg) set(v, ioc, #ioc, arg)

/* The parsed state into KVM, in the order it needs (CPUID first: the MSRs and XSAVE depend on it).
 */
static int vcpu_apply(struct rvm_vcpu *v, struct vcpu_state *s)
{
    int r;

    if ((s->cpuid && (r = load_cpuid(v, s->cpuid)) < 0) ||
        (r = SET(KVM_SET_MP_STATE, &s->mp)) < 0 || (r = SET(KVM_SET_REGS, &s->regs)) < 0 ||
        (r = SET(KVM_SET_SREGS, &s->sregs)) < 0 || (r = SET(KVM_SET_XSAVE, s->xsave)) < 0 ||
        (r = SET(KVM_SET_XCRS, &s->xcrs)) < 0 || (r = SET(KVM_SET_DEBUGREGS, &s->debugregs)) < 0 ||
        (r = SET(KVM_SET_LAPIC, &s->lapic)) < 0)
        return r;
    r = ioctl(v->fd, KVM_SET_MSRS, s->msrs);
    if (r < 0 || (uint32_t)r != s->msrs->nmsrs) {
        rvm_err(v->vm->hv, "vCPU %u: %d of %u MSRs restored", v->id, r, s->msrs->nmsrs);
        return r < 0 ? -errno : -EINVAL;
    }
    return SET(KVM_SET_VCPU_EVENTS, &s->events);
}

int arch_vcpu_load(struct rvm_vcpu *v, const uint8_t *st, size_t len)
{
    struct vcpu_state s;
    int r = vcpu_state_parse(st, len, v->id, (uint32_t)xsave_size(v->vm), &s);

    if (r == -E2BIG) {
        rvm_err(v->vm->hv, "vCPU %u: the snapshot's XSAVE state is larger than this host's", v->id);
        return -EINVAL;
    }
    if (r < 0)
        return r;
    r = vcpu_apply(v, &s);
    vcpu_state_free(&s);
    return r;
}

int arch_vm_save(struct rvm_vm *vm, struct recbuf *b)
{
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    uint32_t khz;

    for (uint32_t chip = 0; chip < 3; chip++) {
        struct kvm_irqchip c = {.chip_id = chip};
        if (ioctl(vm->fd, KVM_GET_IRQCHIP, &c) < 0)
            return -errno;
        rec_put(b, REC_VM_IRQCHIP, chip, &c, sizeof(c));
    }
    memset(&pit, 0, sizeof(pit));
    if (ioctl(vm->fd, KVM_GET_PIT2, &pit) < 0)
        return -errno;
    rec_put(b, REC_VM_PIT2, 0, &pit, sizeof(pit));
    memset(&clock, 0, sizeof(clock));
    if (ioctl(vm->fd, KVM_GET_CLOCK, &clock) < 0)
        return -errno;
    clock.flags = 0; /* KVM_SET_CLOCK takes the value alone; the others are read-only */
    rec_put(b, REC_VM_CLOCK, 0, &clock, sizeof(clock));
    khz = vm->vcpus[0] ? (uint32_t)ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0) : 0;
    rec_put(b, REC_VM_TSC_KHZ, 0, &khz, sizeof(khz));
    return b->err;
}

/*
 * The guest's TSC rate as saved: where this host's differs (beyond 0.1%),
 * each vCPU is set to the saved rate (KVM_SET_TSC_KHZ, TSC scaling) before
 * its state is loaded; a host that cannot refuses the restore (-EOPNOTSUPP:
 * the guest's clocksource would run at the wrong speed) unless allowed,
 * then it only warns.
 */
static int load_tsc_khz(struct rvm_vm *vm, uint32_t saved, bool allow_drift)
{
    uint32_t khz = vm->vcpus[0] ? (uint32_t)ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0) : 0;
    int e = 0;

    if (!saved || !khz || (khz <= saved + saved / 1000 && khz >= saved - saved / 1000))
        return 0;
    for (uint32_t i = 0; i < vm->nvcpus && e == 0; i++)
        if (vm->vcpus[i] && ioctl(vm->vcpus[i]->fd, KVM_SET_TSC_KHZ, (unsigned long)saved) < 0)
            e = -errno;
    if (e == 0) {
        rvm_info(vm->hv, "TSC at %u kHz here: the guest's set to its saved %u kHz", khz, saved);
        return 0;
    }
    if (allow_drift) {
        rvm_warn(vm->hv,
                 "TSC at %u kHz here, %u kHz when saved, and KVM cannot scale it (%s): "
                 "the guest's clock will run at the wrong rate",
                 khz, saved, strerror(-e));
        return 0;
    }
    rvm_err(vm->hv, "TSC at %u kHz here, %u kHz when saved, and KVM cannot scale it (%s)", khz,
            saved, strerror(-e));
    return -EOPNOTSUPP;
}

int arch_vm_load(struct rvm_vm *vm, const uint8_t *st, size_t len, bool allow_tsc_drift)
{
    struct vm_state s;

    if (vm_state_parse(st, len, &s) < 0)
        return -EBADMSG;
    for (uint32_t chip = 0; chip < 3; chip++)
        if (ioctl(vm->fd, KVM_SET_IRQCHIP, &s.chip[chip]) < 0)
            return -errno;
    if (ioctl(vm->fd, KVM_SET_PIT2, &s.pit) < 0 || ioctl(vm->fd, KVM_SET_CLOCK, &s.clock) < 0)
        return -errno;
    return load_tsc_khz(vm, s.tsc_khz, allow_tsc_drift);
}
