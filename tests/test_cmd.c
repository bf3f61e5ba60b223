/* SPDX-License-Identifier: MIT */
/*
 * The ringvm command and QEMU run as processes, on the bench guest: the
 * acceptance commands of the README, and a 2 MiB-hugepage VM with the pool
 * reserved for the test and given back after it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"

static char out[16384];

/* Runs a shell command, stdout+stderr into out; returns its exit status or -1. */
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    FILE *p;
    size_t n = 0;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    while (n < sizeof(out) - 1 && fgets(out + n, (int)(sizeof(out) - n), p))
        n += strlen(out + n);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *ringvm_path(void)
{
    static char path[PATH_MAX + 32];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n < 0)
        return "build/ringvm";
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(path, sizeof(path), "%s/../ringvm", exe);
    return path;
}

static void test_run_pio(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    assert_int_equal(sh("timeout 120 %s run --kernel %s --cmdline 'test=pio n=1000' 2>&1",
                        ringvm_path(), guest_path()),
                     0);
    assert_non_null(strstr(out, "RESULT test=pio n=1000 "));
}

static void test_run_smp_pinned(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        print_message("SKIP: needs two online CPUs\n");
        skip();
    }
    assert_int_equal(sh("timeout 120 %s run --kernel %s --cmdline 'test=pio n=1000' --vcpus 2 "
                        "--cpus 0,1 2>&1",
                        ringvm_path(), guest_path()),
                     0);
    assert_non_null(strstr(out, "RESULT test=pio n=1000 "));
}

static void test_run_serial_file(void **state)
{
    char path[] = "/tmp/ringvm-serial-XXXXXX";
    void *buf;
    size_t len;
    int fd = mkstemp(path);
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sh("timeout 120 %s run --kernel %s --cmdline 'test=mmio n=10' --serial %s "
                        "--mem 32M --prefault --hugepages thp 2>&1",
                        ringvm_path(), guest_path(), path),
                     0);
    assert_null(strstr(out, "RESULT")); /* went to the file, not stdout */
    assert_int_equal(bg_read_file(path, &buf, &len), 0);
    ((char *)buf)[len] = '\0';
    assert_non_null(strstr(buf, "RESULT test=mmio n=10 "));
    free(buf);
    unlink(path);
}

/* The guest's debug-exit value becomes the exit status. */
static void test_run_exit_status(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    assert_int_equal(sh("timeout 120 %s run --kernel %s --cmdline 'test=nope' 2>&1", ringvm_path(),
                        guest_path()),
                     2);
    assert_non_null(strstr(out, "ERROR unknown test=nope"));
}

/* The README's embedding example, built by make, runs the guest too. */
static void test_embed_example(void **state)
{
    char path[PATH_MAX + 32];
    (void)state;

    SKIP_WITHOUT_KVM();
    snprintf(path, sizeof(path), "%s", ringvm_path());
    strcpy(strrchr(path, '/'), "/examples/embed");
    assert_int_equal(sh("timeout 120 %s %s 'test=mmio n=5' 2>&1", path, guest_path()), 0);
    assert_non_null(strstr(out, "RESULT test=mmio n=5 "));
}

/* Guest output into a pipe whose reader is gone: dropped, the guest still ends normally. */
static void test_run_closed_stdout(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    assert_int_equal(sh("bash -c 'timeout 120 %s run --kernel %s --cmdline \"test=pio n=50\" "
                        "| true; exit ${PIPESTATUS[0]}'",
                        ringvm_path(), guest_path()),
                     0);
}

/* ringvm's own failures: one line on stderr and status 125. */
static void test_run_errors(void **state)
{
    (void)state;
    assert_int_equal(sh("%s run --kernel /nonexistent 2>&1 >/dev/null", ringvm_path()), 125);
    assert_non_null(strstr(out, "/nonexistent"));
    assert_int_equal(sh("%s run --mem 12Q --kernel x 2>&1", ringvm_path()), 125);
    assert_string_equal(out, "ringvm: bad --mem size '12Q' (e.g. 128M, 2G)\n");
    assert_int_equal(sh("%s --help", ringvm_path()), 0);
    assert_non_null(strstr(out, "--hugepages"));
}

