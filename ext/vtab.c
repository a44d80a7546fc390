/*
** vtab.c - the persistmap virtual table.
**
**   CREATE VIRTUAL TABLE kv USING persistmap(path='kv.pmap', sync='full');
**   INSERT INTO kv VALUES ('user:1', json('{"name":"ada"}'));
**   SELECT value FROM kv WHERE key = 'user:1';
**
** A persistmap table is a window on one store of the engine (store.h): a
** persistent map from keys to values kept in a directory of log segments,
** with every key in an in-memory index. This file translates between the
** two worlds:
**
**   - the table's declaration, the arguments of CREATE VIRTUAL TABLE, and
**     where the store may live on disk (section 2 and 3);
**   - SQL values and the engine's keys and values (section 4);
**   - creating, connecting, dropping and renaming tables (section 5);
**   - query plans: a WHERE clause becomes a hash lookup, a batch of
**     lookups, or a scan in sequence order filtered on the keys in memory
**     (section 6 and 7);
**   - INSERT, UPDATE and DELETE with SQLite's conflict modes (section 8);
**   - SQLite's transaction protocol and the engine's transactions
**     (section 9).
**
** Laziness is a rule here. xConnect only parses and checks its arguments:
** it never touches the disk, so a table whose store is damaged, missing or
** misplaced can still be dropped, checked and recovered. The store opens
** at first use, and a write transaction begins at the first statement
** that reads or writes the table after SQLite announced a write (xBegin).
**
** Every error message starts with "persistmap: " and names what was wrong.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store.h"
#include "vtab.h"

/* The declared table: the key, its value, and the hidden sequence number. */
#define PM_DECLARATION \
  "CREATE TABLE x(key PRIMARY KEY, value, seq HIDDEN) WITHOUT ROWID"
enum { COL_KEY = 0, COL_VALUE = 1, COL_SEQ = 2 };

/* APIs newer than the oldest SQLite this file runs on are called only
** when the running library has them. */
#define HAVE_VTAB_IN() (sqlite3_libversion_number() >= 3038000)

/* ==== 1. Objects ========================================================= */

typedef struct pm_cursor pm_cursor;

/* What CREATE VIRTUAL TABLE said, after parsing. */
typedef struct table_opts {
  char *path;            /* the path option as written, or NULL */
  int readonly;          /* mode='readonly' */
  pm_options eng;        /* what pm_store_open gets */
} table_opts;

/* Per-connection state, the module's client data. */
struct pm_conn {
  sqlite3 *db;
  int any_path;              /* persistmap_allow_any_path(1) was called */
  int has_last_key;
  sqlite3_int64 last_key;    /* last key assigned by an INSERT of NULL */
  pm_vtab *tables;           /* every connected persistmap table */
  int refs;                  /* held by the module and by each SQL function */
};

/* One persistmap table on one connection. */
struct pm_vtab {
  sqlite3_vtab base;
  pm_conn *conn;
  sqlite3 *db;
  char *zSchema;         /* "main", "temp" or an attached name */
  char *zName;           /* the table's name */
  char *zCreator;        /* who this table is, as recorded in a manifest */
  char *zProblem;        /* why the table is unusable (found by xConnect) */
  table_opts opts;
  int readonly;          /* mode='readonly', a read-only database or file system */
  int utf8_db;           /* the database's encoding is UTF-8 (see text_bytes) */
  char *zFull;           /* absolute store path, symlinks not resolved */
  char *zCanon;          /* the same with symlinks resolved: what opens */
  pm_store *store;       /* NULL until first use */
  int in_write;          /* SQLite called xBegin: this is a write transaction */
  int sp_level;          /* highest savepoint SQLite opened, or -1 */
  pm_txn *txn;           /* the engine transaction, begun at first use */
  pm_cursor *cursors;    /* open cursors */
  pm_cursor *spare;      /* a closed cursor kept for the next xOpen */
  pm_vtab *next;         /* in conn->tables */
};

/* Fill the table's error message from an engine error and return the
** SQLite result code that fits it (SQLITE_NOMEM if the message cannot be
** allocated: an error must say what it is). */
static int vt_fail(pm_vtab *vt, int rc, const pm_err *err) {
  sqlite3_free(vt->base.zErrMsg);
  vt->base.zErrMsg = sqlite3_mprintf("persistmap: %s", err->msg);
  return vt->base.zErrMsg ? pm_sqlite_code(rc) : SQLITE_NOMEM;
}

/* Set the table's error message from a format and return code, or
** SQLITE_NOMEM if the message cannot be allocated. */
static int vt_error(pm_vtab *vt, int code, const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  char *z = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  sqlite3_free(vt->base.zErrMsg);
  vt->base.zErrMsg = z ? sqlite3_mprintf("persistmap: %z", z) : NULL;
  return vt->base.zErrMsg ? code : SQLITE_NOMEM;
}

/* Report an engine error as the result of a function or a column: the
** "persistmap: " message with the SQLite code that fits, or SQLite's own out
** of memory if the message cannot be allocated. Returns the code set. */
int pm_result_error(sqlite3_context *ctx, int pm_rc, const pm_err *err) {
  char *z = sqlite3_mprintf("persistmap: %s", err->msg);
  if (!z) { sqlite3_result_error_nomem(ctx); return SQLITE_NOMEM; }
  sqlite3_result_error(ctx, z, -1);
  sqlite3_result_error_code(ctx, pm_sqlite_code(pm_rc));
  sqlite3_free(z);
  return pm_sqlite_code(pm_rc);
}

/* The SQLite result code for an engine result code. */
int pm_sqlite_code(int pm_rc) {
  switch (pm_rc) {
    case PM_OK:         return SQLITE_OK;
    case PM_NOMEM:      return SQLITE_NOMEM;
    case PM_IOERR:      return SQLITE_IOERR;
    case PM_FULL:       return SQLITE_FULL;
    case PM_CORRUPT:    return SQLITE_CORRUPT;
    case PM_BUSY:       return SQLITE_BUSY;
    case PM_TIMEOUT:    return SQLITE_BUSY;
    case PM_READONLY:   return SQLITE_READONLY;
    case PM_CANTOPEN:   return SQLITE_CANTOPEN;
    case PM_TOOBIG:     return SQLITE_TOOBIG;
    case PM_CONSTRAINT: return SQLITE_CONSTRAINT;
    case PM_MISUSE:     return SQLITE_MISUSE;
    default:            return SQLITE_ERROR;
  }
}

/* ==== 2. Options ========================================================= */
/*
** Each argument after the module name is option=value. Values may be
** quoted with '...' or "..." or left bare. Names are matched without
** regard to case; unknown, repeated and malformed options are errors that
** name the option and the value.
*/

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A copy of the n bytes of z without surrounding quotes ('a''b' -> a'b). */
static char *opt_unquote(const char *z, int n) {
  char q = n >= 2 ? z[0] : 0;
  if ((q == '\'' || q == '"') && z[n - 1] == q) {
    char *out = sqlite3_malloc(n);
    if (!out) return NULL;
    int j = 0;
    for (int i = 1; i < n - 1; i++) {
      out[j++] = z[i];
      if (z[i] == q && z[i + 1] == q) i++;
    }
    out[j] = 0;
    return out;
  }
  return sqlite3_mprintf("%.*s", n, z);
}

/* A size: digits, optionally a unit B, KB, MB or GB (powers of 1024). A
** leading '-' is accepted; callers refuse what they cannot use. */
static int parse_size(const char *z, sqlite3_int64 *out) {
  static const struct { const char *unit; sqlite3_int64 mult; } units[] = {
    { "", 1 }, { "b", 1 }, { "kb", 1 << 10 }, { "mb", 1 << 20 }, { "gb", 1 << 30 },
  };
  int neg = (*z == '-');
  if (neg) z++;
  if (!is_digit(*z)) return 0;
  sqlite3_int64 v = 0;
  for (; is_digit(*z); z++) {
    if (v > (LLONG_MAX - 9) / 10) return 0;
    v = v * 10 + (*z - '0');
  }
  while (is_space(*z)) z++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (sqlite3_stricmp(z, units[i].unit) == 0) {
      if (v > LLONG_MAX / units[i].mult) return 0;
      *out = (neg ? -v : v) * units[i].mult;
      return 1;
    }
  }
  return 0;
}

/* A duration in milliseconds: digits, then ms (the default) or s. */
static int parse_duration(const char *z, sqlite3_int64 *ms) {
  sqlite3_int64 v = 0;
  if (!is_digit(*z)) return 0;
  for (; is_digit(*z); z++) {
    if (v > (LLONG_MAX - 9) / 10 / 1000) return 0;
    v = v * 10 + (*z - '0');
  }
  while (is_space(*z)) z++;
  if (*z == 0 || sqlite3_stricmp(z, "ms") == 0) { *ms = v; return 1; }
  if (sqlite3_stricmp(z, "s") == 0) { *ms = v * 1000; return 1; }
  return 0;
}

/* One parser per option: 1 if the value is good, 0 if not, -1 if out of
** memory. */
static int opt_path(const char *z, table_opts *o) {
  if (!*z) return 0;
  o->path = sqlite3_mprintf("%s", z);
  return o->path ? 1 : -1;
}
static int opt_cache_size(const char *z, table_opts *o) {
  sqlite3_int64 v;
  if (!parse_size(z, &v) || v < -1) return 0;
  o->eng.cache_size = v;
  return 1;
}
static int opt_sync(const char *z, table_opts *o) {
  static const char *names[] = { "off", "normal", "full" };
  for (int i = 0; i < 3; i++) {
    if (sqlite3_stricmp(z, names[i]) == 0) {
      o->eng.sync = i == 0 ? PM_SYNC_OFF : i == 1 ? PM_SYNC_NORMAL : PM_SYNC_FULL;
      return 1;
    }
  }
  return 0;
}
static int opt_sync_interval(const char *z, table_opts *o) {
  sqlite3_int64 v;
  if (!parse_duration(z, &v) || v < 1) return 0;
  o->eng.sync_interval_ms = (uint64_t)v;
  return 1;
}
static int opt_segment_size(const char *z, table_opts *o) {
  sqlite3_int64 v;
  if (!parse_size(z, &v) || v < 4096 || v > ((sqlite3_int64)1 << 40)) return 0;
  o->eng.segment_size = (uint64_t)v;
  return 1;
}
static int opt_auto_shrink(const char *z, table_opts *o) {
  char *end = NULL;
  if (!*z || is_space(*z)) return 0;
  double v = strtod(z, &end);
  if (*end || !isfinite(v) || v < 0 || (v > 0 && v < 1)) return 0;
  o->eng.auto_shrink = v;
  return 1;
}
static int opt_busy_timeout(const char *z, table_opts *o) {
  sqlite3_int64 v;
  if (!parse_duration(z, &v)) return 0;
  o->eng.busy_timeout_ms = (uint64_t)v;
  return 1;
}
static int opt_mode(const char *z, table_opts *o) {
  if (sqlite3_stricmp(z, "readonly") == 0) { o->readonly = 1; return 1; }
  if (sqlite3_stricmp(z, "readwrite") == 0) { o->readonly = 0; return 1; }
  return 0;
}

static const struct option_def {
  const char *name;
  int (*parse)(const char *zValue, table_opts *o);
} aOption[] = {
  { "path", opt_path },
  { "cache_size", opt_cache_size },
  { "sync", opt_sync },
  { "sync_interval", opt_sync_interval },
  { "segment_size", opt_segment_size },
  { "auto_shrink", opt_auto_shrink },
  { "busy_timeout", opt_busy_timeout },
  { "mode", opt_mode },
};

/* An option's problem: SQLITE_ERROR with the message z in *pzErr, or
** SQLITE_NOMEM if z could not be made. */
static int opt_problem(char **pzErr, char *z) {
  *pzErr = z;
  return z ? SQLITE_ERROR : SQLITE_NOMEM;
}

/* Split "name = value" into its two parts (the value unquoted). SQLITE_OK,
** SQLITE_ERROR with *pzErr, or SQLITE_NOMEM. */
static int opt_split(const char *zArg, char **pzName, char **pzValue, char **pzErr) {
  const char *z = zArg;
  while (is_space(*z)) z++;
  const char *zName = z;
  while (*z == '_' || is_digit(*z) || (*z >= 'a' && *z <= 'z') || (*z >= 'A' && *z <= 'Z')) z++;
  int nName = (int)(z - zName);
  while (is_space(*z)) z++;
  if (nName == 0 || *z != '=') {
    return opt_problem(pzErr, sqlite3_mprintf("expected option=value, got '%s'", zArg));
  }
  z++;
  while (is_space(*z)) z++;
  int n = (int)strlen(z);
  while (n > 0 && is_space(z[n - 1])) n--;
  *pzName = sqlite3_mprintf("%.*s", nName, zName);
  *pzValue = opt_unquote(z, n);
  return *pzName && *pzValue ? SQLITE_OK : SQLITE_NOMEM;
}

