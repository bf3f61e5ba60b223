/* SPDX-License-Identifier: MIT */
/*
 * Snapshots against KVM: the bench guest's mem-dirty rewrites a working set
 * pass after pass and checks each page before overwriting it; a VM
 * snapshotted mid-run and restored must finish the run with no mismatch and
 * without starting over (no second START line). Then the refusals: flipped
 * bytes, truncation, a newer format, a parent that is not the parent, and a
 * full disk, after which the older snapshot still restores.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../core/snapshot_internal.h"
#include "../core/vm_internal.h"
#include "../guest/abi.h"
#include "common/scratch.h"
#include "common/testutil.h"

#define WS     2048
#define PASSES 200

static char root[64];

static int group_setup(void **state)
{
    (void)state;
    strcpy(root, "/var/tmp/ringvm-snap-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path(const char *name)
{
    static char p[4][128];
    static int i;

    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", root, name);
    return p[i];
}

static volatile uint64_t *guest_state(struct rvm_vm *vm)
{
    return rvm_mem_hva(rvm_vm_mem(vm), BG_MEM_STATE, 4096);
}

/* Waits until the guest has done at least passes passes; the count. */
static uint64_t wait_passes(struct rvm_vm *vm, uint64_t passes)
{
    volatile uint64_t *st = guest_state(vm);

    for (int i = 0; i < 30000 && st[BG_MEM_ST_PASSES_DONE] < passes; i++)
        sleep_ms(1);
    assert_true(st[BG_MEM_ST_PASSES_DONE] >= passes);
    return st[BG_MEM_ST_PASSES_DONE];
}

static void vm_config(struct rvm_vm_config *c, enum rvm_mem_backing backing)
{
    rvm_vm_config_init(c);
    c->mem.size = 64 << 20;
    c->mem.backing = backing;
}

