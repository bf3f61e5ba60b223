# SPDX-License-Identifier: MIT
#
# Bench guest: a freestanding x86_64 PVH ELF image.
# Included by the top-level Makefile, or standalone from the repo root:
#     make -f guest/guest.mk BUILD=build
# Everything here is GUEST_-prefixed so it does not clash with the host build.
# The includer's $(Q) and $(say) quieten the recipes; standalone they echo.

GUEST_STANDALONE := $(if $(filter 1,$(words $(MAKEFILE_LIST))),1,)
GUEST_SRCDIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
BUILD ?= build
GUEST_OUT := $(BUILD)/guest
GUEST_ELF := $(GUEST_OUT)/benchguest.elf

GUEST_CC ?= gcc
GUEST_CPPFLAGS := -I$(GUEST_SRCDIR)
GUEST_CFLAGS := -m64 -march=x86-64 -mtune=generic -std=gnu11 -O2 -Wall -Wextra -Werror \
	-ffreestanding -fno-builtin -nostdlib -mgeneral-regs-only -mno-red-zone -mcmodel=small \
	-fno-pic -fno-pie -fno-stack-protector -fno-stack-check -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-tree-loop-distribute-patterns
GUEST_ASFLAGS := -m64 -Wall -Werror
GUEST_LDFLAGS := -m64 -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,-z,max-page-size=4096

GUEST_C_SRCS := $(GUEST_SRCDIR)/bench.c $(GUEST_SRCDIR)/blk.c $(GUEST_SRCDIR)/mem.c $(GUEST_SRCDIR)/vio.c $(GUEST_SRCDIR)/net.c \
	$(GUEST_SRCDIR)/hostile.c
GUEST_S_SRCS := $(GUEST_SRCDIR)/boot.S
GUEST_C_OBJS := $(patsubst $(GUEST_SRCDIR)/%.c,$(GUEST_OUT)/%.c.o,$(GUEST_C_SRCS))
GUEST_S_OBJS := $(patsubst $(GUEST_SRCDIR)/%.S,$(GUEST_OUT)/%.S.o,$(GUEST_S_SRCS))
GUEST_OBJS := $(GUEST_S_OBJS) $(GUEST_C_OBJS)
GUEST_LDS := $(GUEST_OUT)/benchguest.lds

# Don't let this fragment steal the includer's default goal.
GUEST_SAVED_GOAL := $(.DEFAULT_GOAL)

$(GUEST_ELF): $(GUEST_OBJS) $(GUEST_LDS)
	$(call say,LD,$@)
	$(Q)$(GUEST_CC) $(GUEST_LDFLAGS) -T $(GUEST_LDS) -o $@ $(GUEST_OBJS)

$(GUEST_C_OBJS): $(GUEST_OUT)/%.c.o: $(GUEST_SRCDIR)/%.c | $(GUEST_OUT)
	$(call say,CC,$<)
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_CFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(GUEST_S_OBJS): $(GUEST_OUT)/%.S.o: $(GUEST_SRCDIR)/%.S | $(GUEST_OUT)
	$(call say,AS,$<)
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) $(GUEST_ASFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(GUEST_LDS): $(GUEST_SRCDIR)/benchguest.ld | $(GUEST_OUT)
	$(Q)$(GUEST_CC) $(GUEST_CPPFLAGS) -E -P -x c -MMD -MP -MT $@ -MF $@.d -o $@ $<

$(GUEST_OUT):
	mkdir -p $@

.PHONY: guest-clean
guest-clean:
	rm -rf $(GUEST_OUT)

-include $(GUEST_OBJS:.o=.d) $(GUEST_LDS).d

ifeq ($(GUEST_STANDALONE),1)
.DEFAULT_GOAL := $(GUEST_ELF)
else
.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
endif
