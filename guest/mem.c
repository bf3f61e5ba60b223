/* SPDX-License-Identifier: MIT */
/*
 * test=mem-dirty: dirties a working set of pages, pass after pass, checking
 * each page still holds what the previous pass wrote before overwriting it
 * (so a snapshot restored with a page missing or stale is caught the next
 * time the guest gets there). Parameters:
 *   ws=PAGES     working set, from BG_MEM_ADDR (default 256)
 *   passes=N     passes to make, 0 for ever (default 1)
 *   gap=CYCLES   TSC cycles to wait after each page (default 0: full speed)
 *   cpl=0        run the loop at CPL0 (the host emulates it: slow, and able
 *                to overrun a KVM dirty ring) instead of CPL3
 * test=mem-touch: the same parameters, but one store per page (a burst
 * that fills a dirty ring fastest; nothing is checked).
 * After the last pass every page is checked once more. test=mem-verify is
 * what a restored mem-dirty guest turns into when the host sets
 * BG_MEM_ST_VERIFY in its state page (abi.h).
 * Prints "START mem-dirty ws=..." first, then RESULT with passes, the final
 * counter, mismatches and TSC cycles. All progress lives in guest memory
 * (BG_MEM_STATE), none in registers between pages, so a VM restored from a
 * snapshot simply continues where it stopped.
 */
#include <stddef.h>
#include <stdint.h>

#include "bg.h"

#define WORDS 512 /* u64 per page */

static volatile uint64_t *const st = (volatile uint64_t *)(uintptr_t)BG_MEM_STATE;
static uint64_t gap_cycles;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline volatile uint64_t *page_at(uint64_t i)
{
    return (volatile uint64_t *)(uintptr_t)(BG_MEM_ADDR + i * 4096);
}

static inline uint64_t pattern(uint64_t counter, uint64_t w)
{
    return (counter + 1) * BG_MEM_PATTERN ^ (w << 32 | w);
}

/* Does page i hold what pass p wrote? */
static int page_ok(uint64_t i, uint64_t p, uint64_t ws)
{
    volatile uint64_t *pg = page_at(i);
    uint64_t counter = p * ws + i;

    if (pg[0] != p || pg[1] != i || pg[2] != counter)
        return 0;
    for (uint64_t w = 3; w < WORDS; w++)
        if (pg[w] != pattern(counter, w))
            return 0;
    return 1;
}

static void page_write(uint64_t i, uint64_t p, uint64_t ws)
{
    volatile uint64_t *pg = page_at(i);
    uint64_t counter = p * ws + i;

    for (uint64_t w = 3; w < WORDS; w++)
        pg[w] = pattern(counter, w);
    pg[1] = i;
    pg[2] = counter;
    pg[0] = p;
}

/* mem-verify: the working set as the position in st says it must be; prints and exits. */
static void verify_and_exit(uint64_t ws)
{
    uint64_t p = st[BG_MEM_ST_PASS], at = st[BG_MEM_ST_PAGE], bad = 0;

    for (uint64_t i = 0; i < ws; i++)
        if (i < at ? !page_ok(i, p, ws) : (p > 0 && !page_ok(i, p - 1, ws)))
            bad++;
    con_puts("RESULT test=mem-verify ws=");
    con_putdec(ws);
    con_puts(" pass=");
    con_putdec(p);
    con_puts(" page=");
    con_putdec(at);
    con_puts(" counter=");
    con_putdec(p * ws + at);
    con_puts(" mismatches=");
    con_putdec(bad + st[BG_MEM_ST_MISMATCHES]);
    con_putc('\n');
    bg_exit(BG_EXIT_OK);
}

