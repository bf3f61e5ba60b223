/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_MEM_INTERNAL_H
#define RINGVM_MEM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <ringvm/mem.h>

/* The hypervisor handle the memory logs through (may be NULL). */
struct rvm_hv *mem_hv(const struct rvm_mem *mem);

/*
 * The VMM-side dirty log: pages the VMM itself wrote into guest memory
 * (device completions, used rings), which KVM's dirty tracking cannot see.
 * Marking is lock-free and idempotent; a range outside RAM is ignored.
 */
void mem_mark_dirty(struct rvm_mem *mem, uint64_t gpa, uint64_t len);

/* Whether the 4 KiB page holding gpa is marked; and clearing every mark. */
bool mem_dirty_test(const struct rvm_mem *mem, uint64_t gpa);
void mem_dirty_clear(struct rvm_mem *mem);

/*
 * Page-indexed views for dirty tracking. A "map page" is a 4 KiB page of the
 * one host mapping all regions live in, so one bitmap covers every region.
 */
uint64_t mem_map_pages(const struct rvm_mem *mem);
/* The map page of region i's first byte. */
uint64_t mem_region_first_page(const struct rvm_mem *mem, unsigned i);
/* ORs the VMM-side log into bits (mem_map_pages() bits) and clears it. */
void mem_dirty_take(struct rvm_mem *mem, unsigned long *bits);

#endif
