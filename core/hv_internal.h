/* SPDX-License-Identifier: MIT */
#ifndef RINGVM_CORE_HV_INTERNAL_H
#define RINGVM_CORE_HV_INTERNAL_H

#include <ringvm/hv.h>
#include <linux/kvm.h>

/* Immutable after rvm_hv_open(): shared by VMs and threads without locks. */
struct rvm_hv {
    int kvm_fd;
    int vcpu_mmap_size;
    struct rvm_hv_caps caps;
    struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID */
    rvm_log_fn log;
    void *log_opaque;
    enum rvm_log_level log_level;
    int kick_signal;
    rvm_node_cpus_fn node_cpus;
    void *node_cpus_opaque;
};

/* Reads the hugepage pools from sysfs into caps. */
void rvm_hv_read_hugepage_pools(struct rvm_hv_caps *caps);

#endif