/* A restored VM runs to the end of the guest's run: all passes, no mismatch, no restart. */
static void finish_restored_n(struct rvm_vm *vm, struct console *con, uint64_t passes)
{
    struct rvm_vm_result res;
    uint64_t v = 0;

    assert_int_equal(rvm_vm_start(vm), 0);
    assert_int_equal(rvm_vm_wait(vm, 120000, &res), 0);
    if (res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("restored guest said: %s\n", con->buf);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_null(strstr(con->buf, "START")); /* continued, not started over */
    assert_int_equal(bg_result_value(con->buf, "passes", &v), 0);
    assert_int_equal(v, passes);
    assert_int_equal(bg_result_value(con->buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bg_result_value(con->buf, "counter", &v), 0);
    assert_int_equal(v, passes * WS);
}

static void finish_restored(struct rvm_vm *vm, struct console *con)
{
    finish_restored_n(vm, con, PASSES);
}

/* Lazy restores of restore() check every chunk first (they do not by default). */
static bool lazy_verify;
/* The disk restore() hands for the snapshot's virtio-blk device, if any. */
static const char *restore_disk;
/* The rate limits the next disk VM starts with and the restore hands its disk. */
static struct rvm_rate_limit start_limit, restore_limit;

static struct rvm_vm *restore(struct rvm_hv *hv, const char *dir, bool lazy,
                              enum rvm_mem_backing backing, struct console *con, int *err)
{
    struct rvm_restore_params p;
    struct rvm_snapshot_stats st;
    struct rvm_vm *vm = NULL;

    rvm_restore_params_init(&p);
    p.lazy = lazy;
    p.verify_memory = lazy_verify;
    struct rvm_restore_disk disk = {.path = restore_disk, .fd = -1, .limit = restore_limit};
    if (restore_disk) {
        p.disks = &disk;
        p.ndisks = 1;
    }
    p.backing = backing;
    p.uart.out = console_out;
    p.uart.out_opaque = con;
    p.track_dirty = true;
    *err = rvm_vm_restore(hv, dir, &p, &vm, &st);
    if (*err == 0 && !lazy)
        assert_true(st.bytes > 0);
    return vm;
}

/* Source VM mid-run, one full snapshot, then restored (eager or lazy) to run to the end. */
static void full_round_trip(bool lazy, enum rvm_mem_backing backing, const char *name)
{
    struct rvm_vm_config c;
    struct rvm_snapshot_stats st;
    struct console con = {.len = 0};
    struct tvm t;
    int err;
    char cmd[96];

    snprintf(cmd, sizeof(cmd), "test=mem-dirty ws=%d passes=%d", WS, PASSES);
    vm_config(&c, backing);
    tvm_create(&t, cmd, &c);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    uint64_t at = wait_passes(t.vm, 3);
    assert_int_equal(rvm_vm_snapshot(t.vm, path(name), RVM_SNAPSHOT_FULL, &st), 0);
    assert_true(at < PASSES); /* mid-run */
    assert_int_equal(st.bytes, 64 << 20);
    assert_true(st.pause_ms > 0 && st.gbps > 0);
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_RUNNING); /* left as it was */
    tvm_destroy(&t);

    struct rvm_hv *hv;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    struct rvm_vm *vm = restore(hv, path(name), lazy, backing, &con, &err);
    assert_int_equal(err, 0);
    assert_true(guest_state(vm)[BG_MEM_ST_PASSES_DONE] >= at);
    finish_restored(vm, &con);
    rvm_vm_destroy(vm);

    /* mem-verify: restored again, told to check everything and report where it continued. */
    memset(&con, 0, sizeof(con));
    vm = restore(hv, path(name), lazy, backing, &con, &err);
    assert_int_equal(err, 0);
    volatile uint64_t *gs = guest_state(vm);
    uint64_t counter = gs[BG_MEM_ST_PASS] * WS + gs[BG_MEM_ST_PAGE], v;
    gs[BG_MEM_ST_VERIFY] = 1;
    struct rvm_vm_result res;
    assert_int_equal(rvm_vm_start(vm), 0);
    assert_int_equal(rvm_vm_wait(vm, 60000, &res), 0);
    assert_non_null(strstr(con.buf, "RESULT test=mem-verify"));
    assert_int_equal(bg_result_value(con.buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bg_result_value(con.buf, "counter", &v), 0);
    assert_true(v >= counter && v <= counter + 1); /* from where it was (a page at most on) */
    assert_true(counter > 0);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

static void test_full_eager(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    full_round_trip(false, RVM_MEM_ANON, "full-eager");
}

static void test_full_lazy(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    full_round_trip(true, RVM_MEM_ANON, "full-lazy");
}

static void test_full_hugepages(void **state)
{
    long before;
    (void)state;
    SKIP_WITHOUT_KVM();
    if (hugepool_reserve(72, &before) < 0) { /* two 64 MiB VMs, with slack */
        print_message("SKIP: cannot reserve 72 2 MiB hugepages (needs root)\n");
        skip();
    }
    full_round_trip(false, RVM_MEM_HUGE_2M, "full-huge");
    hugepool_release(before);
}

/* Full, then two diffs while the guest runs; the newest diff restores the whole chain. */
static void test_diff_chain(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct rvm_snapshot_stats full, d1, d2;
    struct console con = {.len = 0};
    struct tvm t;
    char cmd[96];
    int err;

    snprintf(cmd, sizeof(cmd), "test=mem-dirty ws=%d passes=%d gap=2000", WS, PASSES);
    vm_config(&c, RVM_MEM_ANON);
    tvm_create(&t, cmd, &c);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("d0"), RVM_SNAPSHOT_DIFF, NULL), -EINVAL);
    assert_int_equal(rvm_vm_dirty_enable(t.vm), 0); /* a diff chain asks for tracking */
    assert_int_equal(rvm_vm_start(t.vm), 0);
    uint64_t at = wait_passes(t.vm, 2);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("base"), RVM_SNAPSHOT_FULL, &full), 0);
    wait_passes(t.vm, at + 2);
    /* A diff over its own parent's directory would leave the chain without its base. */
    assert_int_equal(rvm_vm_snapshot(t.vm, path("base"), RVM_SNAPSHOT_DIFF, NULL), -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("d1"), RVM_SNAPSHOT_DIFF, &d1), 0);
    wait_passes(t.vm, at + 4);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("d2"), RVM_SNAPSHOT_DIFF, &d2), 0);
    tvm_destroy(&t);
    /* A diff holds the working set and a few pages more, not all of RAM. */
    assert_true(d1.pages >= WS && d1.pages < full.pages / 4);
    assert_true(d2.pages >= WS && d2.pages < full.pages / 4);

    struct rvm_hv *hv;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    struct rvm_vm *vm = restore(hv, path("d2"), false, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, 0);
    finish_restored(vm, &con);
    rvm_vm_destroy(vm);
    /* Lazy too: the base mapped, the diffs read over it. */
    memset(&con, 0, sizeof(con));
    vm = restore(hv, path("d2"), true, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, 0);
    finish_restored(vm, &con);
    rvm_vm_destroy(vm);
    /* Merged into one full snapshot, which restores the same without its chain. */
    assert_int_equal(rvm_snapshot_merge(hv, path("d2"), path("merged")), 0);
    char cmd2[256];
    snprintf(cmd2, sizeof(cmd2), "rm -rf '%s' '%s' '%s'", path("base"), path("d1"), path("d2"));
    assert_int_equal(system(cmd2), 0);
    memset(&con, 0, sizeof(con));
    vm = restore(hv, path("merged"), true, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, 0);
    finish_restored(vm, &con);
    rvm_vm_destroy(vm);
    assert_int_equal(rvm_snapshot_merge(hv, path("d2"), path("merged2")), -ENODATA); /* gone */
    rvm_hv_close(hv);
}

