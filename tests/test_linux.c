/* SPDX-License-Identifier: MIT */
/*
 * The Linux tier: the project's test kernel (scripts/linux-kernel.sh) with
 * a 32-bit busybox initramfs (scripts/linux-initramfs.sh, /init from
 * guest/linux/init.sh), booted to user space by `ringvm run`, three VMs at
 * once:
 *  - the PVH vmlinux with 2 vCPUs, ACPI, two disks and a NIC: both CPUs,
 *    COM1 as a tty, O_DIRECT and page-cache writes to a raw disk, an ext4
 *    file system, then a live snapshot while user space idles, restored in
 *    another `ringvm restore` process where /init goes on: ARP and a TFTP
 *    exchange (UDP both ways) with this test's responder on the tap, then
 *    the i8042 reboot, status 0;
 *  - the bzImage with 1 vCPU and ACPI, to init, then a kernel panic that
 *    pvpanic turns into its own end (status 123);
 *  - the vmlinux with acpi=off (so ringvm writes no ACPI tables): CPUs and
 *    IRQ routing from the MP table, the disk from the command line, block
 *    I/O, reboot.
 * Each VM writes its console to a file; /init prints one marker line per
 * result (RINGVM-TEST <step> ok|FAIL ...). The test makes and removes its
 * network namespace, tap and disk images.
 *
 * RINGVM_LINUX_DIR names where the kernel and initramfs are built (default
 * build/linux); RINGVM_LINUX_KERNEL, RINGVM_LINUX_BZIMAGE and
 * RINGVM_LINUX_INITRD boot others instead (docs/linux-guests.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <netinet/in.h>

#include "common/guestproc.h"
#include "common/testutil.h"
#include "../guest/host/netns.h"

#define WAIT_S   900 /* for one marker; a boot to init takes 1.5-3 minutes here */
#define IDLE_S   20  /* the idle step's loop, during which the snapshot is taken */
#define BLOCK    4096
#define TAP      "rvmlx0"
#define HOST_IP  0x0a000202u /* 10.0.2.2 */
#define GUEST_IP "10.0.2.15"

/*
 * What this host needs (docs/linux-guests.md): its ring-0 emulator runs
 * neither XSAVE, CMPXCHG16B, POPCNT, SMAP's STAC/CLAC nor the LSL of the NMI
 * entry with FSGSBASE (its KVM shows the guest the host's CPUID leaf 1
 * whatever the VMM sets, so the kernel is told on its command line), never
 * returns from a hypercall (KVM's PV unhalt, PV IPI and PV sched-yield,
 * hidden through --cpuid), and runs 32-bit user code without SSE (glibc's
 * string functions must take their plain i386 versions) or the vDSO's fast
 * system call. Harmless on hardware.
 */
#define HOST_CPUID "--cpuid", "0x40000001,eax,clear=0x2880"
#define HOST_CMDLINE                                                                               \
    "console=ttyS0 panic=-1 reboot=k noxsave clearcpuid=cx16,popcnt,smap nofsgsbase vdso32=0 "     \
    "GLIBC_TUNABLES=glibc.cpu.hwcaps=-SSE2,-SSE3,-SSSE3,-SSE4_1,-SSE4_2,-AVX,-AVX2,-POPCNT,"       \
    "-MOVBE,-BMI1,-BMI2,-LZCNT,-ERMS,-FMA,-FMA4,-CMOV"

static struct guest_proc pvh = {.name = "vmlinux (PVH, ACPI)"}, restored = {.name = "restored"},
                         bz = {.name = "bzImage"}, noacpi = {.name = "vmlinux (no ACPI)"};
static char kernel[PATH_MAX], bzimage[PATH_MAX], initrd[PATH_MAX], ringvm[PATH_MAX + 16];
static char raw1[64], ext4img[64], raw2[64], snapdir[64];
static const char *skip_reason;
static int home_ns = -1;
static bool in_ns;

/* ---- patterns: a line repeated to 4 KiB, as scripts/linux-initramfs.sh makes them ---- */

static void pattern(uint8_t *out, const char *line)
{
    size_t n = strlen(line), off = 0;

    while (off < BLOCK) {
        size_t k = n + 1 < BLOCK - off ? n + 1 : BLOCK - off;
        memcpy(out + off, line, k > n ? n : k);
        if (k > n)
            out[off + n] = '\n';
        off += k;
    }
}

