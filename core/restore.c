/* SPDX-License-Identifier: MIT */
/*
 * A VM from a snapshot chain: the chain opened and checked, memory read
 * (eager) or mapped (lazy), then vCPUs, chips and devices re-created from
 * the state. See ringvm/snapshot.h and docs/snapshots.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <ringvm/dirty.h>
#include <ringvm/snapshot.h>
#include <ringvm/virtio.h>

#include "../arch/x86_64/arch.h"
#include "../mem/mem_internal.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
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
    p->verify_memory = true;
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
        fd = openat(s->dfd, "memory", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            r = -errno;
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
    fd = openat(s->dfd, "memory", O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0 && errno == EINVAL)
        fd = openat(s->dfd, "memory", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
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

static int restore_devices(struct rvm_vm *vm, const uint8_t *st, size_t len,
                           const struct rvm_restore_params *params)
{
    const void *p;
    uint32_t l;
    int r;

    if (rec_find(st, len, REC_DEVICES, 0, &p, &l) < 0 || l % sizeof(uint32_t))
        return -EBADMSG;
    for (uint32_t k = 0; k < l / sizeof(uint32_t); k++) {
        uint32_t kind;

        memcpy(&kind, (const char *)p + k * sizeof(uint32_t), sizeof(kind));
        switch (kind) {
        case REC_DEV_UART:
            r = rvm_uart_attach(vm, &params->uart, NULL);
            break;
        case REC_DEV_DEBUG_EXIT:
        case REC_DEV_BOOT_TIMER:
        case REC_DEV_PVPANIC: { /* a port is all they have */
            uint16_t port;
            if ((r = rec_get(st, len, kind, k, &port, sizeof(port))) == 0)
                r = kind == REC_DEV_DEBUG_EXIT   ? rvm_debug_exit_attach(vm, port)
                    : kind == REC_DEV_BOOT_TIMER ? rvm_boot_timer_attach(vm, port)
                                                 : rvm_pvpanic_attach(vm, port);
            break;
        }
        case REC_DEV_I8042:
            r = rvm_i8042_attach(vm);
            break;
        case REC_DEV_VIRTIO_BLK: {
            struct rvm_blk_config bc;
            char *bpath = malloc(PATH_MAX);
            if (!bpath)
                return -ENOMEM;
            r = virtio_blk_config_from_state(st, len, k, &bc, bpath, PATH_MAX);
            if (r == 0)
                r = rvm_vm_add_virtio_blk(vm, &bc, NULL, 0); /* with its transport, next */
            free(bpath);
            break;
        }
        case REC_DEV_VIRTIO_NET: {
            struct rvm_net_config nc;
            char tap[IFNAMSIZ];
            r = virtio_net_config_from_state(st, len, k, &nc, tap, sizeof(tap));
            if (r == 0)
                r = rvm_vm_add_virtio_net(vm, &nc, NULL, 0); /* the tap by name, in our namespace */
            break;
        }
        case REC_DEV_VIRTIO_MMIO:
            r = 0; /* made with its device, just before */
            break;
        default:
            rvm_err(vm->hv, "snapshot has a device (kind %u) this ringvm cannot restore", kind);
            return -EOPNOTSUPP;
        }
        if (r < 0)
            return r;
    }
    /* Now their state, in the same order (the list is newest first). */
    struct vm_device *devs[256], *d;
    uint32_t n = 0;
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d && n < 256; d = d->next)
        devs[n++] = d;
    pthread_mutex_unlock(&vm->dev_lock);
    for (uint32_t k = 0; k < n; k++) {
        d = devs[n - 1 - k];
        if (d->snap && (r = d->snap->load(d->dev, st, len, k)) < 0)
            return r;
    }
    return 0;
}

int rvm_vm_restore(struct rvm_hv *hv, const char *dir, const struct rvm_restore_params *params,
                   struct rvm_vm **out, struct rvm_snapshot_stats *stats)
{
    struct rvm_restore_params defaults;
    struct snap_open *chain;
    struct rvm_vm_config c;
    struct rvm_vm *vm = NULL;
    uint8_t *state = NULL;
    size_t slen = 0;
    uint64_t bytes = 0;
    double t0 = now_s();
    int n = 0, r;

