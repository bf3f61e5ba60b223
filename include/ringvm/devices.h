/* SPDX-License-Identifier: MIT */
/*
 * Platform devices on the port-I/O bus. Devices attach to a VM, which owns
 * them: they are freed by rvm_vm_destroy().
 */
#ifndef RINGVM_DEVICES_H
#define RINGVM_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct rvm_vm;
struct rvm_uart;

#define RVM_COM1_BASE       0x3f8
#define RVM_COM1_IRQ        4
#define RVM_DEBUG_EXIT_PORT 0xf4
#define RVM_BOOT_TIMER_PORT 0x440
#define RVM_PVPANIC_PORT    0x505

/* pvpanic events (the guest writes them; a read returns the ones supported). */
#define RVM_PVPANIC_PANICKED     0x1
#define RVM_PVPANIC_CRASH_LOADED 0x2

/*
 * Output sink of a UART: called on the vCPU thread with a line (or a full
 * buffer) of guest output, without the UART's lock held. Lines from
 * different vCPUs may arrive concurrently.
 */
typedef void (*rvm_uart_out_fn)(void *opaque, const char *buf, size_t len);

struct rvm_uart_config {
    uint16_t base;       /* 0: COM1 */
    uint32_t irq;        /* 0: 4 (COM1's) */
    rvm_uart_out_fn out; /* NULL: write to out_fd */
    void *out_opaque;
    int out_fd; /* used when out is NULL; 0 or negative discards. Output the fd
                   refuses (EPIPE, EIO, EAGAIN) is dropped, and never raises
                   SIGPIPE in the writing thread. */
};

/*
 * A 16550A UART: divisor latch, FIFO control, line status, modem control
 * with loopback, scratch; interrupts for received data and an empty
 * transmitter through KVM_IRQ_LINE. Output is buffered per line and flushed
 * at a newline, when the buffer fills, and when the VM ends.
 */
int rvm_uart_attach(struct rvm_vm *vm, const struct rvm_uart_config *config, struct rvm_uart **out);

/* Queues bytes for the guest to read (RBR); -EAGAIN when the FIFO is full. */
int rvm_uart_input(struct rvm_uart *uart, const void *buf, size_t len);

/* Writes out whatever guest output is buffered. */
void rvm_uart_flush(struct rvm_uart *uart);

/*
 * QEMU's isa-debug-exit: a write of value v at port (0: 0xf4) ends the VM
 * with RVM_END_DEBUG_EXIT, value v (QEMU's status would be (v << 1) | 1).
 */
int rvm_debug_exit_attach(struct rvm_vm *vm, uint16_t port);

/*
 * The i8042 keyboard controller's reset line: 0xfe written to port 0x64
 * ends the VM with RVM_END_RESET (Linux's reboot=k). Ports 0x60 and 0x64
 * read 0; there is no keyboard.
 */
int rvm_i8042_attach(struct rvm_vm *vm);

/*
 * A boot timer at port (0: RVM_BOOT_TIMER_PORT): the guest's first write
 * (any value, any size) records the time since rvm_vm_create() (an info
 * log line says it). rvm_vm_boot_time() reads it: 0, or -ENOENT before the
 * mark.
 */
int rvm_boot_timer_attach(struct rvm_vm *vm, uint16_t port);
int rvm_vm_boot_time(const struct rvm_vm *vm, uint64_t *ns);

/*
 * A pvpanic device (QEMU's ISA pvpanic) at port (0: RVM_PVPANIC_PORT),
 * described in the DSDT as QEMU0001. A write with RVM_PVPANIC_PANICKED
 * ends the VM with RVM_END_PANIC, the event bits in the result's value;
 * RVM_PVPANIC_CRASH_LOADED (a crash kernel takes over) is logged and the VM
 * runs on. Reads return both bits.
 */
int rvm_pvpanic_attach(struct rvm_vm *vm, uint16_t port);

#endif