static int read_at(const char *path, off_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, len, off);

    if (fd >= 0)
        close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* A raw disk of 1 MiB whose block 0 holds the host's pattern. */
static int make_raw(char *path)
{
    uint8_t b[BLOCK];
    int fd;

    snprintf(path, 64, "/tmp/ringvm-lt-raw-XXXXXX");
    if ((fd = mkstemp(path)) < 0)
        return -1;
    pattern(b, "ringvm host pattern");
    int r = ftruncate(fd, 1 << 20) == 0 && pwrite(fd, b, BLOCK, 0) == BLOCK ? 0 : -1;
    close(fd);
    return r;
}

static int run_cmd(const char *fmt, const char *arg)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), fmt, arg);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the test's end of the network: a persistent tap and a TFTP responder ---- */

static int tap_create(void)
{
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), r = -1;

    if (fd < 0)
        return -1;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", TAP);
    /* Persistent, so that it outlives the first ringvm and the restore finds it by name. */
    if (ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0)
        r = 0;
    close(fd);
    return r;
}

static void tap_delete(void)
{
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", TAP);
    if (ioctl(fd, TUNSETIFF, &ifr) == 0)
        ioctl(fd, TUNSETPERSIST, 0);
    close(fd);
}

static struct {
    pthread_t thread;
    bool started;
    int stop; /* __atomic */
    uint8_t down[BLOCK];
    uint8_t up[2 * BLOCK];
    size_t up_len; /* __atomic, once the upload is complete */
    int served, received;
} tftp;

enum { TFTP_RRQ = 1, TFTP_WRQ = 2, TFTP_DATA = 3, TFTP_ACK = 4, TFTP_ERROR = 5 };

static void tftp_send(int s, uint16_t op, uint16_t block, const void *data, size_t len)
{
    uint8_t p[4 + 512];

    p[0] = (uint8_t)(op >> 8), p[1] = (uint8_t)op;
    p[2] = (uint8_t)(block >> 8), p[3] = (uint8_t)block;
    if (len)
        memcpy(p + 4, data, len);
    send(s, p, 4 + len, 0);
}

/* Waits for a packet of op with this block number; false after the retries. */
static bool tftp_expect(int s, uint16_t op, uint16_t block, uint8_t *buf, ssize_t *n)
{
    for (int tries = 0; tries < 20; tries++) {
        *n = recv(s, buf, 4 + 512, 0);
        if (*n < 0)
            return false; /* timed out: the caller resends */
        if (*n >= 4 && ((buf[0] << 8) | buf[1]) == op && ((buf[2] << 8) | buf[3]) == block)
            return true;
    }
    return false;
}

/* RRQ "down": the 4 KiB UDP pattern in 512-byte blocks, each resent until acknowledged. */
static void tftp_serve_read(int s)
{
    uint8_t buf[4 + 512];
    ssize_t n;

    for (uint16_t block = 1;; block++) {
        size_t off = (size_t)(block - 1) * 512, len = off < BLOCK ? BLOCK - off : 0;
        bool acked = false;

        if (len > 512)
            len = 512;
        for (int tries = 0; tries < 10 && !acked; tries++) {
            tftp_send(s, TFTP_DATA, block, tftp.down + off, len);
            acked = tftp_expect(s, TFTP_ACK, block, buf, &n);
        }
        if (!acked)
            return;
        if (len < 512) {
            tftp.served++;
            return;
        }
    }
}

/* WRQ "up": blocks acknowledged as they come, kept in tftp.up. */
static void tftp_serve_write(int s)
{
    uint8_t buf[4 + 512];
    size_t len = 0;
    ssize_t n;

    tftp_send(s, TFTP_ACK, 0, NULL, 0);
    for (uint16_t block = 1;; block++) {
        if (!tftp_expect(s, TFTP_DATA, block, buf, &n))
            return;
        if (len + (size_t)(n - 4) > sizeof(tftp.up))
            return;
        memcpy(tftp.up + len, buf + 4, (size_t)(n - 4));
        len += (size_t)(n - 4);
        tftp_send(s, TFTP_ACK, block, NULL, 0);
        if (n - 4 < 512) {
            tftp.received++;
            __atomic_store_n(&tftp.up_len, len, __ATOMIC_RELEASE);
            return;
        }
    }
}

