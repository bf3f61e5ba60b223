/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <unistd.h>

#include "fileio.h"

/* One loop for all four: bytes moved until len, end of file or a failure (-errno). */
static ssize_t xfer(int fd, char *buf, size_t len, int64_t off, int write_)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r;

        if (off < 0)
            r = write_ ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);
        else if (write_)
            r = pwrite(fd, buf + done, len - done, (off_t)(off + (int64_t)done));
        else
            r = pread(fd, buf + done, len - done, (off_t)(off + (int64_t)done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t fio_read_full(int fd, void *buf, size_t len)
{
    return xfer(fd, buf, len, -1, 0);
}

int fio_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t r = xfer(fd, buf, len, (int64_t)off, 0);

    return r < 0 ? (int)r : (size_t)r == len ? 0 : -ENODATA;
}

int fio_write_all(int fd, const void *buf, size_t len)
{
    ssize_t r = xfer(fd, (char *)buf, len, -1, 1);

    return r < 0 ? (int)r : (size_t)r == len ? 0 : -EIO;
}

int fio_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    ssize_t r = xfer(fd, (char *)buf, len, (int64_t)off, 1);

    return r < 0 ? (int)r : (size_t)r == len ? 0 : -EIO;
}
