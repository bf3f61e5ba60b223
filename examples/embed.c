/* Run a PVH guest with COM1 on stdout; exit with the guest's debug-exit value. */
#include <ringvm/ringvm.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    struct rvm_uart_config serial = {.out_fd = 1};
    struct rvm_pvh_params boot = {.cmdline = argc > 2 ? argv[2] : ""};
    struct rvm_vm_config config;
    struct rvm_vm_result result;
    struct rvm_hv *hv;
    struct rvm_vm *vm;

    rvm_vm_config_init(&config); /* 1 vCPU, 128 MiB; set .cpus, .mem.backing, ... */
    if (argc < 2 || rvm_hv_open(NULL, &hv) < 0 || rvm_vm_create(hv, &config, &vm) < 0)
        return 125;
    if (rvm_uart_attach(vm, &serial, NULL) < 0 || rvm_debug_exit_attach(vm, 0) < 0 ||
        rvm_vm_load_pvh_file(vm, argv[1], &boot, NULL) < 0 || rvm_vm_start(vm) < 0 ||
        rvm_vm_wait(vm, -1, &result) < 0)
        return 125;
    rvm_vm_destroy(vm);
    rvm_hv_close(hv);
    return result.end == RVM_END_DEBUG_EXIT ? (int)result.value : 0;
}
