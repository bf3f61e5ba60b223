#!/usr/bin/env bash
# The main job on the built-in guest: exit latency against a raw KVM loop, VM
# creation and per-VM memory, printed as a table (medians of repetitions).
set -eu
build=${1:-build}
if [ ! -w /dev/kvm ]; then
    echo "ringvm demo: /dev/kvm is missing or not writable; see docs/host-setup.md" >&2
    exit 1
fi
echo "ringvm $(sed -n 's/^#define RINGVM_VERSION_STRING "\(.*\)"/\1/p' include/ringvm/ringvm.h) on $(uname -r), $(nproc) CPUs"
echo "One run of $build/ringvm-bench (a little over a minute): medians of 15 short repetitions,"
echo "randomly interleaved; ratios compare cases measured in this same run."
echo
"$build"/ringvm-bench --table --benchmark_repetitions=15 --benchmark_filter='^(exit|vm)/'
