/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page harvest cost, in ns per dirty page: the bench guest dirties
 * 16384 pages of a 256 MiB VM at CPL3 (test=mem-touch), then one collection
 * takes them. dirty/harvest_ring: a 65536-entry ring with no reaper, so the
 * collection harvests every entry itself; dirty/harvest_bitmap: KVM's bitmap
 * (GET_DIRTY_LOG and CLEAR_DIRTY_LOG over all of RAM). Both include the
 * VMM-side merge and the walk into ranges.
 */
#include <stdlib.h>

#include "bench.h"
#include "guest_image.h"

#define WS 16384

static int count_pages(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)gpa;
    *(uint64_t *)opaque += len / 4096;
    return 0;
}

/* One VM run and its collection; the collection's seconds, or < 0. */
static double harvest_once(struct rvm_hv *hv, const struct guest_image *img, uint32_t ring, int cpu,
                           uint64_t *pages)
{
    struct console con = {.len = 0};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &con};
    struct rvm_pvh_params pp = {.cmdline = "test=mem-touch ws=16384 passes=1"};
    struct rvm_vm_config c;
    struct rvm_vm_result res;
    struct rvm_vm *vm;
    double t0, t = -1;

    rvm_vm_config_init(&c);
    c.mem.size = 256ULL << 20;
    c.dirty_ring_entries = ring;
    c.dirty_reap_us = -1;
    if (cpu >= 0) {
        c.n_cpus = 1;
        c.cpus[0] = cpu;
    }
    if (rvm_vm_create(hv, &c, &vm) < 0)
        return -1;
    *pages = 0;
    if (rvm_uart_attach(vm, &uc, NULL) == 0 && rvm_debug_exit_attach(vm, 0) == 0 &&
        rvm_vm_load_pvh(vm, img->elf, img->elf_size, &pp, NULL) == 0 &&
        rvm_vm_dirty_enable(vm) == 0 && rvm_vm_start(vm) == 0 &&
        rvm_vm_wait(vm, 60000, &res) == 0 && res.end == RVM_END_DEBUG_EXIT) {
        t0 = bench_now();
        if (rvm_vm_dirty_collect(vm, count_pages, pages, NULL) == 0)
            t = bench_now() - t0;
    }
    rvm_vm_destroy(vm);
    return *pages >= WS ? t : -1;
}

static void harvest_case(struct bench_ctx *ctx, uint32_t ring)
{
    struct guest_image img;
    struct rvm_hv *hv;
    int cpu;

    if (guest_image_get(&img) < 0 || rvm_hv_open(NULL, &hv) < 0) {
        bench_fail(ctx, "cannot load the guest or open /dev/kvm");
        return;
    }
    cpu = bench_pin_self();
    while (bench_keep_running(ctx)) {
        uint64_t pages;
        double s = harvest_once(hv, &img, ring, cpu, &pages);

        if (s <= 0) {
            bench_fail(ctx, "the guest's run or the collection failed");
            break;
        }
        bench_set_iteration_time(ctx, s);
        bench_counter_add(ctx, "ns_per_page", s * 1e9 / (double)pages);
        bench_counter_add(ctx, "pages", (double)pages);
    }
    rvm_hv_close(hv);
    free(img.elf);
}

static void harvest_ring(struct bench_ctx *ctx)
{
    harvest_case(ctx, 65536);
}

static void harvest_bitmap(struct bench_ctx *ctx)
{
    harvest_case(ctx, 0);
}

const struct bench_case bench_dirty_cases[] = {
    {"dirty/harvest_ring", harvest_ring, true, 3, "ns_per_page", 0, NULL},
    {"dirty/harvest_bitmap", harvest_bitmap, true, 3, "ns_per_page", 0, NULL},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
