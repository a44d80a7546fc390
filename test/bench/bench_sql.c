/*
** bench_sql.c - the SQL-level benchmark: a persistmap table against a plain
** SQLite table, the same workloads through the same C driver, in one run.
**
**   bench_sql [-n KEYS] [-r REPS] [-x EXTENSION] [-o JSON] [-w WORKLOADS] [-s SYSTEMS] DIR
**
** Keys are 16 bytes of text ("key" and 13 digits), values 100-byte blobs of
** random bytes. Both systems live in file databases in WAL mode under DIR:
**
**   pm.db   persistmap tables: kv (sync='normal'), kvfull (sync='full') on
**           the same store pm.db-kv.pmap, and the do-nothing table nv
**           (nullvtab.c: writes do nothing, a scan returns N made-up rows);
**           on the same connection temp.kvt (the same store hosted in the
**           temp schema) and temp.nvt. Every workload but the fsync ones also
**           runs on nv: the floor SQLite itself sets for a virtual table
**   sq.db   CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID,
**           with a page cache (512 MB) large enough to hold all of it
**
** The persistmap tables keep every value in memory (cache_size='-1', so
** gets are "values cached") and do not compact in the background during
** the run (auto_shrink=0, so one system's compaction cannot steal the
** other's CPU; the report shows the log size instead). Statements are
** prepared once per workload and reused; keys and the access sequences are
** computed before the clock starts, so the driver's own cost per operation
** is a bind, a step, a column read and a reset, the same for every system.
**
** Workloads (each repeated REPS times, the median kept; systems interleaved
** within a repetition):
**   bulk_load       N rows in shuffled key order in one transaction, into a
**                   fresh database and store each repetition
**   full_scan       SELECT key, value FROM kv, every row
**   get_uniform     SELECT value FROM t WHERE key = ?, N/2 gets, uniform keys
**   get_zipf        the same, keys drawn from Zipf(0.99) over a shuffled rank
**                   order; both on persistmap (main and temp schema), the
**                   do-nothing table (main and temp) and the plain table
**   upsert_normal   autocommit INSERT OR REPLACE of random existing keys,
**                   sync='normal' against PRAGMA synchronous=NORMAL
**   upsert_full     the same with sync='full' against synchronous=FULL
**   upsert_full_4w  4 threads, each with its own connection: persistmap
**                   tables in the temp schema of ':memory:' connections, all
**                   on the one store; plain: 4 connections to sq.db
**   delete_10pct    DELETE ... WHERE key = ? for 10% of the keys in one
**                   transaction (then put back, untimed)
**   reopen          a new process: open, load the extension, first get;
**                   with the RSS it took and persistmap's index size (the
**                   log compacted first with persistmap_shrink, as
**                   auto_shrink would have; the plain database checkpointed)
**
** fsyncs. The driver defines fdatasync() and fsync() itself and exports
** them (see the Makefile), so the calls that libsqlite3 and persistmap.so
** make bind to these counting wrappers, which issue the system call
** directly. This counts every call in the process, whatever thread makes
** it, with no tracing overhead on the timed runs; the driver checks at
** start that the wrappers are the ones the dynamic linker hands out, and
** persistmap's own `fsyncs` figure is printed beside the count. (strace -f
** -c -e trace=fdatasync,fsync on a run gives the same totals, the reopen
** children's calls included: the smoke test checks that.)
**
** -w and -s (comma-separated names, as in the output) run only some
** workloads or systems, for profiling: the load then runs once, untimed,
** unless bulk_load is selected. The timed loops are separate functions
** (run_load, run_scan, run_gets, run_upserts, run_delete) so a profiler can
** count them alone, for example:
**   valgrind --tool=callgrind --toggle-collect='run_gets*' bench_sql -n 100000
**     -r 1 -w get_uniform -s persistmap_temp DIR
**   perf record -g bench_sql -n 100000 -r 1 -w upsert_normal -s persistmap DIR
**
** Output: a line per workload and system on stdout, and one JSON object per
** line in JSON (default DIR/sql.json); test/bench/report.py turns those into
** the table of ratios and goals.
*/
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int nullvtab_register(sqlite3 *db);   /* nullvtab.c */

#define KEY_BYTES 16
#define VALUE_BYTES 100
#define VALUE_POOL 65536
#define MAX_REPS 15
#define WRITERS 4

/* ==== fsync counting ===================================================== */

static atomic_ulong n_fdatasync, n_fsync;

__attribute__((visibility("default"))) int fdatasync(int fd) {
  atomic_fetch_add(&n_fdatasync, 1);
  return (int)syscall(SYS_fdatasync, fd);
}

__attribute__((visibility("default"))) int fsync(int fd) {
  atomic_fetch_add(&n_fsync, 1);
  return (int)syscall(SYS_fsync, fd);
}

static unsigned long syncs_now(void) {
  return atomic_load(&n_fdatasync) + atomic_load(&n_fsync);
}

