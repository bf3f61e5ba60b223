/* SPDX-License-Identifier: MIT */
/* Unit: the PVH loader on built and broken ELF images, and the boot data it writes. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../arch/x86_64/pvh_abi.h"
#include "common/testutil.h"

#define MEM_SIZE  (32ULL << 20)
#define LOAD      0x100000ULL
#define CODE_SIZE 0x200
#define ENTRY     (LOAD + 0x10)

/* An ELF64 image: ehdr, 3 phdrs (LOAD, LOAD, NOTE), the note, then code bytes. */
struct image {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[3];
    struct {
        uint32_t namesz, descsz, type;
        char name[4];
        uint32_t entry;
    } note;
    uint8_t code[CODE_SIZE];
};

static void build(struct image *im)
{
    memset(im, 0, sizeof(*im));
    memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
    im->eh.e_ident[EI_CLASS] = ELFCLASS64;
    im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    im->eh.e_ident[EI_VERSION] = EV_CURRENT;
    im->eh.e_type = ET_EXEC;
    im->eh.e_machine = EM_X86_64;
    im->eh.e_version = EV_CURRENT;
    im->eh.e_phoff = offsetof(struct image, ph);
    im->eh.e_ehsize = sizeof(Elf64_Ehdr);
    im->eh.e_phentsize = sizeof(Elf64_Phdr);
    im->eh.e_phnum = 3;
    /* code: file bytes at LOAD, plus 0x1000 of bss */
    im->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
                             .p_offset = offsetof(struct image, code),
                             .p_paddr = LOAD,
                             .p_filesz = CODE_SIZE,
                             .p_memsz = 0x1000 + CODE_SIZE};
    /* a second segment, 64 KiB above */
    im->ph[1] = (Elf64_Phdr){.p_type = PT_LOAD,
                             .p_offset = offsetof(struct image, code),
                             .p_paddr = LOAD + 0x10000,
                             .p_filesz = 16,
                             .p_memsz = 16};
    im->ph[2] = (Elf64_Phdr){
        .p_type = PT_NOTE, .p_offset = offsetof(struct image, note), .p_filesz = sizeof(im->note)};
    im->note.namesz = 4;
    im->note.descsz = 4;
    im->note.type = 18; /* XEN_ELFNOTE_PHYS32_ENTRY */
    memcpy(im->note.name, "Xen", 4);
    im->note.entry = ENTRY;
    for (int i = 0; i < CODE_SIZE; i++)
        im->code[i] = (uint8_t)(i * 7 + 1);
}

struct fixture {
    struct rvm_mem *mem;
    struct image im;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct rvm_mem_config c = {.size = MEM_SIZE, .backing = RVM_MEM_ANON, .numa_node = -1};

    if (!f || rvm_mem_create(NULL, &c, &f->mem) < 0)
        return -1;
    build(&f->im);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    rvm_mem_destroy(f->mem);
    free(f);
    return 0;
}

static int load(struct fixture *f, size_t size, const char *cmdline)
{
    struct rvm_pvh_params p = {.cmdline = cmdline};
    struct rvm_boot_info bi;

    return rvm_pvh_load(f->mem, &f->im, size, &p, &bi);
}

static void test_good_image(void **state)
{
    struct fixture *f = *state;
    struct rvm_pvh_params p = {.cmdline = "console=ttyS0 test=pio"};
    struct rvm_boot_info bi;
    struct pvh_start_info si;
    struct pvh_memmap_entry mm[PVH_MEMMAP_MAX];
    char cmd[64];
    uint8_t b[CODE_SIZE + 16];

    assert_int_equal(rvm_pvh_load(f->mem, &f->im, sizeof(f->im), &p, &bi), 0);
    assert_int_equal(bi.entry, ENTRY);
    assert_int_equal(bi.start_info_gpa, RVM_PVH_INFO_GPA);
    assert_int_equal(bi.image_lo, LOAD);
    assert_int_equal(bi.image_hi, LOAD + 0x10000 + 16);
    /* Segments copied, bss zeroed. */
    assert_int_equal(rvm_mem_read(f->mem, LOAD, b, CODE_SIZE + 16), 0);
    assert_memory_equal(b, f->im.code, CODE_SIZE);
    for (int i = CODE_SIZE; i < CODE_SIZE + 16; i++)
        assert_int_equal(b[i], 0);
    /* start_info as the PVH ABI lays it out. */
    assert_int_equal(rvm_mem_read(f->mem, RVM_PVH_INFO_GPA, &si, sizeof(si)), 0);
    assert_int_equal(si.magic, 0x336ec578);
    assert_int_equal(si.version, 1);
    assert_int_equal(si.nr_modules, 0);
    assert_int_equal(si.cmdline_paddr, RVM_CMDLINE_GPA);
    assert_int_equal(rvm_mem_read(f->mem, si.cmdline_paddr, cmd, sizeof(cmd)), 0);
    assert_string_equal(cmd, "console=ttyS0 test=pio");
    /* Memory map: low RAM, the BIOS hole, RAM from 1 MiB to the end. */
    assert_int_equal(si.memmap_entries, 3);
    assert_int_equal(rvm_mem_read(f->mem, si.memmap_paddr, mm, 3 * sizeof(mm[0])), 0);
    assert_int_equal(mm[0].addr, 0);
    assert_int_equal(mm[0].type, PVH_MEMMAP_RAM);
    assert_int_equal(mm[1].addr, mm[0].addr + mm[0].size);
    assert_int_equal(mm[1].type, PVH_MEMMAP_RESERVED);
    assert_int_equal(mm[2].addr, 0x100000);
    assert_int_equal(mm[2].addr + mm[2].size, MEM_SIZE);
    assert_int_equal(mm[2].type, PVH_MEMMAP_RAM);
}