/* A VM on 2 MiB hugepages, through the library and the command, with a pool reserved here. */
static void test_hugepages_2m(void **state)
{
    long before;
    (void)state;

    SKIP_WITHOUT_KVM();
    if (hugepool_reserve(48, &before) < 0) { /* 64 MiB VM + 32 MiB VM, with slack */
        print_message("SKIP: cannot reserve 48 2 MiB hugepages (needs root)\n");
        skip();
    }
    int st = sh("timeout 120 %s run --kernel %s --cmdline 'test=pio n=1000' --hugepages 2M "
                "--mem 64M 2>&1",
                ringvm_path(), guest_path());
    char copy[sizeof(out)];
    memcpy(copy, out, sizeof(out));

    struct rvm_vm_config c;
    struct rvm_hv *hv = NULL;
    struct rvm_vm *vm = NULL;
    int r1, r2 = -1;
    rvm_vm_config_init(&c);
    c.mem.size = 32 << 20;
    c.mem.backing = RVM_MEM_HUGE_2M;
    r1 = rvm_hv_open(NULL, &hv);
    if (r1 == 0)
        r1 = rvm_vm_create(hv, &c, &vm);
    if (r1 == 0) {
        r2 = rvm_mem_page_size(rvm_vm_mem(vm)) == (2 << 20) &&
                     (uintptr_t)rvm_mem_hva(rvm_vm_mem(vm), 0, 1) % (2 << 20) == 0
                 ? 0
                 : -1;
        rvm_vm_destroy(vm);
    }
    rvm_hv_close(hv);
    hugepool_release(before); /* give the pool back before asserting */

    assert_int_equal(st, 0);
    assert_non_null(strstr(copy, "RESULT test=pio n=1000 "));
    assert_int_equal(r1, 0);
    assert_int_equal(r2, 0);
    assert_int_equal(hugepool_size(), before);
}

