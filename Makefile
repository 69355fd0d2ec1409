# Spatium: one non-recursive Makefile.
#   make            library and every program into build/ (binaries in build/bin/)
#   make test       every cmocka suite (tests/test_*.c), non-zero exit on any failure
#   make sanitize   the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      build/bin/spatium-bench (all benchmarks)
# Sources are found by wildcard: a new module is a new .c file, no edit here.

CC      ?= gcc
BUILD   ?= build
PKGS    := libzmq cmocka zlib libpng
# Debian 12 ships msgpack-c 4.0 as `msgpack`; newer releases call it `msgpack-c`.
MSGPACK := $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(MSGPACK) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) $(MSGPACK) 2>/dev/null)

WARN    := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Werror
OPT     ?= -O2 -g
CFLAGS  += $(WARN) $(OPT) -fopenmp -D_GNU_SOURCE -I. $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -fopenmp -lm -lpthread

COMMON_SRC := $(wildcard common/*.c)
PROTO_SRC  := $(wildcard proto/*.c)
COORD_SRC  := $(wildcard coordinator/*.c)
WORKER_SRC := $(wildcard worker/*.c)
CLIENT_SRC := $(wildcard client/*.c)
BENCH_SRC  := $(filter-out bench/fmnist.c,$(wildcard bench/*.c))
TEST_SRC   := $(wildcard tests/test_*.c)
TESTSUP_SRC:= $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_COMMON := $(BUILD)/lib/libspatium.a
LIB_PROTO  := $(BUILD)/lib/libspproto.a
LIBS       := $(LIB_PROTO) $(LIB_COMMON)

PROGRAMS := $(BUILD)/bin/spatium-bench
ifneq ($(COORD_SRC),)
PROGRAMS += $(BUILD)/bin/spatium-coordinator
endif
ifneq ($(WORKER_SRC),)
PROGRAMS += $(BUILD)/bin/spatium-worker
endif
ifneq ($(CLIENT_SRC),)
PROGRAMS += $(BUILD)/bin/spatium
endif
ifneq ($(wildcard bench/fmnist.c),)
PROGRAMS += $(BUILD)/bin/spatium-fmnist
endif
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all test sanitize bench clean deps fmnist
.SECONDARY:
all: $(PROGRAMS) $(TESTS)

# Every target first makes sure the Debian packages are there (installs them as root).
$(DEPS_STAMP): deploy/install-deps.sh
	@sh deploy/install-deps.sh
	@mkdir -p $(@D) && touch $@
deps: $(DEPS_STAMP)

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_COMMON): $(call obj,$(COMMON_SRC))
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIB_PROTO): $(call obj,$(PROTO_SRC))
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/spatium-coordinator: $(call obj,$(COORD_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/spatium-worker: $(call obj,$(WORKER_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/spatium: $(call obj,$(CLIENT_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/spatium-bench: $(call obj,$(BENCH_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/spatium-fmnist: $(call obj,bench/fmnist.c) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TESTSUP_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Suites run one after another; every one runs even when an earlier one fails.
# Tests that start programs find them through SPATIUM_BIN.
test: all
	@SPATIUM_BIN=$(abspath $(BUILD)/bin) sh tests/run-suites.sh $(TESTS)

sanitize:
	@$(MAKE) --no-print-directory BUILD=build-san \
	    OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    test

bench: $(BUILD)/bin/spatium-bench
fmnist: $(BUILD)/bin/spatium-fmnist

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
