/* SPDX-License-Identifier: MIT */
/*
 * Inside snapshots, shared by the files that make them (the tests read the
 * format too):
 *   snapfile.c  the on-disk format, its checks, files in and out, publishing
 *   snapmem.c   the memory plan and its transfer through io_uring
 *   snapshot.c  taking a snapshot (full, diff, live)
 *   restore.c   a VM from a snapshot chain
 *   merge.c     a chain into one full snapshot
 */
#ifndef RINGVM_CORE_SNAPSHOT_INTERNAL_H
#define RINGVM_CORE_SNAPSHOT_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <ringvm/mem.h>

struct rvm_hv;
struct rvm_vm;

#define SNAP_MAGIC "RVMSNAP1"
/*
 * 2: a virtio device's record holds its transport's state (1 kept the
 * transport in a record of its own, paired with its device by position,
 * and gave virtio-net's held receive buffers back instead of saving them).
 */
#define SNAP_VERSION 2
#define SNAP_FULL    1
#define SNAP_DIFF    2

#define SNAP_PAGE        4096ULL
#define SNAP_CHUNK       (1ULL << 20) /* checksum granule of the memory file, and the largest I/O */
#define SNAP_ARCH_X86    1
#define SNAP_MAX_CHAIN   64
#define SNAP_MAX_DEVICES 256
#define SNAP_MAX_STATE   (64ULL << 20) /* the state file: 1,024 vCPUs' records fit many times */

/* The manifest file: this struct, little-endian, as is. */
struct snap_manifest {
    char magic[8];
    uint32_t version, arch, kind, nvcpus;
    uint32_t chunk, nregions;
    uint64_t mem_size; /* bytes of RAM, = the memory file's size */
    struct {
        uint64_t gpa, size, file_off;
    } region[RVM_MEM_MAX_REGIONS];
    uint64_t nchunks;
    uint64_t pages_present; /* pages the memory file holds (all, for a full snapshot) */
    uint64_t state_size, state_sum;
    uint64_t sums_sum;  /* of the sums file */
    uint64_t pages_sum; /* of the pages file (diff) */
    uint64_t id, parent_id;
    char parent[1024]; /* the parent snapshot's directory (diff), NUL-terminated */
    uint64_t self_sum; /* XXH3 of everything above */
};

/* ---- snapfile.c: the format, files, publishing ---- */

uint64_t snap_manifest_sum(const struct snap_manifest *m);
/* Checks magic, version, checksum, architecture and layout. 0, -EPROTO or -EBADMSG (logged). */
int snap_manifest_check(const struct snap_manifest *m, struct rvm_hv *hv, const char *dir);

/* name in dfd opened for reading if it is a regular file (never a symlink, FIFO or device). */
int snap_open_file(int dfd, const char *name, int flags, struct stat *st);
/* A whole small file into a malloc'd buffer. */
int snap_read_file(int dfd, const char *name, void **out, size_t *len, size_t max);
/* name in dfd, created (mode 0600), written and fsynced. */
int snap_write_file(int dfd, const char *name, const void *p, size_t n);
int snap_fsync_path(const char *path);
/* Removes a snapshot directory's own files and then the directory. */
void snap_remove_dir(const char *path);
/* 0 when dir is absent or a ringvm snapshot, -EEXIST when it is anything else (logged). */
int snap_replaceable(struct rvm_hv *hv, const char *dir);
/* Removes what a dead process's snapshot into dir left beside it (DIR.tmp-PID-...). */
void snap_clean_stale(const char *dir);
/* tmp (a complete snapshot) replaces dir atomically. */
int snap_publish(const char *tmp, const char *dir);

/* A snapshot directory opened for reading, its small files checked. */
struct snap_open {
    char dir[PATH_MAX];
    int dfd;
    dev_t dev; /* the directory's, to recognise it under another name */
    ino_t ino;
    struct snap_manifest *m;
    uint64_t *sums;
    unsigned long *pages; /* diff only */
};

