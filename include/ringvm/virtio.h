/* SPDX-License-Identifier: MIT */
/*
 * Virtio devices on the virtio-mmio transport. Each device gets the VM's
 * next slot: a 4 KiB window from RVM_VIRTIO_MMIO_BASE and the next IOAPIC
 * pin from RVM_VIRTIO_GSI_BASE. Guests find slots on their command line,
 * Linux-style (`virtio_mmio.device=<size>@<base>:<irq>`), which the attach
 * functions write out for the embedder to append.
 */
#ifndef RINGVM_VIRTIO_H
#define RINGVM_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rvm_vm;

#define RVM_VIRTIO_MMIO_BASE   0xd0100000ULL
#define RVM_VIRTIO_MMIO_STRIDE 0x1000ULL
#define RVM_VIRTIO_GSI_BASE    5
#define RVM_VIRTIO_MAX_DEVICES 16

#define RVM_BLK_POLL_DEFAULT_US 32
#define RVM_BLK_NO_POLL         UINT32_MAX
#define RVM_NET_POLL_DEFAULT_US 32
#define RVM_NET_NO_POLL         UINT32_MAX
#define RVM_NET_MAX_QUEUE_PAIRS 7 /* with the control queue, the transport's 16 queues */

/*
 * A device's rate limit (token buckets, as Firecracker's): so many
 * operations and bytes a second, each with a burst the bucket holds (0: a
 * tenth of a second's worth). A zero rate is no limit. Requests over the
 * limit wait in the device, in order, and go when the buckets allow; one
 * larger than the burst goes when its bucket is full, and the rate holds
 * over time. A snapshot lets what waits go first, unlimited.
 */
struct rvm_rate_limit {
    uint64_t ops_per_s, bytes_per_s;
    uint64_t ops_burst, bytes_burst;
};

/*
 * What a disk does when its backend fails a request (QEMU's werror and
 * rerror). Stopping keeps the failed requests and takes no new ones; the VM
 * pauses (rvm_vm_device_stop() says which disk and why) and rvm_vm_resume()
 * retries them from where they stopped: a host that frees or grows the
 * filesystem loses nothing. A reset of the device by the guest drops them.
 */
enum rvm_blk_on_error {
    RVM_BLK_ERROR_REPORT = 0,  /* the guest gets IOERR for that request (the default) */
    RVM_BLK_ERROR_STOP_ENOSPC, /* ENOSPC and EDQUOT stop the VM; other errors are reported */
    RVM_BLK_ERROR_STOP,        /* every backend error stops the VM */
};

struct rvm_blk_config {
    const char *path;    /* backing file (a raw image), opened O_DIRECT where possible */
    bool ro;             /* offer VIRTIO_BLK_F_RO and refuse writes */
    uint16_t queues;     /* 0 means 1; more than 1 offers VIRTIO_BLK_F_MQ */
    uint16_t queue_size; /* largest queue the driver may set up; 0 means 256 */
    /*
     * Device-side polling: after it has had work, the worker keeps watching
     * the available rings and its completions for this many microseconds,
     * with guest notifications suppressed, before it sleeps again. Saves the
     * guest's notify exit and the worker's wake-ups per request, at the cost
     * of the worker's CPU while it polls; an idle device never polls. 0: the
     * default, RVM_BLK_POLL_DEFAULT_US (QEMU's iothreads poll for a similar
     * 32 us by default); RVM_BLK_NO_POLL: never poll.
     */
    uint32_t poll_us;
    enum rvm_blk_on_error on_error;
    struct rvm_rate_limit limit; /* requests (ops) and their data (bytes); all 0: none */
};

/*
 * Adds a virtio-blk device in the VM's next virtio slot and writes its
 * command-line word into cmdline_word[0..len) (may be NULL). Before
 * rvm_vm_start(). Returns 0; -ENOSPC when the slots are used up or the word
 * does not fit in len; -errno from opening the file (with a log line).
 */
int rvm_vm_add_virtio_blk(struct rvm_vm *vm, const struct rvm_blk_config *config,
                          char *cmdline_word, size_t len);

/*
 * virtio-net (docs/networking.md). The backend is a tap, opened
 * by name (created if it does not exist, in the calling thread's network
 * namespace), or an fd the device takes over: a connected SOCK_SEQPACKET
 * or SOCK_DGRAM socket carrying whole Ethernet frames, or an open tap
 * (fd_is_tap) set up with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and 12-byte
 * headers. The fd is the VM's from the call on, failed or not.
 */
struct rvm_net_config {
    const char *tap; /* a tap interface name, or NULL for fd */
    int fd;
    bool fd_is_tap;
    uint8_t mac[6]; /* all zero: 52:54:00:52:56:<slot> */
    uint16_t mtu;   /* 0: 1500 */
    /* Device-side polling as for virtio-blk: 0 is RVM_NET_POLL_DEFAULT_US; RVM_NET_NO_POLL. */
    uint32_t poll_us;
    /*
     * Queue pairs (taps by name only): 0 means 1; more opens the tap with
     * IFF_MULTI_QUEUE, one fd and one worker per pair, and offers
     * VIRTIO_NET_F_MQ with the control queue that enables them.
     */
    uint16_t queues;
    /*
     * Rate limits for the device as a whole (all its queue pairs): frames
     * the guest sends (tx) and frames it is given (rx). Over the limit, a
     * send waits in the device and receives wait in the backend (a tap's
     * queue, which drops when full, as a busy link would). All 0: none.
     */
    struct rvm_rate_limit tx_limit, rx_limit;
};

/* Adds a virtio-net device in the VM's next virtio slot; as rvm_vm_add_virtio_blk(). */
int rvm_vm_add_virtio_net(struct rvm_vm *vm, const struct rvm_net_config *config,
                          char *cmdline_word, size_t len);

#endif
