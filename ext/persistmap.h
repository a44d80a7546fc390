/*
** persistmap.h - the public header of the persistmap SQLite extension.
**
** Loaded at run time (the usual way), persistmap needs no header at all:
**
**   sqlite3_load_extension(db, "/usr/local/lib/persistmap", NULL, &zErr);
**
** Linked into an application (make static: libpersistmap.a, compiled with
** -DSQLITE_CORE), register it once, before opening connections, and every
** connection the process opens afterwards has it:
**
**   #include <sqlite3.h>
**   #include <persistmap.h>
**   sqlite3_auto_extension((void (*)(void))sqlite3_persistmap_init);
**
** Link with -lpersistmap -lsqlite3 -lm -lpthread. Linked in, the entry point
** returns SQLITE_OK (SQLITE_OK_LOAD_PERMANENTLY as a shared library), as
** sqlite3_auto_extension requires.
*/
#ifndef PERSISTMAP_H
#define PERSISTMAP_H

#include <sqlite3.h>

/* The version persistmap_version() returns, and the same as a number:
** major * 1000000 + minor * 1000 + patch. */
#define PERSISTMAP_VERSION        "0.1.0"
#define PERSISTMAP_VERSION_NUMBER 1000

#ifdef __cplusplus
extern "C" {
#endif

/*
** Register the persistmap module and its SQL functions on db. The shape of
** every SQLite extension entry point: pApi is the routines table handed to
** a loadable extension (NULL, or anything, when linked in). Fails with
** SQLITE_ERROR and *pzErrMsg (free it with sqlite3_free) on a SQLite older
** than 3.31.0.
*/
int sqlite3_persistmap_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

#ifdef __cplusplus
}
#endif

#endif /* PERSISTMAP_H */