static int udp_bound(uint16_t port, int timeout_s)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(HOST_IP)};
    struct timeval tv = {.tv_sec = timeout_s};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0)
        return -1;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(s);
        return -1;
    }
    return s;
}

/* A TFTP server (RFC 1350, no options) for the two files the guest asks for. */
static void *tftp_main(void *arg)
{
    int s = *(int *)arg;

    while (!__atomic_load_n(&tftp.stop, __ATOMIC_ACQUIRE)) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        uint8_t req[516];
        ssize_t n = recvfrom(s, req, sizeof(req) - 1, 0, (struct sockaddr *)&peer, &pl);
        int t;

        if (n < 4)
            continue;
        req[n] = 0;
        /* A transfer runs from a port of its own (its TID), to the client's. */
        if ((t = udp_bound(0, 5)) < 0)
            continue;
        if (connect(t, (struct sockaddr *)&peer, pl) == 0) {
            uint16_t op = (uint16_t)((req[0] << 8) | req[1]);
            const char *file = (const char *)req + 2;

            if (op == TFTP_RRQ && !strcmp(file, "down"))
                tftp_serve_read(t);
            else if (op == TFTP_WRQ && !strcmp(file, "up"))
                tftp_serve_write(t);
            else
                tftp_send(t, TFTP_ERROR, 1, "no such file", 13);
        }
        close(t);
    }
    close(s);
    return NULL;
}

/* ---- the VMs ---- */

#define RUN_ARGS(b, k, vcpus, ...)                                                                 \
    (char *[])                                                                                     \
    {                                                                                              \
        ringvm, "run", "--kernel", k, "--initrd", initrd, "--mem", "256M", "--vcpus", vcpus,       \
            "--serial", (b)->log, HOST_CPUID, __VA_ARGS__, NULL                                    \
    }

static void start_all(void)
{
    gp_files(&pvh);
    gp_files(&restored);
    gp_files(&bz);
    gp_files(&noacpi);
    gp_spawn(&pvh,
             RUN_ARGS(&pvh, kernel, "2", "--disk", raw1, "--disk", ext4img, "--net", "tap=" TAP,
                      "--snapshot-on-signal", snapdir, "--cmdline",
                      HOST_CMDLINE " rvm_steps=ttys0,cpus,nmi,blk,ext4,idle,arp,udp rvm_cpus=2 "
                                   "rvm_idle=20 rvm_ip=" GUEST_IP " rvm_peer=10.0.2.2"),
             false);
    gp_spawn(&bz, RUN_ARGS(&bz, bzimage, "1", "--cmdline", HOST_CMDLINE " rvm_steps=panic"), false);
    /* acpi=off: the command then makes no tables and puts the disk on the command line. */
    gp_spawn(&noacpi,
             RUN_ARGS(&noacpi, kernel, "2", "--disk", raw2, "--cmdline",
                      HOST_CMDLINE " acpi=off rvm_steps=cpus,blk rvm_cpus=2"),
             false);
}

static int find_files(void)
{
    const char *dir = getenv("RINGVM_LINUX_DIR"), *k = getenv("RINGVM_LINUX_KERNEL"),
               *b = getenv("RINGVM_LINUX_BZIMAGE"), *i = getenv("RINGVM_LINUX_INITRD");
    char cmd[PATH_MAX + 64];
    int st;

    if (!dir)
        dir = "build/linux";
    if (!k || !b || !i) {
        if (access("scripts/linux-kernel.sh", X_OK) != 0) {
            skip_reason = "scripts/linux-kernel.sh not found (run from the source tree: make test)";
            return 0;
        }
        snprintf(cmd, sizeof(cmd),
                 "scripts/linux-kernel.sh '%s' && scripts/linux-initramfs.sh '%s'", dir, dir);
        st = system(cmd);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
            skip_reason = "Debian's archive cannot be reached for the kernel or busybox packages";
            return 0;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return -1;
    }
    snprintf(kernel, sizeof(kernel), "%s", k ? k : "");
    snprintf(bzimage, sizeof(bzimage), "%s", b ? b : "");
    snprintf(initrd, sizeof(initrd), "%s", i ? i : "");
    if (!k)
        snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    if (!b)
        snprintf(bzimage, sizeof(bzimage), "%s/bzImage", dir);
    if (!i)
        snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio", dir);
    return 0;
}