    if (!hv || !dir || !out)
        return -EINVAL;
    if (!params) {
        rvm_restore_params_init(&defaults);
        params = &defaults;
    }
    if (!(chain = calloc(SNAP_MAX_CHAIN, sizeof(*chain))))
        return -ENOMEM;
    for (int i = 0; i < SNAP_MAX_CHAIN; i++)
        chain[i].dfd = -1;

    /* The chain: dir, its parent, ..., down to a full snapshot. */
    for (const char *d = dir;; d = chain[n - 1].m->parent) {
        if (n == SNAP_MAX_CHAIN) {
            rvm_err(hv, "%s: more than %d snapshots in the chain", dir, SNAP_MAX_CHAIN);
            r = -ELOOP;
            goto out;
        }
        if ((r = snap_open(hv, d, &chain[n++])) < 0)
            goto out;
        const struct snap_manifest *m = chain[n - 1].m;
        if (n > 1) {
            const struct snap_manifest *child = chain[n - 2].m;
            if (child->parent_id != m->id || child->mem_size != m->mem_size ||
                child->nregions != m->nregions ||
                memcmp(child->region, m->region, sizeof(m->region)) != 0) {
                rvm_err(hv, "%s: is not the parent %s was taken from", d, chain[n - 2].dir);
                r = -EBADMSG;
                goto out;
            }
        }
        if (m->kind == SNAP_FULL)
            break;
    }

    /* The state, from the newest. */
    const struct snap_manifest *top = chain[0].m;
    void *sp;
    if ((r = snap_read_file(chain[0].dfd, "state", &sp, &slen, 1ULL << 30)) < 0 ||
        slen != top->state_size) {
        if (r == 0)
            free(sp);
        rvm_err(hv, "%s: state missing or truncated", dir);
        r = r == -EBADMSG ? -EBADMSG : -ENODATA;
        goto out;
    }
    state = sp;
    if (XXH3_64bits(state, slen) != top->state_sum || rec_check(state, slen) < 0) {
        rvm_err(hv, "%s: state checksum mismatch or malformed state", dir);
        r = -EBADMSG;
        goto out;
    }

    rvm_vm_config_init(&c);
    c.vcpus = top->nvcpus;
    c.mem.size = top->mem_size;
    c.mem.backing = params->backing;
    c.numa_node = params->numa_node;
    if (params->lazy && params->backing != RVM_MEM_ANON) {
        rvm_err(hv, "lazy restore maps the memory file: it needs anonymous 4 KiB backing");
        r = -EINVAL;
        goto out;
    }
    if ((r = rvm_vm_create(hv, &c, &vm)) < 0)
        goto out;
    if (rvm_mem_region_count(vm->mem) != top->nregions) {
        r = -EINVAL;
    } else {
        for (uint32_t i = 0; i < top->nregions; i++) {
            const struct rvm_mem_region *rg = rvm_mem_region(vm->mem, i);
            if (rg->gpa != top->region[i].gpa || rg->size != top->region[i].size)
                r = -EINVAL;
        }
    }
    if (r < 0) {
        rvm_err(hv, "%s: its guest memory layout does not fit this VM's", dir);
        goto out;
    }

    /* Memory: the full base, then each diff over it, oldest first. */
    for (int i = n - 1; i >= 0 && r == 0; i--)
        r = restore_memory(vm, &chain[i], params->lazy && i == n - 1,
                           !params->lazy || params->verify_memory, &bytes);
    if (r < 0)
        goto out;

    /* vCPUs, the VM's chips, devices. */
    for (uint32_t i = 0; i < top->nvcpus && r == 0; i++)
        r = rvm_vcpu_create(vm, i, NULL);
    if (r == 0)
        r = arch_vm_load(vm, state, slen);
    for (uint32_t i = 0; i < top->nvcpus && r == 0; i++)
        r = arch_vcpu_load(vm->vcpus[i], state, slen);
    /* Tracking before the devices start: a restored device may write at once. */
    if (r == 0 && params->track_dirty)
        r = rvm_vm_dirty_enable(vm);
    if (r == 0)
        r = restore_devices(vm, state, slen, params);
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
    for (int i = 0; i < SNAP_MAX_CHAIN; i++)
        if (chain[i].m || chain[i].dfd >= 0)
            snap_close(&chain[i]);
    free(chain);
    return r;
}
