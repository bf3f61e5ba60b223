/* SPDX-License-Identifier: MIT */
/*
 * A VM from a snapshot chain: the chain opened and checked, memory read
 * (eager) or mapped (lazy), then vCPUs, chips and devices re-created from
 * the state. See ringvm/snapshot.h and docs/snapshots.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <ringvm/dirty.h>
#include <ringvm/snapshot.h>

#include "../arch/x86_64/arch.h"
#include "../mem/mem_internal.h"
#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

static double now_s(void)
{
    return (double)vm_now_ns() * 1e-9;
}

void rvm_restore_params_init(struct rvm_restore_params *p)
{
    memset(p, 0, sizeof(*p));
    p->backing = RVM_MEM_ANON;
    p->uart.out_fd = -1;
    p->numa_node = -1;
}

/* ---- restore ----------------------------------------------------------- */

/* The pieces of RAM that snapshot s holds (all, or its present pages). */
static int restore_plan(struct rvm_vm *vm, const struct snap_open *s, struct memplan *p)
{
    const struct snap_manifest *m = s->m;
    int r = 0;

    p->npages = m->mem_size / SNAP_PAGE;
    p->sums = calloc(m->nchunks, sizeof(uint64_t));
    if (!p->sums)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->nregions && r == 0; i++) {
        uint64_t n = m->region[i].size / SNAP_PAGE;
        char *hva = rvm_mem_hva(rvm_vm_mem(vm), m->region[i].gpa, m->region[i].size);

        if (!hva)
            return -EINVAL;
        if (!s->pages) { /* a full snapshot: the whole region */
            r = plan_add(p, hva, m->region[i].file_off, m->region[i].size);
            continue;
        }
        for (uint64_t q = 0; q < n && r == 0;) {
            if (!snap_page_present(s, snap_file_page(m, i, q))) {
                q++;
                continue;
            }
            uint64_t e = q + 1;
            while (e < n && snap_page_present(s, snap_file_page(m, i, e)))
                e++;
            r = plan_add(p, hva + q * SNAP_PAGE, m->region[i].file_off + q * SNAP_PAGE,
                         (e - q) * SNAP_PAGE);
            q = e;
        }
    }
    return r;
}

/* Each chunk's sum (p->sums, computed) against the snapshot's. */
static int check_sums(struct rvm_hv *hv, const struct snap_open *s, const struct memplan *p)
{
    for (uint64_t c = 0; c < s->m->nchunks; c++)
        if (p->sums[c] != s->sums[c]) {
            rvm_err(hv, "%s: memory chunk %llu checksum mismatch", s->dir, (unsigned long long)c);
            return -EBADMSG;
        }
    return 0;
}

/* Eager: the snapshot's pages read into guest RAM, checked. Lazy (base only): mapped. */
static int restore_memory(struct rvm_vm *vm, const struct snap_open *s, bool map, bool verify,
                          uint64_t *bytes)
{
    struct memplan p = {0};
    int fd, r = 0;

    if ((!map || verify) && (r = restore_plan(vm, s, &p)) < 0)
        goto out;
    if (map) {
        struct stat st;
        if ((fd = snap_open_file(s->dfd, "memory", 0, &st)) < 0) {
            r = fd;
            goto out;
        }
        for (uint32_t i = 0; i < s->m->nregions && r == 0; i++) {
            void *hva = rvm_mem_hva(rvm_vm_mem(vm), s->m->region[i].gpa, s->m->region[i].size);
            if (mmap(hva, s->m->region[i].size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                     (off_t)s->m->region[i].file_off) == MAP_FAILED)
                r = -errno;
        }
        close(fd);
        if (r == 0 && verify && (r = plan_sums(&p)) == 0)
            r = check_sums(vm->hv, s, &p);
        goto out;
    }
    struct stat st;
    fd = snap_open_file(s->dfd, "memory", O_DIRECT, &st);
    if (fd == -EINVAL) /* no O_DIRECT here (tmpfs): the page cache then */
        fd = snap_open_file(s->dfd, "memory", 0, &st);
    if (fd < 0) {
        r = fd;
        goto out;
    }
    struct summer sum;
    if ((r = summer_init(&sum, p.sums)) == 0) {
        r = snap_xfer(fd, p.pc, p.n, false, &sum);
        summer_end(&sum);
    }
    close(fd);
    if (r < 0)
        rvm_err(vm->hv, "%s: reading memory: %s", s->dir, strerror(-r));
    else
        r = check_sums(vm->hv, s, &p);
    *bytes += p.present * SNAP_PAGE;
out:
    plan_free(&p);
    return r;
}

