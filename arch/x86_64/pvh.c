/* SPDX-License-Identifier: MIT */
/*
 * PVH loader. The image is untrusted input: every offset and size read from
 * it is checked against the file and guest RAM, with overflow-safe
 * arithmetic, before anything is copied.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>

#include "../../core/log.h"
#include "../../mem/mem_internal.h"
#include "arch.h"
#include "pvh_abi.h"

#define MAX_PHDRS 64
#define PAGE      4096ULL

struct seg {
    uint64_t type, offset, filesz, paddr, memsz;
};

struct elf_image {
    const uint8_t *data;
    size_t size;
    unsigned nseg;
    struct seg seg[MAX_PHDRS];
};

/* [off, off+len) inside [0, size)? */
static int in_file(size_t size, uint64_t off, uint64_t len)
{
    return off <= size && len <= size - off;
}

static int read_phdrs(const struct rvm_hv *hv, struct elf_image *img)
{
    const uint8_t *d = img->data;
    int is64;
    uint64_t phoff;
    unsigned phnum, phentsize;

    if (img->size < EI_NIDENT || memcmp(d, ELFMAG, SELFMAG) != 0) {
        rvm_err(hv, "PVH: not an ELF image");
        return -ENOEXEC;
    }
    if (d[EI_DATA] != ELFDATA2LSB || (d[EI_CLASS] != ELFCLASS64 && d[EI_CLASS] != ELFCLASS32)) {
        rvm_err(hv, "PVH: not a little-endian ELF32/ELF64 image");
        return -ENOEXEC;
    }
    is64 = d[EI_CLASS] == ELFCLASS64;
    if (img->size < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
        rvm_err(hv, "PVH: truncated ELF header");
        return -ENOEXEC;
    }
    if (is64) {
        Elf64_Ehdr eh;
        memcpy(&eh, d, sizeof(eh));
        if (eh.e_machine != EM_X86_64)
            goto bad_machine;
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize;
        if (phentsize != sizeof(Elf64_Phdr))
            goto bad_phdrs;
    } else {
        Elf32_Ehdr eh;
        memcpy(&eh, d, sizeof(eh));
        if (eh.e_machine != EM_386 && eh.e_machine != EM_X86_64)
            goto bad_machine;
        phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize;
        if (phentsize != sizeof(Elf32_Phdr))
            goto bad_phdrs;
    }
    if (phnum == 0 || phnum > MAX_PHDRS || !in_file(img->size, phoff, (uint64_t)phnum * phentsize))
        goto bad_phdrs;

    img->nseg = phnum;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *p = d + phoff + (uint64_t)i * phentsize;
        struct seg *s = &img->seg[i];

        if (is64) {
            Elf64_Phdr ph;
            memcpy(&ph, p, sizeof(ph));
            *s = (struct seg){ph.p_type, ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz};
        } else {
            Elf32_Phdr ph;
            memcpy(&ph, p, sizeof(ph));
            *s = (struct seg){ph.p_type, ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz};
        }
    }
    return 0;

bad_machine:
    rvm_err(hv, "PVH: ELF image is not for x86");
    return -ENOEXEC;
bad_phdrs:
    rvm_err(hv, "PVH: bad or truncated ELF program headers");
    return -ENOEXEC;
}

/* Looks for the XEN_ELFNOTE_PHYS32_ENTRY note in the PT_NOTE segments. */
static int find_entry(const struct rvm_hv *hv, const struct elf_image *img, uint64_t *entry)
{
    for (unsigned i = 0; i < img->nseg; i++) {
        const struct seg *s = &img->seg[i];
        uint64_t pos, end;

        if (s->type != PT_NOTE)
            continue;
        if (!in_file(img->size, s->offset, s->filesz)) {
            rvm_err(hv, "PVH: note segment %u past the end of the file", i);
            return -ENOEXEC;
        }
        pos = s->offset;
        end = s->offset + s->filesz;
        while (end - pos >= 12) {
            uint32_t nh[3]; /* namesz, descsz, type */
            uint64_t name, desc, namesz, descsz;

            memcpy(nh, img->data + pos, sizeof(nh));
            namesz = (nh[0] + 3ULL) & ~3ULL;
            descsz = (nh[1] + 3ULL) & ~3ULL;
            name = pos + 12;
            if (namesz > end - name || descsz > end - name - namesz)
                break; /* malformed note: stop reading this segment */
            desc = name + namesz;
            if (nh[2] == PVH_ELFNOTE_PHYS32_ENTRY && nh[0] == 4 &&
                memcmp(img->data + name, "Xen", 4) == 0 && (nh[1] == 4 || nh[1] == 8)) {
                uint64_t v = 0;
                memcpy(&v, img->data + desc, nh[1]);
                *entry = v;
                return 0;
            }
            pos = desc + descsz;
        }
    }
    rvm_err(hv, "PVH: no XEN_ELFNOTE_PHYS32_ENTRY note; not a PVH image");
    return -ENOENT;
}

