/* SPDX-License-Identifier: MIT */
/*
 * A test group's scratch directory, under /var/tmp (a disk-backed file
 * system: O_DIRECT, holes and fallocate behave as on a real host), and
 * paths in it. Made in the group's setup, removed with all it holds in its
 * teardown.
 */
#ifndef RINGVM_TESTS_SCRATCH_H
#define RINGVM_TESTS_SCRATCH_H

/* Makes /var/tmp/ringvm-TAG-XXXXXX the scratch root. 0 or -1 (cmocka group setup style). */
int scratch_make(const char *tag);
/* rm -r of the root. 0 or -1. */
int scratch_remove(void);
const char *scratch_root(void);
/* root/name and dir/name, each in one of its own 16 rotating buffers. */
const char *scratch_path(const char *name);
const char *path_join(const char *dir, const char *name);
/* Flips bits of the byte at off in the file (asserts): damage for a checksum to find. */
void flip_byte(const char *path, long off);
/* This process's open file descriptors (/proc/self/fd), for leak checks. */
int open_fd_count(void);

#endif
