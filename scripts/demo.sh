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
echo "One run of $build/ringvm-bench (about five minutes). Exit costs are measured in pairs:"
echo "the guest runs on a bare KVM_RUN loop and on ringvm back to back, 40 times;"
echo "medians of those runs (ringvm/raw: the median of the 40 per-pair ratios),"
echo "and of 15 interleaved repetitions for the VM and block cases (block: the bench"
echo "guest's driver on a virtio-blk disk against io_uring from this process on the"
echo "same O_DIRECT file); snapshots of a 1 GiB VM against the same bytes written by"
echo "this process with O_DIRECT io_uring, and restores against a bare 1 GiB VM's"
echo "start (docs/snapshots.md); the bench guest's network workloads on a tap against a"
echo "tap driven by this process, in a network namespace each run makes"
echo "(docs/networking.md)."
echo
"$build"/ringvm-bench --table --benchmark_repetitions=15 --benchmark_filter='/paired/|^vm/|^blk/|^snapshot/|^restore/|^net/'
