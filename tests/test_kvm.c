/* SPDX-License-Identifier: MIT */
/*
 * KVM integration: the bench guest driven end to end, managed and manual,
 * with the controls exercised from other threads. Each test skips, saying
 * so, when /dev/kvm is not usable.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "../core/vm_internal.h"
#include "../guest/abi.h"
#include "common/testutil.h"

/* Runs managed to the end; asserts a clean debug exit and a RESULT for test/n. */
static void run_and_check(struct tvm *t, const char *test, uint64_t n)
{
    struct rvm_vm_result res;
    char want[64];
    uint64_t got_n, cycles;

    assert_int_equal(rvm_vm_start(t->vm), 0);
    assert_int_equal(rvm_vm_wait(t->vm, 120000, &res), 0);
    if (res.end != RVM_END_DEBUG_EXIT || res.value != 0)
        print_message("guest said: %s\nlast log: %s\n", t->con.buf, t->log.last);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, BG_EXIT_OK);
    assert_int_equal(res.qemu_status, 1);
    snprintf(want, sizeof(want), "RESULT test=%s ", test);
    assert_non_null(strstr(t->con.buf, want));
    assert_int_equal(bg_result_value(t->con.buf, "n", &got_n), 0);
    assert_int_equal(got_n, n);
    assert_int_equal(bg_result_value(t->con.buf, "cycles", &cycles), 0);
    assert_true(cycles > 0);
    assert_int_equal(rvm_vm_state(t->vm), RVM_VM_STOPPED);
}

static void workload(const char *test, uint64_t n)
{
    struct tvm t;
    char cmd[64];

    snprintf(cmd, sizeof(cmd), "test=%s n=%llu", test, (unsigned long long)n);
    tvm_create(&t, cmd, NULL);
    run_and_check(&t, test, n);
    tvm_destroy(&t);
}

static void test_pio(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    workload("pio", 500);
}

static void test_mmio(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    workload("mmio", 500);
}

static void test_hlt(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    workload("hlt", 200);
}

/* With an eventfd bound, the guest's writes signal it and never reach user space. */
static void ioeventfd_workload(const char *test, enum rvm_bus_kind bus, uint64_t addr)
{
    struct rvm_vcpu_stats st;
    struct tvm t;
    uint64_t count = 0;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    char cmd[64];

    snprintf(cmd, sizeof(cmd), "test=%s n=300", test);
    tvm_create(&t, cmd, NULL);
    assert_true(efd >= 0);
    assert_int_equal(rvm_vm_add_ioeventfd(t.vm, bus, addr, 4, false, 0, efd), 0);
    run_and_check(&t, test, 300);
    assert_int_equal(read(efd, &count, sizeof(count)), sizeof(count));
    assert_int_equal(count, 300);
    rvm_vcpu_stats(rvm_vm_vcpu(t.vm, 0), &st);
    /* Only console and exit traffic reached user space: far fewer than 300 exits. */
    assert_true(st.exits[bus == RVM_BUS_PIO ? RVM_EXIT_IO_OUT : RVM_EXIT_MMIO_WRITE] < 250);
    assert_int_equal(rvm_vm_remove_ioeventfd(t.vm, bus, addr, 4, false, 0, efd), 0);
    close(efd);
    tvm_destroy(&t);
}

static void test_ioeventfd_pio(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    ioeventfd_workload("ioeventfd-pio", RVM_BUS_PIO, BG_IOEVENTFD_PIO_PORT);
}

static void test_ioeventfd_mmio(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    ioeventfd_workload("ioeventfd-mmio", RVM_BUS_MMIO, BG_IOEVENTFD_MMIO_ADDR);
}

static void test_bad_test_name(void **state)
{
    struct rvm_vm_result res;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=nope", NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_wait(t.vm, 60000, &res), 0);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, BG_EXIT_UNKNOWN_TEST);
    assert_int_equal(res.qemu_status, (BG_EXIT_UNKNOWN_TEST << 1) | 1);
    assert_non_null(strstr(t.con.buf, "ERROR unknown test=nope"));
    tvm_destroy(&t);
}

