/* SPDX-License-Identifier: MIT */
/*
 * KVM integration: the lifecycle's edges. Controls racing each other, called
 * from handlers and from manual loops, sinks that fail or stall, loading
 * into a running VM. Each of these once hung or killed the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "common/testutil.h"

#define FOREVER "test=pio n=4000000000"

/* Joins t within ms milliseconds; false if it is still running. */
static bool join_within(pthread_t t, int ms)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(t, NULL, &dl) == 0;
}

/* An ended VM stays ended: resume and pause refuse, wait returns the end. */
static void test_resume_after_end(void **state)
{
    struct rvm_vm_result res;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, FOREVER, NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    sleep_ms(20);
    assert_int_equal(rvm_vm_pause(t.vm), 0);
    rvm_vm_request_end(t.vm, RVM_END_POWEROFF, 0);
    assert_int_equal(rvm_vm_resume(t.vm), -EINVAL);
    assert_int_equal(rvm_vm_pause(t.vm), -EINVAL);
    assert_int_equal(rvm_vm_wait(t.vm, 5000, &res), 0);
    assert_int_equal(res.end, RVM_END_POWEROFF);
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_STOPPED);
    tvm_destroy(&t);
}

static void *stopper(void *vm)
{
    rvm_vm_stop(vm);
    return NULL;
}

/* A stop racing resumes from another thread always completes. */
static void test_stop_races_resume(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    for (int round = 0; round < 10; round++) {
        struct rvm_vm_result res;
        pthread_t th;
        struct tvm t;

        tvm_create(&t, FOREVER, NULL);
        assert_int_equal(rvm_vm_start(t.vm), 0);
        assert_int_equal(rvm_vm_pause(t.vm), 0);
        assert_int_equal(pthread_create(&th, NULL, stopper, t.vm), 0);
        do { /* hammer resume while the stop proceeds */
            rvm_vm_resume(t.vm);
            rvm_vm_result(t.vm, &res);
        } while (res.end == RVM_END_NONE);
        for (int i = 0; i < 1000; i++)
            rvm_vm_resume(t.vm);
        assert_true(join_within(th, 5000));
        assert_int_equal(rvm_vm_state(t.vm), RVM_VM_STOPPED);
        tvm_destroy(&t);
    }
}

/* Concurrent pausers both wait for the park, then both see a paused VM. */
static void *pauser(void *vm)
{
    return (void *)(intptr_t)rvm_vm_pause(vm);
}

static void test_concurrent_pause(void **state)
{
    pthread_t th[3];
    void *ret;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, FOREVER, NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, pauser, t.vm), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_int_equal((intptr_t)ret, 0);
    }
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_PAUSED);
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    tvm_destroy(&t);
}

/* Controls from inside a handler: refused with -EDEADLK, but a stop still ends the VM. */
struct from_handler {
    struct rvm_vm *vm;
    int pause_r, wait_r, stop_r, calls;
};

static int controlling_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct from_handler *h = opaque;
    (void)off, (void)size, (void)data;

    if (h->calls++ == 10) {
        h->pause_r = rvm_vm_pause(h->vm);
        h->wait_r = rvm_vm_wait(h->vm, 1000, NULL);
        h->stop_r = rvm_vm_stop(h->vm);
    }
    return 0;
}

static void test_controls_from_handler(void **state)
{
    static const struct rvm_io_ops ops = {.write = controlling_write};
    struct from_handler h = {.calls = 0};
    struct rvm_vm_result res;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, FOREVER, NULL);
    h.vm = t.vm;
    assert_int_equal(rvm_vm_map_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &ops, &h), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_wait(t.vm, 10000, &res), 0);
    assert_int_equal(h.pause_r, -EDEADLK);
    assert_int_equal(h.wait_r, -EDEADLK);
    assert_int_equal(h.stop_r, -EDEADLK);
    assert_int_equal(res.end, RVM_END_STOPPED);
    tvm_destroy(&t);
}

/* Loading a guest into a started VM is refused: it would rewrite a running guest. */
static void test_load_while_running(void **state)
{
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=hlt n=100000000", NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    sleep_ms(50);
    assert_int_equal(rvm_vm_load_pvh_file(t.vm, guest_path(), NULL, NULL), -EBUSY);
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    assert_int_equal(rvm_vm_load_pvh_file(t.vm, guest_path(), NULL, NULL), -EBUSY);
    tvm_destroy(&t);
}

