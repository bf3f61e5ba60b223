/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"

void console_out(void *opaque, const char *p, size_t n)
{
    struct console *c = opaque;

    if (n > sizeof(c->buf) - 1 - c->len)
        n = sizeof(c->buf) - 1 - c->len;
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

int bg_result_value(const char *text, const char *key, uint64_t *value)
{
    const char *line = strstr(text, "RESULT ");
    size_t kl = strlen(key);

    /* From after "RESULT ", so that p[-1] is always inside the line. */
    for (const char *p = line ? line + 7 : NULL; p && *p && *p != '\n'; p++) {
        if (p[-1] == ' ' && !strncmp(p, key, kl) && p[kl] == '=') {
            char *end;
            *value = strtoull(p + kl + 1, &end, 10);
            return end == p + kl + 1 ? -1 : 0;
        }
    }
    return -1;
}

int bg_read_file(const char *path, void **buf, size_t *len)
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
    ((char *)*buf)[n] = '\0';
    *len = (size_t)n;
    return 0;
}

const char *bg_guest_path(const char *rel)
{
    static char path[PATH_MAX + 64];
    char exe[PATH_MAX];
    const char *env = getenv("RINGVM_GUEST");
    ssize_t n;

    if (env)
        return env;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return rel;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(path, sizeof(path), "%s/%s", exe, rel);
    return path;
}
