/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest_image.h"

static int read_all(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) < 0 ||
        !(*buf = malloc((size_t)n)) || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return -EIO;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

int guest_image_get(struct guest_image *img)
{
    const char *env = getenv("RINGVM_GUEST");
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n;

    if (env)
        return read_all(env, &img->elf, &img->elf_size);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return -errno;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(path, sizeof(path), "%s/guest/benchguest.elf", exe);
    return read_all(path, &img->elf, &img->elf_size);
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

int bench_result_value(const char *text, const char *key, uint64_t *value)
{
    size_t kl = strlen(key);

    for (const char *p = strstr(text, "RESULT "); p && *p; p++) {
        if ((p[-1] == ' ') && !strncmp(p, key, kl) && p[kl] == '=') {
            char *end;
            unsigned long long v = strtoull(p + kl + 1, &end, 10);
            if (end == p + kl + 1)
                return -ENOENT;
            *value = v;
            return 0;
        }
    }
    return -ENOENT;
}

void console_out(void *opaque, const char *p, size_t n)
{
    struct console *c = opaque;

    if (n > sizeof(c->buf) - 1 - c->len)
        n = sizeof(c->buf) - 1 - c->len;
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    c->buf[c->len] = '\0';
}