static int net_setup(void)
{
    static int sock;

    if (bg_netns_enter(&home_ns) < 0)
        return -1;
    in_ns = true;
    if (tap_create() < 0 || bg_if_up(TAP, HOST_IP, 24) < 0)
        return -1;
    pattern(tftp.down, "ringvm UDP pattern");
    if ((sock = udp_bound(69, 1)) < 0)
        return -1;
    if (pthread_create(&tftp.thread, NULL, tftp_main, &sock) != 0) {
        close(sock);
        return -1;
    }
    tftp.started = true;
    return 0;
}

static int group_setup(void **state)
{
    char build[PATH_MAX];
    (void)state;

    if (!kvm_usable()) {
        skip_reason = "/dev/kvm is missing or not accessible on this host";
        return 0;
    }
    if (gp_build_dir(build, sizeof(build)) < 0)
        return -1;
    snprintf(ringvm, sizeof(ringvm), "%s/ringvm", build);
    if (find_files() < 0 || skip_reason)
        return skip_reason ? 0 : -1;
    if (geteuid() != 0) {
        skip_reason = "not root: the test needs a network namespace and a tap";
        return 0;
    }
    snprintf(snapdir, sizeof(snapdir), "/tmp/ringvm-lt-snap-XXXXXX");
    if (!mkdtemp(snapdir) || make_raw(raw1) < 0 || make_raw(raw2) < 0)
        return -1;
    snprintf(ext4img, sizeof(ext4img), "/tmp/ringvm-lt-ext4-XXXXXX");
    int fd = mkstemp(ext4img);
    if (fd < 0)
        return -1;
    close(fd);
    if (run_cmd("mke2fs -q -F -t ext4 '%s' 8M >/dev/null 2>&1", ext4img) != 0)
        return -1;
    if (net_setup() < 0)
        return -1;
    start_all();
    return 0;
}

static int group_teardown(void **state)
{
    struct guest_proc *all[] = {&pvh, &restored, &bz, &noacpi};
    (void)state;

    for (unsigned i = 0; i < 4; i++)
        gp_remove(all[i]);
    if (tftp.started) {
        __atomic_store_n(&tftp.stop, 1, __ATOMIC_RELEASE);
        pthread_join(tftp.thread, NULL);
    }
    if (in_ns) {
        tap_delete();
        bg_netns_leave(home_ns);
    }
    const char *files[] = {raw1, raw2, ext4img};
    for (unsigned i = 0; i < 3; i++)
        if (files[i][0])
            unlink(files[i]);
    if (snapdir[0])
        run_cmd("rm -rf '%s'", snapdir);
    return 0;
}

/* A marker of /init: "RINGVM-TEST <what>" followed by " ok". */
/*
 * Waits for the step's verdict, or for the end of all steps: a verdict line
 * that kernel output on the console cut in two is then reported, not waited
 * for until the timeout.
 */
static void need_ok(struct guest_proc *b, const char *file, const char *step)
{
    char ok[112], bad[112];

    snprintf(ok, sizeof(ok), "RINGVM-TEST %s ok", step);
    snprintf(bad, sizeof(bad), "RINGVM-TEST %s FAIL", step);
    char *text =
        gp_wait_any(b, file, (const char *const[]){ok, bad, "RINGVM-TEST done", NULL}, WAIT_S);
    gp_need(text, ok, b->name);
    free(text);
}

