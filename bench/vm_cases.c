/* SPDX-License-Identifier: MIT */
/*
 * VM-level costs: creation to first exit (VM, memory, vCPU, first KVM_RUN
 * returning) against the same steps done with plain ioctls, and the host
 * memory a VM costs beyond the guest pages it touched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"
#include "raw.h"
#include "ringvm_vm.h"

#define FIRST_EXIT_CMDLINE "test=pio n=1"

void bench_raw_first_exit(struct bench_ctx *ctx, uint64_t mem_size, bool pin, const char *unit,
                          double scale)
{
    struct guest_image img;
    struct raw_template t;

    if (guest_image_get(&img) < 0 || raw_template_init(&t, &img, FIRST_EXIT_CMDLINE) < 0) {
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        return;
    }
    if (pin)
        bench_pin_self();
    while (bench_keep_running(ctx)) {
        double dt = raw_vm_time_to_first_exit(&t, mem_size);

        if (dt < 0) {
            bench_fail(ctx, "raw VM failed");
            break;
        }
        bench_set_iteration_time(ctx, dt);
        bench_counter_add(ctx, unit, dt * scale);
    }
    raw_template_fini(&t);
    free(img.elf);
}

static void create_raw(struct bench_ctx *ctx)
{
    bench_raw_first_exit(ctx, BENCH_MEM_SIZE, false, "us", 1e6);
}

/* The guest image and a hypervisor handle, or a failed case. */
static int open_ringvm(struct bench_ctx *ctx, struct guest_image *img, struct rvm_hv **hv)
{
    img->elf = NULL;
    if (guest_image_get(img) < 0 || rvm_hv_open(NULL, hv) < 0) {
        free(img->elf);
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        return -1;
    }
    return 0;
}

static void create_ringvm(struct bench_ctx *ctx)
{
    struct guest_image img;
    struct rvm_hv *hv;

    if (open_ringvm(ctx, &img, &hv) < 0)
        return;
    while (bench_keep_running(ctx)) {
        struct rvm_vcpu *v = NULL;
        struct rvm_exit e;
        struct bench_vm b;
        double t0 = bench_now();
        int r = bench_vm_create(hv, &img, FIRST_EXIT_CMDLINE, -1, &b);

        if (r == 0)
            r = rvm_vcpu_create(b.vm, 0, &v);
        if (r == 0)
            r = rvm_vcpu_run(v, &e);
        double dt = bench_now() - t0;
        bench_vm_destroy(&b);
        if (r < 0) {
            bench_fail(ctx, "ringvm VM failed");
            break;
        }
        bench_set_iteration_time(ctx, dt);
        bench_counter_add(ctx, "us", dt * 1e6);
    }
    rvm_hv_close(hv);
    free(img.elf);
}

static long rss_bytes(void)
{
    long size, resident;
    FILE *f = fopen("/proc/self/statm", "re");

    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/*
 * Per-VM host memory with RSS_VMS VMs running at once (as on a dense host, so
 * that one VM's freed heap and thread stack cannot hide the next one's): the
 * RSS growth, less the guest pages resident, divided by the number of VMs.
 * Kernel-side allocations (KVM's page tables, vCPU state) are not in RSS.
 */
#define RSS_VMS 8

static void rss_ringvm(struct bench_ctx *ctx)
{
    struct guest_image img;
    struct rvm_hv *hv;

    if (open_ringvm(ctx, &img, &hv) < 0)
        return;
    while (bench_keep_running(ctx)) {
        static struct bench_vm b[RSS_VMS];
        long before = rss_bytes();
        int64_t guest = 0;
        int r = 0, made = 0;

        /* All running at once, each with its live vCPU thread. */
        for (; made < RSS_VMS && r == 0; made++) {
            r = bench_vm_create(hv, &img, "test=pio n=4000000000", -1, &b[made]);
            if (r == 0)
                r = rvm_vm_start(b[made].vm);
        }
        usleep(50000); /* past the guest's set-up: its working set is in */
        long after = rss_bytes();
        for (int i = 0; i < made; i++)
            if (b[i].vm)
                guest += rvm_mem_resident_bytes(rvm_vm_mem(b[i].vm));
        for (int i = 0; i < made; i++)
            bench_vm_destroy(&b[i]);
        if (r < 0 || before < 0 || after < 0) {
            bench_fail(ctx, "ringvm VM failed");
            break;
        }
        bench_counter_add(ctx, "KiB", (double)(after - before - guest) / 1024.0 / RSS_VMS);
    }
    rvm_hv_close(hv);
    free(img.elf);
}

const struct bench_case bench_vm_cases[] = {
    {"vm/create_to_first_exit/raw", create_raw, true, 0, "us", 0, NULL},
    {"vm/create_to_first_exit/ringvm", create_ringvm, true, 0, "us", 0, NULL},
    {"vm/rss_overhead/ringvm", rss_ringvm, false, 1, "KiB", 0, NULL},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
