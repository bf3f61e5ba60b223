/* SPDX-License-Identifier: MIT */
#include <string.h>
#include <linux/virtio_net.h>

#include "net_req.h"

uint32_t net_chain_read(const struct vq_seg *seg, unsigned nseg, uint32_t off, void *p,
                        uint32_t len)
{
    uint8_t *d = p;
    uint32_t got = 0;

    for (unsigned i = 0; i < nseg && got < len; i++) {
        if (off >= seg[i].len) {
            off -= seg[i].len;
            continue;
        }
        uint32_t k = seg[i].len - off < len - got ? seg[i].len - off : len - got;
        memcpy(d + got, (const uint8_t *)seg[i].hva + off, k);
        got += k;
        off = 0;
    }
    return got;
}

bool net_iov_from(const struct vq_seg *seg, unsigned nseg, uint32_t skip, struct iovec *iov,
                  int *niov, int max, uint64_t *bytes)
{
    for (unsigned i = 0; i < nseg; i++) {
        uint32_t len = seg[i].len, off = 0;

        if (skip) {
            off = skip < len ? skip : len;
            skip -= off;
        }
        if (off == len)
            continue;
        if (*niov == max)
            return false;
        iov[*niov].iov_base = (uint8_t *)seg[i].hva + off;
        iov[*niov].iov_len = len - off;
        *bytes += len - off;
        (*niov)++;
    }
    return skip == 0;
}

static bool has(uint64_t features, unsigned bit)
{
    return features & (1ULL << bit);
}

/*
 * Whether the header asks only for what was negotiated: checksum offload
 * with CSUM, TCP segmentation with HOST_TSO4/6, nothing else.
 */
static bool header_ok(uint64_t f, const struct virtio_net_hdr_v1 *h)
{
    if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(f, VIRTIO_NET_F_CSUM))
        return false;
    if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
        return false;
    switch (h->gso_type) {
    case VIRTIO_NET_HDR_GSO_NONE:
        return true;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        return has(f, VIRTIO_NET_F_HOST_TSO4) && h->gso_size;
    case VIRTIO_NET_HDR_GSO_TCPV6:
        return has(f, VIRTIO_NET_F_HOST_TSO6) && h->gso_size;
    default:
        return false;
    }
}

bool net_tx_parse(const struct net_tx_limits *l, const struct vq_chain *c, struct net_tx *tx)
{
    tx->niov = 0;
    tx->frame_len = 0;
    if (c->err != VQ_OK || c->in_len != 0 || c->out_len < NET_HDR)
        return false;
    net_chain_read(c->seg, c->nseg, 0, &tx->hdr, NET_HDR); /* copied once */
    if (!header_ok(l->features, &tx->hdr))
        return false;
    /* A socket gets the frame alone; a tap the header too, from the checked copy. */
    if (l->tap) {
        tx->iov[0] = (struct iovec){.iov_base = &tx->hdr, .iov_len = NET_HDR};
        tx->niov = 1;
    }
    if (!net_iov_from(c->seg, c->nseg, NET_HDR, tx->iov, &tx->niov, NET_TX_IOV, &tx->frame_len))
        return false;
    uint64_t max = tx->hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE
                       ? (uint64_t)l->mtu + NET_ETH_HLEN + NET_VLAN_HLEN
                       : (uint64_t)l->tx_max;
    return tx->frame_len >= NET_ETH_HLEN && tx->frame_len <= max;
}

bool net_ctrl_parse(const struct vq_chain *c, struct net_ctrl *cmd)
{
    uint8_t b[NET_CTRL_MAX];
    uint32_t len;

    cmd->ack = NULL;
    if (c->err != VQ_OK || c->in_len < 1 || c->out_len < 2)
        return false;
    for (unsigned i = 0; i < c->nseg && !cmd->ack; i++)
        if (c->seg[i].write) {
            cmd->ack = c->seg[i].hva;
            cmd->ack_gpa = c->seg[i].gpa;
        }
    if (c->out_len > NET_CTRL_MAX) {
        cmd->class = 0xff; /* longer than any command we know */
        cmd->cmd = 0;
        cmd->data_len = 0;
        return true;
    }
    len = net_chain_read(c->seg, c->nseg, 0, b, (uint32_t)c->out_len);
    cmd->class = b[0];
    cmd->cmd = b[1];
    cmd->data_len = len - 2;
    memcpy(cmd->data, b + 2, cmd->data_len);
    return true;
}

unsigned net_rx_spread(const uint32_t *room, unsigned n, uint64_t total, uint32_t *len)
{
    unsigned used = 0;

    for (uint64_t left = total; used < n && left; used++) {
        len[used] = left < room[used] ? (uint32_t)left : room[used];
        left -= len[used];
    }
    return used;
}
