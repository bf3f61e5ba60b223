/* SPDX-License-Identifier: MIT */
/*
 * Block I/O: the bench guest's blk-read/blk-write on a ringvm virtio-blk disk
 * (ioeventfd in, io_uring through, completions polled by the guest), against
 * `host`: io_uring from this process straight on the same file, O_DIRECT,
 * same depth, block size and access pattern: the ceiling. The file is on the
 * root disk, filled with data (so reads are not answered from holes).
 */

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "guest_image.h"
#include "ringvm_vm.h"

#define FILE_SIZE (256ULL << 20)
#define FILE_PATH "/var/tmp/ringvm-bench-disk.img"

struct blk_work {
    const char *guest_test; /* blk-read / blk-write */
    bool write, random;
    uint32_t bs, qd, n;
    uint32_t poll_us; /* rvm_blk_config.poll_us: 0 the default window */
};

/* Creates the bench file once, full of data. */
static int prepare_file(void)
{
    struct stat st;
    char *buf;
    int fd;

    if (stat(FILE_PATH, &st) == 0 && (uint64_t)st.st_size == FILE_SIZE)
        return 0;
    fd = open(FILE_PATH, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    buf = malloc(1 << 20);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (size_t i = 0; i < (1 << 20); i++)
        buf[i] = (char)(i * 131 + 17);
    for (uint64_t off = 0; off < FILE_SIZE; off += 1 << 20)
        if (write(fd, buf, 1 << 20) != 1 << 20) {
            free(buf);
            close(fd);
            return -EIO;
        }
    free(buf);
    fsync(fd);
    close(fd);
    return 0;
}

static uint64_t next_offset(uint64_t *x, const struct blk_work *w, uint64_t i)
{
    uint64_t blocks = FILE_SIZE / w->bs;

    if (!w->random)
        return (i % blocks) * w->bs;
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return (*x % blocks) * w->bs;
}

/* One run of n requests at depth qd with io_uring on the file; its seconds, or < 0. */
static double host_run(const struct blk_work *w, int fd, struct io_uring *ring, char *bufs)
{
    uint64_t x = 0x2545f4914f6cdd1dULL, submitted = 0, done = 0;
    double t0 = bench_now();

    while (done < w->n) {
        while (submitted < w->n && submitted - done < w->qd) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            char *b = bufs + (submitted % w->qd) * w->bs;
            uint64_t off = next_offset(&x, w, submitted);

            if (w->write)
                io_uring_prep_write(sqe, fd, b, w->bs, off);
            else
                io_uring_prep_read(sqe, fd, b, w->bs, off);
            submitted++;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        if (io_uring_submit_and_wait(ring, 1) < 0)
            return -1;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            if (cqe->res != (int)w->bs)
                return -1;
            seen++;
        }
        io_uring_cq_advance(ring, seen);
        done += seen;
    }
    return bench_now() - t0;
}

static void host_case(struct bench_ctx *ctx, const struct blk_work *w)
{
    struct io_uring ring;
    char *bufs = NULL;
    int fd;

    if (prepare_file() < 0 || (fd = open(FILE_PATH, O_RDWR | O_DIRECT | O_CLOEXEC)) < 0) {
        bench_fail(ctx, "cannot prepare or open the bench file with O_DIRECT");
        return;
    }
    if (posix_memalign((void **)&bufs, 4096, (size_t)w->qd * w->bs) != 0 ||
        io_uring_queue_init(2 * w->qd, &ring, 0) < 0) {
        bench_fail(ctx, "io_uring set-up failed");
        free(bufs);
        close(fd);
        return;
    }
    memset(bufs, 0x5a, (size_t)w->qd * w->bs);
    while (bench_keep_running(ctx)) {
        double s = host_run(w, fd, &ring, bufs);

        if (s <= 0) {
            bench_fail(ctx, "host I/O failed");
            break;
        }
        bench_set_iteration_time(ctx, s);
        bench_counter_add(ctx, "iops", w->n / s);
        bench_counter_add(ctx, "MiB_per_s", (double)w->n * w->bs / s / (1 << 20));
    }
    io_uring_queue_exit(&ring);
    free(bufs);
    close(fd);
}

