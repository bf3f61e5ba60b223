/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest_image.h"

int guest_image_get(struct guest_image *img)
{
    return bg_read_file(bg_guest_path("guest/benchguest.elf"), &img->elf, &img->elf_size);
}

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_pin_self(void)
{
    cpu_set_t set;
    int cpu = -1;

    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return -errno;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpu = i;
    if (cpu < 0)
        return -ESRCH;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : cpu;
}
