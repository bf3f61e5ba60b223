/* SPDX-License-Identifier: MIT */
/*
 * An I/O bus: an immutable, sorted array of non-overlapping ranges. Readers
 * (vCPU threads) load the current table with one atomic load and binary
 * search it without locks. Writers build a new table under the bus's mutex
 * and publish it with an atomic store; the old table is handed back to the
 * caller, who frees it after a grace period (every vCPU past a quiescent
 * point, see vm_synchronize()).
 */
#ifndef RINGVM_CORE_BUS_H
#define RINGVM_CORE_BUS_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ringvm/vm.h>

struct bus_range {
    uint64_t base;
    uint64_t len;
    struct rvm_io_ops ops; /* copied at insert: the caller's struct may go away */
    void *opaque;
};

struct bus_table {
    size_t n;
    struct bus_table *next_retired; /* on the VM's list of tables awaiting a grace period */
    struct bus_range r[];
};

struct rvm_bus {
    struct bus_table *table; /* accessed with __atomic loads/stores only */
    uint64_t limit;          /* highest valid address + 1; 0 means 2^64 */
    pthread_mutex_t lock;    /* serialises writers */
};

/* Initialises an empty bus accepting addresses below limit (0: no limit). */
int bus_init(struct rvm_bus *bus, uint64_t limit);

/* Frees the current table. No reader may be active. */
void bus_fini(struct rvm_bus *bus);

/*
 * Publishes a table with [base, base+len) added. On success *old receives the
 * previous table, to be freed by the caller after a grace period.
 * -EINVAL: len 0, overflow, or past limit; -EEXIST: overlap; -ENOMEM.
 */
int bus_insert(struct rvm_bus *bus, uint64_t base, uint64_t len, const struct rvm_io_ops *ops,
               void *opaque, struct bus_table **old);

/* Publishes a table without the range starting at base. -ENOENT if none. */
int bus_remove(struct rvm_bus *bus, uint64_t base, struct bus_table **old);

/*
 * The current table. Valid until the caller's next quiescent point. Seq_cst
 * (a plain load on x86) to pair with the writer's grace period.
 */
static inline const struct bus_table *bus_current(const struct rvm_bus *bus)
{
    return __atomic_load_n(&bus->table, __ATOMIC_SEQ_CST);
}

/* The range containing addr, or NULL. O(log n). */
static inline const struct bus_range *bus_lookup(const struct bus_table *t, uint64_t addr)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &t->r[mid];

        if (addr < r->base)
            hi = mid;
        else if (addr - r->base >= r->len)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

/* The range holding all `size` bytes at addr, or NULL (also when the access straddles its end). */
static inline const struct bus_range *bus_find(const struct bus_table *t, uint64_t addr,
                                               uint32_t size)
{
    const struct bus_range *r = bus_lookup(t, addr);

    if (r && size <= r->len - (addr - r->base))
        return r;
    return NULL;
}

/*
 * One access through range r (which may be NULL: nothing claims addr). A
 * read fills *val, all ones when unclaimed, handler-less or failed. Returns
 * 0, -ENOENT when no range claimed the access, -EIO when its handler failed.
 */
static inline int bus_range_access(const struct bus_range *r, uint64_t addr, uint32_t size,
                                   bool write, uint64_t *val)
{
    int rc = 0;

    if (!write)
        *val = ~0ULL;
    if (!r)
        return -ENOENT;
    if (write) {
        if (r->ops.write)
            rc = r->ops.write(r->opaque, addr - r->base, size, *val);
    } else if (r->ops.read && (rc = r->ops.read(r->opaque, addr - r->base, size, val)) < 0) {
        *val = ~0ULL;
    }
    return rc < 0 ? -EIO : 0;
}

#endif
