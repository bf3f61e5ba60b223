/* SPDX-License-Identifier: MIT */
/*
 * The 16550A UART and the debug-exit port, register by register, through the
 * VM's port bus exactly as guest accesses are dispatched (needs a KVM VM for
 * the interrupt line).
 */
#include <errno.h>
#include <string.h>

#include "../core/vm_internal.h"
#include "common/testutil.h"

#define COM1 0x3f8
enum { THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct fx {
    struct rvm_hv *hv;
    struct rvm_vm *vm;
    struct rvm_uart *uart;
    struct console con;
};

static int setup(void **state)
{
    static struct fx f;
    struct rvm_uart_config uc = {.out = console_out, .out_opaque = &f.con};

    if (!kvm_usable()) {
        *state = NULL;
        return 0;
    }
    memset(&f, 0, sizeof(f));
    if (kvm_fixture_open(&f.hv, &f.vm, 4 << 20) < 0 || rvm_uart_attach(f.vm, &uc, &f.uart) < 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f)
        kvm_fixture_close(f->hv, f->vm);
    return 0;
}

static uint8_t rd(struct fx *f, int reg)
{
    uint64_t v = 0;

    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, COM1 + reg, 1, false, &v), 0);
    return (uint8_t)v;
}

static void wr(struct fx *f, int reg, uint8_t val)
{
    uint64_t v = val;

    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, COM1 + reg, 1, true, &v), 0);
}

static void test_output_is_line_buffered(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    assert_int_equal(rd(f, LSR) & 0x60, 0x60); /* THR empty, transmitter empty */
    wr(f, THR, 'h');
    wr(f, THR, 'i');
    assert_int_equal(f->con.len, 0); /* held until the end of the line */
    wr(f, THR, '\n');
    assert_string_equal(f->con.buf, "hi\n");
    wr(f, THR, '!');
    rvm_uart_flush(f->uart);
    assert_string_equal(f->con.buf, "hi\n!");
}

static void test_divisor_latch_and_scratch(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    wr(f, LCR, 0x83); /* DLAB, 8N1 */
    wr(f, THR, 0x01); /* DLL: 115200 baud */
    wr(f, IER, 0x00); /* DLM */
    assert_int_equal(rd(f, THR), 0x01);
    assert_int_equal(rd(f, IER), 0x00);
    assert_int_equal(f->con.len, 0); /* a DLL write is not output */
    wr(f, LCR, 0x03);
    assert_int_equal(rd(f, LCR), 0x03);
    wr(f, SCR, 0xa5);
    assert_int_equal(rd(f, SCR), 0xa5);
}

static void test_thre_interrupt(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;

    assert_int_equal(rd(f, IIR) & 0x0f, 0x01); /* nothing pending */
    wr(f, MCR, 0x08);                          /* OUT2: the line reaches the PIC */
    wr(f, IER, 0x02);                          /* THRE interrupt on: pending at once */
    assert_int_equal(rd(f, IIR) & 0x0f, 0x02);
    assert_int_equal(rd(f, IIR) & 0x0f, 0x01); /* the IIR read acknowledged it */
    wr(f, THR, 'x');                           /* sent at once: THR empty again */
    assert_int_equal(rd(f, IIR) & 0x0f, 0x02);
    wr(f, IIR, 0x07); /* FCR: FIFOs on */
    assert_int_equal(rd(f, IIR) & 0xc0, 0xc0);
}

static void test_loopback_and_input(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    uint8_t big[100];

    wr(f, MCR, 0x10 | 0x02 | 0x01);            /* loopback, RTS, DTR */
    assert_int_equal(rd(f, MSR) & 0xf0, 0x30); /* CTS, DSR follow RTS, DTR */
    wr(f, THR, 'L');
    assert_int_equal(f->con.len, 0); /* looped back, not sent */
    assert_int_equal(rd(f, LSR) & 0x01, 0x01);
    assert_int_equal(rd(f, THR), 'L');
    assert_int_equal(rd(f, LSR) & 0x01, 0x00);
    wr(f, MCR, 0x08);
    assert_int_equal(rd(f, MSR), 0xb0);

    assert_int_equal(rvm_uart_input(f->uart, "ok", 2), 0);
    wr(f, IER, 0x01); /* received-data interrupt */
    assert_int_equal(rd(f, IIR) & 0x0f, 0x04);
    assert_int_equal(rd(f, THR), 'o');
    assert_int_equal(rd(f, THR), 'k');
    assert_int_equal(rd(f, LSR) & 0x01, 0x00);
    assert_int_equal(rd(f, IIR) & 0x0f, 0x01);
    memset(big, 'z', sizeof(big));
    assert_int_equal(rvm_uart_input(f->uart, big, sizeof(big)), -EAGAIN); /* FIFO is 64 */
}

/* Accesses a 16550 does not have: wide ones read as ones and change nothing. */
static void test_odd_accesses(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    uint64_t v = 0;

    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, COM1 + SCR, 2, false, &v), -ENOENT);
    assert_int_equal(v, ~0ULL); /* straddles the end of the range: nobody claims it */
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, COM1, 4, false, &v), -EIO);
    assert_int_equal(v, ~0ULL); /* claimed, refused by the device */
    v = 'w';
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, COM1, 2, true, &v), -EIO);
    rvm_uart_flush(f->uart);
    assert_int_equal(f->con.len, 0);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, 0x2f8, 1, false, &v), -ENOENT); /* COM2 */
}

static void test_debug_exit(void **state)
{
    NEED_KVM(state);
    struct fx *f = *state;
    struct rvm_vm_result res;
    uint64_t v = 0x21;

    assert_int_equal(rvm_debug_exit_attach(f->vm, 0), 0);
    assert_int_equal(rvm_debug_exit_attach(f->vm, 0), -EEXIST);
    rvm_vm_result(f->vm, &res);
    assert_int_equal(res.end, RVM_END_NONE);
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, 0xf4, 4, true, &v), 0);
    rvm_vm_result(f->vm, &res);
    assert_int_equal(res.end, RVM_END_DEBUG_EXIT);
    assert_int_equal(res.value, 0x21);
    assert_int_equal(res.qemu_status, 0x43);
    v = 5; /* the first end wins */
    assert_int_equal(vm_io_access(f->vm, RVM_BUS_PIO, 0xf4, 1, true, &v), 0);
    rvm_vm_result(f->vm, &res);
    assert_int_equal(res.value, 0x21);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_output_is_line_buffered),
        T(test_divisor_latch_and_scratch),
        T(test_thre_interrupt),
        T(test_loopback_and_input),
        T(test_odd_accesses),
        T(test_debug_exit),
    };
    return cmocka_run_group_tests_name("uart", tests, NULL, NULL);
}
