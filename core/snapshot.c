/* SPDX-License-Identifier: MIT */
/*
 * Taking a snapshot: full, diff (the pages written since the parent) and
 * live (pre-copied while the guest runs). The VM is paused, its devices
 * quiesced, its state and memory written into a temporary sibling directory
 * that is then published. See ringvm/snapshot.h and docs/snapshots.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ringvm/dirty.h>
#include <ringvm/snapshot.h>

#include "../arch/x86_64/arch.h"
#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

static double now_s(void)
{
    return (double)vm_now_ns() * 1e-9;
}

/* ---- snapshot ---------------------------------------------------------- */

/* dir (absolute) becomes the parent of the VM's next diff; none if its path is too long. */
void snap_set_parent(struct rvm_vm *vm, const char *dir, uint64_t id)
{
    char abs[PATH_MAX];
    size_t len;

    vm->snap.have_parent = false;
    if (!realpath(dir, abs) || (len = strlen(abs)) >= sizeof(vm->snap.parent)) {
        rvm_warn(vm->hv, "%s: path too long to be a diff's parent", dir);
        return;
    }
    memcpy(vm->snap.parent, abs, len + 1);
    vm->snap.parent_id = id;
    vm->snap.have_parent = true;
}

/*
 * Finishes what the last exit of each paused vCPU left half done: KVM_RUN
 * that returns at once. A vCPU of the managed loop did it on its own thread
 * as it parked; only one that is not (manual execution) is done from here.
 */
static int complete_io(struct rvm_vm *vm)
{
    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];
        uint8_t was;
        bool done;

        if (!v)
            continue;
        pthread_mutex_lock(&vm->ctl);
        done = v->parked_complete; /* its own thread did it as it parked (the managed loop) */
        pthread_mutex_unlock(&vm->ctl);
        if (done)
            continue;
        vm->snap.foreign_completions++;
        was = __atomic_exchange_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        int r = ioctl(v->fd, KVM_RUN, 0);
        int e = errno;
        __atomic_store_n(&v->run->immediate_exit, was, __ATOMIC_SEQ_CST);
        if (r == 0 || e != EINTR) {
            rvm_err(vm->hv, "vCPU %u: completing its last exit: %s", i,
                    r == 0 ? "it ran" : strerror(e));
            return r == 0 ? -EIO : -e;
        }
    }
    return 0;
}

/*
 * Every device quiesced (stop) or resumed, oldest first. Quiesce stops at
 * the first device that fails (its error returned); resume is for every one.
 */
static int devices_each(struct rvm_vm *vm, bool stop)
{
    struct vm_device *d;
    int r = 0;

    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d && r == 0; d = d->next) {
        if (!d->snap)
            continue;
        if (stop && d->snap->quiesce)
            r = d->snap->quiesce(d->dev);
        else if (!stop && d->snap->resume)
            d->snap->resume(d->dev);
    }
    pthread_mutex_unlock(&vm->dev_lock);
    return r;
}

void vm_snap_devices_resume(struct rvm_vm *vm)
{
    if (__atomic_exchange_n(&vm->snap.devices_held, false, __ATOMIC_ACQ_REL))
        devices_each(vm, false);
}

static int save_state(struct rvm_vm *vm, struct recbuf *b)
{
    struct vm_device *devs[SNAP_MAX_DEVICES], *d;
    uint32_t n = 0;
    int r;

    for (uint32_t i = 0; i < vm->nvcpus; i++)
        if (vm->vcpus[i] && (r = arch_vcpu_save(vm->vcpus[i], b)) < 0)
            return r;
    if ((r = arch_vm_save(vm, b)) < 0)
        return r;
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d && n < SNAP_MAX_DEVICES; d = d->next)
        devs[n++] = d;
    pthread_mutex_unlock(&vm->dev_lock);
    /* Oldest first: a restore creates them in this order. */
    uint32_t kinds[SNAP_MAX_DEVICES];
    for (uint32_t k = 0; k < n; k++) {
        d = devs[n - 1 - k];
        kinds[k] = d->snap->kind;
        if ((r = d->snap->save(d->dev, b, k)) < 0)
            return r;
    }
    rec_put(b, REC_DEVICES, 0, kinds, n * (uint32_t)sizeof(uint32_t));
    rec_put(b, REC_END, 0, NULL, 0);
    return b->err;
}

/* The pieces of memory to write (whole RAM, or the pages in bits) and each chunk's sum. */