/* The dynamic linker must hand out these wrappers, or the counts are 0. */
static void check_interposed(void) {
  void *a = dlsym(RTLD_DEFAULT, "fdatasync");
  void *b = dlsym(RTLD_DEFAULT, "fsync");
  if (a != (void *)fdatasync || b != (void *)fsync) {
    fprintf(stderr, "bench_sql: fdatasync/fsync are not interposed (link with "
                    "-Wl,--export-dynamic-symbol=fdatasync,fsync)\n");
    exit(1);
  }
}

/* ==== Helpers ============================================================ */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench_sql: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
    die("%s: %s (%d)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
  }
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) die("%s: %s", sql, err ? err : "?");
}

static void execf(sqlite3 *db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  exec(db, sql);
  sqlite3_free(sql);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_stmt *st = NULL;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL), sql);
  sqlite3_free(sql);
  return st;
}

/* The first column of the first row of sql, as an integer. */
static sqlite3_int64 query_int(sqlite3 *db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_stmt *st = NULL;
  check(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
  int rc = sqlite3_step(st);
  check(db, rc, sql);
  sqlite3_int64 v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return v;
}

/* Step a statement that returns no row, retrying on SQLITE_BUSY. */
static void step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, unsigned long *busy) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    sqlite3_reset(st);
    if (busy) (*busy)++;
  }
  if (rc != SQLITE_DONE) die("%s: %s (%d)", what, sqlite3_errmsg(db), rc);
  sqlite3_reset(st);
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) return;
  if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0) die("cannot remove %s: %s", path, strerror(errno));
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
  double s[MAX_REPS];
  memcpy(s, v, (size_t)n * sizeof *v);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ==== Data =============================================================== */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {           /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rnd01(void) { return (double)(rnd() >> 11) * 0x1.0p-53; }

static uint64_t nkeys;
static char *keys;                   /* nkeys x KEY_BYTES, no terminator */
static unsigned char *pool;          /* VALUE_POOL x VALUE_BYTES random bytes */

static const char *key_of(uint32_t i) { return keys + (size_t)i * KEY_BYTES; }
static const unsigned char *value_of(uint32_t i, uint32_t version) {
  return pool + (size_t)((i * 2654435761u + version * 40503u) & (VALUE_POOL - 1)) * VALUE_BYTES;
}

static uint32_t *permutation(uint64_t n) {
  uint32_t *p = malloc(n * sizeof *p);
  if (!p) die("out of memory");
  for (uint64_t i = 0; i < n; i++) p[i] = (uint32_t)i;
  for (uint64_t i = n - 1; i > 0; i--) {
    uint64_t j = rnd() % (i + 1);
    uint32_t t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

static uint32_t *uniform_seq(uint64_t count) {
  uint32_t *s = malloc(count * sizeof *s);
  if (!s) die("out of memory");
  for (uint64_t i = 0; i < count; i++) s[i] = (uint32_t)(rnd() % nkeys);
  return s;
}

/* Zipf(theta) over ranks 0..n-1 (Gray et al., as in YCSB), each rank mapped
** to a key through a random permutation so hot keys are spread out. */
static uint32_t *zipf_seq(uint64_t count, double theta) {
  uint64_t n = nkeys;
  double zetan = 0;
  for (uint64_t i = 1; i <= n; i++) zetan += 1.0 / pow((double)i, theta);
  double zeta2 = 1.0 + 1.0 / pow(2.0, theta);
  double alpha = 1.0 / (1.0 - theta);
  double eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
  uint32_t *rank_to_key = permutation(n);
  uint32_t *s = malloc(count * sizeof *s);
  if (!s) die("out of memory");
  for (uint64_t i = 0; i < count; i++) {
    double u = rnd01(), uz = u * zetan;
    uint64_t r;
    if (uz < 1.0) r = 0;
    else if (uz < 1.0 + pow(0.5, theta)) r = 1;
    else r = (uint64_t)((double)n * pow(eta * u - eta + 1.0, alpha));
    if (r >= n) r = n - 1;
    s[i] = rank_to_key[r];
  }
  free(rank_to_key);
  return s;
}

/* ==== Connections ======================================================== */

static const char *ext_path;   /* persistmap.so, absolute */
static char dir[PATH_MAX];     /* the bench directory, absolute */

static sqlite3 *open_db(const char *path, int load) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) die("open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (load) {
    char *err = NULL;
    check(db, sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL), "enable load extension");
    if (sqlite3_load_extension(db, ext_path, "sqlite3_persistmap_init", &err) != SQLITE_OK) die("load %s: %s", ext_path, err ? err : "?");
    check(db, nullvtab_register(db), "nullvtab");
  }
  sqlite3_busy_timeout(db, 30000);
  return db;
}

static void path_in(char *out, size_t size, const char *name) {
  if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size) die("path too long");
}

static void remove_db(const char *name) {
  char p[PATH_MAX + 64];
  const char *suffix[] = { "", "-wal", "-shm", "-journal" };
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s%s", dir, name, suffix[i]);
    unlink(p);
  }
}

