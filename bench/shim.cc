// SPDX-License-Identifier: MIT
// The thin C++ layer: registers the C cases with Google Benchmark, and with
// --table prints a compact table (median of repetitions, ringvm/raw ratios).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench.h"

struct bench_ctx {
    benchmark::State *state;
};

extern "C" bool bench_keep_running(struct bench_ctx *ctx)
{
    return ctx->state->KeepRunning();
}

extern "C" void bench_set_iteration_time(struct bench_ctx *ctx, double seconds)
{
    ctx->state->SetIterationTime(seconds);
}

extern "C" void bench_counter_add(struct bench_ctx *ctx, const char *name, double value)
{
    auto &c = ctx->state->counters[name];
    c.value += value;
    c.flags = benchmark::Counter::kAvgIterations;
}

extern "C" void bench_counter_set(struct bench_ctx *ctx, const char *name, double value)
{
    ctx->state->counters[name] = benchmark::Counter(value);
}

extern "C" void bench_fail(struct bench_ctx *ctx, const char *reason)
{
    ctx->state->SkipWithError(reason);
}

namespace
{

std::map<std::string, std::string> headline; // case name -> counter
std::map<std::string, std::string> baseline; // case name -> the case it is compared with
std::vector<std::string> registered;         // case names, in registration order

void register_cases(const bench_case *cases)
{
    for (const bench_case *c = cases; c->name; c++) {
        bench_fn fn = c->fn;
        auto *b = benchmark::RegisterBenchmark(c->name, [fn](benchmark::State &st) {
            bench_ctx ctx{&st};
            fn(&ctx);
        });
        if (c->manual_time)
            b->UseManualTime();
        if (c->iterations)
            b->Iterations(c->iterations);
        if (c->repetitions)
            b->Repetitions(c->repetitions);
        b->Unit(benchmark::kMillisecond);
        headline[c->name] = c->counter;
        if (c->baseline)
            baseline[c->name] = c->baseline;
        registered.push_back(c->name);
    }
}

// Collects every run and prints, at the end, one line per measured quantity:
// raw and ringvm side by side with their ratio. A ".../paired" case gives all
// three itself (medians over its pairs); ".../raw" and ".../ringvm" twins give
// the medians of their repetitions, labelled "separate" since on a noisy host
// their ratio is the weaker measure (docs/benchmarks.md).
class TableReporter : public benchmark::BenchmarkReporter
{
  public:
    bool ReportContext(const Context &) override
    {
        return true;
    }
    void ReportRuns(const std::vector<Run> &runs) override
    {
        for (const Run &r : runs) {
            if (r.run_type != Run::RT_Iteration)
                continue;
            std::string name = r.run_name.function_name;
            if (r.error_occurred) {
                errors[name] = r.error_message;
                continue;
            }
            for (const auto &c : r.counters)
                values[name][c.first].push_back(c.second.value);
        }
    }
    void Finalize() override
    {
        std::printf("%-36s %-8s %12s %12s %10s\n", "case", "unit", "baseline", "ringvm", "ratio");
        for (const auto &name : registered) {
            size_t slash = name.rfind('/');
            std::string base = name.substr(0, slash), kind = name.substr(slash + 1);
            const std::string &unit = headline[name];

            if (baseline.count(name) && has(name, unit)) {
                /* A baseline named by the case (a different shape of run, same unit). */
                const std::string &b = baseline[name];
                double rvm = med(name, unit);
                if (has(b, unit))
                    row(base + " (vs " + b.substr(b.find('/') + 1) + ")", unit, med(b, unit), rvm,
                        rvm / med(b, unit));
                else
                    row(name, unit, -1, rvm, -1);
            } else if (kind == "paired" && has(name, "ringvm_over_raw")) {
                row(base + " (paired)", "ns/exit", med(name, "raw_ns"), med(name, "ringvm_ns"),
                    med(name, "ringvm_over_raw"));
            } else if (kind.rfind("ringvm", 0) == 0 && has(name, unit)) {
                /* ".../ringvm" or a variant of it (".../ringvm_poll": label "..._poll"). */
                std::string label = base + kind.substr(6);
                double rvm = med(name, unit);
                /* The baseline twin: a bare KVM loop (raw) or the host's own I/O (host). */
                std::string twin = has(base + "/raw", unit) ? base + "/raw" : base + "/host";
                if (has(twin, unit)) {
                    double raw = med(twin, unit);
                    row(label + (twin == base + "/raw" ? " (separate)" : " (vs host)"), unit, raw,
                        rvm, rvm / raw);
                } else {
                    row(label, unit, -1, rvm, -1);
                }
            } else if (is_baseline(name)) {
                /* shown in the rows that compare with it */
            } else if ((kind == "raw" || kind == "host") && has(name, unit) &&
                       !has(base + "/ringvm", unit)) {
                row(base, unit, med(name, unit), -1, -1);
            } else if (kind != "raw" && kind != "host" && kind != "paired" && has(name, unit)) {
                row(name, unit, -1, med(name, unit), -1); /* a measure of its own */
            }
        }
        for (const auto &e : errors)
            std::printf("%-36s failed: %s\n", e.first.c_str(), e.second.c_str());
    }

