/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables for guests that find their platform through ACPI (a stock
 * distribution kernel): RSDP, XSDT, a hardware-reduced FADT, a MADT with
 * one local APIC per vCPU and the IOAPIC, and a DSDT describing the devices
 * that registered themselves (core/fwdev.h): each with its _HID, register
 * window and interrupt. Layouts from the ACPI specification (6.x); the AML
 * is written byte by byte.
 */
#include <errno.h>
#include <string.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>

#include "../../core/fwdev.h"
#include "../../core/log.h"
#include "../../core/vm_internal.h"
#include "../../mem/mem_internal.h"
#include "tablebuf.h"

#define HDR_LEN    36
#define FADT_LEN   276
#define RSDP_LEN   36
#define MAX_TABLES 4096 /* bytes of DSDT we build at most */
#define APIC_GPA   0xfee00000u
#define IOAPIC_GPA 0xfec00000u

/* A table header; length and checksum are filled by finish(). */
static void header(struct tbuf *b, const char sig[4], uint8_t rev)
{
    tput(b, sig, 4);
    tput32(b, 0); /* length */
    tput8(b, rev);
    tput8(b, 0); /* checksum */
    tput(b, "RINGVM", 6);
    tput(b, "RINGVM  ", 8);
    tput32(b, 1);       /* OEM revision */
    tput(b, "RVM ", 4); /* creator */
    tput32(b, 1);
}

static void finish(struct tbuf *b)
{
    uint32_t len = (uint32_t)b->len;

    if (b->over)
        return;
    memcpy(b->p + 4, &len, 4);
    b->p[9] = tchecksum(b->p, len);
}

/* ---- AML ---- */

/* A PkgLength for a package whose contents (after the PkgLength) are n bytes. */
static void pkglen(struct tbuf *b, size_t n)
{
    if (n + 1 < 64) {
        tput8(b, (uint8_t)(n + 1));
    } else if (n + 2 < 4096) {
        size_t t = n + 2;
        tput8(b, (uint8_t)(0x40 | (t & 0xf)));
        tput8(b, (uint8_t)(t >> 4));
    } else {
        size_t t = n + 3;
        tput8(b, (uint8_t)(0x80 | (t & 0xf)));
        tput8(b, (uint8_t)(t >> 4));
        tput8(b, (uint8_t)(t >> 12));
    }
}

/*
 * Device (name) { _HID hid, _UID uid, _CRS { IO or Memory32Fixed, Interrupt } }:
 * a port window as IO (16-bit decode), an MMIO one as Memory32Fixed
 * (read-write), the interrupt as an extended descriptor (consumer, edge,
 * active high, exclusive).
 */
static void aml_device(struct tbuf *out, const struct rvm_acpi_device *dev)
{
    uint8_t tmp[128];
    struct tbuf d = {.p = tmp, .cap = sizeof(tmp)};
    size_t hid_len = strlen(dev->hid) + 1;
    size_t crs = (dev->io ? 8 : 12) + (dev->gsi >= 0 ? 9 : 0) + 2;

    tput(&d, dev->name, 4);
    tput8(&d, 0x08); /* NameOp _HID "..." */
    tput(&d, "_HID", 4);
    tput8(&d, 0x0d);
    tput(&d, dev->hid, hid_len);
    tput8(&d, 0x08); /* NameOp _UID n */
    tput(&d, "_UID", 4);
    tput8(&d, 0x0c); /* DWordPrefix */
    tput32(&d, dev->uid);
    tput8(&d, 0x08); /* NameOp _CRS Buffer */
    tput(&d, "_CRS", 4);
    tput8(&d, 0x11);
    pkglen(&d, 2 + crs);
    tput8(&d, 0x0a); /* BufferSize */
    tput8(&d, (uint8_t)crs);
    if (dev->io) { /* IO (Decode16, base, base, 1, len) */
        tput8(&d, 0x47);
        tput8(&d, 1);
        tput16(&d, (uint16_t)dev->base);
        tput16(&d, (uint16_t)dev->base);
        tput8(&d, 1);
        tput8(&d, (uint8_t)dev->len);
    } else { /* Memory32Fixed (ReadWrite, base, len) */
        tput8(&d, 0x86);
        tput16(&d, 9);
        tput8(&d, 1);
        tput32(&d, (uint32_t)dev->base);
        tput32(&d, dev->len);
    }
    if (dev->gsi >= 0) { /* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } */
        tput8(&d, 0x89);
        tput16(&d, 6);
        tput8(&d, 0x03); /* consumer, edge */
        tput8(&d, 1);
        tput32(&d, (uint32_t)dev->gsi);
    }
    tput8(&d, 0x79); /* EndTag */
    tput8(&d, 0);

    tput8(out, 0x5b); /* DeviceOp */
    tput8(out, 0x82);
    pkglen(out, d.len);
    tput(out, tmp, d.len);
    if (d.over)
        out->over = true;
}

