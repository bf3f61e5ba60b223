/* SPDX-License-Identifier: MIT */
/*
 * The bzImage loader against the boot protocol's documented offsets
 * (Documentation/arch/x86/boot.rst): a synthetic image, what it leaves in
 * guest memory, what it refuses, and a VM entering the image's 64-bit entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "../core/vm_internal.h"

#define MEM_SIZE  (64ULL << 20)
#define SETUP     4 /* setup sectors */
#define KOFF      ((SETUP + 1) * 512)
#define KSIZE     0x3000
#define PREF      0x1000000ULL
#define INIT_SIZE 0x800000u

static uint8_t img[KOFF + KSIZE];

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

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

/* A bzImage as Linux 6.x builds them, at the offsets boot.rst gives. */
static void build(void)
{
    memset(img, 0, sizeof(img));
    img[0x1f1] = SETUP;             /* setup_sects */
    put16(img + 0x1fe, 0xaa55);     /* boot_flag */
    img[0x200] = 0xeb;              /* jump over the header */
    img[0x201] = 0x6a;              /* ... to 0x26c: the header's end */
    memcpy(img + 0x202, "HdrS", 4); /* header */
    put16(img + 0x206, 0x020f);     /* version 2.15 */
    img[0x211] = 0x01;              /* loadflags: LOADED_HIGH */
    put32(img + 0x214, 0x100000);   /* code32_start */
    put32(img + 0x22c, 0x7fffffff); /* initrd_addr_max */
    put32(img + 0x230, 0x200000);   /* kernel_alignment */
    img[0x234] = 1;                 /* relocatable_kernel */
    put16(img + 0x236, 0x3);        /* xloadflags: KERNEL_64, CAN_BE_LOADED_ABOVE_4G */
    put32(img + 0x238, 2047);       /* cmdline_size */
    put64(img + 0x258, PREF);       /* pref_address */
    put32(img + 0x260, INIT_SIZE);  /* init_size */
    for (int i = 0; i < KSIZE; i++)
        img[KOFF + i] = (uint8_t)(i * 31 + 7);
    /* The 64-bit entry (+0x200): the zero page's type_of_loader to the debug-exit port. */
    static const uint8_t code[] = {0x8a, 0x86, 0x10, 0x02, 0x00, 0x00, /* mov 0x210(%rsi),%al */
                                   0xe6, 0xf4,                         /* out %al,$0xf4 */
                                   0xf4};                              /* hlt */
    memcpy(img + KOFF + 0x200, code, sizeof(code));
}

