/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_TESTS_TESTUTIL_H
#define RINGVM_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ringvm/ringvm.h>

/* True when /dev/kvm can be opened read-write. */
int kvm_usable(void);

/* Skips the calling test, saying why, unless KVM is usable. */
#define SKIP_WITHOUT_KVM()                                                                         \
    do {                                                                                           \
        if (!kvm_usable()) {                                                                       \
            print_message("SKIP: /dev/kvm is missing or not accessible on this host\n");           \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* The bench guest image (build/guest/benchguest.elf beside the test binary's tree). */
const char *guest_path(void);

/* Reads a whole file; the caller frees *buf. */
int read_whole(const char *path, void **buf, size_t *len);

/* Collected guest console output. */
struct console {
    char buf[8192];
    size_t len;
};
void console_out(void *opaque, const char *p, size_t n);

/* Finds "key=<unsigned>" after "RESULT " in text. 0 or -1. */
int result_value(const char *text, const char *key, uint64_t *value);

/* A log callback that stores the last message (tests assert on it). */
struct logbuf {
    char last[512];
    int count;
};
void log_to_buf(void *opaque, enum rvm_log_level level, const char *msg);

#endif
