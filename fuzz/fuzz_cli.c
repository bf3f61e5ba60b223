/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the ringvm command's argument parser (cli/args.c,
 * the real code): the input is argv, NUL-separated. Whatever it is, the
 * parser returns 0 or -EINVAL with a terminated one-line reason, and what
 * it accepts is consistent: counts inside their arrays, sizes it parsed
 * non-zero where required, a command picked. A violation aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../cli/args.h"
#include "check.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cli_opts o;
    char *argv[MAX_ARGS + 2], err[256];
    char *copy = malloc(size + 1);
    int argc = 1;

    CHECK(copy);
    memcpy(copy, data, size);
    copy[size] = 0;
    argv[0] = "ringvm";
    for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    memset(err, 0x55, sizeof(err));
    int r = cli_parse(argc, argv, &o, err, sizeof(err));
    CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        CHECK(memchr(err, 0, sizeof(err)) != NULL);
    } else {
        CHECK(o.cmd != CLI_NONE);
        CHECK(o.ndisks <= RVM_VIRTIO_MAX_DEVICES && o.nnets <= RVM_VIRTIO_MAX_DEVICES);
        if (o.cmd == CLI_RUN)
            CHECK(o.kernel != NULL && o.vm.mem.size > 0 && o.vm.vcpus >= 1);
        for (unsigned i = 0; i < o.nnets; i++)
            CHECK(!o.nets[i].tap != !o.nets[i].unix_path);
    }
    free(copy);
    return 0;
}
