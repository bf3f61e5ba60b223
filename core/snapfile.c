/* SPDX-License-Identifier: MIT */
/*
 * The snapshot format on disk: the manifest and its checks, the small files
 * read and written whole, a snapshot directory opened for reading, and the
 * atomic publication of a finished one. See docs/snapshots.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
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
    if (m->version != SNAP_VERSION) {
        rvm_err(hv, "%s: format version %u, this ringvm reads version %u", dir, m->version,
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

int snap_write_file(int dfd, const char *name, const void *p, size_t n)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r;

    if (fd < 0)
        return -errno;
    r = fio_write_all(fd, p, n);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/*
 * Opens name in dfd for reading: a regular file and nothing else. It is
 * looked at before it is opened (a device or FIFO is never opened: opening
 * one can block or act), opened without following a symlink and without
 * blocking, and must still be the file looked at. -ENODATA when missing,
 * -EBADMSG when it is anything but a regular file.
 */
int snap_open_file(int dfd, const char *name, int flags, struct stat *st)
{
    struct stat before;
    int fd;

    if (fstatat(dfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? -ENODATA : -errno;
    if (!S_ISREG(before.st_mode))
        return -EBADMSG;
    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | flags);
    if (fd < 0)
        return errno == ENOENT ? -ENODATA : errno == ELOOP ? -EBADMSG : -errno;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_ino != before.st_ino ||
        st->st_dev != before.st_dev) {
        close(fd);
        return -EBADMSG;
    }
    return fd;
}

/*
 * Reads a whole small file of at most max bytes. -ENODATA when missing,
 * -EBADMSG when larger than max or not a regular file; *len may be short
 * of the file's size only if the file shrank meanwhile.
 */
int snap_read_file(int dfd, const char *name, void **out, size_t *len, size_t max)
{
    struct stat st;
    int fd = snap_open_file(dfd, name, 0, &st);
    char *p;
    ssize_t got;

    if (fd < 0)
        return fd;
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EBADMSG;
    }
    p = malloc((size_t)st.st_size + 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    got = fio_read_full(fd, p, (size_t)st.st_size);
    close(fd);
    if (got < 0) {
        free(p);
        return (int)got;
    }
    *out = p;
    *len = (size_t)got; /* shorter if it shrank meanwhile: the caller compares sizes */
    return 0;
}

/* The files a snapshot directory holds; nothing else is ever removed. */
static const char *const snap_files[] = {"manifest", "state", "memory", "sums", "pages"};

static bool snap_file_name(const char *name)
{
    for (size_t i = 0; i < sizeof(snap_files) / sizeof(snap_files[0]); i++)
        if (!strcmp(name, snap_files[i]))
            return true;
    return false;
}

/* Removes a snapshot's own files, then the directory (which fails if anything else is in it). */
void snap_remove_dir(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (dfd >= 0) {
        for (size_t i = 0; i < sizeof(snap_files) / sizeof(snap_files[0]); i++)
            unlinkat(dfd, snap_files[i], 0);
        close(dfd);
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

/*
 * Whether dir may be replaced by a snapshot: 0 when it does not exist or is
 * a ringvm snapshot (a directory of snapshot files only, its manifest
 * starting with the magic), -EEXIST for anything else: a directory that
 * holds anything more is someone's data, never emptied.
 */
int snap_replaceable(struct rvm_hv *hv, const char *dir)
{
    struct stat st;
    struct dirent *e;
    char magic[8] = {0};
    bool manifest = false, other = false;
    int dfd, fd;
    DIR *d;

    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode)) {
        rvm_err(hv, "%s exists and is not a snapshot directory: not replaced", dir);
        return -EEXIST;
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -errno;
    if (!(d = fdopendir(dfd))) {
        close(dfd);
        return -errno;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            other |= !snap_file_name(e->d_name);
    if (!other && (fd = snap_open_file(dirfd(d), "manifest", 0, &st)) >= 0) {
        manifest = read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
                   !memcmp(magic, SNAP_MAGIC, sizeof(magic));
        close(fd);
    }
    closedir(d);
    if (other || !manifest) {
        rvm_err(hv, "%s exists and is not a ringvm snapshot: not replaced", dir);
        return -EEXIST;
    }
    return 0;
}

/*
 * Temporary directories a dead process left beside dir (DIR.tmp-PID-...,
 * PID gone): what a crash mid-snapshot leaves. Their snapshot files go,
 * then they do (anything else in one keeps it).
 */
void snap_clean_stale(const char *dir)
{
    char up[PATH_MAX], full[PATH_MAX + 256];
    const char *base = strrchr(dir, '/');
    struct dirent *e;
    size_t blen;
    DIR *d;

    base = base ? base + 1 : dir;
    blen = strlen(base);
    parent_of(dir, up, sizeof(up));
    if (!blen || !(d = opendir(up)))
        return;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, base, blen) || strncmp(e->d_name + blen, ".tmp-", 5))
            continue;
        long pid = strtol(e->d_name + blen + 5, &end, 10);
        if (pid <= 0 || *end != '-' || pid == getpid() || kill((pid_t)pid, 0) == 0 ||
            errno != ESRCH)
            continue;
        snprintf(full, sizeof(full), "%s/%s", up, e->d_name);
        snap_remove_dir(full);
    }
    closedir(d);
}

