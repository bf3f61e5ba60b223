#!/usr/bin/env bash
# Makes the Linux guest the slow test tier boots, from Debian's archive, cached
# under BUILD/linux-stock (first argument, default build):
#   vmlinuz     Debian's cloud kernel as shipped (a bzImage)
#   vmlinux     its payload, decompressed: an ELF with the PVH entry note
#   initrd.img  a busybox initramfs whose /init says "init reached", marks the
#               boot-timer port, loads the kernel's virtio-mmio, block and net
#               modules, lists the devices they found and reboots
# Prints nothing and exits 0 when all three are there already; exits 2 when the
# archive cannot be reached (the tests skip, saying so).
set -eu
out=${1:-build}/linux-stock
mkdir -p "$out"
cd "$out"
[ -s vmlinuz ] && [ -s vmlinux ] && [ -s initrd.img ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kpkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
k=$(kpkg)
if [ -z "$k" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    k=$(kpkg)
fi
[ -n "$k" ] || { echo "linux-stock: no linux-image-cloud-amd64 in the package lists" >&2; exit 2; }
( cd "$work" && apt-get download -q "$k" busybox-static >/dev/null 2>&1 ) ||
    { echo "linux-stock: apt-get download $k busybox-static failed" >&2; exit 2; }

# The kernel, and the ELF inside it: payload_offset (0x248) and payload_length
# (0x24c) count from the protected-mode kernel, (setup_sects + 1) * 512 in.
dpkg-deb --fsys-tarfile "$work"/linux-image-*.deb |
    tar -xO --wildcards './boot/vmlinuz-*' > "$work/vmlinuz"
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
setup=$(u8 "$work/vmlinuz" $((0x1f1)))
[ "$setup" -eq 0 ] && setup=4
start=$(( (setup + 1) * 512 + $(u32 "$work/vmlinuz" $((0x248))) ))
len=$(u32 "$work/vmlinuz" $((0x24c)))
tail -c +$((start + 1)) "$work/vmlinuz" | head -c "$len" > "$work/payload"
case "$(od -An -tx1 -N4 "$work/payload" | tr -d ' ')" in
    02214c18) lz4 -dc "$work/payload" > "$work/vmlinux" 2>/dev/null || true ;;
    fd377a58) xz -dc "$work/payload" > "$work/vmlinux" 2>/dev/null || true ;;
    28b52ffd) zstd -dc "$work/payload" > "$work/vmlinux" 2>/dev/null || true ;;
    1f8b*) gzip -dc "$work/payload" > "$work/vmlinux" 2>/dev/null || true ;;
    *) echo "linux-stock: unknown payload compression" >&2; exit 1 ;;
esac
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
    { echo "linux-stock: the payload is not an ELF" >&2; exit 1; }

# The initramfs.
root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
dpkg-deb --fsys-tarfile "$work"/busybox-static_*.deb | tar -xO ./bin/busybox > "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
# The kernel's virtio drivers are modules; the order is their dependencies'.
mods="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net"
mkdir -p "$root/lib/modules"
dpkg-deb --fsys-tarfile "$work"/linux-image-*.deb | tar -x -C "$work" --wildcards \
    '*/virtio_ring.ko' '*/virtio.ko' '*/virtio_mmio.ko' '*/virtio_blk.ko' '*/failover.ko' \
    '*/net_failover.ko' '*/virtio_net.ko'
for m in $mods; do
    find "$work/lib" -name "$m.ko" -exec cp {} "$root/lib/modules/" \;
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
echo "ringvm: init reached"
# The boot timer: one byte to port 0x440 (docs/linux-guests.md).
/bin/busybox printf '\001' | /bin/busybox dd of=/dev/port bs=1 seek=1088 2>/dev/null
echo "ringvm: cpus $(/bin/busybox grep -c ^processor /proc/cpuinfo)"
for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net; do
    /bin/busybox insmod /lib/modules/$m.ko
done
/bin/busybox sleep 1
for d in /sys/bus/virtio/devices/*; do
    [ -e "$d/device" ] && echo "ringvm: virtio device $(/bin/busybox cat "$d/device")"
done
for b in /sys/block/vd*; do [ -e "$b" ] && echo "ringvm: block ${b##*/}"; done
for n in /sys/class/net/eth*; do [ -e "$n" ] && echo "ringvm: net ${n##*/}"; done
/bin/busybox reboot -f
INIT
chmod 755 "$root/init"
( cd "$root" && find . | cpio -o -H newc --quiet ) | gzip -9 > "$work/initrd.img"

mv "$work/vmlinuz" vmlinuz
mv "$work/vmlinux" vmlinux
mv "$work/initrd.img" initrd.img
echo "$k" > kernel-package