/* Apply one option=value argument. seen has a bit per option already
** given. SQLITE_OK, SQLITE_ERROR with *pzErr, or SQLITE_NOMEM. */
static int opt_apply(const char *zArg, table_opts *o, unsigned *seen, char **pzErr) {
  char *zName = NULL, *zValue = NULL;
  int rc = opt_split(zArg, &zName, &zValue, pzErr);
  size_t i, n = sizeof aOption / sizeof aOption[0];
  if (rc == SQLITE_OK) {
    for (i = 0; i < n && sqlite3_stricmp(zName, aOption[i].name) != 0; i++) {}
    if (i == n) {
      rc = opt_problem(pzErr, sqlite3_mprintf("unknown option '%s'", zName));
    } else if (*seen & (1u << i)) {
      rc = opt_problem(pzErr, sqlite3_mprintf("option '%s' given twice", aOption[i].name));
    } else {
      int good = aOption[i].parse(zValue, o);
      if (good < 0) rc = SQLITE_NOMEM;
      else if (!good) rc = opt_problem(pzErr, sqlite3_mprintf("bad value for %s: '%s'", aOption[i].name, zValue));
      else *seen |= 1u << i;
    }
  }
  sqlite3_free(zName);
  sqlite3_free(zValue);
  return rc;
}

/* Parse the arguments of CREATE VIRTUAL TABLE (argv[3] on). SQLITE_OK,
** SQLITE_ERROR with *pzErr (a message without the "persistmap: " prefix),
** or SQLITE_NOMEM. */
static int opts_parse(int argc, const char *const *argv, table_opts *o, char **pzErr) {
  unsigned seen = 0;
  int rc = SQLITE_OK;
  memset(o, 0, sizeof *o);
  pm_options_init(&o->eng);
  for (int i = 3; i < argc && rc == SQLITE_OK; i++) rc = opt_apply(argv[i], o, &seen, pzErr);
  return rc;
}

/* ==== 3. Where a store may live ========================================== */
/*
** A database file written by someone else can name any path in its schema,
** and SQLite connects its tables before anyone could check it. So a store
** must stay inside the directory of the database file that declares it:
** relative paths resolve there, and absolute paths, '..' and symlinks
** leading out are refused. The application lifts the rule for its own
** connection with persistmap_allow_any_path(1). A table in the temp schema
** or in an in-memory database can only come from the application itself,
** so any path is fine there (relative to the current directory); a
** database deserialized from bytes is untrusted like a file, and so is a
** database whose file name cannot be resolved.
*/

/* How a table's path is judged. */
typedef struct store_place {
  int trusted;           /* 0: no path at all without the opt-in */
  int confined;          /* 1: the store must stay inside zDir */
  char *zDir;            /* base of relative paths; canonical if confined */
  const char *zWhy;      /* why it is untrusted */
  int nomem;             /* a copy of a path could not be allocated */
} store_place;

/* True if the schema's pager runs on the in-memory VFS of sqlite3_deserialize. */
static int schema_is_memdb(sqlite3 *db, const char *zSchema) {
  sqlite3_vfs *pVfs = NULL;
  if (sqlite3_file_control(db, zSchema, SQLITE_FCNTL_VFS_POINTER, &pVfs) != SQLITE_OK) return 0;
  return pVfs && pVfs->zName && strcmp(pVfs->zName, "memdb") == 0;
}

/* A sqlite3_malloc'ed copy of z, which is freed (free()); NULL for NULL,
** and also, with *nomem set, when the copy cannot be allocated. */
static char *sqlite_copy(char *z, int *nomem) {
  char *out = z ? sqlite3_mprintf("%s", z) : NULL;
  if (z && !out) *nomem = 1;
  free(z);
  return out;
}

/* The current directory, sqlite3_malloc'ed, or NULL (*nomem: no memory). */
static char *current_dir(int *nomem) {
  return sqlite_copy(getcwd(NULL, 0), nomem);
}

/* The canonical directory of a file name, or NULL (*nomem: no memory). */
static char *dir_of_file(const char *zFile, int *nomem) {
  const char *slash = strrchr(zFile, '/');
  char *zDir = slash ? sqlite3_mprintf("%.*s", (int)(slash - zFile), zFile)
                     : sqlite3_mprintf(".");
  if (!zDir) { *nomem = 1; return NULL; }
  char *real = realpath(zDir[0] ? zDir : "/", NULL);
  sqlite3_free(zDir);
  return sqlite_copy(real, nomem);
}

/* Decide how this table's path is judged. */
static void place_of_table(pm_vtab *vt, store_place *pl) {
  memset(pl, 0, sizeof *pl);
  const char *zFile = NULL;
  if (sqlite3_stricmp(vt->zSchema, "temp") != 0) {
    if (schema_is_memdb(vt->db, vt->zSchema)) {
      pl->zWhy = "a database loaded from memory";
      pl->zDir = current_dir(&pl->nomem);
      return;
    }
    zFile = sqlite3_db_filename(vt->db, vt->zSchema);
  }
  if (!zFile || !zFile[0]) {           /* temp, or an in-memory database */
    pl->trusted = 1;
    pl->zDir = current_dir(&pl->nomem);
    return;
  }
  pl->zDir = dir_of_file(zFile, &pl->nomem);
  if (!pl->zDir) {
    pl->zWhy = "a database whose file name cannot be resolved";
    pl->zDir = current_dir(&pl->nomem);
    return;
  }
  pl->trusted = 1;
  pl->confined = 1;
}

/* True if a path has a ".." component. */
static int has_dotdot(const char *z) {
  for (const char *p = z; (p = strstr(p, "..")) != NULL; p += 2) {
    if ((p == z || p[-1] == '/') && (p[2] == 0 || p[2] == '/')) return 1;
  }
  return 0;
}

/* The default store path: '<database file>-<table>.pmap', with '/' and
** '%' in the table name escaped so the store stays beside the file. */
static char *default_path(const char *zFile, const char *zTable) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendf(s, "%s-", zFile);
  for (const char *p = zTable; *p; p++) {
    if (*p == '/' || *p == '%') sqlite3_str_appendf(s, "%%%02X", (unsigned char)*p);
    else sqlite3_str_appendchar(s, 1, *p);
  }
  sqlite3_str_appendall(s, ".pmap");
  return sqlite3_str_finish(s);
}

/* True if the component of z that follows z[cut] ('/') exists as a link
** that could not be resolved (a dangling symlink, which a later mkdir or
** open could follow anywhere). */
static int dangling_link(char *z, size_t cut) {
  struct stat st;
  size_t end = cut + 1;
  while (z[end] && z[end] != '/') end++;
  char save = z[end];
  z[end] = 0;
  int exists = lstat(z, &st) == 0;
  z[end] = save;
  return exists;
}

/* zFull (absolute) with its longest existing prefix replaced by its
** canonical form (symlinks resolved); the missing rest is kept as is.
** NULL if nothing resolves, or (*pNomem set) if out of memory. */
static char *canonical_path(const char *zFull, int *pDangling, int *pNomem) {
  char *z = sqlite3_mprintf("%s", zFull);
  char *out = NULL;
  if (!z) { *pNomem = 1; return NULL; }
  size_t cut = strlen(z);
  while (cut > 1 && z[cut - 1] == '/') z[--cut] = 0;
  *pDangling = 0;
  for (;;) {                           /* z[0..cut) is the prefix tried */
    char save = z[cut];
    z[cut] = 0;
    char *real = realpath(cut ? z : "/", NULL);
    z[cut] = save;
    if (real) {
      if (save) *pDangling = dangling_link(z, cut);
      out = sqlite3_mprintf("%s%s", strcmp(real, "/") == 0 ? "" : real, z + cut);
      free(real);
      if (!out) *pNomem = 1;
      break;
    }
    if (cut == 0) break;
    do cut--; while (cut > 0 && z[cut] != '/');
  }
  sqlite3_free(z);
  return out;
}

/* True if zPath is inside directory zDir (and not zDir itself). */
static int inside_dir(const char *zPath, const char *zDir) {
  size_t n = strlen(zDir);
  if (n == 1 && zDir[0] == '/') return zPath[0] == '/' && zPath[1] != 0;
  return strncmp(zPath, zDir, n) == 0 && zPath[n] == '/' && zPath[n + 1] != 0;
}

/* The absolute store path as configured: the path option resolved
** against pl->zDir, or the default beside the database file. */
static int full_path(pm_vtab *vt, const store_place *pl, char **out, pm_err *err) {
  const char *zFile = sqlite3_db_filename(vt->db, vt->zSchema);
  if (vt->opts.path) {
    *out = vt->opts.path[0] == '/' ? sqlite3_mprintf("%s", vt->opts.path)
                                   : sqlite3_mprintf("%s/%s", pl->zDir, vt->opts.path);
  } else if (sqlite3_stricmp(vt->zSchema, "temp") == 0 || !zFile || !zFile[0]) {
    return pm_err_set(err, PM_ERROR,
                      "table '%s' needs a path option: its database has no file", vt->zName);
  } else {
    *out = default_path(zFile, vt->zName);
  }
  return *out ? PM_OK : pm_err_set(err, PM_NOMEM, "out of memory");
}

/* Refuse a path leading out of the database's directory. */
static int refuse_path(const char *zPath, pm_err *err) {
  return pm_err_set(err, PM_CANTOPEN,
                    "path '%s' leads outside the database's directory "
                    "(persistmap_allow_any_path(1) on this connection allows it)", zPath);
}

/* Work out where this table's store is (vt->zFull, vt->zCanon), checking
** that it may live there. Touches nothing on disk. */
static int vt_resolve_path(pm_vtab *vt, pm_err *err) {
  store_place pl;
  char *zFull = NULL, *zCanon = NULL;
  int dangling = 0, nomem = 0, rc = PM_OK;
  int any = vt->conn->any_path;
  const char *zShown = vt->opts.path ? vt->opts.path : "(default)";
  place_of_table(vt, &pl);
  if (pl.nomem) {
    rc = pm_err_set(err, PM_NOMEM, "out of memory");
  } else if (!pl.zDir) {
    rc = pm_err_set(err, PM_CANTOPEN, "cannot resolve the current directory");
  } else if (!pl.trusted && !any) {
    rc = pm_err_set(err, PM_CANTOPEN,
                    "table '%s' is in %s, where store paths are not trusted "
                    "(persistmap_allow_any_path(1) on this connection allows them)",
                    vt->zName, pl.zWhy);
  } else if (pl.confined && !any && vt->opts.path && has_dotdot(vt->opts.path)) {
    rc = refuse_path(zShown, err);
  } else if ((rc = full_path(vt, &pl, &zFull, err)) == PM_OK) {
    zCanon = canonical_path(zFull, &dangling, &nomem);
    if (!zCanon) {
      rc = nomem ? pm_err_set(err, PM_NOMEM, "out of memory")
                 : pm_err_set(err, PM_CANTOPEN, "cannot resolve path '%s'", zFull);
    } else if (pl.confined && !any && (dangling || !inside_dir(zCanon, pl.zDir))) {
      rc = refuse_path(zShown, err);
    }
  }
  if (rc == PM_OK) {
    sqlite3_free(vt->zFull);
    sqlite3_free(vt->zCanon);
    vt->zFull = zFull;
    vt->zCanon = zCanon;
  } else {
    sqlite3_free(zFull);
    sqlite3_free(zCanon);
  }
  sqlite3_free(pl.zDir);
  return rc;
}

/* 1 if the file system holding path (or its nearest existing parent) is
** mounted read-only, 0 if not, -1 if out of memory. */
static int fs_readonly(const char *zPath) {
  struct statvfs sv;
  char *z = sqlite3_mprintf("%s", zPath);
  int ro = 0;
  if (!z) return -1;
  while (z[0]) {
    if (statvfs(z, &sv) == 0) { ro = (sv.f_flag & ST_RDONLY) != 0; break; }
    char *slash = strrchr(z, '/');
    if (!slash) break;
    if (slash == z) { slash[1] = 0; if (statvfs(z, &sv) == 0) ro = (sv.f_flag & ST_RDONLY) != 0; break; }
    *slash = 0;
  }
  sqlite3_free(z);
  return ro;
}

/* Make a directory's entries durable. */
static void fsync_dir_of(const char *zPath) {
  const char *slash = strrchr(zPath, '/');
  char zDir[PATH_MAX];             /* no allocation: this must not be skipped */
  if (!slash || (size_t)(slash - zPath) >= sizeof zDir) return;
  memcpy(zDir, zPath, (size_t)(slash - zPath));
  zDir[slash - zPath] = 0;
  int fd = open(zDir[0] ? zDir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) { (void)fsync(fd); close(fd); }
}

