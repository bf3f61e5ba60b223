/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_MEM_INTERNAL_H
#define RINGVM_MEM_INTERNAL_H

#include <ringvm/mem.h>

/* The hypervisor handle the memory logs through (may be NULL). */
struct rvm_hv *mem_hv(const struct rvm_mem *mem);

#endif