/*
 * tmp replaces dir atomically: rename, or exchange then remove the old one.
 * The caller checked dir with snap_replaceable(); should it have changed
 * since, only snapshot files are removed from what was swapped out, and a
 * directory holding anything else stays (under tmp's name).
 */
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

static int snap_check_memory(struct rvm_hv *hv, const struct snap_open *s);

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
/*
 * A small file of the snapshot, exactly want bytes (into *out, malloc'd),
 * its XXH3 sum equal to *sum when sum is given. -ENODATA when missing or
 * truncated, -EBADMSG when too long or its sum differs (logged).
 */
static int read_exact(struct rvm_hv *hv, const struct snap_open *s, const char *name, size_t want,
                      const uint64_t *sum, void **out)
{
    size_t len;
    void *p;
    int r = snap_read_file(s->dfd, name, &p, &len, want);

    if (r == 0 && len != want) {
        free(p);
        r = -ENODATA;
    }
    if (r < 0) {
        rvm_err(hv, "%s: %s missing or truncated", s->dir, name);
        return r == -EBADMSG ? -EBADMSG : -ENODATA;
    }
    if (sum && XXH3_64bits(p, len) != *sum) {
        free(p);
        rvm_err(hv, "%s: %s checksum mismatch", s->dir, name);
        return -EBADMSG;
    }
    *out = p;
    return 0;
}

int snap_open(struct rvm_hv *hv, const char *dir, uint64_t max_mem, struct snap_open *s)
{
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
    struct stat st;
    if (fstat(s->dfd, &st) < 0)
        return -errno;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if ((r = read_exact(hv, s, "manifest", sizeof(*s->m), NULL, &p)) < 0)
        return r;
    s->m = p;
    if ((r = snap_manifest_check(s->m, hv, dir)) < 0)
        return r;
    if (s->m->mem_size > max_mem) {
        rvm_err(hv, "%s: %llu MiB of guest memory, above the limit of %llu MiB", dir,
                (unsigned long long)(s->m->mem_size >> 20), (unsigned long long)(max_mem >> 20));
        return -E2BIG;
    }
    if (s->m->state_size > SNAP_MAX_STATE) {
        rvm_err(hv, "%s: a state of %llu bytes, above %llu", dir,
                (unsigned long long)s->m->state_size, (unsigned long long)SNAP_MAX_STATE);
        return -EBADMSG;
    }
    if ((r = read_exact(hv, s, "sums", s->m->nchunks * sizeof(uint64_t), &s->m->sums_sum, &p)) < 0)
        return r;
    s->sums = p;
    if (s->m->kind == SNAP_DIFF) {
        size_t want = (s->m->mem_size / SNAP_PAGE + 63) / 64 * sizeof(unsigned long);
        if ((r = read_exact(hv, s, "pages", want, &s->m->pages_sum, &p)) < 0)
            return r;
        s->pages = p;
    }
    return snap_check_memory(hv, s);
}

/*
 * The memory file: exactly the manifest's size, and a full snapshot's
 * without holes (ringvm writes every byte of one; a sparse file claiming a
 * huge guest costs nothing to make).
 */