/* Manual execution: the embedder sees every exit and answers port reads itself. */
static void test_manual_every_exit(void **state)
{
    struct rvm_vcpu *v;
    struct rvm_exit e;
    struct tvm t;
    char out[256] = "";
    size_t len = 0;
    int bench_exits = 0, done = 0;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=pio n=64", NULL);
    assert_int_equal(rvm_vcpu_create(t.vm, 0, &v), 0);
    assert_int_equal(rvm_vcpu_create(t.vm, 0, &v), -EEXIST);
    assert_int_equal(rvm_vcpu_create(t.vm, 1, NULL), -EINVAL); /* the config has 1 vCPU */
    while (!done) {
        assert_int_equal(rvm_vcpu_run(v, &e), 0);
        switch (e.reason) {
        case RVM_EXIT_IO_OUT:
            if (e.u.io.port == BG_PIO_PORT) {
                assert_int_equal(e.u.io.size, 4);
                assert_int_equal(e.u.io.data, (uint64_t)bench_exits); /* the iteration index */
                bench_exits++;
            } else if (e.u.io.port == BG_COM1_BASE && len < sizeof(out) - 1) {
                out[len++] = (char)e.u.io.data;
            } else if (e.u.io.port == BG_DEBUG_EXIT_PORT) {
                assert_int_equal(e.u.io.data, 0);
                done = 1;
            }
            assert_int_equal(rvm_vcpu_set_io_result(v, 0), -EINVAL); /* not a read */
            break;
        case RVM_EXIT_IO_IN:
            /* LSR: transmitter empty. Everything else reads as ones. */
            assert_int_equal(
                rvm_vcpu_set_io_result(v, e.u.io.port == BG_COM1_BASE + 5 ? 0x60 : 0xff), 0);
            break;
        case RVM_EXIT_INTR:
            break;
        default:
            fail_msg("unexpected exit %s", rvm_exit_reason_name(e.reason));
        }
    }
    assert_int_equal(bench_exits, 64);
    assert_non_null(strstr(out, "RESULT test=pio n=64 "));
    assert_string_equal(rvm_exit_reason_name(RVM_EXIT_MMIO_WRITE), "mmio-write");
    tvm_destroy(&t);
}

/* Manual execution with the VM's buses doing the work: dispatch ends the loop. */
static void test_manual_dispatch(void **state)
{
    struct rvm_vm_result res;
    struct kvm_regs regs;
    struct rvm_vcpu *v;
    struct rvm_exit e;
    struct tvm t;
    int r = 0;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=mmio n=32", NULL);
    assert_int_equal(rvm_vcpu_create(t.vm, 0, &v), 0);
    assert_int_equal(rvm_vcpu_get_regs(v, &regs), 0);
    assert_int_equal(regs.rbx, RVM_PVH_INFO_GPA); /* PVH entry state applied at creation */
    while (r == 0) {
        assert_int_equal(rvm_vcpu_run(v, &e), 0);
        r = rvm_vcpu_dispatch(v, &e);
    }
    assert_int_equal(r, 1);
    rvm_vm_result(t.vm, &res);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    tvm_destroy(&t); /* flushes the UART */
    assert_non_null(strstr(t.con.buf, "RESULT test=mmio n=32 "));
}

static uint64_t exits_of(struct rvm_vm *vm)
{
    struct rvm_vcpu_stats st;
    uint64_t n = 0;

    rvm_vcpu_stats(rvm_vm_vcpu(vm, 0), &st);
    for (int i = 0; i < RVM_EXIT__COUNT; i++)
        n += st.exits[i];
    return n;
}

