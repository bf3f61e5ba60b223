/* SPDX-License-Identifier: MIT */
/* The io_uring worker loop the virtio devices share (worker.h). */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/virtio_mmio.h>

#include "../core/log.h"
#include "../core/vm_internal.h"
#include "mmio.h"
#include "worker.h"

#define TAG_STOP   (1ULL << 63)
#define TAG_PAUSE  (1ULL << 62)
#define TAG_NOTIFY (1ULL << 61) /* | notification index */
#define TAG_CANCEL (1ULL << 60) /* the stop's cancel of everything in flight */
#define TAG_TIMER  (1ULL << 59) /* worker_wake_after() */
#define ALL_KICKED (~0U)
/* Rounds in a row the kernel may refuse a submit for want of resources before the device fails. */
#define TRANSIENT_MAX 10000

/*
 * A worker's ring: the worker alone submits and reaps, so completions can
 * wait for it to ask (DEFER_TASKRUN): no interrupt of the worker per
 * completion. The ring starts disabled so that the worker, not the thread
 * that makes it, becomes its single issuer (worker_ring_enable()); kernels
 * before 6.1 get a plain ring (*disabled false). The completion queue holds
 * cq_entries (rounded up to a power of two by the kernel). 0 or -errno.
 */
static int worker_ring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries,
                            bool *disabled)
{
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED |
                                         IORING_SETUP_CQSIZE,
                                .cq_entries = cq_entries};
    int r = io_uring_queue_init_params(entries, ring, &p);

    *disabled = r == 0;
    if (r == -EINVAL) {
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = cq_entries};
        r = io_uring_queue_init_params(entries, ring, &p);
    }
    return r;
}

/*
 * Whether completions wait for the worker to run them (IORING_SQ_TASKRUN,
 * set by the kernel with TASKRUN_FLAG): a polling worker asks for them only
 * then, without a system call per look. True when the kernel cannot say.
 */
static bool worker_has_task_work(const struct io_uring *ring, bool disabled)
{
    return !disabled || (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN);
}

