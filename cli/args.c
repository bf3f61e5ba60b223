/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

const char cli_usage[] =
    "usage: ringvm run --kernel PATH [options]   run a guest until it ends\n"
    "       ringvm restore DIR [--disk PATH]... [--net ...]... [--trust-snapshot-paths]\n"
    "                      [--lazy|--eager] [--verify] [--max-mem SIZE] [--serial ...]\n"
    "                      [--hugepages ...] [-v]\n"
    "                                            resume a snapshot's VM until it ends\n"
    "       ringvm snapshot-merge DIR OUT        write the full snapshot a diff chain makes\n"
    "       ringvm caps                          print what this host's KVM offers\n"
    "       ringvm --help | --version\n"
    "\n"
    "run options:\n"
    "  --kernel PATH        a Linux bzImage (64-bit boot protocol), or a PVH ELF image\n"
    "                       (XEN_ELFNOTE_PHYS32_ENTRY), e.g. a vmlinux built with CONFIG_PVH\n"
    "  --cmdline STRING     guest command line (default: empty)\n"
    "  --initrd PATH        initial ramdisk (bzImage: in the zero page; PVH: module 0)\n"
    "  --mem SIZE           guest RAM, with K, M or G suffix (default: 128M)\n"
    "  --vcpus N            number of vCPUs (default: 1)\n"
    "  --cpus LIST          pin vCPU i to the i-th CPU of LIST, e.g. 0,1 or 2-5 (round robin)\n"
    "  --io-cpus LIST       CPUs for device I/O workers (default: ours less the vCPUs')\n"
    "  --numa-node N        place memory on node N and pin vCPUs to its CPUs\n"
    "  --hugepages KIND     none (4 KiB, default), thp, 2M or 1G (hugetlbfs; the pool must\n"
    "                       already hold enough pages: see docs/host-setup.md)\n"
    "  --prefault           fault all guest memory in before the guest starts\n"
    "  --serial stdio|PATH  where COM1 output goes (default: stdio)\n"
    "  --disk PATH[,ro][,queues=N][,poll=US][,on_error=report|enospc|stop]\n"
    "             [,iops=N][,bw=SIZE][,iops_burst=N][,bw_burst=SIZE]\n"
    "                       a virtio-blk disk on a raw image (repeatable, up to 16); the\n"
    "                       guest finds it in the ACPI DSDT (or, with --no-acpi, through\n"
    "                       virtio_mmio.device= on its command line);\n"
    "                       poll=US: its worker polls the rings US microseconds after work\n"
    "                       (default 32; 0: never); on_error: what a backend error does:\n"
    "                       the guest sees it (report, default), or the VM pauses on ENOSPC\n"
    "                       (enospc) or on any error (stop) until SIGCONT resumes it;\n"
    "                       iops, bw: a rate limit in requests and bytes a second (bw=100M),\n"
    "                       with bursts of iops_burst, bw_burst (default: 0.1 s worth)\n"
    "  --net tap=NAME[,mac=MAC][,mtu=N][,poll=US][,queues=N] | unix=PATH[,...]\n"
    "                       a virtio-net device on a tap (created if missing) or on a\n"
    "                       SOCK_SEQPACKET socket at PATH (connects, or waits for a peer);\n"
    "                       poll=US as for --disk; queues=N: N queue pairs (tap, MQ);\n"
    "                       tx_pps=N, tx_bw=SIZE, rx_pps=N, rx_bw=SIZE: rate limits in\n"
    "                       frames and bytes a second, each way (bursts: 0.1 s worth)\n"
    "  --dirty-ring N       KVM dirty ring of N entries per vCPU for dirty tracking\n"
    "                       (a power of two; default: none, the dirty bitmap)\n"
    "  --snapshot-on-signal DIR\n"
    "                       on SIGUSR1, snapshot into DIR/snap-1, DIR/snap-2, ...\n"
    "  --snapshot-mode full|live|diff\n"
    "                       how (default live; diff: the first is full, then diffs)\n"
    "  --no-acpi            no ACPI tables: virtio devices go on the command line\n"
    "                       (virtio_mmio.device=), CPUs and IRQs in the MP table only;\n"
    "                       implied by acpi=off in --cmdline\n"
    "  --cpuid LEAF[.SUB],REG,clear=MASK|set=MASK|value=V\n"
    "                       change a CPUID register of every vCPU (repeatable), e.g.\n"
    "                       0x40000001,eax,clear=0x2880 hides KVM's PV unhalt, PV IPI\n"
    "                       and PV sched-yield, whose hypercalls some hosts cannot run\n"
    "  -v, --verbose        log debug messages to stderr\n"
    "\n"
    "restore options:\n"
    "  --lazy, --eager      map the memory file (pages load on first touch) or read it\n"
    "                       all before the guest runs (default: eager, every chunk checked)\n"
    "  --verify             lazy: check every memory chunk's sum first (reads the file)\n"
    "  --max-mem SIZE       refuse a snapshot of more guest RAM (default: the host's RAM)\n"
    "  --disk PATH          the backend of the snapshot's next virtio-blk disk, in the order\n"
    "                       they were added; it must be the very file saved, unchanged\n"
    "  --net tap=NAME|unix=PATH[,tx_pps=,tx_bw=,rx_pps=,rx_bw=]\n"
    "                       the backend of the snapshot's next virtio-net device, and its\n"
    "                       rate limits from now on\n"
    "  --trust-snapshot-paths\n"
    "                       open the disk paths and tap names the snapshot records, and\n"
    "                       follow its parents' absolute paths (only for snapshots this host\n"
    "                       made; a restore otherwise opens only what it is given)\n"
    "\n"
    "Devices: a 16550A UART on COM1 (0x3f8, IRQ 4), a debug-exit port at 0xf4, the\n"
    "i8042 reset line (0x64), a boot timer (0x440), pvpanic (0x505), and virtio-mmio\n"
    "devices from 0xd0100000 (4 KiB apart, IRQs from 5).\n"
    "Exit status: the value the guest writes to port 0xf4 (QEMU's isa-debug-exit\n"
    "would exit with (value << 1) | 1), 0 when the guest powers off, 125 when ringvm\n"
    "fails or the guest crashes (triple fault, emulation error), 123 when the guest\n"
    "kernel panics (pvpanic), 130 on SIGINT/SIGTERM.\n";

int cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -EINVAL;
    }
    /* A suffix may be spelt K, KB or KiB. */
    if (*end && strcmp(end + 1, "") && strcmp(end + 1, "B") && strcmp(end + 1, "iB"))
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

/* A whole number in base (0: C syntax) up to max, the whole of s, no sign. */
static int parse_ull(const char *s, int base, unsigned long long max, unsigned long long *out)
{
    char *end;
    unsigned long long v;

    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, base);
    if (errno || *end || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long long v;

    if (parse_ull(s, 10, max, &v) < 0)
        return -EINVAL;
    *out = (unsigned long)v;
    return 0;
}

int cli_parse_cpus(const char *s, int *cpus, unsigned max)
{
    unsigned n = 0;
    const char *p = s;

    if (!s || !*s)
        return -EINVAL;
    while (*p) {
        char *end;
        unsigned long a, b;

        if (*p < '0' || *p > '9')
            return -EINVAL;
        a = b = strtoul(p, &end, 10);
        if (*end == '-') {
            if (end[1] < '0' || end[1] > '9')
                return -EINVAL;
            b = strtoul(end + 1, &end, 10);
        }
        if (a > b || b >= 4096 || (*end && *end != ','))
            return -EINVAL;
        for (unsigned long c = a; c <= b; c++) {
            if (n == max)
                return -EINVAL;
            cpus[n++] = (int)c;
        }
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            return -EINVAL; /* trailing comma */
    }
    return (int)n;
}

