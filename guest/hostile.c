/* SPDX-License-Identifier: MIT */
/*
 * test=hostile: the bench guest as a hostile driver. Each case breaks one
 * rule of virtio 1.x against the virtio-blk device, the virtio-net device
 * or their virtio-mmio transport, and checks what a VMM must do about it:
 * fail that request (a used entry of length 0, or an IOERR/UNSUPP status)
 * or, for a ring it can no longer trust, set NEEDS_RESET; never write
 * outside the buffers it was given (every other byte of the case's region
 * keeps its canary), and, while the ring is sound, keep serving (a good
 * request right after succeeds). One line per case,
 *
 *     CASE <name> ok            or    CASE <name> FAIL <why>
 *
 * then RESULT test=hostile cases=<n> failed=<f> sent=<good frames sent>
 * and BG_EXIT_OK. Devices: the first virtio-blk and the first virtio-net
 * device of the command line (either may be absent: its cases are then
 * not run, and the count says so).
 */
#include <stdint.h>

#include "abi.h"
#include "bg.h"
#include "vio.h"

#define REGION      BG_BLK_BUF_ADDR /* the cases' buffers, canaries everywhere else */
#define REGION_SIZE 0x40000u
#define CANARY      0xa5
#define HDR_AT      (REGION + 0x0000)
#define DATA_AT     (REGION + 0x1000) /* 8 KiB */
#define STATUS_AT   (REGION + 0x3000)
#define TABLE_AT    (REGION + 0x4000) /* indirect tables */
#define FRAME_AT    (REGION + 0x8000)
#define BIG_AT      (REGION + 0x10000)  /* data far past a buffer's limits: not read */
#define SHADOW_AT   (REGION + 0x400000) /* the region as the driver left it */
#define WAIT_CYCLES (40ULL * 1000 * 1000 * 1000)

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK           0
#define VIRTIO_BLK_S_IOERR        1
#define VIRTIO_BLK_S_UNSUPP       2
#define VRING_DESC_F_INDIRECT     4
#define NET_HDR                   12

enum outcome { OUT_USED, OUT_RESET, OUT_TIMEOUT };

static struct vdev dev;
static struct vq q;
static uint8_t vq_mem[VQ_MEM_SIZE] __attribute__((aligned(4096)));
static uint64_t capacity;
static uint64_t cases, failed, sent;
static struct {
    uint64_t at, len;
} windows[4]; /* what the device may write in this case */
static unsigned nwindows;

static uint8_t *at(uint64_t gpa)
{
    return (uint8_t *)(uintptr_t)gpa;
}

static void fill(uint64_t gpa, uint8_t v, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        at(gpa)[i] = v;
}

static void may_write(uint64_t gpa, uint64_t len)
{
    windows[nwindows].at = gpa;
    windows[nwindows].len = len;
    nwindows++;
}

/* The region as the driver left it before it handed it over: canaries and its own inputs. */
static void freeze(void)
{
    for (uint64_t i = 0; i < REGION_SIZE; i += 8)
        *(uint64_t *)at(SHADOW_AT + i) = *(uint64_t *)at(REGION + i);
}

/* Every byte outside the case's windows is as the driver left it. */
static int untouched(void)
{
    for (uint64_t i = 0; i < REGION_SIZE; i++) {
        uint64_t a = REGION + i;
        int inside = 0;
        for (unsigned w = 0; w < nwindows; w++)
            inside |= a >= windows[w].at && a < windows[w].at + windows[w].len;
        if (!inside && *at(a) != *at(SHADOW_AT + i))
            return 0;
    }
    return 1;
}

/* Reset, features (want), queue 0 (and 1 for a NIC), DRIVER_OK. 0 if the device refused. */
static int bring_up(uint32_t id, uint64_t want)
{
    vdev_init(&dev, id, want);
    vq_init(&dev, &q, 0, vq_mem, VQ_SIZE_MAX, 1);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return !(vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET);
}

static void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    q.desc[i] = (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

static void offer(uint16_t head)
{
    freeze();
    VQ_AVAIL_RING(&q, q.avail_idx % q.size) = head;
    q.avail_idx++;
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, q.index);
}

/* The device's answer: the next used entry, or NEEDS_RESET. */
static enum outcome wait_outcome(struct vring_used_elem *e)
{
    uint64_t t0 = rdtsc();

