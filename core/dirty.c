/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracking: the KVM dirty ring (harvested by a reaper thread while
 * the vCPUs run, and by a vCPU whose ring is full), or the KVM dirty bitmap,
 * merged with the VMM-side log of device writes. See ringvm/dirty.h.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <ringvm/dirty.h>

#include "../mem/mem_internal.h"
#include "dirty.h"
#include "log.h"
#include "vm_internal.h"

#define PAGE         4096ULL
#define DEFAULT_REAP 1000 /* us */

static inline void set_bit64(unsigned long *bits, uint64_t i)
{
    bits[i / 64] |= 1UL << (i % 64);
}

static inline bool test_bit64(const unsigned long *bits, uint64_t i)
{
    return bits[i / 64] & (1UL << (i % 64));
}

int vm_dirty_init(struct rvm_vm *vm)
{
    struct vm_dirty *d = &vm->dirty;
    const struct rvm_hv_caps *c = &vm->hv->caps;
    uint32_t n = vm->config.dirty_ring_entries;

    pthread_mutex_init(&d->lock, NULL);
    d->stop_efd = -1;
    d->reap_us = vm->config.dirty_reap_us == 0 ? DEFAULT_REAP : vm->config.dirty_reap_us;
    d->words = (mem_map_pages(vm->mem) + 63) / 64;
    d->acc = calloc(d->words ? d->words : 1, sizeof(unsigned long));
    for (int k = 0; k < DIRTY_CONSUMERS; k++)
        d->view[k] = calloc(d->words ? d->words : 1, sizeof(unsigned long));
    if (!d->acc || !d->view[DIRTY_EMBEDDER] || !d->view[DIRTY_SNAPSHOT])
        return -ENOMEM;
    if (n) {
        struct kvm_enable_cap cap = {
            .cap = c->dirty_ring_acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING,
            .args = {(uint64_t)n * sizeof(struct kvm_dirty_gfn)},
        };

        if (!c->dirty_ring) {
            rvm_err(vm->hv, "dirty ring asked for, but this KVM has none");
            return -EOPNOTSUPP;
        }
        if ((n & (n - 1)) || n < 1024 || cap.args[0] > c->dirty_ring_max_bytes) {
            rvm_err(vm->hv, "dirty ring of %u entries: a power of two from 1024 to %u", n,
                    c->dirty_ring_max_bytes / (uint32_t)sizeof(struct kvm_dirty_gfn));
            return -EINVAL;
        }
        if (ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0) {
            int e = -errno;
            rvm_err(vm->hv, "enabling the dirty ring: %s", strerror(-e));
            return e;
        }
        d->ring_entries = n;
    } else if (c->manual_dirty_log_protect) {
        struct kvm_enable_cap cap = {
            .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
            .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE},
        };
        d->manual_protect = ioctl(vm->fd, KVM_ENABLE_CAP, &cap) == 0;
    }
    return 0;
}

int vcpu_dirty_init(struct rvm_vcpu *v)
{
    uint32_t n = v->vm->dirty.ring_entries;
    void *p;

    if (!n)
        return 0;
    p = mmap(NULL, (size_t)n * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE, MAP_SHARED,
             v->fd, KVM_DIRTY_LOG_PAGE_OFFSET * sysconf(_SC_PAGESIZE));
    if (p == MAP_FAILED) {
        int e = -errno;
        rvm_err(v->vm->hv, "vCPU %u: mapping the dirty ring: %s", v->id, strerror(-e));
        return e;
    }
    v->dring.gfns = p;
    return 0;
}

void vcpu_dirty_fini(struct rvm_vcpu *v)
{
    if (v->dring.gfns)
        munmap(v->dring.gfns, (size_t)v->vm->dirty.ring_entries * sizeof(struct kvm_dirty_gfn));
    v->dring.gfns = NULL;
}

