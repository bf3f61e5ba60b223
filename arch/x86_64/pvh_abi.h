/* SPDX-License-Identifier: MIT */
/*
 * The PVH boot ABI's structures (Xen's public arch-x86/hvm/start_info.h,
 * version 1), written out from the published layout.
 */
#ifndef RINGVM_ARCH_PVH_ABI_H
#define RINGVM_ARCH_PVH_ABI_H

#include <stdint.h>

#define PVH_START_MAGIC          0x336ec578U
#define PVH_ELFNOTE_PHYS32_ENTRY 18 /* XEN_ELFNOTE_PHYS32_ENTRY, in a "Xen" note */

#define PVH_MEMMAP_RAM      1
#define PVH_MEMMAP_RESERVED 2

struct pvh_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct pvh_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct pvh_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

_Static_assert(sizeof(struct pvh_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct pvh_modlist_entry) == 32, "hvm_modlist_entry layout");
_Static_assert(sizeof(struct pvh_memmap_entry) == 24, "hvm_memmap_table_entry layout");

/* Where rvm_pvh_load() puts the pieces (inside the page at RVM_PVH_INFO_GPA). */
#define PVH_MODLIST_OFFSET 0x40
#define PVH_MEMMAP_OFFSET  0x80
#define PVH_MEMMAP_MAX     8

#endif