/* The persistmap database, created afresh: kv on a new store. */
static sqlite3 *fresh_pm(void) {
  char p[PATH_MAX + 64];
  remove_db("pm.db");
  path_in(p, sizeof p, "pm.db-kv.pmap");
  rm_rf(p);
  path_in(p, sizeof p, "pm.db");
  sqlite3 *db = open_db(p, 1);
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
  exec(db, "CREATE VIRTUAL TABLE kv USING persistmap(cache_size='-1', sync='normal', auto_shrink=0)");
  execf(db, "CREATE VIRTUAL TABLE nv USING nullvtab(%llu)", (unsigned long long)nkeys);
  return db;
}

static void plain_pragmas(sqlite3 *db) {
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-524288");
}

/* The plain database, created afresh. */
static sqlite3 *fresh_plain(void) {
  char p[PATH_MAX + 64];
  remove_db("sq.db");
  path_in(p, sizeof p, "sq.db");
  sqlite3 *db = open_db(p, 0);
  plain_pragmas(db);
  exec(db, "CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID");
  return db;
}

/* The other tables on pm.db's connection, once kv is loaded. */
static void add_pm_tables(sqlite3 *db) {
  char store[PATH_MAX + 64];
  path_in(store, sizeof store, "pm.db-kv.pmap");
  exec(db, "CREATE VIRTUAL TABLE kvfull USING persistmap(path='pm.db-kv.pmap', cache_size='-1', sync='full', auto_shrink=0)");
  execf(db, "CREATE VIRTUAL TABLE temp.kvt USING persistmap(path=%Q, cache_size='-1', sync='normal', auto_shrink=0)", store);
  exec(db, "CREATE VIRTUAL TABLE temp.nvt USING nullvtab");
}

typedef struct pm_figures { sqlite3_int64 fsyncs, commits, hits, misses; } pm_figures;

static pm_figures pm_stats_of(sqlite3 *db) {
  pm_figures f;
  f.fsyncs = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.fsyncs')");
  f.commits = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.commits')");
  f.hits = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.cache_hits')");
  f.misses = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.cache_misses')");
  return f;
}

/* ==== Output ============================================================= */

static FILE *json;
static int reps;

/* One workload on one system: per-repetition figures, their median, and
** extra JSON members (may be NULL; starts with a comma). */
static void emit(const char *workload, const char *system, const char *unit, uint64_t ops,
                 const double *v, int n, const char *extra) {
  double med = median(v, n);
  printf("  %-16s %-16s %14.1f %-9s reps:", workload, system, med, unit);
  for (int i = 0; i < n; i++) printf(" %.4g", v[i]);
  printf("%s%s\n", extra ? "  " : "", extra ? extra + 1 : "");
  fprintf(json, "{\"bench\":\"sql\",\"workload\":\"%s\",\"system\":\"%s\",\"unit\":\"%s\",\"keys\":%llu,"
                "\"ops\":%llu,\"median\":%.6g,\"reps\":[", workload, system, unit,
          (unsigned long long)nkeys, (unsigned long long)ops, med);
  for (int i = 0; i < n; i++) fprintf(json, "%s%.6g", i ? "," : "", v[i]);
  fprintf(json, "]%s}\n", extra ? extra : "");
  fflush(stdout);
  fflush(json);
}

/* ==== Workloads ========================================================== */

__attribute__((noinline)) static double run_load(sqlite3 *db, const char *table, const uint32_t *order, uint32_t version) {
  sqlite3_stmt *ins = prep(db, "INSERT INTO %s VALUES (?1, ?2)", table);
  double t0 = now();
  exec(db, "BEGIN");
  for (uint64_t i = 0; i < nkeys; i++) {
    sqlite3_bind_text(ins, 1, key_of(order[i]), KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(ins, 2, value_of(order[i], version), VALUE_BYTES, SQLITE_STATIC);
    step_done(db, ins, "load", NULL);
  }
  exec(db, "COMMIT");
  double t = now() - t0;
  sqlite3_finalize(ins);
  return t;
}

__attribute__((noinline)) static double run_scan(sqlite3 *db, const char *table) {
  sqlite3_stmt *st = prep(db, "SELECT key, value FROM %s", table);
  uint64_t rows = 0, bytes = 0;
  double t0 = now();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    sqlite3_column_text(st, 0);
    sqlite3_column_blob(st, 1);
    bytes += (uint64_t)sqlite3_column_bytes(st, 0) + (uint64_t)sqlite3_column_bytes(st, 1);
    rows++;
  }
  double t = now() - t0;
  check(db, rc, "scan");
  sqlite3_finalize(st);
  if (rows != nkeys || bytes != nkeys * (KEY_BYTES + VALUE_BYTES)) {
    die("scan of %s: %llu rows, %llu bytes", table, (unsigned long long)rows, (unsigned long long)bytes);
  }
  return t;
}

