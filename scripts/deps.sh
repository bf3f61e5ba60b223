#!/usr/bin/env bash
# Installs the Debian packages ringvm builds and tests with, if any is missing;
# with arguments, those packages instead (scripts/linux-kernel.sh uses that).
# Idempotent: apt-get runs only when something is missing.
set -eu
pkgs=(
    gcc g++ make pkg-config linux-libc-dev
    liburing-dev libnuma-dev libhugetlbfs-dev libcmocka-dev libbenchmark-dev libxxhash-dev
    qemu-system-x86 # the cross-check that the bench guest runs unchanged under QEMU
    iproute2        # tests delete a tap under a running guest (ip link del)
    cpio lz4 xz-utils zstd # the stock-kernel tier's Linux guest (scripts/linux-stock.sh)
    e2fsprogs       # the Linux tier's ext4 image: mke2fs, e2fsck, debugfs
    clang           # the fuzz tier (libFuzzer): make fuzz, tests/test_fuzz.c
    libfuse3-dev    # tests/test_blk_backend.c serves a disk that stops answering
)
[ $# -gt 0 ] && pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "ringvm: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
