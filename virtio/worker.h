/* SPDX-License-Identifier: MIT */
/* The io_uring worker loop the virtio devices share (worker.c). */
#ifndef RINGVM_VIRTIO_WORKER_H
#define RINGVM_VIRTIO_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A worker's pause, for a snapshot: the device asks (worker_pause_dev()), the
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

/*
 * The io_uring worker loop of a virtio device, once for all devices. A
 * device fills in a struct worker (its ops, the queue notification eventfds
 * the loop reads, its polling window) and the loop does the rest: it waits
 * on the ring, hands the device its completions, asks it to take what the
 * guest made available, publishes and interrupts, polls, pauses for a
 * snapshot and stops. A ring that fails, or a queue the device finds
 * corrupt, puts the device in NEEDS_RESET and tells the guest; the loop
 * never ends silently.
 *
 * Tags: a device's own requests carry tags below WORKER_TAG_DEVICE_LIMIT.
 */
#define WORKER_TAG_DEVICE_LIMIT (1ULL << 56)
#define WORKER_MAX_NOTIFY       16
/* How long a snapshot waits for a device's in-flight requests before it fails. */
#define WORKER_PAUSE_WAIT_NS (5000 * 1000000ULL)

struct rvm_vm;
struct virtio_mmio;

struct worker_ops {
    /*
     * Takes what the guest made available: kicked has bit k set for each
     * notification k that came (all of them at start and after a pause),
     * polled says the poll window found work. The device also looks at what
     * its own completions freed. False when a ring is corrupt.
     */
    bool (*take)(void *dev, uint32_t kicked, bool polled);
    /* One of the device's requests (tag, result) completed. */
    void (*complete)(void *dev, uint64_t tag, int res);
    /* Publishes the used entries of every queue; true when the driver wants an interrupt. */
    bool (*publish)(void *dev);
    /* Whether nothing of the device's is in flight. */
    bool (*idle)(void *dev);
    /* Polling: whether a queue holds work the device would take now. */
    bool (*has_work)(void *dev);
    /* Before sleeping after a poll: notifications back on; true if work raced with that. */
    bool (*notify_on)(void *dev);
    /* Optional: notifications as they come, even while pausing (take() is not called then). */
    void (*kicked)(void *dev, uint32_t kicked);
    /*
     * Optional: cancels in-flight requests that may never complete on their
     * own (a receive waiting for a frame), or lets go what the device holds
     * back (a rate limit's queue): when stopping, or pausing. Called again
     * each round until the device is idle.
     */
    void (*cancel)(void *dev, bool stopping);
};

struct worker {
    /* Filled in by the device before worker_init(). */
    const struct worker_ops *ops;
    void *dev;
    struct rvm_vm *vm;
    struct virtio_mmio *t;
    const char *name;        /* for the log: "virtio-blk" */
    const char *thread_name; /* at most 15 characters */
    uint64_t poll_ns;        /* device-side polling window; 0: none */
    unsigned nnotify;
    int notify_fd[WORKER_MAX_NOTIFY]; /* -1: not read */

    /* The loop's. */
    struct io_uring ring;
    bool ring_disabled;
    bool running;    /* a thread was started (and not yet joined) */
    bool stop_asked; /* worker_stop_wait() signalled it */
    bool timer_armed;
    uint64_t timer_deadline; /* vm_now_ns() it fires at */
    struct __kernel_timespec timer_ts;
    pthread_t thread;
    int stop_efd;
    uint64_t stop_buf, notify_buf[WORKER_MAX_NOTIFY];
    struct worker_gate gate;
};

/*
 * The ring (sq_entries submissions; completions for cq_entries, which must
 * cover everything the device can have in flight), the stop eventfd and the
 * pause gate. The device may register files on w->ring before worker_start().
 * 0 or -errno (nothing left to free).
 */
int worker_init(struct worker *w, unsigned sq_entries, unsigned cq_entries);
/* Frees what worker_init() made, for a worker that was never started. */
void worker_fini(struct worker *w);
/* Starts the thread. 0 or -errno (then worker_fini()). */
int worker_start(struct worker *w);
/*
 * Stops the worker: it cancels what it has in flight and ends once nothing
 * is (what the kernel cannot cancel, I/O at a disk or a backend that does not
 * answer, it waits for). Waits up to timeout_ns for that, then joins it and
 * frees its ring: 0. -ETIMEDOUT when it has not ended by then: it goes on
 * ending, still owning its queues and buffers, and a later call waits again.
 * A no-op for a worker that is not running.
 */
int worker_stop_wait(struct worker *w, uint64_t timeout_ns);
/* worker_stop_wait() without a bound: for a device being destroyed. */
void worker_stop(struct worker *w);
/*
 * A snapshot's pause (see struct worker_gate): 0 once the worker is parked,
 * -ETIMEDOUT when what it has in flight has not completed within timeout_ns
 * (it parks later unless worker_resume_dev() comes first). And its end.
 */
int worker_pause_dev(struct worker *w, uint64_t timeout_ns);
void worker_resume_dev(struct worker *w);
/* Wakes a sleeping worker for one more round (its device's take() runs). From any thread. */
void worker_wake(struct worker *w);
/*
 * On the worker: a round ns from now even if nothing else comes (a rate
 * limit's wait). One timer: asked again while armed, it keeps the sooner.
 */
void worker_wake_after(struct worker *w, uint64_t ns);

/*
 * A submission entry on the worker's ring; when the ring is full, what is
 * queued goes to the kernel first. NULL if even then there is none (the
 * kernel refused the submit): the caller fails that request.
 */
struct io_uring_sqe *worker_sqe(struct worker *w);

#endif