__attribute__((noinline)) static double run_gets(sqlite3 *db, const char *table, const uint32_t *seq, uint64_t count) {
  sqlite3_stmt *st = prep(db, "SELECT value FROM %s WHERE key = ?1", table);
  uint64_t found = 0, bytes = 0;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    sqlite3_bind_text(st, 1, key_of(seq[i]), KEY_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      sqlite3_column_blob(st, 0);
      bytes += (uint64_t)sqlite3_column_bytes(st, 0);
      found++;
    } else if (rc != SQLITE_DONE) {
      die("get on %s: %s", table, sqlite3_errmsg(db));
    }
    sqlite3_reset(st);
  }
  double t = now() - t0;
  sqlite3_finalize(st);
  if (found != count || bytes != count * VALUE_BYTES) {
    die("gets on %s: %llu of %llu found", table, (unsigned long long)found, (unsigned long long)count);
  }
  return t;
}

__attribute__((noinline)) static double run_upserts(sqlite3 *db, const char *table, const uint32_t *seq, uint64_t count, uint32_t version) {
  sqlite3_stmt *st = prep(db, "INSERT OR REPLACE INTO %s VALUES (?1, ?2)", table);
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    sqlite3_bind_text(st, 1, key_of(seq[i]), KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, value_of(seq[i], version), VALUE_BYTES, SQLITE_STATIC);
    step_done(db, st, "upsert", NULL);
  }
  double t = now() - t0;
  sqlite3_finalize(st);
  return t;
}

__attribute__((noinline)) static double run_delete(sqlite3 *db, const char *table, const uint32_t *del, uint64_t count) {
  sqlite3_stmt *st = prep(db, "DELETE FROM %s WHERE key = ?1", table);
  uint64_t deleted = 0;
  double t0 = now();
  exec(db, "BEGIN");
  for (uint64_t i = 0; i < count; i++) {
    sqlite3_bind_text(st, 1, key_of(del[i]), KEY_BYTES, SQLITE_STATIC);
    step_done(db, st, "delete", NULL);
    deleted += (uint64_t)sqlite3_changes(db);
  }
  exec(db, "COMMIT");
  double t = now() - t0;
  sqlite3_finalize(st);
  if (deleted != count) die("delete: %llu of %llu rows", (unsigned long long)deleted, (unsigned long long)count);
  return t;
}

static void put_back(sqlite3 *db, const uint32_t *del, uint64_t count, uint32_t version) {
  sqlite3_stmt *st = prep(db, "INSERT INTO kv VALUES (?1, ?2)");
  exec(db, "BEGIN");
  for (uint64_t i = 0; i < count; i++) {
    sqlite3_bind_text(st, 1, key_of(del[i]), KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, value_of(del[i], version), VALUE_BYTES, SQLITE_STATIC);
    step_done(db, st, "put back", NULL);
  }
  exec(db, "COMMIT");
  sqlite3_finalize(st);
}

/* ---- Four writers ------------------------------------------------------- */

typedef struct writer {
  pthread_t th;
  int plain;                 /* 1: sq.db's kv; 0: a temp persistmap table */
  sqlite3 *db;
  sqlite3_stmt *st;
  const uint32_t *seq;
  uint64_t count;
  uint32_t version;
  unsigned long busy;
} writer;

static pthread_barrier_t start_line;

static void *writer_main(void *arg) {
  writer *w = arg;
  pthread_barrier_wait(&start_line);
  for (uint64_t i = 0; i < w->count; i++) {
    sqlite3_bind_text(w->st, 1, key_of(w->seq[i]), KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(w->st, 2, value_of(w->seq[i], w->version), VALUE_BYTES, SQLITE_STATIC);
    step_done(w->db, w->st, "writer upsert", &w->busy);
  }
  return NULL;
}

/* One repetition: WRITERS threads, count commits in all. Returns seconds;
** *busy gets the SQLITE_BUSY retries. */
static double run_writers(int plain, const uint32_t *seq, uint64_t count, uint32_t version, unsigned long *busy) {
  writer w[WRITERS];
  char p[PATH_MAX + 64];
  for (int i = 0; i < WRITERS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].plain = plain;
    if (plain) {
      path_in(p, sizeof p, "sq.db");
      w[i].db = open_db(p, 0);
      plain_pragmas(w[i].db);
      exec(w[i].db, "PRAGMA synchronous=FULL");
      w[i].st = prep(w[i].db, "INSERT OR REPLACE INTO kv VALUES (?1, ?2)");
    } else {
      w[i].db = open_db(":memory:", 1);
      path_in(p, sizeof p, "pm.db-kv.pmap");
      execf(w[i].db, "CREATE VIRTUAL TABLE temp.t USING persistmap(path=%Q, cache_size='-1', sync='full', auto_shrink=0)", p);
      w[i].st = prep(w[i].db, "INSERT OR REPLACE INTO temp.t VALUES (?1, ?2)");
    }
    w[i].seq = seq + (uint64_t)i * (count / WRITERS);
    w[i].count = count / WRITERS;
    w[i].version = version;
  }
  pthread_barrier_init(&start_line, NULL, WRITERS + 1);
  for (int i = 0; i < WRITERS; i++) {
    if (pthread_create(&w[i].th, NULL, writer_main, &w[i])) die("pthread_create");
  }
  double t0 = now();
  pthread_barrier_wait(&start_line);
  for (int i = 0; i < WRITERS; i++) pthread_join(w[i].th, NULL);
  double t = now() - t0;
  pthread_barrier_destroy(&start_line);
  *busy = 0;
  for (int i = 0; i < WRITERS; i++) {
    *busy += w[i].busy;
    sqlite3_finalize(w[i].st);
    sqlite3_close(w[i].db);
  }
  return t;
}

