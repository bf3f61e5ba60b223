#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests, shows their output, and ends with one
# line "N passed, N failed, N skipped" over all of them. Exit status 1 if any
# test failed or a binary crashed. RINGVM_TESTS="test_a test_b" runs only those.
set -u
build=${BUILD:-build}
passed=0 failed=0 skipped=0 broken=()

only=${RINGVM_TESTS:-}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    if [ -n "$only" ]; then
        case " $only " in *" $(basename "$t") "*) ;; *) continue ;; esac
    fi
    log=$(mktemp)
    timeout 900 "$t" >"$log" 2>&1
    status=$?
    cat "$log"
    # cmocka's own summary lines (a failed or skipped test's name is listed twice).
    p=$(grep -c '^\[       OK \]' "$log")
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:$/\1/p' "$log" | head -1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed below:$/\1/p' "$log" | head -1)
    f=${f:-0} s=${s:-0}
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        # The binary died (signal, timeout) without cmocka reporting a failure.
        echo "$(basename "$t"): exited with status $status"
        failed=$((failed + 1))
        broken+=("$(basename "$t")")
    fi
    rm -f "$log"
done

echo
[ ${#broken[@]} -gt 0 ] && echo "crashed: ${broken[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