static int snap_check_memory(struct rvm_hv *hv, const struct snap_open *s)
{
    struct stat st;
    int fd = snap_open_file(s->dfd, "memory", 0, &st), r = 0;

    if (fd < 0) {
        rvm_err(hv, "%s: memory file missing or not a regular file", s->dir);
        return fd;
    }
    if ((uint64_t)st.st_size != s->m->mem_size) {
        rvm_err(hv, "%s: memory file is not %llu bytes", s->dir,
                (unsigned long long)s->m->mem_size);
        r = -ENODATA;
    } else if (s->m->kind == SNAP_FULL) {
        off_t hole = lseek(fd, 0, SEEK_HOLE);
        if (hole >= 0 && (uint64_t)hole < s->m->mem_size) {
            rvm_err(hv, "%s: a full snapshot's memory file has holes", s->dir);
            r = -EBADMSG;
        }
    }
    close(fd);
    return r;
}

void snap_chain_free(struct snap_chain *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        snap_close(&c->s[i]);
    free(c);
}

/* Whether the directory s is already open as one of c's first n. */
static bool snap_chain_loops(const struct snap_chain *c, int n, const struct snap_open *s)
{
    for (int i = 0; i < n; i++)
        if (c->s[i].dev == s->dev && c->s[i].ino == s->ino)
            return true;
    return false;
}

/* A diff's parent must be the very snapshot it was taken over, with the same layout. */
static int snap_chain_link(struct rvm_hv *hv, const struct snap_open *child,
                           const struct snap_open *parent)
{
    const struct snap_manifest *a = child->m, *b = parent->m;

    if (a->parent_id != b->id || a->mem_size != b->mem_size || a->nregions != b->nregions ||
        a->nvcpus != b->nvcpus || memcmp(a->region, b->region, sizeof(a->region)) != 0) {
        rvm_err(hv, "%s: is not the parent %s was taken from", parent->dir, child->dir);
        return -EBADMSG;
    }
    return 0;
}

/* Whether the manifest in dir is a valid one of snapshot id. */
static bool snap_has_id(const char *dir, uint64_t id)
{
    struct snap_manifest m;
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;
    bool yes = false;

    if (dfd < 0)
        return false;
    if ((fd = snap_open_file(dfd, "manifest", 0, &st)) >= 0) {
        yes = st.st_size == (off_t)sizeof(m) && read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m) &&
              !memcmp(m.magic, SNAP_MAGIC, sizeof(m.magic)) &&
              snap_manifest_sum(&m) == m.self_sum && m.id == id;
        close(fd);
    }
    close(dfd);
    return yes;
}

/*
 * Where child's parent is: the recorded path when trusted; else the caller's
 * directory whose snapshot has the parent's id; else beside the child (the
 * recorded directory's last name, in the directory that holds the child).
 */
static int snap_parent_path(struct rvm_hv *hv, const struct snap_lookup *lk,
                            const struct snap_open *child, char *out, size_t len)
{
    const char *rec = child->m->parent, *base = strrchr(rec, '/');
    char up[PATH_MAX];

    if (!lk || lk->trust) {
        snprintf(out, len, "%s", rec);
        return 0;
    }
    if (lk->dirs) {
        for (uint32_t i = 0; i < lk->ndirs; i++)
            if (lk->dirs[i] && snap_has_id(lk->dirs[i], child->m->parent_id)) {
                snprintf(out, len, "%s", lk->dirs[i]);
                return 0;
            }
        rvm_err(hv, "%s: its parent (id %016llx) is none of the directories given", child->dir,
                (unsigned long long)child->m->parent_id);
        return -ENODATA;
    }
    base = base ? base + 1 : rec;
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
        rvm_err(hv, "%s: its parent's name '%s' is not a directory name", child->dir, rec);
        return -EBADMSG;
    }
    parent_of(child->dir, up, sizeof(up));
    if ((size_t)snprintf(out, len, "%s/%s", up, base) >= len)
        return -ENAMETOOLONG;
    return 0;
}

