/* SPDX-License-Identifier: MIT */
/*
 * Snapshot and restore: the format (manifest, state, memory, sums, pages),
 * the atomic publication of a snapshot directory, and guest memory moved
 * between RAM and the memory file through io_uring. See ringvm/snapshot.h
 * and docs/snapshots.md.
 */
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <ringvm/dirty.h>
#include <ringvm/virtio.h>
#include <ringvm/snapshot.h>

#include "../arch/x86_64/arch.h"
#include "../mem/mem_internal.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

#define PAGE     4096ULL
#define CHUNK    (1ULL << 20) /* checksum granule of the memory file, and the largest I/O */
#define QD       32
#define ARCH_X86 1

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

/* ---- manifest ---------------------------------------------------------- */

static uint64_t manifest_sum(const struct snap_manifest *m)
{
    return XXH3_64bits(m, offsetof(struct snap_manifest, self_sum));
}

int snap_manifest_check(const struct snap_manifest *m, struct rvm_hv *hv, const char *dir)
{
    if (memcmp(m->magic, SNAP_MAGIC, sizeof(m->magic)) != 0) {
        rvm_err(hv, "%s: not a ringvm snapshot", dir);
        return -EBADMSG;
    }
    if (m->version > SNAP_VERSION) {
        rvm_err(hv, "%s: format version %u, this ringvm reads up to %u", dir, m->version,
                SNAP_VERSION);
        return -EPROTO;
    }
    if (manifest_sum(m) != m->self_sum) {
        rvm_err(hv, "%s: manifest checksum mismatch", dir);
        return -EBADMSG;
    }
    if (m->arch != ARCH_X86) {
        rvm_err(hv, "%s: made on another architecture (%u)", dir, m->arch);
        return -EPROTO;
    }
    if (m->nregions == 0 || m->nregions > RVM_MEM_MAX_REGIONS || m->nvcpus == 0 ||
        m->nvcpus > 1024 || m->chunk != CHUNK || (m->kind != SNAP_FULL && m->kind != SNAP_DIFF) ||
        m->parent[sizeof(m->parent) - 1] != 0) {
        rvm_err(hv, "%s: malformed manifest", dir);
        return -EBADMSG;
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < m->nregions; i++) {
        if (m->region[i].file_off != off || m->region[i].size % PAGE || m->region[i].size == 0 ||
            m->region[i].size > RVM_MEM_MAX_SIZE) {
            rvm_err(hv, "%s: malformed memory layout", dir);
            return -EBADMSG;
        }
        off += m->region[i].size;
    }
    if (off != m->mem_size || m->nchunks != (m->mem_size + CHUNK - 1) / CHUNK ||
        m->pages_present > m->mem_size / PAGE) {
        rvm_err(hv, "%s: malformed memory layout", dir);
        return -EBADMSG;
    }
    return 0;
}

/* ---- files ------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        c += w, n -= (size_t)w;
    }
    return 0;
}

static int write_file(int dfd, const char *name, const void *p, size_t n)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r;

    if (fd < 0)
        return -errno;
    r = write_all(fd, p, n);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* Reads a whole small file (at most max bytes). -ENODATA when missing or too short. */
int snap_read_file(int dfd, const char *name, void **out, size_t *len, size_t max)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *p;
    size_t got = 0;

    if (fd < 0)
        return errno == ENOENT ? -ENODATA : -errno;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > max) {
        close(fd);
        return -EBADMSG;
    }
    p = malloc((size_t)st.st_size + 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *out = p;
    *len = got;
    return 0;
}

/* rm -r of a snapshot directory we made (flat: files only). */
static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (d) {
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(path);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* The directory holding path (for its fsync after the rename). */
static void parent_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* tmp replaces dir atomically: rename, or exchange then remove the old one. */
static int publish(const char *tmp, const char *dir)
{
    char parent[PATH_MAX];

    if (rename(tmp, dir) < 0) {
        if (errno != ENOTEMPTY && errno != EEXIST)
            return -errno;
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0)
            return -errno;
        remove_dir(tmp); /* now the old snapshot */
    }
    parent_of(dir, parent, sizeof(parent));
    return fsync_path(parent);
}

/* ---- memory through io_uring ------------------------------------------- */

struct piece {
    void *hva;
    uint64_t off; /* in the memory file */
    uint32_t len;
};

/*
 * Per-chunk XXH3 sums of the pieces, fed in file order (a chunk's sum covers
 * the pieces inside it, in order).
 */
struct summer {
    XXH3_state_t *st;
    uint64_t cur; /* the chunk being summed, or UINT64_MAX */
    uint64_t *sums;
};