/* ==== 4. Keys and values ================================================= */
/*
** Keys follow SQL's '=' under BINARY collation: INTEGER 1 and REAL 1.0 are
** one key (a REAL with an exact 64-bit integer value becomes an INTEGER,
** -0.0 included), TEXT '1' and INTEGER 1 are two. Values keep their type
** and bytes exactly: a REAL as its 8 bytes, empty TEXT, empty BLOB and
** NULL apart.
*/

/* A key with room for the bytes of a number, optionally owning a copy. */
typedef struct keybuf {
  pm_key key;
  uint8_t num[8];
  uint8_t small[48];     /* a copy of short text or blob bytes, or */
  uint8_t *own;          /*   a sqlite3_malloc'ed copy of longer ones */
} keybuf;

/* The bytes of a TEXT value in UTF-8. In a UTF-8 database every value that
** reaches the table is held in UTF-8 already (SQLite converts bound and
** computed values to the database's encoding), so its bytes can be taken as
** they are: sqlite3_value_text would first copy them to add a terminator,
** which costs more than the rest of a lookup's key handling. */
static const void *text_bytes(sqlite3_value *v, int utf8_db) {
  return utf8_db ? sqlite3_value_blob(v) : sqlite3_value_text(v);
}

static const uint8_t empty_bytes[1] = { 0 };

/* If d holds an exact 64-bit integer, store it in *out and return 1. */
static int real_as_int(double d, sqlite3_int64 *out) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 0;
  sqlite3_int64 i = (sqlite3_int64)d;
  if ((double)i != d) return 0;
  *out = i;
  return 1;
}

/* The key for an SQL value. Returns 0 for NULL (no key). With copy, text
** and blob bytes are copied so the key outlives the value; -1 on OOM. */
static int key_from_value(sqlite3_value *v, keybuf *kb, int copy, int utf8_db) {
  sqlite3_int64 i;
  double d;
  const void *p;
  kb->own = NULL;
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      kb->key = pm_key_int(sqlite3_value_int64(v), kb->num);
      return 1;
    case SQLITE_FLOAT:
      d = sqlite3_value_double(v);
      if (real_as_int(d, &i)) { kb->key = pm_key_int(i, kb->num); return 1; }
      memcpy(&i, &d, 8);
      pm_put_u64(kb->num, (uint64_t)i);
      kb->key.type = PM_REAL; kb->key.len = 8; kb->key.data = kb->num;
      return 1;
    case SQLITE_TEXT:
      p = text_bytes(v, utf8_db);
      kb->key.type = PM_TEXT;
      break;
    case SQLITE_BLOB:
      p = sqlite3_value_blob(v);
      kb->key.type = PM_BLOB;
      break;
    default:
      return 0;
  }
  kb->key.len = (uint32_t)sqlite3_value_bytes(v);
  if (!p || kb->key.len == 0) p = empty_bytes;
  if (copy && kb->key.len) {
    uint8_t *to = kb->small;
    if (kb->key.len > sizeof kb->small && !(to = kb->own = sqlite3_malloc64(kb->key.len))) return -1;
    memcpy(to, p, kb->key.len);
    p = to;
  }
  kb->key.data = p;
  return 1;
}

static void keybuf_free(keybuf *kb) {
  sqlite3_free(kb->own);
  kb->own = NULL;
}

/* True if two keys are the same key. */
static int key_equal(const pm_key *a, const pm_key *b) {
  return a->type == b->type && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static double key_real(const pm_key *k) {
  uint64_t u = pm_get_u64(k->data);
  double d;
  memcpy(&d, &u, 8);
  return d;
}

/* Whether text of len bytes at p can go to SQLite as a C string: followed
** by a 0 byte (the caller knows) and without one inside. SQLite then marks
** its copy terminated and need not grow it when asked for a C string. */
static int text_is_cstring(const uint8_t *p, uint32_t len) {
  return len < 0x7fffffff && !memchr(p, 0, len);
}

/* Return key k as the result of an SQL function or column; terminated:
** a text key's bytes are followed by a 0 byte. */
static void key_result(sqlite3_context *ctx, const pm_key *k, int terminated) {
  switch (k->type) {
    case PM_INTEGER: sqlite3_result_int64(ctx, (sqlite3_int64)pm_get_u64(k->data)); break;
    case PM_REAL:    sqlite3_result_double(ctx, key_real(k)); break;
    case PM_TEXT:
      if (terminated && text_is_cstring(k->data, k->len))
        sqlite3_result_text(ctx, (const char *)k->data, -1, SQLITE_TRANSIENT);
      else
        sqlite3_result_text64(ctx, (const char *)k->data, k->len, SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    default:         sqlite3_result_blob64(ctx, k->data, k->len, SQLITE_TRANSIENT); break;
  }
}

/* A key as a message shows it: 42, 1.5, 'text', x'0a0b' (shortened). */
static char *key_describe(const pm_key *k) {
  switch (k->type) {
    case PM_INTEGER: return sqlite3_mprintf("%lld", (sqlite3_int64)pm_get_u64(k->data));
    case PM_REAL:    return sqlite3_mprintf("%!.15g", key_real(k));
    case PM_TEXT: {
      int n = k->len > 60 ? 60 : (int)k->len;
      return sqlite3_mprintf("'%.*q%s'", n, (const char *)k->data, k->len > 60 ? "..." : "");
    }
    default: {
      sqlite3_str *s = sqlite3_str_new(NULL);
      sqlite3_str_appendall(s, "x'");
      for (uint32_t i = 0; i < k->len && i < 32; i++) sqlite3_str_appendf(s, "%02x", k->data[i]);
      sqlite3_str_appendall(s, k->len > 32 ? "...'" : "'");
      return sqlite3_str_finish(s);
    }
  }
}

/* A value's bytes as the engine stores them. */
typedef struct valbytes {
  uint8_t type;
  const void *p;
  uint32_t n;
  uint8_t num[8];
} valbytes;

/* The stored form of an SQL value: every type kept exactly. */
static int value_from_sql(sqlite3_value *v, valbytes *out, int utf8_db) {
  out->type = (uint8_t)sqlite3_value_type(v);   /* SQLite's numbers are PM_'s */
  out->p = empty_bytes;
  out->n = 0;
  if (out->type == PM_INTEGER) {
    pm_put_u64(out->num, (uint64_t)sqlite3_value_int64(v));
    out->p = out->num; out->n = 8;
  } else if (out->type == PM_REAL) {
    double d = sqlite3_value_double(v);
    uint64_t u;
    memcpy(&u, &d, 8);
    pm_put_u64(out->num, u);
    out->p = out->num; out->n = 8;
  } else if (out->type == PM_TEXT || out->type == PM_BLOB) {
    const void *p = out->type == PM_TEXT ? text_bytes(v, utf8_db) : sqlite3_value_blob(v);
    sqlite3_int64 n = sqlite3_value_bytes(v);
    if (!p && n > 0) return SQLITE_NOMEM;
    if (p) out->p = p;
    out->n = (uint32_t)n;
  }
  return SQLITE_OK;
}

/* Release the reference held by SQLite on a value handed over without copy. */
static void value_release(void *p) {
  pm_value_unref((pm_value *)((char *)p - offsetof(pm_value, data)));
}

/* Return a stored value as an SQL result. A reference-counted value's text
** or blob is handed to SQLite by reference, not copied: the value is
** immutable, and SQLite drops its reference when done; text without an
** embedded NUL goes with its terminator (pm_value has one), so that SQLite
** need not copy it to add one when the application asks for a C string.
** Borrowed bytes (a scan's read-ahead buffer) are copied by SQLite. */
static void view_result(sqlite3_context *ctx, const pm_view *v) {
  switch (v->type) {
    case PM_NULL: sqlite3_result_null(ctx); return;
    case PM_INTEGER:
    case PM_REAL:
      if (v->len != 8) break;
      if (v->type == PM_INTEGER) sqlite3_result_int64(ctx, (sqlite3_int64)pm_get_u64(v->data));
      else { pm_key k = { PM_REAL, 8, v->data }; sqlite3_result_double(ctx, key_real(&k)); }
      return;
    case PM_TEXT:
      if (!v->ref)
        sqlite3_result_text64(ctx, (const char *)v->data, v->len, SQLITE_TRANSIENT, SQLITE_UTF8);
      else if (pm_value_ref(v->ref), text_is_cstring(v->data, v->len))
        sqlite3_result_text(ctx, (const char *)v->data, -1, value_release);
      else
        sqlite3_result_text64(ctx, (const char *)v->data, v->len, value_release, SQLITE_UTF8);
      return;
    case PM_BLOB:
      if (!v->ref) { sqlite3_result_blob64(ctx, v->data, v->len, SQLITE_TRANSIENT); return; }
      pm_value_ref(v->ref);
      sqlite3_result_blob64(ctx, v->data, v->len, value_release);
      return;
  }
  sqlite3_result_error(ctx, "persistmap: a stored value has a bad type or length", -1);
  sqlite3_result_error_code(ctx, SQLITE_CORRUPT);
}

/* ==== 5. Lifecycle: create, connect, drop, rename ======================== */

/* The creator recorded in a manifest: database file and table name. */
static char *make_creator(sqlite3 *db, const char *zSchema, const char *zTable) {
  const char *zFile = sqlite3_stricmp(zSchema, "temp") == 0 ? NULL
                                                             : sqlite3_db_filename(db, zSchema);
  return sqlite3_mprintf("%s#%s", zFile && zFile[0] ? zFile : ":memory:", zTable);
}

/* Open the table's store if it is not open: check where it is, then
** pm_store_open (creating it when create is set). */
static int vt_open_store(pm_vtab *vt, int create, pm_err *err) {
  if (vt->store) return PM_OK;
  if (vt->zProblem) return pm_err_set(err, PM_ERROR, "%s", vt->zProblem);
  int rc = vt_resolve_path(vt, err);
  if (rc != PM_OK) return rc;
  int ro = fs_readonly(vt->zCanon);
  if (ro < 0) return pm_err_set(err, PM_NOMEM, "out of memory");
  if (ro) vt->readonly = 1;
  pm_options o = vt->opts.eng;
  o.readonly = vt->readonly;
  o.create = create && !o.readonly;
  o.creator = vt->zCreator;
  return pm_store_open(vt->zCanon, &o, &vt->store, err);
}

/* Forget the engine transaction; cursors that read through it stop. */
static void vt_txn_ended(pm_vtab *vt);

/* Abort the engine transaction, if one began (its cursors stop first). */
static void vt_abort_txn(pm_vtab *vt) {
  pm_txn *txn = vt->txn;
  if (!txn) return;
  vt->txn = NULL;
  vt_txn_ended(vt);
  pm_txn_abort(txn);
}

/* Abort any transaction and close the store (errors go to the log). */
static void vt_close_store(pm_vtab *vt) {
  pm_err err;
  vt_abort_txn(vt);
  if (vt->store && pm_store_close(vt->store, &err) != PM_OK) {
    sqlite3_log(SQLITE_WARNING, "persistmap: closing %s: %s", vt->zCanon, err.msg);
  }
  vt->store = NULL;
}

/* Unlink from the connection's registry and free everything. */
static void vt_free(pm_vtab *vt) {
  sqlite3_free(vt->spare);
  vt_close_store(vt);
  for (pm_vtab **pp = &vt->conn->tables; *pp; pp = &(*pp)->next) {
    if (*pp == vt) { *pp = vt->next; break; }
  }
  sqlite3_free(vt->zSchema);
  sqlite3_free(vt->zName);
  sqlite3_free(vt->zCreator);
  sqlite3_free(vt->zProblem);
  sqlite3_free(vt->opts.path);
  sqlite3_free(vt->zFull);
  sqlite3_free(vt->zCanon);
  sqlite3_free(vt->base.zErrMsg);
  sqlite3_free(vt);
}

/* Whether the connection's text encoding is UTF-8 (every attached database
** shares the main one's). 0 when it cannot be told: text is then always
** taken through sqlite3_value_text, which converts. */
static int db_is_utf8(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int utf8 = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA encoding", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char *enc = sqlite3_column_text(st, 0);
    utf8 = enc && sqlite3_stricmp((const char *)enc, "UTF-8") == 0;
  }
  sqlite3_finalize(st);
  return utf8;
}

/* Build the table object shared by xCreate and xConnect. An error in the
** options is kept in vt->zProblem; the caller decides whether it is fatal. */
static int vt_new(sqlite3 *db, pm_conn *conn, int argc, const char *const *argv,
                  pm_vtab **out) {
  int rc = sqlite3_declare_vtab(db, PM_DECLARATION);
  if (rc != SQLITE_OK) return rc;
  pm_vtab *vt = sqlite3_malloc(sizeof *vt);
  if (!vt) return SQLITE_NOMEM;
  memset(vt, 0, sizeof *vt);
  vt->conn = conn;
  vt->db = db;
  vt->sp_level = -1;
  vt->zSchema = sqlite3_mprintf("%s", argv[1]);
  vt->zName = sqlite3_mprintf("%s", argv[2]);
  vt->zCreator = make_creator(db, argv[1], argv[2]);
  vt->next = conn->tables;
  conn->tables = vt;
  if (!vt->zSchema || !vt->zName || !vt->zCreator) { vt_free(vt); return SQLITE_NOMEM; }
  /* A bad option is the table's problem; running out of memory is not. */
  if (opts_parse(argc, argv, &vt->opts, &vt->zProblem) == SQLITE_NOMEM) {
    vt_free(vt);
    return SQLITE_NOMEM;
  }
  vt->readonly = vt->opts.readonly || sqlite3_db_readonly(db, vt->zSchema) == 1;
  vt->utf8_db = db_is_utf8(db);
  sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
  *out = vt;
  return SQLITE_OK;
}

/* xCreate's error: "persistmap: " and zMsg in *pzErr, and code; or
** SQLITE_NOMEM if the message cannot be allocated. */
static int create_error(char **pzErr, int code, const char *zMsg) {
  *pzErr = sqlite3_mprintf("persistmap: %s", zMsg);
  return *pzErr ? code : SQLITE_NOMEM;
}

/*
** xCreate: CREATE VIRTUAL TABLE. Parses the options (any error fails the
** statement), checks the path, and creates the store, or adopts the store
** already in that directory. The creator is recorded in a new store's
** manifest, so that DROP TABLE deletes only what this table created.
*/
static int pmCreate(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                    sqlite3_vtab **ppVtab, char **pzErr) {
  pm_vtab *vt = NULL;
  pm_err err;
  int prc, rc = vt_new(db, (pm_conn *)pAux, argc, argv, &vt);
  if (rc != SQLITE_OK) return rc;
  if (vt->zProblem) rc = create_error(pzErr, SQLITE_ERROR, vt->zProblem);
  else if ((prc = vt_open_store(vt, 1, &err)) != PM_OK) rc = create_error(pzErr, pm_sqlite_code(prc), err.msg);
  if (rc != SQLITE_OK) {
    vt_free(vt);
    return rc;
  }
  *ppVtab = &vt->base;
  return SQLITE_OK;
}

/*
** xConnect: a table already in the schema. Never fails because of its
** arguments or its store: a problem with the options is remembered and
** reported when the table is used, so a table that cannot work can still
** be dropped. Nothing on disk is touched.
*/
static int pmConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                     sqlite3_vtab **ppVtab, char **pzErr) {
  pm_vtab *vt = NULL;
  int rc = vt_new(db, (pm_conn *)pAux, argc, argv, &vt);
  if (rc != SQLITE_OK) return rc;
  (void)pzErr;
  *ppVtab = &vt->base;
  return SQLITE_OK;
}