/*
 * Every device of the snapshot made again by its kind, oldest first, each on
 * the backend the caller handed for it; then the VM's device list must be
 * exactly the snapshot's, before any state is loaded into it.
 */
static int restore_devices(struct rvm_vm *vm, const uint8_t *st, size_t len, const uint32_t *kinds,
                           uint32_t ndev, const struct rvm_restore_params *params)
{
    int r;

    for (uint32_t k = 0; k < ndev; k++) {
        const struct vm_snap_ops *ops = vm_device_kind(kinds[k]);
        struct dev_restore dr = {st, len, k, 0, params};

        if (!ops || !ops->recreate) {
            rvm_err(vm->hv, "snapshot has a device (kind %u) this ringvm cannot restore", kinds[k]);
            return -EOPNOTSUPP;
        }
        for (uint32_t j = 0; j < k; j++)
            dr.ordinal += kinds[j] == kinds[k];
        if ((r = ops->recreate(vm, &dr)) < 0)
            return r;
    }
    /* Now their state, in the same order (the list is newest first). */
    struct vm_device *devs[SNAP_MAX_DEVICES], *d;
    uint32_t n = 0;
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d && n < SNAP_MAX_DEVICES; d = d->next)
        devs[n++] = d;
    pthread_mutex_unlock(&vm->dev_lock);
    if (n != ndev) {
        rvm_err(vm->hv, "restore: %u devices made for the snapshot's %u", n, ndev);
        return -EBADMSG;
    }
    for (uint32_t k = 0; k < n; k++)
        if (!devs[n - 1 - k]->snap || devs[n - 1 - k]->snap->kind != kinds[k]) {
            rvm_err(vm->hv, "restore: device %u is not of the kind the snapshot says", k);
            return -EBADMSG;
        }
    for (uint32_t k = 0; k < n; k++) {
        d = devs[n - 1 - k];
        if ((r = d->snap->load(d->dev, st, len, k)) < 0)
            return r;
    }
    return 0;
}

