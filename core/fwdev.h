/* SPDX-License-Identifier: MIT */
/*
 * What a device tells the guest's firmware tables about itself. A device
 * that a guest finds through ACPI (the DSDT) registers one entry when it
 * attaches; arch/ renders the entries into its tables without knowing what
 * the devices are. Core keeps the list and never looks inside it.
 */
#ifndef RINGVM_CORE_FWDEV_H
#define RINGVM_CORE_FWDEV_H

#include <ringvm/boot.h>

struct rvm_vm;

#define FW_MAX_DEVS 32

/* Whether d is one the tables can describe (rvm_acpi_device's rules). */
bool fw_dev_valid(const struct rvm_acpi_device *d);

/*
 * Adds d to the VM's list (copied), in attach order. -EINVAL when
 * !fw_dev_valid(d); -ENOSPC when FW_MAX_DEVS are registered.
 */
int vm_add_fw_dev(struct rvm_vm *vm, const struct rvm_acpi_device *d);

/* Copies up to max entries into out (may be NULL); returns how many the VM has. */
unsigned vm_fw_devs(struct rvm_vm *vm, struct rvm_acpi_device *out, unsigned max);

#endif