/* On the worker, first thing: 0 or -errno. */
static int worker_ring_enable(struct io_uring *ring, bool disabled)
{
    /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
    if (disabled &&
        syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
}

static int worker_gate_init(struct worker_gate *g)
{
    pthread_condattr_t ca;

    g->efd = eventfd(0, EFD_CLOEXEC);
    if (g->efd < 0)
        return -errno;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the bounded waits' deadlines */
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    g->want = g->parked = g->gone = g->quit = false;
    return 0;
}

static void worker_gate_destroy(struct worker_gate *g)
{
    close(g->efd);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static bool worker_pause_wanted(struct worker_gate *g)
{
    return __atomic_load_n(&g->want, __ATOMIC_ACQUIRE);
}

/* The CLOCK_MONOTONIC time timeout_ns from now (far in the future for UINT64_MAX). */
static struct timespec deadline_after(uint64_t timeout_ns)
{
    struct timespec ts;
    const uint64_t cap = 100ULL * 365 * 24 * 3600 * 1000000000ULL; /* a century */

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ns > cap)
        timeout_ns = cap;
    ts.tv_sec += (time_t)(timeout_ns / 1000000000ULL);
    ts.tv_nsec += (long)(timeout_ns % 1000000000ULL);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Waits on g->cond (lock held) until *cond or the deadline: whether *cond came. */
static bool gate_wait_until(struct worker_gate *g, const bool *c1, const bool *c2,
                            const struct timespec *deadline)
{
    while (!*c1 && !(c2 && *c2))
        if (pthread_cond_timedwait(&g->cond, &g->lock, deadline) == ETIMEDOUT)
            return *c1 || (c2 && *c2);
    return true;
}

/*
 * Returns once the worker is parked (or gone): 0; -ETIMEDOUT when it is not
 * within timeout_ns (its in-flight requests have not completed; the pause is
 * still asked for until worker_unpause()); -EIO if it could not be woken.
 */
static int worker_pause(struct worker_gate *g, uint64_t timeout_ns)
{
    struct timespec deadline = deadline_after(timeout_ns);
    uint64_t one = 1;
    int r = 0;

    pthread_mutex_lock(&g->lock);
    __atomic_store_n(&g->want, true, __ATOMIC_RELEASE);
    if (write(g->efd, &one, sizeof(one)) != sizeof(one))
        r = -EIO;
    if (r == 0 && !gate_wait_until(g, &g->parked, &g->gone, &deadline))
        r = -ETIMEDOUT;
    pthread_mutex_unlock(&g->lock);
    return r;
}

static void worker_unpause(struct worker_gate *g)
{
    pthread_mutex_lock(&g->lock);
    __atomic_store_n(&g->want, false, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Ends a pause for good: the worker is about to be stopped. */
static void worker_quit(struct worker_gate *g)
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
static bool worker_park(struct worker_gate *g)
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

static void worker_gone(struct worker_gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->gone = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

struct io_uring_sqe *worker_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

    if (!sqe) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

/* An 8-byte read of an eventfd (a notification, a stop or pause request), tagged. */
static bool arm(struct worker *w, int fd, uint64_t *buf, uint64_t tag)
{
    struct io_uring_sqe *sqe = worker_sqe(w);

    if (!sqe)
        return false;
    io_uring_prep_read(sqe, fd, buf, sizeof(*buf), 0);
    io_uring_sqe_set_data64(sqe, tag);
    return true;
}

static bool arm_notify(struct worker *w, unsigned k)
{
    return w->notify_fd[k] < 0 || arm(w, w->notify_fd[k], &w->notify_buf[k], TAG_NOTIFY | k);
}

/* The device cannot go on: the guest is told (NEEDS_RESET, a config interrupt), the log says why.
 */
static void fail(struct worker *w, const char *why, int err)
{
    if (err)
        rvm_err(w->vm->hv, "%s: %s: %s; device needs a reset", w->name, why, strerror(-err));
    else
        rvm_err(w->vm->hv, "%s: %s; device needs a reset", w->name, why);
    virtio_mmio_needs_reset(w->t);
}

/*
 * Device-side polling: spins until a completion is ready or a queue holds
 * work the device would take, for at most poll_ns, with guest notifications
 * off (the device's drains left them off). Returns whether work came.
 */
static bool poll_for_work(struct worker *w)
{
    uint64_t start = vm_now_ns();

    io_uring_submit(&w->ring);
    for (unsigned i = 1;; i++) {
        if (io_uring_cq_ready(&w->ring) || worker_pause_wanted(&w->gate) ||
            w->ops->has_work(w->dev))
            return true;
        if (!w->ops->idle(w->dev) && worker_has_task_work(&w->ring, w->ring_disabled))
            io_uring_get_events(&w->ring); /* runs the completions' task work */
        if (i % 8 == 0)
            sched_yield(); /* writes that must allocate go to io_uring's kernel workers */
        if (i % 64 == 0 && vm_now_ns() - start > w->poll_ns)
            return false;
        __builtin_ia32_pause();
    }
}

/* One round's completions: stop, pause, notifications (into *kicked), the device's own. */
static unsigned reap(struct worker *w, bool *stopping, uint32_t *kicked, bool *armed)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        uint64_t tag = io_uring_cqe_get_data64(cqe);

        seen++;
        if (tag == TAG_STOP)
            *stopping = true;
        else if (tag == TAG_CANCEL)
            continue; /* a cancel's or a timer update's own: what it acted on completes itself */
        else if (tag == TAG_TIMER)
            w->timer_armed = false; /* the round takes work again */
        else if (tag == TAG_PAUSE)
            *armed = *armed && arm(w, w->gate.efd, &w->gate.buf, TAG_PAUSE);
        else if (tag & TAG_NOTIFY)
            *kicked |= 1U << (tag & (WORKER_MAX_NOTIFY - 1));
        else
            w->ops->complete(w->dev, tag, cqe->res);
    }
    io_uring_cq_advance(&w->ring, seen);
    return seen;
}

/*
 * Waits for work: not at all after polling found some, only a submit after
 * a take (what it took is published first). 0 to go on, else the error
 * that ends the device; the kernel's refusals for want of resources are
 * retried a while.
 */
static int wait_for_work(struct worker *w, bool polled, bool took, unsigned *transient)
{
    int r = polled ? 0 : took ? io_uring_submit(&w->ring) : io_uring_submit_and_wait(&w->ring, 1);

    if (r >= 0 || r == -EINTR) { /* liburing returns -errno; errno is not set */
        *transient = 0;
        return 0;
    }
    if ((r == -EAGAIN || r == -EBUSY || r == -ENOMEM) && ++*transient < TRANSIENT_MAX) {
        if (!io_uring_cq_ready(&w->ring))
            sched_yield();
        return 0;
    }
    return r;
}

/* The device takes new work; a corrupt queue fails it (true: broken). */
static bool take(struct worker *w, uint32_t kicked, bool polled)
{
    if (w->ops->take(w->dev, kicked, polled))
        return false;
    fail(w, "a queue is corrupt", 0);
    return true;
}

/*
 * Stopping: asks the kernel to cancel everything in flight (a request
 * waiting on a backend that does not answer, say), once. What it cannot
 * cancel (I/O already at the disk) completes on its own.
 */
static bool cancel_all(struct worker *w)
{
    struct io_uring_sqe *sqe = worker_sqe(w);

    if (!sqe)
        return false;
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, TAG_CANCEL);
    return true;
}

static void loop(struct worker *w)
{
    const struct worker_ops *o = w->ops;
    bool stopping = false, broken = false, armed = true, cancelled = false;
    unsigned transient = 0;

    for (unsigned k = 0; k < w->nnotify; k++)
        armed = armed && arm_notify(w, k);
    armed = armed && arm(w, w->stop_efd, &w->stop_buf, TAG_STOP) &&
            arm(w, w->gate.efd, &w->gate.buf, TAG_PAUSE);
    if (!armed) {
        fail(w, "cannot arm its notifications", 0);
        return;
    }
    /* Chains made available before the worker started (one restored, say) are served now. */
    broken = take(w, ALL_KICKED, false);
    bool took = true; /* what a take outside the loop took is published before any wait */

    while (!stopping || !o->idle(w->dev)) {
        uint32_t kicked = 0;
        bool polled = false;

        /* A snapshot's pause: once what is in flight is done and published (the round's end). */
        if (!stopping && o->idle(w->dev) && worker_pause_wanted(&w->gate)) {
            if (!worker_park(&w->gate))
                break; /* reset while paused: nothing in flight, nothing new taken */
            broken = broken || take(w, ALL_KICKED, false);
            took = true;
        }
        bool pausing = worker_pause_wanted(&w->gate);
        if (pausing && o->cancel && !o->idle(w->dev))
            o->cancel(w->dev, false);
        if (w->poll_ns && !stopping && !broken && !pausing)
            polled = poll_for_work(w) || o->notify_on(w->dev);
        int r = wait_for_work(w, polled, took, &transient);
        took = false;
        if (r < 0) {
            fail(w, "io_uring_enter", r);
            return;
        }
        reap(w, &stopping, &kicked, &armed);
        if (stopping && !cancelled && !o->idle(w->dev))
            cancelled = cancel_all(w);
        if (stopping && o->cancel && !o->idle(w->dev))
            o->cancel(w->dev, true);
        if (kicked && o->kicked)
            o->kicked(w->dev, kicked);
        /* Stopping: nothing new is taken, but what completed is published (a snapshot
         * saves the queues after this: the driver must see these completions). */
        pausing = worker_pause_wanted(&w->gate);
        if (!stopping && !broken) {
            /* Pausing: notifications stay consumed; the take after the pause finds their work. */
            if (!pausing)
                broken = take(w, kicked, polled);
            for (unsigned k = 0; k < w->nnotify; k++)
                if (kicked & (1U << k))
                    armed = armed && arm_notify(w, k);
        }
        if (o->publish(w->dev))
            virtio_mmio_interrupt(w->t, VIRTIO_MMIO_INT_VRING);
        if (!armed) {
            fail(w, "cannot re-arm its notifications", 0);
            return;
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int r;

    pthread_setname_np(pthread_self(), w->thread_name);
    if ((r = worker_ring_enable(&w->ring, w->ring_disabled)) < 0)
        fail(w, "cannot enable its io_uring", r);
    else
        loop(w);
    worker_gone(&w->gate);
    return NULL;
}

int worker_init(struct worker *w, unsigned sq_entries, unsigned cq_entries)
{
    int r;

    w->running = false;
    if (w->nnotify > WORKER_MAX_NOTIFY)
        return -EINVAL;
    /* The kernel wants at least as many completions as submissions; it gives twice by default. */
    if (cq_entries < 2 * sq_entries)
        cq_entries = 2 * sq_entries;
    if ((r = worker_ring_init(&w->ring, sq_entries, cq_entries, &w->ring_disabled)) < 0)
        return r;
    w->stop_efd = eventfd(0, EFD_CLOEXEC);
    if (w->stop_efd < 0) {
        r = -errno;
        io_uring_queue_exit(&w->ring);
        return r;
    }
    if ((r = worker_gate_init(&w->gate)) < 0) {
        close(w->stop_efd);
        io_uring_queue_exit(&w->ring);
    }
    return r;
}

void worker_fini(struct worker *w)
{
    worker_gate_destroy(&w->gate);
    close(w->stop_efd);
    io_uring_queue_exit(&w->ring);
}

int worker_start(struct worker *w)
{
    int r;

    w->stop_asked = false;
    w->timer_armed = false;
    r = vm_io_thread_create(w->vm, &w->thread, worker_main, w);

    w->running = r == 0;
    return r;
}

/*
 * The stop's first step, once: a paused worker let go, the stop signalled.
 * The worker then cancels what it has in flight and ends when nothing is.
 */
static void worker_ask_stop(struct worker *w)
{
    uint64_t one = 1;

    if (w->stop_asked)
        return;
    w->stop_asked = true;
    worker_quit(&w->gate); /* a VM destroyed while a snapshot holds it paused */
    if (write(w->stop_efd, &one, sizeof(one)) != sizeof(one))
        rvm_err(w->vm->hv, "%s: cannot signal the worker to stop", w->name);
}

int worker_stop_wait(struct worker *w, uint64_t timeout_ns)
{
    struct timespec deadline;
    bool gone;

    if (!w->running)
        return 0;
    worker_ask_stop(w);
    deadline = deadline_after(timeout_ns);
    pthread_mutex_lock(&w->gate.lock);
    gone = gate_wait_until(&w->gate, &w->gate.gone, NULL, &deadline);
    pthread_mutex_unlock(&w->gate.lock);
    if (!gone)
        return -ETIMEDOUT;
    pthread_join(w->thread, NULL); /* it has left its loop: this returns at once */
    w->running = false;
    worker_fini(w);
    return 0;
}

void worker_stop(struct worker *w)
{
    worker_stop_wait(w, UINT64_MAX);
}

int worker_pause_dev(struct worker *w, uint64_t timeout_ns)
{
    int r;

    if (!w->running)
        return 0;
    if ((r = worker_pause(&w->gate, timeout_ns)) == -EIO)
        rvm_err(w->vm->hv, "%s: cannot signal the worker to pause", w->name);
    else if (r == -ETIMEDOUT)
        rvm_warn(w->vm->hv, "%s: in-flight requests did not complete within %llu ms", w->name,
                 (unsigned long long)(timeout_ns / 1000000));
    return r;
}

void worker_wake_after(struct worker *w, uint64_t ns)
{
    uint64_t deadline = vm_now_ns() + ns;
    struct io_uring_sqe *sqe;

    if (w->timer_armed && deadline >= w->timer_deadline)
        return; /* the one armed comes first: the device asks again when it wakes */
    if (!(sqe = worker_sqe(w)))
        return;
    w->timer_ts.tv_sec = (long long)(ns / 1000000000ULL);
    w->timer_ts.tv_nsec = (long long)(ns % 1000000000ULL);
    if (w->timer_armed) /* sooner: the armed one moves (its update's own completion is ignored) */
        io_uring_prep_timeout_update(sqe, &w->timer_ts, TAG_TIMER, 0);
    else
        io_uring_prep_timeout(sqe, &w->timer_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, w->timer_armed ? TAG_CANCEL : TAG_TIMER);
    w->timer_armed = true;
    w->timer_deadline = deadline;
}

void worker_wake(struct worker *w)
{
    uint64_t one = 1;

    /* The pause eventfd: its read completes, is armed again, and the round takes work. */
    if (w->running && write(w->gate.efd, &one, sizeof(one)) != sizeof(one))
        rvm_err(w->vm->hv, "%s: cannot wake the worker", w->name);
}

void worker_resume_dev(struct worker *w)
{
    if (w->running)
        worker_unpause(&w->gate);
}
