/*
** functions.c - the SQL functions of persistmap.
**
**   persistmap_version()                  the library's version, e.g. '0.1.0'
**   persistmap_debug()                    the build and the SQLite it runs on,
**                                         a JSON object
**   persistmap_hash(x)                    XXH3-128 of x as a 16-byte blob
**   persistmap_sync(t [, timeout_ms])     make t's commits durable: 1, or 0
**                                         if the timeout ran out first
**   persistmap_stats(t)                   the engine's figures, a JSON object
**   persistmap_check(t)                   'ok', or the problems found
**   persistmap_recover(t)                 salvage a damaged store (JSON report)
**   persistmap_shrink(t)                  compact the log (JSON summary)
**   persistmap_last_key()                 the last key an INSERT of a NULL key
**                                         assigned on this connection
**   persistmap_allow_any_path(on)         let this connection's tables keep
**                                         their stores outside the database's
**                                         directory
**
** t names a persistmap table, 'name' or 'schema.name'; the table need not
** have been used on this connection before. Functions with side effects (or
** that open a store, which may repair it) are SQLITE_DIRECTONLY, so a view
** or trigger in a database file cannot call them; version and hash are
** INNOCUOUS and DETERMINISTIC, debug INNOCUOUS.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <stddef.h>
#include <string.h>
#include <xxhash.h>

#include "store.h"
#include "vtab.h"

/* The table named by arg, or NULL after reporting why not. */
static pm_vtab *fn_table(sqlite3_context *ctx, sqlite3_value *arg) {
  pm_err err;
  pm_vtab *vt = NULL;
  const char *zName = (const char *)sqlite3_value_text(arg);
  if (!zName && sqlite3_value_type(arg) != SQLITE_NULL) {   /* its text could not be made */
    sqlite3_result_error_nomem(ctx);
    return NULL;
  }
  if (!zName) {
    sqlite3_result_error(ctx, "persistmap: a table name is needed", -1);
    return NULL;
  }
  int rc = pm_table_find(sqlite3_user_data(ctx), zName, &vt, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return NULL; }
  return vt;
}

/* The open store of the table named by arg, or NULL after an error. */
static pm_store *fn_store(sqlite3_context *ctx, sqlite3_value *arg, pm_vtab **pVt) {
  pm_err err;
  pm_store *s = NULL;
  pm_vtab *vt = fn_table(ctx, arg);
  if (!vt) return NULL;
  int rc = pm_table_store(vt, &s, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return NULL; }
  if (pVt) *pVt = vt;
  return s;
}

/* Return an engine-allocated text (JSON or report) and free it. */
static void fn_result_text(sqlite3_context *ctx, char *z) {
  if (!z) { sqlite3_result_null(ctx); return; }
  sqlite3_result_text(ctx, z, -1, SQLITE_TRANSIENT);
  pm_free(z);
}

/* persistmap_version(): the library's version string. */
static void fnVersion(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_text(ctx, pm_version(), -1, SQLITE_STATIC);
}

/*
** persistmap_hash(x): XXH3-128 of x's bytes (a blob as is, anything else
** as its UTF-8 text) in canonical (big-endian) order. NULL gives NULL. Fast
** content keys; not collision-resistant against an adversary.
*/
static void fnHash(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  int type = sqlite3_value_type(argv[0]);
  if (type == SQLITE_NULL) return;
  const void *p = type == SQLITE_BLOB ? sqlite3_value_blob(argv[0])
                                      : (const void *)sqlite3_value_text(argv[0]);
  size_t n = (size_t)sqlite3_value_bytes(argv[0]);
  if (!p && n) { sqlite3_result_error_nomem(ctx); return; }
  XXH128_canonical_t digest;
  XXH128_canonicalFromHash(&digest, XXH3_128bits(p, n));
  sqlite3_result_blob(ctx, digest.digest, (int)sizeof digest.digest, SQLITE_TRANSIENT);
}

