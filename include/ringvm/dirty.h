/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracking: which 4 KiB pages of guest RAM were written since
 * tracking was enabled or last collected, by the guest (through KVM) or by
 * the VMM's own devices (DMA-like writes KVM cannot see).
 *
 * Two mechanisms, chosen when the VM is created:
 *  - the KVM dirty ring (rvm_vm_config.dirty_ring_entries > 0): one ring per
 *    vCPU, mapped into the VMM; a reaper thread harvests it while the vCPUs
 *    run, and a vCPU whose ring fills up harvests it itself. Costs the rings'
 *    memory (16 bytes an entry, per vCPU) from creation on;
 *  - the dirty bitmap (KVM_GET_DIRTY_LOG, with KVM_CLEAR_DIRTY_LOG when the
 *    host has manual protection): read at each collection.
 * A ring that stops making progress (a full ring that harvesting does not
 * drain: software-nested hosts can overflow it) is not waited on: the
 * next collection reports all of RAM dirty and the VM ends with
 * RVM_END_ERROR, value -ENOBUFS, since KVM cannot run that vCPU again.
 */
#ifndef RINGVM_DIRTY_H
#define RINGVM_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

struct rvm_vm;

enum rvm_dirty_mode {
    RVM_DIRTY_OFF = 0,
    RVM_DIRTY_RING,
    RVM_DIRTY_BITMAP,
};

/*
 * Starts tracking (memory slots logged; the VMM-side log cleared). Any time
 * after rvm_vm_create(), also while vCPUs run. -EALREADY when on.
 */
int rvm_vm_dirty_enable(struct rvm_vm *vm);

/* Stops tracking and forgets what was not collected. -EINVAL when off. */
int rvm_vm_dirty_disable(struct rvm_vm *vm);

enum rvm_dirty_mode rvm_vm_dirty_mode(const struct rvm_vm *vm);

/* Called once per run of dirty pages, in ascending guest-physical order. */
typedef int (*rvm_dirty_range_fn)(void *opaque, uint64_t gpa, uint64_t len);

struct rvm_dirty_stats {
    uint64_t pages;           /* dirty pages in this collection */
    uint64_t ranges;          /* runs handed to fn */
    uint64_t harvested;       /* ring entries taken since tracking began */
    uint64_t ring_full_exits; /* KVM_EXIT_DIRTY_RING_FULL seen since tracking began */
    bool overflowed;          /* the ring broke: this collection is all of RAM */
};

/*
 * Collects the pages written since enable or the previous collection,
 * coalesced into ranges, and starts a new interval. Ring entries are
 * harvested and KVM_RESET_DIRTY_RINGS (or KVM_CLEAR_DIRTY_LOG) done before
 * fn sees a range, so a write after that is in the next interval, never
 * lost. When fn returns nonzero the walk stops, the whole collection is
 * put back (the next one reports it again) and that value is returned.
 * stats may be NULL. -EINVAL when tracking is off.
 */
int rvm_vm_dirty_collect(struct rvm_vm *vm, rvm_dirty_range_fn fn, void *opaque,
                         struct rvm_dirty_stats *stats);

#endif
