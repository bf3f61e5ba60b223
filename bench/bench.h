/* SPDX-License-Identifier: MIT */
/*
 * The C side of the benchmark harness. Cases are C functions; bench/shim.cc
 * registers them with Google Benchmark, so every standard flag works
 * (--benchmark_filter, --benchmark_repetitions, --benchmark_format=json).
 */
#ifndef RINGVM_BENCH_H
#define RINGVM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bench_ctx; /* wraps benchmark::State */

/* The loop condition: true while the framework wants another iteration. */
bool bench_keep_running(struct bench_ctx *ctx);
/* For manual-time cases: the measured time of this iteration, in seconds. */
void bench_set_iteration_time(struct bench_ctx *ctx, double seconds);
/* Adds value to a counter averaged over the iterations (counter = sum / iterations). */
void bench_counter_add(struct bench_ctx *ctx, const char *name, double value);
/* Sets a counter to value, reported as is (not averaged over iterations). */
void bench_counter_set(struct bench_ctx *ctx, const char *name, double value);
/* Marks the case failed with a reason; the caller must then return. */
void bench_fail(struct bench_ctx *ctx, const char *reason);

typedef void (*bench_fn)(struct bench_ctx *ctx);

struct bench_case {
    const char *name;
    bench_fn fn;
    bool manual_time;     /* iteration time comes from bench_set_iteration_time() */
    int iterations;       /* 0: let the framework choose */
    const char *counter;  /* the headline counter, for the table */
    int repetitions;      /* 0: --benchmark_repetitions decides */
    const char *baseline; /* the case --table compares with (NULL: its raw/host twin) */
};

/* Cases, defined in the bench/ C files; each list ends with a NULL name. */
extern const struct bench_case bench_exit_cases[];
extern const struct bench_case bench_vm_cases[];
extern const struct bench_case bench_blk_cases[];
extern const struct bench_case bench_dirty_cases[];
extern const struct bench_case bench_snap_cases[];
extern const struct bench_case bench_net_cases[];

#ifdef __cplusplus
}
#endif

#endif
