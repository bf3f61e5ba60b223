/* SPDX-License-Identifier: MIT */
/* ringvm: the reference embedder. Runs one PVH guest and exits with its status. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "args.h"

#define EXIT_PANIC  123
#define EXIT_RINGVM 125
#define EXIT_SIGNAL 130

static void log_stderr(void *opaque, enum rvm_log_level level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "ringvm: %s: %s\n", rvm_log_level_name(level), msg);
}

static int read_file(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
        fclose(f);
        return -EIO;
    }
    *buf = malloc(n ? (size_t)n : 1);
    if (!*buf) {
        fclose(f);
        return -ENOMEM;
    }
    if (fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        free(*buf);
        fclose(f);
        return -EIO;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

static int print_caps(void)
{
    struct rvm_hv_config hc = {.log = log_stderr, .log_level = RVM_LOG_WARN};
    struct rvm_hv_caps c;
    struct rvm_hv *hv;
    int r = rvm_hv_open(&hc, &hv);

    if (r < 0) {
        fprintf(stderr, "ringvm: cannot open KVM: %s\n", strerror(-r));
        return EXIT_RINGVM;
    }
    rvm_hv_caps(hv, &c);
    printf("kvm api version      %d\n", c.api_version);
    printf("vcpus                %u max, %u recommended\n", c.max_vcpus, c.recommended_vcpus);
    printf("memory slots         %u\n", c.max_memslots);
    printf("ioeventfd irqfd      %s %s\n", c.ioeventfd ? "yes" : "no", c.irqfd ? "yes" : "no");
    printf("dirty ring           %s%s, max %u bytes\n", c.dirty_ring ? "yes" : "no",
           c.dirty_ring_acq_rel ? " (acq/rel)" : "", c.dirty_ring_max_bytes);
    printf("manual dirty protect %s\n", c.manual_dirty_log_protect ? "yes" : "no");
    printf("guest_memfd          %s\n", c.guest_memfd ? "yes" : "no");
    printf("numa nodes           %d\n", c.numa_nodes);
    for (unsigned i = 0; i < c.n_hugepage_pools; i++)
        printf("hugepages %-10llu %llu total, %llu free\n",
               (unsigned long long)c.hugepages[i].page_size,
               (unsigned long long)c.hugepages[i].total, (unsigned long long)c.hugepages[i].free);
    rvm_hv_close(hv);
    return 0;
}

/* A crashed vCPU's registers, code and last exits, on stderr. */
static void print_crash(const struct rvm_vm_result *res)
{
    char text[4096];

    if (!res->crashed)
        return;
    rvm_crash_format(&res->crash, text, sizeof(text));
    fputs(text, stderr);
}

static int exit_status(const struct rvm_vm_result *res)
{
    switch (res->end) {
    case RVM_END_DEBUG_EXIT:
        return (int)(res->value & 0xff);
    case RVM_END_POWEROFF:
    case RVM_END_RESET:
        return 0;
    case RVM_END_SHUTDOWN:
        fprintf(stderr, "ringvm: the guest triple-faulted\n");
        print_crash(res);
        return EXIT_RINGVM;
    case RVM_END_PANIC:
        fprintf(stderr, "ringvm: the guest kernel panicked (pvpanic event 0x%llx)\n",
                (unsigned long long)res->value);
        return EXIT_PANIC;
    case RVM_END_ERROR:
        fprintf(stderr, "ringvm: the VM ended with an error (vCPU %u, code %lld)\n", res->vcpu,
                (long long)res->value);
        print_crash(res);
        return EXIT_RINGVM;
    default:
        return EXIT_SIGNAL;
    }
}