int cli_parse_disk(char *s, struct rvm_blk_config *disk)
{
    char *opt, *save = NULL;

    memset(disk, 0, sizeof(*disk));
    if (!s || *s == ',') /* strtok_r would skip an empty path */
        return -EINVAL;
    disk->path = strtok_r(s, ",", &save);
    if (!disk->path || !*disk->path)
        return -EINVAL;
    while ((opt = strtok_r(NULL, ",", &save))) {
        unsigned long q;
        uint64_t v;

        if (!strcmp(opt, "ro"))
            disk->ro = true;
        else if (!strncmp(opt, "queues=", 7) && parse_uint(opt + 7, 16, &q) == 0 && q > 0)
            disk->queues = (uint16_t)q;
        else if (!strncmp(opt, "poll=", 5) && parse_uint(opt + 5, 1000000, &q) == 0)
            disk->poll_us = q ? (uint32_t)q : RVM_BLK_NO_POLL;
        else if (!strncmp(opt, "iops=", 5) && cli_parse_size(opt + 5, &v) == 0)
            disk->limit.ops_per_s = v;
        else if (!strncmp(opt, "bw=", 3) && cli_parse_size(opt + 3, &v) == 0)
            disk->limit.bytes_per_s = v;
        else if (!strncmp(opt, "iops_burst=", 11) && cli_parse_size(opt + 11, &v) == 0)
            disk->limit.ops_burst = v;
        else if (!strncmp(opt, "bw_burst=", 9) && cli_parse_size(opt + 9, &v) == 0)
            disk->limit.bytes_burst = v;
        else if (!strcmp(opt, "on_error=report"))
            disk->on_error = RVM_BLK_ERROR_REPORT;
        else if (!strcmp(opt, "on_error=enospc"))
            disk->on_error = RVM_BLK_ERROR_STOP_ENOSPC;
        else if (!strcmp(opt, "on_error=stop"))
            disk->on_error = RVM_BLK_ERROR_STOP;
        else
            return -EINVAL;
    }
    return 0;
}

/* tx_pps=, tx_bw=, rx_pps=, rx_bw= (sizes with K, M, G): true when opt is one of them. */
static bool net_limit_opt(const char *opt, struct cli_net *net)
{
    static const struct {
        const char *key;
        bool tx, bytes;
    } keys[] = {{"tx_pps=", true, false},
                {"tx_bw=", true, true},
                {"rx_pps=", false, false},
                {"rx_bw=", false, true}};
    uint64_t v;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        size_t k = strlen(keys[i].key);
        struct rvm_rate_limit *l = keys[i].tx ? &net->tx_limit : &net->rx_limit;

        if (strncmp(opt, keys[i].key, k) || cli_parse_size(opt + k, &v) < 0)
            continue;
        *(keys[i].bytes ? &l->bytes_per_s : &l->ops_per_s) = v;
        return true;
    }
    return false;
}

int cli_parse_net(char *s, struct cli_net *net)
{
    char *save = NULL, *opt;
    bool first = true;

    memset(net, 0, sizeof(*net));
    for (opt = strtok_r(s, ",", &save); opt; opt = strtok_r(NULL, ",", &save), first = false) {
        unsigned long v;
        unsigned m[6];
        char end;

        if (first && !strncmp(opt, "tap=", 4) && opt[4])
            net->tap = opt + 4;
        else if (first && !strncmp(opt, "unix=", 5) && opt[5])
            net->unix_path = opt + 5;
        else if (!first && !strncmp(opt, "mac=", 4) &&
                 sscanf(opt + 4, "%2x:%2x:%2x:%2x:%2x:%2x%c", &m[0], &m[1], &m[2], &m[3], &m[4],
                        &m[5], &end) == 6 &&
                 strlen(opt + 4) == 17 && !(m[0] & 1)) { /* not multicast */
            for (int i = 0; i < 6; i++)
                net->mac[i] = (uint8_t)m[i];
        } else if (!first && !strncmp(opt, "mtu=", 4) && parse_uint(opt + 4, 65521, &v) == 0 &&
                   v >= 68)
            net->mtu = (uint16_t)v;
        else if (!first && !strncmp(opt, "poll=", 5) && parse_uint(opt + 5, 1000000, &v) == 0)
            net->poll_us = v ? (uint32_t)v : RVM_NET_NO_POLL;
        else if (!first && net->tap && !strncmp(opt, "queues=", 7) &&
                 parse_uint(opt + 7, RVM_NET_MAX_QUEUE_PAIRS, &v) == 0 && v >= 1)
            net->queues = (uint16_t)v;
        else if (!first && net_limit_opt(opt, net))
            ;
        else
            return -EINVAL;
    }
    return net->tap || net->unix_path ? 0 : -EINVAL;
}