/* The most guest RAM a restore may allocate: the caller's limit, or the host's RAM. */
static uint64_t mem_limit(const struct rvm_restore_params *params)
{
    if (params->max_mem)
        return params->max_mem;
    return (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The newest snapshot's state, whole and matching its sum. */
static int read_state(struct rvm_hv *hv, const char *dir, const struct snap_open *s,
                      uint8_t **state, size_t *slen)
{
    void *sp;
    int r;

    if ((r = snap_read_file(s->dfd, "state", &sp, slen, SNAP_MAX_STATE)) < 0 ||
        *slen != s->m->state_size) {
        if (r == 0)
            free(sp);
        rvm_err(hv, "%s: state missing or truncated", dir);
        return r == -EBADMSG ? -EBADMSG : -ENODATA;
    }
    *state = sp;
    if (XXH3_64bits(sp, *slen) != s->m->state_sum) {
        rvm_err(hv, "%s: state checksum mismatch", dir);
        return -EBADMSG;
    }
    return 0;
}

/* The VM the snapshot describes (vCPU count, RAM, its layout), on the caller's backing. */
static int create_vm(struct rvm_hv *hv, const char *dir, const struct snap_manifest *top,
                     const struct rvm_restore_params *params, struct rvm_vm **out)
{
    struct rvm_vm_config c;
    struct rvm_vm *vm;
    int r = 0;

    if (params->lazy && params->backing != RVM_MEM_ANON) {
        rvm_err(hv, "lazy restore maps the memory file: it needs anonymous 4 KiB backing");
        return -EINVAL;
    }
    rvm_vm_config_init(&c);
    c.vcpus = top->nvcpus;
    c.mem.size = top->mem_size;
    c.mem.backing = params->backing;
    c.numa_node = params->numa_node;
    if ((r = rvm_vm_create(hv, &c, &vm)) < 0)
        return r;
    if (rvm_mem_region_count(vm->mem) != top->nregions)
        r = -EINVAL;
    for (uint32_t i = 0; i < top->nregions && r == 0; i++) {
        const struct rvm_mem_region *rg = rvm_mem_region(vm->mem, i);
        if (rg->gpa != top->region[i].gpa || rg->size != top->region[i].size)
            r = -EINVAL;
    }
    if (r < 0) {
        rvm_err(hv, "%s: its guest memory layout does not fit this VM's", dir);
        rvm_vm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

int rvm_vm_restore(struct rvm_hv *hv, const char *dir, const struct rvm_restore_params *params,
                   struct rvm_vm **out, struct rvm_snapshot_stats *stats)
{
    struct rvm_restore_params defaults;
    struct snap_chain *chain = NULL;
    struct rvm_vm *vm = NULL;
    uint8_t *state = NULL;
    uint32_t kinds[SNAP_MAX_DEVICES], ndev = 0;
    size_t slen = 0;
    uint64_t bytes = 0;
    double t0 = now_s();
    int r;

    if (!hv || !dir || !out)
        return -EINVAL;
    if (!params) {
        rvm_restore_params_init(&defaults);
        params = &defaults;
    }
    struct snap_lookup lookup = {params->trust_snapshot_paths, params->parents, params->nparents};
    if ((r = snap_chain_open(hv, dir, mem_limit(params), &lookup, &chain)) < 0)
        goto out;

    const struct snap_manifest *top = chain->s[0].m;
    if ((r = read_state(hv, dir, &chain->s[0], &state, &slen)) < 0 ||
        (r = snap_check_state(hv, dir, state, slen, top->nvcpus, kinds, &ndev)) < 0 ||
        (r = create_vm(hv, dir, top, params, &vm)) < 0)
        goto out;

    /* Memory: the full base, then each diff over it, oldest first. */
    for (int i = chain->n - 1; i >= 0 && r == 0; i--)
        r = restore_memory(vm, &chain->s[i], params->lazy && i == chain->n - 1,
                           !params->lazy || params->verify_memory, &bytes);
    if (r < 0)
        goto out;

    /* vCPUs, the VM's chips, devices. */
    for (uint32_t i = 0; i < top->nvcpus && r == 0; i++)
        r = rvm_vcpu_create(vm, i, NULL);
    if (r == 0)
        r = arch_vm_load(vm, state, slen, params->allow_tsc_drift);
    for (uint32_t i = 0; i < top->nvcpus && r == 0; i++)
        r = arch_vcpu_load(vm->vcpus[i], state, slen);
    /* Tracking before the devices start: a restored device may write at once. */
    if (r == 0 && params->track_dirty)
        r = rvm_vm_dirty_enable(vm);
    if (r == 0)
        r = restore_devices(vm, state, slen, kinds, ndev, params);
    if (r < 0) {
        rvm_err(hv, "%s: restoring the machine state: %s", dir, strerror(-r));
        goto out;
    }

    /* This snapshot is the parent of the VM's next diff. */
    if (params->track_dirty)
        snap_set_parent(vm, dir, top->id);
    *out = vm;
    vm = NULL;
    if (stats) {
        stats->bytes = bytes;
        stats->pages = bytes / SNAP_PAGE;
        stats->seconds = now_s() - t0;
        stats->gbps = stats->seconds > 0 ? (double)bytes / stats->seconds / 1e9 : 0;
        stats->pause_ms = 0;
    }
out:
    rvm_vm_destroy(vm);
    free(state);
    snap_chain_free(chain);
    return r;
}
