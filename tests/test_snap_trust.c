/* SPDX-License-Identifier: MIT */
/*
 * Snapshots you can trust: one regression test per defect a review of the
 * snapshot code found, each named after what it guards against. Each failed
 * on the code before its fix.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/vm_internal.h"
#include "../guest/abi.h"
#include "common/scratch.h"
#include "common/testutil.h"

static int group_setup(void **state)
{
    (void)state;
    return scratch_make("trust");
}

static int group_teardown(void **state)
{
    (void)state;
    return scratch_remove();
}

static void put_file(const char *p, const char *text)
{
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool file_says(const char *p, const char *text)
{
    char buf[256] = {0};
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n == (ssize_t)strlen(text) && !memcmp(buf, text, (size_t)n);
}

/* The first page a diff snapshot holds, from its page bitmap. */
static uint64_t first_present(const char *dir)
{
    uint64_t w, i = 0;
    int fd = open(path_join(dir, "pages"), O_RDONLY);

    assert_true(fd >= 0);
    while (read(fd, &w, sizeof(w)) == sizeof(w) && !w)
        i++;
    close(fd);
    assert_true(w != 0);
    return i * 64 + (uint64_t)__builtin_ctzll(w);
}

/* A small bench guest rewriting 64 pages over and over, running (dirty tracking on: diffs). */
/* The guest of 32 MiB and vcpus vCPUs, running; dirty tracking on if track. */
static void guest_running(struct tvm *t, uint32_t vcpus, bool track)
{
    struct rvm_vm_config c;

    rvm_vm_config_init(&c);
    c.mem.size = 32 << 20;
    c.vcpus = vcpus;
    tvm_create(t, "test=mem-dirty ws=64 passes=0", &c);
    if (track)
        assert_int_equal(rvm_vm_dirty_enable(t->vm), 0);
    assert_int_equal(rvm_vm_start(t->vm), 0);
}

static void small_guest(struct tvm *t)
{
    volatile uint64_t *st;

    guest_running(t, 1, true);
    st = rvm_mem_hva(rvm_vm_mem(t->vm), BG_MEM_STATE, 4096);
    for (int i = 0; i < 30000 && st[BG_MEM_ST_PASSES_DONE] < 1; i++)
        sleep_ms(1);
    assert_true(st[BG_MEM_ST_PASSES_DONE] >= 1);
}

static int restore_with(const char *dir, bool lazy, bool verify)
{
    struct rvm_restore_params p;
    struct rvm_hv *hv;
    struct rvm_vm *vm = NULL;
    int r;

    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    rvm_restore_params_init(&p);
    p.lazy = lazy;
    p.verify_memory = verify;
    r = rvm_vm_restore(hv, dir, &p, &vm, NULL);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    return r;
}

/*
 * Defect 5: publishing swapped out and emptied whatever directory was at the
 * target. A directory that is not a ringvm snapshot is never replaced, even
 * one holding a file named like a snapshot's; a snapshot is.
 */
static void test_snapshot_never_empties_a_foreign_directory(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;
    const char *home = scratch_path("home"), *look = scratch_path("lookalike");

    assert_int_equal(mkdir(home, 0700), 0);
    put_file(path_join(home, "notes.txt"), "keep me");
    assert_int_equal(mkdir(look, 0700), 0);
    put_file(path_join(look, "manifest"), "not a snapshot's");
    put_file(path_join(look, "memory"), "mine");

    small_guest(&t);
    assert_int_equal(rvm_vm_snapshot(t.vm, home, RVM_SNAPSHOT_FULL, NULL), -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, look, RVM_SNAPSHOT_FULL, NULL), -EEXIST);
    assert_true(file_says(path_join(home, "notes.txt"), "keep me"));
    assert_true(file_says(path_join(look, "manifest"), "not a snapshot's"));
    assert_true(file_says(path_join(look, "memory"), "mine"));
    /* A regular file in the way is no snapshot either. */
    put_file(scratch_path("plain"), "plain");
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("plain"), RVM_SNAPSHOT_FULL, NULL),
                     -EEXIST);
    assert_true(file_says(scratch_path("plain"), "plain"));
    /* A snapshot is replaced, and no temporary directory is left beside it. */
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("snap"), RVM_SNAPSHOT_FULL, NULL), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("snap"), RVM_SNAPSHOT_FULL, NULL), 0);
    tvm_destroy(&t);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls '%s' | grep -c tmp) -eq 0", scratch_root());
    assert_int_equal(system(cmd), 0);
    assert_int_equal(restore_with(scratch_path("snap"), false, false), 0);
}

/*
 * Defect 5: only a diff's direct parent was protected, so a diff could
 * replace its grandparent and leave the chain without its base. Nothing in
 * the VM's chain is replaced but its newest, by a full snapshot.
 */