/* xDisconnect: the connection lets go of the table; the store stays. */
static int pmDisconnect(sqlite3_vtab *pVtab) {
  vt_free((pm_vtab *)pVtab);
  return SQLITE_OK;
}

/* If zFull is a symlink (left by a rename), remove it. */
static void unlink_if_symlink(const char *zFull) {
  struct stat st;
  if (zFull && lstat(zFull, &st) == 0 && S_ISLNK(st.st_mode) && unlink(zFull) == 0) {
    fsync_dir_of(zFull);
  }
}

/* Delete the store if this table created it and nobody has it open;
** otherwise leave it in place and say so in the log. */
static void vt_delete_store(pm_vtab *vt) {
  pm_err err;
  int rc = vt_resolve_path(vt, &err);
  if (rc == PM_OK) rc = pm_store_destroy(vt->zCanon, vt->zCreator, NULL, &err);
  if (rc == PM_OK || rc == PM_NOTFOUND) {
    unlink_if_symlink(vt->zFull);
  } else {
    sqlite3_log(SQLITE_NOTICE, "persistmap: table %s dropped; its store %s stays: %s",
                vt->zName, vt->zCanon ? vt->zCanon : "", rc == PM_BUSY ? "in use"
                : rc == PM_CONSTRAINT ? "created by another table" : err.msg);
  }
}

/*
** xDestroy: DROP TABLE. SQLite calls it at once, even inside a transaction
** that may later roll back, and never calls the table again: so a DROP
** inside an explicit transaction is refused. SQLite shows no message of
** xDestroy's, only its code's text: SQLITE_LOCKED, "database table is
** locked", says best that the table cannot go now; the log gets the whole
** story. Otherwise the store is deleted if this table created it and no
** other connection or process has it open, and left in place (detached)
** if not. A table that could not be used (bad options, a refused path) or
** is read-only only detaches.
*/
static int pmDestroy(sqlite3_vtab *pVtab) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  if (!sqlite3_get_autocommit(vt->db)) {
    sqlite3_log(SQLITE_LOCKED, "persistmap: cannot drop table '%s' inside a transaction "
                "(its store would be deleted at once, with no way back); commit first", vt->zName);
    return SQLITE_LOCKED;
  }
  vt_close_store(vt);
  if (!vt->zProblem && !vt->readonly) vt_delete_store(vt);
  vt_free(vt);
  return SQLITE_OK;
}

/* The renamed table's default path becomes a symlink to the store's
** directory (which keeps its name), so the data stays with the table and
** engines that have the directory open are not disturbed. */
static int rename_default_path(pm_vtab *vt, const char *zNew, char **pzNewFull) {
  const char *zFile = sqlite3_db_filename(vt->db, vt->zSchema);
  char *zNewFull = default_path(zFile, zNew);
  char *zReal = zNewFull ? realpath(zNewFull, NULL) : NULL;
  struct stat st;
  int rc = SQLITE_OK;
  if (!zNewFull) return SQLITE_NOMEM;
  if (zReal && strcmp(zReal, vt->zCanon) == 0) {
    /* Back to the directory's own name: nothing to link. */
  } else if (lstat(zNewFull, &st) == 0) {
    rc = vt_error(vt, SQLITE_ERROR, "cannot rename table '%s' to '%s': '%s' already exists",
                  vt->zName, zNew, zNewFull);
  } else {
    const char *slash = strrchr(vt->zCanon, '/');
    if (symlink(slash ? slash + 1 : vt->zCanon, zNewFull) != 0) {
      rc = vt_error(vt, SQLITE_CANTOPEN, "cannot link '%s' to the store of '%s': %s",
                    zNewFull, vt->zName, strerror(errno));
    }
  }
  free(zReal);
  if (rc == SQLITE_OK) *pzNewFull = zNewFull;
  else sqlite3_free(zNewFull);
  return rc;
}

/* The manifest records the new name, so a later DROP still deletes. */
static int rename_creator(pm_vtab *vt, const char *zCreator) {
  pm_err err;
  int rc = vt_open_store(vt, 0, &err);
  if (rc == PM_OK) rc = pm_store_set_creator(vt->store, zCreator, &err);
  return rc == PM_OK ? SQLITE_OK : vt_fail(vt, rc, &err);
}

/*
** xRename: ALTER TABLE ... RENAME TO zNew keeps the table on its store. A
** store at the default path gets a link under the new default name (the
** directory keeps its name, see rename_default_path); the manifest's
** creator is updated. Refused while the table has uncommitted writes.
*/
static int pmRename(sqlite3_vtab *pVtab, const char *zNew) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_err err;
  char *zNewFull = NULL;
  char *zName = sqlite3_mprintf("%s", zNew);    /* allocated before anything changes */
  char *zCreator = make_creator(vt->db, vt->zSchema, zNew);
  int rc = zName && zCreator ? SQLITE_OK : SQLITE_NOMEM;
  if (vt->txn && pm_txn_dirty(vt->txn)) {
    rc = vt_error(vt, SQLITE_ERROR, "cannot rename table '%s' with uncommitted writes; "
                  "commit first", vt->zName);
  } else {
    vt_abort_txn(vt);
  }
  if (rc == SQLITE_OK && !vt->zProblem) {
    int prc = vt_resolve_path(vt, &err);
    if (prc != PM_OK) rc = vt_fail(vt, prc, &err);
    else if (!vt->opts.path) rc = rename_default_path(vt, zNew, &zNewFull);
  }
  if (rc == SQLITE_OK && !vt->zProblem && !vt->readonly) {
    rc = rename_creator(vt, zCreator);
    if (rc != SQLITE_OK && zNewFull) unlink_if_symlink(zNewFull);
  }
  if (rc != SQLITE_OK) {
    sqlite3_free(zName);
    sqlite3_free(zCreator);
    sqlite3_free(zNewFull);
    return rc;
  }
  if (zNewFull) {
    unlink_if_symlink(vt->zFull);
    fsync_dir_of(zNewFull);
    sqlite3_free(vt->zFull);
    vt->zFull = zNewFull;
  }
  sqlite3_free(vt->zName);
  sqlite3_free(vt->zCreator);
  vt->zName = zName;
  vt->zCreator = zCreator;
  /* SQLite connects the renamed table anew; this object may live on in
  ** cached statements, and must not keep the store busy (a DROP would
  ** then only detach). It reopens the store if it is used again. */
  if (!vt->cursors) vt_close_store(vt);
  return SQLITE_OK;
}

/* The table is usable, or its error message says why not. */
static int vt_check_usable(pm_vtab *vt) {
  if (vt->zProblem) return vt_error(vt, SQLITE_ERROR, "%s", vt->zProblem);
  return SQLITE_OK;
}

/* ==== 6. Query plans ===================================================== */
/*
** xBestIndex picks one of three plans:
**
**   lookup      key = ?: one hash lookup (unique, cost 1);
**   lookup-in   key IN (...): all values at once through sqlite3_vtab_in;
**   scan        every row in sequence order, optionally filtered on the
**               keys in memory (key ranges, GLOB and LIKE prefixes) before
**               any value is read, and bounded on seq.
**
** Lookups are exact and their constraints are omitted from SQLite's
** re-check; so are seq bounds. Key filters return a superset of the rows
** SQLite accepts (integer keys match GLOB '1*', LIKE folds case), so
** SQLite re-checks them. Scans come out in seq order, so ORDER BY seq
** (either direction) needs no sort. LIMIT and OFFSET are taken together,
** and only when SQLite re-checks nothing and sorts nothing.
**
** idxNum holds the PLAN_ bits below; the arguments of xFilter come in the
** order of the bits. idxStr describes the plan for EXPLAIN QUERY PLAN.
*/
#define PLAN_EQ          0x00001   /* argv: the key */
#define PLAN_IN          0x00002   /* argv: the IN list */
#define PLAN_KEY_LO      0x00004   /* argv: lower bound on key */
#define PLAN_KEY_LO_EQ   0x00008   /*   ... inclusive */
#define PLAN_KEY_HI      0x00010   /* argv: upper bound on key */
#define PLAN_KEY_HI_EQ   0x00020   /*   ... inclusive */
#define PLAN_GLOB        0x00040   /* argv: GLOB pattern */
#define PLAN_LIKE        0x00080   /* argv: LIKE pattern */
#define PLAN_SEQ_LO      0x00100   /* argv: lower bound on seq */
#define PLAN_SEQ_LO_EQ   0x00200
#define PLAN_SEQ_HI      0x00400   /* argv: upper bound on seq */
#define PLAN_SEQ_HI_EQ   0x00800
#define PLAN_SEQ_EQ      0x01000   /* argv: seq = ? */
#define PLAN_LIMIT       0x02000   /* argv: LIMIT */
#define PLAN_OFFSET      0x04000   /* argv: OFFSET */
#define PLAN_DESC        0x08000   /* newest first */
#define PLAN_VALUE       0x10000   /* the query reads value */

/* Indexes into aConstraint of the constraints a plan uses, in argv order. */
enum { S_EQ, S_KEY_LO, S_KEY_HI, S_GLOB, S_LIKE, S_SEQ_LO, S_SEQ_HI, S_SEQ_EQ,
       S_LIMIT, S_OFFSET, N_SLOT };

typedef struct plan {
  int slot[N_SLOT];      /* constraint index, or -1 */
  int flags;             /* PLAN_ bits */
  int is_in;             /* the EQ slot is an IN handled all at once */
  int leftover;          /* constraints SQLite will check itself */
} plan;

/* Is constraint i compared under BINARY collation? */
static int is_binary(sqlite3_index_info *info, int i) {
  const char *z = sqlite3_vtab_collation(info, i);
  return z == NULL || sqlite3_stricmp(z, "BINARY") == 0;
}

/* Put constraint i in slot s unless the slot is taken (then SQLite checks it). */
static void plan_take(plan *p, int s, int i, int flags) {
  if (p->slot[s] >= 0) { p->leftover++; return; }
  p->slot[s] = i;
  p->flags |= flags;
}