static int summer_init(struct summer *s, uint64_t *sums)
{
    s->st = XXH3_createState();
    s->cur = UINT64_MAX;
    s->sums = sums;
    return s->st ? 0 : -ENOMEM;
}

static void summer_add(struct summer *s, const struct piece *p)
{
    uint64_t c = p->off / CHUNK;

    if (c != s->cur) {
        if (s->cur != UINT64_MAX)
            s->sums[s->cur] = XXH3_64bits_digest(s->st);
        XXH3_64bits_reset(s->st);
        s->cur = c;
    }
    XXH3_64bits_update(s->st, p->hva, p->len);
}

static void summer_end(struct summer *s)
{
    if (s->cur != UINT64_MAX)
        s->sums[s->cur] = XXH3_64bits_digest(s->st);
    XXH3_freeState(s->st);
    s->st = NULL;
}

/*
 * Moves every piece between RAM and fd, QD at a time, summing them into sum
 * (if not NULL) while the device works: a write's piece once submitted
 * (the VM is stopped, RAM does not change), a read's once it has landed,
 * in file order. 0, or the first error.
 */
static int snap_xfer(int fd, const struct piece *pc, size_t n, bool write, struct summer *sum)
{
    struct io_uring ring;
    size_t next = 0, done = 0, summed = 0;
    uint8_t *landed = NULL;
    int inflight = 0, err = 0, r;

    if (!write && sum && !(landed = calloc(n ? n : 1, 1)))
        return -ENOMEM;
    if ((r = io_uring_queue_init(QD, &ring, 0)) < 0) {
        free(landed);
        return r;
    }
    while (done < n) {
        while (!err && next < n && inflight < QD) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

            if (write)
                io_uring_prep_write(sqe, fd, pc[next].hva, pc[next].len, pc[next].off);
            else
                io_uring_prep_read(sqe, fd, pc[next].hva, pc[next].len, pc[next].off);
            io_uring_sqe_set_data64(sqe, next);
            next++, inflight++;
        }
        if (inflight == 0)
            break; /* an error stopped submission and everything is back */
        if ((r = io_uring_submit(&ring)) < 0 && r != -EINTR) {
            err = r;
            break;
        }
        if (write && sum)
            while (summed < next)
                summer_add(sum, &pc[summed++]);
        struct io_uring_cqe *cqe;
        if ((r = io_uring_wait_cqe(&ring, &cqe)) < 0 && r != -EINTR) {
            err = r;
            break;
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            size_t i = io_uring_cqe_get_data64(cqe);
            const struct piece *p = &pc[i];

            seen++;
            if (cqe->res < 0 && !err)
                err = cqe->res;
            else if (cqe->res >= 0 && (uint32_t)cqe->res != p->len && !err)
                err = write ? -ENOSPC : -ENODATA; /* short: disk full, or file truncated */
            if (landed)
                landed[i] = 1;
            done++;
            inflight--;
        }
        io_uring_cq_advance(&ring, seen);
        if (landed && !err)
            while (summed < n && landed[summed])
                summer_add(sum, &pc[summed++]);
    }
    io_uring_queue_exit(&ring);
    free(landed);
    return err;
}

/* ---- snapshot ---------------------------------------------------------- */

/* dir (absolute) becomes the parent of the VM's next diff; none if its path is too long. */
static void set_parent(struct rvm_vm *vm, const char *dir, uint64_t id)
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

/* Where guest-physical page p of region i lives in the memory file. */
static inline uint64_t file_page(const struct snap_manifest *m, unsigned i, uint64_t p)
{
    return m->region[i].file_off / PAGE + p;
}

/* Finishes what the last exit of each (parked) vCPU left half done: KVM_RUN that returns at once.
 */
