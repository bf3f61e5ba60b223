/* SPDX-License-Identifier: MIT */
/*
 * Snapshot and restore of a 1 GiB VM, against what this host can do at all:
 *  snapshot/full_1g/ringvm       a full snapshot of a running VM (GB/s)
 *  snapshot/full_1g/host_write   the same bytes written by this process with
 *                                O_DIRECT io_uring writes (1 MiB, depth 32)
 *                                from a plain buffer, fallocate and fsync
 *                                included like the snapshot: the ceiling
 *  snapshot/live_1g/ringvm      a live snapshot while the guest rewrites 1% of
 *                                RAM at full speed (GB/s of RAM, pause_ms)
 *  snapshot/diff_1pct/ringvm     a diff after the guest rewrote 1% of its
 *                                pages (ms, and pct_of_full: its time over
 *                                the full snapshot taken just before it)
 *  restore/{lazy,eager}_1g/ringvm  ms from rvm_vm_restore() to the restored
 *                                guest's first exit (lazy without the
 *                                up-front memory check: pages load on touch),
 *                                all from one snapshot made once per process
 *  restore/floor_1g/raw          a bare VM with 1 GiB created with plain
 *                                ioctls and run to its first exit: what no
 *                                restore can beat on this host
 * Files go to /var/tmp (the root disk), removed between runs, untimed.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "bench.h"
#include "raw.h"
#include "ringvm_vm.h"

#define SIZE_1G (1ULL << 30)
#define DIR     "/var/tmp/ringvm-bench-snap"
#define CHUNK   (1U << 20)
#define DEPTH   32

static void rm_rf(const char *path)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        return;
}

/* A running 1 GiB VM with the bench guest doing cmdline; its PIO port answered. */
static int source_vm(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline,
                     bool prefault, struct bench_vm *b)
{
    struct rvm_vm_config c;
    int r;

    rvm_vm_config_init(&c);
    c.mem.size = SIZE_1G;
    c.mem.prefault = prefault; /* every page real, as in the host's buffer */
    c.dirty_ring_entries = 65536;
    if ((r = bench_vm_create_config(hv, img, cmdline, &c, b)) < 0 ||
        (r = bench_vm_add_exit_targets(b)) < 0)
        return r;
    return rvm_vm_start(b->vm);
}

static int open_all(struct bench_ctx *ctx, struct guest_image *img, struct rvm_hv **hv)
{
    img->elf = NULL;
    if (mkdir(DIR, 0700) < 0 && errno != EEXIST) {
        bench_fail(ctx, "cannot create " DIR);
        return -1;
    }
    if (guest_image_get(img) < 0 || rvm_hv_open(NULL, hv) < 0) {
        free(img->elf);
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        return -1;
    }
    bench_pin_self();
    return 0;
}

/* A snapshot case's source: the guest image, KVM, and a running 1 GiB VM. */
struct source {
    struct guest_image img;
    struct rvm_hv *hv;
    struct bench_vm b;
};

static int source_begin(struct bench_ctx *ctx, const char *cmdline, struct source *s)
{
    if (open_all(ctx, &s->img, &s->hv) < 0)
        return -1;
    if (source_vm(s->hv, &s->img, cmdline, true, &s->b) < 0) {
        bench_fail(ctx, "cannot start the source VM");
        bench_vm_destroy(&s->b);
        rvm_hv_close(s->hv);
        free(s->img.elf);
        return -1;
    }
    return 0;
}

static void source_end(struct source *s, const char *dir)
{
    bench_vm_destroy(&s->b);
    rm_rf(dir);
    rvm_hv_close(s->hv);
    free(s->img.elf);
}

/* The working set the live and diff cases rewrite: 1% of RAM. */
#define ONE_PCT_CMDLINE "test=mem-dirty ws=2621 passes=0"

static void full_ringvm(struct bench_ctx *ctx)
{
    struct source src;

    if (source_begin(ctx, "test=pio n=100000000000", &src) < 0)
        return;
    while (bench_keep_running(ctx)) {
        struct rvm_snapshot_stats st;

        rm_rf(DIR "/full");
        if (rvm_vm_snapshot(src.b.vm, DIR "/full", RVM_SNAPSHOT_FULL, &st) < 0) {
            bench_fail(ctx, "snapshot failed");
            break;
        }
        bench_set_iteration_time(ctx, st.seconds);
        bench_counter_add(ctx, "GB_per_s", st.gbps);
        bench_counter_add(ctx, "pause_ms", st.pause_ms);
    }
    source_end(&src, DIR "/full");
}

