/* SPDX-License-Identifier: MIT */
/*
 * Host-side network plumbing for the bench guest's net-* workloads, shared
 * by the benchmarks and the tests: a network namespace of the calling
 * thread's own, interfaces configured in it, plain taps, and the frames the
 * guest's protocol uses (guest/abi.h). Everything here acts on the calling
 * thread's current namespace; nothing leaves it.
 */
#ifndef RINGVM_GUEST_HOST_NETNS_H
#define RINGVM_GUEST_HOST_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The addresses the bench guest uses by default (host byte order). */
#define BG_NET_HOST_IP  0xc0a84d01u /* 192.168.77.1 */
#define BG_NET_GUEST_IP 0xc0a84d02u /* 192.168.77.2 */
#define BG_NET_PORT     5201

/*
 * Moves the calling thread into a new network namespace (loopback up),
 * remembering the one it leaves in *home. 0, or -errno (not root): the
 * thread stays where it was.
 */
int bg_netns_enter(int *home);
/* Back to home (and closes it). The namespace goes with its last fd and task. */
int bg_netns_leave(int home);

/* Sets ip/prefix on interface ifname and brings it up. 0 or -errno. */
int bg_if_up(const char *ifname, uint32_t ip, int prefix);
/* A permanent neighbour entry: ip is at mac on ifname (no ARP). 0 or -errno. */
int bg_neigh_add(const char *ifname, uint32_t ip, const uint8_t mac[6]);
/* The interface's MAC address. 0 or -errno. */
int bg_if_mac(const char *ifname, uint8_t mac[6]);

/* A tap of the caller's: IFF_TAP | IFF_NO_PI, no virtio-net header. fd or -errno. */
int bg_tap_open(const char *name);

/* A UDP socket bound to ip:port (0: any), with receive buffer rcvbuf (0: default). fd or -errno. */
int bg_udp_socket(uint32_t ip, uint16_t port, int rcvbuf);

/* The bench guest's UDP payload for sequence number seq, len >= 8 bytes. */
void bg_net_payload(uint8_t *p, uint64_t seq, size_t len);
/* Checks one; *seq gets its sequence number. */
bool bg_net_payload_check(const uint8_t *p, size_t len, uint64_t *seq);

/*
 * An Ethernet frame from (smac, sip) to (dmac, dip): an IPv4 UDP datagram
 * (sport -> dport, payload len bytes) or an ICMP echo request (id, seq, 56
 * bytes). Returns the frame's length (padded to 60).
 */
size_t bg_frame_udp(uint8_t *f, const uint8_t smac[6], uint32_t sip, const uint8_t dmac[6],
                    uint32_t dip, uint16_t sport, uint16_t dport, const uint8_t *payload,
                    size_t len);
size_t bg_frame_echo(uint8_t *f, const uint8_t smac[6], uint32_t sip, const uint8_t dmac[6],
                     uint32_t dip, uint16_t id, uint16_t seq);
/* Whether f (len bytes) is an ICMP echo reply with this id and seq. */
bool bg_frame_is_echo_reply(const uint8_t *f, size_t len, uint16_t id, uint16_t seq);

/* The Internet checksum of len bytes. */
uint16_t bg_inet_csum(const void *p, size_t len);

#endif
