/*
** test_sqlite_nomem.c - persistmap.so when SQLite's allocator runs out.
**
** A counting allocator is installed with sqlite3_config(SQLITE_CONFIG_MALLOC)
** around SQLite's default one: it sees SQLite's allocations and those of
** persistmap's SQL layer (vtab.c, functions.c), which allocates with
** sqlite3_malloc (and the engine's too, in a build that routes them there
** with pm_set_allocator; the engine's own failures are test_nomem.c's).
** The real persistmap.so is loaded with sqlite3_load_extension and runs a
** SQL workload in a file database: two tables (sync full and normal, a 4 KB
** cache and none, 64 KB segments that roll over), inserts of every type,
** point reads, key IN (...), GLOB and range scans, full scans, UPDATE of
** values and of keys, DELETE, a refused INSERT, an explicit transaction
** with a savepoint rolled back and one released, one rolled back,
** persistmap_stats (of a table not connected yet, too), _sync, _shrink,
** _check and _recover, a close, a reopen, reads, ALTER TABLE RENAME. The
** workload keeps a model of what was acknowledged.
**
** For N = 1, 2, ... until the workload no longer meets its fault, the Nth
** allocation fails, once, and then at every allocation from the Nth on
** (allocations of the test's own thread only: the engine's background
** thread is left alone, so that N means the same call in every run). For
** each run:
**
**   - nothing crashes (ASan and UBSan watch in make test-asan);
**   - every failed call returns SQLITE_NOMEM, or another error code whose
**     message an earlier failure explains ("no such table: kv" after the
**     CREATE failed, "no such module: persistmap" after the load failed):
**     running out of memory is never reported as something else, nor with
**     a message that lost its details;
**   - every query that succeeds returns exactly the rows of the model;
**   - with the fault disarmed, the connection closes (SQLITE_OK), and the
**     blocks SQLite holds, sqlite3_memory_used() and the bytes the process
**     holds from malloc (the engine's memory) are back to what they were
**     before the run: nothing leaked;
**   - reopened without faults, the tables hold the content of the model.
**
** The model follows the contract of the README's "Transactions and
** isolation": a statement or COMMIT that succeeded is in the store; a
** failed statement inside a transaction is undone alone, or with the whole
** transaction when SQLite rolled it back (sqlite3_get_autocommit says
** which); a statement that failed to prepare did nothing. A write that
** failed while it ran (an autocommit statement, or COMMIT) may have
** committed if the failure came after its group was written, but then as a
** whole: the model keeps both possibilities (worlds), each later read must
** match one of them, and worlds it does not match are dropped. The summary
** counts the failed writes that turned out committed.
**
** Last, the first load of persistmap.so in a process failing at its Nth
** allocation (SQLite then unloads the library), followed by a load from
** SQL that fails halfway, in child processes: nothing may crash, read
** freed memory or leak.
**
** make test steps through N with a stride (about QUICK_RUNS runs per mode,
** PM_NOMEM_RUNS=n: about n); PM_SOAK=1 tries every N (make soak). The
** extension is argv[1], else $PM_EXTENSION (the Makefile sets it), else
** ./persistmap.so. PM_VERBOSE=1 lists every failure.
*/
#include "testutil.h"
#include "failalloc.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <malloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define QUICK_RUNS 400         /* runs per mode in make test */
#define MAX_ROWS   48          /* rows a table of the model may hold */
#define MAX_WORLDS 16          /* possibilities the model may keep */
#define MAX_OPS    8           /* model operations of one statement */
#define MAX_PENDING 32         /* of one explicit transaction */
#define REPR       64          /* a key or value as the model writes it */

static const char *extension = "./persistmap.so";
static char *root_dir, *run_dir, *db_path;
static long runs, faults_met, first_loads, nomem_errors, other_errors;
static long failed_committed;      /* failed writes found committed after all */
static long baseline_blocks;
static long workload_calls;        /* allocations of the last run's workload */
static sqlite3_int64 baseline_bytes;
static size_t baseline_heap;

/* ==== 1. The allocator ================================================== */
/*
** SQLite's default methods, wrapped: failalloc.h's counter decides which
** allocation fails and counts the blocks held.
*/

static sqlite3_mem_methods sys_mem;
static pthread_t main_thread;

/* 1 if this allocation must fail: only the test's thread is starved. */
static int must_fail(void) {
  return pthread_equal(pthread_self(), main_thread) && fa_refuse();
}

/* xMalloc: SQLite's, unless it must fail; counts the block. */
static void *na_malloc(int n) {
  if (must_fail()) return NULL;
  void *p = sys_mem.xMalloc(n);
  if (p) fa_add(&fa_blocks, 1);
  return p;
}

/* xFree: SQLite's; the block is no longer held. */
static void na_free(void *p) {
  if (p) fa_add(&fa_blocks, -1);
  sys_mem.xFree(p);
}

/* xRealloc: SQLite's, unless it must fail (p then stays valid). */
static void *na_realloc(void *p, int n) {
  if (must_fail()) return NULL;
  return sys_mem.xRealloc(p, n);
}

/* xSize, xRoundup, xInit, xShutdown: SQLite's. */
static int na_size(void *p) { return sys_mem.xSize(p); }
static int na_roundup(int n) { return sys_mem.xRoundup(n); }
static int na_init(void *app) { return sys_mem.xInit(app); }
static void na_shutdown(void *app) { sys_mem.xShutdown(app); }

/* Install the wrapper; before sqlite3_initialize, as SQLite requires.
** 0, or -1 if SQLite refused. */
static int install_allocator(void) {
  main_thread = pthread_self();
  if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sys_mem) != SQLITE_OK) return -1;
  sqlite3_mem_methods m = { na_malloc, na_free, na_realloc, na_size, na_roundup,
                            na_init, na_shutdown, sys_mem.pAppData };
  if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) return -1;
  if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1) != SQLITE_OK) return -1;
  return sqlite3_initialize() == SQLITE_OK ? 0 : -1;
}

/* ==== 2. The model ====================================================== */
/*
** Keys and values are written as text: "i:7", "r:2.5", "t:ada", "b:00ff"
** (hex), "n" (NULL); text or blobs longer than 24 bytes as "t#2000:<hash>".
** In the workload, "Z3000" stands for zeroblob(3000).
*/

