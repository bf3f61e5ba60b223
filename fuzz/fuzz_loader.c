/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the kernel loaders (arch/x86_64/pvh.c and
 * bzimage.c, the real code): a PVH ELF or a bzImage from a hostile or
 * careless file, loaded into 32 MiB of guest RAM. The image is only read
 * (ASan sees any read past it); what is accepted loads inside RAM: an entry
 * and a boot structure inside it, the image above 1 MiB, an initrd where it
 * fits. A violation aborts.
 *
 * Input: [0] bit 0: bzImage (else PVH ELF), bit 1: pass a 4 KiB initrd,
 * bit 2: a long command line; the rest is the image.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>
#include "check.h"

#define RAM (32ull << 20)

static struct rvm_mem *mem;
static uint8_t initrd[4096];
static char longline[3000];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rvm_boot_info info;
    struct rvm_pvh_params p = {.cmdline = "console=ttyS0"};
    int r;

    if (!mem) {
        struct rvm_mem_config mc = {.size = RAM, .backing = RVM_MEM_ANON, .numa_node = -1};
        if (rvm_mem_create(NULL, &mc, &mem) < 0)
            abort();
        memset(longline, 'a', sizeof(longline) - 1);
    }
    if (size < 1)
        return 0;
    if (data[0] & 2) {
        p.initrd = initrd;
        p.initrd_size = sizeof(initrd);
    }
    if (data[0] & 4)
        p.cmdline = longline;
    /* The image in a buffer of its own size: a read past it is an ASan report. */
    size_t n = size - 1;
    uint8_t *img = malloc(n ? n : 1);
    CHECK(img);
    memcpy(img, data + 1, n);
    memset(&info, 0, sizeof(info));
    if (data[0] & 1) {
        struct rvm_bzimage_info bi;
        int pr = rvm_bzimage_parse(img, n, &bi);
        CHECK(pr == 0 || pr == -ENOEXEC || pr == -ENOTSUP);
        if (pr == 0) {
            CHECK(bi.kernel_offset <= n && bi.kernel_size <= n - bi.kernel_offset);
            CHECK(bi.version >= 0x020c);
        }
        r = rvm_bzimage_load(mem, img, n, &p, &info);
        CHECK(r == 0 || r == -ENOEXEC || r == -ENOTSUP || r == -ERANGE || r == -E2BIG);
        CHECK(r != 0 || pr == 0);
    } else {
        r = rvm_pvh_load(mem, img, n, &p, &info);
        CHECK(r == 0 || r == -ENOEXEC || r == -ENOENT || r == -ERANGE || r == -E2BIG);
    }
    if (r == 0) {
        CHECK(info.entry < RAM && info.start_info_gpa < RAM);
        CHECK(info.image_lo >= (1u << 20) && info.image_lo <= info.image_hi &&
              info.image_hi <= RAM);
        if (p.initrd)
            CHECK(info.initrd_size == sizeof(initrd) && info.initrd_gpa >= info.image_hi &&
                  info.initrd_gpa + info.initrd_size <= RAM);
    }
    free(img);
    return 0;
}
