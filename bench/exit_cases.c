/* SPDX-License-Identifier: MIT */
/*
 * Exit latency: the bench guest runs N exits of one kind at CPL3 and times
 * them with rdtsc; each iteration is one guest run, its time the guest's own
 * measurement of the loop (VM creation is not part of it). `raw` drives the
 * same image with a bare KVM_RUN loop, pinned to the same CPU, in the same
 * process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "raw.h"
#include "ringvm_vm.h"

#define EXITS_PER_RUN 2000

/* Turns the guest's RESULT into the iteration's time and the ns_per_exit counter. */
static int account(struct bench_ctx *ctx, const char *out, int64_t tsc_khz)
{
    uint64_t cycles, n;

    if (tsc_khz <= 0 || bench_result_value(out, "cycles", &cycles) < 0 ||
        bench_result_value(out, "n", &n) < 0 || n == 0) {
        bench_fail(ctx, "the guest printed no RESULT line");
        return -1;
    }
    double seconds = (double)cycles / ((double)tsc_khz * 1e3);
    bench_set_iteration_time(ctx, seconds);
    bench_counter_add(ctx, "ns_per_exit", seconds * 1e9 / (double)n);
    return 0;
}

static void run_raw(struct bench_ctx *ctx, const char *test)
{
    struct guest_image img;
    struct raw_template t;
    char cmdline[64];

    snprintf(cmdline, sizeof(cmdline), "test=%s n=%d", test, EXITS_PER_RUN);
    if (guest_image_get(&img) < 0 || raw_template_init(&t, &img, cmdline) < 0) {
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        return;
    }
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bench_pin_self();
    while (bench_keep_running(ctx)) {
        struct console con = {.len = 0};
        struct raw_vm vm;
        int r = raw_vm_create(&t, efd, &vm);

        if (r == 0)
            r = raw_vm_run(&vm, &con);
        int64_t khz = raw_vm_tsc_khz(&vm);
        raw_vm_destroy(&vm);
        if (r < 0) {
            bench_fail(ctx, "raw VM failed");
            break;
        }
        if (account(ctx, con.buf, khz) < 0)
            break;
    }
    raw_template_fini(&t);
    close(efd);
    free(img.elf);
}

static void run_ringvm(struct bench_ctx *ctx, const char *test)
{
    struct guest_image img;
    struct rvm_hv *hv;
    char cmdline[64];
    int cpu;

    snprintf(cmdline, sizeof(cmdline), "test=%s n=%d", test, EXITS_PER_RUN);
    if (guest_image_get(&img) < 0 || rvm_hv_open(NULL, &hv) < 0) {
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        return;
    }
    cpu = bench_pin_self();
    while (bench_keep_running(ctx)) {
        struct bench_vm b;
        int r = bench_vm_create(hv, &img, cmdline, cpu, &b);

        if (r == 0)
            r = bench_vm_run(&b);
        int64_t khz = b.vm ? rvm_vcpu_tsc_khz(rvm_vm_vcpu(b.vm, 0)) : -1;
        if (r < 0) {
            bench_vm_destroy(&b);
            bench_fail(ctx, "ringvm VM failed");
            break;
        }
        r = account(ctx, b.con.buf, khz);
        bench_vm_destroy(&b);
        if (r < 0)
            break;
    }
    rvm_hv_close(hv);
    free(img.elf);
}

static void pio_raw(struct bench_ctx *c)
{
    run_raw(c, "pio");
}
static void pio_ringvm(struct bench_ctx *c)
{
    run_ringvm(c, "pio");
}
static void mmio_raw(struct bench_ctx *c)
{
    run_raw(c, "mmio");
}
static void mmio_ringvm(struct bench_ctx *c)
{
    run_ringvm(c, "mmio");
}
static void ioeventfd_pio_raw(struct bench_ctx *c)
{
    run_raw(c, "ioeventfd-pio");
}
static void ioeventfd_mmio_raw(struct bench_ctx *c)
{
    run_raw(c, "ioeventfd-mmio");
}
static void ioeventfd_pio_ringvm(struct bench_ctx *c)
{
    run_ringvm(c, "ioeventfd-pio");
}
static void ioeventfd_mmio_ringvm(struct bench_ctx *c)
{
    run_ringvm(c, "ioeventfd-mmio");
}

const struct bench_case bench_exit_cases[] = {
    {"exit/pio/raw", pio_raw, true, 0, "ns_per_exit"},
    {"exit/pio/ringvm", pio_ringvm, true, 0, "ns_per_exit"},
    {"exit/mmio/raw", mmio_raw, true, 0, "ns_per_exit"},
    {"exit/mmio/ringvm", mmio_ringvm, true, 0, "ns_per_exit"},
    {"exit/ioeventfd_pio/raw", ioeventfd_pio_raw, true, 0, "ns_per_exit"},
    {"exit/ioeventfd_pio/ringvm", ioeventfd_pio_ringvm, true, 0, "ns_per_exit"},
    {"exit/ioeventfd_mmio/raw", ioeventfd_mmio_raw, true, 0, "ns_per_exit"},
    {"exit/ioeventfd_mmio/ringvm", ioeventfd_mmio_ringvm, true, 0, "ns_per_exit"},
    {NULL, NULL, false, 0, NULL},
};