    while (rdtsc() - t0 < WAIT_CYCLES) {
        barrier();
        if (VQ_USED_IDX(&q) != q.used_seen) {
            *e = VQ_USED_RING(&q)[q.used_seen % q.size];
            q.used_seen++;
            return OUT_USED;
        }
        if (vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
            return OUT_RESET;
        cpu_pause();
    }
    return OUT_TIMEOUT;
}

static const char *expect_used(uint16_t head, uint32_t len)
{
    struct vring_used_elem e;
    enum outcome o = wait_outcome(&e);

    if (o == OUT_RESET)
        return "NEEDS_RESET where the request alone should fail";
    if (o == OUT_TIMEOUT)
        return "no answer";
    if (e.id != head)
        return "used entry with another id";
    if (e.len != len)
        return "used length not as expected";
    return 0;
}

static const char *expect_reset(void)
{
    struct vring_used_elem e;
    enum outcome o = wait_outcome(&e);

    return o == OUT_RESET ? 0 : o == OUT_USED ? "served a corrupt ring" : "no NEEDS_RESET";
}

/* ---- virtio-blk ---- */

/* A request: header (type, sector), one data buffer, the status byte. */
static void blk_req(uint16_t head, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                    int dev_writes)
{
    uint32_t *h = (uint32_t *)at(HDR_AT);

    h[0] = type;
    h[1] = 0;
    h[2] = (uint32_t)sector;
    h[3] = (uint32_t)(sector >> 32);
    desc(head, HDR_AT, 16, VRING_DESC_F_NEXT, (uint16_t)(head + 1));
    desc((uint16_t)(head + 1), data, len, VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0),
         (uint16_t)(head + 2));
    desc((uint16_t)(head + 2), STATUS_AT, 1, VRING_DESC_F_WRITE, 0);
}

static const char *expect_status(uint16_t head, uint32_t len, uint8_t status)
{
    const char *why = expect_used(head, len);

    if (why)
        return why;
    return *at(STATUS_AT) == status ? 0 : "wrong status";
}