/* ---- Reopen, in a new process ------------------------------------------- */

/* bench_sql --reopen-child persistmap|sqlite DIR EXTENSION KEY: time open +
** first get of KEY, print one JSON object. */
static int reopen_child(int argc, char **argv) {
  if (argc != 6) die("usage: --reopen-child SYSTEM DIR EXTENSION KEY");
  int pm = strcmp(argv[2], "persistmap") == 0;
  ext_path = argv[4];
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", argv[3], pm ? "pm.db" : "sq.db");
  long rss0 = rss_kb();
  double t0 = now();
  sqlite3 *db = open_db(p, pm);
  sqlite3_stmt *st = prep(db, "SELECT value FROM kv WHERE key = ?1");
  sqlite3_bind_text(st, 1, argv[5], -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 0) != VALUE_BYTES) {
    die("reopen: first get failed: %s", sqlite3_errmsg(db));
  }
  double t = now() - t0;
  long rss1 = rss_kb();
  sqlite3_finalize(st);
  long long index_bytes = 0, keys_n = 0, log_bytes = 0, live_bytes = 0;
  if (pm) {
    index_bytes = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.index_bytes')");
    keys_n = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.keys')");
    log_bytes = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.log_bytes')");
    live_bytes = query_int(db, "SELECT json_extract(persistmap_stats('kv'), '$.live_bytes')");
  }
  sqlite3_close(db);
  printf("{\"ms\":%.3f,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,\"index_bytes\":%lld,\"keys\":%lld,"
         "\"log_bytes\":%lld,\"live_bytes\":%lld,\"fdatasync\":%lu,\"fsync\":%lu}\n", t * 1e3, rss0, rss1,
         index_bytes, keys_n, log_bytes, live_bytes, atomic_load(&n_fdatasync), atomic_load(&n_fsync));
  return 0;
}

typedef struct child_out { double ms; long rss0, rss1; long long index_bytes, keys, log_bytes, live_bytes; } child_out;

static unsigned long child_fdatasync, child_fsync;   /* the children's counts, added up */

static child_out run_child(const char *system) {
  char exe[PATH_MAX], cmd[4 * PATH_MAX + 256], line[1024];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) die("readlink /proc/self/exe: %s", strerror(errno));
  exe[n] = 0;
  if (strchr(exe, '\'') || strchr(dir, '\'') || strchr(ext_path, '\'')) die("quote in a path");
  char key[KEY_BYTES + 1];
  memcpy(key, key_of((uint32_t)(nkeys / 2)), KEY_BYTES);
  key[KEY_BYTES] = 0;
  snprintf(cmd, sizeof cmd, "'%s' --reopen-child %s '%s' '%s' '%s'", exe, system, dir, ext_path, key);
  FILE *f = popen(cmd, "r");
  if (!f) die("popen: %s", strerror(errno));
  child_out o;
  unsigned long fds = 0, fs = 0;
  memset(&o, 0, sizeof o);
  if (!fgets(line, sizeof line, f) ||
      sscanf(line, "{\"ms\":%lf,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,\"index_bytes\":%lld,\"keys\":%lld,"
                   "\"log_bytes\":%lld,\"live_bytes\":%lld,\"fdatasync\":%lu,\"fsync\":%lu}", &o.ms, &o.rss0,
             &o.rss1, &o.index_bytes, &o.keys, &o.log_bytes, &o.live_bytes, &fds, &fs) != 9) {
    die("reopen child (%s) gave no result", system);
  }
  child_fdatasync += fds;
  child_fsync += fs;
  if (pclose(f) != 0) die("reopen child (%s) failed", system);
  return o;
}

/* ==== Main =============================================================== */

static void usage(void) {
  fprintf(stderr, "usage: bench_sql [-n KEYS] [-r REPS] [-x EXTENSION] [-o JSON] [-w WORKLOADS] [-s SYSTEMS] DIR\n");
  exit(2);
}

/* -w and -s: comma-separated lists of the workloads and systems to run
** (default all), for profiling one of them. */
static const char *only_workloads, *only_systems;

static int in_list(const char *list, const char *name) {
  if (!list) return 1;
  size_t n = strlen(name);
  for (const char *p = list; *p; ) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}
