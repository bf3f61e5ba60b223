/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
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

void log_to_buf(void *opaque, enum rvm_log_level level, const char *msg)
{
    struct logbuf *b = opaque;

    (void)level;
    snprintf(b->last, sizeof(b->last), "%s", msg);
    b->count++;
}
