/* SPDX-License-Identifier: MIT */
/*
 * A 16550A UART on the port-I/O bus. Transmission is instantaneous (THR is
 * always empty again by the next access), so the transmitter-empty interrupt
 * is pending whenever it is enabled and not acknowledged by an IIR read.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ringvm/snapshot.h>
#include <ringvm/devices.h>
#include <ringvm/vm.h>

#include "../core/snaprec.h"
#include "../core/vm_internal.h"

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define IER_RDA      0x01 /* received data available */
#define IER_THRE     0x02 /* transmitter holding register empty */
#define IIR_NONE     0x01
#define IIR_THRE     0x02
#define IIR_RDA      0x04
#define IIR_FIFO     0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB     0x80
#define LSR_DR       0x01
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MCR_OUT2     0x08
#define MCR_LOOP     0x10
#define MSR_DEFAULT  0xb0 /* DCD, DSR, CTS */

#define RX_SIZE  64
#define OUT_SIZE 256

struct rvm_uart {
    struct rvm_vm *vm;
    pthread_mutex_t lock;
    uint16_t base;
    uint32_t irq;
    rvm_uart_out_fn out;
    void *out_opaque;
    int out_fd;

    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending; /* THRE interrupt not yet acknowledged */
    bool irq_level;
    uint8_t rx[RX_SIZE];
    unsigned rx_head, rx_count;
    char obuf[OUT_SIZE];
    size_t olen;
    bool flush; /* obuf holds a line (or is full): emit it after unlocking */
};

/*
 * Hands guest output to the sink. Called without u->lock, so that a slow or
 * blocked sink stalls only this vCPU's handler, not the device. A write
 * interrupted by a kick is retried while the VM runs and dropped once it is
 * ending, so a stalled reader cannot keep stop or pause waiting; output the
 * sink refuses (EPIPE, EIO, EAGAIN) is dropped, and the guest goes on.
 * Lines are written one write() at a time, so a short write to a full pipe
 * is finished before the next line starts.
 */
/*
 * write() that cannot raise SIGPIPE in the calling thread, whichever it is (a
 * vCPU thread, or an embedder's thread flushing at the end): SIGPIPE is
 * blocked around the write, and one this write caused is consumed.
 */
static ssize_t write_nosigpipe(int fd, const void *p, size_t n)
{
    const struct timespec zero = {0, 0};
    sigset_t pipe_set, old, pending;
    ssize_t w;
    int err, was_pending;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    w = write(fd, p, n);
    err = errno;
    if (w < 0 && err == EPIPE && !was_pending)
        sigtimedwait(&pipe_set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return w;
}

static void emit(struct rvm_uart *u, const char *p, size_t n)
{
    if (u->out) {
        u->out(u->out_opaque, p, n);
        return;
    }
    while (u->out_fd > 0 && n > 0) {
        ssize_t w = write_nosigpipe(u->out_fd, p, n);

        if (w < 0 && errno == EINTR &&
            __atomic_load_n(&u->vm->run_state, __ATOMIC_ACQUIRE) == RUN_GO)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Moves buffered output into out (OUT_SIZE bytes) for emit() after unlocking. */
static size_t take_output_locked(struct rvm_uart *u, char *out)
{
    size_t n = u->olen;

    memcpy(out, u->obuf, n);
    u->olen = 0;
    u->flush = false;
    return n;
}

/* Appends one transmitted byte; asks for a flush at a newline or a full buffer. */
static void transmit(struct rvm_uart *u, uint8_t c)
{
    if (u->mcr & MCR_LOOP) {
        if (u->rx_count < RX_SIZE)
            u->rx[(u->rx_head + u->rx_count++) % RX_SIZE] = c;
        return;
    }
    u->obuf[u->olen++] = (char)c;
    if (c == '\n' || u->olen == OUT_SIZE)
        u->flush = true;
}

static uint8_t iir(const struct rvm_uart *u)
{
    uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

    if ((u->ier & IER_RDA) && u->rx_count)
        return IIR_RDA | fifo;
    if ((u->ier & IER_THRE) && u->thre_pending)
        return IIR_THRE | fifo;
    return IIR_NONE | fifo;
}

static void update_irq(struct rvm_uart *u)
{
    bool level = !(iir(u) & IIR_NONE) && (u->mcr & MCR_OUT2);

    if (level != u->irq_level) {
        u->irq_level = level;
        rvm_vm_set_irq(u->vm, u->irq, level);
    }
}

static int uart_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    struct rvm_uart *u = opaque;
    uint8_t v = 0;

    if (size != 1)
        return -EINVAL;
    pthread_mutex_lock(&u->lock);
    switch (off) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
        } else if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % RX_SIZE;
            u->rx_count--;
        }
        break;
    case IER:
        v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
        break;
    case IIR_FCR:
        v = iir(u);
        if ((v & 0x0f) == IIR_THRE)
            u->thre_pending = false; /* reading IIR acknowledges THRE */
        break;
    case LCR:
        v = u->lcr;
        break;
    case MCR:
        v = u->mcr;
        break;
    case LSR:
        v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
        break;
    case MSR:
        if (u->mcr & MCR_LOOP) /* CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2 */
            v = (uint8_t)(((u->mcr & 0x02) << 3) | ((u->mcr & 0x01) << 5) | ((u->mcr & 0x04) << 4) |
                          ((u->mcr & 0x08) << 4));
        else
            v = MSR_DEFAULT;
        break;
    case SCR:
        v = u->scr;
        break;
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    *data = v;
    return 0;
}