/*
 * Live: the guest keeps dirtying (at full speed, then slowed) while RAM is
 * copied; the pause covers only the rest. Restored, the guest finishes with
 * every page as it last wrote it.
 */
static void live_round_trip(const char *gap, const char *name)
{
    struct rvm_vm_config c;
    struct rvm_snapshot_stats st;
    struct console con = {.len = 0};
    struct tvm t;
    char cmd[128];
    int err;

    /* More passes than elsewhere: a slow (sanitized) build must not see the guest finish. */
    snprintf(cmd, sizeof(cmd), "test=mem-dirty ws=%d passes=%d %s", WS, PASSES * 3, gap);
    vm_config(&c, RVM_MEM_ANON);
    c.dirty_ring_entries = 4096;
    tvm_create(&t, cmd, &c);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    uint64_t at = wait_passes(t.vm, 2);
    assert_int_equal(rvm_vm_snapshot(t.vm, path(name), RVM_SNAPSHOT_LIVE, &st), 0);
    assert_true(guest_state(t.vm)[BG_MEM_ST_PASSES_DONE] < PASSES * 3);
    assert_true(st.rounds >= 1);
    assert_true(st.bytes >= (uint64_t)(64 << 20)); /* everything once, and rewrites */
    assert_true(st.pause_ms > 0 && st.pause_ms < st.seconds * 1e3);
    assert_int_equal(st.pages, (64 << 20) / 4096);
    print_message("    live (%s): %u rounds, %.1f MiB written, pause %.2f ms of %.1f ms\n", gap,
                  st.rounds, st.bytes / 1048576.0, st.pause_ms, st.seconds * 1e3);
    tvm_destroy(&t);
    (void)at;

    struct rvm_hv *hv;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    struct rvm_vm *vm = restore(hv, path(name), false, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, 0);
    finish_restored_n(vm, &con, PASSES * 3);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

static void test_live(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    live_round_trip("gap=0", "live-fast");
    live_round_trip("gap=50000", "live-slow");
}

/* A paused, finished-writing VM snapshotted as the sample the refusals below damage. */
static void make_sample(const char *name)
{
    struct rvm_vm_config c;
    struct tvm t;

    vm_config(&c, RVM_MEM_ANON);
    tvm_create(&t, "test=mem-dirty ws=64 passes=0", &c);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    wait_passes(t.vm, 1);
    assert_int_equal(rvm_vm_pause(t.vm), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, path(name), RVM_SNAPSHOT_FULL, NULL), 0);
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_PAUSED);
    tvm_destroy(&t);
}