static void test_initrd_module(void **state)
{
    struct fixture *f = *state;
    static uint8_t initrd[10000];
    struct rvm_pvh_params p = {.cmdline = "", .initrd = initrd, .initrd_size = sizeof(initrd)};
    struct pvh_modlist_entry mod;
    struct pvh_start_info si;
    struct rvm_boot_info bi;
    uint8_t back[sizeof(initrd)];

    for (size_t i = 0; i < sizeof(initrd); i++)
        initrd[i] = (uint8_t)(i ^ 0x5a);
    assert_int_equal(rvm_pvh_load(f->mem, &f->im, sizeof(f->im), &p, &bi), 0);
    assert_int_equal(bi.initrd_gpa % 4096, 0);
    assert_true(bi.initrd_gpa >= bi.image_hi);
    assert_true(bi.initrd_gpa + sizeof(initrd) <= MEM_SIZE);
    assert_true(bi.initrd_gpa + sizeof(initrd) > MEM_SIZE - 4096); /* as high as it fits */
    assert_int_equal(rvm_mem_read(f->mem, RVM_PVH_INFO_GPA, &si, sizeof(si)), 0);
    assert_int_equal(si.nr_modules, 1);
    assert_int_equal(rvm_mem_read(f->mem, si.modlist_paddr, &mod, sizeof(mod)), 0);
    assert_int_equal(mod.paddr, bi.initrd_gpa);
    assert_int_equal(mod.size, sizeof(initrd));
    assert_int_equal(rvm_mem_read(f->mem, mod.paddr, back, sizeof(back)), 0);
    assert_memory_equal(back, initrd, sizeof(initrd));
}

static void test_initrd_too_big(void **state)
{
    struct fixture *f = *state;
    struct rvm_pvh_params p = {.initrd = f, .initrd_size = MEM_SIZE};
    struct rvm_boot_info bi;

    assert_int_equal(rvm_pvh_load(f->mem, &f->im, sizeof(f->im), &p, &bi), -E2BIG);
}

static void test_cmdline_too_long(void **state)
{
    struct fixture *f = *state;
    char *c = malloc(RVM_CMDLINE_MAX + 1);

    memset(c, 'a', RVM_CMDLINE_MAX);
    c[RVM_CMDLINE_MAX] = '\0';
    assert_int_equal(load(f, sizeof(f->im), c), -E2BIG);
    c[RVM_CMDLINE_MAX - 1] = '\0'; /* the longest allowed */
    assert_int_equal(load(f, sizeof(f->im), c), 0);
    free(c);
}

static void test_not_elf(void **state)
{
    struct fixture *f = *state;

    f->im.eh.e_ident[1] = 'X';
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.eh.e_machine = EM_AARCH64;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.eh.e_ident[EI_DATA] = ELFDATA2MSB;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_truncated(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, 0, NULL), -ENOEXEC);
    assert_int_equal(load(f, 10, NULL), -ENOEXEC);                     /* inside e_ident */
    assert_int_equal(load(f, sizeof(Elf64_Ehdr) + 8, NULL), -ENOEXEC); /* inside the phdrs */
    assert_int_equal(load(f, offsetof(struct image, code) + CODE_SIZE - 1, NULL), -ENOEXEC);
}

