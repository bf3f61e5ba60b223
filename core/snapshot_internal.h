/* SPDX-License-Identifier: MIT */
/* The snapshot format, shared by snapshot.c and restore.c (and the tests). */
#ifndef RINGVM_CORE_SNAPSHOT_INTERNAL_H
#define RINGVM_CORE_SNAPSHOT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ringvm/mem.h>

struct rvm_hv;

#define SNAP_MAGIC   "RVMSNAP1"
#define SNAP_VERSION 1
#define SNAP_FULL    1
#define SNAP_DIFF    2

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

/* Checks magic, version, checksum, architecture and layout. 0, -EPROTO or -EBADMSG (logged). */
int snap_manifest_check(const struct snap_manifest *m, struct rvm_hv *hv, const char *dir);

/* A whole small file into a malloc'd buffer. */
int snap_read_file(int dfd, const char *name, void **out, size_t *len, size_t max);

struct piece;
#endif
