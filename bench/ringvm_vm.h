/* SPDX-License-Identifier: MIT */
/* A ringvm VM set up the way the bench cases need it. */
#ifndef RINGVM_BENCH_RINGVM_VM_H
#define RINGVM_BENCH_RINGVM_VM_H

#include "guest_image.h"

struct bench_vm {
    struct rvm_vm *vm;
    struct console con;
    int efd; /* eventfd behind the ioeventfd workloads, or -1 */
};

/*
 * Creates a VM on hv with the bench guest loaded with cmdline: COM1, the
 * debug-exit port, a null device on the pio and mmio test addresses, and an
 * eventfd on the ioeventfd ones. cpu >= 0 pins the vCPU there.
 */
int bench_vm_create(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline, int cpu,
                    struct bench_vm *b);
void bench_vm_destroy(struct bench_vm *b);

/* Runs it (managed) to the guest's debug exit; 0 when it reported success. */
int bench_vm_run(struct bench_vm *b);

#endif
