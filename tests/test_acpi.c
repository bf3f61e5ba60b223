/* SPDX-License-Identifier: MIT */
/*
 * Unit: the firmware tables a kernel reads, checked against their
 * specifications' layouts: ACPI (RSDP, XSDT, FADT, MADT, DSDT: signatures,
 * lengths, checksums, pointers, the MADT's entries and the DSDT's AML,
 * decoded) and the Intel MP table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* COM1, pvpanic, then ndevs virtio-mmio devices, as a VM registers them. */
static void build(struct rvm_mem *m, unsigned ncpus, unsigned ndevs, uint64_t *rsdp)
{
    struct rvm_acpi_device d[18] = {
        {.name = "COM1", .hid = "PNP0501", .uid = 1, .io = true, .base = 0x3f8, .len = 8, .gsi = 4},
        {.name = "PEVT", .hid = "QEMU0001", .io = true, .base = 0x505, .len = 1, .gsi = -1},
    };

    for (unsigned i = 0; i < ndevs; i++) {
        d[2 + i] = (struct rvm_acpi_device){.hid = "LNRO0005",
                                            .uid = i,
                                            .base = 0xd0100000ULL + 0x1000ULL * i,
                                            .len = 0x200,
                                            .gsi = (int32_t)(5 + i)};
        snprintf(d[2 + i].name, sizeof(d[2 + i].name), "V%03u", i);
    }
    assert_int_equal(rvm_acpi_build(m, ncpus, d, 2 + ndevs, rsdp), 0);
    assert_int_equal(rvm_mem_read(m, RVM_ACPI_GPA, area, sizeof(area)), 0);
}

