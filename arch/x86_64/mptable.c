/* SPDX-License-Identifier: MIT */
/*
 * The Intel MultiProcessor Specification (1.4) table: how a kernel without
 * ACPI finds its CPUs, its IOAPIC and the routing of its interrupts, and
 * what a kernel with MP-table parsing looks for before it reads ACPI (it
 * scans the BIOS area for the floating pointer, slowly where guest ring 0
 * is emulated, and stops at the first one it finds). Layouts from the spec,
 * chapter 4; written byte by byte.
 */
#include <errno.h>
#include <string.h>
#include <cpuid.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>

#include "../../core/vm_internal.h"

#define APIC_GPA      0xfee00000u
#define IOAPIC_GPA    0xfec00000u
#define IOAPIC_PINS   24
#define LAPIC_VERSION 0x14
#define IOAPIC_VER    0x11

enum { MP_PROC = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum { INT_INT = 0, INT_NMI = 1, INT_EXTINT = 3 };

struct mp_buf {
    uint8_t *p;
    size_t len, cap;
    bool over;
};

static void mput(struct mp_buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void mput8(struct mp_buf *b, uint8_t v)
{
    mput(b, &v, 1);
}

static void mput16(struct mp_buf *b, uint16_t v)
{
    mput(b, &v, 2);
}

static void mput32(struct mp_buf *b, uint32_t v)
{
    mput(b, &v, 4);
}

static uint8_t mp_checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;

    while (n--)
        s = (uint8_t)(s + *p++);
    return (uint8_t)-s;
}

/* An interrupt assignment entry (I/O or local), 8 bytes. */
static void intsrc(struct mp_buf *b, uint8_t type, uint8_t kind, uint8_t bus_irq, uint8_t dst,
                   uint8_t dst_pin)
{
    mput8(b, type);
    mput8(b, kind);
    mput16(b, 0); /* polarity and trigger conform to the bus: ISA, edge, active high */
    mput8(b, 0);  /* source bus: ISA (bus 0), or for local entries, bus 0 too */
    mput8(b, bus_irq);
    mput8(b, dst);
    mput8(b, dst_pin);
}

/* The configuration table (header and entries) into b; returns the entry count. */
static uint16_t config_table(struct mp_buf *b, unsigned ncpus)
{
    uint32_t sig = 0x600, features = 0x201, eax, ebx, ecx, edx;
    uint8_t ioapic = (uint8_t)ncpus; /* its ID, after the CPUs', as in the MADT */
    uint16_t n = 0;

    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        sig = eax, features = edx;
    mput(b, "PCMP", 4);
    mput16(b, 0); /* base table length, filled in below */
    mput8(b, 4);  /* spec revision 1.4 */
    mput8(b, 0);  /* checksum */
    mput(b, "RINGVM  ", 8);
    mput(b, "RINGVM 1.0  ", 12);
    mput32(b, 0); /* no OEM table */
    mput16(b, 0);
    mput16(b, 0); /* entry count, filled in below */
    mput32(b, APIC_GPA);
    mput16(b, 0); /* no extended entries */
    mput8(b, 0);
    mput8(b, 0);
    for (unsigned i = 0; i < ncpus; i++, n++) {
        mput8(b, MP_PROC);
        mput8(b, (uint8_t)i); /* local APIC ID */
        mput8(b, LAPIC_VERSION);
        mput8(b, (uint8_t)(1 | (i == 0 ? 2 : 0))); /* enabled; the bootstrap processor */
        mput32(b, sig);
        mput32(b, features);
        mput32(b, 0);
        mput32(b, 0);
    }
    mput8(b, MP_BUS);
    mput8(b, 0);
    mput(b, "ISA   ", 6);
    n++;
    mput8(b, MP_IOAPIC);
    mput8(b, ioapic);
    mput8(b, IOAPIC_VER);
    mput8(b, 1); /* enabled */
    mput32(b, IOAPIC_GPA);
    n++;
    /* Every pin the ISA IRQ of its number, as KVM's default routing wires GSIs. */
    for (uint8_t pin = 0; pin < IOAPIC_PINS; pin++, n++)
        intsrc(b, MP_IOINT, INT_INT, pin, ioapic, pin);
    /* The 8259s' output on LINT0, NMI on LINT1, of every local APIC (0xff). */
    intsrc(b, MP_LINT, INT_EXTINT, 0, 0xff, 0);
    intsrc(b, MP_LINT, INT_NMI, 0, 0xff, 1);
    n += 2;
    return n;
}

int rvm_mptable_build(struct rvm_mem *mem, unsigned ncpus, uint64_t *gpa)
{
    uint8_t t[RVM_MPTABLE_MAX];
    struct mp_buf b = {.p = t + 16, .cap = sizeof(t) - 16};
    uint16_t entries, len;
    uint32_t table = (uint32_t)RVM_MPTABLE_GPA + 16;

    if (!mem || ncpus == 0 || ncpus > 254)
        return -EINVAL;
    memset(t, 0, sizeof(t));
    entries = config_table(&b, ncpus);
    if (b.over)
        return -E2BIG;
    len = (uint16_t)b.len;
    memcpy(b.p + 4, &len, 2);
    memcpy(b.p + 34, &entries, 2);
    b.p[7] = mp_checksum(b.p, len);

    /* The floating pointer, 16 bytes on a 16-byte boundary. */
    memcpy(t, "_MP_", 4);
    memcpy(t + 4, &table, 4);
    t[8] = 1;  /* length in 16-byte units */
    t[9] = 4;  /* spec revision 1.4 */
    t[11] = 0; /* feature 1: a configuration table follows, no default configuration */
    t[12] = 0; /* feature 2: no IMCR, virtual wire mode */
    t[10] = mp_checksum(t, 16);
    if (gpa)
        *gpa = RVM_MPTABLE_GPA;
    return rvm_mem_write(mem, RVM_MPTABLE_GPA, t, 16 + b.len);
}

int rvm_vm_write_mptable(struct rvm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    return rvm_mptable_build(vm->mem, vm->nvcpus, NULL);
}