static int setup(void **state)
{
    struct rvm_mem_config c = {.size = MEM_SIZE, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_mem *m;

    if (rvm_mem_create(NULL, &c, &m) < 0)
        return -1;
    build();
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    rvm_mem_destroy(*state);
    return 0;
}

static void test_parse(void **state)
{
    struct rvm_bzimage_info bi;
    (void)state;

    assert_int_equal(rvm_bzimage_parse(img, sizeof(img), &bi), 0);
    assert_int_equal(bi.version, 0x020f);
    assert_int_equal(bi.setup_sects, SETUP);
    assert_int_equal(bi.kernel_offset, KOFF);
    assert_int_equal(bi.kernel_size, KSIZE);
    assert_true(bi.relocatable);
    assert_int_equal(bi.alignment, 0x200000);
    assert_int_equal(bi.pref_address, PREF);
    assert_int_equal(bi.init_size, INIT_SIZE);
    assert_int_equal(bi.cmdline_size, 2047);
    /* setup_sects 0 means 4 */
    img[0x1f1] = 0;
    assert_int_equal(rvm_bzimage_parse(img, sizeof(img), &bi), 0);
    assert_int_equal(bi.setup_sects, 4);
}

static void expect_parse(int err)
{
    struct rvm_bzimage_info bi;

    assert_int_equal(rvm_bzimage_parse(img, sizeof(img), &bi), err);
    build();
}

static void test_refused(void **state)
{
    struct rvm_bzimage_info bi;
    (void)state;

    put16(img + 0x1fe, 0x55aa);
    expect_parse(-ENOEXEC); /* boot flag */
    memcpy(img + 0x202, "HdrT", 4);
    expect_parse(-ENOEXEC); /* no header */
    put16(img + 0x206, 0x020b);
    expect_parse(-ENOTSUP); /* 2.11: no xloadflags */
    put16(img + 0x236, 0x2);
    expect_parse(-ENOTSUP); /* no 64-bit entry */
    img[0x211] = 0;
    expect_parse(-ENOTSUP); /* not LOADED_HIGH */
    put32(img + 0x260, KSIZE - 1);
    expect_parse(-ENOEXEC); /* init_size smaller than the kernel */
    put32(img + 0x230, 0x300000);
    expect_parse(-ENOEXEC); /* alignment not a power of two */
    img[0x1f1] = 200;
    expect_parse(-ENOEXEC); /* setup past the end of the file */
    img[0x201] = 0xff;
    assert_int_equal(rvm_bzimage_parse(img, 0x250, &bi), -ENOEXEC); /* header past the end */
    build();
    assert_int_equal(rvm_bzimage_parse(img, KOFF, &bi), -ENOEXEC); /* no kernel */
}

/* The zero page, command line, initrd, e820 map, page tables and GDT, at their offsets. */
static void test_load(void **state)
{
    struct rvm_mem *m = *state;
    static uint8_t initrd[100000];
    struct rvm_pvh_params p = {
        .cmdline = "console=ttyS0 root=/dev/vda", .initrd = initrd, .initrd_size = sizeof(initrd)};
    struct rvm_boot_info bi;
    uint8_t zp[4096], k[KSIZE];

    for (size_t i = 0; i < sizeof(initrd); i++)
        initrd[i] = (uint8_t)(i ^ 0x5a);
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), &p, &bi), 0);
    assert_int_equal(bi.protocol, RVM_BOOT_LINUX64);
    assert_int_equal(bi.entry, PREF + 0x200);
    assert_int_equal(bi.start_info_gpa, 0x7000);
    assert_int_equal(rvm_mem_read(m, PREF, k, KSIZE), 0);
    assert_memory_equal(k, img + KOFF, KSIZE);

    assert_int_equal(rvm_mem_read(m, 0x7000, zp, sizeof(zp)), 0);
    assert_int_equal(zp[0x1f1], SETUP); /* the header, copied */
    assert_int_equal(get16(zp + 0x1fe), 0xaa55);
    assert_memory_equal(zp + 0x202, "HdrS", 4);
    assert_int_equal(get16(zp + 0x206), 0x020f);
    assert_int_equal(get64(zp + 0x258), PREF);
    assert_int_equal(zp[0x210], 0xff);            /* type_of_loader */
    assert_int_equal(get32(zp + 0x228), 0x20000); /* cmd_line_ptr */
    assert_int_equal(get32(zp + 0x0c8), 0);       /* ext_cmd_line_ptr */
    char cmd[64];
    assert_int_equal(rvm_mem_read(m, get32(zp + 0x228), cmd, sizeof(cmd)), 0);
    assert_string_equal(cmd, p.cmdline);
    uint32_t rd = get32(zp + 0x218), rs = get32(zp + 0x21c); /* ramdisk_image, _size */
    assert_int_equal(rd, bi.initrd_gpa);
    assert_int_equal(rs, sizeof(initrd));
    assert_int_equal(rd % 4096, 0);
    assert_true(rd >= PREF + INIT_SIZE); /* clear of the decompressor */
    assert_true(rd + rs <= MEM_SIZE);
    static uint8_t back[sizeof(initrd)];
    assert_int_equal(rvm_mem_read(m, rd, back, sizeof(back)), 0);
    assert_memory_equal(back, initrd, sizeof(initrd));
    /* e820: entries at 0x1e8, the table at 0x2d0, 20 bytes each */
    assert_int_equal(zp[0x1e8], 3);
    const uint64_t want[3][3] = {
        {0, 0x9fc00, 1}, {0x9fc00, 0x100000 - 0x9fc00, 2}, {0x100000, MEM_SIZE - 0x100000, 1}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get64(zp + 0x2d0 + 20 * i), want[i][0]);
        assert_int_equal(get64(zp + 0x2d0 + 20 * i + 8), want[i][1]);
        assert_int_equal(get32(zp + 0x2d0 + 20 * i + 16), want[i][2]);
    }
    /* Page tables: PML4 -> PDPT -> four directories of 2 MiB pages, identity. */
    uint64_t e;
    assert_int_equal(rvm_mem_read(m, 0x9000, &e, 8), 0);
    assert_int_equal(e, 0xa000 | 3);
    assert_int_equal(rvm_mem_read(m, 0xa000 + 8 * 3, &e, 8), 0);
    assert_int_equal(e, (0xb000 + 3 * 4096) | 3);
    assert_int_equal(rvm_mem_read(m, 0xb000 + 8 * 8, &e, 8), 0);
    assert_int_equal(e, (8ULL << 21) | 0x83);
    /* GDT: __BOOT_CS (0x10) 64-bit code, __BOOT_DS (0x18) data */
    uint64_t gdt[4];
    assert_int_equal(rvm_mem_read(m, 0x1000, gdt, sizeof(gdt)), 0);
    assert_int_equal(gdt[2], 0x00af9b000000ffffULL);
    assert_int_equal(gdt[3], 0x00cf93000000ffffULL);
}

