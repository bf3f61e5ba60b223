/* SPDX-License-Identifier: MIT */
/*
 * Kernels into a VM: a loader (rvm_pvh_load(), rvm_bzimage_load(), which
 * know only guest memory) run on the VM's memory, and vCPU 0's entry state
 * recorded; and the same from a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ringvm/boot.h>
#include <ringvm/mem.h>

#include "../../core/fileio.h"
#include "../../core/log.h"
#include "../../core/vm_internal.h"
#include "arch.h"

/* Loads by load() into the VM's memory and records vCPU 0's entry state. */
static int vm_load(struct rvm_vm *vm, const void *image, size_t size,
                   const struct rvm_pvh_params *params, struct rvm_boot_info *info,
                   int (*load)(struct rvm_mem *, const void *, size_t,
                               const struct rvm_pvh_params *, struct rvm_boot_info *))
{
    struct rvm_boot_info local;
    struct rvm_vcpu *v0;
    int r;

    if (!vm)
        return -EINVAL;
    if (!info)
        info = &local;
    /* Loading under a running guest would rewrite its memory and registers. */
    if (__atomic_load_n(&vm->lifecycle, __ATOMIC_ACQUIRE) != RVM_VM_CREATED ||
        __atomic_load_n(&vm->ended, __ATOMIC_ACQUIRE))
        return -EBUSY;
    r = load(vm->mem, image, size, params, info);
    if (r < 0)
        return r;
    pthread_mutex_lock(&vm->ctl);
    vm->boot = *info;
    vm->have_boot = true;
    v0 = vm->vcpus[0];
    pthread_mutex_unlock(&vm->ctl);
    /* Not under ctl: a vCPU ioctl waits while that vCPU is in KVM_RUN. */
    return v0 ? arch_vcpu_set_pvh_entry(v0, info) : 0;
}

int rvm_vm_load_pvh(struct rvm_vm *vm, const void *elf, size_t size,
                    const struct rvm_pvh_params *params, struct rvm_boot_info *info)
{
    return vm_load(vm, elf, size, params, info, rvm_pvh_load);
}

int rvm_vm_load_kernel(struct rvm_vm *vm, const void *image, size_t size,
                       const struct rvm_pvh_params *params, struct rvm_boot_info *info)
{
    const uint8_t *b = image;

    if (!vm || !image)
        return -EINVAL;
    if (size > 0x206 && b[0x1fe] == 0x55 && b[0x1ff] == 0xaa && !memcmp(b + 0x202, "HdrS", 4))
        return vm_load(vm, image, size, params, info, rvm_bzimage_load);
    if (size >= 4 && !memcmp(b, "\177ELF", 4))
        return vm_load(vm, image, size, params, info, rvm_pvh_load);
    rvm_err(vm->hv, "kernel: neither a bzImage nor an ELF image");
    return -ENOEXEC;
}

/* Reads path whole into a malloc'd buffer (read(), not mmap(): a file truncated under us
 * must not SIGBUS the process). */
static int read_image(struct rvm_vm *vm, const char *path, uint8_t **out, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    ssize_t got;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        rvm_err(vm->hv, "open %s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (st.st_size <= 0 || (uint64_t)st.st_size > RVM_MEM_MAX_SIZE) {
        rvm_err(vm->hv, "%s: empty or not a regular file", path);
        close(fd);
        return -ENOEXEC;
    }
    buf = malloc((size_t)st.st_size);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    got = fio_read_full(fd, buf, (size_t)st.st_size); /* shrank meanwhile: what there is */
    close(fd);
    if (got < 0) {
        rvm_err(vm->hv, "read %s: %s", path, strerror((int)-got));
        free(buf);
        return (int)got;
    }
    *out = buf;
    *len = (size_t)got;
    return 0;
}

/* Reads path and loads it with load (the file's bytes freed after). */
static int load_file(struct rvm_vm *vm, const char *path, const struct rvm_pvh_params *params,
                     struct rvm_boot_info *info,
                     int (*load)(struct rvm_vm *, const void *, size_t,
                                 const struct rvm_pvh_params *, struct rvm_boot_info *))
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int r;

    if (!vm || !path)
        return -EINVAL;
    if ((r = read_image(vm, path, &buf, &len)) < 0)
        return r;
    r = load(vm, buf, len, params, info);
    free(buf);
    return r;
}

int rvm_vm_load_pvh_file(struct rvm_vm *vm, const char *path, const struct rvm_pvh_params *params,
                         struct rvm_boot_info *info)
{
    return load_file(vm, path, params, info, rvm_vm_load_pvh);
}

int rvm_vm_load_kernel_file(struct rvm_vm *vm, const char *path,
                            const struct rvm_pvh_params *params, struct rvm_boot_info *info)
{
    return load_file(vm, path, params, info, rvm_vm_load_kernel);
}