static int complete_io(struct rvm_vm *vm)
{
    for (uint32_t i = 0; i < vm->nvcpus; i++) {
        struct rvm_vcpu *v = vm->vcpus[i];
        uint8_t was;

        if (!v)
            continue;
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

/* Every device quiesced (stop) or resumed, oldest first. */
static void devices_each(struct rvm_vm *vm, bool stop)
{
    struct vm_device *d;

    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d; d = d->next)
        if (d->snap && (stop ? d->snap->quiesce : d->snap->resume))
            (stop ? d->snap->quiesce : d->snap->resume)(d->dev);
    pthread_mutex_unlock(&vm->dev_lock);
}

static int save_state(struct rvm_vm *vm, struct recbuf *b)
{
    struct vm_device *devs[256], *d;
    uint32_t n = 0;
    int r;

    for (uint32_t i = 0; i < vm->nvcpus; i++)
        if (vm->vcpus[i] && (r = arch_vcpu_save(vm->vcpus[i], b)) < 0)
            return r;
    if ((r = arch_vm_save(vm, b)) < 0)
        return r;
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d && n < 256; d = d->next)
        devs[n++] = d;
    pthread_mutex_unlock(&vm->dev_lock);
    /* Oldest first: a restore creates them in this order. */
    uint32_t kinds[256];
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
struct memplan {
    struct piece *pc;
    size_t n, cap;
    uint64_t *sums;       /* per chunk of the memory file */
    unsigned long *pages; /* per memory-file page: present */
    uint64_t npages, present;
};

static int plan_add(struct memplan *p, void *hva, uint64_t off, uint64_t len)
{
    while (len) {
        uint64_t l = CHUNK - off % CHUNK; /* never across a chunk */
        if (l > len)
            l = len;
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 1024;
            struct piece *n = realloc(p->pc, cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            p->pc = n, p->cap = cap;
        }
        p->pc[p->n++] = (struct piece){hva, off, (uint32_t)l};
        for (uint64_t q = off / PAGE; p->pages && q < (off + l) / PAGE; q++)
            p->pages[q / 64] |= 1UL << (q % 64);
        p->present += l / PAGE;
        hva = (char *)hva + l, off += l, len -= l;
    }
    return 0;
}

struct plan_ctx {
    struct rvm_vm *vm;
    const struct snap_manifest *m;
    struct memplan *p;
};

static int plan_range(void *opaque, uint64_t gpa, uint64_t len)
{
    struct plan_ctx *c = opaque;

    for (uint32_t i = 0; i < c->m->nregions; i++) {
        uint64_t g = c->m->region[i].gpa, s = c->m->region[i].size;
        if (gpa >= g && gpa - g < s)
            return plan_add(c->p, rvm_mem_hva(rvm_vm_mem(c->vm), gpa, len),
                            c->m->region[i].file_off + (gpa - g), len);
    }
    return -EFAULT;
}

/* Sums of each chunk's present pages, in file order (pieces are in file order). */
static int plan_sums(struct memplan *p)
{
    struct summer sum;

    if (summer_init(&sum, p->sums) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        summer_add(&sum, &p->pc[i]);
    summer_end(&sum);
    return 0;
}

static void plan_free(struct memplan *p)
{
    free(p->pc);
    free(p->sums);
    free(p->pages);
}

/* The memory file: full ones get their space up front (ENOSPC now, not mid-way). */
static int open_memory(int dfd, const struct snap_manifest *m, bool sparse)
{
    int fd = openat(dfd, "memory", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);

    if (fd < 0 && errno == EINVAL) /* no O_DIRECT here (tmpfs): the page cache then */
        fd = openat(dfd, "memory", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (!sparse && fallocate(fd, 0, 0, (off_t)m->mem_size) < 0 && errno != EOPNOTSUPP) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (sparse && ftruncate(fd, (off_t)m->mem_size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* The plan's pieces into fd, summed into p->sums as they go (when sum). */
static int write_plan(int fd, struct memplan *p, bool sum)
{
    struct summer s;
    int r;

    if (!sum)
        return snap_xfer(fd, p->pc, p->n, true, NULL);
    if ((r = summer_init(&s, p->sums)) < 0)
        return r;
    r = snap_xfer(fd, p->pc, p->n, true, &s);
    summer_end(&s);
    return r;
}

/* Chunk c of the memory file as it is in RAM now, summed (a full snapshot's chunk). */
static void hash_chunk(struct rvm_vm *vm, const struct snap_manifest *m, uint64_t c, uint64_t *out)
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t lo = c * CHUNK, hi = lo + CHUNK < m->mem_size ? lo + CHUNK : m->mem_size;

    if (!st)
        return;
    XXH3_64bits_reset(st);
    for (uint32_t i = 0; i < m->nregions; i++) {
        uint64_t a = m->region[i].file_off, b = a + m->region[i].size;
        uint64_t from = lo > a ? lo : a, to = hi < b ? hi : b;
        if (from < to)
            XXH3_64bits_update(
                st, rvm_mem_hva(rvm_vm_mem(vm), m->region[i].gpa + (from - a), to - from),
                to - from);
    }
    *out = XXH3_64bits_digest(st);
    XXH3_freeState(st);
}

static void plan_reset(struct memplan *p)
{
    p->n = 0;
    p->present = 0;
}

/* The pages in bits into plan; 1 when overflowed asks for everything instead. */
static int plan_bits(struct rvm_vm *vm, const struct snap_manifest *m, struct memplan *plan,
                     const unsigned long *bits, bool all)
{
    struct plan_ctx pctx = {vm, m, plan};
    uint64_t pages, ranges;
    int r = 0;

    if (!all)
        return vm_dirty_walk(vm, bits, plan_range, &pctx, &pages, &ranges);
    for (uint32_t i = 0; i < m->nregions && r == 0; i++)
        r = plan_range(&pctx, m->region[i].gpa, m->region[i].size);
    return r;
}

/* Rewrites what the plan holds, then re-sums every chunk it touched from RAM. */
static int live_round(struct rvm_vm *vm, int fd, const struct snap_manifest *m,
                      struct memplan *plan, uint64_t *sums)
{
    uint64_t last = UINT64_MAX;
    int r = write_plan(fd, plan, false);

    for (size_t i = 0; r == 0 && i < plan->n; i++) {
        uint64_t c = plan->pc[i].off / CHUNK;
        if (c != last)
            hash_chunk(vm, m, c, &sums[c]);
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
    uint64_t threshold = m->mem_size / PAGE / 1000 + 256, prev = UINT64_MAX;
    bool overflowed;
    int fd = open_memory(dfd, m, false), r;

    if (fd < 0)
        return fd;
    memset(bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
    if ((r = vm_dirty_take(vm, bits, &overflowed)) < 0) /* the interval starts here */
        goto fail;
    for (uint64_t w = 0; w < words; w++) /* what a failed snapshot must give back */
        taken[w] |= bits[w];
    plan_reset(plan);
    /* Summed as written: a page the guest changes meanwhile is dirty, its chunk summed again. */
    if ((r = plan_bits(vm, m, plan, bits, true)) < 0 || (r = write_plan(fd, plan, true)) < 0)
        goto fail;
    *written += plan->present;
    for (*rounds = 1; *rounds < LIVE_MAX_ROUNDS; (*rounds)++) {
        memset(bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
        if ((r = vm_dirty_take(vm, bits, &overflowed)) < 0)
            goto fail;
        for (uint64_t w = 0; w < words; w++)
            taken[w] |= bits[w];
        plan_reset(plan);
        if ((r = plan_bits(vm, m, plan, bits, overflowed)) < 0)
            goto fail;
        if (plan->present <= threshold || (plan->present >= prev && *rounds >= 3)) {
            vm_dirty_put_back(vm, bits); /* for the paused round */
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

int rvm_vm_snapshot(struct rvm_vm *vm, const char *dir, enum rvm_snapshot_mode mode,
                    struct rvm_snapshot_stats *stats)
{
    struct snap_manifest *m = NULL;
    struct recbuf b = {0};
    struct memplan plan = {0};
    unsigned long *bits = NULL, *live_taken = NULL;
    char tmp[PATH_MAX];
    double t0 = now_s(), tp = 0, tr = 0;
    bool paused = false, diff = mode == RVM_SNAPSHOT_DIFF, live = mode == RVM_SNAPSHOT_LIVE;
    bool taken = false, overflowed = false, quiesced = false;
    uint64_t written = 0;
    uint32_t rounds = 0;
    int dfd = -1, mfd = -1, r;
    struct vm_device *d;

    if (!vm || !dir || (mode != RVM_SNAPSHOT_FULL && !diff && !live))
        return -EINVAL;
    if (diff && (!vm->snap.have_parent || rvm_vm_dirty_mode(vm) == RVM_DIRTY_OFF)) {
        rvm_err(vm->hv, "diff snapshot: no parent (take a full snapshot first)");
        return -EINVAL;
    }
    if (diff) { /* replacing its own parent would leave the chain without it */
        char abs[PATH_MAX];
        if (realpath(dir, abs) && !strcmp(abs, vm->snap.parent)) {
            rvm_err(vm->hv, "diff snapshot: %s is its own parent's directory", dir);
            return -EINVAL;
        }
    }
    pthread_mutex_lock(&vm->dev_lock);
    for (d = vm->devices; d; d = d->next)
        if (!d->snap)
            break;
    pthread_mutex_unlock(&vm->dev_lock);
    if (d) {
        rvm_err(vm->hv, "snapshot: the VM has a device whose state cannot be saved yet");
        return -EOPNOTSUPP;
    }
    enum rvm_vm_state st = rvm_vm_state(vm);
    if (st != RVM_VM_RUNNING && st != RVM_VM_PAUSED) {
        rvm_err(vm->hv, "snapshot: the VM is neither running nor paused");
        return -EINVAL;
    }
    live = live && st == RVM_VM_RUNNING; /* a paused VM is simply copied */
    if (live && rvm_vm_dirty_mode(vm) == RVM_DIRTY_OFF && (r = rvm_vm_dirty_enable(vm)) < 0)
        return r;

    /* Everything goes into a sibling temporary directory first. */
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d-%lx", dir, (int)getpid(), (unsigned long)(now_s() * 1e6));
    if (mkdir(tmp, 0700) < 0) {
        r = -errno;
        rvm_err(vm->hv, "snapshot: cannot create %s: %s", tmp, strerror(-r));
        return r;
    }
    dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        goto out_rm;
    }
    if (!(m = calloc(1, sizeof(*m)))) {
        r = -ENOMEM;
        goto out_rm;
    }
    memcpy(m->magic, SNAP_MAGIC, sizeof(m->magic));
    m->version = SNAP_VERSION;
    m->arch = ARCH_X86;
    m->kind = diff ? SNAP_DIFF : SNAP_FULL;
    m->nvcpus = vm->nvcpus;
    m->chunk = CHUNK;
    m->nregions = rvm_mem_region_count(vm->mem);
    for (uint32_t i = 0; i < m->nregions; i++) {
        const struct rvm_mem_region *rg = rvm_mem_region(vm->mem, i);
        m->region[i].gpa = rg->gpa;
        m->region[i].size = rg->size;
        m->region[i].file_off = m->mem_size;
        m->mem_size += rg->size;
    }
    m->nchunks = (m->mem_size + CHUNK - 1) / CHUNK;
    m->id = XXH3_64bits(&t0, sizeof(t0)) ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)vm;
    if (diff) {
        m->parent_id = vm->snap.parent_id;
        memcpy(m->parent, vm->snap.parent, sizeof(m->parent));
    }
    plan.npages = m->mem_size / PAGE;
    plan.pages = diff ? calloc((plan.npages + 63) / 64, sizeof(unsigned long)) : NULL;
    plan.sums = calloc(m->nchunks, sizeof(uint64_t));
    bits = calloc(vm_dirty_words(vm) + 1, sizeof(unsigned long));
    live_taken = live ? calloc(vm_dirty_words(vm) + 1, sizeof(unsigned long)) : NULL;
    if ((diff && !plan.pages) || !plan.sums || !bits || (live && !live_taken)) {
        r = -ENOMEM;
        goto out_rm;
    }

    /* Live: copy while the guest runs, until little is left for the pause. */
    if (live && (mfd = live_precopy(vm, dfd, m, &plan, bits, live_taken, &written, &rounds)) < 0) {
        r = mfd;
        rvm_err(vm->hv, "snapshot: writing memory into %s: %s", tmp, strerror(-r));
        goto out_rm;
    }

    if (st == RVM_VM_RUNNING) {
        if ((r = rvm_vm_pause(vm)) < 0)
            goto out_rm;
        paused = true;
        tp = now_s();
    }
    if ((r = complete_io(vm)) < 0)
        goto out_rm;
    devices_each(vm, true);
    quiesced = true;

    /* State, devices quiesced: nothing writes guest memory from here on. */
    if ((r = save_state(vm, &b)) < 0)
        goto out_rm;
    m->state_size = b.len;
    m->state_sum = XXH3_64bits(b.p, b.len);
    if ((r = write_file(dfd, "state", b.p, b.len)) < 0)
        goto out_rm;

    /* Memory: what changed since the parent (or the last live round), or everything. */
    memset(bits, 0, (vm_dirty_words(vm) + 1) * sizeof(unsigned long));
    if (rvm_vm_dirty_mode(vm) != RVM_DIRTY_OFF) {
        if ((r = vm_dirty_take(vm, bits, &overflowed)) < 0)
            goto out_rm;
        taken = true;
    }
    plan_reset(&plan);
    if ((r = plan_bits(vm, m, &plan, bits, !(diff || live) || overflowed)) < 0)
        goto out_rm;
    if (live) {
        r = live_round(vm, mfd, m, &plan, plan.sums);
        written += plan.present;
        plan.present = plan.npages;
    } else if ((mfd = open_memory(dfd, m, diff)) < 0) {
        r = mfd;
    } else {
        r = write_plan(mfd, &plan, true);
        written = plan.present;
    }
    if (r == 0 && fsync(mfd) < 0)
        r = -errno;
    if (r < 0) {
        rvm_err(vm->hv, "snapshot: writing memory into %s: %s", tmp, strerror(-r));
        goto out_rm;
    }
    m->pages_present = plan.present;
    m->sums_sum = XXH3_64bits(plan.sums, m->nchunks * sizeof(uint64_t));
    if ((r = write_file(dfd, "sums", plan.sums, m->nchunks * sizeof(uint64_t))) < 0)
        goto out_rm;
    if (diff) {
        size_t pbytes = (plan.npages + 63) / 64 * sizeof(unsigned long);
        m->pages_sum = XXH3_64bits(plan.pages, pbytes);
        if ((r = write_file(dfd, "pages", plan.pages, pbytes)) < 0)
            goto out_rm;
    }
    m->self_sum = manifest_sum(m);
    if ((r = write_file(dfd, "manifest", m, sizeof(*m))) < 0 || (r = fsync_path(tmp)) < 0)
        goto out_rm;
    if ((r = publish(tmp, dir)) < 0) {
        rvm_err(vm->hv, "snapshot: publishing %s: %s", dir, strerror(-r));
        goto out_rm;
    }
    /* The next diff's parent; its interval began when the pages were taken above. */
    set_parent(vm, dir, m->id);
    if (rvm_vm_dirty_mode(vm) == RVM_DIRTY_OFF)
        rvm_vm_dirty_enable(vm); /* for diffs to come; failure only means none can follow */
    taken = false;
    r = 0;
    goto out;

out_rm:
    remove_dir(tmp);
out:
    if (taken)
        vm_dirty_put_back(vm, bits); /* not persisted: the next snapshot takes them */
    if (r < 0 && live_taken)
        vm_dirty_put_back(vm, live_taken); /* the rounds' takes too */
    if (mfd >= 0)
        close(mfd);
    if (dfd >= 0)
        close(dfd);
    if (quiesced)
        devices_each(vm, false);
    if (paused) {
        tr = now_s();
        rvm_vm_resume(vm);
    }
    if (stats) {
        memset(stats, 0, sizeof(*stats));
        stats->seconds = now_s() - t0;
        stats->pause_ms = paused ? (tr - tp) * 1e3 : 0;
        if (r == 0) {
            stats->bytes = written * PAGE;
            stats->pages = plan.present;
            stats->rounds = rounds;
            stats->gbps = stats->seconds > 0 ? (double)stats->bytes / stats->seconds / 1e9 : 0;
        }
    }
    free(bits);
    free(live_taken);
    plan_free(&plan);
    rec_free(&b);
    free(m);
    return r;
}

/* ---- restore ----------------------------------------------------------- */

#define MAX_CHAIN 64

struct snap_open {
    char dir[PATH_MAX];
    int dfd;
    struct snap_manifest *m;
    uint64_t *sums;
    unsigned long *pages; /* diff only */
};

static void snap_close(struct snap_open *s)
{
    if (s->dfd >= 0)
        close(s->dfd);
    free(s->m);
    free(s->sums);
    free(s->pages);
    memset(s, 0, sizeof(*s));
    s->dfd = -1;
}

/* Opens dir and checks its manifest, sums and pages files. */
static int snap_open(struct rvm_hv *hv, const char *dir, struct snap_open *s)
{
    size_t len;
    void *p;
    int r;

    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    s->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dfd < 0) {
        r = -errno;
        rvm_err(hv, "%s: %s", dir, strerror(-r));
        return r == -ENOENT ? -ENODATA : r;
    }
    if ((r = snap_read_file(s->dfd, "manifest", &p, &len, sizeof(*s->m))) < 0 ||
        len != sizeof(*s->m)) {
        if (r == 0)
            free(p);
        rvm_err(hv, "%s: manifest missing or truncated", dir);
        return r == -EBADMSG ? -EBADMSG : -ENODATA;
    }
    s->m = p;
    if ((r = snap_manifest_check(s->m, hv, dir)) < 0)
        return r;
    if ((r = snap_read_file(s->dfd, "sums", &p, &len, s->m->nchunks * sizeof(uint64_t))) < 0 ||
        len != s->m->nchunks * sizeof(uint64_t)) {
        if (r == 0)
            free(p);
        rvm_err(hv, "%s: sums missing or truncated", dir);
        return r == -EBADMSG ? -EBADMSG : -ENODATA;
    }
    s->sums = p;
    if (XXH3_64bits(s->sums, len) != s->m->sums_sum) {
        rvm_err(hv, "%s: sums checksum mismatch", dir);
        return -EBADMSG;
    }
    if (s->m->kind == SNAP_DIFF) {
        size_t want = (s->m->mem_size / PAGE + 63) / 64 * sizeof(unsigned long);
        if ((r = snap_read_file(s->dfd, "pages", &p, &len, want)) < 0 || len != want) {
            if (r == 0)
                free(p);
            rvm_err(hv, "%s: pages missing or truncated", dir);
            return r == -EBADMSG ? -EBADMSG : -ENODATA;
        }
        s->pages = p;
        if (XXH3_64bits(s->pages, len) != s->m->pages_sum) {
            rvm_err(hv, "%s: pages checksum mismatch", dir);
            return -EBADMSG;
        }
    }
    struct stat st;
    if (fstatat(s->dfd, "memory", &st, 0) < 0 || (uint64_t)st.st_size != s->m->mem_size) {
        rvm_err(hv, "%s: memory file missing or not %llu bytes", dir,
                (unsigned long long)s->m->mem_size);
        return -ENODATA;
    }
    return 0;
}

static bool page_present(const struct snap_open *s, uint64_t fpage)
{
    return !s->pages || (s->pages[fpage / 64] & (1UL << (fpage % 64)));
}

/* The pieces of RAM that snapshot s holds (all, or its present pages). */
static int restore_plan(struct rvm_vm *vm, const struct snap_open *s, struct memplan *p)
{
    const struct snap_manifest *m = s->m;
    int r = 0;

    p->npages = m->mem_size / PAGE;
    p->sums = calloc(m->nchunks, sizeof(uint64_t));
    if (!p->sums)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->nregions && r == 0; i++) {
        uint64_t n = m->region[i].size / PAGE;
        char *hva = rvm_mem_hva(rvm_vm_mem(vm), m->region[i].gpa, m->region[i].size);

        if (!hva)
            return -EINVAL;
        if (!s->pages) { /* a full snapshot: the whole region */
            r = plan_add(p, hva, m->region[i].file_off, m->region[i].size);
            continue;
        }
        for (uint64_t q = 0; q < n && r == 0;) {
            if (!page_present(s, file_page(m, i, q))) {
                q++;
                continue;
            }
            uint64_t e = q + 1;
            while (e < n && page_present(s, file_page(m, i, e)))
                e++;
            r = plan_add(p, hva + q * PAGE, m->region[i].file_off + q * PAGE, (e - q) * PAGE);
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
    *bytes += p.present * PAGE;
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
    if (!(chain = calloc(MAX_CHAIN, sizeof(*chain))))
        return -ENOMEM;
    for (int i = 0; i < MAX_CHAIN; i++)
        chain[i].dfd = -1;

    /* The chain: dir, its parent, ..., down to a full snapshot. */
    for (const char *d = dir;; d = chain[n - 1].m->parent) {
        if (n == MAX_CHAIN) {
            rvm_err(hv, "%s: more than %d snapshots in the chain", dir, MAX_CHAIN);
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
        set_parent(vm, dir, top->id);
    *out = vm;
    vm = NULL;
    if (stats) {
        stats->bytes = bytes;
        stats->pages = bytes / PAGE;
        stats->seconds = now_s() - t0;
        stats->gbps = stats->seconds > 0 ? (double)bytes / stats->seconds / 1e9 : 0;
        stats->pause_ms = 0;
    }
out:
    rvm_vm_destroy(vm);
    free(state);
    for (int i = 0; i < MAX_CHAIN; i++)
        if (chain[i].m || chain[i].dfd >= 0)
            snap_close(&chain[i]);
    free(chain);
    return r;
}

/* ---- merge ------------------------------------------------------------- */

/* Copies [off, off + len) of from into to at the same offset. */
static int copy_range(int from, int to, uint64_t off, uint64_t len, char *buf, size_t blen)
{
    while (len) {
        size_t n = len < blen ? (size_t)len : blen;
        ssize_t r = pread(from, buf, n, (off_t)off);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -ENODATA;
        if (pwrite(to, buf, (size_t)r, (off_t)off) != r)
            return errno ? -errno : -EIO;
        off += (uint64_t)r, len -= (uint64_t)r;
    }
    return 0;
}

int rvm_snapshot_merge(struct rvm_hv *hv, const char *dir, const char *out)
{
    struct snap_open *chain;
    struct snap_manifest *m = NULL;
    char tmp[PATH_MAX], *buf = NULL;
    void *state = NULL;
    size_t slen;
    int n = 0, r, dfd = -1, mfd = -1, sfd = -1;

    if (!dir || !out)
        return -EINVAL;
    if (!(chain = calloc(MAX_CHAIN, sizeof(*chain))) || !(buf = malloc(CHUNK))) {
        free(chain);
        return -ENOMEM;
    }
    for (int i = 0; i < MAX_CHAIN; i++)
        chain[i].dfd = -1;
    for (const char *d = dir;; d = chain[n - 1].m->parent) {
        if (n == MAX_CHAIN) {
            r = -ELOOP;
            goto out;
        }
        if ((r = snap_open(hv, d, &chain[n++])) < 0)
            goto out;
        if (n > 1 && (chain[n - 2].m->parent_id != chain[n - 1].m->id ||
                      chain[n - 2].m->mem_size != chain[n - 1].m->mem_size ||
                      chain[n - 2].m->nregions != chain[n - 1].m->nregions ||
                      memcmp(chain[n - 2].m->region, chain[n - 1].m->region,
                             sizeof(chain[n - 1].m->region)) != 0)) {
            rvm_err(hv, "%s: is not the parent %s was taken from", d, chain[n - 2].dir);
            r = -EBADMSG;
            goto out;
        }
        if (chain[n - 1].m->kind == SNAP_FULL)
            break;
    }
    if ((r = snap_read_file(chain[0].dfd, "state", &state, &slen, 1ULL << 30)) < 0 ||
        slen != chain[0].m->state_size || XXH3_64bits(state, slen) != chain[0].m->state_sum) {
        rvm_err(hv, "%s: state missing, truncated or damaged", dir);
        r = r < 0 ? r : -EBADMSG;
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d-%lx", out, (int)getpid(), (unsigned long)(now_s() * 1e6));
    if (mkdir(tmp, 0700) < 0) {
        r = -errno;
        goto out;
    }
    if ((dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = -errno;
        goto out_rm;
    }
    m = malloc(sizeof(*m));
    if (!m) {
        r = -ENOMEM;
        goto out_rm;
    }
    *m = *chain[0].m; /* the newest state and layout, as a full snapshot */
    m->kind = SNAP_FULL;
    m->parent_id = 0;
    memset(m->parent, 0, sizeof(m->parent));
    m->pages_present = m->mem_size / PAGE;
    m->pages_sum = 0;
    mfd = openat(dfd, "memory", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (mfd < 0 || ftruncate(mfd, (off_t)m->mem_size) < 0) {
        r = -errno;
        goto out_rm;
    }
    /* The base, then each diff's pages over it, oldest first. */
    for (int i = n - 1; i >= 0 && r == 0; i--) {
        const struct snap_open *s = &chain[i];
        uint64_t pages = s->m->mem_size / PAGE;

        if ((sfd = openat(s->dfd, "memory", O_RDONLY | O_CLOEXEC)) < 0) {
            r = -errno;
            break;
        }
        for (uint64_t p = 0; p < pages && r == 0;) {
            if (!page_present(s, p)) {
                p++;
                continue;
            }
            uint64_t e = p + 1;
            while (e < pages && page_present(s, e))
                e++;
            r = copy_range(sfd, mfd, p * PAGE, (e - p) * PAGE, buf, CHUNK);
            p = e;
        }
        close(sfd);
        sfd = -1;
    }
    if (r < 0)
        goto out_rm;
    /* Sums of the merged file, chunk by chunk. */
    uint64_t *sums = calloc(m->nchunks, sizeof(uint64_t));
    if (!sums) {
        r = -ENOMEM;
        goto out_rm;
    }
    for (uint64_t c = 0; c < m->nchunks && r == 0; c++) {
        uint64_t len = c * CHUNK + CHUNK <= m->mem_size ? CHUNK : m->mem_size - c * CHUNK;
        if (pread(mfd, buf, len, (off_t)(c * CHUNK)) != (ssize_t)len)
            r = -EIO;
        else
            sums[c] = XXH3_64bits(buf, len);
    }
    if (r == 0 && fsync(mfd) < 0)
        r = -errno;
    m->sums_sum = XXH3_64bits(sums, m->nchunks * sizeof(uint64_t));
    if (r == 0)
        r = write_file(dfd, "sums", sums, m->nchunks * sizeof(uint64_t));
    free(sums);
    if (r == 0)
        r = write_file(dfd, "state", state, slen);
    m->self_sum = manifest_sum(m);
    if (r == 0)
        r = write_file(dfd, "manifest", m, sizeof(*m));
    if (r == 0)
        r = fsync_path(tmp);
    if (r == 0)
        r = publish(tmp, out);
    if (r == 0)
        goto out;
out_rm:
    rvm_err(hv, "merging %s into %s: %s", dir, out, strerror(-r));
    remove_dir(tmp);
out:
    if (mfd >= 0)
        close(mfd);
    if (dfd >= 0)
        close(dfd);
    for (int i = 0; i < MAX_CHAIN; i++)
        if (chain[i].m || chain[i].dfd >= 0)
            snap_close(&chain[i]);
    free(chain);
    free(state);
    free(buf);
    free(m);
    return r;
}
