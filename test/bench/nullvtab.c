/*
** nullvtab.c - a do-nothing virtual table: the floor for every workload.
**
**   CREATE VIRTUAL TABLE nv USING nullvtab(N);
**   SELECT value FROM nv WHERE key = ?;     -- one row: ?, and 100 fixed bytes
**   SELECT key, value FROM nv;              -- N rows: 'key0000000000000'...
**   INSERT / INSERT OR REPLACE / DELETE     -- accepted, and forgotten
**
** It has the shape of a persistmap table (key, value) and the same plan for
** `key = ?` (a unique lookup whose constraint SQLite need not re-check), but
** it looks nothing up: every key "exists" and its value is a constant
** 100-byte blob handed to SQLite without a copy. Timing a point get on it
** measures what SQLite itself spends on a virtual-table lookup statement
** (bind, step, xBestIndex's plan, xOpen/xFilter/xColumn/xClose, reset), so
** persistmap's own cost is the difference. A full scan returns N rows
** (default 0) with 16-byte text keys made like bench_sql's, counted up in
** place, and the constant value; writes are accepted and do nothing, so
** timing them measures SQLite's statement and virtual-table costs alone.
**
** bench_sql registers it on its connections with nullvtab_register().
*/
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

int nullvtab_register(sqlite3 *db);

enum { NV_KEY = 0, NV_VALUE = 1, NV_VALUE_BYTES = 100 };

static const unsigned char nv_value[NV_VALUE_BYTES] = {
  0x6e, 0x75, 0x6c, 0x6c, 0x76, 0x74, 0x61, 0x62,   /* "nullvtab", then zeros */
};

typedef struct nv_vtab {
  sqlite3_vtab base;
  sqlite3_int64 rows;    /* rows a full scan returns */
} nv_vtab;

enum { NV_KEY_BYTES = 16 };

typedef struct nv_cursor {
  sqlite3_vtab_cursor base;
  sqlite3_value *key;    /* the looked-up key (a copy), or NULL for a scan */
  sqlite3_int64 row, rows;
  char scan_key[NV_KEY_BYTES + 1];   /* "key" and 13 digits, then 0 */
  int eof;
} nv_cursor;

static int nvConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                     sqlite3_vtab **ppVtab, char **pzErr) {
  (void)pAux; (void)pzErr;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(key PRIMARY KEY, value) WITHOUT ROWID");
  if (rc != SQLITE_OK) return rc;
  nv_vtab *vt = sqlite3_malloc(sizeof *vt);
  if (!vt) return SQLITE_NOMEM;
  memset(vt, 0, sizeof *vt);
  if (argc > 3) vt->rows = strtoll(argv[3], NULL, 10);
  *ppVtab = &vt->base;
  return SQLITE_OK;
}

static int nvDisconnect(sqlite3_vtab *vt) {
  sqlite3_free(vt);
  return SQLITE_OK;
}

/* `key = ?` under BINARY collation: one unique row, constraint consumed. */
static int nvBestIndex(sqlite3_vtab *vt, sqlite3_index_info *info) {
  (void)vt;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (!c->usable || c->iColumn != NV_KEY || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    const char *coll = sqlite3_vtab_collation(info, i);
    if (coll && sqlite3_stricmp(coll, "BINARY") != 0) continue;
    info->aConstraintUsage[i].argvIndex = 1;
    info->aConstraintUsage[i].omit = 1;
    info->idxNum = 1;
    info->estimatedCost = 1;
    info->estimatedRows = 1;
    info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    return SQLITE_OK;
  }
  info->idxNum = 0;
  info->estimatedCost = 1e6;
  info->estimatedRows = 1000000;
  return SQLITE_OK;
}

static int nvOpen(sqlite3_vtab *vt, sqlite3_vtab_cursor **ppCursor) {
  (void)vt;
  nv_cursor *c = sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  c->eof = 1;
  *ppCursor = &c->base;
  return SQLITE_OK;
}

static int nvClose(sqlite3_vtab_cursor *cur) {
  nv_cursor *c = (nv_cursor *)cur;
  sqlite3_value_free(c->key);
  sqlite3_free(c);
  return SQLITE_OK;
}

static int nvFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr,
                    int argc, sqlite3_value **argv) {
  nv_cursor *c = (nv_cursor *)cur;
  (void)idxStr;
  sqlite3_value_free(c->key);
  c->key = NULL;
  c->eof = 1;
  if (idxNum == 1 && argc == 1 && sqlite3_value_type(argv[0]) != SQLITE_NULL) {
    c->key = sqlite3_value_dup(argv[0]);
    if (!c->key) return SQLITE_NOMEM;
    c->eof = 0;
  } else if (idxNum == 0) {
    c->row = 0;
    c->rows = ((nv_vtab *)cur->pVtab)->rows;
    memcpy(c->scan_key, "key0000000000000", NV_KEY_BYTES + 1);
    c->eof = c->rows <= 0;
  }
  return SQLITE_OK;
}

/* A scan's next key: its decimal digits counted up by one. */
static void nv_count_up(char *key) {
  for (int i = NV_KEY_BYTES - 1; i >= 3; i--) {
    if (key[i] != '9') { key[i]++; return; }
    key[i] = '0';
  }
}

static int nvNext(sqlite3_vtab_cursor *cur) {
  nv_cursor *c = (nv_cursor *)cur;
  if (c->key || ++c->row >= c->rows) c->eof = 1;
  else nv_count_up(c->scan_key);
  return SQLITE_OK;
}

static int nvEof(sqlite3_vtab_cursor *cur) {
  return ((nv_cursor *)cur)->eof;
}

static int nvColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  nv_cursor *c = (nv_cursor *)cur;
  if (i == NV_KEY && c->key) sqlite3_result_value(ctx, c->key);
  else if (i == NV_KEY) sqlite3_result_text(ctx, c->scan_key, -1, SQLITE_TRANSIENT);
  else sqlite3_result_blob(ctx, nv_value, NV_VALUE_BYTES, SQLITE_STATIC);
  return SQLITE_OK;
}

static int nvRowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  (void)cur;
  *pRowid = 0;
  return SQLITE_OK;
}

/* xUpdate: every write is accepted and forgotten. */
static int nvUpdate(sqlite3_vtab *vt, int argc, sqlite3_value **argv, sqlite3_int64 *pRowid) {
  (void)vt; (void)argc; (void)argv; (void)pRowid;
  return SQLITE_OK;
}

static sqlite3_module nullvtabModule = {
  .iVersion = 0,
  .xCreate = nvConnect,
  .xConnect = nvConnect,
  .xBestIndex = nvBestIndex,
  .xDisconnect = nvDisconnect,
  .xDestroy = nvDisconnect,
  .xOpen = nvOpen,
  .xClose = nvClose,
  .xFilter = nvFilter,
  .xNext = nvNext,
  .xEof = nvEof,
  .xColumn = nvColumn,
  .xRowid = nvRowid,
  .xUpdate = nvUpdate,
};

/* Make `nullvtab` available on db. */
int nullvtab_register(sqlite3 *db) {
  return sqlite3_create_module(db, "nullvtab", &nullvtabModule, NULL);
}
