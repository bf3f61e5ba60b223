/* SPDX-License-Identifier: MIT */
/*
 * Writing firmware tables (ACPI, the MP table) byte by byte into a bounded
 * buffer: little endian, as both specifications and x86 are. A write that
 * does not fit sets `over` and writes nothing, so a builder checks once at
 * its end.
 */
#ifndef RINGVM_ARCH_X86_TABLEBUF_H
#define RINGVM_ARCH_X86_TABLEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct tbuf {
    uint8_t *p;
    size_t len, cap;
    bool over;
};

static inline void tput(struct tbuf *b, const void *src, size_t n)
{
    if (b->over || b->len + n > b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void tput8(struct tbuf *b, uint8_t v)
{
    tput(b, &v, 1);
}

static inline void tput16(struct tbuf *b, uint16_t v)
{
    tput(b, &v, 2);
}

static inline void tput32(struct tbuf *b, uint32_t v)
{
    tput(b, &v, 4);
}

static inline void tput64(struct tbuf *b, uint64_t v)
{
    tput(b, &v, 8);
}

/* The byte that makes n bytes sum to zero, as both specifications checksum. */
static inline uint8_t tchecksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;

    while (n--)
        s = (uint8_t)(s + *p++);
    return (uint8_t)-s;
}

#endif
