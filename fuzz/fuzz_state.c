/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the x86 vCPU and VM state records a restore hands
 * KVM (arch/x86_64/state_parse.c, the real code): the input is a state file's
 * records; the first byte picks the vCPU and this host's XSAVE size. What is
 * accepted must be what KVM's ioctls can take as they are handed over: every
 * count within its bound and matching its record, buffers the size the
 * ioctls read, an x86 MP state. A violation aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../arch/x86_64/state_parse.h"
#include "check.h"

/* Reads every byte of a buffer the ioctl will read, so ASan sees any overrun. */
static uint8_t touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    uint8_t x = 0;

    for (size_t i = 0; i < n; i++)
        x ^= b[i];
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vcpu_state s;
    struct vm_state vm;
    volatile uint8_t sink = 0;

    if (size < 1)
        return 0;
    uint32_t id = data[0] & 3, xsave_max = (data[0] & 4) ? 4096 : 8192;
    data++, size--;
    int r = vcpu_state_parse(data, size, id, xsave_max, &s);
    CHECK(r == 0 || r == -EBADMSG || r == -E2BIG);
    if (r == 0) {
        CHECK(s.mp.mp_state <= KVM_MP_STATE_SIPI_RECEIVED);
        CHECK(s.xsave && s.xsave_len >= sizeof(struct kvm_xsave) && s.xsave_len <= xsave_max);
        sink ^= touch(s.xsave, xsave_max); /* KVM_SET_XSAVE reads the host's whole size */
        CHECK(s.msrs && s.msrs->nmsrs <= STATE_MAX_MSRS);
        sink ^= touch(s.msrs->entries, s.msrs->nmsrs * sizeof(s.msrs->entries[0]));
        if (s.cpuid) {
            CHECK(s.cpuid->nent <= STATE_MAX_CPUID);
            sink ^= touch(s.cpuid->entries, s.cpuid->nent * sizeof(s.cpuid->entries[0]));
        }
        CHECK(s.xcrs.nr_xcrs <= KVM_MAX_XCRS);
        vcpu_state_free(&s);
    } else {
        CHECK(!s.cpuid && !s.xsave && !s.msrs); /* nothing left to free */
    }
    if (vm_state_parse(data, size, &vm) == 0)
        for (uint32_t c = 0; c < 3; c++)
            CHECK(vm.chip[c].chip_id == c);
    (void)sink;
    return 0;
}