/* Checks the PT_LOAD segments against the file, guest RAM and each other. */
static int check_loads(const struct rvm_hv *hv, const struct elf_image *img,
                       const struct rvm_mem *mem, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX;
    *hi = 0;
    for (unsigned i = 0; i < img->nseg; i++) {
        const struct seg *s = &img->seg[i];

        if (s->type != PT_LOAD || s->memsz == 0)
            continue;
        if (!in_file(img->size, s->offset, s->filesz) || s->filesz > s->memsz) {
            rvm_err(hv, "PVH: segment %u: file range past the end or filesz > memsz", i);
            return -ENOEXEC;
        }
        if (s->paddr < RVM_PVH_MIN_LOAD || !rvm_mem_hva(mem, s->paddr, s->memsz)) {
            rvm_err(hv, "PVH: segment %u [0x%llx, +0x%llx) is not inside guest RAM above 1 MiB", i,
                    (unsigned long long)s->paddr, (unsigned long long)s->memsz);
            return -ERANGE;
        }
        for (unsigned j = 0; j < i; j++) {
            const struct seg *t = &img->seg[j];

            if (t->type == PT_LOAD && t->memsz && s->paddr < t->paddr + t->memsz &&
                t->paddr < s->paddr + s->memsz) {
                rvm_err(hv, "PVH: segments %u and %u overlap", j, i);
                return -ENOEXEC;
            }
        }
        if (s->paddr < *lo)
            *lo = s->paddr;
        if (s->paddr + s->memsz > *hi)
            *hi = s->paddr + s->memsz;
    }
    if (*hi == 0) {
        rvm_err(hv, "PVH: no loadable segment");
        return -ENOEXEC;
    }
    return 0;
}

static int entry_in_image(const struct elf_image *img, uint64_t entry)
{
    for (unsigned i = 0; i < img->nseg; i++) {
        const struct seg *s = &img->seg[i];

        if (s->type == PT_LOAD && entry >= s->paddr && entry - s->paddr < s->memsz)
            return 1;
    }
    return 0;
}

unsigned x86_ram_map(const struct rvm_mem *mem, struct x86_ram_range *out, unsigned max)
{
    const struct rvm_mem_region *low = rvm_mem_region(mem, 0);
    unsigned n = 0;

    if (max < 3)
        return 0;
    out[n++] = (struct x86_ram_range){0, 0x9fc00, X86_RAM};
    out[n++] = (struct x86_ram_range){0x9fc00, 0x100000 - 0x9fc00, X86_RESERVED};
    out[n++] = (struct x86_ram_range){0x100000, low->size - 0x100000, X86_RAM};
    for (unsigned i = 1; i < rvm_mem_region_count(mem) && n < max; i++) {
        const struct rvm_mem_region *r = rvm_mem_region(mem, i);
        out[n++] = (struct x86_ram_range){r->gpa, r->size, X86_RAM};
    }
    return n;
}

static unsigned build_memmap(const struct rvm_mem *mem, struct pvh_memmap_entry *mm)
{
    struct x86_ram_range r[PVH_MEMMAP_MAX];
    unsigned n = x86_ram_map(mem, r, PVH_MEMMAP_MAX);

    for (unsigned i = 0; i < n; i++)
        mm[i] = (struct pvh_memmap_entry){
            r[i].addr, r[i].size, r[i].type == X86_RAM ? PVH_MEMMAP_RAM : PVH_MEMMAP_RESERVED, 0};
    return n;
}

static int place_initrd(const struct rvm_hv *hv, struct rvm_mem *mem,
                        const struct rvm_pvh_params *p, uint64_t image_hi,
                        struct rvm_boot_info *info)
{
    const struct rvm_mem_region *low = rvm_mem_region(mem, 0);
    uint64_t gpa;

