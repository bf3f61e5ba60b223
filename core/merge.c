/* SPDX-License-Identifier: MIT */
/*
 * A snapshot chain merged into one full snapshot, without a VM: the base's
 * memory with every diff's pages over it, each source chunk checked against
 * its sum as it is copied (a merge never launders a damaged snapshot into a
 * valid-looking one), and the newest state.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ringvm/snapshot.h>

#include "fileio.h"
#include "log.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

/*
 * Chunk c of snapshot s (its present pages, in order) copied from sfd into
 * mfd at the same offsets, summed on the way and checked against the
 * snapshot's sum for it. buf holds a chunk.
 */
static int merge_chunk(struct rvm_hv *hv, const struct snap_open *s, int sfd, int mfd, uint64_t c,
                       char *buf, XXH3_state_t *st)
{
    uint64_t lo = c * SNAP_CHUNK / SNAP_PAGE;
    uint64_t hi = (c + 1) * SNAP_CHUNK < s->m->mem_size ? (c + 1) * SNAP_CHUNK / SNAP_PAGE
                                                        : s->m->mem_size / SNAP_PAGE;
    bool any = false;
    int r;

    XXH3_64bits_reset(st);
    for (uint64_t p = lo; p < hi;) {
        if (!snap_page_present(s, p)) {
            p++;
            continue;
        }
        uint64_t e = p + 1;
        while (e < hi && snap_page_present(s, e))
            e++;
        size_t len = (size_t)((e - p) * SNAP_PAGE);
        if ((r = fio_pread_all(sfd, buf, len, p * SNAP_PAGE)) < 0 ||
            (r = fio_pwrite_all(mfd, buf, len, p * SNAP_PAGE)) < 0)
            return r;
        XXH3_64bits_update(st, buf, len);
        any = true;
        p = e;
    }
    /* A diff's chunk without pages has the sum 0, as the snapshot wrote it. */
    if ((any ? XXH3_64bits_digest(st) : 0) != s->sums[c]) {
        rvm_err(hv, "%s: memory chunk %llu checksum mismatch", s->dir, (unsigned long long)c);
        return -EBADMSG;
    }
    return 0;
}

/* Every present page of s over mfd, checked. */
static int merge_layer(struct rvm_hv *hv, const struct snap_open *s, int mfd, char *buf)
{
    struct stat sst;
    XXH3_state_t *st = XXH3_createState();
    int sfd = snap_open_file(s->dfd, "memory", 0, &sst), r = 0;

    if (!st || sfd < 0) {
        r = sfd < 0 ? sfd : -ENOMEM;
        goto out;
    }
    for (uint64_t c = 0; c < s->m->nchunks && r == 0; c++)
        r = merge_chunk(hv, s, sfd, mfd, c, buf, st);
out:
    if (sfd >= 0)
        close(sfd);
    XXH3_freeState(st);
    return r;
}

/* The merged memory file's own sums, chunk by chunk, written as "sums". */
static int merge_sums(int dfd, int mfd, struct snap_manifest *m, char *buf)
{
    uint64_t *sums = calloc(m->nchunks, sizeof(uint64_t));
    int r = 0;

    if (!sums)
        return -ENOMEM;
    for (uint64_t c = 0; c < m->nchunks && r == 0; c++) {
        uint64_t len =
            c * SNAP_CHUNK + SNAP_CHUNK <= m->mem_size ? SNAP_CHUNK : m->mem_size - c * SNAP_CHUNK;
        if ((r = fio_pread_all(mfd, buf, len, c * SNAP_CHUNK)) == 0)
            sums[c] = XXH3_64bits(buf, len);
    }
    if (r == 0 && fsync(mfd) < 0)
        r = -errno;
    m->sums_sum = XXH3_64bits(sums, m->nchunks * sizeof(uint64_t));
    if (r == 0)
        r = snap_write_file(dfd, "sums", sums, m->nchunks * sizeof(uint64_t));
    free(sums);
    return r;
}

/* The merged snapshot's files in tmp (already created). */
static int merge_into(struct rvm_hv *hv, const struct snap_chain *chain, const void *state,
                      size_t slen, const char *tmp, char *buf)
{
    struct snap_manifest m = *chain->s[0].m; /* the newest state and layout, as a full snapshot */
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC), mfd = -1, r = 0;

    if (dfd < 0)
        return -errno;
    m.kind = SNAP_FULL;
    m.parent_id = 0;
    memset(m.parent, 0, sizeof(m.parent));
    m.pages_present = m.mem_size / SNAP_PAGE;
    m.pages_sum = 0;
    mfd = openat(dfd, "memory", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (mfd < 0 || ftruncate(mfd, (off_t)m.mem_size) < 0)
        r = -errno;
    /* The base, then each diff's pages over it, oldest first. */
    for (int i = chain->n - 1; i >= 0 && r == 0; i--)
        r = merge_layer(hv, &chain->s[i], mfd, buf);
    if (r == 0)
        r = merge_sums(dfd, mfd, &m, buf);
    if (r == 0)
        r = snap_write_file(dfd, "state", state, slen);
    m.self_sum = snap_manifest_sum(&m);
    if (r == 0)
        r = snap_write_file(dfd, "manifest", &m, sizeof(m));
    if (mfd >= 0)
        close(mfd);
    close(dfd);
    return r;
}

int rvm_snapshot_merge(struct rvm_hv *hv, const char *dir, const char *out)
{
    struct snap_chain *chain = NULL;
    char tmp[PATH_MAX], *buf = NULL;
    void *state = NULL;
    size_t slen;
    int r;

    if (!dir || !out)
        return -EINVAL;
    struct snap_lookup lookup = {.trust = false}; /* parents beside their children */
    if ((r = snap_chain_open(hv, dir, UINT64_MAX, &lookup, &chain)) < 0)
        return r;
    if ((r = snap_replaceable(hv, out)) < 0)
        goto out;
    /* out may be dir itself (same id, same contents), never a parent another link needs. */
    if (snap_chain_holds(chain, 1, out)) {
        rvm_err(hv, "%s is in the chain of %s: not replaced", out, dir);
        r = -EEXIST;
        goto out;
    }
    if ((r = snap_read_file(chain->s[0].dfd, "state", &state, &slen, SNAP_MAX_STATE)) < 0 ||
        slen != chain->s[0].m->state_size || XXH3_64bits(state, slen) != chain->s[0].m->state_sum) {
        rvm_err(hv, "%s: state missing, truncated or damaged", dir);
        r = r < 0 ? r : -EBADMSG;
        goto out;
    }
    if (!(buf = malloc(SNAP_CHUNK))) {
        r = -ENOMEM;
        goto out;
    }
    snap_clean_stale(out);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d-%llx", out, (int)getpid(),
             (unsigned long long)(vm_now_ns() / 1000));
    if (mkdir(tmp, 0700) < 0) {
        r = -errno;
        rvm_err(hv, "merging %s: cannot create %s: %s", dir, tmp, strerror(-r));
        goto out;
    }
    if ((r = merge_into(hv, chain, state, slen, tmp, buf)) == 0 &&
        (r = snap_fsync_path(tmp)) == 0 && (r = snap_publish(tmp, out)) == 0)
        goto out;
    rvm_err(hv, "merging %s into %s: %s", dir, out, strerror(-r));
    snap_remove_dir(tmp);
out:
    snap_chain_free(chain);
    free(state);
    free(buf);
    return r;
}
