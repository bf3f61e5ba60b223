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
#include "tablebuf.h"

#define APIC_GPA      0xfee00000u
#define IOAPIC_GPA    0xfec00000u
#define IOAPIC_PINS   24
#define LAPIC_VERSION 0x14
#define IOAPIC_VER    0x11

enum { MP_PROC = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum { INT_INT = 0, INT_NMI = 1, INT_EXTINT = 3 };

/* An interrupt assignment entry (I/O or local), 8 bytes. */
static void intsrc(struct tbuf *b, uint8_t type, uint8_t kind, uint8_t bus_irq, uint8_t dst,
                   uint8_t dst_pin)
{
    tput8(b, type);
    tput8(b, kind);
    tput16(b, 0); /* polarity and trigger conform to the bus: ISA, edge, active high */
    tput8(b, 0);  /* source bus: ISA (bus 0), or for local entries, bus 0 too */
    tput8(b, bus_irq);
    tput8(b, dst);
    tput8(b, dst_pin);
}

/* The configuration table (header and entries) into b; returns the entry count. */
static uint16_t config_table(struct tbuf *b, unsigned ncpus)
{
    uint32_t sig = 0x600, features = 0x201, eax, ebx, ecx, edx;
    uint8_t ioapic = (uint8_t)ncpus; /* its ID, after the CPUs', as in the MADT */
    uint16_t n = 0;

    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        sig = eax, features = edx;
    tput(b, "PCMP", 4);
    tput16(b, 0); /* base table length, filled in below */
    tput8(b, 4);  /* spec revision 1.4 */
    tput8(b, 0);  /* checksum */
    tput(b, "RINGVM  ", 8);
    tput(b, "RINGVM 1.0  ", 12);
    tput32(b, 0); /* no OEM table */
    tput16(b, 0);
    tput16(b, 0); /* entry count, filled in below */
    tput32(b, APIC_GPA);
    tput16(b, 0); /* no extended entries */
    tput8(b, 0);
    tput8(b, 0);
    for (unsigned i = 0; i < ncpus; i++, n++) {
        tput8(b, MP_PROC);
        tput8(b, (uint8_t)i); /* local APIC ID */
        tput8(b, LAPIC_VERSION);
        tput8(b, (uint8_t)(1 | (i == 0 ? 2 : 0))); /* enabled; the bootstrap processor */
        tput32(b, sig);
        tput32(b, features);
        tput32(b, 0);
        tput32(b, 0);
    }
    tput8(b, MP_BUS);
    tput8(b, 0);
    tput(b, "ISA   ", 6);
    n++;
    tput8(b, MP_IOAPIC);
    tput8(b, ioapic);
    tput8(b, IOAPIC_VER);
    tput8(b, 1); /* enabled */
    tput32(b, IOAPIC_GPA);
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
    struct tbuf b = {.p = t + 16, .cap = sizeof(t) - 16};
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
    b.p[7] = tchecksum(b.p, len);

    /* The floating pointer, 16 bytes on a 16-byte boundary. */
    memcpy(t, "_MP_", 4);
    memcpy(t + 4, &table, 4);
    t[8] = 1;  /* length in 16-byte units */
    t[9] = 4;  /* spec revision 1.4 */
    t[11] = 0; /* feature 1: a configuration table follows, no default configuration */
    t[12] = 0; /* feature 2: no IMCR, virtual wire mode */
    t[10] = tchecksum(t, 16);
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