/* The loop; at CPL3 or (through bg_cpl0_call) CPL0. Returns TSC cycles. */
static uint64_t dirty_loop(uint64_t passes)
{
    uint64_t t0 = rdtsc(), ws = st[BG_MEM_ST_WS];

    while (passes == 0 || st[BG_MEM_ST_PASS] < passes) {
        if (st[BG_MEM_ST_VERIFY])
            verify_and_exit(ws);
        uint64_t p = st[BG_MEM_ST_PASS], i = st[BG_MEM_ST_PAGE];

        if (p > 0 && !page_ok(i, p - 1, ws)) {
            if (st[BG_MEM_ST_MISMATCHES] == 0) {
                con_puts("MISMATCH page=");
                con_putdec(i);
                con_puts(" pass=");
                con_putdec(p);
                con_putc('\n');
            }
            st[BG_MEM_ST_MISMATCHES] = st[BG_MEM_ST_MISMATCHES] + 1;
        }
        page_write(i, p, ws);
        if (i + 1 == ws) {
            st[BG_MEM_ST_PAGE] = 0;
            st[BG_MEM_ST_PASS] = p + 1;
            st[BG_MEM_ST_PASSES_DONE] = p + 1;
        } else {
            st[BG_MEM_ST_PAGE] = i + 1;
        }
        if (gap_cycles)
            for (uint64_t t = rdtsc(); rdtsc() - t < gap_cycles;)
                __asm__ volatile("pause");
    }
    /* The end: every page must hold the last pass (the verify step after a restore). */
    for (uint64_t i = 0; passes && i < ws; i++)
        if (!page_ok(i, passes - 1, ws))
            st[BG_MEM_ST_MISMATCHES] = st[BG_MEM_ST_MISMATCHES] + 1;
    return rdtsc() - t0;
}

/* mem-touch: one store per page of the working set, passes times. */
static uint64_t touch_loop(uint64_t passes)
{
    uint64_t t0 = rdtsc(), ws = st[BG_MEM_ST_WS];

    for (uint64_t p = 0; p < passes; p++) {
        for (uint64_t i = 0; i < ws; i++)
            *page_at(i) = p;
        st[BG_MEM_ST_PASSES_DONE] = p + 1;
    }
    st[BG_MEM_ST_PASS] = passes;
    return rdtsc() - t0;
}

void mem_main(const char *cmdline, const char *test, uint64_t n)
{
    uint64_t ws = 256, passes = 1, cycles;
    uint64_t (*loop)(uint64_t) = dirty_loop;
    int cpl0 = 0;

    (void)n;
    if (word_eq(test, "mem-touch"))
        loop = touch_loop;
    else if (!word_eq(test, "mem-dirty")) {
        unknown_test(test);
    }
    for (const char *w = word_first(cmdline); w; w = word_next(w)) {
        const char *v;

        if ((v = word_value(w, "ws=")))
            ws = parse_param(v, "bad ws= (1 to 524288 pages)", 1, BG_MEM_MAX_WS);
        else if ((v = word_value(w, "passes=")))
            passes = parse_param(v, "bad passes=", 0, UINT64_MAX);
        else if ((v = word_value(w, "gap=")))
            gap_cycles = parse_param(v, "bad gap=", 0, UINT64_MAX);
        else if (word_eq(w, "cpl=0"))
            cpl0 = 1;
    }
    for (unsigned i = 0; i < 8; i++)
        st[i] = 0;
    st[BG_MEM_ST_WS] = ws;
    st[BG_MEM_ST_MAGIC] = BG_MEM_MAGIC;
    con_puts(loop == touch_loop ? "START mem-touch ws=" : "START mem-dirty ws=");
    con_putdec(ws);
    con_putc('\n');

    cycles = cpl0 ? bg_cpl0_call(loop, passes) : loop(passes);

    con_puts(loop == touch_loop ? "RESULT test=mem-touch ws=" : "RESULT test=mem-dirty ws=");
    con_putdec(ws);
    con_puts(" passes=");
    con_putdec(st[BG_MEM_ST_PASSES_DONE]);
    con_puts(" counter=");
    con_putdec(st[BG_MEM_ST_PASS] * ws + st[BG_MEM_ST_PAGE]);
    con_puts(" mismatches=");
    con_putdec(st[BG_MEM_ST_MISMATCHES]);
    con_puts(" cycles=");
    con_putdec(cycles);
    con_putc('\n');
    bg_exit(BG_EXIT_OK);
}
