/* SPDX-License-Identifier: MIT */
/* What the virtio devices' workers share about their io_uring. */
#ifndef RINGVM_VIRTIO_WORKER_H
#define RINGVM_VIRTIO_WORKER_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

/* A submission entry; when the ring is full, what is queued goes to the kernel first. */
static inline struct io_uring_sqe *worker_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

/* An 8-byte read of an eventfd (a queue's notifications, a stop request), tagged. */
static inline void worker_arm_eventfd(struct io_uring *ring, int fd, uint64_t *buf, uint64_t tag)
{
    struct io_uring_sqe *sqe = worker_sqe(ring);

    io_uring_prep_read(sqe, fd, buf, sizeof(*buf), 0);
    io_uring_sqe_set_data64(sqe, tag);
}

/*
 * Asks a worker to stop through its stop eventfd, joins it, and frees its
 * ring and that eventfd. -EIO when the request could not be written (the
 * caller logs it; the join still waits, as the worker may stop anyway).
 */
static inline int worker_stop(pthread_t thread, int stop_efd, struct io_uring *ring)
{
    uint64_t one = 1;
    int r = write(stop_efd, &one, sizeof(one)) == sizeof(one) ? 0 : -EIO;

    pthread_join(thread, NULL);
    io_uring_queue_exit(ring);
    close(stop_efd);
    return r;
}

#endif
