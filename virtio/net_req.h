/* SPDX-License-Identifier: MIT */
/*
 * virtio-net's parsing of what the guest gives, pure: a transmit chain
 * checked against the negotiated features and limits, a control command,
 * and how a received frame spreads over merged receive buffers. Touches
 * only the chain's buffers (reads them; nothing is written), so the unit
 * tests and the fuzzer drive it without a device.
 */
#ifndef RINGVM_VIRTIO_NET_REQ_H
#define RINGVM_VIRTIO_NET_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_net.h>

#include "virtqueue.h"

#define NET_HDR       ((uint32_t)sizeof(struct virtio_net_hdr_v1))
#define NET_ETH_HLEN  14
#define NET_VLAN_HLEN 4
#define NET_GSO_MAX   65535u /* the largest frame a GSO header may describe, less Ethernet */
#define NET_TX_IOV    64     /* pieces of one transmit */
#define NET_CTRL_MAX  64     /* bytes of a control command read */

/* What a transmit is checked against. */
struct net_tx_limits {
    uint64_t features; /* negotiated */
    uint32_t mtu;      /* an unsegmented frame: mtu + Ethernet + VLAN header at most */
    uint32_t tx_max;   /* a segmentation (GSO) frame at most, past the header */
    bool tap;          /* the backend takes the header too */
};

/* A checked transmit. For a tap, iov[0] is hdr: the copy checked, never the guest's bytes. */
struct net_tx {
    struct virtio_net_hdr_v1 hdr;
    struct iovec iov[NET_TX_IOV];
    int niov;
    uint64_t frame_len; /* the frame, without the header */
};

/*
 * Checks transmit chain c: device-readable only, a header asking only for
 * negotiated offloads, a frame of at least an Ethernet header and at most
 * the limit, in at most NET_TX_IOV pieces. True with *tx filled (tx must
 * not move afterwards: a tap's iov[0] points into it); false to give the
 * chain back unsent.
 */
bool net_tx_parse(const struct net_tx_limits *l, const struct vq_chain *c, struct net_tx *tx);

/* A control command (class, command, data) and where its ack byte goes. */
struct net_ctrl {
    uint8_t class, cmd;
    uint8_t data[NET_CTRL_MAX - 2];
    uint32_t data_len;
    uint8_t *ack; /* the first device-writable byte */
    uint64_t ack_gpa;
};

/*
 * Parses control chain c: at least class and command device-readable, then
 * a device-writable ack byte. False when there is nowhere to answer (the
 * chain goes back with length 0). A command longer than NET_CTRL_MAX is
 * kept with data_len 0 and class 0xff (answered with an error).
 */
bool net_ctrl_parse(const struct vq_chain *c, struct net_ctrl *cmd);

/*
 * How a received frame of total bytes (with its header) spreads over n
 * gathered chains of room[i] bytes, in order: len[i] bytes into each of
 * the chains it needs. Returns how many it needs (num_buffers); what does
 * not fit is not placed (the caller gathered room for it).
 */
unsigned net_rx_spread(const uint32_t *room, unsigned n, uint64_t total, uint32_t *len);

/* Copies up to len bytes of a chain's buffers from offset off into p; returns how many. */
uint32_t net_chain_read(const struct vq_seg *seg, unsigned nseg, uint32_t off, void *p,
                        uint32_t len);

/*
 * The buffers' bytes from offset skip on, as iovecs appended at iov[*niov]
 * (at most max), their length added to *bytes. False when shorter than
 * skip or in too many pieces.
 */
bool net_iov_from(const struct vq_seg *seg, unsigned nseg, uint32_t skip, struct iovec *iov,
                  int *niov, int max, uint64_t *bytes);

#endif
