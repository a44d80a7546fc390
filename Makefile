# persistmap - a SQLite virtual table backed by a log-structured hash store.
#
#   make             build persistmap.so (loadable with .load ./persistmap)
#   make demo        run sql/quickstart.sql in the sqlite3 shell
#   make test        build and run every test suite (unit, SQL, examples, faults)
#   make test-asan   the suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-bindings  the extension from every language binding, and the SQL
#                    suites on the newest SQLite (minutes: installs toolchains)
#   make install     persistmap.so and persistmap.h under $(DESTDIR)$(PREFIX)
#   make uninstall   removes them
#   make static      libpersistmap.a (-DSQLITE_CORE) to link into an application
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

.PHONY: all deps test-deps demo test unit sqltest test-asan bench bench-deps bench-report clean

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
	$(MAKE) test-static
	@echo "make test: all suites passed"

# Installing, as SQLite extensions are: the loadable library and its header
# (and libpersistmap.a if `make static` built it). PREFIX and DESTDIR as usual.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

.PHONY: install uninstall static test-static test-bindings

install: persistmap.so
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 0755 persistmap.so $(DESTDIR)$(LIBDIR)/persistmap.so
	install -m 0644 ext/persistmap.h $(DESTDIR)$(INCLUDEDIR)/persistmap.h
	if [ -f libpersistmap.a ]; then install -m 0644 libpersistmap.a $(DESTDIR)$(LIBDIR)/libpersistmap.a; fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/persistmap.so $(DESTDIR)$(LIBDIR)/libpersistmap.a \
	  $(DESTDIR)$(INCLUDEDIR)/persistmap.h

# Static linking: the SQL layer compiled with -DSQLITE_CORE (it calls SQLite
# directly, and its entry point returns SQLITE_OK, as sqlite3_auto_extension
# needs), with the engine, in one archive. Link: -lpersistmap -lsqlite3 -lm -pthread.
STATIC_OBJ = $(SQLPART:%=$(BUILD)/static/%.o)

$(BUILD)/static/%.o: ext/%.c $(HEADERS) | deps $(BUILD)/.dir
	@mkdir -p $(BUILD)/static
	$(CC) $(CFLAGS) $(BASE) -DSQLITE_CORE -c $< -o $@

libpersistmap.a: $(ENGINE_OBJ) $(STATIC_OBJ)
	rm -f $@ && ar rcs $@ $^

static: libpersistmap.a

# test/static/example.c: an application with persistmap linked in.
$(BUILD)/static_example: test/static/example.c ext/persistmap.h libpersistmap.a
	$(CC) $(CFLAGS) $(WARN) -std=gnu11 -Iext -o $@ $< libpersistmap.a -lsqlite3 -lm -pthread

test-static: test-deps $(BUILD)/static_example
	rm -rf $(BUILD)/static-example && mkdir -p $(BUILD)/static-example
	$(BUILD)/static_example $(BUILD)/static-example

# The extension compiled against another SQLite's headers (put first on the
# include path through CFLAGS, in its own BUILD tree); test-bindings uses it.
$(BUILD)/persistmap.so: $(ENGINE_OBJ) $(SQL_OBJ)
	$(CC) $(CFLAGS) $(BASE) -shared -Wl,--no-undefined -Wl,--version-script=ext/exports.map \
	  -o $@ $^ -lm

# Every binding of test/bindings/ (each installs its own Debian packages, and
# the Node one better-sqlite3 from npm; Node 20 or later must be installed),
# after the SQL suites on the SQLite that better-sqlite3 bundles.
test-bindings: test-deps persistmap.so
	$(PY) test/bindings/newer_sqlite.py
	$(PY) test/bindings/run.py

# Sanitizers: a separate build tree so the normal objects stay optimized.
test-asan: test-deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" unit

# Benchmarks. `make bench` runs them all in one go (QUICK=1: 100,000 keys
# instead of 1,000,000), writes each driver's JSON lines into $(BENCH_DIR),
# then test/bench/report.py prints the table of ratios and goals, writes
# $(BENCH_DIR)/results.json, the chart (doc/bench.png; $(BENCH_DIR)/bench.png
# for QUICK) and the README's benchmark section ($(BENCH_README)).
# `make bench-report` redraws the table, chart and section from the last run.
BENCH_N = $(if $(QUICK),100000,1000000)
BENCH_DIR ?= $(BUILD)/bench
BENCH_REPS ?= 5
BENCH_DEPS = liblmdb-dev librocksdb-dev gnuplot-nox
BENCH_CHART ?= $(if $(QUICK),$(BENCH_DIR)/bench.png,doc/bench.png)
BENCH_README ?= $(if $(QUICK),$(BENCH_DIR)/bench_readme.md,/tmp/bench_readme.md)

bench-deps:
	@sh test/deps.sh $(BENCH_DEPS)

$(BUILD)/bench_%: test/bench/bench_%.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lm

# The SQL driver loads persistmap.so and links Debian's libsqlite3 only. It
# defines fdatasync/fsync (counting wrappers): exporting them makes the
# calls of libsqlite3 and of persistmap.so bind to them.
$(BUILD)/bench_sql: test/bench/bench_sql.c test/bench/nullvtab.c | deps $(BUILD)/.dir
	$(CC) $(CFLAGS) $(BASE) -o $@ test/bench/bench_sql.c test/bench/nullvtab.c -lsqlite3 -lm -ldl \
	  -Wl,--export-dynamic-symbol=fdatasync -Wl,--export-dynamic-symbol=fsync

$(BUILD)/bench_kv: test/bench/bench_kv.c $(TEST_HEADERS) $(BUILD)/libpmengine.a | bench-deps
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -llmdb -lrocksdb -lm

$(BUILD)/cache_trace: test/bench/cache_trace.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lm

bench: test-deps bench-deps $(BUILD)/bench_engine $(BUILD)/bench_compact $(BUILD)/bench_sql $(BUILD)/bench_kv $(BUILD)/cache_trace persistmap.so
	rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	$(BUILD)/bench_engine $(BENCH_DIR) $(BENCH_N)
	$(BUILD)/bench_compact $(BENCH_DIR) $(BENCH_N) && rm -rf $(BENCH_DIR)/compact-store
	$(BUILD)/bench_sql -n $(BENCH_N) -r $(BENCH_REPS) -x ./persistmap.so -o $(BENCH_DIR)/sql.json $(BENCH_DIR)/sql
	$(BUILD)/bench_kv -n $(BENCH_N) -r $(BENCH_REPS) -o $(BENCH_DIR)/kv.json $(BENCH_DIR)/kv
	rm -rf $(BENCH_DIR)/sql $(BENCH_DIR)/kv
	$(BUILD)/cache_trace $(if $(QUICK),--quick) > $(BENCH_DIR)/cache_trace.txt; \
	  echo $$? > $(BENCH_DIR)/cache_trace.rc; cat $(BENCH_DIR)/cache_trace.txt
	$(PY) test/bench/report.py $(BENCH_DIR) --chart $(BENCH_CHART) --readme $(BENCH_README)
	@exit $$(cat $(BENCH_DIR)/cache_trace.rc)

bench-report: bench-deps
	$(PY) test/bench/report.py $(BENCH_DIR) --chart $(BENCH_CHART) --readme $(BENCH_README)

clean:
	rm -rf build persistmap.so libpersistmap.a