static void dsdt(struct tbuf *b, const struct rvm_acpi_device *devs, unsigned n)
{
    uint8_t tmp[MAX_TABLES];
    struct tbuf s = {.p = tmp, .cap = sizeof(tmp)};

    header(b, "DSDT", 2);
    tput8(&s, 0x5c); /* \_SB_ */
    tput(&s, "_SB_", 4);
    for (unsigned i = 0; i < n; i++)
        aml_device(&s, &devs[i]);
    tput8(b, 0x10); /* ScopeOp */
    pkglen(b, s.len);
    tput(b, tmp, s.len);
    if (s.over)
        b->over = true;
    finish(b);
}

static void madt(struct tbuf *b, unsigned ncpus)
{
    header(b, "APIC", 5);
    tput32(b, APIC_GPA);
    tput32(b, 1); /* PCAT_COMPAT: there are 8259s */
    for (unsigned i = 0; i < ncpus; i++) {
        tput8(b, 0); /* Processor Local APIC */
        tput8(b, 8);
        tput8(b, (uint8_t)i); /* ACPI processor UID */
        tput8(b, (uint8_t)i); /* APIC ID */
        tput32(b, 1);         /* enabled */
    }
    tput8(b, 1); /* I/O APIC */
    tput8(b, 12);
    tput8(b, (uint8_t)ncpus); /* its ID, after the CPUs' */
    tput8(b, 0);
    tput32(b, IOAPIC_GPA);
    tput32(b, 0); /* GSI base */
    finish(b);
}

static void fadt(struct tbuf *b, uint64_t dsdt_gpa)
{
    size_t start = b->len;

    header(b, "FACP", 6);
    while (b->len - start < FADT_LEN && !b->over)
        tput8(b, 0);
    if (b->over)
        return;
    uint8_t *f = b->p + start;
    uint32_t dsdt32 = (uint32_t)dsdt_gpa, flags = 1u << 20; /* HW_REDUCED_ACPI */
    uint16_t boot_arch = (1u << 2) | (1u << 5);             /* no VGA, no CMOS RTC */
    memcpy(f + 40, &dsdt32, 4);
    memcpy(f + 109, &boot_arch, 2);
    memcpy(f + 112, &flags, 4);
    f[131] = 0; /* FADT minor version */
    memcpy(f + 140, &dsdt_gpa, 8);
    memcpy(f + 268, "RINGVM\0\0", 8); /* hypervisor vendor */
    finish(b);
}

int rvm_acpi_build(struct rvm_mem *mem, unsigned ncpus, const struct rvm_acpi_device *devs,
                   unsigned ndevs, uint64_t *rsdp_gpa)
{
    uint8_t a[RVM_ACPI_SIZE];
    uint64_t off = 0, dsdt_off, fadt_off, madt_off, xsdt_off;
    struct tbuf t;

    if (!mem || !rsdp_gpa || ncpus == 0 || ncpus > 255 || (ndevs && !devs) || ndevs > 255)
        return -EINVAL;
    for (unsigned i = 0; i < ndevs; i++)
        if (!fw_dev_valid(&devs[i]))
            return -EINVAL;
    memset(a, 0, sizeof(a));
    /* RSDP first, at the area's start (a 16-byte boundary the legacy scan looks at). */
    off = 48;
#define TABLE(var, call)                                                                           \
    do {                                                                                           \
        var = off;                                                                                 \
        t = (struct tbuf){.p = a + off, .cap = RVM_ACPI_SIZE - off};                               \
        call;                                                                                      \
        if (t.over)                                                                                \
            return -E2BIG;                                                                         \
        off = (off + t.len + 15) & ~15ULL;                                                         \
    } while (0)
    TABLE(dsdt_off, dsdt(&t, devs, ndevs));
    TABLE(fadt_off, fadt(&t, RVM_ACPI_GPA + dsdt_off));
    TABLE(madt_off, madt(&t, ncpus));
    TABLE(xsdt_off, (header(&t, "XSDT", 1), tput64(&t, RVM_ACPI_GPA + fadt_off),
                     tput64(&t, RVM_ACPI_GPA + madt_off), finish(&t)));
#undef TABLE
    t = (struct tbuf){.p = a, .cap = RSDP_LEN};
    tput(&t, "RSD PTR ", 8);
    tput8(&t, 0); /* checksum of the first 20 bytes */
    tput(&t, "RINGVM", 6);
    tput8(&t, 2); /* revision: XSDT */
    tput32(&t, 0);
    tput32(&t, RSDP_LEN);
    tput64(&t, RVM_ACPI_GPA + xsdt_off);
    tput8(&t, 0); /* extended checksum */
    tput8(&t, 0), tput8(&t, 0), tput8(&t, 0);
    a[8] = tchecksum(a, 20);
    a[32] = tchecksum(a, RSDP_LEN);
    *rsdp_gpa = RVM_ACPI_GPA;
    return rvm_mem_write(mem, RVM_ACPI_GPA, a, off);
}

int rvm_vm_write_acpi(struct rvm_vm *vm, uint64_t *rsdp_gpa)
{
    struct rvm_acpi_device devs[FW_MAX_DEVS];
    unsigned n;

    if (!vm || !rsdp_gpa)
        return -EINVAL;
    n = vm_fw_devs(vm, devs, FW_MAX_DEVS);
    return rvm_acpi_build(vm->mem, vm->nvcpus, devs, n < FW_MAX_DEVS ? n : FW_MAX_DEVS, rsdp_gpa);
}