static int uart_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct rvm_uart *u = opaque;
    uint8_t v = (uint8_t)data;
    char line[OUT_SIZE];
    size_t n = 0;

    if (size != 1)
        return -EINVAL;
    pthread_mutex_lock(&u->lock);
    switch (off) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
        } else {
            transmit(u, v);
            u->thre_pending = true;
        }
        break;
    case IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
        } else {
            /* Enabling THRE with an empty transmitter raises it at once. */
            if ((v & IER_THRE) && !(u->ier & IER_THRE))
                u->thre_pending = true;
            u->ier = v & 0x0f;
        }
        break;
    case IIR_FCR:
        u->fcr = v & 0xc9;
        if (v & FCR_CLEAR_RX)
            u->rx_count = 0;
        break;
    case LCR:
        u->lcr = v;
        break;
    case MCR:
        u->mcr = v & 0x1f;
        break;
    case SCR:
        u->scr = v;
        break;
    default: /* LSR and MSR are read-only */
        break;
    }
    update_irq(u);
    if (u->flush)
        n = take_output_locked(u, line);
    pthread_mutex_unlock(&u->lock);
    if (n)
        emit(u, line, n);
    return 0;
}

static const struct rvm_io_ops uart_ops = {.read = uart_read, .write = uart_write};

void rvm_uart_flush(struct rvm_uart *u)
{
    char line[OUT_SIZE];
    size_t n;

    pthread_mutex_lock(&u->lock);
    n = take_output_locked(u, line);
    pthread_mutex_unlock(&u->lock);
    if (n)
        emit(u, line, n);
}

int rvm_uart_input(struct rvm_uart *u, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int r = 0;

    pthread_mutex_lock(&u->lock);
    if (len > RX_SIZE - u->rx_count) {
        r = -EAGAIN;
    } else {
        for (size_t i = 0; i < len; i++)
            u->rx[(u->rx_head + u->rx_count++) % RX_SIZE] = p[i];
        update_irq(u);
    }
    pthread_mutex_unlock(&u->lock);
    return r;
}

static void uart_on_end(void *dev)
{
    rvm_uart_flush(dev);
}

static void uart_destroy(void *dev)
{
    struct rvm_uart *u = dev;

    rvm_uart_flush(u);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

/* The registers and the receive FIFO (buffered output is flushed, not saved). */
struct uart_state {
    uint16_t base;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm, thre_pending, irq_level, rx_count, pad[3];
    uint32_t irq;
    uint8_t rx[RX_SIZE];
};

static int uart_save(void *dev, struct recbuf *b, uint32_t index)
{
    struct rvm_uart *u = dev;
    struct uart_state s;

    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&u->lock);
    s = (struct uart_state){.base = u->base,
                            .ier = u->ier,
                            .lcr = u->lcr,
                            .mcr = u->mcr,
                            .scr = u->scr,
                            .fcr = u->fcr,
                            .dll = u->dll,
                            .dlm = u->dlm,
                            .thre_pending = u->thre_pending,
                            .irq_level = u->irq_level,
                            .rx_count = (uint8_t)u->rx_count,
                            .irq = u->irq};
    for (unsigned i = 0; i < u->rx_count; i++)
        s.rx[i] = u->rx[(u->rx_head + i) % RX_SIZE];
    pthread_mutex_unlock(&u->lock);
    rvm_uart_flush(u);
    rec_put(b, REC_DEV_UART, index, &s, sizeof(s));
    return b->err;
}

