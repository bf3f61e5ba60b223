/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport's registers (mmio.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "../core/log.h"
#include "../core/vm_internal.h"
#include "mmio_internal.h"

#define MAGIC 0x74726976 /* "virt" */

uint32_t virtio_mmio_status(const struct virtio_mmio *t)
{
    return mmio_status(t);
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

int mmio_reset_locked(struct virtio_mmio *t, uint64_t timeout_ns)
{
    if (t->active && t->ops->reset(t->dev, timeout_ns) < 0) {
        if (!t->resetting && t->vm)
            rvm_warn(t->vm->hv,
                     "virtio-mmio at 0x%llx: reset waits for the backend; the device is "
                     "unavailable until its requests complete",
                     (unsigned long long)t->base);
        t->resetting = true;
        return -ETIMEDOUT;
    }
    if (t->resetting && t->vm)
        rvm_info(t->vm->hv, "virtio-mmio at 0x%llx: reset done", (unsigned long long)t->base);
    t->resetting = false;
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
    return 0;
}

int mmio_setup_queues_locked(struct virtio_mmio *t)
{
    bool event_idx = t->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
    bool indirect = t->driver_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);

    for (int i = 0; i < t->ops->num_queues; i++) {
        struct mmio_queue *q = &t->q[i];

        vq_reset(&t->vqs[i]);
        if (q->ready && vq_setup(&t->vqs[i], t->mem, q->num, t->ops->queue_max, q->desc, q->avail,
                                 q->used, event_idx, indirect) < 0)
            return -EINVAL;
    }
    return 0;
}

/*
 * DRIVER_OK: every enabled queue checked and set up, then the device
 * activated. Never twice: a device already live would get a second worker.
 */
static int activate_locked(struct virtio_mmio *t)
{
    if (t->active)
        return -EBUSY;
    if (mmio_setup_queues_locked(t) < 0)
        return -EINVAL;
    if (t->ops->activate(t->dev, t->vqs, t->driver_features) < 0)
        return -EIO;
    t->active = true;
    return 0;
}

static void write_status_locked(struct virtio_mmio *t, uint32_t v)
{
    uint32_t old = mmio_status(t);

    if (v == 0) {
        mmio_reset_locked(t, VIRTIO_RESET_WAIT_NS);
        return;
    }
    if (old & ~v)
        return; /* bits are only ever added, until a reset */
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
        /* Refused unless modern and a subset of what was offered: FEATURES_OK reads back 0. */
        if (!(t->driver_features & (1ULL << VIRTIO_F_VERSION_1)) ||
            (t->driver_features & ~mmio_offered(t)))
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

    if (t->queue_sel >= t->ops->num_queues || (mmio_status(t) & VIRTIO_CONFIG_S_DRIVER_OK))
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
        return t->dev_feat_sel == 0   ? (uint32_t)mmio_offered(t)
               : t->dev_feat_sel == 1 ? (uint32_t)(mmio_offered(t) >> 32)
                                      : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? t->ops->queue_max : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return __atomic_load_n(&t->isr, __ATOMIC_ACQUIRE);
    case VIRTIO_MMIO_STATUS:
        return mmio_status(t);
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
        if ((mmio_status(t) & VIRTIO_CONFIG_S_DRIVER) &&
            !(mmio_status(t) & VIRTIO_CONFIG_S_FEATURES_OK) && t->drv_feat_sel < 2)
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
        if (t->queue_sel < t->ops->num_queues && !(mmio_status(t) & VIRTIO_CONFIG_S_DRIVER_OK))
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

/*
 * A reset still waiting for the device: true while it does (after waiting
 * once more). Reads then see the registers as they were (status nonzero);
 * writes are dropped.
 */
static bool reset_pending_locked(struct virtio_mmio *t)
{
    return t->resetting && mmio_reset_locked(t, VIRTIO_RESET_WAIT_NS) < 0;
}

static int mmio_read(void *opaque, uint64_t off, uint32_t size, uint64_t *data)
{
    struct virtio_mmio *t = opaque;
    int r = 0;

    *data = 0;
    pthread_mutex_lock(&t->lock);
    reset_pending_locked(t);
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
    if (reset_pending_locked(t)) {
        /* dropped: the device is still stopping */
    } else if (off >= VIRTIO_MMIO_CONFIG) {
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

const struct rvm_io_ops mmio_bus_ops = {.read = mmio_read, .write = mmio_write};

int virtio_mmio_access(struct virtio_mmio *t, uint64_t off, uint32_t size, bool is_write,
                       uint64_t *data)
{
    return is_write ? mmio_write(t, off, size, *data) : mmio_read(t, off, size, data);
}

int virtio_mmio_create(struct rvm_mem *mem, const struct virtio_device_ops *ops, void *dev,
                       struct virtio_mmio **out)
{
    struct virtio_mmio *t;

    if (!mem || !ops || !ops->activate || !ops->reset || !ops->quiesce != !ops->resume ||
        ops->num_queues == 0 || ops->num_queues > VIRTIO_MMIO_MAX_QUEUES ||
        ops->config_size > 256 || !ops->queue_max || (ops->queue_max & (ops->queue_max - 1)) ||
        ops->queue_max > VQ_MAX_SIZE)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->mem = mem;
    t->ops = ops;
    t->dev = dev;
    t->irqfd = -1;
    for (int i = 0; i < ops->num_queues; i++)
        t->q[i].efd = -1;
    pthread_mutex_init(&t->lock, NULL);
    t->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (int i = 0; t->irqfd >= 0 && i < ops->num_queues; i++)
        if ((t->q[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            break;
    if (t->irqfd < 0 || t->q[ops->num_queues - 1].efd < 0) {
        int e = -errno;
        virtio_mmio_destroy(t);
        return e;
    }
    *out = t;
    return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    if (t->active)
        t->ops->reset(t->dev, UINT64_MAX); /* in-flight I/O writes guest memory: wait it out */
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->ops->num_queues; i++)
        if (t->q[i].efd >= 0)
            close(t->q[i].efd);
    if (t->irqfd >= 0)
        close(t->irqfd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
