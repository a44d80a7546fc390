/*
** vtab.h - what the three files of the SQL layer share.
**
** persistmap.c registers, vtab.c implements the virtual table, functions.c
** the SQL functions. They meet in a per-connection object, pm_conn, that
** the module keeps as its client data: it knows every persistmap table the
** connection has connected, whether the application let the connection
** use store paths outside the database's directory, and the last integer
** key an INSERT assigned.
**
** The SQL functions reach a table through the helpers below, which take
** care of everything the virtual table does lazily (opening the store at
** first use, checking its path). Errors from these helpers come back as an
** engine result code with a pm_err whose message has no "persistmap: "
** prefix; pm_sqlite_code() gives the SQLite result code that fits.
*/
#ifndef PM_VTAB_H
#define PM_VTAB_H

#include "sqlite3ext.h"
#include "store.h"

typedef struct pm_conn pm_conn;   /* one per database connection */
typedef struct pm_vtab pm_vtab;   /* one connected persistmap table */

/* Register the persistmap module on db and create its per-connection
** state, returned in *out (held by the module and by each SQL function:
** freed when the last of them goes, at the latest with the connection). */
int pm_vtab_register(sqlite3 *db, pm_conn **out);

/* References to the per-connection state, for each registration that
** points at it (pm_conn_unref is the destructor given to SQLite). */
void pm_conn_ref(pm_conn *conn);
void pm_conn_unref(void *conn);

/* Register the SQL functions of functions.c on db. */
int pm_functions_register(sqlite3 *db, pm_conn *conn);

/* The SQLite result code for an engine result code (PM_BUSY -> SQLITE_BUSY). */
int pm_sqlite_code(int pm_rc);

/* Report an engine error as a function's or column's result ("persistmap: "
** and the message, the code that fits; SQLite's out of memory if the message
** cannot be allocated). Returns the SQLite code set. */
int pm_result_error(sqlite3_context *ctx, int pm_rc, const pm_err *err);

/* Find the persistmap table named zName ('name' or 'schema.name'),
** connecting it if this connection has not used it yet. */
int pm_table_find(pm_conn *conn, const char *zName, pm_vtab **out, pm_err *err);

/* The table's name as SQL names it, for messages. */
const char *pm_table_name(const pm_vtab *vt);

/* True while the table has an open write transaction on this connection. */
int pm_table_in_write(const pm_vtab *vt);

/* The table's store, opened now if it was not yet. */
int pm_table_store(pm_vtab *vt, pm_store **out, pm_err *err);

/* Close the table's store, salvage it with pm_store_recover() and leave it
** closed (the next use reopens it). *report is a JSON text to pm_free. */
int pm_table_recover(pm_vtab *vt, char **report, pm_err *err);

/* The application's opt-in to store paths anywhere (persistmap_allow_any_path). */
void pm_conn_set_any_path(pm_conn *conn, int allow);
int pm_conn_any_path(const pm_conn *conn);

/* The last key an INSERT with a NULL key assigned on this connection:
** 1 and *out set, or 0 if none was assigned yet. */
int pm_conn_last_key(const pm_conn *conn, sqlite3_int64 *out);

#endif /* PM_VTAB_H */