/* The same image runs unchanged under QEMU (microvm), whose debug exit gives (v << 1) | 1. */
static void test_qemu_runs_guest(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    if (sh("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        print_message("SKIP: qemu-system-x86_64 is not installed\n");
        skip();
    }
    assert_int_equal(sh("timeout 120 qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu "
                        "host,-arch-capabilities -m 64 -nodefaults -nographic -serial stdio "
                        "-device isa-debug-exit,iobase=0xf4 -kernel %s -append 'test=pio n=1000' "
                        "</dev/null 2>&1",
                        guest_path()),
                     1);
    assert_non_null(strstr(out, "RESULT test=pio n=1000 "));
}

/* ---- virtio-blk, driven by the bench guest's own driver ------------------- */

static char disk_a[64], disk_b[64];

static void make_disk(char *path, size_t len, long size)
{
    int fd;

    snprintf(path, len, "/var/tmp/ringvm-disk-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

static uint64_t field(const char *key)
{
    uint64_t v = UINT64_MAX;
    assert_int_equal(bg_result_value(out, key, &v), 0);
    return v;
}

/* The acceptance run: 10,000 random 4 KiB requests written, read back and compared. */
static void test_blk_verify_10000(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    make_disk(disk_a, sizeof(disk_a), 64 << 20);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s --cmdline 'test=blk-verify "
                        "n=10000' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_non_null(strstr(out, "RESULT test=blk-verify n=10000 "));
    assert_int_equal(field("mismatches"), 0);
    assert_int_equal(field("errors"), 0);
    unlink(disk_a);
}

/* Completions by interrupt (irqfd -> IOAPIC -> the guest's IDT), several in flight. */
static void test_blk_irq_mode(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    make_disk(disk_a, sizeof(disk_a), 16 << 20);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s --cmdline 'test=blk-verify "
                        "n=2000 qd=8 irq=1' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_int_equal(field("mismatches"), 0);
    assert_true(field("irqs") > 0);
    assert_true(field("irqs") <= 4000); /* at most one per request: batches share one */
    unlink(disk_a);
}

/*
 * A polling device: the guest sees notifications turned off and makes its
 * requests available without exiting; with interrupts too.
 */
static void test_blk_polling(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    make_disk(disk_a, sizeof(disk_a), 16 << 20);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s,poll=200000 --cmdline "
                        "'test=blk-verify n=2000 qd=1' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_int_equal(field("mismatches"), 0);
    assert_int_equal(field("errors"), 0);
    assert_true(field("notifies") < 2000); /* 4000 requests (write, read) without polling */
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s,poll=200000 --cmdline "
                        "'test=blk-verify n=2000 qd=8 irq=1' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_int_equal(field("mismatches"), 0);
    assert_true(field("irqs") > 0);
    unlink(disk_a);
}

/*
 * Snapshots from the command: SIGUSR1 twice during a run (a full snapshot,
 * then a diff), the chain merged, and both the chain and the merge resumed
 * with `ringvm restore` to finish the guest's run where it was.
 */
static void test_snapshot_commands(void **state)
{
    char dir[] = "/var/tmp/ringvm-cmdsnap-XXXXXX";
    uint64_t v;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_non_null(mkdtemp(dir));
    assert_int_equal(sh("%s run --kernel %s --mem 64M --dirty-ring 4096 --snapshot-on-signal %s/s "
                        "--snapshot-mode diff --cmdline 'test=mem-dirty ws=2048 passes=400 "
                        "gap=20000' > %s/run.log 2>&1 & pid=$!; sleep 0.5; kill -USR1 $pid; "
                        "sleep 0.3; kill -USR1 $pid; wait $pid; st=$?; cat %s/run.log; exit $st",
                        ringvm_path(), guest_path(), dir, dir, dir),
                     0);
    assert_non_null(strstr(out, "snapshot ")); /* reported on stderr */
    assert_non_null(strstr(out, "/s/snap-2: "));
    assert_int_equal(field("mismatches"), 0);
    assert_int_equal(sh("%s snapshot-merge %s/s/snap-2 %s/merged", ringvm_path(), dir, dir), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sh("%s restore %s %s/%s 2>&1", ringvm_path(), i ? "--lazy" : "", dir,
                            i ? "merged" : "s/snap-2"),
                         0);
        assert_null(strstr(out, "START")); /* resumed, not restarted */
        assert_int_equal(bg_result_value(out, "passes", &v), 0);
        assert_int_equal(v, 400);
        assert_int_equal(field("mismatches"), 0);
    }
    assert_int_equal(sh("%s restore %s/nothing 2>&1", ringvm_path(), dir), 125);
    assert_non_null(strstr(out, "cannot restore"));
    assert_int_equal(sh("rm -rf %s", dir), 0);
}

/*
 * --net plumbing: a tap made in a private network namespace (unshare -n),
 * and two VMs linked by --net unix= (the first waits, the second connects).
 * The bench guest has no network driver yet: the devices must attach, be
 * announced, and not disturb the run.
 */
static void test_net_plumbing(void **state)
{
    char sock[] = "/tmp/ringvm-link-XXXXXX";
    (void)state;

    SKIP_WITHOUT_KVM();
    if (sh("unshare -n true 2>&1") != 0) {
        print_message("SKIP: cannot make a network namespace (unshare -n; needs root)\n");
        skip();
    }
    assert_int_equal(sh("unshare -n %s run --kernel %s --net tap=rvm0,mac=52:54:00:aa:bb:cc "
                        "--net tap=rvm1,queues=3 --cmdline 'test=pio n=10' 2>&1",
                        ringvm_path(), guest_path()),
                     0);
    assert_non_null(strstr(out, "RESULT test=pio n=10 "));
    assert_non_null(mkdtemp(sock));
    assert_int_equal(sh("cd %s && (%s run --kernel %s --net unix=l --cmdline 'test=pio n=10' "
                        "> a.log 2>&1 &) && sleep 0.3 && %s run --kernel %s --net unix=l "
                        "--cmdline 'test=pio n=10' > b.log 2>&1 && sleep 0.5 && cat a.log b.log",
                        sock, ringvm_path(), guest_path(), ringvm_path(), guest_path()),
                     0);
    assert_non_null(strstr(out, "waiting for the peer"));
    char *second = strstr(out, "RESULT test=pio");
    assert_non_null(second);
    assert_non_null(strstr(second + 1, "RESULT test=pio")); /* both ran */
    assert_int_equal(sh("rm -rf %s", sock), 0);
}

/* Two disks: the guest writes the second; the first stays untouched. */
static void test_blk_two_disks(void **state)
{
    char zero[4096] = {0}, buf[4096];
    int fd;
    (void)state;

    SKIP_WITHOUT_KVM();
    make_disk(disk_a, sizeof(disk_a), 8 << 20);
    make_disk(disk_b, sizeof(disk_b), 8 << 20);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s --disk %s --cmdline "
                        "'test=blk-verify n=500 qd=4 pattern=seq disk=1' 2>&1",
                        ringvm_path(), guest_path(), disk_a, disk_b),
                     0);
    assert_int_equal(field("mismatches"), 0);
    fd = open(disk_a, O_RDONLY);
    assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
    close(fd);
    assert_memory_equal(buf, zero, sizeof(buf));
    fd = open(disk_b, O_RDONLY);
    assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
    close(fd);
    assert_memory_not_equal(buf, zero, sizeof(buf));
    unlink(disk_a);
    unlink(disk_b);
}

