/* SPDX-License-Identifier: MIT */
/* Token buckets for a device's rate limits (ratelimit.h). */
#include <errno.h>

#include "ratelimit.h"

#define NS 1000000000ULL
/* A burst left 0 holds a tenth of a second's worth. */
#define DEFAULT_BURST_DIV 10

static void bucket_init(struct rate_bucket *b, uint64_t rate, uint64_t burst, uint64_t now)
{
    b->rate = rate;
    if (!burst)
        burst = rate / DEFAULT_BURST_DIV ? rate / DEFAULT_BURST_DIV : 1;
    b->burst = burst > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)burst;
    b->tokens = b->burst;
    b->last = now;
    b->frac = 0;
}

/* Tokens for the time since the last refill, up to the burst; the remainder kept. */
static void bucket_refill(struct rate_bucket *b, uint64_t now)
{
    if (!b->rate || now <= b->last)
        return;
    uint64_t dt = now - b->last;

    b->last = now;
    if (dt >= NS * 4 && b->tokens >= 0) { /* idle a while: full, whatever the rate */
        b->tokens = b->burst;
        b->frac = 0;
        return;
    }
    unsigned __int128 t = (unsigned __int128)dt * b->rate + b->frac, q = t / NS;
    uint64_t add = q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;

    b->frac = (uint64_t)(t % NS);
    if (add >= (uint64_t)(b->burst - b->tokens)) {
        b->tokens = b->burst;
        b->frac = 0;
    } else {
        b->tokens += (int64_t)add;
    }
}

/* What a bucket must hold for a request costing cost to go: its cost, or all of it. */
static int64_t bucket_need(const struct rate_bucket *b, uint64_t cost)
{
    return cost < (uint64_t)b->burst ? (int64_t)cost : b->burst;
}

/* Nanoseconds until the bucket holds need. */
static uint64_t bucket_wait(const struct rate_bucket *b, int64_t need)
{
    if (!b->rate || b->tokens >= need)
        return 0;
    unsigned __int128 want = (unsigned __int128)(uint64_t)(need - b->tokens) * NS;

    want = want > b->frac ? want - b->frac : 0;
    uint64_t ns = (uint64_t)((want + b->rate - 1) / b->rate);
    return ns ? ns : 1;
}

static uint64_t cost_of(uint64_t bytes)
{
    return bytes > (uint64_t)INT64_MAX / 4 ? (uint64_t)INT64_MAX / 4 : bytes;
}

void rate_limit_init(struct rate_limit *l, const struct rvm_rate_limit *c, uint64_t now)
{
    static const struct rvm_rate_limit none;

    if (!c)
        c = &none;
    bucket_init(&l->ops, c->ops_per_s, c->ops_burst, now);
    bucket_init(&l->bytes, c->bytes_per_s, c->bytes_burst, now);
}

bool rate_limit_on(const struct rate_limit *l)
{
    return l->ops.rate || l->bytes.rate;
}

bool rate_limit_take(struct rate_limit *l, uint64_t bytes, uint64_t now)
{
    uint64_t cost = cost_of(bytes);

    if (!rate_limit_on(l))
        return true;
    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    if ((l->ops.rate && l->ops.tokens < bucket_need(&l->ops, 1)) ||
        (l->bytes.rate && l->bytes.tokens < bucket_need(&l->bytes, cost)))
        return false;
    if (l->ops.rate)
        l->ops.tokens -= 1;
    if (l->bytes.rate)
        l->bytes.tokens -= (int64_t)cost; /* past zero for one larger than the burst: debt */
    return true;
}

uint64_t rate_limit_wait_ns(struct rate_limit *l, uint64_t bytes, uint64_t now)
{
    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    uint64_t a = bucket_wait(&l->ops, bucket_need(&l->ops, 1)),
             b = bucket_wait(&l->bytes, bucket_need(&l->bytes, cost_of(bytes)));
    uint64_t w = a > b ? a : b;

    return w ? w : 1;
}

bool rate_limit_ready(struct rate_limit *l, uint64_t now)
{
    if (!rate_limit_on(l))
        return true;
    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    return (!l->ops.rate || l->ops.tokens > 0) && (!l->bytes.rate || l->bytes.tokens > 0);
}

void rate_limit_charge(struct rate_limit *l, uint64_t bytes, uint64_t now)
{
    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    if (l->ops.rate)
        l->ops.tokens -= 1;
    if (l->bytes.rate)
        l->bytes.tokens -= (int64_t)cost_of(bytes);
}

uint64_t rate_limit_ready_wait_ns(struct rate_limit *l, uint64_t now)
{
    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    uint64_t a = bucket_wait(&l->ops, 1), b = bucket_wait(&l->bytes, 1);
    uint64_t w = a > b ? a : b;

    return w ? w : 1;
}

uint64_t rate_limit_room(struct rate_limit *l, uint64_t unit, uint64_t now)
{
    uint64_t room = UINT64_MAX;

    bucket_refill(&l->ops, now);
    bucket_refill(&l->bytes, now);
    if (l->ops.rate)
        room = l->ops.tokens > 0 ? (uint64_t)l->ops.tokens : 0;
    if (l->bytes.rate && unit) {
        uint64_t b = l->bytes.tokens > 0 ? (uint64_t)l->bytes.tokens / unit : 0;
        room = b < room ? b : room;
    }
    return room;
}

int rate_limit_check(const struct rvm_rate_limit *c)
{
    if (!c)
        return 0;
    if ((c->ops_burst && !c->ops_per_s) || (c->bytes_burst && !c->bytes_per_s))
        return -EINVAL; /* a burst without a rate limits nothing: surely a mistake */
    return 0;
}
