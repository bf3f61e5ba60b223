/* SPDX-License-Identifier: MIT */
/*
 * The Linux x86 boot protocol, 64-bit entry (the kernel's
 * Documentation/arch/x86/boot.rst): a bzImage's protected-mode kernel loaded
 * at its preferred address, a zero page (struct boot_params from the UAPI
 * <asm/bootparam.h>) with the image's setup header, the command line, the
 * initrd and the e820 map, and the CPU in long mode with identity-mapped
 * page tables and the __BOOT_CS/__BOOT_DS GDT the protocol asks for.
 */
#include <errno.h>
#include <string.h>
#include <asm/bootparam.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>

#include "../../core/log.h"
#include "../../mem/mem_internal.h"
#include "arch.h"

#define PAGE             4096ULL
#define BOOT_FLAG        0xaa55
#define HDRS_MAGIC       0x53726448 /* "HdrS" */
#define MIN_VERSION      0x020c     /* 2.12: xloadflags, the 64-bit entry */
#define SETUP_HDR_OFF    0x1f1
#define DEFAULT_SETUP    4  /* setup_sects 0 means 4 */
#define MAX_SETUP        64 /* sectors; the field is a byte, real images use < 64 */
#define ENTRY64_OFFSET   0x200
#define LEGACY_LOAD_ADDR 0x100000ULL
#define CMDLINE_DEFAULT  255 /* before 2.06 */

_Static_assert(sizeof(struct boot_params) == 4096, "the zero page is one page");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HDR_OFF, "setup header at 0x1f1");

/* The setup header's bytes: 0x1f1 up to 0x202 plus the jump's offset byte at 0x201. */
static size_t header_end(const uint8_t *img)
{
    return 0x202 + img[0x201];
}

int rvm_bzimage_parse(const void *image, size_t size, struct rvm_bzimage_info *out)
{
    const uint8_t *img = image;
    struct setup_header h;
    size_t end;

    if (!image || !out || size < 0x202 + 2)
        return -ENOEXEC;
    memset(out, 0, sizeof(*out));
    end = header_end(img);
    if (end > size || end < offsetof(struct setup_header, init_size) + SETUP_HDR_OFF + 4)
        return -ENOEXEC;
    memset(&h, 0, sizeof(h));
    memcpy(&h, img + SETUP_HDR_OFF,
           end - SETUP_HDR_OFF < sizeof(h) ? end - SETUP_HDR_OFF : sizeof(h));
    if (h.boot_flag != BOOT_FLAG || h.header != HDRS_MAGIC)
        return -ENOEXEC;
    out->version = h.version;
    if (h.version < MIN_VERSION || !(h.xloadflags & XLF_KERNEL_64) || !(h.loadflags & LOADED_HIGH))
        return -ENOTSUP;
    out->setup_sects = h.setup_sects ? h.setup_sects : DEFAULT_SETUP;
    if (out->setup_sects > MAX_SETUP)
        return -ENOEXEC;
    out->kernel_offset = (uint64_t)(out->setup_sects + 1) * 512;
    if (out->kernel_offset >= size)
        return -ENOEXEC;
    out->kernel_size = size - out->kernel_offset;
    out->relocatable = h.relocatable_kernel != 0;
    out->alignment = h.kernel_alignment;
    out->pref_address = h.pref_address ? h.pref_address : LEGACY_LOAD_ADDR;
    out->init_size = h.init_size;
    out->initrd_addr_max = h.initrd_addr_max;
    out->cmdline_size = h.cmdline_size ? h.cmdline_size : CMDLINE_DEFAULT;
    out->xloadflags = h.xloadflags;
    /* The decompressor runs within [load, load + init_size): it must cover the image. */
    if (out->init_size < out->kernel_size)
        return -ENOEXEC;
    if (out->relocatable && out->alignment &&
        (out->alignment & (out->alignment - 1))) /* not a power of two */
        return -ENOEXEC;
    return 0;
}

