/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

int kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

const char *guest_path(void)
{
    static char path[PATH_MAX + 64];
    char exe[PATH_MAX];
    const char *env = getenv("RINGVM_GUEST");
    ssize_t n;

    if (env)
        return env;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return "build/guest/benchguest.elf";
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* .../tests */
    snprintf(path, sizeof(path), "%s/../guest/benchguest.elf", exe);
    return path;
}

int read_whole(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 ||
        !(*buf = malloc((size_t)n + 1)) || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return -EIO;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
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

int result_value(const char *text, const char *key, uint64_t *value)
{
    const char *line = strstr(text, "RESULT ");
    size_t kl = strlen(key);

    for (const char *p = line; p && *p && *p != '\n'; p++) {
        if (p[-1] == ' ' && !strncmp(p, key, kl) && p[kl] == '=') {
            char *end;
            *value = strtoull(p + kl + 1, &end, 10);
            return end == p + kl + 1 ? -1 : 0;
        }
    }
    return -1;
}

void log_to_buf(void *opaque, enum rvm_log_level level, const char *msg)
{
    struct logbuf *b = opaque;

    (void)level;
    snprintf(b->last, sizeof(b->last), "%s", msg);
    b->count++;
}
