/* SPDX-License-Identifier: MIT */
/* A snapshot chain merged into one full snapshot, without a VM. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ringvm/snapshot.h>

#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

static double now_s(void)
{
    return (double)vm_now_ns() * 1e-9;
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
    if (!(chain = calloc(SNAP_MAX_CHAIN, sizeof(*chain))) || !(buf = malloc(SNAP_CHUNK))) {
        free(chain);
        return -ENOMEM;
    }
    for (int i = 0; i < SNAP_MAX_CHAIN; i++)
        chain[i].dfd = -1;
    for (const char *d = dir;; d = chain[n - 1].m->parent) {
        if (n == SNAP_MAX_CHAIN) {
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
    m->pages_present = m->mem_size / SNAP_PAGE;
    m->pages_sum = 0;
    mfd = openat(dfd, "memory", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (mfd < 0 || ftruncate(mfd, (off_t)m->mem_size) < 0) {
        r = -errno;
        goto out_rm;
    }
    /* The base, then each diff's pages over it, oldest first. */
    for (int i = n - 1; i >= 0 && r == 0; i--) {
        const struct snap_open *s = &chain[i];
        uint64_t pages = s->m->mem_size / SNAP_PAGE;

        if ((sfd = openat(s->dfd, "memory", O_RDONLY | O_CLOEXEC)) < 0) {
            r = -errno;
            break;
        }
        for (uint64_t p = 0; p < pages && r == 0;) {
            if (!snap_page_present(s, p)) {
                p++;
                continue;
            }
            uint64_t e = p + 1;
            while (e < pages && snap_page_present(s, e))
                e++;
            r = copy_range(sfd, mfd, p * SNAP_PAGE, (e - p) * SNAP_PAGE, buf, SNAP_CHUNK);
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
        uint64_t len =
            c * SNAP_CHUNK + SNAP_CHUNK <= m->mem_size ? SNAP_CHUNK : m->mem_size - c * SNAP_CHUNK;
        if (pread(mfd, buf, len, (off_t)(c * SNAP_CHUNK)) != (ssize_t)len)
            r = -EIO;
        else
            sums[c] = XXH3_64bits(buf, len);
    }
    if (r == 0 && fsync(mfd) < 0)
        r = -errno;
    m->sums_sum = XXH3_64bits(sums, m->nchunks * sizeof(uint64_t));
    if (r == 0)
        r = snap_write_file(dfd, "sums", sums, m->nchunks * sizeof(uint64_t));
    free(sums);
    if (r == 0)
        r = snap_write_file(dfd, "state", state, slen);
    m->self_sum = snap_manifest_sum(m);
    if (r == 0)
        r = snap_write_file(dfd, "manifest", m, sizeof(*m));
    if (r == 0)
        r = snap_fsync_path(tmp);
    if (r == 0)
        r = snap_publish(tmp, out);
    if (r == 0)
        goto out;
out_rm:
    rvm_err(hv, "merging %s into %s: %s", dir, out, strerror(-r));
    snap_remove_dir(tmp);
out:
    if (mfd >= 0)
        close(mfd);
    if (dfd >= 0)
        close(dfd);
    for (int i = 0; i < SNAP_MAX_CHAIN; i++)
        if (chain[i].m || chain[i].dfd >= 0)
            snap_close(&chain[i]);
    free(chain);
    free(state);
    free(buf);
    free(m);
    return r;
}
