/* SPDX-License-Identifier: MIT */
/*
 * The contract between the bench guest and whoever runs it (ringvm, the raw
 * KVM loop in bench/, QEMU). Plain constants only: this header is included by
 * freestanding guest code and by host code alike.
 */
#ifndef RINGVM_GUEST_ABI_H
#define RINGVM_GUEST_ABI_H

/* Console: a 16550 UART on COM1; the guest polls LSR.THRE before each byte. */
#define BG_COM1_BASE 0x3f8

/* QEMU isa-debug-exit semantics: writing v ends the VM (QEMU exits (v<<1)|1). */
#define BG_DEBUG_EXIT_PORT   0xf4
#define BG_EXIT_OK           0
#define BG_EXIT_BAD_CMDLINE  1
#define BG_EXIT_UNKNOWN_TEST 2
#define BG_EXIT_EXCEPTION    3
#define BG_EXIT_NO_DEVICE    4 /* test=blk-*: no usable virtio-blk device (or it failed) */

/* test=pio: 4-byte OUT to this port, one user-space exit per iteration. */
#define BG_PIO_PORT 0x600
/* test=ioeventfd-pio: 4-byte OUT here; a VMM binds an ioeventfd (len 4). */
#define BG_IOEVENTFD_PIO_PORT 0x604
/* test=mmio: 4-byte store to this unbacked guest-physical address. */
#define BG_MMIO_ADDR 0xd0000000ULL
/* test=ioeventfd-mmio: 4-byte store here; a VMM binds an ioeventfd (len 4). */
#define BG_IOEVENTFD_MMIO_ADDR 0xd0001000ULL

/*
 * test=blk-*: data buffers (qd * bs bytes, at most BG_BLK_BUF_MAX) start at
 * this guest-physical address, so guest RAM must extend past it.
 */
#define BG_BLK_BUF_ADDR 0x1000000ULL /* 16 MiB */
#define BG_BLK_BUF_MAX  0x2000000ULL /* 32 MiB: RAM up to 48 MiB covers any bs/qd */
/*
 * test=blk-*: the u64 count of requests completed so far (both passes of
 * blk-verify), stored here so the host can see how far the guest has got.
 * The page is BG_MEM_STATE, which block tests do not use.
 */
#define BG_BLK_DONE 0x80000ULL

/*
 * test=mem-dirty: a working set of ws= pages from BG_MEM_ADDR, rewritten
 * pass after pass. Page i in pass p holds words: p, i, p * ws + i (the
 * counter), then a pattern of (p * ws + i, word index); before overwriting,
 * the guest checks the page holds what pass p - 1 wrote. Its progress is
 * kept in guest memory at BG_MEM_STATE (struct bg_mem_state below), where
 * the host can read it.
 */
#define BG_MEM_ADDR    0x1000000ULL /* 16 MiB */
#define BG_MEM_MAX_WS  0x80000ULL   /* pages: 2 GiB */
#define BG_MEM_STATE   0x80000ULL
#define BG_MEM_MAGIC   0x7974726964676272ULL
#define BG_MEM_PATTERN 0x9e3779b97f4a7c15ULL
/* u64 words of the state page */
#define BG_MEM_ST_MAGIC       0
#define BG_MEM_ST_WS          1
#define BG_MEM_ST_PASS        2 /* the pass being written */
#define BG_MEM_ST_PAGE        3 /* the next page of that pass */
#define BG_MEM_ST_MISMATCHES  4
#define BG_MEM_ST_PASSES_DONE 5
/*
 * Set nonzero by the host (say after a restore, before the VM runs): at the
 * next page the guest stops writing and verifies instead (test=mem-verify):
 * pages before the current one hold the current pass, the rest the one
 * before; it prints "RESULT test=mem-verify" with the position it continued
 * from (pass, page, counter) and the mismatches, and exits.
 */
#define BG_MEM_ST_VERIFY 6

/*
 * test=net-*: receive and transmit buffers (4 KiB a descriptor, two queues
 * of up to 256) from this guest-physical address: RAM must reach 18 MiB.
 */
#define BG_NET_BUF_ADDR 0x1000000ULL /* 16 MiB */
#define BG_NET_BUF_SIZE 0x200000ULL

/*
 * test=net-udp-*: a datagram's payload is its sequence number (u64, little
 * endian) then bytes of the u64 words BG_NET_WORD(seq, j), j = 1, 2, ...,
 * little endian, cut at the payload's length (at least 8 bytes). A 7-byte
 * payload BG_NET_STOP ends a receiver early (net-udp-tx sends one last).
 */
#define BG_NET_WORD(seq, j) (((seq) + 1) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(j))
#define BG_NET_STOP         "bg-stop"
#define BG_NET_STOP_LEN     7
/* test=net-ping: ICMP echo identifier; payload of 56 bytes. */
#define BG_NET_PING_ID 0x4247

/* Where the PVH image is linked and loaded (guest-physical). */
#define BG_LOAD_ADDR 0x100000

/*
 * PVH boot (the guest is entered in 32-bit protected mode with %ebx pointing
 * at a struct hvm_start_info). Only these fields are read by the guest.
 */
#define BG_PVH_NOTE_PHYS32_ENTRY 18         /* ELF note "Xen", XEN_ELFNOTE_PHYS32_ENTRY */
#define BG_PVH_START_MAGIC       0x336ec578 /* u32 at offset 0 of hvm_start_info */
#define BG_PVH_CMDLINE_PADDR_OFF 24         /* u64 cmdline_paddr (offset 16 is modlist_paddr) */
#define BG_PVH_RSDP_PADDR_OFF    32         /* u64 rsdp_paddr: ACPI tables, 0 when none */

#endif
