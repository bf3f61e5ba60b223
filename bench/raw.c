/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../guest/abi.h"
#include "raw.h"

#define RAW_TSS   0xfffbd000UL
#define CPUID_MAX 256

int raw_template_init(struct raw_template *t, const struct guest_image *img, const char *cmdline)
{
    struct rvm_mem_config mc = {.size = BENCH_MEM_SIZE, .backing = RVM_MEM_ANON, .numa_node = -1};
    struct rvm_pvh_params pp = {.cmdline = cmdline};
    struct rvm_boot_info bi;
    struct rvm_mem *mem;
    int r;

    memset(t, 0, sizeof(*t));
    if ((r = rvm_mem_create(NULL, &mc, &mem)) < 0)
        return r;
    r = rvm_pvh_load(mem, img->elf, img->elf_size, &pp, &bi);
    if (r < 0) {
        rvm_mem_destroy(mem);
        return r;
    }
    t->mem = malloc(BENCH_MEM_SIZE);
    if (!t->mem) {
        rvm_mem_destroy(mem);
        return -ENOMEM;
    }
    rvm_mem_read(mem, 0, t->mem, BENCH_MEM_SIZE);
    rvm_mem_destroy(mem);
    t->span[0][0] = RVM_PVH_INFO_GPA, t->span[0][1] = 4096;
    t->span[1][0] = RVM_CMDLINE_GPA, t->span[1][1] = strlen(cmdline) + 1;
    t->span[2][0] = bi.image_lo, t->span[2][1] = bi.image_hi - bi.image_lo;
    t->entry = bi.entry;
    t->start_info = bi.start_info_gpa;

    t->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (t->kvm_fd < 0)
        return -errno;
    t->run_size = ioctl(t->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    t->cpuid = calloc(1, sizeof(*t->cpuid) + CPUID_MAX * sizeof(t->cpuid->entries[0]));
    if (!t->cpuid)
        return -ENOMEM;
    t->cpuid->nent = CPUID_MAX;
    if (ioctl(t->kvm_fd, KVM_GET_SUPPORTED_CPUID, t->cpuid) < 0)
        return -errno;
    return 0;
}

void raw_template_fini(struct raw_template *t)
{
    free(t->mem);
    free(t->cpuid);
    if (t->kvm_fd > 0)
        close(t->kvm_fd);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
    memset(s, 0, sizeof(*s));
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = s->db = s->s = s->g = 1;
}

static int raw_ioeventfd(int vm_fd, uint64_t addr, uint32_t flags, int efd)
{
    struct kvm_ioeventfd io = {.addr = addr, .len = 4, .fd = efd, .flags = flags};

    return ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int raw_vm_create(const struct raw_template *t, int efd, struct raw_vm *vm)
{
    return raw_vm_create_sized(t, efd, BENCH_MEM_SIZE, vm);
}

int raw_vm_create_sized(const struct raw_template *t, int efd, uint64_t mem_size, struct raw_vm *vm)
{
    struct kvm_userspace_memory_region slot = {.slot = 0, .memory_size = mem_size};
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    memset(vm, 0, sizeof(*vm));
    vm->vm_fd = vm->vcpu_fd = -1;
    if ((vm->vm_fd = ioctl(t->kvm_fd, KVM_CREATE_VM, 0)) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, RAW_TSS) < 0 ||
        ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return -errno;
    if (mem_size < BENCH_MEM_SIZE || mem_size > 3ULL << 30)
        return -EINVAL;
    vm->mem_size = mem_size;
    vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm->mem == MAP_FAILED) {
        vm->mem = NULL;
        return -errno;
    }
    for (int i = 0; i < 3; i++)
        memcpy(vm->mem + t->span[i][0], t->mem + t->span[i][0], t->span[i][1]);
    slot.userspace_addr = (uintptr_t)vm->mem;
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0 ||
        (vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0)) < 0)
        return -errno;
    vm->run = mmap(NULL, (size_t)t->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
    if (vm->run == MAP_FAILED) {
        vm->run = NULL;
        return -errno;
    }
    vm->run_size = (size_t)t->run_size;
    if (ioctl(vm->vcpu_fd, KVM_SET_CPUID2, t->cpuid) < 0 ||
        ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    seg(&sregs.cs, 0x8, 0xb);
    seg(&sregs.ds, 0x10, 0x3);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    seg(&sregs.tr, 0x18, 0xb);
    sregs.tr.s = 0;
    sregs.tr.limit = 0x67;
    sregs.cr0 = 0x11;
    sregs.cr4 = 0;
    sregs.efer = 0;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 2;
    regs.rip = t->entry;
    regs.rbx = t->start_info;
    if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs) < 0 ||
        ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    if (efd >= 0) {
        int r = raw_ioeventfd(vm->vm_fd, BG_IOEVENTFD_PIO_PORT, KVM_IOEVENTFD_FLAG_PIO, efd);
        return r < 0 ? r : raw_ioeventfd(vm->vm_fd, BG_IOEVENTFD_MMIO_ADDR, 0, efd);
    }
    return 0;
}

void raw_vm_destroy(struct raw_vm *vm)
{
    if (vm->run)
        munmap(vm->run, vm->run_size);
    if (vm->vcpu_fd >= 0)
        close(vm->vcpu_fd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->mem)
        munmap(vm->mem, vm->mem_size);
}

int raw_vm_first_exit(struct raw_vm *vm)
{
    while (ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int raw_vm_run(struct raw_vm *vm, struct console *con)
{
    struct kvm_run *run = vm->run;

    for (;;) {
        if (ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;

            if (run->io.direction == KVM_EXIT_IO_OUT) {
                if (run->io.port == BG_DEBUG_EXIT_PORT)
                    return 0;
                if (run->io.port == BG_COM1_BASE)
                    console_out(con, (const char *)data, 1);
            } else {
                /* LSR: transmitter empty; anything else reads as all ones. */
                memset(data, run->io.port == BG_COM1_BASE + 5 ? 0x60 : 0xff,
                       (size_t)run->io.size * run->io.count);
            }
            break;
        }
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
            break;
        case KVM_EXIT_INTR:
            break;
        default:
            return -EIO;
        }
    }
}

int64_t raw_vm_tsc_khz(struct raw_vm *vm)
{
    int r = ioctl(vm->vcpu_fd, KVM_GET_TSC_KHZ, 0);
    return r < 0 ? -errno : r;
}

double raw_vm_time_to_first_exit(const struct raw_template *t, uint64_t mem_size)
{
    struct raw_vm vm;
    double t0 = bench_now();
    int r = raw_vm_create_sized(t, -1, mem_size, &vm);

    if (r == 0)
        r = raw_vm_first_exit(&vm);
    double dt = bench_now() - t0;
    raw_vm_destroy(&vm);
    return r < 0 ? -1 : dt;
}
