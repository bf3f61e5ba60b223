/* SPDX-License-Identifier: MIT */
/*
 * The slow tier: Debian's cloud kernel (scripts/linux-stock.sh fetches it
 * with apt-get download and caches it under the build directory) booted by
 * `ringvm run` as a bzImage (64-bit boot protocol, 2 vCPUs, a disk and a
 * NIC in the DSDT) and as a vmlinux (PVH), both at once, with a busybox
 * initramfs. The early-boot tests assert what the kernel prints before it
 * needs guest ring 0 at full speed: its banner, the command line as it saw
 * it, the e820 map, the initrd, the ACPI tables, the CPU count, memory init.
 * The full-boot test (init reached, all CPUs, disk and NIC found, reboot)
 * needs a host that runs guest ring 0 natively; on a software-nested host
 * (kvm_pvm) the kernel stops at its int3 self-test, and the test says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/guestproc.h"
#include "common/testutil.h"

#define CMDLINE_BZ  "console=ttyS0 noxsave clearcpuid=cx16 panic=-1 reboot=k ringvm=bz"
#define CMDLINE_PVH "console=ttyS0 noxsave clearcpuid=cx16 panic=-1 reboot=k ringvm=pvh"
#define WAIT_S      540

static struct guest_proc bz = {.name = "bzImage"}, pvh = {.name = "vmlinux (PVH)"};
static char build[PATH_MAX], disk[64];
static const char *skip_reason;

/* Software-nested KVM: guest ring 0 is emulated, and Linux cannot get past early boot. */
static bool ring0_emulated(void)
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static void start(struct guest_proc *b, const char *kernel, const char *vcpus, const char *cmdline)
{
    char k[PATH_MAX + 32], initrd[PATH_MAX + 32], ringvm[PATH_MAX + 16];

    gp_files(b);
    snprintf(k, sizeof(k), "%s/linux-stock/%s", build, kernel);
    snprintf(initrd, sizeof(initrd), "%s/linux-stock/initrd.img", build);
    snprintf(ringvm, sizeof(ringvm), "%s/ringvm", build);
    /* A network namespace of its own for the NIC's tap; nothing leaves it. */
    gp_spawn(b,
             (char *[]){ringvm, "run", "--kernel", k, "--initrd", initrd, "--mem", "256M",
                        "--vcpus", (char *)vcpus, "--disk", disk, "--net", "tap=rvmlinux0",
                        "--serial", b->log, "--cmdline", (char *)cmdline, NULL},
             true);
}

static int group_setup(void **state)
{
    char cmd[PATH_MAX + 64];
    (void)state;

    if (!kvm_usable()) {
        skip_reason = "/dev/kvm is missing or not accessible on this host";
        return 0;
    }
    if (gp_build_dir(build, sizeof(build)) < 0)
        return -1;
    if (access("scripts/linux-stock.sh", X_OK) != 0) {
        skip_reason = "scripts/linux-stock.sh not found (run from the source tree: make test)";
        return 0;
    }
    snprintf(cmd, sizeof(cmd), "scripts/linux-stock.sh '%s'", build);
    int st = system(cmd);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
        skip_reason = "Debian's archive cannot be reached to fetch the kernel (apt-get download)";
        return 0;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    snprintf(disk, sizeof(disk), "/tmp/ringvm-linux-disk-XXXXXX");
    int fd = mkstemp(disk);
    if (fd < 0 || ftruncate(fd, 16 << 20) < 0)
        return -1;
    close(fd);
    start(&bz, "vmlinuz", "2", CMDLINE_BZ);
    start(&pvh, "vmlinux", "1", CMDLINE_PVH);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    gp_remove(&bz);
    gp_remove(&pvh);
    if (disk[0])
        unlink(disk);
    return 0;
}

static void early_boot(struct guest_proc *b, const char *cmdline, const char *cpus)
{
    char want[256];

    if (skip_reason) {
        print_message("SKIP: %s\n", skip_reason);
        skip();
    }
    char *text = gp_wait_for(b, b->log, "Memory: ", WAIT_S);
    assert_non_null(text);
    gp_need(text, "Linux version ", b->name);
    snprintf(want, sizeof(want), "Command line: %s", cmdline); /* then the devices words */
    gp_need(text, want, b->name);
    gp_need(text, "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable", b->name);
    gp_need(text, "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved", b->name);
    gp_need(text, "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable", b->name);
    gp_need(text, "RAMDISK: [mem 0x", b->name);
    gp_need(text, "ACPI: RSDP 0x00000000000E0000", b->name);
    gp_need(text, "ACPI: DSDT 0x", b->name);
    gp_need(text, "ACPI: Using ACPI (MADT) for SMP configuration information", b->name);
    snprintf(want, sizeof(want), "smpboot: Allowing %s CPUs", cpus);
    gp_need(text, want, b->name);
    gp_need(text, "Memory: ", b->name);
    free(text);
    if (ring0_emulated())
        gp_stop(b); /* it cannot get further here; its time is better spent on the other boot */
}

static void test_bzimage_early_boot(void **state)
{
    (void)state;
    early_boot(&bz, CMDLINE_BZ, "2");
}

static void test_pvh_early_boot(void **state)
{
    (void)state;
    early_boot(&pvh, CMDLINE_PVH, "1");
}

/* The rest of the boot: init, both CPUs, the disk and the NIC, a clean reboot. */
static void test_full_boot(void **state)
{
    (void)state;
    if (skip_reason) {
        print_message("SKIP: %s\n", skip_reason);
        skip();
    }
    if (ring0_emulated()) {
        gp_stop(&bz);
        print_message("SKIP: guest ring 0 is emulated on this host (software-nested KVM, kvm_pvm): "
                      "Linux dies at its int3 self-test after early boot; the full boot runs on "
                      "hosts with hardware virtualization\n");
        skip();
    }
    char *text = gp_wait_for(&bz, bz.log, "ringvm: net eth0", WAIT_S);
    assert_non_null(text);
    gp_need(text, "ringvm: init reached", bz.name);
    gp_need(text, "ringvm: cpus 2", bz.name);
    gp_need(text, "ringvm: block vda", bz.name);
    gp_need(text, "ringvm: net eth0", bz.name);
    free(text);
    assert_int_equal(gp_wait_exit(&bz, 60), 0); /* reboot=k: the i8042 reset */
    char *err = gp_text(bz.err);
    assert_non_null(err);
    gp_need(err, "boot timer: the guest marked", bz.name);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pvh_early_boot),
        cmocka_unit_test(test_bzimage_early_boot),
        cmocka_unit_test(test_full_boot),
    };
    return cmocka_run_group_tests_name("linux-stock", tests, group_setup, group_teardown);
}
