# persistmap - a SQLite virtual table backed by a log-structured hash store.
#
#   make             build persistmap.so (loadable with .load ./persistmap)
#   make demo        run sql/quickstart.sql in the sqlite3 shell
#   make test        build and run every test suite (unit, SQL, examples, faults)
#   make test-asan   the suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench       benchmarks (QUICK=1 for a small variant)
#   make clean

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror
BASE     = $(WARN) -std=gnu11 -fPIC -fvisibility=hidden -D_GNU_SOURCE -DXXH_INLINE_ALL -pthread
PY      ?= /usr/bin/python3
BUILD   ?= build

ENGINE   = common io log hint index cache lock store txn iter compact
SQLPART  = persistmap vtab functions
ENGINE_OBJ = $(ENGINE:%=$(BUILD)/%.o)
SQL_OBJ    = $(SQLPART:%=$(BUILD)/%.o)
HEADERS    = $(wildcard ext/*.h)

BUILD_DEPS = gcc make libsqlite3-dev libxxhash-dev
TEST_DEPS  = $(BUILD_DEPS) sqlite3 libcmocka-dev python3-pytest strace
UNIT_TESTS = $(patsubst test/unit/%.c,$(BUILD)/%,$(wildcard test/unit/test_*.c))

.PHONY: all deps test-deps demo test unit sqltest test-asan bench clean

all: persistmap.so

deps:
	@sh test/deps.sh $(BUILD_DEPS)

test-deps:
	@sh test/deps.sh $(TEST_DEPS)

$(BUILD)/.dir:
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: ext/%.c $(HEADERS) | deps $(BUILD)/.dir
	$(CC) $(CFLAGS) $(BASE) -c $< -o $@

persistmap.so: $(ENGINE_OBJ) $(SQL_OBJ)
	$(CC) $(CFLAGS) $(BASE) -shared -Wl,--no-undefined -Wl,--version-script=ext/exports.map \
	  -o $@ $^ -lm

$(BUILD)/libpmengine.a: $(ENGINE_OBJ)
	rm -f $@ && ar rcs $@ $^

TEST_HEADERS = $(wildcard test/unit/*.h test/bench/*.h)

$(BUILD)/test_%: test/unit/test_%.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lcmocka -lm

demo: persistmap.so
	@sh test/deps.sh sqlite3
	sqlite3 -bail :memory: < sql/quickstart.sql

unit: test-deps $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

sqltest: test-deps persistmap.so
	$(PY) -m pytest -q test/sql

test: test-deps
	$(MAKE) unit
	$(MAKE) sqltest
	@echo "make test: all suites passed"

# Sanitizers: a separate build tree so the normal objects stay optimized.
test-asan: test-deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" unit

BENCH_N = $(if $(QUICK),100000,1000000)
BENCH_DIR ?= $(BUILD)/bench

$(BUILD)/bench_%: test/bench/bench_%.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lm

$(BUILD)/cache_trace: test/bench/cache_trace.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lm

bench: test-deps $(BUILD)/bench_engine $(BUILD)/cache_trace persistmap.so
	rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	$(BUILD)/bench_engine $(BENCH_DIR) $(BENCH_N)
	$(BUILD)/cache_trace $(if $(QUICK),--quick)

clean:
	rm -rf build persistmap.so