/* A good read after the case: the device still serves its queue. */
static const char *blk_sound(void)
{
    fill(DATA_AT, CANARY, 512);
    blk_req(200, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    offer(200);
    return expect_status(200, 513, VIRTIO_BLK_S_OK) ? "no good request served after it" : 0;
}

typedef const char *(*case_fn)(void);

static const char *blk_no_status(void)
{
    desc(0, HDR_AT, 16, 0, 0); /* a header alone: nowhere to answer */
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_short_header(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    q.desc[0].len = 8;
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_writable_header(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    q.desc[0].flags |= VRING_DESC_F_WRITE; /* every buffer writable: a header it cannot read */
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_read_past_end(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, capacity, DATA_AT, 512, 1);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_sector_overflow(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, ~0ULL - 1, DATA_AT, 1024, 1);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_partial_sector(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 100, 1);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_read_into_readable(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 0); /* IN, data not device-writable */
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_write_from_writable(void)
{
    blk_req(0, VIRTIO_BLK_T_OUT, 0, DATA_AT, 512, 1);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_unknown_type(void)
{
    blk_req(0, 99, 0, DATA_AT, 512, 1);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_UNSUPP);
}

static const char *blk_desc_loop(void)
{
    desc(0, HDR_AT, 16, VRING_DESC_F_NEXT, 1);
    desc(1, DATA_AT, 512, VRING_DESC_F_NEXT, 0); /* back to 0: a loop */
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_next_past_table(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    q.desc[1].next = 1000;
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_buffer_outside_ram(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, 1ULL << 40, 512, 1);
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_buffer_wraps(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, ~0ULL - 255, 512, 1);
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_buffer_past_ram_end(void)
{
    /* Starts in RAM (48 MiB of a 64 MiB guest), ends 1 GiB later. */
    blk_req(0, VIRTIO_BLK_T_IN, 0, 48ULL << 20, 1u << 30, 1);
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_zero_length(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 0, 1);
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_indirect_not_negotiated(void)
{
    struct vring_desc *t = (struct vring_desc *)at(TABLE_AT);

    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    t[0] = q.desc[0];
    desc(0, TABLE_AT, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    offer(0);
    return expect_used(0, 0);
}

static const char *blk_seg_max(void)
{
    /* 130 data buffers of 512 bytes: past seg_max (128). */
    desc(0, HDR_AT, 16, VRING_DESC_F_NEXT, 1);
    for (uint16_t i = 1; i <= 130; i++)
        desc(i, DATA_AT, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, (uint16_t)(i + 1));
    desc(131, STATUS_AT, 1, VRING_DESC_F_WRITE, 0);
    uint32_t *h = (uint32_t *)at(HDR_AT);
    h[0] = VIRTIO_BLK_T_IN, h[1] = h[2] = h[3] = 0;
    offer(0);
    return expect_used(0, 0); /* more pieces than the queue takes for the device: refused */
}

static const char *blk_size_max(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, BIG_AT, 2u << 20, 1); /* one 2 MiB buffer: past size_max */
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_discard_bad_flags(void)
{
    uint32_t *range = (uint32_t *)at(DATA_AT);

    range[0] = 8, range[1] = 0, range[2] = 8, range[3] = 1; /* flags must be 0 */
    blk_req(0, VIRTIO_BLK_T_DISCARD, 0, DATA_AT, 16, 0);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_discard_past_end(void)
{
    uint32_t *range = (uint32_t *)at(DATA_AT);

    range[0] = (uint32_t)capacity, range[1] = (uint32_t)(capacity >> 32), range[2] = 8,
    range[3] = 0;
    blk_req(0, VIRTIO_BLK_T_DISCARD, 0, DATA_AT, 16, 0);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_zeroes_two_ranges(void)
{
    fill(DATA_AT, 0, 32);
    blk_req(0, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_AT, 32, 0);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_get_id_readonly(void)
{
    blk_req(0, VIRTIO_BLK_T_GET_ID, 0, DATA_AT, 20, 0);
    offer(0);
    return expect_status(0, 1, VIRTIO_BLK_S_IOERR);
}

static const char *blk_status_in_big_buffer(void)
{
    /* Data and status share the last buffer: the status is its last byte, nothing past it. */
    desc(0, HDR_AT, 16, VRING_DESC_F_NEXT, 1);
    desc(1, DATA_AT, 513, VRING_DESC_F_WRITE, 0);
    uint32_t *h = (uint32_t *)at(HDR_AT);
    h[0] = VIRTIO_BLK_T_IN, h[1] = h[2] = h[3] = 0;
    offer(0);
    const char *why = expect_used(0, 513);
    return why ? why : *at(DATA_AT + 512) == VIRTIO_BLK_S_OK ? 0 : "status not in the last byte";
}

static const char *blk_notify_storm(void)
{
    for (int i = 0; i < 20000; i++)
        vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    for (int i = 0; i < 100; i++)
        vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 7); /* a queue it does not have */
    return 0;
}

static const char *blk_used_event_games(void)
{
    /* The driver scribbles the used ring's header and the avail ring's flags. */
    VQ_USED_IDX(&q) = 1234;
    VQ_AVAIL_FLAGS(&q) = 0xffff;
    barrier();
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    offer(0);
    /* The device keeps its own used index: its entry lands at slot 0 and idx says 1. */
    uint64_t t0 = rdtsc();
    while (VQ_USED_IDX(&q) == 1234 && rdtsc() - t0 < WAIT_CYCLES)
        cpu_pause();
    VQ_AVAIL_FLAGS(&q) = VRING_AVAIL_F_NO_INTERRUPT;
    if (vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET)
        return "NEEDS_RESET for a scribbled used header";
    if (VQ_USED_IDX(&q) != 1 || VQ_USED_RING(&q)[0].id != 0 || *at(STATUS_AT) != VIRTIO_BLK_S_OK)
        return "the used ring not the device's own";
    q.used_seen = 1;
    return 0;
}

static const char *blk_head_past_queue(void)
{
    VQ_AVAIL_RING(&q, q.avail_idx % q.size) = (uint16_t)(q.size + 5);
    q.avail_idx++;
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return expect_reset();
}

static const char *blk_avail_jump(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    freeze();
    q.avail_idx = (uint16_t)(q.avail_idx + q.size + 1); /* more available than the queue holds */
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return expect_reset();
}

static const char *blk_avail_backwards(void)
{
    blk_req(0, VIRTIO_BLK_T_IN, 0, DATA_AT, 512, 1);
    offer(0);
    const char *why = expect_status(0, 513, VIRTIO_BLK_S_OK);
    if (why)
        return why;
    q.avail_idx = (uint16_t)(q.avail_idx - 2); /* the index moves back past what was taken */
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return expect_reset();
}

static const char *blk_setup_while_running(void)
{
    /* Queue registers after DRIVER_OK are ignored: the queue goes on where it is. */
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_SEL, 0);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NUM, 2);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(uintptr_t)q.avail);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 0);
    return 0;
}

static const char *blk_features_after_ok(void)
{
    uint32_t before = vdev_rd(&dev, VIRTIO_MMIO_STATUS);

    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, before & ~STATUS_DRIVER_OK); /* taking a bit back */
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) == before ? 0 : "status changed";
}

static const char *mmio_config_overrun(void)
{
    /*
     * Reads past the config space, and of register widths it does not take,
     * give nothing of the device's (all zeros or all ones, as an unclaimed
     * read), and writes there change nothing.
     */
    uint32_t v1 = rd32(dev.base + 0x100 + 0xfc), v2 = rd32(dev.base + 0x100 + 72);
    if ((v1 && v1 != 0xffffffffu) || (v2 && v2 != 0xffffffffu))
        return "a config read past its end gave data";
    wr32(dev.base + 0x100 + 0xf0, 0x12345678);
    uint16_t s16 = *(volatile uint16_t *)(uintptr_t)(dev.base + VIRTIO_MMIO_STATUS);
    if (s16 && s16 != 0xffff)
        return "a 2-byte register read gave data";
    *(volatile uint8_t *)(uintptr_t)(dev.base + VIRTIO_MMIO_STATUS) = 0; /* not a reset */
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_DRIVER_OK ? 0 : "a 1-byte write reset it";
}

static const char *mmio_queue_sel_past_end(void)
{
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_SEL, 99);
    if (vdev_rd(&dev, VIRTIO_MMIO_QUEUE_NUM_MAX) != 0)
        return "a queue it does not have has a size";
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NUM, 8);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_SEL, 0);
    return 0;
}

static const char *mmio_ack_garbage(void)
{
    vdev_wr(&dev, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffffu);
    vdev_wr(&dev, VIRTIO_MMIO_INTERRUPT_ACK, 0);
    return vdev_rd(&dev, VIRTIO_MMIO_INTERRUPT_STATUS) & ~3u ? "ISR bits it does not have" : 0;
}

static const char *blk_config_write(void)
{
    wr32(dev.base + VIRTIO_MMIO_CONFIG, 0); /* capacity: read-only config */
    wr32(dev.base + VIRTIO_MMIO_CONFIG + 4, 0);
    return vdev_config64(&dev, 0) == capacity ? 0 : "config changed by the driver";
}

static const char *blk_reset_in_flight(void)
{
    for (uint16_t i = 0; i < 8; i++) {
        desc((uint16_t)(3 * i), HDR_AT, 16, VRING_DESC_F_NEXT, (uint16_t)(3 * i + 1));
        desc((uint16_t)(3 * i + 1), DATA_AT, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
             (uint16_t)(3 * i + 2));
        desc((uint16_t)(3 * i + 2), STATUS_AT, 1, VRING_DESC_F_WRITE, 0);
        VQ_AVAIL_RING(&q, q.avail_idx % q.size) = (uint16_t)(3 * i);
        q.avail_idx++;
    }
    uint32_t *h = (uint32_t *)at(HDR_AT);
    h[0] = VIRTIO_BLK_T_IN, h[1] = h[2] = h[3] = 0;
    may_write(DATA_AT, 4096);
    freeze();
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, 0); /* at once, with reads in flight */
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) == 0 ? 0 : "reset not done";
}