/* SIGUSR1 with --snapshot-on-signal: the next snapshot, reported on stderr. */
static void snapshot_now(struct rvm_vm *vm, const struct cli_opts *o, unsigned *count)
{
    struct rvm_snapshot_stats st;
    enum rvm_snapshot_mode mode = o->snap_mode;
    char dir[4096];
    int r;

    if (mkdir(o->snap_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "ringvm: --snapshot-on-signal %s: %s\n", o->snap_dir, strerror(errno));
        return;
    }
    if (mode == RVM_SNAPSHOT_DIFF && *count == 0)
        mode = RVM_SNAPSHOT_FULL; /* a diff needs a parent */
    snprintf(dir, sizeof(dir), "%s/snap-%u", o->snap_dir, *count + 1);
    r = rvm_vm_snapshot(vm, dir, mode, &st);
    if (r < 0) {
        fprintf(stderr, "ringvm: snapshot %s failed: %s\n", dir, strerror(-r));
        return;
    }
    (*count)++;
    fprintf(stderr, "ringvm: snapshot %s: %.1f MiB in %.3f s (%.2f GB/s), paused %.2f ms\n", dir,
            (double)st.bytes / 1048576.0, st.seconds, st.gbps, st.pause_ms);
}

/* A disk's error policy paused the VM: said once on stderr. */
static void tell_device_stop(struct rvm_vm *vm, bool *told)
{
    struct rvm_device_stop ds;

    if (rvm_vm_device_stop(vm, &ds) < 0) {
        *told = false;
        return;
    }
    if (!*told)
        fprintf(stderr,
                "ringvm: %s: %s: the VM is paused; fix the backend, then send SIGCONT to resume\n",
                ds.device, strerror(-ds.error));
    *told = true;
}

/*
 * Waits for the VM to end; SIGINT/SIGTERM (blocked, polled here) stop it,
 * SIGUSR1 snapshots it when o asks for that, SIGCONT resumes a VM a disk's
 * error policy paused.
 */
static int wait_vm(struct rvm_vm *vm, const sigset_t *sigs, const struct cli_opts *o,
                   struct rvm_vm_result *res)
{
    const struct timespec zero = {0, 0};
    unsigned snaps = 0;
    bool told = false;

    for (;;) {
        int r = rvm_vm_wait(vm, 100, res), sig;

        if (r == 0)
            return 0;
        if (r != -ETIMEDOUT)
            return r;
        tell_device_stop(vm, &told);
        while ((sig = sigtimedwait(sigs, NULL, &zero)) > 0) {
            if (sig == SIGCONT) {
                if (told && rvm_vm_resume(vm) == 0)
                    fprintf(stderr, "ringvm: resumed; the disk retries its failed requests\n");
                continue;
            }
            if (sig == SIGUSR1) {
                if (o->snap_dir)
                    snapshot_now(vm, o, &snaps);
                continue;
            }
            rvm_vm_stop(vm);
            rvm_vm_result(vm, res);
            return 0;
        }
    }
}

/* The signals the command handles itself: blocked in every thread, polled by wait_vm(). */
static void block_signals(sigset_t *sigs)
{
    signal(SIGPIPE, SIG_IGN); /* guest output to a reader that went away is dropped */
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGUSR1);
    sigaddset(sigs, SIGCONT); /* stopped processes still continue; this one also resumes */
    pthread_sigmask(SIG_BLOCK, sigs, NULL); /* vCPU threads inherit the mask */
}