static int try_restore(const char *dir, bool lazy)
{
    struct console con = {.len = 0};
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    int err;

    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    vm = restore(hv, dir, lazy, RVM_MEM_ANON, &con, &err);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    return err;
}

static void copy_sample(const char *from, const char *to)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    char f[256];

    make_sample("sample");
    assert_int_equal(try_restore(path("sample"), false), 0);

    /* A flipped byte in guest memory: eager, and lazy with verification (only then). */
    copy_sample(path("sample"), path("bad"));
    snprintf(f, sizeof(f), "%s/memory", path("bad"));
    flip_byte(f, (off_t)BG_MEM_ADDR + 12345);
    assert_int_equal(try_restore(path("bad"), false), -EBADMSG);
    lazy_verify = true;
    assert_int_equal(try_restore(path("bad"), true), -EBADMSG);
    lazy_verify = false;
    /* Lazy, unasked, reads no guest memory (the pages load as touched, unchecked). */
    assert_int_equal(try_restore(path("bad"), true), 0);

    /* A flipped byte in the state. */
    copy_sample(path("sample"), path("bad"));
    snprintf(f, sizeof(f), "%s/state", path("bad"));
    flip_byte(f, 100);
    assert_int_equal(try_restore(path("bad"), false), -EBADMSG);

    /* A truncated memory file, a missing state. */
    copy_sample(path("sample"), path("bad"));
    snprintf(f, sizeof(f), "%s/memory", path("bad"));
    assert_int_equal(truncate(f, 32 << 20), 0);
    assert_int_equal(try_restore(path("bad"), true), -ENODATA);
    copy_sample(path("sample"), path("bad"));
    snprintf(f, sizeof(f), "%s/state", path("bad"));
    assert_int_equal(unlink(f), 0);
    assert_int_equal(try_restore(path("bad"), false), -ENODATA);

    /* A newer format (its manifest otherwise valid). */
    copy_sample(path("sample"), path("bad"));
    snprintf(f, sizeof(f), "%s/manifest", path("bad"));
    struct snap_manifest m;
    int fd = open(f, O_RDWR);
    assert_int_equal(pread(fd, &m, sizeof(m), 0), sizeof(m));
    m.version = SNAP_VERSION + 1;
    m.self_sum = XXH3_64bits(&m, offsetof(struct snap_manifest, self_sum));
    assert_int_equal(pwrite(fd, &m, sizeof(m), 0), sizeof(m));
    close(fd);
    assert_int_equal(try_restore(path("bad"), false), -EPROTO);

    /* A chunk count that does not match the memory size (checksum valid): refused. */
    copy_sample(path("sample"), path("bad"));
    fd = open(f, O_RDWR);
    assert_int_equal(pread(fd, &m, sizeof(m), 0), sizeof(m));
    m.nchunks = 1;
    m.self_sum = XXH3_64bits(&m, offsetof(struct snap_manifest, self_sum));
    assert_int_equal(pwrite(fd, &m, sizeof(m), 0), sizeof(m));
    close(fd);
    assert_int_equal(try_restore(path("bad"), false), -EBADMSG);

    /* A layout that does not fit: 1 GiB pages for 64 MiB of RAM. */
    struct console con = {.len = 0};
    struct rvm_hv *hv;
    int err;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_null(restore(hv, path("sample"), false, RVM_MEM_HUGE_1G, &con, &err));
    assert_int_equal(err, -EINVAL);
    rvm_hv_close(hv);
}

