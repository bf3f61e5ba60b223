# SPDX-License-Identifier: MIT
# ringvm build. Out of tree into $(BUILD); `make help` lists the targets.

.DEFAULT_GOAL := all

CC ?= cc
CXX ?= c++
PREFIX ?= /usr/local
WERROR ?= 1
SANITIZE ?=
V ?= 0

# A sanitizer build lives in its own tree so that objects never mix.
ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build/san-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,

ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla-larger-than=65536
ifeq ($(WERROR),1)
WARN += -Werror
endif
SANFLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)

CPPFLAGS += -Iinclude -D_GNU_SOURCE
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -fPIC $(WARN) $(SANFLAGS) -MMD -MP
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 $(filter-out -Wstrict-prototypes -Wmissing-prototypes,$(WARN)) \
            $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LIBS := -luring -lhugetlbfs -lnuma -lxxhash -lpthread

LIB_SRCS := $(wildcard core/*.c arch/x86_64/*.c mem/*.c devices/*.c virtio/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB_A := $(BUILD)/libringvm.a
LIB_SO := $(BUILD)/libringvm.so

CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
CLI := $(BUILD)/ringvm

# Host-side helpers for the bench guest's console protocol, shared by bench and tests.
GUEST_HOST_OBJS := $(BUILD)/obj/guest/host/protocol.o $(BUILD)/obj/guest/host/netns.o

BENCH_C_SRCS := $(wildcard bench/*.c)
BENCH_CXX_SRCS := $(wildcard bench/*.cc)
BENCH_OBJS := $(BENCH_C_SRCS:%.c=$(BUILD)/obj/%.o) $(BENCH_CXX_SRCS:%.cc=$(BUILD)/obj/%.o) \
              $(GUEST_HOST_OBJS)
BENCH := $(BUILD)/ringvm-bench

EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

TEST_COMMON_SRCS := $(wildcard tests/common/*.c)
TEST_COMMON_OBJS := $(TEST_COMMON_SRCS:%.c=$(BUILD)/obj/%.o) $(GUEST_HOST_OBJS)
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
# The CLI's parser is tested directly: link its objects except main.
CLI_LIB_OBJS := $(filter-out $(BUILD)/obj/cli/main.o,$(CLI_OBJS))

include guest/guest.mk

# The fuzz tier: libFuzzer targets built with clang over the real parsers' sources.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard fuzz/fuzz_*.c))
# Each target's sources beside its own: what it drives, unchanged.
FUZZ_SRCS_fuzz_snapshot := core/snapfile.c core/snaprec.c core/log.c core/fileio.c
FUZZ_SRCS_fuzz_virtqueue := virtio/virtqueue.c mem/mem.c core/hv.c core/log.c
FUZZ_LIBS_fuzz_virtqueue := -lhugetlbfs -lnuma
FUZZ_SRCS_fuzz_mmio := virtio/mmio.c virtio/mmio_snap.c virtio/virtqueue.c mem/mem.c core/hv.c \
                       core/log.c
FUZZ_LIBS_fuzz_mmio := -lhugetlbfs -lnuma
FUZZ_SRCS_fuzz_blk := virtio/blk_req.c
FUZZ_SRCS_fuzz_blk_exec := virtio/blk_exec.c virtio/blk_req.c virtio/ratelimit.c \
                          virtio/virtqueue.c mem/mem.c core/hv.c core/log.c
FUZZ_LIBS_fuzz_blk_exec := -lhugetlbfs -lnuma
FUZZ_SRCS_fuzz_net := virtio/net_req.c
FUZZ_SRCS_fuzz_loader := arch/x86_64/pvh.c arch/x86_64/bzimage.c mem/mem.c core/hv.c core/log.c
FUZZ_LIBS_fuzz_loader := -lhugetlbfs -lnuma
FUZZ_SRCS_fuzz_cli := cli/args.c core/config.c
FUZZ_SRCS_fuzz_state := arch/x86_64/state_parse.c core/snaprec.c

.PHONY: all lib cli bench tests guest examples test test-asan test-tsan demo deps linux-guest install uninstall format format-check clean help fuzz fuzz-build

all: lib cli bench tests guest examples

lib: $(LIB_A) $(LIB_SO)
cli: $(CLI)
bench: $(BENCH) guest
tests: $(TESTS) guest fuzz-build
fuzz-build: $(FUZZ_TARGETS)

.SECONDEXPANSION:
$(BUILD)/fuzz/%: fuzz/%.c fuzz/check.h $$(FUZZ_SRCS_$$*)
	$(call say,FUZZ,$@)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRCS_$*) -lxxhash $(FUZZ_LIBS_$*)

# Each target for FUZZ_SECONDS over a copy of its seed corpus (fuzz/corpus/NAME).
fuzz: $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	    n=$$(basename $$t); c=$(BUILD)/fuzz/corpus-$$n; mkdir -p $$c; \
	    cp -n fuzz/corpus/$${n#fuzz_}/* $$c/ 2>/dev/null; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/ $$c || exit 1; \
	done
guest: $(GUEST_ELF)
examples: $(EXAMPLES)

$(BUILD)/obj/%.o: %.c
	$(call say,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cc
	$(call say,CXX,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS) core/libringvm.map
	$(call say,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libringvm.so.0 -Wl,--version-script=core/libringvm.map $(LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)

$(CLI): $(CLI_OBJS) $(LIB_A)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(LIB_A) $(LIBS)

$(BENCH): $(BENCH_OBJS) $(LIB_A)
	$(call say,LD,$@)
	$(Q)$(CXX) $(LDFLAGS) -o $@ $(BENCH_OBJS) $(LIB_A) -lbenchmark $(LIBS)

# A test's own libraries: test_blk_backend serves a disk over FUSE (libfuse3).
TEST_CFLAGS_test_blk_backend := $(shell pkg-config --cflags fuse3 2>/dev/null)
TEST_LIBS_test_blk_backend := $(shell pkg-config --libs fuse3 2>/dev/null)
$(BUILD)/obj/tests/test_blk_backend.o: CFLAGS += $(TEST_CFLAGS_test_blk_backend)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_COMMON_OBJS) $(CLI_LIB_OBJS) $(LIB_A)
	$(call say,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(TEST_COMMON_OBJS) $(CLI_LIB_OBJS) $(LIB_A) -lcmocka \
	    $(TEST_LIBS_$*) $(LIBS)

# Examples build against the installed-style interface: the public headers and the archive.
$(BUILD)/examples/%: examples/%.c $(LIB_A)
	$(call say,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_A) $(LIBS)

# The pkg-config file names the prefix it is installed under, so install writes it.
RINGVM_VERSION_STRING := $(shell sed -n 's/^\#define RINGVM_VERSION_STRING "\(.*\)"/\1/p' include/ringvm/ringvm.h)
define ringvm_pc
prefix=$(PREFIX)
libdir=$${prefix}/lib
includedir=$${prefix}/include

Name: ringvm
Description: embeddable KVM virtual machine monitor core
Version: $(RINGVM_VERSION_STRING)
Libs: -L$${libdir} -lringvm
Libs.private: $(LIBS)
Cflags: -I$${includedir}
endef
export ringvm_pc

# Installs the Debian packages the build and tests need, if any are missing.
deps:
	@scripts/deps.sh

# The Linux tier's guest: a kernel built from Debian's source (cached by what it is
# built from; ~6-15 minutes the first time) and a busybox initramfs. One copy
# for every BUILD (sanitizer trees too).
LINUX_DIR ?= build/linux
linux-guest:
	@scripts/linux-kernel.sh $(LINUX_DIR)
	@scripts/linux-initramfs.sh $(LINUX_DIR)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory linux-guest
	@BUILD=$(BUILD) RINGVM_LINUX_DIR=$(LINUX_DIR) tests/run.sh

# The suite again under AddressSanitizer and UBSan, and the tests of concurrent code under
# ThreadSanitizer, each in its own build tree (docs/fuzzing.md). The fuzz smoke runs briefly:
# its targets are built with ASan and UBSan whatever the tree.
TSAN_TESTS := test_lifecycle test_bus test_dirty test_snapshot test_virtio_blk test_virtio_net \
              test_virtio_mmio test_virtqueue test_snap_trust
test-asan: deps
	@$(MAKE) --no-print-directory SANITIZE=address,undefined all
	@$(MAKE) --no-print-directory linux-guest
	@BUILD=build/san-address-undefined RINGVM_LINUX_DIR=$(LINUX_DIR) FUZZ_SMOKE_SECONDS=3 \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/run.sh
test-tsan: deps
	@$(MAKE) --no-print-directory SANITIZE=thread all
	@BUILD=build/san-thread RINGVM_TESTS="$(TSAN_TESTS)" TSAN_OPTIONS=second_deadlock_stack=1 \
	    tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

install: lib cli
	install -d $(DESTDIR)$(PREFIX)/include/ringvm $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/ringvm/*.h $(DESTDIR)$(PREFIX)/include/ringvm/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libringvm.so.0
	ln -sf libringvm.so.0 $(DESTDIR)$(PREFIX)/lib/libringvm.so
	printf '%s\n' "$$ringvm_pc" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ringvm.pc
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/ringvm
	rm -f $(DESTDIR)$(PREFIX)/lib/libringvm.a $(DESTDIR)$(PREFIX)/lib/libringvm.so \
	      $(DESTDIR)$(PREFIX)/lib/libringvm.so.0 $(DESTDIR)$(PREFIX)/lib/pkgconfig/ringvm.pc \
	      $(DESTDIR)$(PREFIX)/bin/ringvm

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cc' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf build

help:
	@echo 'make [all]        library, ringvm command, bench, tests, bench guest'
	@echo 'make test         install missing packages, build, run unit and KVM tests'
	@echo 'make demo         install missing packages, build, print the benchmark table'
	@echo 'make bench        build build/ringvm-bench (Google Benchmark)'
	@echo 'make linux-guest  build the kernel and initramfs of the Linux tier (build/linux)'
	@echo 'make test-asan    the suite under AddressSanitizer and UBSan'
	@echo 'make test-tsan    the concurrency tests under ThreadSanitizer'
	@echo 'make fuzz         run each libFuzzer target FUZZ_SECONDS (60) (docs/fuzzing.md)'
	@echo 'make install PREFIX=/usr/local   headers, libringvm.{a,so}, ringvm.pc, ringvm'
	@echo 'make format | format-check      clang-format the tree / check it'
	@echo 'options: WERROR=0  V=1  SANITIZE=address,undefined|thread  BUILD=dir'

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(BENCH_OBJS:.o=.d) $(TEST_COMMON_OBJS:.o=.d) \
         $(TEST_SRCS:%.c=$(BUILD)/obj/%.d)
