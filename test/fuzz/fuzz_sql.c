/*
** fuzz_sql.c - libFuzzer target: arbitrary SQL against persistmap tables.
**
** persistmap is linked in (-DSQLITE_CORE) and registered with
** sqlite3_auto_extension; SQLite is Debian's libsqlite3. Each input gets a
** fresh directory (under TMPDIR) holding main.db with three tables: kv and
** q (persistmap, sync=off; q keeps no values in memory) and t (an ordinary
** table), a few rows in each. The input is run as SQL, statement by
** statement, then the connection is closed and a new one checks every
** store (persistmap_check must say 'ok': SQL alone can never damage one).
**
** The input may do anything SQL can inside that directory, and nothing
** outside it: an authorizer refuses ATTACH, PRAGMA, virtual tables in the
** temp schema (where any path is allowed) and persistmap_allow_any_path;
** load_extension is off; statements naming VACUUM are not run. Limits keep
** each input small: 100 KB strings and blobs, a budget of virtual-machine
** steps, files of at most 16 MiB (beyond, writes fail with EFBIG). A result of SQLITE_CORRUPT or
** SQLITE_INTERNAL aborts: persistmap must never report either from SQL.
*/
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include "persistmap.h"

static char *root;       /* TMPDIR/pmfuzzsql.XXXXXX */
static char *work;       /* root/w: each input's directory */
static char *dbpath;     /* work/main.db */
static long budget;      /* progress callbacks left for this input */
static int verbose;      /* PM_FUZZ_VERBOSE: print each statement's result */

static const char *SETUP =
    "PRAGMA temp_store = MEMORY;"
    "CREATE VIRTUAL TABLE kv USING persistmap(sync=off, busy_timeout=0);"
    "CREATE VIRTUAL TABLE q USING persistmap(sync='off', cache_size=0, busy_timeout='0');"
    "CREATE TABLE t(a PRIMARY KEY, b);"
    "INSERT INTO kv VALUES (1, 'one'), (2.5, x'00ff'), ('k', NULL), (x'6b', 3.25), ('big', zeroblob(3000));"
    "INSERT INTO q(value) VALUES ('a'), ('b'), ('c');"
    "INSERT INTO t VALUES (1, 'x'), ('k', 2);";

static void die(const char *what, sqlite3 *db) {
  fprintf(stderr, "fuzz_sql: %s%s%s\n", what, db ? ": " : "", db ? sqlite3_errmsg(db) : "");
  abort();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

static void rmtree(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }
static void cleanup(void) { if (root) rmtree(root); }

static int authorize(void *ctx, int action, const char *a, const char *b, const char *db,
                     const char *trigger) {
  (void)ctx; (void)trigger;
  switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
    case SQLITE_PRAGMA:
      return SQLITE_DENY;
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
      /* A temp table may keep its store anywhere: not from here. */
      return db && strcmp(db, "main") != 0 ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_FUNCTION:
      if (b && (strcasecmp(b, "persistmap_allow_any_path") == 0 || strcasecmp(b, "load_extension") == 0))
        return SQLITE_DENY;
      return SQLITE_OK;
    default:
      (void)a;
      return SQLITE_OK;
  }
}

static int progress(void *ctx) {
  (void)ctx;
  return --budget < 0;
}

static sqlite3 *open_db(void) {
  sqlite3 *db;
  if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
    die("open", db);
  sqlite3_extended_result_codes(db, 0);
  return db;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  verbose = getenv("PM_FUZZ_VERBOSE") != NULL;
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/pmfuzzsql.XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpl)) die("mkdtemp", NULL);
  root = strdup(tmpl);
  work = malloc(strlen(root) + 4);
  sprintf(work, "%s/w", root);
  dbpath = malloc(strlen(work) + 16);
  sprintf(dbpath, "%s/main.db", work);
  atexit(cleanup);
  /* Files written past 16 MiB fail with EFBIG instead of filling the disk
  ** (SIGXFSZ is ignored again before each input: libFuzzer handles it). */
  struct rlimit rl = { 16u << 20, 16u << 20 };
  setrlimit(RLIMIT_FSIZE, &rl);
  sqlite3_auto_extension((void (*)(void))sqlite3_persistmap_init);
  return 0;
}