/*
 * dir may receive the snapshot: absent, or a ringvm snapshot that no chain
 * of this VM needs. The VM's chain (its last snapshot and that one's
 * parents) needs all of its members: a diff replaces none of them, a full
 * snapshot only the newest (no snapshot of this VM names it as parent).
 */
static int check_target(struct rvm_vm *vm, const char *dir, bool diff)
{
    struct snap_chain *chain;
    int r = snap_replaceable(vm->hv, dir);

    if (r < 0 || !vm->snap.have_parent)
        return r;
    if ((r = snap_chain_open(vm->hv, vm->snap.parent, UINT64_MAX, NULL, &chain)) < 0) {
        if (!diff)
            return 0; /* the old chain is gone or damaged: nothing of it to protect */
        rvm_err(vm->hv, "diff snapshot: its parent %s no longer opens", vm->snap.parent);
        return r;
    }
    if (snap_chain_holds(chain, diff ? 0 : 1, dir)) {
        rvm_err(vm->hv, "snapshot: %s is in the chain of this VM's snapshot %s: not replaced", dir,
                vm->snap.parent);
        r = -EEXIST;
    }
    snap_chain_free(chain);
    return r;
}

static int live_round(struct rvm_vm *vm, int fd, const struct snap_manifest *m,
                      struct memplan *plan, uint64_t *sums)
{
    uint64_t last = UINT64_MAX;
    int r = plan_write(fd, plan, false);

    for (size_t i = 0; r == 0 && i < plan->n; i++) {
        uint64_t c = plan->pc[i].off / SNAP_CHUNK;
        if (c != last)
            snap_hash_chunk(vm, m, c, &sums[c]);
        last = c;
    }
    return r;
}

#define LIVE_MAX_ROUNDS 12

/*
 * The running part of a live snapshot: all of RAM, then, round after round,
 * what the guest wrote meanwhile, until a round's pages are few (or stop
 * shrinking). The rest is taken with the VM paused (rvm_vm_snapshot). A
 * chunk's sum is taken from RAM after its pages were written, so a page
 * changed after that is dirty again and its chunk summed again later.
 * Returns the open memory file, or -errno.
 */
static int live_precopy(struct rvm_vm *vm, int dfd, const struct snap_manifest *m,
                        struct memplan *plan, unsigned long *bits, unsigned long *taken,
                        uint64_t *written, uint32_t *rounds)
{
    uint64_t words = vm_dirty_words(vm) + 1;
    uint64_t threshold = m->mem_size / SNAP_PAGE / 1000 + 256, prev = UINT64_MAX;
    bool overflowed;
    int fd = snap_open_memory(dfd, m, false), r;

    if (fd < 0)
        return fd;
    memset(bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
    if ((r = vm_dirty_take(vm, DIRTY_SNAPSHOT, bits, &overflowed)) <
        0) /* the interval starts here */
        goto fail;
    for (uint64_t w = 0; w < words; w++) /* what a failed snapshot must give back */
        taken[w] |= bits[w];
    plan_reset(plan);
    /* Summed as written: a page the guest changes meanwhile is dirty, its chunk summed again. */
    if ((r = plan_bits(vm, m, plan, bits, true)) < 0 || (r = plan_write(fd, plan, true)) < 0)
        goto fail;
    *written += plan->present;
    for (*rounds = 1; *rounds < LIVE_MAX_ROUNDS; (*rounds)++) {
        memset(bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
        if ((r = vm_dirty_take(vm, DIRTY_SNAPSHOT, bits, &overflowed)) < 0)
            goto fail;
        for (uint64_t w = 0; w < words; w++)
            taken[w] |= bits[w];
        plan_reset(plan);
        if ((r = plan_bits(vm, m, plan, bits, overflowed)) < 0)
            goto fail;
        if (plan->present <= threshold || (plan->present >= prev && *rounds >= 3)) {
            vm_dirty_put_back(vm, DIRTY_SNAPSHOT, bits); /* for the paused round */
            break;
        }
        if ((r = live_round(vm, fd, m, plan, plan->sums)) < 0)
            goto fail;
        *written += plan->present;
        prev = plan->present;
    }
    return fd;
fail:
    close(fd);
    return r;
}

/* Whether the VM can be snapshotted into dir as asked; its state through *st. */
static int check_snapshot(struct rvm_vm *vm, const char *dir, bool diff, enum rvm_vm_state *st)
{
    struct vm_device *d;
    int r;

    if (diff && (!vm->snap.have_parent || rvm_vm_dirty_mode(vm) == RVM_DIRTY_OFF)) {
        rvm_err(vm->hv, "diff snapshot: no parent (turn dirty tracking on, then take a full "
                        "snapshot)");
        return -EINVAL;
    }
    if ((r = check_target(vm, dir, diff)) < 0)
        return r;
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d; d = d->next)
        if (!d->snap)
            break;
    pthread_mutex_unlock(&vm->dev_lock);
    if (d) {
        rvm_err(vm->hv, "snapshot: the VM has a device whose state cannot be saved yet");
        return -EOPNOTSUPP;
    }
    *st = rvm_vm_state(vm);
    if (*st != RVM_VM_RUNNING && *st != RVM_VM_PAUSED) {
        rvm_err(vm->hv, "snapshot: the VM is neither running nor paused");
        return -EINVAL;
    }
    return 0;
}

/* The new snapshot's manifest, but for what only its writing tells (sums, counts). */
static void manifest_init(struct rvm_vm *vm, struct snap_manifest *m, bool diff, double t0)
{
    memcpy(m->magic, SNAP_MAGIC, sizeof(m->magic));
    m->version = SNAP_VERSION;
    m->arch = SNAP_ARCH_X86;
    m->kind = diff ? SNAP_DIFF : SNAP_FULL;
    m->nvcpus = vm->nvcpus;
    m->chunk = SNAP_CHUNK;
    m->nregions = rvm_mem_region_count(vm->mem);
    for (uint32_t i = 0; i < m->nregions; i++) {
        const struct rvm_mem_region *rg = rvm_mem_region(vm->mem, i);
        m->region[i].gpa = rg->gpa;
        m->region[i].size = rg->size;
        m->region[i].file_off = m->mem_size;
        m->mem_size += rg->size;
    }
    m->nchunks = (m->mem_size + SNAP_CHUNK - 1) / SNAP_CHUNK;
    m->id = XXH3_64bits(&t0, sizeof(t0)) ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)vm;
    if (diff) {
        m->parent_id = vm->snap.parent_id;
        memcpy(m->parent, vm->snap.parent, sizeof(m->parent));
    }
}