/* With INDIRECT_DESC negotiated: tables that break its rules. */
static const char *blk_indirect_case(int kind)
{
    struct vring_desc *t = (struct vring_desc *)at(TABLE_AT);

    if (!bring_up(VIRTIO_ID_BLOCK, 1ULL << 28))
        return "the device did not come up";
    t[0] = (struct vring_desc){HDR_AT, 16, VRING_DESC_F_NEXT, 1};
    t[1] = (struct vring_desc){DATA_AT, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
    t[2] = (struct vring_desc){STATUS_AT, 1, VRING_DESC_F_WRITE, 0};
    uint32_t *h = (uint32_t *)at(HDR_AT);
    h[0] = VIRTIO_BLK_T_IN, h[1] = h[2] = h[3] = 0;
    uint32_t len = 3 * 16;
    if (kind == 0)
        t[1] = (struct vring_desc){TABLE_AT + 0x100, 16, VRING_DESC_F_INDIRECT, 0}; /* nested */
    else if (kind == 1)
        len = 3 * 16 - 4; /* not whole descriptors */
    else if (kind == 2)
        t[2].next = 7, t[2].flags |= VRING_DESC_F_NEXT; /* past the table's end */
    desc(0, TABLE_AT, len, VRING_DESC_F_INDIRECT, 0);
    offer(0);
    if (kind == 3) /* a good one: the table is read, the request served */
        return expect_status(0, 513, VIRTIO_BLK_S_OK);
    return expect_used(0, 0);
}

static const char *blk_indirect_nested(void)
{
    return blk_indirect_case(0);
}

static const char *blk_indirect_bad_len(void)
{
    return blk_indirect_case(1);
}

static const char *blk_indirect_next_past(void)
{
    return blk_indirect_case(2);
}

static const char *blk_indirect_good(void)
{
    return blk_indirect_case(3);
}

/* Cases that set the device up their own way: they call bring-up themselves. */
static const char *mmio_overlapping_rings(void)
{
    vdev_init(&dev, vdev_rd(&dev, VIRTIO_MMIO_DEVICE_ID), 0);
    vq_init(&dev, &q, 0, vq_mem, VQ_SIZE_MAX, 1);
    uint64_t a = (uintptr_t)q.avail;
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 0);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(a + 4)); /* over the avail ring */
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET ? 0 : "rings that overlap taken";
}

