/* SPDX-License-Identifier: MIT */
/*
 * Exit latency: the bench guest runs N exits of one kind at CPL3 and times
 * them with rdtsc; each iteration is one guest run, its time the guest's own
 * measurement of the loop (VM creation is not part of it). `raw` drives the
 * same image with a bare KVM_RUN loop, pinned to the same CPU, in the same
 * process. The paired cases measure the ratio directly (see run_paired).
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "raw.h"
#include "ringvm_vm.h"

#define EXITS_PER_RUN 2000

/* What one guest run measured: its loop's time and the cost of one exit. */
struct sample {
    double seconds;
    double ns_per_exit;
};

static int parse_sample(const char *out, int64_t tsc_khz, struct sample *s)
{
    uint64_t cycles, n;

    if (tsc_khz <= 0 || bg_result_value(out, "cycles", &cycles) < 0 ||
        bg_result_value(out, "n", &n) < 0 || n == 0)
        return -1;
    s->seconds = (double)cycles / ((double)tsc_khz * 1e3);
    s->ns_per_exit = s->seconds * 1e9 / (double)n;
    return 0;
}

/* Everything a case needs to run the guest either way, set up once per case. */
struct exit_env {
    struct guest_image img;
    struct raw_template raw;
    struct rvm_hv *hv;
    int efd; /* the raw VMs' ioeventfd */
    int cpu; /* where both the raw loop and ringvm's vCPU thread run */
    char cmdline[64];
};

static int env_init(struct exit_env *env, const char *test)
{
    memset(env, 0, sizeof(*env));
    env->efd = -1;
    snprintf(env->cmdline, sizeof(env->cmdline), "test=%s n=%d", test, EXITS_PER_RUN);
    if (guest_image_get(&env->img) < 0 ||
        raw_template_init(&env->raw, &env->img, env->cmdline) < 0 ||
        rvm_hv_open(NULL, &env->hv) < 0)
        return -1;
    env->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    env->cpu = bench_pin_self();
    return env->efd < 0 || env->cpu < 0 ? -1 : 0;
}

static void env_fini(struct exit_env *env)
{
    rvm_hv_close(env->hv);
    raw_template_fini(&env->raw);
    if (env->efd >= 0)
        close(env->efd);
    free(env->img.elf);
}

/* One guest run on a bare KVM_RUN loop, on this (pinned) thread. */
static int raw_once(struct exit_env *env, struct sample *s)
{
    struct console con = {.len = 0};
    struct raw_vm vm;
    int r = raw_vm_create(&env->raw, env->efd, &vm);

    if (r == 0)
        r = raw_vm_run(&vm, &con);
    int64_t khz = raw_vm_tsc_khz(&vm);
    raw_vm_destroy(&vm);
    return r < 0 ? r : parse_sample(con.buf, khz, s);
}

/* One guest run on ringvm, managed execution: its own vCPU thread, pinned. */
static int ringvm_once(struct exit_env *env, struct sample *s)
{
    struct bench_vm b;
    int r = bench_vm_create(env->hv, &env->img, env->cmdline, env->cpu, &b);

    if (r == 0)
        r = bench_vm_add_exit_targets(&b);
    if (r == 0)
        r = bench_vm_run(&b);
    if (r == 0)
        r = parse_sample(b.con.buf, rvm_vcpu_tsc_khz(rvm_vm_vcpu(b.vm, 0)), s);
    bench_vm_destroy(&b);
    return r;
}

static void run_one_kind(struct bench_ctx *ctx, const char *test,
                         int (*once)(struct exit_env *, struct sample *))
{
    struct exit_env env;
    struct sample s;

    if (env_init(&env, test) < 0) {
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        env_fini(&env);
        return;
    }
    while (bench_keep_running(ctx)) {
        if (once(&env, &s) < 0) {
            bench_fail(ctx, "the guest run failed or printed no RESULT line");
            break;
        }
        bench_set_iteration_time(ctx, s.seconds);
        bench_counter_add(ctx, "ns_per_exit", s.ns_per_exit);
    }
    env_fini(&env);
}

static void run_raw(struct bench_ctx *ctx, const char *test)
{
    run_one_kind(ctx, test, raw_once);
}

