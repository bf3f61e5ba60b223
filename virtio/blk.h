/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk over io_uring. Each device has one worker thread and one
 * io_uring carrying both the guest's notifications (a read on each queue's
 * ioeventfd) and the disk I/O, which goes straight between the file and
 * guest RAM (O_DIRECT when the request's buffers are aligned, buffered
 * otherwise). Completions are published per batch with one interrupt.
 */
#ifndef RINGVM_VIRTIO_BLK_H
#define RINGVM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <ringvm/virtio.h>

struct rvm_vm;
struct virtio_blk;

struct virtio_blk_config_opts {
    const char *path; /* or NULL: fd, taken over */
    int fd;
    bool ro;
    uint16_t queues;     /* 0 means 1 */
    uint16_t queue_size; /* 0 means 256 */
    uint32_t poll_us;    /* worker polls the queues this long after work; 0: never */
    uint8_t on_error;    /* enum rvm_blk_on_error */
    struct rvm_rate_limit limit;
};

/*
 * Opens the backing file and attaches a virtio-mmio block device at base
 * with its interrupt on gsi. The VM owns the device. -errno on failure (the
 * file missing or unreadable, a size not a multiple of 512).
 */
int virtio_blk_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_blk_config_opts *opts, struct virtio_blk **out);

/* Requests completed, and completed with an error status, since attach. */
struct virtio_blk_stats {
    uint64_t requests, errors, batches, interrupts;
};
void virtio_blk_stats(const struct virtio_blk *b, struct virtio_blk_stats *s);

#endif