static int want(const char *workload) { return in_list(only_workloads, workload); }
static int want_sys(const char *system) { return in_list(only_systems, system); }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--reopen-child") == 0) return reopen_child(argc, argv);
  uint64_t n = 1000000;
  const char *ext = "./persistmap.so", *json_path = NULL;
  int opt;
  reps = 5;
  while ((opt = getopt(argc, argv, "n:r:x:o:w:s:")) != -1) {
    switch (opt) {
      case 'w': only_workloads = optarg; break;
      case 's': only_systems = optarg; break;
      case 'n': n = strtoull(optarg, NULL, 10); break;
      case 'r': reps = atoi(optarg); break;
      case 'x': ext = optarg; break;
      case 'o': json_path = optarg; break;
      default: usage();
    }
  }
  if (optind != argc - 1 || n < 100 || n > UINT32_MAX || reps < 1 || reps > MAX_REPS) usage();
  check_interposed();
  if (mkdir(argv[optind], 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", argv[optind], strerror(errno));
  if (!realpath(argv[optind], dir)) die("%s: %s", argv[optind], strerror(errno));
  static char ext_abs[PATH_MAX];
  if (!realpath(ext, ext_abs)) die("%s: %s", ext, strerror(errno));
  ext_path = ext_abs;
  char jp[PATH_MAX + 64];
  if (!json_path) { path_in(jp, sizeof jp, "sql.json"); json_path = jp; }
  json = fopen(json_path, "w");
  if (!json) die("%s: %s", json_path, strerror(errno));
  nkeys = n;

  /* Keys, values and every access sequence, before any clock starts. */
  keys = malloc(n * KEY_BYTES + 1);
  pool = malloc((size_t)VALUE_POOL * VALUE_BYTES);
  if (!keys || !pool) die("out of memory");
  for (uint64_t i = 0; i < n; i++) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "key%013llu", (unsigned long long)i);
    memcpy(keys + i * KEY_BYTES, tmp, KEY_BYTES);
  }
  for (size_t i = 0; i < (size_t)VALUE_POOL * VALUE_BYTES; i += 8) {
    uint64_t r = rnd();
    memcpy(pool + i, &r, 8);
  }
  uint64_t n_gets = n / 2;
  uint64_t n_upserts = n / 10;
  uint64_t n_full = n / 500 < 100 ? 100 : n / 500 > 1000 ? 1000 : n / 500;
  n_full -= n_full % WRITERS;
  uint64_t n_delete = n / 10;
  uint32_t *load_order = permutation(n);
  uint32_t *uni = uniform_seq(n_gets);
  uint32_t *zipf = zipf_seq(n_gets, 0.99);
  uint32_t *ups = uniform_seq(n_upserts);
  uint32_t *full = uniform_seq(n_full);
  uint32_t *del = permutation(n);    /* the first n_delete of it */

  printf("persistmap SQL bench: %llu keys, %d-byte keys, %d-byte values, medians of %d runs, SQLite %s, %s\n",
         (unsigned long long)n, KEY_BYTES, VALUE_BYTES, reps, sqlite3_libversion(), dir);
  fprintf(json, "{\"bench\":\"sql\",\"workload\":\"setup\",\"keys\":%llu,\"reps\":%d,\"sqlite\":\"%s\","
                "\"gets\":%llu,\"upserts_normal\":%llu,\"upserts_full\":%llu,\"deletes\":%llu,\"writers\":%d}\n",
          (unsigned long long)n, reps, sqlite3_libversion(), (unsigned long long)n_gets,
          (unsigned long long)n_upserts, (unsigned long long)n_full, (unsigned long long)n_delete, WRITERS);

  double vp[MAX_REPS], vs[MAX_REPS], va[MAX_REPS], vb[MAX_REPS], vc[MAX_REPS], vd[MAX_REPS];
  char extra[512];
  sqlite3 *cp = NULL, *cs = NULL;
  uint32_t version = 1;
  int P = want_sys("persistmap"), S = want_sys("sqlite"), N = want_sys("nullvtab");
  int load_p = P || want_sys("persistmap_temp");     /* the temp table reads the same store */

  /* -- bulk load (once, untimed, when not selected) ------------------------ */
  int load_reps = want("bulk_load") ? reps : 1;
  for (int r = 0; r < load_reps; r++) {
    if (cp) sqlite3_close(cp);
    if (cs) sqlite3_close(cs);
    cp = fresh_pm();
    cs = fresh_plain();
    if (load_p) vp[r] = (double)n / run_load(cp, "kv", load_order, version);
    if (S) vs[r] = (double)n / run_load(cs, "kv", load_order, version);
    if (N && want("bulk_load")) vd[r] = (double)n / run_load(cp, "nv", load_order, version);
  }
  if (want("bulk_load")) {
    if (P) emit("bulk_load", "persistmap", "rows/s", n, vp, reps, NULL);
    if (S) emit("bulk_load", "sqlite", "rows/s", n, vs, reps, NULL);
    if (N) emit("bulk_load", "nullvtab", "rows/s", n, vd, reps, NULL);
  }
  add_pm_tables(cp);

  /* -- full scan ---------------------------------------------------------- */
  if (want("full_scan")) {
    for (int r = 0; r < reps; r++) {
      if (P) vp[r] = (double)n / run_scan(cp, "kv");
      if (S) vs[r] = (double)n / run_scan(cs, "kv");
      if (N) vd[r] = (double)n / run_scan(cp, "nv");
    }
    if (P) emit("full_scan", "persistmap", "rows/s", n, vp, reps, NULL);
    if (S) emit("full_scan", "sqlite", "rows/s", n, vs, reps, NULL);
    if (N) emit("full_scan", "nullvtab", "rows/s", n, vd, reps, NULL);
  }

  /* -- point gets --------------------------------------------------------- */
  static const struct { const char *system; int plain; const char *table; } getters[] = {
    { "persistmap", 0, "main.kv" }, { "sqlite", 1, "main.kv" }, { "nullvtab", 0, "main.nv" },
    { "persistmap_temp", 0, "temp.kvt" }, { "nullvtab_temp", 0, "temp.nvt" },
  };
  enum { NGET = sizeof getters / sizeof getters[0] };
  for (int d = 0; d < 2; d++) {
    const uint32_t *seq = d ? zipf : uni;
    const char *wl = d ? "get_zipf" : "get_uniform";
    if (!want(wl)) continue;
    double v[NGET][MAX_REPS];
    uint64_t warm = n_gets < 100000 ? n_gets : 100000;
    for (int g = 0; g < NGET; g++) {
      if (want_sys(getters[g].system)) run_gets(getters[g].plain ? cs : cp, getters[g].table, seq, warm);
    }
    pm_figures f0 = pm_stats_of(cp);
    for (int r = 0; r < reps; r++) {
      for (int g = 0; g < NGET; g++) {
        if (!want_sys(getters[g].system)) continue;
        v[g][r] = (double)n_gets / run_gets(getters[g].plain ? cs : cp, getters[g].table, seq, n_gets);
      }
    }
    pm_figures f1 = pm_stats_of(cp);
    for (int g = 0; g < NGET; g++) {
      if (!want_sys(getters[g].system)) continue;
      extra[0] = 0;
      if (strncmp(getters[g].system, "persistmap", 10) == 0) {
        double hits = (double)(f1.hits - f0.hits), misses = (double)(f1.misses - f0.misses);
        snprintf(extra, sizeof extra, ",\"cache_hit_ratio\":%.4f", hits + misses > 0 ? hits / (hits + misses) : 0);
      }
      emit(wl, getters[g].system, "gets/s", n_gets, v[g], reps, extra[0] ? extra : NULL);
    }
  }

  /* -- autocommit upserts ------------------------------------------------- */
  for (int full_sync = 0; full_sync < 2; full_sync++) {
    const uint32_t *seq = full_sync ? full : ups;
    uint64_t count = full_sync ? n_full : n_upserts;
    const char *wl = full_sync ? "upsert_full" : "upsert_normal";
    if (!want(wl)) continue;
    exec(cp, full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec(cs, full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    for (int r = 0; r < reps; r++) {
      version++;
      if (P) {
        pm_figures f0 = pm_stats_of(cp);
        unsigned long s0 = syncs_now();
        vp[r] = (double)count / run_upserts(cp, full_sync ? "kvfull" : "kv", seq, count, version);
        unsigned long s1 = syncs_now();
        pm_figures f1 = pm_stats_of(cp);
        va[r] = (double)(s1 - s0) / (double)count;
        vb[r] = (double)(f1.fsyncs - f0.fsyncs) / (double)(f1.commits - f0.commits);
      }
      if (S) {
        unsigned long s0 = syncs_now();
        vs[r] = (double)count / run_upserts(cs, "kv", seq, count, version);
        vc[r] = (double)(syncs_now() - s0) / (double)count;
      }
      if (N && !full_sync) vd[r] = (double)count / run_upserts(cp, "nv", seq, count, version);
    }
    if (P) {
      snprintf(extra, sizeof extra, ",\"fsyncs_per_commit\":%.4f,\"engine_fsyncs_per_commit\":%.4f",
               median(va, reps), median(vb, reps));
      emit(wl, "persistmap", "commits/s", count, vp, reps, extra);
    }
    if (S) {
      snprintf(extra, sizeof extra, ",\"fsyncs_per_commit\":%.4f", median(vc, reps));
      emit(wl, "sqlite", "commits/s", count, vs, reps, extra);
    }
    if (N && !full_sync) emit(wl, "nullvtab", "commits/s", count, vd, reps, NULL);
  }

  /* -- four writers under full sync ---------------------------------------- */
  if (want("upsert_full_4w")) {
    unsigned long busy_p = 0, busy_s = 0, b;
    for (int r = 0; r < reps; r++) {
      version++;
      if (P) {
        pm_figures f0 = pm_stats_of(cp);
        unsigned long s0 = syncs_now();
        vp[r] = (double)n_full / run_writers(0, full, n_full, version, &b);
        unsigned long s1 = syncs_now();
        pm_figures f1 = pm_stats_of(cp);
        busy_p += b;
        va[r] = (double)(s1 - s0) / (double)n_full;
        vb[r] = (double)(f1.fsyncs - f0.fsyncs) / (double)(f1.commits - f0.commits);
      }
      if (S) {
        unsigned long s0 = syncs_now();
        vs[r] = (double)n_full / run_writers(1, full, n_full, version, &b);
        busy_s += b;
        vc[r] = (double)(syncs_now() - s0) / (double)n_full;
      }
    }
    if (P) {
      snprintf(extra, sizeof extra, ",\"fsyncs_per_commit\":%.4f,\"engine_fsyncs_per_commit\":%.4f,\"writers\":%d,"
               "\"busy_retries\":%lu", median(va, reps), median(vb, reps), WRITERS, busy_p);
      emit("upsert_full_4w", "persistmap", "commits/s", n_full, vp, reps, extra);
    }
    if (S) {
      snprintf(extra, sizeof extra, ",\"fsyncs_per_commit\":%.4f,\"writers\":%d,\"busy_retries\":%lu",
               median(vc, reps), WRITERS, busy_s);
      emit("upsert_full_4w", "sqlite", "commits/s", n_full, vs, reps, extra);
    }
  }

  /* -- delete 10% in one transaction --------------------------------------- */
  if (want("delete_10pct")) {
    exec(cp, "PRAGMA synchronous=NORMAL");
    exec(cs, "PRAGMA synchronous=NORMAL");
    for (int r = 0; r < reps; r++) {
      const uint32_t *d = del + (uint64_t)r * n_delete % (n - n_delete + 1);
      if (P) {
        vp[r] = (double)n_delete / run_delete(cp, "kv", d, n_delete);
        put_back(cp, d, n_delete, version);
      }
      if (S) {
        vs[r] = (double)n_delete / run_delete(cs, "kv", d, n_delete);
        put_back(cs, d, n_delete, version);
      }
      if (N) vd[r] = (double)n_delete / run_delete(cp, "nv", d, n_delete);
    }
    if (P) emit("delete_10pct", "persistmap", "rows/s", n_delete, vp, reps, NULL);
    if (S) emit("delete_10pct", "sqlite", "rows/s", n_delete, vs, reps, NULL);
    if (N) emit("delete_10pct", "nullvtab", "rows/s", n_delete, vd, reps, NULL);
  }

  /* -- sizes; both compacted before the reopen ----------------------------- */
  /* The run wrote many versions with auto_shrink off: compact the log once,
  ** as auto_shrink would have, so the reopen reads a store of N live keys
  ** (and the plain database is checkpointed into its file). */
  char p[PATH_MAX + 64];
  long long log_before = query_int(cp, "SELECT json_extract(persistmap_stats('kv'), '$.log_bytes')");
  if (load_p && want("reopen")) query_int(cp, "SELECT persistmap_shrink('kv') IS NOT NULL");
  exec(cs, "PRAGMA wal_checkpoint(TRUNCATE)");
  path_in(p, sizeof p, "sq.db");
  long long sq_bytes = file_size(p);
  sqlite3_close(cs);
  sqlite3_close(cp);
  cs = cp = NULL;

  /* -- reopen + first get, in new processes -------------------------------- */
  if (want("reopen")) {
    child_out last;
    memset(&last, 0, sizeof last);
    for (int r = 0; r < reps; r++) {
      if (P) {
        child_out a = run_child("persistmap");
        vp[r] = a.ms;
        va[r] = (double)(a.rss1 - a.rss0) * 1024.0 / (double)n;
        vb[r] = (double)a.index_bytes / (double)(a.keys ? a.keys : 1);
        vd[r] = (double)(a.rss1) * 1024.0 / (double)n;
        last = a;
      }
      if (S) {
        child_out b = run_child("sqlite");
        vs[r] = b.ms;
        vc[r] = (double)(b.rss1 - b.rss0) * 1024.0 / (double)n;
      }
    }
    if (P) emit("reopen", "persistmap", "ms", 1, vp, reps, NULL);
    if (S) emit("reopen", "sqlite", "ms", 1, vs, reps, NULL);
    if (P) {
      snprintf(extra, sizeof extra, ",\"rss_total_bytes_per_key\":%.2f,\"index_bytes_per_key\":%.2f,\"key_bytes\":%d,"
               "\"log_bytes\":%lld,\"live_bytes\":%lld,\"log_bytes_before_shrink\":%lld",
               median(vd, reps), median(vb, reps), KEY_BYTES, last.log_bytes, last.live_bytes, log_before);
      emit("memory", "persistmap", "rss_bytes/key", n, va, reps, extra);
    }
    if (S) {
      snprintf(extra, sizeof extra, ",\"db_file_bytes\":%lld", sq_bytes);
      emit("memory", "sqlite", "rss_bytes/key", n, vc, reps, extra);
    }
  }

  /* Every call of this process and its children: what strace -f -c counts. */
  unsigned long fds = atomic_load(&n_fdatasync) + child_fdatasync, fs = atomic_load(&n_fsync) + child_fsync;
  fprintf(json, "{\"bench\":\"sql\",\"workload\":\"fsync_totals\",\"fdatasync\":%lu,\"fsync\":%lu}\n", fds, fs);
  printf("fsync counter: fdatasync=%lu fsync=%lu\n", fds, fs);
  fclose(json);
  free(keys); free(pool); free(load_order); free(uni); free(zipf); free(ups); free(full); free(del);
  return 0;
}
