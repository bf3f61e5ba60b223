/* SPDX-License-Identifier: MIT */
/*
 * Loading a guest, by one of two protocols:
 *  - PVH: an ELF image with a XEN_ELFNOTE_PHYS32_ENTRY note (a vmlinux
 *    built with CONFIG_PVH, the bench guest), entered in 32-bit flat
 *    protected mode with EBX pointing at struct hvm_start_info;
 *  - Linux 64-bit boot (a bzImage): the protected-mode kernel at its
 *    preferred address, entered in long mode at its 64-bit entry with RSI
 *    pointing at the zero page (struct boot_params).
 *
 * Fixed low-memory layout (guest-physical):
 *   0x1000   Linux: the GDT (__BOOT_CS 0x10, __BOOT_DS 0x18)
 *   0x6000   PVH: hvm_start_info, then the module list and the memory map
 *   0x7000   Linux: the zero page
 *   0x9000   Linux: page tables, an identity map of the low 4 GiB (5 pages)
 *   0x20000  command line (up to RVM_CMDLINE_MAX bytes with its NUL)
 *   0x9fc00  the MP table, if written: its floating pointer in the last KiB of
 *            base memory, where kernels look; for many vCPUs it runs on into
 *            the reserved area above (up to RVM_MPTABLE_MAX bytes)
 *   0xe0000  ACPI tables, RSDP first (where a legacy scan finds it), if written
 *   images   PVH: where their program headers say, at or above 1 MiB;
 *            Linux: at the kernel's preferred address (16 MiB for x86-64)
 *   initrd   page-aligned, as high as it fits below the end of low RAM
 *            (and, Linux, below the kernel's initrd_addr_max)
 */
#ifndef RINGVM_BOOT_H
#define RINGVM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rvm_mem;
struct rvm_vm;
struct rvm_vcpu;

#define RVM_PVH_INFO_GPA 0x6000ULL
#define RVM_CMDLINE_GPA  0x20000ULL
#define RVM_CMDLINE_MAX  65536
#define RVM_PVH_MIN_LOAD 0x100000ULL

#define RVM_LINUX_GDT_GPA       0x1000ULL
#define RVM_LINUX_ZERO_PAGE_GPA 0x7000ULL
#define RVM_LINUX_PML4_GPA      0x9000ULL
#define RVM_LINUX_PDPT_GPA      0xa000ULL
#define RVM_LINUX_PD_GPA        0xb000ULL /* four of them */

#define RVM_ACPI_GPA  0xe0000ULL
#define RVM_ACPI_SIZE 0x4000ULL

#define RVM_MPTABLE_GPA 0x9fc00ULL /* the last KiB of base memory, reserved in e820 */
#define RVM_MPTABLE_MAX 0x1800ULL  /* 254 vCPUs need 5.3 KiB: on into the reserved hole */

enum rvm_boot_protocol {
    RVM_BOOT_PVH = 0,
    RVM_BOOT_LINUX64 = 1,
};

/* What a guest is loaded with, by either protocol. */
struct rvm_pvh_params {
    const char *cmdline; /* NULL: empty */
    const void *initrd;  /* NULL: none */
    size_t initrd_size;
    uint64_t rsdp_gpa; /* Linux: the ACPI RSDP, if the embedder wrote tables; 0: none */
};

