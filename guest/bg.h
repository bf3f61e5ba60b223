/* SPDX-License-Identifier: MIT */
/*
 * Bench guest internals shared by boot.S and the C code. Not part of the
 * host/guest contract (that is abi.h).
 */
#ifndef RINGVM_GUEST_BG_H
#define RINGVM_GUEST_BG_H

#include "abi.h"

/* GDT selectors (order matches what SYSRET would want, though we never use it). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x18
#define SEL_UCODE 0x20
#define SEL_TSS   0x28

/* Interrupt vectors. */
#define VEC_TIMER       0x20 /* local APIC timer, used by test=hlt only */
#define VEC_BLK         0x30 /* virtio-blk completion interrupt (test=blk-* irq=1) */
#define VEC_SPURIOUS    0xff /* local APIC spurious vector */
#define NUM_EXC_VECTORS 32
#define ISR_ENTRY_SIZE  16 /* exception entry points are spaced this far apart */

/* xAPIC MMIO register block and register offsets. */
#define APIC_BASE       0xfee00000
#define APIC_EOI        0xb0
#define APIC_SVR        0xf0
#define APIC_LVT_TIMER  0x320
#define APIC_TIMER_INIT 0x380
#define APIC_TIMER_DIV  0x3e0
#define APIC_SVR_ENABLE 0x100
#define APIC_LVT_MASKED 0x10000
#define APIC_DIV_BY_1   0xb
/* One-shot initial count for test=hlt (APIC bus ticks; 1 GHz under KVM = 256 ns). */
#define HLT_TIMER_COUNT 256

/* virtio-mmio registers the CPL0 interrupt handler touches (full list in blk.c). */
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK    0x064

/*
 * RFLAGS for CPL3: IOPL=3 (in/out allowed), IF=0, reserved bit 1. Some hosts
 * (software-nested KVM) force IOPL to 0 at CPL3, so the TSS also carries an
 * I/O permission bitmap opening the ports we use.
 */
#define USER_RFLAGS 0x3002
#define RFLAGS_IF   0x200

#ifndef __ASSEMBLER__
#include <stdint.h>

/* Defined in boot.S. */
extern char isr_entries[]; /* NUM_EXC_VECTORS entry points, ISR_ENTRY_SIZE bytes apart */
extern char ud_isr[], timer_isr[], spurious_isr[], blk_isr[];
/* CPL3 only: run fn(n) at CPL0 (IF=0) and return its result. */
uint64_t bg_cpl0_call(uint64_t (*fn)(uint64_t n), uint64_t n);
/* CPL0 only, through bg_cpl0_call: set (on != 0) or clear RFLAGS.IF for the CPL3 caller. */
uint64_t bg_set_user_if(uint64_t on);
/* CPL0 only: n APIC-timer halt/wake round trips; returns their TSC cycles. */
uint64_t bg_hlt_loop(uint64_t n);

/* Called by the exception entry points at CPL0; prints and exits. */
void bg_exception(uint64_t vec, uint64_t err, uint64_t rip) __attribute__((noreturn));
/* Where the ACPI RSDP is (hvm_start_info's rsdp_paddr), for finding devices; 0: none. */
void vdev_set_acpi(uint64_t rsdp_paddr);

/* The CPL3 entry point, reached by iretq from boot.S with %rdi = start_info. */
void bg_main(const void *start_info) __attribute__((noreturn));

/* bench.c: console, exit and command line helpers. */
void con_putc(char c);
void con_puts(const char *s);
void con_putword(const char *s);
void con_putdec(uint64_t v);
void bg_exit(uint8_t code) __attribute__((noreturn));
int is_space(char c);
const char *word_value(const char *w, const char *p);
/* Command-line words: for (w = word_first(s); w; w = word_next(w)). NULL at the end. */
const char *word_first(const char *s);
const char *word_next(const char *w);
int word_eq(const char *w, const char *s);
void cmdline_error(const char *msg, const char *word) __attribute__((noreturn));
/* "ERROR unknown test=..." and the matching exit. */
void unknown_test(const char *test) __attribute__((noreturn));
/* A whole-word number (decimal or 0x hex) in [lo, hi]; what names it in the error. */
uint64_t parse_param(const char *v, const char *what, uint64_t lo, uint64_t hi);

/* mem.c: the test=mem-* workloads; prints RESULT or ERROR and exits. */
void mem_main(const char *cmdline, const char *test, uint64_t n) __attribute__((noreturn));

/* net.c: the test=net-* workloads; prints RESULT or ERROR and exits. */
void net_main(const char *cmdline, const char *test, uint64_t n) __attribute__((noreturn));

/* blk.c: the test=blk-* workloads; prints RESULT or ERROR and exits. */
void blk_main(const char *cmdline, const char *test, uint64_t n) __attribute__((noreturn));

/* test=hostile (hostile.c): the devices of the command line against a hostile driver. */
void hostile_main(const char *cmdline) __attribute__((noreturn));
/* Set by blk.c before the interrupt is unmasked; used by blk_isr at CPL0. */
extern volatile uint64_t blk_isr_mmio;  /* virtio-mmio base of the device in use */
extern volatile uint64_t blk_isr_count; /* interrupts taken */
#endif

#endif
