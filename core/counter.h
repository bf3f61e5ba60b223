/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_CORE_COUNTER_H
#define RINGVM_CORE_COUNTER_H

#include <stdint.h>

/*
 * A statistics counter with one writer (a vCPU or worker thread) and racy
 * readers: a relaxed load and store, no locked instruction on the hot path.
 * Readers use __atomic_load_n(c, __ATOMIC_RELAXED).
 */
static inline void counter_bump(uint64_t *c)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

#endif