/* What the paused part of the memory writing needs and tells. */
struct paused_mem {
    unsigned long *bits; /* scratch, vm_dirty_words() + 1 */
    bool diff, live;
    int *mfd;          /* live: the open memory file; else opened here */
    uint64_t *written; /* pages written, rewrites included */
    bool *taken;       /* dirty pages were taken into bits (to put back on failure) */
};

/*
 * With the VM paused and its devices quiesced: the pages a diff needs (what
 * changed since the parent), a live snapshot's last round, or all of RAM,
 * into the memory file, summed, fsynced.
 */
static int write_paused_memory(struct rvm_vm *vm, int dfd, struct snap_manifest *m,
                               struct memplan *plan, const struct paused_mem *pm)
{
    bool overflowed = false;
    int r;

    memset(pm->bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
    if (rvm_vm_dirty_mode(vm) != RVM_DIRTY_OFF) {
        if ((r = vm_dirty_take(vm, DIRTY_SNAPSHOT, pm->bits, &overflowed)) < 0)
            return r;
        *pm->taken = true;
    }
    plan_reset(plan);
    if ((r = plan_bits(vm, m, plan, pm->bits, !(pm->diff || pm->live) || overflowed)) < 0)
        return r;
    if (pm->live) {
        r = live_round(vm, *pm->mfd, m, plan, plan->sums);
        *pm->written += plan->present;
        plan->present = plan->npages;
    } else if ((*pm->mfd = snap_open_memory(dfd, m, pm->diff)) < 0) {
        r = *pm->mfd;
    } else {
        r = plan_write(*pm->mfd, plan, true);
        *pm->written = plan->present;
    }
    if (r == 0 && fsync(*pm->mfd) < 0)
        r = -errno;
    m->pages_present = plan->present;
    return r;
}

/* The small files that describe the memory (sums, a diff's pages), then the manifest, fsynced. */
static int write_index(int dfd, const char *tmp, struct snap_manifest *m,
                       const struct memplan *plan, bool diff)
{
    int r;

    m->sums_sum = XXH3_64bits(plan->sums, m->nchunks * sizeof(uint64_t));
    if ((r = snap_write_file(dfd, "sums", plan->sums, m->nchunks * sizeof(uint64_t))) < 0)
        return r;
    if (diff) {
        size_t pbytes = (plan->npages + 63) / 64 * sizeof(unsigned long);
        m->pages_sum = XXH3_64bits(plan->pages, pbytes);
        if ((r = snap_write_file(dfd, "pages", plan->pages, pbytes)) < 0)
            return r;
    }
    m->self_sum = snap_manifest_sum(m);
    if ((r = snap_write_file(dfd, "manifest", m, sizeof(*m))) < 0)
        return r;
    return snap_fsync_path(tmp);
}

/* A snapshot being taken: what its steps share. */
struct take {
    struct rvm_vm *vm;
    const char *dir;
    char tmp[PATH_MAX];
    int dfd, mfd;
    struct snap_manifest *m;
    struct recbuf b;
    struct memplan plan;
    unsigned long *bits, *live_taken;
    double t0, tp, tr;
    bool diff, live, tracked, paused, taken, quiesced;
    uint64_t written;
    uint32_t rounds;
};

/* The temporary directory (a dead snapshotter's cleared first), the manifest, the buffers. */
static int take_begin(struct take *k)
{
    struct rvm_vm *vm = k->vm;
    struct memplan *plan = &k->plan;

    snap_clean_stale(k->dir);
    snprintf(k->tmp, sizeof(k->tmp), "%s.tmp-%d-%lx", k->dir, (int)getpid(),
             (unsigned long)(k->t0 * 1e6));
    if (mkdir(k->tmp, 0700) < 0) {
        int r = -errno;
        rvm_err(vm->hv, "snapshot: cannot create %s: %s", k->tmp, strerror(-r));
        k->tmp[0] = '\0'; /* nothing to remove */
        return r;
    }
    if ((k->dfd = open(k->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if (!(k->m = calloc(1, sizeof(*k->m))))
        return -ENOMEM;
    manifest_init(vm, k->m, k->diff, k->t0);
    plan->npages = k->m->mem_size / SNAP_PAGE;
    plan->pages = k->diff ? calloc((plan->npages + 63) / 64, sizeof(unsigned long)) : NULL;
    plan->sums = calloc(k->m->nchunks, sizeof(uint64_t));
    k->bits = calloc(vm_dirty_words(vm) + 1, sizeof(unsigned long));
    k->live_taken = k->live ? calloc(vm_dirty_words(vm) + 1, sizeof(unsigned long)) : NULL;
    if ((k->diff && !plan->pages) || !plan->sums || !k->bits || (k->live && !k->live_taken))
        return -ENOMEM;
    return 0;
}

/* Live: tracking on for the rounds if it is not, and RAM copied while the guest runs. */
static int take_precopy(struct take *k)
{
    int r;

    if (!k->tracked && (r = rvm_vm_dirty_enable(k->vm)) < 0) {
        k->live = false; /* nothing to turn off again */
        return r;
    }
    k->mfd = live_precopy(k->vm, k->dfd, k->m, &k->plan, k->bits, k->live_taken, &k->written,
                          &k->rounds);
    if (k->mfd < 0) {
        rvm_err(k->vm->hv, "snapshot: writing memory into %s: %s", k->tmp, strerror(-k->mfd));
        return k->mfd;
    }
    return 0;
}

/*
 * Paused (by us, unless the VM was or someone paused it meanwhile: we resume
 * only our own), devices quiesced: the state, the memory, the index files.
 */
static int take_paused(struct take *k)
{
    struct rvm_vm *vm = k->vm;
    int r;

    k->tp = now_s();
    if ((r = vm_hold_pause(vm, &k->paused)) < 0 || (r = complete_io(vm)) < 0)
        return r;
    k->quiesced = true; /* take_end() resumes them, also those a failure left running */
    if ((r = devices_each(vm, true)) < 0)
        return r; /* the device said why */
    /* Nothing writes guest memory from here on. */
    if ((r = save_state(vm, &k->b)) < 0)
        return r;
    k->m->state_size = k->b.len;
    k->m->state_sum = XXH3_64bits(k->b.p, k->b.len);
    if ((r = snap_write_file(k->dfd, "state", k->b.p, k->b.len)) < 0)
        return r;
    struct paused_mem pm = {k->bits, k->diff, k->live, &k->mfd, &k->written, &k->taken};
    if ((r = write_paused_memory(vm, k->dfd, k->m, &k->plan, &pm)) < 0) {
        rvm_err(vm->hv, "snapshot: writing memory into %s: %s", k->tmp, strerror(-r));
        return r;
    }
    return write_index(k->dfd, k->tmp, k->m, &k->plan, k->diff);
}

/* Everything let go: dirty pages put back on failure, devices and the guest going again. */
static void take_end(struct take *k, int r, struct rvm_snapshot_stats *stats)
{
    struct rvm_vm *vm = k->vm;

    if (r < 0 && k->tmp[0])
        snap_remove_dir(k->tmp);
    if (r < 0 && k->taken)
        vm_dirty_put_back(vm, DIRTY_SNAPSHOT, k->bits); /* not persisted: the next one takes them */
    if (r < 0 && k->live_taken)
        vm_dirty_put_back(vm, DIRTY_SNAPSHOT, k->live_taken); /* the rounds' takes too */
    if (k->mfd >= 0)
        close(k->mfd);
    if (k->dfd >= 0)
        close(k->dfd);
    /*
     * Devices start again with the guest: now if we paused it, else when the
     * caller resumes it (a paused VM's disk stays as the snapshot saw it,
     * so that it can be restored from it once this VM is gone).
     */
    if (k->quiesced && k->paused)
        devices_each(vm, false);
    else if (k->quiesced)
        __atomic_store_n(&vm->snap.devices_held, true, __ATOMIC_RELEASE);
    k->tr = now_s();
    vm_hold_end(vm, k->paused);
    if (k->live && !k->tracked)
        rvm_vm_dirty_disable(vm); /* on for the rounds only */
    if (stats) {
        memset(stats, 0, sizeof(*stats));
        stats->seconds = now_s() - k->t0;
        stats->pause_ms = k->paused ? (k->tr - k->tp) * 1e3 : 0;
        if (r == 0) {
            stats->bytes = k->written * SNAP_PAGE;
            stats->pages = k->plan.present;
            stats->rounds = k->rounds;
            stats->gbps = stats->seconds > 0 ? (double)stats->bytes / stats->seconds / 1e9 : 0;
        }
    }
    free(k->bits);
    free(k->live_taken);
    plan_free(&k->plan);
    rec_free(&k->b);
    free(k->m);
}

static int take_snapshot(struct rvm_vm *vm, const char *dir, enum rvm_snapshot_mode mode,
                         struct rvm_snapshot_stats *stats)
{
    struct take k = {.vm = vm, .dir = dir, .dfd = -1, .mfd = -1, .t0 = now_s()};
    enum rvm_vm_state st;
    int r;

    k.diff = mode == RVM_SNAPSHOT_DIFF;
    if ((r = check_snapshot(vm, dir, k.diff, &st)) < 0)
        return r;
    k.live = mode == RVM_SNAPSHOT_LIVE && st == RVM_VM_RUNNING; /* a paused VM is just copied */
    /*
     * Tracking is the caller's choice (it costs a fault per first write and
     * keeps huge pages split): a live snapshot turns it on for its rounds
     * and off again; only a snapshot taken with it on is a diff's parent.
     */
    k.tracked = rvm_vm_dirty_mode(vm) != RVM_DIRTY_OFF;
    if ((r = take_begin(&k)) == 0 && (!k.live || (r = take_precopy(&k)) == 0) &&
        (r = take_paused(&k)) == 0 && (r = snap_publish(k.tmp, dir)) < 0)
        rvm_err(vm->hv, "snapshot: publishing %s: %s", dir, strerror(-r));
    /* The next diff's parent; its interval began when the pages were taken. */
    if (r == 0 && k.tracked)
        snap_set_parent(vm, dir, k.m->id);
    take_end(&k, r, stats);
    return r;
}

/*
 * One snapshot at a time per VM (-EBUSY), and while it runs it owns the
 * pause: rvm_vm_resume() is refused until memory and sums are written.
 */
int rvm_vm_snapshot(struct rvm_vm *vm, const char *dir, enum rvm_snapshot_mode mode,
                    struct rvm_snapshot_stats *stats)
{
    int idle = 0, r;

    if (!vm || !dir ||
        (mode != RVM_SNAPSHOT_FULL && mode != RVM_SNAPSHOT_DIFF && mode != RVM_SNAPSHOT_LIVE))
        return -EINVAL;
    if (!__atomic_compare_exchange_n(&vm->snap.busy, &idle, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        rvm_err(vm->hv, "snapshot: another snapshot of this VM is under way");
        return -EBUSY;
    }
    vm_hold_begin(vm);
    r = take_snapshot(vm, dir, mode, stats);
    vm_hold_end(vm, false); /* if it returned before its own end (which resumes what it paused) */
    __atomic_store_n(&vm->snap.busy, 0, __ATOMIC_RELEASE);
    return r;
}
