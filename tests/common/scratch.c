/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"
#include "testutil.h"

static char root[64];

int scratch_make(const char *tag)
{
    snprintf(root, sizeof(root), "/var/tmp/ringvm-%s-XXXXXX", tag);
    return mkdtemp(root) ? 0 : -1;
}

int scratch_remove(void)
{
    char cmd[128];

    if (!root[0])
        return 0;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

const char *scratch_root(void)
{
    return root;
}

/* dir/name in one of a pool's rotating buffers. */
static const char *join(char (*pool)[512], int *next, const char *dir, const char *name)
{
    *next = (*next + 1) % 16;
    snprintf(pool[*next], 512, "%s/%s", dir, name);
    return pool[*next];
}

const char *path_join(const char *dir, const char *name)
{
    static char pool[16][512];
    static int next;

    return join(pool, &next, dir, name);
}

const char *scratch_path(const char *name)
{
    static char pool[16][512];
    static int next;

    return join(pool, &next, root, name);
}

int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x50;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}
