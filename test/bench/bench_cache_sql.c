/*
** bench_cache_sql.c - the element cache end to end: Zipf(0.99) point gets
** through SQL on a persistmap table whose cache holds 10% of the data,
** against a plain SQLite table given the same memory for its page cache.
**
**   bench_cache_sql [-n KEYS] [-r REPS] [-x EXTENSION] DIR
**
** KEYS keys (default 1,000,000) of 16 bytes of text ("key" and 13 digits),
** 100-byte blobs of random bytes as values. The data is KEYS x 116 bytes;
** both caches get a tenth of it, rounded down to whole KiB:
**
**   persistmap       CREATE VIRTUAL TABLE kv USING persistmap(cache_size='<bytes>',
**                    auto_shrink=0) in DIR/cache-sql/pm.db (WAL)
**   sqlite           CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID
**                    in DIR/cache-sql/sq.db (WAL), read with PRAGMA cache_size=-<KiB>
**   sqlite_same_rss  the same plain table, with a page cache as large as the
**                    memory persistmap's process grew by in the first run
**                    (its cache and its in-memory key index): the comparison
**                    at equal memory rather than equal cache
**
** Each phase runs in its own child process (fork), so each run starts with
** cold caches in a new connection and its memory is measured alone. First
** the two loads: N rows in shuffled key order in one transaction (the plain
** table with a large page cache, then checkpointed into its file; not part
** of the comparison). Then REPS runs (default 3; the medians are reported)
** of the three systems in turn: open, N/2 warm-up gets, N timed gets. The
** gets follow one precomputed sequence, the same for every system and run:
** Zipf ranks drawn from a cumulative table by binary search, each rank
** mapped to a key through a random permutation so hot keys are spread over
** the key space. A get is a bind, a step, sqlite3_column_blob (the value is
** compared with what was loaded) and a reset on one prepared statement,
** SELECT value FROM kv WHERE key = ?1.
**
** Reported per system: gets/s over the N timed gets, and the CPU time
** (user + system, every thread of the process) per timed get, which other
** load on shared cores disturbs less than the wall clock; persistmap's cache hit
** ratio over them (cache_hits and cache_misses of persistmap_stats), the
** bytes its cache and its key index hold; SQLite's page cache hit ratio (of
** pages, several per get: SQLITE_DBSTATUS_CACHE_HIT and _MISS) and the bytes
** its page cache holds; misses per get (reads from the file); and how much
** the process's RSS grew from before the open to after the timed gets. The
** files are in the OS page cache (the load left them there), so a miss costs
** a read system call and a copy, not a disk access.
**
** Output: a table on stdout, and one JSON object per line in
** DIR/cache_sql.json. The databases are removed at the end.
*/
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES 16
#define VALUE_BYTES 100
#define VALUE_POOL 65536
#define THETA 0.99
#define CACHE_PERCENT 10
#define MAX_REPS 15

/* ==== Helpers ============================================================ */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench_cache_sql: ");
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

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL), sql);
  return st;
}

/* One member of persistmap_stats('kv'), as an integer. */
static sqlite3_int64 pm_stat(sqlite3 *db, const char *member) {
  char *sql = sqlite3_mprintf("SELECT json_extract(persistmap_stats('kv'), '$.%s')", member);
  sqlite3_stmt *st = NULL;
  check(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), sql);
  int rc = sqlite3_step(st);
  check(db, rc, sql);
  sqlite3_int64 v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return v;
}

/* User + system CPU time of the whole process, every thread. */
static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
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
static const unsigned char *value_of(uint32_t i) {
  return pool + (size_t)((i * 2654435761u) & (VALUE_POOL - 1)) * VALUE_BYTES;
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

/* count keys drawn from Zipf(theta) over ranks 0..nkeys-1: the first rank
** whose cumulative probability exceeds a uniform draw (binary search in a
** precomputed table), mapped to a key through a random permutation. */
static uint32_t *zipf_seq(uint64_t count, double theta) {
  uint64_t n = nkeys;
  double *cdf = malloc(n * sizeof *cdf);
  uint32_t *s = malloc(count * sizeof *s);
  if (!cdf || !s) die("out of memory");
  double sum = 0;
  for (uint64_t i = 0; i < n; i++) cdf[i] = sum += pow((double)(i + 1), -theta);
  for (uint64_t i = 0; i < n; i++) cdf[i] /= sum;
  cdf[n - 1] = 1.0;
  uint32_t *rank_to_key = permutation(n);
  for (uint64_t i = 0; i < count; i++) {
    double u = rnd01();
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (cdf[mid] > u) hi = mid; else lo = mid + 1;
    }
    s[i] = rank_to_key[lo];
  }
  free(rank_to_key);
  free(cdf);
  return s;
}