/* A 32-bit number in C syntax (decimal, 0x hex, 0 octal), the whole of s. */
static int parse_u32(const char *s, uint32_t *out)
{
    unsigned long long v;

    if (parse_ull(s, 0, UINT32_MAX, &v) < 0)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

int cli_parse_cpuid(const char *s, struct rvm_cpuid_edit *e)
{
    static const char *const regs[] = {"eax", "ebx", "ecx", "edx"};
    char buf[128], *save = NULL, *leaf, *reg, *op, *dot;
    bool any_op = false;

    memset(e, 0, sizeof(*e));
    if (!s || strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    leaf = strtok_r(buf, ",", &save);
    reg = strtok_r(NULL, ",", &save);
    if (!leaf || !reg)
        return -EINVAL;
    if ((dot = strchr(leaf, '.'))) {
        *dot = '\0';
        if (!strcmp(dot + 1, "*"))
            e->any_index = true;
        else if (parse_u32(dot + 1, &e->index) < 0)
            return -EINVAL;
    }
    if (parse_u32(leaf, &e->function) < 0)
        return -EINVAL;
    for (e->reg = 0; e->reg < 4 && strcmp(reg, regs[e->reg]); e->reg++)
        ;
    if (e->reg == 4)
        return -EINVAL;
    while ((op = strtok_r(NULL, ",", &save))) {
        uint32_t v;

        if (!strncmp(op, "clear=", 6) && parse_u32(op + 6, &v) == 0)
            e->clear |= v;
        else if (!strncmp(op, "set=", 4) && parse_u32(op + 4, &v) == 0)
            e->set |= v;
        else if (!strncmp(op, "value=", 6) && parse_u32(op + 6, &v) == 0)
            e->clear = UINT32_MAX, e->set = v;
        else
            return -EINVAL;
        any_op = true;
    }
    return any_op ? 0 : -EINVAL;
}

static int fail(char *err, size_t len, const char *fmt, const char *arg)
{
    snprintf(err, len, fmt, arg ? arg : "");
    return -EINVAL;
}

static int parse_hugepages(const char *s, enum rvm_mem_backing *b)
{
    if (!strcmp(s, "none") || !strcmp(s, "4K") || !strcmp(s, "4k"))
        *b = RVM_MEM_ANON;
    else if (!strcmp(s, "thp"))
        *b = RVM_MEM_THP;
    else if (!strcmp(s, "2M") || !strcmp(s, "2m"))
        *b = RVM_MEM_HUGE_2M;
    else if (!strcmp(s, "1G") || !strcmp(s, "1g"))
        *b = RVM_MEM_HUGE_1G;
    else
        return -EINVAL;
    return 0;
}

enum {
    OPT_KERNEL = 256,
    OPT_CMDLINE,
    OPT_INITRD,
    OPT_MEM,
    OPT_VCPUS,
    OPT_CPUS,
    OPT_NUMA,
    OPT_HUGE,
    OPT_PREFAULT,
    OPT_SERIAL,
    OPT_VERSION,
    OPT_DISK,
    OPT_IO_CPUS,
    OPT_DIRTY_RING,
    OPT_SNAP_DIR,
    OPT_SNAP_MODE,
    OPT_LAZY,
    OPT_EAGER,
    OPT_NET,
    OPT_NO_ACPI,
    OPT_CPUID,
    OPT_VERIFY,
    OPT_MAX_MEM,
    OPT_TRUST_PATHS,
};

static const struct option long_opts[] = {
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"mem", required_argument, NULL, OPT_MEM},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"io-cpus", required_argument, NULL, OPT_IO_CPUS},
    {"dirty-ring", required_argument, NULL, OPT_DIRTY_RING},
    {"snapshot-on-signal", required_argument, NULL, OPT_SNAP_DIR},
    {"snapshot-mode", required_argument, NULL, OPT_SNAP_MODE},
    {"lazy", no_argument, NULL, OPT_LAZY},
    {"net", required_argument, NULL, OPT_NET},
    {"eager", no_argument, NULL, OPT_EAGER},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"max-mem", required_argument, NULL, OPT_MAX_MEM},
    {"trust-snapshot-paths", no_argument, NULL, OPT_TRUST_PATHS},
    {"numa-node", required_argument, NULL, OPT_NUMA},
    {"hugepages", required_argument, NULL, OPT_HUGE},
    {"prefault", no_argument, NULL, OPT_PREFAULT},
    {"serial", required_argument, NULL, OPT_SERIAL},
    {"disk", required_argument, NULL, OPT_DISK},
    {"no-acpi", no_argument, NULL, OPT_NO_ACPI},
    {"cpuid", required_argument, NULL, OPT_CPUID},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static int parse_run_opt(int c, const char *arg, struct cli_opts *o, char *err, size_t len)
{
    unsigned long v;
    int n;

    switch (c) {
    case OPT_KERNEL:
        o->kernel = arg;
        return 0;
    case OPT_CMDLINE:
        o->cmdline = arg;
        return 0;
    case OPT_INITRD:
        o->initrd = arg;
        return 0;
    case OPT_SERIAL:
        o->serial = arg;
        return *arg ? 0 : fail(err, len, "--serial needs stdio or a path", NULL);
    case OPT_PREFAULT:
        o->vm.mem.prefault = true;
        return 0;
    case OPT_NO_ACPI:
        o->no_acpi = true;
        return 0;
    case OPT_CPUID:
        if (o->vm.n_cpuid_edits == RVM_MAX_CPUID_EDITS)
            return fail(err, len, "too many --cpuid options (at most 32)", NULL);
        if (cli_parse_cpuid(arg, &o->vm.cpuid_edits[o->vm.n_cpuid_edits]) < 0)
            return fail(err, len,
                        "bad --cpuid '%s' (LEAF[.SUBLEAF],REG,clear=MASK|set=MASK|value=V)", arg);
        o->vm.n_cpuid_edits++;
        return 0;
    case OPT_DISK:
        if (o->ndisks + o->nnets == RVM_VIRTIO_MAX_DEVICES)
            return fail(err, len, "too many --disk and --net options (at most 16)", NULL);
        if (cli_parse_disk((char *)arg, &o->disks[o->ndisks]) < 0)
            return fail(err, len, "bad --disk '%s' (PATH[,ro][,queues=N][,poll=US][,on_error=...])",
                        arg);
        o->ndisks++;
        return 0;
    case 'v':
        o->verbose = true;
        return 0;
    case OPT_MEM:
        if (cli_parse_size(arg, &o->vm.mem.size) < 0 || o->vm.mem.size == 0)
            return fail(err, len, "bad --mem size '%s' (e.g. 128M, 2G)", arg);
        return 0;
    case OPT_VCPUS:
        if (parse_uint(arg, 1024, &v) < 0 || v == 0)
            return fail(err, len, "bad --vcpus '%s' (1 to 1024)", arg);
        o->vm.vcpus = (uint32_t)v;
        return 0;
    case OPT_CPUS:
        n = cli_parse_cpus(arg, o->vm.cpus, RVM_MAX_CPUS_LIST);
        if (n <= 0)
            return fail(err, len, "bad --cpus list '%s' (e.g. 0,1 or 2-5)", arg);
        o->vm.n_cpus = (unsigned)n;
        return 0;
    case OPT_IO_CPUS:
        n = cli_parse_cpus(arg, o->vm.io_cpus, RVM_MAX_CPUS_LIST);
        if (n <= 0)
            return fail(err, len, "bad --io-cpus list '%s' (e.g. 0,1 or 2-5)", arg);
        o->vm.n_io_cpus = (unsigned)n;
        return 0;
    case OPT_NET:
        if (o->ndisks + o->nnets == RVM_VIRTIO_MAX_DEVICES)
            return fail(err, len, "too many --disk and --net options (at most 16)", NULL);
        if (cli_parse_net((char *)arg, &o->nets[o->nnets]) < 0)
            return fail(
                err, len,
                "bad --net '%s' (tap=NAME or unix=PATH, then ,mac=, ,mtu=, ,poll=, ,queues=)", arg);
        o->nnets++;
        return 0;
    case OPT_DIRTY_RING:
        if (parse_uint(arg, 1U << 20, &v) < 0 || v < 1024 || (v & (v - 1)))
            return fail(err, len, "bad --dirty-ring '%s' (a power of two, 1024 or more)", arg);
        o->vm.dirty_ring_entries = (uint32_t)v;
        return 0;
    case OPT_SNAP_DIR:
        o->snap_dir = arg;
        return *arg ? 0 : fail(err, len, "--snapshot-on-signal needs a directory", NULL);
    case OPT_SNAP_MODE:
        if (!strcmp(arg, "full"))
            o->snap_mode = RVM_SNAPSHOT_FULL;
        else if (!strcmp(arg, "live"))
            o->snap_mode = RVM_SNAPSHOT_LIVE;
        else if (!strcmp(arg, "diff"))
            o->snap_mode = RVM_SNAPSHOT_DIFF;
        else
            return fail(err, len, "bad --snapshot-mode '%s' (full, live or diff)", arg);
        return 0;
    case OPT_LAZY:
    case OPT_EAGER:
        o->lazy = c == OPT_LAZY;
        return 0;
    case OPT_VERIFY:
        o->verify = true;
        return 0;
    case OPT_TRUST_PATHS:
        o->trust_paths = true;
        return 0;
    case OPT_MAX_MEM:
        if (cli_parse_size(arg, &o->max_mem) < 0 || o->max_mem == 0)
            return fail(err, len, "bad --max-mem size '%s' (e.g. 4G)", arg);
        return 0;
    case OPT_NUMA:
        if (parse_uint(arg, 1023, &v) < 0)
            return fail(err, len, "bad --numa-node '%s'", arg);
        o->vm.numa_node = (int)v;
        return 0;
    case OPT_HUGE:
        if (parse_hugepages(arg, &o->vm.mem.backing) < 0)
            return fail(err, len, "bad --hugepages '%s' (none, thp, 2M or 1G)", arg);
        return 0;
    }
    return fail(err, len, "unknown option", NULL);
}

