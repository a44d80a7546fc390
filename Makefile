# persistmap - a SQLite virtual table backed by a log-structured hash store.
#
#   make             build persistmap.so (loadable with .load ./persistmap)
#   make demo        run sql/quickstart.sql in the sqlite3 shell
#   make test        build and run every test suite (unit, SQL, examples, faults, kill -9,
#                    fuzz corpora), under a trace of the files they touch
#   make test-asan   the suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-tsan   threaded unit tests and an 8-thread SQL stress under ThreadSanitizer
#   make test-valgrind  a quick subset under valgrind (memcheck, leaks)
#   make fuzz        each libFuzzer target for FUZZ_SECONDS (make test replays the corpora)
#   make soak        the long reliability runs: 100,000 kill -9s, fuzzing, power-loss rounds
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

.PHONY: all deps test-deps demo test unit sqltest test-files test-asan test-tsan test-valgrind soak bench bench-deps bench-report clean

all: persistmap.so

deps:
	@sh test/deps.sh $(BUILD_DEPS)

test-deps:
	@sh test/deps.sh $(TEST_DEPS)

$(BUILD)/.dir:
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: ext/%.c $(HEADERS) | deps $(BUILD)/.dir
	$(CC) $(CFLAGS) $(BASE) -c $< -o $@

# -z nodelete: once loaded, the library stays mapped, also when SQLite unloads
# it after its entry point failed (out of memory) with the module or some
# functions already registered on the connection.
persistmap.so: $(ENGINE_OBJ) $(SQL_OBJ)
	$(CC) $(CFLAGS) $(BASE) -shared -Wl,--no-undefined -Wl,-z,nodelete -Wl,--version-script=ext/exports.map \
	  -o $@ $^ -lm

$(BUILD)/libpmengine.a: $(ENGINE_OBJ)
	rm -f $@ && ar rcs $@ $^

