/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport's snapshots: its state saved, checked and loaded (mmio.h). */
#include <errno.h>
#include <string.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "../core/log.h"
#include "../core/vm_internal.h"
#include "mmio_internal.h"

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
    s.status = mmio_status(t);
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
        s.nq != t->ops->num_queues || (s.driver_features & ~mmio_offered(t)))
        return -EINVAL;
    pthread_mutex_lock(&t->lock);
    mmio_reset_locked(t, UINT64_MAX); /* just attached: nothing in flight */
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
        r = mmio_setup_queues_locked(t);
        for (uint32_t i = 0; i < s.nq && r == 0; i++) {
            struct vq *v = &t->vqs[i];

            if (!t->q[i].ready)
                continue;
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

int virtio_mmio_quiesce(struct virtio_mmio *t)
{
    int r = 0;

    if (!t)
        return 0; /* a device whose transport was never attached */
    pthread_mutex_lock(&t->lock);
    if (t->resetting) { /* still stopping after the driver's reset: nothing stable to save */
        if (t->vm)
            rvm_err(t->vm->hv, "snapshot: the virtio device at 0x%llx is still resetting",
                    (unsigned long long)t->base);
        r = -EBUSY;
    } else if (t->active && t->ops->quiesce)
        r = t->ops->quiesce(t->dev);
    else if (t->active) /* stops the worker after its in-flight work; queues stay */
        t->reset_for_snapshot = t->ops->reset(t->dev, UINT64_MAX) == 0; /* resume restarts it */
    pthread_mutex_unlock(&t->lock);
    return r;
}

void virtio_mmio_resume(struct virtio_mmio *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    bool restart = t->reset_for_snapshot; /* a resume without its quiesce restarts nothing */

    t->reset_for_snapshot = false;
    if (t->active && t->ops->quiesce) {
        t->ops->resume(t->dev);
    } else if (t->active && restart && t->ops->activate(t->dev, t->vqs, t->driver_features) < 0) {
        t->active = false;
        pthread_mutex_unlock(&t->lock);
        virtio_mmio_needs_reset(t);
        return;
    }
    pthread_mutex_unlock(&t->lock);
}