/* A manual loop blocked in KVM_RUN (the guest halts) is reached by kicks and by the end. */
struct manual {
    struct rvm_vcpu *v;
    struct rvm_vm *vm;
    bool use_request_end;
    int intr;
};

static void *manual_loop(void *arg)
{
    struct manual *m = arg;
    struct rvm_vm_result res;
    struct rvm_exit e;

    for (;;) {
        if (rvm_vcpu_run(m->v, &e) < 0)
            return NULL;
        if (e.reason == RVM_EXIT_INTR) {
            m->intr++;
            rvm_vm_result(m->vm, &res);
            if (!m->use_request_end || res.end != RVM_END_NONE)
                return NULL;
            continue;
        }
        if (rvm_vcpu_dispatch(m->v, &e) != 0)
            return NULL;
    }
}

static void manual_kick(bool use_request_end)
{
    struct manual m = {.use_request_end = use_request_end};
    pthread_t th;
    struct tvm t;

    tvm_create(&t, "test=hlt n=100000000", NULL);
    m.vm = t.vm;
    assert_int_equal(rvm_vcpu_create(t.vm, 0, &m.v), 0);
    assert_int_equal(pthread_create(&th, NULL, manual_loop, &m), 0);
    sleep_ms(200); /* well inside the hlt loop: KVM_RUN does not come back by itself */
    if (use_request_end)
        rvm_vm_request_end(t.vm, RVM_END_STOPPED, 0);
    else
        assert_int_equal(rvm_vcpu_kick(m.v), 0);
    assert_true(join_within(th, 5000));
    assert_true(m.intr >= 1);
    tvm_destroy(&t);
}

static void test_manual_kick(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    manual_kick(false);
}

static void test_manual_request_end(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    manual_kick(true);
}

/* Console output into a pipe nobody reads any more: dropped; the process lives. */
static void test_uart_epipe(void **state)
{
    struct rvm_uart_config uc;
    struct rvm_vm_result res;
    struct tvm t;
    int p[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    tvm_create(&t, "test=pio n=10", NULL);
    /* A second UART on COM2 writes to the broken pipe (COM1 feeds t.con). */
    uc = (struct rvm_uart_config){.base = 0x2f8, .irq = 3, .out_fd = p[1]};
    assert_int_equal(rvm_uart_attach(t.vm, &uc, NULL), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_wait(t.vm, 10000, &res), 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    close(p[1]);
    tvm_destroy(&t);
}

/* A console reader that stalled (full pipe) cannot keep stop from returning. */
static void test_uart_stalled_sink(void **state)
{
    struct rvm_uart_config uc;
    char junk[4096] = {0};
    pthread_t th;
    struct tvm t;
    int p[2];
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(pipe(p), 0);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    while (write(p[1], junk, sizeof(junk)) > 0)
        ;
    fcntl(p[1], F_SETFL, 0); /* blocking, and full */
    memset(&t, 0, sizeof(t));
    assert_int_equal(rvm_hv_open(NULL, &t.hv), 0);
    struct rvm_vm_config c;
    rvm_vm_config_init(&c);
    c.mem.size = 64 << 20;
    assert_int_equal(rvm_vm_create(t.hv, &c, &t.vm), 0);
    uc = (struct rvm_uart_config){.out_fd = p[1]};
    assert_int_equal(rvm_uart_attach(t.vm, &uc, NULL), 0);
    assert_int_equal(rvm_debug_exit_attach(t.vm, 0), 0);
    assert_int_equal(rvm_vm_load_pvh_file(t.vm, guest_path(),
                                          &(struct rvm_pvh_params){.cmdline = "test=nope"}, NULL),
                     0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    sleep_ms(300); /* the guest's error line is blocked in write() */
    assert_int_equal(pthread_create(&th, NULL, stopper, t.vm), 0);
    assert_true(join_within(th, 5000));
    tvm_destroy(&t);
    close(p[0]);
    close(p[1]);
}

/* Handlers that refuse accesses are counted. */
static int refusing_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)opaque, (void)off, (void)size, (void)data;
    return -EIO;
}

static void test_failed_io_counted(void **state)
{
    static const struct rvm_io_ops ops = {.write = refusing_write};
    struct rvm_vcpu_stats st;
    struct rvm_vm_result res;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=pio n=25", NULL);
    assert_int_equal(rvm_vm_map_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &ops, NULL), 0);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_wait(t.vm, 10000, &res), 0);
    rvm_vcpu_stats(rvm_vm_vcpu(t.vm, 0), &st);
    assert_int_equal(st.failed_io, 25);
    tvm_destroy(&t);
}