/* One guest run of the workload on a ringvm disk; its seconds (the guest's own timing). */
static double ringvm_run(struct rvm_hv *hv, const struct guest_image *img, const struct blk_work *w,
                         int cpu)
{
    struct rvm_blk_config bc = {.path = FILE_PATH, .poll_us = w->poll_us};
    struct console con = {.len = 0};
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &con};
    struct rvm_pvh_params pp;
    struct rvm_vm_config c;
    struct rvm_vm_result res;
    struct rvm_vm *vm;
    char word[96], cmd[256];
    uint64_t cycles = 0, errors = 1;
    int64_t khz = 0;
    int r;

    rvm_vm_config_init(&c);
    c.mem.size = 128ULL << 20;
    bench_vm_config_pin_apart(&c, cpu); /* the vCPU on this thread's CPU, the worker apart */
    if (rvm_vm_create(hv, &c, &vm) < 0)
        return -1;
    r = rvm_uart_attach(vm, &uc, NULL);
    if (r == 0)
        r = rvm_debug_exit_attach(vm, 0);
    if (r == 0)
        r = rvm_vm_add_virtio_blk(vm, &bc, word, sizeof(word));
    snprintf(cmd, sizeof(cmd), "test=%s bs=%u qd=%u n=%u pattern=%s %s", w->guest_test, w->bs,
             w->qd, w->n, w->random ? "rand" : "seq", word);
    pp = (struct rvm_pvh_params){.cmdline = cmd};
    if (r == 0)
        r = rvm_vm_load_pvh(vm, img->elf, img->elf_size, &pp, NULL);
    if (r == 0)
        r = rvm_vm_start(vm);
    if (r == 0)
        r = rvm_vm_wait(vm, 600000, &res);
    if (r == 0)
        khz = rvm_vcpu_tsc_khz(rvm_vm_vcpu(vm, 0));
    rvm_vm_destroy(vm);
    if (r < 0 || res.end != RVM_END_DEBUG_EXIT || res.value != 0 || khz <= 0 ||
        bg_result_value(con.buf, "cycles", &cycles) < 0 ||
        bg_result_value(con.buf, "errors", &errors) < 0 || errors != 0)
        return -1;
    return (double)cycles / ((double)khz * 1e3);
}

static void ringvm_case(struct bench_ctx *ctx, const struct blk_work *w)
{
    struct guest_image img;
    struct rvm_hv *hv;
    int cpu;

    if (prepare_file() < 0 || guest_image_get(&img) < 0) {
        bench_fail(ctx, "cannot prepare the bench file or load the guest");
        return;
    }
    if (rvm_hv_open(NULL, &hv) < 0) {
        bench_fail(ctx, "cannot open /dev/kvm");
        free(img.elf);
        return;
    }
    cpu = bench_pin_self();
    while (bench_keep_running(ctx)) {
        double s = ringvm_run(hv, &img, w, cpu);

        if (s <= 0) {
            bench_fail(ctx, "the guest's block run failed");
            break;
        }
        bench_set_iteration_time(ctx, s);
        bench_counter_add(ctx, "iops", w->n / s);
        bench_counter_add(ctx, "MiB_per_s", (double)w->n * w->bs / s / (1 << 20));
    }
    rvm_hv_close(hv);
    free(img.elf);
}

static const struct blk_work randread_qd32 = {"blk-read", false, true, 4096, 32, 20000, 0};
static const struct blk_work randread_qd1 = {"blk-read", false, true, 4096, 1, 3000, 0};
static const struct blk_work randread_qd1_nopoll = {"blk-read", false, true,           4096,
                                                    1,          3000,  RVM_BLK_NO_POLL};
static const struct blk_work randwrite_qd32 = {"blk-write", true, true, 4096, 32, 20000, 0};
static const struct blk_work seqread_1m_qd8 = {"blk-read", false, false, 1 << 20, 8, 400, 0};

#define BLK_CASE(name, work)                                                                       \
    static void name##_ringvm(struct bench_ctx *c)                                                 \
    {                                                                                              \
        ringvm_case(c, &work);                                                                     \
    }                                                                                              \
    static void name##_host(struct bench_ctx *c)                                                   \
    {                                                                                              \
        host_case(c, &work);                                                                       \
    }

BLK_CASE(randread_qd32, randread_qd32)
BLK_CASE(randread_qd1, randread_qd1)
static void randread_qd1_ringvm_nopoll(struct bench_ctx *c)
{
    ringvm_case(c, &randread_qd1_nopoll);
}
BLK_CASE(randwrite_qd32, randwrite_qd32)
BLK_CASE(seqread_1m_qd8, seqread_1m_qd8)

const struct bench_case bench_blk_cases[] = {
    {"blk/randread_4k_qd32/host", randread_qd32_host, true, 0, "iops", 0, NULL},
    {"blk/randread_4k_qd32/ringvm", randread_qd32_ringvm, true, 0, "iops", 0, NULL},
    {"blk/randread_4k_qd1/host", randread_qd1_host, true, 0, "iops", 0, NULL},
    {"blk/randread_4k_qd1/ringvm", randread_qd1_ringvm, true, 0, "iops", 0, NULL},
    {"blk/randread_4k_qd1/ringvm_nopoll", randread_qd1_ringvm_nopoll, true, 0, "iops", 0, NULL},
    {"blk/randwrite_4k_qd32/host", randwrite_qd32_host, true, 0, "iops", 0, NULL},
    {"blk/randwrite_4k_qd32/ringvm", randwrite_qd32_ringvm, true, 0, "iops", 0, NULL},
    {"blk/seqread_1m_qd8/host", seqread_1m_qd8_host, true, 0, "MiB_per_s", 0, NULL},
    {"blk/seqread_1m_qd8/ringvm", seqread_1m_qd8_ringvm, true, 0, "MiB_per_s", 0, NULL},
    {NULL, NULL, false, 0, NULL, 0, NULL},
};
