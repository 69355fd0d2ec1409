# Spatium: one non-recursive Makefile.
#   make            library and every program into build/ (binaries in build/bin/)
#   make test       every cmocka suite (tests/test_*.c), non-zero exit on any failure
#   make sanitize   the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      build/bin/spatium-bench (all benchmarks)
#   make check-learning  Fashion-MNIST 784-128-10 at 4 bits reaches 0.85 in 5 epochs
# Sources are found by wildcard: a new module is a new .c file, no edit here.

CC      ?= gcc
BUILD   ?= build
PKGS    := libzmq cmocka zlib libpng
# Debian 12 ships msgpack-c 4.0 as `msgpack`; newer releases call it `msgpack-c`.
# These three are expanded when a recipe runs, not when make reads this file:
# on a fresh machine the packages (and pkg-config itself) only exist once the
# deps stamp below has run install-deps.sh, so parse-time values would be empty.
MSGPACK     = $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) $(MSGPACK) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) $(MSGPACK) 2>/dev/null)

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
FUZZ_SRC   := $(wildcard fuzz/*.c)
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

.PHONY: all test sanitize bench clean deps fmnist check-learning
.SECONDARY:
# The fuzz harnesses and the seed maker are compiled here too (not linked:
# libFuzzer needs clang; see `make fuzz`), so a change that breaks them
# fails `make` and `make test`.
all: $(PROGRAMS) $(TESTS) $(call obj,$(FUZZ_SRC))

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

# A unit test of a program's module links that module's object too.
$(BUILD)/tests/test_cache: $(BUILD)/obj/tests/test_cache.o $(call obj,worker/cache.c $(TESTSUP_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Suites run one after another; every one runs even when an earlier one fails.
# Tests that start programs find them through SPATIUM_BIN.
test: all
	@SPATIUM_BIN=$(abspath $(BUILD)/bin) sh tests/run-suites.sh $(TESTS)

sanitize:
	@$(MAKE) --no-print-directory BUILD=build-san \
	    OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Wno-format-truncation" \
	    test

bench: $(BUILD)/bin/spatium-bench
fmnist: $(BUILD)/bin/spatium-fmnist

# Real-data learning check (Fashion-MNIST, 5 epochs, >= 0.85 test accuracy).
check-learning: $(BUILD)/bin/spatium-fmnist
	@sh bench/check-learning.sh

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- fuzz: coverage-guided fuzzing of every decoder of untrusted input ------
#   make fuzz-build                  libFuzzer harnesses build-fuzz/fuzz_<name> (one per fuzz/fuzz_<name>.c)
#   make fuzz [FUZZ_SECONDS=60]      runs each harness in turn on a copy of its corpus; fails on any finding
#   make fuzz-regress                replays every reproducer in fuzz/crashes/; fails while one still fails
#   make fuzz-seeds                  rewrites fuzz/corpus/ from the real encoders (fuzz/make_seeds.c)
#   make fuzz-clean                  removes build-fuzz/
# Only these targets need clang and libFuzzer; `make`, `make test` and `make sanitize` never do.
# See fuzz/README.md.
FUZZ_CC      ?= clang
FUZZ_DIR     := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 16384
# Inputs are at most FUZZ_MAX_LEN bytes: one allocation of more than 512 MB is a finding
# (declared sizes trusted before the bytes behind them were checked).
FUZZ_FLAGS   ?= -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  = -std=c11 -g -O1 -fno-omit-frame-pointer -fopenmp -D_GNU_SOURCE -I. $(PKG_CFLAGS) -MMD -MP
FUZZ_NAMES   := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_NAMES))
FUZZ_OBJS    := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(COMMON_SRC) $(PROTO_SRC))
FUZZ_LIB     := $(FUZZ_DIR)/lib/libspfuzz.a
FUZZ_LDLIBS  = $(PKG_LIBS) -fopenmp -lm -lpthread
FUZZ_APT     := apt-get install -y clang libclang-rt-14-dev libomp-14-dev

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-regress fuzz-clean

# clang with libFuzzer, ASan, UBSan and OpenMP must link a trivial harness.
$(FUZZ_DIR)/.clang-ok:
	@mkdir -p $(@D)
	@printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
	    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
	    > $(@D)/probe.c
	@if $(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp $(@D)/probe.c -o $(@D)/probe 2>/dev/null; \
	then touch $@; else \
	    echo "fuzz: $(FUZZ_CC) cannot build a libFuzzer harness; install the tools with:" >&2; \
	    echo "  $(FUZZ_APT)" >&2; exit 1; fi

# Library code: coverage instrumentation and sanitizers, project warnings without -Werror
# (those are gcc's to enforce); harnesses: the full strict set.
$(FUZZ_DIR)/obj/%.o: %.c | $(FUZZ_DIR)/.clang-ok $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
$(FUZZ_DIR)/obj/fuzz/%.o: fuzz/%.c | $(FUZZ_DIR)/.clang-ok $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp -o $@ $^ $(FUZZ_LDLIBS)
$(FUZZ_DIR)/make_seeds: $(FUZZ_DIR)/obj/fuzz/make_seeds.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fopenmp -o $@ $^ $(FUZZ_LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz-seeds: $(FUZZ_DIR)/make_seeds
	OMP_NUM_THREADS=1 $(FUZZ_DIR)/make_seeds fuzz/corpus

# One fuzzer at a time, one process each (the machine is shared). New inputs go to
# build-fuzz/corpus/<name>/ (fuzz/corpus/ is never written), findings to
# build-fuzz/artifacts/<name>/, the whole output to build-fuzz/logs/<name>.log.
fuzz: fuzz-build
	@fail=0; for h in $(FUZZ_NAMES); do \
	    rm -rf $(FUZZ_DIR)/corpus/$$h; \
	    mkdir -p $(FUZZ_DIR)/corpus/$$h $(FUZZ_DIR)/artifacts/$$h $(FUZZ_DIR)/logs; \
	    if [ -d fuzz/corpus/$$h ]; then cp fuzz/corpus/$$h/* $(FUZZ_DIR)/corpus/$$h/; fi; \
	    echo "fuzz: $$h for $(FUZZ_SECONDS) s"; \
	    OMP_NUM_THREADS=1 $(FUZZ_DIR)/fuzz_$$h $(FUZZ_DIR)/corpus/$$h \
	        -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) $(FUZZ_FLAGS) \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$$h/ \
	        > $(FUZZ_DIR)/logs/$$h.log 2>&1; rc=$$?; \
	    grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec' \
	        $(FUZZ_DIR)/logs/$$h.log | sed "s|^|  $$h: |"; \
	    if [ $$rc -ne 0 ]; then fail=1; echo "fuzz: $$h FAILED (rc $$rc), see $(FUZZ_DIR)/logs/$$h.log:"; \
	        grep -E '^==[0-9]+==ERROR|SUMMARY|^fuzz_|artifact' $(FUZZ_DIR)/logs/$$h.log | head -8; fi; \
	done; exit $$fail

# Each reproducer runs once through its harness (fuzz/crashes/<name>/* -> build-fuzz/fuzz_<name>).
fuzz-regress: fuzz-build
	@fail=0; for d in fuzz/crashes/*/; do h=$$(basename $$d); \
	    for f in $$d*; do [ -f "$$f" ] || continue; \
	        if OMP_NUM_THREADS=1 $(FUZZ_DIR)/fuzz_$$h $(FUZZ_FLAGS) $$f > $(FUZZ_DIR)/regress.log 2>&1; \
	        then echo "fuzz-regress: $$f fixed"; \
	        else fail=1; echo "fuzz-regress: $$f STILL FAILS:"; \
	            grep -E 'SUMMARY|ERROR|^fuzz_' $(FUZZ_DIR)/regress.log | head -3; fi; \
	    done; done; exit $$fail

fuzz-clean:
	rm -rf $(FUZZ_DIR)

-include $(shell find $(FUZZ_DIR) -name '*.d' 2>/dev/null)