/* An embedder's own SA_SIGINFO handler for the kick signal is kept, and kicks still work. */
static int siginfo_hits;
static void embedder_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    __atomic_add_fetch(&siginfo_hits, 1, __ATOMIC_RELAXED);
}

static void test_embedder_kick_handler_kept(void **state)
{
    int sig = SIGRTMIN + 3;
    struct rvm_hv_config hc = {.kick_signal = sig};
    struct sigaction sa = {.sa_sigaction = embedder_handler, .sa_flags = SA_SIGINFO}, now;
    struct rvm_vm_config c;
    struct rvm_vm *vm;
    struct rvm_hv *hv;
    (void)state;

    SKIP_WITHOUT_KVM();
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(sig, &sa, NULL), 0);
    assert_int_equal(rvm_hv_open(&hc, &hv), 0);
    assert_int_equal(sigaction(sig, NULL, &now), 0);
    assert_ptr_equal(now.sa_sigaction, embedder_handler);
    rvm_vm_config_init(&c);
    c.mem.size = 16 << 20;
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_vm_start(vm), 0); /* no guest: it faults or spins */
    sleep_ms(20);
    assert_int_equal(rvm_vm_stop(vm), 0); /* the kick went through the embedder's handler */
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    signal(sig, SIG_DFL);
}

static volatile sig_atomic_t signals_seen;

static void count_signal(int sig)
{
    (void)sig;
    signals_seen++;
}

struct pester {
    pthread_t target;
    int sig;
    int stop; /* __atomic */
};

static void *pester_main(void *arg)
{
    struct pester *p = arg;

    struct timespec gap = {0, 20000};

    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
        pthread_kill(p->target, p->sig);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

/*
 * An embedder's thread that takes signals (its own timers, a supervisor's
 * SIGCHLD, io_uring's task work after a snapshot: all make the kernel see
 * a signal pending) still creates VMs: KVM_CREATE_VM's EINTR, which the
 * soak met on a loaded host after a snapshot, is retried, not returned.
 */
static void test_create_while_signalled(void **state)
{
    struct sigaction sa = {.sa_handler = count_signal}; /* no SA_RESTART */
    struct pester p = {.target = pthread_self(), .sig = SIGRTMIN + 5};
    struct rvm_vm_config c;
    struct rvm_hv *hv;
    pthread_t t;
    (void)state;

    SKIP_WITHOUT_KVM();
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(p.sig, &sa, NULL), 0);
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    rvm_vm_config_init(&c);
    c.mem.size = 16 << 20;
    assert_int_equal(pthread_create(&t, NULL, pester_main, &p), 0);
    for (int i = 0; i < 200; i++) {
        struct rvm_vm *vm;
        int r = rvm_vm_create(hv, &c, &vm);

        if (r < 0)
            print_message("VM %d of 200: %d while signalled\n", i, r);
        assert_int_equal(r, 0);
        rvm_vm_destroy(vm);
    }
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    rvm_hv_close(hv);
    signal(p.sig, SIG_DFL);
    print_message("    200 VMs made under %d signals\n", (int)signals_seen);
    assert_true(signals_seen > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_after_end),
        cmocka_unit_test(test_stop_races_resume),
        cmocka_unit_test(test_concurrent_pause),
        cmocka_unit_test(test_controls_from_handler),
        cmocka_unit_test(test_load_while_running),
        cmocka_unit_test(test_manual_kick),
        cmocka_unit_test(test_manual_request_end),
        cmocka_unit_test(test_uart_epipe),
        cmocka_unit_test(test_uart_stalled_sink),
        cmocka_unit_test(test_failed_io_counted),
        cmocka_unit_test(test_embedder_kick_handler_kept),
        cmocka_unit_test(test_create_while_signalled),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
}