/* ==== Connections ======================================================== */

static const char *ext_path;   /* persistmap.so, absolute */
static char dbdir[PATH_MAX];   /* DIR/cache-sql, absolute */
static long long cache_kib;    /* both caches: cache_kib x 1024 bytes */

static sqlite3 *open_db(const char *name, int load) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dbdir, name);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) die("open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (load) {
    char *err = NULL;
    check(db, sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL), "enable load extension");
    if (sqlite3_load_extension(db, ext_path, "sqlite3_persistmap_init", &err) != SQLITE_OK) die("load %s: %s", ext_path, err ? err : "?");
  }
  sqlite3_busy_timeout(db, 30000);
  return db;
}

/* ==== Phases (each in a child process) =================================== */

/* What a child sends back through its pipe. */
typedef struct result {
  double secs;                 /* the load, or the timed gets */
  double warm_secs;
  double cpu_secs;             /* user + system CPU time of the process over the timed gets */
  long rss0_kb, rss1_kb;       /* before the open, after the timed gets */
  long long hits, misses;      /* over the timed gets: values (persistmap) or pages (sqlite) */
  long long warm_hits, warm_misses;
  long long cache_used;        /* bytes the cache holds at the end */
  long long cache_entries;     /* persistmap: values cached */
  long long index_bytes;       /* persistmap: the key index */
} result;

static void load_rows(sqlite3 *db, const uint32_t *order) {
  sqlite3_stmt *ins = prep(db, "INSERT INTO kv VALUES (?1, ?2)");
  exec(db, "BEGIN");
  for (uint64_t i = 0; i < nkeys; i++) {
    sqlite3_bind_text(ins, 1, key_of(order[i]), KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(ins, 2, value_of(order[i]), VALUE_BYTES, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) die("load: %s", sqlite3_errmsg(db));
    sqlite3_reset(ins);
  }
  exec(db, "COMMIT");
  sqlite3_finalize(ins);
}

static void load_child(int plain, const uint32_t *order, result *r) {
  double t0 = now();
  sqlite3 *db = open_db(plain ? "sq.db" : "pm.db", !plain);
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
  if (plain) {
    exec(db, "PRAGMA cache_size=-524288");
    exec(db, "CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID");
  } else {
    execf(db, "CREATE VIRTUAL TABLE kv USING persistmap(cache_size='%lld', auto_shrink=0)", cache_kib * 1024);
  }
  load_rows(db, order);
  if (plain) exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  else if (pm_stat(db, "keys") != (sqlite3_int64)nkeys) die("persistmap holds %lld keys", (long long)pm_stat(db, "keys"));
  check(db, sqlite3_close(db), "close");
  r->secs = now() - t0;
}

/* count gets of seq's keys; each value is checked against what was loaded. */
__attribute__((noinline)) static double run_gets(sqlite3 *db, sqlite3_stmt *st, const uint32_t *seq, uint64_t count) {
  uint64_t bad = 0;
  double t0 = now();
  for (uint64_t i = 0; i < count; i++) {
    sqlite3_bind_text(st, 1, key_of(seq[i]), KEY_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) die("get: %s (%d)", rc == SQLITE_DONE ? "key not found" : sqlite3_errmsg(db), rc);
    const void *v = sqlite3_column_blob(st, 0);
    if (sqlite3_column_bytes(st, 0) != VALUE_BYTES || memcmp(v, value_of(seq[i]), VALUE_BYTES) != 0) bad++;
    sqlite3_reset(st);
  }
  double t = now() - t0;
  if (bad) die("%llu of %llu gets returned a wrong value", (unsigned long long)bad, (unsigned long long)count);
  return t;
}

/* The page cache's hits and misses since the last call (which reset them). */
static void page_stats(sqlite3 *db, long long *hits, long long *misses) {
  int cur = 0, hi = 0;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_HIT, &cur, &hi, 1);
  *hits = cur;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &cur, &hi, 1);
  *misses = cur;
}

