/* SPDX-License-Identifier: MIT */
/*
 * Guest physical memory: one or two host mappings laid out the x86 way.
 * RAM starts at guest-physical 0; above RVM_MEM_LOW_LIMIT the rest moves to
 * 4 GiB, leaving the 32-bit hole for devices. Every access is checked against
 * the regions with overflow-safe arithmetic before memory is touched.
 */
#ifndef RINGVM_MEM_H
#define RINGVM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rvm_mem;
struct rvm_hv;

/* RAM above this guest-physical address is placed at 4 GiB instead. */
#define RVM_MEM_LOW_LIMIT   0xc0000000ULL
#define RVM_MEM_HIGH_BASE   0x100000000ULL
#define RVM_MEM_MAX_REGIONS 2
#define RVM_MEM_MAX_SIZE    (1ULL << 46) /* 64 TiB */

enum rvm_mem_backing {
    RVM_MEM_ANON = 0, /* anonymous 4 KiB pages */
    RVM_MEM_THP,      /* anonymous, madvise(MADV_HUGEPAGE) */
    RVM_MEM_HUGE_2M,  /* hugetlbfs 2 MiB pages (libhugetlbfs, else memfd) */
    RVM_MEM_HUGE_1G,  /* hugetlbfs 1 GiB pages */
};

struct rvm_mem_config {
    uint64_t size; /* bytes; a multiple of the backing's page size */
    enum rvm_mem_backing backing;
    int numa_node; /* -1: no binding */
    bool prefault; /* fault every page in at creation */
};

struct rvm_mem_region {
    uint64_t gpa;  /* guest-physical start */
    uint64_t size; /* bytes */
    void *hva;     /* host mapping */
};

/*
 * Allocates guest memory. hv may be NULL (unit tests, tools); it is used only
 * for logging and the NUMA topology. Hugepage backings reserve their pages
 * now: a pool that is short fails here with -ENOMEM and a log line naming
 * the shortfall, never with SIGBUS later (with a NUMA node, the pages are
 * also faulted in now, on that node). -EINVAL: size is 0, above
 * RVM_MEM_MAX_SIZE or not a multiple of the page size; -ENODEV: NUMA node
 * requested but not present.
 */
int rvm_mem_create(struct rvm_hv *hv, const struct rvm_mem_config *config, struct rvm_mem **out);

/* Unmaps and frees. The memory must no longer be registered with a VM. */
void rvm_mem_destroy(struct rvm_mem *mem);

/* Total RAM in bytes (the sum of the regions). */
uint64_t rvm_mem_size(const struct rvm_mem *mem);

/* Backing page size in bytes. */
uint64_t rvm_mem_page_size(const struct rvm_mem *mem);

/* The number of regions (1 or 2) and region i (0-based). NULL if i is out of range. */
unsigned rvm_mem_region_count(const struct rvm_mem *mem);
const struct rvm_mem_region *rvm_mem_region(const struct rvm_mem *mem, unsigned i);

/*
 * Copies len bytes between guest-physical gpa and buf. The whole range must
 * lie inside one region: -EFAULT otherwise (including on arithmetic
 * overflow); nothing is copied on failure.
 */
int rvm_mem_read(const struct rvm_mem *mem, uint64_t gpa, void *buf, size_t len);
int rvm_mem_write(struct rvm_mem *mem, uint64_t gpa, const void *buf, size_t len);

/*
 * The host address of [gpa, gpa + len) if the whole range lies inside one
 * region, else NULL. Valid until rvm_mem_destroy().
 */
void *rvm_mem_hva(const struct rvm_mem *mem, uint64_t gpa, uint64_t len);

/* Host bytes of guest memory resident right now (mincore). -errno on failure. */
int64_t rvm_mem_resident_bytes(const struct rvm_mem *mem);

#endif
