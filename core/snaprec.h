/* SPDX-License-Identifier: MIT */
/*
 * Snapshot state records: a flat sequence of (type, instance, length,
 * payload) in a growing buffer, read back with every length checked. The
 * state file is such a sequence.
 */
#ifndef RINGVM_CORE_SNAPREC_H
#define RINGVM_CORE_SNAPREC_H

#include <stddef.h>
#include <stdint.h>

enum rec_type {
    REC_END = 0,
    /* per vCPU (instance: vCPU id) */
    REC_VCPU_REGS = 1,
    REC_VCPU_SREGS,
    REC_VCPU_XSAVE,
    REC_VCPU_XCRS,
    REC_VCPU_MSRS,
    REC_VCPU_LAPIC,
    REC_VCPU_EVENTS,
    REC_VCPU_DEBUGREGS,
    REC_VCPU_MP_STATE,
    REC_VCPU_FPU,
    REC_VCPU_CPUID, /* the CPUID KVM holds (edits included); optional: older snapshots lack it */
    /* per VM */
    REC_VM_IRQCHIP = 32, /* instance: chip id (PIC master, slave, IOAPIC) */
    REC_VM_PIT2,
    REC_VM_CLOCK,
    REC_VM_TSC_KHZ,
    /* devices (instance: the device's index in the VM) */
    REC_DEV_UART = 64,
    REC_DEV_DEBUG_EXIT,
    REC_DEV_VIRTIO_MMIO, /* format 1 only: now inside its device's record */
    REC_DEV_VIRTIO_BLK,
    REC_DEV_I8042,
    REC_DEV_BOOT_TIMER,
    REC_DEV_VIRTIO_NET,
    REC_DEV_PVPANIC,
    REC_DEVICES = 96, /* the devices' kinds, oldest first */
};

struct rec_hdr {
    uint32_t type, instance, len, reserved;
};

struct recbuf {
    uint8_t *p;
    size_t len, cap;
    int err; /* sticky: the first failure */
};

/* Appends a record (8-byte aligned payloads). */
void rec_put(struct recbuf *b, uint32_t type, uint32_t instance, const void *data, uint32_t len);
void rec_free(struct recbuf *b);

/*
 * Finds the record (type, instance) in [p, p + len); its payload and length
 * through data/dlen. 0, -ENOENT, or -EBADMSG when the sequence is malformed
 * (snap_check_state() checks the whole state once first: this only walks).
 */
int rec_find(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, const void **data,
             uint32_t *dlen);
/* Copies record (type, instance), which must be exactly size bytes, into out. 0 or -EBADMSG. */
int rec_get(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, void *out,
            uint32_t size);
/*
 * A device whose only state is the port it sits at (the debug-exit port, the
 * boot timer, pvpanic): its record, and on load the check that the restored
 * device sits at the same port (-EBADMSG no record, -EINVAL another port).
 */
int rec_put_port(struct recbuf *b, uint32_t type, uint32_t instance, uint16_t port);
int rec_check_port(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, uint16_t port);
/* The port such a device's record holds (re-creating it). 0 or -EBADMSG. */
int rec_get_port(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, uint16_t *port);

/*
 * The record at *off (start at 0), its header and payload; *off moves past
 * it. 1 for a record, 0 at a well-formed end, -EBADMSG when malformed.
 */
int rec_next(const uint8_t *p, size_t len, size_t *off, struct rec_hdr *h, const void **data);

#endif