enum { KV, Q, TABLES };

typedef struct row { char key[REPR], val[REPR]; } row;

typedef struct table_model {
  int n;
  row r[MAX_ROWS];
  int has_hw;
  sqlite3_int64 hw;              /* the highest integer key ever held */
} table_model;

/* One possible state of both stores, and the connection's last assigned key. */
typedef struct world {
  table_model t[TABLES];
  int has_last;
  sqlite3_int64 last_key;
  int guessed;           /* failed writes this world takes as committed */
} world;

/* FNV-1a, for long values. */
static uint64_t fnv(const void *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
  return h;
}

/* The text form of n bytes of text or blob (type 't' or 'b'). */
static void bytes_repr(char type, const uint8_t *p, size_t n, char *out) {
  if (n > 24) {
    snprintf(out, REPR, "%c#%zu:%016llx", type, n, (unsigned long long)fnv(p, n));
    return;
  }
  int at = snprintf(out, REPR, "%c:", type);
  for (size_t i = 0; i < n; i++)
    at += type == 't' ? snprintf(out + at, REPR - (size_t)at, "%c", p[i])
                      : snprintf(out + at, REPR - (size_t)at, "%02x", p[i]);
}

/* The text form of an SQL value; 0, or SQLITE_NOMEM if SQLite could not
** give its bytes. */
static int value_repr(sqlite3_value *v, char *out) {
  int type = sqlite3_value_type(v);
  if (type == SQLITE_INTEGER) snprintf(out, REPR, "i:%lld", sqlite3_value_int64(v));
  else if (type == SQLITE_FLOAT) snprintf(out, REPR, "r:%.17g", sqlite3_value_double(v));
  else if (type == SQLITE_NULL) snprintf(out, REPR, "n");
  else {
    const uint8_t *p = sqlite3_value_blob(v);   /* no terminator to add: no allocation */
    int n = sqlite3_value_bytes(v);
    if (!p && n > 0) return SQLITE_NOMEM;
    bytes_repr(type == SQLITE_TEXT ? 't' : 'b', p, (size_t)n, out);
  }
  return 0;
}

/* A value of the workload in text form ("Z3000": 3000 zero bytes). */
static void spec_repr(const char *spec, char *out) {
  if (spec[0] != 'Z') { snprintf(out, REPR, "%s", spec); return; }
  size_t n = (size_t)atoi(spec + 1);
  uint8_t *zero = calloc(n, 1);
  assert_non_null(zero);
  bytes_repr('b', zero, n, out);
  free(zero);
}

/* The row of key, or NULL. */
static row *find_row(table_model *t, const char *key) {
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->r[i].key, key) == 0) return &t->r[i];
  return NULL;
}

/* Put (insert or replace); an integer key raises the high-water mark. */
static void model_put(table_model *t, const char *key, const char *spec) {
  row *r = find_row(t, key);
  if (!r) {
    assert_true(t->n < MAX_ROWS);
    r = &t->r[t->n++];
    snprintf(r->key, REPR, "%s", key);
  }
  spec_repr(spec, r->val);
  if (key[0] == 'i') {
    sqlite3_int64 k = atoll(key + 2);
    if (!t->has_hw || k > t->hw) { t->hw = k; t->has_hw = 1; }
  }
}

/* Delete key if present (the last row takes its place). */
static void model_delete(table_model *t, const char *key) {
  row *r = find_row(t, key);
  if (r) *r = t->r[--t->n];
}

/* Is the key a text key starting with prefix? */
static int has_prefix(const char *key, const char *prefix) {
  return key[0] == 't' && key[1] == ':' && strncmp(key + 2, prefix, strlen(prefix)) == 0;
}

/* Is the key a number in [lo, hi)? */
static int in_range(const char *key, double lo, double hi) {
  if (key[0] != 'i' && key[0] != 'r') return 0;
  double d = atof(key + 2);
  return d >= lo && d < hi;
}

/* ---- What a statement does to the model ---- */

enum { M_END, M_PUT, M_DEL, M_INCR, M_SERIES, M_SET_PREFIX, M_DEL_PREFIX, M_MOVE, M_PUSH };

typedef struct mop {
  int kind;
  int table;
  const char *a, *b;     /* key and value; prefix and value; from and to */
  int count;             /* M_SERIES: keys a1..a<count> */
} mop;

/* Apply one operation to a world. */
static void mop_apply(world *w, const mop *m) {
  table_model *t = &w->t[m->table];
  char key[REPR];
  switch (m->kind) {
    case M_PUT: model_put(t, m->a, m->b); break;
    case M_DEL: model_delete(t, m->a); break;
    case M_INCR: {
      row *r = find_row(t, m->a);
      if (r && r->val[0] == 'i') snprintf(r->val, REPR, "i:%lld", atoll(r->val + 2) + 1);
      break;
    }
    case M_SERIES:
      for (int i = 1; i <= m->count; i++) {
        snprintf(key, sizeof key, "%s%d", m->a, i);
        model_put(t, key, m->b);
      }
      break;
    case M_SET_PREFIX:
      for (int i = 0; i < t->n; i++)
        if (has_prefix(t->r[i].key, m->a)) spec_repr(m->b, t->r[i].val);
      break;
    case M_DEL_PREFIX:
      for (int i = t->n - 1; i >= 0; i--)
        if (has_prefix(t->r[i].key, m->a)) t->r[i] = t->r[--t->n];
      break;
    case M_MOVE: {                   /* (a value's text form is its own spec) */
      row *r = find_row(t, m->a);
      char val[REPR];
      if (!r) break;
      memcpy(val, r->val, REPR);
      model_delete(t, m->a);
      model_put(t, m->b, val);
      break;
    }
    case M_PUSH:
      snprintf(key, sizeof key, "i:%lld", t->has_hw && t->hw >= 0 ? t->hw + 1 : 1);
      model_put(t, key, m->b);
      w->has_last = 1;
      w->last_key = t->hw;
      break;
  }
}

/* ---- What a query must return ---- */