/* SIZE_1G bytes from buf into path: fallocate, O_DIRECT writes at depth, fsync. Seconds. */
static double host_write_once(const char *path, char *buf)
{
    struct io_uring ring;
    uint64_t next = 0, done = 0, n = SIZE_1G / CHUNK;
    int fd, inflight = 0, err = 0;
    double t0 = bench_now();

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0 || io_uring_queue_init(DEPTH, &ring, 0) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (fallocate(fd, 0, 0, (off_t)SIZE_1G) < 0)
        err = -errno;
    while (!err && done < n) {
        while (next < n && inflight < DEPTH) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_write(sqe, fd, buf + next * CHUNK, CHUNK, next * CHUNK);
            next++, inflight++;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        if (io_uring_submit_and_wait(&ring, 1) < 0)
            err = -EIO;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (cqe->res != (int)CHUNK)
                err = -EIO;
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        done += seen, inflight -= (int)seen;
    }
    if (!err && fsync(fd) < 0)
        err = -errno;
    io_uring_queue_exit(&ring);
    close(fd);
    return err ? -1 : bench_now() - t0;
}

static void full_host_write(struct bench_ctx *ctx)
{
    char *buf = NULL;

    if (mkdir(DIR, 0700) < 0 && errno != EEXIST) {
        bench_fail(ctx, "cannot create " DIR);
        return;
    }
    if (posix_memalign((void **)&buf, 4096, SIZE_1G) != 0) {
        bench_fail(ctx, "no memory for the buffer");
        return;
    }
    for (uint64_t i = 0; i < SIZE_1G; i += 4096)
        buf[i] = (char)i; /* populated, like a guest's RAM */
    while (bench_keep_running(ctx)) {
        unlink(DIR "/host.img");
        double s = host_write_once(DIR "/host.img", buf);
        if (s <= 0) {
            bench_fail(ctx, "host write failed");
            break;
        }
        bench_set_iteration_time(ctx, s);
        bench_counter_add(ctx, "GB_per_s", (double)SIZE_1G / s / 1e9);
    }
    unlink(DIR "/host.img");
    free(buf);
}

static void diff_ringvm(struct bench_ctx *ctx)
{
    struct source src;

    if (source_begin(ctx, ONE_PCT_CMDLINE, &src) < 0)
        return;
    volatile uint64_t *gst = rvm_mem_hva(rvm_vm_mem(src.b.vm), BG_MEM_STATE, 4096);
    int e = rvm_vm_dirty_enable(src.b.vm); /* a diff chain asks for tracking */
    if (e < 0 && e != -EALREADY) {
        bench_fail(ctx, "cannot turn dirty tracking on");
        return;
    }
    while (bench_keep_running(ctx)) {
        struct rvm_snapshot_stats full, diff;

        rm_rf(DIR "/base");
        rm_rf(DIR "/diff");
        if (rvm_vm_snapshot(src.b.vm, DIR "/base", RVM_SNAPSHOT_FULL, &full) < 0) {
            bench_fail(ctx, "full snapshot failed");
            break;
        }
        /* One whole pass over the working set after the full snapshot. */
        uint64_t p = gst[BG_MEM_ST_PASSES_DONE];
        for (int i = 0; i < 20000 && gst[BG_MEM_ST_PASSES_DONE] < p + 2; i++)
            usleep(1000);
        if (rvm_vm_snapshot(src.b.vm, DIR "/diff", RVM_SNAPSHOT_DIFF, &diff) < 0) {
            bench_fail(ctx, "diff snapshot failed");
            break;
        }
        bench_set_iteration_time(ctx, diff.seconds);
        bench_counter_add(ctx, "ms", diff.seconds * 1e3);
        bench_counter_add(ctx, "pct_of_full", 100 * diff.seconds / full.seconds);
        bench_counter_add(ctx, "pages", (double)diff.pages);
    }
    rm_rf(DIR "/base");
    source_end(&src, DIR "/diff");
}

/* Live: the guest rewrites 1% of its RAM at full speed throughout. */
static void live_ringvm(struct bench_ctx *ctx)
{
    struct source src;

    if (source_begin(ctx, ONE_PCT_CMDLINE, &src) < 0)
        return;
    while (bench_keep_running(ctx)) {
        struct rvm_snapshot_stats st;

        rm_rf(DIR "/live");
        if (rvm_vm_snapshot(src.b.vm, DIR "/live", RVM_SNAPSHOT_LIVE, &st) < 0) {
            bench_fail(ctx, "live snapshot failed");
            break;
        }
        bench_set_iteration_time(ctx, st.seconds);
        bench_counter_add(ctx, "GB_per_s", (double)SIZE_1G / st.seconds / 1e9);
        bench_counter_add(ctx, "pause_ms", st.pause_ms);
        bench_counter_add(ctx, "rounds", st.rounds);
    }
    source_end(&src, DIR "/live");
}

