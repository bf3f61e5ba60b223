/* SPDX-License-Identifier: MIT */
/*
 * Guest memory between RAM and a snapshot's memory file: the plan of pieces
 * (never across a checksum chunk), their per-chunk sums, and the transfer
 * through io_uring.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ringvm/dirty.h>

#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

#define QD 32

/* ---- memory through io_uring ------------------------------------------- */

int summer_init(struct summer *s, uint64_t *sums)
{
    s->st = XXH3_createState();
    s->cur = UINT64_MAX;
    s->sums = sums;
    return s->st ? 0 : -ENOMEM;
}

void summer_add(struct summer *s, const struct piece *p)
{
    uint64_t c = p->off / SNAP_CHUNK;

    if (c != s->cur) {
        if (s->cur != UINT64_MAX)
            s->sums[s->cur] = XXH3_64bits_digest(s->st);
        XXH3_64bits_reset(s->st);
        s->cur = c;
    }
    XXH3_64bits_update(s->st, p->hva, p->len);
}

void summer_end(struct summer *s)
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
/* Submits what is left of piece i (all of it, or the rest after a short transfer). */
static void xfer_prep(struct io_uring *ring, int fd, const struct piece *p, uint32_t did,
                      bool write, size_t i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

    if (write)
        io_uring_prep_write(sqe, fd, (char *)p->hva + did, p->len - did, p->off + did);
    else
        io_uring_prep_read(sqe, fd, (char *)p->hva + did, p->len - did, p->off + did);
    io_uring_sqe_set_data64(sqe, i);
}

/*
 * A completion of piece i: 1 when the piece is done, 0 when the rest was
 * submitted again (a short transfer, or an interrupted one: -EINTR or
 * -EAGAIN, a few times), -errno when it failed. A transfer that moves
 * nothing is a full disk (write) or a truncated file (read).
 */
static int xfer_done(struct io_uring *ring, int fd, const struct piece *p, uint32_t *did,
                     uint8_t *tries, int res, bool write, size_t i)
{
    if ((res == -EINTR || res == -EAGAIN) && ++*tries < 8) {
        xfer_prep(ring, fd, p, *did, write, i);
        return 0;
    }
    if (res < 0)
        return res;
    if (res == 0)
        return write ? -ENOSPC : -ENODATA;
    *did += (uint32_t)res;
    if (*did < p->len) {
        xfer_prep(ring, fd, p, *did, write, i);
        return 0;
    }
    return 1;
}

int snap_xfer(int fd, const struct piece *pc, size_t n, bool write, struct summer *sum)
{
    struct io_uring ring;
    size_t next = 0, done = 0, summed = 0;
    uint8_t *landed = NULL, *tries = calloc(n ? n : 1, 1);
    uint32_t *did = calloc(n ? n : 1, sizeof(*did));
    int inflight = 0, err = 0, r;

    if (!tries || !did || (!write && sum && !(landed = calloc(n ? n : 1, 1)))) {
        err = -ENOMEM;
        goto out;
    }
    if ((err = io_uring_queue_init(QD, &ring, 0)) < 0)
        goto out;
    while (done < n) {
        for (; !err && next < n && inflight < QD; next++, inflight++)
            xfer_prep(&ring, fd, &pc[next], 0, write, next);
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

            seen++;
            r = err ? 1 : xfer_done(&ring, fd, &pc[i], &did[i], &tries[i], cqe->res, write, i);
            if (r == 0)
                continue; /* submitted again, still in flight */
            if (r < 0)
                err = r;
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
out:
    free(landed);
    free(tries);
    free(did);
    return err;
}

int plan_add(struct memplan *p, void *hva, uint64_t off, uint64_t len)
{
    while (len) {
        uint64_t l = SNAP_CHUNK - off % SNAP_CHUNK; /* never across a chunk */
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
        for (uint64_t q = off / SNAP_PAGE; p->pages && q < (off + l) / SNAP_PAGE; q++)
            p->pages[q / 64] |= 1UL << (q % 64);
        p->present += l / SNAP_PAGE;
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
int plan_sums(struct memplan *p)
{
    struct summer sum;

    if (summer_init(&sum, p->sums) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        summer_add(&sum, &p->pc[i]);
    summer_end(&sum);
    return 0;
}

void plan_free(struct memplan *p)
{
    free(p->pc);
    free(p->sums);
    free(p->pages);
}

/* The memory file: full ones get their space up front (ENOSPC now, not mid-way). */
int snap_open_memory(int dfd, const struct snap_manifest *m, bool sparse)
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
int plan_write(int fd, struct memplan *p, bool sum)
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
void snap_hash_chunk(struct rvm_vm *vm, const struct snap_manifest *m, uint64_t c, uint64_t *out)
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t lo = c * SNAP_CHUNK,
             hi = lo + SNAP_CHUNK < m->mem_size ? lo + SNAP_CHUNK : m->mem_size;

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

void plan_reset(struct memplan *p)
{
    p->n = 0;
    p->present = 0;
}

/* The pages in bits into plan; 1 when overflowed asks for everything instead. */
int plan_bits(struct rvm_vm *vm, const struct snap_manifest *m, struct memplan *plan,
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