  private:
    bool is_baseline(const std::string &name)
    {
        for (const auto &b : baseline)
            if (b.second == name)
                return true;
        return false;
    }
    bool has(const std::string &name, const std::string &counter)
    {
        auto it = values.find(name);
        return it != values.end() && it->second.count(counter) && !it->second[counter].empty();
    }
    double med(const std::string &name, const std::string &counter)
    {
        std::vector<double> v = values[name][counter];
        std::sort(v.begin(), v.end());
        size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    static void row(const std::string &label, const std::string &unit, double raw, double rvm,
                    double ratio)
    {
        char a[32] = "-", b[32] = "-", c[32] = "";
        if (raw >= 0)
            std::snprintf(a, sizeof(a), "%.1f", raw);
        if (rvm >= 0)
            std::snprintf(b, sizeof(b), "%.1f", rvm);
        if (ratio >= 0)
            std::snprintf(c, sizeof(c), "%.3f", ratio);
        std::printf("%-36s %-8s %12s %12s %10s\n", label.c_str(),
                    unit == "ns_per_exit" ? "ns/exit" : unit.c_str(), a, b, c);
    }
    std::map<std::string, std::map<std::string, std::vector<double>>> values;
    std::map<std::string, std::string> errors;
};

bool has_flag(const std::vector<char *> &args, const char *flag)
{
    for (const char *a : args)
        if (std::strncmp(a, flag, std::strlen(flag)) == 0)
            return true;
    return false;
}

} // namespace

// Defaults that the ratios need, each overridden by the flag given explicitly:
// many short repetitions, randomly interleaved across cases, so that a raw case
// and its ringvm twin sample the same stretch of machine noise (a few VMs apart)
// instead of running a minute apart.
static char default_reps[] = "--benchmark_repetitions=30";
static char default_min_time[] = "--benchmark_min_time=0.1";
static char default_interleave[] = "--benchmark_enable_random_interleaving=true";

int main(int argc, char **argv)
{
    bool table = false;
    std::vector<char *> args;
    for (int i = 0; i < argc; i++) {
        if (std::strcmp(argv[i], "--table") == 0)
            table = true;
        else
            args.push_back(argv[i]);
    }
    if (!has_flag(args, "--benchmark_repetitions"))
        args.push_back(default_reps);
    if (!has_flag(args, "--benchmark_min_time"))
        args.push_back(default_min_time);
    if (!has_flag(args, "--benchmark_enable_random_interleaving"))
        args.push_back(default_interleave);
    int n = static_cast<int>(args.size());
    register_cases(bench_exit_cases);
    register_cases(bench_vm_cases);
    register_cases(bench_blk_cases);
    register_cases(bench_dirty_cases);
    register_cases(bench_snap_cases);
    register_cases(bench_net_cases);
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data()))
        return 1;
    if (table) {
        TableReporter rep;
        benchmark::RunSpecifiedBenchmarks(&rep);
    } else {
        benchmark::RunSpecifiedBenchmarks();
    }
    benchmark::Shutdown();
    return 0;
}
