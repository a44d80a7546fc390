/*
** example.c - an application with persistmap linked in statically.
**
**   make static
**   cc -Iext -o example example.c libpersistmap.a -lsqlite3 -lm -pthread
**   ./example DIR
**
** It registers persistmap with sqlite3_auto_extension, then a second
** automatic extension of its own: both must reach every connection, which
** holds only if persistmap's entry point returns SQLITE_OK when linked in
** (SQLITE_OK_LOAD_PERMANENTLY would stop SQLite from running the automatic
** extensions after it). Then it uses a table in DIR/app.db, closes, reopens
** and reads it again. No sqlite3_load_extension anywhere: nothing is loaded
** at run time. Prints 'static example: ok' or the first failure.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "persistmap.h"

static void fail(sqlite3 *db, const char *what) {
  fprintf(stderr, "static example: %s failed: %s\n", what, db ? sqlite3_errmsg(db) : "");
  exit(1);
}

/* Run sql; with out, copy the first column of the last row into it. */
static void run(sqlite3 *db, const char *sql, char *out, size_t n) {
  sqlite3_stmt *stmt;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) fail(db, sql);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const unsigned char *z = sqlite3_column_text(stmt, 0);
    if (out) snprintf(out, n, "%s", z ? (const char *)z : "NULL");
  }
  if (rc != SQLITE_DONE) fail(db, sql);
  sqlite3_finalize(stmt);
}

static void expect(sqlite3 *db, const char *sql, const char *want) {
  char got[512] = "";
  run(db, sql, got, sizeof got);
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "static example: %s\n  gave '%s', expected '%s'\n", sql, got, want);
    exit(1);
  }
}

/* A second automatic extension, registered after persistmap. */
static void marker(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_text(ctx, "marker loaded", -1, SQLITE_STATIC);
}

static int marker_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  (void)pzErrMsg; (void)pApi;
  return sqlite3_create_function(db, "example_marker", 0, SQLITE_UTF8, NULL, marker, NULL, NULL);
}

static sqlite3 *open_db(const char *path) {
  sqlite3 *db = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK) fail(db, "sqlite3_open");
  return db;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/app.db", argv[1]);

  /* Called directly, the linked-in entry point answers SQLITE_OK. */
  sqlite3 *db = open_db(":memory:");
  char *zErr = NULL;
  int rc = sqlite3_persistmap_init(db, &zErr, NULL);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "static example: sqlite3_persistmap_init returned %d, not SQLITE_OK (%s)\n", rc,
            zErr ? zErr : "");
    return 1;
  }
  sqlite3_close(db);

  /* [readme] */
  sqlite3_auto_extension((void (*)(void))sqlite3_persistmap_init);
  /* [/readme] */
  sqlite3_auto_extension((void (*)(void))marker_init);

  db = open_db(path);
  expect(db, "SELECT example_marker()", "marker loaded");
  expect(db, "SELECT persistmap_version()", PERSISTMAP_VERSION);
  expect(db, "SELECT json_extract(persistmap_debug(), '$.linkage')", "static");
  run(db, "CREATE VIRTUAL TABLE kv USING persistmap()", NULL, 0);
  run(db, "INSERT INTO kv VALUES ('v:int', 42), ('v:blob', x'00ff01'), ('v:null', NULL)", NULL, 0);
  run(db, "BEGIN; INSERT INTO kv VALUES ('tx:rollback', 1); ROLLBACK", NULL, 0);
  expect(db, "SELECT group_concat(key, ',') FROM (SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key)",
         "v:blob,v:int,v:null");
  if (sqlite3_exec(db, "INSERT INTO kv VALUES ('v:int', 0)", NULL, NULL, NULL) != SQLITE_CONSTRAINT ||
      strncmp(sqlite3_errmsg(db), "persistmap: key 'v:int' already exists", 38) != 0) {
    fail(db, "a duplicate key's error");
  }
  sqlite3_close(db);

  db = open_db(path);
  expect(db, "SELECT count(*) FROM kv", "3");
  expect(db, "SELECT quote(value) FROM kv WHERE key = 'v:blob'", "X'00FF01'");
  expect(db, "SELECT example_marker()", "marker loaded");
  char debug[512];
  run(db, "SELECT persistmap_debug()", debug, sizeof debug);
  sqlite3_close(db);

  printf("%s\nstatic example: ok\n", debug);
  return 0;
}
