/*
** store.h - the persistmap engine: a persistent key -> value map kept in a
** store directory (a manifest, log segments, hint files and a shared-memory
** file), with an in-memory hash index of every key and a bounded cache of
** values.
**
** This is the only header the SQL layer needs. The engine does not depend
** on SQLite; it is linked into plain C programs for its tests and benches.
**
** Handles and engines. pm_store_open() returns a *handle*. All handles on
** one store directory in one process share one *engine* (a process-wide
** registry keyed by device and inode, reference counted), so a commit made
** through one handle is visible to the next statement on every other. Each
** handle carries its own per-table settings (sync mode, busy timeout,
** read-only). A forked child never reuses its parent's engines.
**
** Reading. Readers take a snapshot (pm_store_snap_begin), which pins the
** state after some commit: lookups and iterators through that snapshot see
** exactly that state, however long they run, and never block writers.
** Taking a snapshot first catches up with commits made by other processes
** (a shared commit counter; no system call when nothing changed).
**
** Writing. One writer at a time per store, across threads and processes:
** pm_txn_begin() takes the writer lock (waiting up to the handle's busy
** timeout, then PM_BUSY). A transaction sees its own writes. It commits in
** the steps SQLite needs: pm_txn_prepare() writes the whole transaction to
** the log as one group (fdatasync'ed under PM_SYNC_FULL, sharing the fsync
** with concurrent committers), pm_txn_commit() makes it visible; or
** pm_txn_abort(), which writes an abort record if the group was already
** written. A group written but neither committed nor aborted before a crash
** counts as committed when the store is next opened.
**
** Errors. A failed write or fsync is never retried and never ignored: the
** engine turns read-only with that error (reads go on), every later write
** reports it, and the store can be reopened from disk once every handle on
** it is closed.
*/
#ifndef PM_STORE_H
#define PM_STORE_H

#include "common.h"
#include "io.h"

typedef struct pm_store pm_store;   /* a handle on an open store */
typedef struct pm_txn pm_txn;       /* a write transaction */
typedef struct pm_iter pm_iter;     /* an iterator over a snapshot */

enum { PM_SYNC_OFF = 0, PM_SYNC_NORMAL = 1, PM_SYNC_FULL = 2 };

typedef struct pm_options {
  int create;                 /* create the directory and store if missing (default 0) */
  int readonly;               /* never write, lock, create or repair (default 0) */
  int sync;                   /* PM_SYNC_* for this handle's commits (default NORMAL) */
  uint64_t sync_interval_ms;  /* background fsync cadence under NORMAL (default 1000) */
  uint64_t busy_timeout_ms;   /* how long pm_txn_begin waits for the writer lock (default 5000) */
  int64_t cache_size;         /* bytes of values to keep; 0 none; -1 all (default 64 MiB);
                                 the engine uses the largest asked by its handles */
  /* Store-level settings: recorded in the manifest when the store is created. */
  uint64_t segment_size;      /* bytes before a segment rolls over (default 64 MiB) */
  double auto_shrink;         /* compact when log > ratio x live bytes; 0 = never (default 2.0) */
  uint64_t auto_shrink_min;   /* ... and the log is at least this big (default 16 MiB) */
  const char *creator;        /* who creates it (recorded; see pm_store_destroy) */
  const pm_io *io;            /* file operations; NULL = pm_io_posix */
} pm_options;

void pm_options_init(pm_options *o);

/* Open the store in directory path. With o->create, a missing directory (or
** an empty one) becomes a new store; a directory that holds other files and
** no manifest is refused with PM_CANTOPEN ("'x' is not a persistmap store").
** Damage inside durable data gives PM_CORRUPT naming file and offset; a torn
** tail (damage after the last fsync) is not an error. */
int pm_store_open(const char *path, const pm_options *o, pm_store **out, pm_err *err);

/* Close the handle; the last handle of an engine flushes what is committed
** (a final fsync unless the engine stopped on an error) and frees it. */
int pm_store_close(pm_store *s, pm_err *err);

/* ---- Reading ------------------------------------------------------------- */
typedef struct pm_snap {
  uint64_t seq;     /* the state after the commit that wrote this seq */
  void *priv;       /* engine bookkeeping */
  void *index;      /* ... and the index it reads */
} pm_snap;

/* Row metadata, known without reading the value. */
typedef struct pm_meta {
  uint64_t seq;
  uint8_t vtype;
  uint32_t vlen;
} pm_meta;