static void test_snapshot_never_replaces_a_chain_member(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;

    small_guest(&t);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-base"), RVM_SNAPSHOT_FULL, NULL), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d1"), RVM_SNAPSHOT_DIFF, NULL), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d2"), RVM_SNAPSHOT_DIFF, NULL), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-base"), RVM_SNAPSHOT_DIFF, NULL),
                     -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d1"), RVM_SNAPSHOT_DIFF, NULL), -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d2"), RVM_SNAPSHOT_DIFF, NULL), -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-base"), RVM_SNAPSHOT_FULL, NULL),
                     -EEXIST);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d1"), RVM_SNAPSHOT_LIVE, NULL), -EEXIST);
    /* Spelled another way, it is the same directory. */
    char other[160];
    snprintf(other, sizeof(other), "%s/./c-d1", scratch_root());
    assert_int_equal(rvm_vm_snapshot(t.vm, other, RVM_SNAPSHOT_DIFF, NULL), -EEXIST);
    assert_int_equal(restore_with(scratch_path("c-d2"), false, false), 0);
    /* The newest: nothing names it as a parent, a full snapshot may take its place. */
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("c-d2"), RVM_SNAPSHOT_FULL, NULL), 0);
    tvm_destroy(&t);
    assert_int_equal(restore_with(scratch_path("c-d2"), false, false), 0);
    assert_int_equal(restore_with(scratch_path("c-d1"), false, false), 0);
}

/*
 * Defect 6: merging copied memory without checking the sources' sums, so a
 * damaged chain came out as a valid-looking full snapshot. Also: a merge
 * never replaces a parent the chain needs, and may replace the diff itself.
 */
static void test_merge_never_launders_corruption(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;
    struct rvm_hv *hv;

    small_guest(&t);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("m-base"), RVM_SNAPSHOT_FULL, NULL), 0);
    sleep_ms(50); /* passes over the working set: pages for the diff */
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("m-diff"), RVM_SNAPSHOT_DIFF, NULL), 0);
    tvm_destroy(&t);
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff"), scratch_path("m-out")), 0);
    assert_int_equal(restore_with(scratch_path("m-out"), true, true), 0);
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff"), scratch_path("m-base")),
                     -EEXIST);

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s' && cp -r '%s' '%s'", scratch_path("m-base"),
             scratch_path("m-base2"), scratch_path("m-diff"), scratch_path("m-diff2"));
    assert_int_equal(system(cmd), 0);
    /* A byte of the base's memory (in a page the diff does not hold: the guest's code). */
    flip_byte(path_join(scratch_path("m-base"), "memory"), 0x100000 + 100);
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff"), scratch_path("m-bad")),
                     -EBADMSG);
    struct stat st;
    assert_int_equal(stat(scratch_path("m-bad"), &st), -1);
    /* A byte of a page the diff holds (the guest's working set). */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mv '%s' '%s'", scratch_path("m-base"),
             scratch_path("m-base2"), scratch_path("m-base"));
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff"), scratch_path("m-out2")), 0);
    flip_byte(path_join(scratch_path("m-diff"), "memory"),
              (off_t)first_present(scratch_path("m-diff")) * 4096 + 8);
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff"), scratch_path("m-bad")),
                     -EBADMSG);
    assert_int_equal(stat(scratch_path("m-bad"), &st), -1);
    /* Into itself: the diff becomes the full snapshot it amounts to (same id: children still fit).
     */
    assert_int_equal(rvm_snapshot_merge(hv, scratch_path("m-diff2"), scratch_path("m-diff2")), 0);
    assert_int_equal(restore_with(scratch_path("m-diff2"), false, false), 0);
    rvm_hv_close(hv);
}

/*
 * Defect 7: a "lazy" restore read and hashed all of guest memory, because
 * verify_memory defaulted to true. Unasked, it checks metadata only: a
 * flipped byte in the memory file is not seen (the guest would see it);
 * asked, it is refused; eager always checks.
 */
static void test_lazy_restore_reads_no_memory_unless_asked(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_restore_params p;
    struct tvm t;

    rvm_restore_params_init(&p);
    assert_false(p.verify_memory);
    small_guest(&t);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("l-snap"), RVM_SNAPSHOT_FULL, NULL), 0);
    tvm_destroy(&t);
    flip_byte(path_join(scratch_path("l-snap"), "memory"), (20 << 20) + 5);
    assert_int_equal(restore_with(scratch_path("l-snap"), true, false), 0);
    assert_int_equal(restore_with(scratch_path("l-snap"), true, true), -EBADMSG);
    assert_int_equal(restore_with(scratch_path("l-snap"), false, false), -EBADMSG);
}

static int count_range(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)gpa;
    *(uint64_t *)opaque += len / 4096;
    return 0;
}