int snap_chain_open(struct rvm_hv *hv, const char *dir, uint64_t max_mem,
                    const struct snap_lookup *lk, struct snap_chain **out)
{
    struct snap_chain *c = calloc(1, sizeof(*c));
    char next[PATH_MAX];
    int r;

    *out = NULL;
    if (!c)
        return -ENOMEM;
    for (const char *d = dir;; d = next) {
        if (c->n == SNAP_MAX_CHAIN) {
            rvm_err(hv, "%s: more than %d snapshots in the chain", dir, SNAP_MAX_CHAIN);
            r = -ELOOP;
            goto fail;
        }
        struct snap_open *s = &c->s[c->n++];
        if ((r = snap_open(hv, d, max_mem, s)) < 0)
            goto fail;
        if (snap_chain_loops(c, c->n - 1, s)) {
            rvm_err(hv, "%s: the chain comes back to %s", dir, d);
            r = -ELOOP;
            goto fail;
        }
        if (c->n > 1 && (r = snap_chain_link(hv, &c->s[c->n - 2], s)) < 0)
            goto fail;
        if (s->m->kind == SNAP_FULL)
            break;
        if ((r = snap_parent_path(hv, lk, s, next, sizeof(next))) < 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    snap_chain_free(c);
    return r;
}

bool snap_chain_holds(const struct snap_chain *c, int from, const char *dir)
{
    struct stat st;

    if (stat(dir, &st) < 0)
        return false;
    for (int i = from; i < c->n; i++)
        if (c->s[i].dev == st.st_dev && c->s[i].ino == st.st_ino)
            return true;
    return false;
}

/* ---- the state ---- */

struct rec_key {
    uint32_t type, instance;
};

static int rec_key_cmp(const void *a, const void *b)
{
    const struct rec_key *x = a, *y = b;

    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    return x->instance < y->instance ? -1 : x->instance > y->instance;
}

/* Whether record (type, instance) has an owner: a vCPU, the VM, or the device at that index. */
static bool rec_owned(const struct rec_hdr *h, uint32_t nvcpus, const uint32_t *kinds, uint32_t n)
{
    if (h->type >= REC_VCPU_REGS && h->type <= REC_VCPU_CPUID)
        return h->instance < nvcpus;
    if (h->type >= REC_VM_IRQCHIP && h->type <= REC_VM_TSC_KHZ)
        return h->instance < 16;
    if (h->type >= REC_DEV_UART && h->type < REC_DEVICES)
        return h->instance < n && kinds[h->instance] == h->type;
    return h->type == REC_DEVICES && h->instance == 0;
}

/*
 * The whole state in one pass before any of it is used: well formed, every
 * record of a known type with an owner (no record for a device the list
 * does not have, no device list that drops a device whose record is there),
 * none twice. The device kinds, oldest first, through kinds/n.
 */
int snap_check_state(struct rvm_hv *hv, const char *dir, const uint8_t *st, size_t len,
                     uint32_t nvcpus, uint32_t *kinds, uint32_t *n)
{
    const void *p;
    uint32_t l;
    size_t off = 0, nkeys = 0, cap = len / sizeof(struct rec_hdr);
    struct rec_key *keys;
    struct rec_hdr h;
    int r;

    if (rec_find(st, len, REC_DEVICES, 0, &p, &l) < 0 || l % sizeof(uint32_t) ||
        l / sizeof(uint32_t) > SNAP_MAX_DEVICES) {
        rvm_err(hv, "%s: the state has no device list, or a malformed one", dir);
        return -EBADMSG;
    }
    *n = l / sizeof(uint32_t);
    memcpy(kinds, p, l);
    if (!(keys = malloc((cap ? cap : 1) * sizeof(*keys))))
        return -ENOMEM;
    while ((r = rec_next(st, len, &off, &h, &p)) == 1) {
        if (!rec_owned(&h, nvcpus, kinds, *n)) {
            rvm_err(hv, "%s: a state record (type %u, instance %u) that nothing owns", dir, h.type,
                    h.instance);
            r = -EBADMSG;
            break;
        }
        keys[nkeys++] = (struct rec_key){h.type, h.instance};
    }
    if (r == 0) {
        qsort(keys, nkeys, sizeof(*keys), rec_key_cmp);
        for (size_t i = 1; i < nkeys && r == 0; i++)
            if (!rec_key_cmp(&keys[i - 1], &keys[i])) {
                rvm_err(hv, "%s: a state record (type %u, instance %u) twice", dir, keys[i].type,
                        keys[i].instance);
                r = -EBADMSG;
            }
    } else if (r < 0 && r != -EBADMSG) {
        r = -EBADMSG;
    }
    free(keys);
    return r;
}