/* Begin a snapshot of the newest committed state (after catching up with
** other processes). Every snap_begin needs one snap_end. */
int pm_store_snap_begin(pm_store *s, pm_snap *snap, pm_err *err);
void pm_store_snap_end(pm_store *s, pm_snap *snap);

/* Look up k in snap (NULL: the newest state). PM_OK or PM_NOTFOUND. With val
** not NULL the value is returned (from the cache or one read of the log) as a
** reference the caller releases with pm_value_unref; with val NULL nothing is
** read from disk. meta may be NULL. */
int pm_store_get(pm_store *s, const pm_snap *snap, const pm_key *k,
                 pm_value **val, pm_meta *meta, pm_err *err);

/* What an iterator visits: rows in seq order (ascending, or descending with
** desc), with min_seq <= seq <= max_seq, and whose key passes match (NULL
** passes every key). match runs under the index lock: it must be quick and
** must not call the engine. */
typedef struct pm_iter_spec {
  int desc;
  uint64_t min_seq;                 /* 0: no lower bound */
  uint64_t max_seq;                 /* UINT64_MAX: no upper bound */
  int (*match)(void *ctx, const pm_key *k);
  void *match_ctx;
} pm_iter_spec;

/* Iterate snap; inside a write transaction pass it as txn (snap may then be
** NULL) and the iterator also sees that transaction's own writes. */
int pm_iter_open(pm_store *s, pm_txn *txn, const pm_snap *snap,
                 const pm_iter_spec *spec, pm_iter **out, pm_err *err);
/* Advance to the next row: PM_OK (a row), PM_NOTFOUND (no more) or an error. */
int pm_iter_next(pm_iter *it, pm_err *err);
/* The current row's key, valid until the next step; a text key's bytes are
** followed by a 0 byte (handy for C strings). */
const pm_key *pm_iter_key(pm_iter *it);
void pm_iter_meta(pm_iter *it, pm_meta *out);
/* The current row's value, read only now (a reference to release). */
int pm_iter_value(pm_iter *it, pm_value **out, pm_err *err);
/* The current row's value seen in place, without a copy when it can be:
** bytes borrowed from the iterator's read-ahead buffer (ref NULL), or a
** stable reference-counted value the iterator holds (ref set, data ==
** ref->data; take pm_value_ref(ref) to keep it longer). Either way data and
** len stay valid until the next pm_iter_next or pm_iter_close. A scan
** that hands the bytes on at once (SQLite copies them) should use this. */
typedef struct pm_view {
  uint8_t type;
  uint32_t len;
  const uint8_t *data;
  pm_value *ref;
} pm_view;
int pm_iter_view(pm_iter *it, pm_view *out, pm_err *err);
void pm_iter_close(pm_iter *it);

/* ---- Writing ------------------------------------------------------------- */
enum {
  PM_PUT_REPLACE = 0,   /* insert or overwrite */
  PM_PUT_INSERT = 1     /* PM_CONSTRAINT if the key exists */
};

/* Start a write transaction: takes the writer lock, waiting up to the
** handle's busy timeout (PM_BUSY after it). PM_READONLY on a read-only
** handle or a store stopped by an earlier error. */
int pm_txn_begin(pm_store *s, pm_txn **out, pm_err *err);

/* Reads that see the transaction's own writes. */
int pm_txn_get(pm_txn *t, const pm_key *k, pm_value **val, pm_meta *meta, pm_err *err);

/* Put or delete within the transaction. Keys over PM_MAX_KEY or values over
** PM_MAX_VALUE give PM_TOOBIG; PM_PUT_INSERT on an existing key gives
** PM_CONSTRAINT. seq_out (may be NULL) gets the row's new seq. Delete returns
** PM_NOTFOUND for an absent key. */
int pm_txn_put(pm_txn *t, const pm_key *k, uint8_t vtype, const void *v,
               uint32_t vlen, int mode, uint64_t *seq_out, pm_err *err);
int pm_txn_delete(pm_txn *t, const pm_key *k, pm_err *err);

/* The next integer key: one above every integer key ever committed to the
** store (deleted and compacted ones included) or used in this transaction.
** PM_FULL when the integers are exhausted. */
int pm_txn_next_int_key(pm_txn *t, int64_t *out, pm_err *err);

/* Savepoints numbered as SQLite does: savepoint(n) opens level n,
** release(n) merges levels >= n into the level below, rollback_to(n) undoes
** everything since level n opened (level -1 or 0 after savepoint(0): the
** whole transaction) and keeps level n open. */
int pm_txn_savepoint(pm_txn *t, int level, pm_err *err);
int pm_txn_release(pm_txn *t, int level, pm_err *err);
int pm_txn_rollback_to(pm_txn *t, int level, pm_err *err);