static void test_load_refused(void **state)
{
    struct rvm_mem *m = *state;
    struct rvm_boot_info bi;
    char longcmd[3000];
    static uint8_t big[60 << 20];

    memset(longcmd, 'a', sizeof(longcmd) - 1);
    longcmd[sizeof(longcmd) - 1] = 0;
    struct rvm_pvh_params p = {.cmdline = longcmd};
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), &p, &bi), -E2BIG); /* > cmdline_size */
    p = (struct rvm_pvh_params){.initrd = big, .initrd_size = sizeof(big)};
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), &p, &bi), -E2BIG); /* no room */
    put32(img + 0x260, 0x4000000);                                            /* 64 MiB */
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), NULL, &bi), -ERANGE);
    build();
    /* initrd_addr_max is kept: at most 32 MiB here */
    put32(img + 0x22c, 0x1ffffff);
    p = (struct rvm_pvh_params){.initrd = big, .initrd_size = 4096};
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), &p, &bi), 0);
    assert_true(bi.initrd_gpa + 4096 <= 0x2000000);
    build();
}

/*
 * initrd_addr_max 0xffffffff (any address below 4 GiB): the initrd goes at
 * the top of low RAM. Its "+ 1" once wrapped in 32 bits, the limit became
 * 0 and every initrd was refused (found by fuzzing the loader).
 */
static void test_initrd_addr_max_4g(void **state)
{
    struct rvm_mem *m = *state;
    static uint8_t initrd[8192];
    struct rvm_pvh_params p = {.initrd = initrd, .initrd_size = sizeof(initrd)};
    struct rvm_boot_info bi;

    put32(img + 0x22c, 0xffffffff);
    assert_int_equal(rvm_bzimage_load(m, img, sizeof(img), &p, &bi), 0);
    assert_int_equal(bi.initrd_size, sizeof(initrd));
    assert_int_equal(bi.initrd_gpa, MEM_SIZE - sizeof(initrd));
    build();
}

/* A VM enters the image's 64-bit entry in long mode with RSI at the zero page. */
static void test_entry_in_vm(void **state)
{
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_vm_config c;
    struct rvm_vm_result res;
    (void)state;

    SKIP_WITHOUT_KVM();
    rvm_vm_config_init(&c);
    c.mem.size = MEM_SIZE;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_debug_exit_attach(vm, 0), 0);
    assert_int_equal(rvm_vm_load_kernel(vm, img, sizeof(img), NULL, NULL), 0);
    assert_int_equal(rvm_vm_start(vm), 0);
    assert_int_equal(rvm_vm_wait(vm, 60000, &res), 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0xff); /* type_of_loader, read through RSI */
    rvm_vm_destroy(vm);
    /* The platform devices a Linux guest uses: the boot timer, then reboot=k's reset. */
    static const uint8_t reboot[] = {0x66, 0xba, 0x40, 0x04, /* mov $0x440,%dx */
                                     0xee,                   /* out %al,(%dx): the boot timer */
                                     0xb0, 0xfe,             /* mov $0xfe,%al */
                                     0xe6, 0x64,             /* out %al,$0x64: pulse reset */
                                     0xf4};
    memcpy(img + KOFF + 0x200, reboot, sizeof(reboot));
    uint64_t ns = 0;
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_i8042_attach(vm), 0);
    assert_int_equal(rvm_boot_timer_attach(vm, 0), 0);
    assert_int_equal(rvm_vm_boot_time(vm, &ns), -ENOENT);
    assert_int_equal(rvm_vm_load_kernel(vm, img, sizeof(img), NULL, NULL), 0);
    assert_int_equal(rvm_vm_start(vm), 0);
    assert_int_equal(rvm_vm_wait(vm, 60000, &res), 0);
    assert_int_equal(res.end, RVM_END_RESET);
    assert_int_equal(rvm_vm_boot_time(vm, &ns), 0);
    assert_true(ns > 0 && ns < 60000000000ULL);
    rvm_vm_destroy(vm);
    build();
    /* Neither format: refused. */
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_vm_load_kernel(vm, "garbage!", 8, NULL, NULL), -ENOEXEC);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