static void run_ringvm(struct bench_ctx *ctx, const char *test)
{
    run_one_kind(ctx, test, ringvm_once);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * The ratio itself, measured in pairs: each iteration runs the guest once on
 * the raw loop and once on ringvm, back to back (order alternating), and
 * keeps ringvm/raw. This host's exit cost moves between regimes some 20%
 * apart that last about a second; two runs ~0.1 s apart almost always share
 * one, so the median of the pair ratios is far steadier than a ratio of two
 * cases' medians.
 */
#define PAIRS 40

static void run_paired(struct bench_ctx *ctx, const char *test)
{
    double ratio[PAIRS], raw_ns[PAIRS], rvm_ns[PAIRS];
    struct exit_env env;
    int n = 0;

    if (env_init(&env, test) < 0) {
        bench_fail(ctx, "cannot load the bench guest or open /dev/kvm");
        env_fini(&env);
        return;
    }
    while (bench_keep_running(ctx)) {
        struct sample a, b;
        int r = (n % 2) ? ringvm_once(&env, &b) || raw_once(&env, &a)
                        : raw_once(&env, &a) || ringvm_once(&env, &b);

        if (r != 0 || n == PAIRS) {
            bench_fail(ctx, r ? "a guest run failed" : "more iterations than pairs kept");
            break;
        }
        bench_set_iteration_time(ctx, a.seconds + b.seconds);
        raw_ns[n] = a.ns_per_exit;
        rvm_ns[n] = b.ns_per_exit;
        ratio[n++] = b.ns_per_exit / a.ns_per_exit;
    }
    if (n > 0) {
        bench_counter_set(ctx, "ringvm_over_raw", median(ratio, n));
        bench_counter_set(ctx, "raw_ns", median(raw_ns, n));
        bench_counter_set(ctx, "ringvm_ns", median(rvm_ns, n));
    }
    env_fini(&env);
}

/* One C function per registered case: which runner, which guest workload. */
#define EXIT_CASE(fn, runner, test)                                                                \
    static void fn(struct bench_ctx *c)                                                            \
    {                                                                                              \
        runner(c, test);                                                                           \
    }

EXIT_CASE(pio_raw, run_raw, "pio")
EXIT_CASE(pio_ringvm, run_ringvm, "pio")
EXIT_CASE(pio_paired, run_paired, "pio")
EXIT_CASE(mmio_raw, run_raw, "mmio")
EXIT_CASE(mmio_ringvm, run_ringvm, "mmio")
EXIT_CASE(mmio_paired, run_paired, "mmio")
EXIT_CASE(ioeventfd_pio_raw, run_raw, "ioeventfd-pio")
EXIT_CASE(ioeventfd_pio_ringvm, run_ringvm, "ioeventfd-pio")
EXIT_CASE(ioeventfd_pio_paired, run_paired, "ioeventfd-pio")
EXIT_CASE(ioeventfd_mmio_raw, run_raw, "ioeventfd-mmio")
EXIT_CASE(ioeventfd_mmio_ringvm, run_ringvm, "ioeventfd-mmio")
EXIT_CASE(ioeventfd_mmio_paired, run_paired, "ioeventfd-mmio")

const struct bench_case bench_exit_cases[] = {
    {"exit/pio/raw", pio_raw, true, 0, "ns_per_exit", 0, NULL},
    {"exit/pio/ringvm", pio_ringvm, true, 0, "ns_per_exit", 0, NULL},
    {"exit/pio/paired", pio_paired, true, PAIRS, "ringvm_over_raw", 1, NULL},
    {"exit/mmio/raw", mmio_raw, true, 0, "ns_per_exit", 0, NULL},
    {"exit/mmio/ringvm", mmio_ringvm, true, 0, "ns_per_exit", 0, NULL},
    {"exit/mmio/paired", mmio_paired, true, PAIRS, "ringvm_over_raw", 1, NULL},
    {"exit/ioeventfd_pio/raw", ioeventfd_pio_raw, true, 0, "ns_per_exit", 0, NULL},
    {"exit/ioeventfd_pio/ringvm", ioeventfd_pio_ringvm, true, 0, "ns_per_exit", 0, NULL},
    {"exit/ioeventfd_pio/paired", ioeventfd_pio_paired, true, PAIRS, "ringvm_over_raw", 1, NULL},
    {"exit/ioeventfd_mmio/raw", ioeventfd_mmio_raw, true, 0, "ns_per_exit", 0, NULL},
    {"exit/ioeventfd_mmio/ringvm", ioeventfd_mmio_ringvm, true, 0, "ns_per_exit", 0, NULL},
    {"exit/ioeventfd_mmio/paired", ioeventfd_mmio_paired, true, PAIRS, "ringvm_over_raw", 1, NULL},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
