#!/usr/bin/env bash
# Makes the Linux tier's initramfs in OUT (first argument, default
# build/linux): an uncompressed newc cpio (nothing to decompress in guest
# ring 0) holding Debian's 32-bit static busybox (busybox-static:i386,
# fetched with apt-get download into a package list of its own, so the
# host's apt configuration is not touched), guest/linux/init.sh as /init,
# the pattern files its block and UDP steps compare against, and a FIFO for
# its idle loop.
#   OUT/initramfs.cpio   and OUT/initramfs.key, as linux-kernel.sh does
# Exits 2 when Debian's archive cannot be reached.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-build/linux}
mkdir -p "$out"
out=$(cd "$out" && pwd)
init=$top/guest/linux/init.sh

key=$( (cat "$init" "$0") | sha256sum | cut -d' ' -f1)
if [ -s "$out/initramfs.cpio" ] && [ "$(cat "$out/initramfs.key" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt386=(-o APT::Architecture=i386 -o APT::Architectures=i386
        -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
        -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
if ! apt-get -qq "${apt386[@]}" update >/dev/null 2>&1 ||
    ! (cd "$work" && apt-get -qq "${apt386[@]}" download busybox-static:i386 >/dev/null 2>&1); then
    echo "linux-initramfs: cannot fetch busybox-static:i386 from Debian's archive" >&2
    exit 2
fi

root=$work/root
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/mnt" "$root/patterns"
dpkg-deb --fsys-tarfile "$work"/busybox-static_*_i386.deb | tar -xO ./bin/busybox > "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 755 "$init" "$root/init"
mkfifo "$root/fifo"

# The patterns: a line repeated to 4 KiB. tests/test_linux.c makes the same.
pattern() { yes "$1" | head -c 4096; }
pattern "ringvm host pattern" > "$root/patterns/host"
pattern "ringvm O_DIRECT pattern" > "$root/patterns/direct"
pattern "ringvm page cache pattern" > "$root/patterns/cached"
cat "$root/patterns/direct" "$root/patterns/cached" > "$root/patterns/both"
pattern "ringvm UDP pattern" > "$root/patterns/udp"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$out/initramfs.cpio.new"
mv "$out/initramfs.cpio.new" "$out/initramfs.cpio"
echo "$key" > "$out/initramfs.key"