/* Does text name VACUUM (VACUUM INTO writes a file anywhere)? */
static int names_vacuum(const char *s) {
  for (; *s; s++)
    if (strncasecmp(s, "vacuum", 6) == 0) return 1;
  return 0;
}

static void check_rc(sqlite3 *db, int rc, const char *sql) {
  int primary = rc & 0xff;
  if (primary == SQLITE_CORRUPT || primary == SQLITE_INTERNAL) {
    fprintf(stderr, "statement: %.200s\n", sql);
    die("a statement failed with SQLITE_CORRUPT or SQLITE_INTERNAL", db);
  }
}

/* Run every statement of sql; errors end a statement, not the input. */
static void run(sqlite3 *db, const char *sql) {
  const char *tail = sql;
  while (tail && *tail && budget > 0) {
    sqlite3_stmt *st = NULL;
    const char *next = NULL;
    int rc = sqlite3_prepare_v2(db, tail, -1, &st, &next);
    if (rc != SQLITE_OK) {
      check_rc(db, rc, tail);
      if (verbose) fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
      if (!next || next == tail) break;
      tail = next;
      continue;
    }
    if (st) {
      const char *text = sqlite3_sql(st);
      if (!names_vacuum(text)) {
        int rows = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && ++rows < 10000) {
          for (int i = 0; i < sqlite3_column_count(st); i++) {
            sqlite3_column_bytes(st, i);
            sqlite3_column_blob(st, i);
          }
        }
        check_rc(db, rc, text);
        if (verbose) fprintf(stderr, "%d %s <- %.100s\n", rc, rc > 1 && rc < 100 ? sqlite3_errmsg(db) : "", text);
      }
      sqlite3_finalize(st);
    }
    tail = next;
  }
}

/* The stores of every persistmap table left must check clean. */
static void check_stores(void) {
  sqlite3 *db = open_db();
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
                             "sql LIKE 'CREATE VIRTUAL TABLE%USING persistmap%'", -1, &st, NULL))
    die("listing the tables", db);
  char names[16][256];
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW && n < 16)
    snprintf(names[n++], sizeof names[0], "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  for (int i = 0; i < n; i++) {
    if (sqlite3_prepare_v2(db, "SELECT persistmap_check(?)", -1, &st, NULL)) die("check", db);
    sqlite3_bind_text(st, 1, names[i], -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const char *r = (const char *)sqlite3_column_text(st, 0);
      if (!r || strcmp(r, "ok") != 0) {
        fprintf(stderr, "persistmap_check('%s'): %s\n", names[i], r ? r : "NULL");
        die("a store written through SQL does not check clean", NULL);
      }
    } else {
      check_rc(db, rc, "SELECT persistmap_check(...)");
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 20000) return 0;
  signal(SIGXFSZ, SIG_IGN);
  char *sql = malloc(size + 1);
  memcpy(sql, data, size);
  sql[size] = 0;
  rmtree(work);
  if (mkdir(work, 0755) < 0) die("mkdir", NULL);
  sqlite3 *db = open_db();
  char *err = NULL;
  if (sqlite3_exec(db, SETUP, NULL, NULL, &err) != SQLITE_OK) die(err, NULL);
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 100000);
  sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 20000);
  sqlite3_limit(db, SQLITE_LIMIT_COMPOUND_SELECT, 8);
  sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 64);
  sqlite3_limit(db, SQLITE_LIMIT_VDBE_OP, 20000);
  sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 100);
  sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 8);
  sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_set_authorizer(db, authorize, NULL);
  budget = 2000;
  sqlite3_progress_handler(db, 100, progress, NULL);
  run(db, sql);
  sqlite3_progress_handler(db, 0, NULL, NULL);
  if (sqlite3_close(db) != SQLITE_OK) die("close", db);
  check_stores();
  free(sql);
  return 0;
}