TEST_HEADERS = $(wildcard test/unit/*.h test/bench/*.h)

$(BUILD)/test_%: test/unit/test_%.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lcmocka -lm

# test_sqlite_nomem loads this tree's persistmap.so (PM_EXTENSION, below) into
# Debian's libsqlite3 and fails SQLite's allocations: no engine linked in.
NOMEM_SO = $(if $(filter build,$(BUILD)),persistmap.so,$(BUILD)/persistmap.so)

$(BUILD)/test_sqlite_nomem: test/unit/test_sqlite_nomem.c $(TEST_HEADERS) $(NOMEM_SO)
	$(CC) $(CFLAGS) $(BASE) -Iext -o $@ $< -lsqlite3 -lcmocka

demo: persistmap.so
	@sh test/deps.sh sqlite3
	sqlite3 -bail :memory: < sql/quickstart.sql

unit: test-deps $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; PM_EXTENSION=$(abspath $(NOMEM_SO)) $$t; done

sqltest: test-deps persistmap.so
	$(PY) -m pytest -q -p no:cacheprovider test/sql

# make test runs these suites under a file trace (test-files).
TEST_SUITES = unit sqltest test-static fuzz-replay

test: test-deps
	$(MAKE) test-files
	@echo "make test: all suites passed"

# Files: every suite of make test runs under strace's file trace with TMPDIR
# a fresh directory; test/check_file_trace.py then fails if anything outside
# $(BUILD) (which holds that TMPDIR) and the stores the example scripts name
# was created, opened for writing, truncated, renamed or removed. Everything
# is built first, untraced. What cannot run under ptrace runs again
# afterwards, untraced: the tests that run strace themselves, and the fuzz
# corpora with LeakSanitizer. PM_NO_FILE_TRACE=1 runs the suites without the
# trace, where ptrace is not allowed.
FILE_CALLS = open,openat,openat2,creat,mkdir,mkdirat,rmdir,unlink,unlinkat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,truncate,mknod,mknodat,chdir,fchdir,clone,clone3,fork,vfork
FILE_TRACE = strace -f -y -qq --seccomp-bpf -e status=successful -e trace=$(FILE_CALLS)

test-files: test-deps
	$(MAKE) $(UNIT_TESTS) persistmap.so $(BUILD)/static_example fuzz-build
	@set -e; d=$$(mktemp -d $(abspath $(BUILD))/files.XXXXXX); mkdir $$d/tmp; \
	if [ -n "$(PM_NO_FILE_TRACE)" ]; then \
	  TMPDIR=$$d/tmp PYTHONDONTWRITEBYTECODE=1 $(MAKE) $(TEST_SUITES); \
	else \
	  echo "$(FILE_TRACE) -o $$d/trace $(MAKE) $(TEST_SUITES)"; \
	  TMPDIR=$$d/tmp PYTHONDONTWRITEBYTECODE=1 PM_FILE_TRACE=1 $(FILE_TRACE) -o $$d/trace \
	    $(MAKE) $(TEST_SUITES); \
	  $(PY) test/check_file_trace.py $$d/trace --cwd . --allow $(BUILD) --scripts 'sql/*.sql'; \
	fi; rm -rf $$d
	$(if $(PM_NO_FILE_TRACE),,$(PY) -m pytest -q -p no:cacheprovider test/sql/test_bench_smoke.py \
	  test/sql/test_file_trace.py test/sql/test_concurrency.py -k "strace or real_trace")
	$(if $(PM_NO_FILE_TRACE),,$(MAKE) fuzz-replay)

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
	$(CC) $(CFLAGS) $(BASE) -shared -Wl,--no-undefined -Wl,-z,nodelete -Wl,--version-script=ext/exports.map \
	  -o $@ $^ -lm

# Every binding of test/bindings/ (each installs its own Debian packages, and
# the Node one better-sqlite3 from npm; Node 20 or later must be installed),
# after the SQL suites on the SQLite that better-sqlite3 bundles.
test-bindings: test-deps persistmap.so
	$(PY) test/bindings/newer_sqlite.py
	$(PY) test/bindings/run.py

# Sanitizers: a separate build tree so the normal objects stay optimized.
# The C suites, then the whole SQL suite with persistmap.so built with the
# sanitizers (Python itself is not: libasan is preloaded, leaks not checked)
# but for the test that counts a read's system calls (ASan's allocator makes
# some of its own).
ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_SQL_SKIP = reads_make_no_system_call

test-asan: test-deps
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" unit build/asan/persistmap.so
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	  PM_EXTENSION=$(abspath build/asan/persistmap.so) $(PY) -m pytest -q -p no:cacheprovider \
	  -p no:faulthandler test/sql -k "not $(ASAN_SQL_SKIP)"

# Valgrind (memcheck, leaks too): a quick subset, the engine's basic unit
# tests and every example script of sql/ through the sqlite3 shell, whose
# output must still match.
VALGRIND = valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
VALGRIND_TESTS = test_open_refuses_foreign_dir test_types_roundtrip test_txn_commit_abort_savepoints \
  test_prepared_group_counts_after_crash test_next_int_key test_iterators test_torn_tail_every_offset \
  test_flipped_byte_then_recover test_lying_length test_fsync_failure_stops_writes

test-valgrind: test-deps persistmap.so $(BUILD)/test_store
	@sh test/deps.sh valgrind
	@set -e; for t in $(VALGRIND_TESTS); do echo "== valgrind test_store $$t"; \
	  PM_TEST_FILTER=$$t $(VALGRIND) $(BUILD)/test_store > $(BUILD)/valgrind.log 2>&1 \
	    || { cat $(BUILD)/valgrind.log; exit 1; }; done; rm -f $(BUILD)/valgrind.log
	@set -e; d=$$(mktemp -d $(abspath $(BUILD))/valgrind.XXXXXX); ln -s $(abspath persistmap.so) $$d/; \
	for s in sql/*.sql; do echo "== valgrind sqlite3 < $$s"; \
	  rc=0; (cd $$d && exec $(VALGRIND) sqlite3 :memory: < $(abspath .)/$$s > out 2>&1) || rc=$$?; \
	  test $$rc != 99 || { cat $$d/out; exit 1; }; \
	  diff -u $${s%.sql}.expected $$d/out; done; rm -rf $$d
	@echo "valgrind: no errors, no leaks"

# ThreadSanitizer (build/tsan): the unit tests that run threads (group
# commit, the cache's shards, a shrink beside a writer: chosen with
# PM_TEST_FILTER; checks and figures beside a writer: test_threads), then
# test/unit/stress_threads.c: eight threads with a connection each,
# persistmap linked in (-DSQLITE_CORE) with Debian's libsqlite3, TSAN_OPS
# operations per thread. Any report fails the target.
TSAN_FLAGS = -O1 -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_RUN   = TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $(TSAN_OPTIONS)"
TSAN_OPS  ?= 500

$(BUILD)/stress_threads: test/unit/stress_threads.c ext/persistmap.h $(ENGINE_OBJ) $(STATIC_OBJ)
	$(CC) $(CFLAGS) $(BASE) -Iext -o $@ $< $(ENGINE_OBJ) $(STATIC_OBJ) -lsqlite3 -lm

test-tsan: test-deps
	$(MAKE) BUILD=build/tsan CFLAGS="$(TSAN_FLAGS)" build/tsan/test_store build/tsan/test_cache \
	  build/tsan/test_compact build/tsan/test_threads build/tsan/stress_threads
	PM_TEST_FILTER=test_group_commit $(TSAN_RUN) build/tsan/test_store
	PM_TEST_FILTER=test_threads $(TSAN_RUN) build/tsan/test_cache
	PM_TEST_FILTER=test_shrink_with_concurrent_writer $(TSAN_RUN) build/tsan/test_compact
	$(TSAN_RUN) build/tsan/test_threads
	rm -rf build/tsan/stress && mkdir -p build/tsan/stress
	$(TSAN_RUN) build/tsan/stress_threads build/tsan/stress $(TSAN_OPS)

# Fuzzing (libFuzzer, clang; build/fuzz): fuzz_recovery feeds arbitrary bytes
# as a store's segment, hint and manifest files to open and recovery, then
# runs a few operations; fuzz_sql runs arbitrary SQL against persistmap
# tables (linked in with -DSQLITE_CORE, Debian's libsqlite3) in a temporary
# directory. Both under ASan and UBSan, with memory limits so that a lying
# length field fails. `make fuzz-replay` (part of `make test`) runs every
# input of test/fuzz/corpus/<target>/ once; `make fuzz` fuzzes each target
# for FUZZ_SECONDS, new inputs going to $(FUZZ_DIR)/corpus-<target>/ and
# crashes to $(FUZZ_DIR)/crash-*.
FUZZ_CC      ?= clang
FUZZ_DEPS     = clang libclang-rt-14-dev
FUZZ_DIR      = $(BUILD)/fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   = -O1 -g $(FUZZ_SAN) $(WARN) -std=gnu11 -D_GNU_SOURCE -DXXH_INLINE_ALL -pthread
FUZZ_TARGETS  = fuzz_recovery fuzz_sql
FUZZ_SECONDS ?= 300
FUZZ_LIMITS   = -rss_limit_mb=2048 -timeout=60
FUZZ_MALLOC_fuzz_recovery = -malloc_limit_mb=32
FUZZ_MALLOC_fuzz_sql      = -malloc_limit_mb=256
FUZZ_DICT_fuzz_sql        = -dict=test/fuzz/fuzz_sql.dict
FUZZ_ENGINE_OBJ = $(ENGINE:%=$(FUZZ_DIR)/%.o)
FUZZ_SQL_OBJ    = $(SQLPART:%=$(FUZZ_DIR)/static/%.o)

.PHONY: fuzz-deps fuzz-build fuzz-replay fuzz

fuzz-deps:
	@sh test/deps.sh $(FUZZ_DEPS) libsqlite3-dev libxxhash-dev

$(FUZZ_DIR)/%.o: ext/%.c $(HEADERS) | fuzz-deps
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -fPIC -fvisibility=hidden -c $< -o $@

$(FUZZ_DIR)/static/%.o: ext/%.c $(HEADERS) | fuzz-deps
	@mkdir -p $(FUZZ_DIR)/static
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -fPIC -fvisibility=hidden -DSQLITE_CORE -c $< -o $@

$(FUZZ_DIR)/fuzz_recovery: test/fuzz/fuzz_recovery.c $(FUZZ_ENGINE_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Iext -o $@ $< $(FUZZ_ENGINE_OBJ) -lm

$(FUZZ_DIR)/fuzz_sql: test/fuzz/fuzz_sql.c ext/persistmap.h $(FUZZ_ENGINE_OBJ) $(FUZZ_SQL_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Iext -o $@ $< $(FUZZ_SQL_OBJ) $(FUZZ_ENGINE_OBJ) -lsqlite3 -lm

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)

fuzz-replay: fuzz-build
	@set -e; $(foreach t,$(FUZZ_TARGETS),\
	  ASAN_OPTIONS=$${PM_FILE_TRACE:+detect_leaks=0} \
	  $(FUZZ_DIR)/$(t) $(FUZZ_LIMITS) $(FUZZ_MALLOC_$(t)) test/fuzz/corpus/$(t)/* \
	    > $(FUZZ_DIR)/replay-$(t).log 2>&1 || { cat $(FUZZ_DIR)/replay-$(t).log; exit 1; }; \
	  echo "$(t): $$(grep -c '^Executed' $(FUZZ_DIR)/replay-$(t).log) inputs of test/fuzz/corpus/$(t) replayed";)

fuzz: fuzz-build
	@set -e; $(foreach t,$(FUZZ_TARGETS),mkdir -p $(FUZZ_DIR)/corpus-$(t); \
	  $(FUZZ_DIR)/$(t) $(FUZZ_LIMITS) $(FUZZ_MALLOC_$(t)) $(FUZZ_DICT_$(t)) -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus-$(t) test/fuzz/corpus/$(t);)

# Soak: the long versions of the reliability tests. SOAK_KILLS kill -9s of
# a writer (test/sql/test_kill.py; about 0.1 s each), each fuzz target for
# FUZZ_SECONDS, and SOAK_CRASH_ROUNDS rounds of the power-loss test with
# random seeds, each also crashing the recovery of every state, and
# test_sqlite_nomem with every N instead of a stride.
SOAK_KILLS        ?= 100000
SOAK_CRASH_ROUNDS ?= 10

soak: test-deps persistmap.so $(BUILD)/test_crash $(BUILD)/test_sqlite_nomem fuzz-build
	PM_KILLS=$(SOAK_KILLS) $(PY) -m pytest -q -s -p no:cacheprovider test/sql/test_kill.py
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)
	PM_SOAK=$(SOAK_CRASH_ROUNDS) $(BUILD)/test_crash
	PM_SOAK=1 PM_EXTENSION=$(abspath $(NOMEM_SO)) $(BUILD)/test_sqlite_nomem

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

# The cache end to end: persistmap with a cache of 10% of the data against a
# plain table with that much page cache; loads persistmap.so at run time.
$(BUILD)/bench_cache_sql: test/bench/bench_cache_sql.c | deps $(BUILD)/.dir persistmap.so
	$(CC) $(CFLAGS) $(BASE) -o $@ $< -lsqlite3 -lm

$(BUILD)/bench_kv: test/bench/bench_kv.c $(TEST_HEADERS) $(BUILD)/libpmengine.a | bench-deps
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -llmdb -lrocksdb -lm

$(BUILD)/cache_trace: test/bench/cache_trace.c $(TEST_HEADERS) $(BUILD)/libpmengine.a
	$(CC) $(CFLAGS) $(BASE) -Iext -Itest/bench -o $@ $< $(BUILD)/libpmengine.a -lm

bench: test-deps bench-deps $(BUILD)/bench_engine $(BUILD)/bench_compact $(BUILD)/bench_multiproc $(BUILD)/bench_sql $(BUILD)/bench_cache_sql $(BUILD)/bench_kv $(BUILD)/cache_trace persistmap.so
	rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	$(BUILD)/bench_engine $(BENCH_DIR) $(BENCH_N)
	$(BUILD)/bench_compact $(BENCH_DIR) $(BENCH_N) && rm -rf $(BENCH_DIR)/compact-store
	$(BUILD)/bench_multiproc $(BENCH_DIR) $(if $(QUICK),20000,100000) && rm -rf $(BENCH_DIR)/multiproc-store
	$(BUILD)/bench_sql -n $(BENCH_N) -r $(BENCH_REPS) -x ./persistmap.so -o $(BENCH_DIR)/sql.json $(BENCH_DIR)/sql
	$(BUILD)/bench_cache_sql -n $(BENCH_N) -x ./persistmap.so $(BENCH_DIR)
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
