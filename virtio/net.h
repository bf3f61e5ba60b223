/* SPDX-License-Identifier: MIT */
/*
 * virtio-net: one receive/transmit queue pair on a frame backend (a
 * connected SOCK_SEQPACKET or SOCK_DGRAM socket whose messages are whole
 * Ethernet frames; tap comes next). One worker thread and one io_uring per
 * device take the guest's notifications, move frames between the backend
 * and guest buffers directly, and signal completions with one interrupt per
 * batch. Receive buffers are filled only while the guest has posted some:
 * with none, nothing is read (the backend's own buffer holds what comes,
 * the VMM neither queues nor drops).
 */
#ifndef RINGVM_VIRTIO_NET_H
#define RINGVM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

struct rvm_vm;
struct virtio_net;

struct virtio_net_opts {
    int fd;           /* the backend; taken over (closed with the VM, or at once on failure) */
    bool tap;         /* fd is a tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, 12-byte headers) */
    uint8_t mac[6];   /* offered in config space */
    uint16_t mtu;     /* 0: 1500 */
    uint32_t poll_us; /* device-side polling window; 0: none */
};

/*
 * Opens tap interface name (created if it does not exist, in the calling
 * thread's network namespace) for a device: no packet info, 12-byte
 * virtio-net headers, no offloads. The fd, or -errno.
 */
int virtio_net_open_tap(const char *name);

/* Attaches a virtio-mmio network device at base on IOAPIC pin gsi. */
int virtio_net_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_net_opts *o, struct virtio_net **out);

struct virtio_net_stats {
    uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped;
};
void virtio_net_stats(const struct virtio_net *n, struct virtio_net_stats *s);

#endif