/* An identity map of the low 4 GiB with 2 MiB pages: PML4, PDPT, four page directories. */
static int write_page_tables(struct rvm_mem *mem)
{
    uint64_t pml4[512] = {0}, pdpt[512] = {0}, pd[512];
    int r;

    pml4[0] = RVM_LINUX_PDPT_GPA | 0x3; /* present, writable */
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (RVM_LINUX_PD_GPA + i * PAGE) | 0x3;
    if ((r = rvm_mem_write(mem, RVM_LINUX_PML4_GPA, pml4, sizeof(pml4))) < 0 ||
        (r = rvm_mem_write(mem, RVM_LINUX_PDPT_GPA, pdpt, sizeof(pdpt))) < 0)
        return r;
    for (uint64_t i = 0; i < 4; i++) {
        for (uint64_t j = 0; j < 512; j++)
            pd[j] = ((i << 30) + (j << 21)) | 0x83; /* present, writable, 2 MiB page */
        if ((r = rvm_mem_write(mem, RVM_LINUX_PD_GPA + i * PAGE, pd, sizeof(pd))) < 0)
            return r;
    }
    return 0;
}

/* Null, null, __BOOT_CS (0x10: 64-bit code), __BOOT_DS (0x18: data), all flat. */
static int write_gdt(struct rvm_mem *mem)
{
    static const uint64_t gdt[4] = {0, 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL};

    return rvm_mem_write(mem, RVM_LINUX_GDT_GPA, gdt, sizeof(gdt));
}

/*
 * The initrd: page-aligned, as high as it fits below both the end of low
 * RAM and initrd_addr_max, above the kernel's init_size. 0 or -E2BIG.
 */
static int place_initrd(const struct rvm_hv *hv, struct rvm_mem *mem,
                        const struct rvm_pvh_params *p, const struct rvm_bzimage_info *bi,
                        uint64_t kernel_end, struct rvm_boot_info *info)
{
    uint64_t top = rvm_mem_region(mem, 0)->size, gpa;

    if (!p->initrd || !p->initrd_size)
        return 0;
    /* The highest address the initrd may use, inclusive: the limit is one past it (64 bits). */
    if (bi->initrd_addr_max && (uint64_t)bi->initrd_addr_max + 1 < top)
        top = (uint64_t)bi->initrd_addr_max + 1;
    if (p->initrd_size > top || ((top - p->initrd_size) & ~(PAGE - 1)) < kernel_end) {
        rvm_err(hv, "bzImage: an initrd of %zu bytes does not fit between the kernel and 0x%llx",
                p->initrd_size, (unsigned long long)top);
        return -E2BIG;
    }
    gpa = (top - p->initrd_size) & ~(PAGE - 1);
    info->initrd_gpa = gpa;
    info->initrd_size = p->initrd_size;
    return rvm_mem_write(mem, gpa, p->initrd, p->initrd_size);
}

