/* SPDX-License-Identifier: MIT */
/*
 * Bench guest, CPL3 part: command line parsing, the measured loops, COM1
 * output and the debug-exit. Entered from boot.S by iretq with IOPL=3 plus a
 * TSS I/O bitmap (for hosts that force IOPL to 0), so in/out work here. On
 * software-nested KVM this code runs natively; only CPL0 code is emulated.
 */
#include <stddef.h>
#include <stdint.h>

#include "bg.h"

#define COM1_LSR  (BG_COM1_BASE + 5)
#define LSR_THRE  0x20
#define DEFAULT_N 1000

/* 64-bit interrupt gate. */
struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t attr;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t reserved;
};

_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate layout");

#define GATE_INTR 0x8e /* present, DPL0, 64-bit interrupt gate */

/* Loaded with lidt in boot.S; filled in here, at CPL3, before anything can trap. */
struct idt_gate bg_idt[256] __attribute__((aligned(16)));

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}

/* ---- console ---- */

void con_putc(char c)
{
    while (!(inb(COM1_LSR) & LSR_THRE))
        ;
    outb(BG_COM1_BASE, (uint8_t)c);
}

void con_puts(const char *s)
{
    while (*s)
        con_putc(*s++);
}

int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Print one command line word (up to whitespace or NUL). */
void con_putword(const char *s)
{
    while (*s && !is_space(*s))
        con_putc(*s++);
}

void con_putdec(uint64_t v)
{
    char buf[20];
    int i = 0;

    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        con_putc(buf[--i]);
}

static void con_puthex(uint64_t v)
{
    int shift = 60;

    con_puts("0x");
    while (shift > 0 && !(v >> shift))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        con_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

/* ---- exit ---- */

void bg_exit(uint8_t code)
{
    uint16_t cs;

    outb(BG_DEBUG_EXIT_PORT, code);
    /* No debug-exit device: park the vCPU. */
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (;;) {
        if ((cs & 3) == 0)
            __asm__ volatile("cli; hlt");
        else
            __asm__ volatile("pause");
    }
}

/* Runs at CPL0 (called from isr_common); everything is mapped, so it can share the console. */
void bg_exception(uint64_t vec, uint64_t err, uint64_t rip)
{
    con_puts("EXCEPTION vec=");
    con_putdec(vec);
    con_puts(" rip=");
    con_puthex(rip);
    con_puts(" err=");
    con_puthex(err);
    con_putc('\n');
    bg_exit(BG_EXIT_EXCEPTION);
}

static void set_gate(unsigned int vec, const void *handler, uint8_t attr)
{
    uint64_t a = (uint64_t)(uintptr_t)handler;
    struct idt_gate *g = &bg_idt[vec];

    g->off_lo = (uint16_t)a;
    g->sel = SEL_KCODE;
    g->ist = 0;
    g->attr = attr;
    g->off_mid = (uint16_t)(a >> 16);
    g->off_hi = (uint32_t)(a >> 32);
    g->reserved = 0;
}

static void idt_init(void)
{
    for (unsigned int v = 0; v < NUM_EXC_VECTORS; v++)
        set_gate(v, isr_entries + v * ISR_ENTRY_SIZE, GATE_INTR);
    set_gate(6, ud_isr, GATE_INTR); /* #UD doubles as the hlt request */
    set_gate(VEC_TIMER, timer_isr, GATE_INTR);
    set_gate(VEC_SPURIOUS, spurious_isr, GATE_INTR);
    set_gate(VEC_BLK, blk_isr, GATE_INTR);
}

/* ---- workloads: each returns the TSC cycles of its n-iteration loop ---- */

static uint64_t pio_loop(uint16_t port, uint64_t n)
{
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        outl(port, (uint32_t)i);
    return rdtsc() - t0;
}

static uint64_t mmio_loop(uint64_t addr, uint64_t n)
{
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        mmio_write32(addr, (uint32_t)i);
    return rdtsc() - t0;
}

static uint64_t bench_pio(uint64_t n)
{
    return pio_loop(BG_PIO_PORT, n);
}

static uint64_t bench_mmio(uint64_t n)
{
    return mmio_loop(BG_MMIO_ADDR, n);
}

static uint64_t bench_ioeventfd_pio(uint64_t n)
{
    return pio_loop(BG_IOEVENTFD_PIO_PORT, n);
}

static uint64_t bench_ioeventfd_mmio(uint64_t n)
{
    return mmio_loop(BG_IOEVENTFD_MMIO_ADDR, n);
}

static const struct test {
    const char *name;
    uint64_t (*run)(uint64_t n);
    int cpl0_only;
} tests[] = {
    {"pio", bench_pio, 0},
    {"mmio", bench_mmio, 0},
    {"ioeventfd-pio", bench_ioeventfd_pio, 0},
    {"ioeventfd-mmio", bench_ioeventfd_mmio, 0},
    {"hlt", bg_hlt_loop, 1}, /* hlt is privileged */
};

/* ---- command line ---- */

/* If word w starts with prefix p, return the rest of w, else NULL. */
const char *word_value(const char *w, const char *p)
{
    while (*p)
        if (*w++ != *p++)
            return NULL;
    return w;
}

const char *word_first(const char *w)
{
    while (is_space(*w))
        w++;
    return *w ? w : NULL;
}

const char *word_next(const char *w)
{
    while (*w && !is_space(*w))
        w++;
    return word_first(w);
}

/* Does the word at w equal the NUL-terminated s? */
int word_eq(const char *w, const char *s)
{
    while (*s)
        if (*w++ != *s++)
            return 0;
    return *w == '\0' || is_space(*w);
}

void unknown_test(const char *test)
{
    con_puts("ERROR unknown test=");
    con_putword(test);
    con_putc('\n');
    bg_exit(BG_EXIT_UNKNOWN_TEST);
}

void cmdline_error(const char *msg, const char *word)
{
    con_puts("ERROR ");
    con_puts(msg);
    if (word)
        con_putword(word);
    con_putc('\n');
    bg_exit(BG_EXIT_BAD_CMDLINE);
}

static uint64_t parse_n(const char *s)
{
    uint64_t n = 0;

    if (*s == '\0' || is_space(*s))
        cmdline_error("bad n=", s);
    for (const char *p = s; *p && !is_space(*p); p++) {
        if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10)
            cmdline_error("bad n=", s);
        n = n * 10 + (uint64_t)(*p - '0');
    }
    return n;
}

