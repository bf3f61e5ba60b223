/* SPDX-License-Identifier: MIT */
/*
 * Snapshots: a VM's complete state (vCPUs, irqchip, PIT, clock, devices)
 * and its memory, in a directory:
 *   manifest  format version, architecture, guest layout, parent, checksums
 *   state     the state records (checksummed as a whole)
 *   memory    guest RAM, region after region, at the offsets the manifest
 *             gives, so a restore can map it (sparse in a diff snapshot)
 *   sums      one xxHash (XXH3, 64-bit) per memory chunk
 *   pages     diff snapshots: the bitmap of the pages the memory file holds
 * A snapshot is written into a temporary sibling directory, fsynced, and
 * renamed into place: a crash or a full disk midway leaves whatever was at
 * the destination before, never a half snapshot that looks valid.
 * docs/snapshots.md has the details and the guarantees.
 */
#ifndef RINGVM_SNAPSHOT_H
#define RINGVM_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include <ringvm/devices.h>
#include <ringvm/mem.h>
#include <ringvm/virtio.h>

struct rvm_vm;
struct rvm_hv;

enum rvm_snapshot_mode {
    RVM_SNAPSHOT_FULL = 0, /* all of RAM, the VM paused meanwhile */
    RVM_SNAPSHOT_DIFF,     /* the pages written since the VM's previous snapshot */
    /*
     * A full snapshot taken while the VM runs: RAM is copied, then what the
     * guest wrote meanwhile (from dirty tracking, turned on for the rounds
     * if it is not, and off again after),
     * round after round until little is left; the VM is paused only for
     * that rest and the machine state (stats.pause_ms).
     */
    RVM_SNAPSHOT_LIVE,
};

struct rvm_snapshot_stats {
    uint64_t bytes;  /* of guest memory written (live: with rewrites) or read */
    double seconds;  /* the whole operation */
    double gbps;     /* bytes / seconds, in GB/s (10^9) */
    double pause_ms; /* how long the vCPUs were stopped (snapshots) */
    uint64_t pages;  /* 4 KiB pages of memory in the snapshot */
    uint32_t rounds; /* live: copy rounds while the VM ran */
};

/*
 * Snapshots the VM into dir (created; replaced atomically if it exists).
 * The VM must be running or paused; it is paused meanwhile and left as it
 * was (a paused VM's devices stay stopped until rvm_vm_resume(), so its disk
 * stays as the snapshot saw it). Dirty tracking is left as it was: a
 * snapshot taken with tracking on (rvm_vm_dirty_enable(), or a restore with
 * track_dirty) is the parent of a later RVM_SNAPSHOT_DIFF, which takes only
 * what changed since and names its parent in its manifest. -EOPNOTSUPP when
 * a device cannot be snapshotted; -EEXIST when dir is something other than
 * a ringvm snapshot, or a snapshot this VM's chain still needs (it is left
 * alone); -EBUSY while another snapshot of the VM runs (one at a time, and
 * rvm_vm_resume() is -EBUSY meanwhile); -ENOSPC, -EIO and the like from the
 * files, after which dir is as it was. stats may be NULL.
 */
int rvm_vm_snapshot(struct rvm_vm *vm, const char *dir, enum rvm_snapshot_mode mode,
                    struct rvm_snapshot_stats *stats);

/*
 * A restored disk's backend, handed by the caller (a restore opens no disk
 * that the snapshot names, unless told to trust its paths).
 */
struct rvm_restore_disk {
    const char *path; /* the disk image, or NULL to use fd */
    int fd;           /* with path NULL: an open image, taken over by the VM (closed with it) */
    /*
     * The caller vouches this is the disk as it was when the snapshot was
     * taken, though it is another file (a copy, on another host): its inode
     * and modification time are not compared, only its size.
     */
    bool other_copy;
    /*
     * The disk's rate limit from now on: host policy, so the restoring
     * host's choice, never read from the snapshot (all 0: none).
     */
    struct rvm_rate_limit limit;
};

/* A restored NIC's backend: a tap by name, or an open tap or SOCK_SEQPACKET socket. */
struct rvm_restore_net {
    const char *tap; /* a tap interface name, or NULL to use fd */
    int fd;          /* with tap NULL: taken over by the VM */
    bool fd_is_tap;
    /* The device's rate limits from now on: the restoring host's, as for a disk. */
    struct rvm_rate_limit tx_limit, rx_limit;
};