static void test_bad_phdrs(void **state)
{
    struct fixture *f = *state;

    f->im.eh.e_phoff = UINT64_MAX - 8; /* offset wraps */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.eh.e_phnum = 0xffff;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.eh.e_phentsize = 12;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_segment_past_file(void **state)
{
    struct fixture *f = *state;

    f->im.ph[0].p_offset = sizeof(f->im) - 8;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.ph[0].p_offset = UINT64_MAX - 4; /* offset + filesz wraps */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
    build(&f->im);
    f->im.ph[0].p_filesz = f->im.ph[0].p_memsz + 1;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_segment_outside_memory(void **state)
{
    struct fixture *f = *state;

    f->im.ph[1].p_paddr = MEM_SIZE - 8; /* runs past the end of RAM */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ERANGE);
    build(&f->im);
    f->im.ph[1].p_paddr = UINT64_MAX - 4; /* paddr + memsz wraps */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ERANGE);
    build(&f->im);
    f->im.ph[0].p_paddr = 0x6000; /* over the boot data, below 1 MiB */
    f->im.note.entry = 0x6010;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ERANGE);
    build(&f->im);
    f->im.ph[1].p_memsz = UINT64_MAX;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ERANGE);
}

static void test_overlapping_segments(void **state)
{
    struct fixture *f = *state;

    f->im.ph[1].p_paddr = LOAD + 0x800; /* inside segment 0's bss */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_no_entry_note(void **state)
{
    struct fixture *f = *state;

    f->im.note.type = 1;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOENT);
    build(&f->im);
    memcpy(f->im.note.name, "Xem", 4);
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOENT);
    build(&f->im);
    f->im.ph[2].p_type = PT_NULL;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOENT);
    build(&f->im);
    f->im.note.namesz = 0xfffffff0; /* malformed note: sizes beyond the segment */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOENT);
    build(&f->im);
    f->im.ph[2].p_filesz = 0x100000; /* note segment past the file */
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_entry_outside_image(void **state)
{
    struct fixture *f = *state;

    f->im.note.entry = 0x500000;
    assert_int_equal(load(f, sizeof(f->im), NULL), -ENOEXEC);
}

static void test_elf32_image(void **state)
{
    struct fixture *f = *state;
    struct {
        Elf32_Ehdr eh;
        Elf32_Phdr ph[2];
        uint32_t note[5];
        uint8_t code[64];
    } im32;
    struct rvm_boot_info bi;

    memset(&im32, 0, sizeof(im32));
    memcpy(im32.eh.e_ident, ELFMAG, SELFMAG);
    im32.eh.e_ident[EI_CLASS] = ELFCLASS32;
    im32.eh.e_ident[EI_DATA] = ELFDATA2LSB;
    im32.eh.e_machine = EM_386;
    im32.eh.e_phoff = offsetof(__typeof__(im32), ph);
    im32.eh.e_phentsize = sizeof(Elf32_Phdr);
    im32.eh.e_phnum = 2;
    im32.ph[0] = (Elf32_Phdr){.p_type = PT_LOAD,
                              .p_offset = offsetof(__typeof__(im32), code),
                              .p_paddr = 0x200000,
                              .p_filesz = 64,
                              .p_memsz = 64};
    im32.ph[1] = (Elf32_Phdr){.p_type = PT_NOTE,
                              .p_offset = offsetof(__typeof__(im32), note),
                              .p_filesz = sizeof(im32.note)};
    im32.note[0] = 4, im32.note[1] = 4, im32.note[2] = 18;
    memcpy(&im32.note[3], "Xen", 4);
    im32.note[4] = 0x200004;
    assert_int_equal(rvm_pvh_load(f->mem, &im32, sizeof(im32), NULL, &bi), 0);
    assert_int_equal(bi.entry, 0x200004);
}

/* The real bench guest loads too, with the entry its note names. */
static void test_bench_guest(void **state)
{
    struct fixture *f = *state;
    struct rvm_boot_info bi;
    void *elf;
    size_t len;

    assert_int_equal(bg_read_file(guest_path(), &elf, &len), 0);
    assert_int_equal(rvm_pvh_load(f->mem, elf, len, NULL, &bi), 0);
    assert_true(bi.entry >= bi.image_lo && bi.entry < bi.image_hi);
    free(elf);
}

static void test_small_memory(void **state)
{
    struct rvm_mem_config c = {.size = 1 << 20, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_boot_info bi;
    struct image im;
    struct rvm_mem *m;
    (void)state;

    build(&im);
    assert_int_equal(rvm_mem_create(NULL, &c, &m), 0);
    assert_int_equal(rvm_pvh_load(m, &im, sizeof(im), NULL, &bi), -ERANGE);
    rvm_mem_destroy(m);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_good_image),
        T(test_initrd_module),
        T(test_initrd_too_big),
        T(test_cmdline_too_long),
        T(test_not_elf),
        T(test_truncated),
        T(test_bad_phdrs),
        T(test_segment_past_file),
        T(test_segment_outside_memory),
        T(test_overlapping_segments),
        T(test_no_entry_note),
        T(test_entry_outside_image),
        T(test_elf32_image),
        T(test_bench_guest),
        cmocka_unit_test(test_small_memory),
    };
    return cmocka_run_group_tests_name("pvh", tests, NULL, NULL);
}