/* One ring entry into acc, if it names a page of ours (the kernel's word, but checked). */
static void mark_gfn(struct rvm_vm *vm, uint32_t slot, uint64_t offset)
{
    const struct rvm_mem_region *r;

    if (slot >> 16 || !(r = rvm_mem_region(vm->mem, slot & 0xffff)) || offset >= r->size / PAGE)
        return;
    set_bit64(vm->dirty.acc, mem_region_first_page(vm->mem, slot & 0xffff) + offset);
}

/* Takes the entries KVM has published in v's ring, in order; their count. Under lock. */
static uint32_t harvest_ring(struct rvm_vm *vm, struct rvm_vcpu *v)
{
    struct vcpu_dirty_ring *dr = &v->dring;
    uint32_t mask = vm->dirty.ring_entries - 1, n = 0;

    if (!dr->gfns)
        return 0;
    for (;;) {
        struct kvm_dirty_gfn *e = &dr->gfns[dr->fetch & mask];

        if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
            break;
        mark_gfn(vm, e->slot, e->offset);
        __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
        dr->fetch++;
        n++;
    }
    dr->harvested += n;
    return n;
}

/* Every vCPU's ring, then the kernel's reset (re-protects those pages). Under lock. */
static uint64_t harvest_all(struct rvm_vm *vm)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = __atomic_load_n(&vm->vcpus[i], __ATOMIC_ACQUIRE);

        if (v)
            n += harvest_ring(vm, v);
    }
    if (n)
        ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0);
    vm->dirty.harvested += n;
    return n;
}

static void *reaper_main(void *arg)
{
    struct rvm_vm *vm = arg;
    struct vm_dirty *d = &vm->dirty;
    struct pollfd pfd = {.fd = d->stop_efd, .events = POLLIN};
    struct timespec ts = {.tv_sec = d->reap_us / 1000000, .tv_nsec = d->reap_us % 1000000 * 1000L};

    pthread_setname_np(pthread_self(), "rvm-dirty");
    for (;;) {
        int r = ppoll(&pfd, 1, &ts, NULL);

        if (r > 0 || (r < 0 && errno != EINTR))
            break; /* asked to stop */
        pthread_mutex_lock(&d->lock);
        harvest_all(vm);
        pthread_mutex_unlock(&d->lock);
    }
    return NULL;
}

static int reaper_start(struct rvm_vm *vm)
{
    struct vm_dirty *d = &vm->dirty;
    int r;

    d->stop_efd = eventfd(0, EFD_CLOEXEC);
    if (d->stop_efd < 0)
        return -errno;
    if ((r = vm_io_thread_create(vm, &d->reaper, reaper_main, vm)) < 0) {
        close(d->stop_efd);
        d->stop_efd = -1;
        return r;
    }
    d->reaper_running = true;
    return 0;
}

static void reaper_stop(struct rvm_vm *vm)
{
    struct vm_dirty *d = &vm->dirty;
    uint64_t one = 1;

    if (!d->reaper_running)
        return;
    if (write(d->stop_efd, &one, sizeof(one)) != sizeof(one))
        rvm_err(vm->hv, "cannot wake the dirty reaper");
    pthread_join(d->reaper, NULL);
    close(d->stop_efd);
    d->stop_efd = -1;
    d->reaper_running = false;
}

void vm_dirty_free(struct vm_dirty *d)
{
    free(d->acc);
    d->acc = NULL;
    for (int c = 0; c < DIRTY_CONSUMERS; c++) {
        free(d->view[c]);
        d->view[c] = NULL;
    }
}

/* Nothing harvested, nothing pending for anyone (under lock). */
static void clear_all(struct vm_dirty *d)
{
    memset(d->acc, 0, d->words * sizeof(unsigned long));
    for (int c = 0; c < DIRTY_CONSUMERS; c++)
        memset(d->view[c], 0, d->words * sizeof(unsigned long));
    d->broken_pending = 0;
}

void vm_dirty_fini(struct rvm_vm *vm)
{
    reaper_stop(vm);
    vm_dirty_free(&vm->dirty);
    pthread_mutex_destroy(&vm->dirty.lock);
}