static const char *mmio_queue_size_not_pow2(void)
{
    vdev_init(&dev, vdev_rd(&dev, VIRTIO_MMIO_DEVICE_ID), 0);
    vq_init(&dev, &q, 0, vq_mem, VQ_SIZE_MAX, 1);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 0);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NUM, 100);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET ? 0 : "queue of 100 taken";
}

static const char *mmio_ring_outside_ram(void)
{
    vdev_init(&dev, vdev_rd(&dev, VIRTIO_MMIO_DEVICE_ID), 0);
    vq_init(&dev, &q, 0, vq_mem, VQ_SIZE_MAX, 1);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 0);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x100); /* 1 TiB up */
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_READY, 1);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET ? 0 : "ring outside RAM taken";
}

static const char *mmio_features_not_offered(void)
{
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, 0);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 1 | 0x80000000u); /* VERSION_1 and bit 63 */
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_FEATURES_OK ? "FEATURES_OK for a feature it "
                                                                    "did not offer"
                                                                  : 0;
}

static const char *mmio_legacy_driver(void)
{
    /* No VERSION_1: a modern-only device refuses FEATURES_OK. */
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, 0);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    vdev_wr(&dev, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_FEATURES_OK)
        return "FEATURES_OK without VERSION_1";
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
    return vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET ? 0
                                                                  : "DRIVER_OK without "
                                                                    "FEATURES_OK taken";
}

/* ---- virtio-net (queue 0 receives, queue 1 transmits) ---- */

static struct vq txq;
static uint8_t txq_mem[VQ_MEM_SIZE] __attribute__((aligned(4096)));

