#!/bin/busybox ash
# /init of the Linux tier's initramfs (scripts/linux-initramfs.sh puts it
# there with a 32-bit static busybox and the pattern files). It runs the
# steps the kernel command line names, prints one marker line per result on
# its console,
#     RINGVM-TEST <step> ok [detail]
#     RINGVM-TEST <step> FAIL <why>
# then "RINGVM-TEST done" and reboots (reboot=k: through the i8042 line).
#
# Words of the kernel command line that the kernel does not know reach this
# script as environment variables:
#   rvm_steps=a,b,c   what to run, in order (default: cpus,blk,ext4,arp,udp):
#                     ttys0 cpus blk ext4 arp udp idle nmi panic
#   rvm_cpus=N        the CPU count the cpus step expects
#   rvm_ip=A.B.C.D    eth0's address (a /24); rvm_peer=A.B.C.D the host's
#   rvm_idle=N        the idle step waits N seconds in a loop (a snapshot
#                     is taken meanwhile)
# Most checks use shell builtins only: every program started costs seconds
# on a host whose guest user space is emulated.
export PATH=/bin
bb=/bin/busybox

ok() { echo "RINGVM-TEST $1 ok${2:+ $2}"; }
fail() { echo "RINGVM-TEST $1 FAIL $2"; }

# The first line of a file into $line (builtins only).
first_line() { line=; read -r line < "$1"; }

$bb mount -t devtmpfs dev /dev
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
echo "RINGVM-TEST init ok"
# The boot timer (docs/linux-guests.md): one byte to port 0x440.
printf '\001' | $bb dd of=/dev/port bs=1 seek=1088 2>/dev/null

# What the kernel found, for the log (globs: no program started).
for d in /sys/block/vd*; do [ -e "$d" ] && echo "RINGVM-TEST found block ${d##*/}"; done
for d in /sys/class/net/eth*; do [ -e "$d" ] && echo "RINGVM-TEST found net ${d##*/}"; done

# COM1 as a tty: written through the 8250 driver, which needs IRQ 4.
step_ttys0() {
    if ! exec 3>/dev/ttyS0; then
        fail ttyS0 "cannot open /dev/ttyS0"
        return
    fi
    echo "RINGVM-TEST ttyS0 written through /dev/ttyS0" >&3
    irq=
    while read -r n rest; do
        case "$rest" in *ttyS0*) irq=${n%:} ;; esac
    done < /proc/interrupts
    exec 3>&-
    if [ -n "$irq" ]; then ok ttyS0 "irq $irq"; else fail ttyS0 "no ttyS0 in /proc/interrupts"; fi
}

step_cpus() {
    first_line /sys/devices/system/cpu/online
    want=0
    [ "${rvm_cpus:-1}" -gt 1 ] && want="0-$((rvm_cpus - 1))"
    if [ "$line" = "$want" ]; then ok cpus "online $line"; else fail cpus "online '$line', want '$want'"; fi
}

# vda: block 0 holds the host's pattern; the guest writes block 1 with
# O_DIRECT and block 2 through the page cache (then sync), and reads both
# back with O_DIRECT. The host checks blocks 1 and 2 after the VM ends.
step_blk() {
    if ! $bb dd if=/dev/vda of=/tmp/host bs=4096 count=1 iflag=direct 2>/dev/null ||
        ! $bb cmp -s /tmp/host /patterns/host; then
        fail blk "block 0 is not the host's pattern"
        return
    fi
    $bb dd if=/patterns/direct of=/dev/vda bs=4096 seek=1 count=1 oflag=direct conv=notrunc 2>/dev/null &&
        $bb dd if=/patterns/cached of=/dev/vda bs=4096 seek=2 count=1 conv=notrunc 2>/dev/null &&
        $bb sync &&
        $bb dd if=/dev/vda of=/tmp/back bs=4096 skip=1 count=2 iflag=direct 2>/dev/null &&
        $bb cmp -s /tmp/back /patterns/both || { fail blk "blocks 1-2 read back differ"; return; }
    ok blk
}

