/* SPDX-License-Identifier: MIT */
/*
 * The snapshot format on disk: the manifest and its checks, the small files
 * read and written whole, a snapshot directory opened for reading, and the
 * atomic publication of a finished one. See docs/snapshots.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "snaprec.h"
#include "snapshot_internal.h"
#include "vm_internal.h"

/* ---- manifest ---------------------------------------------------------- */

uint64_t snap_manifest_sum(const struct snap_manifest *m)
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
    if (snap_manifest_sum(m) != m->self_sum) {
        rvm_err(hv, "%s: manifest checksum mismatch", dir);
        return -EBADMSG;
    }
    if (m->arch != SNAP_ARCH_X86) {
        rvm_err(hv, "%s: made on another architecture (%u)", dir, m->arch);
        return -EPROTO;
    }
    if (m->nregions == 0 || m->nregions > RVM_MEM_MAX_REGIONS || m->nvcpus == 0 ||
        m->nvcpus > 1024 || m->chunk != SNAP_CHUNK ||
        (m->kind != SNAP_FULL && m->kind != SNAP_DIFF) || m->parent[sizeof(m->parent) - 1] != 0) {
        rvm_err(hv, "%s: malformed manifest", dir);
        return -EBADMSG;
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < m->nregions; i++) {
        if (m->region[i].file_off != off || m->region[i].size % SNAP_PAGE ||
            m->region[i].size == 0 || m->region[i].size > RVM_MEM_MAX_SIZE) {
            rvm_err(hv, "%s: malformed memory layout", dir);
            return -EBADMSG;
        }
        off += m->region[i].size;
    }
    if (off != m->mem_size || m->nchunks != (m->mem_size + SNAP_CHUNK - 1) / SNAP_CHUNK ||
        m->pages_present > m->mem_size / SNAP_PAGE) {
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

int snap_write_file(int dfd, const char *name, const void *p, size_t n)
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
void snap_remove_dir(const char *path)
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

int snap_fsync_path(const char *path)
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
int snap_publish(const char *tmp, const char *dir)
{
    char parent[PATH_MAX];

    if (rename(tmp, dir) < 0) {
        if (errno != ENOTEMPTY && errno != EEXIST)
            return -errno;
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0)
            return -errno;
        snap_remove_dir(tmp); /* now the old snapshot */
    }
    parent_of(dir, parent, sizeof(parent));
    return snap_fsync_path(parent);
}

void snap_close(struct snap_open *s)
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
int snap_open(struct rvm_hv *hv, const char *dir, struct snap_open *s)
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
        size_t want = (s->m->mem_size / SNAP_PAGE + 63) / 64 * sizeof(unsigned long);
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
