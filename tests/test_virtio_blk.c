/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk end to end without a guest: this test plays the driver. It
 * programs the transport through the VM's MMIO bus, writes requests into
 * guest memory, kicks through QueueNotify (the slow path to the same
 * eventfd the guest's ioeventfd signals) and reads the used ring, while the
 * device's worker does real I/O through io_uring on a file.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "../core/vm_internal.h"
#include "../mem/mem_internal.h"
#include "../virtio/blk.h"
#include "../virtio/mmio.h"
#include "common/testutil.h"

#define BASE   0xd0100000ULL
#define QSZ    16
#define DESC   0x10000ULL
#define AVAIL  0x11000ULL
#define USED   0x12000ULL
#define HDR    0x20000ULL /* 16 headers, 64 bytes apart */
#define STATUS 0x21000ULL
#define DATA   0x100000ULL /* 1 MiB of buffers */
#define DISK   (1 << 20)

struct drv {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_mem *m;
    struct virtio_blk *blk;
    char path[64];
    unsigned q; /* the queue the helpers below work on; its rings sit q * RING_STRIDE up */
    uint16_t avail_idx[2], used_seen[2];
    bool no_kick; /* request() only makes the chain available */
};

#define RING_STRIDE 0x4000ULL
#define RING(d)     ((d)->q * RING_STRIDE)

static uint32_t rd(struct drv *d, uint64_t base, uint64_t off)
{
    return mmio_rd32(d->vm, base + off);
}

static void wr(struct drv *d, uint64_t base, uint64_t off, uint32_t val)
{
    mmio_wr32(d->vm, base + off, val);
}

/* Brings the device at base up with nq queues of QSZ; returns the device features. */
static uint64_t driver_init_mq(struct drv *d, uint64_t base, unsigned nq)
{
    uint64_t feat;
    uint32_t ok = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;

    wr(d, base, VIRTIO_MMIO_STATUS, 0);
    wr(d, base, VIRTIO_MMIO_STATUS, ok);
    wr(d, base, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    feat = (uint64_t)rd(d, base, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
    wr(d, base, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    feat |= rd(d, base, VIRTIO_MMIO_DEVICE_FEATURES);
    wr(d, base, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(d, base, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    wr(d, base, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(d, base, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat & (1U << VIRTIO_BLK_F_FLUSH));
    wr(d, base, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK);
    for (unsigned q = 0; q < nq; q++) {
        wr(d, base, VIRTIO_MMIO_QUEUE_SEL, q);
        wr(d, base, VIRTIO_MMIO_QUEUE_NUM, QSZ);
        wr(d, base, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(DESC + q * RING_STRIDE));
        wr(d, base, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(AVAIL + q * RING_STRIDE));
        wr(d, base, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(USED + q * RING_STRIDE));
        wr(d, base, VIRTIO_MMIO_QUEUE_READY, 1);
        d->avail_idx[q] = d->used_seen[q] = 0;
    }
    d->q = 0;
    wr(d, base, VIRTIO_MMIO_STATUS, ok | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(rd(d, base, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    return feat;
}

static uint64_t driver_init(struct drv *d, uint64_t base)
{
    return driver_init_mq(d, base, 1);
}

/* The driver's side of the ring indices: release after the entries, acquire before reading. */
static void publish_avail(struct drv *d, uint16_t idx)
{
    __atomic_store_n((uint16_t *)rvm_mem_hva(d->m, AVAIL + RING(d) + 2, 2), idx, __ATOMIC_RELEASE);
}

static uint16_t used_index(struct drv *d)
{
    return __atomic_load_n((uint16_t *)rvm_mem_hva(d->m, USED + RING(d) + 2, 2), __ATOMIC_ACQUIRE);
}

static void desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                 uint16_t next)
{
    struct vring_desc v = {.addr = addr, .len = len, .flags = flags, .next = next};
    assert_int_equal(rvm_mem_write(d->m, DESC + RING(d) + 16ULL * i, &v, sizeof(v)), 0);
}

/* Queues a 3-descriptor request at descriptors 3*k.. and kicks; returns its head. */
static uint16_t request(struct drv *d, uint64_t base, int k, uint32_t type, uint64_t sector,
                        uint64_t buf, uint32_t len, bool dev_writes)
{
    uint32_t h[4] = {type, 0, (uint32_t)sector, (uint32_t)(sector >> 32)};
    uint16_t head = (uint16_t)(3 * k), slot = d->avail_idx[d->q] % QSZ;
    uint8_t poison = 0xee;

    rvm_mem_write(d->m, HDR + 64ULL * k, h, sizeof(h));
    rvm_mem_write(d->m, STATUS + k, &poison, 1);
    desc(d, head, HDR + 64ULL * k, 16, VRING_DESC_F_NEXT, head + 1);
    desc(d, head + 1, buf, len, VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0),
         head + 2);
    desc(d, head + 2, STATUS + k, 1, VRING_DESC_F_WRITE, 0);
    rvm_mem_write(d->m, AVAIL + RING(d) + 4 + 2 * slot, &head, 2);
    d->avail_idx[d->q]++;
    publish_avail(d, d->avail_idx[d->q]);
    if (!d->no_kick)
        wr(d, base, VIRTIO_MMIO_QUEUE_NOTIFY, d->q);
    return head;
}

/* Waits (5 s at most) for the next used entry; returns its length, checks its id. */
static uint32_t wait_used(struct drv *d, uint16_t head)
{
    struct vring_used_elem e;
    uint16_t idx;

    for (int i = 0; i < 5000; i++) {
        idx = used_index(d);
        if (idx != d->used_seen[d->q])
            break;
        sleep_ms(1);
    }
    assert_int_not_equal(idx, d->used_seen[d->q]);
    rvm_mem_read(d->m, USED + RING(d) + 4 + 8 * (d->used_seen[d->q] % QSZ), &e, sizeof(e));
    d->used_seen[d->q]++;
    assert_int_equal(e.id, head);
    return e.len;
}

static uint8_t status_of(struct drv *d, int k)
{
    uint8_t s;
    rvm_mem_read(d->m, STATUS + k, &s, 1);
    return s;
}

static int setup(void **state)
{
    static struct drv d;
    struct virtio_blk_config_opts o = {.queue_size = 64};
    int fd;

    *state = NULL;
    if (!kvm_usable())
        return 0;
    memset(&d, 0, sizeof(d));
    strcpy(d.path, "/var/tmp/ringvm-blk-XXXXXX");
    fd = mkstemp(d.path);
    if (fd < 0 || ftruncate(fd, DISK) < 0)
        return -1;
    close(fd);
    if (kvm_fixture_open(&d.hv, &d.vm, 16 << 20) < 0)
        return -1;
    d.m = rvm_vm_mem(d.vm);
    o.path = d.path;
    if (virtio_blk_attach(d.vm, BASE, 5, &o, &d.blk) < 0)
        return -1;
    *state = &d;
    return 0;
}

static int teardown(void **state)
{
    struct drv *d = *state;

    if (d) {
        kvm_fixture_close(d->hv, d->vm);
        unlink(d->path);
    }
    return 0;
}

static void test_write_read_back(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    uint8_t buf[8192], back[8192];
    uint64_t cap;
    int fd;

    assert_true(driver_init(d, BASE) & (1ULL << VIRTIO_BLK_F_FLUSH));
    assert_int_equal(vm_io_access(d->vm, RVM_BUS_MMIO, BASE + 0x100, 8, false, &cap), 0);
    assert_int_equal(cap, DISK / 512);

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    rvm_mem_write(d->m, DATA, buf, sizeof(buf));
    uint16_t h = request(d, BASE, 0, VIRTIO_BLK_T_OUT, 8, DATA, sizeof(buf), false);
    assert_int_equal(wait_used(d, h), 1); /* the status byte */
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_OK);
    fd = open(d->path, O_RDONLY);
    assert_int_equal(pread(fd, back, sizeof(back), 8 * 512), sizeof(back));
    close(fd);
    assert_memory_equal(back, buf, sizeof(buf)); /* on the disk */

    mem_dirty_clear(d->m);
    h = request(d, BASE, 1, VIRTIO_BLK_T_IN, 8, DATA + 0x10000, sizeof(buf), true);
    assert_int_equal(wait_used(d, h), sizeof(buf) + 1);
    assert_int_equal(status_of(d, 1), VIRTIO_BLK_S_OK);
    rvm_mem_read(d->m, DATA + 0x10000, back, sizeof(back));
    assert_memory_equal(back, buf, sizeof(buf));       /* into guest RAM */
    assert_true(mem_dirty_test(d->m, DATA + 0x10000)); /* and logged as device-written */
    assert_true(mem_dirty_test(d->m, DATA + 0x10000 + 4096));
    assert_true(mem_dirty_test(d->m, USED));

    /* An unaligned buffer takes the buffered path and works the same. */
    h = request(d, BASE, 2, VIRTIO_BLK_T_IN, 8, DATA + 0x20001, 512, true);
    assert_int_equal(wait_used(d, h), 513);
    rvm_mem_read(d->m, DATA + 0x20001, back, 512);
    assert_memory_equal(back, buf, 512);
}

static void test_errors_keep_serving(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    struct virtio_blk_stats st;
    char id[21] = {0};

    driver_init(d, BASE);
    uint16_t h = request(d, BASE, 0, VIRTIO_BLK_T_IN, DISK / 512, DATA, 512, true);
    assert_int_equal(wait_used(d, h), 1);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_IOERR); /* past the end */
    h = request(d, BASE, 1, 99, 0, DATA, 512, true);
    wait_used(d, h);
    assert_int_equal(status_of(d, 1), VIRTIO_BLK_S_UNSUPP);
    h = request(d, BASE, 2, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true);
    assert_int_equal(wait_used(d, h), 21);
    rvm_mem_read(d->m, DATA, id, 20);
    assert_memory_equal(id, "ringvm", 6);
    h = request(d, BASE, 3, VIRTIO_BLK_T_FLUSH, 0, DATA, 512, true);
    wait_used(d, h);
    assert_int_equal(status_of(d, 3), VIRTIO_BLK_S_OK);
    /* A buffer outside guest RAM: the chain is refused, given back with length 0. */
    h = request(d, BASE, 4, VIRTIO_BLK_T_IN, 0, 64ULL << 20, 512, true);
    assert_int_equal(wait_used(d, h), 0);
    /* And the device still serves. */
    h = request(d, BASE, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    assert_int_equal(wait_used(d, h), 513);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_OK);
    virtio_blk_stats(d->blk, &st);
    assert_int_equal(st.requests, 6);
    assert_int_equal(st.errors, 3);
}

static void test_corrupt_ring_needs_reset(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    uint16_t idx = QSZ + 3;

    driver_init(d, BASE);
    publish_avail(d, idx); /* more than the queue holds */
    wr(d, BASE, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    for (int i = 0; i < 5000 && !(rd(d, BASE, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
         i++)
        sleep_ms(1);
    assert_true(rd(d, BASE, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* A reset brings it back. */
    publish_avail(d, 0);
    driver_init(d, BASE);
    uint16_t h = request(d, BASE, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    assert_int_equal(wait_used(d, h), 513);
}

/* The io_uring fds of this process, as a bit per fd below 1024. */
static void uring_fds(uint64_t set[16])
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    char path[300], link[64];

    memset(set, 0, 16 * sizeof(set[0]));
    assert_non_null(dir);
    while ((e = readdir(dir))) {
        int fd = atoi(e->d_name);
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        n = readlink(path, link, sizeof(link) - 1);
        if (n > 0 && fd < 1024) {
            link[n] = 0;
            if (strcmp(link, "anon_inode:[io_uring]") == 0)
                set[fd / 64] |= 1ULL << (fd % 64);
        }
    }
    closedir(dir);
}

/*
 * The worker's ring fails under it (its fd now /dev/null: every
 * io_uring_enter fails): the device goes to NEEDS_RESET and interrupts the
 * guest. The old loop ended without a word, the guest's I/O hung for good.
 * A reset then brings the device back on a new ring.
 */
static void test_ring_failure_needs_reset(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    uint64_t before[16], after[16];
    int ring = -1;

    uring_fds(before);
    driver_init(d, BASE);
    uring_fds(after);
    for (int fd = 0; fd < 1024; fd++)
        if ((after[fd / 64] & ~before[fd / 64]) & (1ULL << (fd % 64))) {
            assert_int_equal(ring, -1); /* exactly one new ring: the worker's */
            ring = fd;
        }
    assert_int_not_equal(ring, -1);
    /* A request served first: the worker is in its loop (past enabling its ring). */
    assert_int_equal(wait_used(d, request(d, BASE, 1, VIRTIO_BLK_T_IN, 0, DATA, 512, true)), 513);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(null >= 0);
    assert_int_equal(dup2(null, ring), ring);
    close(null);
    request(d, BASE, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    for (int i = 0; i < 5000 && !(rd(d, BASE, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
         i++)
        sleep_ms(1);
    assert_true(rd(d, BASE, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_true(rd(d, BASE, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
    uint16_t zero = 0;
    publish_avail(d, 0);
    rvm_mem_write(d->m, USED + 2, &zero, 2); /* a new driver's rings */
    driver_init(d, BASE);
    uint16_t h = request(d, BASE, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    assert_int_equal(wait_used(d, h), 513);
}

static void test_read_only_disk(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    struct virtio_blk_config_opts o = {.path = d->path, .ro = true};
    const uint64_t base2 = BASE + 0x1000;

    assert_int_equal(virtio_blk_attach(d->vm, base2, 6, &o, NULL), 0);
    assert_true(driver_init(d, base2) & (1ULL << VIRTIO_BLK_F_RO));
    uint16_t h = request(d, base2, 0, VIRTIO_BLK_T_OUT, 0, DATA, 512, false);
    wait_used(d, h);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_IOERR);
    h = request(d, base2, 1, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    wait_used(d, h);
    assert_int_equal(status_of(d, 1), VIRTIO_BLK_S_OK);
}

/* A backing store that fills up: IOERR to the driver, and the device goes on. */
/*
 * A backend of 4 KiB sectors (a loop device made so): O_DIRECT takes only
 * 4 KiB-aligned requests there. The device used to choose it on 512-byte
 * alignment and fail every smaller request with IOERR; it now asks the
 * backend (STATX_DIOALIGN), offers blk_size 4096, and sends what cannot go
 * direct through the page cache.
 */
static void test_4k_sector_backend(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    char cmd[256], loop[64] = "";
    struct virtio_blk_config_opts o = {.path = loop};
    const uint64_t base2 = BASE + 0x3000;
    uint64_t blk_size = 0;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "losetup -f --show -b 4096 '%s' 2>/dev/null", d->path);
    if (!(p = popen(cmd, "r")) || !fgets(loop, sizeof(loop), p) || pclose(p) != 0) {
        if (p)
            pclose(p);
        print_message("SKIP: cannot make a 4 KiB-sector loop device (needs root and loop)\n");
        skip();
    }
    loop[strcspn(loop, "\n")] = 0;
    assert_int_equal(virtio_blk_attach(d->vm, base2, 8, &o, NULL), 0);
    assert_true(driver_init(d, base2) & (1ULL << VIRTIO_BLK_F_BLK_SIZE));
    assert_int_equal(vm_io_access(d->vm, RVM_BUS_MMIO, base2 + 0x100 + 20, 4, false, &blk_size), 0);
    assert_int_equal(blk_size, 4096);
    /* 512 bytes at sector 1: not direct-able here, served through the page cache. */
    memset(rvm_mem_hva(d->m, DATA, 4096), 0x5a, 4096);
    uint16_t h = request(d, base2, 0, VIRTIO_BLK_T_OUT, 1, DATA, 512, false);
    wait_used(d, h);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_OK);
    /* 4 KiB at sector 8, page-aligned: direct. Then both read back. */
    h = request(d, base2, 1, VIRTIO_BLK_T_OUT, 8, DATA, 4096, false);
    wait_used(d, h);
    assert_int_equal(status_of(d, 1), VIRTIO_BLK_S_OK);
    memset(rvm_mem_hva(d->m, DATA, 8192), 0, 8192);
    h = request(d, base2, 2, VIRTIO_BLK_T_IN, 1, DATA, 512, true);
    assert_int_equal(wait_used(d, h), 513);
    assert_int_equal(status_of(d, 2), VIRTIO_BLK_S_OK);
    h = request(d, base2, 3, VIRTIO_BLK_T_IN, 8, DATA + 4096, 4096, true);
    assert_int_equal(wait_used(d, h), 4097);
    assert_int_equal(status_of(d, 3), VIRTIO_BLK_S_OK);
    for (int i = 0; i < 512; i++)
        assert_int_equal(((uint8_t *)rvm_mem_hva(d->m, DATA, 1))[i], 0x5a);
    for (int i = 0; i < 4096; i++)
        assert_int_equal(((uint8_t *)rvm_mem_hva(d->m, DATA + 4096, 1))[i], 0x5a);
    wr(d, base2, VIRTIO_MMIO_STATUS, 0); /* the worker stops before the loop device goes */
    snprintf(cmd, sizeof(cmd), "losetup -d '%s'", loop);
    assert_int_equal(system(cmd), 0);
}

/*
 * A read the backend cuts short (the disk file shrank under the device: it
 * has 4 KiB of the 8 KiB asked): the device goes on from where it stopped,
 * the rest moves nothing and the request fails, and the 4 KiB that landed
 * in guest memory are marked dirty, exactly those. The old device failed it
 * at once and marked nothing: a diff snapshot then missed what it wrote.
 */
static void test_short_read_marks_what_landed(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;

    driver_init(d, BASE);
    memset(rvm_mem_hva(d->m, DATA, 8192), 0, 8192);
    int fd = open(d->path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t ones[4096];
    memset(ones, 0x11, sizeof(ones));
    assert_int_equal(pwrite(fd, ones, sizeof(ones), 0), (ssize_t)sizeof(ones));
    assert_int_equal(ftruncate(fd, 4096), 0);
    close(fd);
    mem_dirty_clear(d->m);
    uint16_t h = request(d, BASE, 0, VIRTIO_BLK_T_IN, 0, DATA, 8192, true);
    assert_int_equal(wait_used(d, h), 4096 + 1); /* what it wrote, and the status */
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_IOERR);
    assert_int_equal(((uint8_t *)rvm_mem_hva(d->m, DATA, 1))[4095], 0x11);
    assert_true(mem_dirty_test(d->m, DATA));
    assert_false(mem_dirty_test(d->m, DATA + 4096));
    assert_int_equal(truncate(d->path, DISK), 0); /* the fixture's size again */
}

static void test_disk_full(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    char dir[] = "/tmp/ringvm-full-XXXXXX", path[64];
    struct virtio_blk_config_opts o = {.path = path};
    const uint64_t base2 = BASE + 0x2000;
    int fd, errors = 0;

    assert_non_null(mkdtemp(dir));
    if (mount("none", dir, "tmpfs", 0, "size=64k") < 0) {
        rmdir(dir);
        print_message("SKIP: cannot mount a tiny tmpfs (needs root)\n");
        skip();
    }
    snprintf(path, sizeof(path), "%s/disk", dir);
    fd = open(path, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0 && ftruncate(fd, DISK) == 0); /* sparse: 1 MiB on 64 KiB of room */
    close(fd);
    assert_int_equal(virtio_blk_attach(d->vm, base2, 7, &o, NULL), 0);
    driver_init(d, base2);
    for (int i = 0; i < 32; i++) { /* 32 x 4 KiB at distinct places: past 64 KiB */
        uint16_t h = request(d, base2, 0, VIRTIO_BLK_T_OUT, (uint64_t)i * 16, DATA, 4096, false);
        wait_used(d, h);
        errors += status_of(d, 0) == VIRTIO_BLK_S_IOERR;
    }
    assert_true(errors > 0);
    uint16_t h = request(d, base2, 1, VIRTIO_BLK_T_IN, 0, DATA, 512, true);
    wait_used(d, h);
    assert_int_equal(status_of(d, 1), VIRTIO_BLK_S_OK); /* still serving */
    wr(d, base2, VIRTIO_MMIO_STATUS, 0);                /* stop the worker before the file goes */
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/* Several queues (VIRTIO_BLK_F_MQ): each with its own rings and notifications. */
static void test_multiqueue(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    struct virtio_blk_config_opts o = {.path = d->path, .queues = 2};
    const uint64_t base2 = BASE + 0x3000;
    uint64_t nq = 0;
    uint8_t buf[512], back[512];

    assert_int_equal(virtio_blk_attach(d->vm, base2, 8, &o, NULL), 0);
    assert_true(driver_init_mq(d, base2, 2) & (1ULL << VIRTIO_BLK_F_MQ));
    assert_int_equal(vm_io_access(d->vm, RVM_BUS_MMIO, base2 + 0x100 + 34, 2, false, &nq), 0);
    assert_int_equal(nq, 2); /* num_queues in config space */
    memset(buf, 0x77, sizeof(buf));
    rvm_mem_write(d->m, DATA, buf, sizeof(buf));
    d->q = 1; /* write through queue 1 */
    uint16_t h = request(d, base2, 0, VIRTIO_BLK_T_OUT, 100, DATA, 512, false);
    assert_int_equal(wait_used(d, h), 1);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_OK);
    d->q = 0; /* read back through queue 0 */
    h = request(d, base2, 1, VIRTIO_BLK_T_IN, 100, DATA + 4096, 512, true);
    assert_int_equal(wait_used(d, h), 513);
    rvm_mem_read(d->m, DATA + 4096, back, sizeof(back));
    assert_memory_equal(back, buf, sizeof(back));
    assert_int_equal(d->used_seen[0], 1);
    assert_int_equal(d->used_seen[1], 1);
}

static uint16_t used_flags(struct drv *d)
{
    return __atomic_load_n((uint16_t *)rvm_mem_hva(d->m, USED + RING(d), 2), __ATOMIC_ACQUIRE);
}

/*
 * A polling device (poll_us) turns notifications off while it polls, serves
 * what the driver makes available without a kick, and turns them back on
 * when the window has passed without work.
 */
static void test_polling(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    struct virtio_blk_config_opts o = {.path = d->path, .poll_us = 1000000};
    const uint64_t base2 = BASE + 0x3000;
    uint8_t buf[512], back[512];
    int i;

    assert_int_equal(virtio_blk_attach(d->vm, base2, 8, &o, NULL), 0);
    driver_init(d, base2); /* the worker may already poll: it starts with a look at the rings */
    memset(buf, 0x3c, sizeof(buf));
    rvm_mem_write(d->m, DATA, buf, sizeof(buf));
    uint16_t h = request(d, base2, 0, VIRTIO_BLK_T_OUT, 200, DATA, 512, false);
    assert_int_equal(wait_used(d, h), 1);
    assert_int_equal(status_of(d, 0), VIRTIO_BLK_S_OK);
    assert_int_equal(used_flags(d) & VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);

    d->no_kick = true; /* as the driver must, seeing NO_NOTIFY */
    h = request(d, base2, 1, VIRTIO_BLK_T_IN, 200, DATA + 4096, 512, true);
    d->no_kick = false;
    assert_int_equal(wait_used(d, h), 513);
    rvm_mem_read(d->m, DATA + 4096, back, sizeof(back));
    assert_memory_equal(back, buf, sizeof(back));

    for (i = 0; i < 5000 && (used_flags(d) & VRING_USED_F_NO_NOTIFY); i++)
        sleep_ms(1);
    assert_int_equal(used_flags(d) & VRING_USED_F_NO_NOTIFY, 0); /* the window closed */
    h = request(d, base2, 2, VIRTIO_BLK_T_IN, 200, DATA + 8192, 512, true);
    assert_int_equal(wait_used(d, h), 513); /* and a kick wakes the worker again */
}

/* The thread named rvm-blk in this process, or -1. */
static pid_t find_worker(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    pid_t found = -1;

    while (dir && found < 0 && (e = readdir(dir))) {
        char path[300], comm[32] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        if (e->d_name[0] == '.' || !(f = fopen(path, "r")))
            continue;
        if (fgets(comm, sizeof(comm), f) && strncmp(comm, "rvm-blk", 7) == 0)
            found = atoi(e->d_name);
        fclose(f);
    }
    if (dir)
        closedir(dir);
    return found;
}

/* The worker runs on the VM's I/O CPUs, and by default not on a vCPU's. */
static void test_worker_cpus(void **state)
{
    NEED_KVM(state);
    struct drv *d = *state;
    cpu_set_t set, expect;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    /* Default: the creator's CPUs less the vCPUs'. */
    d->vm->config.n_cpus = 1;
    d->vm->config.cpus[0] = 0;
    vm_io_cpus(d->vm, &set);
    assert_false(CPU_ISSET(0, &set) && CPU_COUNT(&d->vm->creator_cpus) > 1);
    assert_true(CPU_COUNT(&set) > 0);
    d->vm->config.n_cpus = 0;

    d->vm->config.n_io_cpus = 1;
    d->vm->config.io_cpus[0] = (int)(ncpu - 1);
    driver_init(d, BASE);
    pid_t tid = find_worker();
    for (int i = 0; i < 1000 && tid < 0; i++) { /* it names itself once it runs */
        sleep_ms(1);
        tid = find_worker();
    }
    assert_true(tid > 0);
    assert_int_equal(sched_getaffinity(tid, sizeof(set), &set), 0);
    CPU_ZERO(&expect);
    CPU_SET(ncpu - 1, &expect);
    assert_true(CPU_EQUAL(&set, &expect));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_write_read_back),
        T(test_errors_keep_serving),
        T(test_corrupt_ring_needs_reset),
        T(test_ring_failure_needs_reset),
        T(test_read_only_disk),
        T(test_4k_sector_backend),
        T(test_short_read_marks_what_landed),
        T(test_disk_full),
        T(test_multiqueue),
        T(test_worker_cpus),
        T(test_polling),
    };
    return cmocka_run_group_tests_name("virtio_blk", tests, NULL, NULL);
}
