# ammd — one non-recursive Makefile for the whole tree.
#
#   make            meterlib (libmeter.a), ammctl, ammd and metersim
#   make test       installs missing Debian packages, builds, runs unit tests
#                   (plain and under ASan+UBSan), integration tests and a
#                   bounded fuzz run of every target
#   make bench      benchmarks (medians and ratios, see README)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each
#   make asan       the unit tests under AddressSanitizer + UBSan
#   make valgrind   the unit tests under valgrind's leak checker
#   make demo       the main job on embedded defaults
#   make install    PREFIX (/usr/local) and DESTDIR honoured
#
# The top-level entry points first make sure the Debian packages are there
# (target `deps`) and then build in a second pass of this same Makefile, so
# that pkg-config sees the freshly installed libraries.

CC       ?= gcc
FUZZ_CC  ?= clang
PREFIX   ?= /usr/local
DESTDIR  ?=
B        := build
BA       := build-asan
BF       := build-fuzz
VECTORS  ?= $(abspath ../shared/vectors)
FUZZ_SECONDS ?= $(if $(CI),30,10)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CSTD     := -std=gnu11
OPT      ?= -O2 -g
CPPFLAGS += -Imeterlib -Idaemon -Idrivers -I$(B)/gen -D_GNU_SOURCE
DEPFLAGS  = -MMD -MP
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

PKGS     := libcrypto libevent libevent_pthreads libpq libmodbus libmosquitto libprotobuf-c libsystemd inih
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
CRIT_LIBS  = $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

# Debian 12 packages the build, the tests and the demo need.
DEB_PKGS := gcc make pkg-config clang libclang-rt-14-dev valgrind libssl-dev libevent-dev \
	libpq-dev libmodbus-dev libmosquitto-dev libprotobuf-c-dev protobuf-c-compiler \
	libsystemd-dev libinih-dev libcriterion-dev postgresql-15 postgresql-client-15 \
	mosquitto mosquitto-clients python3 procps iproute2

# ---- sources -------------------------------------------------------------

