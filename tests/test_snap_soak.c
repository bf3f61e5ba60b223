/* SPDX-License-Identifier: MIT */
/*
 * Snapshots over and over, and snapshots cut short.
 *
 * The soak: a small bench guest (24 MiB, mem-dirty over 256 pages, each
 * page checked against its previous pass before it is rewritten) goes
 * through SOAK_CYCLES cycles of run -> snapshot (full, diff, live in turn)
 * -> destroy -> restore (eager and lazy in turn) -> run on, with every
 * tenth snapshot merged and the next cycle restored from the merge. The
 * guest's own mismatch counter stays 0 throughout, its pass counter only
 * grows, a final full verification finds every page as the last pass left
 * it, and the process's fds and resident memory do not grow (read from
 * /proc/self).
 *
 * The kill test: a `ringvm run` process snapshotting on SIGUSR1 is killed
 * with SIGKILL at a random moment of a snapshot, 20 times over; every
 * directory named like a snapshot restores (the one being written never
 * appears half-made under its name), and the next snapshot into the same
 * place removes the dead process's temporary directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "common/guestproc.h"
#include "common/scratch.h"
#include "common/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define RINGVM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGVM_ASAN 1
#endif
#endif
#ifndef RINGVM_ASAN
#define RINGVM_ASAN 0
#endif

#define SOAK_CYCLES 1000
#define WS          256
#define MEM         (24ULL << 20) /* the working set starts at 16 MiB */

static int group_setup(void **state)
{
    (void)state;
    return scratch_make("soak");
}

static int group_teardown(void **state)
{
    (void)state;
    return scratch_remove();
}

/* root/NAME with a number in it. */
static const char *path(const char *fmt, int i)
{
    char name[64];

    snprintf(name, sizeof(name), fmt, i);
    return scratch_path(name);
}

