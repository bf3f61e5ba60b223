/* SPDX-License-Identifier: MIT */
/*
 * Token buckets for a device's rate limits (struct rvm_rate_limit): one for
 * operations, one for bytes. Pure: time is passed in, so the tests and the
 * worker drive the same code.
 *
 * A bucket holds up to its burst and refills at its rate. A request goes
 * when every bucket holds its cost, and takes it. One costing more than a
 * bucket's burst goes when that bucket is full and leaves it in debt, which
 * later requests wait out: over time the rate holds exactly.
 */
#ifndef RINGVM_VIRTIO_RATELIMIT_H
#define RINGVM_VIRTIO_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <ringvm/virtio.h>

struct rate_bucket {
    uint64_t rate;  /* tokens a second; 0: no limit */
    int64_t burst;  /* most tokens held */
    int64_t tokens; /* may be negative: debt */
    uint64_t last;  /* ns of the last refill */
    uint64_t frac;  /* refill remainder, in token-nanoseconds */
};

struct rate_limit {
    struct rate_bucket ops, bytes;
};

/* A limit from its configuration (all zero: none), both buckets full at now. */
void rate_limit_init(struct rate_limit *l, const struct rvm_rate_limit *c, uint64_t now);

/* Whether any bucket limits. */
bool rate_limit_on(const struct rate_limit *l);

/* One operation of bytes: true when it may go now (its cost taken), false to wait. */
bool rate_limit_take(struct rate_limit *l, uint64_t bytes, uint64_t now);

/* How long until a request of bytes may go (after rate_limit_take() said no): > 0 ns. */
uint64_t rate_limit_wait_ns(struct rate_limit *l, uint64_t bytes, uint64_t now);

/*
 * For what is only known after it happened (a frame received): whether the
 * buckets are out of debt, so that more may come; and the charge afterwards,
 * which may put them in debt. The wait until ready, > 0 ns.
 */
bool rate_limit_ready(struct rate_limit *l, uint64_t now);
void rate_limit_charge(struct rate_limit *l, uint64_t bytes, uint64_t now);
uint64_t rate_limit_ready_wait_ns(struct rate_limit *l, uint64_t now);
/* How many operations of up to unit bytes the buckets hold now (to read no more than that). */
uint64_t rate_limit_room(struct rate_limit *l, uint64_t unit, uint64_t now);

/* 0, or -EINVAL for a limit no bucket can hold (a rate without room for one op). */
int rate_limit_check(const struct rvm_rate_limit *c);

#endif