/* The next Device () in the DSDT at *p: its body, *p moved past it. Checks name, _HID, _UID. */
static const uint8_t *device(const uint8_t **p, const char *name, const char *hid, uint32_t uid,
                             const uint8_t **end)
{
    size_t nb;
    char h[16];
    uint8_t u[9] = {'_', 'U', 'I', 'D', 0x0c};

    assert_int_equal((*p)[0], 0x5b);
    assert_int_equal((*p)[1], 0x82);
    size_t dev = pkglen(*p + 2, &nb);
    const uint8_t *body = *p + 2 + nb;
    *end = *p + 2 + dev;
    assert_memory_equal(body, name, 4);
    int n = snprintf(h, sizeof(h), "_HID\x0d%s", hid);
    assert_non_null(memmem(body, (size_t)(*end - body), h, (size_t)n + 1));
    memcpy(u + 5, &uid, 4);
    assert_non_null(memmem(body, (size_t)(*end - body), u, sizeof(u)));
    *p = *end;
    return body;
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

    /*
     * DSDT: Scope (\_SB_) { COM1 (PNP0501: IO 0x3f8/8, IRQ 4), PEVT (QEMU0001: IO 0x505/1,
     * no interrupt), V00n (LNRO0005: Memory32Fixed, Interrupt) x 3 }.
     */
    const uint8_t *dsdt = table(get64(fadt + 140), "DSDT");
    uint32_t dlen = get32(dsdt + 4);
    const uint8_t *p = dsdt + 36, *body, *next;
    size_t nb;
    assert_int_equal(p[0], 0x10);
    size_t scope = pkglen(p + 1, &nb);
    assert_int_equal(1 + scope, dlen - 36); /* the scope runs to the table's end */
    p += 1 + nb;
    assert_memory_equal(p, "\\_SB_", 5);
    p += 5;
    static const uint8_t com_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};
    static const uint8_t com_irq[] = {0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00};
    body = device(&p, "COM1", "PNP0501", 1, &next);
    assert_non_null(memmem(body, (size_t)(next - body), com_io, sizeof(com_io)));
    assert_non_null(memmem(body, (size_t)(next - body), com_irq, sizeof(com_irq)));
    static const uint8_t pv_io[] = {0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00};
    body = device(&p, "PEVT", "QEMU0001", 0, &next);
    assert_non_null(memmem(body, (size_t)(next - body), pv_io, sizeof(pv_io))); /* then EndTag */
    assert_null(memmem(body, (size_t)(next - body), "\x89\x06", 2));
    for (unsigned i = 0; i < 3; i++) {
        char name[5];
        snprintf(name, sizeof(name), "V%03u", i);
        body = device(&p, name, "LNRO0005", i, &next);
        uint8_t mem[12] = {0x86, 0x09, 0x00, 0x01};
        uint32_t base = 0xd0100000u + 0x1000u * i, size = 0x200, gsi = 5 + i;
        memcpy(mem + 4, &base, 4);
        memcpy(mem + 8, &size, 4);
        assert_non_null(memmem(body, (size_t)(next - body), mem, sizeof(mem)));
        uint8_t irq[9] = {0x89, 0x06, 0x00, 0x03, 0x01};
        memcpy(irq + 5, &gsi, 4);
        assert_non_null(memmem(body, (size_t)(next - body), irq, sizeof(irq)));
    }
    assert_true(p == dsdt + dlen);

    /* Many CPUs and all sixteen devices still fit; no CPU is refused. */
    build(m, 200, 16, &rsdp);
    assert_int_equal(rvm_acpi_build(m, 0, NULL, 0, &rsdp), -EINVAL);
    /* Devices the tables cannot describe are refused, not written out wrong. */
    const struct rvm_acpi_device bad[] = {
        {.name = "1BAD", .hid = "PNP0501", .io = true, .base = 0x3f8, .len = 8, .gsi = -1},
        {.name = "low", .hid = "PNP0501", .io = true, .base = 0x3f8, .len = 8, .gsi = -1},
        {.name = "NOHI", .hid = "", .io = true, .base = 0x3f8, .len = 8, .gsi = -1},
        {.name = "BIGP", .hid = "X", .io = true, .base = 0x3f8, .len = 256, .gsi = -1},
        {.name = "PAST", .hid = "X", .io = true, .base = 0xfffc, .len = 8, .gsi = -1},
        {.name = "HIGH", .hid = "X", .base = 0xfffff000ULL, .len = 0x2000, .gsi = -1},
        {.name = "GSI_", .hid = "X", .base = 0xd0000000ULL, .len = 0x200, .gsi = 24},
        {.name = "ZERO", .hid = "X", .base = 0xd0000000ULL, .len = 0, .gsi = -1},
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rvm_acpi_build(m, 1, &bad[i], 1, &rsdp), -EINVAL);
    rvm_mem_destroy(m);
}

/* A VM's devices describe themselves, in the order they attached. */
static void test_vm_devices(void **state)
{
    struct rvm_uart_config uc = {.out_fd = -1};
    struct rvm_blk_config bc = {0};
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    char disk[] = "/tmp/ringvm-acpi-XXXXXX";
    uint64_t rsdp;
    (void)state;

    SKIP_WITHOUT_KVM();
    int fd = mkstemp(disk);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    bc.path = disk;
    assert_int_equal(kvm_fixture_open(&hv, &vm, MEM_SIZE), 0);
    assert_int_equal(rvm_uart_attach(vm, &uc, NULL), 0);
    assert_int_equal(rvm_pvpanic_attach(vm, 0), 0);
    assert_int_equal(rvm_vm_add_virtio_blk(vm, &bc, NULL, 0), 0);
    assert_int_equal(rvm_vm_write_acpi(vm, &rsdp), 0);
    assert_int_equal(rvm_mem_read(rvm_vm_mem(vm), RVM_ACPI_GPA, area, sizeof(area)), 0);
    const uint8_t *xsdt = table(get64(area + 24), "XSDT");
    const uint8_t *dsdt = table(get64(table(get64(xsdt + 36), "FACP") + 140), "DSDT");
    const uint8_t *p = dsdt + 36, *next;
    size_t nb;
    pkglen(p + 1, &nb);
    p += 1 + nb + 5;
    device(&p, "COM1", "PNP0501", 1, &next);
    device(&p, "PEVT", "QEMU0001", 0, &next);
    device(&p, "V000", "LNRO0005", 0, &next);
    assert_true(p == dsdt + get32(dsdt + 4));
    kvm_fixture_close(hv, vm);
    unlink(disk);
}