#define SKIP_IF_NEEDED()                                                                           \
    do {                                                                                           \
        if (skip_reason) {                                                                         \
            print_message("SKIP: %s\n", skip_reason);                                              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Boot to /init with 2 vCPUs from the MADT and the devices from the DSDT, each found once. */
static void test_pvh_boot(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    char *t = gp_wait_for(&pvh, pvh.log, "RINGVM-TEST cpus ", WAIT_S);
    gp_need(t, "Linux version ", pvh.name);
    gp_need(t, "ACPI: Using ACPI (MADT) for SMP configuration information", pvh.name);
    gp_need(t, "smp: Brought up 1 node, 2 CPUs", pvh.name);
    /* One package of two cores, as the MADT and CPUID say (leaf 0xb's core level). */
    gp_need(t, "CPU topo: Max. logical packages:   1", pvh.name);
    gp_need(t, "CPU topo: Num. cores per package:     2", pvh.name);
    gp_need(t, "virtio_blk virtio0: [vda]", pvh.name);
    gp_need(t, "virtio_blk virtio1: [vdb]", pvh.name);
    gp_need(t, "RINGVM-TEST init ok", pvh.name);
    gp_need(t, "RINGVM-TEST found block vda", pvh.name);
    gp_need(t, "RINGVM-TEST found block vdb", pvh.name);
    gp_need(t, "RINGVM-TEST found net eth0", pvh.name);
    gp_need(t, "RINGVM-TEST cpus ok online 0-1", pvh.name);
    /* Announced one way: the DSDT, and no command-line copies that fail to claim their window. */
    gp_need_not(t, "virtio_mmio.device=", pvh.name);
    gp_need_not(t, "can't request region", pvh.name);
    /* The MP floating pointer is found at once, not after a scan of the BIOS area. */
    gp_need(t, "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]", pvh.name);
    free(t);
}

/* COM1 in the DSDT: the 8250 driver sets up IRQ 4 and output written to /dev/ttyS0 arrives. */
static void test_pvh_ttys0(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    need_ok(&pvh, pvh.log, "ttyS0");
    char *t = gp_text(pvh.log);
    assert_non_null(t);
    gp_need(t, "RINGVM-TEST ttyS0 written through /dev/ttyS0", pvh.name);
    gp_need(t, "00:0", pvh.name); /* the PNP device: "00:0N: ttyS0 at I/O 0x3f8" */
    gp_need(t, "ttyS0 at I/O 0x3f8", pvh.name);
    free(t);
}

/*
 * An NMI to each CPU (what the RCU stall detector sends when a loaded host
 * lets a CPU fall behind) is taken and returned from: before nofsgsbase the
 * NMI entry's LSL ended the VM here with an emulation failure.
 */
static void test_pvh_nmi(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    need_ok(&pvh, pvh.log, "nmi");
    char *t = gp_text(pvh.log);
    assert_non_null(t);
    gp_need(t, "NMI backtrace for cpu 0", pvh.name);
    gp_need(t, "NMI backtrace for cpu 1", pvh.name);
    free(t);
}

/* O_DIRECT and page cache + sync writes, read back in the guest and found on the host. */
static void test_pvh_block(void **state)
{
    uint8_t got[2 * BLOCK], want[2 * BLOCK];
    (void)state;

    SKIP_IF_NEEDED();
    need_ok(&pvh, pvh.log, "blk");
    pattern(want, "ringvm O_DIRECT pattern");
    pattern(want + BLOCK, "ringvm page cache pattern");
    assert_int_equal(read_at(raw1, BLOCK, got, sizeof(got)), 0);
    assert_memory_equal(got, want, sizeof(want));
}

/* ext4 mounted read-write, a file written, unmounted: clean for e2fsck, the file there. */
static void test_pvh_ext4(void **state)
{
    char out[256] = "";
    (void)state;

    SKIP_IF_NEEDED();
    need_ok(&pvh, pvh.log, "ext4");
    assert_int_equal(run_cmd("e2fsck -fn '%s' >/dev/null 2>&1", ext4img), 0);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "debugfs -R 'cat /ringvm.txt' '%s' 2>/dev/null", ext4img);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    assert_string_equal(out, "written by the ringvm Linux tier\n");
}

/*
 * A live snapshot while user space idles, the VM killed, the snapshot
 * restored by another process: /init goes on where it was.
 */
static void test_pvh_snapshot_restore(void **state)
{
    char dir[96];
    (void)state;

    SKIP_IF_NEEDED();
    char *t = gp_wait_for(&pvh, pvh.log, "RINGVM-TEST idle start", WAIT_S);
    gp_need(t, "RINGVM-TEST idle start", pvh.name);
    free(t);
    assert_int_equal(kill(pvh.pid, SIGUSR1), 0);
    t = gp_wait_for(&pvh, pvh.err, "ringvm: snapshot ", 120);
    gp_need(t, "paused", pvh.name);
    char *line = strstr(t, "ringvm: snapshot ");
    print_message("  %.*s\n", (int)strcspn(line, "\n"), line);
    free(t);
    gp_stop(&pvh);
    t = gp_text(pvh.log);
    assert_non_null(t);
    gp_need_not(t, "RINGVM-TEST idle ok", pvh.name); /* it was killed mid-loop */
    free(t);

    snprintf(dir, sizeof(dir), "%s/snap-1", snapdir);
    /* The backends named again, in the order the first run added them. */
    gp_spawn(&restored,
             (char *[]){ringvm, "restore", dir, "--disk", raw1, "--disk", ext4img, "--net",
                        "tap=" TAP, "--serial", restored.log, NULL},
             false);
    need_ok(&restored, restored.log, "idle");
}

/* After the restore: ARP and a TFTP exchange with the responder, through the reopened tap. */
static void test_pvh_net(void **state)
{
    uint8_t want[BLOCK];
    (void)state;

    SKIP_IF_NEEDED();
    need_ok(&restored, restored.log, "arp");
    need_ok(&restored, restored.log, "udp-down");
    need_ok(&restored, restored.log, "udp-up");
    assert_int_equal(tftp.served, 1);
    assert_int_equal(tftp.received, 1);
    pattern(want, "ringvm UDP pattern");
    assert_int_equal(__atomic_load_n(&tftp.up_len, __ATOMIC_ACQUIRE), BLOCK);
    assert_memory_equal(tftp.up, want, BLOCK);
}

/* /init's end: the i8042 reset ends the restored VM and ringvm exits 0. */
static void test_pvh_reboot(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    assert_int_equal(gp_wait_exit(&restored, WAIT_S), 0);
    char *t = gp_text(restored.log);
    assert_non_null(t);
    gp_need(t, "RINGVM-TEST done", restored.name);
    gp_need_not(t, "FAIL", restored.name);
    free(t);
}

/* The bzImage to init; then a panic, which pvpanic reports: status 123, not a clean reboot. */
static void test_bzimage_panic(void **state)
{
    (void)state;
    SKIP_IF_NEEDED();
    int status = gp_wait_exit(&bz, WAIT_S);
    char *t = gp_text(bz.log), *e = gp_text(bz.err);
    assert_non_null(t);
    assert_non_null(e);
    gp_need(t, "RINGVM-TEST init ok", bz.name);
    gp_need(t, "Kernel panic - not syncing", bz.name);
    gp_need(e, "the guest kernel panicked", bz.name);
    gp_need(e, "boot timer: the guest marked", bz.name);
    free(t);
    free(e);
    assert_int_equal(status, 123);
}

/* Without ACPI: CPUs and IRQ routing from the MP table, the disk from the command line. */
static void test_noacpi_boot(void **state)
{
    uint8_t got[2 * BLOCK], want[2 * BLOCK];
    (void)state;

    SKIP_IF_NEEDED();
    assert_int_equal(gp_wait_exit(&noacpi, WAIT_S), 0);
    char *t = gp_text(noacpi.log);
    assert_non_null(t);
    gp_need_not(t, "ACPI: RSDP", noacpi.name);
    gp_need(t, "Intel MultiProcessor Specification v1.4", noacpi.name);
    gp_need(t, "virtio_mmio.device=0x200@0xd0100000:5", noacpi.name);
    gp_need(t, "smp: Brought up 1 node, 2 CPUs", noacpi.name);
    gp_need(t, "RINGVM-TEST cpus ok online 0-1", noacpi.name);
    gp_need(t, "RINGVM-TEST blk ok", noacpi.name);
    gp_need(t, "RINGVM-TEST done", noacpi.name);
    free(t);
    pattern(want, "ringvm O_DIRECT pattern");
    pattern(want + BLOCK, "ringvm page cache pattern");
    assert_int_equal(read_at(raw2, BLOCK, got, sizeof(got)), 0);
    assert_memory_equal(got, want, sizeof(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pvh_boot),      cmocka_unit_test(test_pvh_ttys0),
        cmocka_unit_test(test_pvh_nmi),       cmocka_unit_test(test_pvh_block),
        cmocka_unit_test(test_pvh_ext4),      cmocka_unit_test(test_pvh_snapshot_restore),
        cmocka_unit_test(test_pvh_net),       cmocka_unit_test(test_pvh_reboot),
        cmocka_unit_test(test_bzimage_panic), cmocka_unit_test(test_noacpi_boot),
    };
    return cmocka_run_group_tests_name("linux", tests, group_setup, group_teardown);
}