/* A new connection, warm gets, then timed gets. plain: the plain table with
** a page cache of page_kib KiB; otherwise the persistmap table. */
static void gets_child(int plain, long long page_kib, const uint32_t *seq, uint64_t warm, uint64_t count, result *r) {
  r->rss0_kb = rss_kb();
  sqlite3 *db = open_db(plain ? "sq.db" : "pm.db", !plain);
  if (plain) {
    execf(db, "PRAGMA cache_size=-%lld", page_kib);
  } else if (pm_stat(db, "cache_entries") != 0 || pm_stat(db, "cache_capacity") != cache_kib * 1024) {
    die("persistmap's cache is not cold, or not of %lld bytes", cache_kib * 1024);
  }
  sqlite3_stmt *st = prep(db, "SELECT value FROM kv WHERE key = ?1");
  long long h0 = 0, m0 = 0;
  if (plain) page_stats(db, &h0, &m0);
  r->warm_secs = run_gets(db, st, seq, warm);
  if (plain) {
    page_stats(db, &r->warm_hits, &r->warm_misses);
  } else {
    r->warm_hits = pm_stat(db, "cache_hits");
    r->warm_misses = pm_stat(db, "cache_misses");
  }
  double c0 = cpu_now();
  r->secs = run_gets(db, st, seq + warm, count);
  r->cpu_secs = cpu_now() - c0;
  r->rss1_kb = rss_kb();
  if (plain) {
    int cur = 0, hi = 0;
    page_stats(db, &r->hits, &r->misses);
    sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_USED, &cur, &hi, 0);
    r->cache_used = cur;
  } else {
    r->hits = pm_stat(db, "cache_hits") - r->warm_hits;
    r->misses = pm_stat(db, "cache_misses") - r->warm_misses;
    r->cache_used = pm_stat(db, "cache_bytes");
    r->cache_entries = pm_stat(db, "cache_entries");
    r->index_bytes = pm_stat(db, "index_bytes");
  }
  sqlite3_finalize(st);
  check(db, sqlite3_close(db), "close");
}