/* Runs img's 64-bit entry with code at +0x200 in a VM (pvpanic and the debug port attached). */
static void run_code(const uint8_t *code, size_t len, struct rvm_vm_result *res, uint64_t *pv_read)
{
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_vm_config c;

    rvm_vm_config_init(&c);
    c.mem.size = MEM_SIZE;
    memcpy(img + KOFF + 0x200, code, len);
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_debug_exit_attach(vm, 0), 0);
    assert_int_equal(rvm_pvpanic_attach(vm, 0), 0);
    if (pv_read) /* what a driver's probe reads: the events the device reports */
        assert_int_equal(vm_io_access(vm, RVM_BUS_PIO, RVM_PVPANIC_PORT, 1, false, pv_read), 0);
    assert_int_equal(rvm_vm_load_kernel(vm, img, sizeof(img), NULL, NULL), 0);
    assert_int_equal(rvm_vm_start(vm), 0);
    assert_int_equal(rvm_vm_wait(vm, 60000, res), 0);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    build();
}

/* A guest kernel's panic, reported through pvpanic, ends the VM with its own reason. */
static void test_pvpanic(void **state)
{
    static const uint8_t code[] = {0xb0, 0x01,             /* mov $1,%al: PVPANIC_PANICKED */
                                   0x66, 0xba, 0x05, 0x05, /* mov $0x505,%dx */
                                   0xee,                   /* out %al,(%dx) */
                                   0xf4};                  /* hlt */
    struct rvm_vm_result res;
    uint64_t events = 0;
    (void)state;

    SKIP_WITHOUT_KVM();
    run_code(code, sizeof(code), &res, &events);
    assert_int_equal(events, RVM_PVPANIC_PANICKED | RVM_PVPANIC_CRASH_LOADED);
    assert_int_equal(res.end, RVM_END_PANIC);
    assert_int_equal(res.value, RVM_PVPANIC_PANICKED);
    assert_false(res.crashed);
}

/*
 * A triple fault (#UD with no IDT) carries the crash report: the
 * registers, CPL 0, the ud2 at RIP read from guest memory, and the port
 * exit before it; rvm_crash_format() writes all of it.
 */
static void test_crash_report(void **state)
{
    static const uint8_t code[] = {0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00, /* mov $0x1234,%rax */
                                   0xe6, 0x80,                               /* out %al,$0x80 */
                                   0x0f, 0x0b};                              /* ud2 */
    struct rvm_vm_result res;
    char text[4096];
    (void)state;

    SKIP_WITHOUT_KVM();
    run_code(code, sizeof(code), &res, NULL);
    assert_int_equal(res.end, RVM_END_SHUTDOWN);
    assert_true(res.crashed);
    const struct rvm_crash *c = &res.crash;
    assert_int_equal(c->vcpu, 0);
    assert_int_equal(c->kvm_reason, KVM_EXIT_SHUTDOWN);
    assert_true(c->have_regs);
    assert_int_equal(c->regs.rax, 0x1234);
    assert_int_equal(c->regs.rip, PREF + 0x200 + 9);
    assert_int_equal(c->cpl, 0);
    assert_int_equal(c->sregs.efer & 0x500, 0x500); /* long mode, as entered */
    assert_false(c->insn_from_kvm);
    assert_true(c->insn_len >= 2);
    assert_int_equal(c->insn[0], 0x0f);
    assert_int_equal(c->insn[1], 0x0b);
    assert_true(c->nexits >= 2);
    const struct rvm_exit_trace *t = &c->exits[c->nexits - 2];
    assert_int_equal(t->kvm_reason, KVM_EXIT_IO);
    assert_int_equal(t->addr, 0x80);
    assert_int_equal(t->write, 1);
    assert_int_equal(c->exits[c->nexits - 1].kvm_reason, KVM_EXIT_SHUTDOWN);
    int n = rvm_crash_format(c, text, sizeof(text));
    assert_true(n > 0 && (size_t)n < sizeof(text));
    assert_non_null(strstr(text, "vCPU 0: triple fault"));
    assert_non_null(strstr(text, "RAX 0000000000001234"));
    assert_non_null(strstr(text, "EFER 500"));
    assert_non_null(strstr(text, "code at RIP"));
    assert_non_null(strstr(text, " 0f 0b"));
    assert_non_null(strstr(text, "last exits, oldest first: out 0x80/1 shutdown"));
    /* Truncated output stays a string and says how much it needed. */
    char small[32];
    assert_int_equal(rvm_crash_format(c, small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_addr_max_4g, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_in_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvpanic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_report, setup, teardown),
    };
    return cmocka_run_group_tests_name("bzimage", tests, NULL, NULL);
}