/* Pause, resume and stop from this thread while the vCPU thread runs the guest. */
static void test_pause_resume_stop(void **state)
{
    struct rvm_vm_result res;
    struct tvm t;
    uint64_t a, b;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=pio n=4000000000", NULL);
    assert_int_equal(rvm_vm_pause(t.vm), -EINVAL); /* not running yet */
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_start(t.vm), -EBUSY);
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_RUNNING);
    sleep_ms(100);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(rvm_vm_pause(t.vm), 0);
        assert_int_equal(rvm_vm_pause(t.vm), 0); /* idempotent */
        assert_int_equal(rvm_vm_state(t.vm), RVM_VM_PAUSED);
        a = exits_of(t.vm);
        sleep_ms(50);
        b = exits_of(t.vm);
        assert_int_equal(a, b); /* parked: no guest progress */
        assert_int_equal(rvm_vm_resume(t.vm), 0);
        assert_int_equal(rvm_vm_resume(t.vm), -EINVAL);
        sleep_ms(50);
        assert_true(exits_of(t.vm) > b);
    }
    assert_int_equal(rvm_vm_wait(t.vm, 0, &res), -ETIMEDOUT);
    assert_int_equal(res.end, RVM_END_NONE);
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    assert_int_equal(rvm_vm_stop(t.vm), 0); /* twice is fine */
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_STOPPED);
    rvm_vm_result(t.vm, &res);
    assert_int_equal(res.end, RVM_END_STOPPED);
    assert_int_equal(rvm_vm_start(t.vm), -EBUSY);
    tvm_destroy(&t);
}

/* Stopping a paused VM must wake its parked threads and join them. */
static void test_stop_while_paused(void **state)
{
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=pio n=4000000000", NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    sleep_ms(20);
    assert_int_equal(rvm_vm_pause(t.vm), 0);
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    assert_int_equal(rvm_vm_state(t.vm), RVM_VM_STOPPED);
    tvm_destroy(&t);
}

struct two {
    const char *cmd;
    struct tvm t;
};

static void *run_one(void *arg)
{
    struct two *w = arg;
    struct rvm_vm_result res;

    if (rvm_vm_start(w->t.vm) < 0 || rvm_vm_wait(w->t.vm, 120000, &res) < 0)
        return (void *)1;
    return res.end == RVM_END_DEBUG_EXIT && res.value == 0 ? NULL : (void *)1;
}

/* Two VMs in one process at once, each with its own hypervisor handle and output. */
static void test_two_vms(void **state)
{
    struct two w[2] = {{.cmd = "test=pio n=300"}, {.cmd = "test=mmio n=200"}};
    pthread_t th[2];
    void *ret;
    uint64_t n;
    (void)state;

    SKIP_WITHOUT_KVM();
    for (int i = 0; i < 2; i++)
        tvm_create(&w[i].t, w[i].cmd, NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, run_one, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_null(ret);
    }
    assert_non_null(strstr(w[0].t.con.buf, "RESULT test=pio n=300 "));
    assert_null(strstr(w[0].t.con.buf, "mmio"));
    assert_non_null(strstr(w[1].t.con.buf, "RESULT test=mmio n=200 "));
    assert_int_equal(bg_result_value(w[1].t.con.buf, "n", &n), 0);
    assert_int_equal(n, 200);
    for (int i = 0; i < 2; i++)
        tvm_destroy(&w[i].t);
}

static int last_cpu(void)
{
    cpu_set_t set;
    int cpu = 0;

    sched_getaffinity(0, sizeof(set), &set);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpu = i;
    return cpu;
}

