/* SPDX-License-Identifier: MIT */
/* Dirty tracking's hooks into VM and vCPU life (the API is ringvm/dirty.h). */
#ifndef RINGVM_CORE_DIRTY_H
#define RINGVM_CORE_DIRTY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

struct rvm_vm;
struct rvm_vcpu;

/* A vCPU's ring as the VMM sees it. */
struct vcpu_dirty_ring {
    struct kvm_dirty_gfn *gfns; /* mmap of the vCPU fd; NULL without a ring */
    uint32_t fetch;             /* next entry to harvest (free-running) */
    uint64_t harvested;         /* entries taken from this ring */
    uint64_t at_last_full;      /* harvested at its previous RING_FULL exit */
    uint32_t stalls;            /* consecutive RING_FULL exits without progress */
    uint32_t resyncs;           /* resynchronisation steps since the last progress */
};

/*
 * Who takes dirty pages: each has its own view, so that one's take never
 * hides pages from the other (an embedder's collection between two
 * snapshots must not shrink the next diff, nor a snapshot the embedder's).
 */
enum dirty_consumer { DIRTY_EMBEDDER, DIRTY_SNAPSHOT, DIRTY_CONSUMERS };
#define DIRTY_ALL ((1u << DIRTY_CONSUMERS) - 1)

struct vm_dirty {
    pthread_mutex_t lock; /* harvests, collections, enable/disable */
    int mode;             /* enum rvm_dirty_mode while on, RVM_DIRTY_OFF otherwise; __atomic */
    uint32_t ring_entries;
    bool manual_protect;     /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled */
    bool broken;             /* a ring stopped making progress */
    unsigned broken_pending; /* per consumer (bit): entries were lost, its next take is all RAM */
    unsigned long *acc;      /* harvested, not yet handed to the views: one bit per map page */
    unsigned long *view[DIRTY_CONSUMERS]; /* per consumer: harvested, not yet taken by it */
    uint64_t words;                       /* of acc and each view */
    uint64_t harvested, full_exits;
    int reap_us;  /* reaper period; < 0: no reaper */
    int stop_efd; /* wakes the reaper to stop */
    pthread_t reaper;
    bool reaper_running;
};

/* At VM creation, before any vCPU: sets up the ring (config) and manual protection. */
int vm_dirty_init(struct rvm_vm *vm);
/* At VM destruction, before the vCPUs go. */
void vm_dirty_fini(struct rvm_vm *vm);

/* At vCPU creation / destruction: maps and unmaps its ring. */
int vcpu_dirty_init(struct rvm_vcpu *v);
void vcpu_dirty_fini(struct rvm_vcpu *v);

/*
 * The pages dirtied since who's last take, ORed into bits (vm_dirty_words()
 * words, one bit per map page), and a new interval begun for who only.
 * -EINVAL when off.
 */
int vm_dirty_take(struct rvm_vm *vm, enum dirty_consumer who, unsigned long *bits,
                  bool *overflowed);
/* Puts taken bits back into who's view (what a failed consumer did not persist). */
void vm_dirty_put_back(struct rvm_vm *vm, enum dirty_consumer who, const unsigned long *bits);
/* Frees the bitmaps (at destruction, or a failed creation). */
void vm_dirty_free(struct vm_dirty *d);
uint64_t vm_dirty_words(const struct rvm_vm *vm);
/* bits as guest-physical runs to fn, region by region; fn's nonzero stops the walk. */
int vm_dirty_walk(struct rvm_vm *vm, const unsigned long *bits,
                  int (*fn)(void *opaque, uint64_t gpa, uint64_t len), void *opaque,
                  uint64_t *pages, uint64_t *ranges);

/*
 * A KVM_EXIT_DIRTY_RING_FULL on v's thread: harvests and resets. 0 to run
 * again; 1 when the ring is broken and the VM was ended.
 */
int vcpu_dirty_ring_full(struct rvm_vcpu *v);

#endif