/* The MP table (MP spec 1.4): floating pointer, header, and each entry where it belongs. */
static void test_mptable(void **state)
{
    struct rvm_mem_config c = {.size = MEM_SIZE, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_mem *m;
    uint8_t t[RVM_MPTABLE_MAX];
    uint64_t gpa;
    (void)state;

    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0);
    assert_int_equal(rvm_mptable_build(m, 3, &gpa), 0);
    assert_int_equal(gpa, 0x9fc00);
    assert_int_equal(rvm_mem_read(m, gpa, t, sizeof(t)), 0);
    /* The floating pointer: "_MP_", the table's address, 16 bytes, revision 1.4, sum 0. */
    assert_memory_equal(t, "_MP_", 4);
    assert_int_equal(get32(t + 4), gpa + 16);
    assert_int_equal(t[8], 1);
    assert_int_equal(t[9], 4);
    assert_int_equal(t[11], 0); /* a table follows: no default configuration */
    assert_int_equal(sum(t, 16), 0);
    /* The header: "PCMP", its length summing to 0, the entry count, the local APIC. */
    const uint8_t *h = t + 16;
    uint16_t len = (uint16_t)(h[4] | h[5] << 8), count = (uint16_t)(h[34] | h[35] << 8);
    assert_memory_equal(h, "PCMP", 4);
    assert_int_equal(h[6], 4);
    assert_true(16u + len <= sizeof(t));
    assert_int_equal(sum(h, len), 0);
    assert_memory_equal(h + 8, "RINGVM  ", 8);
    assert_int_equal(get32(h + 36), 0xfee00000);
    assert_int_equal(count, 3 + 1 + 1 + 24 + 2);
    const uint8_t *e = h + 44;
    unsigned procs = 0, ioints = 0, lints = 0;
    for (unsigned i = 0; i < count; i++) {
        switch (e[0]) {
        case 0: /* processor: APIC IDs 0.., enabled, the first the bootstrap one */
            assert_int_equal(e[1], procs);
            assert_int_equal(e[3], procs == 0 ? 3 : 1);
            procs++;
            e += 20;
            break;
        case 1:
            assert_memory_equal(e + 2, "ISA   ", 6);
            e += 8;
            break;
        case 2: /* the IOAPIC, its ID after the CPUs', enabled, at 0xfec00000 */
            assert_int_equal(e[1], 3);
            assert_int_equal(e[3], 1);
            assert_int_equal(get32(e + 4), 0xfec00000);
            e += 8;
            break;
        case 3: /* ISA IRQ n on pin n, bus-default polarity and trigger */
            assert_int_equal(e[1], 0);
            assert_int_equal(e[2] | e[3] << 8, 0);
            assert_int_equal(e[5], ioints);
            assert_int_equal(e[6], 3);
            assert_int_equal(e[7], ioints);
            ioints++;
            e += 8;
            break;
        case 4: /* ExtINT on LINT0, NMI on LINT1, of every local APIC */
            assert_int_equal(e[1], lints == 0 ? 3 : 1);
            assert_int_equal(e[6], 0xff);
            assert_int_equal(e[7], lints);
            lints++;
            e += 8;
            break;
        default:
            fail_msg("entry %u of type %u", i, e[0]);
        }
    }
    assert_true(e == h + len);
    assert_int_equal(procs, 3);
    assert_int_equal(ioints, 24);
    assert_int_equal(lints, 2);
    assert_int_equal(rvm_mptable_build(m, 0, &gpa), -EINVAL);
    assert_int_equal(rvm_mptable_build(m, 255, &gpa), -EINVAL);
    assert_int_equal(rvm_mptable_build(m, 254, &gpa), 0); /* the most an MP table numbers */
    rvm_mem_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_vm_devices),
        cmocka_unit_test(test_mptable),
    };
    return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