/*
** persistmap_sync(t [, timeout_ms]): make everything committed to t so far
** durable. Without a timeout (or a negative one) it waits; with one it
** returns 0 if the fsync could not finish in time (it goes on in the
** background), 1 when done.
*/
static void fnSync(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_err err;
  pm_store *s = fn_store(ctx, argv[0], NULL);
  if (!s) return;
  sqlite3_int64 timeout = -1;
  if (argc > 1 && sqlite3_value_type(argv[1]) != SQLITE_NULL) timeout = sqlite3_value_int64(argv[1]);
  int rc = pm_store_sync(s, timeout < 0 ? -1 : timeout, &err);
  if (rc == PM_TIMEOUT) sqlite3_result_int(ctx, 0);
  else if (rc == PM_OK) sqlite3_result_int(ctx, 1);
  else pm_result_error(ctx, rc, &err);
}

/* Append z to s as a JSON string. */
static void json_string(sqlite3_str *s, const char *z) {
  sqlite3_str_appendchar(s, 1, '"');
  for (const unsigned char *p = (const unsigned char *)z; *p; p++) {
    if (*p == '"' || *p == '\\') sqlite3_str_appendf(s, "\\%c", *p);
    else if (*p < 0x20) sqlite3_str_appendf(s, "\\u%04x", *p);
    else sqlite3_str_appendchar(s, 1, (char)*p);
  }
  sqlite3_str_appendchar(s, 1, '"');
}

/* How this copy was linked, and by which compiler. */
#ifdef SQLITE_CORE
#define PM_LINKAGE "static"
#else
#define PM_LINKAGE "loadable"
#endif
#if defined(__clang__)
#define PM_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define PM_COMPILER "gcc " __VERSION__
#else
#define PM_COMPILER "unknown"
#endif

/* The compile-time options worth knowing when a build misbehaves. */
#define PM_STR_(x) #x
#define PM_STR(x) PM_STR_(x)
static const char *const azBuildOption[] = {
#ifdef SQLITE_CORE
  "SQLITE_CORE",
#endif
#ifdef __OPTIMIZE__
  "optimized",
#endif
#ifdef NDEBUG
  "NDEBUG",
#endif
#ifdef __SANITIZE_ADDRESS__
  "address-sanitizer",
#endif
#ifdef __PIC__
  "pic",
#endif
  "xxhash-" PM_STR(XXH_VERSION_MAJOR) "." PM_STR(XXH_VERSION_MINOR) "." PM_STR(XXH_VERSION_RELEASE),
};

/*
** persistmap_debug(): what this copy of persistmap is, as a JSON object:
** its version, the SQLite it was compiled against (sqlite_built) and the one
** it runs on (sqlite_running, with its number, source id and threading
** mode), loadable or static, the compiler and the build options.
*/
static void fnDebug(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "{\"version\":");
  json_string(s, pm_version());
  sqlite3_str_appendf(s, ",\"sqlite_built\":\"%s\",\"sqlite_built_number\":%d", SQLITE_VERSION,
                      SQLITE_VERSION_NUMBER);
  sqlite3_str_appendall(s, ",\"sqlite_running\":");
  json_string(s, sqlite3_libversion());
  sqlite3_str_appendf(s, ",\"sqlite_running_number\":%d,\"sqlite_running_source_id\":",
                      sqlite3_libversion_number());
  json_string(s, sqlite3_sourceid());
  sqlite3_str_appendf(s, ",\"sqlite_threadsafe\":%d,\"linkage\":\"%s\",\"compiler\":",
                      sqlite3_threadsafe(), PM_LINKAGE);
  json_string(s, PM_COMPILER);
  sqlite3_str_appendall(s, ",\"build_options\":[");
  for (size_t i = 0; i < sizeof azBuildOption / sizeof azBuildOption[0]; i++) {
    if (i) sqlite3_str_appendchar(s, 1, ',');
    json_string(s, azBuildOption[i]);
  }
  sqlite3_str_appendall(s, "]}");
  char *z = sqlite3_str_finish(s);
  if (!z) { sqlite3_result_error_nomem(ctx); return; }
  sqlite3_result_text(ctx, z, -1, sqlite3_free);
}

