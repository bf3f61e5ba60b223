/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

static struct bus_table *table_alloc(size_t n)
{
    struct bus_table *t = malloc(sizeof(*t) + n * sizeof(t->r[0]));

    if (t)
        t->n = n;
    return t;
}

int bus_init(struct rvm_bus *bus, uint64_t limit)
{
    struct bus_table *t = table_alloc(0);

    if (!t)
        return -ENOMEM;
    bus->limit = limit;
    __atomic_store_n(&bus->table, t, __ATOMIC_RELEASE);
    return -pthread_mutex_init(&bus->lock, NULL);
}

void bus_fini(struct rvm_bus *bus)
{
    free(bus->table);
    bus->table = NULL;
    pthread_mutex_destroy(&bus->lock);
}

int bus_insert(struct rvm_bus *bus, uint64_t base, uint64_t len, const struct rvm_io_ops *ops,
               void *opaque, struct bus_table **old)
{
    const struct bus_table *cur;
    struct bus_table *t;
    size_t pos;
    int r = 0;

    if (len == 0 || base + len < base || (bus->limit && base + len > bus->limit))
        return -EINVAL;
    pthread_mutex_lock(&bus->lock);
    cur = bus->table;
    /* First range that ends after base: the only one the new range can hit first. */
    for (pos = 0; pos < cur->n && cur->r[pos].base + cur->r[pos].len <= base; pos++)
        ;
    if (pos < cur->n && cur->r[pos].base < base + len) {
        r = -EEXIST;
        goto out;
    }
    t = table_alloc(cur->n + 1);
    if (!t) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(t->r, cur->r, pos * sizeof(t->r[0]));
    t->r[pos] = (struct bus_range){.base = base, .len = len, .opaque = opaque};
    if (ops)
        t->r[pos].ops = *ops;
    memcpy(&t->r[pos + 1], &cur->r[pos], (cur->n - pos) * sizeof(t->r[0]));
    *old = (struct bus_table *)cur;
    __atomic_store_n(&bus->table, t, __ATOMIC_SEQ_CST); /* see vm_synchronize() */
out:
    pthread_mutex_unlock(&bus->lock);
    return r;
}

int bus_remove(struct rvm_bus *bus, uint64_t base, struct bus_table **old)
{
    const struct bus_table *cur;
    struct bus_table *t;
    size_t pos;
    int r = 0;

    pthread_mutex_lock(&bus->lock);
    cur = bus->table;
    for (pos = 0; pos < cur->n && cur->r[pos].base != base; pos++)
        ;
    if (pos == cur->n) {
        r = -ENOENT;
        goto out;
    }
    t = table_alloc(cur->n - 1);
    if (!t) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(t->r, cur->r, pos * sizeof(t->r[0]));
    memcpy(&t->r[pos], &cur->r[pos + 1], (cur->n - pos - 1) * sizeof(t->r[0]));
    *old = (struct bus_table *)cur;
    __atomic_store_n(&bus->table, t, __ATOMIC_SEQ_CST); /* see vm_synchronize() */
out:
    pthread_mutex_unlock(&bus->lock);
    return r;
}
