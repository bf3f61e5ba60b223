/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for virtio-net's parsing of guest chains (virtio/
 * net_req.c, the real code): transmit chains against negotiated features
 * and limits, control commands, and the spread of a received frame over
 * merged receive buffers. What is accepted must be what the device relies
 * on: a frame inside its limits made only of the chain's bytes (and, for a
 * tap, the checked header copy), an ack byte inside a device-writable
 * buffer, a spread that never passes a buffer's room. A violation aborts.
 *
 * Input: [0] which parser (0 tx, 1 ctrl, 2 rx spread) [1..8] features
 * [9..10] mtu [11] tap, then for tx/ctrl a chain: [n] pieces, each
 * [len, 2 bytes][write flag], then the bytes the pieces hold; for the rx
 * spread: [n] rooms of 4 bytes, then an 8-byte total.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../virtio/net_req.h"
#include "check.h"

#define MAX_PIECES 80
#define BUF        (64u << 10)

static uint8_t buf[BUF];

/* Whether [p, p+len) lies inside one of the chain's pieces. */
static bool in_chain(const struct vq_chain *c, const void *p, size_t len, bool writable)
{
    for (unsigned i = 0; i < c->nseg; i++) {
        const uint8_t *b = c->seg[i].hva;
        if ((const uint8_t *)p >= b && (const uint8_t *)p + len <= b + c->seg[i].len &&
            (!writable || c->seg[i].write))
            return true;
    }
    return false;
}

/* The pieces as vq_pop() would hand them: readable first, within the buffer. */
static size_t make_chain(const uint8_t *p, size_t n, struct vq_chain *c)
{
    size_t off = 0, at = 0;
    bool seen_write = false;

    if (n < 1)
        return 0;
    unsigned count = p[0] % MAX_PIECES;
    off = 1;
    c->nseg = 0;
    c->in_len = c->out_len = 0;
    c->err = VQ_OK;
    for (unsigned i = 0; i < count && n - off >= 3; i++, off += 3) {
        uint32_t len = 1 + (uint32_t)(p[off] | p[off + 1] << 8) % 2048;
        bool w = p[off + 2] & 1;
        if (at + len > BUF)
            break;
        if (!w && seen_write)
            w = true; /* the queue refuses readable after writable: never seen here */
        seen_write |= w;
        c->seg[c->nseg++] = (struct vq_seg){.hva = buf + at, .gpa = at, .len = len, .write = w};
        if (w)
            c->in_len += len;
        else
            c->out_len += len;
        at += len;
    }
    memset(buf, 0, at);
    memcpy(buf, p + off, n - off < at ? n - off : at);
    return off;
}

static void tx(const struct net_tx_limits *l, const struct vq_chain *c)
{
    static struct net_tx t;
    uint64_t bytes = 0;

    if (!net_tx_parse(l, c, &t))
        return;
    CHECK(c->in_len == 0 && c->out_len >= NET_HDR);
    CHECK(t.niov >= 1 && t.niov <= NET_TX_IOV);
    for (int i = 0; i < t.niov; i++) {
        if (l->tap && i == 0) {
            CHECK(t.iov[0].iov_base == &t.hdr && t.iov[0].iov_len == NET_HDR);
            continue;
        }
        CHECK(t.iov[i].iov_len > 0 && in_chain(c, t.iov[i].iov_base, t.iov[i].iov_len, false));
        bytes += t.iov[i].iov_len;
    }
    CHECK(bytes == t.frame_len && bytes == c->out_len - NET_HDR);
    CHECK(t.frame_len >= NET_ETH_HLEN);
    if (t.hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE)
        CHECK(t.frame_len <= (uint64_t)l->mtu + NET_ETH_HLEN + NET_VLAN_HLEN);
    else
        CHECK(t.frame_len <= l->tx_max && t.hdr.gso_size != 0);
    CHECK(memcmp(&t.hdr, buf, NET_HDR) == 0); /* the pieces lie end to end from buf */
    if (t.hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
        CHECK(l->features & (1ULL << VIRTIO_NET_F_CSUM));
}

static void ctrl(const struct vq_chain *c)
{
    struct net_ctrl cmd;

    if (!net_ctrl_parse(c, &cmd))
        return;
    CHECK(cmd.ack && in_chain(c, cmd.ack, 1, true));
    CHECK(cmd.ack_gpa == (uint64_t)(cmd.ack - buf));
    CHECK(cmd.data_len <= sizeof(cmd.data));
    CHECK(cmd.data_len + 2 == c->out_len || (cmd.class == 0xff && cmd.data_len == 0));
}

static void spread(const uint8_t *p, size_t n)
{
    uint32_t room[64], len[64];
    uint64_t total = 0, placed = 0, cap = 0;

    if (n < 1)
        return;
    unsigned k = p[0] % 65;
    p++, n--;
    if (n < 4ull * k + 8)
        return;
    for (unsigned i = 0; i < k; i++) {
        memcpy(&room[i], p + 4 * i, 4);
        cap += room[i];
    }
    memcpy(&total, p + 4 * k, 8);
    unsigned used = net_rx_spread(room, k, total, len);
    CHECK(used <= k);
    for (unsigned i = 0; i < used; i++) {
        CHECK(len[i] <= room[i]);
        CHECK(i + 1 == used || len[i] == room[i]); /* each filled before the next */
        placed += len[i];
    }
    CHECK(placed == (total < cap ? total : cap));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vq_seg seg[MAX_PIECES];
    struct vq_chain c = {.seg = seg, .max_seg = MAX_PIECES};
    struct net_tx_limits l;

    if (size < 12)
        return 0;
    memcpy(&l.features, data + 1, 8);
    l.mtu = 68 + (uint32_t)(data[9] | data[10] << 8) % 9000;
    l.tap = data[11] & 1;
    l.tx_max = (l.features & ((1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_HOST_TSO6)))
                   ? NET_ETH_HLEN + NET_VLAN_HLEN + NET_GSO_MAX
                   : l.mtu + NET_ETH_HLEN + NET_VLAN_HLEN;
    switch (data[0] % 3) {
    case 0:
        make_chain(data + 12, size - 12, &c);
        tx(&l, &c);
        break;
    case 1:
        make_chain(data + 12, size - 12, &c);
        ctrl(&c);
        break;
    default:
        spread(data + 12, size - 12);
        break;
    }
    return 0;
}