/* A diff whose parent was replaced by another VM's snapshot is refused. */
static void test_wrong_parent(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct tvm t;
    char cmd[512];

    vm_config(&c, RVM_MEM_ANON);
    tvm_create(&t, "test=mem-dirty ws=64 passes=0", &c);
    assert_int_equal(rvm_vm_dirty_enable(t.vm), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    wait_passes(t.vm, 1);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("p-base"), RVM_SNAPSHOT_FULL, NULL), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("p-diff"), RVM_SNAPSHOT_DIFF, NULL), 0);
    tvm_destroy(&t);
    make_sample("other");
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", path("p-base"), path("other"),
             path("p-base"));
    assert_int_equal(system(cmd), 0);
    assert_int_equal(try_restore(path("p-diff"), false), -EBADMSG);
}

/*
 * A full disk mid-snapshot: an error, no half snapshot, and the older
 * snapshot (also the one being replaced) still restores.
 */
static void test_enospc_keeps_older(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    char dir[] = "/tmp/ringvm-snapfull-XXXXXX", old[128], cmd[160];
    struct rvm_vm_config c;
    struct tvm t;

    assert_non_null(mkdtemp(dir));
    if (mount("none", dir, "tmpfs", 0, "size=100m") < 0) {
        rmdir(dir);
        print_message("SKIP: cannot mount a small tmpfs (needs root)\n");
        skip();
    }
    snprintf(old, sizeof(old), "%s/old", dir);
    vm_config(&c, RVM_MEM_ANON);
    tvm_create(&t, "test=mem-dirty ws=64 passes=0", &c);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    wait_passes(t.vm, 1);
    assert_int_equal(rvm_vm_snapshot(t.vm, old, RVM_SNAPSHOT_FULL, NULL), 0); /* 64 of 100 MiB */
    char newer[128];
    snprintf(newer, sizeof(newer), "%s/new", dir);
    assert_int_equal(rvm_vm_snapshot(t.vm, newer, RVM_SNAPSHOT_FULL, NULL), -ENOSPC);
    assert_int_equal(rvm_vm_snapshot(t.vm, old, RVM_SNAPSHOT_FULL, NULL), -ENOSPC); /* replace */
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_RUNNING); /* the VM goes on */
    tvm_destroy(&t);
    struct stat st;
    assert_int_equal(stat(newer, &st), -1); /* nothing half-written under the name */
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", dir); /* no temporaries */
    assert_int_equal(system(cmd), 0);
    assert_int_equal(try_restore(old, false), 0);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/* Requests the blk guest has completed, as it counts them in its memory. */
static uint64_t blk_done(struct rvm_vm *vm)
{
    return *(volatile uint64_t *)rvm_mem_hva(rvm_vm_mem(vm), BG_BLK_DONE, 8);
}

/* Waits (up to 60 s) until the blk guest has completed at least n requests. */
static void wait_blk_done(struct rvm_vm *vm, uint64_t n)
{
    for (int i = 0; i < 60000 && blk_done(vm) < n; i++)
        sleep_ms(1);
    assert_true(blk_done(vm) >= n);
}

/* A VM on a new 32 MiB disk at disk, its guest started on n requests of blk-verify. */
static void disk_vm_start(struct tvm *t, const char *disk, uint64_t n, const char *extra)
{
    struct rvm_vm_config c;
    struct rvm_blk_config bc = {.path = disk, .limit = start_limit};
    char word[96], cmd[256];
    int fd = open(disk, O_CREAT | O_RDWR | O_TRUNC, 0600);

    assert_true(fd >= 0 && ftruncate(fd, 32 << 20) == 0);
    close(fd);
    vm_config(&c, RVM_MEM_ANON);
    struct rvm_hv_config hc = {.log = log_to_buf, .log_opaque = &t->log, .log_level = RVM_LOG_WARN};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &t->con};
    memset(t, 0, sizeof(*t));
    assert_int_equal(rvm_hv_open(&hc, &t->hv), 0);
    assert_int_equal(rvm_vm_create(t->hv, &c, &t->vm), 0);
    assert_int_equal(rvm_uart_attach(t->vm, &uc, NULL), 0);
    assert_int_equal(rvm_debug_exit_attach(t->vm, 0), 0);
    assert_int_equal(rvm_vm_add_virtio_blk(t->vm, &bc, word, sizeof(word)), 0);
    snprintf(cmd, sizeof(cmd), "test=blk-verify n=%llu %s %s", (unsigned long long)n, extra, word);
    struct rvm_pvh_params pp = {.cmdline = cmd};
    assert_int_equal(rvm_vm_load_pvh_file(t->vm, guest_path(), &pp, NULL), 0);
    assert_int_equal(rvm_vm_start(t->vm), 0);
}