enum { C_KEYS = 1, C_PREFIX, C_RANGE, C_ALL, C_COUNT, C_LAST_KEY, C_ONE };

typedef struct check {
  int kind;
  int table;
  const char *keys[6];   /* C_KEYS; keys[0] is the prefix of C_PREFIX */
  double lo, hi;         /* C_RANGE */
} check;

/* Does the model's row match the query's condition? */
static int row_wanted(const check *c, const row *r) {
  switch (c->kind) {
    case C_KEYS:
      for (int i = 0; i < 6 && c->keys[i]; i++)
        if (strcmp(c->keys[i], r->key) == 0) return 1;
      return 0;
    case C_PREFIX: return has_prefix(r->key, c->keys[0]);
    case C_RANGE: return in_range(r->key, c->lo, c->hi);
    default: return 1;
  }
}

/* ==== 3. Results ======================================================== */

/* The rows a statement returned, as sorted "key value" lines. */
typedef struct result {
  int n;
  char line[MAX_ROWS + 8][2 * REPR + 2];
} result;

/* Sort the lines, so that results compare whatever the order of the rows. */
static int line_cmp(const void *a, const void *b) { return strcmp(a, b); }
static void result_sort(result *r) { qsort(r->line, (size_t)r->n, sizeof r->line[0], line_cmp); }

/* Append a row of one or two columns. */
static void result_add(result *r, const char *a, const char *b) {
  assert_true(r->n < MAX_ROWS + 8);
  snprintf(r->line[r->n++], sizeof r->line[0], "%s %s", a, b ? b : "");
}

/* What the query of c must return in world w. */
static void expected(const check *c, const world *w, result *out) {
  const table_model *t = &w->t[c->table];
  char v[REPR];
  out->n = 0;
  if (c->kind == C_COUNT || c->kind == C_ONE || c->kind == C_LAST_KEY) {
    if (c->kind == C_LAST_KEY && !w->has_last) snprintf(v, sizeof v, "n");
    else snprintf(v, sizeof v, "i:%lld", c->kind == C_COUNT ? (sqlite3_int64)t->n
                                        : c->kind == C_ONE ? 1 : w->last_key);
    result_add(out, v, NULL);
    return;
  }
  for (int i = 0; i < t->n; i++)
    if (row_wanted(c, &t->r[i])) result_add(out, t->r[i].key, t->r[i].val);
  result_sort(out);
}

/* Same rows? (Both sorted.) */
static int result_equal(const result *a, const result *b) {
  if (a->n != b->n) return 0;
  for (int i = 0; i < a->n; i++)
    if (strcmp(a->line[i], b->line[i]) != 0) return 0;
  return 1;
}

/* ==== 4. The workload =================================================== */

enum { S_OPEN = 1, S_LOAD, S_CLOSE, S_WRITE, S_READ, S_BEGIN, S_SAVEPOINT, S_ROLLBACK_TO,
       S_RELEASE, S_COMMIT, S_ROLLBACK };

typedef struct step {
  int kind;
  const char *sql;
  mop ops[MAX_OPS];      /* S_WRITE */
  check chk;             /* S_READ */
  int after_ok;          /* run only if the step before succeeded */
  int expect_rc;         /* it may fail with this code (and change nothing) ... */
  const char *expect_msg;   /* ... and a message that starts so */
} step;

#define STEP(kind_, sql_) { .kind = kind_, .sql = sql_ }

#define PUT(t, k, v)  { M_PUT, t, k, v, 0 }
#define DEL(t, k)     { M_DEL, t, k, NULL, 0 }
#define PUSH(t, v)    { M_PUSH, t, NULL, v, 0 }
#define ROWS(t, kind_, ...) .chk = { kind_, t, { __VA_ARGS__ }, 0, 0 }
/* The background thread is kept asleep (sync_interval): no allocation of
** its may land among the test thread's. */
#define KV_OPTIONS "path='kv.pmap', sync='full', sync_interval='3600s', cache_size='4KB', " \
                   "segment_size='64KB'"
#define Q_OPTIONS  "path='q.pmap', sync=normal, sync_interval='3600s', cache_size=0"

