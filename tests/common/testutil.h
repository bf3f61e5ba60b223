/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_TESTS_TESTUTIL_H
#define RINGVM_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ringvm/ringvm.h>

#include "../../guest/host/protocol.h"

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

/* The bench guest image: build/guest/ beside the tests' directory. */
#define guest_path() bg_guest_path("../guest/benchguest.elf")

/* A log callback that stores the last message (tests assert on it). */
struct logbuf {
    char last[512];
    int count;
};
void log_to_buf(void *opaque, enum rvm_log_level level, const char *msg);

/* A VM with COM1 into con, the debug-exit port and the bench guest loaded. */
struct tvm {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct console con;
    struct logbuf log;
};

/* config NULL: 1 vCPU, 64 MiB. Asserts on any failure. */
void tvm_create(struct tvm *t, const char *cmdline, const struct rvm_vm_config *config);
void tvm_destroy(struct tvm *t);

void sleep_ms(int ms);

/* A 4-byte access on the VM's MMIO bus as a guest's would be, asserted to succeed. */
uint32_t mmio_rd32(struct rvm_vm *vm, uint64_t addr);
void mmio_wr32(struct rvm_vm *vm, uint64_t addr, uint32_t val);

/*
 * Grows the 2 MiB hugepage pool by n pages (root only); *before gets the
 * old size for hugepool_release(). -1 when it cannot (the pool is left as
 * it was): the caller skips, saying so.
 */
int hugepool_reserve(long n, long *before);
void hugepool_release(long before);
long hugepool_size(void);

/*
 * This process's threads named comm (a device's workers: "rvm-blk"), their
 * ids sorted into tids (up to max); how many there are.
 */
int thread_ids(const char *comm, long *tids, int max);

/* A bare VM of mem_size bytes for device tests: 0, or -1 (nothing left open). */
int kvm_fixture_open(struct rvm_hv **hv, struct rvm_vm **vm, uint64_t mem_size);
/* Destroys what kvm_fixture_open made; NULLs are fine. */
void kvm_fixture_close(struct rvm_hv *hv, struct rvm_vm *vm);

/* In a test whose setup left *state NULL for want of KVM: skip, saying so. */
#define NEED_KVM(state)                                                                            \
    do {                                                                                           \
        if (!*(state))                                                                             \
            SKIP_WITHOUT_KVM();                                                                    \
    } while (0)

#endif
