/* SPDX-License-Identifier: MIT */
/*
 * Unit: the ACPI tables a stock kernel reads (RSDP, XSDT, FADT, MADT, DSDT),
 * checked against the specification's layouts: signatures, lengths,
 * checksums, pointers, the MADT's entries and the DSDT's AML, decoded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"

#define MEM_SIZE (16ULL << 20)

static uint8_t area[RVM_ACPI_SIZE];

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

/* The table at gpa, checked: signature, a length inside the area, bytes summing to 0. */
static const uint8_t *table(uint64_t gpa, const char *sig)
{
    assert_true(gpa >= RVM_ACPI_GPA && gpa < RVM_ACPI_GPA + RVM_ACPI_SIZE);
    const uint8_t *t = area + (gpa - RVM_ACPI_GPA);
    assert_memory_equal(t, sig, 4);
    uint32_t len = get32(t + 4);
    assert_true(len >= 36 && gpa + len <= RVM_ACPI_GPA + RVM_ACPI_SIZE);
    assert_int_equal(sum(t, len), 0);
    assert_memory_equal(t + 10, "RINGVM", 6);
    return t;
}

/* An AML PkgLength at p: the package's length (counting the PkgLength), *n its bytes. */
static size_t pkglen(const uint8_t *p, size_t *n)
{
    unsigned follow = p[0] >> 6;

    *n = 1 + follow;
    if (!follow)
        return p[0] & 0x3f;
    size_t len = p[0] & 0x0f;
    for (unsigned i = 0; i < follow; i++)
        len |= (size_t)p[1 + i] << (4 + 8 * i);
    return len;
}

static void build(struct rvm_mem *m, unsigned ncpus, unsigned ndevs, uint64_t *rsdp)
{
    struct rvm_acpi_device d[16];

    for (unsigned i = 0; i < ndevs; i++)
        d[i] = (struct rvm_acpi_device){.base = 0xd0100000ULL + 0x1000ULL * i, .gsi = 5 + i};
    assert_int_equal(rvm_acpi_build(m, ncpus, d, ndevs, rsdp), 0);
    assert_int_equal(rvm_mem_read(m, RVM_ACPI_GPA, area, sizeof(area)), 0);
}

static void test_tables(void **state)
{
    struct rvm_mem_config c = {.size = MEM_SIZE, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_mem *m;
    uint64_t rsdp;
    (void)state;

    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0);
    build(m, 2, 3, &rsdp);
    assert_int_equal(rsdp, 0xe0000);

    /* RSDP: "RSD PTR ", revision 2, both checksums, the XSDT. */
    assert_memory_equal(area, "RSD PTR ", 8);
    assert_int_equal(sum(area, 20), 0);
    assert_int_equal(area[15], 2);
    assert_int_equal(get32(area + 20), 36);
    assert_int_equal(sum(area, 36), 0);
    const uint8_t *xsdt = table(get64(area + 24), "XSDT");
    assert_int_equal(get32(xsdt + 4), 36 + 2 * 8);

    /* FADT: revision 6, 276 bytes, hardware-reduced, its DSDT both ways. */
    const uint8_t *fadt = table(get64(xsdt + 36), "FACP");
    assert_int_equal(get32(fadt + 4), 276);
    assert_int_equal(fadt[8], 6);
    assert_true(get32(fadt + 112) & (1u << 20));
    assert_int_equal(get32(fadt + 40), get64(fadt + 140));
    assert_memory_equal(fadt + 268, "RINGVM", 6);

    /* MADT: the local APIC's address, PCAT_COMPAT, two CPUs enabled, the IOAPIC. */
    const uint8_t *madt = table(get64(xsdt + 44), "APIC");
    assert_int_equal(get32(madt + 36), 0xfee00000);
    assert_int_equal(get32(madt + 40), 1);
    const uint8_t *e = madt + 44, *end = madt + get32(madt + 4);
    unsigned cpus = 0, ioapics = 0;
    for (; e < end; e += e[1]) {
        assert_true(e[1] >= 2 && e + e[1] <= end);
        if (e[0] == 0) {
            assert_int_equal(e[1], 8);
            assert_int_equal(e[2], cpus); /* UID */
            assert_int_equal(e[3], cpus); /* APIC ID */
            assert_int_equal(get32(e + 4), 1);
            cpus++;
        } else if (e[0] == 1) {
            assert_int_equal(e[1], 12);
            assert_int_equal(get32(e + 4), 0xfec00000);
            assert_int_equal(get32(e + 8), 0);
            ioapics++;
        }
    }
    assert_true(e == end);
    assert_int_equal(cpus, 2);
    assert_int_equal(ioapics, 1);

    /* DSDT: Scope (\_SB_) { Device (V00n) { _HID "LNRO0005", _UID n, _CRS } x 3 }. */
    const uint8_t *dsdt = table(get64(fadt + 140), "DSDT");
    uint32_t dlen = get32(dsdt + 4);
    const uint8_t *p = dsdt + 36;
    size_t nb;
    assert_int_equal(p[0], 0x10);
    size_t scope = pkglen(p + 1, &nb);
    assert_int_equal(1 + scope, dlen - 36); /* the scope runs to the table's end */
    p += 1 + nb;
    assert_memory_equal(p, "\\_SB_", 5);
    p += 5;
    for (unsigned i = 0; i < 3; i++) {
        char name[5];
        assert_int_equal(p[0], 0x5b);
        assert_int_equal(p[1], 0x82);
        size_t dev = pkglen(p + 2, &nb);
        const uint8_t *body = p + 2 + nb, *next = p + 2 + dev;
        snprintf(name, sizeof(name), "V%03u", i);
        assert_memory_equal(body, name, 4);
        assert_non_null(memmem(body, (size_t)(next - body), "_HID\x0dLNRO0005", 14));
        uint8_t mem[12] = {0x86, 0x09, 0x00, 0x01};
        uint32_t base = 0xd0100000u + 0x1000u * i, size = 0x200, gsi = 5 + i;
        memcpy(mem + 4, &base, 4);
        memcpy(mem + 8, &size, 4);
        assert_non_null(memmem(body, (size_t)(next - body), mem, sizeof(mem)));
        uint8_t irq[9] = {0x89, 0x06, 0x00, 0x03, 0x01};
        memcpy(irq + 5, &gsi, 4);
        assert_non_null(memmem(body, (size_t)(next - body), irq, sizeof(irq)));
        p = next;
    }
    assert_true(p == dsdt + dlen);

    /* Many CPUs and all sixteen devices still fit; no CPU is refused. */
    build(m, 200, 16, &rsdp);
    assert_int_equal(rvm_acpi_build(m, 0, NULL, 0, &rsdp), -EINVAL);
    rvm_mem_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
    };
    return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
