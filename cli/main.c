/* SPDX-License-Identifier: MIT */
/* ringvm: the reference embedder. Runs one PVH guest and exits with its status. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"

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
        return EXIT_RINGVM;
    case RVM_END_ERROR:
        fprintf(stderr, "ringvm: the VM ended with an error (vCPU %u, code %lld)\n", res->vcpu,
                (long long)res->value);
        return EXIT_RINGVM;
    default:
        return EXIT_SIGNAL;
    }
}

/* Waits for the VM to end; SIGINT/SIGTERM (blocked, polled here) stop it. */
static int wait_vm(struct rvm_vm *vm, const sigset_t *stop_sigs, struct rvm_vm_result *res)
{
    const struct timespec zero = {0, 0};

    for (;;) {
        int r = rvm_vm_wait(vm, 100, res);

        if (r == 0)
            return 0;
        if (r != -ETIMEDOUT)
            return r;
        if (sigtimedwait(stop_sigs, NULL, &zero) > 0) {
            rvm_vm_stop(vm);
            rvm_vm_result(vm, res);
            return 0;
        }
    }
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

    /* Guest output to a reader that went away is dropped, not fatal. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL); /* vCPU threads inherit the mask */

    if (strcmp(o->serial, "stdio") != 0) {
        serial_fd = open(o->serial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (serial_fd < 0) {
            fprintf(stderr, "ringvm: --serial %s: %s\n", o->serial, strerror(errno));
            return EXIT_RINGVM;
        }
        uc.out_fd = serial_fd;
    }
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
    if ((r = rvm_uart_attach(vm, &uc, NULL)) < 0 || (r = rvm_debug_exit_attach(vm, 0)) < 0) {
        fprintf(stderr, "ringvm: cannot attach devices: %s\n", strerror(-r));
        goto out;
    }
    /* Disks, announced to the guest on its command line. */
    snprintf(cmdline, sizeof(cmdline), "%s", o->cmdline ? o->cmdline : "");
    for (unsigned i = 0; i < o->ndisks; i++) {
        char word[96];
        size_t used = strlen(cmdline);

        if ((r = rvm_vm_add_virtio_blk(vm, &o->disks[i], word, sizeof(word))) < 0) {
            fprintf(stderr, "ringvm: --disk %s: %s\n", o->disks[i].path, strerror(-r));
            goto out;
        }
        snprintf(cmdline + used, sizeof(cmdline) - used, "%s%s", used ? " " : "", word);
    }
    pp.cmdline = cmdline;
    if ((r = rvm_vm_load_pvh_file(vm, o->kernel, &pp, NULL)) < 0) {
        fprintf(stderr, "ringvm: cannot load --kernel %s: %s\n", o->kernel, strerror(-r));
        goto out;
    }
    if ((r = rvm_vm_start(vm)) < 0) {
        fprintf(stderr, "ringvm: cannot start the VM: %s\n", strerror(-r));
        goto out;
    }
    if ((r = wait_vm(vm, &stop_sigs, &res)) < 0) {
        fprintf(stderr, "ringvm: waiting for the VM: %s\n", strerror(-r));
        goto out;
    }
    status = exit_status(&res);
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
    default:
        return EXIT_RINGVM;
    }
}
