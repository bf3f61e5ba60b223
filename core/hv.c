/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <ringvm/ringvm.h>

#include "hv_internal.h"
#include "log.h"

#define KVM_CPUID_MAX_ENTRIES 256

/* Newer than the UAPI headers of some distributions. */
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif

static void kick_handler(int sig)
{
    (void)sig; /* only here so that the signal interrupts KVM_RUN */
}

/*
 * Installs a no-op handler for the kick signal unless the process already
 * handles it. Repeating it (another handle, another thread) changes nothing.
 */
static int install_kick_handler(const struct rvm_hv *hv)
{
    struct sigaction old, sa;

    if (sigaction(hv->kick_signal, NULL, &old) < 0)
        return -errno;
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
        return 0; /* the embedder handles it: any handler interrupts KVM_RUN */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(hv->kick_signal, &sa, NULL) < 0)
        return -errno;
    return 0;
}

static int check_ext(int fd, long cap)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

void rvm_hv_read_hugepage_pools(struct rvm_hv_caps *caps)
{
    static const char dir[] = "/sys/kernel/mm/hugepages";
    DIR *d = opendir(dir);
    struct dirent *e;

    caps->n_hugepage_pools = 0;
    if (!d)
        return;
    while ((e = readdir(d)) && caps->n_hugepage_pools < RVM_MAX_HUGEPAGE_SIZES) {
        unsigned long kb;
        char path[512];
        unsigned long long total = 0, nfree = 0;
        FILE *f;

        if (sscanf(e->d_name, "hugepages-%lukB", &kb) != 1)
            continue;
        snprintf(path, sizeof(path), "%s/%s/nr_hugepages", dir, e->d_name);
        if ((f = fopen(path, "re"))) {
            if (fscanf(f, "%llu", &total) != 1)
                total = 0;
            fclose(f);
        }
        snprintf(path, sizeof(path), "%s/%s/free_hugepages", dir, e->d_name);
        if ((f = fopen(path, "re"))) {
            if (fscanf(f, "%llu", &nfree) != 1)
                nfree = 0;
            fclose(f);
        }
        struct rvm_hugepage_pool *p = &caps->hugepages[caps->n_hugepage_pools++];
        p->page_size = (uint64_t)kb * 1024;
        p->total = total;
        p->free = nfree;
    }
    closedir(d);
}

static int read_caps(struct rvm_hv *hv)
{
    struct rvm_hv_caps *c = &hv->caps;
    int fd = hv->kvm_fd;
    int r;

    c->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (c->api_version != KVM_API_VERSION) {
        rvm_err(hv, "KVM API version %d, need %d", c->api_version, KVM_API_VERSION);
        return -EPROTO;
    }
    c->recommended_vcpus = check_ext(fd, KVM_CAP_NR_VCPUS);
    c->max_vcpus = check_ext(fd, KVM_CAP_MAX_VCPUS);
    if (!c->max_vcpus)
        c->max_vcpus = c->recommended_vcpus ? c->recommended_vcpus : 4;
    c->max_memslots = check_ext(fd, KVM_CAP_NR_MEMSLOTS);
    c->ioeventfd = check_ext(fd, KVM_CAP_IOEVENTFD);
    c->irqfd = check_ext(fd, KVM_CAP_IRQFD);
    c->immediate_exit = check_ext(fd, KVM_CAP_IMMEDIATE_EXIT);
    c->irqchip = check_ext(fd, KVM_CAP_IRQCHIP);
    r = check_ext(fd, KVM_CAP_DIRTY_LOG_RING);
    c->dirty_ring = r > 0;
    c->dirty_ring_max_bytes = r > 0 ? (uint32_t)r : 0;
    c->dirty_ring_acq_rel = check_ext(fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0;
    c->manual_dirty_log_protect = check_ext(fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
    c->guest_memfd = check_ext(fd, KVM_CAP_GUEST_MEMFD) > 0;
    c->numa_nodes = numa_available() < 0 ? 1 : numa_num_configured_nodes();
    if (c->numa_nodes < 1)
        c->numa_nodes = 1;
    rvm_hv_read_hugepage_pools(c);

    if (!c->irqchip || !c->ioeventfd || !c->irqfd || !c->immediate_exit ||
        !check_ext(fd, KVM_CAP_USER_MEMORY)) {
        rvm_err(hv,
                "KVM lacks a required capability (irqchip %d ioeventfd %d irqfd %d "
                "immediate_exit %d)",
                c->irqchip, c->ioeventfd, c->irqfd, c->immediate_exit);
        return -ENOTSUP;
    }
    return 0;
}

static int read_cpuid(struct rvm_hv *hv)
{
    size_t sz = sizeof(struct kvm_cpuid2) + KVM_CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);

    hv->cpuid = calloc(1, sz);
    if (!hv->cpuid)
        return -ENOMEM;
    hv->cpuid->nent = KVM_CPUID_MAX_ENTRIES;
    if (ioctl(hv->kvm_fd, KVM_GET_SUPPORTED_CPUID, hv->cpuid) < 0) {
        int e = -errno;
        rvm_err(hv, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-e));
        return e;
    }
    return 0;
}

