/* SPDX-License-Identifier: MIT */
/* A VM configuration's defaults: pure, shared by the library and the command's parser. */
#include <string.h>

#include <ringvm/vm.h>

void rvm_vm_config_init(struct rvm_vm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->mem.size = 128ULL << 20;
    c->mem.backing = RVM_MEM_ANON;
    c->mem.numa_node = -1;
    c->vcpus = 1;
    c->numa_node = -1;
}