/* The counters of pm_stats, in the order the README documents them. */
static const struct { const char *name; size_t off; } aCounter[] = {
#define COUNTER(f) { #f, offsetof(pm_stats, f) }
  COUNTER(keys), COUNTER(live_bytes), COUNTER(log_bytes), COUNTER(segments),
  COUNTER(records), COUNTER(unsynced_bytes), COUNTER(last_seq), COUNTER(commits),
  COUNTER(fsyncs), COUNTER(dropped_bytes), COUNTER(index_bytes), COUNTER(index_versions),
  COUNTER(cache_capacity), COUNTER(cache_bytes), COUNTER(cache_entries),
  COUNTER(cache_hits), COUNTER(cache_misses), COUNTER(cache_evictions),
  COUNTER(catchups), COUNTER(shrinks), COUNTER(shrink_reclaimed_bytes),
  COUNTER(shrink_last_ms), COUNTER(shrink_last_duration_us),
#undef COUNTER
};

/* Every field of st as one JSON object. */
static char *stats_json(const pm_stats *st) {
  static const char *syncName[] = { "off", "normal", "full" };
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, "{\"path\":");
  json_string(s, st->path);
  sqlite3_str_appendall(s, ",\"store_id\":");
  json_string(s, st->store_id);
  sqlite3_str_appendf(s, ",\"sync\":\"%s\",\"readonly\":%s",
                      st->sync >= 0 && st->sync <= 2 ? syncName[st->sync] : "?",
                      st->readonly ? "true" : "false");
  for (size_t i = 0; i < sizeof aCounter / sizeof aCounter[0]; i++) {
    uint64_t v;
    memcpy(&v, (const char *)st + aCounter[i].off, sizeof v);
    if (v == UINT64_MAX) {            /* an unlimited cache_capacity */
      sqlite3_str_appendf(s, ",\"%s\":-1", aCounter[i].name);
    } else {
      sqlite3_str_appendf(s, ",\"%s\":%llu", aCounter[i].name, (unsigned long long)v);
    }
  }
  if (st->next_int_key) sqlite3_str_appendf(s, ",\"next_int_key\":%lld", (long long)st->next_int_key);
  else sqlite3_str_appendall(s, ",\"next_int_key\":null");       /* none left */
  sqlite3_str_appendf(s, ",\"shrink_running\":%s,\"last_error_code\":\"%s\"",
                      st->shrink_running ? "true" : "false", pm_code_name(st->last_error_code));
  sqlite3_str_appendall(s, ",\"last_error\":");
  json_string(s, st->last_error);
  sqlite3_str_appendchar(s, 1, '}');
  return sqlite3_str_finish(s);
}

/* persistmap_stats(t): a JSON object of every figure the engine keeps. */
static void fnStats(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_err err;
  pm_stats st;
  (void)argc;
  pm_store *s = fn_store(ctx, argv[0], NULL);
  if (!s) return;
  int rc = pm_store_stats(s, &st, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return; }
  char *z = stats_json(&st);
  if (!z) { sqlite3_result_error_nomem(ctx); return; }
  sqlite3_result_text(ctx, z, -1, sqlite3_free);
}

/*
** persistmap_check(t): verify every record's checksum and the index.
** Returns 'ok' or the problems, one per line. A store so damaged that it
** does not open reports why (persistmap_recover salvages it).
*/
static void fnCheck(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_err err;
  pm_store *s = NULL;
  char *report = NULL;
  (void)argc;
  pm_vtab *vt = fn_table(ctx, argv[0]);
  if (!vt) return;
  int rc = pm_table_store(vt, &s, &err);
  if (rc == PM_CORRUPT) {
    sqlite3_result_text(ctx, err.msg, -1, SQLITE_TRANSIENT);
    return;
  }
  if (rc == PM_OK) rc = pm_store_check(s, &report, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return; }
  fn_result_text(ctx, report);
}