int rvm_bzimage_load(struct rvm_mem *mem, const void *image, size_t size,
                     const struct rvm_pvh_params *params, struct rvm_boot_info *info)
{
    static const struct rvm_pvh_params none;
    const uint8_t *img = image;
    struct rvm_bzimage_info bi;
    struct boot_params bp;
    struct x86_ram_range map[E820_MAX_ENTRIES_ZEROPAGE];
    const struct rvm_hv *hv;
    const char *cmdline;
    uint64_t load, low;
    size_t cmdlen;
    int r;

    if (!mem || !image || !info)
        return -EINVAL;
    hv = mem_hv(mem);
    if (!params)
        params = &none;
    memset(info, 0, sizeof(*info));
    if ((r = rvm_bzimage_parse(image, size, &bi)) < 0) {
        if (r == -ENOTSUP)
            rvm_err(hv,
                    "bzImage: boot protocol %u.%02u without the 64-bit entry (2.12 and "
                    "XLF_KERNEL_64 needed, and LOADED_HIGH)",
                    bi.version >> 8, bi.version & 0xff);
        else
            rvm_err(hv, "bzImage: not a bzImage, or a truncated or inconsistent one");
        return r;
    }
    cmdline = params->cmdline ? params->cmdline : "";
    cmdlen = strnlen(cmdline, RVM_CMDLINE_MAX);
    if (cmdlen >= RVM_CMDLINE_MAX || cmdlen > bi.cmdline_size) {
        rvm_err(hv, "bzImage: command line of %zu bytes; the kernel takes %u", cmdlen,
                bi.cmdline_size);
        return -E2BIG;
    }
    /* Where it runs: its preferred address (a relocatable kernel could go elsewhere, but
     * the preferred one saves it the relocation). */
    load = bi.pref_address;
    if (bi.relocatable && bi.alignment)
        load = (load + bi.alignment - 1) & ~((uint64_t)bi.alignment - 1);
    low = rvm_mem_region(mem, 0)->size;
    if (load < LEGACY_LOAD_ADDR || load > low || low - load < bi.init_size) {
        rvm_err(hv,
                "bzImage: the kernel needs [0x%llx, 0x%llx) of RAM (init_size); low RAM ends "
                "at 0x%llx",
                (unsigned long long)load, (unsigned long long)(load + bi.init_size),
                (unsigned long long)low);
        return -ERANGE;
    }
    if ((r = rvm_mem_write(mem, load, img + bi.kernel_offset, bi.kernel_size)) < 0 ||
        (r = rvm_mem_write(mem, RVM_CMDLINE_GPA, cmdline, cmdlen + 1)) < 0 ||
        (r = place_initrd(hv, mem, params, &bi, load + bi.init_size, info)) < 0)
        return r;

    /* The zero page: the image's setup header, then what the loader fills in. */
    memset(&bp, 0, sizeof(bp));
    size_t end = header_end(img);
    if (end > SETUP_HDR_OFF + sizeof(bp.hdr))
        end = SETUP_HDR_OFF + sizeof(bp.hdr);
    memcpy((uint8_t *)&bp + SETUP_HDR_OFF, img + SETUP_HDR_OFF, end - SETUP_HDR_OFF);
    bp.hdr.type_of_loader = 0xff; /* a loader without an assigned ID */
    bp.hdr.loadflags &= (uint8_t) ~(KEEP_SEGMENTS | CAN_USE_HEAP); /* no heap: 64-bit entry */
    bp.hdr.code32_start = (uint32_t)load;
    bp.hdr.cmd_line_ptr = (uint32_t)RVM_CMDLINE_GPA;
    bp.ext_cmd_line_ptr = (uint32_t)(RVM_CMDLINE_GPA >> 32);
    bp.hdr.ramdisk_image = (uint32_t)info->initrd_gpa;
    bp.ext_ramdisk_image = (uint32_t)(info->initrd_gpa >> 32);
    bp.hdr.ramdisk_size = (uint32_t)info->initrd_size;
    bp.ext_ramdisk_size = (uint32_t)(info->initrd_size >> 32);
    bp.hdr.vid_mode = 0xffff; /* "normal" */
    bp.acpi_rsdp_addr = params->rsdp_gpa;
    unsigned n = x86_ram_map(mem, map, E820_MAX_ENTRIES_ZEROPAGE);
    for (unsigned i = 0; i < n; i++) {
        bp.e820_table[i].addr = map[i].addr;
        bp.e820_table[i].size = map[i].size;
        bp.e820_table[i].type = map[i].type;
    }
    bp.e820_entries = (uint8_t)n;
    if ((r = rvm_mem_write(mem, RVM_LINUX_ZERO_PAGE_GPA, &bp, sizeof(bp))) < 0 ||
        (r = write_page_tables(mem)) < 0 || (r = write_gdt(mem)) < 0)
        return r;

    info->protocol = RVM_BOOT_LINUX64;
    info->entry = load + ENTRY64_OFFSET;
    info->start_info_gpa = RVM_LINUX_ZERO_PAGE_GPA;
    info->image_lo = load;
    info->image_hi = load + bi.init_size;
    return 0;
}