/* vCPU threads are pinned where the config says, read back from the running threads. */
static void test_pinned_affinity(void **state)
{
    struct rvm_vm_config c;
    cpu_set_t set;
    struct tvm t;
    int hi = last_cpu();
    (void)state;

    SKIP_WITHOUT_KVM();
    rvm_vm_config_init(&c);
    c.mem.size = 64 << 20;
    c.vcpus = 2;
    c.n_cpus = 2;
    c.cpus[0] = hi; /* reversed, so that the mapping is visible */
    c.cpus[1] = 0;
    tvm_create(&t, "test=pio n=4000000000", &c);
    assert_null(rvm_vm_vcpu(t.vm, 0));
    assert_int_equal(rvm_vcpu_create(t.vm, 0, NULL), 0); /* start creates only vCPU 1 */
    assert_int_equal(rvm_vcpu_thread_affinity(rvm_vm_vcpu(t.vm, 0), &set), -ESRCH);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    assert_int_equal(rvm_vm_vcpu_count(t.vm), 2);
    assert_int_equal(rvm_vcpu_thread_affinity(rvm_vm_vcpu(t.vm, 0), &set), 0);
    assert_int_equal(CPU_COUNT(&set), 1);
    assert_true(CPU_ISSET(hi, &set));
    assert_int_equal(rvm_vcpu_thread_affinity(rvm_vm_vcpu(t.vm, 1), &set), 0);
    assert_int_equal(CPU_COUNT(&set), 1);
    assert_true(CPU_ISSET(0, &set));
    /* vCPU 1 waits for a SIPI inside KVM_RUN; stop must still get it out. */
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    tvm_destroy(&t);
}

/* An injected two-node topology: vCPUs land on the CPUs of the node asked for. */
static int fake_nodes(void *opaque, int node, void *cpus)
{
    cpu_set_t *set = cpus;
    int hi = *(int *)opaque;

    if (node > 1)
        return -EINVAL;
    CPU_ZERO(set);
    CPU_SET(node == 0 ? 0 : hi, set);
    return 0;
}

static void test_numa_node_pinning(void **state)
{
    int hi = last_cpu();
    struct rvm_hv_config hc = {.node_cpus = fake_nodes, .node_cpus_opaque = &hi};
    struct rvm_vm_config c;
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    cpu_set_t set;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(rvm_hv_open(&hc, &hv), 0);
    rvm_vm_config_init(&c);
    c.mem.size = 16 << 20;
    c.mem.numa_node = 0; /* memory on the real node; CPUs from the injected one */
    c.numa_node = 1;
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_vm_start(vm), 0); /* no guest loaded: it faults or spins, pinned */
    assert_int_equal(rvm_vcpu_thread_affinity(rvm_vm_vcpu(vm, 0), &set), 0);
    assert_int_equal(CPU_COUNT(&set), 1);
    assert_true(CPU_ISSET(hi, &set));
    rvm_vm_destroy(vm);

    c.numa_node = 7; /* no such node in the injected topology */
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_vm_start(vm), -EINVAL);
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

/* Bus ranges come and go while a vCPU dispatches through the bus. */
static int count_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    (void)off, (void)size, (void)data;
    __atomic_add_fetch((uint64_t *)opaque, 1, __ATOMIC_RELAXED);
    return 0;
}

static void test_bus_changes_while_running(void **state)
{
    static const struct rvm_io_ops ops = {.write = count_write};
    uint64_t hits = 0;
    struct tvm t;
    (void)state;

    SKIP_WITHOUT_KVM();
    tvm_create(&t, "test=pio n=4000000000", NULL);
    assert_int_equal(rvm_vm_start(t.vm), 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(rvm_vm_map_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &ops, &hits), 0);
        assert_int_equal(rvm_vm_map_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &ops, &hits), -EEXIST);
        sleep_ms(1);
        assert_int_equal(rvm_vm_unmap_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT), 0);
    }
    assert_int_equal(rvm_vm_unmap_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT), -ENOENT);
    uint64_t seen = __atomic_load_n(&hits, __ATOMIC_RELAXED);
    sleep_ms(20);
    /* Unmapped: no handler call can still be in flight or start now. */
    assert_int_equal(__atomic_load_n(&hits, __ATOMIC_RELAXED), seen);
    assert_true(seen > 0);
    assert_int_equal(rvm_vm_stop(t.vm), 0);
    tvm_destroy(&t);
}

/* A device that moves another range around from inside its own handler. */
struct remapper {
    struct rvm_vm *vm;
    uint64_t writes;
    int errors;
};