static const step workload[] = {
  STEP(S_OPEN, NULL),
  STEP(S_LOAD, NULL),
  STEP(S_WRITE, "CREATE VIRTUAL TABLE kv USING persistmap(" KV_OPTIONS ")"),
  STEP(S_WRITE, "CREATE VIRTUAL TABLE q USING persistmap(" Q_OPTIONS ")"),
  { S_WRITE, "INSERT INTO kv VALUES ('user:1', 'ada'), ('user:2', x'00ff'), ('user:3', 3.25), "
             "('user:4', NULL), (7, 42), (2.5, 0.1), (x'0001', ''), ('hits', 0)",
    .ops = { PUT(KV, "t:user:1", "t:ada"), PUT(KV, "t:user:2", "b:00ff"),
             PUT(KV, "t:user:3", "r:3.25"), PUT(KV, "t:user:4", "n"), PUT(KV, "i:7", "i:42"),
             PUT(KV, "r:2.5", "r:0.10000000000000001"), PUT(KV, "b:0001", "t:"),
             PUT(KV, "t:hits", "i:0") } },
  { S_WRITE, "INSERT OR REPLACE INTO kv VALUES ('user:2', zeroblob(0)), ('cfg', json('{\"a\":1}'))",
    .ops = { PUT(KV, "t:user:2", "b:"), PUT(KV, "t:cfg", "t:{\"a\":1}") } },
  { S_WRITE, "UPDATE kv SET value = value + 1 WHERE key = 'hits'",
    .ops = { { M_INCR, KV, "t:hits", NULL, 0 } } },
  { S_WRITE, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 24) "
             "INSERT INTO kv SELECT 'big:' || i, zeroblob(3000) FROM c",
    .ops = { { M_SERIES, KV, "t:big:", "Z3000", 24 } } },
  { S_READ, "SELECT key, value FROM kv WHERE key = 'user:1'", ROWS(KV, C_KEYS, "t:user:1") },
  { S_READ, "SELECT key, value FROM kv WHERE key IN ('user:2', 7, x'0001', 'nobody')",
    ROWS(KV, C_KEYS, "t:user:2", "i:7", "b:0001", "t:nobody") },
  { S_READ, "SELECT key, value FROM kv WHERE key GLOB 'user:*'", ROWS(KV, C_PREFIX, "user:") },
  { S_READ, "SELECT key, value FROM kv WHERE key >= 2 AND key < 10",
    .chk = { C_RANGE, KV, { 0 }, 2, 10 } },
  /* A transaction: a savepoint rolled back, one released. */
  STEP(S_BEGIN, "BEGIN"),
  { S_WRITE, "INSERT INTO q(value) VALUES ('job1'), (x'01'), (12)",
    .ops = { PUSH(Q, "t:job1"), PUSH(Q, "b:01"), PUSH(Q, "i:12") } },
  { S_READ, "SELECT persistmap_last_key()", .chk = { C_LAST_KEY, Q, { 0 }, 0, 0 }, .after_ok = 1 },
  { S_WRITE, "UPDATE kv SET value = zeroblob(3001) WHERE key GLOB 'big:*'",
    .ops = { { M_SET_PREFIX, KV, "big:", "Z3001", 0 } } },
  STEP(S_SAVEPOINT, "SAVEPOINT s1"),
  { S_WRITE, "DELETE FROM kv WHERE key GLOB 'user:*'",
    .ops = { { M_DEL_PREFIX, KV, "user:", NULL, 0 } } },
  { S_READ, "SELECT key, value FROM kv WHERE key GLOB 'user:*'", ROWS(KV, C_PREFIX, "user:") },
  STEP(S_ROLLBACK_TO, "ROLLBACK TO s1"),
  STEP(S_RELEASE, "RELEASE s1"),
  STEP(S_SAVEPOINT, "SAVEPOINT s2"),
  { S_WRITE, "UPDATE kv SET key = 'user:9' WHERE key = 'user:3'",
    .ops = { { M_MOVE, KV, "t:user:3", "t:user:9", 0 } } },
  STEP(S_RELEASE, "RELEASE s2"),
  STEP(S_COMMIT, "COMMIT"),
  { S_READ, "SELECT key, value FROM kv", ROWS(KV, C_ALL, NULL) },
  /* A transaction rolled back. */
  STEP(S_BEGIN, "BEGIN"),
  { S_WRITE, "INSERT INTO kv VALUES ('tmp', 1)", .ops = { PUT(KV, "t:tmp", "i:1") } },
  { S_WRITE, "DELETE FROM q WHERE key = 1", .ops = { DEL(Q, "i:1") } },
  { S_READ, "SELECT key, value FROM q", ROWS(Q, C_ALL, NULL) },
  STEP(S_ROLLBACK, "ROLLBACK"),
  { S_WRITE, "DELETE FROM kv WHERE key IN ('user:1', 7)",
    .ops = { DEL(KV, "t:user:1"), DEL(KV, "i:7") } },
  { S_WRITE, "DELETE FROM q WHERE key = 2", .ops = { DEL(Q, "i:2") } },
  /* Refused if 'cfg' exists, which depends on earlier failures; no change either way. */
  { S_WRITE, "INSERT INTO kv SELECT 'cfg', 2 WHERE EXISTS (SELECT 1 FROM kv WHERE key = 'cfg')",
    .expect_rc = SQLITE_CONSTRAINT, .expect_msg = "persistmap: key 'cfg' already exists in 'kv'" },
  { S_READ, "SELECT json_extract(persistmap_stats('main.kv'), '$.keys')",
    .chk = { C_COUNT, KV, { 0 }, 0, 0 } },
  { S_READ, "SELECT persistmap_sync('kv')", .chk = { C_ONE, KV, { 0 }, 0, 0 } },
  { S_READ, "SELECT persistmap_shrink('kv') IS NOT NULL", .chk = { C_ONE, KV, { 0 }, 0, 0 } },
  { S_READ, "SELECT persistmap_check('kv') = 'ok'", .chk = { C_ONE, KV, { 0 }, 0, 0 } },
  /* (Not json_valid(): SQLite 3.40's returns 0 when it runs out of memory.) */
  { S_READ, "SELECT persistmap_recover('q') LIKE '{\"damaged\":false,%}'", .chk = { C_ONE, Q, { 0 }, 0, 0 } },
  { S_READ, "SELECT key, value FROM kv", ROWS(KV, C_ALL, NULL) },
  { S_READ, "SELECT key, value FROM q ORDER BY seq", ROWS(Q, C_ALL, NULL) },
  STEP(S_CLOSE, NULL),
  /* Reopened. */
  STEP(S_OPEN, NULL),
  STEP(S_LOAD, NULL),
  { S_READ, "SELECT json_extract(persistmap_stats('q'), '$.keys')",   /* q not connected yet */
    .chk = { C_COUNT, Q, { 0 }, 0, 0 } },
  { S_READ, "SELECT key, value FROM kv", ROWS(KV, C_ALL, NULL) },
  { S_READ, "SELECT key, value FROM kv WHERE key = 'cfg'", ROWS(KV, C_KEYS, "t:cfg") },
  { S_WRITE, "INSERT INTO q(value) VALUES ('after reopen')",
    .ops = { PUSH(Q, "t:after reopen") } },
  STEP(S_WRITE, "ALTER TABLE q RENAME TO jobs"),
  STEP(S_WRITE, "ALTER TABLE jobs RENAME TO q"),
  { S_READ, "SELECT key, value FROM q", ROWS(Q, C_ALL, NULL) },
  STEP(S_CLOSE, NULL),
};
#define NSTEPS ((int)(sizeof workload / sizeof workload[0]))

/* ==== 5. Running it ===================================================== */

/* One run of the workload. */
typedef struct wrun {
  const char *what;      /* "allocation 123 and after", for messages */
  int step;              /* index of the running step */
  sqlite3 *db;
  world w[MAX_WORLDS];   /* what the stores may hold */
  int nw;
  const mop *pending[MAX_PENDING];   /* the open transaction's writes */
  int npending, mark;    /* mark: pending ops when the savepoint opened */
  int in_txn;            /* an explicit transaction is open */
  int skip_txn;          /* it broke: skip its remaining steps */
  int stuck;             /* a transaction cannot be ended: skip to the close */
  int failed;            /* steps that failed */
  int last_ok;           /* the previous step succeeded */
} wrun;

