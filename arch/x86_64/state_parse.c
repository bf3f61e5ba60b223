/* SPDX-License-Identifier: MIT */
/* A snapshot's x86 vCPU and VM records, parsed before they are applied (state_parse.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/snaprec.h"
#include "state_parse.h"

/* A record of exactly size bytes, copied into out. */
static int exact(const uint8_t *st, size_t len, uint32_t type, uint32_t id, void *out,
                 uint32_t size)
{
    return rec_get(st, len, type, id, out, size) < 0 ? -EBADMSG : 0;
}

/*
 * A variable record: a header of hdr bytes whose u32 count (at offset 0..)
 * says how many entries of esize follow, at most max; copied whole into a
 * buffer of its own. -EBADMSG unless its length is exactly that.
 */
static int counted(const uint8_t *st, size_t len, uint32_t type, uint32_t id, uint32_t hdr,
                   uint32_t esize, uint32_t max, void **out)
{
    const void *p;
    uint32_t l, n;

    if (rec_find(st, len, type, id, &p, &l) < 0 || l < hdr)
        return -EBADMSG;
    memcpy(&n, p, sizeof(n)); /* nent, nmsrs: the first u32 of both headers */
    if (n > max || l != hdr + (uint64_t)n * esize)
        return -EBADMSG;
    if (!(*out = malloc(l)))
        return -ENOMEM;
    memcpy(*out, p, l);
    return 0;
}

/* The MP states an x86 vCPU can be in. */
static int mp_ok(const struct kvm_mp_state *m)
{
    switch (m->mp_state) {
    case KVM_MP_STATE_RUNNABLE:
    case KVM_MP_STATE_UNINITIALIZED:
    case KVM_MP_STATE_INIT_RECEIVED:
    case KVM_MP_STATE_HALTED:
    case KVM_MP_STATE_SIPI_RECEIVED:
        return 0;
    default:
        return -EBADMSG;
    }
}

static int parse_xsave(const uint8_t *st, size_t len, uint32_t id, uint32_t xsave_max,
                       struct vcpu_state *s)
{
    const void *p;
    uint32_t l;

    if (rec_find(st, len, REC_VCPU_XSAVE, id, &p, &l) < 0 || l < sizeof(struct kvm_xsave))
        return -EBADMSG;
    if (xsave_max < sizeof(struct kvm_xsave))
        xsave_max = sizeof(struct kvm_xsave);
    if (l > xsave_max)
        return -E2BIG;
    if (!(s->xsave = calloc(1, xsave_max)))
        return -ENOMEM;
    memcpy(s->xsave, p, l);
    s->xsave_len = l;
    return 0;
}

int vcpu_state_parse(const uint8_t *st, size_t len, uint32_t id, uint32_t xsave_max,
                     struct vcpu_state *s)
{
    const void *p;
    uint32_t l;
    int r;

    memset(s, 0, sizeof(*s));
    /* CPUID is optional (snapshots before it kept the vCPU's own). */
    if (rec_find(st, len, REC_VCPU_CPUID, id, &p, &l) == 0 &&
        (r = counted(st, len, REC_VCPU_CPUID, id, sizeof(struct kvm_cpuid2),
                     sizeof(struct kvm_cpuid_entry2), STATE_MAX_CPUID, (void **)&s->cpuid)) < 0)
        goto fail;
    if ((r = exact(st, len, REC_VCPU_MP_STATE, id, &s->mp, sizeof(s->mp))) < 0 ||
        (r = mp_ok(&s->mp)) < 0 ||
        (r = exact(st, len, REC_VCPU_REGS, id, &s->regs, sizeof(s->regs))) < 0 ||
        (r = exact(st, len, REC_VCPU_SREGS, id, &s->sregs, sizeof(s->sregs))) < 0 ||
        (r = parse_xsave(st, len, id, xsave_max, s)) < 0 ||
        (r = exact(st, len, REC_VCPU_XCRS, id, &s->xcrs, sizeof(s->xcrs))) < 0 ||
        (r = exact(st, len, REC_VCPU_DEBUGREGS, id, &s->debugregs, sizeof(s->debugregs))) < 0 ||
        (r = exact(st, len, REC_VCPU_LAPIC, id, &s->lapic, sizeof(s->lapic))) < 0 ||
        (r = counted(st, len, REC_VCPU_MSRS, id, sizeof(struct kvm_msrs),
                     sizeof(struct kvm_msr_entry), STATE_MAX_MSRS, (void **)&s->msrs)) < 0 ||
        (r = exact(st, len, REC_VCPU_EVENTS, id, &s->events, sizeof(s->events))) < 0)
        goto fail;
    if (s->xcrs.nr_xcrs > KVM_MAX_XCRS) {
        r = -EBADMSG;
        goto fail;
    }
    return 0;

fail:
    vcpu_state_free(s);
    return r;
}

void vcpu_state_free(struct vcpu_state *s)
{
    free(s->cpuid);
    free(s->xsave);
    free(s->msrs);
    s->cpuid = NULL;
    s->xsave = NULL;
    s->msrs = NULL;
}

int vm_state_parse(const uint8_t *st, size_t len, struct vm_state *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t chip = 0; chip < 3; chip++)
        if (exact(st, len, REC_VM_IRQCHIP, chip, &s->chip[chip], sizeof(s->chip[chip])) < 0 ||
            s->chip[chip].chip_id != chip)
            return -EBADMSG;
    if (exact(st, len, REC_VM_PIT2, 0, &s->pit, sizeof(s->pit)) < 0 ||
        exact(st, len, REC_VM_CLOCK, 0, &s->clock, sizeof(s->clock)) < 0 ||
        exact(st, len, REC_VM_TSC_KHZ, 0, &s->tsc_khz, sizeof(s->tsc_khz)) < 0)
        return -EBADMSG;
    return 0;
}
