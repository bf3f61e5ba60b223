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

#endif