/* Give a slot's constraint back to SQLite. */
static void plan_drop(plan *p, int s, int flags) {
  if (p->slot[s] < 0) return;
  p->slot[s] = -1;
  p->flags &= ~flags;
  p->leftover++;
}

/* Classify a usable constraint on key. */
static void plan_key_constraint(plan *p, sqlite3_index_info *info, int i) {
  int op = info->aConstraint[i].op;
  int binary = is_binary(info, i);
  if (op == SQLITE_INDEX_CONSTRAINT_EQ && binary) {
    int in = HAVE_VTAB_IN() && sqlite3_vtab_in(info, i, -1);
    if (p->slot[S_EQ] >= 0 && p->is_in && !in) {   /* prefer = to IN */
      p->slot[S_EQ] = -1;
      p->leftover++;
    }
    if (p->slot[S_EQ] < 0) p->is_in = in;
    plan_take(p, S_EQ, i, 0);
  } else if ((op == SQLITE_INDEX_CONSTRAINT_GT || op == SQLITE_INDEX_CONSTRAINT_GE) && binary) {
    plan_take(p, S_KEY_LO, i, PLAN_KEY_LO | (op == SQLITE_INDEX_CONSTRAINT_GE ? PLAN_KEY_LO_EQ : 0));
  } else if ((op == SQLITE_INDEX_CONSTRAINT_LT || op == SQLITE_INDEX_CONSTRAINT_LE) && binary) {
    plan_take(p, S_KEY_HI, i, PLAN_KEY_HI | (op == SQLITE_INDEX_CONSTRAINT_LE ? PLAN_KEY_HI_EQ : 0));
  } else if (op == SQLITE_INDEX_CONSTRAINT_GLOB) {
    plan_take(p, S_GLOB, i, PLAN_GLOB);
  } else if (op == SQLITE_INDEX_CONSTRAINT_LIKE) {
    plan_take(p, S_LIKE, i, PLAN_LIKE);
  } else {
    p->leftover++;
  }
}

/* Classify a usable constraint on seq (numbers: collation does not matter). */
static void plan_seq_constraint(plan *p, sqlite3_index_info *info, int i) {
  int op = info->aConstraint[i].op;
  if (op == SQLITE_INDEX_CONSTRAINT_GT || op == SQLITE_INDEX_CONSTRAINT_GE) {
    plan_take(p, S_SEQ_LO, i, PLAN_SEQ_LO | (op == SQLITE_INDEX_CONSTRAINT_GE ? PLAN_SEQ_LO_EQ : 0));
  } else if (op == SQLITE_INDEX_CONSTRAINT_LT || op == SQLITE_INDEX_CONSTRAINT_LE) {
    plan_take(p, S_SEQ_HI, i, PLAN_SEQ_HI | (op == SQLITE_INDEX_CONSTRAINT_LE ? PLAN_SEQ_HI_EQ : 0));
  } else if (op == SQLITE_INDEX_CONSTRAINT_EQ && !(HAVE_VTAB_IN() && sqlite3_vtab_in(info, i, -1))) {
    plan_take(p, S_SEQ_EQ, i, PLAN_SEQ_EQ);
  } else {
    p->leftover++;
  }
}

/* Sort every constraint into the plan's slots. */
static void plan_classify(plan *p, sqlite3_index_info *info) {
  for (int s = 0; s < N_SLOT; s++) p->slot[s] = -1;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (!c->usable) { p->leftover++; continue; }
    if (c->op == SQLITE_INDEX_CONSTRAINT_LIMIT) plan_take(p, S_LIMIT, i, 0);
    else if (c->op == SQLITE_INDEX_CONSTRAINT_OFFSET) plan_take(p, S_OFFSET, i, 0);
    else if (c->iColumn == COL_KEY) plan_key_constraint(p, info, i);
    else if (c->iColumn == COL_SEQ) plan_seq_constraint(p, info, i);
    else p->leftover++;
  }
  if (p->slot[S_EQ] >= 0) {
    /* A lookup needs no key filter: leave those to SQLite. */
    plan_drop(p, S_KEY_LO, PLAN_KEY_LO | PLAN_KEY_LO_EQ);
    plan_drop(p, S_KEY_HI, PLAN_KEY_HI | PLAN_KEY_HI_EQ);
    plan_drop(p, S_GLOB, PLAN_GLOB);
    plan_drop(p, S_LIKE, PLAN_LIKE);
    p->flags |= p->is_in ? PLAN_IN : PLAN_EQ;
    if (p->is_in) sqlite3_vtab_in(info, p->slot[S_EQ], 1);
  } else if (p->slot[S_GLOB] >= 0 || p->slot[S_LIKE] >= 0) {
    /* SQLite derives key ranges from a GLOB or LIKE prefix; they leave out
    ** blob keys, which GLOB and LIKE match in newer SQLite. The prefix
    ** filter covers them: leave the ranges to SQLite. */
    plan_drop(p, S_KEY_LO, PLAN_KEY_LO | PLAN_KEY_LO_EQ);
    plan_drop(p, S_KEY_HI, PLAN_KEY_HI | PLAN_KEY_HI_EQ);
  }
}

/* ORDER BY seq [DESC] is served by scans and single lookups. */
static void plan_order(plan *p, sqlite3_index_info *info) {
  if (info->nOrderBy < 1 || info->aOrderBy[0].iColumn != COL_SEQ) return;
  if (p->flags & PLAN_IN) return;
  /* seq is unique, so later ORDER BY terms cannot change the order. */
  info->orderByConsumed = 1;
  if (info->aOrderBy[0].desc) p->flags |= PLAN_DESC;
}

/* LIMIT and OFFSET are consumed together, and only when nothing is left
** for SQLite to check or sort. Key filters are re-checked by SQLite. */
static void plan_limit(plan *p, sqlite3_index_info *info) {
  int rechecked = p->leftover || (p->flags & (PLAN_KEY_LO | PLAN_KEY_HI | PLAN_GLOB | PLAN_LIKE));
  int sorted = info->nOrderBy > 0 && !info->orderByConsumed;
  if (rechecked || sorted || p->slot[S_LIMIT] < 0) {
    p->slot[S_LIMIT] = p->slot[S_OFFSET] = -1;
    return;
  }
  p->flags |= PLAN_LIMIT;
  if (p->slot[S_OFFSET] >= 0) p->flags |= PLAN_OFFSET;
}

/* Estimated cost and rows of the chosen plan. */
static void plan_cost(plan *p, sqlite3_index_info *info) {
  double rows, cost;
  if (p->flags & PLAN_EQ) {
    rows = 1; cost = 1;
    info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
  } else if (p->flags & PLAN_IN) {
    rows = 10; cost = 10;
  } else {
    rows = 1000000;
    if (p->flags & (PLAN_KEY_LO | PLAN_KEY_HI)) rows /= 8;
    if (p->flags & (PLAN_GLOB | PLAN_LIKE)) rows /= 100;
    if (p->flags & (PLAN_SEQ_LO | PLAN_SEQ_HI)) rows /= 8;
    if (p->flags & PLAN_SEQ_EQ) rows = 1;
    /* The key filter runs in memory; values are read for matches only. */
    cost = 50000 + rows * ((p->flags & PLAN_VALUE) ? 4 : 1);
  }
  sqlite3_value *v = NULL;
  if ((p->flags & PLAN_LIMIT) && HAVE_VTAB_IN() &&
      sqlite3_vtab_rhs_value(info, p->slot[S_LIMIT], &v) == SQLITE_OK &&
      sqlite3_value_type(v) == SQLITE_INTEGER && sqlite3_value_int64(v) >= 0 &&
      (double)sqlite3_value_int64(v) < rows) {
    rows = (double)sqlite3_value_int64(v);
    if (!(p->flags & (PLAN_EQ | PLAN_IN))) cost = 10 + rows * 4;
  }
  info->estimatedRows = (sqlite3_int64)rows;
  info->estimatedCost = cost;
}

/* A readable description of the plan for EXPLAIN QUERY PLAN. */
static char *plan_describe(int f) {
  static const struct { int bit; const char *z; } parts[] = {
    { PLAN_KEY_LO, "key>" }, { PLAN_KEY_HI, "key<" }, { PLAN_GLOB, "glob" },
    { PLAN_LIKE, "like" }, { PLAN_SEQ_LO, "seq>" }, { PLAN_SEQ_HI, "seq<" },
    { PLAN_SEQ_EQ, "seq=" }, { PLAN_DESC, "desc" }, { PLAN_LIMIT, "limit" },
    { PLAN_OFFSET, "offset" },
  };
  sqlite3_str *s = sqlite3_str_new(NULL);
  sqlite3_str_appendall(s, (f & PLAN_EQ) ? "lookup" : (f & PLAN_IN) ? "lookup-in" : "scan");
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    if (!(f & parts[i].bit)) continue;
    sqlite3_str_appendf(s, " %s", parts[i].z);
    if ((parts[i].bit == PLAN_KEY_LO && (f & PLAN_KEY_LO_EQ)) ||
        (parts[i].bit == PLAN_KEY_HI && (f & PLAN_KEY_HI_EQ)) ||
        (parts[i].bit == PLAN_SEQ_LO && (f & PLAN_SEQ_LO_EQ)) ||
        (parts[i].bit == PLAN_SEQ_HI && (f & PLAN_SEQ_HI_EQ))) {
      sqlite3_str_appendchar(s, 1, '=');
    }
  }
  if (!(f & PLAN_VALUE)) sqlite3_str_appendall(s, " keys-only");
  return sqlite3_str_finish(s);
}

/*
** xBestIndex: choose the plan (see the top of this section), hand the
** used constraints to xFilter in slot order, and tell SQLite which it need
** not check again.
*/
static int pmBestIndex(sqlite3_vtab *pVtab, sqlite3_index_info *info) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  plan p;
  int rc = vt_check_usable(vt);
  if (rc != SQLITE_OK) return rc;
  memset(&p, 0, sizeof p);
  plan_classify(&p, info);
  if (info->colUsed & ((sqlite3_uint64)1 << COL_VALUE)) p.flags |= PLAN_VALUE;
  plan_order(&p, info);
  plan_limit(&p, info);
  int argv_index = 0;
  for (int s = 0; s < N_SLOT; s++) {
    int i = p.slot[s];
    if (i < 0) continue;
    info->aConstraintUsage[i].argvIndex = ++argv_index;
    /* Key filters return a superset: SQLite checks them again. */
    info->aConstraintUsage[i].omit = !(s == S_KEY_LO || s == S_KEY_HI || s == S_GLOB || s == S_LIKE);
  }
  plan_cost(&p, info);
  info->idxNum = p.flags;
  info->idxStr = plan_describe(p.flags);
  info->needToFreeIdxStr = 1;
  return SQLITE_OK;
}

/* ==== 7. Cursors ========================================================= */
/*
** A cursor reads either through the table's write transaction (when
** SQLite announced a write on it: the statement then sees the
** transaction's own writes, and a read-modify-write is atomic since the
** writer lock is held), or through a snapshot taken at xFilter (one
** consistent committed state for the scan, which never blocks writers).
*/

/* Bounds on seq, inclusive; empty when nothing can match. */
typedef struct seq_range {
  uint64_t lo, hi;
  int empty;
} seq_range;

/* What a scan keeps of the key constraints. */
typedef struct key_filter {
  keybuf lo, hi;         /* bounds (key.data NULL: none) */
  int lo_incl, hi_incl;
  char *prefix;          /* GLOB or LIKE literal prefix (NULL: none) */
  int nPrefix;
  int nocase;            /* LIKE: ASCII letters match either case */
} key_filter;

struct pm_cursor {
  sqlite3_vtab_cursor base;
  pm_cursor *next;       /* in the table's list of open cursors */
  int plan;              /* PLAN_ bits */
  pm_txn *txn;           /* reads through this transaction, or */
  pm_snap snap;          /*   this snapshot */
  int has_snap;
  int txn_gone;          /* the transaction ended while the cursor was open */
  int none;              /* an argument (a NULL bound) rules out every row */
  keybuf *keys;          /* lookups: the keys to look up */
  int nKeys, iKey, capKeys;   /* the array is kept from one xFilter to the next */
  keybuf key1;           /* keys' storage for a single key (the common case) */
  pm_iter *iter;         /* scans */
  key_filter filter;
  seq_range seq;
  int eof;
  pm_key key;            /* current row */
  int key_terminated;    /* its text is followed by a 0 byte */
  pm_meta meta;
  pm_value *value;       /* its value, once read */
  sqlite3_int64 limit;   /* rows still to return, or -1 */
  sqlite3_int64 offset;  /* rows still to skip */
};

static pm_vtab *cursor_vtab(pm_cursor *c) { return (pm_vtab *)c->base.pVtab; }

/* Fill the table's error message from a cursor's engine error. */
static int cursor_fail(pm_cursor *c, int rc, const pm_err *err) {
  return vt_fail(cursor_vtab(c), rc, err);
}