/* The first exit of a restored guest: its time, and the VM is ended. */
struct first_exit {
    struct rvm_vm *vm;
    double t;
};

static int first_exit_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct first_exit *f = opaque;

    (void)off, (void)size, (void)data;
    if (f->t == 0) {
        f->t = bench_now();
        rvm_vm_request_end(f->vm, RVM_END_STOPPED, 0);
    }
    return 0;
}

static const struct rvm_io_ops first_exit_ops = {.write = first_exit_write};

static void remove_src(void)
{
    rm_rf(DIR "/src");
}

/*
 * The snapshot the restore cases restore: made once per process (its first
 * restore finds the memory file on disk, the others in the page cache, as
 * when a host restores many VMs from one snapshot).
 */
static int restore_source(struct rvm_hv *hv, const struct guest_image *img)
{
    static int made; /* 1 made, -1 failed */
    struct bench_vm b;
    int r;

    if (made)
        return made > 0 ? 0 : -1;
    rm_rf(DIR "/src");
    r = source_vm(hv, img, "test=pio n=100000000000", false, &b);
    if (r == 0)
        r = rvm_vm_snapshot(b.vm, DIR "/src", RVM_SNAPSHOT_FULL, NULL);
    bench_vm_destroy(&b);
    made = r == 0 ? 1 : -1;
    if (r == 0)
        atexit(remove_src);
    return r;
}

static void restore_case(struct bench_ctx *ctx, bool lazy)
{
    struct guest_image img;
    struct rvm_hv *hv;
    int r;

    if (open_all(ctx, &img, &hv) < 0)
        return;
    if (restore_source(hv, &img) < 0) {
        bench_fail(ctx, "cannot make the snapshot to restore");
        goto out;
    }
    while (bench_keep_running(ctx)) {
        struct rvm_restore_params p;
        struct first_exit f = {NULL, 0};
        struct rvm_vm_result res;
        double t0 = bench_now();

        rvm_restore_params_init(&p);
        p.lazy = lazy;
        p.verify_memory = !lazy;
        r = rvm_vm_restore(hv, DIR "/src", &p, &f.vm, NULL);
        if (r == 0)
            r = rvm_vm_map_io(f.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &first_exit_ops, &f);
        if (r == 0)
            r = rvm_vm_start(f.vm);
        if (r == 0)
            r = rvm_vm_wait(f.vm, 60000, &res);
        rvm_vm_destroy(f.vm);
        if (r < 0 || f.t == 0) {
            bench_fail(ctx, "restore failed or the guest never ran");
            break;
        }
        bench_set_iteration_time(ctx, f.t - t0);
        bench_counter_add(ctx, "ms", (f.t - t0) * 1e3);
    }
out:
    rvm_hv_close(hv);
    free(img.elf);
}

static void restore_lazy(struct bench_ctx *ctx)
{
    restore_case(ctx, true);
}

static void restore_eager(struct bench_ctx *ctx)
{
    restore_case(ctx, false);
}

static void restore_floor(struct bench_ctx *ctx)
{
    bench_raw_first_exit(ctx, SIZE_1G, true, "ms", 1e3);
}

const struct bench_case bench_snap_cases[] = {
    {"snapshot/full_1g/host_write", full_host_write, true, 1, "GB_per_s", 5, NULL},
    {"snapshot/full_1g/ringvm", full_ringvm, true, 1, "GB_per_s", 5, "snapshot/full_1g/host_write"},
    {"snapshot/live_1g/ringvm", live_ringvm, true, 1, "GB_per_s", 5, "snapshot/full_1g/host_write"},
    {"snapshot/diff_1pct/ringvm", diff_ringvm, true, 1, "pct_of_full", 5, NULL},
    {"restore/floor_1g/raw", restore_floor, true, 1, "ms", 10, NULL},
    {"restore/lazy_1g/ringvm", restore_lazy, true, 1, "ms", 10, "restore/floor_1g/raw"},
    {"restore/eager_1g/ringvm", restore_eager, true, 1, "ms", 5, "restore/floor_1g/raw"},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