int rvm_hv_open(const struct rvm_hv_config *config, struct rvm_hv **out)
{
    struct rvm_hv_config defaults = {.log_level = RVM_LOG_INFO};
    struct rvm_hv *hv;
    int r;

    if (!out)
        return -EINVAL;
    if (!config)
        config = &defaults;
    hv = calloc(1, sizeof(*hv));
    if (!hv)
        return -ENOMEM;
    hv->log = config->log;
    hv->log_opaque = config->log_opaque;
    hv->log_level = config->log_level;
    hv->kick_signal = config->kick_signal ? config->kick_signal : SIGRTMIN;
    hv->node_cpus = config->node_cpus;
    hv->node_cpus_opaque = config->node_cpus_opaque;

    const char *path = config->kvm_path ? config->kvm_path : "/dev/kvm";
    hv->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
    if (hv->kvm_fd < 0) {
        r = -errno;
        rvm_err(hv, "open %s: %s", path, strerror(-r));
        goto err_free;
    }
    r = read_caps(hv);
    if (r < 0)
        goto err_close;
    hv->vcpu_mmap_size = ioctl(hv->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (hv->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
        r = hv->vcpu_mmap_size < 0 ? -errno : -EPROTO;
        goto err_close;
    }
    r = read_cpuid(hv);
    if (r < 0)
        goto err_cpuid;
    r = install_kick_handler(hv);
    if (r < 0) {
        rvm_err(hv, "cannot install the vCPU kick signal handler: %s", strerror(-r));
        goto err_cpuid;
    }
    *out = hv;
    return 0;

err_cpuid:
    free(hv->cpuid);
err_close:
    close(hv->kvm_fd);
err_free:
    free(hv);
    return r;
}

void rvm_hv_close(struct rvm_hv *hv)
{
    if (!hv)
        return;
    free(hv->cpuid);
    close(hv->kvm_fd);
    free(hv);
}

int rvm_hv_caps(const struct rvm_hv *hv, struct rvm_hv_caps *caps)
{
    if (!hv || !caps)
        return -EINVAL;
    *caps = hv->caps;
    rvm_hv_read_hugepage_pools(caps);
    return 0;
}

int rvm_hv_node_cpus(const struct rvm_hv *hv, int node, void *cpus)
{
    cpu_set_t *set = cpus;
    struct bitmask *bm;
    int r = 0;

    if (!cpus || node < 0)
        return -EINVAL;
    if (hv && hv->node_cpus)
        return hv->node_cpus(hv->node_cpus_opaque, node, cpus);
    CPU_ZERO(set);
    if (numa_available() < 0) {
        /* No NUMA: the machine is node 0. */
        if (node != 0)
            return -EINVAL;
        return sched_getaffinity(0, sizeof(*set), set) < 0 ? -errno : 0;
    }
    if (node > numa_max_node())
        return -EINVAL;
    bm = numa_allocate_cpumask();
    if (!bm)
        return -ENOMEM;
    if (numa_node_to_cpus(node, bm) < 0) {
        r = -EINVAL;
    } else {
        for (unsigned i = 0; i < bm->size && i < CPU_SETSIZE; i++)
            if (numa_bitmask_isbitset(bm, i))
                CPU_SET(i, set);
        if (CPU_COUNT(set) == 0)
            r = -EINVAL;
    }
    numa_free_cpumask(bm);
    return r;
}

unsigned rvm_version(void)
{
    return RINGVM_VERSION;
}