/* Drop everything a previous xFilter set up. */
static void cursor_reset(pm_cursor *c) {
  pm_vtab *vt = cursor_vtab(c);
  pm_value_unref(c->value);
  c->value = NULL;
  if (c->iter) { pm_iter_close(c->iter); c->iter = NULL; }
  if (c->has_snap) { pm_store_snap_end(vt->store, &c->snap); c->has_snap = 0; }
  for (int i = 0; i < c->nKeys; i++) keybuf_free(&c->keys[i]);
  c->nKeys = c->iKey = 0;
  keybuf_free(&c->filter.lo);
  keybuf_free(&c->filter.hi);
  sqlite3_free(c->filter.prefix);
  memset(&c->filter, 0, sizeof c->filter);
  c->txn = NULL;
  c->txn_gone = 0;
  c->eof = 1;
}

/* Begin the engine transaction if SQLite announced a write and it has not
** begun yet. A savepoint SQLite opened before is opened in it now. */
static int vt_txn(pm_vtab *vt, pm_err *err) {
  if (vt->txn) return PM_OK;
  int rc = vt_open_store(vt, 0, err);
  if (rc != PM_OK) return rc;
  if (vt->readonly) {
    return pm_err_set(err, PM_READONLY, "table '%s' is read-only", vt->zName);
  }
  rc = pm_txn_begin(vt->store, &vt->txn, err);
  if (rc == PM_OK && vt->sp_level >= 0) rc = pm_txn_savepoint(vt->txn, vt->sp_level, err);
  if (rc != PM_OK && vt->txn) { pm_txn_abort(vt->txn); vt->txn = NULL; }
  return rc;
}

static void vt_txn_ended(pm_vtab *vt) {
  for (pm_cursor *c = vt->cursors; c; c = c->next) {
    if (!c->txn) continue;
    if (c->iter) { pm_iter_close(c->iter); c->iter = NULL; }
    c->txn = NULL;
    c->txn_gone = 1;
  }
}

/* Decide what the cursor reads through: the write transaction, or a
** snapshot (always, for a read-only table: its writes fail in xUpdate, and
** its reads must go on working in the same transaction). */
static int cursor_attach(pm_cursor *c, pm_err *err) {
  pm_vtab *vt = cursor_vtab(c);
  int rc = vt->in_write && !vt->readonly ? vt_txn(vt, err) : vt_open_store(vt, 0, err);
  if (rc != PM_OK) return rc;
  if (vt->txn) { c->txn = vt->txn; return PM_OK; }
  if ((c->plan & (PLAN_EQ | PLAN_IN)) == PLAN_EQ) return PM_OK;   /* one lookup: atomic by itself */
  rc = pm_store_snap_begin(vt->store, &c->snap, err);
  c->has_snap = (rc == PM_OK);
  return rc;
}

/* Narrow r to the seqs that are >= t (lower) or <= t (upper). */
static void seq_apply(seq_range *r, int lower, sqlite3_int64 t) {
  if (lower) {
    if (t > 0 && (uint64_t)t > r->lo) r->lo = (uint64_t)t;
  } else if (t < 0) {
    r->empty = 1;
  } else if ((uint64_t)t < r->hi) {
    r->hi = (uint64_t)t;
  }
  if (r->lo > r->hi) r->empty = 1;
}

/* Narrow r by "seq op v", following SQL's comparison of an integer with a
** value of any type: NULL matches nothing, numbers compare as numbers, and
** every number is less than any text or blob. The bound becomes the least
** whole seq that satisfies a lower bound, or the greatest for an upper. */
static void seq_narrow(seq_range *r, int op, sqlite3_value *v) {
  int type = sqlite3_value_type(v);
  int gt = op == SQLITE_INDEX_CONSTRAINT_GT, ge = op == SQLITE_INDEX_CONSTRAINT_GE;
  int lt = op == SQLITE_INDEX_CONSTRAINT_LT;
  int lower = gt || ge;
  if (type == SQLITE_NULL) { r->empty = 1; return; }
  if (type == SQLITE_TEXT || type == SQLITE_BLOB) { if (lower) r->empty = 1; return; }
  if (type == SQLITE_INTEGER) {
    sqlite3_int64 i = sqlite3_value_int64(v);
    if ((gt && i == LLONG_MAX) || (lt && i == LLONG_MIN)) { r->empty = 1; return; }
    seq_apply(r, lower, gt ? i + 1 : lt ? i - 1 : i);
    return;
  }
  double x = sqlite3_value_double(v);
  double b = gt ? floor(x) + 1 : ge ? ceil(x) : lt ? ceil(x) - 1 : floor(x);
  if (b >= 9223372036854775808.0) { if (lower) r->empty = 1; return; }
  if (b < -9223372036854775808.0) { if (!lower) r->empty = 1; return; }
  seq_apply(r, lower, (sqlite3_int64)b);
}

/* The literal prefix of a GLOB or LIKE pattern, before its first wildcard
** (and, for LIKE, before any non-ASCII byte, whose case folding might not
** be ASCII's). */
static int filter_prefix(key_filter *f, sqlite3_value *v, int like) {
  const char *z = (const char *)sqlite3_value_text(v);
  if (!z) return sqlite3_value_type(v) == SQLITE_NULL ? 0 : -1;
  int n = 0;
  while (z[n]) {
    unsigned char ch = (unsigned char)z[n];
    if (like ? (ch == '%' || ch == '_' || ch >= 0x80) : (ch == '*' || ch == '?' || ch == '[')) break;
    n++;
  }
  if (f->prefix && f->nPrefix >= n) return 1;     /* keep the longer prefix */
  sqlite3_free(f->prefix);
  f->prefix = sqlite3_mprintf("%.*s", n, z);
  f->nPrefix = n;
  f->nocase = like;
  return f->prefix ? 1 : -1;
}

/* Read the arguments of a scan plan into the cursor's filters; c->none is
** set when no row can match (a NULL bound or pattern). */
static int cursor_scan_args(pm_cursor *c, sqlite3_value **argv, int *pArg) {
  int f = c->plan;
  key_filter *kf = &c->filter;
  if (f & PLAN_KEY_LO) {
    int r = key_from_value(argv[(*pArg)++], &kf->lo, 1, cursor_vtab(c)->utf8_db);
    if (r < 0) return SQLITE_NOMEM;
    if (r == 0) c->none = 1;
    kf->lo_incl = (f & PLAN_KEY_LO_EQ) != 0;
  }
  if (f & PLAN_KEY_HI) {
    int r = key_from_value(argv[(*pArg)++], &kf->hi, 1, cursor_vtab(c)->utf8_db);
    if (r < 0) return SQLITE_NOMEM;
    if (r == 0) c->none = 1;
    kf->hi_incl = (f & PLAN_KEY_HI_EQ) != 0;
  }
  for (int like = 0; like < 2; like++) {
    if (!(f & (like ? PLAN_LIKE : PLAN_GLOB))) continue;
    int r = filter_prefix(kf, argv[(*pArg)++], like);
    if (r < 0) return SQLITE_NOMEM;
    if (r == 0) c->none = 1;
  }
  return SQLITE_OK;
}

/* Read the seq bounds, LIMIT and OFFSET arguments. */
static void cursor_bound_args(pm_cursor *c, sqlite3_value **argv, int *pArg) {
  int f = c->plan;
  if (f & PLAN_SEQ_LO) seq_narrow(&c->seq, (f & PLAN_SEQ_LO_EQ) ? SQLITE_INDEX_CONSTRAINT_GE : SQLITE_INDEX_CONSTRAINT_GT, argv[(*pArg)++]);
  if (f & PLAN_SEQ_HI) seq_narrow(&c->seq, (f & PLAN_SEQ_HI_EQ) ? SQLITE_INDEX_CONSTRAINT_LE : SQLITE_INDEX_CONSTRAINT_LT, argv[(*pArg)++]);
  if (f & PLAN_SEQ_EQ) {
    sqlite3_value *v = argv[(*pArg)++];
    seq_narrow(&c->seq, SQLITE_INDEX_CONSTRAINT_GE, v);
    seq_narrow(&c->seq, SQLITE_INDEX_CONSTRAINT_LE, v);
  }
  if (f & PLAN_LIMIT) {
    sqlite3_value *v = argv[(*pArg)++];
    sqlite3_int64 n = sqlite3_value_int64(v);
    if (sqlite3_value_type(v) == SQLITE_INTEGER && n >= 0) c->limit = n;
  }
  if (f & PLAN_OFFSET) {
    sqlite3_int64 n = sqlite3_value_int64(argv[(*pArg)++]);
    c->offset = n > 0 ? n : 0;
  }
}

/* Point number keys at their own bytes again (after the array moved). */
static void keys_repoint(keybuf *a, int n) {
  for (int i = 0; i < n; i++) {
    if (a[i].key.type == PM_INTEGER || a[i].key.type == PM_REAL) a[i].key.data = a[i].num;
    else if (a[i].key.len && !a[i].own) a[i].key.data = a[i].small;
  }
}

/* Append a key to look up (NULLs match nothing and are skipped). */
static int cursor_add_key(pm_cursor *c, sqlite3_value *v) {
  if (c->nKeys == c->capKeys) {
    int cap = c->capKeys * 2;
    keybuf *a = sqlite3_realloc64(c->keys == &c->key1 ? NULL : c->keys, sizeof *a * (size_t)cap);
    if (!a) return SQLITE_NOMEM;
    if (c->keys == &c->key1) a[0] = c->key1;
    c->keys = a;
    c->capKeys = cap;
    keys_repoint(a, c->nKeys);
  }
  int r = key_from_value(v, &c->keys[c->nKeys], 1, cursor_vtab(c)->utf8_db);
  if (r > 0) c->nKeys++;
  return r < 0 ? SQLITE_NOMEM : SQLITE_OK;
}

