/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../core/vm_internal.h"
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

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A VM with COM1 into t->con, the debug-exit port and the guest loaded with cmdline. */
void tvm_create(struct tvm *t, const char *cmdline, const struct rvm_vm_config *config)
{
    struct rvm_hv_config hc = {.log = log_to_buf, .log_opaque = &t->log, .log_level = RVM_LOG_WARN};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &t->con};
    struct rvm_pvh_params pp = {.cmdline = cmdline};
    struct rvm_vm_config c;

    memset(t, 0, sizeof(*t));
    if (config) {
        c = *config;
    } else {
        rvm_vm_config_init(&c);
        c.mem.size = 64 << 20;
    }
    assert_int_equal(rvm_hv_open(&hc, &t->hv), 0);
    assert_int_equal(rvm_vm_create(t->hv, &c, &t->vm), 0);
    assert_int_equal(rvm_uart_attach(t->vm, &uc, NULL), 0);
    assert_int_equal(rvm_debug_exit_attach(t->vm, 0), 0);
    assert_int_equal(rvm_vm_load_pvh_file(t->vm, guest_path(), &pp, NULL), 0);
}

void tvm_destroy(struct tvm *t)
{
    rvm_vm_destroy(t->vm);
    rvm_hv_close(t->hv);
}

int kvm_fixture_open(struct rvm_hv **hv, struct rvm_vm **vm, uint64_t mem_size)
{
    struct rvm_vm_config c;

    *hv = NULL;
    *vm = NULL;
    rvm_vm_config_init(&c);
    c.mem.size = mem_size;
    if (rvm_hv_open(NULL, hv) < 0)
        return -1;
    if (rvm_vm_create(*hv, &c, vm) < 0) {
        rvm_hv_close(*hv);
        *hv = NULL;
        return -1;
    }
    return 0;
}

void kvm_fixture_close(struct rvm_hv *hv, struct rvm_vm *vm)
{
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

#define POOL      "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
#define POOL_FREE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;

    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static int write_long(const char *path, long v)
{
    FILE *f = fopen(path, "w");
    int r;

    if (!f)
        return -errno;
    r = fprintf(f, "%ld\n", v) < 0 ? -EIO : 0;
    return fclose(f) == 0 ? r : -errno;
}

long hugepool_size(void)
{
    return read_long(POOL);
}

int hugepool_reserve(long n, long *before)
{
    *before = read_long(POOL);
    if (*before < 0 || write_long(POOL, *before + n) < 0)
        return -1;
    if (read_long(POOL_FREE) < n) {
        write_long(POOL, *before);
        return -1;
    }
    return 0;
}

void hugepool_release(long before)
{
    write_long(POOL, before);
}

uint32_t mmio_rd32(struct rvm_vm *vm, uint64_t addr)
{
    uint64_t v;
    assert_int_equal(vm_io_access(vm, RVM_BUS_MMIO, addr, 4, false, &v), 0);
    return (uint32_t)v;
}

void mmio_wr32(struct rvm_vm *vm, uint64_t addr, uint32_t val)
{
    uint64_t v = val;
    assert_int_equal(vm_io_access(vm, RVM_BUS_MMIO, addr, 4, true, &v), 0);
}

static int long_cmp(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;

    return x < y ? -1 : x > y;
}

int thread_ids(const char *comm, long *tids, int max)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) && n < max) {
        char p[300], name[32] = "";
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
        if (!(f = fopen(p, "r")))
            continue;
        if (fgets(name, sizeof(name), f))
            name[strcspn(name, "\n")] = 0;
        fclose(f);
        if (!strcmp(name, comm))
            tids[n++] = strtol(e->d_name, NULL, 10);
    }
    closedir(d);
    qsort(tids, (size_t)n, sizeof(*tids), long_cmp);
    return n;
}