/*
 * A VM whose guest runs blk-verify (requests in flight) snapshotted and
 * restored: the device drains before the state is taken, the restored
 * device reopens the disk and picks up its queues where they were, and the
 * guest finishes with every sector it reads back as it wrote it.
 */
static void disk_round_trip(uint64_t n, const char *extra, const char *name)
{
    char disk[128];
    struct console con = {.len = 0};
    struct tvm t;
    uint64_t v, done;
    int err;

    snprintf(disk, sizeof(disk), "%s", path("disk")); /* path()'s buffers are reused */
    disk_vm_start(&t, disk, n, extra);
    wait_blk_done(t.vm, n / 2);
    /*
     * Paused first: the snapshot leaves the VM paused and its disk as saved
     * (devices start again only on resume), so it restores onto the same
     * disk once this VM is gone; a VM that ran on would have moved the disk
     * on, and the restore would refuse it (-ESTALE).
     */
    assert_int_equal(rvm_vm_pause(t.vm), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, path(name), RVM_SNAPSHOT_FULL, NULL), 0);
    done = blk_done(t.vm);
    tvm_destroy(&t);
    assert_true(done < 2 * n); /* mid-run: writes and reads are n each */

    struct rvm_hv *hv;
    struct rvm_vm_result res;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    /* No disk handed: the path the snapshot names is not opened. */
    struct rvm_vm *vm = restore(hv, path(name), false, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, -ENODEV);
    restore_disk = disk;
    vm = restore(hv, path(name), false, RVM_MEM_ANON, &con, &err);
    restore_disk = NULL;
    assert_int_equal(err, 0);
    assert_int_equal(rvm_vm_start(vm), 0);
    err = rvm_vm_wait(vm, 120000, &res);
    if (err < 0 || res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("restored guest (%s) said: %s\n", extra, con.buf);
    assert_int_equal(err, 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_int_equal(bg_result_value(con.buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bg_result_value(con.buf, "errors", &v), 0);
    assert_int_equal(v, 0);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

static void test_disk_mid_io(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    disk_round_trip(20000, "qd=8", "disk-polled");
    /* Each interrupt runs the guest's handler in ring 0, emulated here (milliseconds a time):
     * fewer requests, still thousands in flight across the snapshot. */
    disk_round_trip(3000, "qd=4 irq=1", "disk-irq");
    disk_round_trip(20000, "qd=8 pattern=seq", "disk-seq");
}

/*
 * A rate-limited disk snapshotted while the limit holds requests back (the
 * device took them from the ring, parsed, but has not started them): the
 * snapshot lets them go first, so none is lost, and the restored disk runs
 * at the limit the restore hands it (another one here), to the end.
 */
static void test_disk_rate_limited(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    start_limit = (struct rvm_rate_limit){.ops_per_s = 3000, .ops_burst = 16};
    restore_limit = (struct rvm_rate_limit){.bytes_per_s = 64 << 20};
    disk_round_trip(6000, "qd=16", "disk-limited");
    start_limit = restore_limit = (struct rvm_rate_limit){0};
}

/*
 * Quiesce is not a reset: a snapshot of a running guest with requests in
 * flight pauses the device's worker (its thread and ring stay, the same
 * thread serves the guest after), and the guest reads back every sector as
 * it wrote it. Before, every snapshot stopped the worker and started a new
 * one on a new io_uring.
 */
static void test_snapshot_keeps_workers(void **state)
{
    struct rvm_vm_result res;
    struct tvm t;
    long before[4], after[4];
    uint64_t v;
    (void)state;

    SKIP_WITHOUT_KVM();
    disk_vm_start(&t, path("disk-keep"), 20000, "qd=8");
    wait_blk_done(t.vm, 1000); /* requests flowing */
    assert_int_equal(thread_ids("rvm-blk", before, 4), 1);
    for (int i = 0; i < 3; i++) {
        char name[32];

        snprintf(name, sizeof(name), "keep-%d", i);
        assert_int_equal(rvm_vm_snapshot(t.vm, path(name), RVM_SNAPSHOT_FULL, NULL), 0);
        assert_int_equal(thread_ids("rvm-blk", after, 4), 1);
        assert_int_equal(after[0], before[0]);
        sleep_ms(50);
    }
    assert_int_equal(rvm_vm_wait(t.vm, 120000, &res), 0);
    if (res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("guest said: %s\n", t.con.buf);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0);
    assert_int_equal(bg_result_value(t.con.buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bg_result_value(t.con.buf, "errors", &v), 0);
    assert_int_equal(v, 0);
    tvm_destroy(&t);
}

/* Leaf 0x40000001 EAX of vCPU 0, as KVM holds it. */
static uint32_t kvm_features(struct rvm_vm *vm)
{
    static struct {
        struct kvm_cpuid2 c;
        struct kvm_cpuid_entry2 e[256];
    } buf;
    uint32_t eax = UINT32_MAX;

    buf.c.nent = 256;
    assert_int_equal(ioctl(rvm_vm_vcpu(vm, 0)->fd, KVM_GET_CPUID2, &buf.c), 0);
    for (uint32_t i = 0; i < buf.c.nent; i++)
        if (buf.c.entries[i].function == 0x40000001)
            eax = buf.c.entries[i].eax;
    return eax;
}

/*
 * The CPUID a guest saw travels with its snapshot: an embedder's edit (KVM's
 * PV IPI bit hidden) holds in the restored VM, whose own config has none.
 */
static void test_cpuid_travels(void **state)
{
    struct rvm_vm_config c;
    struct console con = {.len = 0};
    struct rvm_hv *hv;
    struct tvm t;
    int err;
    (void)state;

    SKIP_WITHOUT_KVM();
    vm_config(&c, RVM_MEM_ANON);
    c.n_cpuid_edits = 1;
    c.cpuid_edits[0] =
        (struct rvm_cpuid_edit){.function = 0x40000001, .reg = RVM_CPUID_EAX, .clear = 1u << 11};
    tvm_create(&t, "test=mem-dirty ws=64 passes=0", &c);
    assert_int_equal(rvm_vcpu_create(t.vm, 0, NULL), 0); /* to read its CPUID before it runs */
    uint32_t edited = kvm_features(t.vm);
    assert_int_equal(edited & (1u << 11), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    wait_passes(t.vm, 1);
    assert_int_equal(rvm_vm_snapshot(t.vm, path("cpuid"), RVM_SNAPSHOT_FULL, NULL), 0);
    tvm_destroy(&t);

    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    uint32_t plain = 0;
    for (uint32_t i = 0; i < hv->cpuid->nent; i++)
        if (hv->cpuid->entries[i].function == 0x40000001)
            plain = hv->cpuid->entries[i].eax;
    struct rvm_vm *vm = restore(hv, path("cpuid"), false, RVM_MEM_ANON, &con, &err);
    assert_int_equal(err, 0);
    assert_int_equal(kvm_features(vm), edited);
    if (plain & (1u << 11)) /* this KVM offers PV IPIs: the restored VM still hides them */
        assert_int_not_equal(kvm_features(vm), plain);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_eager),
        cmocka_unit_test(test_full_lazy),
        cmocka_unit_test(test_full_hugepages),
        cmocka_unit_test(test_diff_chain),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_wrong_parent),
        cmocka_unit_test(test_enospc_keeps_older),
        cmocka_unit_test(test_disk_mid_io),
        cmocka_unit_test(test_disk_rate_limited),
        cmocka_unit_test(test_snapshot_keeps_workers),
        cmocka_unit_test(test_cpuid_travels),
    };
    return cmocka_run_group_tests_name("snapshot", tests, group_setup, group_teardown);
}
