/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h> /* Debian's hugetlbfs.h needs size_t first */
#include <hugetlbfs.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ringvm/mem.h>

#include "mem_internal.h"
#include <stdbool.h>

#include "../core/hv_internal.h"
#include "../core/log.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21 << 26)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30 << 26)
#endif

#define SZ_2M (2ULL << 20)
#define SZ_1G (1ULL << 30)

struct rvm_mem {
    struct rvm_hv *hv;
    void *base;        /* one mapping for all regions */
    uint64_t map_size; /* bytes mapped at base */
    uint64_t total;
    uint64_t page_size;
    int fd;                   /* hugetlbfs file, or -1 */
    unsigned long *dev_dirty; /* one bit per 4 KiB of the mapping: what the VMM wrote */
    unsigned n;
    struct rvm_mem_region r[RVM_MEM_MAX_REGIONS];
};

static uint64_t backing_page_size(enum rvm_mem_backing b)
{
    switch (b) {
    case RVM_MEM_HUGE_2M:
        return SZ_2M;
    case RVM_MEM_HUGE_1G:
        return SZ_1G;
    default:
        return (uint64_t)sysconf(_SC_PAGESIZE);
    }
}

/* An unlinked hugetlbfs file: libhugetlbfs when a mount exists, memfd otherwise. */
static int hugetlb_fd(struct rvm_mem *m)
{
    int fd = -1;

    if (hugetlbfs_find_path_for_size((long)m->page_size))
        fd = hugetlbfs_unlinked_fd_for_size((long)m->page_size);
    if (fd >= 0) {
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        return fd;
    }
    fd = memfd_create("ringvm-guest", MFD_CLOEXEC | MFD_HUGETLB |
                                          (m->page_size == SZ_1G ? MFD_HUGE_1GB : MFD_HUGE_2MB));
    return fd < 0 ? -errno : fd;
}

static uint64_t pool_free(uint64_t page_size)
{
    struct rvm_hv_caps caps;

    memset(&caps, 0, sizeof(caps));
    rvm_hv_read_hugepage_pools(&caps);
    for (unsigned i = 0; i < caps.n_hugepage_pools; i++)
        if (caps.hugepages[i].page_size == page_size)
            return caps.hugepages[i].free;
    return 0;
}

/* Maps size bytes of hugetlbfs memory; the kernel reserves the pages at mmap. */
static int map_hugetlb(struct rvm_mem *m, uint64_t size)
{
    int fd = hugetlb_fd(m);

    if (fd < 0) {
        rvm_err(m->hv, "no hugetlbfs for %llu KiB pages: %s",
                (unsigned long long)(m->page_size >> 10), strerror(-fd));
        return fd;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m->base == MAP_FAILED) {
        int e = -errno;
        m->base = NULL;
        close(fd);
        if (e == -ENOMEM)
            rvm_err(m->hv,
                    "hugepage pool short: need %llu pages of %llu KiB, %llu free "
                    "(fill /proc/sys/vm/nr_hugepages, see docs/host-setup.md)",
                    (unsigned long long)(size / m->page_size),
                    (unsigned long long)(m->page_size >> 10),
                    (unsigned long long)pool_free(m->page_size));
        return e;
    }
    m->fd = fd;
    m->map_size = size;
    return 0;
}

/* Anonymous memory; for THP aligned to 2 MiB so that whole huge pages fit. */
static int map_anon(struct rvm_mem *m, uint64_t size, bool thp)
{
    uint64_t align = thp ? SZ_2M : 0;
    uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (p == MAP_FAILED)
        return -errno;
    if (align) {
        uint8_t *a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
        if (a > p)
            munmap(p, (size_t)(a - p));
        if (a + size < p + size + align)
            munmap(a + size, (size_t)(p + size + align - (a + size)));
        p = a;
        if (madvise(p, size, MADV_HUGEPAGE) < 0)
            rvm_warn(m->hv, "madvise(MADV_HUGEPAGE): %s; using 4 KiB pages", strerror(errno));
    }
    m->base = p;
    m->map_size = size;
    return 0;
}

