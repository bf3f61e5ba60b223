/* SPDX-License-Identifier: MIT */
/*
 * ringvm: an embeddable KVM virtual machine monitor core.
 *
 * Conventions for every function in these headers:
 *  - returns 0 (or a non-negative count) on success and -errno on failure;
 *  - never exits, aborts or writes to stdout; diagnostics go to the log
 *    callback the embedder sets in struct rvm_hv_config;
 *  - keeps no process-global mutable state: any number of hypervisor handles
 *    and VMs may live in one process. The one process-wide effect is a no-op
 *    handler installed once for the vCPU kick signal (see rvm_hv_open()).
 */
#ifndef RINGVM_RINGVM_H
#define RINGVM_RINGVM_H

#define RINGVM_VERSION_MAJOR  0
#define RINGVM_VERSION_MINOR  1
#define RINGVM_VERSION_PATCH  0
#define RINGVM_VERSION_STRING "0.1.0"
/* Encoded as 0xMMmmpp so that it compares as an integer. */
#define RINGVM_VERSION                                                                             \
    ((RINGVM_VERSION_MAJOR << 16) | (RINGVM_VERSION_MINOR << 8) | RINGVM_VERSION_PATCH)

#include <ringvm/log.h>
#include <ringvm/hv.h>
#include <ringvm/mem.h>
#include <ringvm/vm.h>
#include <ringvm/vcpu.h>
#include <ringvm/boot.h>
#include <ringvm/devices.h>
#include <ringvm/virtio.h>
#include <ringvm/dirty.h>
#include <ringvm/snapshot.h>

/* The library's version at run time (RINGVM_VERSION of the build). */
unsigned rvm_version(void);

#endif