/* Read the argument of a lookup plan: one key, or every value of an IN. */
static int cursor_lookup_args(pm_cursor *c, sqlite3_value **argv, int *pArg) {
  sqlite3_value *arg = argv[(*pArg)++];
  if (c->plan & PLAN_EQ) return cursor_add_key(c, arg);
  sqlite3_value *v = NULL;
  int rc;
  for (rc = sqlite3_vtab_in_first(arg, &v); rc == SQLITE_OK && v; rc = sqlite3_vtab_in_next(arg, &v)) {
    int r = cursor_add_key(c, v);
    if (r != SQLITE_OK) return r;
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* An integer key as SQL renders it for GLOB and LIKE. */
static int int_text(const pm_key *k, char *buf, int size) {
  sqlite3_snprintf(size, buf, "%lld", (sqlite3_int64)pm_get_u64(k->data));
  return (int)strlen(buf);
}

/* Does key text z[0..n) start with the filter's prefix? */
static int prefix_matches(const key_filter *f, const uint8_t *z, uint32_t n) {
  if (n < (uint32_t)f->nPrefix) return 0;
  if (!f->nocase) return memcmp(z, f->prefix, (size_t)f->nPrefix) == 0;
  return sqlite3_strnicmp((const char *)z, f->prefix, f->nPrefix) == 0;
}

/* Compare an integer with a real exactly. */
static int int_real_cmp(sqlite3_int64 i, double d) {
  if (d < -9223372036854775808.0) return 1;
  if (d >= 9223372036854775808.0) return -1;
  sqlite3_int64 t = (sqlite3_int64)d;
  if (i != t) return i < t ? -1 : 1;
  double frac = d - (double)t;
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* Compare two keys in SQL order (numbers < text < blob; BINARY). */
static int key_cmp(const pm_key *a, const pm_key *b) {
  int ca = a->type == PM_REAL ? PM_INTEGER : a->type;
  int cb = b->type == PM_REAL ? PM_INTEGER : b->type;
  if (ca != cb) return ca < cb ? -1 : 1;
  if (ca == PM_INTEGER) {
    if (a->type == PM_INTEGER && b->type == PM_INTEGER) {
      sqlite3_int64 x = (sqlite3_int64)pm_get_u64(a->data), y = (sqlite3_int64)pm_get_u64(b->data);
      return x < y ? -1 : x > y;
    }
    if (a->type == PM_REAL && b->type == PM_REAL) {
      double x = key_real(a), y = key_real(b);
      return x < y ? -1 : x > y;
    }
    if (a->type == PM_INTEGER) return int_real_cmp((sqlite3_int64)pm_get_u64(a->data), key_real(b));
    return -int_real_cmp((sqlite3_int64)pm_get_u64(b->data), key_real(a));
  }
  uint32_t n = a->len < b->len ? a->len : b->len;
  int r = n ? memcmp(a->data, b->data, n) : 0;
  return r ? r : (a->len < b->len ? -1 : a->len > b->len);
}

/* The iterator's key test: bounds, then the prefix. Runs under the
** engine's index lock, so it only compares bytes. */
static int filter_match(void *ctx, const pm_key *k) {
  const key_filter *f = ctx;
  if (f->lo.key.data) {
    int r = key_cmp(k, &f->lo.key);
    if (r < 0 || (r == 0 && !f->lo_incl)) return 0;
  }
  if (f->hi.key.data) {
    int r = key_cmp(k, &f->hi.key);
    if (r > 0 || (r == 0 && !f->hi_incl)) return 0;
  }
  if (!f->prefix || f->nPrefix == 0) return 1;
  if (k->type == PM_REAL) return 1;          /* SQLite's rendering: let it judge */
  if (k->type == PM_INTEGER) {
    char buf[32];
    int n = int_text(k, buf, sizeof buf);
    return prefix_matches(f, (const uint8_t *)buf, (uint32_t)n);
  }
  return prefix_matches(f, k->data, k->len);
}

/* Open the engine iterator of a scan. */
static int cursor_open_iter(pm_cursor *c, pm_err *err) {
  pm_vtab *vt = cursor_vtab(c);
  pm_iter_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.desc = (c->plan & PLAN_DESC) != 0;
  spec.min_seq = c->seq.lo;
  spec.max_seq = c->seq.hi;
  if (c->plan & (PLAN_KEY_LO | PLAN_KEY_HI | PLAN_GLOB | PLAN_LIKE)) {
    spec.match = filter_match;
    spec.match_ctx = &c->filter;
  }
  return pm_iter_open(vt->store, c->txn, c->has_snap ? &c->snap : NULL, &spec, &c->iter, err);
}

/* Look a key up through the cursor's transaction or snapshot. */
static int cursor_get(pm_cursor *c, const pm_key *k, pm_value **val, pm_meta *meta, pm_err *err) {
  if (c->txn_gone) {
    return pm_err_set(err, PM_ERROR, "the transaction this query read from has ended");
  }
  if (c->txn) return pm_txn_get(c->txn, k, val, meta, err);
  return pm_store_get(cursor_vtab(c)->store, c->has_snap ? &c->snap : NULL, k, val, meta, err);
}

/* Move to the next row of the plan, ignoring LIMIT and OFFSET. */
static int cursor_fetch(pm_cursor *c, pm_err *err) {
  pm_value_unref(c->value);
  c->value = NULL;
  if (c->txn_gone) return pm_err_set(err, PM_ERROR, "the transaction this query read from has ended");
  if (c->iter) {
    int rc = pm_iter_next(c->iter, err);
    if (rc == PM_NOTFOUND) { pm_iter_close(c->iter); c->iter = NULL; c->eof = 1; return PM_OK; }
    if (rc != PM_OK) return rc;
    c->key = *pm_iter_key(c->iter);
    c->key_terminated = 1;
    pm_iter_meta(c->iter, &c->meta);
    return PM_OK;
  }
  int prefetch = (c->plan & PLAN_VALUE) && !c->txn;
  while (c->iKey < c->nKeys) {
    const pm_key *k = &c->keys[c->iKey++].key;
    int rc = cursor_get(c, k, prefetch ? &c->value : NULL, &c->meta, err);
    if (rc == PM_NOTFOUND) continue;
    if (rc != PM_OK) return rc;
    if (c->meta.seq < c->seq.lo || c->meta.seq > c->seq.hi) {
      pm_value_unref(c->value);
      c->value = NULL;
      continue;
    }
    c->key = *k;
    c->key_terminated = 0;
    return PM_OK;
  }
  c->eof = 1;
  return PM_OK;
}

/* Move to the next row to return, honouring OFFSET and LIMIT. */
static int cursor_advance(pm_cursor *c, pm_err *err) {
  if (c->limit == 0) { c->eof = 1; return PM_OK; }
  for (;;) {
    int rc = cursor_fetch(c, err);
    if (rc != PM_OK || c->eof) return rc;
    if (c->offset > 0) { c->offset--; continue; }
    if (c->limit > 0) c->limit--;
    else if (c->limit == 0) { c->eof = 1; }
    return PM_OK;
  }
}

/* xOpen: a new cursor, known to the table so a transaction's end reaches it. */
static int pmOpen(sqlite3_vtab *pVtab, sqlite3_vtab_cursor **ppCursor) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_cursor *c = vt->spare ? vt->spare : sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  vt->spare = NULL;
  memset(c, 0, sizeof *c);
  c->eof = 1;
  c->keys = &c->key1;
  c->capKeys = 1;
  c->next = vt->cursors;
  vt->cursors = c;
  *ppCursor = &c->base;
  return SQLITE_OK;
}

/* xClose: end the cursor's snapshot or iterator and forget it. The table
** keeps one closed cursor for the next xOpen (SQLite opens one per
** statement run), which spares an allocation per point lookup. */
static int pmClose(sqlite3_vtab_cursor *cur) {
  pm_cursor *c = (pm_cursor *)cur;
  pm_vtab *vt = cursor_vtab(c);
  cursor_reset(c);
  for (pm_cursor **pp = &vt->cursors; *pp; pp = &(*pp)->next) {
    if (*pp == c) { *pp = c->next; break; }
  }
  if (c->keys != &c->key1) sqlite3_free(c->keys);
  if (vt->spare) sqlite3_free(c);
  else vt->spare = c;
  return SQLITE_OK;
}

/*
** xFilter: start the plan xBestIndex chose. The arguments come in slot
** order (see section 6). Reads go through the write transaction if SQLite
** announced a write on this table, else through a new snapshot.
*/
static int pmFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr,
                    int argc, sqlite3_value **argv) {
  pm_cursor *c = (pm_cursor *)cur;
  pm_vtab *vt = cursor_vtab(c);
  pm_err err;
  int iArg = 0, rc;
  (void)idxStr; (void)argc;
  cursor_reset(c);
  rc = vt_check_usable(vt);
  if (rc != SQLITE_OK) return rc;
  c->plan = idxNum;
  c->seq.lo = 0; c->seq.hi = UINT64_MAX; c->seq.empty = 0;
  c->limit = -1; c->offset = 0;
  c->none = 0;
  c->eof = 0;
  rc = (idxNum & (PLAN_EQ | PLAN_IN)) ? cursor_lookup_args(c, argv, &iArg)
                                      : cursor_scan_args(c, argv, &iArg);
  if (rc != SQLITE_OK) return rc;
  cursor_bound_args(c, argv, &iArg);
  if (c->none || c->seq.empty) { c->eof = 1; return SQLITE_OK; }
  int prc = cursor_attach(c, &err);
  if (prc == PM_OK && !(idxNum & (PLAN_EQ | PLAN_IN))) prc = cursor_open_iter(c, &err);
  if (prc == PM_OK) prc = cursor_advance(c, &err);
  if (prc != PM_OK) { c->eof = 1; return cursor_fail(c, prc, &err); }
  return SQLITE_OK;
}

/* xNext: the next row. */
static int pmNext(sqlite3_vtab_cursor *cur) {
  pm_cursor *c = (pm_cursor *)cur;
  pm_err err;
  int rc = cursor_advance(c, &err);
  return rc == PM_OK ? SQLITE_OK : cursor_fail(c, rc, &err);
}

/* xEof: true past the last row. */
static int pmEof(sqlite3_vtab_cursor *cur) {
  return ((pm_cursor *)cur)->eof;
}

/* The current row's value, read now if it was not yet: in place for a scan
** (valid until the cursor moves), else the value the lookup read. */
static int cursor_view(pm_cursor *c, pm_view *out, pm_err *err) {
  if (c->iter) return pm_iter_view(c->iter, out, err);
  if (!c->value) {
    int rc = cursor_get(c, &c->key, &c->value, NULL, err);
    if (rc) return rc;
  }
  *out = (pm_view){ c->value->type, c->value->len, c->value->data, c->value };
  return PM_OK;
}

/*
** xColumn: key, value or seq of the current row. An UPDATE that does not
** change value or seq gets nothing for them (sqlite3_vtab_nochange), so
** no value is read; nor is one read for a query that does not use it.
*/
static int pmColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  pm_cursor *c = (pm_cursor *)cur;
  pm_err err;
  if (i == COL_KEY) { key_result(ctx, &c->key, c->key_terminated); return SQLITE_OK; }
  if (sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
  if (i == COL_SEQ) { sqlite3_result_int64(ctx, (sqlite3_int64)c->meta.seq); return SQLITE_OK; }
  pm_view view;
  int rc = cursor_view(c, &view, &err);
  if (rc == PM_NOTFOUND) { sqlite3_result_null(ctx); return SQLITE_OK; }
  if (rc != PM_OK) return pm_result_error(ctx, rc, &err);
  view_result(ctx, &view);
  return SQLITE_OK;
}

/* xRowid: never called on a WITHOUT ROWID table. */
static int pmRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  (void)cur;
  *pRowid = 0;
  return SQLITE_ERROR;
}

/* ==== 8. Writes ========================================================== */
/*
** xUpdate gets DELETE (argc 1: the old key), INSERT (argv[0] NULL) and
** UPDATE (argv[0] the old key); argv[2..4] are key, value and seq. Each
** call is atomic on its own: a failed call changes nothing.
*/

/* The error for a key that exists already (none under OR IGNORE, where
** SQLite drops the row quietly). */
static int vt_key_exists(pm_vtab *vt, const pm_key *k) {
  if (sqlite3_vtab_on_conflict(vt->db) == SQLITE_IGNORE) return SQLITE_CONSTRAINT;
  char *z = key_describe(k);
  if (!z) return SQLITE_NOMEM;
  int rc = vt_error(vt, SQLITE_CONSTRAINT, "key %s already exists in '%s'", z, vt->zName);
  sqlite3_free(z);
  return rc;
}

/* Put a key and value bytes in the transaction. */
static int vt_put(pm_vtab *vt, const pm_key *k, const valbytes *vb, int mode) {
  pm_err err;
  int rc = pm_txn_put(vt->txn, k, vb->type, vb->p, vb->n, mode, NULL, &err);
  if (rc == PM_CONSTRAINT) return vt_key_exists(vt, k);
  return rc == PM_OK ? SQLITE_OK : vt_fail(vt, rc, &err);
}

/* The put mode for SQLite's conflict resolution: REPLACE is done by the
** table; every other mode refuses an existing key and lets SQLite act. */
static int vt_put_mode(pm_vtab *vt) {
  return sqlite3_vtab_on_conflict(vt->db) == SQLITE_REPLACE ? PM_PUT_REPLACE : PM_PUT_INSERT;
}

static int vt_seq_refused(pm_vtab *vt) {
  return vt_error(vt, SQLITE_ERROR, "seq is read-only: it is set by every write to '%s'", vt->zName);
}

/* INSERT: a NULL key takes the next integer key, remembered for
** persistmap_last_key(). */
static int vt_insert(pm_vtab *vt, sqlite3_value **col) {
  keybuf kb;
  valbytes vb;
  pm_err err;
  int assigned = 0, rc;
  if (sqlite3_value_type(col[COL_SEQ]) != SQLITE_NULL) return vt_seq_refused(vt);
  if (key_from_value(col[COL_KEY], &kb, 0, vt->utf8_db) == 0) {
    int64_t next;
    rc = pm_txn_next_int_key(vt->txn, &next, &err);
    if (rc != PM_OK) return vt_fail(vt, rc, &err);
    kb.key = pm_key_int(next, kb.num);
    assigned = 1;
  }
  rc = value_from_sql(col[COL_VALUE], &vb, vt->utf8_db);
  if (rc == SQLITE_OK) rc = vt_put(vt, &kb.key, &vb, vt_put_mode(vt));
  if (rc == SQLITE_OK && assigned) {
    vt->conn->has_last_key = 1;
    vt->conn->last_key = (sqlite3_int64)pm_get_u64(kb.key.data);
  }
  return rc;
}

/* DELETE: removing an absent key is not an error. */
static int vt_delete(pm_vtab *vt, sqlite3_value *old) {
  keybuf kb;
  pm_err err;
  if (key_from_value(old, &kb, 0, vt->utf8_db) == 0) return SQLITE_OK;
  int rc = pm_txn_delete(vt->txn, &kb.key, &err);
  return (rc == PM_OK || rc == PM_NOTFOUND) ? SQLITE_OK : vt_fail(vt, rc, &err);
}

/* An UPDATE may give seq only unchanged (some plans pass its old value). */
static int seq_unchanged(sqlite3_value *v, const pm_meta *meta) {
  return sqlite3_value_nochange(v) ||
         (sqlite3_value_type(v) == SQLITE_INTEGER && (uint64_t)sqlite3_value_int64(v) == meta->seq);
}

