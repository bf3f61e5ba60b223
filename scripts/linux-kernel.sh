#!/usr/bin/env bash
# Builds the Linux tier's test kernel into OUT (first argument, default
# build/linux): Debian's linux-source-6.12, `make tinyconfig`, then
# guest/linux/ringvm.config and the patches in guest/linux/patches/.
#   OUT/vmlinux   the ELF, booted through its PVH entry note
#   OUT/bzImage   the same kernel, booted by the 64-bit boot protocol
#   OUT/config    the .config it was built with
#   OUT/kernel.key  what the two were built from (source version, fragment,
#                 patches, this script); a later run with the same key does
#                 nothing
# Installs the source and build packages first if they are missing (as
# root or with sudo). About 15 minutes on two cores; prints the make output
# only when the build fails.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-build/linux}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src_pkg=linux-source-6.12
frag=$top/guest/linux/ringvm.config
patches=("$top"/guest/linux/patches/*.patch)

"$top"/scripts/deps.sh "$src_pkg" gcc make flex bison bc libelf-dev xz-utils lz4 patch

version=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$( (echo "$src_pkg $version"; cat "$frag" "${patches[@]}" "$0") | sha256sum | cut -d' ' -f1)
if [ -s "$out/vmlinux" ] && [ -s "$out/bzImage" ] && [ "$(cat "$out/kernel.key" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

tarball=$(ls /usr/src/"$src_pkg".tar.* | head -n 1)
work=$(mktemp -d "$out/kernel-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "linux-kernel: building $src_pkg $version (about 6 minutes on two cores)" >&2
start=$(date +%s)
tar -xf "$tarball" -C "$work"
src=$(echo "$work"/linux-source-*)
for p in "${patches[@]}"; do
    patch -d "$src" -p1 -s --no-backup-if-mismatch < "$p"
done
log=$work/build.log
mk() { make -C "$src" ARCH=x86_64 "$@" >>"$log" 2>&1; }
if ! { mk tinyconfig &&
       (cd "$src" && scripts/kconfig/merge_config.sh -m .config "$frag") >>"$log" 2>&1 &&
       mk olddefconfig; }; then
    tail -n 40 "$log" >&2
    exit 1
fi
# Every line of the fragment must have survived olddefconfig: a dependency
# missing from it would drop an option without a word.
missing=$(grep -E '^CONFIG_|^# CONFIG_.* is not set$' "$frag" | while read -r l; do
    case "$l" in
    "# "*) o=${l#\# }; o=${o%% *}; ! grep -q "^$o=" "$src/.config" || echo "$l" ;;
    *) grep -qxF "$l" "$src/.config" || echo "$l" ;;
    esac
done)
if [ -n "$missing" ]; then
    echo "linux-kernel: options of $frag that the configuration dropped:" >&2
    echo "$missing" >&2
    exit 1
fi
if ! mk -j"$(nproc)" vmlinux bzImage; then
    tail -n 60 "$log" >&2
    exit 1
fi
cp "$src/vmlinux" "$out/vmlinux.new"
cp "$src/arch/x86/boot/bzImage" "$out/bzImage.new"
cp "$src/.config" "$out/config"
mv "$out/vmlinux.new" "$out/vmlinux"
mv "$out/bzImage.new" "$out/bzImage"
echo "$key" > "$out/kernel.key"
echo "linux-kernel: built in $(( $(date +%s) - start )) s" >&2
