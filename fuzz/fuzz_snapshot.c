/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the snapshot parsers that read file input before any
 * KVM work: the manifest check and the one-pass state check, the real code
 * of core/snapfile.c and core/snaprec.c. The first byte picks the parser;
 * for a manifest, the second says whether to make its checksum valid (so
 * that the checks behind it are reached). Whatever is accepted must hold
 * the invariants restore relies on; a violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/snaprec.h"
#include "../core/snapshot_internal.h"
#include "check.h"

static void manifest(const uint8_t *p, size_t n)
{
    struct snap_manifest m;
    bool fix_sum = n > 0 && (p[0] & 1);

    if (n > 0)
        p++, n--;
    memset(&m, 0, sizeof(m));
    memcpy(&m, p, n < sizeof(m) ? n : sizeof(m));
    if (fix_sum)
        m.self_sum = snap_manifest_sum(&m);
    if (snap_manifest_check(&m, NULL, "fuzz") != 0)
        return;
    /* Accepted: a layout restore can map without overflowing anything. */
    uint64_t off = 0;
    CHECK(m.nregions >= 1 && m.nregions <= RVM_MEM_MAX_REGIONS);
    CHECK(m.nvcpus >= 1 && m.nvcpus <= 1024);
    for (uint32_t i = 0; i < m.nregions; i++) {
        CHECK(m.region[i].file_off == off && m.region[i].size % SNAP_PAGE == 0);
        CHECK(m.region[i].size > 0 && m.region[i].size <= RVM_MEM_MAX_SIZE);
        off += m.region[i].size;
    }
    CHECK(off == m.mem_size && m.nchunks == (m.mem_size + SNAP_CHUNK - 1) / SNAP_CHUNK);
    CHECK(m.pages_present <= m.mem_size / SNAP_PAGE);
    CHECK(memchr(m.parent, 0, sizeof(m.parent)) != NULL);
}

static void state(const uint8_t *p, size_t n)
{
    uint32_t kinds[SNAP_MAX_DEVICES], ndev = 0, nvcpus;
    struct rec_hdr h;
    const void *d;
    size_t off = 0;
    int r;

    if (n < 1)
        return;
    nvcpus = 1 + p[0] % 8;
    p++, n--;
    if (snap_check_state(NULL, "fuzz", p, n, nvcpus, kinds, &ndev) != 0)
        return;
    /* Accepted: every record lies inside the state, and the walk ends cleanly. */
    CHECK(ndev <= SNAP_MAX_DEVICES);
    while ((r = rec_next(p, n, &off, &h, &d)) == 1) {
        CHECK((const uint8_t *)d >= p && (const uint8_t *)d + h.len <= p + n);
        CHECK(off <= n);
        if (h.type >= REC_DEV_UART && h.type < REC_DEVICES)
            CHECK(h.instance < ndev && kinds[h.instance] == h.type);
    }
    CHECK(r == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        state(data + 1, size - 1);
    else
        manifest(data + 1, size - 1);
    return 0;
}
