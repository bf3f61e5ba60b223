/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snaprec.h"

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

void rec_put(struct recbuf *b, uint32_t type, uint32_t instance, const void *data, uint32_t len)
{
    struct rec_hdr h = {type, instance, len, 0};
    size_t need = b->len + sizeof(h) + ALIGN8(len);

    if (b->err)
        return;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *p;

        while (cap < need)
            cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, &h, sizeof(h));
    if (len)
        memcpy(b->p + b->len + sizeof(h), data, len);
    memset(b->p + b->len + sizeof(h) + len, 0, ALIGN8(len) - len);
    b->len = need;
}

void rec_free(struct recbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Walks records; calls match on each; stops at REC_END or on a malformed one. */
static int walk(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, const void **data,
                uint32_t *dlen)
{
    size_t off = 0;

    while (off + sizeof(struct rec_hdr) <= len) {
        struct rec_hdr h;

        memcpy(&h, p + off, sizeof(h));
        off += sizeof(h);
        if (h.type == REC_END)
            return h.len == 0 && off == len ? -ENOENT : -EBADMSG;
        if (h.len > len - off || ALIGN8(h.len) > len - off)
            return -EBADMSG;
        if (data && h.type == type && h.instance == instance) {
            *data = p + off;
            *dlen = h.len;
            return 0;
        }
        off += ALIGN8(h.len);
    }
    return -EBADMSG; /* no end record */
}

int rec_next(const uint8_t *p, size_t len, size_t *off, struct rec_hdr *h, const void **data)
{
    if (*off + sizeof(*h) > len)
        return -EBADMSG;
    memcpy(h, p + *off, sizeof(*h));
    *off += sizeof(*h);
    if (h->type == REC_END)
        return h->len == 0 && *off == len ? 0 : -EBADMSG;
    if (h->len > len - *off || ALIGN8(h->len) > len - *off)
        return -EBADMSG;
    *data = p + *off;
    *off += ALIGN8(h->len);
    return 1;
}

int rec_find(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, const void **data,
             uint32_t *dlen)
{
    return walk(p, len, type, instance, data, dlen);
}

int rec_get(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, void *out,
            uint32_t size)
{
    const void *d;
    uint32_t l;

    if (rec_find(p, len, type, instance, &d, &l) < 0 || l != size)
        return -EBADMSG;
    memcpy(out, d, size);
    return 0;
}

int rec_put_port(struct recbuf *b, uint32_t type, uint32_t instance, uint16_t port)
{
    rec_put(b, type, instance, &port, sizeof(port));
    return b->err;
}

int rec_get_port(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, uint16_t *port)
{
    return rec_get(p, len, type, instance, port, sizeof(*port)) < 0 ? -EBADMSG : 0;
}

int rec_check_port(const uint8_t *p, size_t len, uint32_t type, uint32_t instance, uint16_t port)
{
    uint16_t saved;

    if (rec_get(p, len, type, instance, &saved, sizeof(saved)) < 0)
        return -EBADMSG;
    return saved == port ? 0 : -EINVAL;
}
