/* SPDX-License-Identifier: MIT */
/* What the virtio devices' workers share about their io_uring. */
#ifndef RINGVM_VIRTIO_WORKER_H
#define RINGVM_VIRTIO_WORKER_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
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

/*
 * A worker's pause, for a snapshot: the device asks (worker_pause()), the
 * worker finishes what it has in flight, publishes it and waits in
 * worker_park() until worker_unpause(). Its thread, ring and the buffers it
 * holds stay: the guest sees nothing. The worker arms a read of efd so that
 * a sleeping worker wakes, and checks worker_pause_wanted() where it would
 * take new work. A worker that ends calls worker_gone() so that no pause
 * waits for it. A device reset while paused calls worker_quit() before it
 * stops the worker: the worker leaves its pause without taking new work.
 */
struct worker_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int efd;
    bool want;   /* __atomic; changed under lock */
    bool parked; /* under lock */
    bool gone;   /* under lock */
    bool quit;   /* under lock */
    uint64_t buf;
};

static inline int worker_gate_init(struct worker_gate *g)
{
    g->efd = eventfd(0, EFD_CLOEXEC);
    if (g->efd < 0)
        return -errno;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->want = g->parked = g->gone = g->quit = false;
    return 0;
}

static inline void worker_gate_destroy(struct worker_gate *g)
{
    close(g->efd);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static inline bool worker_pause_wanted(struct worker_gate *g)
{
    return __atomic_load_n(&g->want, __ATOMIC_ACQUIRE);
}

/* Returns once the worker is parked (or gone). -EIO if it could not be woken. */
static inline int worker_pause(struct worker_gate *g)
{
    uint64_t one = 1;
    int r = 0;

    pthread_mutex_lock(&g->lock);
    __atomic_store_n(&g->want, true, __ATOMIC_RELEASE);
    if (write(g->efd, &one, sizeof(one)) != sizeof(one))
        r = -EIO;
    while (r == 0 && !g->parked && !g->gone)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return r;
}

static inline void worker_unpause(struct worker_gate *g)
{
    pthread_mutex_lock(&g->lock);
    __atomic_store_n(&g->want, false, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Ends a pause for good: the worker is about to be stopped. */
static inline void worker_quit(struct worker_gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->quit = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/*
 * On the worker, nothing in flight and everything published: waits out the
 * pause. True to go on, false when it must stop (worker_quit()).
 */
static inline bool worker_park(struct worker_gate *g)
{
    bool go_on;

    pthread_mutex_lock(&g->lock);
    g->parked = true;
    pthread_cond_broadcast(&g->cond);
    while (g->want && !g->quit)
        pthread_cond_wait(&g->cond, &g->lock);
    g->parked = false;
    go_on = !g->quit;
    pthread_mutex_unlock(&g->lock);
    return go_on;
}

static inline void worker_gone(struct worker_gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->gone = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

#endif