/*
 * Defect 1: rvm_vm_dirty_collect() and diff snapshots drained the same
 * accumulator, so an embedder's collection between a full snapshot and a
 * diff left the diff without those pages: the restored guest had stale
 * memory under valid checksums. The restored RAM must equal the source's.
 */
static void test_collect_never_hides_pages_from_a_diff(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;
    struct rvm_restore_params p;
    struct rvm_hv *hv;
    struct rvm_vm *vm = NULL;
    uint64_t collected = 0, snapped_before;
    volatile uint64_t *st;

    small_guest(&t);
    st = rvm_mem_hva(rvm_vm_mem(t.vm), BG_MEM_STATE, 4096);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("g-base"), RVM_SNAPSHOT_FULL, NULL), 0);
    snapped_before = st[BG_MEM_ST_PASSES_DONE];
    for (int i = 0; i < 30000 && st[BG_MEM_ST_PASSES_DONE] < snapped_before + 3; i++)
        sleep_ms(1);
    assert_int_equal(rvm_vm_pause(t.vm), 0);
    /* The embedder's own consumer takes what the guest wrote since the full snapshot. */
    assert_int_equal(rvm_vm_dirty_collect(t.vm, count_range, &collected, NULL), 0);
    assert_true(collected >= 64);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("g-diff"), RVM_SNAPSHOT_DIFF, NULL), 0);

    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    rvm_restore_params_init(&p);
    assert_int_equal(rvm_vm_restore(hv, scratch_path("g-diff"), &p, &vm, NULL), 0);
    const struct rvm_mem_region *rg = rvm_mem_region(rvm_vm_mem(t.vm), 0);
    const uint8_t *a = rvm_mem_hva(rvm_vm_mem(t.vm), rg->gpa, rg->size);
    const uint8_t *b = rvm_mem_hva(rvm_vm_mem(vm), rg->gpa, rg->size);
    uint64_t stale = 0;
    for (uint64_t off = 0; off < rg->size; off += 4096)
        stale += memcmp(a + off, b + off, 4096) != 0;
    if (stale)
        print_message("%llu pages of the restored guest differ from the source\n",
                      (unsigned long long)stale);
    assert_int_equal(stale, 0);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);

    /* And the other way: the snapshot's take leaves the embedder's view whole. */
    collected = 0;
    assert_int_equal(rvm_vm_resume(t.vm), 0);
    snapped_before = st[BG_MEM_ST_PASSES_DONE];
    for (int i = 0; i < 30000 && st[BG_MEM_ST_PASSES_DONE] < snapped_before + 3; i++)
        sleep_ms(1);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("g-diff2"), RVM_SNAPSHOT_DIFF, NULL), 0);
    assert_int_equal(rvm_vm_dirty_collect(t.vm, count_range, &collected, NULL), 0);
    assert_true(collected >= 64);
    tvm_destroy(&t);
}

struct snap_job {
    struct rvm_vm *vm;
    const char *dir;
    enum rvm_snapshot_mode mode;
    int r;
};

static void *snap_thread(void *p)
{
    struct snap_job *j = p;
    __atomic_store_n(&j->r, rvm_vm_snapshot(j->vm, j->dir, j->mode, NULL), __ATOMIC_RELEASE);
    return NULL;
}

/* Whether a temporary directory of a snapshot into root/name is there (it is under way). */
static bool under_way(const char *name)
{
    DIR *d = opendir(scratch_root());
    struct dirent *e;
    size_t n = strlen(name);
    bool found = false;

    assert_non_null(d);
    while (!found && (e = readdir(d)))
        found = !strncmp(e->d_name, name, n) && !strncmp(e->d_name + n, ".tmp-", 5);
    closedir(d);
    return found;
}

/*
 * Defect 2: a snapshot of a paused VM did not own the pause, so an
 * embedder's rvm_vm_resume() (or a second snapshot) let the guest run while
 * memory and sums were written. While one runs, another is -EBUSY and so is
 * resume; afterwards the VM is as it was (paused), and resumes.
 */