/* Refuses more guest RAM than max_mem (-E2BIG) before reading anything sized by the manifest. */
int snap_open(struct rvm_hv *hv, const char *dir, uint64_t max_mem, struct snap_open *s);
void snap_close(struct snap_open *s);

/* A snapshot and its parents, newest first, down to a full snapshot. */
struct snap_chain {
    int n;
    struct snap_open s[SNAP_MAX_CHAIN];
};

/* How a diff's parent is found (rvm_restore_params: parents, trust_snapshot_paths). */
struct snap_lookup {
    bool trust;              /* the recorded absolute path */
    const char *const *dirs; /* else one of these, by id; else beside the child */
    uint32_t ndirs;
};

/*
 * Opens the chain ending in dir, every link checked (ids, layout), a loop
 * refused (-ELOOP); lk NULL trusts the recorded paths (the VM's own chain).
 * *out is freed with snap_chain_free().
 */
int snap_chain_open(struct rvm_hv *hv, const char *dir, uint64_t max_mem,
                    const struct snap_lookup *lk, struct snap_chain **out);
void snap_chain_free(struct snap_chain *c);
/* Whether dir (by inode, whatever its spelling) is one of the chain's, from index from on. */
bool snap_chain_holds(const struct snap_chain *c, int from, const char *dir);

static inline bool snap_page_present(const struct snap_open *s, uint64_t fpage)
{
    return !s->pages || (s->pages[fpage / 64] & (1UL << (fpage % 64)));
}

/* Where guest-physical page p of region i lives in the memory file. */
static inline uint64_t snap_file_page(const struct snap_manifest *m, unsigned i, uint64_t p)
{
    return m->region[i].file_off / SNAP_PAGE + p;
}

/*
 * The whole state in one pass, before any of it is used: well formed, every
 * record of a known type with an owner (a vCPU below nvcpus, the VM, the
 * device at its index in the device list, of that kind), none twice. The
 * device kinds through kinds (SNAP_MAX_DEVICES) and n. 0, -EBADMSG (logged)
 * or -ENOMEM.
 */
int snap_check_state(struct rvm_hv *hv, const char *dir, const uint8_t *st, size_t len,
                     uint32_t nvcpus, uint32_t *kinds, uint32_t *n);

/* ---- snapmem.c: memory between RAM and the memory file ---- */

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

int summer_init(struct summer *s, uint64_t *sums);
void summer_add(struct summer *s, const struct piece *p);
void summer_end(struct summer *s);

/* Moves the pieces between RAM and fd through io_uring, summing them into sum (may be NULL). */
int snap_xfer(int fd, const struct piece *pc, size_t n, bool write, struct summer *sum);

/* The pieces of memory to move (whole RAM, or some pages) and each chunk's sum. */
struct memplan {
    struct piece *pc;
    size_t n, cap;
    uint64_t *sums;       /* per chunk of the memory file */
    unsigned long *pages; /* per memory-file page: present */
    uint64_t npages, present;
};

int plan_add(struct memplan *p, void *hva, uint64_t off, uint64_t len);
int plan_sums(struct memplan *p);
void plan_free(struct memplan *p);
void plan_reset(struct memplan *p);
/* The pages in bits (a dirty bitmap) into plan, or all of RAM when all. */
int plan_bits(struct rvm_vm *vm, const struct snap_manifest *m, struct memplan *plan,
              const unsigned long *bits, bool all);
/* The plan's pieces into fd, summed into p->sums as they go (when sum). */
int plan_write(int fd, struct memplan *p, bool sum);

/* The memory file being written: full ones get their space up front. */
int snap_open_memory(int dfd, const struct snap_manifest *m, bool sparse);
/* Chunk c of the memory file as it is in RAM now, summed (a full snapshot's chunk). */
void snap_hash_chunk(struct rvm_vm *vm, const struct snap_manifest *m, uint64_t c, uint64_t *out);

/* ---- snapshot.c ---- */

/* dir (made absolute) becomes the parent of the VM's next diff. */
void snap_set_parent(struct rvm_vm *vm, const char *dir, uint64_t id);

#endif