static int remap_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    static const struct rvm_io_ops none = {NULL, NULL};
    struct remapper *m = opaque;
    (void)off, (void)size, (void)data;

    /* Map 0x700 on even writes, unmap it on odd ones. */
    int r = (m->writes++ % 2) ? rvm_vm_unmap_io(m->vm, RVM_BUS_PIO, 0x700)
                              : rvm_vm_map_io(m->vm, RVM_BUS_PIO, 0x700, 4, &none, NULL);
    if (r < 0)
        m->errors++;
    return 0;
}

static void remap_from_handler(bool managed)
{
    static const struct rvm_io_ops ops = {.write = remap_write};
    struct remapper m = {.writes = 0};
    struct rvm_vm_result res;
    struct tvm t;

    tvm_create(&t, "test=pio n=301", NULL);
    m.vm = t.vm;
    assert_int_equal(rvm_vm_map_io(t.vm, RVM_BUS_PIO, BG_PIO_PORT, 4, &ops, &m), 0);
    if (managed) {
        assert_int_equal(rvm_vm_start(t.vm), 0);
        assert_int_equal(rvm_vm_wait(t.vm, 60000, &res), 0); /* a self-wait would hang here */
    } else {
        struct rvm_vcpu *v;
        struct rvm_exit e;
        int r = 0;

        assert_int_equal(rvm_vcpu_create(t.vm, 0, &v), 0);
        while (r == 0) {
            assert_int_equal(rvm_vcpu_run(v, &e), 0);
            r = rvm_vcpu_dispatch(v, &e);
        }
        rvm_vm_result(t.vm, &res);
    }
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(m.writes, 301);
    assert_int_equal(m.errors, 0);
    /* 301 writes: the last one mapped it, and it is there. */
    assert_int_equal(rvm_vm_unmap_io(t.vm, RVM_BUS_PIO, 0x700), 0);
    tvm_destroy(&t); /* frees the tables retired from the handler (ASan checks) */
}

static void test_remap_from_handler_managed(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    remap_from_handler(true);
}

static void test_remap_from_handler_manual(void **state)
{
    (void)state;
    SKIP_WITHOUT_KVM();
    remap_from_handler(false);
}

static void test_load_errors(void **state)
{
    struct rvm_vm_config c;
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    rvm_vm_config_init(&c);
    c.mem.size = 16 << 20;
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    assert_int_equal(rvm_vm_load_pvh_file(vm, "/nonexistent/kernel", NULL, NULL), -ENOENT);
    assert_int_equal(rvm_vm_load_pvh_file(vm, "/proc/self/status", NULL, NULL), -ENOEXEC);
    assert_int_equal(rvm_vm_wait(vm, 0, NULL), -EINVAL); /* never started */
    rvm_vm_destroy(vm);
    c.vcpus = 100000;
    assert_int_equal(rvm_vm_create(hv, &c, &vm), -EINVAL);
    rvm_hv_close(hv);
}

static void test_caps(void **state)
{
    struct rvm_hv_caps caps;
    struct rvm_hv *hv;
    (void)state;

    SKIP_WITHOUT_KVM();
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_int_equal(rvm_hv_caps(hv, &caps), 0);
    assert_int_equal(caps.api_version, 12);
    assert_true(caps.max_vcpus >= 1);
    assert_true(caps.ioeventfd && caps.irqfd && caps.irqchip && caps.immediate_exit);
    assert_true(caps.numa_nodes >= 1);
    if (caps.dirty_ring)
        assert_true(caps.dirty_ring_max_bytes >= 4096);
    rvm_hv_close(hv);
    assert_true(rvm_version() == RINGVM_VERSION);
}

static void test_no_kvm_device(void **state)
{
    struct logbuf log = {.count = 0};
    struct rvm_hv_config hc = {.kvm_path = "/nonexistent/kvm",
                               .log = log_to_buf,
                               .log_opaque = &log,
                               .log_level = RVM_LOG_ERROR};
    struct rvm_hv *hv = NULL;
    (void)state;

    assert_int_equal(rvm_hv_open(&hc, &hv), -ENOENT);
    assert_null(hv);
    assert_int_equal(log.count, 1);
    assert_non_null(strstr(log.last, "/nonexistent/kvm"));
}