# vdb: an ext4 file system the host made; a file written, the fs unmounted.
step_ext4() {
    $bb mkdir -p /mnt
    if ! $bb mount -t ext4 /dev/vdb /mnt; then
        fail ext4 "mount failed"
        return
    fi
    echo "written by the ringvm Linux tier" > /mnt/ringvm.txt
    first_line /mnt/ringvm.txt
    if ! $bb umount /mnt; then
        fail ext4 "umount failed"
        return
    fi
    if [ "$line" = "written by the ringvm Linux tier" ]; then ok ext4; else fail ext4 "read back '$line'"; fi
}

# eth0 up (once), then ARP to the host's end of the tap.
net_up() {
    [ -n "$net_is_up" ] && return 0
    $bb ifconfig eth0 "${rvm_ip:-10.0.2.15}" netmask 255.255.255.0 up && net_is_up=1
}

step_arp() {
    if ! net_up; then
        fail arp "ifconfig eth0 failed"
        return
    fi
    out=$($bb arping -c 3 -w 20 -I eth0 "${rvm_peer:-10.0.2.2}" 2>&1)
    case "$out" in
    *"Received 3 response"*) ok arp "3 replies" ;;
    *) fail arp "$(echo $out)" ;;
    esac
}

# A TFTP exchange (UDP both ways) with the test's responder: a file down,
# checked against the pattern, and sent back up for the host to check.
step_udp() {
    if ! net_up; then
        fail udp-down "ifconfig eth0 failed"
        return
    fi
    if $bb tftp -g -r down -l /tmp/down "${rvm_peer:-10.0.2.2}" &&
        $bb cmp -s /tmp/down /patterns/udp; then
        ok udp-down
    else
        fail udp-down "tftp get failed or the file differs"
        return
    fi
    if $bb tftp -p -l /tmp/down -r up "${rvm_peer:-10.0.2.2}"; then ok udp-up; else fail udp-up "tftp put failed"; fi
}

# User space idle in a loop of one-second waits on a FIFO no one writes.
step_idle() {
    exec 4<>/fifo
    echo "RINGVM-TEST idle start ${rvm_idle:-10}"
    i=0
    while [ "$i" -lt "${rvm_idle:-10}" ]; do
        read -r -t 1 x <&4
        i=$((i + 1))
    done
    exec 4<&-
    ok idle "$i seconds"
}

# An NMI to every CPU (sysrq l: a backtrace of each), as the kernel's RCU
# stall detector sends when a CPU falls behind, which a loaded host makes
# happen: the NMI entry must survive.
# The backtraces come out on the console after the trigger returns, and a
# verdict written meanwhile would be cut in two by them on ttyS0 (the 8250's
# 16-byte FIFO is refilled between them): so wait until the last CPU's is in
# the kernel's log, then a second more for the console to catch up.
step_nmi() {
    last=$((${rvm_cpus:-1} - 1))
    echo l > /proc/sysrq-trigger
    i=0
    until $bb dmesg | $bb grep -q "NMI backtrace for cpu $last"; do
        i=$((i + 1))
        if [ "$i" -gt 60 ]; then
            fail nmi "no backtrace from cpu $last in 60 seconds"
            return
        fi
        $bb sleep 1
    done
    $bb sleep 1
    ok nmi
}

# Ends the kernel with a panic (pvpanic reports it to the VMM).
step_panic() {
    echo c > /proc/sysrq-trigger
}

IFS=, 
for s in ${rvm_steps:-cpus,blk,ext4,arp,udp}; do
    IFS=' '
    case "$s" in
    ttys0 | cpus | blk | ext4 | arp | udp | idle | nmi | panic) "step_$s" ;;
    *) fail "$s" "no such step" ;;
    esac
done
IFS=' '
echo "RINGVM-TEST done"
$bb reboot -f
