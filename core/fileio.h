/* SPDX-License-Identifier: MIT */
/*
 * Whole transfers over read(2)/write(2) and their positioned forms: an
 * interrupted call is made again, a short one goes on from where it
 * stopped. For the small files of snapshots and boot images (guest memory
 * moves through io_uring, core/snapmem.c).
 */
#ifndef RINGVM_CORE_FILEIO_H
#define RINGVM_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Up to len bytes, fewer only at the end of the file: how many, or -errno. */
ssize_t fio_read_full(int fd, void *buf, size_t len);

/* Exactly len bytes at off: 0, -errno, or -ENODATA when the file ends first. */
int fio_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* Exactly len bytes (at off): 0, -errno, or -EIO when a write moves nothing. */
int fio_write_all(int fd, const void *buf, size_t len);
int fio_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

#endif