/* Fail the test, naming the run and the step. */
#define run_fail(r, ...) do { \
    char why_[400]; snprintf(why_, sizeof why_, __VA_ARGS__); \
    fail_msg("%s, step %d (%s): %s", (r)->what, (r)->step + 1, \
             workload[(r)->step].sql ? workload[(r)->step].sql : "open/load/close", why_); \
  } while (0)

/* The errors an earlier failure explains: the table, the module or a
** function is missing because the statement or the load that would have
** made it failed. */
static const char *const consequences[] = {
  "no such table: ", "persistmap: no such table: ", "no such module: persistmap",
  "no such function: persistmap_",
};

/* A failed call must say why: SQLITE_NOMEM, or another code whose message
** names a consequence of an earlier failure. Anything else (an out of
** memory reported as SQLITE_ERROR or SQLITE_CANTOPEN, a generic message)
** fails the run. */
static void check_error(wrun *r, int rc, const char *msg) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) run_fail(r, "failed with %d", rc);
  r->failed++;
  if (!msg) msg = "";
  if (getenv("PM_VERBOSE")) fprintf(stderr, "%s, step %d: code %d: %s\n", r->what, r->step + 1, rc, msg);
  if ((rc & 0xff) == SQLITE_NOMEM) { nomem_errors++; return; }
  other_errors++;
  for (size_t i = 0; i < sizeof consequences / sizeof *consequences; i++)
    if (strncmp(msg, consequences[i], strlen(consequences[i])) == 0) return;
  run_fail(r, "failed with code %d: \"%s\"", rc, msg);
}

/* Run sql on db, its rows into out (if not NULL). Returns SQLite's code,
** with the error message in msg; *prepared says whether it got past
** sqlite3_prepare (if it did not, it did nothing). */
static int run_sql(sqlite3 *db, const char *sql, result *out, int *prepared, char *msg, size_t cap) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  *prepared = rc == SQLITE_OK;
  if (out) out->n = 0;
  if (rc == SQLITE_OK) rc = SQLITE_ROW;
  while (rc == SQLITE_ROW && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    char a[REPR], b[REPR];
    int two = sqlite3_column_count(st) > 1;
    if (value_repr(sqlite3_column_value(st, 0), a) ||
        (two && value_repr(sqlite3_column_value(st, 1), b))) {
      rc = SQLITE_NOMEM;     /* a column's bytes could not be had: the read failed */
      snprintf(msg, cap, "out of memory");
      break;
    }
    if (out) result_add(out, a, two ? b : NULL);
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK && rc != SQLITE_NOMEM) snprintf(msg, cap, "%s", sqlite3_errmsg(db));
  int frc = sqlite3_finalize(st);
  if (rc == SQLITE_OK && frc != SQLITE_OK) {
    rc = frc;
    snprintf(msg, cap, "%s", sqlite3_errmsg(db));
  }
  if (out) result_sort(out);
  return rc;
}

/* Is this the failure the step expects (which changes nothing)? Its
** message, or SQLite's generic text for its code: out of memory, SQLite
** may fail to copy a message into the connection (a "benign" failure:
** sqlite3_errmsg() then falls back to sqlite3_errstr()). */
static int expected_failure(const wrun *r, int rc, const char *msg) {
  const step *s = &workload[r->step];
  if (!s->expect_rc || rc != s->expect_rc) return 0;
  return strncmp(msg, s->expect_msg, strlen(s->expect_msg)) == 0 || strcmp(msg, sqlite3_errstr(rc)) == 0;
}

/* A statement of the workload; its error, if any, is checked. The failure
** the step expects counts as success. */
static int step_sql(wrun *r, const char *sql, result *out, int *prepared) {
  char msg[400] = "out of memory";
  int ignored;
  int rc = run_sql(r->db, sql, out, prepared ? prepared : &ignored, msg, sizeof msg);
  if (rc == SQLITE_OK || expected_failure(r, rc, msg)) return SQLITE_OK;
  check_error(r, rc, msg);
  return rc;
}

/* The worlds with the open transaction's writes so far. */
static void current_worlds(const wrun *r, world *out) {
  for (int i = 0; i < r->nw; i++) {
    out[i] = r->w[i];
    for (int p = 0; p < r->npending; p++) mop_apply(&out[i], r->pending[p]);
  }
}

/* Do two tables of the model hold the same rows and high-water mark? */
static int table_equal(const table_model *a, const table_model *b) {
  if (a->n != b->n || a->has_hw != b->has_hw || a->hw != b->hw) return 0;
  for (int i = 0; i < a->n; i++) {
    const row *o = find_row((table_model *)b, a->r[i].key);
    if (!o || strcmp(o->val, a->r[i].val) != 0) return 0;
  }
  return 1;
}

/* Same content of both tables, and the same last assigned key? */
static int world_equal(const world *a, const world *b) {
  for (int t = 0; t < TABLES; t++)
    if (!table_equal(&a->t[t], &b->t[t])) return 0;
  return a->has_last == b->has_last && (!a->has_last || a->last_key == b->last_key);
}

/* Remove worlds equal to an earlier one. */
static void dedupe(wrun *r) {
  int n = 0;
  for (int i = 0; i < r->nw; i++) {
    int dup = 0;
    for (int j = 0; j < n && !dup; j++) dup = world_equal(&r->w[j], &r->w[i]);
    if (!dup) r->w[n++] = r->w[i];
  }
  r->nw = n;
}

/* A write succeeded (every world takes it), or it failed while it ran and
** may have committed after all (each world forks: without it, and with it). */
static void commit_ops(wrun *r, const mop *const *ops, int nops, int certain) {
  int n = r->nw, from = 0;
  if (!certain) {
    if (2 * n > MAX_WORLDS) run_fail(r, "more than %d possible states", MAX_WORLDS);
    memcpy(&r->w[n], r->w, sizeof(world) * (size_t)n);
    r->nw = 2 * n;
    from = n;
  }
  for (int i = from; i < from + n; i++) {
    for (int p = 0; p < nops; p++) mop_apply(&r->w[i], ops[p]);
    r->w[i].guessed += !certain;
  }
  dedupe(r);                           /* keeps the first: the one without */
}

