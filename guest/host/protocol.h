/* SPDX-License-Identifier: MIT */
/*
 * Host-side helpers for the bench guest's console protocol (guest/README.md),
 * shared by the benchmarks and the tests: collect what the guest prints,
 * read its RESULT line, find its image.
 */
#ifndef RINGVM_GUEST_HOST_PROTOCOL_H
#define RINGVM_GUEST_HOST_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

/* Guest console output, NUL-terminated, cut at the buffer's size. */
struct console {
    char buf[8192];
    size_t len;
};

/* A rvm_uart_out_fn appending to the struct console in opaque. */
void console_out(void *opaque, const char *p, size_t n);

/* Finds "key=<unsigned>" on the guest's RESULT line. 0, or -1 if absent. */
int bg_result_value(const char *text, const char *key, uint64_t *value);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. 0 or -errno. */
int bg_read_file(const char *path, void **buf, size_t *len);

/*
 * The bench guest image: $RINGVM_GUEST if set, else rel (e.g.
 * "guest/benchguest.elf") taken from the running binary's directory.
 */
const char *bg_guest_path(const char *rel);

#endif