static int bind_node(struct rvm_mem *m, int node)
{
    unsigned long mask[16];

    if (numa_available() < 0) {
        if (node == 0)
            return 0; /* a machine without NUMA is node 0 */
        rvm_err(m->hv, "NUMA node %d requested, but the host has no NUMA", node);
        return -ENODEV;
    }
    if (node > numa_max_node() || node >= (int)(sizeof(mask) * 8)) {
        rvm_err(m->hv, "NUMA node %d does not exist (max %d)", node, numa_max_node());
        return -ENODEV;
    }
    memset(mask, 0, sizeof(mask));
    mask[node / (8 * sizeof(mask[0]))] |= 1UL << (node % (8 * sizeof(mask[0])));
    if (mbind(m->base, m->map_size, MPOL_BIND, mask, sizeof(mask) * 8, 0) < 0) {
        int e = -errno;
        rvm_err(m->hv, "mbind to node %d: %s", node, strerror(-e));
        return e;
    }
    return 0;
}

static int prefault(struct rvm_mem *m)
{
    /* Unlike touching the pages, MADV_POPULATE_WRITE reports a failure instead of SIGBUS. */
    if (madvise(m->base, m->map_size, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL) {
        int e = -errno;
        rvm_err(m->hv, "prefaulting guest memory: %s", strerror(-e));
        return e;
    }
    /* Older kernels: touch every page. */
    for (uint64_t off = 0; off < m->map_size; off += m->page_size)
        ((volatile uint8_t *)m->base)[off] = 0;
    return 0;
}

static void lay_out_regions(struct rvm_mem *m)
{
    uint64_t low = m->total < RVM_MEM_LOW_LIMIT ? m->total : RVM_MEM_LOW_LIMIT;

    m->n = 1;
    m->r[0] = (struct rvm_mem_region){.gpa = 0, .size = low, .hva = m->base};
    if (m->total > low) {
        m->r[1] = (struct rvm_mem_region){
            .gpa = RVM_MEM_HIGH_BASE, .size = m->total - low, .hva = (uint8_t *)m->base + low};
        m->n = 2;
    }
}

int rvm_mem_create(struct rvm_hv *hv, const struct rvm_mem_config *config, struct rvm_mem **out)
{
    struct rvm_mem *m;
    int r;

    if (!config || !out)
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->hv = hv;
    m->fd = -1;
    m->total = config->size;
    m->page_size = backing_page_size(config->backing);
    /* 64 TiB: far above any host, far below where size + alignment could wrap. */
    if (config->size == 0 || config->size % m->page_size || config->size > RVM_MEM_MAX_SIZE) {
        rvm_err(hv, "guest memory size %llu is not a positive multiple of the %llu KiB page",
                (unsigned long long)config->size, (unsigned long long)(m->page_size >> 10));
        r = -EINVAL;
        goto err_free;
    }
    switch (config->backing) {
    case RVM_MEM_ANON:
    case RVM_MEM_THP:
        r = map_anon(m, config->size, config->backing == RVM_MEM_THP);
        break;
    case RVM_MEM_HUGE_2M:
    case RVM_MEM_HUGE_1G:
        r = map_hugetlb(m, config->size);
        break;
    default:
        r = -EINVAL;
    }
    if (r < 0)
        goto err_free;
    if (config->numa_node >= 0 && (r = bind_node(m, config->numa_node)) < 0)
        goto err_unmap;
    /*
     * The hugetlb reservation made at mmap is not per node: with a node
     * policy, fault the pages in now, so that a node that is short fails here.
     */
    bool huge = config->backing == RVM_MEM_HUGE_2M || config->backing == RVM_MEM_HUGE_1G;
    if ((config->prefault || (huge && config->numa_node >= 0)) && (r = prefault(m)) < 0)
        goto err_unmap;
    lay_out_regions(m);
    m->dev_dirty = calloc((m->map_size / 4096 + 63) / 64, sizeof(unsigned long));
    if (!m->dev_dirty) {
        r = -ENOMEM;
        goto err_unmap;
    }
    *out = m;
    return 0;

err_unmap:
    munmap(m->base, m->map_size);
    if (m->fd >= 0)
        close(m->fd);
err_free:
    free(m);
    return r;
}

void rvm_mem_destroy(struct rvm_mem *m)
{
    if (!m)
        return;
    free(m->dev_dirty);
    munmap(m->base, m->map_size);
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}

uint64_t rvm_mem_size(const struct rvm_mem *m)
{
    return m->total;
}

uint64_t rvm_mem_page_size(const struct rvm_mem *m)
{
    return m->page_size;
}

unsigned rvm_mem_region_count(const struct rvm_mem *m)
{
    return m->n;
}

const struct rvm_mem_region *rvm_mem_region(const struct rvm_mem *m, unsigned i)
{
    return i < m->n ? &m->r[i] : NULL;
}

void *rvm_mem_hva(const struct rvm_mem *m, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < m->n; i++) {
        const struct rvm_mem_region *r = &m->r[i];

        /* gpa - r->gpa cannot wrap once gpa >= r->gpa; compare lengths, not ends. */
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
            return (uint8_t *)r->hva + (gpa - r->gpa);
    }
    return NULL;
}