/* Write the transaction to the log as one group (fdatasync'ed under
** PM_SYNC_FULL). Calling it again writes an abort record for the earlier
** group and writes the transaction anew. On error nothing of it will be
** visible; the transaction stays open for pm_txn_abort. */
int pm_txn_prepare(pm_txn *t, pm_err *err);

/* Make the transaction visible (preparing it first if needed), release the
** writer lock and free t. On error the transaction is aborted and freed. */
int pm_txn_commit(pm_txn *t, pm_err *err);

/* Discard the transaction (an abort record if it was prepared), release the
** writer lock and free t. */
void pm_txn_abort(pm_txn *t);

/* True once the transaction has written anything. */
int pm_txn_dirty(const pm_txn *t);

/* One-shot helpers: a transaction of one put or one delete. */
int pm_store_put(pm_store *s, const pm_key *k, uint8_t vtype, const void *v,
                 uint32_t vlen, pm_err *err);
int pm_store_delete(pm_store *s, const pm_key *k, pm_err *err);

/* ---- Durability and maintenance ----------------------------------------- */
/* Make everything committed so far durable. timeout_ms < 0 waits as long as
** it takes; otherwise PM_TIMEOUT if the fsync did not finish in time (it
** goes on in the background). */
int pm_store_sync(pm_store *s, int64_t timeout_ms, pm_err *err);

/* Verify every record's checksum in every segment and hint file, and that
** the index matches the log. PM_OK with *report = "ok" or a description of
** each problem (one per line); free the report with pm_free. */
int pm_store_check(pm_store *s, char **report, pm_err *err);

/* Compact the log (see the README). *summary is a JSON object; pm_free it. */
int pm_store_shrink(pm_store *s, char **summary, pm_err *err);

/* Salvage a damaged store in place: keep every valid committed transaction,
** drop the rest, and report (JSON, pm_free it) what was dropped. Needs the
** writer lock and no other engine of this process on the store. */
int pm_store_recover(const char *path, const pm_options *o, char **report, pm_err *err);

/* Delete the store at path if its manifest names creator and no engine in
** any process has it open. PM_OK (deleted), PM_BUSY (in use: left alone),
** PM_CONSTRAINT (another creator: left alone), PM_NOTFOUND (nothing there),
** or an error. Only files the store owns are removed. */
int pm_store_destroy(const char *path, const char *creator, const pm_io *io, pm_err *err);

/* Record a new creator in the manifest (a table was renamed). */
int pm_store_set_creator(pm_store *s, const char *creator, pm_err *err);

/* 1 if path holds a persistmap manifest, 0 if not. */
int pm_store_exists(const char *path, const pm_io *io);

/* ---- Figures ------------------------------------------------------------- */
typedef struct pm_stats {
  char path[512];
  char store_id[33];            /* hex */
  int sync;                     /* this handle's mode */
  int readonly;                 /* this handle, or the engine stopped */
  uint64_t keys;                /* live keys */
  uint64_t live_bytes;          /* bytes of live records (headers, keys, values) */
  uint64_t log_bytes;           /* bytes in all segments */
  uint64_t segments;
  uint64_t records;             /* records in the log, live and dead */
  uint64_t unsynced_bytes;      /* log bytes written but not yet fsynced */
  uint64_t last_seq;            /* newest committed seq */
  int64_t next_int_key;         /* 0: no integer key is left */
  uint64_t commits;             /* groups committed by this engine */
  uint64_t fsyncs;              /* fdatasyncs issued by this engine */
  uint64_t dropped_bytes;       /* torn tail ignored or cut at open */
  uint64_t index_bytes;         /* memory held by the index */
  uint64_t index_versions;
  uint64_t cache_capacity, cache_bytes, cache_entries;
  uint64_t cache_hits, cache_misses, cache_evictions;
  uint64_t catchups;            /* times this engine read other processes' commits */
  uint64_t shrinks, shrink_reclaimed_bytes, shrink_last_ms, shrink_last_duration_us;
  int shrink_running;
  int last_error_code;          /* PM_OK if the engine is healthy */
  char last_error[320];
} pm_stats;

int pm_store_stats(pm_store *s, pm_stats *out, pm_err *err);

/* Library version string, e.g. "0.1.0". */
const char *pm_version(void);

#endif /* PM_STORE_H */
