/* SPDX-License-Identifier: MIT */
/* core/fileio.c: whole transfers, short ones continued, the ends of files and failures told apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "common/testutil.h"

static int tmpfile_fd(void)
{
    char name[] = "/tmp/ringvm-fileio-XXXXXX";
    int fd = mkstemp(name);

    assert_true(fd >= 0);
    unlink(name);
    return fd;
}

/* Positioned: what was written reads back; a read past the end is -ENODATA, not a short success. */
static void test_positioned(void **state)
{
    char out[10000], in[10000];
    int fd = tmpfile_fd();
    (void)state;

    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i * 7);
    assert_int_equal(fio_pwrite_all(fd, out, sizeof(out), 4096), 0);
    assert_int_equal(fio_pread_all(fd, in, sizeof(in), 4096), 0);
    assert_memory_equal(in, out, sizeof(out));
    assert_int_equal(fio_pread_all(fd, in, sizeof(in), 4097), -ENODATA);
    close(fd);
    assert_int_equal(fio_pread_all(fd, in, 1, 0), -EBADF);
    assert_int_equal(fio_pwrite_all(fd, out, 1, 0), -EBADF);
}

static void *write_in_pieces(void *arg)
{
    int fd = *(int *)arg;
    char piece[1000];

    memset(piece, 'x', sizeof(piece));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(write(fd, piece, sizeof(piece)), (ssize_t)sizeof(piece));
        sleep_ms(5);
    }
    close(fd);
    return NULL;
}

/* From a pipe written in pieces: every piece, until the writer closes (fewer than asked). */
static void test_read_full_pieces(void **state)
{
    char buf[8000];
    int p[2];
    pthread_t t;
    (void)state;

    assert_int_equal(pipe(p), 0);
    assert_int_equal(pthread_create(&t, NULL, write_in_pieces, &p[1]), 0);
    assert_int_equal(fio_read_full(p[0], buf, sizeof(buf)), 5000);
    pthread_join(t, NULL);
    assert_int_equal(fio_read_full(p[0], buf, sizeof(buf)), 0);
    close(p[0]);
    assert_int_equal(fio_read_full(p[0], buf, 1), -EBADF);
}

/* A write that cannot all go: the reader is gone (-EPIPE, with SIGPIPE ignored). */
static void test_write_failure(void **state)
{
    char buf[100] = {0};
    int p[2], fd = tmpfile_fd();
    (void)state;

    assert_int_equal(fio_write_all(fd, buf, sizeof(buf)), 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)sizeof(buf));
    close(fd);
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(fio_write_all(p[1], buf, sizeof(buf)), -EPIPE);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positioned),
        cmocka_unit_test(test_read_full_pieces),
        cmocka_unit_test(test_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