int rvm_mem_read(const struct rvm_mem *m, uint64_t gpa, void *buf, size_t len)
{
    const void *src = rvm_mem_hva(m, gpa, len);

    if (!src)
        return -EFAULT;
    memcpy(buf, src, len);
    return 0;
}

int rvm_mem_write(struct rvm_mem *m, uint64_t gpa, const void *buf, size_t len)
{
    void *dst = rvm_mem_hva(m, gpa, len);

    if (!dst)
        return -EFAULT;
    memcpy(dst, buf, len);
    return 0;
}

int64_t rvm_mem_resident_bytes(const struct rvm_mem *m)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t npages = m->map_size / pg;
    unsigned char *vec = malloc(npages ? npages : 1);
    int64_t n = 0;

    if (!vec)
        return -ENOMEM;
    if (mincore(m->base, m->map_size, vec) < 0) {
        int e = -errno;
        free(vec);
        return e;
    }
    for (size_t i = 0; i < npages; i++)
        n += vec[i] & 1;
    free(vec);
    return n * (int64_t)pg;
}

struct rvm_hv *mem_hv(const struct rvm_mem *m)
{
    return m->hv;
}

void mem_mark_dirty(struct rvm_mem *m, uint64_t gpa, uint64_t len)
{
    const uint8_t *hva = len ? rvm_mem_hva(m, gpa, len) : NULL;
    uint64_t first, last;

    if (!hva)
        return;
    first = (uint64_t)(hva - (const uint8_t *)m->base) / 4096;
    last = (uint64_t)(hva + len - 1 - (const uint8_t *)m->base) / 4096;
    for (uint64_t p = first; p <= last; p++) {
        unsigned long bit = 1UL << (p % 64), *w = &m->dev_dirty[p / 64];

        if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit)) /* skip the locked op if set */
            __atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
    }
}

bool mem_dirty_test(const struct rvm_mem *m, uint64_t gpa)
{
    const uint8_t *hva = rvm_mem_hva(m, gpa, 1);
    uint64_t p;

    if (!hva)
        return false;
    p = (uint64_t)(hva - (const uint8_t *)m->base) / 4096;
    return __atomic_load_n(&m->dev_dirty[p / 64], __ATOMIC_RELAXED) & (1UL << (p % 64));
}

void mem_dirty_clear(struct rvm_mem *m)
{
    for (uint64_t i = 0; i < (m->map_size / 4096 + 63) / 64; i++)
        __atomic_store_n(&m->dev_dirty[i], 0, __ATOMIC_RELAXED);
}

uint64_t mem_map_pages(const struct rvm_mem *m)
{
    return m->map_size / 4096;
}

uint64_t mem_region_first_page(const struct rvm_mem *m, unsigned i)
{
    return i < m->n ? (uint64_t)((char *)m->r[i].hva - (char *)m->base) / 4096 : 0;
}

void mem_dirty_take(struct rvm_mem *m, unsigned long *bits)
{
    for (uint64_t i = 0; i < (m->map_size / 4096 + 63) / 64; i++)
        if (__atomic_load_n(&m->dev_dirty[i], __ATOMIC_RELAXED))
            bits[i] |= __atomic_exchange_n(&m->dev_dirty[i], 0, __ATOMIC_ACQ_REL);
}
