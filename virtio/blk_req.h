/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request parsing: a popped chain, checked, turned into what the
 * backend executes. Pure: touches only the chain's buffers (reads the header,
 * never writes), so it is unit-tested on fake guest memory.
 */
#ifndef RINGVM_VIRTIO_BLK_REQ_H
#define RINGVM_VIRTIO_BLK_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtqueue.h"

#define BLK_SECTOR   512
#define BLK_SEG_MAX  128        /* data buffers per request (the device's seg_max) */
#define BLK_SIZE_MAX (1u << 20) /* bytes of one data buffer (the device's size_max) */
#define BLK_SUBMIT   0          /* blk_parse(): execute the request */
#define BLK_DROP     (-1)       /* blk_parse(): no status byte to answer in; used length 0 */

struct blk_req {
    uint32_t type;        /* VIRTIO_BLK_T_* */
    uint64_t sector;      /* IN/OUT: first sector; DISCARD/WRITE_ZEROES: range start */
    uint64_t num_sectors; /* DISCARD/WRITE_ZEROES: range length */
    uint32_t range_flags; /* WRITE_ZEROES: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP */
    uint64_t done;        /* IN/OUT: bytes moved so far (a short transfer goes on from here) */
    struct iovec iov[BLK_SEG_MAX];
    uint64_t gpa[BLK_SEG_MAX]; /* guest address of each iov, for dirty tracking */
    unsigned niov;
    uint64_t data_len;
    uint8_t *status; /* the status byte in guest memory (NULL on BLK_DROP) */
    uint64_t status_gpa;
};

/*
 * Checks chain c against a disk of `capacity` sectors and fills *r. Returns
 * BLK_SUBMIT, BLK_DROP, or a final VIRTIO_BLK_S_* status (IOERR for a
 * malformed or out-of-range request, a data buffer past size_max or more
 * than seg_max of them, or a write to a read-only disk; UNSUPP for an
 * unknown type) to write to *r->status without executing anything.
 */
int blk_parse(const struct vq_chain *c, uint64_t capacity, bool ro, struct blk_req *r);

/*
 * A transfer moved `moved` more bytes of r (0 < moved <= what remains): the
 * iovecs now start past them (the offset on disk is sector * 512 + done).
 * Returns the bytes that remain.
 */
uint64_t blk_req_advance(struct blk_req *r, uint64_t moved);

#endif