/* A query's rows must be those of some world; the others are dropped. */
static void check_read(wrun *r, const check *c, const result *got) {
  world cur[MAX_WORLDS];
  result want;
  current_worlds(r, cur);
  int n = 0;
  for (int i = 0; i < r->nw; i++) {
    expected(c, &cur[i], &want);
    if (result_equal(got, &want)) r->w[n++] = r->w[i];
  }
  if (n == 0) {
    expected(c, &cur[0], &want);
    run_fail(r, "wrong rows: got %d (first: %s), expected %d (first: %s)", got->n,
             got->n ? got->line[0] : "-", want.n, want.n ? want.line[0] : "-");
  }
  r->nw = n;
}

/* End a broken transaction: ROLLBACK if it is still open; if that fails
** too, the connection is stuck in it until closed. */
static void abandon_txn(wrun *r) {
  r->npending = 0;
  r->in_txn = 0;
  if (sqlite3_get_autocommit(r->db)) return;
  step_sql(r, "ROLLBACK", NULL, NULL);
  if (!sqlite3_get_autocommit(r->db)) r->stuck = 1;
}

/* Open the database (a handle that failed to open is closed at once). */
static int do_open(wrun *r) {
  int rc = sqlite3_open_v2(db_path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc == SQLITE_OK) return rc;
  check_error(r, rc, r->db ? sqlite3_errmsg(r->db) : NULL);
  if (r->db && sqlite3_close(r->db) != SQLITE_OK) run_fail(r, "a connection that failed to open stays open");
  r->db = NULL;
  return rc;
}

/* Load persistmap.so into the connection. */
static int do_load(wrun *r) {
  char *zErr = NULL;
  sqlite3_enable_load_extension(r->db, 1);
  int rc = sqlite3_load_extension(r->db, extension, NULL, &zErr);
  if (rc != SQLITE_OK) {           /* (without a message when SQLite could not allocate one) */
    r->failed++;
    if ((rc & 0xff) == SQLITE_NOMEM || !zErr) nomem_errors++;
    else other_errors++;
  }
  sqlite3_free(zErr);
  return rc;
}

/* Close the connection: every statement is finalized, so it must close. */
static int do_close(wrun *r) {
  if (r->db && sqlite3_close(r->db) != SQLITE_OK) run_fail(r, "close failed: %s", sqlite3_errmsg(r->db));
  r->db = NULL;
  r->in_txn = r->skip_txn = r->stuck = 0;
  r->npending = 0;
  for (int i = 0; i < r->nw; i++) r->w[i].has_last = 0;   /* persistmap_last_key is per connection */
  return SQLITE_OK;
}

/* A write statement: inside a transaction it joins the pending writes; in
** autocommit mode it commits, or may have if it failed while running. */
static int do_write(wrun *r, const step *s) {
  int prepared;
  int rc = step_sql(r, s->sql, NULL, &prepared);
  int nops = 0;
  const mop *ops[MAX_OPS];
  while (nops < MAX_OPS && s->ops[nops].kind != M_END) { ops[nops] = &s->ops[nops]; nops++; }
  if (r->in_txn) {                     /* a failure undid the statement alone */
    if (r->npending + nops > MAX_PENDING) run_fail(r, "more than %d writes in a transaction", MAX_PENDING);
    if (rc == SQLITE_OK) for (int i = 0; i < nops; i++) r->pending[r->npending++] = ops[i];
    return rc;
  }
  if (rc == SQLITE_OK || prepared) commit_ops(r, ops, nops, rc == SQLITE_OK);
  return rc;
}

/* Transaction control: BEGIN, SAVEPOINT, ROLLBACK TO, RELEASE, COMMIT, ROLLBACK. */
static int do_txn(wrun *r, const step *s) {
  int prepared;
  int rc = step_sql(r, s->sql, NULL, &prepared);
  if (s->kind == S_BEGIN) {
    r->in_txn = rc == SQLITE_OK;
    r->skip_txn = rc != SQLITE_OK;
    r->npending = r->mark = 0;
    if (rc != SQLITE_OK) abandon_txn(r);
  } else if (s->kind == S_COMMIT && (rc == SQLITE_OK || prepared)) {
    commit_ops(r, r->pending, r->npending, rc == SQLITE_OK);
    r->npending = 0;
    r->in_txn = 0;
    if (rc != SQLITE_OK) abandon_txn(r);
  } else if (rc != SQLITE_OK) {
    abandon_txn(r);
    r->skip_txn = s->kind != S_COMMIT && s->kind != S_ROLLBACK;
  } else if (s->kind == S_SAVEPOINT) {
    r->mark = r->npending;
  } else if (s->kind == S_ROLLBACK_TO) {
    r->npending = r->mark;
  } else if (s->kind == S_ROLLBACK) {
    r->npending = 0;
    r->in_txn = 0;
  }
  return rc;
}

/* A query: its rows are checked against the model. */
static int do_read(wrun *r, const step *s) {
  result got;
  int rc = step_sql(r, s->sql, &got, NULL);
  if (rc == SQLITE_OK) check_read(r, &s->chk, &got);
  return rc;
}

/* Should step i be skipped? A closed connection, a broken or stuck
** transaction, a check that needs the step before. */
static int skipped(wrun *r, const step *s) {
  if (s->kind == S_OPEN) return 0;
  if (!r->db) return s->kind != S_CLOSE;
  if (r->stuck) return s->kind != S_CLOSE;
  if (r->skip_txn) {
    if (s->kind == S_COMMIT || s->kind == S_ROLLBACK) { r->skip_txn = 0; }
    return 1;
  }
  return s->after_ok && !r->last_ok;
}

