/* SPDX-License-Identifier: MIT */
/*
 * A bare KVM VM driven with plain ioctls: the floor ringvm is compared with.
 * Nothing here calls the library except to lay out the guest image once
 * (raw_template_init), outside every measurement.
 */
#ifndef RINGVM_BENCH_RAW_H
#define RINGVM_BENCH_RAW_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "guest_image.h"

struct raw_template {
    uint8_t *mem;        /* BENCH_MEM_SIZE bytes, the guest as loaded */
    uint64_t span[3][2]; /* [gpa, len) worth copying: start info, command line, image */
    uint64_t entry, start_info;
    struct kvm_cpuid2 *cpuid;
    int kvm_fd;
    int run_size;
};

struct raw_vm {
    int vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;
    uint64_t mem_size;
};

/* Loads the guest with cmdline into a template. 0 or -errno. */
int raw_template_init(struct raw_template *t, const struct guest_image *img, const char *cmdline);
void raw_template_fini(struct raw_template *t);

/*
 * VM, memory, vCPU from the template, up to the point of the first KVM_RUN.
 * With efd >= 0, the bench guest's ioeventfd port and address signal it.
 */
int raw_vm_create(const struct raw_template *t, int efd, struct raw_vm *vm);
/* The same with mem_size bytes of RAM (BENCH_MEM_SIZE to 3 GiB; the guest uses the start). */
int raw_vm_create_sized(const struct raw_template *t, int efd, uint64_t mem_size,
                        struct raw_vm *vm);
void raw_vm_destroy(struct raw_vm *vm);

/* Seconds to create a VM of mem_size and run it to its first exit (then destroyed); < 0 on failure.
 */
double raw_vm_time_to_first_exit(const struct raw_template *t, uint64_t mem_size);

struct bench_ctx;
/*
 * The case body of a raw create-to-first-exit measurement with mem_size of
 * RAM (the bench thread pinned first if pin), counted in unit (seconds x scale).
 */
void bench_raw_first_exit(struct bench_ctx *ctx, uint64_t mem_size, bool pin, const char *unit,
                          double scale);

/* Runs until the first exit of any kind. 0 or -errno. */
int raw_vm_first_exit(struct raw_vm *vm);

/* Runs the guest to its debug-exit, collecting COM1 output into con. 0 or -errno. */
int raw_vm_run(struct raw_vm *vm, struct console *con);

/* KVM_GET_TSC_KHZ of the vCPU. */
int64_t raw_vm_tsc_khz(struct raw_vm *vm);

#endif
