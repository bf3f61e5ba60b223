/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include <ringvm/virtio.h>
#include <ringvm/vm.h>

#include "../core/vm_internal.h"
#include "mmio.h"

#define MAGIC 0x74726976 /* "virt" */

struct mmio_queue {
    uint16_t num;
    bool ready;
    uint64_t desc, avail, used;
    int efd; /* ioeventfd: the guest's notifications of this queue */
};

struct virtio_mmio {
    struct rvm_vm *vm;
    uint64_t base;
    uint32_t gsi;
    const struct virtio_device_ops *ops;
    void *dev;
    pthread_mutex_t lock; /* register state; never held by the device's worker */
    uint32_t status;      /* __atomic: the worker may set NEEDS_RESET */
    uint32_t isr;         /* __atomic */
    uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
    uint64_t driver_features;
    bool active;
    int irqfd;
    struct mmio_queue q[VIRTIO_MMIO_MAX_QUEUES];
    struct vq vqs[VIRTIO_MMIO_MAX_QUEUES]; /* the device's while active */
};

static uint64_t offered(const struct virtio_mmio *t)
{
    return t->ops->features | (1ULL << VIRTIO_F_VERSION_1);
}

static uint32_t status(const struct virtio_mmio *t)
{
    return __atomic_load_n(&t->status, __ATOMIC_ACQUIRE);
}

uint32_t virtio_mmio_status(const struct virtio_mmio *t)
{
    return status(t);
}

int virtio_mmio_queue_eventfd(const struct virtio_mmio *t, uint16_t q)
{
    return q < t->ops->num_queues ? t->q[q].efd : -1;
}

