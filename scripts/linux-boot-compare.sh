#!/usr/bin/env bash
# Boots the Linux tier's kernel and initramfs (make linux-guest) under ringvm
# and, where qemu-system-x86_64 is installed, under QEMU's microvm machine:
# the same kernel, initramfs, command line, two disks and a NIC on a tap,
# 2 vCPUs, 256 MiB, one VMM after the other, RUNS times (default 5). Prints
# the wall time from the VMM's start to each milestone on the console, the
# median over the runs, and what KVM counted meanwhile (its trace points:
# exits to the VMM, port and MMIO accesses, instructions emulated, ...), so
# that a gap between the two has its exits beside it.
#   scripts/linux-boot-compare.sh [BUILD] [LINUX_DIR]
# Needs root (a network namespace and a tap) and perf for the exit counts.
set -eu
build=${1:-build}
ldir=${2:-build/linux}
runs=${RUNS:-5}
kernel=$ldir/vmlinux
initrd=$ldir/initramfs.cpio
[ -s "$kernel" ] && [ -s "$initrd" ] || { echo "no $kernel or $initrd: run make linux-guest" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "linux-boot-compare: needs root (netns, tap)" >&2; exit 1; }
for c in perf bc mke2fs ip; do
    command -v "$c" >/dev/null || { echo "linux-boot-compare: needs $c (linux-perf, bc, e2fsprogs, iproute2)" >&2; exit 1; }
done

# What this host's emulated guest ring 0 needs (docs/linux-guests.md); harmless elsewhere.
cmdline="console=ttyS0 panic=-1 reboot=k noxsave clearcpuid=cx16,popcnt,smap nofsgsbase vdso32=0"
cmdline+=" GLIBC_TUNABLES=glibc.cpu.hwcaps=-SSE2,-SSE3,-SSSE3,-SSE4_1,-SSE4_2,-AVX,-AVX2,-POPCNT"
cmdline+=",-MOVBE,-BMI1,-BMI2,-LZCNT,-ERMS,-FMA,-FMA4,-CMOV"
cmdline+=" rvm_steps=cpus,blk,ext4,arp rvm_cpus=2 rvm_ip=10.0.2.15 rvm_peer=10.0.2.2"

milestones=("banner|Linux version"
            "both CPUs up|smp: Brought up 1 node, 2 CPUs"
            "disks bound|virtio_blk virtio1: [vdb]"
            "/init|RINGVM-TEST init ok"
            "tests done|RINGVM-TEST done")
events=kvm:kvm_userspace_exit,kvm:kvm_pio,kvm:kvm_mmio,kvm:kvm_msr,kvm:kvm_emulate_insn
events+=,kvm:kvm_inj_virq,kvm:kvm_page_fault,kvm:kvm_vcpu_wakeup

work=$(mktemp -d)
ns=rvmbc$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev rvmbc0 mode tap vnet_hdr
ip -n "$ns" addr add 10.0.2.2/24 dev rvmbc0
ip -n "$ns" link set rvmbc0 up

# Each console line prefixed with the seconds since t0 (microseconds from bash, no fork).
stamp() {
    local t0=$1 line now
    while IFS= read -r line; do
        now=${EPOCHREALTIME/./}
        printf '%d.%06d %s\n' $(((now - t0) / 1000000)) $(((now - t0) % 1000000)) "$line"
    done
}

disks() {
    truncate -s 1M "$work/raw.img"
    yes "ringvm host pattern" | head -c 4096 | dd of="$work/raw.img" conv=notrunc status=none
    rm -f "$work/ext4.img"
    mke2fs -q -F -t ext4 "$work/ext4.img" 8M >/dev/null
}

run_ringvm() {
    local t0=${EPOCHREALTIME/./}
    ip netns exec "$ns" perf stat -x, -o "$1.perf" -e "$events" -- \
        "$build/ringvm" run --kernel "$kernel" --initrd "$initrd" --mem 256M --vcpus 2 \
        --cpuid 0x40000001,eax,clear=0x2880 --disk "$work/raw.img" --disk "$work/ext4.img" \
        --net tap=rvmbc0 --cmdline "$cmdline" 2>"$1.err" | stamp "$t0" > "$1"
}

run_qemu() {
    local t0=${EPOCHREALTIME/./}
    ip netns exec "$ns" perf stat -x, -o "$1.perf" -e "$events" -- \
        qemu-system-x86_64 -M microvm -enable-kvm -cpu host,-arch-capabilities,-kvm-pv-ipi,-kvm-pv-sched-yield,-kvm-pv-unhalt \
        -smp 2 -m 256M -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -global virtio-mmio.force-legacy=false -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
        -drive id=d0,file="$work/raw.img",format=raw,if=none,cache=none,aio=io_uring \
        -device virtio-blk-device,drive=d0 \
        -drive id=d1,file="$work/ext4.img",format=raw,if=none,cache=none,aio=io_uring \
        -device virtio-blk-device,drive=d1 \
        -netdev tap,id=n0,ifname=rvmbc0,script=no,downscript=no,vnet_hdr=on \
        -device virtio-net-device,netdev=n0 2>"$1.err" | stamp "$t0" > "$1"
}

vmms=(ringvm)
command -v qemu-system-x86_64 >/dev/null && vmms+=(qemu)
# Rounds alternate which VMM goes first: the host's speed drifts over minutes.
for r in $(seq 1 "$runs"); do
    order=("${vmms[@]}")
    [ $((r % 2)) -eq 0 ] && [ ${#vmms[@]} -gt 1 ] && order=("${vmms[1]}" "${vmms[0]}")
    for v in "${order[@]}"; do
        disks
        "run_$v" "$work/$v.$r"
        grep -q "RINGVM-TEST done" "$work/$v.$r" || echo "linux-boot-compare: $v run $r did not finish" >&2
    done
done

# The time of a milestone in one run's stamped console ("-" if it never came).
at() { local t; t=$(grep -F -m1 -- "$2" "$1" | cut -d' ' -f1); echo "${t:--}"; }
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }

printf '%-14s' "milestone"
for v in "${vmms[@]}"; do printf ' %12s' "$v s"; done
[ ${#vmms[@]} -gt 1 ] && printf ' %14s' "ringvm/qemu"
printf '   (median of %s runs; each run:)\n' "$runs"
for m in "${milestones[@]}"; do
    name=${m%%|*} pat=${m#*|}
    printf '%-14s' "$name"
    meds=() all=""
    for v in "${vmms[@]}"; do
        ts=$(for r in $(seq 1 "$runs"); do at "$work/$v.$r" "$pat"; done | tr '\n' ' ')
        med=$(echo "$ts" | median)
        meds+=("$med") all+=" $v: $ts"
        printf ' %12s' "$med"
    done
    if [ ${#vmms[@]} -gt 1 ] && [ "${meds[0]}" != - ] && [ "${meds[1]}" != - ]; then
        printf ' %14s' "$(echo "${meds[0]} / ${meds[1]}" | bc -l | xargs printf '%.3f')"
    fi
    printf '  %s\n' "$all"
done
echo
echo "KVM's counts over the whole run (median of the runs):"
printf '%-24s' "event"
for v in "${vmms[@]}"; do printf ' %14s' "$v"; done
printf '\n'
for e in ${events//,/ }; do
    printf '%-24s' "${e#kvm:}"
    for v in "${vmms[@]}"; do
        printf ' %14s' "$(for r in $(seq 1 "$runs"); do
            awk -F, -v e="$e" '$3 == e {print $1}' "$work/$v.$r.perf"; done | tr '\n' ' ' | median)"
    done
    printf '\n'
done
