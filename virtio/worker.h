/* SPDX-License-Identifier: MIT */
/* What the virtio devices' workers share about their io_uring. */
#ifndef RINGVM_VIRTIO_WORKER_H
#define RINGVM_VIRTIO_WORKER_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A worker's ring: the worker alone submits and reaps, so completions can
 * wait for it to ask (DEFER_TASKRUN): no interrupt of the worker per
 * completion. The ring starts disabled so that the worker, not the thread
 * that makes it, becomes its single issuer (worker_ring_enable()); kernels
 * before 6.1 get a plain ring (*disabled false). 0 or -errno.
 */
static inline int worker_ring_init(struct io_uring *ring, unsigned entries, bool *disabled)
{
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED};
    int r = io_uring_queue_init_params(entries, ring, &p);

    *disabled = r == 0;
    if (r == -EINVAL)
        r = io_uring_queue_init(entries, ring, 0);
    return r;
}

/*
 * Whether completions wait for the worker to run them (IORING_SQ_TASKRUN,
 * set by the kernel with TASKRUN_FLAG): a polling worker asks for them only
 * then, without a system call per look. True when the kernel cannot say.
 */
static inline bool worker_has_task_work(const struct io_uring *ring, bool disabled)
{
    return !disabled || (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN);
}

/* On the worker, first thing: 0 or -errno. */
static inline int worker_ring_enable(struct io_uring *ring, bool disabled)
{
    /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
    if (disabled &&
        syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
}

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