int virtio_mmio_interrupt(struct virtio_mmio *t, uint32_t isr_bits)
{
    uint64_t one = 1;

    __atomic_fetch_or(&t->isr, isr_bits, __ATOMIC_RELEASE);
    return write(t->irqfd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

void virtio_mmio_needs_reset(struct virtio_mmio *t)
{
    uint32_t old = __atomic_fetch_or(&t->status, VIRTIO_CONFIG_S_NEEDS_RESET, __ATOMIC_ACQ_REL);

    if (old & VIRTIO_CONFIG_S_DRIVER_OK)
        virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

int virtio_mmio_cmdline(uint64_t base, uint32_t gsi, char *buf, size_t len)
{
    int n = snprintf(buf, len, "virtio_mmio.device=0x%x@0x%llx:%u", VIRTIO_MMIO_SIZE,
                     (unsigned long long)base, gsi);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* Back to the state after power-on. Caller holds t->lock. */
static void reset_locked(struct virtio_mmio *t)
{
    if (t->active)
        t->ops->reset(t->dev); /* the worker has stopped when this returns */
    t->active = false;
    __atomic_store_n(&t->status, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&t->isr, 0, __ATOMIC_RELEASE);
    t->dev_feat_sel = t->drv_feat_sel = t->queue_sel = 0;
    t->driver_features = 0;
    for (int i = 0; i < t->ops->num_queues; i++) {
        int efd = t->q[i].efd;

        t->q[i] = (struct mmio_queue){.efd = efd};
        vq_reset(&t->vqs[i]);
    }
}

/*
 * DRIVER_OK: every enabled queue checked and set up, then the device
 * activated. Never twice: a device already live would get a second worker.
 */
static int activate_locked(struct virtio_mmio *t)
{
    if (t->active)
        return -EBUSY;
    bool event_idx = t->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
    bool indirect = t->driver_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);

    for (int i = 0; i < t->ops->num_queues; i++) {
        struct mmio_queue *q = &t->q[i];

        vq_reset(&t->vqs[i]);
        if (!q->ready)
            continue;
        if (vq_setup(&t->vqs[i], rvm_vm_mem(t->vm), q->num, t->ops->queue_max, q->desc, q->avail,
                     q->used, event_idx, indirect) < 0)
            return -EINVAL;
    }
    if (t->ops->activate(t->dev, t->vqs, t->driver_features) < 0)
        return -EIO;
    t->active = true;
    return 0;
}

static void write_status_locked(struct virtio_mmio *t, uint32_t v)
{
    uint32_t old = status(t);

    if (v == 0) {
        reset_locked(t);
        return;
    }
    if (old & ~v)
        return; /* bits are only ever added, until a reset */
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
        /* Refused unless modern and a subset of what was offered: FEATURES_OK reads back 0. */
        if (!(t->driver_features & (1ULL << VIRTIO_F_VERSION_1)) ||
            (t->driver_features & ~offered(t)))
            v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
        if (!(v & VIRTIO_CONFIG_S_FEATURES_OK) || activate_locked(t) < 0)
            v |= VIRTIO_CONFIG_S_NEEDS_RESET;
    }
    /* v holds every bit of old: OR it in, so a NEEDS_RESET the worker sets meanwhile stays. */
    __atomic_fetch_or(&t->status, v, __ATOMIC_ACQ_REL);
}

/* Queue registers may change only while the queue is off and the device not live. */
static struct mmio_queue *writable_queue(struct virtio_mmio *t)
{
    struct mmio_queue *q;

    if (t->queue_sel >= t->ops->num_queues || (status(t) & VIRTIO_CONFIG_S_DRIVER_OK))
        return NULL;
    q = &t->q[t->queue_sel];
    return q->ready ? NULL : q;
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
    *v = high ? (*v & 0xffffffffULL) | ((uint64_t)val << 32) : (*v & ~0xffffffffULL) | val;
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
    const struct mmio_queue *q = t->queue_sel < t->ops->num_queues ? &t->q[t->queue_sel] : NULL;

    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return MAGIC;
    case VIRTIO_MMIO_VERSION:
        return 2;
    case VIRTIO_MMIO_DEVICE_ID:
        return t->ops->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return t->dev_feat_sel == 0   ? (uint32_t)offered(t)
               : t->dev_feat_sel == 1 ? (uint32_t)(offered(t) >> 32)
                                      : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? t->ops->queue_max : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return __atomic_load_n(&t->isr, __ATOMIC_ACQUIRE);
    case VIRTIO_MMIO_STATUS:
        return status(t);
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return 0;
    default:
        return 0; /* write-only or reserved */
    }
}

static void write_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
    struct mmio_queue *q;
    uint64_t one = 1;

    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        t->dev_feat_sel = v;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        t->drv_feat_sel = v;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if ((status(t) & VIRTIO_CONFIG_S_DRIVER) && !(status(t) & VIRTIO_CONFIG_S_FEATURES_OK) &&
            t->drv_feat_sel < 2)
            set_half(&t->driver_features, t->drv_feat_sel == 1, v);
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        t->queue_sel = v;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if ((q = writable_queue(t)))
            q->num = v > UINT16_MAX ? 0 : (uint16_t)v; /* checked at DRIVER_OK */
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (t->queue_sel < t->ops->num_queues && !(status(t) & VIRTIO_CONFIG_S_DRIVER_OK))
            t->q[t->queue_sel].ready = v & 1;
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if ((q = writable_queue(t)))
            set_half(&q->desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if ((q = writable_queue(t)))
            set_half(&q->avail, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if ((q = writable_queue(t)))
            set_half(&q->used, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Normally caught by the queue's ioeventfd; this is the same kick, the slow way. */
        if (v < t->ops->num_queues && t->active && t->q[v].ready &&
            write(t->q[v].efd, &one, sizeof(one)) < 0) {
            /* an eventfd at its maximum is still signalled */
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        __atomic_fetch_and(&t->isr, ~v, __ATOMIC_ACQ_REL);
        break;
    case VIRTIO_MMIO_STATUS:
        write_status_locked(t, v);
        break;
    default:
        break; /* read-only or reserved: ignored */
    }
}

/* Config space accesses: 1, 2, 4 or 8 bytes, wholly inside the device's config. */
static bool config_ok(const struct virtio_mmio *t, uint64_t off, uint32_t size)
{
    uint64_t c = off - VIRTIO_MMIO_CONFIG;

    return (size == 1 || size == 2 || size == 4 || size == 8) && c < t->ops->config_size &&
           size <= t->ops->config_size - c;
}

static int mmio_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    struct virtio_mmio *t = opaque;
    int r = 0;

    *data = 0;
    pthread_mutex_lock(&t->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        if (config_ok(t, off, size) && t->ops->config_read)
            t->ops->config_read(t->dev, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, size);
        else
            r = -EINVAL;
    } else if (size == 4 && off % 4 == 0) {
        *data = read_reg(t, off);
    } else {
        r = -EINVAL; /* registers are 32-bit, aligned */
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

static int mmio_write(void *opaque, uint64_t off, uint32_t size, uint64_t data)
{
    struct virtio_mmio *t = opaque;
    int r = 0;

    pthread_mutex_lock(&t->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        if (config_ok(t, off, size) && t->ops->config_write)
            t->ops->config_write(t->dev, (uint32_t)(off - VIRTIO_MMIO_CONFIG), &data, size);
        else
            r = -EINVAL;
    } else if (size == 4 && off % 4 == 0) {
        write_reg(t, off, (uint32_t)data);
    } else {
        r = -EINVAL;
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

static const struct rvm_io_ops mmio_ops = {.read = mmio_read, .write = mmio_write};

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    if (t->active)
        t->ops->reset(t->dev);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->ops->num_queues; i++)
        close(t->q[i].efd);
    close(t->irqfd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- snapshots ---------------------------------------------------------- */

#define STATUS_KNOWN                                                                               \
    (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK |            \
     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)
#define STATUS_LIVE (VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)

/*
 * A saved transport as only a real one could be: known status bits; live
 * only with FEATURES_OK and DRIVER_OK and a modern driver; DRIVER_OK and not
 * live only with NEEDS_RESET (its activation failed); FEATURES_OK only over
 * VERSION_1; ISR and ready flags within their bits.
 */
static bool saved_state_valid(const struct mmio_state *s, uint32_t nq)
{
    bool modern = s->driver_features & (1ULL << VIRTIO_F_VERSION_1);

    if ((s->status & ~STATUS_KNOWN) || s->active > 1 || s->nq != nq ||
        (s->isr & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)))
        return false;
    if (s->active && ((s->status & STATUS_LIVE) != STATUS_LIVE || !modern))
        return false;
    if (!s->active && (s->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
        !(s->status & VIRTIO_CONFIG_S_NEEDS_RESET))
        return false;
    if ((s->status & VIRTIO_CONFIG_S_FEATURES_OK) && !modern)
        return false;
    for (uint32_t i = 0; i < nq && i < VIRTIO_MMIO_MAX_QUEUES; i++)
        if (s->q[i].ready > 1 || s->q[i].signalled_valid > 1 || s->q[i].broken > 1)
            return false;
    return true;
}

void virtio_mmio_save(struct virtio_mmio *t, struct mmio_state *out)
{
    struct mmio_state s;

    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&t->lock);
    s.base = t->base;
    s.gsi = t->gsi;
    s.device_id = t->ops->device_id;
    s.status = status(t);
    s.isr = __atomic_load_n(&t->isr, __ATOMIC_ACQUIRE);
    s.dev_feat_sel = t->dev_feat_sel;
    s.drv_feat_sel = t->drv_feat_sel;
    s.queue_sel = t->queue_sel;
    s.driver_features = t->driver_features;
    s.active = t->active;
    s.nq = t->ops->num_queues;
    for (uint32_t i = 0; i < s.nq; i++) {
        const struct vq *v = &t->vqs[i];
        s.q[i] = (struct mmio_queue_state){.desc = t->q[i].desc,
                                           .avail = t->q[i].avail,
                                           .used = t->q[i].used,
                                           .num = t->q[i].num,
                                           .ready = t->q[i].ready,
                                           .last_avail = v->last_avail,
                                           .used_idx = v->used_idx,
                                           .signalled_used = v->signalled_used,
                                           .signalled_valid = v->signalled_valid,
                                           .broken = v->broken};
    }
    pthread_mutex_unlock(&t->lock);
    *out = s;
}

int virtio_mmio_load(struct virtio_mmio *t, const struct mmio_state *saved)
{
    struct mmio_state s = *saved;
    int r = 0;

    if (!saved_state_valid(&s, t->ops->num_queues))
        return -EBADMSG;
    if (s.base != t->base || s.gsi != t->gsi || s.device_id != t->ops->device_id ||
        s.nq != t->ops->num_queues || (s.driver_features & ~offered(t)))
        return -EINVAL;
    pthread_mutex_lock(&t->lock);
    reset_locked(t);
    t->dev_feat_sel = s.dev_feat_sel;
    t->drv_feat_sel = s.drv_feat_sel;
    t->queue_sel = s.queue_sel;
    t->driver_features = s.driver_features;
    for (uint32_t i = 0; i < s.nq; i++) {
        t->q[i].desc = s.q[i].desc;
        t->q[i].avail = s.q[i].avail;
        t->q[i].used = s.q[i].used;
        t->q[i].num = s.q[i].num;
        t->q[i].ready = s.q[i].ready;
    }
    __atomic_store_n(&t->isr, s.isr, __ATOMIC_RELEASE);
    if (s.active && !(s.status & VIRTIO_CONFIG_S_NEEDS_RESET)) {
        bool event_idx = t->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
        bool indirect = t->driver_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);

        for (uint32_t i = 0; i < s.nq && r == 0; i++) {
            struct vq *v = &t->vqs[i];

            vq_reset(v);
            if (!t->q[i].ready)
                continue;
            if (vq_setup(v, rvm_vm_mem(t->vm), t->q[i].num, t->ops->queue_max, t->q[i].desc,
                         t->q[i].avail, t->q[i].used, event_idx, indirect) < 0) {
                r = -EINVAL;
                break;
            }
            v->last_avail = s.q[i].last_avail;
            v->used_idx = s.q[i].used_idx;
            v->signalled_used = s.q[i].signalled_used;
            v->signalled_valid = s.q[i].signalled_valid;
            v->broken = s.q[i].broken;
        }
        if (r == 0 && t->ops->activate(t->dev, t->vqs, t->driver_features) < 0)
            r = -EIO;
        t->active = r == 0;
    }
    __atomic_store_n(&t->status, s.status, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&t->lock);
    /*
     * An interrupt the device raised while it drained for the snapshot may
     * have reached the interrupt controller after its state was taken: with
     * ISR bits pending, raise it again (the driver reads ISR and the rings;
     * one too many is harmless, one too few hangs it).
     */
    if (r == 0 && s.isr)
        virtio_mmio_interrupt(t, 0);
    return r;
}

void virtio_mmio_quiesce(struct virtio_mmio *t)
{
    if (!t)
        return; /* a device whose transport was never attached */
    pthread_mutex_lock(&t->lock);
    if (t->active && t->ops->quiesce)
        t->ops->quiesce(t->dev);
    else if (t->active)
        t->ops->reset(t->dev); /* stops the worker after its in-flight work; queues stay */
    pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_resume(struct virtio_mmio *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    if (t->active && t->ops->quiesce) {
        t->ops->resume(t->dev);
    } else if (t->active && t->ops->activate(t->dev, t->vqs, t->driver_features) < 0) {
        t->active = false;
        pthread_mutex_unlock(&t->lock);
        virtio_mmio_needs_reset(t);
        return;
    }
    pthread_mutex_unlock(&t->lock);
}

/*
 * The device for the DSDT: LNRO0005 (what Linux's virtio_mmio driver
 * matches), named and numbered by its slot.
 */
static int describe(struct rvm_vm *vm, uint64_t base, uint32_t gsi)
{
    uint64_t slot = (base - RVM_VIRTIO_MMIO_BASE) / RVM_VIRTIO_MMIO_STRIDE;
    struct rvm_acpi_device d = {
        .hid = "LNRO0005", .base = base, .len = VIRTIO_MMIO_SIZE, .gsi = (int32_t)gsi};

    if (base < RVM_VIRTIO_MMIO_BASE || slot > 999)
        slot = vm_fw_devs(vm, NULL, 0) % 1000; /* outside the slots (tests): still unique */
    d.uid = (uint32_t)slot;
    snprintf(d.name, sizeof(d.name), "V%03u", (unsigned)slot);
    return vm_add_fw_dev(vm, &d);
}

int virtio_mmio_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                       const struct virtio_device_ops *ops, void *dev, struct virtio_mmio **out)
{
    struct virtio_mmio *t;
    int r = 0, i = 0;

    if (!vm || !ops || !ops->activate || !ops->reset || !ops->quiesce != !ops->resume ||
        ops->num_queues == 0 || ops->num_queues > VIRTIO_MMIO_MAX_QUEUES ||
        ops->config_size > 256 || !ops->queue_max || (ops->queue_max & (ops->queue_max - 1)) ||
        ops->queue_max > VQ_MAX_SIZE)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->vm = vm;
    t->base = base;
    t->gsi = gsi;
    t->ops = ops;
    t->dev = dev;
    pthread_mutex_init(&t->lock, NULL);
    t->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->irqfd < 0 || (r = rvm_vm_add_irqfd(vm, gsi, t->irqfd)) < 0)
        goto err;
    for (; i < ops->num_queues; i++) {
        t->q[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->q[i].efd < 0 ||
            (r = rvm_vm_add_ioeventfd(vm, RVM_BUS_MMIO, base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, true,
                                      (uint64_t)i, t->q[i].efd)) < 0) {
            i++;
            goto err;
        }
    }
    if ((r = rvm_vm_map_io(vm, RVM_BUS_MMIO, base, VIRTIO_MMIO_SIZE, &mmio_ops, t)) < 0)
        goto err;
    if ((r = describe(vm, base, gsi)) < 0) {
        rvm_vm_unmap_io(vm, RVM_BUS_MMIO, base);
        goto err;
    }
    if (out)
        *out = t;
    return 0;

err:
    if (r == 0)
        r = -errno;
    /* KVM drops its bindings with the VM; closing our ends is enough here. */
    while (i-- > 0)
        if (t->q[i].efd >= 0)
            close(t->q[i].efd);
    if (t->irqfd >= 0)
        close(t->irqfd);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return r;
}

int virtio_mmio_next_slot(struct rvm_vm *vm, uint64_t *base, uint32_t *gsi)
{
    uint32_t slot;

    pthread_mutex_lock(&vm->dev_lock);
    slot = vm->virtio_slots < RVM_VIRTIO_MAX_DEVICES ? vm->virtio_slots++ : UINT32_MAX;
    pthread_mutex_unlock(&vm->dev_lock);
    if (slot == UINT32_MAX)
        return -ENOSPC;
    *base = RVM_VIRTIO_MMIO_BASE + slot * RVM_VIRTIO_MMIO_STRIDE;
    *gsi = RVM_VIRTIO_GSI_BASE + slot;
    return 0;
}
