/* SPDX-License-Identifier: MIT */
/*
 * Loading a guest: the PVH boot protocol (an ELF image with a
 * XEN_ELFNOTE_PHYS32_ENTRY note, entered in 32-bit flat protected mode with
 * EBX pointing at struct hvm_start_info).
 *
 * Fixed low-memory layout (guest-physical):
 *   0x6000   hvm_start_info, then the module list and the memory map
 *   0x20000  command line (up to RVM_CMDLINE_MAX bytes with its NUL)
 *   images   wherever their program headers say, at or above 1 MiB
 *   initrd   page-aligned, as high as it fits below RVM_MEM_LOW_LIMIT
 */
#ifndef RINGVM_BOOT_H
#define RINGVM_BOOT_H

#include <stddef.h>
#include <stdint.h>

struct rvm_mem;
struct rvm_vm;
struct rvm_vcpu;

#define RVM_PVH_INFO_GPA 0x6000ULL
#define RVM_CMDLINE_GPA  0x20000ULL
#define RVM_CMDLINE_MAX  65536
#define RVM_PVH_MIN_LOAD 0x100000ULL

struct rvm_pvh_params {
    const char *cmdline; /* NULL: empty */
    const void *initrd;  /* NULL: none */
    size_t initrd_size;
};

struct rvm_boot_info {
    uint64_t entry;              /* 32-bit entry point (guest-physical) */
    uint64_t start_info_gpa;     /* what EBX holds at entry */
    uint64_t image_lo, image_hi; /* [lo, hi) covered by the loaded segments */
    uint64_t initrd_gpa, initrd_size;
};

/*
 * Loads the ELF in elf[0..size) into mem and writes hvm_start_info, the
 * command line, the module list (initrd) and the memory map. elf is only
 * read. Errors (nothing useful left in mem): -ENOEXEC not an ELF, or a
 * truncated or inconsistent one (headers or segments past the end of the
 * file, filesz > memsz, overlapping segments); -ENOENT no PVH entry note;
 * -ERANGE a segment outside guest RAM or below 1 MiB; -E2BIG command line
 * too long or initrd does not fit. A log line says which, when hv logging is
 * available through mem.
 */
int rvm_pvh_load(struct rvm_mem *mem, const void *elf, size_t size,
                 const struct rvm_pvh_params *params, struct rvm_boot_info *info);

/*
 * rvm_pvh_load() into the VM's memory, then records the entry state for
 * vCPU 0: applied now if vCPU 0 exists, else when it is created. -EBUSY once
 * the VM has been started (or has ended): load before rvm_vm_start().
 */
int rvm_vm_load_pvh(struct rvm_vm *vm, const void *elf, size_t size,
                    const struct rvm_pvh_params *params, struct rvm_boot_info *info);

/* Reads path (and params->initrd is used as given) and calls rvm_vm_load_pvh(). */
int rvm_vm_load_pvh_file(struct rvm_vm *vm, const char *path, const struct rvm_pvh_params *params,
                         struct rvm_boot_info *info);

/* Puts a vCPU in the PVH entry state: 32-bit flat protected mode, EIP=entry, EBX=start_info. */
int rvm_vcpu_set_pvh_entry(struct rvm_vcpu *vcpu, const struct rvm_boot_info *info);

#endif