static int net_up(void)
{
    vdev_init(&dev, VIRTIO_ID_NET, 0);
    vq_init(&dev, &q, 0, vq_mem, VQ_SIZE_MAX, 1);
    vq_init(&dev, &txq, 1, txq_mem, VQ_SIZE_MAX, 1);
    vdev_wr(&dev, VIRTIO_MMIO_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return !(vdev_rd(&dev, VIRTIO_MMIO_STATUS) & STATUS_NEEDS_RESET);
}

/* Transmits through txq (swapped in as q for the helpers). */
static const char *tx_expect(uint16_t head, uint32_t len)
{
    freeze();
    struct vq save = q;
    q = txq;
    VQ_AVAIL_RING(&q, q.avail_idx % q.size) = head;
    q.avail_idx++;
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    const char *why = expect_used(head, len);
    txq = q;
    q = save;
    return why;
}

static void tx_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    txq.desc[i] = (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

/* A frame of the host test's EtherType, marked good: the host counts what arrives. */
static void frame(uint64_t gpa, uint32_t len, int good)
{
    fill(gpa, 0, NET_HDR);
    uint8_t *f = at(gpa + NET_HDR);
    for (uint32_t i = 0; i < len; i++)
        f[i] = (uint8_t)(i * 7);
    f[12] = 0x88, f[13] = 0xb5;
    f[14] = good ? 'G' : 'B';
}

static const char *net_sound(void)
{
    frame(FRAME_AT, 60, 1);
    tx_desc(200, FRAME_AT, NET_HDR + 60, 0, 0);
    const char *why = tx_expect(200, 0);
    if (!why)
        sent++;
    return why ? "no good frame sent after it" : 0;
}

static const char *net_tx_short(void)
{
    frame(FRAME_AT, 60, 0);
    tx_desc(0, FRAME_AT, 6, 0, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_over_mtu(void)
{
    frame(FRAME_AT, 1600, 0);
    tx_desc(0, FRAME_AT, NET_HDR + 1600, 0, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_empty_frame(void)
{
    frame(FRAME_AT, 0, 0);
    tx_desc(0, FRAME_AT, NET_HDR, 0, 0); /* a header and no frame */
    return tx_expect(0, 0);
}

static const char *net_tx_writable(void)
{
    frame(FRAME_AT, 60, 0);
    tx_desc(0, FRAME_AT, NET_HDR + 60, VRING_DESC_F_WRITE, 0);
    may_write(FRAME_AT, NET_HDR + 60); /* device-writable: it may, it should not */
    return tx_expect(0, 0);
}

static const char *net_tx_gso_not_negotiated(void)
{
    frame(FRAME_AT, 60, 0);
    at(FRAME_AT)[1] = 1; /* gso_type TCPV4 */
    at(FRAME_AT)[4] = 100;
    tx_desc(0, FRAME_AT, NET_HDR + 60, 0, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_csum_not_negotiated(void)
{
    frame(FRAME_AT, 60, 0);
    at(FRAME_AT)[0] = 1; /* NEEDS_CSUM */
    tx_desc(0, FRAME_AT, NET_HDR + 60, 0, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_loop(void)
{
    frame(FRAME_AT, 60, 0);
    tx_desc(0, FRAME_AT, NET_HDR, VRING_DESC_F_NEXT, 1);
    tx_desc(1, FRAME_AT + NET_HDR, 60, VRING_DESC_F_NEXT, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_outside_ram(void)
{
    tx_desc(0, 1ULL << 40, NET_HDR + 60, 0, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_many_pieces(void)
{
    /* 70 pieces of one byte after the header: more than a transmit takes. */
    frame(FRAME_AT, 70, 0);
    tx_desc(0, FRAME_AT, NET_HDR, VRING_DESC_F_NEXT, 1);
    for (uint16_t i = 1; i <= 70; i++)
        tx_desc(i, FRAME_AT + NET_HDR + i - 1, 1, i < 70 ? VRING_DESC_F_NEXT : 0,
                (uint16_t)(i + 1));
    return tx_expect(0, 0);
}

static const char *net_tx_head_past_queue(void)
{
    struct vq save = q;
    q = txq;
    VQ_AVAIL_RING(&q, q.avail_idx % q.size) = 999;
    q.avail_idx++;
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    const char *why = expect_reset();
    txq = q;
    q = save;
    return why;
}

static const char *net_rx_tiny(void)
{
    desc(0, FRAME_AT, 8, VRING_DESC_F_WRITE, 0); /* no room for a header and a frame */
    offer(0);
    return expect_used(0, 0);
}

static const char *net_rx_readable(void)
{
    desc(0, FRAME_AT, 2048, 0, 0); /* a receive buffer the device may not write */
    offer(0);
    return expect_used(0, 0);
}

static const char *net_rx_outside_ram(void)
{
    desc(0, ~0ULL - 100, 2048, VRING_DESC_F_WRITE, 0);
    offer(0);
    return expect_used(0, 0);
}

static const char *net_rx_loop(void)
{
    desc(0, FRAME_AT, 1024, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    desc(1, FRAME_AT + 1024, 1024, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
    offer(0);
    return expect_used(0, 0);
}

static const char *net_rx_zero_len(void)
{
    desc(0, FRAME_AT, 0, VRING_DESC_F_WRITE, 0);
    offer(0);
    return expect_used(0, 0);
}

static const char *net_tx_indirect_not_offered(void)
{
    struct vring_desc *t = (struct vring_desc *)at(TABLE_AT);

    frame(FRAME_AT, 60, 0);
    t[0] = (struct vring_desc){FRAME_AT, NET_HDR + 60, 0, 0};
    tx_desc(0, TABLE_AT, 16, VRING_DESC_F_INDIRECT, 0);
    return tx_expect(0, 0);
}

static const char *net_tx_readable_after_writable(void)
{
    frame(FRAME_AT, 60, 0);
    tx_desc(0, FRAME_AT, NET_HDR, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    tx_desc(1, FRAME_AT + NET_HDR, 60, 0, 0);
    may_write(FRAME_AT, NET_HDR);
    return tx_expect(0, 0);
}

static const char *net_rx_avail_jump(void)
{
    q.avail_idx = (uint16_t)(q.avail_idx + q.size + 3);
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return expect_reset();
}

static const char *net_rx_head_twice(void)
{
    desc(0, FRAME_AT, 2048, VRING_DESC_F_WRITE, 0);
    may_write(FRAME_AT, 2048);
    VQ_AVAIL_RING(&q, q.avail_idx % q.size) = 0;
    VQ_AVAIL_RING(&q, (q.avail_idx + 1) % q.size) = 0;
    q.avail_idx = (uint16_t)(q.avail_idx + 2);
    vq_publish(&q);
    vdev_wr(&dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return expect_reset();
}

/* ---- running them ---- */

struct hcase {
    const char *name;
    case_fn fn;
    int own_setup;  /* the case brings the device up itself */
    int ring_stays; /* the queue is sound afterwards: a good request must follow */
};

static const struct hcase blk_cases[] = {
    {"blk_no_status", blk_no_status, 0, 1},
    {"blk_short_header", blk_short_header, 0, 1},
    {"blk_writable_header", blk_writable_header, 0, 1},
    {"blk_read_past_end", blk_read_past_end, 0, 1},
    {"blk_sector_overflow", blk_sector_overflow, 0, 1},
    {"blk_partial_sector", blk_partial_sector, 0, 1},
    {"blk_read_into_readable", blk_read_into_readable, 0, 1},
    {"blk_write_from_writable", blk_write_from_writable, 0, 1},
    {"blk_unknown_type", blk_unknown_type, 0, 1},
    {"blk_desc_loop", blk_desc_loop, 0, 1},
    {"blk_next_past_table", blk_next_past_table, 0, 1},
    {"blk_buffer_outside_ram", blk_buffer_outside_ram, 0, 1},
    {"blk_buffer_wraps", blk_buffer_wraps, 0, 1},
    {"blk_buffer_past_ram_end", blk_buffer_past_ram_end, 0, 1},
    {"blk_zero_length", blk_zero_length, 0, 1},
    {"blk_indirect_not_negotiated", blk_indirect_not_negotiated, 0, 1},
    {"blk_seg_max", blk_seg_max, 0, 1},
    {"blk_size_max", blk_size_max, 0, 1},
    {"blk_discard_bad_flags", blk_discard_bad_flags, 0, 1},
    {"blk_discard_past_end", blk_discard_past_end, 0, 1},
    {"blk_zeroes_two_ranges", blk_zeroes_two_ranges, 0, 1},
    {"blk_get_id_readonly", blk_get_id_readonly, 0, 1},
    {"blk_status_in_big_buffer", blk_status_in_big_buffer, 0, 1},
    {"blk_notify_storm", blk_notify_storm, 0, 1},
    {"blk_used_event_games", blk_used_event_games, 0, 1},
    {"blk_setup_while_running", blk_setup_while_running, 0, 1},
    {"blk_features_after_ok", blk_features_after_ok, 0, 1},
    {"blk_head_past_queue", blk_head_past_queue, 0, 0},
    {"blk_avail_jump", blk_avail_jump, 0, 0},
    {"blk_avail_backwards", blk_avail_backwards, 0, 0},
    {"mmio_config_overrun", mmio_config_overrun, 0, 1},
    {"mmio_queue_sel_past_end", mmio_queue_sel_past_end, 0, 1},
    {"mmio_ack_garbage", mmio_ack_garbage, 0, 1},
    {"blk_config_write", blk_config_write, 0, 1},
    {"blk_reset_in_flight", blk_reset_in_flight, 0, 0},
    {"blk_indirect_nested", blk_indirect_nested, 1, 1},
    {"blk_indirect_bad_len", blk_indirect_bad_len, 1, 1},
    {"blk_indirect_next_past", blk_indirect_next_past, 1, 1},
    {"blk_indirect_good", blk_indirect_good, 1, 1},
    {"mmio_overlapping_rings", mmio_overlapping_rings, 1, 0},
    {"mmio_queue_size_not_pow2", mmio_queue_size_not_pow2, 1, 0},
    {"mmio_ring_outside_ram", mmio_ring_outside_ram, 1, 0},
    {"mmio_features_not_offered", mmio_features_not_offered, 1, 0},
    {"mmio_legacy_driver", mmio_legacy_driver, 1, 0},
};

static const struct hcase net_cases[] = {
    {"net_tx_short", net_tx_short, 0, 1},
    {"net_tx_over_mtu", net_tx_over_mtu, 0, 1},
    {"net_tx_empty_frame", net_tx_empty_frame, 0, 1},
    {"net_tx_writable", net_tx_writable, 0, 1},
    {"net_tx_gso_not_negotiated", net_tx_gso_not_negotiated, 0, 1},
    {"net_tx_csum_not_negotiated", net_tx_csum_not_negotiated, 0, 1},
    {"net_tx_loop", net_tx_loop, 0, 1},
    {"net_tx_outside_ram", net_tx_outside_ram, 0, 1},
    {"net_tx_many_pieces", net_tx_many_pieces, 0, 1},
    {"net_rx_tiny", net_rx_tiny, 0, 1},
    {"net_rx_readable", net_rx_readable, 0, 1},
    {"net_rx_outside_ram", net_rx_outside_ram, 0, 1},
    {"net_rx_loop", net_rx_loop, 0, 1},
    {"net_rx_zero_len", net_rx_zero_len, 0, 1},
    {"net_tx_indirect_not_offered", net_tx_indirect_not_offered, 0, 1},
    {"net_tx_readable_after_writable", net_tx_readable_after_writable, 0, 1},
    {"net_rx_avail_jump", net_rx_avail_jump, 0, 0},
    {"net_tx_head_past_queue", net_tx_head_past_queue, 0, 0},
    {"net_rx_head_twice", net_rx_head_twice, 0, 0},
};

static void report(const char *name, const char *why)
{
    cases++;
    con_puts("CASE ");
    con_puts(name);
    if (why) {
        failed++;
        con_puts(" FAIL ");
        con_puts(why);
    } else {
        con_puts(" ok");
    }
    con_putc('\n');
}

static void run_cases(const struct hcase *c, unsigned n, int net)
{
    for (unsigned i = 0; i < n; i++) {
        const char *why = 0;

        fill(REGION, CANARY, REGION_SIZE);
        freeze();
        nwindows = 0;
        may_write(STATUS_AT, 1);
        if (!net)
            may_write(DATA_AT, 513); /* a read's buffer, and a status inside it */
        if (!c[i].own_setup && !(net ? net_up() : bring_up(VIRTIO_ID_BLOCK, 0)))
            why = "the device did not come up";
        if (!why)
            why = c[i].fn();
        if (!why && !untouched())
            why = "wrote outside the buffers it was given";
        if (!why && c[i].ring_stays)
            why = net ? net_sound() : blk_sound();
        if (!why && !c[i].ring_stays && !(net ? net_up() : bring_up(VIRTIO_ID_BLOCK, 0)))
            why = "a reset did not bring it back";
        if (!why && !c[i].ring_stays)
            why = net ? net_sound() : blk_sound();
        report(c[i].name, why);
    }
    vdev_wr(&dev, VIRTIO_MMIO_STATUS, 0);
}

void hostile_main(const char *cmdline)
{
    if (vdev_find(cmdline, VIRTIO_ID_BLOCK, 0, &dev)) {
        vdev_init(&dev, VIRTIO_ID_BLOCK, 0);
        capacity = vdev_config64(&dev, 0);
        run_cases(blk_cases, sizeof(blk_cases) / sizeof(blk_cases[0]), 0);
    }
    if (vdev_find(cmdline, VIRTIO_ID_NET, 0, &dev))
        run_cases(net_cases, sizeof(net_cases) / sizeof(net_cases[0]), 1);
    con_puts("RESULT test=hostile cases=");
    con_putdec(cases);
    con_puts(" failed=");
    con_putdec(failed);
    con_puts(" sent=");
    con_putdec(sent);
    con_putc('\n');
    bg_exit(BG_EXIT_OK);
}