    if (!p->initrd || p->initrd_size == 0)
        return 0;
    if (p->initrd_size > low->size || low->size - p->initrd_size < image_hi) {
        rvm_err(hv,
                "PVH: initrd of %zu bytes does not fit between the image and the end of "
                "low memory",
                p->initrd_size);
        return -E2BIG;
    }
    gpa = (low->size - p->initrd_size) & ~(PAGE - 1);
    if (gpa < image_hi || gpa < RVM_PVH_MIN_LOAD) {
        rvm_err(hv, "PVH: initrd does not fit above the image");
        return -E2BIG;
    }
    info->initrd_gpa = gpa;
    info->initrd_size = p->initrd_size;
    return rvm_mem_write(mem, gpa, p->initrd, p->initrd_size);
}

static int write_start_info(struct rvm_mem *mem, const struct rvm_boot_info *info,
                            uint64_t cmdline_gpa, uint64_t rsdp_gpa)
{
    struct pvh_memmap_entry mm[PVH_MEMMAP_MAX];
    struct pvh_modlist_entry mod = {info->initrd_gpa, info->initrd_size, 0, 0};
    struct pvh_start_info si = {
        .magic = PVH_START_MAGIC,
        .version = 1,
        .nr_modules = info->initrd_size ? 1 : 0,
        .modlist_paddr = info->initrd_size ? RVM_PVH_INFO_GPA + PVH_MODLIST_OFFSET : 0,
        .cmdline_paddr = cmdline_gpa,
        .memmap_paddr = RVM_PVH_INFO_GPA + PVH_MEMMAP_OFFSET,
        .rsdp_paddr = rsdp_gpa,
    };
    int r;

    si.memmap_entries = build_memmap(mem, mm);
    if ((r = rvm_mem_write(mem, RVM_PVH_INFO_GPA, &si, sizeof(si))) < 0 ||
        (r = rvm_mem_write(mem, RVM_PVH_INFO_GPA + PVH_MODLIST_OFFSET, &mod, sizeof(mod))) < 0)
        return r;
    return rvm_mem_write(mem, RVM_PVH_INFO_GPA + PVH_MEMMAP_OFFSET, mm,
                         si.memmap_entries * sizeof(mm[0]));
}

int rvm_pvh_load(struct rvm_mem *mem, const void *elf, size_t size,
                 const struct rvm_pvh_params *params, struct rvm_boot_info *info)
{
    static const struct rvm_pvh_params none;
    const struct rvm_hv *hv;
    struct elf_image img = {.data = elf, .size = size};
    const char *cmdline;
    size_t cmdlen;
    int r;

    if (!mem || !elf || !info)
        return -EINVAL;
    hv = mem_hv(mem);
    if (!params)
        params = &none;
    memset(info, 0, sizeof(*info));
    if (rvm_mem_region(mem, 0)->size < 2 * RVM_PVH_MIN_LOAD) {
        rvm_err(hv, "PVH: guest memory must be at least 2 MiB");
        return -ERANGE;
    }
    cmdline = params->cmdline ? params->cmdline : "";
    cmdlen = strnlen(cmdline, RVM_CMDLINE_MAX);
    if (cmdlen >= RVM_CMDLINE_MAX) {
        rvm_err(hv, "PVH: command line longer than %d bytes", RVM_CMDLINE_MAX - 1);
        return -E2BIG;
    }
    if ((r = read_phdrs(hv, &img)) < 0 || (r = find_entry(hv, &img, &info->entry)) < 0 ||
        (r = check_loads(hv, &img, mem, &info->image_lo, &info->image_hi)) < 0)
        return r;
    if (!entry_in_image(&img, info->entry)) {
        rvm_err(hv, "PVH: entry point 0x%llx is outside the loaded segments",
                (unsigned long long)info->entry);
        return -ENOEXEC;
    }
    for (unsigned i = 0; i < img.nseg; i++) {
        const struct seg *s = &img.seg[i];
        uint8_t *dst;

        if (s->type != PT_LOAD || s->memsz == 0)
            continue;
        dst = rvm_mem_hva(mem, s->paddr, s->memsz); /* checked above */
        memcpy(dst, img.data + s->offset, s->filesz);
        memset(dst + s->filesz, 0, s->memsz - s->filesz);
    }
    if ((r = rvm_mem_write(mem, RVM_CMDLINE_GPA, cmdline, cmdlen + 1)) < 0 ||
        (r = place_initrd(hv, mem, params, info->image_hi, info)) < 0)
        return r;
    info->start_info_gpa = RVM_PVH_INFO_GPA;
    return write_start_info(mem, info, RVM_CMDLINE_GPA, params->rsdp_gpa);
}