static void test_snapshot_owns_the_pause(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct rvm_vm_config c;
    struct tvm t;
    bool seen = false;

    rvm_vm_config_init(&c);
    c.mem.size = 512 << 20;
    tvm_create(&t, "test=mem-dirty ws=64 passes=0", &c);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    sleep_ms(50);
    for (int attempt = 0; attempt < 5 && !seen; attempt++) {
        struct snap_job j = {t.vm, scratch_path("o-snap"),
                             attempt % 2 ? RVM_SNAPSHOT_LIVE : RVM_SNAPSHOT_FULL, 1};
        pthread_t th;
        bool was_paused = attempt % 2 == 0;

        if (was_paused)
            assert_int_equal(rvm_vm_pause(t.vm), 0);
        assert_int_equal(pthread_create(&th, NULL, snap_thread, &j), 0);
        while (!under_way("o-snap") && __atomic_load_n(&j.r, __ATOMIC_ACQUIRE) == 1)
            usleep(50);
        if (under_way("o-snap")) {
            int second = rvm_vm_snapshot(t.vm, scratch_path("o-other"), RVM_SNAPSHOT_FULL, NULL);
            int resumed = rvm_vm_resume(t.vm);
            seen = under_way("o-snap"); /* both were asked while it ran */
            if (seen) {
                assert_int_equal(second, -EBUSY);
                assert_int_equal(resumed, was_paused ? -EBUSY : -EINVAL);
            }
        }
        pthread_join(th, NULL);
        assert_int_equal(j.r, 0);
        assert_int_equal(rvm_vm_state(t.vm), was_paused ? RVM_VM_PAUSED : RVM_VM_RUNNING);
        if (was_paused)
            assert_int_equal(rvm_vm_resume(t.vm), 0);
    }
    if (!seen)
        print_message("the snapshots ended before they could be caught under way\n");
    assert_true(seen);
    tvm_destroy(&t);
    assert_int_equal(restore_with(scratch_path("o-snap"), false, false), 0);
}

/*
 * Defect 8: a full snapshot turned dirty logging on for good (4 KiB
 * mappings, a write fault per first write, a 1 kHz reaper). Tracking is on
 * only when the caller asks: a full snapshot leaves it off, a live one
 * turns it off again after its rounds, and only a tracked VM's snapshot is
 * a diff's parent.
 */
static void test_snapshot_leaves_tracking_as_it_was(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;

    guest_running(&t, 1, false);
    sleep_ms(20);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-full"), RVM_SNAPSHOT_FULL, NULL), 0);
    assert_int_equal(rvm_vm_dirty_mode(t.vm), RVM_DIRTY_OFF);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-diff"), RVM_SNAPSHOT_DIFF, NULL),
                     -EINVAL);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-live"), RVM_SNAPSHOT_LIVE, NULL), 0);
    assert_int_equal(rvm_vm_dirty_mode(t.vm), RVM_DIRTY_OFF);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-diff"), RVM_SNAPSHOT_DIFF, NULL),
                     -EINVAL);
    /* Asked for: it stays on, and diffs follow. */
    assert_int_equal(rvm_vm_dirty_enable(t.vm), 0);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-live"), RVM_SNAPSHOT_LIVE, NULL), 0);
    assert_int_equal(rvm_vm_dirty_mode(t.vm), RVM_DIRTY_BITMAP);
    assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("t-diff"), RVM_SNAPSHOT_DIFF, NULL), 0);
    assert_int_equal(rvm_vm_dirty_mode(t.vm), RVM_DIRTY_BITMAP);
    tvm_destroy(&t);
    assert_int_equal(restore_with(scratch_path("t-diff"), false, false), 0);
}

/*
 * Defect 9: every snapshot issued KVM_RUN for every vCPU from the snapshot
 * thread to complete their last exits (a vCPU ioctl from a foreign thread,
 * on the pause's critical path). Each vCPU of the managed loop now does it
 * on its own thread as it parks; the snapshot does none, and the restored
 * guests still continue exactly.
 */
static void test_vcpus_complete_their_own_exits(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    struct tvm t;

    guest_running(&t, 2, false);
    for (int i = 0; i < 6; i++) {
        enum rvm_snapshot_mode mode = i % 2 ? RVM_SNAPSHOT_LIVE : RVM_SNAPSHOT_FULL;
        sleep_ms(10);
        assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("v-snap"), mode, NULL), 0);
        if (i == 4) {
            assert_int_equal(rvm_vm_pause(t.vm), 0); /* a paused VM too */
            assert_int_equal(rvm_vm_snapshot(t.vm, scratch_path("v-snap"), mode, NULL), 0);
            assert_int_equal(rvm_vm_resume(t.vm), 0);
        }
    }
    assert_int_equal(t.vm->snap.foreign_completions, 0);
    tvm_destroy(&t);
    assert_int_equal(restore_with(scratch_path("v-snap"), false, false), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_never_empties_a_foreign_directory),
        cmocka_unit_test(test_snapshot_never_replaces_a_chain_member),
        cmocka_unit_test(test_merge_never_launders_corruption),
        cmocka_unit_test(test_lazy_restore_reads_no_memory_unless_asked),
        cmocka_unit_test(test_snapshot_owns_the_pause),
        cmocka_unit_test(test_collect_never_hides_pages_from_a_diff),
        cmocka_unit_test(test_snapshot_leaves_tracking_as_it_was),
        cmocka_unit_test(test_vcpus_complete_their_own_exits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