int rvm_vm_dirty_enable(struct rvm_vm *vm)
{
    struct vm_dirty *d;
    int r;

    if (!vm)
        return -EINVAL;
    d = &vm->dirty;
    pthread_mutex_lock(&d->lock);
    if (__atomic_load_n(&d->mode, __ATOMIC_RELAXED) != RVM_DIRTY_OFF) {
        pthread_mutex_unlock(&d->lock);
        return -EALREADY;
    }
    if ((r = vm_register_memory(vm, KVM_MEM_LOG_DIRTY_PAGES)) < 0) {
        pthread_mutex_unlock(&d->lock);
        return r;
    }
    clear_all(d);
    mem_dirty_clear(vm->mem);
    __atomic_store_n(&d->mode, d->ring_entries ? RVM_DIRTY_RING : RVM_DIRTY_BITMAP,
                     __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->lock);
    if (d->ring_entries && d->reap_us > 0 && (r = reaper_start(vm)) < 0) {
        rvm_err(vm->hv, "cannot start the dirty reaper: %s", strerror(-r));
        rvm_vm_dirty_disable(vm);
        return r;
    }
    return 0;
}

int rvm_vm_dirty_disable(struct rvm_vm *vm)
{
    struct vm_dirty *d;

    if (!vm)
        return -EINVAL;
    d = &vm->dirty;
    if (__atomic_load_n(&d->mode, __ATOMIC_ACQUIRE) == RVM_DIRTY_OFF)
        return -EINVAL;
    reaper_stop(vm);
    pthread_mutex_lock(&d->lock);
    __atomic_store_n(&d->mode, RVM_DIRTY_OFF, __ATOMIC_RELEASE);
    vm->snap.have_parent = false; /* writes from now on go unseen: no diff can follow */
    vm_register_memory(vm, 0);
    harvest_all(vm); /* what was in flight: recycled, not reported */
    clear_all(d);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

enum rvm_dirty_mode rvm_vm_dirty_mode(const struct rvm_vm *vm)
{
    return vm ? (enum rvm_dirty_mode)__atomic_load_n(&vm->dirty.mode, __ATOMIC_ACQUIRE)
              : RVM_DIRTY_OFF;
}

/* KVM's bitmap of each slot into acc, re-protecting what it reports. Under lock. */
static int bitmap_harvest(struct rvm_vm *vm)
{
    struct vm_dirty *d = &vm->dirty;

    for (unsigned i = 0; i < rvm_mem_region_count(vm->mem); i++) {
        const struct rvm_mem_region *r = rvm_mem_region(vm->mem, i);
        uint64_t pages = r->size / PAGE, first = mem_region_first_page(vm->mem, i);
        unsigned long *bm = calloc((pages + 63) / 64, sizeof(unsigned long));
        struct kvm_dirty_log log = {.slot = i, .dirty_bitmap = bm};
        int e = 0;

        if (!bm)
            return -ENOMEM;
        if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) < 0)
            e = -errno;
        if (e == 0 && d->manual_protect) {
            struct kvm_clear_dirty_log clr = {
                .slot = i, .num_pages = (uint32_t)pages, .first_page = 0, .dirty_bitmap = bm};
            if (pages > UINT32_MAX || ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
                e = pages > UINT32_MAX ? -E2BIG : -errno;
        }
        if (e < 0) {
            rvm_err(vm->hv, "reading the dirty log of slot %u: %s", i, strerror(-e));
            free(bm);
            return e;
        }
        for (uint64_t w = 0; w < (pages + 63) / 64; w++)
            for (unsigned long b = bm[w]; b; b &= b - 1)
                set_bit64(d->acc, first + w * 64 + (uint64_t)__builtin_ctzl(b));
        free(bm);
    }
    return 0;
}