/*
** persistmap_recover(t): salvage a damaged store in place, keeping every
** valid committed transaction. Returns a JSON report of what was dropped.
*/
static void fnRecover(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_err err;
  char *report = NULL;
  (void)argc;
  pm_vtab *vt = fn_table(ctx, argv[0]);
  if (!vt) return;
  int rc = pm_table_recover(vt, &report, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return; }
  fn_result_text(ctx, report);
}

/* persistmap_shrink(t): compact the log now. Returns a JSON summary. */
static void fnShrink(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_err err;
  pm_vtab *vt = NULL;
  char *summary = NULL;
  (void)argc;
  pm_store *s = fn_store(ctx, argv[0], &vt);
  if (!s) return;
  if (pm_table_in_write(vt)) {
    pm_err_set(&err, PM_MISUSE, "cannot shrink '%s' inside a transaction that writes it",
               pm_table_name(vt));
    pm_result_error(ctx, PM_MISUSE, &err);
    return;
  }
  int rc = pm_store_shrink(s, &summary, &err);
  if (rc != PM_OK) { pm_result_error(ctx, rc, &err); return; }
  fn_result_text(ctx, summary);
}

/* persistmap_last_key(): the last key an INSERT of a NULL key assigned on
** this connection, or NULL. */
static void fnLastKey(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3_int64 k;
  (void)argc; (void)argv;
  if (pm_conn_last_key(sqlite3_user_data(ctx), &k)) sqlite3_result_int64(ctx, k);
}

/*
** persistmap_allow_any_path(on): with on true, tables of this connection
** may keep their stores anywhere (absolute paths, '..', symlinks out of the
** database's directory). Only the application can call it (DIRECTONLY).
** Returns the setting now in force.
*/
static void fnAllowAnyPath(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  pm_conn *conn = sqlite3_user_data(ctx);
  (void)argc;
  pm_conn_set_any_path(conn, sqlite3_value_int(argv[0]));
  sqlite3_result_int(ctx, pm_conn_any_path(conn));
}

int pm_functions_register(sqlite3 *db, pm_conn *conn) {
  static const int pure = SQLITE_UTF8 | SQLITE_INNOCUOUS | SQLITE_DETERMINISTIC;
  static const int direct = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  static const struct {
    const char *name;
    int nArg;
    int flags;
    void (*xFunc)(sqlite3_context *, int, sqlite3_value **);
  } aFunc[] = {
    { "persistmap_version", 0, pure, fnVersion },
    { "persistmap_hash", 1, pure, fnHash },
    { "persistmap_debug", 0, SQLITE_UTF8 | SQLITE_INNOCUOUS, fnDebug },
    { "persistmap_sync", 1, direct, fnSync },
    { "persistmap_sync", 2, direct, fnSync },
    { "persistmap_stats", 1, direct, fnStats },
    { "persistmap_check", 1, direct, fnCheck },
    { "persistmap_recover", 1, direct, fnRecover },
    { "persistmap_shrink", 1, direct, fnShrink },
    { "persistmap_last_key", 0, SQLITE_UTF8, fnLastKey },
    { "persistmap_allow_any_path", 1, direct, fnAllowAnyPath },
  };
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof aFunc / sizeof aFunc[0]; i++) {
    pm_conn_ref(conn);                 /* SQLite drops it with the function, or at once on failure */
    rc = sqlite3_create_function_v2(db, aFunc[i].name, aFunc[i].nArg, aFunc[i].flags, conn,
                                    aFunc[i].xFunc, NULL, NULL, pm_conn_unref);
  }
  return rc;
}
