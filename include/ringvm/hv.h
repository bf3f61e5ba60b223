/* SPDX-License-Identifier: MIT */
/*
 * The hypervisor handle: /dev/kvm opened once, its capabilities read once.
 * A handle is immutable after rvm_hv_open() and may be shared by any number
 * of VMs and threads; it must outlive every VM created from it.
 */
#ifndef RINGVM_HV_H
#define RINGVM_HV_H

#include <stdbool.h>
#include <stdint.h>
#include <ringvm/log.h>

struct rvm_hv;

#define RVM_MAX_HUGEPAGE_SIZES 4

struct rvm_hugepage_pool {
    uint64_t page_size; /* bytes: 2 MiB, 1 GiB, ... */
    uint64_t total;     /* pages in the pool */
    uint64_t free;      /* pages free right now (a snapshot; it changes) */
};

struct rvm_hv_caps {
    int api_version;
    uint32_t max_vcpus;         /* KVM_CAP_MAX_VCPUS */
    uint32_t recommended_vcpus; /* KVM_CAP_NR_VCPUS */
    uint32_t max_memslots;
    bool ioeventfd;
    bool irqfd;
    bool immediate_exit;
    bool irqchip;
    bool dirty_ring;         /* KVM_CAP_DIRTY_LOG_RING */
    bool dirty_ring_acq_rel; /* KVM_CAP_DIRTY_LOG_RING_ACQ_REL */
    uint32_t dirty_ring_max_bytes;
    bool manual_dirty_log_protect;
    bool guest_memfd;
    unsigned n_hugepage_pools;
    struct rvm_hugepage_pool hugepages[RVM_MAX_HUGEPAGE_SIZES];
    int numa_nodes; /* configured NUMA nodes; 1 when libnuma reports none */
};

/*
 * Optional topology override, for embedders with their own view of the host
 * and for tests of multi-node placement on single-node machines: fills cpus
 * (a cpu_set_t) with the CPUs of node and returns 0, or -errno.
 */
typedef int (*rvm_node_cpus_fn)(void *opaque, int node, void *cpus);

struct rvm_hv_config {
    rvm_log_fn log;               /* NULL: discard all logs */
    void *log_opaque;             /* passed to log */
    enum rvm_log_level log_level; /* messages above this level are dropped */
    const char *kvm_path;         /* NULL: "/dev/kvm" */
    int kick_signal;              /* 0: SIGRTMIN; the signal used to kick vCPU threads */
    rvm_node_cpus_fn node_cpus;   /* NULL: libnuma */
    void *node_cpus_opaque;
};

/*
 * Opens the hypervisor. config may be NULL (defaults). On success *out owns
 * the handle; release it with rvm_hv_close(). Returns -ENOENT/-EACCES when the
 * device is missing or not accessible, -EPROTO when the KVM API version is not
 * 12, -ENOTSUP when a capability ringvm requires (irqchip, ioeventfd, irqfd,
 * immediate_exit, user memory) is missing.
 */
int rvm_hv_open(const struct rvm_hv_config *config, struct rvm_hv **out);

/* Releases the handle. Every VM created from it must have been destroyed. */
void rvm_hv_close(struct rvm_hv *hv);

/* The capabilities read at open; the hugepage pool counts are re-read. */
int rvm_hv_caps(const struct rvm_hv *hv, struct rvm_hv_caps *caps);

/* The CPUs of NUMA node `node` into *cpus (a cpu_set_t). -EINVAL: no such node. */
int rvm_hv_node_cpus(const struct rvm_hv *hv, int node, void *cpus);

#endif
