/* SPDX-License-Identifier: MIT */
/*
 * virtio-net: receive/transmit queue pairs on a frame backend (a tap, one
 * fd per pair, or a connected SOCK_SEQPACKET or SOCK_DGRAM socket whose
 * messages are whole Ethernet frames). One worker thread and one io_uring
 * per pair take the guest's notifications, move frames between the backend
 * and guest buffers directly, and signal completions with one interrupt per
 * batch. Receive buffers are filled only while the guest has posted some:
 * with none, nothing is read (the backend's own buffer holds what comes,
 * the VMM neither queues nor drops).
 */
#ifndef RINGVM_VIRTIO_NET_H
#define RINGVM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include <ringvm/virtio.h>

struct rvm_vm;
struct virtio_net;

struct virtio_net_opts {
    /* The backend, one fd per queue pair; taken over (closed with the VM, or at once on failure).
     */
    int fds[RVM_NET_MAX_QUEUE_PAIRS];
    unsigned nfds;    /* 0 means 1; more than 1 (taps only) offers MQ */
    bool tap;         /* fds are a tap's queues (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, 12-byte headers) */
    uint8_t mac[6];   /* offered in config space */
    uint16_t mtu;     /* 0: 1500 */
    uint32_t poll_us; /* device-side polling window; 0: none */
    struct rvm_rate_limit tx_limit, rx_limit;
};

/*
 * Opens tap interface name (created if it does not exist, in the calling
 * thread's network namespace) for a device: queues fds into fds[] (more
 * than one: IFF_MULTI_QUEUE), no packet info, 12-byte virtio-net headers,
 * no offloads until the guest takes some. 0 or -errno (nothing left open).
 */
int virtio_net_open_tap(const char *name, unsigned queues, int *fds);

/* Attaches a virtio-mmio network device at base on IOAPIC pin gsi. */
int virtio_net_attach(struct rvm_vm *vm, uint64_t base, uint32_t gsi,
                      const struct virtio_net_opts *o, struct virtio_net **out);

struct virtio_net_stats {
    uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped;
};
void virtio_net_stats(const struct virtio_net *n, struct virtio_net_stats *s);

#endif