static int uart_load(void *dev, const uint8_t *st, size_t len, uint32_t index)
{
    struct rvm_uart *u = dev;
    struct uart_state s;

    if (rec_get(st, len, REC_DEV_UART, index, &s, sizeof(s)) < 0)
        return -EBADMSG;
    if (s.base != u->base || s.irq != u->irq || s.rx_count > RX_SIZE)
        return -EINVAL;
    pthread_mutex_lock(&u->lock);
    u->ier = s.ier, u->lcr = s.lcr, u->mcr = s.mcr, u->scr = s.scr, u->fcr = s.fcr;
    u->dll = s.dll, u->dlm = s.dlm, u->thre_pending = s.thre_pending;
    u->rx_head = 0;
    u->rx_count = s.rx_count;
    memcpy(u->rx, s.rx, s.rx_count);
    u->irq_level = s.irq_level; /* the line itself is in the restored irqchip */
    pthread_mutex_unlock(&u->lock);
    return 0;
}

/* Its output goes where the restore's caller says. */
static int uart_recreate(struct rvm_vm *vm, const struct dev_restore *r)
{
    return rvm_uart_attach(vm, &r->params->uart, NULL);
}

const struct vm_snap_ops uart_snap = {
    .kind = REC_DEV_UART, .recreate = uart_recreate, .save = uart_save, .load = uart_load};

/*
 * The UART for the DSDT: PNP0501 (a 16550A) with its eight ports and its
 * IRQ, so that an ACPI kernel's 8250 driver sets the interrupt up (without
 * it a hardware-reduced platform has no legacy IRQ 4, and output written to
 * the tty is lost while the polled console still works). COMn (_UID n) for
 * the four PC ports, UARn (n from 5) otherwise.
 */
static int describe(struct rvm_vm *vm, const struct rvm_uart *u)
{
    static const uint16_t com[] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};
    struct rvm_acpi_device d = {.hid = "PNP0501",
                                .io = true,
                                .base = u->base,
                                .len = 8,
                                .gsi = u->irq < 24 ? (int32_t)u->irq : -1};
    unsigned n = 5 + vm_fw_devs(vm, NULL, 0) % 5; /* UAR5-UAR9: clear of COM1-COM4's _UIDs */

    for (unsigned i = 0; i < 4; i++)
        if (u->base == com[i])
            n = i + 1;
    d.uid = n;
    snprintf(d.name, sizeof(d.name), "%s%u", n >= 1 && n <= 4 ? "COM" : "UAR", n);
    return vm_add_fw_dev(vm, &d);
}

int rvm_uart_attach(struct rvm_vm *vm, const struct rvm_uart_config *config, struct rvm_uart **out)
{
    struct rvm_uart *u;
    int r;

    if (!vm || !config)
        return -EINVAL;
    u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->vm = vm;
    u->base = config->base ? config->base : RVM_COM1_BASE;
    u->irq = config->irq ? config->irq : RVM_COM1_IRQ;
    u->out = config->out;
    u->out_opaque = config->out_opaque;
    u->out_fd = config->out ? -1 : config->out_fd;
    u->dll = 12; /* 9600 baud, as firmware leaves it */
    pthread_mutex_init(&u->lock, NULL);
    r = rvm_vm_map_io(vm, RVM_BUS_PIO, u->base, 8, &uart_ops, u);
    if (r < 0)
        goto err;
    if ((r = describe(vm, u)) < 0 ||
        (r = vm_add_device_snap(vm, u, uart_on_end, uart_destroy, &uart_snap)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_PIO, u->base);
        goto err;
    }
    if (out)
        *out = u;
    return 0;
err:
    pthread_mutex_destroy(&u->lock);
    free(u);
    return r;
}