void bg_main(const void *start_info)
{
    const uint8_t *si = start_info;
    const char *cmdline = "";
    const char *test = NULL;
    uint64_t n = DEFAULT_N;
    int cpl0 = 0;

    idt_init();

    if (*(const uint32_t *)si != BG_PVH_START_MAGIC)
        cmdline_error("bad hvm_start_info magic", NULL);
    uint64_t pa = *(const uint64_t *)(si + BG_PVH_CMDLINE_PADDR_OFF);
    if (pa)
        cmdline = (const char *)(uintptr_t)pa;
    vdev_set_acpi(*(const uint64_t *)(si + BG_PVH_RSDP_PADDR_OFF));

    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "test=")))
            test = v;
        else if ((v = word_value(w, "n=")))
            n = parse_n(v);
        else if (word_eq(w, "cpl=0"))
            cpl0 = 1;
        else if (word_eq(w, "cpl=3"))
            cpl0 = 0;
    }
    if (!test)
        cmdline_error("missing test=<name> on the command line", NULL);
    if (word_value(test, "blk-"))
        blk_main(cmdline, test, n); /* does not return */
    if (word_value(test, "net-"))
        net_main(cmdline, test, n); /* does not return */
    if (word_value(test, "mem-"))
        mem_main(cmdline, test, n); /* does not return */
    if (word_eq(test, "hostile"))
        hostile_main(cmdline); /* does not return */

    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        const struct test *t = &tests[i];

        if (!word_eq(test, t->name))
            continue;
        uint64_t cycles = cpl0 || t->cpl0_only ? bg_cpl0_call(t->run, n) : t->run(n);
        con_puts("RESULT test=");
        con_puts(t->name);
        con_puts(" n=");
        con_putdec(n);
        con_puts(" cycles=");
        con_putdec(cycles);
        con_puts(" cycles_per_iter=");
        con_putdec(n ? cycles / n : 0);
        con_putc('\n');
        bg_exit(BG_EXIT_OK);
    }
    unknown_test(test);
}