METERLIB_SRC := $(sort $(wildcard meterlib/*.c))
DRIVERS_SRC  := $(sort $(wildcard drivers/*/*.c))
CTL_SRC      := daemon/ammctl.c $(sort $(wildcard daemon/ctl_*.c))
AMMD_MAIN    := $(wildcard daemon/ammd.c)
PROTO_SRC    := $(wildcard daemon/*.proto)
PROTO_GEN    := $(PROTO_SRC:daemon/%.proto=$(B)/gen/%.pb-c.c)
DAEMON_SRC   := $(filter-out $(CTL_SRC) $(AMMD_MAIN),$(sort $(wildcard daemon/*.c)))
SIM_SRC      := $(sort $(wildcard tests/sim/*.c))
# The simulator's model (tests/sim without its main) is unit-tested and benchmarked too.
SIM_MODEL_SRC := $(filter-out tests/sim/metersim.c,$(SIM_SRC))
UNIT_SRC     := $(sort $(wildcard tests/unit/*.c))
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC    := $(sort $(wildcard tests/bench/bench_*.c))

obj = $(patsubst %.c,$(1)/%.o,$(2))

LIBMETER      := $(B)/libmeter.a
LIBAMM        := $(B)/libamm.a
BINS          := $(B)/ammctl $(if $(AMMD_MAIN),$(B)/ammd) $(if $(SIM_SRC),$(B)/metersim)
UNIT_BIN      := $(B)/unit-tests
ASAN_UNIT_BIN := $(BA)/unit-tests
FUZZ_BINS     := $(FUZZ_SRC:tests/fuzz/%.c=$(BF)/%)
BENCH_BINS    := $(BENCH_SRC:tests/bench/%.c=$(B)/%)

.PHONY: all deps build test test-run unit asan asan-run valgrind fuzz fuzz-run bench bench-run \
	demo demo-run install clean format integration
.DEFAULT_GOAL := all
# Keep objects make would otherwise treat as intermediate and delete.
.SECONDARY:

all: $(LIBMETER) $(BINS)

# ---- objects ---------------------------------------------------------------

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) $(CPPFLAGS) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BA)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CSTD) -O1 -g $(WARN) $(SANFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BF)/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CSTD) -O1 -g $(WARN) -fsanitize=fuzzer-no-link,address,undefined \
		-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION $(CPPFLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/gen/%.pb-c.o: $(B)/gen/%.pb-c.c
	$(CC) $(CSTD) $(OPT) $(CPPFLAGS) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@

# Generated protobuf headers must exist before anything that includes them.
$(call obj,$(B),$(DAEMON_SRC) $(CTL_SRC) $(AMMD_MAIN) $(DRIVERS_SRC) $(SIM_SRC) $(UNIT_SRC) $(BENCH_SRC)): | $(PROTO_GEN)
$(call obj,$(BA),$(DAEMON_SRC) $(DRIVERS_SRC) $(UNIT_SRC)): | $(PROTO_GEN)

$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: daemon/%.proto
	@mkdir -p $(@D)
	protoc-c --proto_path=daemon --c_out=$(B)/gen $<

# ---- libraries and programs -----------------------------------------------

$(LIBMETER): $(call obj,$(B),$(METERLIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(LIBAMM): $(call obj,$(B),$(DAEMON_SRC) $(DRIVERS_SRC)) $(PROTO_GEN:.c=.o)
	@rm -f $@
	ar rcs $@ $^

$(B)/ammctl: $(call obj,$(B),$(CTL_SRC)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

$(B)/ammd: $(call obj,$(B),$(AMMD_MAIN)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

$(B)/metersim: $(call obj,$(B),$(SIM_SRC)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

$(UNIT_BIN): $(call obj,$(B),$(UNIT_SRC) $(SIM_MODEL_SRC)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(CRIT_LIBS) $(PKG_LIBS)

$(ASAN_UNIT_BIN): $(call obj,$(BA),$(UNIT_SRC) $(SIM_MODEL_SRC) $(DAEMON_SRC) $(DRIVERS_SRC) $(METERLIB_SRC)) \
		$(PROTO_GEN:$(B)/%.c=$(BA)/$(B)/%.o)
	$(CC) $(SANFLAGS) -o $@ $^ $(CRIT_LIBS) $(PKG_LIBS)

$(BF)/libmeter.a: $(call obj,$(BF),$(METERLIB_SRC))
	@rm -f $@
	ar rcs $@ $^

# A fuzz target of a daemon or simulator parser needs more than libmeter.a:
# FUZZ_OBJS_name lists the extra sources it is linked with (compiled for the
# fuzz build), FUZZ_LIBS_name the extra libraries.
FUZZ_OBJS_config         := daemon/config.c daemon/log.c
FUZZ_LIBS_config         := -linih
FUZZ_OBJS_meter_csv      := daemon/meter_csv.c
FUZZ_OBJS_command_request := daemon/message.c daemon/json.c $(PROTO_GEN)
FUZZ_LIBS_command_request := -lprotobuf-c
FUZZ_OBJS_cmd_params     := daemon/cmd_kinds.c daemon/axdr_json.c daemon/json.c
FUZZ_OBJS_sim_faults     := tests/sim/faults.c
FUZZ_OBJS_discovery      := daemon/discovery.c
FUZZ_OBJS_gprs           := drivers/gprs/gprs.c drivers/tcpip/tcpip.c
FUZZ_LIBS_gprs           := -levent
$(foreach f,$(FUZZ_BINS),$(eval $(f): $(call obj,$(BF),$(FUZZ_OBJS_$(f:$(BF)/fuzz_%=%)))))
$(call obj,$(BF),daemon/message.c $(PROTO_GEN)): | $(PROTO_GEN)

$(BF)/fuzz_%: $(BF)/tests/fuzz/fuzz_%.o $(BF)/libmeter.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $(filter %.o,$^) $(filter %.a,$^) \
		-lcrypto -lm $(FUZZ_LIBS_$*)

$(B)/bench_%: $(B)/tests/bench/bench_%.o $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

$(B)/bench_sim: $(B)/tests/bench/bench_sim.o $(call obj,$(B),$(SIM_MODEL_SRC)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

# the --check client prints times with the simulator's own expect_iso_utc()
$(B)/bench_sim_serve: $(B)/tests/bench/bench_sim_serve.o $(call obj,$(B),$(SIM_MODEL_SRC)) $(LIBAMM) $(LIBMETER)
	$(CC) $(OPT) -o $@ $^ $(PKG_LIBS)

# ---- entry points that first install what is missing ------------------------

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "deps: run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	@$(MAKE) --no-print-directory all

test: deps
	@$(MAKE) --no-print-directory test-run

test-run: all $(UNIT_BIN) $(ASAN_UNIT_BIN) $(FUZZ_BINS)
	@rm -f $(B)/test-results
	@echo "== unit tests"
	AMM_VECTORS=$(VECTORS) tests/check.sh unit $(B)/test-results $(UNIT_BIN) --jobs=2
	@echo "== unit tests under AddressSanitizer + UBSan"
	AMM_VECTORS=$(VECTORS) ASAN_OPTIONS=detect_leaks=1 tests/check.sh unit-asan $(B)/test-results \
		$(ASAN_UNIT_BIN) --jobs=2
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory fuzz-run
	@tests/summary.sh $(B)/test-results

unit: $(UNIT_BIN)
	AMM_VECTORS=$(VECTORS) $(UNIT_BIN)

asan: deps
	@$(MAKE) --no-print-directory asan-run

asan-run: $(ASAN_UNIT_BIN)
	AMM_VECTORS=$(VECTORS) ASAN_OPTIONS=detect_leaks=1 $(ASAN_UNIT_BIN) --jobs=2

valgrind: $(UNIT_BIN)
	AMM_VECTORS=$(VECTORS) valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
		--error-exitcode=9 --trace-children=yes $(UNIT_BIN) --jobs=1

# The integration tests drive the daemon with the bench programs' --check modes.
integration: all $(BENCH_BINS)
	@if [ -x tests/integration/run.sh ]; then \
		AMM_VECTORS=$(VECTORS) BUILD=$(abspath $(B)) RESULTS=$(abspath $(B))/test-results \
			tests/integration/run.sh; \
	else echo "== integration: none yet"; fi

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-run

fuzz-run: $(FUZZ_BINS)
	@echo "== fuzzing each target for $(FUZZ_SECONDS) s"
	@set -e; for f in $(FUZZ_BINS); do \
		n=$${f##*/fuzz_}; work=$$(mktemp -d); \
		mkdir -p tests/fuzz/corpus/$$n; \
		echo "-- $$n"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=$$work/ $$work tests/fuzz/corpus/$$n 2>$$work.log || \
			{ tail -40 $$work.log; echo "fuzz target $$n found a problem" >&2; exit 1; }; \
		grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' $$work.log | tr '\n' ' '; echo; \
		rm -rf $$work $$work.log; \
	done; echo "fuzz: $(words $(FUZZ_BINS)) targets, no finding"; \
	echo "fuzz $(words $(FUZZ_BINS)) 0" >> $(B)/test-results

