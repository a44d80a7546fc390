/*
** persistmap.c - the extension's entry point.
**
**   .load ./persistmap                       (the sqlite3 shell)
**   conn.load_extension("./persistmap")      (Python)
**   sqlite3_auto_extension(sqlite3_persistmap_init)   (linked in, -DSQLITE_CORE)
**
** sqlite3_persistmap_init registers the persistmap module (vtab.c) and the
** SQL functions (functions.c) on one connection. Loaded as a shared library
** it asks to stay loaded for the life of the process: the engine's stores,
** shared by every connection, and their background threads outlive the
** connection that loaded it.
**
** The engine allocates with the C library (common.h's default allocator),
** not with sqlite3_malloc: a store is shared by every connection and thread
** of the process, its memory is bounded by its own cache_size and reported
** by persistmap_stats, and SQLite's allocator takes one process-wide mutex
** per call to keep its statistics, which would serialize concurrent
** readers and cost more than the rest of a cached get. The SQL layer
** (vtab.c, functions.c) allocates with SQLite's, as extensions do.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include "persistmap.h"
#include "store.h"
#include "vtab.h"

/* The oldest SQLite with everything the extension relies on (SQLITE_INNOCUOUS
** and SQLITE_DIRECTONLY functions, sqlite3_vtab_nochange, sqlite3_vtab_collation). */
#define PM_MIN_SQLITE 3031000

/*
** The entry point: register everything on db. Returns
** SQLITE_OK_LOAD_PERMANENTLY when loaded as a shared library, SQLITE_OK when
** compiled into the application (SQLITE_CORE), or an error with *pzErrMsg.
*/
__attribute__((visibility("default")))
int sqlite3_persistmap_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  pm_conn *conn = NULL;
  SQLITE_EXTENSION_INIT2(pApi);
  if (sqlite3_libversion_number() < PM_MIN_SQLITE) {
    *pzErrMsg = sqlite3_mprintf("persistmap: needs SQLite 3.31.0 or newer, this is %s",
                                sqlite3_libversion());
    return SQLITE_ERROR;
  }
  int rc = pm_vtab_register(db, &conn);
  if (rc == SQLITE_OK) rc = pm_functions_register(db, conn);
  if (rc != SQLITE_OK) {
    *pzErrMsg = sqlite3_mprintf("persistmap: cannot register: %s", sqlite3_errstr(rc));
    return rc;
  }
#ifdef SQLITE_CORE
  return SQLITE_OK;
#else
  return SQLITE_OK_LOAD_PERMANENTLY;
#endif
}