/* A read-only disk refuses every write with IOERR; the guest sees errors and carries on. */
static void test_blk_read_only(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    make_disk(disk_a, sizeof(disk_a), 8 << 20);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s,ro --cmdline 'test=blk-write "
                        "n=50' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_int_equal(field("errors"), 50);
    assert_int_equal(sh("timeout 300 %s run --kernel %s --disk %s,ro --cmdline 'test=blk-read "
                        "n=50' 2>&1",
                        ringvm_path(), guest_path(), disk_a),
                     0);
    assert_int_equal(field("errors"), 0);
    unlink(disk_a);
}

/* A backing file on a store that fills up: IOERR in the guest, and the VM runs to its end. */
static void test_blk_store_fills_up(void **state)
{
    char dir[] = "/tmp/ringvm-full-XXXXXX", path[64];
    int fd;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_non_null(mkdtemp(dir));
    if (sh("mount -t tmpfs -o size=256k none %s 2>&1", dir) != 0) {
        rmdir(dir);
        print_message("SKIP: cannot mount a tiny tmpfs (needs root)\n");
        skip();
    }
    snprintf(path, sizeof(path), "%s/disk", dir);
    fd = open(path, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0 && ftruncate(fd, 8 << 20) == 0); /* 8 MiB, sparse, on 256 KiB */
    close(fd);
    int st = sh("timeout 300 %s run --kernel %s --disk %s --cmdline 'test=blk-write n=500 "
                "pattern=seq' 2>&1",
                ringvm_path(), guest_path(), path);
    uint64_t errors = UINT64_MAX;
    bg_result_value(out, "errors", &errors); /* before the next sh() replaces out */
    sh("umount %s", dir);
    rmdir(dir);
    assert_int_equal(st, 0);
    assert_true(errors > 0 && errors != UINT64_MAX);
    assert_true(errors < 500); /* the first writes found room */
}

/* The same guest driver under QEMU's virtio-blk-device (microvm announces it the same way). */
static void test_qemu_blk(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    if (sh("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
        print_message("SKIP: qemu-system-x86_64 is not installed\n");
        skip();
    }
    make_disk(disk_a, sizeof(disk_a), 16 << 20);
    assert_int_equal(sh("timeout 300 qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu "
                        "host,-arch-capabilities -m 128 -nodefaults -nographic -serial stdio "
                        "-device isa-debug-exit,iobase=0xf4 -drive id=d0,file=%s,format=raw,"
                        "if=none,cache=none,aio=io_uring -device virtio-blk-device,drive=d0 "
                        "-kernel %s -append 'test=blk-verify n=1000 qd=8' </dev/null 2>&1",
                        disk_a, guest_path()),
                     1);
    assert_int_equal(field("mismatches"), 0);
    assert_int_equal(field("errors"), 0);
    unlink(disk_a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_pio),           cmocka_unit_test(test_run_smp_pinned),
        cmocka_unit_test(test_run_serial_file),   cmocka_unit_test(test_run_exit_status),
        cmocka_unit_test(test_run_errors),        cmocka_unit_test(test_hugepages_2m),
        cmocka_unit_test(test_qemu_runs_guest),   cmocka_unit_test(test_embed_example),
        cmocka_unit_test(test_run_closed_stdout), cmocka_unit_test(test_blk_verify_10000),
        cmocka_unit_test(test_blk_irq_mode),      cmocka_unit_test(test_blk_two_disks),
        cmocka_unit_test(test_blk_read_only),     cmocka_unit_test(test_blk_store_fills_up),
        cmocka_unit_test(test_qemu_blk),          cmocka_unit_test(test_blk_polling),
        cmocka_unit_test(test_snapshot_commands), cmocka_unit_test(test_net_plumbing),
    };
    return cmocka_run_group_tests_name("cmd", tests, NULL, NULL);
}