/* UPDATE of key: the row moves to the new key (its value comes along when
** the UPDATE does not set one). The new key is written first, so a
** conflict leaves the old row in place. */
static int vt_move(pm_vtab *vt, const pm_key *from, const pm_key *to, sqlite3_value *val) {
  pm_value *old = NULL;
  valbytes vb;
  pm_err err;
  int rc;
  if (sqlite3_value_nochange(val)) {
    rc = pm_txn_get(vt->txn, from, &old, NULL, &err);
    if (rc != PM_OK) return rc == PM_NOTFOUND ? SQLITE_OK : vt_fail(vt, rc, &err);
    vb.type = old->type; vb.p = old->data; vb.n = old->len;
    rc = SQLITE_OK;
  } else {
    rc = value_from_sql(val, &vb, vt->utf8_db);
  }
  if (rc == SQLITE_OK) rc = vt_put(vt, to, &vb, vt_put_mode(vt));
  pm_value_unref(old);
  if (rc != SQLITE_OK) return rc;
  int prc = pm_txn_delete(vt->txn, from, &err);
  return (prc == PM_OK || prc == PM_NOTFOUND) ? SQLITE_OK : vt_fail(vt, prc, &err);
}

/* UPDATE: a new value, a new key, or both. */
static int vt_update(pm_vtab *vt, sqlite3_value *old, sqlite3_value **col) {
  keybuf from, to;
  pm_meta meta;
  pm_err err;
  if (key_from_value(old, &from, 0, vt->utf8_db) == 0) return SQLITE_OK;
  if (key_from_value(col[COL_KEY], &to, 0, vt->utf8_db) == 0) {
    return vt_error(vt, SQLITE_CONSTRAINT, "key cannot be NULL in '%s'", vt->zName);
  }
  int rc = pm_txn_get(vt->txn, &from.key, NULL, &meta, &err);
  if (rc == PM_NOTFOUND) return SQLITE_OK;
  if (rc != PM_OK) return vt_fail(vt, rc, &err);
  if (!seq_unchanged(col[COL_SEQ], &meta)) return vt_seq_refused(vt);
  if (!key_equal(&from.key, &to.key)) return vt_move(vt, &from.key, &to.key, col[COL_VALUE]);
  if (sqlite3_value_nochange(col[COL_VALUE])) return SQLITE_OK;
  valbytes vb;
  rc = value_from_sql(col[COL_VALUE], &vb, vt->utf8_db);
  return rc == SQLITE_OK ? vt_put(vt, &to.key, &vb, PM_PUT_REPLACE) : rc;
}

/* xUpdate: every write. The engine transaction begins here if no read
** began it already. */
static int pmUpdate(sqlite3_vtab *pVtab, int argc, sqlite3_value **argv, sqlite3_int64 *pRowid) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_err err;
  (void)pRowid;
  int rc = vt_check_usable(vt);
  if (rc != SQLITE_OK) return rc;
  if (!vt->in_write) return vt_error(vt, SQLITE_MISUSE, "write outside a transaction");
  rc = vt_txn(vt, &err);
  if (rc != PM_OK) return vt_fail(vt, rc, &err);
  if (argc == 1) return vt_delete(vt, argv[0]);
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return vt_insert(vt, argv + 2);
  return vt_update(vt, argv[0], argv + 2);
}

/* ==== 9. Transactions ==================================================== */
/*
** SQLite's protocol, and what each step does here:
**   xBegin       a write is coming; the engine transaction (and its writer
**                lock) begins at the first read or write that follows, so
**                a DROP TABLE never needs the store;
**   xSync        pm_txn_prepare: the transaction's group goes to the log
**                (the only step whose error reaches the user);
**   xCommit      pm_txn_commit: the group becomes visible;
**   xRollback    pm_txn_abort, also after a successful xSync (an abort
**                record is written);
**   a second xSync (the main database's commit failed with BUSY and the
**                user retried) writes the group anew, superseding the first.
** Savepoints keep SQLite's numbers; one opened before the engine
** transaction began is opened in it when it begins.
*/

/* xBegin: remember that a write transaction is open. */
static int pmBegin(sqlite3_vtab *pVtab) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  vt->in_write = 1;
  vt->sp_level = -1;
  return SQLITE_OK;
}

/* xSync: write the transaction's group to the log. */
static int pmSync(sqlite3_vtab *pVtab) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_err err;
  if (!vt->txn) return SQLITE_OK;
  int rc = pm_txn_prepare(vt->txn, &err);
  return rc == PM_OK ? SQLITE_OK : vt_fail(vt, rc, &err);
}

/* The write transaction is over, one way or the other. */
static void vt_end_write(pm_vtab *vt) {
  vt->in_write = 0;
  vt->sp_level = -1;
  vt->txn = NULL;
  vt_txn_ended(vt);
}

/* xCommit: make the group visible. SQLite ignores the result code, so a
** failure also goes to the log. */
static int pmCommit(sqlite3_vtab *pVtab) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_err err;
  pm_txn *txn = vt->txn;
  vt_end_write(vt);
  if (!txn) return SQLITE_OK;
  int rc = pm_txn_commit(txn, &err);
  if (rc == PM_OK) return SQLITE_OK;
  sqlite3_log(pm_sqlite_code(rc), "persistmap: commit to '%s' failed: %s", vt->zName, err.msg);
  return vt_fail(vt, rc, &err);
}

/* xRollback: discard the transaction (an abort record if it was written). */
static int pmRollback(sqlite3_vtab *pVtab) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  pm_txn *txn = vt->txn;
  vt_end_write(vt);
  if (txn) pm_txn_abort(txn);
  return SQLITE_OK;
}

/* One savepoint operation, applied to the engine transaction if it began. */
static int vt_savepoint_op(pm_vtab *vt, int (*op)(pm_txn *, int, pm_err *), int level) {
  pm_err err;
  if (!vt->txn) return SQLITE_OK;
  int rc = op(vt->txn, level, &err);
  return rc == PM_OK ? SQLITE_OK : vt_fail(vt, rc, &err);
}

/* xSavepoint: open savepoint level n. */
static int pmSavepoint(sqlite3_vtab *pVtab, int n) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  vt->sp_level = n;
  return vt_savepoint_op(vt, pm_txn_savepoint, n);
}

/* xRelease: merge levels n and above into the level below. */
static int pmRelease(sqlite3_vtab *pVtab, int n) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  vt->sp_level = n - 1;
  return vt_savepoint_op(vt, pm_txn_release, n);
}

/* xRollbackTo: undo everything since level n opened; level n stays open. */
static int pmRollbackTo(sqlite3_vtab *pVtab, int n) {
  pm_vtab *vt = (pm_vtab *)pVtab;
  vt->sp_level = n;
  return vt_savepoint_op(vt, pm_txn_rollback_to, n);
}

/* ==== 10. The module, and what the SQL functions need ==================== */

static sqlite3_module persistmapModule = {
  /* iVersion    */ 2,
  /* xCreate     */ pmCreate,
  /* xConnect    */ pmConnect,
  /* xBestIndex  */ pmBestIndex,
  /* xDisconnect */ pmDisconnect,
  /* xDestroy    */ pmDestroy,
  /* xOpen       */ pmOpen,
  /* xClose      */ pmClose,
  /* xFilter     */ pmFilter,
  /* xNext       */ pmNext,
  /* xEof        */ pmEof,
  /* xColumn     */ pmColumn,
  /* xRowid      */ pmRowid,
  /* xUpdate     */ pmUpdate,
  /* xBegin      */ pmBegin,
  /* xSync       */ pmSync,
  /* xCommit     */ pmCommit,
  /* xRollback   */ pmRollback,
  /* xFindFunction */ NULL,
  /* xRename     */ pmRename,
  /* xSavepoint  */ pmSavepoint,
  /* xRelease    */ pmRelease,
  /* xRollbackTo */ pmRollbackTo,
  /* xShadowName */ NULL,
#if SQLITE_VERSION_NUMBER >= 3044000
  /* xIntegrity  */ NULL,
#endif
};

/* The module and every function registered with conn hold a reference:
** when a later load replaces the module, or fails halfway, the functions
** that still point at conn keep it alive. */
void pm_conn_ref(pm_conn *conn) { conn->refs++; }

/* SQLite drops a reference (a destructor: the registration went, or
** failed); the last frees conn, whose tables were disconnected already. */
void pm_conn_unref(void *p) {
  pm_conn *conn = p;
  if (--conn->refs == 0) sqlite3_free(conn);
}

int pm_vtab_register(sqlite3 *db, pm_conn **out) {
  pm_conn *conn = sqlite3_malloc(sizeof *conn);
  if (!conn) return SQLITE_NOMEM;
  memset(conn, 0, sizeof *conn);
  conn->db = db;
  conn->refs = 1;                      /* the module's; SQLite drops it if registering fails */
  int rc = sqlite3_create_module_v2(db, "persistmap", &persistmapModule, conn, pm_conn_unref);
  *out = rc == SQLITE_OK ? conn : NULL;
  return rc;
}

void pm_conn_set_any_path(pm_conn *conn, int allow) { conn->any_path = allow != 0; }
int pm_conn_any_path(const pm_conn *conn) { return conn->any_path; }

int pm_conn_last_key(const pm_conn *conn, sqlite3_int64 *out) {
  if (conn->has_last_key) *out = conn->last_key;
  return conn->has_last_key;
}

const char *pm_table_name(const pm_vtab *vt) { return vt->zName; }
int pm_table_in_write(const pm_vtab *vt) { return vt->txn != NULL; }

/* The registered table called zTable in zSchema (NULL: temp, then main,
** then the attached databases, as SQLite resolves names). The list has the
** newest object first: after a schema change, the one SQLite uses. */
static pm_vtab *conn_lookup(pm_conn *conn, const char *zSchema, const char *zTable) {
  pm_vtab *inMain = NULL, *inOther = NULL;
  for (pm_vtab *vt = conn->tables; vt; vt = vt->next) {
    if (sqlite3_stricmp(vt->zName, zTable) != 0) continue;
    if (zSchema) { if (sqlite3_stricmp(vt->zSchema, zSchema) == 0) return vt; continue; }
    if (sqlite3_stricmp(vt->zSchema, "temp") == 0) return vt;
    if (sqlite3_stricmp(vt->zSchema, "main") == 0) { if (!inMain) inMain = vt; }
    else if (!inOther) inOther = vt;
  }
  return inMain ? inMain : inOther;
}

int pm_table_find(pm_conn *conn, const char *zName, pm_vtab **out, pm_err *err) {
  const char *dot = strchr(zName, '.');
  char *zSchema = dot ? sqlite3_mprintf("%.*s", (int)(dot - zName), zName) : NULL;
  const char *zTable = dot ? dot + 1 : zName;
  /* Preparing a statement on the table makes SQLite connect it. */
  char *zSql = zSchema ? sqlite3_mprintf("SELECT 1 FROM \"%w\".\"%w\" WHERE 0", zSchema, zTable)
                       : sqlite3_mprintf("SELECT 1 FROM \"%w\" WHERE 0", zTable);
  sqlite3_stmt *stmt = NULL;
  int rc = PM_OK, prc;
  if (!zSql || (dot && !zSchema)) {
    rc = pm_err_set(err, PM_NOMEM, "out of memory");
  } else if ((prc = sqlite3_prepare_v2(conn->db, zSql, -1, &stmt, NULL)) != SQLITE_OK &&
             (*out = conn_lookup(conn, zSchema, zTable)) == NULL) {
    /* (A table that connected but cannot plan, is found all the same.) */
    rc = pm_err_set(err, (prc & 0xff) == SQLITE_NOMEM ? PM_NOMEM : PM_ERROR, "%s", sqlite3_errmsg(conn->db));
  } else if ((*out = conn_lookup(conn, zSchema, zTable)) == NULL) {
    rc = pm_err_set(err, PM_ERROR, "'%s' is not a persistmap table", zName);
  }
  sqlite3_finalize(stmt);
  sqlite3_free(zSql);
  sqlite3_free(zSchema);
  return rc;
}

int pm_table_store(pm_vtab *vt, pm_store **out, pm_err *err) {
  int rc = vt_open_store(vt, 0, err);
  *out = vt->store;
  return rc;
}

int pm_table_recover(pm_vtab *vt, char **report, pm_err *err) {
  if (vt->zProblem) return pm_err_set(err, PM_ERROR, "%s", vt->zProblem);
  if (vt->txn || vt->in_write) {
    return pm_err_set(err, PM_MISUSE, "cannot recover '%s' inside a transaction that writes it", vt->zName);
  }
  if (vt->cursors) {
    return pm_err_set(err, PM_MISUSE, "cannot recover '%s' while a query reads it", vt->zName);
  }
  int rc = vt_resolve_path(vt, err);
  if (rc != PM_OK) return rc;
  vt_close_store(vt);
  pm_options o = vt->opts.eng;
  o.readonly = vt->readonly;
  o.create = 0;
  o.creator = vt->zCreator;
  return pm_store_recover(vt->zCanon, &o, report, err);
}