/* --serial: stdout, or a file opened here (its fd into *fd, closed by the caller). */
static int serial_out(const char *serial, struct rvm_uart_config *uc, int *fd)
{
    *fd = -1;
    uc->out_fd = STDOUT_FILENO;
    if (strcmp(serial, "stdio") == 0)
        return 0;
    *fd = open(serial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (*fd < 0) {
        fprintf(stderr, "ringvm: --serial %s: %s\n", serial, strerror(errno));
        return -1;
    }
    uc->out_fd = *fd;
    return 0;
}

static int unix_link(const char *path);

/* The backends --disk and --net name, in their order, for the snapshot's devices. */
static int restore_backends(const struct cli_opts *o, struct rvm_restore_disk *disks,
                            struct rvm_restore_net *nets)
{
    for (unsigned i = 0; i < o->ndisks; i++)
        disks[i] = (struct rvm_restore_disk){
            .path = o->disks[i].path, .fd = -1, .limit = o->disks[i].limit};
    for (unsigned i = 0; i < o->nnets; i++) {
        nets[i] = (struct rvm_restore_net){.tap = o->nets[i].tap,
                                           .fd = -1,
                                           .tx_limit = o->nets[i].tx_limit,
                                           .rx_limit = o->nets[i].rx_limit};
        if (o->nets[i].unix_path && (nets[i].fd = unix_link(o->nets[i].unix_path)) < 0) {
            fprintf(stderr, "ringvm: --net unix=%s: %s\n", o->nets[i].unix_path,
                    strerror(-nets[i].fd));
            return nets[i].fd;
        }
    }
    return 0;
}

static int restore(const struct cli_opts *o)
{
    struct rvm_restore_disk disks[RVM_VIRTIO_MAX_DEVICES];
    struct rvm_restore_net nets[RVM_VIRTIO_MAX_DEVICES];
    struct rvm_hv_config hc = {.log = log_stderr,
                               .log_level = o->verbose ? RVM_LOG_DEBUG : RVM_LOG_WARN};
    struct rvm_restore_params p;
    struct rvm_snapshot_stats st;
    struct rvm_vm_result res;
    struct rvm_hv *hv = NULL;
    struct rvm_vm *vm = NULL;
    sigset_t sigs;
    int fd = -1, status = EXIT_RINGVM, r;

    block_signals(&sigs);
    rvm_restore_params_init(&p);
    if (serial_out(o->serial, &p.uart, &fd) < 0)
        return EXIT_RINGVM;
    p.lazy = o->lazy;
    p.verify_memory = o->verify;
    p.max_mem = o->max_mem;
    p.trust_snapshot_paths = o->trust_paths;
    if (restore_backends(o, disks, nets) < 0)
        goto out;
    p.disks = disks;
    p.ndisks = o->ndisks;
    p.nets = nets;
    p.nnets = o->nnets;
    p.backing = o->vm.mem.backing;
    p.numa_node = o->vm.numa_node;
    p.track_dirty = o->snap_dir && o->snap_mode == RVM_SNAPSHOT_DIFF; /* diffs need it */
    if ((r = rvm_hv_open(&hc, &hv)) < 0) {
        fprintf(stderr, "ringvm: cannot open KVM: %s\n", strerror(-r));
        goto out;
    }
    if ((r = rvm_vm_restore(hv, o->dir, &p, &vm, &st)) < 0) {
        fprintf(stderr, "ringvm: cannot restore %s: %s\n", o->dir, strerror(-r));
        goto out;
    }
    if (o->verbose)
        fprintf(stderr, "ringvm: restored %s (%s) in %.2f ms\n", o->dir, o->lazy ? "lazy" : "eager",
                st.seconds * 1e3);
    if ((r = rvm_vm_start(vm)) < 0 || (r = wait_vm(vm, &sigs, o, &res)) < 0) {
        fprintf(stderr, "ringvm: running the restored VM: %s\n", strerror(-r));
        goto out;
    }
    status = exit_status(&res);
out:
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    if (fd >= 0)
        close(fd);
    return status;
}

static int merge(const struct cli_opts *o)
{
    struct rvm_hv_config hc = {.log = log_stderr, .log_level = RVM_LOG_WARN};
    struct rvm_hv *hv = NULL;
    int r;

    /* Logging only: the merge needs no KVM, so a host without it merges too. */
    if (rvm_hv_open(&hc, &hv) < 0)
        hv = NULL;
    r = rvm_snapshot_merge(hv, o->dir, o->out);
    rvm_hv_close(hv);
    if (r < 0) {
        fprintf(stderr, "ringvm: snapshot-merge %s %s: %s\n", o->dir, o->out, strerror(-r));
        return EXIT_RINGVM;
    }
    return 0;
}

/*
 * --net unix=PATH: a SOCK_SEQPACKET connection carrying whole frames. Connects
 * to a peer listening at PATH, or else listens there itself and waits for
 * one (the first of two linked VMs). The fd, or -errno.
 */
static int unix_link(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd, l;

    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    memcpy(a.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return fd;
    close(fd);
    if ((l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    unlink(path);
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
        int e = -errno;
        close(l);
        return e;
    }
    fprintf(stderr, "ringvm: --net unix=%s: waiting for the peer\n", path);
    fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    int e = fd < 0 ? -errno : 0;
    close(l);
    unlink(path);
    return fd < 0 ? e : fd;
}

/* Appends a device's command-line word to cmdline (of size len), if the guest needs words. */
static void add_word(const struct cli_opts *o, char *cmdline, size_t len, const char *word)
{
    size_t used = strlen(cmdline);

    if (o->no_acpi)
        snprintf(cmdline + used, len - used, "%s%s", used ? " " : "", word);
}

/* Adds --net devices (their words appended to cmdline, of size len, without ACPI). */
static int add_nets(struct rvm_vm *vm, const struct cli_opts *o, char *cmdline, size_t len)
{
    for (unsigned i = 0; i < o->nnets; i++) {
        const struct cli_net *c = &o->nets[i];
        struct rvm_net_config nc = {.tap = c->tap,
                                    .fd = -1,
                                    .mtu = c->mtu,
                                    .poll_us = c->poll_us,
                                    .queues = c->queues,
                                    .tx_limit = c->tx_limit,
                                    .rx_limit = c->rx_limit};
        char word[96];
        int r;

        memcpy(nc.mac, c->mac, sizeof(nc.mac));
        if (c->unix_path && (nc.fd = unix_link(c->unix_path)) < 0) {
            fprintf(stderr, "ringvm: --net unix=%s: %s\n", c->unix_path, strerror(-nc.fd));
            return nc.fd;
        }
        if ((r = rvm_vm_add_virtio_net(vm, &nc, word, sizeof(word))) < 0) {
            fprintf(stderr, "ringvm: --net %s: %s\n", c->tap ? c->tap : c->unix_path, strerror(-r));
            return r;
        }
        add_word(o, cmdline, len, word);
    }
    return 0;
}

static int run(const struct cli_opts *o)
{
    struct rvm_hv_config hc = {.log = log_stderr,
                               .log_level = o->verbose ? RVM_LOG_DEBUG : RVM_LOG_WARN};
    struct rvm_uart_config uc = {.out_fd = STDOUT_FILENO};
    struct rvm_pvh_params pp = {.cmdline = o->cmdline};
    struct rvm_vm_result res;
    struct rvm_hv *hv = NULL;
    struct rvm_vm *vm = NULL;
    void *initrd = NULL;
    static char cmdline[RVM_CMDLINE_MAX];
    sigset_t stop_sigs;
    int serial_fd = -1, status = EXIT_RINGVM, r;

    block_signals(&stop_sigs);
    if (serial_out(o->serial, &uc, &serial_fd) < 0)
        return EXIT_RINGVM;
    if (o->initrd) {
        r = read_file(o->initrd, &initrd, &pp.initrd_size);
        if (r < 0) {
            fprintf(stderr, "ringvm: --initrd %s: %s\n", o->initrd, strerror(-r));
            goto out;
        }
        pp.initrd = initrd;
    }
    if ((r = rvm_hv_open(&hc, &hv)) < 0) {
        fprintf(stderr, "ringvm: cannot open KVM: %s\n", strerror(-r));
        goto out;
    }
    if ((r = rvm_vm_create(hv, &o->vm, &vm)) < 0) {
        fprintf(stderr, "ringvm: cannot create the VM: %s\n", strerror(-r));
        goto out;
    }
    /* Linux guests: reboot=k through the i8042, "init reached" on the boot timer. */
    if ((r = rvm_uart_attach(vm, &uc, NULL)) < 0 || (r = rvm_debug_exit_attach(vm, 0)) < 0 ||
        (r = rvm_i8042_attach(vm)) < 0 || (r = rvm_boot_timer_attach(vm, 0)) < 0 ||
        (r = rvm_pvpanic_attach(vm, 0)) < 0) {
        fprintf(stderr, "ringvm: cannot attach devices: %s\n", strerror(-r));
        goto out;
    }
    /* Disks, in the DSDT or (--no-acpi) announced on the command line. */
    snprintf(cmdline, sizeof(cmdline), "%s", o->cmdline ? o->cmdline : "");
    for (unsigned i = 0; i < o->ndisks; i++) {
        char word[96];

        if ((r = rvm_vm_add_virtio_blk(vm, &o->disks[i], word, sizeof(word))) < 0) {
            fprintf(stderr, "ringvm: --disk %s: %s\n", o->disks[i].path, strerror(-r));
            goto out;
        }
        add_word(o, cmdline, sizeof(cmdline), word);
    }
    if ((r = add_nets(vm, o, cmdline, sizeof(cmdline))) < 0)
        goto out;
    pp.cmdline = cmdline;
    /*
     * Firmware tables: the MP table always (a kernel without ACPI finds its
     * CPUs and IRQ routing there; one with MP-table parsing stops looking
     * for it at once), ACPI unless --no-acpi (a stock kernel's CPUs and
     * devices; the devices are then not also on the command line).
     */
    if ((r = rvm_vm_write_mptable(vm)) < 0 ||
        (!o->no_acpi && (r = rvm_vm_write_acpi(vm, &pp.rsdp_gpa)) < 0)) {
        fprintf(stderr, "ringvm: cannot write the firmware tables: %s\n", strerror(-r));
        goto out;
    }
    if ((r = rvm_vm_load_kernel_file(vm, o->kernel, &pp, NULL)) < 0) {
        fprintf(stderr, "ringvm: cannot load --kernel %s: %s\n", o->kernel, strerror(-r));
        goto out;
    }
    /* Diffs need tracking from their full snapshot on; other modes do without. */
    if (o->snap_dir && o->snap_mode == RVM_SNAPSHOT_DIFF && (r = rvm_vm_dirty_enable(vm)) < 0) {
        fprintf(stderr, "ringvm: dirty tracking for --snapshot-mode diff: %s\n", strerror(-r));
        goto out;
    }
    if ((r = rvm_vm_start(vm)) < 0) {
        fprintf(stderr, "ringvm: cannot start the VM: %s\n", strerror(-r));
        goto out;
    }
    if ((r = wait_vm(vm, &stop_sigs, o, &res)) < 0) {
        fprintf(stderr, "ringvm: waiting for the VM: %s\n", strerror(-r));
        goto out;
    }
    status = exit_status(&res);
    uint64_t boot_ns;
    if (rvm_vm_boot_time(vm, &boot_ns) == 0)
        fprintf(stderr, "ringvm: boot timer: the guest marked %.1f ms after the VM's creation\n",
                (double)boot_ns / 1e6);
out:
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    free(initrd);
    if (serial_fd >= 0)
        close(serial_fd);
    return status;
}

int main(int argc, char **argv)
{
    struct cli_opts o;
    char err[256];

    if (cli_parse(argc, argv, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringvm: %s\n", err);
        return EXIT_RINGVM;
    }
    switch (o.cmd) {
    case CLI_HELP:
        fputs(cli_usage, stdout);
        return 0;
    case CLI_VERSION:
        printf("ringvm %s\n", RINGVM_VERSION_STRING);
        return 0;
    case CLI_CAPS:
        return print_caps();
    case CLI_RUN:
        return run(&o);
    case CLI_RESTORE:
        return restore(&o);
    case CLI_MERGE:
        return merge(&o);
    default:
        return EXIT_RINGVM;
    }
}