static volatile uint64_t *gstate(struct rvm_vm *vm)
{
    return rvm_mem_hva(rvm_vm_mem(vm), BG_MEM_STATE, 4096);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    long kib = -1;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Lets the guest make progress: at least two more passes, with no mismatch so far. */
static uint64_t run_on(struct rvm_vm *vm, uint64_t since)
{
    volatile uint64_t *st = gstate(vm);

    for (int i = 0; i < 20000 && st[BG_MEM_ST_PASSES_DONE] < since + 2; i++)
        usleep(200);
    assert_true(st[BG_MEM_ST_PASSES_DONE] >= since + 2);
    assert_int_equal(st[BG_MEM_ST_MISMATCHES], 0);
    return st[BG_MEM_ST_PASSES_DONE];
}

static struct logbuf soak_log;

static struct rvm_vm *restore_from(struct rvm_hv *hv, const char *dir, bool lazy,
                                   struct console *con)
{
    struct rvm_restore_params p;
    struct rvm_vm *vm = NULL;

    rvm_restore_params_init(&p);
    p.uart.out = console_out;
    p.uart.out_opaque = con;
    p.lazy = lazy;
    p.track_dirty = true; /* the next snapshot may be a diff over this one */
    int r = rvm_vm_restore(hv, dir, &p, &vm, NULL);
    if (r < 0)
        print_message("restoring %s (%s): %d, %s\n", dir, lazy ? "lazy" : "eager", r,
                      soak_log.last);
    assert_int_equal(r, 0);
    return vm;
}

static void test_soak(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct tvm t;
    struct rvm_vm *vm;
    struct rvm_hv *hv;
    static struct console con;
    char cmd[64];
    uint64_t passes = 0, merges = 0, by_mode[3] = {0};
    int fds = -1;
    long rss = -1;

    rvm_vm_config_init(&c);
    c.mem.size = MEM;
    snprintf(cmd, sizeof(cmd), "test=mem-dirty ws=%d passes=0", WS);
    tvm_create(&t, cmd, &c);
    assert_int_equal(rvm_vm_dirty_enable(t.vm), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    vm = t.vm;
    struct rvm_hv_config hc = {
        .log = log_to_buf, .log_opaque = &soak_log, .log_level = RVM_LOG_WARN};
    assert_int_equal(rvm_hv_open(&hc, &hv), 0);
    for (int i = 0; i < SOAK_CYCLES; i++) {
        /* Full, diff, live in turn; names rotate over four, never a member of the chain. */
        static const enum rvm_snapshot_mode modes[3] = {RVM_SNAPSHOT_FULL, RVM_SNAPSHOT_DIFF,
                                                        RVM_SNAPSHOT_LIVE};
        const char *dir = path("s-%d", i % 4);
        passes = run_on(vm, passes);
        assert_int_equal(rvm_vm_snapshot(vm, dir, modes[i % 3], NULL), 0);
        by_mode[i % 3]++;
        if (i % 10 == 9) { /* merged, and the next VM comes from the merge */
            const char *merged = path("merged-%d", (int)(merges++ % 2));
            assert_int_equal(rvm_snapshot_merge(hv, dir, merged), 0);
            dir = merged;
        }
        /* The first VM is the fixture's (its hv too); the rest are restores. A restored VM
         * may get the fixture's old address back: compare by cycle, not by pointer. */
        if (i == 0)
            tvm_destroy(&t);
        else
            rvm_vm_destroy(vm);
        memset(&con, 0, sizeof(con));
        vm = restore_from(hv, dir, i % 2, &con);
        assert_true(gstate(vm)[BG_MEM_ST_PASSES_DONE] >= passes);
        assert_int_equal(rvm_vm_start(vm), 0);
        if (i == 20) { /* warmed up: from here on nothing may grow */
            fds = open_fd_count();
            rss = rss_kib();
        }
    }
    passes = run_on(vm, passes);
    /* Every page as the last pass left it: the guest turns into mem-verify and ends. */
    struct rvm_vm_result res;
    uint64_t v = 1;
    gstate(vm)[BG_MEM_ST_VERIFY] = 1;
    assert_int_equal(rvm_vm_wait(vm, 60000, &res), 0);
    assert_non_null(strstr(con.buf, "RESULT test=mem-verify"));
    assert_int_equal(bg_result_value(con.buf, "mismatches", &v), 0);
    assert_int_equal(v, 0);
    int fds_end = open_fd_count();
    long rss_end = rss_kib();
    print_message("    %d cycles (%llu full, %llu diff, %llu live, %llu merges), %llu passes; "
                  "fds %d -> %d, RSS %ld -> %ld KiB\n",
                  SOAK_CYCLES, (unsigned long long)by_mode[0], (unsigned long long)by_mode[1],
                  (unsigned long long)by_mode[2], (unsigned long long)merges,
                  (unsigned long long)passes, fds, fds_end, rss, rss_end);
    assert_int_equal(fds_end, fds);
#if RINGVM_ASAN
    /* AddressSanitizer holds freed memory back (its quarantine): RSS says nothing here.
     * LeakSanitizer's check at exit, exact where RSS is a bound, stands in for it. */
    print_message("    RSS bound not checked under AddressSanitizer (LeakSanitizer checks)\n");
#else
    assert_true(rss_end < rss + 16 * 1024); /* a leak of a page a cycle would be 4 MiB */
#endif
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

static const char *ringvm_path(void)
{
    static char p[PATH_MAX];
    char build[PATH_MAX - 16];

    assert_int_equal(gp_build_dir(build, sizeof(build)), 0);
    snprintf(p, sizeof(p), "%s/ringvm", build);
    return p;
}

/* Entries of dir named name.tmp-*: what interrupted snapshots left. */
static int leftovers(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = strlen(name);
    int k = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        k += !strncmp(e->d_name, name, n) && !strncmp(e->d_name + n, ".tmp-", 5);
    closedir(d);
    return k;
}

/* A `ringvm run` of the bench guest that snapshots (full) into root/kill/snap-1 on SIGUSR1. */
static void spawn_snapshotter(struct guest_proc *g, char *snapdir)
{
    static char kernel[PATH_MAX];
    snprintf(kernel, sizeof(kernel), "%s", guest_path());
    gp_files(g);
    gp_spawn(g,
             (char *[]){(char *)ringvm_path(), "run", "--kernel", kernel, "--mem", "64M",
                        "--serial", g->log, "--snapshot-on-signal", snapdir, "--snapshot-mode",
                        "full", "--cmdline", "test=mem-dirty ws=4096 passes=0", NULL},
             false);
}

/* Runs one snapshotter to its snapshot's end; the seconds the snapshot took. */
static double complete_one(char *snapdir)
{
    struct guest_proc g = {.name = "snapshotter"};
    double s = 0;

    spawn_snapshotter(&g, snapdir);
    sleep_ms(150);
    assert_int_equal(kill(g.pid, SIGUSR1), 0);
    char *t = gp_wait_for(&g, g.err, "ringvm: snapshot ", 60);
    gp_need(t, "ringvm: snapshot ", g.name);
    const char *in = strstr(strstr(t, "ringvm: snapshot "), " in ");
    assert_true(in && sscanf(in, " in %lf s", &s) == 1);
    free(t);
    gp_remove(&g);
    return s;
}

/* snap restores, and its guest goes on with its pages as they were. */
static void restores(struct rvm_hv *hv, const char *snap)
{
    struct rvm_restore_params p;
    struct rvm_vm *vm = NULL;

    rvm_restore_params_init(&p);
    assert_int_equal(rvm_vm_restore(hv, snap, &p, &vm, NULL), 0);
    assert_int_equal(rvm_vm_start(vm), 0);
    run_on(vm, gstate(vm)[BG_MEM_ST_PASSES_DONE]);
    rvm_vm_destroy(vm);
}

/*
 * One complete snapshot, then 20 snapshotters killed with SIGKILL at a
 * random moment from the signal to a little past the snapshot's usual
 * length (before it starts, while memory is written, around the rename):
 * snap-1 is always a complete snapshot that restores, never a half-written
 * one. A last complete snapshot clears the dead ones' temporaries.
 */
static void test_killed_mid_snapshot(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    char snapdir[128], snap[160];
    struct rvm_hv *hv;
    int within = 0, left;

    snprintf(snapdir, sizeof(snapdir), "%s/kill", scratch_root());
    snprintf(snap, sizeof(snap), "%s/snap-1", snapdir);
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    double took = complete_one(snapdir);
    restores(hv, snap);
    int span_ms = (int)(took * 1500) + 20;
    srand((unsigned)getpid());
    for (int i = 0; i < 20; i++) {
        struct guest_proc g = {.name = "snapshotter"};
        spawn_snapshotter(&g, snapdir);
        sleep_ms(150);
        assert_int_equal(kill(g.pid, SIGUSR1), 0);
        int at = rand() % span_ms;
        sleep_ms(at);
        kill(g.pid, SIGKILL);
        gp_stop(&g);
        within += at < (int)(took * 1000);
        gp_remove(&g);
        restores(hv, snap);
    }
    left = leftovers(snapdir, "snap-1");
    complete_one(snapdir);
    print_message("    a snapshot takes %.0f ms here; 20 kills at random up to %d ms after the "
                  "signal (%d within the snapshot's length) left %d temporaries, cleared by the "
                  "next snapshot\n",
                  took * 1e3, span_ms, within, left);
    assert_int_equal(leftovers(snapdir, "snap-1"), 0);
    restores(hv, snap);
    rvm_hv_close(hv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak),
        cmocka_unit_test(test_killed_mid_snapshot),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
