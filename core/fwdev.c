/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "fwdev.h"
#include "vm_internal.h"

bool fw_dev_valid(const struct rvm_acpi_device *d)
{
    uint64_t limit = d->io ? 0x10000ULL : 1ULL << 32;
    const char *n = d->name;

    if (strnlen(n, sizeof(d->name)) != 4 || (n[0] >= '0' && n[0] <= '9'))
        return false;
    for (int i = 0; i < 4; i++)
        if (!((n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
            return false;
    return d->hid[0] && strnlen(d->hid, sizeof(d->hid)) < sizeof(d->hid) && d->len &&
           (!d->io || d->len <= 255) && d->base < limit && d->len <= limit - d->base &&
           d->gsi >= -1 && d->gsi <= 23;
}

int vm_add_fw_dev(struct rvm_vm *vm, const struct rvm_acpi_device *d)
{
    if (!fw_dev_valid(d))
        return -EINVAL;
    pthread_mutex_lock(&vm->dev_lock);
    if (vm->n_fw_devs == FW_MAX_DEVS) {
        pthread_mutex_unlock(&vm->dev_lock);
        return -ENOSPC;
    }
    vm->fw_devs[vm->n_fw_devs++] = *d;
    pthread_mutex_unlock(&vm->dev_lock);
    return 0;
}

unsigned vm_fw_devs(struct rvm_vm *vm, struct rvm_acpi_device *out, unsigned max)
{
    unsigned n;

    pthread_mutex_lock(&vm->dev_lock);
    n = vm->n_fw_devs;
    if (out && max)
        memcpy(out, vm->fw_devs, (n < max ? n : max) * sizeof(*out));
    pthread_mutex_unlock(&vm->dev_lock);
    return n;
}