struct rvm_boot_info {
    enum rvm_boot_protocol protocol;
    uint64_t entry;              /* PVH: the 32-bit entry; Linux: the 64-bit one */
    uint64_t start_info_gpa;     /* PVH: EBX at entry (start_info); Linux: RSI (zero page) */
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

/*
 * Puts a vCPU in info's entry state: PVH, 32-bit flat protected mode with
 * EIP=entry, EBX=start_info; Linux, long mode with the loader's page tables
 * and GDT, RIP=entry, RSI=zero page.
 */
int rvm_vcpu_set_pvh_entry(struct rvm_vcpu *vcpu, const struct rvm_boot_info *info);

/* What a bzImage's setup header says (rvm_bzimage_parse()). */
struct rvm_bzimage_info {
    uint16_t version;    /* boot protocol, e.g. 0x020f */
    uint8_t setup_sects; /* 512-byte setup sectors before the kernel (0 in the file: 4) */
    uint16_t xloadflags;
    bool relocatable;
    uint32_t alignment;    /* kernel_alignment */
    uint64_t pref_address; /* where it runs without relocating */
    uint32_t init_size;    /* bytes it needs from its load address on */
    uint32_t initrd_addr_max;
    uint32_t cmdline_size;               /* the longest command line it takes, without the NUL */
    uint64_t kernel_offset, kernel_size; /* the protected-mode kernel in the file */
};

/*
 * Checks a bzImage's setup header (boot flag 0xAA55, "HdrS", protocol 2.12
 * or later with XLF_KERNEL_64 and LOADED_HIGH, a kernel inside the file and
 * inside init_size). 0; -ENOEXEC not a bzImage or an inconsistent one;
 * -ENOTSUP a protocol without the 64-bit entry (out->version says which).
 */
int rvm_bzimage_parse(const void *image, size_t size, struct rvm_bzimage_info *out);

/*
 * Loads a bzImage into mem for the 64-bit entry: the kernel at its
 * preferred address, the zero page (its setup header, type_of_loader 0xff,
 * the command line, the initrd, the e820 map), the GDT and page tables.
 * image is only read. Errors as rvm_bzimage_parse(), and -ERANGE the kernel
 * does not fit in low RAM, -E2BIG the command line is longer than the kernel
 * takes or the initrd does not fit; a log line says which.
 */
int rvm_bzimage_load(struct rvm_mem *mem, const void *image, size_t size,
                     const struct rvm_pvh_params *params, struct rvm_boot_info *info);

/*
 * Loads a kernel by its format: a bzImage (boot flag and "HdrS") by the
 * Linux 64-bit protocol, an ELF by PVH; then records vCPU 0's entry state as
 * rvm_vm_load_pvh() does. -ENOEXEC when it is neither.
 */
int rvm_vm_load_kernel(struct rvm_vm *vm, const void *image, size_t size,
                       const struct rvm_pvh_params *params, struct rvm_boot_info *info);
int rvm_vm_load_kernel_file(struct rvm_vm *vm, const char *path,
                            const struct rvm_pvh_params *params, struct rvm_boot_info *info);

/*
 * A device as the DSDT describes it: Device (name) { _HID hid, _UID uid,
 * _CRS { its register window, its interrupt } }. Devices that attach to a
 * VM register themselves (the UART as PNP0501, pvpanic as QEMU0001, each
 * virtio-mmio transport as LNRO0005).
 */
struct rvm_acpi_device {
    char name[5]; /* four characters of [A-Z0-9_], the first not a digit */
    char hid[9];  /* e.g. "PNP0501" */
    uint32_t uid;
    bool io;       /* the window is ports (IO descriptor), else MMIO (Memory32Fixed) */
    uint64_t base; /* the window [base, base + len), below 4 GiB (ports: 64 KiB) */
    uint32_t len;
    int32_t gsi; /* its IOAPIC pin (0-23; edge, active high), or -1 for none */
};

/*
 * Writes ACPI tables at RVM_ACPI_GPA: RSDP (revision 2), XSDT, a
 * hardware-reduced FADT, a MADT (a local APIC per vCPU, APIC IDs 0..n-1,
 * and the IOAPIC) and a DSDT with devs[0..ndevs), so that a kernel finds
 * its devices without command-line words. *rsdp_gpa gets the RSDP's
 * address (for rvm_pvh_params.rsdp_gpa). 0, -EINVAL (a bad device), -E2BIG.
 */
int rvm_acpi_build(struct rvm_mem *mem, unsigned ncpus, const struct rvm_acpi_device *devs,
                   unsigned ndevs, uint64_t *rsdp_gpa);

/* rvm_acpi_build() for the VM: its vCPUs and the devices attached so far. */
int rvm_vm_write_acpi(struct rvm_vm *vm, uint64_t *rsdp_gpa);

/*
 * Writes an Intel MultiProcessor table (MP spec 1.4) at RVM_MPTABLE_GPA,
 * the last KiB of base memory, which the e820 map reserves: the floating
 * pointer, one processor entry per vCPU (APIC IDs 0..n-1), an ISA bus, the
 * IOAPIC, every one of its 24 pins as the ISA IRQ of the same number (edge,
 * active high; the PIT on 0, COM1 on 4, virtio-mmio devices from 5), and
 * ExtINT/NMI on every local APIC's LINT0/LINT1. A kernel without ACPI (or
 * booted with acpi=off) finds its CPUs and interrupt routing there; a
 * kernel with MP-table parsing and ACPI finds the pointer at once instead of
 * scanning the BIOS area for it, and then uses the MADT. 0, -EINVAL, -E2BIG.
 */
int rvm_mptable_build(struct rvm_mem *mem, unsigned ncpus, uint64_t *gpa);
int rvm_vm_write_mptable(struct rvm_vm *vm);

#endif