/* The entry for function f (subleaf idx) of a vCPU's CPUID, or NULL. */
static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t f, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == f && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

/* Each vCPU's CPUID says the VM's topology: its APIC ID, three cores in one package. */
static void test_cpuid_topology(void **state)
{
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_vm_config c;
    (void)state;

    SKIP_WITHOUT_KVM();
    rvm_vm_config_init(&c);
    c.mem.size = 16 << 20;
    c.vcpus = 2;
    assert_int_equal(rvm_hv_open(NULL, &hv), 0);
    assert_int_equal(rvm_vm_create(hv, &c, &vm), 0);
    for (uint32_t id = 0; id < 2; id++) {
        struct rvm_vcpu *v;
        struct kvm_cpuid2 *cp = calloc(1, sizeof(*cp) + 256 * sizeof(cp->entries[0]));

        assert_int_equal(rvm_vcpu_create(vm, id, &v), 0);
        cp->nent = 256;
        assert_int_equal(ioctl(v->fd, KVM_GET_CPUID2, cp), 0);
        const struct kvm_cpuid_entry2 *e = leaf(cp, 1, 0);
        assert_non_null(e);
        assert_int_equal(e->ebx >> 24, id);         /* initial APIC ID */
        assert_int_equal((e->ebx >> 16) & 0xff, 2); /* logical processors */
        assert_true(e->ecx & (1U << 31));           /* hypervisor */
        assert_non_null(leaf(cp, 0x40000000, 0));   /* KVM's paravirtual leaves */
        /*
         * Leaf 0xb, wherever the basic leaves reach it: all three levels, even on
         * a KVM that lists only the first (then a guest saw a package per vCPU).
         */
        if (leaf(cp, 0, 0)->eax >= 0xb) {
            assert_non_null(e = leaf(cp, 0xb, 1));
            assert_int_equal(e->eax & 0x1f, 1);        /* APIC ID bits below the package */
            assert_int_equal(e->ebx & 0xffff, 2);      /* cores at the core level */
            assert_int_equal((e->ecx >> 8) & 0xff, 2); /* level type: core */
            assert_int_equal(e->edx, id);              /* x2APIC ID */
            assert_non_null(e = leaf(cp, 0xb, 0));
            assert_int_equal(e->ebx & 0xffff, 1); /* one thread per core */
            assert_int_equal((e->ecx >> 8) & 0xff, 1);
            assert_non_null(e = leaf(cp, 0xb, 2));
            assert_int_equal((e->ecx >> 8) & 0xff, 0); /* the end of the levels */
            assert_int_equal(e->ebx & 0xffff, 0);
        }
        if ((e = leaf(cp, 0x80000008, 0)))
            assert_int_equal(e->ecx & 0xff, 1); /* cores - 1 */
        free(cp);
    }
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_kvm_device),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_cpuid_topology),
        cmocka_unit_test(test_pio),
        cmocka_unit_test(test_mmio),
        cmocka_unit_test(test_ioeventfd_pio),
        cmocka_unit_test(test_ioeventfd_mmio),
        cmocka_unit_test(test_hlt),
        cmocka_unit_test(test_bad_test_name),
        cmocka_unit_test(test_manual_every_exit),
        cmocka_unit_test(test_manual_dispatch),
        cmocka_unit_test(test_pause_resume_stop),
        cmocka_unit_test(test_stop_while_paused),
        cmocka_unit_test(test_two_vms),
        cmocka_unit_test(test_pinned_affinity),
        cmocka_unit_test(test_numa_node_pinning),
        cmocka_unit_test(test_bus_changes_while_running),
        cmocka_unit_test(test_remap_from_handler_managed),
        cmocka_unit_test(test_remap_from_handler_manual),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests_name("kvm", tests, NULL, NULL);
}
