/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_CLI_ARGS_H
#define RINGVM_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ringvm/ringvm.h>

enum cli_command { CLI_NONE = 0, CLI_RUN, CLI_CAPS, CLI_HELP, CLI_VERSION, CLI_RESTORE, CLI_MERGE };

struct cli_opts {
    enum cli_command cmd;
    const char *kernel;
    const char *cmdline;
    const char *initrd;
    const char *serial; /* "stdio" or a path */
    bool verbose;
    /*
     * How the guest finds its devices: ACPI tables (DSDT) and no command-line
     * words, or with no_acpi (--no-acpi, or acpi=off in the command line)
     * the virtio_mmio.device= words and no ACPI. The MP table is written
     * either way.
     */
    bool no_acpi;
    struct rvm_vm_config vm;
    unsigned ndisks;
    struct rvm_blk_config disks[RVM_VIRTIO_MAX_DEVICES];
    unsigned nnets;
    struct cli_net {
        const char *tap, *unix_path; /* one of them */
        uint8_t mac[6];              /* all zero: the library's default */
        uint16_t mtu;
        uint32_t poll_us; /* 0: the default; RVM_NET_NO_POLL: none */
        uint16_t queues;  /* tap queue pairs; 0: 1 */
        struct rvm_rate_limit tx_limit, rx_limit;
    } nets[RVM_VIRTIO_MAX_DEVICES];
    /* run: SIGUSR1 writes a snapshot into snap_dir/snap-N (full or live first, then as asked) */
    const char *snap_dir;
    enum rvm_snapshot_mode snap_mode;
    /* restore DIR [--lazy] [--verify] [--max-mem SIZE] / snapshot-merge DIR OUT */
    const char *dir, *out;
    bool lazy, verify, trust_paths;
    uint64_t max_mem; /* 0: the library's default */
};

/*
 * Parses argv (argv[0] is the program) into *o. Returns 0, or -EINVAL with a
 * one-line reason in err[0..errlen). Pure: touches nothing but *o and err.
 */
int cli_parse(int argc, char **argv, struct cli_opts *o, char *err, size_t errlen);

/* "64M", "2G", "4096", "512K" -> bytes. -EINVAL on junk or overflow. */
int cli_parse_size(const char *s, uint64_t *out);

/* "PATH[,ro][,queues=N]" -> *disk (path points into s). -EINVAL on junk. */
int cli_parse_disk(char *s, struct rvm_blk_config *disk);

/* "tap=NAME[,mac=MAC][,mtu=N]" or "unix=PATH[,...]" -> *net (pointing into s). -EINVAL on junk. */
int cli_parse_net(char *s, struct cli_net *net);

/*
 * "LEAF[.SUBLEAF],REG,OP[,OP]" -> *e, where REG is eax..edx and OP is
 * clear=MASK, set=MASK or value=V (clear all, then set V); SUBLEAF may be
 * '*' for every subleaf. Numbers in C syntax (0x...). -EINVAL on junk.
 */
int cli_parse_cpuid(const char *s, struct rvm_cpuid_edit *e);

/* "0,2-4" -> cpus[] (at most max entries). Returns the count or -EINVAL. */
int cli_parse_cpus(const char *s, int *cpus, unsigned max);

extern const char cli_usage[];

#endif
