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
 * Creates a VM on hv with the bench guest loaded with cmdline, COM1 and the
 * debug-exit port: what any run of the guest needs. cpu >= 0 pins the vCPU.
 */
int bench_vm_create(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline, int cpu,
                    struct bench_vm *b);
/* The same with a config of the caller's (memory size, dirty ring, ...); img NULL: load later. */
int bench_vm_create_config(struct rvm_hv *hv, const struct guest_image *img, const char *cmdline,
                           const struct rvm_vm_config *c, struct bench_vm *b);

/*
 * Pins the VM's one vCPU to cpu and gives its device workers every other CPU
 * (cpu < 0: nothing pinned): a worker never waits for a polling guest to be
 * scheduled out.
 */
void bench_vm_config_pin_apart(struct rvm_vm_config *c, int cpu);

/* Adds what the exit workloads aim at: null devices and an ioeventfd on each bus. */
int bench_vm_add_exit_targets(struct bench_vm *b);

void bench_vm_destroy(struct bench_vm *b);

/* Loads the guest with this command line (after devices that add words to it). */
int bench_vm_load(struct bench_vm *b, const struct guest_image *img, const char *cmdline);

/* Runs it (managed) to the guest's debug exit; 0 when it reported success. */
int bench_vm_run(struct bench_vm *b);
/* The same, giving up (-ETIMEDOUT) after timeout_ms. */
int bench_vm_run_for(struct bench_vm *b, int timeout_ms);

#endif