/* Run one step. A failure inside a transaction may have made SQLite roll
** the whole transaction back (it does for SQLITE_NOMEM when the statement
** has no statement journal): its writes are then gone, and its remaining
** steps are skipped. */
static int run_step(wrun *r, const step *s) {
  int rc;
  switch (s->kind) {
    case S_OPEN:  rc = do_open(r); break;
    case S_LOAD:  rc = do_load(r); break;
    case S_CLOSE: rc = do_close(r); break;
    case S_WRITE: rc = do_write(r, s); break;
    case S_READ:  rc = do_read(r, s); break;
    default:      rc = do_txn(r, s); break;
  }
  if (rc != SQLITE_OK && r->in_txn && sqlite3_get_autocommit(r->db)) {
    r->npending = 0;
    r->in_txn = 0;
    r->skip_txn = 1;
  }
  return rc;
}

/* ==== 6. Runs and checks ================================================ */

/* A fresh directory for the run's database and stores. */
static void fresh_dir(void) {
  tu_rmtree(run_dir);
  assert_int_equal(mkdir(run_dir, 0755), 0);
}

/* Seconds on a monotonic clock. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes the process holds from malloc: SQLite's default allocator and the
** engine's (the C library's) both allocate there. ASan's count under ASan,
** the C library's otherwise (exact once its per-thread cache is off: see
** exact_heap_count). */
#ifdef __SANITIZE_ADDRESS__
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_bytes(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
static size_t heap_bytes(void) { return mallinfo2().uordblks; }
#endif

/* glibc's per-thread cache (tcache) keeps freed blocks, which mallinfo2()
** counts as in use: run again with it off, unless it is off already or
** ASan allocates. Returns only if nothing is to be done (or exec failed). */
static void exact_heap_count(char **argv) {
#ifndef __SANITIZE_ADDRESS__
  const char *now = getenv("GLIBC_TUNABLES");
  if (now && strstr(now, "glibc.malloc.tcache_count=0")) return;
  char *tunables = NULL;
  if (asprintf(&tunables, "%s%sglibc.malloc.tcache_count=0", now ? now : "", now ? ":" : "") < 0) return;
  setenv("GLIBC_TUNABLES", tunables, 1);
  free(tunables);
  execv("/proc/self/exe", argv);
#else
  (void)argv;
#endif
}

/* Record what is allocated now, with no connection open. */
static void set_baseline(void) {
  baseline_blocks = fa_live();
  baseline_bytes = sqlite3_memory_used();
  baseline_heap = heap_bytes();
}

/* Memory back to what it was before the run: SQLite's blocks and bytes,
** and the process's heap, the engine's memory included (not checked
** before the baseline is known). */
static void check_no_leak(const char *what) {
  if (baseline_bytes < 0) return;
  if (fa_live() != baseline_blocks || sqlite3_memory_used() != baseline_bytes)
    fail_msg("%s: %ld blocks, %lld bytes still allocated", what, fa_live() - baseline_blocks,
             (long long)(sqlite3_memory_used() - baseline_bytes));
  if (heap_bytes() != baseline_heap)
    fail_msg("%s: the heap holds %lld bytes more than before", what,
             (long long)heap_bytes() - (long long)baseline_heap);
}

/* Read a whole table of a fault-free connection into got. */
static void read_table(sqlite3 *db, const char *name, const char *options, result *got, const char *what) {
  char sql[300], msg[400] = "";
  int prepared;
  snprintf(sql, sizeof sql, "CREATE VIRTUAL TABLE IF NOT EXISTS %s USING persistmap(%s)", name, options);
  if (run_sql(db, sql, NULL, &prepared, msg, sizeof msg) != SQLITE_OK) fail_msg("%s: reopened, %s", what, msg);
  snprintf(sql, sizeof sql, "SELECT key, value FROM %s", name);
  if (run_sql(db, sql, got, &prepared, msg, sizeof msg) != SQLITE_OK) fail_msg("%s: reopened, %s", what, msg);
}

/* Reopen without faults: both tables together hold one of the worlds. */
static void check_reopened(wrun *r) {
  sqlite3 *db = NULL;
  char *zErr = NULL;
  if (sqlite3_open(db_path, &db) != SQLITE_OK) fail_msg("%s: cannot reopen: %s", r->what, sqlite3_errmsg(db));
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, extension, NULL, &zErr) != SQLITE_OK)
    fail_msg("%s: cannot load: %s", r->what, zErr);
  static result got[TABLES], want;
  read_table(db, "kv", KV_OPTIONS, &got[KV], r->what);
  read_table(db, "q", Q_OPTIONS, &got[Q], r->what);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
  for (int i = 0; i < r->nw; i++) {
    int same = 1;
    for (int t = 0; t < TABLES && same; t++) {
      check all = { C_ALL, t, { 0 }, 0, 0 };
      expected(&all, &r->w[i], &want);
      same = result_equal(&got[t], &want);
    }
    if (same) { failed_committed += r->w[i].guessed; return; }
  }
  fail_msg("%s: reopened, the stores hold %d and %d rows, in no state the model allows (%d states)",
           r->what, got[KV].n, got[Q].n, r->nw);
}

/* Run the workload with allocation n failing (and with sticky every later
** one; n = 0: none), then check. Returns 1 if an allocation failed. */
static int run_with_fault(long n, int sticky) {
  static wrun r;
  char what[80];
  snprintf(what, sizeof what, "allocation %ld%s", n, sticky ? " and after" : "");
  memset(&r, 0, sizeof r);
  r.what = what;
  r.nw = 1;
  fresh_dir();
  fa_arm(n, sticky);
  for (r.step = 0; r.step < NSTEPS; r.step++) {
    const step *s = &workload[r.step];
    if (skipped(&r, s)) { r.last_ok = 0; continue; }
    r.last_ok = run_step(&r, s) == SQLITE_OK;
  }
  int met = fa_failed() > 0;
  workload_calls = fa_load(&fa_calls);
  fa_disarm();
  r.step = NSTEPS - 1;
  do_close(&r);
  if (!met && r.failed) fail_msg("%s: %d steps failed though no allocation failed", what, r.failed);
  check_no_leak(what);
  check_reopened(&r);
  check_no_leak(what);
  runs++;
  faults_met += met;
  return met;
}

/* Allocations the workload makes when nothing fails. */
static long workload_allocations(void) {
  run_with_fault(0, 0);
  runs--;
  return workload_calls;
}