/* All of RAM's pages set in bits (entries were lost). */
static void set_all(struct rvm_vm *vm, unsigned long *bits)
{
    for (unsigned i = 0; i < rvm_mem_region_count(vm->mem); i++) {
        uint64_t first = mem_region_first_page(vm->mem, i);
        for (uint64_t p = 0; p < rvm_mem_region(vm->mem, i)->size / PAGE; p++)
            set_bit64(bits, first + p);
    }
}

int vm_dirty_take(struct rvm_vm *vm, enum dirty_consumer who, unsigned long *bits, bool *overflowed)
{
    struct vm_dirty *d = &vm->dirty;
    int mode, r = 0;

    pthread_mutex_lock(&d->lock);
    mode = __atomic_load_n(&d->mode, __ATOMIC_RELAXED);
    if (mode == RVM_DIRTY_OFF)
        r = -EINVAL;
    else if (mode == RVM_DIRTY_RING)
        harvest_all(vm);
    else
        r = bitmap_harvest(vm);
    if (r == 0) {
        mem_dirty_take(vm->mem, d->acc);
        /* What was harvested is every consumer's; who's own view is what it takes. */
        for (int c = 0; c < DIRTY_CONSUMERS; c++)
            for (uint64_t w = 0; w < d->words; w++)
                d->view[c][w] |= d->acc[w];
        memset(d->acc, 0, d->words * sizeof(unsigned long));
        *overflowed = d->broken_pending & (1u << who);
        if (*overflowed)
            set_all(vm, d->view[who]);
        d->broken_pending &= ~(1u << who);
        for (uint64_t w = 0; w < d->words; w++)
            bits[w] |= d->view[who][w];
        memset(d->view[who], 0, d->words * sizeof(unsigned long));
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

void vm_dirty_put_back(struct rvm_vm *vm, enum dirty_consumer who, const unsigned long *bits)
{
    struct vm_dirty *d = &vm->dirty;

    pthread_mutex_lock(&d->lock);
    for (uint64_t w = 0; w < d->words; w++)
        d->view[who][w] |= bits[w];
    pthread_mutex_unlock(&d->lock);
}

uint64_t vm_dirty_words(const struct rvm_vm *vm)
{
    return vm->dirty.words;
}

int vm_dirty_walk(struct rvm_vm *vm, const unsigned long *bits, rvm_dirty_range_fn fn, void *opaque,
                  uint64_t *pages, uint64_t *ranges)
{
    *pages = *ranges = 0;
    for (unsigned i = 0; i < rvm_mem_region_count(vm->mem); i++) {
        const struct rvm_mem_region *r = rvm_mem_region(vm->mem, i);
        uint64_t first = mem_region_first_page(vm->mem, i), n = r->size / PAGE;

        for (uint64_t p = 0; p < n;) {
            if (!bits[(first + p) / 64] && (first + p) % 64 == 0) {
                p += 64; /* a clear word at once */
                continue;
            }
            if (!test_bit64(bits, first + p)) {
                p++;
                continue;
            }
            uint64_t q = p + 1;
            while (q < n && test_bit64(bits, first + q))
                q++;
            *pages += q - p;
            (*ranges)++;
            int e = fn(opaque, r->gpa + p * PAGE, (q - p) * PAGE);
            if (e)
                return e;
            p = q;
        }
    }
    return 0;
}

int rvm_vm_dirty_collect(struct rvm_vm *vm, rvm_dirty_range_fn fn, void *opaque,
                         struct rvm_dirty_stats *stats)
{
    unsigned long *bits;
    uint64_t pages, ranges;
    bool overflowed = false;
    int r;

    if (!vm || !fn)
        return -EINVAL;
    bits = calloc(vm->dirty.words ? vm->dirty.words : 1, sizeof(unsigned long));
    if (!bits)
        return -ENOMEM;
    if ((r = vm_dirty_take(vm, DIRTY_EMBEDDER, bits, &overflowed)) < 0) {
        free(bits);
        return r;
    }
    r = vm_dirty_walk(vm, bits, fn, opaque, &pages, &ranges);
    if (r)
        vm_dirty_put_back(vm, DIRTY_EMBEDDER, bits);
    if (stats) {
        pthread_mutex_lock(&vm->dirty.lock);
        stats->harvested = vm->dirty.harvested;
        stats->ring_full_exits = vm->dirty.full_exits;
        pthread_mutex_unlock(&vm->dirty.lock);
        stats->pages = pages;
        stats->ranges = ranges;
        stats->overflowed = overflowed;
    }
    free(bits);
    return r;
}

/*
 * A ring KVM wrote past its end (emulated ring-0 code can overshoot the soft
 * limit by more than the reserve). KVM then reset entries whose slots had
 * been reused, and the positions from our fetch index (which is KVM's reset
 * index) run: holes (lost entries, invalid), then the entries KVM pushed
 * since (dirty), then free slots. Neither we nor KVM's reset can pass a
 * hole, so nothing drains and the vCPU gets full-ring exits for ever. We
 * mark the holes harvested, which KVM's reset accepts (re-protecting the
 * stale page an invalid entry still names is harmless), and harvest the
 * dirty run. Where no dirty entry shows where the holes end, only a safe
 * step of holes is marked (at a full exit there are at least the soft
 * limit's worth); the next full exit continues. The lost entries make the
 * next collection all of RAM. Under lock; returns the entries consumed.
 */
static uint32_t resync_ring(struct rvm_vm *vm, struct rvm_vcpu *v)
{
    struct vcpu_dirty_ring *dr = &v->dring;
    uint32_t size = vm->dirty.ring_entries, mask = size - 1, first = size, holes, n;

    for (uint32_t j = 0; j < size; j++)
        if (__atomic_load_n(&dr->gfns[(dr->fetch + j) & mask].flags, __ATOMIC_ACQUIRE) &
            KVM_DIRTY_GFN_F_DIRTY) {
            first = j;
            break;
        }
    holes = first < size ? first : size / 16;
    for (uint32_t j = 0; j < holes; j++)
        __atomic_store_n(&dr->gfns[(dr->fetch + j) & mask].flags, KVM_DIRTY_GFN_F_RESET,
                         __ATOMIC_RELEASE);
    dr->fetch += holes;
    n = harvest_ring(vm, v); /* the dirty run, if any */
    vm->dirty.harvested += n;
    return holes + n;
}

int vcpu_dirty_ring_full(struct rvm_vcpu *v)
{
    struct rvm_vm *vm = v->vm;
    struct vm_dirty *d = &vm->dirty;
    struct vcpu_dirty_ring *dr = &v->dring;
    bool broken = false;

    pthread_mutex_lock(&d->lock);
    d->full_exits++;
    harvest_all(vm);
    /* Progress: anything taken from this ring (by us or the reaper) since its last full exit. */
    if (dr->harvested != dr->at_last_full) {
        dr->stalls = 0;
        dr->resyncs = 0;
    } else if (++dr->stalls >= 2) {
        /* At most a ring's worth of steps; a ring that still does not drain is given up. */
        if (dr->resyncs++ <= 16 + 2 && resync_ring(vm, v) > 0) {
            ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0);
            if (!d->broken_pending)
                rvm_warn(vm->hv, "vCPU %u: dirty ring overran; resynchronising, all RAM dirty",
                         v->id);
            d->broken_pending = DIRTY_ALL; /* entries were lost: report everything once */
        } else {
            broken = d->broken = true;
            d->broken_pending = DIRTY_ALL;
        }
    }
    dr->at_last_full = dr->harvested;
    pthread_mutex_unlock(&d->lock);
    if (broken) {
        rvm_err(vm->hv,
                "vCPU %u: dirty ring full and not draining after it overran; "
                "KVM cannot run this vCPU again: ending the VM",
                v->id);
        vm_request_end(vm, RVM_END_ERROR, -ENOBUFS, v->id);
        return 1;
    }
    return 0;
}
