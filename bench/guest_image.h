/* SPDX-License-Identifier: MIT */
/* The bench guest, loaded once into a template both the raw loop and ringvm start from. */
#ifndef RINGVM_BENCH_GUEST_IMAGE_H
#define RINGVM_BENCH_GUEST_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <ringvm/ringvm.h>

#include "../guest/host/protocol.h"

#define BENCH_MEM_SIZE (64ULL << 20)

struct guest_image {
    void *elf;
    size_t elf_size;
};

/* Reads the bench guest ELF ($RINGVM_GUEST, else build/guest/ beside the binary). */
int guest_image_get(struct guest_image *img);

/* Monotonic time in seconds. */
double bench_now(void);

/* Pins the calling thread to one CPU (the process's last allowed CPU); returns it or -errno. */
int bench_pin_self(void);

#endif