/* Whether word stands in s as a whole space-separated word. */
static bool has_word(const char *s, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = s; p && (p = strstr(p, word)); p += n)
        if ((p == s || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    return false;
}

int cli_parse(int argc, char **argv, struct cli_opts *o, char *err, size_t len)
{
    int c;

    memset(o, 0, sizeof(*o));
    rvm_vm_config_init(&o->vm);
    o->serial = "stdio";
    if (err && len)
        err[0] = '\0';
    if (argc < 2)
        return fail(err, len, "no command given (try --help)", NULL);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        o->cmd = CLI_HELP;
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        o->cmd = CLI_VERSION;
        return 0;
    }
    if (!strcmp(argv[1], "caps")) {
        o->cmd = CLI_CAPS;
        return argc == 2 ? 0 : fail(err, len, "caps takes no arguments", NULL);
    }
    if (!strcmp(argv[1], "snapshot-merge")) {
        o->cmd = CLI_MERGE;
        if (argc != 4)
            return fail(err, len, "snapshot-merge takes DIR and OUT", NULL);
        o->dir = argv[2];
        o->out = argv[3];
        return 0;
    }
    if (!strcmp(argv[1], "restore"))
        o->cmd = CLI_RESTORE;
    else if (!strcmp(argv[1], "run"))
        o->cmd = CLI_RUN;
    else
        return fail(err, len, "unknown command '%s' (try --help)", argv[1]);
    o->snap_mode = RVM_SNAPSHOT_LIVE;

    /*
     * The options after the command, as an argv of their own whose argv[0]
     * is the command; optind 0 makes getopt start from scratch, with nothing
     * left of an earlier parse (a cluster of short options half read).
     */
    int nargs = argc - 1;
    char **args = argv + 1;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(nargs, args, ":vh", long_opts, NULL)) != -1) {
        if (c == 'h') {
            o->cmd = CLI_HELP;
            return 0;
        }
        if (c == '?')
            return fail(err, len, "unknown option '%s'", args[optind - 1]);
        if (c == ':')
            return fail(err, len, "option '%s' needs a value", args[optind - 1]);
        if (c == OPT_VERSION) {
            o->cmd = CLI_VERSION;
            return 0;
        }
        if (parse_run_opt(c, optarg, o, err, len) < 0)
            return -EINVAL;
    }
    if (o->cmd == CLI_RESTORE) {
        if (optind != nargs - 1)
            return fail(err, len, "restore takes one snapshot directory", NULL);
        o->dir = args[optind];
        return 0;
    }
    if (optind < nargs)
        return fail(err, len, "unexpected argument '%s'", args[optind]);
    if (!o->kernel)
        return fail(err, len, "run needs --kernel PATH", NULL);
    if (o->vm.n_cpus && o->vm.numa_node >= 0)
        return fail(err, len, "--cpus and --numa-node exclude each other", NULL);
    /* A kernel told to ignore ACPI finds its devices only on its command line. */
    if (has_word(o->cmdline, "acpi=off"))
        o->no_acpi = true;
    return 0;
}