bench: deps
	@$(MAKE) --no-print-directory bench-run

bench-run: all $(BENCH_BINS)
	@if [ -x tests/bench/run.sh ]; then BUILD=$(abspath $(B)) AMM_VECTORS=$(VECTORS) tests/bench/run.sh; \
	else for b in $(BENCH_BINS); do $$b || exit 1; done; fi

demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: all
	@BUILD=$(abspath $(B)) tests/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/ammd/sql
	install -m 755 $(B)/ammctl $(DESTDIR)$(PREFIX)/bin/ammctl
	if [ -f $(B)/ammd ]; then install -m 755 $(B)/ammd $(DESTDIR)$(PREFIX)/sbin/ammd; fi
	if ls sql/*.sql >/dev/null 2>&1; then install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/ammd/sql/; fi
	if [ -f systemd/ammd.service ]; then \
		install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)/usr/lib/tmpfiles.d $(DESTDIR)/etc/ammd; \
		sed 's|@PREFIX@|$(PREFIX)|g' systemd/ammd.service > $(DESTDIR)/lib/systemd/system/ammd.service; \
		install -m 644 systemd/ammd.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/ammd.conf; \
		install -m 640 systemd/ammd.conf.example $(DESTDIR)/etc/ammd/ammd.conf.example; \
	fi
	if ls daemon/*.8 >/dev/null 2>&1; then install -d $(DESTDIR)$(PREFIX)/share/man/man8 && \
		install -m 644 daemon/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/; fi
	if ls daemon/*.1 >/dev/null 2>&1; then install -d $(DESTDIR)$(PREFIX)/share/man/man1 && \
		install -m 644 daemon/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/; fi

format:
	clang-format -i $(METERLIB_SRC) $(wildcard meterlib/*.h) $(DAEMON_SRC) $(CTL_SRC) \
		$(wildcard daemon/*.h) $(DRIVERS_SRC) $(SIM_SRC) $(UNIT_SRC) $(FUZZ_SRC) $(BENCH_SRC)

clean:
	rm -rf $(B) $(BA) $(BF)

-include $(shell find $(B) $(BA) $(BF) -name '*.d' 2>/dev/null)