static int setup(void **state) {
  (void)state;
  root_dir = tu_mkdtemp();
  assert_int_not_equal(asprintf(&run_dir, "%s/run", root_dir), -1);
  assert_int_not_equal(asprintf(&db_path, "%s/main.db", run_dir), -1);
  assert_int_equal(mkdir(run_dir, 0755), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(root_dir);
  free(root_dir);
  free(run_dir);
  free(db_path);
  return 0;
}

/* ==== 7. The first load in a process =================================== */
/*
** When the entry point of an extension fails, SQLite unloads the library
** (dlclose). What persistmap registered before the failure must not be left
** pointing into unmapped code, nor to freed memory. Each N runs in a child
** process that has not loaded persistmap.so yet (the test runs before the
** sweep loads it).
*/

/* In the child: load with allocation n failing, then again from SQL
** (SELECT load_extension(...), which fails halfway even with memory: SQLite
** does not let a running statement replace the functions), use every
** function that may have been registered, close. 0: checked, 2: no
** allocation failed, 1: failure. */
static int first_load_child(long n, int sticky) {
  sqlite3 *db = NULL;
  char *zErr = NULL;
  long blocks = fa_live();
  sqlite3_int64 bytes = sqlite3_memory_used();
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  sqlite3_enable_load_extension(db, 1);
  fa_arm(n, sticky);
  int rc = sqlite3_load_extension(db, extension, NULL, &zErr);
  int met = fa_failed() > 0;
  fa_disarm();
  sqlite3_free(zErr);
  if (!met && rc != SQLITE_OK) { fprintf(stderr, "the load failed though no allocation failed\n"); return 1; }
  char *zSql = sqlite3_mprintf("SELECT load_extension(%Q)", extension);
  if (!zSql) return 1;
  fa_arm(n, sticky);          /* again, from SQL: SQLite refuses to replace a function while a */
  sqlite3_exec(db, zSql, NULL, NULL, NULL);   /* statement runs, so this load fails halfway */
  fa_disarm();
  sqlite3_free(zSql);
  static const char *const uses[] = {   /* every function that may have been registered */
    "SELECT persistmap_version()", "SELECT persistmap_hash(1)", "SELECT persistmap_debug()",
    "SELECT persistmap_sync('t')", "SELECT persistmap_sync('t', 1)", "SELECT persistmap_stats('t')",
    "SELECT persistmap_check('t')", "SELECT persistmap_recover('t')", "SELECT persistmap_shrink('t')",
    "SELECT persistmap_last_key()", "SELECT persistmap_allow_any_path(0)",
  };
  for (size_t i = 0; i < sizeof uses / sizeof *uses; i++) sqlite3_exec(db, uses[i], NULL, NULL, NULL);
  sqlite3_exec(db, "CREATE VIRTUAL TABLE temp.t USING persistmap(path='x', mode='readonly'); "
                   "DROP TABLE temp.t", NULL, NULL, NULL);
  if (sqlite3_close(db) != SQLITE_OK) { fprintf(stderr, "close failed\n"); return 1; }
  if (fa_live() != blocks || sqlite3_memory_used() != bytes) {
    fprintf(stderr, "%ld blocks, %lld bytes leaked\n", fa_live() - blocks,
            (long long)(sqlite3_memory_used() - bytes));
    return 1;
  }
  return met ? 0 : 2;
}

/* For N = 1.. until the load meets no failure, once and sticky: a child
** loads with allocation N failing; it must exit cleanly. */
static void test_first_load_fails(void **state) {
  (void)state;
  for (int sticky = 0; sticky < 2; sticky++)
    for (long n = 1;; n++) {
      fflush(NULL);
      pid_t pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {                 /* cmocka's handlers would go on running tests here */
        static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
        _exit(first_load_child(n, sticky));
      }
      int status;
      assert_int_equal(waitpid(pid, &status, 0), pid);
      if (!WIFEXITED(status))
        fail_msg("first load, allocation %ld%s: the child died of signal %d", n, sticky ? " and after" : "",
                 WTERMSIG(status));
      if (WEXITSTATUS(status) == 2) break;
      if (WEXITSTATUS(status) != 0)
        fail_msg("first load, allocation %ld%s: the child failed (its report is above)", n,
                 sticky ? " and after" : "");
      first_loads++;
    }
}

/* The sweep: N from 1 with a stride (1 under PM_SOAK, with an offset that
** moves so that strided runs do not all hit the same call of a loop),
** once and sticky, until a run meets no failure. */
static void test_sqlite_nomem(void **state) {
  (void)state;
  baseline_bytes = -1;
  workload_allocations();                      /* warms SQLite up ... */
  set_baseline();                              /* ... and sets the baseline */
  long total = workload_allocations();
  const char *quick = getenv("PM_NOMEM_RUNS");
  long per_mode = quick && atol(quick) > 0 ? atol(quick) : QUICK_RUNS;
  long stride = getenv("PM_SOAK") ? 1 : total / per_mode + 1;
  double t0 = now_s();
  for (int sticky = 0; sticky < 2; sticky++)
    for (long k = 0;; k++)
      if (!run_with_fault(1 + k * stride + (k * 7) % stride, sticky)) break;
  printf("sqlite allocation failures: %ld runs of the workload (N = 1..%ld, stride %ld, once and "
         "from N on), %ld met their fault (errors: %ld SQLITE_NOMEM, %ld others; %ld failed writes "
         "found committed), %.1f s; %ld failed first loads\n", runs, total, stride, faults_met,
         nomem_errors, other_errors, failed_committed, now_s() - t0, first_loads);
}

int main(int argc, char **argv) {
  exact_heap_count(argv);
  const char *env = getenv("PM_EXTENSION");
  if (argc > 1) extension = argv[1];
  else if (env && *env) extension = env;
  if (install_allocator() != 0) {
    fprintf(stderr, "test_sqlite_nomem: SQLite refused the allocator\n");
    return 1;
  }
  tu_filter_from_env();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_first_load_fails),         /* first: nothing is loaded yet */
    cmocka_unit_test_setup_teardown(test_sqlite_nomem, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  sqlite3_shutdown();
  return failed;
}