/* Run a load (seq NULL) or a gets phase in a child process, and return what
** it measured. */
static result in_child(int plain, long long page_kib, const uint32_t *order, const uint32_t *seq, uint64_t warm,
                       uint64_t count) {
  int fd[2];
  result r;
  memset(&r, 0, sizeof r);
  if (pipe(fd) < 0) die("pipe: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(fd[0]);
    if (seq) gets_child(plain, page_kib, seq, warm, count, &r);
    else load_child(plain, order, &r);
    _exit(write(fd[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
  }
  close(fd[1]);
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t k = read(fd[0], (char *)&r + got, sizeof r - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (got != sizeof r || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    die("the %s %s phase failed", plain ? "sqlite" : "persistmap", seq ? "gets" : "load");
  }
  return r;
}

/* ==== Main =============================================================== */

static void usage(void) {
  fprintf(stderr, "usage: bench_cache_sql [-n KEYS] [-r REPS] [-x EXTENSION] DIR\n");
  exit(2);
}

static double ratio(long long a, long long b) { return a + b > 0 ? (double)a / (double)(a + b) : 0; }

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

enum { SYS_PM, SYS_PLAIN, SYS_PLAIN_RSS, NSYS };
static const char *const sys_name[NSYS] = { "persistmap", "sqlite", "sqlite_same_rss" };

int main(int argc, char **argv) {
  uint64_t n = 1000000;
  int reps = 3;
  const char *ext = "./persistmap.so";
  int opt;
  while ((opt = getopt(argc, argv, "n:r:x:")) != -1) {
    switch (opt) {
      case 'n': n = strtoull(optarg, NULL, 10); break;
      case 'r': reps = atoi(optarg); break;
      case 'x': ext = optarg; break;
      default: usage();
    }
  }
  if (optind != argc - 1 || n < 1000 || n > UINT32_MAX / 2 || reps < 1 || reps > MAX_REPS) usage();
  char dir[PATH_MAX];
  if (mkdir(argv[optind], 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", argv[optind], strerror(errno));
  if (!realpath(argv[optind], dir)) die("%s: %s", argv[optind], strerror(errno));
  static char ext_abs[PATH_MAX];
  if (!realpath(ext, ext_abs)) die("%s: %s", ext, strerror(errno));
  ext_path = ext_abs;
  if ((size_t)snprintf(dbdir, sizeof dbdir, "%s/cache-sql", dir) >= sizeof dbdir) die("path too long");
  rm_rf(dbdir);
  if (mkdir(dbdir, 0755) < 0) die("mkdir %s: %s", dbdir, strerror(errno));
  char jp[PATH_MAX + 64];
  snprintf(jp, sizeof jp, "%s/cache_sql.json", dir);
  FILE *json = fopen(jp, "w");
  if (!json) die("%s: %s", jp, strerror(errno));
  nkeys = n;
  long long data_bytes = (long long)n * (KEY_BYTES + VALUE_BYTES);
  cache_kib = data_bytes * CACHE_PERCENT / 100 / 1024;
  long long cache_bytes = cache_kib * 1024;

  /* Keys, values and the access sequence, before any clock starts. */
  double t0 = now();
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
  uint64_t warm = n / 2, count = n;
  uint32_t *order = permutation(n);
  uint32_t *seq = zipf_seq(warm + count, THETA);
  sqlite3_initialize();
  double t_setup = now() - t0;

  printf("persistmap cache SQL bench: %llu keys, %d-byte keys, %d-byte values (%lld bytes), caches of %lld bytes "
         "(%d%%), Zipf %.2f, %llu warm-up + %llu timed gets, medians of %d runs, SQLite %s, %s\n",
         (unsigned long long)n, KEY_BYTES, VALUE_BYTES, data_bytes, cache_bytes, CACHE_PERCENT, THETA,
         (unsigned long long)warm, (unsigned long long)count, reps, sqlite3_libversion(), dbdir);
  fprintf(json, "{\"bench\":\"cache_sql\",\"workload\":\"setup\",\"keys\":%llu,\"key_bytes\":%d,\"value_bytes\":%d,"
                "\"data_bytes\":%lld,\"cache_percent\":%d,\"cache_bytes\":%lld,\"theta\":%.2f,\"warmup_gets\":%llu,"
                "\"gets\":%llu,\"reps\":%d,\"sqlite\":\"%s\"}\n",
          (unsigned long long)n, KEY_BYTES, VALUE_BYTES, data_bytes, CACHE_PERCENT, cache_bytes, THETA,
          (unsigned long long)warm, (unsigned long long)count, reps, sqlite3_libversion());

  result load[2];
  load[SYS_PM] = in_child(0, 0, order, NULL, 0, 0);
  load[SYS_PLAIN] = in_child(1, 0, order, NULL, 0, 0);
  printf("  setup %.1f s; load (N rows, one transaction; not compared): persistmap %.1f s, sqlite %.1f s\n",
         t_setup, load[SYS_PM].secs, load[SYS_PLAIN].secs);
  for (int s = 0; s < 2; s++) {
    fprintf(json, "{\"bench\":\"cache_sql\",\"workload\":\"load\",\"system\":\"%s\",\"unit\":\"rows/s\",\"keys\":%llu,"
                  "\"value\":%.1f,\"seconds\":%.3f}\n", sys_name[s], (unsigned long long)n,
            (double)n / load[s].secs, load[s].secs);
  }

  /* The systems interleaved within a repetition, each run a new process.
  ** sqlite_same_rss: the plain table with a page cache as large as the
  ** memory persistmap's process grew by in the first repetition. */
  result res[NSYS][MAX_REPS];
  double rate[NSYS][MAX_REPS], cpu[NSYS][MAX_REPS], rss[NSYS][MAX_REPS];
  long long kib[NSYS] = { cache_kib, cache_kib, 0 };
  for (int r = 0; r < reps; r++) {
    for (int s = 0; s < NSYS; s++) {
      res[s][r] = in_child(s != SYS_PM, kib[s], NULL, seq, warm, count);
      rate[s][r] = (double)count / res[s][r].secs;
      cpu[s][r] = res[s][r].cpu_secs * 1e6 / (double)count;
      rss[s][r] = (double)(res[s][r].rss1_kb - res[s][r].rss0_kb) * 1024.0;
      if (s == SYS_PM && r == 0) {
        long delta = res[s][r].rss1_kb - res[s][r].rss0_kb;
        kib[SYS_PLAIN_RSS] = delta > cache_kib ? delta : cache_kib;
      }
    }
  }

  double med[NSYS], med_cpu[NSYS];
  printf("\n  %-16s %10s %10s %-22s %10s %-19s %10s %10s %9s\n", "system", "cache KiB", "gets/s", "  runs: min..max",
         "CPU us/get",
         "hit ratio (timed)", "misses/get", "cache MiB", "RSS +MiB");
  for (int s = 0; s < NSYS; s++) {
    const result *l = &res[s][reps - 1];   /* the counts are the same every run: one sequence, cold caches */
    double lo = rate[s][0], hi = rate[s][0];
    for (int r = 1; r < reps; r++) {
      if (rate[s][r] < lo) lo = rate[s][r];
      if (rate[s][r] > hi) hi = rate[s][r];
    }
    med[s] = median(rate[s], reps);
    med_cpu[s] = median(cpu[s], reps);
    printf("  %-16s %10lld %10.0f %10.0f..%-10.0f %10.2f %7.2f%% of %-6s %10.3f %10.1f %9.1f\n", sys_name[s], kib[s],
           med[s], lo, hi, med_cpu[s], 100 * ratio(l->hits, l->misses), s == SYS_PM ? "values" : "pages",
           (double)l->misses / (double)count, (double)l->cache_used / 1048576.0, median(rss[s], reps) / 1048576.0);
    fprintf(json, "{\"bench\":\"cache_sql\",\"workload\":\"get_zipf_cache10\",\"system\":\"%s\",\"unit\":\"gets/s\","
                  "\"keys\":%llu,\"ops\":%llu,\"median\":%.1f,\"reps\":[", sys_name[s], (unsigned long long)n,
            (unsigned long long)count, med[s]);
    for (int r = 0; r < reps; r++) fprintf(json, "%s%.1f", r ? "," : "", rate[s][r]);
    fprintf(json, "],\"cpu_us_per_get\":%.3f,\"cpu_us_per_get_reps\":[", med_cpu[s]);
    for (int r = 0; r < reps; r++) fprintf(json, "%s%.3f", r ? "," : "", cpu[s][r]);
    fprintf(json, "],\"cache_kib\":%lld,\"%s\":%.4f,\"hits\":%lld,\"misses\":%lld,\"warmup_hit_ratio\":%.4f,"
                  "\"cache_used_bytes\":%lld,\"rss_delta_bytes\":%.0f",
            kib[s], s == SYS_PM ? "cache_hit_ratio" : "page_cache_hit_ratio", ratio(l->hits, l->misses), l->hits,
            l->misses, ratio(l->warm_hits, l->warm_misses), l->cache_used, median(rss[s], reps));
    if (s == SYS_PM) fprintf(json, ",\"cache_entries\":%lld,\"index_bytes\":%lld", l->cache_entries, l->index_bytes);
    fprintf(json, "}\n");
  }
  const result *p = &res[SYS_PM][reps - 1];
  printf("  persistmap / sqlite: %.2fx gets/s, %.2fx CPU per get; persistmap / sqlite_same_rss: %.2fx gets/s, "
         "%.2fx CPU per get\n", med[SYS_PM] / med[SYS_PLAIN], med_cpu[SYS_PM] / med_cpu[SYS_PLAIN],
         med[SYS_PM] / med[SYS_PLAIN_RSS], med_cpu[SYS_PM] / med_cpu[SYS_PLAIN_RSS]);
  printf("  (persistmap: %lld values cached, key index %.1f MiB, warm-up hit ratio %.2f%%)\n", p->cache_entries,
         (double)p->index_bytes / 1048576.0, 100 * ratio(p->warm_hits, p->warm_misses));
  for (int s = SYS_PLAIN; s < NSYS; s++) {
    fprintf(json, "{\"bench\":\"cache_sql\",\"workload\":\"get_zipf_cache10\",\"system\":\"ratio_%s\","
                  "\"unit\":\"persistmap/%s\",\"median\":%.4f,\"cpu_per_get\":%.4f}\n", sys_name[s], sys_name[s],
            med[SYS_PM] / med[s], med_cpu[SYS_PM] / med_cpu[s]);
  }
  fclose(json);
  rm_rf(dbdir);
  free(keys); free(pool); free(order); free(seq);
  return 0;
}
