/* SPDX-License-Identifier: MIT */
/*
 * The fuzz tier, briefly: each libFuzzer target in BUILD/fuzz runs over a
 * copy of its seed corpus (fuzz/corpus/NAME) for FUZZ_SMOKE_SECONDS (15 by
 * default) and must end without a crash, a leak, a sanitizer report or an
 * invariant failure. `make fuzz` runs them for longer (docs/fuzzing.md).
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/guestproc.h"
#include "common/testutil.h"

static void run_target(const char *build, const char *name)
{
    char cmd[4 * PATH_MAX], dir[] = "/tmp/ringvm-fuzz-XXXXXX";
    const char *secs = getenv("FUZZ_SMOKE_SECONDS");
    FILE *p;
    char line[512], last[512] = "";

    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "cp ../fuzz/corpus/%s/* '%s'/ 2>/dev/null || cp fuzz/corpus/%s/* '%s'/; "
             "'%s/fuzz/%s' -max_total_time=%s -print_final_stats=1 -artifact_prefix='%s/' '%s' "
             "2>&1; echo \"exit=$?\"",
             name + 5, dir, name + 5, dir, build, name, secs ? secs : "15", dir, dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    uint64_t runs = 0;
    while (fgets(line, sizeof(line), p)) {
        unsigned long long n;
        if (sscanf(line, "stat::number_of_executed_units: %llu", &n) == 1)
            runs = n;
        if (strstr(line, "ERROR") || strstr(line, "==ERROR") || strstr(line, "deadly signal"))
            print_message("%s", line);
        snprintf(last, sizeof(last), "%s", line);
    }
    pclose(p);
    print_message("    %s: %llu executions, %s", name, (unsigned long long)runs, last);
    assert_non_null(strstr(last, "exit=0"));
    assert_true(runs > 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_fuzz_targets(void **state)
{
    char build[PATH_MAX - 64], fdir[PATH_MAX];
    struct dirent *e;
    int n = 0;
    (void)state;

    assert_int_equal(gp_build_dir(build, sizeof(build)), 0);
    snprintf(fdir, sizeof(fdir), "%s/fuzz", build);
    DIR *d = opendir(fdir);
    assert_non_null(d); /* built with the tests (clang's libFuzzer: scripts/deps.sh) */
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "fuzz_", 5)) {
            run_target(build, e->d_name);
            n++;
        }
    closedir(d);
    assert_true(n >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