struct rvm_restore_params {
    /*
     * lazy: map the memory file privately over guest RAM, pages load on
     * first touch (needs anonymous 4 KiB backing and a full snapshot chain
     * whose base is a full snapshot). Otherwise eager: read everything into
     * guest memory through io_uring before the VM runs.
     */
    bool lazy;
    /*
     * Lazy restores: also check every memory chunk's checksum before the VM
     * runs, which reads all of the memory file (off by default: a lazy
     * restore then checks the manifest, the state, the sums and the files'
     * sizes, and guest pages load unchecked as they are touched). Eager
     * restores always check every chunk, as they read it.
     */
    bool verify_memory;
    /*
     * The most guest memory the snapshot may ask for, in bytes, checked
     * before anything is allocated (-E2BIG above it). 0: the host's RAM.
     */
    uint64_t max_mem;
    enum rvm_mem_backing backing; /* RVM_MEM_ANON (default), THP or hugepages */
    struct rvm_uart_config uart;  /* where the restored UART's output goes */
    int numa_node;                /* -1 for none (0 means node 0: set it) */
    /*
     * Turn dirty tracking on before the restored VM runs, so that its next
     * RVM_SNAPSHOT_DIFF can name this snapshot as its parent. Off by default:
     * tracking makes the guest's first write to each page cost a fault.
     */
    bool track_dirty;
    /*
     * The backends of the snapshot's devices: disks[i] for its i-th
     * virtio-blk device, nets[i] for its i-th virtio-net device, in the
     * order they were added. A device without one is refused (-ENODEV).
     * The disk must be the one the snapshot saw: its size always, and its
     * inode and modification time unless other_copy (-ESTALE); a disk the
     * guest had writable cannot be handed read-only.
     */
    const struct rvm_restore_disk *disks;
    uint32_t ndisks;
    const struct rvm_restore_net *nets;
    uint32_t nnets;
    /*
     * Where a diff's parents are: these snapshot directories, each chosen
     * by its id; NULL: beside the snapshot (the parent's directory name, in
     * the directory that holds dir).
     */
    const char *const *parents;
    uint32_t nparents;
    /*
     * Today's trust: open the disk paths and tap names the snapshot records
     * and follow its parents' absolute paths. Only for snapshots this host
     * made and kept where no one else writes; never for one from elsewhere.
     */
    bool trust_snapshot_paths;
    /*
     * A guest saved on a host whose TSC ran at another rate is set to that
     * rate where KVM can scale it; where it cannot, the restore is refused
     * (-EOPNOTSUPP) unless this allows it (the guest's clock then drifts).
     */
    bool allow_tsc_drift;
};

/*
 * Defaults: eager, no lazy verification, no memory limit beyond the host's
 * RAM, anonymous memory, UART output discarded, no NUMA binding, no tracking.
 */
void rvm_restore_params_init(struct rvm_restore_params *p);

/*
 * Creates a VM from the snapshot in dir (the chain of its parents too, for
 * a diff), ready for rvm_vm_start(): its vCPUs continue exactly where they
 * were. Refused before anything runs, with a log line and: -EPROTO for a
 * newer format or another architecture, -EBADMSG for a checksum mismatch
 * or malformed state, -EINVAL for a guest layout that does not fit the
 * parameters, -ENODATA for a truncated or missing file, -E2BIG for more
 * memory than params->max_mem, -ELOOP for a chain that loops, -ENODEV for
 * a device without a backend, -ESTALE for a disk that is not the one
 * saved. docs/snapshots.md has the whole list and the trust model.
 */
int rvm_vm_restore(struct rvm_hv *hv, const char *dir, const struct rvm_restore_params *params,
                   struct rvm_vm **out, struct rvm_snapshot_stats *stats);

/*
 * Writes the full snapshot that the chain ending in dir amounts to (the
 * base's memory with every diff's pages over it, the newest state) into
 * out, published atomically; dir's chain is left as it is. No VM needed.
 */
int rvm_snapshot_merge(struct rvm_hv *hv, const char *dir, const char *out);

#endif
